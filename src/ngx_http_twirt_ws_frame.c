
/*
 * The WebSocket frame codec (RFC 6455).  No nginx types here: see the
 * header for the contract of each function.
 */


#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>

#include "ngx_http_twirt_ws_frame.h"


#define NGX_HTTP_TWIRT_UTF8_REJECT  0xff

#define NGX_HTTP_TWIRT_WS_GUID  "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


static int ngx_http_twirt_ws_frame_fail(ngx_http_twirt_ws_frame_t *f,
    unsigned code, const char *error);
static int ngx_http_twirt_ws_frame_close_code_valid(unsigned code);
static int ngx_http_twirt_ws_frame_base64_char(unsigned char c);


int
ngx_http_twirt_ws_frame_parse(ngx_http_twirt_ws_frame_t *f,
    const unsigned char *p, size_t len, int role, uint64_t max_payload)
{
    size_t    i, need;
    uint64_t  n;

    if (len < 2) {
        return NGX_HTTP_TWIRT_WS_AGAIN;
    }

    f->fin = p[0] >> 7;
    f->rsv = (p[0] >> 4) & 0x7;
    f->opcode = p[0] & 0xf;
    f->masked = p[1] >> 7;
    f->close_code = 0;
    f->error = NULL;

    n = p[1] & 0x7f;

    /*
     * Everything below that can be decided from the first two bytes is
     * decided before waiting for the rest, so that a peer speaking
     * nonsense is closed at once rather than after 12 more bytes.
     */

    if (f->rsv) {
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
            "reserved bits set");
    }

    switch (f->opcode) {

    case NGX_HTTP_TWIRT_WS_CONT:
    case NGX_HTTP_TWIRT_WS_TEXT:
    case NGX_HTTP_TWIRT_WS_BINARY:
        break;

    case NGX_HTTP_TWIRT_WS_CLOSE:
    case NGX_HTTP_TWIRT_WS_PING:
    case NGX_HTTP_TWIRT_WS_PONG:

        if (!f->fin) {
            return ngx_http_twirt_ws_frame_fail(f,
                NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
                "fragmented control frame");
        }

        if (n > NGX_HTTP_TWIRT_WS_MAX_CONTROL) {
            return ngx_http_twirt_ws_frame_fail(f,
                NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
                "control frame too long");
        }

        break;

    default:
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
            "unknown opcode");
    }

    if (role == NGX_HTTP_TWIRT_WS_SERVER && !f->masked) {
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
            "unmasked client frame");
    }

    if (role != NGX_HTTP_TWIRT_WS_SERVER && f->masked) {
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
            "masked server frame");
    }

    need = 2;

    if (n == 126) {
        need += 2;

    } else if (n == 127) {
        need += 8;
    }

    if (f->masked) {
        need += 4;
    }

    if (len < need) {
        return NGX_HTTP_TWIRT_WS_AGAIN;
    }

    p += 2;

    if (n == 126) {
        n = ((uint64_t) p[0] << 8) | p[1];
        p += 2;

    } else if (n == 127) {

        if (p[0] & 0x80) {
            return ngx_http_twirt_ws_frame_fail(f,
                NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
                "64-bit length with the top bit set");
        }

        n = 0;

        for (i = 0; i < 8; i++) {
            n = (n << 8) | p[i];
        }

        p += 8;
    }

    if (f->masked) {
        memcpy(f->mask, p, 4);

    } else {
        memset(f->mask, 0, 4);
    }

    if (n > max_payload) {
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_TOO_BIG,
            "frame too big");
    }

    f->payload_len = n;
    f->header_len = need;

    return NGX_HTTP_TWIRT_WS_OK;
}


int
ngx_http_twirt_ws_frame_sequence(ngx_http_twirt_ws_frame_t *f,
    unsigned *message)
{
    if (ngx_http_twirt_ws_is_control(f->opcode)) {
        return NGX_HTTP_TWIRT_WS_OK;
    }

    if (f->opcode == NGX_HTTP_TWIRT_WS_CONT) {

        if (*message == NGX_HTTP_TWIRT_WS_CONT) {
            return ngx_http_twirt_ws_frame_fail(f,
                NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
                "continuation outside a message");
        }

        if (f->fin) {
            *message = NGX_HTTP_TWIRT_WS_CONT;
        }

        return NGX_HTTP_TWIRT_WS_OK;
    }

    if (*message != NGX_HTTP_TWIRT_WS_CONT) {
        return ngx_http_twirt_ws_frame_fail(f, NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL,
            "new message inside a fragmented one");
    }

    if (!f->fin) {
        *message = f->opcode;
    }

    return NGX_HTTP_TWIRT_WS_OK;
}


void
ngx_http_twirt_ws_unmask(unsigned char *p, size_t len,
    const unsigned char mask[4], uint64_t offset)
{
    size_t         i;
    uint64_t       key, word;
    unsigned char  k[8];

    /*
     * The key rotated to the phase of this piece, twice: 8 bytes keep the
     * phase, so whole words need no further rotation.  memcpy() compiles
     * to plain unaligned loads and stores and is endian-neutral.
     */

    for (i = 0; i < 8; i++) {
        k[i] = mask[(offset + i) & 3];
    }

    memcpy(&key, k, 8);

    while (len >= 32) {
        memcpy(&word, p, 8);
        word ^= key;
        memcpy(p, &word, 8);

        memcpy(&word, p + 8, 8);
        word ^= key;
        memcpy(p + 8, &word, 8);

        memcpy(&word, p + 16, 8);
        word ^= key;
        memcpy(p + 16, &word, 8);

        memcpy(&word, p + 24, 8);
        word ^= key;
        memcpy(p + 24, &word, 8);

        p += 32;
        len -= 32;
    }

    while (len >= 8) {
        memcpy(&word, p, 8);
        word ^= key;
        memcpy(p, &word, 8);

        p += 8;
        len -= 8;
    }

    for (i = 0; i < len; i++) {
        p[i] ^= k[i];
    }
}


size_t
ngx_http_twirt_ws_frame_header(unsigned char *out, unsigned fin,
    unsigned opcode, uint64_t payload_len, const unsigned char *mask)
{
    size_t    n;
    unsigned  i;

    out[0] = (unsigned char) ((fin ? 0x80 : 0) | (opcode & 0xf));
    out[1] = mask ? 0x80 : 0;

    if (payload_len < 126) {
        out[1] |= (unsigned char) payload_len;
        n = 2;

    } else if (payload_len <= 0xffff) {
        out[1] |= 126;
        out[2] = (unsigned char) (payload_len >> 8);
        out[3] = (unsigned char) payload_len;
        n = 4;

    } else {
        out[1] |= 127;

        for (i = 0; i < 8; i++) {
            out[2 + i] = (unsigned char) (payload_len >> (56 - 8 * i));
        }

        n = 10;
    }

    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }

    return n;
}


void
ngx_http_twirt_utf8_init(ngx_http_twirt_utf8_t *u)
{
    u->state = 0;
    u->lo = 0x80;
    u->hi = 0xbf;
}


int
ngx_http_twirt_utf8_feed(ngx_http_twirt_utf8_t *u, const unsigned char *p,
    size_t len)
{
    uint64_t              word;
    unsigned char         c;
    const unsigned char  *last;

    if (u->state == NGX_HTTP_TWIRT_UTF8_REJECT) {
        return NGX_HTTP_TWIRT_WS_ERROR;
    }

    last = p + len;

    while (p < last) {

        if (u->state) {
            c = *p++;

            if (c < u->lo || c > u->hi) {
                goto invalid;
            }

            u->state--;
            u->lo = 0x80;
            u->hi = 0xbf;

            continue;
        }

        /* JSON is mostly ASCII: skip it a word at a time */

        while (last - p >= 8) {
            memcpy(&word, p, 8);

            if (word & 0x8080808080808080ULL) {
                break;
            }

            p += 8;
        }

        if (p == last) {
            break;
        }

        c = *p++;

        if (c < 0x80) {
            continue;
        }

        /*
         * The lead byte decides how many continuation bytes follow and
         * narrows the range of the first one, which is where overlong
         * forms (E0, F0), surrogates (ED) and values above U+10FFFF (F4)
         * show.  C0, C1 and F5-FF can only start overlong or too large
         * sequences.
         */

        if (c < 0xc2) {
            goto invalid;
        }

        if (c < 0xe0) {
            u->state = 1;

        } else if (c < 0xf0) {
            u->state = 2;

            if (c == 0xe0) {
                u->lo = 0xa0;

            } else if (c == 0xed) {
                u->hi = 0x9f;
            }

        } else if (c < 0xf5) {
            u->state = 3;

            if (c == 0xf0) {
                u->lo = 0x90;

            } else if (c == 0xf4) {
                u->hi = 0x8f;
            }

        } else {
            goto invalid;
        }
    }

    return NGX_HTTP_TWIRT_WS_OK;

invalid:

    u->state = NGX_HTTP_TWIRT_UTF8_REJECT;

    return NGX_HTTP_TWIRT_WS_ERROR;
}


int
ngx_http_twirt_utf8_finish(ngx_http_twirt_utf8_t *u)
{
    return u->state ? NGX_HTTP_TWIRT_WS_ERROR : NGX_HTTP_TWIRT_WS_OK;
}


int
ngx_http_twirt_ws_close_parse(const unsigned char *p, size_t len,
    unsigned *code, const unsigned char **reason, size_t *reason_len,
    unsigned *close_code_on_error)
{
    ngx_http_twirt_utf8_t  u;

    if (len == 0) {
        *code = NGX_HTTP_TWIRT_WS_CLOSE_NO_STATUS;
        *reason = p;
        *reason_len = 0;
        return NGX_HTTP_TWIRT_WS_OK;
    }

    if (len == 1) {
        *close_code_on_error = NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL;
        return NGX_HTTP_TWIRT_WS_ERROR;
    }

    *code = ((unsigned) p[0] << 8) | p[1];

    if (!ngx_http_twirt_ws_frame_close_code_valid(*code)) {
        *close_code_on_error = NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL;
        return NGX_HTTP_TWIRT_WS_ERROR;
    }

    ngx_http_twirt_utf8_init(&u);

    if (ngx_http_twirt_utf8_feed(&u, p + 2, len - 2) != NGX_HTTP_TWIRT_WS_OK
        || ngx_http_twirt_utf8_finish(&u) != NGX_HTTP_TWIRT_WS_OK)
    {
        *close_code_on_error = NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA;
        return NGX_HTTP_TWIRT_WS_ERROR;
    }

    *reason = p + 2;
    *reason_len = len - 2;

    return NGX_HTTP_TWIRT_WS_OK;
}


size_t
ngx_http_twirt_ws_close_payload(unsigned char *out, unsigned code,
    const char *reason, size_t reason_len)
{
    if (code == 0) {
        return 0;
    }

    out[0] = (unsigned char) (code >> 8);
    out[1] = (unsigned char) code;

    if (reason_len > NGX_HTTP_TWIRT_WS_MAX_CONTROL - 2) {
        reason_len = NGX_HTTP_TWIRT_WS_MAX_CONTROL - 2;

        /* back up to the lead byte of a sequence the cut would split */

        while (reason_len > 0
               && ((unsigned char) reason[reason_len] & 0xc0) == 0x80)
        {
            reason_len--;
        }
    }

    if (reason_len) {
        memcpy(out + 2, reason, reason_len);
    }

    return 2 + reason_len;
}


int
ngx_http_twirt_ws_key_valid(const unsigned char *key, size_t len)
{
    size_t  i;

    /* 16 bytes are five full groups of 3 and one byte: 22 chars and "==" */

    if (len != 24 || key[22] != '=' || key[23] != '=') {
        return NGX_HTTP_TWIRT_WS_ERROR;
    }

    for (i = 0; i < 22; i++) {
        if (!ngx_http_twirt_ws_frame_base64_char(key[i])) {
            return NGX_HTTP_TWIRT_WS_ERROR;
        }
    }

    return NGX_HTTP_TWIRT_WS_OK;
}


size_t
ngx_http_twirt_ws_accept(const unsigned char *key, size_t len,
    unsigned char out[NGX_HTTP_TWIRT_WS_ACCEPT_LEN])
{
    int            ok;
    unsigned int   n;
    EVP_MD_CTX    *ctx;
    unsigned char  md[EVP_MAX_MD_SIZE];
    unsigned char  b64[NGX_HTTP_TWIRT_WS_ACCEPT_LEN + 1];

    ctx = EVP_MD_CTX_new();
    if (ctx == NULL) {
        return 0;
    }

    ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1
         && EVP_DigestUpdate(ctx, key, len) == 1
         && EVP_DigestUpdate(ctx, NGX_HTTP_TWIRT_WS_GUID,
                             sizeof(NGX_HTTP_TWIRT_WS_GUID) - 1) == 1
         && EVP_DigestFinal_ex(ctx, md, &n) == 1
         && n == 20;

    EVP_MD_CTX_free(ctx);

    if (!ok) {
        return 0;
    }

    /* EVP_EncodeBlock() NUL-terminates: hence b64 rather than out */

    if (EVP_EncodeBlock(b64, md, 20) != NGX_HTTP_TWIRT_WS_ACCEPT_LEN) {
        return 0;
    }

    memcpy(out, b64, NGX_HTTP_TWIRT_WS_ACCEPT_LEN);

    return NGX_HTTP_TWIRT_WS_ACCEPT_LEN;
}


static int
ngx_http_twirt_ws_frame_fail(ngx_http_twirt_ws_frame_t *f, unsigned code,
    const char *error)
{
    f->close_code = code;
    f->error = error;

    return NGX_HTTP_TWIRT_WS_ERROR;
}


static int
ngx_http_twirt_ws_frame_close_code_valid(unsigned code)
{
    /*
     * RFC 6455 7.4 and the IANA registry.  1004-1006 and 1015 must never
     * be sent; 1012-1014 (restart, try again later, bad gateway) are
     * registered and a server going down for a restart may well send them,
     * so they are not a protocol error.
     */

    return (code >= 1000 && code <= 1003)
           || (code >= 1007 && code <= 1014)
           || (code >= 3000 && code <= 4999);
}


static int
ngx_http_twirt_ws_frame_base64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z')
           || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9')
           || c == '+' || c == '/';
}
