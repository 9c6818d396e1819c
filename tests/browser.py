"""A real headless Chromium driven over the DevTools protocol (aiohttp's websocket client, already installed):
open a page, collect console errors and uncaught exceptions, evaluate script, take a full-page screenshot.

Chromium is Debian's (`/usr/bin/chromium`, installed by `.ci/run`); tests that need it skip when it is absent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the flags this machine needs (no network: background services would fail at every start)
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-crash-reporter",
    "--disable-breakpad",
    "--remote-debugging-port=0",
)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: bytes = b""


async def _visit(ws_url: str, url: str, script: str, width: int) -> PageResult:
    import aiohttp

    result = PageResult()
    ids = itertools.count(1)
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        pending: dict[int, asyncio.Future] = {}
        loaded = asyncio.get_running_loop().create_future()
        navigated = False  # the main frame is at ``url`` (a load event before that is about:blank's)

        async def reader() -> None:
            nonlocal navigated
            async for msg in ws:
                data = json.loads(msg.data)
                if "id" in data and data["id"] in pending:
                    pending.pop(data["id"]).set_result(data)
                    continue
                method, params = data.get("method"), data.get("params", {})
                if method == "Page.frameNavigated" and "parentId" not in params["frame"]:
                    navigated = params["frame"]["url"] == url
                elif method == "Page.loadEventFired" and navigated and not loaded.done():
                    loaded.set_result(True)
                elif method == "Runtime.exceptionThrown":
                    result.errors.append(json.dumps(params["exceptionDetails"])[:500])
                elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                    result.errors.append(json.dumps(params.get("args"))[:500])
                elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                    result.errors.append(params["entry"].get("text", "")[:500])

        async def call(method: str, **params: Any) -> dict[str, Any]:
            i = next(ids)
            pending[i] = asyncio.get_running_loop().create_future()
            await ws.send_str(json.dumps({"id": i, "method": method, "params": params}))
            answer = await asyncio.wait_for(pending[i], 60)
            if "error" in answer:
                raise RuntimeError(f"{method}: {answer['error']}")
            return answer.get("result", {})

        task = asyncio.create_task(reader())
        for domain in ("Page", "Runtime", "Log"):
            await call(f"{domain}.enable")
        await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
        await call("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 60)
        value = await call("Runtime.evaluate", expression=script, returnByValue=True, awaitPromise=True)
        result.value = value.get("result", {}).get("value")
        shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
        result.screenshot = base64.b64decode(shot["data"])
        task.cancel()
    return result


def visit(url: str, script: str = "true", width: int = 1280) -> PageResult:
    """Open ``url`` in a fresh headless Chromium; return the console errors, ``script``'s value after the load
    event, and a full-page PNG screenshot."""
    exe = chromium()
    if exe is None:
        raise RuntimeError("no Chromium on this machine")
    # The browser's helper processes (renderer, GPU, utility) write to the profile too: they are killed with it,
    # as one process group, before the profile is removed. A helper Chromium re-parented out of the group could
    # still be writing for a moment; the profile is a temporary directory either way.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # the browser says where it listens once it does
                if line.startswith("DevTools listening on "):
                    browser_ws = line.split(" on ", 1)[1].strip()
                    break
            else:
                raise RuntimeError(f"Chromium exited ({proc.wait()}) before listening")
            # keep reading what it logs, so that a full pipe never blocks the browser
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            port = browser_ws.split(":")[2].split("/")[0]
            import urllib.request

            # a page of our own, created by the browser's DevTools endpoint and returned with its address
            request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
            with urllib.request.urlopen(request, timeout=30) as r:
                page = json.load(r)
            return asyncio.run(_visit(page["webSocketDebuggerUrl"], url, script, width))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def file_url(path: Path) -> str:
    return path.resolve().as_uri()
