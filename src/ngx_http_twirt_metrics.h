
/*
 * twirt: counters and histograms shared by all workers, exposed by
 * "twirt_status" in the Prometheus text format.
 *
 * Before ngx_http_twirt_metrics_init() ran (no zone) every function here
 * is a cheap no-op.  The hot path (metric_add, metric_observe) takes no
 * lock: each worker writes only its own slot of the zone.
 */


#ifndef _NGX_HTTP_TWIRT_METRICS_H_INCLUDED_
#define _NGX_HTTP_TWIRT_METRICS_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_end.h"
#include "ngx_http_twirt_transfer.h"


typedef enum {
    NGX_HTTP_TWIRT_M_CALLS_STARTED = 0,    /* counter: Twilio upgrades
                                              accepted */
    NGX_HTTP_TWIRT_M_CALLS_ACTIVE,         /* gauge (add +1 / -1) */
    NGX_HTTP_TWIRT_M_TWILIO_FRAMES_IN,     /* counters: WebSocket frames and
                                              bytes, per side and
                                              direction */
    NGX_HTTP_TWIRT_M_TWILIO_FRAMES_OUT,
    NGX_HTTP_TWIRT_M_TWILIO_BYTES_IN,
    NGX_HTTP_TWIRT_M_TWILIO_BYTES_OUT,
    NGX_HTTP_TWIRT_M_UPSTREAM_FRAMES_IN,
    NGX_HTTP_TWIRT_M_UPSTREAM_FRAMES_OUT,
    NGX_HTTP_TWIRT_M_UPSTREAM_BYTES_IN,
    NGX_HTTP_TWIRT_M_UPSTREAM_BYTES_OUT,
    NGX_HTTP_TWIRT_M_MEDIA_IN,             /* Twilio media messages
                                              forwarded */
    NGX_HTTP_TWIRT_M_MEDIA_OUT,            /* audio deltas forwarded to
                                              Twilio */
    NGX_HTTP_TWIRT_M_BARGE_INS,
    NGX_HTTP_TWIRT_M_TRUNCATES,
    NGX_HTTP_TWIRT_M_TOKENS,
    NGX_HTTP_TWIRT_M_COST_MICRO_USD,       /* exposed as
                                              twirt_cost_usd_total (float) */
    NGX_HTTP_TWIRT_M_EARLY_AUDIO_DROPPED,
    NGX_HTTP_TWIRT_M_RESPONSES_INCOMPLETE, /* response.done: incomplete */
    NGX_HTTP_TWIRT_M_RESPONSES_FAILED,     /* response.done: failed */
    NGX_HTTP_TWIRT_M_RESPONSES_RETRIED,    /* a failed one asked again */
    NGX_HTTP_TWIRT_M_APOLOGIES,            /* twirt_response_apology said */
    NGX_HTTP_TWIRT_M_SILENCE_PROMPTS,      /* twirt_silence_prompt said */
    NGX_HTTP_TWIRT_M_TRANSCRIPTIONS_FAILED,
    NGX_HTTP_TWIRT_M_TOOL_OK,              /* tool calls, by result: one
                                              per ngx_http_twirt_tool_
                                              result_e, in its order */
    NGX_HTTP_TWIRT_M_TOOL_FAILED = NGX_HTTP_TWIRT_M_TOOL_OK + 9,
    NGX_HTTP_TWIRT_M_TOOL_FILLERS,         /* fillers said while tools ran */
    NGX_HTTP_TWIRT_M_CONTROL_APPLIED,      /* control messages, by result:
                                              applied to a call here */
    NGX_HTTP_TWIRT_M_CONTROL_UNKNOWN_CALL, /* no such live call here */
    NGX_HTTP_TWIRT_M_CONTROL_INVALID,      /* not a control message */
    NGX_HTTP_TWIRT_M_DIAL_OK,              /* campaigns' dials, by what
                                              Twilio answered: one per
                                              ngx_http_twirt_dial_results,
                                              in its order */
    NGX_HTTP_TWIRT_M_DIAL_LAST = NGX_HTTP_TWIRT_M_DIAL_OK + 6,
    NGX_HTTP_TWIRT_M_BOARD_CLIENTS,        /* gauge: the board's browsers */
    NGX_HTTP_TWIRT_M_BOARD_SLOW,           /* browsers closed: not reading */
    NGX_HTTP_TWIRT_M_POOL_IDLE,            /* gauge: warm Realtime
                                              connections ready */
    NGX_HTTP_TWIRT_M_POOL_HITS,            /* calls that took one */
    NGX_HTTP_TWIRT_M_POOL_MISSES,          /* calls that found none */
    NGX_HTTP_TWIRT_M_POOL_DISCARDED,       /* discarded, by reason: one per
                                              ngx_http_twirt_pool_discard_e,
                                              in its order */
    NGX_HTTP_TWIRT_M_POOL_DISCARDED_LAST = NGX_HTTP_TWIRT_M_POOL_DISCARDED
                                           + 2,
    NGX_HTTP_TWIRT_M_NODE_LOST,            /* other nodes' calls marked
                                              failed: node_lost */
    NGX_HTTP_TWIRT_M_GREETING_HITS,        /* the cached greeting: played
                                              from the zone */
    NGX_HTTP_TWIRT_M_GREETING_MISSES,      /* not there: the model says it */
    NGX_HTTP_TWIRT_M_GREETING_STORED,      /* a model's greeting kept */
    NGX_HTTP_TWIRT_M_GREETING_EVICTED,     /* removed to make room */
    NGX_HTTP_TWIRT_M_ROTATIONS,            /* sessions switched between
                                              turns */
    NGX_HTTP_TWIRT_M_ROTATIONS_FORCED,     /* switched as one expired */
    NGX_HTTP_TWIRT_M_ROTATIONS_FAILED,     /* next sessions not had */
    NGX_HTTP_TWIRT_M_LAST
} ngx_http_twirt_metric_e;

typedef enum {
    NGX_HTTP_TWIRT_H_UPSTREAM_CONNECT = 0, /* ms: resolve+connect+TLS+
                                              upgrade */
    NGX_HTTP_TWIRT_H_SETUP,                /* ms: Twilio upgrade ->
                                              session.updated */
    NGX_HTTP_TWIRT_H_BRIDGE,               /* microseconds: arrival ->
                                              written on the other socket */
    NGX_HTTP_TWIRT_H_LAST
} ngx_http_twirt_histogram_e;


/*
 * From the module's postconfiguration: adds the shared zone "twirt_metrics"
 * (its size computed here).  The zone survives reloads: its init reuses the
 * old data when the layout is the same.
 */
ngx_int_t ngx_http_twirt_metrics_init(ngx_conf_t *cf);

void ngx_http_twirt_metrics_add(ngx_http_twirt_metric_e m, ngx_int_t n);
void ngx_http_twirt_metrics_observe(ngx_http_twirt_histogram_e h,
    uint64_t value);

/* a call ended: counted under its kind's label */
void ngx_http_twirt_metrics_call_ended(ngx_http_twirt_end_e end);

/* a transfer's step or result, counted under its label */
void ngx_http_twirt_metrics_transfer(ngx_http_twirt_transfer_result_e result);

/* an error of this kind happened; NGX_HTTP_TWIRT_ERR_NONE counts nothing */
void ngx_http_twirt_metrics_error(ngx_http_twirt_error_e kind);

/* a campaign's dial, by its kind ("ok", "invalid", ...) */
void ngx_http_twirt_metrics_dial(const char *kind);

/* the location content handler of "twirt_status" */
ngx_int_t ngx_http_twirt_metrics_handler(ngx_http_request_t *r);

/*
 * From the module's init_process and exit_process hooks: a timer copies
 * this worker's Redis figures into its slot every second.
 */
ngx_int_t ngx_http_twirt_metrics_init_process(ngx_cycle_t *cycle);
void ngx_http_twirt_metrics_exit_process(ngx_cycle_t *cycle);


#endif /* _NGX_HTTP_TWIRT_METRICS_H_INCLUDED_ */
