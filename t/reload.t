# nginx -s reload in the middle of a call: the old worker keeps the call
# to its end, untouched, and does not exit before Redis has its record's
# end.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

master_on();
workers(1);
place_calls_from_blocks($sim);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call goes on through a reload
--- http_config
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
--- config
    location = /ping { return 200 'ok'; }
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- request
GET /ping
--- twilio
--scenario ja-booking --duration-ms 7000
--- during
100: main::nginx_reload()
--- check
is($call->{close}{by}, 'caller', 'the caller hung up, not the gateway');
is($sim_summary->{appended_bytes}, 160 * $call->{media_sent}, 'no caller audio lost');
is($call->{agent_audio_sha1}, $sim_summary->{audio_out_sha1}, 'no agent audio lost');
like(main::error_log_text(), qr/signal 1 \(SIGHUP\) received/, 'nginx was reloaded');
--- error_log eval
[qr/ended: stop, duration 7\.\d{3}s/, qr/gracefully shutting down/]
--- no_error_log
[alert]



=== TEST 2: the old worker exits once Redis has answered the end of the call's record
--- http_config
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /ping { return 200 'ok'; }
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- request
GET /ping
--- twilio
--scenario ja-booking --duration-ms 5000 --call-sid CA0000000000000000000000000reload2
--- during
100: main::nginx_reload()
--- check
my $key = 'twirt:call:CA0000000000000000000000000reload2';
ok(redis_wait(10, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }), 'the record ended');
my $e = redis_stream_entries("$key:events");
is($e->[-1]{type}, 'state', 'the last event is the end');
is($e->[-1]{status}, 'ended', '  ended');
is_deeply([redis_cli('--raw', 'SISMEMBER', 'twirt:calls:active', 'CA0000000000000000000000000reload2')], [0], 'no longer active');
--- error_log eval
[qr/ended: stop, duration 5\.\d{3}s/, qr/gracefully shutting down/]
--- no_error_log
[alert]
commands not acknowledged
