# twirt_status: the Prometheus text exposition.  The text must parse
# strictly (every sample in a family with HELP and TYPE, valid names and
# labels, histogram buckets monotone with +Inf equal to _count), and after
# scenario calls its figures must match what the peers and twirt's own
# "ended:" log lines recorded, summed over all workers.
#
# A block with "--- calls" runs twilio_sim.py with those arguments (one
# line, one run; the lines run one after the other) once nginx is up, then
# fetches /status until every call has ended; "--- metrics" is Perl run
# with $m (sample => value, as in 'twirt_frames_total{direction="in",
# side="twilio"}', label names sorted), $calls (the Twilio peer summaries),
# $ended (the "ended:" log lines of the block, summed) and the helper
# v(name, label => value...).  "--- nginx_workers: N" runs that block with
# a master process and N workers.

use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Peers;
use Test::Nginx::Socket 'no_plan';
use IO::Socket::INET;
use JSON::PP;
use File::Temp qw(tempfile);
use Time::HiRes qw(sleep time);

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
$ENV{TEST_NGINX_REUSEPORT_PORT} = free_port();
$ENV{TEST_NGINX_CLOSED_PORT} = free_port();

our ($M, $PyParser);

add_block_preprocessor(sub {
    my $block = shift;

    if (defined $block->nginx_workers) {
        master_on();
        workers($block->nginx_workers);

    } else {
        master_off();
        workers(1);
    }

    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    $block->set_value('http_config', <<'CONF' . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test-NEVER-LOGGED-4242;
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}]";
    twirt_close_timeout 1s;
CONF
    $block->set_value('config', "location = /ping { return 200 'ok'; }\n"
                                . "location = /status { twirt_status; }\n"
                                . ($block->config // ""));
});

add_response_body_check(\&check_block);

parser_selftest();

no_shuffle();
run_tests();


# the strict parser itself must refuse what Prometheus would
sub parser_selftest {
    my $h = "# HELP h_seconds x\n# TYPE h_seconds histogram\n";
    my $c = "# HELP c_total x\n# TYPE c_total counter\n";
    my %bad = (
        'no TYPE'          => "# HELP c_total x\nc_total 1\n",
        'no HELP'          => "# TYPE c_total counter\nc_total 1\n",
        'bad name'         => "${c}c-total 1\n",
        'bad label'        => "${c}c_total{a=b} 1\n",
        'bad value'        => "${c}c_total one\n",
        'twice'            => "${c}c_total 1\nc_total 2\n",
        'negative counter' => "${c}c_total -1\n",
        'no newline'       => "${c}c_total 1",
        'split family'     => "${c}c_total{a=\"1\"} 1\n# HELP g x\n# TYPE g gauge\n"
                              . "g 1\nc_total{a=\"2\"} 1\n",
        'buckets go down'  => "${h}h_seconds_bucket{le=\"1\"} 2\n"
                              . "h_seconds_bucket{le=\"+Inf\"} 1\n"
                              . "h_seconds_sum 1\nh_seconds_count 1\n",
        '+Inf != count'    => "${h}h_seconds_bucket{le=\"+Inf\"} 2\n"
                              . "h_seconds_sum 1\nh_seconds_count 1\n",
        'no +Inf'          => "${h}h_seconds_bucket{le=\"1\"} 1\n"
                              . "h_seconds_sum 1\nh_seconds_count 1\n",
    );
    for my $case (sort keys %bad) {
        ok(!eval { parse_exposition($bad{$case}); 1 },
           "the strict parser refuses: $case");
    }
    ok(eval { parse_exposition("${c}c_total 1\n${h}h_seconds_bucket{le=\"0.5\"} 1\n"
                               . "h_seconds_bucket{le=\"+Inf\"} 2\n"
                               . "h_seconds_sum 1.5\nh_seconds_count 2\n"); 1 },
       'the strict parser takes a valid text') or diag($@);
}


# --- the status location --------------------------------------------------

sub port { $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984 }

# GET /status on a fresh connection: (status code, headers, body)
sub fetch_status {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => port(),
                                  Proto => 'tcp', Timeout => 5)
        or die "connect: $!";
    print $s "GET /status HTTP/1.0\r\nHost: localhost\r\n\r\n";
    local $/;
    my $res = <$s> // '';
    close $s;
    my ($head, $body) = split /\r\n\r\n/, $res, 2;
    my ($code) = ($head // '') =~ m{^HTTP/1\.\d (\d+)};
    return ($code // 0, $head // '', $body // '');
}

# the exposition must be exactly what the 0.0.4 text format allows, and
# more: every family has HELP and TYPE before its samples, and samples of
# a family are contiguous.  Returns { 'name{k="v",...}' => value } or dies.
sub parse_exposition {
    my ($text) = @_;
    my $name = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
    my $lname = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
    my $float = qr/[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]Inf|NaN/;
    my (%fam, %samples, %closed, %hist, $cur);
    my $n = 0;

    die "empty exposition\n" if $text eq '';
    die "no newline at the end\n" unless $text =~ /\n\z/;

    for my $line (split /\n/, $text) {
        $n++;

        if ($line =~ /^# (HELP|TYPE) /) {
            my ($kind, $f, $rest) = $line =~ /^# (HELP|TYPE) ($name) (.*)$/
                or die "line $n: malformed $1 line: $line\n";
            die "line $n: a second $kind for $f\n" if exists $fam{$f}{$kind};
            die "line $n: $kind for $f after its samples\n"
                if $fam{$f}{samples};
            if ($kind eq 'TYPE') {
                $rest =~ /^(counter|gauge|histogram|summary|untyped)$/
                    or die "line $n: unknown type \"$rest\"\n";
            } else {
                die "line $n: bad escape in HELP\n" if $rest =~ /\\(?![\\n])/;
                die "line $n: empty HELP\n" if $rest eq '';
            }
            $fam{$f}{$kind} = $rest;
            next;
        }

        die "line $n: an empty line\n" if $line eq '';
        die "line $n: a comment that is neither HELP nor TYPE\n"
            if $line =~ /^#/;

        my ($s, $lbl, $v) = $line =~ /^($name)(?:\{(.*)\})? ($float)$/
            or die "line $n: malformed sample: $line\n";

        my %l;
        if (defined $lbl) {
            my $rest = $lbl;
            while ($rest ne '') {
                $rest =~ s/^($lname)="((?:[^"\\\n]|\\[\\"n])*)"//
                    or die "line $n: malformed labels {$lbl}\n";
                die "line $n: label $1 twice\n" if exists $l{$1};
                die "line $n: reserved label name $1\n" if $1 =~ /^__/;
                $l{$1} = $2;
                last if $rest eq '';
                $rest =~ s/^,(?=.)// or die "line $n: malformed labels {$lbl}\n";
            }
        }

        my ($f, $suffix) = ($s, '');
        if (!($fam{$s} && ($fam{$s}{TYPE} // '') =~ /^(?:counter|gauge|untyped)$/)) {
            ($f, $suffix) = $s =~ /^(.*)_(bucket|sum|count)$/
                or die "line $n: $s belongs to no family with a TYPE\n";
            ($fam{$f}{TYPE} // '') eq 'histogram'
                or die "line $n: $s belongs to no family with a TYPE\n";
        }
        die "line $n: family $f has no HELP\n" unless defined $fam{$f}{HELP};
        die "line $n: the samples of $f are not together\n" if $closed{$f};
        $closed{$cur} = 1 if defined $cur && $cur ne $f;
        $cur = $f;
        $fam{$f}{samples}++;

        my $type = $fam{$f}{TYPE};
        die "line $n: le outside of a _bucket\n" if exists $l{le} && $suffix ne 'bucket';
        die "line $n: negative $type $s\n"
            if ($type eq 'counter' || $type eq 'histogram') && $v =~ /^-/;
        die "line $n: NaN\n" if $v eq 'NaN';
        die "line $n: counter $s does not end in _total\n"
            if $type eq 'counter' && $s !~ /_total$/;

        my $key = $s . (%l ? '{' . join(',', map { "$_=\"$l{$_}\"" } sort keys %l) . '}' : '');
        die "line $n: $key twice\n" if exists $samples{$key};
        $samples{$key} = $v =~ /Inf/ ? ($v =~ /^-/ ? -9**9**9 : 9**9**9) : $v + 0;

        if ($type eq 'histogram') {
            my $le = delete $l{le};
            my $g = $f . '{' . join(',', map { "$_=\"$l{$_}\"" } sort keys %l) . '}';
            if ($suffix eq 'bucket') {
                defined $le or die "line $n: a bucket without le\n";
                $le =~ /^(?:$float)$/ && $le ne 'NaN'
                    or die "line $n: le=\"$le\" is not a number\n";
                die "line $n: a bucket after _sum or _count\n"
                    if exists $hist{$g}{sum} || exists $hist{$g}{count};
                push @{ $hist{$g}{buckets} }, [ $le, $v + 0 ];
            } else {
                $hist{$g}{$suffix} = $v + 0;
            }
        }
    }

    for my $f (sort keys %fam) {
        die "family $f has no TYPE\n" unless defined $fam{$f}{TYPE};
        die "family $f has no HELP\n" unless defined $fam{$f}{HELP};
        die "family $f has no sample\n" unless $fam{$f}{samples};
    }

    for my $g (sort keys %hist) {
        my $h = $hist{$g};
        my $b = $h->{buckets} or die "$g: no buckets\n";
        die "$g: no _sum\n" unless defined $h->{sum};
        die "$g: no _count\n" unless defined $h->{count};
        die "$g: the last bucket is not +Inf\n" unless $b->[-1][0] eq '+Inf';
        for my $i (1 .. $#$b) {
            my ($p, $c) = ($b->[$i - 1], $b->[$i]);
            my $le = $c->[0] eq '+Inf' ? 9**9**9 : $c->[0];
            die "$g: le $c->[0] after $p->[0]\n" unless $le > $p->[0];
            die "$g: bucket le=$c->[0] ($c->[1]) below le=$p->[0] ($p->[1])\n"
                if $c->[1] < $p->[1];
        }
        die "$g: +Inf bucket $b->[-1][1] != _count $h->{count}\n"
            if $b->[-1][1] != $h->{count};
        die "$g: _sum $h->{sum} with _count 0\n"
            if $h->{count} == 0 && $h->{sum} != 0;
    }

    return (\%samples, \%fam);
}

# the same text through the reference parser (python3-prometheus-client)
# when it is installed: { 'name{...}' => value }, or undef
sub python_parse {
    my ($text) = @_;
    $PyParser //= system('/usr/bin/python3 -c "import prometheus_client" 2>/dev/null') == 0
                  ? 1 : 0;
    return undef unless $PyParser;
    my ($fh, $file) = tempfile(UNLINK => 1);
    print $fh $text;
    close $fh;
    my $out = `/usr/bin/python3 -c '
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = {}
for fam in text_string_to_metric_families(open(sys.argv[1]).read()):
    for s in fam.samples:
        key = s.name
        if s.labels:
            key += "{" + ",".join("%s=\\"%s\\"" % (k, s.labels[k]) for k in sorted(s.labels)) + "}"
        out[key] = [fam.type, s.value]
print(json.dumps(out))
' $file 2>&1`;
    return eval { JSON::PP->new->decode($out) } // { error => $out };
}

sub v {
    my ($name, %l) = @_;
    my $key = $name . (%l ? '{' . join(',', map { "$_=\"$l{$_}\"" } sort keys %l) . '}' : '');
    return $M->{$key} // die "no sample $key\n";
}

# the "ended:" lines twirt logged since $from, summed
sub ended_lines {
    my ($from) = @_;
    my %sum = (count => 0, pids => {}, reasons => {});
    my $log = error_log_text();
    $log = substr($log, $from) if $from <= length $log;
    while ($log =~ /\[\w+\] (\d+)#\d+: .*?twirt: call "[^"]*" stream "[^"]*" ended: (.*?), duration \S+, frames in (\d+) out (\d+), media in (\d+) out (\d+), .*?upstream frames in (\d+) out (\d+), clears \d+, truncates (\d+), tokens (\d+), cost \$([\d.]+)/g) {
        $sum{count}++;
        $sum{pids}{$1}++;
        $sum{reasons}{$2}++;
        $sum{frames_in} += $3;
        $sum{frames_out} += $4;
        $sum{media_in} += $5;
        $sum{media_out} += $6;
        $sum{upstream_frames_in} += $7;
        $sum{upstream_frames_out} += $8;
        $sum{truncates} += $9;
        $sum{tokens} += $10;
        $sum{cost} += $11;
    }
    return \%sum;
}

# the worker pids under the master of the test nginx
sub worker_pids {
    my $master = master_pid() or return ();
    my @pids;
    for my $stat (glob '/proc/[0-9]*/stat') {
        open my $fh, '<', $stat or next;
        my $line = <$fh> // next;
        my ($pid, $ppid) = $line =~ /^(\d+) \(.*\) \S+ (\d+)/s or next;
        push @pids, $pid if $ppid == $master;
    }
    return sort { $a <=> $b } @pids;
}

sub master_pid {
    my $root = $ENV{TEST_NGINX_SERVROOT} || Test::Nginx::Util::server_root();
    open my $fh, '<', "$root/logs/nginx.pid" or return undef;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid;
}

# the status, parsed and checked: (samples, text); fails a test and
# returns () when it does not parse
sub status {
    my ($name, $text) = @_;
    my ($code, $head);
    ($code, $head, $text) = fetch_status() unless defined $text;
    if (defined $code && $code != 200) {
        fail("$name - status 200");
        diag($head);
        return ();
    }
    my ($m, $fam) = eval { parse_exposition($text) };
    if (!$m) {
        fail("$name - the exposition parses: $@");
        diag($text);
        return ();
    }
    return ($m, $text);
}

# polls the status until every call started has ended and logged
sub settled_status {
    my ($name, $from, $want) = @_;
    my $deadline = time + 10;
    my ($m, $text, $ended);
    while (1) {
        ($m, $text) = status($name);
        return () unless $m;
        $ended = ended_lines($from);
        my $n = 0;
        $n += $m->{$_} for grep { /^twirt_calls_ended_total/ } keys %$m;
        last if $m->{twirt_calls_active} == 0
                && $n == $m->{twirt_calls_started_total}
                && $ended->{count} >= $want;
        if (time > $deadline) {
            diag("$name - calls still active or not logged: active "
                 . "$m->{twirt_calls_active}, ended $n, logged "
                 . "$ended->{count} of $want");
            last;
        }
        sleep 0.1;
    }
    return ($m, $text, $ended);
}

sub check_block {
    my ($block, $body, $req_idx, $repeated, $dry_run) = @_;
    return if $dry_run || !defined $block->metrics;
    my $name = $block->name;
    my (@calls, $text, $m);

    my $from = length error_log_text();
    my $ncalls = 0;

    for my $args (grep { /\S/ } split /\n/, $block->calls // '') {
        $args =~ s/\$(TEST_NGINX_\w+)/$ENV{$1} \/\/ ''/ge;
        my $url = "ws://127.0.0.1:" . port() . "/twilio/media";
        $url = $1 if $args =~ s/--url\s+(\S+)//;
        my ($rc, $records, $out) = twilio_call("--url $url $args");
        my @s = grep { $_->{dir} eq 'summary' } @$records;
        is($rc, $block->twilio_exit // 0, "$name - twilio peer exit code")
            or diag($out);
        push @calls, @s;
        $ncalls += $args =~ /--calls\s+(\d+)/ ? $1 : 1;
    }

    if (defined $block->calls) {
        ($m, $text, my $ended) = settled_status($name, $from, $ncalls);
        return unless $m;
        run_metrics($block, $m, $text, \@calls, $ended);
        return;
    }

    ($m, $text) = status($name, $body);
    return unless $m;
    run_metrics($block, $m, $text, [], ended_lines($from));
}

sub run_metrics {
    my ($block, $m, $text, $calls, $ended) = @_;
    my $name = $block->name;

    pass("$name - the exposition parses strictly");

    my $py = python_parse($text);
    if (defined $py) {
        if ($py->{error}) {
            fail("$name - prometheus_client parses it");
            diag($py->{error});
        } else {
            my @bad = grep { !exists $py->{$_}
                             || abs($py->{$_}[1] - $m->{$_}) > 1e-9 } keys %$m;
            is(scalar keys %$py, scalar keys %$m,
               "$name - prometheus_client sees every sample");
            is("@bad", '', "$name - prometheus_client reads the same values");
        }
    }

    local $M = $m;
    my $code = "package main; no strict 'vars'; "
               . "my (\$m, \$calls, \$ended, \$text, \$name) = \@_;\n"
               . $block->metrics;
    my $check = eval "sub { $code }";
    if (!$check) {
        fail("$name - metrics check compiles");
        diag($@);
        return;
    }
    if (!eval { $check->($m, $calls, $ended, $text, $name); 1 }) {
        fail("$name - metrics check runs");
        diag($@);
    }
}

# the families every exposition has, with their types
sub families {
    return (
        twirt_workers => 'gauge',
        twirt_calls_started_total => 'counter',
        twirt_calls_active => 'gauge',
        twirt_calls_ended_total => 'counter',
        twirt_frames_total => 'counter',
        twirt_bytes_total => 'counter',
        twirt_media_messages_total => 'counter',
        twirt_barge_ins_total => 'counter',
        twirt_truncates_total => 'counter',
        twirt_tokens_total => 'counter',
        twirt_cost_usd_total => 'counter',
        twirt_early_audio_dropped_total => 'counter',
        twirt_responses_incomplete_total => 'counter',
        twirt_responses_failed_total => 'counter',
        twirt_responses_retried_total => 'counter',
        twirt_apologies_total => 'counter',
        twirt_silence_prompts_total => 'counter',
        twirt_transcriptions_failed_total => 'counter',
        twirt_errors_total => 'counter',
        twirt_transfers_total => 'counter',
        twirt_tool_calls_total => 'counter',
        twirt_tool_fillers_total => 'counter',
        twirt_control_total => 'counter',
        twirt_campaign_dials_total => 'counter',
        twirt_board_clients => 'gauge',
        twirt_board_slow_total => 'counter',
        twirt_calls_node_lost_total => 'counter',
        twirt_upstream_pool_idle => 'gauge',
        twirt_upstream_pool_takes_total => 'counter',
        twirt_upstream_pool_discarded_total => 'counter',
        twirt_greeting_cache_hits_total => 'counter',
        twirt_greeting_cache_misses_total => 'counter',
        twirt_greeting_cache_stored_total => 'counter',
        twirt_greeting_cache_evicted_total => 'counter',
        twirt_session_rotations_total => 'counter',
        twirt_redis_queued => 'gauge',
        twirt_redis_connected => 'gauge',
        twirt_redis_dropped_total => 'counter',
        twirt_redis_reconnects_total => 'counter',
        twirt_redis_errors_total => 'counter',
        twirt_redis_sent_total => 'counter',
        twirt_upstream_connect_seconds => 'histogram',
        twirt_setup_seconds => 'histogram',
        twirt_bridge_latency_seconds => 'histogram',
    );
}

# what two calls of the same scenario must have left, whatever the worker
sub check_calls {
    my ($name, $m, $calls, $ended, $n) = @_;
    my $sum = sub { my $k = shift; my $t = 0; $t += $_->{$k} // 0 for @$calls; $t };

    is(scalar @$calls, $n, "$name - $n peer summaries");
    is(v('twirt_calls_started_total'), $n, "$name - calls started");
    is(v('twirt_calls_active'), 0, "$name - no call active");
    is(v('twirt_calls_ended_total', reason => 'stop'), $n, "$name - ended by stop");
    is($ended->{count}, $n, "$name - $n ended lines logged");
    is(v('twirt_media_messages_total', direction => 'in'), $sum->('media_sent'),
       "$name - media in: what the peers sent");
    is(v('twirt_media_messages_total', direction => 'in'), $ended->{media_in},
       "$name - media in: as logged");
    is(v('twirt_media_messages_total', direction => 'out'), $ended->{media_out},
       "$name - media out: as logged");
    ok(v('twirt_media_messages_total', direction => 'out') >= $sum->('media_received'),
       "$name - media out: at least what the peers received");
    is(v('twirt_frames_total', side => 'twilio', direction => 'in'), $ended->{frames_in},
       "$name - Twilio frames in, as logged");
    is(v('twirt_frames_total', side => 'twilio', direction => 'out'), $ended->{frames_out},
       "$name - Twilio frames out, as logged");
    is(v('twirt_frames_total', side => 'upstream', direction => 'in'), $ended->{upstream_frames_in},
       "$name - upstream frames in, as logged");
    is(v('twirt_frames_total', side => 'upstream', direction => 'out'), $ended->{upstream_frames_out},
       "$name - upstream frames out, as logged");
    ok(v('twirt_frames_total', side => 'twilio', direction => 'in') > $sum->('media_sent'),
       "$name - Twilio frames in: media and more");
    ok(v('twirt_bytes_total', side => 'twilio', direction => 'in')
       > 160 * $sum->('media_sent'), "$name - Twilio bytes in");
    ok(v('twirt_bytes_total', side => $_->[0], direction => $_->[1])
       >= v('twirt_frames_total', side => $_->[0], direction => $_->[1]) * 2,
       "$name - bytes $_->[0] $_->[1]: at least 2 per frame")
        for [twilio => 'out'], [upstream => 'in'], [upstream => 'out'];
    is(v('twirt_tokens_total'), $ended->{tokens}, "$name - tokens, as logged");
    ok(abs(v('twirt_cost_usd_total') - $ended->{cost}) <= 1e-6 * $n,
       "$name - cost, as logged (" . v('twirt_cost_usd_total') . " vs $ended->{cost})");
    is(v('twirt_truncates_total'), $ended->{truncates}, "$name - truncates, as logged");
    is(v('twirt_upstream_connect_seconds_count'), $n, "$name - upstream connect observed per call");
    is(v('twirt_setup_seconds_count'), $n, "$name - setup observed per call");
    ok(v('twirt_bridge_latency_seconds_count') > 0,
       "$name - bridge latency observed");
    ok(v('twirt_bridge_latency_seconds_count')
       <= v('twirt_frames_total', side => 'twilio', direction => 'in')
          + v('twirt_frames_total', side => 'upstream', direction => 'in'),
       "$name - bridge latency: at most one per frame in");
    ok(v('twirt_setup_seconds_sum') >= v('twirt_upstream_connect_seconds_sum'),
       "$name - setup includes the upstream connect");
    my @errors = grep { /^twirt_errors_total/ && $m->{$_} } sort keys %$m;
    is("@errors", '', "$name - no error counted");
}

# one call that failed: its reason, an error of its kind, and no time
# observed for the step it never reached
sub check_failed_call {
    my ($name, $ended, $reason, $kind, $histogram) = @_;
    is(v('twirt_calls_started_total'), 1, "$name - started");
    is(v('twirt_calls_active'), 0, "$name - not active");
    is(v('twirt_calls_ended_total', reason => $reason), 1,
       "$name - ended: $reason")
        or diag('logged: ' . join ', ', keys %{ $ended->{reasons} });
    ok(v('twirt_errors_total', kind => $kind) >= 1, "$name - a $kind error");
    is(v("${histogram}_count"), 0, "$name - no $histogram observed");
}

__DATA__

=== TEST 1: before any call: every family, HELP and TYPE, all zero, the Prometheus content type
--- request
GET /status
--- response_headers
Content-Type: text/plain; version=0.0.4
--- metrics
my %f = main::families();
for my $f (sort keys %f) {
    like($text, qr/^# HELP \Q$f\E \S.*\n# TYPE \Q$f\E $f{$f}\n/m, "$f: HELP and TYPE $f{$f}");
}
my @families = $text =~ /^# TYPE (\S+)/mg;
is(scalar @families, scalar keys %f, 'no other family');
is(main::v('twirt_workers'), 1, 'one worker, counting');
my @nonzero = grep { $_ ne 'twirt_workers' && $m->{$_} } sort keys %$m;
is("@nonzero", '', 'everything else is zero');
for my $r (qw(stop end_call transfer twilio_closed twilio_lost idle_timeout
              max_duration session_expired hangup machine idle upstream_failed setup_failed
              response_failed protocol_error other)) {
    ok(exists $m->{"twirt_calls_ended_total{reason=\"$r\"}"}, "reason $r listed");
}
for my $k (qw(requested refused answered no-answer busy failed canceled
              returned)) {
    ok(exists $m->{"twirt_transfers_total{result=\"$k\"}"}, "transfer result $k listed");
}
for my $k (qw(twilio_protocol upstream_connect upstream_tls upstream_http
              upstream_protocol realtime_error session_rejected send_queue_full
              invalid_json)) {
    ok(exists $m->{"twirt_errors_total{kind=\"$k\"}"}, "kind $k listed");
}
is_deeply([ $text =~ /^twirt_upstream_pool_takes_total\{result="([^"]+)"\}/mg ],
          [qw(hit miss)], 'pool takes: hit and miss');
is_deeply([ $text =~ /^twirt_upstream_pool_discarded_total\{reason="([^"]+)"\}/mg ],
          [qw(age closed message)], 'pool discards, by reason');
is_deeply([ $text =~ /^twirt_session_rotations_total\{result="([^"]+)"\}/mg ],
          [qw(ok forced failed)], 'session rotations, by result');
is_deeply([ $text =~ /^twirt_upstream_connect_seconds_bucket\{le="([^"]+)"\}/mg ],
          [qw(0.001 0.002 0.005 0.01 0.025 0.05 0.1 0.25 0.5 1 2.5 5 +Inf)],
          'connect buckets, in seconds');
is_deeply([ $text =~ /^twirt_bridge_latency_seconds_bucket\{le="([^"]+)"\}/mg ],
          [qw(0.00001 0.000025 0.00005 0.0001 0.00025 0.0005 0.001 0.0025 0.005 0.01 0.05 +Inf)],
          'bridge buckets, in seconds');
--- no_error_log
[error]
[alert]



=== TEST 2: only GET and HEAD
--- request
POST /status
hello
--- error_code: 405



=== TEST 3: HEAD: the headers alone
--- request
HEAD /status
--- response_headers
Content-Type: text/plain; version=0.0.4
--- response_body



=== TEST 4: two Japanese calls: the figures match what the peers and the log recorded
--- config
    location = /twilio/media { twirt_stream; }
--- calls
--scenario ja-booking --duration-ms 6000 --calls 2
--- metrics
main::check_calls($name, $m, $calls, $ended, 2);
is(main::v('twirt_workers'), 1, 'one worker');
ok(main::v('twirt_bridge_latency_seconds_sum') > 0, 'bridge latency summed');
--- no_error_log
[alert]



=== TEST 5: a rejected session update: setup_failed, session_rejected
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime&sim_fail=reject_session_update;
    }
--- calls
--scenario ja-booking
--- metrics
main::check_failed_call($name, $ended, 'setup_failed', 'session_rejected',
                        'twirt_setup_seconds');



=== TEST 6: the Realtime API refuses the connection: upstream_failed, upstream_connect
--- config
    location = /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$TEST_NGINX_CLOSED_PORT/v1/realtime;
    }
--- calls
--scenario ja-booking
--- metrics
main::check_failed_call($name, $ended, 'upstream_failed', 'upstream_connect',
                        'twirt_upstream_connect_seconds');



=== TEST 7: two workers: calls on both are summed once; a reload keeps the zone
--- nginx_workers: 2
--- http_config
    server {
        listen 127.0.0.1:$TEST_NGINX_REUSEPORT_PORT reuseport;
        location = /twilio/media { twirt_stream; }
    }
--- config
    location = /twilio/media { twirt_stream; }
--- calls
--url ws://127.0.0.1:$TEST_NGINX_REUSEPORT_PORT/twilio/media --scenario ja-booking --duration-ms 6000 --calls 6
--- metrics
my @workers = main::worker_pids();
is(scalar @workers, 2, 'two workers');
is(main::v('twirt_workers'), 2, 'both count');
main::check_calls($name, $m, $calls, $ended, 6);
my @pids = sort keys %{ $ended->{pids} };
diag("calls per worker: " . join(', ', map { "$_: $ended->{pids}{$_}" } @pids));
is(scalar(grep { my $p = $_; grep { $_ == $p } @workers } @pids), scalar @pids,
   'the calls ended in the workers');
SKIP: {
    skip('all calls landed on one worker this time', 1) if @pids < 2;
    pass('calls on both workers, summed once');
}

# a reload: new workers, the same zone, nothing lost or counted twice
my $started = main::v('twirt_calls_started_total');
my $media = main::v('twirt_media_messages_total', direction => 'in');
kill 'HUP', main::master_pid();
my $deadline = time + 10;
my @now;
while (time < $deadline) {
    @now = main::worker_pids();
    last if @now == 2 && !grep { my $p = $_; grep { $_ == $p } @workers } @now;
    Time::HiRes::sleep(0.1);
}
ok(@now == 2 && !grep({ my $p = $_; grep { $_ == $p } @workers } @now), 'new workers after the reload');
my ($after) = main::status('after reload');
local $main::M = $after;
is(main::v('twirt_workers'), 2, 'two workers count after the reload');
is(main::v('twirt_calls_started_total'), $started, 'calls started kept');
is(main::v('twirt_media_messages_total', direction => 'in'), $media, 'media kept');
is(main::v('twirt_upstream_connect_seconds_count'), 6, 'histograms kept');

# and a call on the new workers adds to them
my ($rc, $records, $out) = Twirt::Peers::twilio_call(
    "--url ws://127.0.0.1:" . main::port() . "/twilio/media --scenario ja-booking --duration-ms 3000");
is($rc, 0, 'a call after the reload') or diag($out);
my ($call) = grep { $_->{dir} eq 'summary' } @$records;
$deadline = time + 10;
while (time < $deadline) {
    ($after) = main::status('after a call');
    last if $after->{twirt_calls_active} == 0 && $after->{'twirt_calls_ended_total{reason="stop"}'} == 7;
    Time::HiRes::sleep(0.1);
}
$main::M = $after;
is(main::v('twirt_calls_started_total'), $started + 1, 'one more call started');
is(main::v('twirt_calls_ended_total', reason => 'stop'), 7, 'one more ended');
is(main::v('twirt_media_messages_total', direction => 'in'), $media + $call->{media_sent},
   'its media added');
--- no_error_log
[alert]
