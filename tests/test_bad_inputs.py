"""Bad input to every script is a one-line error (exit code 2) that changes no existing file.

The matrix runs each script's `main` in-process on one shared tree of bad inputs: missing
paths, empty folders, files of the wrong type, images of the wrong size or channel count,
corrupt files, non-positive counts and outputs that exist already. Every case must fail
before a model is built (the run folder's checkpoint is garbage, so reaching it would fail
differently), leaving every file of the tree byte-identical. Then the behaviours behind
the errors: --data-dir is read whatever the preset, and --overwrite replaces only an
earlier output of the same kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, TINY, load_script
from keras_ncsn.cli import run_main
from keras_ncsn.config import Config, DataConfig, get_config, override
from keras_ncsn.data import make_datasets
from keras_ncsn.errors import ConfigError, OutputError
from keras_ncsn.io import check_output_files, check_output_folder
from keras_ncsn.onnx_runtime import REQUIRED_FILES

SCRIPTS = {name: load_script(name) for name in (
    "fit", "sample", "inpaint", "export", "evaluate", "onnx_sample", "train_classifier", "toy",
    "bench")}
MNIST = os.path.join(REPO, os.pardir, "shared", "data", "mnist")
USER_TEXT = "a file the program did not write\n"


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _png(path: Path, size: int = 28) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (size, size), 128).save(path)
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    """The tree of bad inputs (and of files that must survive), as {placeholder: path}."""
    root = tmp_path_factory.mktemp("world")
    paths: dict[str, str] = {"root": str(root), "missing": str(root / "missing"),
                             "new": str(root / "new"), "new_png": str(root / "new.png"),
                             "new_keras": str(root / "new.keras")}

    def folder(name: str) -> Path:
        (root / name).mkdir(parents=True)
        paths[name] = str(root / name)
        return root / name

    def file(name: str, content: bytes | str) -> str:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        paths[name.replace("/", "_").replace(".", "_")] = str(path)
        return str(path)

    # A run folder whose checks pass: a config and a (garbage) checkpoint, as fit.py leaves.
    config = get_config("quick", TINY).to_json()
    run = folder("run")
    file("run/config.json", config)
    file("run/checkpoints/ckpt-00000002.weights.h5", b"not a checkpoint")
    _png(run / "samples" / "grid-00000002.png")
    file("run_nockpt/config.json", config)
    paths["run_nockpt"] = str(root / "run_nockpt")
    file("corrupt_run/config.json", "{not json")
    paths["corrupt_run"] = str(root / "corrupt_run")
    # An export folder with every required file (garbage models) and a valid config.
    for name in REQUIRED_FILES:
        file(f"export/{name}", config if name == "config.json" else b"garbage")
    paths["export"] = str(root / "export")
    ancestral = override(get_config("quick", TINY), ["sample.method=ancestral"]).to_json()
    for name in REQUIRED_FILES:
        file(f"ancestral/{name}", ancestral if name == "config.json" else b"garbage")
    paths["ancestral"] = str(root / "ancestral")
    folder("empty")
    file("notes.txt", USER_TEXT)
    paths["user_file"] = paths["notes_txt"]
    os.symlink(root / "gone", root / "broken_link")
    paths["broken_link"] = str(root / "broken_link")
    rgb32 = np.random.default_rng(0).integers(0, 256, (20, 32, 32, 3), dtype=np.uint8)
    with open(root / "rgb32.npz", "wb") as f:
        np.savez(f, x=rgb32)
    paths["rgb32"] = str(root / "rgb32.npz")
    file("corrupt.npz", b"PK\x03\x04 not a zip archive")
    file("corrupt.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    paths["small_png"] = _png(root / "small.png", 20)
    idx32 = folder("idx32")
    for prefix in ("train", "t10k"):
        _write_idx(idx32 / f"{prefix}-images-idx3-ubyte", np.zeros((4, 32, 32)))
        _write_idx(idx32 / f"{prefix}-labels-idx1-ubyte", np.arange(4))
    file("bad_idx/train-images-idx3-ubyte", b"\x00\x00\x09\x03 wrong type")
    paths["bad_idx"] = str(root / "bad_idx")
    # Outputs that exist already: a stranger's folder and earlier outputs of each script.
    file("foreign/thesis.tex", USER_TEXT)
    paths["foreign"] = str(root / "foreign")
    for name in ("grid.png", "samples.npz"):
        file(f"samples_out/{name}", b"earlier samples")
    file("inpaint_out/inpainting.png", b"earlier inpainting")
    for name in ("metrics.json", "report.md"):
        file(f"eval_out/{name}", "{}")
    for name in REQUIRED_FILES:
        file(f"earlier_export/{name}", config if name == "config.json" else b"garbage")
    file("toy_out/fig3_langevin.png", b"earlier figure")
    file("classifier.keras", b"earlier classifier")
    file("grid.png", b"earlier grid")
    (root / "dir.png").mkdir()
    paths["dir_png"] = str(root / "dir.png")
    report = f"{time.strftime('%Y-%m-%d')}-{socket.gethostname()}.json"
    file(f"bench_out/{report}", "{}")
    for name in ("samples_out", "inpaint_out", "eval_out", "earlier_export", "toy_out",
                 "bench_out"):
        paths[name] = str(root / name)
    return paths


def _snapshot(root: str) -> dict[str, str]:
    """sha256 of every file under `root` (a link: its target), by relative path."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[os.path.relpath(path, root)] = "link to " + os.readlink(path)
                continue
            with open(path, "rb") as f:
                found[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return found


CASES = [
    # fit.py: data, counts, outputs, contradictions
    ("fit", ["--data-dir", "{missing}", "--out", "{new}"], "does not exist"),
    ("fit", ["--data-dir", "{empty}", "--out", "{new}"], "holds no usable data"),
    ("fit", ["--data-dir", "{notes_txt}", "--out", "{new}"], "is not an .npz or .npy array"),
    ("fit", ["--data-dir", "{rgb32}", "--out", "{new}"],
     "are 32x32x3 but data.image_size=28, data.channels=1: add --set data.image_size=32 "
     "--set data.channels=3"),
    ("fit", ["--config", "mnist", "--data-dir", "{idx32}", "--out", "{new}"],
     "are 32x32x1 but data.image_size=28"),
    ("fit", ["--data-dir", "{corrupt_npz}", "--out", "{new}"], "cannot read array file"),
    ("fit", ["--data-dir", "{bad_idx}", "--out", "{new}"], "is not an unsigned-byte IDX file"),
    ("fit", ["--steps", "0", "--out", "{new}"], "train.steps must be > 0"),
    ("fit", ["--set", "train.batch_size=0", "--out", "{new}"], "train.batch_size must be > 0"),
    ("fit", ["--set", "train.time_budget=-5", "--out", "{new}"],
     "train.time_budget must be a finite number of minutes >= 0"),
    ("fit", ["--set", "train.time_budget=nan", "--out", "{new}"],
     "train.time_budget must be a finite number of minutes >= 0"),
    ("fit", ["--out", "{user_file}"], "is a file, not a folder"),
    ("fit", ["--out", "{user_file}/run"], "is a file, not a folder"),
    ("fit", ["--out", "{broken_link}"], "is a link to a missing"),
    ("sample", ["{run}", "--out", "{broken_link}/grids"], "is a link to a missing"),
    ("fit", ["--out", "{foreign}"], "is not a run folder (it holds thesis.tex)"),
    ("fit", ["--dataset", "embedded", "--data-dir", "{rgb32}", "--out", "{new}"],
     "data.dataset=embedded reads the MNIST subset"),
    ("fit", ["--set", "data.dataset=embedded", "--set", "data.data_dir={rgb32}", "--out",
             "{new}"], "data.dataset=embedded reads the MNIST subset"),
    ("fit", ["--set", "data.download=true", "--out", "{new}"], "drop data.download"),
    ("fit", ["--resume", "{run}", "--config", "mnist"], "leave out --config"),
    ("fit", ["--resume", "{run}", "--out", "{new}"], "leave out --out"),
    ("fit", ["--resume", "{missing}"], "no such run folder"),
    ("fit", ["--set", "sample.method=ancestral", "--set", "sample.step_size=1e-5", "--out",
             "{new}"], "sample.step_size set the Langevin sampler"),
    # sample.py
    ("sample", ["{missing}"], "does not exist"),
    ("sample", ["{empty}"], "no config file"),
    ("sample", ["{user_file}"], "is a file, not a folder written by fit.py"),
    ("sample", ["{run_nockpt}"], "no checkpoint"),
    ("sample", ["{corrupt_run}"], "is not valid JSON"),
    ("sample", ["{run}", "--num-images", "0"], "sample.num_images must be > 0"),
    ("sample", ["{run}", "--steps-per-level", "0"], "sample.steps_per_level must be > 0"),
    ("sample", ["{run}", "--strip", "0"], "--strip K needs K >= 1"),
    ("sample", ["{run}", "--out", "{user_file}"], "is a file, not a folder"),
    ("sample", ["{run}", "--out", "{samples_out}"], "already exist: add --overwrite"),
    ("sample", ["{run}", "--set", "sample.grid_every=5"], "sample.grid_every has no effect"),
    ("sample", ["{run}", "--set", "model.ngf=3"], "only sample settings"),
    ("sample", ["{run}", "--set", "sample.method=ancestral", "--steps-per-level", "5"],
     "sample.steps_per_level set the Langevin sampler"),
    # inpaint.py
    ("inpaint", ["{missing}", "--mask", "bottom"], "does not exist"),
    ("inpaint", ["{run}", "--mask", "bottom", "--num-images", "0"], "--num-images must be >= 1"),
    ("inpaint", ["{run}", "--mask", "bottom", "--draws", "0"], "--draws must be >= 1"),
    ("inpaint", ["{run}", "--mask", "top", "--images", "{missing}.png"], "no image file"),
    ("inpaint", ["{run}", "--mask", "top", "--images", "{corrupt_png}"], "cannot read image"),
    ("inpaint", ["{run}", "--mask", "top", "--images", "{small_png}"], "takes 28x28 images"),
    ("inpaint", ["{run}", "--mask", "{corrupt_png}"], "cannot read mask image"),
    ("inpaint", ["{run}", "--mask", "{notes_txt}"], "cannot read mask image"),
    ("inpaint", ["{run}", "--mask", "top", "--images", "{small_png}", "--num-images", "2"],
     "leave out --num-images"),
    ("inpaint", ["{run}", "--mask", "top", "--set", "sample.num_images=3"],
     "sample.num_images has no effect"),
    ("inpaint", ["{run}", "--mask", "top", "--out", "{inpaint_out}"], "add --overwrite"),
    ("inpaint", ["{run}", "--mask", "top", "--out", "{user_file}"], "is a file, not a folder"),
    # export.py
    ("export", ["{missing}", "--out", "{new}"], "does not exist"),
    ("export", ["{user_file}", "--out", "{new}"], "is a file"),
    ("export", ["{run_nockpt}", "--out", "{new}"], "no checkpoint"),
    ("export", ["{corrupt_run}", "--out", "{new}"], "is not valid JSON"),
    ("export", ["{run}", "--out", "{foreign}"], "is not an export folder"),
    ("export", ["{run}", "--out", "{foreign}", "--overwrite"], "is not an export folder"),
    ("export", ["{run}", "--out", "{run}", "--overwrite"], "is not an export folder"),
    ("export", ["{run}", "--out", "{user_file}"], "is a file, not a folder"),
    ("export", ["{run}", "--out", "{earlier_export}"], "add --overwrite"),
    # evaluate.py
    ("evaluate", ["{missing}"], "does not exist"),
    ("evaluate", ["{empty}"], "no config file"),
    ("evaluate", ["{user_file}"], "is a file"),
    ("evaluate", ["{run}", "--num-samples", "1"], "--num-samples must be >= 2"),
    ("evaluate", ["{run}", "--batch", "0"], "--batch must be >= 1"),
    ("evaluate", ["{run}", "--features", "inception", "--classifier", "{missing}"],
     "--classifier is the feature extractor of --features classifier"),
    ("evaluate", ["{run}", "--real", "--batch", "4"], "--real evaluates training images"),
    ("evaluate", ["{run}", "--set", "sample.num_images=3"], "use --num-samples"),
    ("evaluate", ["{run}", "--out", "{user_file}"], "is a file, not a folder"),
    ("evaluate", ["{run}", "--out", "{foreign}"], "is not an evaluation folder"),
    ("evaluate", ["{run}", "--out", "{eval_out}"], "add --overwrite"),
    ("evaluate", ["{run}", "--out", "{new}", "--real-data", "{missing}"], "does not exist"),
    ("evaluate", ["{run}", "--out", "{new}", "--real-data", "{empty}"], "holds no usable data"),
    ("evaluate", ["{run}", "--out", "{new}", "--real-data", "{rgb32}"],
     "are 32x32x3 but the model makes 28x28x1: pick --real-data"),
    ("evaluate", ["{run}", "--out", "{new}", "--real-data", "{corrupt_npz}"],
     "cannot read array file"),
    # onnx_sample.py
    ("onnx_sample", ["{missing}"], "does not exist"),
    ("onnx_sample", ["{empty}"], "is incomplete"),
    ("onnx_sample", ["{user_file}"], "is a file"),
    ("onnx_sample", ["{export}", "--num-images", "0", "--out", "{new_png}"], "must be >= 1"),
    ("onnx_sample", ["{export}", "--seed", "-1", "--out", "{new_png}"], "seed must be >= 0"),
    ("onnx_sample", ["{export}", "--out", "{grid_png}"], "already exists: add --overwrite"),
    ("onnx_sample", ["{export}", "--out", "{dir_png}"], "is a folder, not a file"),
    ("onnx_sample", ["{export}", "--out", "{user_file}"], "must end in .png"),
    ("onnx_sample", ["{export}", "--num-images", "1", "--out", "{new_png}"], "cannot load"),
    ("onnx_sample", ["{ancestral}", "--out", "{new_png}"], "annealed Langevin dynamics only"),
    # train_classifier.py
    ("train_classifier", ["--data-dir", "{missing}", "--out", "{new_keras}"],
     "is not a folder of MNIST-format IDX files"),
    ("train_classifier", ["--data-dir", "{empty}", "--out", "{new_keras}"],
     "has no train-images-idx3-ubyte"),
    ("train_classifier", ["--data-dir", "{rgb32}", "--out", "{new_keras}"], "is not a folder"),
    ("train_classifier", ["--data-dir", "{idx32}", "--out", "{new_keras}"],
     "the classifier takes 28x28"),
    ("train_classifier", ["--data-dir", "{bad_idx}", "--out", "{new_keras}"],
     "is not an unsigned-byte IDX file"),
    ("train_classifier", ["--data-dir", "embedded", "--epochs", "0", "--out", "{new_keras}"],
     "--epochs and --batch must be >= 1"),
    ("train_classifier", ["--data-dir", "embedded", "--min-accuracy", "2", "--out",
                          "{new_keras}"], "--min-accuracy is a test accuracy in [0, 1]"),
    ("train_classifier", ["--data-dir", "embedded", "--out", "{classifier_keras}"],
     "already exists: add --overwrite"),
    ("train_classifier", ["--data-dir", "embedded", "--out", "{user_file}"],
     "must end in .keras"),
    ("train_classifier", ["--data-dir", "embedded", "--out", "{user_file}/c.keras"],
     "is a file, not a folder"),
    # toy.py
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{missing}"], "does not exist"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{empty}"],
     "holds no usable data"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{notes_txt}"],
     "is not an .npz or .npy array"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{rgb32}", "--image-size", "8"],
     "use --image-size 32 --channels 3"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{corrupt_npz}"],
     "cannot read array file"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{rgb32}", "--steps", "0"],
     "steps must be an integer >= 1"),
    ("toy", ["fig1", "--quick", "--out", "{new}", "--data-dir", "{rgb32}", "--noise-std", "-1"],
     "noise_std must be >= 0"),
    ("toy", ["fig2", "--quick", "--out", "{new}", "--steps", "0"], "steps must be an integer"),
    ("toy", ["fig3", "--quick", "--out", "{new}", "--chains", "0"], "chains must be an integer"),
    ("toy", ["fig3", "--quick", "--out", "{new}", "--repeats", "0"], "at least one seed"),
    ("toy", ["fig3", "--quick", "--out", "{toy_out}"], "already exists: add --overwrite"),
    ("toy", ["fig3", "--quick", "--out", "{user_file}"], "is a file, not a folder"),
    # bench.py
    ("bench", ["--cases", "nope", "--out", "{new}"], "matches no case"),
    ("bench", ["--timeout", "0", "--out", "{new}"], "--timeout must be positive"),
    ("bench", ["--reference", "{missing}", "--out", "{new}"], "no models/ and losses/"),
    ("bench", ["--python", sys.executable, "--out", "{new}"], "give --reference DIR too"),
    ("bench", ["--cases", "serving", "--export", "{missing}", "--out", "{new}"],
     "does not exist"),
    ("bench", ["--cases", "serving", "--export", "{empty}", "--out", "{new}"], "is incomplete"),
    ("bench", ["--cases", "peak", "--export", "{export}", "--out", "{new}"],
     "leaves serving out"),
    ("bench", ["--cases", "peak", "--out", "{user_file}"], "is a file, not a folder"),
    ("bench", ["--cases", "peak", "--out", "{bench_out}"], "add --overwrite"),
]


@pytest.mark.parametrize("script, args, words", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_input_is_one_line_and_changes_no_file(world, capsys, script, args, words):
    before = _snapshot(world["root"])
    module = SCRIPTS[script]
    code = run_main(module.main, [arg.format(**world) for arg in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert words.format(**world) in err, err
    assert _snapshot(world["root"]) == before


def test_scripts_exit_2_with_one_line_in_a_real_process(world):
    """The exit code and stderr that a shell sees (the matrix calls `main` in-process)."""
    for script, args, words in [
            ("fit", ["--data-dir", "/nonexistent/mnist", "--steps", "1", "--out", world["new"]],
             "error: data directory /nonexistent/mnist does not exist"),
            ("export", [world["run"], "--out", world["foreign"], "--overwrite"],
             "is not an export folder")]:
        before = _snapshot(world["root"])
        done = subprocess.run([sys.executable, os.path.join(REPO, "scripts", f"{script}.py"),
                               *args], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert lines[-1].startswith("error: ") and words in lines[-1], done.stderr
        assert "Traceback" not in done.stderr
        assert _snapshot(world["root"]) == before


# --data-dir is read whatever the preset -----------------------------------------------------

class _Stop(Exception):
    """Raised in place of building the model: the data was read by then."""


def _fit_until_the_model(monkeypatch, capsys, args: list[str]) -> tuple[str, Config]:
    """Runs fit.py until it would build the model; returns what it printed and the config."""
    import keras_ncsn.training

    def stop(config):
        raise _Stop(config)

    monkeypatch.setattr(keras_ncsn.training, "build_model", stop)
    with pytest.raises(_Stop) as info:
        SCRIPTS["fit"].main(args)
    printed = capsys.readouterr().out
    return printed, info.value.args[0]


def test_data_dir_under_the_default_preset_reads_that_path(tmp_path, monkeypatch, capsys):
    path = tmp_path / "digits.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    printed, config = _fit_until_the_model(monkeypatch, capsys, [
        "--data-dir", str(path), "--set", "data.image_size=8", "--out", str(tmp_path / "run")])
    assert config.data.dataset == "files" and config.data.data_dir == str(path)
    assert f"data: 38 training and 2 held-out images (8x8x1) from array file {path}" in printed


@pytest.mark.skipif(not os.path.isdir(MNIST), reason="no shared MNIST IDX files")
def test_data_dir_under_a_paper_preset_reads_the_idx_files(tmp_path, monkeypatch, capsys):
    printed, config = _fit_until_the_model(monkeypatch, capsys, [
        "--config", "mnist", "--data-dir", MNIST, "--set", "data.max_train_images=100",
        "--set", "data.eval_images=10", "--out", str(tmp_path / "run")])
    assert config.data.dataset == "mnist" and config.data.data_dir == MNIST
    assert (f"data: 100 training and 10 held-out images (28x28x1) from IDX files in {MNIST}; "
            "held out: its test split") in printed


def test_fit_trains_on_the_data_dir_and_saves_where_it_came_from(tmp_path, capsys):
    """End to end: the run folder's config names the .npz, not the embedded digits."""
    path = tmp_path / "digits.npz"
    np.savez(path, x=np.random.default_rng(0).integers(0, 256, (40, 8, 8), dtype=np.uint8))
    out = tmp_path / "run"
    args = ["--no-progress", "--data-dir", str(path), "--out", str(out), "--steps", "1",
            *[a for item in TINY + ["data.image_size=8", "sample.num_images=1"]
              for a in ("--set", item)]]
    assert SCRIPTS["fit"].main(args) == 0
    assert "from array file" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())["data"]
    assert (saved["dataset"], saved["data_dir"]) == ("files", str(path))


def test_config_data_source_follows_what_is_set():
    quick = get_config("quick")
    assert override(quick, ["data.data_dir=x.npz"]).data.dataset == "files"
    assert override(get_config("mnist"), ["data.data_dir=d"]).data.dataset == "mnist"
    files = override(quick, ["data.data_dir=x.npz"])
    assert override(files, ["data.dataset=embedded"]).data.data_dir == ""
    with pytest.raises(ConfigError, match="data.dataset=embedded"):
        override(quick, ["data.dataset=embedded", "data.data_dir=x.npz"])
    # A section changes at once, so related values may come in any order.
    noise = override(quick, ["noise.sigma_end=2", "noise.sigma_begin=5"]).noise
    assert (noise.sigma_begin, noise.sigma_end) == (5, 2)


def test_converted_image_folder_is_said_in_one_line(tmp_path):
    for i in range(4):
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / f"{i}.png")
    lines: list[str] = []
    make_datasets(DataConfig(dataset="files", data_dir=str(tmp_path), image_size=8,
                             eval_fraction=0.25), 2, log=lines.append)
    assert lines == [
        f"data: converted 4 of the 4 images in {tmp_path} from colour to grayscale "
        "(data.channels=1)",
        f"data: 3 training and 1 held-out images (8x8x1) from image files in {tmp_path}; "
        "held out: a seeded data.eval_fraction=0.25 of the images"]


# Outputs: never replace what the program did not write -------------------------------------

def test_output_checks(tmp_path):
    user = tmp_path / "mine.txt"
    user.write_text(USER_TEXT)
    check_output_folder(str(tmp_path / "new"), ["config.json"], "run folder")
    (tmp_path / "empty").mkdir()
    check_output_folder(str(tmp_path / "empty"), ["config.json"], "run folder")
    with pytest.raises(OutputError, match="is not a run folder"):
        check_output_folder(str(tmp_path), ["config.json"], "run folder", replace=True)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text("{}")
    check_output_folder(str(tmp_path / "run"), ["config.json"], "run folder", replace=True)
    with pytest.raises(OutputError, match="is an earlier run folder: add --overwrite"):
        check_output_folder(str(tmp_path / "run"), ["config.json"], "run folder")
    check_output_files([str(tmp_path / "a.png"), str(tmp_path / "b.npz")])
    with pytest.raises(OutputError, match="mine.txt already exists"):
        check_output_files([str(user)])
    check_output_files([str(user)], overwrite=True)
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output_files([str(user / "grid.png")], overwrite=True)
    assert user.read_text() == USER_TEXT


def _stub_heavy_export_steps(monkeypatch, run: str) -> None:
    """export_run without TensorFlow work: the model and the three model writers stubbed."""
    import keras_ncsn.export as export

    class Model:
        def sampler(self, **_):
            return None

    def touch(*args):
        path = args[-1]
        if path.endswith("saved_model"):
            os.makedirs(os.path.join(path, "variables"))
            path = os.path.join(path, "saved_model.pb")
        Path(path).write_bytes(b"model")

    config = get_config(run)
    monkeypatch.setattr(export, "load_run", lambda run_dir: (config, Model(), 2))
    for name in ("save_saved_model", "save_score_onnx", "save_sampler_onnx"):
        monkeypatch.setattr(export, name, touch)


def test_export_overwrite_replaces_only_an_earlier_export(world, tmp_path, monkeypatch, capsys):
    _stub_heavy_export_steps(monkeypatch, world["run"])
    export = SCRIPTS["export"]
    out = tmp_path / "model"
    assert export.main([world["run"], "--out", str(out), "--note", "export one"]) == 0
    assert "export one" in (out / "MODEL_CARD.md").read_text()
    (out / "stale.txt").write_text("left by the first export's user")
    before = _snapshot(str(out))
    assert run_main(export.main, [world["run"], "--out", str(out)]) == 2
    assert "add --overwrite" in capsys.readouterr().err and _snapshot(str(out)) == before
    assert export.main([world["run"], "--out", str(out), "--note", "export two",
                        "--overwrite"]) == 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "export two" in card and "export one" not in card
    assert not (out / "stale.txt").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith((".tmp", ".old"))]
