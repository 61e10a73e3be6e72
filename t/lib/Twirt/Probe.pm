package Twirt::Probe;

# Looking at the nginx under test and its Redis servers from a test
# block's Perl: a plain HTTP/1.0 exchange, error.log's lines, redis-cli's
# raw output.  For the suites that start their own redis-server
# (t/redis.t, t/redis_tls.t).

use strict;
use warnings;
use Exporter 'import';
use IO::Socket::INET;
use POSIX ();
use Twirt::Peers ();

our @EXPORT = qw(http log_lines redis_cli_raw redis_after_checks
                 redis_server_start $RedisTestLocations);

# the test module's three locations (twirt_redis_test)
our $RedisTestLocations = <<'_EOC_';
    location = /redis { twirt_redis_test; }
    location = /redis-hget { twirt_redis_test hgetall; }
    location = /redis-stats { twirt_redis_test stats; }
_EOC_

# a block's "--- redis_after" Perl, run in package main after its last
# response
sub redis_after_checks {
    Test::Nginx::Socket::add_response_body_check(sub {
        my ($block, $body, $req_idx) = @_;
        my $code = $block->can('redis_after') && $block->redis_after;
        return unless defined $code;
        my $requests = $block->request;
        return if ref $requests eq 'ARRAY' && $req_idx < $#$requests;
        eval "package main; no strict 'vars'; $code";
        Test::More::fail($block->name . " - redis_after: $@") if $@;
    });
}

# the body of one request to the nginx under test
sub http {
    my ($method, $uri, $body) = @_;
    local $SIG{ALRM} = sub { die "http $uri: timeout\n" };
    alarm 10;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => Test::Nginx::Socket::server_port())
        or die "connect: $!";
    binmode $s;
    my $req = "$method $uri HTTP/1.0\r\nHost: localhost\r\n";
    $req .= 'Content-Length: ' . length($body) . "\r\n" if defined $body;
    print $s $req, "\r\n", $body // '';
    local $/;
    my $res = <$s> // '';
    alarm 0;
    close $s;
    my (undef, $content) = split /\r\n\r\n/, $res, 2;
    return $content // '';
}

# the lines of the test nginx's error.log that match
sub log_lines {
    my ($re) = @_;
    open my $fh, '<', Test::Nginx::Socket::server_root() . '/logs/error.log'
        or return ();
    return grep { $_ =~ $re } <$fh>;
}

# redis-cli with the server's options ($cli), --raw: a value is its bytes
# and a newline; '' when it cannot connect
sub redis_cli_raw {
    my ($cli, @args) = @_;
    open my $stderr, '>&', \*STDERR or die "dup: $!";
    open STDERR, '>', '/dev/null';
    my $ok = open my $fh, '-|', 'redis-cli', @$cli, '--raw', @args;
    open STDERR, '>&', $stderr;
    die "redis-cli: $!" unless $ok;
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return $out;
}

# a redis-server of the suite's own, in the foreground, its output in
# DIR/NAME.out: its pid, once it answers PING ($r: its arguments and
# redis-cli's)
sub redis_server_start {
    my ($name, $r, $dir) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>>', "$dir/$name.out";
        open STDERR, '>&', \*STDOUT;
        { exec 'redis-server', @{$r->{args}}, '--save', '', '--appendonly',
               'no', '--dir', $dir, '--daemonize', 'no'; }
        POSIX::_exit(127);
    }
    Twirt::Peers::until_true(10, sub {
        redis_cli_raw($r->{cli}, 'PING') eq "PONG\n"
    }) or die "redis-server \"$name\" did not start: see $dir/$name.out\n";
    return $pid;
}

1;
