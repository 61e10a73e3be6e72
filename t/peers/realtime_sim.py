#!/usr/bin/python3
"""A local stand-in for the OpenAI Realtime API (GA interface).

Run it with Debian's interpreter, /usr/bin/python3: it needs the
python3-websockets package (10.4), an implementation independent of
twirt's own frame code.

    /usr/bin/python3 t/peers/realtime_sim.py --listen 127.0.0.1:0 \
        --scenario-dir t/peers/scenarios --ready-file /tmp/sim.ready \
        --record /tmp/sim.jsonl

It speaks the GA event shapes of OpenAI's Realtime API: validates
session.update like the real service, runs a VAD on the energy of the
caller's audio, answers each detected turn from a scenario file with
faster-than-real-time audio, honours barge-in and truncate exactly as the
real service does (same error texts), scripts tool calls, and can fail in
every way the gateway must survive (--fail). t/peers/README.md has the
whole reference.
"""

import argparse
import asyncio
import base64
import ctypes
import hashlib
import json
import logging
import math
import os
import random
import re
import signal
import socket
import ssl
import string
import struct
import sys
import time
import traceback
import urllib.parse
from http import HTTPStatus

import websockets
from websockets.exceptions import ConnectionClosed
from websockets.legacy.server import WebSocketServerProtocol

import peer_audio
import peer_scenario
import realtime_session

CLIENT_EVENTS = ("session.update", "input_audio_buffer.append",
                 "input_audio_buffer.commit", "input_audio_buffer.clear",
                 "conversation.item.create", "conversation.item.retrieve",
                 "conversation.item.truncate", "conversation.item.delete",
                 "response.create", "response.cancel",
                 "output_audio_buffer.clear")

VAD_WINDOW_MS = 20

# The value says what ARG means. refuse, reset, http_* and stall_handshake
# act before the upgrade; the others inside an established session.
FAIL_KINDS = {
    "refuse": None, "reset": None, "http_401": None, "http_429": None,
    "stall_handshake": None, "handshake_extension": None,
    "handshake_protocol": None, "handshake_http10": None,
    "close_1011": "ms", "invalid_json": "ms", "oversized_frame": "bytes",
    "session_expired": "ms", "server_error": "ms", "bad_audio": "ms",
    "huge_usage": "ms", "hostile_text": "ms",
    "reject_session_update": None, "insufficient_quota": None,
    "incomplete_responses": None, "transcription_failed": None,
    "upgrade_delay": "ms", "idle_close": "ms", "idle_eof": "ms",
    "idle_event": "ms", "failed_responses": "count",
}

# act on a connection the client has sent nothing on since the upgrade
IDLE_KINDS = ("idle_close", "idle_eof", "idle_event")

_rng = random.Random(os.urandom(16))
_ALNUM = string.ascii_letters + string.digits


def new_id(prefix):
    """Ids shaped like the real ones: prefix + 21 base62 characters."""
    return prefix + "".join(_rng.choices(_ALNUM, k=21))


def parse_fail(spec):
    """'close_1011=3000' -> ('close_1011', 3000); raises ValueError."""
    kind, _, arg = spec.partition("=")
    if kind not in FAIL_KINDS:
        raise ValueError(f"unknown failure {kind!r}; known: "
                         + ", ".join(sorted(FAIL_KINDS)))
    if FAIL_KINDS[kind] is None:
        if arg:
            raise ValueError(f"failure {kind!r} takes no argument")
        return kind, None
    if arg == "" and kind != "oversized_frame":
        return kind, 0
    if not arg.isdigit():
        raise ValueError(f"failure {kind!r} needs ={FAIL_KINDS[kind]} "
                         "(a non-negative integer)")
    return kind, int(arg)


def utf8_tokens(text):
    """About one token per 3 UTF-8 bytes: one per Japanese character,
    roughly one per short English word."""
    return math.ceil(len(text.encode("utf-8")) / 3)


class Recorder:
    """One JSON line per event, each in one write(2) to the file opened
    for appending, so that tests can poll it and that --procs workers
    writing lines of any length never interleave their parts."""

    def __init__(self, path):
        self.f = open(path, "ab", buffering=0) if path else None

    def write(self, conn, t, direction, fields):
        if self.f is None:
            return
        line = {"t": round(t, 1), "conn": conn, "dir": direction}
        line.update(fields)
        data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
        if self.f.write(data) != len(data):
            raise OSError(f"record: a short write of {len(data)} bytes")


class Sim:
    """Process-wide settings; one Session per connection holds the rest."""

    def __init__(self, args, proc_index=0, procs=1):
        self.args = args
        self.fails = [parse_fail(f) for f in args.fail]
        self.bench = args.bench
        self.recorder = Recorder(args.record)
        self.scenario_dir = args.scenario_dir
        self.default_scenario = (peer_scenario.load(args.scenario)
                                 if args.scenario else
                                 peer_scenario.empty())
        self.proc_index = proc_index
        self.procs = procs
        self.conn_counter = 0
        self.fail_conns = args.fail_conns
        self.fail_after = args.fail_after
        self.session_limit = args.session_limit

    def next_conn(self):
        # Unique across --procs workers: worker i numbers i+1, i+1+procs...
        self.conn_counter += 1
        return (self.conn_counter - 1) * self.procs + self.proc_index + 1

    def load_scenario(self, name):
        if not self.scenario_dir or not re.fullmatch(r"[\w.-]+", name):
            return None
        return peer_scenario.load(os.path.join(self.scenario_dir,
                                               name + ".json"))


JSON_TYPE = [("Content-Type", "application/json")]


def json_error_body(code, message, etype="invalid_request_error"):
    return json.dumps({"error": {"message": message, "type": etype,
                                 "param": None, "code": code}}).encode()


class SimProtocol(WebSocketServerProtocol):
    """Decides everything that happens before the 101: path, auth, the
    pre-upgrade failures, and the handshake record."""

    sim = None    # set by serve()

    def data_received(self, data):
        # the first bytes after the upgrade (a client event or a close),
        # recorded at once: the moment the connection stopped being idle
        state = getattr(getattr(self, "state", None), "name", "")
        if state == "OPEN" and not getattr(self, "first_data", False):
            self.first_data = True
            self.sim.recorder.write(self.conn,
                                    (time.monotonic() - self.t0) * 1000,
                                    "data", {"bytes": len(data)})
        return super().data_received(data)

    def eof_received(self):
        # the client closed its side: recorded at once, before anything
        # the event loop does next (a new connection's handshake)
        if hasattr(self, "t0"):
            self.sim.recorder.write(self.conn,
                                    (time.monotonic() - self.t0) * 1000,
                                    "eof", {})
        return super().eof_received()

    async def process_request(self, path, headers):
        sim = self.sim
        self.conn = sim.next_conn()
        self.t0 = time.monotonic()
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        self.query = query
        # Tests may point one gateway location at ?sim_fail=...: failures
        # per URL without a simulator process per failure.
        # --fail-conns N: the --fail kinds act on the first N connections;
        # --fail-after N: on the connections after the first N
        self.fails = (list(sim.fails) if (sim.fail_conns is None
                                          or self.conn <= sim.fail_conns)
                      and (sim.fail_after is None
                           or self.conn > sim.fail_after) else [])
        for spec in query.get("sim_fail", []):
            for one in spec.split(","):
                try:
                    self.fails.append(parse_fail(one))
                except ValueError as e:
                    return (HTTPStatus(400), JSON_TYPE,
                            json_error_body("invalid_value", str(e)))
        kinds = {k for k, _ in self.fails}
        recorded = {}
        for name, value in headers.raw_items():
            if name.lower() == "authorization":
                key = value[7:] if value[:7].lower() == "bearer " else value
                value = f"Bearer <redacted len={len(key.strip())}>"
            recorded[name] = (recorded[name] + ", " + value
                              if name in recorded else value)
        # at: the wall clock (epoch seconds), to order events across peers
        sim.recorder.write(self.conn, 0, "handshake",
                           {"path": path, "headers": recorded,
                            "at": round(time.time(), 4)})
        for kind, arg in self.fails:
            if kind == "upgrade_delay":
                await asyncio.sleep(arg / 1000)
        if "reset" in kinds:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                            struct.pack("ii", 1, 0))
            self.transport.abort()
            await asyncio.shield(self.connection_lost_waiter)
            return None
        if "stall_handshake" in kinds:
            # Read the request, never answer: the gateway's handshake
            # timeout must fire. Ends when the client goes away.
            await asyncio.shield(self.connection_lost_waiter)
            return None
        bad = kinds & {"handshake_extension", "handshake_protocol",
                       "handshake_http10"}
        if bad:
            # A 101 with a right Sec-WebSocket-Accept that breaks RFC 6455
            # section 4.1 otherwise: the client must fail the connection.
            key = headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1(
                (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()
            ).digest()).decode()
            lines = ["HTTP/1.0 101 Switching Protocols"
                     if "handshake_http10" in bad else
                     "HTTP/1.1 101 Switching Protocols",
                     "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Accept: " + accept]
            if "handshake_extension" in bad:
                lines.append("Sec-WebSocket-Extensions: permessage-deflate")
            if "handshake_protocol" in bad:
                lines.append("Sec-WebSocket-Protocol: realtime")
            self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())
            await asyncio.shield(self.connection_lost_waiter)
            return None
        if url.path.rstrip("/") != "/v1/realtime":
            return (HTTPStatus(404), JSON_TYPE,
                    json_error_body(None, f"Invalid URL (GET {url.path})"))
        auth = headers.get("Authorization", "")
        m = re.fullmatch(r"Bearer\s+(\S+)\s*", auth, re.IGNORECASE)
        if "http_401" in kinds or not m:
            msg = ("You didn't provide an API key. You need to provide your "
                   "API key in an Authorization header using Bearer auth "
                   "(i.e. Authorization: Bearer YOUR_KEY)." if not m else
                   "Incorrect API key provided (simulated by --fail "
                   "http_401).")
            return (HTTPStatus(401), JSON_TYPE,
                    json_error_body("invalid_api_key", msg))
        if "http_429" in kinds:
            return (HTTPStatus(429), JSON_TYPE + [("Retry-After", "1")],
                    json_error_body("rate_limit_exceeded",
                                    "Rate limit reached for requests "
                                    "(simulated by --fail http_429).",
                                    etype="requests"))
        self.api_key = m.group(1)
        return None


class Item:
    __slots__ = ("id", "type", "role", "bpm", "sent_bytes", "truncated_ms",
                 "audio_ms", "call_id")

    def __init__(self, item_id, itype, role=None, bpm=8):
        self.id = item_id
        self.type = itype
        self.role = role
        self.bpm = bpm                # bytes per ms of the item's format
        self.sent_bytes = 0           # assistant audio sent so far
        self.truncated_ms = None
        self.audio_ms = 0             # user audio length
        self.call_id = None


class Response:
    def __init__(self, parts, origin):
        self.id = new_id("resp_")
        self.parts = parts            # agent parts from the scenario
        self.origin = origin          # "vad" | "client" | "function"
        self.stop = asyncio.Event()
        self.stop_reason = None
        self.task = None
        self.oob = False              # conversation "none": out of band
        self.metadata = None

    def cancel(self, reason):
        if self.stop_reason is None:
            self.stop_reason = reason
            self.stop.set()


class Session:
    """One simulated Realtime session: one WebSocket connection."""

    def __init__(self, sim, ws):
        self.sim = sim
        self.ws = ws
        self.conn = ws.conn
        self.t0 = ws.t0
        self.fails = list(ws.fails)
        self.tasks = set()
        self.closed_by_server = False
        self.session_id = new_id("sess_")
        self.conversation_id = new_id("conv_")
        model = ws.query.get("model", ["gpt-realtime"])[0]
        self.config = realtime_session.default_session(
            self.session_id, model, int(time.time()) + 3600)
        self.scenario = sim.default_scenario
        scen_q = ws.query.get("sim_scenario")
        if scen_q:
            self.select_scenario(scen_q[0])
        self.calltag = ""
        self.items = {}
        self.last_item_id = None
        self.active = None            # the Response in progress
        self.idle = asyncio.Event()
        self.idle.set()
        self.greeting_used = False
        self.assistant_spoke = False
        self.pending_calls = {}       # call_id -> agent part
        self.after_function = None
        # The calls of the last response that made any: {"calls": {call_id:
        # name}, "outputs": {call_id: output}, "after": after_tools part}.
        self.tool_round = None
        self.tool_calls = 0
        self.tool_outputs = 0
        self.protocol_problems = 0    # response.create before all outputs
        self.creates_while_active = 0
        self.oob_active = set()       # out-of-band Responses in progress
        self.out_of_band_responses = 0
        self.text_pending = False     # a client text message awaits answer
        self.segment_index = 0
        self.unanswered = []          # committed turns no response answered
        self.session_updated = False
        # audio in
        self.appended_bytes = 0
        self.audio_in_ms = 0.0        # input audio clock (ms of audio)
        self.uncommitted_ms = 0.0
        self.vad_buf = bytearray()
        self.in_speech = False
        self.speech_onset_ms = 0
        self.speech_audio_start = 0
        self.silence_run_ms = 0
        self.speech_item_id = None
        # audio out and cost
        self.audio_out = hashlib.sha1()
        self.audio_out_bytes = 0
        self.user_audio_ms = 0
        self.assistant_audio_ms = 0
        self.text_item_tokens = 0
        self.prev_input_tokens = 0
        self.tokens_used = 0
        self.responses = 0
        self.responses_failed = 0     # by failed_responses=N
        self.errors_sent = 0
        self.bench_item = f"item_bench{self.conn}"
        self.bench_events = 0
        self.client_spoke = False     # any message since the upgrade

    # -- plumbing ---------------------------------------------------------

    def now_ms(self):
        return (time.monotonic() - self.t0) * 1000

    def record(self, direction, **fields):
        self.sim.recorder.write(self.conn, self.now_ms(), direction, fields)

    def spawn(self, coro):
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def send(self, event):
        event = {"type": event["type"], "event_id": new_id("event_"),
                 **{k: v for k, v in event.items() if k != "type"}}
        if self.sim.recorder.f is not None:
            shown = event
            if event["type"] == "response.output_audio.delta":
                raw = base64.b64decode(event["delta"])
                shown = dict(event, delta={
                    "bytes": len(raw),
                    "sha1": hashlib.sha1(raw).hexdigest()})
            self.record("out", event=shown)
        # ensure_ascii=False: Japanese goes out as UTF-8, as the real
        # service sends it, so the gateway's UTF-8 handling is exercised.
        await self.ws.send(json.dumps(event, ensure_ascii=False))

    async def error(self, code, message, param=None, client_event=None,
                    etype="invalid_request_error"):
        self.errors_sent += 1
        await self.send({"type": "error", "error": {
            "type": etype, "code": code, "message": message,
            "param": param,
            "event_id": client_event.get("event_id")
            if isinstance(client_event, dict) else None}})

    async def close(self, code, reason):
        self.closed_by_server = True
        await self.ws.close(code, reason)

    # -- lifecycle --------------------------------------------------------

    async def run(self):
        ws = self.ws
        try:
            if "OpenAI-Beta" in ws.request_headers:
                # Since May 2026 the beta interface is switched off.
                await self.close(4000, "beta_api_shape_disabled")
                return
            if ws.api_key == "sk-bad":
                await self.error(
                    "invalid_api_key",
                    "Incorrect API key provided: sk-bad. You can find your "
                    "API key at https://platform.openai.com/account/api-keys.")
                await self.close(3000, "invalid_api_key")
                return
            await self.send({"type": "session.created",
                             "session": self.config})
            if self.sim.session_limit:
                self.spawn(self.expire(self.sim.session_limit))
            for kind, arg in self.fails:
                if kind in IDLE_KINDS:
                    self.spawn(self.idle_fail(kind, arg))
            async for message in ws:
                try:
                    await self.on_message(message)
                except ConnectionClosed:
                    raise
                except Exception:
                    # A simulator bug must not look like a service failure
                    # (close 1011): say so loudly and carry on.
                    traceback.print_exc()
                    self.record("note", note="SIMULATOR BUG: "
                                + traceback.format_exc(limit=3))
                    await self.error(None, "realtime_sim internal error "
                                     "(see its stderr)", etype="server_error")
        except ConnectionClosed:
            pass
        finally:
            for task in list(self.tasks):
                task.cancel()
            self.record("close", code=ws.close_code,
                        reason=ws.close_reason,
                        by="server" if self.closed_by_server else "client")
            self.record("summary", appended_bytes=self.appended_bytes,
                        audio_in_ms=round(self.audio_in_ms, 1),
                        audio_out_bytes=self.audio_out_bytes,
                        audio_out_sha1=self.audio_out.hexdigest(),
                        responses=self.responses,
                        errors_sent=self.errors_sent,
                        responses_failed=self.responses_failed,
                        tool_calls=self.tool_calls,
                        tool_outputs=self.tool_outputs,
                        protocol_problems=self.protocol_problems,
                        creates_while_active=self.creates_while_active,
                        out_of_band_responses=self.out_of_band_responses,
                        tokens=self.tokens_used,
                        scenario=self.scenario["name"],
                        calltag=self.calltag)

    def select_scenario(self, name):
        """Switch this session to scenario `name`; on a missing or broken
        file keep the current one and say so (stderr and record)."""
        try:
            scenario = self.sim.load_scenario(name)
            problem = None if scenario else f"bad scenario name {name!r}"
            fails = [parse_fail(f) for f in scenario["fail"]] \
                if scenario else []
        except (peer_scenario.ScenarioError, ValueError) as e:
            scenario, problem = None, f"scenario {name!r}: {e}"
        if scenario is None:
            self.record("note", note=f"{problem}; keeping scenario "
                        f"{self.scenario['name']!r}")
            print(f"realtime_sim: conn {self.conn}: {problem}",
                  file=sys.stderr)
            return
        self.scenario = scenario
        self.fails += fails

    def has_fail(self, kind):
        return any(k == kind for k, _ in self.fails)

    async def expire(self, limit_ms):
        """--session-limit: every session ends limit_ms after it was
        created, as the real service's do at 60 minutes: the error (its
        words), then a normal close."""
        await asyncio.sleep(max(0, limit_ms - self.now_ms()) / 1000)
        self.record("note", note="session limit")
        await self.error("session_expired",
                         "Your session hit the maximum duration of 60 "
                         "minutes.")
        await self.close(1000, "session_expired")

    # -- client events ----------------------------------------------------

    async def idle_fail(self, kind, arg):
        """MS ms after the upgrade, if the client has said nothing: close
        (1001), drop the TCP connection (no close frame), or send an
        event the client did not ask for (a server error)."""
        await asyncio.sleep(arg / 1000)
        if self.client_spoke:
            return
        self.record("note", note=f"simulated failure {kind}")
        if kind == "idle_close":
            await self.close(1001, "idle timeout")
        elif kind == "idle_eof":
            self.closed_by_server = True
            self.ws.transport.close()
        else:
            await self.error(None, "The server had an error while "
                             "processing your request (simulated by "
                             "idle_event).", etype="server_error")

    async def on_message(self, message):
        self.client_spoke = True
        if isinstance(message, bytes):
            self.record("in", binary=len(message))
            await self.error("invalid_event",
                             "Binary frames are not supported; send JSON "
                             "text frames.")
            return
        try:
            event = json.loads(message)
        except ValueError as e:
            self.record("in", raw=message[:200])
            await self.error("invalid_json",
                             f"Invalid JSON in client event: {e}.")
            return
        if not isinstance(event, dict):
            self.record("in", event=event)
            await self.error("invalid_event",
                             "Client events must be JSON objects.")
            return
        etype = event.get("type")
        if etype == "input_audio_buffer.append":
            await self.on_append(event)
            return
        self.record("in", event=event)
        if etype is None:
            await self.error("invalid_event", "The 'type' field is missing.",
                             client_event=event)
            return
        handler = {
            "session.update": self.on_session_update,
            "input_audio_buffer.commit": self.on_commit,
            "input_audio_buffer.clear": self.on_clear,
            "conversation.item.create": self.on_item_create,
            "conversation.item.retrieve": self.on_item_retrieve,
            "conversation.item.truncate": self.on_truncate,
            "conversation.item.delete": self.on_item_delete,
            "response.create": self.on_response_create,
            "response.cancel": self.on_response_cancel,
        }.get(etype)
        if handler is None:
            if etype == "output_audio_buffer.clear":
                await self.error("invalid_value",
                                 "output_audio_buffer.clear is only "
                                 "supported for WebRTC connections.",
                                 param="type", client_event=event)
                return
            await self.error(
                "invalid_value",
                f"Invalid value: '{etype}'. Supported values are: "
                + ", ".join(f"'{t}'" for t in CLIENT_EVENTS) + ".",
                param="type", client_event=event)
            return
        await handler(event)

    # session.update

    async def on_session_update(self, event):
        s = event.get("session")
        problem = realtime_session.check_update(s, self.config,
                                                self.assistant_spoke)
        if problem:
            code, message, param = problem
            await self.error(code, message, param=param, client_event=event)
            return
        # The tags in the instructions pick this call's scenario and tag.
        instructions = s.get("instructions")
        if isinstance(instructions, str):
            m = re.search(r"\[scenario:([\w.-]+)\]", instructions)
            if m and m.group(1) != self.scenario["name"]:
                self.select_scenario(m.group(1))
            m = re.search(r"\[calltag:([^\]]*)\]", instructions)
            if m:
                self.calltag = m.group(1)
            self.record("note", note="session", scenario=self.scenario["name"],
                        calltag=self.calltag)
        if self.has_fail("reject_session_update"):
            await self.error("invalid_value",
                             "Invalid value: session.update rejected "
                             "(simulated by --fail reject_session_update).",
                             client_event=event)
            return
        realtime_session.merge_update(self.config, s)
        await self.send({"type": "session.updated", "session": self.config})
        if not self.session_updated:
            self.session_updated = True
            self.start_timed_fails()

    def start_timed_fails(self):
        for kind, arg in self.fails:
            if kind in ("close_1011", "invalid_json", "session_expired",
                        "server_error", "oversized_frame", "bad_audio",
                        "huge_usage", "hostile_text"):
                self.spawn(self.timed_fail(kind, arg))

    async def timed_fail(self, kind, arg):
        if kind != "oversized_frame":
            await asyncio.sleep(arg / 1000)
        self.record("note", note=f"simulated failure {kind}")
        if kind == "close_1011":
            await self.close(1011, "Internal server error")
        elif kind == "invalid_json":
            text = "this is not JSON {"
            self.record("out", raw=text)
            await self.ws.send(text)
        elif kind == "oversized_frame":
            head = '{"type":"sim.padding","padding":"'
            pad = max(0, arg - len(head) - 2)
            text = head + "x" * pad + '"}'
            self.record("out", raw=f"<{len(text)} bytes of sim.padding>")
            await self.ws.send(text)
        elif kind == "session_expired":
            await self.error("session_expired",
                             "Your session hit the maximum duration of 60 "
                             "minutes.")
            await self.close(1000, "session_expired")
        elif kind == "bad_audio":
            # deltas whose base64 is only padding or padded inside:
            # the gateway must drop them, never count them as audio
            for audio in ("====", "AAA", "A=AA", "AA=A", "AAAA===="):
                ev = {"type": "response.output_audio.delta",
                      "event_id": new_id("event_"),
                      "response_id": new_id("resp_"),
                      "item_id": new_id("item_"), "output_index": 0,
                      "content_index": 0, "delta": audio}
                self.record("out", event=ev)
                await self.ws.send(json.dumps(ev))
        elif kind == "hostile_text":
            # CR, LF and NUL in what a gateway logs: an error's code and
            # message, a tool's name, a transcription failure, an item id
            forged = "\r\n1999/01/01 00:00:00 [alert] 1#1: forged "
            await self.send({"type": "error", "error": {
                "type": "invalid_request_error", "code": "bad" + forged
                + "code", "message": "bad" + forged + "message\x1b[31mtail",
                "param": None, "event_id": None}})
            await self.send({
                "type": "response.function_call_arguments.done",
                "response_id": new_id("resp_"), "item_id": new_id("item_"),
                "output_index": 0, "call_id": new_id("call_"),
                "name": "evil" + forged + "tool", "arguments": "{}"})
            await self.send({
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": "item" + forged + "id", "content_index": 0,
                "error": {"type": "transcription_error",
                          "code": "bad" + forged + "transcription",
                          "message": "x", "param": None}})
        elif kind == "huge_usage":
            # a response.done whose usage no real session can reach
            big = 9223372036854775807
            ev = {"type": "response.done", "event_id": new_id("event_"),
                  "response": {"object": "realtime.response",
                               "id": new_id("resp_"), "status": "completed",
                               "output": [],
                               "usage": {"total_tokens": big,
                                         "input_tokens": big,
                                         "output_tokens": big,
                                         "input_token_details": {
                                             "audio_tokens": big,
                                             "text_tokens": 0,
                                             "cached_tokens": 0},
                                         "output_token_details": {
                                             "audio_tokens": big,
                                             "text_tokens": 0}}}}
            self.record("out", event=ev)
            await self.ws.send(json.dumps(ev))
        elif kind == "server_error":
            await self.error(None, "The server had an error while "
                             "processing your request. Sorry about that!",
                             etype="server_error")

    # input audio

    def in_format(self):
        return self.config["audio"]["input"]["format"]["type"]

    def out_format(self):
        return self.config["audio"]["output"]["format"]["type"]

    async def on_append(self, event):
        audio = event.get("audio")
        try:
            raw = base64.b64decode(audio, validate=True) \
                if isinstance(audio, str) else None
        except ValueError:
            raw = None
        if self.sim.recorder.f is not None:
            shown = dict(event)
            if raw is not None:
                shown["audio"] = {"bytes": len(raw),
                                  "sha1": hashlib.sha1(raw).hexdigest()}
            self.record("in", event=shown,
                        total_bytes=self.appended_bytes + len(raw or b""))
        if raw is None:
            await self.error("invalid_value", "Invalid 'audio': expected "
                             "base64-encoded audio.", param="audio",
                             client_event=event)
            return
        self.appended_bytes += len(raw)
        if self.sim.bench:
            await self.bench_echo(audio)
            return
        bpm = peer_audio.BYTES_PER_MS[self.in_format()]
        self.uncommitted_ms += len(raw) / bpm
        td = self.config["audio"]["input"]["turn_detection"]
        if td is None:
            self.audio_in_ms += len(raw) / bpm
            return
        self.vad_buf += raw
        window = VAD_WINDOW_MS * bpm
        while len(self.vad_buf) >= window:
            chunk = bytes(self.vad_buf[:window])
            del self.vad_buf[:window]
            start_ms = self.audio_in_ms
            self.audio_in_ms += VAD_WINDOW_MS
            await self.vad_window(chunk, start_ms, td)

    async def bench_echo(self, audio):
        # Minimal work per frame: the same base64 string goes straight back.
        self.bench_events += 1
        text = ('{"type":"response.output_audio.delta","event_id":"event_b'
                f'{self.bench_events}","response_id":"resp_bench",'
                f'"item_id":"{self.bench_item}","output_index":0,'
                f'"content_index":0,"delta":"{audio}"}}')
        if self.sim.recorder.f is not None:
            self.record("out", event={"type": "response.output_audio.delta",
                                      "item_id": self.bench_item,
                                      "delta": {"base64_len": len(audio)}})
        await self.ws.send(text)

    async def vad_window(self, chunk, start_ms, td):
        """Energy VAD: speech when the mean |sample| of a 20 ms window is
        above 200 + threshold * 1600 (threshold 0.5 -> 1000 on the 16-bit
        scale); the turn ends after silence_duration_ms of quiet windows."""
        level = peer_audio.mean_abs_amplitude(chunk, self.in_format())
        loud = level > 200 + td.get("threshold", 0.5) * 1600
        if td["type"] == "semantic_vad":
            silence_ms = realtime_session.EAGERNESS_SILENCE_MS[
                td.get("eagerness", "auto")]
        else:
            silence_ms = td.get("silence_duration_ms", 200)
        if not self.in_speech:
            if loud:
                self.in_speech = True
                self.silence_run_ms = 0
                self.speech_onset_ms = start_ms
                self.speech_item_id = new_id("item_")
                audio_start = max(0, int(start_ms
                                         - td.get("prefix_padding_ms", 300)))
                self.speech_audio_start = audio_start
                await self.send({
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": audio_start,
                    "item_id": self.speech_item_id})
                if td.get("interrupt_response", True):
                    for resp in [self.active, *self.oob_active]:
                        if resp is not None:
                            resp.cancel("turn_detected")
            return
        if loud:
            self.silence_run_ms = 0
            return
        self.silence_run_ms += VAD_WINDOW_MS
        if self.silence_run_ms < silence_ms:
            return
        self.in_speech = False
        end_ms = int(start_ms + VAD_WINDOW_MS)
        await self.send({"type": "input_audio_buffer.speech_stopped",
                         "audio_end_ms": end_ms,
                         "item_id": self.speech_item_id})
        speech_ms = end_ms - self.speech_audio_start
        await self.commit_user_audio(self.speech_item_id, speech_ms,
                                     turn_index=self.segment_index)
        index = self.segment_index
        self.segment_index += 1
        if td.get("create_response", True):
            self.spawn(self.auto_response(index))
        else:
            self.unanswered.append(index)

    async def commit_user_audio(self, item_id, audio_ms, turn_index=None,
                                client_event=None):
        self.uncommitted_ms = 0
        item = Item(item_id, "message", "user")
        item.audio_ms = audio_ms
        self.items[item_id] = item
        self.user_audio_ms += audio_ms
        previous, self.last_item_id = self.last_item_id, item_id
        await self.send({"type": "input_audio_buffer.committed",
                         "previous_item_id": previous, "item_id": item_id})
        body = {"id": item_id, "object": "realtime.item", "type": "message",
                "status": "completed", "role": "user",
                "content": [{"type": "input_audio", "transcript": None}]}
        await self.send({"type": "conversation.item.added",
                         "previous_item_id": previous, "item": body})
        await self.send({"type": "conversation.item.done",
                         "previous_item_id": previous, "item": body})
        if self.config["audio"]["input"]["transcription"] is not None:
            self.spawn(self.transcribe(item_id, audio_ms, turn_index))

    def seeded_turn(self, text):
        """A client's text item saying the scenario's next caller turn
        word for word: the conversation so far, carried into a new
        session (a gateway's session rotation).  The scenario goes on
        from the turn after it, as the conversation does."""
        turns = self.scenario["turns"]
        i = self.segment_index
        if (not self.in_speech and i < len(turns)
                and text == self.tagged(turns[i]["caller"]["text"])):
            self.segment_index += 1
            self.record("note", note="seeded turn", turn=i)

    def caller_text(self, turn_index):
        turns = self.scenario["turns"]
        if turn_index is not None and turn_index < len(turns):
            return self.tagged(turns[turn_index]["caller"]["text"])
        return ""

    def tagged(self, text):
        return text.replace("$CALLTAG", self.calltag)

    async def transcribe(self, item_id, audio_ms, turn_index):
        # Asynchronous like the real service: usually lands after the
        # response has started.
        await asyncio.sleep(self.scenario["transcription_delay_ms"] / 1000)
        if self.has_fail("transcription_failed"):
            await self.send({
                "type": "conversation.item.input_audio_transcription.failed",
                "item_id": item_id, "content_index": 0,
                "error": {"type": "transcription_error",
                          "code": "audio_unintelligible",
                          "message": "Audio could not be transcribed.",
                          "param": None}})
            return
        text = self.caller_text(turn_index)
        if text:
            await self.send({
                "type": "conversation.item.input_audio_transcription.delta",
                "item_id": item_id, "content_index": 0, "delta": text})
        audio_tokens = math.ceil(audio_ms / 100)
        out_tokens = utf8_tokens(text)
        model = (self.config["audio"]["input"]["transcription"]
                 or {}).get("model")
        if model == "whisper-1":
            # whisper-1 is billed by the duration of the audio
            usage = {"type": "duration", "seconds": audio_ms / 1000}
        else:
            usage = {"type": "tokens",
                     "total_tokens": audio_tokens + out_tokens,
                     "input_tokens": audio_tokens,
                     "input_token_details": {"text_tokens": 0,
                                             "audio_tokens": audio_tokens},
                     "output_tokens": out_tokens}
        await self.send({
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": item_id, "content_index": 0, "transcript": text,
            "logprobs": None, "usage": usage})

    async def on_commit(self, event):
        if self.uncommitted_ms < 100:
            await self.error(
                "input_audio_buffer_commit_empty",
                "Error committing input audio buffer: buffer too small. "
                "Expected at least 100ms of audio, but buffer only has "
                f"{self.uncommitted_ms:.2f}ms of audio.",
                client_event=event)
            return
        self.in_speech = False
        self.vad_buf.clear()
        index = self.segment_index
        self.segment_index += 1
        self.unanswered.append(index)
        await self.commit_user_audio(new_id("item_"),
                                     int(self.uncommitted_ms),
                                     turn_index=index)

    async def on_clear(self, event):
        self.uncommitted_ms = 0
        self.vad_buf.clear()
        self.in_speech = False
        await self.send({"type": "input_audio_buffer.cleared"})

    # conversation items

    async def on_item_create(self, event):
        item = event.get("item")
        if not isinstance(item, dict):
            await self.error("missing_required_parameter",
                             "Missing required parameter: 'item'.",
                             param="item", client_event=event)
            return
        itype = item.get("type")
        if itype == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in self.pending_calls:
                await self.error("invalid_value",
                                 f"Tool call ID '{call_id}' not found in "
                                 "conversation.", param="item.call_id",
                                 client_event=event)
                return
            part = self.pending_calls.pop(call_id)
            self.after_function = part.get("after_function")
            self.text_item_tokens += utf8_tokens(str(item.get("output", "")))
            self.tool_outputs += 1
            rnd = self.tool_round
            if rnd is not None and call_id in rnd["calls"]:
                rnd["outputs"][call_id] = item.get("output")
        elif itype == "message":
            if item.get("role") not in ("user", "assistant", "system"):
                await self.error("invalid_value", "Invalid value: "
                                 f"'{item.get('role')}'. Supported values "
                                 "are: 'user', 'assistant', 'system'.",
                                 param="item.role", client_event=event)
                return
            for c in item.get("content") or []:
                if isinstance(c, dict):
                    self.text_item_tokens += utf8_tokens(
                        str(c.get("text", "")))
                    if item.get("role") == "user" \
                            and c.get("type") == "input_text":
                        # keypad digits, a typed or replayed user turn
                        self.text_pending = True
                        self.seeded_turn(c.get("text"))
        elif itype != "function_call":
            await self.error("invalid_value", f"Invalid value: '{itype}'. "
                             "Supported values are: 'message', "
                             "'function_call', 'function_call_output'.",
                             param="item.type", client_event=event)
            return
        item = dict(item)
        item_id = item.setdefault("id", new_id("item_"))
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        self.items[item_id] = Item(item_id, itype, item.get("role"))
        previous = event.get("previous_item_id", self.last_item_id)
        self.last_item_id = item_id
        await self.send({"type": "conversation.item.added",
                         "previous_item_id": previous, "item": item})
        await self.send({"type": "conversation.item.done",
                         "previous_item_id": previous, "item": item})

    async def on_item_retrieve(self, event):
        item = self.items.get(event.get("item_id"))
        if item is None:
            await self.error("item_retrieve_invalid_item_id",
                             f"Item with item_id not found: "
                             f"{event.get('item_id')}", param="item_id",
                             client_event=event)
            return
        await self.send({"type": "conversation.item.retrieved",
                         "item": {"id": item.id, "object": "realtime.item",
                                  "type": item.type, "role": item.role,
                                  "status": "completed"}})

    async def on_item_delete(self, event):
        item_id = event.get("item_id")
        if self.items.pop(item_id, None) is None:
            await self.error("item_delete_invalid_item_id",
                             f"Item with item_id not found: {item_id}",
                             param="item_id", client_event=event)
            return
        await self.send({"type": "conversation.item.deleted",
                         "item_id": item_id})

    async def on_truncate(self, event):
        item_id = event.get("item_id")
        for key in ("item_id", "content_index", "audio_end_ms"):
            if key not in event:
                await self.error("missing_required_parameter",
                                 f"Missing required parameter: '{key}'.",
                                 param=key, client_event=event)
                return
        item = self.items.get(item_id)
        if item is None:
            await self.error("item_truncate_invalid_item_id",
                             f"Item with item_id not found: {item_id}",
                             param="item_id", client_event=event)
            return
        if item.type != "message" or item.role != "assistant":
            await self.error("invalid_value",
                             "Only assistant messages can be truncated.",
                             param="item_id", client_event=event)
            return
        if event["content_index"] != 0:
            await self.error("invalid_value", "Invalid 'content_index': "
                             f"{event['content_index']}. The item has one "
                             "content part (index 0).",
                             param="content_index", client_event=event)
            return
        end = event["audio_end_ms"]
        if not isinstance(end, int) or isinstance(end, bool) or end < 0:
            await self.error("invalid_value", "Invalid 'audio_end_ms': "
                             "expected an integer >= 0.",
                             param="audio_end_ms", client_event=event)
            return
        sent_ms = item.sent_bytes // item.bpm
        if item.truncated_ms is not None:
            sent_ms = min(sent_ms, item.truncated_ms)
        if end > sent_ms:
            # The exact text of the real service: the bug behind it is a
            # gateway that derives audio_end_ms from inbound timestamps.
            await self.error("invalid_value",
                             f"Audio content of {sent_ms}ms is already "
                             f"shorter than {end}ms",
                             param="audio_end_ms", client_event=event)
            return
        self.assistant_audio_ms -= sent_ms - end
        item.truncated_ms = end
        await self.send({"type": "conversation.item.truncated",
                         "item_id": item_id, "content_index": 0,
                         "audio_end_ms": end})

    # responses

    async def on_response_create(self, event):
        params = event.get("response") or {}
        if isinstance(params, dict) and params.get("conversation") == "none":
            self.start_out_of_band(params)
            return
        if self.active is not None:
            self.creates_while_active += 1
            self.record("note", note="response.create while "
                        f"{self.active.id} is in progress")
            await self.error(
                "conversation_already_has_active_response",
                "Conversation already has an active response in progress: "
                f"{self.active.id}. Wait until the response is finished "
                "before creating a new one.", client_event=event)
            return
        instructions = params.get("instructions") or ""
        after_tools = self.close_tool_round()
        text_pending, self.text_pending = self.text_pending, False
        if after_tools is not None:
            part, origin = after_tools, "function"
            self.after_function = None
        elif self.after_function is not None:
            part, origin = self.after_function, "function"
            self.after_function = None
        elif "Say exactly:" in instructions:
            # The last one: what comes before may be the agent's own
            # instructions, which the gateway keeps for the greeting.
            text = instructions.rsplit("Say exactly:", 1)[1].strip()
            greeting = self.scenario["greeting"]
            # The first time, as long as the scenario's greeting lasts, so
            # that the scenario's timing holds whatever the words.
            audio_ms = (greeting["audio_ms"]
                        if greeting and not self.greeting_used
                        else peer_scenario.default_audio_ms(text))
            part = {"transcript": text, "audio_ms": audio_ms}
            origin = "client"
            self.greeting_used = True
        elif text_pending:
            part = self.scenario["on_text"] or self.scenario["default_agent"]
            origin = "client"
        elif self.unanswered:
            # A turn committed by the client (or with create_response
            # false) is what a plain response.create answers.
            part, origin = self.turn_answer(self.unanswered.pop(0)), "client"
        elif not self.greeting_used and self.scenario["greeting"]:
            part, origin = self.scenario["greeting"], "client"
            self.greeting_used = True
        else:
            part, origin = self.scenario["default_agent"], "client"
        self.start_response([part], origin, params.get("metadata"))

    def close_tool_round(self):
        """On a response.create after a response with tool calls: check
        that every call's output came first (the gateway promises one
        response.create after all outputs), and return the after_tools
        part with {output:NAME} filled in, or None."""
        rnd, self.tool_round = self.tool_round, None
        if rnd is None:
            return None
        missing = [f"{rnd['calls'][c]} ({c})" for c in rnd["calls"]
                   if c not in rnd["outputs"]]
        if missing:
            self.protocol_problems += 1
            self.record("note", note="PROTOCOL: response.create before the "
                        "function_call_output of " + ", ".join(missing))
            print(f"realtime_sim: conn {self.conn}: PROTOCOL: "
                  "response.create before the function_call_output of "
                  + ", ".join(missing), file=sys.stderr)
        after = rnd["after"]
        if after is None:
            return None
        text = after["transcript"]
        for call_id, name in rnd["calls"].items():
            out = rnd["outputs"].get(call_id)
            text = text.replace("{output:" + name + "}",
                                out if isinstance(out, str) else
                                "" if out is None else json.dumps(
                                    out, ensure_ascii=False))
        return dict(after, transcript=text)

    def start_out_of_band(self, params):
        """A response outside the conversation (a filler while a tool
        runs): says the text in 「」 of its instructions, else the
        instructions; adds nothing to the conversation."""
        instructions = params.get("instructions")
        instructions = instructions if isinstance(instructions, str) else ""
        m = re.search(r"「([^」]*)」", instructions)
        text = m.group(1) if m else instructions.strip()
        resp = Response([{"transcript": text, "audio_ms": 800}],
                        "out_of_band")
        resp.oob = True
        resp.metadata = params.get("metadata")
        self.oob_active.add(resp)
        self.out_of_band_responses += 1
        self.record("note", note="out_of_band", response_id=resp.id,
                    transcript=text)
        resp.task = self.spawn(self.run_response(resp))

    async def on_response_cancel(self, event):
        if self.active is None:
            await self.error("response_cancel_not_active",
                             "Cancellation failed: no active response "
                             "found", client_event=event)
            return
        self.active.cancel("client_cancelled")

    async def auto_response(self, turn_index):
        await asyncio.sleep(self.scenario["response_delay_ms"] / 1000)
        # One response at a time: a cancelled one may still be closing.
        while self.active is not None:
            await self.idle.wait()
        self.start_response([self.turn_answer(turn_index)], "vad")

    def turn_answer(self, turn_index):
        turns = self.scenario["turns"]
        return (turns[turn_index]["agent"] if turn_index < len(turns)
                else self.scenario["default_agent"])

    def start_response(self, parts, origin, metadata=None):
        resp = Response(parts, origin)
        resp.metadata = metadata      # echoed by response.created/.done
        self.active = resp
        self.idle.clear()
        resp.task = self.spawn(self.run_response(resp))

    def response_object(self, resp, status, output=(), details=None,
                        usage=None):
        out = self.config["audio"]["output"]
        return {"object": "realtime.response", "id": resp.id,
                "status": status, "status_details": details,
                "output": list(output),
                "conversation_id": None if resp.oob
                else self.conversation_id,
                "output_modalities": self.config["output_modalities"],
                "max_output_tokens": self.config["max_output_tokens"],
                "audio": {"output": {"format": out["format"],
                                     "voice": out["voice"]}},
                "usage": usage, "metadata": resp.metadata}

    async def pace(self, resp, due):
        """Sleep until monotonic time `due`, waking early on a cancel."""
        delay = due - time.monotonic()
        if delay > 0 and not resp.stop.is_set():
            try:
                await asyncio.wait_for(resp.stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def run_response(self, resp):
        try:
            await self._run_response(resp)
        finally:
            if resp.oob:
                self.oob_active.discard(resp)
            elif self.active is resp:
                self.active = None
                self.idle.set()

    async def _run_response(self, resp):
        self.responses += 1
        await self.send({"type": "response.created",
                         "response": self.response_object(resp,
                                                          "in_progress")})
        fail_first = max((arg for kind, arg in self.fails
                          if kind == "failed_responses"), default=0)
        if not resp.oob and self.responses_failed < fail_first:
            # a transient failure: the same request may well succeed
            self.responses_failed += 1
            self.record("note", note="simulated failure failed_responses",
                        response_id=resp.id, n=self.responses_failed)
            await self.fail_response(resp, "server_error",
                                     "The server had an error while "
                                     "processing your request. (simulated "
                                     "by --fail failed_responses)")
            return
        if self.has_fail("insufficient_quota"):
            await self.fail_response(resp, "insufficient_quota",
                                     "You exceeded your current quota, "
                                     "please check your plan and billing "
                                     "details.")
            return
        # the model's latency to its first audio (the scenario's
        # first_audio_ms), cut short by a cancel
        await self.pace(resp, time.monotonic()
                        + self.scenario["first_audio_ms"] / 1000)
        output, out_audio_ms, out_text = [], 0, ""
        for part in resp.parts:
            calls = list(part.get("function_calls") or [])
            if part.get("function_call"):
                calls.append(part["function_call"])
            if not (calls and part["transcript"] == ""
                    and part["audio_ms"] == 0):
                item, ms, text = await self.speak(resp, part, len(output))
                output.append(item)
                out_audio_ms += ms
                out_text += text
            if calls and resp.stop_reason is None:
                # Parallel calls in one response, after its audio.
                self.tool_round = {"calls": {}, "outputs": {},
                                   "after": part.get("after_tools")}
                for fc in calls:
                    item, args = await self.call_function(resp, part, fc,
                                                          len(output))
                    output.append(item)
                    out_text += args
        status, details = "completed", None
        if resp.stop_reason is not None:
            status = "cancelled"
            details = {"type": "cancelled", "reason": resp.stop_reason}
        elif self.has_fail("incomplete_responses"):
            status = "incomplete"
            details = {"type": "incomplete", "reason": "max_output_tokens"}
        usage = self.usage(out_audio_ms, out_text)
        if not resp.oob:
            self.assistant_audio_ms += out_audio_ms
        await self.send({"type": "response.done", "response":
                         self.response_object(resp, status, output, details,
                                              usage)})
        self.tokens_used += usage["total_tokens"]
        await self.send({"type": "rate_limits.updated", "rate_limits": [
            {"name": "requests", "limit": 20000, "remaining": 19999,
             "reset_seconds": 0.003},
            {"name": "tokens", "limit": 4000000,
             "remaining": max(0, 4000000 - self.tokens_used),
             "reset_seconds": round(self.tokens_used * 60 / 4000000, 3)}]})

    async def fail_response(self, resp, code, message):
        """Ends resp failed, with nothing said: the error's type is its
        code (server_error, insufficient_quota)."""
        await self.send({"type": "response.done", "response":
                         self.response_object(resp, "failed", details={
                             "type": "failed", "error": {
                                 "type": code, "code": code,
                                 "message": message}})})

    async def speak(self, resp, part, output_index):
        """One assistant message: audio (or text) deltas and transcript
        deltas, paced at `speed` times real time, stopped by a cancel."""
        text_mode = self.config["output_modalities"] == ["text"]
        fmt = self.out_format()
        bpm = peer_audio.BYTES_PER_MS[fmt]
        item = Item(new_id("item_"), "message", "assistant", bpm)
        if resp.oob:
            previous = None
        else:
            self.items[item.id] = item
            previous, self.last_item_id = self.last_item_id, item.id
        ids = {"response_id": resp.id, "item_id": item.id,
               "output_index": output_index, "content_index": 0}
        body = {"id": item.id, "object": "realtime.item", "type": "message",
                "status": "in_progress", "role": "assistant", "content": []}
        await self.send({"type": "response.output_item.added",
                         "response_id": resp.id,
                         "output_index": output_index, "item": body})
        if not resp.oob:
            await self.send({"type": "conversation.item.added",
                             "previous_item_id": previous, "item": body})
        kind = "text" if text_mode else "audio"
        await self.send({"type": "response.content_part.added", **ids,
                         "part": {"type": kind, "transcript": ""}
                         if kind == "audio" else {"type": "text", "text": ""}})
        transcript = self.tagged(part["transcript"])
        audio_ms = part["audio_ms"]
        chunk_ms = self.scenario["chunk_ms"]
        speed = part.get("speed", self.scenario["speed"])
        n_chunks = max(1, math.ceil(audio_ms / chunk_ms))
        sent_text = ""
        start = time.monotonic()
        for k in range(n_chunks):
            if resp.stop.is_set():
                break
            # Transcript pieces run slightly ahead of the audio, as on the
            # real service; split by characters so UTF-8 stays whole.
            piece = transcript[len(sent_text):
                               len(transcript) * (k + 1) // n_chunks]
            if piece:
                sent_text += piece
                await self.send({
                    "type": "response.output_text.delta" if text_mode else
                    "response.output_audio_transcript.delta",
                    **ids, "delta": piece})
            if not text_mode:
                ms = min(chunk_ms, audio_ms - k * chunk_ms)
                if ms > 0:
                    await self.send_audio(ids, item, ms)
            await self.pace(resp, start + (k + 1) * chunk_ms / speed / 1000)
        if resp.stop.is_set() and not text_mode:
            # Deltas already in flight when the cancel took effect: the
            # gateway must drop them.
            for _ in range(self.scenario["late_deltas"]):
                left = audio_ms - item.sent_bytes // bpm
                if left <= 0:
                    break
                await self.send_audio(ids, item, min(chunk_ms, left))
        status = "incomplete" if resp.stop.is_set() else "completed"
        if text_mode:
            await self.send({"type": "response.output_text.done", **ids,
                             "text": sent_text})
            content = {"type": "output_text", "text": sent_text}
        else:
            await self.send({"type": "response.output_audio.done", **ids})
            await self.send({"type": "response.output_audio_transcript.done",
                             **ids, "transcript": sent_text})
            content = {"type": "output_audio", "transcript": sent_text}
        await self.send({"type": "response.content_part.done", **ids,
                         "part": dict(content, type=kind)})
        done = dict(body, status=status, content=[content])
        await self.send({"type": "response.output_item.done",
                         "response_id": resp.id,
                         "output_index": output_index, "item": done})
        if not resp.oob:
            await self.send({"type": "conversation.item.done",
                             "previous_item_id": previous, "item": done})
        return done, item.sent_bytes // bpm, sent_text

    async def send_audio(self, ids, item, ms):
        bpm = item.bpm
        pattern = peer_audio.agent_audio_ulaw(self.calltag,
                                              item.sent_bytes // bpm * 8,
                                              ms * 8)
        raw = peer_audio.encode_from_ulaw(pattern, self.out_format())
        item.sent_bytes += len(raw)
        self.assistant_spoke = True
        self.audio_out.update(raw)
        self.audio_out_bytes += len(raw)
        await self.send({"type": "response.output_audio.delta", **ids,
                         "delta": base64.b64encode(raw).decode()})

    async def call_function(self, resp, part, fc, output_index):
        item_id, call_id = new_id("item_"), new_id("call_")
        self.items[item_id] = Item(item_id, "function_call")
        self.pending_calls[call_id] = part
        self.tool_round["calls"][call_id] = fc["name"]
        self.tool_calls += 1
        # arguments_raw: sent as written, e.g. the broken JSON a model
        # sometimes produces
        args = fc.get("arguments_raw")
        if args is None:
            args = json.dumps(fc.get("arguments", {}), ensure_ascii=False)
        previous, self.last_item_id = self.last_item_id, item_id
        body = {"id": item_id, "object": "realtime.item",
                "type": "function_call", "status": "in_progress",
                "name": fc["name"], "call_id": call_id, "arguments": ""}
        await self.send({"type": "response.output_item.added",
                         "response_id": resp.id,
                         "output_index": output_index, "item": body})
        await self.send({"type": "conversation.item.added",
                         "previous_item_id": previous, "item": body})
        ids = {"response_id": resp.id, "item_id": item_id,
               "output_index": output_index, "call_id": call_id}
        # Several deltas cut at character offsets, as the service streams
        # them: Japanese strings and escapes are split mid-way.
        n = max(1, min(5, len(args) // 4))
        for k in range(n):
            await self.send({"type": "response.function_call_arguments.delta",
                             **ids, "delta": args[len(args) * k // n:
                                                  len(args) * (k + 1) // n]})
        await self.send({"type": "response.function_call_arguments.done",
                         **ids, "name": fc["name"], "arguments": args})
        done = dict(body, status="completed", arguments=args)
        await self.send({"type": "response.output_item.done",
                         "response_id": resp.id,
                         "output_index": output_index, "item": done})
        await self.send({"type": "conversation.item.done",
                         "previous_item_id": previous, "item": done})
        return done, args

    def usage(self, out_audio_ms, out_text):
        """Token counts shaped like the real response.done usage. The whole
        conversation is input again on every response; the part already
        seen last time counts as cached, in 64-token steps."""
        cfg = self.config
        in_text = (utf8_tokens(cfg.get("instructions") or "")
                   + math.ceil(len(json.dumps(cfg.get("tools") or [])) / 4)
                   + self.text_item_tokens)
        in_audio = (math.ceil(self.user_audio_ms / 100)
                    + math.ceil(max(0, self.assistant_audio_ms) / 50))
        total_in = in_text + in_audio
        cached = min(total_in, self.prev_input_tokens // 64 * 64)
        cached_text = min(cached, in_text)
        self.prev_input_tokens = total_in
        out_audio = math.ceil(out_audio_ms / 50)
        out_text_tokens = utf8_tokens(out_text)
        return {
            "total_tokens": total_in + out_audio + out_text_tokens,
            "input_tokens": total_in,
            "output_tokens": out_audio + out_text_tokens,
            "input_token_details": {
                "text_tokens": in_text, "audio_tokens": in_audio,
                "image_tokens": 0, "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": cached - cached_text,
                    "image_tokens": 0}},
            "output_token_details": {"text_tokens": out_text_tokens,
                                     "audio_tokens": out_audio}}


# -- server setup ---------------------------------------------------------

def parse_listen(value):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT, e.g. "
                                         "127.0.0.1:0")
    return host.strip("[]"), int(port)


def write_ready(path, info):
    """Atomically, so a test polling the file never reads half of it."""
    if not path:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(info) + "\n")
    os.replace(tmp, path)


def bind(host, port):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


async def serve(sim, sock, ssl_ctx, ready):
    protocol = type("BoundSimProtocol", (SimProtocol,), {"sim": sim})

    async def handler(ws):
        await Session(sim, ws).run()

    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(
            sig, lambda: stop.done() or stop.set_result(None))
    async with websockets.serve(handler, sock=sock, ssl=ssl_ctx,
                                create_protocol=protocol, compression=None,
                                max_size=16 * 2**20, max_queue=1024):
        if ready:
            ready()
        await stop


async def serve_refusing(stop_after_ready):
    stop_after_ready()
    await asyncio.Event().wait()


def set_parent_death_signal():
    """--procs workers die with the parent even if it is SIGKILLed."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)      # PR_SET_PDEATHSIG
    except OSError:
        pass


def main(argv=None):
    p = argparse.ArgumentParser(
        description="OpenAI Realtime API (GA) simulator for twirt tests. "
        "Run with /usr/bin/python3 (needs Debian's python3-websockets).")
    p.add_argument("--listen", type=parse_listen, required=True,
                   metavar="HOST:PORT", help="port 0 picks a free port "
                   "(read it from --ready-file)")
    p.add_argument("--tls-cert", help="PEM certificate: serve wss://")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--scenario", help="scenario file or name "
                   "(t/peers/scenarios/NAME.json) used by default")
    p.add_argument("--scenario-dir", default=peer_scenario.SCENARIO_DIR,
                   help="directory of NAME.json files selected by "
                   "[scenario:NAME] in the session instructions (default: "
                   "the shipped t/peers/scenarios)")
    p.add_argument("--record", metavar="FILE.jsonl",
                   help="append one JSON line per event in and out")
    p.add_argument("--fail", action="append", default=[],
                   metavar="KIND[=ARG]",
                   help="scripted failure (repeatable): "
                   + ", ".join(sorted(FAIL_KINDS)))
    p.add_argument("--fail-conns", type=int, metavar="N",
                   help="the --fail kinds act on the first N connections "
                   "only (sim_fail in a URL: always)")
    p.add_argument("--fail-after", type=int, metavar="N",
                   help="the --fail kinds act on the connections after the "
                   "first N only")
    p.add_argument("--session-limit", type=int, metavar="MS",
                   help="every session gets error session_expired and a "
                   "close 1000 MS ms after it was created (the real "
                   "service: 60 minutes)")
    p.add_argument("--ready-file", help='written as {"port": N, ...} once '
                   "listening")
    p.add_argument("--bench", action="store_true",
                   help="echo each append as one output_audio.delta, no VAD")
    p.add_argument("--procs", type=int, default=1,
                   help="worker processes sharing the socket (for --bench)")
    args = p.parse_args(argv)
    # websockets reports handler crashes through logging: make them show.
    logging.basicConfig(level=logging.WARNING,
                        format="realtime_sim: %(name)s: %(message)s")
    try:
        fails = [parse_fail(f) for f in args.fail]
        if args.scenario:
            peer_scenario.load(args.scenario)
    except (ValueError, peer_scenario.ScenarioError) as e:
        p.error(str(e))
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")

    host, port = args.listen
    sock = bind(host, port)
    port = sock.getsockname()[1]
    scheme = "wss" if args.tls_cert else "ws"
    url = f"{scheme}://{host}:{port}/v1/realtime"
    info = {"port": port, "url": url, "pid": os.getpid()}

    def announce():
        write_ready(args.ready_file, info)
        print(f"realtime_sim: listening on {url}"
              + (" (refusing connections)" if refuse else ""), flush=True)

    refuse = any(k == "refuse" for k, _ in fails)
    if refuse:
        # The port is known and reserved for a moment, then nothing
        # listens: connecting gets ECONNREFUSED.
        sock.close()
        try:
            asyncio.run(serve_refusing(announce))
        except KeyboardInterrupt:
            pass
        return 0

    sock.listen(1024)
    ssl_ctx = None
    if args.tls_cert:
        ssl_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ssl_ctx.load_cert_chain(args.tls_cert, args.tls_key)

    children, index = [], 0
    for i in range(1, max(1, args.procs)):
        pid = os.fork()
        if pid == 0:
            set_parent_death_signal()
            children, index = [], i
            break
        children.append(pid)
    sim = Sim(args, index, max(1, args.procs))
    try:
        asyncio.run(serve(sim, sock, ssl_ctx, announce if index == 0
                          else None))
    except KeyboardInterrupt:
        pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
