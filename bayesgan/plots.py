r"""Plots of samples, training curves, divergence estimates and posterior predictive spread.

Every function draws into ``ax`` when one is given, and otherwise into a new figure made
without :mod:`matplotlib.pyplot`: nothing is left open in pyplot's figure list, nothing opens a
window, and any backend (Agg included) works. Each returns the :class:`~matplotlib.figure.Figure`
and, with ``path=``, saves it as a PNG. Tensors and arrays are both accepted.

>>> import torch
>>> from bayesgan import plots
>>> fig = plots.samples(torch.randn(500, 2), data=torch.randn(500, 2))
>>> len(fig.axes), len(fig.axes[0].collections)
(1, 2)
"""

import math

import numpy as np

from .distributed import is_main_process

__all__ = ["divergence_estimates", "predictive_spread", "samples", "training_curves"]

_DATA_COLOR, _SAMPLE_COLOR = "0.55", "tab:red"
_LOSS_KEYS = ("critic_loss", "generator_loss")
_NOT_CURVES = ("step", "generator_updated")


# -- helpers --------------------------------------------------------------------------------------
def _numpy(x, name, finite=False):
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    try:
        array = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"Expected {name} to be a tensor or array of numbers, actual {type(x).__name__}") from None
    if finite and not np.isfinite(array).all():
        raise ValueError(f"Expected finite {name}, actual {int((~np.isfinite(array)).sum())} NaN or inf values")
    return array


def _axes(ax, figsize, ncols=1):
    """``(figure, [axes])``: new ones made without pyplot, or the figure ``ax`` belongs to."""
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        axes = fig.subplots(1, ncols, squeeze=False)[0]
        return fig, list(axes)
    axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != ncols or not all(hasattr(a, "plot") for a in axes):
        raise ValueError(f"Expected ax to be {'one Axes' if ncols == 1 else f'{ncols} Axes'}, actual {ax!r}")
    fig = axes[0].figure
    return getattr(fig, "figure", None) or fig, axes  # a SubFigure's root figure saves


def _finish(fig, path):
    if path is not None and is_main_process():  # one writer under torchrun
        fig.savefig(path, format="png", dpi=100, bbox_inches="tight")
    return fig


def _moving_average(y, window):
    """The trailing mean over ``window`` points (fewer at the start), ignoring NaN."""
    if window == 1:
        return y
    valid = ~np.isnan(y)
    sums = np.cumsum(np.where(valid, y, 0.0))
    counts = np.cumsum(valid)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _check_smooth(smooth):
    if not (isinstance(smooth, int) and not isinstance(smooth, bool) and smooth >= 1):
        raise ValueError(f"Expected smooth to be an int >= 1, actual {smooth!r}")


def _history(history):
    """``(steps, {name: float array})`` from a list of ``loss.last`` records or a dict of lists."""
    if isinstance(history, dict):
        columns = {k: _numpy(v, f"history[{k!r}]").reshape(-1) for k, v in history.items()}
        lengths = {k: len(v) for k, v in columns.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"Expected lists of one length in history, actual lengths {lengths}")
        n = next(iter(lengths.values()), 0)
    elif isinstance(history, (list, tuple)):
        if not all(isinstance(r, dict) for r in history):
            raise ValueError("Expected history to be a list of dicts (loss.last records), actual other items")
        names = list(dict.fromkeys(k for r in history for k in r))
        try:
            columns = {k: np.array([float(r.get(k, math.nan)) for r in history]) for k in names}
        except (TypeError, ValueError):
            raise ValueError("Expected numbers in the history's records, actual a value that is not one") from None
        n = len(history)
    else:
        raise ValueError(f"Expected history to be a list of dicts or a dict of lists, actual {type(history).__name__}")
    if n == 0:
        raise ValueError("Expected a non-empty history, actual no records")
    steps = columns["step"] if "step" in columns else np.arange(n, dtype=np.float64)
    return steps, columns


def _curve_keys(columns, keys):
    if keys is None:
        keys = [k for k in _LOSS_KEYS if k in columns] or [k for k in columns if k not in _NOT_CURVES]
    elif isinstance(keys, str):
        keys = [keys]
    missing = [k for k in keys if k not in columns]
    if missing or not keys:
        raise ValueError(f"Expected keys from {sorted(columns)}, actual {missing or keys!r}")
    return list(keys)


def _plot_curve(ax, steps, y, smooth, label, color=None):
    if smooth > 1:
        (raw,) = ax.plot(steps, y, color=color, alpha=0.25, linewidth=0.8)
        color = raw.get_color()
    ax.plot(steps, _moving_average(y, smooth), color=color, label=label)


def _image_grid(images, max_images):
    """A ``[rows * H, cols * W, C]`` mosaic in [0, 1] of images ``[N, C, H, W]`` in [-1, 1]."""
    images = np.clip((images[:max_images] + 1.0) / 2.0, 0.0, 1.0).transpose(0, 2, 3, 1)
    n, h, w, c = images.shape
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    pad = 2
    grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c))
    for i, image in enumerate(images):
        r, k = divmod(i, cols)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w] = image
    return grid[..., 0] if c == 1 else grid


def _kind(shape):
    """``"1d"``, ``"2d"`` or ``"image"`` for a batch shape, or ``None``."""
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        return "1d"
    if len(shape) == 2 and shape[1] == 2:
        return "2d"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "image"
    return None


# -- the plots ----------------------------------------------------------------------------------
def samples(samples, data=None, *, ax=None, path=None, bins=60, max_images=64, title=None, figsize=None):
    """Generated samples against the data.

    * ``[N]`` or ``[N, 1]``: density histograms (data filled grey, samples as a red outline);
    * ``[N, 2]``: a scatter plot (data grey, samples red), equal aspect;
    * ``[N, C, H, W]`` with ``C`` 1 or 3, values in [-1, 1]: a grid of the first ``max_images``
      images; with ``data``, a second grid of the data beside it (then ``ax`` is a pair of Axes).

    :param samples: generated samples.
    :param data: optional data of the same per-sample shape.
    :param ax: an Axes to draw into (a pair for images with data); default a new figure.
    :param str path: where to save a PNG.
    :param int bins: histogram bins (1-D).
    :param int max_images: images shown per grid.
    :param str title: the axes' title.
    :param figsize: the new figure's size in inches.
    :returns: the :class:`~matplotlib.figure.Figure`.

    >>> import torch
    >>> fig = samples(torch.randn(1000), data=torch.randn(1000))
    >>> len(fig.axes)
    1
    """
    x = _numpy(samples, "samples", finite=True)
    kind = _kind(x.shape)
    if kind is None or x.shape[0] == 0:
        raise ValueError(
            f"Expected samples of shape [N], [N, 1], [N, 2] or [N, C, H, W] with C 1 or 3 and N >= 1, "
            f"actual {list(x.shape)}"
        )
    y = None
    if data is not None:
        y = _numpy(data, "data", finite=True)
        same = _kind(y.shape) == "1d" if kind == "1d" else y.shape[1:] == x.shape[1:]
        if not same or y.shape[0] == 0:
            raise ValueError(
                f"Expected data of the samples' per-sample shape {list(x.shape[1:])}, actual {list(y.shape)}"
            )
    if not (isinstance(max_images, int) and max_images >= 1):
        raise ValueError(f"Expected max_images to be an int >= 1, actual {max_images!r}")
    if kind == "image":
        fig, axes = _axes(ax, figsize or (5 * (1 + (y is not None)), 5), ncols=1 + (y is not None))
        for a, (images, label) in zip(axes, ((x, "generated"), (y, "data"))):
            grid = _image_grid(images, max_images)
            a.imshow(grid, cmap="gray" if grid.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
            a.set_axis_off()
            a.set_title(label if title is None or label == "data" else title)
        return _finish(fig, path)
    fig, (a,) = _axes(ax, figsize or (5, 5))
    if kind == "1d":
        x = x.reshape(-1)
        edges = np.histogram_bin_edges(x if y is None else np.concatenate([x, y.reshape(-1)]), bins=bins)
        if y is not None:
            a.hist(y.reshape(-1), bins=edges, density=True, histtype="stepfilled", color=_DATA_COLOR, alpha=0.6,
                   label="data")
        a.hist(x, bins=edges, density=True, histtype="step", color=_SAMPLE_COLOR, label="generated")
        a.set_ylabel("density")
    else:
        if y is not None:
            a.scatter(y[:, 0], y[:, 1], s=4, color=_DATA_COLOR, label="data")
        a.scatter(x[:, 0], x[:, 1], s=3, color=_SAMPLE_COLOR, alpha=0.5, label="generated")
        a.set_aspect("equal")
    if title is not None:
        a.set_title(title)
    a.legend(loc="best", frameon=False, markerscale=3)
    return _finish(fig, path)


def training_curves(history, keys=None, *, smooth=1, label=None, ax=None, path=None, title=None, figsize=None):
    """Loss curves over training.

    :param history: a list of ``loss.last`` records (dicts with ``critic_loss``,
        ``generator_loss``, ``critic_real``, ``critic_fake``, ``divergence``, ``penalty``,
        ``step``, ...), or a dict of equally long lists. The x axis is ``step`` where present,
        else the record's index; a key a record lacks is a gap.
    :param keys: a key or list of keys to draw; default ``critic_loss`` and ``generator_loss``
        (or every numeric key if neither is there).
    :param int smooth: the window of a trailing moving average; above 1 the raw values are
        drawn faintly behind the smoothed ones.
    :param str label: names the run in the legend (to compare runs in one ``ax``): the legend
        entry is ``label`` for one key, ``"label: key"`` for several; default the key.
    :param ax: an Axes to draw into; default a new figure.
    :param str path: where to save a PNG.
    :param str title: the axes' title.
    :param figsize: the new figure's size in inches.
    :returns: the :class:`~matplotlib.figure.Figure`.

    >>> history = [{"critic_loss": 1.4 - 0.01 * i, "generator_loss": 0.7, "step": i} for i in range(50)]
    >>> fig = training_curves(history, smooth=5)
    >>> len(fig.axes[0].lines)
    4
    """
    _check_smooth(smooth)
    steps, columns = _history(history)
    keys = _curve_keys(columns, keys)
    fig, (a,) = _axes(ax, figsize or (6, 4))
    for key in keys:
        name = key if label is None else label if len(keys) == 1 else f"{label}: {key}"
        _plot_curve(a, steps, columns[key], smooth, name)
    a.set_xlabel("step")
    if title is not None:
        a.set_title(title)
    a.legend(loc="best", frameon=False)
    return _finish(fig, path)


def divergence_estimates(history, true_value=None, *, key="divergence", smooth=1, label=None, ax=None,
                         path=None, title=None, figsize=None):
    """The critic's estimate of the divergence over training, against its exact value.

    Every bayesgan loss records its estimate as ``last["divergence"]`` (the Fenchel bound of an
    f-GAN, the Wasserstein critic's gap, MMD²).

    :param history: as in :func:`training_curves`.
    :param true_value: the exact divergence: a number (a horizontal line), or one value per
        record (for a generator that moves, the exact divergence at each step); ``None`` for none.
    :param str key: the record's key.
    :param int smooth: moving-average window of the estimate.
    :param str label: the estimate's legend entry (to compare runs in one ``ax``); default
        ``"estimate (key)"``.
    :param ax: an Axes to draw into; default a new figure.
    :param str path: where to save a PNG.
    :param str title: the axes' title.
    :param figsize: the new figure's size in inches.
    :returns: the :class:`~matplotlib.figure.Figure`.

    >>> history = [{"divergence": 0.5 * (1 - 0.9**i), "step": i} for i in range(40)]
    >>> fig = divergence_estimates(history, true_value=0.5)
    >>> len(fig.axes[0].lines)
    2
    """
    _check_smooth(smooth)
    steps, columns = _history(history)
    (key,) = _curve_keys(columns, [key])
    fig, (a,) = _axes(ax, figsize or (6, 4))
    _plot_curve(a, steps, columns[key], smooth, f"estimate ({key})" if label is None else label)
    if true_value is not None:
        exact = _numpy(true_value, "true_value")
        if exact.ndim == 0:
            a.axhline(float(exact), color="black", linestyle="--", label="exact")
        elif exact.shape == steps.shape:
            a.plot(steps, exact, color="black", linestyle="--", label="exact")
        else:
            raise ValueError(
                f"Expected true_value to be a number or one value per record ({len(steps)}), actual shape "
                f"{list(exact.shape)}"
            )
    a.set_xlabel("step")
    a.set_ylabel(key)
    if title is not None:
        a.set_title(title)
    a.legend(loc="best", frameon=False)
    return _finish(fig, path)


def predictive_spread(draws, data=None, *, ax=None, path=None, bins=60, band=(5.0, 95.0), method="histogram",
                      title=None, figsize=None):
    """How much the generated distribution varies across posterior draws of the weights (e.g. MC
    dropout masks, see :func:`bayesgan.handlers.mc_dropout`).

    * 1-D (``[D, N]`` or ``[D, N, 1]``): each draw's density on one common grid (a histogram, or
      a Gaussian KDE with ``method="kde"``); the median across draws as a line and the ``band``
      percentiles as a shaded band, the data's histogram behind them;
    * 2-D (``[D, N, 2]``): each draw's samples as a scatter in its own light color (tab10,
      translucent) over the data in grey.

    :param draws: samples from ``D >= 2`` weight draws, ``N`` each.
    :param data: optional data, ``[M]``, ``[M, 1]`` or ``[M, 2]``.
    :param ax: an Axes to draw into; default a new figure.
    :param str path: where to save a PNG.
    :param int bins: grid cells (1-D).
    :param band: the lower and upper percentiles of the band (1-D).
    :param str method: ``"histogram"`` or ``"kde"`` (1-D).
    :param str title: the axes' title.
    :param figsize: the new figure's size in inches.
    :returns: the :class:`~matplotlib.figure.Figure`.

    >>> import torch
    >>> draws = torch.randn(8, 500) + 0.1 * torch.randn(8, 1)
    >>> fig = predictive_spread(draws, data=torch.randn(1000))
    >>> len(fig.axes[0].lines), len(fig.axes[0].collections)
    (1, 1)
    """
    x = _numpy(draws, "draws", finite=True)
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[2] not in (1, 2) or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError(
            f"Expected draws of shape [D, N], [D, N, 1] or [D, N, 2] with D >= 2 draws of N >= 2 samples, "
            f"actual {list(np.shape(draws))}"
        )
    dim = x.shape[2]
    y = None
    if data is not None:
        y = _numpy(data, "data", finite=True)
        y = y[:, None] if y.ndim == 1 else y
        if y.ndim != 2 or y.shape[1] != dim or y.shape[0] == 0:
            raise ValueError(f"Expected data of dimension {dim} ([M] or [M, {dim}]), actual {list(np.shape(data))}")
    if method not in ("histogram", "kde"):
        raise ValueError(f"Expected method 'histogram' or 'kde', actual {method!r}")
    if method == "kde" and dim == 1 and (x[..., 0].std(axis=1) == 0).any():
        raise ValueError("Expected every draw to have spread for method='kde', actual a draw of identical values")
    lo, hi = band
    if not 0 <= lo < hi <= 100:
        raise ValueError(f"Expected band percentiles 0 <= lower < upper <= 100, actual {band!r}")
    fig, (a,) = _axes(ax, figsize or ((6, 4) if dim == 1 else (5, 5)))
    if dim == 1:
        _density_band(a, x[..., 0], None if y is None else y[:, 0], bins, (lo, hi), method)
    else:
        if y is not None:
            a.scatter(y[:, 0], y[:, 1], s=4, color=_DATA_COLOR, label="data")
        for i, (draw, color) in enumerate(zip(x, _light_colors(x.shape[0]))):
            a.scatter(draw[:, 0], draw[:, 1], s=3, color=color, alpha=0.45, label=f"{len(x)} draws" if i == 0 else None)
        a.set_aspect("equal")
        a.legend(loc="best", frameon=False, markerscale=3)
    if title is not None:
        a.set_title(title)
    return _finish(fig, path)


def _light_colors(n):
    """``n`` distinct colors, cycling through tab10 (drawn with alpha, they come out light)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def _density_band(a, x, y, bins, band, method):
    values = x.reshape(-1) if y is None else np.concatenate([x.reshape(-1), y])
    edges = np.histogram_bin_edges(values, bins=bins)
    centers = 0.5 * (edges[1:] + edges[:-1])
    if method == "kde":
        from scipy.stats import gaussian_kde

        densities = np.stack([gaussian_kde(draw)(centers) for draw in x])
    else:
        densities = np.stack([np.histogram(draw, bins=edges, density=True)[0] for draw in x])
    if y is not None:
        a.hist(y, bins=edges, density=True, histtype="stepfilled", color=_DATA_COLOR, alpha=0.4, label="data")
    low, median, high = np.percentile(densities, [band[0], 50.0, band[1]], axis=0)
    a.fill_between(centers, low, high, color=_SAMPLE_COLOR, alpha=0.3, linewidth=0,
                   label=f"{band[0]:g}-{band[1]:g}% of {len(x)} draws")
    a.plot(centers, median, color=_SAMPLE_COLOR, label="median density")
    a.set_ylabel("density")
    a.legend(loc="best", frameon=False)
