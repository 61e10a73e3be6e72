# Campaigns at scale (issue 13's acceptance test): a 200-row campaign at 5
# calls per second and 20 concurrent, with a mix of outcomes and retries,
# dialed by two nginx instances (two workers each) sharing one Redis,
# then the same with one instance killed mid-campaign (SIGKILL, master and
# workers), with Redis restarted mid-campaign (an append-only file keeps
# its data), and with a calling window that opens a few seconds after the
# campaign starts.  Twilio is t/peers/twilio_rest.py, whose record of API
# requests and calls is the ground truth: the pacing measured on its
# create requests, no row dialed twice (a row is dialed again only as a
# retry of a busy, no-answer or failed call, never while an earlier call of
# it is live, never more than 1 + retries times), every row final with the
# outcome the stand-in's last call of it had, the results and their CSV.
# Ports: the server port (node A) and + 1 (its wss server for streams),
# + 18 and + 19 for node B.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use POSIX ();
use Time::HiRes qw(time sleep);
use Twirt::Peers;
use Twirt::Check;
use Twirt::Conf qw(http_conf);
use Twirt::Redis;
use Twirt::StandIn;
use Test::Nginx::Socket 'no_plan';

master_on();
workers(2);
log_level('info');

binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

our $Sid = 'AC' . ('5ca1e' x 6) . '01';
our $Token = 'campaign-scale-token-3b7c';
our $From = '+81300000000';
our $CPS = 5;
our $Concurrency = 20;
our $Retries = 1;
our $RetryDelay = 2;
our $json = JSON::PP->new->utf8->canonical;

# -- the numbers and what each callee does ------------------------------------
#
# Row i of a scenario (1-based) calls +81 3 SS00 iiii; i mod 20 says what
# the callee does: 0-13 answers (70 %), 14 busy, 15 no answer, 16 failed,
# 17 an answering machine, 18 busy then answers the retry, 19 no answer
# then answers the retry.  Two rows of the main campaign are numbers
# Twilio refuses (21217).  The stand-in's "attempts" entries of a number
# are its successive calls.

our %Prefix = (main => '5000', kill => '6000', redis => '7000', window => '8000');
our %Size = (main => 200, kill => 60, redis => 60, window => 40);
our %Refused = map { +"+8135000$_" => 1 } qw(0007 0107);
my @names = qw(山田太郎 佐藤花子 鈴木一郎 高橋美咲 田中健太 渡辺直子);

sub e164 { my ($s, $i) = @_; return sprintf "+813%s%04d", $Prefix{$s}, $i }

sub kind_of {
    my ($s, $i) = @_;
    return 'refused' if $Refused{ e164($s, $i) };
    my $m = $i % 20;
    return $m <= 13 ? 'completed' : (qw(busy no_answer failed voicemail
                                        busy_then_completed
                                        no_answer_then_completed))[$m - 14];
}

# the outcome and the number of create requests a kind ends with
our %Expect = (
    completed => ['completed', 1], busy => ['busy', 2],
    no_answer => ['no_answer', 2], failed => ['failed', 2],
    voicemail => ['voicemail', 1], busy_then_completed => ['completed', 2],
    no_answer_then_completed => ['completed', 2],
);

sub row_vars {
    my ($s, $i) = @_;
    return { name => $names[$i % @names] . $i,
             memo => $i % 10 == 0 ? "予約の確認, \"至急\" $i" : "第${i}回のご案内" };
}

{
    my %script;
    for my $s (keys %Prefix) {
        for my $i (1 .. $Size{$s}) {
            my $k = kind_of($s, $i);
            my $e = { ring_ms => 200 };
            # the killed node's calls last long enough to be in flight
            # (and concurrency, not the rate, is then what holds the pace)
            $e->{call_ms} = 4000 if $s eq 'kill';
            if ($k eq 'refused') { $e->{error} = 21217 }
            elsif ($k eq 'voicemail') { $e->{outcome} = 'machine' }
            elsif ($k =~ /^(busy|no_answer)_then_completed$/) {
                (my $first = $1) =~ tr/_/-/;
                $e->{attempts} = [{ outcome => $first }, { outcome => 'completed' }];
            } else { ($e->{outcome} = $k) =~ tr/_/-/ }
            $script{ e164($s, $i) } = $e;
        }
    }
    my $dir = tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/script.json" or die $!;
    print $fh $json->encode(\%script);
    close $fh;
    $ENV{TWIRT_SCALE_SCRIPT} = "$dir/script.json";
}

# -- the peers -----------------------------------------------------------------

our $Certs = tempdir(CLEANUP => 1);
system("$FindBin::Bin/../util/certs", $Certs) == 0 or die "util/certs failed";

$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start_aof();
our $Sim = sim_start();
our $Rest = twilio_rest_start('--account-sid', $Sid, '--auth-token', $Token,
                              '--caller-id', $From, '--cps', '50',
                              '--ca-file', "$Certs/ca.crt",
                              '--script', $ENV{TWIRT_SCALE_SCRIPT},
                              '--ring-ms', '200', '--call-ms', '1500',
                              '--amd-ms', '300', '--scenario', 'silence');
our $PortA = server_port();
our $PortB = $PortA + 18;

# what both nodes have: each is its own public URL (streams over wss on
# the port + 1)
sub node_http {
    my ($port) = @_;
    my $tls = $port + 1;
    my $conf = <<"CONF";
    twirt_openai_url ws://127.0.0.1:$Sim->{port}/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_redis unix:$ENV{TEST_NGINX_REDIS_SOCKET};
    twirt_redis_timeout 10s;
    twirt_instructions "お客様は{{name}}様です。ご用件: {{memo}}";
    twirt_greeting "{{name}}様、{{clinic}}です。";
    twirt_twilio_account_sid $Sid;
    twirt_twilio_auth_token $Token;
    twirt_twilio_api_url http://127.0.0.1:$Rest->{port};
    twirt_outbound_url http://127.0.0.1:$port/twilio/voice;
    twirt_outbound_status_callback http://127.0.0.1:$port/twilio/call-status;
    twirt_stream_url wss://127.0.0.1:$tls/twilio/media;
    twirt_campaign_cps $CPS;
    twirt_campaign_lease 3s;

    server {
        listen 127.0.0.1:$tls ssl;
        ssl_certificate $Certs/localhost.crt;
        ssl_certificate_key $Certs/localhost.key;
        location = /twilio/media { twirt_stream; }
    }
CONF
    utf8::encode($conf);
    return $conf;
}

our $NodeServer = <<'CONF';
    location = /ping { return 200 'ok'; }
    location /campaigns/ { allow 127.0.0.1; deny all; twirt_campaigns; }
    location = /twilio/voice { twirt_twiml; }
    location = /twilio/media { twirt_stream; }
    location = /twilio/call-status { twirt_call_status; }
CONF

# -- node B: another nginx, same Redis, same Twilio, its own URL ------------------

our $NodeB = tempdir(CLEANUP => 1);
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

sub node_b_log { return _slurp("$NodeB/logs/error.log") }

sub node_b_start {
    mkdir "$NodeB/logs";
    open my $fh, '>', "$NodeB/nginx.conf" or die $!;
    my $main = "worker_processes 2; daemon on; master_process on; "
               . "error_log logs/error.log info;" . ($> == 0 ? " user root;" : "");
    print $fh http_conf(node_http($PortB) . <<"CONF", $main);
    server {
        listen 127.0.0.1:$PortB;
$NodeServer    }
CONF
    close $fh;
    my $from = length node_b_log();
    system("$nginx -p $NodeB/ -c $NodeB/nginx.conf") == 0
        or Test::More::BAIL_OUT("node B did not start: " . node_b_log());
    wait_until(10, sub { IO::Socket::INET->new(PeerAddr => "127.0.0.1:$PortB") })
        or Test::More::BAIL_OUT("node B does not listen");
    # both workers have their Redis connection
    wait_until(10, sub {
        my @c = substr(node_b_log(), $from) =~ /twirt: redis "[^"]*" connected/g;
        @c >= 2 }) or Test::More::BAIL_OUT("node B did not connect to Redis: " . node_b_log());
}

sub node_b_pids {
    my $master = _slurp("$NodeB/logs/nginx.pid");
    chomp $master;
    return () unless $master =~ /^\d+$/;
    my @workers;
    for my $stat (glob '/proc/[0-9]*/stat') {
        my $s = _slurp($stat) or next;
        push @workers, $1 if $s =~ /^(\d+) \(.*\) \S+ (\d+) / && $2 == $master;
    }
    return ($master, @workers);
}

sub node_b_stop {
    my ($master) = node_b_pids();
    return unless $master && kill 0, $master;
    kill 'QUIT', $master;
    wait_until(10, sub { !kill 0, $master });
}

node_b_start();
END { node_b_stop() }

# TWIRT_SCALE_KEEP=DIR keeps the stand-in's record and node B's log there
END {
    if (my $keep = $ENV{TWIRT_SCALE_KEEP}) {
        mkdir $keep;
        system('cp', $Rest->{record}, "$keep/twilio_rest.jsonl");
        system('cp', "$NodeB/logs/error.log", "$keep/node_b.log");
    }
}

# -- HTTP to either node ----------------------------------------------------------

# (status, { lowercase header => value }, body bytes)
sub http_req {
    my ($port, $method, $path, $body, $ctype) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port", Timeout => 10)
        or return (0, {}, '');
    $body //= '';
    utf8::encode($body) if utf8::is_utf8($body);
    my $req = "$method $path HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
    $req .= "Content-Type: " . ($ctype // 'application/json') . "\r\n"
            . "Content-Length: " . length($body) . "\r\n" if $method ne 'GET';
    print $sock "$req\r\n$body";
    local $/;
    my $resp = <$sock> // '';
    my ($head, $rest) = split /\r\n\r\n/, $resp, 2;
    my ($status) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    my %h;
    for my $line (split /\r\n/, $head // '') {
        $h{ lc $1 } = $2 if $line =~ /^([^:]+):\s*(.*)$/;
    }
    $rest //= '';
    if (($h{'transfer-encoding'} // '') =~ /chunked/i) {
        my $out = '';
        while ($rest =~ s/^([0-9a-fA-F]+)[^\r\n]*\r\n//) {
            my $n = hex $1;
            last if $n == 0;
            $out .= substr($rest, 0, $n);
            substr($rest, 0, $n + 2) = '';
        }
        $rest = $out;
    }
    return ($status // 0, \%h, $rest);
}

# (status, decoded JSON or {})
sub api {
    my ($port, $method, $path, $body, $ctype) = @_;
    $body = $json->encode($body) if ref $body;
    my ($status, $h, $text) = http_req($port, $method, $path, $body, $ctype);
    my $r = eval { $json->decode($text) } // { _raw => $text };
    return ($status, $r);
}

sub wait_until {
    my ($secs, $code) = @_;
    my $deadline = time + $secs;
    while (1) {
        my $v = $code->();
        return $v if $v;
        return undef if time > $deadline;
        sleep 0.1;
    }
}

sub _slurp {
    my ($f) = @_;
    open my $fh, '<', $f or return '';
    local $/;
    return scalar <$fh> // '';
}

# -- a campaign from start to end ----------------------------------------------

sub create_campaign {
    my ($port, $s, %extra) = @_;
    my ($status, $r) = api($port, 'POST', '/campaigns/', {
        name => "規模テスト $s", from => $From, cps => $CPS,
        concurrency => $Concurrency, retries => $Retries, retry_delay => $RetryDelay,
        timeout => 20, machine_detection => 'hangup',
        variables => { clinic => 'さくら歯科' }, %extra });
    is($status, 201, "$s: the campaign is created") or diag(Test::More::explain($r));
    like($r->{id} // '', qr/^c\S+$/, "$s: with its id");
    is($r->{upload}{accepted}, scalar @{ $extra{rows} }, "$s: its rows accepted")
        if $extra{rows};
    # nothing else can be checked without it
    die "$s: no campaign\n" unless $status == 201 && $r->{id};
    return $r->{id};
}

# the rows as JSON (domestic numbers)
sub json_rows {
    my ($s) = @_;
    return [ map { { to => (e164($s, $_) =~ s/^\+81/0/r), variables => row_vars($s, $_) } }
             1 .. $Size{$s} ];
}

# a paused campaign, its rows uploaded to node B, resumed on node A
sub start_campaign {
    my ($s) = @_;
    my $id = create_campaign($PortA, $s, paused => JSON::PP::true);
    my ($status, $r) = api($PortB, 'POST', "/campaigns/$id/rows", json_rows($s));
    is($status, 200, "$s: rows uploaded to node B") or diag(Test::More::explain($r));
    is($r->{accepted}, $Size{$s}, "$s: all $Size{$s} accepted") or diag(Test::More::explain($r));
    ($status, $r) = api($PortA, 'POST', "/campaigns/$id/resume");
    is($status, 200, "$s: resumed on node A") or diag(Test::More::explain($r));
    return $id;
}

sub status_of {
    my ($port, $id) = @_;
    my ($status, $r) = api($port, 'GET', "/campaigns/$id");
    return $status == 200 ? $r : undef;
}

sub wait_finished {
    my ($id, $secs) = @_;
    my $last;
    my $ok = wait_until($secs, sub {
        $last = status_of($PortA, $id);
        $last && ($last->{status} // '') eq 'finished' });
    ok($ok, "campaign $id finishes within ${secs}s")
        or diag(Test::More::explain($last));
    return $last;
}

# every check of a finished campaign against the stand-in's record; returns
# the attempts.  %o: strict (scripted outcomes and attempts exactly), pace
# (the rate measured)
sub check_campaign {
    my ($s, $id, $st, %o) = @_;
    my $att = rest_attempts($Rest, $id);
    my $by_row = attempts_by_row($att);
    my %want = map { e164($s, $_) => $_ } 1 .. $Size{$s};

    # -- what was dialed
    my @problems = dial_problems($by_row, $Retries, undef, $RetryDelay);
    ok(!@problems, "$s: no row dialed twice: retries only after busy, no-answer "
                   . "or failed and the retry delay, never overlapping, at most "
                   . "1 + $Retries")
        or diag(join "\n", @problems[0 .. ($#problems > 20 ? 20 : $#problems)]);
    my %rows_to;
    for my $row (keys %$by_row) {
        $rows_to{$_->{to}}{$row} = 1 for @{ $by_row->{$row} };
    }
    my @mixed = grep { keys %{ $rows_to{$_} } > 1 } keys %rows_to;
    ok(!@mixed, "$s: one row per number") or diag("@mixed");
    my @strangers = grep { !$want{ $_->{to} // '' } } @$att;
    ok(!@strangers, "$s: only the campaign's numbers were called")
        or diag(Test::More::explain([ map { $_->{to} } @strangers ]));
    my @bad_url = grep {
        my $q = url_query($_->{url});
        my $v = row_vars($s, $want{ $_->{to} // '' } // 0);
        ($q->{'var.name'} // '') ne $v->{name} || ($q->{'var.memo'} // '') ne $v->{memo}
            || !defined $q->{attempt} || ($_->{callback} !~ /[?&]row=\Q$_->{row}\E(?:&|$)/)
    } grep { $want{ $_->{to} // '' } } @$att;
    ok(!@bad_url, "$s: each create carries the row's variables (Japanese intact), "
                  . "its row and attempt") or diag(Test::More::explain($bad_url[0]));
    my @bad_params = grep {
        my $p = $_->{params};
        join(' ', map { split /[ ,]+/ } @{ $p->{StatusCallbackEvent} // [] }) ne 'initiated ringing answered completed'
            || ($p->{Timeout}[0] // '') ne '20' || ($p->{From}[0] // '') ne $From
            || ($p->{MachineDetection}[0] // '') ne 'DetectMessageEnd' || ($p->{AsyncAmd}[0] // '') ne 'true'
            || ($p->{AsyncAmdStatusCallback}[0] // '') !~ /[?&]amd=1(?:&|$)/
    } @$att;
    ok(!@bad_params, "$s: each create asks for every progress event, the ring timeout, "
                     . "asynchronous AMD") or diag(Test::More::explain($bad_params[0]{params}));
    my $overlap = max_overlap(map { [$_->{t}, $_->{t_done}] } grep { $_->{sid} } @$att);
    ok($overlap <= $Concurrency, "$s: at most $Concurrency calls live at once ($overlap)");
    my @times = map { $_->{t} } @$att;
    # (5 s: the record's times are when the stand-in answered, a little
    # jittered; a single late one can make 11 in 2 s of a perfect 5/s)
    my $peak = peak_in(5, @times);
    ok($peak <= int(5 * $CPS * 1.1), "$s: never more than 10 % over $CPS/s in any 5 s "
       . "(peak $peak)");

    if ($o{strict}) {
        my @first = map { $_->{row} } grep { ($_->{attempt} // '') eq '1' } @$att;
        my @inv = grep { $first[$_] < $first[$_ - 1] } 1 .. $#first;
        ok(!@inv, "$s: rows dialed in their order") or diag("@first[0 .. ($#first > 40 ? 40 : $#first)]");
    }

    if ($o{pace}) {
        # the steady part: until the last first attempt, when rows wait
        my ($last_first) = sort { $b <=> $a } map { $_->{t} }
                           grep { ($_->{attempt} // '') eq '1' } @$att;
        my @steady = grep { $_ <= $last_first } @times;
        my $rate = rate_of(@steady) // 0;
        my $median = per_second_median(@steady) // 0;
        ok(abs($rate - $CPS) <= $CPS * 0.10,
           sprintf "$s: paced at %.2f calls/s over %d creates in %.1f s (target %d, "
                   . "median %d per second)", $rate, scalar @steady,
                   $steady[-1] - $steady[0], $CPS, $median);
    }

    # -- the status
    my $sum = 0;
    $sum += $_ for values %{ $st->{outcomes} // {} };
    is($st->{queued}, 0, "$s: nothing queued");
    is($st->{in_progress}, 0, "$s: nothing in progress");
    ok(defined $st->{cost_usd} && $st->{cost_usd} =~ /^[0-9.eE+-]+$/,
       "$s: the campaign's cost_usd") or diag(Test::More::explain($st));

    # -- the results, from both nodes
    my ($code, $res) = api($PortA, 'GET', "/campaigns/$id/results");
    is($code, 200, "$s: results");
    my ($codeb, $resb) = api($PortB, 'GET', "/campaigns/$id/results");
    is_deeply($resb, $res, "$s: node B gives the same results") if $codeb;
    my @rows = @{ $res->{rows} // [] };
    my %res = map { ($_->{to} // '') => $_ } @rows;
    my @dialable = grep { $want{ $_->{to} // '' } } @rows;
    is(scalar @dialable, $Size{$s}, "$s: every row in the results");
    my @others = grep { !$want{ $_->{to} // '' } } @rows;
    # the upload's invalid numbers, if results keep them, are invalid, never dialed
    my @bad_other = grep { ($_->{outcome} // '') ne 'invalid' || ($_->{attempts} // 0) != 0 } @others;
    ok(!@bad_other, "$s: no other rows but the upload's invalid ones")
        or diag(Test::More::explain(\@bad_other));
    my %final = map { $_ => 1 } qw(completed voicemail busy no_answer failed invalid dnc cancelled);
    my @unfinished = grep { !$final{ $_->{outcome} // '' } } @rows;
    ok(!@unfinished, "$s: every row in a final state") or diag(Test::More::explain($unfinished[0]));
    is($sum, scalar @rows, "$s: the status' outcomes add up to the rows")
        or diag(Test::More::explain($st->{outcomes}));
    my %count;
    $count{ $_->{outcome} // '?' }++ for @rows;
    my %st_count = map { $_ => $st->{outcomes}{$_} } grep { $st->{outcomes}{$_} } keys %{ $st->{outcomes} // {} };
    is_deeply(\%st_count, \%count, "$s: the status' outcomes are the results'");
    ok($st->{rows} == $Size{$s} || $st->{rows} == @rows, "$s: the status counts the rows")
        or diag("rows $st->{rows}");

    my (@wrong, @wrong_strict);
    for my $to (sort keys %want) {
        my $i = $want{$to};
        my $r = $res{$to} or next;
        my $list = $by_row->{ $r->{row} // '?' } // [];
        my $last = $list->[-1];
        my $v = row_vars($s, $i);
        my @why;
        push @why, "variables " . $json->encode($r->{variables} // {})
            if ($r->{variables}{name} // '') ne $v->{name}
               || ($r->{variables}{memo} // '') ne $v->{memo};
        push @why, "no cost_usd" unless exists $r->{cost_usd};
        if (!$last) {
            push @why, "never dialed";
        } else {
            push @why, "row $r->{row} but the stand-in called $last->{to}" if $last->{to} ne $to;
            my $ok = expected_outcome($last);
            push @why, "outcome $r->{outcome}, the stand-in says @$ok"
                unless grep { $_ eq ($r->{outcome} // '') } @$ok;
            push @why, "call_sid " . ($r->{call_sid} // 'null') . ", the last call was $last->{sid}"
                if $last->{sid} && ($r->{call_sid} // '') ne $last->{sid};
            # a create Twilio refused placed no call: no attempt
            my $n = grep { $_->{sid} } @$list;
            my $a = $r->{attempts} // -1;
            push @why, "attempts $a, the stand-in saw $n calls"
                if $o{strict} ? $a != $n : ($a < $n || $a > 1 + $Retries);
            push @why, "answered_by " . ($r->{answered_by} // 'null')
                if ($r->{outcome} // '') eq 'voicemail' && ($r->{answered_by} // '') !~ /^machine/;
        }
        push @wrong, "$to (row " . ($r->{row} // '?') . ", " . kind_of($s, $i) . "): @why" if @why;

        next unless $o{strict};
        my $k = kind_of($s, $i);
        if ($k eq 'refused') {
            my $ok = ($r->{outcome} // '') eq 'invalid' && @$list == 1;
            push @wrong_strict, "$to refused by Twilio: $r->{outcome} after " . @$list
                unless $ok;
        } else {
            my ($o, $n) = @{ $Expect{$k} };
            push @wrong_strict, "$to ($k): $r->{outcome} after " . @$list . " calls, "
                . "expected $o after $n" unless ($r->{outcome} // '') eq $o && @$list == $n;
        }
    }
    ok(!@wrong, "$s: each row as the stand-in saw it: outcome of its last call, call_sid, "
                . "attempts, variables, cost_usd")
        or diag(join "\n", @wrong[0 .. ($#wrong > 20 ? 20 : $#wrong)]);
    ok(!@wrong_strict, "$s: each row ended as its callee was scripted (retries included)")
        or diag(join "\n", @wrong_strict[0 .. ($#wrong_strict > 20 ? 20 : $#wrong_strict)])
        if $o{strict};

    check_csv($s, $id, \@rows);
    return $att;
}

sub check_csv {
    my ($s, $id, $rows) = @_;
    my ($code, $h, $body) = http_req($PortA, 'GET', "/campaigns/$id/results.csv");
    is($code, 200, "$s: results.csv");
    like($h->{'content-type'} // '', qr{^text/csv}, "$s: as text/csv");
    ok($body =~ s/^\xEF\xBB\xBF//, "$s: UTF-8 with a BOM");
    ok(utf8::decode($body), "$s: valid UTF-8");
    my ($csv, $crlf) = csv_parse($body);
    ok($crlf, "$s: CRLF line ends");
    my $head = shift @$csv // [];
    my %col;
    for my $i (0 .. $#$head) {
        my $name = $head->[$i] =~ s/^(?:var(?:iables?)?[._:])//r;
        $col{$name} //= $i;
    }
    ok(defined $col{$_}, "$s: a $_ column") or diag("@$head") for qw(to outcome attempts name memo);
    is(scalar @$csv, scalar @$rows, "$s: one line per row");
    my %json = map { ($_->{to} // '') => $_ } @$rows;
    my @wrong;
    for my $line (@$csv) {
        my %f = map { $_ => $line->[ $col{$_} // 0 ] // '' } qw(to outcome attempts name memo);
        my $r = $json{ $f{to} };
        if (!$r) { push @wrong, "unknown row: @$line"; next }
        for my $k (qw(outcome attempts)) {
            push @wrong, "$f{to}: $k $f{$k} in the CSV, $r->{$k} in JSON"
                if $f{$k} ne ($r->{$k} // '');
        }
        for my $k (qw(name memo)) {
            push @wrong, "$f{to}: $k \"$f{$k}\" in the CSV, \"" . ($r->{variables}{$k} // '') . "\" in JSON"
                if $f{$k} ne ($r->{variables}{$k} // '');
        }
    }
    ok(!@wrong, "$s: the CSV says what the JSON says, Japanese, commas and quotes intact")
        or diag(join "\n", @wrong[0 .. ($#wrong > 10 ? 10 : $#wrong)]);
}

sub log_crashes {
    my ($text) = @_;
    return grep { /\[alert\]|\[emerg\]|exited on signal|segfault/ } split /\n/, $text;
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', node_http($PortA));
    $block->set_value('config', $NodeServer);
    $block->set_value('timeout', 10);
});

# --- check: Perl run once nginx is up (after the /ping request)
check_sections();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: 200 rows, 5 calls/s, 20 concurrent, two nodes: paced, every row final, none dialed twice, results and CSV right
--- check
# both workers of node A have Redis
ok(main::wait_until(10, sub { my @c = error_log_text() =~ /twirt: redis "[^"]*" connected/g; @c >= 2 }),
   'node A is connected to Redis');
my $id = main::create_campaign($main::PortA, 'main', paused => JSON::PP::true);
my $st = main::status_of($main::PortB, $id);
is($st->{status}, 'paused', 'created paused, as node B sees it');
ok($st->{window_open}, 'no window: always open');
my (undef, undef, $list) = main::http_req($main::PortB, 'GET', '/campaigns/');
like($list, qr/"\Q$id\E"/, 'listed');

# the rows as CSV: UTF-8 with a BOM, a Japanese phone column, numbers in
# several forms, two duplicates and three invalid numbers among them
my @lines = ("電話番号,name,memo");
my (%dup_line, %bad_line);
for my $i (1 .. 200) {
    my $n = sprintf "%04d", $i;
    my $to = $i % 3 == 0 ? "03-5000-$n" : $i % 3 == 1 ? "(03) 5000 $n" : "+81 3 5000 $n";
    my $v = main::row_vars('main', $i);
    push @lines, join ',', $to, $v->{name}, '"' . ($v->{memo} =~ s/"/""/gr) . '"';
    if ($i == 60)  { push @lines, "0350000001,重複一郎,dup"; $dup_line{'+81350000001'} = @lines }
    if ($i == 120) { push @lines, "+81350000002,重複二郎,dup"; $dup_line{'+81350000002'} = @lines }
    if ($i == 50)  { push @lines, "12345,無効一,bad"; $bad_line{'12345'} = @lines }
    if ($i == 100) { push @lines, "090-1234-567,無効二,bad"; $bad_line{'090-1234-567'} = @lines }
    if ($i == 150) { push @lines, "abc-defg,無効三,bad"; $bad_line{'abc-defg'} = @lines }
}
my $csv = "\x{FEFF}" . join("\r\n", @lines) . "\r\n";
my ($code, $up) = main::api($main::PortB, 'POST', "/campaigns/$id/rows", $csv, 'text/csv; charset=utf-8');
is($code, 200, 'main: the CSV is uploaded to node B') or diag(Test::More::explain($up));
is($up->{accepted}, 200, 'main: 200 rows accepted');
is_deeply({ map { ($_->{to} // '') => $_->{line} } @{ $up->{duplicates} // [] } }, \%dup_line,
          'main: the duplicates, by line');
is_deeply({ map { ($_->{to} // '') => $_->{line} } @{ $up->{invalid} // [] } }, \%bad_line,
          'main: the invalid numbers, by line, as written');
ok(!grep({ !$_->{error} } @{ $up->{invalid} // [] }), 'main: each invalid number says why');

my $t0 = time;
($code, $st) = main::api($main::PortB, 'POST', "/campaigns/$id/resume");
is($code, 200, 'main: resumed on node B');
$st = main::wait_finished($id, 150);
diag(sprintf "main: finished in %.1f s", time - $t0);
my $att = main::check_campaign('main', $id, $st, strict => 1, pace => 1);
my %by_node;
$by_node{ $_->{callback_port} // '?' }++ for @$att;
ok($by_node{$main::PortA} && $by_node{$main::PortB}, 'main: both nodes placed calls')
    or diag(Test::More::explain(\%by_node));
ok(!main::log_crashes(error_log_text() . main::node_b_log()), 'no crash, alert or emerg')
    or diag(join "\n", main::log_crashes(error_log_text() . main::node_b_log()));



=== TEST 2: node B killed (SIGKILL, master and workers) mid-campaign: the survivor recovers its rows, none dialed twice
--- check
my $id = main::start_campaign('kill');
# B has calls in flight that will outlive it (answered ones last 4 s),
# and enough of the campaign is dialed
my $killed_at;
my $inflight = main::wait_until(60, sub {
    my $att = rest_attempts($main::Rest, $id);
    my @live = grep { $_->{sid} && !defined $_->{t_done} && ($_->{callback_port} // 0) == $main::PortB
                      && ($_->{plan}{outcome} // '') eq 'completed' } @$att;
    @$att >= 15 && @live >= 2 ? \@live : undef });
ok($inflight, 'kill: node B has calls in flight')
    or diag(join "\n", map { "$_->{to} $_->{sid} port $_->{callback_port} "
                             . ($_->{final} // 'live') } @{ rest_attempts($main::Rest, $id) });
my @pids = main::node_b_pids();
ok(@pids >= 3, 'kill: node B\'s master and two workers') or diag("@pids");
$killed_at = time;
kill 'KILL', @pids;
ok(main::wait_until(5, sub { !grep { kill 0, $_ } @pids }), 'kill: node B is gone');
my $st = main::wait_finished($id, 120);
my $att = main::check_campaign('kill', $id, $st);
my @after = grep { $_->{t} > $killed_at + 0.5 && ($_->{callback_port} // 0) == $main::PortB } @$att;
ok(!@after, 'kill: nothing dialed by the dead node');
# the calls B left: placed before the kill, ended after it
my %orphan = map { $_->{row} => $_ }
             grep { ($_->{callback_port} // 0) == $main::PortB && $_->{sid} && $_->{t} < $killed_at
                    && (!defined $_->{t_done} || $_->{t_done} > $killed_at) } @$att;
ok(scalar keys %orphan, 'kill: node B left calls live') or diag(Test::More::explain($inflight));
my ($code, $res) = main::api($main::PortA, 'GET', "/campaigns/$id/results");
my @recovered = grep { $orphan{ $_->{row} } } @{ $res->{rows} // [] };
is(scalar @recovered, scalar keys %orphan, 'kill: the rows node B had in flight are in the results');
ok(!grep({ ($_->{outcome} // '') !~ /^(completed|voicemail|busy|no_answer|failed|invalid)$/ } @recovered),
   'kill: and final') or diag(Test::More::explain(\@recovered));
# their callbacks went to the dead node: the survivor must have asked
# Twilio (the call list by number, or the call itself) after the kill
my @asked = grep { ($_->{kind} // '') eq 'api' && $_->{method} eq 'GET' && $_->{t} > $killed_at
                   && ($_->{status} // 0) == 200 } @{ sim_records($main::Rest) };
my @unasked = grep { my $o = $_;
                     !grep { (url_query('?' . ($_->{query} // ''))->{To} // '') eq $o->{to}
                             || $_->{path} =~ /\Q$o->{sid}\E\.json$/ } @asked } values %orphan;
ok(!@unasked, 'kill: Twilio was asked about each call node B left (list by To, or the call)')
    or diag(Test::More::explain([ map { "$_->{to} $_->{sid}" } @unasked ]));
ok(!main::log_crashes(error_log_text()), 'kill: node A did not crash');
# node B again, for what follows
main::node_b_start();



=== TEST 3: Redis restarted mid-campaign (append-only file): every row final, none dialed twice
--- check
my $id = main::start_campaign('redis');
ok(main::wait_until(60, sub { @{ rest_attempts($main::Rest, $id) } >= 20 }), 'redis: 20 calls placed');
my $from_a = length error_log_text();
my $from_b = length main::node_b_log();
redis_stop();
# both nodes noticed
ok(main::wait_until(10, sub {
    substr(error_log_text(), $from_a) =~ /twirt: redis "[^"]*" connection lost/
    && substr(main::node_b_log(), $from_b) =~ /twirt: redis "[^"]*" connection lost/ }),
   'redis: both nodes lost Redis');
my $down = rest_attempts($main::Rest, $id);
redis_start();
ok(main::wait_until(15, sub {
    substr(error_log_text(), $from_a) =~ /twirt: redis "[^"]*" reconnected/
    && substr(main::node_b_log(), $from_b) =~ /twirt: redis "[^"]*" reconnected/ }),
   'redis: both nodes reconnected');
my $st = main::wait_finished($id, 120);
main::check_campaign('redis', $id, $st);
ok(!main::log_crashes(error_log_text() . main::node_b_log()), 'redis: no crash, alert or emerg');



=== TEST 4: a window that opens a few seconds from now (Asia/Tokyo, HH:MM:SS): nothing dialed while closed, dialing once open
--- check
# Tokyo is UTC+9 all year; a window may not cross midnight, so the last
# minutes of a Tokyo day are waited out (a clock condition, bounded)
my $tokyo = sub { my $t = time + 9 * 3600; return $t - 86400 * int($t / 86400) };
main::wait_until(130, sub { $tokyo->() < 86400 - 120 });
my $now = time;
my $open_at = int($now) + 6;
my $sod = int($tokyo->()) + 6;
my $hms = sub { sprintf '%02d:%02d:%02d', int($_[0] / 3600), int($_[0] / 60) % 60, $_[0] % 60 };
my $end = $sod + 3600 > 86400 ? '24:00' : $hms->($sod + 3600);
my $window = 'daily ' . $hms->($sod) . "-$end Asia/Tokyo";
diag("window: $window");
# the rows with the campaign, on node A
my $id = main::create_campaign($main::PortA, 'window', window => $window,
                               rows => main::json_rows('window'));
my $st = main::status_of($main::PortB, $id);
ok($st && defined $st->{window_open} && !$st->{window_open}, 'window: closed at first')
    or diag(Test::More::explain($st));
is($st->{queued}, 40, 'window: every row queued');
ok(time < $open_at - 1, 'window: (still closed while checked)');
# nothing is dialed until it opens
main::wait_until(10, sub { time >= $open_at });
my $early = [ grep { $_->{t} < $open_at } @{ rest_attempts($main::Rest, $id) } ];
ok(!@$early, 'window: nothing dialed while closed') or diag(Test::More::explain($early));
my $first = main::wait_until(10, sub { my $a = rest_attempts($main::Rest, $id); @$a ? $a->[0] : undef });
ok($first && $first->{t} < $open_at + 2.5, 'window: dialing starts once it opens')
    or diag(Test::More::explain($first));
$st = main::status_of($main::PortA, $id);
ok($st && $st->{window_open}, 'window: open now');
$st = main::wait_finished($id, 90);
main::check_campaign('window', $id, $st, strict => 1);
ok(!main::log_crashes(error_log_text() . main::node_b_log()), 'window: no crash, alert or emerg');
