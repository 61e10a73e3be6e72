
/*
 * An outgoing connection, as both clients need it (the Realtime upstream
 * and the HTTP client): a URL parsed at configuration time, the TLS
 * context, then at run time resolve, connect (the next address on
 * failure) and TLS with verification (the chain, the host name, SNI).
 * The owner keeps the timer; this only says when the connection is
 * ready, or why there is none.
 */


#ifndef _NGX_HTTP_TWIRT_CONNECT_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CONNECT_H_INCLUDED_


#include "ngx_http_twirt.h"


/* what ngx_http_twirt_url_parse() accepts */
#define NGX_HTTP_TWIRT_URL_WS     0      /* ws:// or wss:// */
#define NGX_HTTP_TWIRT_URL_HTTP   1      /* http:// or https:// */


/* why there is no connection; NGX_HTTP_TWIRT_CONNECT_OK: there is one */
typedef enum {
    NGX_HTTP_TWIRT_CONNECT_OK = 0,
    NGX_HTTP_TWIRT_CONNECT_RESOLVE,
    NGX_HTTP_TWIRT_CONNECT_REFUSED,
    NGX_HTTP_TWIRT_CONNECT_TLS,
    NGX_HTTP_TWIRT_CONNECT_NO_MEMORY
} ngx_http_twirt_connect_e;


typedef struct ngx_http_twirt_connect_s  ngx_http_twirt_connect_t;

typedef void (*ngx_http_twirt_connect_pt)(ngx_http_twirt_connect_t *cn,
    ngx_http_twirt_connect_e rc);


struct ngx_http_twirt_connect_s {
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    ngx_http_twirt_url_t          *url;
    ngx_http_twirt_tls_t          *tls;
    ngx_resolver_t                *resolver;
    ngx_msec_t                     resolver_timeout;
    const char                    *peer;        /* log words: "upstream" */
    const char                    *action;      /* c->log->action after */

    ngx_peer_connection_t          pc;          /* pc.connection: ready */
    ngx_resolver_ctx_t            *resolving;
    ngx_addr_t                    *addrs;
    ngx_uint_t                     naddrs;
    ngx_uint_t                     next;

    const char                    *error;       /* its words */

    void                          *data;
    ngx_http_twirt_connect_pt      handler;

    unsigned                       cancelable:1; /* the resolver's timer */
};


ngx_http_twirt_url_t *ngx_http_twirt_url_parse(ngx_conf_t *cf,
    ngx_str_t *value, ngx_uint_t kind, const char *what);
ngx_int_t ngx_http_twirt_tls_init(ngx_conf_t *cf, ngx_http_twirt_tls_t *tls,
    ngx_http_twirt_url_t *url, ngx_str_t *trusted, const char *directives[2]);
ngx_int_t ngx_http_twirt_connect_start(ngx_http_twirt_connect_t *cn);
void ngx_http_twirt_connect_cancel(ngx_http_twirt_connect_t *cn);
ngx_int_t ngx_http_twirt_connect_send(ngx_connection_t *c, ngx_buf_t *b);
void ngx_http_twirt_connect_close(ngx_connection_t *c);
ngx_err_t ngx_http_twirt_connect_error(ngx_connection_t *c);
#if (NGX_HTTP_SSL)
ngx_int_t ngx_http_twirt_tls_ctx(ngx_conf_t *cf, ngx_ssl_t **sslp,
    ngx_uint_t verify, ngx_str_t *trusted, ngx_str_t *what,
    const char *directive);
ngx_int_t ngx_http_twirt_tls_start(ngx_connection_t *c, ngx_ssl_t *ssl,
    ngx_str_t *name, ngx_connection_handler_pt handler);
ngx_int_t ngx_http_twirt_tls_check(ngx_connection_t *c, ngx_str_t *host,
    ngx_uint_t ip, long *verify);
#endif


#endif /* _NGX_HTTP_TWIRT_CONNECT_H_INCLUDED_ */
