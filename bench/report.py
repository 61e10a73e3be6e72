#!/usr/bin/python3
"""The table of bench/run: reads what the runs left in the work directory
(twilio_load's and realtime_echo's JSON, the nginx worker's CPU and RSS
samples) and writes the table to stdout and to --text, everything to
--json.  The bridge-added latency is the RTT through nginx minus the floor
(the same path without nginx), percentile by percentile."""

import argparse
import json
import os
import re
import platform
import subprocess
import sys
import time

TARGET_ADDED_P99_US = 1000      # at 500 calls
TARGET_CPU_MS = 0.4             # per call-second
TARGET_RSS_KIB = 64             # per call
TARGET_SETUP_MS = 5


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
    """INFO commandstats and cpu: ({command: calls}, cpu seconds)."""
    calls = {}
    cpu = 0.0
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"cmdstat_([^:]+):calls=(\d+)", line)
                if m:
                    calls[m.group(1)] = int(m.group(2))
                m = re.match(r"used_cpu_(user|sys):([0-9.]+)", line)
                if m:
                    cpu += float(m.group(2))
    except OSError:
        return None
    return calls, cpu


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


KINDS = (("A", "no campaign running"),
         ("B", "a campaign dialing"),
         ("C", "a campaign running, its window closed"))


def redis_window(w, label, a, b, dt):
    """Redis between two samples: commands/s by command, CPU ms/s."""
    r0 = redis_info(os.path.join(w, label + "." + a))
    r1 = redis_info(os.path.join(w, label + "." + b))
    if not r0 or not r1 or dt <= 0:
        return {"redis_commands_per_s": None, "redis_by_command_per_s": {},
                "redis_cpu_ms_per_s": None, "scripts_per_s": None}
    # the two INFO calls of the sample itself are left out
    cmds = {k: v - r0[0].get(k, 0) for k, v in r1[0].items()}
    cmds["info"] = max(0, cmds.get("info", 0) - 2)
    return {"redis_commands_per_s": sum(cmds.values()) / dt,
            "redis_by_command_per_s": {k: v / dt for k, v in sorted(
                cmds.items()) if v},
            "redis_cpu_ms_per_s": (r1[1] - r0[1]) * 1000.0 / dt,
            "scripts_per_s": sum(v for k, v in cmds.items()
                                 if k.split("|")[0] in SCRIPT_COMMANDS) / dt}


def campaign_phase(w, label):
    c = load(os.path.join(w, label + ".campaign.json"))
    lj = load(os.path.join(w, label + ".load.json"))
    if c is None:
        return None
    t0, tq, t1 = c["t"]
    dq, dt = tq - t0, t1 - tq
    clk = c["clk_tck"]
    m0, mq, m1 = c["worker_ms"]
    dial = c["dial"]
    p = {"label": label, "kind": c["kind"], "calls": c["calls"],
         "seconds": dt, "quiet_seconds": dq, "load": lj, "samples": c,
         # the worker's CPU: the scheduler's runtime, to the microsecond
         "worker_cpu_ms_per_s": (m1 - mq) / dt,
         "quiet": {"worker_cpu_ms_per_s": (mq - m0) / dq if dq > 0 else None,
                   "dials_per_s": None},
         "standin_cpu_ms_per_s": (c["rest_ticks"][2] - c["rest_ticks"][1])
         * 1000.0 / clk / dt,
         "dials_per_s": (dial["dialed"][1] - dial["dialed"][0])
         / (t1 - t0),
         "dialed": dial["dialed"], "busy": dial["busy"],
         "closed": c["closed"], "loadavg": c.get("loadavg")}
    p.update(redis_window(w, label, "redisq", "redis1", dt))
    p["quiet"].update(redis_window(w, label, "redis0", "redisq", dq))
    if lj:
        p["rtt_us"] = lj["rtt_us"]
        p["lost"] = lj["frames"]["lost"]
        cc = lj["calls"]
        p["calls_ok"] = (not cc["failed"] and not cc["dropped"]
                         and cc["established"] == cc["requested"])
    return p


def campaign_section(w, labels, note, say):
    """The campaign phase: the audio path with no campaign running (A), a
    campaign dialing (B), a campaign running with its window closed (C),
    phase by phase, then the medians of each kind and their ratios."""
    info = load(os.path.join(w, "campaign.json"))
    phases = [p for p in (campaign_phase(w, l) for l in labels.split()) if p]

    if not phases:
        if note:
            say("")
            say("campaign phase not run: " + note)
        return {"note": note} if note else None

    say("")
    say("campaign phase: {} calls x {} s per phase (after {} s with no call) "
        "through one nginx with Redis and two campaigns of {} rows ({} and "
        "{} in Redis), cps {}, concurrency {}, every call busy (Twilio "
        "stand-in over TLS): A none running, B one dialing, C the other "
        "running with its window closed ({})".format(
            phases[0]["calls"], info["duration"] if info else "?",
            info["quiet"] if info else "?",
            info["rows"] if info else "?", info["redis_rows"] if info
            else "?", info["closed_redis_rows"] if info else "?",
            info["cps"] if info else "?",
            info["concurrency"] if info else "?",
            info["window"] if info else "?"))
    say("")
    row = ("{:>6} {:>20} {:>4} {:>7} {:>7} {:>7} {:>7} {:>6} {:>7} {:>6} "
           "{:>11} {:>8} {:>7}").format
    head = row("phase", "rtt p50/p99/max us", "lost", "worker", "quiet",
               "redis", "cmd/s", "eval/s", "claim/s", "dial/s", "dialed",
               "closed", "load")
    say(head)
    say(row("", "", "", "ms/s", "ms/s", "ms/s", "", "", "", "", "", "dialed",
            "avg"))
    say("-" * len(head))

    for p in phases:
        r = p.get("rtt_us")
        bc = p["redis_by_command_per_s"]
        say(row(
            "{} {}".format(p["kind"], p["label"].rsplit("-", 1)[-1]),
            "{}/{}/{}".format(r["p50"], r["p99"], r["max"]) if r else "-",
            p.get("lost", "-"), fmt(p["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["quiet"]["worker_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["redis_cpu_ms_per_s"], "{:.1f}"),
            fmt(p["redis_commands_per_s"], "{:.0f}"),
            fmt(p["scripts_per_s"], "{:.1f}"),
            fmt(bc.get("zrangebyscore", 0), "{:.1f}"),
            fmt(p["dials_per_s"], "{:.2f}"),
            "{}->{}".format(*p["dialed"]),
            "{}->{}".format(*p["closed"]["dialed"]),
            (p["loadavg"] or ["-"])[0].split(" ")[0]))
        if p.get("load") and not p.get("calls_ok"):
            say("{:>6} WARNING: not every call was set up and kept".format(""))

    def med(kind, f):
        return median(f(p) for p in phases if p["kind"] == kind)

    out = {"phases": phases, "campaign": info}
    summary = {}
    for kind, _ in KINDS:
        summary[kind] = {
            "phases": sum(1 for p in phases if p["kind"] == kind),
            "rtt_p50_us": med(kind, lambda p: p.get("rtt_us", {}).get("p50")),
            "rtt_p99_us": med(kind, lambda p: p.get("rtt_us", {}).get("p99")),
            "worker_cpu_ms_per_s": med(kind,
                                       lambda p: p["worker_cpu_ms_per_s"]),
            "quiet_worker_cpu_ms_per_s": med(
                kind, lambda p: p["quiet"]["worker_cpu_ms_per_s"]),
            "redis_cpu_ms_per_s": med(kind, lambda p: p["redis_cpu_ms_per_s"]),
            "quiet_redis_cpu_ms_per_s": med(
                kind, lambda p: p["quiet"]["redis_cpu_ms_per_s"]),
            "redis_commands_per_s": med(
                kind, lambda p: p["redis_commands_per_s"]),
            "scripts_per_s": med(kind, lambda p: p["scripts_per_s"]),
            "zrangebyscore_per_s": med(kind, lambda p: p[
                "redis_by_command_per_s"].get("zrangebyscore", 0)),
            "dials_per_s": med(kind, lambda p: p["dials_per_s"]),
            "standin_cpu_ms_per_s": med(
                kind, lambda p: p["standin_cpu_ms_per_s"]),
        }
    a = summary["A"]

    def ratio(kind, k):
        if a[k] and summary[kind][k] is not None:
            return summary[kind][k] / float(a[k])
        return None

    def d(kind, k, base="A"):
        x, y = summary[kind][k], summary[base][k]
        if x is None or y is None:
            return None
        return x - y

    for kind in ("B", "C"):
        summary["ratio_{}_p50".format(kind)] = ratio(kind, "rtt_p50_us")
        summary["ratio_{}_p99".format(kind)] = ratio(kind, "rtt_p99_us")
    out["summary"] = summary

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
    if info and info.get("loadavg"):
        say("  load average (1, 5, 15 min) before the phase {}, after it "
            "{}".format(*info["loadavg"]))
    if info and (info.get("log_errors") or info.get("worker_died")):
        say("  nginx error log: {} lines at [error] or worse{}".format(
            info.get("log_errors"), "; the worker DIED"
            if info.get("worker_died") else ""))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--floor", required=True)
    ap.add_argument("--runs", default="")
    ap.add_argument("--bridge", default="0")
    ap.add_argument("--bridge-note", default="")
    ap.add_argument("--mode", default="full")
    ap.add_argument("--duration", default="")
    ap.add_argument("--marks", default="immediate")
    ap.add_argument("--campaign", default="")
    ap.add_argument("--campaign-note", default="")
    ap.add_argument("--json", required=True)
    ap.add_argument("--text", required=True)
    a = ap.parse_args()

    w = a.work
    floor = load(os.path.join(w, a.floor + ".load.json"))
    floor_echo = load(os.path.join(w, a.floor + ".echo.json"))

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
        "bridge_available": a.bridge == "1",
        "bridge_note": a.bridge_note,
        "runs": [],
    }

    lines = []
    say = lines.append

    say("twirt bench, {}, {} cores, {}, audio {} s per call, marks {}".format(
        result["timestamp"], os.cpu_count(), nginx_v.replace(
            "nginx version: ", ""), a.duration, a.marks))
    say("")

    row = ("{:>6} {:>22} {:>20} {:>5} {:>9} {:>5} {:>8} {:>13} {:>15} "
           "{:>12} {:>5}").format
    head = row("calls", "rtt p50/p99/max us", "added p50/p99/max", "lost",
               "cpu ms/cs", "core", "KiB/call", "101 p50/p99ms",
               "1st echo p50/p99", "load cpu", "echo")
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

    if floor:
        say(row(
            "floor", rtt(floor), "(direct)", lost(floor), "-", "-", "-",
            setup(floor, "setup_101_us"), setup(floor, "setup_media_us"),
            tool_cpu(floor), echo_cpu(floor_echo)))

    verdicts = []

    for label in a.runs.split():
        lj = load(os.path.join(w, label + ".load.json"))
        ej = load(os.path.join(w, label + ".echo.json"))
        nj = load(os.path.join(w, label + ".nginx.json"))
        if nj is None:
            continue

        calls = nj["calls"]
        ng = nginx_numbers(nj, lj)
        run = {"calls": calls, "load": lj, "echo": ej, "nginx": ng,
               "nginx_samples": nj}

        if lj is None:
            say("{:>6} the load tool wrote no results".format(calls))
            result["runs"].append(run)
            continue

        added = {}
        if floor:
            for p in ("p50", "p90", "p99", "p999", "max"):
                added[p] = lj["rtt_us"][p] - floor["rtt_us"][p]
        run["added_us"] = added

        say(row(
            calls, rtt(lj),
            "{}/{}/{}".format(added.get("p50", "-"), added.get("p99", "-"),
                              added.get("max", "-")),
            lost(lj), fmt(ng["cpu_ms_per_call_s"], "{:.3f}"),
            fmt(ng["core_share"] and ng["core_share"] * 100, "{:.0f}%"),
            fmt(ng["rss_kib_per_call"], "{:.1f}"),
            setup(lj, "setup_101_us"), setup(lj, "setup_media_us"),
            tool_cpu(lj), echo_cpu(ej)))

        c = lj["calls"]
        if (c["failed"] or c["dropped"] or lj["frames"]["lost"]
                or c["established"] != c["requested"]):
            say("{:>6} WARNING: calls {} requested, {} established, {} "
                "failed, {} dropped; {} frames lost".format(
                    "", c["requested"], c["established"], c["failed"],
                    c["dropped"], lj["frames"]["lost"]))
        if nj.get("worker_died"):
            say("{:>6} WARNING: the nginx worker died during the run".format(
                ""))
        if ng["log_errors"]:
            say("{:>6} nginx error log: {} lines at [error] or worse".format(
                "", ng["log_errors"]))

        verdicts.append((calls, lj, ng, added))
        result["runs"].append(run)

    say("")
    say("rtt: Twilio media out to its echo back (through nginx: Twilio ->")
    say("  nginx -> simulator -> nginx -> Twilio), frames sent after the")
    say("  call's first echo; added = through nginx minus the floor;")
    say("  cpu ms/cs = nginx worker CPU per call-second while all calls are")
    say("  up, core = its share of one core then; KiB/call = worker RSS")
    say("  growth with all calls up (after 5 warm-up calls); 101 = connect")
    say("  to the upgrade answer; 1st echo = connect to the first audio back;")
    say("  load cpu / echo = the tools' own CPU (share of a core, ms per")
    say("  call-second for the load tool).")

    if a.bridge != "1":
        say("")
        say("gateway bridge not available yet: " + a.bridge_note)

    result["campaign"] = campaign_section(w, a.campaign, a.campaign_note,
                                          say)

    if verdicts and a.mode != "tiny":
        say("")
        say("targets:")
        for calls, lj, ng, added in verdicts:
            checks = []
            checks.append(("no frame lost", lj["frames"]["lost"] == 0
                           and lj["calls"]["dropped"] == 0))
            if calls == 500 and "p99" in added:
                checks.append(("added p99 {} us < {} us at 500".format(
                    added["p99"], TARGET_ADDED_P99_US),
                    added["p99"] < TARGET_ADDED_P99_US))
            if ng["cpu_ms_per_call_s"] is not None:
                checks.append(("cpu {:.3f} <= {} ms/call-s".format(
                    ng["cpu_ms_per_call_s"], TARGET_CPU_MS),
                    ng["cpu_ms_per_call_s"] <= TARGET_CPU_MS))
            if ng["rss_kib_per_call"] is not None:
                checks.append(("rss {:.1f} < {} KiB/call".format(
                    ng["rss_kib_per_call"], TARGET_RSS_KIB),
                    ng["rss_kib_per_call"] < TARGET_RSS_KIB))
            p99 = lj["setup_media_us"]["p99"] / 1000.0
            checks.append(("first echo p99 {:.2f} ms < {} ms (bounds the "
                           "setup)".format(p99, TARGET_SETUP_MS),
                           p99 < TARGET_SETUP_MS))
            gw = gateway_setup(w, calls)
            if gw:
                checks.append(("gateway setup p50 <= {:g} ms, p99 <= {:g} ms "
                               "(twirt_setup_seconds: upgrade -> "
                               "session.updated) < {} ms".format(
                                   gw[0], gw[1], TARGET_SETUP_MS),
                               gw[1] <= TARGET_SETUP_MS))
            say("  {:>5} calls: {}".format(calls, "; ".join(
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
