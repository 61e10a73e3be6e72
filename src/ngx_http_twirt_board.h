
/*
 * twirt: the call board's feed (Server-Sent Events) and JSON API, the
 * twirt_board location.
 */


#ifndef _NGX_HTTP_TWIRT_BOARD_H_INCLUDED_
#define _NGX_HTTP_TWIRT_BOARD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


extern ngx_module_t  ngx_http_twirt_board_module;


#endif /* _NGX_HTTP_TWIRT_BOARD_H_INCLUDED_ */
