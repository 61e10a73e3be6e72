
/*
 * Twilio Media Streams messages: what Twilio sends, parsed with jansson,
 * and the shapes of what we send back.
 */


#ifndef _NGX_HTTP_TWIRT_TWILIO_H_INCLUDED_
#define _NGX_HTTP_TWIRT_TWILIO_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"


#define NGX_HTTP_TWIRT_SID_MAX  64


typedef enum {
    NGX_HTTP_TWIRT_TWILIO_UNKNOWN = 0,
    NGX_HTTP_TWIRT_TWILIO_CONNECTED,
    NGX_HTTP_TWIRT_TWILIO_START,
    NGX_HTTP_TWIRT_TWILIO_MEDIA,
    NGX_HTTP_TWIRT_TWILIO_MARK,
    NGX_HTTP_TWIRT_TWILIO_DTMF,
    NGX_HTTP_TWIRT_TWILIO_STOP
} ngx_http_twirt_twilio_event_e;


typedef struct {
    json_t                         *root;
    ngx_http_twirt_twilio_event_e   event;
    ngx_str_t                       name;        /* the "event" string */
    ngx_str_t                       stream_sid;
    ngx_str_t                       call_sid;
    ngx_str_t                       account_sid;
    json_t                         *parameters;  /* start.customParameters */
    ngx_str_t                       payload;     /* media, base64 as sent */
    ngx_str_t                       mark;        /* mark.name */
    ngx_str_t                       digit;       /* dtmf.digit */
    const char                     *error;
} ngx_http_twirt_twilio_msg_t;


ngx_int_t ngx_http_twirt_twilio_parse(u_char *data, size_t len,
    ngx_http_twirt_twilio_msg_t *m);
void ngx_http_twirt_twilio_free(ngx_http_twirt_twilio_msg_t *m);
ngx_int_t ngx_http_twirt_sid_valid(ngx_str_t *sid);
ngx_uint_t ngx_http_twirt_dtmf_key(u_char c);
void ngx_http_twirt_json_get_str(json_t *obj, const char *key,
    ngx_str_t *out);


#endif /* _NGX_HTTP_TWIRT_TWILIO_H_INCLUDED_ */
