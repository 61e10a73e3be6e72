
/*
 * How a call ends, and the errors counted on the way: values carried from
 * the WebSocket object, the upstream client and the call to the metrics,
 * the call record and the log.  One table gives each kind its words; no
 * kind is ever decided by reading log text back.
 */


#ifndef _NGX_HTTP_TWIRT_END_H_INCLUDED_
#define _NGX_HTTP_TWIRT_END_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* the "reason" label of twirt_calls_ended_total */
typedef enum {
    NGX_HTTP_TWIRT_ENDED_STOP = 0,
    NGX_HTTP_TWIRT_ENDED_END_CALL,
    NGX_HTTP_TWIRT_ENDED_TRANSFER,
    NGX_HTTP_TWIRT_ENDED_TWILIO_CLOSED,
    NGX_HTTP_TWIRT_ENDED_TWILIO_LOST,
    NGX_HTTP_TWIRT_ENDED_IDLE_TIMEOUT,
    NGX_HTTP_TWIRT_ENDED_MAX_DURATION,
    NGX_HTTP_TWIRT_ENDED_SESSION_EXPIRED,
    NGX_HTTP_TWIRT_ENDED_HANGUP,
    NGX_HTTP_TWIRT_ENDED_MACHINE,
    NGX_HTTP_TWIRT_ENDED_IDLE,
    NGX_HTTP_TWIRT_ENDED_UPSTREAM_FAILED,
    NGX_HTTP_TWIRT_ENDED_SETUP_FAILED,
    NGX_HTTP_TWIRT_ENDED_RESPONSE_FAILED,
    NGX_HTTP_TWIRT_ENDED_PROTOCOL_ERROR,
    NGX_HTTP_TWIRT_ENDED_OTHER,
    NGX_HTTP_TWIRT_ENDED_LAST
} ngx_http_twirt_ended_e;


/* the "kind" label of twirt_errors_total */
typedef enum {
    NGX_HTTP_TWIRT_ERR_TWILIO_PROTOCOL = 0,
    NGX_HTTP_TWIRT_ERR_UPSTREAM_CONNECT,
    NGX_HTTP_TWIRT_ERR_UPSTREAM_TLS,
    NGX_HTTP_TWIRT_ERR_UPSTREAM_HTTP,
    NGX_HTTP_TWIRT_ERR_UPSTREAM_PROTOCOL,
    NGX_HTTP_TWIRT_ERR_REALTIME_ERROR,
    NGX_HTTP_TWIRT_ERR_SESSION_REJECTED,
    NGX_HTTP_TWIRT_ERR_SEND_QUEUE_FULL,
    NGX_HTTP_TWIRT_ERR_INVALID_JSON,
    NGX_HTTP_TWIRT_ERR_INVALID_AUDIO,          /* base64 that is not */
    NGX_HTTP_TWIRT_ERR_INVALID_DTMF,           /* not a keypad key */
    NGX_HTTP_TWIRT_ERR_INVALID_USAGE,          /* counts out of bounds */
    NGX_HTTP_TWIRT_ERR_DUPLICATE_STREAM,       /* a live CallSid again */
    NGX_HTTP_TWIRT_ERR_OTHER,
    NGX_HTTP_TWIRT_ERR_LAST,
    NGX_HTTP_TWIRT_ERR_NONE                    /* counted as nothing */
} ngx_http_twirt_error_e;


/*
 * Why a call, a WebSocket connection or an upstream connect ended.  The
 * WebSocket object sets the Twilio-side kinds; the call moves them to
 * the upstream side's for the Realtime connection.
 */
typedef enum {
    NGX_HTTP_TWIRT_END_NONE = 0,
    NGX_HTTP_TWIRT_END_STOP,                   /* Twilio's "stop" */
    NGX_HTTP_TWIRT_END_END_CALL,               /* the model hung up */
    NGX_HTTP_TWIRT_END_TRANSFER,               /* to a human: <Dial> */
    NGX_HTTP_TWIRT_END_TWILIO_CLOSED,          /* a close frame, no stop */
    NGX_HTTP_TWIRT_END_TWILIO_LOST,            /* EOF, I/O error, timeout */
    NGX_HTTP_TWIRT_END_TWILIO_PROTOCOL,        /* a frame broke RFC 6455 */
    NGX_HTTP_TWIRT_END_TWILIO_QUEUE_FULL,      /* the peer did not read */
    NGX_HTTP_TWIRT_END_IDLE_TIMEOUT,
    NGX_HTTP_TWIRT_END_MAX_DURATION,
    NGX_HTTP_TWIRT_END_TERMINATED,             /* nginx ended the request */
    NGX_HTTP_TWIRT_END_DUPLICATE,              /* a live call's CallSid */
    NGX_HTTP_TWIRT_END_NO_MEMORY,
    NGX_HTTP_TWIRT_END_UPSTREAM_CONNECT,       /* resolve, connect, time */
    NGX_HTTP_TWIRT_END_UPSTREAM_TLS,
    NGX_HTTP_TWIRT_END_UPSTREAM_REFUSED,       /* not 101 to the upgrade */
    NGX_HTTP_TWIRT_END_UPSTREAM_HANDSHAKE,     /* a 101 that is not valid */
    NGX_HTTP_TWIRT_END_UPSTREAM_CLOSED,        /* the Realtime API closed */
    NGX_HTTP_TWIRT_END_UPSTREAM_LOST,
    NGX_HTTP_TWIRT_END_UPSTREAM_PROTOCOL,
    NGX_HTTP_TWIRT_END_UPSTREAM_QUEUE_FULL,
    NGX_HTTP_TWIRT_END_SESSION_REJECTED,       /* session.update refused */
    NGX_HTTP_TWIRT_END_INVALID_API_KEY,
    NGX_HTTP_TWIRT_END_SESSION_EXPIRED,
    NGX_HTTP_TWIRT_END_HANGUP,                 /* hung up through the
                                                  control API */
    NGX_HTTP_TWIRT_END_MACHINE,                /* an answering machine:
                                                  the message was left */
    NGX_HTTP_TWIRT_END_IDLE,                   /* the caller stayed silent
                                                  through the re-prompts */
    NGX_HTTP_TWIRT_END_RESPONSE_FAILED,        /* the model's responses
                                                  failed, nothing said */
    NGX_HTTP_TWIRT_END_LAST
} ngx_http_twirt_end_e;


typedef struct {
    ngx_str_t                   name;      /* the record's end_reason */
    const char                 *text;      /* for people: the log */
    ngx_http_twirt_ended_e      ended;     /* the metric's label */
    ngx_http_twirt_error_e      error;     /* counted when it happens */
    unsigned                    failed:1;  /* the fallback should play */
} ngx_http_twirt_end_kind_t;


extern ngx_http_twirt_end_kind_t  ngx_http_twirt_end_kinds[];
extern const char *ngx_http_twirt_ended_labels[];
extern const char *ngx_http_twirt_error_labels[];


#define ngx_http_twirt_end_kind(end)                                          \
    (&ngx_http_twirt_end_kinds[(end) < NGX_HTTP_TWIRT_END_LAST               \
                               ? (end) : NGX_HTTP_TWIRT_END_NONE])

/* a WebSocket failure kind of the Twilio side, as the upstream side's */
ngx_http_twirt_end_e ngx_http_twirt_end_upstream(ngx_http_twirt_end_e end);


#endif /* _NGX_HTTP_TWIRT_END_H_INCLUDED_ */
