"""python -m netc ..."""

import sys

from netc.runtime.cli import main

sys.exit(main())
