"""scripts/bench.py: a --quick run writes its JSON and Markdown; bad options fail in one line.

No timing assertions: the numbers depend on the machine and its load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO, load_script

bench = load_script("bench")


def test_quick_run_writes_json_and_markdown(tmp_path):
    # Two cheap kinds keep the test short; each case is its own process either way.
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--quick",
         "--cases", "peak,forward", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    [json_path] = tmp_path.glob("*.json")
    assert json_path.with_suffix(".md").is_file()
    report = json.loads(json_path.read_text())
    assert {"date", "host", "command", "quick", "machine", "cases", "ratios"} <= set(report)
    cases = {case["id"]: case for case in report["cases"]}
    assert set(cases) == {"peak", "forward/tiny"}
    for case in cases.values():
        assert {"kind", "wall_s", "peak_rss_mib", "result"} <= set(case)
    assert cases["peak"]["result"]["gflops"] > 0
    forward = cases["forward/tiny"]["result"]
    assert {"keras_call", "tf_function", "flops_per_call"} <= set(forward)
    assert "forward_mnist_vs_reference" in report["ratios"]
    assert "| forward/tiny |" in json_path.with_suffix(".md").read_text()


@pytest.mark.slow
def test_the_whole_quick_run_is_a_smoke_test(tmp_path):
    """`bench.py --quick` (every kind of case at tiny sizes) is the issue's CI smoke run."""
    completed = subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "bench.py"), "--quick",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert completed.returncode == 0, completed.stderr
    [json_path] = tmp_path.glob("*.json")
    report = json.loads(json_path.read_text())
    assert {case["kind"] for case in report["cases"]} == {
        "peak", "train", "forward", "sampler", "serving"}
    assert not [case for case in report["cases"] if "error" in case]
    # The timed loops must compute the same thing: the compiled while_loop and the Python
    # loop over the same noise agree to float rounding (1.4e-6 here, 1.1e-5 in full runs).
    [sampler] = [case["result"] for case in report["cases"] if case["kind"] == "sampler"]
    assert sampler["max_abs_diff_python_vs_compiled"] < 1e-4
    ratios = report["ratios"]
    for name in ("sampler_compiled_vs_python_loop", "sampler_loop_vs_forward_x_steps",
                 "onnx_score_vs_tf_function"):
        assert ratios[name] > 0, name


@pytest.mark.parametrize("argv, message", [
    (["--cases", "nope"], "matches no case"),
    (["--reference", "/nonexistent"], "no models/ and losses/"),
    (["--timeout", "0"], "--timeout must be positive"),
    (["--export", "/nonexistent", "--cases", "serving"], "does not exist"),
])
def test_bad_options_fail_in_one_line(argv, message, tmp_path, capsys):
    from keras_ncsn.cli import run_main

    assert run_main(bench.main, [*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not list(tmp_path.iterdir())
