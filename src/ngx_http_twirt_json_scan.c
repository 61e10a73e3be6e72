
/*
 * A validating JSON scanner for the audio path (see the header).  It
 * accepts exactly RFC 8259 JSON; strings are checked for control
 * characters and valid escapes (UTF-8 was already checked by the
 * WebSocket layer for text messages).
 */


#include "ngx_http_twirt_json_scan.h"


#define NGX_HTTP_TWIRT_JSON_DEPTH   8
#define NGX_HTTP_TWIRT_JSON_FIELDS  8


/*
 * The wanted paths are split once per message; while scanning, each
 * depth keeps the set of fields whose path leads through the keys open
 * so far (a bit per field), so that a key is compared with one segment
 * of the few fields still possible there.
 */

typedef struct {
    ngx_str_t                     seg[NGX_HTTP_TWIRT_JSON_DEPTH];
    ngx_uint_t                    nseg;      /* 0: cannot match */
} ngx_http_twirt_json_path_t;


typedef struct {
    u_char                       *p;
    u_char                       *end;
    ngx_http_twirt_json_field_t  *fields;
    ngx_uint_t                    n;
    ngx_http_twirt_json_path_t    paths[NGX_HTTP_TWIRT_JSON_FIELDS];
    ngx_uint_t                    open[NGX_HTTP_TWIRT_JSON_DEPTH + 1];
    ngx_uint_t                    found;     /* fields found, a bit each */
    ngx_uint_t                    depth;
    ngx_uint_t                    escaped;   /* a wanted value had one */
} ngx_http_twirt_json_t;


static ngx_int_t ngx_http_twirt_json_scan_value(ngx_http_twirt_json_t *j);
static ngx_int_t ngx_http_twirt_json_scan_string(ngx_http_twirt_json_t *j,
    ngx_str_t *s, ngx_uint_t *escapes);
static ngx_int_t ngx_http_twirt_json_scan_number(ngx_http_twirt_json_t *j);
static void ngx_http_twirt_json_scan_ws(ngx_http_twirt_json_t *j);
static void ngx_http_twirt_json_scan_paths(ngx_http_twirt_json_t *j);
static void ngx_http_twirt_json_scan_key(ngx_http_twirt_json_t *j,
    ngx_str_t *key, ngx_uint_t escapes);


/* NGX_OK: valid JSON, wanted fields set; NGX_DECLINED: use jansson */

ngx_int_t
ngx_http_twirt_json_scan(u_char *p, size_t len,
    ngx_http_twirt_json_field_t *fields, ngx_uint_t n)
{
    ngx_uint_t             i;
    ngx_http_twirt_json_t  j;

    if (n > NGX_HTTP_TWIRT_JSON_FIELDS) {
        return NGX_DECLINED;
    }

    for (i = 0; i < n; i++) {
        fields[i].found = 0;
        ngx_str_null(&fields[i].value);
    }

    j.p = p;
    j.end = p + len;
    j.fields = fields;
    j.n = n;
    j.found = 0;
    j.depth = 0;
    j.escaped = 0;

    ngx_http_twirt_json_scan_paths(&j);

    ngx_http_twirt_json_scan_ws(&j);

    if (j.p == j.end || *j.p != '{') {
        return NGX_DECLINED;
    }

    if (ngx_http_twirt_json_scan_value(&j) != NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_http_twirt_json_scan_ws(&j);

    if (j.p != j.end || j.escaped) {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_json_scan_value(ngx_http_twirt_json_t *j)
{
    ngx_str_t   key, s;
    ngx_uint_t  i, escapes, first, wanted;

    ngx_http_twirt_json_scan_ws(j);

    if (j->p == j->end) {
        return NGX_ERROR;
    }

    switch (*j->p) {

    case '{':
        if (j->depth == NGX_HTTP_TWIRT_JSON_DEPTH) {
            return NGX_ERROR;
        }

        j->p++;
        first = 1;

        for ( ;; ) {
            ngx_http_twirt_json_scan_ws(j);

            if (j->p == j->end) {
                return NGX_ERROR;
            }

            if (*j->p == '}' && first) {
                j->p++;
                return NGX_OK;
            }

            if (!first) {
                if (*j->p == '}') {
                    j->p++;
                    return NGX_OK;
                }

                if (*j->p != ',') {
                    return NGX_ERROR;
                }

                j->p++;
                ngx_http_twirt_json_scan_ws(j);
            }

            first = 0;

            if (j->p == j->end || *j->p != '"'
                || ngx_http_twirt_json_scan_string(j, &key, &escapes) != NGX_OK)
            {
                return NGX_ERROR;
            }

            ngx_http_twirt_json_scan_ws(j);

            if (j->p == j->end || *j->p != ':') {
                return NGX_ERROR;
            }

            j->p++;

            ngx_http_twirt_json_scan_key(j, &key, escapes);

            if (ngx_http_twirt_json_scan_value(j) != NGX_OK) {
                return NGX_ERROR;
            }

            j->depth--;
        }

    case '[':
        if (j->depth == NGX_HTTP_TWIRT_JSON_DEPTH) {
            return NGX_ERROR;
        }

        j->p++;
        ngx_http_twirt_json_scan_ws(j);

        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return NGX_OK;
        }

        /* array elements are never wanted: a level no path goes through */
        j->depth++;
        j->open[j->depth] = 0;

        for ( ;; ) {
            if (ngx_http_twirt_json_scan_value(j) != NGX_OK) {
                return NGX_ERROR;
            }

            ngx_http_twirt_json_scan_ws(j);

            if (j->p == j->end) {
                return NGX_ERROR;
            }

            if (*j->p == ']') {
                j->p++;
                j->depth--;
                return NGX_OK;
            }

            if (*j->p != ',') {
                return NGX_ERROR;
            }

            j->p++;
        }

    case '"':
        if (ngx_http_twirt_json_scan_string(j, &s, &escapes) != NGX_OK) {
            return NGX_ERROR;
        }

        /* the fields whose whole path is the keys open */

        wanted = j->open[j->depth];

        for (i = 0; wanted; i++, wanted >>= 1) {
            if (!(wanted & 1) || j->paths[i].nseg != j->depth) {
                continue;
            }

            if (escapes || (j->found & ((ngx_uint_t) 1 << i))) {
                /* an escape, or a repeated key: let jansson decide */
                j->escaped = 1;

            } else {
                j->fields[i].value = s;
                j->fields[i].found = 1;
                j->found |= (ngx_uint_t) 1 << i;
            }

            break;
        }

        return NGX_OK;

    case 't':
        if (j->end - j->p < 4 || ngx_strncmp(j->p, "true", 4) != 0) {
            return NGX_ERROR;
        }

        j->p += 4;
        return NGX_OK;

    case 'f':
        if (j->end - j->p < 5 || ngx_strncmp(j->p, "false", 5) != 0) {
            return NGX_ERROR;
        }

        j->p += 5;
        return NGX_OK;

    case 'n':
        if (j->end - j->p < 4 || ngx_strncmp(j->p, "null", 4) != 0) {
            return NGX_ERROR;
        }

        j->p += 4;
        return NGX_OK;

    default:
        return ngx_http_twirt_json_scan_number(j);
    }
}


/* j->p at the opening quote; s: the raw contents */

static ngx_int_t
ngx_http_twirt_json_scan_string(ngx_http_twirt_json_t *j, ngx_str_t *s,
    ngx_uint_t *escapes)
{
    u_char      c, *p, *end;
    uint64_t    w, q, b, hit;
    ngx_uint_t  i;

    p = j->p + 1;
    end = j->end;
    s->data = p;
    *escapes = 0;

    for ( ;; ) {

        /*
         * Most of a message is base64 audio: skip 8 bytes at a time while
         * none is a quote, a backslash or a control character (a zero
         * byte of w ^ '"' or of w ^ '\\', or a byte below 0x20).  The
         * lowest byte flagged is exact (a false flag only follows a true
         * one): on little-endian machines it is the byte to look at.
         */

        while (end - p >= 8) {
            ngx_memcpy(&w, p, 8);

            q = w ^ 0x2222222222222222ULL;
            b = w ^ 0x5c5c5c5c5c5c5c5cULL;

            hit = (((q - 0x0101010101010101ULL) & ~q)
                   | ((b - 0x0101010101010101ULL) & ~b)
                   | ((w - 0x2020202020202020ULL) & ~w))
                  & 0x8080808080808080ULL;

            if (hit) {
#if (NGX_HAVE_LITTLE_ENDIAN && defined __GNUC__)
                p += __builtin_ctzll(hit) >> 3;
#endif
                break;
            }

            p += 8;
        }

        if (p == end) {
            return NGX_ERROR;
        }

        c = *p;

        if (c == '"') {
            s->len = p - s->data;
            j->p = p + 1;
            return NGX_OK;
        }

        if (c < 0x20) {
            return NGX_ERROR;
        }

        if (c != '\\') {
            p++;
            continue;
        }

        (*escapes)++;
        p++;

        if (p == end) {
            return NGX_ERROR;
        }

        switch (*p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            p++;
            break;

        case 'u':
            if (end - p < 5) {
                return NGX_ERROR;
            }

            for (i = 1; i <= 4; i++) {
                c = p[i];

                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                      || (c >= 'A' && c <= 'F')))
                {
                    return NGX_ERROR;
                }
            }

            p += 5;
            break;

        default:
            return NGX_ERROR;
        }
    }
}


static ngx_int_t
ngx_http_twirt_json_scan_number(ngx_http_twirt_json_t *j)
{
    u_char  *start;

    if (j->p < j->end && *j->p == '-') {
        j->p++;
    }

    if (j->p == j->end || *j->p < '0' || *j->p > '9') {
        return NGX_ERROR;
    }

    if (*j->p == '0') {
        j->p++;

    } else {
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }
    }

    if (j->p < j->end && *j->p == '.') {
        start = ++j->p;

        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }

        if (j->p == start) {
            return NGX_ERROR;
        }
    }

    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        j->p++;

        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) {
            j->p++;
        }

        start = j->p;

        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            j->p++;
        }

        if (j->p == start) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_twirt_json_scan_ws(ngx_http_twirt_json_t *j)
{
    while (j->p < j->end
           && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n'
               || *j->p == '\r'))
    {
        j->p++;
    }
}


/* the wanted paths split at their dots; any field is open at the top */

static void
ngx_http_twirt_json_scan_paths(ngx_http_twirt_json_t *j)
{
    u_char                      *p, *seg;
    ngx_uint_t                   i, d;
    ngx_http_twirt_json_path_t  *path;

    j->open[0] = 0;

    for (i = 0; i < j->n; i++) {
        path = &j->paths[i];
        p = (u_char *) j->fields[i].path;
        d = 0;

        for ( ;; ) {
            seg = p;

            while (*p && *p != '.') {
                p++;
            }

            if (p == seg || d == NGX_HTTP_TWIRT_JSON_DEPTH) {
                /* an empty segment, or too deep: never found */
                d = 0;
                break;
            }

            path->seg[d].data = seg;
            path->seg[d].len = p - seg;
            d++;

            if (*p == '\0') {
                break;
            }

            p++;
        }

        path->nseg = d;

        if (d) {
            j->open[0] |= (ngx_uint_t) 1 << i;
        }
    }
}


/*
 * An object's key opens a level: the fields still open are those whose
 * next segment is the key (an escaped key never matches).  A field found
 * already and open again is under a repeated key: jansson keeps the last
 * one, so let it decide.
 */

static void
ngx_http_twirt_json_scan_key(ngx_http_twirt_json_t *j, ngx_str_t *key,
    ngx_uint_t escapes)
{
    ngx_str_t   *seg;
    ngx_uint_t   i, d, open, next;

    d = j->depth;
    open = escapes ? 0 : j->open[d];
    next = 0;

    for (i = 0; open; i++, open >>= 1) {
        if (!(open & 1) || j->paths[i].nseg <= d) {
            continue;
        }

        seg = &j->paths[i].seg[d];

        if (seg->len == key->len
            && ngx_memcmp(seg->data, key->data, key->len) == 0)
        {
            next |= (ngx_uint_t) 1 << i;
        }
    }

    j->depth++;
    j->open[j->depth] = next;

    if (next & j->found) {
        j->escaped = 1;
    }
}
