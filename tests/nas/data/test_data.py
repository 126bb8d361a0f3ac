"""Data: every kind's good and bad inputs, splits, augmentation, the synthetic set."""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import pickle
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import (CIFAR10_FOLDER, DataConfig, SyntheticConfig, augment_batch, batches,
                      load_data, make_synthetic, restricted_unpickle)
from search_spaces.infra.errors import UserError
from search_spaces.infra.strict import load_dataclass

REAL_CIFAR = Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10" / "train.npz"


def indexed_images(n: int, size: int = 8) -> np.ndarray:
    """NHWC uint8 images whose first two pixels spell the image's index."""
    images = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(n) % 256
    images[:, 0, 0, 1] = np.arange(n) // 256
    return images


def ids(image_set) -> set[int]:
    x = image_set.images
    return set((x[:, 0, 0, 0].long() + 256 * x[:, 1, 0, 0].long()).tolist())


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def npz_cfg(path: Path, **kw) -> DataConfig:
    return DataConfig(kind="npz", path=path, **kw)


# ---------------------------------------------------------------- config


def test_data_config_loads_strictly(tmp_path: Path) -> None:
    cfg = load_dataclass(DataConfig, {"kind": "npz", "path": "d/train.npz",
                                      "synthetic": {"num_classes": 20}}, "exp.yaml", tmp_path)
    assert cfg.path == (tmp_path / "d" / "train.npz").resolve()
    assert cfg.synthetic.num_classes == 20
    with pytest.raises(UserError, match=r"exp.yaml: val_fracton: unknown key "
                                        r"\(did you mean 'val_fraction'\?\)"):
        load_dataclass(DataConfig, {"val_fracton": 0.2}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match=r"val_fraction: must be in \(0, 1\)"):
        load_dataclass(DataConfig, {"val_fraction": 1.0}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match="checksum: expected 'ALGORITHM:HEXDIGEST'"):
        load_dataclass(DataConfig, {"checksum": "abc"}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match=r"synthetic.num_classes: must be in 2\.\.40"):
        load_dataclass(DataConfig, {"synthetic": {"num_classes": 41}}, "exp.yaml", tmp_path)
    with pytest.raises(UserError, match="kind: 'npy' is not one of .*did you mean 'npz'"):
        load_dataclass(DataConfig, {"kind": "npy"}, "exp.yaml", tmp_path)


# ---------------------------------------------------------------- splits


def test_splits_are_deterministic_disjoint_and_test_is_stable(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", images=indexed_images(1000),
                     labels=np.arange(1000) % 10)
    a = load_data(npz_cfg(path, test_fraction=0.2, val_fraction=0.1), 8, "exp.yaml")
    b = load_data(npz_cfg(path, test_fraction=0.2, val_fraction=0.1), 8, "exp.yaml")
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.val.labels, b.val.labels)
    assert a.test is not None
    train, val, test = ids(a.train), ids(a.val), ids(a.test)
    assert (len(train), len(val), len(test)) == (720, 80, 200)
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(range(1000))
    # Changing the validation share, the subsets or nothing at all never moves a test image.
    for kw in ({"val_fraction": 0.3}, {"train_subset": 50, "val_subset": 10}):
        other = load_data(npz_cfg(path, test_fraction=0.2, **kw), 8, "exp.yaml")
        assert other.test is not None and ids(other.test) == test
    shifted = load_data(npz_cfg(path, test_fraction=0.2, split_seed=1), 8, "exp.yaml")
    assert shifted.test is not None and ids(shifted.test) != test


def test_subsets_resize_and_normalisation_stats(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", images=indexed_images(300, size=16),
                     labels=np.arange(300) % 3, classes=np.array(["a", "b", "c"]))
    s = load_data(npz_cfg(path, train_subset=40, val_subset=7, test_subset=5), 24, "exp.yaml")
    assert s.train.images.shape == (40, 3, 24, 24) and s.train.images.dtype == torch.uint8
    assert s.val.images.shape == (7, 3, 24, 24) and s.test is not None and len(s.test) == 5
    assert s.train.labels.dtype == torch.int64 and s.classes == ("a", "b", "c")
    assert s.train.augment and not s.val.augment
    # Random uint8 pixels: mean about 0.5 and std about 0.29 in 0..1 units.
    assert all(abs(m - 0.5) < 0.02 for m in s.mean) and all(abs(d - 0.289) < 0.02 for d in s.std)
    assert s.test.mean == s.train.mean == s.val.mean


def test_too_few_images_for_a_validation_split(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "d.npz", images=indexed_images(3), labels=np.zeros(3, int))
    with pytest.raises(UserError, match="exp.yaml: data: 3 images leave"):
        load_data(npz_cfg(path, val_fraction=0.1), 8, "exp.yaml")


# ---------------------------------------------------------------- npz


def test_npz_keras_style_with_own_test_split(tmp_path: Path) -> None:
    grey = np.random.default_rng(1).integers(0, 256, (50, 10, 10), dtype=np.uint8)
    path = write_npz(tmp_path / "k.npz", x_train=grey, y_train=(np.arange(50) % 4)[:, None],
                     x_test=grey[:20], y_test=np.arange(20)[:, None] % 4)
    s = load_data(npz_cfg(path), 10, "exp.yaml")
    assert s.test is not None and len(s.test) == 20 and len(s.train) + len(s.val) == 50
    assert s.classes == ("0", "1", "2", "3")
    x = s.train.images
    assert x.shape[1] == 3 and torch.equal(x[:, 0], x[:, 2])  # grey repeated to RGB
    with pytest.raises(UserError, match="brings its own test split"):
        load_data(npz_cfg(path, test_fraction=0.1), 10, "exp.yaml")


def test_npz_separate_test_file(tmp_path: Path) -> None:
    train = write_npz(tmp_path / "train.npz", images=indexed_images(60),
                      labels=np.arange(60) % 5)
    test = write_npz(tmp_path / "test.npz", images=indexed_images(9), labels=np.arange(9) % 5)
    s = load_data(npz_cfg(train, test_path=test), 8, "exp.yaml")
    assert s.test is not None and len(s.test) == 9 and len(s.train) + len(s.val) == 60
    bad = write_npz(tmp_path / "bad.npz", images=indexed_images(2), labels=np.array([0, 5]))
    with pytest.raises(UserError, match=r"bad.npz: key 'labels': label 5 at index 1 is out "
                                        r"of range 0\.\.4"):
        load_data(npz_cfg(train, test_path=bad), 8, "exp.yaml")


@pytest.mark.parametrize("arrays, message", [
    ({"images": np.zeros((4, 3, 8, 8), np.uint8), "labels": np.zeros(4, int)},
     r"key 'images' must be N x H x W x 3 \(NHWC, N, H, W > 0\), got shape \(4, 3, 8, 8\)"),
    ({"images": np.zeros((4, 8, 8, 3), np.float32), "labels": np.zeros(4, int)},
     "key 'images' must be uint8, got float32"),
    ({"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.zeros(3, int)},
     "key 'labels' has 3 labels for 4 images"),
    ({"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.zeros(4, np.float32)},
     "key 'labels' must be a 1-D integer array"),
    ({"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.array([0, 1, -1, 0])},
     r"key 'labels': label -1 at index 2 is out of range"),
    ({"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.array([0, 1, 2, 0]),
      "classes": np.array(["a", "b"])},
     r"key 'labels': label 2 at index 2 is out of range 0\.\.1"),
    ({"pixels": np.zeros((4, 8, 8, 3), np.uint8)},
     r"needs arrays 'images' and 'labels' \(or 'x_train' and 'y_train'\); found pixels"),
    ({"images": np.zeros((4, 8, 8, 3), np.uint8)}, "has 'images' but no 'labels'"),
])
def test_npz_bad_inputs_name_file_and_key(tmp_path: Path, arrays: dict, message: str) -> None:
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message) as err:
        load_data(npz_cfg(path), 8, "exp.yaml")
    assert str(err.value).startswith(str(path))


def test_npz_missing_file_and_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nope.npz: file not found"):
        load_data(npz_cfg(tmp_path / "nope.npz"), 8, "exp.yaml")
    with pytest.raises(UserError, match="exp.yaml: data.path: required for kind 'npz'"):
        load_data(DataConfig(kind="npz"), 8, "exp.yaml")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="junk.npz: not a readable npz file"):
        load_data(npz_cfg(tmp_path / "junk.npz"), 8, "exp.yaml")


@pytest.mark.skipif(not REAL_CIFAR.is_file(), reason="shared CIFAR-10 train.npz not present")
def test_real_cifar10_npz() -> None:
    s = load_data(npz_cfg(REAL_CIFAR, train_subset=1000, val_subset=500, test_subset=500),
                  32, "exp.yaml")
    assert s.classes[:3] == ("airplane", "automobile", "bird") and s.num_classes == 10
    assert (len(s.train), len(s.val), s.test and len(s.test)) == (1000, 500, 500)
    # The well-known CIFAR-10 channel means, within the JPEG re-encoding's drift.
    assert np.allclose(s.mean, (0.491, 0.482, 0.447), atol=0.02)
    assert set(s.train.labels.tolist()) == set(range(10))


# ---------------------------------------------------------------- cifar10


def cifar_batch(n: int, seed: int, bytes_keys: bool = True) -> dict:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    batch = {"batch_label": "batch", "labels": [int(v) for v in rng.integers(0, 10, n)],
             "data": data, "filenames": [f"img{i}.png" for i in range(n)]}
    return {k.encode(): v for k, v in batch.items()} if bytes_keys else batch


def make_cifar_folder(root: Path, per_batch: int = 6) -> Path:
    """A miniature cifar-10-batches-py in the official pickle format."""
    folder = root / CIFAR10_FOLDER
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        (folder / name).write_bytes(pickle.dumps(cifar_batch(per_batch, i), protocol=2))
    meta = {b"label_names": [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog",
                             b"frog", b"horse", b"ship", b"truck"], b"num_cases_per_batch": 6}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def test_cifar10_folder(tmp_path: Path) -> None:
    make_cifar_folder(tmp_path)
    s = load_data(DataConfig(kind="cifar10", path=tmp_path, val_fraction=0.2), 32, "exp.yaml")
    assert len(s.train) + len(s.val) == 30 and s.test is not None and len(s.test) == 6
    assert s.classes[-1] == "truck"
    # Pixels land unchanged: the R plane of the first test image is its first 1024 bytes.
    expected = cifar_batch(6, 5)[b"data"]
    firsts = {bytes(expected[i, :1024]) for i in range(6)}
    assert {bytes(s.test.images[i, 0].flatten().numpy()) for i in range(6)} == firsts


def test_cifar10_numpy1_pickles_and_protocol5_are_read(tmp_path: Path) -> None:
    data = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = pickle.dumps({"data": data}, protocol=2)
    # Pickles written by numpy 1 (the official batches) name numpy.core, not numpy._core.
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    (tmp_path / "old.pkl").write_bytes(old)
    assert np.array_equal(restricted_unpickle(tmp_path / "old.pkl")["data"], data)
    (tmp_path / "p5.pkl").write_bytes(pickle.dumps({"data": data}, protocol=5))
    assert np.array_equal(restricted_unpickle(tmp_path / "p5.pkl")["data"], data)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_cifar10_refuses_a_pickle_that_calls_os_system(tmp_path: Path) -> None:
    folder = make_cifar_folder(tmp_path)
    marker = tmp_path / "pwned"
    evil = cifar_batch(6, 2)
    evil[b"labels"] = _Evil(marker)
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    with pytest.raises(UserError, match=r"data_batch_3: unsafe or invalid pickle: refused to "
                                        r"load global '(posix|os|nt)\.system'"):
        load_data(DataConfig(kind="cifar10", path=tmp_path), 32, "exp.yaml")
    assert not marker.exists()


def test_cifar10_bad_batches(tmp_path: Path) -> None:
    folder = make_cifar_folder(tmp_path)
    (folder / "data_batch_2").unlink()
    with pytest.raises(UserError, match=r"exp.yaml: missing data_batch_2 in .* \(set "
                                        r"data.download: true"):
        load_data(DataConfig(kind="cifar10", path=tmp_path), 32, "exp.yaml")
    bad = cifar_batch(6, 1)
    bad[b"data"] = bad[b"data"][:, :100]
    (folder / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match=r"data_batch_2: key 'data' must be a uint8 N x 3072"):
        load_data(DataConfig(kind="cifar10", path=folder), 32, "exp.yaml")
    bad = cifar_batch(6, 1)
    bad[b"labels"][4] = 10
    (folder / "data_batch_2").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(UserError, match=r"key 'labels': label 10 at index 10 is out of range"):
        load_data(DataConfig(kind="cifar10", path=folder), 32, "exp.yaml")


def make_archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


@pytest.fixture
def serve():
    """Serve a dict of path -> bytes over HTTP on 127.0.0.1 only; yields the base URL."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield files, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_cifar10_download_verifies_checksum(tmp_path: Path, serve) -> None:
    files, base = serve
    src = make_cifar_folder(tmp_path / "src")
    archive = make_archive({f"{CIFAR10_FOLDER}/{p.name}": p.read_bytes()
                            for p in sorted(src.iterdir())})
    files["/cifar.tar.gz"] = archive
    files["/corrupt.tar.gz"] = archive[:-10] + bytes(10)
    md5 = "md5:" + hashlib.md5(archive).hexdigest()

    dest = tmp_path / "bad"
    with pytest.raises(UserError, match=r"exp.yaml: data.checksum: .*corrupt.tar.gz has md5 "
                                        r"[0-9a-f]{32}, expected"):
        load_data(DataConfig(kind="cifar10", path=dest, download=True,
                             url=f"{base}/corrupt.tar.gz", checksum=md5), 32, "exp.yaml")
    assert not (dest / CIFAR10_FOLDER).exists() and list(dest.iterdir()) == []

    dest = tmp_path / "good"
    cfg = DataConfig(kind="cifar10", path=dest, download=True, url=f"{base}/cifar.tar.gz",
                     checksum="sha256:" + hashlib.sha256(archive).hexdigest())
    s = load_data(cfg, 32, "exp.yaml")
    assert s.test is not None and len(s.test) == 6 and (dest / CIFAR10_FOLDER).is_dir()
    del files["/cifar.tar.gz"]  # present now: a second load must not fetch again
    assert torch.equal(load_data(cfg, 32, "exp.yaml").test.images, s.test.images)

    with pytest.raises(UserError, match="data.url: cannot download .*missing.tar.gz"):
        load_data(DataConfig(kind="cifar10", path=tmp_path / "m", download=True,
                             url=f"{base}/missing.tar.gz", checksum=md5), 32, "exp.yaml")


def test_download_refuses_path_traversal(tmp_path: Path, serve) -> None:
    files, base = serve
    archive = make_archive({f"{CIFAR10_FOLDER}/ok": b"x", "../escaped": b"evil"})
    files["/evil.tar.gz"] = archive
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="archive member '../escaped' would land outside"):
        load_data(DataConfig(kind="cifar10", path=dest, download=True,
                             url=f"{base}/evil.tar.gz",
                             checksum="md5:" + hashlib.md5(archive).hexdigest()), 32, "exp.yaml")
    assert not (tmp_path / "escaped").exists() and not (dest / CIFAR10_FOLDER / "ok").exists()


# ---------------------------------------------------------------- imagefolder


def write_png_folder(root: Path, classes: dict[str, int], size: int = 12) -> None:
    from PIL import Image
    rng = np.random.default_rng(3)
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (size + i, size, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_imagefolder(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    write_png_folder(tmp_path / "train", {"cat": 6, "dog": 5})
    write_png_folder(tmp_path / "test", {"dog": 2})
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    cfg = DataConfig(kind="imagefolder", path=tmp_path / "train", test_path=tmp_path / "test",
                     val_fraction=0.2)
    s = load_data(cfg, 16, "exp.yaml")
    assert s.classes == ("cat", "dog") and len(s.train) + len(s.val) == 11
    assert s.train.images.shape[1:] == (3, 16, 16)
    assert s.test is not None and s.test.labels.tolist() == [1, 1]
    (tmp_path / "train" / "dog" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"broken.png: cannot read image"):
        load_data(cfg, 16, "exp.yaml")


def test_imagefolder_bad_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UserError, match="nothere: image folder not found"):
        load_data(DataConfig(kind="imagefolder", path=tmp_path / "nothere"), 16, "exp.yaml")
    (tmp_path / "root").mkdir()
    with pytest.raises(UserError, match=r"root: no class folders"):
        load_data(DataConfig(kind="imagefolder", path=tmp_path / "root"), 16, "exp.yaml")
    (tmp_path / "root" / "empty").mkdir()
    with pytest.raises(UserError, match=r"empty: class folder 'empty' has no images"):
        load_data(DataConfig(kind="imagefolder", path=tmp_path / "root"), 16, "exp.yaml")
    (tmp_path / "root" / "empty" / "a.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL", None)  # as if Pillow were not installed
    with pytest.raises(UserError, match=r"exp.yaml: data.kind: imagefolder needs Pillow"):
        load_data(DataConfig(kind="imagefolder", path=tmp_path / "root"), 16, "exp.yaml")


# ---------------------------------------------------------------- augmentation + batches


def test_augment_batch_crops_and_flips_each_image() -> None:
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x, g, padding=2)
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment_batch(x, torch.Generator().manual_seed(0), padding=2))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    seen = set()
    for i in range(len(x)):
        matches = [(dy, dx, f) for dy in range(5) for dx in range(5) for f in (0, 1)
                   if torch.equal(out[i], (lambda c: c.flip(2) if f else c)(
                       padded[i, :, dy:dy + 8, dx:dx + 8]))]
        assert matches, f"image {i} is no crop/flip of its input"
        seen.add(matches[0])
    assert len(seen) > 5  # offsets and flips vary across the batch
    assert torch.equal(augment_batch(x, g, padding=0).sort(3).values, x.sort(3).values)


def test_batches_cover_every_image_once() -> None:
    s = load_data(DataConfig(synthetic=SyntheticConfig(train_size=100, test_size=0,
                                                       image_size=8)), 8, "exp.yaml")
    assert s.test is None
    n = len(s.train)
    got = torch.cat([y for _, y in batches(s.train, 16)])
    assert torch.equal(got, s.train.labels)
    shuffled = [x for x, _ in batches(s.train, 16, shuffle=True,
                                      generator=torch.Generator().manual_seed(1))]
    assert sum(len(x) for x in shuffled) == n
    assert sum(len(x) for x, _ in batches(s.train, 16, drop_last=True)) == n - n % 16


# ---------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_and_balanced() -> None:
    a, la = make_synthetic(400, num_classes=10, size=32, seed=3)
    b, lb = make_synthetic(400, num_classes=10, size=32, seed=3)
    c, lc = make_synthetic(400, num_classes=10, size=32, seed=4)
    t, lt = make_synthetic(400, num_classes=10, size=32, seed=3, stream=1)
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert not torch.equal(a, c) and not torch.equal(la, lc)  # another seed, another set
    assert not torch.equal(a, t) and not torch.equal(la, lt)  # the test stream differs
    assert a.shape == (400, 3, 32, 32) and a.dtype == torch.uint8 and la.dtype == torch.int64
    assert int(a.min()) < 40 and int(a.max()) > 215  # uses the whole 0..255 range
    for labels in (la, lc, lt):
        counts = torch.bincount(labels, minlength=10)
        assert counts.min() >= 20 and counts.max() <= 60, counts  # balanced (40 each)
    many = torch.bincount(make_synthetic(4000, num_classes=40, size=16, seed=1)[1],
                          minlength=40)
    assert many.min() >= 50 and many.max() <= 150, many  # 100 each
    s = load_data(DataConfig(synthetic=SyntheticConfig(num_classes=12, train_size=200,
                                                       test_size=50)), 24, "exp.yaml")
    assert s.num_classes == 12 and s.classes[5] == "teacher-5"
    assert s.train.images.shape[-1] == 24 and s.test is not None and len(s.test) == 50
    assert int(s.train.labels.max()) < 12
    with pytest.raises(UserError, match="data.path: synthetic data reads no files"):
        load_data(DataConfig(path=Path("x.npz")), 32, "exp.yaml")
    with pytest.raises(UserError, match="data.test_fraction: synthetic data generates its own"):
        load_data(DataConfig(test_fraction=0.1), 32, "exp.yaml")
    with pytest.raises(UserError, match="data.download: only kind cifar10 downloads"):
        load_data(DataConfig(download=True), 32, "exp.yaml")
    with pytest.raises(UserError, match="data.test_path: cifar10 uses its own test_batch"):
        load_data(DataConfig(kind="cifar10", path=Path("c"), test_path=Path("t")), 32, "e")


def test_synthetic_labels_survive_a_horizontal_flip_and_the_pixel_noise() -> None:
    # The teacher pairs every filter with its mirror image, so the flips of training
    # augmentation keep labels right; it looks at the noise-free field only, so the
    # pixel noise does not move a label either. A vertical flip is a new image.
    from nas.data.synthetic import _synthetic_fields, _synthetic_teacher

    fields = _synthetic_fields(1000, 32, torch.Generator().manual_seed(0))
    teacher = _synthetic_teacher(10, 32, 0)
    labels = teacher.labels(fields)
    assert torch.equal(teacher.labels(fields.flip(3)), labels)
    assert (teacher.labels(fields.flip(2)) != labels).float().mean() > 0.3
    _, clean = make_synthetic(300, noise=0.0, seed=2)
    _, noisy = make_synthetic(300, noise=0.3, seed=2)
    assert torch.equal(clean, noisy)
