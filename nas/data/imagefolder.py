"""Reader for `kind: imagefolder`: root/<class>/<image>, decoded with Pillow.

Class names are the sorted folder names; a separate `test_path` may hold a subset
of the training classes. Images are decoded straight to the search resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nas.data.checks import need_path
from nas.data.config import DataConfig
from nas.data.raw import Budget, Raw
from search_spaces.infra.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def read_imagefolder(cfg: DataConfig, resolution: int, source: str, budget: Budget) -> Raw:
    root = need_path(cfg, source)
    classes, files = scan_folder(root)
    test_images = test_labels = None
    test_files: list[tuple[Path, int]] = []
    if cfg.test_path is not None:
        test_classes, test_files = scan_folder(cfg.test_path)
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
    budget.check((len(files) + len(test_files)) * 3 * resolution**2,
                 f"decoding {len(files) + len(test_files):,} images at {resolution}x"
                 f"{resolution}", str(root))
    images, labels = _decode(files, size, Image)
    if test_files:
        test_images, test_labels = _decode(test_files, size, Image)
    return Raw(images, labels, test_images, test_labels, tuple(classes),
               f"imagefolder {root}")


def scan_folder(root: Path) -> tuple[list[str], list[tuple[Path, int]]]:
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
