# The README's directive table is kept true: it lists every directive the
# module has, and no other.

use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/..";

my %code;
for my $file (glob("$top/ngx_http_twirt_module.c $top/src/*.c")) {
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    my $c = <$fh>;
    # directives: entries of ngx_command_t tables
    while ($c =~ /\{\s*ngx_string\("(twirt_[a-z_]+)"\),\s*NGX_HTTP_/g) {
        $code{$1} = 1;
    }
}

open my $fh, '<', "$top/README.md" or die $!;
my %doc;
while (my $line = <$fh>) {
    $doc{$1} = 1 if $line =~ /^\| `(twirt_[a-z_]+)[ ;]/;
}

ok(scalar(keys %code) > 30, 'directives found in the code');
for my $d (sort keys %code) {
    ok($doc{$d}, "$d is in the README's directive table");
}
for my $d (sort keys %doc) {
    ok($code{$d}, "$d in the README exists in the code");
}

done_testing();
