
/*
 * The one table of how calls end: each kind's name in the call record,
 * its words in the log, its metric label, the error it counts and
 * whether the caller should hear the fallback.
 */


#include "ngx_http_twirt_end.h"


#define ngx_http_twirt_end(name, text, ended, error, failed)                 \
    { ngx_string(name), text, NGX_HTTP_TWIRT_ENDED_##ended,                  \
      NGX_HTTP_TWIRT_ERR_##error, failed }


ngx_http_twirt_end_kind_t  ngx_http_twirt_end_kinds[] = {

    /* NGX_HTTP_TWIRT_END_NONE: a call that has not ended yet */
    ngx_http_twirt_end("none", "not ended", OTHER, NONE, 0),

    ngx_http_twirt_end("stop", "stop", STOP, NONE, 0),
    ngx_http_twirt_end("end_call", "end_call", END_CALL, NONE, 0),
    ngx_http_twirt_end("transfer", "transfer", TRANSFER, NONE, 0),
    ngx_http_twirt_end("twilio_closed", "twilio closed", TWILIO_CLOSED,
                       NONE, 0),
    ngx_http_twirt_end("twilio_lost", "twilio lost", TWILIO_LOST, NONE, 0),
    ngx_http_twirt_end("twilio_protocol", "twilio protocol error",
                       PROTOCOL_ERROR, TWILIO_PROTOCOL, 0),
    ngx_http_twirt_end("twilio_queue_full", "send queue full", OTHER,
                       SEND_QUEUE_FULL, 0),
    ngx_http_twirt_end("idle_timeout", "idle timeout", IDLE_TIMEOUT, NONE,
                       0),
    ngx_http_twirt_end("max_duration", "max call duration", MAX_DURATION,
                       NONE, 0),
    ngx_http_twirt_end("terminated", "request terminated", OTHER, NONE, 0),
    ngx_http_twirt_end("duplicate_stream", "a live call's CallSid", OTHER,
                       DUPLICATE_STREAM, 0),
    ngx_http_twirt_end("no_memory", "out of memory", OTHER, OTHER, 1),

    ngx_http_twirt_end("upstream_connect", "upstream connect failed",
                       UPSTREAM_FAILED, UPSTREAM_CONNECT, 1),
    ngx_http_twirt_end("upstream_tls", "upstream TLS failed",
                       UPSTREAM_FAILED, UPSTREAM_TLS, 1),
    ngx_http_twirt_end("upstream_refused", "upstream refused the upgrade",
                       UPSTREAM_FAILED, UPSTREAM_HTTP, 1),
    ngx_http_twirt_end("upstream_handshake", "invalid upgrade response",
                       UPSTREAM_FAILED, UPSTREAM_PROTOCOL, 1),
    ngx_http_twirt_end("upstream_closed", "upstream closed",
                       UPSTREAM_FAILED, NONE, 1),
    ngx_http_twirt_end("upstream_lost", "upstream lost", UPSTREAM_FAILED,
                       NONE, 1),
    ngx_http_twirt_end("upstream_protocol", "upstream protocol error",
                       UPSTREAM_FAILED, UPSTREAM_PROTOCOL, 1),
    ngx_http_twirt_end("upstream_queue_full", "upstream send queue full",
                       UPSTREAM_FAILED, SEND_QUEUE_FULL, 1),

    ngx_http_twirt_end("session_rejected", "session update rejected",
                       SETUP_FAILED, SESSION_REJECTED, 1),
    ngx_http_twirt_end("invalid_api_key", "invalid api key", SETUP_FAILED,
                       REALTIME_ERROR, 1),
    ngx_http_twirt_end("session_expired", "session expired",
                       SESSION_EXPIRED, NONE, 0),
    ngx_http_twirt_end("hangup", "hung up through the control API", HANGUP,
                       NONE, 0),
    ngx_http_twirt_end("machine", "an answering machine answered", MACHINE,
                       NONE, 0),
    ngx_http_twirt_end("idle", "the caller stayed silent", IDLE, NONE, 0),
    ngx_http_twirt_end("response_failed", "the model's responses failed",
                       RESPONSE_FAILED, REALTIME_ERROR, 1)
};


const char  *ngx_http_twirt_ended_labels[] = {
    "stop",
    "end_call",
    "transfer",
    "twilio_closed",
    "twilio_lost",
    "idle_timeout",
    "max_duration",
    "session_expired",
    "hangup",
    "machine",
    "idle",
    "upstream_failed",
    "setup_failed",
    "response_failed",
    "protocol_error",
    "other"
};


const char  *ngx_http_twirt_error_labels[] = {
    "twilio_protocol",
    "upstream_connect",
    "upstream_tls",
    "upstream_http",
    "upstream_protocol",
    "realtime_error",
    "session_rejected",
    "send_queue_full",
    "invalid_json",
    "invalid_audio",
    "invalid_dtmf",
    "invalid_usage",
    "duplicate_stream",
    "other"
};


ngx_http_twirt_end_e
ngx_http_twirt_end_upstream(ngx_http_twirt_end_e end)
{
    switch (end) {

    case NGX_HTTP_TWIRT_END_TWILIO_CLOSED:
        return NGX_HTTP_TWIRT_END_UPSTREAM_CLOSED;

    case NGX_HTTP_TWIRT_END_TWILIO_PROTOCOL:
        return NGX_HTTP_TWIRT_END_UPSTREAM_PROTOCOL;

    case NGX_HTTP_TWIRT_END_TWILIO_QUEUE_FULL:
        return NGX_HTTP_TWIRT_END_UPSTREAM_QUEUE_FULL;

    case NGX_HTTP_TWIRT_END_NO_MEMORY:
        return end;

    default:
        return NGX_HTTP_TWIRT_END_UPSTREAM_LOST;
    }
}
