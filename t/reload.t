# nginx -s reload in the middle of a call: the old worker keeps the call
# to its end, untouched.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

master_on();
workers(1);
place_calls_from_blocks($sim);

no_shuffle();
run_tests();

sub reload {
    my $root = $ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot";
    open my $fh, '<', "$root/logs/nginx.pid" or die "no pid file: $!";
    my $pid = <$fh>;
    chomp $pid;
    kill 'HUP', $pid or die "kill HUP $pid: $!";
}

__DATA__

=== TEST 1: a call goes on through a reload
--- http_config
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
--- config
    location = /ping { return 200 'ok'; }
    location = /twilio/media { twirt_stream; twirt_greeting "こんにちは"; }
--- request
GET /ping
--- twilio
--scenario ja-booking --duration-ms 7000
--- during
100: main::reload()
--- check
is($call->{close}{by}, 'caller', 'the caller hung up, not the gateway');
is($sim_summary->{appended_bytes}, 160 * $call->{media_sent}, 'no caller audio lost');
is($call->{agent_audio_sha1}, $sim_summary->{audio_out_sha1}, 'no agent audio lost');
like(main::error_log_text(), qr/signal 1 \(SIGHUP\) received/, 'nginx was reloaded');
--- error_log eval
[qr/ended: stop, duration 7\.\d{3}s/, qr/gracefully shutting down/]
--- no_error_log
[alert]
