
/*
 * libFuzzer target for the WebSocket frame codec.  It reads a byte stream
 * the way the connection code does: the stream arrives in chunks of
 * arbitrary sizes, a header is parsed once enough of it is there, the
 * payload is unmasked in place piece by piece as it arrives, data frames
 * are reassembled into messages whose UTF-8 is validated incrementally,
 * and close payloads are parsed.  Every step is checked against a plain
 * reimplementation or a round trip.
 *
 * Input: byte 0 bit 0 is our role (0 server, 1 client), bits 1-3 choose
 * max_payload, bits 4-7 the largest chunk; byte 1 seeds the chunk sizes;
 * the rest is the stream from the peer.
 */


#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ngx_http_twirt_ws_frame.h"
#include "ngx_http_twirt_utf8_ref.h"


#define OK      NGX_HTTP_TWIRT_WS_OK
#define ERROR   NGX_HTTP_TWIRT_WS_ERROR
#define AGAIN   NGX_HTTP_TWIRT_WS_AGAIN

#define NGX_HTTP_TWIRT_FUZZ_MAX_MESSAGE  (1 << 16)

#define check(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__,          \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)


typedef struct {
    const uint8_t   *orig;       /* the stream as sent, still masked */
    uint8_t         *buf;        /* the receive buffer, unmasked in place */
    size_t           size;
    size_t           pos;        /* bytes consumed */
    size_t           avail;      /* bytes received */
    uint32_t         rnd;
    size_t           max_chunk;
    int              role;
    uint64_t         max_payload;
} ngx_http_twirt_fuzz_stream_t;


static const uint64_t  ngx_http_twirt_fuzz_max_payloads[] = {
    0, 1, 125, 126, 65535, 65536, 1 << 20, UINT64_MAX
};

static const size_t  ngx_http_twirt_fuzz_chunks[] = {
    1, 1, 2, 3, 4, 5, 7, 8, 13, 16, 31, 64, 127, 256, 1024, 65536
};


/* receives one more chunk; 0 at the end of the stream */

static int
ngx_http_twirt_fuzz_recv(ngx_http_twirt_fuzz_stream_t *s)
{
    size_t  n;

    if (s->avail == s->size) {
        return 0;
    }

    s->rnd ^= s->rnd << 13;
    s->rnd ^= s->rnd >> 17;
    s->rnd ^= s->rnd << 5;

    n = 1 + s->rnd % s->max_chunk;

    s->avail = (s->size - s->avail < n) ? s->size : s->avail + n;

    return 1;
}


static int
ngx_http_twirt_fuzz_utf8_whole(const uint8_t *p, size_t len)
{
    ngx_http_twirt_utf8_t  u;

    ngx_http_twirt_utf8_init(&u);

    if (ngx_http_twirt_utf8_feed(&u, p, len) != OK) {
        return ERROR;
    }

    return ngx_http_twirt_utf8_finish(&u);
}


static int
ngx_http_twirt_fuzz_same(const ngx_http_twirt_ws_frame_t *a,
    const ngx_http_twirt_ws_frame_t *b)
{
    return a->fin == b->fin && a->rsv == b->rsv && a->opcode == b->opcode
           && a->masked == b->masked && a->payload_len == b->payload_len
           && memcmp(a->mask, b->mask, 4) == 0
           && a->header_len == b->header_len;
}


static void
ngx_http_twirt_fuzz_check_header(const uint8_t *p, size_t len, int rc,
    const ngx_http_twirt_ws_frame_t *f, int role, uint64_t max_payload)
{
    int                        rc2;
    size_t                     k, n;
    uint64_t                   plen;
    unsigned char              hdr[NGX_HTTP_TWIRT_WS_MAX_HEADER];
    ngx_http_twirt_ws_frame_t  g;

    /* a shorter prefix never gives another answer than "wait" */

    for (k = 0; k < len && k < NGX_HTTP_TWIRT_WS_MAX_HEADER; k++) {
        rc2 = ngx_http_twirt_ws_frame_parse(&g, p, k, role, max_payload);

        check(rc2 == AGAIN || rc2 == rc);

        if (rc2 == OK) {
            check(ngx_http_twirt_fuzz_same(&g, f));
        }

        if (rc2 == ERROR) {
            check(g.close_code == f->close_code);
        }
    }

    if (rc == ERROR) {
        check(f->close_code == NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL
              || f->close_code == NGX_HTTP_TWIRT_WS_CLOSE_TOO_BIG);
        check(f->error != NULL && f->error[0] != '\0');
        return;
    }

    check(rc == OK);
    check(f->header_len <= len);
    check(f->error == NULL && f->close_code == 0);
    check(f->fin == p[0] >> 7 && f->opcode == (p[0] & 0xf));
    check(f->rsv == 0);
    check(f->masked == (role == NGX_HTTP_TWIRT_WS_SERVER));
    check(f->payload_len <= max_payload);
    check(f->payload_len >> 63 == 0);

    plen = p[1] & 0x7f;
    n = 2;

    if (plen == 126) {
        plen = (uint64_t) p[2] << 8 | p[3];
        n = 4;

    } else if (plen == 127) {
        plen = 0;

        for (k = 0; k < 8; k++) {
            plen = plen << 8 | p[2 + k];
        }

        n = 10;
    }

    check(f->payload_len == plen);
    check(f->header_len == n + (f->masked ? 4 : 0));
    check(!f->masked || memcmp(f->mask, p + n, 4) == 0);

    if (ngx_http_twirt_ws_is_control(f->opcode)) {
        check(f->fin && f->payload_len <= NGX_HTTP_TWIRT_WS_MAX_CONTROL);

    } else {
        check(f->opcode <= NGX_HTTP_TWIRT_WS_BINARY);
    }

    /* what the builder writes reads back the same, in minimal form */

    n = ngx_http_twirt_ws_frame_header(hdr, f->fin, f->opcode, f->payload_len,
                                       f->masked ? f->mask : NULL);
    check(n <= f->header_len);

    rc2 = ngx_http_twirt_ws_frame_parse(&g, hdr, n, role, max_payload);
    check(rc2 == OK && g.header_len == n);

    g.header_len = f->header_len;
    check(ngx_http_twirt_fuzz_same(&g, f));
}


static void
ngx_http_twirt_fuzz_check_close(const uint8_t *p, size_t len)
{
    int                   rc, rc2;
    size_t                rlen, rlen2, n;
    unsigned              code, code2, err;
    unsigned char         out[NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    const unsigned char  *reason, *reason2;

    code = 0;
    err = 0;
    reason = NULL;
    rlen = 0;

    rc = ngx_http_twirt_ws_close_parse(p, len, &code, &reason, &rlen, &err);

    if (len == 0) {
        check(rc == OK && code == NGX_HTTP_TWIRT_WS_CLOSE_NO_STATUS
              && rlen == 0);
        return;
    }

    if (len == 1) {
        check(rc == ERROR && err == NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL);
        return;
    }

    code = (unsigned) p[0] << 8 | p[1];

    if (!((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014)
          || (code >= 3000 && code <= 4999)))
    {
        check(rc == ERROR && err == NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL);
        return;
    }

    if (ngx_http_twirt_utf8_ref(p + 2, len - 2) != OK) {
        check(rc == ERROR && err == NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA);
        return;
    }

    check(rc == OK && reason == p + 2 && rlen == len - 2);

    /* echoing the close back, as the connection does, rebuilds it */

    n = ngx_http_twirt_ws_close_payload(out, code, (const char *) reason,
                                        rlen);
    check(n == len && memcmp(out, p, len) == 0);

    rc2 = ngx_http_twirt_ws_close_parse(out, n, &code2, &reason2, &rlen2,
                                        &err);
    check(rc2 == OK && code2 == code && rlen2 == rlen);
}


static void
ngx_http_twirt_fuzz_check_text(const uint8_t *msg, size_t len, int rc)
{
    int                   ref;
    size_t                n, rlen;
    unsigned              code, err;
    unsigned char         out[NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    const unsigned char  *reason;

    ref = ngx_http_twirt_utf8_ref(msg, len);

    check(rc == ref);
    check(ngx_http_twirt_fuzz_utf8_whole(msg, len) == ref);

    if (ref != OK) {
        return;
    }

    /* a valid text cut down to a close reason stays valid */

    n = ngx_http_twirt_ws_close_payload(out, NGX_HTTP_TWIRT_WS_CLOSE_POLICY,
                                        (const char *) msg, len);
    check(n >= 2 && n <= NGX_HTTP_TWIRT_WS_MAX_CONTROL);
    check(len < NGX_HTTP_TWIRT_WS_MAX_CONTROL - 2 || n + 3 >= 125);
    check(ngx_http_twirt_ws_close_parse(out, n, &code, &reason, &rlen, &err)
          == OK);
    check(code == NGX_HTTP_TWIRT_WS_CLOSE_POLICY
          && memcmp(reason, msg, rlen) == 0);
}


/*
 * Whether p[0..len) can still become valid UTF-8: everything up to the last
 * sequence is valid, and that one is complete or can be completed.  Only
 * the first missing byte has a range narrower than 80-bf, so trying it and
 * padding with 80 covers every completion.
 */

static int
ngx_http_twirt_fuzz_utf8_prefix_ref(const uint8_t *p, size_t len)
{
    size_t    cut, i, m, tlen;
    uint8_t   t[8];
    unsigned  b;

    cut = len;

    for (i = len; i > 0 && i + 3 >= len; i--) {
        if ((p[i - 1] & 0xc0) != 0x80) {
            cut = i - 1;
            break;
        }
    }

    if (ngx_http_twirt_utf8_ref(p, cut) != OK) {
        return ERROR;
    }

    tlen = len - cut;
    memcpy(t, p + cut, tlen);

    if (ngx_http_twirt_utf8_ref(t, tlen) == OK) {
        return OK;
    }

    for (m = 1; m <= 3; m++) {
        for (b = 0x80; b <= 0xbf; b++) {
            t[tlen] = (uint8_t) b;
            memset(t + tlen + 1, 0x80, m - 1);

            if (ngx_http_twirt_utf8_ref(t, tlen + m) == OK) {
                return OK;
            }
        }
    }

    return ERROR;
}


static void
ngx_http_twirt_fuzz_check_pong(const uint8_t *ping, size_t len, int role)
{
    int                        rc;
    size_t                     n;
    unsigned char              out[NGX_HTTP_TWIRT_WS_MAX_HEADER
                                   + NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    unsigned char              key[4] = { 0x01, 0x80, 0x7f, 0xff };
    const unsigned char       *mask;
    ngx_http_twirt_ws_frame_t  f;

    /* the answer we would send, as our peer reads it */

    mask = (role == NGX_HTTP_TWIRT_WS_CLIENT) ? key : NULL;

    n = ngx_http_twirt_ws_frame_header(out, 1, NGX_HTTP_TWIRT_WS_PONG, len,
                                       mask);
    memcpy(out + n, ping, len);

    if (mask) {
        ngx_http_twirt_ws_unmask(out + n, len, mask, 0);
    }

    rc = ngx_http_twirt_ws_frame_parse(&f, out, n + len, !role,
                                       NGX_HTTP_TWIRT_WS_MAX_CONTROL);
    check(rc == OK && f.header_len == n && f.payload_len == len
          && f.opcode == NGX_HTTP_TWIRT_WS_PONG && f.fin);

    if (f.masked) {
        ngx_http_twirt_ws_unmask(out + n, len, f.mask, 0);
    }

    check(memcmp(out + n, ping, len) == 0);
}


int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                            rc, text_rc;
    size_t                         i, n, start, msg_len, ctl_len, msg_cap;
    uint8_t                       *msg;
    uint8_t                        ctl[NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    uint64_t                       done;
    unsigned                       message, kind;
    ngx_http_twirt_utf8_t          u;
    ngx_http_twirt_ws_frame_t      f;
    ngx_http_twirt_fuzz_stream_t   s;

    if (size < 2) {
        return 0;
    }

    s.role = data[0] & 1;
    s.max_payload = ngx_http_twirt_fuzz_max_payloads[(data[0] >> 1) & 7];
    s.max_chunk = ngx_http_twirt_fuzz_chunks[data[0] >> 4];
    s.rnd = 0x9e3779b9u ^ data[1];

    s.orig = data + 2;
    s.size = size - 2;
    s.pos = 0;
    s.avail = 0;

    msg_cap = s.size < NGX_HTTP_TWIRT_FUZZ_MAX_MESSAGE
              ? s.size : NGX_HTTP_TWIRT_FUZZ_MAX_MESSAGE;

    s.buf = malloc(s.size + 1);
    msg = malloc(msg_cap + 1);

    if (s.buf == NULL || msg == NULL) {
        abort();
    }

    memcpy(s.buf, s.orig, s.size);

    message = NGX_HTTP_TWIRT_WS_CONT;
    kind = NGX_HTTP_TWIRT_WS_CONT;
    msg_len = 0;
    text_rc = OK;
    ngx_http_twirt_utf8_init(&u);

    for ( ;; ) {

        /* garbage in, so that a field the parser forgets to set shows */
        memset(&f, 0xa5, sizeof(f));

        rc = ngx_http_twirt_ws_frame_parse(&f, s.buf + s.pos, s.avail - s.pos,
                                           s.role, s.max_payload);

        if (rc == AGAIN) {
            check(s.avail - s.pos < NGX_HTTP_TWIRT_WS_MAX_HEADER);

            if (!ngx_http_twirt_fuzz_recv(&s)) {
                break;
            }

            continue;
        }

        ngx_http_twirt_fuzz_check_header(s.buf + s.pos, s.avail - s.pos, rc,
                                         &f, s.role, s.max_payload);

        if (rc != OK) {
            break;
        }

        if (ngx_http_twirt_ws_frame_sequence(&f, &message) != OK) {
            check(f.close_code == NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL
                  && f.error != NULL);
            check(f.opcode == NGX_HTTP_TWIRT_WS_CONT
                  ? kind == NGX_HTTP_TWIRT_WS_CONT
                  : kind != NGX_HTTP_TWIRT_WS_CONT);
            break;
        }

        if (f.opcode == NGX_HTTP_TWIRT_WS_TEXT
            || f.opcode == NGX_HTTP_TWIRT_WS_BINARY)
        {
            check(kind == NGX_HTTP_TWIRT_WS_CONT);
            kind = f.opcode;
            msg_len = 0;
            text_rc = OK;
            ngx_http_twirt_utf8_init(&u);

        } else if (f.opcode == NGX_HTTP_TWIRT_WS_CONT) {
            check(kind != NGX_HTTP_TWIRT_WS_CONT);
        }

        if (!ngx_http_twirt_ws_is_control(f.opcode)
            && f.payload_len > NGX_HTTP_TWIRT_FUZZ_MAX_MESSAGE - msg_len)
        {
            /* the connection closes with 1009 here */
            break;
        }

        s.pos += f.header_len;
        start = s.pos;
        done = 0;
        ctl_len = 0;

        while (done < f.payload_len) {

            if (s.avail == s.pos && !ngx_http_twirt_fuzz_recv(&s)) {
                goto end;
            }

            n = s.avail - s.pos;

            if (n > f.payload_len - done) {
                n = (size_t) (f.payload_len - done);
            }

            if (f.masked) {
                ngx_http_twirt_ws_unmask(s.buf + s.pos, n, f.mask, done);
            }

            if (ngx_http_twirt_ws_is_control(f.opcode)) {
                memcpy(ctl + ctl_len, s.buf + s.pos, n);
                ctl_len += n;

            } else {
                check(msg_len + n <= msg_cap);
                memcpy(msg + msg_len, s.buf + s.pos, n);
                msg_len += n;

                if (kind == NGX_HTTP_TWIRT_WS_TEXT) {
                    text_rc = ngx_http_twirt_utf8_feed(&u, s.buf + s.pos, n);

                    if (msg_len <= 4096) {
                        check(text_rc
                              == ngx_http_twirt_fuzz_utf8_prefix_ref(msg,
                                                                     msg_len));
                    }

                    if (text_rc != OK) {
                        /* the connection closes with 1007 at once */
                        check(ngx_http_twirt_utf8_ref(msg, msg_len)
                              != OK);
                        goto end;
                    }
                }
            }

            s.pos += n;
            done += n;
        }

        for (i = start; i < s.pos; i++) {
            check(s.buf[i]
                  == (s.orig[i] ^ (f.masked ? f.mask[(i - start) % 4] : 0)));
        }

        if (f.opcode == NGX_HTTP_TWIRT_WS_CLOSE) {
            ngx_http_twirt_fuzz_check_close(ctl, ctl_len);
            break;
        }

        if (f.opcode == NGX_HTTP_TWIRT_WS_PING) {
            ngx_http_twirt_fuzz_check_pong(ctl, ctl_len, s.role);
        }

        if (ngx_http_twirt_ws_is_control(f.opcode) || !f.fin) {
            continue;
        }

        check(message == NGX_HTTP_TWIRT_WS_CONT);

        if (kind == NGX_HTTP_TWIRT_WS_TEXT) {
            text_rc = ngx_http_twirt_utf8_finish(&u);
            ngx_http_twirt_fuzz_check_text(msg, msg_len, text_rc);

            if (text_rc != OK) {
                break;
            }
        }

        kind = NGX_HTTP_TWIRT_WS_CONT;
    }

end:

    free(msg);
    free(s.buf);

    return 0;
}
