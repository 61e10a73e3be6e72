# The Debian package (make deb, README "Installation"): built the way
# Debian builds its libnginx-mod-http-* packages, it depends on the nginx
# ABI it was built against and on the libraries the module links, and on
# this machine (a fresh Debian 12 root in CI) it installs with apt, enables
# its load_module snippet, loads into Debian's nginx through it, answers a
# simulated call, and is removed leaving nginx's configuration valid.
#
# The package is installed on this machine for the test and purged at the
# end, also when a test fails.  The nginx that answers the call is Debian's
# binary started on its own main configuration, which, like
# /etc/nginx/nginx.conf, includes /etc/nginx/modules-enabled/*.conf: so
# the module it runs is the one the package installed.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use Time::HiRes qw(sleep time);
use Test::More;
use Twirt::Peers;

my $top = "$FindBin::Bin/..";
my $pkg = 'libnginx-mod-http-twirt';
my $snippet = '/etc/nginx/modules-enabled/50-mod-http-twirt.conf';
my $site = '/etc/nginx/sites-enabled/twirt-deb-test.conf';
my $so = '/usr/lib/nginx/modules/ngx_http_twirt_module.so';
my $dir = tempdir(CLEANUP => 1);
my $nginx_pid;

plan skip_all => 'installs a package: needs root' if $> != 0;

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}

sub installed {
    my $s = `dpkg-query -W -f='\${Status}' $pkg 2>/dev/null`;
    return $s =~ /install ok installed/;
}

sub cleanup {
    if ($nginx_pid) {
        kill 'QUIT', $nginx_pid;
        $nginx_pid = undef;
    }
    unlink $site;
    system("apt-get purge -y -qq $pkg >/dev/null 2>&1") if installed();
}

END { cleanup() }

# a machine that had it installed before: start from none
cleanup();
ok(!installed(), 'the package is not installed before the test');

# --- the package -------------------------------------------------------

my ($rc, $out) = run("cd $top && util/deb");
is($rc, 0, 'make deb (util/deb) builds the package') or diag $out;
my ($deb) = $out =~ /^deb: (\S+\.deb)$/m;
ok($deb && -f "$top/$deb", "the package is in the top directory: "
   . ($deb // 'none')) or BAIL_OUT('no package');
like($deb, qr/^libnginx-mod-http-twirt_[0-9][^_]*_[a-z0-9]+\.deb$/,
     'named libnginx-mod-http-twirt_<version>_<arch>.deb');

my $depends = `dpkg-deb -f $top/$deb Depends`;
my $provides = `dpkg-query -W -f='\${Provides}' nginx`;
my ($abi) = $provides =~ /(nginx-abi-[^\s,]+)/;
ok($abi, "the installed nginx provides an ABI ($abi)");
like($depends, qr/(^|, )\Q$abi\E(,|$)/m,
     'depends on the nginx ABI it was built against');
like($depends, qr/libjansson4/, 'depends on libjansson');
like($depends, qr/libhiredis/, 'depends on libhiredis');

my $list = `dpkg-deb -c $top/$deb`;
for my $path ('./usr/lib/nginx/modules/ngx_http_twirt_module.so',
              './usr/share/nginx/modules-available/mod-http-twirt.conf',
              "./usr/share/doc/$pkg/examples/conf.example",
              "./usr/share/doc/$pkg/copyright") {
    like($list, qr/ \Q$path\E$/m, "the package holds $path");
}

# what apt would install on a machine with nothing installed at all: the
# dependencies resolve, nginx among them
my $empty = "$dir/status";
open my $fh, '>', $empty or die;
close $fh;
($rc, $out) = run("apt-get -s -o Dir::State::status=$empty install "
                  . "$top/$deb");
is($rc, 0, 'apt resolves the package on a machine with nothing installed')
    or diag $out;
like($out, qr/^Inst nginx /m, '... and pulls in nginx');
like($out, qr/^Inst libjansson4 /m, '... and libjansson4');
like($out, qr/^Inst libhiredis/m, '... and libhiredis');

# --- installed ---------------------------------------------------------

($rc, $out) = run("DEBIAN_FRONTEND=noninteractive apt-get install -y "
                  . "$top/$deb");
is($rc, 0, 'apt-get install ./' . $deb) or diag $out;
ok(installed(), 'the package is installed');
ok(-f $so, "the module is in $so");
is(readlink($snippet), '/usr/share/nginx/modules-available/mod-http-twirt.conf',
   'its load_module snippet is enabled in /etc/nginx/modules-enabled');
my $load = do { local (@ARGV, $/) = ($snippet); <> } // '';
like($load, qr/^load_module modules\/ngx_http_twirt_module\.so;$/m,
     'the snippet loads the module');

my $sim = sim_start();
my $port = do {
    my $s = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1:0')
        or die "no free port: $!";
    my $p = $s->sockport;
    close $s;
    $p;
};

open $fh, '>', $site or die "$site: $!";
print $fh <<"CONF";
# written by t/deb.t
server {
    listen 127.0.0.1:$port;

    location /twilio/media {
        twirt_stream;
        twirt_openai_url ws://127.0.0.1:$sim->{port}/v1/realtime?model=gpt-realtime;
        twirt_openai_api_key sk-test;
        twirt_instructions "[scenario:{{scenario}}]";
        twirt_greeting "お電話ありがとうございます。";
    }

    location = /status {
        twirt_status;
    }
}
CONF
close $fh;

($rc, $out) = run('nginx -t');
is($rc, 0, "nginx -t passes with a twirt site enabled in $site")
    or diag $out;

# Debian's nginx on a main configuration of its own (the same includes
# as /etc/nginx/nginx.conf, files under a temporary prefix)
mkdir "$dir/logs";
open $fh, '>', "$dir/nginx.conf" or die;
print $fh <<"CONF";
include /etc/nginx/modules-enabled/*.conf;
pid $dir/logs/nginx.pid;
error_log $dir/logs/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    include $site;
}
CONF
close $fh;

# Debian's prefix (-p not given): modules/ is /usr/share/nginx/modules
($rc, $out) = run("/usr/sbin/nginx -c $dir/nginx.conf");
is($rc, 0, 'Debian\'s nginx starts with the module loaded by the package\'s '
   . 'snippet') or diag $out;

my $deadline = time + 10;
until (-s "$dir/logs/nginx.pid" && IO::Socket::INET->new("127.0.0.1:$port")) {
    last if time > $deadline;
    sleep 0.05;
}
$nginx_pid = -s "$dir/logs/nginx.pid"
    ? do { local (@ARGV, $/) = ("$dir/logs/nginx.pid"); <> } : undef;
chomp $nginx_pid if $nginx_pid;
ok($nginx_pid, "nginx runs (pid " . ($nginx_pid // 'none') . ")");

my ($call_rc, $twilio, $call_out) = twilio_call(
    "--url ws://127.0.0.1:$port/twilio/media --scenario silence "
    . "--duration-ms 2500");
is($call_rc, 0, 'a simulated call through the installed module')
    or diag $call_out;
my ($summary) = grep { $_->{dir} eq 'summary' } @$twilio;
cmp_ok($summary->{agent_audio_ms_received} // 0, '>', 0,
       'the caller heard the greeting');
my @updates = grep { ($_->{dir} // '') eq 'in'
                     && ($_->{event}{type} // '') eq 'session.update' }
              @{ sim_records($sim) };
is(scalar @updates, 1, 'the Realtime side got the session update');

my $status = `curl -s http://127.0.0.1:$port/status`;
like($status, qr/^twirt_calls_started_total 1$/m, 'twirt_status counts the call')
    or diag $status;

kill 'QUIT', $nginx_pid if $nginx_pid;
$deadline = time + 10;
while ($nginx_pid && kill 0, $nginx_pid) {
    last if time > $deadline;
    sleep 0.05;
}
ok($nginx_pid && !kill(0, $nginx_pid), 'nginx stopped');
$nginx_pid = undef;

my $log = do { local (@ARGV, $/) = ("$dir/logs/error.log"); <> } // '';
unlike($log, qr/\[(emerg|alert|crit)\]/, 'no emerg, alert or crit in its log');

# --- removed -----------------------------------------------------------

unlink $site;
($rc, $out) = run("DEBIAN_FRONTEND=noninteractive apt-get remove -y $pkg");
is($rc, 0, "apt-get remove $pkg") or diag $out;
ok(!installed(), 'the package is removed');
ok(!-e $so, 'the module is gone');
ok(!-e $snippet, 'its snippet is no longer enabled');
($rc, $out) = run('nginx -t');
is($rc, 0, 'nginx -t still passes after the removal') or diag $out;

done_testing();
