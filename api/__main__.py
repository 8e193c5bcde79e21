"""python -m netc ..."""

import sys

from netc.runtime.cli import command

sys.exit(command())
