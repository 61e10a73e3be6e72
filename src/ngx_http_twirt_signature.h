
/*
 * X-Twilio-Signature: HMAC-SHA1 over the public URL and the sorted POST
 * parameters, keyed with the account's auth token.
 */


#ifndef _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_


#include "ngx_http_twirt.h"


/* what Twilio signed */
#define NGX_HTTP_TWIRT_SIGNED_WEBHOOK  0   /* the voice webhook, the action */
#define NGX_HTTP_TWIRT_SIGNED_UPGRADE  1   /* the media stream's upgrade */


ngx_int_t ngx_http_twirt_signature_check(ngx_http_request_t *r,
    ngx_uint_t kind, ngx_array_t *pairs, ngx_str_t *call_sid);
/* the public URL of this webhook request, without its query string */
ngx_int_t ngx_http_twirt_public_url(ngx_http_request_t *r, ngx_str_t *url);
ngx_int_t ngx_http_twirt_header_in(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_TWIRT_SIGNATURE_H_INCLUDED_ */
