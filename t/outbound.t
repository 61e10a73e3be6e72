# Outbound calls: twirt_calls places a call through Twilio's REST API
# (t/peers/twilio_rest.py, the stand-in), which plays it out: the signed
# Url webhook, <Connect><Stream> to nginx over wss (a CA made at test
# time), the agent speaking first with the variables filled, the callee
# answering in Japanese, the signed status callbacks.  Then each way the
# request can fail, mapped to an answer that says which.
# Ports: the server port, and + 1 for the TLS server of the stream.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use MIME::Base64;
use Time::HiRes qw(time sleep);
use Twirt::Peers;
use Twirt::Check;
use Twirt::Redis;
use Twirt::Conf qw(nginx_t http_conf);
use Test::Nginx::Socket 'no_plan';

my $certs = tempdir(CLEANUP => 1);
system("$FindBin::Bin/../util/certs", $certs) == 0 or die "util/certs failed";
$ENV{TEST_NGINX_CERTS} = $certs;

our $Sid = 'AC' . ('0123456789abcdef' x 2);
our $Token = 'outbound-auth-token-5f1e';
our $KeySid = 'SK' . ('fedcba9876543210' x 2);
our $Secret = 'outbound-key-secret-9c2d';
$ENV{TEST_NGINX_ACCOUNT_SID} = $Sid;
$ENV{TEST_NGINX_TOKEN} = $Token;
$ENV{TEST_NGINX_KEY_SID} = $KeySid;
$ENV{TEST_NGINX_SECRET} = $Secret;
$ENV{TEST_NGINX_TLS_PORT} = server_port() + 1;

$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

our $sim = sim_start();      # the checks use it
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

my @account = ('--account-sid', $Sid, '--auth-token', $Token,
               '--api-key', "$KeySid:$Secret", '--caller-id', '+81300000000');

our $Rest = twilio_rest_start(@account, '--ca-file', "$certs/ca.crt",
                              '--scenario', 'ja-booking', '--call-ms', '6000',
                              '--ring-ms', '100', '--cps', '50');
our $Tls = twilio_rest_start(@account, '--default-outcome', 'busy',
                             '--tls-cert', "$certs/localhost.crt",
                             '--tls-key', "$certs/localhost.key");
our $Slow = twilio_rest_start(@account, '--api-delay-ms', '4000',
                              '--default-outcome', 'busy');
our $Limited = twilio_rest_start(@account, '--rate-limit', '1',
                                 '--default-outcome', 'busy', '--cps', '50');
$ENV{TEST_NGINX_REST_PORT} = $Rest->{port};
$ENV{TEST_NGINX_TLS_REST_PORT} = $Tls->{port};
$ENV{TEST_NGINX_SLOW_PORT} = $Slow->{port};
$ENV{TEST_NGINX_LIMITED_PORT} = $Limited->{port};

our $json = JSON::PP->new->utf8->canonical;
binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# a JSON POST to the test nginx: (status, decoded body, raw response)
sub post_json {
    my ($path, $body) = @_;
    utf8::encode($body) if utf8::is_utf8($body);
    my $port = server_port();
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port",
                                     Timeout => 10) or return (0, {}, '');
    print $sock "POST $path HTTP/1.1\r\nHost: localhost\r\n"
        . "Content-Type: application/json\r\nContent-Length: "
        . length($body) . "\r\nConnection: close\r\n\r\n" . $body;
    local $/;
    my $resp = <$sock> // '';
    my ($status) = $resp =~ m{^HTTP/1\.1 (\d+)};
    my ($text) = $resp =~ m{\r\n\r\n(.*)$}s;
    my $decoded = eval { $json->decode($text // '') } // {};
    return ($status // 0, $decoded, $resp);
}

sub call_json { return $json->encode($_[0]) }

# the records of a stand-in of a kind, waiting (bounded) until $until
# says they are complete
sub rest_wait {
    my ($peer, $until, $secs) = @_;
    my $deadline = time + ($secs // 20);
    while (1) {
        my $r = sim_records($peer);
        return $r if $until->($r) || time > $deadline;
        sleep 0.1;
    }
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;            # nginx may run under valgrind
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}] お客様は{{name}}様です。";
    twirt_greeting "{{name}}様、さくら歯科です。ご予約の確認でお電話しました。";
    twirt_twilio_account_sid $TEST_NGINX_ACCOUNT_SID;
    twirt_twilio_auth_token $TEST_NGINX_TOKEN;
    twirt_twilio_api_url http://127.0.0.1:$TEST_NGINX_REST_PORT;
    twirt_outbound_url http://127.0.0.1:$TEST_NGINX_SERVER_PORT/twilio/voice;
    twirt_outbound_status_callback http://127.0.0.1:$TEST_NGINX_SERVER_PORT/twilio/call-status;
    twirt_stream_url wss://127.0.0.1:$TEST_NGINX_TLS_PORT/twilio/media;

    server {
        listen 127.0.0.1:$TEST_NGINX_TLS_PORT ssl;
        ssl_certificate $TEST_NGINX_CERTS/localhost.crt;
        ssl_certificate_key $TEST_NGINX_CERTS/localhost.key;
        location = /twilio/media { twirt_stream; }
    }
CONF
    $block->set_value('config', <<'CONF' . ($block->config // ''));
    location = /ping { return 200 'ok'; }
    location = /calls { twirt_calls; }
    location = /twilio/voice {
        twirt_twiml;
        twirt_parameter scenario ja-booking;
        twirt_parameter calltag $twirt_param_CallSid;
    }
    location = /twilio/call-status { twirt_call_status; }
CONF
});

# --- check: Perl run once nginx is up (after the /ping request)
check_sections();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call placed and played out: the agent greets the customer by name first, the callee answers in Japanese, status callbacks signed and recorded
--- check
my ($status, $r) = post_json('/calls', call_json({
    to => '090-1234-5678', from => '+81300000000', agent => 'sales',
    variables => { name => '山田太郎', plan => 'A&B <"x">' }, timeout => 20 }));
is($status, 201, 'the call is created');
my $sid = $r->{call_sid} // '';
like($sid, qr/^CA[0-9a-f]{32}$/, 'with its CallSid');
is($r->{status}, 'queued', 'and Twilio\'s status');
is($r->{to}, '+819012345678', 'the number in E.164');

my $rec = rest_wait($main::Rest, sub {
    grep { $_->{kind} eq 'call_done' && $_->{call_sid} eq $sid } @{$_[0]} }, 40);
my ($api) = grep { $_->{kind} eq 'api' && ($_->{status} // 0) == 201 } @$rec;
is($api->{auth}, 'account', 'Basic auth with the Account SID and auth token');
is($api->{params}{To}[0], '+819012345678', 'To normalised');
is_deeply($api->{params}{StatusCallbackEvent},
          [qw(initiated ringing answered completed)], 'every progress event asked for');
is($api->{params}{Timeout}[0], '20', 'Timeout');
like($api->{params}{Url}[0], qr{^http://127\.0\.0\.1:\d+/twilio/voice\?agent=sales&var\.},
     'the Url carries the agent and the variables');

my ($url) = grep { $_->{kind} eq 'webhook' && $_->{purpose} eq 'url' && $_->{call_sid} eq $sid } @$rec;
is($url->{status}, 200, 'the signed Url webhook is accepted');
like($url->{body}, qr{<Parameter name="agent" value="sales"/>}, 'agent parameter');
like($url->{body}, qr{<Parameter name="name" value="山田太郎"/>}, 'name parameter');
like($url->{body}, qr{<Parameter name="plan" value="A&amp;B &lt;&quot;x&quot;&gt;"/>}, 'escaped');

my ($stream) = grep { $_->{kind} eq 'stream' && $_->{call_sid} eq $sid } @$rec;
is($stream->{parameters}{name}, '山田太郎', 'the stream starts with the variables');
is($stream->{summary}{http_status}, 101, 'over wss, signed');

my @status = grep { $_->{kind} eq 'webhook' && ($_->{url} // '') =~ /call-status/
                    && $_->{call_sid} eq $sid } @$rec;
is(scalar(grep { $_->{status} == 204 } @status), 4, 'four status callbacks, signed and accepted')
    or diag(Test::More::explain(\@status));

my $conn = Twirt::Peers::_sim_conn([$sim], $sid);
my ($update) = grep { ($_->{event}{type} // '') eq 'session.update' } @$conn;
like($update->{event}{session}{instructions}, qr/お客様は山田太郎様です/, 'instructions filled');
my ($create) = grep { ($_->{event}{type} // '') eq 'response.create' } @$conn;
like(JSON::PP->new->encode($create->{event}), qr/Say exactly: 山田太郎様、さくら歯科です/,
     'the agent speaks first, the greeting filled');
my @said = grep { ($_->{event}{type} // '') eq 'input_audio_buffer.append' } @$conn;
ok(@said > 50, 'the callee\'s audio reached the model');
my @heard = map { $_->{event}{transcript} }
            grep { ($_->{event}{type} // '') eq 'conversation.item.input_audio_transcription.completed' } @$conn;
ok((grep { /\p{Han}|\p{Hiragana}|\p{Katakana}/ } @heard), 'the callee answered in Japanese')
    or diag(Test::More::explain($conn));
my @caller = grep { ($_->{role} // '') eq 'caller' } @{ twirt_events($sid) };
ok(@caller, 'the callee\'s words are call events too');

ok(log_wait(qr/twirt: event \{[^\n]*"call_sid":"$sid"[^\n]*"event":"completed"[^\n]*"type":"call"/),
   'the call events are logged');
like(error_log_text(), qr/outbound call $sid to \+819012345678 placed, status queued/, 'placed');
my $events;
redis_wait(10, sub {
    $events = [ grep { ($_->{type} // '') eq 'call' } @{ redis_stream_entries("twirt:call:$sid:events") } ];
    @$events >= 4 });
is_deeply([ map { $_->{event} } @$events ], [qw(initiated ringing in-progress completed)],
          'the progress is in the call\'s events stream in Redis')
    or diag(Test::More::explain($events));
is($events->[-1]{to}, '+819012345678', 'with the callee');
--- no_error_log
[error]
--- timeout: 60



=== TEST 2: an API key authenticates too; the key and tokens are never logged
--- config
    location = /calls-key {
        twirt_calls;
        twirt_twilio_api_key $TEST_NGINX_KEY_SID $TEST_NGINX_SECRET;
    }
--- check
my ($status, $r) = post_json('/calls-key', call_json({ to => '03-1234-5678', from => '+81300000000' }));
is($status, 201, 'created') or diag(Test::More::explain($r));
my $rec = rest_wait($main::Rest, sub { grep { $_->{kind} eq 'api' && ($_->{params}{To}[0] // '') eq '+81312345678' } @{$_[0]} });
my ($api) = grep { $_->{kind} eq 'api' && ($_->{params}{To}[0] // '') eq '+81312345678' } @$rec;
is($api->{auth}, 'api_key', 'Basic auth with the API key');
my $log = error_log_text();
for my $secret ($main::Secret, $main::Token, encode_base64("$main::KeySid:$main::Secret", ''),
                encode_base64("$main::Sid:$main::Token", '')) {
    unlike($log, qr/\Q$secret\E/, 'a secret is not in the log');
}
--- no_error_log
[error]



=== TEST 3: domestic formats are normalised, invalid numbers and bodies refused with what is wrong
--- check
my @ok = (['090-1234-5678', '+819012345678'], ['03-1234-5678', '+81312345678'],
          ['０９０ー１２３４ー５６７８', undef], ['０９０－１２３４－５６７８', '+819012345678'],
          ['(03) 1234 5678', '+81312345678'], ['+81 90 1234 5678', '+819012345678']);
for my $c (@ok) {
    my ($status, $r) = post_json('/calls', call_json({ to => $c->[0], from => '+81300000000' }));
    if (defined $c->[1]) {
        is($status, 201, "$c->[0] accepted") or diag(Test::More::explain($r));
        is($r->{to}, $c->[1], "$c->[0] is $c->[1]");
    } else {
        is($status, 400, "$c->[0] (long vowel marks) refused");
    }
}
for my $bad (['12345', qr/starts with 0/], ['090-1234-567', qr/has 11 digits/], ['03-1234-567', qr/10 or 11 digits/],
             ['+81 090 1234 5678', qr/trunk 0 is dropped/], ['090-1234-5678x', qr/only digits/],
             ['', qr/empty/], ['010-1-212-555-1234', qr/international prefix/]) {
    my ($status, $r) = post_json('/calls', call_json({ to => $bad->[0], from => '+81300000000' }));
    is($status, 400, "\"$bad->[0]\" refused");
    is($r->{error}{kind}, 'invalid_number', 'as an invalid number');
    like($r->{error}{message}, $bad->[1], 'saying why');
}
my @bodies = ('not json', '[1]', '{"to":1,"from":"+81300000000"}', '{"from":"+81300000000"}',
              '{"to":"0312345678","from":"+81300000000","timeout":3}',
              '{"to":"0312345678","from":"+81300000000","machine_detection":"Maybe"}',
              '{"to":"0312345678","from":"+81300000000","agent":"a b"}',
              '{"to":"0312345678","from":"+81300000000","variables":{"na-me":"x"}}',
              '{"to":"0312345678","from":"+81300000000","variables":{"name":1}}',
              '{"to":"0312345678","from":"+81300000000","variables":{"name":"' . ('あ' x 500) . '"}}',
              '{"to":"0312345678","to":"0312345678","from":"+81300000000"}');
for my $b (@bodies) {
    my ($status, $r) = post_json('/calls', $b);
    is($status, 400, 'refused: ' . substr($b, 0, 60));
    ok($r->{error}{kind} && $r->{error}{message}, 'a JSON error with kind and message');
}
my ($status) = Twirt::Peers::http_get_text('/calls');
is($status, 405, 'GET is not allowed');
--- no_error_log
[error]



=== TEST 4: Twilio's errors by kind: invalid number, wrong credentials, 5xx, rate limit
--- config
    location = /calls-wrong {
        twirt_calls;
        twirt_twilio_auth_token wrong-token;
    }
    location = /calls-limited {
        twirt_calls;
        twirt_twilio_api_url http://127.0.0.1:$TEST_NGINX_LIMITED_PORT;
    }
--- check
my ($status, $r) = post_json('/calls', call_json({ to => '+12345678', from => '+81300000000' }));
is($status, 400, 'a number Twilio refuses');
is($r->{error}{kind}, 'invalid_number');
is($r->{error}{code}, 21211, 'Twilio\'s code');
($status, $r) = post_json('/calls', call_json({ to => '0312345678', from => '+81399999999' }));
is($status, 400, 'a caller ID that is not the account\'s');
is($r->{error}{kind}, 'invalid_from');
($status, $r) = post_json('/calls-wrong', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 502, 'wrong credentials');
is($r->{error}{kind}, 'twilio_auth');
like($r->{error}{message}, qr/Twilio refused the credentials \(20003\)/);

my $port = $main::Rest->{port};
my $s = IO::Socket::INET->new("127.0.0.1:$port") or die;
print $s "POST /_stand_in/fail?count=1&status=503 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
{ local $/; my $x = <$s>; }
($status, $r) = post_json('/calls', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 502, 'Twilio unavailable');
is($r->{error}{kind}, 'twilio_unavailable');
like($r->{error}{message}, qr/503 \(20503\)/);

my (%seen, $raw);
for (1 .. 4) {
    ($status, $r, $raw) = post_json('/calls-limited', call_json({ to => '0312345678', from => '+81300000000' }));
    $seen{$status}++;
    last if $status == 429;
}
ok($seen{429}, 'rate limited') or diag(Test::More::explain(\%seen));
is($r->{error}{kind}, 'rate_limited');
like($raw, qr/\r\nRetry-After: \d+\r\n/, 'with Retry-After');
--- error_log eval
[qr/the Twilio API refused the request with 401, code 20003/, qr/refused the request with 429, code 20429/]



=== TEST 5: TLS to the API verified with the CA made at test time, refused without it
--- config
    location = /calls-tls {
        twirt_calls;
        twirt_twilio_api_url https://127.0.0.1:$TEST_NGINX_TLS_REST_PORT;
        twirt_twilio_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    }
    location = /calls-untrusted {
        twirt_calls;
        twirt_twilio_api_url https://127.0.0.1:$TEST_NGINX_TLS_REST_PORT;
    }
    location = /calls-refused {
        twirt_calls;
        twirt_twilio_api_url http://127.0.0.1:1;
    }
--- check
my ($status, $r) = post_json('/calls-tls', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 201, 'verified TLS') or diag(Test::More::explain($r));
($status, $r) = post_json('/calls-untrusted', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 502, 'not trusted');
is($r->{error}{kind}, 'twilio_tls');
like($r->{error}{message}, qr/certificate not trusted/);
($status, $r) = post_json('/calls-refused', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 502, 'connection refused');
is($r->{error}{kind}, 'twilio_connect');
like($r->{error}{message}, qr/connection refused/);
--- error_log eval
[qr/Twilio API "127.0.0.1" certificate verify failed/, qr/Twilio API connect\(\) to "http:\/\/127.0.0.1:1" failed/]



=== TEST 6: the client's timeout, and a request closed mid-way cancels the call to Twilio
--- config
    location = /calls-slow {
        twirt_calls;
        twirt_twilio_api_url http://127.0.0.1:$TEST_NGINX_SLOW_PORT;
        twirt_twilio_timeout 500ms;
    }
    location = /calls-slow-long {
        twirt_calls;
        twirt_twilio_api_url http://127.0.0.1:$TEST_NGINX_SLOW_PORT;
    }
--- check
my $t0 = time;
my ($status, $r) = post_json('/calls-slow', call_json({ to => '0312345678', from => '+81300000000' }));
is($status, 504, 'timed out');
is($r->{error}{kind}, 'twilio_timeout');
ok(time - $t0 < 3, 'after the timeout, not the answer');

my $port = server_port();
my $body = call_json({ to => '0312345678', from => '+81300000000' });
my $s = IO::Socket::INET->new("127.0.0.1:$port") or die;
print $s "POST /calls-slow-long HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       . "Content-Length: " . length($body) . "\r\n\r\n$body";
my $rec = rest_wait($main::Slow, sub { grep { $_->{kind} eq 'api_start' || $_->{kind} eq 'api' } @{$_[0]} }, 2);
close $s;
ok(log_wait(qr/request to the Twilio API canceled: the request went away/), 'canceled when the client went away');
--- error_log eval
[qr/Twilio API "http:\/\/127.0.0.1:\d+" did not answer within 500 ms/]



=== TEST 7: nginx -t on the directives
--- check
my @cases = (
  ['twirt_twilio_account_sid XY12;', qr/invalid Account SID "XY12"/],
  ['twirt_twilio_api_url ftp://x;', qr/invalid Twilio API URL "ftp:\/\/x": it must start with "http:\/\/" or "https:\/\/"/],
  ['twirt_twilio_api_url https://api.twilio.com/v1;', qr/takes only the scheme, the host and the port/],
  ['twirt_twilio_api_key SK12 secret;', qr/invalid API key SID/],
  ['location = /c { twirt_calls; }', qr/"twirt_calls" needs "twirt_twilio_account_sid"/],
  ["twirt_twilio_account_sid $main::Sid; location = /c { twirt_calls; }", qr/"twirt_calls" needs credentials/],
  ["twirt_twilio_account_sid $main::Sid; twirt_twilio_auth_token t; location = /c { twirt_calls; }", qr/needs "twirt_outbound_url"/],
  ["twirt_twilio_account_sid $main::Sid; twirt_twilio_auth_token t; twirt_outbound_url https://gw.example.com/v; location = /c { twirt_calls; }", qr/"twirt_twilio_api_url" host "api.twilio.com" needs a "resolver"/],
  ['twirt_outbound_url gw.example.com/v;', qr/invalid URL for Twilio/],
);
for my $c (@cases) {
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $c->[0] }"));
    isnt($rc, 0, "refused: $c->[0]");
    like($out, $c->[1], 'saying what is wrong') or diag $out;
}
my ($rc, $out) = nginx_t(http_conf("resolver 127.0.0.1; server { listen 127.0.0.1:1; twirt_twilio_account_sid $main::Sid; twirt_twilio_api_key $main::KeySid s3cr3t-value; twirt_outbound_url https://gw.example.com/v; location = /c { twirt_calls; } }"));
is($rc, 0, 'a complete configuration is accepted') or diag $out;
unlike($out, qr/s3cr3t-value/, 'the secret is not printed');
