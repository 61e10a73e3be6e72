package Twirt::Browser;

# A headless Chromium driven step by step from a Perl test, through
# t/peers/browser.py (the DevTools protocol over Debian's python3-websockets):
#
#   use Twirt::Browser;
#   Twirt::Browser::need_chromium();           # Bail out! if not installed
#   my $b = Twirt::Browser->new;
#   $b->goto("http://127.0.0.1:$port/board");
#   $b->click('#start');
#   ok($b->wait('document.querySelector("#state").textContent == "live"'));
#   is($b->eval('document.title'), 'twirt');
#   $b->close;
#
# Every method but wait dies with the driver's error (a JavaScript exception,
# a missing element, a deadline, a crashed browser); wait returns
# ($ok, $value, $elapsed, $error).  Only loopback can be reached: the
# browser's resolver finds no other name and no other address.

use strict;
use warnings;
use IO::Handle;
use IO::Select;
use IPC::Open2 qw(open2);
use JSON::PP;
use POSIX ();
use Scalar::Util qw(refaddr);
use Time::HiRes qw(time);

our $CHROMIUM = '/usr/bin/chromium';
my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $top = "$ENV{PWD}";
my $json = JSON::PP->new->utf8->canonical->allow_nonref;
my %live;                                   # refaddr -> driver pid

for my $dir (__FILE__ =~ m{^(.*)/t/lib/Twirt/Browser\.pm$}) {
    $top = $dir;
}

# a missing chromium (or python3-websockets) is a broken test setup: the
# test fails, it is never skipped
sub need_chromium {
    my $why;
    if (!-x $CHROMIUM) {
        $why = 'chromium is not installed (make deps)';
    } elsif (system($python, '-c', 'import websockets') != 0) {
        $why = "$python cannot import websockets (make deps)";
    }
    return 1 unless $why;
    print "Bail out! $why\n";
    exit 255;
}

# Twirt::Browser->new(timeout => 10, window_size => '1280,900'):
# starts the driver and its chromium (dies if it does not come up)
sub new {
    my ($class, %opts) = @_;
    need_chromium();
    my @cmd = ($python, "$top/t/peers/browser.py", '--chromium', $CHROMIUM);
    push @cmd, '--window-size', $opts{window_size} if $opts{window_size};
    my ($out, $in);
    my $pid = open2($out, $in, @cmd);
    $in->autoflush(1);
    my $self = bless { pid => $pid, in => $in, out => $out, buf => '',
                       timeout => $opts{timeout} // 10 }, $class;
    $live{refaddr $self} = $pid;
    my $r = $self->_read_reply(45);
    if (!$r->{ok}) {
        $self->_reap;
        die "Twirt::Browser: $r->{error}\n";
    }
    $self->{info} = $r->{value};
    return $self;
}

sub user_data_dir { $_[0]{info}{user_data_dir} }
sub chromium_pid  { $_[0]{info}{chromium_pid} }
sub driver_pid    { $_[0]{pid} }
sub product       { $_[0]{info}{product} }

# one command: the whole reply ({ok, value, error, ...})
sub command {
    my ($self, %c) = @_;
    die "Twirt::Browser: the browser is closed\n" unless $self->{pid};
    $c{timeout} //= $self->{timeout};
    {
        local $SIG{PIPE} = 'IGNORE';
        print { $self->{in} } $json->encode(\%c) . "\n"
            or return { ok => JSON::PP::false,
                        error => "the driver is gone: $!" };
    }
    return $self->_read_reply($c{timeout} + 15);
}

# the value of a command that must succeed
sub _value {
    my ($self, %c) = @_;
    my $r = $self->command(%c);
    die "Twirt::Browser $c{cmd}: $r->{error}\n" unless $r->{ok};
    return $r->{value};
}

sub _read_reply {
    my ($self, $secs) = @_;
    my $deadline = time + $secs;
    my $sel = IO::Select->new($self->{out});
    my $line;
    while (1) {
        if ($self->{buf} =~ s/^([^\n]*)\n//) {
            $line = $1;
            last;
        }
        my $left = $deadline - time;
        return { ok => JSON::PP::false,
                 error => "no reply from the driver in $secs s" }
            if $left <= 0;
        next unless $sel->can_read($left);
        my $n = sysread $self->{out}, $self->{buf}, 65536,
                        length $self->{buf};
        if (!$n) {
            $self->_reap;
            return { ok => JSON::PP::false,
                     error => 'the driver exited (' . ($self->{status} // '?')
                              . ')' };
        }
    }
    my $r = eval { $json->decode($line) };
    return $r // { ok => JSON::PP::false,
                   error => "bad reply from the driver: $line" };
}

# navigates and waits for the load event: { url }
sub goto {
    my ($self, $url, %o) = @_;
    return $self->_value(cmd => 'goto', url => $url, %o);
}

# the value of a JavaScript expression (promises are awaited)
sub eval {
    my ($self, $js, %o) = @_;
    return $self->_value(cmd => 'eval', js => $js, %o);
}

# polls $js every 50 ms until it is truthy, for $timeout seconds (the
# object's timeout by default).  List context: ($ok, $value, $elapsed,
# $error), $value the truthy value (the last one on a timeout).  Scalar
# context: true (the value, or 1 if the value is false to Perl) once it
# holds, undef on a timeout; $b->last_wait has the whole reply.
sub wait {
    my ($self, $js, $timeout) = @_;
    my $r = $self->command(cmd => 'wait', js => $js,
                           timeout => $timeout // $self->{timeout});
    $self->{last_wait} = $r;
    return ($r->{ok} ? 1 : 0, $r->{value}, $r->{elapsed}, $r->{error})
        if wantarray;
    return undef unless $r->{ok};
    return $r->{value} || 1;
}

sub last_wait { $_[0]{last_wait} }

# Test::More: ok(wait), with the last value and the error on a failure
sub wait_ok {
    my ($self, $js, $timeout, $name) = @_;
    my ($ok, $value, $elapsed, $error) = $self->wait($js, $timeout);
    local $Test::Builder::Level = ($Test::Builder::Level // 1) + 1;
    Test::More::ok($ok, $name // "wait: $js")
        or Test::More::diag("$error; last value: "
                            . $json->encode($value) . " after ${elapsed}s");
    return $ok;
}

# a real mouse click at the element's center: { x, y }
sub click {
    my ($self, $selector, %o) = @_;
    return $self->_value(cmd => 'click', selector => $selector, %o);
}

# focuses the element and inserts the text (clear => 1 replaces the value)
sub type {
    my ($self, $selector, $text, %o) = @_;
    return $self->_value(cmd => 'type', selector => $selector,
                         text => $text, %o);
}

# chooses files in an <input type=file> ('input' and 'change' fire):
# { files => [absolute paths] }
sub files {
    my ($self, $selector, @paths) = @_;
    @paths = @{ $paths[0] } if @paths == 1 && ref $paths[0] eq 'ARRAY';
    return $self->_value(cmd => 'files', selector => $selector,
                         paths => \@paths);
}

# the viewport as a PNG file: { path, bytes }
sub screenshot {
    my ($self, $path, %o) = @_;
    return $self->_value(cmd => 'screenshot', path => $path, %o);
}

# every URL the page requested, in order; detail => 1: [{ url, method,
# type, status, error, done }]
sub requests {
    my ($self, %o) = @_;
    return $self->_value(cmd => 'requests',
                         $o{detail} ? (detail => JSON::PP::true) : ());
}

# console messages, uncaught exceptions and browser log entries so far:
# [{ level, text, source }]
sub console { $_[0]->_value(cmd => 'console') }

# the alerts, confirms and prompts so far (all accepted): [{ type, message,
# url }]
sub dialogs { $_[0]->_value(cmd => 'dialogs') }

# emulates a lost network (new requests fail) or ends the emulation
sub offline {
    my ($self, $on) = @_;
    return $self->_value(cmd => 'offline',
                         value => $on ? JSON::PP::true : JSON::PP::false);
}

# breaks the open EventSource connections, which then reconnect by
# themselves: { dropped => [urls], sockets, elapsed }
sub drop_sse {
    my ($self, %o) = @_;
    return $self->_value(cmd => 'drop_sse', %o);
}

# quits the browser (no chromium process is left); true if it went well
sub close {
    my ($self) = @_;
    return 1 unless $self->{pid};
    my $r = $self->command(cmd => 'close', timeout => 15);
    CORE::close($self->{in});
    $self->_reap(10);
    return $r->{ok} && defined $self->{status} && $self->{status} == 0;
}

# waits (bounded, $secs) for the driver to exit by itself (after a signal,
# or once its stdin is closed); its exit status
sub wait_exit {
    my ($self, $secs) = @_;
    $self->_reap($secs // 10);
    return $self->{status};
}

# waits for the driver, bounded, then TERM (it cleans up), then KILL
sub _reap {
    my ($self, $secs) = @_;
    my $pid = delete $self->{pid} or return;
    delete $live{refaddr $self};
    my $deadline = time + ($secs // 2);
    for my $sig (0, 'TERM', 'KILL') {
        kill $sig, $pid if $sig;
        while (1) {
            if (waitpid($pid, POSIX::WNOHANG()) == $pid) {
                $self->{status} = $? >> 8;
                return;
            }
            last if time > $deadline;
            Time::HiRes::sleep(0.02);
        }
        $deadline = time + 5;
    }
}

sub DESTROY {
    my ($self) = @_;
    local ($@, $!, $?);
    return unless $self->{pid};
    eval { $self->close };
    $self->_reap(1) if $self->{pid};
}

END {
    local $?;
    for my $pid (values %live) {
        kill 'TERM', $pid;
        waitpid($pid, 0);
    }
}

1;
