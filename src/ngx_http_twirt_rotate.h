
/*
 * Session rotation (twirt_session_rotate): before a Realtime session
 * reaches the API's maximum duration, a call opens the next one,
 * configures it as it did the first, and switches over between turns,
 * seeding it with the conversation so far as text (README, "Calls longer
 * than a session").
 */


#ifndef _NGX_HTTP_TWIRT_ROTATE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_ROTATE_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"
#include "ngx_http_twirt_ws.h"
#include "ngx_http_twirt_upstream.h"


#define NGX_HTTP_TWIRT_ROTATE_TRIES     2         /* connections a rotation
                                                     tries */
#define NGX_HTTP_TWIRT_ROTATE_RETRY     1000      /* ms between them */
#define NGX_HTTP_TWIRT_ROTATE_CONTEXT   32768     /* bytes of transcript a
                                                     new session is given */


typedef struct ngx_http_twirt_call_s  ngx_http_twirt_call_t;


typedef struct {
    ngx_event_t                 timer;        /* time to rotate, a retry */
    ngx_msec_t                  opened;       /* the session's creation */
    ngx_msec_t                  started;      /* this rotation's start */

    ngx_http_twirt_upstream_t  *upstream;     /* the next one, connecting */
    ngx_http_twirt_ws_t        *next;         /* connected, configuring */
    ngx_msec_t                  next_opened;
    ngx_str_t                   next_id;      /* its session id */
    ngx_http_twirt_ws_t        *old;          /* switched from, closing */
    ngx_http_twirt_ws_t        *gone;         /* a next one not wanted,
                                                 closing */

    ngx_uint_t                  tries;        /* failed in a row */
    ngx_uint_t                  rotations;

    /* the conversation so far: {"role", "text", "item_id"} in order */
    json_t                     *lines;
    size_t                      bytes;        /* of their texts */
    ngx_uint_t                  dropped;      /* lines over the bound */
    ngx_uint_t                  transcripts;  /* caller turns awaiting their
                                                 transcript */

    /* the frames of the sessions switched from, for the summary */
    ngx_uint_t                  frames_in;
    ngx_uint_t                  frames_out;

    unsigned                    ready:1;      /* next: session.updated */
    unsigned                    transcribing:1;
    unsigned                    answer_due:1; /* a caller turn committed,
                                                 its response not created */
} ngx_http_twirt_rotate_t;


char *ngx_http_twirt_session_rotate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

void ngx_http_twirt_rotate_init(ngx_http_twirt_call_t *call);

/* the session became active (session.updated): rotation is timed */
void ngx_http_twirt_rotate_schedule(ngx_http_twirt_call_t *call,
    json_t *session);

/* what the next session is seeded with */
void ngx_http_twirt_rotate_line(ngx_http_twirt_call_t *call,
    ngx_uint_t caller, json_t *text);
void ngx_http_twirt_rotate_committed(ngx_http_twirt_call_t *call,
    json_t *item_id);
void ngx_http_twirt_rotate_transcribed(ngx_http_twirt_call_t *call,
    json_t *item_id, json_t *text);
void ngx_http_twirt_rotate_answer_due(ngx_http_twirt_call_t *call,
    ngx_uint_t due);

/* the call may be between turns now: switches when the next is ready */
void ngx_http_twirt_rotate_check(ngx_http_twirt_call_t *call);

/* the session expired: NGX_OK if the call switched to the next one */
ngx_int_t ngx_http_twirt_rotate_expired(ngx_http_twirt_call_t *call);

void ngx_http_twirt_rotate_end(ngx_http_twirt_call_t *call);
ngx_uint_t ngx_http_twirt_rotate_busy(ngx_http_twirt_call_t *call);
void ngx_http_twirt_rotate_free(ngx_http_twirt_call_t *call);


#endif /* _NGX_HTTP_TWIRT_ROTATE_H_INCLUDED_ */
