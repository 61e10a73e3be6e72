
/*
 * Realtime API (GA) events: the session.update we send, and the usage and
 * cost we read from response.done and transcription events.
 */


#ifndef _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"


#define NGX_HTTP_TWIRT_SESSION_EVENT  "twirt_session_1"
/* every response.create twirt sends: an error naming it refused it */
#define NGX_HTTP_TWIRT_RESPONSE_EVENT "twirt_response"

/* tokens one usage event may claim: far above any session's context */
#define NGX_HTTP_TWIRT_USAGE_MAX      100000000

/* seconds of audio one transcription may claim: a day, far above a call */
#define NGX_HTTP_TWIRT_USAGE_SECONDS_MAX  86400


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
    uint64_t                    transcribe_ms;   /* billed by duration */
    uint64_t                    total;
} ngx_http_twirt_usage_t;


json_t *ngx_http_twirt_realtime_session(ngx_http_twirt_loc_conf_t *conf,
    ngx_str_t *instructions, json_t *profile, json_t *parameters,
    ngx_pool_t *pool, ngx_log_t *log);
ngx_int_t ngx_http_twirt_realtime_greeting(ngx_pool_t *pool,
    ngx_str_t *instructions, ngx_str_t *greeting, ngx_str_t *out);
ngx_int_t ngx_http_twirt_realtime_usage(json_t *usage,
    ngx_http_twirt_usage_t *u);
ngx_int_t ngx_http_twirt_realtime_transcription_usage(json_t *usage,
    ngx_http_twirt_usage_t *u);
double ngx_http_twirt_realtime_cost(ngx_http_twirt_prices_t *p,
    ngx_http_twirt_usage_t *u);

/*
 * The values a session takes, checked the same way for directives and
 * for agent profiles from Redis.  Each table serves both the check and
 * the error message that lists what is valid.
 */
extern ngx_conf_enum_t  ngx_http_twirt_voices[];
extern ngx_conf_enum_t  ngx_http_twirt_transcription_models[];
extern ngx_conf_enum_t  ngx_http_twirt_vad_types[];
extern ngx_conf_enum_t  ngx_http_twirt_vad_api_types[];
extern ngx_conf_enum_t  ngx_http_twirt_eagerness[];
extern ngx_conf_enum_t  ngx_http_twirt_noise_reductions[];
extern ngx_conf_enum_t  ngx_http_twirt_max_output_tokens_words[];
extern ngx_conf_enum_t  ngx_http_twirt_tool_choices[];
extern ngx_conf_enum_t  ngx_http_twirt_truncations[];

ngx_int_t ngx_http_twirt_realtime_enum(ngx_conf_enum_t *table,
    ngx_str_t *name, ngx_uint_t *value);
ngx_str_t *ngx_http_twirt_realtime_enum_name(ngx_conf_enum_t *table,
    ngx_uint_t value);
u_char *ngx_http_twirt_realtime_enum_names(u_char *buf, u_char *last,
    ngx_conf_enum_t *table);
char *ngx_http_twirt_realtime_decimal(ngx_str_t *s, double min, double max,
    double *d);
char *ngx_http_twirt_realtime_threshold(ngx_str_t *s, double *threshold);
char *ngx_http_twirt_realtime_ms(ngx_str_t *s, ngx_int_t *ms);
char *ngx_http_twirt_realtime_max_output_tokens(ngx_str_t *s, ngx_int_t *n);
char *ngx_http_twirt_realtime_speed(ngx_str_t *s, double *speed);
char *ngx_http_twirt_realtime_name(ngx_str_t *s);
ngx_int_t ngx_http_twirt_realtime_session_json(json_t *json, u_char *buf,
    size_t size);


#endif /* _NGX_HTTP_TWIRT_REALTIME_H_INCLUDED_ */
