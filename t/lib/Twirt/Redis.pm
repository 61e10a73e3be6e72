package Twirt::Redis;

# A private redis-server for a test file, on a unix socket in a temporary
# directory: start, stop, restart on the same socket, pause, redis-cli.
# It keeps nothing on disk (--save '' --appendonly no) unless started
# with redis_start_aof(): then every write is in the append-only file
# before it is answered, and a restart (TERM, start again) finds the data.

use strict;
use warnings;
use Exporter 'import';
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);

our @EXPORT = qw(redis_start redis_start_aof redis_stop redis_restart
                 redis_pause redis_resume redis_cli redis_wait
                 redis_stream_entries);

my %server;

sub redis_start {
    my (@args) = @_;
    $server{dir} //= tempdir(CLEANUP => 1);
    # a restart keeps the options of the first start
    $server{args} = \@args if @args || !$server{args};
    @args = @{ $server{args} };
    my $dir = $server{dir};
    unlink "$dir/redis.sock";
    system('redis-server', '--port', '0', '--unixsocket', "$dir/redis.sock",
           '--unixsocketperm', '700', '--dir', $dir, '--pidfile',
           "$dir/redis.pid", '--daemonize', 'yes', '--save', '',
           '--appendonly', 'no', '--logfile', "$dir/redis.log", @args) == 0
        or die "redis-server did not start";
    my $deadline = time + 10;
    until (-S "$dir/redis.sock" && -s "$dir/redis.pid") {
        die "redis-server did not open its socket" if time > $deadline;
        sleep 0.02;
    }
    $server{pid} = _slurp("$dir/redis.pid");
    # the data set is loaded (a restart with an append-only file)
    $deadline = time + 10;
    until ((((redis_cli('PING'))[0]) // '') eq 'PONG') {
        die "redis-server does not answer PING" if time > $deadline;
        sleep 0.02;
    }
    return "$dir/redis.sock";
}

# persistent: the options given after the defaults win
sub redis_start_aof {
    return redis_start('--appendonly', 'yes', '--appendfsync', 'always', @_);
}

sub redis_stop {
    return unless $server{pid};
    my $pid = $server{pid};
    kill 'CONT', $pid;
    kill 'TERM', $pid;
    my $deadline = time + 10;
    while (kill 0, $pid) {
        last if time > $deadline;
        sleep 0.02;
    }
    $server{pid} = undef;
}

sub redis_restart { redis_stop(); redis_start() }
sub redis_pause { kill 'STOP', $server{pid} if $server{pid} }
sub redis_resume { kill 'CONT', $server{pid} if $server{pid} }

# redis-cli on the socket; returns its output lines
sub redis_cli {
    my (@args) = @_;
    my $sock = "$server{dir}/redis.sock";
    open my $fh, '-|', 'redis-cli', '--no-raw', '-s', $sock, @args
        or die "redis-cli: $!";
    my @out = <$fh>;
    close $fh;
    chomp @out;
    return @out;
}

# polls until the code returns true (at most $seconds)
sub redis_wait {
    my ($seconds, $code) = @_;
    my $deadline = time + $seconds;
    until ($code->()) {
        return 0 if time > $deadline;
        sleep 0.05;
    }
    return 1;
}

# the entries of a stream as hashes of their fields, in order
sub redis_stream_entries {
    my ($key) = @_;
    my (@entries, $cur);
    # --raw prints: id, then field and value lines; the id is kept as "id"
    for my $line (redis_cli('--raw', 'XRANGE', $key, '-', '+')) {
        if ($line =~ /^\d+-\d+$/) { push @entries, $cur = { _f => [], _id => $line }; next }
        push @{ $cur->{_f} }, $line;
    }
    for my $e (@entries) { my %h = @{ $e->{_f} }; $h{id} = $e->{_id}; %$e = %h }
    return \@entries;
}

END { redis_stop() }

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    my $s = <$fh>;
    chomp $s;
    return $s;
}

{
    no strict 'refs';
    for my $f (@EXPORT) {
        *{"Test::Base::Filter::$f"} = \&{"Twirt::Redis::$f"};
    }
}

1;
