# The Media Streams endpoint: RFC 6455 server rules, Twilio messages, and
# the end of a stream.  Frames are built with Protocol::WebSocket::Frame.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::WS;
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';

# every stream has its Realtime session: the simulator
my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime;
    twirt_openai_api_key sk-test;
CONF
});

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the handshake answers 101 with the right Sec-WebSocket-Accept
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('close', ws_close_payload(1000))
--- error_code: 101
--- response_headers
Upgrade: websocket
Connection: upgrade
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
!Content-Type
!Content-Length
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- no_error_log
[error]



=== TEST 2: frames in the same packet as the handshake are not lost; stop ends the call with a summary
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_connected() . twilio_start('CA100', 'MZ100')
. CORE::join('', map { twilio_media('MZ100', $_) } 0 .. 9) . twilio_stop('CA100', 'MZ100')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- error_log eval
[qr/call "CA100" stream "MZ100" ended: stop, duration \d+\.\d{3}s, frames in 13 out 1, media in 10/,
 qr/did not answer our close in time.*call: CA100, stream: MZ100/]
--- no_error_log
[error]



=== TEST 3: media before start is tolerated and counted
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_media('MZ1', 0) . twilio_media('MZ1', 1)
. twilio_start('CA3', 'MZ3') . twilio_stop('CA3', 'MZ3')
--- error_code: 101
--- error_log eval
[qr/call started after \d+ ms, 2 media before start/,
 qr/ended: stop, .*media in 2 out 0,/]



=== TEST 4: an unmasked client frame is a protocol error (1002)
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('text', '{"event":"connected"}', masked => 0)
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1002, 'unmasked client frame'))
--- error_log
closing with 1002



=== TEST 5: reserved bits are a protocol error (1002)
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('text', '{}', rsv => [1, 0, 0])
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea
--- error_log
closing with 1002



=== TEST 6: an unknown opcode is a protocol error (1002)
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame(3, 'x')
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea
--- error_log
closing with 1002



=== TEST 7: a fragmented message with a ping in between: pong with the same data, message delivered
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA7', 'MZ7')
. ws_frame('text', '{"event":"st', fin => 0)
. ws_frame('ping', 'are you there?')
. ws_frame(0, 'op","streamSid":"MZ7"}', fin => 1)
--- error_code: 101
--- response_body eval
ws_server_frame('pong', 'are you there?') . ws_server_frame('close', ws_close_payload(1000))
--- error_log
ended: stop



=== TEST 8: a fragment split at any byte of a Japanese character still validates
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
my $json = '{"event":"dtmf","streamSid":"MZ8","dtmf":{"digit":"１"},"note":"お電話"}';
ws_upgrade('/twilio/media') . twilio_start('CA8', 'MZ8')
. ws_frame('text', substr($json, 0, 54), fin => 0)
. ws_frame(0, substr($json, 54, 1), fin => 0)
. ws_frame(0, substr($json, 55), fin => 1)
. twilio_stop('CA8', 'MZ8')
--- error_code: 101
--- error_log
ignored dtmf with an invalid digit "１"
--- no_error_log
closing with 1007



=== TEST 9: invalid UTF-8 in a text message closes with 1007
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('text', "{\"event\":\"\xc0\x80\"}")
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1007, 'invalid utf-8 in text message'))
--- error_log
closing with 1007



=== TEST 10: a control frame over 125 bytes is a protocol error
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('ping', 'x' x 126)
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea
--- error_log
closing with 1002



=== TEST 11: a fragmented control frame is a protocol error
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('ping', 'x', fin => 0)
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea



=== TEST 12: a continuation frame without a message is a protocol error
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame(0, 'x')
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea



=== TEST 13: a frame over twirt_max_frame_size closes with 1009
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_max_frame_size 1k;
    }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('text', '"' . ('x' x 1100) . '"')
--- error_code: 101
--- response_body_like: ^\x88.\x03\xf1
--- error_log
closing with 1009



=== TEST 14: fragments adding up over twirt_max_message_size close with 1009
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_max_frame_size 1k;
        twirt_max_message_size 2k;
    }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('text', 'x' x 1000, fin => 0)
. ws_frame(0, 'x' x 1000, fin => 0) . ws_frame(0, 'x' x 1000, fin => 1)
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1009, 'message too big'))



=== TEST 15: a close frame with a reserved code is a protocol error
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('close', ws_close_payload(1005))
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea



=== TEST 16: a close frame of one byte is a protocol error
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . ws_frame('close', "\x03")
--- error_code: 101
--- response_body_like: ^\x88.\x03\xea



=== TEST 17: the peer's close is answered with its code and ends the call
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA17', 'MZ17') . ws_frame('close', ws_close_payload(1001, 'bye'))
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1001))
--- error_log
ended: twilio closed



=== TEST 18: no frame for twirt_idle_timeout: close 1001, then the connection is closed
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_idle_timeout 300ms;
        twirt_close_timeout 200ms;
    }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA18', 'MZ18')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1001, 'idle timeout'))
--- error_log
ended: idle timeout



=== TEST 19: twirt_max_call_duration ends the call
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_max_call_duration 300ms;
        twirt_close_timeout 200ms;
    }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA19', 'MZ19')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- error_log eval
[qr/reached twirt_max_call_duration.*call: CA19/, qr/ended: max call duration/]



=== TEST 20: a peer that sends without reading cannot grow the output queue
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_send_queue_size 1k;
    }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA20', 'MZ20') . (ws_frame('ping', 'p' x 100) x 20)
--- error_code: 101
--- error_log eval
[qr/\[error\].*twilio does not read: \d+ bytes queued, over the limit of 1024.*call: CA20/,
 qr/ended: send queue full/]



=== TEST 21: invalid JSON and binary messages are logged with the CallSid and ignored
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA21', 'MZ21') . ws_frame('text', '{"event":')
. ws_frame('binary', "\x00\x01") . ws_frame('text', '{"event":"later","x":1}')
. twilio_media('MZ21', 0) . twilio_stop('CA21', 'MZ21')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- error_log eval
[qr/\[warn\].*ignored a message from twilio: invalid JSON.*call: CA21, stream: MZ21/,
 qr/ignored a binary message of 2 bytes from twilio.*call: CA21/,
 qr/ended: stop, .*media in 1 out 0, .*ignored 2/]



=== TEST 22: version other than 13 is a 426 naming the version we speak
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', 'Sec-WebSocket-Version' => '8')
--- error_code: 426
--- response_headers
Sec-WebSocket-Version: 13



=== TEST 23: a key that is not base64 of 16 bytes is a 400
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', 'Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ')
--- error_code: 400
--- error_log
invalid Sec-WebSocket-Key



=== TEST 24: a missing key is a 400
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', 'Sec-WebSocket-Key' => undef)
--- error_code: 400



=== TEST 25: a plain GET without Upgrade is a 400
--- config
    location = /twilio/media { twirt_stream; }
--- request
GET /twilio/media
--- error_code: 400
--- error_log
without "Upgrade: websocket"



=== TEST 26: POST cannot upgrade: 405
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', _method => 'POST', 'Content-Length' => 0)
--- error_code: 405



=== TEST 27: HTTP/1.0 cannot upgrade: 400
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', _version => 'HTTP/1.0')
--- error_code: 400
--- error_log
needs HTTP/1.1



=== TEST 28: Connection and Upgrade tokens in lists, any case
--- config
    location = /twilio/media { twirt_stream; }
--- raw_request eval
ws_upgrade('/twilio/media', 'Connection' => 'keep-alive, UPGRADE', 'Upgrade' => 'WebSocket')
. ws_frame('close', ws_close_payload(1000))
--- error_code: 101



=== TEST 29: a signed upgrade is accepted (URL as in <Stream url>)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_twilio_auth_token secret;
        twirt_public_url wss://gw.example.com/twilio/media;
    }
--- raw_request eval
ws_upgrade('/twilio/media', 'X-Twilio-Signature' => sign('secret', 'wss://gw.example.com/twilio/media'))
. ws_frame('close', ws_close_payload(1000))
--- error_code: 101



=== TEST 30: a signature made over the URL with a trailing slash is accepted
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_twilio_auth_token secret;
    }
--- raw_request eval
ws_upgrade('/twilio/media', 'Host' => 'gw.example.com', 'X-Twilio-Signature' => sign('secret', 'wss://gw.example.com/twilio/media/'))
. ws_frame('close', ws_close_payload(1000))
--- error_code: 101



=== TEST 31: a wrong signature is a 403 before any upgrade
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_twilio_auth_token secret;
    }
--- raw_request eval
ws_upgrade('/twilio/media', 'Host' => 'gw.example.com', 'X-Twilio-Signature' => sign('other', 'wss://gw.example.com/twilio/media'))
--- error_code: 403
--- error_log
invalid X-Twilio-Signature on the media stream upgrade to "wss://gw.example.com/twilio/media



=== TEST 32: a missing signature is a 403
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_twilio_auth_token secret;
    }
--- raw_request eval
ws_upgrade('/twilio/media')
--- error_code: 403
--- error_log
missing X-Twilio-Signature on the media stream upgrade



=== TEST 33: media payloads that are not strict base64 (padding only, padded inside, short, empty) are dropped and counted
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media') . twilio_start('CA33', 'MZ33')
. CORE::join('', map { ws_json({ event => 'media', streamSid => 'MZ33', media => { payload => $_ } }) } '====', 'AAA', 'A=AA', 'AAAA====', '')
. twilio_media('MZ33', 0) . twilio_stop('CA33', 'MZ33')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- grep_error_log eval: qr/ignored media with a payload that is not base64/
--- grep_error_log_out eval
"ignored media with a payload that is not base64\n" x 5
--- error_log eval
[qr/ended: stop, .*media in 6 out 0, .*ignored 5/]



=== TEST 34: CR, LF and NUL from Twilio (an agent name, a DTMF digit, an event name) cannot forge a log line
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
ws_upgrade('/twilio/media')
. twilio_start('CA34', 'MZ34', { agent => "x\n1999/01/01 00:00:00 [alert] 1#1: forged agent" })
. ws_json({ event => 'dtmf', streamSid => 'MZ34', dtmf => { track => 'inbound_track', digit => "1\r\n1999/01/01 00:00:00 [alert] 1#1: forged digit\0tail" } })
. ws_json({ event => "later\n1999/01/01 00:00:00 [alert] 1#1: forged event", streamSid => 'MZ34' })
. twilio_stop('CA34', 'MZ34')
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- error_log eval
[qr/ignored agent name "x\\x0a1999\/01\/01 00:00:00 \[alert\] 1#1: forged agent"/,
 qr/ignored dtmf with an invalid digit "1\\x0d\\x0a1999\/01\/01 00:00:00 \[alert\] 1#1: forged digit\\x00tail"/,
 qr/ignored twilio event "later\\x0a1999/]
--- no_error_log eval
[qr/^1999\/01\/01/, qr/^\S*tail/]



=== TEST 35: frames that arrive a few bytes at a time (a header cut anywhere, a payload in pieces, the upstream read in between) are whole
--- config
    location = /twilio/media { twirt_stream; twirt_close_timeout 200ms; }
--- raw_request eval
my @frames = (twilio_start('CA35', 'MZ35'), map({ twilio_media('MZ35', $_) } 0 .. 4),
              ws_json({ event => 'mark', streamSid => 'MZ35', mark => { name => 'となりのトトロ' } }),
              twilio_stop('CA35', 'MZ35'));
my @pieces = (ws_upgrade('/twilio/media'));
for my $f (@frames) {
    my @cut = grep { $_ < length $f } (1, 2, 3, 7, 11, 40, 41);
    my $at = 0;
    for my $c (@cut, length $f) {
        push @pieces, substr($f, $at, $c - $at);
        $at = $c;
    }
}
\@pieces
--- raw_request_middle_delay: 0.002
--- error_code: 101
--- response_body eval
ws_server_frame('close', ws_close_payload(1000))
--- error_log eval
qr/call "CA35" stream "MZ35" ended: stop, .*frames in 8 out 1, media in 5 out 0, marks in 1,/
--- no_error_log
[error]
