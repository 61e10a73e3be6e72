"""Audio helpers shared by the twirt test peers (stdlib only).

G.711 mu-law / A-law codecs, the energy measure the Realtime simulator's VAD
uses, the synthetic caller "speech" the Twilio simulator sends, and the
agent audio pattern the Realtime simulator sends.

The agent pattern is built so that a listener can tell, from the bytes
alone, which call it was generated for: for a given tag the pattern is a
cycle through non-silent mu-law values, so every byte determines the next
one. A payload whose consecutive bytes break that rule was corrupted or
belongs to another call (cross-talk), wherever the gateway cut it.

audioop is not used: it is deprecated in 3.11 and gone in 3.13.
"""

import hashlib
import math
import random

MULAW_SILENCE = 0xFF        # 0xFF and 0x7F both decode to 0
BIAS = 0x84
CLIP = 32635


def _ulaw_decode_byte(u):
    u = ~u & 0xFF
    sign = u & 0x80
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    sample = (((mantissa << 3) + BIAS) << exponent) - BIAS
    return -sample if sign else sample


def _alaw_decode_byte(a):
    a ^= 0x55
    sign = a & 0x80
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    if exponent == 0:
        sample = (mantissa << 4) + 8
    else:
        sample = ((mantissa << 4) + 0x108) << (exponent - 1)
    return sample if sign else -sample


ULAW_TO_LINEAR = tuple(_ulaw_decode_byte(b) for b in range(256))
ALAW_TO_LINEAR = tuple(_alaw_decode_byte(b) for b in range(256))
_ULAW_ABS = tuple(abs(v) for v in ULAW_TO_LINEAR)
_ALAW_ABS = tuple(abs(v) for v in ALAW_TO_LINEAR)


def ulaw_encode_sample(sample):
    """16-bit linear sample -> mu-law byte (ITU-T G.711)."""
    sample = max(-32768, min(32767, int(sample)))
    sign = 0x80 if sample < 0 else 0
    if sign:
        sample = -sample
    sample = min(sample, CLIP) + BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_encode(samples):
    return bytes(ulaw_encode_sample(s) for s in samples)


def ulaw_decode(data):
    return [ULAW_TO_LINEAR[b] for b in data]


def mean_abs_amplitude(data, encoding):
    """Mean |sample| on the 16-bit scale, for 'audio/pcmu', 'audio/pcma'
    or 'audio/pcm' (16-bit little endian). Empty input is silence."""
    if not data:
        return 0.0
    if encoding == "audio/pcmu":
        return sum(map(_ULAW_ABS.__getitem__, data)) / len(data)
    if encoding == "audio/pcma":
        return sum(map(_ALAW_ABS.__getitem__, data)) / len(data)
    n = len(data) // 2
    if n == 0:
        return 0.0
    total = 0
    for i in range(0, n * 2, 2):
        total += abs(int.from_bytes(data[i:i + 2], "little", signed=True))
    return total / n


# --- caller speech (Twilio simulator) ------------------------------------

def caller_speech_loop(seed=1):
    """One second (8000 bytes) of mu-law "speech": 300 Hz + 700 Hz with a
    syllable-like 4 Hz envelope and some noise. Its mean amplitude (~3700)
    is well above the simulator's VAD threshold (1000 at threshold 0.5,
    1800 at 1.0), and it is never mistaken for silence. Deterministic
    for a given seed."""
    rng = random.Random(seed)
    out = bytearray()
    for i in range(8000):
        t = i / 8000.0
        envelope = 0.65 + 0.35 * math.sin(2 * math.pi * 4 * t)
        s = (8000 * math.sin(2 * math.pi * 300 * t)
             + 5000 * math.sin(2 * math.pi * 700 * t))
        s = s * envelope + rng.uniform(-800, 800)
        out.append(ulaw_encode_sample(s))
    return bytes(out)


# --- agent audio (Realtime simulator) ------------------------------------

def _pattern_values():
    """mu-law bytes whose level is clearly audible but not clipping."""
    return [b for b in range(256) if 2000 <= _ULAW_ABS[b] <= 12000]


def agent_pattern(tag):
    """The cycle of mu-law bytes that agent audio for `tag` repeats.
    Tag "" (no calltag) is a valid tag like any other."""
    values = _pattern_values()
    seed = int.from_bytes(hashlib.sha1(tag.encode()).digest()[:8], "big")
    random.Random(seed).shuffle(values)
    return bytes(values)


def agent_successor_table(tag):
    """256-byte translate() table: byte -> the byte that must follow it in
    the pattern for `tag`. Bytes outside the pattern map to 0x00, which is
    never in a pattern, so any foreign byte counts as a break."""
    cycle = agent_pattern(tag)
    table = bytearray(256)
    for i, b in enumerate(cycle):
        table[b] = cycle[(i + 1) % len(cycle)]
    return bytes(table)


def agent_audio_ulaw(tag, offset, length):
    """`length` bytes of the pattern for `tag` starting at byte `offset`
    of the item, so consecutive deltas of one item join seamlessly."""
    cycle = agent_pattern(tag)
    n = len(cycle)
    start = offset % n
    reps = (start + length) // n + 1
    return (cycle * reps)[start:start + length]


def pattern_breaks(payload, successor_table):
    """How many adjacent byte pairs inside `payload` break the pattern."""
    if len(payload) < 2:
        return 0
    # Fast path: translate() maps every byte to its expected successor.
    if payload[:-1].translate(successor_table) == payload[1:]:
        return 0
    return sum(1 for a, b in zip(payload, payload[1:])
               if successor_table[a] != b)


def encode_from_ulaw(data, encoding):
    """Re-encode mu-law pattern bytes for a session that is not pcmu, so
    pcm16 and A-law sessions still get non-silent, deterministic audio."""
    if encoding == "audio/pcmu":
        return data
    if encoding == "audio/pcma":
        return bytes(_linear_to_alaw(ULAW_TO_LINEAR[b]) for b in data)
    # audio/pcm: 24 kHz 16-bit LE; each mu-law byte (8 kHz) becomes 3
    # samples so the duration is preserved.
    out = bytearray()
    for b in data:
        s = ULAW_TO_LINEAR[b].to_bytes(2, "little", signed=True)
        out += s * 3
    return bytes(out)


def _linear_to_alaw(sample):
    sample = max(-32768, min(32767, int(sample)))
    sign = 0x80 if sample >= 0 else 0
    if not sign:
        sample = -sample - 1
    if sample < 256:
        exponent, mantissa = 0, sample >> 4
    else:
        exponent = sample.bit_length() - 8
        exponent = min(exponent, 7)
        mantissa = (sample >> (exponent + 3)) & 0x0F
    return ((sign | (exponent << 4) | mantissa) ^ 0x55) & 0xFF


BYTES_PER_MS = {"audio/pcmu": 8, "audio/pcma": 8, "audio/pcm": 48}
