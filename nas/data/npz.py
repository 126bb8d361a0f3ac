"""Reader for `kind: npz`: images and labels (optionally a Keras-style test split) in .npz.

Arrays are loaded with `allow_pickle=False`; images must be uint8 NHWC (or NHW grey).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from nas.data.checks import check_labels, need_path
from nas.data.config import DataConfig
from nas.data.raw import Budget, Raw
from search_spaces.infra.errors import UserError


def read_npz(cfg: DataConfig, resolution: int, source: str, budget: Budget) -> Raw:
    path = need_path(cfg, source)
    images, labels, test_images, test_labels, classes, lab_key = _npz_arrays(path, budget)
    test_where, test_key = str(path), "y_test"
    if cfg.test_path is not None:
        if test_images is not None:
            raise UserError(f"data.test_path: {path} already holds x_test/y_test", source)
        test_images, test_labels, _, _, _, test_key = _npz_arrays(cfg.test_path, budget)
        test_where = str(cfg.test_path)
    if classes is None:  # classes 0..max of the training labels; test labels must fit
        classes = tuple(str(i) for i in range(int(labels.max(initial=0)) + 1))
    check_labels(labels, len(classes), str(path), lab_key)
    if test_labels is not None:
        check_labels(test_labels, len(classes), test_where, test_key)
    return Raw(images, labels, test_images, test_labels, classes, f"npz {path.name}")


def npz_class_count(path: Path) -> int | None:
    """The class count of an npz file from its `classes` array or its largest training
    label, reading no images; None when the file is not readable that way (reading it
    whole names the problem)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "classes" in npz.files:
                return len(npz["classes"]) or None
            key = "labels" if "labels" in npz.files else "y_train"
            labels = npz[key]
            return int(labels.max()) + 1 if labels.size and labels.dtype.kind in "iu" \
                else None
    except Exception:  # any reason at all: load_data says it properly
        return None


def _npz_arrays(path: Path, budget: Budget
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None,
                           tuple[str, ...] | None, str]:
    """Images/labels (and Keras-style x_test/y_test, class names) from one npz file."""
    if not path.is_file():
        raise UserError("file not found", str(path))
    try:
        # allow_pickle=False: an npz may not smuggle in objects.
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise UserError("not an npz archive (a single array or another file)",
                                str(path))
            budget.check(sum(_claimed_bytes(npz, k, path) for k in npz.files),
                         "its arrays", str(path))
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, MemoryError) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise UserError(f"not a readable npz file ({why})", str(path)) from None
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


def _claimed_bytes(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> int:
    """What member `key` will allocate, from its header, before reading it: a header
    that claims more than the member holds is a damaged file, not a MemoryError."""
    names = npz.zip.namelist()
    info = npz.zip.getinfo(f"{key}.npy" if f"{key}.npy" in names else key)
    fmt = np.lib.format
    with npz.zip.open(info) as fh:
        version = fmt.read_magic(fh)  # ValueError for a member that is not an array
        read = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = read(fh)
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if claimed > info.file_size:
        raise UserError(f"key '{key}': its header claims {claimed:,} bytes, the file holds "
                        f"{info.file_size:,} (a damaged file)", str(path))
    return claimed


def _check_images(images: np.ndarray, where: str, key: str) -> np.ndarray:
    """NHWC uint8 with 1 or 3 channels (or NHW grey); grey becomes 3 equal channels."""
    if images.dtype != np.uint8:
        raise UserError(f"key '{key}' must be uint8, got {images.dtype}", where)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[3] not in (1, 3) or min(images.shape[:3]) == 0:
        raise UserError(f"key '{key}' must be N x H x W x 3 (NHWC, N, H, W > 0), got shape "
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
