
/*
 * An outgoing connection: the URL and the TLS context at configuration
 * time; resolve, connect (the next address when one fails) and TLS with
 * verification at run time.  nginx's verify callback accepts every
 * certificate: the chain and the host name are checked here, after the
 * handshake.
 */


#include <openssl/x509v3.h>

#include "ngx_http_twirt_connect.h"


static void ngx_http_twirt_connect_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_twirt_connect_next(ngx_http_twirt_connect_t *cn,
    const char *error);
static void ngx_http_twirt_connect_connected(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static void ngx_http_twirt_connect_ssl_init(ngx_http_twirt_connect_t *cn);
static void ngx_http_twirt_connect_ssl_done(ngx_connection_t *c);
#endif
static void ngx_http_twirt_connect_done(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc, const char *error);


static struct {
    const char  *prefix;
    ngx_uint_t   kind;
    ngx_uint_t   ssl;
    in_port_t    port;
} ngx_http_twirt_schemes[] = {
    { "wss://", NGX_HTTP_TWIRT_URL_WS, 1, 443 },
    { "ws://", NGX_HTTP_TWIRT_URL_WS, 0, 80 },
    { "https://", NGX_HTTP_TWIRT_URL_HTTP, 1, 443 },
    { "http://", NGX_HTTP_TWIRT_URL_HTTP, 0, 80 },
    { NULL, 0, 0, 0 }
};


/*
 * ws:// and wss:// (kind WS) or http:// and https:// (kind HTTP): host (a
 * name or an IP literal), port, path and query; what: the URL's name in
 * the error ("Realtime API URL")
 */

ngx_http_twirt_url_t *
ngx_http_twirt_url_parse(ngx_conf_t *cf, ngx_str_t *value, ngx_uint_t kind,
    const char *what)
{
    u_char                *p;
    size_t                 len;
    ngx_url_t              u;
    ngx_str_t              host;
    in_port_t              port;
    ngx_uint_t             i;
    ngx_http_twirt_url_t  *url;

    url = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_url_t));
    if (url == NULL) {
        return NULL;
    }

    url->url = *value;
    ngx_memzero(&u, sizeof(ngx_url_t));
    port = 0;

    for (i = 0; ngx_http_twirt_schemes[i].prefix; i++) {
        len = ngx_strlen(ngx_http_twirt_schemes[i].prefix);

        if (ngx_http_twirt_schemes[i].kind == kind && value->len > len
            && ngx_strncasecmp(value->data,
                               (u_char *) ngx_http_twirt_schemes[i].prefix,
                               len)
               == 0)
        {
            url->ssl = ngx_http_twirt_schemes[i].ssl;
            port = ngx_http_twirt_schemes[i].port;
            u.url.data = value->data + len;
            u.url.len = value->len - len;
            break;
        }
    }

    if (port == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid %s \"%V\": it must start with %s", what,
                           value, kind == NGX_HTTP_TWIRT_URL_WS
                                  ? "\"ws://\" or \"wss://\""
                                  : "\"http://\" or \"https://\"");
        return NULL;
    }

    u.default_port = port;
    u.uri_part = 1;
    u.no_resolve = 1;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.host.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %s \"%V\": %s",
                           what, value, u.err ? u.err : "no host");
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


/*
 * Configuration time: the TLS context of a URL (tls->verify is set by the
 * caller), and a host name needs a resolver.  directives: the names of
 * the URL's directive and of the verify directive, for the messages.
 */

ngx_int_t
ngx_http_twirt_tls_init(ngx_conf_t *cf, ngx_http_twirt_tls_t *tls,
    ngx_http_twirt_url_t *url, ngx_str_t *trusted, const char *directives[2])
{
    ngx_http_core_loc_conf_t  *clcf;

    if (url->addr == NULL) {
        clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

        if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "twirt: \"%s\" host \"%V\" needs a "
                               "\"resolver\" (or use an IP address)",
                               directives[0], &url->host);
            return NGX_ERROR;
        }
    }

    if (!url->ssl) {
        return NGX_OK;
    }

#if (NGX_HTTP_SSL)

    if (tls->ssl) {
        return NGX_OK;
    }

    return ngx_http_twirt_tls_ctx(cf, &tls->ssl, tls->verify, trusted,
                                  &url->url, directives[1]);

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "twirt: \"%V\" needs nginx built with SSL", &url->url);
    return NGX_ERROR;

#endif
}


#if (NGX_HTTP_SSL)

/*
 * Configuration time: a TLS client context (TLS 1.2 and 1.3) that
 * verifies the server's chain against the CAs in "trusted" unless verify
 * is off, which is warned about: for the Realtime API, the REST API and
 * Redis alike.  what: the address, directive: the one that turns
 * verification off, for the messages.
 */

ngx_int_t
ngx_http_twirt_tls_ctx(ngx_conf_t *cf, ngx_ssl_t **sslp, ngx_uint_t verify,
    ngx_str_t *trusted, ngx_str_t *what, const char *directive)
{
    ngx_ssl_t           *ssl;
    ngx_pool_cleanup_t  *cln;

    ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (ssl == NULL) {
        return NGX_ERROR;
    }

    ssl->log = cf->log;

    if (ngx_ssl_create(ssl, NGX_SSL_TLSv1_2|NGX_SSL_TLSv1_3, NULL) != NGX_OK) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(ssl);
        return NGX_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = ssl;

    *sslp = ssl;

    if (!verify) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "twirt: TLS certificate verification of \"%V\" "
                           "is off (%s off)", what, directive);
        return NGX_OK;
    }

    return ngx_ssl_trusted_certificate(cf, ssl, trusted, 8);
}

#endif


/* NGX_ERROR: nothing started, nothing is called back */

ngx_int_t
ngx_http_twirt_connect_start(ngx_http_twirt_connect_t *cn)
{
    ngx_resolver_ctx_t    *ctx, temp;
    ngx_http_twirt_url_t  *url;

    url = cn->url;

    if (url->addr) {
        cn->addrs = url->addr;
        cn->naddrs = 1;
        ngx_http_twirt_connect_next(cn, NULL);
        return NGX_OK;
    }

    temp.name = url->host;

    ctx = ngx_resolve_start(cn->resolver, &temp);
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                      "twirt: no resolver defined to resolve \"%V\"",
                      &url->host);
        return NGX_ERROR;
    }

    ctx->name = url->host;
    ctx->handler = ngx_http_twirt_connect_resolved;
    ctx->data = cn;
    ctx->timeout = cn->resolver_timeout;
    ctx->cancelable = cn->cancelable;

    cn->resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        cn->resolving = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_connect_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_http_twirt_connect_t *cn = ctx->data;

    socklen_t         socklen;
    ngx_uint_t        i;
    struct sockaddr  *sockaddr;

    cn->resolving = NULL;

    if (ctx->state) {
        ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                      "twirt: %s \"%V\" could not be resolved (%i: %s)",
                      cn->peer, &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));

        ngx_resolve_name_done(ctx);
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_RESOLVE,
                                    "not resolved");
        return;
    }

    cn->addrs = ngx_pcalloc(cn->pool, ctx->naddrs * sizeof(ngx_addr_t));
    if (cn->addrs == NULL) {
        ngx_resolve_name_done(ctx);
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_NO_MEMORY,
                                    "out of memory");
        return;
    }

    for (i = 0; i < ctx->naddrs; i++) {
        socklen = ctx->addrs[i].socklen;

        sockaddr = ngx_palloc(cn->pool, socklen);
        if (sockaddr == NULL) {
            ngx_resolve_name_done(ctx);
            ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_NO_MEMORY,
                                        "out of memory");
            return;
        }

        ngx_memcpy(sockaddr, ctx->addrs[i].sockaddr, socklen);
        ngx_inet_set_port(sockaddr, cn->url->port);

        cn->addrs[i].sockaddr = sockaddr;
        cn->addrs[i].socklen = socklen;
        cn->addrs[i].name = cn->url->host;
    }

    cn->naddrs = ctx->naddrs;

    ngx_resolve_name_done(ctx);

    ngx_http_twirt_connect_next(cn, NULL);
}


/* connects to the next address; error: why the previous one failed */

static void
ngx_http_twirt_connect_next(ngx_http_twirt_connect_t *cn, const char *error)
{
    ngx_int_t          rc;
    ngx_addr_t        *addr;
    ngx_connection_t  *c;

    if (error) {
        ngx_log_error(NGX_LOG_WARN, cn->log, 0,
                      "twirt: %s \"%V\" address %ui of %ui: %s", cn->peer,
                      &cn->url->host, cn->next, cn->naddrs, error);

        if (cn->pc.connection) {
            ngx_http_twirt_connect_close(cn->pc.connection);
            cn->pc.connection = NULL;
        }
    }

    if (cn->next == cn->naddrs) {
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_REFUSED,
                                    error ? error : "no address");
        return;
    }

    addr = &cn->addrs[cn->next++];

    ngx_memzero(&cn->pc, sizeof(ngx_peer_connection_t));

    cn->pc.sockaddr = addr->sockaddr;
    cn->pc.socklen = addr->socklen;
    cn->pc.name = &cn->url->host;
    cn->pc.get = ngx_event_get_peer;
    cn->pc.log = cn->log;
    cn->pc.log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(&cn->pc);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        if (cn->pc.connection) {
            ngx_close_connection(cn->pc.connection);
            cn->pc.connection = NULL;
        }

        ngx_http_twirt_connect_next(cn, "connect failed");
        return;
    }

    c = cn->pc.connection;

    c->pool = ngx_create_pool(1024, cn->log);
    if (c->pool == NULL) {
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_NO_MEMORY,
                                    "out of memory");
        return;
    }

    c->data = cn;
    c->log = cn->log;
    c->read->log = cn->log;
    c->write->log = cn->log;
    c->read->handler = ngx_http_twirt_connect_connected;
    c->write->handler = ngx_http_twirt_connect_connected;

    if (rc == NGX_OK) {
        ngx_http_twirt_connect_connected(c->write);
    }
}


static void
ngx_http_twirt_connect_connected(ngx_event_t *ev)
{
    ngx_err_t                  err;
    ngx_connection_t          *c;
    ngx_http_twirt_connect_t  *cn;

    c = ev->data;
    cn = c->data;

    err = ngx_http_twirt_connect_error(c);

    if (err) {
        ngx_log_error(NGX_LOG_ERR, cn->log, err, "twirt: %s connect() to "
                      "\"%V\" failed", cn->peer, &cn->url->url);
        ngx_http_twirt_connect_next(cn, "connection refused");
        return;
    }

    /* small messages, each due now: no Nagle delay */
    (void) ngx_tcp_nodelay(c);

#if (NGX_HTTP_SSL)
    if (cn->url->ssl) {
        ngx_http_twirt_connect_ssl_init(cn);
        return;
    }
#endif

    ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_OK, NULL);
}


/* how a non-blocking connect() ended: 0, connected, or its error */

ngx_err_t
ngx_http_twirt_connect_error(ngx_connection_t *c)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    return err;
}


#if (NGX_HTTP_SSL)

static void
ngx_http_twirt_connect_ssl_init(ngx_http_twirt_connect_t *cn)
{
    ngx_int_t              rc;
    ngx_http_twirt_url_t  *url;

    url = cn->url;

    rc = ngx_http_twirt_tls_start(cn->pc.connection, cn->tls->ssl,
                                  url->addr ? NULL : &url->host,
                                  ngx_http_twirt_connect_ssl_done);

    if (rc == NGX_ERROR) {
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_TLS,
                                    "TLS setup failed");
        return;
    }

    if (rc == NGX_OK) {
        ngx_http_twirt_connect_ssl_done(cn->pc.connection);
    }
}


/*
 * TLS on a connected c: SNI with name (NULL: none; NUL-terminated), the
 * handshake.  NGX_AGAIN: handler is called when it ends; NGX_OK: it ended
 * now, c->ssl->handshaked says how; NGX_ERROR: TLS could not be set up.
 */

ngx_int_t
ngx_http_twirt_tls_start(ngx_connection_t *c, ngx_ssl_t *ssl, ngx_str_t *name,
    ngx_connection_handler_pt handler)
{
    ngx_int_t  rc;

    if (ngx_ssl_create_connection(ssl, c, NGX_SSL_BUFFER|NGX_SSL_CLIENT)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the output may move while a write is pending */
    SSL_set_mode(c->ssl->connection, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    if (name
        && SSL_set_tlsext_host_name(c->ssl->connection, (char *) name->data)
           == 0)
    {
        ngx_ssl_error(NGX_LOG_ERR, c->log, 0,
                      "twirt: SSL_set_tlsext_host_name(\"%V\") failed",
                      name);
        return NGX_ERROR;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = handler;
        return NGX_AGAIN;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_connect_ssl_done(ngx_connection_t *c)
{
    long                       verify;
    ngx_int_t                  rc;
    ngx_http_twirt_url_t      *url;
    ngx_http_twirt_connect_t  *cn;

    cn = c->data;
    url = cn->url;

    if (!c->ssl->handshaked) {
        ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_TLS,
                                    "TLS handshake failed");
        return;
    }

    if (cn->tls->verify) {
        rc = ngx_http_twirt_tls_check(c, &url->host, url->addr != NULL,
                                      &verify);

        if (rc == NGX_DECLINED) {
            ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                          "twirt: %s \"%V\" certificate verify failed: "
                          "(%l:%s)", cn->peer, &url->host, verify,
                          X509_verify_cert_error_string(verify));
            ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_TLS,
                                        "certificate not trusted");
            return;
        }

        if (rc != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, cn->log, 0,
                          "twirt: %s certificate does not match \"%V\"",
                          cn->peer, &url->host);
            ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_TLS,
                                        "certificate host mismatch");
            return;
        }
    }

    ngx_http_twirt_connect_done(cn, NGX_HTTP_TWIRT_CONNECT_OK, NULL);
}


/*
 * After a handshake: the chain (nginx's verify callback let everything
 * through) and the name, a DNS name or an IP literal (ip).  NGX_OK;
 * NGX_DECLINED: not trusted, *verify says why; NGX_ABORT: another name.
 */

ngx_int_t
ngx_http_twirt_tls_check(ngx_connection_t *c, ngx_str_t *host, ngx_uint_t ip,
    long *verify)
{
    int    rc;
    X509  *cert;

    *verify = SSL_get_verify_result(c->ssl->connection);

    if (*verify != X509_V_OK) {
        return NGX_DECLINED;
    }

    if (!ip) {
        return (ngx_ssl_check_host(c, host) == NGX_OK) ? NGX_OK : NGX_ABORT;
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ABORT;
    }

    rc = X509_check_ip_asc(cert, (char *) host->data, 0);

    X509_free(cert);

    return (rc == 1) ? NGX_OK : NGX_ABORT;
}

#endif


/*
 * The end, either way.  On a failure the connection is closed first; on
 * success cn->pc.connection is the owner's, with c->data still cn.
 */

static void
ngx_http_twirt_connect_done(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc, const char *error)
{
    if (rc != NGX_HTTP_TWIRT_CONNECT_OK) {
        ngx_http_twirt_connect_cancel(cn);

    } else if (cn->action) {
        cn->pc.connection->log->action = (char *) cn->action;
    }

    cn->error = error;
    cn->handler(cn, rc);
}


/* the owner gives up: nothing more is called back */

void
ngx_http_twirt_connect_cancel(ngx_http_twirt_connect_t *cn)
{
    if (cn->resolving) {
        ngx_resolve_name_done(cn->resolving);
        cn->resolving = NULL;
    }

    if (cn->pc.connection) {
        ngx_http_twirt_connect_close(cn->pc.connection);
        cn->pc.connection = NULL;
    }
}


/*
 * Writes what is left of b: NGX_OK when all is written, NGX_AGAIN when
 * the write event will come back, NGX_ERROR when the connection failed.
 */

ngx_int_t
ngx_http_twirt_connect_send(ngx_connection_t *c, ngx_buf_t *b)
{
    ssize_t  n;

    while (b->pos < b->last) {
        n = c->send(c, b->pos, b->last - b->pos);

        if (n == NGX_ERROR) {
            return NGX_ERROR;
        }

        if (n == NGX_AGAIN) {
            return (ngx_handle_write_event(c->write, 0) == NGX_OK)
                   ? NGX_AGAIN : NGX_ERROR;
        }

        b->pos += n;
    }

    return NGX_OK;
}


/* a connection we made, with its pool */

void
ngx_http_twirt_connect_close(ngx_connection_t *c)
{
    ngx_pool_t  *pool;

#if (NGX_SSL)
    if (c->ssl) {
        c->ssl->no_wait_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    pool = c->pool;
    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }
}
