
/*
 * Untrusted text in log lines: what callers, Twilio, the Realtime API or
 * Redis send is shown escaped and bounded, so that nobody can forge a
 * log line (CR, LF) or cut one short (NUL).
 */


#ifndef _NGX_HTTP_TWIRT_LOG_H_INCLUDED_
#define _NGX_HTTP_TWIRT_LOG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* escaped, the text takes at most this much; longer is cut with "..." */
#define NGX_HTTP_TWIRT_LOG_TEXT  256


typedef struct {
    ngx_str_t                   text;
    u_char                      buf[NGX_HTTP_TWIRT_LOG_TEXT];
} ngx_http_twirt_log_text_t;


/*
 * Control bytes (below 0x20 and 0x7f), '"' and '\\' become \xNN; other
 * bytes, UTF-8 included, are kept.  Returns &t->text, for "%V".
 */
ngx_str_t *ngx_http_twirt_log_text(ngx_http_twirt_log_text_t *t, u_char *p,
    size_t len);

#define ngx_http_twirt_log_str(t, s)                                         \
    ngx_http_twirt_log_text(t, (s)->data, (s)->len)

#define ngx_http_twirt_log_cstr(t, s)                                        \
    ngx_http_twirt_log_text(t, (u_char *) (s), (s) ? ngx_strlen(s) : 0)


#endif /* _NGX_HTTP_TWIRT_LOG_H_INCLUDED_ */
