
/*
 * Realtime API (GA) events: the session.update we send, and the usage and
 * cost we read from response.done and transcription events.
 */


#ifndef _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"


#define NGX_HTTP_TWIRT_SESSION_EVENT  "twirt_session_1"

/* tokens one usage event may claim: far above any session's context */
#define NGX_HTTP_TWIRT_USAGE_MAX      100000000


/* a += b, stopping at the largest value instead of wrapping */
#define ngx_http_twirt_add_sat(a, b)                                          \
    *(a) = (*(a) > UINT64_MAX - (b)) ? UINT64_MAX : *(a) + (b)


typedef struct {
    uint64_t                    text_in;
    uint64_t                    cached_text_in;
    uint64_t                    audio_in;
    uint64_t                    cached_audio_in;
    uint64_t                    text_out;
    uint64_t                    audio_out;
    uint64_t                    transcribe_in;
    uint64_t                    transcribe_out;
    uint64_t                    total;
} ngx_http_twirt_usage_t;


json_t *ngx_http_twirt_realtime_session(ngx_http_twirt_loc_conf_t *conf,
    ngx_str_t *instructions, json_t *profile);
ngx_int_t ngx_http_twirt_realtime_usage(json_t *usage,
    ngx_http_twirt_usage_t *u);
ngx_int_t ngx_http_twirt_realtime_transcription_usage(json_t *usage,
    ngx_http_twirt_usage_t *u);
double ngx_http_twirt_realtime_cost(ngx_http_twirt_prices_t *p,
    ngx_http_twirt_usage_t *u);
ngx_int_t ngx_http_twirt_realtime_voice_valid(ngx_str_t *voice);
ngx_int_t ngx_http_twirt_realtime_transcription_valid(ngx_str_t *model);


#endif /* _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_ */
