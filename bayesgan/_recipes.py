"""How the command line names objectives, penalties and regularizers: one small builder each."""

from .handlers import relax
from .infer import SAM, FGANLoss, MMDLoss, RelativisticLoss, WassersteinLoss, WeightClipping
from .penalties import R1, R2, GeneratorGradientPenalty, GradientPenalty, OutputPenalty, WGANDiv

LOSSES = ("fgan", "wgan-gp", "wgan-gp-one-sided", "wgan-div", "wgan-clip", "relativistic", "mmd")

PENALTIES = {
    "r1": R1,
    "r2": R2,
    "gp": GradientPenalty,
    "gp-one-sided": lambda w: GradientPenalty(w, one_sided=True),
    "output": OutputPenalty,
}

#: Named flag sets; explicit flags override them.
PRESETS = {
    # The paper's toy (benchmarks.md §5.4): 200 points from N(0, I_2), MMD with the paper's
    # kernel, batch 50, lr 0.01, width 32, LeakyReLU; 1000 epochs of 4 steps.
    "paper-toy": {
        "data": "normal_2d", "num_data": 200, "loss": "mmd", "batch_size": [50], "steps": 4000,
        "lr_generator": 0.01, "lr_critic": 0.01, "lr_decay": 0.0, "width": 32, "depth": 1,
        "activation": "leaky_relu", "eval_samples": 10_000, "critic_steps": 1,
    },
}


def parse_penalty(text):
    """``NAME=WEIGHT`` (e.g. ``r1=1.0``) into ``(name, weight)``; raises ValueError."""
    name, _, weight = text.partition("=")
    if name not in PENALTIES or not weight:
        raise ValueError(f"expected NAME=WEIGHT with NAME in {sorted(PENALTIES)}, actual {text!r}")
    return name, float(weight)


def make_loss(args, critic):
    """The loss the flags describe: an objective, its penalties, and SAM around it."""
    penalty = None
    for name, weight in args.penalty or ():
        term = PENALTIES[name](weight)
        penalty = term if penalty is None else penalty + term
    generator_penalty = None
    if args.generator_penalty:
        wrt = "samples" if args.loss == "mmd" else "parameters"
        generator_penalty = GeneratorGradientPenalty(args.generator_penalty, wrt=wrt)
    common = {"critic_steps": args.critic_steps, "generator_penalty": generator_penalty}
    if args.loss == "fgan":
        loss = FGANLoss(args.divergence, critic, generator_objective=args.generator_objective,
                        penalty=penalty, **common)
    elif args.loss == "mmd":
        loss = MMDLoss(generator_penalty=generator_penalty)
    elif args.loss == "relativistic":
        loss = RelativisticLoss(critic, penalty=penalty, **common)
    else:
        loss = WassersteinLoss(critic, **_wasserstein(args.loss, penalty), **common)
    if args.sam:
        loss = SAM(loss, rho=args.sam, adaptive=args.adaptive_sam)
    return loss


def _wasserstein(name, extra):
    base = {
        "wgan-gp": {"penalty": GradientPenalty(10.0)},
        "wgan-gp-one-sided": {"penalty": GradientPenalty(10.0, one_sided=True)},
        "wgan-div": {"penalty": WGANDiv()},
        "wgan-clip": {"penalty": None, "constraint": WeightClipping(0.01)},
    }[name]
    if extra is not None:
        base["penalty"] = extra if base["penalty"] is None else base["penalty"] + extra
    return base


def wrap_model(args, model):
    """Likelihood relaxation (or instance noise) around the training model, if asked for."""
    if not args.relax:
        return model
    return relax(model, scale=args.relax, where="both" if args.instance_noise else "fake")
