# Directive mistakes are rejected by `nginx -t` with messages that say what
# is wrong; conf.example is accepted.

use strict;
use warnings;
use Test::More;
use FindBin;
use lib "$FindBin::Bin/lib";
use Twirt::Conf qw(nginx_t http_conf);

my @bad = (
    [ 'twirt_stream_url http://gw.example.com/m;',
      qr/"twirt_stream_url" must start with "wss:\/\/"/ ],
    [ 'twirt_stream_url wss://gw.example.com/m?agent=x;',
      qr/cannot have a query string/ ],
    [ 'twirt_stream_url /twilio/media;',
      qr/"twirt_stream_url" must be an absolute URL/ ],
    [ 'twirt_public_url example.com;',
      qr/"twirt_public_url" must be an absolute URL/ ],
    [ 'twirt_parameter note "' . ('x' x 496) . '";',
      qr/parameter "note" is 500 characters with its name, Twilio allows less than 500/ ],
    [ 'twirt_parameter note "' . ("\x{e3}\x{81}\x{82}" x 496) . '";',
      qr/parameter "note" is 500 characters/ ],
    [ 'twirt_parameter a 1; twirt_parameter a 2;',
      qr/duplicate parameter "a"/ ],
    [ 'twirt_parameter "a b" 1;',
      qr/invalid parameter name "a b"/ ],
    [ 'twirt_say "hello" lang=en;',
      qr/invalid parameter "lang=en", expected "language=" or "voice="/ ],
    [ 'twirt_say "";', qr/"twirt_say" directive has empty text/ ],
    [ 'twirt_say a; twirt_say b;', qr/"twirt_say" directive is duplicate/ ],
    [ 'twirt_connect_action https://x/a method=PUT;',
      qr/invalid parameter "method=PUT", expected "method=POST" or "method=GET"/ ],
    [ 'twirt_fallback_dial +81 callerid=+82;',
      qr/invalid parameter "callerid=\+82", expected "caller_id="/ ],
    [ 'twirt_twiml_max_body_size lots;',
      qr/"twirt_twiml_max_body_size" directive invalid value/ ],
    [ 'location /a { stub_status; twirt_twiml; }',
      qr/is duplicate/ ],
    [ 'twirt_twiml;', qr/"twirt_twiml" directive is not allowed here/ ],
    [ 'location /a { twirt_twiml on; }',
      qr/invalid number of arguments in "twirt_twiml" directive/ ],
);

for my $case (@bad) {
    my ($snippet, $re) = @$case;
    my ($rc, $out) = nginx_t(http_conf("server { listen 127.0.0.1:1; $snippet }"));
    isnt($rc, 0, "nginx -t fails: " . substr($snippet, 0, 60)) or diag $out;
    like($out, $re, "with a clear message: " . substr($snippet, 0, 60));
}

{
    my ($rc, $out) = nginx_t(http_conf(
        'server { listen 127.0.0.1:1; location /v { twirt_twiml; '
        . 'twirt_parameter note "' . ('x' x 495) . '"; } }'));
    is($rc, 0, 'a parameter of 499 characters with its name is accepted')
        or diag $out;
}

# conf.example, as a user would install it: only paths are made private
{
    open my $fh, '<', "$FindBin::Bin/../conf.example" or die $!;
    my $conf = do { local $/; <$fh> };
    close $fh;

    my $module = $ENV{TEST_NGINX_LOAD_MODULES};
    like($conf, qr/^load_module \S+ngx_http_twirt_module\.so;/m,
         'conf.example loads the module');
    $conf =~ s/^load_module \S+;/load_module $module;/m;
    $conf =~ s{/var/log/nginx/}{logs/}g;
    $conf =~ s{/run/nginx\.pid}{logs/nginx.pid}g;
    $conf =~ s{/var/lib/nginx/}{logs/}g;

    my ($rc, $out) = nginx_t($conf);
    is($rc, 0, 'nginx -t accepts conf.example') or diag $out;
}

done_testing();
