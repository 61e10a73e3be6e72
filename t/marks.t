# Paced marks (twirt_mark_interval; README, "How a call goes", 4 and 5):
# with 20 ms deltas a mark goes once 100 ms of audio went without one, not
# after each delta, and the barge-in's truncate is still what the caller
# heard: the last echoed mark plus the playback clock, within 10 ms of
# what the Twilio peer (its own record, the ground truth) had played at
# the clear, never more than it was sent, at several moments between two
# marks.  The last audio of an answer is always marked: the silence timer
# and a goodbye wait for its echo.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use File::Temp qw(tempdir);
use JSON::PP;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

# the caller's side of the "marks" scenario, its barge-in moved by 20 ms
# steps (a caller frame): the agent's side, read by the simulator from
# scenarios/marks.json by name, is the same
my $dir = tempdir(CLEANUP => 1);
{
    open my $fh, '<', "$FindBin::Bin/peers/scenarios/marks.json" or die $!;
    local $/;
    my $sc = decode_json(<$fh>);
    for my $i (0 .. 4) {
        $sc->{turns}[0]{caller}{at_ms} = 1500 + 20 * $i;
        open my $out, '>', "$dir/marks$i.json" or die $!;
        print $out encode_json($sc);
        close $out;
    }
}
$ENV{TEST_NGINX_MARKS_DIR} = $dir;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    # the barge-in blocks: the stream and its greeting, nothing else
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
        . ($block->config
           // qq{location = /twilio/media { twirt_stream; twirt_greeting "はい"; }\n}));
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

our @phases;

# a barge-in into the greeting (the call's first audio): the truncate
# against what the Twilio peer had played of it at the clear
sub check_barge_in {
    my ($call, $twilio, $sim) = @_;
    my @truncates = map { $_->{event} } grep { ($_->{dir} // '') eq 'in'
        && ($_->{event}{type} // '') eq 'conversation.item.truncate' } @$sim;
    is(scalar @truncates, 1, 'one truncate') or return;
    my $sent = 0;
    for my $r (@$twilio) {
        last if $r->{dir} eq 'in' && $r->{msg}{event} eq 'clear';
        $sent += $r->{msg}{media}{payload}{bytes}
            if $r->{dir} eq 'in' && $r->{msg}{event} eq 'media';
    }
    my $played = $sent / 8 - $call->{agent_audio_ms_dropped_by_clear};
    my $end = $truncates[0]{audio_end_ms};
    # marks at 20 ms (the first delta), then every 100 ms
    my $phase = ($played - 20) % 100;
    push @phases, $phase;
    ok(abs($end - $played) <= 10,
       "audio_end_ms $end within 10 ms of the $played ms played at the clear ($phase ms after a mark)");
    ok($end <= $sent / 8, "never past the audio sent ($sent bytes)");
    ok($end > 0 && $end < 3000, 'inside the greeting');
}

__DATA__

=== TEST 1: barge-in 1 of 5 between two marks
--- twilio
--scenario $TEST_NGINX_MARKS_DIR/marks0.json
--- check
main::check_barge_in($call, $twilio, $sim);
ok($call->{marks_received} * 3 < $call->{media_received},
   "marks paced: $call->{marks_received} marks for $call->{media_received} media");



=== TEST 2: barge-in 2 of 5
--- twilio
--scenario $TEST_NGINX_MARKS_DIR/marks1.json
--- check
main::check_barge_in($call, $twilio, $sim);



=== TEST 3: barge-in 3 of 5
--- twilio
--scenario $TEST_NGINX_MARKS_DIR/marks2.json
--- check
main::check_barge_in($call, $twilio, $sim);



=== TEST 4: barge-in 4 of 5
--- twilio
--scenario $TEST_NGINX_MARKS_DIR/marks3.json
--- check
main::check_barge_in($call, $twilio, $sim);



=== TEST 5: barge-in 5 of 5: the five fell at different moments between two marks
--- twilio
--scenario $TEST_NGINX_MARKS_DIR/marks4.json
--- check
main::check_barge_in($call, $twilio, $sim);
my %bucket = map { int($_ / 20) => 1 } @main::phases;
diag("barge-ins at " . join(', ', map { "$_ ms" } @main::phases) . " after a mark");
ok(keys(%bucket) >= 3, 'in at least 3 of the 5 fifths of a mark interval');



=== TEST 6: a mark per 100 ms of audio, the last audio always marked: the silence counts from its echo, the goodbye is heard to its end
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい";
        twirt_silence_timeout 1s;
        twirt_silence_tries 0;
        twirt_silence_goodbye "失礼します";
    }
--- twilio
--scenario marks-silence --playback-delay-ms 300 --duration-ms 15000
--- check
my $utt = utterances($twilio);
is(scalar @$utt, 2, 'the greeting, the goodbye') or diag(explain($utt));
ok($utt->[1]{first_sent} - $utt->[0]{played} >= 1000,
   "the goodbye came a timeout after the greeting's last echo ($utt->[1]{first_sent} ms, echoed $utt->[0]{played} ms)");
is($call->{close}{by}, 'gateway', 'the gateway ended the call');
is($call->{marks_pending_at_end}, 0, 'once the goodbye had played');
is($call->{agent_audio_ms_played}, $call->{agent_audio_ms_received}, 'all of it');
my $s = $call->{agent_audio_ms_received} / 1000;
my $rate = $call->{marks_received} / $s;
diag(sprintf "paced: %d marks for %d media, %.1f s of agent audio: %.1f marks/s",
     $call->{marks_received}, $call->{media_received}, $s, $rate);
ok($rate <= 10 + 2 * 2 / $s, 'about 10 marks a second of agent audio, 2 more per answer');
my ($last) = grep { $_->{dir} eq 'in' && $_->{msg}{event} =~ /^(media|mark)$/ } reverse @$twilio;
is($last->{msg}{event}, 'mark', 'the last audio was followed by a mark');
--- error_log
the agent says goodbye



=== TEST 7: twirt_mark_interval 0: a mark after each delta, as before
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい";
        twirt_mark_interval 0;
        twirt_silence_timeout 1s;
        twirt_silence_tries 0;
        twirt_silence_goodbye "失礼します";
    }
--- twilio
--scenario marks-silence --playback-delay-ms 300 --duration-ms 15000
--- check
is($call->{marks_received}, $call->{media_received}, 'a mark per media');
my $s = $call->{agent_audio_ms_received} / 1000;
diag(sprintf "per delta: %d marks for %d media, %.1f s of agent audio: %.1f marks/s",
     $call->{marks_received}, $call->{media_received}, $s, $call->{marks_received} / $s);
is($call->{marks_pending_at_end}, 0, 'the goodbye heard to its end');
