"""Atomic file writes: a crash (even SIGKILL) leaves the old file or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str, is_dir: bool = False) -> Iterator[str]:
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    Temporary names start with ".tmp-" so that readers listing a folder can skip them.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base = os.path.basename(path)
    if is_dir:
        tmp = tempfile.mkdtemp(prefix=f".tmp-{base}-", dir=folder)
    else:
        # Keep the whole extension (".weights.h5"): some writers check the file name.
        suffix = base[base.index("."):] if "." in base else ""
        handle, tmp = tempfile.mkstemp(prefix=f".tmp-{base}-", suffix=suffix, dir=folder)
        os.close(handle)
    try:
        yield tmp
        # mkstemp/mkdtemp create private entries; give the result the usual permissions.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if is_dir else 0o666) & ~umask)
        if is_dir and os.path.isdir(path):  # a folder can't be replaced in one rename:
            old = tempfile.mkdtemp(prefix=f".old-{base}-", dir=folder)  # move it aside first
            os.replace(path, os.path.join(old, base))
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        elif os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
