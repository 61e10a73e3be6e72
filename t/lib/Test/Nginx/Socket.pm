package Test::Nginx::Socket;

=head1 NAME

Test::Nginx::Socket - twirt's stand-in for openresty's Test::Nginx::Socket

=head1 DESCRIPTION

Used only when the real Test::Nginx is not installed (Debian does not
package it): C<make test> adds C<-I t/lib> when
C<perl -MTest::Nginx::Socket -e1> fails.  The same C<.t> files run under
both; this module follows the real one's documented behaviour, including
how many TAP tests each section produces, so plans agree.  Blocks are
parsed by Debian's Test::Base (filters such as C<eval>, C<chomp> come from
there).  The nginx manager half is in L<Test::Nginx::Util>.

    use Test::Nginx::Socket 'no_plan';     # or: tests => N; or plan later
    run_tests();
    __DATA__
    === TEST 1: hello
    --- config
        location = /t { return 200 "ok"; }
    --- request
    GET /t
    --- response_body chomp
    ok
    --- no_error_log
    [error]

=head2 Functions exported (with all of Test::More's via Test::Base)

run_tests, run_test, plan, blocks, repeat_each, no_shuffle, workers,
worker_connections, master_on, master_off, master_process_enabled,
log_level, env_to_nginx, no_root_location, no_long_string, server_port,
server_port_for_client, server_addr, server_name, server_root, html_dir,
timeout, config_preamble, check_accum_error_log, no_nginx_manager, use_hup
(accepted; nginx is always restarted), add_block_preprocessor,
add_response_body_check, add_cleanup_handler, bail_out, is_str.

=head2 Sections

Config: config, http_config, main_config, post_main_config, server_name,
log_level, error_log_file, user_files, init, must_die.
C<$TEST_NGINX_*> (environment, plus C<TEST_NGINX_SERVER_PORT>,
C<TEST_NGINX_HTML_DIR>, C<TEST_NGINX_SERVER_ROOT>) and
C<$TEST_NGINX_RAND_PORT_N> are expanded in the config sections and
user_files, as the real module does (not in request or more_headers).

Request: request (string, or eval'd array of requests, each a string or an
array of packets given as strings or C<< {value =>, delay_before =>} >>),
request_eval, pipelined_requests, more_headers (string or array per
request), raw_request (string or array of packets, sent as is),
raw_request_middle_delay, timeout, abort, shutdown, server_addr_for_client,
http09, ignore_response, curl (ignored).

Response: error_code, error_code_like, response_headers (C<Name: value>,
C<!Name> = absent), response_headers_like, raw_response_headers_like,
raw_response_headers_unlike, response_body, response_body_eval,
response_body_like, response_body_unlike, response_body_filters, charset.
A 101 response ends at its header block; the bytes that follow (until
the server closes or the timeout) are the body, unmodified.

Logs: error_log, no_error_log (string lines, or eval'd array of strings /
qr//), grep_error_log, grep_error_log_out, access_log, no_access_log,
shutdown_error_log, no_shutdown_error_log, wait.

Fake servers: tcp_listen, tcp_reply, tcp_reply_delay, tcp_query,
tcp_query_len, tcp_no_close, tcp_shutdown, tcp_shutdown_delay, udp_listen,
udp_reply (string, array, or sub { my ($query) = @_; ... }),
udp_reply_delay, udp_query.

Control: SKIP, ONLY, LAST (Test::Base), skip_eval, skip_nginx,
skip_nginx2, skip_openssl, todo, stap (always skipped: one skipped test),
no_check_leak (ignored).

=head2 TAP tests per request (as the real module)

one for the status code; one per raw_response_headers_like/unlike; one
per distinct header name in response_headers (or response_headers_like);
one for response_body/response_body_like/unlike; whatever the
add_response_body_check callbacks emit.  The log checks (one per
error_log / no_error_log / access_log / no_access_log pattern, one for
grep_error_log_out) run after every request of a multi-request block, on
the log lines written since the previous check.  Per block repetition:
one for tcp_query, tcp_query_len, udp_query, stap.  Failures add tests:
client socket timeouts (unless abort), a no_error_log pattern matching
several lines, broken chunked bodies, "Assertion failed" lines.

=head2 Environment

TEST_NGINX_BINARY (/usr/sbin/nginx), TEST_NGINX_SERVER_PORT /
TEST_NGINX_PORT (1984), TEST_NGINX_CLIENT_PORT, TEST_NGINX_SERVROOT
(t/servroot), TEST_NGINX_LOAD_MODULES, TEST_NGINX_LOG_LEVEL (debug),
TEST_NGINX_TIMEOUT (3), TEST_NGINX_NO_SHUFFLE, TEST_NGINX_RANDOMIZE,
TEST_NGINX_MASTER_PROCESS, TEST_NGINX_NO_CLEAN, TEST_NGINX_SLEEP,
TEST_NGINX_ERROR_LOG, TEST_NGINX_EVENT_TYPE, TEST_NGINX_POSTPONE_OUTPUT,
TEST_NGINX_REUSE_PORT, TEST_NGINX_WORKER_USER,
TEST_NGINX_IGNORE_MISSING_DIRECTIVES, TEST_NGINX_CHECK_ACCUM_ERR_LOG,
TEST_NGINX_NO_NGINX_MANAGER, TEST_NGINX_VERBOSE.

=head2 Not supported

HTTP/2 and HTTP/3 (http2/http3 sections bail out), valgrind, systemtap,
the HUP-reload, check-leak and benchmark modes.

=cut

use strict;
use warnings;

use Test::Base -base;
use Test::Nginx::Util;

use Digest::MD5 ();
use Digest::SHA ();
use Encode ();
use HTTP::Response ();
use IO::Select ();
use IO::Socket::INET ();
use List::Util qw(min);
use Time::HiRes qw(sleep time);

our $VERSION = '0.29';

our @EXPORT = qw(
    env_to_nginx is_str plan run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location use_hup
    server_name server_addr server_root html_dir server_port
    server_port_for_client timeout no_nginx_manager check_accum_error_log
    add_block_preprocessor bail_out add_cleanup_handler
    add_response_body_check
);

our @ResponseBodyChecks;

$Test::Nginx::Util::RunTestHelper         = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog         = \&check_error_log;
$Test::Nginx::Util::CheckShutdownErrorLog = \&check_shutdown_error_log;

sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

sub set_http_config_filter ($) { $Test::Nginx::Util::FilterHttpConfig = shift }

sub _no_ending { Test::More->builder->no_ending(1) }

#--------------------------------------------------------------------------
# building requests
#--------------------------------------------------------------------------

# "Name: value" lines (comments skipped) => ("Name: value\r\n"..., chunked?)
sub parse_more_headers ($) {
    my ($in) = @_;
    my ($out, $is_chunked) = ('', 0);
    for my $line (split /\n+/, $in) {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $is_chunked = 1 if lc($key) eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $is_chunked);
}

# Turn "METHOD [URL [VERSION]]\nbody", split into packets, into a full
# HTTP request split at the corresponding places.  Missing URL / version
# default to "/" and HTTP/1.1; Host, Connection, more_headers and
# Content-Length (for a non-empty body, which is then trimmed) are added.
sub build_request ($$$$$) {
    my ($name, $more_headers, $is_chunked, $conn, $packets) = @_;

    my $all = join '', map { $_ // '' } @$packets;
    my ($first) = $all =~ /\A([^\n]*\n?)/;
    bail_out("$name - Request line should be non-empty") unless $first;

    $first =~ /^(\s*)(\S+)( *)((\S+)( *))?((\S+)( *))?(\s*)$/
        or bail_out("$name - Request line is not valid. Should be "
                    . "'meth [url [version]]' but got \"$first\".");
    my ($meth, $url, $ver) = ($2, $5 // '/', $8 // 'HTTP/1.1');
    my @len = (length $1, length $2, length $3,
               defined $5 ? length $5 : 0, defined $5 ? length $6 : 0,
               defined $8 ? length $8 : 0,
               (defined $8 ? length $9 : 0) + length $10);

    my $orig_content = substr $all, length $first;
    my $content = $orig_content;
    my $len_header = '';
    if (!$is_chunked && $content ne ''
        && $more_headers !~ /(?:^|\n)Content-Length:/)
    {
        $content =~ s/^\s+|\s+$//gs;
        $len_header = 'Content-Length: ' . length($content) . "\r\n";
    }

    $more_headers =~ s/(?<!\r)\n/\r\n/gs;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more_headers !~ /(?:^|\n)Host:/msi;
    $headers .= "Connection: $conn\r\n" if $more_headers !~ /(?:^|\n)Connection/msi;
    $headers .= "$more_headers$len_header\r\n";

    # [original length, replacement] for each piece of the request
    my @segments = (
        [$len[0], ''], [$len[1], "$meth "], [$len[2], ''],
        [$len[3], "$url "], [$len[4], ''], [$len[5], "$ver\r\n"],
        [$len[6], ''], [0, $headers], [length $orig_content, $content],
    );
    my $out = join '', map { $_->[1] } @segments;

    # where an original packet boundary lands in the output: a boundary in
    # the middle of a piece splits its replacement there; text inserted at
    # a boundary (the headers) goes with the earlier packet
    my $map = sub {
        my $b = shift;
        my ($o, $q) = (0, 0);
        for my $seg (@segments) {
            my ($l, $r) = @$seg;
            if ($l == 0) {
                return $q if $o > $b;
                $q += length $r;
                next;
            }
            return $q if $o >= $b;
            if ($o + $l <= $b) {
                $q += length $r;
                $o += $l;
                next;
            }
            return $q + min($b - $o, length $r);
        }
        return $q;
    };

    my @cuts = (0);
    my $pos = 0;
    for my $i (0 .. $#$packets - 1) {
        $pos += length($packets->[$i] // '');
        push @cuts, $map->($pos);
    }
    push @cuts, length $out;
    return [map { substr $out, $cuts[$_], $cuts[$_ + 1] - $cuts[$_] } 0 .. $#$packets];
}

sub _more_headers_for {
    my ($name, $more_headers, $i) = @_;
    if (ref $more_headers eq 'ARRAY') {
        my $hdr = $more_headers->[$i];
        bail_out("$name - --- more_headers lacks data for the request $i")
            unless defined $hdr;
        return parse_more_headers($hdr);
    }
    return parse_more_headers($more_headers);
}

# => [ request, ... ], each request being [ {value => , delay_before => }, ... ]
sub get_req_from_block ($) {
    my ($block) = @_;
    my $name = $block->name;
    my @req_list;

    if (defined(my $raw = $block->raw_request)) {
        if (ref $raw eq 'ARRAY') {
            push @req_list, [map { ref $_ eq 'HASH' ? {%$_} : {value => $_} } @$raw];
        } else {
            push @req_list, [{value => $raw}];
        }
        return \@req_list;
    }

    my $request;
    if (defined $block->request_eval) {
        Test::More::diag("$name - request_eval DEPRECATED. Use request eval instead.");
        $request = eval $block->request_eval;
        warn $@ if $@;
    } else {
        $request = $block->request;
        if (defined $request && !ref $request) {
            1 while $request =~ s/^\s*\#[^\n]+\s+|^\s+//gs;
        }
    }

    my $more_headers = $block->more_headers || '';

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests")
            unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my ($hdr, $chunked) = _more_headers_for($name, $more_headers, $i);
            my $conn = $i == $#$reqs ? 'close' : 'keep-alive';
            $all .= build_request($name, $hdr, $chunked, $conn, [$reqs->[$i]])->[0];
        }
        push @req_list, [{value => $all}];
        return \@req_list;
    }

    if (!ref $request) {
        my ($hdr, $chunked) = _more_headers_for($name, $more_headers, 0);
        push @req_list, [{value => build_request($name, $hdr, $chunked,
                                                 'close', [$request])->[0]}];
        return \@req_list;
    }

    bail_out("$name - invalid ---request : MUST be string or array of requests")
        unless ref $request eq 'ARRAY';

    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = _more_headers_for($name, $more_headers, $i);
        if (!ref $one) {
            push @req_list, [{value => build_request($name, $hdr, $chunked,
                                                     'close', [$one])->[0]}];
        } elsif (ref $one eq 'ARRAY') {
            my @values;
            for my $packet (@$one) {
                if (!ref $packet) {
                    push @values, $packet;
                } elsif (ref $packet eq 'HASH') {
                    push @values, $packet->{value};
                } else {
                    bail_out("$name - Invalid syntax. $packet should be a "
                             . "string or hash with value.");
                }
            }
            my $built = build_request($name, $hdr, $chunked, 'close', \@values);
            push @req_list, [map {
                my %p = ref $one->[$_] ? %{ $one->[$_] } : ();
                $p{value} = $built->[$_];
                \%p;
            } 0 .. $#$one];
        } else {
            bail_out("$name - Invalid syntax. $one should be a string or an "
                     . "array of packets.");
        }
    }
    return \@req_list;
}

#--------------------------------------------------------------------------
# the HTTP client
#--------------------------------------------------------------------------

sub _connect {
    my ($name, $addr, $timeout) = @_;
    my $err;
    for my $try (1 .. 20) {
        my $sock = IO::Socket::INET->new(PeerAddr => $addr,
                                          PeerPort => $ServerPortForClient,
                                          Proto    => 'tcp',
                                          Timeout  => $timeout);
        return $sock if $sock;
        $err = $!;
        sleep min(0.05 * $try, 0.5);
    }
    _no_ending();
    Test::More::fail("$name - Can't connect to $addr:$ServerPortForClient: "
                     . "$err (aborted)\n");
    return undef;
}

# Send one request (its packets, with the delays between them) on a new
# connection and read until the server closes it or nothing happens for
# $timeout seconds.  Returns (raw response bytes, is HEAD request).
sub send_request ($$$$) {
    my ($packets, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my @bits = @$packets;

    my $whole = join '', map { $_->{value} // '' } @bits;
    my $head_req = $whole =~ /^\s*HEAD\s+/ ? 1 : 0;

    my $addr = $block->server_addr_for_client // $ServerAddr;
    my $sock = _connect($name, $addr, $timeout) or return (undef, $head_req);
    $sock->blocking(0);
    $Test::Nginx::Util::RequestsSent +=
        $block->pipelined_requests ? scalar @{ $block->pipelined_requests } : 1;

    local $SIG{PIPE} = 'IGNORE';
    my $resp = '';
    my $buf = (shift @bits)->{value} // '';
    my $off = 0;
    my $writing = 1;
    my $sel = IO::Select->new($sock);

    while (1) {
        $! = 0;
        my ($readable, $writable) =
            IO::Select->select($sel, $writing ? $sel : undef, undef, $timeout);
        if (!$readable && !$writable) {
            next if $!{EINTR};
            # timed out
            close $sock;
            if (!defined $block->abort) {
                _no_ending();
                Test::More::fail("ERROR: client socket timed out - $name\n");
            }
            last;
        }

        if ($readable && @$readable) {
            my $done;
            while (1) {
                my $n = sysread $sock, my $chunk, 16384;
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EWOULDBLOCK};
                    warn "WARNING: $name - HTTP response read failure: $!\n";
                    $done = 1;
                    last;
                }
                if ($n == 0) {
                    $done = 1;    # the server closed the connection
                    last;
                }
                $resp .= $chunk;
            }
            if ($done) {
                close $sock;
                last;
            }
        }

        next unless $writing && $writable && @$writable;

        while (1) {
            my $rest = length($buf) - $off;
            if ($rest > 0) {
                my $n = syswrite $sock, $buf, $rest, $off;
                if (!defined $n) {
                    last if $!{EAGAIN} || $!{EWOULDBLOCK};
                    # the server may have answered early: keep reading
                    warn "write failed: $!\n";
                    $resp = "write failed: $!" unless length $resp;
                    $writing = 0;
                    last;
                }
                $off += $n;
                next;
            }
            my $next = shift @bits;
            if (!$next) {
                $writing = 0;
                if (defined(my $how = $block->shutdown)) {
                    $how = 1 if $how =~ /^$/s;
                    shutdown $sock, $how;
                }
                last;
            }
            my $delay = $next->{delay_before} // $middle_delay;
            sleep $delay if $delay;
            ($buf, $off) = ($next->{value} // '', 0);
        }
    }

    return ($resp, $head_req);
}

# => (HTTP::Response, raw header block, bytes left after this response)
sub parse_response ($$$) {
    my ($name, $raw_resp, $head_req) = @_;

    my $raw_headers = $raw_resp =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = HTTP::Response->parse($raw_resp);
    my $code = $res->code;
    if ($code && $code !~ /^\d+$/) {
        undef $code;
        $res->code(undef);
    }

    # no body framing: for 101 the rest is the upgraded stream
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my $left;

    if (defined $enc && $enc eq 'chunked') {
        my $raw = $res->content // '';
        my $decoded = '';
        while (1) {
            if ($raw =~ /\G 0 [\ \t]* \r\n \r\n /gcsx) {
                $left = $1 if $raw =~ /\G (.+) /gcsx;
                last;
            }
            if ($raw =~ /\G [\ \t]* ([A-Fa-f0-9]+) [\ \t]* \r\n /gcsx) {
                my $size = hex $1;
                my $at = pos $raw;
                if (length($raw) - $at < $size) {
                    _no_ending();
                    Test::More::fail("$name - invalid chunked data received "
                                     . "(not enought octets for the data section)");
                    return;
                }
                $decoded .= substr $raw, $at, $size;
                pos($raw) = $at + $size;
                if ($raw !~ /\G\r\n/gcs) {
                    _no_ending();
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return;
                }
            } elsif ($raw =~ /\G.+/gcs) {
                _no_ending();
                Test::More::fail("$name - invalid chunked body received: $&");
                return;
            } else {
                _no_ending();
                Test::More::fail("$name - no last chunk found - $raw");
                return;
            }
        }
        $res->content($decoded);

    } elsif (defined $len && $len ne '' && $len >= 0) {
        my $raw = $res->content;
        if (length $raw < $len) {
            warn "WARNING: $name - response body truncated: $len expected, "
                 . "but got ", length $raw, "\n" unless $head_req;
        } elsif (length $raw > $len) {
            $left = substr $raw, $len;
            $res->content(substr $raw, 0, $len);
        }
    }

    return ($res, $raw_headers, $left);
}

#--------------------------------------------------------------------------
# one block, one repetition
#--------------------------------------------------------------------------

sub run_test_helper ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;

    my $r_req_list = get_req_from_block($block);
    bail_out("$name - request empty") unless @$r_req_list;

    my $timeout = parse_time($block->timeout) // timeout();

    my ($res, $n, $need_array);
    my $req_idx = 0;

    for my $one_req (@$r_req_list) {
        my ($raw_resp, $head_req);
        if ($dry_run) {
            $raw_resp = "200 OK HTTP/1.0\r\nContent-Length: 0\r\n\r\n";
        } else {
            ($raw_resp, $head_req) =
                send_request($one_req, scalar $block->raw_request_middle_delay,
                             $timeout, $block);
        }

        if ($block->pipelined_requests) {
            $n = @{ $block->pipelined_requests };
            $need_array = 1;
        } else {
            $need_array = @$r_req_list > 1;
        }

        # one pass per response (several for pipelined requests)
        while (1) {
            $raw_resp //= '';
            my ($raw_headers, $left);

            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = HTTP::Response->new(200, 'OK', [], $raw_resp);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left) =
                        parse_response($name, $raw_resp, $head_req);
                }
            }

            if (!$n) {
                if (defined $left && length $left) {
                    (my $show = $left) =~
                        s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                    warn "WARNING: $name - unexpected extra bytes after last "
                         . "chunk in response: \"$show\"\n";
                }
            } else {
                $raw_resp = $left;
                $n--;
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $dry_run, $req_idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $dry_run,
                                           $req_idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $dry_run,
                                       $req_idx, $need_array);
                transform_response_body($block, $res, $req_idx);
                check_response_body($block, $res, $dry_run, $req_idx,
                                    $repeated_req_idx, $need_array);
            }

            if ($n || $req_idx < @$r_req_list - 1) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $repeated_req_idx, $need_array);
                check_access_log($block, $dry_run, $repeated_req_idx)
                    unless defined $block->ignore_response;
            }

            $req_idx++;
            last unless $n;
        }
    }

    sleep $block->wait if $block->wait;

    test_stap($block, $dry_run);
    check_error_log($block, $res, $dry_run, $repeated_req_idx, $need_array);
    check_access_log($block, $dry_run, $repeated_req_idx)
        unless defined $block->ignore_response;
}

# stap needs systemtap: like the real module without TEST_NGINX_USE_STAP,
# a block with --- stap gets one skipped test
sub test_stap ($$) {
    my ($block, $dry_run) = @_;
    return unless $block->{stap};
    my $name = $block->name;
    my $reason = $dry_run ? "the lack of directive $dry_run"
                          : 'env TEST_NGINX_USE_STAP is not set';
    SKIP: {
        Test::More::skip("$name - stap_out - tests skipped due to $reason", 1);
    }
}

#--------------------------------------------------------------------------
# response checks
#--------------------------------------------------------------------------

# a per-request value: an array (one entry per request) when the block
# sends several requests
sub get_indexed_value ($$$$) {
    my ($name, $value, $req_idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$req_idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results "
                 . "should be arrays as well.");
    }
    if (ref $value eq 'ARRAY') {
        bail_out("$name - SHOULD NOT HAPPEN: idx != 0 and don't need array.")
            if $req_idx != 0;
        return $value->[0];
    }
    return $value;
}

sub _subst_ports {
    my $s = shift;
    return $s if !defined $s || ref $s;
    $s =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
    $s =~ s/\$ServerPort\b/$ServerPort/g;
    return $s;
}

sub check_error_code ($$$$$) {
    my ($block, $res, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    my $code = ($res && $res->code) || '';
    SKIP: {
        Test::More::skip("$name - tests skipped due to $dry_run", 1) if $dry_run;
        if (defined $block->error_code_like) {
            my $val = get_indexed_value($name, $block->error_code_like,
                                        $req_idx, $need_array);
            Test::More::like($code, qr/$val/sm, "$name - status code ok");
        } elsif (defined $block->error_code) {
            Test::More::is($code, get_indexed_value($name, $block->error_code,
                                                    $req_idx, $need_array),
                           "$name - status code ok");
        } else {
            Test::More::is($code, 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers ($$$$$) {
    my ($block, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $value = $block->${\"raw_response_headers_$kind"};
        next unless defined $value;
        SKIP: {
            Test::More::skip("$name - raw_response_headers_$kind - tests skipped "
                             . "due to $dry_run", 1) if $dry_run;
            my $expected = get_indexed_value($name, $value, $req_idx, $need_array);
            if ($kind eq 'like') {
                Test::More::like($raw_headers, qr/$expected/s,
                                 "$name - raw resp headers like");
            } else {
                Test::More::unlike($raw_headers, qr/$expected/s,
                                   "$name - raw resp headers unlike");
            }
        }
    }
}

# one entry per header name (the last line for a name wins), in order
sub _unique_headers {
    my $pairs = parse_headers(shift // '');
    my (%value, @order);
    for my $p (@$pairs) {
        push @order, $p->[0] unless exists $value{ $p->[0] };
        $value{ $p->[0] } = $p->[1];
    }
    return map { [$_, $value{$_}] } @order;
}

sub check_response_headers ($$$$$$) {
    my ($block, $res, $raw_headers, $dry_run, $req_idx, $need_array) = @_;
    my $name = $block->name;

    if (defined $block->response_headers) {
        my @headers = _unique_headers(get_indexed_value(
            $name, $block->response_headers, $req_idx, $need_array));
        for my $h (@headers) {
            my ($key, $val) = @$h;
            if (!defined $val) {
                SKIP: {
                    Test::More::skip("$name - response_headers - tests skipped "
                                     . "due to $dry_run", 1) if $dry_run;
                    Test::More::unlike($raw_headers // '', qr/^\s*\Q$key\E\s*:/ms,
                        "$name - header $key not present in the raw headers");
                }
                next;
            }
            $val = _subst_ports($val);
            my $actual = $res ? scalar $res->header($key) : undef;
            SKIP: {
                Test::More::skip("$name - response_headers - tests skipped due "
                                 . "to $dry_run", 1) if $dry_run;
                Test::More::is($actual // '', $val, "$name - header $key ok");
            }
        }

    } elsif (defined $block->response_headers_like) {
        my @headers = _unique_headers(get_indexed_value(
            $name, $block->response_headers_like, $req_idx, $need_array));
        for my $h (@headers) {
            my ($key, $val) = @$h;
            $val //= '';
            my $actual = $res ? scalar $res->header($key) : undef;
            SKIP: {
                Test::More::skip("$name - response_headers_like - tests skipped "
                                 . "due to $dry_run", 1) if $dry_run;
                Test::More::like($actual // '', qr/^$val$/,
                                 "$name - header $key like ok");
            }
        }
    }
}

my %BodyFilters = (
    md5_hex  => \&Digest::MD5::md5_hex,
    sha1_hex => \&Digest::SHA::sha1_hex,
    uc       => sub { uc $_[0] },
    lc       => sub { lc $_[0] },
    ucfirst  => sub { ucfirst $_[0] },
    lcfirst  => sub { lcfirst $_[0] },
    length   => sub { length $_[0] },
);

sub _run_body_filter {
    my ($name, $filter, $content) = @_;
    return $filter->($content) if ref $filter eq 'CODE';
    if (!ref $filter) {
        my $f = $BodyFilters{$filter}
            or bail_out("$name - unknown filter, \"$filter\", specified in the "
                        . "--- response_body_filters section");
        return $f->($content);
    }
    bail_out("$name - the --- response_body_filters section only supports "
             . "subroutine reference values and string values");
}

# --- response_body_filters: names ("uc lc"), a sub, an array of them, or an
# array of such arrays (one per request)
sub transform_response_body ($$$) {
    my ($block, $res, $req_idx) = @_;
    return unless defined $res && defined $res->content;
    my $filters = $block->response_body_filters;
    return unless defined $filters;
    my $name = $block->name;

    if (!ref $filters) {
        $filters =~ s/^\s+|\s+$//gs;
        $filters = [split /\s+/, $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (ref $filters->[0] eq 'ARRAY') {
        bail_out("$name - the --- response_body_filters two-dimensional array "
                 . "only be like [[uc], [lc]] not [[uc], lc]")
            if grep { ref $_ ne 'ARRAY' } @$filters;
        $filters = $filters->[$req_idx];
        bail_out("$name - the ---response_body_filters two-dimensional array "
                 . "unmatch the specified request($req_idx)") unless defined $filters;
    }

    my $content = $res->content;
    for my $f (ref $filters eq 'ARRAY' ? @$filters : ($filters)) {
        $content = _run_body_filter($name, $f, $content);
    }
    $res->content($content);
}

sub _printable {
    my $s = shift;
    return $s unless defined $s;
    $s =~ s/([^\x20-\x7e])/sprintf('\\x{%02x}', ord $1)/ge;
    return $s;
}

sub check_response_body ($$$$$$) {
    my ($block, $res, $dry_run, $req_idx, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;

    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gms;
        $content =~ s/^Connection: TE, close\r\n//gms;
    }

    if (defined $block->response_body || defined $block->response_body_eval) {
        my $expected;
        if ($block->response_body_eval) {
            Test::More::diag("$name - response_body_eval is DEPRECATED. "
                             . "Use response_body eval instead.");
            $expected = eval get_indexed_value($name, $block->response_body_eval,
                                               $req_idx, $need_array);
            warn $@ if $@;
        } else {
            $expected = get_indexed_value($name, $block->response_body,
                                          $req_idx, $need_array);
        }
        Encode::from_to($expected, 'UTF-8', $block->charset)
            if $block->charset && defined $expected;
        $expected = _subst_ports($expected);

        SKIP: {
            Test::More::skip("$name - response_body - tests skipped due to "
                             . "$dry_run", 1) if $dry_run;
            if (ref $expected) {
                Test::More::like($content, $expected, "$name - response_body - "
                    . "like (repeated req $repeated_req_idx, req $req_idx)");
            } else {
                is_str($content, $expected, "$name - response_body - response "
                    . "is expected (repeated req $repeated_req_idx, req $req_idx)");
            }
        }

    } elsif (defined $block->response_body_like
             || defined $block->response_body_unlike)
    {
        my $type = defined $block->response_body_like ? 'like' : 'unlike';
        my $patterns = $type eq 'like' ? $block->response_body_like
                                       : $block->response_body_unlike;
        my $pat = _subst_ports(get_indexed_value($name, $patterns, $req_idx,
                                                 $need_array));
        my $summary = _printable(trim($content)) // '';
        SKIP: {
            Test::More::skip("$name - response_body_$type - tests skipped due "
                             . "to $dry_run", 1) if $dry_run;
            my $cmp = $type eq 'like' ? \&Test::More::like : \&Test::More::unlike;
            $cmp->($content, qr/$pat/s,
                   "$name - response_body_$type - response is expected ($summary)");
        }
    }

    for my $check (@ResponseBodyChecks) {
        $check->($block, $res ? $res->content : undef, $req_idx,
                 $repeated_req_idx, $dry_run);
    }
}

#--------------------------------------------------------------------------
# log checks
#--------------------------------------------------------------------------

sub fmt_str ($) {
    my $str = shift;
    chomp $str;
    $str =~ s/"/\\"/g;
    $str =~ s/\r/\\r/g;
    $str =~ s/\n/\\n/g;
    return $str;
}

# a section value as a fresh list of patterns: text (one per line), qr//,
# or an array of strings and qr//
sub _patterns {
    my $pats = shift;
    if (!ref $pats) {
        chomp $pats;
        return [split /\n+/, $pats];
    }
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats];
}

sub _line_matches {
    my ($line, $pat) = @_;
    return ref $pat ? $line =~ /$pat/ : index($line, $pat) >= 0;
}

sub _value_contains {
    my ($val, $needle) = @_;
    return 0 unless defined $val;
    return scalar grep { defined && !ref && index($_, $needle) >= 0 }
        (ref $val eq 'ARRAY' ? @$val : ($val));
}

# every pattern must match some line: one pass or one fail per pattern
sub _expect_patterns {
    my ($name, $section, $file, $pats, $lines, $dry_run, $req) = @_;
    for my $line (@$lines) {
        for my $pat (@$pats) {
            next unless defined $pat;
            next unless _line_matches($line, $pat);
            SKIP: {
                Test::More::skip("$name - $section - tests skipped due to $dry_run", 1)
                    if $dry_run;
                Test::More::pass("$name - pattern \"$pat\" matches a line in "
                                 . "$file$req");
            }
            undef $pat;
        }
    }
    for my $pat (@$pats) {
        next unless defined $pat;
        SKIP: {
            Test::More::skip("$name - $section - tests skipped due to $dry_run", 1)
                if $dry_run;
            Test::More::fail("$name - pattern \"$pat\" should match a line in "
                             . "$file$req");
        }
    }
}

# no pattern may match: one pass per pattern, or one fail per matching line
sub _reject_patterns {
    my ($name, $section, $file, $pats, $lines, $dry_run, $req) = @_;
    my %found;
    for my $i (0 .. $#$lines) {
        my $line = $lines->[$i];
        for my $pat (@$pats) {
            next unless defined $pat;
            next unless _line_matches($line, $pat);
            _no_ending() if $found{$pat}++;
            SKIP: {
                Test::More::skip("$name - $section - tests skipped due to "
                                 . "$dry_run ($line)", 1) if $dry_run;
                my @more = @$lines[$i + 1 .. min($i + 9, $#$lines - 1)];
                Test::More::fail("$name - pattern \"" . fmt_str($pat)
                    . "\" should not match any line in $file but matches line \""
                    . fmt_str($line) . "\"$req\n" . join('', @more));
            }
        }
    }
    for my $pat (@$pats) {
        next if !defined $pat || $found{$pat};
        SKIP: {
            Test::More::skip("$name - $section - tests skipped due to $dry_run", 1)
                if $dry_run;
            Test::More::pass("$name - pattern \"" . fmt_str($pat)
                             . "\" does not match a line in $file$req");
        }
    }
}

sub check_error_log ($$$$$) {
    my ($block, $res, $dry_run, $repeated_req_idx, $need_array) = @_;
    my $name = $block->name;
    my $req = " (req $repeated_req_idx)";
    my $lines;

    # --- grep_error_log / grep_error_log_out
    my $grep_pat = $block->grep_error_log;
    $grep_pat = $grep_pat->[$repeated_req_idx] if ref $grep_pat eq 'ARRAY';
    if (!defined $grep_pat && defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- "
                 . "grep_error_log_out is defined");
    }
    if (defined $grep_pat) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- "
                 . "grep_error_log is defined") unless defined $expected;
        $expected = $expected->[$repeated_req_idx] if ref $expected eq 'ARRAY';
        SKIP: {
            Test::More::skip("$name - error_log - tests skipped due to $dry_run", 1)
                if $dry_run;
            $lines //= error_log_data();
            my $matched = '';
            for my $line (@$lines) {
                my $m;
                if (ref $grep_pat) {
                    $m = $& if $line =~ /$grep_pat/;
                } elsif (index($line, $grep_pat) >= 0) {
                    $m = $grep_pat;
                }
                $matched .= "$m\n" if defined $m && $m !~ /\n/;
            }
            if (ref $expected eq 'Regexp') {
                Test::More::like($matched, $expected, "$name - grep_error_log_out$req");
            } else {
                is_str($matched, $expected, "$name - grep_error_log_out$req");
            }
        }
    }

    my %warn_about = map { $_ => 1 } qw([alert] [crit] [emerg]);

    if (defined(my $pats = $block->error_log)) {
        for my $level (keys %warn_about) {
            (my $prefix = $level) =~ s/\]$//;
            delete $warn_about{$level} if _value_contains($pats, $prefix);
        }
        $lines //= error_log_data();
        _expect_patterns($name, 'error_log', 'error.log', _patterns($pats),
                         $lines, $dry_run, $req);
    }

    if (defined(my $pats = $block->no_error_log)) {
        for my $level (keys %warn_about) {
            (my $prefix = $level) =~ s/\]$//;
            delete $warn_about{$level} if _value_contains($pats, $prefix);
        }
        $lines //= error_log_data();
        _reject_patterns($name, 'no_error_log', 'error.log', _patterns($pats),
                         $lines, $dry_run, $req);
    }

    if (!$dry_run && %warn_about) {
        $lines //= error_log_data();
        for my $line (@$lines) {
            for my $level (keys %warn_about) {
                warn "WARNING: $name - " . fmt_str($line) . "\n"
                    if index($line, $level) >= 0;
            }
        }
    }

    for my $line (@{ $lines // [] }) {
        if ($line =~ /\bAssertion .*?failed\b/) {
            _no_ending();
            chomp(my $l = $line);
            Test::More::fail("$name - $l\n");
        }
    }
}

sub check_access_log ($$$) {
    my ($block, $dry_run, $repeated_req_idx) = @_;
    my $name = $block->name;
    my $req = " (req $repeated_req_idx)";
    my $lines;
    if (defined(my $pats = $block->access_log)) {
        $lines //= access_log_data();
        _expect_patterns($name, 'access_log', 'access.log', _patterns($pats),
                         $lines, $dry_run, $req);
    }
    if (defined(my $pats = $block->no_access_log)) {
        $lines //= access_log_data();
        _reject_patterns($name, 'no_access_log', 'access.log', _patterns($pats),
                         $lines, $dry_run, $req);
    }
}

# run (for the previous block) once its nginx has been stopped
sub check_shutdown_error_log ($$) {
    my ($block, $dry_run) = @_;
    my $name = $block->name;
    my $lines = error_log_data();
    if (defined(my $pats = $block->no_shutdown_error_log)) {
        _reject_patterns($name, 'no_shutdown_error_log', 'error.log',
                         _patterns($pats), $lines, $dry_run, '');
    }
    if (defined(my $pats = $block->shutdown_error_log)) {
        _expect_patterns($name, 'shutdown_error_log', 'error.log',
                         _patterns($pats), $lines, $dry_run, '');
    }
}

1;
