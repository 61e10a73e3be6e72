
/*
 * application/x-www-form-urlencoded bodies and query strings.
 */


#ifndef _NGX_HTTP_TWIRT_FORM_H_INCLUDED_
#define _NGX_HTTP_TWIRT_FORM_H_INCLUDED_


#include "ngx_http_twirt.h"


ngx_int_t ngx_http_twirt_form_parse(ngx_pool_t *pool, u_char *p, size_t len,
    ngx_array_t *pairs);
ngx_http_twirt_pair_t *ngx_http_twirt_form_find(ngx_array_t *pairs,
    u_char *name, size_t len, ngx_uint_t ignore_case);
ngx_int_t ngx_http_twirt_form_repeated(ngx_pool_t *pool, ngx_array_t *pairs,
    ngx_http_twirt_pair_t **repeated);


#endif /* _NGX_HTTP_TWIRT_FORM_H_INCLUDED_ */
