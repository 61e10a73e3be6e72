# Directive mistakes are rejected by `nginx -t` with messages that say what
# is wrong; conf.example is accepted.

use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Conf qw(nginx_t http_conf);
use File::Temp ();

my @bad = (
    [ 'twirt_stream_url http://gw.example.com/m;',
      qr/"twirt_stream_url" must start with "wss:\/\/"/ ],
    [ 'twirt_stream_url wss://gw.example.com/m?agent=x;',
      qr/cannot have a query string/ ],
    [ 'twirt_stream_url /twilio/media;',
      qr/"twirt_stream_url" must be an absolute URL/ ],
    [ 'twirt_public_url example.com;',
      qr/"twirt_public_url" must be an absolute URL/ ],
    [ 'twirt_parameter note "' . ('x' x 496) . '";',
      qr/parameter "note" is 500 characters with its name, Twilio allows less than 500/ ],
    [ 'twirt_parameter note "' . ("\x{e3}\x{81}\x{82}" x 496) . '";',
      qr/parameter "note" is 500 characters/ ],
    [ 'twirt_parameter a 1; twirt_parameter a 2;',
      qr/duplicate parameter "a"/ ],
    [ 'twirt_parameter "a b" 1;',
      qr/invalid parameter name "a b"/ ],
    [ 'twirt_say "hello" lang=en;',
      qr/invalid parameter "lang=en", expected "language=" or "voice="/ ],
    [ 'twirt_say "";', qr/"twirt_say" directive has empty text/ ],
    [ 'twirt_say a; twirt_say b;', qr/"twirt_say" directive is duplicate/ ],
    [ 'twirt_connect_action https://x/a method=PUT;',
      qr/invalid parameter "method=PUT", expected "method=POST" or "method=GET"/ ],
    [ 'twirt_fallback_dial +81 callerid=+82;',
      qr/invalid parameter "callerid=\+82", expected "caller_id="/ ],
    [ 'twirt_twiml_max_body_size lots;',
      qr/"twirt_twiml_max_body_size" directive invalid value/ ],
    [ 'location /a { stub_status; twirt_twiml; }',
      qr/is duplicate/ ],
    [ 'twirt_twiml;', qr/"twirt_twiml" directive is not allowed here/ ],
    [ 'location /a { twirt_twiml on; }',
      qr/invalid number of arguments in "twirt_twiml" directive/ ],
    [ 'twirt_voice nova;',
      qr/unknown voice "nova", expected one of alloy, ash/ ],
    [ 'twirt_transcription whisper-2;',
      qr/unknown transcription model "whisper-2"/ ],
    [ 'twirt_transcription whisper-1 lang=ja;',
      qr/invalid parameter "lang=ja", expected "language="/ ],
    [ 'twirt_vad fast;', qr/invalid turn detection "fast"/ ],
    [ 'twirt_vad server threshold=2;',
      qr/invalid parameter "threshold=2" for server voice activity detection/ ],
    [ 'twirt_vad semantic eagerness=max;',
      qr/invalid parameter "eagerness=max" for semantic/ ],
    [ 'twirt_noise_reduction loud;', qr/invalid noise reduction "loud"/ ],
    [ 'twirt_noise_reduction loud;',
      qr/expected one of near_field, far_field, off/ ],
    [ 'twirt_transcription whisper-2;',
      qr/expected one of whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe, off/ ],
    [ 'twirt_vad server threshold=0.5x;',
      qr/invalid parameter "threshold=0.5x" for server voice activity detection: the value is not a number from 0 to 1/ ],
    [ 'twirt_vad server silence_duration_ms=-5;',
      qr/invalid parameter "silence_duration_ms=-5"/ ],
    [ 'twirt_vad off;',
      qr/"twirt_vad off" cannot answer the caller: without turn detection nobody commits the caller's audio/ ],
    [ 'twirt_vad off threshold=0.5;',
      qr/"twirt_vad off" cannot answer the caller/ ],
    [ 'twirt_speed 2;',
      qr/invalid speed "2": it is not a number from 0.25 to 1.5/ ],
    [ 'twirt_speed 0.2;', qr/invalid speed "0.2"/ ],
    [ 'twirt_speed fast;', qr/invalid speed "fast"/ ],
    [ 'twirt_speed 1; twirt_speed 1.2;', qr/"twirt_speed" directive is duplicate/ ],
    [ 'twirt_greeting_cache zone=greet;',
      qr/invalid zone "greet": a name and a size expected, e.g. "zone=greetings:10m"/ ],
    [ 'twirt_greeting_cache zone=greet:;', qr/invalid zone size ""/ ],
    [ 'twirt_greeting_cache zone=greet:lots;', qr/invalid zone size "lots"/ ],
    [ 'twirt_greeting_cache zone=:1m;', qr/invalid zone ":1m"/ ],
    [ 'twirt_greeting_cache zone=greet:16k;',
      qr/zone "greet" is too small: 32768 bytes at least/ ],
    [ 'twirt_greeting_cache greet:1m;',
      qr/invalid parameter "greet:1m", expected "zone=NAME:SIZE" or "off"/ ],
    [ 'twirt_greeting_cache zone=greet:1m max_age=0;',
      qr/invalid "max_age=0": a time of 1s or more expected/ ],
    [ 'twirt_greeting_cache zone=greet:1m max_age=soon;', qr/invalid "max_age=soon"/ ],
    [ 'twirt_greeting_cache zone=greet:1m age=1h;',
      qr/invalid parameter "age=1h", expected "max_age=" and a time/ ],
    [ 'twirt_greeting_cache off max_age=1h;',
      qr/"twirt_greeting_cache" directive takes no "max_age=" with "off"/ ],
    [ 'twirt_greeting_cache off; twirt_greeting_cache off;',
      qr/"twirt_greeting_cache" directive is duplicate/ ],
    [ 'twirt_greeting_cache zone=greet:1m; location /a { twirt_greeting_cache zone=greet:2m; }',
      qr/the size 2097152 of shared memory zone "greet" conflicts with already declared size 1048576/ ],
    [ 'twirt_openai_pool 0;',
      qr/invalid pool size "0": a number of connections per worker from 1 to 1024, or "off", expected/ ],
    [ 'twirt_openai_pool 1025;', qr/invalid pool size "1025"/ ],
    [ 'twirt_openai_pool many;', qr/invalid pool size "many"/ ],
    [ 'twirt_openai_pool -1;', qr/invalid pool size "-1"/ ],
    [ 'twirt_openai_pool 2 timeout=30s;',
      qr/invalid parameter "timeout=30s", expected "max_age=" and a time/ ],
    [ 'twirt_openai_pool 2 max_age=;', qr/invalid parameter "max_age=", expected "max_age=" and a time/ ],
    [ 'twirt_openai_pool 2 max_age=0;',
      qr/invalid "max_age=0": a time above 0 and under 60m expected \(a Realtime session lasts at most 60 minutes/ ],
    [ 'twirt_openai_pool 2 max_age=60m;', qr/invalid "max_age=60m"/ ],
    [ 'twirt_openai_pool 2 max_age=2h;', qr/invalid "max_age=2h"/ ],
    [ 'twirt_openai_pool 2 max_age=soon;', qr/invalid "max_age=soon"/ ],
    [ 'twirt_openai_pool off max_age=1m;',
      qr/"twirt_openai_pool" directive takes no "max_age=" with "off"/ ],
    [ 'twirt_openai_pool 2; twirt_openai_pool 3;',
      qr/"twirt_openai_pool" directive is duplicate/ ],
    [ 'twirt_openai_pool 1 max_age=1m extra;',
      qr/invalid number of arguments in "twirt_openai_pool" directive/ ],
    [ 'twirt_tool_choice "look up";',
      qr/invalid tool choice "look up": expected one of auto, none, required or a function's name/ ],
    [ 'location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime; twirt_tool_choice lookup; }',
      qr/"twirt_tool_choice" names the function "lookup", which neither "twirt_tools" nor "twirt_end_call" declares/ ],
    [ 'location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime; twirt_end_call off; twirt_tool_choice end_call; }',
      qr/names the function "end_call", which neither/ ],
    [ 'twirt_truncation sometimes;',
      qr/invalid truncation "sometimes", expected "auto", "disabled" or "retention_ratio=" and a number from 0 to 1/ ],
    [ 'twirt_truncation retention_ratio;', qr/invalid truncation "retention_ratio",/ ],
    [ 'twirt_truncation retention_ratio=1.5;',
      qr/invalid truncation "retention_ratio=1.5": the retention ratio is not a number from 0 to 1/ ],
    [ 'twirt_prompt "pmpt 1";', qr/invalid prompt id "pmpt 1"/ ],
    [ 'twirt_prompt pmpt_1 version=latest;', qr/invalid prompt version "version=latest", expected a number/ ],
    [ 'twirt_prompt pmpt_1 company;',
      qr/invalid prompt parameter "company", expected "version=" or a variable as "name=value"/ ],
    [ 'twirt_prompt pmpt_1 a=1 a=2;', qr/duplicate prompt variable "a"/ ],
    [ 'twirt_prompt pmpt_1 "a b=1";', qr/invalid prompt variable name in "a b=1"/ ],
    [ q{twirt_session_json '{"voice":"alloy","temperature":0.8}';},
      qr/invalid "twirt_session_json": "voice" is a beta name, the GA session's is "audio.output.voice", which is set by "twirt_voice"/ ],
    [ q{twirt_session_json '{"temperature":0.8}';},
      qr/"temperature" is a beta field that the GA session does not have/ ],
    [ q{twirt_session_json '{"input_audio_format":"g711_ulaw"}';},
      qr/"input_audio_format" is a beta name, the GA session's is "audio.input.format", which is always audio\/pcmu/ ],
    [ q{twirt_session_json '{"turn_detection":null}';},
      qr/"turn_detection" is a beta name, the GA session's is "audio.input.turn_detection", which is set by "twirt_vad"/ ],
    [ q{twirt_session_json '{"input_audio_transcription":{"model":"whisper-1"}}';},
      qr/the GA session's is "audio.input.transcription", which is set by "twirt_transcription"/ ],
    [ q{twirt_session_json '{"modalities":["audio"]}';},
      qr/"modalities" is a beta name, the GA session's is "output_modalities"/ ],
    [ q{twirt_session_json '{"max_response_output_tokens":100}';},
      qr/the GA session's is "max_output_tokens", which is set by "twirt_max_output_tokens"/ ],
    [ q{twirt_session_json '{"audio":{"input":{"turn_detection":{"create_response":false}}}}';},
      qr/"audio.input.turn_detection" is set by "twirt_vad"/ ],
    [ q{twirt_session_json '{"audio":{"output":{"speed":1.1}}}';},
      qr/"audio.output.speed" is set by "twirt_speed"/ ],
    [ q{twirt_session_json '{"audio":{"output":{"pitch":1}}}';},
      qr/"audio.output.pitch" is not a field of the GA session/ ],
    [ q{twirt_session_json '{"audio":[]}';}, qr/"audio" is not an object/ ],
    [ q{twirt_session_json '{"include":["logprobs"]}';},
      qr/"include" may only hold "item.input_audio_transcription.logprobs"/ ],
    [ q{twirt_session_json '{"tracing":"on"}';},
      qr/"tracing" is not "auto", null or an object/ ],
    [ 'location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-mini; }',
      qr/"twirt_model" is "gpt-realtime" but "twirt_openai_url" connects to "model=gpt-realtime-mini": set both to the same model/ ],
    [ 'twirt_model gpt-realtime-mini; location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime?x=1&model=gpt-realtime; }',
      qr/"twirt_model" is "gpt-realtime-mini" but "twirt_openai_url" connects to "model=gpt-realtime"/ ],
    [ 'twirt_price transcribe_minute=cheap;',
      qr/invalid price "transcribe_minute=cheap"/ ],
    [ 'twirt_max_output_tokens 0;', qr/invalid max output tokens "0"/ ],
    [ 'twirt_session_json "{not json";',
      qr/invalid JSON in "twirt_session_json"/ ],
    [ 'twirt_session_json "[1]";',
      qr/"twirt_session_json" directive must be a JSON object/ ],
    [ 'twirt_tools /nonexistent/tools.json;',
      qr/tools file "\/nonexistent\/tools.json": unable to open/ ],
    [ 'twirt_price audio_in=lots;', qr/invalid price "audio_in=lots"/ ],
    [ 'twirt_price speed=3;', qr/invalid price "speed=3"/ ],
    [ 'twirt_price audio_in=nan;', qr/invalid price "audio_in=nan"/ ],
    [ 'twirt_price audio_out=inf;', qr/invalid price "audio_out=inf"/ ],
    [ 'twirt_price text_in=3abc;', qr/invalid price "text_in=3abc"/ ],
    [ 'twirt_price text_out=1e9;', qr/invalid price "text_out=1e9"/ ],
    [ 'twirt_vad server threshold=0.5 create_response=yes;',
      qr/invalid parameter "create_response=yes" for server voice activity detection/ ],
    [ 'twirt_openai_url https://api.openai.com/v1/realtime;',
      qr/invalid Realtime API URL "https:\/\/api.openai.com\/v1\/realtime": it must start with "ws:\/\/" or "wss:\/\/"/ ],
    [ 'location /m { twirt_stream; twirt_openai_url ws://realtime.example.com/v1; }',
      qr/"twirt_openai_url" host "realtime.example.com" needs a "resolver"/ ],
    [ 'location /m { twirt_stream; }',
      qr/host "api.openai.com" needs a "resolver"/ ],
    [ 'twirt_openai_api_key_file /nonexistent/key;',
      qr/open\(\) "\/nonexistent\/key" failed/ ],
    [ 'twirt_max_frame_size 1m; twirt_max_message_size 64k;',
      qr/"twirt_max_frame_size" 1048576 is larger than "twirt_max_message_size" 65536/ ],
    [ 'location /v { twirt_twiml; twirt_fallback_say "sorry"; }',
      qr/"twirt_fallback_say" needs "twirt_connect_action" in a "twirt_twiml" location: without it Twilio plays the fallback after every call, also after a normal goodbye; add "twirt_connect_action \/twilio\/after;"/ ],
    [ 'twirt_fallback_dial +81; location /v { twirt_twiml; }',
      qr/"twirt_fallback_dial" needs "twirt_connect_action"/ ],
    [ 'twirt_outcome_entries 0;', qr/"twirt_outcome_entries" directive is not allowed here/ ],
    [ 'location /s { stub_status; twirt_stream; }', qr/is duplicate/ ],
    [ 'location /s { twirt_status on; }',
      qr/invalid number of arguments in "twirt_status" directive/ ],
    [ 'twirt_dtmf keys;',
      qr/invalid keypad mode "keys", expected one of off, model/ ],
    [ 'twirt_dtmf model terminator=##;',
      qr/invalid parameter "terminator=##": the terminator is one keypad key, 0-9, \*, #, A, B, C or D/ ],
    [ 'twirt_dtmf model terminator=E;',
      qr/invalid parameter "terminator=E": the terminator is one keypad key/ ],
    [ 'twirt_dtmf model terminator=;',
      qr/invalid parameter "terminator=", expected "terminator=" or "timeout="/ ],
    [ 'twirt_dtmf model timeout=0;',
      qr/invalid parameter "timeout=0": the timeout is a time above 0, e.g. "2s" or "1500ms"/ ],
    [ 'twirt_dtmf model timeout=0s;',
      qr/invalid parameter "timeout=0s": the timeout is a time above 0/ ],
    [ 'twirt_dtmf model timeout=soon;',
      qr/invalid parameter "timeout=soon": the timeout is a time above 0/ ],
    [ 'twirt_dtmf model digits=4;',
      qr/invalid parameter "digits=4", expected "terminator=" or "timeout="/ ],
    [ 'twirt_dtmf off timeout=1s;',
      qr/"twirt_dtmf" directive takes no parameters when "off"/ ],
    [ 'twirt_dtmf model; twirt_dtmf off;',
      qr/"twirt_dtmf" directive is duplicate/ ],
    [ 'twirt_dtmf;',
      qr/invalid number of arguments in "twirt_dtmf" directive/ ],
    [ 'twirt_silence_timeout soon;',
      qr/invalid value "soon": a time above 0 such as "10s" or "8500ms", or "off"/ ],
    [ 'twirt_silence_timeout 0;',
      qr/invalid value "0": a time above 0/ ],
    [ 'twirt_silence_timeout 5s; twirt_silence_timeout off;',
      qr/"twirt_silence_timeout" directive is duplicate/ ],
    [ 'twirt_silence_tries 11;',
      qr/invalid value "11": how many times the agent asks a silent caller again before the goodbye, 0 to 10/ ],
    [ 'twirt_silence_tries -1;',
      qr/invalid value "-1": how many times/ ],
    [ 'twirt_silence_tries twice;',
      qr/invalid value "twice": how many times/ ],
    [ 'twirt_silence_tries 1; twirt_silence_tries 2;',
      qr/"twirt_silence_tries" directive is duplicate/ ],
    [ 'twirt_silence_prompt "";',
      qr/"twirt_silence_prompt" directive takes a non-empty UTF-8 text in / ],
    [ 'twirt_silence_prompt off;',
      qr/"twirt_silence_prompt" directive cannot be "off": "twirt_silence_tries 0" says the goodbye without asking again, "twirt_silence_timeout off" turns the re-prompts off/ ],
    [ "twirt_silence_prompt \"\xff\xfe\";",
      qr/"twirt_silence_prompt" directive takes a non-empty UTF-8 text/ ],
    [ 'twirt_silence_prompt a; twirt_silence_prompt b;',
      qr/"twirt_silence_prompt" directive is duplicate/ ],
    [ 'twirt_silence_goodbye "";',
      qr/"twirt_silence_goodbye" directive takes a non-empty UTF-8 text or "off"/ ],
    [ 'twirt_silence_goodbye off; twirt_silence_goodbye bye;',
      qr/"twirt_silence_goodbye" directive is duplicate/ ],
    [ 'twirt_response_apology "";',
      qr/"twirt_response_apology" directive takes a non-empty UTF-8 text or "off"/ ],
    [ "twirt_response_apology \"\xe3\x81\";",
      qr/"twirt_response_apology" directive takes a non-empty UTF-8 text or "off"/ ],
);

for my $case (@bad) {
    my ($snippet, $re) = @$case;
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $snippet }"));
    isnt($rc, 0, "nginx -t fails: " . substr($snippet, 0, 60)) or diag $out;
    like($out, $re, "with a clear message: " . substr($snippet, 0, 60));
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'server { listen 127.0.0.1:1; location /v { twirt_twiml; '
        . 'twirt_parameter note "' . ('x' x 495) . '"; } }'));
    is($rc, 0, 'a parameter of 499 characters with its name is accepted')
        or diag $out;
}

# what the checks above must still let through
for my $snippet (
    q{twirt_session_json '{"tracing":"auto","include":["item.input_audio_transcription.logprobs"]}';},
    q{twirt_session_json '{"tracing":{"workflow_name":"phone","metadata":{"a":"b"}}}';},
    'twirt_speed 1.25; twirt_truncation retention_ratio=0.8; twirt_prompt pmpt_1 version=2 "company={{company}}";',
    'twirt_transcription_prompt "さくら歯科, 予約, 診察券";',
    'twirt_dtmf model terminator=# timeout=1500ms; location /m { twirt_dtmf off; } location /n { twirt_dtmf model terminator=* timeout=2s; }',
    'twirt_dtmf model terminator=D;',
    'twirt_silence_timeout off; twirt_silence_goodbye off; twirt_response_apology off;',
    'twirt_silence_timeout 8500ms; twirt_silence_tries 0; twirt_silence_prompt "{{name}}様、お聞きになれますか？"; location /m { twirt_silence_timeout 30s; twirt_silence_tries 10; }',
    'twirt_model gpt-realtime-mini; location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-mini; }',
    'twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime-mini; twirt_model gpt-realtime-mini; location /m { twirt_stream; twirt_tool_choice end_call; }',
    'location /m { twirt_stream; twirt_openai_url ws://127.0.0.1:9/v1/realtime; twirt_vad semantic create_response=off interrupt_response=off; }',
    'twirt_openai_pool 4 max_age=10m; twirt_openai_url ws://127.0.0.1:9/v1/realtime; location /m { twirt_stream; } location /n { twirt_stream; twirt_openai_pool off; } location /o { twirt_stream; twirt_openai_pool 1 max_age=59m; }',
) {
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $snippet }"));
    is($rc, 0, "accepted: " . substr($snippet, 0, 60)) or diag $out;
}

{
    my $tools = File::Temp->new(SUFFIX => '.json');
    print $tools '[{"type":"function","name":"lookup","parameters":{"type":"object","properties":{}}}]';
    close $tools;
    my ($rc, $out) = nginx_t(http_conf(
        "server { listen 127.0.0.1:1; location /m { twirt_stream; twirt_tools $tools; "
        . 'twirt_openai_url ws://127.0.0.1:9/v1/realtime?model=gpt-realtime; '
        . 'twirt_tool_choice lookup; } }'));
    is($rc, 0, 'a tool choice naming a declared tool is accepted') or diag $out;
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'twirt_outcome_entries 0; server { listen 127.0.0.1:1; }'));
    isnt($rc, 0, 'twirt_outcome_entries 0 fails');
    like($out, qr/"twirt_outcome_entries" must be from 1 to 1000000, not 0/,
         'saying the bounds') or diag $out;
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'server { listen 127.0.0.1:1; twirt_fallback_say "sorry"; '
        . 'location /v { twirt_twiml; twirt_connect_action /a; } '
        . 'location /a { twirt_action; } }'));
    is($rc, 0, 'fallback verbs with an action route are accepted') or diag $out;
    unlike($out, qr/\[warn\]/, 'without a warning');
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'server { listen 127.0.0.1:1; location /a { twirt_action; } }'));
    is($rc, 0, 'an action without fallback verbs is accepted') or diag $out;
    like($out, qr/\[warn\].*"twirt_action" without "twirt_fallback_say" or "twirt_fallback_dial": a failed call is hung up/,
         'with a warning');
}

{
    my $tools = File::Temp->new(SUFFIX => '.json');
    print $tools '[{"type":"function","name":"lookup","parameters":{"type":"object","properties":{}}}, {"name":"x"}]';
    close $tools;
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; twirt_tools $tools; }"));
    isnt($rc, 0, 'a tools file with a bad entry fails');
    like($out, qr/entry 1 is not \{"type":"function","name":...\}/, 'naming the entry') or diag $out;
}

# the names a tools file may give: unique, a function name's letters,
# none of twirt's own
for my $case (
    [ '[{"type":"function","name":"a"},{"type":"function","name":"a"}]',
      qr/entry 1 repeats the name of an earlier tool/ ],
    [ '[{"type":"function","name":"transfer_call"}]',
      qr/entry 0 has the name of a built-in tool \(end_call, transfer_call\)/ ],
    [ '[{"type":"function","name":"予約"}]',
      qr/entry 0 has a name of letters, digits, "_" and "-" only/ ],
    [ '[{"type":"function","name":"ok","parameters":[]}]',
      qr/entry 0 has "parameters" that is not a JSON schema object/ ],
) {
    my ($json, $re) = @$case;
    my $tools = File::Temp->new(SUFFIX => '.json');
    print $tools $json;
    close $tools;
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; twirt_tools $tools; }"));
    isnt($rc, 0, "tools $json fails");
    like($out, $re, 'saying why') or diag $out;
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'server { listen 127.0.0.1:1; location /m { twirt_stream; '
        . 'twirt_openai_url wss://127.0.0.1:9/v1/realtime; '
        . 'twirt_openai_ssl_verify off; } }'));
    is($rc, 0, 'verification off is accepted') or diag $out;
    like($out, qr/\[warn\].*TLS certificate verification of "wss:\/\/127.0.0.1:9\/v1\/realtime" is off/,
         'with a warning at start');
}

# conf.example, as a user would install it: only paths are made private
{
    open my $fh, '<', "$FindBin::Bin/../conf.example" or die $!;
    my $conf = do { local $/; <$fh> };
    close $fh;

    my $module = $ENV{TEST_NGINX_LOAD_MODULES};
    like($conf, qr/^load_module \S+ngx_http_twirt_module\.so;/m,
         'conf.example loads the module');
    $conf =~ s/^load_module \S+;/load_module $module;/m;
    $conf =~ s{/var/log/nginx/}{logs/}g;
    $conf =~ s{/run/nginx\.pid}{logs/nginx.pid}g;
    $conf =~ s{/var/lib/nginx/}{logs/}g;
    # the snakeoil pair may be absent: the test makes its own
    my $certs = $ENV{TWIRT_TEST_CERTS};
    if (!$certs) {
        require File::Temp;
        $certs = File::Temp::tempdir(CLEANUP => 1);
        system("$FindBin::Bin/../util/certs", $certs) == 0
            or die "util/certs failed";
    }
    {
        $conf =~ s{/etc/ssl/certs/ssl-cert-snakeoil.pem}{$certs/localhost.crt};
        $conf =~ s{/etc/ssl/private/ssl-cert-snakeoil.key}{$certs/localhost.key};
    }

    my ($rc, $out) = nginx_t($conf);
    is($rc, 0, 'nginx -t accepts conf.example') or diag $out;
}

# the Docker image's configuration, as its start script writes it
{
    open my $fh, '<', "$FindBin::Bin/../docker/nginx.conf.template" or die $!;
    my $conf = do { local $/; <$fh> };
    close $fh;

    my %env = (TWILIO_AUTH_TOKEN => 'token', TWIRT_PUBLIC_HOST => 'gw.example.com',
               TWIRT_PORT => 8080,
               TWIRT_OPENAI_URL => 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
               TWIRT_INSTRUCTIONS => 'Be brief.', TWIRT_GREETING => '',
               TWIRT_FALLBACK => 'Sorry.', TWIRT_NODE => 'node-1',
               TWIRT_REDIS_LINE => 'twirt_redis unix:/run/twirt/redis.sock;',
               TWIRT_RESOLVER => '127.0.0.1');
    $conf =~ s/\$\{(\w+)\}/$env{$1}/g;
    my $module = $ENV{TEST_NGINX_LOAD_MODULES};
    # the package's snippet, in the image, loads the module
    $conf =~ s{^include /etc/nginx/modules-enabled/\*\.conf;}{load_module $module;}m;
    $conf =~ s{/run/twirt/nginx\.pid}{logs/nginx.pid}g;
    $conf =~ s{/var/lib/twirt/tmp}{logs}g;

    my ($rc, $out) = nginx_t($conf);
    is($rc, 0, 'nginx -t accepts the Docker image configuration') or diag $out;
}

done_testing();
