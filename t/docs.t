# The README's directive tables are kept true: the Directives table lists
# every directive of the production build and no other, each row's context
# the one its ngx_command_t flags allow and its default the one the merge
# (or init) function sets; the test build's table (under "Test suite")
# lists every directive of the test module (test/module/) and no other.
# `config` lists exactly the sources in src/.

use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/..";

my $all = '';
my (%code, %ctx, %field, %handler);
for my $file (glob("$top/ngx_http_twirt_module.c $top/src/*.c $top/src/*.h")) {
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    my $c = <$fh>;
    $all .= $c;
    # directives: entries of ngx_command_t tables
    while ($c =~ /\{\s*ngx_string\("(twirt_[a-z_]+)"\),\s*(NGX_HTTP_[A-Z0-9_|]+),\s*(\w+),\s*\w+,\s*(offsetof\([^)]*\)|[^,]+),/g) {
        my ($name, $flags, $handler, $offset) = ($1, $2, $3, $4);
        $code{$name} = 1;
        $ctx{$name} = join ', ', grep { defined }
            ($flags =~ /NGX_HTTP_MAIN_CONF/ ? 'http' : undef),
            ($flags =~ /NGX_HTTP_SRV_CONF/ ? 'server' : undef),
            ($flags =~ /NGX_HTTP_LOC_CONF/ ? 'location' : undef);
        $handler{$name} = $handler;
        $field{$name} = $1 if $offset =~ /offsetof\(\w+,\s*(\w+)\)/;
    }
}

my %test_code;
for my $file (glob("$top/test/module/*.c")) {
    open my $fh, '<', $file or die "$file: $!";
    local $/;
    my $c = <$fh>;
    $test_code{$1} = 1
        while $c =~ /\{\s*ngx_string\("(twirt_[a-z_]+)"\),\s*NGX_HTTP_/g;
}

# table rows, by the section they are in
open my $fh, '<', "$top/README.md" or die $!;
my (%doc, %doc_default, %doc_ctx, %test_doc, $section);
while (my $line = <$fh>) {
    $section = $1 if $line =~ /^## (.*)/;
    next unless $line =~ /^\| `(twirt_[a-z_]+)[ ;]/;
    my $d = $1;
    if ($section eq 'Test suite') {
        $test_doc{$d} = 1;
        next;
    }
    if ($section ne 'Directives') {
        fail("$d is in a directive table outside Directives and Test suite");
        next;
    }
    $doc{$d} = 1;
    # | `directive` | default | context | meaning |, with \| inside cells
    my @cells = map { s/^\s+|\s+$//gr } split /(?<!\\)\|/, $line;
    $doc_default{$d} = $cells[2];
    $doc_ctx{$d} = $cells[3];
}

ok(scalar(keys %code) > 30, 'directives found in the code');
for my $d (sort keys %code) {
    ok($doc{$d}, "$d is in the README's directive table");
}
for my $d (sort keys %doc) {
    ok($code{$d}, "$d in the README exists in the code");
}

for my $d (sort grep { $doc{$_} } keys %code) {
    is($doc_ctx{$d}, $ctx{$d}, "$d: the README's context is the code's");
}

# defaults the README describes in words: computed at run time
my %computed = (
    twirt_stream_url => 'wss://, the request Host and /twilio/media',
    twirt_public_url => "the request's URL",
    twirt_openai_api_key => 'from the environment',
    twirt_node => 'the host name',
);

# the statement that sets a field's default, and the default in it
sub code_default {
    my ($field) = @_;
    for my $call ($all =~ /ngx_conf_(?:merge|init)_\w*?value\(([^;]*?)\);/g) {
        my @args = split /,\s*/, $call;
        next unless $args[0] =~ /->\Q$field\E$/;
        return $args[-1];
    }
    for my $stmt (split /;/, $all) {
        next unless $stmt =~ /->\Q$field\E\b/;
        return $1 if $stmt =~ /&?(ngx_http_twirt_(?:redis_)?default_\w+)/;
    }
    return 'NULL';
}

# a field merged as milliseconds: a time, whatever parses it ("off" too)
sub merged_msec {
    my ($field) = @_;
    return defined $field
           && $all =~ /ngx_conf_merge_msec_value\(conf->\Q$field\E,/;
}

# the names an enum constant has in the tables
sub enum_names {
    my ($const) = @_;
    return $all =~ /\{\s*ngx_string\("([^"]+)"\),\s*\Q$const\E\s*\}/g;
}

sub initializer {
    my ($var) = @_;
    $all =~ /\Q$var\E\s*=\s*(\{[^;]*\}|ngx_string\("[^"]*"\));/
        or return undef;
    return $1;
}

sub members {
    my ($type) = @_;
    $all =~ /typedef struct \{([^}]*)\}\s*\Q$type\E;/ or die "$type?";
    return $1 =~ /^\s*\w+\s+\**(\w+);/mg;
}

my %unit = (k => 1024, m => 1024 * 1024);
my %ms = (ms => 1, s => 1000, m => 60000, h => 3600000, d => 86400000);

sub size_of { my ($s) = @_; $s =~ /^(\d+)([km]?)$/i or return "bad size $s";
              return $1 * ($2 ? $unit{lc $2} : 1) }
sub ms_of { my ($s) = @_; $s =~ /^(\d+)(ms|s|m|h|d)$/ or return "bad time $s";
            return $1 * $ms{$2} }

for my $d (sort grep { $doc{$_} } keys %code) {
    my $doc = $doc_default{$d} // '';
    my ($word) = $doc =~ /`([^`]*)`/;
    $word = 'none' if $doc =~ /^—/;

    if ($computed{$d}) {
        like(code_default($field{$d}), qr/^(NULL|"")$/,
             "$d: computed at run time ($computed{$d})");
        next;
    }

    my $def = defined $field{$d} ? code_default($field{$d}) : 'NULL';
    my $h = $handler{$d};
    my $want;

    if ($def eq 'NULL' || $def eq '""') {
        $want = 'none';
    } elsif ($def =~ /^"(.*)"$/) {
        $want = $1;
    } elsif ($def =~ /^(NGX_HTTP_TWIRT_\w+)$/) {
        my @names = enum_names($1);
        ok(scalar(@names), "$d: $1 has a name in a table");
        $want = (grep { $_ eq ($word // '') } @names) ? $word : $names[0];
    } elsif ($def =~ /^&?(ngx_http_twirt_\w+)$/) {
        my $init = initializer($1);
        if ($init =~ /^ngx_string\("(.*)"\)$/) {
            $want = $1;
        } elsif ($def =~ /prices$/) {
            my @v = $init =~ /([\d.]+)/g;
            my %got = $doc =~ /(\w+)=([\d.]+)/g;
            my @m = members('ngx_http_twirt_prices_t');
            is(scalar(keys %got), scalar(@m), "$d: every price in the README");
            is($got{$m[$_]}, $v[$_] + 0, "$d: default $m[$_]") for 0 .. $#m;
            next;
        } elsif ($def =~ /vad$/) {
            my @v = split /,\s*/, ($init =~ s/^\{\s*|\s*\}$//gr);
            my @m = members('ngx_http_twirt_vad_t');
            my ($type, %got) = split /[\s=]+/, $word;
            ok((grep { $_ eq $type } enum_names($v[0])), "$d: default type $type");
            ok(scalar(keys %got), "$d: parameters in the README");
            for my $i (0 .. $#m) {
                next unless exists $got{$m[$i]};
                is($got{$m[$i]}, $v[$i] + 0, "$d: default $m[$i]");
            }
            next;
        } else {
            fail("$d: cannot read the default $def");
            next;
        }
    } elsif ($h eq 'ngx_conf_set_flag_slot') {
        $want = $def ? 'on' : 'off';
    } elsif ($h eq 'ngx_conf_set_size_slot') {
        $want = eval $def;
        $word = size_of($word // '');
    } elsif ($h eq 'ngx_conf_set_msec_slot' || merged_msec($field{$d})) {
        $want = $def + 0;
        $word = ms_of($word // '');
    } elsif ($h eq 'ngx_conf_set_sec_slot') {
        $want = $def * 1000;
        $word = ms_of($word // '');
    } elsif ($def =~ /^\d+$/) {
        $want = $def;
    } else {
        fail("$d: cannot read the default $def");
        next;
    }

    is($word, $want, "$d: the README's default is the code's");
}

ok(scalar(keys %test_code) > 0, 'directives found in the test module');
for my $d (sort keys %test_code) {
    ok($test_doc{$d}, "$d is in the README's test build table");
    ok(!$doc{$d}, "$d is not in the production directive table");
    ok(!$code{$d}, "$d is not in the production sources");
}
for my $d (sort keys %test_doc) {
    ok($test_code{$d}, "$d in the README's test table exists in the test module");
}

# config names each source and header, no globbing
{
    open my $cf, '<', "$top/config" or die $!;
    my $config = do { local $/; <$cf> };
    my %listed = map { $_ => 1 } $config =~ m{\$ngx_addon_dir/(src/[\w.]+\.[ch])\b}g;
    my %there = map { s{^\Q$top\E/}{}r => 1 } glob("$top/src/*.c $top/src/*.h");
    is_deeply([ sort keys %listed ], [ sort keys %there ],
              'config lists exactly the files in src/');
    unlike($config, qr/\bls\b|\*\.c|\*\.h/, 'config does not glob');
}

done_testing();
