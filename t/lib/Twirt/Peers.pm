package Twirt::Peers;

# The test peers (t/peers, built on Python's websockets) from Test::Nginx
# suites: one Realtime simulator per test file, and a simulated Twilio
# call per block, run from a response body check once nginx is up.
#
# A block that places a call has:
#   --- twilio
#   --scenario ja-booking --param company=ACME     (twilio_sim.py options)
#   --- check
#   is($call->{media_received}, 95);               (Perl, Test::More)
# (--- no_sim: the call never reaches a simulator, do not wait for it;
#  --- during: lines "FRAMES: perl code", run once the Twilio peer has sent
#  that many media frames: a fault in the middle of a call;
#  --- before_call: perl code run once nginx is up, before the call is
#  placed: wait for a condition, e.g. a warm pool filled)
# where the check sees $call (the Twilio peer's summary), $twilio (all its
# records), $sim (the simulator's records of this call's connection, in
# order) and $sim_summary.  Each call gets a unique calltag parameter, so
# `[calltag:{{calltag}}]` in twirt_instructions ties the two records.

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Test::More;

our @EXPORT = qw(sim_start sim_stop sim_records twilio_call
                 tool_backend_start twilio_rest_start
                 place_calls_from_blocks twirt_events error_log_text
                 http_post http_get_text http_json log_wait nginx_reload
                 utterances free_port until_true file_text);

my $top = "$ENV{PWD}";
my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my @sims;
my $json = JSON::PP->new->utf8;
my $seq = 0;

for my $dir (__FILE__ =~ m{^(.*)/t/lib/Twirt/Peers\.pm$}) {
    $top = $dir;
}

# starts one of t/peers/ on a free port; returns { port, record, pid, dir }
sub _peer_start {
    my ($script, @args) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $pid = fork // die "fork: $!";

    if ($pid == 0) {
        open STDOUT, '>', "$dir/stdout";
        open STDERR, '>', "$dir/stderr";
        { exec $python, "$top/t/peers/$script", '--listen',
               '127.0.0.1:0', '--ready-file', "$dir/ready", '--record',
               "$dir/record.jsonl", @args; }
        POSIX::_exit(127);
    }

    my $deadline = time + 15;
    until (-s "$dir/ready") {
        die "$script did not start: " . _slurp("$dir/stderr")
            if time > $deadline || waitpid($pid, POSIX::WNOHANG()) == $pid;
        sleep 0.05;
    }

    my $info = $json->decode(_slurp("$dir/ready"));
    my $sim = { port => $info->{port}, pid => $pid, dir => $dir,
                record => "$dir/record.jsonl" };
    push @sims, $sim;
    return $sim;
}

# the Realtime simulator; returns { port, record, pid, dir }
sub sim_start { return _peer_start('realtime_sim.py', @_) }

# the tool backend (its records are read with sim_records)
sub tool_backend_start { return _peer_start('tool_backend.py', @_) }

# the stand-in for Twilio's REST API (its records are read with
# sim_records)
sub twilio_rest_start { return _peer_start('twilio_rest.py', @_) }

sub sim_stop {
    my ($sim) = @_;
    return unless $sim->{pid};
    kill 'TERM', $sim->{pid};
    waitpid($sim->{pid}, 0);
    $sim->{pid} = undef;
}

END { sim_stop($_) for @sims }

# every record of the simulator, decoded
sub sim_records {
    my ($sim) = @_;
    my @r;
    open my $fh, '<', $sim->{record} or return [];
    while (my $line = <$fh>) {
        my $r = eval { $json->decode($line) } or next;
        push @r, $r;
    }
    return \@r;
}

# runs twilio_sim.py to the end; returns (exit code, records, output).
# $during: [ [frames, code], ... ]: code runs once the peer has sent that
# many media frames (a fault in the middle of a call).
sub twilio_call {
    my ($args, $during) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $pid = open my $out_fh, '-|',
        "$python $top/t/peers/twilio_sim.py --record $dir/call.jsonl $args 2>&1"
        or die "twilio_sim: $!";

    for my $step (@{ $during // [] }) {
        my ($frames, $code) = @$step;
        my $deadline = time + 120;
        while (_media_sent("$dir/call.jsonl") < $frames) {
            last if time > $deadline || waitpid($pid, POSIX::WNOHANG()) == $pid;
            sleep 0.02;
        }
        $code->();
    }

    local $/;
    my $out = <$out_fh>;
    close $out_fh;
    my $rc = $? >> 8;
    my @r;
    if (open my $fh, '<', "$dir/call.jsonl") {
        local $/ = "\n";
        while (my $line = <$fh>) {
            my $r = eval { $json->decode($line) } or next;
            push @r, $r;
        }
    }
    return ($rc, \@r, $out // '');
}

sub _media_sent {
    my ($file) = @_;
    open my $fh, '<', $file or return 0;
    my $n = 0;
    while (my $line = <$fh>) {
        $n++ if $line =~ /"dir": "out", "msg": \{"event": "media"/;
    }
    return $n;
}

# the connection, of any of the simulators, whose session has the calltag
sub _sim_conn {
    my ($sims, $tag) = @_;
    my $deadline = time + 10;
    while (1) {
        for my $sim (@$sims) {
            my $records = sim_records($sim);
            my ($note) = grep { ($_->{dir} // '') eq 'note'
                                && ($_->{calltag} // '') eq $tag } @$records;
            next unless $note;
            my @mine = grep { ($_->{conn} // -1) == $note->{conn} } @$records;
            # the connection's summary comes when it closes
            return \@mine if grep { $_->{dir} eq 'summary' } @mine
                              or time > $deadline;
        }
        return [] if time > $deadline;
        sleep 0.05;
    }
}

# installs the response body check that places each block's call
sub place_calls_from_blocks {
    my (@sims) = @_;

    Test::Nginx::Socket::add_response_body_check(sub {
        my ($block, $body, $req_idx, $repeated, $dry_run) = @_;
        return if $dry_run || !defined $block->twilio;

        my $args = $block->twilio;
        $args =~ s/\s+/ /g;
        $args =~ s/\$(TEST_NGINX_\w+)/$ENV{$1} \/\/ ''/ge;
        my $tag = "t$$-" . ++$seq;
        my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
                   || 1984;
        my $url = "ws://127.0.0.1:$port/twilio/media";
        $url = $1 if $args =~ s/--url\s+(\S+)//;

        my $tagarg = $args =~ /--calls/ ? '' : "--param calltag=$tag";
        my @during;
        for my $line (split /\n/, $block->during // '') {
            next unless $line =~ /^\s*(\d+)\s*:\s*(.+)$/;
            my $code = eval "package main; sub { $2 }" or die "during: $@";
            push @during, [$1, $code];
        }

        if (defined $block->before_call) {
            my $code = eval "package main; no strict 'vars'; sub { "
                            . $block->before_call . "\n}"
                       or die "before_call: $@";
            $code->();
        }

        my ($rc, $twilio, $out) = twilio_call("--url $url $tagarg $args",
                                              \@during);
        my ($call) = grep { $_->{dir} eq 'summary' } @$twilio;
        $call //= {};
        my $simrec = (@sims && $block->twilio !~ /--calls/
                      && !defined $block->no_sim)
                     ? _sim_conn(\@sims, $tag) : [];
        my ($sim_summary) = grep { $_->{dir} eq 'summary' } @$simrec;

        my $expect = $block->twilio_exit // 0;
        is($rc, $expect, $block->name . " - twilio peer exit $expect")
            or diag $out;

        return unless defined $block->check;

        my $code = "package main; use utf8; no strict 'vars'; "
                   . "my (\$call, \$twilio, \$sim, \$sim_summary) = \@_;\n"
                   . $block->check;
        my $check = eval "sub { $code }";
        if (!$check) {
            fail($block->name . " - check compiles");
            diag($@);
            return;
        }

        if (!eval { $check->($call, $twilio, $simrec, $sim_summary // {}); 1 })
        {
            fail($block->name . " - check runs");
            diag($@);
        }
    });
}

# a form POST to the test nginx, as Twilio makes them: (status, body)
# a JSON API request (a reference body is sent as JSON, a string as it is,
# with $o{type}; $o{port}, $o{headers}): (status, decoded JSON or undef,
# raw body, raw response)
sub http_json {
    my ($method, $path, $body, %o) = @_;
    require IO::Socket::INET;
    my $port = $o{port} || $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT}
               || 1984;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Timeout => 20) or return (0, undef, '');
    $body = $json->encode($body) if ref $body;
    utf8::encode($body) if defined $body && utf8::is_utf8($body);
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "$_: $o{headers}{$_}\r\n" for sort keys %{ $o{headers} // {} };
    if (defined $body) {
        $req .= "Content-Type: " . ($o{type} // 'application/json') . "\r\n"
              . "Content-Length: " . length($body) . "\r\n";
    }
    print $sock $req . "\r\n" . ($body // '');
    local $/;
    my $resp = <$sock> // '';
    my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($text) = $resp =~ m{\r\n\r\n(.*)$}s;
    my $decoded = eval { $json->decode($text // '') };
    return ($status // 0, $decoded, $text // '', $resp);
}

sub http_post {
    my ($path, $form) = @_;
    return _http("POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/x-www-form-urlencoded\r\n"
        . "Content-Length: " . length($form) . "\r\nConnection: close\r\n\r\n"
        . $form);
}

# a GET of the test nginx: (status, body)
sub http_get_text {
    my ($path) = @_;
    return _http("GET $path HTTP/1.1\r\nHost: localhost\r\n"
                 . "Connection: close\r\n\r\n");
}

sub _http {
    my ($request) = @_;
    require IO::Socket::INET;
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Timeout => 5) or return (0, '');
    print $sock $request;
    local $/;
    my $resp = <$sock> // '';
    my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($body) = $resp =~ m{\r\n\r\n(.*)$}s;
    return ($status // 0, $body // '');
}

# the error log of the running test nginx
sub error_log_text {
    my $root = $ENV{TEST_NGINX_SERVROOT} || "$top/t/servroot";
    return _slurp("$root/logs/error.log");
}

# waits (bounded, $secs, 10 by default) until the error log matches $re
sub log_wait {
    my ($re, $secs) = @_;
    my $deadline = Time::HiRes::time() + ($secs // 10);
    until (error_log_text() =~ $re) {
        return 0 if Time::HiRes::time() > $deadline;
        Time::HiRes::sleep(0.05);
    }
    return 1;
}

# nginx -s reload of the running test nginx (a master process)
sub nginx_reload {
    my $root = $ENV{TEST_NGINX_SERVROOT} || "$top/t/servroot";
    my $pid = _slurp("$root/logs/nginx.pid");
    chomp $pid;
    kill 'HUP', $pid or die "no nginx master to reload";
}

# the agent's utterances as the Twilio peer had them ($twilio: its
# records): when the gateway sent the first and the last of their audio,
# and when Twilio echoed the mark after their last audio, the one that
# left its playback queue empty
sub utterances {
    my ($twilio) = @_;
    my (@utt, $received, $empty);
    $empty = 1;
    for my $r (@$twilio) {
        my $ev = $r->{msg}{event} // '';
        if ($r->{dir} eq 'in' && $ev eq 'media') {
            push @utt, { first_sent => $r->{t} } if $empty;
            $empty = 0;
            $utt[-1]{last_sent} = $r->{t};
            $received += $r->{msg}{media}{payload}{bytes} / 8;
        } elsif ($r->{dir} eq 'out' && $ev eq 'mark'
                 && ($r->{cause} // '') eq 'played' && @utt
                 && $r->{played_ms} >= $received)
        {
            $utt[-1]{played} = $r->{t};
            $empty = 1;
        }
    }
    return \@utt;
}

# the call events twirt logged ("twirt: event {...}"), decoded, in order
sub twirt_events {
    my ($call_sid) = @_;
    my @ev;
    for my $line (split /\n/, error_log_text()) {
        next unless $line =~ /twirt: event (\{.*?\}) while /;
        my $ev = eval { $json->decode($1) } or next;
        next if defined $call_sid && ($ev->{call_sid} // '') ne $call_sid;
        push @ev, $ev;
    }
    return \@ev;
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh>;
}

# a TCP port free on 127.0.0.1 now (for a server a test starts itself)
sub free_port {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0')
        or die "no free port: $!";
    return $s->sockport;
}

# polls $code every 50 ms until it returns true, at most $seconds;
# returns whether it did
sub until_true {
    my ($seconds, $code) = @_;
    my $deadline = time + $seconds;
    until ($code->()) {
        return 0 if time > $deadline;
        sleep 0.05;
    }
    return 1;
}

# a whole file's bytes, '' when it cannot be read
sub file_text {
    my ($f) = @_;
    return _slurp($f) // '';
}

1;
