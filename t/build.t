# The production build (make: objs/) has no test code; the build the
# suites load (make test-build: objs/test/) has the test module.  Both are
# found by the names their directives and hooks leave in the .so.

use strict;
use warnings;
use FindBin;
use Test::More;

my $top = "$FindBin::Bin/..";
my $production = "$top/objs/ngx_http_twirt_module.so";
my $tested = $ENV{TEST_NGINX_LOAD_MODULES} // "$top/objs/test/ngx_http_twirt_module.so";

sub slurp {
    my ($file) = @_;
    open my $fh, '<:raw', $file or die "$file: $!";
    local $/;
    return <$fh>;
}

plan skip_all => "no production build ($production): run make"
    unless -f $production;

my $so = slurp($production);
ok(index($so, 'ngx_http_twirt_module') >= 0, 'the production build is twirt');
ok(index($so, 'twirt_redis_test') < 0, 'it has no twirt_redis_test directive');
ok(index($so, 'ngx_http_twirt_test_module') < 0, 'nor the test module');

$so = slurp($tested);
ok(index($so, 'twirt_redis_test') >= 0, 'the module under test has the directive');
ok(index($so, 'ngx_http_twirt_test_module') >= 0, 'and the test module');

done_testing();
