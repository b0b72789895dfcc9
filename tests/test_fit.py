"""scripts/fit.py end to end: run folder contents, resume (also after SIGKILL), bad input."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import types
import weakref

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, TINY, load_script, set_args
from keras_ncsn.cli import run_main
from keras_ncsn import callbacks, training
from keras_ncsn.callbacks import global_step, list_checkpoints, restore_latest
from keras_ncsn.config import get_config, load_config
from keras_ncsn.model import build_model, compile_model

fit = load_script("fit")
TINY_ARGS = set_args(TINY)


def run_fit(capsys, *args: str) -> tuple[int, str, str]:
    code = run_main(fit.main, ["--no-progress", *TINY_ARGS, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fit_writes_a_complete_run_folder_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "run")
    code, stdout, _ = run_fit(capsys, "--out", out)
    assert code == 0
    assert "trainable parameters" in stdout
    assert f"output folder: {os.path.abspath(out)}" in stdout
    assert load_config(out).train.steps == 4 and load_config(out).model.ngf == 4
    assert load_config(out).train.time_budget == 14  # the quick preset's
    steps = [step for step, _ in list_checkpoints(os.path.join(out, "checkpoints"))]
    assert steps == [2, 4]  # every 2 steps, last keep_checkpoints=3 kept
    rows = open(os.path.join(out, "logs", "train.csv")).read().splitlines()
    assert rows[0].startswith("step,loss") and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    assert os.listdir(os.path.join(out, "logs", "tensorboard"))
    heldout = json.load(open(os.path.join(out, "heldout_loss.json")))
    assert heldout["step"] == 4 and len(heldout["per_level"]) == 3
    assert all(np.isfinite(row["loss"]) for row in heldout["per_level"])
    assert not [f for f in os.listdir(out) + os.listdir(os.path.join(out, "checkpoints"))
                if f.startswith(".tmp")]

    code, stdout, _ = run_fit(capsys, "--resume", out, "--steps", "6")
    assert code == 0 and "resuming from step 4" in stdout and "done: step 6" in stdout
    assert load_config(out).train.time_budget == 0  # --steps N: exactly N steps
    assert [s for s, _ in list_checkpoints(os.path.join(out, "checkpoints"))] == [2, 4, 6]
    rows = open(os.path.join(out, "logs", "train.csv")).read().splitlines()
    assert rows[0] == "step,loss,steps_per_second,time"  # one header, resumed rows below it
    assert [r.split(",")[0] for r in rows[1:]] == ["2", "4", "6"]


def test_steps_turns_the_time_budget_off_unless_set_gives_one():
    def trained(*argv: str):
        return get_config("quick", fit.config_overrides(fit.parse_args(argv))).train

    assert trained().time_budget == 14 and trained().steps == 1400
    assert trained("--steps", "30").time_budget == 0 and trained("--steps", "30").steps == 30
    for argv in (["--steps", "30", "--set", "train.time_budget=3"],
                 ["--set", "train.time_budget=3", "--steps", "30"]):
        assert trained(*argv).time_budget == 3 and trained(*argv).steps == 30
    assert trained("--set", "train.steps=9", "--steps", "30").steps == 30  # the shortcut wins


def test_time_budget_lowers_the_last_step_to_what_fits():
    lines = []

    def budget(deadline: float) -> tuple[callbacks.TimeBudget, types.SimpleNamespace, tf.Variable]:
        follower, total = types.SimpleNamespace(final_step=1000), tf.Variable(1000, dtype=tf.int64)
        return (callbacks.TimeBudget(deadline, 20.0, 1000, [follower], total, log=lines.append),
                follower, total)

    # 2 steps/s between (t=10 s, step 50) and (t=35 s, step 100); a deadline at t=100 s less
    # 20 s of held-out loss and grid leaves 45 s: 90 more steps.
    short, follower, total = budget(100.0)
    assert short.decide(10.0, 50, 35.0, 100) == 190
    assert follower.final_step == 190 and int(total.numpy()) == 190
    assert "training stops at step 190 instead of 1000" in lines[-1]
    ample, follower, total = budget(10_000.0)  # never raised
    assert ample.decide(10.0, 50, 35.0, 100) == 1000 and follower.final_step == 1000
    assert int(total.numpy()) == 1000 and "all 1000 steps fit" in lines[-1]
    spent, follower, _ = budget(30.0)  # already late: one more step, which saves a checkpoint
    assert spent.decide(10.0, 50, 35.0, 100) == 101 and follower.final_step == 101
    slower_worker, follower, total = budget(100.0)  # another worker can afford only 150
    slower_worker.agree = lambda step: min(step, 150)
    assert slower_worker.decide(10.0, 50, 35.0, 100) == 150
    assert follower.final_step == 150 and int(total.numpy()) == 150


def _run_budget(monkeypatch, deadline: float, chunk_ends: list[tuple[float, int, int, int]]
                ) -> list[str]:
    """Feeds a TimeBudget (train.steps 300, 20 s of end-of-run work) chunk ends at
    (time, step) on a fake clock, checking after each the (last step, lines logged)."""
    lines, follower = [], types.SimpleNamespace(final_step=300)
    model = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=keras.Variable(0)))
    budget = callbacks.TimeBudget(deadline, 20.0, 300, [follower], log=lines.append)
    budget.set_model(model)
    clock = iter([now for now, *_ in chunk_ends])
    monkeypatch.setattr(callbacks, "time", types.SimpleNamespace(monotonic=lambda: next(clock)))
    for _, step, final, logged in chunk_ends:
        model.optimizer.iterations.assign(step)
        budget.on_epoch_end(0)
        assert (follower.final_step, len(lines)) == (final, logged), (step, lines)
    return lines


def test_time_budget_checks_again_at_each_chunk_end(monkeypatch):
    """A machine that slows down after the decision (a shared CPU): the last step is
    lowered with the speed so far, raised again when it speeds up, and only moves of 5%
    of train.steps or more are logged."""
    lines = _run_budget(monkeypatch, 100.0, [
        (10.0, 50, 300, 0), (35.0, 100, 190, 1),  # 2 steps/s from step 50
        (45.0, 120, 190, 1),  # still 2 steps/s: 190 fits, nothing said
        (60.0, 120, 148, 2),  # 1.4 steps/s since step 50: lowered
        (61.0, 147, 183, 3),  # 1.9 steps/s: raised
        (62.0, 150, 184, 3)])  # one step more: quietly
    assert "training stops at step 190 instead of 300" in lines[0]
    assert "training now stops at step 148 instead of 190" in lines[1]
    assert "training now stops at step 183 instead of 148" in lines[2]


def test_time_budget_measured_on_a_busy_machine_recovers_the_steps(monkeypatch):
    """A slow first measurement (another job finishing) no longer costs the whole run: the
    last step rises with the speed so far, up to train.steps and never past it."""
    lines = _run_budget(monkeypatch, 200.0, [
        (10.0, 50, 300, 0), (110.0, 100, 135, 1),  # 0.5 steps/s at first
        (120.0, 130, 173, 2), (125.0, 172, 230, 3),
        (126.0, 229, 300, 4)])  # 1.5 steps/s would reach step 312: train.steps it is
    assert lines[-1].endswith("training now stops at step 300 instead of 230 "
                              "(all of train.steps)")


def test_timing_the_score_keeps_no_model_alive():
    """The end-of-run estimates cache a traced score per model; that cache must not keep
    the models of a long process (a test session, a notebook) alive."""
    model = build_model(get_config("quick", ["model.ngf=4", "noise.num_levels=3"]))
    first, per_call = training.score_timing(model, 2)
    assert first > per_call > 0
    score, tracing = training._COMPILED_SCORES[model]
    again, per_call = training.score_timing(model, 2)
    assert again == pytest.approx(tracing + per_call)  # later estimates include the tracing
    assert again > per_call and score.experimental_get_tracing_count() == 1  # traced once
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None


def test_a_time_budget_run_stops_early_on_a_finished_schedule(tmp_path):
    """Too little time for train.steps: training stops at a checkpoint with the learning
    rate decayed to 0 there, and config.json says how many steps were trained."""
    out = str(tmp_path / "run")
    config = get_config("quick", [*TINY, "train.steps=400", "train.time_budget=0.01",
                                  "train.lr_schedule=cosine", "train.warmup_fraction=0.01"])
    lines = []
    result = training.train(config, out, progress=False, log=lines.append, final_grid=False)
    assert result.final_step == 5  # decided after two chunks of 2 steps, one more to save
    assert any("training stops at step 5 instead of 400" in line for line in lines), lines
    trained = load_config(out).train  # the schedule trained: 4 steps of warm-up, 5 in all
    assert trained.steps == 5 and trained.warmup_fraction == 0.8
    assert [step for step, _ in list_checkpoints(os.path.join(out, "checkpoints"))][-1] == 5
    assert float(result.model.optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
    assert json.load(open(os.path.join(out, "heldout_loss.json")))["step"] == 5


def test_step_log_appends_under_the_header_of_an_existing_run(tmp_path):
    """Keras' CSVLogger with our columns: a run folder written before keeps one header."""
    path = tmp_path / "train.csv"
    path.write_text("step,loss,steps_per_second,time\n2,1.5,3.0,100.0\n")
    model = types.SimpleNamespace(optimizer=types.SimpleNamespace(iterations=keras.Variable(2)))
    log = callbacks.StepLog(str(path))
    log.set_model(model)
    log.on_train_begin()
    model.optimizer.iterations.assign(4)
    log.on_epoch_end(1, {"loss": 0.5, "loss_level_0": 0.1})
    log.on_train_end()
    rows = path.read_text().splitlines()
    assert rows[:2] == ["step,loss,steps_per_second,time", "2,1.5,3.0,100.0"]
    assert len(rows) == 3 and rows[2].startswith("4,0.5,")


class _Killed(Exception):
    """Stands for a kill in the middle of a run (after a step, before its checkpoint)."""


def _state(model: keras.Model) -> dict[str, list[np.ndarray]]:
    """What a resume must restore: the weights, the optimizer's variables (step, Adam
    moments, EMA averages) and the training noise's seed generator."""
    return {"weights": [keras.ops.convert_to_numpy(v) for v in model.weights],
            "optimizer": [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables],
            "rng": [keras.ops.convert_to_numpy(model.seed_generator.state)]}


def _assert_same_state(got: dict, expected: dict) -> None:
    for key in expected:
        assert len(got[key]) == len(expected[key]), key
        for a, b in zip(got[key], expected[key]):
            np.testing.assert_array_equal(a, b, err_msg=key)


def test_resume_restores_the_saved_state_and_keeps_the_newest_checkpoints(tmp_path,
                                                                          monkeypatch, capsys):
    """Killed after step 4 (checkpoints every step, keep 2), the run resumes from exactly
    what step 3 saved, the seed generator included (checkpoints used to lack it, so a
    resumed run replayed the noise of its first steps); keep_checkpoints is kept to; and
    an unreadable newest checkpoint gives way to the one before it."""
    config = get_config("quick", [*TINY, "train.ema_momentum=0.9", "train.checkpoint_every=1",
                                  "train.keep_checkpoints=2", "train.steps=5"])
    out = str(tmp_path / "run")
    folder = os.path.join(out, "checkpoints")
    saved, restored, killed = {}, {}, {}
    save, stop, restore = (callbacks.AtomicCheckpoint.save,
                           callbacks.StopAtStep.on_train_batch_end, training.restore_latest)

    def recording_save(self, step):
        saved[step] = _state(self.model)
        return save(self, step)

    def kill_at_step_4(self, batch, logs=None):
        stop(self, batch, logs)
        if global_step(self.model) == 4 and not killed:
            killed.update(_state(self.model))
            raise _Killed

    def recording_restore(model, checkpoints):
        step = restore(model, checkpoints)
        restored[step] = _state(model)
        return step

    monkeypatch.setattr(callbacks.AtomicCheckpoint, "save", recording_save)
    monkeypatch.setattr(callbacks.StopAtStep, "on_train_batch_end", kill_at_step_4)
    monkeypatch.setattr(training, "restore_latest", recording_restore)
    with pytest.raises(_Killed):
        training.train(config, out, progress=False, log=lambda _: None)
    assert [step for step, _ in list_checkpoints(folder)] == [2, 3]
    result = training.train(config, out, progress=False, log=lambda _: None)
    assert result.start_step == 3 and result.final_step == 5
    _assert_same_state(restored[3], saved[3])
    assert not np.array_equal(restored[3]["rng"][0], killed["rng"][0])  # a real rewind
    assert [step for step, _ in list_checkpoints(folder)] == [4, 5]

    with open(os.path.join(folder, "ckpt-00000005.weights.h5"), "r+b") as f:
        f.truncate(1000)
    model = compile_model(build_model(config), config.train)
    capsys.readouterr()
    assert restore_latest(model, folder) == 4
    assert "skipped unreadable checkpoint ckpt-00000005.weights.h5" in capsys.readouterr().out
    _assert_same_state(_state(model), saved[4])


def test_changed_model_config_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(load_config_json(ngf=8))
    code, _, err = run_fit(capsys, "--out", str(out))
    assert code == 2 and "model.ngf: 8 -> 4" in err and "--resume" in err
    assert err.count("\n") == 1


def load_config_json(ngf: int) -> str:
    from keras_ncsn.config import get_config

    return get_config("quick", [*TINY, f"model.ngf={ngf}"]).to_json()


@pytest.mark.parametrize("args, words", [
    (["--dataset", "files", "--data-dir", "/no/such/folder"], "does not exist"),
    (["--set", "train.stepz=3"], "unknown config key 'train.stepz'"),
    (["--set", "train.batch_size=-1"], "train.batch_size must be > 0"),
    (["--config", "nope"], "unknown config 'nope'"),
])
def test_bad_input_gives_one_line_error(tmp_path, capsys, args, words):
    code, _, err = run_fit(capsys, "--out", str(tmp_path / "run"), *args)
    assert code == 2
    assert err.startswith("error: ") and words in err and err.count("\n") == 1


def test_wrong_image_shape_is_reported(tmp_path, capsys):
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((20, 32, 32, 1), np.uint8))
    code, _, err = run_fit(capsys, "--out", str(tmp_path / "run"), "--dataset", "files",
                           "--data-dir", str(path))
    assert code == 2 and "32" in err and "data.image_size" in err and err.count("\n") == 1


def test_nan_loss_stops_with_a_clear_error(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_fit(capsys, "--out", str(out), "--set", "train.learning_rate=1e30",
                           "--set", "train.steps=20")
    assert code == 2 and "loss became" in err and "learning_rate" in err
    assert err.count("\n") == 1


def _wait_for_checkpoint(folder: str, process: subprocess.Popen, min_step: int) -> int:
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        saved = list_checkpoints(folder)
        if saved and saved[-1][0] >= min_step:
            return saved[-1][0]
        time.sleep(0.2)
    raise AssertionError("no checkpoint appeared in time")


@pytest.mark.slow
def test_sigkill_during_training_resumes_from_last_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    command = [sys.executable, os.path.join(REPO, "scripts", "fit.py"), "--no-progress",
               *TINY_ARGS, "--set", "train.checkpoint_every=1", "--out", out]
    first = subprocess.Popen([*command, "--steps", "100000"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_checkpoint(os.path.join(out, "checkpoints"), first, 3)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed_at = list_checkpoints(os.path.join(out, "checkpoints"))[-1][0]
    second = subprocess.run([*command, "--steps", str(killed_at + 2)], capture_output=True,
                            text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming from step {killed_at}" in second.stdout
    assert f"done: step {killed_at + 2}" in second.stdout
    assert not [f for f in os.listdir(os.path.join(out, "checkpoints")) if f.startswith(".tmp")]
