#!/usr/bin/python3
"""A headless Chromium, driven step by step, for twirt's browser tests.

Run it with Debian's interpreter, /usr/bin/python3 (python3-websockets
10.4): it speaks the DevTools protocol itself, over websockets and asyncio
(no chromedriver, no puppeteer, no npm).

    /usr/bin/python3 t/peers/browser.py [--chromium /usr/bin/chromium]

It starts Debian's chromium headless with a throw-away profile and a host
resolver that finds no name but localhost (so only loopback, or a literal
IP address, can be reached), opens one page, then reads one JSON command a
line on stdin and answers each with one JSON line on stdout:

    {"ok": true, "value": ...}   or   {"ok": false, "error": "..."}

The first line it writes, before any command, says whether the browser
came up: {"ok": true, "value": {"ready": true, "user_data_dir": ...,
"chromium_pid": ..., "product": ...}}.

    {"cmd": "goto", "url": U}             navigate, wait for the load event
    {"cmd": "eval", "js": EXPR}           value of EXPR (promises awaited)
    {"cmd": "wait", "js": EXPR, "timeout": S}
                                          poll EXPR every 50 ms until truthy:
                                          value, "elapsed"; ok false on timeout
    {"cmd": "click", "selector": S}       a real mouse click at its center
    {"cmd": "type", "selector": S, "text": T[, "clear": true]}
    {"cmd": "files", "selector": S, "paths": [...]}
    {"cmd": "screenshot", "path": P}      the viewport, PNG
    {"cmd": "requests"[, "detail": true]} URLs the page requested
    {"cmd": "console"}                    [{level, text, source}]
    {"cmd": "dialogs"}                    [{type, message, url}], accepted
    {"cmd": "offline", "value": BOOL}     emulate a lost network
    {"cmd": "drop_sse"}                   break open EventSource connections
                                          (they reconnect, with Last-Event-ID)
    {"cmd": "close"}                      quit the browser and exit

Every command takes an optional "timeout" (seconds).  The browser goes away
with this process: on "close", stdin EOF, SIGTERM or SIGINT, and (through
PR_SET_PDEATHSIG) even when this process is killed.

drop_sse: Network.emulateNetworkConditions (offline) fails new requests but
does not end a response that is already streaming (Chromium 156): an open
EventSource goes on receiving.  So drop_sse shuts down, from outside, the
browser's own TCP sockets to the EventSource's server (found in the network
service's /proc fd table, taken with pidfd_getfd(2)): the EventSource sees
its connection end, as after a network failure, and reconnects by itself
with Last-Event-ID.  Combined with "offline", the reconnections fail (the
EventSource stays CONNECTING) until "offline" is turned off.
"""

import argparse
import asyncio
import base64
import collections
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

import websockets

CHROMIUM = "/usr/bin/chromium"
START_TIMEOUT = 30.0      # the "DevTools listening" line
CALL_TIMEOUT = 10.0       # any one DevTools call
COMMAND_TIMEOUT = 10.0    # goto, wait, drop_sse, ... unless told
POLL = 0.05               # wait's polling period
PR_SET_PDEATHSIG = 1


class CmdError(Exception):
    """A command failed: its message is the reply's "error"."""


class BrowserGone(CmdError):
    """The browser (or its connection) is gone."""


def chromium_args(binary, profile, window):
    return [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", f"--window-size={window}",
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost , "
            "EXCLUDE 127.0.0.1 , EXCLUDE ::1",
            "about:blank"]


def die_with_parent():
    """In the chromium child: SIGKILL it when its parent (us) dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass


def profile_pids(profile):
    """Processes whose command line names the profile directory."""
    pids = []
    needle = profile.encode()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/cmdline", "rb") as f:
                if needle in f.read():
                    pids.append(int(d))
        except OSError:
            pass
    return pids


SYS_PIDFD_OPEN = 434            # the same on every Linux architecture
SYS_PIDFD_GETFD = 438


def shut_down_sockets(pid, ports):
    """Shuts down (both ways) every established TCP connection of process
    pid to a remote port in ports; returns how many.  The socket is taken
    with pidfd_getfd(2) (Linux 5.6, ptrace rights over pid: ours, a child
    of a child of ours)."""
    inodes = {}
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes[link[8:-1]] = int(fd)
    except OSError as e:
        raise CmdError(f"drop_sse: cannot list the sockets of {pid}: {e}")
    fds = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            # remote address, state 01 = ESTABLISHED, inode
            if int(f[2].rsplit(":", 1)[1], 16) in ports and f[3] == "01" \
                    and f[9] in inodes:
                fds.append(inodes[f[9]])
    if not fds:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    pidfd = libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        raise CmdError("drop_sse: pidfd_open: "
                       + os.strerror(ctypes.get_errno()))
    n = 0
    try:
        for fd in fds:
            mine = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if mine < 0:
                raise CmdError(
                    "drop_sse: pidfd_getfd: " + os.strerror(ctypes.get_errno())
                    + " (needs ptrace rights over chromium's network service;"
                    " a container may need CAP_SYS_PTRACE)")
            s = socket.socket(fileno=mine)
            try:
                s.shutdown(socket.SHUT_RDWR)
                n += 1
            except OSError:
                pass
            finally:
                s.close()
    finally:
        os.close(pidfd)
    return n


def js_truthy(result):
    """JavaScript's truthiness of a Runtime.RemoteObject."""
    t = result.get("type")
    if t == "undefined":
        return False
    if t == "object":
        return result.get("subtype") != "null"
    if "unserializableValue" in result:     # NaN, -0, Infinity, 1n ...
        return result["unserializableValue"] not in ("NaN", "-0", "0n")
    v = result.get("value")
    if t == "boolean":
        return bool(v)
    if t == "number":
        return v != 0
    if t == "string":
        return v != ""
    return True                             # function, symbol, bigint


def remote_value(result):
    if "value" in result:
        return result["value"]
    if "unserializableValue" in result:
        return result["unserializableValue"]
    if result.get("type") in ("undefined",) or result.get("subtype") == "null":
        return None
    return result.get("description")


def exception_text(details):
    exc = details.get("exception") or {}
    text = exc.get("description") or remote_value(exc) or details.get("text")
    return str(text or "JavaScript exception")


class CDP:
    """One websocket to the browser, flattened sessions multiplexed on it."""

    def __init__(self, ws, on_event, gone_reason):
        self.ws = ws
        self.on_event = on_event
        self.gone_reason = gone_reason      # () -> why the browser is gone
        self.next_id = 0
        self.pending = {}
        self.closed = None
        self.reader = asyncio.get_running_loop().create_task(self.read())

    async def read(self):
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if "id" in msg:
                    fut = self.pending.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif "method" in msg:
                    try:
                        self.on_event(msg["method"], msg.get("params", {}),
                                      msg.get("sessionId"))
                    except Exception as e:      # a bug here must not kill us
                        print(f"browser.py: event {msg['method']}: {e!r}",
                              file=sys.stderr, flush=True)
            reason = "the DevTools connection was closed"
        except websockets.ConnectionClosed as e:
            reason = f"the DevTools connection was lost ({e})"
        except Exception as e:
            reason = f"the DevTools connection failed ({e!r})"
        self.closed = reason
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(BrowserGone(self.gone_reason(reason)))
        self.pending.clear()

    async def call(self, method, params=None, session=None,
                   timeout=CALL_TIMEOUT):
        if self.closed:
            raise BrowserGone(self.gone_reason(self.closed))
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self.pending[mid] = fut
        try:
            await asyncio.wait_for(self.ws.send(json.dumps(msg)), timeout)
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise CmdError(f"{method}: no reply from the browser in "
                           f"{timeout:g} s") from None
        except websockets.ConnectionClosed:
            raise BrowserGone(self.gone_reason(
                "the DevTools connection was lost")) from None
        finally:
            self.pending.pop(mid, None)
        if "error" in reply:
            err = reply["error"]
            text = f"{method}: {err.get('message')}"
            if err.get("data"):
                text += f" ({err['data']})"
            raise CmdError(text)
        return reply.get("result", {})


class Browser:
    def __init__(self, opts):
        self.opts = opts
        self.profile = None
        self.proc = None
        self.cdp = None
        self.session = None
        self.target_id = None
        self.stderr_tail = collections.deque(maxlen=30)
        self.listening = None
        self.load_waiters = []
        self.crashed = None
        self.requests = []                  # in order
        self.by_id = {}                     # requestId -> latest entry
        self.console = []
        self.dialogs = []
        self.product = None
        self.tasks = set()

    # -- start and stop ---------------------------------------------------

    async def start(self):
        self.profile = tempfile.mkdtemp(prefix="twirt-chromium-")
        loop = asyncio.get_running_loop()
        self.listening = loop.create_future()
        args = chromium_args(self.opts.chromium, self.profile,
                             self.opts.window_size)
        self.proc = await asyncio.create_subprocess_exec(
            *args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=die_with_parent)
        self.spawn(self.read_stderr())
        try:
            url = await asyncio.wait_for(asyncio.shield(self.listening),
                                         START_TIMEOUT)
        except asyncio.TimeoutError:
            raise CmdError(f"chromium did not print 'DevTools listening' in "
                           f"{START_TIMEOUT:g} s: {self.tail()}") from None
        ws = await asyncio.wait_for(
            websockets.connect(url, max_size=None, ping_interval=None,
                               open_timeout=CALL_TIMEOUT),
            CALL_TIMEOUT)
        self.cdp = CDP(ws, self.on_event, self.gone_reason)
        version = await self.cdp.call("Browser.getVersion")
        self.product = version.get("product")
        target = await self.cdp.call("Target.createTarget",
                                     {"url": "about:blank"})
        self.target_id = target["targetId"]
        attached = await self.cdp.call("Target.attachToTarget",
                                       {"targetId": self.target_id,
                                        "flatten": True})
        self.session = attached["sessionId"]
        for domain in ("Page", "Runtime", "Network", "Log"):
            await self.page_call(f"{domain}.enable")
        return {"ready": True, "user_data_dir": self.profile,
                "chromium_pid": self.proc.pid, "product": self.product,
                "devtools": url}

    async def read_stderr(self):
        while True:
            line = await self.proc.stderr.readline()
            if not line:
                break
            text = line.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(text)
            m = re.search(r"DevTools listening on (ws://\S+)", text)
            if m and not self.listening.done():
                self.listening.set_result(m.group(1))
        code = await self.proc.wait()
        if not self.listening.done():
            self.listening.set_exception(CmdError(
                f"chromium exited ({code}) before DevTools listened: "
                f"{self.tail()}"))

    def tail(self):
        lines = [l for l in self.stderr_tail if l.strip()]
        return " | ".join(lines[-8:]) or "(no output)"

    def gone_reason(self, why):
        rc = self.proc.returncode if self.proc else None
        if rc is not None:
            return f"the browser is gone: chromium exited ({rc}), {why}"
        return f"the browser is gone: {why}"

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self):
        """Quits chromium, by asking, then by signals; removes the profile.
        Idempotent; leaves no process naming the profile behind."""
        if self.proc is not None and self.proc.returncode is None:
            if self.cdp is not None and not self.cdp.closed:
                try:
                    await self.cdp.call("Browser.close", timeout=3)
                except CmdError:
                    pass
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except asyncio.TimeoutError:
                pass
        if self.cdp is not None:
            try:
                await asyncio.wait_for(self.cdp.ws.close(), 2)
            except Exception:
                pass
        self.kill_all()
        # the browser's children (zygotes, renderers) follow it out
        deadline = time.monotonic() + 5
        while self.profile and profile_pids(self.profile) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        self.kill_all(signal.SIGKILL)
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), 2)
            except asyncio.TimeoutError:
                pass
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)

    def kill_all(self, sig=signal.SIGTERM):
        """Signals chromium's process group and anything naming the
        profile."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        if self.profile:
            for pid in profile_pids(self.profile):
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass

    # -- events -------------------------------------------------------------

    def on_event(self, method, p, session):
        if method == "Target.detachedFromTarget" \
                and p.get("sessionId") == self.session:
            self.crashed = self.crashed or "the page was closed"
            self.fail_load_waiters()
            return
        if method == "Target.targetCrashed" \
                and p.get("targetId") == self.target_id:
            self.crashed = f"the page crashed ({p.get('status')})"
            self.fail_load_waiters()
            return
        if session != self.session:
            return
        if method == "Page.loadEventFired":
            waiters, self.load_waiters = self.load_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(True)
        elif method == "Inspector.targetCrashed":
            self.crashed = "the page crashed"
            self.fail_load_waiters()
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append({"type": p.get("type"),
                                 "message": p.get("message"),
                                 "url": p.get("url")})
            self.spawn(self.answer_dialog(p))
        elif method == "Network.requestWillBeSent":
            req = p.get("request", {})
            entry = {"url": req.get("url"), "method": req.get("method"),
                     "type": p.get("type"), "status": None, "error": None,
                     "done": False}
            prev = self.by_id.get(p["requestId"])
            if prev is not None and p.get("redirectResponse"):
                prev["status"] = p["redirectResponse"].get("status")
                prev["done"] = True
            self.by_id[p["requestId"]] = entry
            self.requests.append(entry)
        elif method == "Network.responseReceived":
            entry = self.by_id.get(p["requestId"])
            if entry is not None:
                entry["status"] = p.get("response", {}).get("status")
        elif method == "Network.loadingFinished":
            entry = self.by_id.get(p["requestId"])
            if entry is not None:
                entry["done"] = True
        elif method == "Network.loadingFailed":
            entry = self.by_id.get(p["requestId"])
            if entry is not None:
                entry["done"] = True
                entry["error"] = p.get("errorText") or "failed"
                if p.get("blockedReason"):
                    entry["error"] += f" ({p['blockedReason']})"
        elif method == "Runtime.consoleAPICalled":
            parts = []
            for arg in p.get("args", []):
                v = remote_value(arg)
                parts.append(v if isinstance(v, str) else json.dumps(v))
            self.console.append({"level": p.get("type"),
                                 "text": " ".join(parts),
                                 "source": "console"})
        elif method == "Runtime.exceptionThrown":
            self.console.append({
                "level": "error", "source": "exception",
                "text": exception_text(p.get("exceptionDetails", {}))})
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            self.console.append({"level": e.get("level"),
                                 "text": e.get("text"),
                                 "source": e.get("source"),
                                 "url": e.get("url")})

    async def answer_dialog(self, p):
        params = {"accept": True}
        if p.get("type") == "prompt":
            params["promptText"] = p.get("defaultPrompt") or ""
        try:
            await self.page_call("Page.handleJavaScriptDialog", params)
        except CmdError as e:
            print(f"browser.py: dialog: {e}", file=sys.stderr, flush=True)

    def fail_load_waiters(self):
        waiters, self.load_waiters = self.load_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(CmdError(self.crashed))

    # -- helpers ------------------------------------------------------------

    async def page_call(self, method, params=None, timeout=CALL_TIMEOUT):
        if self.crashed:
            raise BrowserGone(self.crashed)
        return await self.cdp.call(method, params, self.session, timeout)

    async def evaluate(self, js, timeout=CALL_TIMEOUT):
        """(RemoteObject, exception text or None)."""
        r = await self.page_call("Runtime.evaluate", {
            "expression": js, "returnByValue": True, "awaitPromise": True,
            "userGesture": True, "timeout": int(timeout * 1000)},
            timeout=timeout + 1)
        if "exceptionDetails" in r:
            return r.get("result", {}), exception_text(r["exceptionDetails"])
        return r.get("result", {}), None

    async def element_center(self, selector, timeout):
        js = """(() => {
  const el = document.querySelector(%s);
  if (!el) return {error: 'no element matches ' + %s};
  el.scrollIntoView({block: 'center', inline: 'center'});
  const r = el.getBoundingClientRect();
  if (r.width === 0 || r.height === 0)
    return {error: %s + ' is not visible (zero size)'};
  const x = r.left + r.width / 2, y = r.top + r.height / 2;
  const hit = document.elementFromPoint(x, y);
  if (hit !== el && !el.contains(hit))
    return {error: %s + ' is covered by ' + (hit ? hit.outerHTML.slice(0, 80)
                                                  : 'nothing')};
  return {x, y};
})()""" % ((json.dumps(selector),) * 4)
        result, exc = await self.evaluate(js, timeout)
        if exc:
            raise CmdError(exc)
        pos = result.get("value") or {}
        if "error" in pos:
            raise CmdError(pos["error"])
        return pos

    # -- commands -------------------------------------------------------------

    async def cmd_goto(self, c, timeout):
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self.load_waiters.append(fut)
        r = await self.page_call("Page.navigate", {"url": c["url"]})
        if r.get("errorText"):
            self.load_waiters.remove(fut)
            raise CmdError(f"{c['url']}: {r['errorText']}")
        if r.get("loaderId"):                 # not a same-document move
            try:
                await asyncio.wait_for(fut, timeout)
            except asyncio.TimeoutError:
                raise CmdError(f"{c['url']}: no load event in "
                               f"{timeout:g} s") from None
        else:
            self.load_waiters.remove(fut)
        result, _ = await self.evaluate("location.href")
        return {"url": result.get("value")}

    async def cmd_eval(self, c, timeout):
        result, exc = await self.evaluate(c["js"], timeout)
        if exc:
            raise CmdError(exc)
        return remote_value(result)

    async def cmd_wait(self, c, timeout):
        start = time.monotonic()
        deadline = start + timeout
        last, last_error = None, None
        while True:
            left = max(deadline - time.monotonic(), 0.05)
            result, exc = await self.evaluate(c["js"], min(left, CALL_TIMEOUT))
            elapsed = round(time.monotonic() - start, 3)
            if exc:
                last_error = exc
            else:
                last = remote_value(result)
                if js_truthy(result):
                    return {"ok": True, "value": last, "elapsed": elapsed}
            if time.monotonic() >= deadline:
                err = f"timeout after {timeout:g} s waiting for {c['js']}"
                if last_error and exc:
                    err += f" (last: {last_error})"
                return {"ok": False, "error": err, "value": last,
                        "elapsed": elapsed}
            await asyncio.sleep(min(POLL, max(deadline - time.monotonic(),
                                              0)))

    async def cmd_click(self, c, timeout):
        pos = await self.element_center(c["selector"], timeout)
        x, y = pos["x"], pos["y"]
        base = {"x": x, "y": y, "button": "left", "clickCount": 1}
        await self.page_call("Input.dispatchMouseEvent",
                             {"type": "mouseMoved", "x": x, "y": y})
        await self.page_call("Input.dispatchMouseEvent",
                             dict(base, type="mousePressed", buttons=1))
        await self.page_call("Input.dispatchMouseEvent",
                             dict(base, type="mouseReleased", buttons=0))
        return {"x": x, "y": y}

    async def cmd_type(self, c, timeout):
        sel = json.dumps(c["selector"])
        clear = "true" if c.get("clear") else "false"
        js = f"""(() => {{
  const el = document.querySelector({sel});
  if (!el) return 'no element matches ' + {sel};
  el.scrollIntoView({{block: 'center'}});
  el.focus();
  if (document.activeElement !== el && !el.contains(document.activeElement))
    return {sel} + ' cannot take the focus';
  try {{
    if ({clear}) el.select();
    else el.setSelectionRange(el.value.length, el.value.length);
  }} catch (e) {{}}
  return '';
}})()"""
        result, exc = await self.evaluate(js, timeout)
        if exc or result.get("value"):
            raise CmdError(exc or result.get("value"))
        await self.page_call("Input.insertText", {"text": c["text"]})
        return None

    async def cmd_files(self, c, timeout):
        paths = [os.path.abspath(p) for p in c["paths"]]
        for p in paths:
            if not os.path.isfile(p):
                raise CmdError(f"no such file: {p}")
        doc = await self.page_call("DOM.getDocument", {"depth": 0})
        found = await self.page_call("DOM.querySelector", {
            "nodeId": doc["root"]["nodeId"], "selector": c["selector"]})
        if not found.get("nodeId"):
            raise CmdError(f"no element matches {c['selector']}")
        # DOM.setFileInputFiles fires input and change itself, as the file
        # chooser would: no second 'change' is dispatched here
        await self.page_call("DOM.setFileInputFiles",
                             {"files": paths, "nodeId": found["nodeId"]})
        return {"files": paths}

    async def cmd_screenshot(self, c, timeout):
        r = await self.page_call("Page.captureScreenshot",
                                 {"format": "png"}, timeout=timeout)
        data = base64.b64decode(r["data"])
        with open(c["path"], "wb") as f:
            f.write(data)
        return {"path": c["path"], "bytes": len(data)}

    async def cmd_requests(self, c, timeout):
        if c.get("detail"):
            return [dict(r) for r in self.requests]
        return [r["url"] for r in self.requests]

    async def cmd_console(self, c, timeout):
        return list(self.console)

    async def cmd_dialogs(self, c, timeout):
        return list(self.dialogs)

    async def set_offline(self, offline):
        await self.page_call("Network.emulateNetworkConditions", {
            "offline": bool(offline), "latency": 0,
            "downloadThroughput": -1, "uploadThroughput": -1})

    async def cmd_offline(self, c, timeout):
        await self.set_offline(c["value"])
        return bool(c["value"])

    async def network_service_pid(self):
        info = await self.cdp.call("SystemInfo.getProcessInfo")
        for proc in info.get("processInfo", []):
            if proc.get("type") == "network.mojom.NetworkService":
                return proc["id"]
        return self.proc.pid                # the network service in-process

    async def cmd_drop_sse(self, c, timeout):
        """Breaks the open EventSource connections as a network failure
        would: every TCP connection of the browser to their servers is shut
        down (the browser's own socket, taken with pidfd_getfd).  Network
        emulation (offline) does not end a response already streaming."""
        open_ = [r for r in self.requests
                 if r["type"] == "EventSource" and not r["done"]]
        if not open_:
            raise CmdError("no open EventSource connection")
        start = time.monotonic()
        ports = set()
        for r in open_:
            u = urllib.parse.urlsplit(r["url"])
            ports.add(u.port or (443 if u.scheme == "https" else 80))
        pid = await self.network_service_pid()
        n = shut_down_sockets(pid, ports)
        if n == 0:
            raise CmdError("drop_sse: the browser has no connection to port "
                           + ", ".join(map(str, sorted(ports))))
        deadline = start + timeout
        while not all(r["done"] for r in open_):
            if time.monotonic() > deadline:
                raise CmdError(
                    f"EventSource connection(s) still open {timeout:g} s "
                    "after their sockets were shut down: "
                    + ", ".join(r["url"] for r in open_ if not r["done"]))
            await asyncio.sleep(0.02)
        return {"dropped": [r["url"] for r in open_], "sockets": n,
                "elapsed": round(time.monotonic() - start, 3)}

    async def handle(self, c):
        name = c.get("cmd")
        fn = getattr(self, f"cmd_{name}", None) if isinstance(name, str) \
            else None
        if fn is None:
            raise CmdError(f"unknown command: {name!r}")
        timeout = float(c.get("timeout") or COMMAND_TIMEOUT)
        if self.proc.returncode is not None:
            raise BrowserGone(self.gone_reason("chromium is not running"))
        try:
            # the command's own deadline, and a backstop a little later
            return await asyncio.wait_for(fn(c, timeout), timeout + 5)
        except asyncio.TimeoutError:
            raise CmdError(f"{name}: no answer in {timeout + 5:g} s") \
                from None
        except KeyError as e:
            raise CmdError(f"{name}: missing {e}") from None


def reply(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def serve(opts):
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, me.cancel)
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    b = Browser(opts)
    try:
        try:
            info = await b.start()
        except (CmdError, OSError, asyncio.TimeoutError,
                websockets.WebSocketException) as e:
            reply({"ok": False, "error": f"browser did not start: {e}"})
            return 1
        reply({"ok": True, "value": info})
        while True:
            line = await reader.readline()
            if not line:
                return 0                      # EOF: clean up and go
            line = line.strip()
            if not line:
                continue
            try:
                c = json.loads(line)
                if not isinstance(c, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                reply({"ok": False, "error": f"bad command line: {e}"})
                continue
            if c.get("cmd") == "close":
                await b.stop()
                reply({"ok": True, "value": True})
                return 0
            try:
                value = await b.handle(c)
            except CmdError as e:
                reply({"ok": False, "error": str(e)})
                continue
            if c.get("cmd") == "wait":
                reply(value)
            else:
                reply({"ok": True, "value": value})
    except asyncio.CancelledError:
        return 143
    finally:
        try:
            await asyncio.shield(b.stop())
        except BaseException:
            b.kill_all(signal.SIGKILL)
            if b.profile:
                shutil.rmtree(b.profile, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Headless Chromium driven by JSON lines on stdin")
    p.add_argument("--chromium", default=CHROMIUM)
    p.add_argument("--window-size", default="1280,900")
    opts = p.parse_args(argv)
    if not os.access(opts.chromium, os.X_OK):
        reply({"ok": False, "error": f"{opts.chromium} is not installed "
                                     "(make deps)"})
        return 1
    return asyncio.run(serve(opts))


if __name__ == "__main__":
    sys.exit(main())
