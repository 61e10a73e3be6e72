
/*
 * The warm pool of Realtime connections (see the header).  Each warm
 * connection has a memory pool of its own: the upstream client, its
 * WebSocket and the session.created kept for the call live there.  A
 * call that takes one becomes the owner of that memory (a cleanup of the
 * call's pool), so the WebSocket object goes on unchanged, its callbacks
 * and logs now the call's.
 *
 * While idle, the connection is read: pings are answered, the server's
 * close or EOF, or any message but one session.created, closes it.  It is
 * marked c->idle, so that a quitting worker (a reload) closes it at once;
 * every timer of the pool is cancelable.
 */


#include "ngx_http_twirt_upstream_pool.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_log.h"


/* the first retry after a failed connect, doubled up to the most */
#define NGX_HTTP_TWIRT_POOL_RETRY      500
#define NGX_HTTP_TWIRT_POOL_RETRY_MAX  30000


struct ngx_http_twirt_upstream_pool_s {
    ngx_http_twirt_loc_conf_t         *conf;
    ngx_http_core_loc_conf_t          *clcf;

    /* per worker, from init_process on */
    ngx_queue_t                        idle;        /* oldest first */
    ngx_queue_t                        connecting;
    ngx_uint_t                         nidle;
    ngx_uint_t                         nconnecting;
    ngx_uint_t                         failures;    /* in a row */
    ngx_event_t                        fill;        /* posted, or the retry
                                                       timer */
    unsigned                           running:1;
};


/* one warm connection, in its own memory pool */
typedef struct {
    ngx_queue_t                        queue;
    ngx_pool_t                        *pool;
    ngx_http_twirt_upstream_pool_t    *owner;
    ngx_log_t                          log;
    ngx_http_twirt_upstream_t          upstream;
    ngx_http_twirt_ws_t               *ws;         /* once upgraded */
    ngx_str_t                          created;    /* session.created */
    ngx_msec_t                         opened;     /* upgraded at */
    ngx_event_t                        expire;     /* max_age */
    ngx_http_twirt_pool_discard_e      bad;        /* why it must go */

    unsigned                           starting:1; /* in upstream_connect */
    unsigned                           failed:1;   /* ... and it failed */
    unsigned                           checking:1; /* read by a take */
    unsigned                           unusable:1; /* bad is set */
} ngx_http_twirt_pool_conn_t;


static void ngx_http_twirt_upstream_pool_fill(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_upstream_pool_connect(
    ngx_http_twirt_upstream_pool_t *pool);
static void ngx_http_twirt_upstream_pool_connected(
    ngx_http_twirt_upstream_t *u, ngx_int_t rc);
static void ngx_http_twirt_upstream_pool_retry(
    ngx_http_twirt_upstream_pool_t *pool);
static void ngx_http_twirt_upstream_pool_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static void ngx_http_twirt_upstream_pool_closed(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_upstream_pool_read(ngx_event_t *ev);
static void ngx_http_twirt_upstream_pool_write(ngx_event_t *ev);
static void ngx_http_twirt_upstream_pool_expire(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_upstream_pool_check(
    ngx_http_twirt_pool_conn_t *pc);
static void ngx_http_twirt_upstream_pool_discard(
    ngx_http_twirt_pool_conn_t *pc, ngx_http_twirt_pool_discard_e why);
static void ngx_http_twirt_upstream_pool_refill(
    ngx_http_twirt_upstream_pool_t *pool);
static void ngx_http_twirt_upstream_pool_free(void *data);


const char  *ngx_http_twirt_pool_discard_labels[] = {
    "age", "closed", "message"
};


static const char  *ngx_http_twirt_pool_discard_words[] = {
    "idle for max_age", "closed by the server", "a message while idle",
    "the worker quits"
};


ngx_int_t
ngx_http_twirt_upstream_pool_add(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf)
{
    ngx_http_twirt_main_conf_t       *tmcf;
    ngx_http_twirt_upstream_pool_t   *pool, **slot;

    tmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_twirt_module);

    pool = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_upstream_pool_t));
    if (pool == NULL) {
        return NGX_ERROR;
    }

    pool->conf = conf;
    pool->clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    slot = ngx_array_push(&tmcf->pools);
    if (slot == NULL) {
        return NGX_ERROR;
    }

    *slot = pool;
    conf->pool = pool;

    return NGX_OK;
}


ngx_int_t
ngx_http_twirt_upstream_pool_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_http_twirt_main_conf_t       *tmcf;
    ngx_http_twirt_upstream_pool_t   *pool, **pools;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    tmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_twirt_module);
    if (tmcf == NULL) {
        return NGX_OK;
    }

    pools = tmcf->pools.elts;

    for (i = 0; i < tmcf->pools.nelts; i++) {
        pool = pools[i];

        ngx_queue_init(&pool->idle);
        ngx_queue_init(&pool->connecting);

        pool->fill.handler = ngx_http_twirt_upstream_pool_fill;
        pool->fill.data = pool;
        pool->fill.log = pool->clcf->error_log;
        pool->fill.cancelable = 1;
        pool->running = 1;

        ngx_post_event(&pool->fill, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_http_twirt_upstream_pool_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                        i;
    ngx_queue_t                      *q;
    ngx_pool_t                       *mem;
    ngx_http_twirt_main_conf_t       *tmcf;
    ngx_http_twirt_pool_conn_t       *pc;
    ngx_http_twirt_upstream_pool_t   *pool, **pools;

    tmcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_http_twirt_module);
    if (tmcf == NULL) {
        return;
    }

    pools = tmcf->pools.elts;

    for (i = 0; i < tmcf->pools.nelts; i++) {
        pool = pools[i];

        if (!pool->running) {
            continue;
        }

        pool->running = 0;

        if (pool->fill.timer_set) {
            ngx_del_timer(&pool->fill);
        }

        if (pool->fill.posted) {
            ngx_delete_posted_event(&pool->fill);
        }

        while (!ngx_queue_empty(&pool->idle)) {
            q = ngx_queue_head(&pool->idle);
            pc = ngx_queue_data(q, ngx_http_twirt_pool_conn_t, queue);
            ngx_http_twirt_upstream_pool_discard(pc, NGX_HTTP_TWIRT_POOL_EXIT);
        }

        while (!ngx_queue_empty(&pool->connecting)) {
            q = ngx_queue_head(&pool->connecting);
            pc = ngx_queue_data(q, ngx_http_twirt_pool_conn_t, queue);

            ngx_queue_remove(q);
            pool->nconnecting--;

            ngx_http_twirt_upstream_cancel(&pc->upstream);

            mem = pc->pool;
            ngx_destroy_pool(mem);
        }
    }
}


/* opens connections until idle and connecting ones make the size */

static void
ngx_http_twirt_upstream_pool_fill(ngx_event_t *ev)
{
    ngx_http_twirt_upstream_pool_t  *pool = ev->data;

    if (!pool->running || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ev->timer_set) {
        /* posted while a retry waits: the retry fills */
        return;
    }

    while (pool->nidle + pool->nconnecting < pool->conf->pool_size) {
        if (ngx_http_twirt_upstream_pool_connect(pool) != NGX_OK) {
            ngx_http_twirt_upstream_pool_retry(pool);
            return;
        }
    }
}


static ngx_int_t
ngx_http_twirt_upstream_pool_connect(ngx_http_twirt_upstream_pool_t *pool)
{
    ngx_pool_t                  *mem;
    ngx_http_twirt_upstream_t   *u;
    ngx_http_twirt_pool_conn_t  *pc;

    mem = ngx_create_pool(2048, pool->clcf->error_log);
    if (mem == NULL) {
        return NGX_ERROR;
    }

    pc = ngx_pcalloc(mem, sizeof(ngx_http_twirt_pool_conn_t));
    if (pc == NULL) {
        ngx_destroy_pool(mem);
        return NGX_ERROR;
    }

    pc->pool = mem;
    pc->owner = pool;

    pc->log = *pool->clcf->error_log;
    pc->log.action = "connecting to the Realtime API for the warm pool";

    pc->expire.handler = ngx_http_twirt_upstream_pool_expire;
    pc->expire.data = pc;
    pc->expire.log = &pc->log;
    pc->expire.cancelable = 1;

    u = &pc->upstream;

    u->pool = mem;
    u->log = &pc->log;
    u->conf = pool->conf;
    u->resolver = pool->clcf->resolver;
    u->resolver_timeout = pool->clcf->resolver_timeout;
    u->cancelable = 1;
    u->data = pc;
    u->handler = ngx_http_twirt_upstream_pool_connected;
    u->on_message = ngx_http_twirt_upstream_pool_message;
    u->on_closed = ngx_http_twirt_upstream_pool_closed;

    ngx_queue_insert_tail(&pool->connecting, &pc->queue);
    pool->nconnecting++;

    /* a failure may be called back before this returns */
    pc->starting = 1;

    if (ngx_http_twirt_upstream_connect(u) != NGX_OK) {
        ngx_http_twirt_upstream_cancel(u);
        pc->failed = 1;
    }

    pc->starting = 0;

    if (pc->failed) {
        ngx_queue_remove(&pc->queue);
        pool->nconnecting--;
        ngx_destroy_pool(mem);
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_upstream_pool_connected(ngx_http_twirt_upstream_t *u,
    ngx_int_t rc)
{
    ngx_http_twirt_pool_conn_t *pc = u->data;

    ngx_connection_t                *c;
    ngx_http_twirt_upstream_pool_t  *pool;

    pool = pc->owner;

    if (rc != NGX_OK) {
        ngx_http_twirt_metrics_error(ngx_http_twirt_end_kind(u->end)->error);

        ngx_log_error(NGX_LOG_WARN, &pc->log, 0,
                      "twirt: the warm pool could not connect to the "
                      "Realtime API: %s", u->error);

        if (pc->starting) {
            pc->failed = 1;
            return;
        }

        ngx_queue_remove(&pc->queue);
        pool->nconnecting--;
        ngx_destroy_pool(pc->pool);

        ngx_http_twirt_upstream_pool_retry(pool);
        return;
    }

    ngx_queue_remove(&pc->queue);
    pool->nconnecting--;
    pool->failures = 0;

    ngx_http_twirt_metrics_observe(NGX_HTTP_TWIRT_H_UPSTREAM_CONNECT,
                                   ngx_current_msec - u->started);

    pc->ws = u->ws;
    pc->opened = ngx_current_msec;

    c = pc->ws->connection;
    c->log->action = "keeping a Realtime connection in the warm pool";

    ngx_queue_insert_tail(&pool->idle, &pc->queue);
    pool->nidle++;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_IDLE, 1);

    if (!pool->running || ngx_exiting || ngx_terminate || ngx_quit) {
        ngx_http_twirt_upstream_pool_discard(pc, NGX_HTTP_TWIRT_POOL_EXIT);
        return;
    }

    /* a quitting worker closes it at once (ngx_close_idle_connections) */
    c->idle = 1;
    c->read->handler = ngx_http_twirt_upstream_pool_read;
    c->write->handler = ngx_http_twirt_upstream_pool_write;

    ngx_add_timer(&pc->expire, pool->conf->pool_max_age);

    /* frames that came with the 101: session.created, usually */
    ngx_post_event(c->read, &ngx_posted_events);
}


static void
ngx_http_twirt_upstream_pool_retry(ngx_http_twirt_upstream_pool_t *pool)
{
    ngx_msec_t  delay;

    if (pool->fill.timer_set || !pool->running) {
        return;
    }

    delay = NGX_HTTP_TWIRT_POOL_RETRY << ngx_min(pool->failures, 6);
    delay = ngx_min(delay, NGX_HTTP_TWIRT_POOL_RETRY_MAX);
    pool->failures++;

    ngx_add_timer(&pool->fill, delay);
}


/* the only message a warm connection may get is its session.created */

static void
ngx_http_twirt_upstream_pool_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len)
{
    ngx_http_twirt_pool_conn_t *pc = ws->data;

    json_t                     *ev;
    ngx_str_t                   type;
    json_error_t                err;
    ngx_http_twirt_log_text_t   t;

    if (pc->unusable) {
        return;
    }

    ev = NULL;
    ngx_str_set(&type, "(no type)");

    if (opcode == NGX_HTTP_TWIRT_WS_TEXT) {
        ev = json_loadb((char *) data, len, 0, &err);

        if (json_is_string(json_object_get(ev, "type"))) {
            type.data = (u_char *) json_string_value(json_object_get(ev,
                                                                     "type"));
            type.len = ngx_strlen(type.data);
        }
    }

    if (pc->created.len == 0
        && type.len == sizeof("session.created") - 1
        && ngx_strncmp(type.data, "session.created", type.len) == 0)
    {
        pc->created.data = ngx_pnalloc(pc->pool, len);

        if (pc->created.data) {
            ngx_memcpy(pc->created.data, data, len);
            pc->created.len = len;
            json_decref(ev);
            return;
        }
    }

    ngx_log_error(NGX_LOG_INFO, &pc->log, 0,
                  "twirt: a warm Realtime connection got \"%V\" while idle",
                  ngx_http_twirt_log_str(&t, &type));

    json_decref(ev);

    pc->bad = NGX_HTTP_TWIRT_POOL_MESSAGE;
    pc->unusable = 1;

    /* discarded by the read handler: not while its frames are parsed */
    if (!ws->connection->read->posted) {
        ngx_post_event(ws->connection->read, &ngx_posted_events);
    }
}


static void
ngx_http_twirt_upstream_pool_closed(ngx_http_twirt_ws_t *ws)
{
    ngx_http_twirt_pool_conn_t *pc = ws->data;

    if (!pc->unusable) {
        pc->bad = NGX_HTTP_TWIRT_POOL_CLOSED;
        pc->unusable = 1;
    }

    if (pc->checking) {
        /* the take discards it */
        return;
    }

    ngx_http_twirt_upstream_pool_discard(pc, pc->bad);
}


static void
ngx_http_twirt_upstream_pool_read(ngx_event_t *ev)
{
    ngx_connection_t            *c;
    ngx_http_twirt_ws_t         *ws;
    ngx_http_twirt_pool_conn_t  *pc;

    c = ev->data;
    ws = c->data;
    pc = ws->data;

    if (c->close) {
        ngx_http_twirt_upstream_pool_discard(pc, NGX_HTTP_TWIRT_POOL_EXIT);
        return;
    }

    if (pc->unusable) {
        ngx_http_twirt_upstream_pool_discard(pc, pc->bad);
        return;
    }

    ngx_http_twirt_ws_read(ws);
}


static void
ngx_http_twirt_upstream_pool_write(ngx_event_t *ev)
{
    ngx_connection_t  *c = ev->data;

    ngx_http_twirt_ws_write(c->data);
}


static void
ngx_http_twirt_upstream_pool_expire(ngx_event_t *ev)
{
    ngx_http_twirt_upstream_pool_discard(ev->data, NGX_HTTP_TWIRT_POOL_AGE);
}


ngx_int_t
ngx_http_twirt_upstream_pool_take(ngx_http_twirt_upstream_t *u)
{
    ngx_msec_t                       age;
    ngx_queue_t                     *q;
    ngx_connection_t                *c;
    ngx_pool_cleanup_t              *cln;
    ngx_http_twirt_ws_t             *ws;
    ngx_http_twirt_pool_conn_t      *pc;
    ngx_http_twirt_upstream_pool_t  *pool;

    pool = u->conf->pool;

    if (pool == NULL || !pool->running) {
        return NGX_DECLINED;
    }

    /* made first: nothing can fail once a connection is taken */
    cln = ngx_pool_cleanup_add(u->pool, 0);
    if (cln == NULL) {
        return NGX_DECLINED;
    }

    while (!ngx_queue_empty(&pool->idle)) {
        q = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(q, ngx_http_twirt_pool_conn_t, queue);

        age = ngx_current_msec - pc->opened;

        if (age >= pool->conf->pool_max_age) {
            ngx_http_twirt_upstream_pool_discard(pc, NGX_HTTP_TWIRT_POOL_AGE);
            continue;
        }

        if (ngx_http_twirt_upstream_pool_check(pc) != NGX_OK) {
            ngx_http_twirt_upstream_pool_discard(pc, pc->bad);
            continue;
        }

        ngx_queue_remove(q);
        pool->nidle--;
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_IDLE, -1);
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_HITS, 1);

        if (pc->expire.timer_set) {
            ngx_del_timer(&pc->expire);
        }

        /* the call's from now: its memory, callbacks and logs */

        cln->handler = ngx_http_twirt_upstream_pool_free;
        cln->data = pc->pool;

        ws = pc->ws;
        c = ws->connection;

        ws->data = u->data;
        ws->on_message = u->on_message;
        ws->on_closed = u->on_closed;
        ws->close_timer.log = u->log;

        c->idle = 0;
        c->log = u->log;
        c->read->log = u->log;
        c->write->log = u->log;
        c->log->action = "talking to the Realtime API";
        ngx_http_twirt_upstream_handlers(c);

        u->ws = ws;
        u->created = pc->created;
        u->started = ngx_current_msec;
        u->age = age;
        u->pooled = 1;
        u->done = 1;

        ngx_log_error(NGX_LOG_INFO, u->log, 0,
                      "twirt: the Realtime connection came from the warm "
                      "pool, open for %M ms", age);

        ngx_http_twirt_upstream_pool_refill(pool);

        return NGX_OK;
    }

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_MISSES, 1);

    ngx_log_error(NGX_LOG_INFO, u->log, 0,
                  "twirt: no warm Realtime connection ready, connecting");

    ngx_http_twirt_upstream_pool_refill(pool);

    return NGX_DECLINED;
}


/*
 * Whatever came since the event loop last looked is read now: a close
 * or an EOF still in the socket is seen before a call gets the
 * connection.
 */

static ngx_int_t
ngx_http_twirt_upstream_pool_check(ngx_http_twirt_pool_conn_t *pc)
{
    u_char                byte;
    ssize_t               n;
    ngx_err_t             err;
    ngx_connection_t     *c;
    ngx_http_twirt_ws_t  *ws;

    ws = pc->ws;
    c = ws->connection;

    if (!pc->unusable) {
        n = recv(c->fd, &byte, 1, MSG_PEEK);
        err = ngx_socket_errno;

        if (n == 0 || (n == -1 && err != NGX_EAGAIN && err != NGX_EINTR)) {
            pc->bad = NGX_HTTP_TWIRT_POOL_CLOSED;
            pc->unusable = 1;

        } else if (n > 0 || c->read->ready) {
            pc->checking = 1;
            c->read->ready = 1;
            ngx_http_twirt_ws_read(ws);
            pc->checking = 0;
        }
    }

    if (ws->closed || ws->close_sent || ws->close_received) {
        if (!pc->unusable) {
            pc->bad = NGX_HTTP_TWIRT_POOL_CLOSED;
            pc->unusable = 1;
        }
    }

    return pc->unusable ? NGX_ERROR : NGX_OK;
}


/* an idle connection goes: closed (1001, no wait), its memory freed */

static void
ngx_http_twirt_upstream_pool_discard(ngx_http_twirt_pool_conn_t *pc,
    ngx_http_twirt_pool_discard_e why)
{
    ngx_pool_t                      *mem;
    ngx_http_twirt_upstream_pool_t  *pool;

    pool = pc->owner;

    ngx_queue_remove(&pc->queue);
    pool->nidle--;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_IDLE, -1);

    if (why != NGX_HTTP_TWIRT_POOL_EXIT) {
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_POOL_DISCARDED + why, 1);
    }

    ngx_log_error(NGX_LOG_INFO, &pc->log, 0,
                  "twirt: a warm Realtime connection closed unused after "
                  "%M ms: %s", ngx_current_msec - pc->opened,
                  ngx_http_twirt_pool_discard_words[why]);

    if (pc->expire.timer_set) {
        ngx_del_timer(&pc->expire);
    }

    ngx_http_twirt_ws_drop(pc->ws, NGX_HTTP_TWIRT_WS_CLOSE_GOING_AWAY);

    mem = pc->pool;
    ngx_destroy_pool(mem);

    if (why != NGX_HTTP_TWIRT_POOL_EXIT) {
        ngx_http_twirt_upstream_pool_refill(pool);
    }
}


/* in the background: after the current event, not on the call's path */

static void
ngx_http_twirt_upstream_pool_refill(ngx_http_twirt_upstream_pool_t *pool)
{
    if (pool->running && !pool->fill.posted && !pool->fill.timer_set) {
        ngx_post_event(&pool->fill, &ngx_posted_events);
    }
}


static void
ngx_http_twirt_upstream_pool_free(void *data)
{
    ngx_destroy_pool(data);
}
