"""Headless Chromium driven over the DevTools protocol, for the browser view's test (and the
README's screenshot): load a page, wait for text the Textual app sent over its websocket, take
a screenshot. textual-serve draws on a canvas, so the text is read from the websocket frames
the page received (a small wrapper around WebSocket installed before the page's scripts)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]

RECORD_WEBSOCKET = """
(() => {
  window.__received = "";
  const Real = window.WebSocket;
  const decode = (buf) => { window.__received += new TextDecoder().decode(new Uint8Array(buf)); };
  window.WebSocket = function (url, protocols) {
    const ws = protocols === undefined ? new Real(url) : new Real(url, protocols);
    ws.addEventListener("message", (ev) => {
      const d = ev.data;
      if (typeof d === "string") window.__received += d;
      else if (d instanceof ArrayBuffer) decode(d);
      else if (d instanceof Blob) d.arrayBuffer().then(decode);
    });
    return ws;
  };
  window.WebSocket.prototype = Real.prototype;
  Object.assign(window.WebSocket, {CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3});
})();
"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


async def load(url: str, wanted: list[str], *, timeout: float = 60.0, size: tuple[int, int] = (1280, 800),
               settle: float = 1.0, screenshot: Path | None = None) -> str:
    """The text received once every ``wanted`` string is in it (or at ``timeout``)."""
    import aiohttp

    binary = chromium()
    assert binary is not None
    profile = Path(tempfile.mkdtemp(prefix="modeldeck-chromium-"))
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                             f"--window-size={size[0]},{size[1]}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as http:
            pages = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
            page = next(p for p in pages if p["type"] == "page")
            async with http.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                counter = 0

                async def call(method: str, **params: object) -> dict:
                    nonlocal counter
                    counter += 1
                    mine = counter
                    await ws.send_json({"id": mine, "method": method, "params": params})
                    while True:
                        msg = await asyncio.wait_for(ws.receive_json(), 30)
                        if msg.get("id") == mine:
                            return msg.get("result", {})

                await call("Page.enable")
                await call("Page.addScriptToEvaluateOnNewDocument", source=RECORD_WEBSOCKET)
                await call("Page.navigate", url=url)
                text = ""
                end = time.monotonic() + timeout
                while time.monotonic() < end:
                    r = await call("Runtime.evaluate", expression="window.__received || ''", returnByValue=True)
                    text = str(r.get("result", {}).get("value", ""))
                    if all(w in text for w in wanted):
                        break
                    await asyncio.sleep(0.5)
                if screenshot is not None:
                    await asyncio.sleep(settle)
                    shot = await call("Page.captureScreenshot", format="png")
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                return text
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":  # the README's screenshot: python -m tests.browser URL OUT.png [SECONDS]
    import sys

    wait = float(sys.argv[3]) if len(sys.argv) > 3 else 1.0
    asyncio.run(load(sys.argv[1], ["ENDPOINT"], size=(1100, 600), settle=wait, screenshot=Path(sys.argv[2])))
