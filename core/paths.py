"""Where modeldeck keeps things: XDG base directories, resolved at call time (cron-safe)."""

from __future__ import annotations

import os
from pathlib import Path

APP = "modeldeck"


def _home() -> Path:
    home = os.environ.get("HOME")
    if home:
        return Path(home)
    try:
        return Path.home()
    except RuntimeError:  # no HOME and no passwd entry: fall back to the working directory
        return Path.cwd()


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var, "")
    # The XDG spec says relative paths are invalid and must be ignored.
    if value and os.path.isabs(value):
        return Path(value) / APP
    return _home() / default / APP


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config")


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share")


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state")


def cache_dir() -> Path:
    return _xdg("XDG_CACHE_HOME", ".cache")


def default_config_file() -> Path:
    return config_dir() / "config.toml"


def default_registry_file() -> Path:
    return data_dir() / "registry.db"


def log_file() -> Path:
    return state_dir() / "modeldeck.log"


def ensure_parent(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def display(path: str | os.PathLike[str] | None) -> str:
    """A path as a person reads it: relative when under the working folder, ``~`` for home."""
    if path is None:
        return "-"
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        pass
    try:
        return "~/" + str(p.relative_to(_home()))
    except ValueError:
        return str(p)


def python_argv() -> list[str]:
    """The start of an argv that runs one of modeldeck's own modules in a new process:
    this interpreter, with ``-P`` (Python 3.11+) so the new process's working folder (a
    config folder, which may hold packages of its own) is never put on ``sys.path``. Append
    ``"-m", "modeldeck…"``; modeldeck is found where it is installed, never by PYTHONPATH."""
    import sys

    return [sys.executable, "-P"] if sys.version_info >= (3, 11) else [sys.executable]


def slug(*names: str, width: int = 32) -> str:
    """A file-name-safe, bounded stand-in for names (a model, an environment) in log file
    names: each cut to ``width`` ASCII letters, digits, ``-_.`` (others become ``_``), plus a
    hash of the whole names, so two long names that share a start never share a file. At
    most about 80 characters whatever the names hold (file names stop at 255 bytes)."""
    import hashlib

    parts = ["".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in n)[:width].strip(".")
             or "_" for n in names]
    digest = hashlib.sha256("\x1f".join(names).encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return "-".join(parts) + "-" + digest
