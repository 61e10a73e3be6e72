# Agent profiles from Redis go through the directives' validators: a bad
# field is logged and ignored, the configuration's value applies; a profile
# that switches the VAD type keeps none of the other type's parameters.
# Each check reads the session.update the Realtime simulator received.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use JSON::PP;
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[calltag:{{calltag}}]";
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . $block->config);
    redis_cli('FLUSHALL');
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();

# turn_detection of the session.update the simulator received
sub td_of {
    my ($sim) = @_;
    my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
    return $u ? $u->{event}{session}{audio}{input}{turn_detection} : undef;
}

__DATA__

=== TEST 1: vad_threshold "abc" is ignored: the configured threshold stays
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad', 'server', 'vad_threshold', 'abc');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{type}, 'server_vad', 'server VAD');
is($td->{threshold}, 0.6, 'the configured threshold, not 0');
is($td->{silence_duration_ms}, 500, 'the configured silence');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log
agent profile field "vad_threshold" ignored: the value is not a number from 0 to 1



=== TEST 2: vad_threshold "2" is out of range: ignored, the session is not rejected
--- config
    location = /twilio/media { twirt_stream; twirt_vad server threshold=0.7; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad_threshold', '2');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{threshold}, 0.7, 'the configured threshold');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log
agent profile field "vad_threshold" ignored: the value is not a number from 0 to 1



=== TEST 3: vad_silence_duration_ms "-5" and vad_prefix_padding_ms "x" are ignored
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad_silence_duration_ms', '-5', 'vad_prefix_padding_ms', 'x');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{silence_duration_ms}, 500, 'the configured silence, not -1');
is($td->{prefix_padding_ms}, 300, 'the configured prefix padding, not -1');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log eval
[qr/agent profile field "vad_silence_duration_ms" ignored: the value is not a whole number of milliseconds/,
 qr/agent profile field "vad_prefix_padding_ms" ignored: the value is not a whole number of milliseconds/]



=== TEST 4: vad_silence_duration_ms "x" is ignored too; valid fields still apply
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad_silence_duration_ms', 'x', 'vad_threshold', '0.8', 'vad_prefix_padding_ms', '200');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{silence_duration_ms}, 500, 'the configured silence');
is($td->{threshold}, 0.8, 'the profile threshold');
is($td->{prefix_padding_ms}, 200, 'the profile prefix padding');
--- error_log
agent profile field "vad_silence_duration_ms" ignored



=== TEST 5: semantic in the configuration, server in the profile: no eagerness
--- config
    location = /twilio/media { twirt_stream; twirt_vad semantic eagerness=low; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad', 'server', 'vad_silence_duration_ms', '800');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{type}, 'server_vad', 'server VAD');
ok(!exists $td->{eagerness}, 'semantic eagerness dropped');
is($td->{silence_duration_ms}, 800, 'the profile silence');
is($td->{create_response}, JSON::PP::true, 'create_response kept');
is($sim_summary->{errors_sent}, 0, 'accepted');



=== TEST 6: server in the configuration, semantic in the profile: no server parameters
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad', 'semantic', 'vad_eagerness', 'high', 'vad_threshold', '0.9');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
is($td->{type}, 'semantic_vad', 'semantic VAD');
is($td->{eagerness}, 'high', 'the profile eagerness');
ok(!exists $td->{$_}, "no $_") for qw(threshold prefix_padding_ms silence_duration_ms);



=== TEST 7: unknown vad, eagerness and voice are ignored, each saying why
--- config
    location = /twilio/media { twirt_stream; twirt_vad semantic; twirt_voice ash; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad', 'fast', 'vad_eagerness', 'max', 'voice', 'nova', 'vad_speed', '3');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
is($td->{type}, 'semantic_vad', 'the configured VAD');
ok(!exists $td->{eagerness}, 'no eagerness');
ok(!exists $td->{speed}, 'no unknown parameter');
is($u->{event}{session}{audio}{output}{voice}, 'ash', 'the configured voice');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log eval
[qr/agent profile field "vad" ignored: the value is not one of server, semantic, off/,
 qr/agent profile field "vad_eagerness" ignored: the value is not one of low, medium, high, auto/,
 qr/agent profile field "voice" ignored: the value is not one of alloy, ash, /,
 qr/agent profile field "vad_speed" ignored/]



=== TEST 8: transcription off in a profile
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'transcription', 'off');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
ok(!exists $u->{event}{session}{audio}{input}{transcription}, 'no transcription');
is($sim_summary->{errors_sent}, 0, 'accepted');



=== TEST 9: vad off in a profile cannot answer the caller: ignored, the configured VAD stays
--- config
    location = /twilio/media { twirt_stream; twirt_vad semantic eagerness=low; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'vad', 'off', 'vad_eagerness', 'high');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my $td = main::td_of($sim);
ok(defined $td, 'turn detection is on');
is($td->{type}, 'semantic_vad', 'the configured type');
is($td->{eagerness}, 'high', 'the profile eagerness still applies');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- error_log
agent profile field "vad" ignored: the value is "off", which would never answer the caller



=== TEST 10: a profile's transcription_prompt replaces the configuration's
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_transcription whisper-1 language=ja;
        twirt_transcription_prompt "一般";
    }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'transcription_prompt', 'さくら歯科、診察券');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
is($u->{event}{session}{audio}{input}{transcription}{prompt}, 'さくら歯科、診察券', 'the profile prompt');
is($u->{event}{session}{audio}{input}{transcription}{model}, 'whisper-1', 'the configured model');
is($sim_summary->{errors_sent}, 0, 'accepted');



=== TEST 11: a profile's tools replace the configuration's in the session
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'tools', '[{"type":"function","name":"check_stock","description":"在庫を確認する","parameters":{"type":"object","properties":{"item":{"type":"string"}}}}]');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
my @names = map { $_->{name} } @{ $u->{event}{session}{tools} };
is_deeply(\@names, ['end_call', 'check_stock'], 'the built-in end_call and the profile tool');
is($u->{event}{session}{tools}[1]{description}, '在庫を確認する', 'Japanese intact');
is($sim_summary->{errors_sent}, 0, 'accepted');
--- no_error_log
agent profile field



=== TEST 12: a profile's tools that fail the check are logged; the configuration's apply
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'tools', '[{"type":"function","name":"ok_tool"},{"type":"function","name":"end_call"}]');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
my @names = map { $_->{name} } @{ $u->{event}{session}{tools} };
is_deeply(\@names, ['end_call'], 'only the configured end_call');
--- error_log
agent profile field "tools" ignored: the value entry 1 has the name of a built-in tool (end_call, transfer_call)



=== TEST 13: a profile's tools that are not JSON
--- config
    location = /twilio/media { twirt_stream; }
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:a', 'tools', '[{"type":');
--- twilio
--scenario silence --duration-ms 1000 --param agent=a
--- check
my ($u) = grep { ($_->{event}{type} // '') eq 'session.update' } @$sim;
is(scalar @{ $u->{event}{session}{tools} }, 1, 'only end_call');
--- error_log
agent profile field "tools" ignored: the value is not JSON
