# The call board (twirt_board): the page served by this nginx, opened in
# Debian's headless Chromium (t/peers/browser.py, DevTools), while
# simulated calls run through two workers and two nodes sharing one
# Redis.  A new call shows at once; its transcript line by line, in
# Japanese, with the barge-in marked where the agent was cut off; a
# transcript line of hostile HTML stays text; the feed loses no line when
# its connection drops or nginx reloads (Last-Event-ID); the call moves to
# history with its cost; the hang-up button ends a call held by the other
# node; a campaign started from the page by uploading a Shift_JIS CSV
# fills its progress bar.  Then the feed and the API without a browser:
# replay, a bounded queue for a client that stops reading, every bad
# input.  Screenshots of each view go to $TWIRT_ARTIFACTS (default
# t/servroot-artifacts).  Ports: the server port, + 1 (TLS streams), + 2
# (a small send buffer), + 18 (node B).

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Encode ();
use File::Path qw(make_path);
use POSIX ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use IO::Handle;
use IO::Select;
use Socket qw(SOL_SOCKET SO_RCVBUF);
use JSON::PP;
use Time::HiRes qw(time sleep);
use Twirt::Browser;
use Twirt::Check;
use Twirt::Conf qw(http_conf);
use Twirt::Peers;
use Twirt::Redis;
use Test::Nginx::Socket 'no_plan';

Twirt::Browser::need_chromium();

log_level('info');
master_on();
workers(2);

our $Top = "$FindBin::Bin/..";
our $Certs = tempdir(CLEANUP => 1);
system("$Top/util/certs", $Certs) == 0 or die "util/certs failed";
$ENV{TEST_NGINX_CERTS} = $Certs;
$ENV{TEST_NGINX_TLS_PORT} = server_port() + 1;
$ENV{TEST_NGINX_BOARD} = "$Top/board";
$ENV{TEST_NGINX_SNDBUF_PORT} = server_port() + 2;

our $Sid = 'AC' . ('b0a4d0' x 5) . '01';
our $Token = 'board-auth-token-5e1';
$ENV{TEST_NGINX_ACCOUNT_SID} = $Sid;
$ENV{TEST_NGINX_TOKEN} = $Token;

$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();
our $Sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $Sim->{port};

our $Rest = twilio_rest_start('--account-sid', $Sid, '--auth-token', $Token,
                              '--caller-id', '+81300000000',
                              '--ca-file', "$Certs/ca.crt", '--cps', '50',
                              '--ring-ms', '100', '--call-ms', '1500',
                              '--scenario', 'silence');
$ENV{TEST_NGINX_REST_PORT} = $Rest->{port};

our $Port = server_port();
our $PortB = $Port + 18;
our $Base = "http://127.0.0.1:$Port/ui/";

our $Artifacts = $ENV{TWIRT_ARTIFACTS}
                 || ($ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot")
                    . '-artifacts';
make_path($Artifacts);

our $json = JSON::PP->new->utf8->canonical;
binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# the twirt directives both nodes share
sub twirt_http {
    my ($port) = @_;
    return <<"CONF";
    twirt_openai_url ws://127.0.0.1:$Sim->{port}/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_redis unix:$ENV{TEST_NGINX_REDIS_SOCKET};
    twirt_redis_timeout 10s;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_greeting "お電話ありがとうございます。さくら歯科です。";
    twirt_twilio_account_sid $Sid;
    twirt_twilio_api_url http://127.0.0.1:$Rest->{port};
    twirt_outbound_url http://127.0.0.1:$port/twilio/voice;
    twirt_outbound_status_callback http://127.0.0.1:$port/twilio/call-status;
    twirt_stream_url wss://127.0.0.1:@{[ $port + 1 ]}/twilio/media;
    twirt_campaign_cps 20;

    server {
        listen 127.0.0.1:@{[ $port + 1 ]} ssl;
        ssl_certificate $Certs/localhost.crt;
        ssl_certificate_key $Certs/localhost.key;
        location = /twilio/media { twirt_stream; }
    }
CONF
}

# what a server of either node has: the page, the board, the streams.
# Node A has the page under /ui/ (Test::Nginx has its own "location /"),
# its feed and API next to it, where the page looks for them.
sub twirt_server {
    my ($ui) = @_;
    my $page = $ui ? "location $ui/ { alias $Top/board/;"
                   : "location / { root $Top/board;";
    return <<"CONF";
    $page
        types { text/html html; text/css css; application/javascript js; }
        charset utf-8;
    }
    location $ui/board/ { allow 127.0.0.1; deny all; twirt_board; }
    location /campaigns/ {
        allow 127.0.0.1; deny all;
        twirt_campaigns;
        twirt_twilio_auth_token $Token;
    }
    location = /twilio/media { twirt_stream; }
    location = /twilio/voice {
        twirt_twiml;
        twirt_parameter scenario silence;
        twirt_parameter calltag \$twirt_param_CallSid;
    }
    location = /twilio/call-status {
        twirt_call_status;
        twirt_twilio_auth_token $Token;
    }
    location = /ping { return 200 'ok'; }
    location = /status { twirt_status; }
CONF
}

# a metric of this node, polled until $want says so (bounded)
sub metric {
    my ($name, $want) = @_;
    my $v;
    until_ok(10, sub {
        my (undef, $text) = http_get_text('/status');
        $v = $text =~ /^\Q$name\E (-?\d+)$/m ? $1 : undef;
        defined $v && (!$want || $want->($v)) });
    return $v;
}

# -- node B: another nginx, the same Redis -------------------------------------

our $NodeB = tempdir(CLEANUP => 1);

sub node_b_start {
    mkdir "$NodeB/logs";
    open my $fh, '>', "$NodeB/nginx.conf" or die $!;
    my $main = "worker_processes 2; daemon on; master_process on; "
               . "error_log logs/error.log info;"
               . ($> == 0 ? " user root;" : "");
    my $conf = http_conf(twirt_http($PortB) . "    twirt_node node-b;\n"
                         . "    server {\n        listen 127.0.0.1:$PortB;\n"
                         . twirt_server('') . "    }\n", $main);
    utf8::encode($conf);
    print $fh $conf;
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    system("$nginx -p $NodeB/ -c $NodeB/nginx.conf") == 0
        or BAIL_OUT("node B did not start");
    until_ok(10, sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$PortB") })
        or BAIL_OUT("node B does not listen");
}

sub node_b_stop {
    my $pid = _slurp("$NodeB/logs/nginx.pid") // '';
    chomp $pid;
    return unless $pid =~ /^\d+$/ && kill 0, $pid;
    kill 'QUIT', $pid;
    until_ok(10, sub { !kill 0, $pid });
}

END { node_b_stop() }

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return undef;
    local $/;
    my $s = <$fh>;
    return $s;
}

# polls $cond until true or the deadline: its last value
sub until_ok {
    my ($secs, $cond) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $v = $cond->();
        return $v if $v || time > $deadline;
        sleep 0.05;
    }
}

# a request: (status, decoded JSON or undef, raw body, raw response)
sub api {
    my ($method, $path, $body, %o) = @_;
    return http_json($method, $path, $body, port => $Port, %o);
}

# the SSE feed read raw for $secs (or until $until says so on the text)
sub sse_read {
    my (%o) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:" . ($o{port} // $o{port_ui} // $Port),
                                     Timeout => 5) or die "connect: $!";
    my $hdr = $o{last} ? "Last-Event-ID: $o{last}\r\n" : '';
    my $path = $o{port} ? '/board/events' : '/ui/board/events';
    print $sock "GET $path HTTP/1.1\r\nHost: localhost\r\n$hdr\r\n";
    my $buf = '';
    my $deadline = time + ($o{secs} // 5);
    my $sel = IO::Select->new($sock);
    while (time < $deadline) {
        # read as soon as something comes, as a browser does
        next unless $sel->can_read($deadline - time);
        my $n = sysread($sock, my $chunk, 1 << 20);
        last unless $n;
        # (the condition sees the raw end of what came, up to the end of
        # its last whole message: one event is one chunk, and a reader that
        # decodes all it has at each read falls behind the feed)
        $buf .= $chunk;
        my $end = rindex($buf, "\n\n") + 2;
        my $from = $end > 400_000 ? $end - 400_000 : 0;
        last if $o{until} && $end > 1 && $o{until}->(substr($buf, $from, $end - $from));
    }
    close $sock;
    return dechunk($buf);
}

# the body of a chunked response, as far as it came
sub dechunk {
    my ($raw) = @_;
    my ($head, $rest) = split /\r\n\r\n/, $raw, 2;
    return '' unless defined $rest;
    return $rest unless $head =~ /Transfer-Encoding: chunked/i;
    my $out = '';
    while ($rest =~ s/^([0-9a-f]+)\r\n//i) {
        my $len = hex $1;
        last if $len == 0 || length($rest) < $len;
        $out .= substr($rest, 0, $len, '');
        $rest =~ s/^\r\n//;
    }
    return $out;
}

# SSE messages: [{ id, event, data }]
sub sse_messages {
    my ($text) = @_;
    my @m;
    for my $block (split /\n\n/, $text) {
        my %m;
        for my $line (split /\n/, $block) {
            $m{$1} = $2 if $line =~ /^(id|event|data|retry): ?(.*)$/;
        }
        push @m, \%m if %m;
    }
    return @m;
}

# a Twilio call into a node, in the background: its pid and record file
sub call_start {
    my (%o) = @_;
    my $dir = tempdir(CLEANUP => 1);
    my $port = $o{port} // $Port;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDOUT, '>', "$dir/out";
        open STDERR, '>&', \*STDOUT;
        { exec '/usr/bin/python3', "$Top/t/peers/twilio_sim.py",
             '--url', "ws://127.0.0.1:$port/twilio/media",
             '--record', "$dir/call.jsonl", '--call-sid', $o{sid},
             '--scenario', $o{scenario},
             '--param', "scenario=$o{scenario}", '--param', "calltag=$o{sid}",
             '--param', "from=$o{from}", '--param', 'to=+81312345678',
             '--param', 'direction=inbound', '--param', "agent=$o{agent}",
             @{ $o{args} // [] }; }
        POSIX::_exit(127);
    }
    return { pid => $pid, dir => $dir };
}

sub call_wait {
    my ($c) = @_;
    waitpid($c->{pid}, 0);
    my $rc = $? >> 8;
    my @r = map { eval { $json->decode($_) } // () }
            split /\n/, _slurp("$c->{dir}/call.jsonl") // '';
    my ($summary) = grep { ($_->{dir} // '') eq 'summary' } @r;
    return ($rc, $summary // {});
}

sub record {
    my ($sid) = @_;
    my %h = redis_cli('--raw', 'HGETALL', "twirt:call:$sid");
    utf8::decode($_) for values %h;
    return \%h;
}

sub shot {
    my ($b, $name) = @_;
    my $r = $b->screenshot("$Artifacts/board-$name.png");
    ok($r->{bytes} > 10000, "screenshot $name ($r->{bytes} bytes)");
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('no_error_log', "exited on signal\n[alert]\n[emerg]\n")
        unless defined $block->no_error_log;
    my $http = twirt_http($Port);
    utf8::encode($http);
    $block->set_value('http_config', $http . ($block->http_config // ''));
    my $server = twirt_server('/ui');
    my $extra = $block->board // '';
    chomp $extra;
    $server =~ s/twirt_board;/twirt_board; $extra/;
    $block->set_value('config', $server . ($block->config // ''));
});

node_b_start();

check_sections();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a call live on the page: it shows at once, its transcript line by line in Japanese, the barge-in marked, hostile HTML as text; the feed drops and nginx reloads mid-call and no line is lost; it moves to history with its cost
--- check
my $sid = 'CA' . 'b0a4d1' x 5 . '01';
my $b = Twirt::Browser->new;
$b->goto($main::Base);
$b->wait_ok('document.querySelector("#conn").dataset.state === "open"', 10, 'the feed is open');
my $call = main::call_start(sid => $sid, scenario => 'board', from => '+819012340001',
                            agent => 'clinic');
# within a second of the call's start (the first media frame, 20 ms in)
main::until_ok(10, sub { -s "$call->{dir}/call.jsonl" && main::_slurp("$call->{dir}/call.jsonl") =~ /"event": "media"/ });
my $row = qq{#live-calls tr.call[data-call-sid="$sid"]};
$b->wait_ok("document.querySelector('$row')", 1, 'the new call is on the live table within 1 s');
$b->wait_ok("document.querySelector('$row .agent').textContent === 'clinic'", 5, 'with its agent');
is($b->eval("document.querySelector('$row .caller').textContent"), '+81 90-****-0001', 'the caller, masked');
$b->wait_ok("document.querySelector('$row .duration').textContent.match(/^0:0[1-9]\$/)", 5, 'the duration ticks');
main::shot($b, 'live');
$b->click($row);
$b->wait_ok("document.querySelector('#call') && document.querySelector('#call').dataset.callSid === '$sid'", 5, 'a click opens the call');
$b->wait_ok('document.querySelector("#transcript .line.agent")', 5, 'the greeting is shown');

# the feed's connection drops (and cannot come back) while the caller speaks
my $before = $b->eval('window.twirtBoard.opens');
$b->offline(1);
my $dropped = $b->drop_sse;
ok(@{ $dropped->{dropped} }, 'the feed was cut');
main::until_ok(10, sub { grep { $_->{type} eq 'transcript' && $_->{role} eq 'caller' } @{ twirt_events($sid) } });
my $missed = scalar grep { $_->{type} eq 'transcript' } @{ twirt_events($sid) };
is($b->eval('document.querySelectorAll("#transcript .line.caller").length'), 0, 'the caller\'s line came while the page was cut off');
$b->offline(0);
$b->wait_ok("window.twirtBoard.opens > $before", 10, 'the feed reconnects by itself');
$b->wait_ok("document.querySelectorAll('#transcript .line.caller, #transcript .line.agent').length >= $missed", 5, 'what was missed is replayed');
is($b->eval('window.twirtBoard.resets'), 0, 'from the stream, not by reloading the page');

# nginx reloads: the old workers close the feed, the browser comes back to the new ones
$before = $b->eval('window.twirtBoard.opens');
main::nginx_reload();
$b->wait_ok("window.twirtBoard.opens > $before", 10, 'after a reload the feed reconnects');
$b->wait_ok('document.querySelector("#transcript .line.agent.cut")', 10, 'the barge-in is marked on the agent\'s line');
main::shot($b, 'call');

my ($rc, $sum) = main::call_wait($call);
is($rc, 0, 'the call went through');
$b->wait_ok('document.querySelector("#call").dataset.status === "ended"', 10, 'the page says the call ended');
my @lines = @{ $b->eval(q{[...document.querySelectorAll('#transcript .line.caller, #transcript .line.agent')].map(l => (l.classList.contains('caller') ? 'caller: ' : 'agent: ') + l.querySelector('.text').textContent)}) };
is_deeply(\@lines, [
    'agent: お電話ありがとうございます。さくら歯科です。',
    'caller: 予約を変更したいのですが',
    'agent: かしこまりました。ご予約番号と、ご希望の日時を順番にお伺いいたします。まずはご予約番号をお願いいたします。',
    'caller: <script>window.pwned=1</script><img src=x onerror="window.pwned=2">番号は一二三四五です',
    'agent: ご予約番号、一二三四五ですね。ご希望の日時をどうぞ。',
    'caller: 明日の午後三時でお願いします',
    'agent: 明日の午後三時に変更いたしました。失礼いたします。',
], 'every line, once, in order, Japanese intact') or diag(Test::More::explain(\@lines));
my $ids = $b->eval(q{[...document.querySelectorAll('#transcript .line')].map(l => l.dataset.eventId).filter(Boolean)});
my %seen;
is(scalar(grep { $seen{$_}++ } @$ids), 0, 'no event shown twice');
my $cut = $b->eval(q{(() => { const l = document.querySelector('#transcript .line.agent.cut'); return l && { heard: l.querySelector('.heard').textContent, unheard: l.querySelector('.unheard').textContent, text: l.querySelector('.text').textContent }; })()});
ok($cut && length $cut->{heard} && length $cut->{unheard}, 'cut where the caller came in: heard and unheard parts');
like($cut->{text} // '', qr/^かしこまりました。/, 'on the long answer');
my ($ev) = grep { $_->{type} eq 'barge_in' } @{ twirt_events($sid) };
ok($ev && $ev->{heard_ms} < $ev->{audio_ms}, "the barge-in event: $ev->{heard_ms} of $ev->{audio_ms} ms heard");
is($b->eval('typeof window.pwned'), 'undefined', 'the hostile line ran nothing');
is($b->eval('document.querySelectorAll("#transcript script, #transcript img").length'), 0, 'and made no element');
is_deeply($b->dialogs, [], 'no dialog');
my $rec = main::record($sid);
my $cost = sprintf '$%.4f', $rec->{cost_usd};
$b->wait_ok("document.querySelector('#call-summary').textContent.includes('$cost')", 5, "the cost in the summary ($cost)");
main::shot($b, 'call-ended');
$b->wait_ok("!document.querySelector('$row')", 5, 'the call left the live table');
$b->eval("location.hash = '#/history'");
my $hrow = qq{#history-calls tr.call[data-call-sid="$sid"]};
$b->wait_ok("document.querySelector('$hrow')", 5, 'the call is in the history');
is($b->eval("document.querySelector('$hrow .cost').textContent"), $cost, 'with its cost');
like($b->eval("document.querySelector('$hrow .outcome').textContent"), qr/stop|ended/, 'and its outcome');
main::shot($b, 'history');
$b->eval("location.hash = '#/charts'");
$b->wait_ok('document.querySelectorAll("#chart-calls rect, #chart-calls path, #chart-calls line").length > 0', 5, 'the charts are drawn');
main::shot($b, 'charts');
my @outside = grep { !m{^(http://127\.0\.0\.1:$main::Port/|data:|about:)} } @{ $b->requests };
is_deeply(\@outside, [], 'nothing was requested from anywhere but this nginx');
is_deeply($b->eval('window.twirtBoard.errors'), [], 'no error in the page');
$b->close;



=== TEST 2: two nodes, one Redis: a call held by node B is live on node A's page, and its hang-up button ends it through the call control
--- check
my $sid = 'CA' . 'b0a4d2' x 5 . '02';
my $b = Twirt::Browser->new;
$b->goto($main::Base);
$b->wait_ok('document.querySelector("#conn").dataset.state === "open"', 10, 'the feed is open on node A');
my $call = main::call_start(sid => $sid, port => $main::PortB, scenario => 'silence',
                            from => '+819012340002', agent => 'support',
                            args => ['--duration-ms', '30000']);
my $row = qq{#live-calls tr.call[data-call-sid="$sid"]};
$b->wait_ok("document.querySelector('$row')", 10, 'node B\'s call is on node A\'s page');
is(main::record($sid)->{node}, 'node-b', 'the record says node B');
$b->click($row);
$b->wait_ok('document.querySelector("#transcript .line.agent")', 10, 'its greeting');
$b->wait_ok('!document.querySelector("#hangup").disabled', 5, 'the hang-up button is ready');
$b->click('#hangup');
my ($rc, $sum) = main::call_wait($call);
is($sum->{close}{by}, 'gateway', 'node B closed the stream');
ok($sum->{duration_ms} < 29000, "before the caller hung up ($sum->{duration_ms} ms)");
main::until_ok(10, sub { (main::record($sid)->{end_reason} // '') eq 'hangup' });
is(main::record($sid)->{end_reason}, 'hangup', 'ended by the hang-up');
$b->wait_ok('document.querySelector("#call").dataset.status === "ended"', 10, 'the page says so');
$b->wait_ok('document.querySelector("#hangup").disabled', 5, 'and the button is off');
my @c = grep { ($_->{type} // '') eq 'control' } @{ redis_stream_entries("twirt:call:$sid:events") };
is($c[0]{action}, 'hangup', 'a control event in the timeline');
$b->close;

# node B's own page sees node A's calls too: its history has both
my ($st, $h) = main::api('GET', '/board/calls?limit=10', undef, port => $main::PortB);
my %sids = map { $_->{call_sid} => $_->{node} } @{ $h->{calls} };
is($sids{$sid}, 'node-b', 'node B lists its own call');
ok(exists $sids{'CA' . 'b0a4d1' x 5 . '01'}, 'and node A\'s');



=== TEST 3: a campaign started from the page: a Shift_JIS CSV uploaded as it is, its progress bar moves to 100%, its outcomes drawn
--- check
my $b = Twirt::Browser->new;
$b->goto("${main::Base}#/campaigns");
$b->wait_ok('document.querySelector("#campaign-form") && !document.querySelector("#cf-submit").disabled', 10, 'the campaign form, ready once the page knows where the campaigns are');
my $csv = "$main::Certs/customers.csv";
{
    open my $fh, '>:raw', $csv or die;
    my $text = "電話番号,name\r\n03-2000-0001,山田 太郎\r\n03-2000-0002,佐藤 花子\r\n03-2000-0003,鈴木 一郎\r\n03-2000-0004,高橋 美咲\r\n";
    print $fh Encode::encode('cp932', $text);
    close $fh;
}
$b->type('#cf-name', '12月の予約確認');
$b->type('#cf-from', '03-0000-0000');
$b->type('#cf-cps', '1', clear => 1);
$b->type('#cf-concurrency', '4', clear => 1);
$b->files('#cf-file', $csv);
$b->click('#cf-submit');
$b->wait_ok('document.querySelector("section.campaign")', 30, 'the campaign is listed')
    or diag('the form said: ' . $b->eval('document.querySelector("#cf-result").textContent'));
my $id = $b->eval('document.querySelector("section.campaign").dataset.campaignId');
like($id, qr/^c[0-9a-f]{16}$/, "its id ($id)");
my ($st, $s) = main::api('GET', "/campaigns/$id");
is($s->{name}, '12月の予約確認', 'its name, intact');
is($s->{rows}, 4, 'the four rows of the Shift_JIS file');
$b->wait_ok(qq{(() => { const p = document.querySelector('section.campaign[data-campaign-id="$id"] .progress'); return p && Number(p.dataset.percent) > 0 && Number(p.dataset.percent) < 100; })()}, 20, 'the bar moves');
main::shot($b, 'campaign-running');
$b->wait_ok(qq{document.querySelector('section.campaign[data-campaign-id="$id"] .progress').dataset.percent === '100'}, 60, 'the bar reaches 100%');
$b->wait_ok(qq{document.querySelector('section.campaign[data-campaign-id="$id"]').dataset.status === 'finished'}, 10, 'finished');
is($b->eval(qq{document.querySelector('section.campaign[data-campaign-id="$id"] .bar').style.width}), '100%', 'the bar is full');
ok($b->eval(qq{document.querySelectorAll('section.campaign[data-campaign-id="$id"] svg.chart-outcomes rect, section.campaign[data-campaign-id="$id"] svg.chart-outcomes path').length > 0}), 'its outcomes drawn');
(undef, $s) = main::api('GET', "/campaigns/$id");
is($s->{outcomes}{completed}, 4, 'all four answered');
main::shot($b, 'campaigns');
is_deeply($b->eval('window.twirtBoard.errors'), [], 'no error in the page');
$b->close;



=== TEST 4: the feed without a browser: a new client gets hello and what follows; Last-Event-ID replays exactly what came after it; an id the stream no longer has, or garbage, gets a reset
--- check
my $key = 'twirt:events:stream';
my @m = main::sse_messages(main::sse_read(secs => 3, until => sub { $_[0] =~ /event: hello/ }));
is($m[0]{retry}, 1000, 'a reconnect in a second');
is($m[1]{event}, 'hello', 'hello');
my $last = $json->decode($m[1]{data})->{last};
like($last, qr/^\d+-\d+$/, "with the last id ($last)");
is($m[1]{id}, $last, 'as its id: a browser that reconnects before any event says where it was');
my @ids = map { (redis_cli('--raw', 'XADD', $key, '*', 'j', qq({"type":"note","call_sid":"CAx","n":$_})))[0] } 1 .. 5;
my $text = main::sse_read(last => $ids[1], secs => 5, until => sub { $_[0] =~ /"n":5/ });
@m = grep { $_->{id} } main::sse_messages($text);
is_deeply([map { $_->{id} } @m], [@ids[2 .. 4]], 'Last-Event-ID: the three after it, in order');
is($json->decode($m[0]{data})->{n}, 3, 'as they were written');
# an id the stream no longer has (trimmed): a reset, then what is still there
$text = main::sse_read(last => '1-0', secs => 5, until => sub { $_[0] =~ /"n":5\b/ });
@m = main::sse_messages($text);
is($m[1]{event}, 'reset', 'an id trimmed from the stream: a reset (the page reloads)') or diag $text;
is($m[1]{id}, '1-0', '  at that id');
my @after = map { $_->{id} } grep { !$_->{event} && $_->{id} } @m[2 .. $#m];
is_deeply(\@after, [sort { my @x = split /-/, $a; my @y = split /-/, $b; $x[0] <=> $y[0] || $x[1] <=> $y[1] } @after], '  then the events still there, in order') or diag "@after";
ok((grep { ($_->{id} // '') eq $ids[4] } @m), '  up to the newest');
# an id after everything the stream has (a Redis that lost it and began again)
$text = main::sse_read(last => '99999999999999-0', secs => 3, until => sub { $_[0] =~ /event: hello/ });
@m = main::sse_messages($text);
is_deeply([map { $_->{event} // 'data' } @m[1, 2]], ['reset', 'hello'], 'an id after the whole stream: reset, then the feed from now') or diag $text;
# Redis loses the stream while a browser is on it: a reset, and the feed goes on
my $hello = File::Temp::tempdir(CLEANUP => 1) . '/hello';
my $gone = fork // die;
if (!$gone) {
    main::until_ok(10, sub { -e $hello });
    redis_cli('DEL', $key);
    redis_cli('XADD', $key, '*', 'j', '{"type":"note","call_sid":"CAx","n":99}');
    POSIX::_exit(0);
}
$text = main::sse_read(secs => 10, until => sub {
    if ($_[0] =~ /event: hello/ && !-e $hello) { open my $f, '>', $hello; close $f }
    $_[0] =~ /"n":99/ });
waitpid $gone, 0;
@m = main::sse_messages($text);
is_deeply([map { $_->{event} // 'data' } @m[1 .. $#m]], ['hello', 'reset', 'data'], 'the stream lost under a browser: hello, reset, then the new event') or diag $text;
@ids = map { (redis_cli('--raw', 'XADD', $key, '*', 'j', qq({"type":"note","call_sid":"CAx","n":$_})))[0] } 1 .. 5;
# one event larger than twirt_board_queue (256k) still goes, whole
my $big = 'x' x (300 * 1024);
# (the value through redis-cli's stdin: too long for an argument)
open my $xadd, '|-', 'redis-cli', '-s', $ENV{TEST_NGINX_REDIS_SOCKET}, '-x', 'XADD', $key, '*', 'j'
    or die "redis-cli: $!";
print $xadd qq({"type":"note","call_sid":"CAx","n":6,"pad":"$big"});
close $xadd or die "redis-cli XADD failed";
$text = main::sse_read(last => $ids[4], secs => 10, until => sub { $_[0] =~ /"n":6,"pad":"x+"\}\n\n/ });
@m = grep { $_->{id} } main::sse_messages($text);
is(scalar @m, 1, 'an event over the queue\'s bound');
is(length($json->decode($m[0]{data} // '{}')->{pad} // ''), 300 * 1024, 'arrives whole');
# a browser back with the newest id, alone on the feed: only what is new
my ($newest) = redis_cli('--raw', 'XADD', $key, '*', 'j', '{"type":"note","call_sid":"CAx","n":7}');
my $pid = fork // die;
if (!$pid) {
    # the new event, once the browser is on the feed (it has no hello)
    main::until_ok(10, sub { (main::metric('twirt_board_clients') // 0) == 1 });
    redis_cli('XADD', $key, '*', 'j', '{"type":"note","call_sid":"CAx","n":8}');
    POSIX::_exit(0);
}
$text = main::sse_read(last => $newest, secs => 10, until => sub { $_[0] =~ /"n":8/ });
waitpid $pid, 0;
@m = grep { $_->{id} } main::sse_messages($text);
is_deeply([map { $json->decode($_->{data})->{n} } @m], [8], 'a browser that missed nothing gets the new event and nothing older');
# an entry with a raw CR (no writer of twirt's makes one) is not passed on
redis_cli('XADD', $key, '*', 'j', qq({"type":"note","call_sid":"CAx","n":9,"x":"a\rid: 1\revent: forged"}));
redis_cli('XADD', $key, '*', 'j', '{"type":"note","call_sid":"CAx","n":10}');
$text = main::sse_read(last => $newest, secs => 10, until => sub { $_[0] =~ /"n":10/ });
@m = grep { $_->{id} } main::sse_messages($text);
is_deeply([map { $json->decode($_->{data})->{n} } @m], [8, 10], 'an entry with a CR is skipped, the feed goes on');
unlike($text, qr/forged/, 'nothing of it was sent');
for my $garbage ('1-0; DROP', '-1', '12', 'x' x 300) {
    $text = main::sse_read(last => $garbage, secs => 3, until => sub { $_[0] =~ /event: hello/ });
    @m = main::sse_messages($text);
    is_deeply([map { $_->{event} // 'data' } @m[1, 2]], ['reset', 'hello'], "garbage (\"" . substr($garbage, 0, 12) . "\"): reset, then the feed");
}



=== TEST 5: the feed fans out to many browsers; one that stops reading is closed and logged once its queue (twirt_board_queue) is full, the others get everything
--- http_config
    # a small socket buffer: what the kernel holds does not hide the queue
    server {
        listen 127.0.0.1:$TEST_NGINX_SNDBUF_PORT sndbuf=16k;
        location /ui/board/ { twirt_board; twirt_board_queue 128k; }
    }
--- check
my $key = 'twirt:events:stream';
# a client that reads nothing, with a small receive buffer
socket(my $stuck, Socket::PF_INET(), Socket::SOCK_STREAM(), 0) or die "socket: $!";
setsockopt($stuck, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4096) or die "setsockopt: $!";
connect($stuck, Socket::pack_sockaddr_in($main::Port + 2, Socket::inet_aton('127.0.0.1'))) or die "connect: $!";
$stuck->autoflush(1);
print $stuck "GET /ui/board/events HTTP/1.1\r\nHost: localhost\r\n\r\n";
# ten that read, each saying when it has its hello
my $ready = File::Temp::tempdir(CLEANUP => 1);
my @readers;
for my $i (1 .. 10) {
    my $pid = open my $fh, '-|' // die;
    if (!$pid) {
        my $t = main::sse_read(secs => 30, port_ui => $main::Port + 2, until => sub {
            if ($_[0] =~ /event: hello/ && !-e "$ready/$i") { open my $r, '>', "$ready/$i"; close $r }
            $_[0] =~ /"n":300\b/ });
        print scalar(grep { ($_->{data} // '') =~ /"type":"bulk"/ } main::sse_messages($t)), "\n";
        STDOUT->flush;
        POSIX::_exit(0);
    }
    push @readers, $fh;
}
ok(main::until_ok(10, sub { my @r = glob "$ready/*"; @r == 10 }), 'ten clients on the feed');
is(main::metric('twirt_board_clients', sub { $_[0] == 11 }), 11, 'twirt_board_clients counts them and the one that reads nothing');
my $pad = 'あ' x 1000;
utf8::encode($pad);
for my $n (1 .. 300) {
    redis_cli('--raw', 'XADD', $key, '*', 'j', qq({"type":"bulk","call_sid":"CAx","n":$n,"pad":"$pad"}));
}
my @got = map { my $l = <$_>; chomp $l; $l } @readers;
is_deeply(\@got, [(300) x 10], 'each reading client got all 300 events (900 KB)');
ok(main::until_ok(10, sub { error_log_text() =~ /twirt: board: a browser is not reading, \d+ bytes unsent \(twirt_board_queue 131072\): closed/ }), 'the one that stopped reading is closed and logged');
IO::Handle::blocking($stuck, 0);
my $eof = main::until_ok(10, sub { my $n = sysread($stuck, my $buf, 1 << 20); defined $n && $n == 0 });
ok($eof, 'its connection is closed');
is(main::metric('twirt_board_slow_total'), 1, 'twirt_board_slow_total counts it');
is(main::metric('twirt_board_clients', sub { $_[0] == 0 }), 0, 'no client left on the feed');
--- no_error_log
[alert]
[emerg]



=== TEST 6: the API: the active calls, the history searched by number (any form), CallSid, agent and day, paged; a call's timeline; the stats; every bad input refused with what is wrong
--- check
my $a = 'CA' . 'b0a4d1' x 5 . '01';
my $bb = 'CA' . 'b0a4d2' x 5 . '02';
my ($st, $r) = main::api('GET', '/ui/board/calls/active');
is($st, 200, 'active calls');
is_deeply($r->{calls}, [], 'none now');
($st, $r) = main::api('GET', '/ui/board/calls?q=090-1234-0001');
is_deeply([map { $_->{call_sid} } @{ $r->{calls} }], [$a], 'by number, as written in Japan');
($st, $r) = main::api('GET', '/ui/board/calls?q=%2B819012340002');
is_deeply([map { $_->{call_sid} } @{ $r->{calls} }], [$bb], 'by number, E.164');
($st, $r) = main::api('GET', '/ui/board/calls?q=support');
is_deeply([map { $_->{call_sid} } @{ $r->{calls} }], [$bb], 'by agent');
($st, $r) = main::api('GET', "/ui/board/calls?q=$a");
is_deeply([map { $_->{call_sid} } @{ $r->{calls} }], [$a], 'by CallSid');
is($r->{next}, undef, 'no next page');
my $now = time;
($st, $r) = main::api('GET', "/ui/board/calls?from=@{[ int($now - 3600) ]}&to=@{[ int($now + 60) ]}&limit=1");
is(scalar @{ $r->{calls} }, 1, 'a day, one per page');
ok(defined $r->{next}, 'with the next page');
my $first = $r->{calls}[0]{call_sid};
($st, $r) = main::api('GET', "/ui/board/calls?from=@{[ int($now - 3600) ]}&before=$r->{next}&limit=200");
ok(@{ $r->{calls} } >= 2, 'the next page: the older calls');
ok(!grep({ $_->{call_sid} eq $first } @{ $r->{calls} }), 'not the first again');
# calls that started in the same millisecond: paged one by one, each once
for my $n (1 .. 3) {
    redis_cli('HSET', "twirt:call:CA0000000000000000000000000000eq0$n", 'status', 'ended');
    redis_cli('ZADD', 'twirt:calls:history', '5000.25', "CA0000000000000000000000000000eq0$n");
}
my (@paged, $cursor);
for my $page (1 .. 5) {
    my $q = '/ui/board/calls?from=4000&to=6000&limit=1' . (defined $cursor ? "&before=$cursor" : '');
    ($st, $r) = main::api('GET', $q);
    push @paged, map { $_->{call_sid} } @{ $r->{calls} };
    $cursor = $r->{next};
    last unless defined $cursor;
    $cursor =~ s/:/%3A/;
}
is_deeply([sort @paged], [map { "CA0000000000000000000000000000eq0$_" } 1 .. 3], 'three calls of one time, paged one by one: each once') or diag("@paged");
($st, $r) = main::api('GET', '/ui/board/calls?from=1&to=1000');
is_deeply($r->{calls}, [], 'a day with no calls');
($st, $r) = main::api('GET', "/ui/board/calls/$a");
is($r->{call}{call_sid}, $a, 'a call');
my @types = map { $_->{type} } @{ $r->{events} };
is($types[0], 'state', 'its timeline from the start');
ok((grep { $_ eq 'barge_in' } @types) && (grep { $_ eq 'transcript' } @types), 'with its transcript and barge-in');
is($types[-1], 'state', 'to the end');
($st, $r) = main::api('GET', '/ui/board/stats');
is($st, 200, 'stats');
my $calls = 0;
$calls += $_->[1] for @{ $r->{calls_per_minute} };
ok($calls >= 3, "calls per minute count the calls ($calls)");
my $ended = 0;
$ended += $_->{count} for @{ $r->{durations} };
ok($ended >= 3, "durations count the ended calls, once each ($ended)");
is(scalar @{ $r->{durations} }, 7, 'in seven buckets');
ok($r->{cost_per_hour}[-1][1] > 0, 'cost this hour');
($st, $r) = main::api('GET', '/ui/board/config');
is_deeply($r, { campaigns => '/campaigns/', node => $r->{node}, redis => JSON::PP::true }, 'config: where the campaigns are');

for my $bad (['GET', '/ui/board/calls?q=%3Cscript%3E', 400, qr/phone number, a CallSid or an agent/],
             ['GET', '/ui/board/calls?q=' . ('1' x 70), 400, qr/too long/],
             ['GET', '/ui/board/calls?limit=0', 400, qr/limit is 1 to 200/],
             ['GET', '/ui/board/calls?limit=201', 400, qr/limit/],
             ['GET', '/ui/board/calls?from=yesterday', 400, qr/seconds/],
             ['GET', '/ui/board/calls?before=1e9', 400, qr/seconds/],
             ['GET', '/ui/board/calls?from=1.2.3', 400, qr/seconds/],
             ['GET', '/ui/board/calls?before=12:CA%3Cx%3E', 400, qr/"next" of the last page/],
             ['GET', '/ui/board/calls/CA%3Cx%3E', 400, qr/CallSid/],
             ['GET', '/ui/board/calls/CA' . '0' x 32, 404, qr/no record/],
             ['POST', '/ui/board/calls/CA' . '0' x 32 . '/hangup', 404, qr/no record/],
             ['POST', "/ui/board/calls/$a/hangup", 409, qr/ended/],
             ['GET', "/ui/board/calls/$a/hangup", 405, qr/POST/],
             ['POST', '/ui/board/events', 405, qr/GET/],
             ['GET', '/ui/board/nothing', 404, qr/no such/],
             ['GET', '/ui/board/calls/a/b/c', 404, qr/no such/]) {
    my ($method, $path, $want, $re) = @$bad;
    my ($s, $j) = main::api($method, $path);
    is($s, $want, "$method $path: $want");
    like($j->{error}{message} // '', $re, "  saying what is wrong");
}



=== TEST 7: nginx -t: a queue too small for one buffer, twirt_board with an argument or on a location that has a handler already
--- check
for my $case (["twirt_board_queue 512;", qr/"twirt_board_queue" must be at least 1024/],
              ["twirt_board_queue lots;", qr/"twirt_board_queue" directive invalid value/],
              ["twirt_board on;", qr/invalid number of arguments in "twirt_board"/],
              ["twirt_stream;", qr/"twirt_board" directive is duplicate or conflicts with another content handler/]) {
    my ($extra, $re) = @$case;
    my ($rc, $out) = Twirt::Conf::nginx_t(Twirt::Conf::http_conf(<<"CONF"));
    twirt_redis unix:/nonexistent/redis.sock;
    server {
        listen 127.0.0.1:1;
        location /board/ { $extra twirt_board; }
    }
CONF
    isnt($rc, 0, "$extra: refused");
    like($out, $re, '  saying why');
}
