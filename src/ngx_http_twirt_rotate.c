
/*
 * Session rotation (README, "Calls longer than a session").  The API
 * ends a session at its maximum duration (60 minutes) with an error
 * session_expired and a close; a call that would outlive it is moved to
 * a new session first:
 *
 *   twirt_session_rotate after the session was created (a warm
 *   connection's session began in the pool), the next one is connected
 *   the way the call's first was (the warm pool first) and sent the same
 *   session.update;
 *
 *   once it is updated and the call is between turns (no response
 *   active or due, the caller not speaking, no caller transcript
 *   outstanding, no tool, hang-up or transfer pending), in one pass:
 *   the conversation so far goes to the new session as text items, the
 *   caller's frames from then on go to it, and the old one is closed
 *   (1000).  Until then the frames go to the old session, still live:
 *   each frame goes to exactly one session and none is lost;
 *
 *   the old session expiring first switches at once if the next one is
 *   ready (what was being said is lost: "forced"), else the call ends as
 *   it did without rotation.  A next session that cannot be had is tried
 *   once more, a second later; then the call keeps the old one.
 *
 * The agent's audio still playing at the switch plays on, its marks are
 * counted as before; its item is the old session's, so a barge-in on it
 * clears Twilio's buffer but truncates nothing in the new session.
 */


#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_rotate.h"
#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_upstream_pool.h"
#include "ngx_http_twirt_log.h"


static void ngx_http_twirt_rotate_begin(ngx_event_t *ev);
static void ngx_http_twirt_rotate_connected(ngx_http_twirt_upstream_t *u,
    ngx_int_t rc);
static void ngx_http_twirt_rotate_next_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_rotate_next_closed(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_rotate_failed(ngx_http_twirt_call_t *call,
    const char *why);
static ngx_uint_t ngx_http_twirt_rotate_quiet(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_rotate_switch(ngx_http_twirt_call_t *call,
    ngx_uint_t forced);
static ngx_uint_t ngx_http_twirt_rotate_seed(ngx_http_twirt_call_t *call,
    ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_rotate_old_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_rotate_old_closed(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_rotate_let_go(ngx_http_twirt_call_t *call);
static ngx_int_t ngx_http_twirt_rotate_send(ngx_http_twirt_ws_t *ws,
    json_t *ev);
static void ngx_http_twirt_rotate_bound(ngx_http_twirt_rotate_t *r);


/* twirt_session_rotate TIME | off: above 0, below the API's 60 minutes */

char *
ngx_http_twirt_session_rotate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t   *value;
    ngx_msec_t   ms, *field;

    field = (ngx_msec_t *) (p + cmd->offset);

    if (*field != NGX_CONF_UNSET_MSEC) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 3 && ngx_strncmp(value[1].data, "off", 3) == 0) {
        *field = 0;
        return NGX_CONF_OK;
    }

    ms = ngx_parse_time(&value[1], 0);

    if (ms == (ngx_msec_t) NGX_ERROR || ms == 0
        || ms >= NGX_HTTP_TWIRT_SESSION_LIMIT)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\": a time above 0 and below "
                           "the Realtime API's session limit of 60m, such "
                           "as \"50m\", or \"off\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    *field = ms;

    return NGX_CONF_OK;
}


void
ngx_http_twirt_rotate_init(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    r->timer.handler = ngx_http_twirt_rotate_begin;
    r->timer.data = call;
    r->timer.log = call->log;
    r->timer.cancelable = 1;

    /* without it, what there is to seed is not kept either */
    if (call->conf->session_rotate) {
        r->lines = json_array();
    }
}


/*
 * A session is updated: the first, or one switched to.  Its rotation is
 * timed from its creation; whether the caller's words will be transcribed
 * is what it says (a profile may have changed the configuration's).
 */

void
ngx_http_twirt_rotate_schedule(ngx_http_twirt_call_t *call, json_t *session)
{
    json_t                   *t;
    ngx_msec_t                age;
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (session) {
        t = json_object_get(json_object_get(json_object_get(session,
                                                            "audio"),
                                            "input"),
                            "transcription");
        r->transcribing = json_is_object(t);
    }

    if (call->conf->session_rotate == 0 || r->lines == NULL) {
        return;
    }

    age = ngx_current_msec - r->opened;

    if (r->timer.timer_set) {
        ngx_del_timer(&r->timer);
    }

    ngx_add_timer(&r->timer, age < call->conf->session_rotate
                             ? call->conf->session_rotate - age : 1);
}


/* the time has come: the next session is connected */

static void
ngx_http_twirt_rotate_begin(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_twirt_rotate_t    *r;
    ngx_http_twirt_upstream_t  *u;

    r = &call->rotate;

    if (call->phase != NGX_HTTP_TWIRT_CALL_ACTIVE
        || r->upstream || r->next || call->twilio->request == NULL)
    {
        return;
    }

    if (r->tries == 0) {
        r->started = ngx_current_msec;

        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the Realtime session is %M ms old: opening "
                      "the next one", ngx_current_msec - r->opened);
    }

    clcf = ngx_http_get_module_loc_conf(call->twilio->request,
                                        ngx_http_core_module);

    u = ngx_pcalloc(call->pool, sizeof(ngx_http_twirt_upstream_t));
    if (u == NULL) {
        ngx_http_twirt_rotate_failed(call, "no memory");
        return;
    }

    u->pool = call->pool;
    u->log = ngx_palloc(call->pool, sizeof(ngx_log_t));
    if (u->log == NULL) {
        ngx_http_twirt_rotate_failed(call, "no memory");
        return;
    }

    *u->log = *call->log;
    u->log->action = "connecting to the Realtime API for the next session";

    u->conf = call->conf;
    u->resolver = clcf->resolver;
    u->resolver_timeout = clcf->resolver_timeout;
    u->data = call;
    u->handler = ngx_http_twirt_rotate_connected;
    u->on_message = ngx_http_twirt_rotate_next_message;
    u->on_closed = ngx_http_twirt_rotate_next_closed;

    r->upstream = u;

    if (ngx_http_twirt_upstream_pool_take(u) == NGX_OK) {
        ngx_http_twirt_rotate_connected(u, NGX_OK);
        return;
    }

    if (ngx_http_twirt_upstream_connect(u) != NGX_OK && r->upstream == u) {
        ngx_http_twirt_upstream_cancel(u);
        r->upstream = NULL;
        ngx_http_twirt_rotate_failed(call, "upstream failed");
    }
}


static void
ngx_http_twirt_rotate_connected(ngx_http_twirt_upstream_t *u, ngx_int_t rc)
{
    ngx_http_twirt_call_t  *call = u->data;

    json_t                   *ev;
    ngx_http_twirt_ws_t      *ws;
    ngx_http_twirt_rotate_t  *r;

    r = &call->rotate;
    r->upstream = NULL;

    if (rc != NGX_OK) {
        ngx_http_twirt_rotate_failed(call, u->error);
        return;
    }

    ws = u->ws;
    ws->connection->log = u->log;
    u->log->action = "talking to the Realtime API";

    r->next = ws;
    r->next_opened = ngx_current_msec - u->age;
    r->ready = 0;
    ngx_str_null(&r->next_id);

    /* configured as the call's first session was */

    ev = ngx_http_twirt_call_session(call);

    if (ev == NULL || ngx_http_twirt_rotate_send(ws, ev) != NGX_OK) {
        json_decref(ev);
        ngx_http_twirt_rotate_failed(call, "session update failed");
        return;
    }

    json_decref(ev);

    if (u->created.len) {
        ngx_http_twirt_rotate_next_message(ws, NGX_HTTP_TWIRT_WS_TEXT,
                                           u->created.data, u->created.len);
    }

    /* frames that came with the 101, and the events from now on */
    ngx_post_event(ws->connection->read, &ngx_posted_events);
}


/* the next session's events until the switch: created, updated, errors */

static void
ngx_http_twirt_rotate_next_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_twirt_call_t  *call = ws->data;

    json_t                     *ev, *v, *error;
    ngx_str_t                   s;
    const char                 *type, *code, *event_id;
    json_error_t                err;
    ngx_http_twirt_rotate_t    *r;
    ngx_http_twirt_log_text_t   t;

    r = &call->rotate;

    if (ws != r->next || opcode != NGX_HTTP_TWIRT_WS_TEXT) {
        return;
    }

    ev = json_loadb((const char *) data, len, 0, &err);
    type = json_string_value(json_object_get(ev, "type"));

    if (type == NULL) {
        json_decref(ev);
        return;
    }

    if (ngx_strcmp(type, "session.created") == 0) {
        v = json_object_get(json_object_get(ev, "session"), "id");

        if (json_is_string(v)) {
            s.len = json_string_length(v);
            s.data = ngx_pnalloc(call->pool, s.len);

            if (s.data) {
                ngx_memcpy(s.data, json_string_value(v), s.len);
                r->next_id = s;
            }
        }

    } else if (ngx_strcmp(type, "session.updated") == 0 && !r->ready) {
        r->ready = 1;
        r->transcribing = json_is_object(json_object_get(json_object_get(
                              json_object_get(json_object_get(ev, "session"),
                                              "audio"),
                              "input"),
                          "transcription"));

        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the next Realtime session is ready after "
                      "%M ms: switching between turns",
                      ngx_current_msec - r->started);

        json_decref(ev);

        ngx_http_twirt_rotate_check(call);
        return;

    } else if (ngx_strcmp(type, "error") == 0) {
        error = json_object_get(ev, "error");
        code = json_string_value(json_object_get(error, "code"));
        event_id = json_string_value(json_object_get(error, "event_id"));

        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the next Realtime session: error %V",
                      ngx_http_twirt_log_cstr(&t, code ? code : "unknown"));

        if (event_id
            && ngx_strcmp(event_id, NGX_HTTP_TWIRT_SESSION_EVENT) == 0)
        {
            json_decref(ev);
            ngx_http_twirt_rotate_failed(call, "session update rejected");
            return;
        }
    }

    json_decref(ev);
}


static void
ngx_http_twirt_rotate_next_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_call_t  *call = ws->data;

    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (ws == r->next) {
        r->next = NULL;
        r->ready = 0;
        ngx_http_twirt_ws_free(ws);

        if (call->phase < NGX_HTTP_TWIRT_CALL_ENDING) {
            ngx_http_twirt_rotate_failed(call, "closed by the server");
        }
    }

    ngx_http_twirt_call_finish(call);
}


/*
 * No next session: tried once more a moment later, then the call keeps
 * the one it has until that one's end.
 */

static void
ngx_http_twirt_rotate_failed(ngx_http_twirt_call_t *call, const char *why)
{
    ngx_http_twirt_rotate_t  *r;

    r = &call->rotate;

    ngx_http_twirt_rotate_let_go(call);

    r->tries++;

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_ROTATIONS_FAILED, 1);

    ngx_http_twirt_call_event(call, "rotate_failed",
        json_pack("{s:s,s:i}", "reason", why ? why : "unknown",
                  "try", (int) r->tries));

    if (call->phase != NGX_HTTP_TWIRT_CALL_ACTIVE) {
        return;
    }

    if (r->tries < NGX_HTTP_TWIRT_ROTATE_TRIES) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: the next Realtime session failed (%s): "
                      "trying again in %d ms", why ? why : "unknown",
                      NGX_HTTP_TWIRT_ROTATE_RETRY);

        if (r->timer.timer_set) {
            ngx_del_timer(&r->timer);
        }

        ngx_add_timer(&r->timer, NGX_HTTP_TWIRT_ROTATE_RETRY);
        return;
    }

    ngx_log_error(NGX_LOG_ERR, call->log, 0,
                  "twirt: the next Realtime session failed (%s) %ui times: "
                  "the call keeps its session until it expires",
                  why ? why : "unknown", r->tries);
}


/* the call may be between turns: switch if the next session is ready */

void
ngx_http_twirt_rotate_check(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (!r->ready || r->next == NULL || !ngx_http_twirt_rotate_quiet(call)) {
        return;
    }

    ngx_http_twirt_rotate_switch(call, 0);
}


/*
 * Between turns: nothing of the old session would be lost by closing it
 * now.  The agent's audio may still be playing at Twilio: all of it was
 * received.
 */

static ngx_uint_t
ngx_http_twirt_rotate_quiet(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    return call->phase == NGX_HTTP_TWIRT_CALL_ACTIVE
           && call->response == NGX_HTTP_TWIRT_RESPONSE_IDLE
           && !r->answer_due
           && !call->caller_speaking
           && r->transcripts == 0
           && call->dtmf_len == 0
           && call->tools == NULL && call->tools_waiting == NULL
           && !call->tool_answer
           && call->after == NGX_HTTP_TWIRT_AFTER_NOTHING
           && call->transfer == NULL;
}


/*
 * The switch, in one pass: the conversation seeded, the frames to the new
 * session from now on, the old one closed normally.  Each step queues on
 * a socket, nothing waits: no caller frame comes in between.
 */

static void
ngx_http_twirt_rotate_switch(ngx_http_twirt_call_t *call, ngx_uint_t forced)
{
    ngx_str_t                 from;
    ngx_uint_t                i, seeded;
    ngx_msec_t                ms;
    ngx_http_twirt_ws_t      *old, *next;
    ngx_http_twirt_rotate_t  *r;

    r = &call->rotate;
    old = call->realtime;
    next = r->next;

    seeded = ngx_http_twirt_rotate_seed(call, next);

    /* the new session takes the call's handlers, the old one is let go */

    next->on_message = old->on_message;
    next->on_closed = old->on_closed;

    old->on_message = ngx_http_twirt_rotate_old_message;
    old->on_closed = ngx_http_twirt_rotate_old_closed;

    if (r->old) {
        /* the one before has not finished closing: no need to wait */
        ngx_http_twirt_ws_drop(r->old, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
    }

    r->old = old;
    r->frames_in += old->frames_in;
    r->frames_out += old->frames_out;

    call->realtime = next;
    r->next = NULL;
    r->ready = 0;
    r->tries = 0;
    r->opened = r->next_opened;
    r->rotations++;

    /*
     * The items are the old session's: a barge-in on audio still playing
     * clears Twilio's buffer, and truncates nothing the new one has not.
     */

    for (i = 0; i < NGX_HTTP_TWIRT_ITEMS; i++) {
        call->items[i].id_len = 0;
    }

    call->dropped_id_len = 0;

    if (forced) {
        /* what the old session was saying is lost with it */
        call->response = NGX_HTTP_TWIRT_RESPONSE_IDLE;
        call->response_id_len = 0;
        ngx_str_null(&call->queued_instructions);
        call->caller_speaking = 0;
        r->answer_due = 0;
        r->transcripts = 0;
    }

    from = call->session_id;
    call->session_id = r->next_id;
    call->record.session_id = r->next_id;

    ms = ngx_current_msec - r->started;

    ngx_http_twirt_ws_close(old, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL, NULL);

    ngx_http_twirt_metrics_add(forced ? NGX_HTTP_TWIRT_M_ROTATIONS_FORCED
                                      : NGX_HTTP_TWIRT_M_ROTATIONS, 1);

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: switched to the next Realtime session \"%V\" "
                  "%M ms after the rotation began%s, %ui lines of the "
                  "conversation carried, %ui earlier ones not (over %d "
                  "bytes)", &call->session_id, ms,
                  forced ? ", at once: the session expired" : "",
                  seeded, r->dropped, NGX_HTTP_TWIRT_ROTATE_CONTEXT);

    ngx_http_twirt_call_event(call, "rotated",
        json_pack("{s:s%,s:s%,s:I,s:i,s:i,s:s,s:i}",
                  "from_session_id", from.data, from.len,
                  "session_id", call->session_id.data, call->session_id.len,
                  "switch_ms", (json_int_t) ms,
                  "items", (int) seeded,
                  "dropped", (int) r->dropped,
                  "switched", forced ? "expired" : "between_turns",
                  "rotation", (int) r->rotations));

    ngx_http_twirt_rotate_schedule(call, NULL);
}


/* the conversation so far, as text items, in order: the number sent */

static ngx_uint_t
ngx_http_twirt_rotate_seed(ngx_http_twirt_call_t *call,
    ngx_http_twirt_ws_t *ws)
{
    size_t       i;
    json_t      *line, *text, *ev;
    ngx_uint_t   n, caller;

    n = 0;

    json_array_foreach(call->rotate.lines, i, line) {
        text = json_object_get(line, "text");

        if (!json_is_string(text) || json_string_length(text) == 0) {
            /* a caller turn without a transcript: the model lost it */
            continue;
        }

        caller = (json_string_value(json_object_get(line, "role"))[0] == 'u');

        ev = json_pack("{s:s,s:{s:s,s:s,s:[{s:s,s:O}]}}",
                       "type", "conversation.item.create",
                       "item", "type", "message",
                       "role", caller ? "user" : "assistant",
                       "content", "type",
                       caller ? "input_text" : "output_text",
                       "text", text);

        if (ev && ngx_http_twirt_rotate_send(ws, ev) == NGX_OK) {
            n++;
        }

        json_decref(ev);
    }

    return n;
}


/* the old session's last events: nothing is active in it any more */

static void
ngx_http_twirt_rotate_old_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
}


static void
ngx_http_twirt_rotate_old_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_call_t  *call = ws->data;

    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (ws == r->old) {
        r->old = NULL;
        ngx_http_twirt_ws_free(ws);

    } else if (ws == r->gone) {
        r->gone = NULL;
        ngx_http_twirt_ws_free(ws);
    }

    ngx_http_twirt_call_finish(call);
}


/*
 * The next session is not wanted (it failed, the call ends): closed
 * normally, freed once closed.  Not at once: this may run in one of its
 * own events, which its socket is still reading.
 */

static void
ngx_http_twirt_rotate_let_go(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_ws_t      *ws;
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    ws = r->next;

    if (ws == NULL) {
        return;
    }

    r->next = NULL;
    r->ready = 0;

    if (r->gone) {
        /* an earlier one still closing, none of whose events runs now */
        ngx_http_twirt_ws_drop(r->gone, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
    }

    r->gone = ws;
    ws->on_message = ngx_http_twirt_rotate_old_message;
    ws->on_closed = ngx_http_twirt_rotate_old_closed;

    ngx_http_twirt_ws_close(ws, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL, NULL);
}


/*
 * The session expired before a quiet moment came (or early): the next
 * one, when ready, takes over at once.
 */

ngx_int_t
ngx_http_twirt_rotate_expired(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (!r->ready || r->next == NULL
        || call->phase != NGX_HTTP_TWIRT_CALL_ACTIVE)
    {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: the Realtime session expired before the call was "
                  "between turns: switching at once");

    ngx_http_twirt_rotate_switch(call, 1);

    return NGX_OK;
}


/* a line of the conversation: the agent's, or a caller's typed keys */

void
ngx_http_twirt_rotate_line(ngx_http_twirt_call_t *call, ngx_uint_t caller,
    json_t *text)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (r->lines == NULL || !json_is_string(text)) {
        return;
    }

    json_array_append_new(r->lines,
                          json_pack("{s:s,s:O}",
                                    "role", caller ? "user" : "assistant",
                                    "text", text));

    r->bytes += json_string_length(text);
    ngx_http_twirt_rotate_bound(r);
}


/*
 * A caller turn is committed: its place in the conversation is now, its
 * transcript comes later (if any is made).
 */

void
ngx_http_twirt_rotate_committed(ngx_http_twirt_call_t *call, json_t *item_id)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (r->lines == NULL || !r->transcribing || !json_is_string(item_id)) {
        return;
    }

    json_array_append_new(r->lines,
                          json_pack("{s:s,s:O}", "role", "user",
                                    "item_id", item_id));
    r->transcripts++;
}


/* text NULL: the transcription failed */

void
ngx_http_twirt_rotate_transcribed(ngx_http_twirt_call_t *call,
    json_t *item_id, json_t *text)
{
    size_t                    i;
    json_t                   *line;
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (r->lines == NULL) {
        return;
    }

    for (i = json_array_size(r->lines); i > 0; i--) {
        line = json_array_get(r->lines, i - 1);

        if (!json_equal(json_object_get(line, "item_id"), item_id)
            || json_object_get(line, "text"))
        {
            continue;
        }

        json_object_set_new(line, "text",
                            json_is_string(text) ? json_incref(text)
                                                 : json_string(""));

        if (json_is_string(text)) {
            r->bytes += json_string_length(text);
        }

        if (r->transcripts) {
            r->transcripts--;
        }

        ngx_http_twirt_rotate_bound(r);
        break;
    }

    ngx_http_twirt_rotate_check(call);
}


/*
 * The caller stopped speaking: the turn is committed and answered in the
 * session that heard it, the answer is due until its response is created
 * (by the server, or by twirt on the commit).
 */

void
ngx_http_twirt_rotate_answer_due(ngx_http_twirt_call_t *call, ngx_uint_t due)
{
    call->rotate.answer_due = due;
}


/* the oldest lines go first: the model keeps the recent conversation */

static void
ngx_http_twirt_rotate_bound(ngx_http_twirt_rotate_t *r)
{
    json_t  *line, *text;

    while (r->bytes > NGX_HTTP_TWIRT_ROTATE_CONTEXT
           && json_array_size(r->lines) > 1)
    {
        line = json_array_get(r->lines, 0);
        text = json_object_get(line, "text");

        if (json_is_string(text)) {
            r->bytes -= json_string_length(text);

        } else if (r->transcripts) {
            /* its transcript will not be waited for any more */
            r->transcripts--;
        }

        json_array_remove(r->lines, 0);
        r->dropped++;
    }
}


/* the call ends: no next session, no rotation */

void
ngx_http_twirt_rotate_end(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    if (r->timer.timer_set) {
        ngx_del_timer(&r->timer);
    }

    if (r->upstream) {
        ngx_http_twirt_upstream_cancel(r->upstream);
        r->upstream = NULL;
    }

    ngx_http_twirt_rotate_let_go(call);
}


/* a session switched from, or one not wanted, is still closing */

ngx_uint_t
ngx_http_twirt_rotate_busy(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_t  *r = &call->rotate;

    return r->upstream != NULL || r->next != NULL || r->old != NULL
           || r->gone != NULL;
}


void
ngx_http_twirt_rotate_free(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_rotate_end(call);

    if (call->rotate.lines) {
        json_decref(call->rotate.lines);
        call->rotate.lines = NULL;
    }
}


static ngx_int_t
ngx_http_twirt_rotate_send(ngx_http_twirt_ws_t *ws, json_t *ev)
{
    char       *s;
    ngx_int_t   rc;

    s = json_dumps(ev, JSON_COMPACT);
    if (s == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_http_twirt_ws_send(ws, NGX_HTTP_TWIRT_WS_TEXT, (u_char *) s,
                                ngx_strlen(s));
    free(s);

    return rc;
}
