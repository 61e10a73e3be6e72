# The benchmark at a tiny size (5 calls, 3 s), so that it cannot rot: it
# must build, run through nginx and lose no frame, dial in its campaign
# phase and carry events to every reader of the feed in its board phase
# (bench/run exits non-zero otherwise).  Its timings decide nothing here;
# `make bench` measures.

use strict;
use warnings;
use FindBin;
use Test::More tests => 3;

my $top = "$FindBin::Bin/..";
my $out = `cd $top && bench/run --tiny 2>&1`;

is($? >> 8, 0, 'bench/run --tiny ran through') or diag $out;
like($out, qr/lost/i, 'and printed its table') or diag $out;
like($out, qr/^board phase: .*^\s+D1 1 .* per reader [1-9]/ms,
     'with the board phase, whose readers got events') or diag $out;
