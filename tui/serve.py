"""``modeldeck serve``: the same TUI in a browser, for those without SSH (textual-serve).

Every browser tab gets its own ``modeldeck`` process (textual-serve runs the command with its
web driver); the command is this interpreter running ``-m modeldeck --config FILE`` with
``--read-only`` unless ``--allow-writes``. ``--demo`` starts one demo fleet for every tab. The
page is textual-serve's own, less its web-font link: nothing is fetched from the internet."""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import tempfile
from pathlib import Path

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def session_argv(config: str | Path, *, registry: str | Path | None = None, allow_writes: bool = False) -> list[str]:
    from modeldeck.core import paths

    argv = [*paths.python_argv(), "-m", "modeldeck", "--config", str(config)]
    if registry is not None:
        argv += ["--registry", str(registry)]
    if not allow_writes:
        argv.append("--read-only")
    return argv


def offline_templates() -> Path:
    """A folder with textual-serve's page minus its Google Fonts stylesheet (the fonts it
    needs are in its own static folder)."""
    import textual_serve

    page = (Path(textual_serve.__file__).parent / "templates" / "app_index.html").read_text(encoding="utf-8")
    page = re.sub(r"<link\s+rel=\"stylesheet\"\s+href=\"https://fonts\.googleapis\.com[^>]*>", "", page)
    folder = Path(tempfile.mkdtemp(prefix="modeldeck-serve-"))
    (folder / "app_index.html").write_text(page, encoding="utf-8")
    return folder


def serve(command: list[str], host: str, port: int, *, public_url: str | None = None) -> None:
    """Serve until SIGINT or SIGTERM."""
    from textual_serve.server import Server

    templates = offline_templates()
    try:
        shown = f"[{host}]" if ":" in host else host
        server = Server(shlex.join(command), host=host, port=port, title="modeldeck",
                        public_url=public_url or f"http://{shown}:{port}", templates_path=templates)
        server.serve()
    finally:
        shutil.rmtree(templates, ignore_errors=True)
