# Never left in silence (README, "Silence and failed responses"): a silent
# caller is asked again, counted from the echo of the agent's last mark,
# then told goodbye and the call ends "idle"; a failed response is asked
# for again, then apologised for, else the call fails to the fallback.
# Timings are read from the Twilio peer's own record, as bounds.

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
    twirt_close_timeout 1s;
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;
    twirt_fallback_say "ただいま電話が混み合っております。" language=ja-JP;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
        . "location = /status { twirt_status; }\n"
        . "location = /twilio/after { twirt_action; }\n"
        . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

# the response.create events twirt sent, in order
sub creates {
    my ($sim) = @_;
    return [ map { $_->{event} }
             grep { ($_->{dir} // '') eq 'in'
                    && ($_->{event}{type} // '') eq 'response.create' } @$sim ];
}

# a metric of the running nginx, once the call is counted (bounded)
sub metric {
    my ($re) = @_;
    my $text = '';
    for (1 .. 100) {
        (undef, $text) = http_get_text('/status');
        last if $text =~ /^twirt_calls_ended_total\{reason="[a-z_]+"\} [1-9]/m;
        select(undef, undef, undef, 0.05);
    }
    return $text =~ $re ? $1 : undef;
}

sub record_of {
    my ($sid) = @_;
    redis_wait(5, sub { (redis_cli('--raw', 'HGET', "twirt:call:$sid", 'ended_at'))[0] });
    return { redis_cli('--raw', 'HGETALL', "twirt:call:$sid") };
}

__DATA__

=== TEST 1: a silent caller: asked again a timeout after the greeting's last mark was echoed (not after it was sent), then the goodbye, heard to its end, and the call ends "idle"
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい";
        twirt_silence_timeout 1s;
        twirt_silence_tries 1;
        twirt_silence_prompt "{{name}}様、もしもし";
        twirt_silence_goodbye "失礼します";
    }
--- twilio
--scenario silence --playback-delay-ms 1000 --duration-ms 20000 --param name=山田 --call-sid CA0000000000000000000000000silence1
--- check
my $utt = utterances($twilio);
is(scalar @$utt, 3, 'the greeting, one prompt, the goodbye') or diag(explain($utt));
ok($utt->[0]{played} - $utt->[0]{last_sent} >= 1000,
   "the greeting was heard a playback delay after it was sent ($utt->[0]{last_sent} ms, echoed $utt->[0]{played} ms)");
ok($utt->[1]{first_sent} - $utt->[0]{played} >= 1000,
   "the prompt came a timeout after the greeting's last echo ($utt->[1]{first_sent} ms)");
ok($utt->[2]{first_sent} - $utt->[1]{played} >= 1000,
   "the goodbye a timeout after the prompt's last echo ($utt->[2]{first_sent} ms, echoed $utt->[1]{played} ms)");
my @say = map { $_->{response}{instructions} // '' } @{ main::creates($sim) };
is(scalar @say, 3, 'three responses asked for');
like($say[1], qr/word for word[^\n]*Say exactly: 山田様、もしもし$/, 'the prompt, word for word, {{name}} filled');
like($say[2], qr/Say exactly: 失礼します$/, 'then the goodbye');
is(main::creates($sim)->[1]{response}{metadata}{twirt}, 'say', 'tagged as said by twirt');
is($call->{close}{by}, 'gateway', 'the gateway ended the call');
is($call->{close}{code}, 1000, 'normally');
is($call->{marks_pending_at_end}, 0, 'once the goodbye had played');
is($call->{agent_audio_ms_played}, $call->{agent_audio_ms_received}, 'all of it');
my @silence = map { $_->{action} . ($_->{try} // '') } grep { $_->{type} eq 'silence' } @{ twirt_events($call->{call_sid}) };
is_deeply(\@silence, ['prompt1', 'goodbye'], 'call events: a prompt, the goodbye');
my $rec = main::record_of($call->{call_sid});
is($rec->{status}, 'ended', 'the record: ended, not failed');
is($rec->{end_reason}, 'idle', 'end_reason idle');
is(main::metric(qr/^twirt_calls_ended_total\{reason="idle"\} (\d+)$/m), 1, 'counted as idle');
is(main::metric(qr/^twirt_silence_prompts_total (\d+)$/m), 1, 'one prompt counted');
my ($st, $body) = http_post('/twilio/after', "CallSid=$call->{call_sid}&CallStatus=in-progress");
like($body, qr{<Response><Hangup/></Response>}, 'no fallback after it');
--- error_log eval
[qr/the caller said nothing for 1000 ms after the agent was heard: asking again \(1 of 1\)/,
 qr/the caller said nothing for 1000 ms after 1 prompts: the agent says goodbye/,
 qr/ended: the caller stayed silent/]
--- no_error_log
[error]



=== TEST 2: the caller answers before the timeout: no prompt; the silence counts again only once the answer was heard
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい";
        twirt_silence_timeout 2s;
    }
--- twilio
--scenario silence-answer
--- check
my $utt = utterances($twilio);
is(scalar @$utt, 2, 'the greeting and the answer, nothing else') or diag(explain($utt));
my @say = grep { /Say exactly/ } map { $_->{response}{instructions} // '' } @{ main::creates($sim) };
is(scalar @say, 1, 'only the greeting was said by twirt');
is(scalar(grep { $_->{type} eq 'silence' } @{ twirt_events($call->{call_sid}) }), 0, 'no silence event');
is($call->{close}{by}, 'caller', 'the caller hung up');
--- no_error_log
asking again



=== TEST 3: a keypad key is the caller too: the prompt comes a timeout after the key, not after the greeting
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい";
        twirt_silence_timeout 1500ms;
        twirt_silence_prompt "もしもし";
    }
--- twilio
--scenario silence --duration-ms 5500 --dtmf 2000:5
--- check
my $utt = utterances($twilio);
my ($key) = grep { $_->{dir} eq 'out' && ($_->{msg}{event} // '') eq 'dtmf' } @$twilio;
ok($key, 'the key was pressed') or return;
ok($key->{t} - $utt->[0]{played} < 1500, "before the timeout ($key->{t} ms, greeting echoed $utt->[0]{played} ms)");
is(scalar @$utt, 2, 'then one prompt') or diag(explain($utt));
ok($utt->[1]{first_sent} - $key->{t} >= 1500, "a timeout after the key ($utt->[1]{first_sent} ms)");
--- error_log
asking again (1 of 2)



=== TEST 4: a failed response is asked for once more, as it was asked: the greeting is said
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=failed_responses=1;
        twirt_greeting "お電話ありがとうございます";
    }
--- twilio
--scenario silence --duration-ms 2500
--- check
my @c = @{ main::creates($sim) };
is(scalar @c, 2, 'two response.create');
is($c[1]{response}{instructions}, $c[0]{response}{instructions}, 'the second as the first');
is($sim_summary->{responses_failed}, 1, 'the first failed');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is_deeply(\@lines, ['お電話ありがとうございます'], 'the caller heard the greeting');
is(main::metric(qr/^twirt_responses_failed_total (\d+)$/m), 1, 'one failure counted');
is(main::metric(qr/^twirt_responses_retried_total (\d+)$/m), 1, 'one retry');
--- error_log eval
[qr/response failed: server_error/, qr/asking for the failed response again/]
--- no_error_log
[error]



=== TEST 5: failed again: the agent apologises, and the call goes on
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=failed_responses=2;
        twirt_greeting "お電話ありがとうございます";
        twirt_response_apology "申し訳ございません。";
    }
--- twilio
--scenario silence --duration-ms 2500
--- check
my @c = map { $_->{response}{instructions} // '' } @{ main::creates($sim) };
is(scalar @c, 3, 'the greeting, again, then the apology');
like($c[2], qr/Say exactly: 申し訳ございません。$/, 'the apology, word for word');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is_deeply(\@lines, ['申し訳ございません。'], 'the caller heard it');
is($call->{close}{by}, 'caller', 'the call went on until the caller hung up');
is(main::metric(qr/^twirt_apologies_total (\d+)$/m), 1, 'counted');
--- error_log
the response failed again: the agent apologises
--- no_error_log
[error]



=== TEST 6: failed twice with no apology: the call fails, at once, to the fallback
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=failed_responses=2;
        twirt_greeting "お電話ありがとうございます";
        twirt_response_apology off;
    }
--- twilio
--scenario silence --duration-ms 10000 --call-sid CA0000000000000000000000000silence6
--- check
is(scalar @{ main::creates($sim) }, 2, 'asked twice, no apology');
is($call->{close}{by}, 'gateway', 'the gateway closed the stream');
ok($call->{duration_ms} < 9000, "before the caller hung up ($call->{duration_ms} ms)");
my $rec = main::record_of($call->{call_sid});
is($rec->{status}, 'failed', 'the record: failed');
is($rec->{end_reason}, 'response_failed', 'end_reason response_failed');
is(main::metric(qr/^twirt_calls_ended_total\{reason="response_failed"\} (\d+)$/m), 1, 'counted');
my ($st, $body) = http_post('/twilio/after', "CallSid=$call->{call_sid}&CallStatus=in-progress");
utf8::decode($body);
like($body, qr{<Say language="ja-JP">ただいま電話が混み合っております。</Say>}, 'the action answers the fallback');
--- error_log eval
[qr/2 responses failed in a row and nothing more can be said: the call fails/, qr/ended: the model's responses failed/]
