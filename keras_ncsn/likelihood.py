"""A variational bound on -log p(x) for NCSN models (bits/dim), over any score function.

The model. Noise levels sigma_1 > ... > sigma_L (indices 0..L-1 in code). The generative
chain is the VE ancestral sampler (`keras_ncsn.sampling.AncestralSampler`):
    prior      p(x_1) = N(0, sigma_1^2 I)                         (prior mean m = 0)
    step i     p(x_{i+1} | x_i) = N(x_i + d_i s(x_i, i), sigma_{i+1}^2 d_i / sigma_i^2 I),
               d_i = sigma_i^2 - sigma_{i+1}^2
    decoder    p(x | x_L) around the denoised mean mu = x_L + sigma_L^2 s(x_L, L) with a
               scalar scale (default sigma_L, or one fitted: `fit_decoder_scale`):
               "discretized": a Gaussian integrated over the pixel's 8-bit bin (below),
               "gaussian": the Gaussian density N(x; mu, scale^2 I) of continuous data.
The inference chain q(x_i | x) = N(x, sigma_i^2 I), made Markov by adding noise of variance
d_i from level i+1 to level i, gives (Jensen)
    -log p(x) <= KL(q(x_1|x) || p(x_1)) + sum_{i<L} E_q KL(q(x_{i+1}|x_i,x) || p(x_{i+1}|x_i))
                 + E_q[-log p(x | x_L)].
q(x_{i+1} | x_i, x) = N(x_i + d_i (x - x_i)/sigma_i^2, sigma_{i+1}^2 d_i / sigma_i^2 I) has the
covariance of step i, so with x_i = x + sigma_i z its KL is the squared distance of the means:
    KL_i = (sigma_i^2 / sigma_{i+1}^2 - 1) * 1/2 ||sigma_i s(x_i, i) + z||^2,
(sigma_i^2/sigma_{i+1}^2 - 1) times the DSM loss of level i (`losses.dsm_per_sample`, lambda =
sigma_i^2): r^2 - 1 for a geometric table of ratio r. The prior term is ||x||^2 / (2 sigma_1^2).

Units, 8-bit images. Pixel value k in 0..255 is the bin [k/256, (k+1)/256) of [0, 1]; the
chain starts from the dequantised x = (k + u)/256, u ~ U(0, 1)^D, as in training.
  - "discretized" decoder: P(k | x_L) = prod_d [Phi((b_d - mu_d)/scale) - Phi((a_d - mu_d)/scale)]
    over the bin [a, b) of k_d, the outer bins extended to -inf and +inf, is a probability over
    the 256^D images, and E_u of the bound bounds -log P(k) (averaging the chain over u only
    loosens it, by the convexity of KL). bits/dim = nats / (D ln 2): directly comparable with
    the bits per pixel of a lossless code of the 8-bit data (PNG, gzip).
  - "gaussian" decoder: the bound is on the density of x in [0, 1]^D; the bins have volume
    256^-D, so -log2 P(k) <= E_u[-log2 p(x)] + D log2 256 and
    bits/dim = nats / (D ln 2) + 8 (`offset_bits`), the usual "bits/dim on the 0..255 scale".
Continuous data (the analytic tests) use `bound` with the "gaussian" decoder directly, in nats.

Estimation. Every term but the prior is an expectation over z (and u): `bound` averages `draws`
draws per image, each evaluating all L stochastic terms (L-1 KLs and the decoder) or, with
`one_level`, one term drawn uniformly and multiplied by L (L times cheaper, unbiased, noisier).
The noise comes from NumPy generators keyed by (seed, first image of the batch): the same seed
and batch give the same estimate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_ncsn.errors import ConfigError, DataError
from keras_ncsn.losses import dsm_from_score, perturbed_score
from keras_ncsn.noise import check_sigmas, denoise_update

ScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
DECODERS = ("discretized", "gaussian")
BINS = 256  # 8-bit pixels: bin k of [0, 1] is [k/256, (k+1)/256)
OFFSET_BITS = {"discretized": 0.0, "gaussian": math.log2(BINS)}


def kl_weights(sigmas: np.ndarray) -> np.ndarray:
    """sigma_i^2 / sigma_{i+1}^2 - 1 for the L-1 transitions: KL_i = weight_i * DSM_i."""
    table = check_sigmas(sigmas)
    return table[:-1] ** 2 / table[1:] ** 2 - 1.0


def prior_kl(x: np.ndarray, sigma_1: float) -> np.ndarray:
    """KL(N(x, sigma_1^2 I) || N(0, sigma_1^2 I)) = ||x||^2 / (2 sigma_1^2) per sample."""
    flat = np.asarray(x, np.float64).reshape(len(x), -1)
    return 0.5 * np.sum(flat ** 2, axis=1) / sigma_1 ** 2


def decoder_nll(target: tf.Tensor, mean: tf.Tensor, scale: float, decoder: str) -> tf.Tensor:
    """-log p(target | x_L) per sample (float64) for the decoder's `mean` and scalar `scale`.

    "gaussian": the density of continuous data `target`; "discretized": the probability of
    the 8-bit pixel values `target` (0..255), bin k being [k/256, (k+1)/256) with the outer
    bins reaching to -inf and +inf.
    """
    target, mean = tf.cast(target, tf.float64), tf.cast(mean, tf.float64)
    axes = list(range(1, len(target.shape)))
    if decoder == "gaussian":
        return tf.reduce_sum(0.5 * tf.square((target - mean) / scale)
                             + math.log(scale) + 0.5 * math.log(2 * math.pi), axis=axes)
    low = tf.where(target > 0, (target / BINS - mean) / scale, -np.inf)
    high = tf.where(target < BINS - 1, ((target + 1) / BINS - mean) / scale, np.inf)
    # Phi(high) - Phi(low) from the tail the bin lies in, so that the difference keeps its
    # digits; both bounds are never infinite together (256 bins).
    upper, root2 = (low + high) > 0, math.sqrt(2.0)
    mass = tf.where(upper, tf.math.erfc(low / root2) - tf.math.erfc(high / root2),
                    tf.math.erfc(-high / root2) - tf.math.erfc(-low / root2)) / 2
    return -tf.reduce_sum(tf.math.log(tf.maximum(mass, np.finfo(np.float64).tiny)), axis=axes)


def level_terms(score_fn: ScoreFn, x: tf.Tensor, target: tf.Tensor, sigmas: np.ndarray,
                level: tf.Tensor, noise: tf.Tensor, decoder_scale: float,
                decoder: str) -> tf.Tensor:
    """The stochastic term of each sample's level (float64 [B]), with x_i = x + sigma_i z:
    level i < L-1 the KL of transition i -> i+1, (sigma_i^2/sigma_{i+1}^2 - 1) DSM_i; level
    L-1 the decoder's -log p(target | x_L), `target` being x itself ("gaussian") or its 8-bit
    pixel values ("discretized"). Deterministic given `noise` (z), as in `keras_ncsn.losses`.
    """
    last = len(sigmas) - 1
    weights = tf.constant(np.append(kl_weights(sigmas), 0.0))
    sigma, perturbed, score = perturbed_score(score_fn, x, tf.constant(sigmas, tf.float32),
                                              level, noise)
    kl = tf.gather(weights, level) * tf.cast(dsm_from_score(score, sigma, noise), tf.float64)
    nll = decoder_nll(target, denoise_update(perturbed, score, sigma), decoder_scale, decoder)
    return tf.where(tf.equal(level, last), nll, kl)


@dataclass(frozen=True)
class Bound:
    """Per-image terms of the bound in nats: `prior` [N]; `levels` [N, L], column i < L-1
    the expected KL of transition i -> i+1 and column L-1 the decoder's expected -log p(x|x_L);
    `draws` [N, K], the bound of each draw (unbiased), whose mean is `total`."""

    prior: np.ndarray
    levels: np.ndarray
    draws: np.ndarray

    @property
    def total(self) -> np.ndarray:
        """The bound per image, prior + sum of `levels` (= mean of `draws`)."""
        return self.prior + self.levels.sum(axis=1)

    @property
    def stderr(self) -> np.ndarray:
        """Monte Carlo standard error of `total` per image (NaN with one draw)."""
        count = self.draws.shape[1]
        if count < 2:
            return np.full(len(self.draws), np.nan)
        return self.draws.std(axis=1, ddof=1) / math.sqrt(count)


def _check_count(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value}")


def _check_decoder(decoder: str, scale: float) -> None:
    if decoder not in DECODERS:
        raise ConfigError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"decoder_scale must be finite and > 0, got {scale}")


def _data(x: np.ndarray, dequantize: bool) -> np.ndarray:
    """x as float64 [N, ...]: continuous data, or (dequantize) 8-bit pixel values 0..255."""
    array = np.asarray(x)
    if array.ndim < 2 or len(array) == 0:
        raise DataError(f"data must be a batch [N, ...] with N >= 1, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise DataError("data must be finite")
    if dequantize and (array.min() < 0 or array.max() > BINS - 1
                       or np.any(array != np.round(array))):
        raise DataError("8-bit images must hold integer pixel values 0..255")
    return array


def bound(score_fn: ScoreFn, sigmas: np.ndarray, x: np.ndarray, *, seed: int = 0,
          draws: int = 1, one_level: bool = False, decoder: str = "gaussian",
          decoder_scale: float | None = None, dequantize: bool = False,
          batch: int = 256, progress: bool = False) -> Bound:
    """The bound on -log p(x) of each sample of `x` [N, ...] under `score_fn(x, level)`.

    `x` is continuous data, or with `dequantize` 8-bit pixel values 0..255, dequantised to
    (k + u)/256 afresh in every draw (the "discretized" decoder then scores k; without
    `dequantize` it scores floor(256 x)). `draws` noise draws per image, each of all L
    levels or (`one_level`) of one uniformly drawn level times L. `decoder_scale` defaults
    to sigma_L. `batch` images go through `score_fn` at a time; `progress` shows a bar.
    """
    table = check_sigmas(sigmas)
    scale = float(table[-1] if decoder_scale is None else decoder_scale)
    _check_count("draws", draws)
    _check_count("batch", batch)
    _check_decoder(decoder, scale)
    data = _data(x, dequantize)
    num, L = len(data), len(table)
    terms = tf.function(lambda xs, target, level, noise: level_terms(
        score_fn, xs, target, table, level, noise, scale, decoder), autograph=False,
        reduce_retracing=True)
    prior, levels, totals = np.zeros(num), np.zeros((num, L)), np.zeros((num, int(draws)))
    for start in tqdm(range(0, num, batch), desc="bound", unit="batch", disable=not progress,
                      dynamic_ncols=True):
        chunk = data[start:start + batch]
        rows = np.arange(start, start + len(chunk))
        pixels = chunk if dequantize else np.clip(np.floor(chunk * BINS), 0, BINS - 1)
        rng = np.random.default_rng([seed, start])
        for draw in range(int(draws)):
            xs = (chunk + rng.random(chunk.shape)) / BINS if dequantize else chunk
            target = xs if decoder == "gaussian" else pixels
            draw_prior = prior_kl(xs, table[0])
            prior[rows] += draw_prior
            totals[rows, draw] = draw_prior
            picks = ([rng.integers(0, L, len(chunk))] if one_level
                     else [np.full(len(chunk), level) for level in range(L)])
            for level in picks:  # each sample's level [B]
                noise = rng.standard_normal(chunk.shape, dtype=np.float32)
                value = terms(tf.constant(xs, tf.float32), tf.constant(target),
                              tf.constant(level, tf.int32), tf.constant(noise)).numpy()
                value = L * value if one_level else value
                np.add.at(levels, (rows, level), value)
                totals[rows, draw] += value
    return Bound(prior / draws, levels / draws, totals)


def fit_decoder_scale(score_fn: ScoreFn, sigmas: np.ndarray, images: np.ndarray, *,
                      decoder: str = "discretized", seed: int = 0, batch: int = 256) -> float:
    """The decoder's maximum-likelihood scale on the dequantised 8-bit `images` (fit it on
    training images, so that the held-out bound stays a bound), with x_L drawn as in `bound`.

    "gaussian": the RMS error of the denoised mean x_L + sigma_L^2 s(x_L, L) (closed form);
    "discretized": the best of a log grid from RMS/100 to 10 RMS in 12% steps (the errors are
    heavy-tailed, so this is well below the RMS: most pixels are denoised almost exactly).
    """
    table = check_sigmas(sigmas)
    _check_count("batch", batch)
    _check_decoder(decoder, 1.0)
    data = _data(images, dequantize=True)
    sigmas32, last = tf.constant(table, tf.float32), len(table) - 1

    @tf.function(autograph=False, reduce_retracing=True)
    def denoised(x, noise):
        level = tf.fill([tf.shape(x)[0]], last)
        sigma, perturbed, score = perturbed_score(score_fn, x, sigmas32, level, noise)
        return denoise_update(perturbed, score, sigma)

    means, targets = [], []
    for start in range(0, len(data), batch):
        rng = np.random.default_rng([seed, start])
        chunk = data[start:start + batch]
        x = (chunk + rng.random(chunk.shape)) / BINS
        noise = rng.standard_normal(chunk.shape, dtype=np.float32)
        means.append(denoised(tf.constant(x, tf.float32), tf.constant(noise)).numpy())
        targets.append(x if decoder == "gaussian" else chunk)
    mean, target = np.concatenate(means), np.concatenate(targets)
    rms = float(np.sqrt(np.mean(np.square(mean - target if decoder == "gaussian"
                                          else mean - (target + 0.5) / BINS))))
    if decoder == "gaussian":
        return rms
    grid = rms * np.geomspace(0.01, 10.0, 61)
    mean, target = tf.constant(mean), tf.constant(target)
    nll = [float(tf.reduce_sum(decoder_nll(target, mean, float(scale), decoder)))
           for scale in grid]
    return float(grid[int(np.argmin(nll))])


def heldout_bits_per_dim(score_fn: ScoreFn, sigmas: np.ndarray, images: np.ndarray, *,
                         seed: int = 0, draws: int = 1, one_level: bool = False,
                         decoder: str = "discretized", decoder_scale: float | None = None,
                         batch: int = 256, progress: bool = False) -> dict[str, Any]:
    """Bits/dim of the 8-bit `images` [N, H, W, C] (0..255, e.g. the test split) under the
    bound, with its standard error over images, and the mean of each term.

    Options as in `bound`. The standard error is that of the mean over images of each
    image's estimate, so it holds the Monte Carlo noise too. Per-level rows: level i < L-1
    the KL of the step from sigma_i to sigma_{i+1}, level L-1 the decoder.
    """
    table = check_sigmas(sigmas)
    result = bound(score_fn, table, images, seed=seed, draws=draws, one_level=one_level,
                   decoder=decoder, decoder_scale=decoder_scale, dequantize=True, batch=batch,
                   progress=progress)
    dims = int(np.prod(np.shape(images)[1:]))
    to_bits = 1.0 / (dims * math.log(2))

    def summary(nats: np.ndarray) -> tuple[float, float]:
        stderr = nats.std(ddof=1) / math.sqrt(len(nats)) if len(nats) > 1 else math.nan
        return float(nats.mean() * to_bits), float(stderr * to_bits)

    offset = OFFSET_BITS[decoder]
    bits, stderr = summary(result.total)
    prior_bits, _ = summary(result.prior)
    rows = []
    for level, sigma in enumerate(table):
        level_bits, level_stderr = summary(result.levels[:, level])
        rows.append({"level": level, "sigma": float(sigma),
                     "term": "decoder" if level == len(table) - 1 else "kl",
                     "bits_per_dim": level_bits, "stderr": level_stderr})
    return {"bits_per_dim": bits + offset, "stderr": stderr,
            "nats_per_image": float(result.total.mean()), "images": len(result.total),
            "dims": dims, "draws": int(draws), "one_level": bool(one_level),
            "decoder": decoder, "decoder_scale": float(table[-1] if decoder_scale is None
                                                       else decoder_scale),
            "offset_bits": offset, "prior_mean": 0.0, "prior_bits_per_dim": prior_bits,
            "per_level": rows}


def format_bits(result: dict[str, Any]) -> str:
    """A text table of `heldout_bits_per_dim`'s result: the total, then every term."""
    lines = [f"bits/dim {result['bits_per_dim']:.4f} +- {result['stderr']:.4f} (standard "
             f"error; {result['images']:,} images x {result['draws']} draw(s)"
             f"{', one level per draw' if result['one_level'] else ''}; {result['decoder']} "
             f"decoder, scale {result['decoder_scale']:.4g}"
             + (f", + {result['offset_bits']:g} bits/dim offset" if result["offset_bits"]
                else "") + ")",
             f"  prior KL (N(0, sigma_1^2)): {result['prior_bits_per_dim']:.4f} bits/dim",
             "  level    sigma  term     bits/dim  stderr"]
    lines += [f"  {row['level']:>5}  {row['sigma']:7.4f}  {row['term']:<7}  "
              f"{row['bits_per_dim']:8.4f}  {row['stderr']:.4f}" for row in result["per_level"]]
    return "\n".join(lines)


def plot_bits(result: dict[str, Any], path: str) -> str:
    """Bar chart of the per-level terms of `heldout_bits_per_dim` (bits/dim) to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["per_level"]
    labels = ["prior"] + [f"{row['sigma']:.3g}" for row in rows]
    values = [result["prior_bits_per_dim"]] + [row["bits_per_dim"] for row in rows]
    errors = [0.0] + [row["stderr"] for row in rows]
    colors = ["tab:gray"] + ["tab:orange" if row["term"] == "decoder" else "tab:blue"
                             for row in rows]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(labels)), 3.8))
    ax.bar(range(len(labels)), values, yerr=errors, color=colors, capsize=2)
    ax.set_xticks(range(len(labels)), labels, rotation=60, fontsize=7)
    ax.set_xlabel("term: prior, KL of the step from sigma_i (blue), decoder at sigma_L (orange)")
    ax.set_ylabel("bits/dim")
    ax.set_title(f"bound {result['bits_per_dim']:.3f} +- {result['stderr']:.3f} bits/dim "
                 f"({result['images']:,} images)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def codec_bits_per_dim(images: np.ndarray) -> dict[str, float]:
    """Bits per dimension of lossless codes of the 8-bit `images` [N, H, W, C]: "png" (each
    image its own PNG, PIL at compress_level 9, headers included) and "gzip" (the raw bytes
    of all images as one gzip -9 stream). A sanity reference for `heldout_bits_per_dim`."""
    import gzip
    import io

    from PIL import Image

    array = np.asarray(images)
    if array.ndim != 4 or array.dtype != np.uint8 or array.shape[-1] not in (1, 3):
        raise DataError(f"images must be uint8 [N, H, W, 1 or 3], got {array.dtype} "
                        f"{array.shape}")
    png = 0
    for image in array:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
            buffer, format="PNG", compress_level=9)
        png += buffer.tell()
    bits = 8.0 / array.size
    return {"png": png * bits,
            "gzip": len(gzip.compress(array.tobytes(), compresslevel=9, mtime=0)) * bits}
