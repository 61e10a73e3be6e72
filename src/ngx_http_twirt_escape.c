
/*
 * Escaping text that comes from configuration, callers or Twilio before it
 * is placed into XML.
 */


#include "ngx_http_twirt_escape.h"


static const u_char  ngx_http_twirt_replacement[] = "\xef\xbf\xbd";


/*
 * Escapes & < > " ' as entities, drops the control characters XML 1.0
 * forbids and replaces invalid UTF-8 with U+FFFD, so that any input makes
 * well-formed XML.  CR is written as &#13; (a parser turns a raw CR into
 * LF); in an attribute value (attr) TAB and LF too, as &#9; and &#10;,
 * since attribute-value normalisation turns them into spaces.  With dst
 * NULL only *size is computed.
 */

u_char *
ngx_http_twirt_xml_escape(u_char *dst, u_char *src, size_t len, size_t *size,
    ngx_uint_t attr)
{
    u_char      *p, *end, *start;
    size_t       n;
    uint32_t     u;
    const char  *entity;

    n = 0;
    p = src;
    end = src + len;

    while (p < end) {
        entity = NULL;

        switch (*p) {
        case '&':
            entity = "&amp;";
            break;
        case '<':
            entity = "&lt;";
            break;
        case '>':
            entity = "&gt;";
            break;
        case '"':
            entity = "&quot;";
            break;
        case '\'':
            entity = "&apos;";
            break;
        case '\r':
            entity = "&#13;";
            break;
        case '\n':
            entity = attr ? "&#10;" : NULL;
            break;
        case '\t':
            entity = attr ? "&#9;" : NULL;
            break;
        }

        if (entity) {
            n += ngx_strlen(entity);
            if (dst) {
                dst = ngx_cpymem(dst, entity, ngx_strlen(entity));
            }

            p++;
            continue;
        }

        if (*p < 0x80) {
            if (*p < 0x20 && *p != '\t' && *p != '\n' && *p != '\r') {
                p++;
                continue;
            }

            n++;
            if (dst) {
                *dst++ = *p;
            }

            p++;
            continue;
        }

        start = p;
        u = ngx_utf8_decode(&p, end - p);

        if (u > 0x10ffff || (u >= 0xd800 && u <= 0xdfff)) {
            p = start + 1;
            n += sizeof(ngx_http_twirt_replacement) - 1;
            if (dst) {
                dst = ngx_cpymem(dst, ngx_http_twirt_replacement,
                                 sizeof(ngx_http_twirt_replacement) - 1);
            }

            continue;
        }

        n += p - start;
        if (dst) {
            dst = ngx_cpymem(dst, start, p - start);
        }
    }

    *size = n;

    return dst;
}


/* characters, as Twilio counts its limits; an invalid byte counts as one */

size_t
ngx_http_twirt_utf8_length(u_char *p, size_t len)
{
    u_char    *end, *start;
    size_t     n;
    uint32_t   u;

    end = p + len;

    for (n = 0; p < end; n++) {
        if (*p < 0x80) {
            p++;
            continue;
        }

        start = p;
        u = ngx_utf8_decode(&p, end - p);

        if (u > 0x10ffff) {
            p = start + 1;
        }
    }

    return n;
}
