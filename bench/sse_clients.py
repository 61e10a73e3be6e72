#!/usr/bin/python3
"""sse_clients: N browsers' worth of Server-Sent Events readers, for the
board phase of bench/run.

    sse_clients.py --url http://127.0.0.1:8080/board/events --clients 50 \\
        --ready-file F --json out.json

One thread, selectors, the standard library only: each client sends the
GET a browser's EventSource sends (HTTP/1.1, Accept: text/event-stream),
decodes the chunked body and the event stream as the HTML spec says (lines
ending in LF, CRLF or CR; an event is dispatched at a blank line when it
has data), and counts what it gets.  The ready file is written once every
client has had its response's headers.  SIGTERM or SIGINT stops it; it
then writes, per client, the events, their bytes, whether its ids only grew,
and its own CPU time (--json).  Only loopback addresses are accepted."""

import argparse
import json
import os
import resource
import selectors
import signal
import socket
import sys
import time
import urllib.parse


class Client:
    def __init__(self, index):
        self.index = index
        self.sock = None
        self.buf = b""          # the response as received, not yet decoded
        self.head = True        # before the end of the headers
        self.status = None
        self.chunked = False
        self.chunk_left = 0     # bytes of the current chunk not yet read
        self.chunk_crlf = False # the CRLF after a chunk is still due
        self.text = b""         # the event stream, not yet a whole line
        self.data = False       # the event being read has a data line
        self.payload = []       # its data lines (the first client only)
        self.types = {}         # the first client's events, by JSON "type"
        self.event = None       # its event type
        self.last_id = None
        self.events = 0         # dispatched events of the default type
        self.others = {}        # events of other types, by type
        self.comments = 0
        self.bytes = 0
        self.out_of_order = 0   # an id not greater than the one before
        self.closed = None      # why the server ended it, if it did
        self.first = None       # time of the first event

    def fail(self, why):
        if self.closed is None:
            self.closed = why


def stream_id(s):
    """A Redis stream id "ms-seq" as a pair, or None."""
    ms, _, seq = s.partition("-")
    try:
        return (int(ms), int(seq or 0))
    except ValueError:
        return None


def field(c, line):
    if not line:
        if c.data:
            if c.event in (None, "message"):
                c.events += 1
                if c.first is None:
                    c.first = time.time()
                if c.index == 0:
                    kind(c)
            else:
                c.others[c.event] = c.others.get(c.event, 0) + 1
        c.data = False
        c.event = None
        c.payload = []
        return
    if line.startswith(b":"):
        c.comments += 1
        return
    name, _, value = line.partition(b":")
    if value.startswith(b" "):
        value = value[1:]
    if name == b"data":
        c.data = True
        if c.index == 0:
            c.payload.append(value)
    elif name == b"event":
        c.event = value.decode("utf-8", "replace")
    elif name == b"id":
        i = stream_id(value.decode("ascii", "replace"))
        if i is not None:
            if c.last_id is not None and i <= c.last_id:
                c.out_of_order += 1
            c.last_id = i


def kind(c):
    """What the first client got, by the events' "type": the table shows
    what the feed carried (JSON parsing for one client only: cheap)."""
    try:
        t = str(json.loads(b"\n".join(c.payload)).get("type"))
    except (ValueError, AttributeError):
        t = "not JSON"
    c.types[t] = c.types.get(t, 0) + 1


def text(c, b):
    """Event stream bytes: whole lines go to field()."""
    c.text += b
    while True:
        i = min((j for j in (c.text.find(b"\n"), c.text.find(b"\r"))
                 if j >= 0), default=-1)
        if i < 0:
            return
        # a CR at the very end may be the first half of a CRLF
        if c.text[i:i + 1] == b"\r" and i + 1 == len(c.text):
            return
        line = c.text[:i]
        skip = 2 if c.text[i:i + 2] == b"\r\n" else 1
        c.text = c.text[i + skip:]
        field(c, line)


def body(c):
    """Decodes what is in c.buf after the headers."""
    if not c.chunked:
        text(c, c.buf)
        c.buf = b""
        return
    while c.buf:
        if c.chunk_crlf:
            if len(c.buf) < 2:
                return
            if c.buf[:2] != b"\r\n":
                c.fail("bad chunk")
                return
            c.buf = c.buf[2:]
            c.chunk_crlf = False
        if c.chunk_left:
            part = c.buf[:c.chunk_left]
            c.buf = c.buf[len(part):]
            c.chunk_left -= len(part)
            text(c, part)
            if c.chunk_left == 0:
                c.chunk_crlf = True
            continue
        i = c.buf.find(b"\r\n")
        if i < 0:
            return
        try:
            size = int(c.buf[:i].split(b";")[0], 16)
        except ValueError:
            c.fail("bad chunk size")
            return
        c.buf = c.buf[i + 2:]
        if size == 0:
            c.fail("the server ended the response")
            return
        c.chunk_left = size


def received(c, b):
    c.bytes += len(b)
    c.buf += b
    if c.head:
        i = c.buf.find(b"\r\n\r\n")
        if i < 0:
            if len(c.buf) > 16384:
                c.fail("headers too long")
            return
        lines = c.buf[:i].decode("latin-1").split("\r\n")
        c.buf = c.buf[i + 4:]
        c.head = False
        parts = lines[0].split(" ")
        c.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() \
            else 0
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip().lower()
        c.chunked = headers.get("transfer-encoding") == "chunked"
        if c.status != 200:
            c.fail("status {}".format(c.status))
            return
        if not headers.get("content-type", "").startswith(
                "text/event-stream"):
            c.fail("not text/event-stream")
            return
    body(c)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--ready-file")
    ap.add_argument("--json")
    ap.add_argument("--max-time", type=float, default=3600)
    ap.add_argument("--connect-timeout", type=float, default=10)
    a = ap.parse_args()

    u = urllib.parse.urlsplit(a.url)
    if u.scheme != "http" or u.hostname not in ("127.0.0.1", "::1",
                                                "localhost"):
        sys.exit("sse_clients: only http:// to a loopback address")
    port = u.port or 80
    target = (u.path or "/") + ("?" + u.query if u.query else "")
    request = ("GET {} HTTP/1.1\r\nHost: {}:{}\r\n"
               "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
               "User-Agent: twirt-bench-sse\r\n\r\n").format(
                   target, u.hostname, port).encode()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    sel = selectors.DefaultSelector()
    clients = []
    started = time.time()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)

    for i in range(a.clients):
        c = Client(i)
        try:
            c.sock = socket.create_connection((u.hostname, port),
                                              timeout=a.connect_timeout)
            c.sock.sendall(request)
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
        except OSError as e:
            c.fail("connect: {}".format(e))
            c.sock = None
        clients.append(c)

    ready = False
    deadline = started + a.max_time

    while not stop and time.time() < deadline:
        if not ready and all(not c.head or c.closed for c in clients):
            ready = True
            if a.ready_file:
                with open(a.ready_file + ".tmp", "w") as f:
                    f.write("{}\n".format(sum(
                        1 for c in clients if c.closed is None)))
                os.rename(a.ready_file + ".tmp", a.ready_file)
        if not sel.get_map():
            time.sleep(0.1)
            continue
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            try:
                b = c.sock.recv(262144)
            except BlockingIOError:
                continue
            except OSError as e:
                b = b""
                c.fail("recv: {}".format(e))
            if not b:
                c.fail("the server closed the connection")
            else:
                received(c, b)
            if c.closed is not None:
                sel.unregister(c.sock)
                c.sock.close()
                c.sock = None
        if not ready and time.time() > started + a.connect_timeout:
            for c in clients:
                if c.head:
                    c.fail("no response headers in time")

    wall = time.time() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_ms = ((cpu1.ru_utime - cpu0.ru_utime)
              + (cpu1.ru_stime - cpu0.ru_stime)) * 1000

    out = {"tool": "sse_clients", "clients": a.clients, "wall_s": wall,
           "connected": sum(1 for c in clients if c.status == 200),
           "open_at_end": sum(1 for c in clients if c.closed is None),
           "events": [c.events for c in clients],
           "other_events": [c.others for c in clients],
           "first_client_types": clients[0].types if clients else {},
           "comments": [c.comments for c in clients],
           "bytes": [c.bytes for c in clients],
           "out_of_order": sum(c.out_of_order for c in clients),
           "closed": [c.closed for c in clients if c.closed is not None],
           "cpu_ms": cpu_ms}

    print("sse_clients: {} clients, {} connected, {} still open; events per "
          "client min {} max {}; {} out of order; cpu {:.0f} ms in {:.1f} s"
          .format(a.clients, out["connected"], out["open_at_end"],
                  min(out["events"], default=0),
                  max(out["events"], default=0), out["out_of_order"],
                  cpu_ms, wall), file=sys.stderr)
    print("sse_clients: the first client's events by type: {}".format(
        json.dumps(out["first_client_types"], sort_keys=True)),
        file=sys.stderr)
    for why in sorted(set(out["closed"])):
        print("sse_clients: {} ended: {}".format(out["closed"].count(why),
                                                 why), file=sys.stderr)

    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f)
            f.write("\n")

    for c in clients:
        if c.sock:
            c.sock.close()

    return 0 if out["connected"] == a.clients else 1


if __name__ == "__main__":
    sys.exit(main())
