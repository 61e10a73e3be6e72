package Test::Nginx::Util;

# twirt's stand-in for openresty's Test::Nginx::Util: the nginx manager
# behind Test::Nginx::Socket (see that module for the list of supported
# sections and functions).  Used only when the real Test::Nginx is not
# installed; written from the real module's documented behaviour.
#
# This part owns:
#   - the settings (environment variables and the functions changing them);
#   - the server root, the generated nginx.conf and user_files;
#   - starting / stopping nginx (one start per test block), must_die;
#   - the embedded fake TCP / UDP servers (tcp_listen, udp_listen);
#   - reading the error and access logs;
#   - skip_nginx / skip_nginx2 / skip_openssl / skip_eval / todo;
#   - run_tests() and the END-time cleanup.
#
# The request / response side lives in Test::Nginx::Socket, which plugs
# itself in through $RunTestHelper, $CheckErrorLog and $CheckShutdownErrorLog.

use strict;
use warnings;

use base 'Exporter';

use Carp qw(croak);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use IO::Socket::UNIX ();
use List::Util qw(shuffle);
use POSIX qw(SIGQUIT SIGKILL WNOHANG);
use Scalar::Util qw(looks_like_number);
use Socket qw(SOCK_STREAM SOCK_DGRAM);
use Time::HiRes qw(sleep time);
use Test::More ();

our $VERSION = '0.29';    # the real module version whose behaviour we follow

our @EXPORT = qw(
    env_to_nginx is_str is_string check_accum_error_log is_running
    $NoLongString no_long_string $ServerAddr server_addr $ServerName
    server_name parse_time verbose sleep_time bail_out add_cleanup_handler
    access_log_data error_log_data setup_server_root write_config_file
    get_canon_version get_nginx_version trim show_all_chars parse_headers
    run_tests run_test get_pid_from_pidfile $ServerPortForClient $ServerPort
    $NginxVersion $PidFile $ServRoot $ConfFile $RunTestHelper $CheckErrorLog
    $CheckShutdownErrorLog $FilterHttpConfig $NoNginxManager $RepeatEach
    add_block_preprocessor timeout worker_connections workers master_on
    master_off config_preamble repeat_each master_process_enabled log_level
    no_shuffle no_root_location html_dir server_root server_port
    server_port_for_client no_nginx_manager use_hup expand_env_in_text
);

#--------------------------------------------------------------------------
# settings
#--------------------------------------------------------------------------

our $Verbose        = $ENV{TEST_NGINX_VERBOSE};
our $NginxBinary    = $ENV{TEST_NGINX_BINARY} || default_nginx_binary();
our $LoadModules    = $ENV{TEST_NGINX_LOAD_MODULES};
our $NoShuffle      = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $Timeout        = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $LogLevel       = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $Workers        = 1;
our $WorkerConnections = 1024;
our $NoRootLocation = 0;
our $RepeatEach     = 1;
our $NoNginxManager = $ENV{TEST_NGINX_NO_NGINX_MANAGER} || 0;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $EventType      = $ENV{TEST_NGINX_EVENT_TYPE};
our $PostponeOutput = $ENV{TEST_NGINX_POSTPONE_OUTPUT};
our $ReusePort      = $ENV{TEST_NGINX_REUSE_PORT};
our $WorkerUser     = $ENV{TEST_NGINX_WORKER_USER};
our $ForceRestartOnTest = defined $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST}
                        ? $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} : 1;
our $Randomize      = $ENV{TEST_NGINX_RANDOMIZE};
our $NoLongString;
our $UseHup;                  # accepted, but nginx is always restarted
our $ServerAddr     = '127.0.0.1';
our $ServerName     = 'localhost';
our $ConfigPreamble = '';
our $FilterHttpConfig;

our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;

if ($Randomize) {
    $ServerPort = gen_rand_port(1000)
        or die "Cannot find an available listening port number\n";
    $ServerPortForClient = $ServerPort;
}

our $ServRoot = File::Spec->rel2abs(
    $Randomize ? "t/servroot_$ServerPort"
               : ($ENV{TEST_NGINX_SERVROOT} || 't/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;

our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";

# hooks filled in by Test::Nginx::Socket
our $RunTestHelper;
our $CheckErrorLog;
our $CheckShutdownErrorLog;

our (@EnvToNginx, @CleanupHandlers, @BlockPreprocessors);
our ($NginxVersion, $NginxRawVersion, $OpenSSLVersion);
our ($PrevConfig, $PrevBlock);
our ($TcpServerPid, $UdpServerPid, $ChildPid);
our $InSubprocess;

# where the next error_log_data() starts reading error.log
our $ErrLogFilePos = 0;
# how many requests were sent since nginx started: error_log_data() waits
# (bounded) for that many access.log lines, i.e. for their log phase,
# unless the test config turns the access log off
our $RequestsSent = 0;
our $AccessLogOff = 0;

sub default_nginx_binary {
    return '/usr/sbin/nginx' if -x '/usr/sbin/nginx';
    return 'nginx';
}

#--------------------------------------------------------------------------
# exported setters / getters
#--------------------------------------------------------------------------

sub no_long_string ()       { $NoLongString = 1 }
sub no_shuffle ()           { $NoShuffle = 1 }
sub no_root_location ()     { $NoRootLocation = 1 }
sub no_nginx_manager ()     { $NoNginxManager = 1 }
sub use_hup ()              { $UseHup = 1 }
sub check_accum_error_log () { $CheckAccumErrLog = 1 }
sub master_on ()            { $MasterProcessEnabled = 'on' }
sub master_off ()           { $MasterProcessEnabled = 'off' }
sub config_preamble ($)     { $ConfigPreamble = shift }
sub verbose                 { $Verbose }
sub sleep_time              { $TestNginxSleep }
sub html_dir ()             { $HtmlDir }
sub server_root ()          { $ServRoot }

sub master_process_enabled (@) {
    return $MasterProcessEnabled unless @_;
    $MasterProcessEnabled = shift() ? 'on' : 'off';
}

# getter/setter helper: foo() returns, foo($v) sets
sub _accessor {
    my ($ref, @args) = @_;
    $$ref = $args[0] if @args;
    return $$ref;
}

sub timeout (@)                { _accessor(\$Timeout, @_) }
sub workers (@)                { _accessor(\$Workers, @_) }
sub worker_connections (@)     { _accessor(\$WorkerConnections, @_) }
sub log_level (@)              { _accessor(\$LogLevel, @_) }
sub repeat_each (@)            { _accessor(\$RepeatEach, @_) }
sub server_port (@)            { _accessor(\$ServerPort, @_) }
sub server_port_for_client (@) { _accessor(\$ServerPortForClient, @_) }
sub server_addr (@)            { _accessor(\$ServerAddr, @_) }
sub server_name (@)            { _accessor(\$ServerName, @_) }

sub env_to_nginx (@) {
    croak "env_to_nginx: no arguments specified" unless @_;
    for my $v (@_) {
        croak "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

#--------------------------------------------------------------------------
# small helpers
#--------------------------------------------------------------------------

# "1.5" / "1.5s" => 1.5, "200ms" => 0.2
sub parse_time ($) {
    my $tm = shift;
    return undef unless defined $tm;
    if ($tm =~ s/([^_a-zA-Z])ms$/$1/) {
        $tm = $tm / 1000;
    } else {
        $tm =~ s/([^_a-zA-Z])s$/$1/;
    }
    return $tm;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /gs;
    $s =~ s/\s{2,}/ /gs;
    return $s;
}

sub show_all_chars ($) {
    my $s = shift;
    $s =~ s/\n/\\n/gs;
    $s =~ s/\r/\\r/gs;
    $s =~ s/\t/\\t/gs;
    return $s;
}

# parse "Name: value" / "!Name" lines into { Name => value | undef }
# (an ordered list of pairs, so checks run in the written order)
sub parse_headers ($) {
    my $s = shift;
    my @pairs;
    for my $line (split /\n/, $s, -1) {
        $line =~ s/^\s+|\s+$//g;
        if ($line =~ s/^!\s*//) {
            push @pairs, [$line, undef];
        } else {
            my ($key, $val) = split /\s*:\s*/, $line, 2;
            push @pairs, [$key // '', $val];
        }
    }
    # a trailing newline does not make an extra (empty) line
    pop @pairs if @pairs && $s =~ /\n\z/ && $pairs[-1][0] eq ''
                  && !defined $pairs[-1][1];
    return \@pairs;
}

# is() that prints where two long strings start to differ
# (stands in for Test::LongString::is_string, which Debian lacks)
sub is_string {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (!defined $got || !defined $expected) {
        return Test::More::is($got, $expected, $desc);
    }
    my $ok = Test::More::ok($got eq $expected, $desc);
    return $ok if $ok;
    my $i = 0;
    my $max = length($got) < length($expected) ? length($got) : length($expected);
    $i++ while $i < $max && substr($got, $i, 1) eq substr($expected, $i, 1);
    my $show = sub {
        my $s = substr($_[0], $i > 20 ? $i - 20 : 0, 60);
        $s =~ s/([^\x20-\x7e])/sprintf('\\x{%02x}', ord $1)/ge;
        return qq{"$s"};
    };
    Test::More::diag(
        "         got: " . $show->($got) . "\n"
      . "      length: " . length($got) . "\n"
      . "    expected: " . $show->($expected) . "\n"
      . "      length: " . length($expected) . "\n"
      . "    strings begin to differ at char " . ($i + 1));
    return $ok;
}

sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    if (ref $expected && ref $expected eq 'Regexp') {
        return Test::More::like($got, $expected, $desc);
    }
    return Test::More::is($got, $expected, $desc) if $NoLongString;
    return is_string($got, $expected, $desc);
}

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid;
    waitpid($pid, WNOHANG);    # reap it if it is our own exited child
    return 0 unless kill 0, $pid;
    # the daemonized nginx is not our child: once it has exited it may stay
    # a zombie until init reaps it, so look at its state too
    if (open my $in, '<', "/proc/$pid/stat") {
        my $stat = <$in> // '';
        close $in;
        return 0 if $stat =~ /^\d+ \(.*\) [ZX]/s;
    }
    return 1;
}

sub gen_rand_port {
    my ($tries, $used) = @_;
    $tries //= 1000;
    $used  //= {};
    for (1 .. $tries) {
        my $port = int(rand 63550) + 1985;
        next if $used->{$port};
        my $sock = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                         LocalPort => $port,
                                         Proto     => 'tcp');
        next unless $sock;
        $sock->close;
        return $port;
    }
    return undef;
}

sub get_canon_version (@) {
    sprintf "%d.%03d%03d", $_[0], $_[1], $_[2];
}

sub get_canon_version_for_openssl (@) {
    return sprintf "%d.%03d%03d%03d", $_[0], $_[1], $_[2], ord($_[3]) - ord('a')
        if defined $_[3];
    return get_canon_version(@_);
}

sub get_nginx_version () {
    my $out = `$NginxBinary -V 2>&1`;
    if (!defined $out || $? != 0) {
        bail_out("Failed to get the version of the nginx binary "
                 . "\"$NginxBinary\": " . ($out // ''));
    }
    if ($out =~ m{built with OpenSSL (\d+)\.(\d+)\.(\d+)([a-z])?}s) {
        $OpenSSLVersion = get_canon_version_for_openssl($1, $2, $3, $4);
    }
    if ($out =~ m{\w+/(\d+)\.(\d+)\.(\d+)}s) {
        $NginxRawVersion = "$1.$2.$3";
        return get_canon_version($1, $2, $3);
    }
    bail_out("Failed to parse the output of \"nginx -V\": $out\n");
}

sub get_pid_from_pidfile ($) {
    my ($name) = @_;
    open my $in, '<', $PidFile
        or bail_out("$name - Failed to open the pid file $PidFile for reading: $!");
    my $pid = do { local $/; <$in> };
    close $in;
    $pid //= '';
    $pid =~ s/\s+//g;
    return $pid;
}

# expand $TEST_NGINX_* (environment) and $TEST_NGINX_RAND_PORT_N (a free
# port, the same one for every section of a block)
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        my $val;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            $val = $rand_ports->{$var} //= do {
                my $p = gen_rand_port(1000, \%used)
                    // bail_out("$name - Cannot find an available listening "
                                . "port number for $var.\n");
                $used{$p} = 1;
                $p;
            };
        } else {
            $val = $ENV{$var};
            bail_out("$name - No environment $var defined.\n")
                unless defined $val;
        }
        $val;
    }eg;
    return $text;
}

#--------------------------------------------------------------------------
# logs
#--------------------------------------------------------------------------

sub _size {
    my @st = stat shift;
    return @st ? $st[7] : -1;
}

sub _count_lines {
    my $file = shift;
    open my $in, '<', $file or return 0;
    my $n = 0;
    $n++ while <$in>;
    close $in;
    return $n;
}

# Wait until the log phase of the requests sent so far has run (their
# access.log lines are there), then until error.log stops growing.  Both
# waits are polls bounded in time, not fixed sleeps.
sub wait_for_logs () {
    my $deadline = time + 1;
    while ($RequestsSent > 0 && !$AccessLogOff && time < $deadline
           && _count_lines($AccLogFile) < $RequestsSent)
    {
        sleep 0.005;
    }

    $deadline = time + 1;
    my $size = _size($ErrLogFile);
    my $stable = 0;
    while ($stable < 2 && time < $deadline) {
        sleep 0.01;
        my $now = _size($ErrLogFile);
        $stable = $now == $size ? $stable + 1 : 0;
        $size = $now;
    }
}

# the error.log lines written since the previous call (or since the start
# of the block); with check_accum_error_log(), all lines since the start
sub error_log_data () {
    wait_for_logs();
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos > 0;
    my @lines = <$in>;
    $ErrLogFilePos = tell($in) unless $CheckAccumErrLog;
    close $in;
    return \@lines;
}

sub access_log_data () {
    wait_for_logs();
    open my $in, '<', $AccLogFile or return [];
    my @lines = <$in>;
    close $in;
    return \@lines;
}

#--------------------------------------------------------------------------
# server root and nginx.conf
#--------------------------------------------------------------------------

sub setup_server_root () {
    if (-d $ServRoot) {
        # remove only what we create, never the whole (possibly
        # mis-configured) TEST_NGINX_SERVROOT
        remove_tree($ConfDir, $HtmlDir, $LogDir,
                    glob("$ServRoot/*_temp"), glob("$ServRoot/*_cache"));
    }
    for my $dir ($ServRoot, $LogDir, $HtmlDir, $ConfDir) {
        next if -d $dir;
        make_path($dir) or bail_out("Failed to do mkdir $dir: $!\n");
    }
    my $index = "$HtmlDir/index.html";
    open my $out, '>', $index or bail_out("Can't open $index for writing: $!\n");
    print $out '<html><head><title>It works!</title></head>'
             . '<body>It works!</body></html>';
    close $out;
}

# --- user_files: ">>> name [date]" followed by the content, or an eval'd
# array of [name, content, date]
sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name  = $block->name;
    my $files = $block->user_files;
    return unless $files;

    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    } elsif (ref $files ne 'ARRAY') {
        bail_out("$name - wrong value type: ", ref $files,
                 ", only scalar or ARRAY are accepted");
    }

    for my $file (@$files) {
        my ($fname, $body, $date) = @$file;
        $body //= '';
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        if ($path =~ m{(.*)/} && !-d $1) {
            make_path($1) or bail_out("$name - Cannot create directory $1");
        }
        $body = expand_env_in_text($body, $name, $rand_ports);
        open my $out, '>', $path
            or bail_out("$name - Cannot open $path for writing: $!\n");
        binmode $out;
        print $out $body;
        close $out;
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - Failed to set the mtime of $path\n");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;

    my $http_config = expand_env_in_text($block->http_config, $name, $rand_ports) // '';
    $http_config = $FilterHttpConfig->($http_config) if $FilterHttpConfig;
    my $main_config = expand_env_in_text($block->main_config, $name, $rand_ports) // '';
    my $post_main_config =
        expand_env_in_text($block->post_main_config, $name, $rand_ports) // '';
    $config //= '';

    my $err_log_file = $block->error_log_file || $ErrLogFile;
    my $server_name  = $block->server_name // $ServerName;
    (my $quoted_server_name = $server_name) =~ s/(['\\])/\\$1/g;

    my $modules = '';
    for my $so (grep { length } split /\s+/, $LoadModules // '') {
        # nginx resolves a relative path against its prefix (the server
        # root): make a path that exists relative to the cwd absolute
        $so = File::Spec->rel2abs($so) if $so !~ m{^/} && -e $so;
        $modules .= "load_module $so;\n";
    }

    my $env = '';
    for my $v (@EnvToNginx) {
        $env .= "env " . ($v =~ /\s/ ? "'$v'" : $v) . ";\n";
    }

    my $user = '';
    if (defined $WorkerUser) {
        $user = "user $WorkerUser;\n";
    } elsif ($> == 0) {
        $user = "user root;\n";
    }

    # Debian's nginx has its temp paths under /var/lib/nginx: keep them in
    # the server root, unless the test's http_config sets them itself
    $AccessLogOff = "$main_config\n$http_config\n$config" =~ /\baccess_log\s+off\b/;

    my $temp_paths = '';
    for my $kind (qw(client_body proxy fastcgi uwsgi scgi)) {
        next if $http_config =~ /\b${kind}_temp_path\b/;
        $temp_paths .= "    ${kind}_temp_path $ServRoot/${kind}_temp;\n";
    }

    my $postpone = '';
    if (defined $PostponeOutput && $http_config !~ /\bpostpone_output\b/) {
        bail_out("Bad TEST_NGINX_POSTPONE_OUTPUT value: $PostponeOutput\n")
            if $PostponeOutput !~ /^\d+$/;
        $postpone = "    postpone_output $PostponeOutput;\n";
    }

    my $listen_opts = $ReusePort ? ' reuseport' : '';
    my $event_type  = $EventType ? "    use $EventType;\n" : '';
    my $root_location = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_

    open my $out, '>', $ConfFile
        or bail_out("Can't open $ConfFile for writing: $!\n");
    print $out <<"_EOC_";
# generated by twirt's Test::Nginx stand-in for: $name
${modules}worker_processes  $Workers;
daemon on;
master_process $MasterProcessEnabled;
error_log $err_log_file $LogLevel;
pid       $PidFile;
$user$env
$main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
$event_type}

http {
    access_log $AccLogFile;
    default_type text/plain;
    keepalive_timeout  68;
$temp_paths$postpone
$http_config

    server {
        listen          $ServerPort$listen_opts;
        server_name     '$quoted_server_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_location    }
}

$post_main_config
_EOC_
    close $out;
}

#--------------------------------------------------------------------------
# processes
#--------------------------------------------------------------------------

# stop $pid: SIGQUIT, wait up to timeout() for it to go, then SIGKILL
sub kill_process ($$$) {
    my ($pid, $wait, $name) = @_;
    return unless $pid;
    kill SIGQUIT, $pid if $wait;
    my $deadline = time + ($wait ? timeout() : 0);
    while (is_running($pid) && time < $deadline) {
        sleep 0.01;
    }
    if (is_running($pid)) {
        warn "$name - timeout when waiting for the process $pid to exit\n" if $wait;
        kill SIGKILL, $pid;
        $deadline = time + 5;
        sleep 0.01 while is_running($pid) && time < $deadline;
    }
}

sub stop_nginx ($) {
    my $name = shift;
    return unless -f $PidFile;
    my $pid = get_pid_from_pidfile($name);
    if ($pid && is_running($pid)) {
        kill_process($pid, 1, $name);
    }
    unlink $PidFile if -f $PidFile;
}

sub cleanup () {
    $_->() for @CleanupHandlers;
    if (defined $UdpServerPid) {
        kill_process($UdpServerPid, 1, 'cleanup');
        undef $UdpServerPid;
    }
    if (defined $TcpServerPid) {
        kill_process($TcpServerPid, 1, 'cleanup');
        undef $TcpServerPid;
    }
    if (defined $ChildPid) {
        kill_process($ChildPid, 1, 'cleanup');
        undef $ChildPid;
    }
}

sub can_run ($) {
    my $cmd = shift;
    if ($cmd =~ m{/}) {
        return -f $cmd && -x $cmd ? $cmd : undef;
    }
    for my $dir (split /:/, $ENV{PATH} // '') {
        next if $dir eq '';
        return "$dir/$cmd" if -f "$dir/$cmd" && -x "$dir/$cmd";
    }
    return undef;
}

# Run "nginx -p servroot/ -c conf/nginx.conf" once.  nginx daemonizes, so
# this returns when the parent exits.  Its stderr (where Debian's build logs
# start-up problems, as its default error log is stderr) is shown and also
# appended to error.log, where a build with the default error log path
# would have written it, so error_log checks see start-up errors.
# Returns (status, exit_code, stderr_text).
sub run_nginx_once ($) {
    my $name = shift;
    my $errfile = File::Temp->new(TEMPLATE => 'nginx-stderr-XXXXXX', TMPDIR => 1);
    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $errfile->filename;
        { exec $NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile };
        POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $status = $?;
    my $stderr = do {
        open my $in, '<', $errfile->filename;
        local $/;
        <$in> // '';
    };
    if (length $stderr) {
        print STDERR $stderr;
        if (open my $log, '>>', $ErrLogFile) {
            print $log $stderr;
            close $log;
        }
    }
    return ($status, $status >> 8, $stderr);
}

# Wait for the daemon to write its pid file (bounded poll).
sub wait_for_pid_file ($) {
    my $name = shift;
    my $deadline = time + 10;
    while (time < $deadline) {
        if (-s $PidFile) {
            my $pid = get_pid_from_pidfile($name);
            return $pid if $pid && is_running($pid);
        }
        sleep 0.005;
    }
    bail_out("$name - nginx did not write a live pid to $PidFile");
}

sub check_if_missing_directive ($) {
    my $text = shift;
    return $1 if $text =~ /\[emerg\] \S+?: unknown directive "([^"]+)"/;
    return 0;
}

#--------------------------------------------------------------------------
# embedded fake servers
#--------------------------------------------------------------------------

sub _slurp ($) {
    my $file = shift;
    open my $in, '<', $file or return '';
    binmode $in;
    local $/;
    my $data = <$in>;
    close $in;
    return $data // '';
}

sub _reply_list ($$$) {
    my ($name, $reply, $query) = @_;
    if (ref $reply eq 'CODE') {
        $reply = $reply->($query);
    }
    return () unless defined $reply;
    return @$reply if ref $reply eq 'ARRAY';
    if (ref $reply) {
        warn "$name - bad reply value: $reply\n";
        return ();
    }
    return ($reply);
}

# --- tcp_listen (port or *.sock): accept one connection, read the query
# (tcp_query_len bytes, or the first read), send tcp_reply, close.
sub start_tcp_server ($) {
    my $block = shift;
    my $name = $block->name;
    my $target = $block->tcp_listen;
    my $reply = $block->tcp_reply;

    if (!defined $reply && !defined $block->tcp_shutdown) {
        bail_out("$name - no --- tcp_reply specified but --- tcp_listen is specified");
    }

    my $req_len = $block->tcp_query_len;
    my $query_file;
    if (defined $block->tcp_query || defined $req_len) {
        $req_len //= length($block->tcp_query);
        (undef, $query_file) = File::Temp::tempfile('tcp-query-XXXXXX',
                                                    TMPDIR => 1, UNLINK => 1);
    }

    my ($sock, $err);
    my $deadline = time + 10;
    while (1) {
        if ($target =~ /^\d+$/) {
            $sock = IO::Socket::INET->new(LocalHost => '127.0.0.1',
                                          LocalPort => $target,
                                          Proto => 'tcp', ReuseAddr => 1,
                                          Listen => 5);
        } elsif ($target =~ m{\S+\.sock$}) {
            unlink $target if -e $target;
            $sock = IO::Socket::UNIX->new(Local => $target, Type => SOCK_STREAM,
                                          Listen => 5);
        } else {
            bail_out("$name - bad tcp_listen target: $target");
        }
        last if $sock;
        $err = $!;
        last unless $err =~ /address already in use/i && time < $deadline;
        sleep 0.05;
    }
    bail_out("$name - failed to create the tcp listening socket: $err") unless $sock;

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid) {
        $TcpServerPid = $pid;
        return ($sock, $query_file);
    }

    # the fake server
    $InSubprocess = 1;
    my $client;
    until ($client = $sock->accept) { sleep 0.01 }

    my ($no_read, $no_write);
    if (defined(my $shutdown = $block->tcp_shutdown)) {
        if (my $delay = parse_time($block->tcp_shutdown_delay)) { sleep $delay }
        $client->shutdown($shutdown);
        if ($shutdown == 0 || $shutdown == 2) { $no_read = 1 } else { $no_write = 1 }
    }

    my $buf = '';
    unless ($no_read) {
        while (1) {
            my $chunk = '';
            my $ok = $client->recv($chunk, 4096);
            last if !defined $ok || $chunk eq '';
            $buf .= $chunk;
            if ($query_file && open my $out, '>', $query_file) {
                binmode $out;
                print $out $buf;
                close $out;
            }
            last if !$req_len || length($buf) >= $req_len;
        }
    }

    if (my $delay = parse_time($block->tcp_reply_delay)) { sleep $delay }

    unless ($no_write) {
        for my $r (_reply_list($name, $reply, $buf)) {
            defined $client->send($r)
                or warn "WARNING: tcp server failed to send reply: $!\n";
        }
    }

    if (defined $block->tcp_no_close) {
        sleep 1 while 1;
    }
    $client->close;
    POSIX::_exit(0);
}

# --- udp_listen (port or *.sock): read one datagram, send udp_reply
# (string, array of datagrams, or sub { my $query = shift; ... }).
sub start_udp_server ($) {
    my $block = shift;
    my $name = $block->name;
    my $reply = $block->udp_reply;
    bail_out("$name - no --- udp_reply specified but --- udp_listen is specified")
        unless defined $reply;

    my $query_file;
    if (defined $block->udp_query) {
        (undef, $query_file) = File::Temp::tempfile('udp-query-XXXXXX',
                                                    TMPDIR => 1, UNLINK => 1);
    }

    my $target = $block->udp_listen;
    my ($sock, $uds_file);
    if ($target =~ /^\d+$/) {
        $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                      LocalPort => $target,
                                      Proto => 'udp', ReuseAddr => 1)
            or bail_out("$name - failed to create the udp listening socket: $!");
    } elsif ($target =~ m{\S+\.sock$}) {
        unlink $target if -e $target;
        $sock = IO::Socket::UNIX->new(Local => $target, Type => SOCK_DGRAM)
            or bail_out("$name - failed to create the udp unix socket: $!");
        $uds_file = $target;
    } else {
        bail_out("$name - bad udp_listen target: $target");
    }

    if (!ref $reply && $reply =~ /syntax error at \(eval \d+\) line \d+, near/) {
        bail_out("$name - Bad --- udp_reply: $reply");
    }

    my $pid = fork();
    bail_out("$name - fork() failed: $!") unless defined $pid;
    if ($pid) {
        $UdpServerPid = $pid;
        return ($sock, $query_file, $uds_file);
    }

    # the fake server
    $InSubprocess = 1;
    my $buf = '';
    my $peer = $sock->recv($buf, 65536);
    warn "udp recv failed: $!\n" unless defined $peer;
    if ($query_file && open my $out, '>', $query_file) {
        binmode $out;
        print $out $buf;
        close $out;
    }
    if (my $delay = parse_time($block->udp_reply_delay)) { sleep $delay }
    for my $r (_reply_list($name, $reply, $buf)) {
        my $sent = length($peer // '') ? send($sock, $r, 0, $peer) : $sock->send($r);
        warn "$name - WARNING: udp server failed to send reply: $!\n"
            unless defined $sent;
    }
    POSIX::_exit(0);
}

sub run_tcp_server_tests ($$$) {
    my ($block, $sock, $query_file) = @_;
    return unless defined $sock;
    my $name = $block->name;
    my $buf = $query_file ? _slurp($query_file) : '';
    if (defined $block->tcp_query) {
        is_str($buf, $block->tcp_query, "$name - tcp_query ok");
    }
    if (defined $block->tcp_query_len) {
        Test::More::is(length($buf), $block->tcp_query_len,
                       "$name - TCP query length ok");
    }
}

sub run_udp_server_tests ($$$) {
    my ($block, $sock, $query_file) = @_;
    return unless defined $sock;
    my $name = $block->name;
    if (defined $block->udp_query) {
        my $buf = $query_file ? _slurp($query_file) : '';
        is_str($buf, $block->udp_query, "$name - udp_query ok");
    }
}

#--------------------------------------------------------------------------
# running the blocks
#--------------------------------------------------------------------------

sub run_tests () {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    $ENV{TEST_NGINX_HTML_DIR}    //= $HtmlDir;

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
        $PrevBlock = $block;
    }
    cleanup();
}

sub check_prev_block_shutdown_error_log () {
    my $block = $PrevBlock;
    return unless defined $block;
    undef $PrevBlock;
    # like the real module, only a block with shutdown_error_log is checked
    if (defined $block->shutdown_error_log) {
        $CheckShutdownErrorLog->($block, $ENV{TEST_NGINX_NO_CLEAN} ? 1 : 0);
    }
}

# "N: < 1.2.3 [: reason]" style skip specs => (count, should_skip, reason)
sub _version_skip ($$$$) {
    my ($name, $kind, $spec, $have) = @_;
    my $cmp = sub {
        my ($op, $ver) = @_;
        return 0 unless defined $have;
        return eval "$have $op $ver";
    };
    if ($kind eq 'skip_nginx') {
        $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$}
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my ($n, $op, $reason) = ($1, $2, $6);
        my $ver = get_canon_version($3, $4, $5);
        my $skip = (!defined $have && $op =~ /^</) || $cmp->($op, $ver);
        return ($n, $skip, $reason || "nginx version $op $3.$4.$5");
    }
    if ($kind eq 'skip_nginx2') {
        $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*(or|and)\s*
                   ([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$}x
            or bail_out("$name - Invalid --- skip_nginx2 spec: $spec");
        my ($n, $opa, $opx, $opb, $reason) = ($1, $2, $6, $7, $11);
        my $a = $cmp->($opa, get_canon_version($3, $4, $5));
        my $b = $cmp->($opb, get_canon_version($8, $9, $10));
        my $skip = !defined $have || ($opx eq 'or' ? ($a || $b) : ($a && $b));
        return ($n, $skip, $reason);
    }
    # skip_openssl
    $spec =~ m{^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)([a-z])?(?:\s*:\s*(.*))?\s*$}
        or bail_out("$name - Invalid --- skip_openssl spec: $spec");
    my ($n, $op, $reason) = ($1, $2, $7);
    my $ver = get_canon_version_for_openssl($3, $4, $5, $6);
    my $skip = !defined $have || $cmp->($op, $ver);
    $reason ||= defined $have ? "OpenSSL version $op $3.$4.$5" . ($6 // '')
                              : "Not built with OpenSSL";
    return ($n, $skip, $reason);
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;

    my $name = $block->name;
    my $rand_ports = {};
    my $config = expand_env_in_text($block->config, $name, $rand_ports);
    my $dry_run = 0;

    local $LogLevel = $block->log_level || $LogLevel;

    # --- skip_* / todo
    my ($tests_to_skip, $should_skip, $skip_reason);
    if (defined(my $spec = $block->skip_eval)) {
        if ($spec =~ /^\s*(\d+)\s*:\s*(.*)/s) {
            $tests_to_skip = $1;
            $skip_reason = 'skip_eval';
            my $code = $2;
            $should_skip = eval $code;
            bail_out("$name - skip_eval - failed to eval the Perl code \"$code\": $@")
                if $@;
        }
    }
    if (defined(my $spec = $block->skip_nginx)) {
        ($tests_to_skip, $should_skip, $skip_reason) =
            _version_skip($name, 'skip_nginx', $spec, $NginxVersion);
    } elsif (defined(my $spec2 = $block->skip_nginx2)) {
        ($tests_to_skip, $should_skip, $skip_reason) =
            _version_skip($name, 'skip_nginx2', $spec2, $NginxVersion);
    }
    if (defined(my $spec = $block->skip_openssl)) {
        my @r = _version_skip($name, 'skip_openssl', $spec, $OpenSSLVersion);
        ($tests_to_skip, $should_skip, $skip_reason) = @r;
    }
    $skip_reason //= 'various reasons';

    my ($should_todo, $todo_reason);
    if (defined(my $todo = $block->todo)) {
        $todo =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- todo spec: $todo");
        ($should_todo, $tests_to_skip, $todo_reason) = (1, $1, $2);
    }

    if (defined $block->http2 || defined $block->http3) {
        bail_out("$name - --- http2 / --- http3 are not supported by "
                 . "twirt's Test::Nginx stand-in");
    }

    # --- (re)start nginx: always when the block has a config
    my $should_restart = 0;
    if (!defined $config) {
        if (!$NoNginxManager && !defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could "
                     . "not get previous one. Use TEST_NGINX_NO_NGINX_MANAGER ?");
        }
    } elsif ($NoNginxManager) {
        Test::More::diag("NO_NGINX_MANAGER activated: config for $name ignored");
    } else {
        $should_restart = (!defined $PrevConfig || $config ne $PrevConfig
                           || $ForceRestartOnTest);
    }

    my $restarted;
    if (!$NoNginxManager && !$should_skip && $should_restart) {
        $PrevConfig = $config;
        stop_nginx($name);
        check_prev_block_shutdown_error_log();

        setup_server_root();
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);
        can_run($NginxBinary)
            or bail_out("$name - Cannot find the nginx executable \"$NginxBinary\"");

        $ErrLogFilePos = 0;
        $RequestsSent = 0;
        $restarted = 1;

        if (defined(my $must_die = $block->must_die)) {
            run_must_die($block, $must_die, $dry_run);
            return;
        }

        my $deadline = time + 10;
        while (1) {
            my ($status, $exit_code, $stderr) = run_nginx_once($name);
            last if $status == 0;
            if ($ENV{TEST_NGINX_IGNORE_MISSING_DIRECTIVES}
                and my $directive = check_if_missing_directive($stderr))
            {
                $dry_run = "the lack of directive $directive";
                last;
            }
            # a previous instance may still hold the port: retry (bounded)
            if ($stderr =~ /Address already in use/ && time < $deadline) {
                sleep 0.1;
                next;
            }
            bail_out("$name - Cannot start nginx using command \"$NginxBinary "
                     . "-p $ServRoot/ -c $ConfFile\" (status code $status).");
        }
        wait_for_pid_file($name) unless $dry_run;
    }

    # --- the requests
    if (defined(my $init = $block->init)) {
        eval $init;
        bail_out("$name - init failed: $@") if $@;
    }

    # error_log checks see what this block made nginx log: all of a fresh
    # error.log, or what follows its current end when nginx was not restarted
    $ErrLogFilePos = $restarted ? 0 : _size($ErrLogFile);
    $ErrLogFilePos = 0 if $ErrLogFilePos < 0;

    for my $i (1 .. $RepeatEach) {
        my ($tcp_sock, $tcp_query_file);
        ($tcp_sock, $tcp_query_file) = start_tcp_server($block)
            if defined $block->tcp_listen;

        my ($udp_sock, $udp_query_file, $uds_file);
        ($udp_sock, $udp_query_file, $uds_file) = start_udp_server($block)
            if defined $block->udp_listen;

        write_user_files($block, $rand_ports) if $i > 1;

        my $run = sub {
            $RunTestHelper->($block, $dry_run, $i - 1);
            run_tcp_server_tests($block, $tcp_sock, $tcp_query_file);
            run_udp_server_tests($block, $udp_sock, $udp_query_file);
        };

        if ($should_skip && defined $tests_to_skip) {
            SKIP: {
                Test::More::skip("$name - $skip_reason", $tests_to_skip);
            }
        } elsif ($should_todo) {
            TODO: {
                Test::More::todo_skip("$name - $todo_reason", $tests_to_skip);
            }
        } else {
            $run->();
        }

        if (defined $udp_sock) {
            kill_process($UdpServerPid, 1, $name) if defined $UdpServerPid;
            undef $UdpServerPid;
            $udp_sock->close;
            unlink $uds_file if defined $uds_file;
        }
        if (defined $tcp_sock) {
            kill_process($TcpServerPid, 1, $name) if defined $TcpServerPid;
            undef $TcpServerPid;
            $tcp_sock->close;
        }
    }

    if (my $total_errlog = $ENV{TEST_NGINX_ERROR_LOG}) {
        if (-s $ErrLogFile && open my $out, '>>', $total_errlog) {
            print $out "\n=== $0 $name\n", _slurp($ErrLogFile);
            close $out;
        }
    }
}

# --- must_die: nginx must fail to start (with the given exit code, if any)
sub run_must_die ($$$) {
    my ($block, $must_die, $dry_run) = @_;
    my $name = $block->name;
    for my $i (0 .. $RepeatEach - 1) {
        my ($status, $exit_code) = run_nginx_once($name);
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $exit_code,
                           "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }

        $CheckErrorLog->($block, undef, $dry_run, $i, 0);

        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it (req $i)\n";
            wait_for_pid_file($name);
            stop_nginx($name);
        }
    }
}

END {
    return if $InSubprocess;
    cleanup();
    if (!$ENV{TEST_NGINX_NO_CLEAN} && !$NoNginxManager) {
        local $?;    # keep Test::Builder's exit status
        stop_nginx('END');
    }
    {
        local $?;
        check_prev_block_shutdown_error_log();
    }
    if ($Randomize && -d $ServRoot && $ServRoot =~ m{/t/servroot_\d+$}) {
        remove_tree($ServRoot);
    }
}

1;
