package Twirt::DNS;

# A DNS answer for the fake resolver of a test block (udp_reply): every
# question gets the A records given, in order.  dns_server(): the same
# from a process of its own, for what resolves outside a block's request
# (the Redis connection, made when the worker starts).

use strict;
use warnings;
use Exporter 'import';

use IO::Socket::INET;

our @EXPORT = qw(dns_reply dns_server);

# returns sub { my $query = shift; ... } for `--- udp_reply eval`
sub dns_reply {
    my (@ips) = @_;

    return sub {
        my ($query) = @_;
        my ($id) = unpack('n', $query);
        my $pos = 12;

        # the question, copied back as is
        while ((my $len = ord substr($query, $pos, 1)) != 0) {
            $pos += $len + 1;
        }
        my $question = substr($query, 12, $pos + 5 - 12);

        my $answers = '';
        for my $ip (@ips) {
            $answers .= pack('n', 0xc00c)              # name: the question's
                      . pack('nnNn', 1, 1, 60, 4)      # A, IN, ttl 60, rdlen
                      . pack('C4', split /\./, $ip);
        }

        return pack('nnnnnn', $id, 0x8180, 1, scalar @ips, 0, 0)
               . $question . $answers;
    };
}

# a DNS server on 127.0.0.1:$port answering A questions with @ips and
# others with no record, until killed; returns its pid
sub dns_server {
    my ($port, @ips) = @_;
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                     LocalPort => $port, Proto => 'udp')
        or die "dns: $!";
    my $a = dns_reply(@ips);
    my $pid = fork() // die "fork: $!";
    return $pid if $pid;

    while (1) {
        my $q = '';
        my $peer = $sock->recv($q, 512) // next;
        next if length $q < 17;
        my $end = 12;
        $end += 1 + ord substr($q, $end, 1) while ord substr($q, $end, 1);
        if (unpack('n', substr($q, $end + 1, 2)) == 1) {
            $sock->send($a->($q), 0, $peer);
            next;
        }
        $sock->send(substr($q, 0, 2) . pack('nnnnn', 0x8180, 1, 0, 0, 0)
                    . substr($q, 12, $end + 5 - 12), 0, $peer);
    }
}

# for eval sections, which run in Test::Base::Filter
{
    no strict 'refs';
    *{"Test::Base::Filter::dns_reply"} = \&dns_reply;
}

1;
