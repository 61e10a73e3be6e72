
/*
 * The Media Streams endpoint: checks Twilio's WebSocket upgrade, answers
 * 101 and hands the connection to a new call.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_stream.h"
#include "ngx_http_twirt_ws_frame.h"
#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_signature.h"


static ngx_int_t ngx_http_twirt_stream_check(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_http_twirt_stream_upgrade(ngx_http_request_t *r,
    ngx_str_t *key);
static void ngx_http_twirt_stream_read(ngx_http_request_t *r);
static void ngx_http_twirt_stream_write(ngx_http_request_t *r);
static u_char *ngx_http_twirt_stream_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len);
static ngx_int_t ngx_http_twirt_stream_token(ngx_str_t *value,
    const char *token);


ngx_int_t
ngx_http_twirt_stream_handler(ngx_http_request_t *r)
{
    ngx_int_t   rc;
    ngx_str_t   key;

    /* a client that wanted a WebSocket has no use for the connection */
    r->keepalive = 0;

    rc = ngx_http_twirt_stream_check(r, &key);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_twirt_signature_check(r, NGX_HTTP_TWIRT_SIGNED_UPGRADE,
                                        NULL, NULL);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_FORBIDDEN;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_twirt_stream_upgrade(r, &key);
}


/* RFC 6455 4.2.1: what makes a valid opening handshake */

static ngx_int_t
ngx_http_twirt_stream_check(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_str_t                   version, value;
    ngx_table_elt_t            *h;
    ngx_http_twirt_log_text_t   t;

    if (r->method != NGX_HTTP_GET) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream request is not a GET");
        return NGX_HTTP_NOT_ALLOWED;
    }

    if (r->http_version != NGX_HTTP_VERSION_11) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream upgrade needs HTTP/1.1");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_twirt_header_in(r, "Upgrade", &value) != NGX_OK
        || ngx_http_twirt_stream_token(&value, "websocket") != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream request without "
                      "\"Upgrade: websocket\"");
        return NGX_HTTP_BAD_REQUEST;
    }

    /* nginx 1.22 does not keep the Connection header in headers_in */

    if (ngx_http_twirt_header_in(r, "Connection", &value) != NGX_OK
        || ngx_http_twirt_stream_token(&value, "upgrade") != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream request without "
                      "\"Connection: upgrade\"");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_twirt_header_in(r, "Sec-WebSocket-Version", &version)
        != NGX_OK
        || version.len != 2 || ngx_strncmp(version.data, "13", 2) != 0)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream request with unsupported "
                      "WebSocket version \"%V\"",
                      ngx_http_twirt_log_str(&t, &version));

        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "Sec-WebSocket-Version");
        ngx_str_set(&h->value, "13");

        return 426;
    }

    if (ngx_http_twirt_header_in(r, "Sec-WebSocket-Key", key) != NGX_OK
        || ngx_http_twirt_ws_key_valid(key->data, key->len)
           != NGX_HTTP_TWIRT_WS_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: media stream request with an invalid "
                      "Sec-WebSocket-Key");
        return NGX_HTTP_BAD_REQUEST;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_stream_upgrade(ngx_http_request_t *r, ngx_str_t *key)
{
    u_char                 *accept;
    ngx_int_t               rc;
    ngx_table_elt_t        *h;
    ngx_connection_t       *c;
    ngx_http_twirt_ws_t          *ws;
    ngx_http_twirt_call_t        *call;
    ngx_http_twirt_stream_ctx_t  *sctx;

    c = r->connection;

    accept = ngx_pnalloc(r->pool, NGX_HTTP_TWIRT_WS_ACCEPT_LEN);
    if (accept == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_twirt_ws_accept(key->data, key->len, accept)
        != NGX_HTTP_TWIRT_WS_ACCEPT_LEN)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Upgrade");
    ngx_str_set(&h->value, "websocket");

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Sec-WebSocket-Accept");
    h->value.data = accept;
    h->value.len = NGX_HTTP_TWIRT_WS_ACCEPT_LEN;

    sctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_stream_ctx_t));
    if (sctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    call = ngx_http_twirt_call_create(r);
    if (call == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* from here on the call owns the request, and finalizes it */

    ws = call->twilio;

    sctx->kind = NGX_HTTP_TWIRT_CTX_STREAM;
    sctx->ws = ws;
    call->stream_ctx = sctx;

    ngx_http_set_ctx(r, sctx, ngx_http_twirt_module);

    /* every line nginx logs about the connection names the call */
    r->log_handler = ngx_http_twirt_stream_log_handler;

    r->main->count++;
    r->read_event_handler = ngx_http_twirt_stream_read;
    r->write_event_handler = ngx_http_twirt_stream_write;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    /* nginx's status table has no 101 */
    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->keepalive = 0;
    r->header_only = 1;

#if (NGX_HTTP_SSL)
    if (c->ssl) {
        /*
         * Frames go out through c->send(); nginx's output buffer
         * (ssl_buffer_size, 16k from the connection's pool) would hold
         * only the 101, for the whole call.
         */
        c->ssl->buffer = 0;
    }
#endif

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK
        || ngx_http_send_special(r, NGX_HTTP_FLUSH) == NGX_ERROR)
    {
        ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                "101 not sent");
        ngx_http_twirt_ws_read(ws);
        return NGX_DONE;
    }

    /* small frames, each due now: no Nagle delay */
    (void) ngx_tcp_nodelay(c);

    /* frames that came in the same packet as the handshake */

    if (r->header_in->pos < r->header_in->last) {
        (void) ngx_http_twirt_ws_feed(ws, r->header_in->pos,
                                      r->header_in->last - r->header_in->pos);
        r->header_in->pos = r->header_in->last;
    }

    ngx_http_twirt_ws_read(ws);

    return NGX_DONE;
}


static void
ngx_http_twirt_stream_read(ngx_http_request_t *r)
{
    ngx_http_twirt_stream_ctx_t  *sctx;

    sctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    if (sctx && sctx->ws) {
        ngx_http_twirt_ws_read(sctx->ws);
    }
}


static void
ngx_http_twirt_stream_write(ngx_http_request_t *r)
{
    ngx_http_twirt_stream_ctx_t  *sctx;

    sctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    if (sctx && sctx->ws) {
        ngx_http_twirt_ws_write(sctx->ws);
    }
}


/* after ", client: ...": the call's sids, or "-" before Twilio's start */

static u_char *
ngx_http_twirt_stream_log_handler(ngx_http_request_t *r,
    ngx_http_request_t *sr, u_char *buf, size_t len)
{
    ngx_http_twirt_stream_ctx_t  *sctx;

    static ngx_str_t  none = ngx_string("-");

    sctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    if (sctx == NULL || sctx->kind != NGX_HTTP_TWIRT_CTX_STREAM) {
        return buf;
    }

    return ngx_snprintf(buf, len, ", call: %V, stream: %V",
                        sctx->call_sid.len ? &sctx->call_sid : &none,
                        sctx->stream_sid.len ? &sctx->stream_sid : &none);
}


/* a token in a comma separated header value, any case */

static ngx_int_t
ngx_http_twirt_stream_token(ngx_str_t *value, const char *token)
{
    u_char  *p, *end, *start;
    size_t   len;

    len = ngx_strlen(token);
    p = value->data;
    end = p + value->len;

    while (p < end) {
        while (p < end && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        start = p;

        while (p < end && *p != ',' && *p != ' ' && *p != '\t') {
            p++;
        }

        if ((size_t) (p - start) == len
            && ngx_strncasecmp(start, (u_char *) token, len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}
