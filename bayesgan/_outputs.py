"""What a ``bayesgan train`` run writes: the CSV logs (and TensorBoard), sample grids and
scatter plots, periodic metrics and the closing summary. Private to :mod:`bayesgan.cli`."""

import contextlib
import csv
import functools
import math
import os

import torch

from . import datasets, distributed, images, metrics
from .handlers import mc_dropout


class Logs:
    """train_log.csv (losses), metrics_log.csv (periodic metrics) and TensorBoard when it is
    installed. A resumed run keeps the rows of the steps before ``start`` and appends."""

    def __init__(self, out, start):
        self.out, self.start, self.files, self.writers = out, start, {}, {}
        self.enabled = distributed.is_main_process()  # the other ranks write nothing
        self.tensorboard = tensorboard(out / "tensorboard", start) if self.enabled else None

    def __enter__(self):
        if not self.enabled:
            return self
        for name in ("train_log.csv", "metrics_log.csv"):
            path = self.out / name
            if self.start == 0 or not path.is_file():
                path.unlink(missing_ok=True)
                continue
            with open(path, newline="") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) < self.start]
            temporary = path.with_name(f".{path.name}.tmp")
            with open(temporary, "w", newline="") as f:
                if rows:
                    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                    writer.writeheader()
                    writer.writerows(rows)
            os.replace(temporary, path)
        return self

    def __exit__(self, *exc):
        for f in self.files.values():
            f.close()
        if self.tensorboard is not None:
            self.tensorboard.close()

    def _write(self, name, row):
        if not self.enabled:
            return
        if name not in self.files:
            path = self.out / name
            fresh = not path.is_file() or path.stat().st_size == 0
            self.files[name] = open(path, "a", newline="")
            self.writers[name] = csv.DictWriter(self.files[name], fieldnames=list(row), extrasaction="ignore")
            if fresh:
                self.writers[name].writeheader()
        self.writers[name].writerow(row)
        self.files[name].flush()

    def losses(self, last, rate):
        """One train_log.csv row: the loss's record of the step and the throughput."""
        self._write("train_log.csv", {**last, "samples_per_s": rate})
        self._scalars("train", last["step"] + 1, {k: v for k, v in last.items() if k != "step"})

    def metrics(self, step, values):
        """One metrics_log.csv row: the scalar metrics after ``step`` steps."""
        scalars = {k: v for k, v in values.items() if isinstance(v, (int, float))}
        self._write("metrics_log.csv", {"step": step, **scalars})
        self._scalars("metrics", step, scalars)

    def _scalars(self, prefix, step, values):
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"{prefix}/{key}", float(value), step)


def tensorboard(path, start):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: the tensorboard package is not a dependency
        return None
    return SummaryWriter(str(path), purge_step=start or None)


@contextlib.contextmanager
def sampling(run):
    """Generate as for evaluation without touching training: the EMA weights if any, eval mode
    (BatchNorm's running statistics; dropout stays on: MC dropout), no gradients, and the random
    number generators restored afterwards, so a run with and without samples trains alike."""
    devices = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad(), \
            (run.ema.average_parameters() if run.ema else contextlib.nullcontext()), mc_dropout(run.generator):
        yield


def generate(run, n):
    chunk = n if run.target is not None else 256
    parts = [run.model(num_samples=min(chunk, n - i)) for i in range(0, n, chunk)]
    return torch.cat(parts).float().cpu()


def evaluate(run, n):
    with sampling(run):
        samples = generate(run, n)
    return sample_metrics(run, samples)


def sample_metrics(run, samples):
    target = run.target
    if target is None:
        return image_metrics(run.data[: len(samples)].float().cpu(), samples)
    if target.name == "normal_2d":
        return {metrics.KEY_CHI2_DECILE: metrics.chi2_decile_score(samples)}
    if isinstance(target, datasets.GaussianMixture) and bool((target.stds == target.stds[0]).all()):
        return metrics.mode_coverage(samples, target.means, target.std)
    return {}


KEY_KID_PIXELS = "kid_pixels16"
KEY_FID_DIGITS = "fid_digits"
KEY_PRECISION_DIGITS = "precision_digits"
KEY_RECALL_DIGITS = "recall_digits"


def image_metrics(real, fake):
    """Cheap image metrics for the periodic log: KID between real and generated pixels at 16x16
    (grey or RGB); for grey images also FID and precision/recall in the feature space of a small
    digits classifier (:class:`~bayesgan.metrics.DigitsFeatures`, images area-resized to 8x8),
    a Fréchet distance comparable only to itself. Inception FID: :func:`bayesgan.metrics.image_metrics`."""
    if len(real) < 2 or len(fake) < 2:
        return {}
    small = [images.resize(x, 16).flatten(1) if x.shape[-1] > 16 else x.flatten(1) for x in (real, fake)]
    result = metrics.kid(*small, num_subsets=10, subset_size=1000, generator=torch.Generator().manual_seed(0))
    out = {KEY_KID_PIXELS: result[metrics.KEY_KID]}
    if real.shape[1] == 1 and len(real) > 2 and len(fake) > 2:
        found = metrics.image_metrics(fake, real, extractor=_digits_features(), compute=("fid", "precision_recall"))
        out.update({KEY_FID_DIGITS: found[metrics.KEY_FID], KEY_PRECISION_DIGITS: found[metrics.KEY_PRECISION],
                    KEY_RECALL_DIGITS: found[metrics.KEY_RECALL]})
    return out


@functools.lru_cache(maxsize=1)
def _digits_features():
    """The digits feature extractor, trained once per process (1-2 s; the global RNG is kept)."""
    return metrics.DigitsFeatures.trained()


def write_samples(run, path, title):
    path.parent.mkdir(parents=True, exist_ok=True)
    with sampling(run):
        if run.target is None:
            samples = run.generator(run.fixed_z.to(run.device, next(run.generator.parameters()).dtype))
        else:
            samples = run.model(num_samples=1000)
    samples = samples.float().cpu()
    if run.target is None:
        write_grid(path, samples)
    else:
        plot(path, run.data[:1000].float().cpu(), samples, run.target, title)


def write_grid(path, samples, columns=8):
    """A PNG grid of images ``[n, C, H, W]`` in [-1, 1], 2 px apart."""
    from matplotlib.image import imsave

    n, c, h, w = samples.shape
    rows = math.ceil(n / columns)
    grid = torch.ones(c, rows * (h + 2) + 2, columns * (w + 2) + 2)
    for i, image in enumerate(samples.clamp(-1, 1).add(1).div(2)):
        r, k = divmod(i, columns)
        grid[:, 2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + k * (w + 2): 2 + k * (w + 2) + w] = image
    pixels = grid[0].numpy() if c == 1 else grid.permute(1, 2, 0).numpy()
    imsave(path, pixels, cmap="gray" if c == 1 else None, vmin=0.0, vmax=1.0)


def finite(value):
    """JSON has no inf or NaN: write them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def plot(path, data, samples, target, title):
    # A bare Figure on the Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data, samples = data.numpy(), samples.detach().numpy()
    fig = Figure(figsize=(5, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if target.dim == 1:
        bins = 60
        ax.hist(data[:, 0], bins=bins, density=True, histtype="stepfilled", color="0.75", label="data")
        ax.hist(samples[:, 0], bins=bins, density=True, histtype="step", color="tab:red",
                label="generated")
    else:
        ax.scatter(data[:, 0], data[:, 1], s=4, c="0.6", label="data")
        ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:red", alpha=0.5, label="generated")
        ax.set_aspect("equal")
    ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, markerscale=3)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def summary(result, out):
    parts = [f"{result['steps']} steps in {result['wall_time_s']:.1f} s"]
    if metrics.KEY_MODES in result:
        parts.append(
            f"modes {result[metrics.KEY_MODES]}/{len(result[metrics.KEY_MODE_COUNTS])}, "
            f"high quality {100 * result[metrics.KEY_HIGH_QUALITY]:.1f}%, "
            f"reverse KL {result[metrics.KEY_REVERSE_KL]:.3f}"
        )
    if KEY_KID_PIXELS in result:
        parts.append(f"pixel KID (16x16) {result[KEY_KID_PIXELS]:.4f}")
    if KEY_FID_DIGITS in result:
        parts.append(f"FID in digit features {result[KEY_FID_DIGITS]:.3f}")
    parts.append(f"outputs in {out}")
    return "; ".join(parts)
