"""Fetching a data archive: HTTP(S) download, checksum check, safe tar extraction.

Nothing is extracted unless the whole download matches its checksum, and no archive
member may land outside the destination or be anything but a file or folder.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

from search_spaces.infra.errors import UserError


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
