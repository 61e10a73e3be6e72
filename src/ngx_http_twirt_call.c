
/*
 * A call: the Twilio Media Stream and the Realtime session, owned
 * together.  Caller audio goes Twilio -> Realtime untouched; the model's
 * audio comes back as Twilio media, with a numbered mark every
 * twirt_mark_interval and after its last, so that we know how much of it
 * the caller has heard (README, "How a call goes").
 *
 * The phases, forward only (call->phase):
 *
 *   SETUP ---------> CONFIGURED ---------> ACTIVE
 *     |  waiting = {}     |  session.updated   |
 *     |  (start,          |                    |
 *     |   upstream,       |                    |
 *     |   profile)        |                    |
 *     +-------------------+--------------------+--> ENDING ---> DONE
 *        stop, end_call, a side failed or        both sides
 *        closed, timeouts (ngx_http_twirt_        closed: summary,
 *        call_end, with a kind)                   record, free
 *
 * In SETUP, call->waiting holds what the session update still waits for:
 * Twilio's "start" (the parameters fill the templates), the upstream
 * connection, and the agent profile from Redis (a bounded wait).  The
 * last of them to arrive configures the session; caller audio is kept
 * until then.
 *
 * Beside the phase, while CONFIGURED or ACTIVE: call->response (the model
 * answers one response at a time; one more may wait) and call->after
 * (what happens once the answer has been heard to its end: end_call).
 *
 * Events are dispatched from two tables, by Twilio event and by Realtime
 * event type, each entry naming the phases it is acted on in.
 *
 * What comes next fits these values, not new flags: a tool running is a
 * count of pending calls beside call->response, a transfer another
 * call->after.  A session being rotated is no phase: the call stays
 * ACTIVE while the next session is made ready beside it, and switches
 * when these values say it is between turns (ngx_http_twirt_rotate.c).
 */


#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_template.h"
#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_outcome.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_json_scan.h"
#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_upstream_pool.h"
#include "ngx_http_twirt_greeting.h"


#define ngx_http_twirt_call_in(phase)   (1 << NGX_HTTP_TWIRT_CALL_##phase)

#define NGX_HTTP_TWIRT_CALL_LIVE                                              \
    (ngx_http_twirt_call_in(SETUP) | ngx_http_twirt_call_in(CONFIGURED)       \
     | ngx_http_twirt_call_in(ACTIVE))

#define NGX_HTTP_TWIRT_CALL_TALKING                                           \
    (ngx_http_twirt_call_in(CONFIGURED) | ngx_http_twirt_call_in(ACTIVE))

#define NGX_HTTP_TWIRT_CALL_NOT_DONE                                          \
    (NGX_HTTP_TWIRT_CALL_LIVE | ngx_http_twirt_call_in(ENDING))

/* a cached greeting's frames: 100 ms, as the model's deltas mostly are */
#define NGX_HTTP_TWIRT_GREETING_FRAME  800

/* the item of a cached greeting's audio: the model never had it */
#define NGX_HTTP_TWIRT_GREETING_ITEM   "twirt_greeting"

/* what the model reads before the keys a caller typed */
#define NGX_HTTP_TWIRT_KEYPAD  "keypad: "


typedef void (*ngx_http_twirt_call_twilio_pt)(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
typedef void (*ngx_http_twirt_call_realtime_pt)(ngx_http_twirt_call_t *call,
    json_t *ev);


/* indexed by ngx_http_twirt_twilio_event_e */
typedef struct {
    ngx_http_twirt_call_twilio_pt    handler;
    ngx_uint_t                       phases;
    size_t                           counter;  /* offset of a ngx_uint_t */
} ngx_http_twirt_call_twilio_event_t;


typedef struct {
    ngx_str_t                        type;
    ngx_http_twirt_call_realtime_pt  handler;
    ngx_uint_t                       phases;
} ngx_http_twirt_call_realtime_event_t;


static void ngx_http_twirt_call_phase(ngx_http_twirt_call_t *call,
    ngx_http_twirt_call_phase_e phase);

static void ngx_http_twirt_call_twilio_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_call_connected(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_start(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_media(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_mark(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_dtmf(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_dtmf_timeout(ngx_event_t *ev);
static void ngx_http_twirt_call_dtmf_input(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_stop(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_twilio_unknown(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_audio_in(ngx_http_twirt_call_t *call,
    ngx_str_t *payload);
static void ngx_http_twirt_call_twilio_closed(ngx_http_twirt_ws_t *ws);

static void ngx_http_twirt_call_profile(void *data, json_t *profile);
static void ngx_http_twirt_call_upstream_done(ngx_http_twirt_upstream_t *u,
    ngx_int_t rc);
static void ngx_http_twirt_call_configure(ngx_http_twirt_call_t *call);
static ngx_int_t ngx_http_twirt_call_text(ngx_http_twirt_call_t *call,
    const char *field, ngx_str_t *dflt, ngx_str_t *out);

static void ngx_http_twirt_call_realtime_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_call_delta_event(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_delta(ngx_http_twirt_call_t *call,
    ngx_str_t *audio, ngx_str_t *response, ngx_str_t *item_name);
static ngx_int_t ngx_http_twirt_call_mark_send(ngx_http_twirt_call_t *call);
static ngx_int_t ngx_http_twirt_call_marks_grow(ngx_http_twirt_call_t *call);
static uint64_t ngx_http_twirt_call_played(ngx_http_twirt_call_t *call,
    ngx_http_twirt_item_t *item);
static ngx_int_t ngx_http_twirt_call_play(ngx_http_twirt_call_t *call,
    ngx_str_t *item_name, ngx_str_t *payload, size_t bytes);
static void ngx_http_twirt_call_greeting_begin(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_greeting_got(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_call_greeting_ask(ngx_http_twirt_call_t *call);
static ngx_int_t ngx_http_twirt_call_greeting_play(ngx_http_twirt_call_t *call,
    ngx_str_t *audio);
static void ngx_http_twirt_call_greeting_record(ngx_http_twirt_call_t *call,
    ngx_str_t *delta, size_t bytes);
static void ngx_http_twirt_call_greeting_done(ngx_http_twirt_call_t *call,
    json_t *response, const char *status);
static void ngx_http_twirt_call_greeting_off(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_greeting_tell(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_interrupt(ngx_http_twirt_call_t *call,
    const char *why, ngx_uint_t barge_in);
static void ngx_http_twirt_call_machine(ngx_http_twirt_call_t *call,
    ngx_str_t *message);
static void ngx_http_twirt_call_speech_started(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_speech_stopped(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_committed(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_response_created(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_response_done(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_transcript(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_function(ngx_http_twirt_call_t *call,
    json_t *ev);
static ngx_uint_t ngx_http_twirt_call_declared(ngx_http_twirt_call_t *call,
    ngx_str_t *name);
static void ngx_http_twirt_call_tool_append(ngx_http_twirt_tool_t **list,
    ngx_http_twirt_tool_t *tool);
static void ngx_http_twirt_call_tool_run(ngx_http_twirt_call_t *call,
    ngx_http_twirt_tool_t *tool);
static void ngx_http_twirt_call_tool_done(ngx_http_twirt_tool_t *tool);
static void ngx_http_twirt_call_tool_output(ngx_http_twirt_call_t *call,
    ngx_str_t *name, ngx_str_t *call_id, ngx_http_twirt_tool_result_e result,
    ngx_http_twirt_tool_t *tool);
static const char *ngx_http_twirt_call_tool_why(
    ngx_http_twirt_tool_result_e result);
static void ngx_http_twirt_call_tool_answer(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_filler(ngx_event_t *ev);
static void ngx_http_twirt_call_tools_cancel(ngx_http_twirt_call_t *call);
static ngx_int_t ngx_http_twirt_call_tool_copy(ngx_http_twirt_tool_t *tool,
    ngx_str_t *dst, ngx_str_t *src);
static ngx_int_t ngx_http_twirt_call_tool_str(ngx_http_twirt_tool_t *tool,
    ngx_str_t *dst, char *src);
static const char *ngx_http_twirt_call_response_ended(
    ngx_http_twirt_call_t *call, const char *status, json_t *details);
static void ngx_http_twirt_call_response_failed(ngx_http_twirt_call_t *call,
    json_t *response, const char *reason);
static void ngx_http_twirt_call_transcription_failed(
    ngx_http_twirt_call_t *call, json_t *ev);
static void ngx_http_twirt_call_error(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_bad_usage(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_session_created(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_session_updated(ngx_http_twirt_call_t *call,
    json_t *ev);
static void ngx_http_twirt_call_realtime_closed(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_call_heard(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_silence(ngx_http_twirt_call_t *call);
static ngx_uint_t ngx_http_twirt_call_quiet(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_silence_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_call_say(ngx_http_twirt_call_t *call,
    ngx_http_twirt_say_e what);

static void ngx_http_twirt_call_duration(ngx_event_t *ev);
static void ngx_http_twirt_call_request_cleanup(void *data);
static void ngx_http_twirt_call_record_end(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_summary(ngx_http_twirt_call_t *call,
    ngx_pool_t *pool, ngx_http_twirt_stream_ctx_t *sctx);
static u_char *ngx_http_twirt_call_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_http_twirt_call_str(ngx_http_twirt_call_t *call,
    ngx_str_t *dst, ngx_str_t *src);
static ssize_t ngx_http_twirt_call_base64_size(ngx_str_t *s);


static ngx_http_twirt_call_twilio_event_t  ngx_http_twirt_call_twilio_events[]
    = {
    [NGX_HTTP_TWIRT_TWILIO_UNKNOWN] =
        { ngx_http_twirt_call_twilio_unknown, NGX_HTTP_TWIRT_CALL_NOT_DONE,
          0 },
    [NGX_HTTP_TWIRT_TWILIO_CONNECTED] =
        { ngx_http_twirt_call_connected, NGX_HTTP_TWIRT_CALL_LIVE, 0 },
    [NGX_HTTP_TWIRT_TWILIO_START] =
        { ngx_http_twirt_call_start, NGX_HTTP_TWIRT_CALL_LIVE, 0 },
    [NGX_HTTP_TWIRT_TWILIO_MEDIA] =
        { ngx_http_twirt_call_media, NGX_HTTP_TWIRT_CALL_LIVE,
          offsetof(ngx_http_twirt_call_t, media_in) },
    [NGX_HTTP_TWIRT_TWILIO_MARK] =
        { ngx_http_twirt_call_mark, NGX_HTTP_TWIRT_CALL_NOT_DONE,
          offsetof(ngx_http_twirt_call_t, marks_in) },
    [NGX_HTTP_TWIRT_TWILIO_DTMF] =
        { ngx_http_twirt_call_dtmf, NGX_HTTP_TWIRT_CALL_NOT_DONE,
          offsetof(ngx_http_twirt_call_t, dtmf_in) },
    [NGX_HTTP_TWIRT_TWILIO_STOP] =
        { ngx_http_twirt_call_stop, NGX_HTTP_TWIRT_CALL_LIVE, 0 }
};


static ngx_http_twirt_call_realtime_event_t
    ngx_http_twirt_call_realtime_events[] =
{
    { ngx_string("response.output_audio.delta"),
      ngx_http_twirt_call_delta_event, NGX_HTTP_TWIRT_CALL_TALKING },

    { ngx_string("input_audio_buffer.speech_started"),
      ngx_http_twirt_call_speech_started, NGX_HTTP_TWIRT_CALL_TALKING },

    { ngx_string("input_audio_buffer.speech_stopped"),
      ngx_http_twirt_call_speech_stopped, NGX_HTTP_TWIRT_CALL_TALKING },

    { ngx_string("input_audio_buffer.committed"),
      ngx_http_twirt_call_committed, NGX_HTTP_TWIRT_CALL_TALKING },

    { ngx_string("response.created"),
      ngx_http_twirt_call_response_created, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    /* usage is counted to the end */
    { ngx_string("response.done"),
      ngx_http_twirt_call_response_done, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("response.output_audio_transcript.done"),
      ngx_http_twirt_call_transcript, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("conversation.item.input_audio_transcription.completed"),
      ngx_http_twirt_call_transcript, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("conversation.item.input_audio_transcription.failed"),
      ngx_http_twirt_call_transcription_failed,
      NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("response.function_call_arguments.done"),
      ngx_http_twirt_call_function, NGX_HTTP_TWIRT_CALL_TALKING },

    { ngx_string("error"),
      ngx_http_twirt_call_error, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("session.created"),
      ngx_http_twirt_call_session_created, NGX_HTTP_TWIRT_CALL_NOT_DONE },

    { ngx_string("session.updated"),
      ngx_http_twirt_call_session_updated,
      ngx_http_twirt_call_in(CONFIGURED) },

    { ngx_null_string, NULL, 0 }
};


static const char  *ngx_http_twirt_call_phases[] = {
    "setup", "configured", "active", "ending", "done"
};


static ngx_str_t  ngx_http_twirt_none = ngx_string("-");


/* by ngx_http_twirt_say_e: the sentence in the configuration */
static size_t  ngx_http_twirt_call_sayings[] = {
    offsetof(ngx_http_twirt_loc_conf_t, silence_prompt),
    offsetof(ngx_http_twirt_loc_conf_t, silence_goodbye),
    offsetof(ngx_http_twirt_loc_conf_t, response_apology)
};


/* this worker's started calls, for control messages (by CallSid) */
static ngx_queue_t  ngx_http_twirt_calls = {
    &ngx_http_twirt_calls, &ngx_http_twirt_calls
};


ngx_http_twirt_call_t *
ngx_http_twirt_call_create(ngx_http_request_t *r)
{
    ngx_pool_t                 *pool;
    ngx_connection_t           *c;
    ngx_http_cleanup_t         *cln;
    ngx_http_twirt_call_t      *call;
    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_twirt_upstream_t  *u;
    ngx_http_twirt_loc_conf_t  *tlcf;

    c = r->connection;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    pool = ngx_create_pool(2048, c->log);
    if (pool == NULL) {
        return NULL;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_http_twirt_call_t));
    if (call == NULL) {
        goto failed;
    }

    call->pool = pool;
    call->conf = tlcf;
    call->phase = NGX_HTTP_TWIRT_CALL_SETUP;
    call->after_end = NGX_HTTP_TWIRT_END_END_CALL;
    call->waiting = NGX_HTTP_TWIRT_CALL_WAIT_START
                    | NGX_HTTP_TWIRT_CALL_WAIT_UPSTREAM;
    call->upgraded = ngx_current_msec;
    call->call_sid = ngx_http_twirt_none;
    call->stream_sid = ngx_http_twirt_none;

    if (ngx_http_twirt_call_str(call, &call->addr_text, &c->addr_text)
        != NGX_OK)
    {
        goto failed;
    }

    /* every line logged about the call names it */

    call->log = ngx_palloc(pool, sizeof(ngx_log_t));
    if (call->log == NULL) {
        goto failed;
    }

    /*
     * The call's own log: the connection's, naming the call.  The
     * connection's log itself stays nginx's (its data is nginx's request
     * log context); the stream's r->log_handler names the call there.
     */
    *call->log = *c->log;
    call->log->handler = ngx_http_twirt_call_log_error;
    call->log->data = call;
    call->log->action = "streaming";
    c->log->action = "streaming";

    call->record.pool = pool;
    call->record.log = call->log;

    call->twilio = ngx_http_twirt_ws_create(pool, c, &tlcf->twilio_ws,
                                            NGX_HTTP_TWIRT_WS_SERVER);
    if (call->twilio == NULL) {
        goto failed;
    }

    call->twilio->request = r;
    call->twilio->peer = "twilio";
    call->twilio->data = call;
    call->twilio->on_message = ngx_http_twirt_call_twilio_message;
    call->twilio->on_closed = ngx_http_twirt_call_twilio_closed;

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        goto failed;
    }

    cln->handler = ngx_http_twirt_call_request_cleanup;
    cln->data = call;
    call->cleanup = cln;

    call->duration_timer.handler = ngx_http_twirt_call_duration;
    call->duration_timer.data = call;
    call->duration_timer.log = call->log;

    call->filler_timer.handler = ngx_http_twirt_call_filler;
    call->filler_timer.data = call;
    call->filler_timer.log = call->log;
    call->filler_timer.cancelable = 1;

    call->dtmf_timer.handler = ngx_http_twirt_call_dtmf_timeout;
    call->dtmf_timer.data = call;
    call->dtmf_timer.log = call->log;
    call->dtmf_timer.cancelable = 1;

    call->silence_timer.handler = ngx_http_twirt_call_silence_timeout;
    call->silence_timer.data = call;
    call->silence_timer.log = call->log;
    call->silence_timer.cancelable = 1;

    ngx_http_twirt_rotate_init(call);

    /*
     * Not cancelable: a call in progress keeps an old worker alive after a
     * reload, until it ends (at most twirt_max_call_duration).
     */

    if (tlcf->max_call_duration) {
        ngx_add_timer(&call->duration_timer, tlcf->max_call_duration);
    }

    /* the upstream is opened now, before Twilio's "start" */

    u = ngx_pcalloc(pool, sizeof(ngx_http_twirt_upstream_t));
    if (u == NULL) {
        goto failed;
    }

    u->pool = pool;
    u->log = ngx_palloc(pool, sizeof(ngx_log_t));
    if (u->log == NULL) {
        goto failed;
    }

    *u->log = *call->log;
    u->log->action = "connecting to the Realtime API";

    u->conf = tlcf;
    u->resolver = clcf->resolver;
    u->resolver_timeout = clcf->resolver_timeout;
    u->data = call;
    u->handler = ngx_http_twirt_call_upstream_done;
    u->on_message = ngx_http_twirt_call_realtime_message;
    u->on_closed = ngx_http_twirt_call_realtime_closed;

    call->upstream = u;

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CALLS_STARTED, 1);
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CALLS_ACTIVE, 1);

    /* a warm one from the pool (twirt_openai_pool), else a new one */

    if (ngx_http_twirt_upstream_pool_take(u) == NGX_OK) {
        ngx_http_twirt_call_upstream_done(u, NGX_OK);

    } else if (ngx_http_twirt_upstream_connect(u) != NGX_OK) {
        ngx_http_twirt_upstream_cancel(u);
        call->upstream = NULL;
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,
                                "upstream failed",
                                NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
    }

    return call;

failed:

    if (call) {
        /* nothing may point into the pool once it is gone */

        if (call->cleanup) {
            call->cleanup->handler = NULL;
        }

        if (call->duration_timer.timer_set) {
            ngx_del_timer(&call->duration_timer);
        }

        ngx_http_twirt_rotate_free(call);
    }

    if (call && call->twilio) {
        call->twilio->request = NULL;
        call->twilio->connection = NULL;
        ngx_http_twirt_ws_free(call->twilio);
    }

    ngx_destroy_pool(pool);

    return NULL;
}


static void
ngx_http_twirt_call_phase(ngx_http_twirt_call_t *call,
    ngx_http_twirt_call_phase_e phase)
{
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: call phase %s -> %s",
                   ngx_http_twirt_call_phases[call->phase],
                   ngx_http_twirt_call_phases[phase]);

    call->phase = phase;
}


/* one of the things the setup waits for is here: the last configures */

void
ngx_http_twirt_call_ready(ngx_http_twirt_call_t *call, ngx_uint_t what)
{
    call->waiting &= ~what;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: call ready 0x%xi, waiting for 0x%xi",
                   what, call->waiting);

    /* the greeting is known: a cached one plays now, whatever else waits */

    if (call->greeting == NGX_HTTP_TWIRT_GREETING_NONE
        && call->phase < NGX_HTTP_TWIRT_CALL_ENDING
        && !(call->waiting & (NGX_HTTP_TWIRT_CALL_WAIT_START
                              | NGX_HTTP_TWIRT_CALL_WAIT_PROFILE
                              | NGX_HTTP_TWIRT_CALL_WAIT_HISTORY)))
    {
        ngx_http_twirt_call_greeting_begin(call);
    }

    if (call->waiting == 0 && call->phase == NGX_HTTP_TWIRT_CALL_SETUP) {
        ngx_http_twirt_call_configure(call);
    }
}


/* Twilio -> call */

static void
ngx_http_twirt_call_twilio_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_twirt_call_t        *call = ws->data;

    ngx_http_twirt_twilio_msg_t          m;
    ngx_http_twirt_call_twilio_event_t  *e;
#if (NGX_DEBUG)
    ngx_http_twirt_log_text_t            t;
#endif

    if (opcode != NGX_HTTP_TWIRT_WS_TEXT) {
        call->invalid_in++;
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a binary message of %uz bytes from "
                      "twilio", len);
        return;
    }

    if (ngx_http_twirt_twilio_parse(data, len, &m) != NGX_OK) {
        call->invalid_in++;
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_INVALID_JSON);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a message from twilio: %s",
                      m.error);
        ngx_http_twirt_twilio_free(&m);
        return;
    }

    e = &ngx_http_twirt_call_twilio_events[m.event];

    if (e->counter) {
        (*(ngx_uint_t *) ((u_char *) call + e->counter))++;
    }

    if (e->phases & (1 << call->phase)) {
        e->handler(call, &m);

    } else {
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "twirt: ignored twilio \"%V\" in phase %s",
                       ngx_http_twirt_log_str(&t, &m.name),
                       ngx_http_twirt_call_phases[call->phase]);
    }

    ngx_http_twirt_twilio_free(&m);
}


static void
ngx_http_twirt_call_connected(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: twilio connected");
}


static void
ngx_http_twirt_call_twilio_unknown(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
#if (NGX_DEBUG)
    ngx_http_twirt_log_text_t  t;
#endif

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: ignored twilio event \"%V\"",
                   ngx_http_twirt_log_str(&t, &m->name));
}


static void
ngx_http_twirt_call_start(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    json_t                     *agent, *ev, *v;
    ngx_str_t                   name;
    ngx_uint_t                  i;
    ngx_http_twirt_log_text_t   t;

    static const char  *shown[] = {
        "agent", "from", "to", "direction", "campaign", "row", NULL
    };

    if (ngx_http_twirt_call_started(call)) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a second \"start\" from twilio");
        return;
    }

    if (ngx_http_twirt_call_str(call, &call->call_sid, &m->call_sid) != NGX_OK
        || ngx_http_twirt_call_str(call, &call->stream_sid, &m->stream_sid)
           != NGX_OK
        || ngx_http_twirt_call_str(call, &call->account_sid,
                                   &m->account_sid)
           != NGX_OK)
    {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_NO_MEMORY, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
        return;
    }

    call->parameters = m->parameters ? json_incref(m->parameters)
                                     : json_object();

    if (call->stream_ctx) {
        /* for the connection's log lines; copied when the call ends */
        call->stream_ctx->call_sid = call->call_sid;
        call->stream_ctx->stream_sid = call->stream_sid;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call started after %M ms, %ui media before start",
                  ngx_current_msec - call->upgraded, call->media_in);

    /*
     * A CallSid is one call: a second stream claiming a live one on this
     * node is refused, and writes nothing (nor on another node: the
     * record's writes check their stream).
     */

    if (ngx_http_twirt_outcome_claim(&call->call_sid, &call->stream_sid)
        == NGX_BUSY)
    {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: refused a second stream for a live call");
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_DUPLICATE_STREAM);
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_DUPLICATE, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_POLICY);
        return;
    }

    /* the record and events exist from here: the call is started */
    call->waiting &= ~NGX_HTTP_TWIRT_CALL_WAIT_START;

    call->record.call_sid = call->call_sid;
    call->record.stream_sid = call->stream_sid;
    call->record.account_sid = call->account_sid;
    call->record.parameters = call->parameters;

    ngx_http_twirt_record_start(&call->record);

    ngx_queue_insert_tail(&ngx_http_twirt_calls, &call->queue);

    /* what the board shows of a new call */
    ev = json_pack("{s:s}", "status", "connecting");

    if (ev) {
        for (i = 0; shown[i]; i++) {
            v = json_object_get(call->parameters, shown[i]);

            if (json_is_string(v)) {
                json_object_set(ev, shown[i], v);
            }
        }
    }

    ngx_http_twirt_call_event(call, "state", ev);

    agent = json_object_get(call->parameters, "agent");

    if (json_is_string(agent)) {
        name.data = (u_char *) json_string_value(agent);
        name.len = json_string_length(agent);

        if (ngx_http_twirt_sid_valid(&name) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, call->log, 0,
                          "twirt: ignored agent name \"%V\": letters, "
                          "digits, '_' and '-' only",
                          ngx_http_twirt_log_str(&t, &name));

        } else if (ngx_http_twirt_record_profile(&call->record, &name,
                                                 call->conf->agent_timeout,
                                                 ngx_http_twirt_call_profile,
                                                 call, &call->profile_handle)
                   == NGX_OK)
        {
            /* the session update waits for the profile, a bounded time */
            call->waiting |= NGX_HTTP_TWIRT_CALL_WAIT_PROFILE;
        }
    }

    ngx_http_twirt_transfer_resume(call);

    ngx_http_twirt_call_ready(call, NGX_HTTP_TWIRT_CALL_WAIT_START);
}


/* the agent profile was read, or not in time (NULL) */

static void
ngx_http_twirt_call_profile(void *data, json_t *profile)
{
    ngx_http_twirt_call_t  *call = data;

    call->profile = profile;

    ngx_http_twirt_call_ready(call, NGX_HTTP_TWIRT_CALL_WAIT_PROFILE);
}


static void
ngx_http_twirt_call_media(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    if (ngx_http_twirt_call_base64_size(&m->payload) == NGX_ERROR) {
        call->invalid_in++;
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_INVALID_AUDIO);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored media with a payload that is not "
                      "base64");
        return;
    }

    ngx_http_twirt_call_audio_in(call, &m->payload);
}


/*
 * A caller frame: passed on untouched once the session is configured,
 * kept in order until then (about 2 s at most; more is counted and
 * dropped).
 */

static void
ngx_http_twirt_call_audio_in(ngx_http_twirt_call_t *call, ngx_str_t *payload)
{
    u_char     *p;
    size_t      need;
    ngx_str_t   parts[3];

    if (call->phase != NGX_HTTP_TWIRT_CALL_SETUP) {
        ngx_str_set(&parts[0],
                    "{\"type\":\"input_audio_buffer.append\",\"audio\":\"");
        parts[1] = *payload;
        ngx_str_set(&parts[2], "\"}");

        (void) ngx_http_twirt_ws_send_parts(call->realtime,
                                            NGX_HTTP_TWIRT_WS_TEXT, parts, 3);
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_MEDIA_IN, 1);
        return;
    }

    if (call->early_frames >= call->conf->early_audio / 20) {
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_EARLY_AUDIO_DROPPED, 1);

        if (call->early_dropped++ == 0) {
            ngx_log_error(NGX_LOG_WARN, call->log, 0,
                          "twirt: the Realtime session is not ready after "
                          "%ui frames of caller audio, dropping more",
                          call->early_frames);
        }

        return;
    }

    need = sizeof(size_t) + payload->len;

    if (call->early_size - call->early_len < need) {
        p = ngx_alloc(ngx_max(call->early_size * 2,
                              call->early_len + need + 4096), call->log);
        if (p == NULL) {
            call->early_dropped++;
            return;
        }

        if (call->early) {
            ngx_memcpy(p, call->early, call->early_len);
            ngx_free(call->early);
        }

        call->early = p;
        call->early_size = ngx_max(call->early_size * 2,
                                   call->early_len + need + 4096);
    }

    p = call->early + call->early_len;
    ngx_memcpy(p, &payload->len, sizeof(size_t));
    ngx_memcpy(p + sizeof(size_t), payload->data, payload->len);

    call->early_len += need;
    call->early_frames++;
}


/* Twilio played the audio up to this mark: names are our sequence */

static void
ngx_http_twirt_call_mark(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    ngx_int_t               seq;
    ngx_http_twirt_mark_t  *mark;

    seq = ngx_atoi(m->mark.data, m->mark.len);

    if (seq == NGX_ERROR || (ngx_uint_t) seq <= call->clear_seq) {
        /* after a clear, echoed marks do not prove playback */
        return;
    }

    while (call->mark_count) {
        mark = &call->marks[call->mark_head];

        if (mark->seq > (ngx_uint_t) seq) {
            break;
        }

        call->items[mark->item].played = mark->bytes;
        call->mark_head = (call->mark_head + 1) % call->marks_size;
        call->mark_count--;
        call->played_at = ngx_current_msec;
        call->clock = 1;
    }

    ngx_http_twirt_call_heard(call);
}


/*
 * A keypad key: always a log line and a call event.  With "twirt_dtmf
 * model" the keys are collected until the terminator, a pause or the
 * bound, and given to the model as one input (README, "Keypad input").
 */

static void
ngx_http_twirt_call_dtmf(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    u_char                     key;
    ngx_http_twirt_log_text_t  t;

    if (m->digit.len != 1 || !ngx_http_twirt_dtmf_key(m->digit.data[0])) {
        call->invalid_in++;
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_INVALID_DTMF);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored dtmf with an invalid digit \"%V\"",
                      ngx_http_twirt_log_str(&t, &m->digit));
        return;
    }

    key = m->digit.data[0];

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: caller pressed \"%c\"", key);

    ngx_http_twirt_call_event(call, "dtmf",
                              json_pack("{s:s%}", "digit", &key, (size_t) 1));

    /* the caller is there: the silence counts again from this key */

    call->silence_tries = 0;

    if (call->silence_timer.timer_set) {
        ngx_del_timer(&call->silence_timer);
    }

    if (call->conf->dtmf != NGX_HTTP_TWIRT_DTMF_MODEL
        || call->phase >= NGX_HTTP_TWIRT_CALL_ENDING)
    {
        ngx_http_twirt_call_silence(call);
        return;
    }

    if (key == call->conf->dtmf_terminator) {
        ngx_http_twirt_call_dtmf_input(call);
        return;
    }

    call->dtmf[call->dtmf_len++] = key;

    if (call->dtmf_len == NGX_HTTP_TWIRT_DTMF_MAX) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: keypad input reached %d keys without the "
                      "terminator, given to the model as it is",
                      NGX_HTTP_TWIRT_DTMF_MAX);
        ngx_http_twirt_call_dtmf_input(call);
        return;
    }

    /* deleted first: ngx_add_timer() would not move it by less than 300 ms */

    if (call->dtmf_timer.timer_set) {
        ngx_del_timer(&call->dtmf_timer);
    }

    ngx_add_timer(&call->dtmf_timer, call->conf->dtmf_timeout);
}


static void
ngx_http_twirt_call_dtmf_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: keypad pause after %uz keys", call->dtmf_len);

    ngx_http_twirt_call_dtmf_input(call);
}


/*
 * The keys collected so far become one user message, "keypad: 12345"
 * (the words the README documents, for instructions to refer to),
 * and the model is asked to answer it (after the response in progress,
 * if any).  Nothing collected, nothing sent.
 */

static void
ngx_http_twirt_call_dtmf_input(ngx_http_twirt_call_t *call)
{
    u_char     text[sizeof(NGX_HTTP_TWIRT_KEYPAD) - 1
                    + NGX_HTTP_TWIRT_DTMF_MAX];
    json_t    *ev;
    ngx_str_t  keys;

    if (call->dtmf_timer.timer_set) {
        ngx_del_timer(&call->dtmf_timer);
    }

    if (call->dtmf_len == 0) {
        return;
    }

    keys.data = ngx_cpymem(text, NGX_HTTP_TWIRT_KEYPAD,
                           sizeof(NGX_HTTP_TWIRT_KEYPAD) - 1);
    keys.len = call->dtmf_len;
    ngx_memcpy(keys.data, call->dtmf, keys.len);

    call->dtmf_len = 0;

    if (!(NGX_HTTP_TWIRT_CALL_TALKING & (1 << call->phase))) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: keypad input \"%V\" dropped: the Realtime "
                      "session is %s", &keys,
                      call->phase == NGX_HTTP_TWIRT_CALL_SETUP
                      ? "not ready" : "ending");
        return;
    }

    ev = json_pack("{s:s,s:{s:s,s:s,s:[{s:s,s:s%}]}}",
                   "type", "conversation.item.create",
                   "item", "type", "message", "role", "user",
                   "content", "type", "input_text", "text",
                   text, (size_t) (keys.data + keys.len - text));

    if (ev == NULL || ngx_http_twirt_call_send_json(call, ev) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "twirt: keypad input \"%V\" could not be given to "
                      "the model", &keys);
        json_decref(ev);
        return;
    }

    /* the next session is told what was typed too */
    ngx_http_twirt_rotate_line(call, 1,
        json_object_get(json_array_get(json_object_get(
            json_object_get(ev, "item"), "content"), 0), "text"));

    json_decref(ev);

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: keypad input \"%V\" given to the model", &keys);

    ngx_http_twirt_call_event(call, "keypad",
                              json_pack("{s:s%}", "digits", keys.data,
                                        keys.len));

    ngx_http_twirt_call_response_create(call, NULL);
    ngx_http_twirt_call_silence(call);
}


static void
ngx_http_twirt_call_stop(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_STOP, NULL,
                            NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
}


static void
ngx_http_twirt_call_twilio_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_call_t  *call = ws->data;

    ngx_http_twirt_metrics_error(ngx_http_twirt_end_kind(ws->end)->error);

    if (ws->error) {
        ngx_http_twirt_call_end(call, ws->end, ws->error, 0);

    } else if (ws->close_received) {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_TWILIO_CLOSED, NULL,
                                0);

    } else {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_TWILIO_LOST, NULL, 0);
    }

    ngx_http_twirt_call_finish(call);
}


/* the upstream is connected and upgraded, or it failed */

static void
ngx_http_twirt_call_upstream_done(ngx_http_twirt_upstream_t *u,
    ngx_int_t rc)
{
    ngx_http_twirt_call_t  *call = u->data;

    call->upstream = NULL;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "twirt: Realtime API unavailable: %s", u->error);

        ngx_http_twirt_metrics_error(ngx_http_twirt_end_kind(u->end)->error);

        ngx_http_twirt_call_event(call, "error",
                                  json_pack("{s:s,s:s}", "kind", "upstream",
                                            "message", u->error));

        ngx_http_twirt_call_end(call, u->end, u->error,
                                NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
        ngx_http_twirt_call_finish(call);
        return;
    }

    call->realtime = u->ws;
    call->realtime->connection->log = u->log;

    /* the session began in the pool, if it came from there */
    call->rotate.opened = ngx_current_msec - u->age;

    /* a warm connection's time was observed when the pool made it */
    if (!u->pooled) {
        ngx_http_twirt_metrics_observe(NGX_HTTP_TWIRT_H_UPSTREAM_CONNECT,
                                       ngx_current_msec - u->started);
    }

    u->log->action = "talking to the Realtime API";

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->log, 0,
                   "twirt: upstream connected in %M ms",
                   ngx_current_msec - call->upgraded);

    if (call->phase >= NGX_HTTP_TWIRT_CALL_ENDING) {
        ngx_http_twirt_ws_close(call->realtime, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL,
                                NULL);
    }

    /* the session.created a warm connection got while it waited */
    if (u->created.len) {
        ngx_http_twirt_call_realtime_message(call->realtime,
                                             NGX_HTTP_TWIRT_WS_TEXT,
                                             u->created.data,
                                             u->created.len);
    }

    /* frames that came with the 101, and the events from now on */
    ngx_post_event(call->realtime->connection->read, &ngx_posted_events);

    ngx_http_twirt_call_ready(call, NGX_HTTP_TWIRT_CALL_WAIT_UPSTREAM);
}


/*
 * Nothing is waited for any more: the session update (templates filled
 * from the call's parameters), then the caller audio kept so far, in
 * order.
 */

static void
ngx_http_twirt_call_configure(ngx_http_twirt_call_t *call)
{
    u_char     *p, *end;
    json_t     *ev;
    ngx_str_t   payload;

    ev = ngx_http_twirt_call_session(call);

    if (ev == NULL || ngx_http_twirt_call_send_json(call, ev) != NGX_OK) {
        json_decref(ev);
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                "session update failed",
                                NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
        return;
    }

    json_decref(ev);

    ngx_http_twirt_call_phase(call, NGX_HTTP_TWIRT_CALL_CONFIGURED);

    /*
     * The model's greeting is asked for at once, behind the session
     * update: the Realtime API runs a session's client events in order,
     * so the response is made with the session as configured, and the
     * caller does not wait a round trip for session.updated first.  (A
     * rejected update fails the call before the response's audio.)
     */

    if (!call->returning
        && call->greeting != NGX_HTTP_TWIRT_GREETING_PLAYING
        && call->greeting != NGX_HTTP_TWIRT_GREETING_LOOKUP)
    {
        call->greeting_asked = 1;
        ngx_http_twirt_call_greeting_ask(call);
    }

    p = call->early;
    end = p + call->early_len;

    while (p < end && call->phase == NGX_HTTP_TWIRT_CALL_CONFIGURED) {
        ngx_memcpy(&payload.len, p, sizeof(size_t));
        payload.data = p + sizeof(size_t);
        p += sizeof(size_t) + payload.len;

        ngx_http_twirt_call_audio_in(call, &payload);
    }

    if (call->early_frames || call->early_dropped) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: sent %ui frames of caller audio kept while "
                      "connecting, %ui dropped",
                      call->early_frames, call->early_dropped);
    }

    if (call->early) {
        ngx_free(call->early);
        call->early = NULL;
        call->early_len = 0;
        call->early_size = 0;
    }
}


/* the call's session.update: its first session's, and every next one's */

json_t *
ngx_http_twirt_call_session(ngx_http_twirt_call_t *call)
{
    ngx_str_t  instructions;

    if (ngx_http_twirt_call_text(call, "instructions",
                                 &call->conf->instructions, &instructions)
        != NGX_OK)
    {
        return NULL;
    }

    return ngx_http_twirt_realtime_session(call->conf, &instructions,
                                           call->profile, call->parameters,
                                           call->pool, call->log);
}


/*
 * Instructions or greeting: the agent profile's (field, unless NULL), else
 * the configuration's, with {{name}} filled from the profile's variables,
 * then the stream's parameters.
 */

static ngx_int_t
ngx_http_twirt_call_text(ngx_http_twirt_call_t *call, const char *field,
    ngx_str_t *dflt, ngx_str_t *out)
{
    json_t      *v, *vars[2];
    ngx_str_t    src;
    ngx_uint_t   n;

    src = *dflt;
    n = 0;

    v = field ? json_object_get(call->profile, field) : NULL;

    if (json_is_string(v)) {
        src.data = (u_char *) json_string_value(v);
        src.len = json_string_length(v);
    }

    if (call->profile) {
        vars[n++] = json_object_get(call->profile, "variables");
    }

    vars[n++] = call->parameters;

    return ngx_http_twirt_template(call->pool, call->log, &src, vars, n, out);
}


/* Realtime -> call */

static void
ngx_http_twirt_call_realtime_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_twirt_call_t  *call = ws->data;

    json_t                                *ev, *v;
    ngx_str_t                              type;
    json_error_t                           err;
    ngx_http_twirt_log_text_t              t;
    ngx_http_twirt_json_field_t            f[4];
    ngx_http_twirt_call_realtime_event_t  *e;

    if (opcode != NGX_HTTP_TWIRT_WS_TEXT) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a binary message of %uz bytes from "
                      "the Realtime API", len);
        return;
    }

    /* audio deltas, most of the traffic, without a jansson tree */

    f[0].path = "type";
    f[1].path = "delta";
    f[2].path = "response_id";
    f[3].path = "item_id";

    if (ngx_http_twirt_json_scan(data, len, f, 4) == NGX_OK
        && f[0].found && f[1].found
        && f[0].value.len == sizeof("response.output_audio.delta") - 1
        && ngx_strncmp(f[0].value.data, "response.output_audio.delta",
                       f[0].value.len)
           == 0)
    {
        if (NGX_HTTP_TWIRT_CALL_TALKING & (1 << call->phase)) {
            ngx_http_twirt_call_delta(call, &f[1].value, &f[2].value,
                                      &f[3].value);
        }

        return;
    }

    ev = json_loadb((const char *) data, len, 0, &err);

    if (ev == NULL || !json_is_object(ev)) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored invalid JSON from the Realtime API: "
                      "%V", ngx_http_twirt_log_cstr(&t, ev ? "not an object"
                                                           : err.text));
        json_decref(ev);
        return;
    }

    v = json_object_get(ev, "type");

    if (json_is_string(v)) {
        type.data = (u_char *) json_string_value(v);
        type.len = json_string_length(v);

        for (e = ngx_http_twirt_call_realtime_events; e->handler; e++) {
            if (e->type.len == type.len
                && ngx_strncmp(e->type.data, type.data, type.len) == 0)
            {
                if (e->phases & (1 << call->phase)) {
                    e->handler(call, ev);
                }

                break;
            }
        }
    }

    json_decref(ev);
}


static void
ngx_http_twirt_call_delta_event(ngx_http_twirt_call_t *call, json_t *ev)
{
    ngx_str_t  delta, response_id, item_id;

    ngx_http_twirt_json_get_str(ev, "delta", &delta);
    ngx_http_twirt_json_get_str(ev, "response_id", &response_id);
    ngx_http_twirt_json_get_str(ev, "item_id", &item_id);

    ngx_http_twirt_call_delta(call, &delta, &response_id, &item_id);
}


static void
ngx_http_twirt_call_response_created(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t      *v;
    const char  *text, *meta;

    v = json_object_get(json_object_get(ev, "response"), "id");
    text = json_string_value(v);

    if (call->response == NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        call->response = NGX_HTTP_TWIRT_RESPONSE_ACTIVE;
    }

    ngx_http_twirt_rotate_answer_due(call, 0);

    if (text && json_string_length(v) < NGX_HTTP_TWIRT_ID_MAX) {
        call->response_id_len = json_string_length(v);
        ngx_memcpy(call->response_id, text, call->response_id_len);

        /* the greeting's: twirt's "say", with the greeting's words */

        meta = json_string_value(json_object_get(
                   json_object_get(json_object_get(ev, "response"),
                                   "metadata"),
                   "twirt"));

        if (call->greeting == NGX_HTTP_TWIRT_GREETING_FILL
            && call->greeting_response_len == 0
            && call->said.data == call->greeting_said.data
            && meta && ngx_strcmp(meta, "say") == 0)
        {
            call->greeting_response_len = call->response_id_len;
            ngx_memcpy(call->greeting_response, text,
                       call->response_id_len);
        }
    }

    /* the agent speaks: no silence is counted until it was heard */
    ngx_http_twirt_call_silence(call);
}


/* a transcript line of the caller or of the agent */

static void
ngx_http_twirt_call_transcript(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t      *v;
    ngx_str_t    id, text;
    ngx_uint_t   caller;

    v = json_object_get(ev, "transcript");

    if (!json_is_string(v)) {
        return;
    }

    /* conversation.item.input_audio_transcription.completed */
    caller = (json_string_value(json_object_get(ev, "type"))[0] == 'c');

    if (caller
        && ngx_http_twirt_realtime_transcription_usage(
               json_object_get(ev, "usage"), &call->usage)
           == NGX_ERROR)
    {
        ngx_http_twirt_call_bad_usage(call);
    }

    ngx_http_twirt_json_get_str(ev, "response_id", &id);

    if (!caller && call->greeting == NGX_HTTP_TWIRT_GREETING_FILL
        && call->greeting_response_len
        && id.len == call->greeting_response_len
        && ngx_memcmp(id.data, call->greeting_response, id.len) == 0)
    {
        text.data = (u_char *) json_string_value(v);
        text.len = json_string_length(v);
        (void) ngx_http_twirt_call_str(call, &call->greeting_text, &text);
    }

    ngx_http_twirt_call_event(call, "transcript",
        json_pack("{s:s,s:O,s:O*}",
                  "role", caller ? "caller" : "agent",
                  "text", v,
                  "item_id", json_object_get(ev, "item_id")));

    /* kept for the next session; the caller's in its turn's place */

    if (caller) {
        ngx_http_twirt_rotate_transcribed(call,
                                          json_object_get(ev, "item_id"), v);

    } else {
        ngx_http_twirt_rotate_line(call, 0, v);
    }
}


static void
ngx_http_twirt_call_bad_usage(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_INVALID_USAGE);
    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: ignored a usage of more than %d tokens from the "
                  "Realtime API", NGX_HTTP_TWIRT_USAGE_MAX);
}


static void
ngx_http_twirt_call_session_created(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t     *v;
    ngx_str_t   s;

    v = json_object_get(json_object_get(ev, "session"), "id");

    if (json_is_string(v)) {
        s.data = (u_char *) json_string_value(v);
        s.len = json_string_length(v);
        (void) ngx_http_twirt_call_str(call, &call->session_id, &s);
        call->record.session_id = call->session_id;
    }
}


/* the session is configured: the conversation starts, maybe greeting */

static void
ngx_http_twirt_call_session_updated(ngx_http_twirt_call_t *call, json_t *ev)
{
    ngx_http_twirt_call_phase(call, NGX_HTTP_TWIRT_CALL_ACTIVE);

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: session ready %M ms after the upgrade",
                  ngx_current_msec - call->upgraded);

    ngx_http_twirt_metrics_observe(NGX_HTTP_TWIRT_H_SETUP,
                                   ngx_current_msec - call->upgraded);

    ngx_http_twirt_rotate_schedule(call, json_object_get(ev, "session"));

    ngx_http_twirt_call_event(call, "state",
                              json_pack("{s:s}", "status", "active"));

    if (ngx_http_twirt_transfer_replay(call) == NGX_OK) {
        return;
    }

    if (call->greeting_asked) {
        /* with the session update */
        return;
    }

    if (call->greeting == NGX_HTTP_TWIRT_GREETING_PLAYING) {
        /* the cached greeting plays: the model is told once it was heard */
        ngx_http_twirt_call_heard(call);
        return;
    }

    if (call->greeting == NGX_HTTP_TWIRT_GREETING_LOOKUP) {
        /* Redis answers within twirt_redis_timeout */
        call->greeting_due = 1;
        return;
    }

    ngx_http_twirt_call_greeting_ask(call);
}


/* the model is asked to say the greeting, in the first response */

static void
ngx_http_twirt_call_greeting_ask(ngx_http_twirt_call_t *call)
{
    ngx_str_t  greeting, instructions, both;

    if (ngx_http_twirt_call_text(call, "greeting", &call->conf->greeting,
                                 &greeting)
        != NGX_OK
        || greeting.len == 0)
    {
        return;
    }

    /* the first answer keeps the agent's instructions */

    if (ngx_http_twirt_call_text(call, "instructions",
                                 &call->conf->instructions, &instructions)
        != NGX_OK
        || ngx_http_twirt_realtime_greeting(call->pool, &instructions,
                                            &greeting, &both)
           != NGX_OK)
    {
        return;
    }

    if (call->conf->greeting_cache) {
        ngx_http_twirt_call_event(call, "greeting",
                                  json_pack("{s:s}", "source", "model"));
    }

    /* its response is recognised by these instructions, and recorded */
    call->greeting_said = both;

    ngx_http_twirt_call_response_create(call, &both);
}


/*
 * The greeting is known (start, the profile): with twirt_greeting_cache,
 * a cached one is played now, while the session is configured; else the
 * model's is recorded for the next call.  A greeting filled per call
 * ({{name}}) is kept only the second time it is said: a customer's name
 * said once takes no place in the zone, nor in Redis, a {{company}} the
 * same for every call is cached all the same.  A returning call's
 * conversation is replayed instead of a greeting.
 */

static void
ngx_http_twirt_call_greeting_begin(ngx_http_twirt_call_t *call)
{
    json_t                          *v;
    ngx_str_t                        src, text, voice, audio;
    ngx_http_twirt_greeting_conf_t  *gc;

    gc = call->conf->greeting_cache;

    call->greeting = NGX_HTTP_TWIRT_GREETING_OFF;

    if (gc == NULL || call->returning) {
        return;
    }

    src = call->conf->greeting;
    v = json_object_get(call->profile, "greeting");

    if (json_is_string(v)) {
        src.data = (u_char *) json_string_value(v);
        src.len = json_string_length(v);
    }

    if (src.len == 0) {
        return;
    }

    call->greeting_filled = (ngx_strnstr(src.data, "{{", src.len) != NULL);

    if (ngx_http_twirt_call_text(call, "greeting", &call->conf->greeting,
                                 &text)
        != NGX_OK
        || text.len == 0)
    {
        return;
    }

    voice = call->conf->voice;
    v = json_object_get(call->profile, "voice");

    if (json_is_string(v)) {
        voice.data = (u_char *) json_string_value(v);
        voice.len = json_string_length(v);
    }

    ngx_http_twirt_greeting_key(&voice, &call->conf->model, call->conf->speed,
                                &text, call->greeting_key);

    if (ngx_http_twirt_greeting_lookup(gc, call->greeting_key, call->pool,
                                       &audio, &call->greeting_text)
        == NGX_OK
        && ngx_http_twirt_call_greeting_play(call, &audio) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the greeting, %uz ms, played from the cache",
                      audio.len / 8);

        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_HITS, 1);
        ngx_http_twirt_call_event(call, "greeting",
                                  json_pack("{s:s,s:I}", "source", "cache",
                                            "audio_ms",
                                            (json_int_t) (audio.len / 8)));

        call->greeting = NGX_HTTP_TWIRT_GREETING_PLAYING;
        return;
    }

    /* another node's, or this one's before a restart */

    if (ngx_http_twirt_greeting_redis_get(call->greeting_key, call->pool,
                                          ngx_http_twirt_call_greeting_got,
                                          call, &call->greeting_handle)
        == NGX_OK)
    {
        call->greeting = NGX_HTTP_TWIRT_GREETING_LOOKUP;
        return;
    }

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_MISSES, 1);

    call->greeting = NGX_HTTP_TWIRT_GREETING_FILL;
}


/*
 * Redis answered (or not in time): a greeting found is kept in the zone
 * and played, else the model says it; if the session is ready, it was
 * waiting for this.
 */

static void
ngx_http_twirt_call_greeting_got(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_call_t  *call = data;

    ngx_str_t      audio, text, copy;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    call->greeting_handle = NULL;

    ngx_str_null(&audio);
    ngx_str_null(&text);

    for (i = 0; rc == NGX_OK && i < pairs->nelts; i++) {
        kv = &((ngx_keyval_t *) pairs->elts)[i];

        if (kv->key.len == 5 && ngx_strncmp(kv->key.data, "audio", 5) == 0) {
            audio = kv->value;

        } else if (kv->key.len == 4
                   && ngx_strncmp(kv->key.data, "text", 4) == 0)
        {
            text = kv->value;
        }
    }

    if (audio.len && text.len && audio.len <= NGX_HTTP_TWIRT_GREETING_MAX
        && call->phase < NGX_HTTP_TWIRT_CALL_ENDING
        && ngx_http_twirt_call_str(call, &copy, &audio) == NGX_OK
        && ngx_http_twirt_call_str(call, &call->greeting_text, &text)
           == NGX_OK)
    {
        (void) ngx_http_twirt_greeting_store(call->conf->greeting_cache,
                                             call->greeting_key, &copy,
                                             &call->greeting_text, 0,
                                             call->log);

        if (ngx_http_twirt_call_greeting_play(call, &copy) == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "twirt: the greeting, %uz ms, played from Redis",
                          copy.len / 8);

            ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_HITS, 1);
            ngx_http_twirt_call_event(call, "greeting",
                json_pack("{s:s,s:I,s:s}", "source", "cache",
                          "audio_ms", (json_int_t) (copy.len / 8),
                          "from", "redis"));

            call->greeting = NGX_HTTP_TWIRT_GREETING_PLAYING;

            if (call->greeting_due) {
                ngx_http_twirt_call_heard(call);
            }

            return;
        }
    }

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_MISSES, 1);

    call->greeting = NGX_HTTP_TWIRT_GREETING_FILL;

    if (call->greeting_due && call->phase == NGX_HTTP_TWIRT_CALL_ACTIVE) {
        ngx_http_twirt_call_greeting_ask(call);
    }
}


/*
 * The cached audio goes out at once, frames and marks as the model's
 * deltas would, under an item of its own: the barge-in, the silence timer
 * and what waits for the agent to be heard work from them unchanged.  It
 * is queued whole, so it must leave half of twirt_send_queue_size free.
 */

static ngx_int_t
ngx_http_twirt_call_greeting_play(ngx_http_twirt_call_t *call,
    ngx_str_t *audio)
{
    u_char       *buf;
    size_t        n, off, need, pending, frames;
    ngx_str_t     id, chunk, b64;

    frames = (audio->len + NGX_HTTP_TWIRT_GREETING_FRAME - 1)
             / NGX_HTTP_TWIRT_GREETING_FRAME;

    /* a frame's JSON and its mark's, with two streamSids, and headers */
    need = ngx_base64_encoded_length(audio->len)
           + frames * (2 * call->stream_sid.len + 128);

    pending = call->twilio->out_last - call->twilio->out_pos;

    if (audio->len == 0 || pending + need > call->twilio->conf->max_queue / 2)
    {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the cached greeting, %uz bytes to send, is "
                      "not played: over half of twirt_send_queue_size",
                      need);
        return NGX_DECLINED;
    }

    buf = ngx_pnalloc(call->pool,
                      ngx_base64_encoded_length(NGX_HTTP_TWIRT_GREETING_FRAME));
    if (buf == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&id, NGX_HTTP_TWIRT_GREETING_ITEM);

    for (off = 0; off < audio->len; off += n) {
        n = ngx_min(NGX_HTTP_TWIRT_GREETING_FRAME, audio->len - off);

        chunk.data = audio->data + off;
        chunk.len = n;
        b64.data = buf;

        ngx_encode_base64(&b64, &chunk);

        if (ngx_http_twirt_call_play(call, &id, &b64, n) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    call->greeting_item = call->item;
    call->greeting_total = audio->len;

    /* its last frame's mark: the greeting was heard once it is echoed */
    return ngx_http_twirt_call_mark_send(call);
}


/* a delta of the model's greeting: its μ-law is kept, up to the bound */

static void
ngx_http_twirt_call_greeting_record(ngx_http_twirt_call_t *call,
    ngx_str_t *delta, size_t bytes)
{
    u_char     *p;
    size_t      size;
    ngx_str_t   dst;

    if (call->greeting_len + bytes > NGX_HTTP_TWIRT_GREETING_MAX) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the greeting is not cached: longer than "
                      "%d ms", NGX_HTTP_TWIRT_GREETING_MAX / 8);
        ngx_http_twirt_call_greeting_off(call);
        return;
    }

    if (call->greeting_len + bytes > call->greeting_size) {
        size = ngx_max(call->greeting_size * 2, call->greeting_len + bytes);
        size = ngx_max(size, 16384);
        size = ngx_min(size, NGX_HTTP_TWIRT_GREETING_MAX);

        p = ngx_alloc(size, call->log);
        if (p == NULL) {
            ngx_http_twirt_call_greeting_off(call);
            return;
        }

        if (call->greeting_audio) {
            ngx_memcpy(p, call->greeting_audio, call->greeting_len);
            ngx_free(call->greeting_audio);
        }

        call->greeting_audio = p;
        call->greeting_size = size;
    }

    dst.data = call->greeting_audio + call->greeting_len;

    if (ngx_decode_base64(&dst, delta) != NGX_OK) {
        ngx_http_twirt_call_greeting_off(call);
        return;
    }

    call->greeting_len += dst.len;
}


/*
 * The model's greeting is done: kept when the model said it whole
 * ("completed", not cut by the caller); a failed one is asked for again
 * (ngx_http_twirt_call_response_failed), and that one is recorded.
 */

static void
ngx_http_twirt_call_greeting_done(ngx_http_twirt_call_t *call,
    json_t *response, const char *status)
{
    json_t     *v;
    ngx_int_t   rc;
    ngx_str_t   audio;

    if (call->greeting != NGX_HTTP_TWIRT_GREETING_FILL
        || call->greeting_response_len == 0)
    {
        return;
    }

    v = json_object_get(response, "id");

    if (!json_is_string(v)
        || json_string_length(v) != call->greeting_response_len
        || ngx_memcmp(json_string_value(v), call->greeting_response,
                      call->greeting_response_len)
           != 0)
    {
        return;
    }

    if (status && ngx_strcmp(status, "failed") == 0) {
        call->greeting_response_len = 0;
        call->greeting_len = 0;
        return;
    }

    if (status && ngx_strcmp(status, "completed") == 0
        && !(call->dropped_id_len == call->greeting_response_len
             && ngx_memcmp(call->dropped_id, call->greeting_response,
                           call->dropped_id_len)
                == 0)
        && call->greeting_len && call->greeting_text.len)
    {
        audio.data = call->greeting_audio;
        audio.len = call->greeting_len;

        rc = ngx_http_twirt_greeting_store(call->conf->greeting_cache,
                                           call->greeting_key, &audio,
                                           &call->greeting_text,
                                           call->greeting_filled, call->log);

        if (rc == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, call->log, 0,
                          "twirt: the greeting, %uz ms, is cached",
                          audio.len / 8);
            ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_STORED, 1);
        }

        /*
         * Redis keeps it even when this zone cannot, unless it is filled
         * per call and said here the first time
         */

        if (rc == NGX_OK || !call->greeting_filled) {
            ngx_http_twirt_greeting_redis_store(call->conf->greeting_cache,
                                                call->greeting_key, &audio,
                                                &call->greeting_text,
                                                call->pool, call->log);
        }

    } else {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the greeting is not cached: %s",
                      status ? status : "no status");
    }

    ngx_http_twirt_call_greeting_off(call);
}


static void
ngx_http_twirt_call_greeting_off(ngx_http_twirt_call_t *call)
{
    call->greeting = NGX_HTTP_TWIRT_GREETING_OFF;

    if (call->greeting_audio) {
        ngx_free(call->greeting_audio);
        call->greeting_audio = NULL;
        call->greeting_len = 0;
        call->greeting_size = 0;
    }
}


/*
 * The cached greeting was heard to its end, or cut by the caller, and the
 * session is configured: the model is told what it "said", as an
 * assistant message, so that it does not greet again.  Cut, it is the
 * part heard: the text in proportion of the audio played, in characters,
 * cut at a character's start; nothing heard, nothing told.
 */

static void
ngx_http_twirt_call_greeting_tell(ngx_http_twirt_call_t *call)
{
    json_t                 *ev;
    size_t                  n;
    uint64_t                heard;
    ngx_http_twirt_item_t  *item;

    if (call->greeting != NGX_HTTP_TWIRT_GREETING_PLAYING
        || call->phase != NGX_HTTP_TWIRT_CALL_ACTIVE
        || call->mark_count != 0 || call->unmarked != 0)
    {
        return;
    }

    call->greeting = NGX_HTTP_TWIRT_GREETING_TOLD;

    item = &call->items[call->greeting_item];
    heard = ngx_min(item->played, call->greeting_total);

    n = ngx_http_twirt_greeting_heard(&call->greeting_text, heard,
                                      call->greeting_total);

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: the cached greeting was heard for %uL ms of %uL "
                  "ms: the model is told %uz of %uz bytes",
                  heard / 8, call->greeting_total / 8, n,
                  call->greeting_text.len);

    if (n == 0) {
        return;
    }

    ev = json_pack("{s:s,s:s,s:{s:s,s:s,s:[{s:s,s:s%}]}}",
                   "type", "conversation.item.create",
                   "event_id", NGX_HTTP_TWIRT_GREETING_ITEM,
                   "item", "type", "message", "role", "assistant",
                   "content", "type", "output_text",
                   "text", call->greeting_text.data, n);

    if (ev == NULL || ngx_http_twirt_call_send_json(call, ev) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the model could not be told the greeting");
    }

    json_decref(ev);

    ngx_http_twirt_call_event(call, "transcript",
        json_pack("{s:s,s:s%,s:s}", "role", "agent",
                  "text", call->greeting_text.data, n,
                  "item_id", NGX_HTTP_TWIRT_GREETING_ITEM));
}


static void
ngx_http_twirt_call_delta(ngx_http_twirt_call_t *call, ngx_str_t *audio,
    ngx_str_t *response, ngx_str_t *item_name)
{
    ssize_t     bytes;
    ngx_str_t   delta, response_id;

    if (audio->data == NULL) {
        return;
    }

    delta = *audio;
    response_id = *response;

    if (call->dropped_id_len && response_id.len == call->dropped_id_len
        && ngx_memcmp(response_id.data, call->dropped_id, response_id.len)
           == 0)
    {
        /* a late delta of the response the caller interrupted */
        call->dropped_deltas++;
        return;
    }

    bytes = ngx_http_twirt_call_base64_size(&delta);

    if (bytes == NGX_ERROR) {
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_INVALID_AUDIO);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored an audio delta that is not base64");
        return;
    }

    if (call->greeting == NGX_HTTP_TWIRT_GREETING_FILL
        && response_id.len == call->greeting_response_len
        && ngx_memcmp(response_id.data, call->greeting_response,
                      response_id.len)
           == 0)
    {
        ngx_http_twirt_call_greeting_record(call, &delta, bytes);
    }

    (void) ngx_http_twirt_call_play(call, item_name, &delta, bytes);
}


/*
 * Audio to Twilio: media (base64 μ-law), then a numbered mark once
 * twirt_mark_interval of audio went without one (0: after each); the
 * item's accounting for the barge-in.  The model's deltas and a cached
 * greeting's frames alike.  The last audio of an item is always marked
 * (ngx_http_twirt_call_mark_send(), when the next item starts or the
 * response is done): what waits for it to be heard waits for that echo.
 */

static ngx_int_t
ngx_http_twirt_call_play(ngx_http_twirt_call_t *call, ngx_str_t *item_name,
    ngx_str_t *payload, size_t bytes)
{
    ngx_uint_t              now;
    ngx_str_t               parts[5], item_id;
    ngx_http_twirt_item_t  *item;

    item_id = *item_name;

    if (item_id.len >= NGX_HTTP_TWIRT_ID_MAX) {
        item_id.len = NGX_HTTP_TWIRT_ID_MAX - 1;
    }

    item = &call->items[call->item];

    if (item->id_len != item_id.len
        || ngx_memcmp(item->id, item_id.data, item_id.len) != 0)
    {
        /* the previous item's last audio gets its mark */
        if (call->unmarked
            && ngx_http_twirt_call_mark_send(call) != NGX_OK)
        {
            return NGX_ERROR;
        }

        /* a new item: reset its accounting */
        if (item->id_len || item->received) {
            call->item = (call->item + 1) % NGX_HTTP_TWIRT_ITEMS;
            item = &call->items[call->item];
        }

        ngx_memcpy(item->id, item_id.data, item_id.len);
        item->id_len = item_id.len;
        item->received = 0;
        item->played = 0;
        call->unmarked = 0;
    }

    /*
     * All sent was played: when this audio starts playing is not known
     * (Twilio's jitter buffer), so the clock waits for its mark's echo,
     * sent right after it.
     */

    now = (call->mark_count == 0 && call->unmarked == 0);

    if (now) {
        call->clock = 0;
    }

    item->received += bytes;
    call->unmarked += bytes;

    ngx_str_set(&parts[0], "{\"event\":\"media\",\"streamSid\":\"");
    parts[1] = call->stream_sid;
    ngx_str_set(&parts[2], "\",\"media\":{\"payload\":\"");
    parts[3] = *payload;
    ngx_str_set(&parts[4], "\"}}");

    if (ngx_http_twirt_ws_send_parts(call->twilio, NGX_HTTP_TWIRT_WS_TEXT,
                                     parts, 5)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    call->media_out++;
    call->spoke = 1;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_MEDIA_OUT, 1);

    if (!now && call->unmarked < (uint64_t) call->conf->mark_interval * 8) {
        /* a mark per twirt_mark_interval of audio is enough */
        return NGX_OK;
    }

    return ngx_http_twirt_call_mark_send(call);
}


/* a numbered mark after the audio of call->item sent so far */

static ngx_int_t
ngx_http_twirt_call_mark_send(ngx_http_twirt_call_t *call)
{
    ngx_str_t               parts[5];
    ngx_http_twirt_mark_t  *mark;
    u_char                  seq[NGX_INT_T_LEN];

    if (call->unmarked == 0) {
        return NGX_OK;
    }

    if (call->mark_count == call->marks_size
        && ngx_http_twirt_call_marks_grow(call) != NGX_OK)
    {
        /* marks carry totals: the next one covers this audio too */
        return NGX_OK;
    }

    call->unmarked = 0;
    call->mark_seq++;

    mark = &call->marks[(call->mark_head + call->mark_count)
                        % call->marks_size];
    mark->seq = call->mark_seq;
    mark->item = call->item;
    mark->bytes = call->items[call->item].received;
    call->mark_count++;

    ngx_str_set(&parts[0], "{\"event\":\"mark\",\"streamSid\":\"");
    parts[1] = call->stream_sid;
    ngx_str_set(&parts[2], "\",\"mark\":{\"name\":\"");
    parts[3].data = seq;
    parts[3].len = ngx_sprintf(seq, "%ui", call->mark_seq) - seq;
    ngx_str_set(&parts[4], "\"}}");

    return ngx_http_twirt_ws_send_parts(call->twilio, NGX_HTTP_TWIRT_WS_TEXT,
                                        parts, 5);
}


/*
 * The ring of unechoed marks, doubled when full up to NGX_HTTP_TWIRT_MARKS:
 * a few entries hold most calls (a mark per 100 ms of audio, echoed as it
 * plays), and a ring sized for the worst case would be most of a call's
 * memory.  NGX_DECLINED: at the bound, or no memory.
 */

static ngx_int_t
ngx_http_twirt_call_marks_grow(ngx_http_twirt_call_t *call)
{
    ngx_uint_t              i, size;
    ngx_http_twirt_mark_t  *marks;

    if (call->marks_size == NGX_HTTP_TWIRT_MARKS) {
        return NGX_DECLINED;
    }

    size = call->marks_size ? call->marks_size * 2 : NGX_HTTP_TWIRT_MARKS_MIN;

    marks = ngx_alloc(size * sizeof(ngx_http_twirt_mark_t), call->log);
    if (marks == NULL) {
        return NGX_DECLINED;
    }

    for (i = 0; i < call->mark_count; i++) {
        marks[i] = call->marks[(call->mark_head + i) % call->marks_size];
    }

    if (call->marks) {
        ngx_free(call->marks);
    }

    call->marks = marks;
    call->marks_size = size;
    call->mark_head = 0;

    return NGX_OK;
}


/*
 * The caller speaks while the model's audio may still be playing: clear
 * Twilio's buffer and truncate the item being played to exactly what was
 * heard, floor(min(played, received)) ms, from the last mark echoed
 * before the clear; never from inbound media timestamps.
 */

static void
ngx_http_twirt_call_speech_started(ngx_http_twirt_call_t *call,
    json_t *unused)
{
    /* the caller speaks: no silence, and the prompts count from 0 again */

    call->caller_speaking = 1;
    call->silence_tries = 0;
    ngx_http_twirt_call_silence(call);

    if (!call->conf->vad.interrupt_response) {
        /* interrupt_response off: the model talks on, and so does Twilio */
        return;
    }

    ngx_http_twirt_call_interrupt(call, "barge-in", 1);
}


/*
 * The caller stopped speaking: the answer comes (server VAD) or is asked
 * for (create_response off); if none does, the silence counts from now.
 */

static void
ngx_http_twirt_call_speech_stopped(ngx_http_twirt_call_t *call,
    json_t *unused)
{
    call->caller_speaking = 0;

    /* the turn is answered in the session that heard it */
    ngx_http_twirt_rotate_answer_due(call, 1);

    ngx_http_twirt_call_silence(call);
}


/*
 * What Twilio played of the item at its head, in bytes: up to the last
 * echoed mark and, with marks paced, on from it by the playback clock (8
 * bytes a ms since that echo; none before the first echo after the
 * buffer was empty), never past the next mark not echoed (it would have
 * been) nor past the audio sent.  With a mark per delta, the last echo
 * alone.
 */

static uint64_t
ngx_http_twirt_call_played(ngx_http_twirt_call_t *call,
    ngx_http_twirt_item_t *item)
{
    uint64_t  played, bound;

    played = item->played;

    if (call->conf->mark_interval == 0 || !call->clock) {
        return played;
    }

    bound = item->received;

    if (call->mark_count
        && &call->items[call->marks[call->mark_head].item] == item)
    {
        bound = ngx_min(bound, call->marks[call->mark_head].bytes);
    }

    played += (uint64_t) (ngx_current_msec - call->played_at) * 8;

    return ngx_max(item->played, ngx_min(played, bound));
}


/*
 * What is being said stops: its late deltas are dropped, Twilio's buffer
 * is cleared and the item truncated to what was heard (a barge-in: the
 * server cancels the response; a control message: twirt does).
 */

static void
ngx_http_twirt_call_interrupt(ngx_http_twirt_call_t *call, const char *why,
    ngx_uint_t barge_in)
{
    json_t                     *ev;
    uint64_t                    ms;
    ngx_str_t                   parts[3];
    ngx_http_twirt_item_t      *item;
    ngx_http_twirt_log_text_t   t;

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE
        && call->response_id_len)
    {
        /* cancelled (by the server or by twirt): drop what is late */
        ngx_memcpy(call->dropped_id, call->response_id,
                   call->response_id_len);
        call->dropped_id_len = call->response_id_len;
    }

    if (call->mark_count == 0 && call->unmarked == 0) {
        /* nothing is playing: no clear, no truncate */
        return;
    }

    ngx_str_set(&parts[0], "{\"event\":\"clear\",\"streamSid\":\"");
    parts[1] = call->stream_sid;
    ngx_str_set(&parts[2], "\"}");

    (void) ngx_http_twirt_ws_send_parts(call->twilio, NGX_HTTP_TWIRT_WS_TEXT,
                                        parts, 3);
    call->clears++;

    if (barge_in) {
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_BARGE_INS, 1);
    }

    item = call->mark_count ? &call->items[call->marks[call->mark_head].item]
                            : &call->items[call->item];

    item->played = ngx_http_twirt_call_played(call, item);

    call->clear_seq = call->mark_seq;
    call->mark_count = 0;
    call->unmarked = 0;

    ms = ngx_min(item->played, item->received) / 8;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: %s: item \"%V\" played %uL ms of %uL ms",
                  why, ngx_http_twirt_log_text(&t, item->id, item->id_len),
                  item->played / 8,
                  item->received / 8);

    if (barge_in) {
        ngx_http_twirt_call_event(call, "barge_in",
            json_pack("{s:s%,s:I,s:I}", "item_id", item->id, item->id_len,
                      "heard_ms", (json_int_t) ms,
                      "audio_ms", (json_int_t) (item->received / 8)));
    }

    if (item->played >= item->received || item->id_len == 0) {
        ngx_http_twirt_call_heard(call);
        return;
    }

    if (call->greeting == NGX_HTTP_TWIRT_GREETING_PLAYING
        && item == &call->items[call->greeting_item])
    {
        /* the model never had it: it is told the part heard instead */
        item->received = item->played;
        ngx_http_twirt_call_heard(call);
        return;
    }

    /*
     * Nothing heard yet still truncates, to 0 ms: the model must not
     * believe it said what the caller never heard.
     */

    ev = json_pack("{s:s,s:s%,s:i,s:I}",
                   "type", "conversation.item.truncate",
                   "item_id", item->id, item->id_len,
                   "content_index", 0,
                   "audio_end_ms", (json_int_t) ms);

    if (ev && ngx_http_twirt_call_send_json(call, ev) == NGX_OK) {
        call->truncates++;
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_TRUNCATES, 1);
    }

    json_decref(ev);

    item->received = item->played;

    /* a goodbye the caller talked over has ended all the same */
    ngx_http_twirt_call_heard(call);
}


/*
 * The caller's turn is committed.  With create_response off nobody else
 * asks for the answer: twirt does, one response at a time.
 */

static void
ngx_http_twirt_call_committed(ngx_http_twirt_call_t *call, json_t *ev)
{
    ngx_http_twirt_rotate_committed(call, json_object_get(ev, "item_id"));

    if (call->conf->vad.create_response) {
        return;
    }

    ngx_http_twirt_call_response_create(call, NULL);
}


/*
 * The model called a function: end_call and transfer_call are twirt's,
 * the others run on the user's backend (ngx_http_twirt_tool.c).  Every
 * call gets an output, an error one when it cannot run; the response to
 * the outputs is asked for once all of them are sent.
 */

static void
ngx_http_twirt_call_function(ngx_http_twirt_call_t *call, json_t *ev)
{
    char                       *body;
    json_t                     *args, *req, *agent;
    ngx_str_t                   name, call_id;
    const char                 *s;
    json_error_t                err;
    ngx_http_twirt_tool_t      *tool;
    ngx_http_twirt_log_text_t   t;

    s = json_string_value(json_object_get(ev, "name"));

    if (s == NULL) {
        return;
    }

    name.data = (u_char *) s;
    name.len = json_string_length(json_object_get(ev, "name"));

    s = json_string_value(json_object_get(ev, "call_id"));
    call_id.data = (u_char *) (s ? s : "");
    call_id.len = s ? json_string_length(json_object_get(ev, "call_id")) : 0;

    ngx_http_twirt_call_event(call, "tool",
        json_pack("{s:s%,s:O*,s:O*}", "name", name.data, name.len,
                  "call_id", json_object_get(ev, "call_id"),
                  "arguments", json_object_get(ev, "arguments")));

    if (ngx_strcmp(name.data, "end_call") == 0 && call->conf->end_call) {
        /* the goodbye plays to its end, then the stream closes */
        call->after = NGX_HTTP_TWIRT_AFTER_HANG_UP;
        ngx_http_twirt_call_heard(call);
        return;
    }

    if (ngx_strcmp(name.data, "transfer_call") == 0) {
        /* its output is sent; the answer comes with the other tools' */
        ngx_http_twirt_transfer_call(call, ev);
        call->tool_answer = 1;
        ngx_http_twirt_call_tool_answer(call);
        return;
    }

    if (!ngx_http_twirt_call_declared(call, &name)) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the model called unknown tool \"%V\"",
                      ngx_http_twirt_log_str(&t, &name));
        ngx_http_twirt_call_tool_output(call, &name, &call_id,
                                        NGX_HTTP_TWIRT_TOOL_UNKNOWN, NULL);
        return;
    }

    s = json_string_value(json_object_get(ev, "arguments"));
    args = s ? json_loads(s, JSON_REJECT_DUPLICATES, &err) : NULL;

    if (!json_is_object(args)) {
        json_decref(args);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the model called tool \"%V\" with arguments "
                      "that are not a JSON object",
                      ngx_http_twirt_log_str(&t, &name));
        ngx_http_twirt_call_tool_output(call, &name, &call_id,
                                        NGX_HTTP_TWIRT_TOOL_INVALID_ARGUMENTS,
                                        NULL);
        return;
    }

    if (call->conf->tool_uri.len == 0) {
        json_decref(args);
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the model called tool \"%V\" but no "
                      "\"twirt_tool_uri\" is configured",
                      ngx_http_twirt_log_str(&t, &name));
        ngx_http_twirt_call_tool_output(call, &name, &call_id,
                                        NGX_HTTP_TWIRT_TOOL_NO_BACKEND, NULL);
        return;
    }

    agent = json_object_get(call->parameters, "agent");

    req = json_pack("{s:s%,s:s%,s:O,s:s%,s:s%,s:o,s:O*}",
                    "call_sid", call->call_sid.data, call->call_sid.len,
                    "stream_sid", call->stream_sid.data, call->stream_sid.len,
                    "agent", agent ? agent : json_null(),
                    "name", name.data, name.len,
                    "call_id", call_id.data, call_id.len,
                    "arguments", args,
                    "parameters", call->parameters);

    body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);

    tool = ngx_http_twirt_tool_create(call->twilio->request, call->log);

    if (body == NULL || tool == NULL
        || ngx_http_twirt_call_tool_str(tool, &tool->body, body) != NGX_OK
        || ngx_http_twirt_call_tool_copy(tool, &tool->name, &name) != NGX_OK
        || ngx_http_twirt_call_tool_copy(tool, &tool->call_id, &call_id)
           != NGX_OK)
    {
        free(body);
        ngx_http_twirt_call_tool_output(call, &name, &call_id,
                                        NGX_HTTP_TWIRT_TOOL_FAILED, NULL);
        return;
    }

    free(body);

    tool->uri = call->conf->tool_uri;
    tool->secret = call->conf->tool_secret;
    tool->timeout = call->conf->tool_timeout;
    tool->max_output = call->conf->tool_max_output;
    tool->handler = ngx_http_twirt_call_tool_done;
    tool->data = call;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: tool \"%V\" called, %uz bytes of request",
                  ngx_http_twirt_log_str(&t, &name), tool->body.len);

    if (call->tools_running < call->conf->tool_concurrency) {
        ngx_http_twirt_call_tool_run(call, tool);

    } else {
        /* appended: they run in the order the model called them */
        ngx_http_twirt_call_tool_append(&call->tools_waiting, tool);
    }

    if (call->conf->tool_filler_after && !call->filler_timer.timer_set
        && !call->filler_said)
    {
        ngx_add_timer(&call->filler_timer, call->conf->tool_filler_after);
    }
}


/* the tools the session declared: the agent profile's or the configuration's */

static ngx_uint_t
ngx_http_twirt_call_declared(ngx_http_twirt_call_t *call, ngx_str_t *name)
{
    size_t   i;
    json_t  *tools, *tool, *v;

    tools = json_object_get(call->profile, "tools");

    if (tools == NULL) {
        tools = call->conf->tools;
    }

    json_array_foreach(tools, i, tool) {
        v = json_object_get(tool, "name");

        if (json_string_length(v) == name->len
            && ngx_strncmp(json_string_value(v), name->data, name->len) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static void
ngx_http_twirt_call_tool_append(ngx_http_twirt_tool_t **list,
    ngx_http_twirt_tool_t *tool)
{
    while (*list) {
        list = &(*list)->next;
    }

    tool->next = NULL;
    *list = tool;
}


static void
ngx_http_twirt_call_tool_run(ngx_http_twirt_call_t *call,
    ngx_http_twirt_tool_t *tool)
{
    call->tools_running++;
    ngx_http_twirt_call_tool_append(&call->tools, tool);
    ngx_http_twirt_tool_start(tool);
}


static void
ngx_http_twirt_call_tool_done(ngx_http_twirt_tool_t *tool)
{
    ngx_http_twirt_call_t  *call = tool->data;

    ngx_http_twirt_tool_t  **tp, *next;

    for (tp = &call->tools; *tp; tp = &(*tp)->next) {
        if (*tp == tool) {
            *tp = tool->next;
            call->tools_running--;
            break;
        }
    }

    ngx_http_twirt_call_tool_output(call, &tool->name, &tool->call_id,
                                    tool->result, tool);

    if (call->phase >= NGX_HTTP_TWIRT_CALL_ENDING) {
        return;
    }

    next = call->tools_waiting;

    if (next && call->tools_running < call->conf->tool_concurrency) {
        call->tools_waiting = next->next;
        ngx_http_twirt_call_tool_run(call, next);
    }

    ngx_http_twirt_call_tool_answer(call);
}


/*
 * The output the model gets: the backend's answer as it is, or an error
 * object it can talk about; also an event, a log line and a metric.
 */

static void
ngx_http_twirt_call_tool_output(ngx_http_twirt_call_t *call, ngx_str_t *name,
    ngx_str_t *call_id, ngx_http_twirt_tool_result_e result,
    ngx_http_twirt_tool_t *tool)
{
    char                       *text;
    json_t                     *ev, *output, *err;
    ngx_uint_t                  status;
    ngx_msec_t                  ms;
    ngx_http_twirt_log_text_t   t;

    status = tool ? tool->status : 0;
    ms = tool ? ngx_current_msec - tool->started : 0;
    text = NULL;

    if (result == NGX_HTTP_TWIRT_TOOL_OK) {
        output = json_stringn(tool->output_len ? (char *) tool->output : "",
                              tool->output_len);

    } else {
        err = json_pack("{s:s,s:s}", "error",
                        ngx_http_twirt_tool_result_name(result),
                        "message", ngx_http_twirt_call_tool_why(result));

        if (err && status) {
            json_object_set_new(err, "status", json_integer(status));
        }

        text = err ? json_dumps(err, JSON_COMPACT|JSON_SORT_KEYS) : NULL;
        json_decref(err);

        output = json_string(text ? text : "{\"error\":\"failed\"}");
    }

    if (result == NGX_HTTP_TWIRT_TOOL_OK) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: tool \"%V\" answered %ui, %uz bytes in %M ms",
                      ngx_http_twirt_log_str(&t, name), status,
                      tool->output_len, ms);

    } else {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: tool \"%V\" failed: %s (HTTP %ui, %uz bytes "
                      "in %M ms)", ngx_http_twirt_log_str(&t, name),
                      ngx_http_twirt_tool_result_name(result), status,
                      tool ? tool->received : 0, ms);
    }

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_TOOL_OK + result, 1);

    ngx_http_twirt_call_event(call, "tool_result",
        json_pack("{s:s%,s:s%,s:s,s:i,s:I,s:I}",
                  "name", name->data, name->len,
                  "call_id", call_id->data, call_id->len,
                  "status", ngx_http_twirt_tool_result_name(result),
                  "http_status", (int) status,
                  "duration_ms", (json_int_t) ms,
                  "output_bytes", (json_int_t) (tool ? tool->received : 0)));

    ev = json_pack("{s:s,s:{s:s,s:s%,s:o}}",
                   "type", "conversation.item.create",
                   "item", "type", "function_call_output",
                   "call_id", call_id->data, call_id->len,
                   "output", output);

    if (ev) {
        (void) ngx_http_twirt_call_send_json(call, ev);
        json_decref(ev);
    }

    free(text);

    call->tool_answer = 1;

    if (tool == NULL) {
        ngx_http_twirt_call_tool_answer(call);
    }
}


static const char *
ngx_http_twirt_call_tool_why(ngx_http_twirt_tool_result_e result)
{
    switch (result) {

    case NGX_HTTP_TWIRT_TOOL_STATUS:
        return "The tool's backend answered with an error status.";

    case NGX_HTTP_TWIRT_TOOL_TIMEOUT:
        return "The tool's backend did not answer in time.";

    case NGX_HTTP_TWIRT_TOOL_UNREACHABLE:
        return "The tool's backend could not be reached.";

    case NGX_HTTP_TWIRT_TOOL_TOO_LARGE:
        return "The tool's answer was too large to use.";

    case NGX_HTTP_TWIRT_TOOL_INVALID_OUTPUT:
        return "The tool's answer was not text.";

    case NGX_HTTP_TWIRT_TOOL_INVALID_ARGUMENTS:
        return "The arguments were not a valid JSON object; call the tool "
               "again with valid arguments.";

    case NGX_HTTP_TWIRT_TOOL_UNKNOWN:
        return "There is no tool of this name.";

    case NGX_HTTP_TWIRT_TOOL_NO_BACKEND:
        return "The tool is not available.";

    default:
        return "The tool could not be run.";
    }
}


/*
 * One response.create for all the outputs of a response: once none is
 * running or waiting and no response is active (the one that called the
 * tools, a filler).
 */

static void
ngx_http_twirt_call_tool_answer(ngx_http_twirt_call_t *call)
{
    if (!call->tool_answer || call->tools || call->tools_waiting
        || call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE
        || call->phase >= NGX_HTTP_TWIRT_CALL_ENDING)
    {
        return;
    }

    call->tool_answer = 0;
    call->filler_said = 0;

    if (call->filler_timer.timer_set) {
        ngx_del_timer(&call->filler_timer);
    }

    ngx_http_twirt_call_response_create(call, NULL);
}


/*
 * A tool runs long: the agent says the filler, an out-of-band response
 * that adds nothing to the conversation, when no other one is active.
 */

static void
ngx_http_twirt_call_filler(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    u_char  *p;
    json_t  *rc;

    if ((call->tools == NULL && call->tools_waiting == NULL)
        || call->phase >= NGX_HTTP_TWIRT_CALL_ENDING)
    {
        return;
    }

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        ngx_add_timer(&call->filler_timer, 250);
        return;
    }

    p = ngx_pnalloc(call->pool, call->conf->tool_filler.len + 128);
    if (p == NULL) {
        return;
    }

    ngx_sprintf(p, "Say exactly this to the caller, and nothing else: "
                "\xe3\x80\x8c%V\xe3\x80\x8d%Z", &call->conf->tool_filler);

    rc = json_pack("{s:s,s:s,s:{s:s,s:[s],s:s,s:[],s:{s:s}}}",
                   "type", "response.create",
                   "event_id", NGX_HTTP_TWIRT_RESPONSE_EVENT,
                   "response", "conversation", "none",
                   "output_modalities", "audio",
                   "instructions", (char *) p,
                   "input",
                   "metadata", "twirt", "filler");

    if (rc && ngx_http_twirt_call_send_json(call, rc) == NGX_OK) {
        call->response = NGX_HTTP_TWIRT_RESPONSE_ACTIVE;
        call->filler_said = 1;
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_TOOL_FILLERS, 1);
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: a tool runs %M ms: the agent says the filler",
                      call->conf->tool_filler_after);
    }

    json_decref(rc);
}


/* the call ends: no tool answers it any more */

static void
ngx_http_twirt_call_tools_cancel(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_tool_t  *tool, *next;

    for (tool = call->tools; tool; tool = next) {
        next = tool->next;
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: tool \"%V\" canceled: the call ended",
                      &tool->name);
        ngx_http_twirt_tool_cancel(tool);
    }

    for (tool = call->tools_waiting; tool; tool = next) {
        next = tool->next;
        ngx_http_twirt_tool_cancel(tool);
    }

    call->tools = NULL;
    call->tools_waiting = NULL;
    call->tools_running = 0;

    if (call->filler_timer.timer_set) {
        ngx_del_timer(&call->filler_timer);
    }
}


static ngx_int_t
ngx_http_twirt_call_tool_copy(ngx_http_twirt_tool_t *tool, ngx_str_t *dst,
    ngx_str_t *src)
{
    dst->data = ngx_pnalloc(tool->request->pool, src->len + 1);
    if (dst->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->data[src->len] = '\0';
    dst->len = src->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_call_tool_str(ngx_http_twirt_tool_t *tool, ngx_str_t *dst,
    char *src)
{
    ngx_str_t  s;

    s.data = (u_char *) src;
    s.len = ngx_strlen(src);

    return ngx_http_twirt_call_tool_copy(tool, dst, &s);
}


static void
ngx_http_twirt_call_response_done(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t                     *response;
    const char                 *status, *reason;
    ngx_str_t                   instructions;
    ngx_http_twirt_response_e   was;

    response = json_object_get(ev, "response");
    status = json_string_value(json_object_get(response, "status"));

    if (ngx_http_twirt_realtime_usage(json_object_get(response, "usage"),
                                      &call->usage)
        == NGX_ERROR)
    {
        ngx_http_twirt_call_bad_usage(call);
    }

    /* the cost so far, for the board */
    ngx_http_twirt_call_event(call, "cost",
        json_pack("{s:I,s:f}", "tokens", (json_int_t) call->usage.total,
                  "cost_usd", ngx_http_twirt_realtime_cost(call->conf->prices,
                                                           &call->usage)));

    ngx_http_twirt_call_greeting_done(call, response, status);

    was = call->response;

    call->response = NGX_HTTP_TWIRT_RESPONSE_IDLE;
    call->response_id_len = 0;

    if (status && (ngx_strcmp(status, "failed") == 0
                   || ngx_strcmp(status, "incomplete") == 0))
    {
        reason = ngx_http_twirt_call_response_ended(call, status,
                     json_object_get(response, "status_details"));

        if (status[0] == 'f') {
            ngx_http_twirt_call_response_failed(call, response, reason);
        }

    } else {
        call->failures = 0;
    }

    if (call->phase >= NGX_HTTP_TWIRT_CALL_ENDING) {
        return;
    }

    if (was == NGX_HTTP_TWIRT_RESPONSE_QUEUED) {
        instructions = call->queued_instructions;
        ngx_str_null(&call->queued_instructions);
        ngx_http_twirt_call_response_create(call, instructions.len
                                                  ? &instructions : NULL);
    }

    ngx_http_twirt_call_tool_answer(call);
    ngx_http_twirt_call_heard(call);
}


/*
 * A response the model did not finish: "incomplete" (max_output_tokens,
 * content filter) or "failed".  Both are heard as a cut-off answer or
 * silence, so they are events, log lines and metrics.
 */

static const char *
ngx_http_twirt_call_response_ended(ngx_http_twirt_call_t *call,
    const char *status, json_t *details)
{
    ngx_uint_t                  failed;
    const char                 *reason;
    ngx_http_twirt_log_text_t   t;

    failed = (status[0] == 'f');    /* else "incomplete" */

    reason = json_string_value(failed
                               ? json_object_get(json_object_get(details,
                                                                 "error"),
                                                 "code")
                               : json_object_get(details, "reason"));
    reason = reason ? reason : "unknown";

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: response %s: %V", status,
                  ngx_http_twirt_log_cstr(&t, reason));

    ngx_http_twirt_metrics_add(failed ? NGX_HTTP_TWIRT_M_RESPONSES_FAILED
                                     : NGX_HTTP_TWIRT_M_RESPONSES_INCOMPLETE,
                              1);

    ngx_http_twirt_call_event(call, "response",
                              json_pack("{s:s,s:s}", "status", status,
                                        "reason", reason));

    return reason;
}


/*
 * A failed response leaves the caller in silence: it is asked for once
 * more, as it was asked; failing again, the agent apologises
 * (twirt_response_apology); when that fails too, or there is none, the
 * call fails so that the fallback plays.  A filler is not asked again:
 * the answer it covers comes anyway.  insufficient_quota fails the call
 * at once: no response would come of a retry.
 */

static void
ngx_http_twirt_call_response_failed(ngx_http_twirt_call_t *call,
    json_t *response, const char *reason)
{
    const char  *origin;

    origin = json_string_value(json_object_get(
                 json_object_get(response, "metadata"), "twirt"));

    if ((origin && ngx_strcmp(origin, "filler") == 0)
        || call->phase >= NGX_HTTP_TWIRT_CALL_ENDING)
    {
        return;
    }

    call->failures++;

    if (ngx_strcmp(reason, "insufficient_quota") == 0) {
        goto failed;
    }

    if (call->failures == 1) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: asking for the failed response again");
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_RESPONSES_RETRIED, 1);

        /* the instructions are kept in the pool: "say" is the last said */
        if (ngx_http_twirt_call_response_create(call,
                origin && ngx_strcmp(origin, "say") == 0 ? &call->said
                                                         : NULL)
            == NGX_OK)
        {
            return;
        }

    } else if (call->failures == 2 && call->conf->response_apology.len) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the response failed again: the agent "
                      "apologises");
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_APOLOGIES, 1);

        if (ngx_http_twirt_call_say(call, NGX_HTTP_TWIRT_SAY_APOLOGY)
            == NGX_OK)
        {
            return;
        }
    }

failed:

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  "twirt: %ui responses failed in a row and nothing more "
                  "can be said: the call fails", call->failures);

    ngx_http_twirt_metrics_error(
        ngx_http_twirt_end_kind(NGX_HTTP_TWIRT_END_RESPONSE_FAILED)->error);
    ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_RESPONSE_FAILED, NULL,
                            NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
}


/* the caller's words were not transcribed: the model still heard them */

static void
ngx_http_twirt_call_transcription_failed(ngx_http_twirt_call_t *call,
    json_t *ev)
{
    json_t                     *error;
    const char                 *code, *message;
    ngx_http_twirt_log_text_t   t, t2;

    error = json_object_get(ev, "error");
    code = json_string_value(json_object_get(error, "code"));
    message = json_string_value(json_object_get(error, "message"));

    code = code ? code : "unknown";
    message = message ? message : "";

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: caller transcription failed: %V: %V",
                  ngx_http_twirt_log_cstr(&t, code),
                  ngx_http_twirt_log_cstr(&t2, message));

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_TRANSCRIPTIONS_FAILED, 1);

    ngx_http_twirt_rotate_transcribed(call, json_object_get(ev, "item_id"),
                                      NULL);

    ngx_http_twirt_call_event(call, "error",
                              json_pack("{s:s,s:s,s:s,s:O*}",
                                        "kind", "transcription",
                                        "code", code, "message", message,
                                        "item_id",
                                        json_object_get(ev, "item_id")));
}


static void
ngx_http_twirt_call_error(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t                     *error;
    const char                 *code, *message, *event_id;
    ngx_http_twirt_log_text_t   t, t2;

    error = json_object_get(ev, "error");
    code = json_string_value(json_object_get(error, "code"));
    message = json_string_value(json_object_get(error, "message"));
    event_id = json_string_value(json_object_get(error, "event_id"));

    code = code ? code : "unknown";
    message = message ? message : "";

    if (ngx_strcmp(code, "conversation_already_has_active_response") == 0) {
        call->response = NGX_HTTP_TWIRT_RESPONSE_QUEUED;
        return;
    }

    if (ngx_strcmp(code, "response_cancel_not_active") == 0) {
        return;
    }

    /*
     * Our response.create refused for another reason: no response comes
     * of it (none was created since), so none is active any more
     */

    if (event_id && ngx_strcmp(event_id, NGX_HTTP_TWIRT_RESPONSE_EVENT) == 0
        && call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE
        && call->response_id_len == 0)
    {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the Realtime API refused a response.create: "
                      "%V: %V", ngx_http_twirt_log_cstr(&t, code),
                      ngx_http_twirt_log_cstr(&t2, message));

        ngx_http_twirt_call_event(call, "error",
                                  json_pack("{s:s,s:s,s:s}", "kind",
                                            "realtime", "code", code,
                                            "message", message));
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_REALTIME_ERROR);

        call->response = NGX_HTTP_TWIRT_RESPONSE_IDLE;
        ngx_http_twirt_call_tool_answer(call);
        ngx_http_twirt_call_heard(call);
        return;
    }

    ngx_http_twirt_call_event(call, "error",
                              json_pack("{s:s,s:s,s:s}", "kind", "realtime",
                                        "code", code, "message", message));

    if (event_id && ngx_strcmp(event_id, NGX_HTTP_TWIRT_SESSION_EVENT) == 0) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "twirt: the Realtime API rejected the session "
                      "update: %V: %V", ngx_http_twirt_log_cstr(&t, code),
                      ngx_http_twirt_log_cstr(&t2, message));
        ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_SESSION_REJECTED);
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_SESSION_REJECTED,
                                NULL, NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
        return;
    }

    ngx_http_twirt_metrics_error(NGX_HTTP_TWIRT_ERR_REALTIME_ERROR);

    if (ngx_strcmp(code, "session_expired") == 0) {
        if (ngx_http_twirt_rotate_expired(call) == NGX_OK) {
            return;
        }

        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_SESSION_EXPIRED,
                                NULL, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        return;
    }

    if (ngx_strcmp(code, "invalid_api_key") == 0) {
        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "twirt: the Realtime API refused the API key");
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_INVALID_API_KEY,
                                NULL, NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: Realtime API error %V: %V",
                  ngx_http_twirt_log_cstr(&t, code),
                  ngx_http_twirt_log_cstr(&t2, message));
}


/*
 * One response at a time: a second one waits for response.done.  One
 * with instructions is tagged "say" (its metadata, which response.done
 * echoes) and they are kept: a failed one is asked for again as it was.
 * NGX_OK: sent or queued.
 */

ngx_int_t
ngx_http_twirt_call_response_create(ngx_http_twirt_call_t *call,
    ngx_str_t *instructions)
{
    json_t     *ev;
    ngx_int_t   rc;

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        call->response = NGX_HTTP_TWIRT_RESPONSE_QUEUED;

        if (instructions) {
            call->queued_instructions = *instructions;
        }

        return NGX_OK;
    }

    if (instructions) {
        ev = json_pack("{s:s,s:s,s:{s:s%,s:{s:s}}}", "type", "response.create",
                       "event_id", NGX_HTTP_TWIRT_RESPONSE_EVENT,
                       "response", "instructions", instructions->data,
                       instructions->len, "metadata", "twirt", "say");
    } else {
        ev = json_pack("{s:s,s:s}", "type", "response.create",
                       "event_id", NGX_HTTP_TWIRT_RESPONSE_EVENT);
    }

    rc = NGX_ERROR;

    if (ev && ngx_http_twirt_call_send_json(call, ev) == NGX_OK) {
        /* active from now: a server VAD response may race with it */
        call->response = NGX_HTTP_TWIRT_RESPONSE_ACTIVE;
        rc = NGX_OK;

        if (instructions) {
            call->said = *instructions;
        }

        ngx_http_twirt_call_silence(call);
    }

    json_decref(ev);

    return rc;
}


static void
ngx_http_twirt_call_realtime_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_call_t  *call = ws->data;

    u_char                *p;
    ngx_http_twirt_end_e   end;

    end = ws->error ? ngx_http_twirt_end_upstream(ws->end)
                    : NGX_HTTP_TWIRT_END_UPSTREAM_CLOSED;

    ngx_http_twirt_metrics_error(ngx_http_twirt_end_kind(end)->error);

    if (call->phase < NGX_HTTP_TWIRT_CALL_ENDING) {
        p = ngx_pnalloc(call->pool, 64);

        if (p) {
            if (ws->error) {
                ngx_sprintf(p, "upstream %s%Z", ws->error);

            } else {
                ngx_sprintf(p, "upstream closed %ui%Z", ws->peer_close_code);
            }
        }

        ngx_log_error(NGX_LOG_ERR, call->log, 0,
                      "twirt: the Realtime API connection ended: %s",
                      p ? (char *) p : "upstream closed");

        ngx_http_twirt_call_end(call, end, (char *) p,
                                NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL);
    }

    ngx_http_twirt_call_finish(call);
}


ngx_int_t
ngx_http_twirt_call_send_json(ngx_http_twirt_call_t *call, json_t *ev)
{
    char       *s;
    ngx_int_t   rc;

    if (call->realtime == NULL) {
        return NGX_ERROR;
    }

    s = json_dumps(ev, JSON_COMPACT);
    if (s == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_twirt_ws_send(call->realtime, NGX_HTTP_TWIRT_WS_TEXT,
                                (u_char *) s, ngx_strlen(s));
    free(s);

    return rc;
}


/*
 * What was waiting for the answer to be heard happens once the response
 * is done and Twilio played all of it (no mark outstanding).
 */

static void
ngx_http_twirt_call_heard(ngx_http_twirt_call_t *call)
{
    if (call->response == NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        /* the answer's audio has ended: its last part gets its mark */
        (void) ngx_http_twirt_call_mark_send(call);
    }

    ngx_http_twirt_call_greeting_tell(call);
    ngx_http_twirt_call_silence(call);

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE
        || call->mark_count != 0 || call->unmarked != 0)
    {
        return;
    }

    switch (call->after) {

    case NGX_HTTP_TWIRT_AFTER_HANG_UP:
        ngx_http_twirt_call_end(call, call->after_end, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        break;

    case NGX_HTTP_TWIRT_AFTER_TRANSFER:
        ngx_http_twirt_transfer_heard(call);
        break;

    default: /* NGX_HTTP_TWIRT_AFTER_NOTHING */
        break;
    }
}


/*
 * The silence timer runs while the line is quiet (below) and is stopped
 * as soon as it is not; started again, it counts from then: from the
 * echo of the agent's last mark, not from when its audio was sent (the
 * caller hears it seconds later, Twilio buffers it).
 */

static void
ngx_http_twirt_call_silence(ngx_http_twirt_call_t *call)
{
    if (call->response == NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        /* no answer plays on: the last of its audio gets its mark */
        (void) ngx_http_twirt_call_mark_send(call);
    }

    /* a moment between turns, when the next session waits for one */
    ngx_http_twirt_rotate_check(call);

    if (!ngx_http_twirt_call_quiet(call)) {
        if (call->silence_timer.timer_set) {
            ngx_del_timer(&call->silence_timer);
        }

        return;
    }

    if (!call->silence_timer.timer_set) {
        ngx_add_timer(&call->silence_timer, call->conf->silence_timeout);
    }
}


/* the agent has spoken and was heard, and now waits for the caller alone */

static ngx_uint_t
ngx_http_twirt_call_quiet(ngx_http_twirt_call_t *call)
{
    if (call->conf->silence_timeout == 0
        || call->phase != NGX_HTTP_TWIRT_CALL_ACTIVE
        || !call->spoke)
    {
        return 0;
    }

    /* the agent is speaking, or its audio still plays */

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE
        || call->mark_count != 0 || call->unmarked != 0)
    {
        return 0;
    }

    /* the caller speaks, or is typing keys for the model */

    if (call->caller_speaking || call->dtmf_len != 0) {
        return 0;
    }

    /* tools run, or their answer is due; a hang-up or transfer is due */

    if (call->tools || call->tools_waiting || call->tool_answer
        || call->after != NGX_HTTP_TWIRT_AFTER_NOTHING
        || call->transfer != NULL)
    {
        return 0;
    }

    return 1;
}


/*
 * The caller said nothing for twirt_silence_timeout: the agent asks
 * again, twirt_silence_tries times, then says the goodbye and the call
 * ends, once it was heard, as "idle".
 */

static void
ngx_http_twirt_call_silence_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    if (!ngx_http_twirt_call_quiet(call)) {
        return;
    }

    if (call->silence_tries < call->conf->silence_tries) {
        call->silence_tries++;

        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the caller said nothing for %M ms after the "
                      "agent was heard: asking again (%ui of %ui)",
                      call->conf->silence_timeout, call->silence_tries,
                      call->conf->silence_tries);

        ngx_http_twirt_call_event(call, "silence",
            json_pack("{s:s,s:i}", "action", "prompt",
                      "try", (int) call->silence_tries));
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_SILENCE_PROMPTS, 1);

        (void) ngx_http_twirt_call_say(call, NGX_HTTP_TWIRT_SAY_PROMPT);

        /* not asked: the next try comes after the timeout again */
        ngx_http_twirt_call_silence(call);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: the caller said nothing for %M ms after %ui "
                  "prompts: the agent says goodbye",
                  call->conf->silence_timeout, call->silence_tries);

    ngx_http_twirt_call_event(call, "silence",
                              json_pack("{s:s}", "action", "goodbye"));

    call->after = NGX_HTTP_TWIRT_AFTER_HANG_UP;
    call->after_end = NGX_HTTP_TWIRT_END_IDLE;

    if (call->conf->silence_goodbye.len) {
        (void) ngx_http_twirt_call_say(call, NGX_HTTP_TWIRT_SAY_GOODBYE);
    }

    /* without a goodbye, or if it could not be asked for: now */
    ngx_http_twirt_call_heard(call);
}


/*
 * The agent says one of twirt's sentences word for word, a response of
 * its own in the conversation, the way the greeting is said; {{name}}
 * filled as in the greeting.  Each is made once per call.
 */

static ngx_int_t
ngx_http_twirt_call_say(ngx_http_twirt_call_t *call, ngx_http_twirt_say_e what)
{
    u_char     *p;
    ngx_str_t  *say, *text, filled;

    static ngx_str_t  words = ngx_string(
        "Say this to the caller word for word and nothing else. "
        "Say exactly: ");

    say = &call->sayings[what];

    if (say->len == 0) {
        text = (ngx_str_t *) ((u_char *) call->conf
                              + ngx_http_twirt_call_sayings[what]);

        if (ngx_http_twirt_call_text(call, NULL, text, &filled) != NGX_OK) {
            return NGX_ERROR;
        }

        p = ngx_pnalloc(call->pool, words.len + filled.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        say->data = p;
        p = ngx_cpymem(p, words.data, words.len);
        p = ngx_cpymem(p, filled.data, filled.len);
        say->len = p - say->data;
    }

    return ngx_http_twirt_call_response_create(call, say);
}


/*
 * Ends the call: both sides are closed with a handshake (closing Twilio's
 * stream makes Twilio hang up, follow <Connect action> or play the
 * fallback); the summary is logged and everything freed once both have
 * closed.  The first kind given is the call's; detail, when given, says
 * it for this call in the log ("upstream closed 1011").
 */

void
ngx_http_twirt_call_end(ngx_http_twirt_call_t *call, ngx_http_twirt_end_e end,
    const char *detail, ngx_uint_t code)
{
    if (call->end == NGX_HTTP_TWIRT_END_NONE) {
        call->end = end;
        call->end_detail = detail ? detail
                                  : ngx_http_twirt_end_kind(end)->text;
        call->end_code = code ? code : NGX_HTTP_TWIRT_WS_CLOSE_NORMAL;
    }

    if (call->phase >= NGX_HTTP_TWIRT_CALL_ENDING) {
        return;
    }

    ngx_http_twirt_call_phase(call, NGX_HTTP_TWIRT_CALL_ENDING);

    if (call->silence_timer.timer_set) {
        ngx_del_timer(&call->silence_timer);
    }

    /*
     * Twilio requests <Connect action> as soon as the stream closes,
     * possibly on another node: the record says how the call ended first.
     */
    ngx_http_twirt_call_record_end(call);

    if (!call->twilio->closed) {
        ngx_http_twirt_ws_close(call->twilio, call->end_code, NULL);
    }

    if (call->upstream) {
        ngx_http_twirt_upstream_cancel(call->upstream);
        call->upstream = NULL;
    }

    ngx_http_twirt_record_profile_cancel(&call->profile_handle);
    ngx_http_twirt_transfer_cancel(call);

    ngx_http_twirt_call_tools_cancel(call);
    ngx_http_twirt_rotate_end(call);

    if (call->realtime && !call->realtime->closed) {
        ngx_http_twirt_ws_close(call->realtime, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL,
                                NULL);
    }
}


/*
 * A control message from Redis (ngx_http_twirt_control.c), for a call of
 * this worker: a live one is preferred to one still ending with the same
 * CallSid (a caller back from a transfer).
 */

ngx_int_t
ngx_http_twirt_call_control(ngx_str_t *call_sid, ngx_str_t *action,
    ngx_str_t *message)
{
    json_t                     *ev;
    ngx_queue_t                *q;
    ngx_http_twirt_call_t      *call, *found;
    ngx_http_twirt_log_text_t   t, t2;

    found = NULL;

    for (q = ngx_queue_head(&ngx_http_twirt_calls);
         q != ngx_queue_sentinel(&ngx_http_twirt_calls);
         q = ngx_queue_next(q))
    {
        call = ngx_queue_data(q, ngx_http_twirt_call_t, queue);

        if (call->call_sid.len != call_sid->len
            || ngx_strncmp(call->call_sid.data, call_sid->data,
                           call_sid->len)
               != 0)
        {
            continue;
        }

        found = call;

        if (call->phase < NGX_HTTP_TWIRT_CALL_ENDING) {
            break;
        }
    }

    if (found == NULL) {
        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "twirt: control \"%V\" for call \"%V\": not a call "
                      "of this worker",
                      ngx_http_twirt_log_str(&t, action),
                      ngx_http_twirt_log_str(&t2, call_sid));
        return NGX_DECLINED;
    }

    call = found;

    if (!(action->len == sizeof("hangup") - 1
          && ngx_strncmp(action->data, "hangup", action->len) == 0)
        && !(action->len == sizeof("machine") - 1
             && ngx_strncmp(action->data, "machine", action->len) == 0))
    {
        return NGX_ERROR;
    }

    ev = json_pack("{s:s%}", "action", action->data, action->len);

    if (ev && message && message->len) {
        json_object_set_new(ev, "message",
                            json_stringn((char *) message->data,
                                         message->len));
    }

    ngx_http_twirt_call_event(call, "control", ev);

    if (call->phase >= NGX_HTTP_TWIRT_CALL_ENDING) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: control \"%V\": the call is already ending",
                      ngx_http_twirt_log_str(&t, action));
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0, "twirt: control \"%V\"%s",
                  ngx_http_twirt_log_str(&t, action),
                  message && message->len ? " with a message" : "");

    if (action->data[0] == 'h') {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_HANGUP, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        return NGX_OK;
    }

    ngx_http_twirt_call_machine(call, message);

    return NGX_OK;
}


/*
 * An answering machine answered (asynchronous AMD, after the beep): what
 * is being said is cancelled and cut as a barge-in would, the agent
 * leaves the message, and the call ends once it was heard, as after
 * end_call.  Without a message, or before the session can speak, the
 * call ends at once.
 */

static void
ngx_http_twirt_call_machine(ngx_http_twirt_call_t *call, ngx_str_t *message)
{
    json_t     *ev;
    ngx_str_t   say;

    static ngx_str_t  words = ngx_string(
        "An answering machine answered: leave this message word for word "
        "and say nothing else. Say exactly: ");

    call->after_end = NGX_HTTP_TWIRT_END_MACHINE;

    if (message == NULL || message->len == 0
        || call->phase < NGX_HTTP_TWIRT_CALL_CONFIGURED
        || call->after == NGX_HTTP_TWIRT_AFTER_TRANSFER)
    {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_MACHINE, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        return;
    }

    /* kept in the pool: a queued response.create points to it */

    say.len = words.len + message->len;
    say.data = ngx_pnalloc(call->pool, say.len);

    if (say.data == NULL) {
        ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_MACHINE, NULL,
                                NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        return;
    }

    ngx_memcpy(ngx_cpymem(say.data, words.data, words.len), message->data,
               message->len);

    /* a goodbye pending is said by the message instead; no tool answer */
    call->after = NGX_HTTP_TWIRT_AFTER_NOTHING;
    call->tool_answer = 0;

    if (call->response != NGX_HTTP_TWIRT_RESPONSE_IDLE) {
        if (call->response_id_len) {
            ev = json_pack("{s:s,s:s%}", "type", "response.cancel",
                           "response_id", call->response_id,
                           call->response_id_len);

        } else {
            ev = json_pack("{s:s}", "type", "response.cancel");
        }

        if (ev == NULL || ngx_http_twirt_call_send_json(call, ev) != NGX_OK) {
            ngx_log_error(NGX_LOG_WARN, call->log, 0,
                          "twirt: the response in progress could not be "
                          "cancelled for the answering machine");
        }

        json_decref(ev);
    }

    ngx_http_twirt_call_interrupt(call, "answering machine", 0);

    /* after the cancelled response's response.done, if there is one */
    ngx_http_twirt_call_response_create(call, &say);

    call->after = NGX_HTTP_TWIRT_AFTER_HANG_UP;

    /* nothing could be asked for: the call ends now */
    ngx_http_twirt_call_heard(call);
}


static void
ngx_http_twirt_call_duration(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call reached twirt_max_call_duration");

    ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_MAX_DURATION, NULL,
                            NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
}


/* frees the call when both sides are closed */

void
ngx_http_twirt_call_finish(ngx_http_twirt_call_t *call)
{
    double      cost, micro;
    ngx_msec_t  ms;

    if (!call->twilio->notified
        || (call->realtime && !call->realtime->notified)
        || call->upstream
        || ngx_http_twirt_rotate_busy(call))
    {
        return;
    }

    ms = ngx_current_msec - call->upgraded;
    cost = ngx_http_twirt_realtime_cost(call->conf->prices, &call->usage);

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call \"%V\" stream \"%V\" ended: %s, "
                  "duration %M.%03Ms, frames in %ui out %ui, media in %ui "
                  "out %ui, marks in %ui, dtmf %ui, ignored %ui, "
                  "upstream frames in %ui out %ui, clears %ui, "
                  "truncates %ui, tokens %uL, cost $%.6f, "
                  "late deltas dropped %ui",
                  &call->call_sid, &call->stream_sid, call->end_detail,
                  ms / 1000, ms % 1000, call->twilio->frames_in,
                  call->twilio->frames_out, call->media_in, call->media_out,
                  call->marks_in, call->dtmf_in, call->invalid_in,
                  call->rotate.frames_in
                  + (call->realtime ? call->realtime->frames_in : 0),
                  call->rotate.frames_out
                  + (call->realtime ? call->realtime->frames_out : 0),
                  call->clears, call->truncates, call->usage.total,
                  cost, call->dropped_deltas);

    ngx_http_twirt_call_event(call, "state",
        json_pack("{s:s,s:s,s:s,s:I,s:f,s:I}",
                  "status", ngx_http_twirt_call_failed(call)
                            ? "failed" : "ended",
                  "reason", ngx_http_twirt_end_kind(call->end)->name.data,
                  "detail", call->end_detail,
                  "tokens", (json_int_t) call->usage.total,
                  "cost_usd", cost,
                  "duration_ms",
                  (json_int_t) (ngx_current_msec - call->upgraded)));

    ngx_http_twirt_call_phase(call, NGX_HTTP_TWIRT_CALL_DONE);

    if (call->queue.next) {
        ngx_queue_remove(&call->queue);
        call->queue.next = NULL;
    }

    ngx_http_twirt_call_record_end(call);

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CALLS_ACTIVE, -1);
    ngx_http_twirt_metrics_call_ended(call->end);
    /* both are bounded: the usage per event, the counters saturate */
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_TOKENS,
                               (ngx_int_t) ngx_min(call->usage.total,
                                                   NGX_MAX_INT_T_VALUE));
    micro = cost * 1000000.0;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_COST_MICRO_USD,
                               micro < (double) NGX_MAX_INT_T_VALUE
                               ? (ngx_int_t) micro : NGX_MAX_INT_T_VALUE);

    if (call->duration_timer.timer_set) {
        ngx_del_timer(&call->duration_timer);
    }

    ngx_http_twirt_call_tools_cancel(call);

    if (call->dtmf_timer.timer_set) {
        ngx_del_timer(&call->dtmf_timer);
    }

    if (call->silence_timer.timer_set) {
        ngx_del_timer(&call->silence_timer);
    }

    if (call->profile) {
        json_decref(call->profile);
        call->profile = NULL;
    }

    if (call->parameters) {
        json_decref(call->parameters);
        call->parameters = NULL;
    }

    if (call->early) {
        ngx_free(call->early);
        call->early = NULL;
    }

    if (call->marks) {
        ngx_free(call->marks);
        call->marks = NULL;
    }

    if (call->greeting_handle) {
        ngx_http_twirt_redis_cancel(call->greeting_handle);
        call->greeting_handle = NULL;
    }

    ngx_http_twirt_call_greeting_off(call);

    ngx_http_twirt_rotate_free(call);

    /* the request may outlive the call by a moment */
    if (call->cleanup) {
        call->cleanup->handler = NULL;
    }

    if (call->stream_ctx && call->twilio->request) {
        ngx_http_twirt_call_summary(call, call->twilio->request->pool,
                                    call->stream_ctx);
    }

    if (call->realtime) {
        ngx_http_twirt_ws_free(call->realtime);
    }

    ngx_http_twirt_ws_free(call->twilio);

    /* the pool was made with the connection's log, gone by now */
    call->pool->log = ngx_cycle->log;

    ngx_destroy_pool(call->pool);
}


/*
 * A call event: a transcript line, a state change, a tool call, an error.
 * Logged as one JSON object per line and recorded in Redis; fields is
 * consumed.
 */

void
ngx_http_twirt_call_event(ngx_http_twirt_call_t *call, const char *type,
    json_t *fields)
{
    char  *s;

    if (fields == NULL) {
        return;
    }

    json_object_set_new(fields, "type", json_string(type));
    json_object_set_new(fields, "call_sid",
                        json_stringn((char *) call->call_sid.data,
                                     call->call_sid.len));
    json_object_set_new(fields, "ms",
                        json_integer(ngx_current_msec - call->upgraded));

    s = json_dumps(fields, JSON_COMPACT|JSON_SORT_KEYS);

    if (s) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0, "twirt: event %s", s);
        ngx_http_twirt_record_event(&call->record, fields, s);
        free(s);
    }

    json_decref(fields);
}


/* the record says how the call ended before the stream closes, and after */

static void
ngx_http_twirt_call_record_end(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_record_end_t  end;

    end.failed = ngx_http_twirt_call_failed(call);
    end.reason = ngx_http_twirt_end_kind(call->end)->name;
    end.detail.data = (u_char *) call->end_detail;
    end.detail.len = ngx_strlen(call->end_detail);
    end.duration = ngx_current_msec - call->upgraded;
    end.tokens = call->usage.total;
    end.cost = ngx_http_twirt_realtime_cost(call->conf->prices, &call->usage);

    ngx_http_twirt_record_end(&call->record, &end);
    ngx_http_twirt_outcome_set(&call->record.call_sid,
                               &call->record.stream_sid, end.failed,
                               &end.reason);
}


/* the call's summary for the access log: it outlives the call */

static void
ngx_http_twirt_call_summary(ngx_http_twirt_call_t *call, ngx_pool_t *pool,
    ngx_http_twirt_stream_ctx_t *sctx)
{
    ngx_str_t  reason;

    sctx->ws = NULL;
    sctx->ended = 1;
    sctx->duration = ngx_current_msec - call->upgraded;
    sctx->tokens = call->usage.total;
    sctx->cost = ngx_http_twirt_realtime_cost(call->conf->prices,
                                              &call->usage);

    reason.data = (u_char *) (call->end_detail ? call->end_detail
                                               : "request terminated");
    reason.len = ngx_strlen(reason.data);

    ngx_str_null(&sctx->call_sid);
    ngx_str_null(&sctx->stream_sid);

    if (ngx_http_twirt_call_started(call)) {
        sctx->call_sid.data = ngx_pstrdup(pool, &call->call_sid);
        sctx->call_sid.len = sctx->call_sid.data ? call->call_sid.len : 0;
        sctx->stream_sid.data = ngx_pstrdup(pool, &call->stream_sid);
        sctx->stream_sid.len = sctx->stream_sid.data ? call->stream_sid.len
                                                     : 0;
    }

    sctx->end_reason.data = ngx_pstrdup(pool, &reason);
    sctx->end_reason.len = sctx->end_reason.data ? reason.len : 0;
}


/* nginx ends the request on its own (e.g. a worker shutdown timeout) */

static void
ngx_http_twirt_call_request_cleanup(void *data)
{
    ngx_http_twirt_call_t  *call = data;

    ngx_http_twirt_ws_t  *ws;

    ws = call->twilio;

    if (ws->request == NULL) {
        /* the call is finishing and finalized the request itself */
        return;
    }

    if (call->stream_ctx) {
        ngx_http_twirt_call_summary(call, ws->request->pool,
                                    call->stream_ctx);
        call->stream_ctx = NULL;
    }

    ws->request = NULL;
    ws->connection = NULL;
    ws->closed = 1;

    if (ws->error == NULL) {
        ws->end = NGX_HTTP_TWIRT_END_TERMINATED;
        ws->error = "request terminated";
    }

    if (!ws->notified) {
        ws->notified = 1;
        ws->on_closed(ws);
    }
}


static u_char *
ngx_http_twirt_call_log_error(ngx_log_t *log, u_char *buf, size_t len)
{
    u_char                 *p;
    ngx_http_twirt_call_t  *call;

    p = buf;

    if (log->action) {
        p = ngx_snprintf(buf, len, " while %s", log->action);
        len -= p - buf;
        buf = p;
    }

    call = log->data;

    p = ngx_snprintf(buf, len, ", call: %V, stream: %V, client: %V",
                     &call->call_sid, &call->stream_sid, &call->addr_text);

    return p;
}


static ngx_int_t
ngx_http_twirt_call_str(ngx_http_twirt_call_t *call, ngx_str_t *dst,
    ngx_str_t *src)
{
    dst->data = ngx_pnalloc(call->pool, src->len);
    if (dst->data == NULL && src->len) {
        return NGX_ERROR;
    }

    ngx_memcpy(dst->data, src->data, src->len);
    dst->len = src->len;

    return NGX_OK;
}


/*
 * Audio goes into JSON strings unescaped and its size is what playback
 * is counted in: only strict base64 passes (whole quads, at most two '='
 * and only at the end).  Returns the decoded size, or NGX_ERROR.
 */

static ssize_t
ngx_http_twirt_call_base64_size(ngx_str_t *s)
{
    u_char      *p, *end, ok;
    ngx_uint_t   pad;

    /* a table: this runs over every byte of audio, both ways */
    static const u_char  b64[256] = {
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
        ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1, ['K'] = 1, ['L'] = 1,
        ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
        ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1,
        ['Y'] = 1, ['Z'] = 1,
        ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
        ['g'] = 1, ['h'] = 1, ['i'] = 1, ['j'] = 1, ['k'] = 1, ['l'] = 1,
        ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
        ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1,
        ['y'] = 1, ['z'] = 1,
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1,
        ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
        ['+'] = 1, ['/'] = 1
    };

    if (s->len == 0 || s->len % 4 != 0) {
        return NGX_ERROR;
    }

    end = s->data + s->len;
    pad = (end[-1] == '=') + (end[-1] == '=' && end[-2] == '=');
    end -= pad;

    /* no branch per byte: an invalid one anywhere clears ok */

    ok = 1;

    for (p = s->data; end - p >= 4; p += 4) {
        ok &= b64[p[0]] & b64[p[1]] & b64[p[2]] & b64[p[3]];
    }

    for ( /* void */ ; p < end; p++) {
        ok &= b64[*p];
    }

    if (!ok) {
        return NGX_ERROR;
    }

    return s->len / 4 * 3 - pad;
}
