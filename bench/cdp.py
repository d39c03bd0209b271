"""A headless chromium driven over the Chrome DevTools Protocol: open a page, wait until it shows what
it should, click a tab, take a whole-page screenshot.

Why not `chromium --screenshot`: the Prefect UI is a single-page app. A plain screenshot cannot wait
for a condition, cannot click a tab (the flow run's Artifacts tab ignores `?tab=`: it is hidden
until the run has loaded, and the app then falls back to Logs), and cuts long pages at the window.
Only `websockets` (a Prefect dependency) is needed: no playwright, no node.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect


class PageError(RuntimeError):
    pass


class Browser:
    """One chromium process with one page; use as a context manager."""

    def __init__(self, executable: str, width: int = 1600, height: int = 1200) -> None:
        self.width, self.height = width, height
        self.profile = tempfile.mkdtemp(prefix="ui-chromium-")
        self.proc = subprocess.Popen(
            [
                executable, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--enable-unsafe-swiftshader",  # WebGL on the CPU: the flow-run graph is drawn with WebGL
                "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
                f"--window-size={width},{height}", "about:blank",
            ],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        port = self._devtools_port()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
        self.next_id = 0

    def _devtools_port(self) -> int:
        deadline = time.monotonic() + 30
        assert self.proc.stderr is not None
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if found := re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line):
                return int(found.group(1))
            if not line and self.proc.poll() is not None:
                break
        raise PageError("chromium did not start its DevTools endpoint")

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.profile, ignore_errors=True)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; events that arrive meanwhile are skipped."""
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise PageError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result.get("result", {}).get("value")

    def open(self, url: str, ready: str, timeout_s: float = 60, settle_s: float = 1.0) -> None:
        """Go to `url` and wait until the JavaScript expression `ready` is true, then `settle_s` more
        (animations, late images)."""
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)  # fmt: skip
        self.call("Page.navigate", url=url)
        self.wait(ready, timeout_s, f"{url} never showed what it should ({ready})")
        time.sleep(settle_s)

    def wait(self, ready: str, timeout_s: float, message: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.evaluate(f"Boolean({ready})"):
            if time.monotonic() > deadline:
                raise PageError(message)
            time.sleep(0.25)

    def click_text(self, text: str) -> None:
        """Click the last button-like element whose own text is `text` (the last: the page's content
        comes after the sidebar)."""
        found = self.evaluate(
            "(() => { const hits = [...document.querySelectorAll('button, [role=tab], a, li')]"
            f".filter(e => e.textContent.trim() === {json.dumps(text)});"
            " if (!hits.length) return false; hits[hits.length - 1].click(); return true; })()"
        )
        if not found:
            raise PageError(f"nothing to click labelled {text!r}")

    def screenshot(self, out: Path, full_page: bool = False) -> None:
        """A PNG of the window, or of the whole page (the window grown to the content's height)."""
        if full_page:
            height = self.evaluate(
                "Math.max(document.documentElement.scrollHeight, document.body.scrollHeight,"
                " ...[...document.querySelectorAll('*')].map(e => e.scrollHeight > e.clientHeight"
                " && getComputedStyle(e).overflowY !== 'visible' ? e.scrollHeight : 0))"
            )
            height = max(self.height, min(int(height or 0), 6000))
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height,
                      deviceScaleFactor=1, mobile=False)  # fmt: skip
            time.sleep(0.5)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
