# Self-test of twirt's Test::Nginx::Socket stand-in (t/lib/Test/Nginx).
#
# Runs the fixtures in t/harness/*.tt (named so that "prove -r t" does not
# run them) in child perls using our t/lib, on their own port and server
# root, and checks their TAP: the passing fixtures pass, each failing one
# fails for the expected reason, and every fixture emits exactly as many
# TAP tests as the real Test::Nginx::Socket would (counts derived from the
# real module's rules and written next to each block in the fixtures).
#
#   cd /work/main && PERL5LIB=t/lib prove -v t/harness.t

use strict;
use warnings;

use Cwd qw(abs_path);
use File::Spec;
use File::Temp ();
use FindBin;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Test::More;
use Time::HiRes qw(sleep time);

my $root  = abs_path("$FindBin::Bin/..");
my $lib   = "$root/t/lib";
my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';

plan skip_all => "no nginx binary at $nginx" unless -x $nginx;

# ports for the children: ours + 10 (as the suites use ours), then one for
# their fake TCP/UDP servers; move on when one is taken
sub port_is_free {
    my $port = shift;
    for my $proto (qw(tcp udp)) {
        my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                         LocalPort => $port, Proto => $proto)
            or return 0;
        close $sock;
    }
    return 1;
}

sub free_port {
    my $port = shift;
    $port++ until port_is_free($port) || $port > 65000;
    die "no free port found\n" if $port > 65000;
    return $port;
}

my $base = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
my $port = free_port($base + 10);
my $fake_port = free_port($port + 1);

# Run one fixture; returns a hash with its exit code, stdout, stderr, TAP
# results and the server root it used.
sub run_fixture {
    my ($fixture, %env) = @_;
    my $servroot = File::Temp->newdir('twirt-harness-XXXXXX', TMPDIR => 1);
    my $out = File::Temp->new;
    my $err = File::Temp->new;

    my %child_env = (
        TEST_NGINX_BINARY      => $nginx,
        TEST_NGINX_SERVER_PORT => $port,
        TEST_NGINX_SERVROOT    => "$servroot",
        TEST_NGINX_FAKE_PORT   => $fake_port,
        %env,
    );

    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        chdir $root or die "chdir $root: $!";
        delete @ENV{qw(TEST_NGINX_PORT TEST_NGINX_CLIENT_PORT TEST_NGINX_RANDOMIZE
                       TEST_NGINX_NO_CLEAN TEST_NGINX_NO_NGINX_MANAGER
                       TEST_NGINX_LOG_LEVEL TEST_NGINX_MASTER_PROCESS)};
        @ENV{keys %child_env} = values %child_env;
        delete $ENV{$_} for grep { !defined $ENV{$_} } keys %ENV;
        open STDOUT, '>', $out->filename or die;
        open STDERR, '>', $err->filename or die;
        exec $^X, "-I$lib", "t/harness/$fixture";
        die "exec: $!";
    }

    # bounded wait, so that a hanging child cannot hang this test
    my $deadline = time + 120;
    my $status;
    while (1) {
        if (waitpid($pid, WNOHANG) == $pid) {
            $status = $?;
            last;
        }
        if (time > $deadline) {
            kill 'KILL', $pid;
            waitpid($pid, 0);
            $status = -1;
            last;
        }
        sleep 0.05;
    }

    my $slurp = sub { local (@ARGV, $/) = ($_[0]); <> // '' };
    my $stdout = $slurp->($out->filename);
    my @results;
    while ($stdout =~ /^(not ok|ok) (\d+)(?: - )?([^\n]*)$/mg) {
        my ($status, $num, $name) = ($1, $2, $3);
        my $ok = $status eq 'ok' || $name =~ /# TODO\b/ ? 1 : 0;
        push @results, { ok => $ok, num => $num, name => $name };
    }
    my $conf_file = "$servroot/conf/nginx.conf";
    return {
        status   => $status,
        exit     => $status == -1 ? -1 : $status >> 8,
        stdout   => $stdout,
        stderr   => $slurp->($err->filename),
        results  => \@results,
        failed   => [map { $_->{name} } grep { !$_->{ok} } @results],
        conf     => -f $conf_file ? $slurp->($conf_file) : '',
        servroot => $servroot,
        pid_left => -e "$servroot/logs/nginx.pid",
    };
}

sub show {
    my $r = shift;
    diag("--- child stdout:\n$r->{stdout}\n--- child stderr:\n$r->{stderr}");
}

# a passing fixture: exit 0, no "not ok", the expected TAP count
sub check_pass {
    my ($fixture, $count, %env) = @_;
    my $r = run_fixture($fixture, %env);
    my $ok = is($r->{exit}, 0, "$fixture: exits with 0");
    $ok &= is(scalar @{ $r->{failed} }, 0, "$fixture: no failed test")
        or diag(join "\n", @{ $r->{failed} });
    $ok &= is(scalar @{ $r->{results} }, $count,
              "$fixture: $count TAP tests, as the real module would emit");
    $ok &= like($r->{stdout}, qr/^1\.\.$count$/m, "$fixture: plan 1..$count");
    ok(!$r->{pid_left}, "$fixture: nginx stopped at the end (no pid file left)");
    show($r) unless $ok;
    return $r;
}

# a failing fixture: "not ok" for exactly the expected tests, the expected
# TAP count
sub check_fail {
    my ($fixture, $count, @fail_patterns) = @_;
    my $r = run_fixture($fixture);
    my $ok = ok(scalar @{ $r->{failed} }, "$fixture: has failed tests (not ok)");
    # (a client timeout turns Test::Builder's ending off, as in the real
    # module: no plan line and exit 0, the "not ok" lines make prove fail)
    $ok &= isnt($r->{exit}, 0, "$fixture: exits with non-zero")
        unless $fixture eq 'fail_timeout.tt';
    $ok &= is(scalar @{ $r->{failed} }, scalar @fail_patterns,
              "$fixture: exactly " . @fail_patterns . " failed test(s)");
    for my $i (0 .. $#fail_patterns) {
        $ok &= like($r->{failed}[$i] // '', $fail_patterns[$i],
                    "$fixture: failure " . ($i + 1) . " is the expected one");
    }
    $ok &= is(scalar @{ $r->{results} }, $count,
              "$fixture: $count TAP tests, as the real module would emit");
    show($r) unless $ok;
    return $r;
}

# --- passing fixtures --------------------------------------------------------

{
    my $r = check_pass('sample.tt', 4);
    like($r->{stdout}, qr/\A1\.\.4\n/, 'sample.tt: "use ... tests => 4" plans first');

    # the generated nginx.conf
    my $conf = $r->{conf};
    my $sr = $r->{servroot};
    like($conf, qr/^daemon on;$/m, 'conf: daemon on');
    like($conf, qr/^master_process off;$/m, 'conf: master_process off');
    like($conf, qr/^worker_processes\s+1;$/m, 'conf: one worker');
    like($conf, qr/^error_log \Q$sr\E\/logs\/error\.log debug;$/m,
         'conf: error log at debug under the server root');
    like($conf, qr/^pid\s+\Q$sr\E\/logs\/nginx\.pid;$/m, 'conf: pid under the server root');
    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        like($conf, qr/^\s*${kind}_temp_path \Q$sr\E\/\w+;$/m,
             "conf: ${kind}_temp_path under the server root");
    }
    like($conf, qr/^\s*access_log \Q$sr\E\/logs\/access\.log;$/m, 'conf: access log');
    like($conf, qr/^\s*default_type text\/plain;$/m, 'conf: default_type');
    like($conf, qr/^\s*listen\s+$port;$/m, 'conf: listens on the test port');
    like($conf, qr/^\s*server_name\s+'localhost';$/m, 'conf: server_name localhost');
    like($conf, qr/^\s*client_max_body_size 30M;$/m, 'conf: client_max_body_size');
    like($conf, qr/^\s*worker_connections\s+1024;$/m, 'conf: worker_connections');
    like($conf, qr/location = \/t \{ return 200 "ok"; \}/, 'conf: the block config');
}

{
    my $r = check_pass('pass.tt', 59);
    my $probe = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp');
    ok(!$probe, 'pass.tt: nothing listens on the test port afterwards');
}

{
    my $mark = File::Temp->new;
    unlink $mark->filename;
    my $r = check_pass('settings.tt', 23,
                       TWIRT_HARNESS_CLEANUP_MARK => $mark->filename);
    ok(-s $mark->filename, 'settings.tt: add_cleanup_handler ran');
    like($r->{conf}, qr/^master_process on;$/m, 'settings.tt: master_on()');
    like($r->{conf}, qr/^worker_processes\s+2;$/m, 'settings.tt: workers(2)');
    like($r->{conf}, qr/^env TWIRT_HARNESS_ENV=from-harness;$/m,
         'settings.tt: env_to_nginx()');
    like($r->{conf}, qr/^error_log \S+ debug;$/m,
         'settings.tt: --- log_level in the last block');
}

{
    my $missing = '/nonexistent/ngx_http_twirt_harness_missing_module.so';
    my @modules = (grep({ length } split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} // ''),
                   $missing);
    my $r = check_pass('modules.tt', 2, TEST_NGINX_LOAD_MODULES => "@modules");
    my $expected = join '', map { "load_module $_;\n" } @modules;
    like($r->{conf}, qr/^# [^\n]*\n\Q$expected\E/,
         'modules.tt: load_module lines first, one per TEST_NGINX_LOAD_MODULES entry');
}

# --- failing fixtures --------------------------------------------------------

check_fail('fail_body.tt', 3, qr/ - response_body - response is expected/);
check_fail('fail_error_log.tt', 4,
           qr/pattern "this line is never logged by nginx" should match a line in error\.log/);
check_fail('fail_no_error_log.tt', 3,
           qr/pattern "\[error\]" should not match any line in error\.log/);
check_fail('fail_status.tt', 2, qr/ - status code ok$/);
check_fail('fail_header.tt', 4, qr/ - header X-Twirt ok$/,
           qr/ - header Content-Type not present in the raw headers$/);
check_fail('fail_timeout.tt', 2, qr/^ERROR: client socket timed out - /,
           qr/ - status code ok$/);

done_testing();
