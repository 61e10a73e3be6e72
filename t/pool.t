# The warm pool (twirt_openai_pool): Realtime connections made before the
# call, taken by it, checked, refreshed, bounded, closed on reload.  Each
# block's location points at the simulator with its own "block=" in the
# URL, so that its connections are told apart in the simulator's record;
# "at" in the handshake records (both peers) is the wall clock, which
# orders an upgrade against a call.

use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';

my $certs = $ENV{TWIRT_TEST_CERTS};
if (!$certs) {
    $certs = tempdir(CLEANUP => 1);
    system("$FindBin::Bin/../util/certs", $certs) == 0 or die "util/certs failed";
}
$ENV{TEST_NGINX_CERTS} = $certs;

our $sim = sim_start();
# each closes (or breaks) the first connection it ever gets, once idle 300 ms
our $closer = sim_start('--fail', 'idle_close=300', '--fail-conns', '1');
our $eofer = sim_start('--fail', 'idle_eof=300', '--fail-conns', '1');
our $talker = sim_start('--fail', 'idle_event=300', '--fail-conns', '1');
our $tls = sim_start('--tls-cert', "$certs/localhost.crt", '--tls-key', "$certs/localhost.key");
our @sims = ($sim, $closer, $eofer, $talker, $tls);

$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_CLOSER_PORT} = $closer->{port};
$ENV{TEST_NGINX_EOFER_PORT} = $eofer->{port};
$ENV{TEST_NGINX_TALKER_PORT} = $talker->{port};
$ENV{TEST_NGINX_TLS_PORT} = $tls->{port};

our $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;

add_block_preprocessor(sub {
    my $block = shift;

    if (defined $block->reload) {
        master_on();
    } else {
        master_off();
    }

    workers(1);

    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_api_key sk-test;
    twirt_openai_ssl_trusted_certificate $TEST_NGINX_CERTS/ca.crt;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . "location = /status { twirt_status; }\n"
                                . $block->config);
});

place_calls_from_blocks(@sims);

no_shuffle();
run_tests();


# a sample of /status, e.g. 'twirt_upstream_pool_takes_total{result="hit"}'
sub metric {
    my ($name) = @_;
    my ($status, $body) = Twirt::Peers::http_get_text('/status');
    return undef unless $status == 200;
    return $body =~ /^\Q$name\E (\S+)$/m ? $1 + 0 : undef;
}

# waits until $cond is true, at most $secs (10); returns whether it was
sub wait_until {
    my ($cond, $secs) = @_;
    my $deadline = time + ($secs // 10);
    until ($cond->()) {
        return 0 if time > $deadline;
        sleep 0.05;
    }
    return 1;
}

sub idle_is {
    my ($n, $secs) = @_;
    return wait_until(sub { (metric('twirt_upstream_pool_idle') // -1) == $n }, $secs);
}

# a pool of 1 discarded its connection once, for that reason, and has
# another one ready
sub discarded_and_replaced {
    my ($reason) = @_;
    my $name = "twirt_upstream_pool_discarded_total{reason=\"$reason\"}";
    ok(wait_until(sub { (metric($name) // 0) == 1 }), "discarded once: $reason");
    ok(idle_is(1), 'and replaced');
}

# the simulator connections of a block ("block=$tag" in the URL): a list
# of { id, hs, records, at (the handshake's wall clock) }, by id
sub conns {
    my ($tag) = @_;
    my %c;
    for my $s (@sims) {
        for my $r (@{ sim_records($s) }) {
            my $key = "$s->{port}:$r->{conn}";
            push @{ $c{$key}{records} }, $r;
            $c{$key}{id} //= $r->{conn};
            if ($r->{dir} eq 'handshake') {
                $c{$key}{hs} = $r;
                $c{$key}{at} = $r->{at};
            }
        }
    }
    return sort { $a->{at} <=> $b->{at} }
           grep { $_->{hs} && $_->{hs}{path} =~ /[?&]block=\Q$tag\E(&|$)/ }
           values %c;
}

# the first record of a connection matching $pred, and its wall clock
sub first_of {
    my ($conn, $pred) = @_;
    for my $r (@{ $conn->{records} }) {
        return ($r, $conn->{at} + $r->{t} / 1000) if $pred->($r);
    }
    return;
}

sub got_client_event { my ($c) = @_; return first_of($c, sub { $_[0]{dir} eq 'in' }) }

# the calltag of a call's simulator records (its session.update's note)
sub calltag_of {
    my ($recs) = @_;
    my ($note) = grep { $_->{dir} eq 'note' && defined $_->{calltag} } @$recs;
    return $note ? $note->{calltag} : '';
}

sub call_conn {
    my ($tag, $calltag) = @_;
    my ($c) = grep { first_of($_, sub { ($_[0]{calltag} // '') eq $calltag }) } conns($tag);
    return $c;
}

# a call through the test nginx: (exit code, Twilio records)
sub place {
    my ($path, $calltag, $args) = @_;
    my ($rc, $tw) = twilio_call("--url ws://127.0.0.1:$port$path --param calltag=$calltag $args");
    return ($rc, $tw);
}

# the Twilio peer's wall clock of its handshake and of its "start"
sub twilio_times {
    my ($tw) = @_;
    my ($hs) = grep { $_->{dir} eq 'handshake' } @$tw;
    my ($start) = grep { $_->{dir} eq 'out' && $_->{msg}{event} eq 'start' } @$tw;
    return ($hs->{at}, $hs->{at} + ($start->{t} - $hs->{t}) / 1000);
}

# most connections of a block at once that were open and unused at the
# simulator: from the upgrade request to the first sign of use (a call's
# stream connecting: the Twilio peer's handshake, $tw its records) or of
# its end (the first bytes from the client, its EOF, a close)
sub max_unused {
    my ($tag, $tw) = @_;
    my (%call_at, %tag_at, @ev);
    for my $r (@{ $tw // [] }) {
        $call_at{$r->{call}} = $r->{at} if $r->{dir} eq 'handshake';
        $tag_at{ $r->{msg}{start}{customParameters}{calltag} } = $call_at{$r->{call}}
            if $r->{dir} eq 'out' && ($r->{msg}{event} // '') eq 'start';
    }
    for my $c (conns($tag)) {
        my @end = (9e9);
        for my $r (@{ $c->{records} }) {
            push @end, $c->{at} + $r->{t} / 1000
                if $r->{dir} =~ /^(in|data|eof|close)$/;
            push @end, $tag_at{ $r->{calltag} }
                if $r->{dir} eq 'note' && defined $r->{calltag}
                   && defined $tag_at{ $r->{calltag} };
        }
        my $end = (sort { $a <=> $b } @end)[0];
        # a call's own connection (a miss) was never idle
        next if $end < $c->{at};
        push @ev, [$c->{at}, 1], [$end, -1];
    }
    my ($n, $most) = (0, 0);
    for my $e (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @ev) {
        $n += $e->[1];
        $most = $n if $n > $most;
    }
    return $most;
}

__DATA__

=== TEST 1: two calls in sequence each take a connection upgraded before the stream connected; the pool refills after each
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=reuse;
        twirt_openai_pool 1;
    }
--- before_call
ok(main::idle_is(1), 'the pool filled at worker start');
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($c1) = main::conns('reuse');
my $mine = main::call_conn('reuse', main::calltag_of($sim));
is($mine->{id}, $c1->{id}, 'the first call used the first connection the pool made');
my ($twilio_at) = main::twilio_times($twilio);
my (undef, $created_at) = main::first_of($mine, sub { ($_[0]{event}{type} // '') eq 'session.created' });
ok($mine->{at} < $twilio_at, 'its upgrade was requested before the stream connected');
ok($created_at < $twilio_at, 'and answered (session.created) before it');
is($call->{close}{by}, 'caller', 'the call went to its end');
is($sim_summary->{errors_sent}, 0, 'no error from the simulator');

ok(main::idle_is(1), 'refilled after the take');
my ($rc, $tw) = main::place('/twilio/media', 'reuse2', '--scenario silence --duration-ms 1500');
is($rc, 0, 'the second call ran');
my $c2 = main::call_conn('reuse', 'reuse2');
isnt($c2->{id}, $mine->{id}, 'on another connection');
my ($twilio2_at) = main::twilio_times($tw);
ok($c2->{at} < $twilio2_at, 'also upgraded before its stream connected');
ok(main::idle_is(1), 'refilled again');
is(scalar(() = main::conns('reuse')), 3, 'three upgrades in all: one per call and the one waiting');
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 2, 'two hits');
is(main::metric('twirt_upstream_pool_takes_total{result="miss"}'), 0, 'no miss');
is(main::metric('twirt_upstream_connect_seconds_count'), 3, 'each upgrade timed once');
my @events = @{ twirt_events() };
ok((grep { ($_->{type} // '') eq 'state' && ($_->{status} // '') eq 'active' } @events) >= 2, 'both calls became active');
--- error_log eval
[qr/came from the warm pool, open for \d+ ms/, qr/ended: stop/]
--- no_error_log
[error]
[alert]



=== TEST 2: the effect: Twilio's start to session.update, with a pooled and a cold connection to a slow upgrade (300 ms)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=warm&sim_fail=upgrade_delay=300;
        twirt_openai_pool 1;
    }
    location = /twilio/cold {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=cold&sim_fail=upgrade_delay=300;
    }
--- before_call
ok(main::idle_is(1), 'the pool filled');
--- twilio
--scenario silence --duration-ms 1500
--- check
my $warm = main::call_conn('warm', main::calltag_of($sim));
my ($w_hs, $w_start) = main::twilio_times($twilio);
my (undef, $w_update) = main::first_of($warm, sub { ($_[0]{event}{type} // '') eq 'session.update' });
ok($warm->{at} < $w_hs, 'warm: upgraded before the stream connected');

my ($rc, $tw) = main::place('/twilio/cold', 'cold1', '--scenario silence --duration-ms 1500');
is($rc, 0, 'the cold call ran');
my $cold = main::call_conn('cold', 'cold1');
my ($c_hs, $c_start) = main::twilio_times($tw);
my (undef, $c_update) = main::first_of($cold, sub { ($_[0]{event}{type} // '') eq 'session.update' });
ok($cold->{at} > $c_hs, 'cold: upgraded after the stream connected');
diag(sprintf("start -> session.update: warm pool %.1f ms, cold %.1f ms (upgrade delayed 300 ms)",
             ($w_update - $w_start) * 1000, ($c_update - $c_start) * 1000));
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 1, 'one hit; a location without a pool counts nothing');
--- no_error_log
[error]



=== TEST 3: a warm connection the server closed (close frame) is never given to a call: the call gets the next one
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_CLOSER_PORT/v1/realtime?model=gpt-realtime&block=closed;
        twirt_openai_pool 1;
    }
--- before_call
main::discarded_and_replaced('closed');
--- twilio
--scenario silence --duration-ms 1500
--- check
my ($first, @rest) = main::conns('closed');
my ($close) = main::first_of($first, sub { $_[0]{dir} eq 'close' });
is($close->{by}, 'server', 'the server closed the first connection');
is($close->{code}, 1001, '  with 1001');
ok(!main::got_client_event($first), 'it was never used');
my ($used) = grep { main::got_client_event($_) } main::conns('closed');
isnt($used->{id}, $first->{id}, 'the call used another');
is($call->{close}{by}, 'caller', 'and went to its end');
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 1, 'a hit');
--- error_log eval
[qr/warm Realtime connection closed unused after \d+ ms: closed by the server/, qr/ended: stop/]
--- no_error_log
[error]



=== TEST 4: a warm connection dropped without a close frame (EOF) is discarded too
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_EOFER_PORT/v1/realtime?model=gpt-realtime&block=eof;
        twirt_openai_pool 1;
    }
--- before_call
main::discarded_and_replaced('closed');
--- twilio
--scenario silence --duration-ms 1000
--- check
my ($first) = main::conns('eof');
ok(!main::got_client_event($first), 'the dropped connection was never used');
my ($used) = grep { main::got_client_event($_) } main::conns('eof');
isnt($used->{id}, $first->{id}, 'the call used another');
is($call->{close}{by}, 'caller', 'the call went to its end');
--- error_log eval
[qr/closed unused after \d+ ms: closed by the server/, qr/ended: stop/]
--- no_error_log
[alert]



=== TEST 5: a message other than session.created while idle: discarded (a session in an unknown state is never given to a call)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_TALKER_PORT/v1/realtime?model=gpt-realtime&block=talk;
        twirt_openai_pool 1;
    }
--- before_call
main::discarded_and_replaced('message');
--- twilio
--scenario silence --duration-ms 1000
--- check
my ($first) = main::conns('talk');
my ($close) = main::first_of($first, sub { $_[0]{dir} eq 'close' });
is($close->{by}, 'client', 'twirt closed it');
is($close->{code}, 1001, '  going away');
ok(!(grep { $_->{dir} eq 'in' } @{ $first->{records} }), 'nothing was sent on it');
is($sim_summary->{errors_sent}, 0, 'the call\'s session had no error');
--- error_log eval
[qr/a warm Realtime connection got "error" while idle/, qr/closed unused after \d+ ms: a message while idle/, qr/ended: stop/]
--- no_error_log
[error]



=== TEST 6: refresh: idle past max_age, a warm connection is replaced; a call never gets one that old
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=age;
        twirt_openai_pool 2 max_age=300ms;
    }
--- before_call
ok(main::wait_until(sub { (main::metric('twirt_upstream_pool_discarded_total{reason="age"}') // 0) >= 4 }), 'replaced as they aged');
--- twilio
--scenario silence --duration-ms 1000
--- check
my $log = main::error_log_text();
my @aged = $log =~ /closed unused after (\d+) ms: idle for max_age/g;
ok(@aged >= 4, 'aged ones closed');
is(scalar(grep { $_ < 300 } @aged), 0, 'none before max_age');
my @taken = $log =~ /came from the warm pool, open for (\d+) ms/g;
is(scalar(@taken), 1, 'the call took a warm one');
ok($taken[0] < 300, "younger than max_age ($taken[0] ms)");
my @unused = grep { !main::got_client_event($_) } main::conns('age');
my @closed = grep { my ($c) = main::first_of($_, sub { $_[0]{dir} eq 'close' }); $c && $c->{by} eq 'client' && $c->{code} == 1001 } @unused;
ok(@closed >= 4, 'the simulator saw them closed by twirt, going away');
my $most = main::max_unused('age', $twilio);
ok($most <= 2, "never more than 2 unused at once at the simulator ($most)");
--- no_error_log
[error]
[alert]



=== TEST 7: the bound holds with calls taking and the pool churning: 5 calls at once on a pool of 2
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=bound;
        twirt_openai_pool 2 max_age=1500ms;
    }
--- before_call
ok(main::idle_is(2), 'the pool filled');
--- twilio
--scenario silence --duration-ms 1500 --calls 5
--- check
my $hits = main::metric('twirt_upstream_pool_takes_total{result="hit"}');
my $misses = main::metric('twirt_upstream_pool_takes_total{result="miss"}');
is($hits + $misses, 5, "every call took or missed ($hits hits, $misses misses)");
ok($hits >= 2, 'the two waiting were taken');
is(scalar(() = main::error_log_text() =~ /ended: stop/g), 5, 'all five calls ended normally');
ok(main::idle_is(2), 'refilled to its size');
my $most = main::max_unused('bound', $twilio);
ok($most <= 2, "never more than 2 unused connections at once at the simulator ($most)");
--- no_error_log
[error]
[alert]



=== TEST 8: a call with the pool empty connects as without a pool (a miss)
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=miss&sim_fail=upgrade_delay=1500;
        twirt_openai_pool 1;
    }
--- twilio
--scenario silence --duration-ms 3000
--- check
is(main::metric('twirt_upstream_pool_takes_total{result="miss"}'), 1, 'a miss');
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 0, 'no hit');
my ($hs) = main::twilio_times($twilio);
my $mine = main::call_conn('miss', main::calltag_of($sim));
ok($mine->{at} > $hs, 'the call made its own connection');
is($call->{close}{by}, 'caller', 'and went to its end');
ok(main::idle_is(1), 'the pool filled meanwhile');
is(scalar(() = main::conns('miss')), 2, 'two upgrades: the pool\'s and the call\'s (no refill beyond the size)');
--- error_log eval
[qr/no warm Realtime connection ready, connecting/, qr/ended: stop/]
--- no_error_log
[error]



=== TEST 9: wss:// with verification: the pool's connections are TLS ones, verified
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url wss://127.0.0.1:$TEST_NGINX_TLS_PORT/v1/realtime?model=gpt-realtime&block=tls;
        twirt_openai_pool 1;
    }
--- before_call
ok(main::idle_is(1), 'the pool filled');
--- twilio
--scenario silence --duration-ms 1000
--- check
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 1, 'a hit');
is($call->{close}{by}, 'caller', 'the call went to its end');
--- no_error_log
[error]



=== TEST 10: a reload with warm connections: the old worker closes them and exits at once, the new one fills its pool
--- reload: 1
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&block=reload;
        twirt_openai_pool 2 max_age=59m;
    }
--- before_call
ok(main::wait_until(sub { scalar(() = main::conns('reload')) == 2 && (main::metric('twirt_upstream_pool_idle') // 0) == 2 }), 'the pool filled');
main::nginx_reload();
ok(main::wait_until(sub { main::error_log_text() =~ /worker process \d+ exited with code 0/ }), 'the old worker exited');
ok(main::wait_until(sub { scalar(() = main::conns('reload')) == 4 && (main::metric('twirt_upstream_pool_idle') // 0) == 2 }), 'the new worker filled its pool');
--- twilio
--scenario silence --duration-ms 1000
--- check
my ($a, $b) = main::conns('reload');
for my $c ($a, $b) {
    my ($close) = main::first_of($c, sub { $_[0]{dir} eq 'close' });
    is($close->{by}, 'client', "the old worker closed connection $c->{id}");
    is($close->{code}, 1001, '  going away');
    ok(!main::got_client_event($c), '  unused');
}
is(main::metric('twirt_upstream_pool_takes_total{result="hit"}'), 1, 'the new worker\'s call took a warm one');
--- error_log eval
[qr/gracefully shutting down/, qr/closed unused after \d+ ms: the worker quits/]
--- no_error_log
[alert]
[emerg]
