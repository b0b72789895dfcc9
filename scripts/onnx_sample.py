"""Sample images from an export folder with ONNX Runtime and NumPy only (no TensorFlow).

The command lives in keras_ncsn.commands.onnx_sample (installed as `ncsn-onnx-sample`); see --help.
"""

import sys

from keras_ncsn.commands.onnx_sample import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.onnx_sample import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
