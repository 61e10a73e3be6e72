
/*
 * Recent call outcomes of this node: how each call ended, by CallSid, in
 * a shared zone, so that <Connect action> is answered right without Redis.
 */


#ifndef _NGX_HTTP_TWIRT_OUTCOME_H_INCLUDED_
#define _NGX_HTTP_TWIRT_OUTCOME_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_twirt_transfer.h"


/* Twilio's CallSids are 34 characters; a longer one is not kept */
#define NGX_HTTP_TWIRT_OUTCOME_SID_LEN   64
#define NGX_HTTP_TWIRT_OUTCOME_NAME_LEN  32


/* adds the zone; from the module's postconfiguration */
ngx_int_t ngx_http_twirt_outcome_init(ngx_conf_t *cf);

/*
 * A stream claims its CallSid when it starts.  NGX_OK: it is this
 * stream's; NGX_BUSY: another stream of this node holds the call live;
 * NGX_DECLINED: not kept (no zone, a CallSid too long).
 */
ngx_int_t ngx_http_twirt_outcome_claim(ngx_str_t *call_sid,
    ngx_str_t *stream_sid);

/*
 * Keeps how the call ended (end_name: the end kind's name), replacing an
 * earlier outcome of the same call, unless another stream claimed it;
 * the oldest entry makes room when the table is full.  An empty or too
 * long CallSid is not kept.
 */
void ngx_http_twirt_outcome_set(ngx_str_t *call_sid, ngx_str_t *stream_sid,
    ngx_uint_t failed, ngx_str_t *end_name);

/*
 * NGX_OK: *failed and end_name (copied to pool) are the call's outcome;
 * NGX_DECLINED: unknown here (never kept, forgotten, expired, or the
 * call still live);
 * NGX_ERROR: no memory.
 */
ngx_int_t ngx_http_twirt_outcome_get(ngx_str_t *call_sid, ngx_uint_t *failed,
    ngx_str_t *end_name, ngx_pool_t *pool);

/*
 * Keeps the transfer the call is ending with (before its outcome is
 * set), in the claiming stream's entry: target, caller ID, timeout and
 * the summary, bounded (NGX_HTTP_TWIRT_TRANSFER_*_LEN).
 */
void ngx_http_twirt_outcome_transfer(ngx_str_t *call_sid,
    ngx_str_t *stream_sid, ngx_http_twirt_transfer_t *t);

/*
 * NGX_OK: the call ended with a transfer, *t filled (copied to pool);
 * NGX_DECLINED: no transfer known here; NGX_ERROR: no memory.
 */
ngx_int_t ngx_http_twirt_outcome_get_transfer(ngx_str_t *call_sid,
    ngx_http_twirt_transfer_t *t, ngx_pool_t *pool);


extern ngx_module_t  ngx_http_twirt_outcome_module;


#endif /* _NGX_HTTP_TWIRT_OUTCOME_H_INCLUDED_ */
