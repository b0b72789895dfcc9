"""Train the small 28x28 classifier whose features give classifier-FID and Inception score.

The command lives in keras_ncsn.commands.train_classifier (installed as `ncsn-train-classifier`); see --help.
"""

import sys

from keras_ncsn.commands.train_classifier import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.train_classifier import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
