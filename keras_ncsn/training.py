"""Run folders: train a config into one (resuming where it stopped) and load models back.

Layout of a run folder:
    config.json                 the exact config (reloadable with --config RUN or --resume RUN)
    checkpoints/ckpt-STEP.weights.h5   weights + optimizer state, last `keep_checkpoints`
    logs/train.csv              step, loss, steps/s per logging chunk
    logs/tensorboard/           TensorBoard scalars
    heldout_loss.json           held-out DSM loss, overall and per noise level (and the
                                objective's own held-out loss when it is not DSM)
    samples/grid-STEP.png       sample grids: every sample.grid_every steps and at the end
"""

from __future__ import annotations

import json
import math
import os
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any, Callable

import keras
import numpy as np
import tensorflow as tf

from keras_ncsn.callbacks import (AtomicCheckpoint, Progress, RaiseOnNaN, SampleGrid, StepLog,
                                  StopAtStep, TimeBudget, global_step, list_checkpoints,
                                  restore_latest)
from keras_ncsn.config import (CONFIG_FILE, Config, SampleConfig, TrainConfig, load_config,
                               save_config)
from keras_ncsn.data import make_datasets
from keras_ncsn.distribute import (check_global_batch, check_same_step, describe, is_chief,
                                   lowest_over_workers, shard_by_data)
from keras_ncsn.errors import CheckpointError, ConfigError
from keras_ncsn.io import atomic_write_text, check_output_folder
from keras_ncsn.model import (NCSN, build_model, compile_model, count_trainable_parameters,
                              schedule_of, warmup_steps)
from keras_ncsn.sampling import sample_options

HELDOUT_FILE = "heldout_loss.json"

# Settings that may change between a run's sessions without invalidating its checkpoints.
RESUMABLE_CHANGES = {"train.steps", "train.time_budget", "train.warmup_fraction",
                     "train.checkpoint_every", "train.keep_checkpoints",
                     "train.log_every", "train.eval_draws", "data.data_dir",
                     "data.download"}


@dataclass(frozen=True)
class RunPaths:
    root: str

    @property
    def checkpoints(self) -> str:
        return os.path.join(self.root, "checkpoints")

    @property
    def logs(self) -> str:
        return os.path.join(self.root, "logs")

    @property
    def heldout(self) -> str:
        return os.path.join(self.root, HELDOUT_FILE)

    @property
    def samples(self) -> str:
        return os.path.join(self.root, "samples")


def flatten_config(config: Config) -> dict[str, Any]:
    """{"section.key": value} of every setting (the keys of --set)."""
    return {f"{section}.{key}": value for section, values in config.to_dict().items()
            if isinstance(values, dict) for key, value in values.items()}


def check_compatible(saved: Config, requested: Config, folder: str) -> None:
    """Refuses to continue a run folder with a config that would not fit its checkpoints."""
    old, new = flatten_config(saved), flatten_config(requested)
    changed = sorted(key for key in old if old[key] != new[key]
                     and key not in RESUMABLE_CHANGES and not key.startswith("sample."))
    if changed:
        details = ", ".join(f"{key}: {old[key]!r} -> {new[key]!r}" for key in changed)
        raise ConfigError(f"run folder {folder} was started with a different config ({details}); "
                          f"continue it with --resume {folder}, or choose a new --out")


def heldout_loss(model: NCSN, eval_data, draws: int) -> dict[str, Any]:
    """Held-out DSM loss over `draws` noise draws per image, overall and per noise level,
    whatever the training objective (so runs compare); for an SSM objective also its own
    value on the same draws, `objective_loss`."""
    results = model.evaluate(eval_data.repeat(draws), return_dict=True, verbose=0)
    sigmas = keras.ops.convert_to_numpy(model.sigmas)
    heldout = {
        "loss": float(results["loss"]),
        "per_level": [{"level": i, "sigma": float(sigma),
                       "loss": float(results[f"loss_level_{i}"])}
                      for i, sigma in enumerate(sigmas)],
        "draws": draws,
        "untrained_reference": float(np.prod(model.image_shape)) / 2.0,
        "objective": model.objective,
    }
    if model.objective != "dsm":
        heldout["objective_loss"] = float(results[f"{model.objective}_loss"])
    return heldout


_COMPILED_SCORES: "weakref.WeakKeyDictionary[NCSN, tuple[Callable, float]]" = \
    weakref.WeakKeyDictionary()


def score_timing(model: NCSN, batch_size: int) -> tuple[float, float]:
    """(first call, per call): the wall time of a first compiled score evaluation of
    `batch_size` images, tracing included, and of each later one (the faster of two), as
    the sampler's loop and the held-out loss run them. The unit of the end-of-run
    estimates: the sampler and the held-out loss each trace once, then call the network
    once per step or batch. The tracing is measured on the model's first call and kept
    with its traced function, so later estimates include it too. (Eager calls, timed
    before 2026-12-06, cost about three times as much on a 2-core CPU.)"""
    cached = _COMPILED_SCORES.get(model)
    if cached is None:
        # Through a weak reference: a function holding the model would keep it, its key,
        # alive for ever (every model a process builds, its data and traced steps).
        model_ref = weakref.ref(model)
        score = tf.function(lambda x, level: model_ref().score(x, level), input_signature=[
            tf.TensorSpec([None, *model.image_shape], tf.float32),
            tf.TensorSpec([None], tf.int32)])
    else:
        score, tracing = cached
    x = tf.zeros([batch_size, *model.image_shape])
    levels = tf.zeros([batch_size], tf.int32)
    times = []
    for _ in range(2 if cached else 3):
        began = time.perf_counter()
        score(x, levels).numpy()
        times.append(time.perf_counter() - began)
    per_call = min(times[-2:])
    if cached is None:  # what the first call cost beyond an ordinary one
        tracing = max(times[0] - per_call, 0.0)
        _COMPILED_SCORES[model] = (score, tracing)
    return tracing + per_call, per_call


def about(seconds: float) -> str:
    """A rough duration for announcements: "about 40 s", "about 12 min", "about 1.5 h"."""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


@dataclass(frozen=True)
class TrainResult:
    model: NCSN
    paths: RunPaths
    start_step: int
    final_step: int
    heldout: dict[str, Any] | None  # None when final_heldout=False
    grid: str  # "" when final_grid=False (or not the chief)


def train(config: Config, out_dir: str, *, progress: bool = True, log=print,
          strategy: tf.distribute.Strategy | None = None, final_heldout: bool = True,
          final_grid: bool = True, started: float | None = None) -> TrainResult:
    """Trains `config` in `out_dir`, resuming from its newest checkpoint if there is one.

    `out_dir` must be new, empty or a run folder (config.json): training writes nothing
    into a folder of other files. The data source read is logged ("data: ...").

    With a `strategy` (`distribute.make_strategy`) the model is built under its scope and
    train.batch_size is the global batch, split over its replicas; only the chief writes
    files, and in a multi-worker run `out_dir` must be a folder all workers share.

    Then the held-out loss (heldout_loss.json) and a final sample grid, each announced with
    its estimated time; `final_heldout=False` / `final_grid=False` skip them.

    train.time_budget counts from `started` (a `time.monotonic()` value, by default now):
    when it lowers train.steps, config.json is rewritten with the steps trained, so that
    `--resume` continues the shortened schedule.
    """
    started = time.monotonic() if started is None else started
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    paths = _open_run(config, out_dir)
    train_cfg = config.train
    check_global_batch(train_cfg.batch_size, strategy)
    # Data first: a bad data path fails in a second, not after building the model. The
    # stream is seeded by the step training resumes from, so a resumed run sees new batches.
    saved = list_checkpoints(paths.checkpoints)
    train_data, eval_data = make_datasets(config.data, train_cfg.batch_size,
                                          seed=train_cfg.seed + (saved[-1][0] if saved else 0),
                                          log=log)
    model = _build(config, strategy, log)
    log(f"output folder: {os.path.abspath(out_dir)}")
    if chief:
        os.makedirs(paths.logs, exist_ok=True)
        save_config(config, out_dir)
    start = restore_latest(model, paths.checkpoints)
    check_same_step(strategy, start)
    if start:
        log(f"resuming from step {start} ({paths.checkpoints})")
    grid = SampleGrid(paths.samples, config.sample, config.sample.grid_every)
    grid.set_model(model)
    if start < train_cfg.steps:
        budget = None
        if train_cfg.time_budget:
            budget = _time_budget(model, config, strategy, start, started, final_heldout,
                                  final_grid, eval_data, log)
        final = _fit(model, train_data, train_cfg, paths, grid, start, chief, progress, budget)
        if final < train_cfg.steps:
            config = replace(config, train=_shortened(train_cfg, final))
            if chief:
                save_config(config, out_dir)
    else:
        log(f"run already trained to step {start} (train.steps={train_cfg.steps}); "
            "raise --steps to train longer")
        use_ema_weights(model)
    heldout, grid_path = _end_of_run(model, config, eval_data, grid, paths, chief, progress,
                                     final_heldout, final_grid, log)
    return TrainResult(model, paths, start, global_step(model), heldout, grid_path)


def _end_of_run(model: NCSN, config: Config, eval_data: tf.data.Dataset, grid: SampleGrid,
                paths: RunPaths, chief: bool, progress: bool, final_heldout: bool,
                final_grid: bool, log: Callable[[str], None]) -> tuple[dict | None, str]:
    """The held-out loss (all workers) and the final grid (the chief), unless skipped."""
    heldout = None
    if final_heldout:
        heldout = _final_heldout(model, eval_data, config.train, paths, chief, log)
    else:
        log("held-out loss skipped (final_heldout=False)")
    if not chief:
        return heldout, ""
    if not final_grid:
        log("final sample grid skipped (final_grid=False)")
        return heldout, ""
    return heldout, _final_grid(model, grid, config.sample, progress, log)


def _open_run(config: Config, out_dir: str) -> RunPaths:
    """The run folder's paths, once `out_dir` is known to be new, empty or a run of a
    compatible config."""
    check_output_folder(out_dir, (CONFIG_FILE,), "run folder", replace=True)
    config_path = os.path.join(out_dir, CONFIG_FILE)
    if os.path.exists(config_path):
        check_compatible(load_config(config_path), config, out_dir)
    return RunPaths(out_dir)


def _build(config: Config, strategy: tf.distribute.Strategy,
           log: Callable[[str], None]) -> NCSN:
    """The compiled model, built under the strategy's scope, and log lines describing it."""
    with strategy.scope():
        model = compile_model(build_model(config), config.train)
    log(f"strategy: {describe(strategy)}, global batch {config.train.batch_size}")
    log(f"model: CondRefineNetDilated ngf={config.model.ngf}, "
        f"{count_trainable_parameters(model):,} trainable parameters "
        f"({config.noise.num_levels} noise levels, images {config.image_shape})")
    return model


def _shortened(train_cfg: TrainConfig, steps: int) -> TrainConfig:
    """train_cfg stopped at `steps` by a time budget: the warm-up fraction is rescaled so
    that the config still describes the schedule trained (its warm-up steps unchanged)."""
    warmup = warmup_steps(train_cfg)
    return replace(train_cfg, steps=steps,
                   warmup_fraction=warmup / steps if warmup < steps else train_cfg.warmup_fraction)


# A TimeBudget callback, once the callbacks whose final step it sets are built.
MakeBudget = Callable[[list[keras.callbacks.Callback]], TimeBudget]


def _time_budget(model: NCSN, config: Config, strategy: tf.distribute.Strategy, start: int,
                 started: float, final_heldout: bool, final_grid: bool,
                 eval_data: tf.data.Dataset, log: Callable[[str], None]
                 ) -> MakeBudget:
    """What builds the TimeBudget callback for train.time_budget from the callbacks whose
    final step it sets: its deadline is 95% of the budget after `started`, less the
    estimated held-out loss, final grid and mid-run grids (timed now, before training); the
    workers of a multi-worker run stop at the lowest step any of them can afford."""
    train_cfg, sample = config.train, config.sample
    grids = (train_cfg.steps - start) // sample.grid_every if sample.grid_every else 0
    grids += final_grid
    end_seconds = ((_heldout_seconds(model, eval_data, train_cfg) if final_heldout else 0.0)
                   + (_grid_seconds(model, sample) * grids if grids else 0.0))
    schedule = schedule_of(model.optimizer)
    return lambda followers: TimeBudget(
        started + 0.95 * 60 * train_cfg.time_budget, end_seconds, train_cfg.steps, followers,
        schedule.total if schedule else None, log=log,
        agree=lambda step: lowest_over_workers(strategy, step))


def _fit(model: NCSN, train_data: tf.data.Dataset, train_cfg: TrainConfig, paths: RunPaths,
         grid: SampleGrid, start: int, chief: bool, progress: bool,
         budget: MakeBudget | None) -> int:
    """Runs model.fit from step `start` to train.steps (or the lower step that the
    TimeBudget `budget` builds sets), in epochs of log_every steps; returns the last step.
    Only the chief writes checkpoints, logs and grids."""
    chunk = min(train_cfg.log_every, train_cfg.steps)
    writers = [
        AtomicCheckpoint(paths.checkpoints, train_cfg.checkpoint_every,
                         train_cfg.steps, train_cfg.keep_checkpoints),
        Progress(train_cfg.steps, show=progress),
        StepLog(os.path.join(paths.logs, "train.csv")),
        keras.callbacks.TensorBoard(os.path.join(paths.logs, "tensorboard"),
                                    update_freq="epoch"),
        grid,
    ] if chief else []
    stop = StopAtStep(train_cfg.steps)
    timing = [budget([stop, *(w for w in writers if hasattr(w, "final_step"))])] if budget else []
    model.fit(
        shard_by_data(train_data), epochs=math.ceil(train_cfg.steps / chunk),
        steps_per_epoch=chunk, initial_epoch=start // chunk, verbose=0, shuffle=False,
        callbacks=[RaiseOnNaN(paths.checkpoints), stop, *writers, *timing])
    return global_step(model)


def _heldout_seconds(model: NCSN, eval_data: tf.data.Dataset, train_cfg: TrainConfig) -> float:
    """Estimated wall time of the held-out loss."""
    first, per_call = score_timing(model, train_cfg.batch_size)
    return first + per_call * max(int(eval_data.cardinality()), 0) * train_cfg.eval_draws


def _grid_seconds(model: NCSN, sample: SampleConfig) -> float:
    """Estimated wall time of one sample grid."""
    first, per_call = score_timing(model, sample.num_images)
    return first + per_call * model.sampler(**sample_options(sample)).num_steps


def _final_heldout(model: NCSN, eval_data: tf.data.Dataset, train_cfg: TrainConfig,
                   paths: RunPaths, chief: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """The held-out loss after training, announced with its estimated time; the chief
    writes heldout_loss.json."""
    batches = int(eval_data.cardinality())
    if chief and batches > 0:
        log(f"held-out loss: {batches} batches x {train_cfg.eval_draws} noise draws, "
            f"{about(_heldout_seconds(model, eval_data, train_cfg))} "
            "(skip with fit.py --no-heldout)")
    heldout = heldout_loss(model, shard_by_data(eval_data), train_cfg.eval_draws)
    heldout["step"] = global_step(model)
    if chief:
        atomic_write_text(paths.heldout, json.dumps(heldout, indent=2) + "\n")
    return heldout


def _final_grid(model: NCSN, grid: SampleGrid, sample: SampleConfig, progress: bool,
                log: Callable[[str], None]) -> str:
    """The final sample grid, announced with its estimated time; returns its path."""
    steps = model.sampler(**sample_options(sample)).num_steps
    log(f"final sample grid: {sample.num_images} images x {steps} Langevin steps, "
        f"{about(_grid_seconds(model, sample))} (skip with fit.py --no-grid; fewer with "
        f"--set sample.num_images=N or sample.steps_per_level=K)")
    grid_path = grid.write(global_step(model), progress=progress)
    log(f"sample grid: {grid_path}")
    return grid_path


def use_ema_weights(model: NCSN) -> None:
    """Replaces the model's weights by the optimizer's moving averages, if it keeps them."""
    if model.optimizer is not None and model.optimizer.use_ema:
        model.optimizer.finalize_variable_values(model.trainable_variables)


def check_run(run_dir: str) -> Config:
    """The config of a run folder that has a checkpoint; CheckpointError or ConfigError if not.

    Cheap (builds no model), so scripts can check a run and their other inputs first.
    """
    if not os.path.isdir(run_dir):
        what = ("is a file, not a folder written by fit.py" if os.path.exists(run_dir) else
                "does not exist")
        raise CheckpointError(f"run folder {run_dir} {what}")
    config = load_config(run_dir)
    checkpoints = RunPaths(run_dir).checkpoints
    if not list_checkpoints(checkpoints):
        raise CheckpointError(f"run folder {run_dir} has no checkpoint yet "
                              f"(expected {checkpoints}/ckpt-*.weights.h5)")
    return config


def load_run(run_dir: str, *, ema: bool = True) -> tuple[Config, NCSN, int]:
    """Config, model (EMA weights when the run kept them and `ema`) and step of a run folder."""
    config = check_run(run_dir)
    model = compile_model(build_model(config), config.train)
    step = restore_latest(model, RunPaths(run_dir).checkpoints)
    if ema:
        use_ema_weights(model)
    return config, model, step


def format_heldout(heldout: dict[str, Any]) -> str:
    """A small text table of the held-out DSM loss per noise level, after the training
    objective's own held-out value when that is not DSM."""
    lines = [f"held-out DSM loss {heldout['loss']:.3f} at step {heldout.get('step', '?')} "
             f"(untrained net ~{heldout['untrained_reference']:.0f}; {heldout['draws']} noise draws)"]
    if "objective_loss" in heldout:
        lines.append(f"held-out {heldout['objective']} loss {heldout['objective_loss']:.3f} "
                     f"(the training objective; its expectation is the DSM loss - D/2 = "
                     f"{heldout['loss'] - heldout['untrained_reference']:.3f})")
    lines.append("  level    sigma  DSM loss")
    lines += [f"  {row['level']:>5}  {row['sigma']:7.4f}  {row['loss']:8.3f}"
              for row in heldout["per_level"]]
    return "\n".join(lines)

