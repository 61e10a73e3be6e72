
/*
 * The Realtime upstream client: resolves, connects, does TLS with
 * verification and the WebSocket upgrade, then hands over a client-side
 * WebSocket connection.  One timer covers all of it.
 */


#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_upstream.h"


#define NGX_HTTP_TWIRT_UPSTREAM_RESPONSE  4096


static void ngx_http_twirt_upstream_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_twirt_upstream_next(ngx_http_twirt_upstream_t *u,
    const char *error);
static void ngx_http_twirt_upstream_connected(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static void ngx_http_twirt_upstream_ssl_init(ngx_http_twirt_upstream_t *u);
static void ngx_http_twirt_upstream_ssl_done(ngx_connection_t *c);
#endif
static ngx_int_t ngx_http_twirt_upstream_request(
    ngx_http_twirt_upstream_t *u);
static void ngx_http_twirt_upstream_send(ngx_event_t *ev);
static void ngx_http_twirt_upstream_recv(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_upstream_process(
    ngx_http_twirt_upstream_t *u);
static ngx_int_t ngx_http_twirt_upstream_header(ngx_str_t *headers,
    const char *name, ngx_str_t *value);
static void ngx_http_twirt_upstream_timeout(ngx_event_t *ev);
static void ngx_http_twirt_upstream_fail(ngx_http_twirt_upstream_t *u,
    ngx_http_twirt_end_e end, const char *error);
static void ngx_http_twirt_upstream_close(ngx_http_twirt_upstream_t *u);
static void ngx_http_twirt_upstream_ws_read(ngx_event_t *ev);
static void ngx_http_twirt_upstream_ws_write(ngx_event_t *ev);


/* ws:// or wss://, host (a name or an IP literal), port, path, query */

ngx_http_twirt_url_t *
ngx_http_twirt_upstream_parse_url(ngx_conf_t *cf, ngx_str_t *value)
{
    u_char                *p;
    ngx_url_t              u;
    ngx_str_t              host;
    in_port_t              port;
    ngx_http_twirt_url_t  *url;

    url = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_url_t));
    if (url == NULL) {
        return NULL;
    }

    url->url = *value;
    ngx_memzero(&u, sizeof(ngx_url_t));

    if (value->len > 6 && ngx_strncasecmp(value->data, (u_char *) "wss://", 6)
                          == 0)
    {
        url->ssl = 1;
        port = 443;
        u.url.data = value->data + 6;
        u.url.len = value->len - 6;

    } else if (value->len > 5
               && ngx_strncasecmp(value->data, (u_char *) "ws://", 5) == 0)
    {
        port = 80;
        u.url.data = value->data + 5;
        u.url.len = value->len - 5;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid Realtime API URL \"%V\": it must start "
                           "with \"ws://\" or \"wss://\"", value);
        return NULL;
    }

    u.default_port = port;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid Realtime API URL \"%V\": %s", value,
                           u.err ? u.err : "no host");
        return NULL;
    }

    url->port = u.port ? u.port : port;

    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    url->host.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (url->host.data == NULL) {
        return NULL;
    }

    ngx_memcpy(url->host.data, host.data, host.len);
    url->host.data[host.len] = '\0';
    url->host.len = host.len;

    p = ngx_pnalloc(cf->pool, u.host.len + sizeof(":65535"));
    if (p == NULL) {
        return NULL;
    }

    url->host_header.data = p;
    p = ngx_cpymem(p, u.host.data, u.host.len);

    if (url->port != port) {
        p = ngx_sprintf(p, ":%d", (int) url->port);
    }

    url->host_header.len = p - url->host_header.data;

    if (u.uri.len == 0 || u.uri.data[0] != '/') {
        p = ngx_pnalloc(cf->pool, u.uri.len + 1);
        if (p == NULL) {
            return NULL;
        }

        p[0] = '/';
        ngx_memcpy(p + 1, u.uri.data, u.uri.len);
        url->uri.data = p;
        url->uri.len = u.uri.len + 1;

    } else {
        url->uri = u.uri;
    }

    url->addr = ngx_pcalloc(cf->pool, sizeof(ngx_addr_t));
    if (url->addr == NULL) {
        return NULL;
    }

    if (ngx_parse_addr(cf->pool, url->addr, url->host.data, url->host.len)
        == NGX_OK)
    {
        ngx_inet_set_port(url->addr->sockaddr, url->port);
        url->addr->name = url->host_header;

    } else {
        url->addr = NULL;
    }

    return url;
}


/* configuration time: the TLS context and what the URL needs */

ngx_int_t
ngx_http_twirt_upstream_init_conf(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf)
{
    ngx_http_core_loc_conf_t  *clcf;
#if (NGX_HTTP_SSL)
    ngx_pool_cleanup_t        *cln;
#endif

    if (conf->openai_url->addr == NULL) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "twirt: \"twirt_openai_url\" host \"%V\" "
                               "needs a \"resolver\" (or use an IP address)",
                               &conf->openai_url->host);
            return NGX_ERROR;
        }
    }

    if (!conf->openai_url->ssl) {
        return NGX_OK;
    }

#if (NGX_HTTP_SSL)

    conf->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (conf->ssl == NULL) {
        return NGX_ERROR;
    }

    conf->ssl->log = cf->log;

    if (ngx_ssl_create(conf->ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(conf->ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = conf->ssl;

    if (!conf->ssl_verify) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "twirt: TLS certificate verification of \"%V\" "
                           "is off (twirt_openai_ssl_verify off)",
                           &conf->openai_url->url);
        return NGX_OK;
    }

    if (ngx_ssl_trusted_certificate(cf, conf->ssl,
                                    &conf->ssl_trusted_certificate, 8)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "twirt: \"wss://\" needs nginx built with SSL");
    return NGX_ERROR;

#endif
}


ngx_int_t
ngx_http_twirt_upstream_connect(ngx_http_twirt_upstream_t *u)
{
    ngx_resolver_ctx_t    *ctx, temp;
    ngx_http_twirt_url_t  *url;

    url = u->conf->openai_url;

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

    ngx_add_timer(&u->timer, u->conf->connect_timeout);

    if (url->addr) {
        u->addrs = url->addr;
        u->naddrs = 1;
        ngx_http_twirt_upstream_next(u, NULL);
        return NGX_OK;
    }

    temp.name = url->host;

    ctx = ngx_resolve_start(u->resolver, &temp);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "twirt: no resolver defined to resolve \"%V\"",
                      &url->host);
        return NGX_ERROR;
    }

    ctx->name = url->host;
    ctx->handler = ngx_http_twirt_upstream_resolved;
    ctx->data = u;
    ctx->timeout = u->resolver_timeout;

    u->resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        u->resolving = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_twirt_upstream_t *u = ctx->data;

    socklen_t              socklen;
    ngx_uint_t             i;
    struct sockaddr       *sockaddr;
    ngx_http_twirt_url_t  *url;

    url = u->conf->openai_url;
    u->resolving = NULL;

    if (ctx->state) {
        ngx_log_error(NGX_LOG_ERR, u->log, 0,
                      "twirt: upstream \"%V\" could not be resolved "
                      "(%i: %s)", &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));

        ngx_resolve_name_done(ctx);
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     "upstream not resolved");
        return;
    }

    u->addrs = ngx_pcalloc(u->pool, ctx->naddrs * sizeof(ngx_addr_t));
    if (u->addrs == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        socklen = ctx->addrs[i].socklen;

        sockaddr = ngx_palloc(u->pool, socklen);
        if (sockaddr == NULL) {
            ngx_resolve_name_done(ctx);
            ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                         "out of memory");
            return;
        }

        ngx_memcpy(sockaddr, ctx->addrs[i].sockaddr, socklen);
        ngx_inet_set_port(sockaddr, url->port);

        u->addrs[i].sockaddr = sockaddr;
        u->addrs[i].socklen = socklen;
        u->addrs[i].name = url->host;
    }

    u->naddrs = ctx->naddrs;

    ngx_resolve_name_done(ctx);

    ngx_http_twirt_upstream_next(u, NULL);
}


/* connects to the next address; error: why the previous one failed */

static void
ngx_http_twirt_upstream_next(ngx_http_twirt_upstream_t *u, const char *error)
{
    ngx_int_t          rc;
    ngx_addr_t        *addr;
    ngx_connection_t  *c;

    if (error) {
        ngx_log_error(NGX_LOG_WARN, u->log, 0,
                      "twirt: upstream \"%V\" address %ui of %ui: %s",
                      &u->conf->openai_url->host, u->next, u->naddrs, error);
        ngx_http_twirt_upstream_close(u);
    }

    if (u->next == u->naddrs) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                     error ? error : "no address");
        return;
    }

    addr = &u->addrs[u->next++];

    ngx_memzero(&u->peer, sizeof(ngx_peer_connection_t));

    u->peer.sockaddr = addr->sockaddr;
    u->peer.socklen = addr->socklen;
    u->peer.name = &u->conf->openai_url->host;
    u->peer.get = ngx_event_get_peer;
    u->peer.log = u->log;
    u->peer.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&u->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (u->peer.connection) {
            ngx_close_connection(u->peer.connection);
            u->peer.connection = NULL;
        }

        ngx_http_twirt_upstream_next(u, "connect failed");
        return;
    }

    c = u->peer.connection;

    c->pool = ngx_create_pool(1024, u->log);
    if (c->pool == NULL) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return;
    }

    c->data = u;
    c->log = u->log;
    c->read->log = u->log;
    c->write->log = u->log;
    c->read->handler = ngx_http_twirt_upstream_connected;
    c->write->handler = ngx_http_twirt_upstream_connected;

    if (rc == NGX_OK) {
        ngx_http_twirt_upstream_connected(c->write);
    }
}


static void
ngx_http_twirt_upstream_connected(ngx_event_t *ev)
{
    int                         err;
    socklen_t                   len;
    ngx_connection_t           *c;
    ngx_http_twirt_upstream_t  *u;

    c = ev->data;
    u = c->data;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_log_error(NGX_LOG_ERR, u->log, err, "twirt: upstream connect() "
                      "to \"%V\" failed", &u->conf->openai_url->url);
        ngx_http_twirt_upstream_next(u, "connection refused");
        return;
    }

    /* small frames, each due now: no Nagle delay */
    (void) ngx_tcp_nodelay(c);

#if (NGX_HTTP_SSL)
    if (u->conf->openai_url->ssl) {
        ngx_http_twirt_upstream_ssl_init(u);
        return;
    }
#endif

    if (ngx_http_twirt_upstream_request(u) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return;
    }

    ngx_http_twirt_upstream_send(c->write);
}


#if (NGX_HTTP_SSL)

static void
ngx_http_twirt_upstream_ssl_init(ngx_http_twirt_upstream_t *u)
{
    ngx_int_t              rc;
    ngx_connection_t      *c;
    ngx_http_twirt_url_t  *url;

    c = u->peer.connection;
    url = u->conf->openai_url;

    if (ngx_ssl_create_connection(u->conf->ssl, c,
                                  NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                     "TLS setup failed");
        return;
    }

    /* the output queue may move while a write is pending */
    SSL_set_mode(c->ssl->connection, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (url->addr == NULL) {
        if (SSL_set_tlsext_host_name(c->ssl->connection,
                                     (char *) url->host.data)
            == 0)
        {
            ngx_ssl_error(NGX_LOG_ERR, u->log, 0,
                          "twirt: SSL_set_tlsext_host_name(\"%V\") failed",
                          &url->host);
            ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                         "TLS setup failed");
            return;
        }
    }

    c->log->action = "TLS handshake with the Realtime API";

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_twirt_upstream_ssl_done;
        return;
    }

    ngx_http_twirt_upstream_ssl_done(c);
}


static void
ngx_http_twirt_upstream_ssl_done(ngx_connection_t *c)
{
    long                        rc;
    X509                       *cert;
    ngx_http_twirt_url_t       *url;
    ngx_http_twirt_upstream_t  *u;

    u = c->data;
    url = u->conf->openai_url;

    if (!c->ssl->handshaked) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                     "TLS handshake failed");
        return;
    }

    if (u->conf->ssl_verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "twirt: upstream \"%V\" certificate verify "
                          "failed: (%l:%s)", &url->host, rc,
                          X509_verify_cert_error_string(rc));
            ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                         "certificate not trusted");
            return;
        }

        if (url->addr) {
            cert = SSL_get_peer_certificate(c->ssl->connection);
            rc = cert ? X509_check_ip_asc(cert, (char *) url->host.data, 0)
                      : 0;
            if (cert) {
                X509_free(cert);
            }

        } else {
            rc = (ngx_ssl_check_host(c, &url->host) == NGX_OK);
        }

        if (rc != 1) {
            ngx_log_error(NGX_LOG_ERR, u->log, 0,
                          "twirt: upstream certificate does not match "
                          "\"%V\"", &url->host);
            ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
                                         "certificate host mismatch");
            return;
        }
    }

    c->log->action = "upgrading to a WebSocket";

    if (ngx_http_twirt_upstream_request(u) != NGX_OK) {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                     "out of memory");
        return;
    }

    c->read->handler = ngx_http_twirt_upstream_recv;
    c->write->handler = ngx_http_twirt_upstream_send;

    ngx_http_twirt_upstream_send(c->write);
}

#endif


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

    u->peer.connection->read->handler = ngx_http_twirt_upstream_recv;
    u->peer.connection->write->handler = ngx_http_twirt_upstream_send;

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_send(ngx_event_t *ev)
{
    ssize_t                     n;
    ngx_buf_t                  *b;
    ngx_connection_t           *c;
    ngx_http_twirt_upstream_t  *u;

    c = ev->data;
    u = c->data;
    b = u->request;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_ERROR) {
            ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                         "upstream closed the connection");
            return;
        }

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_http_twirt_upstream_fail(u,
                    NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT, "event failed");
            }

            return;
        }

        b->pos += n;
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
    c = u->peer.connection;

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

        if (ngx_http_twirt_upstream_header(&headers, "Content-Length",
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

    if (ngx_http_twirt_upstream_header(&headers, "Sec-WebSocket-Extensions",
                                       &value)
        == NGX_OK)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 with an extension not offered");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_upstream_header(&headers, "Sec-WebSocket-Protocol",
                                       &value)
        == NGX_OK)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 with a subprotocol not offered");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_upstream_header(&headers, "Upgrade", &value) != NGX_OK
        || value.len != 9
        || ngx_strncasecmp(value.data, (u_char *) "websocket", 9) != 0)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 without Upgrade: websocket");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_upstream_header(&headers, "Connection", &value)
        != NGX_OK
        || ngx_strlcasestrn(value.data, value.data + value.len,
                            (u_char *) "upgrade", 7 - 1)
           == NULL)
    {
        ngx_http_twirt_upstream_fail(u, NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,
                                     "101 without Connection: Upgrade");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_upstream_header(&headers, "Sec-WebSocket-Accept",
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
    body = ngx_min((size_t) (b->last - p), u->conf->upstream_ws.buffer_size);
    ws->in_last = ngx_cpymem(ws->in, p, body);

    c->data = ws;
    c->log->action = "talking to the Realtime API";
    c->read->handler = ngx_http_twirt_upstream_ws_read;
    c->write->handler = ngx_http_twirt_upstream_ws_write;

    if (u->timer.timer_set) {
        ngx_del_timer(&u->timer);
    }

    u->peer.connection = NULL;
    u->ws = ws;
    u->done = 1;

    u->handler(u, NGX_OK);

    return NGX_OK;
}


/* a header of the block, or NGX_DECLINED */

static ngx_int_t
ngx_http_twirt_upstream_header(ngx_str_t *headers, const char *name,
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

    if (u->resolving) {
        ngx_resolve_name_done(u->resolving);
        u->resolving = NULL;
    }

    ngx_http_twirt_upstream_close(u);
}


static void
ngx_http_twirt_upstream_close(ngx_http_twirt_upstream_t *u)
{
    ngx_connection_t  *c;

    c = u->peer.connection;

    if (c) {
        u->peer.connection = NULL;
        ngx_http_twirt_ws_close_connection(c);
    }
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
