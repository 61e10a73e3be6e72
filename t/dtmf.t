# Keypad input (twirt_dtmf): keys pressed on a simulated call are logged
# and recorded as call events; with "model" they are collected until the
# terminator, a pause or the bound and reach the Realtime simulator as ONE
# user message ("keypad: 12345") followed by one response.create.

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
    twirt_instructions "あなたは電話オペレーターです。[calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

# what twirt sent the simulator that gives input or asks for an answer,
# in order: "keypad: 12" for a user text message, "response" for a
# response.create, "other item" for any other item
sub inputs {
    my ($sim) = @_;
    my @out;
    for my $r (@$sim) {
        next unless ($r->{dir} // '') eq 'in' && ref $r->{event};
        my $ev = $r->{event};
        if ($ev->{type} eq 'response.create') {
            push @out, 'response';
        } elsif ($ev->{type} eq 'conversation.item.create') {
            my $item = $ev->{item};
            my $c = $item->{content} // [];
            if ($item->{type} eq 'message' && $item->{role} eq 'user'
                && @$c == 1 && $c->[0]{type} eq 'input_text')
            {
                push @out, $c->[0]{text};
            } else {
                push @out, 'other item';
            }
        }
    }
    return \@out;
}

# the keys of the call's "dtmf" events, and the digits of its "keypad" ones
sub keys_logged {
    my ($call_sid, $type, $field) = @_;
    return join ' ', map { $_->{$field} }
        grep { $_->{type} eq $type } @{ twirt_events($call_sid) };
}

__DATA__

=== TEST 1: a member number typed with the terminator reaches the model as one input, then one response is asked for; the keys are events in Redis
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=10s;
    }
--- twilio
--duration-ms 3000 --call-sid CA00000000000000000000000000000dtmf1 --dtmf '500:12345#'
--- check
# the pause is 10 s, longer than the call: only the terminator can send it
is_deeply(main::inputs($sim), [ 'keypad: 12345', 'response' ],
          'one user message with the digits, then one response.create');
is(main::keys_logged($call->{call_sid}, 'dtmf', 'digit'), '1 2 3 4 5 #',
   'each key is a call event, the terminator too');
is(main::keys_logged($call->{call_sid}, 'keypad', 'digits'), '12345',
   'and the input given to the model is one');
my $key = 'twirt:call:CA00000000000000000000000000000dtmf1';
ok(redis_wait(5, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }),
   'the call record ended');
my $e = redis_stream_entries("$key:events");
is(join(' ', map { $_->{type} eq 'dtmf' ? $_->{digit} : "keypad:$_->{digits}" }
             grep { $_->{type} =~ /^(dtmf|keypad)$/ } @$e),
   '1 2 3 4 5 # keypad:12345', 'the events stream has every key and the input');
--- error_log eval
[qr/caller pressed "5"/, qr/keypad input "12345" given to the model/]
--- no_error_log
[alert]
[warn]



=== TEST 2: no terminator: a pause of "timeout" after the last key sends them, as one input however long the keys took
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=500ms;
    }
--- twilio
--duration-ms 3500 --dtmf 500:43218765
--- check
# 8 keys over 700 ms: a pause counted from the first key would cut them
is_deeply(main::inputs($sim), [ 'keypad: 43218765', 'response' ],
          'one user message with all the keys, then one response.create');
is(main::keys_logged($call->{call_sid}, 'keypad', 'digits'), '43218765',
   'one keypad event');
--- error_log eval
[qr/keypad pause after 8 keys/]
--- no_error_log
[alert]



=== TEST 3: two sequences in one call: two inputs, each followed by its response
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=10s;
    }
--- twilio
--duration-ms 4000 --dtmf '500:12#' --dtmf '2000:3*4#'
--- check
is_deeply(main::inputs($sim),
          [ 'keypad: 12', 'response', 'keypad: 3*4', 'response' ],
          'two user messages, each followed by a response.create');
is($sim_summary->{errors_sent}, 0, 'the simulator saw no second response while one was active');
--- no_error_log
[alert]



=== TEST 4: the terminator alone sends nothing; it is still an event
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model;
    }
--- twilio
--duration-ms 1500 --dtmf '500:#'
--- check
is_deeply(main::inputs($sim), [], 'no item, no response.create');
is(main::keys_logged($call->{call_sid}, 'dtmf', 'digit'), '#', 'the key is an event');
is(main::keys_logged($call->{call_sid}, 'keypad', 'digits'), '', 'no keypad input');
--- no_error_log
given to the model
[alert]



=== TEST 5: more keys than the bound: the first 32 are given as they are, with a warning; the rest is the next input
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=10s;
    }
--- twilio
--duration-ms 5000 --dtmf '500:12345678901234567890123456789012ABC#'
--- check
is_deeply(main::inputs($sim),
          [ 'keypad: 12345678901234567890123456789012', 'response',
            'keypad: ABC', 'response' ],
          '32 keys, then the 3 after them');
--- error_log
keypad input reached 32 keys without the terminator, given to the model as it is
--- no_error_log
[alert]



=== TEST 6: invalid keys (lowercase too) are ignored, counted and logged; the valid ones around them are one input
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=10s;
    }
    location = /status { twirt_status; }
--- twilio
--duration-ms 2500 --dtmf '500:1Xa2E#'
--- check
my ($status, $text) = http_get_text('/status');
like($text, qr/^twirt_errors_total\{kind="invalid_dtmf"\} 3$/m, 'three counted as invalid_dtmf');
is_deeply(main::inputs($sim), [ 'keypad: 12', 'response' ],
          'only the valid keys, as one input');
is(main::keys_logged($call->{call_sid}, 'dtmf', 'digit'), '1 2 #',
   'no event for an invalid key');
--- error_log eval
[qr/ignored dtmf with an invalid digit "X"/,
 qr/ignored dtmf with an invalid digit "a"/,
 qr/ignored dtmf with an invalid digit "E"/,
 qr/ended: stop, .*dtmf 6, ignored 3,/]
--- no_error_log
[alert]



=== TEST 7: "off" gives the model nothing, also over an inherited "model"; the keys are still logged and recorded
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_dtmf model;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf off;
    }
--- twilio
--duration-ms 3500 --call-sid CA00000000000000000000000000000dtmf7 --dtmf '500:12#' --dtmf 1000:34
--- check
is_deeply(main::inputs($sim), [], 'no item, no response.create');
is(main::keys_logged($call->{call_sid}, 'dtmf', 'digit'), '1 2 # 3 4',
   'every key is a call event');
my $key = 'twirt:call:CA00000000000000000000000000000dtmf7';
ok(redis_wait(5, sub { (redis_cli('--raw', 'HGET', $key, 'status'))[0] eq 'ended' }),
   'the call record ended');
my $e = redis_stream_entries("$key:events");
is(join(' ', map { $_->{digit} } grep { $_->{type} eq 'dtmf' } @$e),
   '1 2 # 3 4', 'and in the events stream');
--- error_log eval
[qr/caller pressed "1"/, qr/caller pressed "#"/, qr/ended: stop, .*dtmf 5, ignored 0,/]
--- no_error_log
given to the model
keypad pause
[alert]



=== TEST 8: without the directive (off, the default) the keys are only events
--- config
    location = /twilio/media {
        twirt_stream;
    }
--- twilio
--duration-ms 2000 --dtmf '500:12#'
--- check
is_deeply(main::inputs($sim), [], 'no item, no response.create');
is(main::keys_logged($call->{call_sid}, 'dtmf', 'digit'), '1 2 #',
   'every key is a call event');
--- no_error_log
given to the model
[alert]



=== TEST 9: a location without the directive takes the server's; the terminator can be another key, "#" then is a digit
--- http_config
    twirt_dtmf model terminator=* timeout=10s;
--- config
    location = /twilio/media {
        twirt_stream;
    }
--- twilio
--duration-ms 2500 --dtmf '500:1#2*'
--- check
is_deeply(main::inputs($sim), [ 'keypad: 1#2', 'response' ],
          '"#" collected, "*" ends the input');
--- no_error_log
[alert]



=== TEST 10: a hang-up while keys are pending: nothing is sent, the pause timer goes with the call (another call outlives it)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=1s;
    }
--- twilio
--duration-ms 900 --dtmf 500:123
--- check
is_deeply(main::inputs($sim), [], 'no item, no response.create');
like(main::error_log_text(), qr/ended: stop/, 'the call ended');
# a second call lasts past the moment the first call's pause would end:
# a timer left behind would fire on a freed call
my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my ($rc) = Twirt::Peers::twilio_call("--url ws://127.0.0.1:$port/twilio/media --duration-ms 2000");
is($rc, 0, 'a second call, 2 s');
my $log = main::error_log_text();
my @ended = $log =~ /ended: stop/g;
is(scalar @ended, 2, 'both calls ended');
unlike($log, qr/keypad pause|keypad input/, 'the first call\'s keys were never sent nor timed out');
unlike($log, qr/\[alert\]|exited on signal/, 'no alert, no crash');



=== TEST 11: a caller whose connection drops while keys are pending: the same
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_dtmf model timeout=1s;
    }
--- twilio
--duration-ms 3000 --abort-after-ms 900 --dtmf 500:123
--- check
is_deeply(main::inputs($sim), [], 'no item, no response.create');
my $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my ($rc) = Twirt::Peers::twilio_call("--url ws://127.0.0.1:$port/twilio/media --duration-ms 2000");
is($rc, 0, 'a second call, 2 s');
my $log = main::error_log_text();
unlike($log, qr/keypad pause|keypad input/, 'the first call\'s keys were never sent nor timed out');
unlike($log, qr/\[alert\]|exited on signal/, 'no alert, no crash');



=== TEST 12: keys whose input is due before the Realtime session is configured are dropped, saying so
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=stall_handshake;
        twirt_openai_connect_timeout 10s;
        twirt_dtmf model;
    }
--- twilio
--duration-ms 1000 --dtmf '200:12#'
--- no_sim
--- check
is(main::keys_logged($call->{call_sid}, 'keypad', 'digits'), '', 'no keypad input');
--- error_log
keypad input "12" dropped: the Realtime session is not ready
--- no_error_log
given to the model
[alert]
