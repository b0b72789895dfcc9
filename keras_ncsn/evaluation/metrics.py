"""Sample-quality metrics in NumPy: FID, KID, Inception score, classifier confidence and
class balance, nearest neighbours.

All take features or class probabilities already computed by a feature extractor
(`keras_ncsn.evaluation.features`), so any extractor works. Statistics are accumulated in
float64; no SciPy: the matrix square root of FID comes from two symmetric eigendecompositions.
"""

from __future__ import annotations

import numpy as np

from keras_ncsn.errors import ConfigError


def _as_matrix(features: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2:
        raise ConfigError(f"{what} must be [N, D] with N >= 2, got shape {array.shape}")
    return array


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, N - 1) of features [N, D]."""
    array = _as_matrix(features, "features")
    return array.mean(axis=0), np.cov(array, rowvar=False)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (round-off negatives -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def fid_from_statistics(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                        sigma2: np.ndarray) -> float:
    """Frechet distance of N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017).

    ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2)), where the trace
    term is tr((S1^(1/2) sigma2 S1^(1/2))^(1/2)): that matrix is symmetric PSD, so its
    eigenvalues (from eigh) are real and >= 0 up to round-off.
    """
    if np.shape(sigma1) != np.shape(sigma2) or np.shape(mu1) != np.shape(mu2):
        raise ConfigError(f"feature dimensions differ: {np.shape(mu1)} vs {np.shape(mu2)}")
    root1 = _psd_sqrt(np.asarray(sigma1, np.float64))
    inner = root1 @ np.asarray(sigma2, np.float64) @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((inner + inner.T) / 2), 0.0, None)).sum()
    diff = np.asarray(mu1, np.float64) - np.asarray(mu2, np.float64)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt
    return float(max(value, 0.0))


def fid(features1: np.ndarray, features2: np.ndarray) -> float:
    """FID between two feature sets [N1, D] and [N2, D]."""
    return fid_from_statistics(*feature_statistics(features1), *feature_statistics(features2))


def _polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / D + 1)^3, the kernel of KID (Binkowski et al. 2018)."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased estimate of MMD^2 with the KID kernel: diagonals of k(x, x), k(y, y) left out."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _polynomial_kernel(x, x), _polynomial_kernel(y, y), _polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kid(features1: np.ndarray, features2: np.ndarray, *, subsets: int = 100,
        subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    """KID: mean and std of the unbiased MMD^2 over `subsets` random subsets of each set.

    `subset_size` is capped by the smaller set; subsets are drawn without replacement.
    """
    x, y = _as_matrix(features1, "features1"), _as_matrix(features2, "features2")
    if x.shape[1] != y.shape[1]:
        raise ConfigError(f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    size = min(subset_size, len(x), len(y))
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(x[rng.choice(len(x), size, replace=False)],
                            y[rng.choice(len(y), size, replace=False)]) for _ in range(subsets)]
    return {"mean": float(np.mean(values)), "std": float(np.std(values)),
            "subsets": subsets, "subset_size": size}


def inception_score(probabilities: np.ndarray, splits: int = 1) -> dict[str, float]:
    """exp(E_x KL(p(y|x) || p(y))) over `splits` equal parts: mean and std (Salimans et al.).

    A classifier that is certain of each image, over equally frequent classes, scores the
    number of classes; one that always hesitates the same way scores 1.
    """
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or len(p) < splits or splits < 1:
        raise ConfigError(f"probabilities must be [N, K] with N >= splits >= 1, got shape "
                          f"{p.shape} and {splits} splits")
    scores = []
    for part in np.array_split(p, splits):
        marginal = part.mean(axis=0, keepdims=True)
        kl = np.where(part > 0, part * (np.log(np.maximum(part, 1e-30))
                                        - np.log(np.maximum(marginal, 1e-30))), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "splits": splits}


CONFIDENT_THRESHOLD = 0.9


def _probabilities(probabilities: np.ndarray) -> np.ndarray:
    p = np.asarray(probabilities, np.float64)
    if p.ndim != 2 or not len(p):
        raise ConfigError(f"probabilities must be [N, K] with N >= 1, got shape {p.shape}")
    return p


def confident_fraction(probabilities: np.ndarray,
                       threshold: float = CONFIDENT_THRESHOLD) -> float:
    """Fraction of images whose top class probability exceeds `threshold`.

    A recognisable digit is classified with confidence; stroke fragments and blends of two
    digits are not, so this is the share of samples a reader would call a clear digit.
    """
    return float(np.mean(_probabilities(probabilities).max(axis=1) > threshold))


def class_entropy(probabilities: np.ndarray) -> float:
    """Entropy (nats) of the histogram of predicted classes (argmax).

    log K (2.303 for 10 classes) when every class is predicted equally often, 0 when one
    class takes all: a model that draws only some digits scores low however clear they are.
    """
    p = _probabilities(probabilities)
    counts = np.bincount(p.argmax(axis=1), minlength=p.shape[1]).astype(np.float64)
    freq = counts[counts > 0] / len(p)
    return float(-(freq * np.log(freq)).sum())


def nearest_neighbours(queries: np.ndarray, reference: np.ndarray, k: int = 1, *,
                       exclude: np.ndarray | None = None,
                       chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Indices [N, k] and L2 distances [N, k] of each query's k nearest reference rows.

    Inputs are flattened per row ([N, ...] -> [N, D]). `exclude` [N] names one reference
    index per query that may not be returned (the query itself, for leave-one-out distances
    within a set). Candidates are found with ||q||^2 - 2 q.r + ||r||^2 in float32, chunked
    over queries; the distances returned are computed directly (exact 0 for a copy).
    """
    q = np.asarray(queries, np.float32).reshape(len(queries), -1)
    r = np.asarray(reference, np.float32).reshape(len(reference), -1)
    if q.shape[1] != r.shape[1]:
        raise ConfigError(f"queries of size {q.shape[1]} and reference of size {r.shape[1]} "
                          "differ")
    if not 1 <= k <= len(r) - (exclude is not None):
        raise ConfigError(f"k={k} nearest neighbours need more than {len(r)} reference rows")
    r_norms = (r * r).sum(axis=1)
    indices, distances = [], []
    for start in range(0, len(q), chunk):
        block = q[start:start + chunk]
        squared = (block * block).sum(axis=1, keepdims=True) - 2.0 * block @ r.T + r_norms
        if exclude is not None:
            squared[np.arange(len(block)), exclude[start:start + chunk]] = np.inf
        top = np.argpartition(squared, k - 1, axis=1)[:, :k]
        # The expansion cancels badly for near-duplicates: recompute the chosen k directly.
        exact = np.sqrt(((block[:, None, :] - r[top]) ** 2).sum(axis=-1))
        order = np.argsort(exact, axis=1)
        indices.append(np.take_along_axis(top, order, axis=1))
        distances.append(np.take_along_axis(exact, order, axis=1))
    return np.concatenate(indices), np.concatenate(distances)


def distance_summary(distances: np.ndarray) -> dict[str, float]:
    """Min, 5th percentile, median and mean of a set of nearest-neighbour distances."""
    d = np.asarray(distances, np.float64)
    return {"count": int(d.size), "min": float(d.min()), "p5": float(np.percentile(d, 5)),
            "median": float(np.median(d)), "mean": float(d.mean())}


def memorisation(sample_distances: np.ndarray, test_distances: np.ndarray) -> dict[str, object]:
    """Sample-to-nearest-train distances against test-to-nearest-train distances.

    Samples copied from the training set sit far below the test images' distances; the
    fraction of samples below the test images' 1st percentile is ~0.01 without copying.
    """
    threshold = float(np.percentile(test_distances, 1))
    return {"samples_to_train": distance_summary(sample_distances),
            "test_to_train": distance_summary(test_distances),
            "test_p1": threshold,
            "fraction_samples_below_test_p1": float(np.mean(
                np.asarray(sample_distances) < threshold))}
