# The cached greeting (twirt_greeting_cache, README "The cached greeting"):
# a greeting the model said whole is kept (shared memory, and Redis); a
# later call with the same greeting hears that audio at once, while its
# session is configured, and the model is told it as an assistant item;
# a barge-in during it is one like any other; a greeting filled per call
# is the model's every time; the zone is bounded (least recently used
# first).  Orderings are read from the peers' records ("at": wall clock).

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Twirt::Redis;
use Test::Nginx::Socket 'no_plan';

our $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

our $port = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
        . "location = /status { twirt_status; }\n"
        . $block->config);
    redis_cli('FLUSHALL') unless defined $block->keep_redis;
});

place_calls_from_blocks($sim);

no_shuffle();
run_tests();


# a sample of /status
sub metric {
    my ($name) = @_;
    my ($status, $body) = http_get_text('/status');
    return undef unless $status == 200;
    return $body =~ /^\Q$name\E (\S+)$/m ? $1 + 0 : undef;
}

sub cache { return metric("twirt_greeting_cache_$_[0]_total") }

# a call through the test nginx: (exit code, Twilio records, its summary,
# the simulator's records of its connection)
sub place {
    my ($path, $calltag, $args) = @_;
    my ($rc, $tw) = twilio_call("--url ws://127.0.0.1:$port$path --param calltag=$calltag $args");
    my ($summary) = grep { $_->{dir} eq 'summary' } @$tw;
    return ($rc, $tw, $summary // {}, Twirt::Peers::_sim_conn([$sim], $calltag));
}

# the client events of a type the simulator got
sub got {
    my ($recs, $type) = @_;
    return map { $_->{event} }
           grep { ($_->{dir} // '') eq 'in' && ($_->{event}{type} // '') eq $type } @$recs;
}

# the greetings the model was asked to say
sub greeting_creates {
    my ($recs) = @_;
    return grep { ($_->{response}{instructions} // '') =~ /greet the caller first/ }
           got($recs, 'response.create');
}

# what the model said of its greeting (the simulator's transcript.done)
sub spoken {
    my ($recs) = @_;
    my ($done) = grep { ($_->{dir} // '') eq 'out'
                        && ($_->{event}{type} // '') eq 'response.output_audio_transcript.done' } @$recs;
    return $done ? $done->{event}{transcript} : undef;
}

# the audio frames Twilio got (sha1 of each payload), in order
sub frames {
    my ($tw) = @_;
    return [ map { $_->{msg}{media}{payload}{sha1} }
             grep { $_->{dir} eq 'in' && ($_->{msg}{event} // '') eq 'media' } @$tw ];
}

# the greeting events of a call
sub greeting_events {
    my ($sid) = @_;
    return [ map { $_->{source} } grep { $_->{type} eq 'greeting' } @{ twirt_events($sid) } ];
}

# the wall clock of a simulator connection's first record matching $pred
sub sim_at {
    my ($recs, $pred) = @_;
    my ($hs) = grep { $_->{dir} eq 'handshake' } @$recs;
    my ($r) = grep { $pred->($_) } @$recs;
    return ($hs && $r) ? $hs->{at} + $r->{t} / 1000 : undef;
}

# ... and of the Twilio peer's first media received
sub first_media_at {
    my ($tw) = @_;
    my ($hs) = grep { $_->{dir} eq 'handshake' } @$tw;
    my ($m) = grep { $_->{dir} eq 'in' && ($_->{msg}{event} // '') eq 'media' } @$tw;
    return $hs->{at} + ($m->{t} - $hs->{t}) / 1000;
}

__DATA__

=== TEST 1: miss, then hit: the second call hears the first call's greeting audio before the Realtime upgrade is even done, the model is told the greeting as it said it, and the silence counts from its last mark
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=upgrade_delay=300;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
    location = /twilio/silent {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=upgrade_delay=300;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
        twirt_silence_timeout 500ms;
        twirt_silence_tries 1;
        twirt_silence_prompt "もしもし";
    }
    location = /twilio/small {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
        twirt_send_queue_size 16k;
    }
--- twilio
--scenario silence --duration-ms 1200
--- check
is(scalar(main::greeting_creates($sim)), 1, 'the miss: the model was asked for the greeting');
my $spoken = main::spoken($sim);
is($spoken, 'お電話ありがとうございます。', 'and said it');
is_deeply(main::greeting_events($call->{call_sid}), ['model'], 'a greeting event: from the model');
is(main::cache('misses'), 1, 'one miss');
is(main::cache('stored'), 1, 'the greeting stored');
my $frames1 = main::frames($twilio);
ok(@$frames1 >= 10, scalar(@$frames1) . ' frames of greeting audio');

my ($rc, $tw, $call2, $sim2) = main::place('/twilio/silent', 'hit1', '--scenario silence --duration-ms 2000');
is($rc, 0, 'the second call ran');
is(scalar(main::greeting_creates($sim2)), 0, 'the hit: no response.create for the greeting');
my @items = main::got($sim2, 'conversation.item.create');
is(scalar @items, 1, 'one conversation item created');
is($items[0]{item}{role}, 'assistant', 'an assistant message');
is($items[0]{item}{content}[0]{type}, 'output_text', 'of output_text');
is($items[0]{item}{content}[0]{text}, $spoken, 'the greeting as the model said it');
my $frames2 = main::frames($tw);
is_deeply([ @$frames2[0 .. $#$frames1] ], $frames1, 'byte-identical greeting audio, frame by frame');
my $hit_media = main::first_media_at($tw);
my $created = main::sim_at($sim2, sub { ($_[0]{event}{type} // '') eq 'session.created' });
ok($hit_media < $created, sprintf('the greeting reached Twilio before the upgrade was done (%.3f < %.3f)', $hit_media, $created));
my $update = main::sim_at($sim2, sub { ($_[0]{event}{type} // '') eq 'session.update' });
my $told = main::sim_at($sim2, sub { ($_[0]{event}{type} // '') eq 'conversation.item.create' });
ok($update < $told, 'the model was told after the session update');
my $utt = utterances($tw);
is(scalar @$utt, 2, 'the cached greeting, then the silence prompt') or diag(explain($utt));
ok($utt->[1]{first_sent} - $utt->[0]{played} >= 500,
   "the prompt came a timeout after the cached greeting's last echo ($utt->[1]{first_sent} ms, echoed $utt->[0]{played} ms)");
is_deeply(main::greeting_events($call2->{call_sid}), ['cache'], 'a greeting event: from the cache');
my @lines = map { $_->{text} } grep { $_->{type} eq 'transcript' && ($_->{item_id} // '') eq 'twirt_greeting' } @{ twirt_events($call2->{call_sid}) };
is_deeply(\@lines, [$spoken], 'the call record has the greeting as a transcript line');
is($call2->{clears_received}, 0, 'no clear');
is(main::cache('hits'), 1, 'one hit');
is(main::cache('stored'), 1, 'nothing stored again');
my ($s2) = grep { $_->{dir} eq 'summary' } @$sim2;
is($s2->{errors_sent}, 0, 'the simulator found nothing wrong');
my ($rc3, $tw3, $call3, $sim3) = main::place('/twilio/small', 'small', '--scenario silence --duration-ms 1000');
is(scalar(main::greeting_creates($sim3)), 1, 'a send queue too small for it queued at once: the model says it');
is_deeply(main::greeting_events($call3->{call_sid}), ['model'], 'a greeting event: from the model');
--- error_log eval
[qr/the greeting, 1000 ms, is cached/, qr/the greeting, 1000 ms, played from the cache/,
 qr/the cached greeting, \d+ bytes to send, is not played: over half of twirt_send_queue_size/,
 qr/the cached greeting was heard for 1000 ms of 1000 ms: the model is told 42 of 42 bytes/]
--- no_error_log
[error]



=== TEST 2: a barge-in during a cached greeting: clear, a barge_in event, no truncate (the model never had that item), the model told the part heard
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
--- twilio
--scenario greeting-long --duration-ms 3000
--- check
is(main::cache('stored'), 1, 'the 5 s greeting stored');
my $spoken = main::spoken($sim);
my ($rc, $tw, $call2, $sim2) = main::place('/twilio/media', 'barge1', '--scenario greeting-barge-in --duration-ms 3000');
is($rc, 0, 'the second call ran');
is(main::cache('hits'), 1, 'a hit');
ok($call2->{clears_received} >= 1, 'Twilio was cleared');
my ($b) = grep { $_->{type} eq 'barge_in' } @{ twirt_events($call2->{call_sid}) };
ok($b, 'a barge_in event') or return;
is($b->{item_id}, 'twirt_greeting', 'of the cached greeting');
ok($b->{heard_ms} > 0 && $b->{heard_ms} < 5000, "heard $b->{heard_ms} ms of it");
is($b->{audio_ms}, 5000, 'of 5000 ms');
is(scalar(main::got($sim2, 'conversation.item.truncate')), 0, 'no truncate');
my @items = main::got($sim2, 'conversation.item.create');
is(scalar @items, 1, 'the model was told');
my $text = $items[0]{item}{content}[0]{text};
is(length($text), int(length($spoken) * $b->{heard_ms} / 5000), "the characters heard, in proportion");
ok(length($text) < length($spoken), 'shorter than the whole');
is(substr($spoken, 0, length($text)), $text, 'its beginning');
my @order = map { ($_->{dir} eq 'in' ? 'in:' : 'out:') . ($_->{event}{type} // '') }
            grep { defined $_->{event} } @$sim2;
my ($told) = grep { $order[$_] eq 'in:conversation.item.create' } 0 .. $#order;
my ($answer) = grep { $order[$_] eq 'out:response.created' } 0 .. $#order;
ok(defined $answer && $told < $answer, 'told before the model answered the caller');
my ($s2) = grep { $_->{dir} eq 'summary' } @$sim2;
is($s2->{errors_sent}, 0, 'the simulator found nothing wrong');
--- error_log eval
qr/barge-in: item "twirt_greeting" played \d+ ms of 5000 ms/
--- no_error_log
[error]



=== TEST 3: a greeting filled per call ({{name}}): the model's for each name; a name said once is not kept, said again it is, and the third time it is the cache's
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "{{name}}様、お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
--- twilio
--scenario silence --duration-ms 1000 --param name=山田
--- check
my @c1 = main::greeting_creates($sim);
like($c1[0]{response}{instructions}, qr/Say exactly: 山田様、お電話ありがとうございます。$/, 'the first name');
my ($rc, $tw, $call2, $sim2) = main::place('/twilio/media', 'name2', '--scenario silence --duration-ms 1000 --param name=佐藤');
is($rc, 0, 'the second call ran');
my @c2 = main::greeting_creates($sim2);
like($c2[0]{response}{instructions}, qr/Say exactly: 佐藤様、お電話ありがとうございます。$/, 'the second name, from the model');
is(scalar(main::got($sim2, 'conversation.item.create')), 0, 'no greeting item');
is_deeply(main::greeting_events($call2->{call_sid}), ['model'], 'a greeting event: from the model');
is(main::cache('stored'), 0, 'nothing stored: each name said once');
my ($rc3, $tw3, $call3, $sim3) = main::place('/twilio/media', 'name3', '--scenario silence --duration-ms 1000 --param name=山田');
is(scalar(main::greeting_creates($sim3)), 1, 'the first name again: the model says it');
is(main::cache('stored'), 1, 'and now it is kept');
my ($rc4, $tw4, $call4, $sim4) = main::place('/twilio/media', 'name4', '--scenario silence --duration-ms 1500 --param name=山田');
is(scalar(main::greeting_creates($sim4)), 0, 'a third time: not asked');
is_deeply(main::greeting_events($call4->{call_sid}), ['cache'], 'from the cache');
is((main::got($sim4, 'conversation.item.create'))[0]{item}{content}[0]{text}, main::spoken($sim3), 'the model told it');
is(main::cache('hits'), 1, 'one hit');
is(main::cache('misses'), 3, 'three misses');
--- error_log
a greeting filled per call is not cached the first time it is said
--- no_error_log
[error]



=== TEST 4: eviction: a zone for two greetings of 1 s (32k: 7 pages, 2 for the zone's own use); the third evicts the least recently used; one bigger than the zone is not kept, and evicts nothing
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "はい、Aです。";
        twirt_greeting_cache zone=tiny:32k;
    }
    location = /twilio/b {
        twirt_stream;
        twirt_greeting "はい、Bです。";
        twirt_greeting_cache zone=tiny:32k;
    }
    location = /twilio/c {
        twirt_stream;
        twirt_greeting "はい、Cです。";
        twirt_greeting_cache zone=tiny:32k;
    }
    location = /twilio/long {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=tiny:32k;
    }
--- twilio
--scenario silence --duration-ms 1000
--- check
my @run = ([b => 'model'], [c => 'model'], [b => 'cache'], [media => 'model']);
is(main::cache('stored'), 1, 'A stored');
my $i = 0;
for my $step (@run) {
    my ($path, $source) = @$step;
    my ($rc, $tw, $c) = main::place("/twilio/$path", 'evict' . ++$i, '--scenario silence --duration-ms 1000');
    is($rc, 0, "call $i ran");
    is_deeply(main::greeting_events($c->{call_sid}), [$source], "/twilio/$path: from the $source");
    is(main::cache('evicted'), 0, 'A and B both fit') if $i == 1;
    is(main::cache('evicted'), 1, 'C evicted A') if $i == 2;
}
is(main::cache('hits'), 1, 'one hit: B, used more recently than C');
is(main::cache('misses'), 4, 'misses: A, B, C, A again');
is(main::cache('stored'), 4, 'each miss stored');
is(main::cache('evicted'), 2, 'A back evicted C');
for my $n (1, 2) {
    my ($rc, $tw, $c) = main::place('/twilio/long', "long$n", '--scenario greeting-long --duration-ms 1500');
    is_deeply(main::greeting_events($c->{call_sid}), ['model'], "a 5 s greeting ($n): from the model");
}
is(main::cache('stored'), 4, 'not stored: 40000 bytes, more than the zone');
is(main::cache('evicted'), 2, 'nothing evicted for it');
my $n = () = error_log_text() =~ /larger than the zone "tiny" can hold/g;
is($n, 1, 'logged once');
--- no_error_log
[error]



=== TEST 5: a greeting the caller interrupted, that the model did not finish, or over 30 s, is not stored
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
    location = /twilio/incomplete {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=incomplete_responses;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
    location = /twilio/long {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m;
    }
    location = /twilio/failed {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=failed_responses=2;
        twirt_greeting "お電話ありがとうございます。";
        twirt_response_apology "申し訳ございません。";
        twirt_greeting_cache zone=greetings:1m;
    }
--- twilio
--scenario greeting-barge-in --duration-ms 2500
--- check
ok($call->{clears_received} >= 1, 'the caller cut the greeting');
is(main::cache('stored'), 0, 'cut: not stored');
my ($rc, $tw, $c) = main::place('/twilio/incomplete', 'inc', '--scenario silence --duration-ms 1000');
is(main::cache('stored'), 0, 'incomplete: not stored');
my $failed;
($rc, $tw, $c, $failed) = main::place('/twilio/failed', 'fail', '--scenario silence --duration-ms 1200');
my @said = map { $_->{response}{instructions} } main::got($failed, 'response.create');
is(scalar @said, 3, 'failed twice, then the apology');
is(main::cache('stored'), 0, 'failed: not stored, nor the apology');
($rc, $tw, $c) = main::place('/twilio/long', 'long31', '--scenario greeting-31s --duration-ms 1800');
ok(log_wait(qr/the greeting is not cached: longer than 30000 ms/, 5), 'over 30 s: not recorded further');
is(main::cache('stored'), 0, 'nor stored');
($rc, $tw, $c) = main::place('/twilio/media', 'after', '--scenario silence --duration-ms 1000');
is_deeply(main::greeting_events($c->{call_sid}), ['model'], 'the next call: a miss');
is(main::cache('misses'), 5, 'five misses');
is(main::cache('stored'), 1, 'that one stored');
--- error_log eval
[qr/the greeting is not cached: cancelled/, qr/the greeting is not cached: incomplete/]
--- no_error_log
[error]



=== TEST 6: with Redis: the greeting stored is also in Redis, a hash of its audio and text expiring at max_age
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 2s;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m max_age=1h;
    }
--- twilio
--scenario silence --duration-ms 1000
--- check
is(main::cache('stored'), 1, 'stored');
is(main::cache('misses'), 1, 'after a miss in Redis too');
my @keys;
redis_wait(5, sub { @keys = grep { /\S/ } redis_cli('--raw', 'KEYS', 'twirt:greeting:*'); @keys });
is(scalar @keys, 1, 'one key in Redis');
chomp(my $key = $keys[0] // '');
like($key, qr/^twirt:greeting:[0-9a-f]{32}$/, "named by the digest: $key");
my ($ttl) = redis_cli('--raw', 'TTL', $key);
ok($ttl > 3500 && $ttl <= 3600, "expiring at max_age ($ttl s)");
my ($text) = redis_cli('--raw', 'HGET', $key, 'text');
chomp $text;
utf8::decode($text);
is($text, main::spoken($sim), 'its text, as the model said it');
my ($len) = redis_cli('--raw', 'HSTRLEN', $key, 'audio');
is($len + 0, 8000, 'its audio: 1 s of μ-law');
$main::redis_frames = main::frames($twilio);
$main::redis_text = $text;



=== TEST 7: with Redis: another node (this nginx restarted: its zone empty) gets the greeting from Redis, at once, and keeps it
--- keep_redis
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 2s;
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=upgrade_delay=300;
        twirt_greeting "お電話ありがとうございます。";
        twirt_greeting_cache zone=greetings:1m max_age=1h;
    }
--- twilio
--scenario silence --duration-ms 1500
--- check
is(scalar(main::greeting_creates($sim)), 0, 'no response.create for the greeting');
my @items = main::got($sim, 'conversation.item.create');
is($items[0]{item}{content}[0]{text}, $main::redis_text, 'the model told the greeting from Redis');
is_deeply(main::frames($twilio), $main::redis_frames, 'the audio stored by the other node, byte for byte');
my $created = main::sim_at($sim, sub { ($_[0]{event}{type} // '') eq 'session.created' });
ok(main::first_media_at($twilio) < $created, 'before the upgrade was done');
my ($g) = grep { $_->{type} eq 'greeting' } @{ twirt_events($call->{call_sid}) };
is($g->{source}, 'cache', 'a greeting event: from the cache');
is($g->{from}, 'redis', 'of Redis');
is(main::cache('hits'), 1, 'a hit');
is(main::cache('misses'), 0, 'no miss');
my ($rc, $tw, $c2) = main::place('/twilio/media', 'again', '--scenario silence --duration-ms 1000');
my ($g2) = grep { $_->{type} eq 'greeting' } @{ twirt_events($c2->{call_sid}) };
ok($g2 && !defined $g2->{from}, 'the next call: from the zone, kept from Redis');
is(main::cache('hits'), 2, 'two hits');
--- error_log
played from Redis
--- no_error_log
[error]
