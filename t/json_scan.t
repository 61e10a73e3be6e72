# The audio path's JSON scanner: its unit tests (TAP), built by the test
# command; t/fuzz.t runs it against jansson under libFuzzer.

use strict;
use warnings;
use FindBin;

my $top = "$FindBin::Bin/..";
my $build = $ENV{TWIRT_BUILD_DIR} || "$top/build";

system('make', '-s', '-C', $top, "BUILD_DIR=$build", "$build/json_scan_test") == 0
    or die "cannot build the JSON scanner's unit tests\n";

exec "$build/json_scan_test" or die "exec: $!";
