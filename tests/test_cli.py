"""The command line: every command's --help without TensorFlow, a quiet start naming the
device, the console entry points, and the package's small public API."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import REPO

COMMANDS = ("fit", "sample", "inpaint", "export", "evaluate", "onnx_sample", "toy",
            "train_classifier")
# TensorFlow's C++ log lines (absl format) that a default run must not show.
LOG_LINE = re.compile(r"^[IWE]0000 ", re.MULTILINE)


def _pyproject_scripts() -> dict[str, str]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        pytest.skip("tomllib needs Python 3.11")
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]["scripts"]


def test_public_api_names_exist():
    import keras_ncsn
    from keras_ncsn.config import get_config
    from keras_ncsn.model import NCSN, build_model
    from keras_ncsn.sampling import AnnealedLangevin
    from keras_ncsn.training import load_run

    assert keras_ncsn.NCSN is NCSN and keras_ncsn.build_model is build_model
    assert keras_ncsn.get_config is get_config and keras_ncsn.load_run is load_run
    assert keras_ncsn.AnnealedLangevin is AnnealedLangevin
    assert set(keras_ncsn.__all__) <= set(dir(keras_ncsn))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_ncsn.nope  # noqa: B018


def test_import_keras_ncsn_does_not_import_tensorflow():
    code = "import sys, keras_ncsn; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_every_script_answers_help_without_tensorflow():
    """Each scripts/X.py parses --help before any heavy import (one fresh interpreter)."""
    code = f"""
import contextlib, io, runpy, sys
heavy = ("tensorflow", "keras", "matplotlib", "onnxruntime")
for name in {COMMANDS!r}:
    sys.argv = [name + ".py", "--help"]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            runpy.run_path("scripts/" + name + ".py", run_name="__main__")
        except SystemExit as e:
            assert e.code == 0, (name, e.code)
    assert "usage:" in out.getvalue(), name
    loaded = [m for m in heavy if m in sys.modules]
    assert not loaded, (name, loaded)
print("ok")
"""
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "ok"


def test_entry_points_call_each_commands_cli():
    scripts = _pyproject_scripts()
    expected = {f"ncsn-{name.replace('_', '-')}": f"keras_ncsn.commands.{name}:cli"
                for name in COMMANDS}
    assert scripts == expected
    import importlib

    for target in scripts.values():
        module, _, function = target.partition(":")
        module = importlib.import_module(module)
        assert callable(getattr(module, function)) and callable(module.main)


def test_scripts_forward_to_the_package_without_path_edits():
    for name in COMMANDS:
        with open(os.path.join(REPO, "scripts", f"{name}.py"), encoding="utf-8") as f:
            text = f.read()
        assert "sys.path" not in text, name
        assert f"from keras_ncsn.commands.{name} import" in text, name


def test_startup_filter_keeps_errors_and_python_messages():
    from keras_ncsn.cli import _startup_lines_to_keep

    text = "\n".join([
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796419345.864646    2859 port.cc:153] oneDNN custom operations are on.",
        "W0000 00:00:1796419345.864953    2859 something.cc:31] a warning",
        "E0000 00:00:1796419351.721333    2859 cuda_platform.cc:52] failed call to cuInit: "
        "INTERNAL: CUDA error",
        "E0000 00:00:1796419351.721333    2859 other.cc:52] a real error",
        "/path/x.py:3: UserWarning: a Python warning"])
    kept = _startup_lines_to_keep(text, gpu_found=False)
    assert kept == [text.splitlines()[4], text.splitlines()[5]]
    # With a GPU found, a cuInit error is not what the device line explains: it stays.
    assert len(_startup_lines_to_keep(text, gpu_found=True)) == 3


def test_device_line_names_cpu_or_gpus():
    from keras_ncsn.cli import describe_devices

    class Gpu:
        name = "/physical_device:GPU:0"

    assert describe_devices([], dict) == "device: CPU (no GPU found)"
    assert (describe_devices([Gpu()], lambda g: {"device_name": "NVIDIA H200"})
            == "device: 1 GPU (NVIDIA H200)")
    assert describe_devices([Gpu(), Gpu()], lambda g: {}) == (
        "device: 2 GPUs (/physical_device:GPU:0, /physical_device:GPU:0)")


def _clean_env() -> dict[str, str]:
    """This environment without the log-level settings (conftest sets one for the tests)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL")}


@pytest.mark.slow
def test_a_short_fit_prints_no_tensorflow_log_lines_and_announces_its_work(tmp_path):
    """A real process (TensorFlow's C++ logging is set up at import): a quiet start naming
    the device, the held-out loss announced with its estimate before it runs, and --no-grid
    skipping only the final grid."""
    from conftest import SMALL, set_args

    out = tmp_path / "run"
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "fit.py"), *set_args(SMALL),
         "--steps", "2", "--no-progress", "--no-grid", "--out", str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=_clean_env())
    assert completed.returncode == 0, completed.stderr
    output, printed = completed.stdout + completed.stderr, completed.stdout
    assert not LOG_LINE.search(output), output
    assert re.search(r"^device: (CPU \(no GPU found\)|\d+ GPUs? \(.+\))$", printed,
                     re.MULTILINE), printed
    # 16 eval images in batches of 8 (SMALL).
    assert re.search(r"^held-out loss: 2 batches x 1 noise draws, about \d+ (s|min)"
                     r" \(skip with fit.py --no-heldout\)$", printed, re.MULTILINE), printed
    assert printed.index("held-out loss:") < printed.index("held-out DSM loss")
    assert (out / "heldout_loss.json").is_file()
    assert "final sample grid skipped" in printed and "done: step 2" in printed
    assert not list(out.glob("samples/grid-*.png"))


def test_fit_announces_the_final_grid_and_no_heldout_skips_only_the_loss(tmp_path, capsys):
    from conftest import SMALL, load_script, set_args

    out = tmp_path / "run"
    fit = load_script("fit")
    assert fit.main(["--no-progress", *set_args(SMALL), "--steps", "2", "--out", str(out),
                     "--no-heldout"]) == 0
    printed = capsys.readouterr().out
    # 3 noise levels x 2 steps per level (SMALL), 4 images.
    assert re.search(r"^final sample grid: 4 images x 6 Langevin steps, about \d+ (s|min) "
                     r"\(skip with fit.py --no-grid;", printed, re.MULTILINE), printed
    assert list((out / "samples").glob("grid-*.png"))
    assert "held-out loss skipped" in printed and "held-out DSM loss" not in printed
    assert not (out / "heldout_loss.json").exists()
