# The benchmark at a tiny size (5 calls, 3 s), so that it cannot rot: it
# must build, run through nginx and lose no frame, dial in its campaign
# phase and carry events to every reader of the feed in its board phase
# (bench/run exits non-zero otherwise); the kernel floor (relay_floor) and
# both shapes with TLS on both legs (the calls-per-core search at one
# level) must run through and lose nothing.  Its timings decide nothing here;
# `make bench` measures.

use strict;
use warnings;
use FindBin;
use Test::More tests => 6;

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
