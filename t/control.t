# Live call control through Redis: a message RPUSHed to the list of the
# worker named in the call record ({prefix}control:{worker}), as any
# client on any node would, reaches the call: "hangup" ends it now,
# "machine" cancels what is being said and leaves the message, then ends
# it.  What is not a control message is counted, logged escaped and
# dropped; nothing breaks.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use JSON::PP;
use Time::HiRes qw(sleep time);
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

our $json = JSON::PP->new->utf8->canonical;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    workers($block->nginx_workers // 1);
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;            # nginx may run under valgrind
CONF
    $block->set_value('config', <<'CONF' . ($block->config // ''));
    location = /ping { return 200 'ok'; }
    location = /twirt/status { twirt_status; }
CONF
    $block->set_value('config', $block->config . "    location = /twilio/media { twirt_stream; "
                      . ($block->media // '') . " }\n");
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

# the worker holding a call, from its record (polled, bounded)
sub worker_of {
    my ($sid) = @_;
    my $w;
    redis_wait(10, sub {
        ($w) = redis_cli('--raw', 'HGET', "twirt:call:$sid", 'worker');
        defined $w && length $w;
    });
    return $w;
}

# what an independent client does: RPUSH to the worker's list
sub push_raw {
    my ($sid, $raw) = @_;
    my $w = worker_of($sid) or die "no worker in the record of $sid";
    redis_cli('RPUSH', "twirt:control:$w", $raw);
    return $w;
}

sub push_control {
    my ($sid, %m) = @_;
    return push_raw($sid, $json->encode({ call => $sid, %m }));
}

sub record {
    my ($sid) = @_;
    my %h = redis_cli('--raw', 'HGETALL', "twirt:call:$sid");
    return \%h;
}

sub ended {
    my ($sid) = @_;
    redis_wait(10, sub { (record($sid)->{status} // '') =~ /^(ended|failed)$/ });
    return record($sid);
}

# what the Realtime simulator received of a type
sub got { my ($sim, $type) = @_; [ map { $_->{event} } grep { ($_->{dir} // '') eq 'in' && ($_->{event}{type} // '') eq $type } @$sim ] }

sub metric {
    my ($name) = @_;
    my ($st, $text) = http_get_text('/twirt/status');
    return $text =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

# the lines of the error log that match, polled until there are $n
sub log_lines {
    my ($re, $n) = @_;
    my @l;
    redis_wait(10, sub { @l = grep { /$re/ } split /\n/, error_log_text(); @l >= $n });
    return @l;
}

__DATA__

=== TEST 1: hangup: the call ends now with the kind "hangup", Twilio sees the stream closed, the record and the metrics say so
--- twilio
--scenario silence --call-sid CA00000000000000000000000000000001 --param scenario=silence
--- during
40: main::push_control('CA00000000000000000000000000000001', action => 'hangup')
--- check
my $sid = 'CA00000000000000000000000000000001';
my $h = main::ended($sid);
is($h->{end_reason}, 'hangup', 'end_reason hangup');
is($h->{status}, 'ended', 'not a failure');
like($h->{worker}, qr/^[^:]+:\d+$/, 'worker: node:pid');
is($call->{close}{by}, 'gateway', 'the gateway closed the stream');
is($call->{close}{code}, 1000, 'normally');
ok($call->{duration_ms} < 4500, "before the caller's hang-up at 5 s ($call->{duration_ms} ms)");
my ($ev) = grep { $_->{type} eq 'control' } @{ twirt_events($sid) };
is($ev->{action}, 'hangup', 'a control event');
is(main::metric('twirt_control_total{result="applied"}'), 1, 'counted applied');
is(main::metric('twirt_calls_ended_total{reason="hangup"}'), 1, 'ended by hangup');
my ($pid) = $h->{worker} =~ /:(\d+)$/;
my @l = main::log_lines(qr/twirt: control "hangup"/, 1);
like($l[0], qr/ $pid#\d+: /, 'applied by the worker the record names');
--- no_error_log
[error]



=== TEST 2: machine with a message while the greeting is spoken: response.cancel, clear, truncate, then a response.create saying the message, and the call ends once it was heard
--- media
twirt_greeting "お電話ありがとうございます。";
--- twilio
--scenario voicemail --call-sid CA00000000000000000000000000000002 --param scenario=voicemail
--- during
100: use utf8; main::push_control('CA00000000000000000000000000000002', action => 'machine', message => "山田様、さくら歯科です。明日のご予約の確認でした。\nまたお電話いたします。")
--- check
use utf8;
my $sid = 'CA00000000000000000000000000000002';
my $msg = "山田様、さくら歯科です。明日のご予約の確認でした。\nまたお電話いたします。";
my $h = main::ended($sid);
is($h->{end_reason}, 'machine', 'end_reason machine');
is(scalar @{ main::got($sim, 'response.cancel') }, 1, 'the greeting in progress was cancelled');
my @creates = @{ main::got($sim, 'response.create') };
my ($say) = grep { ($_->{response}{instructions} // '') =~ /\Q$msg\E/ } @creates;
ok($say, 'a response.create with the message in its instructions');
like($say->{response}{instructions}, qr/Say exactly: \Q$msg\E$/, 'to say exactly it');
is($sim_summary->{creates_while_active}, 0, 'after the cancelled one was done');
ok($call->{clears_received} >= 1, 'Twilio was told to clear');
is(scalar @{ main::got($sim, 'conversation.item.truncate') }, 1, 'the greeting truncated to what was heard');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($sid) };
is($lines[-1], $msg, 'the agent said the message');
is($call->{close}{by}, 'gateway', 'then the gateway closed the stream');
is($call->{marks_pending_at_end}, 0, 'once all of it was heard');
ok($call->{duration_ms} < 14500, "before the scenario's end ($call->{duration_ms} ms)");
my ($ev) = grep { $_->{type} eq 'control' } @{ twirt_events($sid) };
is($ev->{action}, 'machine', 'a control event');
is($ev->{message}, $msg, 'with the message');
--- error_log
answering machine: item
--- no_error_log
[error]



=== TEST 3: machine without a message: the call ends at once with the kind "machine"
--- twilio
--scenario silence --call-sid CA00000000000000000000000000000003 --param scenario=silence
--- during
40: main::push_control('CA00000000000000000000000000000003', action => 'machine')
--- check
my $sid = 'CA00000000000000000000000000000003';
my $h = main::ended($sid);
is($h->{end_reason}, 'machine', 'end_reason machine');
is(scalar grep({ ($_->{response}{instructions} // '') =~ /Say exactly/ } @{ main::got($sim, 'response.create') }), 0, 'nothing said');
ok($call->{duration_ms} < 4500, "before the caller's hang-up ($call->{duration_ms} ms)");
is(main::metric('twirt_calls_ended_total{reason="machine"}'), 1, 'ended by machine');
--- no_error_log
[error]



=== TEST 4: hostile messages: bad JSON with CR LF, an unknown action, a message too long, a huge one, an unknown CallSid: counted, logged escaped, dropped; the call goes on and a hangup still ends it
--- twilio
--scenario silence --call-sid CA00000000000000000000000000000004 --param scenario=silence
--- during
20: my $s = 'CA00000000000000000000000000000004'; main::push_raw($s, "{bad\r\n2026/01/01 [alert] forged"); main::push_control($s, action => 'dance'); main::push_control($s, action => 'machine', message => 'x' x 5000); main::push_raw($s, 'y' x 10000); main::push_control($s, action => 5); main::push_raw($s, $main::json->encode({ call => 'CA0000000000000000000000000000nope', action => 'hangup' }));
60: main::push_control('CA00000000000000000000000000000004', action => 'hangup')
--- check
my $sid = 'CA00000000000000000000000000000004';
my $h = main::ended($sid);
is($h->{end_reason}, 'hangup', 'the hangup after them still applied');
ok($call->{duration_ms} < 4500, "the call went on until it ($call->{duration_ms} ms)");
is(main::metric('twirt_control_total{result="invalid"}'), 5, 'five invalid');
is(main::metric('twirt_control_total{result="unknown_call"}'), 1, 'one for an unknown call');
is(main::metric('twirt_control_total{result="applied"}'), 1, 'one applied');
my $log = error_log_text();
like($log, qr/dropped a control message, not a JSON object: "\{bad\\x0d\\x0a2026\/01\/01 \[alert\] forged"/, 'bad JSON logged escaped');
unlike($log, qr/^2026\/01\/01 \[alert\] forged/m, 'no forged line');
like($log, qr/dropped a control message, an unknown "action": "\{\\x22action\\x22:\\x22dance\\x22/, 'unknown action');
like($log, qr/dropped a control message, a "message" too long: "\{.{200,256}\.\.\."/, 'message too long, cut in the log');
like($log, qr/dropped a control message of 10000 bytes: longer than 8192/, 'a huge one is not even read');
like($log, qr/control "hangup" for call "CA0000000000000000000000000000nope": not a call of this worker/, 'unknown call at info');
--- no_error_log
[error]



=== TEST 5: two workers: the message reaches the worker holding the call
--- nginx_workers: 2
--- twilio
--scenario silence --call-sid CA00000000000000000000000000000005 --param scenario=silence
--- during
40: main::push_control('CA00000000000000000000000000000005', action => 'hangup')
--- check
my $sid = 'CA00000000000000000000000000000005';
my $h = main::ended($sid);
is($h->{end_reason}, 'hangup', 'end_reason hangup');
my ($pid) = $h->{worker} =~ /:(\d+)$/;
my @l = main::log_lines(qr/twirt: control "hangup"/, 1);
like($l[0], qr/ $pid#\d+: /, 'applied by the worker the record names');
my @pids = map { / (\d+)#\d+: / ? $1 : () } grep { /twirt: (call started|redis .* connected)/ } split /\n/, error_log_text();
ok(scalar(grep { $_ == $pid } @pids), 'one of the workers');
--- no_error_log
[error]
