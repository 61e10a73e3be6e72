
/*
 * twirt: hiredis on nginx's event loop, as hiredis's adapters/ do it for
 * other loops.  One nginx connection per hiredis async context; nothing
 * here knows about twirt's commands, queue or configuration.
 */


#ifndef _NGX_HTTP_TWIRT_REDIS_ADAPTER_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REDIS_ADAPTER_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <hiredis/async.h>


/*
 * Called once per context from hiredis's cleanup hook, when the context
 * is being freed (by redisAsyncFree() or after an error): the pending
 * callbacks have had their NULL replies, ac->err says why, ac is still
 * valid and must not be freed here.
 */
typedef void (*ngx_http_twirt_redis_adapter_closed_pt)(void *data,
    redisAsyncContext *ac);


/*
 * Puts the context's socket on nginx's event loop.  NGX_ERROR: no
 * connection or no memory; the context is untouched and the caller frees
 * it.
 */
ngx_int_t ngx_http_twirt_redis_adapter_attach(redisAsyncContext *ac,
    ngx_log_t *log, ngx_http_twirt_redis_adapter_closed_pt closed,
    void *data);


#endif /* _NGX_HTTP_TWIRT_REDIS_ADAPTER_H_INCLUDED_ */
