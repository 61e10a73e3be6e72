
/*
 * A validating JSON scanner for the audio path: one pass, no allocation,
 * no tree.  It picks the string values of a few fields named by their
 * path ("event", "media.payload") out of a message, so that the 50 media
 * frames a second of every call do not each build a jansson tree.
 * Anything it does not take (an escape in a wanted value, deep nesting)
 * is NGX_DECLINED, and the caller parses with jansson instead.
 */


#ifndef _NGX_HTTP_TWIRT_JSON_SCAN_H_INCLUDED_
#define _NGX_HTTP_TWIRT_JSON_SCAN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef struct {
    const char                 *path;     /* "a" or "a.b" */
    ngx_str_t                   value;    /* the raw string, unescaped */
    unsigned                    found:1;
} ngx_http_twirt_json_field_t;


ngx_int_t ngx_http_twirt_json_scan(u_char *p, size_t len,
    ngx_http_twirt_json_field_t *fields, ngx_uint_t n);


#endif /* _NGX_HTTP_TWIRT_JSON_SCAN_H_INCLUDED_ */
