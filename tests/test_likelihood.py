"""The variational bound and the ancestral sampler against analytic scores: Gaussian data
(whose generative chain is linear-Gaussian, so its exact marginal is known), a Gaussian
mixture and uniform 8-bit pixels, plus the KL = (r^2 - 1) x DSM identity on a network."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, SMALL, load_script
from keras_ncsn.cli import run_main
from keras_ncsn.config import SampleConfig, get_config, override
from keras_ncsn.errors import ConfigError, DataError
from keras_ncsn.likelihood import (bound, codec_bits_per_dim, decoder_nll, fit_decoder_scale,
                                   heldout_bits_per_dim, kl_weights, level_terms)
from keras_ncsn.losses import dsm_per_sample
from keras_ncsn.model import build_model
from keras_ncsn.noise import ancestral_steps
from keras_ncsn.sampling import AncestralSampler, AnnealedLangevin, LangevinSampler

MU, STD = 0.5, 0.15
MIXTURE = ([0.2, 0.8], [0.2, 0.8], 0.05)  # weights, means, component std


def geometric(levels: int, first: float = 5.0, last: float = 0.01) -> np.ndarray:
    return np.exp(np.linspace(np.log(first), np.log(last), levels))


def _sigma(sigmas: np.ndarray, level: tf.Tensor) -> tf.Tensor:
    return tf.reshape(tf.gather(tf.constant(sigmas, tf.float32), level), [-1, 1, 1, 1])


def gaussian_score(sigmas: np.ndarray):
    """Score of N(MU, STD^2) per pixel perturbed at each level."""
    return lambda x, level: -(x - MU) / (STD ** 2 + _sigma(sigmas, level) ** 2)


def mixture_score(sigmas: np.ndarray):
    """Score of the 1-D mixture MIXTURE per pixel perturbed at each level."""
    weights, means, std = MIXTURE
    log_w, means = np.log(np.float32(weights)), np.float32(means)

    def score(x, level):
        var = (std ** 2 + _sigma(sigmas, level) ** 2)[..., None]
        diff = x[..., None] - means
        responsibility = tf.nn.softmax(log_w - diff ** 2 / (2 * var), axis=-1)
        return tf.reduce_sum(responsibility * -diff / var, axis=-1)
    return score


def uniform_score(sigmas: np.ndarray):
    """Score of Uniform[0, 1] per pixel (dequantised uniform 8-bit data) perturbed at each
    level."""
    def score(y, level):
        sigma = _sigma(sigmas, level)
        low, high = y / sigma, (y - 1) / sigma
        mass = 0.5 * (tf.math.erfc(-low / math.sqrt(2)) - tf.math.erfc(-high / math.sqrt(2)))
        density = lambda t: tf.exp(-t * t / 2) / math.sqrt(2 * math.pi)  # noqa: E731
        return (density(low) - density(high)) / sigma / tf.maximum(mass, 1e-30)
    return score


def gaussian_chain(sigmas: np.ndarray) -> tuple[float, float]:
    """Exact mean and variance per pixel of the ancestral sampler's output (the decoder's
    mean) for Gaussian data: every step is linear in x, so the chain stays Gaussian."""
    mean, var = 0.0, sigmas[0] ** 2  # the prior N(0, sigma_1^2)
    for drift, noise_std, sigma in zip(*ancestral_steps(sigmas), sigmas):
        gain = 1 - drift / (STD ** 2 + sigma ** 2)
        mean = gain * mean + drift * MU / (STD ** 2 + sigma ** 2)
        var = gain ** 2 * var + noise_std ** 2
    return mean, var


def gaussian_nll(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return (0.5 * (x - mean) ** 2 / var + 0.5 * np.log(2 * np.pi * var)).reshape(len(x), -1).sum(1)


def gaussian_data(count: int = 2000, seed: int = 0) -> np.ndarray:
    return MU + STD * np.random.default_rng(seed).standard_normal((count, 2, 2, 1))


def mean_and_stderr(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(len(values)))


def keras_sigmas(model) -> np.ndarray:
    return np.asarray(model.sigmas.numpy(), np.float64)


@pytest.fixture(scope="module")
def tiny_model():
    config = get_config("quick", SMALL)
    return config, build_model(config)


# The bound ----------------------------------------------------------------------------------

def test_bound_is_above_the_exact_nll_and_tightens_with_more_levels():
    """Gaussian data, exact scores, Gaussian decoder of scale sigma_L: the model's marginal
    is N(chain mean, chain variance + sigma_L^2); E[bound - its NLL] is the KL of the
    inference chain from the model's posterior, >= 0, and shrinks as the steps get finer."""
    x, gaps = gaussian_data(), []
    for levels in (10, 100, 1000):
        sigmas = geometric(levels)
        result = bound(gaussian_score(sigmas), sigmas, x, batch=len(x))
        mean, var = gaussian_chain(sigmas)
        gap, stderr = mean_and_stderr(result.total - gaussian_nll(x, mean, var + sigmas[-1] ** 2))
        assert gap > -3 * stderr
        gaps.append((gap, stderr))
    (gap10, se10), (gap100, se100), (gap1000, se1000) = gaps
    assert gap10 - gap100 > 3 * (se10 + se100) and gap100 - gap1000 > 3 * (se100 + se1000)
    assert gap1000 < 0.05 * gap10
    # with 1000 levels the model's marginal (chain + decoder noise) is about the data's
    mean, var = gaussian_chain(geometric(1000))
    assert mean == pytest.approx(MU, abs=1e-3)
    assert var + geometric(1000)[-1] ** 2 == pytest.approx(STD ** 2, rel=0.01)


def test_bound_is_above_the_mixture_entropy_and_tightens_with_more_levels():
    """E_data[bound] >= E_data[-log p_model] >= E_data[-log p_data] (cross-entropy >= entropy)."""
    weights, means, std = MIXTURE
    rng = np.random.default_rng(1)
    x = np.where(rng.random((2000, 2, 2, 1)) < weights[1], means[1], means[0])
    x = x + std * rng.standard_normal(x.shape)
    density = sum(w * np.exp(-(x - m) ** 2 / (2 * std ** 2)) / (std * math.sqrt(2 * math.pi))
                  for w, m in zip(weights, means))
    nll = -np.log(density).reshape(len(x), -1).sum(1)
    gaps = []
    for levels in (10, 100, 1000):
        sigmas = geometric(levels)
        gap, stderr = mean_and_stderr(bound(mixture_score(sigmas), sigmas, x,
                                            batch=len(x)).total - nll)
        assert gap > -3 * stderr
        gaps.append(gap)
    assert gaps[0] > 10 * gaps[1] > 0 and gaps[1] > 3 * gaps[2]


def test_one_level_draws_estimate_the_same_bound():
    sigmas, x = geometric(10), gaussian_data(200)
    full = bound(gaussian_score(sigmas), sigmas, x, draws=4, seed=1)
    sampled = bound(gaussian_score(sigmas), sigmas, x, draws=40, one_level=True, seed=2)
    np.testing.assert_allclose(full.prior, sampled.prior)
    np.testing.assert_allclose(full.total, full.draws.mean(axis=1))
    np.testing.assert_allclose(sampled.total, sampled.draws.mean(axis=1))
    difference = sampled.total.mean() - full.total.mean()
    stderr = math.hypot(sampled.total.std(), full.total.std()) / math.sqrt(len(x))
    assert abs(difference) < 4 * stderr
    assert sampled.stderr.mean() > full.stderr.mean()  # L times cheaper draws, noisier ones


def test_same_seed_same_bound():
    sigmas, x = geometric(5), gaussian_data(50)
    first = bound(gaussian_score(sigmas), sigmas, x, seed=3, batch=16)
    np.testing.assert_array_equal(first.draws, bound(gaussian_score(sigmas), sigmas, x,
                                                     seed=3, batch=16).draws)
    assert not np.allclose(first.draws, bound(gaussian_score(sigmas), sigmas, x, seed=4,
                                              batch=16).draws)


def test_kl_terms_are_r2_minus_1_times_the_networks_dsm(tiny_model):
    """On a tiny NCSN, with the same noise: each level's term is the closed-form KL of the
    two Gaussians of equal covariance, and equals (r^2 - 1) x the per-level DSM loss."""
    config, model = tiny_model
    sigmas = keras_sigmas(model)
    L, batch = len(sigmas), 3
    rng = np.random.default_rng(0)
    x = tf.constant(rng.random((batch, *config.image_shape)), tf.float32)
    r2_minus_1 = (sigmas[0] / sigmas[1]) ** 2 - 1
    np.testing.assert_allclose(kl_weights(sigmas), r2_minus_1, rtol=1e-5)  # geometric table
    for level in range(L):
        levels = tf.fill([batch], level)
        noise = tf.constant(rng.standard_normal(x.shape), tf.float32)
        terms = level_terms(model.score, x, x, sigmas, levels, noise, 0.02, "gaussian").numpy()
        sigma = sigmas[level]
        x_i = x + sigma * noise
        score = model.score(x_i, levels)
        if level == L - 1:  # the decoder: the Gaussian around the denoised mean
            mean = x_i + sigma ** 2 * score
            expected = gaussian_nll(x.numpy().astype(np.float64), mean.numpy(), 0.02 ** 2)
            np.testing.assert_allclose(terms, expected, rtol=1e-4)
            continue
        drift = sigma ** 2 - sigmas[level + 1] ** 2
        var = sigmas[level + 1] ** 2 * drift / sigma ** 2
        posterior_mean = x_i + drift * (x - x_i) / sigma ** 2   # q(x_{i+1} | x_i, x)
        model_mean = x_i + drift * score                          # p(x_{i+1} | x_i)
        kl = tf.reduce_sum(tf.square(posterior_mean - model_mean), [1, 2, 3]) / (2 * var)
        dsm = dsm_per_sample(model.score, x, tf.constant(sigmas, tf.float32), levels, noise)
        np.testing.assert_allclose(terms, kl.numpy(), rtol=1e-3)
        np.testing.assert_allclose(terms, r2_minus_1 * dsm.numpy(), rtol=1e-4)


def test_discretized_decoder_is_a_distribution_over_the_256_bins():
    pixels = tf.constant(np.arange(256, dtype=np.float64).reshape(256, 1))
    for mean, scale in ((0.3, 0.01), (0.001, 1e-4), (-2.0, 0.5), (1.7, 10.0), (0.5, 1e-5)):
        nll = decoder_nll(pixels, tf.fill([256, 1], mean), scale, "discretized").numpy()
        assert np.exp(-nll).sum() == pytest.approx(1.0, abs=1e-9)
        assert np.all(np.isfinite(nll))


def test_bits_per_dim_of_uniform_8bit_pixels_are_at_least_8():
    """Uniform 8-bit pixels carry exactly 8 bits each: both conventions must bound it from
    above (discretized: nats / (D ln 2); gaussian: + log2 256 for the bins' volume)."""
    sigmas = geometric(100, last=0.001)
    pixels = np.random.default_rng(2).integers(0, 256, (300, 4, 4, 1))
    discrete = heldout_bits_per_dim(uniform_score(sigmas), sigmas, pixels)
    continuous = heldout_bits_per_dim(uniform_score(sigmas), sigmas, pixels, decoder="gaussian")
    assert continuous["offset_bits"] == 8 and discrete["offset_bits"] == 0
    for result in (discrete, continuous):
        assert 8 - 3 * result["stderr"] < result["bits_per_dim"] < 10
        total = (result["prior_bits_per_dim"] + sum(row["bits_per_dim"] for row in
                                                    result["per_level"]) + result["offset_bits"])
        assert total == pytest.approx(result["bits_per_dim"])
        assert result["bits_per_dim"] == pytest.approx(
            result["nats_per_image"] / (16 * math.log(2)) + result["offset_bits"])
    # The Gaussian decoder's fitted scale is the RMS error of the denoised mean: about
    # sigma_L here, where the score of uniform data is ~0 inside [0, 1].
    assert fit_decoder_scale(uniform_score(sigmas), sigmas, pixels,
                             decoder="gaussian") == pytest.approx(sigmas[-1], rel=0.05)
    # The discretized decoder's: also about sigma_L (the exact posterior's std), and better
    # than scales 3x off.
    scale = fit_decoder_scale(uniform_score(sigmas), sigmas, pixels)
    assert scale == pytest.approx(sigmas[-1], rel=0.15)
    decoder_bits = [heldout_bits_per_dim(uniform_score(sigmas), sigmas, pixels,
                                         decoder_scale=s)["per_level"][-1]["bits_per_dim"]
                    for s in (scale, 3 * scale, scale / 3)]
    assert decoder_bits[0] < min(decoder_bits[1:])


def test_bad_inputs_are_one_line_errors():
    sigmas, x = geometric(3), gaussian_data(4)
    score = gaussian_score(sigmas)
    with pytest.raises(ConfigError, match="draws"):
        bound(score, sigmas, x, draws=0)
    with pytest.raises(ConfigError, match="decoder must be"):
        bound(score, sigmas, x, decoder="laplace")
    with pytest.raises(ConfigError, match="decoder_scale"):
        bound(score, sigmas, x, decoder_scale=0.0)
    with pytest.raises(ConfigError, match="descending"):
        bound(score, sigmas[::-1], x)
    with pytest.raises(DataError, match="8-bit"):
        heldout_bits_per_dim(score, sigmas, x)
    with pytest.raises(DataError, match="uint8"):
        codec_bits_per_dim(x)


def test_codec_bits_per_dim_of_constant_images_are_small():
    images = np.zeros((20, 28, 28, 1), np.uint8)
    codes = codec_bits_per_dim(images)
    assert 0 < codes["gzip"] < 0.05 and 0 < codes["png"] < 1


# The ancestral sampler ----------------------------------------------------------------------

def ancestral(score, sigmas, **options) -> AncestralSampler:
    return AncestralSampler(score, sigmas, **{"jit_compile": False, "clip": False, **options})


def test_ancestral_steps_end_with_the_denoising_step():
    drift, noise_std = ancestral_steps([1.0, 0.5, 0.1])
    np.testing.assert_allclose(drift, [0.75, 0.24, 0.01])
    np.testing.assert_allclose(noise_std, [0.5 * math.sqrt(0.75), 0.2 * math.sqrt(0.24), 0.0])


def test_ancestral_sampler_matches_the_exact_chain_and_the_data():
    coarse = geometric(10)
    x = ancestral(gaussian_score(coarse), coarse)((2000, 2, 2, 1), seed=0).numpy()
    mean, var = gaussian_chain(coarse)  # 10 coarse steps: variance well below the data's
    assert x.mean() == pytest.approx(mean, abs=0.005)
    assert x.var() == pytest.approx(var, rel=0.05)
    assert var < 0.6 * STD ** 2
    fine = geometric(1000)
    x = ancestral(gaussian_score(fine), fine)((2000, 2, 2, 1), seed=0).numpy()
    assert x.mean() == pytest.approx(MU, abs=0.005)
    assert x.std() == pytest.approx(STD, rel=0.02)


def test_ancestral_sampler_recovers_mixture_weights():
    sigmas = geometric(200)
    x = ancestral(mixture_score(sigmas), sigmas)((2000, 2, 2, 1), seed=1).numpy()
    assert np.mean(x > 0.5) == pytest.approx(0.8, abs=0.03)
    assert x[x > 0.5].std() == pytest.approx(MIXTURE[2], rel=0.15)


def test_ancestral_sampler_is_deterministic_per_seed_and_traced_once():
    sigmas = geometric(5)
    sample = ancestral(gaussian_score(sigmas), sigmas, jit_compile=True, clip=True)
    first = sample((4, 4, 4, 1), seed=1).numpy()
    np.testing.assert_array_equal(first, sample((4, 4, 4, 1), seed=1).numpy())
    assert not np.allclose(first, sample((4, 4, 4, 1), seed=2).numpy())
    sample((6, 2, 2, 1), seed=3)
    assert sample.compiled_loop().experimental_get_tracing_count() == 1
    assert 0 <= first.min() and first.max() <= 1
    # level by level is the same run
    stepwise = sample((4, 4, 4, 1), seed=1, progress=True).numpy()
    np.testing.assert_array_equal(first, stepwise)


def test_sample_method_is_a_validated_config_key():
    sigmas = geometric(3)
    assert isinstance(LangevinSampler.from_config(
        gaussian_score(sigmas), sigmas, SampleConfig(method="ancestral")), AncestralSampler)
    assert isinstance(LangevinSampler.from_config(
        gaussian_score(sigmas), sigmas, SampleConfig()), AnnealedLangevin)
    config = override(get_config("quick"), ["sample.method=ancestral"])
    assert config.sample.method == "ancestral"
    with pytest.raises(ConfigError, match="sample.method must be one of"):
        override(config, ["sample.method=euler"])


def test_model_samples_with_the_ancestral_method(tiny_model):
    config, model = tiny_model
    options = {"method": "ancestral", "jit_compile": False}
    images = model.sample(3, seed=5, **options).numpy()
    assert images.shape == (3, *config.image_shape)
    assert 0 <= images.min() and images.max() <= 1
    np.testing.assert_array_equal(images, model.sample(3, seed=5, **options).numpy())
    assert isinstance(model.sampler(**options), AncestralSampler)
    assert model.sampler(**options).num_steps == config.noise.num_levels


# Run and export folders (the tiny export end to end is in test_export.py, marked slow) ------

SHIPPED = os.path.join(REPO, "saved_models", "mnist")


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> str:
    """An untrained tiny model saved as a run folder: config and one checkpoint."""
    from keras_ncsn.config import save_config
    from keras_ncsn.model import compile_model
    from keras_ncsn.training import RunPaths

    config = get_config("quick", SMALL + ["train.ema_momentum=0"])
    run = str(tmp_path_factory.mktemp("run"))
    save_config(config, run)
    os.makedirs(RunPaths(run).checkpoints)
    compile_model(build_model(config), config.train).save_weights(
        os.path.join(RunPaths(run).checkpoints, "ckpt-00000001.weights.h5"))
    return run


@pytest.mark.parametrize("kind", ["run", "export"])
def test_evaluate_likelihood_of_a_run_or_an_export_folder(kind, run_folder, tmp_path, capsys):
    source = run_folder if kind == "run" else SHIPPED
    out = str(tmp_path / "bits")
    assert load_script("evaluate").main([source, "--likelihood", "--images", "8", "--draws", "2",
                                         "--out", out, "--no-progress"]) == 0
    with open(os.path.join(out, "likelihood.json"), encoding="utf-8") as f:
        result = json.load(f)
    assert os.path.getsize(os.path.join(out, "likelihood.png")) > 0
    printed = capsys.readouterr().out
    assert "bits/dim" in printed and "PNG" in printed and "gzip" in printed
    assert result["kind"] == kind and result["images"] == 8 and result["draws"] == 2
    assert len(result["per_level"]) == (3 if kind == "run" else 10)
    assert 0 < result["bits_per_dim"] < (1000 if kind == "run" else 8)  # run: untrained
    assert result["stderr"] > 0
    assert result["lossless_codes"]["png"] > 0 and result["decoder_scale_origin"] == "sigma_L"


@pytest.mark.parametrize("words", [
    ["--likelihood", "--real"], ["--likelihood", "--num-samples", "9"],
    ["--likelihood", "--images", "-1"], ["--likelihood", "--draws", "0"],
    ["--likelihood", "--no-ema"], ["--likelihood", "--decoder-scale", "2"],
    ["--draws", "2"], ["--one-level"]])  # the last two: likelihood options without it
def test_evaluate_likelihood_bad_options_are_one_line_errors(words, run_folder, tmp_path,
                                                             capsys):
    source = SHIPPED if "--no-ema" in words else run_folder
    try:
        code = run_main(load_script("evaluate").main,
                        [source, *words, "--out", str(tmp_path / "bad")])
    except SystemExit as e:  # argparse's own check of --decoder-scale's choices
        code = e.code
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") or ": error: " in error  # ours or argparse's
