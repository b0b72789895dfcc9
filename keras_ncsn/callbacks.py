"""Keras callbacks for long DSM runs: atomic checkpoints, progress, step logs, NaN stop,
sample grids, a time budget (`keras_ncsn.model.ema_weights` lends a model its optimizer's
weight averages)."""

from __future__ import annotations

import csv
import glob
import math
import os
import re
import time

from typing import Callable, Sequence

import keras
from tqdm.auto import tqdm

from keras_ncsn.config import SampleConfig
from keras_ncsn.errors import CheckpointError, TrainingError
from keras_ncsn.images import save_grid
from keras_ncsn.io import atomic_path
from keras_ncsn.sampling import sample_options

_CHECKPOINT = re.compile(r"^ckpt-(\d+)\.weights\.h5$")


def global_step(model: keras.Model) -> int:
    """Optimizer steps taken so far: the one step counter that survives a resume."""
    return int(keras.ops.convert_to_numpy(model.optimizer.iterations))


def list_checkpoints(folder: str) -> list[tuple[int, str]]:
    """(step, path) of the complete checkpoints in `folder`, oldest first."""
    found = []
    for path in glob.glob(os.path.join(folder, "ckpt-*.weights.h5")):
        match = _CHECKPOINT.match(os.path.basename(path))
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def restore_latest(model: keras.Model, folder: str) -> int:
    """Loads the newest readable checkpoint (weights and optimizer state); returns its step.

    Returns 0 when there is none. A checkpoint that fails to load is reported and the
    previous one is tried, so one damaged file never costs the whole run.
    """
    for stale in glob.glob(os.path.join(folder, ".tmp-ckpt-*")):  # a write cut off by a kill
        os.remove(stale)
    errors = []
    for step, path in reversed(list_checkpoints(folder)):
        try:
            model.load_weights(path)
        except Exception as e:  # h5py/keras raise many types for damaged or foreign files
            errors.append(f"{os.path.basename(path)}: {type(e).__name__}: {e}".splitlines()[0])
            continue
        for problem in errors:
            print(f"warning: skipped unreadable checkpoint {problem}")
        return step
    if errors:
        raise CheckpointError(f"no readable checkpoint in {folder}: {'; '.join(errors)}")
    return 0


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves weights + optimizer state every `every` steps and at `final_step`, keeping `keep`.

    This is our BackupAndRestore: Keras' own writes its file in place (a SIGKILL during the
    write corrupts it) and restores only whole epochs. Here each checkpoint goes to a
    temporary file renamed into place, is named by the global step, and a restart resumes
    at exactly that step.

    Why not `tf.train.CheckpointManager`: it writes TensorFlow's checkpoint format (an
    .index file, .data shards and a `checkpoint` state file naming the newest), not the
    Keras `ckpt-STEP.weights.h5` files that existing run folders hold, so those runs would
    no longer resume or load. It also restores only what its state file names: when that
    newest checkpoint is damaged, `restore` fails instead of falling back to the one
    before it, which `restore_latest` does here.
    """

    def __init__(self, folder: str, every: int, final_step: int, keep: int):
        super().__init__()
        self.folder, self.every, self.final_step, self.keep = folder, every, final_step, keep

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if step % self.every == 0 or step >= self.final_step:
            self.save(step)

    def save(self, step: int) -> str:
        path = os.path.join(self.folder, f"ckpt-{step:08d}.weights.h5")
        with atomic_path(path) as tmp:
            os.remove(tmp)  # h5 refuses to overwrite an existing (empty) file
            self.model.save_weights(tmp)
        for _, old in list_checkpoints(self.folder)[:-self.keep]:
            os.remove(old)
        return path


class StopAtStep(keras.callbacks.Callback):
    """Stops `fit` at an exact global step (fit's epochs are only logging chunks here)."""

    def __init__(self, final_step: int):
        super().__init__()
        self.final_step = final_step

    def on_train_batch_end(self, batch, logs=None):
        if global_step(self.model) >= self.final_step:
            self.model.stop_training = True


class TimeBudget(keras.callbacks.Callback):
    """Sets the run's last step, at most `final_step`, so that training, then `end_seconds`
    of end-of-run work (held-out loss, final grid), end by `deadline` (a `time.monotonic()`
    value).

    The speed is measured from the end of the first logging chunk (which includes tracing)
    and the decision taken at the end of the second, then taken again at each later chunk
    end with the speed so far, since a shared machine can slow down or speed up: the last
    step moves down or back up, never past `final_step` (train.steps). It is passed to
    `followers` (callbacks with a `final_step`) and to the learning-rate schedule's `total`,
    so the schedule still decays to 0 at the end. Later moves are logged when they shift
    the last step by `LOG_SHIFT` of train.steps or more. `agree` turns this process's step
    into the one all workers use (the lowest).
    """

    LOG_SHIFT = 0.05

    def __init__(self, deadline: float, end_seconds: float, final_step: int,
                 followers: Sequence[keras.callbacks.Callback], schedule_total=None,
                 log=print, agree: Callable[[int], int] = lambda step: step):
        super().__init__()
        self.deadline, self.end_seconds, self.final_step = deadline, end_seconds, final_step
        self.followers, self.schedule_total, self.log = followers, schedule_total, log
        self.agree = agree
        self.steps = final_step  # train.steps: the last step is never set past it
        self.start: tuple[float, int] | None = None  # (time, step) at the first chunk's end
        self.logged: int | None = None  # the last step most recently logged

    def on_epoch_end(self, epoch, logs=None):
        now, step = time.monotonic(), global_step(self.model)
        if self.start is None:
            self.start = (now, step)
        elif step < self.final_step:  # the same steps on every worker: `agree` stays in step
            self.decide(*self.start, now, step)

    def decide(self, t0: float, step0: int, now: float, step: int) -> int:
        """Sets and returns the last step, from the speed between (t0, step0) and (now, step)."""
        rate = (step - step0) / max(now - t0, 1e-9)
        left = self.deadline - now - self.end_seconds
        fits = step + max(1, math.floor(rate * left))  # one more: the last step saves
        decided = self.agree(min(self.steps, fits))
        self.announce(decided, f"{rate:.2f} steps/s measured over steps {step0}-{step}",
                      (fits - self.steps) / rate / 60)
        self.final_step = decided
        for follower in self.followers:
            follower.final_step = decided
        if self.schedule_total is not None:
            self.schedule_total.assign(decided)
        return decided

    def announce(self, decided: int, speed: str, spare_minutes: float) -> None:
        """Logs the first decision, and later ones that move the last step far enough."""
        prefix = f"time budget (train.time_budget): at {speed}, "
        if self.logged is None and decided == self.steps:
            self.log(prefix + f"all {self.steps} steps fit, with about "
                     f"{max(0.0, spare_minutes):.1f} min to spare")
        elif self.logged is None:
            self.log(prefix + f"training stops at step {decided} instead of {self.steps} so "
                     f"that the held-out loss and grid (~{self.end_seconds:.0f} s) end in "
                     "time; --steps N trains exactly N steps")
        elif abs(decided - self.logged) >= self.LOG_SHIFT * self.steps:
            self.log(prefix + f"training now stops at step {decided} instead of "
                     f"{self.logged}" + (" (all of train.steps)" if decided == self.steps
                                         else ""))
        else:
            return
        self.logged = decided


class RaiseOnNaN(keras.callbacks.TerminateOnNaN):
    """Keras' NaN check, raising an error that names the step, the last good checkpoint and
    the remedies (the stock one names only the batch index within the logging chunk)."""

    def __init__(self, checkpoint_folder: str):
        super().__init__(raise_error=True)
        self.checkpoint_folder = checkpoint_folder

    def on_batch_end(self, batch, logs=None):
        try:
            super().on_batch_end(batch, logs)
        except RuntimeError:
            saved = list_checkpoints(self.checkpoint_folder)
            last = f"the last good checkpoint is step {saved[-1][0]}" if saved else \
                "no checkpoint was written yet"
            raise TrainingError(
                f"loss became {float(logs['loss'])} at step {global_step(self.model)}; {last}. "
                "Lower train.learning_rate or set train.clip_norm (e.g. --set train.clip_norm=1)"
            ) from None


class Progress(keras.callbacks.Callback):
    """A progress bar over the whole run, from the resumed step on, showing the loss."""

    def __init__(self, final_step: int, show: bool = True):
        super().__init__()
        self.final_step, self.show = final_step, show
        self.bar = None

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=self.final_step, initial=global_step(self.model), unit="step",
                        disable=not self.show, dynamic_ncols=True, mininterval=1.0)

    def on_train_batch_end(self, batch, logs=None):
        if self.bar.total != self.final_step:  # moved by TimeBudget
            self.bar.total = self.final_step
            self.bar.refresh()
        self.bar.update(global_step(self.model) - self.bar.n)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4g}", refresh=False)

    def on_train_end(self, logs=None):
        self.bar.close()


class StepLog(keras.callbacks.CSVLogger):
    """Keras' CSVLogger, appending a row per logging chunk with the columns of `FIELDS`.

    The stock logger's columns are "epoch" and every logged metric; run folders keep
    step, loss, steps/s and wall time, so that a resumed run appends rows under the header
    its first session wrote (fit's epochs are only logging chunks here).
    """

    FIELDS = ("step", "loss", "steps_per_second", "time")

    def __init__(self, csv_path: str):
        super().__init__(csv_path, append=True)
        self.last_time = self.last_step = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.keys = list(self.FIELDS)
        self.writer = csv.DictWriter(self.csv_file, fieldnames=self.FIELDS,
                                     extrasaction="ignore")  # drops the stock "epoch" column
        if self.append_header:
            self.writer.writeheader()
        self.last_time, self.last_step = time.perf_counter(), global_step(self.model)

    def on_epoch_end(self, epoch, logs=None):
        now, step = time.perf_counter(), global_step(self.model)
        rate = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        super().on_epoch_end(epoch, {
            "step": step, "loss": float((logs or {}).get("loss", float("nan"))),
            "steps_per_second": round(rate, 3), "time": round(time.time(), 1)})


class SampleGrid(keras.callbacks.Callback):
    """Writes a PNG grid of samples, `folder/grid-STEP.png`, every `every` training steps.

    `every` 0 writes none during training; `write` makes one at any time (`train` calls it
    when training ends). Samples use the EMA weights when the optimizer keeps them and
    the same seed every time, so successive grids show how the same chains improve.
    """

    def __init__(self, folder: str, sample_config: SampleConfig, every: int):
        super().__init__()
        self.folder, self.sample_config, self.every = folder, sample_config, every
        self.written_step: int | None = None

    def on_train_batch_end(self, batch, logs=None):
        step = global_step(self.model)
        if self.every and step % self.every == 0:
            self.write(step)

    def write(self, step: int, progress: bool = False) -> str:
        """Samples `sample_config.num_images` images and writes their grid; returns its path.

        A second call for the same step reuses the grid: the EMA weights are the same.
        """
        path = os.path.join(self.folder, f"grid-{step:08d}.png")
        if step != self.written_step:
            config = self.sample_config
            images = self.model.sample(config.num_images, seed=config.seed, progress=progress,
                                       **sample_options(config))
            save_grid(images, path)
            self.written_step = step
        return path
