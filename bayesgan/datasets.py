"""
Toy targets with exact densities, a name registry, reproducible training sets and a batch iterator.

Every target is a :class:`Target`: it has a ``name``, a dimension ``dim``, a ``sample`` method that
draws from a given :class:`torch.Generator`, and an exact ``log_prob`` where one exists. Gaussian
mixtures also expose their component ``means`` and isotropic ``std``, which is what
:func:`bayesgan.metrics.mode_coverage` needs.

References

1. Lin, Khetan, Fanti, Oh, "PacGAN: The power of two samples in generative adversarial networks",
   NeurIPS 2018 (2D-ring and 2D-grid).
2. Gulrajani et al., "Improved Training of Wasserstein GANs", NeurIPS 2017 (swiss roll).
"""

import math

import torch

__all__ = [
    "GaussianMixture",
    "SwissRoll",
    "Target",
    "batches",
    "fixed_dataset",
    "gaussian_1d",
    "get",
    "grid",
    "mixture_1d",
    "names",
    "ring",
    "standard_normal_2d",
    "swiss_roll",
]


def _check_positive(name, value):
    if not value > 0:
        raise ValueError(f"Expected {name} > 0, actual {value}")


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"Expected {name} to be an integer >= 1, actual {value!r}")


class Target:
    """
    Base class of the toy targets: a distribution on :math:`\\mathbb{R}^d` to sample from.

    Subclasses implement ``_sample(n, generator)`` in float64 and, where an exact density exists,
    ``_log_prob(x)`` on a float64 tensor of shape ``[n, dim]``.

    :param str name: the registry name of the target.
    :param int dim: the dimension :math:`d` of a sample.
    """

    def __init__(self, name, dim):
        self.name = name
        self.dim = dim

    def __repr__(self):
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"

    def sample(self, n, *, generator=None, dtype=torch.float32):
        """
        Draw ``n`` independent samples. Drawing happens in float64 and is then cast, so one seed gives
        the same points (up to rounding) in every ``dtype``.

        :param int n: the number of samples, at least 1.
        :param torch.Generator generator: the random number generator; ``None`` uses the global one.
        :param torch.dtype dtype: the dtype of the result.
        :returns: a tensor of shape ``[n, dim]``.
        :rtype: torch.Tensor
        """
        _check_count("n", n)
        return self._sample(n, generator).to(dtype)

    def log_prob(self, x):
        """
        The exact log density of each row of ``x``, computed in float64 and returned in ``x.dtype``.

        :param torch.Tensor x: points of shape ``[n, dim]``.
        :returns: a tensor of shape ``[n]``.
        :rtype: torch.Tensor
        :raises NotImplementedError: if the target has no exact density.
        """
        if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.shape[1] != self.dim:
            actual = list(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"Expected x of shape [n, {self.dim}], actual {actual}; "
                "reshape with x.reshape(-1, dim)"
            )
        return self._log_prob(x.to(torch.float64)).to(x.dtype)

    def _sample(self, n, generator):
        raise NotImplementedError

    def _log_prob(self, x):
        raise NotImplementedError(
            f"Target {self.name!r} has no exact density; use a sample-based metric "
            "(bayesgan.metrics.wasserstein_2d) instead"
        )


class GaussianMixture(Target):
    """
    A mixture of isotropic Gaussians,

    .. math::

        p(x) = \\sum_{k=1}^K w_k \\, \\mathcal{N}(x \\mid \\mu_k, \\sigma_k^2 I_d).

    The weights are normalised to sum to one.

    :param weights: positive component weights, shape ``[K]``.
    :param means: component means, shape ``[K, d]``.
    :param stds: positive component standard deviations, shape ``[K]``.
    :param str name: the registry name.

    >>> mixture = GaussianMixture([1.0, 1.0], [[-1.0], [1.0]], [0.5, 0.5], name="two")
    >>> mixture.std, mixture.means.shape
    (0.5, torch.Size([2, 1]))
    """

    def __init__(self, weights, means, stds, *, name="mixture"):
        weights, means, stds = (torch.as_tensor(v, dtype=torch.float64) for v in (weights, means, stds))
        _check_mixture_shapes(weights, means, stds)
        for label, values in (("weights", weights), ("stds", stds)):
            if not bool((values > 0).all()) or not bool(values.isfinite().all()):
                raise ValueError(f"Expected finite {label} > 0, actual {values.tolist()}")
        if not bool(means.isfinite().all()):
            raise ValueError(f"Expected finite means, actual {means.tolist()}")
        super().__init__(name, means.shape[1])
        self.weights = weights / weights.sum()
        self.means = means
        self.stds = stds

    @property
    def std(self):
        """The common standard deviation of the components, as a float."""
        if not bool((self.stds == self.stds[0]).all()):
            raise ValueError(
                f"Expected equal component stds for an isotropic std, actual {self.stds.tolist()}; "
                "use .stds instead"
            )
        return float(self.stds[0])

    def _sample(self, n, generator):
        index = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[index] + self.stds[index, None] * noise

    def _log_prob(self, x):
        squared = ((x[:, None, :] - self.means) ** 2).sum(-1) / self.stds**2
        log_norm = self.dim * (self.stds.log() + 0.5 * math.log(2 * math.pi))
        return torch.logsumexp(self.weights.log() - 0.5 * squared - log_norm, dim=-1)


def _check_mixture_shapes(weights, means, stds):
    if means.dim() != 2 or weights.dim() != 1 or stds.dim() != 1:
        raise ValueError(
            f"Expected weights [K], means [K, d] and stds [K], actual {list(weights.shape)}, "
            f"{list(means.shape)} and {list(stds.shape)}"
        )
    if not len(weights) == len(means) == len(stds) >= 1:
        raise ValueError(
            f"Expected the same number K >= 1 of weights, means and stds, actual "
            f"{len(weights)}, {len(means)} and {len(stds)}"
        )


class SwissRoll(Target):
    """
    The 2-D swiss roll of WGAN-GP's toy: scikit-learn's ``make_swiss_roll(n, noise)`` keeps columns
    0 and 2 and divides them by 7.5,

    .. math::

        t \\sim \\mathcal{U}[1.5\\pi, 4.5\\pi], \\quad
        x = \\big(t \\cos t + \\sigma \\epsilon_1, \\; t \\sin t + \\sigma \\epsilon_2\\big) / 7.5.

    It has no exact density (``log_prob`` raises ``NotImplementedError``).

    :param float noise: the standard deviation :math:`\\sigma` of the Gaussian noise, at least 0.

    >>> SwissRoll().sample(3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 2])
    """

    def __init__(self, noise=0.25):
        if not noise >= 0:
            raise ValueError(f"Expected noise >= 0, actual {noise}")
        super().__init__("swiss_roll", 2)
        self.noise = noise

    def _sample(self, n, generator):
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        t = 1.5 * math.pi * (1 + 2 * u)
        roll = torch.stack([t * t.cos(), t * t.sin()], dim=-1)
        noise = torch.randn(n, 2, generator=generator, dtype=torch.float64)
        return (roll + self.noise * noise) / 7.5


def gaussian_1d(loc=3.0, scale=0.5):
    """
    The 1-D Gaussian :math:`\\mathcal{N}(\\mathrm{loc}, \\mathrm{scale}^2)`.

    :param float loc: the mean.
    :param float scale: the standard deviation, positive.

    >>> gaussian_1d().log_prob(torch.tensor([[3.0]])).item()  # doctest: +ELLIPSIS
    -0.22579...
    """
    _check_positive("scale", scale)
    return GaussianMixture([1.0], [[float(loc)]], [float(scale)], name="gaussian_1d")


def mixture_1d(weights=(0.3, 0.7), locs=(-1.0, 1.5), scales=(0.4, 0.6)):
    """
    A 1-D Gaussian mixture; the default is :math:`0.3\\,\\mathcal{N}(-1, 0.4^2) + 0.7\\,\\mathcal{N}(1.5, 0.6^2)`,
    with mean 0.75 and standard deviation 1.2698.

    :param weights: positive weights, normalised to sum to one.
    :param locs: the component means.
    :param scales: the positive component standard deviations.

    >>> mixture_1d().weights.tolist()
    [0.3, 0.7]
    """
    means = torch.as_tensor(locs, dtype=torch.float64).reshape(-1, 1)
    return GaussianMixture(weights, means, scales, name="mixture_1d")


def ring(num_modes=8, radius=1.0, std=0.01):
    """
    PacGAN's 2D-ring: equal-weight Gaussians with means
    :math:`r(\\cos(2\\pi k/K), \\sin(2\\pi k/K))`, :math:`k = 0, \\dots, K-1`.

    :param int num_modes: the number of modes :math:`K`.
    :param float radius: the radius :math:`r` of the ring.
    :param float std: the isotropic standard deviation of each mode.

    >>> ring().means[2].tolist()  # doctest: +ELLIPSIS
    [6.1...e-17, 1.0]
    """
    _check_count("num_modes", num_modes)
    _check_positive("radius", radius)
    _check_positive("std", std)
    angles = 2 * math.pi * torch.arange(num_modes, dtype=torch.float64) / num_modes
    means = radius * torch.stack([angles.cos(), angles.sin()], dim=-1)
    stds = torch.full((num_modes,), float(std), dtype=torch.float64)
    return GaussianMixture(torch.ones(num_modes, dtype=torch.float64), means, stds, name="ring")


def grid(side=5, spacing=2.0, std=0.05):
    """
    PacGAN's 2D-grid: equal-weight Gaussians centred on a ``side`` x ``side`` grid with the given
    spacing, centred at the origin; the default means are :math:`\\{-4, -2, 0, 2, 4\\}^2`.

    :param int side: the number of modes per axis.
    :param float spacing: the distance between neighbouring means.
    :param float std: the isotropic standard deviation of each mode.

    >>> grid().means[[0, -1]].tolist()
    [[-4.0, -4.0], [4.0, 4.0]]
    """
    _check_count("side", side)
    _check_positive("spacing", spacing)
    _check_positive("std", std)
    axis = spacing * (torch.arange(side, dtype=torch.float64) - (side - 1) / 2)
    means = torch.cartesian_prod(axis, axis).reshape(-1, 2)
    stds = torch.full((side * side,), float(std), dtype=torch.float64)
    return GaussianMixture(torch.ones(side * side, dtype=torch.float64), means, stds, name="grid")


def swiss_roll(noise=0.25):
    """
    WGAN-GP's swiss roll; see :class:`SwissRoll`.

    :param float noise: the noise standard deviation.

    >>> swiss_roll().name
    'swiss_roll'
    """
    return SwissRoll(noise)


def standard_normal_2d():
    """
    The target paper's toy :math:`\\mathcal{N}(0, I_2)`.

    >>> standard_normal_2d().log_prob(torch.zeros(1, 2)).item()  # -log(2 pi)
    -1.837877...
    """
    return GaussianMixture([1.0], [[0.0, 0.0]], [1.0], name="normal_2d")


_REGISTRY = {
    "gaussian_1d": gaussian_1d,
    "grid": grid,
    "mixture_1d": mixture_1d,
    "normal_2d": standard_normal_2d,
    "ring": ring,
    "swiss_roll": swiss_roll,
}


def names():
    """
    The registered target names, sorted.

    >>> names()
    ['gaussian_1d', 'grid', 'mixture_1d', 'normal_2d', 'ring', 'swiss_roll']
    """
    return sorted(_REGISTRY)


def get(name, **kwargs):
    """
    Build a registered target by name.

    :param str name: one of :func:`names`.
    :param kwargs: keyword arguments of the target's constructor function.
    :rtype: Target

    >>> get("ring", num_modes=4).means.shape
    torch.Size([4, 2])
    """
    if name not in _REGISTRY:
        raise ValueError(f"Expected a target name in {names()}, actual {name!r}")
    return _REGISTRY[name](**kwargs)


def fixed_dataset(name, n, *, seed=0, dtype=torch.float32, **kwargs):
    """
    A reproducible training set: ``n`` samples of a registered target drawn from a generator seeded
    with ``seed``. The target paper's toy is ``fixed_dataset("normal_2d", 200)``.

    :param str name: one of :func:`names`.
    :param int n: the number of points.
    :param int seed: the seed of the generator.
    :param torch.dtype dtype: the dtype of the result.
    :param kwargs: keyword arguments of the target's constructor function.
    :returns: a tensor of shape ``[n, dim]``.

    >>> torch.equal(fixed_dataset("normal_2d", 200), fixed_dataset("normal_2d", 200))
    True
    """
    generator = torch.Generator().manual_seed(seed)
    return get(name, **kwargs).sample(n, generator=generator, dtype=dtype)


def batches(data, batch_size, *, generator=None):
    """
    An infinite iterator over minibatches of ``data`` that reshuffles at every epoch. Each epoch
    yields ``len(data) // batch_size`` full batches; the remainder of the permutation is dropped, so
    every batch has exactly ``batch_size`` rows.

    :param torch.Tensor data: the data set, indexed along its first dimension.
    :param int batch_size: the batch size, between 1 and ``len(data)``.
    :param torch.Generator generator: the random number generator of the permutations.

    >>> it = batches(torch.arange(6.0), 3, generator=torch.Generator().manual_seed(0))
    >>> sorted(torch.cat([next(it), next(it)]).tolist())
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    if not isinstance(data, torch.Tensor) or data.dim() < 1 or len(data) < 1:
        raise ValueError(f"Expected a non-empty tensor of data, actual {data!r:.80}")
    _check_count("batch_size", batch_size)
    if batch_size > len(data):
        raise ValueError(
            f"Expected batch_size <= len(data) = {len(data)}, actual {batch_size}; "
            "use a smaller batch or more data"
        )
    return _batches(data, batch_size, generator)


def _batches(data, batch_size, generator):
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(data) - batch_size + 1, batch_size):
            yield data[order[start : start + batch_size]]
