# Transfer to a human: the model calls transfer_call, the agent finishes
# its sentence, the stream ends with the kind "transfer", <Connect action>
# answers <Dial> with a whisper of the model's summary, and the dial's end
# hangs up or brings the caller back: to the agent with its context (with
# Redis), or to the fallback verbs (without).  Whole calls are followed as
# Twilio follows them by t/peers/twilio_call.py, every request signed.
# Ports: the server port, and + 18 for a second nginx (another node).

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use Twirt::Peers;
use Twirt::Check;
use Twirt::Redis;
use Twirt::Conf qw(nginx_t http_conf);
use Test::Nginx::Socket 'no_plan';

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};

# the tool backend of the whole story (TEST 11, 12): book_appointment
our $Tools = tool_backend_start('--secret', 'transfer-tools-secret');
$ENV{TEST_NGINX_TOOLS_PORT} = $Tools->{port};
$ENV{TEST_NGINX_TOOLS_FILE} = tempdir(CLEANUP => 1) . '/tools.json';
{
    open my $fh, '>', $ENV{TEST_NGINX_TOOLS_FILE} or die $!;
    print $fh '[{"type":"function","name":"book_appointment","description":"予約を取る",'
              . '"parameters":{"type":"object","properties":{"name":{"type":"string"},'
              . '"date":{"type":"string"},"time":{"type":"string"}}}}]';
    close $fh;
}
$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();
$ENV{TEST_NGINX_NODE_B} = server_port() + 18;

our $Sim = $sim;
our $Token = 'transfer-test-token';
our $Seq = 0;
my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $json = JSON::PP->new->utf8;

# what every block shares: the targets, the action at server level
our $Server = <<'CONF';
    twirt_twilio_auth_token transfer-test-token;
    twirt_transfer reception +81312345678 caller_id=+81300000000 timeout=20;
    twirt_transfer desk sip:desk@pbx.example.com;
    twirt_fallback_say "申し訳ございません。" language=ja-JP;
    twirt_connect_action /twilio/after;
    twirt_stream_url wss://localhost/twilio/media;
    twirt_parameter scenario $arg_scenario;
    twirt_parameter calltag $twirt_param_CallSid;
    location = /status { twirt_status; }
    location = /twilio/voice { twirt_twiml; }
    location = /twilio/media { twirt_stream; }
    location = /twilio/after {
        twirt_action;
        # the caller who comes back talks to the end-call script
        twirt_parameter scenario end-call;
        twirt_parameter calltag $twirt_param_CallSid;
    }
CONF

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
CONF
    $block->set_value('config', "    location = /ping { return 200 'ok'; }\n"
                      . $Server . ($block->config // ''));
});

# runs the call of a block (--- call: twilio_call.py options, with
# SCENARIO and CALL_SID words), then its --- check with $r (the call's
# summary), $rec (its records), $sims (the simulator's connections of
# the call, in order) and $sid
Test::Nginx::Socket::add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated, $dry_run) = @_;
    return if $dry_run || !defined $block->call;
    my $args = $block->call;
    $args =~ s/\s+/ /g;
    $args =~ s/\$(TEST_NGINX_\w+)/$ENV{$1} \/\/ ''/ge;
    my $sid = sprintf "CA%032d", $$ * 100 + ++$main::Seq;
    my ($r, $rec) = run_call("--call-sid $sid $args");
    my $sims = sim_conns($sid, $block->sessions // 1);
    run_check($block, 'my ($r, $rec, $sims, $sid) = @_;', $r, $rec, $sims,
              $sid);
});

# nginx -t refuses what cannot be dialed, saying why
for my $case (
    ['twirt_transfer reception 0312345678;', qr/E\.164 form/],
    ['twirt_transfer reception +81312345678 timeout=2;', qr/from 5 to 600/],
    ['twirt_transfer reception +81312345678 timeout=abc;', qr/from 5 to 600/],
    ['twirt_transfer reception +81312345678 caller_id=ACME;', qr/caller_id must be/],
    ['twirt_transfer "re ception" +81312345678;', qr/letters, digits/],
    ['twirt_transfer reception "sip:a b@x";', qr/SIP URI has a space/],
    ['twirt_transfer reception +81312345678 ring=3;', qr/expected "caller_id=" or "timeout="/],
    ['twirt_transfer reception +81312345678; twirt_transfer reception +81312345679;', qr/is duplicate/],
    ['twirt_transfer reception;', qr/invalid number of arguments/],
) {
    my ($snippet, $why) = @$case;
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $snippet }"));
    isnt($rc, 0, "nginx -t refuses: $snippet");
    like($out, $why, "and says why: $snippet");
}

{
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; twirt_transfer reception +81312345678 caller_id=+81300000000 timeout=45; twirt_transfer desk sip:desk\@pbx.example.com; }"));
    is($rc, 0, 'nginx -t takes valid targets') or diag $out;
}

# node B: another nginx with the same Redis, only the action location
our $NodeB = tempdir(CLEANUP => 1);

sub node_b_start {
    mkdir "$NodeB/logs";
    my $port = $ENV{TEST_NGINX_NODE_B};
    open my $fh, '>', "$NodeB/nginx.conf" or die $!;
    my $main = "worker_processes 1; daemon on; master_process on; "
               . "error_log logs/error.log info;" . ($> == 0 ? " user root;" : "");
    print $fh http_conf(<<"CONF", $main);
    twirt_redis unix:$ENV{TEST_NGINX_REDIS_SOCKET};
    server {
        listen 127.0.0.1:$port;
        twirt_twilio_auth_token $Token;
        twirt_fallback_say "申し訳ございません。" language=ja-JP;
        twirt_stream_url wss://localhost/twilio/media;
        location = /twilio/after { twirt_action; }
    }
CONF
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    system("$nginx -p $NodeB/ -c $NodeB/nginx.conf") == 0
        or BAIL_OUT("node B did not start: " . `cat $NodeB/logs/error.log`);
    my $deadline = time + 10;
    until (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")) {
        BAIL_OUT("node B does not listen") if time > $deadline;
        sleep 0.05;
    }
    # its Redis connection is up before a request needs it
    $deadline = time + 10;
    until (node_b_log() =~ /twirt: redis "[^"]*" connected(?: after \d+ attempts)?, flushed/) {
        BAIL_OUT("node B did not connect to Redis: " . node_b_log()) if time > $deadline;
        sleep 0.05;
    }
}

sub node_b_stop {
    my $pid = `cat $NodeB/logs/nginx.pid 2>/dev/null`;
    chomp $pid;
    return unless $pid;
    kill 'QUIT', $pid;
    my $deadline = time + 10;
    sleep 0.05 while kill(0, $pid) && time < $deadline;
}

sub node_b_log {
    local $/;
    open my $fh, '<', "$NodeB/logs/error.log" or return '';
    return <$fh>;
}

require IO::Socket::INET;
node_b_start();
END { node_b_stop() }

no_shuffle();
run_tests();

sub run_call {
    my ($args) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $port = server_port();
    my $out = `$python $FindBin::Bin/peers/twilio_call.py --base http://127.0.0.1:$port --auth-token $Token --record $dir/call.jsonl $args 2>&1`;
    my @rec;
    if (open my $fh, '<', "$dir/call.jsonl") {
        while (my $line = <$fh>) {
            my $x = eval { $json->decode($line) } or next;
            push @rec, $x;
        }
    }
    my ($summary) = grep { $_->{dir} eq 'summary' && $_->{streams} } @rec;
    diag($out) unless $summary && $summary->{ok};
    return ($summary // {}, \@rec);
}

# the simulator's connections whose session has this calltag, each as
# its records, once $n of them have closed (a bounded wait)
sub sim_conns {
    my ($tag, $n) = @_;
    my $deadline = time + 15;
    while (1) {
        my $records = sim_records($Sim);
        my @conns = map { $_->{conn} }
                    grep { ($_->{dir} // '') eq 'note'
                           && ($_->{calltag} // '') eq $tag } @$records;
        my %seen;
        @conns = grep { !$seen{$_}++ } @conns;
        my @sessions = map { my $c = $_; [ grep { ($_->{conn} // -1) == $c }
                                           @$records ] } @conns;
        my $closed = grep { grep { $_->{dir} eq 'summary' } @$_ } @sessions;
        return \@sessions if $closed >= $n || time > $deadline;
        sleep 0.05;
    }
}

# the client events of one simulator connection, of one type
sub sent {
    my ($session, $type) = @_;
    return [ map { $_->{event} }
             grep { $_->{dir} eq 'in' && ref $_->{event}
                    && ($_->{event}{type} // '') eq $type } @$session ];
}

sub http_get_status {
    my ($status, $body) = http_get_text('/status');
    return $body;
}

sub dump {
    diag(JSON::PP->new->canonical->encode($_[0]));
}

sub docs {
    my ($r, $what) = @_;
    return [ map { $_->{body} } grep { $_->{what} eq $what }
             @{ $r->{documents} // [] } ];
}

sub hash {
    my ($sid) = @_;
    my %h = redis_cli('--raw', 'HGETALL', "twirt:call:$sid");
    my @kv = redis_cli('--raw', 'HGETALL', "twirt:call:$sid");
    %h = @kv;
    utf8::decode($_) for values %h;
    return \%h;
}

__DATA__

=== TEST 1: the tool is declared with the names only, as an enum
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-unknown --scenario transfer-unknown
--- check
my ($update) = @{ main::sent($sims->[0], 'session.update') };
my ($tool) = grep { $_->{name} eq 'transfer_call' } @{ $update->{session}{tools} };
ok($tool, 'transfer_call declared');
is_deeply([sort @{ $tool->{parameters}{properties}{target}{enum} }], ['desk', 'reception'], 'names, never numbers');
is_deeply($tool->{parameters}{required}, ['target', 'summary'], 'both required');
unlike(JSON::PP->new->encode($tool), qr/\+81/, 'no number reaches the model');



=== TEST 2: without Redis, answered: <Dial> with the whisper of the summary, then hang up
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial answered
--- check
ok($r->{ok}, 'the call went as Twilio would follow it') or main::dump($r->{failures});
my $out = main::sent($sims->[0], 'conversation.item.create');
my ($fco) = grep { $_->{item}{type} eq 'function_call_output' } @$out;
is($fco->{item}{output}, '{"status":"transferring"}', 'transferring');
my $action = main::docs($r, 'action')->[0];
my $base = "https://localhost/twilio/after";
is($action, qq{<?xml version="1.0" encoding="UTF-8"?>\n<Response><Dial callerId="+81300000000" timeout="20" action="$base?twirt=dialed&amp;call=$sid" method="POST"><Number url="$base?twirt=whisper&amp;call=$sid" method="POST">+81312345678</Number></Dial></Response>\n}, 'the Dial TwiML');
is_deeply($r->{whispers}, [{ text => '山田様、予約変更のご相談です', language => 'ja-JP' }], 'the whisper: the summary, Japanese intact');
like(main::docs($r, 'dialed')->[0], qr{<Response><Hangup/></Response>}, 'talked: hang up');
is(scalar @{ $r->{streams} }, 1, 'one stream');
is($r->{streams}[0]{close}{code}, 1000, 'the gateway closed the stream normally');
my ($st) = main::http_get_status();
like($st, qr/^twirt_transfers_total\{result="requested"\} [1-9]/m, 'counted: requested');
like($st, qr/^twirt_transfers_total\{result="answered"\} [1-9]/m, 'counted: answered');
like($st, qr/^twirt_calls_ended_total\{reason="transfer"\} [1-9]/m, 'ended: transfer');
--- error_log eval
[qr/ended \(ended, transfer\): transfer, known from this node's outcomes/,
 qr/the transfer of CallSid "CA\d+" to "reception" ended: completed, hang up/]
--- no_error_log
[error]



=== TEST 3: without Redis, nobody answers: the fallback verbs play
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial no-answer
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
is(main::docs($r, 'dialed')->[0], qq{<?xml version="1.0" encoding="UTF-8"?>\n<Response><Say language="ja-JP">申し訳ございません。</Say></Response>\n}, 'the fallback');
is(scalar @{ $r->{streams} }, 1, 'no second stream');
--- error_log
ended: no-answer, fallback



=== TEST 4: a SIP target is dialed with <Sip>, its whisper at the noun's url
--- config
    location = /sip/voice {
        twirt_twiml;
        twirt_stream_url wss://localhost/sip/media;
    }
    location = /sip/media {
        twirt_stream;
        twirt_transfer reception sip:reception@pbx.example.com;
    }
--- call
--webhook https://localhost/sip/voice?scenario=transfer-basic --scenario transfer-basic --dial answered
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
my $base = "https://localhost/twilio/after";
is(main::docs($r, 'action')->[0], qq{<?xml version="1.0" encoding="UTF-8"?>\n<Response><Dial timeout="30" action="$base?twirt=dialed&amp;call=$sid" method="POST"><Sip url="$base?twirt=whisper&amp;call=$sid" method="POST">sip:reception\@pbx.example.com</Sip></Dial></Response>\n}, 'Sip, no callerId, the default timeout');
is($r->{whispers}[0]{text}, '山田様、予約変更のご相談です', 'whispered');



=== TEST 5: with Redis, answered: the record keeps the transfer before the stream closes
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial answered
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
is($r->{whispers}[0]{text}, '山田様、予約変更のご相談です', 'whisper');
my $h = main::hash($sid);
is($h->{end_reason}, 'transfer', 'end_reason transfer');
is($h->{status}, 'ended', 'ended, not failed');
is($h->{transfer_target}, 'reception', 'target');
is($h->{transfer_number}, '+81312345678', 'number');
is($h->{transfer_summary}, '山田様、予約変更のご相談です', 'summary');
is($h->{transfer_result}, 'completed', 'result');
--- no_error_log
[error]



=== TEST 6: with Redis, nobody answers: back to the agent, the conversation replayed
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- sessions: 2
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial no-answer --return-scenario end-call
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
is(scalar @{ $r->{streams} }, 2, 'a second stream');
is($r->{streams}[1]{params}{twirt_transfer}, 'no-answer', 'twirt_transfer');
is($r->{streams}[1]{params}{twirt_transfer_target}, 'reception', 'the target');
is(scalar @$sims, 2, 'two sessions');
my @items = map { $_->{item} } @{ main::sent($sims->[1], 'conversation.item.create') };
my @text = map { "$_->{role}: $_->{content}[0]{text}" } @items;
ok((grep { $_ eq 'user: 予約を変更したいので、担当の方と話せますか' } @text), 'the caller replayed') or main::dump(\@text);
ok((grep { $_ eq 'assistant: 担当者におつなぎします。' } @text), 'the agent replayed') or main::dump(\@text);
like($text[-1], qr/^system: The transfer to reception did not connect \(no-answer\)/, 'then the note');
ok(@{ main::sent($sims->[1], 'response.create') } >= 1, 'the agent speaks first');
like(main::docs($r, 'action')->[1], qr{<Hangup/>}, 'the second stream ended with end_call: hang up');
my $h = main::hash($sid);
is($h->{end_reason}, 'end_call', 'the record: the second stream ended it');
is($h->{transfer_result}, 'no-answer', 'the attempt kept');
is($h->{stream_sid}, $r->{streams}[1]{stream_sid}, 'the record is the second stream\'s');
--- no_error_log
[error]



=== TEST 7: with Redis, busy: back to the agent with busy
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- sessions: 2
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial busy --return-scenario end-call
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
is($r->{streams}[1]{params}{twirt_transfer}, 'busy', 'busy');
my @items = map { $_->{item} } @{ main::sent($sims->[1], 'conversation.item.create') };
like($items[-1]{content}[0]{text}, qr/\(busy\)/, 'the note says busy');



=== TEST 8: an unknown target name: an error the model can talk about, nothing dialed
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-unknown --scenario transfer-unknown
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
my ($fco) = grep { $_->{item}{type} eq 'function_call_output' } @{ main::sent($sims->[0], 'conversation.item.create') };
like($fco->{item}{output}, qr/"error":"unknown transfer target/, 'an error output');
ok(@{ main::sent($sims->[0], 'response.create') } >= 1, 'and a response');
like(main::docs($r, 'action')->[0], qr{<Hangup/>}, 'the caller hung up: hang up, no Dial');
unlike(join('', @{ main::docs($r, 'action') }), qr/Dial/, 'never dialed');
--- error_log
refused transfer_call



=== TEST 9: a number instead of a name is refused like any unknown name
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-number --scenario transfer-number
--- check
my ($fco) = grep { $_->{item}{type} eq 'function_call_output' } @{ main::sent($sims->[0], 'conversation.item.create') };
like($fco->{item}{output}, qr/unknown transfer target/, 'refused');
unlike(join('', @{ main::docs($r, 'action') }), qr/Dial/, 'never dialed');



=== TEST 10: two nodes, one Redis: the action on node B is answered from the record
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial answered --action-base http://127.0.0.1:$TEST_NGINX_NODE_B
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
like(main::docs($r, 'action')->[0], qr{<Dial callerId="\+81300000000" timeout="20" action="https://localhost/twilio/after\?twirt=dialed&amp;call=$sid"}, 'node B dials');
is($r->{whispers}[0]{text}, '山田様、予約変更のご相談です', 'node B whispers the summary');
like(main::node_b_log(), qr/ended \(ended, transfer\): transfer, known from the call record/, 'node B knew it from the record');
like(main::node_b_log(), qr/whisper for the transfer of CallSid "$sid"/, 'the whisper was node B\'s');



=== TEST 11: the whole story, in Japanese: a booking through the tool backend, then a person, with the whisper
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    twirt_tools $TEST_NGINX_TOOLS_FILE;
    twirt_tool_uri /_tools;
    twirt_tool_secret transfer-tools-secret;
    location = /_tools { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_TOOLS_PORT/tools; }
--- call
--webhook https://localhost/twilio/voice?scenario=booking-transfer --scenario booking-transfer --dial answered
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
my ($req) = grep { ($_->{call_sid} // '') eq $sid } @{ sim_records($main::Tools) };
ok($req->{signature_ok}, 'the backend verified the signature');
is_deeply($req->{arguments}, { name => '山田太郎', date => '2026-12-03', time => '15:00' }, 'the booking, in Japanese');
my ($out) = map { $_->{item}{output} } grep { ($_->{item}{type} // '') eq 'function_call_output' && $_->{item}{output} =~ /booked/ } @{ main::sent($sims->[0], 'conversation.item.create') };
like($out, qr/予約を承りました/, "the backend's answer reached the model");
is($r->{whispers}[0]{text}, '山田太郎様、12月3日15時のご予約済み。担当者とのお話をご希望です', 'the person hears the summary');
like(main::docs($r, 'action')->[0], qr{<Number url="[^"]*twirt=whisper[^"]*"[^>]*>\+81312345678</Number>}, 'dialed the reception');
my $h = main::hash($sid);
is($h->{end_reason}, 'transfer', 'the call ended in a transfer');
is($h->{transfer_result}, 'completed', 'answered and talked');
--- no_error_log
[error]



=== TEST 12: the same call, nobody answers: back to the agent, which knows about the booking
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    twirt_tools $TEST_NGINX_TOOLS_FILE;
    twirt_tool_uri /_tools;
    twirt_tool_secret transfer-tools-secret;
    location = /_tools { internal; proxy_pass http://127.0.0.1:$TEST_NGINX_TOOLS_PORT/tools; }
--- sessions: 2
--- call
--webhook https://localhost/twilio/voice?scenario=booking-transfer --scenario booking-transfer --dial no-answer --return-scenario end-call
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
is(scalar @$sims, 2, 'a second session');
my @text = map { "$_->{item}{role}: $_->{item}{content}[0]{text}" }
           grep { ($_->{item}{type} // '') eq 'message' } @{ main::sent($sims->[1], 'conversation.item.create') };
ok((grep { $_ eq 'user: 山田太郎です。12月3日の15時に予約をお願いします' } @text), 'the booking request replayed') or main::dump(\@text);
ok((grep { $_ eq 'assistant: 12月3日15時でご予約を承りました。確認番号はA-1234です。' } @text), 'and the confirmation') or main::dump(\@text);
like($text[-1], qr/^system: The transfer to reception did not connect \(no-answer\)/, 'then the failed transfer');
ok(@{ main::sent($sims->[1], 'response.create') } >= 1, 'the agent speaks first');
--- no_error_log
[error]



=== TEST 13: an agent profile's transfers replace the configuration's targets
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- config
    twirt_parameter agent sales-team;
--- init
Twirt::Redis::redis_cli('HSET', 'twirt:agent:sales-team', 'transfers', '{"sales":{"target":"+81399999999","timeout":15},"support":"sip:support@pbx.example.com"}');
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-sales --scenario transfer-sales --dial answered
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
my ($update) = @{ main::sent($sims->[0], 'session.update') };
my ($tool) = grep { $_->{name} eq 'transfer_call' } @{ $update->{session}{tools} };
is_deeply([sort @{ $tool->{parameters}{properties}{target}{enum} }], ['sales', 'support'], "the profile's names only");
like(main::docs($r, 'action')->[0], qr{<Dial timeout="15" [^>]*><Number [^>]*>\+81399999999</Number></Dial>}, "dialed the profile's number");
is($r->{whispers}[0]{text}, '営業へのご相談です', 'whisper');
--- no_error_log
[error]



=== TEST 14: without Redis, the dial failed: the fallback verbs, the failure counted
--- call
--webhook https://localhost/twilio/voice?scenario=transfer-basic --scenario transfer-basic --dial failed
--- check
ok($r->{ok}, 'followed') or main::dump($r->{failures});
like(main::docs($r, 'dialed')->[0], qr{<Say language="ja-JP">申し訳ございません。</Say>}, 'the fallback');
like(main::http_get_status(), qr/^twirt_transfers_total\{result="failed"\} [1-9]/m, 'counted: failed');
--- no_error_log
[error]



=== TEST 15: a stream claiming to return from a transfer cannot take over a record that did not end in one
--- http_config
    twirt_redis unix:$TEST_NGINX_REDIS_SOCKET;
--- call
--webhook https://localhost/twilio/voice?scenario=end-call --scenario end-call
--- check
ok($r->{ok}, 'the first call ended') or main::dump($r->{failures});
my $first = main::hash($sid);
is($first->{end_reason}, 'end_call', 'by end_call');
my $port = Test::Nginx::Util::server_port();
my ($rc, $trec, $tout) = twilio_call("--url ws://localhost/twilio/media --connect 127.0.0.1:$port --sign-url wss://localhost/twilio/media "
                       . "--auth-token $main::Token --call-sid $sid --param twirt_transfer=no-answer "
                       . "--param scenario=silence --duration-ms 1500");
is($rc, 0, 'the stranger stream ran') or diag($tout);
my $h = main::hash($sid);
is($h->{stream_sid}, $first->{stream_sid}, 'the record is still the first stream\'s');
is($h->{end_reason}, 'end_call', 'and still says how it ended');
is($h->{status}, 'ended', 'not active again');
--- no_error_log
[alert]
