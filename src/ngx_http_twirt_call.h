
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
#include "ngx_http_twirt_record.h"


#define NGX_HTTP_TWIRT_ITEMS     8
#define NGX_HTTP_TWIRT_MARKS     512
#define NGX_HTTP_TWIRT_ID_MAX    64


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


typedef struct ngx_http_twirt_call_s  ngx_http_twirt_call_t;

typedef void (*ngx_http_twirt_call_pt)(ngx_http_twirt_call_t *call);


struct ngx_http_twirt_call_s {
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
    ngx_http_twirt_loc_conf_t  *conf;
    ngx_http_cleanup_t         *cleanup;       /* of the request */
    ngx_http_twirt_stream_ctx_t  *stream_ctx;  /* ditto: for the log */

    ngx_http_twirt_ws_t        *twilio;
    ngx_http_twirt_upstream_t  *upstream;      /* while connecting */
    ngx_http_twirt_ws_t        *realtime;

    ngx_str_t                   call_sid;
    ngx_str_t                   stream_sid;
    ngx_str_t                   account_sid;
    ngx_str_t                   session_id;
    ngx_str_t                   addr_text;
    json_t                     *parameters;

    ngx_http_twirt_record_t     record;        /* in Redis */

    /* the agent profile from Redis, read at start */
    json_t                     *profile;
    void                       *profile_handle;

    ngx_msec_t                  upgraded;      /* ngx_current_msec */
    ngx_event_t                 duration_timer;

    /* caller audio that came before the session was configured */
    u_char                     *early;
    size_t                      early_len;
    size_t                      early_size;
    ngx_uint_t                  early_frames;
    ngx_uint_t                  early_dropped;

    /* responses, one at a time */
    u_char                      response_id[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      response_id_len;
    u_char                      dropped_id[NGX_HTTP_TWIRT_ID_MAX];
    size_t                      dropped_id_len;
    ngx_str_t                   queued_instructions;

    /* playback accounting */
    ngx_http_twirt_item_t       items[NGX_HTTP_TWIRT_ITEMS];
    ngx_uint_t                  item;          /* the latest item */
    ngx_http_twirt_mark_t       marks[NGX_HTTP_TWIRT_MARKS];
    ngx_uint_t                  mark_head;
    ngx_uint_t                  mark_count;
    ngx_uint_t                  mark_seq;
    ngx_uint_t                  clear_seq;     /* echoes up to it: ignored */

    ngx_http_twirt_usage_t      usage;

    ngx_uint_t                  media_in;
    ngx_uint_t                  media_out;
    ngx_uint_t                  marks_in;
    ngx_uint_t                  dtmf_in;
    ngx_uint_t                  invalid_in;
    ngx_uint_t                  clears;
    ngx_uint_t                  truncates;
    ngx_uint_t                  dropped_deltas;

    const char                 *end_reason;
    ngx_uint_t                  end_code;

    unsigned                    started:1;
    unsigned                    profile_pending:1;
    unsigned                    configured:1;  /* session.update sent */
    unsigned                    updated:1;     /* session.updated seen */
    unsigned                    response_active:1;
    unsigned                    response_queued:1;
    unsigned                    end_call_pending:1;
    unsigned                    ending:1;
    unsigned                    failed:1;
    unsigned                    counted:1;     /* in the metrics */
};


ngx_http_twirt_call_t *ngx_http_twirt_call_create(ngx_http_request_t *r);
void ngx_http_twirt_call_end(ngx_http_twirt_call_t *call, const char *reason,
    ngx_uint_t code);


#endif /* _NGX_HTTP_TWIRT_CALL_H_INCLUDED_ */
