"""Evaluate a run or export folder: sample, compute every metric, write metrics.json + report.md.

`evaluate` is what `scripts/evaluate.py` runs. The model's samples (or, with `real=True`,
training images standing in for them: the floor a perfect model would reach) are compared
with the real data of the model's config (or `real_data`):
  - FID, KID and Inception score in the feature space of a `FeatureExtractor`, with the
    held-out (test) split as the reference set;
  - the held-out DSM loss per noise level (run folders; `keras_ncsn.training.heldout_loss`);
  - nearest training images of the samples (L2 in pixel space, optionally in feature
    space) as a grid like the paper's Appendix C.2, and the memorisation check: the
    samples' distances to their nearest training image against the test images' distances.
The output folder is written atomically: a crash leaves the old one or the new one.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np
from tqdm.auto import tqdm

from keras_ncsn.config import (Config, DataConfig, SampleConfig, load_config,
                               override_sample)
from keras_ncsn.data import load_images, resolve_source
from keras_ncsn.errors import CheckpointError, ConfigError, DataError, ImageShapeError
from keras_ncsn.evaluation import metrics
from keras_ncsn.evaluation.features import (FeatureExtractor, classifier_extractor,
                                            inception_extractor)
from keras_ncsn.images import save_grid
from keras_ncsn.io import atomic_path, atomic_write_text, check_output_folder

# The MNIST classifier shipped as package data (scripts/train_classifier.py wrote it).
DEFAULT_CLASSIFIER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "assets", "mnist_classifier.keras")
FEATURES = ("classifier", "inception")
NEIGHBOURS = 10      # nearest training images per row of the grid (App. C.2 shows 10)
NEIGHBOUR_ROWS = 10  # samples shown in the nearest-neighbour grid
GRID_IMAGES = 100    # samples shown in samples.png


@dataclass
class Source:
    """A loaded run or export folder: its step (runs) and a sampler (count, seed) -> images."""

    kind: str
    step: int | None
    generate: Callable[[int, int], np.ndarray]
    model: Any = None  # the Keras NCSN of a run folder (held-out loss); None for exports


def is_export(path: str) -> bool:
    from keras_ncsn.onnx_runtime import SAVED_MODEL_DIR

    return os.path.isdir(os.path.join(path, SAVED_MODEL_DIR))


def check_source(path: str) -> Config:
    """The config of a run or export folder, checked without loading a model."""
    if not os.path.isdir(path):
        what = "is a file" if os.path.exists(path) else "does not exist"
        raise CheckpointError(f"{path} {what}: expected a run folder (fit.py) or an export "
                              "folder (export.py)")
    if is_export(path):
        from keras_ncsn.onnx_runtime import check_export

        check_export(path)
        return load_config(path)
    from keras_ncsn.training import check_run

    return check_run(path)


# Sample settings that evaluation ignores: --set of one is an error (key -> instead).
UNUSED_SETTINGS = {"sample.num_images": "use --num-samples", "sample.seed": "use --seed",
                   "sample.grid_every": "it spaces fit.py's sample grids"}
DEFAULT_BATCH = 100  # samples per sampler call
OUTPUT_MARKERS = ("metrics.json", "report.md")  # what `evaluate` writes into every folder


def sampler_overrides(config: Config, path: str, assignments: Sequence[str]) -> Config:
    """`config` with `--set sample.KEY=VALUE` applied: other sections are an error, and so is
    any override of an export, whose sampler settings are fixed in its graph."""
    if not assignments:
        return config
    if is_export(path):
        raise ConfigError(f"--set changes the sampler of a run folder; {path} is an export, "
                          "whose sampler settings are part of its graph")
    return replace(config, sample=override_sample(config, assignments, UNUSED_SETTINGS))


def open_source(path: str, config: Config, ema: bool = True) -> Source:
    """Loads a run folder (EMA weights when kept and `ema`; sampling with `config.sample`)
    or an export folder's SavedModel."""
    import tensorflow as tf

    if is_export(path):
        from keras_ncsn.export import load_export

        loaded = load_export(path)
        return Source("export", None, lambda n, seed: loaded.sample(
            num_images=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64)).numpy())
    from keras_ncsn.sampling import sample_options
    from keras_ncsn.training import load_run

    _, model, step = load_run(path, ema=ema)
    options = sample_options(config.sample)
    return Source("run", step, lambda n, seed: model.sample(n, seed=seed, **options).numpy(),
                  model)


def generate_samples(generate: Callable[[int, int], np.ndarray], count: int, batch: int,
                     seed: int, progress: bool = True) -> np.ndarray:
    """`count` samples in batches of `batch`, each batch from its own seed derived from `seed`."""
    seeds = np.random.SeedSequence(seed).generate_state(-(-count // batch), dtype=np.uint32)
    images = []
    with tqdm(total=count, unit="img", desc="sampling", disable=not progress) as bar:
        for batch_seed in seeds:
            size = min(batch, count - sum(len(x) for x in images))
            images.append(np.asarray(generate(size, int(batch_seed)), np.float32))
            bar.update(size)
    return np.concatenate(images)


def real_data_config(data: DataConfig, spec: str | None) -> DataConfig:
    """The model's data config, or `spec` ("embedded", a data path or a tfds name) at its size."""
    if not spec:
        return data
    if spec == "embedded":
        return replace(data, dataset="embedded", data_dir="")
    if os.path.exists(spec) or os.sep in spec or spec.lower().endswith((".npz", ".npy")):
        return replace(data, dataset="files", data_dir=spec)  # a missing path: "does not exist"
    return replace(data, dataset=spec, data_dir="")


def describe_data(data: DataConfig) -> str:
    if data.dataset == "embedded":
        return "the embedded MNIST subset (keras_ncsn/assets/mnist_subset.npz)"
    return f"{resolve_source(data)} data {data.data_dir or data.dataset}"


def heldout_dsm_loss(model: Any, config: Config, draws: int | None = None) -> dict[str, Any]:
    """Held-out DSM loss of a Keras NCSN on its config's eval split, overall and per level,
    averaged over `draws` noise draws per image (default train.eval_draws)."""
    from keras_ncsn.data import make_datasets
    from keras_ncsn.training import heldout_loss

    _, eval_data = make_datasets(config.data, config.train.batch_size)
    return heldout_loss(model, eval_data, draws or config.train.eval_draws)


def make_extractor(features: str, classifier: str | None) -> FeatureExtractor:
    if features not in FEATURES:
        raise ConfigError(f"--features must be one of {', '.join(FEATURES)}, got {features!r}")
    if features == "inception":
        return inception_extractor()
    return classifier_extractor(classifier or DEFAULT_CLASSIFIER)


def _fid_label(num_samples: int, num_real: int, extractor: FeatureExtractor,
               real: bool) -> str:
    what = "training images" if real else "samples"
    return f"{num_samples:,} {what} vs {num_real:,} test images, {extractor.name}"


def _neighbour_grid(candidates: np.ndarray, train: np.ndarray, indices: np.ndarray,
                    path: str) -> str:
    """Rows of [candidate, its nearest training images...] (App. C.2 layout)."""
    rows = min(NEIGHBOUR_ROWS, len(candidates))
    tiles = np.concatenate([np.concatenate([candidates[i:i + 1], train[indices[i]]])
                            for i in range(rows)])
    return save_grid(tiles, path, ncol=indices.shape[1] + 1)


def _histogram(sample_d: np.ndarray, test_d: np.ndarray, label: str, path: str) -> str:
    """Overlaid histograms of nearest-training-image distances (the memorisation check)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(0.0, max(sample_d.max(), test_d.max()) * 1.02, 40)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for values, name, color in ((test_d, "test images", "tab:blue"),
                                (sample_d, label, "tab:orange")):
        ax.hist(values, bins=bins, alpha=0.55, color=color,
                label=f"{name} (n={len(values)}, median {np.median(values):.2f})")
        ax.axvline(np.median(values), color=color, linestyle="--")
    ax.set_xlabel("L2 distance to the nearest training image (pixels in [0, 1])")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _check_options(num_samples: int, batch: int | None, seed: int, features: str,
                   classifier: str | None, real: bool, sampling_options: bool) -> None:
    """The checks of `evaluate`'s arguments that need no file; `sampling_options` is whether
    any of --batch, --set or --no-ema was given."""
    if num_samples < 2:
        raise ConfigError(f"--num-samples must be >= 2, got {num_samples}")
    if batch is not None and batch < 1:
        raise ConfigError(f"--batch must be >= 1, got {batch}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {seed}")
    if real and sampling_options:
        raise ConfigError("--real evaluates training images and samples nothing: leave out "
                          "--batch, --set and --no-ema")
    if classifier and features != "classifier":
        raise ConfigError(f"--classifier is the feature extractor of --features classifier, "
                          f"not of --features {features}")


def _check_ema(source_path: str, config: Config, ema: bool) -> None:
    """--no-ema needs a run folder that kept EMA weights."""
    if not ema and is_export(source_path):
        raise ConfigError(f"--no-ema needs a run folder; the export {source_path} holds only "
                          "the weights it was exported with")
    if not ema and not config.train.ema_momentum:
        raise ConfigError(f"--no-ema: the run {source_path} kept no EMA weights "
                          "(train.ema_momentum=0), so its weights are the raw ones already")


def _real_images(data: DataConfig, config: Config,
                 stand_ins: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test images of `data` in [0, 1]; DataError unless they are of the
    model's shape and there are >= 2 test images, ConfigError if fewer than `stand_ins`
    training images (--real --num-samples)."""
    try:
        train = load_images(data, "train").astype(np.float32) / 255.0
        test = load_images(data, "eval").astype(np.float32) / 255.0
    except ImageShapeError as e:
        height, width, channels = e.shape
        raise DataError(f"real images in {e.where} are {height}x{width}x{channels} but the "
                        f"model makes {'x'.join(map(str, config.image_shape))}: pick "
                        "--real-data of the model's size") from None
    if len(test) < 2:
        raise DataError(f"{describe_data(data)} has {len(test)} test image(s); FID needs >= 2")
    if train.shape[1:] != config.image_shape:
        raise DataError(f"real images are {train.shape[1:]} but the model makes "
                        f"{config.image_shape}: pick --real-data of the model's size")
    if stand_ins > len(train):
        raise ConfigError(f"--real --num-samples {stand_ins} exceeds the "
                          f"{len(train):,} training images")
    return train, test


def feature_metrics(extractor: FeatureExtractor, candidates: np.ndarray,
                    real_images: np.ndarray | None, test: np.ndarray,
                    seed: int) -> tuple[dict[str, Any], np.ndarray]:
    """FID, KID, Inception score and class metrics of `candidates` against the `test`
    images, beside the real floor of `real_images` (None: the candidates are real images);
    and the candidates' features."""
    count = len(candidates)
    cand_features, cand_probs = extractor(candidates)
    test_features, _ = extractor(test)
    real_features, real_probs = ((cand_features, cand_probs) if real_images is None
                                 else extractor(real_images))
    sizes = {"num_samples": count, "num_real": len(test), "features": extractor.name}
    results = {
        "fid": {"value": metrics.fid(cand_features, test_features), **sizes,
                "label": _fid_label(count, len(test), extractor, real_images is None)},
        "kid": {**metrics.kid(cand_features, test_features, seed=seed), **sizes},
        "inception_score": {**metrics.inception_score(cand_probs, max(1, min(10, count // 1000))),
                            "num_samples": count, "classes": cand_probs.shape[1],
                            "features": extractor.name},
        "classes": class_metrics(cand_probs),
        "real_floor": {**class_metrics(real_probs), "num_samples": len(real_probs),
                       "fid": metrics.fid(real_features, test_features)},
    }
    return results, cand_features


def _timed(function: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """`function(*args)` and the seconds it took."""
    start = time.time()
    return function(*args), time.time() - start


def _stand_in_ids(num_train: int, count: int, seed: int) -> np.ndarray:
    """Indices of the training images that stand in for samples (the real-vs-real floor at
    the same count): a stream of its own, so the test subset of `_pixel_neighbours` is the
    one of a model's evaluation."""
    return np.random.default_rng([seed, 1]).choice(num_train, min(count, num_train),
                                                   replace=False)


def _pixel_neighbours(candidates: np.ndarray, train: np.ndarray, test: np.ndarray,
                      exclude: np.ndarray | None,
                      seed: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The candidates' `NEIGHBOURS` nearest training images (indices), and the distances to
    the nearest one of the candidates and of as many test images (the memorisation check);
    `exclude` leaves each candidate that is a training image out of its own search."""
    test_ids = np.random.default_rng(seed).choice(len(test), min(len(candidates), len(test)),
                                                  replace=False)
    nn_ids, nn_dist = metrics.nearest_neighbours(candidates, train, NEIGHBOURS, exclude=exclude)
    _, test_dist = metrics.nearest_neighbours(test[test_ids], train, 1)
    return nn_ids, (nn_dist[:, 0], test_dist[:, 0])


def _write_folder(out: str, results: dict[str, Any], candidates: np.ndarray,
                  train: np.ndarray, grids: dict[str, np.ndarray],
                  distances: tuple[np.ndarray, np.ndarray]) -> None:
    """Writes the evaluation folder atomically: figures, samples.npz, metrics and report;
    `grids` maps a nearest-neighbour grid's file name to its neighbour indices."""
    label = ("training images (left out of their own search)" if results["kind"] == "real"
             else "samples")
    with atomic_path(out, is_dir=True) as tmp:
        save_grid(candidates[:GRID_IMAGES], os.path.join(tmp, "samples.png"))
        for name, indices in grids.items():
            _neighbour_grid(candidates, train, indices, os.path.join(tmp, name))
        _histogram(*distances, label, os.path.join(tmp, "distances.png"))
        with open(os.path.join(tmp, "samples.npz"), "wb") as f:
            np.savez_compressed(f, images=candidates, seed=results["seed"])
        atomic_write_text(os.path.join(tmp, "metrics.json"),
                          json.dumps(results, indent=2) + "\n")
        atomic_write_text(os.path.join(tmp, "report.md"),
                          markdown_report(results, len(grids) > 1))


def evaluate(source_path: str, out: str, *, num_samples: int = 500, batch: int | None = None,
             seed: int = 0, features: str = "classifier", classifier: str | None = None,
             real_data: str | None = None, real: bool = False, feature_neighbours: bool = False,
             sample_settings: Sequence[str] = (), ema: bool = True, command: str = "",
             overwrite: bool = False, progress: bool = True, log=print) -> dict[str, Any]:
    """Evaluates a run or export folder into `out`; returns the metrics (also metrics.json).

    `real=True` evaluates `num_samples` training images instead of samples (the real-vs-real
    floor); their nearest-neighbour distances then leave the image itself out, and the
    sampler's settings (`batch`, default `DEFAULT_BATCH`, `sample_settings`, `ema`) are an
    error there. `out` must be new or empty, or with `overwrite` an earlier evaluation
    (it is replaced whole). Every check runs before a model is loaded.
    """
    _check_options(num_samples, batch, seed, features, classifier, real,
                   batch is not None or bool(sample_settings) or not ema)
    batch = batch or DEFAULT_BATCH
    config = sampler_overrides(check_source(source_path), source_path, sample_settings)
    _check_ema(source_path, config, ema)
    check_output_folder(out, OUTPUT_MARKERS, "evaluation folder", replace=overwrite)
    data = real_data_config(config.data, real_data)
    log(f"real data: {describe_data(data)}")
    train, test = _real_images(data, config, num_samples if real else 0)
    extractor = make_extractor(features, classifier)
    real_ids = _stand_in_ids(len(train), num_samples, seed)
    if real:
        source, candidate_ids, seconds = None, real_ids, 0.0
        candidates = train[real_ids]
        log(f"real vs real: {num_samples} training images stand in for samples")
    else:
        source, candidate_ids = open_source(source_path, config, ema), None
        log(f"sampling {num_samples} images from {source.kind} {source_path} in batches of "
            f"{batch} (seed {seed})")
        candidates, seconds = _timed(generate_samples, source.generate, num_samples, batch,
                                     seed, progress)
    log(f"features: {extractor.name}")
    scores, cand_features = feature_metrics(extractor, candidates,
                                            None if real else train[real_ids], test, seed)
    results: dict[str, Any] = {
        "source": source_path, "kind": "real" if real else source.kind,
        "step": None if real else source.step, "command": command,
        "num_samples": num_samples, "seed": seed, "batch": batch,
        "sampling_seconds": round(seconds, 1),
        "sampler": None if real else asdict(config.sample), "ema": ema,
        "features": extractor.name,
        "real_data": {"description": describe_data(data), "train_images": len(train),
                      "test_images": len(test)},
        **scores,
    }
    log(quality_line(results))
    nn_ids, distances = _pixel_neighbours(candidates, train, test, candidate_ids, seed)
    results["memorisation"] = {"space": "pixel L2", **metrics.memorisation(*distances)}
    grids = {"nearest_neighbours.png": nn_ids}
    if feature_neighbours:
        grids["nearest_neighbours_features.png"] = metrics.nearest_neighbours(
            cand_features, extractor(train)[0], NEIGHBOURS, exclude=candidate_ids)[0]
    if source is not None and source.model is not None:
        results["heldout_loss"] = heldout_dsm_loss(source.model, config)
    _write_folder(out, results, candidates, train, grids, distances)
    log(f"wrote {out}/metrics.json and {out}/report.md")
    return results


def class_metrics(probabilities: np.ndarray) -> dict[str, float]:
    """Confident fraction and class entropy of the extractor's class probabilities."""
    return {"confident_fraction": metrics.confident_fraction(probabilities),
            "class_entropy": metrics.class_entropy(probabilities),
            "uniform_entropy": float(np.log(probabilities.shape[1]))}


def fid_ratio(fid: float, floor: float) -> float:
    """FID over the real-vs-real FID floor (how far above what real images reach)."""
    return fid / max(floor, 1e-12)


def quality_line(results: dict[str, Any]) -> str:
    """One line: confident fraction, class entropy and FID, each beside the real floor."""
    got, floor, fid = results["classes"], results["real_floor"], results["fid"]["value"]
    return (f"confident (max p > {metrics.CONFIDENT_THRESHOLD}) {got['confident_fraction']:.3f} "
            f"(real {floor['confident_fraction']:.3f}); class entropy "
            f"{got['class_entropy']:.3f} (real {floor['class_entropy']:.3f}, uniform "
            f"{got['uniform_entropy']:.3f}); FID {fid:.3f} (real-vs-real floor "
            f"{floor['fid']:.3f}, ratio {fid_ratio(fid, floor['fid']):.2f}) "
            f"[{results['fid']['label']}]")


def _report_intro(results: dict[str, Any]) -> list[str]:
    """report.md's title, command and what was compared with what."""
    real = results["real_data"]
    what = ("real training images (the real-vs-real floor)" if results["kind"] == "real" else
            f"{results['kind']} `{results['source']}`"
            + (f" at step {results['step']}" if results["step"] is not None else ""))
    lines = [f"# Evaluation of {what}", ""]
    if results["command"]:
        lines += [f"Command: `{results['command']}`", ""]
    sampler = results["sampler"]
    if sampler:
        from keras_ncsn.sampling import describe_sampler

        lines.append(f"- Samples: {results['num_samples']:,}, seed {results['seed']}, batches of "
                     f"{results['batch']}, {results['sampling_seconds']:.0f} s; "
                     f"{describe_sampler(SampleConfig(**sampler))}; "
                     f"{'EMA' if results['ema'] else 'raw (not EMA)'} weights.")
    else:
        lines.append(f"- {results['num_samples']:,} training images (seed {results['seed']}) "
                     "stand in for samples.")
    return lines + [
        f"- Real data: {real['description']}: {real['train_images']:,} training images "
        f"(nearest-neighbour search), {real['test_images']:,} test images (FID/KID reference).",
        f"- Feature extractor: {results['features']}.",
        ""]


def _metrics_table(results: dict[str, Any]) -> list[str]:
    """report.md's table of every metric, then the held-out loss per noise level."""
    fid, kid, score = results["fid"], results["kid"], results["inception_score"]
    classes, floor, mem = results["classes"], results["real_floor"], results["memorisation"]
    what = "training images" if results["kind"] == "real" else "samples"
    lines = [
        "| metric | value |",
        "| --- | --- |",
        f"| confident fraction (max class probability > {metrics.CONFIDENT_THRESHOLD}): "
        f"{what} / real images | {classes['confident_fraction']:.3f} / "
        f"{floor['confident_fraction']:.3f} |",
        f"| class entropy, nats (uniform {classes['uniform_entropy']:.3f}): {what} / "
        f"real images | {classes['class_entropy']:.3f} / {floor['class_entropy']:.3f} |",
        f"| FID ({fid['label']}) | {fid['value']:.3f} |",
        f"| real-vs-real FID floor ({floor['num_samples']:,} training vs test images) / ratio "
        f"| {floor['fid']:.3f} / {fid_ratio(fid['value'], floor['fid']):.2f} |",
        f"| KID x 1000 ({fid['label']}; {kid['subsets']} subsets of {kid['subset_size']}) "
        f"| {1000 * kid['mean']:.3f} +- {1000 * kid['std']:.3f} |",
        f"| Inception score ({score['classes']}-class softmax of {score['features']}; "
        f"{score['num_samples']:,} images, {score['splits']} split(s)) | {score['mean']:.3f}"
        + (f" +- {score['std']:.3f} |" if score["splits"] > 1 else " |"),
        f"| median L2 distance to the nearest training image: samples / test images | "
        f"{mem['samples_to_train']['median']:.3f} / {mem['test_to_train']['median']:.3f} |",
        f"| fraction of samples nearer than the test images' 1st percentile "
        f"({mem['test_p1']:.3f}) | {mem['fraction_samples_below_test_p1']:.3f} |",
    ]
    heldout = results.get("heldout_loss")
    if heldout:
        lines += [f"| held-out DSM loss ({heldout['draws']} noise draws per image; untrained "
                  f"~{heldout['untrained_reference']:.0f}) | {heldout['loss']:.3f} |",
                  "", "Held-out DSM loss per noise level:", "", "| level | sigma | loss |",
                  "| --- | --- | --- |"]
        lines += [f"| {row['level']} | {row['sigma']:.4f} | {row['loss']:.3f} |"
                  for row in heldout["per_level"]]
    return lines


def markdown_report(results: dict[str, Any], feature_neighbours: bool = False) -> str:
    """report.md: the metrics table (sample count and features beside each FID) and figures."""
    lines = [*_report_intro(results), *_metrics_table(results)]
    lines += ["", "## Samples", "", "![samples](samples.png)", "",
              "## Nearest training images (L2, pixel space)", "",
              "Each row: a sample (left), then its nearest training images, nearest first.", "",
              "![nearest neighbours](nearest_neighbours.png)", ""]
    if feature_neighbours:
        lines += ["## Nearest training images in feature space", "",
                  "![nearest neighbours in feature space](nearest_neighbours_features.png)", ""]
    lines += ["## Memorisation check", "",
              "Distance of each sample to its nearest training image, against the same for "
              "held-out test images: a model that copies its training data puts samples far "
              "left of the test images.", "", "![distances](distances.png)", ""]
    return "\n".join(lines)
