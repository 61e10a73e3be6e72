
/*
 * twirt: an nginx module that bridges Twilio Media Streams to the
 * OpenAI Realtime API.
 */


#ifndef _NGX_HTTP_TWIRT_H_INCLUDED_
#define _NGX_HTTP_TWIRT_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include <jansson.h>


/* Twilio: name + value of one <Parameter> must stay under 500 characters */
#define NGX_HTTP_TWIRT_PARAM_MAX  500

/* an outbound call's variables (and its agent) in the webhook's query */
#define NGX_HTTP_TWIRT_QUERY_PARAMS  16


/* twirt_noise_reduction */
#define NGX_HTTP_TWIRT_NOISE_OFF          0
#define NGX_HTTP_TWIRT_NOISE_NEAR_FIELD   1
#define NGX_HTTP_TWIRT_NOISE_FAR_FIELD    2

/* twirt_vad, and an agent profile's "vad" */
#define NGX_HTTP_TWIRT_VAD_OFF            0
#define NGX_HTTP_TWIRT_VAD_SERVER         1
#define NGX_HTTP_TWIRT_VAD_SEMANTIC       2

/* semantic VAD's eagerness; UNSET: not sent, the API's default applies */
#define NGX_HTTP_TWIRT_EAGERNESS_UNSET    0
#define NGX_HTTP_TWIRT_EAGERNESS_LOW      1
#define NGX_HTTP_TWIRT_EAGERNESS_MEDIUM   2
#define NGX_HTTP_TWIRT_EAGERNESS_HIGH     3
#define NGX_HTTP_TWIRT_EAGERNESS_AUTO     4

/* twirt_max_output_tokens inf */
#define NGX_HTTP_TWIRT_TOKENS_INF         0

/* twirt_dtmf: keypad keys are only events, or given to the model */
#define NGX_HTTP_TWIRT_DTMF_OFF           0
#define NGX_HTTP_TWIRT_DTMF_MODEL         1

/* twirt_truncation */
#define NGX_HTTP_TWIRT_TRUNCATION_AUTO      1
#define NGX_HTTP_TWIRT_TRUNCATION_DISABLED  2
#define NGX_HTTP_TWIRT_TRUNCATION_RATIO     3


/* opaque here: each is defined by the file that owns it */
typedef struct ngx_http_twirt_ws_s          ngx_http_twirt_ws_t;
typedef struct ngx_http_twirt_redis_read_s  ngx_http_twirt_redis_read_t;
typedef struct ngx_http_twirt_upstream_pool_s
    ngx_http_twirt_upstream_pool_t;


typedef struct {
    ngx_str_t                   name;
    ngx_http_complex_value_t    value;
} ngx_http_twirt_param_t;


typedef struct {
    ngx_http_complex_value_t    text;
    ngx_str_t                   language;
    ngx_str_t                   voice;
} ngx_http_twirt_say_t;


typedef struct {
    ngx_http_complex_value_t    number;
    ngx_str_t                   caller_id;
} ngx_http_twirt_dial_t;


typedef struct {
    ngx_http_complex_value_t    url;
    ngx_str_t                   method;
} ngx_http_twirt_action_t;


/* the limits and timers of one side's WebSocket connections */
typedef struct {
    size_t                      max_frame;
    size_t                      max_message;
    size_t                      max_queue;
    size_t                      buffer_size;
    ngx_msec_t                  idle_timeout;
    ngx_msec_t                  close_timeout;
} ngx_http_twirt_ws_conf_t;


/* a peer's URL (ws, wss, http, https), parsed at configuration time */
typedef struct {
    ngx_str_t                   url;
    ngx_str_t                   host;          /* without brackets */
    ngx_str_t                   host_header;   /* with a non-default port */
    ngx_str_t                   uri;           /* path and query */
    in_port_t                   port;
    ngx_addr_t                 *addr;          /* an IP literal, or NULL */
    unsigned                    ssl:1;
} ngx_http_twirt_url_t;


/* the TLS side of a peer, made at configuration time */
typedef struct {
#if (NGX_HTTP_SSL)
    ngx_ssl_t                  *ssl;           /* NULL: plain TCP */
#endif
    ngx_flag_t                  verify;
} ngx_http_twirt_tls_t;


/*
 * Turn detection, parsed once.  A parameter below 0 (eagerness UNSET) is
 * not sent: the API's default applies.
 */
typedef struct {
    ngx_uint_t                  type;              /* NGX_HTTP_TWIRT_VAD_* */
    double                      threshold;         /* server: 0..1 */
    ngx_int_t                   prefix_padding_ms; /* server */
    ngx_int_t                   silence_duration_ms; /* server */
    ngx_uint_t                  eagerness;         /* semantic */
    ngx_flag_t                  create_response;
    ngx_flag_t                  interrupt_response;
} ngx_http_twirt_vad_t;


/* USD per million tokens; transcribe_minute: USD per minute of audio */
typedef struct {
    double                      audio_in;
    double                      cached_audio_in;
    double                      audio_out;
    double                      text_in;
    double                      cached_text_in;
    double                      text_out;
    double                      transcribe_in;
    double                      transcribe_out;
    double                      transcribe_minute;
} ngx_http_twirt_prices_t;


/* twirt_prompt: a reusable prompt, its variables filled per call */
typedef struct {
    ngx_str_t                   id;
    ngx_str_t                   version;          /* "": the latest */
    ngx_array_t                *variables;        /* ngx_keyval_t, values
                                                     are {{name}} templates */
} ngx_http_twirt_prompt_t;


typedef struct {
    /* the voice webhook */
    ngx_http_complex_value_t   *stream_url;
    ngx_http_complex_value_t   *public_url;
    ngx_str_t                   auth_token;
    ngx_array_t                *params;
    ngx_http_twirt_say_t       *say;
    ngx_http_twirt_action_t    *action;
    ngx_http_twirt_action_t    *stream_status;   /* statusCallback */
    ngx_http_twirt_say_t       *fallback_say;
    ngx_http_twirt_dial_t      *fallback_dial;
    json_t                     *transfers;       /* twirt_transfer: NAME ->
                                                    {target, caller_id,
                                                     timeout} */
    size_t                      max_body_size;
    ngx_flag_t                  twiml;           /* twirt_twiml here */
    ngx_flag_t                  action_handler;  /* twirt_action here */

    /* the Media Streams endpoint */
    size_t                      max_frame_size;
    size_t                      max_message_size;
    size_t                      send_queue_size;
    ngx_msec_t                  idle_timeout;
    ngx_msec_t                  close_timeout;
    ngx_msec_t                  max_call_duration;
    ngx_http_twirt_ws_conf_t    twilio_ws;
    ngx_flag_t                  stream;

    /* the Realtime upstream */
    ngx_http_twirt_url_t       *openai_url;
    ngx_str_t                   api_key;
    ngx_str_t                   api_key_file;
    ngx_flag_t                  ssl_verify;
    ngx_str_t                   ssl_trusted_certificate;
    ngx_msec_t                  connect_timeout;
    ngx_http_twirt_ws_conf_t    upstream_ws;
    ngx_http_twirt_tls_t        openai_tls;
    ngx_uint_t                  pool_size;        /* twirt_openai_pool: idle
                                                     connections per worker,
                                                     0: off */
    ngx_msec_t                  pool_max_age;
    ngx_msec_t                  session_rotate;   /* twirt_session_rotate,
                                                     0: off */
    ngx_http_twirt_upstream_pool_t  *pool;        /* a stream location's */

    /* the Realtime session */
    ngx_str_t                   model;
    ngx_str_t                   instructions;
    ngx_str_t                   greeting;
    void                       *greeting_cache;   /* ngx_http_twirt_greeting_
                                                     conf_t, NULL: off */
    ngx_str_t                   voice;            /* a table's name */
    ngx_str_t                   transcription;    /* a model, "": off */
    ngx_str_t                   language;
    ngx_str_t                   transcription_prompt;
    ngx_uint_t                  noise_reduction;  /* NGX_HTTP_TWIRT_NOISE_* */
    ngx_int_t                   max_output_tokens; /* 1..4096, or
                                                   NGX_HTTP_TWIRT_TOKENS_INF */
    ngx_http_twirt_vad_t        vad;
    json_t                     *tools;            /* an array */
    ngx_str_t                   tool_choice;      /* a word or a function */
    double                      speed;            /* 0.25..1.5, -1: unset */
    ngx_uint_t                  truncation;       /* NGX_HTTP_TWIRT_
                                                     TRUNCATION_* */
    double                      retention_ratio;  /* 0..1 */
    ngx_http_twirt_prompt_t    *prompt;
    json_t                     *session_json;     /* merged into session */
    ngx_flag_t                  end_call;
    ngx_uint_t                  dtmf;             /* NGX_HTTP_TWIRT_DTMF_* */
    u_char                      dtmf_terminator;  /* a keypad key */
    ngx_msec_t                  dtmf_timeout;     /* after the last key */
    ngx_http_twirt_prices_t    *prices;
    ngx_msec_t                  early_audio;      /* caller audio kept */
    ngx_msec_t                  agent_timeout;    /* profile read */

    /* tools run by the user's backend (ngx_http_twirt_tool.c) */
    ngx_str_t                   tool_uri;         /* "": no backend */
    ngx_str_t                   tool_secret;
    ngx_msec_t                  tool_timeout;
    size_t                      tool_max_output;
    ngx_uint_t                  tool_concurrency; /* per call */
    ngx_str_t                   tool_filler;
    ngx_msec_t                  tool_filler_after; /* 0: off */

    /* audio to Twilio between two marks, at most; 0: a mark per delta */
    ngx_msec_t                  mark_interval;

    /* a silent caller, a failed response (ngx_http_twirt_call.c) */
    ngx_msec_t                  silence_timeout;  /* 0: off */
    ngx_uint_t                  silence_tries;    /* prompts, then goodbye */
    ngx_str_t                   silence_prompt;
    ngx_str_t                   silence_goodbye;  /* "": hang up at once */
    ngx_str_t                   response_apology; /* "": fail the call */

    /* Twilio's REST API and outbound calls (ngx_http_twirt_outbound.c) */
    ngx_http_twirt_url_t       *twilio_api_url;
    ngx_str_t                   account_sid;
    ngx_str_t                   twilio_key;        /* SK... */
    ngx_str_t                   twilio_secret;     /* never logged */
    ngx_flag_t                  twilio_ssl_verify;
    ngx_str_t                   twilio_ssl_trusted_certificate;
    ngx_msec_t                  twilio_timeout;
    ngx_str_t                   outbound_url;
    ngx_str_t                   outbound_status_callback;
    ngx_http_twirt_tls_t        twilio_tls;
    ngx_str_t                   twilio_calls_uri;
    ngx_str_t                   twilio_headers;    /* with the credentials:
                                                      never logged */
    ngx_flag_t                  calls;             /* twirt_calls here */
} ngx_http_twirt_loc_conf_t;


/* the http block's: the warm pools of its stream locations */
typedef struct {
    ngx_array_t                 pools;     /* ngx_http_twirt_upstream_pool_t *
                                            */
} ngx_http_twirt_main_conf_t;


/* a decoded name=value pair of a form body or a query string */
typedef struct {
    ngx_str_t                   name;
    ngx_str_t                   value;
} ngx_http_twirt_pair_t;


#define NGX_HTTP_TWIRT_CTX_WEBHOOK  1
#define NGX_HTTP_TWIRT_CTX_STREAM   2


/* per request state of the voice webhook, also read by $twirt_param_* */
typedef struct {
    ngx_uint_t                    kind;   /* NGX_HTTP_TWIRT_CTX_WEBHOOK */
    ngx_array_t                  *pairs;
    ngx_http_twirt_redis_read_t  *redis;  /* a call record being read */
    void                         *outcome; /* the action's: what is known */
    unsigned                      done:1;
    unsigned                      action:1;
    unsigned                      stream_status:1;
    unsigned                      call_status:1;
} ngx_http_twirt_twiml_ctx_t;


/* per request state of a Media Stream: the call, then its summary */
typedef struct {
    ngx_uint_t                  kind;    /* NGX_HTTP_TWIRT_CTX_STREAM */
    ngx_http_twirt_ws_t        *ws;      /* NULL once the call is over */
    ngx_str_t                   call_sid;
    ngx_str_t                   stream_sid;
    ngx_str_t                   end_reason;
    ngx_msec_t                  duration;
    uint64_t                    tokens;
    double                      cost;
    unsigned                    ended:1;
} ngx_http_twirt_stream_ctx_t;


/* the data of the shared zone of that name and tag in cycle, or NULL */
void *ngx_http_twirt_shm_lookup(ngx_cycle_t *cycle, ngx_str_t *name,
    void *tag);


extern ngx_module_t  ngx_http_twirt_module;


#endif /* _NGX_HTTP_TWIRT_H_INCLUDED_ */
