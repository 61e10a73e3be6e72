
/*
 * The voice webhook: answers Twilio's request with TwiML that connects the
 * call to the Media Streams location.
 */


#ifndef _NGX_HTTP_TWIRT_TWIML_H_INCLUDED_
#define _NGX_HTTP_TWIRT_TWIML_H_INCLUDED_


#include "ngx_http_twirt.h"


ngx_int_t ngx_http_twirt_twiml_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_twirt_action_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_twirt_stream_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_twirt_call_status_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_twirt_read_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body);
ngx_int_t ngx_http_twirt_api_path(ngx_http_request_t *r, u_char **seg,
    size_t *len, ngx_uint_t max, ngx_uint_t *n);
ngx_int_t ngx_http_twirt_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *data, size_t len);
ngx_int_t ngx_http_twirt_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json);
ngx_int_t ngx_http_twirt_call_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
ngx_int_t ngx_http_twirt_param_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);


#endif /* _NGX_HTTP_TWIRT_TWIML_H_INCLUDED_ */
