"""Serving exports: the shipped pretrained model (fast) and a tiny run exported end to end (slow).

The fast tests use saved_models/mnist as shipped: SavedModel in a Python that cannot
import keras_ncsn, ONNX Runtime without TensorFlow, and one-line errors on damaged copies.
The slow ones train and export an 8x8 run once per module (the ONNX conversion alone takes
minutes on a 2-core CPU) and compare every runtime with the Keras model it came from.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, SMALL, load_script, train_run
from keras_ncsn.cli import run_main
from keras_ncsn.config import get_config
from keras_ncsn.errors import ConfigError, ExportError
from keras_ncsn.export import (load_export, model_card, read_evaluation, run_evaluation,
                               training_command)
from keras_ncsn.onnx_runtime import REQUIRED_FILES, OnnxExport
from keras_ncsn.masks import center_square_mask, half_mask
from keras_ncsn.sampling import sample_options
from keras_ncsn.training import load_run

export_script, onnx_sample = load_script("export"), load_script("onnx_sample")
SHIPPED = os.path.join(REPO, "saved_models", "mnist")
SHAPE = (8, 8, 1)


def _fresh_python(code: str, cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ""}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _last_json_line(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def _assert_scores_match(actual: np.ndarray, expected: np.ndarray, sigmas: np.ndarray,
                         levels: np.ndarray) -> None:
    """sigma_i * score agrees within 1e-4: scores reach ~1/sigma_L (~100 here), where float32
    rounding of the same network in two runtimes differs by ~1e-4 in absolute terms."""
    weight = sigmas[levels].reshape(-1, 1, 1, 1)
    assert np.abs(weight * (actual - expected)).max() <= 1e-4
    assert np.abs(actual - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


# The shipped pretrained model --------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped():
    return load_export(SHIPPED)


def test_shipped_saved_model_samples_without_keras_ncsn_and_reproducibly(shipped, tmp_path):
    result = _fresh_python(f"""
        import importlib.abc, json, os, sys

        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "keras_ncsn":
                    raise ImportError("keras_ncsn must not be needed")

        sys.meta_path.insert(0, Refuse())
        sys.path = [p for p in sys.path if os.path.abspath(p or ".") != {REPO!r}]
        import tensorflow as tf
        loaded = tf.saved_model.load({os.path.join(SHIPPED, "saved_model")!r})
        images = loaded.sample(num_images=2, seed=5).numpy()
        default = loaded.signatures["serving_default"](num_images=tf.constant(2),
                                                       seed=tf.constant(5, tf.int64))
        assert "keras_ncsn" not in sys.modules
        print(json.dumps({{"images": images.tolist(),
                           "default": list(default.values())[0].numpy().tolist()}}))
    """, str(tmp_path))
    output = {k: np.array(v, np.float32) for k, v in _last_json_line(result).items()}
    images = output["images"]
    assert images.shape == (2, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    # Whether the images are any good is tests/test_shipped_quality.py's job.
    np.testing.assert_array_equal(output["default"], images)  # serving_default = sample, again
    np.testing.assert_array_equal(shipped.sample(num_images=2, seed=5).numpy(), images)  # reload
    assert not np.array_equal(shipped.sample(num_images=2, seed=6).numpy(), images)


@pytest.mark.parametrize("batch", [1, 4])
def test_shipped_score_saved_model_matches_onnx(shipped, batch):
    rng = np.random.default_rng(batch)
    x = rng.random((batch, 28, 28, 1), dtype=np.float32)
    levels = rng.integers(0, 10, batch).astype(np.int32)
    from_saved = shipped.score(x=tf.constant(x), level_index=tf.constant(levels)).numpy()
    _assert_scores_match(OnnxExport(SHIPPED).score(x, levels), from_saved,
                         shipped.sigmas().numpy(), levels)


def test_shipped_numpy_and_onnx_samplers_agree():
    onnx = OnnxExport(SHIPPED)
    images = onnx.sample(2, seed=1, sampler="numpy")
    assert images.shape == (2, 28, 28, 1) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_allclose(onnx.sample(2, seed=1, sampler="onnx"), images, atol=1e-4)


def _onnx_sample_without_tensorflow(folder: str, cwd: str, *args: str):
    return _fresh_python(f"""
        import sys
        import keras_ncsn
        assert "tensorflow" not in sys.modules
        sys.path.insert(0, {os.path.join(REPO, "scripts")!r})
        import onnx_sample
        from keras_ncsn.cli import run_main
        code = run_main(onnx_sample.main, [{folder!r}, *{list(args)!r}])
        assert "tensorflow" not in sys.modules, "TensorFlow was imported"
        sys.exit(code)
    """, cwd)


@pytest.mark.parametrize("sampler", ["numpy", "onnx"])
def test_shipped_onnx_sample_script_imports_no_tensorflow(tmp_path, sampler):
    from PIL import Image

    result = _onnx_sample_without_tensorflow(SHIPPED, str(tmp_path), "--sampler", sampler,
                                             "--num-images", "4", "--seed", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    with Image.open(tmp_path / "onnx_samples.png") as image:  # the default --out
        assert image.size == (2 + 2 * 30, 2 + 2 * 30)


@pytest.mark.parametrize("name, steps", [("mnist", 7500), ("fashion_mnist", 11000)])
def test_shipped_model_card_and_size(name, steps):
    folder = os.path.join(REPO, "saved_models", name)
    card = open(os.path.join(folder, "MODEL_CARD.md"), encoding="utf-8").read()
    for words in ("`python scripts/fit.py --config " + name, f"Steps: {steps}",
                  "held-out DSM loss", "2-core CPU", "## Sample quality",
                  "confident fraction", "class entropy", "(floor)", "![samples](samples.png)"):
        assert words in card
    total = sum(os.path.getsize(os.path.join(root, file))
                for root, _, files in os.walk(folder) for file in files)
    assert total <= 25 * 2**20
    ignored = subprocess.run(["git", "check-ignore", "-q", folder], cwd=REPO)
    assert ignored.returncode == 1  # 1: not ignored, so it is committed with the code


def _zeros(onnx: OnnxExport, count: int) -> np.ndarray:
    return np.zeros((count, *onnx.image_shape), np.float32)


@pytest.mark.parametrize("call, words", [
    (lambda onnx, L: onnx.score(_zeros(onnx, 2), L), "level must be in [0, {L})"),
    (lambda onnx, L: onnx.score(_zeros(onnx, 2), [0, -1]), "in [0, {L}), got -1"),
    (lambda onnx, L: onnx.score(_zeros(onnx, 2), [0, 1, 2]), "2 integers (one per"),
    (lambda onnx, L: onnx.score(_zeros(onnx, 2), 1.0), "an integer or 2 integers"),
    (lambda onnx, L: onnx.score(np.zeros((2, 3, 3, 1)), 0), "x must be [N, {shape}]"),
    (lambda onnx, L: onnx.score(_zeros(onnx, 0), 0), "with N >= 1"),
    (lambda onnx, L: onnx.sample(0), "number of images must be >= 1"),
    (lambda onnx, L: onnx.sample(1.5), "number of images must be an integer"),
    (lambda onnx, L: onnx.sample(1, seed=2.5), "seed must be an integer"),
    (lambda onnx, L: onnx.sample(1, seed=-1), "seed must be >= 0"),
    (lambda onnx, L: onnx.langevin(np.zeros((1, 3, 3, 1)),
                                   np.zeros((onnx.steps_per_level, 1, 3, 3, 1))),
     "x must be [N, {shape}]"),
])
def test_onnx_runtime_checks_inputs_before_running_a_model(call, words):
    onnx = OnnxExport(SHIPPED)
    with pytest.raises(ConfigError) as error:
        call(onnx, onnx.num_levels)
    shape = ", ".join(map(str, onnx.image_shape))
    assert words.format(L=onnx.num_levels, shape=shape) in str(error.value)
    assert "\n" not in str(error.value)
    assert not {"score_session", "sampler_session"} & set(vars(onnx))  # ONNX Runtime unused


@pytest.mark.parametrize("damage, words", [
    ("missing", "does not exist (write one with scripts/export.py"),
    ("interrupted", "still running or was interrupted"),
    ("no_score", "is incomplete (missing score.onnx)"),
    ("no_variables", "is incomplete (missing saved_model/variables/variables.index)"),
    ("truncated_sampler", "cannot load"),
])
def test_bad_export_folder_gives_one_line_error(tmp_path, capsys, damage, words):
    folder = tmp_path / "model"
    if damage == "interrupted":
        (tmp_path / ".tmp-model-abc123").mkdir()
    elif damage != "missing":
        shutil.copytree(SHIPPED, folder)
        if damage == "no_score":
            os.remove(folder / "score.onnx")
        elif damage == "no_variables":
            os.remove(folder / "saved_model" / "variables" / "variables.index")
        else:
            with open(folder / "sampler.onnx", "r+b") as f:
                f.truncate(1000)
    args = [str(folder), "--sampler", "onnx", "--num-images", "1", "--out",
            str(tmp_path / "grid.png")]
    assert run_main(onnx_sample.main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    if damage != "truncated_sampler":
        with pytest.raises(ExportError, match="export folder"):
            load_export(str(folder))


def test_export_of_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    args = [str(tmp_path / "no_run"), "--out", str(tmp_path / "out")]
    assert run_main(export_script.main, args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "does not exist" in err and err.count("\n") == 1
    assert not os.path.exists(tmp_path / "out")


def test_training_command_rebuilds_the_fit_command():
    # exactly train.steps: a time budget could lower them on a slower machine
    assert training_command(get_config("quick")) == \
        "python scripts/fit.py --set train.time_budget=0.0"
    assert training_command(get_config("mnist", ["train.steps=5"])) == \
        "python scripts/fit.py --config mnist --set train.steps=5"


def test_model_card_reports_only_an_evaluation_of_the_exported_sampler(tmp_path):
    sample = get_config("quick").sample
    os.makedirs(tmp_path / "eval")
    recorded = {**dataclasses.asdict(sample), "num_images": 500, "seed": 3}
    with open(tmp_path / "eval" / "metrics.json", "w", encoding="utf-8") as f:
        json.dump({"step": 7, "classes": {}, "sampler": recorded}, f)
    assert run_evaluation(str(tmp_path), 7, sample) is not None  # batch size, seed: same chain
    assert run_evaluation(str(tmp_path), 8, sample) is None      # another step
    tuned = dataclasses.replace(sample, step_size=2 * sample.step_size)
    assert run_evaluation(str(tmp_path), 7, tuned) is None       # another sampler
    # asked for by name (export.py --evaluation DIR), a mismatch is an error, not skipped
    folder = str(tmp_path / "eval")
    assert read_evaluation(folder, 7, sample)["sampler"]["seed"] == 3
    for step, sampler, words in [(8, sample, "evaluated step 7, not the exported step 8"),
                                 (7, tuned, "evaluated another sampler")]:
        with pytest.raises(ExportError, match=words):
            read_evaluation(folder, step, sampler)
    with pytest.raises(ExportError, match="cannot read the evaluation"):
        read_evaluation(str(tmp_path / "missing"), 7, sample)


def test_model_card_lists_further_evaluations():
    config = get_config("quick")
    figures = {"classes": {"confident_fraction": 0.5, "class_entropy": 2.0,
                           "uniform_entropy": 2.303},
               "real_floor": {"confident_fraction": 0.9, "class_entropy": 2.3, "fid": 2.0},
               "fid": {"value": 3.0, "num_real": 1000}, "num_samples": 500,
               "features": "a classifier"}
    seed0 = {**figures, "command": "python scripts/evaluate.py runs/x", "seed": 0}
    seed1 = {**figures, "command": "python scripts/evaluate.py runs/x --seed 1", "seed": 1}
    card = model_card("x", config, 7, None, None, "sampled", (), seed0, [seed1])
    assert "| confident fraction (max class probability > 0.9) | 0.500 | 0.900 |" in card
    assert ("- `python scripts/evaluate.py runs/x --seed 1` (500 samples, seed 1): confident "
            "fraction 0.500 (real 0.900), class entropy 2.000 (real 2.300), FID 3.000 (floor "
            "2.000, 1.50x).") in card
    assert "evaluated again" not in model_card("x", config, 7, None, None, "sampled", (), seed0)


# A tiny run exported end to end ------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    return train_run(tmp_path_factory, SMALL)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("export") / "tiny")
    assert export_script.main([run, "--out", out, "--note", "a test export"]) == 0
    return out


@pytest.fixture(scope="module")
def keras_run(run):
    config, model, _ = load_run(run)
    return config, model


@pytest.mark.slow
def test_export_folder_contents(exported):
    for name in REQUIRED_FILES + ("MODEL_CARD.md", "samples.png"):
        assert os.path.isfile(os.path.join(exported, name)), name
    assert not [n for n in os.listdir(os.path.dirname(exported)) if n.startswith(".tmp-")]
    card = open(os.path.join(exported, "MODEL_CARD.md"), encoding="utf-8").read()
    for words in ("held-out DSM loss", "a test export", "Steps: 2", "--set model.ngf=4",
                  "--set data.image_size=8", "grid-00000002.png"):
        assert words in card


def _onnx_initializer_sizes(graph) -> list[int]:
    """The element count of every initializer of an ONNX graph and of its subgraphs."""
    import onnx

    sizes = [int(np.prod(tensor.dims)) for tensor in graph.initializer]
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH
                             else []) + list(attribute.graphs):
                sizes += _onnx_initializer_sizes(subgraph)
    return sizes


@pytest.mark.slow
def test_export_stores_the_weights_and_the_network_once(keras_run, exported):
    import onnx
    from tensorflow.core.protobuf import saved_model_pb2

    _, model = keras_run
    weights = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    saved = os.path.join(exported, "saved_model")
    reader = tf.train.load_checkpoint(os.path.join(saved, "variables", "variables"))
    stored = sum(int(np.prod(shape)) for name, shape in
                 reader.get_variable_to_shape_map().items() if "OBJECT_GRAPH" not in name)
    assert weights <= stored < weights + 100  # + the sigma table; not a second copy
    # the denoising branch reads the Loop's weights instead of holding its own copy
    sampler = onnx.load(os.path.join(exported, "sampler.onnx")).graph
    sampler = sum(_onnx_initializer_sizes(sampler))
    assert weights <= sampler < 1.2 * weights
    # the network's convolutions are in one function that every endpoint calls, not in
    # each while-loop body and branch (the gradient functions hold one convolution each)
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(saved, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    convolutions = [sum(node.op == "Conv2D" for node in function.node_def)
                    for function in proto.meta_graphs[0].graph_def.library.function]
    assert len([count for count in convolutions if count > 1]) == 1


def test_onnx_conversion_skips_a_failing_optimizer_pass(tmp_path, monkeypatch):
    """The conversion runs tf2onnx without its per-pass graph copies (half the time); a pass
    that then fails makes it convert again with them, skipping that pass."""
    import collections

    import onnxruntime
    from tf2onnx import optimizer

    from keras_ncsn.export import _save_onnx

    class Failing(optimizer.IdentityOptimizer):
        def _optimize(self, graph):
            calls.append(os.environ.get("TF2ONNX_CATCH_ERRORS"))
            raise RuntimeError("a broken pass")

    calls = []
    monkeypatch.delenv("TF2ONNX_CATCH_ERRORS", raising=False)
    monkeypatch.setattr(optimizer, "_optimizers", collections.OrderedDict(
        [*optimizer._optimizers.items(), ("failing", Failing)]))
    function = tf.function(lambda x: 2 * x + 1, input_signature=[
        tf.TensorSpec([None, 3], tf.float32, name="x")]).get_concrete_function()
    path = str(tmp_path / "f.onnx")
    _save_onnx(function, path, "y")
    assert calls[:2] == ["FALSE", None]  # the fast try failed, the catching one went on
    session = onnxruntime.InferenceSession(path)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(session.run(["y"], {"x": x})[0], 2 * x + 1)
    assert "TF2ONNX_CATCH_ERRORS" not in os.environ


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 5])
def test_score_of_saved_model_and_onnx_match_keras(keras_run, exported, batch):
    _, model = keras_run
    rng = np.random.default_rng(batch)
    x = rng.random((batch, *SHAPE), dtype=np.float32)
    levels = rng.integers(0, 3, batch).astype(np.int32)
    expected = model.score(tf.constant(x), tf.constant(levels)).numpy()
    loaded = load_export(exported)
    sigmas = loaded.sigmas().numpy()
    np.testing.assert_allclose(sigmas, [5.0, 0.31622776, 0.02], rtol=1e-6)
    from_saved = loaded.score(x=tf.constant(x), level_index=tf.constant(levels)).numpy()
    _assert_scores_match(from_saved, expected, sigmas, levels)
    _assert_scores_match(OnnxExport(exported).score(x, levels), expected, sigmas, levels)


@pytest.mark.slow
def test_saved_model_sample_is_the_keras_sampler(keras_run, exported):
    config, model = keras_run
    loaded = load_export(exported)
    images = loaded.sample(num_images=2, seed=3).numpy()
    assert images.shape == (2, *SHAPE) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(loaded.sample(num_images=2, seed=3).numpy(), images)
    keras_images = model.sample(2, seed=3, **sample_options(config.sample)).numpy()
    np.testing.assert_allclose(images, keras_images, atol=1e-5)


@pytest.mark.slow
def test_saved_model_sample_ancestral_is_the_keras_ancestral_sampler(keras_run, exported):
    config, model = keras_run
    loaded = load_export(exported)
    images = loaded.sample_ancestral(num_images=2, seed=3).numpy()
    keras_images = model.sample(2, seed=3, method="ancestral",
                                jit_compile=config.sample.jit_compile).numpy()
    np.testing.assert_allclose(images, keras_images, atol=1e-5)


@pytest.mark.slow
def test_likelihood_of_the_export_is_the_runs(run, exported, tmp_path):
    from keras_ncsn.evaluation.likelihood import evaluate_likelihood

    bits = [evaluate_likelihood(source, str(tmp_path / name), images=8, progress=False,
                                log=lambda _: None)["bits_per_dim"]
            for source, name in ((run, "run"), (exported, "export"))]
    assert bits[0] == pytest.approx(bits[1], rel=1e-4)


@pytest.fixture(scope="module")
def loaded(exported):
    """The tiny export's SavedModel, held for the module: its endpoints hold only weak
    references to its variables."""
    return load_export(exported)


@pytest.mark.slow
def test_saved_model_inpaint_is_the_keras_inpainting(keras_run, loaded):
    """Per-image masks, one seed: NCSN.inpaint's images, observed pixels back exactly."""
    config, model = keras_run
    images = np.random.default_rng(0).random((2, *SHAPE), dtype=np.float32)
    mask = np.stack([half_mask(8, "bottom"), center_square_mask(8, 4)])
    out = loaded.inpaint(images=images, mask=mask, seed=1).numpy()
    keras_out = model.inpaint(images, mask, seed=1, **sample_options(config.sample)).numpy()
    np.testing.assert_allclose(out, keras_out, atol=1e-5)
    observed = mask == 1
    np.testing.assert_array_equal(out[observed[..., 0]], images[observed[..., 0]])
    assert not np.allclose(out[~observed[..., 0]], images[~observed[..., 0]])


X, MASK = np.full((2, *SHAPE), 0.5, np.float32), np.ones((1, *SHAPE), np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("endpoint, inputs, words", [
    ("sample", dict(num_images=-1, seed=1), "num_images must be >= 1"),
    ("sample", dict(num_images=0, seed=1), "num_images must be >= 1"),
    ("score", dict(x=X, level_index=np.array([0, 3], np.int32)), "level_index must be in [0, 3)"),
    ("score", dict(x=X, level_index=np.array([-1, 0], np.int32)), "level_index must be in [0, 3)"),
    ("score", dict(x=X, level_index=np.array([0, 1, 2], np.int32)),
     "level_index must hold one level per image of x"),
    ("inpaint", dict(images=X * 3, mask=MASK, seed=1), "images must be finite and in [0, 1]"),
    ("inpaint", dict(images=X * np.nan, mask=MASK, seed=1), "images must be finite and in"),
    ("inpaint", dict(images=X[:0], mask=MASK, seed=1), "images must hold at least one image"),
    ("inpaint", dict(images=X, mask=MASK * 0.5, seed=1), "mask must be binary"),
    ("inpaint", dict(images=X, mask=np.ones((3, *SHAPE), np.float32), seed=1),
     "mask must be [N or 1, 8, 8, 1] for images [N, 8, 8, 1]"),
    ("inpaint", dict(images=X, mask=np.ones((1, 8, 8, 2), np.float32), seed=1),
     "mask must be [N or 1, 8, 8, 1]"),
])
def test_saved_model_endpoints_check_their_inputs_in_plain_words(loaded, endpoint, inputs,
                                                                  words):
    """The checks are Assert ops in the SavedModel's graph; without them these inputs failed
    with node names (sample, score) or were accepted (inpaint's range and mask values)."""
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        getattr(loaded, endpoint)(**inputs)
    assert f"assertion failed: [{words}" in str(error.value)


@pytest.mark.slow
def test_saved_model_signatures_refuse_other_types_and_image_sizes(loaded):
    with pytest.raises(TypeError, match="int64"):
        loaded.sample(num_images=1, seed=1.5)
    with pytest.raises(TypeError, match=r"shape=\(None, 8, 8, 1\)"):
        loaded.score(x=np.zeros((1, 4, 4, 1), np.float32), level_index=np.zeros(1, np.int32))


@pytest.mark.slow
def test_onnx_and_numpy_samplers_replay_the_tensorflow_sampler(keras_run, exported):
    config, model = keras_run
    sampler = model.sampler(**sample_options(config.sample))
    seed, shape = 11, (2, *SHAPE)
    x0 = sampler.init_state(shape, seed)
    noise = np.stack([sampler.step_noise(shape, seed, k).numpy()
                      for k in range(sampler.num_steps)])
    drawn = sampler.compiled_loop()(x0, tf.constant(seed, tf.int64), tf.constant(0),
                                    tf.constant(sampler.num_levels)).numpy()
    given = sampler.given_noise_loop()(x0, noise, tf.constant(0)).numpy()
    np.testing.assert_allclose(given, drawn, atol=1e-6)
    onnx = OnnxExport(exported)
    for name in ("numpy", "onnx"):
        np.testing.assert_allclose(onnx.langevin(x0.numpy(), noise, 0, name), drawn,
                                   atol=1e-4, err_msg=name)
    T, x = sampler.steps_per_level, x0.numpy()  # level by level, as OnnxExport.sample runs
    for level in range(sampler.num_levels):
        x = onnx.langevin(x, noise[level * T:(level + 1) * T], level, "onnx")
    np.testing.assert_allclose(x, drawn, atol=1e-4)
