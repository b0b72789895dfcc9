"""Test set-up: quiet TensorFlow, and small configs shared by the model and training tests."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

from keras_ncsn.config import Config, get_config  # noqa: E402

# The schedule of the paper's presets: the quick preset's warm-up and cosine decay are sized
# for its 1400 steps, so a test that trains a few steps pins a constant learning rate.
CONSTANT_LR = ["train.lr_schedule=constant", "train.warmup_fraction=0"]
# A few training steps of a narrow model on the embedded digits: fast but the real code path.
TINY = [*CONSTANT_LR, "model.ngf=4", "train.batch_size=8", "train.steps=4", "train.log_every=2",
        "train.checkpoint_every=2", "data.max_train_images=64", "data.eval_images=16",
        "train.eval_draws=1", "noise.num_levels=3", "sample.steps_per_level=2",
        "sample.num_images=4", "sample.jit_compile=false"]
# TINY on 8x8 images (the digits' central 28x28 resized): the fastest export / distribution runs.
SMALL = TINY + ["data.image_size=8", "data.center_crop=28"]


def set_args(assignments: list[str]) -> list[str]:
    """Command-line form of config overrides: ["a=1", "b=2"] -> ["--set", "a=1", "--set", "b=2"]."""
    return [arg for item in assignments for arg in ("--set", item)]


# The longest test files (4 to 14 minutes each on a 2-core machine, 2026-12-06), run first:
# pytest-xdist (--dist loadfile --no-loadscope-reorder) then hands the short files to
# whichever worker is free at the end, instead of leaving one worker a long file alone.
LONGEST_FIRST = ("test_model.py", "test_evaluation.py", "test_export.py",
                 "test_shipped_quality.py", "test_fit.py", "test_cli.py", "test_distribute.py",
                 "test_sample_scripts.py", "test_bench.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files stay whole


@pytest.fixture
def tiny_config() -> Config:
    return get_config("quick", TINY)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str):
    """Imports scripts/<name>.py as a module, to call its `main(argv)` in-process."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}",
                                                  os.path.join(REPO, "scripts", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def train_run(tmp_path_factory, assignments: list[str], steps: int = 2) -> str:
    """A fresh `steps`-step run of `fit.py` with the `assignments` (for module-scoped
    fixtures: the graph tracing makes this the slow part); returns its folder."""
    out = str(tmp_path_factory.mktemp("run") / "run")
    fit = load_script("fit")
    assert fit.main(["--no-progress", *set_args(assignments), "--steps", str(steps),
                     "--out", out]) == 0
    return out
