"""Headless Chromium (Debian's) in a test host, driven over its DevTools pipe: a real browser
for the pages people look at.

Chromium reads DevTools commands from fd 3 and writes answers and events to fd 4, each a JSON
message ending in NUL (--remote-debugging-pipe); the shell maps those to its stdin and stdout,
which are this process's pipes through nsenter. No websocket client, nothing on the network.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from typing import Any

CHROMIUM = ("exec chromium --headless --no-sandbox --disable-gpu --no-first-run --window-size=1280,860 "
            "--user-data-dir=/var/tmp/chromium-profile --remote-debugging-pipe about:blank "
            "3<&0 4>&1 </dev/null >/var/tmp/chromium.log 2>&1")


class Browser:
    """One page of a headless Chromium run by `user` in the host."""

    def __init__(self, host: Any, user: str, timeout: float = 60) -> None:
        self.timeout = timeout
        self.process = subprocess.Popen(
            ["nsenter", "-t", str(host.leader()), "-a", "runuser", "-u", user, "--", "env", "-i",
             f"HOME=/home/{user}", "PATH=/usr/bin:/bin", "sh", "-c", CHROMIUM],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._next_id = 0
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self._call("Page.enable", session=True)

    def _call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        self.process.stdin.write(json.dumps(message).encode() + b"\0")
        self.process.stdin.flush()
        while True:  # events come in between; the answer carries our id
            answer = json.loads(self._read_message())
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                return answer["result"]

    def _read_message(self) -> bytes:
        data = bytearray()
        while (byte := self.process.stdout.read(1)) != b"\0":
            if not byte:
                raise AssertionError("chromium ended (see /var/tmp/chromium.log in the host)")
            data += byte
        return bytes(data)

    def open(self, url: str) -> None:
        self._call("Page.navigate", session=True, url=url)

    def evaluate(self, expression: str) -> Any:
        result = self._call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                            awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression: str, what: str) -> Any:
        """The expression's value once it is truthy (e.g. an element of the page is there)."""
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                value = self.evaluate(expression)
            except AssertionError:  # the page was being replaced
                value = None
            if value:
                return value
            assert time.monotonic() < deadline, f"{what} did not appear: {self.text()[:2000]!r}"
            time.sleep(0.5)

    def type_into(self, selector: str, text: str) -> None:
        """Typed as a person would (the page's scripts see input events)."""
        self.evaluate(f"document.querySelector({json.dumps(selector)}).focus()")
        self._call("Input.insertText", session=True, text=text)

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("Page.captureScreenshot", session=True, format="png")["data"])

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except (AssertionError, OSError):
            pass  # it ended already
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()
