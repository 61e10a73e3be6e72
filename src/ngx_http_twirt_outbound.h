
/*
 * Outbound calls through Twilio's REST API: the twirt_calls location.
 */


#ifndef _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_
#define _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_


#include "ngx_http_twirt.h"


/* variables of one call, each a <Parameter> */
#define NGX_HTTP_TWIRT_OUTBOUND_VARS  NGX_HTTP_TWIRT_QUERY_PARAMS


ngx_int_t ngx_http_twirt_calls_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_twirt_outbound_init_conf(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf);


#endif /* _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_ */
