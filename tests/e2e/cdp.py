"""A small headless-Chromium driver over the Chrome DevTools Protocol: a subprocess and a websocket.

Pure Python (``websockets``, already installed with Airflow), no Selenium or Playwright. Enough for the
browser tests: one isolated browser context per user (own cookies), navigate, evaluate JavaScript (also
inside same-origin iframes), type with real input events, take screenshots.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM = os.environ.get("MODELCERT_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio", "--remote-debugging-port=0"]


class CDPError(RuntimeError):
    pass


def chromium_missing_reason() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not Path(CHROMIUM).exists():
        return (f"{CHROMIUM} not found: install it with `apt-get install -y chromium` "
                "(scripts/test.sh does this when run as root with apt-get)")
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return "the websockets package is not installed"
    return None


class Browser:
    """One headless Chromium process; ``context()`` gives an isolated page (fresh cookie jar)."""

    #: DevTools events that report an error on a page (console.error, an uncaught exception, a failed load).
    ERROR_EVENTS = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown", "Log.entryAdded")

    def __init__(self, *, width: int = 1440, height: int = 1000, log: Path | None = None) -> None:
        from websockets.sync.client import connect

        self.width, self.height = width, height
        self.user_data = Path(tempfile.mkdtemp(prefix="modelcert-chromium-"))
        self._log = open(log or self.user_data / "chromium.log", "ab")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.user_data}",
                                      f"--window-size={width},{height}", "about:blank"],
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        port_file = self.user_data / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise CDPError(f"chromium did not start (exit {self.proc.returncode}); see {self._log.name}")
            time.sleep(0.1)
        port, path = port_file.read_text().splitlines()[:2]
        self.ws = connect(f"ws://127.0.0.1:{port}{path}", max_size=None, open_timeout=20)
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        msg_id = next(self._ids)
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CDPError(f"{method}: no answer within {timeout:.0f}s")
            reply = json.loads(self.ws.recv(timeout=remaining))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return dict(reply.get("result", {}))
            if "id" not in reply and reply.get("method") in self.ERROR_EVENTS:
                self.events.append(reply)  # kept for console_errors(); other events are not needed

    def context(self) -> Page:
        ctx = self.send("Target.createBrowserContext", {"disposeOnDetach": True})["browserContextId"]
        target = self.send("Target.createTarget", {"url": "about:blank", "browserContextId": ctx})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, ctx, target)
        page.send("Page.enable")
        page.send("Runtime.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
            self._log.close()
            shutil.rmtree(self.user_data, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    def __init__(self, browser: Browser, session: str, context_id: str, target_id: str) -> None:
        self.browser, self.session, self.context_id, self.target_id = browser, session, context_id, target_id

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                             "awaitPromise": await_promise})
        if "exceptionDetails" in res:
            details = res["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError(f"JavaScript error: {text}\n  in: {expression[:300]}")
        return res.get("result", {}).get("value")

    def wait_for(self, expression: str, *, timeout: float = 30.0, interval: float = 0.25, what: str = "") -> Any:
        """Poll a JavaScript expression until it is truthy; exceptions count as not yet."""
        deadline = time.monotonic() + timeout
        last: Any = None
        # A DOM node (of any frame) cannot be returned by value: report it as "found".
        wrapped = f"(() => {{ const v = ({expression}); return (v && typeof v === 'object' && 'nodeType' in v) ? true : v; }})()"
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(wrapped)
                if last:
                    return last
            except CDPError as exc:
                last = str(exc)
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what or expression!r} (last: {last!r}; "
                           f"page {self.url()})")

    def navigate(self, url: str, *, timeout: float = 30.0) -> None:
        res = self.send("Page.navigate", {"url": url})
        if res.get("errorText"):
            raise CDPError(f"navigate {url}: {res['errorText']}")
        time.sleep(0.2)
        self.wait_for("document.readyState === 'complete'", timeout=timeout, what=f"{url} to load")

    def url(self) -> str:
        try:
            return str(self.evaluate("location.href"))
        except CDPError:
            return "?"

    def type(self, element_js: str, text: str) -> None:
        """Focus the element (a JS expression yielding it) and type ``text`` with real input events."""
        self.evaluate(f"(function(){{ const el = {element_js}; el.focus(); if (el.select) el.select(); }})()")
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: str | Path) -> Path:
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})["data"]
        out = Path(path)
        out.write_bytes(base64.b64decode(data))
        return out

    def console_errors(self) -> list[str]:
        """Errors this page reported so far (enable ``Log`` first for load errors): console.error calls, uncaught
        exceptions and error-level log entries, as text."""
        out = []
        for e in self.browser.events:
            if e.get("sessionId") != self.session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                out.append(str(p.get("exceptionDetails", {}).get("text")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(str(p["entry"].get("text")))
        return out

    def close(self) -> None:
        try:
            self.browser.send("Target.closeTarget", {"targetId": self.target_id})
            self.browser.send("Target.disposeBrowserContext", {"browserContextId": self.context_id})
        except CDPError:
            pass
