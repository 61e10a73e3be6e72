# The per-worker Redis connection (ngx_http_twirt_redis_module) against real
# redis-server instances that this file starts, stops and restarts itself
# (a unix socket, TCP, TCP with a password, one kept SIGSTOPped) and a tiny
# DNS server for nginx's resolver.  Commands are driven through the
# test-only twirt_redis_test handlers and checked with redis-cli on the same
# sockets.  Every wait is a bounded poll on the condition.  Ports: the
# server port + 1 to + 5.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use Twirt::Conf qw(nginx_t http_conf);
use Twirt::Probe;
use Twirt::DNS;
use Test::Nginx::Socket 'no_plan';

our $Base = server_port();
our $Dir = tempdir('twirt-redis-XXXXXX', TMPDIR => 1, CLEANUP => 1);

our %Redis = (
    unix => {
        args => ['--port', 0, '--unixsocket', "$Dir/unix.sock",
                 '--unixsocketperm', 700],
        cli  => ['-s', "$Dir/unix.sock"],
    },
    tcp => {
        args => ['--port', $Base + 1, '--bind', '127.0.0.1'],
        cli  => ['-p', $Base + 1],
    },
    auth => {
        args => ['--port', $Base + 2, '--bind', '127.0.0.1',
                 '--requirepass', 's3cret'],
        cli  => ['-p', $Base + 2, '-a', 's3cret', '--no-auth-warning'],
    },
    paused => {                  # SIGSTOPped: takes connections, never answers
        args => ['--port', $Base + 5, '--bind', '127.0.0.1'],
        cli  => ['-p', $Base + 5],
    },
);

$ENV{TEST_NGINX_REDIS_UNIX} = "$Dir/unix.sock";
$ENV{TEST_NGINX_REDIS_TCP} = $Base + 1;
$ENV{TEST_NGINX_REDIS_AUTH} = $Base + 2;
$ENV{TEST_NGINX_REDIS_DEAD} = $Base + 3;     # nothing listens there
$ENV{TEST_NGINX_DNS} = $Base + 4;
$ENV{TEST_NGINX_REDIS_PAUSED} = $Base + 5;

# bytes that would break a command built as text: RESP markers, CRLF,
# quotes, spaces, UTF-8; values also carry a NUL (redis-cli cannot take one
# in an argument, so keys and fields do not)
our $Odd = "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe9\x80\x9a"
           . "\xe8\xa9\xb1 \"quoted\" 'single' *3\r\n\$5\r\nEVIL\r\n"
           . "+OK\r\n end\t%";
our $OddValue = "$Odd \x00 after a NUL";

sub redis_start {
    my ($name) = @_;
    $Redis{$name}{pid} = redis_server_start($name, $Redis{$name}, $Dir);
}

sub redis_stop {
    my ($name) = @_;
    my $pid = delete $Redis{$name}{pid} or return;
    kill 'CONT', $pid;
    kill 'TERM', $pid;
    waitpid $pid, 0;
}

sub redis_signal {
    my ($name, $sig) = @_;
    kill $sig, $Redis{$name}{pid};
}

sub cli {
    my ($name, @args) = @_;
    return redis_cli_raw($Redis{$name}{cli}, @args);
}

sub sorted_lines {
    return join '', sort map { "$_\n" } split /\n/, $_[0] // '';
}

sub poll_until {
    my ($cond, $timeout) = @_;
    my $deadline = time + ($timeout // 10);
    while (time < $deadline) {
        my $v = $cond->();
        return $v if $v;
        sleep 0.02;
    }
    return $cond->();
}

sub enc {
    my ($s) = @_;
    $s =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    return $s;
}

sub wait_stats {
    my ($re) = @_;
    my $stats = poll_until(sub {
        my $s = http('GET', '/redis-stats');
        $s =~ $re ? $s : undef;
    }, 15);
    Test::More::like($stats // http('GET', '/redis-stats'), $re,
                     "stats reach $re");
}

sub wait_log {
    my ($re) = @_;
    my $ok = poll_until(sub { scalar log_lines($re) }, 15);
    Test::More::ok($ok, "error.log shows $re");
}

# A DNS server that answers every A question with 127.0.0.1: the proof
# that a host name goes through nginx's resolver, not getaddrinfo()
our $DnsPid;

add_cleanup_handler(sub {
    redis_stop($_) for keys %Redis;
    if ($DnsPid) {
        kill 'TERM', $DnsPid;
        waitpid $DnsPid, 0;
        undef $DnsPid;
    }
});

redis_after_checks();

# "--- master: on" runs a block with a master and a worker process; a block
# without "--- config" gets the three test locations
our $Locations = $RedisTestLocations;

add_block_preprocessor(sub {
    my ($block) = @_;
    my $master = $block->can('master') && $block->master;
    ($master && $master =~ /on/) ? master_on() : master_off();
    $block->set_value('config', $Locations) unless defined $block->config;
});


# nginx -t: what is wrong is said

my @bad = (
    [ 'twirt_redis redis.example.com:6379;',
      qr/twirt_redis "redis\.example\.com:6379" is a host name: it needs a "resolver" at http level/ ],
    [ 'twirt_redis 127.0.0.1:6379; twirt_redis 127.0.0.1:6380;',
      qr/"twirt_redis" directive is duplicate/ ],
    [ 'twirt_redis 127.0.0.1:6379 pass=x;',
      qr/invalid parameter "pass=x" in "twirt_redis", expected "password=", "user=" or "db="/ ],
    [ 'twirt_redis 127.0.0.1:6379 password=;',
      qr/empty "password=" in "twirt_redis"/ ],
    [ 'twirt_redis 127.0.0.1:6379 db=one;',
      qr/invalid database number "db=one"/ ],
    [ 'twirt_redis 127.0.0.1:99999;', qr/invalid port in "127\.0\.0\.1:99999"/ ],
    [ 'twirt_redis "red is:6379";', qr/invalid address "red is:6379"/ ],
    [ 'twirt_redis unix:;', qr/no path or too long a path in "unix:"/ ],
    [ 'twirt_redis_queue 0;',
      qr/value must be equal to or greater than 1/ ],
    [ 'twirt_redis_timeout 0;', qr/"twirt_redis_timeout" must be more than 0/ ],
    [ 'server { listen 127.0.0.1:1; twirt_redis 127.0.0.1:6379; }',
      qr/"twirt_redis" directive is not allowed here/ ],
    [ 'server { listen 127.0.0.1:1; location /r { twirt_redis_test bogus; } }',
      qr/invalid value "bogus", expected "command", "hgetall", "stats" or "build"/ ],
);

for my $case (@bad) {
    my ($snippet, $re) = @$case;
    my ($rc, $out) = nginx_t(http_conf($snippet));
    isnt($rc, 0, "nginx -t fails: $snippet") or diag $out;
    like($out, $re, "with a clear message: $snippet");
}

for my $good ('resolver 127.0.0.1; twirt_redis redis.example.com:6379;',
              'twirt_redis [::1]:6380 password=a=b db=3;',
              'twirt_redis unix:/nonexistent/redis.sock; twirt_redis_prefix t:;'
              . ' twirt_redis_ttl 1h; twirt_redis_queue 4096;'
              . ' twirt_redis_timeout 1s; twirt_node gw-1;')
{
    my ($rc, $out) = nginx_t(http_conf($good));
    is($rc, 0, "nginx -t accepts: $good") or diag $out;
}

redis_start($_) for sort keys %Redis;
redis_signal('paused', 'STOP');
$DnsPid = dns_server($ENV{TEST_NGINX_DNS}, '127.0.0.1');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: without twirt_redis nothing connects and the handlers say so
--- request eval
["GET /redis?cmd=SET&a=t1&a=x", "GET /redis-hget?key=t1",
 "GET /redis-stats"]
--- response_body eval
["disabled\n", "disabled\n", "disabled\n"]
--- no_error_log
twirt: redis



=== TEST 2: commands reach redis-server over a unix socket, in order
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'DEL', 't2');
--- request
POST /redis
RPUSH
t2
one

RPUSH
t2
two
three

RPUSH
t2
four
--- response_body
queued
queued
queued
--- redis_after
ok(poll_until(sub { cli('unix', 'LLEN', 't2') eq "4\n" }),
   'the commands arrived');
is(cli('unix', 'LRANGE', 't2', 0, -1), "one\ntwo\nthree\nfour\n",
   'in order, with all their arguments');
like(poll_until(sub { my $s = http('GET', '/redis-stats'); $s =~ /sent=3 unbuilt=0$/m ? $s : undef })
     // '', qr/^queued=0 dropped=0 reconnects=0 errors=0 connected=1 sent=3 unbuilt=0$/m,
     'counted as answered');
--- error_log eval
qr/\[info\] .*twirt: redis "unix:\S+unix\.sock" connected, flushed 0 queued commands/
--- no_error_log
[error]
[warn]



=== TEST 3: Japanese text and odd bytes round-trip byte for byte (argv, never a format string)
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'DEL', "t3:$main::Odd", 't3:h');
--- request eval
["GET /redis?cmd=SET&a=" . main::enc("t3:$main::Odd") . "&a=" . main::enc($main::OddValue),
 "GET /redis?cmd=HSET&a=t3:h&a=" . main::enc($main::Odd) . "&a=" . main::enc("v $main::OddValue")
 . "&a=" . main::enc("\xe5\x90\x8d\xe5\x89\x8d") . "&a=" . main::enc("\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e")]
--- response_body eval
["queued\n", "queued\n"]
--- redis_after
ok(poll_until(sub { cli('unix', 'HLEN', 't3:h') eq "2\n" }), 'arrived');
is(cli('unix', 'GET', "t3:$Odd"), "$OddValue\n", 'key and value are the bytes sent');
is(cli('unix', 'HGET', 't3:h', $Odd), "v $OddValue\n", 'a hash field too');
is(sorted_lines(http('GET', '/redis-hget?key=t3:h')),
   sorted_lines("$Odd=v $OddValue\n\xe5\x90\x8d\xe5\x89\x8d=\xe5\xb1\xb1\xe7\x94\xb0 \xe5\xa4\xaa\xe9\x83\x8e\n"),
   'and they come back the same through HGETALL');
--- no_error_log
[error]



=== TEST 4: over TCP; a POST body carries UTF-8 lines as they are
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_TCP;
--- init
main::wait_stats(qr/connected=1/);
main::cli('tcp', 'DEL', 't4');
--- request
POST /redis
HSET
t4
greeting
お電話ありがとうございます。ご用件をどうぞ。
voice
marin
--- response_body
queued
--- redis_after
ok(poll_until(sub { cli('tcp', 'HLEN', 't4') eq "2\n" }), 'arrived over TCP');
is(cli('tcp', 'HGET', 't4', 'greeting'),
   "お電話ありがとうございます。ご用件をどうぞ。\n", 'UTF-8 intact');
is(sorted_lines(http('GET', '/redis-hget?key=t4')),
   "greeting=お電話ありがとうございます。ご用件をどうぞ。\nvoice=marin\n",
   'HGETALL over TCP');
is(http('GET', '/redis-hget?key=t4:none'), "empty\n", 'a missing key is an empty hash');
--- error_log eval
qr/twirt: redis "127\.0\.0\.1:\d+" connected/
--- no_error_log
[error]



=== TEST 5: AUTH with the right password
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_AUTH password=s3cret;
--- init
main::wait_stats(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t5&a=authed
--- response_body
queued
--- redis_after
ok(poll_until(sub { cli('auth', 'GET', 't5') eq "authed\n" }), 'written after AUTH');
--- no_error_log
[error]
s3cret



=== TEST 6: a wrong password: one clear error line, attempts back off, nothing is sent
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_AUTH password=wrong;
--- init
main::wait_log(qr/attempt 5: refused AUTH/);
--- request
GET /redis?cmd=SET&a=t6&a=x
--- response_body
queued
--- redis_after
like(http('GET', '/redis-stats'), qr/^queued=1 dropped=0 reconnects=0 errors=[5-9] connected=0 sent=0 unbuilt=0$/m,
     'held, not sent');
is(cli('auth', 'EXISTS', 't6'), "0\n", 'nothing reached Redis');
my @delays = map { /attempt \d+ in (\d+) ms/ ? $1 : () } log_lines(qr/attempt \d+ in \d+ ms/);
is("@delays[0 .. 3]", '100 200 400 800', 'the delay doubles');
--- grep_error_log eval
qr/\[error\].*twirt: redis.*/
--- grep_error_log_out eval
qr/\A[^\n]*twirt: redis "127\.0\.0\.1:\d+" refused AUTH: WRONGPASS invalid username-password pair[^\n]*\n\z/
--- no_error_log
wrong



=== TEST 7: db= selects the database before anything is sent
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX db=5;
--- init
main::cli('unix', '-n', 5, 'DEL', 't7');
main::cli('unix', '-n', 0, 'DEL', 't7');
main::wait_stats(qr/connected=1/);
--- request
GET /redis?cmd=HSET&a=t7&a=db&a=five
--- response_body
queued
--- redis_after
ok(poll_until(sub { cli('unix', '-n', 5, 'HGET', 't7', 'db') eq "five\n" }), 'in db 5');
is(cli('unix', '-n', 0, 'EXISTS', 't7'), "0\n", 'not in db 0');
is(http('GET', '/redis-hget?key=t7'), "db=five\n", 'reads use db 5 too');
--- no_error_log
[error]



=== TEST 8: Redis stopped mid-run and restarted: what was queued arrives, in order, none lost
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::redis_stop('unix');
main::wait_stats(qr/connected=0/);
my ($t0, @answers) = (Time::HiRes::time());
push @answers, main::http('GET', "/redis?cmd=RPUSH&a=t8&a=$_") for 1 .. 50;
my $took = Time::HiRes::time() - $t0;
Test::More::is(join('', @answers), "queued\n" x 50, 'all 50 queued while Redis is down');
Test::More::cmp_ok($took, '<', 2, 'and answered at once');
$t0 = Time::HiRes::time();
Test::More::is(main::http('GET', '/redis-hget?key=t8'), "unavailable\n",
               'a read while down is declined');
Test::More::cmp_ok(Time::HiRes::time() - $t0, '<', 0.5, 'without waiting');
Test::More::like(main::http('GET', '/redis-stats'), qr/queued=50 dropped=0/, '50 held');
main::redis_start('unix');
main::wait_stats(qr/^queued=0 .*connected=1 sent=50 unbuilt=0$/m);
--- request
GET /redis-stats
--- response_body_like
^queued=0 dropped=0 reconnects=1 errors=\d+ connected=1 sent=50 unbuilt=0$
--- redis_after
my $all = join '', map { "$_\n" } 1 .. 50;
ok(poll_until(sub { cli('unix', 'LRANGE', 't8', 0, -1) eq $all }),
   'all 50 arrived in order after the reconnect');
is(scalar(log_lines(qr/\[error\].*connection lost/)), 1, 'one error line for the loss');
--- error_log eval
[qr/\[error\] .*twirt: redis "unix:\S+" connection lost: Server closed the connection/,
 qr/\[info\] .*twirt: redis "unix:\S+" reconnected after \d+ attempts?, flushed 50 queued commands/]



=== TEST 9: the bound exceeded while Redis is down: new commands dropped, counted, logged once
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
    twirt_redis_queue 5;
--- init
main::wait_stats(qr/connected=1/);
main::redis_stop('unix');
main::wait_stats(qr/connected=0/);
--- request
POST /redis
RPUSH
t9
1

RPUSH
t9
2

RPUSH
t9
3

RPUSH
t9
4

RPUSH
t9
5

RPUSH
t9
6

RPUSH
t9
7

RPUSH
t9
8
--- response_body
queued
queued
queued
queued
queued
dropped
dropped
dropped
--- redis_after
is(http('POST', '/redis', "RPUSH\nt9\n9\n\nRPUSH\nt9\n10"), "dropped\ndropped\n",
   'the burst goes on');
like(http('GET', '/redis-stats'), qr/^queued=5 dropped=5 /, 'five dropped, five held');
is(scalar(log_lines(qr/queue full/)), 1, 'one warning for the burst');
redis_start('unix');
wait_stats(qr/connected=1/);
ok(poll_until(sub { cli('unix', 'LRANGE', 't9', 0, -1) eq "1\n2\n3\n4\n5\n" }),
   'the oldest five arrive, in order');
--- error_log eval
qr/\[warn\] .*twirt: redis queue full \(5 commands\), dropping events/



=== TEST 10: Redis never reachable: answers stay instant, one error line for the whole series
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_DEAD;
--- init
my $t0 = Time::HiRes::time();
Test::More::is(main::http('GET', '/redis?cmd=SET&a=t10&a=x'), "queued\n", 'queued');
Test::More::is(main::http('GET', '/redis-hget?key=t10'), "unavailable\n", 'declined');
Test::More::cmp_ok(Time::HiRes::time() - $t0, '<', 0.5, 'both at once');
main::wait_log(qr/attempt 6 in 1600 ms/);
--- request
GET /redis-stats
--- response_body_like
^queued=1 dropped=0 reconnects=0 errors=[5-9] connected=0 sent=0 unbuilt=0$
--- grep_error_log eval
qr/\[error\].*twirt: redis.*/
--- grep_error_log_out eval
qr/\A[^\n]*twirt: redis "127\.0\.0\.1:\d+" connect failed: Connection refused[^\n]*\n\z/
--- error_log eval
[qr/attempt 2: connect failed/, qr/attempt 5: connect failed/]



=== TEST 11: a read times out when Redis stops answering; the connection survives
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'HSET', 't11', 'f', 'v');
main::redis_signal('unix', 'STOP');
my $t0 = Time::HiRes::time();
my $body = main::http('GET', '/redis-hget?key=t11&timeout=300');
my $took = Time::HiRes::time() - $t0;
main::redis_signal('unix', 'CONT');
Test::More::is($body, "unavailable\n", 'the handler is called without an answer');
Test::More::cmp_ok($took, '>=', 0.28, 'after the timeout');
Test::More::cmp_ok($took, '<', 1, 'not much later');
--- request
GET /redis-hget?key=t11
--- response_body
f=v
--- no_error_log
[error]



=== TEST 12: replies larger than hiredis reads at once, commands larger than a socket buffer
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- config
    location = /redis {
        client_body_buffer_size 4m;
        client_max_body_size 4m;
        twirt_redis_test;
    }
    location = /redis-hget { twirt_redis_test hgetall; }
    location = /redis-stats { twirt_redis_test stats; }
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'DEL', 't12', 't12:big');
main::cli('unix', 'HSET', 't12', map { (sprintf("f%03d", $_), 'x' x 500) } 1 .. 200);
--- request
GET /redis-hget?key=t12
--- response_body_like eval
qr/\A(?:f\d{3}=x{500}\n){200}\z/
--- redis_after
is(sorted_lines(http('GET', '/redis-hget?key=t12')),
   join('', map { sprintf("f%03d=", $_) . ('x' x 500) . "\n" } 1 .. 200),
   'all 200 fields of 500 bytes: more than 100 KB in one reply');
my $big = join '', map { chr(0x41 + $_ % 26) } 1 .. 3_000_000;
is(http('POST', '/redis', "SET\nt12:big\n$big"), "queued\n", 'a 3 MB command');
ok(poll_until(sub { cli('unix', 'STRLEN', 't12:big') eq "3000000\n" }), 'arrived whole');
is(cli('unix', 'GET', 't12:big'), "$big\n", 'byte for byte');
--- no_error_log
[error]



=== TEST 13: refused commands, error replies counted and the connection kept
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'SET', 't13', 'text');
--- request eval
["GET /redis?cmd=SUBSCRIBE&a=t13", "GET /redis?cmd=select&a=2",
 "GET /redis?a=t13", "GET /redis?cmd=INCR&a=t13", "GET /redis-hget?key=t13",
 "GET /redis?cmd=SET&a=t13:after&a=ok"]
--- response_body eval
["refused\n", "refused\n", "refused\n", "queued\n", "error\n", "queued\n"]
--- redis_after
ok(poll_until(sub { cli('unix', 'GET', 't13:after') eq "ok\n" }), 'still working');
wait_log($_) for
    qr/\[error\] .*twirt: redis command "SUBSCRIBE" is not allowed on the shared connection/,
    qr/\[error\] .*twirt: redis command "select" is not allowed/,
    qr/\[error\] .*twirt: redis command without a name/,
    qr/\[error\] .*twirt: redis "unix:\S+" answered "INCR" with an error: ERR value is not an integer/;
like(http('GET', '/redis-stats'), qr/errors=2 connected=1/, 'two error replies counted');



=== TEST 14: a host name goes through nginx's resolver, then hiredis gets the address
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS ipv6=off;
    resolver_timeout 1s;
    twirt_redis redis.twirt.test:$TEST_NGINX_REDIS_TCP;
--- init
main::wait_stats(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t14&a=resolved
--- response_body
queued
--- redis_after
ok(poll_until(sub { cli('tcp', 'GET', 't14') eq "resolved\n" }), 'arrived');
--- error_log eval
qr/twirt: redis "redis\.twirt\.test:\d+" resolved to 127\.0\.0\.1/
--- no_error_log
[error]



=== TEST 15: stopping nginx with Redis connected leaves no socket behind (master and worker)
--- master: on
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
--- request
GET /redis?cmd=SET&a=t15&a=x
--- response_body
queued
--- redis_after
ok(poll_until(sub { cli('unix', 'GET', 't15') eq "x\n" }), 'arrived');
--- shutdown_error_log eval
[qr/twirt: redis "unix:\S+" closed/, qr/worker process \d+ exited with code 0/]
--- no_shutdown_error_log
open socket
[alert]



=== TEST 16: a canceled read never calls back: not on its timeout, not on its answer
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'HSET', 't16', 'f', 'v');
main::redis_signal('unix', 'STOP');
Test::More::is(main::http('GET', '/redis-hget?key=t16&cancel=1&timeout=100'),
               "canceled\n", 'canceled while Redis is stopped');
Test::More::is(main::http('GET', '/redis-hget?key=t16&timeout=300'), "unavailable\n",
               'a later read times out after the canceled one would have');
main::redis_signal('unix', 'CONT');
--- request
GET /redis-hget?key=t16&cancel=1
--- response_body
canceled
--- redis_after
ok(poll_until(sub { log_lines(qr/read answered after its caller left/) >= 3 }),
   'the three answers came and were dropped');
is(http('GET', '/redis-hget?key=t16'), "f=v\n", 'the connection serves reads');
--- no_error_log
[error]
[alert]



=== TEST 17: a Redis that takes the connection but never answers: the connect timer ends each attempt
--- http_config
    twirt_redis 127.0.0.1:$TEST_NGINX_REDIS_PAUSED;
    twirt_redis_timeout 200ms;
--- init
main::wait_log(qr/attempt 3: did not answer the handshake in 200 ms/);
Test::More::is(main::http('GET', '/redis?cmd=SET&a=t17&a=late'), "queued\n",
               'queued meanwhile');
main::redis_signal('paused', 'CONT');
main::wait_stats(qr/^queued=0 .*connected=1/m);
--- request
GET /redis-stats
--- response_body_like
^queued=0 dropped=0 reconnects=0 errors=[3-9] connected=1 sent=1 unbuilt=0$
--- redis_after
ok(poll_until(sub { cli('paused', 'GET', 't17') eq "late\n" }), 'the queued command arrived');
--- grep_error_log eval
qr/\[error\].*twirt: redis.*/
--- grep_error_log_out eval
qr/\A[^\n]*twirt: redis "127\.0\.0\.1:\d+" did not answer the handshake in 200 ms\n\z/
--- error_log eval
qr/\[info\] .*twirt: redis "127\.0\.0\.1:\d+" connected after \d+ attempts, flushed 1 queued commands/



=== TEST 18: a command that cannot be built whole is not sent: counted, logged once per command, nothing slides
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_UNIX;
--- config
    location = /redis-build { twirt_redis_test build; }
    location = /redis-stats { twirt_redis_test stats; }
--- init
main::wait_stats(qr/connected=1/);
main::cli('unix', 'DEL', 'twirt:test:t18a', 'twirt:test:t18b', 'twirt:test:t18c');
--- request eval
["GET /redis-build?id=t18a", "GET /redis-build?id=t18b&fail=2,4",
 "GET /redis-build?id=t18c&fail=5"]
--- response_body eval
["queued\n", "unbuilt\n", "unbuilt\n"]
--- redis_after
ok(poll_until(sub { cli('unix', 'HLEN', 'twirt:test:t18a') eq "4\n" }),
   'a whole command arrives');
like(cli('unix', 'HGETALL', 'twirt:test:t18a'),
     qr/\An1\n1\nn2\n2\nn3\n3\nat\n\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\n\z/,
     'every value in its field');
like(poll_until(sub { my $s = http('GET', '/redis-stats'); $s =~ /sent=[1-9]/ ? $s : undef })
     // '', qr/^queued=0 dropped=0 reconnects=0 errors=0 connected=1 sent=1 unbuilt=2$/m,
     'one sent, two unbuilt counted, no error reply');
is(cli('unix', 'EXISTS', 'twirt:test:t18b'), "0\n",
   'two numbers lost: nothing sent, no field shifted into a value slot');
is(cli('unix', 'EXISTS', 'twirt:test:t18c'), "0\n", 'the time lost: nothing sent');
wait_log($_) for
    qr/\[error\] .*twirt: redis command "HSET" not sent: its argument 4 could not be built/,
    qr/\[error\] .*twirt: redis command "HSET" not sent: its argument 10 could not be built/;
is(scalar(log_lines(qr/not sent: its argument/)), 2, 'one line per command');
--- no_error_log
with an error
