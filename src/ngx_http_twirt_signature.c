
/*
 * X-Twilio-Signature: HMAC-SHA1 over the public URL and the sorted POST
 * parameters, keyed with the account's auth token.
 */


#include <openssl/hmac.h>
#include <openssl/crypto.h>

#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_signature.h"


#define NGX_HTTP_TWIRT_SIG_URLS  4


static ngx_int_t ngx_http_twirt_signature_url(ngx_http_request_t *r,
    ngx_http_complex_value_t *public_url, const char *scheme, ngx_str_t *url);
static ngx_int_t ngx_http_twirt_signature_valid(ngx_pool_t *pool,
    ngx_str_t *token, ngx_str_t *url, ngx_array_t *pairs,
    ngx_str_t *signature);
static ngx_int_t ngx_http_twirt_signature_urls(ngx_pool_t *pool,
    ngx_str_t *url, ngx_str_t *urls, ngx_uint_t *n);
static ngx_int_t ngx_http_twirt_signature_params(ngx_pool_t *pool,
    ngx_array_t *pairs, ngx_str_t *out);
static int ngx_libc_cdecl ngx_http_twirt_signature_pair_cmp(const void *one,
    const void *two);
static ngx_int_t ngx_http_twirt_signature_match(ngx_str_t *token,
    ngx_str_t *url, ngx_str_t *params, ngx_str_t *signature, u_char *buf);


/*
 * The one place that knows which URLs Twilio may have signed.  The
 * webhook (and <Connect action>): twirt_public_url, or the request's URL
 * as https and, on a plain connection behind a TLS tunnel, as http.  The
 * upgrade: twirt_public_url or the request's wss:// URL, as written in
 * <Stream url>, with and without a trailing '/' (Twilio's docs advise
 * trying both).  pairs: the POST parameters of a webhook, or NULL.
 * NGX_OK: signed, or no twirt_twilio_auth_token; NGX_DECLINED: missing
 * or wrong, logged; NGX_ERROR: no memory.
 */

ngx_int_t
ngx_http_twirt_signature_check(ngx_http_request_t *r, ngx_uint_t kind,
    ngx_array_t *pairs, ngx_str_t *call_sid)
{
    u_char                     *p;
    ngx_int_t                   rc;
    ngx_str_t                   url, signature, *token;
    ngx_http_twirt_log_text_t   t, t2;
    ngx_http_twirt_loc_conf_t  *tlcf;

    static ngx_str_t  unknown = ngx_string("-");

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);
    token = &tlcf->auth_token;

    if (token->len == 0) {
        return NGX_OK;
    }

    if (ngx_http_twirt_signature_url(r, tlcf->public_url,
                                     kind == NGX_HTTP_TWIRT_SIGNED_UPGRADE
                                     ? "wss" : "https", &url)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_http_twirt_header_in(r, "X-Twilio-Signature", &signature);

    rc = ngx_http_twirt_signature_valid(r->pool, token, &url, pairs,
                                        &signature);

    if (rc != NGX_DECLINED || url.len == 0) {
        goto done;
    }

    if (kind == NGX_HTTP_TWIRT_SIGNED_UPGRADE) {
        p = ngx_pnalloc(r->pool, url.len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, url.data, url.len);

        if (p[url.len - 1] == '/') {
            url.len--;

        } else {
            p[url.len++] = '/';
        }

        url.data = p;

        rc = ngx_http_twirt_signature_valid(r->pool, token, &url, NULL,
                                            &signature);
        goto done;
    }

    /* behind a TLS tunnel nginx sees http, Twilio signed https */

    if (tlcf->public_url == NULL
#if (NGX_HTTP_SSL)
        && r->connection->ssl == NULL
#endif
       )
    {
        p = url.data + 1;
        ngx_memcpy(p, "http", 4);

        url.data = p;
        url.len--;

        rc = ngx_http_twirt_signature_valid(r->pool, token, &url, pairs,
                                            &signature);
    }

done:

    if (rc == NGX_DECLINED) {
        if (kind == NGX_HTTP_TWIRT_SIGNED_UPGRADE) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "twirt: %s X-Twilio-Signature on the media stream "
                          "upgrade to \"%V\"",
                          signature.len ? "invalid" : "missing",
                          ngx_http_twirt_log_str(&t, &url));

        } else {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "twirt: %s X-Twilio-Signature for CallSid \"%V\" "
                          "on \"%V\"",
                          signature.len ? "invalid" : "missing",
                          ngx_http_twirt_log_str(&t2, call_sid ? call_sid
                                                               : &unknown),
                          ngx_http_twirt_log_str(&t, &url));
        }
    }

    return rc;
}


/*
 * NGX_OK when the signature matches the URL as given or with its port
 * toggled (Twilio drops the port and any user:password before signing
 * some URLs, validators try both); NGX_DECLINED when it does not.
 */

static ngx_int_t
ngx_http_twirt_signature_valid(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *url, ngx_array_t *pairs, ngx_str_t *signature)
{
    u_char      *buf;
    size_t       max;
    ngx_str_t    urls[NGX_HTTP_TWIRT_SIG_URLS], params;
    ngx_uint_t   i, n;

    if (signature->len == 0 || token->len == 0) {
        return NGX_DECLINED;
    }

    if (ngx_http_twirt_signature_params(pool, pairs, &params) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_signature_urls(pool, url, urls, &n) != NGX_OK) {
        return NGX_ERROR;
    }

    max = 0;

    for (i = 0; i < n; i++) {
        max = ngx_max(max, urls[i].len);
    }

    buf = ngx_pnalloc(pool, max + params.len);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < n; i++) {
        if (ngx_http_twirt_signature_match(token, &urls[i], &params,
                                           signature, buf)
            == NGX_OK)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/*
 * The URL Twilio signed: twirt_public_url, or scheme://Host/URI of the
 * request itself, with the Host header as sent (its port included).
 */

static ngx_int_t
ngx_http_twirt_signature_url(ngx_http_request_t *r,
    ngx_http_complex_value_t *public_url, const char *scheme, ngx_str_t *url)
{
    u_char     *p;
    size_t      len;
    ngx_str_t  *host;

    if (public_url) {
        return ngx_http_complex_value(r, public_url, url);
    }

    host = r->headers_in.host ? &r->headers_in.host->value
                              : &r->headers_in.server;
    len = ngx_strlen(scheme);

    url->len = len + sizeof("://") - 1 + host->len + r->unparsed_uri.len;

    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, scheme, len);
    p = ngx_cpymem(p, "://", sizeof("://") - 1);
    p = ngx_cpymem(p, host->data, host->len);
    ngx_memcpy(p, r->unparsed_uri.data, r->unparsed_uri.len);

    return NGX_OK;
}


/*
 * The URL Twilio is given to come back to this location (<Dial action>,
 * <Number url>): the one it signs for this request, as https, without
 * the query string.
 */

ngx_int_t
ngx_http_twirt_public_url(ngx_http_request_t *r, ngx_str_t *url)
{
    u_char                     *q;
    ngx_http_twirt_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    if (ngx_http_twirt_signature_url(r, tlcf->public_url, "https", url)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    q = ngx_strlchr(url->data, url->data + url->len, '?');

    if (q) {
        url->len = q - url->data;
    }

    return NGX_OK;
}


/* a request header by name, also those nginx 1.22 does not index */

ngx_int_t
ngx_http_twirt_header_in(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            *value = h[i].value;
            return NGX_OK;
        }
    }

    ngx_str_null(value);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_twirt_signature_match(ngx_str_t *token, ngx_str_t *url,
    ngx_str_t *params, ngx_str_t *signature, u_char *buf)
{
    u_char        *p;
    u_char         md[EVP_MAX_MD_SIZE], b64[64];
    unsigned int   md_len;
    ngx_str_t      digest, encoded;

    p = ngx_cpymem(buf, url->data, url->len);
    p = ngx_cpymem(p, params->data, params->len);

    if (HMAC(EVP_sha1(), token->data, (int) token->len, buf, p - buf,
             md, &md_len)
        == NULL)
    {
        return NGX_ERROR;
    }

    digest.data = md;
    digest.len = md_len;
    encoded.data = b64;

    ngx_encode_base64(&encoded, &digest);

    if (encoded.len != signature->len
        || CRYPTO_memcmp(encoded.data, signature->data, encoded.len) != 0)
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/*
 * Names in byte order, each followed by its value, no separators.  Byte
 * order of UTF-8 is code-point order: Twilio's documented rule and its
 * Python validator (Node's sorts UTF-16 code units, which differs for
 * names beyond U+FFFF; twirt follows the reference, see README).
 */

static ngx_int_t
ngx_http_twirt_signature_params(ngx_pool_t *pool, ngx_array_t *pairs,
    ngx_str_t *out)
{
    u_char                 *p;
    size_t                  len;
    ngx_uint_t              i;
    ngx_http_twirt_pair_t  *sorted;

    ngx_str_set(out, "");

    if (pairs == NULL || pairs->nelts == 0) {
        return NGX_OK;
    }

    sorted = ngx_pnalloc(pool, pairs->nelts * sizeof(ngx_http_twirt_pair_t));
    if (sorted == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(sorted, pairs->elts,
               pairs->nelts * sizeof(ngx_http_twirt_pair_t));

    ngx_qsort(sorted, pairs->nelts, sizeof(ngx_http_twirt_pair_t),
              ngx_http_twirt_signature_pair_cmp);

    len = 0;

    for (i = 0; i < pairs->nelts; i++) {
        len += sorted[i].name.len + sorted[i].value.len;
    }

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    out->len = len;

    for (i = 0; i < pairs->nelts; i++) {
        p = ngx_cpymem(p, sorted[i].name.data, sorted[i].name.len);
        p = ngx_cpymem(p, sorted[i].value.data, sorted[i].value.len);
    }

    return NGX_OK;
}


/* a repeated name sorts by value, as Twilio's own validators do */

static int ngx_libc_cdecl
ngx_http_twirt_signature_pair_cmp(const void *one, const void *two)
{
    ngx_int_t               rc;
    ngx_http_twirt_pair_t  *a, *b;

    a = (ngx_http_twirt_pair_t *) one;
    b = (ngx_http_twirt_pair_t *) two;

    rc = ngx_memn2cmp(a->name.data, b->name.data, a->name.len, b->name.len);

    if (rc == 0) {
        rc = ngx_memn2cmp(a->value.data, b->value.data, a->value.len,
                          b->value.len);
    }

    return (int) rc;
}


/*
 * The URL as given; without user:password; and with the port toggled:
 * removed when present, the scheme's default added when absent.
 */

static ngx_int_t
ngx_http_twirt_signature_urls(ngx_pool_t *pool, ngx_str_t *url,
    ngx_str_t *urls, ngx_uint_t *n)
{
    u_char     *p, *last, *host, *auth_end, *colon, *at;
    size_t      scheme_len;
    ngx_str_t   port;

    urls[0] = *url;
    *n = 1;

    last = url->data + url->len;

    p = ngx_strlcasestrn(url->data, last, (u_char *) "://", 3 - 1);
    if (p == NULL) {
        return NGX_OK;
    }

    scheme_len = p - url->data;
    host = p + 3;

    for (auth_end = host; auth_end < last; auth_end++) {
        if (*auth_end == '/' || *auth_end == '?' || *auth_end == '#') {
            break;
        }
    }

    at = NULL;

    for (p = host; p < auth_end; p++) {
        if (*p == '@') {
            at = p;
        }
    }

    if (at) {
        host = at + 1;
    }

    colon = NULL;

    for (p = auth_end; p > host; p--) {
        if (p[-1] == ':') {
            colon = p - 1;
            break;
        }

        if (p[-1] == ']' || p[-1] < '0' || p[-1] > '9') {
            break;
        }
    }

    if (colon) {
        ngx_str_null(&port);

    } else if ((scheme_len == 5
                && ngx_strncasecmp(url->data, (u_char *) "https", 5) == 0)
               || (scheme_len == 3
                   && ngx_strncasecmp(url->data, (u_char *) "wss", 3) == 0))
    {
        ngx_str_set(&port, ":443");

    } else {
        ngx_str_set(&port, ":80");
    }

    /* without user:password, port as given */

    if (at) {
        p = ngx_pnalloc(pool, url->len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        urls[*n].data = p;
        p = ngx_cpymem(p, url->data, scheme_len + 3);
        p = ngx_cpymem(p, host, last - host);
        urls[*n].len = p - urls[*n].data;
        (*n)++;
    }

    /* without user:password, port toggled */

    p = ngx_pnalloc(pool, url->len + port.len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    urls[*n].data = p;
    p = ngx_cpymem(p, url->data, scheme_len + 3);

    if (colon) {
        p = ngx_cpymem(p, host, colon - host);

    } else {
        p = ngx_cpymem(p, host, auth_end - host);
        p = ngx_cpymem(p, port.data, port.len);
    }

    p = ngx_cpymem(p, auth_end, last - auth_end);
    urls[*n].len = p - urls[*n].data;
    (*n)++;

    return NGX_OK;
}
