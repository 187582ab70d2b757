r"""The base of the JAX objectives: explicit state and info, the generator model run through
NumPyro's handlers, and one pure ``step`` for both players.

Every objective is an object with two methods, as in BlackJAX (``blackjax/base.py``):

* ``init(rng_key, model, critic, batch) -> GANState`` binds the NumPyro ``model`` and the Flax
  ``critic`` and initializes both players' parameters and optax states;
* ``step(rng_key, state, batch) -> (GANState, GANInfo)`` is pure and not jitted inside: wrap
  it in :func:`jax.jit` or run it under :func:`jax.lax.scan`.

The model is the torch side's: ``model(batch)`` with a latent ``z`` in a plate and an observed,
reparameterized site ``obs_site`` (``Delta`` or ``Normal``). Real data are the value observed
there; fakes are that site's value when it alone is unconditioned. NumPyro's ``seed``,
``substitute`` and ``trace`` only run the model. The critic's gradient sees the fakes through
:func:`jax.lax.stop_gradient` and the generator's sees the critic's parameters through it (the
torch side's disjoint surrogate). With ``critic_steps = k`` the generator is updated on the
steps where ``(step + 1) % k == 0``; its parameters and optimizer state are untouched on the
others. With ``num_masks = M > 1`` both losses are averaged over ``M`` passes of the model, with
the keys ``jax.random.split(model_key, M)`` (``model_key, penalty_key =
jax.random.split(rng_key)``), and the critic's penalty is evaluated once, on the first pass's
batch (the torch side's ``num_masks``). The model's mutable sites (``flax_module(...,
mutable=["batch_stats"])``: BatchNorm's running statistics) are carried in
``GANState.generator_state`` and threaded through the passes.

The critic's mutable collections (every one of ``critic.init``'s but ``params`` and
``intermediates``: ``batch_stats``, i.e. BatchNorm's running statistics or the power iteration's
vectors of Flax's ``SpectralNorm``) are carried in ``GANState.critic_state``. In a step the
critic is applied in its default (training) mode, with those collections mutable: its own
term's forwards, on the real batch then on the fakes (pass by pass), update them in that order,
as the torch side's train-mode BatchNorm does; the generator's term and the penalties apply it
to the step's incoming ``critic_state`` with the batch's statistics and discard the updates.
Outside training, :meth:`AdversarialObjective.critic_apply` applies it with the carried state,
nothing mutable (pass the module's evaluation flag, e.g. ``train=False``, to use the running
statistics). The collections keep their dtypes (a stable carry for :func:`jax.lax.scan`).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from numpyro import handlers
from numpyro.contrib.module import ParamShape
from numpyro.distributions import biject_to, constraints
from numpyro.primitives import Messenger

__all__ = ["AdversarialObjective", "GANInfo", "GANState"]


class GANState(NamedTuple):
    """Both players' parameters (the generator's unconstrained) and optax states, the step, and
    the model's mutable sites (``flax_module(..., mutable=["batch_stats"])``: ``{site: value}``,
    empty without them) and the critic's mutable collections (``{"batch_stats": ...}``, empty
    without them)."""

    generator_params: Any
    critic_params: Any
    generator_opt_state: Any
    critic_opt_state: Any
    step: Any
    generator_state: Any = None
    critic_state: Any = None


class GANInfo(NamedTuple):
    """One step's named values (the torch side's ``loss.last``); zeros where a family has none."""

    critic_loss: Any
    generator_loss: Any
    critic_real: Any
    critic_fake: Any
    divergence: Any
    penalty: Any
    generator_penalty: Any
    kl: Any
    generator_updated: Any
    step: Any


class _UnconditionSite(Messenger):
    """Unobserve one site, keeping its data in ``msg["infer"]["obs"]``."""

    def __init__(self, fn=None, name="x"):
        self.name = name
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.name and msg["is_observed"]:
            msg["infer"] = {**msg["infer"], "obs": msg["value"]}
            msg["value"] = None
            msg["is_observed"] = False


def _check_positive_int(name, value):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"Expected {name} to be an int >= 1, actual {value!r}")


def _update(optimizer, grads, opt_state, params, grad_fn):
    """``optimizer.update``, with ``grad_fn`` for those that take it (SAM)."""
    if isinstance(optimizer, optax.GradientTransformationExtraArgs):
        return optimizer.update(grads, opt_state, params, grad_fn=grad_fn)
    return optimizer.update(grads, opt_state, params)


def _zero():
    return jnp.zeros(())


def _average(values):
    """The mean of a list of arrays (or of dicts of arrays), summed in order as the torch side."""
    if len(values) == 1:
        return values[0]
    if isinstance(values[0], dict):
        return {name: _average([v[name] for v in values]) for name in values[0]}
    total = values[0]
    for value in values[1:]:
        total = total + value
    return total / len(values)


class AdversarialObjective:
    r"""Base class of the JAX objectives; subclasses define ``_critic_objective(v_real, v_fake)
    -> (loss, record)`` and ``_generator_objective(v_real, v_gen) -> loss`` on critic outputs.

    :param generator_optimizer: an optax transformation for the generator.
    :param critic_optimizer: an optax transformation for the critic.
    :param int critic_steps: critic updates per generator update.
    :param penalty: ``penalty(rng_key, critic_fn, real, fake) -> scalar`` added to the critic's
        loss (see :mod:`bayesgan.jax.penalties`).
    :param constraint: ``constraint(critic_params) -> critic_params``, a projection applied at
        the start of every step (e.g. :class:`~bayesgan.jax.penalties.WeightClipping`).
    :param generator_penalty: e.g. :class:`~bayesgan.jax.penalties.GeneratorGradientPenalty`.
    :param str obs_site: the model's observation site.
    :param int num_data: the training set's size, for the :math:`\mathrm{KL}/N` term of a guide
        over random weights.
    :param int num_masks: stochastic passes of the model averaged per step, :math:`M \ge 1`
        (fresh latents and dropout masks each, keys ``jax.random.split(model_key, M)``); the
        critic's penalty is evaluated once, on the first pass's batch.
    """

    def __init__(
        self,
        *,
        generator_optimizer,
        critic_optimizer=None,
        critic_steps=1,
        penalty=None,
        constraint=None,
        generator_penalty=None,
        obs_site="x",
        num_data=None,
        num_masks=1,
    ):
        _check_positive_int("critic_steps", critic_steps)
        _check_positive_int("num_masks", num_masks)
        for name, value in (("penalty", penalty), ("constraint", constraint), ("generator_penalty", generator_penalty)):
            if value is not None and not callable(value):
                raise ValueError(f"Expected {name} to be callable or None, actual {type(value).__name__}")
        for name, value in (("generator_optimizer", generator_optimizer), ("critic_optimizer", critic_optimizer)):
            if value is not None and not isinstance(value, optax.GradientTransformation):
                raise ValueError(
                    f"Expected {name} to be an optax GradientTransformation, actual {type(value).__name__}"
                )
        if num_data is not None:
            _check_positive_int("num_data", num_data)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        self.critic_steps = critic_steps
        self.penalty = penalty
        self.constraint = constraint
        self.generator_penalty = generator_penalty
        self.obs_site = obs_site
        self.num_data = num_data
        self.num_masks = num_masks
        self.model = self.critic = self.guide = None
        self._transforms = {}

    # -- init ------------------------------------------------------------------------------
    def init(self, rng_key, model, critic, batch, *, guide=None):
        """Bind ``model`` (and ``guide``) and ``critic``; return the initial :class:`GANState`.

        :param rng_key: a JAX PRNG key.
        :param callable model: the NumPyro generator model, called as ``model(batch)``.
        :param critic: a Flax module (``init``/``apply``), or ``None`` for critic-free objectives.
        :param batch: a data batch, to initialize shapes.
        :param callable guide: an optional guide over the model's random weights.
        """
        self._check_critic(critic)
        model_key, critic_key = jax.random.split(rng_key)
        self.model, self.critic, self.guide = model, critic, guide
        params = {}
        if guide is not None:
            guide_trace = handlers.trace(handlers.seed(guide, model_key)).get_trace(batch)
            params.update(self._params(guide_trace))
            model_run = handlers.replay(model, trace=guide_trace)
        else:
            model_run = model
        model_trace = handlers.trace(handlers.seed(model_run, model_key)).get_trace(batch)
        self._observation(model_trace, batch)
        generator_state = {
            name: jax.tree.map(jnp.asarray, site["value"])
            for name, site in model_trace.items()
            if site["type"] == "mutable"
        }
        self._initial_generator_state = generator_state
        for name, value in self._params(model_trace).items():
            params.setdefault(name, value)
        generator_params = {name: self._transforms[name].inv(value) for name, value in params.items()}
        critic_variables = {}
        if critic is not None:
            critic_variables = dict(self._init_critic(critic_key, batch, model_trace, guide))
        critic_params = critic_variables.pop("params", {})
        critic_variables.pop("intermediates", None)
        self._initial_critic_state = critic_variables
        critic_opt_state = self.critic_optimizer.init(critic_params) if critic is not None else ()
        return GANState(
            generator_params,
            critic_params,
            self.generator_optimizer.init(generator_params),
            critic_opt_state,
            jnp.zeros((), dtype=jnp.int32),
            generator_state,
            critic_variables,
        )

    def _init_critic(self, key, batch, model_trace, guide):
        return self.critic.init(key, batch)

    def _check_critic(self, critic):
        if critic is None:
            raise ValueError(f"Expected a critic (a Flax module) for {type(self).__name__}, actual None")
        if not (hasattr(critic, "init") and hasattr(critic, "apply")):
            raise ValueError(f"Expected the critic to be a Flax module (init/apply), actual {type(critic).__name__}")
        if self.critic_optimizer is None:
            raise ValueError("Expected a critic_optimizer (an optax transformation) with a critic, actual None")

    def _params(self, trace):
        params = {}
        for name, site in trace.items():
            if site["type"] != "param" or site["value"] is None:
                continue
            constraint = site["kwargs"].get("constraint", constraints.real)
            self._transforms[name] = biject_to(constraint)
            # random_flax_module leaves ParamShape placeholders where weights are sampled
            params[name] = jax.tree.map(
                lambda v: jnp.zeros(v.shape) if isinstance(v, ParamShape) else v,
                site["value"],
                is_leaf=lambda v: isinstance(v, ParamShape),
            )
        return params

    def _observation(self, trace, batch):
        sites = [n for n, s in trace.items() if s["type"] == "sample"]
        if self.obs_site not in sites:
            raise ValueError(
                f"Expected the model to have an observation site {self.obs_site!r}, actual sample "
                f"sites {sites}; name it in the model or pass obs_site= to the objective"
            )
        site = trace[self.obs_site]
        if not site["is_observed"]:
            raise ValueError(
                f"Expected site {self.obs_site!r} to be observed, but it has no data; call "
                f"numpyro.sample(..., obs=x) in the model with the data batch"
            )
        base = site["fn"]
        while hasattr(base, "base_dist"):
            base = base.base_dist
        if not base.has_rsample:
            raise ValueError(
                f"Expected a reparameterized observation at {self.obs_site!r} (Delta or Normal), "
                f"actual {type(base).__name__}; gradients could not reach the generator"
            )
        fake_shape = tuple(site["fn"].shape())
        if tuple(jnp.shape(batch)) != fake_shape:
            raise ValueError(
                f"Expected the data batch to have the generator's output shape {fake_shape}, "
                f"actual {tuple(jnp.shape(batch))}; check the data's shape and the generator's output size"
            )

    # -- running the model -----------------------------------------------------------------
    def constrain(self, generator_params):
        """The generator's parameters in their constrained space (as the model sees them)."""
        # fresh containers: random_flax_module writes placeholders into the dicts it is given
        return {
            name: self._transforms[name](jax.tree.map(lambda v: v, value))
            for name, value in generator_params.items()
        }

    def sample(self, rng_key, generator_params, batch, generator_state=None):
        """Run guide and model once: ``(real, fake, kl)``; ``kl`` is the random weights' KL
        (zero without a guide). ``generator_state`` is the model's mutable sites
        (``GANState.generator_state``; by default the initial ones)."""
        return self._sample(rng_key, generator_params, batch, generator_state)[:3]

    def _sample(self, rng_key, generator_params, batch, generator_state):
        """:meth:`sample` and the mutable sites' values after the run."""
        if self.model is None:
            raise ValueError("Expected init(rng_key, model, critic, batch) before step, actual no model bound")
        if generator_state is None:
            generator_state = getattr(self, "_initial_generator_state", {})
        # fresh containers: the model updates its mutable sites in place
        params = {**self.constrain(generator_params), **jax.tree.map(lambda v: v, generator_state)}
        guide_key, model_key = jax.random.split(rng_key)
        model = handlers.substitute(_UnconditionSite(self.model, self.obs_site), data=params)
        kl = _zero()
        guide_trace = None
        if self.guide is not None:
            guide = handlers.substitute(handlers.seed(self.guide, guide_key), data=params)
            guide_trace = handlers.trace(guide).get_trace(batch)
            replayed = {k: v for k, v in guide_trace.items() if k not in self._not_replayed()}
            model = handlers.replay(model, trace=replayed)
        model_trace = handlers.trace(handlers.seed(model, model_key)).get_trace(batch)
        if self.guide is not None:
            from .diagnostics import _weights_kl

            kl = _weights_kl(guide_trace, model_trace, self.obs_site, self.num_data)
        new_state = {name: jax.lax.stop_gradient(model_trace[name]["value"]) for name in generator_state}
        return (*self._pairs(model_trace, guide_trace), kl, new_state)

    def _not_replayed(self):
        """Guide sites the model draws itself (a BiGAN's latent)."""
        return ()

    def _pairs(self, model_trace, guide_trace):
        """``(real, fake)`` from the traces: the observed data and the generated samples."""
        site = model_trace[self.obs_site]
        return site["infer"]["obs"], site["value"]

    def _critic_inputs(self, x):
        """The critic's positional arguments for a batch ``x``."""
        return (x,)

    def _critic_apply(self, critic_params, x, critic_state=None, *, mutable=True, **kwargs):
        """The critic's outputs on ``x``: with ``mutable`` in training mode (the batch's
        statistics; the updates are discarded), else with the carried state, nothing mutable."""
        return self._critic_run(critic_params, x, critic_state, mutable=mutable, **kwargs)[0]

    def _critic_run(self, critic_params, x, critic_state=None, *, mutable=True, **kwargs):
        """``(outputs, critic_state)``: the critic applied with its mutable collections (by
        default the initial ones), updated when ``mutable``."""
        if critic_state is None:
            critic_state = getattr(self, "_initial_critic_state", {})
        variables = {"params": critic_params, **critic_state}
        if not critic_state or not mutable:
            return self.critic.apply(variables, *self._critic_inputs(x), **kwargs), critic_state
        out, new = self.critic.apply(variables, *self._critic_inputs(x), mutable=list(critic_state), **kwargs)
        # the incoming dtypes kept (Flax's running variance starts as float32): a stable carry
        new = jax.tree.map(lambda n, o: jnp.asarray(n, dtype=jnp.result_type(o)),
                           dict(new), {name: critic_state[name] for name in new})
        return out, {**critic_state, **jax.lax.stop_gradient(new)}

    def critic_apply(self, state, x, **kwargs):
        """The critic's outputs on ``x`` outside training: its parameters (projected by
        ``constraint``) and ``state.critic_state``, nothing mutable; ``kwargs`` go to the
        module (e.g. ``train=False`` for BatchNorm's running statistics).

        :param state: a :class:`GANState`.
        :param x: a batch (a BiGAN's rows ``[x, z]``).
        """
        if self.critic is None:
            raise ValueError("Expected a bound critic (init(rng_key, model, critic, batch)), actual None")
        critic_params = state.critic_params
        if self.constraint is not None:
            critic_params = self.constraint(critic_params)
        return self._critic_apply(critic_params, x, state.critic_state, mutable=False, **kwargs)

    # -- one step --------------------------------------------------------------------------
    def step(self, rng_key, state, batch):
        """One simultaneous step of both players; returns ``(GANState, GANInfo)``."""
        model_key, penalty_key = jax.random.split(rng_key)
        critic_params = state.critic_params
        if self.constraint is not None:
            critic_params = self.constraint(critic_params)
        update_generator = (state.step + 1) % self.critic_steps == 0
        generator_pass = self._generator_pass(model_key, critic_params, state, batch)
        if self.critic_steps == 1:
            g_loss, g_pen, kl, reals, fakes, g_params, g_opt, g_state = generator_pass(True)
        else:
            g_loss, g_pen, kl, reals, fakes, g_params, g_opt, g_state = jax.lax.cond(
                update_generator, lambda: generator_pass(True), lambda: generator_pass(False)
            )
        fakes = jax.lax.stop_gradient(fakes)
        c_params, c_opt, c_loss, record, penalty, c_state = self._critic_update(
            penalty_key, critic_params, state, reals, fakes
        )
        info = GANInfo(
            critic_loss=c_loss,
            generator_loss=g_loss,
            critic_real=record.get("critic_real", _zero()),
            critic_fake=record.get("critic_fake", _zero()),
            divergence=record["divergence"],
            penalty=penalty,
            generator_penalty=g_pen,
            kl=kl,
            generator_updated=update_generator,
            step=state.step,
        )
        if state.generator_state is None:
            g_state = None
        if state.critic_state is None:
            c_state = None
        return GANState(g_params, c_params, g_opt, c_opt, state.step + 1, g_state, c_state), info

    def _pass_keys(self, key):
        """The model's keys of the ``num_masks`` passes."""
        return [key] if self.num_masks == 1 else list(jax.random.split(key, self.num_masks))

    def _generator_pass(self, key, critic_params, state, batch):
        """``run(differentiate) -> (loss, penalty, kl, reals, fakes, params, opt_state)``, the
        losses averaged over the passes, ``reals`` and ``fakes`` tuples of the passes' batches."""
        frozen = jax.lax.stop_gradient(critic_params)
        critic_state = state.critic_state
        keys = self._pass_keys(key)

        def objective(gp, key, mutable):
            real, fake, kl, mutable = self._sample(key, gp, batch, mutable)
            v_real = self._critic_apply(frozen, real, critic_state)
            loss = self._generator_loss(v_real, self._critic_apply(frozen, fake, critic_state))
            return loss, (kl, real, fake, jax.lax.stop_gradient(v_real), mutable)

        def with_kl(gp, key, mutable):
            loss, aux = objective(gp, key, mutable)
            return (loss + aux[0] / (self.num_data or 1) if self.guide is not None else loss), aux

        def one_pass(gp, key, mutable, penalize):
            loss, aux = with_kl(gp, key, mutable)
            penalty = _zero()
            if penalize and self.generator_penalty is not None:
                penalty = self.generator_penalty(
                    lambda p: objective(p, key, mutable),
                    gp,
                    self._samples_objective(frozen, aux[3], critic_state),
                    aux[2],
                )
            return loss, penalty, aux

        def passes(gp, penalize):
            # the mutable sites (BatchNorm's running statistics) are threaded through the passes
            mutable = state.generator_state
            results = []
            for k in keys:
                results.append(one_pass(gp, k, mutable, penalize))
                mutable = results[-1][2][4]
            loss = _average([r[0] for r in results])
            penalty = _average([r[1] for r in results])
            kl = _average([r[2][0] for r in results])
            reals = tuple(r[2][1] for r in results)
            fakes = tuple(r[2][2] for r in results)
            return loss, penalty, (kl, reals, fakes, mutable)

        def total(gp):
            loss, penalty, aux = passes(gp, True)
            return loss + penalty, (loss, penalty, aux)

        def run(differentiate):
            gp, opt = state.generator_params, state.generator_opt_state
            if differentiate:
                grad_fn = jax.grad(total, has_aux=True)
                grads, (loss, penalty, aux) = grad_fn(gp)
                loss = loss + penalty  # the torch side's record: the penalized loss
                updates, opt = _update(self.generator_optimizer, grads, opt, gp, lambda p, i=0: grad_fn(p)[0])
                gp = optax.apply_updates(gp, updates)
            else:
                loss, _, aux = passes(gp, False)
                penalty = jnp.zeros_like(loss)
            kl, reals, fakes, mutable = aux
            return loss, penalty, kl, reals, fakes, gp, opt, mutable

        return run

    def _generator_loss(self, v_real, v_gen):
        """The generator's loss on the critic's outputs; the real data's reach no player."""
        return self._generator_objective(jax.lax.stop_gradient(v_real), v_gen)

    def _samples_objective(self, frozen, v_real, critic_state=None):
        """The generator's loss as a function of the fakes (``wrt="samples"`` penalties)."""
        return lambda fake: self._generator_objective(v_real, self._critic_apply(frozen, fake, critic_state))

    def _critic_update(self, key, critic_params, state, reals, fakes):
        """The critic's step on the passes' batches (tuples): the objective averaged over them,
        the penalty on the first; returns ``(params, opt_state, loss, record, penalty,
        critic_state)``, the mutable collections updated by the real then fake forwards."""

        def loss_fn(cp):
            losses, records = [], []
            mutable = state.critic_state
            for real, fake in zip(reals, fakes):
                v_real, mutable = self._critic_run(cp, real, mutable)
                v_fake, mutable = self._critic_run(cp, fake, mutable)
                loss, record = self._critic_objective(v_real, v_fake)
                losses.append(loss)
                records.append(record)
            loss, record = _average(losses), _average(records)
            penalty = _zero()
            if self.penalty is not None:
                penalty = self._call_penalty(
                    key, lambda x: self._critic_apply(cp, x, state.critic_state), reals[0], fakes[0], state.step
                )
            return loss + penalty, (record, penalty, mutable)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (record, penalty, mutable)), grads = grad_fn(critic_params)
        updates, opt = _update(self.critic_optimizer, grads, state.critic_opt_state, critic_params,
                               lambda p, i=0: grad_fn(p)[1])
        return optax.apply_updates(critic_params, updates), opt, loss, record, penalty, mutable

    def _call_penalty(self, key, critic_fn, real, fake, step):
        if getattr(self.penalty, "uses_step", False):
            return self.penalty(key, critic_fn, real, fake, step=step)
        return self.penalty(key, critic_fn, real, fake)

    def _critic_objective(self, v_real, v_fake):
        raise NotImplementedError

    def _generator_objective(self, v_real, v_gen):
        raise NotImplementedError
