#!/usr/bin/python3
"""A whole Twilio call, followed the way Twilio follows it: the voice
webhook, its TwiML, the Media Stream (twilio_sim.py), <Connect action>
when the gateway closes the stream, and what that answers: <Hangup/>, the
fallback verbs, or a transfer's <Dial action><Number url> (dialed as
--dial says: the callee's whisper request, then the Dial action with its
DialCallStatus), and a new stream when the caller comes back.

    /usr/bin/python3 t/peers/twilio_call.py --base http://127.0.0.1:8080 \
        --webhook https://gw.example.com/twilio/voice --auth-token TOKEN \
        --scenario transfer-basic --dial no-answer --return-scenario end-call \
        --record /tmp/call.jsonl

Requests go to --base; URLs keep their public form (the one signed, as
Twilio signs the URL it requested), as behind a TLS tunnel. Every request
and answer is a JSON line of --record ("dir": "http"), with the streams'
own lines (twilio_sim.py's); the last line is the call's summary, printed
on stdout too. Standard library and python3-websockets only.
"""

import argparse
import asyncio
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import twilio_sim

MAX_DOCUMENTS = 10


class TwilioCall:
    def __init__(self, opts):
        self.opts = opts
        self.call_sid = opts.call_sid or "CA" + secrets.token_hex(16)
        self.recorder = twilio_sim.Recorder(opts.record)
        self.streams = []
        self.whispers = []
        self.documents = []
        self.verbs = []
        self.failures = []

    def record(self, **fields):
        self.recorder.write(self.call_sid, 0, "http", fields)

    def base_params(self):
        return {"CallSid": self.call_sid, "AccountSid": self.opts.account_sid,
                "From": self.opts.from_, "To": self.opts.to,
                "Direction": "inbound", "CallStatus": "in-progress",
                "ApiVersion": "2010-04-01"}

    def actual(self, url, what="webhook"):
        """The public URL as requested from --base (a TLS tunnel), or
        from --action-base after the webhook (another node)."""
        u = urllib.parse.urlsplit(url)
        b = urllib.parse.urlsplit(self.opts.base if what == "webhook"
                                  else self.opts.action_base
                                  or self.opts.base)
        return urllib.parse.urlunsplit((b.scheme, b.netloc, u.path, u.query,
                                        "")), u.netloc

    def post(self, url, params, what):
        actual, host = self.actual(url, what)
        data = urllib.parse.urlencode(params).encode()
        headers = {"Host": host,
                   "Content-Type": "application/x-www-form-urlencoded",
                   "User-Agent": "TwilioProxy/1.1"}
        if self.opts.auth_token:
            headers["X-Twilio-Signature"] = twilio_sim.twilio_signature(
                self.opts.auth_token, url, params)
        req = urllib.request.Request(actual, data=data, headers=headers,
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status, body = resp.status, resp.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            status, body = e.code, e.read().decode("utf-8", "replace")
        self.record(what=what, url=url, params=params, status=status,
                    body=body)
        if status != 200:
            self.failures.append(f"{what} {url}: HTTP {status}")
            return None
        self.documents.append({"what": what, "body": body})
        try:
            return ET.fromstring(body.encode("utf-8"))
        except ET.ParseError as e:
            self.failures.append(f"{what}: not XML: {e}")
            return None

    async def run(self):
        opts = self.opts
        url = opts.webhook
        doc = self.post(url, self.base_params(), "webhook")
        scenario = opts.scenario
        for _ in range(MAX_DOCUMENTS):
            if doc is None:
                break
            nxt = await self.follow(doc, url, scenario)
            if nxt is None:
                break
            doc, url = nxt
            scenario = opts.return_scenario or opts.scenario
        return self.summary()

    async def follow(self, doc, doc_url, scenario):
        """Plays one TwiML document; returns the next (doc, url) or None."""
        for verb in doc:
            self.verbs.append(verb.tag)
            if verb.tag == "Connect":
                stream = verb.find("Stream")
                if stream is None:
                    self.failures.append("<Connect> without <Stream>")
                    return None
                params = {p.get("name"): p.get("value")
                          for p in stream.findall("Parameter")}
                await self.stream(stream.get("url"), params, scenario)
                action = verb.get("action")
                if action is None:
                    continue
                url = urllib.parse.urljoin(doc_url, action)
                return self.post(url, self.base_params(), "action"), url
            if verb.tag == "Dial":
                action = verb.get("action")
                nouns = [n for n in verb if n.tag in ("Number", "Sip")]
                target = ((nouns[0].text if nouns else verb.text) or "").strip()
                self.record(what="dial", target=target,
                            caller_id=verb.get("callerId"),
                            timeout=verb.get("timeout"))
                status = self.opts.dial
                if status == "answered":
                    if nouns and nouns[0].get("url"):
                        await self.whisper(urllib.parse.urljoin(
                            doc_url, nouns[0].get("url")))
                    status = "completed"
                if action is None:
                    return None
                url = urllib.parse.urljoin(doc_url, action)
                params = dict(self.base_params(), DialCallStatus=status,
                              DialCallSid="CA" + secrets.token_hex(16))
                if status == "completed":
                    params["DialCallDuration"] = "42"
                return self.post(url, params, "dialed"), url
            if verb.tag == "Hangup":
                return None
            if verb.tag == "Say":
                self.record(what="say", text=verb.text,
                            language=verb.get("language"))
        return None

    async def whisper(self, url):
        params = dict(self.base_params(),
                      CallSid="CA" + secrets.token_hex(16),
                      ParentCallSid=self.call_sid, Direction="outbound-dial")
        doc = self.post(url, params, "whisper")
        if doc is None:
            return
        texts = [s.text or "" for s in doc.iter("Say")]
        langs = [s.get("language") for s in doc.iter("Say")]
        self.whispers.append({"text": "".join(texts),
                              "language": langs[0] if langs else None})

    async def stream(self, ws_url, params, scenario):
        opts = self.opts
        u = urllib.parse.urlsplit(ws_url)
        b = urllib.parse.urlsplit(opts.stream_base or opts.base)
        # the public host in Host (what Twilio signs), connected to --base
        # (or --stream-base: the load balancer sent it to another node)
        actual = urllib.parse.urlunsplit(
            ("wss" if b.scheme == "https" else "ws", u.netloc, u.path, "",
             ""))
        stream_sid = "MZ" + secrets.token_hex(16)
        argv = ["--url", actual, "--sign-url", ws_url,
                "--connect", f"{b.hostname}:{b.port or 80}",
                "--call-sid", self.call_sid, "--stream-sid", stream_sid,
                "--account-sid", opts.account_sid]
        if opts.auth_token:
            argv += ["--auth-token", opts.auth_token]
        if scenario:
            argv += ["--scenario", scenario]
        for k, v in params.items():
            argv += ["--param", f"{k}={v}"]
        sim_opts = twilio_sim.build_parser().parse_args(argv)
        sc = (twilio_sim.peer_scenario.load(scenario) if scenario
              else twilio_sim.peer_scenario.empty())
        call = twilio_sim.Call(sim_opts, self.call_sid, stream_sid, params,
                               sc, self.recorder,
                               twilio_sim.Printer(False))
        result = await call.run()
        self.record(what="stream", url=ws_url, stream_sid=stream_sid,
                    params=params, ok=result["ok"],
                    close=result.get("close"))
        if not result["ok"]:
            self.failures.append("stream " + stream_sid + ": "
                                 + "; ".join(result["failures"]))
        self.streams.append({"stream_sid": stream_sid, "params": params,
                             "ok": result["ok"], "close": result.get("close"),
                             "media_received": result["media_received"]})

    def summary(self):
        s = {"call_sid": self.call_sid, "ok": not self.failures,
             "failures": self.failures, "streams": self.streams,
             "whispers": self.whispers, "verbs": self.verbs,
             "documents": self.documents}
        self.recorder.write(self.call_sid, 0, "summary", s)
        return s


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", required=True,
                   help="where requests go: http://127.0.0.1:PORT")
    p.add_argument("--action-base",
                   help="where the requests after the stream go (another "
                   "node; default: --base)")
    p.add_argument("--stream-base",
                   help="where the Media Stream connects (another node; "
                   "default: --base)")
    p.add_argument("--webhook", required=True,
                   help="the voice webhook's public URL (signed as is)")
    p.add_argument("--auth-token")
    p.add_argument("--call-sid")
    p.add_argument("--account-sid", default="AC" + "0123456789abcdef" * 2)
    p.add_argument("--from", dest="from_", default="+819012345678")
    p.add_argument("--to", default="+81312345678")
    p.add_argument("--scenario", help="the first stream's caller side")
    p.add_argument("--return-scenario",
                   help="the streams after a transfer (default: --scenario)")
    p.add_argument("--dial", default="answered",
                   choices=["answered", "no-answer", "busy", "failed",
                            "canceled"],
                   help="how a transfer's <Dial> ends")
    p.add_argument("--record", metavar="FILE.jsonl")
    opts = p.parse_args(argv)
    result = asyncio.run(TwilioCall(opts).run())
    print(json.dumps(result, ensure_ascii=False))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
