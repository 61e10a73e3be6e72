
/*
 * application/x-www-form-urlencoded bodies and query strings.
 */


#include "ngx_http_twirt_form.h"


static ngx_int_t ngx_http_twirt_form_decode(ngx_pool_t *pool, u_char *p,
    size_t len, ngx_str_t *out);
static ngx_int_t ngx_http_twirt_form_hex(u_char c);
static int ngx_libc_cdecl ngx_http_twirt_form_name_cmp(const void *one,
    const void *two);


#if (NGX_HTTP_TWIRT_TEST)
/* the test build logs how many comparisons the repeat check made */
static ngx_uint_t  ngx_http_twirt_form_compares;
#endif


/*
 * Appends every name=value pair of p[0..len) to pairs, decoded.
 * NGX_DECLINED: malformed percent-encoding.
 */

ngx_int_t
ngx_http_twirt_form_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_array_t *pairs)
{
    u_char                 *end, *amp, *eq;
    ngx_int_t               rc;
    ngx_http_twirt_pair_t  *pair;

    end = p + len;

    while (p < end) {
        amp = ngx_strlchr(p, end, '&');
        if (amp == NULL) {
            amp = end;
        }

        if (amp == p) {
            p++;
            continue;
        }

        eq = ngx_strlchr(p, amp, '=');
        if (eq == NULL) {
            eq = amp;
        }

        pair = ngx_array_push(pairs);
        if (pair == NULL) {
            return NGX_ERROR;
        }

        rc = ngx_http_twirt_form_decode(pool, p, eq - p, &pair->name);
        if (rc != NGX_OK) {
            return rc;
        }

        if (eq == amp) {
            ngx_str_set(&pair->value, "");

        } else {
            rc = ngx_http_twirt_form_decode(pool, eq + 1, amp - eq - 1,
                                            &pair->value);
            if (rc != NGX_OK) {
                return rc;
            }
        }

        p = amp + 1;
    }

    return NGX_OK;
}


ngx_http_twirt_pair_t *
ngx_http_twirt_form_find(ngx_array_t *pairs, u_char *name, size_t len,
    ngx_uint_t ignore_case)
{
    ngx_uint_t              i;
    ngx_http_twirt_pair_t  *pair;

    if (pairs == NULL) {
        return NULL;
    }

    pair = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {
        if (pair[i].name.len != len) {
            continue;
        }

        if (ignore_case ? ngx_strncasecmp(pair[i].name.data, name, len) == 0
                        : ngx_strncmp(pair[i].name.data, name, len) == 0)
        {
            return &pair[i];
        }
    }

    return NULL;
}


/*
 * The first parameter that appears more than once, in *repeated, or NULL.
 * Sorted by name once, then neighbours compared: O(n log n), so that a
 * body of thousands of short distinct names costs no more than it takes
 * to read it.  NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_twirt_form_repeated(ngx_pool_t *pool, ngx_array_t *pairs,
    ngx_http_twirt_pair_t **repeated)
{
    ngx_uint_t               i;
    ngx_http_twirt_pair_t   *pair, **sorted;

    *repeated = NULL;

    if (pairs == NULL || pairs->nelts < 2) {
        return NGX_OK;
    }

    sorted = ngx_palloc(pool, pairs->nelts * sizeof(ngx_http_twirt_pair_t *));
    if (sorted == NULL) {
        return NGX_ERROR;
    }

    pair = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {
        sorted[i] = &pair[i];
    }

#if (NGX_HTTP_TWIRT_TEST)
    ngx_http_twirt_form_compares = 0;
#endif

    ngx_qsort(sorted, pairs->nelts, sizeof(ngx_http_twirt_pair_t *),
              ngx_http_twirt_form_name_cmp);

    /* equal names sort by position: the first of each run came first */

    for (i = 1; i < pairs->nelts; i++) {
        if (sorted[i]->name.len == sorted[i - 1]->name.len
            && ngx_memcmp(sorted[i]->name.data, sorted[i - 1]->name.data,
                          sorted[i]->name.len)
               == 0
            && (*repeated == NULL || sorted[i - 1] < *repeated))
        {
            *repeated = sorted[i - 1];
        }
    }

#if (NGX_HTTP_TWIRT_TEST)
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pool->log, 0,
                   "twirt: %ui parameters checked for repeats with %ui "
                   "comparisons", pairs->nelts, ngx_http_twirt_form_compares);
#endif

    return NGX_OK;
}


/* by name in byte order, then by position */

static int ngx_libc_cdecl
ngx_http_twirt_form_name_cmp(const void *one, const void *two)
{
    ngx_int_t               rc;
    ngx_http_twirt_pair_t  *a, *b;

    a = *(ngx_http_twirt_pair_t **) one;
    b = *(ngx_http_twirt_pair_t **) two;

#if (NGX_HTTP_TWIRT_TEST)
    ngx_http_twirt_form_compares++;
#endif

    rc = ngx_memn2cmp(a->name.data, b->name.data, a->name.len, b->name.len);

    if (rc != 0) {
        return (int) rc;
    }

    return (a < b) ? -1 : (a > b);
}


static ngx_int_t
ngx_http_twirt_form_decode(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_str_t *out)
{
    u_char     *d, *end;
    ngx_int_t   hi, lo;

    out->data = ngx_pnalloc(pool, len + 1);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    d = out->data;
    end = p + len;

    while (p < end) {
        if (*p == '+') {
            *d++ = ' ';
            p++;
            continue;
        }

        if (*p != '%') {
            *d++ = *p++;
            continue;
        }

        if (end - p < 3) {
            return NGX_DECLINED;
        }

        hi = ngx_http_twirt_form_hex(p[1]);
        lo = ngx_http_twirt_form_hex(p[2]);

        if (hi < 0 || lo < 0) {
            return NGX_DECLINED;
        }

        *d++ = (u_char) (hi << 4 | lo);
        p += 3;
    }

    *d = '\0';
    out->len = d - out->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_form_hex(u_char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    c |= 0x20;

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    return -1;
}
