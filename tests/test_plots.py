"""bayesgan.plots: every function saves a PNG, returns its Figure, draws into a given Axes and
rejects bad shapes."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from bayesgan import plots  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def pyplot_axes():
    """An Axes of a pyplot figure, closed after the test."""
    fig, ax = plt.subplots()
    yield ax
    plt.close(fig)


def _png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 1000
    return data


def _history(n=60, critic_steps=1):
    """``loss.last`` records as AdversarialLoss._finish writes them."""
    return [
        {"critic_loss": 1.4 - 0.01 * i, "generator_loss": 0.7 + 0.005 * i, "critic_real": 0.5, "critic_fake": 0.5,
         "divergence": 0.3 * (1 - 0.95**i), "penalty": 0.0, "step": i,
         "generator_updated": i % critic_steps == critic_steps - 1}
        for i in range(n)
    ]


# -- samples --------------------------------------------------------------------------------------
def test_samples_2d_scatter(tmp_path, rng):
    fig = plots.samples(torch.randn(300, 2, generator=rng), data=np.random.default_rng(0).normal(size=(200, 2)),
                        path=tmp_path / "s.png", title="ring")
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [200, 300]  # data below, samples on top
    assert ax.get_title() == "ring" and ax.get_legend() is not None
    _png(tmp_path / "s.png")


@pytest.mark.parametrize("shape", [(400,), (400, 1)])
def test_samples_1d_histograms(tmp_path, rng, shape):
    fig = plots.samples(torch.randn(shape, generator=rng), data=torch.randn(500, generator=rng), bins=30,
                        path=tmp_path / "h.png")
    ax = fig.axes[0]
    assert len(ax.patches) == 2  # one stepfilled (data) and one step (samples) histogram
    assert ax.get_legend() is not None
    _png(tmp_path / "h.png")
    fig = plots.samples(torch.randn(shape, generator=rng), bins=30)
    assert len(fig.axes[0].patches) == 1


@pytest.mark.parametrize("channels", [1, 3])
def test_samples_image_grid(tmp_path, rng, channels):
    images = torch.rand(10, channels, 8, 8, generator=rng) * 2 - 1
    fig = plots.samples(images, path=tmp_path / "g.png")
    assert len(fig.axes) == 1
    (image,) = fig.axes[0].images
    grid = image.get_array()
    assert grid.shape[:2] == (3 * 10 + 2, 4 * 10 + 2)  # 4 columns x 3 rows of 8 px + 2 px padding
    assert grid.min() >= 0 and grid.max() <= 1
    _png(tmp_path / "g.png")
    fig = plots.samples(images, data=images[:4], max_images=4)
    assert len(fig.axes) == 2 and [a.get_title() for a in fig.axes] == ["generated", "data"]
    assert fig.axes[0].images[0].get_array().shape[:2] == (2 * 10 + 2, 2 * 10 + 2)


def test_samples_into_given_axes(pyplot_axes, tmp_path, rng):
    fig = plots.samples(torch.randn(50, 2, generator=rng), ax=pyplot_axes, path=tmp_path / "a.png")
    assert fig is pyplot_axes.figure and len(pyplot_axes.collections) == 1
    _png(tmp_path / "a.png")
    pair = Figure().subplots(1, 2)
    fig = plots.samples(torch.zeros(4, 1, 4, 4), data=torch.zeros(4, 1, 4, 4), ax=pair)
    assert fig is pair[0].figure and all(len(a.images) == 1 for a in pair)


def test_samples_and_spread_into_shared_axes(rng):
    axes = Figure().subplots(1, 2, sharex=True, sharey=True)  # an equal aspect must not refuse these
    fig = plots.samples(torch.randn(50, 2, generator=rng), ax=axes[0])
    plots.predictive_spread(torch.randn(3, 50, 2, generator=rng), ax=axes[1])
    fig.canvas.draw()
    assert all(a.get_aspect() == 1.0 for a in axes)


def test_samples_in_a_subfigure_returns_the_saving_figure(tmp_path, rng):
    root = Figure()
    ax = root.subfigures(1, 2)[1].subplots()
    fig = plots.samples(torch.randn(50, 2, generator=rng), ax=ax, path=tmp_path / "sub.png")
    assert fig is root
    _png(tmp_path / "sub.png")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"samples": torch.zeros(10, 3)}, r"Expected samples of shape .* actual \[10, 3\]"),
        ({"samples": torch.zeros(10, 2, 8, 8)}, r"actual \[10, 2, 8, 8\]"),
        ({"samples": torch.zeros(0, 2)}, r"actual \[0, 2\]"),
        ({"samples": "abc"}, "Expected samples to be a tensor or array of numbers, actual str"),
        ({"samples": torch.tensor([[0.0, float("nan")]])}, "Expected finite samples, actual 1 NaN or inf"),
        ({"samples": torch.zeros(3), "data": [1.0, float("inf")]}, "Expected finite data, actual 1 NaN"),
        ({"samples": torch.zeros(10, 2), "data": torch.zeros(10, 1)}, r"per-sample shape \[2\], actual \[10, 1\]"),
        ({"samples": torch.zeros(10), "data": torch.zeros(10, 2)}, r"actual \[10, 2\]"),
        ({"samples": torch.zeros(2, 1, 4, 4), "max_images": 0}, "max_images to be an int >= 1"),
        ({"samples": torch.zeros(10, 2), "ax": "axes"}, "Expected ax to be one Axes, actual 'axes'"),
        ({"samples": torch.zeros(2, 1, 4, 4), "data": torch.zeros(2, 1, 4, 4), "ax": Figure().subplots()},
         "Expected ax to be 2 Axes"),
    ],
)
def test_samples_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.samples(**kwargs)


# -- training curves ------------------------------------------------------------------------------
def test_training_curves_from_records(tmp_path):
    fig = plots.training_curves(_history(), path=tmp_path / "c.png", title="losses")
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.lines] == ["critic_loss", "generator_loss"]
    assert np.allclose(ax.lines[0].get_xdata(), np.arange(60))
    assert ax.get_title() == "losses"
    _png(tmp_path / "c.png")


def test_training_curves_smoothing_is_a_trailing_mean():
    history = {"critic_loss": [0.0, 3.0, 6.0, 3.0, float("nan"), 9.0], "step": [10, 11, 12, 13, 14, 15]}
    fig = plots.training_curves(history, smooth=3)
    raw, smoothed = fig.axes[0].lines  # the raw curve faint behind the smoothed one
    assert raw.get_alpha() < 1 and raw.get_color() == smoothed.get_color()
    assert np.allclose(smoothed.get_xdata(), [10, 11, 12, 13, 14, 15])
    # trailing windows of 3, fewer at the start, NaN skipped
    assert np.allclose(smoothed.get_ydata(), [0.0, 1.5, 3.0, 4.0, 4.5, 6.0])


def test_training_curves_keys_and_missing_values(pyplot_axes):
    history = _history(10)
    history[3]["generator_penalty"] = 0.5
    fig = plots.training_curves(history, keys=["divergence", "generator_penalty"], ax=pyplot_axes)
    assert fig is pyplot_axes.figure and len(pyplot_axes.lines) == 2
    gp = pyplot_axes.lines[1].get_ydata()
    assert gp[3] == 0.5 and np.isnan(gp[[0, 1, 2, 4]]).all()  # a key a record lacks is a gap
    fig = plots.training_curves({"mmd2": [0.3, 0.2, 0.1]})  # neither loss key: every numeric key
    assert [line.get_label() for line in fig.axes[0].lines] == ["mmd2"]
    fig = plots.training_curves(history, keys="penalty")
    assert len(fig.axes[0].lines) == 1


def test_training_curves_label_runs_compared_in_one_axes(pyplot_axes):
    for run in ("a", "b"):
        plots.training_curves(_history(10), keys=["generator_loss"], label=run, ax=pyplot_axes)
    assert [line.get_label() for line in pyplot_axes.lines] == ["a", "b"]
    assert pyplot_axes.lines[0].get_color() != pyplot_axes.lines[1].get_color()
    assert [t.get_text() for t in pyplot_axes.get_legend().get_texts()] == ["a", "b"]
    fig = plots.training_curves(_history(10), label="run", smooth=2)
    assert [line.get_label() for line in fig.axes[0].lines if not line.get_label().startswith("_")] == [
        "run: critic_loss", "run: generator_loss"]


@pytest.mark.parametrize(
    "history, kwargs, message",
    [
        ([], {}, "non-empty history"),
        ({"critic_loss": []}, {}, "non-empty history"),
        ("loss", {}, "list of dicts or a dict of lists, actual str"),
        ([1.0, 2.0], {}, "list of dicts"),
        ([{"critic_loss": "high"}], {}, "Expected numbers in the history"),
        ({"critic_loss": [1.0, 2.0], "generator_loss": [1.0]}, {}, "lists of one length"),
        (_history(5), {"keys": ["nope"]}, r"Expected keys from \[.*\], actual \['nope'\]"),
        (_history(5), {"keys": []}, "Expected keys from"),
        (_history(5), {"smooth": 0}, "smooth to be an int >= 1, actual 0"),
        (_history(5), {"smooth": 2.5}, "smooth to be an int >= 1, actual 2.5"),
    ],
)
def test_training_curves_errors(history, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.training_curves(history, **kwargs)


# -- divergence estimates ---------------------------------------------------------------------------
def test_divergence_estimates_with_an_exact_line(tmp_path):
    fig = plots.divergence_estimates(_history(), true_value=0.3, path=tmp_path / "d.png")
    ax = fig.axes[0]
    estimate, exact = ax.lines
    assert estimate.get_label() == "estimate (divergence)" and exact.get_label() == "exact"
    assert np.allclose(exact.get_ydata(), 0.3)
    _png(tmp_path / "d.png")


def test_divergence_estimates_per_step_truth_key_and_smoothing(pyplot_axes):
    history = {"mmd2": [0.5, 0.4, 0.3, 0.2]}
    fig = plots.divergence_estimates(history, true_value=torch.tensor([0.45, 0.35, 0.25, 0.15]), key="mmd2",
                                     smooth=2, ax=pyplot_axes)
    assert fig is pyplot_axes.figure
    raw, smoothed, exact = pyplot_axes.lines
    assert np.allclose(exact.get_ydata(), [0.45, 0.35, 0.25, 0.15])
    assert np.allclose(smoothed.get_ydata(), [0.5, 0.45, 0.35, 0.25])
    fig = plots.divergence_estimates(history, key="mmd2")
    assert len(fig.axes[0].lines) == 1


def test_divergence_estimates_label_runs_compared_in_one_axes(pyplot_axes):
    for run in ("deterministic", "relaxed"):
        plots.divergence_estimates(_history(10), label=run, ax=pyplot_axes)
    assert [line.get_label() for line in pyplot_axes.lines] == ["deterministic", "relaxed"]
    assert pyplot_axes.lines[0].get_color() != pyplot_axes.lines[1].get_color()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"true_value": [0.1, 0.2]}, r"one value per record \(60\), actual shape \[2\]"),
        ({"key": "wasserstein"}, r"actual \['wasserstein'\]"),
        ({"smooth": -1}, "smooth to be an int >= 1"),
    ],
)
def test_divergence_estimates_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.divergence_estimates(_history(), **kwargs)


# -- predictive spread ----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["histogram", "kde"])
def test_predictive_spread_1d_band(tmp_path, rng, method):
    shifts = torch.linspace(-0.5, 0.5, 6)[:, None]
    draws = torch.randn(6, 400, generator=rng) + shifts
    fig = plots.predictive_spread(draws[..., None], data=torch.randn(300, generator=rng), bins=40, method=method,
                                  path=tmp_path / "p.png")
    ax = fig.axes[0]
    (median,) = ax.lines
    (band,) = ax.collections
    assert len(ax.patches) == 1  # the data's histogram
    assert len(median.get_xdata()) == 40
    assert band.get_label() == "5-95% of 6 draws"
    _png(tmp_path / "p.png")


def test_predictive_spread_band_is_the_percentiles_of_per_draw_histograms(rng):
    draws = torch.randn(20, 2000, generator=rng) * torch.linspace(0.8, 1.2, 20)[:, None]
    fig = plots.predictive_spread(draws, bins=20, band=(10, 90))
    ax = fig.axes[0]
    edges = np.histogram_bin_edges(draws.numpy().reshape(-1), bins=20)
    densities = np.stack([np.histogram(d, bins=edges, density=True)[0] for d in draws.numpy()])
    low, median, high = np.percentile(densities, [10, 50, 90], axis=0)
    centers = 0.5 * (edges[1:] + edges[:-1])
    assert np.allclose(ax.lines[0].get_xdata(), centers) and np.allclose(ax.lines[0].get_ydata(), median)
    vertices = ax.collections[0].get_paths()[0].vertices
    for c, lo, hi in zip(centers, low, high):
        ys = vertices[np.isclose(vertices[:, 0], c), 1]
        assert np.isclose(ys.min(), lo) and np.isclose(ys.max(), hi)
    assert np.max(high - low) > 0.01  # the draws differ, so the band has width


def test_predictive_spread_2d_scatter_per_draw(tmp_path, pyplot_axes, rng):
    draws = torch.randn(5, 100, 2, generator=rng)
    fig = plots.predictive_spread(draws, data=torch.randn(80, 2, generator=rng), ax=pyplot_axes,
                                  path=tmp_path / "q.png")
    assert fig is pyplot_axes.figure
    assert [len(c.get_offsets()) for c in pyplot_axes.collections] == [80] + [100] * 5  # data below
    assert len({tuple(c.get_facecolor()[0]) for c in pyplot_axes.collections[1:]}) == 5
    _png(tmp_path / "q.png")


@pytest.mark.parametrize(
    "draws, kwargs, message",
    [
        (torch.zeros(1, 10), {}, r"D >= 2 draws .* actual \[1, 10\]"),
        (torch.zeros(4, 1, 2), {}, r"actual \[4, 1, 2\]"),
        (torch.zeros(4, 10, 3), {}, r"actual \[4, 10, 3\]"),
        (torch.zeros(10), {}, r"actual \[10\]"),
        (torch.zeros(4, 10, 2), {"data": torch.zeros(5)}, r"data of dimension 2 \(\[M\] or \[M, 2\]\), actual \[5\]"),
        (torch.zeros(4, 10), {"data": torch.zeros(5, 2)}, r"data of dimension 1 .* actual \[5, 2\]"),
        (torch.full((4, 10), float("nan")), {}, "Expected finite draws, actual 40 NaN or inf"),
        (torch.zeros(4, 10), {"method": "kde"}, "every draw to have spread for method='kde'"),
        (torch.zeros(4, 10), {"method": "spline"}, "method 'histogram' or 'kde', actual 'spline'"),
        (torch.zeros(4, 10), {"band": (95, 5)}, r"0 <= lower < upper <= 100, actual \(95, 5\)"),
        (torch.zeros(4, 10), {"band": (0, 101)}, "0 <= lower < upper <= 100"),
    ],
)
def test_predictive_spread_errors(draws, kwargs, message):
    with pytest.raises(ValueError, match=message):
        plots.predictive_spread(draws, **kwargs)


def test_new_figures_are_not_left_open_in_pyplot(rng):
    before = plt.get_fignums()
    plots.samples(torch.randn(10, 2, generator=rng))
    plots.training_curves(_history(5))
    plots.divergence_estimates(_history(5), true_value=0.3)
    plots.predictive_spread(torch.randn(3, 10, generator=rng))
    assert plt.get_fignums() == before
