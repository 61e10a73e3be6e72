#!/usr/bin/python3
"""Self-test of the twirt test peers, without nginx. Prints TAP.

    /usr/bin/python3 t/peers/selftest.py        (or: prove t/peers.t)

Every later test trusts realtime_sim.py and twilio_sim.py, so they are
tested here against each other and against hand-made clients. The Twilio
peer can only talk to the Realtime simulator through a bridge, so this
file holds a deliberately tiny Python bridge that follows
the README's "How a call goes" (media -> append, delta -> media + mark, speech_started
-> clear + truncate with floor(min(played, received)), end_call -> hang up
after the goodbye has played). It is a reference for the checks, not a
second implementation of twirt.
"""

import asyncio
import base64
import hmac
import http
import json
import math
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.legacy.server import WebSocketServerProtocol

import peer_audio
import peer_scenario
import realtime_session
import tool_backend
import twilio_sim

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
SIM = os.path.join(HERE, "realtime_sim.py")
TWILIO = os.path.join(HERE, "twilio_sim.py")
BACKEND = os.path.join(HERE, "tool_backend.py")
TOOL_SECRET = "selftest-tool-secret"
AUTH_TOKEN = "selftest-auth-token"
SIGN_URL = "wss://public.example/twilio/media"
API_KEY = "sk-selftest"

# Scenarios only the self-test needs.
SHORT = {
    "name": "short",
    "greeting": {"transcript": "$CALLTAG番の通話です。", "audio_ms": 800},
    "turns": [{"caller": {"at_ms": 1500, "speech_ms": 600,
                          "text": "テスト$CALLTAG"},
               "agent": {"transcript": "$CALLTAG番、了解しました。",
                         "audio_ms": 1000}}],
    "end": {"after_ms": 4500},
}
WAV = {
    "name": "wav",
    "turns": [{"caller": {"at_ms": 500, "speech_ms": 3000,
                          "text": "予約を変更したいのですが"},
               "agent": {"transcript": "はい。", "audio_ms": 500}}],
    "end": {"after_ms": 5500},
}
FUNCTION = {
    "name": "function",
    "speed": 20,
    "turns": [{"caller": {"at_ms": 0, "speech_ms": 500, "text": "調べて"},
               "agent": {"transcript": "お調べします。", "audio_ms": 300,
                         "function_call": {"name": "lookup",
                                           "arguments": {"q": "予約"}},
                         "after_function": {"transcript": "結果です。",
                                            "audio_ms": 300}}}],
    "end": {"after_ms": 3000},
}
BOOK_ARGS = {"name": "山田太郎", "date": "2026-12-03", "time": "15:00",
             "note": "「窓側」\"席\"\\希望\n"}
TOOLS = {
    "name": "tools",
    "speed": 20,
    "turns": [{"caller": {"at_ms": 0, "speech_ms": 500, "text": "予約"},
               "agent": {"transcript": "お調べします。", "audio_ms": 200,
                         "function_calls": [
                             {"name": "book_appointment",
                              "arguments": BOOK_ARGS},
                             {"name": "lookup_booking",
                              "arguments": {"id": 1}}],
                         "after_tools": {
                             "transcript": "確認:{output:book_appointment}",
                             "audio_ms": 200}}}],
    "on_text": {"transcript": "番号を承りました。", "audio_ms": 200},
    "end": {"after_ms": 3000},
}


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        print(f"{'ok' if cond else 'not ok'} {self.n} - {name}", flush=True)
        if not cond:
            # on stderr, as Test::More's diagnostics: prove shows them
            self.failed += 1
            print(f"#   Failed test {self.n} - {name}", file=sys.stderr,
                  flush=True)
            for line in str(diag if diag is not None else "").splitlines():
                print(f"#   {line}", file=sys.stderr, flush=True)
        return cond

    def is_(self, got, want, name):
        return self.ok(got == want, name, f"got:  {got!r}\nwant: {want!r}")

    def skip(self, name, why):
        self.n += 1
        print(f"ok {self.n} - {name} # SKIP {why}", flush=True)

    def note(self, text):
        print(f"# {text}", flush=True)


def read_jsonl(path):
    try:
        with open(path, encoding="utf-8") as f:
            # A line still being written (no newline yet) is left for the
            # next read: peers write while tests read.
            return [json.loads(line) for line in f
                    if line.strip() and line.endswith("\n")]
    except FileNotFoundError:
        return []


# -- processes --------------------------------------------------------------

class Procs:
    """Children started by this test, stopped by pid at the end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []

    async def sim(self, name, *args):
        ready = os.path.join(self.tmp, name + ".ready")
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        proc = await asyncio.create_subprocess_exec(
            PY, SIM, "--listen", "127.0.0.1:0", "--ready-file", ready, *args,
            stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        for _ in range(100):
            if os.path.exists(ready):
                with open(ready) as f:
                    return proc, json.load(f)
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        with open(log.name) as f:
            raise RuntimeError(f"realtime_sim {name} did not start:\n"
                               + f.read())

    async def backend(self, name, *args):
        ready = os.path.join(self.tmp, name + ".ready")
        log = open(os.path.join(self.tmp, name + ".log"), "w")
        proc = await asyncio.create_subprocess_exec(
            PY, BACKEND, "--listen", "127.0.0.1:0", "--ready-file", ready,
            *args, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        for _ in range(100):
            if os.path.exists(ready):
                with open(ready) as f:
                    return proc, json.load(f)
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        with open(log.name) as f:
            raise RuntimeError(f"tool_backend {name} did not start:\n"
                               + f.read())

    async def twilio(self, name, *args):
        out = open(os.path.join(self.tmp, name + ".out"), "w")
        proc = await asyncio.create_subprocess_exec(
            PY, TWILIO, *args, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc, out.name

    def stop_all(self):
        for proc in self.procs:
            if proc.returncode is None:
                try:
                    proc.terminate()
                except ProcessLookupError:
                    pass


# -- the reference bridge ---------------------------------------------------

class BridgeCall:
    def __init__(self, bridge, tws):
        self.bridge = bridge
        self.tws = tws
        self.up = None
        self.stream_sid = None
        self.params = {}
        self.ready = False
        self.pending_audio = []
        self.items = {}            # item_id -> {"received": b, "played": b}
        self.current = None        # item whose audio arrived last
        self.marks = {}            # outstanding mark -> (item_id, bytes)
        self.cleared = set()       # marks returned by a clear
        self.mark_n = 0
        self.dropped = set()       # items whose late deltas are dropped
        self.errors = []
        self.truncates = []
        self.fn_calls = {}         # response_id -> [(call_id, name)]
        self.hangup = False
        self.twilio_close = None

    async def send_tw(self, msg):
        await self.tws.send(json.dumps(msg))

    async def send_up(self, event):
        await self.up.send(json.dumps(event, ensure_ascii=False))

    async def run(self):
        # Upstream first, before Twilio's start, as twirt does.
        self.up = await websockets.connect(
            self.bridge.sim_url, compression=None, max_size=2**24,
            extra_headers={"Authorization": f"Bearer {API_KEY}"})
        tasks = {asyncio.create_task(self.from_twilio()),
                 asyncio.create_task(self.from_upstream())}
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.up.close()
            await self.tws.close()
            for t in tasks:
                t.cancel()
            self.twilio_close = self.tws.close_code

    async def from_twilio(self):
        try:
            async for raw in self.tws:
                msg = json.loads(raw)
                event = msg.get("event")
                if event == "start":
                    self.stream_sid = msg["start"]["streamSid"]
                    self.params = msg["start"]["customParameters"]
                    await self.send_up(self.session_update())
                elif event == "media":
                    payload = msg["media"]["payload"]
                    if self.ready:
                        await self.send_up({"type":
                                            "input_audio_buffer.append",
                                            "audio": payload})
                    else:
                        self.pending_audio.append(payload)
                elif event == "mark":
                    await self.on_mark(msg["mark"]["name"])
                elif event == "stop":
                    return
        except ConnectionClosed:
            pass

    def session_update(self):
        p = self.params
        return {"type": "session.update", "event_id": "twirt_session_1",
                "session": {
                    "type": "realtime", "model": "gpt-realtime",
                    "instructions": "あなたは電話オペレーターです。"
                    f"[scenario:{p.get('scenario', 'silence')}]"
                    f"[calltag:{p.get('calltag', '')}]",
                    "output_modalities": ["audio"],
                    "audio": {
                        "input": {
                            "format": {"type": "audio/pcmu"},
                            "noise_reduction": {"type": "near_field"},
                            "transcription": {
                                "model": "gpt-4o-mini-transcribe",
                                "language": "ja"},
                            "turn_detection": {
                                "type": "server_vad", "threshold": 0.6,
                                "prefix_padding_ms": 300,
                                "silence_duration_ms": 500,
                                "create_response": True,
                                "interrupt_response": True}},
                        "output": {"format": {"type": "audio/pcmu"},
                                   "voice": "marin", "speed": 1.0}},
                    "tools": [{"type": "function", "name": "end_call",
                               "description": "Hang up politely.",
                               "parameters": {"type": "object",
                                              "properties": {}}}],
                    "tool_choice": "auto", "max_output_tokens": "inf"}}

    async def from_upstream(self):
        try:
            async for raw in self.up:
                ev = json.loads(raw)
                t = ev["type"]
                if t == "session.updated" and not self.ready:
                    self.ready = True
                    for payload in self.pending_audio:
                        await self.send_up({"type":
                                            "input_audio_buffer.append",
                                            "audio": payload})
                    self.pending_audio = []
                    await self.send_up({"type": "response.create",
                                        "event_id": "twirt_greeting"})
                elif t == "error":
                    self.errors.append(ev["error"])
                elif t == "response.output_audio.delta":
                    await self.on_delta(ev)
                elif t == "input_audio_buffer.speech_started":
                    await self.barge_in()
                elif t == "response.function_call_arguments.done":
                    self.fn_calls.setdefault(ev["response_id"], []).append(
                        (ev["call_id"], ev["name"]))
                elif t == "response.done":
                    await self.on_response_done(ev["response"])
        except ConnectionClosed:
            pass

    async def on_delta(self, ev):
        item_id = ev["item_id"]
        if item_id in self.dropped:
            return
        item = self.items.setdefault(item_id, {"received": 0, "played": 0})
        item["received"] += len(base64.b64decode(ev["delta"]))
        self.current = item_id
        await self.send_tw({"event": "media", "streamSid": self.stream_sid,
                            "media": {"payload": ev["delta"]}})
        self.mark_n += 1
        name = f"m{self.mark_n}"
        self.marks[name] = (item_id, item["received"])
        await self.send_tw({"event": "mark", "streamSid": self.stream_sid,
                            "mark": {"name": name}})

    async def on_mark(self, name):
        if name in self.cleared:
            # Returned by a clear: proves nothing about playback.
            self.cleared.discard(name)
            return
        entry = self.marks.pop(name, None)
        if entry is None:
            return
        item_id, upto = entry
        item = self.items[item_id]
        item["played"] = max(item["played"], upto)
        if self.hangup and not self.marks:
            await self.tws.close(1000, "end_call")

    async def barge_in(self):
        if not self.marks:
            return                      # nothing is playing
        item_id = self.current
        item = self.items[item_id]
        await self.send_tw({"event": "clear", "streamSid": self.stream_sid})
        self.cleared.update(self.marks)
        self.marks.clear()
        self.dropped.add(item_id)
        played_ms = item["played"] / 8
        received_ms = item["received"] / 8
        end = math.floor(min(played_ms, received_ms))
        if end > 0 and played_ms < received_ms:
            self.truncates.append({"item_id": item_id, "audio_end_ms": end,
                                   "received_ms": received_ms})
            await self.send_up({"type": "conversation.item.truncate",
                                "event_id":
                                f"twirt_trunc_{len(self.truncates)}",
                                "item_id": item_id, "content_index": 0,
                                "audio_end_ms": end})

    async def on_response_done(self, response):
        for call_id, name in self.fn_calls.pop(response["id"], []):
            await self.send_up({"type": "conversation.item.create",
                                "item": {"type": "function_call_output",
                                         "call_id": call_id,
                                         "output": '{"ok":true}'}})
            if name == "end_call":
                self.hangup = True
        if self.hangup and not self.marks:
            await self.tws.close(1000, "end_call")


class Bridge:
    def __init__(self, sim_url):
        self.sim_url = sim_url
        self.calls = []
        self.server = None
        self.port = None

    async def start(self):
        want = twilio_sim.twilio_signature(AUTH_TOKEN, SIGN_URL)

        class SignedOnly(WebSocketServerProtocol):
            async def process_request(self, path, headers):
                got = headers.get("X-Twilio-Signature", "")
                if not hmac.compare_digest(got, want):
                    return (http.HTTPStatus.FORBIDDEN, [], b"bad signature\n")
                return None

        async def handler(tws):
            call = BridgeCall(self, tws)
            self.calls.append(call)
            await call.run()

        self.server = await websockets.serve(
            handler, "127.0.0.1", 0, create_protocol=SignedOnly,
            compression=None, max_size=2**24)
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    def call(self, calltag):
        return next((c for c in self.calls
                     if c.params.get("calltag") == calltag), None)


# -- raw helpers --------------------------------------------------------------

async def raw_request(port, lines, read_timeout=2.0):
    """Send an HTTP upgrade by hand; return (status, body, reader, writer)
    or raise what the socket raised."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    head = [f"GET {lines[0]} HTTP/1.1", f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
            *lines[1:]]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    data = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), read_timeout)
    status = int(data.split(b" ", 2)[1])
    body = b""
    for line in data.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            body = await reader.readexactly(int(line.split(b":")[1]))
    return status, body, reader, writer


async def read_frame(reader, timeout=2.0):
    """One server frame: (opcode, payload). Server frames are unmasked."""
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), timeout)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await reader.readexactly(n)


async def sim_client(port, query="?model=gpt-realtime", headers=None,
                     **kw):
    h = {"Authorization": "Bearer sk-test"} if headers is None else headers
    return await websockets.connect(
        f"ws://127.0.0.1:{port}/v1/realtime{query}", extra_headers=h,
        compression=None, open_timeout=3, max_size=2**24, **kw)


async def next_event(ws, want, timeout=3.0, match=None):
    """The first not yet consumed event whose type is in `want` (and for
    which match(event) is true). Other events are kept for later calls, so
    a test can wait for events in any order without losing one."""
    want = (want,) if isinstance(want, str) else want

    def wanted(ev):
        return ev.get("type") in want and (match is None or match(ev))

    backlog = ws.__dict__.setdefault("backlog", [])
    for i, ev in enumerate(backlog):
        if wanted(ev):
            return backlog.pop(i)
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise asyncio.TimeoutError(f"no {want} within {timeout} s")
        ev = json.loads(await asyncio.wait_for(ws.recv(), left))
        if wanted(ev):
            return ev
        backlog.append(ev)


def session_update(event_id="s1", audio=None, **session):
    """A valid GA session.update, pcmu both ways, plus `session` fields;
    `audio` is merged into audio.input / audio.output."""
    base = {"type": "realtime",
            "audio": {"input": {"format": {"type": "audio/pcmu"}},
                      "output": {"format": {"type": "audio/pcmu"}}}}
    for side, fields in (audio or {}).items():
        base["audio"][side].update(fields)
    base.update(session)
    return json.dumps({"type": "session.update", "event_id": event_id,
                       "session": base}, ensure_ascii=False)


def append(payload):
    return json.dumps({"type": "input_audio_buffer.append",
                       "audio": base64.b64encode(payload).decode()})


# -- test groups --------------------------------------------------------------

def test_units(tap):
    tap.ok(peer_audio.ULAW_TO_LINEAR[0xFF] == 0
           and peer_audio.ULAW_TO_LINEAR[0x7F] == 0,
           "mu-law silence bytes 0xFF and 0x7F decode to 0")
    # G.711 steps grow with the level: relative error stays under ~6%
    # above 256, absolute error under 8 below.
    worst = max(abs(peer_audio.ULAW_TO_LINEAR[peer_audio.ulaw_encode_sample(s)]
                    - s) / (abs(s) if abs(s) > 256 else 128)
                for s in range(-32000, 32000, 7))
    tap.ok(worst < 0.07, "mu-law encode/decode round trip within G.711 "
           "quantisation", f"worst relative error {worst}")
    sig = twilio_sim.twilio_signature(
        "12345", "https://example.com/myapp.php?foo=1&bar=2",
        {"CallSid": "CA1234567890ABCDE", "Caller": "+14158675310",
         "Digits": "1234", "From": "+14158675310", "To": "+18005551212"})
    tap.is_(sig, "L/OH5YylLD5NRKLltdqwSvS0BnU=",
            "signature matches the worked example of Twilio's documentation")
    names = []
    try:
        for name in ("ja-booking", "barge-in", "end-call", "silence"):
            names.append(peer_scenario.load(name)["name"])
        tap.ok(True, "shipped scenarios load: " + ", ".join(names))
    except peer_scenario.ScenarioError as e:
        tap.ok(False, "shipped scenarios load", str(e))
    # the GA shapes of truncation, prompt, tool_choice and the
    # transcription prompt: accepted exactly, the rest rejected
    cur = realtime_session.default_session("sess_x", "gpt-realtime", 0)

    def check(**fields):
        problem = realtime_session.check_update(
            dict({"type": "realtime"}, **fields), cur, False)
        return problem and problem[2]

    good = [{"truncation": "disabled"},
            {"truncation": {"type": "retention_ratio",
                            "retention_ratio": 0.8,
                            "token_limits": {"post_instructions": 8000}}},
            {"prompt": {"id": "pmpt_1", "version": "3",
                        "variables": {"company": "さくら"}}},
            {"prompt": None},
            {"tool_choice": {"type": "function", "name": "end_call"}},
            {"audio": {"input": {"transcription": {
                "model": "whisper-1", "prompt": "診察券"}}}},
            {"audio": {"output": {"speed": 1.5}}}]
    tap.is_([check(**g) for g in good], [None] * len(good),
            "GA truncation, prompt, tool_choice, transcription prompt and "
            "speed are accepted")
    bad = [({"truncation": "sometimes"}, "session.truncation"),
           ({"truncation": {"type": "retention_ratio",
                            "retention_ratio": 2}},
            "session.truncation.retention_ratio"),
           ({"truncation": {"type": "retention_ratio"}},
            "session.truncation.retention_ratio"),
           ({"prompt": {"version": "1"}}, "session.prompt.id"),
           ({"prompt": {"id": "pmpt_1", "version": 3}},
            "session.prompt.version"),
           ({"prompt": {"id": "pmpt_1", "vars": {}}}, "session.prompt.vars"),
           ({"tool_choice": {"type": "function"}}, "session.tool_choice"),
           ({"tool_choice": "end_call"}, "session.tool_choice"),
           ({"audio": {"input": {"transcription": {
               "model": "whisper-1", "prompt": ["a"]}}}},
            "session.audio.input.transcription.prompt"),
           ({"audio": {"output": {"speed": 2}}},
            "session.audio.output.speed")]
    tap.is_([check(**b) for b, _ in bad], [p for _, p in bad],
            "wrong shapes are rejected on the right param")
    try:
        peer_scenario.validate({"turns": [
            {"caller": {"at_ms": 1000, "speech_ms": 800}},
            {"caller": {"at_ms": 1500, "speech_ms": 800}}]}, "bad")
        tap.ok(False, "overlapping caller turns are rejected")
    except peer_scenario.ScenarioError as e:
        tap.ok("before the previous turn ends" in str(e),
               "overlapping caller turns are rejected with a clear message",
               str(e))


async def test_handshake(tap, port):
    status, body, _, w = await raw_request(port, ["/v1/realtime"])
    w.close()
    err = json.loads(body or b"{}").get("error", {})
    tap.ok(status == 401 and err.get("code") == "invalid_api_key"
           and err.get("type") == "invalid_request_error",
           "no Authorization: HTTP 401 with a JSON invalid_api_key error",
           f"{status} {body!r}")

    ws = await sim_client(port, headers={"Authorization": "Bearer sk-test",
                                         "OpenAI-Beta": "realtime=v1"})
    try:
        await asyncio.wait_for(ws.recv(), 2)
    except ConnectionClosed:
        pass
    tap.ok(ws.close_code == 4000
           and ws.close_reason == "beta_api_shape_disabled",
           "OpenAI-Beta header: closed with 4000 beta_api_shape_disabled",
           f"{ws.close_code} {ws.close_reason!r}")

    ws = await sim_client(port, headers={"Authorization": "Bearer sk-bad"})
    ev = json.loads(await asyncio.wait_for(ws.recv(), 2))
    try:
        await asyncio.wait_for(ws.recv(), 2)
    except ConnectionClosed:
        pass
    tap.ok(ev["type"] == "error"
           and ev["error"]["code"] == "invalid_api_key"
           and ws.close_code == 3000,
           "key sk-bad: error invalid_api_key, then close 3000",
           f"{ev} {ws.close_code}")

    # websockets, as a server, must refuse an unmasked client frame.
    status, _, r, w = await raw_request(port, ["/v1/realtime",
                                               "Authorization: Bearer sk-t"])
    payload = b'{"type":"response.cancel"}'
    w.write(bytes([0x81, len(payload)]) + payload)
    code = None
    try:
        for _ in range(10):
            op, data = await read_frame(r)
            if op == 8:
                code = int.from_bytes(data[:2], "big")
                break
    except (asyncio.TimeoutError, asyncio.IncompleteReadError):
        pass
    w.close()
    tap.ok(status == 101 and code == 1002,
           "an unmasked client frame is refused with close 1002",
           f"status {status}, close {code}")


async def test_session(tap, port):
    ws = await sim_client(port)
    created = json.loads(await ws.recv())
    s = created.get("session", {})
    a = s.get("audio", {})
    tap.ok(created["type"] == "session.created"
           and s.get("id", "").startswith("sess_")
           and a["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
           and a["output"]["voice"] == "alloy"
           and a["input"]["turn_detection"]["type"] == "server_vad"
           and a["input"]["turn_detection"]["silence_duration_ms"] == 200
           and a["input"]["transcription"] is None,
           "session.created carries the server defaults", created)

    await ws.send(json.dumps({"type": "session.update", "event_id": "u1",
                              "session": {"instructions": "x"}}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "missing_required_parameter"
           and ev["error"]["param"] == "session.type"
           and ev["error"]["event_id"] == "u1",
           "session.update without session.type: missing_required_parameter"
           ", event_id echoed", ev)

    beta = {"voice": "marin", "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw", "modalities": ["audio"],
            "input_audio_transcription": {"model": "whisper-1"},
            "turn_detection": {"type": "server_vad"}, "temperature": 0.8}
    bad = []
    for i, (key, value) in enumerate(beta.items()):
        await ws.send(json.dumps({"type": "session.update",
                                  "event_id": f"b{i}",
                                  "session": {"type": "realtime",
                                              key: value}}))
        ev = await next_event(ws, ("error", "session.updated"))
        e = ev.get("error", {})
        if not (e.get("code") == "unknown_parameter"
                and e.get("param") == f"session.{key}"
                and e.get("message") == f"Unknown parameter: 'session.{key}'."
                and e.get("event_id") == f"b{i}"):
            bad.append(ev)
    tap.ok(not bad, "beta-shape session fields are unknown_parameter "
           "(" + ", ".join(beta) + ")", bad)

    await ws.send(session_update("v1", audio={"output": {"voice": "nova"}}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "invalid_value"
           and ev["error"]["param"] == "session.audio.output.voice"
           and ev["error"]["event_id"] == "v1",
           "unknown voice: invalid_value on session.audio.output.voice", ev)

    await ws.send(session_update("w1", audio={"input": {
        "format": "g711_ulaw"}}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "invalid_type"
           and ev["error"]["param"] == "session.audio.input.format"
           and ev["error"]["event_id"] == "w1",
           "a string where the GA shape has an object: invalid_type", ev)

    await ws.send(json.dumps({"type": "session.updaet", "event_id": "x1"}))
    ev1 = await next_event(ws, "error")
    await ws.send("{not json")
    ev2 = await next_event(ws, "error")
    tap.ok(ev1["error"]["code"] == "invalid_value"
           and ev1["error"]["param"] == "type"
           and ev1["error"]["event_id"] == "x1"
           and ev2["error"]["code"] == "invalid_json",
           "unknown client event type and malformed JSON get error events",
           f"{ev1}\n{ev2}")

    await ws.send(json.dumps({"type": "response.cancel", "event_id": "c1"}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "response_cancel_not_active"
           and ev["error"]["event_id"] == "c1",
           "response.cancel with nothing active: response_cancel_not_active",
           ev)

    await ws.send(session_update("ok1", instructions="[scenario:short]"
                                 "[calltag:T]",
                                 audio={"input": {"turn_detection": None},
                                        "output": {"voice": "cedar"}}))
    upd = await next_event(ws, "session.updated")
    tap.ok(upd["session"]["audio"]["output"]["voice"] == "cedar"
           and upd["session"]["audio"]["input"]["format"]
           == {"type": "audio/pcmu"}
           and upd["session"]["audio"]["input"]["turn_detection"] is None
           and upd["session"]["instructions"].startswith("[scenario:short]"),
           "session.updated carries the merged effective config", upd)

    await ws.send(json.dumps({"type": "response.create", "event_id": "r1"}))
    await next_event(ws, "response.created")
    await ws.send(json.dumps({"type": "response.create", "event_id": "r2"}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "conversation_already_has_active_response"
           and ev["error"]["event_id"] == "r2",
           "response.create during a response: "
           "conversation_already_has_active_response", ev)

    added = await next_event(ws, "response.output_item.added")
    item_id = added["item"]["id"]
    done = await next_event(ws, "response.done")
    tx = [o["content"][0]["transcript"] for o in done["response"]["output"]]
    tap.ok(tx == ["T番の通話です。"] and done["response"]["usage"]
           ["output_token_details"]["audio_tokens"] == 16,
           "greeting spoken with $CALLTAG replaced; usage counts 800 ms of "
           "audio as 16 tokens", done)

    await ws.send(session_update("voice2", audio={"output": {
        "voice": "alloy"}}))
    ev = await next_event(ws, "error")
    tap.ok(ev["error"]["code"] == "cannot_update_voice"
           and ev["error"]["event_id"] == "voice2",
           "voice change after the model spoke: cannot_update_voice", ev)

    await ws.send(json.dumps({"type": "conversation.item.truncate",
                              "event_id": "t1", "item_id": "item_nope",
                              "content_index": 0, "audio_end_ms": 10}))
    e1 = (await next_event(ws, "error"))["error"]
    await ws.send(json.dumps({"type": "conversation.item.create",
                              "item": {"type": "message", "role": "user",
                                       "content": [{"type": "input_text",
                                                    "text": "hi"}]}}))
    user_item = (await next_event(
        ws, "conversation.item.added",
        match=lambda e: e["item"].get("role") == "user"))["item"]["id"]
    await ws.send(json.dumps({"type": "conversation.item.truncate",
                              "event_id": "t2", "item_id": user_item,
                              "content_index": 0, "audio_end_ms": 10}))
    e2 = (await next_event(ws, "error"))["error"]
    await ws.send(json.dumps({"type": "conversation.item.truncate",
                              "event_id": "t3", "item_id": item_id,
                              "content_index": 0, "audio_end_ms": 57340}))
    e3 = (await next_event(ws, "error"))["error"]
    tap.ok(e1["code"] == "item_truncate_invalid_item_id"
           and e1["event_id"] == "t1" and e2["code"] == "invalid_value"
           and e2["event_id"] == "t2",
           "truncate of an unknown item or a user item is an error",
           f"{e1}\n{e2}")
    tap.is_((e3["code"], e3["message"], e3["event_id"]),
            ("invalid_value",
             "Audio content of 800ms is already shorter than 57340ms", "t3"),
            "truncate past the audio sent: the real service's error text")
    await ws.send(json.dumps({"type": "conversation.item.truncate",
                              "event_id": "t4", "item_id": item_id,
                              "content_index": 0, "audio_end_ms": 500}))
    ev = await next_event(ws, ("conversation.item.truncated", "error"))
    await ws.send(json.dumps({"type": "conversation.item.truncate",
                              "event_id": "t5", "item_id": item_id,
                              "content_index": 0, "audio_end_ms": 600}))
    e5 = (await next_event(ws, "error"))["error"]
    tap.ok(ev.get("type") == "conversation.item.truncated"
           and ev["audio_end_ms"] == 500 and ev["item_id"] == item_id
           and e5["message"] == "Audio content of 500ms is already shorter "
           "than 600ms",
           "truncate within the audio succeeds, and shortens the item", ev)
    await ws.close()


async def test_function_call(tap, port):
    ws = await sim_client(port)
    await ws.send(session_update("f", instructions="[scenario:function]",
                                 audio={"input": {"turn_detection": None,
                                        "transcription": {"model":
                                                          "whisper-1"}}}))
    await next_event(ws, "session.updated")
    speech = peer_audio.caller_speech_loop()[:4000]
    await ws.send(append(speech))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await next_event(ws, "input_audio_buffer.committed")
    await ws.send(json.dumps({"type": "response.create"}))
    args = await next_event(ws, "response.function_call_arguments.done")
    done = await next_event(ws, "response.done")
    tr = await next_event(ws, "conversation.item.input_audio_transcription."
                          "completed")
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": args["call_id"],
        "output": "{\"found\":true}"}}))
    added = await next_event(
        ws, ("conversation.item.added", "error"),
        match=lambda e: e["type"] == "error"
        or e["item"]["type"] == "function_call_output")
    await ws.send(json.dumps({"type": "response.create"}))
    final = await next_event(
        ws, "response.output_audio_transcript.done",
        match=lambda e: e["response_id"] != done["response"]["id"])
    tap.ok(args["name"] == "lookup"
           and json.loads(args["arguments"]) == {"q": "予約"}
           and [o["type"] for o in done["response"]["output"]]
           == ["message", "function_call"]
           and added["type"] == "conversation.item.added"
           and final["transcript"] == "結果です。"
           and tr["transcript"] == "調べて"
           and tr["usage"] == {"type": "duration", "seconds": 0.5},
           "manual commit, scripted tool call, function_call_output and the "
           "after_function answer; whisper-1 usage is the audio's duration",
           f"{args}\n{done}\n{added}\n{final}\n{tr}")
    await ws.close()


async def test_failures(tap, port, procs):
    def q(kind):
        return f"?model=gpt-realtime&sim_fail={kind}"

    status, body, _, w = await raw_request(port, ["/v1/realtime" + q(
        "http_429"), "Authorization: Bearer sk-test"])
    w.close()
    tap.ok(status == 429 and json.loads(body)["error"]["code"]
           == "rate_limit_exceeded", "http_429: HTTP 429 with "
           "rate_limit_exceeded JSON", f"{status} {body!r}")
    status, body, _, w = await raw_request(port, ["/v1/realtime" + q(
        "http_401"), "Authorization: Bearer sk-test"])
    w.close()
    tap.ok(status == 401 and json.loads(body)["error"]["code"]
           == "invalid_api_key", "http_401: HTTP 401 with invalid_api_key",
           f"{status} {body!r}")

    try:
        got = await raw_request(port, ["/v1/realtime" + q("reset"),
                                       "Authorization: Bearer sk-test"])
        outcome = f"HTTP {got[0]}"
    except (ConnectionResetError, asyncio.IncompleteReadError) as e:
        outcome = type(e).__name__
    tap.ok(outcome in ("ConnectionResetError", "IncompleteReadError"),
           "reset: the connection is reset before any HTTP answer", outcome)

    try:
        got = await raw_request(port, ["/v1/realtime" + q("stall_handshake"),
                                       "Authorization: Bearer sk-test"],
                                read_timeout=1.0)
        outcome = f"HTTP {got[0]}"
    except asyncio.TimeoutError:
        outcome = "timeout"
    tap.is_(outcome, "timeout", "stall_handshake: no answer to the upgrade")

    async def session(kind):
        ws = await sim_client(port, q(kind))
        await ws.send(session_update("fs"))
        first = await next_event(ws, ("session.updated", "error"))
        return ws, first, time.monotonic()

    ws, _, t0 = await session("close_1011=200")
    try:
        await asyncio.wait_for(ws.wait_closed(), 3)
    except asyncio.TimeoutError:
        pass
    dt = (time.monotonic() - t0) * 1000
    tap.ok(ws.close_code == 1011 and 150 < dt < 1000,
           "close_1011=200: closed with 1011 about 200 ms after "
           "session.updated", f"{ws.close_code} after {dt:.0f} ms")

    ws, _, _ = await session("invalid_json=50")
    raw = await asyncio.wait_for(ws.recv(), 2)
    try:
        json.loads(raw)
        bad_json = False
    except ValueError:
        bad_json = True
    await ws.close()
    tap.ok(bad_json, "invalid_json=50: a text frame that is not JSON", raw)

    ws, _, _ = await session("oversized_frame=100000")
    raw = await asyncio.wait_for(ws.recv(), 2)
    await ws.close()
    tap.ok(len(raw) == 100000 and json.loads(raw)["type"] == "sim.padding",
           "oversized_frame=100000: one 100000-byte text frame", len(raw))

    ws, _, _ = await session("session_expired=50")
    ev = await next_event(ws, "error")
    try:
        await asyncio.wait_for(ws.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass
    tap.ok(ev["error"]["code"] == "session_expired" and ws.closed,
           "session_expired=50: error session_expired, then close", ev)

    ws, first, _ = await session("reject_session_update")
    await ws.close()
    tap.ok(first["type"] == "error" and first["error"]["code"]
           == "invalid_value" and first["error"]["event_id"] == "fs",
           "reject_session_update: invalid_value echoing the event_id", first)

    ws, _, _ = await session("insufficient_quota")
    await ws.send(json.dumps({"type": "response.create"}))
    done = await next_event(ws, "response.done")
    await ws.close()
    r = done["response"]
    tap.ok(r["status"] == "failed" and r["status_details"]["error"]["code"]
           == "insufficient_quota",
           "insufficient_quota: response.done failed", r)

    ws, _, _ = await session("failed_responses=1")
    await ws.send(json.dumps({"type": "response.create", "response": {
        "instructions": "Say exactly: はい", "metadata": {"twirt": "say"}}}))
    first = (await next_event(ws, "response.done"))["response"]
    await ws.send(json.dumps({"type": "response.create"}))
    second = (await next_event(ws, "response.done"))["response"]
    await ws.close()
    tap.ok(first["status"] == "failed" and first["status_details"]["error"]
           ["code"] == "server_error" and first["metadata"] == {"twirt": "say"}
           and second["status"] == "completed",
           "failed_responses=1: the first response fails (metadata echoed), "
           "the next completes", [first, second])

    ws, _, _ = await session("server_error=20")
    ev = await next_event(ws, "error")
    await ws.send(json.dumps({"type": "response.cancel", "event_id": "z"}))
    after = await next_event(ws, "error")
    await ws.close()
    tap.ok(ev["error"]["type"] == "server_error"
           and after["error"]["event_id"] == "z",
           "server_error=20: a server_error event, the session goes on", ev)

    _, info = await procs.sim("refuse", "--fail", "refuse")
    try:
        _, w = await asyncio.open_connection("127.0.0.1", info["port"])
        w.close()
        outcome = "connected"
    except ConnectionRefusedError:
        outcome = "refused"
    tap.is_(outcome, "refused", "--fail refuse: port announced, connection "
            "refused")

    # Never block the event loop: the bridge is serving calls meanwhile.
    bad = await asyncio.create_subprocess_exec(
        PY, SIM, "--listen", "127.0.0.1:0", "--fail", "explode",
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await bad.communicate()
    err = err.decode()
    tap.ok(bad.returncode == 2 and "unknown failure 'explode'" in err,
           "an unknown --fail kind is a usage error naming the known ones",
           err)


async def make_certs(tmp):
    """A throwaway CA and a server certificate for 127.0.0.1/localhost,
    made at test time and deleted with the work directory."""
    d = os.path.join(tmp, "tls")
    os.mkdir(d)

    async def run(*args):
        proc = await asyncio.create_subprocess_exec(
            "openssl", *args, cwd=d, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {err.decode()}")

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    await run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
              "-days", "1", "-subj", "/CN=twirt selftest CA")
    await run("req", *ec, "-keyout", "srv.key", "-out", "srv.csr",
              "-subj", "/CN=localhost")
    with open(os.path.join(d, "ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    await run("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey",
              "ca.key", "-CAcreateserial", "-out", "srv.pem", "-days", "1",
              "-extfile", "ext")
    return d


async def test_tls(tap, tmp, procs):
    d = await make_certs(tmp)
    _, info = await procs.sim("tls", "--tls-cert", f"{d}/srv.pem",
                              "--tls-key", f"{d}/srv.key")
    url = f"wss://localhost:{info['port']}/v1/realtime?model=gpt-realtime"
    ctx = ssl.create_default_context(cafile=f"{d}/ca.pem")
    ws = await websockets.connect(url, ssl=ctx, open_timeout=3,
                                  extra_headers={"Authorization":
                                                 "Bearer sk-test"})
    ev = json.loads(await ws.recv())
    await ws.close()
    tap.ok(info["url"].startswith("wss://") and ev["type"]
           == "session.created", "wss:// with a test CA: session.created",
           f"{info} {ev.get('type')}")
    try:
        ws = await websockets.connect(url, ssl=ssl.create_default_context(),
                                      open_timeout=3)
        await ws.close()
        outcome = "accepted"
    except ssl.SSLCertVerificationError:
        outcome = "verify failed"
    tap.is_(outcome, "verify failed", "wss:// without the test CA: "
            "certificate verification fails")


async def test_bench(tap, procs):
    _, info = await procs.sim("bench", "--bench", "--procs", "2")
    bad = []
    for c in range(4):
        ws = await sim_client(info["port"])
        await next_event(ws, "session.created")
        sent = [base64.b64encode(os.urandom(160)).decode()
                for _ in range(50)]
        for s in sent:
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": s}))
        got = []
        for _ in sent:
            ev = json.loads(await asyncio.wait_for(ws.recv(), 2))
            got.append(ev)
        await ws.close()
        if [g.get("delta") for g in got] != sent or not all(
                g["type"] == "response.output_audio.delta"
                and g.get("item_id") for g in got):
            bad.append(c)
    tap.ok(not bad, "--bench --procs 2: each append comes back at once as "
           "one output_audio.delta with the same base64 string", bad)


# -- full calls through the bridge --------------------------------------------

def by_conn(records):
    conns = {}
    for r in records:
        conns.setdefault(r["conn"], []).append(r)
    return conns


def conn_for(conns, calltag):
    for lines in conns.values():
        for r in lines:
            if r["dir"] == "note" and r.get("calltag") == calltag:
                return lines
    return []


def out_events(lines, etype):
    return [r["event"] for r in lines
            if r["dir"] == "out" and r.get("event", {}).get("type") == etype]


def summaries(path):
    return [r for r in read_jsonl(path) if r["dir"] == "summary"]


def check_ja(tap, conns, tw, proc, out):
    sc = peer_scenario.load("ja-booking")
    lines = conn_for(conns, "ja")
    s = (summaries(tw) or [{}])[0]
    tap.ok(proc.returncode == 0 and s.get("ok"), "ja-booking: the Twilio "
           "simulator's checks hold", open(out).read())
    hs = next((r for r in lines if r["dir"] == "handshake"), {})
    h = {k.lower(): v for k, v in hs.get("headers", {}).items()}
    tap.ok(h.get("authorization") == f"Bearer <redacted len={len(API_KEY)}>"
           and "openai-beta" not in h and hs.get("path", "").startswith(
               "/v1/realtime"),
           "ja-booking: handshake recorded, key redacted, no OpenAI-Beta", hs)
    heard = [e["transcript"] for e in out_events(
        lines, "conversation.item.input_audio_transcription.completed")]
    tap.is_(heard, [t["caller"]["text"] for t in sc["turns"]],
            "ja-booking: the caller's three turns transcribed, in Japanese")
    said = [e["transcript"] for e in out_events(
        lines, "response.output_audio_transcript.done")]
    tap.is_(said, [sc["greeting"]["transcript"]]
            + [t["agent"]["transcript"] for t in sc["turns"]],
            "ja-booking: greeting and three answers, transcripts intact")
    errors = out_events(lines, "error")
    tap.is_(errors, [], "ja-booking: the simulator sent no error")
    summ = next((r for r in lines if r["dir"] == "summary"), {})
    tap.ok(s.get("marks_received", 0) > 0
           and s.get("marks_received") == s.get("marks_echoed")
           and s.get("marks_echoed_by_clear") == 0
           and s.get("clears_received") == 0
           and s.get("pattern_breaks") == 0,
           "ja-booking: every mark echoed after playback, no clear, agent "
           "audio is this call's pattern", s)
    tap.ok(s.get("agent_audio_bytes") == summ.get("audio_out_bytes")
           and s.get("agent_audio_sha1") == summ.get("audio_out_sha1")
           and s.get("agent_audio_nonsilent_bytes") == s.get(
               "agent_audio_bytes"),
           "ja-booking: the agent audio heard is byte for byte the audio "
           "the simulator sent, none of it silent", f"{s}\n{summ}")
    tap.ok(abs(s.get("media_sent", 0) - 875) <= 2
           and summ.get("appended_bytes") == s.get("media_sent", 0) * 160,
           "ja-booking: 875 frames of 20 ms in 17.5 s, all appended "
           "upstream", f"sent {s.get('media_sent')} max lateness "
           f"{s.get('max_send_lateness_ms')} ms, appended "
           f"{summ.get('appended_bytes')}")
    done = out_events(lines, "response.done")
    u = [d["response"]["usage"] for d in done]
    cached = [x["input_token_details"]["cached_tokens"] for x in u]
    tap.ok(len(u) == 4 and all(x["total_tokens"] == x["input_tokens"]
                               + x["output_tokens"] for x in u)
           and all(c % 64 == 0 for c in cached) and cached[-1] > 0
           and all(cached[i] <= u[i - 1]["input_tokens"]
                   for i in range(1, 4)),
           "ja-booking: four response.done with consistent usage; cached "
           "input in 64-token steps, never more than the previous input", u)


def check_barge(tap, conns, bridge, tw, proc, out):
    lines = conn_for(conns, "barge")
    s = (summaries(tw) or [{}])[0]
    tap.ok(proc.returncode == 0 and s.get("ok"), "barge-in: the Twilio "
           "simulator's checks hold", open(out).read())
    trunc = out_events(lines, "conversation.item.truncated")
    call = bridge.call("barge")
    sent = call.truncates if call else []
    tap.ok(len(trunc) == 2 and [t["audio_end_ms"] for t in trunc]
           == [t["audio_end_ms"] for t in sent]
           and all(0 < t["audio_end_ms"] < t["received_ms"] for t in sent),
           "barge-in: two truncates with floor(min(played, received)), both "
           "accepted", f"{trunc}\n{sent}")
    tap.is_(out_events(lines, "error"), [], "barge-in: the simulator sent "
            "no error (no 'already shorter than')")
    cancelled = [d["response"]["status_details"] for d in
                 out_events(lines, "response.done")
                 if d["response"]["status"] == "cancelled"]
    tap.is_(cancelled, [{"type": "cancelled", "reason": "turn_detected"}],
            "barge-in: the answer still being generated is cancelled with "
            "turn_detected")
    tap.ok(s.get("clears_received") == 2 and s.get("marks_echoed_by_clear", 0)
           > 0 and s.get("marks_received") == s.get("marks_echoed"),
           "barge-in: two clears, outstanding marks returned at once", s)
    expect = 1000 + sum(t["audio_end_ms"] for t in sent) + 1200
    played = s.get("agent_audio_ms_played", 0)
    tap.ok(abs(played - expect) < 500, "barge-in: the audio the caller "
           "heard matches greeting + truncated answers + last answer",
           f"played {played} ms, expected about {expect} ms")


def check_end_call(tap, conns, tw, proc, out):
    lines = conn_for(conns, "end")
    s = (summaries(tw) or [{}])[0]
    close = s.get("close") or {}
    tap.ok(proc.returncode == 0 and close.get("by") == "gateway"
           and close.get("code") == 1000, "end-call: the gateway hangs up "
           "with 1000", open(out).read())
    fc = out_events(lines, "response.function_call_arguments.done")
    outputs = [r["event"]["item"] for r in lines if r["dir"] == "in"
               and r["event"].get("type") == "conversation.item.create"]
    tap.ok(len(fc) == 1 and fc[0]["name"] == "end_call"
           and json.loads(fc[0]["arguments"]) == {
               "reason": "caller_said_goodbye"}
           and outputs and outputs[0]["call_id"] == fc[0]["call_id"],
           "end-call: end_call called, function_call_output returned",
           f"{fc}\n{outputs}")
    tap.ok(s.get("agent_audio_ms_played", 0)
           >= s.get("agent_audio_ms_received", 1) - 1
           and close.get("t", 0) < 8000,
           "end-call: hung up only after the goodbye was played", s)


def check_many(tap, conns, tw, proc, out):
    sums = summaries(tw)
    tap.ok(proc.returncode == 0 and len(sums) == 20
           and all(x["ok"] and x["pattern_breaks"] == 0 for x in sums),
           "20 concurrent calls: all checks hold, each hears only its own "
           "agent audio", open(out).read())
    wrong = []
    for n in range(1, 21):
        said = [e["transcript"] for e in out_events(
            conn_for(conns, str(n)), "response.output_audio_transcript.done")]
        if said != [f"{n}番の通話です。", f"{n}番、了解しました。"]:
            wrong.append((n, said))
    tap.is_(wrong, [], "20 concurrent calls: each got its own scenario "
            "and calltag")


def check_abort(tap, bridge, tw, proc, out):
    recs = read_jsonl(tw)
    first = [r["msg"]["event"] for r in recs if r["dir"] == "out"][:7]
    s = (summaries(tw) or [{}])[0]
    call = bridge.call("abort")
    tap.ok(proc.returncode == 0 and first == ["connected"] + ["media"] * 5
           + ["start"] and (s.get("close") or {}).get("by") == "abort"
           and call is not None and call.twilio_close == 1006,
           "--pre-start-media 5 --abort-after-ms: media before start, then "
           "the TCP connection dropped (the bridge sees 1006)",
           f"{first}\n{s}\n{call and call.twilio_close}\n"
           + open(out).read())


async def test_calls(tap, tmp, sim_port, records, procs):
    bridge = Bridge(f"ws://127.0.0.1:{sim_port}/v1/realtime"
                    "?model=gpt-realtime")
    await bridge.start()
    url = f"ws://127.0.0.1:{bridge.port}/twilio/media"
    sign = ["--url", url, "--auth-token", AUTH_TOKEN, "--sign-url", SIGN_URL]
    rec = {k: os.path.join(tmp, f"tw-{k}.jsonl") for k in
           ("ja", "barge", "end", "many", "abort")}
    runs = {
        "ja": ("--scenario", "ja-booking", "--param", "calltag=ja",
               "--check-agent-audio"),
        "barge": ("--scenario", "barge-in", "--param", "calltag=barge",
                  "--check-agent-audio"),
        "end": ("--scenario", "end-call", "--param", "calltag=end",
                "--check-agent-audio"),
        "many": ("--scenario", os.path.join(tmp, "scenarios", "short.json"),
                 "--calls", "20", "--check-agent-audio"),
        "abort": ("--scenario", "silence", "--param", "calltag=abort",
                  "--pre-start-media", "5", "--abort-after-ms", "1500"),
    }
    wav = await make_speech_wav(tmp)
    if wav:
        rec["wav"] = os.path.join(tmp, "tw-wav.jsonl")
        runs["wav"] = ("--scenario", os.path.join(tmp, "scenarios",
                                                  "wav.json"),
                       "--param", "calltag=wav", "--speech-wav", wav)
    started = {}
    for key, args in runs.items():
        started[key] = await procs.twilio(key, *sign, *args, "--record",
                                          rec[key])
    printed = await procs.twilio("print", *sign, "--scenario", "silence",
                                 "--param", "calltag=print",
                                 "--duration-ms", "2500", "--print")
    expect403 = await procs.twilio("sig-expected", "--url", url,
                                   "--auth-token", AUTH_TOKEN, "--sign-url",
                                   SIGN_URL, "--bad-signature",
                                   "--expect-http", "403")
    nosig = await procs.twilio("sig-bad", "--url", url, "--auth-token",
                               AUTH_TOKEN, "--sign-url", SIGN_URL,
                               "--bad-signature")
    return bridge, rec, started, printed, expect403, nosig


async def make_speech_wav(tmp):
    """Real speech for --speech-wav, made at test time: espeak-ng, then
    sox to 8 kHz mono mu-law. None when either tool is missing."""
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        return None
    raw, wav = os.path.join(tmp, "speech.wav"), os.path.join(tmp, "8k.wav")
    for cmd in (["espeak-ng", "-v", "ja", "-w", raw,
                 "予約を変更したいのですが"],
                ["sox", raw, "-r", "8000", "-c", "1", "-e", "mu-law", wav]):
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if await proc.wait() != 0:
            return None
    return wav


def check_wav(tap, conns, tw, proc, out):
    lines = conn_for(conns, "wav")
    s = (summaries(tw) or [{}])[0]
    starts = out_events(lines, "input_audio_buffer.speech_started")
    heard = [e["transcript"] for e in out_events(
        lines, "conversation.item.input_audio_transcription.completed")]
    tap.ok(proc.returncode == 0 and s.get("ok") and len(starts) == 1
           and heard == ["予約を変更したいのですが"],
           "--speech-wav (espeak-ng + sox): one caller turn detected by the "
           "energy VAD", f"{len(starts)} speech_started, {heard}\n"
           + open(out).read())


async def check_calls(tap, bridge, rec, started, printed, expect403, nosig,
                      records):
    for proc, _ in [*started.values(), printed, expect403, nosig]:
        try:
            await asyncio.wait_for(proc.wait(), 40)
        except asyncio.TimeoutError:
            proc.terminate()
            await proc.wait()
    await asyncio.sleep(0.3)            # let the simulator write summaries
    conns = by_conn(read_jsonl(records))
    check_ja(tap, conns, rec["ja"], *started["ja"])
    check_barge(tap, conns, bridge, rec["barge"], *started["barge"])
    check_end_call(tap, conns, rec["end"], *started["end"])
    check_many(tap, conns, rec["many"], *started["many"])
    check_abort(tap, bridge, rec["abort"], *started["abort"])
    if "wav" in started:
        check_wav(tap, conns, rec["wav"], *started["wav"])
    else:
        tap.skip("--speech-wav with real speech", "espeak-ng or sox missing")
    text = open(printed[1]).read()
    tap.ok(printed[0].returncode == 0 and "agent audio" in text
           and "caller hangs up" in text and "mark" in text,
           "--print narrates the call for a human", text)
    tap.ok(expect403[0].returncode == 0, "--bad-signature --expect-http 403:"
           " the rejection is the expected outcome", open(expect403[1]).read())
    text = open(nosig[1]).read()
    tap.ok(nosig[0].returncode == 1 and "HTTP 403" in text,
           "a rejected upgrade fails the call with the reason", text)
    appends = [r for r in read_jsonl(records) if r["dir"] == "in"
               and r.get("event", {}).get("type")
               == "input_audio_buffer.append"]
    tap.ok(appends and all(set(a["event"]["audio"]) == {"bytes", "sha1"}
                           for a in appends[:50])
           and all("total_bytes" in a for a in appends[:50]),
           "the simulator records appends as size + sha1 with a running "
           "total", appends[:1])


# -- tool calls: the backend and the simulator's side -------------------------

async def wait_for(cond, timeout, what):
    """Poll cond() until true; raise after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise asyncio.TimeoutError(f"{what} not within {timeout} s")
        await asyncio.sleep(0.02)


def tool_request(port, name, arguments, secret=TOOL_SECRET, t=None,
                 conn=None, signature=None):
    """One signed POST as a gateway sends it; returns (status, headers,
    body bytes, connection) so a caller can reuse the connection."""
    import http.client
    body = json.dumps({"call_sid": "CA1", "stream_sid": "MZ1",
                       "agent": "clinic", "name": name, "call_id": "call_1",
                       "arguments": arguments,
                       "parameters": {"calltag": "7"}},
                      ensure_ascii=False).encode("utf-8")
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    sig = signature if signature is not None else \
        tool_backend.sign(secret, body, t)
    conn.request("POST", "/tools/" + name, body, {
        "Content-Type": "application/json", "User-Agent": "twirt-selftest",
        "X-Twirt-Signature": sig})
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read(), conn


async def test_tool_backend(tap, procs, tmp):
    rec = os.path.join(tmp, "tools.jsonl")
    _, info = await procs.backend("tools", "--secret", TOOL_SECRET,
                                  "--record", rec)
    port = info["port"]

    def req(*a, **kw):
        return asyncio.to_thread(tool_request, port, *a, **kw)

    body = b'{"a":1}'
    now = int(time.time())
    tap.ok(tool_backend.verify("k", tool_backend.sign("k", body), body, now)
           and not tool_backend.verify("k", tool_backend.sign("j", body),
                                       body, now)
           and not tool_backend.verify("k", tool_backend.sign("k", body),
                                       body + b" ", now)
           and not tool_backend.verify("k", tool_backend.sign(
               "k", body, now - 301), body, now)
           and not tool_backend.verify("k", "", body, now),
           "signature check: right key and body accepted; wrong key, "
           "changed body, stale timestamp, missing header refused")

    st, hd, data, conn = await req("book_appointment", BOOK_ARGS)
    sock1 = conn.sock
    st2, _, data2, _ = await req("lookup_booking", {"id": "一"}, conn=conn)
    tap.ok(st == 200 and hd.get("Content-Type") == "application/json"
           and json.loads(data) == {
               "booked": True, "date": "2026-12-03", "time": "15:00",
               "name": "山田太郎", "confirmation": "A-1234",
               "message": "予約を承りました"}
           and "予約を承りました".encode() in data
           and st2 == 200 and json.loads(data2)["echo"] == {"id": "一"}
           and conn.sock is sock1 and sock1 is not None,
           "book_appointment answers in raw UTF-8 JSON; a second request "
           "reuses the keep-alive connection", (st, hd, data, st2, data2))
    conn.close()
    bad = await asyncio.gather(
        req("lookup_booking", {}, secret="wrong"),
        req("lookup_booking", {}, t=int(time.time()) - 600),
        req("lookup_booking", {}, signature=""))
    tap.ok(all(b[0] == 401 and "error" in json.loads(b[2]) for b in bad),
           "a wrong key, a stale timestamp and a missing signature get 401 "
           "with a JSON error", [b[:3] for b in bad])
    t0 = time.monotonic()
    slow = await req("slow", {"delay_ms": 300})
    took = time.monotonic() - t0
    fail = await req("fail500", {})
    huge = await req("huge", {})
    text = await req("text", {})
    tap.ok(slow[0] == 200 and json.loads(slow[2])["slept_ms"] == 300
           and 0.3 <= took < 2.5
           and fail[0] == 500 and "error" in json.loads(fail[2])
           and huge[0] == 200 and len(huge[2]) == 1 << 20
           and json.loads(huge[2])["ok"] is True
           and huge[1].get("Content-Length") == str(1 << 20)
           and text[0] == 200
           and text[1].get("Content-Type") == "text/plain; charset=utf-8"
           and "確認番号" in text[2].decode("utf-8"),
           "slow waits delay_ms, fail500 is a 500 JSON error, huge is 1 MiB "
           "of JSON with its length, text is Japanese text/plain",
           (slow[:3], took, fail[:3], huge[:2], text[:3]))

    # hang: the request stays unanswered until the client goes away
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    hbody = json.dumps({"name": "hang", "call_id": "call_h",
                        "arguments": {}}).encode()
    writer.write(b"POST /tools/hang HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\n"
                 b"X-Twirt-Signature: "
                 + tool_backend.sign(TOOL_SECRET, hbody).encode()
                 + b"\r\nContent-Length: " + str(len(hbody)).encode()
                 + b"\r\n\r\n" + hbody)
    await writer.drain()
    await wait_for(lambda: [r for r in read_jsonl(rec)
                            if r["name"] == "hang" and r.get("pending")],
                   5, "the hang request's arrival line")
    answered = None
    try:
        answered = await asyncio.wait_for(reader.read(1), 0.3)
    except asyncio.TimeoutError:
        pass
    closed_at = time.time()
    writer.close()
    lines = await wait_for(lambda: [r for r in read_jsonl(rec)
                                    if r["name"] == "hang"
                                    and r["client_closed"]],
                           5, "the hang request's client_closed line")
    tap.ok(answered is None and lines[0]["status_sent"] is None
           and lines[0]["closed_at"] >= closed_at - 0.5,
           "hang never answers and records client_closed when the client "
           "goes away", (answered, lines))

    records = read_jsonl(rec)
    book = [r for r in records if r["name"] == "book_appointment"]
    refused = [r for r in records if r["status_sent"] == 401]
    tap.ok(len(book) == 1 and book[0]["signature_ok"] is True
           and book[0]["arguments"] == BOOK_ARGS
           and book[0]["parameters"] == {"calltag": "7"}
           and book[0]["call_sid"] == "CA1" and book[0]["call_id"] == "call_1"
           and book[0]["bytes_sent"] == len(data)
           and book[0]["headers"] == {"content-type": "application/json",
                                      "user-agent": "twirt-selftest",
                                      "x-twirt-signature": True}
           and len(refused) == 3
           and all(r["signature_ok"] is False for r in refused)
           and refused[-1]["headers"]["x-twirt-signature"] is True,
           "the backend records each request: arguments, parameters, "
           "signature_ok, status and bytes sent, headers", records[:2])


def collect_until_done(events):
    """Split a response's events by item."""
    calls, order = {}, []
    for ev in events:
        t = ev["type"]
        if t == "response.output_item.added":
            order.append(ev["item"]["type"])
            if ev["item"]["type"] == "function_call":
                calls[ev["item"]["call_id"]] = {"added": ev, "deltas": []}
        elif t == "response.function_call_arguments.delta":
            calls[ev["call_id"]]["deltas"].append(ev["delta"])
        elif t == "response.function_call_arguments.done":
            calls[ev["call_id"]]["done"] = ev
    return calls, order


async def events_until(ws, etype, timeout=5.0):
    """Every event up to and including the first of type `etype`."""
    out = []
    while True:
        ev = await next_event(ws, tuple(CLIENT_OUT), timeout)
        out.append(ev)
        if ev["type"] == etype:
            return out


CLIENT_OUT = ("response.created", "response.output_item.added",
              "response.output_item.done", "response.done",
              "response.function_call_arguments.delta",
              "response.function_call_arguments.done",
              "response.output_audio_transcript.done",
              "conversation.item.added", "error")


async def tools_session(port, tag, vad=False):
    ws = await sim_client(port)
    audio = {} if vad else {"input": {"turn_detection": None}}
    await ws.send(session_update(
        "t", instructions=f"[scenario:tools] [calltag:{tag}]", audio=audio))
    await next_event(ws, "session.updated")
    return ws


async def tool_turn(ws):
    """Speak, commit, ask: the events of the response with the calls."""
    await ws.send(append(peer_audio.caller_speech_loop()[:4000]))
    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
    await next_event(ws, "input_audio_buffer.committed")
    await ws.send(json.dumps({"type": "response.create"}))
    return await events_until(ws, "response.done")


def output_item(call_id, output):
    return json.dumps({"type": "conversation.item.create", "item": {
        "type": "function_call_output", "call_id": call_id,
        "output": output}}, ensure_ascii=False)


async def test_tool_calls(tap, port, records):
    ws = await tools_session(port, "toolsA")
    evs = await tool_turn(ws)
    calls, order = collect_until_done(evs)
    done = evs[-1]["response"]
    want = [json.dumps(BOOK_ARGS, ensure_ascii=False), '{"id": 1}']
    ids = list(calls)
    got = [calls[c] for c in ids]
    tap.ok(order == ["message", "function_call", "function_call"]
           and [c["added"]["item"]["name"] for c in got]
           == ["book_appointment", "lookup_booking"]
           and all(c["added"]["item"]["status"] == "in_progress"
                   and c["added"]["item"]["arguments"] == ""
                   and c["added"]["item"]["call_id"].startswith("call_")
                   for c in got)
           and [c["done"]["arguments"] for c in got] == want
           and [c["done"]["name"] for c in got]
           == ["book_appointment", "lookup_booking"]
           and all(c["done"]["item_id"] == c["added"]["item"]["id"]
                   and c["done"]["output_index"]
                   == c["added"]["output_index"] for c in got)
           and done["status"] == "completed"
           and [o["type"] for o in done["output"]]
           == ["message", "function_call", "function_call"]
           and [o.get("arguments") for o in done["output"][1:]] == want,
           "two calls in one response after its audio: output_item.added, "
           "arguments deltas and done, response.done listing both",
           json.dumps(evs, ensure_ascii=False)[:3000])
    book = got[0]
    tap.ok(len(book["deltas"]) >= 3
           and "".join(book["deltas"]) == book["done"]["arguments"]
           and json.loads("".join(book["deltas"])) == BOOK_ARGS
           and any(0x3000 <= ord(d[-1]) or 0x3000 <= ord(d[0])
                   for d in book["deltas"][1:]),
           "streamed arguments reassemble to the same JSON, Japanese split "
           "mid-string", book["deltas"])

    # outputs in any order, then one response.create
    await ws.send(output_item(ids[1], '{"found":true}'))
    await ws.send(output_item(ids[0], '予約済み "A-1234"'))
    await ws.send(json.dumps({"type": "response.create"}))
    after = await events_until(ws, "response.done")
    tr = [e for e in after
          if e["type"] == "response.output_audio_transcript.done"]
    errs = [e for e in after if e["type"] == "error"]
    tap.ok(not errs and [e["transcript"] for e in tr]
           == ['確認:予約済み "A-1234"'],
           "after both outputs and one response.create the simulator says "
           "after_tools with {output:NAME} filled in", after)

    # an out-of-band filler
    await ws.send(json.dumps({"type": "response.create", "response": {
        "conversation": "none", "metadata": {"twirt": "filler"},
        "output_modalities": ["audio"],
        "instructions": "ツールの実行中です。「少々お待ちください」とだけ"
        "言ってください。"}}, ensure_ascii=False))
    oob = await events_until(ws, "response.done")
    created = [e for e in oob if e["type"] == "response.created"]
    rid = created[0]["response"]["id"] if created else None
    tap.ok(created and created[0]["response"]["conversation_id"] is None
           and created[0]["response"]["metadata"] == {"twirt": "filler"}
           and [e["transcript"] for e in oob
                if e["type"] == "response.output_audio_transcript.done"]
           == ["少々お待ちください"]
           and all(e.get("response_id") == rid for e in oob
                   if e["type"].startswith("response.output_"))
           and not [e for e in oob if e["type"] == "conversation.item.added"]
           and oob[-1]["response"]["status"] == "completed"
           and oob[-1]["response"]["metadata"] == {"twirt": "filler"},
           "an out-of-band response.create says the text in 「」, carries "
           "its response id and metadata, adds nothing to the conversation",
           oob)

    # keypad digits, and a replayed assistant line
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "assistant",
        "content": [{"type": "output_text", "text": "ご用件をどうぞ。"}]}},
        ensure_ascii=False))
    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
        "type": "message", "role": "user",
        "content": [{"type": "input_text", "text": "1234#"}]}}))
    await ws.send(json.dumps({"type": "response.create"}))
    txt = await events_until(ws, "response.done")
    tap.ok(not [e for e in txt if e["type"] == "error"]
           and len([e for e in txt if e["type"] == "conversation.item.added"
                    and e["item"]["type"] == "message"
                    and e["item"]["role"] in ("user", "assistant")
                    and (e["item"].get("content") or [{}])[0].get("type")
                    in ("input_text", "output_text")]) == 2
           and [e["transcript"] for e in txt
                if e["type"] == "response.output_audio_transcript.done"]
           == ["番号を承りました。"],
           "text messages (keypad digits, a replayed line) are accepted; the "
           "next response.create is answered with on_text", txt)
    await ws.close()

    # protocol problems: a response.create before every output arrived,
    # and one while a response is in progress
    ws = await tools_session(port, "toolsB")
    evs = await tool_turn(ws)
    calls, _ = collect_until_done(evs)
    first = list(calls)[0]
    await ws.send(output_item(first, "ok"))
    await ws.send(json.dumps({"type": "response.create"}))
    await ws.send(json.dumps({"type": "response.create",
                              "event_id": "twice"}))
    err = await next_event(ws, "error")
    await next_event(ws, "response.done")
    await ws.close()
    summary = await wait_for(
        lambda: [r for r in conn_for(by_conn(read_jsonl(records)), "toolsB")
                 if r["dir"] == "summary"], 5, "toolsB's summary")
    notes = [r["note"] for r in conn_for(by_conn(read_jsonl(records)),
                                         "toolsB") if r["dir"] == "note"]
    tap.ok(err["error"]["code"] == "conversation_already_has_active_response"
           and err["error"]["event_id"] == "twice"
           and summary[0]["protocol_problems"] == 1
           and summary[0]["creates_while_active"] == 1
           and summary[0]["tool_calls"] == 2
           and summary[0]["tool_outputs"] == 1
           and any(n.startswith("PROTOCOL: response.create before the "
                                "function_call_output of lookup_booking")
                   for n in notes),
           "a response.create before all outputs is a PROTOCOL note and "
           "counted; one during a response gets the active-response error "
           "and is counted", (err, summary, notes))
    await wait_for(lambda: [r for r in conn_for(by_conn(read_jsonl(records)),
                                                "toolsA")
                            if r["dir"] == "summary"], 5, "toolsA's summary")
    summary = [r for r in conn_for(by_conn(read_jsonl(records)), "toolsA")
               if r["dir"] in ("summary", "note")]
    tap.ok(any(r["dir"] == "summary" and r["protocol_problems"] == 0
               and r["out_of_band_responses"] == 1
               and r["creates_while_active"] == 0 for r in summary)
           and any(r.get("note") == "out_of_band" for r in summary),
           "the well-behaved session has no protocol problem and records "
           "its out-of-band response", summary)

    # barge-in while the tool runs: VAD goes on as before
    ws = await tools_session(port, "toolsC", vad=True)
    speech = peer_audio.caller_speech_loop()[:4000]
    silence = b"\xff" * 4000
    for chunk in (speech, silence):
        for i in range(0, len(chunk), 160):
            await ws.send(append(chunk[i:i + 160]))
    done = await next_event(ws, "response.done",
                            match=lambda e: any(
                                o["type"] == "function_call"
                                for o in e["response"]["output"]))
    for i in range(0, len(speech), 160):
        await ws.send(append(speech[i:i + 160]))
    started = await next_event(ws, "input_audio_buffer.speech_started")
    for i in range(0, len(silence), 160):
        await ws.send(append(silence[i:i + 160]))
    stopped = await next_event(ws, "input_audio_buffer.speech_stopped")
    tap.ok(done["response"]["status"] == "completed"
           and started["audio_start_ms"] >= 0 and stopped["item_id"]
           == started["item_id"],
           "caller speech while a tool call is pending still gives "
           "speech_started and speech_stopped", (started, stopped))
    await ws.close()


# -- twilio_rest.py: the stand-in for Twilio's REST API ---------------------

REST = os.path.join(HERE, "twilio_rest.py")
REST_ACCOUNT = "AC" + "5" * 32
REST_TOKEN = "selftest-rest-token"
REST_KEY = ("SK" + "7" * 32, "selftest-key-secret")
CALLER_ID = "+81312345678"
N_HUMAN, N_BUSY, N_NOANS, N_MACHINE, N_HOLD, N_BLOCKED, N_VOICEMAIL = (
    "+81312340001", "+81312340002", "+81312340003", "+81312340004",
    "+81312340005", "+81312340006", "+81312340007")
N_RETRY = "+81312340008"


def independent_signature(token, url, params):
    """X-Twilio-Signature computed apart from the peers' own code, from
    Twilio's description: URL, then every POST parameter name followed by
    its value, sorted by name; HMAC-SHA1 with the auth token; base64."""
    import hashlib
    data = url.encode()
    for name in sorted(params):
        data += name.encode() + params[name].encode()
    return base64.b64encode(hmac.new(token.encode(), data,
                                     hashlib.sha1).digest()).decode()


class Stub:
    """The customer's side: a webhook server (a thread) and a Media
    Streams WebSocket server (on the test's loop)."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        self.requests = []
        self.lock = threading.Lock()
        self.streams = []
        stub = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                self.serve()

            def do_GET(self):
                self.serve()

            def serve(self):
                import urllib.parse
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n).decode()
                path, _, query = self.path.partition("?")
                params = dict(urllib.parse.parse_qsl(
                    body if self.command == "POST" else query,
                    keep_blank_values=True))
                full = f"http://127.0.0.1:{stub.port}{self.path}"
                sig = self.headers.get("X-Twilio-Signature", "")
                ok = hmac.compare_digest(sig, independent_signature(
                    REST_TOKEN, full, params if self.command == "POST"
                    else {}))
                with stub.lock:
                    stub.requests.append({"path": path, "params": params,
                                          "method": self.command,
                                          "sig_ok": ok, "t": time.time()})
                out = stub.answer(path, params).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def stream_twiml(self, ws_path):
        return ('<?xml version="1.0" encoding="UTF-8"?><Response>'
                f'<Connect action="{self.url("/after")}">'
                f'<Stream url="ws://127.0.0.1:{self.ws_port}{ws_path}">'
                '<Parameter name="agent" value="sales"/>'
                '<Parameter name="note" value="山田 &amp; &lt;様&gt;"/>'
                '</Stream></Connect></Response>')

    def answer(self, path, params):
        if path == "/voice":
            return self.stream_twiml("/media")
        if path == "/voice-hold":
            return self.stream_twiml("/media-hold")
        if path == "/voice-amd":
            if params.get("AnsweredBy", "").startswith("machine"):
                return "<Response><Hangup/></Response>"
            return self.stream_twiml("/media")
        if path == "/after":
            return ("<Response><Say language=\"ja-JP\">ありがとうございました"
                    "</Say><Hangup/></Response>")
        return ""

    async def start_ws(self):
        async def handler(ws, path):
            entry = {"path": path, "sig": ws.request_headers.get(
                "X-Twilio-Signature"), "msgs": [], "closed": None}
            self.streams.append(entry)
            try:
                if path == "/media":
                    async def reader():
                        async for m in ws:
                            entry["msgs"].append(json.loads(m))
                    try:
                        await asyncio.wait_for(reader(), 1.0)
                    except asyncio.TimeoutError:
                        pass
                    entry["closed"] = "stub"
                    await ws.close(1000)
                else:
                    async for m in ws:
                        entry["msgs"].append(json.loads(m))
                    entry["closed"] = "peer"
            except ConnectionClosed:
                entry["closed"] = entry["closed"] or "peer"
        self.ws = await websockets.serve(handler, "127.0.0.1", 0,
                                         compression=None)
        self.ws_port = self.ws.sockets[0].getsockname()[1]

    def of(self, call_sid, path=None):
        with self.lock:
            return [r for r in self.requests
                    if r["params"].get("CallSid") == call_sid
                    and (path is None or r["path"] == path)]

    def close(self):
        self.srv.shutdown()
        self.ws.close()


def rest_call(port, method, path, params=None, auth=None, conn=None,
              ca=None, query=None):
    """One API request (blocking: run it with asyncio.to_thread)."""
    import http.client
    import urllib.parse
    if conn is None:
        conn = (http.client.HTTPSConnection("localhost", port, timeout=5,
                                            context=ssl.create_default_context(
                                                cafile=ca))
                if ca is not None else
                http.client.HTTPConnection("127.0.0.1", port, timeout=5))
    headers = {}
    if auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode()
    body = None
    if params is not None:
        body = urllib.parse.urlencode(params, doseq=True)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if query:
        path += "?" + urllib.parse.urlencode(query)
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = json.loads(resp.read() or b"null")
    return resp.status, dict(resp.getheaders()), data, conn


def calls_path(account=REST_ACCOUNT, sid=None):
    return (f"/2010-04-01/Accounts/{account}/Calls"
            + (f"/{sid}" if sid else "") + ".json")


async def start_rest(procs, name, *args):
    ready = os.path.join(procs.tmp, name + ".ready")
    log = open(os.path.join(procs.tmp, name + ".log"), "w")
    proc = await asyncio.create_subprocess_exec(
        PY, REST, "--listen", "127.0.0.1:0", "--ready-file", ready,
        "--account-sid", REST_ACCOUNT, "--auth-token", REST_TOKEN,
        *args, stdout=log, stderr=subprocess.STDOUT)
    procs.procs.append(proc)
    for _ in range(100):
        if os.path.exists(ready):
            with open(ready) as f:
                return proc, json.load(f), log.name
        if proc.returncode is not None:
            break
        await asyncio.sleep(0.05)
    with open(log.name) as f:
        raise RuntimeError(f"twilio_rest {name} did not start:\n" + f.read())


async def test_twilio_rest(tap, procs, tmp):
    auth = (REST_ACCOUNT, REST_TOKEN)
    stub = Stub()
    await stub.start_ws()
    record = os.path.join(tmp, "rest.jsonl")
    _, info, log = await start_rest(
        procs, "rest", "--record", record, "--api-key", ":".join(REST_KEY),
        "--caller-id", CALLER_ID, "--cps", "50", "--ring-ms", "150",
        "--call-ms", "2500", "--amd-ms", "100",
        "--outcome", f"{N_BUSY}=busy", "--outcome", f"{N_NOANS}=no-answer",
        "--outcome", f"{N_MACHINE}=machine",
        "--outcome", f"{N_VOICEMAIL}=machine")
    port = info["port"]
    tap.ok(port > 0 and info["url"] == f"http://127.0.0.1:{port}",
           "twilio_rest: --listen 127.0.0.1:0 writes the port to the ready "
           "file", info)

    async def api(*a, **kw):
        return await asyncio.to_thread(rest_call, port, *a, **kw)

    def create(to, url="/voice", auth=auth, **extra):
        p = {"To": to, "From": CALLER_ID, "Url": stub.url(url),
             "StatusCallback": stub.url("/status"),
             "StatusCallbackEvent": ["initiated", "ringing", "answered",
                                     "completed"]}
        p.update(extra)
        return api("POST", calls_path(), p, auth=auth)

    # authentication, both credential kinds
    st, hdr, body, conn = await create(N_HUMAN)
    human = body
    st2, _, got, conn2 = await asyncio.to_thread(
        rest_call, port, "GET", calls_path(sid=human["sid"]), None,
        REST_KEY, conn)
    tap.ok(st == 201 and body["status"] == "queued"
           and body["sid"].startswith("CA") and len(body["sid"]) == 34
           and body["to"] == N_HUMAN and body["from"] == CALLER_ID
           and body["account_sid"] == REST_ACCOUNT
           and body["direction"] == "outbound-api"
           and body["uri"] == calls_path(sid=body["sid"])
           and body["date_created"].endswith("+0000")
           and st2 == 200 and got["sid"] == body["sid"] and conn2 is conn,
           "account SID + auth token creates a call (201, Call resource, "
           "queued); an API key fetches it on the same keep-alive "
           "connection", (st, body, st2, got))
    conn.close()
    want401 = {"code": 20003, "message": "Authenticate",
               "more_info": "https://www.twilio.com/docs/errors/20003",
               "status": 401,
               "detail": "Your AccountSid or AuthToken was incorrect."}
    refused = [await create(N_HUMAN, auth=a) for a in (
        (REST_ACCOUNT, "wrong"), (REST_KEY[0], "wrong"), None)]
    other = await api("GET", calls_path(account="AC" + "6" * 32), auth=auth)
    tap.ok(all(r[0] == 401 and r[2] == want401
               and r[1].get("WWW-Authenticate") == 'Basic realm="Twilio API"'
               for r in refused + [other]),
           "a wrong token, a wrong key secret, no credentials, another "
           "account's URL: 401 with code 20003",
           [(r[0], r[2]) for r in refused + [other]])

    # numbers
    bad = {
        "090-1234-5678": (21211, "The 'To' number 090-1234-5678 is not a "
                          "valid phone number."),
        "+8131234": (21211, "The 'To' number +8131234 is not a valid phone "
                     "number."),
    }
    results = {}
    for to, want in bad.items():
        st, _, b, _ = await create(to)
        results[to] = (st, b.get("code"), b.get("message"))
    st, _, b, _ = await create(N_HUMAN, From="+81399999999")
    results["from"] = (st, b.get("code"), b.get("message"))
    st, _, b, _ = await create(N_HUMAN, From="sales")
    results["from-bad"] = (st, b.get("code"))
    tap.ok(all(results[k] == (400, *v) for k, v in bad.items())
           and results["from"] == (400, 21210, "The source phone number "
                                   "provided, +81399999999, is not yet "
                                   "verified for your account. You may only "
                                   "make calls from phone numbers that "
                                   "you've verified or purchased from "
                                   "Twilio.")
           and results["from-bad"] == (400, 21212),
           "invalid To: 400/21211; From not the account's: 400/21210; a "
           "malformed From: 400/21212", results)

    # the calls play out
    st, _, busy, _ = await create(N_BUSY)
    st, _, noans, _ = await create(N_NOANS)
    st, _, machine, _ = await create(N_MACHINE, url="/voice-amd",
                                     MachineDetection="Enable")
    st, _, vmail, _ = await create(N_VOICEMAIL, url="/voice-amd",
                                   MachineDetection="DetectMessageEnd",
                                   AsyncAmd="true",
                                   AsyncAmdStatusCallback=stub.url("/amd"))

    def done(sid):
        return [r for r in read_jsonl(record)
                if r["kind"] == "call_done" and r["call_sid"] == sid]
    for c in (human, busy, noans, machine, vmail):
        await wait_for(lambda: done(c["sid"]), 15, f"call {c['to']} ends")

    # the answered call
    sid = human["sid"]
    voice = stub.of(sid, "/voice")
    after = stub.of(sid, "/after")
    status = stub.of(sid, "/status")
    p = voice[0]["params"] if voice else {}
    tap.ok(len(voice) == 1 and voice[0]["method"] == "POST"
           and voice[0]["sig_ok"] and p.get("Direction") == "outbound-api"
           and p.get("CallStatus") == "in-progress"
           and p.get("AccountSid") == REST_ACCOUNT
           and p.get("From") == CALLER_ID and p.get("To") == N_HUMAN
           and p.get("ApiVersion") == "2010-04-01"
           and "AnsweredBy" not in p,
           "answered: the Url is POSTed with the call's parameters and a "
           "valid X-Twilio-Signature (checked with an independent HMAC)",
           voice)
    media = [s for s in stub.streams if s["path"] == "/media"
             and any(m.get("event") == "start"
                     and m["start"]["callSid"] == sid for m in s["msgs"])]
    start = [m for s in media for m in s["msgs"]
             if m.get("event") == "start"]
    ws_url = f"ws://127.0.0.1:{stub.ws_port}/media"
    tap.ok(len(media) == 1 and media[0]["sig"] == independent_signature(
               REST_TOKEN, ws_url, {})
           and start[0]["start"]["customParameters"]
           == {"agent": "sales", "note": "山田 & <様>"}
           and start[0]["start"]["accountSid"] == REST_ACCOUNT
           and any(m.get("event") == "media" for m in media[0]["msgs"]),
           "<Connect><Stream>: a signed upgrade, start with the "
           "<Parameter>s as customParameters, then media",
           [(s["sig"], s["msgs"][:2]) for s in media])
    call_done = done(sid)[0]
    tap.ok(len(after) == 1 and after[0]["sig_ok"]
           and after[0]["params"].get("CallStatus") == "in-progress"
           and [v["verb"] for v in call_done["twiml"]]
           == ["Connect", "Say", "Hangup"]
           and call_done["twiml"][0]["ended_by"] == "gateway",
           "the stream closed by the gateway: <Connect action> is POSTed "
           "(signed) and its TwiML (Say, Hangup) is run", (after, call_done))
    seqs = [r["params"].get("SequenceNumber") for r in status]
    states = [r["params"].get("CallStatus") for r in status]
    last = status[-1]["params"] if status else {}
    tap.ok(states == ["initiated", "ringing", "in-progress", "completed"]
           and seqs == ["0", "1", "2", "3"]
           and all(r["sig_ok"] and r["params"].get("CallbackSource")
                   == "call-progress-events" and r["params"].get("Timestamp")
                   for r in status)
           and "CallDuration" not in status[2]["params"]
           and int(last.get("CallDuration", "0")) >= 1,
           "status callbacks: initiated, ringing, in-progress, completed; "
           "SequenceNumber 0-3, signed, CallDuration on completed only",
           [r["params"] for r in status])
    st, _, res, _ = await api("GET", calls_path(sid=sid), auth=auth)
    tap.ok(st == 200 and res["status"] == "completed"
           and int(res["duration"]) >= 1 and res["start_time"]
           and res["end_time"], "the Call resource ends completed, with "
           "its duration", res)

    # busy, no-answer, machine
    def cb(c):
        return [(r["params"].get("CallStatus"),
                 r["params"].get("CallDuration"),
                 r["params"].get("AnsweredBy"))
                for r in stub.of(c["sid"], "/status")]
    tap.ok(cb(busy) == [("initiated", None, None), ("ringing", None, None),
                        ("busy", "0", None)]
           and cb(noans) == [("initiated", None, None),
                             ("ringing", None, None),
                             ("no-answer", "0", None)]
           and not stub.of(busy["sid"], "/voice")
           and not stub.of(noans["sid"], "/voice"),
           "busy and no-answer: initiated, ringing, then the final status "
           "with CallDuration 0; the Url is never requested",
           (cb(busy), cb(noans)))
    amd = stub.of(machine["sid"], "/voice-amd")
    tap.ok(len(amd) == 1 and amd[0]["params"].get("AnsweredBy")
           == "machine_start" and amd[0]["sig_ok"]
           and cb(machine)[2:] == [("in-progress", None, "machine_start"),
                                   ("completed", "0", "machine_start")]
           and done(machine["sid"])[0]["twiml"][0]["verb"] == "Hangup",
           "machine with MachineDetection=Enable: AnsweredBy=machine_start "
           "in the webhook and the callbacks; the <Hangup/> is obeyed",
           (amd, cb(machine)))

    vm_voice = stub.of(vmail["sid"], "/voice-amd")
    vm_amd = stub.of(vmail["sid"], "/amd")
    tap.ok(len(vm_voice) == 1 and "AnsweredBy" not in vm_voice[0]["params"]
           and len(vm_amd) == 1 and vm_amd[0]["sig_ok"]
           and vm_amd[0]["params"].get("AnsweredBy") == "machine_end_beep"
           and vm_amd[0]["params"].get("MachineDetectionDuration") == "100"
           and vm_amd[0]["t"] > vm_voice[0]["t"]
           and cb(vmail)[-1] == ("completed", cb(vmail)[-1][1],
                                 "machine_end_beep"),
           "AsyncAmd: the Url at once without AnsweredBy, then a signed "
           "AsyncAmdStatusCallback with machine_end_beep",
           (vm_voice, vm_amd, cb(vmail)))

    # hang up a live call through the API
    st, _, hold, _ = await create(N_HOLD, url="/voice-hold")
    await wait_for(lambda: [s for s in stub.streams
                            if s["path"] == "/media-hold"
                            and s["msgs"][1:2]], 10, "the held stream starts")
    st, _, upd, _ = await api("POST", calls_path(sid=hold["sid"]),
                              {"Status": "completed"}, auth=auth)
    held = [s for s in stub.streams if s["path"] == "/media-hold"][0]
    # the end, the socket's close and the last callback come in any order
    # (callbacks are sent beside the call): all of them, bounded
    try:
        await wait_for(lambda: done(hold["sid"]) and held["closed"]
                       and cb(hold) and cb(hold)[-1][0] == "completed",
                       10, "the held call ends, closed and called back")
    except asyncio.TimeoutError:
        pass
    tap.ok(st == 200 and held["msgs"][-1].get("event") == "stop"
           and held["closed"] == "peer"
           and done(hold["sid"])[0]["status"] == "completed"
           and cb(hold)[-1][0] == "completed"
           and not stub.of(hold["sid"], "/after"),
           "POST Calls/{sid}.json Status=completed: stop, the socket "
           "closed, the call completed, no action request",
           (st, held["msgs"][-1:], cb(hold)))

    # list by To, paging
    st, _, lst, _ = await api("GET", calls_path(), auth=auth,
                              query={"To": N_BUSY})
    st2, _, page, _ = await api("GET", calls_path(), auth=auth,
                                query={"PageSize": "2"})
    tap.ok(st == 200 and [c["sid"] for c in lst["calls"]] == [busy["sid"]]
           and lst["calls"][0]["status"] == "busy"
           and lst["next_page_uri"] is None and lst["page"] == 0
           and st2 == 200 and len(page["calls"]) == 2
           and "Page=1" in (page["next_page_uri"] or "")
           and page["page_size"] == 2,
           "GET Calls.json?To= lists that number's calls; PageSize pages",
           (lst, page))
    st, _, b, _ = await api("GET", calls_path(sid="CA" + "0" * 32),
                            auth=auth)
    tap.ok(st == 404 and b["code"] == 20404, "an unknown CallSid: 404/20404",
           b)
    st, _, summ, _ = await api("GET", "/_stand_in/summary")
    tap.ok(st == 200 and summ["calls_created"] == 6
           and summ["outcomes"] == {"completed": 4, "busy": 1,
                                    "no-answer": 1},
           "GET /_stand_in/summary counts calls and outcomes", summ)

    # rate limit, 5xx, CPS pacing, script errors, SIGTERM summary
    script = os.path.join(tmp, "rest-script.json")
    with open(script, "w") as f:
        json.dump({"*": {"outcome": "busy"},
                   N_BLOCKED: {"error": 21216},
                   N_RETRY: {"ring_ms": 10, "attempts": [
                       {"error": 21217}, {"outcome": "no-answer"},
                       {"outcome": "completed", "call_ms": 100}]}}, f)
    proc2, info2, log2 = await start_rest(
        procs, "rest-rl", "--rate-limit", "3", "--cps", "2",
        "--fail-next", "1:500", "--script", script, "--ring-ms", "50")

    async def api2(*a, **kw):
        return await asyncio.to_thread(rest_call, info2["port"], *a, **kw)
    mk = {"From": CALLER_ID, "Url": stub.url("/voice")}
    first = await api2("POST", calls_path(), dict(mk, To=N_HUMAN), auth=auth)
    t0 = time.time()
    burst = [await api2("POST", calls_path(), dict(mk, To=N_HUMAN),
                        auth=auth) for _ in range(5)]
    elapsed = time.time() - t0
    codes = [(r[0], r[2].get("code")) for r in burst]
    tap.ok(first[0] == 500 and first[2] == {
               "code": 20500, "message": "Internal Server Error",
               "more_info": "https://www.twilio.com/docs/errors/20500",
               "status": 500}
           and codes == [(201, None)] * 3 + [(429, 20429)] * 2
           and burst[3][2] == {"code": 20429, "message": "Too Many Requests",
                               "more_info": "https://www.twilio.com/docs/"
                               "errors/20429", "status": 429},
           "--fail-next 1:500 answers 500/20500 once; --rate-limit 3: "
           "the 4th and 5th create in a second get 429/20429",
           (first[:3:2], codes, elapsed))
    queue = [int(r[2]["queue_time"]) for r in burst[:3]]
    tap.ok(queue[0] < queue[1] < queue[2] and queue[2] - queue[0] >= 800,
           "--cps 2: calls created together are queued half a second apart "
           "(queue_time)", queue)
    ok = await wait_for_async(lambda: api2("POST", calls_path(),
                                           dict(mk, To=N_HUMAN), auth=auth),
                              lambda r: r[0] == 201, 3)
    tap.ok(ok is not None, "a create once the second has passed succeeds")
    await api2("POST", "/_stand_in/fail", query={"count": "2",
                                                  "status": "503"})
    fails = [(await api2("GET", calls_path(), auth=auth))[0:3:2]
             for _ in range(3)]
    tap.ok([f[0] for f in fails] == [503, 503, 200]
           and fails[0][1]["code"] == 20503,
           "POST /_stand_in/fail?count=2&status=503: two 503 (20503), then "
           "normal answers", fails)
    st, _, b, _ = await api2("POST", calls_path(), dict(mk, To=N_BLOCKED),
                             auth=auth)
    tap.ok(st == 400 and b == {
               "code": 21216, "message": f"Account not allowed to call "
               f"{N_BLOCKED}", "more_info":
               "https://www.twilio.com/docs/errors/21216", "status": 400},
           "a scripted number refused with 21216", b)
    tries = []
    for _ in range(4):
        tries.append(await wait_for_async(
            lambda: api2("POST", calls_path(), dict(mk, To=N_RETRY),
                         auth=auth), lambda r: r[0] != 429, 3))
    ends = []
    for r in tries[1:]:
        end = await wait_for_async(
            lambda: api2("GET", calls_path(sid=r[2].get("sid", "CA0")),
                         auth=auth),
            lambda g: g[0] != 200 or g[2]["status"] not in (
                "queued", "initiated", "ringing", "in-progress"), 10)
        ends.append(end and end[2].get("status"))
    tap.ok(tries[0][0] == 400 and tries[0][2].get("code") == 21217
           and [t[0] for t in tries[1:]] == [201] * 3
           and ends == ["no-answer", "completed", "completed"],
           "script attempts: successive creates to a number play its "
           "entries in turn, the last one repeats",
           ([t[:3:2] for t in tries], ends))
    rec2 = None
    proc2.terminate()
    await asyncio.wait_for(proc2.wait(), 5)
    with open(log2) as f:
        for line in f:
            if line.startswith("twilio_rest: summary "):
                rec2 = json.loads(line[len("twilio_rest: summary "):])
    tap.ok(rec2 is not None and rec2["calls_created"] == 7
           and rec2["create_peak_per_s"] >= 3
           and rec2["error_codes"].get("20429", 0) >= 2,
           "SIGTERM prints the summary (calls created, the create rate "
           "measured, error codes)", rec2)

    # TLS with a CA made at test time
    d = os.path.join(tmp, "rest-tls")
    os.mkdir(d)
    certs = await make_certs(d)
    _, info3, _ = await start_rest(procs, "rest-tls", "--tls-cert",
                                   f"{certs}/srv.pem", "--tls-key",
                                   f"{certs}/srv.key")
    st, _, _, _ = await asyncio.to_thread(
        rest_call, info3["port"], "GET", calls_path(), None, auth,
        ca=f"{certs}/ca.pem")
    import http.client
    try:
        await asyncio.to_thread(rest_call, info3["port"], "GET",
                                calls_path(), None, auth,
                                http.client.HTTPSConnection(
                                    "localhost", info3["port"], timeout=5))
        outcome = "accepted"
    except ssl.SSLCertVerificationError:
        outcome = "verify failed"
    tap.ok(info3["url"].startswith("https://") and st == 200
           and outcome == "verify failed",
           "--tls-cert/--tls-key: verified with the test CA, refused "
           "without it", (info3, st, outcome))
    stub.close()


async def wait_for_async(make, cond, timeout):
    """Repeats a request until its answer meets cond, for a bounded time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = await make()
        if cond(r):
            return r
        await asyncio.sleep(0.1)
    return None


async def main():
    tap = Tap()
    tmp = tempfile.mkdtemp(prefix="twirt-peers-")
    procs = Procs(tmp)
    started_at = time.monotonic()
    try:
        test_units(tap)
        scen = os.path.join(tmp, "scenarios")
        shutil.copytree(peer_scenario.SCENARIO_DIR, scen)
        for doc in (SHORT, FUNCTION, WAV, TOOLS):
            with open(os.path.join(scen, doc["name"] + ".json"), "w") as f:
                json.dump(doc, f, ensure_ascii=False)
        records = os.path.join(tmp, "sim.jsonl")
        _, info = await procs.sim("sim", "--scenario-dir", scen, "--record",
                                  records)
        tap.ok(info.get("port", 0) > 0 and info["url"].startswith("ws://"),
               "--listen 127.0.0.1:0 writes the chosen port to the ready "
               "file", info)
        port = info["port"]
        # The calls take ~18 s of real time; the other checks run meanwhile.
        calls = await test_calls(tap, tmp, port, records, procs)
        await test_handshake(tap, port)
        await test_session(tap, port)
        await test_function_call(tap, port)
        await test_tool_calls(tap, port, records)
        await test_tool_backend(tap, procs, tmp)
        await test_twilio_rest(tap, procs, tmp)
        await test_failures(tap, port, procs)
        await test_tls(tap, tmp, procs)
        await test_bench(tap, procs)
        await check_calls(tap, *calls, records)
    except Exception as e:
        import traceback
        tap.ok(False, f"self-test crashed: {type(e).__name__}: {e}",
               traceback.format_exc())
    finally:
        procs.stop_all()
        tap.note(f"finished in {time.monotonic() - started_at:.1f} s; "
                 f"work files in {tmp}" if tap.failed else
                 f"finished in {time.monotonic() - started_at:.1f} s")
        if not tap.failed:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"1..{tap.n}", flush=True)
    return 1 if tap.failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
