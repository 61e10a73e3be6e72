
/*
 * Escaping text that comes from configuration, callers or Twilio before it
 * is placed into XML.
 */


#ifndef _NGX_HTTP_TWIRT_ESCAPE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_ESCAPE_H_INCLUDED_


#include "ngx_http_twirt.h"


u_char *ngx_http_twirt_xml_escape(u_char *dst, u_char *src, size_t len,
    size_t *size, ngx_uint_t attr);
size_t ngx_http_twirt_utf8_length(u_char *p, size_t len);


#endif /* _NGX_HTTP_TWIRT_ESCAPE_H_INCLUDED_ */
