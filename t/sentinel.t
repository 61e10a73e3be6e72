# Redis that fails over (README, "Scaling out"): Debian's redis-server as
# a master and a replica, three redis-sentinel on loopback watching them,
# and one nginx node with `twirt_redis sentinel:twirtmaster ...`.  The
# workers find the master by asking the sentinels; the master is killed
# (SIGKILL) while 20 calls are talking; the sentinels promote the replica
# and announce it (+switch-master).  The calls' audio is unaffected, the
# workers live on, and every call's record is complete on the new master:
# its end and the events written after the failover.  Also nginx -t on
# the directive's forms.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;
use Twirt::Peers;
use Twirt::Conf qw(nginx_t http_conf);

my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $dir = tempdir(CLEANUP => 1);
my $sim = sim_start();
my (@redis, $nginx_pid);
my $name = 'twirtmaster';
my $calls = 20;




sub cli {
    my ($port, @args) = @_;
    open my $fh, '-|', 'redis-cli', '--raw', '-h', '127.0.0.1', '-p', $port,
        @args or die "redis-cli: $!";
    my @out = <$fh>;
    close $fh;
    chomp @out;
    return @out;
}

# a redis-server or redis-sentinel, daemonized, with its files in $dir
sub start_redis {
    my ($kind, $port, @conf) = @_;
    my $file = "$dir/$kind-$port.conf";
    open my $fh, '>', $file or die $!;
    print $fh join("\n", "port $port", 'bind 127.0.0.1', 'daemonize yes',
                   "pidfile $dir/$kind-$port.pid",
                   "logfile $dir/$kind-$port.log", "dir $dir",
                   ($kind eq 'redis' ? ("save ''", 'appendonly no',
                                        "dbfilename dump-$port.rdb") : ()),
                   @conf), "\n";
    close $fh;
    system($kind eq 'redis' ? 'redis-server' : 'redis-sentinel', $file) == 0
        or BAIL_OUT("$kind on $port did not start");
    until_true(10, sub { -s "$dir/$kind-$port.pid"
                         && (cli($port, 'PING'))[0] eq 'PONG' })
        or BAIL_OUT("$kind on $port does not answer");
    my $pid = file_text("$dir/$kind-$port.pid");
    chomp $pid;
    push @redis, $pid;
    return $pid;
}

END {
    kill 'QUIT', $nginx_pid if $nginx_pid;
    kill 'KILL', @redis if @redis;
}

# --- nginx -t ---------------------------------------------------------

for my $bad (['sentinel:', 'no master name'],
             ["sentinel:$name", 'needs the sentinels'],
             ["sentinel:$name localhost:26379", 'invalid sentinel address'],
             ["sentinel:$name 127.0.0.1", 'invalid sentinel address'],
             ["sentinel:$name 127.0.0.1:0", 'invalid sentinel address'],
             ['sentinel:a/b 127.0.0.1:26379', 'invalid master name']) {
    my ($rc, $out) = nginx_t(http_conf("    twirt_redis $bad->[0];\n"));
    isnt($rc, 0, "nginx -t refuses twirt_redis $bad->[0]");
    like($out, qr/\Q$bad->[1]\E/, "... saying: $bad->[1]");
}
{
    my ($rc, $out) = nginx_t(http_conf(
        "    twirt_redis sentinel:$name 127.0.0.1:26379 [::1]:26380 "
        . "password=x db=2;\n"));
    is($rc, 0, 'nginx -t takes sentinels, IPv6 among them, with password '
       . 'and db') or diag $out;
}

# --- one master, one replica, three sentinels ----------------------------

my ($m, $r) = (free_port(), free_port());
my @s = (free_port(), free_port(), free_port());
my $master_pid = start_redis('redis', $m);
start_redis('redis', $r, "replicaof 127.0.0.1 $m");
start_redis('sentinel', $_, "sentinel monitor $name 127.0.0.1 $m 2",
            "sentinel down-after-milliseconds $name 1000",
            "sentinel failover-timeout $name 10000",
            "sentinel parallel-syncs $name 1") for @s;

# a failover needs the sentinels to know each other and the replica
ok(until_true(30, sub {
       my %i = cli($s[0], 'SENTINEL', 'master', $name);
       ($i{'num-other-sentinels'} // 0) == 2 && ($i{'num-slaves'} // 0) == 1
           && (cli($r, 'INFO', 'replication'))[0] =~ /./
           && join("\n", cli($r, 'INFO', 'replication'))
              =~ /master_link_status:up/ }),
   'the sentinels know each other and the replica, which is in sync');

# --- one nginx node on the sentinels ----------------------------------------

my $port = free_port();
mkdir "$dir/nginx";
mkdir "$dir/nginx/logs";
{
    my $main = "worker_processes 2; daemon on; master_process on; "
               . "error_log logs/error.log info;"
               . ($> == 0 ? " user root;" : "");
    my $conf = http_conf(<<"CONF", $main);
    twirt_redis sentinel:$name 127.0.0.1:$s[0] 127.0.0.1:$s[1] 127.0.0.1:$s[2];
    twirt_redis_timeout 500ms;
    twirt_node sentinel-node;
    twirt_openai_url ws://127.0.0.1:$sim->{port}/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_greeting "お電話ありがとうございます。";
    server {
        listen 127.0.0.1:$port;
        location = /twilio/media { twirt_stream; }
        location = /status { twirt_status; }
    }
CONF
    utf8::encode($conf);
    open my $fh, '>', "$dir/nginx/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    system("$nginx -p $dir/nginx/ -c $dir/nginx/nginx.conf") == 0
        or BAIL_OUT('nginx did not start');
    until_true(10, sub { -s "$dir/nginx/logs/nginx.pid" })
        or BAIL_OUT('nginx wrote no pid');
    $nginx_pid = file_text("$dir/nginx/logs/nginx.pid");
    chomp $nginx_pid;
}
my $log = sub { file_text("$dir/nginx/logs/error.log") };

ok(until_true(10, sub { () = $log->() =~ /sentinel 127\.0\.0\.1:\d+ says the master is 127\.0\.0\.1:$m\b/g; }),
   'the workers asked the sentinels where the master is');
ok(until_true(10, sub { my $n = () = $log->() =~ /redis "sentinel:$name" connected/g; $n >= 2 }),
   'both workers are connected to it');
my @workers = map { /^(\d+)/ ? $1 : () } `pgrep -P $nginx_pid`;
is(scalar @workers, 2, 'two workers');

# --- 20 calls; the master killed while they talk ----------------------------

my $rec_dir = tempdir(CLEANUP => 1);
my $twilio = fork // die;
if ($twilio == 0) {
    open STDOUT, '>', "$rec_dir/out";
    open STDERR, '>&', \*STDOUT;
    { exec $python, "$FindBin::Bin/peers/twilio_sim.py", '--url',
         "ws://127.0.0.1:$port/twilio/media", '--scenario', 'ja-booking',
         '--calls', $calls, '--duration-ms', 10000,
         '--record', "$rec_dir/calls.jsonl"; }
    POSIX::_exit(127);
}
my @sids = map { sprintf 'CA%032d', $_ } 1 .. $calls;

ok(until_true(15, sub {
       !grep { (cli($m, 'HGET', "twirt:call:$_", 'status'))[0] ne 'active' }
       @sids }),
   "all $calls calls are active, recorded on the master");

# killed as the callers start speaking: their lines are written while
# there is no master
ok(until_true(15, sub {
       $calls <= grep { ($_->{dir} // '') eq 'out'
                        && ($_->{event}{type} // '')
                           eq 'input_audio_buffer.speech_started' }
                 @{ sim_records($sim) } }),
   'every caller has started speaking');
kill 'KILL', $master_pid;
my $killed = time;
ok(until_true(5, sub { !kill 0, $master_pid }), 'the master is killed');

ok(until_true(20, sub {
       my ($ip, $p) = cli($s[0], 'SENTINEL', 'get-master-addr-by-name',
                          $name);
       ($p // '') eq $r }),
   'the sentinels promoted the replica');
my $switched = time;

waitpid($twilio, 0);
is($? >> 8, 0, "the $calls calls went through to their end, audio "
   . 'unaffected') or diag file_text("$rec_dir/out");
my $dropped = () = file_text("$rec_dir/calls.jsonl")
    =~ /"agent_audio_ms_dropped_by_clear": [1-9]/g;
is($dropped, 0, 'no agent audio was cut');


ok(until_true(10, sub {
       !grep { (cli($r, 'HGET', "twirt:call:$_", 'status'))[0] ne 'ended' }
       @sids }),
   "every call's record on the new master says ended, within 10 s of the "
   . 'calls\' end') or diag join ' ', map { (cli($r, 'HGET', "twirt:call:$_",
                                            'status'))[0] // 'none' } @sids;
diag sprintf 'master killed -> replica promoted %.1f s', $switched - $killed;

my $ends = grep {
    my @e = cli($r, 'XREVRANGE', "twirt:call:$_:events", '+', '-', 'COUNT',
                '1');
    "@e" =~ /\bstatus ended\b/ || join("\n", @e) =~ /\nstatus\nended\n/
} @sids;
is($ends, $calls, 'and each call\'s event stream ends with its "state '
   . 'ended" event');
# the caller's first line (at 2.5 s) was spoken while there was no master
my $lines = grep {
    my @e = cli($r, 'XRANGE', "twirt:call:$_:events", '-', '+');
    my $n = () = join("\n", @e) =~ /\nrole\ncaller\n/g;
    $n >= 2
} @sids;
is($lines, $calls, 'each call has both caller lines on the new master, the '
   . 'one spoken while there was no master among them');
is(scalar(grep { !(cli($r, 'SISMEMBER', 'twirt:calls:active', $_))[0] }
          @sids), $calls, 'no call is left in the active set');

like($log->(), qr/the sentinels switched the master: 127\.0\.0\.1 $m 127\.0\.0\.1 $r\b/,
     'the workers heard +switch-master');
my @flushed = $log->() =~ /reconnected after \d+ attempts?, flushed (\d+) queued/g;
is(scalar @flushed, 2, 'both workers reconnected once');
my $sum = 0;
$sum += $_ for @flushed;
ok($sum > 0, 'what was queued meanwhile was flushed to the new master '
   . "(@flushed commands)")
    or diag join "\n", grep { /redis/ } split /\n/, $log->();
like($log->(), qr/says the master is 127\.0\.0\.1:$r\b/,
     'and asked the sentinels again: the replica');
my @now = map { /^(\d+)/ ? $1 : () } `pgrep -P $nginx_pid`;
is_deeply([ sort @now ], [ sort @workers ], 'the same two workers: none '
   . 'crashed');
unlike($log->(), qr/\[(alert|crit|emerg)\]/, 'no alert in the log');

done_testing();
