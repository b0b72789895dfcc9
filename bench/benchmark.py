"""Side-by-side benchmark: training, forward, sampling, serving, FLOP utilisation.

Every case runs in its own Python process (`python -m bench.benchmark CASE_JSON`), so
its peak RSS (from `os.wait4`) and its TensorFlow state (mixed-precision policy, XLA
caches, threads) are its own. The parent collects each case's JSON, adds the ratios the
issue asks for and writes `<date>-<host>.json` and `.md` atomically. `--reference` runs the
authors' PyTorch code (../shared/bench/reference_pytorch.py) as further cases of the same
run, so every ratio compares numbers measured minutes apart on the same machine.
"""

from __future__ import annotations

import fnmatch
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Sequence

from keras_ncsn.errors import ConfigError
from keras_ncsn.io import atomic_write_text, check_output_files

Result = dict[str, Any]
RESULT_PREFIX = "BENCH_RESULT "
# The serving case's export folder unless --export names another: the shipped model.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_EXPORT = os.path.join(REPO, "saved_models", "mnist")
# Model sizes: (preset, --set overrides). "tiny" keeps --quick within about a minute.
SIZES: dict[str, tuple[str, list[str]]] = {
    "tiny": ("quick", ["model.ngf=4", "data.image_size=16", "data.center_crop=28",
                       "noise.num_levels=4", "train.batch_size=8"]),
    "quick": ("quick", []),
    "mnist": ("mnist", []),
    "cifar10": ("cifar10", []),
}
# The reference script's names for the paper sizes.
REFERENCE_SIZES = {"mnist": "mnist_ngf64", "cifar10": "cifar10_ngf128"}
FORWARD_BATCH = 100  # the issue's (and the reference script's) forward batch
PEAK_MATMUL = 2048


# Cases (run in the child process) ---------------------------------------------------------

def _config(size: str, precision: str = "float32", xla: bool = False):
    from keras_ncsn.config import get_config

    preset, overrides = SIZES[size]
    return get_config(preset, [*overrides, f"train.precision={precision}",
                               f"train.jit_compile={str(xla).lower()}"])


def _interleaved(functions: dict[str, Callable[[], Any]], min_seconds: float,
                 min_rounds: int = 2) -> dict[str, list[float]]:
    """Wall times of `functions` (each must block until done), called in turn, round after
    round, until there are `min_rounds` rounds and `min_seconds` seconds in all.

    On a machine whose speed drifts (a shared VM), a drift slows every function of a round
    alike, so ratios between them hold better than when each is timed in its own stretch.
    """
    times: dict[str, list[float]] = {name: [] for name in functions}
    rounds = 0
    while rounds < min_rounds or sum(map(sum, times.values())) < min_seconds:
        for name, function in functions.items():
            began = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - began)
        rounds += 1
    return times


def _timed(function: Callable[[], Any], min_seconds: float, min_calls: int = 2) -> list[float]:
    """Wall times of calls of `function` until both `min_calls` calls and `min_seconds`
    seconds are reached."""
    return _interleaved({"": function}, min_seconds, min_calls)[""]


def _summary(times: list[float], items: int) -> Result:
    """Median call time, its spread, and `items` per second at the median."""
    median = statistics.median(times)
    return {"calls": len(times), "median_s": median, "min_s": min(times), "max_s": max(times),
            "items_per_s": items / median}


def forward_flops(model, batch: int) -> int:
    """Float operations of one forward pass at `batch`, counted by TensorFlow's profiler
    on the traced graph (convolutions, matmuls, element-wise ops with registered costs)."""
    import tensorflow as tf
    from tensorflow.python.profiler import model_analyzer, option_builder

    spec = (tf.TensorSpec([batch, *model.image_shape], tf.float32),
            tf.TensorSpec([batch], tf.int32))
    graph = tf.function(lambda x, y: model((x, y), training=False),
                        autograph=False).get_concrete_function(*spec).graph
    options = option_builder.ProfileOptionBuilder(
        option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def matmul_peak(quick: bool) -> float:
    """Float32 matmul GFLOP/s (best of several calls): the machine's practical peak now."""
    import tensorflow as tf

    n = 1024 if quick else PEAK_MATMUL
    a, b = tf.random.normal([n, n]), tf.random.normal([n, n])
    matmul = tf.function(lambda: tf.linalg.matmul(a, b))
    matmul().numpy()
    return 2 * n ** 3 / min(_timed(lambda: matmul().numpy(), 1.0 if quick else 3.0, 3)) / 1e9


def case_peak(quick: bool, **_) -> Result:
    """The matmul peak on its own (train and forward cases also measure it beside them,
    since the shared machine's load changes between cases)."""
    return {"n": 1024 if quick else PEAK_MATMUL, "gflops": matmul_peak(quick)}


def case_train(size: str, precision: str, xla: bool, quick: bool, **_) -> Result:
    """DSM training images/s through Keras' own train function (what `fit` runs), on one
    fixed batch already in memory, after the first (tracing/compiling) step."""
    import tensorflow as tf

    from keras_ncsn.model import build_model, compile_model

    config = _config(size, precision, xla)
    batch = config.train.batch_size
    model = compile_model(build_model(config), config.train)
    images = tf.random.uniform((batch, *config.image_shape), seed=0)
    iterator = iter(tf.data.Dataset.from_tensors(images).repeat())
    model.make_train_function()
    step = model.train_function
    began = time.perf_counter()
    float(step(iterator)["loss"])
    first = time.perf_counter() - began
    times = _timed(lambda: float(step(iterator)["loss"]), 2.0 if quick else 20.0)
    flops = 3 * forward_flops(model, batch)  # backward ~ 2x forward (input and weight grads)
    result = _summary(times, batch)
    gflops, peak = flops / result["median_s"] / 1e9, matmul_peak(quick)
    return {**result, "batch": batch, "ngf": config.model.ngf, "first_step_s": first,
            "train_flops_per_step": flops, "gflops": gflops, "peak_gflops": peak,
            "utilisation": gflops / peak}


def case_forward(size: str, quick: bool, **_) -> Result:
    """Score-network forward images/s: an eager Keras call and a compiled tf.function."""
    import tensorflow as tf

    from keras_ncsn.model import build_model

    config = _config(size)
    model = build_model(config)
    batch = 8 if quick else FORWARD_BATCH
    x = tf.random.uniform((batch, *config.image_shape), seed=0)
    y = tf.fill([batch], 3)
    compiled = tf.function(model.score, autograph=False)
    flops = forward_flops(model, batch)
    out: Result = {"batch": batch, "ngf": config.model.ngf, "flops_per_call": flops}
    for name, function in (("keras_call", lambda: model((x, y), training=False).numpy()),
                           ("tf_function", lambda: compiled(x, y).numpy())):
        function()
        result = _summary(_timed(function, 2.0 if quick else 20.0), batch)
        out[name] = {**result, "gflops": flops / result["median_s"] / 1e9}
    out["peak_gflops"] = matmul_peak(quick)
    out["utilisation"] = out["tf_function"]["gflops"] / out["peak_gflops"]
    return out


def case_sampler(size: str, quick: bool, **_) -> Result:
    """Annealed Langevin: the compiled while_loop against the same updates driven from
    Python (compiled score per step, and eager), and against forward time x steps."""
    import numpy as np
    import tensorflow as tf

    from keras_ncsn.model import build_model
    from keras_ncsn.noise import langevin_update
    from keras_ncsn.sampling import sample_options

    config = _config(size)
    model = build_model(config)
    images, per_level = (4, 1) if quick else (16, 5)
    shape = (images, *config.image_shape)
    sampler = model.sampler(**{**sample_options(config.sample), "steps_per_level": per_level,
                               "denoise": False, "clip": False, "jit_compile": False})
    steps, seconds = sampler.num_steps, 2.0 if quick else 20.0
    x0 = sampler.init_state(shape, 0)
    noise = [sampler.step_noise(shape, 0, k) for k in range(steps)]
    score = tf.function(model.score, autograph=False)

    def python_loop(score_fn, count: int):
        x = x0
        for k in range(count):
            level = k // per_level
            x = langevin_update(x, score_fn(x, tf.fill([images], level)),
                                float(sampler.drift[level]), float(sampler.noise_std[level]),
                                noise[k])
        return x.numpy()

    loop = sampler.compiled_loop()
    run_loop = lambda: loop(x0, tf.constant(0, tf.int64), tf.constant(0),  # noqa: E731
                            tf.constant(sampler.num_levels)).numpy()
    y = tf.fill([images], 0)
    score(x0, y).numpy()
    began = time.perf_counter()
    compiled_x = run_loop()
    first = time.perf_counter() - began
    python_x = python_loop(score, steps)
    # In turns, so that the loop-vs-forward ratio compares the same stretch of time.
    times = _interleaved({
        "forward_x_steps": lambda: [score(x0, y).numpy() for _ in range(steps)],
        "compiled": run_loop,
        "python": lambda: python_loop(score, steps)}, 2.5 * seconds, 3 if quick else 5)
    forward = _summary([t / steps for t in times["forward_x_steps"]], images)
    compiled = _summary(times["compiled"], images)
    python = _summary(times["python"], images)
    eager_steps = per_level  # one level: the eager loop is about 10x slower
    eager = _summary(_timed(lambda: python_loop(model.score, eager_steps), 0, 1), images)

    def per_1000(result: Result, count: int) -> Result:
        return {**result, "s_per_1000_steps": result["median_s"] / count * 1000,
                "images_per_s": images / result["median_s"]}

    return {"images": images, "steps": steps, "ngf": config.model.ngf,
            "first_call_s": first,
            "forward_per_call": forward,
            "compiled_while_loop": per_1000(compiled, steps),
            "python_loop_compiled_score": per_1000(python, steps),
            "python_loop_eager": per_1000(eager, eager_steps),
            "max_abs_diff_python_vs_compiled": float(np.abs(python_x - compiled_x).max())}


def case_serving(export: str, quick: bool, **_) -> Result:
    """An export folder served by SavedModel and ONNX Runtime against the same model
    in-process (rebuilt from its config.json; time does not depend on the weights)."""
    import numpy as np
    import tensorflow as tf

    from keras_ncsn.export import load_export
    from keras_ncsn.model import build_model
    from keras_ncsn.onnx_runtime import OnnxExport
    from keras_ncsn.sampling import sample_options

    onnx = OnnxExport(export)
    loaded = load_export(export)
    model = build_model(onnx.config)
    batch, images = (8, 2) if quick else (FORWARD_BATCH, 4)
    rng = np.random.default_rng(0)
    x = rng.random((batch, *onnx.image_shape), dtype=np.float32)
    levels = rng.integers(0, onnx.num_levels, batch).astype(np.int32)
    x_tf, levels_tf = tf.constant(x), tf.constant(levels)
    compiled = tf.function(model.score, autograph=False)
    options = sample_options(onnx.config.sample)
    rows = {
        "score_tf_function": lambda: compiled(x_tf, levels_tf).numpy(),
        "score_saved_model": lambda: loaded.score(x=x_tf, level_index=levels_tf).numpy(),
        "score_onnx": lambda: onnx.score(x, levels),
    }
    if not quick:  # a full sample is the export's L x T score calls, minutes in all
        rows.update({
            "sample_in_process": lambda: model.sample(images, seed=0, ema=False,
                                                      **options).numpy(),
            "sample_saved_model": lambda: loaded.sample(num_images=images, seed=0).numpy(),
            "sample_onnx": lambda: onnx.sample(images, 0, "onnx")})
    out: Result = {"export": export, "score_batch": batch, "sample_images": images,
                   "sample_steps": onnx.num_levels * onnx.steps_per_level}
    firsts = {name: times[0] for name, times in _interleaved(rows, 0, 1).items()}
    # In turns: the SavedModel-vs-in-process and ONNX-vs-TF ratios compare one stretch of time.
    times = _interleaved(rows, 0, 1 if quick else 5)
    for name in rows:
        count = batch if name.startswith("score") else images
        out[name] = {**_summary(times[name], count), "first_call_s": firsts[name]}
    return out


def case_mirrored(quick: bool, **_) -> Result:
    """`bench.mirrored.benchmark_mirrored` on the quick preset: one device vs mirrored."""
    from bench.mirrored import benchmark_mirrored

    return benchmark_mirrored(_config("tiny" if quick else "quick"), steps=2 if quick else 10)


def case_reference(size: str, python: str, reference: str, script: str, quick: bool,
                   **_) -> Result:
    """The authors' PyTorch model at a paper size, by the reference script, 2 threads."""
    iters = "1" if quick else "3"
    completed = subprocess.run(
        [python, script, "--threads", "2", "--only", size, "--train-iters", iters,
         "--fwd-iters", iters], env={**os.environ, "NCSN_REF": reference},
        capture_output=True, text=True, check=False)
    if completed.returncode:
        raise RuntimeError(_last_line(completed.stderr))
    raw = json.loads(completed.stdout)
    return {"torch": raw["torch"], "threads": raw["threads"], **raw[REFERENCE_SIZES[size]]}


CASES: dict[str, Callable[..., Result]] = {
    "peak": case_peak, "train": case_train, "forward": case_forward, "sampler": case_sampler,
    "serving": case_serving, "mirrored": case_mirrored, "reference": case_reference}


# Case lists ---------------------------------------------------------------------------------

def plan(quick: bool, export: str, reference: dict[str, str] | None) -> list[Result]:
    """All cases of a run, in order: {"id", "kind", params...}; ids are kind/size/..."""
    paper = ["tiny"] if quick else ["mnist", "cifar10"]
    train_sizes = ["tiny"] if quick else ["quick", "mnist", "cifar10"]
    specs: list[Result] = [{"id": "peak", "kind": "peak"}]
    for size in train_sizes:
        variants = ([("float32", False)] if size in ("tiny", "quick") else
                    [(p, x) for p in ("float32", "mixed_bfloat16") for x in (False, True)])
        specs += [{"id": f"train/{size}/{p}/xla-{'on' if x else 'off'}", "kind": "train",
                   "size": size, "precision": p, "xla": x} for p, x in variants]
    specs += [{"id": f"forward/{size}", "kind": "forward", "size": size} for size in paper]
    specs.append({"id": f"sampler/{'tiny' if quick else 'quick'}", "kind": "sampler",
                  "size": "tiny" if quick else "quick"})
    specs.append({"id": "serving", "kind": "serving", "export": export})
    if not quick:  # two models traced one after the other: minutes even at tiny sizes
        specs.append({"id": "mirrored", "kind": "mirrored"})
    if reference:
        specs += [{"id": f"reference/{size}", "kind": "reference", "size": size, **reference}
                  for size in REFERENCE_SIZES]
    return specs


def select(specs: list[Result], patterns: Sequence[str] | None) -> list[Result]:
    """Cases whose id or kind matches one of `patterns` (globs such as train/mnist/*)."""
    if not patterns:
        return specs
    for pattern in patterns:
        if not any(_matches(spec, pattern) for spec in specs):
            raise ConfigError(f"--cases: {pattern!r} matches no case; cases are "
                              f"{', '.join(spec['id'] for spec in specs)}")
    return [spec for spec in specs if any(_matches(spec, p) for p in patterns)]


def _matches(spec: Result, pattern: str) -> bool:
    return spec["kind"] == pattern or fnmatch.fnmatchcase(spec["id"], pattern)


# Running cases ------------------------------------------------------------------------------

def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _child_env() -> dict[str, str]:
    """The environment of a case's process: quiet TensorFlow, and the repository on the path
    so that `-m bench.benchmark` resolves wherever the parent was started."""
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3"),
            "PYTHONPATH": REPO + (os.pathsep + path if path else "")}


def run_in_subprocess(spec: Result, quick: bool, timeout: float) -> Result:
    """Runs one case in a fresh Python; adds its wall time and peak RSS (os.wait4)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.benchmark", json.dumps({**spec, "quick": quick})],
            stdout=out, stderr=err, env=_child_env())
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        _, status, usage = os.wait4(process.pid, 0)
        timer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith(RESULT_PREFIX)]
        result: Result = {"id": spec["id"], "kind": spec["kind"],
                          **{k: v for k, v in spec.items() if k in ("size", "precision", "xla")},
                          "wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024}
        if lines:
            result["result"] = json.loads(lines[-1][len(RESULT_PREFIX):])
        elif process.returncode < 0 or wall >= timeout:
            result["error"] = f"killed after {wall:.0f} s (--timeout {timeout:.0f})"
        else:
            result["error"] = _last_line(err.read())
        return result


def child_main(raw: str) -> int:
    """Entry point of a case's process: runs it and prints its result as one JSON line."""
    spec = json.loads(raw)
    result = CASES[spec["kind"]](**spec)
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


# Report -------------------------------------------------------------------------------------

def _get(results: dict[str, Result], case: str, *keys: str) -> float | None:
    value: Any = results.get(case, {}).get("result")
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratios(results: dict[str, Result]) -> Result:
    """The issue's "Done when" comparisons from one run (None where a case is missing)."""
    out: Result = {}
    for size in REFERENCE_SIZES:
        train = f"train/{size}/float32/xla-off"
        reference = f"reference/{size}"
        out[f"train_{size}_vs_reference"] = _ratio(
            _get(results, train, "items_per_s"), _get(results, reference, "train_img_per_s"))
        out[f"train_{size}_rss_vs_reference"] = _ratio(
            results.get(train, {}).get("peak_rss_mib"),
            results.get(reference, {}).get("peak_rss_mib"))
        out[f"forward_{size}_vs_reference"] = _ratio(
            _get(results, f"forward/{size}", "tf_function", "items_per_s"),
            _get(results, reference, "forward_img_per_s"))
        out[f"train_{size}_flop_utilisation"] = _get(results, train, "utilisation")
        out[f"forward_{size}_flop_utilisation"] = _get(results, f"forward/{size}",
                                                       "utilisation")
    sampler = next((k for k in results if k.startswith("sampler/")), "")
    loop = _get(results, sampler, "compiled_while_loop", "median_s")
    steps = _get(results, sampler, "steps")
    out["sampler_compiled_vs_python_loop"] = _ratio(
        _get(results, sampler, "python_loop_compiled_score", "median_s"), loop)
    out["sampler_compiled_vs_eager_loop"] = _ratio(
        _get(results, sampler, "python_loop_eager", "s_per_1000_steps"),
        _get(results, sampler, "compiled_while_loop", "s_per_1000_steps"))
    forward = _get(results, sampler, "forward_per_call", "median_s")
    out["sampler_loop_vs_forward_x_steps"] = _ratio(loop, forward * steps if forward else None)
    out["onnx_score_vs_tf_function"] = _ratio(
        _get(results, "serving", "score_tf_function", "median_s"),
        _get(results, "serving", "score_onnx", "median_s"))
    out["saved_model_sample_vs_in_process"] = _ratio(
        _get(results, "serving", "sample_saved_model", "median_s"),
        _get(results, "serving", "sample_in_process", "median_s"))
    out["mirrored_speedup"] = _get(results, "mirrored", "speedup")
    return out


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _rows(case: Result) -> list[tuple[str, str, str]]:
    """(measure, value, notes) rows of one case for the Markdown table."""
    if "error" in case:
        return [("error", case["error"], "")]
    r, kind = case["result"], case["kind"]
    if kind == "peak":
        return [("float32 matmul GFLOP/s", _fmt(r["gflops"]), f"{r['n']}x{r['n']}, best call")]
    if kind == "train":
        return [("train images/s", _fmt(r["items_per_s"]),
                 f"batch {r['batch']}, ngf {r['ngf']}, {r['calls']} steps "
                 f"{_fmt(r['min_s'])}-{_fmt(r['max_s'])} s, first step {_fmt(r['first_step_s'])} s"),
                ("train GFLOP/s", _fmt(r["gflops"]),
                 f"3 x forward FLOPs (profiler); {_fmt(r['utilisation'])} of the matmul "
                 f"peak {_fmt(r['peak_gflops'])} measured beside it"),
                ("peak RSS MiB", _fmt(case["peak_rss_mib"]), "whole process")]
    if kind == "forward":
        return [(f"forward images/s, {name}", _fmt(r[name]["items_per_s"]),
                 f"batch {r['batch']}, ngf {r['ngf']}, {_fmt(r[name]['gflops'])} GFLOP/s")
                for name in ("keras_call", "tf_function")] + [
                ("forward utilisation", _fmt(r["utilisation"]),
                 f"of the matmul peak {_fmt(r['peak_gflops'])} GFLOP/s measured beside it")]
    if kind == "sampler":
        return [(f"{name}: s per 1000 steps", _fmt(r[name]["s_per_1000_steps"]),
                 f"{r['images']} images, {_fmt(r[name]['images_per_s'])} images/s")
                for name in ("compiled_while_loop", "python_loop_compiled_score",
                             "python_loop_eager")] + [
                ("forward per call s", _fmt(r["forward_per_call"]["median_s"]),
                 f"x {r['steps']} steps = "
                 f"{_fmt(r['forward_per_call']['median_s'] * r['steps'])} s")]
    if kind == "serving":
        return [(f"{name} s per call", _fmt(r[name]["median_s"]),
                 (f"batch {r['score_batch']}" if name.startswith("score") else
                  f"{r['sample_images']} images, {r['sample_steps']} steps")
                 + f", first call {_fmt(r[name]['first_call_s'])} s")
                for name in r if isinstance(r[name], dict)]
    if kind == "reference":
        return [("train images/s", _fmt(r["train_img_per_s"]), f"torch {r['torch']}"),
                ("forward images/s", _fmt(r["forward_img_per_s"]), "batch 100"),
                ("peak RSS MiB", _fmt(case["peak_rss_mib"]), "whole process")]
    return [(key, _fmt(value), "") for key, value in r.items() if not isinstance(value, dict)]


def markdown(report: Result) -> str:
    """The report as Markdown: one table of all cases, then the ratios."""
    lines = [f"# Benchmark {report['date']} on {report['host']}", "",
             f"`{report['command']}`", "",
             ", ".join(f"{k} {v}" for k, v in report["machine"].items()), "",
             "| case | measure | value | notes |", "|---|---|---:|---|"]
    for case in report["cases"]:
        lines += [f"| {case['id']} | {m} | {v} | {n} |" for m, v, n in _rows(case)]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in report["ratios"].items()]
    return "\n".join(lines) + "\n"


def machine() -> Result:
    """What the numbers depend on: CPU, cores, library versions."""
    from importlib.metadata import PackageNotFoundError, version

    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    versions = {}
    for package in ("tensorflow", "keras", "onnxruntime", "tf2onnx"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            **versions, "load_avg_at_start": round(os.getloadavg()[0], 2)}


def run(*, quick: bool, patterns: Sequence[str] | None, out_dir: str, export: str | None,
        reference: dict[str, str] | None, timeout: float, command: str,
        overwrite: bool = False, log: Callable[[str], None] = print) -> tuple[Result, str]:
    """Runs the selected cases one process each; writes and returns (report, JSON path).

    `export` (default `DEFAULT_EXPORT`) is checked when the serving case runs, and an error
    when given for a run without it; a report of the same day and host in `out_dir` is
    replaced only when `overwrite`. Both fail before any case runs.
    """
    specs = select(plan(quick, os.path.abspath(export or DEFAULT_EXPORT), reference), patterns)
    if any(spec["kind"] == "serving" for spec in specs):
        from keras_ncsn.onnx_runtime import check_export

        check_export(export or DEFAULT_EXPORT)
    elif export is not None:
        raise ConfigError("--export is the serving case's model, but --cases leaves serving out")
    stamp = time.strftime("%Y-%m-%d")
    report: Result = {"date": stamp, "host": socket.gethostname(), "command": command,
                      "quick": quick, "machine": machine(), "cases": []}
    path = os.path.join(out_dir, f"{stamp}-{report['host']}.json")
    check_output_files([path, path[:-len(".json")] + ".md"], overwrite=overwrite)
    for spec in specs:
        log(f"{spec['id']} ...")
        case = run_in_subprocess(spec, quick, timeout)
        report["cases"].append(case)
        log(f"{spec['id']}: {'error: ' + case['error'] if 'error' in case else 'done'} "
            f"in {case['wall_s']:.0f} s, peak RSS {case['peak_rss_mib']:.0f} MiB")
        # After every case: a run stopped halfway keeps what it measured.
        report["ratios"] = ratios({case["id"]: case for case in report["cases"]})
        atomic_write_text(path, json.dumps(report, indent=1) + "\n")
        atomic_write_text(path[:-len(".json")] + ".md", markdown(report))
    return report, path


def check_reference(reference: str, python: str, script: str) -> dict[str, str]:
    """The reference settings, checked so that a typo fails now and not after an hour."""
    if not all(os.path.isdir(os.path.join(reference, d)) for d in ("models", "losses")):
        raise ConfigError(f"--reference {reference}: no models/ and losses/ folders there (it should be a "
                          f"work tree of the authors' ermongroup/ncsn repository; from a bare "
                          f"mirror: git --git-dir=MIRROR archive HEAD models losses | tar -x)")
    if not os.path.isfile(script):
        raise ConfigError(f"--reference-script {script} does not exist")
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise ConfigError(f"--python {python} is not an executable file (the interpreter "
                          f"of a virtualenv with torch)")
    return {"reference": os.path.abspath(reference), "python": python,
            "script": os.path.abspath(script)}


if __name__ == "__main__":
    sys.exit(child_main(sys.argv[1]))
