"""Export a trained run for serving: TensorFlow SavedModel, score.onnx, sampler.onnx, model card.

The command lives in keras_ncsn.commands.export (installed as `ncsn-export`); see --help.
"""

import sys

from keras_ncsn.commands.export import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.export import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
