# Session rotation (README, "Calls longer than a session"): a call
# outlives its Realtime sessions, whose limit the simulator sets to a few
# seconds (--session-limit, as the real API's 60 minutes): twirt opens the
# next session, configures it, and switches over between turns, seeding
# it with the conversation so far; no caller frame is lost or sent twice.
# A next session that cannot be had leaves the call on the one it has.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use Twirt::Conf qw(nginx_t http_conf);
use Test::Nginx::Socket 'no_plan';
use File::Temp qw(tempdir);
use File::Copy qw(copy);
use JSON::PP;
use Time::HiRes ();

# every session ends 8 s after it was created
our $sim = sim_start('--session-limit', '8000');
# every session ends 4 s after it was created: TEST 3, a caller talking
# through that point; TEST 4, a conversation over the 32 KB carried (its
# scenario made here: two answers of 21000 bytes each)
my $scenarios = tempdir(CLEANUP => 1);
copy("$FindBin::Bin/peers/scenarios/rotate-long.json", $scenarios) or die $!;
open my $fh, '>:raw', "$scenarios/rotate-big.json" or die $!;
# the source is not "use utf8": its strings are UTF-8 bytes already
print $fh JSON::PP->new->encode({
    name => 'rotate-big',
    description => 'two answers of 21000 bytes before a rotation at 2 s',
    greeting => { transcript => 'お電話ありがとうございます。さくら歯科です。', audio_ms => 400 },
    turns => [
        { caller => { at_ms => 600, speech_ms => 400, text => '長い説明をお願いします' },
          agent => { transcript => 'あ' x 7000, audio_ms => 300 } },
        { caller => { at_ms => 1500, speech_ms => 400, text => 'もう一度お願いします' },
          agent => { transcript => 'い' x 7000, audio_ms => 300 } },
    ],
    end => { after_ms => 3200 },
});
close $fh;
our $short = sim_start('--session-limit', '4000', '--scenario-dir', $scenarios);
# every session ends 4 s after it was created; connections after the
# first are refused (429): no next session can be had
our $refusing = sim_start('--session-limit', '4000', '--fail-after', '1',
                          '--fail', 'http_429');
# every session ends 3 s after it was created; the next ones reject the
# session.update
our $rejecting = sim_start('--session-limit', '3000', '--fail-after', '1',
                           '--fail', 'reject_session_update');
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REJECTING_PORT} = $rejecting->{port};
$ENV{TEST_NGINX_REFUSING_PORT} = $refusing->{port};
$ENV{TEST_NGINX_SHORT_PORT} = $short->{port};
$ENV{TEST_NGINX_SCENARIOS} = $scenarios;
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

# nginx -t: the values twirt_session_rotate refuses
for my $t (
    [ 'twirt_session_rotate soon;',
      qr/invalid value "soon": a time above 0 and below the Realtime API's session limit of 60m, such as "50m", or "off"/ ],
    [ 'twirt_session_rotate 0;', qr/invalid value "0": a time above 0/ ],
    [ 'twirt_session_rotate 60m;', qr/invalid value "60m": a time above 0 and below/ ],
    [ 'twirt_session_rotate 2h;', qr/invalid value "2h": a time above 0 and below/ ],
    [ 'twirt_session_rotate 50m; twirt_session_rotate off;',
      qr/"twirt_session_rotate" directive is duplicate/ ],
    [ 'twirt_session_rotate;',
      qr/invalid number of arguments in "twirt_session_rotate" directive/ ])
{
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $t->[0] }"));
    isnt($rc, 0, "nginx -t refuses: $t->[0]");
    like($out, $t->[1], "and says why: $t->[0]");
}

for my $ok ('twirt_session_rotate 2s;', 'twirt_session_rotate off;',
            'twirt_session_rotate 59m; location /m { twirt_session_rotate 1500ms; }')
{
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $ok }"));
    is($rc, 0, "nginx -t accepts: $ok") or diag($out);
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_greeting "お電話ありがとうございます。さくら歯科です。";
    twirt_close_timeout 1s;
    twirt_silence_timeout off;
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
        . "location = /status { twirt_status; }\n"
        . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim, $refusing, $short, $rejecting);

no_shuffle();
run_tests();

# the connections of a simulator whose session has the calltag: conn =>
# its records, in order
# (each closed: its summary written), waited for a bounded time
sub conns {
    my ($s, $tag) = @_;
    my $deadline = time + 10;
    while (1) {
        my (%conns, %mine);
        for my $r (@{ sim_records($s) }) {
            push @{ $conns{$r->{conn}} }, $r;
            $mine{$r->{conn}} = 1 if ($r->{calltag} // '') eq $tag;
        }
        my @c = map { $conns{$_} } sort { $a <=> $b } keys %mine;
        return \@c if time > $deadline
                      || !grep { my $c = $_; !grep { $_->{dir} eq 'summary' } @$c } @c;
        select(undef, undef, undef, 0.05);
    }
}

# what twirt sent on a connection, by event type in order
sub sent {
    my ($records) = @_;
    return [ map { $_->{event} }
             grep { $_->{dir} eq 'in' && ref $_->{event} } @$records ];
}

sub session_id {
    my ($records) = @_;
    my ($c) = grep { $_->{dir} eq 'out'
                     && $_->{event}{type} eq 'session.created' } @$records;
    return $c ? $c->{event}{session}{id} : undef;
}

sub seeded {
    my ($records) = @_;
    return [ map { "$_->{item}{role}: $_->{item}{content}[0]{text}" }
             grep { $_->{type} eq 'conversation.item.create' }
             @{ sent($records) } ];
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

# waits (bounded) until the warm pool holds one connection upgraded at
# least $ms ago, its session's age when a call takes it
sub pool_aged {
    my ($s, $ms) = @_;
    my $deadline = Time::HiRes::time() + 10;
    while (Time::HiRes::time() < $deadline) {
        my (undef, $text) = http_get_text('/status');
        my ($last) = sort { $b->{at} <=> $a->{at} }
                     grep { $_->{dir} eq 'handshake' } @{ sim_records($s) };
        return 1 if ($text // '') =~ /^twirt_upstream_pool_idle 1$/m && $last
                    && Time::HiRes::time() - $last->{at} >= $ms / 1000;
        select(undef, undef, undef, 0.05);
    }
    return 0;
}

sub record_of {
    my ($sid) = @_;
    redis_wait(5, sub { (redis_cli('--raw', 'HGET', "twirt:call:$sid", 'ended_at'))[0] });
    return { redis_cli('--raw', 'HGETALL', "twirt:call:$sid") };
}

__DATA__

=== TEST 1: a call across two rotations: three sessions, each later one configured and seeded with the turns so far in order, every caller frame appended to exactly one of them, the call ends normally
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
        twirt_session_rotate 4s;
    }
--- twilio
--scenario rotate --param scenario=rotate --call-sid CA00000000000000000000000000rotate1
--- check
my $tag = $sim->[0]{calltag} // (map { $_->{calltag} // () } @$sim)[0];
my $conns = main::conns($main::sim, $tag);
is(scalar @$conns, 3, 'the simulator saw three sessions of the call');
for my $i (0 .. $#$conns) {
    my $sent = main::sent($conns->[$i]);
    is($sent->[0]{type}, 'session.update', "session " . ($i + 1) . ": configured first");
}
is_deeply(main::sent($conns->[1])->[0]{session}, main::sent($conns->[0])->[0]{session},
          'the second session got the same session.update as the first');
is_deeply(main::sent($conns->[2])->[0]{session}, main::sent($conns->[0])->[0]{session},
          'and the third');
is_deeply(main::seeded($conns->[0]), [], 'the first session was seeded with nothing');
my @turns = ('assistant: お電話ありがとうございます。さくら歯科です。',
             'user: 予約を変更したいのですが',
             'assistant: かしこまりました。ご予約番号をお願いします。',
             'user: 一二三四五です',
             'assistant: ありがとうございます。ご希望の日時をどうぞ。');
is_deeply(main::seeded($conns->[1]), [ @turns[0 .. 2] ],
          'the second: the greeting and the first turn, in order, Unicode intact');
is_deeply(main::seeded($conns->[2]), \@turns,
          'the third: the conversation up to the second turn');
for my $i (1, 2) {
    my @types = map { $_->{type} } @{ main::sent($conns->[$i]) };
    my ($first_append) = grep { $types[$_] eq 'input_audio_buffer.append' } 0 .. $#types;
    my ($last_item) = reverse grep { $types[$_] eq 'conversation.item.create' } 0 .. $#types;
    ok(defined $first_append && $last_item < $first_append,
       'session ' . ($i + 1) . ': the conversation came before its first caller frame');
    ok(!(grep { $_ eq 'response.create' } @types[0 .. $first_append - 1]),
       'and no response was asked for with it');
}
my @appends = map { scalar grep { $_->{type} eq 'input_audio_buffer.append' } @{ main::sent($_) } } @$conns;
ok($appends[$_] > 0, 'session ' . ($_ + 1) . " had caller frames ($appends[$_])") for 0 .. 2;
my $total = 0;
$total += $_ for @appends;
is($total, $call->{media_sent}, "every frame the caller sent was appended to exactly one session ($call->{media_sent})");
my @bytes = map { my ($s) = grep { $_->{dir} eq 'summary' } @$_; $s->{appended_bytes} } @$conns;
is($bytes[0] + $bytes[1] + $bytes[2], $call->{media_sent} * 160, 'all of their audio');
for my $i (0, 1) {
    my ($close) = grep { $_->{dir} eq 'close' } @{ $conns->[$i] };
    is($close->{by}, 'client', 'session ' . ($i + 1) . ': closed by twirt');
    is($close->{code}, 1000, 'normally');
    ok(!(grep { ($_->{note} // '') eq 'session limit' } @{ $conns->[$i] }), 'before its limit');
}
is(scalar(grep { ($_->{note} // '') eq 'seeded turn' } @{ $conns->[2] }), 2,
   'the third session went on from the third turn');
my @answers = grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is_deeply([ map { $_->{text} } @answers ],
          [ map { s/^assistant: //r } grep { /^assistant/ } @turns, 'assistant: 承知しました。' ],
          'every turn was answered, once, in order');
my $rec = main::record_of($call->{call_sid});
is($rec->{status}, 'ended', 'the record: ended');
is($rec->{end_reason}, 'stop', 'by the caller hanging up, not session_expired');
is($rec->{openai_session_id}, main::session_id($conns->[2]), 'its session is the last one');
my @rotated = grep { $_->{type} eq 'rotated' } @{ redis_stream_entries("twirt:call:$call->{call_sid}:events") };
is(scalar @rotated, 2, "two rotated events in the call's stream");
is($rotated[0]{from_session_id}, main::session_id($conns->[0]), 'the first from the first session');
is($rotated[0]{session_id}, main::session_id($conns->[1]), 'to the second');
is($rotated[1]{from_session_id}, main::session_id($conns->[1]), 'the second from the second');
is($rotated[1]{session_id}, main::session_id($conns->[2]), 'to the third');
is($rotated[0]{items}, 3, 'three lines seeded');
is($rotated[1]{items}, 5, 'then five');
is($rotated[$_]{switched}, 'between_turns', 'between turns') for 0, 1;
is($rotated[$_]{rotation}, $_ + 1, 'numbered') for 0, 1;
ok($rotated[$_]{switch_ms} >= 0, "switch_ms given ($rotated[$_]{switch_ms})") for 0, 1;
is(main::metric(qr/^twirt_session_rotations_total\{result="ok"\} (\d+)$/m), 2, 'two rotations counted');
is(main::metric(qr/^twirt_session_rotations_total\{result="failed"\} (\d+)$/m), 0, 'none failed');
--- error_log eval
[qr/the Realtime session is \d+ ms old: opening the next one/,
 qr/switched to the next Realtime session "sess_\w+" \d+ ms after the rotation began, 5 lines of the conversation carried, 0 earlier ones not/]
--- no_error_log
[error]



=== TEST 2: the next session cannot be had (429, twice): the call goes on in its session, answers the caller, and ends when that session expires
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_REFUSING_PORT/v1/realtime?model=gpt-realtime;
        twirt_session_rotate 1s;
    }
--- twilio
--scenario silence-answer --param scenario=silence-answer --duration-ms 8000 --call-sid CA00000000000000000000000000rotate2
--- check
my $all = sim_records($main::refusing);
my @handshakes = grep { $_->{dir} eq 'handshake' } @$all;
is(scalar @handshakes, 3, 'one session, then two tries for the next');
my @sessions = grep { $_->{dir} eq 'out' && $_->{event}{type} eq 'session.created' } @$all;
is(scalar @sessions, 1, 'only the first became a session');
my @events = @{ twirt_events($call->{call_sid}) };
my @failed = grep { $_->{type} eq 'rotate_failed' } @events;
is_deeply([ map { $_->{try} } @failed ], [1, 2], 'two rotate_failed events');
like($failed[0]{reason}, qr/429/, 'saying why');
ok((grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' && $_->{text} eq 'かしこまりました。' } @events),
   'the caller was answered after the failures');
ok(!(grep { $_->{type} eq 'rotated' } @events), 'no switch');
my $rec = main::record_of($call->{call_sid});
is($rec->{end_reason}, 'session_expired', 'the call ended as it would have: its session expired');
is(main::metric(qr/^twirt_session_rotations_total\{result="failed"\} (\d+)$/m), 2, 'two failures counted');
is(main::metric(qr/^twirt_session_rotations_total\{result="ok"\} (\d+)$/m), 0, 'no rotation');
--- error_log eval
[qr/the next Realtime session failed \(upstream answered 429\): trying again in 1000 ms/,
 qr/the next Realtime session failed \(upstream answered 429\) 2 times: the call keeps its session until it expires/]



=== TEST 3: no moment between turns before the old session expires (the caller talks through it): the next one, ready, takes over at once, and the call goes on
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SHORT_PORT/v1/realtime?model=gpt-realtime;
        twirt_session_rotate 3500ms;
    }
--- twilio
--scenario rotate-long --param scenario=rotate-long --call-sid CA00000000000000000000000000rotate3
--- check
my $tag = (map { $_->{calltag} // () } @$sim)[0];
my $conns = main::conns($main::short, $tag);
is(scalar @$conns, 2, 'two sessions');
ok((grep { ($_->{note} // '') eq 'session limit' } @{ $conns->[0] }), 'the first one reached its limit');
is_deeply(main::seeded($conns->[1]), ['assistant: お電話ありがとうございます。さくら歯科です。'],
          'the second was seeded with what was said before the cut turn');
my @appends = map { scalar grep { $_->{type} eq 'input_audio_buffer.append' } @{ main::sent($_) } } @$conns;
ok($appends[1] > 0, "the caller's frames went on to the second ($appends[1])");
my @rotated = grep { $_->{type} eq 'rotated' } @{ redis_stream_entries("twirt:call:$call->{call_sid}:events") };
is(scalar @rotated, 1, 'one rotated event');
is($rotated[0]{switched}, 'expired', 'switched as the old session expired');
is($rotated[0]{session_id}, main::session_id($conns->[1]), 'to the second session');
my @answers = grep { $_->{type} eq 'transcript' && $_->{role} eq 'agent' } @{ twirt_events($call->{call_sid}) };
is($answers[-1]{text}, 'はい、来週でしたら火曜日が空いております。', 'the rest of the turn was answered by the second session');
my $rec = main::record_of($call->{call_sid});
is($rec->{end_reason}, 'stop', 'the call ended by the caller, not session_expired');
is(main::metric(qr/^twirt_session_rotations_total\{result="forced"\} (\d+)$/m), 1, 'counted as forced');
--- error_log eval
[qr/the Realtime session expired before the call was between turns: switching at once/,
 qr/switched to the next Realtime session "sess_\w+" \d+ ms after the rotation began, at once: the session expired/]



=== TEST 4: over 32 KB of conversation: the oldest lines are not carried, the last ones are, whole; the event and the log say how many
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SHORT_PORT/v1/realtime?model=gpt-realtime;
        twirt_session_rotate 2s;
    }
--- twilio
--scenario $TEST_NGINX_SCENARIOS/rotate-big.json --param scenario=rotate-big --call-sid CA00000000000000000000000000rotate4
--- check
my $tag = (map { $_->{calltag} // () } @$sim)[0];
my $conns = main::conns($main::short, $tag);
is(scalar @$conns, 2, 'two sessions');
is_deeply(main::seeded($conns->[1]), ['user: もう一度お願いします', 'assistant: ' . ('い' x 7000)],
          'the second was seeded with the last turn only: the greeting and the first turn (21000 bytes) would not fit in 32 KB with it');
my @rotated = grep { $_->{type} eq 'rotated' } @{ redis_stream_entries("twirt:call:$call->{call_sid}:events") };
is($rotated[0]{items}, 2, 'two lines carried');
is($rotated[0]{dropped}, 3, 'three dropped');
my $rec = main::record_of($call->{call_sid});
is($rec->{end_reason}, 'stop', 'the call ended normally');
--- error_log eval
qr/switched to the next Realtime session "sess_\w+" \d+ ms after the rotation began, 2 lines of the conversation carried, 3 earlier ones not \(over 32768 bytes\)/



=== TEST 5: the next session rejects the session.update (twice): it is closed, the call goes on in its session and ends when that one expires
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_REJECTING_PORT/v1/realtime?model=gpt-realtime;
        twirt_session_rotate 1s;
    }
--- twilio
--scenario silence --param scenario=silence --duration-ms 8000 --call-sid CA00000000000000000000000000rotate5
--- check
my $tag = (map { $_->{calltag} // () } @$sim)[0];
my $conns = main::conns($main::rejecting, $tag);
is(scalar @$conns, 3, 'the session, then two tries for the next');
for my $i (1, 2) {
    my ($err) = grep { $_->{dir} eq 'out' && $_->{event}{type} eq 'error' } @{ $conns->[$i] };
    like($err->{event}{error}{message}, qr/session.update rejected/, 'try ' . $i . ': rejected');
    my ($close) = grep { $_->{dir} eq 'close' } @{ $conns->[$i] };
    is($close->{by}, 'client', 'and closed by twirt');
    is($close->{code}, 1000, 'normally');
    ok(!(grep { ($_->{event}{type} // '') eq 'input_audio_buffer.append' } @{ main::sent($conns->[$i]) }),
       'no caller frame went to it');
}
my @events = @{ twirt_events($call->{call_sid}) };
is_deeply([ map { "$_->{try}: $_->{reason}" } grep { $_->{type} eq 'rotate_failed' } @events ],
          ['1: session update rejected', '2: session update rejected'], 'two rotate_failed events');
ok(!(grep { $_->{type} eq 'rotated' } @events), 'no switch');
my $rec = main::record_of($call->{call_sid});
is($rec->{end_reason}, 'session_expired', 'the call ended when its session expired');
--- error_log eval
[qr/the next Realtime session failed \(session update rejected\): trying again in 1000 ms/,
 qr/the next Realtime session failed \(session update rejected\) 2 times/]



=== TEST 6: with a warm pool: the next session comes from it, and a session's time in the pool counts: a call of 2.5 s rotates at 3 s of session
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SHORT_PORT/v1/realtime?model=gpt-realtime;
        twirt_openai_pool 1;
        twirt_session_rotate 3s;
    }
--- before_call
ok(main::pool_aged($main::short, 1000), 'a warm connection 1 s old');
--- twilio
--scenario silence --param scenario=silence --duration-ms 2500 --call-sid CA00000000000000000000000000rotate6
--- check
my $tag = (map { $_->{calltag} // () } @$sim)[0];
my $conns = main::conns($main::short, $tag);
my @rotated = grep { $_->{type} eq 'rotated' } @{ redis_stream_entries("twirt:call:$call->{call_sid}:events") };
# the next session's own 3 s end after the call: one rotation; the 2 s
# between the call's start and the first rotation leave the pool time to
# refill even when the Twilio peer starts late on a busy machine
is(scalar @rotated, 1, 'rotated once, within a call shorter than twirt_session_rotate: the first session had been 1 s in the pool');
ok($rotated[0]{ms} < 2500, "at $rotated[0]{ms} ms into the call");
is(scalar @$conns, 2, 'two sessions');
my @pooled = error_log_text() =~ /the Realtime connection came from the warm pool/g;
is(scalar @pooled, 2, 'both came from the warm pool');
my @appends = map { scalar grep { $_->{type} eq 'input_audio_buffer.append' } @{ main::sent($_) } } @$conns;
my $total = 0;
$total += $_ for @appends;
is($total, $call->{media_sent}, "every caller frame appended to exactly one session ($call->{media_sent})");
--- error_log eval
qr/the Realtime session is (?:[3-9]\d{3}|\d{5,}) ms old: opening the next one/
