
/*
 * The Media Streams endpoint: checks Twilio's WebSocket upgrade, answers
 * 101 and hands the connection to a new call.
 */


#ifndef _NGX_HTTP_TWIRT_STREAM_H_INCLUDED_
#define _NGX_HTTP_TWIRT_STREAM_H_INCLUDED_


#include "ngx_http_twirt.h"


ngx_int_t ngx_http_twirt_stream_handler(ngx_http_request_t *r);


#endif /* _NGX_HTTP_TWIRT_STREAM_H_INCLUDED_ */
