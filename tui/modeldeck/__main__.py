"""``python -m modeldeck``: the same command line as the ``modeldeck`` console script."""

import sys

from modeldeck.tui.cli import main

sys.exit(main())
