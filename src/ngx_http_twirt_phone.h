
/*
 * Phone numbers as people type them in Japan, made E.164: "090-1234-5678"
 * is "+819012345678".  Pure: no nginx types beyond u_char.
 */


#ifndef _NGX_HTTP_TWIRT_PHONE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_PHONE_H_INCLUDED_


#include "ngx_http_twirt.h"


/* "+" and at most 15 digits */
#define NGX_HTTP_TWIRT_E164_LEN  16


const char *ngx_http_twirt_phone_e164(u_char *p, size_t len, u_char *out,
    size_t *out_len);


#endif /* _NGX_HTTP_TWIRT_PHONE_H_INCLUDED_ */
