"""Scenario files shared by the Twilio and Realtime simulators.

One JSON file describes a whole call: what the agent says first, when the
caller speaks and what the agent answers, when the call ends. The Twilio
simulator reads the caller side (at_ms, speech_ms, dtmf, end), the Realtime
simulator reads the rest. The format is documented in t/peers/README.md;
this module checks a file against it and fills in the defaults, so a typo
in a scenario fails loudly instead of producing a quietly different call.
"""

import json
import os

SCENARIO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "scenarios")

DEFAULTS = {
    "speed": 5.0,                   # agent audio sent 5x faster than real time
    "chunk_ms": 100,                # audio per response.output_audio.delta
    "response_delay_ms": 80,        # speech_stopped -> response.created
    "first_audio_ms": 0,            # response.created -> its first delta
    "transcription_delay_ms": 300,  # commit -> transcription.completed
    "late_deltas": 0,               # deltas still sent after a cancellation
    "default_agent": {"transcript": "はい。", "audio_ms": 800},
    "end": {"after_ms": 10000},
}

_TOP_KEYS = {"name", "description", "greeting", "turns", "end", "speed",
             "chunk_ms", "response_delay_ms", "first_audio_ms",
             "transcription_delay_ms", "late_deltas", "default_agent", "fail",
             "dtmf", "on_text"}
_AGENT_KEYS = {"transcript", "audio_ms", "function_call", "after_function",
               "speed", "function_calls", "after_tools"}
_CALLER_KEYS = {"at_ms", "speech_ms", "text"}


class ScenarioError(ValueError):
    pass


def default_audio_ms(transcript):
    """A plausible speaking time when a scenario gives none: about 8
    Japanese characters or 15 Latin characters per second."""
    ms = sum(125 if ord(ch) > 0x7F else 65 for ch in transcript)
    return max(400, ms)


def _agent(part, where):
    if not isinstance(part, dict):
        raise ScenarioError(f"{where}: must be an object")
    unknown = set(part) - _AGENT_KEYS
    if unknown:
        raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
    if not isinstance(part.get("transcript", ""), str):
        raise ScenarioError(f"{where}.transcript: must be a string")
    out = dict(part)
    out.setdefault("transcript", "")
    if "audio_ms" not in out:
        out["audio_ms"] = default_audio_ms(out["transcript"])
    if not isinstance(out["audio_ms"], int) or out["audio_ms"] < 0:
        raise ScenarioError(f"{where}.audio_ms: must be an integer >= 0")
    fc = out.get("function_call")
    if fc is not None:
        if not isinstance(fc, dict) or not isinstance(fc.get("name"), str):
            raise ScenarioError(f"{where}.function_call: needs a \"name\"")
        fc = dict(fc)
        fc.setdefault("arguments", {})
        out["function_call"] = fc
    if out.get("after_function") is not None:
        out["after_function"] = _agent(out["after_function"],
                                       where + ".after_function")
    calls = out.get("function_calls")
    if calls is not None:
        if not isinstance(calls, list) or not calls:
            raise ScenarioError(f"{where}.function_calls: a non-empty list")
        out["function_calls"] = []
        for i, fc in enumerate(calls):
            if not isinstance(fc, dict) or not isinstance(fc.get("name"),
                                                          str) \
                    or set(fc) - {"name", "arguments", "arguments_raw"} \
                    or not isinstance(fc.get("arguments_raw", ""), str):
                raise ScenarioError(f"{where}.function_calls[{i}]: "
                                    "{\"name\", \"arguments\"?, "
                                    "\"arguments_raw\"? (a string)} expected")
            out["function_calls"].append(dict(fc, arguments=fc.get(
                "arguments", {})))
        if out.get("function_call") is not None:
            raise ScenarioError(f"{where}: function_call and function_calls "
                                "do not go together")
    if out.get("after_tools") is not None:
        if calls is None:
            raise ScenarioError(f"{where}.after_tools: only with "
                                "function_calls")
        out["after_tools"] = _agent(out["after_tools"],
                                    where + ".after_tools")
    return out


def validate(doc, name="scenario"):
    """Return a normalised copy of scenario `doc`, or raise ScenarioError."""
    if not isinstance(doc, dict):
        raise ScenarioError(f"{name}: top level must be an object")
    unknown = set(doc) - _TOP_KEYS
    if unknown:
        raise ScenarioError(f"{name}: unknown keys {sorted(unknown)}")
    sc = dict(DEFAULTS)
    sc.update(doc)
    sc.setdefault("name", name)
    if doc.get("greeting") is not None:
        sc["greeting"] = _agent(doc["greeting"], f"{name}.greeting")
    else:
        sc["greeting"] = None
    sc["default_agent"] = _agent(sc["default_agent"],
                                 f"{name}.default_agent")
    sc["on_text"] = (_agent(doc["on_text"], f"{name}.on_text")
                     if doc.get("on_text") is not None else None)
    turns = []
    prev_end = -1
    for i, turn in enumerate(doc.get("turns", [])):
        where = f"{name}.turns[{i}]"
        caller = turn.get("caller") if isinstance(turn, dict) else None
        if not isinstance(caller, dict):
            raise ScenarioError(f"{where}.caller: required object")
        unknown = set(caller) - _CALLER_KEYS
        if unknown:
            raise ScenarioError(f"{where}.caller: unknown keys "
                                f"{sorted(unknown)}")
        at, speech = caller.get("at_ms"), caller.get("speech_ms")
        if not isinstance(at, int) or not isinstance(speech, int) \
                or at < 0 or speech <= 0:
            raise ScenarioError(f"{where}.caller: at_ms >= 0 and "
                                "speech_ms > 0 are required integers")
        if at <= prev_end:
            raise ScenarioError(f"{where}.caller: starts at {at} ms, "
                                f"before the previous turn ends ({prev_end})")
        prev_end = at + speech
        caller = {"at_ms": at, "speech_ms": speech,
                  "text": caller.get("text", "")}
        agent = _agent(turn.get("agent", sc["default_agent"]),
                       where + ".agent")
        turns.append({"caller": caller, "agent": agent})
    sc["turns"] = turns
    end = sc["end"]
    if not isinstance(end, dict) or not isinstance(end.get("after_ms"), int):
        raise ScenarioError(f"{name}.end: needs an integer \"after_ms\"")
    if turns and end["after_ms"] <= prev_end:
        raise ScenarioError(f"{name}.end.after_ms ends the call before the "
                            "last caller turn is over")
    dtmf = []
    for i, d in enumerate(doc.get("dtmf", [])):
        if not isinstance(d, dict) or not isinstance(d.get("at_ms"), int) \
                or not isinstance(d.get("digit"), str):
            raise ScenarioError(f"{name}.dtmf[{i}]: needs at_ms and digit")
        dtmf.append({"at_ms": d["at_ms"], "digit": d["digit"]})
    sc["dtmf"] = sorted(dtmf, key=lambda d: d["at_ms"])
    fail = doc.get("fail")
    if fail is None:
        sc["fail"] = []
    elif isinstance(fail, str):
        sc["fail"] = [fail]
    elif isinstance(fail, list) and all(isinstance(f, str) for f in fail):
        sc["fail"] = list(fail)
    else:
        raise ScenarioError(f"{name}.fail: a string or a list of strings")
    for key in ("speed",):
        if not isinstance(sc[key], (int, float)) or sc[key] <= 0:
            raise ScenarioError(f"{name}.{key}: must be a number > 0")
    for key in ("chunk_ms", "response_delay_ms", "first_audio_ms",
                "transcription_delay_ms", "late_deltas"):
        if not isinstance(sc[key], int) or sc[key] < 0:
            raise ScenarioError(f"{name}.{key}: must be an integer >= 0")
    if sc["chunk_ms"] == 0:
        raise ScenarioError(f"{name}.chunk_ms: must be > 0")
    return sc


def resolve(name_or_path):
    """A scenario is given by path, or by name from t/peers/scenarios."""
    if os.sep in name_or_path or name_or_path.endswith(".json"):
        return name_or_path
    return os.path.join(SCENARIO_DIR, name_or_path + ".json")


def load(name_or_path):
    path = resolve(name_or_path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as e:
        raise ScenarioError(f"cannot read scenario {path}: {e.strerror}")
    except json.JSONDecodeError as e:
        raise ScenarioError(f"{path}: invalid JSON: {e}")
    stem = os.path.splitext(os.path.basename(path))[0]
    return validate(doc, stem)


def empty(name="none"):
    """The scenario used when none is given: no greeting, no turns."""
    return validate({}, name)
