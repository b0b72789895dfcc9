"""Evaluate a trained run or an export: FID, KID, Inception score, nearest neighbours, DSM loss.

The command lives in keras_ncsn.commands.evaluate (installed as `ncsn-evaluate`); see --help.
"""

import sys

from keras_ncsn.commands.evaluate import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.evaluate import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
