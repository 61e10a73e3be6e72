# Tools run by the user's backend: the model's calls go to an internal
# location as signed POST subrequests (t/peers/tool_backend.py verifies
# every signature and records what it got), their answers or errors go
# back to the model, then one response.create.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Test::Nginx::Socket 'no_plan';

my $secret = 'tool-secret-' . $$;
my $sim = sim_start();
my $tb = tool_backend_start('--secret', $secret);
my $dir = tempdir(CLEANUP => 1);

$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_TOOLS_PORT} = $tb->{port};
$ENV{TEST_NGINX_TOOLS_SECRET} = $secret;
$ENV{TEST_NGINX_TOOLS_FILE} = "$dir/tools.json";

{
    my @tools = map { { type => 'function', name => $_,
                        description => "test tool $_",
                        parameters => { type => 'object', properties => {} } } }
                qw(book_appointment lookup_booking slow fail500 hang huge text);
    open my $fh, '>', "$dir/tools.json" or die;
    print $fh JSON::PP->new->encode(\@tools);
    close $fh;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "あなたは{{company}}の受付です。[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
    upstream tools { server 127.0.0.1:$TEST_NGINX_TOOLS_PORT; keepalive 4; }
CONF
    $block->set_value('config', <<'CONF' . $block->config);
    location = /ping { return 200 'ok'; }
    location = /twirt/status { twirt_status; }
    location = /_twirt_tools {
        internal;
        proxy_pass http://tools/twirt;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
    }
CONF
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

# what the Realtime simulator received of a type
sub got { my ($sim, $type) = @_; [ map { $_->{event} } grep { ($_->{dir} // '') eq 'in' && ($_->{event}{type} // '') eq $type } @$sim ] }

sub outputs { [ map { $_->{item} } grep { ($_->{item}{type} // '') eq 'function_call_output' } @{ got($_[0], 'conversation.item.create') } ] }

# the backend's records of a call, once $want of them are there (bounded)
sub backend {
    my ($call_sid, $want) = @_;
    my $deadline = time + 10;
    while (1) {
        my @r = grep { ($_->{call_sid} // '') eq $call_sid && !$_->{pending} } @{ sim_records($tb) };
        return \@r if @r >= ($want // 0) || time > $deadline;
        sleep 0.05;
    }
}

sub tool_results { [ grep { $_->{type} eq 'tool_result' } @{ twirt_events($_[0]) } ] }

__DATA__

=== TEST 1: a booking in Japanese through an upstream with keepalive: signed request, the answer to the model byte for byte, one response.create, the confirmation spoken
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-booking --param company=さくら歯科 --param agent=reception
--- check
my $req = main::backend($call->{call_sid}, 1);
is(scalar @$req, 1, 'one request to the backend');
my $r = $req->[0];
ok($r->{signature_ok}, 'the backend verified X-Twirt-Signature');
is($r->{path}, '/twirt', 'through the location, to the upstream');
is($r->{name}, 'book_appointment', 'name');
is_deeply($r->{arguments}, { name => '山田太郎', date => '2026-12-03', time => '15:00' }, 'arguments parsed, Japanese intact');
is($r->{stream_sid}, $call->{stream_sid}, 'stream_sid');
is($r->{agent}, 'reception', 'agent');
is($r->{parameters}{company}, 'さくら歯科', 'the stream parameters');
is($r->{headers}{'content-type'}, 'application/json', 'JSON');
my $out = main::outputs($sim);
is(scalar @$out, 1, 'one function_call_output');
my $answer = JSON::PP->new->decode($out->[0]{output});
is($answer->{message}, '予約を承りました', "the backend's answer, as it is");
is($answer->{confirmation}, 'A-1234', 'confirmation');
is($sim_summary->{protocol_problems}, 0, 'every output before the response.create');
is($sim_summary->{creates_while_active}, 0, 'no response.create while one was active');
my $res = main::tool_results($call->{call_sid});
is($res->[0]{status}, 'ok', 'tool_result ok');
is($res->[0]{http_status}, 200, 'HTTP 200');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is($lines[-1], '12月3日15時でご予約を承りました。確認番号はA-1234です。', 'the agent confirms with what the tool answered');
my ($st, $metrics) = http_get_text('/twirt/status');
like($metrics, qr/^twirt_tool_calls_total\{result="ok"\} 1$/m, 'counted ok');
like($metrics, qr/^twirt_tool_calls_total\{result="timeout"\} 0$/m, 'and nothing else');
--- error_log eval
[qr/tool "book_appointment" answered 200, \d+ bytes in \d+ ms/]
--- no_error_log
[error]



=== TEST 2: two calls in one response run at once, both outputs are sent, then one response.create
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-parallel
--- check
my $req = main::backend($call->{call_sid}, 2);
my %by = map { $_->{name} => $_ } @$req;
ok($by{lookup_booking} && $by{slow}, 'both reached the backend');
ok(abs($by{slow}{t} - $by{lookup_booking}{t}) < 0.5, 'concurrently: the second did not wait for the 1 s one');
is(scalar @{ main::outputs($sim) }, 2, 'two outputs');
is($sim_summary->{protocol_problems}, 0, 'both before the response.create');
is($sim_summary->{tool_outputs}, 2, 'the simulator counted both');
is($sim_summary->{out_of_band_responses}, 0, 'no filler for a 1 s tool');
--- no_error_log
[error]



=== TEST 3: twirt_tool_concurrency 1: the second call of a response waits for the first
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
        twirt_tool_concurrency 1;
    }
--- twilio
--scenario tool-serial
--- check
my $req = main::backend($call->{call_sid}, 2);
my %by = map { $_->{name} => $_ } @$req;
ok($by{lookup_booking}{t} - $by{slow}{t} >= 0.95, 'the second started after the 1 s first answered')
    or diag("slow $by{slow}{t} lookup $by{lookup_booking}{t}");
is(scalar @{ main::outputs($sim) }, 2, 'two outputs');
is($sim_summary->{protocol_problems}, 0, 'one response.create after both');



=== TEST 4: a tool running past 1.5 s: the agent says the filler out of band, and the answer waits for it
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-slow
--- check
my @creates = @{ main::got($sim, 'response.create') };
my @filler = grep { ($_->{response}{conversation} // '') eq 'none' } @creates;
is(scalar @filler, 1, 'one out-of-band response.create');
like($filler[0]{response}{instructions}, qr/「少々お待ちください」/, 'saying the filler');
is_deeply($filler[0]{response}{input}, [], 'with no conversation context');
my ($oob) = grep { ($_->{note} // '') eq 'out_of_band' } @$sim;
is($oob->{transcript}, '少々お待ちください', 'the simulator spoke it');
is($sim_summary->{creates_while_active}, 0, 'the answer waited for the filler');
is($sim_summary->{protocol_problems}, 0, 'and for the output');
is(scalar @{ main::outputs($sim) }, 1, 'the output came');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is($lines[-1], '来週は火曜日の午後が空いております。', 'then the answer');
--- error_log
a tool runs 1500 ms: the agent says the filler



=== TEST 5: twirt_tool_filler off: silence is the user's choice
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
        twirt_tool_filler off;
    }
--- twilio
--scenario tool-slow
--- check
is($sim_summary->{out_of_band_responses}, 0, 'no filler');
is(scalar @{ main::outputs($sim) }, 1, 'the output came');
--- no_error_log
says the filler



=== TEST 6: a backend that never answers: timeout, the request is closed, the model hears an error it can talk about
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
        twirt_tool_timeout 1s;
        twirt_tool_filler off;
    }
--- twilio
--scenario tool-hang
--- check
my $req = main::backend($call->{call_sid}, 1);
ok($req->[0]{client_closed}, 'the backend saw the request closed');
ok($req->[0]{closed_at} - $req->[0]{t} < 2, 'at the timeout, not at the end of the call');
my $out = main::outputs($sim);
is(scalar @$out, 1, 'one output');
my $e = JSON::PP->new->decode($out->[0]{output});
is($e->{error}, 'timeout', 'a timeout error');
like($e->{message}, qr/did not answer in time/, 'that says so');
is(main::tool_results($call->{call_sid})->[0]{status}, 'timeout', 'tool_result timeout');
--- error_log eval
[qr/tool "hang" failed: timeout \(HTTP 0, 0 bytes in 1\d\d\d ms\)/]



=== TEST 7: the caller hangs up while a tool runs: the backend request is closed, nothing is sent after
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-hang
--- check
my $req = main::backend($call->{call_sid}, 1);
ok($req->[0]{client_closed}, 'the backend saw the request closed');
is(scalar @{ main::outputs($sim) }, 0, 'no output: the call was over');
is(scalar @{ main::tool_results($call->{call_sid}) }, 0, 'no tool_result');
--- error_log eval
[qr/tool "hang" canceled: the call ended/, qr/ended: stop,/]
--- no_error_log
[alert]
[error]



=== TEST 8: the backend answers 500: an error output with the status, an event
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-fail
--- check
my $e = JSON::PP->new->decode(main::outputs($sim)->[0]{output});
is($e->{error}, 'status', 'a status error');
is($e->{status}, 500, 'with the status');
my $res = main::tool_results($call->{call_sid})->[0];
is($res->{status}, 'status', 'tool_result status');
is($res->{http_status}, 500, 'HTTP 500');
is($sim_summary->{protocol_problems}, 0, 'then the response.create');
--- error_log
tool "fail500" failed: status (HTTP 500



=== TEST 9: a 1 MB answer is over twirt_tool_max_output: too_large, read to its end and dropped
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-huge
--- check
my $e = JSON::PP->new->decode(main::outputs($sim)->[0]{output});
is($e->{error}, 'too_large', 'too_large');
my $res = main::tool_results($call->{call_sid})->[0];
is($res->{output_bytes}, 1048576, 'all of it was read');
--- error_log
tool "huge" failed: too_large (HTTP 200, 1048576 bytes



=== TEST 10: a text answer in Japanese goes to the model as it is
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-text
--- check
is(main::outputs($sim)->[0]{output}, 'ご予約は12月3日15時です。確認番号はA-1234です。', 'byte for byte');



=== TEST 11: nobody listens on the backend's port: unreachable
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_closed;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
    location = /_closed { internal; proxy_pass http://127.0.0.1:1/; }
--- twilio
--scenario tool-booking
--- check
my $e = JSON::PP->new->decode(main::outputs($sim)->[0]{output});
is($e->{error}, 'unreachable', 'unreachable');
is(main::tool_results($call->{call_sid})->[0]{status}, 'unreachable', 'tool_result');
is($sim_summary->{protocol_problems}, 0, 'then the response.create');
--- error_log
tool "book_appointment" failed: unreachable



=== TEST 12: broken JSON arguments and an undeclared tool in one response: two error outputs, the backend never asked, one response.create
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-badargs
--- check
my @e = map { JSON::PP->new->decode($_->{output})->{error} } @{ main::outputs($sim) };
is_deeply([sort @e], ['invalid_arguments', 'unknown_tool'], 'both answered with errors');
is(scalar @{ main::backend($call->{call_sid}, 0) }, 0, 'no request to the backend');
is($sim_summary->{protocol_problems}, 0, 'one response.create after both');
is(scalar @{ main::got($sim, 'response.create') }, 1, 'one response.create, for both');
--- error_log eval
[qr/the model called tool "lookup_booking" with arguments that are not a JSON object/, qr/the model called unknown tool "delete_everything"/]



=== TEST 13: declared tools with no twirt_tool_uri: no_backend
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
    }
--- twilio
--scenario tool-booking
--- check
is(JSON::PP->new->decode(main::outputs($sim)->[0]{output})->{error}, 'no_backend', 'no_backend');
--- error_log
but no "twirt_tool_uri" is configured



=== TEST 14: a wrong secret: the backend refuses the signature, the model gets the 401 as an error
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret not-the-backends;
    }
--- twilio
--scenario tool-booking
--- check
my $req = main::backend($call->{call_sid}, 1);
ok(!$req->[0]{signature_ok}, 'the backend found the signature wrong');
my $e = JSON::PP->new->decode(main::outputs($sim)->[0]{output});
is($e->{status}, 401, '401 to the model');



=== TEST 15: the caller barges in while a tool runs: speech, clear and the tool's answer all go on
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret $TEST_NGINX_TOOLS_SECRET;
    }
--- twilio
--scenario tool-barge-in
--- check
my $req = main::backend($call->{call_sid}, 1);
is($req->[0]{name}, 'slow', 'the tool ran');
is(scalar @{ main::outputs($sim) }, 1, 'its output came');
is($sim_summary->{appended_bytes}, 160 * $call->{media_sent}, 'caller audio flowed all along');
my @started = grep { ($_->{dir} // '') eq 'out' && ($_->{event}{type} // '') eq 'input_audio_buffer.speech_started' } @$sim;
ok(@started >= 2, 'the caller was heard while the tool ran');
is($sim_summary->{errors_sent}, 0, 'no protocol error');



=== TEST 16: a location with no upstream answers too (a fixed answer from "return")
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tools $TEST_NGINX_TOOLS_FILE;
        twirt_tool_uri /_fixed;
        twirt_tool_secret x;
    }
    location = /_fixed { internal; return 200 '{"空き":"なし"}'; }
--- twilio
--scenario tool-booking
--- check
is(main::outputs($sim)->[0]{output}, '{"空き":"なし"}', 'the fixed answer');



=== TEST 17: twirt_tool_uri without a secret is refused
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tool_uri /_twirt_tools;
    }
--- must_die
--- error_log
"twirt_tool_uri" needs "twirt_tool_secret"



=== TEST 18: twirt_tool_uri must be a URI of this server
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tool_uri http://backend/tools;
        twirt_tool_secret x;
    }
--- must_die
--- error_log
"twirt_tool_uri" must be a URI of this server, starting with "/", not "http://backend/tools"



=== TEST 19: twirt_tool_concurrency 0 is refused
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tool_uri /_twirt_tools;
        twirt_tool_secret x;
        twirt_tool_concurrency 0;
    }
--- must_die
--- error_log
"twirt_tool_concurrency" must be 1 to 64, not 0



=== TEST 20: twirt_tool_filler with a bad after=
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_tool_filler "少々お待ちください" after=soon;
    }
--- must_die
--- error_log
invalid time "soon": a time above 0 such as 1500ms or 2s expected
