# The call, end to end: a simulated Twilio call through nginx to the
# Realtime simulator, asserting on what both peers recorded.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test-NEVER-LOGGED-4242;
    twirt_instructions "あなたは{{company}}の電話オペレーターです。[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

sub events_of { my ($sim, $type) = @_; [ grep { ($_->{event}{type} // '') eq $type } @$sim ] }

__DATA__

=== TEST 1: a Japanese conversation with a greeting: transcripts in order and intact
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。{{company}}です。ご用件をどうぞ。";
        twirt_transcription gpt-4o-mini-transcribe language=ja;
    }
--- twilio
--scenario ja-booking --param company=さくら歯科 --check-agent-audio
--- check
my $update = main::events_of($sim, 'session.update')->[0]{event}{session};
like($update->{instructions}, qr/^あなたはさくら歯科の電話オペレーターです。/, 'instructions filled from the parameters');
is($update->{audio}{input}{format}{type}, 'audio/pcmu', 'pcmu in');
is($update->{audio}{output}{format}{type}, 'audio/pcmu', 'pcmu out');
is($update->{audio}{input}{transcription}{language}, 'ja', 'transcription language');
# the greeting's response.instructions replace the session's for that answer
my $greet = main::events_of($sim, 'response.create')->[0]{event}{response}{instructions};
like($greet, qr/^\Q$update->{instructions}\E\n/, 'the greeting keeps the filled instructions');
like($greet, qr/\nStart the call now: greet the caller first[^\n]*Say exactly: お電話ありがとうございます。さくら歯科です。ご用件をどうぞ。$/,
     'and asks to say the filled greeting as written, last');
is($sim_summary->{errors_sent}, 0, 'the simulator reported no error');
is($call->{agent_audio_bytes}, $sim_summary->{audio_out_bytes}, 'every byte of agent audio reached the caller');
is($call->{agent_audio_sha1}, $sim_summary->{audio_out_sha1}, 'byte for byte');
is($sim_summary->{appended_bytes}, 160 * $call->{media_sent}, 'every caller frame reached the model');
is($call->{marks_received}, $call->{media_received}, 'a mark after each media');
my @lines = map { "$_->{role}: $_->{text}" } grep { $_->{type} eq 'transcript' } @{ main::twirt_events($call->{call_sid}) };
is_deeply(\@lines, [
    'agent: お電話ありがとうございます。さくら歯科です。ご用件をどうぞ。',
    'caller: 予約を変更したいのですが',
    'agent: かしこまりました。ご予約番号をお願いします。',
    'caller: 一二三四五です',
    'agent: ありがとうございます。ご希望の日時をお知らせください。',
    'caller: 明日の午後三時でお願いします',
    'agent: 明日の午後三時に変更いたしました。お電話ありがとうございました。',
], 'transcript lines in order, UTF-8 intact') or diag(join "\n", @lines);
--- error_log eval
[qr/ended: stop, .*tokens [1-9]\d*, cost \$0\.\d+/, qr/session ready \d+ ms after the upgrade/]
--- no_error_log
[error]
[warn]



=== TEST 2: barge-in mid-answer, a mark per delta (twirt_mark_interval 0): clear, then a truncate of exactly the milliseconds the last echoed mark proves heard, accepted
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "はい"; twirt_mark_interval 0; }
--- twilio
--scenario barge-in
--- check
my @truncates = map { $_->{event} } @{ main::events_of($sim, 'conversation.item.truncate') };
ok(@truncates >= 1, 'truncate sent') or return;
is($sim_summary->{errors_sent}, 0, 'the simulator accepted every truncate (no "already shorter than")');
is(scalar @{ main::events_of($sim, 'conversation.item.truncated') }, scalar @truncates, 'each truncate confirmed');
ok($call->{clears_received} >= 1, 'Twilio got a clear');
# the first barge-in: the 1 s greeting had played, the answer was playing
my ($clear) = grep { $_->{dir} eq 'in' && $_->{msg}{event} eq 'clear' } @$twilio;
my @played = grep { $_->{dir} eq 'out' && $_->{msg}{event} eq 'mark'
                    && ($_->{cause} // '') eq 'played' && $_->{t} < $clear->{t} } @$twilio;
# the agent audio Twilio had before the last mark it echoed as played
my $last = $played[-1]{msg}{mark}{name};
my $bytes = 0;
for my $r (grep { $_->{dir} eq 'in' } @$twilio) {
    last if $r->{msg}{event} eq 'mark' && $r->{msg}{mark}{name} eq $last;
    $bytes += $r->{msg}{media}{payload}{bytes} if $r->{msg}{event} eq 'media';
}
my $heard = $bytes / 8 - 1000;
is($truncates[0]{audio_end_ms}, $heard, "audio_end_ms is what the last echoed mark proves heard ($heard ms)");
ok($truncates[0]{audio_end_ms} > 0 && $truncates[0]{audio_end_ms} < 6000, 'inside the 6 s answer');
is($truncates[0]{content_index}, 0, 'content_index 0');
ok($truncates[0]{item_id} =~ /^item_/, 'truncates an assistant item');
--- error_log
barge-in: item



=== TEST 3: barge-in after the answer finished playing: no clear, no truncate
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario ja-booking
--- check
is($call->{clears_received}, 0, 'no clear');
is(scalar @{ main::events_of($sim, 'conversation.item.truncate') }, 0, 'no truncate');
is($sim_summary->{errors_sent}, 0, 'no simulator error');



=== TEST 4: caller audio before start and during the upstream connect reaches the model, in order
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario silence --pre-start-media 40
--- check
my @sent = map { $_->{msg}{media}{payload}{sha1} } grep { $_->{dir} eq 'out' && $_->{msg}{event} eq 'media' } @$twilio;
my @got = map { $_->{event}{audio}{sha1} } @{ main::events_of($sim, 'input_audio_buffer.append') };
is(scalar @sent, $call->{media_sent}, 'all frames recorded');
ok(@sent > 40, 'more than the early frames');
is_deeply(\@got, \@sent, 'every frame, in order, none lost');
--- error_log eval
[qr/call started after \d+ ms, 40 media before start/, qr/sent 40 frames of caller audio kept while connecting, 0 dropped/]



=== TEST 5: more early audio than twirt_early_audio keeps: the overflow is counted and logged
--- config
    location = /twilio/media { twirt_stream; twirt_early_audio 200ms; }
--- twilio
--scenario silence --pre-start-media 25
--- check
is(scalar @{ main::events_of($sim, 'input_audio_buffer.append') }, $call->{media_sent} - 15, 'the first 10 frames were kept, 15 dropped');
--- error_log eval
[qr/the Realtime session is not ready after 10 frames of caller audio, dropping more/, qr/sent 10 frames of caller audio kept while connecting, 15 dropped/]



=== TEST 6: end_call: the goodbye plays to its end, then the stream closes
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario end-call
--- check
is($call->{close}{by}, 'gateway', 'the gateway hung up');
is($call->{close}{code}, 1000, 'normally');
ok($call->{agent_audio_ms_received} > 0, 'agent audio');
is($call->{agent_audio_ms_played}, $call->{agent_audio_ms_received}, 'all of the goodbye was played');
is($call->{marks_pending_at_end}, 0, 'every mark came back first');
ok($call->{duration_ms} < 9000, 'before the caller would have hung up');
my $decl = main::events_of($sim, 'session.update')->[0]{event}{session}{tools};
is($decl->[0]{name}, 'end_call', 'end_call declared to the model');
--- error_log eval
[qr/ended: end_call/, qr/"name":"end_call","type":"tool"/]



=== TEST 7: twirt_end_call off: the tool is not declared
--- config
    location = /twilio/media { twirt_stream; twirt_end_call off; }
--- twilio
--scenario silence --duration-ms 1000
--- check
ok(!exists main::events_of($sim, 'session.update')->[0]{event}{session}{tools}, 'no tools');



=== TEST 8: the upstream dies mid-call: the stream closes so that the fallback plays
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=close_1011=1000;
    }
--- twilio
--scenario ja-booking
--- check
is($call->{close}{by}, 'gateway', 'closed by the gateway');
is($call->{close}{code}, 1011, 'with 1011');
ok($call->{duration_ms} < 5000, 'at once, no dead air');
--- error_log eval
[qr/\[error\].*the Realtime API connection ended: upstream closed 1011.*call: CA/, qr/ended: upstream closed 1011/]



=== TEST 9: the session update is rejected: the call setup fails to the fallback
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=reject_session_update;
    }
--- twilio
--scenario ja-booking
--- check
is($call->{close}{code}, 1011, 'the stream closed with 1011');
ok($call->{duration_ms} < 3000, 'at once');
my ($err) = grep { $_->{dir} eq 'out' && ($_->{event}{type} // '') eq 'error' } @$sim;
ok($err, 'the simulator rejected the update') or return;
# appends already on their way may land; none may come well after
my @late = grep { $_->{dir} eq 'in' && ($_->{event}{type} // '') eq 'input_audio_buffer.append'
                  && $_->{t} > $err->{t} + 500 } @$sim;
is(scalar @late, 0, 'the call did not go on on defaults');
--- error_log eval
[qr/rejected the session update: invalid_value/, qr/"status":"failed"/]



=== TEST 10: the Realtime API refuses the connection: the stream closes at once
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_RAND_PORT_1/v1/realtime;
    }
--- twilio
--scenario ja-booking
--- no_sim
--- check
is($call->{close}{code}, 1011, 'closed with 1011');
ok($call->{duration_ms} < 2000, 'at once');
--- error_log eval
[qr/Realtime API unavailable: connection refused/, qr/ended: connection refused/]



=== TEST 11: a bad API key fails the call loudly, without retrying
--- config
    location = /twilio/media { twirt_stream; twirt_openai_api_key sk-bad; }
--- twilio
--scenario ja-booking
--- no_sim
--- check
is($call->{close}{code}, 1011, 'closed with 1011');
ok($call->{duration_ms} < 3000, 'at once');
--- error_log
the Realtime API refused the API key



=== TEST 12: the session expires: the call ends
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=session_expired=800;
    }
--- twilio
--scenario ja-booking
--- check
is($call->{close}{by}, 'gateway', 'the gateway closed the stream');
--- error_log
ended: session expired



=== TEST 13: twenty concurrent calls in one worker: each hears only its own answers
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- twilio
--scenario silence --calls 20 --check-agent-audio
--- check
is(scalar(() = main::error_log_text() =~ /ended: stop/g), 20, 'twenty calls ended normally');
--- no_error_log
[error]



=== TEST 14: Twilio disconnects abruptly: the upstream is closed and the summary logged
--- config
    location = /twilio/media { twirt_stream; }
--- twilio
--scenario ja-booking --abort-after-ms 3000
--- twilio_exit: 0
--- check
my ($close) = grep { $_->{dir} eq 'close' } @$sim;
ok($close, 'the simulator saw the session closed') or return;
is($close->{by}, 'client', 'by twirt');
--- error_log eval
[qr/ended: connection lost, duration 3\.\d{3}s/]



=== TEST 15: a template variable without a value becomes empty; a stray "{{" never reaches the model
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_instructions "Hello {{nobody}}, {{ company }} [calltag:{{calltag}}] {{ unclosed";
    }
--- twilio
--scenario silence --duration-ms 1000 --param company=ACME
--- check
my $i = main::events_of($sim, 'session.update')->[0]{event}{session}{instructions};
like($i, qr/^Hello , ACME \[calltag:[^\]]+\]  unclosed$/, 'filled') or diag $i;
unlike($i, qr/\{\{|\}\}/, 'no template syntax left');
--- error_log
template variable "nobody" has no value, left empty



=== TEST 16: twirt_max_call_duration ends a call in progress
--- config
    location = /twilio/media { twirt_stream; twirt_max_call_duration 2s; }
--- twilio
--scenario ja-booking
--- check
is($call->{close}{by}, 'gateway', 'closed by the gateway');
ok($call->{duration_ms} >= 2000 && $call->{duration_ms} < 4000, 'after 2 s');
--- error_log
ended: max call duration



=== TEST 17: the session update is the GA shape with the configured session
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_voice cedar;
        twirt_vad semantic eagerness=low interrupt_response=on;
        twirt_noise_reduction far_field;
        twirt_max_output_tokens 1024;
        twirt_speed 1.1;
        twirt_session_json '{"tracing":"auto"}';
    }
--- twilio
--scenario silence --duration-ms 1000
--- check
my $s = main::events_of($sim, 'session.update')->[0]{event};
is($s->{event_id}, 'twirt_session_1', 'event_id for error correlation');
is($s->{session}{type}, 'realtime', 'session.type');
is($s->{session}{audio}{output}{voice}, 'cedar', 'voice');
is($s->{session}{audio}{output}{speed}, 1.1, 'speed');
is($s->{session}{tracing}, 'auto', 'raw JSON merged');
is($s->{session}{truncation}, 'auto', 'truncation');
is($s->{session}{tool_choice}, 'auto', 'tool choice');
is($s->{session}{audio}{input}{turn_detection}{type}, 'semantic_vad', 'semantic VAD');
is($s->{session}{audio}{input}{turn_detection}{eagerness}, 'low', 'eagerness');
is($s->{session}{audio}{input}{noise_reduction}{type}, 'far_field', 'noise reduction');
is($s->{session}{max_output_tokens}, 1024, 'max output tokens');
ok(!exists $s->{session}{temperature}, 'no temperature');
is($sim_summary->{errors_sent}, 0, 'accepted by the simulator');
my ($hs) = grep { $_->{dir} eq 'handshake' } @$sim;
ok(!grep({ lc($_) eq 'openai-beta' } keys %{ $hs->{headers} }), 'no OpenAI-Beta header');



=== TEST 18: the cost follows twirt_price: only model audio out priced, at 1 USD a token
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "こんにちは";
        twirt_price audio_in=0 cached_audio_in=0 audio_out=1000000 text_in=0
                    cached_text_in=0 text_out=0 transcribe_in=0 transcribe_out=0;
    }
--- twilio
--scenario ja-booking --duration-ms 6000
--- check
my $audio_out = 0;
$audio_out += $_->{event}{response}{usage}{output_token_details}{audio_tokens} // 0
    for @{ main::events_of($sim, 'response.done') };
ok($audio_out > 0, "the model spoke ($audio_out audio tokens)");
my ($end) = grep { $_->{type} eq 'state' && $_->{status} eq 'ended' } @{ main::twirt_events($call->{call_sid}) };
is($end->{cost_usd}, $audio_out, 'cost = audio out tokens x the configured price');



=== TEST 19: $twirt_* variables for access logs, of the webhook and of a finished stream
--- http_config
    log_format twirt '$uri $twirt_call_sid $twirt_stream_sid "$twirt_end_reason" $twirt_duration_ms $twirt_tokens $twirt_cost_usd';
    access_log logs/twirt.log twirt;
--- config
    location = /twilio/voice { twirt_twiml; }
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- twilio
--scenario ja-booking --duration-ms 3000 --call-sid CA0000000000000000000000000000logs --stream-sid MZ0000000000000000000000000000logs
--- check
my ($status) = http_post('/twilio/voice', 'CallSid=CAwebhook1');
is($status, 200, 'the webhook answered');
my $root = $ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot";
my $log = '';
for (1 .. 100) {
    $log = do { local (@ARGV, $/) = "$root/logs/twirt.log"; <> } // '';
    last if $log =~ m{/twilio/media .*\n.*/twilio/voice|/twilio/voice.*\n.*/twilio/media};
    select(undef, undef, undef, 0.05);
}
like($log, qr{^/twilio/media CA0000000000000000000000000000logs MZ0000000000000000000000000000logs "stop" \d+ [1-9]\d* 0\.\d{6}$}m, 'the stream: its sids, how it ended, duration, tokens, cost') or diag $log;
like($log, qr{^/twilio/voice CAwebhook1 - "-" - - -$}m, 'the webhook: its CallSid') or diag $log;



=== TEST 20: nothing of the greeting was heard yet when the caller cut in: it is truncated to 0 ms
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "はい"; }
--- twilio
--scenario barge-in --playback-delay-ms 3000
--- check
my @truncates = map { $_->{event} } @{ main::events_of($sim, 'conversation.item.truncate') };
ok(@truncates >= 1, 'truncate sent') or return;
is($truncates[0]{audio_end_ms}, 0, 'to 0 ms: the caller heard none of it');
is($sim_summary->{errors_sent}, 0, 'the simulator accepted it');
--- error_log eval
[qr/barge-in: item "item_\w+" played 0 ms of 1000 ms/]



=== TEST 21: audio deltas that are not strict base64 are dropped and counted, never played or counted as heard
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=bad_audio=200;
        twirt_greeting "はい";
    }
    location = /status { twirt_status; }
--- twilio
--scenario barge-in
--- check
is($call->{malformed} // 0, 0, 'Twilio got no malformed media');
my @truncates = map { $_->{event} } @{ main::events_of($sim, 'conversation.item.truncate') };
ok(@truncates >= 1, 'a barge-in still truncates');
ok($_->{audio_end_ms} < 10000, "a truncate within what was sent ($_->{audio_end_ms} ms)") for @truncates;
is($sim_summary->{errors_sent}, 0, 'the simulator accepted every truncate');
my ($status, $text) = http_get_text('/status');
like($text, qr/^twirt_errors_total\{kind="invalid_audio"\} 5$/m, 'five counted');
--- grep_error_log eval: qr/ignored an audio delta that is not base64/
--- grep_error_log_out eval
"ignored an audio delta that is not base64\n" x 5



=== TEST 22: a usage no session can reach is refused: the cost stays the call's own
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=huge_usage=200;
        twirt_greeting "はい";
    }
    location = /status { twirt_status; }
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($status, $text);
for (1 .. 200) {
    ($status, $text) = http_get_text('/status');
    last if $text =~ /^twirt_calls_ended_total\{reason="stop"\} 1$/m;
    select(undef, undef, undef, 0.05);
}
like($text, qr/^twirt_calls_ended_total\{reason="stop"\} 1$/m, 'the call ended');
my ($tokens, $cost) = main::error_log_text() =~ /ended: stop, .*tokens (\d+), cost \$([\d.]+)/;
ok(defined $tokens && $tokens > 0 && $tokens < 100000, "the call's own tokens ($tokens)");
ok(defined $cost && $cost < 1, "and cost (\$$cost)");
like($text, qr/^twirt_errors_total\{kind="invalid_usage"\} 1$/m, 'counted');
my ($total) = $text =~ /^twirt_cost_usd_total (\S+)$/m;
ok(defined $total && $total < 1, "the cost counter is sane ($total)");
--- error_log
ignored a usage of more than 100000000 tokens



=== TEST 23: responses that end incomplete or failed, and failed transcriptions, are events, log lines and metrics
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=incomplete_responses,transcription_failed;
        twirt_greeting "はい";
    }
    location = /status { twirt_status; }
--- twilio
--scenario ja-booking --duration-ms 6000
--- check
my @ev = @{ main::twirt_events($call->{call_sid}) };
my @resp = grep { $_->{type} eq 'response' } @ev;
ok(@resp >= 1, 'a response event');
is($resp[0]{status}, 'incomplete', 'incomplete');
is($resp[0]{reason}, 'max_output_tokens', 'and why');
my @tf = grep { $_->{type} eq 'error' && $_->{kind} eq 'transcription' } @ev;
ok(@tf >= 1, 'a failed transcription event');
is($tf[0]{code}, 'audio_unintelligible', 'its code');
my ($status, $text) = http_get_text('/status');
like($text, qr/^twirt_responses_incomplete_total [1-9]\d*$/m, 'incomplete responses counted');
like($text, qr/^twirt_transcriptions_failed_total [1-9]\d*$/m, 'failed transcriptions counted');
--- error_log eval
[qr/response incomplete: max_output_tokens/, qr/caller transcription failed: audio_unintelligible/]



=== TEST 24: a response that fails for insufficient_quota is an event, a log line and a metric, and fails the call at once (no retry: the fallback plays)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=insufficient_quota;
        twirt_greeting "はい";
    }
    location = /status { twirt_status; }
--- twilio
--scenario silence --duration-ms 1500
--- check
my @resp = grep { $_->{type} eq 'response' } @{ main::twirt_events($call->{call_sid}) };
is($resp[0]{status}, 'failed', 'failed');
is($resp[0]{reason}, 'insufficient_quota', 'and why');
my ($status, $text) = http_get_text('/status');
like($text, qr/^twirt_responses_failed_total 1$/m, 'counted');
is(scalar @{ main::events_of($sim, 'response.create') }, 1, 'not asked again');
is($call->{close}{by}, 'gateway', 'the call failed');
--- error_log eval
[qr/response failed: insufficient_quota/, qr/ended: the model's responses failed/]



=== TEST 25: CR, LF and NUL from the Realtime side (error code and message, tool name, transcription error) cannot forge a log line
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=hostile_text=200;
    }
--- twilio
--scenario silence --duration-ms 1500
--- error_log eval
[qr/Realtime API error bad\\x0d\\x0a1999\/01\/01 00:00:00 \[alert\] 1#1: forged code: bad\\x0d\\x0a1999.*message\\x1b\[31mtail/,
 qr/the model called unknown tool "evil\\x0d\\x0a1999/,
 qr/caller transcription failed: bad\\x0d\\x0a1999/]
--- no_error_log eval
[qr/^1999\/01\/01/, qr/^\S*(tail|code|tool|transcription)\b/]



=== TEST 26: create_response=off: twirt asks for each answer when the caller's turn is committed
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_vad server create_response=off;
        twirt_transcription gpt-4o-mini-transcribe language=ja;
    }
--- twilio
--scenario ja-booking --param company=さくら歯科
--- check
my $td = main::events_of($sim, 'session.update')->[0]{event}{session}{audio}{input}{turn_detection};
is($td->{create_response}, JSON::PP::false(), 'the model does not answer on its own');
my @committed = @{ main::events_of($sim, 'input_audio_buffer.committed') };
is(scalar @committed, 3, 'three caller turns committed');
is(scalar @{ main::events_of($sim, 'response.create') }, 3, 'one response.create for each');
is($sim_summary->{errors_sent}, 0, 'never two responses at once');
my @agent = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ main::twirt_events($call->{call_sid}) };
is_deeply(\@agent, [
    'かしこまりました。ご予約番号をお願いします。',
    'ありがとうございます。ご希望の日時をお知らせください。',
    '明日の午後三時に変更いたしました。お電話ありがとうございました。',
], 'the caller was answered, each turn');



=== TEST 27: create_response=off with a greeting still playing: the answer waits for it, one response at a time
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_vad server create_response=off interrupt_response=off;
        twirt_greeting "はい、サポートセンターです。";
    }
--- twilio
--scenario barge-in
--- check
ok(scalar @{ main::events_of($sim, 'response.create') } >= 2, 'the greeting, then answers');
is($sim_summary->{errors_sent}, 0, 'no conversation_already_has_active_response');
ok($sim_summary->{responses} >= 2, "the model answered ($sim_summary->{responses} responses)");



=== TEST 28: interrupt_response=off: no barge-in at all, the answer plays on
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_vad server interrupt_response=off;
        twirt_greeting "はい、サポートセンターです。";
    }
--- twilio
--scenario barge-in --check-agent-audio
--- check
my $td = main::events_of($sim, 'session.update')->[0]{event}{session}{audio}{input}{turn_detection};
is($td->{interrupt_response}, JSON::PP::false(), 'the model does not stop');
ok(scalar @{ main::events_of($sim, 'input_audio_buffer.speech_started') } >= 1, 'the caller spoke over the answer');
is($call->{clears_received}, 0, 'no clear');
is(scalar @{ main::events_of($sim, 'conversation.item.truncate') }, 0, 'no truncate');
is($call->{agent_audio_bytes}, $sim_summary->{audio_out_bytes}, 'all the agent audio reached the caller');
is($sim_summary->{errors_sent}, 0, 'no simulator error');
--- no_error_log
barge-in: item



=== TEST 29: whisper-1 bills transcription by the minute: its cost is not 0
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_transcription whisper-1 language=ja;
        twirt_price audio_in=0 cached_audio_in=0 audio_out=0 text_in=0
                    cached_text_in=0 text_out=0 transcribe_in=0 transcribe_out=0
                    transcribe_minute=60;
    }
--- twilio
--scenario ja-booking --duration-ms 9000
--- check
my @done = @{ main::events_of($sim, 'conversation.item.input_audio_transcription.completed') };
ok(@done >= 1, 'the caller was transcribed') or return;
is($done[0]{event}{usage}{type}, 'duration', 'whisper-1 usage is a duration');
my $seconds = 0;
$seconds += $_->{event}{usage}{seconds} for @done;
ok($seconds > 0, "$seconds s of caller audio");
my ($end) = grep { $_->{type} eq 'state' && $_->{status} eq 'ended' } @{ main::twirt_events($call->{call_sid}) };
ok(abs($end->{cost_usd} - $seconds) < 0.001, "cost = seconds x 1 USD a second ($end->{cost_usd})");



=== TEST 30: speed, tool choice, truncation, a transcription prompt and a reusable prompt, in the GA shapes
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_speed 1.25;
        twirt_tool_choice end_call;
        twirt_truncation retention_ratio=0.8;
        twirt_transcription gpt-4o-transcribe language=ja;
        twirt_transcription_prompt "さくら歯科、診察券、予約番号";
        twirt_prompt pmpt_abc123 version=3 "company={{company}}" "note=fixed";
    }
--- twilio
--scenario silence --duration-ms 1000 --param company=さくら歯科
--- check
my $s = main::events_of($sim, 'session.update')->[0]{event}{session};
is($s->{audio}{output}{speed}, 1.25, 'audio.output.speed');
is_deeply($s->{tool_choice}, { type => 'function', name => 'end_call' }, 'tool_choice names the function');
is_deeply($s->{truncation}, { type => 'retention_ratio', retention_ratio => 0.8 }, 'truncation');
is($s->{audio}{input}{transcription}{prompt}, 'さくら歯科、診察券、予約番号', 'transcription prompt');
is_deeply($s->{prompt}, { id => 'pmpt_abc123', version => '3',
                          variables => { company => 'さくら歯科', note => 'fixed' } },
          'prompt, its variables filled from the stream');
is($sim_summary->{errors_sent}, 0, 'accepted by the simulator');
