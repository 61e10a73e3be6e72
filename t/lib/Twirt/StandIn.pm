package Twirt::StandIn;

# What t/peers/twilio_rest.py (the Twilio stand-in) saw, read from its
# --record: every create request (POST Calls.json) as an attempt with the
# campaign, row and attempt of its Url, the call it made and how that call
# ended.  The stand-in is the ground truth for what was dialed: pacing,
# concurrency, a row dialed twice.  Plus the small things a campaign test
# needs besides: a query string parsed, a CSV parsed.

use strict;
use warnings;
use Exporter 'import';
use JSON::PP;

my $json = JSON::PP->new->utf8;
my %cache;          # record file -> { pos, records }

our @EXPORT = qw(rest_attempts attempts_by_row dial_problems rate_of
                 per_second_median peak_in max_overlap expected_outcome
                 url_query csv_parse);

my %retryable = map { $_ => 1 } qw(busy no-answer failed);
my %final = map { $_ => 1 } qw(completed busy no-answer failed canceled);

# the query of a URL as a hash (last value wins), %XX and + decoded, UTF-8
sub url_query {
    my ($url) = @_;
    my (undef, $q) = split /\?/, $url // '', 2;
    my %h;
    for my $pair (split /&/, $q // '') {
        my ($k, $v) = split /=/, $pair, 2;
        for ($k, $v) {
            $_ //= '';
            tr/+/ /;
            s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
            utf8::decode($_);
        }
        $h{$k} = $v;
    }
    return \%h;
}

# the record's lines that say what was dialed (create requests, call
# statuses, ends), read on from where the last call stopped: polled
# often, the record grows long, and JSON::PP is slow
sub _dial_records {
    my ($peer) = @_;
    my $file = $peer->{record};
    my $c = $cache{$file} //= { pos => 0, records => [] };
    open my $fh, '<', $file or return $c->{records};
    seek $fh, $c->{pos}, 0;
    while (my $line = <$fh>) {
        last unless $line =~ /\n\z/;          # a line still being written
        $c->{pos} += length $line;
        next unless $line =~ /^\{"t": [0-9.]+, "kind": "(?:call|call_done|api", "method": "POST", "path": "[^"]*\/Calls\.json)"/;
        my $r = eval { $json->decode($line) } or next;
        push @{ $c->{records} }, $r;
    }
    return $c->{records};
}

# every create request of the record (optionally of one campaign), in the
# order they were answered:
#   { t, http, code, sid, to, url, campaign, row, attempt, callback,
#     callback_port, plan, t_done, final, answered_by, duration,
#     webhook_error, params }
# (t_done, when the call took its final status, and final are undef while
# the call is live; a refused create has http 4xx, its code, and no sid)
sub rest_attempts {
    my ($peer, $campaign) = @_;
    my $records = ref $peer eq 'ARRAY' ? $peer : _dial_records($peer);
    my (%done, %plan, @attempts);

    my %ended;
    for my $r (@$records) {
        my $kind = $r->{kind} // '';
        if ($kind eq 'call_done') {
            $done{ $r->{call_sid} } = $r;
        } elsif ($kind eq 'call' && $r->{plan}) {
            $plan{ $r->{call_sid} } = $r->{plan};
        } elsif ($kind eq 'call' && $final{ $r->{status} // '' }) {
            # the call is over (its last status callback follows)
            $ended{ $r->{call_sid} } //= $r->{t};
        }
    }

    for my $r (@$records) {
        next unless ($r->{kind} // '') eq 'api' && $r->{method} eq 'POST'
                    && $r->{path} =~ m{/Calls\.json$};
        my $p = $r->{params} // {};
        my $url = ($p->{Url} // [])->[-1] // '';
        my $cb = ($p->{StatusCallback} // [])->[-1] // '';
        my $q = url_query($url);
        next if defined $campaign && ($q->{campaign} // '') ne $campaign;
        my $body = ref $r->{body} eq 'HASH' ? $r->{body} : {};
        my $sid = $r->{status} == 201 ? $body->{sid} : undef;
        my $d = $sid ? $done{$sid} : undef;
        my ($cb_port) = $cb =~ m{^https?://[^/:]+:(\d+)/};
        my ($werr) = grep { ref $_ eq 'HASH' && $_->{error} }
                     @{ $d ? $d->{twiml} // [] : [] };
        push @attempts, {
            t => $r->{t}, http => $r->{status}, code => $body->{code},
            sid => $sid, to => ($p->{To} // [])->[-1], url => $url,
            campaign => $q->{campaign}, row => $q->{row},
            attempt => $q->{attempt}, callback => $cb,
            callback_port => $cb_port, plan => $sid ? $plan{$sid} : undef,
            t_done => $d ? $ended{$sid} // $d->{t} : undef,
            final => $d ? $d->{status} : undef,
            answered_by => $d ? $d->{answered_by} : undef,
            duration => $d ? $d->{duration} : undef,
            webhook_error => $werr ? $werr->{error} : undef, params => $p,
        };
    }

    return [ sort { $a->{t} <=> $b->{t} } @attempts ];
}

# { row => [attempts in order] }
sub attempts_by_row {
    my ($attempts) = @_;
    my %rows;
    push @{ $rows{ $_->{row} // '?' } }, $_ for @$attempts;
    return \%rows;
}

# what is wrong with how the rows were dialed, as sentences (none: right):
# more create requests than 1 + retries; a call created while an earlier
# call of the row was still live (two calls of a row overlapping); a row
# dialed again after an attempt that was neither busy, no-answer nor
# failed, or sooner than $delay seconds after it ended (less 0.5 s: the
# end is when the stand-in's call took its status, a little after the
# callback saying so was sent); a row never dialed at all (when $must_dial
# says it should be)
sub dial_problems {
    my ($by_row, $retries, $must_dial, $delay) = @_;
    my @p;
    for my $row (sort { $a <=> $b } grep { /^\d+$/ } keys %$by_row) {
        my $list = $by_row->{$row};
        push @p, "row $row: " . scalar(@$list) . " create requests, more "
                 . "than 1 + $retries retries" if @$list > 1 + $retries;
        for my $i (1 .. $#$list) {
            my ($prev, $cur) = @$list[$i - 1, $i];
            next unless $prev->{sid};       # a refused create dialed nothing
            if (!defined $prev->{t_done} || $prev->{t_done} > $cur->{t}) {
                push @p, sprintf "row %s: %s created at %.3f while %s was "
                    . "still live (ended %s)", $row, $cur->{sid} // 'a call',
                    $cur->{t}, $prev->{sid}, $prev->{t_done} // 'never';
            }
            if (defined $delay && defined $prev->{t_done}
                && $cur->{t} < $prev->{t_done} + $delay - 0.5) {
                push @p, sprintf "row %s: retried %.2f s after %s ended, "
                    . "sooner than the retry delay (%s s)", $row,
                    $cur->{t} - $prev->{t_done}, $prev->{sid}, $delay;
            }
            if (($cur->{attempt} // 0) <= ($prev->{attempt} // 0)) {
                push @p, sprintf "row %s: attempt %s after attempt %s", $row,
                    $cur->{attempt} // 'none', $prev->{attempt} // 'none';
            }
            if (!$retryable{ $prev->{final} // '' }) {
                push @p, sprintf "row %s: dialed again (%s) after %s ended "
                    . "%s", $row, $cur->{sid} // $cur->{http}, $prev->{sid},
                    $prev->{final} // 'never';
            }
        }
    }
    for my $row (@{ $must_dial // [] }) {
        push @p, "row $row: never dialed" unless $by_row->{$row};
    }
    return @p;
}

# the rate of the times between the first and the last: (n - 1) / span
sub rate_of {
    my (@t) = sort { $a <=> $b } @_;
    return undef if @t < 2 || $t[-1] == $t[0];
    return (@t - 1) / ($t[-1] - $t[0]);
}

# the median of the counts per whole second from the first time to the
# last, the last (partial) second left out
sub per_second_median {
    my (@t) = sort { $a <=> $b } @_;
    return undef if @t < 2;
    my @count = (0) x int($t[-1] - $t[0]);
    for my $t (@t) {
        my $i = int($t - $t[0]);
        $count[$i]++ if $i < @count;
    }
    return undef unless @count;
    @count = sort { $a <=> $b } @count;
    return $count[ int(@count / 2) ];
}

# the most times in any window of $secs (half open: (t - secs, t])
sub peak_in {
    my ($secs, @t) = @_;
    @t = sort { $a <=> $b } @t;
    my ($best, $j) = (0, 0);
    for my $i (0 .. $#t) {
        $j++ while $t[$j] <= $t[$i] - $secs;
        $best = $i - $j + 1 if $i - $j + 1 > $best;
    }
    return $best;
}

# the most intervals [from, to] live at once (to undef: never ended)
sub max_overlap {
    my (@iv) = @_;
    my @ev;
    for my $iv (@iv) {
        push @ev, [$iv->[0], 1], [$iv->[1] // 9e9, -1];
    }
    # an end before a start at the same instant
    my ($n, $best) = (0, 0);
    for my $e (sort { $a->[0] <=> $b->[0] || $a->[1] <=> $b->[1] } @ev) {
        $n += $e->[1];
        $best = $n if $n > $best;
    }
    return $best;
}

# the outcome a campaign row should have after this attempt (its last),
# from what Twilio said: a list of acceptable outcomes
sub expected_outcome {
    my ($a) = @_;
    return [qw(invalid failed)] if !$a->{sid};    # Twilio refused the number
    my $final = $a->{final} // return [];
    if ($final eq 'completed') {
        return ['voicemail'] if ($a->{answered_by} // '') =~ /^machine|^fax/;
        # answered, but its Url webhook failed (its node had gone)
        return [qw(completed failed)] if $a->{webhook_error};
        return ['completed'];
    }
    return ['no_answer'] if $final eq 'no-answer';
    return [qw(cancelled no_answer failed)] if $final eq 'canceled';
    return [$final];
}

# RFC 4180 text (no BOM) into rows of fields; also returns whether every
# line ended with CRLF
sub csv_parse {
    my ($text) = @_;
    my (@rows, @row, $field);
    my $crlf = 1;
    my $i = 0;
    my $len = length $text;
    $field = '';
    my $quoted = 0;
    while ($i < $len) {
        my $c = substr($text, $i, 1);
        if ($quoted) {
            if ($c eq '"') {
                if (substr($text, $i + 1, 1) eq '"') { $field .= '"'; $i += 2; next }
                $quoted = 0; $i++; next;
            }
            $field .= $c; $i++; next;
        }
        if ($c eq '"') { $quoted = 1; $i++; next }
        if ($c eq ',') { push @row, $field; $field = ''; $i++; next }
        if ($c eq "\r" && substr($text, $i + 1, 1) eq "\n") {
            push @row, $field; push @rows, [@row]; @row = (); $field = '';
            $i += 2; next;
        }
        if ($c eq "\n") {
            $crlf = 0;
            push @row, $field; push @rows, [@row]; @row = (); $field = '';
            $i++; next;
        }
        $field .= $c; $i++;
    }
    if (length $field || @row) {
        $crlf = 0;                      # the last line has no line end
        push @row, $field;
        push @rows, [@row];
    }
    return (\@rows, $crlf);
}

1;
