
/*
 * A small HTTP/1.1 client: the connection (ngx_http_twirt_connect.c),
 * then the request is written, and the response read into one bounded
 * buffer: the status line, the headers, and a body of Content-Length,
 * chunked, or up to the end of the connection (the request says
 * "Connection: close").  One timer covers everything.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_http.h"


static void ngx_http_twirt_http_connected(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc);
static ngx_int_t ngx_http_twirt_http_request(ngx_http_twirt_http_t *h);
static void ngx_http_twirt_http_send(ngx_event_t *ev);
static void ngx_http_twirt_http_recv(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_http_process(ngx_http_twirt_http_t *h,
    ngx_uint_t eof);
static ngx_int_t ngx_http_twirt_http_head(ngx_http_twirt_http_t *h);
static ngx_int_t ngx_http_twirt_http_chunked(u_char *p, u_char *last,
    u_char *out, size_t *len);
static void ngx_http_twirt_http_timeout(ngx_event_t *ev);
static void ngx_http_twirt_http_finish(ngx_http_twirt_http_t *h,
    ngx_http_twirt_http_error_e error, const char *reason);
static void ngx_http_twirt_http_dummy(ngx_event_t *ev);


ngx_http_twirt_http_t *
ngx_http_twirt_http_create(ngx_log_t *log)
{
    ngx_pool_t             *pool;
    ngx_http_twirt_http_t  *h;

    pool = ngx_create_pool(1024, log);
    if (pool == NULL) {
        return NULL;
    }

    h = ngx_pcalloc(pool, sizeof(ngx_http_twirt_http_t));
    if (h == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    h->log = ngx_palloc(pool, sizeof(ngx_log_t));
    if (h->log == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    /* the owner's log may go with the owner, inside the handler */
    *h->log = *log;
    pool->log = h->log;
    h->pool = pool;
    h->peer = "HTTP peer";
    h->timeout = 10000;
    h->max_response = 65536;
    h->content_length = -1;

    return h;
}


/* NGX_ERROR: nothing started, nothing is called back; cancel frees h */

ngx_int_t
ngx_http_twirt_http_start(ngx_http_twirt_http_t *h)
{
    ngx_http_twirt_connect_t  *cn;

    if (h->uri.len == 0) {
        h->uri = h->url->uri;
    }

    if (ngx_http_twirt_http_request(h) != NGX_OK) {
        return NGX_ERROR;
    }

    h->in = ngx_create_temp_buf(h->pool, h->max_response);
    if (h->in == NULL) {
        return NGX_ERROR;
    }

    h->timer.handler = ngx_http_twirt_http_timeout;
    h->timer.data = h;
    h->timer.log = h->log;

    cn = &h->connect;

    cn->pool = h->pool;
    cn->log = h->log;
    cn->url = h->url;
    cn->tls = h->tls;
    cn->resolver = h->resolver;
    cn->resolver_timeout = h->resolver_timeout;
    cn->peer = h->peer;
    cn->data = h;
    cn->handler = ngx_http_twirt_http_connected;

    /* the handler may run (and free h) inside: the timer goes first */
    ngx_add_timer(&h->timer, h->timeout);

    if (ngx_http_twirt_connect_start(cn) != NGX_OK) {
        ngx_del_timer(&h->timer);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_http_connected(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc)
{
    ngx_connection_t       *c;
    ngx_http_twirt_http_t  *h;

    h = cn->data;

    switch (rc) {

    case NGX_HTTP_TWIRT_CONNECT_OK:
        break;

    case NGX_HTTP_TWIRT_CONNECT_RESOLVE:
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_RESOLVE,
                                   cn->error);
        return;

    case NGX_HTTP_TWIRT_CONNECT_TLS:
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_TLS, cn->error);
        return;

    case NGX_HTTP_TWIRT_CONNECT_NO_MEMORY:
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_NO_MEMORY,
                                   cn->error);
        return;

    default:
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_CONNECT,
                                   cn->error);
        return;
    }

    c = cn->pc.connection;
    c->read->handler = ngx_http_twirt_http_recv;
    c->write->handler = ngx_http_twirt_http_send;

    ngx_http_twirt_http_send(c->write);
}


/*
 * The request, whole.  The headers may carry credentials: they are
 * written to the socket and nowhere else, never to a log.
 */

static ngx_int_t
ngx_http_twirt_http_request(ngx_http_twirt_http_t *h)
{
    u_char     *p;
    size_t      len;
    ngx_buf_t  *b;

    len = h->method.len + 1 + h->uri.len + sizeof(" HTTP/1.1" CRLF) - 1
          + sizeof("Host: " CRLF) - 1 + h->url->host_header.len
          + h->headers.len
          + sizeof("Content-Length: " CRLF) - 1 + NGX_SIZE_T_LEN
          + sizeof("Connection: close" CRLF
                   "User-Agent: twirt" CRLF CRLF) - 1
          + h->body.len;

    b = ngx_create_temp_buf(h->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, h->method.data, h->method.len);
    *p++ = ' ';
    p = ngx_cpymem(p, h->uri.data, h->uri.len);
    p = ngx_cpymem(p, " HTTP/1.1" CRLF "Host: ",
                   sizeof(" HTTP/1.1" CRLF "Host: ") - 1);
    p = ngx_cpymem(p, h->url->host_header.data, h->url->host_header.len);
    *p++ = CR; *p++ = LF;
    p = ngx_cpymem(p, h->headers.data, h->headers.len);

    if (h->body.len
        || (h->method.len == 4 && ngx_strncmp(h->method.data, "POST", 4)
                                  == 0))
    {
        p = ngx_sprintf(p, "Content-Length: %uz" CRLF, h->body.len);
    }

    p = ngx_cpymem(p, "Connection: close" CRLF "User-Agent: twirt" CRLF CRLF,
                   sizeof("Connection: close" CRLF
                          "User-Agent: twirt" CRLF CRLF) - 1);
    p = ngx_cpymem(p, h->body.data, h->body.len);

    b->last = p;
    h->out = b;

    return NGX_OK;
}


static void
ngx_http_twirt_http_send(ngx_event_t *ev)
{
    ngx_int_t               rc;
    ngx_buf_t              *b;
    ngx_connection_t       *c;
    ngx_http_twirt_http_t  *h;

    c = ev->data;
    h = ((ngx_http_twirt_connect_t *) c->data)->data;
    b = h->out;

    rc = ngx_http_twirt_connect_send(c, b);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_CONNECT,
                                   "connection lost while sending");
        return;
    }

    c->write->handler = ngx_http_twirt_http_dummy;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_CONNECT,
                                   "event failed");
        return;
    }

    if (c->read->ready) {
        ngx_http_twirt_http_recv(c->read);
    }
}


static void
ngx_http_twirt_http_recv(ngx_event_t *ev)
{
    ssize_t                 n;
    ngx_int_t               rc;
    ngx_buf_t              *b;
    ngx_connection_t       *c;
    ngx_http_twirt_http_t  *h;

    c = ev->data;
    h = ((ngx_http_twirt_connect_t *) c->data)->data;
    b = h->in;

    for ( ;; ) {
        if (b->last == b->end) {
            /* one more byte would not fit: is it complete as it is? */
            rc = ngx_http_twirt_http_process(h, 0);

            if (rc == NGX_AGAIN) {
                ngx_log_error(NGX_LOG_ERR, h->log, 0,
                              "twirt: %s \"%V\" answered more than %uz "
                              "bytes", h->peer, &h->url->url,
                              h->max_response);
                ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_TOO_LARGE,
                                           "response too large");
            }

            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            rc = ngx_http_twirt_http_process(h, 1);

            if (rc == NGX_AGAIN) {
                ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_PROTOCOL,
                                           b->last == b->pos
                                           ? "connection closed without "
                                             "a response"
                                           : "connection closed before "
                                             "the end of the response");
            }

            return;
        }

        b->last += n;

        if (ngx_http_twirt_http_process(h, 0) != NGX_AGAIN) {
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_CONNECT,
                                   "event failed");
    }
}


/*
 * NGX_AGAIN: more bytes are needed; otherwise h is finished (and freed).
 * eof: the peer closed the connection.
 */

static ngx_int_t
ngx_http_twirt_http_process(ngx_http_twirt_http_t *h, ngx_uint_t eof)
{
    size_t      len, have;
    u_char     *p;
    ngx_int_t   rc;
    ngx_buf_t  *b;

    b = h->in;

    if (h->body_start == NULL) {
        rc = ngx_http_twirt_http_head(h);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc != NGX_OK) {
            ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_PROTOCOL,
                                       "invalid response header");
            return NGX_ERROR;
        }
    }

    have = b->last - h->body_start;

    if (h->chunked) {
        rc = ngx_http_twirt_http_chunked(h->body_start, b->last, NULL, &len);

        if (rc == NGX_AGAIN) {
            return NGX_AGAIN;
        }

        if (rc == NGX_ERROR) {
            ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_PROTOCOL,
                                       "invalid chunked body");
            return NGX_ERROR;
        }

        p = ngx_pnalloc(h->pool, len + 1);
        if (p == NULL) {
            ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_NO_MEMORY,
                                       "out of memory");
            return NGX_ERROR;
        }

        (void) ngx_http_twirt_http_chunked(h->body_start, b->last, p, &len);
        h->body_in.data = p;
        h->body_in.len = len;

    } else if (h->content_length >= 0) {
        if (have < (size_t) h->content_length) {
            return NGX_AGAIN;
        }

        h->body_in.data = h->body_start;
        h->body_in.len = (size_t) h->content_length;

    } else {
        /* the body ends with the connection */
        if (!eof) {
            return NGX_AGAIN;
        }

        h->body_in.data = h->body_start;
        h->body_in.len = have;
    }

    ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_OK, NULL);

    return NGX_OK;
}


/* the status line and the headers; 1xx answers are skipped */

static ngx_int_t
ngx_http_twirt_http_head(ngx_http_twirt_http_t *h)
{
    u_char     *p, *end;
    ngx_str_t   value;
    ngx_buf_t  *b;

    b = h->in;

    for ( ;; ) {
        end = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF CRLF, 4 - 1);

        if (end == NULL) {
            return NGX_AGAIN;
        }

        p = b->pos;

        if (end - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
            || (p[7] != '0' && p[7] != '1') || p[8] != ' '
            || p[9] < '1' || p[9] > '5'
            || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        {
            return NGX_ERROR;
        }

        h->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');

        if (h->status >= 200) {
            break;
        }

        b->pos = end + 4;
    }

    h->headers_in.data = b->pos;
    h->headers_in.len = end + 2 - b->pos;
    h->body_start = end + 4;

    if (ngx_http_twirt_http_header(&h->headers_in, "Transfer-Encoding",
                                   &value)
        == NGX_OK)
    {
        if (value.len != 7
            || ngx_strncasecmp(value.data, (u_char *) "chunked", 7) != 0)
        {
            return NGX_ERROR;
        }

        h->chunked = 1;
        return NGX_OK;
    }

    if (ngx_http_twirt_http_header(&h->headers_in, "Content-Length", &value)
        == NGX_OK)
    {
        h->content_length = ngx_atoof(value.data, value.len);

        if (h->content_length == NGX_ERROR) {
            return NGX_ERROR;
        }

    } else if (h->status == 204 || h->status == 304) {
        h->content_length = 0;
    }

    return NGX_OK;
}


/*
 * A chunked body from p to last: NGX_AGAIN while incomplete, NGX_ERROR
 * when malformed, NGX_OK with *len the decoded length; out (not NULL):
 * the decoded body is written there.  Extensions and trailers are
 * skipped.
 */

static ngx_int_t
ngx_http_twirt_http_chunked(u_char *p, u_char *last, u_char *out,
    size_t *len)
{
    u_char     *eol;
    size_t      size, total;
    ngx_int_t   digit;

    total = 0;

    for ( ;; ) {
        eol = ngx_strlcasestrn(p, last, (u_char *) CRLF, 2 - 1);
        if (eol == NULL) {
            return (last - p > 64) ? NGX_ERROR : NGX_AGAIN;
        }

        size = 0;

        if (p == eol || ngx_hextoi(p, 1) == NGX_ERROR) {
            return NGX_ERROR;
        }

        while (p < eol && *p != ';' && *p != ' ' && *p != '\t') {
            digit = ngx_hextoi(p, 1);

            if (digit == NGX_ERROR || size > (NGX_MAX_SIZE_T_VALUE >> 4)) {
                return NGX_ERROR;
            }

            size = (size << 4) + digit;
            p++;
        }

        p = eol + 2;

        if (size == 0) {
            break;
        }

        if (size > (size_t) (last - p) || (size_t) (last - p) - size < 2) {
            return NGX_AGAIN;
        }

        if (p[size] != CR || p[size + 1] != LF) {
            return NGX_ERROR;
        }

        if (out) {
            out = ngx_cpymem(out, p, size);
        }

        total += size;
        p += size + 2;
    }

    /* trailers, to the empty line */

    for ( ;; ) {
        eol = ngx_strlcasestrn(p, last, (u_char *) CRLF, 2 - 1);
        if (eol == NULL) {
            return NGX_AGAIN;
        }

        if (eol == p) {
            break;
        }

        p = eol + 2;
    }

    *len = total;

    return NGX_OK;
}


/* a header of a block of CRLF lines, or NGX_DECLINED */

ngx_int_t
ngx_http_twirt_http_header(ngx_str_t *headers, const char *name,
    ngx_str_t *value)
{
    u_char  *p, *end, *line, *colon;
    size_t   len;

    len = ngx_strlen(name);
    p = headers->data;
    end = p + headers->len;

    while (p < end) {
        line = p;

        p = ngx_strlcasestrn(p, end, (u_char *) CRLF, 2 - 1);
        if (p == NULL) {
            p = end;
        }

        colon = ngx_strlchr(line, p, ':');

        if (colon && (size_t) (colon - line) == len
            && ngx_strncasecmp(line, (u_char *) name, len) == 0)
        {
            colon++;

            while (colon < p && (*colon == ' ' || *colon == '\t')) {
                colon++;
            }

            value->data = colon;
            value->len = p - colon;

            while (value->len && (value->data[value->len - 1] == ' '
                                  || value->data[value->len - 1] == '\t'))
            {
                value->len--;
            }

            return NGX_OK;
        }

        p += 2;
    }

    return NGX_DECLINED;
}


static void
ngx_http_twirt_http_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_http_t  *h = ev->data;

    ngx_log_error(NGX_LOG_ERR, h->log, NGX_ETIMEDOUT,
                  "twirt: %s \"%V\" did not answer within %M ms", h->peer,
                  &h->url->url, h->timeout);

    ngx_http_twirt_http_finish(h, NGX_HTTP_TWIRT_HTTP_TIMEOUT, "timed out");
}


/* the handler's one call, then h is freed */

static void
ngx_http_twirt_http_finish(ngx_http_twirt_http_t *h,
    ngx_http_twirt_http_error_e error, const char *reason)
{
    if (h->done) {
        return;
    }

    h->done = 1;
    h->error = error;
    h->reason = reason;

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    /* the response stays in h->pool; the connection goes now */
    ngx_http_twirt_connect_cancel(&h->connect);

    h->handler(h);

    ngx_destroy_pool(h->pool);
}


/* the owner gives up: no handler call, everything freed */

void
ngx_http_twirt_http_cancel(ngx_http_twirt_http_t *h)
{
    if (h->done) {
        return;
    }

    h->done = 1;

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    ngx_http_twirt_connect_cancel(&h->connect);
    ngx_destroy_pool(h->pool);
}


static void
ngx_http_twirt_http_dummy(ngx_event_t *ev)
{
}
