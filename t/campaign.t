# Campaigns (一斉コール), one node: the control API (create, rows as JSON
# and as CSV in UTF-8 with a BOM and in Shift_JIS, pause, resume, cancel,
# status, results, the CSV export), the do-not-call list, the rows'
# outcomes and retries, Twilio's errors by kind (an invalid number, the
# credentials, rate limits, server errors, an answer that never came), the
# answering machine reached through the call-control path, hanging up a
# live call, and every bad input the API can get.  Twilio is
# t/peers/twilio_rest.py; its record is what was dialed.  The scale, the
# pacing, two nodes, a node killed and Redis restarted: t/campaign_scale.t.
# Ports: the server port, and + 1 for the TLS server of the streams.

use strict;
use warnings;
use utf8;
use FindBin;
use lib "$FindBin::Bin/lib";
use Encode ();
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(time sleep);
use Twirt::Peers;
use Twirt::Check;
use Twirt::Redis;
use Twirt::StandIn;
use Test::Nginx::Socket 'no_plan';

log_level('info');
master_on();
workers(2);             # any worker dispatches; Redis coordinates them

my $certs = tempdir(CLEANUP => 1);
system("$FindBin::Bin/../util/certs", $certs) == 0 or die "util/certs failed";
$ENV{TEST_NGINX_CERTS} = $certs;

our $Sid = 'AC' . ('c0ffee' x 5) . '01';
our $Token = 'campaign-auth-token-77a1';
our $From = '+81300000000';
$ENV{TEST_NGINX_ACCOUNT_SID} = $Sid;
$ENV{TEST_NGINX_TOKEN} = $Token;
$ENV{TEST_NGINX_TLS_PORT} = server_port() + 1;
# what a block without credentials in its configuration gets (TEST 12)
$ENV{TWILIO_ACCOUNT_SID} = $Sid;
$ENV{TWILIO_AUTH_TOKEN} = $Token;

$ENV{TEST_NGINX_REDIS_SOCKET} = redis_start();

my $sim = sim_start();
$ENV{TEST_NGINX_SIM_PORT} = $sim->{port};
our $Sim = $sim;

my @account = ('--account-sid', $Sid, '--auth-token', $Token,
               '--caller-id', $From, '--ca-file', "$certs/ca.crt",
               '--ring-ms', '100', '--call-ms', '1500', '--cps', '50');

# numbers: +81 3 1000 00NN; a script says what each callee does
my $script = "$certs/script.json";
{
    open my $fh, '>', $script or die;
    print $fh JSON::PP->new->encode({
        '+81310000002' => { outcome => 'busy' },
        '+81310000003' => { attempts => [{ outcome => 'busy' },
                                          { outcome => 'completed' }] },
        '+81310000004' => { outcome => 'no-answer' },
        '+81310000005' => { error => 21217 },
        '+81310000006' => { outcome => 'machine', amd_ms => 1500,
                            call_ms => 30000 },
        '+81310000007' => { outcome => 'completed', call_ms => 20000 },
        '*' => { outcome => 'completed', scenario => 'ja-booking' },
    });
    close $fh;
}

our $Rest = twilio_rest_start(@account, '--script', $script);
our $Limited = twilio_rest_start(@account, '--rate-limit', '1');
our $Slow = twilio_rest_start(@account, '--create-delay-ms', '2500');
$ENV{TEST_NGINX_REST_PORT} = $Rest->{port};
$ENV{TEST_NGINX_LIMITED_PORT} = $Limited->{port};
$ENV{TEST_NGINX_SLOW_PORT} = $Slow->{port};

our $json = JSON::PP->new->utf8->canonical;
binmode(Test::More->builder->$_, ':encoding(UTF-8)')
    for qw(output failure_output todo_output);

# a request to the API: (status, decoded JSON or undef, raw body)
sub api {
    my ($method, $path, $body, $type) = @_;
    return http_json($method, $path, $body, type => $type, port => server_port());
}

# polls the campaign's status until $until says so (bounded)
sub status_until {
    my ($id, $until, $secs) = @_;
    my $deadline = time + ($secs // 30);
    my $s;
    while (1) {
        (undef, $s) = api('GET', "/campaigns/$id");
        return $s if $s && $until->($s);
        return $s if time > $deadline;
        sleep 0.1;
    }
}

sub finished { return status_until($_[0], sub { $_[0]{status} eq 'finished' }, $_[1]) }

sub results {
    my ($id) = @_;
    my (undef, $r) = api('GET', "/campaigns/$id/results");
    return { map { $_->{to} => $_ } @{ $r->{rows} // [] } };
}

add_block_preprocessor(sub {
    my $block = shift;
    $block->set_value('request', "GET /ping\n") unless defined $block->request;
    # no block may crash a worker
    $block->set_value('no_error_log', "exited on signal\n[emerg]\n")
        unless defined $block->no_error_log;
    my $api = $block->api_port // '$TEST_NGINX_REST_PORT';
    my $creds = defined $block->env_credentials ? '' : <<'CREDS';
    twirt_twilio_account_sid $TEST_NGINX_ACCOUNT_SID;
    twirt_twilio_auth_token $TEST_NGINX_TOKEN;
CREDS
    $block->set_value('http_config', <<"CONF" . ($block->http_config // ''));
    twirt_openai_url ws://127.0.0.1:\$TEST_NGINX_SIM_PORT/v1/realtime?model=gpt-realtime;
    twirt_openai_api_key sk-test;
    twirt_redis unix:\$TEST_NGINX_REDIS_SOCKET;
    twirt_redis_timeout 10s;            # nginx may run under valgrind
    twirt_instructions "[scenario:{{scenario}}] [calltag:{{calltag}}] お客様は{{name}}様、ご予約は{{date}}です。";
    twirt_greeting "{{name}}様、さくら歯科です。{{date}}のご予約の確認です。";
$creds
    twirt_twilio_api_url http://127.0.0.1:$api;
    twirt_outbound_url http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/twilio/voice;
    twirt_outbound_status_callback http://127.0.0.1:\$TEST_NGINX_SERVER_PORT/twilio/call-status;
    twirt_stream_url wss://127.0.0.1:\$TEST_NGINX_TLS_PORT/twilio/media;
    twirt_campaign_cps 10;
    twirt_campaign_lease 3s;

    server {
        listen 127.0.0.1:\$TEST_NGINX_TLS_PORT ssl;
        ssl_certificate \$TEST_NGINX_CERTS/localhost.crt;
        ssl_certificate_key \$TEST_NGINX_CERTS/localhost.key;
        location = /twilio/media { twirt_stream; }
    }
CONF
    my $token = $block->token // '$TEST_NGINX_TOKEN';
    my $token_line = defined $block->env_credentials ? ''
                   : "twirt_twilio_auth_token $token;";
    my $extra = $block->campaign_conf // '';
    $block->set_value('config', <<"CONF" . ($block->config // ''));
    location = /ping { return 200 'ok'; }
    location /campaigns/ {
        allow 127.0.0.1;
        deny all;
        client_max_body_size 8m;
        twirt_campaigns;
        $token_line
        $extra
    }
    location = /twilio/voice {
        twirt_twiml;
        twirt_parameter scenario ja-booking;
        twirt_parameter calltag \$twirt_param_CallSid;
    }
    location = /twilio/call-status { twirt_call_status; }
    location = /status { twirt_status; }
CONF
});

# --- check: Perl run once nginx is up (after the /ping request)
check_sections();

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a campaign of JSON rows runs to its end: each number dialed once, the agent greets each customer by name, retries, outcomes by row, results and the CSV export
--- check
api('POST', '/campaigns/dnc', { numbers => ['03-1000-0008'] });
my ($st, $c) = api('POST', '/campaigns/', {
    name => '予約確認 12月', agent => 'clinic', from => '03-0000-0000',
    cps => 5, concurrency => 4, retries => 1, retry_delay => 1, timeout => 20,
    variables => { date => '12月1日' },
    rows => [
        { to => '03-1000-0001', variables => { name => '山田太郎' } },
        { to => '03-1000-0002', variables => { name => '佐藤花子' } },
        { to => '03-1000-0003', variables => { name => '鈴木一郎', date => '12月2日' } },
        { to => '03-1000-0004', variables => { name => '高橋美咲' } },
        { to => '+81310000001', variables => { name => '山田太郎(重複)' } },
        { to => '03-1000-0005', variables => { name => '無効な番号' } },
        { to => '12345', variables => { name => '桁不足' } },
        { to => '03-1000-0008', variables => { name => '電話不要' } },
    ] });
is($st, 201, 'created') or diag(explain($c));
my $id = $c->{id} // '';
like($id, qr/^c[0-9a-f]{16}$/, 'with an id');
is($c->{status}, 'running', 'running');
is($c->{upload}{accepted}, 5, 'five rows to dial');
is($c->{upload}{rows}, 7, 'seven rows kept (the duplicate is not)');
is_deeply([map { [$_->{row}, $_->{to}, $_->{same_as}] } @{ $c->{upload}{duplicates} }],
          [[5, '+81310000001', 1]], 'the duplicate number reported, with its row');
is_deeply([map { [$_->{row}, $_->{to}] } @{ $c->{upload}{invalid} }],
          [[7, '12345']], 'the invalid number reported by row');
like($c->{upload}{invalid}[0]{error} // '', qr/digits|number/, 'with what is wrong');
is_deeply([map { $_->{to} } @{ $c->{upload}{dnc} }], ['+81310000008'], 'the do-not-call number');

my $s = finished($id, 60);
is($s->{status}, 'finished', 'the campaign finishes');
is_deeply($s->{outcomes}, { completed => 2, busy => 1, no_answer => 1, failed => 0,
                            invalid => 2, dnc => 1, voicemail => 0, cancelled => 0 },
          'outcomes counted') or diag(explain($s));
is($s->{queued} + $s->{in_progress}, 0, 'nothing left');
ok(defined $s->{cost_usd}, 'the cost so far is reported');

my $by = attempts_by_row(rest_attempts($main::Rest, $id));
is_deeply([dial_problems($by, 1, [1 .. 5], 1)], [], 'no row dialed twice, retries after the delay');
is(scalar @{ $by->{1} }, 1, 'a completed row is dialed once');
is(scalar @{ $by->{2} }, 2, 'busy: dialed again once (one retry)');
is(scalar @{ $by->{3} }, 2, 'busy, then answered');
is(scalar @{ $by->{4} }, 2, 'no answer, twice');
is(scalar @{ $by->{5} }, 1, 'a number Twilio refuses is never retried');
ok(!$by->{6} && !$by->{7}, 'invalid and do-not-call rows are not dialed');

my $first = $by->{1}[0];
my $q = url_query($first->{url});
is($q->{agent}, 'clinic', 'the Url carries the agent');
is($q->{'var.name'}, '山田太郎', 'and the row\'s variables');
is($q->{'var.date'}, '12月1日', 'and the campaign\'s');
is(url_query($by->{3}[0]{url})->{'var.date'}, '12月2日', 'a row\'s variable over the campaign\'s');
is_deeply([@{$q}{qw(campaign row attempt)}], [$id, 1, 1], 'and the row');
is(url_query($by->{3}[1]{url})->{attempt}, 2, 'the retry is attempt 2');

my $r = results($id);
is($r->{'+81310000001'}{outcome}, 'completed', 'row 1 completed');
is($r->{'+81310000001'}{attempts}, 1, 'in one attempt');
like($r->{'+81310000001'}{call_sid} // '', qr/^CA/, 'with its call');
ok(defined $r->{'+81310000001'}{duration}, 'and its duration');
is($r->{'+81310000001'}{variables}{name}, '山田太郎', 'the variables, intact');
is($r->{'+81310000003'}{outcome}, 'completed', 'row 3 answered its retry');
is($r->{'+81310000003'}{history}, 'busy completed', 'its history');
is($r->{'+81310000002'}{outcome}, 'busy', 'row 2 busy twice');
is($r->{'+81310000004'}{outcome}, 'no_answer', 'row 4 no answer');
is($r->{'+81310000005'}{outcome}, 'invalid', 'row 5: Twilio refused the number');
like($r->{'+81310000005'}{detail} // '', qr/21217/, 'with Twilio\'s code');
is($r->{'+81310000008'}{outcome}, 'dnc', 'row 7: do not call');
is($r->{'12345'}{outcome}, 'invalid', 'the invalid number is a row');

# the agent spoke first, with the customer's name
my $conn = Twirt::Peers::_sim_conn([$main::Sim], $r->{'+81310000001'}{call_sid});
my ($update) = grep { ($_->{event}{type} // '') eq 'session.update' } @$conn;
like($update->{event}{session}{instructions}, qr/お客様は山田太郎様、ご予約は12月1日です/,
     'the instructions name the customer and the date');
my ($create) = grep { ($_->{event}{type} // '') eq 'response.create' } @$conn;
like(JSON::PP->new->encode($create->{event}), qr/山田太郎様、さくら歯科です。12月1日のご予約の確認です/,
     'the agent speaks first, greeting the customer by name');

my $t = $r->{'+81310000001'}{transcript} // [];
ok(scalar(@$t), 'the completed call\'s transcript is in the results');

my ($cs, undef, $csv, $raw) = api('GET', "/campaigns/$id/results.csv");
is($cs, 200, 'the CSV export');
like($raw, qr{Content-Type: text/csv; charset=utf-8}i, 'as CSV');
is(substr($csv, 0, 3), "\xef\xbb\xbf", 'UTF-8 with a BOM, for Excel');
my $text = substr($csv, 3);
utf8::decode($text);
my ($rows, $crlf) = csv_parse($text);
ok($crlf, 'CRLF lines');
my @head = @{ $rows->[0] };
is_deeply([@head[0 .. 3]], [qw(row line to outcome)], 'a header line');
my ($ni) = grep { $head[$_] eq 'name' } 0 .. $#head;
my ($oi) = grep { $head[$_] eq 'outcome' } 0 .. $#head;
my %csv = map { $_->[2] => $_ } @$rows[1 .. $#$rows];
is($csv{'+81310000001'}[$ni], '山田太郎', 'the variables in their columns, in Japanese');
is($csv{'+81310000002'}[$oi], 'busy', 'the outcomes');
is(scalar(@$rows) - 1, 7, 'every row');



=== TEST 2: CSV uploads as Excel saves them: UTF-8 with a BOM and Shift_JIS (CP932); quoted cells, a Japanese phone column, bad rows reported by line
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'CSV', from => $main::From, paused => JSON::PP::true });
is($st, 201, 'a paused campaign');
my $id = $c->{id};
is($c->{status}, 'paused', 'paused');

my $utf8 = "\xef\xbb\xbf" . Encode::encode('UTF-8',
    "電話番号,name,date\r\n090-1234-5678,山田太郎,12月1日\r\n"
    . "\"03-1234-5678\",\"佐藤, 花子\",\"12月\"\"2\"\"日\"\r\n"
    . "0120-abc,不正,x\r\n");
my ($s1, $u1) = api('POST', "/campaigns/$id/rows", $utf8, 'text/csv');
is($s1, 200, 'UTF-8 with a BOM accepted') or diag(explain($u1));
is($u1->{accepted}, 2, 'two rows');
is_deeply([map { [$_->{line}, $_->{to}] } @{ $u1->{invalid} }], [[4, '0120-abc']],
          'the bad number reported with its line');

my $sjis = Encode::encode('cp932',
    "電話,name,date\r\n080-1111-2222,髙橋①,ｶﾀｶﾅ\r\n090-1234-5678,重複,x\r\n");
my ($s2, $u2) = api('POST', "/campaigns/$id/rows", $sjis, 'text/csv');
is($s2, 200, 'Shift_JIS accepted') or diag(explain($u2));
is($u2->{accepted}, 1, 'one new row');
is_deeply([map { [$_->{line}, $_->{to}] } @{ $u2->{duplicates} }], [[3, '+819012345678']],
          'a number already in the campaign (another upload) is a duplicate');

my (undef, $res) = api('GET', "/campaigns/$id/results");
my %r = map { $_->{to} => $_ } @{ $res->{rows} };
is($r{'+819012345678'}{variables}{name}, '山田太郎', 'UTF-8 names intact');
is($r{'+81312345678'}{variables}{name}, '佐藤, 花子', 'a quoted cell with a comma');
is($r{'+81312345678'}{variables}{date}, '12月"2"日', 'doubled quotes');
is($r{'+818011112222'}{variables}{name}, '髙橋①', 'CP932 characters converted');
is($r{'+818011112222'}{variables}{date}, 'ｶﾀｶﾅ', 'half-width katakana');
is($r{'+819012345678'}{state}, 'queued', 'queued while paused');

my ($s3, $e3) = api('POST', "/campaigns/$id/rows", "name,date\r\n山田,x\r\n", 'text/csv');
is($s3, 400, 'no phone column: 400');
like($e3->{error}{message}, qr/phone column/, 'says so');
my ($s4, $e4) = api('POST', "/campaigns/$id/rows", "to,name\r\n090-1234-5678,\"open\r\n", 'text/csv');
is($s4, 400, 'an unclosed quote: 400');
like($e4->{error}{message}, qr/line 2/, 'with its line');
my ($s5, $e5) = api('POST', "/campaigns/$id/rows", "to,名前\r\n090-1234-5678,x\r\n", 'text/csv');
is($s5, 400, 'a variable name templates cannot use: 400');
like($e5->{error}{message}, qr/variable names|名前/, 'says which');
api('POST', "/campaigns/$id/cancel");
my (undef, $after) = api('GET', "/campaigns/$id");
is($after->{outcomes}{cancelled}, 3, 'cancelled: its queued rows too');
my $dialed = grep { ($_->{campaign} // '') eq $id } @{ rest_attempts($main::Rest) };
is($dialed, 0, 'nothing of a paused campaign was dialed');



=== TEST 3: bad requests get a JSON error that says what is wrong
--- check
my @bad = (
    ['POST', '/campaigns/', '{', 400, 'invalid_json'],
    ['POST', '/campaigns/', [1], 400, 'invalid_json'],
    ['POST', '/campaigns/', { from => $main::From }, 400, 'invalid_request', qr/"name"/],
    ['POST', '/campaigns/', { name => 'x' }, 400, 'invalid_request', qr/"from"/],
    ['POST', '/campaigns/', { name => 'x', from => 'abc' }, 400, 'invalid_request', qr/"from"/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, cps => 0 }, 400, 'invalid_request', qr/"cps"/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, cps => 0.0004 }, 400, 'invalid_request', qr/"cps".*0\.1/],
    ['POST', '/campaigns/dnc', { numbers => [map { sprintf('+8131000%04d', 9000 + $_) } 1 .. 22] }, 400, 'invalid_request', qr/1 to 21 numbers/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, concurrency => 0 }, 400, 'invalid_request', qr/concurrency/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, retries => 11 }, 400, 'invalid_request', qr/retries/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, window => 'mon-fri 20:00-09:00 Asia/Tokyo' }, 400, 'invalid_request', qr/window.*after/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, window => 'someday 09:00-20:00 Asia/Tokyo' }, 400, 'invalid_request', qr/days/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, window => 'daily 09:00-20:00 Mars/Olympus' }, 400, 'invalid_request', qr/time zone/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, window => 'daily 09:00-20:00 ../../etc/passwd' }, 400, 'invalid_request', qr/time zone/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, machine_detection => 'message' }, 400, 'invalid_request', qr/machine_message/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, machine_detection => 'maybe' }, 400, 'invalid_request', qr/machine_detection/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, rows => [] }, 400, 'invalid_rows', qr/rows/],
    ['POST', '/campaigns/', { name => 'x', from => $main::From, variables => { 'a-b' => 'x' } }, 400, 'invalid_request', qr/variable names/],
    ['GET', '/campaigns/c0000000000000000', undef, 404, 'not_found', qr/c0000000000000000/],
    ['GET', '/campaigns/NOT-AN-ID', undef, 404, 'not_found'],
    ['POST', '/campaigns/c0000000000000000/rows', [{ to => '090-1234-5678' }], 404, 'not_found'],
    ['POST', '/campaigns/c0000000000000000/pause', undef, 404, 'not_found'],
    ['DELETE', '/campaigns/', undef, 405, 'method'],
    ['GET', '/campaigns/c0000000000000000/rows', undef, 405, 'method'],
    ['GET', '/campaigns/a/b/c/d', undef, 404, 'not_found'],
    ['POST', '/campaigns/dnc', { numbers => ['x'] }, 400, 'invalid_number', qr/numbers\[0\]/],
    ['GET', '/campaigns/dnc/abc', undef, 400, 'invalid_number'],
    ['POST', '/campaigns/calls/not-a-sid/hangup', undef, 400, 'invalid_request'],
    ['POST', '/campaigns/calls/CA00000000000000000000000000000000/hangup', undef, 404, 'not_found'],
);
for my $b (@bad) {
    my ($m, $path, $body, $want, $kind, $re) = @$b;
    $body = $json->encode($body) if ref $body;
    my ($st, $e, $text) = api($m, $path, $body);
    my $what = "$m $path " . (defined $body ? substr($body, 0, 60) : '');
    is($st, $want, "$what: $want");
    is($e->{error}{kind}, $kind, "$what: $kind") or diag($text);
    like($e->{error}{message}, $re, "$what: says what") if $re;
}

my ($ds, $d) = api('POST', '/campaigns/dnc', { numbers => [map { sprintf('+8131000%04d', 9000 + $_) } 1 .. 21] });
is($ds, 200, 'the most numbers at once: 21');
is($d->{changed}, 21, 'all added');
api('DELETE', sprintf('/campaigns/dnc/+8131000%04d', 9000 + $_)) for 1 .. 21;

# a row's own fault is the row's: reported, the others kept
my ($st, $c) = api('POST', '/campaigns/', { name => 'rows', from => $main::From,
    paused => JSON::PP::true, rows => [
        { to => '090-1111-1111' }, 'not an object', { to => 5 },
        { to => '090-2222-2222', variables => { name => [1] } },
        { to => '090-3333-3333', variables => { name => 'x' x 600 } } ] });
is($st, 201, 'rows with faults: created');
is($c->{upload}{accepted}, 1, 'the good row kept');
is_deeply([map { $_->{row} } @{ $c->{upload}{invalid} }], [2, 3, 4, 5], 'each bad one reported by row');
like($c->{upload}{invalid}[2]{error}, qr/must be a string/, 'a variable that is not a string');
like($c->{upload}{invalid}[3]{error}, qr/characters/, 'a variable too long for Twilio');



=== TEST 4: pause, resume, cancel: a paused campaign dials nothing, a resumed one goes on, a cancelled one cancels what was not dialed
--- check
my @rows = map { { to => sprintf('+8131000%04d', 100 + $_) } } 1 .. 6;
my ($st, $c) = api('POST', '/campaigns/', { name => 'pause', from => $main::From,
    cps => 2, concurrency => 1, rows => \@rows });
my $id = $c->{id};
status_until($id, sub { $_[0]{dialed} >= 1 });
my ($ps, $p) = api('POST', "/campaigns/$id/pause");
is($ps, 200, 'paused');
is($p->{status}, 'paused', 'the status says so');
my ($again) = api('POST', "/campaigns/$id/pause");
is($again, 409, 'pausing a paused campaign: 409');
my $when = time;
my $n = scalar @{ rest_attempts($main::Rest, $id) };
my $s = status_until($id, sub { $_[0]{in_progress} == 0 }, 20);
is($s->{in_progress}, 0, 'the call in progress ends');
my $later = scalar @{ rest_attempts($main::Rest, $id) };
my (undef, $after) = api('GET', "/campaigns/$id");
is($after->{dialed}, $later, 'nothing more dialed while paused');
ok($after->{queued} > 0, 'rows wait');
my ($rs) = api('POST', "/campaigns/$id/resume");
is($rs, 200, 'resumed');
status_until($id, sub { $_[0]{dialed} > $later }, 20);
my ($cs, $cc) = api('POST', "/campaigns/$id/cancel");
is($cs, 200, 'cancelled');
is($cc->{status}, 'cancelled', 'the status says so');
ok($cc->{outcomes}{cancelled} >= 1, 'queued rows are cancelled');
my ($rs2) = api('POST', "/campaigns/$id/resume");
is($rs2, 409, 'a cancelled campaign cannot resume');
my ($up) = api('POST', "/campaigns/$id/rows", [{ to => '090-9999-9999' }]);
is($up, 409, 'nor take rows');
my (undef, $list) = api('GET', '/campaigns/');
ok((grep { $_->{id} eq $id && $_->{status} eq 'cancelled' } @{ $list->{campaigns} }),
   'the list of campaigns has it');



=== TEST 5: the do-not-call list: added, checked, removed through the API; checked again at dial time
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'dnc', from => $main::From,
    paused => JSON::PP::true, cps => 5,
    rows => [{ to => '03-1000-0201' }, { to => '03-1000-0202' }] });
my $id = $c->{id};
my ($as, $a) = api('POST', '/campaigns/dnc', { numbers => ['03-1000-0202', '+81310000203'] });
is($as, 200, 'numbers added');
is($a->{changed}, 2, 'two new');
my (undef, $chk) = api('GET', '/campaigns/dnc/03-1000-0202');
is($chk->{changed}, 1, 'a number on the list');
my (undef, $chk2) = api('GET', '/campaigns/dnc/03-1000-0999');
is($chk2->{changed}, 0, 'a number not on it');
my (undef, $all) = api('GET', '/campaigns/dnc');
ok((grep { $_ eq '+81310000203' } @{ $all->{numbers} }), 'listed');
my ($ds, $d) = api('DELETE', '/campaigns/dnc/+81310000203');
is($ds, 200, 'removed');
is($d->{changed}, 1, 'one removed');
api('POST', "/campaigns/$id/resume");
my $s = finished($id);
is($s->{outcomes}{dnc}, 1, 'the number added after the upload is not dialed');
is($s->{outcomes}{completed}, 1, 'the other is');
my @dialed = map { $_->{to} } @{ rest_attempts($main::Rest, $id) };
is_deeply(\@dialed, ['+81310000201'], 'Twilio saw one call');
like(results($id)->{'+81310000202'}{detail} // '', qr/dial time/, 'the outcome says when');



=== TEST 6: wrong credentials pause the campaign with a clear error; nothing is lost
--- token: wrong-token
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'auth', from => $main::From,
    rows => [{ to => '03-1000-0301' }, { to => '03-1000-0302' }] });
my $id = $c->{id};
my $s = status_until($id, sub { $_[0]{status} eq 'paused' && $_[0]{queued} == 2 });
is($s->{status}, 'paused', 'paused');
like($s->{error} // '', qr/credentials.*20003/, 'the error says why');
is($s->{queued}, 2, 'both rows still queued');
is($s->{dialed}, 0, 'no attempt counted');
ok(log_wait(qr/refused the request with 401, code 20003/), 'logged');
unlike(error_log_text(), qr/wrong-token/, 'the credentials are never logged');



=== TEST 7: rate limited by Twilio (429): the row waits and the pacing slows; every row is placed once
--- api_port: $TEST_NGINX_LIMITED_PORT
--- check
my @rows = map { { to => sprintf('+8131000%04d', 400 + $_) } } 1 .. 6;
my ($st, $c) = api('POST', '/campaigns/', { name => 'limited', from => $main::From,
    cps => 10, concurrency => 6, rows => \@rows });
my $id = $c->{id};
my $s = finished($id, 60);
is($s->{status}, 'finished', 'finished');
is($s->{outcomes}{completed}, 6, 'every row completed');
my $att = rest_attempts($main::Limited, $id);
my @refused = grep { $_->{http} == 429 } @$att;
ok(@refused >= 1, 'Twilio refused some requests with 429') or diag(explain($att));
my @placed = grep { $_->{http} == 201 } @$att;
is(scalar @placed, 6, 'each row placed once');
my %to = map { $_->{to} => 1 } @placed;
is(scalar keys %to, 6, 'six numbers');
ok(log_wait(qr/not placed, rate_limited/), 'the back-off is logged');
my (undef, $m) = http_get_text('/status');
my ($ok) = $m =~ /^twirt_campaign_dials_total\{result="ok"\} (\d+)$/m;
my ($rl) = $m =~ /^twirt_campaign_dials_total\{result="rate_limited"\} (\d+)$/m;
is($ok, 6, 'the dials counted by result: placed');
is($rl, scalar @refused, 'and rate limited');



=== TEST 8: an answer that never came (and callbacks that never come): Twilio's list of calls is asked before the row is dialed again, then the call itself
--- api_port: $TEST_NGINX_SLOW_PORT
--- http_config
    twirt_twilio_timeout 1s;
--- campaign_conf
twirt_outbound_status_callback http://127.0.0.1:9/lost;
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'slow', from => $main::From,
    rows => [{ to => '03-1000-0501' }] });
my $id = $c->{id};
my $s = finished($id, 40);
is($s->{outcomes}{completed}, 1, 'the row completed');
my $att = rest_attempts($main::Slow, $id);
is(scalar(grep { $_->{http} == 201 } @$att), 1, 'one call: the timed-out request had placed it');
# found in the list live (adopted, its end asked for later) or, on a slow
# machine, already over (finished from the list at once)
ok(log_wait(qr/its dial's answer was lost, Twilio has call CA|row \S+: Twilio says call CA\w+ is completed/),
   'found in Twilio\'s list of calls');
my $r = results($id)->{'+81310000501'};
is($r->{attempts}, 1, 'one attempt');
like($r->{call_sid}, qr/^CA/, 'its call adopted');
ok(log_wait(qr/Twilio says call CA\w+ is completed/), 'its end learned from Twilio');



=== TEST 9: Twilio answers 503: retried after a back-off, placed once
--- check
my $port = $main::Rest->{port};
my $sock = IO::Socket::INET->new("127.0.0.1:$port") or die;
print $sock "POST /_stand_in/fail?count=2&status=503 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
my $ans = do { local $/; <$sock> };
like($ans, qr/^HTTP\/1\.[01] 2/, 'the stand-in will fail twice');
my ($st, $c) = api('POST', '/campaigns/', { name => '503', from => $main::From,
    rows => [{ to => '03-1000-0601' }] });
my $id = $c->{id};
my $s = finished($id, 40);
is($s->{outcomes}{completed}, 1, 'completed in the end');
my $att = rest_attempts($main::Rest, $id);
is(scalar(grep { $_->{http} == 503 } @$att), 2, 'two 503s');
is(scalar(grep { $_->{http} == 201 } @$att), 1, 'then placed once');
my @t = map { $_->{t} } @$att;
ok($t[2] - $t[1] >= 3, 'backing off: the second retry waits longer') or diag("@t");
is(results($id)->{'+81310000601'}{attempts}, 1, 'a call not placed is not an attempt');



=== TEST 10: an answering machine: the verdict reaches the live call through Redis, the agent leaves the message and hangs up; the outcome is voicemail
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'amd', from => $main::From,
    machine_detection => 'message',
    machine_message => 'さくら歯科です。ご予約の確認でお電話しました。折り返しお願いします。',
    rows => [{ to => '03-1000-0006', variables => { name => '留守電' } }] });
is($st, 201, 'created') or diag(explain($c));
my $id = $c->{id};
my $s = finished($id, 40);
is($s->{outcomes}{voicemail}, 1, 'voicemail');
my $att = rest_attempts($main::Rest, $id);
my $api = $att->[0];
like($api->{callback}, qr/campaign=$id/, 'the callbacks carry the row');
my $r = results($id)->{'+81310000006'};
like($r->{answered_by}, qr/^machine/, 'answered by a machine');
is($r->{end_reason}, 'machine', 'the call ended for the machine');
my $conn = Twirt::Peers::_sim_conn([$main::Sim], $r->{call_sid});
my ($said) = grep { ($_->{event}{type} // '') eq 'response.create'
                    && JSON::PP->new->encode($_->{event}) =~ /折り返しお願いします/ } @$conn;
ok($said, 'the agent was asked to leave the message');



=== TEST 11: a live call is hung up through the API, from the call-control path
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'hangup', from => $main::From,
    rows => [{ to => '03-1000-0007' }] });
my $id = $c->{id};
my $deadline = time + 20;
my $sid;
while (!$sid && time < $deadline) {
    my $r = results($id)->{'+81310000007'};
    $sid = $r->{call_sid} if $r && ($r->{state} // '') eq 'calling'
        && ($r->{end_reason} // '') eq ''
        && ((redis_cli('--raw', 'HGET', "twirt:call:$r->{call_sid}", 'worker'))[0] // '') =~ /:\d+$/;
    sleep 0.1 unless $sid;
}
ok($sid, 'the call is live');
my ($hs, $h) = api('POST', "/campaigns/calls/$sid/hangup");
is($hs, 202, 'accepted');
is($h->{result}, 'queued', 'queued for the worker holding the call');
my $s = finished($id, 20);
is($s->{outcomes}{completed}, 1, 'the call ended, completed');
is(results($id)->{'+81310000007'}{end_reason}, 'hangup', 'hung up by the API');
my ($again) = api('POST', "/campaigns/calls/$sid/hangup");
is($again, 409, 'an ended call: 409');



=== TEST 12: the credentials from nginx's environment (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN) when the configuration has none; never logged
--- env_credentials
--- check
my ($st, $c) = api('POST', '/campaigns/', { name => 'env', from => $main::From,
    rows => [{ to => '03-1000-0901' }] });
my $id = $c->{id};
my $s = finished($id, 30);
is($s->{outcomes}{completed}, 1, 'dialed with the environment\'s credentials');
my ($a) = @{ rest_attempts($main::Rest, $id) };
is($a->{http}, 201, 'Twilio took them');
unlike(error_log_text(), qr/\Q$main::Token\E/, 'the token is never logged');



=== TEST 13: a reload mid-campaign changes nothing: every row dialed once, every row final
--- check
my @rows = map { { to => sprintf('+8131000%04d', 700 + $_) } } 1 .. 12;
my ($st, $c) = api('POST', '/campaigns/', { name => 'reload', from => $main::From,
    cps => 4, concurrency => 4, rows => \@rows });
my $id = $c->{id};
status_until($id, sub { $_[0]{dialed} >= 3 });
my $root = $ENV{TEST_NGINX_SERVROOT} || "$FindBin::Bin/servroot";
open my $fh, '<', "$root/logs/nginx.pid" or die "no pid file: $!";
chomp(my $pid = <$fh>);
kill 'HUP', $pid or die "kill HUP $pid: $!";
ok(log_wait(qr/signal 1 \(SIGHUP\) received/), 'nginx reloads');
my $s = finished($id, 60);
is($s->{outcomes}{completed}, 12, 'every row completed');
my $by = attempts_by_row(rest_attempts($main::Rest, $id));
is_deeply([dial_problems($by, 0, [1 .. 12])], [], 'each row dialed once');
is(scalar(map { @$_ } values %$by), 12, 'twelve calls');



=== TEST 14: Redis away: the API waits for it a moment, then answers 503 and does nothing; back, it answers again
--- check
my ($st0) = api('GET', '/campaigns/');
is($st0, 200, 'Redis is there');
redis_stop();
my $t0 = time;
my ($st, $e) = api('POST', '/campaigns/', { name => 'x', from => $main::From });
is($st, 503, 'no Redis: 503');
is($e->{error}{kind}, 'redis_unavailable', 'says why');
ok(time - $t0 >= 1.5, 'after waiting for it a moment');
redis_start();
my $deadline = time + 10;
my $back;
while (!$back && time < $deadline) {
    ($back) = api('GET', '/campaigns/');
    $back = 0 unless $back == 200;
}
is($back, 200, 'Redis back: the API answers');



=== TEST 15: one call through the same API, as twirt_calls places it
--- check
my ($st, $c) = api('POST', '/campaigns/calls', { to => '03-1000-0951', from => $main::From,
    variables => { name => '単発' } });
is($st, 201, 'placed');
like($c->{call_sid} // '', qr/^CA[0-9a-f]{32}$/, 'its CallSid');
is($c->{to}, '+81310000951', 'the number in E.164');
my ($bad, $e) = api('POST', '/campaigns/calls', { to => 'abc', from => $main::From });
is($bad, 400, 'a bad number: 400');
is($e->{error}{kind}, 'invalid_number', 'says so');
