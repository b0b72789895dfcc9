"""Train an NCSN by denoising score matching: `python scripts/fit.py` runs the quick preset.

The command lives in keras_ncsn.commands.fit (installed as `ncsn-fit`); see --help.
"""

import sys

from keras_ncsn.commands.fit import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.fit import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
