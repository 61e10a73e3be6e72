package Twirt::WS;

# WebSocket bytes for raw_request/response_body sections, built with
# Protocol::WebSocket::Frame (an implementation independent of twirt's).

use strict;
use warnings;
use Exporter ();
our @ISA = ('Exporter');
use JSON::PP;
use MIME::Base64;
use Digest::SHA qw(hmac_sha1_base64);
use Protocol::WebSocket::Frame;

our @EXPORT = qw(sign ws_upgrade ws_frame ws_server_frame ws_close_payload
                 ws_json twilio_start twilio_media twilio_stop
                 twilio_connected RFC_KEY RFC_ACCEPT);

# eval sections run in Test::Base::Filter: the helpers are there too
sub import {
    my $class = shift;
    $class->export_to_level(1, $class, @_);
    no strict 'refs';
    *{"Test::Base::Filter::$_"} = \&{"Twirt::WS::$_"} for @EXPORT;
}

use constant RFC_KEY    => 'dGhlIHNhbXBsZSBub25jZQ==';
use constant RFC_ACCEPT => 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=';

# X-Twilio-Signature over a URL (and sorted parameters, already joined)
sub sign {
    my ($token, $data) = @_;
    my $s = hmac_sha1_base64($data, $token);
    return $s . '=' x ((4 - length($s) % 4) % 4);
}

# the opening handshake Twilio sends, as raw request text
sub ws_upgrade {
    my ($path, %h) = @_;
    my %headers = (
        'Host'                  => 'localhost',
        'Upgrade'               => 'websocket',
        'Connection'            => 'Upgrade',
        'Sec-WebSocket-Key'     => RFC_KEY,
        'Sec-WebSocket-Version' => '13',
        %h,
    );
    my $version = delete $headers{_version} // 'HTTP/1.1';
    my $method = delete $headers{_method} // 'GET';
    my $req = "$method $path $version\r\n";
    for my $k (sort keys %headers) {
        next unless defined $headers{$k};
        $req .= "$k: $headers{$k}\r\n";
    }
    return "$req\r\n";
}

# a client frame: masked unless masked => 0
sub ws_frame {
    my ($type, $payload, %o) = @_;
    my %args = (buffer => $payload // '', masked => $o{masked} // 1);
    if ($type =~ /^\d+$/) { $args{opcode} = $type } else { $args{type} = $type }
    $args{fin} = $o{fin} if exists $o{fin};
    $args{rsv} = $o{rsv} if exists $o{rsv};
    $args{max_payload_size} = 0;
    return Protocol::WebSocket::Frame->new(%args)->to_bytes;
}

# a frame as the server must send it: never masked
sub ws_server_frame {
    my ($type, $payload) = @_;
    return ws_frame($type, $payload, masked => 0);
}

sub ws_close_payload {
    my ($code, $reason) = @_;
    return pack('n', $code) . ($reason // '');
}

sub ws_json { ws_frame('text', JSON::PP->new->canonical->encode($_[0])) }

sub twilio_connected {
    ws_json({ event => 'connected', protocol => 'Call', version => '1.0.0' });
}

sub twilio_start {
    my ($call, $stream, $params) = @_;
    ws_json({ event => 'start', sequenceNumber => '1', streamSid => $stream,
              start => { accountSid => 'AC0', streamSid => $stream,
                         callSid => $call, tracks => ['inbound'],
                         customParameters => $params // {},
                         mediaFormat => { encoding => 'audio/x-mulaw',
                                          sampleRate => 8000,
                                          channels => 1 } } });
}

sub twilio_media {
    my ($stream, $n, $byte) = @_;
    my $payload = encode_base64(chr($byte // 0xff) x 160, '');
    ws_json({ event => 'media', sequenceNumber => "" . ($n + 2),
              streamSid => $stream,
              media => { track => 'inbound', chunk => "" . ($n + 1),
                         timestamp => "" . ($n * 20),
                         payload => $payload } });
}

sub twilio_stop {
    my ($call, $stream) = @_;
    ws_json({ event => 'stop', sequenceNumber => '9', streamSid => $stream,
              stop => { accountSid => 'AC0', callSid => $call } });
}

1;
