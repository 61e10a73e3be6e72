# The container image (docker/, README "Installation"): built from the
# Debian package (make deb) on a Debian 12 base made here (debootstrap
# with the runtime packages, imported into the engine), so no registry is
# needed; started with its configuration in the environment, healthy by
# its own health check, running as www-data, logging to stdout and
# stderr; a simulated call goes through it to the Realtime simulator.
#
# The engine is podman or docker, whichever can run a container here:
# first a probe image of one static file tells.  Where none is installed,
# or none can run a container (no cgroups, no namespaces: a sandbox), the
# test says which and why, and skips.

use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;
use Time::HiRes qw(sleep time);
use Test::More;
use Twirt::Peers;

my $top = "$FindBin::Bin/..";
my $python = $ENV{TWIRT_PYTHON} || '/usr/bin/python3';
my $dir = tempdir(CLEANUP => 1);
my $tag = "twirt-test-$$";
my ($engine, @run_opts, $container, @images);

sub run {
    my ($cmd) = @_;
    my $out = `$cmd 2>&1`;
    return ($? >> 8, $out);
}



END {
    if ($engine) {
        system("$engine rm -f $container >/dev/null 2>&1") if $container;
        system("$engine rmi -f @images >/dev/null 2>&1") if @images;
    }
}

# --- which engine can run a container here --------------------------------

# a probe image: /usr/bin/true and the libraries it needs, nothing else
sub probe_image {
    my $root = "$dir/probe";
    my @files = ('/usr/bin/true',
                 map { m{(/\S+)} ? $1 : () } grep { /=>|^\s*\// }
                 split /\n/, `ldd /usr/bin/true`);
    system("tar -chf $dir/probe.tar @files 2>/dev/null") == 0 or return;
    return "$dir/probe.tar";
}

my $why = '';
my $probe = probe_image() or BAIL_OUT('cannot make the probe image');
for my $e (grep { system("command -v $_ >/dev/null 2>&1") == 0 } qw(podman docker)) {
    my ($rc, $out) = run("$e import $probe localhost/$tag-probe");
    if ($rc != 0) {
        $why .= "$e cannot import an image: " . (split /\n/, $out)[-1] . "; ";
        next;
    }
    # plain first; then what a host without systemd's cgroups needs
    for my $opts ('', '--cgroup-manager=cgroupfs --runtime=runc '
                      . '--ulimit nofile=4096:4096 --ulimit nproc=4096:4096') {
        next if $opts && $e ne 'podman';
        my @global = $opts =~ /(--cgroup-manager=\S+|--runtime=\S+)/g;
        my @local = $opts =~ /(--ulimit \S+)/g;
        ($rc, $out) = run("$e @global run --rm --network none @local "
                          . "localhost/$tag-probe /usr/bin/true");
        if ($rc == 0) {
            $engine = "$e @global";
            @run_opts = @local;
            last;
        }
        $why .= "$e run" . ($opts ? " ($opts)" : '') . ': '
                . (split /\n/, $out)[-1] . '; ';
    }
    system("$e rmi -f localhost/$tag-probe >/dev/null 2>&1");
    last if $engine;
}

if (!$engine) {
    plan skip_all => $why ? "no container engine can run a container here: $why"
                          : 'no container engine (podman or docker) is installed';
}
diag "container engine: $engine @run_opts";

# --- the base image: Debian 12 with the runtime packages ------------------

my $mirror = `awk '/^URIs:/ { print \$2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null`
             || `awk '/^deb / { print \$2; exit }' /etc/apt/sources.list 2>/dev/null`
             || 'http://deb.debian.org/debian';
chomp $mirror;
my ($rc, $out) = run("debootstrap --variant=minbase --include=nginx,"
                     . "libjansson4,libhiredis0.14,redis-server,gettext-base,"
                     . "ca-certificates bookworm $dir/root $mirror");
is($rc, 0, 'debootstrap made a Debian 12 root with nginx and Redis')
    or BAIL_OUT((split /\n/, $out)[-1]);
($rc, $out) = run("tar -C $dir/root -cf $dir/base.tar .");
is($rc, 0, 'packed') or diag $out;
($rc, $out) = run("$engine import $dir/base.tar localhost/$tag-base");
is($rc, 0, "imported as localhost/$tag-base") or BAIL_OUT($out);
push @images, "localhost/$tag-base";
system("rm -rf $dir/root $dir/base.tar");

# --- the image --------------------------------------------------------------

($rc, $out) = run("cd $top && util/deb");
is($rc, 0, 'the Debian package is built') or BAIL_OUT($out);

my $format = $engine =~ /^podman/ ? '--format docker' : '';   # HEALTHCHECK
($rc, $out) = run("cd $top && $engine build $format -f docker/Dockerfile "
                  . "--build-arg BASE=localhost/$tag-base -t localhost/$tag .");
is($rc, 0, 'docker/Dockerfile builds') or BAIL_OUT($out);
push @images, "localhost/$tag";
unlike($out, qr/^(Get|Hit|Ign):\d+ /m, 'from the local base, nothing downloaded');

my $inspect = `$engine image inspect localhost/$tag 2>/dev/null`;
my $cfg = (eval { decode_json($inspect) } // [])->[0] // {};
diag "inspect: $inspect" unless %$cfg;
my $config = $cfg->{Config} // $cfg->{config} // {};
is($config->{User}, 'www-data', 'the image runs as www-data');
my $hc = $config->{Healthcheck} // $cfg->{HealthCheck} // $cfg->{Healthcheck};
ok($hc && "@{$hc->{Test} // []}" =~ /twirt-health/, 'it has a health check')
    or diag "keys: @{[ sort keys %$cfg ]}; config: @{[ sort keys %$config ]}";

# --- a missing setting is said, not guessed ----------------------------------

($rc, $out) = run("$engine run --rm --network none @run_opts -e OPENAI_API_KEY=x "
                  . "localhost/$tag");
isnt($rc, 0, 'without TWILIO_AUTH_TOKEN the container does not start');
like($out, qr/set TWILIO_AUTH_TOKEN/, '... and says what to set');

# --- started, healthy, a call through it --------------------------------------

my $sim = sim_start();
my $port = free_port();
my $token = 'container-test-token';
$container = "$tag-run";
($rc, $out) = run("$engine run -d --name $container --network host @run_opts "
                  . "-e OPENAI_API_KEY=sk-test -e TWILIO_AUTH_TOKEN=$token "
                  . "-e TWIRT_PUBLIC_HOST=localhost -e TWIRT_PORT=$port "
                  . "-e TWIRT_OPENAI_URL='ws://127.0.0.1:$sim->{port}/v1/realtime?model=gpt-realtime' "
                  . "-e 'TWIRT_INSTRUCTIONS=[scenario:{{scenario}}]' "
                  . "-e 'TWIRT_GREETING=お電話ありがとうございます。' "
                  . "-e TWIRT_NODE=container-node localhost/$tag");
is($rc, 0, 'the container starts') or BAIL_OUT($out);

ok(until_true(30, sub { (run("$engine healthcheck run $container"))[0] == 0
                        || (run("$engine exec $container /usr/local/bin/twirt-health"))[0] == 0 }),
   'its health check passes') or diag `$engine logs $container 2>&1`;

my $pid = `$engine inspect -f '{{.State.Pid}}' $container`;
chomp $pid;
my @pids = ($pid, map { /(\d+)/ ? $1 : () } `pgrep -P $pid`);
my @uids = map { (`grep ^Uid: /proc/$_/status` =~ /^Uid:\s+(\d+)/)[0] } @pids;
my $www = (getpwnam('www-data'))[2] // 33;
is_deeply(\@uids, [ ($www) x @pids ], 'nginx, master and workers, runs as '
   . "www-data (uid $www)") or diag "pids @pids uids @uids";

my $call_dir = tempdir(CLEANUP => 1);
$out = `$python $FindBin::Bin/peers/twilio_call.py --base http://127.0.0.1:$port --auth-token $token --webhook https://localhost/twilio/voice --scenario silence --record $call_dir/call.jsonl 2>&1`;
my ($last) = grep { /^\{/ } reverse split /\n/, $out;
my $r = eval { decode_json($last) } // {};
ok($r->{ok}, 'a simulated call goes through the container') or diag $out;
like(join(' ', map { $_->{body} } grep { $_->{what} eq 'action' }
          @{ $r->{documents} // [] }), qr{<Hangup/>},
     'and ends as a normal call');

my $logs = `$engine logs $container 2>&1`;
like($logs, qr{"POST /twilio/voice HTTP/1\.1" 200}, 'the access log is on '
   . 'the container\'s output');
like($logs, qr/twirt: call "CA[0-9a-f]+" stream "MZ[0-9a-f]+" ended/,
     'twirt\'s error log too');
like($logs, qr/redis "unix:\/run\/twirt\/redis\.sock" connected/,
     'with the Redis inside the container');

($rc, $out) = run("$engine stop -t 10 $container");
is($rc, 0, 'it stops');

done_testing();
