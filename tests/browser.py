"""A tiny headless-Chromium driver for the report tests: the Chrome DevTools Protocol over
``--remote-debugging-pipe`` (JSON messages ended by NUL on file descriptors 3 and 4), standard
library only.

    with Chromium.launch() as browser:
        page = browser.new_page(width=1200, height=900)
        page.goto(Path("report.html").as_uri())
        page.click("svg .bin[data-bin='9']")
        page.screenshot("shot.png")
        assert not page.errors

The browser is Debian's ``chromium`` (``/usr/bin/chromium``); :func:`find_chromium` installs it
with apt-get when it is missing and the machine allows (root, ``RECAL_NO_APT`` unset).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["Chromium", "Page", "find_chromium"]

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe"]


def find_chromium() -> tuple[str | None, str]:
    """(path to chromium, "") or (None, why it is not there)."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found, ""
    if os.environ.get("RECAL_NO_APT"):
        return None, "chromium is not installed and RECAL_NO_APT forbids installing it"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return None, "chromium is not installed and apt-get cannot run here (not root, or no apt)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            return None, f"`{' '.join(cmd)}` failed: {done.stderr.strip()[-300:]}"
    found = shutil.which("chromium")
    return (found, "") if found else (None, "apt-get installed chromium but it is not on PATH")


class Chromium:
    """A headless Chromium process driven over its DevTools pipe."""

    def __init__(self, proc: subprocess.Popen[bytes], write_fd: int, read_fd: int,
                 profile: tempfile.TemporaryDirectory[str]) -> None:
        self.proc, self._w, self._r, self._profile = proc, write_fd, read_fd, profile
        self._next = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    @classmethod
    def launch(cls, executable: str | None = None) -> Chromium:
        executable = executable or find_chromium()[0]
        if executable is None:
            raise RuntimeError(find_chromium()[1])
        profile = tempfile.TemporaryDirectory(prefix="recal-chromium-")
        to_child, from_parent = os.pipe()  # the browser reads commands on its fd 3
        from_child, to_parent = os.pipe()  # and writes replies on its fd 4
        # Move both child ends above 4 first, so that placing them on 3 and 4 clobbers neither.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_child, to_parent)]

        def place() -> None:
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        proc = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=place, pass_fds=(3, 4))
        for fd in (to_child, to_parent, *high):
            os.close(fd)
        return cls(proc, from_parent, from_child, profile)

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already gone: nothing to close
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._profile.cleanup()

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._r, 1 << 16)
            if not chunk:
                raise RuntimeError(f"chromium closed its pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def send(self, method: str, params: dict[str, Any] | None = None, *,
             session: str | None = None, timeout: float = 60) -> dict[str, Any]:
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._w, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, session["sessionId"])
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    """One tab: navigate, evaluate JavaScript, click, drag, take screenshots, read errors."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser, self.session = browser, session

    def send(self, method: str, params: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, **kw)

    @property
    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads seen so far on this page."""
        out = []
        for event in self.browser.events:
            if event.get("sessionId") != self.session:
                continue
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(str(details.get("exception", {}).get("description")
                               or details.get("text")))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                out.append(" ".join(str(a.get("value", a.get("description")))
                                    for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.append(params["entry"].get("text", ""))
        return out

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    def goto(self, url: str, *, ready: str = "document.body && document.body.dataset.ready",
             timeout: float = 30) -> None:
        """Load ``url`` and wait until ``ready`` is truthy (the report sets body[data-ready])."""
        self.send("Page.navigate", {"url": url})
        self.wait_for(ready, timeout=timeout)

    def wait_for(self, expression: str, *, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            time.sleep(0.05)
        raise TimeoutError(f"{expression!r} never became true")

    def center(self, selector: str) -> tuple[float, float]:
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        " e.scrollIntoView({block: 'center'});"
                        " const r = e.getBoundingClientRect();"
                        " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        return box[0], box[1]

    def _mouse(self, kind: str, x: float, y: float, buttons: int = 1) -> None:
        self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left",
                                               "buttons": buttons, "clickCount": 1})

    def click(self, selector: str) -> None:
        """A real mouse click (press and release) at the centre of ``selector``'s element."""
        x, y = self.center(selector)
        self._mouse("mouseMoved", x, y, 0)
        self._mouse("mousePressed", x, y)
        self._mouse("mouseReleased", x, y, 0)

    def drag(self, start: tuple[float, float], end: tuple[float, float], steps: int = 8) -> None:
        self._mouse("mouseMoved", *start, 0)
        self._mouse("mousePressed", *start)
        for k in range(1, steps + 1):
            t = k / steps
            self._mouse("mouseMoved", start[0] + (end[0] - start[0]) * t,
                        start[1] + (end[1] - start[1]) * t)
        self._mouse("mouseReleased", *end, 0)

    def screenshot(self, path: str | Path, *, full_page: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.eval("[document.documentElement.scrollWidth,"
                             " document.documentElement.scrollHeight]")
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        path = Path(path)
        path.write_bytes(base64.b64decode(data))
        return path
