"""The paper's toy experiments (Fig. 1-3): each sub-command writes a PNG figure and JSON numbers.

The command lives in keras_ncsn.commands.toy (installed as `ncsn-toy`); see --help.
"""

import sys

from keras_ncsn.commands.toy import *  # noqa: F401,F403  (main, parse_args, ... for tests)
from keras_ncsn.commands.toy import cli, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
