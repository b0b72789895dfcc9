"""Inpaint occluded images with a trained run (App. B.3 of the paper; EMA weights if kept).

The command lives in keras_ncsn.commands.inpaint (installed as `ncsn-inpaint`); see --help.
"""

import sys

from keras_ncsn.commands.inpaint import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.inpaint import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
