#!/usr/bin/python3
"""How long a caller waits for the agent's first word.

Places --calls Media Streams calls on the gateway, each starting at a
random moment within --spread seconds (independent phases), and measures
for each, from the moment its TCP connection is opened to the moment the
first `media` message of the agent's audio arrives: the TCP connect, the
upgrade, `connected` and `start`, and whatever the gateway does before the
caller hears anything.  The caller sends 20 ms frames of silence from
`start` on, as Twilio does, and echoes each mark at once.  A call hangs up
(stop, close 1000) --hold-ms after its first audio.

    /usr/bin/python3 bench/first_audio.py \\
        --url ws://127.0.0.1:8080/twilio/media --calls 50 --spread 10 \\
        --json first_audio.json

The JSON has every call's figure (ms, in the order the calls started),
p50/p99 and the calls that failed (no audio within --timeout-ms, an
upgrade refused, a close before any audio).  Standard library and Debian's
python3-websockets only.
"""

import argparse
import asyncio
import base64
import json
import random
import secrets
import sys
import time

import websockets

# websockets imports its client on first use (a lazy import, 20-80 ms):
# done here, not inside the first call's clock
CONNECT = websockets.connect
CLOSED = websockets.ConnectionClosed

FRAME = base64.b64encode(b"\xff" * 160).decode()


def percentile(values, p):
    """The nearest-rank percentile of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, -(-len(s) * p // 100) - 1))
    return s[int(k)]


async def one_call(opts, n, delay, results):
    await asyncio.sleep(delay)
    call_sid = "CA" + secrets.token_hex(16)
    stream_sid = "MZ" + secrets.token_hex(16)
    t0 = time.monotonic()
    try:
        ws = await CONNECT(opts.url, compression=None,
                                      ping_interval=None, max_size=2**24,
                                      open_timeout=opts.timeout_ms / 1000)
    except Exception as e:
        results.append({"n": n, "error": f"connect: {e}"})
        return
    first = None
    seq = 1

    async def send(msg):
        await ws.send(json.dumps(msg))

    async def media():
        nonlocal seq
        chunk, ts = 1, 0
        while True:
            seq += 1
            await send({"event": "media", "sequenceNumber": str(seq),
                        "streamSid": stream_sid,
                        "media": {"track": "inbound", "chunk": str(chunk),
                                  "timestamp": str(ts), "payload": FRAME}})
            chunk += 1
            ts += 20
            await asyncio.sleep(0.02)

    sender = None
    try:
        await send({"event": "connected", "protocol": "Call",
                    "version": "1.0.0"})
        await send({"event": "start", "sequenceNumber": "1",
                    "streamSid": stream_sid,
                    "start": {"accountSid": "AC" + "0" * 32,
                              "streamSid": stream_sid, "callSid": call_sid,
                              "tracks": ["inbound"],
                              "customParameters": {},
                              "mediaFormat": {"encoding": "audio/x-mulaw",
                                              "sampleRate": 8000,
                                              "channels": 1}}})
        sender = asyncio.create_task(media())
        deadline = t0 + opts.timeout_ms / 1000
        hold_until = None
        while True:
            now = time.monotonic()
            until = hold_until if hold_until is not None else deadline
            if now >= until:
                break
            try:
                raw = await asyncio.wait_for(ws.recv(), until - now)
            except asyncio.TimeoutError:
                break
            msg = json.loads(raw)
            event = msg.get("event")
            if event == "media" and first is None:
                first = (time.monotonic() - t0) * 1000
                hold_until = time.monotonic() + opts.hold_ms / 1000
            elif event == "mark":
                seq += 1
                await send({"event": "mark", "sequenceNumber": str(seq),
                            "streamSid": stream_sid, "mark": msg["mark"]})
        if sender:
            sender.cancel()
        seq += 1
        await send({"event": "stop", "sequenceNumber": str(seq),
                    "streamSid": stream_sid,
                    "stop": {"accountSid": "AC" + "0" * 32,
                             "callSid": call_sid}})
        await ws.close()
    except CLOSED as e:
        if first is None:
            results.append({"n": n, "error": f"closed before any audio: "
                            f"{e.code} {e.reason}"})
            return
    finally:
        if sender:
            sender.cancel()
    if first is None:
        results.append({"n": n, "error": "no audio within "
                        f"{opts.timeout_ms} ms"})
    else:
        results.append({"n": n, "ms": round(first, 2)})


async def run(opts):
    rng = random.Random(opts.seed)
    results = []
    await asyncio.gather(*(one_call(opts, n, rng.uniform(0, opts.spread),
                                    results)
                           for n in range(opts.calls)))
    return sorted(results, key=lambda r: r["n"])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--spread", type=float, default=10.0,
                   help="seconds over which the calls start (default 10)")
    p.add_argument("--hold-ms", type=int, default=300,
                   help="stay on the call this long after the first audio")
    p.add_argument("--timeout-ms", type=int, default=5000)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--json", help="write the results there")
    opts = p.parse_args()
    if opts.calls < 1:
        p.error("--calls must be >= 1")
    results = asyncio.run(run(opts))
    ms = [r["ms"] for r in results if "ms" in r]
    failed = [r for r in results if "error" in r]
    out = {"calls": opts.calls, "spread": opts.spread, "ok": len(ms),
           "failed": len(failed), "errors": [r["error"] for r in failed][:5],
           "ms": [r.get("ms") for r in results],
           "p50": percentile(ms, 50) if ms else None,
           "p99": percentile(ms, 99) if ms else None}
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(out, f)
    print(f"first_audio: {len(ms)}/{opts.calls} calls, p50 {out['p50']} ms, "
          f"p99 {out['p99']} ms" + (f", {len(failed)} failed: "
                                    f"{out['errors'][0]}" if failed else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
