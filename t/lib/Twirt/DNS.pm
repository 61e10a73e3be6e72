package Twirt::DNS;

# A DNS answer for the fake resolver of a test block (udp_reply): every
# question gets the A records given, in order.

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw(dns_reply);

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

# for eval sections, which run in Test::Base::Filter
{
    no strict 'refs';
    *{"Test::Base::Filter::dns_reply"} = \&dns_reply;
}

1;
