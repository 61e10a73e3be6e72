
/*
 * The Realtime upstream client: resolves, connects, does TLS with
 * verification and the WebSocket upgrade, then hands over a client-side
 * WebSocket connection.  One timer covers all of it.
 */


#include <openssl/rand.h>

#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_http.h"
#include "ngx_http_twirt_upstream.h"


#define NGX_HTTP_TWIRT_UPSTREAM_RESPONSE  4096


static void ngx_http_twirt_upstream_connected(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc);
static ngx_int_t ngx_http_twirt_upstream_request(
    ngx_http_twirt_upstream_t *u);
static void ngx_http_twirt_upstream_send(ngx_event_t *ev);
static void ngx_http_twirt_upstream_recv(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_upstream_process(
    ngx_http_twirt_upstream_t *u);
static void ngx_http_twirt_upstream_timeout(ngx_event_t *ev);
static void ngx_http_twirt_upstream_fail(ngx_http_twirt_upstream_t *u,
    ngx_http_twirt_end_e end, const char *error);
static void ngx_http_twirt_upstream_ws_read(ngx_event_t *ev);
static void ngx_http_twirt_upstream_ws_write(ngx_event_t *ev);


ngx_int_t
ngx_http_twirt_upstream_connect(ngx_http_twirt_upstream_t *u)
{
    ngx_http_twirt_connect_t  *cn;

    u->started = ngx_current_msec;
    u->key = u->conf->api_key;

    if (u->key.len == 0) {
        /* needs "env OPENAI_API_KEY;" in the main configuration */
        u->key.data = (u_char *) getenv("OPENAI_API_KEY");
        u->key.len = u->key.data ? ngx_strlen(u->key.data) : 0;

        if (u->key.len == 0) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "twirt: no Realtime API key: set "
                          "\"twirt_openai_api_key\", "
                          "\"twirt_openai_api_key_file\", or OPENAI_API_KEY "
                          "with \"env OPENAI_API_KEY;\"");
            return NGX_ERROR;
        }
    }

    u->timer.handler = ngx_http_twirt_upstream_timeout;
    u->timer.data = u;
    u->timer.log = u->log;
    u->timer.cancelable = u->cancelable;

    cn = &u->connect;

    cn->pool = u->pool;
    cn->log = u->log;
    cn->url = u->conf->openai_url;
    cn->tls = &u->conf->openai_tls;
    cn->resolver = u->resolver;
    cn->resolver_timeout = u->resolver_timeout;
    cn->peer = "upstream";
    cn->action = "upgrading to a WebSocket";
    cn->cancelable = u->cancelable;
    cn->data = u;
    cn->handler = ngx_http_twirt_upstream_connected;

    if (ngx_http_twirt_connect_start(cn) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!u->done) {
        ngx_add_timer(&u->timer, u->conf->connect_timeout);
    }

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_connected(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc)
{
    ngx_connection_t           *c;
    ngx_http_twirt_upstream_t  *u;

    u = cn->data;

    switch (rc) {

    case NGX_HTTP_TWIRT_CONNECT_OK:
        break;

    case NGX_HTTP_TWIRT_CONNECT_RESOLVE:
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     "upstream not resolved");
        return;

    case NGX_HTTP_TWIRT_CONNECT_TLS:
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                     cn->error);
        return;

    case NGX_HTTP_TWIRT_CONNECT_NO_MEMORY:
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     cn->error);
        return;

    default:
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     cn->error);
        return;
    }

    c = cn->pc.connection;
    c->data = u;

    if (ngx_http_twirt_upstream_request(u) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return;
    }

    ngx_http_twirt_upstream_send(c->write);
}


/*
 * The upgrade request.  It carries the API key: it is written to the
 * socket and nowhere else, never to a log.
 */

static ngx_int_t
ngx_http_twirt_upstream_request(ngx_http_twirt_upstream_t *u)
{
    u_char                *p;
    size_t                 len;
    u_char                 raw[16], key[24];
    ngx_str_t              src, dst;
    ngx_buf_t             *b;
    ngx_http_twirt_url_t  *url;

    url = u->conf->openai_url;

    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        return NGX_ERROR;
    }

    src.data = raw;
    src.len = sizeof(raw);
    dst.data = key;
    ngx_encode_base64(&dst, &src);

    if (ngx_http_twirt_ws_accept(key, sizeof(key), u->accept)
        != NGX_HTTP_TWIRT_WS_ACCEPT_LEN)
    {
        return NGX_ERROR;
    }

    len = sizeof("GET  HTTP/1.1" CRLF) - 1 + url->uri.len
          + sizeof("Host: " CRLF) - 1 + url->host_header.len
          + sizeof("Upgrade: websocket" CRLF
                   "Connection: Upgrade" CRLF
                   "Sec-WebSocket-Version: 13" CRLF
                   "Sec-WebSocket-Key: " CRLF) - 1 + sizeof(key)
          + sizeof("Authorization: Bearer " CRLF) - 1 + u->key.len
          + sizeof("User-Agent: twirt" CRLF CRLF) - 1;

    b = ngx_create_temp_buf(u->pool, len);
    if (b == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(b->last, "GET ", 4);
    p = ngx_cpymem(p, url->uri.data, url->uri.len);
    p = ngx_cpymem(p, " HTTP/1.1" CRLF "Host: ", sizeof(" HTTP/1.1" CRLF
                                                        "Host: ") - 1);
    p = ngx_cpymem(p, url->host_header.data, url->host_header.len);
    p = ngx_cpymem(p, CRLF "Upgrade: websocket" CRLF
                      "Connection: Upgrade" CRLF
                      "Sec-WebSocket-Version: 13" CRLF
                      "Sec-WebSocket-Key: ",
                   sizeof(CRLF "Upgrade: websocket" CRLF
                          "Connection: Upgrade" CRLF
                          "Sec-WebSocket-Version: 13" CRLF
                          "Sec-WebSocket-Key: ") - 1);
    p = ngx_cpymem(p, key, sizeof(key));
    p = ngx_cpymem(p, CRLF "Authorization: Bearer ",
                   sizeof(CRLF "Authorization: Bearer ") - 1);
    p = ngx_cpymem(p, u->key.data, u->key.len);
    p = ngx_cpymem(p, CRLF "User-Agent: twirt" CRLF CRLF,
                   sizeof(CRLF "User-Agent: twirt" CRLF CRLF) - 1);

    b->last = p;
    u->request = b;

    u->response = ngx_create_temp_buf(u->pool,
                                      NGX_HTTP_TWIRT_UPSTREAM_RESPONSE);
    if (u->response == NULL) {
        return NGX_ERROR;
    }

    u->connect.pc.connection->read->handler = ngx_http_twirt_upstream_recv;
    u->connect.pc.connection->write->handler = ngx_http_twirt_upstream_send;

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_send(ngx_event_t *ev)
{
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_connection_t           *c;
    ngx_http_twirt_upstream_t  *u;

    c = ev->data;
    u = c->data;
    b = u->request;

    rc = ngx_http_twirt_connect_send(c, b);

    if (rc == NGX_AGAIN) {
        return;
    }

    if (rc == NGX_ERROR) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     "upstream closed the connection");
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     "event failed");
        return;
    }

    if (c->read->ready) {
        ngx_http_twirt_upstream_recv(c->read);
    }
}


static void
ngx_http_twirt_upstream_recv(ngx_event_t *ev)
{
    ssize_t                     n;
    ngx_int_t                   rc;
    ngx_buf_t                  *b;
    ngx_connection_t           *c;
    ngx_http_twirt_upstream_t  *u;

    c = ev->data;
    u = c->data;
    b = u->response;

    for ( ;; ) {
        if (b->last == b->end) {
            rc = ngx_http_twirt_upstream_process(u);
            if (rc == NGX_AGAIN) {
                ngx_http_twirt_upstream_fail(u,
                    NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                    "upgrade response too long");
            }

            return;
        }

        n = c->recv(c, b->last, b->end - b->last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (u->status) {
                /* the body of a refusal ends with the connection */
                (void) ngx_http_twirt_upstream_process(u);
                ngx_http_twirt_upstream_fail(u,
                    NGX_HTTP_TWIRT_END_UPSTREAM_REFUSED, NULL);
                return;
            }

            if (b->last == b->pos) {
                ngx_http_twirt_upstream_fail(u,
                    NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                    "upstream closed the connection");

            } else {
                ngx_http_twirt_upstream_fail(u,
                    NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                    "invalid upgrade response");
            }

            return;
        }

        b->last += n;

        rc = ngx_http_twirt_upstream_process(u);

        if (rc != NGX_AGAIN) {
            return;
        }
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     "event failed");
    }
}


/*
 * Reads the answer to the upgrade: NGX_AGAIN for more bytes; otherwise
 * the upstream is done, with a WebSocket or with a failure.
 */

static ngx_int_t
ngx_http_twirt_upstream_process(ngx_http_twirt_upstream_t *u)
{
    u_char                     *p, *end;
    size_t                      body;
    ngx_str_t                   headers, value;
    ngx_buf_t                  *b;
    ngx_connection_t           *c;
    ngx_http_twirt_ws_t        *ws;
    ngx_http_twirt_log_text_t   t;

    b = u->response;
    c = u->connect.pc.connection;

    end = ngx_strlcasestrn(b->pos, b->last, (u_char *) CRLF CRLF, 4 - 1);

    if (u->status == 0) {
        if (end == NULL) {
            return NGX_AGAIN;
        }

        p = b->pos;

        if (end - p < 12 || ngx_strncmp(p, "HTTP/1.", 7) != 0
            || p[8] != ' ' || p[9] < '1' || p[9] > '5'
            || p[10] < '0' || p[10] > '9' || p[11] < '0' || p[11] > '9')
        {
            ngx_http_twirt_upstream_fail(u,
                NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                "invalid upgrade response");
            return NGX_ERROR;
        }

        u->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    }

    if (u->status != 101) {
        /* keep reading the body of the refusal until it is all here */
        if (end == NULL) {
            return NGX_AGAIN;
        }

        headers.data = b->pos;
        headers.len = end + 2 - b->pos;
        body = b->last - (end + 4);

        if (ngx_http_twirt_http_header(&headers, "Content-Length",
                                           &value)
            == NGX_OK
            && (size_t) ngx_atosz(value.data, value.len) > body
            && b->last < b->end && !c->read->eof)
        {
            return NGX_AGAIN;
        }

        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "twirt: upstream \"%V\" refused the upgrade with "
                      "%ui: \"%V\"", &u->conf->openai_url->url, u->status,
                      ngx_http_twirt_log_text(&t, end + 4, body));

        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_REFUSED,
                                     NULL);
        return NGX_ERROR;
    }

    headers.data = b->pos;
    headers.len = end + 2 - b->pos;

    /* RFC 6455 4.1: what the client did not ask for fails the connection */

    if (b->pos[7] != '1') {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 not over HTTP/1.1");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_http_header(&headers, "Sec-WebSocket-Extensions",
                                       &value)
        == NGX_OK)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 with an extension not offered");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_http_header(&headers, "Sec-WebSocket-Protocol",
                                       &value)
        == NGX_OK)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 with a subprotocol not offered");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_http_header(&headers, "Upgrade", &value) != NGX_OK
        || value.len != 9
        || ngx_strncasecmp(value.data, (u_char *) "websocket", 9) != 0)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 without Upgrade: websocket");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_http_header(&headers, "Connection", &value)
        != NGX_OK
        || ngx_strlcasestrn(value.data, value.data + value.len,
                            (u_char *) "upgrade", 7 - 1)
           == NULL)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 without Connection: Upgrade");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_http_header(&headers, "Sec-WebSocket-Accept",
                                       &value)
        != NGX_OK
        || value.len != NGX_HTTP_TWIRT_WS_ACCEPT_LEN
        || ngx_memcmp(value.data, u->accept, NGX_HTTP_TWIRT_WS_ACCEPT_LEN)
           != 0)
    {
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "twirt: upstream \"%V\" sent a wrong "
                      "Sec-WebSocket-Accept", &u->conf->openai_url->url);
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "wrong Sec-WebSocket-Accept");
        return NGX_ERROR;
    }

    ws = ngx_http_twirt_ws_create(u->pool, c, &u->conf->upstream_ws,
                                  NGX_HTTP_TWIRT_WS_CLIENT);
    if (ws == NULL) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return NGX_ERROR;
    }

    ws->peer = "upstream";
    ws->data = u->data;
    ws->on_message = u->on_message;
    ws->on_closed = u->on_closed;

    /* frames that came with the 101 wait in the buffer for the owner */
    p = end + 4;

    if (ngx_http_twirt_ws_keep(ws, p, b->last - p) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return NGX_ERROR;
    }

    /* the answer's buffer is not needed for the rest of the call */
    ngx_pfree(u->pool, b->start);
    u->response = NULL;

    c->data = ws;
    c->log->action = "talking to the Realtime API";
    ngx_http_twirt_upstream_handlers(c);

    if (u->timer.timer_set) {
        ngx_del_timer(&u->timer);
    }

    u->connect.pc.connection = NULL;
    u->ws = ws;
    u->done = 1;

    u->handler(u, NGX_OK);

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_upstream_t  *u = ev->data;

    ngx_log_error(NGX_LOG_ERR, u->log, NGX_ETIMEDOUT,
                  "twirt: upstream \"%V\" did not answer within "
                  "twirt_openai_connect_timeout",
                  &u->conf->openai_url->url);

    ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                 "upstream connect timeout");
}


/* error NULL: an HTTP refusal, the reason is "upstream answered NNN" */

static void
ngx_http_twirt_upstream_fail(ngx_http_twirt_upstream_t *u,
    ngx_http_twirt_end_e end, const char *error)
{
    u_char  *p;

    if (u->done) {
        return;
    }

    u->done = 1;

    if (error == NULL) {
        p = ngx_pnalloc(u->pool, sizeof("upstream answered 000"));
        if (p) {
            ngx_sprintf(p, "upstream answered %03ui%Z", u->status);
        }

        error = p ? (const char *) p : "upstream refused";
    }

    u->end = end;
    u->error = error;

    ngx_http_twirt_upstream_cancel(u);

    u->handler(u, NGX_ERROR);
}


/* the owner gives up: nothing more is called back */

void
ngx_http_twirt_upstream_cancel(ngx_http_twirt_upstream_t *u)
{
    u->done = 1;

    if (u->timer.timer_set) {
        ngx_del_timer(&u->timer);
    }

    ngx_http_twirt_connect_cancel(&u->connect);
}


/* an upgraded connection's events go to its WebSocket, c->data */

void
ngx_http_twirt_upstream_handlers(ngx_connection_t *c)
{
    c->read->handler = ngx_http_twirt_upstream_ws_read;
    c->write->handler = ngx_http_twirt_upstream_ws_write;
}


static void
ngx_http_twirt_upstream_ws_read(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_twirt_ws_read(c->data);
}


static void
ngx_http_twirt_upstream_ws_write(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_twirt_ws_write(c->data);
}
