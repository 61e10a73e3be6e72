#!/usr/bin/perl

# Self-test of the WebSocket test peers in t/peers/ (no nginx needed):
# the Realtime simulator and the Twilio simulator, checked against each
# other through a tiny reference bridge. Every other suite relies on them.

use strict;
use warnings;
use FindBin;

my $python = '/usr/bin/python3';

# The peers need Debian's python3-websockets, which only the system
# interpreter sees; a missing package is a broken test setup, not a skip.
if (system($python, '-c', 'import websockets') != 0) {
    print "Bail out! $python cannot import websockets "
        . "(apt-get install python3-websockets)\n";
    exit 255;
}

exec $python, "$FindBin::Bin/peers/selftest.py"
    or die "cannot exec $python: $!\n";
