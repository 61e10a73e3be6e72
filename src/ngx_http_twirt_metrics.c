
/*
 * Metrics: one slot per worker process in a shared zone, written without
 * locks by its owner only, summed by whichever worker answers
 * "twirt_status".  Counters of a worker that exited stay in its slot (the
 * next worker in that slot goes on from them), so totals never go back.
 */


#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_tool.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_upstream_pool.h"


#define NGX_HTTP_TWIRT_METRICS_MAGIC    0x7477697274000001ULL
#define NGX_HTTP_TWIRT_METRICS_BUCKETS  13      /* the most bounds, +Inf */
#define NGX_HTTP_TWIRT_METRICS_TEXT     32768   /* the exposition, at most */
#define NGX_HTTP_TWIRT_METRICS_PERIOD   1000    /* Redis figures, ms */


typedef enum {
    NGX_HTTP_TWIRT_R_QUEUED = 0,                /* gauges */
    NGX_HTTP_TWIRT_R_CONNECTED,
    NGX_HTTP_TWIRT_R_DROPPED,                   /* counters */
    NGX_HTTP_TWIRT_R_RECONNECTS,
    NGX_HTTP_TWIRT_R_ERRORS,
    NGX_HTTP_TWIRT_R_SENT,
    NGX_HTTP_TWIRT_R_LAST
} ngx_http_twirt_metrics_redis_e;

#define NGX_HTTP_TWIRT_R_FIRST_COUNTER  NGX_HTTP_TWIRT_R_DROPPED


typedef struct {
    uint64_t                    bucket[NGX_HTTP_TWIRT_METRICS_BUCKETS];
    uint64_t                    sum;
} ngx_http_twirt_metrics_hist_t;


/*
 * Counters and gauges add modulo 2^64: a gauge's +1 and -1 may land in
 * different sums, its total is read back as signed.
 */
typedef struct {
    uint64_t                       pid;         /* 0: no live owner */
    uint64_t                       counter[NGX_HTTP_TWIRT_M_LAST];
    uint64_t                       ended[NGX_HTTP_TWIRT_ENDED_LAST];
    uint64_t                       error[NGX_HTTP_TWIRT_ERR_LAST];
    uint64_t                       transfer[NGX_HTTP_TWIRT_TRANSFER_LAST];
    ngx_http_twirt_metrics_hist_t  hist[NGX_HTTP_TWIRT_H_LAST];
    uint64_t                       redis[NGX_HTTP_TWIRT_R_LAST];
} ngx_http_twirt_metrics_slot_t;


typedef struct {
    uint64_t                    magic;
    size_t                      size;
    size_t                      stride;
    /* the Redis counters of workers gone, their slots cleared */
    ngx_atomic_t                retired[NGX_HTTP_TWIRT_R_LAST];
    u_char                     *slots;          /* NGX_MAX_PROCESSES */
} ngx_http_twirt_metrics_shm_t;


typedef struct {
    const char                 *name;
    const char                 *help;
    ngx_uint_t                  digits;         /* value / 10^digits: s */
    ngx_uint_t                  nbounds;
    uint64_t                    bounds[NGX_HTTP_TWIRT_METRICS_BUCKETS - 1];
} ngx_http_twirt_metrics_hist_desc_t;


static size_t ngx_http_twirt_metrics_size(size_t *stride);
static ngx_int_t ngx_http_twirt_metrics_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_twirt_metrics_attach(ngx_cycle_t *cycle);
static void ngx_http_twirt_metrics_retire(ngx_http_twirt_metrics_slot_t *s);
static void ngx_http_twirt_metrics_redis(void);
static void ngx_http_twirt_metrics_timer(ngx_event_t *ev);
static void ngx_http_twirt_metrics_sum(ngx_http_twirt_metrics_slot_t *total,
    ngx_uint_t *workers);
static u_char *ngx_http_twirt_metrics_format(u_char *p, u_char *end);
static u_char *ngx_http_twirt_metrics_family(u_char *p, u_char *end,
    const char *name, const char *type, const char *help);
static u_char *ngx_http_twirt_metrics_histogram(u_char *p, u_char *end,
    ngx_http_twirt_metrics_hist_desc_t *d, ngx_http_twirt_metrics_hist_t *h);
static u_char *ngx_http_twirt_metrics_decimal(u_char *p, u_char *end,
    uint64_t value, ngx_uint_t digits);


static ngx_str_t  ngx_http_twirt_metrics_zone_name =
    ngx_string("twirt_metrics");


static ngx_http_twirt_metrics_hist_desc_t
    ngx_http_twirt_metrics_hists[NGX_HTTP_TWIRT_H_LAST] =
{
    { "twirt_upstream_connect_seconds",
      "Time to reach the Realtime API: resolve, connect, TLS, upgrade.",
      3, 12, { 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 } },

    { "twirt_setup_seconds",
      "Time from the Twilio upgrade to session.updated.",
      3, 12, { 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000 } },

    { "twirt_bridge_latency_seconds",
      "Time from a frame's arrival on one socket to its write on the other.",
      6, 11, { 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
               50000 } }
};


static ngx_http_twirt_metrics_shm_t   *ngx_http_twirt_metrics_shm;
static ngx_http_twirt_metrics_slot_t  *ngx_http_twirt_metrics_slot;
static ngx_event_t                     ngx_http_twirt_metrics_event;
static ngx_connection_t                ngx_http_twirt_metrics_dummy;


#define ngx_http_twirt_metrics_slot_at(shm, i)                               \
    ((ngx_http_twirt_metrics_slot_t *) ((shm)->slots + (i) * (shm)->stride))


ngx_int_t
ngx_http_twirt_metrics_init(ngx_conf_t *cf)
{
    size_t           size, stride;
    ngx_shm_zone_t  *shm_zone;

    size = ngx_http_twirt_metrics_size(&stride);

    /* the slab pool's own pages and headers */
    size = ngx_align(size, ngx_pagesize) + 8 * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_twirt_metrics_zone_name,
                                     size, &ngx_http_twirt_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_twirt_metrics_init_zone;

    return NGX_OK;
}


/* the header, then a slot per process, each on its own cache lines */

static size_t
ngx_http_twirt_metrics_size(size_t *stride)
{
    *stride = ngx_align(sizeof(ngx_http_twirt_metrics_slot_t),
                        NGX_CPU_CACHE_LINE);

    return ngx_align(sizeof(ngx_http_twirt_metrics_shm_t), NGX_CPU_CACHE_LINE)
           + NGX_MAX_PROCESSES * *stride;
}


static ngx_int_t
ngx_http_twirt_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    size_t                         size, stride;
    ngx_slab_pool_t               *shpool;
    ngx_http_twirt_metrics_shm_t  *shm, *old;

    old = data;

    size = ngx_http_twirt_metrics_size(&stride);

    /* a reload: the workers in progress keep counting into the same zone */
    if (old
        && old->magic == NGX_HTTP_TWIRT_METRICS_MAGIC
        && old->size == size
        && old->stride == stride)
    {
        shm_zone->data = old;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    shm = ngx_slab_calloc(shpool, size);
    if (shm == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "twirt: no memory for the \"%V\" zone",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    shm->magic = NGX_HTTP_TWIRT_METRICS_MAGIC;
    shm->size = size;
    shm->stride = stride;
    shm->slots = (u_char *) shm
                 + ngx_align(sizeof(ngx_http_twirt_metrics_shm_t),
                             NGX_CPU_CACHE_LINE);

    shm_zone->data = shm;

    return NGX_OK;
}


ngx_int_t
ngx_http_twirt_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_event_t  *ev;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    ngx_http_twirt_metrics_attach(cycle);

    if (ngx_http_twirt_metrics_slot == NULL) {
        return NGX_OK;
    }

    ev = &ngx_http_twirt_metrics_event;

    /* the event core's debug log reads the fd of ev->data */
    ngx_http_twirt_metrics_dummy.fd = (ngx_socket_t) -1;

    ev->handler = ngx_http_twirt_metrics_timer;
    ev->log = cycle->log;
    ev->data = &ngx_http_twirt_metrics_dummy;
    ev->cancelable = 1;

    ngx_add_timer(ev, NGX_HTTP_TWIRT_METRICS_PERIOD);

    return NGX_OK;
}


void
ngx_http_twirt_metrics_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_metrics_slot_t  *s;

    s = ngx_http_twirt_metrics_slot;

    if (s == NULL) {
        return;
    }

    if (ngx_http_twirt_metrics_event.timer_set) {
        ngx_del_timer(&ngx_http_twirt_metrics_event);
    }

    ngx_http_twirt_metrics_redis();
    ngx_http_twirt_metrics_retire(s);

    s->pid = 0;

    ngx_http_twirt_metrics_slot = NULL;
}


/* finds the zone of this cycle and takes the slot of this process */

static void
ngx_http_twirt_metrics_attach(ngx_cycle_t *cycle)
{
    ngx_http_twirt_metrics_shm_t   *shm;
    ngx_http_twirt_metrics_slot_t  *s;

    if (ngx_http_twirt_metrics_slot) {
        return;
    }

    if (ngx_process_slot < 0 || ngx_process_slot >= NGX_MAX_PROCESSES) {
        return;
    }

    shm = ngx_http_twirt_shm_lookup(cycle, &ngx_http_twirt_metrics_zone_name,
                                    &ngx_http_twirt_module);

    if (shm == NULL) {
        return;
    }

    ngx_http_twirt_metrics_shm = shm;

    s = ngx_http_twirt_metrics_slot_at(shm, ngx_process_slot);

    /* the previous owner died without exit_process */
    if (s->pid) {
        ngx_http_twirt_metrics_retire(s);
    }

    s->pid = (uint64_t) ngx_pid;

    ngx_http_twirt_metrics_slot = s;
}


/* moves the Redis counters of a slot to the totals of workers gone */

static void
ngx_http_twirt_metrics_retire(ngx_http_twirt_metrics_slot_t *s)
{
    ngx_uint_t                     i;
    ngx_http_twirt_metrics_shm_t  *shm;

    shm = ngx_http_twirt_metrics_shm;

    for (i = NGX_HTTP_TWIRT_R_FIRST_COUNTER; i < NGX_HTTP_TWIRT_R_LAST; i++) {
        (void) ngx_atomic_fetch_add(&shm->retired[i],
                                    (ngx_atomic_int_t) s->redis[i]);
    }

    ngx_memzero(s->redis, sizeof(s->redis));
}


static void
ngx_http_twirt_metrics_redis(void)
{
    uint64_t                       *v;
    ngx_http_twirt_redis_stats_t   *st;

    if (ngx_http_twirt_metrics_slot == NULL) {
        return;
    }

    st = ngx_http_twirt_redis_stats();
    v = ngx_http_twirt_metrics_slot->redis;

    v[NGX_HTTP_TWIRT_R_QUEUED] = st->queued;
    v[NGX_HTTP_TWIRT_R_CONNECTED] = st->connected;
    v[NGX_HTTP_TWIRT_R_DROPPED] = st->dropped;
    v[NGX_HTTP_TWIRT_R_RECONNECTS] = st->reconnects;
    v[NGX_HTTP_TWIRT_R_ERRORS] = st->errors;
    v[NGX_HTTP_TWIRT_R_SENT] = st->sent;
}


static void
ngx_http_twirt_metrics_timer(ngx_event_t *ev)
{
    ngx_http_twirt_metrics_redis();

    if (!ngx_exiting && !ngx_terminate && !ngx_quit) {
        ngx_add_timer(ev, NGX_HTTP_TWIRT_METRICS_PERIOD);
    }
}


void
ngx_http_twirt_metrics_add(ngx_http_twirt_metric_e m, ngx_int_t n)
{
    uint64_t  *c;

    if (ngx_http_twirt_metrics_slot == NULL
        || (ngx_uint_t) m >= NGX_HTTP_TWIRT_M_LAST)
    {
        return;
    }

    c = &ngx_http_twirt_metrics_slot->counter[m];

    if (n > 0 && *c > UINT64_MAX - (uint64_t) n) {
        /* a counter stops at its largest value, never wraps to small */
        *c = UINT64_MAX;
        return;
    }

    *c += (uint64_t) n;
}


void
ngx_http_twirt_metrics_observe(ngx_http_twirt_histogram_e h, uint64_t value)
{
    ngx_uint_t                           i;
    ngx_http_twirt_metrics_hist_t       *hist;
    ngx_http_twirt_metrics_hist_desc_t  *d;

    if (ngx_http_twirt_metrics_slot == NULL
        || (ngx_uint_t) h >= NGX_HTTP_TWIRT_H_LAST)
    {
        return;
    }

    d = &ngx_http_twirt_metrics_hists[h];
    hist = &ngx_http_twirt_metrics_slot->hist[h];

    for (i = 0; i < d->nbounds; i++) {
        if (value <= d->bounds[i]) {
            break;
        }
    }

    /* i == d->nbounds: +Inf */
    hist->bucket[i]++;
    hist->sum += value;
}


void
ngx_http_twirt_metrics_call_ended(ngx_http_twirt_end_e end)
{
    if (ngx_http_twirt_metrics_slot == NULL) {
        return;
    }

    ngx_http_twirt_metrics_slot->ended[ngx_http_twirt_end_kind(end)->ended]++;
}


void
ngx_http_twirt_metrics_transfer(ngx_http_twirt_transfer_result_e result)
{
    if (ngx_http_twirt_metrics_slot == NULL
        || result >= NGX_HTTP_TWIRT_TRANSFER_LAST)
    {
        return;
    }

    ngx_http_twirt_metrics_slot->transfer[result]++;
}


/* the report kinds of ngx_http_twirt_campaign.c, as the label's values */
static const char  *ngx_http_twirt_dial_results[] = {
    "ok", "invalid", "failed", "pause", "rate_limited", "retry", "unknown"
};


void
ngx_http_twirt_metrics_dial(const char *kind)
{
    ngx_uint_t  i;

    for (i = 0; i <= NGX_HTTP_TWIRT_M_DIAL_LAST - NGX_HTTP_TWIRT_M_DIAL_OK;
         i++)
    {
        if (ngx_strcmp(ngx_http_twirt_dial_results[i], kind) == 0) {
            ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_DIAL_OK + i, 1);
            return;
        }
    }
}


void
ngx_http_twirt_metrics_error(ngx_http_twirt_error_e kind)
{
    if (ngx_http_twirt_metrics_slot == NULL || kind >= NGX_HTTP_TWIRT_ERR_LAST)
    {
        return;
    }

    ngx_http_twirt_metrics_slot->error[kind]++;
}


ngx_int_t
ngx_http_twirt_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_twirt_metrics_slot == NULL) {
        ngx_http_twirt_metrics_attach((ngx_cycle_t *) ngx_cycle);
    }

    /* this worker's Redis figures as of now, the others' within a second */
    ngx_http_twirt_metrics_redis();

    b = ngx_create_temp_buf(r->pool, NGX_HTTP_TWIRT_METRICS_TEXT);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_http_twirt_metrics_format(b->pos, b->end);

    if (b->last == b->end) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "twirt: the status text outgrew %d bytes",
                      NGX_HTTP_TWIRT_METRICS_TEXT);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;
    r->headers_out.content_type_lowcase = NULL;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;

    if (r->method == NGX_HTTP_HEAD) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/*
 * The sum over all slots; the Redis gauges count only for live workers.
 * No lock: a figure may be a frame behind, never torn on 64-bit platforms.
 */

static void
ngx_http_twirt_metrics_sum(ngx_http_twirt_metrics_slot_t *total,
    ngx_uint_t *workers)
{
    ngx_uint_t                      i, j, k;
    ngx_http_twirt_metrics_shm_t   *shm;
    ngx_http_twirt_metrics_slot_t  *s;

    ngx_memzero(total, sizeof(ngx_http_twirt_metrics_slot_t));
    *workers = 0;

    shm = ngx_http_twirt_metrics_shm;

    if (shm == NULL) {
        return;
    }

    for (j = NGX_HTTP_TWIRT_R_FIRST_COUNTER; j < NGX_HTTP_TWIRT_R_LAST; j++) {
        total->redis[j] = shm->retired[j];
    }

    for (i = 0; i < NGX_MAX_PROCESSES; i++) {
        s = ngx_http_twirt_metrics_slot_at(shm, i);

        for (j = 0; j < NGX_HTTP_TWIRT_M_LAST; j++) {
            total->counter[j] += s->counter[j];
        }

        for (j = 0; j < NGX_HTTP_TWIRT_ENDED_LAST; j++) {
            total->ended[j] += s->ended[j];
        }

        for (j = 0; j < NGX_HTTP_TWIRT_ERR_LAST; j++) {
            total->error[j] += s->error[j];
        }

        for (j = 0; j < NGX_HTTP_TWIRT_TRANSFER_LAST; j++) {
            total->transfer[j] += s->transfer[j];
        }

        for (j = 0; j < NGX_HTTP_TWIRT_H_LAST; j++) {
            for (k = 0; k < NGX_HTTP_TWIRT_METRICS_BUCKETS; k++) {
                total->hist[j].bucket[k] += s->hist[j].bucket[k];
            }

            total->hist[j].sum += s->hist[j].sum;
        }

        if (s->pid == 0) {
            continue;
        }

        (*workers)++;

        for (j = 0; j < NGX_HTTP_TWIRT_R_LAST; j++) {
            total->redis[j] += s->redis[j];
        }
    }
}


static u_char *
ngx_http_twirt_metrics_format(u_char *p, u_char *end)
{
    uint64_t                       *c;
    ngx_uint_t                      i, workers;
    ngx_http_twirt_metrics_slot_t   t;

    static const char  *sides[] = { "twilio", "upstream" };
    static const char  *dirs[] = { "in", "out" };

    ngx_http_twirt_metrics_sum(&t, &workers);
    c = t.counter;

    p = ngx_http_twirt_metrics_family(p, end, "twirt_workers", "gauge",
            "Worker processes counting into the zone.");
    p = ngx_slprintf(p, end, "twirt_workers %ui\n", workers);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_calls_started_total",
            "counter", "Twilio Media Streams upgrades accepted.");
    p = ngx_slprintf(p, end, "twirt_calls_started_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_CALLS_STARTED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_calls_active", "gauge",
            "Calls in progress.");
    p = ngx_slprintf(p, end, "twirt_calls_active %L\n",
                     (int64_t) c[NGX_HTTP_TWIRT_M_CALLS_ACTIVE]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_calls_ended_total",
            "counter", "Calls ended, by reason.");

    for (i = 0; i < NGX_HTTP_TWIRT_ENDED_LAST; i++) {
        p = ngx_slprintf(p, end,
                         "twirt_calls_ended_total{reason=\"%s\"} %uL\n",
                         ngx_http_twirt_ended_labels[i], t.ended[i]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_transfers_total",
            "counter", "Transfers to a human, by step and result.");

    for (i = 0; i < NGX_HTTP_TWIRT_TRANSFER_LAST; i++) {
        p = ngx_slprintf(p, end,
                         "twirt_transfers_total{result=\"%s\"} %uL\n",
                         ngx_http_twirt_transfer_labels[i], t.transfer[i]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_frames_total", "counter",
            "WebSocket frames, by side and direction.");

    for (i = 0; i < 4; i++) {
        p = ngx_slprintf(p, end,
                         "twirt_frames_total{side=\"%s\",direction=\"%s\"} "
                         "%uL\n", sides[i / 2], dirs[i % 2],
                         c[NGX_HTTP_TWIRT_M_TWILIO_FRAMES_IN
                           + (i / 2) * 4 + i % 2]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_bytes_total", "counter",
            "WebSocket bytes on the wire, by side and direction.");

    for (i = 0; i < 4; i++) {
        p = ngx_slprintf(p, end,
                         "twirt_bytes_total{side=\"%s\",direction=\"%s\"} "
                         "%uL\n", sides[i / 2], dirs[i % 2],
                         c[NGX_HTTP_TWIRT_M_TWILIO_BYTES_IN
                           + (i / 2) * 4 + i % 2]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_media_messages_total",
            "counter", "Audio messages forwarded: Twilio media in, "
            "Realtime audio deltas out.");
    p = ngx_slprintf(p, end,
                     "twirt_media_messages_total{direction=\"in\"} %uL\n"
                     "twirt_media_messages_total{direction=\"out\"} %uL\n",
                     c[NGX_HTTP_TWIRT_M_MEDIA_IN],
                     c[NGX_HTTP_TWIRT_M_MEDIA_OUT]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_barge_ins_total",
            "counter", "Caller speech that interrupted the assistant.");
    p = ngx_slprintf(p, end, "twirt_barge_ins_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_BARGE_INS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_truncates_total",
            "counter", "Assistant items truncated to what was played.");
    p = ngx_slprintf(p, end, "twirt_truncates_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_TRUNCATES]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_tokens_total",
            "counter", "Realtime API tokens used.");
    p = ngx_slprintf(p, end, "twirt_tokens_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_TOKENS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_cost_usd_total",
            "counter", "Estimated Realtime API cost in US dollars.");
    p = ngx_slprintf(p, end, "twirt_cost_usd_total ");
    p = ngx_http_twirt_metrics_decimal(p, end,
                                       c[NGX_HTTP_TWIRT_M_COST_MICRO_USD], 6);
    p = ngx_slprintf(p, end, "\n");

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_early_audio_dropped_total", "counter",
            "Caller audio dropped before the session was ready.");
    p = ngx_slprintf(p, end, "twirt_early_audio_dropped_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_EARLY_AUDIO_DROPPED]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_responses_incomplete_total", "counter",
            "Responses the model left incomplete (max_output_tokens...).");
    p = ngx_slprintf(p, end, "twirt_responses_incomplete_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_RESPONSES_INCOMPLETE]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_responses_failed_total",
            "counter", "Responses that failed.");
    p = ngx_slprintf(p, end, "twirt_responses_failed_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_RESPONSES_FAILED]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_responses_retried_total", "counter",
            "Failed responses asked for again, once each.");
    p = ngx_slprintf(p, end, "twirt_responses_retried_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_RESPONSES_RETRIED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_apologies_total",
            "counter", "Apologies said after a response failed twice.");
    p = ngx_slprintf(p, end, "twirt_apologies_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_APOLOGIES]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_silence_prompts_total",
            "counter", "Times the agent asked a silent caller again.");
    p = ngx_slprintf(p, end, "twirt_silence_prompts_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_SILENCE_PROMPTS]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_transcriptions_failed_total", "counter",
            "Caller transcriptions that failed.");
    p = ngx_slprintf(p, end, "twirt_transcriptions_failed_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_TRANSCRIPTIONS_FAILED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_tool_calls_total",
            "counter", "Tool calls of the model, by result.");

    for (i = 0; i < NGX_HTTP_TWIRT_TOOL_LAST; i++) {
        p = ngx_slprintf(p, end,
                         "twirt_tool_calls_total{result=\"%s\"} %uL\n",
                         ngx_http_twirt_tool_result_name(i),
                         c[NGX_HTTP_TWIRT_M_TOOL_OK + i]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_tool_fillers_total",
            "counter", "Fillers the agent said while a tool ran long.");
    p = ngx_slprintf(p, end, "twirt_tool_fillers_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_TOOL_FILLERS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_control_total",
            "counter", "Call control messages taken from Redis, by result.");
    p = ngx_slprintf(p, end,
                     "twirt_control_total{result=\"applied\"} %uL\n"
                     "twirt_control_total{result=\"unknown_call\"} %uL\n"
                     "twirt_control_total{result=\"invalid\"} %uL\n",
                     c[NGX_HTTP_TWIRT_M_CONTROL_APPLIED],
                     c[NGX_HTTP_TWIRT_M_CONTROL_UNKNOWN_CALL],
                     c[NGX_HTTP_TWIRT_M_CONTROL_INVALID]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_campaign_dials_total",
            "counter", "Campaigns' dials, by what Twilio's REST API "
            "answered.");

    for (i = 0; i <= NGX_HTTP_TWIRT_M_DIAL_LAST - NGX_HTTP_TWIRT_M_DIAL_OK;
         i++)
    {
        p = ngx_slprintf(p, end,
                         "twirt_campaign_dials_total{result=\"%s\"} %uL\n",
                         ngx_http_twirt_dial_results[i],
                         c[NGX_HTTP_TWIRT_M_DIAL_OK + i]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_board_clients",
            "gauge", "The call board's browsers on the feed.");
    p = ngx_slprintf(p, end, "twirt_board_clients %L\n",
                     (int64_t) c[NGX_HTTP_TWIRT_M_BOARD_CLIENTS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_board_slow_total",
            "counter", "Board browsers closed because they stopped reading.");
    p = ngx_slprintf(p, end, "twirt_board_slow_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_BOARD_SLOW]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_calls_node_lost_total", "counter",
            "Calls of another node that stopped answering, marked failed "
            "here (end reason node_lost).");
    p = ngx_slprintf(p, end, "twirt_calls_node_lost_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_NODE_LOST]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_upstream_pool_idle",
            "gauge", "Realtime connections open and idle in the workers' "
            "warm pools.");
    p = ngx_slprintf(p, end, "twirt_upstream_pool_idle %L\n",
                     (int64_t) c[NGX_HTTP_TWIRT_M_POOL_IDLE]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_upstream_pool_takes_total", "counter",
            "Calls of a pooled location: a warm connection taken (hit) or "
            "none ready (miss).");
    p = ngx_slprintf(p, end,
                     "twirt_upstream_pool_takes_total{result=\"hit\"} %uL\n"
                     "twirt_upstream_pool_takes_total{result=\"miss\"} "
                     "%uL\n",
                     c[NGX_HTTP_TWIRT_M_POOL_HITS],
                     c[NGX_HTTP_TWIRT_M_POOL_MISSES]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_upstream_pool_discarded_total", "counter",
            "Warm connections closed unused, by reason.");

    for (i = 0; i <= NGX_HTTP_TWIRT_M_POOL_DISCARDED_LAST
                     - NGX_HTTP_TWIRT_M_POOL_DISCARDED;
         i++)
    {
        p = ngx_slprintf(p, end,
                         "twirt_upstream_pool_discarded_total{reason=\"%s\"} "
                         "%uL\n", ngx_http_twirt_pool_discard_labels[i],
                         c[NGX_HTTP_TWIRT_M_POOL_DISCARDED + i]);
    }

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_greeting_cache_hits_total", "counter",
            "Calls whose greeting was played from twirt_greeting_cache.");
    p = ngx_slprintf(p, end, "twirt_greeting_cache_hits_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_GREETING_HITS]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_greeting_cache_misses_total", "counter",
            "Calls whose greeting was not cached: the model said it.");
    p = ngx_slprintf(p, end, "twirt_greeting_cache_misses_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_GREETING_MISSES]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_greeting_cache_stored_total", "counter",
            "Greetings the model said whole, kept in the cache.");
    p = ngx_slprintf(p, end, "twirt_greeting_cache_stored_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_GREETING_STORED]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_greeting_cache_evicted_total", "counter",
            "Cached greetings removed, least recently used first, to make "
            "room.");
    p = ngx_slprintf(p, end, "twirt_greeting_cache_evicted_total %uL\n",
                     c[NGX_HTTP_TWIRT_M_GREETING_EVICTED]);

    p = ngx_http_twirt_metrics_family(p, end,
            "twirt_session_rotations_total", "counter",
            "Realtime sessions of long calls replaced by the next one: "
            "between turns (ok), as the old one expired (forced), or a "
            "next one that could not be had (failed).");
    p = ngx_slprintf(p, end,
                     "twirt_session_rotations_total{result=\"ok\"} %uL\n"
                     "twirt_session_rotations_total{result=\"forced\"} "
                     "%uL\n"
                     "twirt_session_rotations_total{result=\"failed\"} "
                     "%uL\n",
                     c[NGX_HTTP_TWIRT_M_ROTATIONS],
                     c[NGX_HTTP_TWIRT_M_ROTATIONS_FORCED],
                     c[NGX_HTTP_TWIRT_M_ROTATIONS_FAILED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_errors_total", "counter",
            "Errors, by kind.");

    for (i = 0; i < NGX_HTTP_TWIRT_ERR_LAST; i++) {
        p = ngx_slprintf(p, end, "twirt_errors_total{kind=\"%s\"} %uL\n",
                         ngx_http_twirt_error_labels[i], t.error[i]);
    }

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_queued", "gauge",
            "Redis commands waiting or unanswered.");
    p = ngx_slprintf(p, end, "twirt_redis_queued %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_QUEUED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_connected", "gauge",
            "Workers whose Redis connection is up.");
    p = ngx_slprintf(p, end, "twirt_redis_connected %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_CONNECTED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_dropped_total",
            "counter", "Redis commands dropped: the queue was full.");
    p = ngx_slprintf(p, end, "twirt_redis_dropped_total %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_DROPPED]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_reconnects_total",
            "counter", "Redis connections back after a loss.");
    p = ngx_slprintf(p, end, "twirt_redis_reconnects_total %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_RECONNECTS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_errors_total",
            "counter", "Redis failed attempts, losses and error replies.");
    p = ngx_slprintf(p, end, "twirt_redis_errors_total %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_ERRORS]);

    p = ngx_http_twirt_metrics_family(p, end, "twirt_redis_sent_total",
            "counter", "Redis commands answered.");
    p = ngx_slprintf(p, end, "twirt_redis_sent_total %uL\n",
                     t.redis[NGX_HTTP_TWIRT_R_SENT]);

    for (i = 0; i < NGX_HTTP_TWIRT_H_LAST; i++) {
        p = ngx_http_twirt_metrics_histogram(p, end,
                                             &ngx_http_twirt_metrics_hists[i],
                                             &t.hist[i]);
    }

    return p;
}


static u_char *
ngx_http_twirt_metrics_family(u_char *p, u_char *end, const char *name,
    const char *type, const char *help)
{
    return ngx_slprintf(p, end, "# HELP %s %s\n# TYPE %s %s\n",
                        name, help, name, type);
}


static u_char *
ngx_http_twirt_metrics_histogram(u_char *p, u_char *end,
    ngx_http_twirt_metrics_hist_desc_t *d, ngx_http_twirt_metrics_hist_t *h)
{
    uint64_t    n;
    ngx_uint_t  i;

    p = ngx_http_twirt_metrics_family(p, end, d->name, "histogram", d->help);

    n = 0;

    for (i = 0; i < d->nbounds; i++) {
        n += h->bucket[i];

        p = ngx_slprintf(p, end, "%s_bucket{le=\"", d->name);
        p = ngx_http_twirt_metrics_decimal(p, end, d->bounds[i], d->digits);
        p = ngx_slprintf(p, end, "\"} %uL\n", n);
    }

    /* the count is the +Inf bucket: read once, the two agree */
    n += h->bucket[d->nbounds];

    p = ngx_slprintf(p, end, "%s_bucket{le=\"+Inf\"} %uL\n%s_sum ",
                     d->name, n, d->name);
    p = ngx_http_twirt_metrics_decimal(p, end, h->sum, d->digits);

    return ngx_slprintf(p, end, "\n%s_count %uL\n", d->name, n);
}


/* value / 10^digits without trailing zeros: 2500, 3 -> "2.5" */

static u_char *
ngx_http_twirt_metrics_decimal(u_char *p, u_char *end, uint64_t value,
    ngx_uint_t digits)
{
    u_char      frac[NGX_INT64_LEN];
    uint64_t    scale, rest;
    ngx_uint_t  i, len;

    scale = 1;

    for (i = 0; i < digits; i++) {
        scale *= 10;
    }

    p = ngx_slprintf(p, end, "%uL", value / scale);

    rest = value % scale;

    if (rest == 0) {
        return p;
    }

    len = digits;

    for (i = digits; i > 0; i--) {
        frac[i - 1] = (u_char) ('0' + rest % 10);
        rest /= 10;
    }

    while (frac[len - 1] == '0') {
        len--;
    }

    return ngx_slprintf(p, end, ".%*s", (size_t) len, frac);
}
