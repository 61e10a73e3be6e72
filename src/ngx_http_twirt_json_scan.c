
/*
 * A validating JSON scanner for the audio path (see the header).  It
 * accepts exactly RFC 8259 JSON; strings are checked for control
 * characters and valid escapes (UTF-8 was already checked by the
 * WebSocket layer for text messages).
 */


#include "ngx_http_twirt_json_scan.h"


#define NGX_HTTP_TWIRT_JSON_DEPTH  8


typedef struct {
    u_char                       *p;
    u_char                       *end;
    ngx_http_twirt_json_field_t  *fields;
    ngx_uint_t                    n;
    ngx_str_t                     path[NGX_HTTP_TWIRT_JSON_DEPTH];
    ngx_uint_t                    depth;
    ngx_uint_t                    escaped;   /* a wanted value had one */
} ngx_http_twirt_json_t;


static ngx_int_t ngx_http_twirt_json_scan_value(ngx_http_twirt_json_t *j);
static ngx_int_t ngx_http_twirt_json_scan_string(ngx_http_twirt_json_t *j,
    ngx_str_t *s, ngx_uint_t *escapes);
static ngx_int_t ngx_http_twirt_json_scan_number(ngx_http_twirt_json_t *j);
static void ngx_http_twirt_json_scan_ws(ngx_http_twirt_json_t *j);
static ngx_http_twirt_json_field_t *ngx_http_twirt_json_scan_wanted(
    ngx_http_twirt_json_t *j);
static ngx_http_twirt_json_field_t *ngx_http_twirt_json_scan_match(
    ngx_http_twirt_json_t *j, ngx_uint_t prefix);


/* NGX_OK: valid JSON, wanted fields set; NGX_DECLINED: use jansson */

ngx_int_t
ngx_http_twirt_json_scan(u_char *p, size_t len,
    ngx_http_twirt_json_field_t *fields, ngx_uint_t n)
{
    ngx_uint_t             i;
    ngx_http_twirt_json_t  j;

    for (i = 0; i < n; i++) {
        fields[i].found = 0;
        ngx_str_null(&fields[i].value);
    }

    j.p = p;
    j.end = p + len;
    j.fields = fields;
    j.n = n;
    j.depth = 0;
    j.escaped = 0;

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
    ngx_str_t                     key, s;
    ngx_uint_t                    escapes, first;
    ngx_http_twirt_json_field_t  *f;

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

            /* an escaped key never matches a wanted path */
            j->path[j->depth].data = escapes ? NULL : key.data;
            j->path[j->depth].len = key.len;
            j->depth++;

            if (ngx_http_twirt_json_scan_match(j, 1)) {
                /*
                 * A repeated key on the way to a field found already:
                 * jansson keeps the last one, so let it decide.
                 */
                j->escaped = 1;
            }

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

        /* array elements are never wanted: an anonymous path level */
        j->path[j->depth].data = NULL;
        j->path[j->depth].len = 0;
        j->depth++;

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

        f = ngx_http_twirt_json_scan_wanted(j);

        if (f) {
            if (escapes) {
                j->escaped = 1;

            } else if (!f->found) {
                f->value = s;
                f->found = 1;

            } else {
                /* a repeated key: let jansson decide */
                j->escaped = 1;
            }
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
    u_char      c;
    ngx_uint_t  i;

    j->p++;
    s->data = j->p;
    *escapes = 0;

    while (j->p < j->end) {
        c = *j->p;

        if (c == '"') {
            s->len = j->p - s->data;
            j->p++;
            return NGX_OK;
        }

        if (c < 0x20) {
            return NGX_ERROR;
        }

        if (c != '\\') {
            j->p++;
            continue;
        }

        (*escapes)++;
        j->p++;

        if (j->p == j->end) {
            return NGX_ERROR;
        }

        switch (*j->p) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n':
        case 'r': case 't':
            j->p++;
            break;

        case 'u':
            if (j->end - j->p < 5) {
                return NGX_ERROR;
            }

            for (i = 1; i <= 4; i++) {
                c = j->p[i];

                if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                      || (c >= 'A' && c <= 'F')))
                {
                    return NGX_ERROR;
                }
            }

            j->p += 5;
            break;

        default:
            return NGX_ERROR;
        }
    }

    return NGX_ERROR;
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


/* the wanted field whose path is the current one, or NULL */

static ngx_http_twirt_json_field_t *
ngx_http_twirt_json_scan_wanted(ngx_http_twirt_json_t *j)
{
    return ngx_http_twirt_json_scan_match(j, 0);
}


/*
 * prefix 0: the wanted field whose path is the current one; prefix 1: a
 * field found already whose path starts with the current one.
 */

static ngx_http_twirt_json_field_t *
ngx_http_twirt_json_scan_match(ngx_http_twirt_json_t *j, ngx_uint_t prefix)
{
    u_char      *p, *seg;
    size_t       len;
    ngx_uint_t   i, d;

    for (i = 0; i < j->n; i++) {
        if (prefix && !j->fields[i].found) {
            continue;
        }

        p = (u_char *) j->fields[i].path;

        for (d = 0; d < j->depth; d++) {
            seg = p;

            while (*p && *p != '.') {
                p++;
            }

            len = p - seg;

            if (j->path[d].data == NULL || j->path[d].len != len
                || ngx_strncmp(j->path[d].data, seg, len) != 0)
            {
                break;
            }

            if (*p == '.') {
                p++;

            } else {
                d++;
                break;
            }
        }

        if (d != j->depth) {
            continue;
        }

        /* every level matched, and the path has no more of them */
        if (*p == '\0' && p[-1] != '.') {
            return &j->fields[i];
        }

        /* or more of them: the current path leads to the field */
        if (prefix && p[-1] == '.') {
            return &j->fields[i];
        }
    }

    return NULL;
}
