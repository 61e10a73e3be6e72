#!/usr/bin/python3
"""A simulated Twilio Media Streams client: the phone call side of twirt.

Run it with Debian's interpreter, /usr/bin/python3: it needs the
python3-websockets package (10.4), independent of twirt's frame code.

    /usr/bin/python3 t/peers/twilio_sim.py \
        --url ws://127.0.0.1:8080/twilio/media --scenario ja-booking --print

It behaves like Twilio's Media Streams (t/peers/README.md): a signed
upgrade, connected/start, 160-byte mu-law media every 20 ms on a real,
drift-free clock, caller "speech" where the scenario says so, and an
outbound playback buffer that returns marks only once the audio queued
before them has been played, while clear drops the queue and returns every
outstanding mark at once. It checks what the gateway sends (JSON shape,
streamSid, base64 payloads) and exits non-zero with a reason if a check
fails. t/peers/README.md has the whole reference.
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import socket
import ssl
import struct
import sys
import time

import websockets
from websockets.exceptions import ConnectionClosed, InvalidHandshake, \
    InvalidStatusCode

import peer_audio
import peer_scenario

FRAME_MS = 20
FRAME_BYTES = 160
DTMF_GAP_MS = 100
SILENCE_FRAME = bytes([peer_audio.MULAW_SILENCE]) * FRAME_BYTES
USER_AGENT = "Twilio.TmeWs/1.0"
# Close codes that mean the gateway found fault with what WE sent: this
# peer is meant to be conforming, so they fail the call.
PEER_FAULT_CODES = {1002, 1003, 1007, 1009, 1010}


def twilio_signature(auth_token, url, params=None):
    """X-Twilio-Signature: base64(HMAC-SHA1(token, url + sorted k+v)).
    For the Media Streams upgrade `params` is empty: the URL alone, as
    written in <Stream url>."""
    data = url + "".join(k + v for k, v in sorted((params or {}).items()))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def read_wav_ulaw(path):
    """8 kHz mono WAV (mu-law or 16-bit PCM) -> mu-law bytes. The wave
    module cannot read mu-law WAVs, so the RIFF chunks are walked here."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError(f"{path}: not a WAV file")
    pos, fmt, audio = 12, None, None
    while pos + 8 <= len(data):
        cid = data[pos:pos + 4]
        size = struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            audio = body
        pos += 8 + size + (size & 1)
    if fmt is None or audio is None:
        raise ValueError(f"{path}: no fmt or data chunk")
    tag, channels, rate, _, _, bits = fmt
    hint = ("convert it with: sox IN.wav -r 8000 -c 1 -e mu-law OUT.wav")
    if channels != 1 or rate != 8000:
        raise ValueError(f"{path}: {rate} Hz, {channels} channel(s); need "
                         f"8000 Hz mono; {hint}")
    if tag == 7 and bits == 8:
        return audio
    if tag == 1 and bits == 16:
        samples = struct.unpack(f"<{len(audio) // 2}h", audio[:len(audio)
                                                               // 2 * 2])
        return peer_audio.ulaw_encode(samples)
    raise ValueError(f"{path}: format {tag}/{bits} bits; need mu-law or "
                     f"16-bit PCM; {hint}")


class Recorder:
    """One JSON line per message, flushed per line so tests can poll it."""

    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8", buffering=1) \
            if path else None

    def write(self, call_sid, t, direction, fields):
        if self.f is None:
            return
        line = {"t": round(t, 1), "call": call_sid, "dir": direction}
        line.update(fields)
        self.f.write(json.dumps(line, ensure_ascii=False) + "\n")


class Printer:
    """Human-friendly live narration of a call (--print)."""

    def __init__(self, enabled, prefix="", verbose=False):
        self.enabled = enabled
        self.prefix = prefix
        self.verbose = verbose

    def say(self, t_ms, text):
        if self.enabled:
            print(f"[{t_ms / 1000:6.2f}s] {self.prefix}{text}", flush=True)


def media_payload(payload):
    """The recorded form of an audio payload: size and hash, not bytes."""
    return {"bytes": len(payload), "sha1": hashlib.sha1(payload).hexdigest()}


class Call:
    """One simulated call: one Media Streams WebSocket."""

    def __init__(self, opts, call_sid, stream_sid, params, scenario,
                 recorder, printer):
        self.opts = opts
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.params = params
        self.scenario = scenario
        self.recorder = recorder
        self.out = printer
        speech = (read_wav_ulaw(opts.speech_wav) if opts.speech_wav
                  else peer_audio.caller_speech_loop())
        # One frame past the end, so a frame can wrap around the loop.
        self.speech_len = len(speech)
        self.speech = speech + (speech * FRAME_BYTES)[:FRAME_BYTES]
        self.ws = None
        self.t_begin = time.monotonic()
        self.t_start = None           # when `start` was sent
        self.seq = 0
        self.chunk = 0
        self.failures = []
        self.ending = False           # we are hanging up / aborting
        self.closed_by = None
        self.sendq = asyncio.Queue()
        self.writer_task = None
        # outbound playback buffer
        self.play_end = 0.0           # monotonic time the queue runs dry
        self.hold_until = 0.0         # playback of the queue starts then
        self.pending_marks = []       # [(name, monotonic time it is due)]
        self.player_wake = asyncio.Event()
        self.burst_start = None       # for --print: current agent utterance
        self.burst_ms = 0.0
        self.burst_timer = None
        self.successor = (peer_audio.agent_successor_table(
            params.get("calltag", "")) if opts.check_agent_audio else None)
        self.stats = dict(
            media_sent=0, speech_frames_sent=0, max_send_lateness_ms=0.0,
            media_received=0, agent_audio_bytes=0,
            agent_audio_nonsilent_bytes=0, agent_audio_ms_received=0.0,
            agent_audio_ms_dropped_by_clear=0.0, marks_received=0,
            marks_echoed=0, marks_echoed_by_clear=0, clears_received=0,
            bad_stream_sid=0, bad_payload=0, malformed=0, unknown_events=0,
            pattern_breaks=0, received_after_stop=0)
        self.audio_hash = hashlib.sha1()
        self.close_info = None
        self.http_status = None

    # -- helpers ----------------------------------------------------------

    def now_ms(self):
        return (time.monotonic() - self.t_begin) * 1000

    def record(self, direction, **fields):
        self.recorder.write(self.call_sid, self.now_ms(), direction, fields)

    def fail(self, reason):
        if reason not in self.failures:
            self.failures.append(reason)
            self.out.say(self.now_ms(), f"CHECK FAILED: {reason}")

    def next_seq(self):
        self.seq += 1
        return str(self.seq)

    def enqueue(self, msg, **extra):
        """All frames leave through one writer task, in order."""
        self.sendq.put_nowait((msg, extra))

    async def writer(self):
        while True:
            msg, extra = await self.sendq.get()
            if msg is None:
                return
            shown = msg
            if msg.get("event") == "media":
                raw = base64.b64decode(msg["media"]["payload"])
                shown = dict(msg, media=dict(msg["media"],
                                             payload=media_payload(raw)))
            try:
                await self.ws.send(json.dumps(msg))
            except ConnectionClosed:
                return
            self.record("out", msg=shown, **extra)

    # -- the call ---------------------------------------------------------

    async def run(self):
        opts = self.opts
        headers = []
        if opts.auth_token:
            sig = twilio_signature(opts.auth_token, opts.sign_url or opts.url)
            if opts.bad_signature:
                sig = twilio_signature(opts.auth_token + "x",
                                       opts.sign_url or opts.url)
            headers.append(("X-Twilio-Signature", sig))
        elif opts.bad_signature:
            headers.append(("X-Twilio-Signature",
                            "bm90IGEgcmVhbCBzaWduYXR1cmU="))
        ssl_ctx = None
        if opts.url.startswith("wss://"):
            ssl_ctx = ssl.create_default_context(cafile=opts.ca_file)
            if opts.insecure:
                ssl_ctx.check_hostname = False
                ssl_ctx.verify_mode = ssl.CERT_NONE
        # at: the wall clock (epoch seconds), to order events across peers
        self.record("handshake", url=opts.url,
                    headers={k: v for k, v in headers},
                    at=round(time.time(), 4))
        self.out.say(self.now_ms(), f"calling {opts.url}"
                     + (" (signed)" if headers else ""))
        where = {}
        if opts.connect:
            # the URL's host goes in Host, the TCP connection elsewhere
            host, _, port = opts.connect.rpartition(":")
            where = {"host": host, "port": int(port)}
        try:
            self.ws = await websockets.connect(
                opts.url, extra_headers=headers, user_agent_header=USER_AGENT,
                **where,
                compression=None, max_size=2**24, ping_interval=None,
                open_timeout=opts.connect_timeout / 1000, close_timeout=2,
                ssl=ssl_ctx)
        except InvalidStatusCode as e:
            self.http_status = e.status_code
            self.record("rejected", status=e.status_code)
            if opts.expect_http == e.status_code:
                self.out.say(self.now_ms(), f"upgrade rejected with HTTP "
                             f"{e.status_code}, as expected")
            else:
                self.fail(f"upgrade rejected: HTTP {e.status_code}")
            return self.summary()
        except (OSError, asyncio.TimeoutError, InvalidHandshake) as e:
            what = ("timed out" if isinstance(e, asyncio.TimeoutError)
                    else str(e) or type(e).__name__)
            self.record("rejected", error=what)
            self.fail(f"cannot connect to {opts.url}: {what}")
            return self.summary()
        self.http_status = 101
        if opts.expect_http is not None:
            self.fail(f"expected the upgrade to be rejected with HTTP "
                      f"{opts.expect_http}, but it was accepted")
        writer = self.writer_task = asyncio.create_task(self.writer())
        receiver = asyncio.create_task(self.receiver())
        player = asyncio.create_task(self.player())
        try:
            await self.converse(receiver)
        finally:
            for task in (player, writer):
                task.cancel()
            if self.burst_timer:
                self.burst_timer.cancel()
            self.flush_burst()
        return self.summary()

    async def converse(self, receiver):
        opts = self.opts
        self.enqueue({"event": "connected", "protocol": "Call",
                      "version": "1.0.0"})
        for _ in range(opts.pre_start_media):
            self.send_media(SILENCE_FRAME, speech=False)
            await asyncio.sleep(FRAME_MS / 1000)
        self.t_start = time.monotonic()
        self.enqueue({"event": "start", "sequenceNumber": self.next_seq(),
                      "streamSid": self.stream_sid, "start": {
                          "accountSid": opts.account_sid,
                          "streamSid": self.stream_sid,
                          "callSid": self.call_sid, "tracks": ["inbound"],
                          "customParameters": self.params,
                          "mediaFormat": {"encoding": "audio/x-mulaw",
                                          "sampleRate": 8000,
                                          "channels": 1}}})
        self.out.say(self.now_ms(), f"connected; start sent (CallSid "
                     f"{self.call_sid}, parameters {self.params})")
        media = asyncio.create_task(self.media_loop())
        end_ms = opts.duration_ms or self.scenario["end"]["after_ms"]
        limit = end_ms if opts.abort_after_ms is None \
            else min(end_ms, opts.abort_after_ms)
        try:
            await asyncio.wait_for(asyncio.shield(receiver), limit / 1000)
            # The gateway closed first (end_call, failure, ...).
            return
        except asyncio.TimeoutError:
            pass
        finally:
            self.ending = True
            media.cancel()
        if opts.abort_after_ms is not None and opts.abort_after_ms <= end_ms:
            # Like a caller whose network dies: no stop, no close frame,
            # an RST instead of a FIN.
            self.closed_by = "abort"
            self.out.say(self.now_ms(), "dropping the TCP connection "
                         "(no stop, no close frame)")
            sock = self.ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
            self.ws.transport.abort()
        else:
            self.closed_by = "caller"
            if not opts.no_stop:
                self.enqueue({"event": "stop",
                              "sequenceNumber": self.next_seq(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": opts.account_sid,
                                       "callSid": self.call_sid}})
            # Everything queued (the stop included) goes out before close.
            self.enqueue(None)
            try:
                await asyncio.wait_for(asyncio.shield(self.writer_task), 5)
            except asyncio.TimeoutError:
                pass
            self.out.say(self.now_ms(), "caller hangs up"
                         + ("" if opts.no_stop else " (stop sent)"))
            await self.ws.close(1000)
        try:
            await asyncio.wait_for(receiver, 5)
        except asyncio.TimeoutError:
            self.fail("the gateway did not finish the close handshake "
                      "within 5 s")

    def send_media(self, payload, speech):
        self.chunk += 1
        self.stats["media_sent"] += 1
        self.stats["speech_frames_sent"] += speech
        self.enqueue({"event": "media", "sequenceNumber": self.next_seq(),
                      "streamSid": self.stream_sid, "media": {
                          "track": "inbound", "chunk": str(self.chunk),
                          "timestamp": str((self.chunk - 1) * FRAME_MS),
                          "payload": base64.b64encode(payload).decode()}})

    def frame_at(self, ms):
        """The caller's 20 ms frame starting `ms` after start, and the
        scenario turn it belongs to (None: silence)."""
        for turn in self.scenario["turns"]:
            c = turn["caller"]
            if c["at_ms"] <= ms < c["at_ms"] + c["speech_ms"]:
                off = (ms - c["at_ms"]) * 8 % self.speech_len
                return self.speech[off:off + FRAME_BYTES], c
        return SILENCE_FRAME, None

    async def media_loop(self):
        """One frame per 20 ms, scheduled against the start instant so
        delays never accumulate (a late frame is sent at once, the next
        one is still due on the original grid)."""
        dtmf = list(self.scenario["dtmf"])
        k = 0
        while not self.ending:
            due = self.t_start + k * FRAME_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            late = (time.monotonic() - due) * 1000
            if late > self.stats["max_send_lateness_ms"]:
                self.stats["max_send_lateness_ms"] = round(late, 2)
            while dtmf and dtmf[0]["at_ms"] <= k * FRAME_MS:
                d = dtmf.pop(0)
                self.out.say(self.now_ms(), f"caller presses {d['digit']}")
                self.enqueue({"event": "dtmf",
                              "sequenceNumber": self.next_seq(),
                              "streamSid": self.stream_sid,
                              "dtmf": {"track": "inbound_track",
                                       "digit": d["digit"]}})
            frame, caller = self.frame_at(k * FRAME_MS)
            if caller and k * FRAME_MS - caller["at_ms"] < FRAME_MS:
                self.out.say(self.now_ms(), "caller speaks ("
                             f"{caller['speech_ms'] / 1000:.1f} s): "
                             f"{caller['text']!r}")
            self.send_media(frame, caller is not None)
            k += 1

    # -- what the gateway sends -------------------------------------------

    async def receiver(self):
        ws = self.ws
        try:
            async for message in ws:
                self.on_message(message)
        except ConnectionClosed:
            pass
        code, reason = ws.close_code, ws.close_reason
        by = self.closed_by or "gateway"
        self.close_info = {"code": code, "reason": reason, "by": by,
                           "t": round(self.now_ms(), 1)}
        self.record("close", code=code, reason=reason, by=by)
        if by == "gateway":
            self.out.say(self.now_ms(), f"call ended: closed by gateway "
                         f"{code}" + (f" {reason!r}" if reason else ""))
        if code == 1006 and by == "caller":
            self.fail("the gateway did not answer our close frame within "
                      "2 s (1006)")
        elif code == 1006 and by == "gateway":
            self.fail("the gateway dropped the connection without a close "
                      "frame (1006)")
        if code in PEER_FAULT_CODES:
            self.fail(f"the gateway closed with {code} {reason!r}: it "
                      "rejected what this simulator sent")

    def on_message(self, message):
        st = self.stats
        if self.ending and self.closed_by == "caller":
            st["received_after_stop"] += 1
        if isinstance(message, bytes):
            st["malformed"] += 1
            self.record("in", binary=len(message))
            self.fail("the gateway sent a binary frame (Twilio expects "
                      "JSON text frames)")
            return
        try:
            msg = json.loads(message)
        except ValueError:
            st["malformed"] += 1
            self.record("in", raw=message[:200])
            self.fail("the gateway sent a frame that is not JSON")
            return
        event = msg.get("event") if isinstance(msg, dict) else None
        if event not in ("media", "mark", "clear"):
            st["unknown_events"] += 1
            self.record("in", msg=msg)
            self.fail(f"the gateway sent an unknown message {message[:80]!r}"
                      " (Twilio accepts media, mark, clear)")
            return
        if msg.get("streamSid") != self.stream_sid:
            st["bad_stream_sid"] += 1
            self.fail(f"the gateway sent {event} with streamSid "
                      f"{msg.get('streamSid')!r}, not {self.stream_sid!r}")
        getattr(self, "on_" + event)(msg)

    def queued_ms(self, now):
        return max(0.0, self.play_end - max(now, self.hold_until)) * 1000

    def played_ms(self, now):
        st = self.stats
        return (st["agent_audio_ms_received"]
                - st["agent_audio_ms_dropped_by_clear"] - self.queued_ms(now))

    def on_media(self, msg):
        st = self.stats
        payload = (msg.get("media") or {}).get("payload")
        try:
            raw = base64.b64decode(payload, validate=True) \
                if isinstance(payload, str) else None
        except ValueError:
            raw = None
        if not raw:
            st["bad_payload"] += 1
            self.record("in", msg=msg)
            self.fail("the gateway sent media whose payload is missing, "
                      "empty or not base64")
            return
        self.record("in", msg=dict(msg, media=dict(
            msg["media"], payload=media_payload(raw))))
        now = time.monotonic()
        ms = len(raw) / 8
        st["media_received"] += 1
        st["agent_audio_bytes"] += len(raw)
        st["agent_audio_nonsilent_bytes"] += (len(raw) - raw.count(b"\xff")
                                              - raw.count(b"\x7f"))
        st["agent_audio_ms_received"] += ms
        self.audio_hash.update(raw)
        if self.successor is not None:
            breaks = peer_audio.pattern_breaks(raw, self.successor)
            if breaks:
                st["pattern_breaks"] += breaks
                self.fail("agent audio does not match this call's pattern "
                          "(cross-talk or corrupted audio)")
        # Play it: the queue runs dry `ms` later than it did.
        if self.play_end <= now:
            # an empty queue: playback starts after the jitter buffer
            self.hold_until = now + self.opts.playback_delay_ms / 1000
            self.play_end = self.hold_until
        self.play_end += ms / 1000
        if self.burst_start is None:
            self.burst_start = self.now_ms()
            self.burst_ms = 0.0
            self.out.say(self.now_ms(), "agent speaking...")
        self.burst_ms += ms
        if self.burst_timer:
            self.burst_timer.cancel()
        self.burst_timer = asyncio.get_running_loop().call_later(
            0.3, self.flush_burst)

    def flush_burst(self):
        if self.burst_start is not None:
            self.out.say(self.now_ms(), "agent audio "
                         f"{self.burst_ms / 1000:.1f} s received")
            self.burst_start = None

    def on_mark(self, msg):
        st = self.stats
        self.record("in", msg=msg)
        name = (msg.get("mark") or {}).get("name")
        if not isinstance(name, str) or not name:
            st["malformed"] += 1
            self.fail("the gateway sent a mark without a name")
            return
        st["marks_received"] += 1
        now = time.monotonic()
        if self.play_end <= now and not self.pending_marks:
            self.echo_mark(name, "nothing queued")
            return
        self.pending_marks.append((name, max(self.play_end, now)))
        self.player_wake.set()

    def on_clear(self, msg):
        st = self.stats
        self.record("in", msg=msg)
        now = time.monotonic()
        dropped = self.queued_ms(now)
        st["clears_received"] += 1
        st["agent_audio_ms_dropped_by_clear"] += dropped
        self.play_end = now
        self.hold_until = 0.0
        marks, self.pending_marks = self.pending_marks, []
        self.out.say(self.now_ms(), f"clear (barge-in): {dropped / 1000:.2f}"
                     f" s of queued agent audio dropped, {len(marks)} mark(s)"
                     " returned")
        for name, _ in marks:
            st["marks_echoed_by_clear"] += 1
            self.echo_mark(name, "clear")
        self.player_wake.set()

    def echo_mark(self, name, cause):
        self.stats["marks_echoed"] += 1
        played = round(self.played_ms(time.monotonic()), 1)
        self.enqueue({"event": "mark", "sequenceNumber": self.next_seq(),
                      "streamSid": self.stream_sid, "mark": {"name": name}},
                     played_ms=played, cause=cause)
        idle = cause == "played" and not self.pending_marks
        if self.out.verbose or idle:
            self.out.say(self.now_ms(), f"mark {name} played "
                         f"({played / 1000:.2f} s of agent audio heard so "
                         "far)")

    async def player(self):
        """Returns each mark when the audio queued before it has played."""
        while True:
            if not self.pending_marks:
                self.player_wake.clear()
                await self.player_wake.wait()
                continue
            name, due = self.pending_marks[0]
            delay = due - time.monotonic()
            if delay > 0:
                self.player_wake.clear()
                try:
                    await asyncio.wait_for(self.player_wake.wait(), delay)
                except asyncio.TimeoutError:
                    pass
                continue
            self.pending_marks.pop(0)
            self.echo_mark(name, "played")

    # -- result -----------------------------------------------------------

    def summary(self):
        st = dict(self.stats)
        now = time.monotonic()
        st["agent_audio_ms_played"] = round(max(0.0, self.played_ms(now)), 1)
        for key in ("agent_audio_ms_received",
                    "agent_audio_ms_dropped_by_clear"):
            st[key] = round(st[key], 1)
        st["marks_pending_at_end"] = len(self.pending_marks)
        st["agent_audio_sha1"] = self.audio_hash.hexdigest()
        if self.successor is None:
            del st["pattern_breaks"]
        if self.http_status == 101 and self.close_info is None:
            self.fail("the call ended without a recorded close")
        result = {"call_sid": self.call_sid, "stream_sid": self.stream_sid,
                  "ok": not self.failures, "failures": self.failures,
                  "http_status": self.http_status,
                  "duration_ms": round(self.now_ms(), 1),
                  "close": self.close_info, **st}
        self.record("summary", **result)
        return result


def parse_param(value):
    name, sep, val = value.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected name=value")
    return name, val


def build_parser():
    p = argparse.ArgumentParser(
        description="Simulated Twilio Media Streams call for twirt tests. "
        "Run with /usr/bin/python3 (needs Debian's python3-websockets).")
    p.add_argument("--url", required=True,
                   help="gateway Media Streams URL, ws:// or wss://")
    p.add_argument("--auth-token", help="sign the upgrade with this token")
    p.add_argument("--sign-url", help="URL to sign, as written in <Stream "
                   "url> (default: --url)")
    p.add_argument("--bad-signature", action="store_true",
                   help="send a wrong X-Twilio-Signature")
    p.add_argument("--expect-http", type=int, metavar="STATUS",
                   help="succeed only if the upgrade is rejected with STATUS")
    p.add_argument("--connect", metavar="HOST:PORT",
                   help="connect there, keeping the URL's host in Host (a "
                   "tunnel, a test with public URLs)")
    p.add_argument("--ca-file", help="CA bundle to verify a wss:// gateway")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify the wss:// certificate")
    p.add_argument("--scenario", help="scenario file or name "
                   "(t/peers/scenarios/NAME.json)")
    p.add_argument("--speech-wav", help="8 kHz mono WAV (mu-law or PCM) "
                   "for the caller's speech instead of the synthetic tone")
    p.add_argument("--call-sid", help="default: random CA...")
    p.add_argument("--stream-sid", help="default: random MZ...")
    p.add_argument("--account-sid", default="AC" + "0123456789abcdef" * 2)
    p.add_argument("--param", action="append", type=parse_param, default=[],
                   metavar="NAME=VALUE", help="customParameters (repeatable)")
    p.add_argument("--record", metavar="FILE.jsonl")
    p.add_argument("--print", action="store_true", dest="print_",
                   help="narrate the call for humans")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="with --print: every mark, not only the last")
    p.add_argument("--duration-ms", type=int,
                   help="hang up after this long (default: scenario end)")
    p.add_argument("--no-stop", action="store_true",
                   help="close without sending stop")
    p.add_argument("--abort-after-ms", type=int,
                   help="drop the TCP connection (RST, no close frame)")
    p.add_argument("--pre-start-media", type=int, default=0, metavar="N",
                   help="send N media frames before start")
    p.add_argument("--calls", type=int, default=1, metavar="N",
                   help="N concurrent calls, CallSid CA...0001.., "
                   "parameter calltag=<n>")
    p.add_argument("--check-agent-audio", action="store_true",
                   help="check agent audio against the pattern the realtime "
                   "simulator makes for this call's calltag")
    p.add_argument("--playback-delay-ms", type=int, default=0, metavar="MS",
                   help="agent audio arriving to an empty queue starts "
                   "playing this much later (a jitter buffer, a slow line)")
    p.add_argument("--connect-timeout", type=int, default=5000,
                   metavar="MS")
    p.add_argument("--dtmf", action="append", type=parse_dtmf, default=[],
                   metavar="AT_MS:KEYS", help="press KEYS from AT_MS after "
                   "start, one dtmf event per key, 100 ms apart "
                   "(repeatable; sent as given, invalid keys too)")
    return p


def parse_dtmf(value):
    at, sep, keys = value.partition(":")
    if not sep or not at.isdigit() or not keys:
        raise argparse.ArgumentTypeError("expected AT_MS:KEYS, e.g. 500:123#")
    return [{"at_ms": int(at) + i * DTMF_GAP_MS, "digit": k}
            for i, k in enumerate(keys)]


def make_calls(opts, recorder):
    scenario = (peer_scenario.load(opts.scenario) if opts.scenario
                else peer_scenario.empty())
    for keys in opts.dtmf:
        scenario["dtmf"] = sorted(scenario["dtmf"] + keys,
                                  key=lambda d: d["at_ms"])
    base = dict(opts.param)
    if opts.scenario and "scenario" not in base:
        # So a gateway can pass it on as [scenario:NAME] in instructions.
        base["scenario"] = scenario["name"]
    calls = []
    for n in range(1, opts.calls + 1):
        params = dict(base)
        if opts.calls > 1:
            call_sid = f"CA{n:032d}"
            stream_sid = f"MZ{n:032d}"
            params.setdefault("calltag", str(n))
            prefix = f"call {n}: "
        else:
            call_sid = opts.call_sid or "CA" + secrets.token_hex(16)
            stream_sid = opts.stream_sid or "MZ" + secrets.token_hex(16)
            prefix = ""
        printer = Printer(opts.print_, prefix, opts.verbose)
        calls.append(Call(opts, call_sid, stream_sid, params, scenario,
                          recorder, printer))
    return calls


async def run_calls(calls):
    return await asyncio.gather(*(c.run() for c in calls))


def main(argv=None):
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.calls < 1:
        parser.error("--calls must be >= 1")
    try:
        calls = make_calls(opts, Recorder(opts.record))
    except (peer_scenario.ScenarioError, ValueError, OSError) as e:
        parser.error(str(e))
    results = asyncio.run(run_calls(calls))
    bad = [r for r in results if not r["ok"]]
    for r in results:
        if not r["ok"] or opts.calls > 1 or opts.print_:
            state = "ok" if r["ok"] else "FAILED: " + "; ".join(r["failures"])
            print(f"twilio_sim: {r['call_sid']}: {state}",
                  file=sys.stderr if not r["ok"] else sys.stdout)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
