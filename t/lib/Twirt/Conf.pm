package Twirt::Conf;

# Runs `nginx -t` on a configuration the way a user does, with the built
# module loaded, in a private prefix; returns (exit status, output).

use strict;
use warnings;
use File::Temp qw(tempdir);
use Exporter 'import';

our @EXPORT_OK = qw(nginx_t http_conf);

sub nginx_t {
    my ($conf) = @_;
    my $dir = tempdir(CLEANUP => 1);
    mkdir "$dir/logs";
    open my $fh, '>', "$dir/nginx.conf" or die "$dir/nginx.conf: $!";
    print $fh $conf;
    close $fh;
    my $nginx = $ENV{TEST_NGINX_BINARY} || '/usr/sbin/nginx';
    my $out = `$nginx -t -p $dir/ -c $dir/nginx.conf 2>&1`;
    return ($? >> 8, $out);
}

# a whole nginx.conf around http{} content, with the module loaded
sub http_conf {
    my ($http, $main) = @_;
    my $module = $ENV{TEST_NGINX_LOAD_MODULES}
        or die "TEST_NGINX_LOAD_MODULES is not set";
    $main //= '';
    return <<"CONF";
load_module $module;
error_log logs/error.log;
pid logs/nginx.pid;
$main
events { worker_connections 1024; }
http {
    client_body_temp_path logs/body;
    proxy_temp_path logs/proxy;
    fastcgi_temp_path logs/fastcgi;
    uwsgi_temp_path logs/uwsgi;
    scgi_temp_path logs/scgi;
    access_log off;
$http
}
CONF
}

1;
