#!/usr/bin/perl

# Self-test of the headless-browser driver (t/peers/browser.py through
# t/lib/Twirt/Browser.pm), no nginx needed: a fixture page and an
# EventSource endpoint served on 127.0.0.1 by a tiny Python server, and
# every command of the driver checked against them.  The call board's
# browser tests rely on it.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use Twirt::Browser;

BEGIN { Twirt::Browser::need_chromium() }

use Test::More;

my $started = time;
my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $dir = tempdir(CLEANUP => 1);
my $json = JSON::PP->new->utf8->canonical;

# -- the fixture server ------------------------------------------------------

spew("$dir/server.py", <<'PY');
import json, os, sys, threading, time
from http.server import ThreadingHTTPServer, SimpleHTTPRequestHandler

root, port, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
streams = []        # one per /events connection: what it was asked, sent


class Handler(SimpleHTTPRequestHandler):
    def __init__(self, *a, **kw):
        super().__init__(*a, directory=root, **kw)

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path.startswith("/events"):
            return self.events()
        if self.path == "/streams":
            with lock:
                body = json.dumps(streams).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        return super().do_GET()

    def events(self):
        # numbered events, resuming after Last-Event-ID
        last = self.headers.get("Last-Event-ID")
        n = int(last) + 1 if last and last.isdigit() else 1
        s = {"last_event_id": last, "first": n, "sent": None, "end": None}
        with lock:
            streams.append(s)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        try:
            self.wfile.write(b"retry: 100\n\n")
            for _ in range(3000):
                self.wfile.write(f"id: {n}\ndata: event {n}\n\n".encode())
                self.wfile.flush()
                s["sent"] = n
                n += 1
                time.sleep(0.05)       # the stream's pace
            s["end"] = "done"
        except OSError as e:
            s["end"] = type(e).__name__


srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
srv.daemon_threads = True
with open(ready + ".tmp", "w") as f:
    f.write(json.dumps({"port": srv.server_address[1]}))
os.rename(ready + ".tmp", ready)
srv.serve_forever()
PY

spew("$dir/index.html", <<'HTML');
<!doctype html>
<html lang="ja"><head><meta charset="utf-8"><title>twirt browser fixture</title>
<style>
  body { font: 16px sans-serif; margin: 20px; }
  #spacer { height: 1500px; }
</style></head>
<body>
<h1 id="title">通話ボード fixture</h1>
<img id="ext" src="http://example.com/x.png" alt="">
<p><input id="name"> <span id="echo"></span></p>
<p><input type="file" id="file"> <span id="flen">none</span>
   <span id="fhex"></span> <span id="fname"></span>
   changes: <span id="fchanges">0</span></p>
<p><button id="alert">alert</button></p>
<div id="spacer"></div>
<p><button id="btn">press</button> <span id="clicked">not yet</span></p>
<script>
  console.log('fixture loaded');
  const $ = id => document.getElementById(id);
  $('btn').addEventListener('click', e => {
    $('clicked').textContent = (e.isTrusted ? 'trusted' : 'synthetic')
      + ' click ' + e.clientX + ',' + e.clientY;
  });
  $('name').addEventListener('input', () => {
    $('echo').textContent = $('name').value;
  });
  $('file').addEventListener('change', async () => {
    $('fchanges').textContent = +$('fchanges').textContent + 1;
    const f = $('file').files[0];
    const bytes = new Uint8Array(await f.arrayBuffer());
    $('fname').textContent = f.name;
    $('fhex').textContent = Array.from(bytes,
      b => b.toString(16).padStart(2, '0')).join('');
    $('flen').textContent = bytes.length;
  });
  $('alert').addEventListener('click', () => {
    alert('xss-probe');
    $('alert').textContent = 'alerted';
  });
  window.got = []; window.errors = [];
  window.es = new EventSource('/events');
  es.onmessage = e => got.push(+e.lastEventId);
  es.onerror = () => errors.push({
    state: es.readyState, last: got.length ? got[got.length - 1] : null });
  setTimeout(() => { throw new Error('fixture uncaught'); }, 0);
</script>
</body></html>
HTML

my $server_pid = fork // die "fork: $!";
if ($server_pid == 0) {
    open STDOUT, '>', "$dir/server.out";
    open STDERR, '>', "$dir/server.err";
    { exec $python, "$dir/server.py", $dir,
           $ENV{TWIRT_BROWSER_TEST_PORT} || 0, "$dir/ready"; }
    POSIX::_exit(127);
}
END {
    local $?;
    if ($server_pid) { kill 'TERM', $server_pid; waitpid($server_pid, 0) }
}

my $deadline = time + 10;
until (-s "$dir/ready") {
    BAIL_OUT("the fixture server did not start: " . slurp("$dir/server.err"))
        if time > $deadline || waitpid($server_pid, POSIX::WNOHANG()) > 0;
    sleep 0.02;
}
my $port = $json->decode(slurp("$dir/ready"))->{port};
my $base = "http://127.0.0.1:$port";

# -- the browser ------------------------------------------------------------------

my $b = Twirt::Browser->new(timeout => 10);
my $profile = $b->user_data_dir;
ok(-d $profile, "the browser is up ($b->{info}{product}), profile $profile");

# goto, eval
is_deeply($b->goto("$base/index.html"), { url => "$base/index.html" },
          'goto: loaded');
is($b->eval('document.querySelector("#title").textContent'),
   '通話ボード fixture', 'eval: UTF-8 text');
is_deeply($b->eval('Promise.resolve([1, "二", {a: null}])'),
          [1, '二', { a => undef }], 'eval: a promise, awaited, by value');
ok(!eval { $b->eval('nosuchthing.x'); 1 }, 'eval: an exception dies');
like($@, qr/ReferenceError: nosuchthing is not defined/,
     'eval: with the message');

# wait: as soon as the condition holds, or until its deadline
$b->eval('setTimeout(() => { window.flag = "up" }, 300); 1');
my ($ok, $value, $elapsed) = $b->wait('window.flag', 5);
ok($ok, 'wait: the condition held');
is($value, 'up', 'wait: its value');
ok(defined $elapsed, "wait: says how long it waited (${elapsed}s)");
($ok, $value, $elapsed, my $error) = $b->wait('document.title == "x"', 0.3);
ok(!$ok, 'wait: a timeout is not ok');
ok($elapsed >= 0.3, "wait: not before its deadline (${elapsed}s)");
like($error, qr/timeout after 0\.3 s/, 'wait: the error says so');
is(JSON::PP::is_bool($value) ? 0 + $value : $value, 0,
   'wait: the last value (false)');
is_deeply(scalar $b->wait('[]'), [], 'wait: [] is truthy, as in JavaScript');

# click: a real, trusted mouse click, even below the fold
my $at = $b->click('#btn');
like($b->eval('document.querySelector("#clicked").textContent'),
     qr/^trusted click \d+,\d+$/, 'click: a trusted mouse event');
ok($at->{y} > 0 && $at->{y} < 900, "click: scrolled into view (y $at->{y})");
ok(!eval { $b->click('#nothing'); 1 }, 'click: no such element dies');
like($@, qr/no element matches #nothing/, 'click: and says so');

# type
$b->type('#name', 'こんにちは');
$b->type('#name', ' twirt');
is($b->eval('document.querySelector("#name").value'), 'こんにちは twirt',
   'type: the text, appended');
is($b->eval('document.querySelector("#echo").textContent'),
   'こんにちは twirt', 'type: input events fired');
$b->type('#name', '再', clear => 1);
is($b->eval('document.querySelector("#name").value'), '再',
   'type: clear => 1 replaces');

# files: bytes that are not UTF-8 (Shift_JIS あい), a Japanese name
my $sjis = "$dir/あ.txt";              # characters; the file system: UTF-8
utf8::encode(my $sjis_bytes = $sjis);
spew_raw($sjis_bytes, "\x82\xa0\x82\xa2");
$b->files('#file', $sjis);
$b->wait_ok('document.querySelector("#flen").textContent == "4"', 5,
            'files: the page read 4 bytes');
is($b->eval('document.querySelector("#fhex").textContent'), '82a082a2',
   'files: the very bytes');
is($b->eval('document.querySelector("#fname").textContent'), 'あ.txt',
   'files: the name');
is($b->eval('document.querySelector("#fchanges").textContent'), '1',
   'files: one change event');

# screenshot
my $shot = $b->screenshot("$dir/shot.png");
my $png = slurp("$dir/shot.png");
ok(length($png) > 1000 && $shot->{bytes} == length $png,
   "screenshot: written (${\ length $png} bytes)");
is(substr($png, 0, 8), "\x89PNG\r\n\x1a\n", 'screenshot: a PNG');
# (--window-size=1280,900 headless: a 1280x813 viewport, under the room
# the new headless mode keeps for a browser's toolbars)
is_deeply([unpack 'NN', substr($png, 16, 8)],
          $b->eval('[innerWidth, innerHeight]'),
          'screenshot: the whole viewport (' . join('x',
          unpack 'NN', substr($png, 16, 8)) . ')');

# dialogs: recorded, accepted, nothing hangs
$b->click('#alert');
$b->wait_ok('document.querySelector("#alert").textContent == "alerted"', 5,
            'dialogs: the alert did not hang the page');
is($b->eval('confirm("sure?")'), 1, 'dialogs: a confirm is accepted');
is_deeply([map { "$_->{type}:$_->{message}" } @{ $b->dialogs }],
          ['alert:xss-probe', 'confirm:sure?'], 'dialogs: both recorded');

# requests: the page, and example.com tried but never reached
$b->wait_ok('document.querySelector("#ext").complete', 5,
            'requests: the external image gave up');
is($b->eval('document.querySelector("#ext").naturalWidth'), 0,
   'requests: no external image');
my $urls = $b->requests;
ok((grep { $_ eq "$base/index.html" } @$urls), 'requests: the page');
my ($ext) = grep { $_->{url} =~ m{^http://example\.com/} }
            @{ $b->requests(detail => 1) };
ok($ext, 'requests: the external image was asked for');
is($ext->{status}, undef, 'requests: and got no response');
like($ext->{error} // '', qr/ERR_NAME_NOT_RESOLVED/,
     'requests: the name did not resolve');
my @away = grep { !m{^(?:http://127\.0\.0\.1:$port/|http://example\.com/
                      |data:|about:)}x } @$urls;
is_deeply(\@away, [], 'requests: nothing else');

# console: console.log, the uncaught exception, the failed load
my $console = $b->console;
ok((grep { $_->{level} eq 'log' && $_->{text} eq 'fixture loaded' }
    @$console), 'console: console.log');
ok((grep { $_->{level} eq 'error' && $_->{text} =~ /fixture uncaught/ }
    @$console), 'console: the uncaught exception');

# offline: new requests fail, until it is over
$b->offline(1);
like($b->eval('fetch("/streams").then(() => "fetched", e => "failed: " + e)'),
     qr/^failed: TypeError/, 'offline: a fetch fails');
$b->offline(0);
is($b->eval('fetch("/streams").then(() => "fetched", e => "failed: " + e)'),
   'fetched', 'offline: over');

# drop_sse: the EventSource reconnects and resumes after Last-Event-ID
$b->wait_ok('got.length >= 3', 5, 'sse: events arrive');
is($b->eval('errors.length'), 0, 'sse: no error so far');
my $drop = $b->drop_sse;
is_deeply($drop->{dropped}, ["$base/events"], 'drop_sse: the EventSource');
$b->wait_ok('errors.length == 1 && got.length > errors[0].last + 3', 5,
            'sse: reconnected, events again');
my $at_drop = $b->eval('errors[0]');
is($at_drop->{state}, 0, 'sse: the page saw CONNECTING, not CLOSED');
my $streams = $b->eval('fetch("/streams").then(r => r.json())');
is(scalar @$streams, 2, 'sse: two connections');
is($streams->[1]{last_event_id}, $at_drop->{last},
   "sse: the reconnection asked for Last-Event-ID $at_drop->{last}");
my $got = $b->eval('got');
is_deeply($got, [1 .. scalar @$got], 'sse: every event once, in order');

# drop_sse while offline: reconnection fails until the network is back
$b->offline(1);
$b->drop_sse;
$b->wait_ok('errors.length >= 3', 5, 'sse: offline, reconnections fail');
is($b->eval('es.readyState'), 0, 'sse: and the EventSource keeps trying');
my $n = $b->eval('got.length');
$b->offline(0);
$b->wait_ok("got.length > $n + 2", 5, 'sse: back online, events again');
$got = $b->eval('got');
is_deeply($got, [1 .. scalar @$got], 'sse: still every event once');

# close: no chromium process, no profile left
ok($b->close, 'close: the driver exited 0');
is(pgrep($profile), '', 'close: no chromium process left');
ok(!-e $profile, 'close: the profile is gone');

# a crashed browser: errors, not hangs; and cleanup on SIGTERM and on EOF
{
    my $c = Twirt::Browser->new(timeout => 5);
    kill 'KILL', $c->chromium_pid;
    my $t = time;
    ok(!eval { $c->eval('1 + 1'); 1 }, 'crash: eval fails');
    like($@, qr/browser is gone/, 'crash: the browser is gone, it says');
    ok(time - $t < 5, 'crash: at once');
    $c->close;
    is(pgrep($c->user_data_dir), '', 'crash: nothing left behind');

    my $d = Twirt::Browser->new;
    kill 'TERM', $d->driver_pid;
    $d->wait_exit(10);
    is(pgrep($d->user_data_dir), '', 'SIGTERM: no chromium process left');
    ok(!-e $d->user_data_dir, 'SIGTERM: no profile left');

    my $e = Twirt::Browser->new;
    CORE::close($e->{in});
    is($e->wait_exit(10), 0, 'stdin EOF: the driver exits 0');
    is(pgrep($e->user_data_dir), '', 'stdin EOF: no chromium process left');
}

done_testing;

# -- helpers -------------------------------------------------------------------

sub pgrep {
    my ($pattern) = @_;
    open my $fh, '-|', 'pgrep', '-f', '--', $pattern or die "pgrep: $!";
    my @pids = map { chomp; $_ } <$fh>;
    close $fh;
    return join ' ', @pids;
}

sub spew {
    my ($file, $text) = @_;
    open my $fh, '>:utf8', $file or die "$file: $!";
    print $fh $text;
    close $fh;
}

sub spew_raw {
    my ($file, $bytes) = @_;
    open my $fh, '>:raw', $file or die "$file: $!";
    print $fh $bytes;
    close $fh;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or return '';
    local $/;
    return scalar <$fh>;
}
