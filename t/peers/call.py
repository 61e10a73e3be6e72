#!/usr/bin/python3
"""Place one simulated phone call through the gateway and narrate it.

    /usr/bin/python3 t/peers/call.py --url ws://127.0.0.1:8080/twilio/media \
        --scenario ja-booking --sim-record /tmp/twirt-sim.jsonl

This is twilio_sim.py with --print, plus what the caller cannot hear but
a new user wants to see: the transcripts, tool calls, truncations and the
cost, read live from the Realtime simulator's --record file. Every option
of twilio_sim.py is accepted (except --calls).
"""

import asyncio
import json
import os
import sys
import time

import peer_scenario
import twilio_sim

# gpt-realtime, USD per 1M tokens (the README's twirt_price default).
PRICE = {"text_in": 4.0, "text_cached": 0.40, "text_out": 16.0,
         "audio_in": 32.0, "audio_cached": 0.40, "audio_out": 64.0}


def response_cost(usage):
    i = usage.get("input_token_details") or {}
    c = i.get("cached_tokens_details") or {}
    o = usage.get("output_token_details") or {}
    text_c, audio_c = c.get("text_tokens", 0), c.get("audio_tokens", 0)
    return ((i.get("text_tokens", 0) - text_c) * PRICE["text_in"]
            + text_c * PRICE["text_cached"]
            + (i.get("audio_tokens", 0) - audio_c) * PRICE["audio_in"]
            + audio_c * PRICE["audio_cached"]
            + o.get("text_tokens", 0) * PRICE["text_out"]
            + o.get("audio_tokens", 0) * PRICE["audio_out"]) / 1e6


class SimFollower:
    """Tails the simulator's record and narrates this call's session.

    The record holds every connection the simulator served. Ours is the
    one whose session carries our calltag; if the gateway does not put
    [calltag:...] in the instructions, the first connection that starts
    after the call began is taken instead."""

    def __init__(self, path, calltag, printer):
        self.path = path
        self.calltag = calltag
        self.out = printer
        self.pos = os.path.getsize(path) if os.path.exists(path) else 0
        self.conn = None
        self.fallback = None
        self.backlog = {}            # conn -> lines seen before we chose
        self.tokens = 0
        self.cost = 0.0
        self.transcription_tokens = 0

    def read_new(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                f.seek(self.pos)
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind("\n") + 1          # only whole lines
        self.pos += len(data[:end].encode("utf-8"))
        for line in data[:end].splitlines():
            try:
                self.feed(json.loads(line))
            except (ValueError, KeyError):
                pass

    def feed(self, r):
        conn = r["conn"]
        if self.conn is None:
            self.backlog.setdefault(conn, []).append(r)
            if r["dir"] == "handshake" and self.fallback is None:
                self.fallback = conn
            if r["dir"] == "note" and r.get("calltag") == self.calltag:
                self.choose(conn)
            elif r["dir"] == "note" and r.get("note") == "session" \
                    and conn == self.fallback and not r.get("calltag"):
                self.choose(conn)
            return
        if conn == self.conn:
            self.narrate(r)

    def choose(self, conn):
        self.conn = conn
        for r in self.backlog.pop(conn, []):
            self.narrate(r)
        self.backlog.clear()

    def say(self, text):
        self.out.say(self.out.clock(), text)

    def narrate(self, r):
        d = r["dir"]
        if d == "handshake":
            self.say("gateway connected to the Realtime simulator")
            return
        if d == "close":
            self.say(f"realtime session closed ({r.get('code')}"
                     f"{' ' + r['reason'] if r.get('reason') else ''}, "
                     f"by {r.get('by')})")
            return
        if d == "note" and r.get("note", "").startswith("simulated"):
            self.say(r["note"])
            return
        ev = r.get("event") or {}
        t = ev.get("type")
        if d == "in" and t == "session.update":
            s = ev.get("session") or {}
            a = s.get("audio") or {}
            inp, out = a.get("input") or {}, a.get("output") or {}
            td = inp.get("turn_detection") or {}
            self.say("gateway configured the session: voice "
                     f"{out.get('voice', 'default')}, input "
                     f"{(inp.get('format') or {}).get('type')}, VAD "
                     f"{td.get('type')} {td.get('silence_duration_ms', '')}"
                     " ms")
        elif d == "in" and t == "conversation.item.truncate":
            self.say(f"gateway truncates the agent's answer at "
                     f"{ev.get('audio_end_ms')} ms (what the caller heard)")
        elif d != "out":
            return
        elif t == "conversation.item.input_audio_transcription.completed":
            self.say(f"caller: 「{ev.get('transcript')}」")
            self.transcription_tokens += (ev.get("usage") or {}).get(
                "total_tokens", 0)
        elif t == "response.output_audio_transcript.done":
            self.say(f"agent:  「{ev.get('transcript')}」")
        elif t == "response.function_call_arguments.done":
            self.say(f"agent calls tool {ev.get('name')}"
                     f"({ev.get('arguments')})")
        elif t == "response.done":
            resp = ev.get("response") or {}
            usage = resp.get("usage") or {}
            self.tokens += usage.get("total_tokens", 0)
            self.cost += response_cost(usage)
            if resp.get("status") != "completed":
                details = resp.get("status_details") or {}
                self.say(f"response {resp.get('status')} "
                         f"({details.get('reason') or details.get('error')})")
        elif t == "error":
            e = ev.get("error") or {}
            self.say(f"realtime error {e.get('code')}: {e.get('message')}")


async def run(opts):
    printer = twilio_sim.Printer(True, "", opts.verbose)
    recorder = twilio_sim.Recorder(opts.record)
    call = twilio_sim.make_calls(opts, recorder)[0]
    call.out = printer
    printer.clock = call.now_ms
    follower = None
    if opts.sim_record:
        follower = SimFollower(opts.sim_record,
                               call.params.get("calltag", ""), printer)
    task = asyncio.create_task(call.run())
    while not task.done():
        if follower:
            follower.read_new()
        await asyncio.sleep(0.1)
    if follower:
        # Transcriptions and the last usage can land just after hang-up.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            follower.read_new()
            await asyncio.sleep(0.1)
    result = task.result()
    print()
    if result["ok"]:
        print(f"call {result['call_sid']}: ok, "
              f"{result['duration_ms'] / 1000:.1f} s, agent audio heard "
              f"{result['agent_audio_ms_played'] / 1000:.1f} s")
    else:
        print(f"call {result['call_sid']}: FAILED: "
              + "; ".join(result["failures"]))
    if follower and follower.conn is not None:
        print(f"realtime tokens {follower.tokens}, cost ${follower.cost:.4f}"
              f" (gpt-realtime prices; transcription "
              f"{follower.transcription_tokens} tokens, billed separately)")
    elif follower:
        print("no session of this call found in the simulator record "
              f"{opts.sim_record} (is the gateway using that simulator?)")
    return 0 if result["ok"] else 1


def main(argv=None):
    parser = twilio_sim.build_parser()
    parser.description = ("Place one simulated call through the gateway and "
                          "narrate it, with transcripts and cost from the "
                          "Realtime simulator's record file.")
    parser.add_argument("--sim-record", metavar="FILE.jsonl",
                        help="the --record file of realtime_sim.py")
    parser.set_defaults(scenario="ja-booking")
    opts = parser.parse_args(argv)
    if opts.calls != 1:
        parser.error("call.py places one call; use twilio_sim.py --calls")
    opts.print_ = True
    params = dict(opts.param)
    if "calltag" not in params:
        # Lets the follower find this call's session among others.
        opts.param.append(("calltag", f"call-{os.getpid()}"))
    try:
        return asyncio.run(run(opts))
    except (peer_scenario.ScenarioError, ValueError, OSError) as e:
        parser.error(str(e))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
