"""Atomic writes: all or nothing, usual permissions, no temporary files left behind."""

from __future__ import annotations

import os
import stat

import pytest

from keras_ncsn.io import atomic_path, atomic_write_text


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "out.weights.h5"
    path.write_text("old")
    with atomic_path(str(path)) as tmp:
        assert tmp.endswith(".weights.h5") and os.path.basename(tmp).startswith(".tmp-")
        assert path.read_text() == "old"  # untouched until the write succeeds
        with open(tmp, "w") as f:
            f.write("new")
    assert path.read_text() == "new" and os.listdir(tmp_path) == ["out.weights.h5"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666 & ~umask


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "config.json"
    atomic_write_text(str(path), "old")
    with pytest.raises(RuntimeError):
        with atomic_path(str(path)) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["config.json"]


def test_atomic_folder(tmp_path):
    target = tmp_path / "export"
    target.mkdir()
    (target / "stale").write_text("x")
    with atomic_path(str(target), is_dir=True) as tmp:
        open(os.path.join(tmp, "model"), "w").write("m")
    assert os.listdir(target) == ["model"] and len(os.listdir(tmp_path)) == 1
