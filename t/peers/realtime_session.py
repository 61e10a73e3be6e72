"""The GA Realtime session object, for realtime_sim.py.

Server defaults, the checks a session.update goes through, and how an
accepted update merges into the effective session. Pure functions, no
I/O: the simulator sends the errors these return. The checks stop at the
first problem, as the real service reports one error per event.
"""

import copy

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer",
          "verse", "marin", "cedar")
TRANSCRIPTION_MODELS = ("whisper-1", "gpt-4o-transcribe",
                        "gpt-4o-mini-transcribe")
AUDIO_FORMATS = ("audio/pcm", "audio/pcmu", "audio/pcma")

VAD_DEFAULTS = {
    "server_vad": {"type": "server_vad", "threshold": 0.5,
                   "prefix_padding_ms": 300, "silence_duration_ms": 200,
                   "idle_timeout_ms": None, "create_response": True,
                   "interrupt_response": True},
    "semantic_vad": {"type": "semantic_vad", "eagerness": "auto",
                     "create_response": True, "interrupt_response": True},
}
# semantic_vad has no explicit silence; this is how long each eagerness
# waits before it decides the caller has finished.
EAGERNESS_SILENCE_MS = {"low": 1200, "medium": 700, "auto": 700,
                        "high": 350}

# Every key the GA session object accepts; None = a leaf (any value).
# Anything else is unknown_parameter, which is how the real service
# rejects the beta shape (session.voice, session.input_audio_format...).
SCHEMA = {
    "type": None, "model": None, "instructions": None,
    "output_modalities": None, "tool_choice": None,
    "max_output_tokens": None, "tracing": None, "truncation": None,
    "prompt": {"id": None, "version": None, "variables": None},
    "include": None,
    # Read-only fields a client may echo back from session.created.
    "id": None, "object": None, "expires_at": None,
    "audio": {
        "input": {
            "format": {"type": None, "rate": None},
            "noise_reduction": {"type": None},
            "transcription": {"model": None, "language": None,
                              "prompt": None},
            "turn_detection": dict.fromkeys(
                ("type", "threshold", "prefix_padding_ms",
                 "silence_duration_ms", "create_response",
                 "interrupt_response", "idle_timeout_ms", "eagerness")),
        },
        "output": {
            "format": {"type": None, "rate": None},
            "voice": None, "speed": None,
        },
    },
    "tools": [{"type": None, "name": None, "description": None,
               "parameters": None}],
}
# Objects that may be set to null to switch the feature off.
NULLABLE = {"session.audio.input.noise_reduction",
            "session.audio.input.transcription",
            "session.audio.input.turn_detection", "session.prompt"}
INCLUDABLE = ("item.input_audio_transcription.logprobs",)
READ_ONLY = ("id", "object", "expires_at")


def default_session(session_id, model, expires_at):
    """What session.created carries: pcm16 24 kHz, alloy, server VAD with
    200 ms of silence, no transcription."""
    return {
        "type": "realtime", "object": "realtime.session",
        "id": session_id, "model": model,
        "output_modalities": ["audio"], "instructions": "",
        "tools": [], "tool_choice": "auto", "max_output_tokens": "inf",
        "tracing": None, "truncation": "auto", "prompt": None,
        "expires_at": expires_at, "include": None,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None, "noise_reduction": None,
                "turn_detection": dict(VAD_DEFAULTS["server_vad"]),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "alloy", "speed": 1.0,
            },
        },
    }


def _type_name(value):
    return {dict: "an object", list: "an array", str: "a string",
            bool: "a boolean", int: "an integer", float: "a number",
            type(None): "null"}.get(type(value), "a value")


def _check_shape(value, schema, path):
    """First unknown key or wrongly typed object under `path`."""
    if isinstance(schema, dict):
        if value is None and path in NULLABLE:
            return None
        if not isinstance(value, dict):
            return ("invalid_type", f"Invalid type for '{path}': expected "
                    f"an object, but got {_type_name(value)} instead.", path)
        for key, sub in value.items():
            if key not in schema:
                return ("unknown_parameter",
                        f"Unknown parameter: '{path}.{key}'.",
                        f"{path}.{key}")
            if schema[key] is not None:
                bad = _check_shape(sub, schema[key], f"{path}.{key}")
                if bad:
                    return bad
    elif isinstance(schema, list):
        if not isinstance(value, list):
            return ("invalid_type", f"Invalid type for '{path}': expected "
                    f"an array, but got {_type_name(value)} instead.", path)
        for i, element in enumerate(value):
            bad = _check_shape(element, schema[0], f"{path}[{i}]")
            if bad:
                return bad
    return None


def _invalid(param, value, allowed):
    return ("invalid_value",
            f"Invalid value: '{value}'. Supported values are: "
            + ", ".join(f"'{a}'" for a in allowed) + ".", param)


def _is_number(v, low, high):
    return (isinstance(v, (int, float)) and not isinstance(v, bool)
            and low <= v <= high)


def _check_values(s):
    if s["type"] != "realtime":
        return _invalid("session.type", s["type"], ("realtime",))
    if "instructions" in s and not isinstance(s["instructions"], str):
        return ("invalid_type", "Invalid type for 'session.instructions': "
                f"expected a string, but got {_type_name(s['instructions'])}"
                " instead.", "session.instructions")
    mods = s.get("output_modalities")
    if mods is not None and mods not in (["audio"], ["text"]):
        return ("invalid_value", "Invalid 'session.output_modalities': "
                "expected ['audio'] or ['text'].",
                "session.output_modalities")
    audio = s.get("audio") or {}
    for side in ("input", "output"):
        fmt = (audio.get(side) or {}).get("format")
        if fmt is None:
            continue
        if fmt.get("type") not in AUDIO_FORMATS:
            return _invalid(f"session.audio.{side}.format.type",
                            fmt.get("type"), AUDIO_FORMATS)
        if fmt["type"] == "audio/pcm" and fmt.get("rate", 24000) != 24000:
            return _invalid(f"session.audio.{side}.format.rate",
                            fmt.get("rate"), (24000,))
    out = audio.get("output") or {}
    if "voice" in out and out["voice"] not in VOICES:
        return _invalid("session.audio.output.voice", out["voice"], VOICES)
    if "speed" in out and not _is_number(out["speed"], 0.25, 1.5):
        return ("invalid_value", "Invalid 'session.audio.output.speed': "
                "expected a number between 0.25 and 1.5.",
                "session.audio.output.speed")
    inp = audio.get("input") or {}
    td = inp.get("turn_detection")
    if td is not None:
        p = "session.audio.input.turn_detection"
        if td.get("type") not in (None, "server_vad", "semantic_vad"):
            return _invalid(p + ".type", td.get("type"),
                            ("server_vad", "semantic_vad"))
        if not _is_number(td.get("threshold", 0.5), 0, 1):
            return ("invalid_value", f"Invalid '{p}.threshold': expected a "
                    "number between 0 and 1.", p + ".threshold")
        for key in ("silence_duration_ms", "prefix_padding_ms"):
            v = td.get(key, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                return ("invalid_value", f"Invalid '{p}.{key}': expected "
                        "an integer >= 0.", f"{p}.{key}")
        if td.get("eagerness", "auto") not in EAGERNESS_SILENCE_MS:
            return _invalid(p + ".eagerness", td.get("eagerness"),
                            tuple(EAGERNESS_SILENCE_MS))
    tr = inp.get("transcription")
    if tr is not None and tr.get("model") not in TRANSCRIPTION_MODELS:
        return _invalid("session.audio.input.transcription.model",
                        tr.get("model"), TRANSCRIPTION_MODELS)
    nr = inp.get("noise_reduction")
    if nr is not None and nr.get("type") not in ("near_field", "far_field"):
        return _invalid("session.audio.input.noise_reduction.type",
                        nr.get("type"), ("near_field", "far_field"))
    for i, tool in enumerate(s.get("tools") or []):
        if tool.get("type") != "function" \
                or not isinstance(tool.get("name"), str):
            return ("invalid_value", f"Invalid 'session.tools[{i}]': "
                    "expected a function tool with a name.",
                    f"session.tools[{i}]")
    tc = s.get("tool_choice")
    if isinstance(tc, dict):
        # {"type":"function","name":...} or {"type":"mcp",...}
        keys = {"function": {"type", "name"},
                "mcp": {"type", "server_label", "name"}}.get(tc.get("type"))
        if keys is None or not set(tc) <= keys \
                or not isinstance(tc.get("name", ""), str) \
                or (tc["type"] == "function"
                    and not isinstance(tc.get("name"), str)) \
                or (tc["type"] == "mcp"
                    and not isinstance(tc.get("server_label"), str)):
            return ("invalid_value", "Invalid 'session.tool_choice': "
                    "expected 'auto', 'none', 'required', "
                    "{'type': 'function', 'name': ...} or "
                    "{'type': 'mcp', 'server_label': ...}.",
                    "session.tool_choice")
    elif tc is not None and tc not in ("auto", "none", "required"):
        return _invalid("session.tool_choice", tc,
                        ("auto", "none", "required"))
    problem = (_check_truncation(s) or _check_prompt(s)
               or _check_tracing(s) or _check_include(s))
    if problem:
        return problem
    if tr is not None and "prompt" in tr and not isinstance(tr["prompt"],
                                                            str):
        return ("invalid_type", "Invalid type for "
                "'session.audio.input.transcription.prompt': expected a "
                f"string, but got {_type_name(tr['prompt'])} instead.",
                "session.audio.input.transcription.prompt")
    mot = s.get("max_output_tokens")
    if mot is not None and mot != "inf" and not (
            isinstance(mot, int) and 1 <= mot <= 4096):
        return ("invalid_value", "Invalid 'session.max_output_tokens': "
                "expected an integer between 1 and 4096, or 'inf'.",
                "session.max_output_tokens")
    return None


def _check_truncation(s):
    """'auto', 'disabled' or {'type': 'retention_ratio',
    'retention_ratio': 0..1, 'token_limits': {'post_instructions': n}}."""
    t = s.get("truncation")
    p = "session.truncation"
    if t is None or t in ("auto", "disabled"):
        return None
    if not isinstance(t, dict):
        return _invalid(p, t, ("auto", "disabled"))
    for key in t:
        if key not in ("type", "retention_ratio", "token_limits"):
            return ("unknown_parameter", f"Unknown parameter: '{p}.{key}'.",
                    f"{p}.{key}")
    if t.get("type") != "retention_ratio":
        return _invalid(p + ".type", t.get("type"), ("retention_ratio",))
    if "retention_ratio" not in t:
        return ("missing_required_parameter", "Missing required parameter: "
                f"'{p}.retention_ratio'.", p + ".retention_ratio")
    if not _is_number(t["retention_ratio"], 0, 1):
        return ("invalid_value", f"Invalid '{p}.retention_ratio': expected "
                "a number between 0 and 1.", p + ".retention_ratio")
    limits = t.get("token_limits")
    if limits is not None:
        if not isinstance(limits, dict) or not set(limits) <= {
                "post_instructions"}:
            return ("invalid_value", f"Invalid '{p}.token_limits'.",
                    p + ".token_limits")
        v = limits.get("post_instructions")
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)
                              or v < 0):
            return ("invalid_value", f"Invalid '{p}.token_limits."
                    "post_instructions': expected an integer >= 0.",
                    p + ".token_limits.post_instructions")
    return None


def _check_prompt(s):
    """{'id': str, 'version': str or null, 'variables': {name: str or an
    input_text / input_image / input_file object}} or null."""
    pr = s.get("prompt")
    p = "session.prompt"
    if pr is None:
        return None
    if not isinstance(pr.get("id"), str):
        return ("missing_required_parameter", "Missing required parameter: "
                f"'{p}.id'.", p + ".id")
    if pr.get("version") is not None and not isinstance(pr["version"], str):
        return ("invalid_type", f"Invalid type for '{p}.version': expected "
                f"a string, but got {_type_name(pr['version'])} instead.",
                p + ".version")
    variables = pr.get("variables")
    if variables is None:
        return None
    if not isinstance(variables, dict):
        return ("invalid_type", f"Invalid type for '{p}.variables': "
                "expected an object, but got "
                f"{_type_name(variables)} instead.", p + ".variables")
    for name, value in variables.items():
        if isinstance(value, str):
            continue
        if isinstance(value, dict) and value.get("type") in (
                "input_text", "input_image", "input_file"):
            continue
        return ("invalid_type", f"Invalid type for '{p}.variables.{name}': "
                "expected a string or an input content object, but got "
                f"{_type_name(value)} instead.", f"{p}.variables.{name}")
    return None


def _check_tracing(s):
    tr = s.get("tracing")
    p = "session.tracing"
    if tr is None or tr == "auto":
        return None
    if not isinstance(tr, dict):
        return _invalid(p, tr, ("auto",))
    for key, value in tr.items():
        want = dict if key == "metadata" else str
        if key not in ("workflow_name", "group_id", "metadata"):
            return ("unknown_parameter", f"Unknown parameter: '{p}.{key}'.",
                    f"{p}.{key}")
        if not isinstance(value, want):
            return ("invalid_type", f"Invalid type for '{p}.{key}'.",
                    f"{p}.{key}")
    return None


def _check_include(s):
    inc = s.get("include")
    if inc is None:
        return None
    if not isinstance(inc, list):
        return ("invalid_type", "Invalid type for 'session.include': "
                f"expected an array, but got {_type_name(inc)} instead.",
                "session.include")
    for i, v in enumerate(inc):
        if v not in INCLUDABLE:
            return _invalid(f"session.include[{i}]", v, INCLUDABLE)
    return None


def check_update(s, current, assistant_spoke):
    """(code, message, param) of the first problem of session.update's
    `session` against the `current` effective session, or None."""
    if not isinstance(s, dict):
        return ("missing_required_parameter",
                "Missing required parameter: 'session'.", "session")
    if "type" not in s:
        return ("missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                "session.type")
    problem = _check_shape(s, SCHEMA, "session") or _check_values(s)
    if problem:
        return problem
    voice = ((s.get("audio") or {}).get("output") or {}).get("voice")
    if voice is not None and assistant_spoke \
            and voice != current["audio"]["output"]["voice"]:
        return ("cannot_update_voice", "Cannot update a conversation's "
                "voice if assistant audio is present.",
                "session.audio.output.voice")
    return None


def _deep_merge(base, update):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def merge_update(current, s):
    """Apply an accepted update to `current` in place. Objects merge key
    by key, except: a format object replaces the old one (pcmu has no
    rate), and a turn_detection of another type starts from that type's
    defaults."""
    update = copy.deepcopy({k: v for k, v in s.items()
                            if k not in READ_ONLY})
    audio = update.pop("audio", None) or {}
    _deep_merge(current, update)
    for side in ("input", "output"):
        part = audio.get(side) or {}
        fmt = part.pop("format", None)
        if fmt is not None:
            if fmt["type"] == "audio/pcm":
                fmt.setdefault("rate", 24000)
            else:
                fmt.pop("rate", None)
            current["audio"][side]["format"] = fmt
        if side == "input" and "turn_detection" in part:
            td = part.pop("turn_detection")
            if td is not None:
                old = current["audio"]["input"]["turn_detection"] or {}
                kind = td.get("type", old.get("type", "server_vad"))
                merged = dict(VAD_DEFAULTS[kind])
                if old.get("type") == kind:
                    merged.update(old)
                merged.update(td)
                td = merged
            current["audio"]["input"]["turn_detection"] = td
        for key, value in part.items():
            if isinstance(value, dict) and isinstance(
                    current["audio"][side].get(key), dict):
                _deep_merge(current["audio"][side][key], value)
            else:
                current["audio"][side][key] = value
