
/*
 * Untrusted text in log lines (see the header).
 */


#include "ngx_http_twirt_log.h"


ngx_str_t *
ngx_http_twirt_log_text(ngx_http_twirt_log_text_t *t, u_char *p, size_t len)
{
    u_char  *d, *end, *last;

    static u_char  hex[] = "0123456789abcdef";

    d = t->buf;
    end = t->buf + NGX_HTTP_TWIRT_LOG_TEXT - sizeof("...") + 1;
    last = p + len;

    while (p < last) {
        if (*p < 0x20 || *p == 0x7f || *p == '"' || *p == '\\') {
            if (end - d < 4) {
                break;
            }

            *d++ = '\\';
            *d++ = 'x';
            *d++ = hex[*p >> 4];
            *d++ = hex[*p & 0xf];

        } else {
            if (d == end) {
                break;
            }

            *d++ = *p;
        }

        p++;
    }

    if (p < last) {
        d = ngx_cpymem(d, "...", sizeof("...") - 1);
    }

    t->text.data = t->buf;
    t->text.len = d - t->buf;

    return &t->text;
}
