# Call records in a real redis-server: the hash, the events stream, the
# live channel, the active set, TTL; agent profiles; Redis down, slow or
# gone never changes the call.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use JSON::PP;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
# persistent, so that a restart in the middle of a call loses nothing
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start('--appendonly', 'yes', '--appendfsync', 'always');

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "あなたは{{company}}の電話オペレーターです。[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_transcription gpt-4o-mini-transcribe language=ja;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

sub events_of_type { my ($sim, $type) = @_; [ grep { ($_->{event}{type} // '') eq $type } @$sim ] }

# a subscriber to the live channel, as a dashboard would be
my ($sub_pid, $sub_file);

sub subscribe_start {
    $sub_file = "$ENV{TEST_NGINX_REDIS_SOCKET}.sub";
    $sub_pid = fork // die "fork: $!";
    if ($sub_pid == 0) {
        open STDOUT, '>', $sub_file or die;
        { exec 'redis-cli', '-s', $ENV{TEST_NGINX_REDIS_SOCKET}, '--raw', 'SUBSCRIBE', 'twirt:events'; }
        POSIX::_exit(127);
    }
    # subscribed once redis counts the subscriber
    redis_wait(5, sub { (redis_cli('--raw', 'PUBSUB', 'NUMSUB', 'twirt:events'))[1] == 1 });
}

sub subscribe_stop {
    kill 'TERM', $sub_pid;
    waitpid($sub_pid, 0);
    open my $fh, '<', $sub_file or return ();
    my @ev;
    while (my $line = <$fh>) {
        next unless $line =~ /^\{/;
        push @ev, JSON::PP->new->decode($line);
    }
    return @ev;
}

sub hash_of {
    my ($key) = @_;
    my %h = redis_cli('--raw', 'HGETALL', $key);
    return \%h;
}

__DATA__

=== TEST 1: after a call: the hash, the stream in order, the published events, the active set emptied, the TTL
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_ttl 600s;
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "お電話ありがとうございます。{{company}}です。ご用件をどうぞ。"; }
--- init
main::subscribe_start();
--- twilio
--scenario ja-booking --duration-ms 6000 --call-sid CA0000000000000000000000000000record --param company=さくら歯科 --param agent=nobody --param from=+81312345678 --param to=+815011112222 --param direction=inbound
--- check
use utf8;
my $key = 'twirt:call:CA0000000000000000000000000000record';
ok(redis_wait(5, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }), 'status ended');
my $h = main::hash_of($key);
is($h->{stream_sid}, $call->{stream_sid}, 'stream sid');
is($h->{from}, '+81312345678', 'from');
is($h->{to}, '+815011112222', 'to');
is($h->{direction}, 'inbound', 'direction');
is($h->{agent}, 'nobody', 'agent');
like($h->{started_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'started_at');
ok($h->{answered_at} && $h->{ended_at}, 'answered_at, ended_at');
is($h->{end_reason}, 'stop', 'end reason');
is($h->{end_detail}, 'stop', 'end detail');
like($h->{openai_session_id}, qr/^sess_/, 'the Realtime session id');
ok($h->{tokens} > 0, 'tokens');
ok($h->{cost_usd} > 0, 'cost');
ok(length $h->{node}, 'node');
my @active = redis_cli('--raw', 'SMEMBERS', 'twirt:calls:active');
is(scalar(grep { /record/ } @active), 0, 'no longer active');
my ($ttl) = redis_cli('--raw', 'TTL', $key);
ok($ttl > 0 && $ttl <= 600, "TTL set ($ttl)");
($ttl) = redis_cli('--raw', 'TTL', "$key:events");
ok($ttl > 0 && $ttl <= 600, "and on the events ($ttl)");
my $e = redis_stream_entries("$key:events");
my @kinds = map { $_->{type} eq 'transcript' ? "$_->{role}: $_->{text}" : "$_->{type}: " . ($_->{status} // '') } @$e;
utf8::decode($_) for @kinds;
is_deeply(\@kinds, [
    'state: connecting',
    'state: active',
    'agent: お電話ありがとうございます。さくら歯科です。ご用件をどうぞ。',
    'cost: ',
    'caller: 予約を変更したいのですが',
    'agent: かしこまりました。ご予約番号をお願いします。',
    'cost: ',
    'state: ended',
], 'the stream: state changes and transcript lines in order, Japanese intact') or diag join "\n", @kinds;
ok((grep { defined $_->{ms} } @$e) == @$e, 'each with its offset in the call');
my @published = main::subscribe_stop();
my @types = map { $_->{type} . ($_->{role} ? ":$_->{role}" : '') } @published;
is_deeply(\@types, [ 'state', 'state', 'transcript:agent', 'cost', 'transcript:caller', 'transcript:agent', 'cost', 'state' ], 'the same events published live') or diag join ' ', @types;
is_deeply([ map { $_->{event_id} } @published ], [ map { $_->{id} } @$e ], "each published with its entry's id in the call's stream");
my @costs = map { $_->{cost_usd} } grep { $_->{type} eq 'cost' } @published;
ok(@costs == 2 && $costs[0] > 0 && $costs[1] > $costs[0], "the cost so far after each response (@costs)");
is($published[-1]{cost_usd}, $costs[-1], 'the last is the total');
--- error_log
agent profile read, 0 fields



=== TEST 2: Redis stops in the middle of a call and comes back: the call is unaffected, every event arrives
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- twilio
--scenario ja-booking --duration-ms 8000 --call-sid CA000000000000000000000000000restart --param company=ACME
--- during
50: Twirt::Redis::redis_stop()
300: Twirt::Redis::redis_start()
--- check
is($call->{ok}, JSON::PP::true, 'the call went on');
is($sim_summary->{appended_bytes}, 160 * $call->{media_sent}, 'no caller audio lost');
my $key = 'twirt:call:CA000000000000000000000000000restart';
ok(redis_wait(10, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }), 'the record completed after the reconnect');
my $e = redis_stream_entries("$key:events");
my @types = map { $_->{type} } @$e;
is_deeply(\@types, [ qw(state state transcript cost transcript transcript cost state) ], 'no event lost, in order') or diag "@types";
--- error_log eval
[qr/twirt: redis .*(lost|closed)/i, qr/reconnected after \d+ attempts?, flushed \d+ queued commands/]



=== TEST 3: Redis down the whole call with a small queue: the call works, drops are counted and logged once
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_queue 3;
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- twilio
--scenario ja-booking --duration-ms 6000 --param company=ACME
--- during
0: Twirt::Redis::redis_stop()
--- check
is($call->{ok}, JSON::PP::true, 'the call went on');
is($sim_summary->{errors_sent}, 0, 'the session was fine');
Twirt::Redis::redis_start();
--- error_log eval
[qr/queue full/, qr/ended: stop/]



=== TEST 4: an agent profile with variables overrides the defaults
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:sales', 'instructions', 'あなたは{{company}}の{{role}}です。[calltag:{{calltag}}]', 'voice', 'cedar', 'var_role', '営業担当', 'vad', 'semantic', 'vad_eagerness', 'high');
--- twilio
--scenario silence --duration-ms 1500 --param agent=sales --param company=さくら歯科
--- check
use utf8;
my $s = main::events_of_type($sim, 'session.update')->[0]{event}{session};
like($s->{instructions}, qr/^あなたはさくら歯科の営業担当です。/, 'the profile instructions, with its variables and the call parameters');
is($s->{audio}{output}{voice}, 'cedar', 'the profile voice');
is($s->{audio}{input}{turn_detection}{type}, 'semantic_vad', 'the profile VAD');
is($s->{audio}{input}{turn_detection}{eagerness}, 'high', 'and its eagerness');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log
agent profile read, 5 fields



=== TEST 5: Redis paused: the session update waits twirt_agent_timeout, then goes on with the defaults
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 2s;
--- config
    location = /twilio/media { twirt_stream; twirt_agent_timeout 300ms; twirt_voice ash; }
--- twilio
--scenario silence --duration-ms 2000 --param agent=sales --param company=ACME
--- during
0: Twirt::Redis::redis_pause()
--- check
Twirt::Redis::redis_resume();
my $s = main::events_of_type($sim, 'session.update')->[0]{event}{session};
is($s->{audio}{output}{voice}, 'ash', 'the defaults');
is($sim_summary->{errors_sent}, 0, 'the call went on');
--- error_log eval
[qr/agent profile not read in time \(no answer\), using the defaults/]



=== TEST 6: without twirt_redis, a call naming an agent uses the defaults and says why
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario silence --duration-ms 1000 --param agent=sales --param company=ACME
--- error_log
agent profile "sales" cannot be read now



=== TEST 7: odd characters in parameters round-trip; an odd agent name is refused, not used as a key
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario silence --duration-ms 1000 --call-sid CA00000000000000000000000000000odd --param "from=+81 '\"\\r\\n*3\$5 日本" --param "agent=x:y twirt:call:*" --param company=ACME
--- check
my $key = 'twirt:call:CA00000000000000000000000000000odd';
ok(redis_wait(5, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }), 'recorded');
my ($from) = redis_cli('--raw', 'HGET', $key, 'from');
is($from, "+81 '\"\\r\\n*3\$5 \xe6\x97\xa5\xe6\x9c\xac", 'from byte for byte');
--- error_log
ignored agent name "x:y twirt:call:*"



=== TEST 8: <Connect action> after end_call: hang up
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
    location = /twilio/after {
        twirt_action;
        twirt_fallback_say "申し訳ございません。" language=ja-JP;
    }
--- twilio
--scenario end-call --call-sid CA00000000000000000000000000endcall
--- check
my ($status, $body) = http_post('/twilio/after', 'CallSid=CA00000000000000000000000000endcall&CallStatus=in-progress');
is($status, 200, 'answered');
like($body, qr{<Response><Hangup/></Response>}, 'hang up after end_call');
--- error_log
ended (ended, end_call): hang up



=== TEST 9: <Connect action> after the Realtime side failed: the fallback message, from the record
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=close_1011=500;
    }
    location = /twilio/after {
        twirt_action;
        twirt_fallback_say "申し訳ございません。ただいま電話が混み合っております。" language=ja-JP;
    }
--- twilio
--scenario ja-booking --call-sid CA000000000000000000000000000failed
--- check
use utf8;
my ($status, $body) = http_post('/twilio/after', 'CallSid=CA000000000000000000000000000failed');
utf8::decode($body);
like($body, qr{<Response><Say language="ja-JP">申し訳ございません。ただいま電話が混み合っております。</Say></Response>}, 'the fallback');
my $h = main::hash_of('twirt:call:CA000000000000000000000000000failed');
is($h->{end_reason}, 'upstream_closed', 'the kind of end');
is($h->{end_detail}, 'upstream closed 1011', 'and its words');
--- error_log
ended (failed, upstream_closed): fallback



=== TEST 10: <Connect action> for a call without a record: the fallback, and a warning
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/after {
        twirt_action;
        twirt_fallback_dial +81312345678;
    }
--- request
POST /twilio/after
CallSid=CA404
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Response><Dial>\+81312345678</Dial></Response>
--- error_log
no call record for CallSid "CA404"



=== TEST 11: <Connect action> checks the signature like the webhook
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/after {
        twirt_action;
        twirt_twilio_auth_token secret;
    }
--- request
POST /twilio/after
CallSid=CA1
--- more_headers
Content-Type: application/x-www-form-urlencoded
X-Twilio-Signature: d3Jvbmc=
--- error_code: 403
--- error_log
invalid X-Twilio-Signature for CallSid "CA1"



=== TEST 12: a second stream claiming a live call's CallSid is refused and changes nothing of its record
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
    location = /status { twirt_status; }
--- twilio
--scenario ja-booking --duration-ms 6000 --call-sid CA0000000000000000000000000000dup1 --stream-sid MZ000000000000000000000000000real --param from=+81312345678
--- during
100: my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984; my ($rc, $rec) = Twirt::Peers::twilio_call("--url ws://127.0.0.1:$port/twilio/media --scenario silence --duration-ms 800 --call-sid CA0000000000000000000000000000dup1 --stream-sid MZ00000000000000000000000000000evil --param from=+819999999999"); my ($sum) = grep { $_->{dir} eq 'summary' } @$rec; $main::dup = { rc => $rc, close => $sum->{close}, active => [ redis_cli('--raw', 'SISMEMBER', 'twirt:calls:active', 'CA0000000000000000000000000000dup1') ]->[0], hash => main::hash_of('twirt:call:CA0000000000000000000000000000dup1') };
--- check
my $key = 'twirt:call:CA0000000000000000000000000000dup1';
ok($main::dup, 'the second stream ran while the first was live') or return;
is($main::dup->{close}{by}, 'gateway', 'the second stream was closed by the gateway');
is($main::dup->{close}{code}, 1008, 'as a policy violation');
my ($status, $text) = http_get_text('/status');
like($text, qr/^twirt_errors_total\{kind="duplicate_stream"\} 1$/m, 'and counted');
is($main::dup->{active}, 1, 'the call was still in the active set after the second stream stopped');
is($main::dup->{hash}{status}, 'active', 'and still active');
is($main::dup->{hash}{stream_sid}, 'MZ000000000000000000000000000real', 'its stream_sid kept');
is($main::dup->{hash}{from}, '+81312345678', 'its from kept');
ok(redis_wait(5, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }), 'ended by its own stream');
my $h = main::hash_of($key);
is($h->{end_reason}, 'stop', 'its own end');
is($h->{stream_sid}, 'MZ000000000000000000000000000real', 'stream_sid still its own');
my @entries = @{ redis_stream_entries("$key:events") };
is(scalar(grep { ($_->{status} // '') eq 'connecting' } @entries), 1, 'one "connecting" event: the second stream wrote none');
--- error_log
refused a second stream for a live call



=== TEST 13: a stream status callback becomes an entry of the call's events stream
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
    location = /twilio/stream-status { twirt_stream_status; }
--- twilio
--scenario silence --duration-ms 300 --call-sid CA0000000000000000000000000000status
--- check
my $key = 'twirt:call:CA0000000000000000000000000000status:events';
# another stream's event first: the record takes only its own stream's
http_post('/twilio/stream-status', 'CallSid=CA0000000000000000000000000000status&StreamSid=MZ1&StreamEvent=stream-error&StreamError=forged');
my ($status) = http_post('/twilio/stream-status', "CallSid=CA0000000000000000000000000000status&StreamSid=$call->{stream_sid}&StreamEvent=stream-error&StreamError=31920%3A%20too%20slow");
is($status, 204, 'answered 204');
ok(redis_wait(5, sub { grep { ($_->{type} // '') eq 'stream' } @{ redis_stream_entries($key) } }), 'recorded');
my ($e) = grep { ($_->{type} // '') eq 'stream' } @{ redis_stream_entries($key) };
is($e->{event}, 'stream-error', 'the event');
is($e->{stream_sid}, $call->{stream_sid}, 'the stream');
is($e->{error}, '31920: too slow', 'the error, as sent');
is(scalar(grep { ($_->{type} // '') eq 'stream' } @{ redis_stream_entries($key) }), 1, "another stream's event was not recorded");
# a call that never started: its events still expire
http_post('/twilio/stream-status', 'CallSid=CA000000000000000000000000000nocall&StreamSid=MZ2&StreamEvent=stream-error&StreamError=never%20started');
my $nokey = 'twirt:call:CA000000000000000000000000000nocall:events';
ok(redis_wait(5, sub { (redis_cli('--raw', 'EXISTS', $nokey))[0] == 1 }), 'the event of a call that never started is recorded');
ok(redis_wait(5, sub { (redis_cli('--raw', 'TTL', $nokey))[0] > 0 }), 'and expires');
--- error_log
"event":"stream-error"
