
/*
 * A plain UTF-8 decoder, one code point at a time, to hold the codec's
 * incremental validator against: the unit tests and the fuzzer share it.
 * NGX_HTTP_TWIRT_WS_OK when p[0..len) is valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), else
 * NGX_HTTP_TWIRT_WS_ERROR.
 */


#ifndef _NGX_HTTP_TWIRT_UTF8_REF_H_INCLUDED_
#define _NGX_HTTP_TWIRT_UTF8_REF_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "ngx_http_twirt_ws_frame.h"


static int
ngx_http_twirt_utf8_ref(const unsigned char *p, size_t len)
{
    size_t    i, n, k;
    uint32_t  cp, min;

    for (i = 0; i < len; i += n) {
        if (p[i] < 0x80) {
            n = 1;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            n = 2;
            cp = p[i] & 0x1f;
            min = 0x80;

        } else if ((p[i] & 0xf0) == 0xe0) {
            n = 3;
            cp = p[i] & 0x0f;
            min = 0x800;

        } else if ((p[i] & 0xf8) == 0xf0) {
            n = 4;
            cp = p[i] & 0x07;
            min = 0x10000;

        } else {
            return NGX_HTTP_TWIRT_WS_ERROR;
        }

        if (len - i < n) {
            return NGX_HTTP_TWIRT_WS_ERROR;
        }

        for (k = 1; k < n; k++) {
            if ((p[i + k] & 0xc0) != 0x80) {
                return NGX_HTTP_TWIRT_WS_ERROR;
            }

            cp = cp << 6 | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return NGX_HTTP_TWIRT_WS_ERROR;
        }
    }

    return NGX_HTTP_TWIRT_WS_OK;
}


#endif /* _NGX_HTTP_TWIRT_UTF8_REF_H_INCLUDED_ */
