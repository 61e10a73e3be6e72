#!/usr/bin/python3
"""The table of bench/run: reads what the runs left in the work directory
(twilio_load's and realtime_echo's JSON, the nginx worker's CPU and RSS
samples) and writes the table to stdout and to --text, everything to
--json.  The bridge-added latency is the RTT through nginx minus the floor
(the same path without nginx), percentile by percentile."""

import argparse
import collections
import json
import os
import re
import string
import platform
import subprocess
import sys
import time

TARGET_ADDED_P99_US = 1000      # at 500 calls
TARGET_FLOOR_RATIO = 1.2        # echo, plaintext: CPU vs the kernel floor
TARGET_RSS_KIB = 64             # per call
TARGET_SETUP_MS = 5
TARGET_FIRST_CACHE_MS = 50      # p99, the greeting from the cache
FIRST_MODEL_MS = 400            # the stand-in's latency to first audio
TARGET_FIRST_POOL_MS = FIRST_MODEL_MS + 20   # p99, pooled, no cache


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def nginx_numbers(s, load_json):
    """CPU per call-second and RSS per call from the worker's samples."""
    calls = s["calls"]
    clk = s["clk_tck"]
    c0, ca, cb, c1 = s["cpu_ticks"]
    r0, ra, rb, r1 = s["rss_kib"]
    t0, ta, tb, t1 = s["t"]
    out = {"rss_before_kib": r0, "rss_steady_kib": rb or r1,
           "rss_after_kib": r1, "log_errors": s["log_errors"],
           "cpu_ms_total": (c1 - c0) * 1000.0 / clk}

    call_seconds = (load_json or {}).get("call_seconds", 0)
    out["cpu_ms_per_call_s_total"] = (
        out["cpu_ms_total"] / call_seconds if call_seconds else None)

    if s["window"] and tb > ta:
        out["window_s"] = tb - ta
        out["cpu_ms_window"] = (cb - ca) * 1000.0 / clk
        out["cpu_ms_per_call_s"] = out["cpu_ms_window"] / (calls * (tb - ta))
        out["core_share"] = out["cpu_ms_window"] / ((tb - ta) * 1000.0)
        pa, pb = s.get("cpu_user_sys_window", [[0, 0], [0, 0]])
        out["user_ms_window"] = (pb[0] - pa[0]) * 1000.0 / clk
        out["sys_ms_window"] = (pb[1] - pa[1]) * 1000.0 / clk
        out["rss_kib_per_call"] = (rb - r0) / calls
    else:
        out["cpu_ms_per_call_s"] = out["cpu_ms_per_call_s_total"]
        out["core_share"] = None
        out["rss_kib_per_call"] = None

    return out


def fmt(v, spec="{:.0f}", none="-"):
    return none if v is None else spec.format(v)


def tool_cpu(j):
    if not j:
        return "-"
    c = j["cpu"]
    return "{:.0f}% {:.3f}".format(c["core_share"] * 100,
                                   c["ms_per_call_second"])


def echo_cpu(j):
    if not j or not j.get("wall_s"):
        return "-"
    return "{:.0f}%".format(j["cpu_ms"] / (j["wall_s"] * 10))


def setup_buckets(path):
    # twirt_setup_seconds_bucket{le="0.005"} 12 -> {0.005: 12}
    b = {}
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r'twirt_setup_seconds_bucket\{le="([^"]+)"\} (\S+)',
                             line)
                if m:
                    le = float("inf") if m.group(1) == "+Inf" else float(
                        m.group(1))
                    b[le] = float(m.group(2))
    except OSError:
        return None
    return b or None


def gateway_setup(work, calls):
    # p50 and p99 of the run's calls, as bucket upper bounds in ms
    label = "bridge-{}".format(calls)
    b0 = setup_buckets(os.path.join(work, label + ".status0"))
    b1 = setup_buckets(os.path.join(work, label + ".status1"))
    if not b0 or not b1:
        return None
    les = sorted(b1)
    n = b1[float("inf")] - b0.get(float("inf"), 0)
    if n <= 0:
        return None
    out = []
    for q in (0.5, 0.99):
        for le in les:
            if b1[le] - b0.get(le, 0) >= q * n:
                out.append(le * 1000 if le != float("inf") else le)
                break
    return out


SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall",
                   "fcall_ro")


def redis_info(path):
    """INFO commandstats and cpu, and the feed's entries-added: ({command:
    calls}, cpu seconds, events added to the feed)."""
    calls = {}
    cpu = 0.0
    feed = 0
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
                if m:
                    calls[m.group(1)] = int(m.group(2))
                m = re.match(r"used_cpu_(user|sys):([0-9.]+)", line)
                if m:
                    cpu += float(m.group(2))
                m = re.match(r"feed_entries_added:(\d+)", line)
                if m:
                    feed = int(m.group(1))
    except OSError:
        return None
    return calls, cpu, feed


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def redis_window(w, label, a, b, dt):
    """Redis between two samples: commands/s by command, CPU ms/s, events
    written to the board's feed."""
    r0 = redis_info(os.path.join(w, label + "." + a))
    r1 = redis_info(os.path.join(w, label + "." + b))
    if not r0 or not r1 or dt <= 0:
        return {"redis_commands_per_s": None, "redis_by_command_per_s": {},
                "redis_cpu_ms_per_s": None, "scripts_per_s": None,
                "feed_events": None, "feed_events_per_s": None}
    # the sample's own commands are left out: two INFO and one XINFO
    cmds = {k: v - r0[0].get(k, 0) for k, v in r1[0].items()}
    cmds["info"] = max(0, cmds.get("info", 0) - 2)
    cmds["xinfo|stream"] = max(0, cmds.get("xinfo|stream", 0) - 1)
    return {"redis_commands_per_s": sum(cmds.values()) / dt,
            "redis_by_command_per_s": {k: v / dt for k, v in sorted(
                cmds.items()) if v},
            "redis_cpu_ms_per_s": (r1[1] - r0[1]) * 1000.0 / dt,
            "scripts_per_s": sum(v for k, v in cmds.items()
                                 if k.split("|")[0] in SCRIPT_COMMANDS) / dt,
            "feed_events": r1[2] - r0[2],
            "feed_events_per_s": (r1[2] - r0[2]) / dt}


def phase_numbers(w, label, floor, family):
    """What bench/run's phase_measure left for one phase: the quiet time
    with no call, then the calls; the audio path's round trips (and what
    they add to the floor's), the worker's CPU, Redis, the peer's CPU; and
    as p[family] what the family's own function wrote."""
    c = load(os.path.join(w, label + ".phase.json"))
    own = load(os.path.join(w, "{}.{}.json".format(label, family)))
    lj = load(os.path.join(w, label + ".load.json"))
    if c is None or own is None:
        return None
    t0, tq, t1 = c["t"]
    dq, dt = tq - t0, t1 - tq
    clk = c["clk_tck"]
    m0, mq, m1 = c["worker_ms"]
    p = {"label": label, "kind": c["kind"], "calls": c["calls"],
         "seconds": dt, "quiet_seconds": dq, "load": lj, "samples": c,
         # the worker's CPU: the scheduler's runtime, to the microsecond
         "worker_cpu_ms_per_s": (m1 - mq) / dt,
         "worker_cpu_ms_per_call_s": None,
         "quiet": {"worker_cpu_ms_per_s": (mq - m0) / dq if dq > 0 else None},
         "peer_cpu_ms_per_s": (c["peer_ticks"][2] - c["peer_ticks"][1])
         * 1000.0 / clk / dt,
         "loadavg": c.get("loadavg"), family: own}
    p.update(redis_window(w, label, "redisq", "redis1", dt))
    p["quiet"].update(redis_window(w, label, "redis0", "redisq", dq))
    if lj:
        p["rtt_us"] = lj["rtt_us"]
        p["lost"] = lj["frames"]["lost"]
        cc = lj["calls"]
        p["calls_ok"] = (not cc["failed"] and not cc["dropped"]
                         and cc["established"] == cc["requested"])
        if lj.get("call_seconds"):
            p["worker_cpu_ms_per_call_s"] = (m1 - mq) / lj["call_seconds"]
        if floor:
            p["added_us"] = {k: lj["rtt_us"][k] - floor["rtt_us"][k]
                             for k in ("p50", "p90", "p99", "p999", "max")}
    return p


def rtt_cell(p):
    r = p.get("rtt_us")
    return "{}/{}/{}".format(r["p50"], r["p99"], r["max"]) if r else "-"


# what the summaries of every phase family give for each kind: medians
PHASE_MEDIANS = {
    "rtt_p50_us": lambda p: p.get("rtt_us", {}).get("p50"),
    "rtt_p99_us": lambda p: p.get("rtt_us", {}).get("p99"),
    "added_p50_us": lambda p: p.get("added_us", {}).get("p50"),
    "added_p99_us": lambda p: p.get("added_us", {}).get("p99"),
    "worker_cpu_ms_per_s": lambda p: p["worker_cpu_ms_per_s"],
    "worker_cpu_ms_per_call_s": lambda p: p["worker_cpu_ms_per_call_s"],
    "quiet_worker_cpu_ms_per_s": lambda p: p["quiet"]["worker_cpu_ms_per_s"],
    "redis_cpu_ms_per_s": lambda p: p["redis_cpu_ms_per_s"],
    "quiet_redis_cpu_ms_per_s": lambda p: p["quiet"]["redis_cpu_ms_per_s"],
    "redis_commands_per_s": lambda p: p["redis_commands_per_s"],
    "scripts_per_s": lambda p: p["scripts_per_s"],
    "feed_events_per_s": lambda p: p["feed_events_per_s"],
    "peer_cpu_ms_per_s": lambda p: p["peer_cpu_ms_per_s"],
}


def phase_summary(phases, kinds, base, extra=None):
    """Per kind: the medians of its phases (PHASE_MEDIANS and extra), the
    frames lost in all; per other kind: its ratios to base's round trips,
    what they add to the floor's, and CPU per call-second."""
    fields = dict(PHASE_MEDIANS, **(extra or {}))
    summary = {}
    for kind in kinds:
        ps = [p for p in phases if p["kind"] == kind]
        summary[kind] = {k: median(f(p) for p in ps)
                         for k, f in fields.items()}
        summary[kind]["phases"] = len(ps)
        summary[kind]["lost"] = sum(p.get("lost") or 0 for p in ps)
    b = summary[base]
    for kind in kinds:
        if kind == base:
            continue
        for name, k in (("p50", "rtt_p50_us"), ("p99", "rtt_p99_us"),
                        ("added_p50", "added_p50_us"),
                        ("added_p99", "added_p99_us"),
                        ("cpu", "worker_cpu_ms_per_call_s")):
            summary["ratio_{}_{}".format(kind, name)] = (
                summary[kind][k] / float(b[k])
                if b[k] and summary[kind][k] is not None else None)
    return summary


def phase_diff(summary, kind, base, k):
    x, y = summary[kind][k], summary[base][k]
    return None if x is None or y is None else x - y


def known_format(text, info, *args):
    """text.format(*args, **info), "?" for what info does not have."""
    return string.Formatter().vformat(
        text, args, collections.defaultdict(lambda: "?", info or {}))


def phase_family(w, name, labels, note, extend, floor, say):
    """A family's summary file ($name.json) and its phases, each read by
    phase_numbers() and given the family's own numbers by extend(w, p);
    with no phase, says why it did not run."""
    phases = [extend(w, p) for p in (phase_numbers(w, l, floor, name)
                                     for l in labels.split()) if p]
    if not phases and note:
        say("")
        say("{} phase not run: {}".format(name, note))
    return load(os.path.join(w, name + ".json")), phases


def phase_table(say, widths, head, units, phases, cells, warn=None):
    """One line per phase: its kind and round, then cells(p); the
    warnings of the calls (and warn(p)'s) below it."""
    row = " ".join("{:>%d}" % n for n in widths).format
    say(row(*head))
    say(row(*units))
    say("-" * len(row(*head)))
    for p in phases:
        say(row("{} {}".format(p["kind"], p["label"].rsplit("-", 1)[-1]),
                *cells(p)))
        warnings = []
        if p.get("load") and not p.get("calls_ok"):
            warnings.append("not every call was set up and kept")
        warnings += warn(p) if warn else []
        for text in warnings:
            say("{:>6} WARNING: {}".format("", text))


KINDS = (("A", "no campaign running"),
         ("B", "a campaign dialing"),
         ("C", "a campaign running, its window closed"))


def campaign_phase(w, p):
    c = p["campaign"]
    t0, _, t1 = p["samples"]["t"]
    dial = c["dial"]
    p.update({"dials_per_s": (dial["dialed"][1] - dial["dialed"][0])
              / (t1 - t0),
              "dialed": dial["dialed"], "busy": dial["busy"],
              "closed": c["closed"],
              "standin_cpu_ms_per_s": p["peer_cpu_ms_per_s"]})
    p["quiet"]["dials_per_s"] = None
    return p


def campaign_section(w, labels, note, floor, say):
    """The campaign phase: the audio path with no campaign running (A), a
    campaign dialing (B), a campaign running with its window closed (C),
    phase by phase, then the medians of each kind and their ratios."""
    info, phases = phase_family(w, "campaign", labels, note, campaign_phase,
                                floor, say)
    if not phases:
        return {"note": note} if note else None

    say("")
    say(known_format(
        "campaign phase: {} calls x {duration} s per phase (after {quiet} s "
        "with no call) through one nginx with Redis and two campaigns of "
        "{rows} rows ({redis_rows} and {closed_redis_rows} in Redis), cps "
        "{cps}, concurrency {concurrency}, every call busy (Twilio "
        "stand-in over TLS): A none running, B one dialing, C the other "
        "running with its window closed ({window})", info,
        phases[0]["calls"]))
    say("")
    phase_table(
        say, (6, 20, 4, 7, 7, 7, 7, 6, 7, 6, 11, 8, 7),
        ("phase", "rtt p50/p99/max us", "lost", "worker", "quiet", "redis",
         "cmd/s", "eval/s", "claim/s", "dial/s", "dialed", "closed", "load"),
        ("", "", "", "ms/s", "ms/s", "ms/s", "", "", "", "", "", "dialed",
         "avg"),
        phases, lambda p: (
            rtt_cell(p), p.get("lost", "-"),
            fmt(p["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["quiet"]["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["redis_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["redis_commands_per_s"], "{:.0f}"),
            fmt(p["scripts_per_s"], "{:.1f}"),
            fmt(p["redis_by_command_per_s"].get("zrangebyscore", 0),
                "{:.1f}"),
            fmt(p["dials_per_s"], "{:.2f}"),
            "{}->{}".format(*p["dialed"]),
            "{}->{}".format(*p["closed"]["dialed"]),
            (p["loadavg"] or ["-"])[0].split(" ")[0]))

    summary = phase_summary(phases, [k for k, _ in KINDS], "A", {
        "zrangebyscore_per_s": lambda p: p[
            "redis_by_command_per_s"].get("zrangebyscore", 0),
        "dials_per_s": lambda p: p["dials_per_s"],
        "standin_cpu_ms_per_s": lambda p: p["standin_cpu_ms_per_s"]})
    out = {"phases": phases, "campaign": info, "summary": summary}

    def d(kind, k, base="A"):
        return phase_diff(summary, kind, base, k)

    say("")
    say("  medians of each kind's phases (rtt p50 / p99 us; worker CPU ms/s "
        "with the calls, and in the {} s before them with no call):".format(
            info["quiet"] if info else "?"))
    for kind, words in KINDS:
        s = summary[kind]
        say("    {} {:<38} {:>6} / {:>6}   worker {:>6} ms/s, quiet {:>5} "
            "ms/s   Redis {:>5} ms/s, {:>4} cmd/s, {:>4} scripts/s".format(
                kind, words + " ({})".format(s["phases"]),
                fmt(s["rtt_p50_us"]), fmt(s["rtt_p99_us"]),
                fmt(s["worker_cpu_ms_per_s"], "{:.1f}"),
                fmt(s["quiet_worker_cpu_ms_per_s"], "{:.2f}"),
                fmt(s["redis_cpu_ms_per_s"], "{:.1f}"),
                fmt(s["redis_commands_per_s"], "{:.0f}"),
                fmt(s["scripts_per_s"], "{:.1f}")))
    say("  C/A (the dispatcher's own cost): p50 {}, p99 {}; worker {} ms/s "
        "with the calls, {} ms/s with no call; Redis {} ms/s, {} commands/s; "
        "{} claim scripts/s".format(
            fmt(summary["ratio_C_p50"], "{:.2f}"),
            fmt(summary["ratio_C_p99"], "{:.2f}"),
            fmt(d("C", "worker_cpu_ms_per_s"), "{:+.1f}"),
            fmt(d("C", "quiet_worker_cpu_ms_per_s"), "{:+.2f}"),
            fmt(d("C", "redis_cpu_ms_per_s"), "{:+.1f}"),
            fmt(d("C", "redis_commands_per_s"), "{:+.0f}"),
            fmt(summary["C"]["zrangebyscore_per_s"], "{:.1f}")))
    say("  B/A (dialing): p50 {}, p99 {}; worker {} ms/s with the calls, {} "
        "ms/s with no call ({} over C); Redis {} ms/s, {} commands/s; {} "
        "dials/s ({} dialed in all of {} rows)".format(
            fmt(summary["ratio_B_p50"], "{:.2f}"),
            fmt(summary["ratio_B_p99"], "{:.2f}"),
            fmt(d("B", "worker_cpu_ms_per_s"), "{:+.1f}"),
            fmt(d("B", "quiet_worker_cpu_ms_per_s"), "{:+.1f}"),
            fmt(d("B", "quiet_worker_cpu_ms_per_s", "C"), "{:+.1f}"),
            fmt(d("B", "redis_cpu_ms_per_s"), "{:+.1f}"),
            fmt(d("B", "redis_commands_per_s"), "{:+.0f}"),
            fmt(summary["B"]["dials_per_s"], "{:.2f}"),
            info["dialed_total"] if info else "?",
            info["rows"] if info else "?"))
    phase_footer(info, say)
    return out


def phase_footer(info, say):
    """The load average around a phase family, its nginx's errors."""
    if info and info.get("loadavg"):
        say("  load average (1, 5, 15 min) before the phase {}, after it "
            "{}".format(*info["loadavg"]))
    if info and (info.get("log_errors") or info.get("worker_died")):
        say("  nginx error log: {} lines at [error] or worse{}".format(
            info.get("log_errors"), "; the worker DIED"
            if info.get("worker_died") else ""))


BOARD_KINDS = (("D0", "no browser on the feed"),
               ("D1", "browsers reading the feed"))


def board_phase(w, p):
    b = p["board"]
    sse = load(os.path.join(w, p["label"] + ".sse.json"))
    f0, f1 = b["feed_added"]
    p.update({"clients": b["clients"], "sse": sse,
              # while the readers were connected (D1), or the same span
              "feed_written": f1 - f0,
              "delivered": sse["events"] if sse else None,
              "readers_cpu_ms_per_s": (p["peer_cpu_ms_per_s"] if b["clients"]
                                       else None)})
    p["delivered_median"] = median(p["delivered"] or [])
    return p


def board_section(w, labels, note, floor, say):
    """The board phase: the audio path with nobody on the feed (D0) and
    with N browsers reading it (D1), phase by phase, then the medians of
    each kind and D1/D0."""
    info, phases = phase_family(w, "board", labels, note, board_phase, floor,
                                say)
    if not phases:
        return {"note": note} if note else None

    clients = max(p["clients"] for p in phases)
    say("")
    say(known_format(
        "board phase: {} calls x {duration} s per phase (after {quiet} s "
        "with no call) through one nginx with Redis and twirt_board, each "
        "call's Realtime stand-in ending an answer every {transcripts_ms} ms "
        "(a transcript and a cost event on the feed): D0 nobody on the feed, "
        "D1 {} readers of board/events (under chrt --idle)", info,
        phases[0]["calls"], clients))
    say("")

    def cells(p):
        a, dl = p.get("added_us"), p["delivered"]
        return (
            rtt_cell(p), "{}/{}".format(a["p50"], a["p99"]) if a else "-",
            p.get("lost", "-"), fmt(p["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["worker_cpu_ms_per_call_s"], "{:.3f}"),
            fmt(p["quiet"]["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["redis_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["feed_events_per_s"], "{:.0f}"), p["feed_written"],
            "{}/{:.0f}/{}".format(min(dl), p["delivered_median"], max(dl))
            if dl else "-",
            fmt(p["readers_cpu_ms_per_s"], "{:.1f}"),
            (p["loadavg"] or ["-"])[0].split(" ")[0])

    def warn(p):
        ended = (p["sse"] or {}).get("closed")
        return ["{} readers ended early: {}".format(len(ended), ended[0])] \
            if ended else []

    phase_table(
        say, (6, 20, 11, 4, 7, 7, 7, 7, 6, 7, 13, 7, 6),
        ("phase", "rtt p50/p99/max us", "added", "lost", "worker", "cpu",
         "quiet", "redis", "feed", "events", "per reader", "readers", "load"),
        ("", "", "p50/p99 us", "", "ms/s", "ms/cs", "ms/s", "ms/s", "ev/s",
         "written", "min/med/max", "ms/s", "avg"),
        phases, cells, warn)

    summary = phase_summary(phases, [k for k, _ in BOARD_KINDS], "D0", {
        "feed_written": lambda p: p["feed_written"],
        "delivered_per_reader": lambda p: p["delivered_median"],
        "readers_cpu_ms_per_s": lambda p: p["readers_cpu_ms_per_s"]})
    out = {"phases": phases, "board": info, "summary": summary}

    say("")
    say("  medians of each kind's phases (rtt and added p50 / p99 us; worker "
        "CPU per call-second, and ms/s in the {} s before the calls with no "
        "call; events written to the feed in a phase, and got by each "
        "reader):".format(info["quiet"] if info else "?"))
    for kind, words in BOARD_KINDS:
        s = summary[kind]
        say("    {:<2} {:<30} rtt {:>5} / {:>5}  added {:>5} / {:>5}   "
            "cpu {:>5} ms/cs, quiet {:>5} ms/s   lost {}   written {:>6}, "
            "per reader {}".format(
                kind, words + " ({})".format(s["phases"]),
                fmt(s["rtt_p50_us"]), fmt(s["rtt_p99_us"]),
                fmt(s["added_p50_us"]), fmt(s["added_p99_us"]),
                fmt(s["worker_cpu_ms_per_call_s"], "{:.3f}"),
                fmt(s["quiet_worker_cpu_ms_per_s"], "{:.2f}"),
                s["lost"], fmt(s["feed_written"]),
                fmt(s["delivered_per_reader"])))
    say("  D1/D0 (the feed's cost to the audio path): rtt p50 {}, p99 {}; "
        "added p50 {}, p99 {}; worker CPU per call-second {} ({} ms/s with "
        "the calls, {} ms/s with no call)".format(
            fmt(summary["ratio_D1_p50"], "{:.2f}"),
            fmt(summary["ratio_D1_p99"], "{:.2f}"),
            fmt(summary["ratio_D1_added_p50"], "{:.2f}"),
            fmt(summary["ratio_D1_added_p99"], "{:.2f}"),
            fmt(summary["ratio_D1_cpu"], "{:.2f}"),
            fmt(phase_diff(summary, "D1", "D0", "worker_cpu_ms_per_s"),
                "{:+.1f}"),
            fmt(phase_diff(summary, "D1", "D0", "quiet_worker_cpu_ms_per_s"),
                "{:+.2f}")))
    types = {}
    for p in phases:
        for t, n in ((p["sse"] or {}).get("first_client_types") or {}).items():
            types[t] = types.get(t, 0) + n
    summary["first_reader_types"] = types
    if types:
        say("  what one reader got in all the D1 phases, by event type: " +
            ", ".join("{} {}".format(t, n) for t, n in sorted(
                types.items(), key=lambda x: -x[1])))
    phase_footer(info, say)
    return out


FIRST_RUNS = (("cold", "no pool, no cache", None),
              ("pool", "twirt_openai_pool 16", TARGET_FIRST_POOL_MS),
              ("cache", "twirt_greeting_cache", TARGET_FIRST_CACHE_MS),
              ("both", "the pool and the cache", TARGET_FIRST_CACHE_MS))


def first_stand_in(d):
    """What realtime_echo measured of itself in a first-audio run: its
    first audio (response.create read -> first delta written) and its
    upgrade holds, ms."""
    if not d or "first_audio_us" not in d:
        return None
    fa, hold = d["first_audio_us"], d["upgrade_hold_us"]
    return {"first_audio_ms": d["first_audio_ms"],
            "upgrade_delay_ms": d["upgrade_delay_ms"],
            "greeting_ms": d["greeting_ms"],
            "responses": fa["count"],
            "p50_ms": fa["p50"] / 1000 if fa["count"] else None,
            "p99_ms": fa["p99"] / 1000 if fa["count"] else None,
            "max_ms": fa["max"] / 1000 if fa["count"] else None,
            "upgrades": hold["count"],
            "hold_p99_ms": hold["p99"] / 1000 if hold["count"] else None,
            "hold_max_ms": hold["max"] / 1000 if hold["count"] else None,
            "timer_late": d.get("timer_late"),
            "cpu_ms": d.get("cpu_ms")}


def first_section(w, labels, note, say):
    """The first-audio phase: TCP connect -> the first greeting audio
    heard, p50/p99 per configuration, against the targets, with what the
    stand-in measured of its own first audio."""
    runs = []
    for label in labels.split():
        d = load(os.path.join(w, "first-" + label + ".json"))
        if d:
            d["label"] = label
            d["stand_in"] = first_stand_in(
                load(os.path.join(w, "first-" + label + ".echo.json")))
            runs.append(d)
    if not runs:
        if note:
            say("")
            say("first audio: no run measured; note: " + note)
        return {"note": note} if note else None
    ins = [r["stand_in"] for r in runs if r["stand_in"]]
    model_ms = ins[0]["first_audio_ms"] if ins else FIRST_MODEL_MS
    upgrade_ms = ins[0]["upgrade_delay_ms"] if ins else 300
    greeting_ms = ins[0]["greeting_ms"] if ins else 2000
    say("")
    say("first audio: {} calls per run at random moments within {:g} s, "
        "each timed from its TCP connect to the first greeting audio it "
        "hears; the Realtime stand-in (realtime_echo) holds each upgrade "
        "{:g} ms and takes {:g} ms to its first audio; the greeting lasts "
        "{:g} s".format(runs[0]["calls"], runs[0]["spread"], upgrade_ms,
                        model_ms, greeting_ms / 1000))
    say("")
    say("  {:<6} {:<24} {:>8} {:>8} {:>6}  {:<22} {}".format(
        "run", "", "p50 ms", "p99 ms", "failed", "stand-in p50/p99 (n)",
        "target (p99)"))
    targets = dict((k, t) for k, _, t in FIRST_RUNS)
    what = dict((k, d) for k, d, _ in FIRST_RUNS)
    for r in runs:
        t = targets.get(r["label"])
        r["target_ms"] = t
        r["met"] = (t is not None and r["p99"] is not None
                    and r["p99"] <= t and not r["failed"])
        si = r["stand_in"]
        model = "-"
        if si and si["responses"]:
            model = "{:.1f}/{:.1f} ({})".format(si["p50_ms"], si["p99_ms"],
                                                si["responses"])
        say("  {:<6} {:<24} {:>8} {:>8} {:>6}  {:<22} {}".format(
            r["label"], what.get(r["label"], ""), fmt(r["p50"], "{:.1f}"),
            fmt(r["p99"], "{:.1f}"), r["failed"], model,
            "-" if t is None else "<= {} ms: {}".format(
                t, "ok" if r["met"] else "MISSED")))
        if r["failed"]:
            say("  {:<6} WARNING: {}".format("", r["errors"][0]))
    timed = [si for si in ins if si["responses"]]
    if timed:
        n = sum(si["responses"] for si in timed)
        worst = max(si["max_ms"] for si in timed)
        say("  note: the stand-in's own first audio (response.create read "
            "-> first delta written), {} responses: p99 at most {:.2f} ms, "
            "max {:.2f} ms: {:.2f} ms over its {:g} ms".format(
                n, max(si["p99_ms"] for si in timed), worst,
                worst - model_ms, model_ms))
    holds = [si for si in ins if si["upgrades"]]
    if holds:
        worst = max(si["hold_max_ms"] for si in holds)
        say("  note: its upgrade holds (request read -> 101), {} upgrades: "
            "max {:.2f} ms ({:.2f} ms over {:g})".format(
                sum(si["upgrades"] for si in holds), worst,
                worst - upgrade_ms, upgrade_ms))
    if note:
        say("  note: " + note)
    return {"runs": runs, "note": note}


def cpc_section(w, a, floors, say):
    """The headline: calls per core, each shape with TLS."""
    runs = a.cpc_runs.split()
    if not runs:
        return None

    out = {"target_added_p99_us": int(a.cpc_target_us), "shapes": {},
           "runs": []}
    heads = []
    for item in a.cpc_result.split():
        shape, good, bad = item.split(":")
        out["shapes"][shape] = {"held": int(good), "failed_at": int(bad)}
        heads.append("{} {}{}".format(
            shape, good, "+" if bad == "0" else ""))

    say("calls per core (one worker, {}, the added p99 under "
        "{} ms, no call or frame lost): {}".format(
            "TLS on both legs" if a.cpc_tls == "1" else "plaintext",
            int(a.cpc_target_us) / 1000.0, ", ".join(heads) or "-"))

    row = "{:>14} {:>6} {:>20} {:>5} {:>9} {:>5} {:>9}".format
    say(row("shape", "calls", "added p50/p99/max", "lost", "cpu ms/cs",
            "core", "load cpu"))
    for label in runs:
        lj = load(os.path.join(w, label + ".load.json"))
        nj = load(os.path.join(w, label + ".nginx.json"))
        if lj is None or nj is None:
            continue
        f = floors.get(nj["shape"] + ("-tls" if nj.get("tls") else ""))
        added = {}
        if f:
            for p in ("p50", "p99", "max"):
                added[p] = lj["rtt_us"][p] - f[1]["rtt_us"][p]
        ng = nginx_numbers(nj, lj)
        out["runs"].append({"label": label, "calls": nj["calls"],
                            "shape": nj["shape"], "added_us": added,
                            "lost": lj["frames"]["lost"],
                            "calls_failed": lj["calls"]["failed"]
                            + lj["calls"]["dropped"], "nginx": ng})
        say(row(nj["shape"], nj["calls"], "{}/{}/{}".format(
            added.get("p50", "-"), added.get("p99", "-"),
            added.get("max", "-")), lj["frames"]["lost"]
            + lj["calls"]["failed"] + lj["calls"]["dropped"],
            fmt(ng["cpu_ms_per_call_s"], "{:.3f}"),
            fmt(ng["core_share"] and ng["core_share"] * 100, "{:.0f}%"),
            tool_cpu(lj)))
    say("  (N+: the search's maximum held; lost counts frames, failed and "
        "dropped calls)")
    say("")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--runs", default="")
    ap.add_argument("--floors", default="floor")
    ap.add_argument("--cpc-runs", default="")
    ap.add_argument("--cpc-result", default="")
    ap.add_argument("--cpc-target-us", default="5000")
    ap.add_argument("--target", default="nginx")
    ap.add_argument("--cpc-tls", default="1")
    ap.add_argument("--bridge", default="0")
    ap.add_argument("--bridge-note", default="")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--duration", default="")
    ap.add_argument("--marks", default="immediate")
    ap.add_argument("--campaign", default="")
    ap.add_argument("--campaign-note", default="")
    ap.add_argument("--board", default="")
    ap.add_argument("--board-note", default="")
    ap.add_argument("--first", default="")
    ap.add_argument("--first-note", default="")
    ap.add_argument("--json", required=True)
    ap.add_argument("--text", required=True)
    a = ap.parse_args()

    w = a.work
    floor = load(os.path.join(w, a.floor + ".load.json"))
    floor_echo = load(os.path.join(w, a.floor + ".echo.json"))

    # the floors by shape and transport: "floor" is the echo's, plaintext
    floors = {}
    for label in a.floors.split():
        j = load(os.path.join(w, label + ".load.json"))
        if j is None:
            continue
        key = "echo" if label == a.floor else label[len("floor-"):]
        floors[key] = (label, j, load(os.path.join(w, label + ".echo.json")))

    def floor_for(nj):
        key = nj.get("shape", "echo") + ("-tls" if nj.get("tls") else "")
        f = floors.get(key)
        return f[1] if f else None

    try:
        nginx_v = subprocess.run(
            [os.environ.get("NGINX", "/usr/sbin/nginx"), "-v"],
            capture_output=True, text=True).stderr.strip()
    except OSError:
        nginx_v = ""

    result = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {"cores": os.cpu_count(), "kernel": platform.release(),
                 "nginx": nginx_v},
        "mode": a.mode, "duration_s": a.duration, "marks": a.marks,
        "floor": {"load": floor, "echo": floor_echo},
        "floors": {k: {"label": v[0], "load": v[1], "echo": v[2]}
                   for k, v in floors.items()},
        "bridge_target": a.target,
        "bridge_available": a.bridge == "1",
        "bridge_note": a.bridge_note,
        "runs": [],
    }

    lines = []
    say = lines.append

    say("twirt bench, {}, {} cores, {}, audio {} s per call, marks {}".format(
        result["timestamp"], os.cpu_count(), nginx_v.replace(
            "nginx version: ", ""), a.duration, a.marks))
    if a.target == "cmd":
        say("the bridge measured: " + a.bridge_note)
    say("")

    result["calls_per_core"] = cpc_section(w, a, floors, say)

    row = ("{:>22} {:>22} {:>20} {:>5} {:>9} {:>6} {:>5} {:>8} {:>13} "
           "{:>15} {:>12} {:>5} {:>8}").format
    head = row("kind calls", "rtt p50/p99/max us", "added p50/p99/max",
               "lost", "cpu ms/cs", "xfloor", "core", "KiB/call",
               "101 p50/p99ms", "1st echo p50/p99", "load cpu", "echo",
               "marks")
    say(head)
    say("-" * len(head))

    def rtt(j):
        r = j["rtt_us"]
        return "{}/{}/{}".format(r["p50"], r["p99"], r["max"])

    def setup(j, key):
        s = j[key]
        return "{:.2f}/{:.2f}".format(s["p50"] / 1000.0, s["p99"] / 1000.0)

    def lost(j):
        return j["frames"]["lost"]

    def marks(j):
        # the marks' echoes the bridge received: twirt's marks echoed by
        # the Twilio side, or those the load tool made by twirt's rule and
        # sent to the kernel floor's sink; none to the direct floors
        if j.get("mode") == "direct" and not j.get("mark_sink"):
            return "-"
        return j["messages"]["marks_echoed"]

    for key in ("echo", "conversation", "echo-tls", "conversation-tls"):
        if key not in floors:
            continue
        label, fj, fe = floors[key]
        say(row(
            "floor " + key, rtt(fj), "(direct)", lost(fj), "-", "-", "-",
            "-", setup(fj, "setup_101_us"), setup(fj, "setup_media_us"),
            tool_cpu(fj), echo_cpu(fe), marks(fj)))

    # the kernel floor's CPU per call-second, by number of calls
    relay_cpu = {}
    for label in a.runs.split():
        nj = load(os.path.join(w, label + ".nginx.json"))
        if nj and nj.get("kind") == "relay":
            lj = load(os.path.join(w, label + ".load.json"))
            relay_cpu[nj["calls"]] = nginx_numbers(nj, lj)["cpu_ms_per_call_s"]

    verdicts = []

    for label in a.runs.split():
        lj = load(os.path.join(w, label + ".load.json"))
        ej = load(os.path.join(w, label + ".echo.json"))
        nj = load(os.path.join(w, label + ".nginx.json"))
        if nj is None:
            continue

        calls = nj["calls"]
        kind = nj.get("kind", "echo")
        ng = nginx_numbers(nj, lj)
        run = {"calls": calls, "kind": kind, "load": lj, "echo": ej,
               "nginx": ng, "nginx_samples": nj}
        if kind == "relay":
            run["relay"] = load(os.path.join(w, label + ".relay.json"))

        if lj is None:
            say("{:>22} the load tool wrote no results".format(
                kind + " " + str(calls)))
            result["runs"].append(run)
            continue

        added = {}
        fl = floor if kind == "relay" else floor_for(nj)
        if fl:
            for p in ("p50", "p90", "p99", "p999", "max"):
                added[p] = lj["rtt_us"][p] - fl["rtt_us"][p]
        run["added_us"] = added

        # CPU against the kernel floor's at the same calls: the echo
        # shape's, as the relay carries that one
        ratio = None
        rc = relay_cpu.get(calls)
        if (kind in ("echo", "echo-tls") and rc
                and ng["cpu_ms_per_call_s"] is not None):
            ratio = ng["cpu_ms_per_call_s"] / rc
        run["floor_ratio"] = ratio

        say(row(
            kind + " " + str(calls), rtt(lj),
            "{}/{}/{}".format(added.get("p50", "-"), added.get("p99", "-"),
                              added.get("max", "-")),
            lost(lj), fmt(ng["cpu_ms_per_call_s"], "{:.3f}"),
            fmt(ratio, "{:.2f}x"),
            fmt(ng["core_share"] and ng["core_share"] * 100, "{:.0f}%"),
            fmt(ng["rss_kib_per_call"], "{:.1f}"),
            setup(lj, "setup_101_us"), setup(lj, "setup_media_us"),
            tool_cpu(lj), echo_cpu(ej), marks(lj)))

        c = lj["calls"]
        if (c["failed"] or c["dropped"] or lj["frames"]["lost"]
                or c["established"] != c["requested"]):
            say("{:>6} WARNING: calls {} requested, {} established, {} "
                "failed, {} dropped; {} frames lost".format(
                    "", c["requested"], c["established"], c["failed"],
                    c["dropped"], lj["frames"]["lost"]))
        sink = (run.get("relay") or {}).get("sink")
        if kind == "relay" and (not lj.get("mark_sink") or not sink
                                or not sink["bytes"]):
            say("{:>6} WARNING: the kernel floor's mark sink received "
                "nothing".format(""))
        if nj.get("worker_died"):
            say("{:>6} WARNING: the nginx worker died during the run".format(
                ""))
        if ng["log_errors"]:
            say("{:>6} nginx error log: {} lines at [error] or worse".format(
                "", ng["log_errors"]))

        if kind != "relay":
            verdicts.append((calls, kind, lj, ng, added, ratio))
        result["runs"].append(run)

    say("")
    say("kinds: echo = a delta per 20 ms frame (the worst case), plaintext;")
    say("  relay = bench/relay_floor in nginx's place (the kernel floor: the")
    say("  same socket calls per message, no WebSocket or JSON work), echo")
    say("  shape, with the marks' echoes nginx receives for twirt (made by")
    say("  twirt's rule, sent to the relay's sink, read and discarded);")
    say("  conversation = agent turns of 100-200 ms deltas at 2-5x real")
    say("  time about half of the time, caller audio every 20 ms; -tls =")
    say("  wss:// on both legs, certificates verified.")
    say("rtt: echo: Twilio media out to its echo back (through nginx: Twilio")
    say("  -> nginx -> simulator -> nginx -> Twilio), frames sent after the")
    say("  call's first echo and the ramp (a second after the last call's")
    say("  start); conversation: an agent delta leaving the")
    say("  simulator to its audio reaching the Twilio side (one way); added")
    say("  = through the bridge minus the floor of the same shape and")
    say("  transport (the tools alone, direct); xfloor = cpu ms/cs over the")
    say("  kernel floor's at the same calls (echo shapes);")
    say("  cpu ms/cs = nginx worker CPU per call-second while all calls are")
    say("  up, core = its share of one core then; KiB/call = worker RSS")
    say("  growth with all calls up (after 5 warm-up calls); 101 = connect")
    say("  to the upgrade answer; 1st echo = connect to the first audio back;")
    say("  load cpu / echo = the tools' own CPU (share of a core, ms per")
    say("  call-second for the load tool); marks = the marks' echoes the")
    say("  bridge received (the measured run's, without its warm-up).")

    if a.bridge != "1":
        say("")
        say("gateway bridge not available yet: " + a.bridge_note)

    result["campaign"] = campaign_section(w, a.campaign, a.campaign_note,
                                          floor, say)
    result["board"] = board_section(w, a.board, a.board_note, floor, say)
    result["first_audio"] = first_section(w, a.first, a.first_note, say)

    if verdicts and a.mode != "tiny":
        say("")
        say("targets:")
        for calls, kind, lj, ng, added, ratio in verdicts:
            checks = []
            if kind == "echo" and ratio is not None:
                checks.append(("cpu {:.2f}x the kernel floor <= {}x".format(
                    ratio, TARGET_FLOOR_RATIO), ratio <= TARGET_FLOOR_RATIO))
            checks.append(("no frame lost", lj["frames"]["lost"] == 0
                           and lj["calls"]["dropped"] == 0))
            if calls == 500 and kind == "echo" and "p99" in added:
                checks.append(("added p99 {} us < {} us at 500".format(
                    added["p99"], TARGET_ADDED_P99_US),
                    added["p99"] < TARGET_ADDED_P99_US))
            if ng["rss_kib_per_call"] is not None:
                checks.append(("rss {:.1f} < {} KiB/call".format(
                    ng["rss_kib_per_call"], TARGET_RSS_KIB),
                    ng["rss_kib_per_call"] < TARGET_RSS_KIB))
            p99 = lj["setup_media_us"]["p99"] / 1000.0
            if not kind.startswith("conversation"):
                checks.append(("first echo p99 {:.2f} ms < {} ms (bounds "
                               "the setup)".format(p99, TARGET_SETUP_MS),
                               p99 < TARGET_SETUP_MS))
            gw = gateway_setup(w, calls) if kind == "echo" else None
            if gw:
                checks.append(("gateway setup p50 <= {:g} ms, p99 <= {:g} ms "
                               "(twirt_setup_seconds: upgrade -> "
                               "session.updated) < {} ms".format(
                                   gw[0], gw[1], TARGET_SETUP_MS),
                               gw[1] <= TARGET_SETUP_MS))
            say("  {:>16} {:>5} calls: {}".format(kind, calls, "; ".join(
                ("ok " if ok else "MISSED ") + what for what, ok in checks)))

    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)

    with open(a.text, "w") as f:
        f.write(text)

    with open(a.json, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")

    return 0


if __name__ == "__main__":
    sys.exit(main())
