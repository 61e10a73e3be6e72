# The Realtime upstream client: addresses, DNS, TLS verification, the
# upgrade and its refusals, timeouts, frames from the upstream, and the
# API key kept out of every log line.

use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use Twirt::Peers;
use Twirt::DNS;
use Test::Nginx::Socket 'no_plan';

my $certs = $ENV{TWIRT_TEST_CERTS};
if (!$certs) {
    $certs = tempdir(CLEANUP => 1);
    system("$FindBin::Bin/../util/certs", $certs) == 0 or die "util/certs failed";
}
$ENV{TEST_NGINX_CERTS} = $certs;

my $sim = sim_start();
my $tls = sim_start('--tls-cert', "$certs/localhost.crt", '--tls-key', "$certs/localhost.key");
my $untrusted = sim_start('--tls-cert', "$certs/selfsigned.crt", '--tls-key', "$certs/selfsigned.key");
my $other = sim_start('--tls-cert', "$certs/other.crt", '--tls-key', "$certs/other.key");

$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_DNS_PORT} = ($ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984) + 53;
$ENV{TEST_NGINX_TLS_PORT} = $tls->{port};
$ENV{TEST_NGINX_UNTRUSTED_PORT} = $untrusted->{port};
$ENV{TEST_NGINX_OTHER_PORT} = $other->{port};

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_api_key sk-test-NEVER-LOGGED-4242;
    twirt_openai_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_instructions "[calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
});

place_calls_from_blocks($sim, $tls, $untrusted, $other);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: ws:// by IP: the upgrade carries the bearer key, Host, no OpenAI-Beta; frames are masked
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    }
--- twilio
--scenario ja-booking --duration-ms 4000
--- check
my ($hs) = grep { $_->{dir} eq 'handshake' } @$sim;
is($hs->{path}, '/v1/realtime?model=gpt-realtime', 'path and query');
is($hs->{headers}{Authorization}, 'Bearer <redacted len=25>', 'the bearer key');
is($hs->{headers}{Host}, "127.0.0.1:$ENV{TEST_NGINX_SIM_PORT}", 'Host with the port');
ok(!grep({ lc($_) eq 'openai-beta' } keys %{ $hs->{headers} }), 'no OpenAI-Beta');
my ($close) = grep { $_->{dir} eq 'close' } @$sim;
is($close->{code}, 1000, 'a clean close from twirt (an unmasked frame would have been 1002)');
is($close->{by}, 'client', 'by twirt');
is($sim_summary->{errors_sent}, 0, 'no error');
--- error_log
ended: stop
--- no_error_log
[error]
sk-test-NEVER-LOGGED-4242



=== TEST 2: a host name through nginx's resolver (a fake DNS answer)
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://realtime.test:$TEST_NGINX_SIM_PORT/v1/realtime;
    }
--- udp_listen eval: $ENV{TEST_NGINX_DNS_PORT}
--- udp_reply eval
dns_reply('127.0.0.1')
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($hs) = grep { $_->{dir} eq 'handshake' } @$sim;
is($hs->{headers}{Host}, "realtime.test:$ENV{TEST_NGINX_SIM_PORT}", 'Host is the name');
--- error_log
ended: stop
--- no_error_log
[error]



=== TEST 3: when an address fails, the next one is tried
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://realtime.test:$TEST_NGINX_SIM_PORT/v1/realtime;
    }
--- udp_listen eval: $ENV{TEST_NGINX_DNS_PORT}
--- udp_reply eval
dns_reply('127.0.0.2', '127.0.0.1')
--- twilio
--scenario silence --duration-ms 1500
--- check
is($call->{close}{by}, 'caller', 'the call went on to the end');
--- error_log eval
[qr/upstream "realtime.test" address 1 of 2: connection refused/, qr/ended: stop/]



=== TEST 4: a name that does not resolve fails the call with a clear error
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;
    resolver_timeout 500ms;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://nowhere.test/v1/realtime;
    }
--- udp_listen eval: $ENV{TEST_NGINX_DNS_PORT}
--- udp_reply eval
sub { my $q = shift; my ($id) = unpack('n', $q); pack('nnnnnn', $id, 0x8183, 0, 0, 0, 0) }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
--- error_log eval
[qr/upstream "nowhere.test" could not be resolved/, qr/ended: upstream not resolved/]



=== TEST 5: wss:// with a certificate from the trusted CA, checked against the IP
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url wss://127.0.0.1:$TEST_NGINX_TLS_PORT/v1/realtime;
    }
--- twilio
--scenario silence --duration-ms 1500
--- check
is($sim_summary->{errors_sent}, 0, 'a whole session over TLS');
--- error_log
ended: stop
--- no_error_log
[error]



=== TEST 6: wss:// by name: SNI and the host name checked
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT ipv6=off;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url wss://realtime.test:$TEST_NGINX_TLS_PORT/v1/realtime;
    }
--- udp_listen eval: $ENV{TEST_NGINX_DNS_PORT}
--- udp_reply eval
dns_reply('127.0.0.1')
--- twilio
--scenario silence --duration-ms 1500
--- error_log
ended: stop
--- no_error_log
[error]



=== TEST 7: an untrusted certificate fails the call
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url wss://127.0.0.1:$TEST_NGINX_UNTRUSTED_PORT/v1/realtime;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
--- error_log eval
[qr/certificate verify failed/, qr/ended: certificate not trusted/]



=== TEST 8: a certificate for another host fails the call
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url wss://127.0.0.1:$TEST_NGINX_OTHER_PORT/v1/realtime;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
--- error_log eval
[qr/upstream certificate does not match "127.0.0.1"/, qr/ended: certificate host mismatch/]



=== TEST 9: twirt_openai_ssl_verify off connects anyway, and says so at start
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_ssl_verify off;
        twirt_openai_url wss://127.0.0.1:$TEST_NGINX_UNTRUSTED_PORT/v1/realtime;
    }
--- twilio
--scenario silence --duration-ms 1500
--- error_log eval
[qr/\[warn\].*TLS certificate verification of "wss:\/\/127\.0\.0\.1:\d+\/v1\/realtime" is off/, qr/ended: stop/]



=== TEST 10: a stalled handshake hits twirt_openai_connect_timeout
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_connect_timeout 500ms;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=stall_handshake;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
ok($call->{close}{t} < 2500, 'soon after the timeout');
--- error_log eval
[qr/did not answer within twirt_openai_connect_timeout/, qr/ended: upstream connect timeout/]



=== TEST 11: a 401 is read and logged with the start of its body
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=http_401;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
--- error_log eval
[qr/refused the upgrade with 401: "\{\\x22error\\x22:.*invalid_api_key/, qr/ended: upstream answered 401/]
--- no_error_log
sk-test-NEVER-LOGGED-4242



=== TEST 12: a 429 is read and logged
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=http_429;
    }
--- twilio
--scenario silence
--- no_sim
--- error_log eval
[qr/refused the upgrade with 429: ".*rate_limit_exceeded/, qr/ended: upstream answered 429/]



=== TEST 13: a frame over the limit from the upstream closes it with 1009 and ends the call
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_max_message_size 128k;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=oversized_frame=200000;
    }
--- twilio
--scenario silence
--- check
my ($close) = grep { $_->{dir} eq 'close' } @$sim;
is($close->{code}, 1009, 'twirt closed the upstream with 1009');
is($call->{close}{code}, 1011, 'and the stream for the fallback');
--- error_log eval
[qr/upstream frame too big, closing with 1009/, qr/ended: upstream frame too big/]



=== TEST 14: invalid JSON from the upstream is logged and ignored
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=invalid_json=300;
    }
--- twilio
--scenario silence --duration-ms 2000
--- check
is($call->{close}{by}, 'caller', 'the call went on');
--- error_log eval
[qr/ignored invalid JSON from the Realtime API/, qr/ended: stop/]



=== TEST 15: the key from a file, never logged at debug level
--- user_files
>>> openai.key
sk-file-SECRET-9876

--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_api_key_file ../html/openai.key;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime;
    }
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($hs) = grep { $_->{dir} eq 'handshake' } @$sim;
is($hs->{headers}{Authorization}, 'Bearer <redacted len=19>', 'the key from the file, trimmed');
--- no_error_log
sk-file-SECRET-9876



=== TEST 16: the key from the environment, with nginx's env directive
--- main_config
    env OPENAI_API_KEY=sk-env-SECRET-5555;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_api_key "";
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime;
    }
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($hs) = grep { $_->{dir} eq 'handshake' } @$sim;
is($hs->{headers}{Authorization}, 'Bearer <redacted len=18>', 'the key from OPENAI_API_KEY');
--- no_error_log
sk-env-SECRET-5555



=== TEST 17: a 101 that breaks RFC 6455 4.1 (101 with an extension not offered) fails the connection
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=handshake_extension;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
is($call->{agent_audio_ms_received} // 0, 0, 'no session was used');
--- error_log eval
[qr/Realtime API unavailable: 101 with an extension not offered/, qr/ended: 101 with an extension not offered/]



=== TEST 18: a 101 that breaks RFC 6455 4.1 (101 with a subprotocol not offered) fails the connection
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=handshake_protocol;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
is($call->{agent_audio_ms_received} // 0, 0, 'no session was used');
--- error_log eval
[qr/Realtime API unavailable: 101 with a subprotocol not offered/, qr/ended: 101 with a subprotocol not offered/]



=== TEST 19: a 101 that breaks RFC 6455 4.1 (101 not over HTTP/1.1) fails the connection
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?sim_fail=handshake_http10;
    }
--- twilio
--scenario silence
--- no_sim
--- check
is($call->{close}{code}, 1011, 'the stream closed for the fallback');
is($call->{agent_audio_ms_received} // 0, 0, 'no session was used');
--- error_log eval
[qr{Realtime API unavailable: 101 not over HTTP/1\.1}, qr{ended: 101 not over HTTP/1\.1}]
