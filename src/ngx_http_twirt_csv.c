
/*
 * Campaign rows from a CSV upload.  The text is made UTF-8 first (a BOM
 * dropped, CP932 converted with iconv), then read one record at a time:
 * every cell is a span of the text, except a quoted cell with doubled
 * quotes, which is unescaped into a buffer of the largest cell allowed.
 * One pass over the text, nothing kept but the header and the rows.
 */


#include <iconv.h>

#include "ngx_http_twirt_csv.h"
#include "ngx_http_twirt_escape.h"
#include "ngx_http_twirt_ws_frame.h"


#define NGX_HTTP_TWIRT_CSV_IGNORED   0
#define NGX_HTTP_TWIRT_CSV_PHONE     1
#define NGX_HTTP_TWIRT_CSV_VARIABLE  2

/* a message: the longest is two shown names and some words */
#define NGX_HTTP_TWIRT_CSV_ERROR_LEN  256

/* a name as shown in a message: at most 32 bytes and "..." */
#define NGX_HTTP_TWIRT_CSV_SHOWN     32

/* the first cell of a record was all of an empty line, to be skipped */
#define ngx_http_twirt_csv_blank(csv)                                        \
    ((csv)->last && !(csv)->quoted && (csv)->value.len == 0)


typedef struct {
    ngx_str_t                     name;     /* NUL-terminated */
    ngx_uint_t                    kind;
} ngx_http_twirt_csv_column_t;


typedef struct {
    u_char                       *p;
    u_char                       *end;
    ngx_uint_t                    line;     /* the physical line of p */
    ngx_uint_t                    start;    /* the line of the record */
    ngx_pool_t                   *pool;
    ngx_str_t                    *error;
    u_char                       *text;     /* converted, to be freed */

    ngx_http_twirt_csv_column_t   columns[NGX_HTTP_TWIRT_CSV_MAX_COLUMNS];
    ngx_uint_t                    ncolumns;

    /* the cell just read */
    ngx_str_t                     value;
    unsigned                      quoted:1;
    unsigned                      last:1;   /* the record ended with it */

    u_char                        buf[NGX_HTTP_TWIRT_CSV_MAX_CELL * 4];
} ngx_http_twirt_csv_t;


static ngx_int_t ngx_http_twirt_csv_utf8(ngx_http_twirt_csv_t *csv,
    u_char *data, size_t len);
static ngx_int_t ngx_http_twirt_csv_valid(u_char *p, u_char *end,
    ngx_uint_t *line);
static ngx_int_t ngx_http_twirt_csv_header(ngx_http_twirt_csv_t *csv);
static ngx_int_t ngx_http_twirt_csv_name(ngx_http_twirt_csv_t *csv,
    ngx_uint_t n, ngx_uint_t *kind);
static ngx_int_t ngx_http_twirt_csv_record(ngx_http_twirt_csv_t *csv,
    json_t *rows);
static ngx_int_t ngx_http_twirt_csv_cell(ngx_http_twirt_csv_t *csv,
    ngx_uint_t n);
static void ngx_http_twirt_csv_trim(ngx_str_t *v);
static void ngx_http_twirt_csv_newline(ngx_http_twirt_csv_t *csv);
static u_char *ngx_http_twirt_csv_eol(u_char *p, u_char *end);
static ngx_uint_t ngx_http_twirt_csv_line(u_char *p, u_char *pos);
static ngx_str_t *ngx_http_twirt_csv_shown(ngx_str_t *name, ngx_str_t *out,
    u_char *buf);
static ngx_int_t ngx_http_twirt_csv_fail(ngx_http_twirt_csv_t *csv,
    const char *fmt, ...);


static ngx_str_t  ngx_http_twirt_csv_phone_names[] = {
    ngx_string("to"),
    ngx_string("phone"),
    ngx_string("number"),
    ngx_string("電話番号"),
    ngx_string("電話"),
    ngx_null_string
};


ngx_int_t
ngx_http_twirt_csv_rows(ngx_pool_t *pool, u_char *data, size_t len,
    json_t **rows, ngx_str_t *error)
{
    json_t                *list;
    ngx_int_t              rc;
    ngx_http_twirt_csv_t  *csv;

    *rows = NULL;
    ngx_str_null(error);

    csv = ngx_palloc(pool, sizeof(ngx_http_twirt_csv_t));
    if (csv == NULL) {
        ngx_str_set(error, "out of memory");
        return NGX_ERROR;
    }

    csv->pool = pool;
    csv->error = error;
    csv->ncolumns = 0;
    csv->line = 1;
    csv->text = NULL;

    if (len >= 3 && data[0] == 0xef && data[1] == 0xbb && data[2] == 0xbf) {
        data += 3;
        len -= 3;
    }

    list = NULL;
    rc = ngx_http_twirt_csv_utf8(csv, data, len);

    if (rc == NGX_OK) {
        rc = ngx_http_twirt_csv_header(csv);
    }

    if (rc == NGX_OK) {
        list = json_array();

        if (list == NULL) {
            ngx_str_set(error, "out of memory");
            rc = NGX_ERROR;
        }
    }

    while (rc == NGX_OK && csv->p < csv->end) {
        rc = ngx_http_twirt_csv_record(csv, list);
    }

    /* the rows and the message are copies: large allocations go back */

    if (csv->text) {
        ngx_pfree(pool, csv->text);
    }

    ngx_pfree(pool, csv);

    if (rc != NGX_OK) {
        json_decref(list);
        return NGX_ERROR;
    }

    *rows = list;

    return NGX_OK;
}


/* csv->p and csv->end: the text as UTF-8, converted from CP932 if need be */

static ngx_int_t
ngx_http_twirt_csv_utf8(ngx_http_twirt_csv_t *csv, u_char *data, size_t len)
{
    char        *in, *out;
    size_t       size, in_left, out_left;
    u_char      *p, *text;
    iconv_t      cd;
    ngx_err_t    err;
    ngx_uint_t   line, bad;

    p = ngx_strlchr(data, data + len, '\0');

    if (p) {
        return ngx_http_twirt_csv_fail(csv, "line %ui: a NUL byte",
                                       ngx_http_twirt_csv_line(data, p));
    }

    if (ngx_http_twirt_csv_valid(data, data + len, &bad) == NGX_OK) {
        csv->p = data;
        csv->end = data + len;
        return NGX_OK;
    }

    /*
     * Every CP932 character is at most 3 bytes of UTF-8: the half-width
     * katakana take 1 byte in and 3 out, the rest 2 in and 3 out.
     */

    if (len > (NGX_MAX_SIZE_T_VALUE - 1) / 3) {
        ngx_str_set(csv->error, "the file is too large");
        return NGX_ERROR;
    }

    size = len * 3 + 1;

    text = ngx_pnalloc(csv->pool, size);
    if (text == NULL) {
        ngx_str_set(csv->error, "out of memory");
        return NGX_ERROR;
    }

    csv->text = text;

    cd = iconv_open("UTF-8", "CP932");

    if (cd == (iconv_t) -1) {
        ngx_log_error(NGX_LOG_ALERT, csv->pool->log, ngx_errno,
                      "twirt: iconv_open(\"UTF-8\", \"CP932\") failed");
        ngx_str_set(csv->error,
                    "Shift_JIS (CP932) cannot be read here: send UTF-8");
        return NGX_ERROR;
    }

    in = (char *) data;
    in_left = len;
    out = (char *) text;
    out_left = size;

    if (iconv(cd, &in, &in_left, &out, &out_left) == (size_t) -1) {
        err = ngx_errno;
        iconv_close(cd);

        if (err == E2BIG) {
            ngx_log_error(NGX_LOG_ALERT, csv->pool->log, 0,
                          "twirt: CP932 took more than 3 bytes a character");
            ngx_str_set(csv->error, "the file could not be converted");
            return NGX_ERROR;
        }

        /* the encoding that went further is the one the file is in */

        line = ngx_http_twirt_csv_line(data, (u_char *) in);

        return ngx_http_twirt_csv_fail(csv,
                           "line %ui: the file is neither UTF-8 nor "
                           "Shift_JIS (CP932)", ngx_max(line, bad));
    }

    iconv_close(cd);

    if (ngx_http_twirt_csv_valid(text, (u_char *) out, &bad) != NGX_OK) {
        return ngx_http_twirt_csv_fail(csv,
                           "line %ui: the file is neither UTF-8 nor "
                           "Shift_JIS (CP932)", bad);
    }

    csv->p = text;
    csv->end = (u_char *) out;

    return NGX_OK;
}


/* NGX_ERROR: not UTF-8, *line is where it stops being */

static ngx_int_t
ngx_http_twirt_csv_valid(u_char *p, u_char *end, ngx_uint_t *line)
{
    u_char                 *eol;
    ngx_http_twirt_utf8_t   u;

    ngx_http_twirt_utf8_init(&u);

    /* no UTF-8 sequence has CR or LF inside: a line at a time */

    for (*line = 1; p < end; (*line)++, p = eol) {
        eol = ngx_http_twirt_csv_eol(p, end);

        if (ngx_http_twirt_utf8_feed(&u, p, eol - p) != NGX_HTTP_TWIRT_WS_OK)
        {
            return NGX_ERROR;
        }
    }

    if (ngx_http_twirt_utf8_finish(&u) != NGX_HTTP_TWIRT_WS_OK) {
        (*line)--;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_csv_header(ngx_http_twirt_csv_t *csv)
{
    u_char                       *dst;
    ngx_str_t                    *v, shown;
    ngx_uint_t                    n, i, kind, phone, variables;
    ngx_http_twirt_csv_column_t  *col;
    u_char                        buf[NGX_HTTP_TWIRT_CSV_SHOWN + 3];

    do {
        if (csv->p == csv->end) {
            ngx_str_set(csv->error, "the file is empty");
            return NGX_ERROR;
        }

        csv->start = csv->line;

        if (ngx_http_twirt_csv_cell(csv, 0) != NGX_OK) {
            return NGX_ERROR;
        }

    } while (ngx_http_twirt_csv_blank(csv));

    v = &csv->value;
    phone = 0;
    variables = 0;

    for (n = 0; /* void */; n++) {

        if (n > 0) {
            if (n == NGX_HTTP_TWIRT_CSV_MAX_COLUMNS) {
                return ngx_http_twirt_csv_fail(csv,
                                           "line %ui: more than %ui columns",
                                           csv->start,
                                           NGX_HTTP_TWIRT_CSV_MAX_COLUMNS);
            }

            if (ngx_http_twirt_csv_cell(csv, n) != NGX_OK) {
                return NGX_ERROR;
            }
        }

        ngx_http_twirt_csv_trim(v);     /* quoted names too */

        col = &csv->columns[n];
        col->kind = NGX_HTTP_TWIRT_CSV_IGNORED;
        ngx_str_null(&col->name);
        csv->ncolumns = n + 1;

        if (v->len) {
            if (ngx_http_twirt_csv_name(csv, n, &kind) != NGX_OK) {
                return NGX_ERROR;
            }

            for (i = 0; i < n; i++) {
                if (csv->columns[i].name.len == v->len
                    && ngx_memcmp(csv->columns[i].name.data, v->data, v->len)
                       == 0)
                {
                    return ngx_http_twirt_csv_fail(csv,
                                  "line %ui, column %ui: the column name "
                                  "\"%V\" is repeated", csv->start, n + 1,
                                  ngx_http_twirt_csv_shown(v, &shown, buf));
                }
            }

            /* the first phone column is the one: any other is a variable */

            if (kind == NGX_HTTP_TWIRT_CSV_PHONE && !phone) {
                phone = 1;

            } else if (++variables > NGX_HTTP_TWIRT_CSV_MAX_VARIABLES) {
                return ngx_http_twirt_csv_fail(csv,
                                  "line %ui: more than %ui variable columns",
                                  csv->start,
                                  NGX_HTTP_TWIRT_CSV_MAX_VARIABLES);

            } else {
                kind = NGX_HTTP_TWIRT_CSV_VARIABLE;
            }

            dst = ngx_pnalloc(csv->pool, v->len + 1);
            if (dst == NULL) {
                ngx_str_set(csv->error, "out of memory");
                return NGX_ERROR;
            }

            col->name.data = dst;
            col->name.len = v->len;
            *ngx_cpymem(dst, v->data, v->len) = '\0';
            col->kind = kind;
        }

        if (csv->last) {
            break;
        }
    }

    if (!phone) {
        ngx_str_set(csv->error, "no phone column: name one to, phone, "
                                "number, 電話番号 or 電話");
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* csv->value is a trimmed header name, not empty: what it names */

static ngx_int_t
ngx_http_twirt_csv_name(ngx_http_twirt_csv_t *csv, ngx_uint_t n,
    ngx_uint_t *kind)
{
    u_char      c;
    size_t      i;
    ngx_str_t  *name, shown;
    u_char      buf[NGX_HTTP_TWIRT_CSV_SHOWN + 3];

    for (name = ngx_http_twirt_csv_phone_names; name->len; name++) {
        if (name->len == csv->value.len
            && ngx_strncasecmp(name->data, csv->value.data, name->len) == 0)
        {
            *kind = NGX_HTTP_TWIRT_CSV_PHONE;
            return NGX_OK;
        }
    }

    *kind = NGX_HTTP_TWIRT_CSV_VARIABLE;

    for (i = 0; i < csv->value.len; i++) {
        c = csv->value.data[i];

        if (c >= 0x80 || c == '_' || (c >= '0' && c <= '9')
            || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))
        {
            continue;
        }

        break;
    }

    if (i < csv->value.len || i > NGX_HTTP_TWIRT_CSV_MAX_NAME) {
        return ngx_http_twirt_csv_fail(csv,
                           "line %ui, column %ui: the column name \"%V\" is "
                           "not allowed: use letters, digits and _ "
                           "(at most %ui bytes)", csv->start, n + 1,
                           ngx_http_twirt_csv_shown(&csv->value, &shown, buf),
                           NGX_HTTP_TWIRT_CSV_MAX_NAME);
    }

    return NGX_OK;
}


/* one record after the header: a row appended, or an empty line skipped */

static ngx_int_t
ngx_http_twirt_csv_record(ngx_http_twirt_csv_t *csv, json_t *rows)
{
    json_t                       *row, *to, *variables, *value;
    ngx_uint_t                    n;
    ngx_http_twirt_csv_column_t  *col;

    csv->start = csv->line;

    to = NULL;
    row = NULL;

    variables = json_object();
    if (variables == NULL) {
        goto nomem;
    }

    for (n = 0; /* void */; n++) {

        if (n == csv->ncolumns) {
            json_decref(variables);
            json_decref(to);

            return ngx_http_twirt_csv_fail(csv,
                       "line %ui: more cells than the header has columns "
                       "(%ui)", csv->start, csv->ncolumns);
        }

        if (ngx_http_twirt_csv_cell(csv, n) != NGX_OK) {
            json_decref(variables);
            json_decref(to);
            return NGX_ERROR;
        }

        if (n == 0 && ngx_http_twirt_csv_blank(csv)) {
            json_decref(variables);
            return NGX_OK;
        }

        col = &csv->columns[n];

        if (col->kind == NGX_HTTP_TWIRT_CSV_PHONE) {
            ngx_http_twirt_csv_trim(&csv->value);   /* quoted ones too */
        }

        if (col->kind != NGX_HTTP_TWIRT_CSV_IGNORED) {
            value = json_stringn_nocheck((char *) csv->value.data,
                                         csv->value.len);
            if (value == NULL) {
                goto nomem;
            }

            if (col->kind == NGX_HTTP_TWIRT_CSV_PHONE) {
                to = value;

            } else if (json_object_set_new_nocheck(variables,
                                                   (char *) col->name.data,
                                                   value)
                       != 0)
            {
                goto nomem;
            }
        }

        if (csv->last) {
            break;
        }
    }

    /* Excel leaves out empty cells at the end of a record */

    for (n++; n < csv->ncolumns; n++) {
        col = &csv->columns[n];

        if (col->kind == NGX_HTTP_TWIRT_CSV_VARIABLE
            && json_object_set_new_nocheck(variables, (char *) col->name.data,
                                           json_string_nocheck(""))
               != 0)
        {
            goto nomem;
        }
    }

    if (to == NULL) {
        to = json_string_nocheck("");
        if (to == NULL) {
            goto nomem;
        }
    }

    if (json_array_size(rows) == NGX_HTTP_TWIRT_CSV_MAX_ROWS) {
        json_decref(variables);
        json_decref(to);

        return ngx_http_twirt_csv_fail(csv, "line %ui: more than %ui rows",
                                       csv->start,
                                       NGX_HTTP_TWIRT_CSV_MAX_ROWS);
    }

    row = json_object();

    if (row == NULL
        || json_object_set_new_nocheck(row, "line",
                                       json_integer(csv->start)) != 0
        || json_object_set_nocheck(row, "to", to) != 0
        || json_object_set_nocheck(row, "variables", variables) != 0
        || json_array_append(rows, row) != 0)
    {
        goto nomem;
    }

    json_decref(row);
    json_decref(to);
    json_decref(variables);

    return NGX_OK;

nomem:

    json_decref(row);
    json_decref(to);
    json_decref(variables);

    ngx_str_set(csv->error, "out of memory");

    return NGX_ERROR;
}


/*
 * The next cell (column n, from 0) into csv->value, csv->quoted and
 * csv->last; csv->p is after its comma or its line end.  Unquoted cells
 * are trimmed of spaces and tabs, and a quote inside one is taken as it
 * is; spaces around a quoted cell are dropped.
 */

static ngx_int_t
ngx_http_twirt_csv_cell(ngx_http_twirt_csv_t *csv, ngx_uint_t n)
{
    u_char                       *p, *s, *end, *content, *close, *dst;
    ngx_str_t                     column;
    ngx_uint_t                    escapes;
    ngx_http_twirt_csv_column_t  *col;
    u_char                        buf[NGX_INT_T_LEN + sizeof("\"\"")
                                      + NGX_HTTP_TWIRT_CSV_MAX_NAME];

    p = csv->p;
    end = csv->end;

    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }

    if (p < end && *p == '"') {
        content = ++p;
        escapes = 0;

        for ( ;; ) {

            if (p == end) {
                return ngx_http_twirt_csv_fail(csv,
                                  "line %ui: a quoted field is not closed",
                                  csv->start);
            }

            if (*p == '"') {
                if (p + 1 < end && p[1] == '"') {
                    escapes++;
                    p += 2;
                    continue;
                }

                break;
            }

            if (*p == '\r' || *p == '\n') {
                csv->p = p;
                ngx_http_twirt_csv_newline(csv);
                p = csv->p;
                continue;
            }

            p++;
        }

        close = p++;

        while (p < end && (*p == ' ' || *p == '\t')) {
            p++;
        }

        if (p < end && *p != ',' && *p != '\r' && *p != '\n') {
            return ngx_http_twirt_csv_fail(csv,
                           "line %ui: text after the closing quote of a "
                           "field: quote the whole field, and double the "
                           "quotes inside", csv->start);
        }

        csv->quoted = 1;
        csv->value.data = content;
        csv->value.len = close - content;

        if (escapes) {

            /* too many bytes for the largest cell is too many characters */

            if (csv->value.len - escapes > sizeof(csv->buf)) {
                goto long_cell;
            }

            dst = csv->buf;

            for (s = content; s < close; s++) {
                *dst++ = *s;

                if (*s == '"') {
                    s++;
                }
            }

            csv->value.data = csv->buf;
            csv->value.len = dst - csv->buf;
        }

    } else {
        content = p;

        while (p < end && *p != ',' && *p != '\r' && *p != '\n') {
            p++;
        }

        csv->quoted = 0;
        csv->value.data = content;
        csv->value.len = p - content;

        ngx_http_twirt_csv_trim(&csv->value);
    }

    if (csv->value.len > NGX_HTTP_TWIRT_CSV_MAX_CELL
        && ngx_http_twirt_utf8_length(csv->value.data, csv->value.len)
           > NGX_HTTP_TWIRT_CSV_MAX_CELL)
    {
        goto long_cell;
    }

    if (p == end) {
        csv->p = p;
        csv->last = 1;

    } else if (*p == ',') {
        csv->p = p + 1;
        csv->last = 0;

    } else {
        csv->p = p;
        csv->last = 1;
        ngx_http_twirt_csv_newline(csv);
    }

    return NGX_OK;

long_cell:

    col = &csv->columns[n];

    /* in the header, columns[n] is not made yet */

    if (n < csv->ncolumns && col->name.len) {
        column.data = buf;
        column.len = ngx_sprintf(buf, "\"%V\"", &col->name) - buf;

    } else {
        column.data = buf;
        column.len = ngx_sprintf(buf, "%ui", n + 1) - buf;
    }

    return ngx_http_twirt_csv_fail(csv, "line %ui, column %V: the cell is "
                                   "longer than %ui characters", csv->start,
                                   &column, NGX_HTTP_TWIRT_CSV_MAX_CELL);
}


/* spaces and tabs off both ends */

static void
ngx_http_twirt_csv_trim(ngx_str_t *v)
{
    while (v->len && (v->data[0] == ' ' || v->data[0] == '\t')) {
        v->data++;
        v->len--;
    }

    while (v->len
           && (v->data[v->len - 1] == ' ' || v->data[v->len - 1] == '\t'))
    {
        v->len--;
    }
}


/* csv->p is at CR or LF: past the line end (CRLF is one) */

static void
ngx_http_twirt_csv_newline(ngx_http_twirt_csv_t *csv)
{
    if (*csv->p++ == '\r' && csv->p < csv->end && *csv->p == '\n') {
        csv->p++;
    }

    csv->line++;
}


/* past the end of the line at p: CRLF, LF, CR or the end of the text */

static u_char *
ngx_http_twirt_csv_eol(u_char *p, u_char *end)
{
    while (p < end) {
        if (*p == '\n') {
            return p + 1;
        }

        if (*p == '\r') {
            return (p + 1 < end && p[1] == '\n') ? p + 2 : p + 1;
        }

        p++;
    }

    return end;
}


/* the physical line of pos in a text that starts at p, from 1 */

static ngx_uint_t
ngx_http_twirt_csv_line(u_char *p, u_char *pos)
{
    ngx_uint_t  line;

    for (line = 1; p < pos; line++) {
        p = ngx_http_twirt_csv_eol(p, pos);

        if (p[-1] != '\n' && p[-1] != '\r') {
            break;  /* pos is on this line */
        }
    }

    return line;
}


/* a name for a message: cut short at a character, control bytes as "?" */

static ngx_str_t *
ngx_http_twirt_csv_shown(ngx_str_t *name, ngx_str_t *out, u_char *buf)
{
    size_t   i, len;
    u_char  *p;

    len = name->len;

    if (len > NGX_HTTP_TWIRT_CSV_SHOWN) {
        len = NGX_HTTP_TWIRT_CSV_SHOWN;

        while (len && (name->data[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    p = buf;

    for (i = 0; i < len; i++) {
        *p++ = (name->data[i] < 0x20 || name->data[i] == 0x7f
                || name->data[i] == '"') ? '?' : name->data[i];
    }

    if (len < name->len) {
        p = ngx_cpymem(p, "...", 3);
    }

    out->data = buf;
    out->len = p - buf;

    return out;
}


static ngx_int_t
ngx_http_twirt_csv_fail(ngx_http_twirt_csv_t *csv, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_pnalloc(csv->pool, NGX_HTTP_TWIRT_CSV_ERROR_LEN);
    if (p == NULL) {
        ngx_str_set(csv->error, "out of memory");
        return NGX_ERROR;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + NGX_HTTP_TWIRT_CSV_ERROR_LEN, fmt, args);
    va_end(args);

    csv->error->data = p;
    csv->error->len = last - p;

    return NGX_ERROR;
}
