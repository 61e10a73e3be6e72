
/*
 * The Realtime upstream client: resolves, connects, does TLS with
 * verification and the WebSocket upgrade, then hands over a client-side
 * WebSocket connection.
 */


#ifndef _NGX_HTTP_TWIRT_UPSTREAM_H_INCLUDED_
#define _NGX_HTTP_TWIRT_UPSTREAM_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_connect.h"
#include "ngx_http_twirt_ws.h"


typedef struct ngx_http_twirt_upstream_s  ngx_http_twirt_upstream_t;

typedef void (*ngx_http_twirt_upstream_pt)(ngx_http_twirt_upstream_t *u,
    ngx_int_t rc);


struct ngx_http_twirt_upstream_s {
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    ngx_http_twirt_loc_conf_t     *conf;
    ngx_resolver_t                *resolver;
    ngx_msec_t                     resolver_timeout;

    ngx_http_twirt_connect_t       connect;

    ngx_event_t                    timer;
    ngx_buf_t                     *request;
    ngx_buf_t                     *response;
    u_char                         accept[NGX_HTTP_TWIRT_WS_ACCEPT_LEN];

    ngx_str_t                      key;            /* never logged */
    ngx_msec_t                     started;
    ngx_msec_t                     age;            /* of a pooled one when
                                                      taken: its session
                                                      began then */

    /* the result: the connection, or why there is none */
    ngx_http_twirt_ws_t           *ws;
    ngx_str_t                      created;        /* a session.created
                                                      that came while the
                                                      connection was pooled */
    ngx_uint_t                     status;
    ngx_http_twirt_end_e           end;
    const char                    *error;          /* its words */

    void                          *data;
    ngx_http_twirt_upstream_pt     handler;
    ngx_http_twirt_ws_message_pt   on_message;
    ngx_http_twirt_ws_closed_pt    on_closed;

    unsigned                       done:1;
    unsigned                       pooled:1;       /* from the warm pool */
    unsigned                       cancelable:1;   /* its timers do not keep
                                                      a quitting worker */
};


ngx_int_t ngx_http_twirt_upstream_connect(ngx_http_twirt_upstream_t *u);
void ngx_http_twirt_upstream_cancel(ngx_http_twirt_upstream_t *u);
void ngx_http_twirt_upstream_handlers(ngx_connection_t *c);


#endif /* _NGX_HTTP_TWIRT_UPSTREAM_H_INCLUDED_ */
