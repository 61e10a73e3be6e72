# A whole minute of a call at Twilio's real cadence: 3000 media frames of
# 20 ms from a client on Python's websockets, every one accounted for on
# both sides of nginx.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: 60 s, 3000 frames: all reach the model, in order, none lost
--- http_config
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[calltag:{{calltag}}]";
--- config
    location = /ping { return 200 'ok'; }
    location = /twilio/media { twirt_stream; }
--- request
GET /ping
--- timeout: 90
--- twilio
--scenario silence --duration-ms 59990
--- check
is($call->{media_sent}, 3000, 'the peer sent 3000 frames');
ok($call->{max_send_lateness_ms} < 20, "at the 20 ms cadence (worst $call->{max_send_lateness_ms} ms late)");
is($sim_summary->{appended_bytes}, 3000 * 160, 'every frame reached the model');
my @sent = map { $_->{msg}{media}{payload}{sha1} } grep { $_->{dir} eq 'out' && $_->{msg}{event} eq 'media' } @$twilio;
my @got = map { $_->{event}{audio}{sha1} } grep { ($_->{event}{type} // '') eq 'input_audio_buffer.append' } @$sim;
is_deeply(\@got, \@sent, 'in order, byte for byte');
is($call->{marks_received}, $call->{media_received}, 'a mark after each piece of agent audio');
is($call->{marks_pending_at_end}, 0, 'all of them played');
--- error_log eval
[qr/ended: stop, duration (59|60)\.\d{3}s, frames in \d+ out \d+, media in 3000 out/]
--- no_error_log
[error]
[warn]
