
/*
 * base64 and a minimal JSON path lookup.
 */


#include <stdint.h>
#include <string.h>

#include "bench_codec.h"


#define BENCH_JSON_MAX_DEPTH  64


static const char *bench_json_ws(const char *p, const char *end);
static const char *bench_json_string(const char *p, const char *end);
static const char *bench_json_value(const char *p, const char *end,
    bench_json_t *v);


static const char  bench_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static signed char  bench_b64_rev[256];
static int          bench_b64_ready;


size_t
bench_base64_encode(char *out, const unsigned char *in, size_t n)
{
    char      *o;
    uint32_t   w;

    o = out;

    while (n >= 3) {
        w = ((uint32_t) in[0] << 16) | ((uint32_t) in[1] << 8) | in[2];
        o[0] = bench_b64[w >> 18];
        o[1] = bench_b64[(w >> 12) & 63];
        o[2] = bench_b64[(w >> 6) & 63];
        o[3] = bench_b64[w & 63];
        o += 4;
        in += 3;
        n -= 3;
    }

    if (n) {
        w = (uint32_t) in[0] << 16;

        if (n == 2) {
            w |= (uint32_t) in[1] << 8;
        }

        o[0] = bench_b64[w >> 18];
        o[1] = bench_b64[(w >> 12) & 63];
        o[2] = n == 2 ? bench_b64[(w >> 6) & 63] : '=';
        o[3] = '=';
        o += 4;
    }

    return (size_t) (o - out);
}


long
bench_base64_decode(unsigned char *out, const char *in, size_t len)
{
    int             c, k, pad;
    size_t          i;
    uint32_t        w;
    unsigned char  *o;

    if (!bench_b64_ready) {
        memset(bench_b64_rev, -1, sizeof(bench_b64_rev));

        for (i = 0; i < 64; i++) {
            bench_b64_rev[(unsigned char) bench_b64[i]] = (signed char) i;
        }

        bench_b64_ready = 1;
    }

    o = out;
    w = 0;
    k = 0;
    pad = 0;

    for (i = 0; i < len; i++) {

        if (in[i] == '\\' && i + 1 < len && in[i + 1] == '/') {
            continue;
        }

        if (in[i] == '=') {
            pad++;
            continue;
        }

        c = bench_b64_rev[(unsigned char) in[i]];

        if (c < 0 || pad) {
            return -1;
        }

        w = (w << 6) | (uint32_t) c;

        if (++k == 4) {
            o[0] = (unsigned char) (w >> 16);
            o[1] = (unsigned char) (w >> 8);
            o[2] = (unsigned char) w;
            o += 3;
            w = 0;
            k = 0;
        }
    }

    if (k + pad != 0 && k + pad != 4) {
        return -1;
    }

    if (k == 3) {
        o[0] = (unsigned char) (w >> 10);
        o[1] = (unsigned char) (w >> 2);
        o += 2;

    } else if (k == 2) {
        o[0] = (unsigned char) (w >> 4);
        o += 1;

    } else if (k == 1) {
        return -1;
    }

    return (long) (o - out);
}


int
bench_json_get(const char *p, size_t len, const char *path, bench_json_t *v)
{
    size_t       klen;
    const char  *end, *key, *dot, *q;

    end = p + len;

    p = bench_json_ws(p, end);

    for ( ;; ) {
        dot = strchr(path, '.');
        klen = dot ? (size_t) (dot - path) : strlen(path);

        if (p == end || *p != '{') {
            return -1;
        }

        p = bench_json_ws(p + 1, end);

        if (p < end && *p == '}') {
            return 1;
        }

        for ( ;; ) {
            if (p == end || *p != '"') {
                return -1;
            }

            key = p + 1;
            q = bench_json_string(p, end);
            if (q == NULL) {
                return -1;
            }

            p = bench_json_ws(q, end);

            if (p == end || *p != ':') {
                return -1;
            }

            p = bench_json_ws(p + 1, end);

            if ((size_t) (q - 1 - key) == klen
                && memcmp(key, path, klen) == 0)
            {
                break;
            }

            p = bench_json_value(p, end, NULL);
            if (p == NULL) {
                return -1;
            }

            p = bench_json_ws(p, end);

            if (p < end && *p == ',') {
                p = bench_json_ws(p + 1, end);
                continue;
            }

            if (p < end && *p == '}') {
                return 1;
            }

            return -1;
        }

        if (dot == NULL) {
            return bench_json_value(p, end, v) ? 0 : -1;
        }

        path = dot + 1;
    }
}


int
bench_json_is(const bench_json_t *v, const char *s)
{
    size_t  n;

    n = strlen(s);

    return v->type == BENCH_JSON_STRING && v->len == n
           && memcmp(v->p, s, n) == 0;
}


static const char *
bench_json_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
    {
        p++;
    }

    return p;
}


/* p at the opening quote; returns past the closing one */

static const char *
bench_json_string(const char *p, const char *end)
{
    const char  *q, *b;

    for (p++; p < end; p++) {

        if (*p == '"') {
            return p + 1;
        }

        if (*p == '\\') {
            p++;
            continue;
        }

        if ((unsigned char) *p < 0x20) {
            return NULL;
        }

        /* long runs of plain characters (base64) go by memchr */

        q = memchr(p, '"', (size_t) (end - p));
        if (q == NULL) {
            return NULL;
        }

        b = memchr(p, '\\', (size_t) (q - p));
        if (b == NULL) {
            return q + 1;
        }

        p = b - 1;
    }

    return NULL;
}


static const char *
bench_json_value(const char *p, const char *end, bench_json_t *v)
{
    int          depth;
    const char  *start, *q;
    char         stack[BENCH_JSON_MAX_DEPTH];

    if (p == end) {
        return NULL;
    }

    start = p;

    if (*p == '"') {
        q = bench_json_string(p, end);
        if (q == NULL) {
            return NULL;
        }

        if (v) {
            v->type = BENCH_JSON_STRING;
            v->p = start + 1;
            v->len = (size_t) (q - start - 2);
        }

        return q;
    }

    if (*p == '{' || *p == '[') {
        depth = 0;

        while (p < end) {

            switch (*p) {

            case '"':
                p = bench_json_string(p, end);
                if (p == NULL) {
                    return NULL;
                }

                continue;

            case '{':
            case '[':
                if (depth == BENCH_JSON_MAX_DEPTH) {
                    return NULL;
                }

                stack[depth++] = *p == '{' ? '}' : ']';
                break;

            case '}':
            case ']':
                if (depth == 0 || stack[depth - 1] != *p) {
                    return NULL;
                }

                if (--depth == 0) {
                    if (v) {
                        v->type = *start == '{' ? BENCH_JSON_OBJECT
                                                : BENCH_JSON_ARRAY;
                        v->p = start;
                        v->len = (size_t) (p + 1 - start);
                    }

                    return p + 1;
                }

                break;

            default:
                break;
            }

            p++;
        }

        return NULL;
    }

    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' '
           && *p != '\t' && *p != '\n' && *p != '\r')
    {
        p++;
    }

    if (p == start) {
        return NULL;
    }

    if (v) {
        v->type = (*start == '-' || (*start >= '0' && *start <= '9'))
                  ? BENCH_JSON_NUMBER : BENCH_JSON_LITERAL;
        v->p = start;
        v->len = (size_t) (p - start);
    }

    return p;
}
