#!/usr/bin/python3
"""A tool backend for twirt tests: the HTTP service a gateway calls when
the model calls a tool. Standard library only.

    /usr/bin/python3 t/peers/tool_backend.py --listen 127.0.0.1:0 \
        --secret S --record /tmp/tools.jsonl --ready-file /tmp/tools.ready

Every request is a POST with a JSON body {call_sid, stream_sid, agent,
name, call_id, arguments, parameters} signed with
X-Twirt-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>.
What it answers depends on the tool name (t/peers/README.md, "tool_backend.py").
"""

import argparse
import hashlib
import hmac
import json
import os
import select
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1 << 20          # requests larger than this are refused (413)
HUGE_BYTES = 1 << 20        # the `huge` tool's answer


def verify(secret, header, body, now, max_skew=300):
    """True when `header` is a valid X-Twirt-Signature for `body`."""
    fields = dict(p.split("=", 1) for p in (header or "").split(",")
                  if "=" in p)
    t, v1 = fields.get("t", ""), fields.get("v1", "")
    if not t.isdigit() or abs(now - int(t)) > max_skew:
        return False
    mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256)
    return hmac.compare_digest(mac.hexdigest(), v1)


def sign(secret, body, t=None):
    """The header value a gateway sends (used by the self-test)."""
    t = str(int(time.time()) if t is None else t)
    mac = hmac.new(secret.encode(), t.encode() + b"." + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


class Recorder:
    def __init__(self, path):
        self.f = open(path, "a", encoding="utf-8") if path else None
        self.lock = threading.Lock()

    def write(self, line):
        if self.f is None:
            return
        with self.lock:
            self.f.write(json.dumps(line, ensure_ascii=False) + "\n")
            self.f.flush()


def json_bytes(value):
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"       # keep-alive; every answer has a length
    server_version = "twirt-tool-backend/1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.answer(405, json_bytes({"error": "POST only"}))

    def do_POST(self):
        srv = self.server
        length = self.headers.get("Content-Length")
        rec = {"t": round(time.time(), 3), "path": self.path, "name": None,
               "call_id": None, "call_sid": None, "arguments": None,
               "parameters": None, "signature_ok": False, "status_sent": None,
               "bytes_sent": 0, "client_closed": False, "headers": {
                   "content-type": self.headers.get("Content-Type"),
                   "user-agent": self.headers.get("User-Agent"),
                   "x-twirt-signature": "X-Twirt-Signature" in self.headers}}
        if length is None or not length.isdigit() \
                or int(length) > MAX_BODY:
            self.close_connection = True
            rec["status_sent"] = 411 if length is None else 413
            rec["bytes_sent"] = self.answer(rec["status_sent"], json_bytes(
                {"error": "a Content-Length up to 1 MiB is required"}))
            srv.recorder.write(rec)
            return
        body = self.rfile.read(int(length))
        rec["signature_ok"] = verify(srv.secret,
                                     self.headers.get("X-Twirt-Signature"),
                                     body, time.time(), srv.max_skew)
        try:
            req = json.loads(body.decode("utf-8"))
        except ValueError:
            req = None
        if isinstance(req, dict):
            for k in ("name", "call_id", "call_sid", "arguments",
                      "parameters"):
                rec[k] = req.get(k)
            rec["stream_sid"] = req.get("stream_sid")
            rec["agent"] = req.get("agent")
        if not rec["signature_ok"]:
            status, out, ctype = 401, {"error": "bad signature"}, None
        elif not isinstance(req, dict) or not isinstance(req.get("name"),
                                                           str):
            status, out, ctype = 400, {"error": "body is not a tool call"}, \
                None
        else:
            status, out, ctype = self.behave(req, rec)
            if status is None:          # hang: nothing sent
                return
        if ctype is None:
            data, ctype = json_bytes(out), "application/json"
        else:
            data = out
        rec["status_sent"] = status
        rec["bytes_sent"] = self.answer(status, data, ctype)
        srv.recorder.write(rec)

    def behave(self, req, rec):
        name = req["name"]
        args = req.get("arguments")
        a = args if isinstance(args, dict) else {}
        if name == "slow":
            delay = a.get("delay_ms", 3000)
            time.sleep((delay if isinstance(delay, (int, float)) else 3000)
                       / 1000)
            return 200, {"ok": True, "name": name, "slept_ms": delay}, None
        if name == "fail500":
            return 500, {"error": {"code": "backend_failed",
                                   "message": "予約システムに接続できません"}}, \
                None
        if name == "hang":
            self.wait_for_client_close(rec)
            return None, None, None
        if name == "huge":
            head = json_bytes({"ok": True, "name": name, "padding": ""})
            pad = HUGE_BYTES - len(head)
            data = head[:-2] + b"x" * pad + b'"}'
            return 200, data, "application/json"
        if name == "text":
            return 200, ("ご予約は12月3日15時です。確認番号はA-1234です。"
                         .encode("utf-8")), "text/plain; charset=utf-8"
        if name == "book_appointment":
            return 200, {"booked": True, "date": a.get("date"),
                         "time": a.get("time"), "name": a.get("name"),
                         "confirmation": "A-1234",
                         "message": "予約を承りました"}, None
        return 200, {"ok": True, "name": name, "echo": args,
                     "call_id": req.get("call_id")}, None

    def wait_for_client_close(self, rec):
        """Never answer; return once the client has closed the connection
        (EOF or reset), recording when, so a test can prove a cancel."""
        sock = self.connection
        self.close_connection = True
        # A first line as the request arrives, so a test can wait for it.
        self.server.recorder.write(dict(rec, pending=True))
        while True:
            r, _, _ = select.select([sock], [], [], 1.0)
            if not r:
                continue
            try:
                if sock.recv(4096, 0) == b"":
                    break
            except OSError:
                break
        rec["client_closed"] = True
        rec["closed_at"] = round(time.time(), 3)
        rec["pending"] = False
        self.server.recorder.write(rec)

    def answer(self, status, data, ctype="application/json"):
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            return 0
        return len(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def parse_listen(value):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError("expected HOST:PORT")
    return host.strip("[]"), int(port)


def main(argv=None):
    p = argparse.ArgumentParser(description="twirt test tool backend")
    p.add_argument("--listen", type=parse_listen, required=True,
                   metavar="HOST:PORT", help="port 0 picks a free port")
    p.add_argument("--secret", required=True)
    p.add_argument("--record", metavar="FILE.jsonl")
    p.add_argument("--max-skew", type=int, default=300,
                   help="seconds a signature's timestamp may be off")
    p.add_argument("--ready-file", help='written as {"port": N, "pid": P}')
    args = p.parse_args(argv)
    srv = Server(args.listen, Handler)
    srv.secret = args.secret
    srv.max_skew = args.max_skew
    srv.recorder = Recorder(args.record)
    port = srv.server_address[1]
    info = {"port": port, "url": f"http://{args.listen[0]}:{port}/",
            "pid": os.getpid()}
    if args.ready_file:
        tmp = f"{args.ready_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(json.dumps(info) + "\n")
        os.replace(tmp, args.ready_file)
    print(f"tool_backend: listening on {info['url']}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    import signal
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.exit(main())
