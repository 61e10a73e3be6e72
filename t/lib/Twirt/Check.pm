package Twirt::Check;

# A block's "--- check": Perl run once nginx is up.  The code is compiled
# by a sub that sees no lexical of any file (only its @_), in package main:
# a check sees the test file's globals (our $x, $main::x), never a module's
# private variables.

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(run_check check_sections);

sub _compile { return eval "package main; use utf8; no strict 'vars'; sub { $_[0] }" }

# the block's check, after $params (e.g. 'my ($r, $sid) = @_;'), run with
# @args; a check that does not compile or dies fails the block, saying why
sub run_check {
    my ($block, $params, @args) = @_;
    my $check = _compile("$params\n" . $block->check);
    if (!$check) {
        Test::More::fail($block->name . " - check compiles");
        Test::More::diag($@);
        return;
    }
    if (!eval { $check->(@args); 1 }) {
        Test::More::fail($block->name . " - check runs");
        Test::More::diag($@);
    }
}

# "--- check": run after the block's request
sub check_sections {
    Test::Nginx::Socket::add_response_body_check(sub {
        my ($block, $body, $req_idx, $repeated, $dry_run) = @_;
        return if $dry_run || !defined $block->check;
        run_check($block, '');
    });
}

1;
