"""tf.distribute on CPU: mirrored training and sampling over 2 logical CPU devices, a
two-process multi-worker run on loopback, and one-line errors for bad strategies.

Splitting the CPU must happen before TensorFlow starts its devices, so the mirrored checks
run in a fresh Python (this file run as a script) and the rest of the suite is untouched.
The mirrored and multi-worker checks trace the model on every replica and take minutes on
a 2-core CPU, hence `slow`; the error checks take seconds.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SMALL, load_script, set_args
from keras_ncsn.cli import run_main
from keras_ncsn.callbacks import list_checkpoints

SMALL_ARGS = set_args(SMALL)
fit = load_script("fit")
sample_script = load_script("sample")


def _mirrored_checks(out: str) -> None:
    """Run in a subprocess: one SGD step single-device and mirrored from the same weights on
    the same global batch, then distributed sampling; writes the results to `out` (.npz)."""
    from keras_ncsn.distribute import make_strategy, sample_distributed, split_cpu

    split_cpu(2)
    import keras
    import tensorflow as tf

    from keras_ncsn.config import get_config
    from keras_ncsn.model import build_model
    from keras_ncsn.sampling import sample_options

    config = get_config("quick", SMALL)
    batch = np.random.default_rng(0).random((8, *config.image_shape), np.float32)
    results, start = {}, None
    for name in ("single", "mirrored"):
        strategy = make_strategy("one_device" if name == "single" else name)
        with strategy.scope():
            model = build_model(config)
            # SGD, not Adam: Adam's update ignores the gradient's scale, so it would hide a
            # loss reduced wrongly over replicas.
            model.compile(optimizer=keras.optimizers.SGD(0.01))
        start = start or model.get_weights()
        model.set_weights(start)
        history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=1,
                            epochs=1, verbose=0)
        results[f"{name}_loss"] = history.history["loss"][0]
        results[f"{name}_weights"] = np.concatenate([w.ravel() for w in model.get_weights()])
        results["replicas"] = strategy.num_replicas_in_sync
    results["start_weights"] = np.concatenate([w.ravel() for w in start])
    options = sample_options(config.sample)
    results["samples"] = np.stack([
        sample_distributed(model, 5, 3, strategy, **options).numpy() for _ in range(2)])
    np.savez(out, **results)


@pytest.fixture(scope="module")
def mirrored(tmp_path_factory) -> dict:
    out = str(tmp_path_factory.mktemp("mirrored") / "results.npz")
    done = subprocess.run([sys.executable, __file__, out], capture_output=True, text=True,
                          timeout=1500, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(np.load(out))


@pytest.mark.slow
def test_mirrored_step_matches_single_device_step(mirrored):
    assert mirrored["replicas"] == 2
    update = np.abs(mirrored["single_weights"] - mirrored["start_weights"]).max()
    diff = np.abs(mirrored["mirrored_weights"] - mirrored["single_weights"]).max()
    assert update > 1e-4  # the step did something
    assert diff <= 1e-3 * update  # a loss reduced wrongly over replicas gives diff ~ update
    np.testing.assert_allclose(mirrored["mirrored_loss"], mirrored["single_loss"], rtol=1e-5)


@pytest.mark.slow
def test_sampling_across_replicas_is_distinct_and_reproducible(mirrored):
    first, again = mirrored["samples"]
    assert first.shape == (5, 8, 8, 1)
    np.testing.assert_array_equal(first, again)
    flat = first.reshape(5, -1)
    distances = np.abs(flat[:, None] - flat[None]).max(-1)
    assert (distances[~np.eye(5, dtype=bool)] > 1e-3).all()  # 3 from replica 0, 2 from 1


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_run_on_loopback_writes_one_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    workers = [f"localhost:{port}" for port in _free_ports(2)]
    command = [sys.executable, os.path.join(REPO, "scripts", "fit.py"), "--no-progress",
               *SMALL_ARGS, "--set", "train.steps=2", "--set", "train.checkpoint_every=2",
               "--strategy", "multi_worker", "--out", out]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config), "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True))
    try:
        outputs = [p.communicate(timeout=540)[0] for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    for p, output in zip(processes, outputs):
        assert p.returncode == 0, output[-3000:]
    assert "CollectiveAllReduceStrategy, 2 replica(s)" in outputs[0]  # MWMS in TF 2.21
    assert all("done: step 2" in output for output in outputs)
    assert [step for step, _ in list_checkpoints(os.path.join(out, "checkpoints"))] == [2]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == ["ckpt-00000002.weights.h5"]
    rows = open(os.path.join(out, "logs", "train.csv")).read().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["2"]  # one writer


@pytest.mark.parametrize("args, words", [
    (["--strategy", "nccl"], "--strategy must be one of auto, one_device, mirrored"),
    (["--strategy", "tpu", "--tpu", "grpc://127.0.0.1:{port}"], "cannot reach the TPU at"),
    (["--strategy", "mirrored", "--tpu", "grpc://127.0.0.1:{port}"], "--tpu needs --strategy tpu"),
    (["--strategy", "multi_worker"], "needs the TF_CONFIG environment variable"),
])
def test_bad_strategy_gives_one_line_error(tmp_path, capsys, monkeypatch, args, words):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = [arg.format(port=_free_ports(1)[0]) for arg in args]  # a port nobody listens on
    for script, script_args in ((fit, [*SMALL_ARGS, "--out", str(tmp_path / "run")]),
                                (sample_script, [str(tmp_path / "run")])):
        if script is sample_script:
            _fake_run(tmp_path / "run")
        code = run_main(script.main, ["--no-progress", *script_args, *args])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and words in err, err
        assert err.count("\n") == 1


def _fake_run(folder) -> None:
    """A run folder that passes `check_run` (config and a checkpoint file name), so that
    sample.py reaches the strategy without training anything."""
    from keras_ncsn.config import get_config, save_config

    (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(get_config("quick", SMALL), str(folder))
    (folder / "checkpoints" / "ckpt-00000001.weights.h5").write_bytes(b"")


def test_bad_tf_config_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", "{not json")
    code = run_main(fit.main, ["--no-progress", *SMALL_ARGS, "--out", str(tmp_path / "r"),
                                   "--strategy", "multi_worker"])
    err = capsys.readouterr().err
    assert code == 2 and "TF_CONFIG is not valid" in err and err.count("\n") == 1


if __name__ == "__main__":
    _mirrored_checks(sys.argv[1])
