# The benchmark at a tiny size (5 calls, 3 s), so that it cannot rot: it
# must build, run through nginx and lose no frame, dial in its campaign
# phase and carry events to every reader of the feed in its board phase
# (bench/run exits non-zero otherwise); the kernel floor (relay_floor,
# the marks' echoes at its sink) and both shapes with TLS on both legs
# (the calls-per-core search at one level) must run through and lose
# nothing.  Its timings decide nothing here; `make bench` measures.

use strict;
use warnings;
use FindBin;
use Test::More tests => 15;

my $top = "$FindBin::Bin/..";
my $out = `cd $top && bench/run --tiny 2>&1`;

is($? >> 8, 0, 'bench/run --tiny ran through') or diag $out;
like($out, qr/lost/i, 'and printed its table') or diag $out;
like($out, qr/^board phase: .*^\s+D1 1 .* per reader [1-9]/ms,
     'with the board phase, whose readers got events') or diag $out;

# the calls-per-core headline, both shapes with TLS (what it says is a
# measurement: not asserted)
like($out, qr/^calls per core \(.*TLS.*\): echo \d+\+?, conversation \d+\+?$/m,
     'the calls-per-core headline, both shapes with TLS') or diag $out;

# the kernel floor ran next to nginx, and nginx's CPU is a ratio to it
like($out, qr/^\s+relay 5 .*$/m, 'the kernel floor\'s row') or diag $out;
like($out, qr/^\s+echo 5 +\S+ +\S+ +0 +[\d.]+ +[\d.]+x /m,
     'the echo row: nothing lost, CPU as a ratio to the kernel floor')
    or diag $out;

# the kernel floor receives the marks' echoes as nginx does for twirt (its
# sink wired to the load tool's): the last column, marks, not zero, and
# as many as twirt's (both are a mark a delta in this shape, give or take)
my ($twirt_marks) = $out =~ /^\s+echo 5 .* (\d+)$/m;
my ($floor_marks) = $out =~ /^\s+relay 5 .* (\d+)$/m;
ok(($floor_marks // 0) > 0, 'the kernel floor received marks')
    or diag $out;
ok(($floor_marks // 0) > ($twirt_marks // 0) / 2,
   'about as many as twirt did') or diag $out;

# bad options are refused before anything runs
for my $bad (['--kinds', 'nope'], ['--cpc-shapes', 'nope'],
             ['--interface', 'nope'])
{
    my $o = `cd $top && bench/run --tiny @$bad 2>&1`;
    is($? >> 8, 2, "bench/run @$bad is refused") or diag $o;
}

my $o = `$top/bench/twilio_load --url ws://127.0.0.1:9/x --shape nope 2>&1`;
is($? >> 8, 2, 'twilio_load --shape nope is refused') or diag $o;

# TLS verification is real: a server whose certificate the load tool's CA
# did not sign is refused at the handshake, and no call is set up

my $dir = "/tmp/twirt-bench-t.$$";
system("$top/util/certs $dir >/dev/null") == 0 or die "util/certs failed";

my $pid = fork // die "fork: $!";
if ($pid == 0) {
    open(STDERR, '>', "$dir/echo.log");
    exec("$top/bench/realtime_echo", '--listen', '127.0.0.1:0',
         '--ready-file', "$dir/port", '--tls-cert', "$dir/localhost.crt",
         '--tls-key', "$dir/localhost.key", '--max-time', '60',
         '--json', "$dir/echo.json");
    exit 127;
}

# the port file is written once it listens: polled, bounded
for (1 .. 100) {
    last if -s "$dir/port";
    select(undef, undef, undef, 0.05);
}
chomp(my $port = `cat $dir/port 2>/dev/null` || '');

$o = `$top/bench/twilio_load --url wss://127.0.0.1:$port/v1/realtime --direct --calls 1 --duration 0.2 --grace 0.2 --ca $dir/selfsigned.crt 2>&1`;
my $rc = $? >> 8;
like($o, qr/TLS handshake failed: certificate verify failed/,
     'a certificate the CA did not sign fails the handshake') or diag $o;
is($rc, 1, 'and the run fails') or diag $o;

$o = `$top/bench/twilio_load --url wss://127.0.0.1:$port/v1/realtime --direct --shape echo --calls 1 --duration 0.2 --ca $dir/ca.crt 2>&1`;
is($? >> 8, 0, 'the CA that signed it: the call goes through') or diag $o;

kill 'TERM', $pid;
waitpid($pid, 0);
system("rm -rf $dir");
