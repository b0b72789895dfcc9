"""Samplers checked against analytic scores: Gaussians and mixtures whose noise-perturbed
scores are known in closed form, so the statistics of the samples are known too."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_ncsn.config import SampleConfig, get_config
from keras_ncsn.errors import ConfigError
from keras_ncsn.images import load_mask_png
from keras_ncsn.masks import broadcast_mask, center_square_mask, half_mask, random_pixel_mask
from keras_ncsn.noise import denoise_update, langevin_update, step_sizes
from keras_ncsn.sampling import AncestralSampler, AnnealedLangevin, LangevinSampler, PlainLangevin

SIGMAS = np.exp(np.linspace(np.log(1.0), np.log(0.01), 10))  # the paper's table
MU, STD = 0.5, 0.15


def _level_sigma(sigmas: np.ndarray, level: tf.Tensor) -> tf.Tensor:
    """sigma of each sample's level, shaped [B, 1, 1, 1]."""
    return tf.reshape(tf.gather(tf.constant(sigmas, tf.float32), level), [-1, 1, 1, 1])


def gaussian_score(mu: float = MU, std: float = STD, sigmas: np.ndarray = SIGMAS):
    """Score of N(mu, std^2) per pixel perturbed by N(0, sigma^2): -(x - mu)/(std^2 + sigma^2)."""
    def score(x, level):
        return -(x - mu) / (std ** 2 + _level_sigma(sigmas, level) ** 2)
    return score


def mixture_score(weights, means, std: float, sigmas: np.ndarray = SIGMAS):
    """Score of a 1-D Gaussian mixture per pixel, perturbed by N(0, sigma^2)."""
    log_w, means = np.log(np.asarray(weights, np.float32)), np.asarray(means, np.float32)

    def score(x, level):
        var = (std ** 2 + _level_sigma(sigmas, level) ** 2)[..., None]
        diff = x[..., None] - means
        responsibility = tf.nn.softmax(log_w - diff ** 2 / (2 * var), axis=-1)
        return tf.reduce_sum(responsibility * -diff / var, axis=-1)
    return score


def sampler(score=None, sigmas=SIGMAS, **options) -> AnnealedLangevin:
    options = {"steps_per_level": 3, "jit_compile": False, "clip": False, **options}
    return AnnealedLangevin(score or gaussian_score(sigmas=sigmas), sigmas, **options)


def graph_size(function, *args) -> int:
    """Nodes of a traced function, including those of its loop body and condition."""
    graph_def = function.get_concrete_function(*args).graph.as_graph_def()
    return len(graph_def.node) + sum(len(f.node_def) for f in graph_def.library.function)


def test_annealed_samples_match_gaussian_data():
    x = sampler(steps_per_level=100, step_size=1e-4)((2000, 2, 2, 1), seed=0).numpy()
    target_std = np.sqrt(STD ** 2 + SIGMAS[-1] ** 2)  # the data perturbed at sigma_L
    assert abs(x.mean() - MU) < 0.006
    assert x.std() == pytest.approx(target_std, rel=0.02)


def test_annealed_recovers_mixture_weights_where_plain_langevin_does_not():
    score = mixture_score([0.2, 0.8], [0.2, 0.8], std=0.05)
    annealed = sampler(score, steps_per_level=100, step_size=2e-5)((2000, 2, 2, 1), seed=1)
    assert np.mean(annealed.numpy() > 0.5) == pytest.approx(0.8, abs=0.05)
    plain = PlainLangevin(score, SIGMAS[-1], level=len(SIGMAS) - 1, steps=1000,
                          step_size=1e-4, clip=False, jit_compile=False)
    x = plain((2000, 2, 2, 1), seed=1).numpy()
    assert np.mean(x > 0.5) == pytest.approx(0.5, abs=0.05)  # uniform init decides the mode
    assert x[x > 0.5].std() == pytest.approx(0.05, rel=0.1)  # yet it did converge per mode


def test_step_sizes_conventions():
    drift, noise = step_sizes([1.0, 0.1], 2e-5, "reference_code")
    np.testing.assert_allclose(drift, [2e-5 * 100, 2e-5])
    np.testing.assert_allclose(noise, np.sqrt([4e-5 * 100, 4e-5]))
    drift, noise = step_sizes([1.0, 0.1], 2e-5, "paper")
    np.testing.assert_allclose(drift, [1e-5 * 100, 1e-5])
    np.testing.assert_allclose(noise, np.sqrt([2e-5 * 100, 2e-5]))
    drift, noise = step_sizes([0.3], 0.1, "paper")  # plain Langevin: alpha = step_size
    np.testing.assert_allclose([drift[0], noise[0]], [0.05, np.sqrt(0.1)])


@pytest.mark.parametrize("eta", [0.2, 0.8, 1.5])
def test_consistent_convention_keeps_the_chain_at_the_level_noise(eta):
    # Data one point (mu): at every level the score is -(x - mu) / sigma^2, so the chain's
    # spread around mu is the noise it carries. reference_code settles at sqrt(2 / (2 - eta))
    # sigma_L; consistent at sigma_L exactly, whatever the step.
    point = gaussian_score(std=0.0)
    found = {}
    for convention in ("reference_code", "consistent"):
        x = sampler(point, steps_per_level=40, step_size=eta * SIGMAS[-1] ** 2,
                    convention=convention)((4000, 2, 2, 1), seed=0).numpy()
        found[convention] = (x - MU).std() / SIGMAS[-1]
    assert found["consistent"] == pytest.approx(1.0, rel=0.02)
    assert found["reference_code"] == pytest.approx(np.sqrt(2 / (2 - eta)), rel=0.02)
    drift, noise = step_sizes([1.0, 0.1], eta * 0.01, "consistent")
    np.testing.assert_allclose(drift, eta * 0.01 * np.array([100, 1]))
    np.testing.assert_allclose(noise, np.array([1.0, 0.1]) * np.sqrt(1 - (1 - eta) ** 2))


def test_consistent_convention_refuses_a_step_past_its_range():
    with pytest.raises(ConfigError, match="step_size <= 2 sigma_L"):
        step_sizes([1.0, 0.1], 0.03, "consistent")
    with pytest.raises(ConfigError, match="sample.step_size <= 2 noise.sigma_end"):  # before training
        get_config("quick", ["sample.convention=consistent", "sample.step_size=1e-3"])
    assert get_config("quick", ["sample.convention=consistent"]).sample.step_size == 1.2e-4


def test_paper_convention_with_double_step_is_reference_code():
    paper = sampler(step_size=2e-3, convention="paper")((8, 4, 4, 1), seed=3)
    reference = sampler(step_size=1e-3, convention="reference_code")((8, 4, 4, 1), seed=3)
    half = sampler(step_size=1e-3, convention="paper")((8, 4, 4, 1), seed=3)
    np.testing.assert_array_equal(paper.numpy(), reference.numpy())
    assert not np.allclose(half.numpy(), reference.numpy())


def test_same_seed_same_samples_and_no_retracing():
    sample = sampler(init="gaussian")
    first, again = sample((4, 4, 4, 2), seed=7), sample((4, 4, 4, 2), seed=7)
    other = sample((4, 4, 4, 2), seed=8)
    sample((6, 8, 8, 2), seed=9)  # another batch and image size
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.allclose(first.numpy(), other.numpy())
    assert sample.compiled_loop().experimental_get_tracing_count() == 1


def test_xla_compiled_sampler_is_deterministic_and_traced_once():
    sample = sampler(jit_compile=True, clip=True)
    first, other = sample((4, 4, 4, 1), seed=1), sample((4, 4, 4, 1), seed=2)
    np.testing.assert_array_equal(first.numpy(), sample((4, 4, 4, 1), seed=1).numpy())
    assert not np.allclose(first.numpy(), other.numpy())
    assert 0 <= first.numpy().min() and first.numpy().max() <= 1
    assert sample.compiled_loop().experimental_get_tracing_count() == 1


def test_graph_is_one_while_loop_whose_size_does_not_depend_on_steps_or_levels():
    args = (tf.TensorSpec([None, None, None, None], tf.float32), tf.TensorSpec([], tf.int64),
            tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32))
    loop = sampler(steps_per_level=2).compiled_loop()
    op_types = {op.type for op in loop.get_concrete_function(*args).graph.get_operations()}
    assert op_types & {"While", "StatelessWhile"}
    sizes = {graph_size(sampler(sigmas=sigmas, steps_per_level=steps, snapshot_every=2,
                                denoise=True).compiled_loop(), *args)
             for steps in (2, 50) for sigmas in (SIGMAS[:3], SIGMAS)}
    assert len(sizes) == 1


def test_given_noise_loop_replays_the_drawn_noise():
    sample = sampler(denoise=True, clip=True, steps_per_level=2)
    shape, seed = (3, 4, 4, 1), 6
    x0 = sample.init_state(shape, seed)
    noise = np.stack([sample.step_noise(shape, seed, k) for k in range(sample.num_steps)])
    drawn = sample(x0, seed=seed).numpy()
    loop = sample.given_noise_loop()
    np.testing.assert_allclose(loop(x0, noise, tf.constant(0)).numpy(), drawn, atol=1e-6)
    x, T = x0, sample.steps_per_level  # level by level, denoised and clipped at the end
    for level in range(sample.num_levels):
        x = loop(x, noise[level * T:(level + 1) * T], tf.constant(level))
    np.testing.assert_allclose(x.numpy(), drawn, atol=1e-6)
    graph_def = loop.get_concrete_function().graph.as_graph_def()
    ops = {node.op for node in graph_def.node}
    ops |= {node.op for function in graph_def.library.function for node in function.node_def}
    assert "StatelessWhile" in ops or "While" in ops
    assert not [op for op in ops if "Random" in op]  # nothing tf2onnx cannot convert
    assert loop.experimental_get_tracing_count() == 1


def test_level_by_level_calls_equal_one_full_call():
    sample = sampler(denoise=True, clip=True, init="gaussian", snapshot_every=2)
    full, full_snapshots = sample((4, 4, 4, 1), seed=5)
    x, snapshots = sample.init_state((4, 4, 4, 1), seed=5), []
    for level in range(sample.num_levels):
        x, taken = sample(x, seed=5, levels=(level, level + 1))
        snapshots.append(taken)
    np.testing.assert_array_equal(x.numpy(), full.numpy())
    np.testing.assert_array_equal(np.concatenate(snapshots), full_snapshots.numpy())
    assert sample.compiled_loop().experimental_get_tracing_count() == 1


def test_progress_bar_runs_level_by_level_with_the_same_result(capsys):
    sample = sampler(denoise=True, clip=True, snapshot_every=2)
    full, full_snapshots = sample((4, 4, 4, 1), seed=5)
    x, snapshots = sample((4, 4, 4, 1), seed=5, progress=True)
    np.testing.assert_array_equal(x.numpy(), full.numpy())
    np.testing.assert_array_equal(snapshots.numpy(), full_snapshots.numpy())
    assert "10/10" in capsys.readouterr().err
    images = np.full((2, 4, 4, 1), 0.5, np.float32)
    np.testing.assert_array_equal(
        sample.inpaint(images, half_mask(4, "top"), seed=1, progress=True)[0].numpy(),
        sample.inpaint(images, half_mask(4, "top"), seed=1)[0].numpy())


def test_denoise_adds_one_noiseless_step_at_the_smallest_sigma():
    score = gaussian_score(std=0.3)
    raw = sampler(score)((3, 4, 4, 1), seed=2)
    denoised = sampler(score, denoise=True)((3, 4, 4, 1), seed=2)
    expected = raw + SIGMAS[-1] ** 2 * score(raw, tf.fill([3], len(SIGMAS) - 1))
    np.testing.assert_allclose(denoised.numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)
    assert not np.allclose(denoised.numpy(), raw.numpy(), rtol=0, atol=1e-7)


def test_snapshots_are_states_after_every_k_steps():
    sample = sampler(steps_per_level=4, snapshot_every=4)
    final, snapshots = sample((2, 4, 4, 1), seed=4)
    assert snapshots.shape == (10, 2, 4, 4, 1)
    np.testing.assert_array_equal(snapshots[-1].numpy(), final.numpy())
    after_three_levels = sample((2, 4, 4, 1), seed=4, levels=(0, 3))[0]
    np.testing.assert_array_equal(snapshots[2].numpy(), after_three_levels.numpy())
    clipped_final, odd = sampler(steps_per_level=4, snapshot_every=3, clip=True)(
        (2, 4, 4, 1), seed=4)
    assert odd.shape == (13, 2, 4, 4, 1)  # 40 steps // 3
    np.testing.assert_array_equal(clipped_final.numpy(), final.numpy().clip(0, 1))


def _correlated_score(mu, cov, sigmas=SIGMAS):
    """Perturbed score -(cov + sigma^2 I)^-1 (x - mu) of a 2-pixel Gaussian, images [B,1,2,1]."""
    precisions = tf.constant(np.linalg.inv(cov + sigmas[:, None, None] ** 2 * np.eye(2)),
                             tf.float32)

    def score(x, level):
        centred = tf.reshape(x, [-1, 2]) - mu
        return -tf.reshape(tf.einsum("bij,bj->bi", tf.gather(precisions, level), centred),
                           tf.shape(x))
    return score


def test_inpainting_samples_the_conditional_of_a_correlated_gaussian():
    mu, std, rho = np.array([0.5, 0.4]), np.array([0.15, 0.1]), 0.9
    cov = np.array([[std[0] ** 2, rho * std[0] * std[1]], [rho * std[0] * std[1], std[1] ** 2]])
    observed_value, n = np.array([0.7, 0.3]), 2000
    images = np.zeros((2 * n, 1, 2, 1), np.float32)
    mask = np.zeros_like(images)
    images[:n, 0, 0], mask[:n, 0, 0] = observed_value[0], 1  # first half: pixel 0 observed
    images[n:, 0, 1], mask[n:, 0, 1] = observed_value[1], 1  # second half: pixel 1 observed
    sample = sampler(_correlated_score(mu, cov), steps_per_level=100, step_size=5e-5,
                     denoise=True, clip=True)
    x = sample.inpaint(images, mask, seed=0).numpy()
    np.testing.assert_array_equal(x[mask == 1], images[mask == 1])
    for known, unknown, filled in ((0, 1, x[:n, 0, 1]), (1, 0, x[n:, 0, 0])):
        ratio = rho * std[unknown] / std[known]
        mean = mu[unknown] + ratio * (observed_value[known] - mu[known])
        assert filled.mean() == pytest.approx(mean, abs=0.01)
        assert filled.std() == pytest.approx(np.sqrt(1 - rho ** 2) * std[unknown], rel=0.06)


def test_inpainting_keeps_observed_pixels_with_per_image_masks():
    images = np.random.default_rng(0).uniform(size=(400, 8, 8, 3)).astype(np.float32)
    masks = np.stack([half_mask(8, "bottom"), center_square_mask(8, 4)] * 200)
    sample = sampler(steps_per_level=20, step_size=1e-4)
    x = sample.inpaint(images, masks, seed=3).numpy()
    observed = np.broadcast_to(masks, images.shape) == 1
    np.testing.assert_array_equal(x[observed], images[observed])
    assert x[~observed].mean() == pytest.approx(MU, abs=0.01)  # independent pixels: marginal
    assert x[~observed].std() == pytest.approx(STD, rel=0.05)
    same_mask_for_all = sample.inpaint(images[:2], half_mask(8, "left")[..., 0], seed=3)
    assert same_mask_for_all.shape == (2, 8, 8, 3)
    assert sample.compiled_loop(inpainting=True).experimental_get_tracing_count() == 1


def test_inpainting_sets_the_observed_noise_before_the_first_step_of_each_level():
    """As in the authors' code, a level's first step already sees y + sigma_i z at the
    observed pixels, not the previous level's noise (nor y itself at the first level).

    One step per level, x <- x + s(x) (drift 1, no Langevin noise) with a score that moves
    the missing pixel onto the observed one: the missing pixel then holds what the step saw
    there, and the snapshot after step i holds this level's y + sigma_i z at the observed one.
    """
    def copy_observed(x, level):
        return tf.concat([tf.zeros_like(x[:, :, :1]), x[:, :, :1] - x[:, :, 1:]], axis=2)

    sigmas = [1.0, 0.5, 0.25]
    sample = LangevinSampler(copy_observed, sigmas, [0, 1, 2], np.ones(3), np.zeros(3),
                             steps_per_level=1, init="uniform", denoise=False, clip=False,
                             jit_compile=False, snapshot_every=1)
    images = np.full((1, 1, 2, 1), 0.3, np.float32)
    mask = np.array([1.0, 0.0], np.float32).reshape(1, 2, 1)
    x, snapshots = sample.inpaint(images, mask, seed=4)
    observed, seen = snapshots.numpy()[:, 0, 0, :, 0].T
    noisy = observed - 0.3  # sigma_i z at the observed pixel, one per level
    assert np.all(np.abs(noisy) > 1e-3) and len(set(np.round(noisy / sigmas, 6))) == 3
    np.testing.assert_allclose(seen, observed, atol=1e-6)  # x1 + (x0 - x1) rounds
    assert x.numpy()[0, 0, 0, 0] == np.float32(0.3)


@pytest.fixture(scope="module")
def inpainter() -> AnnealedLangevin:
    """One sampler (one traced loop) for the mask-shape cases."""
    return sampler(steps_per_level=2)


@pytest.mark.parametrize("shape", [(8, 8, 1), (8, 8, 3), (8, 8), (2, 8, 8, 1), (2, 8, 8, 3)])
def test_mask_shapes_broadcast_per_image_and_channel(inpainter, shape):
    """A random mask of each accepted shape lands on the pixels it names: image b takes the
    mask's image b only if it has a batch axis, channel c its channel c only if it has C."""
    mask = (np.random.default_rng(len(shape)).random(shape) < 0.5).astype(np.float32)
    full = broadcast_mask(mask, (2, 8, 8, 3))
    assert full.shape == (2, 8, 8, 3) and full.dtype == np.float32
    grid = mask.reshape((-1, 8, 8, mask.shape[-1] if mask.ndim > 2 else 1))
    for b in range(2):
        for c in range(3):
            np.testing.assert_array_equal(full[b, ..., c],
                                          grid[b % len(grid), ..., c % grid.shape[-1]])
    assert np.array_equal(full[0], full[1]) == (len(shape) < 4)
    images = np.random.default_rng(0).uniform(0.2, 0.8, (2, 8, 8, 3)).astype(np.float32)
    x = inpainter.inpaint(images, mask, seed=0).numpy()
    observed = full == 1
    np.testing.assert_array_equal(x[observed], images[observed])
    assert np.all(x[~observed] != images[~observed])


@pytest.mark.parametrize("shape", [(8, 7), (4, 8, 8, 1), (8, 8, 2), (2, 8, 8), (8,)])
def test_mask_of_wrong_shape_is_a_config_error(shape):
    with pytest.raises(ConfigError, match="does not fit"):
        sampler().inpaint(np.zeros((2, 8, 8, 3)), np.ones(shape), seed=0)


def test_bad_masks_and_images_are_config_errors():
    sample, images = sampler(), np.full((1, 4, 4, 1), 0.5)
    with pytest.raises(ConfigError, match="binary"):
        sample.inpaint(images, np.full((4, 4), 0.5), seed=0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        sample.inpaint(images * 4, np.ones((4, 4)), seed=0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        sample.inpaint(np.full((1, 4, 4, 1), np.nan), np.ones((4, 4)), seed=0)


@pytest.mark.parametrize("options, message", [
    ({"convention": "pytorch"}, "convention"),
    ({"sigmas": [0.1, 1.0]}, "descending"),
    ({"sigmas": [1.0, 1.0]}, "descending"),
    ({"sigmas": []}, "non-empty"),
    ({"sigmas": [1.0, -0.1]}, "> 0"),
    ({"init": "zeros"}, "init"),
    ({"step_size": 0.0}, "step_size"),
    ({"steps_per_level": 0}, "steps"),
    ({"snapshot_every": 31}, "snapshot_every"),
])
def test_bad_options_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        sampler(score=gaussian_score(), **options)


def test_bad_levels_are_config_errors():
    with pytest.raises(ConfigError, match="levels"):
        sampler()((1, 4, 4, 1), seed=0, levels=(3, 3))
    with pytest.raises(ConfigError, match="levels"):
        sampler()((1, 4, 4, 1), seed=0, levels=(0, 11))


def test_from_config_takes_sample_settings_and_overrides():
    config = SampleConfig(steps_per_level=7, step_size=1e-4, convention="paper", denoise=True,
                          grid_every=1000)  # training steps between grids: not a sampler option
    sample = AnnealedLangevin.from_config(gaussian_score(), SIGMAS, config, jit_compile=False)
    assert (sample.steps_per_level, sample.denoise, sample.jit_compile) == (7, True, False)
    assert sample.num_snapshots == 0
    assert AnnealedLangevin.from_config(gaussian_score(), SIGMAS, config,
                                        snapshot_every=7).num_snapshots == 10
    np.testing.assert_allclose(sample.drift, step_sizes(SIGMAS, 1e-4, "paper")[0], rtol=1e-6)
    with pytest.raises(ConfigError, match="unknown sampler option"):
        AnnealedLangevin.from_config(gaussian_score(), SIGMAS, config, steps=3)


def test_mask_helpers():
    bottom = half_mask(6, "bottom")
    assert bottom.shape == (6, 6, 1) and bottom.dtype == np.float32
    assert bottom[:3].min() == 1 and bottom[3:].max() == 0  # the named half is missing
    right = half_mask((4, 6), "right")
    assert right[:, 3:].max() == 0 and right[:, :3].min() == 1
    assert half_mask(5, "top")[:2].max() == 0 and half_mask(5, "top")[2:].min() == 1
    square = center_square_mask(8, 4)
    assert square[2:6, 2:6].max() == 0 and square.sum() == 64 - 16
    pixels = random_pixel_mask((10, 20), 0.25, seed=1)
    assert pixels.shape == (10, 20, 1) and pixels.sum() == 50
    np.testing.assert_array_equal(pixels, random_pixel_mask((10, 20), 0.25, seed=1))
    assert not np.array_equal(pixels, random_pixel_mask((10, 20), 0.25, seed=2))
    with pytest.raises(ConfigError, match="side"):
        half_mask(8, "middle")
    with pytest.raises(ConfigError, match="square"):
        center_square_mask(8, 9)


def test_png_mask_round_trip(tmp_path):
    mask = random_pixel_mask((6, 8), 0.5, seed=0)
    path = tmp_path / "mask.png"
    Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(path)
    np.testing.assert_array_equal(load_mask_png(str(path), (6, 8)), mask)
    with pytest.raises(ConfigError, match="expected 8x8"):
        load_mask_png(str(path), 8)
    with pytest.raises(ConfigError, match="no mask file"):
        load_mask_png(str(tmp_path / "missing.png"), 8)
    (tmp_path / "junk.png").write_text("not an image")
    with pytest.raises(ConfigError, match="cannot read"):
        load_mask_png(str(tmp_path / "junk.png"), 8)


def test_langevin_update_is_the_step_of_every_runtime_on_the_same_noise():
    """noise.langevin_update is plain arithmetic: the same on NumPy arrays and tensors, and the
    compiled loop (annealed and ancestral, denoised) is it applied step by step in NumPy."""
    rng = np.random.default_rng(0)
    x, score, z = (rng.standard_normal((2, 3, 3, 1)).astype(np.float32) for _ in range(3))
    on_numpy = langevin_update(x, score, np.float32(0.3), np.float32(0.7), z)
    on_tf = langevin_update(tf.constant(x), tf.constant(score), tf.constant(0.3),
                            tf.constant(0.7), tf.constant(z)).numpy()
    np.testing.assert_allclose(on_numpy, x + 0.3 * score + 0.7 * z, rtol=1e-6)
    np.testing.assert_allclose(on_tf, on_numpy, rtol=1e-6)
    assert denoise_update(x, score, 0.5).dtype == np.float32

    score_fn = gaussian_score()
    for sample in (sampler(denoise=True, steps_per_level=2),
                   AncestralSampler(score_fn, SIGMAS, clip=False, jit_compile=False)):
        shape, seed, T = (3, 4, 4, 1), 2, sample.steps_per_level
        x0 = sample.init_state(shape, seed)
        noise = [sample.step_noise(shape, seed, k).numpy() for k in range(sample.num_steps)]
        x = x0.numpy()
        for k, z in enumerate(noise):
            level = k // T
            x = langevin_update(x, score_fn(x, np.full(3, level)).numpy(),
                                sample.drift[level], sample.noise_std[level], z)
        if sample.denoise:
            x = denoise_update(x, score_fn(x, np.full(3, 9)).numpy(), float(SIGMAS[-1]))
        np.testing.assert_allclose(sample(x0, seed=seed).numpy(), x, atol=1e-5)
