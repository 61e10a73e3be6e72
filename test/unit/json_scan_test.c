
/*
 * Unit tests of the audio path's JSON scanner (TAP).
 */


#include <stdio.h>
#include <string.h>

#include "ngx_http_twirt_json_scan.h"


static int  ngx_http_twirt_test_n;
static int  ngx_http_twirt_test_failed;


static void
ok(int cond, const char *name)
{
    ngx_http_twirt_test_n++;

    if (!cond) {
        ngx_http_twirt_test_failed++;
    }

    printf("%sok %d - %s\n", cond ? "" : "not ", ngx_http_twirt_test_n, name);
}


static ngx_int_t
scan(const char *json, ngx_http_twirt_json_field_t *f, ngx_uint_t n)
{
    return ngx_http_twirt_json_scan((u_char *) json, strlen(json), f, n);
}


static int
is(ngx_http_twirt_json_field_t *f, const char *value)
{
    return f->found && f->value.len == strlen(value)
           && memcmp(f->value.data, value, f->value.len) == 0;
}


int
main(void)
{
    ngx_http_twirt_json_field_t  f[3];

    f[0].path = "event";
    f[1].path = "media.payload";
    f[2].path = "streamSid";

    ok(scan("{\"event\":\"media\",\"sequenceNumber\":\"4\",\"media\":"
            "{\"track\":\"inbound\",\"chunk\":\"2\",\"timestamp\":\"40\","
            "\"payload\":\"/////w==\"},\"streamSid\":\"MZ1\"}", f, 3)
       == NGX_OK, "a Twilio media message");
    ok(is(&f[0], "media"), "its event");
    ok(is(&f[1], "/////w=="), "its payload");
    ok(is(&f[2], "MZ1"), "its streamSid");

    ok(scan(" {\n\t\"media\" : { \"payload\" : \"AA==\" } ,\"event\":"
            "\"media\" } \r\n", f, 3) == NGX_OK
       && is(&f[1], "AA==") && is(&f[0], "media") && !f[2].found,
       "any order, any white space; a missing field is not found");

    ok(scan("{\"event\":\"me\\u0064ia\"}", f, 3) == NGX_DECLINED,
       "an escape in a wanted value: declined, jansson decides");
    ok(scan("{\"note\":\"a\\\"b\\\\c\\/\\u00e9\\n\",\"event\":\"media\"}", f, 3)
       == NGX_OK && is(&f[0], "media"), "escapes elsewhere are fine");
    ok(scan("{\"event\":\"media\",\"event\":\"stop\"}", f, 3) == NGX_DECLINED,
       "a repeated wanted key: declined");
    ok(scan("{\"media\":{\"payload\":\"AA==\"},\"media\":{\"x\":\"\"}}",
            f, 3) == NGX_DECLINED,
       "a repeated key on the way to a field found: declined (jansson "
       "keeps the last, which has no payload)");
    ok(scan("{\"media\":{\"x\":\"\"},\"media\":{\"payload\":\"AA==\"}}",
            f, 3) == NGX_OK && is(&f[1], "AA=="),
       "a repeated key before the field is found: the last one, as jansson");
    ok(scan("{\"x\":[{\"media\":{\"payload\":\"A\"}}],\"event\":\"m\"}", f, 3)
       == NGX_OK && !f[1].found, "a path inside an array is not the field");
    ok(scan("{\"start\":{\"event\":\"x\"}}", f, 3) == NGX_OK && !f[0].found,
       "a nested key of the same name is not the field");
    ok(scan("{\"media\":\"flat\"}", f, 3) == NGX_OK && !f[1].found,
       "a string where an object is expected: not found");
    ok(scan("{\"n\":-1.5e+3,\"z\":0,\"t\":true,\"f\":false,\"u\":null,"
            "\"a\":[],\"o\":{}}", f, 3) == NGX_OK, "every kind of value");

    ok(scan("", f, 3) == NGX_DECLINED, "empty");
    ok(scan("[1]", f, 3) == NGX_DECLINED, "not an object");
    ok(scan("{\"event\":\"media\"", f, 3) == NGX_DECLINED, "truncated");
    ok(scan("{\"event\":\"media\"}x", f, 3) == NGX_DECLINED, "trailing bytes");
    ok(scan("{\"event\":\"media\",}", f, 3) == NGX_DECLINED, "trailing comma");
    ok(scan("{event:\"media\"}", f, 3) == NGX_DECLINED, "unquoted key");
    ok(scan("{\"a\":01}", f, 3) == NGX_DECLINED, "leading zero");
    ok(scan("{\"a\":1.}", f, 3) == NGX_DECLINED, "bad fraction");
    ok(scan("{\"a\":tru}", f, 3) == NGX_DECLINED, "bad literal");
    ok(scan("{\"a\":\"\x01\"}", f, 3) == NGX_DECLINED, "a control character");
    ok(scan("{\"a\":\"\\x\"}", f, 3) == NGX_DECLINED, "a bad escape");
    ok(scan("{\"a\":\"\\u12g4\"}", f, 3) == NGX_DECLINED, "a bad \\u escape");
    ok(scan("{\"a\":\"\\u\x19\x19\x19" "0\"}", f, 3) == NGX_DECLINED,
       "control bytes are not hex digits (found by fuzzing)");
    ok(scan("{\"a\":\"\\uABcd\"}", f, 3) == NGX_OK, "hex digits in any case");
    ok(scan("{\"a\":[[[[[[[[[[1]]]]]]]]]]}", f, 3) == NGX_DECLINED,
       "deeper than it takes: declined");

    printf("1..%d\n", ngx_http_twirt_test_n);

    return ngx_http_twirt_test_failed ? 1 : 0;
}
