"""Sample images from a trained run by annealed Langevin dynamics, or by the VE ancestral

The command lives in keras_ncsn.commands.sample (installed as `ncsn-sample`); see --help.
"""

import sys

from keras_ncsn.commands.sample import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.sample import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
