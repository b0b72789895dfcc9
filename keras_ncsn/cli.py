"""Shared command-line plumbing: quiet TensorFlow start-up and one-line user errors."""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from typing import Callable, Sequence

# A line of TensorFlow's C++ logging (absl format): severity letter, date, time.
_ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")
_ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called"
_NO_GPU_ERROR = "failed call to cuInit"


def quiet_tensorflow() -> None:
    """Sets TensorFlow's C++ log level to errors only, unless the user chose one (set it
    before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def _startup_lines_to_keep(text: str, gpu_found: bool) -> list[str]:
    """What TensorFlow wrote to stderr while starting, less what the errors-only level
    means to hide: its info and warning lines (printed before the level takes effect, so
    TF_CPP_MIN_LOG_LEVEL does not stop them) and, with no GPU found, the CUDA driver error
    that only says so (the device line says it in words)."""
    kept = []
    for line in text.splitlines():
        if line.startswith(_ABSL_PREAMBLE):
            continue
        if _ABSL_LINE.match(line) and (line[0] in "IW"
                                       or (not gpu_found and _NO_GPU_ERROR in line)):
            continue
        kept.append(line)
    return kept


def describe_devices(gpus: Sequence, details: Callable[[object], dict]) -> str:
    """One line naming the device computations run on: the GPUs with their names, or CPU."""
    if not gpus:
        return "device: CPU (no GPU found)"
    names = [details(gpu).get("device_name") or gpu.name for gpu in gpus]
    return f"device: {len(gpus)} GPU{'s' if len(gpus) > 1 else ''} ({', '.join(names)})"


def start_tensorflow(announce: bool = True) -> None:
    """Imports TensorFlow quietly and prints one line naming the device in use.

    Called by each command after its arguments are parsed, so `--help` never imports
    TensorFlow. Unless the user set TF_CPP_MIN_LOG_LEVEL, TensorFlow's start-up chatter on
    stderr (written while it loads and looks for GPUs) is captured and only what the
    errors-only level keeps is written back; Python's own messages pass through.
    """
    user_level = "TF_CPP_MIN_LOG_LEVEL" in os.environ
    quiet_tensorflow()
    if user_level or "tensorflow" in sys.modules:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    else:
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile("w+b") as captured:
            os.dup2(captured.fileno(), 2)
            gpus = None
            try:
                import tensorflow as tf

                gpus = tf.config.list_physical_devices("GPU")
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                text = captured.read().decode("utf-8", "replace")
                # On a failure everything comes back: it may explain the failure.
                lines = (text.splitlines() if gpus is None
                         else _startup_lines_to_keep(text, bool(gpus)))
                if lines:
                    print("\n".join(lines), file=sys.stderr, flush=True)
    if announce:
        print(describe_devices(gpus, tf.config.experimental.get_device_details), flush=True)


def add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    """--strategy and --tpu, shared by the scripts that train or sample across devices."""
    parser.add_argument("--strategy", default="auto",
                        help="tf.distribute strategy: auto (default), one_device, mirrored, "
                             "multi_worker (needs TF_CONFIG) or tpu")
    parser.add_argument("--tpu", metavar="ADDRESS",
                        help="TPU address (grpc://host:port) or Cloud TPU name; implies tpu")


PLOTS_HINT = 'pip install "keras-ncsn[plots]" (or: pip install "matplotlib>=3.7")'


def require_matplotlib(what: str) -> None:
    """Fails in one line, before any work, when the optional matplotlib is missing."""
    from keras_ncsn.errors import ConfigError

    try:
        import matplotlib  # noqa: F401
    except ImportError as e:
        raise ConfigError(f"{what} need matplotlib, which is not installed: {PLOTS_HINT}") from e


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Runs a script's `main`, turning user errors into `error: ...` on stderr and exit code 2."""
    from keras_ncsn.errors import NCSNError

    try:
        return main(argv)
    except NCSNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; run the same command to resume",
              file=sys.stderr)
        return 130


def entry_point(main: Callable[[Sequence[str] | None], int]) -> Callable[[], int]:
    """A console entry point (pyproject's [project.scripts]) for a command's `main`: the
    command line from sys.argv, user errors as one line (`run_main`)."""
    def cli() -> int:
        return run_main(main)

    cli.__doc__ = f"Console entry point for {main.__module__}.main."
    return cli
