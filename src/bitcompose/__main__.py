"""``python -m bitcompose`` runs the command line."""

import sys

from bitcompose.cli import main

sys.exit(main())
