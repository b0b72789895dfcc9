"""The toy experiments (Fig. 1-3): the mixture's exact densities and scores, the samplers'
mode weights, the SSM-trained score models, and scripts/toy.py end to end (--quick)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import load_script
from keras_ncsn.cli import run_main
from keras_ncsn.config import DataConfig
from keras_ncsn.errors import ConfigError
from keras_ncsn.sampling import AnnealedLangevin
from keras_ncsn.toy import (PAPER_MIXTURE, SCHEDULES, Fig1Result, GaussianMixture,
                            ResidualScoreNet, ScoreMLP, annealed_sampler, exact_score_fn,
                            fig1_experiment, fig2_experiment, fig3_experiment, fit_sliced,
                            uniform_init)

toy_script = load_script("toy")
HEAVY = 1  # the (5, 5) mode, weight 4/5
POINTS = tf.constant(np.random.default_rng(0).uniform(-8, 8, size=(64, 2)), tf.float32)


@pytest.mark.parametrize("sigma, perturbation", [
    (0.0, "convolve"), (3.0, "convolve"), (2.0, "replace"),
    (np.linspace(0.1, 10, 64), "convolve"), (np.linspace(1, 20, 64), "replace")])
def test_score_is_the_gradient_of_the_log_density(sigma, perturbation):
    with tf.GradientTape() as tape:
        tape.watch(POINTS)
        log_p = tf.reduce_sum(PAPER_MIXTURE.log_prob(POINTS, sigma, perturbation))
    np.testing.assert_allclose(PAPER_MIXTURE.score(POINTS, sigma, perturbation).numpy(),
                               tape.gradient(log_p, POINTS).numpy(), atol=1e-4)


@pytest.mark.parametrize("sigma, perturbation, variance", [
    (0.0, "convolve", 1.0), (2.0, "convolve", 5.0), (2.0, "replace", 4.0)])
def test_perturbed_density_is_the_hand_computed_mixture(sigma, perturbation, variance):
    x = np.array([[1.0, -2.0], [5.0, 5.0]])
    expected = sum(w * np.exp(-((x - m) ** 2).sum(1) / (2 * variance)) / (2 * np.pi * variance)
                   for w, m in zip((0.2, 0.8), np.array([[-5, -5], [5, 5]])))
    got = np.exp(PAPER_MIXTURE.log_prob(x, sigma, perturbation).numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_density_integrates_to_one_and_samples_follow_the_weights():
    axis = np.linspace(-12, 12, 241, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), -1).reshape(-1, 2)
    mass = np.exp(PAPER_MIXTURE.log_prob(grid).numpy()).sum() * (axis[1] - axis[0]) ** 2
    assert mass == pytest.approx(1.0, abs=1e-4)
    samples = PAPER_MIXTURE.sample(20_000, [0, 1]).numpy()
    assert PAPER_MIXTURE.mode_fractions(samples)[HEAVY] == pytest.approx(0.8, abs=0.01)
    upper = samples[samples.sum(1) > 0]
    assert upper.mean(0) == pytest.approx([5, 5], abs=0.03)
    assert upper.std(0) == pytest.approx([1, 1], abs=0.03)


def test_bad_mixtures_and_perturbations():
    with pytest.raises(ConfigError, match="one weight per mean"):
        GaussianMixture(weights=(0.5, 0.6))
    with pytest.raises(ConfigError, match="perturbation"):
        PAPER_MIXTURE.score(POINTS, 1.0, "blur")
    with pytest.raises(ConfigError, match="schedule"):
        fig3_experiment(schedule="other")
    with pytest.raises(ConfigError, match="chains"):
        fig3_experiment(chains=0)


def test_annealed_steps_follow_the_component_variance():
    """code: alpha_i = 0.1 (sigma_i/sigma_L)^2; paper: 0.1 (1 + sigma_i^2)/(1 + sigma_L^2)."""
    code, paper = SCHEDULES["code"], SCHEDULES["paper"]
    drift = annealed_sampler(PAPER_MIXTURE, code).drift  # alpha / 2 in the paper's convention
    np.testing.assert_allclose(2 * drift, 0.1 * (code.sigmas / code.sigmas[-1]) ** 2, rtol=1e-5)
    drift = annealed_sampler(PAPER_MIXTURE, paper).drift
    expected = 0.1 * (1 + paper.sigmas ** 2) / (1 + paper.sigmas[-1] ** 2)
    np.testing.assert_allclose(2 * drift, expected, rtol=1e-5)


def test_the_literal_paper_step_rule_diverges_with_the_convolved_mixture():
    """Why `Annealing` scales the step by the variance: 0.1 (sigma_i/0.1)^2 explodes at sigma 10."""
    paper = SCHEDULES["paper"]
    sampler = AnnealedLangevin(exact_score_fn(PAPER_MIXTURE, paper.sigmas, "convolve"),
                               paper.sigmas, steps_per_level=100, step_size=0.1,
                               convention="paper", clip=False, jit_compile=False)
    x = sampler(uniform_init(16, 2, 0), 0, levels=(0, 1)).numpy()
    assert not np.all(np.isfinite(x) & (np.abs(x) < 1e6))


@pytest.mark.parametrize("schedule", ["code", "paper"])
def test_annealing_recovers_the_mode_weights_and_plain_langevin_does_not(schedule):
    """The issue's acceptance test: 1280 chains, seeds 0-2, exact scores."""
    for result in fig3_experiment(seeds=(0, 1, 2), schedule=schedule):
        assert abs(result.fractions["annealed"][HEAVY] - 0.8) <= 0.04, result.seed
        assert abs(result.fractions["plain"][HEAVY] - 0.8) > 0.15, result.seed
        assert abs(result.fractions["iid"][HEAVY] - 0.8) <= 0.04, result.seed


def test_score_mlp_learns_a_gaussian_score_by_ssm():
    """One component N((5,5), I): SSM drives the MLP towards -(x - mu); the loss towards -1."""
    mixture = GaussianMixture(weights=(1.0,), means=((5.0, 5.0),))
    model = ScoreMLP(objective="ssm", projection="rademacher", seed=0)
    batches = tf.data.Dataset.range(10 ** 6).map(
        lambda i: mixture.sample(128, tf.stack([tf.constant(0, tf.int64), i])))
    losses = fit_sliced(model, batches, 600, learning_rate=3e-3)
    assert losses.shape == (600,) and losses[-50:].mean() < -0.9  # optimum: -E||x - mu||^2/2
    x = mixture.sample(256, [1, 1])
    error = np.linalg.norm(model(x).numpy() - mixture.score(x).numpy(), axis=1).mean()
    assert error < 0.3


@pytest.mark.slow
def test_fig2_ssm_score_is_10x_worse_between_the_modes():
    result = fig2_experiment(seed=0)
    assert result.low_density_error >= 10 * result.near_mode_error
    assert result.near_mode_error < 0.3


def test_residual_score_net_and_noisy_ssm_steps():
    model = ResidualScoreNet((8, 8, 3), filters=4, blocks=1, noise_std=0.01, seed=0)
    assert model(tf.zeros((2, 8, 8, 3))).shape == (2, 8, 8, 3)
    images = tf.data.Dataset.from_tensors(tf.random.uniform((4, 8, 8, 3))).repeat()
    losses = fit_sliced(model, images, 3)
    assert losses.shape == (3,) and np.all(np.isfinite(losses))
    with pytest.raises(ConfigError, match="objective"):
        ScoreMLP(objective="dsm")


def test_fig1_tail_statistics():
    result = Fig1Result({"raw": np.array([9.0, 9.0, -1.0, -3.0]),
                         "noisy": np.array([5.0, 4.0, -2.0, -2.0])}, 0.01, tail_fraction=0.5)
    stats = result.tail_stats()
    assert stats["raw"] == {"steps": 2, "mean": -2.0, "variance": 1.0, "std": 1.0,
                            "relative_std": 0.5}
    assert stats["noisy"]["variance"] == 0.0


def _tiny_images(tmp_path) -> str:
    path = str(tmp_path / "images.npz")
    np.savez(path, x=np.random.default_rng(0).integers(0, 256, (24, 8, 8, 3), dtype=np.uint8))
    return path


def test_fig1_uses_the_same_start_for_both_curves(tmp_path):
    data = DataConfig(dataset="files", data_dir=_tiny_images(tmp_path), image_size=8, channels=3)
    result = fig1_experiment(data, steps=3, batch_size=4, filters=4, blocks=1, noise_std=0.0)
    np.testing.assert_allclose(result.losses["raw"], result.losses["noisy"], rtol=1e-4)


@pytest.mark.parametrize("command", ["fig1", "fig2", "fig3"])
def test_script_quick_runs_write_figure_and_numbers(tmp_path, capsys, command):
    extra = (["--data-dir", _tiny_images(tmp_path), "--image-size", "8"] if command == "fig1"
             else [])
    out = tmp_path / "out"
    code = run_main(toy_script.main, [command, "--quick", "--out", str(out), *extra])
    assert code == 0
    stem = toy_script.STEMS[command]
    assert (out / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / f"{stem}.json").read_text())
    assert report["quick"] and report["command"][1] == command and report["wall_time_s"] >= 0
    printed = capsys.readouterr().out
    if command == "fig1":
        assert set(report["tail"]) == {"raw", "noisy"} and "variance" in report["tail"]["raw"]
    elif command == "fig2":  # the numbers of the experiment the script says it ran
        result = fig2_experiment(seed=report["seed"], **report["settings"])
        assert report["settings"]["steps"] == 50 and report["settings"]["grid_size"] == 41
        assert report["near_mode_error"] == pytest.approx(result.near_mode_error, rel=1e-5)
        assert report["low_density_error"] == pytest.approx(result.low_density_error, rel=1e-5)
        assert report["ratio"] == pytest.approx(result.low_density_error /
                                                result.near_mode_error, rel=1e-5)
        assert report["final_loss"] == pytest.approx(result.losses[-100:].mean(), rel=1e-5)
    else:
        assert len(report["runs"]) == 1 and "annealed Langevin" in printed


def test_script_reports_bad_input_in_one_line(tmp_path, capsys):
    code = run_main(toy_script.main, ["fig1", "--quick", "--out", str(tmp_path),
                                                 "--data-dir", str(tmp_path / "missing.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and err.count("\n") == 1
    assert run_main(toy_script.main, ["fig3", "--chains", "0", "--out",
                                                 str(tmp_path)]) == 2
    assert "chains must be" in capsys.readouterr().err
