# <Connect action> after whole calls: a normal end hangs up, a failure
# plays the fallback, with or without Redis.  The node's table of recent
# outcomes answers first; the call record in Redis when the table knows
# nothing (another node, a restart); nothing known: the fallback.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
CONF
    $block->set_value('config', <<'CONF' . $block->config);
    location = /ping { return 200 'ok'; }
    twirt_fallback_say "申し訳ございません。" language=ja-JP;
    location = /twilio/voice {
        twirt_twiml;
        twirt_connect_action /twilio/after;
    }
    location = /twilio/after { twirt_action; }
CONF
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

sub after {
    my ($sid) = @_;
    my ($status, $body) = http_post('/twilio/after', "CallSid=$sid&CallStatus=in-progress");
    utf8::decode($body);
    return ($status, $body);
}

__DATA__

=== TEST 1: the webhook routes through the action and never writes the fallback after </Connect>
--- config
    location = /twilio/media { twirt_stream; }
--- request
POST /twilio/voice
CallSid=CA1
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body
<?xml version="1.0" encoding="UTF-8"?>
<Response><Connect action="/twilio/after" method="POST"><Stream url="wss://localhost/twilio/media"></Stream></Connect></Response>



=== TEST 2: without Redis, a normal end_call: the action hangs up, no fallback
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario end-call --call-sid CA0000000000000000000000000noredis1
--- check
my ($status, $body) = main::after('CA0000000000000000000000000noredis1');
is($status, 200, 'answered');
is($body, qq{<?xml version="1.0" encoding="UTF-8"?>\n<Response><Hangup/></Response>\n}, 'hang up, no fallback');
--- error_log
ended (ended, end_call): hang up, known from this node's outcomes
--- no_error_log
[error]



=== TEST 3: without Redis, the Realtime side fails: the action plays the fallback
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=close_1011=500;
    }
--- twilio
--scenario ja-booking --call-sid CA0000000000000000000000000noredis2
--- check
my ($status, $body) = main::after('CA0000000000000000000000000noredis2');
is($status, 200, 'answered');
like($body, qr{<Response><Say language="ja-JP">申し訳ございません。</Say></Response>}, 'the fallback');
--- error_log
ended (failed, upstream_closed): fallback, known from this node's outcomes



=== TEST 4: with Redis, a normal end_call: hang up
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario end-call --call-sid CA00000000000000000000000000redis1
--- check
my ($status, $body) = main::after('CA00000000000000000000000000redis1');
like($body, qr{<Response><Hangup/></Response>}, 'hang up, no fallback');
--- error_log
ended (ended, end_call): hang up, known from this node's outcomes



=== TEST 5: with Redis, a failed call: the fallback
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=close_1011=500;
    }
--- twilio
--scenario ja-booking --call-sid CA00000000000000000000000000redis2
--- check
my ($status, $body) = main::after('CA00000000000000000000000000redis2');
like($body, qr{<Response><Say language="ja-JP">申し訳ございません。</Say></Response>}, 'the fallback');
--- error_log
ended (failed, upstream_closed): fallback, known from this node's outcomes



=== TEST 6: after a restart the table is empty: the call record of TEST 4 decides, hang up
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
--- init
# the worker's Redis connection is up before Twilio asks
for (1 .. 100) { last if Twirt::Peers::error_log_text() =~ /twirt: redis "[^"]*" connected(?: after \d+ attempts)?, flushed/; Time::HiRes::sleep(0.05) }
--- request
POST /twilio/after
CallSid=CA00000000000000000000000000redis1
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Response><Hangup/></Response>
--- error_log
ended (ended, end_call): hang up, known from the call record



=== TEST 7: after a restart, the call record of TEST 5's failed call decides: the fallback
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media { twirt_stream; }
--- init
# the worker's Redis connection is up before Twilio asks
for (1 .. 100) { last if Twirt::Peers::error_log_text() =~ /twirt: redis "[^"]*" connected(?: after \d+ attempts)?, flushed/; Time::HiRes::sleep(0.05) }
--- request
POST /twilio/after
CallSid=CA00000000000000000000000000redis2
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Response><Say language="ja-JP">申し訳ございません。</Say></Response>
--- error_log
ended (failed, upstream_closed): fallback, known from the call record



=== TEST 8: nothing known (no table entry, no Redis): the fallback
--- config
    location = /twilio/media { twirt_stream; }
--- request
POST /twilio/after
CallSid=CA404
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Response><Say language="ja-JP">申し訳ございません。</Say></Response>
--- error_log
ended (-, -): fallback, known from nothing



=== TEST 9: the table's bound: with 2 entries, the third call makes the first forgotten; no crash
--- http_config
    twirt_outcome_entries 2;
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario silence --duration-ms 300 --call-sid CA00000000000000000000000000bound1
--- check
for my $n (2, 3) {
    my $tag = "bound$n-$$";
    my ($rc) = Twirt::Peers::twilio_call("--url ws://127.0.0.1:" . ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984) . "/twilio/media --param calltag=$tag --scenario silence --duration-ms 300 --call-sid CA00000000000000000000000000bound$n");
    is($rc, 0, "call $n");
}
my ($status, $body) = main::after('CA00000000000000000000000000bound1');
like($body, qr{<Say language="ja-JP">}, 'the oldest is forgotten: the fallback');
for my $n (2, 3) {
    ($status, $body) = main::after("CA00000000000000000000000000bound$n");
    like($body, qr{<Hangup/>}, "call $n is still known: hang up");
}
# the same call ending again takes no new entry
($status, $body) = main::after('CA00000000000000000000000000bound2');
like($body, qr{<Hangup/>}, 'asked twice, still known');
--- error_log
ended (-, -): fallback, known from nothing
--- no_error_log
[alert]
[crit]



=== TEST 10: the table at its largest (1000000 entries) fits its zone: nginx starts and answers
--- http_config
    twirt_outcome_entries 1000000;
--- config
    location = /twilio/media { twirt_stream; }
--- request
POST /twilio/after
CallSid=CA00000000000000000000000000large1
--- more_headers
Content-Type: application/x-www-form-urlencoded
--- response_body_like: <Say language="ja-JP">
--- no_error_log
no memory
[emerg]
