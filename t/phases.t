# The call's phases (ngx_http_twirt_call.c): every transition, the usual
# ones and the odd ones, driven by simulated calls through nginx and read
# back from the debug lines "call phase A -> B", in order.

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
    twirt_openai_api_key sk-test;
    twirt_instructions "あなたは{{company}}の電話オペレーターです。[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

sub events_of { my ($sim, $type) = @_; [ grep { ($_->{event}{type} // '') eq $type } @$sim ] }

__DATA__

=== TEST 1: a whole call: setup, configured (session.update), active (session.updated), ending (stop), done
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
        twirt_greeting "はい";
    }
--- twilio
--scenario silence --duration-ms 1500
--- check
is(scalar @{ main::events_of($sim, 'session.update') }, 1, 'one session.update');
ok($call->{agent_audio_ms_received} > 0, 'the greeting was heard');
--- grep_error_log eval: qr/call phase \w+ -> \w+|ended: \w+/
--- grep_error_log_out
call phase setup -> configured
call phase configured -> active
call phase active -> ending
ended: stop
call phase ending -> done



=== TEST 2: "stop" during setup (the upstream handshake stalls): setup -> ending, no session update
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=stall_handshake;
        twirt_openai_connect_timeout 10s;
    }
--- twilio
--scenario silence --duration-ms 600
--- no_sim
--- check
ok($call->{duration_ms} < 5000, 'ended at the stop, not at the connect timeout');
--- grep_error_log eval: qr/call phase \w+ -> \w+|ended: \w+|waiting for 0x\w+/
--- grep_error_log_out
waiting for 0x2
call phase setup -> ending
ended: stop
call phase ending -> done



=== TEST 3: the upstream fails while the agent profile is still being read: setup -> ending, the read is cancelled
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=stall_handshake;
        twirt_openai_connect_timeout 1s;
        twirt_agent_timeout 10s;
    }
    location = /twilio/media2 {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:sales', 'voice', 'cedar');
Twirt::Redis::redis_pause();
--- twilio
--scenario silence --duration-ms 4000 --param agent=sales
--- no_sim
--- check
Twirt::Redis::redis_resume();
is($call->{close}{by}, 'gateway', 'the gateway closed the stream');
ok($call->{duration_ms} < 3500, 'at the connect timeout');
# Redis answers the cancelled read first, then this call's: only this
# call may take a profile
my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my ($rc, $second) = Twirt::Peers::twilio_call("--url ws://127.0.0.1:$port/twilio/media2 --scenario silence --duration-ms 1000 --param agent=sales");
is($rc, 0, 'a second call after Redis came back');
my $log = main::error_log_text();
my @read = $log =~ /agent profile read, \d+ fields/g;
is(scalar @read, 1, 'one profile read: the cancelled one was never delivered');
unlike($log, qr/agent profile not read in time/, 'no late timeout for the first call');
--- grep_error_log eval: qr/call phase setup -> \w+|ended: upstream connect timeout/
--- grep_error_log_out
call phase setup -> ending
ended: upstream connect timeout
call phase setup -> configured
--- error_log eval
[qr/call ready 0x1, waiting for 0x6/]
--- no_error_log
[alert]



=== TEST 4: the session update is rejected: configured -> ending, the call failed
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=reject_session_update;
    }
--- twilio
--scenario silence --duration-ms 3000
--- check
is($call->{close}{code}, 1011, 'closed as an internal error, so the fallback plays');
--- grep_error_log eval: qr/call phase \w+ -> \w+|ended: session update rejected/
--- grep_error_log_out
call phase setup -> configured
call phase configured -> ending
ended: session update rejected
call phase ending -> done



=== TEST 5: end_call during a barge-in: the goodbye is cleared and truncated where the caller cut in, then the call ends
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
        twirt_greeting "はい";
    }
--- twilio
--scenario end-call-barge-in
--- check
ok($call->{clears_received} >= 1, 'Twilio got a clear');
my @truncates = map { $_->{event} } @{ main::events_of($sim, 'conversation.item.truncate') };
is(scalar @truncates, 1, 'the goodbye was truncated');
ok($truncates[0]{audio_end_ms} > 0 && $truncates[0]{audio_end_ms} < 4000, 'inside the 4 s goodbye');
is($call->{close}{by}, 'gateway', 'the gateway hung up');
is($call->{close}{code}, 1000, 'normally');
ok($call->{duration_ms} < 8000, 'before the caller would have');
--- grep_error_log eval: qr/call phase \w+ -> \w+|ended: \w+|"name":"end_call"|barge-in: item/
--- grep_error_log_out
call phase setup -> configured
call phase configured -> active
"name":"end_call"
barge-in: item
call phase active -> ending
ended: end_call
call phase ending -> done
