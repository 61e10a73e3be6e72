# rediss://: the per-worker Redis connection over TLS, verified, against
# Debian's redis-server with TLS ports only, started here with the
# certificates util/certs made ($TWIRT_TEST_CERTS: a CA, localhost.crt for
# localhost and 127.0.0.1, other.crt for other.test, selfsigned.crt).
# A call's record over TLS; reads and large commands; each way
# verification refuses a server (another CA, self-signed, another name)
# with the reason in error.log, nothing written and the commands kept
# until the server is put right; TLS against a plaintext port and the
# reverse; AUTH and ACL users over TLS; a client certificate; nginx -t.
# Every wait is a bounded poll on the condition.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Twirt::Peers;
use Twirt::Conf qw(nginx_t http_conf);
use Twirt::Probe;
use Twirt::DNS;
use Test::Nginx::Socket 'no_plan';

our $Certs = $ENV{TWIRT_TEST_CERTS}
    or die "TWIRT_TEST_CERTS is not set: run through util/test\n";
our $Dir = tempdir('twirt-redis-tls-XXXXXX', TMPDIR => 1, CLEANUP => 1);

$ENV{TEST_NGINX_CERTS} = $Certs;

sub tls_args {
    my ($cert, @more) = @_;
    return ('--tls-cert-file', "$Certs/$cert.crt",
            '--tls-key-file', "$Certs/$cert.key",
            '--tls-ca-cert-file', "$Certs/ca.crt",
            '--tls-auth-clients', 'no', @more);
}

# name => [ the server's arguments after its port, TLS or not ]
our %Redis = (
    good  => [ 1, tls_args('localhost') ],
    swap  => [ 1, tls_args('selfsigned') ],     # put right in TEST 5
    other => [ 1, tls_args('other') ],
    auth  => [ 1, tls_args('localhost', '--requirepass', 's3cret') ],
    mtls  => [ 1, tls_args('localhost'), '--tls-auth-clients', 'yes' ],
    plain => [ 0 ],
);

for my $name (keys %Redis) {
    my ($tls, @args) = @{ $Redis{$name} };
    my $port = free_port();
    $Redis{$name} = {
        port => $port,
        args => [$tls ? ('--port', 0, '--tls-port', $port, @args)
                      : ('--port', $port), '--bind', '127.0.0.1'],
        cli  => ['-h', '127.0.0.1', '-p', $port,
                 $tls ? ('--tls', '--insecure', '--cert',
                         "$Certs/localhost.crt", '--key',
                         "$Certs/localhost.key") : ()],
    };
    $ENV{'TEST_NGINX_REDIS_' . uc $name} = $port;
}

push @{ $Redis{auth}{cli} }, '-a', 's3cret', '--no-auth-warning';

# every name is 127.0.0.1 for nginx's resolver
$ENV{TEST_NGINX_DNS} = free_port();
our $DnsPid;

sub redis_start {
    my ($name) = @_;
    $Redis{$name}{pid} = redis_server_start($name, $Redis{$name}, $Dir);
}

sub cli {
    my ($name, @args) = @_;
    return redis_cli_raw($Redis{$name}{cli}, @args);
}

sub stats_like {
    my ($re) = @_;
    my $s;
    until_true(15, sub { ($s = http('GET', '/redis-stats')) =~ $re });
    Test::More::like($s, $re, "stats reach $re");
}

# the first failed attempt is logged before anything could be written
sub log_shows {
    my ($re) = @_;
    Test::More::ok(until_true(15, sub { scalar log_lines($re) }),
                   "error.log shows $re")
        or Test::More::diag(join '', log_lines(qr/twirt: redis/));
}

add_cleanup_handler(sub {
    if ($DnsPid) {
        kill 'TERM', $DnsPid;
        waitpid $DnsPid, 0;
        undef $DnsPid;
    }
    for my $r (values %Redis) {
        my $pid = delete $r->{pid} or next;
        kill 'TERM', $pid;
        waitpid $pid, 0;
    }
});

redis_after_checks();

our $Locations = $RedisTestLocations;

our $Sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $Sim->{port};

add_block_preprocessor(sub {
    my ($block) = @_;
    $block->set_value('config', $Locations . ($block->config // ''));
    $block->set_value('request', "GET /redis-stats\n")
        unless defined $block->request;
});

place_calls_from_blocks($Sim);


# nginx -t: what is wrong is said

my $ca = "$Certs/ca.crt";

my @bad = (
    [ "twirt_redis rediss://unix:/run/redis.sock;"
      . " twirt_redis_ssl_trusted_certificate $ca;",
      qr/TLS to a unix socket is not supported in "rediss:\/\/unix:\/run\/redis\.sock"/ ],
    [ "twirt_redis rediss://127.0.0.1:6379;"
      . " twirt_redis_ssl_trusted_certificate $ca;"
      . " twirt_redis_ssl_certificate $Certs/localhost.crt;",
      qr/"twirt_redis_ssl_certificate" and "twirt_redis_ssl_certificate_key" go together/ ],
    [ "twirt_redis rediss://127.0.0.1:6379;"
      . " twirt_redis_ssl_trusted_certificate $Dir/none.crt;",
      qr/none\.crt/ ],
    [ "twirt_redis rediss://127.0.0.1:6379 user=app;"
      . " twirt_redis_ssl_trusted_certificate $ca;",
      qr/"user=" in "twirt_redis" needs "password="/ ],
    [ 'twirt_redis sentinel:m 127.0.0.1:26379 tls;',
      qr/TLS with Redis Sentinel is not supported/ ],
    [ 'twirt_redis rediss://redis.example.com:6380;'
      . " twirt_redis_ssl_trusted_certificate $ca;",
      qr/is a host name: it needs a "resolver"/ ],
    [ "twirt_redis 127.0.0.1:6380; twirt_redis_ssl_trusted_certificate $ca;",
      qr/"twirt_redis_ssl_\*" directives are set but twirt_redis "127\.0\.0\.1:6380" is not TLS: write it "rediss:\/\/host:port"/ ],
    [ 'twirt_redis unix:/run/redis.sock; twirt_redis_ssl_verify off;',
      qr/is not TLS/ ],
    [ 'twirt_redis_ssl_verify maybe;',
      qr/invalid value "maybe" in "twirt_redis_ssl_verify"/ ],
);

for my $case (@bad) {
    my ($snippet, $re) = @$case;
    my ($rc, $out) = nginx_t(http_conf($snippet));
    isnt($rc, 0, "nginx -t fails: $snippet") or diag $out;
    like($out, $re, "with a clear message: $snippet");
}

for my $good ("twirt_redis rediss://127.0.0.1:6380 user=app password=x db=1;"
              . " twirt_redis_ssl_trusted_certificate $ca;"
              . " twirt_redis_ssl_server_name redis.internal;"
              . " twirt_redis_ssl_certificate $Certs/localhost.crt;"
              . " twirt_redis_ssl_certificate_key $Certs/localhost.key;",
              'resolver 127.0.0.1; twirt_redis rediss://redis.example.com;'
              . " twirt_redis_ssl_trusted_certificate $ca;",
              'twirt_redis redis://127.0.0.1:6379;',
              'twirt_redis rediss://127.0.0.1:6379;')
{
    my ($rc, $out) = nginx_t(http_conf($good));
    is($rc, 0, "nginx -t accepts: $good") or diag $out;
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'twirt_redis rediss://127.0.0.1:6380; twirt_redis_ssl_verify off;'));
    is($rc, 0, 'nginx -t accepts verification off');
    like($out, qr/\[warn\].*TLS certificate verification of "rediss:\/\/127\.0\.0\.1:6380" is off \(twirt_redis_ssl_verify off\)/,
         '... with a warning');
}

redis_start($_) for sort keys %Redis;
$DnsPid = dns_server($ENV{TEST_NGINX_DNS}, '127.0.0.1');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call's record over TLS: complete, its Japanese text intact
--- http_config
    twirt_redis_timeout 5s;
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_GOOD;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_transcription gpt-4o-mini-transcribe language=ja;
--- config
    location = /twilio/media { twirt_stream; twirt_greeting "お電話ありがとうございます。"; }
--- init
main::stats_like(qr/connected=1/);
--- twilio
--scenario ja-booking --duration-ms 6000 --call-sid CA00000000000000000000000000000tls1 --param from=+81312345678
--- check
my $key = 'twirt:call:CA00000000000000000000000000000tls1';
ok(until_true(10, sub { main::cli('good', 'HGET', $key, 'status') eq "ended\n" }),
   'the record says ended');
is(main::cli('good', 'HGET', $key, 'from'), "+81312345678\n", 'from');
is(main::cli('good', 'HGET', $key, 'end_reason'), "stop\n", 'end reason');
my $events = main::cli('good', 'XRANGE', "$key:events", '-', '+');
utf8::decode($events);
like($events, qr/お電話ありがとうございます。/, 'the greeting, Japanese intact');
like($events, qr/予約を変更したいのですが/, "the caller's words");
like($events, qr/かしこまりました。ご予約番号をお願いします。/, "the agent's answer");
like($events, qr/ended/, 'and the end');
--- error_log eval
qr/\[info\] .*twirt: redis "rediss:\/\/127\.0\.0\.1:\d+" connected, flushed \d+ queued commands/
--- no_error_log
[error]



=== TEST 2: over TLS by name (SNI): reads, a command larger than a TLS record, a reply larger than a read
--- http_config
    twirt_redis_timeout 5s;
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_GOOD;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_redis_ssl_server_name localhost;
    client_max_body_size 1m;
    client_body_buffer_size 1m;
--- init
main::stats_like(qr/connected=1/);
main::cli('good', 'DEL', 't2', 't2:big');
--- request eval
my $big = CORE::join "\n", 'HSET', 't2:big', map { (sprintf('f%03d', $_), 'x' x 500) } 1 .. 200;
["POST /redis\nHSET\nt2\ngreeting\nお電話ありがとうございます。ご用件をどうぞ。\n",
 "POST /redis\n$big\n",
 "GET /redis-hget?key=t2",
 "GET /redis-hget?key=t2:big"]
--- response_body_like eval
["queued\n", "queued\n", "greeting=お電話ありがとうございます。ご用件をどうぞ。\n",
 qr/\A(?:f\d{3}=x{500}\n){200}\z/]
--- redis_after
is(cli('good', 'HGET', 't2', 'greeting'),
   "お電話ありがとうございます。ご用件をどうぞ。\n", 'UTF-8 intact on the server');
is(cli('good', 'HLEN', 't2:big'), "200\n", 'the large command whole');
--- no_error_log
[error]



=== TEST 3: a host name: resolved by nginx's resolver, sent as SNI and verified
--- http_config
    twirt_redis_timeout 5s;
    resolver 127.0.0.1:$TEST_NGINX_DNS ipv6=off;
    twirt_redis rediss://realtime.test:$TEST_NGINX_REDIS_GOOD;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- request
GET /redis?cmd=SET&a=t3n&a=byname
--- response_body
queued
--- redis_after
ok(until_true(10, sub { cli('good', 'GET', 't3n') eq "byname\n" }), 'written');
log_shows(qr/twirt: redis "rediss:\/\/realtime\.test:\d+" resolved to 127\.0\.0\.1/);
--- no_error_log
[error]



=== TEST 4: another CA: refused, the reason logged, nothing written, the command held
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_GOOD;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/selfsigned.crt;
--- init
main::cli('good', 'DEL', 't3');
--- request
GET /redis?cmd=SET&a=t3&a=leaked
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\/\/127\.0\.0\.1:\d+" TLS failed: certificate verify failed: \((?:19|20):[^)]+\)/);
log_shows(qr/attempt 3: TLS failed/);
is(cli('good', 'EXISTS', 't3'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/^queued=1 dropped=0 reconnects=0 errors=\d+ connected=0 sent=0 /m,
     'held, not sent');
is(scalar(log_lines(qr/\[error\].*twirt: redis/)), 1, 'one error line for the series');



=== TEST 4b: no trusted certificate named: the system's bundle, which does not know the test CA: refused
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_GOOD;
--- init
main::cli('good', 'DEL', 't3b');
--- request
GET /redis?cmd=SET&a=t3b&a=leaked
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\/\/127\.0\.0\.1:\d+" TLS failed: certificate verify failed: \((?:19|20):[^)]+\)/);
is(cli('good', 'EXISTS', 't3b'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/^queued=1 dropped=0 reconnects=0 errors=\d+ connected=0 sent=0 /m,
     'held, not sent');



=== TEST 5: a self-signed server: refused and held; once it has a certificate of the CA, the commands arrive
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_SWAP;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- init
main::cli('swap', 'DEL', 't4');
--- request
GET /redis?cmd=RPUSH&a=t4&a=held
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*TLS failed: certificate verify failed: \(18:self[- ]signed certificate\)/);
is(cli('swap', 'EXISTS', 't4'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/queued=1 .*connected=0/, 'held');
is(cli('swap', 'CONFIG', 'SET', 'tls-cert-file', "$Certs/localhost.crt",
       'tls-key-file', "$Certs/localhost.key"), "OK\n",
   'the server gets a certificate of the CA');
ok(until_true(15, sub { cli('swap', 'LRANGE', 't4', 0, -1) eq "held\n" }),
   'the held command arrives, once');
stats_like(qr/^queued=0 .*connected=1 sent=1 /m);
log_shows(qr/\[info\] .*twirt: redis "rediss:\S+" connected after \d+ attempts, flushed 1 queued commands/);



=== TEST 6: a certificate for another name: refused, nothing written
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_OTHER;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- request
GET /redis?cmd=SET&a=t5&a=leaked
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\S+" TLS failed: certificate does not match "127\.0\.0\.1"/);
is(cli('other', 'EXISTS', 't5'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/queued=1 .*connected=0/, 'held');



=== TEST 7: the same server with twirt_redis_ssl_server_name naming its certificate
--- http_config
    twirt_redis_timeout 5s;
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_OTHER;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_redis_ssl_server_name other.test;
--- init
main::stats_like(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t6&a=named
--- response_body
queued
--- redis_after
ok(until_true(10, sub { cli('other', 'GET', 't6') eq "named\n" }), 'written');
--- no_error_log
[error]



=== TEST 8: rediss:// at a plaintext port fails cleanly and the worker goes on
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_PLAIN;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_redis_timeout 300ms;
--- request
GET /redis?cmd=SET&a=t7&a=x
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\S+" TLS failed: (?:TLS handshake failed|no handshake within 300 ms)/);
log_shows(qr/attempt 3: TLS failed/);
is(cli('plain', 'EXISTS', 't7'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/queued=1 .*connected=0/, 'held; the worker answers');
--- no_error_log
[alert]
signal 11



=== TEST 9: plaintext at a TLS port fails cleanly
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_GOOD;
    twirt_redis_timeout 300ms;
--- request
GET /redis?cmd=SET&a=t8&a=x
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "127\.0\.0\.1:\d+" (?:connect failed: (?:Server closed the connection|Connection reset by peer)|did not answer the handshake in 300 ms)/);
log_shows(qr/attempt 3: /);
is(cli('good', 'EXISTS', 't8'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/queued=1 .*connected=0/, 'held; the worker answers');
--- no_error_log
[alert]
signal 11



=== TEST 10: AUTH over TLS, as an ACL user (user=, password=)
--- http_config
    twirt_redis_timeout 5s;
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_AUTH user=default password=s3cret db=2;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- init
main::stats_like(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t9&a=authed
--- response_body
queued
--- redis_after
ok(until_true(10, sub { cli('auth', '-n', 2, 'GET', 't9') eq "authed\n" }),
   'written after AUTH, in db 2');
--- no_error_log
[error]



=== TEST 11: a wrong password over TLS: refused AUTH
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_AUTH password=wrong;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
--- request
GET /redis?cmd=SET&a=t10&a=x
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\S+" refused AUTH: WRONGPASS/);
is(cli('auth', 'EXISTS', 't10'), "0\n", 'nothing written');



=== TEST 12: a server that wants a client certificate: given one, it is used
--- http_config
    twirt_redis_timeout 5s;
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_MTLS;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_redis_ssl_certificate $TEST_NGINX_CERTS/localhost.crt;
    twirt_redis_ssl_certificate_key $TEST_NGINX_CERTS/localhost.key;
--- init
main::stats_like(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t11&a=mutual
--- response_body
queued
--- redis_after
ok(until_true(10, sub { cli('mtls', 'GET', 't11') eq "mutual\n" }), 'written');
--- no_error_log
[error]



=== TEST 13: ... and without one, refused
--- http_config
    twirt_redis rediss://127.0.0.1:$TEST_NGINX_REDIS_MTLS;
    twirt_redis_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_redis_timeout 300ms;
--- request
GET /redis?cmd=SET&a=t12&a=x
--- response_body
queued
--- redis_after
log_shows(qr/\[error\] .*twirt: redis "rediss:\S+" /);
log_shows(qr/attempt 3: /);
is(cli('mtls', 'EXISTS', 't12'), "0\n", 'nothing written');
like(http('GET', '/redis-stats'), qr/queued=1 .*connected=0/, 'held');
