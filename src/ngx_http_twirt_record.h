
/*
 * The call record in Redis (README, "Redis"): the call hash, its events
 * stream, the live channel, the set of active calls; and agent profiles.
 * Never in the audio path: everything goes through the Redis module's
 * bounded queue.  The record knows nothing of the call: the call fills
 * what is recorded and hands over how it ended.
 */


#ifndef _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_
#define _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>

#include <jansson.h>

#include "ngx_http_twirt_transfer.h"


/* the board's feed ({prefix}events:stream) keeps about this many events */
#define NGX_HTTP_TWIRT_RECORD_FEED  100000


/* embedded in the call (call->record), owned by it */
typedef struct {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_str_t                   call_sid;      /* empty until "start":
                                                  nothing is recorded */
    ngx_str_t                   stream_sid;
    ngx_str_t                   account_sid;
    ngx_str_t                   session_id;
    json_t                     *parameters;    /* the caller's reference */
    unsigned                    call_level:1;  /* Twilio's word about the
                                                  call, not a stream's:
                                                  written whichever stream
                                                  owns the record */
} ngx_http_twirt_record_t;


typedef struct {
    ngx_uint_t                  failed;
    ngx_str_t                   reason;        /* the end kind's name */
    ngx_str_t                   detail;        /* its words for this call */
    ngx_msec_t                  duration;
    uint64_t                    tokens;
    double                      cost;          /* USD */
} ngx_http_twirt_record_end_t;


/*
 * profile: the agent profile as a JSON object, the handler's to keep and
 * release; NULL: no profile (Redis not configured, no such agent, no
 * answer in time, an error).
 */
typedef void (*ngx_http_twirt_record_profile_pt)(void *data,
    json_t *profile);


void ngx_http_twirt_record_start(ngx_http_twirt_record_t *rec);
void ngx_http_twirt_record_event(ngx_http_twirt_record_t *rec, json_t *ev,
    const char *text);
void ngx_http_twirt_record_end(ngx_http_twirt_record_t *rec,
    ngx_http_twirt_record_end_t *end);
void ngx_http_twirt_record_expire(ngx_http_twirt_record_t *rec);

/*
 * Reads {prefix}agent:{agent}.  NGX_OK: handler is called later, exactly
 * once, unless ngx_http_twirt_record_profile_cancel(handle) comes first;
 * *handle is set to NULL before the handler runs.  Otherwise the handler
 * is never called: go on with the configuration's defaults.
 */
ngx_int_t ngx_http_twirt_record_profile(ngx_http_twirt_record_t *rec,
    ngx_str_t *agent, ngx_msec_t timeout,
    ngx_http_twirt_record_profile_pt handler, void *data, void **handle);
void ngx_http_twirt_record_profile_cancel(void **handle);

/* the transfer the call ends with: transfer_* fields of the hash */
void ngx_http_twirt_record_transfer(ngx_http_twirt_record_t *rec,
    ngx_http_twirt_transfer_t *t);

/*
 * How the <Dial> of a transfer ended (DialCallStatus): transfer_result,
 * and status "returning" when the caller comes back to the agent; an
 * event of the call.
 */
void ngx_http_twirt_record_transfer_result(ngx_http_twirt_record_t *rec,
    ngx_str_t *result, ngx_uint_t returning);

/*
 * A returning call's conversation so far: the last transcript lines of
 * the call's events (at most lines, at most size bytes of text), as a
 * JSON array of {"role", "text"}, oldest first, given to the handler
 * (its to release); NULL: none, or no answer in time.  Same contract as
 * ngx_http_twirt_record_profile().
 */
ngx_int_t ngx_http_twirt_record_history(ngx_http_twirt_record_t *rec,
    ngx_msec_t timeout, ngx_uint_t lines, size_t size,
    ngx_http_twirt_record_profile_pt handler, void *data, void **handle);
void ngx_http_twirt_record_history_cancel(void **handle);


#endif /* _NGX_HTTP_TWIRT_RECORD_H_INCLUDED_ */
