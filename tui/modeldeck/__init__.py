"""The ``modeldeck`` distribution's top package. Its code lives in two folders that install
under it (``pyproject.toml``'s ``package-dir``): ``core/`` as :mod:`modeldeck.core` (headless,
never imports Textual) and ``tui/`` as :mod:`modeldeck.tui` (the Textual app and the command
line). This folder holds only this file and ``__main__`` (``python -m modeldeck``)."""
