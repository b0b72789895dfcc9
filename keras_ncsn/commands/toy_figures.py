"""The toy experiments' figures (matplotlib, the `plots` extra): the command layer draws
them, so the library's keras_ncsn.toy returns numbers only."""

from __future__ import annotations

import numpy as np

from keras_ncsn.io import atomic_path
from keras_ncsn.toy import (BOX, PAPER_MIXTURE, Fig1Result, Fig2Result, Fig3Result,
                            GaussianMixture, regions)


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: str) -> str:
    """Writes a figure to `path` atomically and closes it."""
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=110, bbox_inches="tight")
    _pyplot().close(figure)
    return path


def plot_fig1(result: Fig1Result, path: str) -> str:
    """Both SSM loss curves on one symlog plot, and their last parts relative to their means."""
    plt = _pyplot()
    figure, (full, tail) = plt.subplots(1, 2, figsize=(11, 4))
    stats = result.tail_stats()
    labels = {"raw": "raw images (no noise)",
              "noisy": f"images + N(0, {result.noise_std ** 2:g}) noise"}
    for name, curve in result.losses.items():
        full.plot(np.arange(1, len(curve) + 1), curve, lw=0.8, label=labels[name])
        start = int(len(curve) * (1 - result.tail_fraction))
        tail.plot(np.arange(start + 1, len(curve) + 1), curve[start:] / abs(stats[name]["mean"]),
                  lw=0.8, label=f"{labels[name]}: std/|mean| = {stats[name]['relative_std']:.3f}")
    full.set_yscale("symlog", linthresh=1.0)
    full.set(xlabel="training step", ylabel="sliced score matching loss",
             title="SSM loss on images (Fig. 1)")
    tail.set(xlabel="training step", ylabel="loss / |mean of the last part|",
             title=f"last {result.tail_fraction:.0%} of training")
    for axes in (full, tail):
        axes.legend(fontsize=8)
    return _save(figure, path)


def plot_fig2(result: Fig2Result, path: str, mixture: GaussianMixture = PAPER_MIXTURE,
              arrows: int = 21) -> str:
    """Data density, exact and estimated score fields, and the score error against density."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    extent = (-BOX, BOX, -BOX, BOX)
    axes[0].imshow(np.exp(result.log_density), origin="lower", extent=extent, cmap="inferno")
    axes[0].set_title("data density")
    step = max(1, (len(result.grid) - 1) // (arrows - 1))
    sub = np.s_[::step, ::step]
    for ax, field, title in ((axes[1], result.true_score, "data scores (exact)"),
                             (axes[2], result.estimated_score, "estimated scores (SSM)")):
        ax.quiver(result.grid[sub][..., 0], result.grid[sub][..., 1], field[sub][..., 0],
                  field[sub][..., 1], width=0.004)
        ax.set(title=title, xlim=(-BOX - 0.5, BOX + 0.5), ylim=(-BOX - 0.5, BOX + 0.5))
        ax.set_aspect("equal")
    near, between = regions(result.grid, mixture)
    log10_density = result.log_density / np.log(10)
    axes[3].scatter(log10_density.ravel(), result.error.ravel(), s=1, c="0.75",
                    label="grid over [-8, 8]^2")
    for mask, colour, label, value in (
            (near, "tab:blue", "near the modes", result.near_mode_error),
            (between, "tab:red", "between the modes", result.low_density_error)):
        axes[3].scatter(log10_density[mask], result.error[mask], s=2, c=colour,
                        label=f"{label}: mean error {value:.3g}")
    axes[3].set(xlabel="log10 data density", ylabel="||estimated - exact score||",
                yscale="log", title="score error against density")
    axes[3].legend(fontsize=8, markerscale=4)
    return _save(figure, path)


def plot_fig3(result: Fig3Result, path: str, mixture: GaussianMixture = PAPER_MIXTURE) -> str:
    """i.i.d., plain Langevin and annealed Langevin samples, with the weight of each mode."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(14, 4.8))
    titles = {"iid": "i.i.d. samples", "plain": "Langevin dynamics (exact score)",
              "annealed": "annealed Langevin dynamics (exact scores)"}
    last = int(np.argmax(mixture.weights))
    for ax, (name, title) in zip(axes, titles.items()):
        points = getattr(result, name)
        ax.scatter(points[:, 0], points[:, 1], s=1)
        fraction = result.fractions[name][last]
        mode = ", ".join(f"{m:g}" for m in mixture.means[last])
        ax.set(title=f"{title}\n{fraction:.3f} in the ({mode}) mode",
               xlim=(-BOX, BOX), ylim=(-BOX, BOX))
        ax.set_aspect("equal")
    return _save(figure, path)
