"""A non-editable install (`pip install .`) is a library with working commands: no benchmark
inside, every console entry point answers --help, and package data (the embedded digits,
the default classifier) is found from any directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import REPO

ENTRY_POINTS = ("ncsn-fit", "ncsn-sample", "ncsn-inpaint", "ncsn-export", "ncsn-evaluate",
                "ncsn-onnx-sample", "ncsn-toy", "ncsn-train-classifier")

CHECK_PACKAGE = """
import importlib.util, os, sys
import keras_ncsn
here = os.path.dirname(keras_ncsn.__file__)
assert here.startswith(sys.prefix), here                       # the installed copy
assert importlib.util.find_spec("keras_ncsn.benchmark") is None
assert importlib.util.find_spec("bench") is None
assert os.path.isfile(os.path.join(here, "assets", "mnist_subset.npz"))
sys.modules["matplotlib"] = None                               # as if not installed:
import keras_ncsn.toy, keras_ncsn.training, keras_ncsn.sampling  # the library needs no plots
del sys.modules["matplotlib"]
from keras_ncsn.evaluation.report import DEFAULT_CLASSIFIER, make_extractor
assert DEFAULT_CLASSIFIER.startswith(here) and os.path.isfile(DEFAULT_CLASSIFIER)
extractor = make_extractor("classifier", None)                 # loads the default classifier
print("ok", extractor is not None)
"""


@pytest.mark.slow
def test_a_non_editable_install_is_a_library_with_working_commands(tmp_path):
    # Build from a copy of what the package needs, so nothing is written into the checkout.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO, name), source / name)
    shutil.copytree(os.path.join(REPO, "keras_ncsn"), source / "keras_ncsn",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    # The dependencies (TensorFlow, setuptools, ...) come from this environment, without
    # its editable keras_ncsn: a bare path in a .pth file runs none of that dir's .pth hooks.
    new_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                               "['purelib'])"], capture_output=True, text=True,
                              check=True).stdout.strip()
    with open(os.path.join(new_site, "outer_site.pth"), "w", encoding="utf-8") as f:
        f.write(sysconfig.get_paths()["purelib"] + "\n")
    completed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--quiet", str(source)], capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    for name in ENTRY_POINTS:
        helped = subprocess.run([str(venv / "bin" / name), "--help"], capture_output=True,
                                text=True, cwd=outside, env=env, timeout=120)
        assert helped.returncode == 0 and "usage:" in helped.stdout, (name, helped.stderr)
    checked = subprocess.run([python, "-c", CHECK_PACKAGE], capture_output=True, text=True,
                             cwd=outside, env=env, timeout=300)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip().endswith("ok True")
