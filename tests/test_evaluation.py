"""Evaluation: FID/KID/Inception score against known values, nearest neighbours, feature
extractors (offline), the classifier trainer, and scripts/evaluate.py end to end."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pytest

from conftest import REPO, SMALL, load_script, set_args
from keras_ncsn.cli import run_main
from keras_ncsn.errors import CheckpointError
from keras_ncsn.evaluation import features, metrics
from keras_ncsn.evaluation.report import DEFAULT_CLASSIFIER

evaluate_script, fit = load_script("evaluate"), load_script("fit")
SHIPPED = os.path.join(REPO, "saved_models", "mnist")


# Metrics ------------------------------------------------------------------------------------

def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)) @ rng.normal(size=(16, 16))
    assert abs(metrics.fid(x, x)) < 1e-6
    values = [metrics.fid(x, x + rng.normal(scale=s, size=x.shape)) for s in (0.1, 0.5, 1, 2)]
    assert values[0] > 0 and all(a < b for a, b in zip(values, values[1:]))


def test_confident_fraction_counts_images_whose_top_class_exceeds_the_threshold():
    probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.5, 0.5], [0.01, 0.99]])
    assert metrics.confident_fraction(probs) == pytest.approx(0.5)  # 0.9 itself is not > 0.9
    assert metrics.confident_fraction(probs, threshold=0.4) == 1.0
    assert metrics.confident_fraction(np.full((7, 10), 0.1)) == 0.0  # a hesitant classifier


def test_class_entropy_is_log_k_for_balanced_predictions_and_zero_for_one_class():
    labels = np.arange(100) % 10
    balanced = np.eye(10)[labels] * 0.6 + 0.04  # argmax = label; not one-hot on purpose
    assert metrics.class_entropy(balanced) == pytest.approx(np.log(10))
    assert metrics.class_entropy(np.eye(10)[np.zeros(50, int)]) == 0.0
    two = np.eye(10)[np.array([0] * 75 + [3] * 25)]
    assert metrics.class_entropy(two) == pytest.approx(-(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))


def test_fid_of_a_shifted_copy_is_the_squared_shift():
    """Same covariance, means apart by delta: FID = ||delta||^2 exactly, for any sample."""
    x = np.random.default_rng(2).normal(size=(300, 8)) @ np.diag(np.arange(1.0, 9.0))
    delta = np.linspace(-1.0, 2.0, 8)
    assert metrics.fid(x, x + delta) == pytest.approx(delta @ delta, rel=1e-6)


def test_fid_matches_the_closed_form_for_diagonal_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    got = metrics.fid_from_statistics(rotation @ mu1, rotation @ np.diag(s1) @ rotation.T,
                                      rotation @ mu2, rotation @ np.diag(s2) @ rotation.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_kid_of_two_point_masses_is_their_kernel_distance():
    """All features at a vs all at b: every subset's MMD^2 is k(a,a) + k(b,b) - 2 k(a,b)
    with KID's kernel k(x, y) = (x.y / D + 1)^3."""
    a, b = np.array([1.0, 0.0, 2.0, -1.0]), np.array([0.5, 1.0, 0.0, 1.0])

    def k(x, y):
        return (x @ y / 4 + 1) ** 3

    found = metrics.kid(np.tile(a, (30, 1)), np.tile(b, (40, 1)), subsets=5, subset_size=20)
    assert found["mean"] == pytest.approx(k(a, a) + k(b, b) - 2 * k(a, b), rel=1e-12)
    assert found["std"] == pytest.approx(0.0, abs=1e-12) and found["subset_size"] == 20


def test_kid_is_unbiased_on_two_samples_of_one_gaussian():
    rng = np.random.default_rng(0)
    estimates = [metrics.mmd2_unbiased(rng.normal(size=(50, 8)), rng.normal(size=(50, 8)))
                 for _ in range(400)]
    stderr = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(np.mean(estimates)) < 3 * stderr
    # A different distribution is detected, and kid() averages subsets of the two sets.
    shifted = metrics.kid(rng.normal(size=(200, 8)), rng.normal(0.5, 1, size=(200, 8)),
                          subsets=10, subset_size=100)
    assert shifted["mean"] > 20 * stderr and shifted["subset_size"] == 100


def test_inception_score_of_a_perfect_classifier_on_uniform_classes_is_the_class_count():
    labels = np.tile(np.arange(10), 30)
    certain = np.eye(10)[labels]  # a perfect, certain classifier's probabilities
    assert metrics.inception_score(certain)["mean"] == pytest.approx(10.0)
    assert metrics.inception_score(certain, splits=3)["mean"] == pytest.approx(10.0)
    # Sorted by class, each split holds 3-4 classes: the score is that count, not 10.
    assert metrics.inception_score(certain[np.argsort(labels)], splits=3)["mean"] < 4.1
    assert metrics.inception_score(np.full((300, 10), 0.1))["mean"] == pytest.approx(1.0)
    # ... and of a perfect convolutional classifier constructed by hand, on images that each
    # light up one of 10 pixels: its softmax is near one-hot on the right class.
    net = keras.Sequential([keras.Input((2, 5, 1)), keras.layers.Flatten(),
                            keras.layers.Dense(10, name=features.FEATURE_LAYER),
                            keras.layers.Dense(10, activation="softmax")])
    net.layers[1].set_weights([np.eye(10), np.zeros(10)])
    net.layers[2].set_weights([50 * np.eye(10), np.zeros(10)])
    images = np.eye(10)[labels].reshape(-1, 2, 5, 1)
    extractor = features.FeatureExtractor(features._two_outputs(net, features.FEATURE_LAYER),
                                          "perfect")
    feats, probs = extractor(images)
    assert feats.shape == (300, 10) and (probs.argmax(1) == labels).all()
    assert metrics.inception_score(probs)["mean"] == pytest.approx(10.0, rel=1e-6)


def test_nearest_neighbours_of_training_images_are_themselves():
    from keras_ncsn.config import DataConfig
    from keras_ncsn.data import load_images

    train = load_images(DataConfig(max_train_images=2000), "train").astype(np.float32) / 255
    queries = np.random.default_rng(0).choice(len(train), 50, replace=False)
    ids, dist = metrics.nearest_neighbours(train[queries], train, 3, chunk=16)
    assert (ids[:, 0] == queries).all() and np.abs(dist[:, 0]).max() < 1e-3
    assert (np.diff(dist, axis=1) >= 0).all()
    # Leaving each query out returns its nearest other image: the former second neighbour.
    left_out, _ = metrics.nearest_neighbours(train[queries], train, 1, exclude=queries)
    assert (left_out[:, 0] == ids[:, 1]).all()


def test_memorisation_flags_copied_samples():
    rng = np.random.default_rng(0)
    copied = metrics.memorisation(np.zeros(100), rng.uniform(5, 8, 500))
    assert copied["fraction_samples_below_test_p1"] == 1.0
    fresh = metrics.memorisation(rng.uniform(5, 8, 500), rng.uniform(5, 8, 500))
    assert fresh["fraction_samples_below_test_p1"] < 0.05


# Feature extractors --------------------------------------------------------------------------

def test_inception_weights_unavailable_is_a_one_line_error(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as error:
        features.inception_extractor()
    message = str(error.value)
    assert "cannot be downloaded" in message and "\n" not in message
    assert str(tmp_path) in message and "--features classifier" in message


def test_shipped_classifier_features_and_resizing():
    extractor = features.classifier_extractor(DEFAULT_CLASSIFIER)
    data = features.load_labelled("embedded")
    images = data["x_test"][:200, ..., None].astype(np.float32) / 255
    feats, probs = extractor(images, batch_size=64)
    assert feats.shape == (200, 128) and probs.shape == (200, 10)
    assert np.mean(probs.argmax(1) == data["y_test"][:200]) >= 0.98
    small = extractor.prepare(images[:4, ::2, ::2])  # 14x14 input is resized to 28x28
    assert small.shape == (4, 28, 28, 1)
    info = json.load(open(DEFAULT_CLASSIFIER.replace(".keras", ".json")))
    assert info["test_accuracy"] >= 0.99 and info["test_images"] == 10_000


def test_missing_classifier_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="train_classifier.py"):
        features.classifier_extractor(str(tmp_path / "none.keras"))


def test_classifier_trainer_reaches_its_accuracy_on_a_quick_config(tmp_path):
    """Two epochs on 4,000 embedded digits: >= 90% (93% measured). The full recipe reaches
    >= 99% (keras_ncsn/assets/mnist_classifier.json), checked by the slow test below."""
    data = features.load_labelled("embedded")
    data = {**data, "x_train": data["x_train"][:4000], "y_train": data["y_train"][:4000]}
    model, accuracy = features.train_classifier(data, epochs=2, batch_size=64)
    assert accuracy >= 0.90
    path = str(tmp_path / "c.keras")
    features.save_classifier(model, path, {"test_accuracy": accuracy})
    assert os.path.getsize(path) < 1_000_000
    assert features.classifier_extractor(path)(data["x_test"][:5, ..., None] / 255)[0].shape \
        == (5, 128)


# The shipped classifiers' commands (their .json files): mnist 0.9914, fashion_mnist 0.8807
# test accuracy after 4 epochs, seed 0; the minimums leave room for another CPU's round-off.
@pytest.mark.slow
@pytest.mark.parametrize("name, epochs, minimum", [("mnist", 4, 0.99),
                                                   ("fashion_mnist", 4, 0.87)])
def test_classifier_script_reaches_the_required_accuracy(tmp_path, capsys, name, epochs,
                                                         minimum):
    folder = os.path.join(REPO, os.pardir, "shared", "data", name)
    if not os.path.isdir(folder):
        pytest.skip(f"no {name} IDX files at {folder}")
    script = load_script("train_classifier")
    out = str(tmp_path / f"{name}.keras")
    code = run_main(script.main, ["--data-dir", folder, "--epochs", str(epochs), "--out", out,
                                         "--min-accuracy", str(minimum), "--no-progress"])
    assert code == 0, capsys.readouterr().err


# scripts/evaluate.py ---------------------------------------------------------------------------

def _evaluate(capsys, *args: str) -> tuple[int, str, str]:
    code = run_main(evaluate_script.main, ["--no-progress", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _check_report(out: str, num_samples: int, source: str) -> dict:
    """The report's files, and its FID, KID and Inception score are those of the samples it
    saved against the source's test images (recomputed here with the default extractor)."""
    from keras_ncsn.data import load_images
    from keras_ncsn.evaluation import report as report_module

    found = json.load(open(os.path.join(out, "metrics.json")))
    assert found["num_samples"] == num_samples and found["fid"]["num_samples"] == num_samples
    samples = np.load(os.path.join(out, "samples.npz"))["images"]
    config = report_module.check_source(source)
    test = load_images(report_module.real_data_config(config.data, None), "eval")
    extractor = report_module.make_extractor("classifier", None)
    assert len(samples) == num_samples and found["features"] == extractor.name
    sample_features, probabilities = extractor(samples)
    test_features, _ = extractor(test.astype(np.float32) / 255.0)
    assert found["fid"]["value"] == pytest.approx(metrics.fid(sample_features, test_features),
                                                  rel=1e-6)
    kid = metrics.kid(sample_features, test_features, seed=found["seed"])
    assert found["kid"]["mean"] == pytest.approx(kid["mean"], rel=1e-6, abs=1e-12)
    assert found["inception_score"]["mean"] == pytest.approx(
        metrics.inception_score(probabilities)["mean"], rel=1e-6)
    report = open(os.path.join(out, "report.md")).read()
    assert f"FID ({num_samples:,} " in report and " test images, classifier " in report
    for name in ("samples.png", "nearest_neighbours.png", "distances.png", "samples.npz"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    return found


@pytest.mark.slow
def test_evaluate_a_tiny_run_and_the_real_floor(tmp_path, capsys):
    """Trains an 8x8 run (images resized to 28x28 for the classifier) and evaluates it."""
    run = str(tmp_path / "run")
    assert run_main(fit.main, ["--no-progress", "--out", run, *set_args(SMALL)]) == 0
    code, stdout, err = _evaluate(capsys, run, "--num-samples", "6", "--batch", "4",
                                  "--out", str(tmp_path / "eval"), "--feature-neighbours")
    assert code == 0, err
    found = _check_report(str(tmp_path / "eval"), 6, run)
    assert found["kind"] == "run" and found["step"] == 4
    assert len(found["heldout_loss"]["per_level"]) == 3
    assert found["real_data"]["train_images"] == 64 and "FID" in stdout
    assert "confident (max p > 0.9)" in stdout and "real-vs-real floor" in stdout
    assert 0.0 <= found["classes"]["confident_fraction"] <= 1.0
    assert found["real_floor"]["num_samples"] == 6 and found["real_floor"]["fid"] > 0
    assert os.path.isfile(tmp_path / "eval" / "nearest_neighbours_features.png")
    code, _, err = _evaluate(capsys, run, "--real", "--num-samples", "8")
    assert code == 0, err
    floor = _check_report(os.path.join(run, "eval-real"), 8, run)
    assert floor["kind"] == "real" and floor["memorisation"]["samples_to_train"]["min"] > 0
    # Real images evaluated as samples are their own floor.
    assert floor["real_floor"]["fid"] == pytest.approx(floor["fid"]["value"])
    assert floor["real_floor"]["confident_fraction"] == floor["classes"]["confident_fraction"]
    # --set changes the sampler of a run folder, and the report says which it used.
    code, _, err = _evaluate(capsys, run, "--num-samples", "4", "--set",
                             "sample.steps_per_level=3", "--out", str(tmp_path / "eval3"))
    assert code == 0, err
    assert _check_report(str(tmp_path / "eval3"), 4, run)["sampler"]["steps_per_level"] == 3
    code, _, err = _evaluate(capsys, run, "--num-samples", "4", "--no-ema", "--out",
                             str(tmp_path / "raw"))
    assert code == 0, err
    raw = _check_report(str(tmp_path / "raw"), 4, run)
    assert raw["ema"] is False and found["ema"] is True
    assert "raw (not EMA) weights" in open(tmp_path / "raw" / "report.md").read()
    code, _, err = _evaluate(capsys, run, "--set", "train.steps=3")
    assert code == 2 and "only sample.KEY=VALUE" in err


def test_evaluate_the_shipped_export(tmp_path, capsys):
    out = str(tmp_path / "eval")
    code, _, err = _evaluate(capsys, SHIPPED, "--num-samples", "4", "--batch", "4",
                             "--out", out)
    assert code == 0, err
    found = _check_report(out, 4, SHIPPED)
    assert found["kind"] == "export" and "heldout_loss" not in found
    # FID's reference is the model's eval split, capped at the export's data.eval_images.
    with open(os.path.join(SHIPPED, "config.json")) as f:
        assert found["real_data"]["test_images"] == json.load(f)["data"]["eval_images"]


@pytest.mark.parametrize("args, words", [
    (["{missing}"], "does not exist"),
    ([SHIPPED, "--num-samples", "0"], "--num-samples must be >= 2"),
    ([SHIPPED, "--seed", "-1"], "--seed must be >= 0"),
    ([SHIPPED, "--classifier", "{missing}"], "train_classifier.py"),
    ([SHIPPED, "--set", "sample.steps_per_level=3"], "is an export"),
    ([SHIPPED, "--no-ema"], "--no-ema needs a run folder"),
])
def test_bad_input_is_a_one_line_error(tmp_path, capsys, args, words):
    missing = str(tmp_path / "missing")
    code, _, err = _evaluate(capsys, *[a.format(missing=missing) for a in args])
    assert code == 2 and words in err and err.count("\n") == 1
