# Several nodes, one Redis (README, "Scaling out"): two nginx instances
# (node-a, node-b: two workers each, their own ports) share one Redis.  A
# call's webhook on one node and its stream on the other works, its
# <Connect action> answered by either; records and events carry the node
# that held the stream.  Each node says it is alive in Redis; when one is
# killed (SIGKILL: no worker says goodbye), the other marks its calls
# failed, end reason node_lost, within twirt_node_timeout and a third of
# it, takes them out of the active set, and counts them.  A reload is
# not a death.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep time);
use Test::More;
use Twirt::Peers;
use Twirt::Redis;
use Twirt::Conf qw(http_conf);

my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $json = JSON::PP->new->utf8;
my $token = 'nodes-test-token';
my $timeout_ms = 2000;
my $sim = sim_start();
my $sock = redis_start();
my %node;
my $logs = tempdir(CLEANUP => 1);




sub node_start {
    my ($name) = @_;
    my $n = $node{$name} //= { name => $name, port => free_port(),
                               dir => tempdir(CLEANUP => 1) };
    mkdir "$n->{dir}/logs";
    my $main = "worker_processes 2; daemon on; master_process on; "
               . "error_log logs/error.log info;"
               . ($> == 0 ? " user root;" : "");
    my $conf = http_conf(<<"CONF", $main);
    twirt_redis unix:$sock;
    twirt_node $name;
    twirt_node_timeout ${timeout_ms}ms;
    twirt_openai_url ws://127.0.0.1:$sim->{port}/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_greeting "お電話ありがとうございます。";
    twirt_twilio_auth_token $token;
    twirt_stream_url wss://localhost/twilio/media;
    twirt_connect_action /twilio/after;
    twirt_parameter scenario silence;
    twirt_parameter calltag \$twirt_param_CallSid;
    server {
        listen 127.0.0.1:$n->{port};
        location = /twilio/voice { twirt_twiml; }
        location = /twilio/media { twirt_stream; }
        location = /twilio/after { twirt_action; }
        location = /status { twirt_status; }
    }
CONF
    utf8::encode($conf);
    open my $fh, '>', "$n->{dir}/nginx.conf" or die $!;
    print $fh $conf;
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    system("$nginx -p $n->{dir}/ -c $n->{dir}/nginx.conf") == 0
        or BAIL_OUT("$name did not start");
    until_true(10, sub { IO::Socket::INET->new("127.0.0.1:$n->{port}") })
        or BAIL_OUT("$name does not listen");
    $n->{pid} = file_text("$n->{dir}/logs/nginx.pid");
    chomp $n->{pid};
    return $n;
}

sub node_stop {
    my ($n) = @_;
    return unless $n->{pid} && kill 0, $n->{pid};
    kill 'QUIT', $n->{pid};
    until_true(10, sub { !kill 0, $n->{pid} });
}

END { node_stop($_) for values %node }

sub workers {
    my ($n) = @_;
    my @w = map { /^(\d+)/ ? $1 : () } `pgrep -P $n->{pid}`;
    return @w;
}

sub metric {
    my ($n, $name) = @_;
    my $text = `curl -s --max-time 5 http://127.0.0.1:$n->{port}/status`;
    return $text =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

sub record {
    my ($sid) = @_;
    my @kv = redis_cli('--raw', 'HGETALL', "twirt:call:$sid");
    # no such key: redis-cli --raw prints one empty line
    @kv = () if @kv == 1 && $kv[0] eq '';
    my %h = @kv;
    return \%h;
}

sub active {
    return { map { $_ => 1 } redis_cli('--raw', 'SMEMBERS',
                                       'twirt:calls:active') };
}

# a whole call as Twilio makes it: webhook to --base, the stream to
# --stream-base, the action to --action-base
sub whole_call {
    my (%o) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $out = `$python $FindBin::Bin/peers/twilio_call.py --base http://127.0.0.1:$o{webhook} --stream-base http://127.0.0.1:$o{stream} --action-base http://127.0.0.1:$o{action} --auth-token $token --webhook https://localhost/twilio/voice --scenario silence --call-sid $o{sid} --record $dir/call.jsonl 2>&1`;
    my ($last) = grep { /^\{/ } reverse split /\n/, $out;
    return (eval { $json->decode($last) } // {}, $out);
}

# a stream alone, in the background, until it is killed or ends
sub stream_start {
    my ($n, $sid, $ms) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$logs/stream-$sid.log";
        open STDERR, '>&', \*STDOUT;
        { exec $python, "$FindBin::Bin/peers/twilio_sim.py",
             '--url', 'ws://localhost/twilio/media',
             '--connect', "127.0.0.1:$n->{port}",
             '--auth-token', $token, '--sign-url',
             'wss://localhost/twilio/media',
             '--scenario', 'silence', '--call-sid', $sid,
             '--duration-ms', $ms; }
        POSIX::_exit(127);
    }
    return $pid;
}

my $a = node_start('node-a');
my $b = node_start('node-b');

# --- a call across nodes ------------------------------------------------

{
    my $sid = 'CA' . '0' x 28 . 'a2b1';
    my ($r, $out) = whole_call(sid => $sid, webhook => $a->{port},
                               stream => $b->{port}, action => $a->{port});
    ok($r->{ok}, 'webhook on node A, stream on node B, action on node A')
        or diag $out;
    my ($action) = grep { $_->{what} eq 'action' } @{ $r->{documents} // [] };
    like($action->{body} // '', qr{<Hangup/>},
         'node A answers the action from the record of a call node B held');
    my $rec = record($sid);
    is($rec->{node}, 'node-b', 'the record names node B, which held the '
       . 'stream');
    is($rec->{status}, 'ended', 'the call ended normally');
    my @events = @{ redis_stream_entries("twirt:call:$sid:events") };
    ok(scalar(grep { ($_->{type} // '') eq 'transcript' } @events),
       'its events are in Redis');
    like(file_text("$a->{dir}/logs/error.log"),
         qr/\Q$sid\E.*known from the call record|known from the call record.*\Q$sid\E/,
         'node A knew how it ended from the record');

    $sid = 'CA' . '0' x 28 . 'b2a1';
    ($r, $out) = whole_call(sid => $sid, webhook => $b->{port},
                            stream => $a->{port}, action => $b->{port});
    ok($r->{ok}, 'and the other way round') or diag $out;
    is(record($sid)->{node}, 'node-a', 'that record names node A');
}

# --- both nodes say they are alive ----------------------------------------

ok(until_true(5, sub {
       my %z = redis_cli('--raw', 'ZRANGE', 'twirt:nodes', '0', '-1',
                         'WITHSCORES');
       $z{'node-a'} && $z{'node-b'} }),
   'both nodes are in twirt:nodes');

# --- a reload is not a death --------------------------------------------

{
    my $sid = 'CA' . '0' x 28 . 'r10d';
    my $call = stream_start($b, $sid, 9000);
    ok(until_true(10, sub { (record($sid)->{status} // '') eq 'active' }),
       'a call is active on node B') or diag file_text("$logs/stream-$sid.log");
    my @old = workers($b);
    kill 'HUP', $b->{pid};
    my %old = map { $_ => 1 } @old;
    ok(until_true(10, sub { 2 <= grep { !$old{$_} } workers($b) }),
       'node B reloaded: two new workers (an old one still holds the call)')
        or diag "old @old, now @{[workers($b)]}";
    # what decides: more than the timeout with no heartbeat from the old
    # workers; the new ones must have taken over by then
    my $since = time;
    ok(until_true(10, sub { time - $since > 2 * $timeout_ms / 1000 }),
       'waited twice the node timeout');
    ok(active()->{$sid}, 'the call is still active')
        or diag explain record($sid);
    isnt(record($sid)->{end_reason} // '', 'node_lost', 'not marked node_lost');
    is(metric($a, 'twirt_calls_node_lost_total'), 0,
       'node A marked nothing');
    waitpid($call, 0);
    is($? >> 8, 0, 'the call went on to its end across the reload');
    ok(until_true(10, sub { (record($sid)->{status} // '') eq 'ended' }),
       'and ended normally');
}

# --- a node killed: its calls are marked failed by the other ----------------

{
    my $sid = 'CA' . '0' x 28 . 'dead';
    my $call = stream_start($b, $sid, 20000);
    ok(until_true(10, sub { (record($sid)->{status} // '') eq 'active' }),
       'a call is active on node B');
    is(metric($a, 'twirt_calls_node_lost_total'), 0, 'none lost yet');
    ok(active()->{$sid}, 'it is in the active set');

    my @w = workers($b);
    kill 'KILL', $b->{pid}, @w;
    my $killed = time;
    ok(until_true(5, sub { !grep { kill 0, $_ } $b->{pid}, @w }),
       'node B is killed, its master and workers');

    my $bound = ($timeout_ms + $timeout_ms / 3) / 1000 + 2;
    ok(until_true($bound, sub { !active()->{$sid} }),
       "within the node timeout and a period (+2 s), node A takes it out "
       . "of the active set");
    my $rec = record($sid);
    is($rec->{status}, 'failed', 'the call is failed');
    is($rec->{end_reason}, 'node_lost', 'end reason node_lost');
    like($rec->{end_detail}, qr/node-b/, 'the detail names the node');
    ok($rec->{ended_at}, 'ended_at is set');
    my ($last) = reverse @{ redis_stream_entries("twirt:call:$sid:events") };
    is_deeply([ @$last{qw(type status reason node)} ],
              [ 'state', 'failed', 'node_lost', 'node-b' ],
              'the call\'s stream ends with the state event');
    my @feed = map { eval { $json->decode($_->{j}) } // {} }
               @{ redis_stream_entries('twirt:events:stream') };
    ok(scalar(grep { ($_->{call_sid} // '') eq $sid
                     && ($_->{reason} // '') eq 'node_lost' } @feed),
       'the board\'s feed has it');
    ok(until_true(5, sub {
           (metric($a, 'twirt_calls_node_lost_total') // 0) == 1 }),
       'node A counts it once: twirt_calls_node_lost_total 1');
    like(file_text("$a->{dir}/logs/error.log"),
         qr/call \Q$sid\E marked failed \(node_lost\): node "node-b"/,
         'node A logs it');
    my %z = redis_cli('--raw', 'ZRANGE', 'twirt:nodes', '0', '-1',
                      'WITHSCORES');
    ok(!exists $z{'node-b'}, 'node B is no longer listed');
    ok(exists $z{'node-a'}, 'node A is');
    kill 'TERM', $call;
    waitpid($call, 0);

    # node B comes back: it says so again, nothing more is marked
    node_start('node-b');
    ok(until_true(5, sub {
           my %z = redis_cli('--raw', 'ZRANGE', 'twirt:nodes', '0', '-1',
                             'WITHSCORES');
           $z{'node-b'} }),
       'node B, started again, is listed again');
    is(metric($a, 'twirt_calls_node_lost_total'), 1, 'still one marked');
}

unlike(file_text("$a->{dir}/logs/error.log"), qr/\[(alert|crit|emerg)\]/,
       'node A logged no alert');

done_testing();
