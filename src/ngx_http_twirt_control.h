
/*
 * Live call control through Redis: a message for a call reaches the
 * worker that holds it, on any node.
 *
 *   {prefix}call:{CallSid}     field "worker": "{node}:{pid}" of the
 *                              worker holding the call
 *   {prefix}control:{worker}   list: JSON {"call","action","message"?},
 *                              drained by that worker every 200 ms
 */


#ifndef _NGX_HTTP_TWIRT_CONTROL_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CONTROL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_TWIRT_CONTROL_MESSAGE_MAX  4096   /* bytes of "message" */


typedef enum {
    NGX_HTTP_TWIRT_CONTROL_QUEUED = 0,  /* pushed to the call's worker */
    NGX_HTTP_TWIRT_CONTROL_NOT_LIVE,    /* the call has ended */
    NGX_HTTP_TWIRT_CONTROL_UNKNOWN,     /* no record of the call */
    NGX_HTTP_TWIRT_CONTROL_FAILED       /* no answer in time, an error */
} ngx_http_twirt_control_result_e;


typedef void (*ngx_http_twirt_control_pt)(void *data,
    ngx_http_twirt_control_result_e result);


/* this worker's id, "{node}:{pid}" */
ngx_str_t *ngx_http_twirt_control_worker(void);

/*
 * Sends action ("hangup" or "machine") with message (NULL: none) to the
 * worker holding call_sid: one script reads the call record and, when the
 * call is live (it has a worker and has not ended), pushes the message
 * to that worker's list.  With a handler: NGX_OK, and the handler is
 * called later, exactly once, with the result, unless
 * ngx_http_twirt_control_cancel(*handle) is called first.  Without one
 * (NULL): NGX_OK once queued, the answer is not waited for.
 * NGX_DECLINED: Redis not configured or not connected now (no handler
 * call); NGX_ERROR: an invalid CallSid, action or message (not UTF-8,
 * longer than NGX_HTTP_TWIRT_CONTROL_MESSAGE_MAX), no memory.
 */
ngx_int_t ngx_http_twirt_control_send(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *call_sid, const char *action, ngx_str_t *message,
    ngx_http_twirt_control_pt handler, void *data, void **handle);

void ngx_http_twirt_control_cancel(void *handle);

const char *ngx_http_twirt_control_result_name(
    ngx_http_twirt_control_result_e result);


extern ngx_module_t  ngx_http_twirt_control_module;


#endif /* _NGX_HTTP_TWIRT_CONTROL_H_INCLUDED_ */
