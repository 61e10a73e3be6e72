
/*
 * The warm pool (twirt_openai_pool): per worker and per stream location,
 * Realtime connections already resolved, connected, through TLS and the
 * upgrade, waiting idle for a call.  Filled in the background at worker
 * start and after each take, at most the location's size (idle and
 * connecting together); an idle connection older than max_age, closed by
 * the server, or sent anything but its session.created is closed and
 * replaced, never given to a call.  A pool serves only its location's
 * calls: their URL, key and TLS settings are the ones it connected with.
 */


#ifndef _NGX_HTTP_TWIRT_UPSTREAM_POOL_H_INCLUDED_
#define _NGX_HTTP_TWIRT_UPSTREAM_POOL_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_upstream.h"


#define NGX_HTTP_TWIRT_POOL_MAX_SIZE     1024      /* per worker */
#define NGX_HTTP_TWIRT_POOL_MAX_AGE      300000    /* ms: the default */
#define NGX_HTTP_TWIRT_SESSION_LIMIT     3600000   /* ms: the API's */


/* why a warm connection was closed unused (the metric's label) */
typedef enum {
    NGX_HTTP_TWIRT_POOL_AGE = 0,       /* idle past max_age */
    NGX_HTTP_TWIRT_POOL_CLOSED,        /* the server closed it, or it failed */
    NGX_HTTP_TWIRT_POOL_MESSAGE,       /* a message other than
                                          session.created came */
    NGX_HTTP_TWIRT_POOL_EXIT           /* the worker quits: not counted */
} ngx_http_twirt_pool_discard_e;


extern const char  *ngx_http_twirt_pool_discard_labels[];


/* configuration time: a stream location with twirt_openai_pool */
ngx_int_t ngx_http_twirt_upstream_pool_add(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf);

/*
 * A call's upstream: NGX_OK and u->ws (u->pooled, u->created) when a
 * checked warm connection was there, NGX_DECLINED otherwise (connect as
 * without a pool).
 */
ngx_int_t ngx_http_twirt_upstream_pool_take(ngx_http_twirt_upstream_t *u);

ngx_int_t ngx_http_twirt_upstream_pool_init_process(ngx_cycle_t *cycle);
void ngx_http_twirt_upstream_pool_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TWIRT_UPSTREAM_POOL_H_INCLUDED_ */
