"""``python -m modeldeck.core.demo --write-config FILE [--registry FILE] ...``: the demo fleet, headless."""

from __future__ import annotations

import sys

from modeldeck.core.demo.fleet import cli

if __name__ == "__main__":
    sys.exit(cli())
