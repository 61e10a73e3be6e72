
/*
 * twirt: an nginx module that bridges Twilio Media Streams to the
 * OpenAI Realtime API.
 *
 * The module object, the directives, configuration and merging.
 */


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_ws_frame.h"
#include "ngx_http_twirt_twiml.h"
#include "ngx_http_twirt_stream.h"
#include "ngx_http_twirt_escape.h"
#include "ngx_http_twirt_upstream.h"
#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_outcome.h"
#include "ngx_http_twirt_tool.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_transfer.h"
#include "ngx_http_twirt_connect.h"
#include "ngx_http_twirt_outbound.h"
#include "ngx_http_twirt_upstream_pool.h"
#include "ngx_http_twirt_greeting.h"
#include "ngx_http_twirt_rotate.h"


static ngx_int_t ngx_http_twirt_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_twirt_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_twirt_init_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_twirt_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static void *ngx_http_twirt_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static char *ngx_http_twirt_twiml(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_parameter(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_say(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_connect_action(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_fallback_dial(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_url_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static char *ngx_http_twirt_openai_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_twilio_api_url(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_account_sid(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_twilio_api_key(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_secret_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *secret);
static char *ngx_http_twirt_outbound_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_greeting_cache(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_openai_pool(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_voice(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_transcription(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_vad(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_noise_reduction(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_tool_filler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_silence_timeout(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_silence_tries(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_spoken(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_check_tools(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf);
static char *ngx_http_twirt_tools(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_dtmf(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_max_output_tokens(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_session_json(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_speed(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_tool_choice(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_truncation(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_prompt(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_check_session(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf);
static char *ngx_http_twirt_price(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_enum_error(ngx_conf_t *cf, const char *what,
    ngx_str_t *value, ngx_conf_enum_t *table);
static void ngx_http_twirt_json_cleanup(void *data);
static ngx_int_t ngx_http_twirt_json_keep(ngx_conf_t *cf, json_t *json);
static ngx_int_t ngx_http_twirt_complex(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv);
static ngx_int_t ngx_http_twirt_option(ngx_str_t *arg, const char *name,
    ngx_str_t *value);
static ngx_int_t ngx_http_twirt_max_age(ngx_conf_t *cf, ngx_str_t *arg,
    ngx_str_t *value);


/* a sentence to say that may be "off" */
static ngx_uint_t  ngx_http_twirt_spoken_off = 1;


static ngx_command_t  ngx_http_twirt_commands[] = {

    { ngx_string("twirt_twiml"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_action"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("twirt_stream_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      2,
      NULL },

    { ngx_string("twirt_call_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      3,
      NULL },

    { ngx_string("twirt_calls"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      4,
      NULL },

    { ngx_string("twirt_twilio_api_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_twilio_api_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, twilio_api_url),
      NULL },

    { ngx_string("twirt_twilio_account_sid"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_account_sid,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_twilio_auth_token_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_twilio_api_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_twilio_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_twirt_twilio_api_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      1,
      NULL },

    { ngx_string("twirt_twilio_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_twilio_api_key,
      NGX_HTTP_LOC_CONF_OFFSET,
      2,
      NULL },

    { ngx_string("twirt_twilio_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, twilio_ssl_verify),
      NULL },

    { ngx_string("twirt_twilio_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, twilio_ssl_trusted_certificate),
      NULL },

    { ngx_string("twirt_twilio_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, twilio_timeout),
      NULL },

    { ngx_string("twirt_outbound_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_outbound_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, outbound_url),
      NULL },

    { ngx_string("twirt_outbound_status_callback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_outbound_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, outbound_status_callback),
      NULL },

    { ngx_string("twirt_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_status,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_frame_size),
      NULL },

    { ngx_string("twirt_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("twirt_send_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, send_queue_size),
      NULL },

    { ngx_string("twirt_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("twirt_mark_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, mark_interval),
      NULL },

    { ngx_string("twirt_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, close_timeout),
      NULL },

    { ngx_string("twirt_max_call_duration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_call_duration),
      NULL },

    { ngx_string("twirt_openai_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_openai_url,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, openai_url),
      NULL },

    { ngx_string("twirt_openai_api_key"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, api_key),
      NULL },

    { ngx_string("twirt_openai_api_key_file"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_api_key_file,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, api_key_file),
      NULL },

    { ngx_string("twirt_openai_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, ssl_verify),
      NULL },

    { ngx_string("twirt_openai_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, ssl_trusted_certificate),
      NULL },

    { ngx_string("twirt_openai_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("twirt_openai_pool"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_openai_pool,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_greeting_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_greeting_cache,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, model),
      NULL },

    { ngx_string("twirt_instructions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, instructions),
      NULL },

    { ngx_string("twirt_greeting"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, greeting),
      NULL },

    { ngx_string("twirt_voice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_voice,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, voice),
      NULL },

    { ngx_string("twirt_transcription"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_transcription,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, transcription),
      NULL },

    { ngx_string("twirt_vad"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_twirt_vad,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, vad),
      NULL },

    { ngx_string("twirt_noise_reduction"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_noise_reduction,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, noise_reduction),
      NULL },

    { ngx_string("twirt_tools"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_tools,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tools),
      NULL },

    { ngx_string("twirt_tool_uri"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_uri),
      NULL },

    { ngx_string("twirt_tool_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_secret),
      NULL },

    { ngx_string("twirt_tool_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_timeout),
      NULL },

    { ngx_string("twirt_tool_max_output"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_max_output),
      NULL },

    { ngx_string("twirt_tool_concurrency"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_concurrency),
      NULL },

    { ngx_string("twirt_tool_filler"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_tool_filler,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_filler),
      NULL },

    { ngx_string("twirt_session_rotate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_session_rotate,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, session_rotate),
      NULL },

    { ngx_string("twirt_silence_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_silence_timeout,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, silence_timeout),
      NULL },

    { ngx_string("twirt_silence_tries"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_silence_tries,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, silence_tries),
      NULL },

    { ngx_string("twirt_silence_prompt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_spoken,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, silence_prompt),
      NULL },

    { ngx_string("twirt_silence_goodbye"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_spoken,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, silence_goodbye),
      &ngx_http_twirt_spoken_off },

    { ngx_string("twirt_response_apology"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_spoken,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, response_apology),
      &ngx_http_twirt_spoken_off },

    { ngx_string("twirt_end_call"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, end_call),
      NULL },

    { ngx_string("twirt_dtmf"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_twirt_dtmf,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, dtmf),
      NULL },

    { ngx_string("twirt_max_output_tokens"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_max_output_tokens,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_output_tokens),
      NULL },

    { ngx_string("twirt_session_json"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_session_json,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, session_json),
      NULL },

    { ngx_string("twirt_speed"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_speed,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, speed),
      NULL },

    { ngx_string("twirt_tool_choice"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_tool_choice,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, tool_choice),
      NULL },

    { ngx_string("twirt_truncation"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_truncation,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, truncation),
      NULL },

    { ngx_string("twirt_transcription_prompt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, transcription_prompt),
      NULL },

    { ngx_string("twirt_prompt"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_twirt_prompt,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, prompt),
      NULL },

    { ngx_string("twirt_price"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_twirt_price,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, prices),
      NULL },

    { ngx_string("twirt_early_audio"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, early_audio),
      NULL },

    { ngx_string("twirt_agent_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, agent_timeout),
      NULL },

    { ngx_string("twirt_stream_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_url_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, stream_url),
      NULL },

    { ngx_string("twirt_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_url_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, public_url),
      NULL },

    { ngx_string("twirt_twilio_auth_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, auth_token),
      NULL },

    { ngx_string("twirt_parameter"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_twirt_parameter,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, params),
      NULL },

    { ngx_string("twirt_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_twirt_say,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, say),
      NULL },

    { ngx_string("twirt_connect_action"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_connect_action,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, action),
      NULL },

    { ngx_string("twirt_stream_status_callback"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_connect_action,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, stream_status),
      NULL },

    { ngx_string("twirt_fallback_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_twirt_say,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, fallback_say),
      NULL },

    { ngx_string("twirt_fallback_dial"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_fallback_dial,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, fallback_dial),
      NULL },

    { ngx_string("twirt_transfer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_2MORE,
      ngx_http_twirt_transfer_directive,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, transfers),
      NULL },

    { ngx_string("twirt_twiml_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_body_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_module_ctx = {
    ngx_http_twirt_add_variables,          /* preconfiguration */
    ngx_http_twirt_init,                   /* postconfiguration */

    ngx_http_twirt_create_main_conf,       /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_twirt_create_loc_conf,        /* create location configuration */
    ngx_http_twirt_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_module_ctx,            /* module context */
    ngx_http_twirt_commands,               /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_twirt_init_process,           /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_twirt_exit_process,           /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_twirt_default_twilio_url =
    ngx_string("https://api.twilio.com");

static ngx_str_t  ngx_http_twirt_default_url =
    ngx_string("wss://api.openai.com/v1/realtime?model=gpt-realtime");


/*
 * gpt-realtime; gpt-4o-mini-transcribe for input transcription in
 * tokens, whisper-1 by the minute
 */
static ngx_http_twirt_prices_t  ngx_http_twirt_default_prices = {
    32.0, 0.40, 64.0, 4.0, 0.40, 16.0, 3.0, 5.0, 0.006
};


/* server VAD, tuned for phone lines */
static ngx_http_twirt_vad_t  ngx_http_twirt_default_vad = {
    NGX_HTTP_TWIRT_VAD_SERVER, 0.6, 300, 500, NGX_HTTP_TWIRT_EAGERNESS_UNSET,
    1, 1
};


static ngx_conf_enum_t  ngx_http_twirt_dtmf_modes[] = {
    { ngx_string("off"), NGX_HTTP_TWIRT_DTMF_OFF },
    { ngx_string("model"), NGX_HTTP_TWIRT_DTMF_MODEL },
    { ngx_null_string, 0 }
};


static ngx_http_variable_t  ngx_http_twirt_vars[] = {

    { ngx_string("twirt_param_"), NULL, ngx_http_twirt_param_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

    { ngx_string("twirt_call_sid"), NULL, ngx_http_twirt_call_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("twirt_stream_sid"), NULL, ngx_http_twirt_call_variable,
      1, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("twirt_end_reason"), NULL, ngx_http_twirt_call_variable,
      2, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("twirt_duration_ms"), NULL, ngx_http_twirt_call_variable,
      3, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("twirt_tokens"), NULL, ngx_http_twirt_call_variable,
      4, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("twirt_cost_usd"), NULL, ngx_http_twirt_call_variable,
      5, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_twirt_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_twirt_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * The shared zones: the metrics, summed over the workers, and the recent
 * call outcomes that <Connect action> is answered from
 */

static ngx_int_t
ngx_http_twirt_init(ngx_conf_t *cf)
{
    if (ngx_http_twirt_metrics_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_tool_init(cf) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_twirt_outcome_init(cf);
}


static ngx_int_t
ngx_http_twirt_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_twirt_metrics_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_twirt_upstream_pool_init_process(cycle);
}


/* the pools first: their gauge is back to zero before the slot is left */

static void
ngx_http_twirt_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_upstream_pool_exit_process(cycle);
    ngx_http_twirt_metrics_exit_process(cycle);
}


static void *
ngx_http_twirt_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_main_conf_t  *tmcf;

    tmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_main_conf_t));
    if (tmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&tmcf->pools, cf->pool, 4,
                       sizeof(ngx_http_twirt_upstream_pool_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return tmcf;
}


static void *
ngx_http_twirt_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->auth_token = { 0, NULL };
     */

    conf->stream_url = NGX_CONF_UNSET_PTR;
    conf->public_url = NGX_CONF_UNSET_PTR;
    conf->params = NGX_CONF_UNSET_PTR;
    conf->say = NGX_CONF_UNSET_PTR;
    conf->action = NGX_CONF_UNSET_PTR;
    conf->stream_status = NGX_CONF_UNSET_PTR;
    conf->fallback_say = NGX_CONF_UNSET_PTR;
    conf->fallback_dial = NGX_CONF_UNSET_PTR;
    conf->transfers = NGX_CONF_UNSET_PTR;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->max_frame_size = NGX_CONF_UNSET_SIZE;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->send_queue_size = NGX_CONF_UNSET_SIZE;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->close_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_call_duration = NGX_CONF_UNSET_MSEC;
    conf->openai_url = NGX_CONF_UNSET_PTR;
    conf->ssl_verify = NGX_CONF_UNSET;
    conf->connect_timeout = NGX_CONF_UNSET_MSEC;
    conf->pool_size = NGX_CONF_UNSET_UINT;
    conf->greeting_cache = NGX_CONF_UNSET_PTR;
    conf->noise_reduction = NGX_CONF_UNSET_UINT;
    conf->max_output_tokens = NGX_CONF_UNSET;
    conf->vad.type = NGX_CONF_UNSET_UINT;
    conf->tools = NGX_CONF_UNSET_PTR;
    conf->speed = -1;
    conf->truncation = NGX_CONF_UNSET_UINT;
    conf->prompt = NGX_CONF_UNSET_PTR;
    conf->session_json = NGX_CONF_UNSET_PTR;
    conf->end_call = NGX_CONF_UNSET;
    conf->dtmf = NGX_CONF_UNSET_UINT;
    conf->prices = NGX_CONF_UNSET_PTR;
    conf->early_audio = NGX_CONF_UNSET_MSEC;
    conf->agent_timeout = NGX_CONF_UNSET_MSEC;
    conf->tool_timeout = NGX_CONF_UNSET_MSEC;
    conf->tool_max_output = NGX_CONF_UNSET_SIZE;
    conf->tool_concurrency = NGX_CONF_UNSET_UINT;
    conf->tool_filler_after = NGX_CONF_UNSET_MSEC;
    conf->mark_interval = NGX_CONF_UNSET_MSEC;
    conf->silence_timeout = NGX_CONF_UNSET_MSEC;
    conf->session_rotate = NGX_CONF_UNSET_MSEC;
    conf->silence_tries = NGX_CONF_UNSET_UINT;
    conf->twilio_api_url = NGX_CONF_UNSET_PTR;
    conf->twilio_ssl_verify = NGX_CONF_UNSET;
    conf->twilio_timeout = NGX_CONF_UNSET_MSEC;

    return conf;
}


static const char  *ngx_http_twirt_openai_directives[2] = {
    "twirt_openai_url", "twirt_openai_ssl_verify"
};


static char *
ngx_http_twirt_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_twirt_loc_conf_t  *prev = parent;
    ngx_http_twirt_loc_conf_t  *conf = child;

    ngx_conf_merge_ptr_value(conf->stream_url, prev->stream_url, NULL);
    ngx_conf_merge_ptr_value(conf->public_url, prev->public_url, NULL);
    ngx_conf_merge_str_value(conf->auth_token, prev->auth_token, "");
    ngx_conf_merge_ptr_value(conf->params, prev->params, NULL);
    ngx_conf_merge_ptr_value(conf->say, prev->say, NULL);
    ngx_conf_merge_ptr_value(conf->action, prev->action, NULL);
    ngx_conf_merge_ptr_value(conf->stream_status, prev->stream_status, NULL);
    ngx_conf_merge_ptr_value(conf->fallback_say, prev->fallback_say, NULL);
    ngx_conf_merge_ptr_value(conf->fallback_dial, prev->fallback_dial, NULL);
    ngx_conf_merge_ptr_value(conf->transfers, prev->transfers, NULL);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              16 * 1024);

    /*
     * Without <Connect action> Twilio plays the verbs after <Connect>
     * whenever the stream ends: the fallback would follow every goodbye
     */

    if (conf->twiml && conf->action == NULL
        && (conf->fallback_say || conf->fallback_dial))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" needs \"twirt_connect_action\" in a "
                           "\"twirt_twiml\" location: without it Twilio "
                           "plays the fallback after every call, also after "
                           "a normal goodbye; add \"twirt_connect_action "
                           "/twilio/after;\" and \"location = /twilio/after "
                           "{ twirt_action; }\" where the fallback is seen",
                           conf->fallback_say ? "twirt_fallback_say"
                                              : "twirt_fallback_dial");
        return NGX_CONF_ERROR;
    }

    if (conf->action_handler && !conf->fallback_say && !conf->fallback_dial)
    {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"twirt_action\" without \"twirt_fallback_say\" "
                           "or \"twirt_fallback_dial\": a failed call is "
                           "hung up");
    }

    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->send_queue_size, prev->send_queue_size,
                              256 * 1024);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 15000);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout, 5000);
    ngx_conf_merge_msec_value(conf->max_call_duration,
                              prev->max_call_duration, 3600000);

    if (conf->max_frame_size > conf->max_message_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_max_frame_size\" %uz is larger than "
                           "\"twirt_max_message_size\" %uz",
                           conf->max_frame_size, conf->max_message_size);
        return NGX_CONF_ERROR;
    }

    if (conf->send_queue_size < 2 * NGX_HTTP_TWIRT_WS_MAX_CONTROL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_send_queue_size\" %uz is too small",
                           conf->send_queue_size);
        return NGX_CONF_ERROR;
    }

    conf->twilio_ws.max_frame = conf->max_frame_size;
    conf->twilio_ws.max_message = conf->max_message_size;
    conf->twilio_ws.max_queue = conf->send_queue_size;
    conf->twilio_ws.buffer_size = 4096;
    conf->twilio_ws.idle_timeout = conf->idle_timeout;
    conf->twilio_ws.close_timeout = conf->close_timeout;

    if (conf->openai_url == NGX_CONF_UNSET_PTR) {
        if (prev->openai_url == NGX_CONF_UNSET_PTR) {
            prev->openai_url = ngx_http_twirt_url_parse(cf,
                                   &ngx_http_twirt_default_url,
                                   NGX_HTTP_TWIRT_URL_WS, "Realtime API URL");
            if (prev->openai_url == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        conf->openai_url = prev->openai_url;
    }

    ngx_conf_merge_str_value(conf->api_key, prev->api_key, "");
    ngx_conf_merge_value(conf->ssl_verify, prev->ssl_verify, 1);
    ngx_conf_merge_str_value(conf->ssl_trusted_certificate,
                             prev->ssl_trusted_certificate,
                             "/etc/ssl/certs/ca-certificates.crt");
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              3000);

    /* the size and the age come from one directive; off by default */
    if (conf->pool_size == NGX_CONF_UNSET_UINT) {
        conf->pool_size = prev->pool_size;
        conf->pool_max_age = prev->pool_max_age;
    }

    if (conf->pool_size == NGX_CONF_UNSET_UINT) {
        conf->pool_size = 0;
        conf->pool_max_age = NGX_HTTP_TWIRT_POOL_MAX_AGE;
    }

    ngx_conf_merge_str_value(conf->model, prev->model, "gpt-realtime");
    ngx_conf_merge_str_value(conf->instructions, prev->instructions, "");
    ngx_conf_merge_str_value(conf->greeting, prev->greeting, "");
    ngx_conf_merge_ptr_value(conf->greeting_cache, prev->greeting_cache,
                             NULL);
    ngx_conf_merge_str_value(conf->voice, prev->voice, "marin");

    if (conf->transcription.data == NULL) {
        conf->transcription = prev->transcription;
        conf->language = prev->language;
    }

    ngx_conf_merge_str_value(conf->transcription, prev->transcription,
                             "gpt-4o-mini-transcribe");
    ngx_conf_merge_str_value(conf->transcription_prompt,
                             prev->transcription_prompt, "");
    ngx_conf_merge_uint_value(conf->noise_reduction, prev->noise_reduction,
                              NGX_HTTP_TWIRT_NOISE_NEAR_FIELD);
    ngx_conf_merge_value(conf->max_output_tokens, prev->max_output_tokens,
                         NGX_HTTP_TWIRT_TOKENS_INF);

    if (conf->vad.type == NGX_CONF_UNSET_UINT) {
        conf->vad = (prev->vad.type == NGX_CONF_UNSET_UINT)
                    ? ngx_http_twirt_default_vad : prev->vad;
    }

    ngx_conf_merge_ptr_value(conf->tools, prev->tools, NULL);
    ngx_conf_merge_str_value(conf->tool_choice, prev->tool_choice, "auto");

    /* not sent when not set: the API's default speed applies */
    if (conf->speed < 0) {
        conf->speed = prev->speed;
    }

    if (conf->truncation == NGX_CONF_UNSET_UINT) {
        conf->truncation = prev->truncation;
        conf->retention_ratio = prev->retention_ratio;
    }

    ngx_conf_merge_uint_value(conf->truncation, prev->truncation,
                              NGX_HTTP_TWIRT_TRUNCATION_AUTO);
    ngx_conf_merge_ptr_value(conf->prompt, prev->prompt, NULL);
    ngx_conf_merge_ptr_value(conf->session_json, prev->session_json, NULL);
    ngx_conf_merge_value(conf->end_call, prev->end_call, 1);

    /* the mode and its parameters come from one directive */
    if (conf->dtmf == NGX_CONF_UNSET_UINT) {
        conf->dtmf = prev->dtmf;
        conf->dtmf_terminator = prev->dtmf_terminator;
        conf->dtmf_timeout = prev->dtmf_timeout;
    }

    ngx_conf_merge_uint_value(conf->dtmf, prev->dtmf,
                              NGX_HTTP_TWIRT_DTMF_OFF);
    ngx_conf_merge_ptr_value(conf->prices, prev->prices,
                             &ngx_http_twirt_default_prices);
    ngx_conf_merge_msec_value(conf->early_audio, prev->early_audio, 2000);
    ngx_conf_merge_msec_value(conf->agent_timeout, prev->agent_timeout, 500);

    ngx_conf_merge_str_value(conf->tool_uri, prev->tool_uri, "");
    ngx_conf_merge_str_value(conf->tool_secret, prev->tool_secret, "");
    ngx_conf_merge_msec_value(conf->tool_timeout, prev->tool_timeout, 5000);
    ngx_conf_merge_size_value(conf->tool_max_output, prev->tool_max_output,
                              16 * 1024);
    ngx_conf_merge_uint_value(conf->tool_concurrency, prev->tool_concurrency,
                              4);

    /* the text and its time go together; "off" is a time of 0 */

    if (conf->tool_filler.data == NULL) {
        conf->tool_filler = prev->tool_filler;
        conf->tool_filler_after = prev->tool_filler_after;
    }

    ngx_conf_merge_str_value(conf->tool_filler, prev->tool_filler,
                             "少々お待ちください");
    ngx_conf_merge_msec_value(conf->tool_filler_after,
                              prev->tool_filler_after, 1500);

    ngx_conf_merge_msec_value(conf->mark_interval, prev->mark_interval, 100);
    ngx_conf_merge_msec_value(conf->silence_timeout, prev->silence_timeout,
                              10000);
    /* 50 minutes: 10 of the API's 60 left to find a moment between turns */
    ngx_conf_merge_msec_value(conf->session_rotate, prev->session_rotate,
                              3000000);
    ngx_conf_merge_uint_value(conf->silence_tries, prev->silence_tries, 2);
    ngx_conf_merge_str_value(conf->silence_prompt, prev->silence_prompt,
                             "もしもし、お聞きになれますか？");
    ngx_conf_merge_str_value(conf->silence_goodbye, prev->silence_goodbye,
                             "お電話が遠いようですので、失礼いたします。");
    ngx_conf_merge_str_value(conf->response_apology, prev->response_apology,
                             "恐れ入ります、もう一度お願いできますか？");

    conf->upstream_ws.max_frame = conf->max_message_size;
    conf->upstream_ws.max_message = conf->max_message_size;
    conf->upstream_ws.max_queue = conf->send_queue_size;
    conf->upstream_ws.buffer_size = 16384;
    conf->upstream_ws.idle_timeout = 0;
    conf->upstream_ws.close_timeout = conf->close_timeout;

    if (conf->twilio_api_url == NGX_CONF_UNSET_PTR) {
        if (prev->twilio_api_url == NGX_CONF_UNSET_PTR) {
            prev->twilio_api_url = ngx_http_twirt_url_parse(cf,
                                       &ngx_http_twirt_default_twilio_url,
                                       NGX_HTTP_TWIRT_URL_HTTP,
                                       "Twilio API URL");
            if (prev->twilio_api_url == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        conf->twilio_api_url = prev->twilio_api_url;
    }

    ngx_conf_merge_str_value(conf->account_sid, prev->account_sid, "");

    /* the key and its secret come from one directive */
    if (conf->twilio_key.data == NULL) {
        conf->twilio_key = prev->twilio_key;
        conf->twilio_secret = prev->twilio_secret;
    }

    ngx_conf_merge_value(conf->twilio_ssl_verify, prev->twilio_ssl_verify,
                         1);
    ngx_conf_merge_str_value(conf->twilio_ssl_trusted_certificate,
                             prev->twilio_ssl_trusted_certificate,
                             "/etc/ssl/certs/ca-certificates.crt");
    ngx_conf_merge_msec_value(conf->twilio_timeout, prev->twilio_timeout,
                              10000);
    ngx_conf_merge_str_value(conf->outbound_url, prev->outbound_url, "");
    ngx_conf_merge_str_value(conf->outbound_status_callback,
                             prev->outbound_status_callback, "");

    if (conf->calls
        && ngx_http_twirt_outbound_init_conf(cf, conf) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (conf->stream) {
        if (ngx_http_twirt_check_session(cf, conf) != NGX_CONF_OK
            || ngx_http_twirt_check_tools(cf, conf) != NGX_CONF_OK)
        {
            return NGX_CONF_ERROR;
        }

        conf->openai_tls.verify = conf->ssl_verify;

        if (ngx_http_twirt_tls_init(cf, &conf->openai_tls, conf->openai_url,
                                    &conf->ssl_trusted_certificate,
                                    ngx_http_twirt_openai_directives)
            != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }

        if (conf->pool_size
            && ngx_http_twirt_upstream_pool_add(cf, conf) != NGX_OK)
        {
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/*
 * What only the whole configuration of a stream location can say: the
 * session's model is the one the URL connects to, and a tool_choice that
 * names a function names a declared one.
 */

static char *
ngx_http_twirt_check_session(ngx_conf_t *cf, ngx_http_twirt_loc_conf_t *conf)
{
    u_char      *p, *end, *v;
    size_t       i;
    json_t      *tool, *name;
    ngx_str_t    model;
    ngx_uint_t   word;

    end = conf->openai_url->uri.data + conf->openai_url->uri.len;
    p = ngx_strlchr(conf->openai_url->uri.data, end, '?');

    while (p && p < end) {
        p++;

        if ((size_t) (end - p) > sizeof("model=") - 1
            && ngx_strncmp(p, "model=", sizeof("model=") - 1) == 0)
        {
            v = p + sizeof("model=") - 1;
            p = ngx_strlchr(v, end, '&');

            model.data = v;
            model.len = (p ? p : end) - v;

            if (model.len != conf->model.len
                || ngx_strncmp(model.data, conf->model.data, model.len) != 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"twirt_model\" is \"%V\" but "
                                   "\"twirt_openai_url\" connects to "
                                   "\"model=%V\": set both to the same "
                                   "model", &conf->model, &model);
                return NGX_CONF_ERROR;
            }

            break;
        }

        p = ngx_strlchr(p, end, '&');
    }

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_tool_choices,
                                     &conf->tool_choice, &word)
        == NGX_OK)
    {
        return NGX_CONF_OK;
    }

    if (conf->end_call && conf->tool_choice.len == sizeof("end_call") - 1
        && ngx_strncmp(conf->tool_choice.data, "end_call",
                       conf->tool_choice.len)
           == 0)
    {
        return NGX_CONF_OK;
    }

    json_array_foreach(conf->tools, i, tool) {
        name = json_object_get(tool, "name");

        if (json_string_length(name) == conf->tool_choice.len
            && ngx_strncmp(json_string_value(name), conf->tool_choice.data,
                           conf->tool_choice.len)
               == 0)
        {
            return NGX_CONF_OK;
        }
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"twirt_tool_choice\" names the function \"%V\", "
                       "which neither \"twirt_tools\" nor "
                       "\"twirt_end_call\" declares", &conf->tool_choice);

    return NGX_CONF_ERROR;
}


static char *
ngx_http_twirt_twiml(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    /*
     * twirt_twiml; twirt_action: the end of the stream; twirt_stream_status;
     * twirt_call_status; twirt_calls
     */

    switch (cmd->offset) {

    case 0:
        clcf->handler = ngx_http_twirt_twiml_handler;
        tlcf->twiml = 1;
        break;

    case 1:
        clcf->handler = ngx_http_twirt_action_handler;
        tlcf->action_handler = 1;
        break;

    case 2:
        clcf->handler = ngx_http_twirt_stream_status_handler;
        break;

    case 3:
        clcf->handler = ngx_http_twirt_call_status_handler;
        break;

    default:
        clcf->handler = ngx_http_twirt_calls_handler;
        tlcf->calls = 1;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_http_twirt_metrics_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_http_twirt_stream_handler;
    tlcf->stream = 1;

    return NGX_CONF_OK;
}


/* a URL, possibly with variables; a static one must be absolute */

static char *
ngx_http_twirt_url_value(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_complex_value_t  **cv;

    cv = (ngx_http_complex_value_t **) (p + cmd->offset);

    if (*cv != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (*cv == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], *cv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if ((*cv)->lengths == NULL
        && ngx_strlcasestrn(value[1].data, value[1].data + value[1].len,
                            (u_char *) "://", 3 - 1)
           == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be an absolute URL with a scheme, "
                           "not \"%V\"", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cmd->offset == offsetof(ngx_http_twirt_loc_conf_t, stream_url)
        && (*cv)->lengths == NULL
        && (value[1].len < sizeof("wss://") - 1
            || ngx_strncasecmp(value[1].data, (u_char *) "wss://",
                               sizeof("wss://") - 1) != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_stream_url\" must start with \"wss://\": "
                           "Twilio streams only to secure WebSockets");
        return NGX_CONF_ERROR;
    }

    if (cmd->offset == offsetof(ngx_http_twirt_loc_conf_t, stream_url)
        && (*cv)->lengths == NULL
        && ngx_strlchr(value[1].data, value[1].data + value[1].len, '?'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_stream_url\" cannot have a query string: "
                           "Twilio drops it, use \"twirt_parameter\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_parameter(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    size_t                   n;
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_http_twirt_param_t  *param;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty name";
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= ' ' || value[1].data[i] == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter name \"%V\": "
                               "no spaces or control characters", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (tlcf->params == NGX_CONF_UNSET_PTR) {
        tlcf->params = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_twirt_param_t));
        if (tlcf->params == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    param = tlcf->params->elts;

    for (i = 0; i < tlcf->params->nelts; i++) {
        if (param[i].name.len == value[1].len
            && ngx_strncmp(param[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    param = ngx_array_push(tlcf->params);
    if (param == NULL) {
        return NGX_CONF_ERROR;
    }

    param->name = value[1];

    if (ngx_http_twirt_complex(cf, &value[2], &param->value) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (param->value.lengths == NULL) {
        n = ngx_http_twirt_utf8_length(value[1].data, value[1].len)
            + ngx_http_twirt_utf8_length(value[2].data, value[2].len);

        if (n >= NGX_HTTP_TWIRT_PARAM_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "parameter \"%V\" is %uz characters with its "
                               "name, Twilio allows less than %d",
                               &value[1], n, NGX_HTTP_TWIRT_PARAM_MAX);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* twirt_say text [language=xx-XX] [voice=name] */

static char *
ngx_http_twirt_say(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t              *value;
    ngx_uint_t              i;
    ngx_http_twirt_say_t  **say;

    say = (ngx_http_twirt_say_t **) (p + cmd->offset);

    if (*say != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has empty text";
    }

    *say = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_say_t));
    if (*say == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &(*say)->text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_twirt_option(&value[i], "language=", &(*say)->language)
            == NGX_OK
            || ngx_http_twirt_option(&value[i], "voice=", &(*say)->voice)
               == NGX_OK)
        {
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"language=\" or \"voice=\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * twirt_connect_action url [method=POST|GET];
 * twirt_stream_status_callback url [method=POST|GET]
 */

static char *
ngx_http_twirt_connect_action(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                 *value;
    ngx_http_twirt_action_t   *action, **field;

    field = (ngx_http_twirt_action_t **) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty URL";
    }

    action = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_action_t));
    if (action == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &action->url) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&action->method, "POST");

    if (cf->args->nelts == 3) {
        if (ngx_http_twirt_option(&value[2], "method=", &action->method)
            != NGX_OK
            || !((action->method.len == 4
                  && ngx_strncmp(action->method.data, "POST", 4) == 0)
                 || (action->method.len == 3
                     && ngx_strncmp(action->method.data, "GET", 3) == 0)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"method=POST\" or \"method=GET\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    *field = action;

    return NGX_CONF_OK;
}


/* twirt_fallback_dial number [caller_id=+81...] */

static char *
ngx_http_twirt_fallback_dial(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t              *value;
    ngx_http_twirt_dial_t  *dial;

    if (tlcf->fallback_dial != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty number";
    }

    dial = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_dial_t));
    if (dial == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &dial->number) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3
        && ngx_http_twirt_option(&value[2], "caller_id=", &dial->caller_id)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"caller_id=\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    tlcf->fallback_dial = dial;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_openai_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->openai_url != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tlcf->openai_url = ngx_http_twirt_url_parse(cf, &value[1],
                                                NGX_HTTP_TWIRT_URL_WS,
                                                "Realtime API URL");
    if (tlcf->openai_url == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* the key from a file, read now: the file may be readable by root only */

static char *
ngx_http_twirt_api_key_file(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char       *rv;
    ngx_str_t  *value, name;

    if (tlcf->api_key.data) {
        return "is duplicate, or conflicts with \"twirt_openai_api_key\"";
    }

    value = cf->args->elts;
    name = value[1];

    rv = ngx_http_twirt_secret_file(cf, &name, &tlcf->api_key);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    tlcf->api_key_file = name;

    return NGX_CONF_OK;
}


/* a secret from a small file, its trailing white space cut; never logged */

static char *
ngx_http_twirt_secret_file(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *secret)
{
    u_char           *p;
    ssize_t           n;
    ngx_file_t        file;
    ngx_file_info_t   fi;

    if (ngx_conf_full_name(cf->cycle, name, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&file, sizeof(ngx_file_t));
    file.name = *name;
    file.log = cf->log;

    file.fd = ngx_open_file(name->data, NGX_FILE_RDONLY, NGX_FILE_OPEN, 0);
    if (file.fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno,
                           ngx_open_file_n " \"%V\" failed", name);
        return NGX_CONF_ERROR;
    }

    if (ngx_fd_info(file.fd, &fi) == NGX_FILE_ERROR
        || ngx_file_size(&fi) > 4096)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "API key file \"%V\" is not a small file", name);
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    p = ngx_pnalloc(cf->pool, ngx_file_size(&fi) + 1);
    if (p == NULL) {
        ngx_close_file(file.fd);
        return NGX_CONF_ERROR;
    }

    n = ngx_read_file(&file, p, ngx_file_size(&fi), 0);
    ngx_close_file(file.fd);

    if (n == NGX_ERROR) {
        return NGX_CONF_ERROR;
    }

    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
    {
        n--;
    }

    if (n == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "API key file \"%V\" is empty", name);
        return NGX_CONF_ERROR;
    }

    secret->data = p;
    secret->len = n;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_twilio_api_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->twilio_api_url != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    tlcf->twilio_api_url = ngx_http_twirt_url_parse(cf, &value[1],
                                                    NGX_HTTP_TWIRT_URL_HTTP,
                                                    "Twilio API URL");
    if (tlcf->twilio_api_url == NULL) {
        return NGX_CONF_ERROR;
    }

    if (tlcf->twilio_api_url->uri.len > 1
        || ngx_strlchr(value[1].data, value[1].data + value[1].len, '?'))
    {
        return "takes only the scheme, the host and the port, as "
               "\"https://api.twilio.com\"";
    }

    return NGX_CONF_OK;
}


/* "AC" or "SK" and 32 hex digits */

static ngx_int_t
ngx_http_twirt_twilio_sid(ngx_str_t *sid, const char *prefix)
{
    ngx_uint_t  i;

    if (sid->len != 34 || ngx_strncmp(sid->data, prefix, 2) != 0) {
        return NGX_DECLINED;
    }

    for (i = 2; i < 34; i++) {
        if (ngx_hextoi(&sid->data[i], 1) == NGX_ERROR) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static char *
ngx_http_twirt_account_sid(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->account_sid.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_twilio_sid(&value[1], "AC") != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid Account SID \"%V\": \"AC\" and 32 hex "
                           "digits", &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->account_sid = value[1];

    return NGX_CONF_OK;
}


/*
 * The credentials of the REST API: twirt_twilio_auth_token_file (0),
 * twirt_twilio_api_key SK... SECRET (1), twirt_twilio_api_key_file (2),
 * a file of "SK...:SECRET".  Secrets are never written to a log.
 */

static char *
ngx_http_twirt_twilio_api_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char       *rv;
    u_char     *colon;
    ngx_str_t  *value, name, text, key, secret;

    value = cf->args->elts;

    if (cmd->offset == 0) {
        if (tlcf->auth_token.data) {
            return "is duplicate, or conflicts with "
                   "\"twirt_twilio_auth_token\"";
        }

        name = value[1];

        return ngx_http_twirt_secret_file(cf, &name, &tlcf->auth_token);
    }

    if (tlcf->twilio_key.data) {
        return "is duplicate";
    }

    if (cmd->offset == 1) {
        key = value[1];
        secret = value[2];

    } else {
        name = value[1];

        rv = ngx_http_twirt_secret_file(cf, &name, &text);
        if (rv != NGX_CONF_OK) {
            return rv;
        }

        colon = ngx_strlchr(text.data, text.data + text.len, ':');

        if (colon == NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "API key file \"%V\" must hold "
                               "\"SK...:secret\"", &name);
            return NGX_CONF_ERROR;
        }

        key.data = text.data;
        key.len = colon - text.data;
        secret.data = colon + 1;
        secret.len = text.data + text.len - secret.data;
    }

    if (ngx_http_twirt_twilio_sid(&key, "SK") != NGX_OK) {
        /* the key SID is not secret; the secret is never logged */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid API key SID: \"SK\" and 32 hex digits");
        return NGX_CONF_ERROR;
    }

    if (secret.len == 0) {
        return "has an empty secret";
    }

    tlcf->twilio_key = key;
    tlcf->twilio_secret = secret;

    return NGX_CONF_OK;
}


/* twirt_outbound_url, twirt_outbound_status_callback: absolute URLs */

static char *
ngx_http_twirt_outbound_url(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_url_t  *url;
    ngx_str_t             *value, *field;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    url = ngx_http_twirt_url_parse(cf, &value[1], NGX_HTTP_TWIRT_URL_HTTP,
                                   "URL for Twilio");
    if (url == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_strlchr(value[1].data, value[1].data + value[1].len, '#')) {
        return "must not have a fragment";
    }

    *field = value[1];

    return NGX_CONF_OK;
}


/*
 * twirt_openai_pool size [max_age=time] | off: a pooled session must
 * leave the call most of the Realtime API's 60 minutes.
 */

static char *
ngx_http_twirt_openai_pool(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_int_t    n;
    ngx_str_t   *value, s;
    ngx_msec_t   age;

    if (tlcf->pool_size != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    age = NGX_HTTP_TWIRT_POOL_MAX_AGE;

    if (cf->args->nelts == 3) {
        if (ngx_http_twirt_max_age(cf, &value[2], &s) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        age = ngx_parse_time(&s, 0);

        if (age == (ngx_msec_t) NGX_ERROR || age == 0
            || age >= NGX_HTTP_TWIRT_SESSION_LIMIT)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"max_age=%V\": a time above 0 and "
                               "under 60m expected (a Realtime session "
                               "lasts at most 60 minutes from the upgrade, "
                               "idle time in the pool included)", &s);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cf->args->nelts == 3) {
            return "takes no \"max_age=\" with \"off\"";
        }

        tlcf->pool_size = 0;
        tlcf->pool_max_age = age;

        return NGX_CONF_OK;
    }

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n < 1 || n > NGX_HTTP_TWIRT_POOL_MAX_SIZE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid pool size \"%V\": a number of "
                           "connections per worker from 1 to %d, or \"off\", "
                           "expected", &value[1],
                           NGX_HTTP_TWIRT_POOL_MAX_SIZE);
        return NGX_CONF_ERROR;
    }

    tlcf->pool_size = n;
    tlcf->pool_max_age = age;

    return NGX_CONF_OK;
}


/*
 * twirt_greeting_cache zone=NAME:SIZE [max_age=TIME] | off: one zone may
 * serve several locations (named with the same size)
 */

static char *
ngx_http_twirt_greeting_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    u_char                          *p;
    time_t                           age;
    ssize_t                          size;
    ngx_str_t                       *value, s, name;
    ngx_http_twirt_greeting_conf_t  *gc;

    if (tlcf->greeting_cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cf->args->nelts == 3) {
            return "takes no \"max_age=\" with \"off\"";
        }

        tlcf->greeting_cache = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_http_twirt_option(&value[1], "zone=", &s) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"zone=NAME:SIZE\" or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    p = ngx_strlchr(s.data, s.data + s.len, ':');

    if (p == NULL || p == s.data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone \"%V\": a name and a size "
                           "expected, e.g. \"zone=greetings:10m\"", &s);
        return NGX_CONF_ERROR;
    }

    name.data = s.data;
    name.len = p - s.data;

    s.data = p + 1;
    s.len -= name.len + 1;

    size = ngx_parse_size(&s);

    if (size == NGX_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid zone size \"%V\"", &s);
        return NGX_CONF_ERROR;
    }

    /* the slab pool's own pages, and room for a few greetings */

    if (size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is too small: %uz bytes at least "
                           "(a greeting of 3 s is 24k of audio)",
                           &name, 8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    age = NGX_HTTP_TWIRT_GREETING_MAX_AGE;

    if (cf->args->nelts == 3) {
        if (ngx_http_twirt_max_age(cf, &value[2], &s) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        age = ngx_parse_time(&s, 1);

        if (age == (time_t) NGX_ERROR || age == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid \"max_age=%V\": a time of 1s or "
                               "more expected", &s);
            return NGX_CONF_ERROR;
        }
    }

    gc = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_greeting_conf_t));
    if (gc == NULL) {
        return NGX_CONF_ERROR;
    }

    gc->max_age = age;
    gc->zone = ngx_http_twirt_greeting_zone(cf, &name, size);

    if (gc->zone == NULL) {
        return NGX_CONF_ERROR;
    }

    tlcf->greeting_cache = gc;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_voice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;
    ngx_uint_t  v;

    if (tlcf->voice.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_voices, &value[1], &v)
        != NGX_OK)
    {
        return ngx_http_twirt_enum_error(cf, "unknown voice", &value[1],
                                         ngx_http_twirt_voices);
    }

    tlcf->voice = *ngx_http_twirt_realtime_enum_name(ngx_http_twirt_voices, v);

    return NGX_CONF_OK;
}


/* twirt_transcription model [language=ja] | off */

static char *
ngx_http_twirt_transcription(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;
    ngx_uint_t  v;

    if (tlcf->transcription.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_transcription_models,
                                     &value[1], &v)
        != NGX_OK)
    {
        return ngx_http_twirt_enum_error(cf, "unknown transcription model",
                                         &value[1],
                                         ngx_http_twirt_transcription_models);
    }

    if (v == 0) {
        ngx_str_set(&tlcf->transcription, "");

        if (cf->args->nelts == 3) {
            return "takes no language when \"off\"";
        }

        return NGX_CONF_OK;
    }

    tlcf->transcription = *ngx_http_twirt_realtime_enum_name(
                              ngx_http_twirt_transcription_models, v);

    if (cf->args->nelts == 3
        && ngx_http_twirt_option(&value[2], "language=", &tlcf->language)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"language=\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * twirt_vad server [threshold=0.6] [prefix_padding_ms=300]
 *                  [silence_duration_ms=500] [create_response=on|off]
 *                  [interrupt_response=on|off];
 * twirt_vad semantic [eagerness=low|medium|high|auto] [...response=];
 * ("off" is refused: nobody would commit the caller's audio)
 */

static char *
ngx_http_twirt_vad(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char                  *why;
    u_char                 names[64], *last;
    ngx_str_t             *value, v;
    ngx_uint_t             i;
    ngx_http_twirt_vad_t  *vad;

    vad = &tlcf->vad;

    if (vad->type != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_vad_types, &value[1],
                                     &vad->type)
        != NGX_OK)
    {
        return ngx_http_twirt_enum_error(cf, "invalid turn detection",
                                         &value[1], ngx_http_twirt_vad_types);
    }

    if (vad->type == NGX_HTTP_TWIRT_VAD_OFF) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_vad off\" cannot answer the caller: "
                           "without turn detection nobody commits the "
                           "caller's audio, so the model never hears a "
                           "turn; use \"server\" or \"semantic\"");
        return NGX_CONF_ERROR;
    }

    vad->threshold = -1;
    vad->prefix_padding_ms = -1;
    vad->silence_duration_ms = -1;
    vad->eagerness = NGX_HTTP_TWIRT_EAGERNESS_UNSET;
    vad->create_response = 1;
    vad->interrupt_response = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        /* the reason of the last value refused, "" when there is none */
        why = "";

        if (ngx_http_twirt_option(&value[i], "create_response=", &v) == NGX_OK
            || ngx_http_twirt_option(&value[i], "interrupt_response=", &v)
               == NGX_OK)
        {
            if (!(v.len == 2 && ngx_strncmp(v.data, "on", 2) == 0)
                && !(v.len == 3 && ngx_strncmp(v.data, "off", 3) == 0))
            {
                goto invalid;
            }

            if (value[i].data[0] == 'c') {
                vad->create_response = (v.len == 2);

            } else {
                vad->interrupt_response = (v.len == 2);
            }

            continue;
        }

        if (vad->type == NGX_HTTP_TWIRT_VAD_SEMANTIC) {
            if (ngx_http_twirt_option(&value[i], "eagerness=", &v) != NGX_OK)
            {
                goto invalid;
            }

            if (ngx_http_twirt_realtime_enum(ngx_http_twirt_eagerness, &v,
                                             &vad->eagerness)
                != NGX_OK)
            {
                last = ngx_http_twirt_realtime_enum_names(names,
                           names + sizeof(names), ngx_http_twirt_eagerness);

                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\" for semantic "
                                   "voice activity detection, expected one "
                                   "of %*s", &value[i], last - names, names);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_http_twirt_option(&value[i], "threshold=", &v) == NGX_OK) {
            why = ngx_http_twirt_realtime_threshold(&v, &vad->threshold);

        } else if (ngx_http_twirt_option(&value[i], "prefix_padding_ms=", &v)
                   == NGX_OK)
        {
            why = ngx_http_twirt_realtime_ms(&v, &vad->prefix_padding_ms);

        } else if (ngx_http_twirt_option(&value[i], "silence_duration_ms=",
                                         &v)
                   == NGX_OK)
        {
            why = ngx_http_twirt_realtime_ms(&v, &vad->silence_duration_ms);

        } else {
            why = "";
        }

        if (why) {
            goto invalid;
        }
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid parameter \"%V\" for %V voice activity "
                       "detection%s%s", &value[i], &value[1],
                       *why ? ": the value " : "", why);
    return NGX_CONF_ERROR;
}


static char *
ngx_http_twirt_noise_reduction(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value;

    if (tlcf->noise_reduction != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_noise_reductions,
                                     &value[1], &tlcf->noise_reduction)
        != NGX_OK)
    {
        return ngx_http_twirt_enum_error(cf, "invalid noise reduction",
                                         &value[1],
                                         ngx_http_twirt_noise_reductions);
    }

    return NGX_CONF_OK;
}


/*
 * twirt_dtmf off | model [terminator=#] [timeout=2s]: with "model", keys
 * pressed are collected up to the terminator or a pause and given to the
 * model as one input.
 */

static char *
ngx_http_twirt_dtmf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_int_t    ms;
    ngx_str_t   *value, v;
    ngx_uint_t   i;

    if (tlcf->dtmf != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_dtmf_modes, &value[1],
                                     &tlcf->dtmf)
        != NGX_OK)
    {
        return ngx_http_twirt_enum_error(cf, "invalid keypad mode",
                                         &value[1], ngx_http_twirt_dtmf_modes);
    }

    tlcf->dtmf_terminator = '#';
    tlcf->dtmf_timeout = 2000;

    if (tlcf->dtmf == NGX_HTTP_TWIRT_DTMF_OFF) {
        if (cf->args->nelts > 2) {
            return "takes no parameters when \"off\"";
        }

        return NGX_CONF_OK;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_twirt_option(&value[i], "terminator=", &v) == NGX_OK) {
            if (v.len != 1 || !ngx_http_twirt_dtmf_key(v.data[0])) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\": the "
                                   "terminator is one keypad key, 0-9, *, "
                                   "#, A, B, C or D", &value[i]);
                return NGX_CONF_ERROR;
            }

            tlcf->dtmf_terminator = v.data[0];
            continue;
        }

        if (ngx_http_twirt_option(&value[i], "timeout=", &v) == NGX_OK) {
            ms = ngx_parse_time(&v, 0);

            if (ms == NGX_ERROR || ms == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\": the timeout "
                                   "is a time above 0, e.g. \"2s\" or "
                                   "\"1500ms\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            tlcf->dtmf_timeout = (ngx_msec_t) ms;
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"terminator=\" or \"timeout=\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* a JSON file: an array of function definitions, checked now */

static char *
ngx_http_twirt_tools(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    json_t        *tools;
    size_t         i;
    ngx_str_t     *value, path;
    const char    *why;
    json_error_t   err;

    if (tlcf->tools != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    tools = json_load_file((char *) path.data, JSON_REJECT_DUPLICATES, &err);

    if (tools == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tools file \"%V\": %s (line %d)", &path,
                           err.text, err.line);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_json_keep(cf, tools) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!json_is_array(tools)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tools file \"%V\" must hold a JSON array of "
                           "function definitions", &path);
        return NGX_CONF_ERROR;
    }

    why = ngx_http_twirt_tool_check(tools, &i);

    if (why) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "tools file \"%V\": entry %uz %s", &path, i, why);
        return NGX_CONF_ERROR;
    }

    tlcf->tools = tools;

    return NGX_CONF_OK;
}


/* twirt_tool_filler off | TEXT [after=TIME] */

static char *
ngx_http_twirt_tool_filler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    json_t      *text;
    ngx_str_t   *value, s;
    ngx_msec_t   after;

    if (tlcf->tool_filler.data) {
        return "is duplicate";
    }

    value = cf->args->elts;
    after = 1500;

    if (cf->args->nelts == 3) {
        if (value[2].len <= sizeof("after=") - 1
            || ngx_strncmp(value[2].data, "after=", sizeof("after=") - 1)
               != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\": "
                               "\"after=TIME\" expected", &value[2]);
            return NGX_CONF_ERROR;
        }

        s.data = value[2].data + sizeof("after=") - 1;
        s.len = value[2].len - (sizeof("after=") - 1);

        after = ngx_parse_time(&s, 0);

        if (after == (ngx_msec_t) NGX_ERROR || after == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid time \"%V\": a time above 0 such "
                               "as 1500ms or 2s expected", &s);
            return NGX_CONF_ERROR;
        }
    }

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cf->args->nelts == 3) {
            return "takes no \"after=\" with \"off\"";
        }

        tlcf->tool_filler = value[1];
        tlcf->tool_filler_after = 0;

        return NGX_CONF_OK;
    }

    text = json_stringn((char *) value[1].data, value[1].len);

    if (value[1].len == 0 || text == NULL) {
        json_decref(text);
        return "takes a non-empty UTF-8 text or \"off\"";
    }

    json_decref(text);

    tlcf->tool_filler = value[1];
    tlcf->tool_filler_after = after;

    return NGX_CONF_OK;
}


/* twirt_silence_timeout TIME | off */

static char *
ngx_http_twirt_silence_timeout(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t   *value;
    ngx_msec_t   ms;

    if (tlcf->silence_timeout != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        tlcf->silence_timeout = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": a time above 0 such as "
                           "\"10s\" or \"8500ms\", or \"off\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->silence_timeout = ms;

    return NGX_CONF_OK;
}


/* twirt_silence_tries N: the prompts before the goodbye, 0 to 10 */

static char *
ngx_http_twirt_silence_tries(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_int_t   n;
    ngx_str_t  *value;

    if (tlcf->silence_tries != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;

    n = ngx_atoi(value[1].data, value[1].len);

    if (n == NGX_ERROR || n > 10) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": how many times the "
                           "agent asks a silent caller again before the "
                           "goodbye, 0 to 10", &value[1]);
        return NGX_CONF_ERROR;
    }

    tlcf->silence_tries = n;

    return NGX_CONF_OK;
}


/*
 * A sentence the agent says word for word (twirt_silence_prompt, ...):
 * UTF-8, not empty; "off" where cmd->post allows it, kept as "".
 */

static char *
ngx_http_twirt_spoken(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    json_t     *text;
    ngx_str_t  *field, *value;

    field = (ngx_str_t *) ((u_char *) conf + cmd->offset);

    if (field->data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        if (cmd->post == NULL) {
            return "cannot be \"off\": \"twirt_silence_tries 0\" says the "
                   "goodbye without asking again, \"twirt_silence_timeout "
                   "off\" turns the re-prompts off";
        }

        field->data = value[1].data;
        field->len = 0;

        return NGX_CONF_OK;
    }

    text = json_stringn((char *) value[1].data, value[1].len);

    if (value[1].len == 0 || text == NULL) {
        json_decref(text);
        return cmd->post ? "takes a non-empty UTF-8 text or \"off\""
                         : "takes a non-empty UTF-8 text";
    }

    json_decref(text);

    *field = value[1];

    return NGX_CONF_OK;
}


/* the backend of a stream location: a URI nginx can make a subrequest to */

static char *
ngx_http_twirt_check_tools(ngx_conf_t *cf, ngx_http_twirt_loc_conf_t *conf)
{
    if (conf->tool_uri.len == 0) {
        return NGX_CONF_OK;
    }

    if (conf->tool_uri.data[0] != '/') {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_tool_uri\" must be a URI of this "
                           "server, starting with \"/\", not \"%V\"",
                           &conf->tool_uri);
        return NGX_CONF_ERROR;
    }

    if (conf->tool_secret.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_tool_uri\" needs \"twirt_tool_secret\": "
                           "the backend verifies every tool request with it");
        return NGX_CONF_ERROR;
    }

    if (conf->tool_concurrency == 0 || conf->tool_concurrency > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_tool_concurrency\" must be 1 to 64, "
                           "not %ui", conf->tool_concurrency);
        return NGX_CONF_ERROR;
    }

    if (conf->tool_timeout == 0 || conf->tool_max_output == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%s\" must be above 0",
                           conf->tool_timeout ? "twirt_tool_max_output"
                                              : "twirt_tool_timeout");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_max_output_tokens(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char       *why;
    ngx_str_t  *value;

    if (tlcf->max_output_tokens != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    why = ngx_http_twirt_realtime_max_output_tokens(&value[1],
                                                    &tlcf->max_output_tokens);
    if (why) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid max output tokens \"%V\": it %s",
                           &value[1], why);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* fields twirt does not know yet, merged into the session as they are */

static char *
ngx_http_twirt_session_json(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    u_char         why[256];
    json_t        *json;
    ngx_str_t     *value;
    json_error_t   err;

    if (tlcf->session_json != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    json = json_loadb((char *) value[1].data, value[1].len,
                      JSON_REJECT_DUPLICATES, &err);

    if (json == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid JSON in \"twirt_session_json\": %s",
                           err.text);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_json_keep(cf, json) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!json_is_object(json)) {
        return "must be a JSON object";
    }

    if (ngx_http_twirt_realtime_session_json(json, why, sizeof(why))
        != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid \"twirt_session_json\": %s", why);
        return NGX_CONF_ERROR;
    }

    tlcf->session_json = json;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_speed(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char       *why;
    ngx_str_t  *value;

    if (tlcf->speed >= 0) {
        return "is duplicate";
    }

    value = cf->args->elts;

    why = ngx_http_twirt_realtime_speed(&value[1], &tlcf->speed);
    if (why) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid speed \"%V\": it %s", &value[1], why);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* twirt_tool_choice auto | none | required | function_name */

static char *
ngx_http_twirt_tool_choice(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    char        *why;
    u_char       names[64], *last;
    ngx_str_t   *value;
    ngx_uint_t   v;

    if (tlcf->tool_choice.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_tool_choices, &value[1],
                                     &v)
        != NGX_OK)
    {
        /* a function's name: the stream's location checks it is declared */
        why = ngx_http_twirt_realtime_name(&value[1]);

        if (why) {
            last = ngx_http_twirt_realtime_enum_names(names,
                       names + sizeof(names), ngx_http_twirt_tool_choices);

            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid tool choice \"%V\": expected one "
                               "of %*s or a function's name, and it %s",
                               &value[1], last - names, names, why);
            return NGX_CONF_ERROR;
        }
    }

    tlcf->tool_choice = value[1];

    return NGX_CONF_OK;
}


/* twirt_truncation auto | disabled | retention_ratio=0.8 */

static char *
ngx_http_twirt_truncation(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t  *value, v, name;

    if (tlcf->truncation != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    value = cf->args->elts;
    name = value[1];

    if (ngx_http_twirt_option(&value[1], "retention_ratio=", &v) == NGX_OK) {
        ngx_str_set(&name, "retention_ratio");

        if (ngx_http_twirt_realtime_threshold(&v, &tlcf->retention_ratio)
            != NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid truncation \"%V\": the retention "
                               "ratio is not a number from 0 to 1",
                               &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_truncations, &name,
                                     &tlcf->truncation)
        != NGX_OK
        || (tlcf->truncation == NGX_HTTP_TWIRT_TRUNCATION_RATIO
            && name.data == value[1].data))
    {
        tlcf->truncation = NGX_CONF_UNSET_UINT;

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid truncation \"%V\", expected \"auto\", "
                           "\"disabled\" or \"retention_ratio=\" and a "
                           "number from 0 to 1", &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * twirt_prompt pmpt_... [version=2] [name=value ...]: a reusable prompt;
 * values may use {{name}}, filled per call from the stream's parameters
 */

static char *
ngx_http_twirt_prompt(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    u_char                   *eq;
    ngx_str_t                *value, name;
    ngx_uint_t                i, k;
    ngx_keyval_t             *kv;
    ngx_http_twirt_prompt_t  *prompt;

    if (tlcf->prompt != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_http_twirt_realtime_name(&value[1]) != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid prompt id \"%V\": expected letters, "
                           "digits, '_' and '-', e.g. \"pmpt_123\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    prompt = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_prompt_t));
    if (prompt == NULL) {
        return NGX_CONF_ERROR;
    }

    prompt->id = value[1];

    prompt->variables = ngx_array_create(cf->pool, 4, sizeof(ngx_keyval_t));
    if (prompt->variables == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        eq = ngx_strlchr(value[i].data, value[i].data + value[i].len, '=');

        if (eq == NULL || eq == value[i].data) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid prompt parameter \"%V\", expected "
                               "\"version=\" or a variable as "
                               "\"name=value\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        name.data = value[i].data;
        name.len = eq - value[i].data;

        if (name.len == sizeof("version") - 1
            && ngx_strncmp(name.data, "version", name.len) == 0)
        {
            prompt->version.data = eq + 1;
            prompt->version.len = value[i].len - name.len - 1;

            if (prompt->version.len == 0
                || ngx_atoi(prompt->version.data, prompt->version.len)
                   == NGX_ERROR)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid prompt version \"%V\", "
                                   "expected a number", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_http_twirt_realtime_name(&name) != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid prompt variable name in \"%V\": "
                               "letters, digits, '_' and '-' only",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        kv = prompt->variables->elts;

        for (k = 0; k < prompt->variables->nelts; k++) {
            if (kv[k].key.len == name.len
                && ngx_strncmp(kv[k].key.data, name.data, name.len) == 0)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "duplicate prompt variable \"%V\"",
                                   &name);
                return NGX_CONF_ERROR;
            }
        }

        kv = ngx_array_push(prompt->variables);
        if (kv == NULL) {
            return NGX_CONF_ERROR;
        }

        kv->key = name;
        kv->value.data = eq + 1;
        kv->value.len = value[i].len - name.len - 1;
    }

    tlcf->prompt = prompt;

    return NGX_CONF_OK;
}


/*
 * twirt_price audio_in=32 audio_out=64 ... (USD per million tokens),
 * transcribe_minute=0.006 (USD per minute, whisper-1)
 */

static char *
ngx_http_twirt_price(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    double                   d, *field;
    ngx_str_t               *value, v;
    ngx_uint_t               i, k;
    ngx_http_twirt_prices_t *prices;

    static struct {
        const char  *name;
        size_t       offset;
    } keys[] = {
        { "audio_in=", offsetof(ngx_http_twirt_prices_t, audio_in) },
        { "cached_audio_in=",
          offsetof(ngx_http_twirt_prices_t, cached_audio_in) },
        { "audio_out=", offsetof(ngx_http_twirt_prices_t, audio_out) },
        { "text_in=", offsetof(ngx_http_twirt_prices_t, text_in) },
        { "cached_text_in=",
          offsetof(ngx_http_twirt_prices_t, cached_text_in) },
        { "text_out=", offsetof(ngx_http_twirt_prices_t, text_out) },
        { "transcribe_in=", offsetof(ngx_http_twirt_prices_t, transcribe_in) },
        { "transcribe_out=",
          offsetof(ngx_http_twirt_prices_t, transcribe_out) },
        { "transcribe_minute=",
          offsetof(ngx_http_twirt_prices_t, transcribe_minute) },
        { NULL, 0 }
    };

    if (tlcf->prices != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    prices = ngx_palloc(cf->pool, sizeof(ngx_http_twirt_prices_t));
    if (prices == NULL) {
        return NGX_CONF_ERROR;
    }

    *prices = ngx_http_twirt_default_prices;
    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {

        for (k = 0; keys[k].name; k++) {
            if (ngx_http_twirt_option(&value[i], keys[k].name, &v) == NGX_OK) {
                break;
            }
        }

        if (keys[k].name == NULL) {
            goto invalid;
        }

        if (ngx_http_twirt_realtime_decimal(&v, 0.0, 1000000.0, &d) != NULL) {
            goto invalid;
        }

        field = (double *) ((char *) prices + keys[k].offset);
        *field = d;
    }

    tlcf->prices = prices;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid price \"%V\", expected e.g. "
                       "\"audio_in=32\" (USD per million tokens) or "
                       "\"transcribe_minute=0.006\" (USD per minute)",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* a value not in its table: the message lists what the table holds */

static char *
ngx_http_twirt_enum_error(ngx_conf_t *cf, const char *what, ngx_str_t *value,
    ngx_conf_enum_t *table)
{
    u_char  names[256], *last;

    last = ngx_http_twirt_realtime_enum_names(names, names + sizeof(names),
                                              table);

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s \"%V\", expected one of %*s",
                       what, value, last - names, names);

    return NGX_CONF_ERROR;
}


/* JSON made at configuration time lives as long as the configuration */

static ngx_int_t
ngx_http_twirt_json_keep(ngx_conf_t *cf, json_t *json)
{
    ngx_pool_cleanup_t  *cln;

    if (json == NULL) {
        return NGX_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        json_decref(json);
        return NGX_ERROR;
    }

    cln->handler = ngx_http_twirt_json_cleanup;
    cln->data = json;

    return NGX_OK;
}


static void
ngx_http_twirt_json_cleanup(void *data)
{
    json_decref(data);
}


static ngx_int_t
ngx_http_twirt_complex(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv)
{
    ngx_http_compile_complex_value_t  ccv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;

    return ngx_http_compile_complex_value(&ccv);
}


/* the "max_age=" parameter's value, or an error said */

static ngx_int_t
ngx_http_twirt_max_age(ngx_conf_t *cf, ngx_str_t *arg, ngx_str_t *value)
{
    if (ngx_http_twirt_option(arg, "max_age=", value) != NGX_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"max_age=\" and a time", arg);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* "name=value" arguments: NGX_OK and the value when the name matches */

static ngx_int_t
ngx_http_twirt_option(ngx_str_t *arg, const char *name, ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len <= len || ngx_strncmp(arg->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    value->data = arg->data + len;
    value->len = arg->len - len;

    return NGX_OK;
}


void *
ngx_http_twirt_shm_lookup(ngx_cycle_t *cycle, ngx_str_t *name, void *tag)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_shm_zone_t   *zone;

    part = &cycle->shared_memory.part;
    zone = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            zone = part->elts;
            i = 0;
        }

        if (zone[i].tag == tag
            && zone[i].shm.name.len == name->len
            && ngx_strncmp(zone[i].shm.name.data, name->data, name->len) == 0)
        {
            return zone[i].data;
        }
    }
}
