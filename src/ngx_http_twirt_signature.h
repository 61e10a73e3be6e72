
/*
 * X-Twilio-Signature: HMAC-SHA1 over the public URL and the sorted POST
 * parameters, keyed with the account's auth token.
 */


#ifndef _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_


#include "ngx_http_twirt.h"


ngx_int_t ngx_http_twirt_signature_check(ngx_pool_t *pool, ngx_str_t *token,
    ngx_str_t *url, ngx_array_t *pairs, ngx_str_t *signature);
ngx_int_t ngx_http_twirt_signature_url(ngx_http_request_t *r,
    ngx_http_complex_value_t *public_url, const char *scheme, ngx_str_t *url);
ngx_int_t ngx_http_twirt_header_in(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_ */
