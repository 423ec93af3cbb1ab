"""``python -m bitcompose.cli`` (e.g. under ``torchrun -m bitcompose.cli train ...``) runs the command line."""

import sys

from bitcompose.cli import main

sys.exit(main())
