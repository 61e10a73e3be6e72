
/*
 * A call: the Twilio Media Stream and (with the upstream client) the
 * Realtime session, owned together; the one place that knows both
 * protocols.
 */


#ifndef _NGX_HTTP_TWIRT_CALL_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CALL_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"
#include "ngx_http_twirt_ws.h"


typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_log_t                  *log_connection;
    ngx_log_handler_pt          log_handler;   /* the connection's own */
    void                       *log_data;
    ngx_http_twirt_loc_conf_t  *conf;

    ngx_http_twirt_ws_t        *twilio;

    ngx_str_t                   call_sid;
    ngx_str_t                   stream_sid;
    ngx_str_t                   account_sid;
    ngx_str_t                   addr_text;
    json_t                     *parameters;

    ngx_msec_t                  upgraded;      /* ngx_current_msec */
    ngx_event_t                 duration_timer;

    ngx_uint_t                  media_in;
    ngx_uint_t                  marks_in;
    ngx_uint_t                  dtmf_in;
    ngx_uint_t                  invalid_in;

    const char                 *end_reason;

    unsigned                    started:1;
    unsigned                    stopped:1;
    unsigned                    ending:1;
} ngx_http_twirt_call_t;


ngx_http_twirt_call_t *ngx_http_twirt_call_create(ngx_http_request_t *r);
void ngx_http_twirt_call_end(ngx_http_twirt_call_t *call, const char *reason);


#endif /* _NGX_HTTP_TWIRT_CALL_H_INCLUDED_ */
