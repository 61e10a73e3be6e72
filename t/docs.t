# The README's directive tables are kept true: the Directives table lists
# every directive of the production build and no other; the test build's
# table (under "Test suite") lists every directive of the test module
# (test/module/) and no other.

use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/..";

sub directives {
    my (@files) = @_;
    my %found;
    for my $file (@files) {
        open my $fh, '<', $file or die "$file: $!";
        local $/;
        my $c = <$fh>;
        # directives: entries of ngx_command_t tables
        while ($c =~ /\{\s*ngx_string\("(twirt_[a-z_]+)"\),\s*NGX_HTTP_/g) {
            $found{$1} = 1;
        }
    }
    return \%found;
}

my $code = directives(glob("$top/ngx_http_twirt_module.c $top/src/*.c"));
my $test_code = directives(glob("$top/test/module/*.c"));

# table rows, by the section they are in
open my $fh, '<', "$top/README.md" or die $!;
my (%doc, %test_doc, $section);
while (my $line = <$fh>) {
    $section = $1 if $line =~ /^## (.*)/;
    next unless $line =~ /^\| `(twirt_[a-z_]+)[ ;]/;
    if ($section eq 'Directives') {
        $doc{$1} = 1;
    } elsif ($section eq 'Test suite') {
        $test_doc{$1} = 1;
    } else {
        fail("$1 is in a directive table outside Directives and Test suite");
    }
}

ok(scalar(keys %$code) > 30, 'directives found in the code');
for my $d (sort keys %$code) {
    ok($doc{$d}, "$d is in the README's directive table");
}
for my $d (sort keys %doc) {
    ok($code->{$d}, "$d in the README exists in the code");
}

ok(scalar(keys %$test_code) > 0, 'directives found in the test module');
for my $d (sort keys %$test_code) {
    ok($test_doc{$d}, "$d is in the README's test build table");
    ok(!$doc{$d}, "$d is not in the production directive table");
    ok(!$code->{$d}, "$d is not in the production sources");
}
for my $d (sort keys %test_doc) {
    ok($test_code->{$d}, "$d in the README's test table exists in the test module");
}

done_testing();
