
/*
 * A call: the Twilio Media Stream and the Realtime session, owned
 * together; the one place that knows both protocols.
 */


#ifndef _NGX_HTTP_TWIRT_CALL_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CALL_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"
#include "ngx_http_twirt_ws.h"
#include "ngx_http_twirt_upstream.h"
#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_end.h"
#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_tool.h"
#include "ngx_http_twirt_transfer.h"
#include "ngx_http_twirt_rotate.h"


#define NGX_HTTP_TWIRT_ITEMS     8
#define NGX_HTTP_TWIRT_MARKS     512     /* unechoed marks at most */
#define NGX_HTTP_TWIRT_MARKS_MIN 16
#define NGX_HTTP_TWIRT_ID_MAX    64
#define NGX_HTTP_TWIRT_DTMF_MAX  32      /* keys given to the model at once */


/* an assistant audio item: what we received, what Twilio played */
typedef struct {
    u_char                      id[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      id_len;
    uint64_t                    received;      /* μ-law bytes, 8 per ms */
    uint64_t                    played;
} ngx_http_twirt_item_t;


/* a mark sent after audio: echoed when the audio before it has played */
typedef struct {
    ngx_uint_t                  seq;
    ngx_uint_t                  item;          /* index in items */
    uint64_t                    bytes;         /* of the item, up to here */
} ngx_http_twirt_mark_t;


/*
 * The phases of a call, in order; a call only moves forward.  See the
 * diagram at the top of ngx_http_twirt_call.c.
 */
typedef enum {
    NGX_HTTP_TWIRT_CALL_SETUP = 0,     /* waiting for start, upstream,
                                          profile */
    NGX_HTTP_TWIRT_CALL_CONFIGURED,    /* session.update sent */
    NGX_HTTP_TWIRT_CALL_ACTIVE,        /* session.updated: talking */
    NGX_HTTP_TWIRT_CALL_ENDING,        /* both sides closing */
    NGX_HTTP_TWIRT_CALL_DONE           /* summary logged, being freed */
} ngx_http_twirt_call_phase_e;


/* what the setup phase waits for: the session is configured at none */
#define NGX_HTTP_TWIRT_CALL_WAIT_START     0x01  /* Twilio's "start" */
#define NGX_HTTP_TWIRT_CALL_WAIT_UPSTREAM  0x02  /* the Realtime socket */
#define NGX_HTTP_TWIRT_CALL_WAIT_PROFILE   0x04  /* the agent profile */
#define NGX_HTTP_TWIRT_CALL_WAIT_HISTORY   0x08  /* a returning call's
                                                    conversation so far */


/* the model answers one response at a time */
typedef enum {
    NGX_HTTP_TWIRT_RESPONSE_IDLE = 0,
    NGX_HTTP_TWIRT_RESPONSE_ACTIVE,    /* created, not done yet */
    NGX_HTTP_TWIRT_RESPONSE_QUEUED     /* active, and another one waits */
} ngx_http_twirt_response_e;


/* what happens once the model's answer has been heard to its end */
typedef enum {
    NGX_HTTP_TWIRT_AFTER_NOTHING = 0,
    NGX_HTTP_TWIRT_AFTER_HANG_UP,      /* end_call */
    NGX_HTTP_TWIRT_AFTER_TRANSFER      /* transfer_call: call->transfer */
} ngx_http_twirt_after_e;


/* what the agent says word for word of twirt's own */
typedef enum {
    NGX_HTTP_TWIRT_SAY_PROMPT = 0,     /* twirt_silence_prompt */
    NGX_HTTP_TWIRT_SAY_GOODBYE,        /* twirt_silence_goodbye */
    NGX_HTTP_TWIRT_SAY_APOLOGY,        /* twirt_response_apology */
    NGX_HTTP_TWIRT_SAY_LAST
} ngx_http_twirt_say_e;


/* the greeting and its cache (README, "The cached greeting") */
typedef enum {
    NGX_HTTP_TWIRT_GREETING_NONE = 0,  /* not decided yet */
    NGX_HTTP_TWIRT_GREETING_OFF,       /* no cache, per call, or decided */
    NGX_HTTP_TWIRT_GREETING_LOOKUP,    /* not in the zone: asked Redis */
    NGX_HTTP_TWIRT_GREETING_FILL,      /* the model says it: recorded */
    NGX_HTTP_TWIRT_GREETING_PLAYING,   /* cached audio sent to Twilio */
    NGX_HTTP_TWIRT_GREETING_TOLD       /* and the model was told it */
} ngx_http_twirt_greeting_e;


typedef struct ngx_http_twirt_call_s  ngx_http_twirt_call_t;


struct ngx_http_twirt_call_s {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_http_twirt_loc_conf_t  *conf;
    ngx_http_cleanup_t         *cleanup;       /* of the request */
    ngx_http_twirt_stream_ctx_t  *stream_ctx;  /* ditto: for the log */

    ngx_http_twirt_call_phase_e  phase;
    ngx_uint_t                  waiting;       /* NGX_HTTP_TWIRT_CALL_WAIT_* */
    ngx_http_twirt_response_e   response;
    ngx_http_twirt_after_e      after;
    ngx_http_twirt_end_e        after_end;     /* the kind AFTER_HANG_UP
                                                  ends with: end_call,
                                                  machine */

    ngx_queue_t                 queue;         /* in the worker's started
                                                  calls, until finished */

    ngx_http_twirt_ws_t        *twilio;
    ngx_http_twirt_upstream_t  *upstream;      /* while connecting */
    ngx_http_twirt_ws_t        *realtime;

    ngx_str_t                   call_sid;
    ngx_str_t                   stream_sid;
    ngx_str_t                   account_sid;
    ngx_str_t                   session_id;
    ngx_str_t                   addr_text;
    json_t                     *parameters;

    /* the agent profile from Redis, read at start */
    json_t                     *profile;
    void                       *profile_handle;

    ngx_http_twirt_record_t     record;        /* what Redis is told */

    /* transfer to a human (ngx_http_twirt_transfer.c) */
    ngx_http_twirt_transfer_t  *transfer;      /* decided, not done yet */
    json_t                     *history;       /* a returning call's lines */
    void                       *history_handle;
    unsigned                    returning:1;   /* after a failed transfer */

    /* the next Realtime session, before this one's limit */
    ngx_http_twirt_rotate_t     rotate;

    ngx_msec_t                  upgraded;      /* ngx_current_msec */
    ngx_event_t                 duration_timer;

    /* caller audio that came before the session was configured */
    u_char                     *early;
    size_t                      early_len;
    size_t                      early_size;
    ngx_uint_t                  early_frames;
    ngx_uint_t                  early_dropped;

    /* keypad keys being collected for the model (twirt_dtmf model) */
    u_char                      dtmf[NGX_HTTP_TWIRT_DTMF_MAX];
    size_t                      dtmf_len;
    ngx_event_t                 dtmf_timer;    /* a pause after the last */

    /* the response being spoken, and the one waiting (its instructions) */
    u_char                      response_id[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      response_id_len;
    u_char                      dropped_id[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      dropped_id_len;
    ngx_str_t                   queued_instructions;

    /*
     * The model's tool calls: running (at most twirt_tool_concurrency),
     * waiting to run; their outputs are sent as they come, the response
     * to them is asked for once none is left (tool_answer)
     */
    ngx_http_twirt_tool_t      *tools;
    ngx_http_twirt_tool_t      *tools_waiting;
    ngx_uint_t                  tools_running;
    ngx_event_t                 filler_timer;
    unsigned                    tool_answer:1;
    unsigned                    filler_said:1;

    /*
     * A silent caller: the agent asks again once the line has been quiet
     * for twirt_silence_timeout after it finished speaking (its last mark
     * echoed), then says goodbye (README, "Silence and failed responses")
     */
    ngx_event_t                 silence_timer;
    ngx_uint_t                  silence_tries;  /* prompts since the caller
                                                   last spoke or typed */
    unsigned                    spoke:1;        /* the agent's audio went
                                                   out at least once */
    unsigned                    caller_speaking:1;

    /* failed responses in a row: 1 is asked again, 2 apologised for */
    ngx_uint_t                  failures;
    ngx_str_t                   said;           /* the instructions of the
                                                   last "say" response */
    ngx_str_t                   sayings[NGX_HTTP_TWIRT_SAY_LAST];
                                                /* made once per call */

    /*
     * The greeting's cache: what a miss records of the model's greeting
     * response (its μ-law, bounded, and its transcript), or what a hit
     * plays (the item of its audio, the text the model is told)
     */
    ngx_http_twirt_greeting_e   greeting;
    u_char                      greeting_key[16];
    ngx_str_t                   greeting_said;  /* the response's
                                                   instructions */
    u_char                      greeting_response[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      greeting_response_len;
    u_char                     *greeting_audio; /* ngx_alloc()ed */
    size_t                      greeting_len;
    size_t                      greeting_size;
    ngx_str_t                   greeting_text;
    ngx_uint_t                  greeting_item;  /* in items, when played */
    uint64_t                    greeting_total; /* bytes played */
    void                       *greeting_handle; /* the Redis read */
    unsigned                    greeting_filled:1; /* its template has a
                                                      {{placeholder}} */
    unsigned                    greeting_due:1; /* the session is ready:
                                                   the model's greeting
                                                   waits for Redis */
    unsigned                    greeting_asked:1; /* with the session
                                                     update */

        /* playback accounting */
    ngx_http_twirt_item_t       items[NGX_HTTP_TWIRT_ITEMS];
    ngx_uint_t                  item;          /* the latest item */
    ngx_http_twirt_mark_t      *marks;         /* a ring, grown on need
                                                  up to MARKS */
    ngx_uint_t                  marks_size;
    ngx_uint_t                  mark_head;
    ngx_uint_t                  mark_count;
    ngx_uint_t                  mark_seq;
    ngx_uint_t                  clear_seq;     /* echoes up to it: ignored */
    uint64_t                    unmarked;      /* bytes of call->item sent
                                                  after its last mark */
    ngx_msec_t                  played_at;     /* the last mark's echo */
    unsigned                    clock:1;       /* audio played on since */

    ngx_http_twirt_usage_t      usage;

    ngx_uint_t                  media_in;
    ngx_uint_t                  media_out;
    ngx_uint_t                  marks_in;
    ngx_uint_t                  dtmf_in;
    ngx_uint_t                  invalid_in;
    ngx_uint_t                  clears;
    ngx_uint_t                  truncates;
    ngx_uint_t                  dropped_deltas;

    /* how it ended: the kind, and the words that say it for this call */
    ngx_http_twirt_end_e        end;
    const char                 *end_detail;
    ngx_uint_t                  end_code;
};


#define ngx_http_twirt_call_started(call)                                     \
    (!((call)->waiting & NGX_HTTP_TWIRT_CALL_WAIT_START))

#define ngx_http_twirt_call_failed(call)                                      \
    (ngx_http_twirt_end_kind((call)->end)->failed)


ngx_http_twirt_call_t *ngx_http_twirt_call_create(ngx_http_request_t *r);
void ngx_http_twirt_call_end(ngx_http_twirt_call_t *call,
    ngx_http_twirt_end_e end, const char *detail, ngx_uint_t code);

/* for the call's helpers (ngx_http_twirt_transfer.c) */
void ngx_http_twirt_call_ready(ngx_http_twirt_call_t *call, ngx_uint_t what);
ngx_int_t ngx_http_twirt_call_send_json(ngx_http_twirt_call_t *call,
    json_t *ev);
ngx_int_t ngx_http_twirt_call_response_create(ngx_http_twirt_call_t *call,
    ngx_str_t *instructions);
void ngx_http_twirt_call_event(ngx_http_twirt_call_t *call, const char *type,
    json_t *fields);
json_t *ngx_http_twirt_call_session(ngx_http_twirt_call_t *call);
void ngx_http_twirt_call_finish(ngx_http_twirt_call_t *call);

/*
 * A control message for a call (ngx_http_twirt_control.c): "hangup" ends
 * it now (end kind "hangup"); "machine", an answering machine answered:
 * what is being said is cancelled as a barge-in would, the agent says
 * message (when given, not empty) and the call ends once it was heard,
 * or at once without one (end kind "machine").  message is copied.
 * NGX_OK: applied (or the call is already ending); NGX_DECLINED: no such
 * call on this worker; NGX_ERROR: an unknown action.
 */
ngx_int_t ngx_http_twirt_call_control(ngx_str_t *call_sid, ngx_str_t *action,
    ngx_str_t *message);


#endif /* _NGX_HTTP_TWIRT_CALL_H_INCLUDED_ */
