
/*
 * WebSocket connections and the HTTP upgrade, for the benchmark tools.
 */


#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_codec.h"
#include "bench_ws.h"


#define BENCH_RANDOM_POOL  4096
#define BENCH_WS_GUID      "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


static int bench_ws_fail(bench_ws_t *ws, unsigned code, const char *error);
static ssize_t bench_ws_tls_read(bench_ws_t *ws);
static int bench_ws_tls_flush(bench_ws_t *ws);


static unsigned char  bench_random_pool[BENCH_RANDOM_POOL];
static size_t         bench_random_left;


void
bench_random(void *p, size_t n)
{
    size_t          k;
    ssize_t         got;
    unsigned char  *dst;

    dst = p;

    while (n) {
        if (bench_random_left == 0) {
            got = getrandom(bench_random_pool, BENCH_RANDOM_POOL, 0);

            if (got <= 0) {
                /* never happens after boot; do not spin on it */
                abort();
            }

            bench_random_left = (size_t) got;
        }

        k = n < bench_random_left ? n : bench_random_left;
        memcpy(dst, bench_random_pool + BENCH_RANDOM_POOL - bench_random_left,
               k);
        bench_random_left -= k;
        dst += k;
        n -= k;
    }
}


int
bench_ws_init(bench_ws_t *ws, int fd, int role, size_t max_message,
    size_t out_size)
{
    memset(ws, 0, sizeof(bench_ws_t));

    ws->fd = fd;
    ws->role = role;
    ws->max_message = max_message;
    ws->message = NGX_HTTP_TWIRT_WS_CONT;

    /* one whole frame of the largest size fits, and a read's worth more */
    ws->in_size = max_message + NGX_HTTP_TWIRT_WS_MAX_HEADER + 4096;
    ws->out_size = out_size;

    ws->in = malloc(ws->in_size);
    ws->out = malloc(ws->out_size);

    if (ws->in == NULL || ws->out == NULL) {
        bench_ws_free(ws);
        return -1;
    }

    return 0;
}


void
bench_ws_free(bench_ws_t *ws)
{
    if (ws->ssl) {
        SSL_free(ws->ssl);
        ws->ssl = NULL;
    }

    free(ws->in);
    free(ws->out);
    free(ws->msg);
    ws->in = NULL;
    ws->out = NULL;
    ws->msg = NULL;
}


ssize_t
bench_ws_read(bench_ws_t *ws)
{
    ssize_t  n;

    if (ws->in_start == ws->in_end) {
        ws->in_start = 0;
        ws->in_end = 0;

    } else if (ws->in_size - ws->in_end < 4096 && ws->in_start > 0) {
        memmove(ws->in, ws->in + ws->in_start, ws->in_end - ws->in_start);
        ws->in_end -= ws->in_start;
        ws->in_start = 0;
    }

    if (ws->in_end == ws->in_size) {
        errno = ENOBUFS;
        return -1;
    }

    if (ws->ssl) {
        return bench_ws_tls_read(ws);
    }

    n = read(ws->fd, ws->in + ws->in_end, ws->in_size - ws->in_end);

    if (n > 0) {
        ws->in_end += (size_t) n;
        return n;
    }

    if (n == 0) {
        return 0;
    }

    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
        return BENCH_WS_AGAIN;
    }

    return -1;
}


int
bench_ws_next(bench_ws_t *ws, bench_ws_msg_t *m)
{
    int                         rc;
    unsigned                    message;
    size_t                      avail;
    unsigned char              *payload;
    ngx_http_twirt_ws_frame_t   f;

    for ( ;; ) {
        avail = ws->in_end - ws->in_start;

        rc = ngx_http_twirt_ws_frame_parse(&f, ws->in + ws->in_start, avail,
                                           ws->role, ws->max_message);

        if (rc == NGX_HTTP_TWIRT_WS_AGAIN) {
            return 0;
        }

        if (rc != NGX_HTTP_TWIRT_WS_OK) {
            return bench_ws_fail(ws, f.close_code, f.error);
        }

        if (avail - f.header_len < f.payload_len) {
            return 0;
        }

        message = ws->message;

        if (ngx_http_twirt_ws_frame_sequence(&f, &ws->message)
            != NGX_HTTP_TWIRT_WS_OK)
        {
            return bench_ws_fail(ws, f.close_code, f.error);
        }

        payload = ws->in + ws->in_start + f.header_len;
        ws->in_start += f.header_len + (size_t) f.payload_len;

        if (f.masked) {
            ngx_http_twirt_ws_unmask(payload, (size_t) f.payload_len, f.mask,
                                     0);
        }

        if (ngx_http_twirt_ws_is_control(f.opcode)
            || (f.fin && f.opcode != NGX_HTTP_TWIRT_WS_CONT))
        {
            m->opcode = f.opcode;
            m->data = payload;
            m->len = (size_t) f.payload_len;
            return 1;
        }

        /* a fragment */

        if (ws->msg == NULL) {
            ws->msg = malloc(ws->max_message);
            if (ws->msg == NULL) {
                return bench_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL,
                                     "out of memory");
            }
        }

        if (f.opcode != NGX_HTTP_TWIRT_WS_CONT) {
            ws->msg_len = 0;
            message = f.opcode;
        }

        if (ws->max_message - ws->msg_len < f.payload_len) {
            return bench_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_TOO_BIG,
                                 "message too big");
        }

        memcpy(ws->msg + ws->msg_len, payload, (size_t) f.payload_len);
        ws->msg_len += (size_t) f.payload_len;

        if (f.fin) {
            m->opcode = message;
            m->data = ws->msg;
            m->len = ws->msg_len;
            ws->msg_len = 0;
            return 1;
        }
    }
}


unsigned char *
bench_ws_reserve(bench_ws_t *ws, size_t max)
{
    size_t  need;

    need = NGX_HTTP_TWIRT_WS_MAX_HEADER + max;

    if (ws->out_size - ws->out_end < need) {
        if (ws->out_start == 0
            || ws->out_size - (ws->out_end - ws->out_start) < need)
        {
            return NULL;
        }

        memmove(ws->out, ws->out + ws->out_start,
                ws->out_end - ws->out_start);
        ws->out_end -= ws->out_start;
        ws->out_start = 0;
    }

    return ws->out + ws->out_end + NGX_HTTP_TWIRT_WS_MAX_HEADER;
}


int
bench_ws_commit(bench_ws_t *ws, unsigned opcode, size_t len)
{
    size_t          h;
    unsigned char  *out, mask[4];

    out = ws->out + ws->out_end;

    if (ws->role == NGX_HTTP_TWIRT_WS_CLIENT) {
        bench_random(mask, 4);
        h = ngx_http_twirt_ws_frame_header(out, 1, opcode, len, mask);

    } else {
        h = ngx_http_twirt_ws_frame_header(out, 1, opcode, len, NULL);
    }

    if (h != NGX_HTTP_TWIRT_WS_MAX_HEADER) {
        memmove(out + h, out + NGX_HTTP_TWIRT_WS_MAX_HEADER, len);
    }

    if (ws->role == NGX_HTTP_TWIRT_WS_CLIENT) {
        ngx_http_twirt_ws_unmask(out + h, len, mask, 0);
    }

    ws->out_end += h + len;

    return 0;
}


int
bench_ws_send(bench_ws_t *ws, unsigned opcode, const void *p, size_t len)
{
    unsigned char  *dst;

    dst = bench_ws_reserve(ws, len);
    if (dst == NULL) {
        return -1;
    }

    memcpy(dst, p, len);

    return bench_ws_commit(ws, opcode, len);
}


int
bench_ws_send_raw(bench_ws_t *ws, const void *p, size_t len)
{
    unsigned char  *dst;

    dst = bench_ws_reserve(ws, len);
    if (dst == NULL) {
        return -1;
    }

    memcpy(ws->out + ws->out_end, p, len);
    ws->out_end += len;

    return 0;
}


int
bench_ws_flush(bench_ws_t *ws)
{
    ssize_t  n;

    if (ws->ssl) {
        return bench_ws_tls_flush(ws);
    }

    while (ws->out_start < ws->out_end) {
        n = send(ws->fd, ws->out + ws->out_start, ws->out_end - ws->out_start,
                 MSG_NOSIGNAL);

        if (n > 0) {
            ws->out_start += (size_t) n;
            continue;
        }

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return 1;
        }

        return -1;
    }

    ws->out_start = 0;
    ws->out_end = 0;

    return 0;
}


void
bench_ws_consume(bench_ws_t *ws, size_t n)
{
    ws->in_start += n;
}


size_t
bench_http_header_end(const unsigned char *p, size_t len)
{
    size_t  i;

    for (i = 3; i < len; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n'
            && p[i - 3] == '\r')
        {
            return i + 1;
        }
    }

    return 0;
}


int
bench_http_header(const unsigned char *p, size_t len, const char *name,
    const unsigned char **value, size_t *vlen)
{
    size_t                nlen;
    const unsigned char  *end, *line, *eol, *v, *ve;

    nlen = strlen(name);
    end = p + len;

    /* the first line is the request or status line */

    line = memchr(p, '\n', len);

    while (line != NULL && ++line < end) {
        eol = memchr(line, '\n', (size_t) (end - line));
        if (eol == NULL) {
            eol = end;
        }

        if ((size_t) (eol - line) > nlen && line[nlen] == ':'
            && strncasecmp((const char *) line, name, nlen) == 0)
        {
            v = line + nlen + 1;
            ve = eol;

            while (v < ve && (*v == ' ' || *v == '\t')) {
                v++;
            }

            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '
                              || ve[-1] == '\t'))
            {
                ve--;
            }

            *value = v;
            *vlen = (size_t) (ve - v);

            return 1;
        }

        line = eol < end ? eol : NULL;
    }

    return 0;
}


int
bench_http_has_token(const unsigned char *v, size_t len, const char *token)
{
    size_t                tlen, n;
    const unsigned char  *end, *comma;

    tlen = strlen(token);
    end = v + len;

    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ',')) {
            v++;
        }

        comma = memchr(v, ',', (size_t) (end - v));
        n = (size_t) ((comma ? comma : end) - v);

        while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) {
            n--;
        }

        if (n == tlen && strncasecmp((const char *) v, token, n) == 0) {
            return 1;
        }

        v = comma ? comma + 1 : end;
    }

    return 0;
}


void
bench_ws_key(char key[BENCH_WS_KEY_LEN + 1])
{
    unsigned char  raw[16];

    bench_random(raw, 16);
    bench_base64_encode(key, raw, 16);
    key[BENCH_WS_KEY_LEN] = '\0';
}


int
bench_ws_accept(const unsigned char *key, size_t len,
    char accept[BENCH_WS_ACCEPT_LEN + 1])
{
    unsigned int   n;
    unsigned char  buf[128], md[EVP_MAX_MD_SIZE];

    /* SHA-1 directly, not twirt's codec: an independent computation */

    if (len > sizeof(buf) - (sizeof(BENCH_WS_GUID) - 1)) {
        return -1;
    }

    memcpy(buf, key, len);
    memcpy(buf + len, BENCH_WS_GUID, sizeof(BENCH_WS_GUID) - 1);

    if (EVP_Digest(buf, len + sizeof(BENCH_WS_GUID) - 1, md, &n, EVP_sha1(),
                   NULL) != 1
        || n != 20)
    {
        return -1;
    }

    bench_base64_encode(accept, md, 20);
    accept[BENCH_WS_ACCEPT_LEN] = '\0';

    return 0;
}


SSL_CTX *
bench_tls_client_ctx(const char *ca, char *err, size_t n)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, n, "SSL_CTX_new() failed");
        return NULL;
    }

    if (ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1
           : SSL_CTX_set_default_verify_paths(ctx) != 1)
    {
        snprintf(err, n, "cannot load the CAs \"%s\"", ca ? ca : "(system)");
        SSL_CTX_free(ctx);
        return NULL;
    }

    /* verified as a production client verifies: chain and address */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    return ctx;
}


SSL_CTX *
bench_tls_server_ctx(const char *cert, const char *key, char *err, size_t n)
{
    SSL_CTX  *ctx;

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, n, "SSL_CTX_new() failed");
        return NULL;
    }

    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
        || SSL_CTX_check_private_key(ctx) != 1)
    {
        snprintf(err, n, "cannot load the certificate \"%s\" and key "
                 "\"%s\"", cert, key);
        SSL_CTX_free(ctx);
        return NULL;
    }

    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE
                          | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    return ctx;
}


int
bench_ws_tls(bench_ws_t *ws, SSL_CTX *ctx, const char *name)
{
    X509_VERIFY_PARAM  *param;

    ws->ssl = SSL_new(ctx);

    if (ws->ssl == NULL || SSL_set_fd(ws->ssl, ws->fd) != 1) {
        return -1;
    }

    if (ws->role == NGX_HTTP_TWIRT_WS_CLIENT) {
        SSL_set_connect_state(ws->ssl);

        /* names are never resolved here: the address is what is checked */

        param = SSL_get0_param(ws->ssl);

        if (X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1
            && (X509_VERIFY_PARAM_set1_host(param, name, 0) != 1
                || SSL_set_tlsext_host_name(ws->ssl, name) != 1))
        {
            return -1;
        }

    } else {
        SSL_set_accept_state(ws->ssl);
    }

    ws->tls_handshake = 1;

    return 0;
}


int
bench_ws_tls_handshake(bench_ws_t *ws)
{
    int            rc;
    unsigned long  e;

    ERR_clear_error();
    rc = SSL_do_handshake(ws->ssl);

    if (rc == 1) {
        ws->tls_handshake = 0;
        ws->tls_want_write = 0;
        return 0;
    }

    switch (SSL_get_error(ws->ssl, rc)) {

    case SSL_ERROR_WANT_READ:
        ws->tls_want_write = 0;
        return 1;

    case SSL_ERROR_WANT_WRITE:
        ws->tls_want_write = 1;
        return 1;

    default:
        e = ERR_peek_error();
        ws->error = e ? ERR_reason_error_string(e) : "the peer closed";

        if (ws->error == NULL) {
            ws->error = "TLS handshake failed";
        }

        return -1;
    }
}


/*
 * Reads until TLS has nothing more: level-triggered epoll does not see
 * what OpenSSL holds decrypted, so none of it is left there.
 */

static ssize_t
bench_ws_tls_read(bench_ws_t *ws)
{
    int      n;
    ssize_t  total;

    total = 0;

    while (ws->in_end < ws->in_size) {
        ERR_clear_error();
        n = SSL_read(ws->ssl, ws->in + ws->in_end,
                     (int) (ws->in_size - ws->in_end));

        if (n > 0) {
            ws->in_end += (size_t) n;
            total += n;
            continue;
        }

        switch (SSL_get_error(ws->ssl, n)) {

        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            return total ? total : BENCH_WS_AGAIN;

        case SSL_ERROR_ZERO_RETURN:
            return total ? total : 0;

        default:
            errno = EPROTO;
            return total ? total : -1;
        }
    }

    return total;
}


static int
bench_ws_tls_flush(bench_ws_t *ws)
{
    int  n;

    while (ws->out_start < ws->out_end) {
        ERR_clear_error();
        n = SSL_write(ws->ssl, ws->out + ws->out_start,
                      (int) (ws->out_end - ws->out_start));

        if (n > 0) {
            ws->out_start += (size_t) n;
            continue;
        }

        switch (SSL_get_error(ws->ssl, n)) {

        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:
            return 1;

        default:
            return -1;
        }
    }

    ws->out_start = 0;
    ws->out_end = 0;

    return 0;
}


static int
bench_ws_fail(bench_ws_t *ws, unsigned code, const char *error)
{
    ws->close_code = code;
    ws->error = error;

    return -1;
}
