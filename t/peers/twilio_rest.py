#!/usr/bin/python3
"""A stand-in for Twilio's REST API (the Calls resource) for twirt tests.

Run it with Debian's interpreter, /usr/bin/python3 (python3-websockets
10.4, for the media streams it opens through twilio_sim.py).

    /usr/bin/python3 t/peers/twilio_rest.py --listen 127.0.0.1:0 \
        --ready-file /tmp/rest.ready --record /tmp/rest.jsonl \
        --account-sid AC... --auth-token TOKEN --caller-id +81312345678

It answers POST/GET /2010-04-01/Accounts/{AccountSid}/Calls.json and
/Calls/{CallSid}.json like Twilio does (HTTP Basic auth, validation, the
error bodies, 429 and 5xx on demand), then plays every created call out
like the telephone network would: queued at the account's CPS, initiated,
ringing, then busy / no-answer / failed / canceled, or answered by a
person or a machine. An answered call requests its Url (a signed form
POST, as Twilio does), runs the TwiML it gets back, opens <Connect><Stream>
with twilio_sim.Call, follows <Connect action> when the gateway ends the
stream, and sends the signed StatusCallback requests that were asked for.
t/peers/README.md ("twilio_rest.py") has the whole reference.
"""

import argparse
import asyncio
import base64
import collections
import email.utils
import hmac
import http.client
import json
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import urllib.parse
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import peer_scenario
import twilio_sim

API_VERSION = "2010-04-01"
E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# National significant number lengths for the countries tests use: a
# number of the wrong length there is not a valid phone number (21211).
NSN_LENGTHS = {"1": (10,), "81": (9, 10), "44": (9, 10), "33": (9,)}
OUTCOMES = ("completed", "busy", "no-answer", "failed", "canceled",
            "machine")
MACHINE_ANSWERS = ("machine_start", "machine_end_beep", "machine_end_silence",
                   "machine_end_other", "fax", "unknown")
EVENTS = ("initiated", "ringing", "answered", "completed")
# SIP final response Twilio reports for each final status.
SIP_CODES = {"completed": 200, "busy": 486, "no-answer": 487, "failed": 404,
             "canceled": 487}
USER_AGENT = "TwilioProxy/1.1"
MAX_TWIML_HOPS = 10

# -- Twilio's error bodies ----------------------------------------------------


def error_body(code, status, message, **extra):
    body = {"code": code, "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}
    body.update(extra)
    return body


def err_auth():
    return 401, error_body(20003, 401, "Authenticate",
                           detail="Your AccountSid or AuthToken was "
                           "incorrect.")


def err_not_found(path):
    return 404, error_body(20404, 404, f"The requested resource {path} was "
                           "not found")


def err_too_many():
    return 429, error_body(20429, 429, "Too Many Requests")


def err_server(status):
    if status == 503:
        return 503, error_body(20503, 503, "Service Unavailable")
    return 500, error_body(20500, 500, "Internal Server Error")


def err_param(code, message):
    return 400, error_body(code, 400, message)


SCRIPTED_ERRORS = {
    21215: lambda to: ("Account not authorized to call " + to + ". Perhaps "
                       "you need to enable some international permissions: "
                       "https://www.twilio.com/console/voice/calls/"
                       "geo-permissions/low-risk"),
    21216: lambda to: f"Account not allowed to call {to}",
    21217: lambda to: "Phone number does not appear to be valid",
    21211: lambda to: f"The 'To' number {to} is not a valid phone number.",
}


def valid_number(number):
    """E.164, and of a possible length where the country is known."""
    if not isinstance(number, str) or not E164.match(number):
        return False
    digits = number[1:]
    for cc, lengths in NSN_LENGTHS.items():
        if digits.startswith(cc):
            return len(digits) - len(cc) in lengths
    return True


def rfc2822(t):
    return email.utils.formatdate(t, usegmt=False).replace("-0000", "+0000")


# -- the record ---------------------------------------------------------------


class Recorder:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None
        self.lock = threading.Lock()

    def write(self, kind, **fields):
        if self.f is None:
            return
        line = {"t": round(time.time(), 3), "kind": kind}
        line.update(fields)
        with self.lock:
            self.f.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.f.flush()


# -- a call -------------------------------------------------------------------


class Call:
    def __init__(self, stand_in, params, plan):
        acct = stand_in.account_sid
        self.si = stand_in
        self.sid = "CA" + secrets.token_hex(16)
        self.params = params          # the create request, name -> [values]
        self.plan = plan
        now = time.time()
        self.created = now
        self.updated = now
        self.start_time = None
        self.end_time = None
        self.answered_at = None
        self.status = "queued"
        self.answered_by = None
        self.duration = None
        self.queue_time_ms = 0
        self.to = self.p("To")
        self.from_ = self.p("From")
        self.uri = f"/{API_VERSION}/Accounts/{acct}/Calls/{self.sid}.json"
        self.seq = 0                  # status callback SequenceNumber
        self.events = set(e for v in params.get("StatusCallbackEvent", [])
                          for e in v.replace(",", " ").split() if e)
        if not self.events:
            self.events = {"completed"}
        self.redirect = None          # (Twiml|None, Url|None, Method) pending
        self.end_request = None       # "completed" | "canceled" by the API
        self.wake = None              # asyncio.Event, set on an update
        self.stream = None            # the twilio_sim.Call while streaming
        self.twiml_log = []           # verbs run, for the record
        self.amd_params = {}

    def p(self, name, default=None):
        v = self.params.get(name)
        return v[-1] if v else default

    def resource(self):
        acct = self.si.account_sid
        base = f"/{API_VERSION}/Accounts/{acct}/Calls/{self.sid}"
        return {
            "account_sid": acct, "annotation": None,
            "answered_by": self.answered_by, "api_version": API_VERSION,
            "caller_name": None, "date_created": rfc2822(self.created),
            "date_updated": rfc2822(self.updated),
            "direction": "outbound-api",
            "duration": None if self.duration is None else str(self.duration),
            "end_time": self.end_time and rfc2822(self.end_time),
            "forwarded_from": None, "from": self.from_,
            "from_formatted": self.from_, "group_sid": None,
            "parent_call_sid": None, "phone_number_sid": "PN" + "0" * 32,
            "price": None, "price_unit": "USD",
            "queue_time": str(self.queue_time_ms), "sid": self.sid,
            "start_time": self.start_time and rfc2822(self.start_time),
            "status": self.status,
            "subresource_uris": {
                k: f"{base}/{v}.json" for k, v in (
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"), ("payments", "Payments"),
                    ("events", "Events"), ("siprec", "Siprec"),
                    ("streams", "Streams"),
                    ("user_defined_message_subscriptions",
                     "UserDefinedMessageSubscriptions"),
                    ("user_defined_messages", "UserDefinedMessages"))},
            "to": self.to, "to_formatted": self.to, "trunk_sid": None,
            "uri": self.uri}

    def live(self):
        return self.status in ("queued", "initiated", "ringing",
                               "in-progress")


# -- the stand-in ---------------------------------------------------------------


class StandIn:
    def __init__(self, opts):
        self.opts = opts
        self.account_sid = opts.account_sid
        self.auth_token = opts.auth_token
        self.api_keys = dict(opts.api_key)
        self.caller_ids = set(opts.caller_id)
        self.rec = Recorder(opts.record)
        self.lock = threading.Lock()
        self.calls = collections.OrderedDict()
        self.creates = collections.deque()      # accepted create times
        self.dial_times = []
        self.create_times = []
        self.in_flight = 0
        self.fail_next = list(opts.fail_next or (0, 500))
        self.stats = collections.Counter()
        self.outcomes = collections.Counter()
        self.error_codes = collections.Counter()
        self.script = {}
        if opts.script:
            with open(opts.script, encoding="utf-8") as f:
                self.script = json.load(f)
        for number, outcome in opts.outcome:
            self.script.setdefault(number, {})["outcome"] = outcome
        for number, entry in self.script.items():
            attempts = entry.get("attempts", []) \
                if isinstance(entry, dict) else None
            if not isinstance(attempts, list) or not all(
                    isinstance(a, dict) and "attempts" not in a
                    for a in attempts):
                raise ValueError(f"{number}: attempts must be a list of "
                                 "entries (without attempts of their own)")
            for e in [entry] + attempts:
                if e.get("outcome", "completed") not in OUTCOMES:
                    raise ValueError(f"{number}: outcome must be one of "
                                     f"{', '.join(OUTCOMES)}")
        self.creates_to = collections.Counter()  # create requests per To
        self.loop = asyncio.new_event_loop()
        self.queue = None
        self.next_dial = 0.0
        self.client_ssl = ssl.create_default_context(cafile=opts.ca_file)
        self.started = time.time()

    # -- the event loop thread --------------------------------------------

    def start_loop(self):
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.queue = asyncio.Queue()
            self.loop.create_task(self.dialer())
            ready.set()
            self.loop.run_forever()
        threading.Thread(target=run, daemon=True, name="calls").start()
        ready.wait()

    def plan_for(self, to):
        o = self.opts
        plan = {"outcome": o.default_outcome, "ring_ms": o.ring_ms,
                "call_ms": o.call_ms, "amd_ms": o.amd_ms,
                "scenario": o.scenario, "answered_by": None, "error": None}
        plan.update(self.script.get("*", {}))
        plan.update(self.script.get(to, {}))
        # "attempts": the n-th create request to the number plays the
        # n-th entry (the last one once the list is used up)
        attempts = plan.pop("attempts", None)
        with self.lock:
            n = self.creates_to[to]
            self.creates_to[to] += 1
        if attempts:
            plan.update(attempts[min(n, len(attempts) - 1)])
        plan["attempt"] = n + 1
        return plan

    # -- API ------------------------------------------------------------------

    def authenticate(self, header):
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, pw = base64.b64decode(header[6:], validate=True) \
                .decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        if user == self.account_sid and hmac.compare_digest(
                pw.encode(), self.auth_token.encode()):
            return "account"
        secret = self.api_keys.get(user)
        if secret is not None and hmac.compare_digest(pw.encode(),
                                                      secret.encode()):
            return "api_key"
        return None

    def create(self, params):
        """POST Calls.json: (status, body)."""
        to, from_ = params.get("To", [None])[-1], \
            params.get("From", [None])[-1]
        url = params.get("Url", [None])[-1]
        twiml = params.get("Twiml", [None])[-1]
        if not to:
            return err_param(21201, "No 'To' number is specified")
        if not from_:
            return err_param(21213, "No 'From' number is specified")
        if not url and not twiml and not params.get("ApplicationSid"):
            return err_param(21205, "A 'Url', 'Twiml', or 'ApplicationSid' "
                             "parameter is required")
        for name in ("Url", "StatusCallback", "AsyncAmdStatusCallback"):
            v = params.get(name, [None])[-1]
            if v is not None and urllib.parse.urlsplit(v).scheme \
                    not in ("http", "https"):
                return err_param(21205 if name == "Url" else 21609,
                                 f"{name} is not a valid URL: {v}")
        if not valid_number(to) or to == from_:
            return err_param(21211, f"The 'To' number {to} is not a valid "
                             "phone number.")
        if not valid_number(from_):
            return err_param(21212, f"The 'From' number {from_} is not a "
                             "valid phone number, shortcode, or alphanumeric "
                             "sender ID.")
        if self.caller_ids and from_ not in self.caller_ids:
            return err_param(21210, f"The source phone number provided, "
                             f"{from_}, is not yet verified for your "
                             "account. You may only make calls from phone "
                             "numbers that you've verified or purchased "
                             "from Twilio.")
        md = params.get("MachineDetection", [None])[-1]
        if md is not None and md not in ("Enable", "DetectMessageEnd"):
            return err_param(21218, f"Invalid MachineDetection value: {md}")
        timeout = params.get("Timeout", ["60"])[-1]
        if not timeout.isdigit():
            return err_param(21206, f"Invalid Timeout value: {timeout}")
        for v in params.get("StatusCallbackEvent", []):
            for e in v.replace(",", " ").split():
                if e not in EVENTS:
                    return err_param(21626, "Invalid StatusCallbackEvent "
                                     f"value: {e}")
        plan = self.plan_for(to)
        if plan.get("error"):
            code = int(plan["error"])
            msg = SCRIPTED_ERRORS.get(code, lambda t: "Error")(to)
            return err_param(code, msg)
        call = Call(self, params, plan)
        now = time.time()
        with self.lock:
            self.calls[call.sid] = call
            self.create_times.append(now)
            self.stats["calls_created"] += 1
            # Twilio dials at most `cps` calls a second: the rest wait.
            slot = max(now, self.next_dial)
            self.next_dial = slot + 1.0 / self.opts.cps
            call.queue_time_ms = int((slot - now) * 1000)
            # The answer shows the call as created, before it can move on.
            res = call.resource()
        self.rec.write("call", call_sid=call.sid, status="queued", to=to,
                       plan=plan)
        asyncio.run_coroutine_threadsafe(self.queue.put((slot, call)),
                                         self.loop)
        return 201, res

    def list_calls(self, query, path):
        q = urllib.parse.parse_qs(query)
        flt = {k: q[k][-1] for k in ("To", "From", "Status") if k in q}
        try:
            size = max(1, min(1000, int(q.get("PageSize", ["50"])[-1])))
            page = max(0, int(q.get("Page", ["0"])[-1]))
        except ValueError:
            return err_param(20001, "Invalid paging parameter")
        with self.lock:
            calls = [c for c in reversed(self.calls.values())
                     if all((c.to if k == "To" else c.from_ if k == "From"
                             else c.status) == v for k, v in flt.items())]
            rows = [c.resource() for c in
                    calls[page * size:(page + 1) * size]]

        def uri(n):
            qs = dict(flt, PageSize=str(size), Page=str(n))
            return f"{path}?{urllib.parse.urlencode(qs)}"
        more = (page + 1) * size < len(calls)
        return 200, {
            "calls": rows, "start": page * size,
            "end": page * size + max(0, len(rows) - 1),
            "page": page, "page_size": size, "uri": uri(page),
            "first_page_uri": uri(0),
            "next_page_uri": uri(page + 1) if more else None,
            "previous_page_uri": uri(page - 1) if page > 0 else None}

    def update(self, sid, params, path):
        with self.lock:
            call = self.calls.get(sid)
        if call is None:
            return err_not_found(path)
        status = params.get("Status", [None])[-1]
        twiml = params.get("Twiml", [None])[-1]
        url = params.get("Url", [None])[-1]
        if status is not None and status not in ("completed", "canceled"):
            return err_param(21218, f"Invalid Status value: {status}")
        if (twiml or url) and not call.live():
            return err_param(21220, "Call is not in-progress. Cannot "
                             "redirect.")
        with self.lock:
            if status and call.live():
                if status == "completed" or call.status in (
                        "queued", "initiated", "ringing"):
                    call.end_request = status
            elif (twiml or url) and status is None:
                call.redirect = (twiml, url,
                                 params.get("Method", ["POST"])[-1])
            call.updated = time.time()
        if call.wake is not None:
            self.loop.call_soon_threadsafe(call.wake.set)
        return 200, call.resource()

    def summary(self):
        def peak(times):
            best, j = 0, 0
            for i, t in enumerate(times):
                while times[j] <= t - 1.0:
                    j += 1
                best = max(best, i - j + 1)
            return best
        with self.lock:
            created = sorted(self.create_times)
            dialed = sorted(self.dial_times)
            span = (created[-1] - created[0]) if len(created) > 1 else 0
            dspan = (dialed[-1] - dialed[0]) if len(dialed) > 1 else 0
            return {
                "calls_created": len(created),
                "create_peak_per_s": peak(created),
                "create_mean_per_s": round((len(created) - 1) / span, 2)
                if span > 0 else None,
                "dial_peak_per_s": peak(dialed),
                "dial_mean_per_s": round((len(dialed) - 1) / dspan, 2)
                if dspan > 0 else None,
                "calls_dialed": len(dialed),
                "live_calls": sum(c.live() for c in self.calls.values()),
                "outcomes": dict(self.outcomes),
                "api": dict(self.stats),
                "error_codes": {str(k): v
                                for k, v in self.error_codes.items()},
                "cps": self.opts.cps}

    # -- the network side ------------------------------------------------------

    async def dialer(self):
        """Starts each queued call at its CPS slot."""
        while True:
            slot, call = await self.queue.get()
            delay = slot - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.loop.create_task(self.play(call))

    def request(self, method, url, params, purpose, call):
        """One signed webhook request (blocking; run in a thread):
        returns (status, content_type, body text) or (None, None, error)."""
        params = {k: v for k, v in params.items() if v is not None}
        parts = urllib.parse.urlsplit(url)
        body = None
        if method == "GET":
            q = urllib.parse.urlencode(params)
            full = url + (("&" if parts.query else "?") + q if q else "")
            sig = twilio_sim.twilio_signature(self.auth_token, full)
        else:
            full = url
            body = urllib.parse.urlencode(params).encode()
            sig = twilio_sim.twilio_signature(self.auth_token, url, params)
        fp = urllib.parse.urlsplit(full)
        target = (fp.path or "/") + ("?" + fp.query if fp.query else "")
        headers = {"X-Twilio-Signature": sig, "User-Agent": USER_AGENT,
                   "Accept": "*/*", "Cache-Control": "max-age=259200",
                   "I-Twilio-Idempotency-Token": secrets.token_hex(16)}
        if body is not None:
            headers["Content-Type"] = ("application/x-www-form-urlencoded; "
                                       "charset=utf-8")
        timeout = self.opts.webhook_timeout_ms / 1000
        t0 = time.time()
        status = ctype = text = error = None
        try:
            if parts.scheme == "https":
                conn = http.client.HTTPSConnection(
                    parts.hostname, parts.port, timeout=timeout,
                    context=self.client_ssl)
            else:
                conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                                  timeout=timeout)
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            status = resp.status
            ctype = resp.getheader("Content-Type")
            text = resp.read(1 << 20).decode("utf-8", "replace")
            conn.close()
        except (OSError, http.client.HTTPException) as e:
            error = f"{type(e).__name__}: {e}"
        self.rec.write("webhook", call_sid=call.sid, purpose=purpose,
                       method=method, url=full, params=params, signature=sig,
                       status=status, content_type=ctype, body=text,
                       error=error, ms=round((time.time() - t0) * 1000, 1))
        with self.lock:
            self.stats[f"{purpose}_sent"] += 1
            if error or status is None or status >= 400:
                self.stats[f"{purpose}_failed"] += 1
        return status, ctype, text if error is None else error

    async def fetch(self, *args):
        return await self.loop.run_in_executor(None, self.request, *args)

    def base_params(self, call):
        return {"AccountSid": self.account_sid, "ApiVersion": API_VERSION,
                "CallSid": call.sid, "CallStatus": call.status,
                "Called": call.to, "Caller": call.from_,
                "Direction": "outbound-api", "From": call.from_,
                "To": call.to}

    def set_status(self, call, status):
        with self.lock:
            call.status = status
            call.updated = time.time()
        self.rec.write("call", call_sid=call.sid, status=status)

    async def status_event(self, call, event, senders):
        """Queues the StatusCallback for `event`, if it was asked for."""
        url = call.p("StatusCallback")
        if not url or event not in call.events:
            return
        params = self.base_params(call)
        params.update({"CallbackSource": "call-progress-events",
                       "Timestamp": rfc2822(time.time()),
                       "SequenceNumber": str(call.seq)})
        call.seq += 1
        if call.answered_by:            # set once machine detection ran
            params["AnsweredBy"] = call.answered_by
        if event == "completed":
            params["CallDuration"] = str(call.duration or 0)
            params["SipResponseCode"] = str(SIP_CODES.get(call.status, 200))
        method = (call.p("StatusCallbackMethod") or "POST").upper()
        senders.put_nowait((method, url, params))

    async def status_sender(self, call, senders):
        """Status callbacks leave in order, without holding up the call."""
        while True:
            item = await senders.get()
            if item is None:
                return
            await self.fetch(*item, "status_callback", call)

    async def wait_or_update(self, call, seconds):
        """Sleeps, returning early (True) when the API updated the call."""
        if call.end_request or call.redirect:
            return True
        call.wake.clear()
        try:
            await asyncio.wait_for(call.wake.wait(), max(0, seconds))
            return True
        except asyncio.TimeoutError:
            return bool(call.end_request or call.redirect)

    async def play(self, call):
        call.wake = asyncio.Event()
        senders = asyncio.Queue()
        sender = self.loop.create_task(self.status_sender(call, senders))
        plan = call.plan
        outcome = plan["outcome"]
        try:
            final = await self.play_steps(call, plan, outcome, senders)
        except Exception as e:              # a bug here must not hang tests
            self.rec.write("error", call_sid=call.sid,
                           error=f"{type(e).__name__}: {e}")
            final = "failed"
        now = time.time()
        with self.lock:
            call.end_time = now
            if call.answered_at:
                call.duration = int(round(now - call.answered_at))
            else:
                call.duration = 0
            self.outcomes[final] += 1
        self.set_status(call, final)
        await self.status_event(call, "completed", senders)
        senders.put_nowait(None)
        await sender
        self.rec.write("call_done", call_sid=call.sid, status=final,
                       answered_by=call.answered_by, duration=call.duration,
                       twiml=call.twiml_log)

    async def play_steps(self, call, plan, outcome, senders):
        if call.end_request:                   # canceled while queued
            return "canceled"
        with self.lock:
            self.dial_times.append(time.time())
            call.start_time = time.time()
        self.set_status(call, "initiated")
        await self.status_event(call, "initiated", senders)
        if outcome == "failed":
            return "failed"
        self.set_status(call, "ringing")
        await self.status_event(call, "ringing", senders)
        ring = plan["ring_ms"] / 1000
        timeout = int(call.p("Timeout", "60"))
        if outcome == "no-answer":
            ring = min(ring, timeout)
        elif ring > timeout:
            outcome = "no-answer"
            ring = timeout
        if await self.wait_or_update(call, ring) and call.end_request:
            return "canceled"
        if outcome in ("busy", "no-answer", "canceled"):
            return outcome
        # answered
        with self.lock:
            call.answered_at = time.time()
            call.start_time = call.answered_at
        md = call.p("MachineDetection")
        machine = outcome == "machine"
        verdict = None
        if md:
            if machine:
                verdict = plan.get("answered_by") or (
                    "machine_start" if md == "Enable" else "machine_end_beep")
            else:
                verdict = plan.get("answered_by") or "human"
        self.set_status(call, "in-progress")
        async_amd = md and call.p("AsyncAmd") == "true"
        if md and not async_amd:
            # Synchronous AMD: the TwiML waits for the verdict.
            if await self.wait_or_update(call, plan["amd_ms"] / 1000) \
                    and call.end_request:
                return "completed"
            call.answered_by = verdict
        await self.status_event(call, "answered", senders)
        amd_task = None
        if async_amd:
            amd_task = self.loop.create_task(self.async_amd(call, verdict,
                                                            plan))
        hangup_at = time.monotonic() + plan_call_ms(plan) / 1000
        first = {"twiml": call.p("Twiml"), "url": call.p("Url"),
                 "method": (call.p("Method") or "POST").upper(),
                 "purpose": "url"}
        extra = {}
        if md and not async_amd:
            extra = {"AnsweredBy": verdict,
                     "MachineDetectionDuration": str(plan["amd_ms"])}
        await self.run_twiml(call, first, extra, hangup_at, plan)
        if amd_task:
            await amd_task
        return "completed"

    async def async_amd(self, call, verdict, plan):
        await asyncio.sleep(plan["amd_ms"] / 1000)
        call.answered_by = verdict
        url = call.p("AsyncAmdStatusCallback")
        if url and call.live():
            await self.fetch(
                (call.p("AsyncAmdStatusCallbackMethod") or "POST").upper(),
                url, {"AccountSid": self.account_sid, "CallSid": call.sid,
                      "AnsweredBy": verdict,
                      "MachineDetectionDuration": str(plan["amd_ms"])},
                "amd_callback", call)

    async def run_twiml(self, call, doc, extra, hangup_at, plan):
        """Runs TwiML documents until the call ends. `doc` says where the
        next document comes from."""
        for _ in range(MAX_TWIML_HOPS):
            if call.end_request:
                return
            if call.redirect:
                twiml, url, method = call.redirect
                call.redirect = None
                doc = {"twiml": twiml, "url": url, "method": method.upper(),
                       "purpose": "redirect"}
            text = doc.get("twiml")
            if text is None:
                params = self.base_params(call)
                params.update(extra)
                params.update(doc.get("params", {}))
                status, ctype, body = await self.fetch(
                    doc["method"], doc["url"], params, doc["purpose"], call)
                if status is None or not 200 <= status < 300:
                    call.twiml_log.append({"error": 11200,
                                           "purpose": doc["purpose"]})
                    return
                text = body
            try:
                root = ET.fromstring(text.encode("utf-8"))
                if root.tag != "Response":
                    raise ET.ParseError("root is not <Response>")
            except ET.ParseError as e:
                call.twiml_log.append({"error": 12100, "detail": str(e)})
                return
            extra = {}
            doc = await self.run_verbs(call, list(root), hangup_at, plan)
            if doc is None:
                return

    async def run_verbs(self, call, verbs, hangup_at, plan):
        """Returns the next document to fetch, or None: the call ended."""
        for verb in verbs:
            entry = {"verb": verb.tag, "attrs": dict(verb.attrib)}
            if (verb.text or "").strip():
                entry["text"] = verb.text.strip()
            call.twiml_log.append(entry)
            if call.end_request or time.monotonic() >= hangup_at:
                return None
            if call.redirect:
                return {}
            if verb.tag in ("Hangup", "Reject"):
                return None
            if verb.tag == "Redirect":
                return {"url": (verb.text or "").strip(),
                        "method": verb.get("method", "POST").upper(),
                        "purpose": "redirect"}
            if verb.tag == "Pause":
                secs = int(verb.get("length", "1"))
                if await self.wait_or_update(
                        call, min(secs, hangup_at - time.monotonic())):
                    return {} if call.redirect else None
                continue
            if verb.tag == "Dial":
                entry["nouns"] = [{"noun": n.tag, "attrs": dict(n.attrib),
                                   "text": (n.text or "").strip()}
                                  for n in verb]
                continue
            if verb.tag == "Connect":
                stream = verb.find("Stream")
                if stream is None:
                    continue
                entry["stream"] = {
                    "url": stream.get("url"),
                    "parameters": {p.get("name"): p.get("value")
                                   for p in stream.findall("Parameter")}}
                how = await self.stream(call, stream, hangup_at, plan)
                entry["ended_by"] = how
                if how not in ("gateway", "error"):
                    if call.redirect:
                        return {}
                    return None
                action = verb.get("action")
                if action:
                    return {"url": urllib.parse.urljoin(
                        call.p("Url") or action, action),
                        "method": verb.get("method", "POST").upper(),
                        "purpose": "action"}
                continue
            # Say, Play, Gather... are "heard" at once.
        return None                             # end of the document

    async def stream(self, call, el, hangup_at, plan):
        """Opens the media stream with twilio_sim's caller. Returns who
        ended it: gateway, callee (the time ran out), api, error."""
        url = el.get("url") or ""
        params = {p.get("name"): p.get("value") or ""
                  for p in el.findall("Parameter") if p.get("name")}
        remaining = max(1, int((hangup_at - time.monotonic()) * 1000))
        argv = ["--url", url, "--auth-token", self.auth_token,
                "--account-sid", self.account_sid, "--call-sid", call.sid,
                "--duration-ms", str(remaining)]
        if self.opts.ca_file:
            argv += ["--ca-file", self.opts.ca_file]
        opts = twilio_sim.build_parser().parse_args(argv)
        try:
            scenario = (peer_scenario.load(plan["scenario"])
                        if plan.get("scenario") else peer_scenario.empty())
        except peer_scenario.ScenarioError as e:
            self.rec.write("error", call_sid=call.sid, error=str(e))
            scenario = peer_scenario.empty()
        sim = twilio_sim.Call(opts, call.sid, "MZ" + secrets.token_hex(16),
                              params, scenario, self.stream_rec,
                              twilio_sim.Printer(False))
        call.stream = sim
        task = self.loop.create_task(sim.run())
        waker = self.loop.create_task(call.wake.wait())
        call.wake.clear()
        by_api = False
        while not task.done():
            done, _ = await asyncio.wait({task, waker},
                                         return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                break
            if call.end_request or call.redirect:
                by_api = True
                await self.hang_up_stream(sim)
                break
            call.wake.clear()
            waker = self.loop.create_task(call.wake.wait())
        waker.cancel()
        result = await task
        call.stream = None
        self.rec.write("stream", call_sid=call.sid, url=url,
                       parameters=params, summary=result)
        if by_api:
            return "api"
        close = result.get("close") or {}
        if result.get("http_status") != 101:
            return "error"
        return "gateway" if close.get("by") == "gateway" else "callee"

    async def hang_up_stream(self, sim):
        """The call was ended or redirected through the API: Twilio sends
        stop and closes the socket."""
        while sim.ws is None or sim.writer_task is None:
            await asyncio.sleep(0.01)
        sim.ending = True
        sim.closed_by = "caller"
        sim.enqueue({"event": "stop", "sequenceNumber": sim.next_seq(),
                     "streamSid": sim.stream_sid,
                     "stop": {"accountSid": self.account_sid,
                              "callSid": sim.call_sid}})
        sim.enqueue(None)
        try:
            await asyncio.wait_for(asyncio.shield(sim.writer_task), 5)
        except asyncio.TimeoutError:
            pass
        await sim.ws.close(1000)


def plan_call_ms(plan):
    if plan.get("call_ms"):
        return plan["call_ms"]
    try:
        return peer_scenario.load(plan["scenario"])["end"]["after_ms"] \
            if plan.get("scenario") else 2000
    except peer_scenario.ScenarioError:
        return 2000


# -- HTTP -----------------------------------------------------------------------


CALLS = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Calls"
                   r"(?:/(CA[0-9a-f]{32}))?\.json$")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "twirt-twilio-rest-stand-in/1"

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def do_GET(self):
        self.handle_api("GET")

    def do_POST(self):
        self.handle_api("POST")

    def do_DELETE(self):
        self.handle_api("DELETE")

    def send_json(self, status, body, extra=()):
        data = json.dumps(body, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; "
                             "charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def handle_api(self, method):
        si = self.server.si
        path, _, query = self.path.partition("?")
        length = self.headers.get("Content-Length")
        raw = b""
        if length and length.isdigit():
            raw = self.rfile.read(int(length))
        elif method == "POST" and self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self.send_json(411, {"message": "Content-Length required"})
            return
        if path.startswith("/_stand_in/"):
            return self.control(method, path, query)
        try:
            params = urllib.parse.parse_qs(raw.decode("utf-8"),
                                           keep_blank_values=True)
        except UnicodeDecodeError:
            params = {}
        with si.lock:
            si.in_flight += 1
            concurrent = si.in_flight
        try:
            status, body, auth = self.api(method, path, query, params,
                                          concurrent)
        finally:
            with si.lock:
                si.in_flight -= 1
        extra = []
        if status == 401:
            extra.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
        extra.append(("Twilio-Concurrent-Requests", str(concurrent)))
        extra.append(("Twilio-Request-Id", "RQ" + secrets.token_hex(16)))
        self.send_json(status, body, extra)
        with si.lock:
            si.stats[f"http_{status}"] += 1
            if isinstance(body, dict) and "code" in body and status >= 400:
                si.error_codes[body["code"]] += 1
        si.rec.write("api", method=method, path=path, query=query,
                     params=params, auth=auth, status=status, body=body,
                     concurrent=concurrent)

    def api(self, method, path, query, params, concurrent):
        si = self.server.si
        o = si.opts
        if o.api_delay_ms:
            time.sleep(o.api_delay_ms / 1000)
        if o.create_delay_ms and method == "POST" \
                and path.endswith("/Calls.json"):
            time.sleep(o.create_delay_ms / 1000)
        with si.lock:
            if si.fail_next[0] > 0:
                si.fail_next[0] -= 1
                return (*err_server(si.fail_next[1]), None)
        auth = si.authenticate(self.headers.get("Authorization"))
        m = CALLS.match(path)
        if auth is None:
            return (*err_auth(), "refused")
        if m is None or m.group(1) != si.account_sid:
            if m is not None:
                return (*err_auth(), "wrong_account")
            return (*err_not_found(path), auth)
        if o.max_concurrent and concurrent > o.max_concurrent:
            return (*err_too_many(), auth)
        sid = m.group(2)
        if sid is None and method == "POST":
            if o.rate_limit:
                now = time.time()
                with si.lock:
                    while si.creates and si.creates[0] <= now - 1.0:
                        si.creates.popleft()
                    if len(si.creates) >= o.rate_limit:
                        return (*err_too_many(), auth)
                    si.creates.append(now)
            return (*si.create(params), auth)
        if sid is None and method == "GET":
            return (*si.list_calls(query, path), auth)
        if sid is not None and method == "GET":
            with si.lock:
                call = si.calls.get(sid)
                res = call.resource() if call else None
            if res is None:
                return (*err_not_found(path), auth)
            return 200, res, auth
        if sid is not None and method == "POST":
            return (*si.update(sid, params, path), auth)
        return 405, error_body(20004, 405, "Method not allowed"), auth

    def control(self, method, path, query):
        si = self.server.si
        q = urllib.parse.parse_qs(query)
        if path == "/_stand_in/summary":
            return self.send_json(200, si.summary())
        if path == "/_stand_in/fail" and method == "POST":
            with si.lock:
                si.fail_next = [int(q.get("count", ["1"])[-1]),
                                int(q.get("status", ["500"])[-1])]
            return self.send_json(200, {"fail_next": si.fail_next})
        return self.send_json(404, {"message": "unknown control path"})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        e = sys.exc_info()[1]
        if isinstance(e, (ssl.SSLError, ConnectionError, TimeoutError)):
            self.si.rec.write("tls_error" if isinstance(e, ssl.SSLError)
                              else "conn_error", error=str(e))
            return
        super().handle_error(request, client_address)


# -- command line -----------------------------------------------------------------


def parse_listen(value):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]"), int(port)


def parse_key(value):
    sid, sep, secret = value.partition(":")
    if not sep or not sid.startswith("SK") or not secret:
        raise argparse.ArgumentTypeError("expected SK...:secret")
    return sid, secret


def parse_outcome(value):
    number, sep, outcome = value.partition("=")
    if not sep or outcome not in OUTCOMES:
        raise argparse.ArgumentTypeError(
            f"expected NUMBER=OUTCOME, OUTCOME one of {', '.join(OUTCOMES)}")
    return number, outcome


def parse_fail(value):
    count, _, status = value.partition(":")
    if not count.isdigit() or status not in ("", "500", "503"):
        raise argparse.ArgumentTypeError("expected K or K:500 or K:503")
    return [int(count), int(status or 500)]


def build_parser():
    p = argparse.ArgumentParser(
        description="Stand-in for Twilio's REST API (Calls) for twirt tests")
    p.add_argument("--listen", type=parse_listen, required=True,
                   metavar="HOST:PORT", help="port 0 picks a free port")
    p.add_argument("--ready-file", help='written as {"port", "url", "pid"}')
    p.add_argument("--record", metavar="FILE.jsonl")
    p.add_argument("--stream-record", metavar="FILE.jsonl",
                   help="twilio_sim's record of the media streams")
    p.add_argument("--account-sid", default="AC" + "0123456789abcdef" * 2)
    p.add_argument("--auth-token", default="stand-in-auth-token")
    p.add_argument("--api-key", type=parse_key, action="append", default=[],
                   metavar="SK...:SECRET")
    p.add_argument("--caller-id", action="append", default=[],
                   metavar="+E164", help="From numbers the account owns "
                   "(none given: any valid number)")
    p.add_argument("--cps", type=float, default=1.0,
                   help="calls dialed per second; faster creates are queued")
    p.add_argument("--rate-limit", type=int, default=0, metavar="N",
                   help="more than N creates in a second: 429 / 20429")
    p.add_argument("--max-concurrent", type=int, default=0, metavar="N",
                   help="more than N API requests at once: 429 / 20429")
    p.add_argument("--api-delay-ms", type=int, default=0,
                   help="every API request takes this long")
    p.add_argument("--create-delay-ms", type=int, default=0,
                   help="create requests (POST Calls.json) take this long "
                   "more: a client that gives up first still made the call")
    p.add_argument("--fail-next", type=parse_fail, metavar="K[:STATUS]",
                   help="answer the next K API requests with 500 or 503")
    p.add_argument("--script", metavar="FILE.json",
                   help='{"+8190...": {"outcome": "busy", ...}, "*": {...}}')
    p.add_argument("--outcome", type=parse_outcome, action="append",
                   default=[], metavar="NUMBER=OUTCOME")
    p.add_argument("--default-outcome", default="completed",
                   choices=OUTCOMES)
    p.add_argument("--ring-ms", type=int, default=300)
    p.add_argument("--call-ms", type=int, default=0,
                   help="how long an answered call lasts (default: the "
                   "scenario's end, else 2000)")
    p.add_argument("--amd-ms", type=int, default=300,
                   help="time machine detection takes")
    p.add_argument("--scenario", default="silence",
                   help="scenario of the person/machine on the stream")
    p.add_argument("--ca-file", help="CA for https:// webhooks and wss://")
    p.add_argument("--webhook-timeout-ms", type=int, default=15000)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    return p


def main(argv=None):
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.cps <= 0:
        parser.error("--cps must be > 0")
    if bool(opts.tls_cert) != bool(opts.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    try:
        si = StandIn(opts)
    except (OSError, ValueError) as e:
        parser.error(f"--script: {e}")
    si.stream_rec = twilio_sim.Recorder(opts.stream_record)
    si.start_loop()
    srv = Server(opts.listen, Handler)
    srv.si = si
    scheme = "http"
    if opts.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
        # The handshake happens in the request's thread, not in accept().
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
        scheme = "https"
    port = srv.server_address[1]
    info = {"port": port, "url": f"{scheme}://{opts.listen[0]}:{port}",
            "pid": os.getpid()}
    if opts.ready_file:
        tmp = f"{opts.ready_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(info) + "\n")
        os.replace(tmp, opts.ready_file)
    print(f"twilio_rest: listening on {info['url']}", flush=True)

    def stop(*_):
        threading.Thread(target=srv.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    srv.serve_forever()
    summary = si.summary()
    si.rec.write("summary", **summary)
    print("twilio_rest: summary " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
