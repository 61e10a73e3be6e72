
/*
 * The call record in Redis (BRIEF.md "Redis"): the call hash, its events
 * stream, the live channel, the set of active calls; and agent profiles.
 * Never in the audio path: everything goes through the Redis module's
 * bounded queue.
 */


#ifndef _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_
#define _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"
#include "ngx_http_twirt_call.h"


void ngx_http_twirt_record_start(ngx_http_twirt_call_t *call);
void ngx_http_twirt_record_event(ngx_http_twirt_call_t *call, json_t *ev,
    const char *text);
void ngx_http_twirt_record_end(ngx_http_twirt_call_t *call);
typedef void (*ngx_http_twirt_record_profile_pt)(void *data, json_t *profile);

ngx_int_t ngx_http_twirt_record_profile(ngx_http_twirt_call_t *call,
    ngx_str_t *agent, ngx_http_twirt_record_profile_pt handler);
void ngx_http_twirt_record_cancel(ngx_http_twirt_call_t *call);
ngx_int_t ngx_http_twirt_record_call_key(ngx_pool_t *pool, ngx_str_t *sid,
    const char *suffix, ngx_str_t *key);


#endif /* _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_ */
