
/*
 * {{name}} placeholders in instructions and greetings.
 */


#ifndef _NGX_HTTP_TWIRT_TEMPLATE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_TEMPLATE_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"


ngx_int_t ngx_http_twirt_template(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *src, json_t **vars, ngx_uint_t nvars, ngx_str_t *out);


#endif /* _NGX_HTTP_TWIRT_TEMPLATE_H_INCLUDED_ */
