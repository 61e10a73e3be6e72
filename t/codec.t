# The frame codec's unit tests (test/unit/ws_frame_test.c, TAP), built by
# the test command; then a bounded libFuzzer run of its parser.

use strict;
use warnings;
use FindBin;

my $top = "$FindBin::Bin/..";
my $build = $ENV{TWIRT_BUILD_DIR} || "$top/build";

system('make', '-s', '-C', $top, "BUILD_DIR=$build", "$build/ws_frame_test") == 0
    or die "cannot build the codec unit tests\n";

exec "$build/ws_frame_test" or die "exec: $!";
