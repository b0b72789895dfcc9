"""Atomic file writes (a crash, even SIGKILL, leaves the old file or the new one, never half)
and the checks that keep outputs from replacing anything the program did not write.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator, Sequence

from keras_ncsn.errors import OutputError


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


def _check_no_file_above(folder: str, flag: str) -> None:
    """`folder`, or its nearest existing ancestor, must be a folder (not a file), reached
    through no broken link."""
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        if os.path.islink(existing):  # makedirs would fail on it with a bare FileNotFoundError
            raise OutputError(f"{flag} {folder}: {existing} is a link to a missing "
                              f"{os.readlink(existing)}; create that, or choose another {flag}")
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = folder if existing == os.path.abspath(folder) else f"{folder}: {existing}"
        raise OutputError(f"{flag} {what} is a file, not a folder; choose another {flag}")


def check_output_folder(path: str, markers: Sequence[str], what: str, *,
                        replace: bool = False, flag: str = "--out") -> None:
    """Refuses an output folder whose writing could destroy what the program did not write.

    `path` may be missing or empty. A folder holding every one of `markers` is a `what`
    (ours): allowed when `replace` (replaced or continued, as the caller does), else an
    error asking for --overwrite. Any other folder, and a file, is refused.
    """
    _check_no_file_above(path, flag)
    entries = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if not entries:
        return
    if all(os.path.exists(os.path.join(path, marker)) for marker in markers):
        if replace:
            return
        raise OutputError(f"{flag} {path} is an earlier {what}: add --overwrite to replace "
                          f"it, or choose another {flag}")
    shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
    article = "an" if what[0] in "aeiou" else "a"
    raise OutputError(f"{flag} {path} exists and is not {article} {what} (it holds {shown}): "
                      "choose a new or empty folder")


def check_output_files(paths: Sequence[str], *, overwrite: bool = False,
                       flag: str = "--out") -> None:
    """Refuses to write the files `paths` over existing ones unless `overwrite` (a user's
    file of the same name cannot be told apart from an earlier output), or where a folder,
    or a file in place of their folder, is in the way."""
    for path in paths:
        _check_no_file_above(os.path.dirname(path) or os.curdir, flag)
        if os.path.isdir(path):
            raise OutputError(f"{flag}: {path} is a folder, not a file; choose another {flag}")
    existing = [path for path in paths if os.path.exists(path)]
    if existing and not overwrite:
        raise OutputError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}"
                          f": add --overwrite to replace, or choose another {flag}")
