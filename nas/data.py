"""Image data for proxy tasks: the `data:` section, loaders per kind, splits, batches.

Every kind ends up as uint8 NCHW tensors at the search resolution plus int64
labels, split into train / validation / test. The test split is fixed before
anything else (a separate file, or `test_fraction` carved first from the data), so
tuning `val_fraction` or subset sizes never moves a test image into training; search
and NetAdapt only ever see train and validation.

Augmentation (random crop with padding, horizontal flip) runs on whole uint8 batches
with vectorised torch ops, so the trainer's hot path has no per-image Python loop.
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Literal

import numpy as np
import torch
from torch.nn import functional as F

from nas.configload import non_negative, positive
from search_spaces.errors import UserError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_CHECKSUM = "md5:c58f30108f718f92721af3b95e74349a"  # the official archive's MD5
CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MAX_SYNTHETIC_CLASSES = 40  # the teacher's 32 features still separate 40 balanced classes


def _fraction_below_one(value: float) -> str | None:
    return None if 0 <= value < 1 else f"must be in [0, 1), got {value}"


def _open_fraction(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be in (0, 1), got {value}"


def _checksum_spec(value: str) -> str | None:
    algo, sep, digest = value.partition(":")
    if not sep or algo.lower() not in hashlib.algorithms_guaranteed or not digest:
        return f"expected 'ALGORITHM:HEXDIGEST' (e.g. md5:..., sha256:...), got '{value}'"
    try:
        bytes.fromhex(digest)
    except ValueError:
        return f"'{digest}' is not a hex digest"
    return None


def _synthetic_classes(value: int) -> str | None:
    if 2 <= value <= MAX_SYNTHETIC_CLASSES:
        return None
    return f"must be in 2..{MAX_SYNTHETIC_CLASSES}, got {value}"


@dataclass
class SyntheticConfig:
    """`data.synthetic:` the built-in generated data set (no files)."""

    num_classes: int = field(default=10, metadata={"check": _synthetic_classes})
    train_size: int = field(default=6000, metadata={"check": positive})  # train + val pool
    test_size: int = field(default=1000, metadata={"check": non_negative})
    image_size: int = field(default=32, metadata={"check": positive})
    noise: float = field(default=0.05, metadata={"check": non_negative})  # pixel noise, 0..1 units
    seed: int = 0  # the images themselves; `data.split_seed` only moves the splits


@dataclass
class DataConfig:
    """`data:` where the images come from and how they are split and augmented."""

    kind: Literal["synthetic", "npz", "cifar10", "imagefolder"] = "synthetic"
    # npz: the file; cifar10: the folder holding (or receiving) cifar-10-batches-py;
    # imagefolder: the root with one folder per class.
    path: Path | None = None
    test_path: Path | None = None  # a separate test set of the same kind (npz, imagefolder)
    download: bool = False  # cifar10 only: fetch the archive when the batches are absent
    url: str = CIFAR10_URL
    checksum: str = field(default=CIFAR10_CHECKSUM, metadata={"check": _checksum_spec})
    # Carved first from the training data when there is no separate test set;
    # None: 0.1 there, and nothing where the data brings its own test split.
    test_fraction: float | None = field(default=None, metadata={"check": _fraction_below_one})
    val_fraction: float = field(default=0.1, metadata={"check": _open_fraction})  # of the rest
    train_subset: int | None = field(default=None, metadata={"check": positive})
    val_subset: int | None = field(default=None, metadata={"check": positive})
    test_subset: int | None = field(default=None, metadata={"check": positive})
    augment: bool = True  # random crop (padding below) + horizontal flip, training only
    crop_padding: int = field(default=4, metadata={"check": non_negative})
    split_seed: int = 0
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass(frozen=True)
class ImageSet:
    """Images (uint8, N x C x H x W) with int64 labels and the normalisation to use."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in 0..1 units, of the training pool
    std: tuple[float, ...]
    augment: bool = False  # the trainer augments batches of this set (training split)
    crop_padding: int = 4

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 N x C x H x W, got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[-1])

    def head(self, n: int) -> "ImageSet":
        """The first `n` images (sets are stored shuffled, so this is a random subset)."""
        return replace(self, images=self.images[:n], labels=self.labels[:n])


@dataclass(frozen=True)
class Splits:
    """Train / validation / test sets of one data set; `test` is None if none was asked."""

    train: ImageSet
    val: ImageSet
    test: ImageSet | None
    source: str  # what was loaded, for logs and reports

    @property
    def classes(self) -> tuple[str, ...]:
        return self.train.classes

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)

    @property
    def mean(self) -> tuple[float, ...]:
        return self.train.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.train.std

    def summary(self) -> str:
        test = len(self.test) if self.test is not None else 0
        return (f"{self.source}: {len(self.train)} train / {len(self.val)} val / {test} test "
                f"images, {self.num_classes} classes, {self.train.resolution}x"
                f"{self.train.resolution}")


@dataclass
class _Raw:
    """What a kind's reader hands on: NHWC or NCHW uint8 arrays, labels, class names."""

    images: np.ndarray | torch.Tensor  # N x H x W x C (numpy) or N x C x H x W (torch)
    labels: np.ndarray
    test_images: np.ndarray | torch.Tensor | None
    test_labels: np.ndarray | None
    classes: tuple[str, ...]
    source: str


# ---------------------------------------------------------------- entry point


def load_data(cfg: DataConfig, resolution: int, source: str) -> Splits:
    """Read, split, subset and resize the data `cfg` describes.

    `source` is the config file, named in errors about config keys; errors about a
    data file name that file and the key inside it.
    """
    if resolution < 1:
        raise UserError(f"resolution must be >= 1, got {resolution}", source)
    if cfg.kind == "synthetic":  # checked before generating anything
        for key in ("path", "test_path"):
            if getattr(cfg, key) is not None:
                raise UserError(f"data.{key}: synthetic data reads no files", source)
        if cfg.test_fraction is not None:
            raise UserError("data.test_fraction: synthetic data generates its own test split "
                            "(data.synthetic.test_size)", source)
    if cfg.download and cfg.kind != "cifar10":
        raise UserError(f"data.download: only kind cifar10 downloads (kind is {cfg.kind})",
                        source)
    if cfg.test_path is not None and cfg.kind == "cifar10":
        raise UserError("data.test_path: cifar10 uses its own test_batch", source)
    raw = _READERS[cfg.kind](cfg, resolution, source)
    own_test = raw.test_images is not None or cfg.kind == "synthetic"
    if own_test and cfg.test_fraction is not None:
        raise UserError(f"data.test_fraction: {raw.source} brings its own test split; "
                        f"leave test_fraction unset", source)
    n = len(raw.labels)
    test_fraction = 0.0 if own_test else (0.1 if cfg.test_fraction is None else cfg.test_fraction)
    # The test split depends on split_seed and test_fraction only, never on val_fraction.
    perm = torch.randperm(n, generator=_generator(cfg.split_seed, "test"))
    n_test = int(round(test_fraction * n))
    test_idx, pool_idx = perm[:n_test], perm[n_test:]
    pool_idx = pool_idx[torch.randperm(len(pool_idx), generator=_generator(cfg.split_seed, "val"))]
    n_val = int(round(cfg.val_fraction * len(pool_idx)))
    val_idx, train_idx = pool_idx[:n_val], pool_idx[n_val:]
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"data: {n} images leave {len(train_idx)} for training and "
                        f"{len(val_idx)} for validation; both need at least one", source)
    # The pool is shuffled, so its first 10,000 images estimate the stats well enough.
    mean, std = _channel_stats(raw.images, pool_idx[:10_000])
    if cfg.train_subset is not None:
        train_idx = train_idx[:cfg.train_subset]
    if cfg.val_subset is not None:
        val_idx = val_idx[:cfg.val_subset]

    def make(images: np.ndarray | torch.Tensor, labels: np.ndarray,
             idx: torch.Tensor, augment: bool = False) -> ImageSet:
        picked = _nchw(images, idx)
        return ImageSet(_resize(picked, resolution), torch.as_tensor(labels[idx.numpy()]),
                        raw.classes, mean, std, augment, cfg.crop_padding)

    test: ImageSet | None = None
    if raw.test_images is not None and raw.test_labels is not None:
        t = len(raw.test_labels)
        idx = torch.randperm(t, generator=_generator(cfg.split_seed, "test"))
        if cfg.test_subset is not None:
            idx = idx[:cfg.test_subset]
        test = make(raw.test_images, raw.test_labels, idx) if t else None
    elif n_test:
        test = make(raw.images, raw.labels, test_idx[:cfg.test_subset])
    return Splits(train=make(raw.images, raw.labels, train_idx, cfg.augment),
                  val=make(raw.images, raw.labels, val_idx), test=test, source=raw.source)


def _generator(seed: int, purpose: str) -> torch.Generator:
    """One generator per purpose, so e.g. the val shuffle never shifts the test carve."""
    digest = hashlib.sha256(f"{seed}/{purpose}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _nchw(images: np.ndarray | torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if isinstance(images, torch.Tensor):  # already N x C x H x W
        return images[idx].contiguous()
    picked = torch.from_numpy(np.ascontiguousarray(images[idx.numpy()]))
    return picked.permute(0, 3, 1, 2).contiguous()


def _channel_stats(images: np.ndarray | torch.Tensor,
                   idx: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0..1 units) over the given images, in chunks."""
    total = torch.zeros(0, dtype=torch.float64)
    sq = total
    count = 0
    for start in range(0, len(idx), 4096):
        x = _nchw(images, idx[start:start + 4096]).to(torch.float64) / 255.0
        s, q = x.sum((0, 2, 3)), (x * x).sum((0, 2, 3))
        total, sq = (s, q) if count == 0 else (total + s, sq + q)
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (sq / count - mean * mean).clamp_min(1e-12).sqrt().clamp_min(1e-3)
    return tuple(mean.tolist()), tuple(std.tolist())


def _resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize uint8 NCHW images to resolution x resolution (bilinear, antialiased)."""
    if images.shape[-2:] == (resolution, resolution):
        return images
    out = torch.empty(images.shape[0], images.shape[1], resolution, resolution,
                      dtype=torch.uint8)
    for start in range(0, images.shape[0], 1024):
        chunk = images[start:start + 1024].float()
        chunk = F.interpolate(chunk, size=(resolution, resolution), mode="bilinear",
                              align_corners=False, antialias=True)
        out[start:start + 1024] = chunk.round().clamp(0, 255).to(torch.uint8)
    return out


# ---------------------------------------------------------------- batches + augmentation


def augment_batch(images: torch.Tensor, generator: torch.Generator,
                  padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, of a uint8 NCHW batch.

    One gather for the whole batch: every image gets its own crop offset.
    """
    n, c, h, w = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
        rows = (dy[:, None] + torch.arange(h)).to(images.device)  # n x h
        cols = (dx[:, None] + torch.arange(w)).to(images.device)  # n x w
        batch = torch.arange(n, device=images.device)[:, None, None]
        # Advanced indices around a slice: the result is n x h x w x c.
        images = padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], images.flip(3), images).contiguous()


def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
              ) -> torch.Tensor:
    """uint8 NCHW -> float32, (x/255 - mean) / std per channel."""
    m = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    return (images.float() * (1.0 / 255.0) - m) / s


def batches(data: ImageSet, batch_size: int, *, shuffle: bool = False,
            generator: torch.Generator | None = None, drop_last: bool = False
            ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One pass over `data` as (uint8 images, labels) batches."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else None
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield data.images[start:start + batch_size], data.labels[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield data.images[idx], data.labels[idx]


# ---------------------------------------------------------------- npz


def _read_npz(cfg: DataConfig, resolution: int, source: str) -> _Raw:
    path = _need_path(cfg, source)
    images, labels, test_images, test_labels, classes, lab_key = _npz_arrays(path)
    test_where, test_key = str(path), "y_test"
    if cfg.test_path is not None:
        if test_images is not None:
            raise UserError(f"data.test_path: {path} already holds x_test/y_test", source)
        test_images, test_labels, _, _, _, test_key = _npz_arrays(cfg.test_path)
        test_where = str(cfg.test_path)
    if classes is None:  # classes 0..max of the training labels; test labels must fit
        classes = tuple(str(i) for i in range(int(labels.max(initial=0)) + 1))
    _check_labels(labels, len(classes), str(path), lab_key)
    if test_labels is not None:
        _check_labels(test_labels, len(classes), test_where, test_key)
    return _Raw(images, labels, test_images, test_labels, classes, f"npz {path.name}")


def _npz_arrays(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None,
                                     np.ndarray | None, tuple[str, ...] | None, str]:
    """Images/labels (and Keras-style x_test/y_test, class names) from one npz file."""
    if not path.is_file():
        raise UserError("file not found", str(path))
    try:
        # allow_pickle=False: an npz may not smuggle in objects.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as err:
        raise UserError(f"not a readable npz file ({err})", str(path)) from None
    if "images" in arrays:
        img_key, lab_key = "images", "labels"
    elif "x_train" in arrays:
        img_key, lab_key = "x_train", "y_train"
    else:
        raise UserError(f"needs arrays 'images' and 'labels' (or 'x_train' and 'y_train'); "
                        f"found {', '.join(sorted(arrays)) or 'none'}", str(path))
    if lab_key not in arrays:
        raise UserError(f"has '{img_key}' but no '{lab_key}'", str(path))
    images = _check_images(arrays[img_key], str(path), img_key)
    labels = _check_label_array(arrays[lab_key], len(images), str(path), lab_key)
    test_images = test_labels = None
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise UserError("has only one of 'x_test' and 'y_test'", str(path))
    if "x_test" in arrays:
        test_images = _check_images(arrays["x_test"], str(path), "x_test")
        test_labels = _check_label_array(arrays["y_test"], len(test_images), str(path),
                                         "y_test")
    classes = None
    if "classes" in arrays:
        names = arrays["classes"]
        if names.ndim != 1 or names.dtype.kind not in "US" or len(names) == 0:
            raise UserError(f"key 'classes' must be a non-empty 1-D string array, got "
                            f"{names.dtype} {names.shape}", str(path))
        classes = tuple(str(c) for c in names)
    return images, labels, test_images, test_labels, classes, lab_key


def _check_images(images: np.ndarray, where: str, key: str) -> np.ndarray:
    """NHWC uint8 with 1 or 3 channels (or NHW grey); grey becomes 3 equal channels."""
    if images.dtype != np.uint8:
        raise UserError(f"key '{key}' must be uint8, got {images.dtype}", where)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3) or images.shape[0] == 0:
        raise UserError(f"key '{key}' must be N x H x W x 3 (NHWC, N > 0), got shape "
                        f"{images.shape}", where)
    if images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    return images


def _check_label_array(labels: np.ndarray, n: int, where: str, key: str) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:  # Keras stores y as N x 1
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise UserError(f"key '{key}' must be a 1-D integer array, got {labels.dtype} "
                        f"{labels.shape}", where)
    if len(labels) != n:
        raise UserError(f"key '{key}' has {len(labels)} labels for {n} images", where)
    return labels.astype(np.int64)


def _check_labels(labels: np.ndarray, num_classes: int, where: str, key: str) -> None:
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        i = int(bad[0])
        raise UserError(f"key '{key}': label {int(labels[i])} at index {i} is out of range "
                        f"0..{num_classes - 1}", where)


def _need_path(cfg: DataConfig, source: str) -> Path:
    if cfg.path is None:
        raise UserError(f"data.path: required for kind '{cfg.kind}'", source)
    return cfg.path


# ---------------------------------------------------------------- cifar10


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays, and nothing else.

    The CIFAR-10 batches are pickles; a pickle can name any importable callable
    (os.system, ...), so only the few globals a numpy array needs are resolved.
    """

    def find_class(self, module: str, name: str) -> Any:
        allowed = _allowed_globals().get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused to load global '{module}.{name}'")
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refused a persistent reference")


def _allowed_globals() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2 moved numpy.core to numpy._core; old pickles still say numpy.core
        from numpy._core import multiarray, numeric
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric  # type: ignore[no-redef]
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray,
                                         ("numpy", "dtype"): np.dtype,
                                         ("_codecs", "encode"): _latin1_bytes}
    for mod in ("numpy.core", "numpy._core"):
        table[(f"{mod}.multiarray", "_reconstruct")] = multiarray._reconstruct
        if hasattr(numeric, "_frombuffer"):  # protocol-5 pickles of arrays
            table[(f"{mod}.numeric", "_frombuffer")] = numeric._frombuffer
    return table


def _latin1_bytes(text: str, encoding: str = "utf-8") -> bytes:
    """How Python 3 spells bytes in protocol-2 pickles (`_codecs.encode(s, 'latin1')`);
    any other codec is refused rather than run."""
    if encoding.replace("-", "").lower() != "latin1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refused codec '{encoding}'")
    return text.encode("latin1")


def restricted_unpickle(path: Path) -> Any:
    """Load a pickle file that may hold only plain containers and numpy arrays."""
    try:
        with open(path, "rb") as f:
            # latin1: the official batches were pickled by Python 2 (numpy's advice).
            return _ArrayUnpickler(f, encoding="latin1").load()
    except pickle.UnpicklingError as err:
        raise UserError(f"unsafe or invalid pickle: {err}", str(path)) from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError) as err:
        raise UserError(f"invalid pickle: {err}", str(path)) from None


def _read_cifar10(cfg: DataConfig, resolution: int, source: str) -> _Raw:
    root = _need_path(cfg, source)
    folder = root if root.name == CIFAR10_FOLDER else root / CIFAR10_FOLDER
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if cfg.download and not all((folder / n).is_file() for n in names):
        download_and_extract(cfg.url, cfg.checksum, folder.parent, source)
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        hint = "" if cfg.download else " (set data.download: true to fetch it)"
        raise UserError(f"missing {', '.join(missing)} in {folder}{hint}", source)
    images, labels = [], []
    for n in names[:5]:
        x, y = _cifar_batch(folder / n)
        images.append(x)
        labels.append(y)
    test_images, test_labels = _cifar_batch(folder / "test_batch")
    classes = CIFAR10_CLASSES
    if (folder / "batches.meta").is_file():
        meta = restricted_unpickle(folder / "batches.meta")
        names_ = _get(meta, "label_names") if isinstance(meta, dict) else None
        if not isinstance(names_, list) or not all(isinstance(c, (str, bytes)) for c in names_):
            raise UserError("key 'label_names' must be a list of names",
                            str(folder / "batches.meta"))
        classes = tuple(c.decode() if isinstance(c, bytes) else c for c in names_)
    all_labels = np.concatenate(labels)
    _check_labels(all_labels, len(classes), str(folder), "labels")
    _check_labels(test_labels, len(classes), str(folder / "test_batch"), "labels")
    return _Raw(torch.cat(images), all_labels, test_images, test_labels, classes,
                f"cifar10 {folder}")


def _get(d: dict, key: str) -> Any:
    return d[key] if key in d else d.get(key.encode())


def _cifar_batch(path: Path) -> tuple[torch.Tensor, np.ndarray]:
    """One official batch: 'data' uint8 N x 3072 (RGB planes) and 'labels' (N ints)."""
    batch = restricted_unpickle(path)
    if not isinstance(batch, dict):
        raise UserError(f"expected a dict, got {type(batch).__name__}", str(path))
    data, labels = _get(batch, "data"), _get(batch, "labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 \
            or data.shape[1] != 3 * 32 * 32:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else repr(type(data))
        raise UserError(f"key 'data' must be a uint8 N x 3072 array, got {got}", str(path))
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != len(data):
        raise UserError(f"key 'labels' must list one label per image ({len(data)})", str(path))
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise UserError(f"key 'labels' must hold integers, got {y.dtype}", str(path))
    # Rows are the R, G and B planes of a 32x32 image: already N x C x H x W.
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), y.astype(np.int64)


def download_and_extract(url: str, checksum: str, dest: Path, source: str) -> None:
    """Fetch a .tar.gz, verify `checksum` ('md5:...'), extract it safely under `dest`."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise UserError(f"data.url: only http(s) URLs are fetched, got '{url}'", source)
    algo, _, expected = checksum.partition(":")
    dest.mkdir(parents=True, exist_ok=True)
    digest = hashlib.new(algo.lower())
    with tempfile.TemporaryFile(dir=dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    tmp.write(chunk)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise UserError(f"data.url: cannot download {url}: {reason}", source) from None
        if digest.hexdigest() != expected.lower():
            raise UserError(f"data.checksum: {url} has {algo} {digest.hexdigest()}, expected "
                            f"{expected} (corrupted or different file; nothing extracted)",
                            source)
        tmp.seek(0)
        safe_extract(tmp, dest, url)


def safe_extract(fileobj: Any, dest: Path, name: str) -> None:
    """Extract a tar archive's regular files and folders under `dest`, refusing links,
    devices, absolute paths and '..' (checked for every member before writing any)."""
    root = dest.resolve()
    try:
        with tarfile.open(fileobj=fileobj, mode="r:*") as tar:
            members = tar.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                target = (root / m.name).resolve()
                if m.name.startswith(("/", "\\")) or ".." in parts or \
                        not target.is_relative_to(root):
                    raise UserError(f"archive member '{m.name}' would land outside {dest}",
                                    name)
                if not (m.isfile() or m.isdir()):
                    raise UserError(f"archive member '{m.name}' is not a plain file or folder",
                                    name)
            for m in members:
                target = root / m.name
                if m.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(m)
                assert src is not None
                with src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
    except tarfile.TarError as err:
        raise UserError(f"not a readable tar archive: {err}", name) from None


# ---------------------------------------------------------------- imagefolder


def _read_imagefolder(cfg: DataConfig, resolution: int, source: str) -> _Raw:
    root = _need_path(cfg, source)
    classes, files = _scan_folder(root)
    test_images = test_labels = None
    test_files: list[tuple[Path, int]] = []
    if cfg.test_path is not None:
        test_classes, test_files = _scan_folder(cfg.test_path)
        extra = sorted(set(test_classes) - set(classes))
        if extra:
            raise UserError(f"class folder '{extra[0]}' is not among the training classes "
                            f"in {root}", str(cfg.test_path))
        index = {c: i for i, c in enumerate(classes)}
        test_files = [(p, index[test_classes[k]]) for p, k in test_files]
    try:
        from PIL import Image
    except ImportError:
        raise UserError("data.kind: imagefolder needs Pillow; install the 'images' extra "
                        "(pip install 'platform-aware-nas[images]')", source) from None
    size = (resolution, resolution)  # decode straight to the search resolution
    images, labels = _decode(files, size, Image)
    if test_files:
        test_images, test_labels = _decode(test_files, size, Image)
    return _Raw(images, labels, test_images, test_labels, tuple(classes),
                f"imagefolder {root}")


def _scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    if not root.is_dir():
        raise UserError("image folder not found", str(root))
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError("no class folders (expected root/<class>/<image>)", str(root))
    files: list[tuple[Path, int]] = []
    for k, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"class folder '{name}' has no images "
                            f"({', '.join(IMAGE_SUFFIXES)})", str(root / name))
        files.extend((p, k) for p in found)
    return classes, files


def _decode(files: list[tuple[Path, int]], size: tuple[int, int],
            image_module: Any) -> tuple[np.ndarray, np.ndarray]:
    """Decode, convert to RGB and resize every file to `size` (W, H); loading only."""
    out = np.empty((len(files), size[1], size[0], 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        try:
            with image_module.open(path) as im:
                rgb = im.convert("RGB")
                if rgb.size != size:
                    rgb = rgb.resize(size, image_module.BILINEAR)
                out[i] = np.asarray(rgb)
        except (OSError, ValueError) as err:
            raise UserError(f"cannot read image: {err}", str(path)) from None
    return out, np.array([k for _, k in files], dtype=np.int64)


# ---------------------------------------------------------------- synthetic


def _read_synthetic(cfg: DataConfig, resolution: int, source: str) -> _Raw:
    s = cfg.synthetic
    images, labels = make_synthetic(s.train_size, s.num_classes, s.image_size, s.noise,
                                    seed=s.seed, stream=0)
    test_images, test_labels = make_synthetic(s.test_size, s.num_classes, s.image_size,
                                              s.noise, seed=s.seed, stream=1)
    return _Raw(images, labels.numpy(), test_images if s.test_size else None,
                test_labels.numpy() if s.test_size else None, synthetic_classes(s.num_classes),
                f"synthetic seed {s.seed}")


def synthetic_classes(num_classes: int) -> tuple[str, ...]:
    """Class k is the teacher's output k (there are no hand-made class meanings)."""
    return tuple(f"teacher-{k}" for k in range(num_classes))


def make_synthetic(n: int, num_classes: int = 10, size: int = 32, noise: float = 0.05,
                   seed: int = 0, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """`n` generated images (uint8 N x 3 x size x size) and their labels.

    An image is a smooth random colour field; its label is the decision of a fixed
    random "teacher" network on that field. The field lives on a grid a quarter of the
    image side (8 x 8 for 32 x 32 images): per channel, white noise plus bilinearly
    upsampled coarser noise (2 x 2 and 4 x 4 there), scaled per image and squashed
    into 0..1. The image is the field upsampled to size x size plus Gaussian pixel
    noise (`noise`, unseen by the teacher). The teacher: 32 random 3 x 3 filters, each
    paired with its mirror image (so a horizontal flip, as augmentation does, keeps the
    label), ReLU, the mean over positions, standardised, a random linear map to
    `num_classes` scores with per-class offsets that balance the classes on a fixed
    reference sample, argmax. A child has to estimate 32 nonlinear texture statistics
    from an upsampled, noisy view; within a short proxy run wider children learn more
    of them, so accuracy rises with capacity and stays well below 1 (docs/data.md).

    The teacher depends on (num_classes, size, seed) only; the images also on
    `stream` (0: the train pool, 1: the test set). Deterministic in all of them.
    """
    teacher = _synthetic_teacher(num_classes, size, seed)
    g = torch.Generator().manual_seed(seed * 1_000_003 + stream)
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    labels = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, 2048):  # chunks bound the float temporaries
        stop = min(n, start + 2048)
        fields = _synthetic_fields(stop - start, size, g)
        labels[start:stop] = teacher.labels(fields)
        images[start:stop] = _render(fields, size, noise, g)
    return images, labels


_TEACHER_FILTERS = 32  # plus as many mirror images
_TEACHER_KERNEL = 3


def _synthetic_fields(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """n x 3 x grid x grid colour fields in 0..1, grid = size / 4."""
    grid = max(1, size // 4)
    out = 0.5 * torch.randn(n, 3, grid, grid, generator=g)
    for div, weight in ((4, 1.0), (2, 0.7)):  # 2 x 2 and 4 x 4 noise on an 8 x 8 grid
        coarse = max(1, grid // div)
        out += weight * _upsample(torch.randn(n, 3, coarse, coarse, generator=g), grid)
    out /= out.flatten(1).std(1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return torch.sigmoid(1.5 * out)


def _upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize (align_corners=False) of N x C x s x s to N x C x size x size.

    As two small matrix products, several times faster on CPU than F.interpolate.
    """
    s = x.shape[-1]
    eye = torch.eye(s).view(s, 1, s, 1)
    m = F.interpolate(eye, size=(size, 1), mode="bilinear", align_corners=False)
    m = m.view(s, size).T  # size x s
    return m @ x @ m.T


@dataclass(frozen=True)
class _Teacher:
    """The labelling function of the synthetic data (float64: no near-tie flips)."""

    filters: torch.Tensor  # 2F x 3 x k x k: F random filters, then their mirror images
    head: torch.Tensor     # num_classes x F
    mean: torch.Tensor     # F: feature standardisation, from the reference sample
    std: torch.Tensor
    offset: torch.Tensor   # num_classes: balances the classes on the reference sample

    def features(self, fields: torch.Tensor) -> torch.Tensor:
        h = F.conv2d((fields.double() - 0.5) * 4, self.filters, padding=_TEACHER_KERNEL // 2)
        h = F.relu(h).mean((2, 3))
        return h[:, :_TEACHER_FILTERS] + h[:, _TEACHER_FILTERS:]  # mirror-invariant

    def scores(self, fields: torch.Tensor) -> torch.Tensor:
        return ((self.features(fields) - self.mean) / self.std) @ self.head.T

    def labels(self, fields: torch.Tensor) -> torch.Tensor:
        return (self.scores(fields) + self.offset).argmax(1)


@functools.lru_cache(maxsize=8)
def _synthetic_teacher(num_classes: int, size: int, seed: int) -> _Teacher:
    g = torch.Generator().manual_seed(seed * 1_000_003 + 1_000_002)  # no image stream's
    k = _TEACHER_KERNEL
    w = torch.randn(_TEACHER_FILTERS, 3, k, k, generator=g, dtype=torch.float64)
    w = torch.cat([w, w.flip(3)]) * math.sqrt(2.0 / (3 * k * k))
    head = torch.randn(num_classes, _TEACHER_FILTERS, generator=g, dtype=torch.float64)
    zero = torch.zeros(_TEACHER_FILTERS, dtype=torch.float64)
    raw = _Teacher(w, head, zero, zero + 1, torch.zeros(num_classes, dtype=torch.float64))
    ref = raw.features(_synthetic_fields(4096, size, g))
    teacher = replace(raw, mean=ref.mean(0), std=ref.std(0).clamp_min(1e-6))
    scores = (((ref - teacher.mean) / teacher.std) @ head.T).numpy()
    offset = np.zeros(num_classes)
    for _ in range(300):  # nudge the offsets until the reference sample is balanced
        counts = np.bincount((scores + offset).argmax(1), minlength=num_classes)
        offset -= 0.05 * (counts / counts.mean() - 1)
    return replace(teacher, offset=torch.from_numpy(offset))


def _render(fields: torch.Tensor, size: int, noise: float, g: torch.Generator
            ) -> torch.Tensor:
    """The fields upsampled to size x size, plus pixel noise, quantised to uint8."""
    img = _upsample(fields, size)
    img += noise * torch.randn(img.shape, generator=g)
    return img.mul_(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


_READERS: dict[str, Callable[[DataConfig, int, str], _Raw]] = {
    "synthetic": _read_synthetic,
    "npz": _read_npz,
    "cifar10": _read_cifar10,
    "imagefolder": _read_imagefolder,
}
