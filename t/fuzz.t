# Short, bounded libFuzzer runs of the frame parser and of the JSON
# scanner against jansson (make fuzz runs the
# long ones).  Fails on any crash, sanitizer report or leak.

use strict;
use warnings;
use FindBin;
use Test::More tests => 2;

my $top = "$FindBin::Bin/..";
my $time = $ENV{TWIRT_FUZZ_SECONDS} || 10;

my $out = `make -s -C $top fuzz-smoke FUZZ_SMOKE_TIME=$time 2>&1`;
my $rc = $? >> 8;

is($rc, 0, "the parsers survive $time s of fuzzing each") or diag $out;
like($out, qr/stat::number_of_executed_units:\s*(\d+)/,
     'libFuzzer ran') or diag $out;
