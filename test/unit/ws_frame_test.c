
/*
 * Unit tests of the WebSocket frame codec, printing TAP.
 */


#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_twirt_ws_frame.h"
#include "ngx_http_twirt_utf8_ref.h"


#define OK      NGX_HTTP_TWIRT_WS_OK
#define ERROR   NGX_HTTP_TWIRT_WS_ERROR
#define AGAIN   NGX_HTTP_TWIRT_WS_AGAIN
#define SERVER  NGX_HTTP_TWIRT_WS_SERVER
#define CLIENT  NGX_HTTP_TWIRT_WS_CLIENT

#define S(s)    (const unsigned char *) (s), sizeof(s) - 1


static int ngx_http_twirt_test_ok(int cond, const char *fmt, ...)
    __attribute__ ((format (printf, 2, 3)));


static unsigned  ngx_http_twirt_test_n;
static unsigned  ngx_http_twirt_test_failed;


static int
ngx_http_twirt_test_ok(int cond, const char *fmt, ...)
{
    va_list  args;

    ngx_http_twirt_test_n++;

    printf("%sok %u - ", cond ? "" : "not ", ngx_http_twirt_test_n);

    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);

    printf("\n");

    if (!cond) {
        ngx_http_twirt_test_failed++;
    }

    return cond;
}


#define ok  ngx_http_twirt_test_ok


static int
ngx_http_twirt_test_parse_error(const unsigned char *p, size_t len, int role,
    uint64_t max, unsigned code)
{
    int                        rc;
    ngx_http_twirt_ws_frame_t  f;

    memset(&f, 0, sizeof(f));

    rc = ngx_http_twirt_ws_frame_parse(&f, p, len, role, max);

    return rc == ERROR && f.close_code == code && f.error != NULL
           && f.error[0] != '\0';
}


static void
ngx_http_twirt_test_rfc_examples(void)
{
    int                         rc;
    unsigned                    msg;
    unsigned char               buf[16], hdr[14];
    unsigned char               mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
    ngx_http_twirt_ws_frame_t   f;
    static const unsigned char  unmasked[] = "\x81\x05Hello";
    static const unsigned char  masked[] =
        "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    static const unsigned char  frag1[] = "\x01\x03Hel";
    static const unsigned char  frag2[] = "\x80\x02lo";
    static const unsigned char  ping[] = "\x89\x05Hello";
    static const unsigned char  pong[] =
        "\x8a\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";

    rc = ngx_http_twirt_ws_frame_parse(&f, unmasked, 7, CLIENT, 1 << 20);
    ok(rc == OK && f.fin && f.rsv == 0 && f.opcode == NGX_HTTP_TWIRT_WS_TEXT
       && !f.masked && f.payload_len == 5 && f.header_len == 2
       && memcmp(unmasked + 2, "Hello", 5) == 0,
       "rfc 5.7: unmasked text \"Hello\"");

    ok(ngx_http_twirt_ws_frame_header(hdr, 1, NGX_HTTP_TWIRT_WS_TEXT, 5, NULL)
       == 2 && memcmp(hdr, unmasked, 2) == 0,
       "rfc 5.7: header of unmasked \"Hello\" built");

    rc = ngx_http_twirt_ws_frame_parse(&f, masked, 11, SERVER, 1 << 20);
    memcpy(buf, masked + 6, 5);
    ngx_http_twirt_ws_unmask(buf, 5, f.mask, 0);
    ok(rc == OK && f.fin && f.opcode == NGX_HTTP_TWIRT_WS_TEXT && f.masked
       && f.payload_len == 5 && f.header_len == 6
       && memcmp(f.mask, mask, 4) == 0 && memcmp(buf, "Hello", 5) == 0,
       "rfc 5.7: masked text \"Hello\" with key 37 fa 21 3d");

    ok(ngx_http_twirt_ws_frame_header(hdr, 1, NGX_HTTP_TWIRT_WS_TEXT, 5, mask)
       == 6 && memcmp(hdr, masked, 6) == 0,
       "rfc 5.7: header of masked \"Hello\" built");

    memcpy(buf, "Hello", 5);
    ngx_http_twirt_ws_unmask(buf, 5, mask, 0);
    ok(memcmp(buf, masked + 6, 5) == 0, "rfc 5.7: masking \"Hello\"");

    msg = NGX_HTTP_TWIRT_WS_CONT;
    memset(buf, 0, sizeof(buf));

    rc = ngx_http_twirt_ws_frame_parse(&f, frag1, 5, CLIENT, 1 << 20);
    ok(rc == OK && !f.fin && f.opcode == NGX_HTTP_TWIRT_WS_TEXT
       && f.payload_len == 3
       && ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_TEXT,
       "rfc 5.7: fragmented text, first frame");
    memcpy(buf, frag1 + f.header_len, 3);

    rc = ngx_http_twirt_ws_frame_parse(&f, frag2, 4, CLIENT, 1 << 20);
    ok(rc == OK && f.fin && f.opcode == NGX_HTTP_TWIRT_WS_CONT
       && f.payload_len == 2
       && ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_CONT,
       "rfc 5.7: fragmented text, last frame");
    memcpy(buf + 3, frag2 + f.header_len, 2);
    ok(memcmp(buf, "Hello", 5) == 0, "rfc 5.7: fragments reassembled");

    rc = ngx_http_twirt_ws_frame_parse(&f, ping, 7, CLIENT, 1 << 20);
    ok(rc == OK && f.fin && f.opcode == NGX_HTTP_TWIRT_WS_PING
       && f.payload_len == 5 && f.header_len == 2,
       "rfc 5.7: unmasked ping");

    rc = ngx_http_twirt_ws_frame_parse(&f, pong, 11, SERVER, 1 << 20);
    memcpy(buf, pong + 6, 5);
    ngx_http_twirt_ws_unmask(buf, 5, f.mask, 0);
    ok(rc == OK && f.fin && f.opcode == NGX_HTTP_TWIRT_WS_PONG
       && f.payload_len == 5 && memcmp(buf, "Hello", 5) == 0,
       "rfc 5.7: masked pong");

    rc = ngx_http_twirt_ws_frame_parse(&f, S("\x82\x7e\x01\x00"), CLIENT,
                                       1 << 20);
    ok(rc == OK && f.opcode == NGX_HTTP_TWIRT_WS_BINARY && f.fin
       && f.payload_len == 256 && f.header_len == 4,
       "rfc 5.7: 256 bytes binary, 16-bit length");

    ok(ngx_http_twirt_ws_frame_header(hdr, 1, NGX_HTTP_TWIRT_WS_BINARY, 256,
                                      NULL) == 4
       && memcmp(hdr, "\x82\x7e\x01\x00", 4) == 0,
       "rfc 5.7: header of 256 bytes built");

    rc = ngx_http_twirt_ws_frame_parse(&f,
                                 S("\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
                                 CLIENT, 1 << 20);
    ok(rc == OK && f.opcode == NGX_HTTP_TWIRT_WS_BINARY && f.fin
       && f.payload_len == 65536 && f.header_len == 10,
       "rfc 5.7: 64 KiB binary, 64-bit length");

    ok(ngx_http_twirt_ws_frame_header(hdr, 1, NGX_HTTP_TWIRT_WS_BINARY, 65536,
                                      NULL) == 10
       && memcmp(hdr, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10) == 0,
       "rfc 5.7: header of 64 KiB built");
}


static void
ngx_http_twirt_test_errors(void)
{
    unsigned       op, rsv;
    unsigned char  h[14];
    int            all;

    all = 1;

    for (rsv = 1; rsv < 8; rsv++) {
        h[0] = (unsigned char) (0x81 | rsv << 4);
        h[1] = 0x85;
        memcpy(h + 2, "\x37\xfa\x21\x3d", 4);
        all &= ngx_http_twirt_test_parse_error(h, 6, SERVER, 1 << 20, 1002);
        all &= ngx_http_twirt_test_parse_error(h, 2, SERVER, 1 << 20, 1002);
    }

    ok(all, "rsv1, rsv2, rsv3 and combinations: 1002, known from 2 bytes");

    all = 1;

    for (op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 0xa)) {
            continue;
        }

        h[0] = (unsigned char) (0x80 | op);
        h[1] = 0x00;
        all &= ngx_http_twirt_test_parse_error(h, 2, CLIENT, 1 << 20, 1002);
    }

    ok(all, "opcodes 3-7 and 0xb-0xf: 1002");

    all = 1;

    for (op = 8; op <= 0xa; op++) {
        h[0] = (unsigned char) op;
        h[1] = 0x00;
        all &= ngx_http_twirt_test_parse_error(h, 2, CLIENT, 1 << 20, 1002);
    }

    ok(all, "close, ping, pong without fin: 1002");

    all = 1;

    for (op = 8; op <= 0xa; op++) {
        h[0] = (unsigned char) (0x80 | op);
        h[1] = 126;
        h[2] = 0;
        h[3] = 126;
        all &= ngx_http_twirt_test_parse_error(h, 4, CLIENT, 1 << 20, 1002);
        all &= ngx_http_twirt_test_parse_error(h, 2, CLIENT, 1 << 20, 1002);
        h[1] = 127;
        all &= ngx_http_twirt_test_parse_error(h, 2, CLIENT, 1 << 20, 1002);
    }

    ok(all, "control frames with payload over 125: 1002");

    ok(ngx_http_twirt_test_parse_error(S("\x88\x7d"), CLIENT, 1 << 20, 1002)
       == 0,
       "control frame with payload of 125 is fine");

    ok(ngx_http_twirt_test_parse_error(S("\x81\x05Hello"), SERVER, 1 << 20,
                                       1002),
       "unmasked frame to the server: 1002");

    ok(ngx_http_twirt_test_parse_error(S("\x81\x85\x37\xfa\x21\x3d"), CLIENT,
                                       1 << 20, 1002),
       "masked frame to the client: 1002");

    ok(ngx_http_twirt_test_parse_error(
           S("\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01"), CLIENT,
           UINT64_MAX, 1002),
       "64-bit length with the top bit set: 1002");

    ok(ngx_http_twirt_test_parse_error(
           S("\x82\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01\x02\x03\x04"),
           SERVER, UINT64_MAX, 1002),
       "64-bit length 0xffff...: 1002 even with no limit");

    ok(ngx_http_twirt_test_parse_error(S("\x82\x7d"), CLIENT, 124, 1009)
       && ngx_http_twirt_test_parse_error(S("\x82\x7d"), CLIENT, 125, 0) == 0,
       "7-bit length over max_payload: 1009, equal is fine");

    ok(ngx_http_twirt_test_parse_error(S("\x82\x7e\x01\x00"), CLIENT, 255,
                                       1009)
       && ngx_http_twirt_test_parse_error(S("\x82\x7e\x01\x00"), CLIENT, 256,
                                          0) == 0,
       "16-bit length over max_payload: 1009, equal is fine");

    ok(ngx_http_twirt_test_parse_error(
           S("\x82\xff\x00\x00\x00\x01\x00\x00\x00\x00\x01\x02\x03\x04"),
           SERVER, 0xffffffff, 1009),
       "64-bit length over max_payload: 1009");

    ok(ngx_http_twirt_test_parse_error(S("\x81\x00"), CLIENT, 0, 0) == 0,
       "empty frame with max_payload 0 is fine");
}


static void
ngx_http_twirt_test_sequence(void)
{
    unsigned                   msg;
    ngx_http_twirt_ws_frame_t  f;

    memset(&f, 0, sizeof(f));

    msg = NGX_HTTP_TWIRT_WS_CONT;
    f.opcode = NGX_HTTP_TWIRT_WS_CONT;
    f.fin = 1;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == ERROR
       && f.close_code == 1002 && f.error != NULL,
       "continuation without a message: 1002");

    msg = NGX_HTTP_TWIRT_WS_CONT;
    f.opcode = NGX_HTTP_TWIRT_WS_BINARY;
    f.fin = 0;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_BINARY,
       "fragmented binary starts a message");

    f.opcode = NGX_HTTP_TWIRT_WS_PING;
    f.fin = 1;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_BINARY,
       "ping inside a fragmented message is fine");

    f.opcode = NGX_HTTP_TWIRT_WS_TEXT;
    f.fin = 1;
    f.close_code = 0;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == ERROR
       && f.close_code == 1002,
       "text inside a fragmented message: 1002");

    f.opcode = NGX_HTTP_TWIRT_WS_CONT;
    f.fin = 0;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_BINARY,
       "continuation without fin keeps the message");

    f.fin = 1;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_CONT,
       "continuation with fin ends the message");

    f.opcode = NGX_HTTP_TWIRT_WS_TEXT;
    f.fin = 1;
    ok(ngx_http_twirt_ws_frame_sequence(&f, &msg) == OK
       && msg == NGX_HTTP_TWIRT_WS_CONT,
       "unfragmented text leaves no message in progress");
}


static void
ngx_http_twirt_test_again(void)
{
    int                         all;
    size_t                      i, k;
    ngx_http_twirt_ws_frame_t   f;
    static const struct {
        const char             *h;
        size_t                  len;
        int                     role;
    } hs[] = {
        { "\x81\x05", 2, CLIENT },
        { "\x81\x85\x37\xfa\x21\x3d", 6, SERVER },
        { "\x82\x7e\x01\x00", 4, CLIENT },
        { "\x82\xfe\x01\x00\x37\xfa\x21\x3d", 8, SERVER },
        { "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10, CLIENT },
        { "\x82\xff\x00\x00\x00\x00\x00\x01\x00\x00\x37\xfa\x21\x3d", 14,
          SERVER },
    };

    for (i = 0; i < sizeof(hs) / sizeof(hs[0]); i++) {
        all = 1;

        for (k = 0; k < hs[i].len; k++) {
            all &= ngx_http_twirt_ws_frame_parse(&f,
                                            (const unsigned char *) hs[i].h,
                                            k, hs[i].role, UINT64_MAX)
                   == AGAIN;
        }

        all &= ngx_http_twirt_ws_frame_parse(&f,
                                            (const unsigned char *) hs[i].h,
                                            hs[i].len, hs[i].role, UINT64_MAX)
               == OK
               && f.header_len == hs[i].len;

        ok(all, "header of %zu bytes: AGAIN for every shorter prefix, then OK",
           hs[i].len);
    }
}


static void
ngx_http_twirt_test_unmask(void)
{
    int            all;
    size_t         i, j, len, off;
    unsigned char  mask[4] = { 0x37, 0xfa, 0x21, 0x3d };
    unsigned char  src[300], whole[300], piece[300], ref[300];

    for (i = 0; i < sizeof(src); i++) {
        src[i] = (unsigned char) (i * 131 + 7);
    }

    all = 1;

    for (len = 0; len <= 80; len++) {
        for (off = 0; off < 8; off++) {
            memcpy(whole, src, len);
            ngx_http_twirt_ws_unmask(whole, len, mask, off);

            for (i = 0; i < len; i++) {
                ref[i] = src[i] ^ mask[(off + i) % 4];
            }

            all &= memcmp(whole, ref, len) == 0;
        }
    }

    ok(all, "unmask equals the byte-wise definition, lengths 0-80, offsets");

    all = 1;
    len = sizeof(src);

    memcpy(whole, src, len);
    ngx_http_twirt_ws_unmask(whole, len, mask, 0);

    for (i = 0; i <= len; i++) {
        memcpy(piece, src, len);
        ngx_http_twirt_ws_unmask(piece, i, mask, 0);
        ngx_http_twirt_ws_unmask(piece + i, len - i, mask, i);
        all &= memcmp(piece, whole, len) == 0;
    }

    ok(all, "unmask in two pieces at every split point of %zu bytes", len);

    all = 1;
    len = 70;

    for (i = 0; i <= len; i++) {
        for (j = i; j <= len; j++) {
            memcpy(piece, src, len);
            ngx_http_twirt_ws_unmask(piece, i, mask, 0);
            ngx_http_twirt_ws_unmask(piece + i, j - i, mask, i);
            ngx_http_twirt_ws_unmask(piece + j, len - j, mask, j);
            all &= memcmp(piece, whole, len) == 0;
        }
    }

    ok(all, "unmask in three pieces at every pair of split points");

    memcpy(piece, src, len);
    ngx_http_twirt_ws_unmask(piece, 10, mask, (uint64_t) 1 << 40 | 2);
    for (i = 0; i < 10; i++) {
        ref[i] = src[i] ^ mask[(i + 2) % 4];
    }

    ok(memcmp(piece, ref, 10) == 0, "unmask with an offset beyond 4 GiB");

    memcpy(piece, src, len);
    ngx_http_twirt_ws_unmask(piece, len, mask, 0);
    ngx_http_twirt_ws_unmask(piece, len, mask, 0);
    ok(memcmp(piece, src, len) == 0, "masking twice is the identity");
}


static int
ngx_http_twirt_test_utf8(const unsigned char *p, size_t len)
{
    ngx_http_twirt_utf8_t  u;

    ngx_http_twirt_utf8_init(&u);

    if (ngx_http_twirt_utf8_feed(&u, p, len) != OK) {
        return ERROR;
    }

    return ngx_http_twirt_utf8_finish(&u);
}


static void
ngx_http_twirt_test_utf8_vectors(void)
{
    int                         all, rc;
    size_t                      i, j, len;
    uint32_t                    v;
    unsigned char               b[64];
    ngx_http_twirt_utf8_t       u;
    static const char           jp[] = "お電話ありがとうございます";
    static const struct {
        const char             *s;
        int                     rc;
        const char             *name;
    } vs[] = {
        { "", OK, "empty" },
        { "hello, world", OK, "ascii" },
        { "\x7f", OK, "del" },
        { "\xc2\x80", OK, "u+0080" },
        { "\xc3\xa9", OK, "e acute" },
        { "\xdf\xbf", OK, "u+07ff" },
        { "\xe0\xa0\x80", OK, "u+0800" },
        { "\xe2\x82\xac", OK, "euro sign" },
        { "\xed\x9f\xbf", OK, "u+d7ff" },
        { "\xee\x80\x80", OK, "u+e000" },
        { "\xef\xbf\xbf", OK, "u+ffff" },
        { "\xf0\x90\x80\x80", OK, "u+10000" },
        { "\xf0\x90\x8d\x88", OK, "gothic hwair" },
        { "\xf4\x8f\xbf\xbf", OK, "u+10ffff" },
        { "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", OK, "kosme" },
        { "\x80", ERROR, "lone continuation 80" },
        { "\xbf", ERROR, "lone continuation bf" },
        { "\xc0\x80", ERROR, "overlong nul c0 80" },
        { "\xc1\xbf", ERROR, "overlong c1 bf" },
        { "\xe0\x80\x80", ERROR, "overlong e0 80 80" },
        { "\xe0\x9f\xbf", ERROR, "overlong e0 9f bf" },
        { "\xf0\x80\x80\x80", ERROR, "overlong f0 80 80 80" },
        { "\xf0\x8f\xbf\xbf", ERROR, "overlong f0 8f bf bf" },
        { "\xed\xa0\x80", ERROR, "surrogate ed a0 80" },
        { "\xed\xbf\xbf", ERROR, "surrogate ed bf bf" },
        { "\xed\xa0\xbd\xed\xb2\xa9", ERROR, "surrogate pair (cesu-8)" },
        { "\xf4\x90\x80\x80", ERROR, "u+110000 f4 90 80 80" },
        { "\xf5\x80\x80\x80", ERROR, "f5 lead" },
        { "\xf8\x88\x80\x80\x80", ERROR, "5-byte form" },
        { "\xfe", ERROR, "fe" },
        { "\xff", ERROR, "ff" },
        { "\xe2\x28\xa1", ERROR, "ascii instead of continuation" },
        { "\xc3", ERROR, "truncated 2-byte at the end" },
        { "\xe2\x82", ERROR, "truncated 3-byte at the end" },
        { "\xf0\x90\x8d", ERROR, "truncated 4-byte at the end" },
        { "\xc3\xa9\xc3", ERROR, "truncated after a valid one" },
        { "abcdefghijklmnopq\x80", ERROR, "bad byte after a long ascii run" },
    };

    for (i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        len = strlen(vs[i].s);
        rc = ngx_http_twirt_test_utf8((const unsigned char *) vs[i].s, len);
        ok(rc == vs[i].rc, "utf-8 %s: %s",
           vs[i].rc == OK ? "accepts" : "rejects", vs[i].name);
    }

    ngx_http_twirt_utf8_init(&u);
    ok(ngx_http_twirt_utf8_feed(&u, S("\xe2\x82")) == OK
       && ngx_http_twirt_utf8_finish(&u) == ERROR,
       "utf-8 truncated sequence: feed is fine, finish is not");

    ngx_http_twirt_utf8_init(&u);
    ok(ngx_http_twirt_utf8_feed(&u, S("\xc0")) == ERROR
       && ngx_http_twirt_utf8_feed(&u, S("abc")) == ERROR
       && ngx_http_twirt_utf8_finish(&u) == ERROR,
       "utf-8 errors stick");

    len = strlen(jp);
    all = ngx_http_twirt_test_utf8((const unsigned char *) jp, len) == OK;

    for (i = 0; i <= len; i++) {
        ngx_http_twirt_utf8_init(&u);
        all &= ngx_http_twirt_utf8_feed(&u, (const unsigned char *) jp, i)
               == OK;
        all &= ngx_http_twirt_utf8_feed(&u, (const unsigned char *) jp + i,
                                        len - i)
               == OK;
        all &= ngx_http_twirt_utf8_finish(&u) == OK;
    }

    ok(all, "utf-8 \"%s\" split at every byte offset", jp);

    ngx_http_twirt_utf8_init(&u);
    all = 1;

    for (i = 0; i < len; i++) {
        all &= ngx_http_twirt_utf8_feed(&u, (const unsigned char *) jp + i, 1)
               == OK;
        all &= ngx_http_twirt_utf8_finish(&u) == (i % 3 == 2 ? OK : ERROR);
    }

    ok(all, "utf-8 japanese fed byte by byte, finish only on boundaries");

    all = 1;

    for (i = 0; i < len; i++) {
        all &= ngx_http_twirt_test_utf8((const unsigned char *) jp, i)
               == (i % 3 == 0 ? OK : ERROR);
    }

    ok(all, "utf-8 japanese cut inside a character is rejected at finish");

    all = 1;

    for (i = 0; i < 40; i++) {
        for (j = 0; j < 3; j++) {
            memset(b, 'a', sizeof(b));
            memcpy(b + i, "\xe2\x82\xac", 3);
            all &= ngx_http_twirt_test_utf8(b, sizeof(b)) == OK;

            memcpy(b + i, "\xed\xa0\x80", 3);
            b[i + j] = (unsigned char) (j == 0 ? 0x80 : j == 1 ? 'a' : 0xff);
            all &= ngx_http_twirt_test_utf8(b, sizeof(b)) == ERROR;
        }
    }

    ok(all, "utf-8 in ascii runs at every alignment");

    all = 1;

    for (v = 0; v < 0x1000000; v++) {
        b[0] = (unsigned char) (v >> 16);
        b[1] = (unsigned char) (v >> 8);
        b[2] = (unsigned char) v;

        for (len = 1; len <= 3; len++) {
            if (len < 3 && (v & ((1u << (8 * (3 - len))) - 1))) {
                continue;
            }

            all &= ngx_http_twirt_test_utf8(b, len)
                   == ngx_http_twirt_utf8_ref(b, len);
        }
    }

    ok(all, "utf-8 agrees with a plain decoder on every 1-3 byte string");

    all = 1;

    for (v = 0; v < 0x1000000; v++) {
        b[0] = (unsigned char) (0xf0 + (v >> 21));
        b[1] = (unsigned char) (0x80 | ((v >> 15) & 0x3f));
        b[2] = (unsigned char) (v >> 8);
        b[3] = (unsigned char) v;

        all &= ngx_http_twirt_test_utf8(b, 4)
               == ngx_http_twirt_utf8_ref(b, 4);
    }

    ok(all, "utf-8 agrees with a plain decoder on 4-byte strings f0-f7");
}


static void
ngx_http_twirt_test_close(void)
{
    int                   all;
    size_t                i, n, rlen;
    unsigned              code, err;
    unsigned char         out[125], p[200];
    char                  reason[300];
    const unsigned char  *r;
    static const unsigned  good[] = { 1000, 1001, 1002, 1003, 1007, 1008,
                                      1009, 1010, 1011, 1012, 1013, 1014,
                                      3000, 3999, 4000, 4999 };
    static const unsigned  bad[] = { 0, 1, 999, 1004, 1005, 1006, 1015, 1016,
                                     1100, 2000, 2999, 5000, 65535 };

    memset(p, 0, sizeof(p));

    code = 0;
    r = (const unsigned char *) "x";
    rlen = 1;
    ok(ngx_http_twirt_ws_close_parse(p, 0, &code, &r, &rlen, &err) == OK
       && code == 1005 && rlen == 0,
       "close: empty payload is 1005, no status");

    err = 0;
    /* the byte after the payload would make a valid code of 1000 */

    ok(ngx_http_twirt_ws_close_parse((const unsigned char *) "\x03\xe8", 1,
                                     &code, &r, &rlen, &err)
       == ERROR && err == 1002,
       "close: 1-byte payload: 1002");

    all = 1;

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        p[0] = (unsigned char) (good[i] >> 8);
        p[1] = (unsigned char) good[i];
        all &= ngx_http_twirt_ws_close_parse(p, 2, &code, &r, &rlen, &err)
               == OK && code == good[i] && rlen == 0;
    }

    ok(all, "close: codes 1000-1003, 1007-1014, 3000-4999 accepted");

    all = 1;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        p[0] = (unsigned char) (bad[i] >> 8);
        p[1] = (unsigned char) bad[i];
        err = 0;
        all &= ngx_http_twirt_ws_close_parse(p, 2, &code, &r, &rlen, &err)
               == ERROR && err == 1002;
    }

    ok(all, "close: codes 0, 999, 1004-1006, 1015, 1016, 2999, 5000: 1002");

    ok(ngx_http_twirt_ws_close_parse(S("\x03\xe8" "bye \xc3\xa9"), &code, &r,
                                     &rlen, &err) == OK
       && code == 1000 && rlen == 6 && memcmp(r, "bye \xc3\xa9", 6) == 0,
       "close: code and utf-8 reason");

    err = 0;
    ok(ngx_http_twirt_ws_close_parse(S("\x03\xe8" "bye \xc0\x80"), &code, &r,
                                     &rlen, &err) == ERROR && err == 1007,
       "close: invalid utf-8 reason: 1007");

    err = 0;
    ok(ngx_http_twirt_ws_close_parse(S("\x03\xe8" "bye \xe2\x82"), &code, &r,
                                     &rlen, &err) == ERROR && err == 1007,
       "close: reason ending inside a character: 1007");

    n = ngx_http_twirt_ws_close_payload(out, 1000, "bye", 3);
    ok(n == 5 && memcmp(out, "\x03\xe8" "bye", 5) == 0,
       "close payload: code then reason");

    n = ngx_http_twirt_ws_close_payload(out, 4999, NULL, 0);
    ok(n == 2 && memcmp(out, "\x13\x87", 2) == 0,
       "close payload: code only");

    ok(ngx_http_twirt_ws_close_payload(out, 0, "x", 1) == 0,
       "close payload: code 0 is the empty payload");

    memset(reason, 'a', sizeof(reason));
    n = ngx_http_twirt_ws_close_payload(out, 1011, reason, 200);
    ok(n == 125 && out[0] == 0x03 && out[1] == 0xf3 && out[124] == 'a',
       "close payload: long ascii reason cut to 125 bytes");

    n = ngx_http_twirt_ws_close_payload(out, 1011, reason, 123);
    ok(n == 125, "close payload: 123-byte reason kept whole");

    all = 1;

    for (i = 0; i < 4; i++) {
        memset(reason, 'a', i);

        for (n = i; n + 3 <= sizeof(reason); n += 3) {
            memcpy(reason + n, "\xe3\x81\x8a", 3);
        }

        n = ngx_http_twirt_ws_close_payload(out, 1000, reason, 290);
        rlen = (123 - i) / 3 * 3 + i;
        all &= n == 2 + rlen;
        all &= ngx_http_twirt_ws_close_parse(out, n, &code, &r, &rlen, &err)
               == OK && code == 1000;
    }

    ok(all, "close payload: a 3-byte character is never split by the cut");

    memcpy(reason, "\xf0\x90\x8d\x88", 4);
    memset(reason + 4, 'b', 119);
    memcpy(reason + 123, "\xf0\x90\x8d\x88", 4);
    memset(out, 0, sizeof(out));
    n = ngx_http_twirt_ws_close_payload(out, 1000, reason, 127);
    ok(n == 125 && memcmp(out + 2, reason, 123) == 0,
       "close payload: a character starting at the cut is dropped whole");

    memcpy(reason + 121, "\xf0\x90\x8d\x88", 4);
    n = ngx_http_twirt_ws_close_payload(out, 1000, reason, 125);
    ok(n == 123, "close payload: a 4-byte character across the cut dropped");
}


static void
ngx_http_twirt_test_roundtrip(void)
{
    int                         rc, all, role;
    size_t                      i, n, want;
    unsigned                    fin, op;
    unsigned char               hdr[NGX_HTTP_TWIRT_WS_MAX_HEADER];
    unsigned char               mask[4] = { 0xde, 0xad, 0xbe, 0xef };
    const unsigned char        *m;
    ngx_http_twirt_ws_frame_t   f;
    static const uint64_t       lens[] = { 0, 1, 125, 126, 127, 65535, 65536,
                                           (uint64_t) 1 << 32,
                                           UINT64_MAX >> 1 };
    static const unsigned       ops[] = { NGX_HTTP_TWIRT_WS_CONT,
                                          NGX_HTTP_TWIRT_WS_TEXT,
                                          NGX_HTTP_TWIRT_WS_BINARY };

    for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (role = SERVER; role <= CLIENT; role++) {
            all = 1;

            /* the server reads masked frames, built by a client */

            m = role == SERVER ? mask : NULL;
            want = (lens[i] < 126 ? 2 : lens[i] <= 0xffff ? 4 : 10)
                   + (m ? 4 : 0);

            for (op = 0; op < 3; op++) {
                for (fin = 0; fin <= 1; fin++) {
                    n = ngx_http_twirt_ws_frame_header(hdr, fin, ops[op],
                                                       lens[i], m);
                    rc = ngx_http_twirt_ws_frame_parse(&f, hdr, n, role,
                                                       UINT64_MAX);

                    all &= n == want && rc == OK && f.header_len == n
                           && f.fin == fin && f.opcode == ops[op]
                           && f.rsv == 0 && f.masked == (m != NULL)
                           && f.payload_len == lens[i]
                           && (m == NULL || memcmp(f.mask, m, 4) == 0);
                }
            }

            ok(all, "header round trip, length %llu, %s",
               (unsigned long long) lens[i], m ? "masked" : "unmasked");
        }
    }

    all = 1;

    for (op = 8; op <= 0xa; op++) {
        n = ngx_http_twirt_ws_frame_header(hdr, 1, op, 125, NULL);
        rc = ngx_http_twirt_ws_frame_parse(&f, hdr, n, CLIENT, 125);
        all &= rc == OK && f.opcode == op && f.payload_len == 125;
    }

    ok(all, "header round trip, control frames of 125 bytes");
}


static void
ngx_http_twirt_test_handshake(void)
{
    size_t          i;
    unsigned char   out[NGX_HTTP_TWIRT_WS_ACCEPT_LEN + 1];
    static const struct {
        const char  *key;
        const char  *name;
    } bad[] = {
        { "", "empty" },
        { "dGhlIHNhbXBsZSBub25jZQ=", "23 characters" },
        { "dGhlIHNhbXBsZSBub25jZQ===", "25 characters" },
        { "dGhlIHNhbXBsZSBub25jZQ", "no padding" },
        { "dGhlIHNhbXBsZSBub25j", "15 bytes (20 characters)" },
        { "dGhlIHNhbXBsZSBub25jZSE=", "17 bytes (one \"=\")" },
        { "dGhlIHNhbXBsZSBub25jZSEh", "18 bytes (no padding)" },
        { "dGhlIHNhbXBsZSBub25jZ===", "padding inside the data" },
        { "dGhlIHNhbXBsZSBub25j-Q==", "url-safe \"-\"" },
        { "dGhlIHNhbXBsZSBub25j_Q==", "url-safe \"_\"" },
        { "dGhlIHNhbXBsZSBub25j Q==", "space" },
        { "dGhlIHNhbXBsZSBub25j\xc3Q==", "non-ascii byte" },
        { "dGhlIHNhbXBsZSBub25jZQ=A", "bad padding" },
    };

    memset(out, 0, sizeof(out));

    ok(ngx_http_twirt_ws_accept(S("dGhlIHNhbXBsZSBub25jZQ=="), out) == 28
       && memcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", 28) == 0
       && out[28] == 0,
       "accept of the rfc 6455 1.3 key, no byte written past 28");

    ok(ngx_http_twirt_ws_key_valid(S("dGhlIHNhbXBsZSBub25jZQ==")) == OK,
       "key_valid: rfc example key");

    ok(ngx_http_twirt_ws_key_valid(S("AAAAAAAAAAAAAAAAAAAAAA==")) == OK
       && ngx_http_twirt_ws_key_valid(S("+/+/+/+/+/+/+/+/+/+/+w==")) == OK
       && ngx_http_twirt_ws_key_valid(S("zzzzzzzzzzzzzzzzzzzz09==")) == OK,
       "key_valid: whole alphabet");

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ok(ngx_http_twirt_ws_key_valid((const unsigned char *) bad[i].key,
                                       strlen(bad[i].key)) == ERROR,
           "key_valid rejects: %s", bad[i].name);
    }
}


int
main(void)
{
    ngx_http_twirt_test_rfc_examples();
    ngx_http_twirt_test_errors();
    ngx_http_twirt_test_sequence();
    ngx_http_twirt_test_again();
    ngx_http_twirt_test_unmask();
    ngx_http_twirt_test_utf8_vectors();
    ngx_http_twirt_test_close();
    ngx_http_twirt_test_roundtrip();
    ngx_http_twirt_test_handshake();

    printf("1..%u\n", ngx_http_twirt_test_n);

    if (ngx_http_twirt_test_failed) {
        printf("# failed %u of %u\n", ngx_http_twirt_test_failed,
               ngx_http_twirt_test_n);
        return 1;
    }

    return 0;
}
