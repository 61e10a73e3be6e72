
/*
 * A call: the Twilio Media Stream and (with the upstream client) the
 * Realtime session, owned together.
 */


#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_twilio.h"


static void ngx_http_twirt_call_twilio_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_call_start(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m);
static void ngx_http_twirt_call_twilio_closed(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_call_duration(ngx_event_t *ev);
static void ngx_http_twirt_call_finish(ngx_http_twirt_call_t *call);
static void ngx_http_twirt_call_request_cleanup(void *data);
static void ngx_http_twirt_call_release_log(ngx_http_twirt_call_t *call);
static u_char *ngx_http_twirt_call_log_error(ngx_log_t *log, u_char *buf,
    size_t len);
static ngx_int_t ngx_http_twirt_call_str(ngx_http_twirt_call_t *call,
    ngx_str_t *dst, ngx_str_t *src);


static ngx_str_t  ngx_http_twirt_none = ngx_string("-");


ngx_http_twirt_call_t *
ngx_http_twirt_call_create(ngx_http_request_t *r)
{
    ngx_pool_t                 *pool;
    ngx_connection_t           *c;
    ngx_http_cleanup_t         *cln;
    ngx_http_twirt_call_t      *call;
    ngx_http_twirt_loc_conf_t  *tlcf;

    c = r->connection;
    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    pool = ngx_create_pool(1024, c->log);
    if (pool == NULL) {
        return NULL;
    }

    call = ngx_pcalloc(pool, sizeof(ngx_http_twirt_call_t));
    if (call == NULL) {
        goto failed;
    }

    call->pool = pool;
    call->conf = tlcf;
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

    *call->log = *c->log;
    call->log->handler = ngx_http_twirt_call_log_error;
    call->log->data = call;
    call->log->action = "streaming";

    call->log_handler = c->log->handler;
    call->log_data = c->log->data;
    c->log->handler = ngx_http_twirt_call_log_error;
    c->log->data = call;
    c->log->action = "streaming";
    call->log_connection = c->log;

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

    call->duration_timer.handler = ngx_http_twirt_call_duration;
    call->duration_timer.data = call;
    call->duration_timer.log = call->log;

    if (tlcf->max_call_duration) {
        ngx_add_timer(&call->duration_timer, tlcf->max_call_duration);
    }

    return call;

failed:

    if (call && call->log_connection) {
        ngx_http_twirt_call_release_log(call);
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
ngx_http_twirt_call_twilio_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_twirt_call_t        *call = ws->data;
    ngx_http_twirt_twilio_msg_t   m;

    if (opcode != NGX_HTTP_TWIRT_WS_TEXT) {
        call->invalid_in++;
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a binary message of %uz bytes from "
                      "twilio", len);
        return;
    }

    if (ngx_http_twirt_twilio_parse(data, len, &m) != NGX_OK) {
        call->invalid_in++;
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: ignored a message from twilio: %s",
                      m.error);
        ngx_http_twirt_twilio_free(&m);
        return;
    }

    switch (m.event) {

    case NGX_HTTP_TWIRT_TWILIO_MEDIA:
        call->media_in++;
        break;

    case NGX_HTTP_TWIRT_TWILIO_MARK:
        call->marks_in++;
        break;

    case NGX_HTTP_TWIRT_TWILIO_START:
        ngx_http_twirt_call_start(call, &m);
        break;

    case NGX_HTTP_TWIRT_TWILIO_CONNECTED:
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "twirt: twilio connected");
        break;

    case NGX_HTTP_TWIRT_TWILIO_DTMF:
        call->dtmf_in++;
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: caller pressed \"%V\"", &m.digit);
        break;

    case NGX_HTTP_TWIRT_TWILIO_STOP:
        call->stopped = 1;
        ngx_http_twirt_call_end(call, "stop");
        break;

    default:
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, call->log, 0,
                       "twirt: ignored twilio event \"%V\"", &m.name);
        break;
    }

    ngx_http_twirt_twilio_free(&m);
}


static void
ngx_http_twirt_call_start(ngx_http_twirt_call_t *call,
    ngx_http_twirt_twilio_msg_t *m)
{
    if (call->started) {
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
        ngx_http_twirt_call_end(call, "out of memory");
        return;
    }

    if (m->parameters) {
        call->parameters = json_incref(m->parameters);
    }

    call->started = 1;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call started after %M ms, %ui media before start",
                  ngx_current_msec - call->upgraded, call->media_in);
}


/*
 * Ends the call: both sides are closed with a handshake; the summary is
 * logged and everything freed once both have closed.
 */

void
ngx_http_twirt_call_end(ngx_http_twirt_call_t *call, const char *reason)
{
    if (call->end_reason == NULL) {
        call->end_reason = reason;
    }

    if (call->ending) {
        return;
    }

    call->ending = 1;

    if (!call->twilio->closed) {
        ngx_http_twirt_ws_close(call->twilio, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL,
                                NULL);
    }
}


static void
ngx_http_twirt_call_twilio_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_call_t  *call = ws->data;

    if (!call->ending) {
        if (ws->error) {
            ngx_http_twirt_call_end(call, ws->error);

        } else if (ws->close_received) {
            ngx_http_twirt_call_end(call, "twilio closed");

        } else {
            ngx_http_twirt_call_end(call, "twilio lost");
        }
    }

    ngx_http_twirt_call_finish(call);
}


static void
ngx_http_twirt_call_duration(ngx_event_t *ev)
{
    ngx_http_twirt_call_t  *call = ev->data;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call reached twirt_max_call_duration");

    ngx_http_twirt_call_end(call, "max call duration");
}


static void
ngx_http_twirt_call_finish(ngx_http_twirt_call_t *call)
{
    ngx_msec_t  ms;

    ms = ngx_current_msec - call->upgraded;

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: call \"%V\" stream \"%V\" ended: %s, "
                  "duration %M.%03Ms, frames in %ui out %ui, media in %ui, "
                  "marks in %ui, dtmf %ui, ignored %ui",
                  &call->call_sid, &call->stream_sid, call->end_reason,
                  ms / 1000, ms % 1000, call->twilio->frames_in,
                  call->twilio->frames_out, call->media_in, call->marks_in,
                  call->dtmf_in, call->invalid_in);

    if (call->duration_timer.timer_set) {
        ngx_del_timer(&call->duration_timer);
    }

    if (call->parameters) {
        json_decref(call->parameters);
        call->parameters = NULL;
    }

    ngx_http_twirt_call_release_log(call);

    ngx_http_twirt_ws_free(call->twilio);

    ngx_destroy_pool(call->pool);
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

    ngx_http_twirt_call_release_log(call);

    ws->request = NULL;
    ws->connection = NULL;
    ws->closed = 1;

    if (ws->error == NULL) {
        ws->error = "request terminated";
    }

    if (!ws->notified) {
        ws->notified = 1;
        ws->on_closed(ws);
    }
}


/* nginx may log about the connection after the call is gone */

static void
ngx_http_twirt_call_release_log(ngx_http_twirt_call_t *call)
{
    if (call->log_connection) {
        call->log_connection->handler = call->log_handler;
        call->log_connection->data = call->log_data;
        call->log_connection = NULL;
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
