
/*
 * twirt: the per-worker Redis connection.
 *
 * A second module in the twirt .so with its own directives.  Each worker
 * keeps one connection (ngx_http_twirt_redis_conn.c: nginx's connection,
 * TLS for rediss://, hiredis only to parse and format): commands are
 * copied into a bounded FIFO, go out when connected, wait while Redis is
 * away and are flushed in order when it is back.  Nothing here is on the
 * audio path: callers queue and go on, reads have a timeout.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include "ngx_http_twirt_connect.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_node.h"
#include "ngx_http_twirt_redis_conn.h"
#include "ngx_http_twirt_redis_test.h"


#define NGX_HTTP_TWIRT_REDIS_PORT          6379
#define NGX_HTTP_TWIRT_REDIS_BACKOFF_MIN   100
#define NGX_HTTP_TWIRT_REDIS_BACKOFF_MAX   10000
#define NGX_HTTP_TWIRT_REDIS_SENTINEL_BACKOFF_MAX  1000

/* a command whose connection died before the answer goes out again twice */
#define NGX_HTTP_TWIRT_REDIS_TRIES         3


typedef enum {
    NGX_HTTP_TWIRT_REDIS_IDLE = 0,
    NGX_HTTP_TWIRT_REDIS_RESOLVING,
    NGX_HTTP_TWIRT_REDIS_DISCOVERING,     /* asking a sentinel */
    NGX_HTTP_TWIRT_REDIS_CONNECTING,
    NGX_HTTP_TWIRT_REDIS_HANDSHAKE,
    NGX_HTTP_TWIRT_REDIS_READY,
    NGX_HTTP_TWIRT_REDIS_CLOSING          /* the failure is already logged */
} ngx_http_twirt_redis_state_e;


/* a sentinel's address, or the master's as the sentinels say */
typedef struct {
    u_char                             ip[NGX_SOCKADDR_STRLEN + 1];
    int                                port;
    ngx_sockaddr_t                     sockaddr;
    socklen_t                          socklen;
} ngx_http_twirt_redis_addr_t;


/* why an attempt failed; also the handshake steps */
typedef enum {
    NGX_HTTP_TWIRT_REDIS_NONE = 0,
    NGX_HTTP_TWIRT_REDIS_CONNECT,
    NGX_HTTP_TWIRT_REDIS_TLS,
    NGX_HTTP_TWIRT_REDIS_AUTH,
    NGX_HTTP_TWIRT_REDIS_SELECT,
    NGX_HTTP_TWIRT_REDIS_ROLE,
    NGX_HTTP_TWIRT_REDIS_PING,
    NGX_HTTP_TWIRT_REDIS_DISCOVER
} ngx_http_twirt_redis_step_e;


typedef struct {
    ngx_str_t                          name;       /* as logged */
    ngx_str_t                          host;       /* a name to resolve */
    ngx_http_twirt_redis_addr_t        addr;       /* an IP or a path */
    int                                port;
    ngx_str_t                          user;
    ngx_str_t                          password;
    ngx_int_t                          db;
    ngx_str_t                          prefix;
    time_t                             ttl;
    ngx_int_t                          queue;
    ngx_msec_t                         timeout;
    ngx_str_t                          node;
    ngx_msec_t                         node_timeout;
    ngx_str_t                          master_name; /* Sentinel: the
                                                       monitored master */
    ngx_array_t                       *sentinels;  /* of
                                                 ngx_http_twirt_redis_addr_t */
    ngx_http_core_loc_conf_t          *clcf;       /* the http{} resolver */
    ngx_str_t                          file;
    ngx_uint_t                         line;

    ngx_flag_t                         tls_verify;
    ngx_str_t                          tls_trusted;
    ngx_str_t                          tls_name;
    ngx_str_t                          tls_cert;
    ngx_str_t                          tls_key;
    ngx_http_twirt_redis_tls_t         tls;

    unsigned                           unix_socket:1;
    unsigned                           ssl:1;      /* rediss:// */
} ngx_http_twirt_redis_main_conf_t;


typedef struct {
    ngx_queue_t                        queue;
    ngx_uint_t                         tries;
    int                                argc;
    const char                       **argv;
    size_t                            *argvlen;
} ngx_http_twirt_redis_cmd_t;


struct ngx_http_twirt_redis_read_s {
    ngx_http_twirt_redis_hash_pt       handler;    /* NULL: nobody waits */
    void                              *data;
    ngx_event_t                        timer;
};


typedef struct {
    ngx_http_twirt_redis_main_conf_t  *conf;
    ngx_log_t                         *log;
    ngx_http_twirt_redis_conn_t       *conn;
    ngx_http_twirt_redis_conn_t       *query;      /* a sentinel asked
                                                      where the master is */
    ngx_http_twirt_redis_conn_t       *watch;      /* a sentinel told to
                                                      say +switch-master */
    ngx_sockaddr_t                     resolved;   /* the host's address */
    socklen_t                          resolved_len;
    ngx_uint_t                         sentinel;   /* the next one asked */
    ngx_http_twirt_redis_addr_t        master;     /* as last told */
    ngx_event_t                        watch_timer;
    ngx_resolver_ctx_t                *resolving;
    ngx_http_twirt_redis_state_e       state;
    ngx_event_t                        connect_timer;
    ngx_event_t                        retry_timer;
    ngx_event_t                        drain_timer; /* an exiting worker
                                                       waits for its
                                                       commands' answers */
    ngx_msec_t                         backoff;
    ngx_msec_t                         ready_since;
    ngx_uint_t                         attempts;   /* in this series */
    ngx_http_twirt_redis_step_e        logged;     /* last error line's */
    ngx_queue_t                        pending;    /* not sent yet */
    ngx_queue_t                        inflight;   /* sent, not answered */
    ngx_uint_t                         npending;
    ngx_uint_t                         ninflight;
    ngx_uint_t                         nreads;
    time_t                             error_logged;
    ngx_http_twirt_redis_stats_t       stats;
    unsigned                           was_ready:1;
    unsigned                           full:1;
    unsigned                           exiting:1;
} ngx_http_twirt_redis_worker_t;


static void ngx_http_twirt_redis_connect(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_resolved(ngx_resolver_ctx_t *ctx);
static void ngx_http_twirt_redis_open(ngx_http_twirt_redis_worker_t *rw,
    struct sockaddr *sockaddr, socklen_t socklen);
static void ngx_http_twirt_redis_discover(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_discovered(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata);
static void ngx_http_twirt_redis_query_closed(ngx_http_twirt_redis_conn_t *conn,
    void *data);
static void ngx_http_twirt_redis_watch(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_watch_handler(ngx_event_t *ev);
static void ngx_http_twirt_redis_switched(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata);
static void ngx_http_twirt_redis_watch_closed(ngx_http_twirt_redis_conn_t *conn,
    void *data);
static void ngx_http_twirt_redis_connected(ngx_http_twirt_redis_conn_t *conn,
    void *data);
static void ngx_http_twirt_redis_step(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_step_e step, int argc, const char **argv,
    const size_t *argvlen);
static void ngx_http_twirt_redis_handshake(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata);
static void ngx_http_twirt_redis_ready(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_failed(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_step_e step, const char *fmt, ...);
static void ngx_http_twirt_redis_retry(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_requeue(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_connect_timeout(ngx_event_t *ev);
static void ngx_http_twirt_redis_retry_handler(ngx_event_t *ev);
static void ngx_http_twirt_redis_closed(ngx_http_twirt_redis_conn_t *conn,
    void *data);

static void ngx_http_twirt_redis_drain(ngx_http_twirt_redis_worker_t *rw);
static void ngx_http_twirt_redis_drain_timeout(ngx_event_t *ev);
static void ngx_http_twirt_redis_drained(ngx_http_twirt_redis_worker_t *rw);
static ngx_int_t ngx_http_twirt_redis_send(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_cmd_t *cmd);
static void ngx_http_twirt_redis_reply(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata);
static void ngx_http_twirt_redis_hash_reply(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata);
static void ngx_http_twirt_redis_read_timeout(ngx_event_t *ev);
static void ngx_http_twirt_redis_reply_error(
    ngx_http_twirt_redis_worker_t *rw, const char *command, size_t len,
    redisReply *reply);
static void ngx_http_twirt_redis_args_fail(
    ngx_http_twirt_redis_args_t *args);
static u_char *ngx_http_twirt_redis_alloc(ngx_pool_t *pool, size_t size);
static ngx_uint_t ngx_http_twirt_redis_held(
    ngx_http_twirt_redis_worker_t *rw);
static ngx_int_t ngx_http_twirt_redis_allowed(ngx_str_t *name);
static ngx_int_t ngx_http_twirt_redis_sockaddr(u_char *ip, size_t len,
    int port, ngx_http_twirt_redis_addr_t *a);

static void *ngx_http_twirt_redis_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_redis_init_main_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_twirt_redis_sentinels(ngx_conf_t *cf,
    ngx_http_twirt_redis_main_conf_t *rmcf, ngx_uint_t *next);
static char *ngx_http_twirt_redis_ssl_init(ngx_conf_t *cf,
    ngx_http_twirt_redis_main_conf_t *rmcf);
static char *ngx_http_twirt_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_twirt_redis_init_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_redis_exit_process(ngx_cycle_t *cycle);


static ngx_http_twirt_redis_worker_t  ngx_http_twirt_redis_worker;

static ngx_str_t  ngx_http_twirt_redis_default_prefix = ngx_string("twirt:");
static ngx_str_t  ngx_http_twirt_redis_default_trusted =
    ngx_string("/etc/ssl/certs/ca-certificates.crt");


/* commands that would change the shared connection's state or block it */
static ngx_str_t  ngx_http_twirt_redis_refused[] = {
    ngx_string("AUTH"),
    ngx_string("HELLO"),
    ngx_string("SELECT"),
    ngx_string("QUIT"),
    ngx_string("RESET"),
    ngx_string("MONITOR"),
    ngx_string("SUBSCRIBE"),
    ngx_string("PSUBSCRIBE"),
    ngx_string("SSUBSCRIBE"),
    ngx_string("UNSUBSCRIBE"),
    ngx_string("PUNSUBSCRIBE"),
    ngx_string("SUNSUBSCRIBE"),
    ngx_string("MULTI"),
    ngx_string("EXEC"),
    ngx_string("DISCARD"),
    ngx_string("WATCH"),
    ngx_string("UNWATCH"),
    ngx_string("BLPOP"),
    ngx_string("BRPOP"),
    ngx_string("BRPOPLPUSH"),
    ngx_string("BLMOVE"),
    ngx_string("BLMPOP"),
    ngx_string("BZPOPMIN"),
    ngx_string("BZPOPMAX"),
    ngx_string("BZMPOP"),
    ngx_string("WAIT"),
    ngx_null_string
};


static ngx_conf_num_bounds_t  ngx_http_twirt_redis_queue_bounds = {
    ngx_conf_check_num_bounds, 1, -1
};


static ngx_command_t  ngx_http_twirt_redis_commands[] = {

    { ngx_string("twirt_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_twirt_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, prefix),
      NULL },

    { ngx_string("twirt_redis_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, ttl),
      NULL },

    { ngx_string("twirt_redis_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, queue),
      &ngx_http_twirt_redis_queue_bounds },

    { ngx_string("twirt_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, timeout),
      NULL },

    { ngx_string("twirt_node"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, node),
      NULL },

    { ngx_string("twirt_node_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, node_timeout),
      NULL },

    { ngx_string("twirt_redis_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, tls_verify),
      NULL },

    { ngx_string("twirt_redis_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, tls_trusted),
      NULL },

    { ngx_string("twirt_redis_ssl_server_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, tls_name),
      NULL },

    { ngx_string("twirt_redis_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, tls_cert),
      NULL },

    { ngx_string("twirt_redis_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_redis_main_conf_t, tls_key),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_redis_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_twirt_redis_create_main_conf, /* create main configuration */
    ngx_http_twirt_redis_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_redis_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_redis_module_ctx,      /* module context */
    ngx_http_twirt_redis_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_twirt_redis_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_twirt_redis_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* the public API */


ngx_int_t
ngx_http_twirt_redis_command(ngx_uint_t argc, ngx_str_t *argv)
{
    u_char                         *p;
    size_t                          size;
    ngx_uint_t                      i;
    ngx_http_twirt_redis_cmd_t     *cmd;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (rw->conf == NULL || rw->conf->name.len == 0 || rw->exiting) {
        return NGX_DECLINED;
    }

    if (argc == 0 || argc > INT_MAX || argv[0].len == 0) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "twirt: redis command without a name");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_redis_allowed(&argv[0]) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "twirt: redis command \"%V\" is not allowed on "
                      "the shared connection", &argv[0]);
        return NGX_ERROR;
    }

    if (ngx_http_twirt_redis_held(rw) >= (ngx_uint_t) rw->conf->queue) {
        rw->stats.dropped++;

        if (!rw->full) {
            rw->full = 1;
            ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                          "twirt: redis queue full (%i commands), "
                          "dropping events", rw->conf->queue);
        }

        return NGX_BUSY;
    }

    /* one block: the command, the lengths, the pointers, the bytes */

    size = sizeof(ngx_http_twirt_redis_cmd_t)
           + argc * (sizeof(size_t) + sizeof(char *));

    for (i = 0; i < argc; i++) {
        size += argv[i].len;
    }

    cmd = ngx_alloc(size, rw->log);
    if (cmd == NULL) {
        rw->stats.unbuilt++;
        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "twirt: redis command \"%V\" not sent: no memory "
                      "for its copy", &argv[0]);
        return NGX_ERROR;
    }

    cmd->tries = 0;
    cmd->argc = (int) argc;
    cmd->argvlen = (size_t *) &cmd[1];
    cmd->argv = (const char **) &cmd->argvlen[argc];

    p = (u_char *) &cmd->argv[argc];

    for (i = 0; i < argc; i++) {
        cmd->argv[i] = (const char *) p;
        cmd->argvlen[i] = argv[i].len;
        p = ngx_cpymem(p, argv[i].data, argv[i].len);
    }

    ngx_http_twirt_redis_drain(rw);

    if (rw->state == NGX_HTTP_TWIRT_REDIS_READY
        && ngx_queue_empty(&rw->pending)
        && ngx_http_twirt_redis_send(rw, cmd) == NGX_OK)
    {
        return NGX_OK;
    }

    ngx_queue_insert_tail(&rw->pending, &cmd->queue);
    rw->npending++;

    return NGX_OK;
}


/*
 * A worker that is shutting down (a reload, a stop) exits once nothing
 * holds a timer: the last commands of its last calls (the end of a
 * record) would go with it.  While they are unanswered a timer holds it,
 * twirt_redis_timeout at most.
 */

static void
ngx_http_twirt_redis_drain(ngx_http_twirt_redis_worker_t *rw)
{
    if (!ngx_exiting || rw->drain_timer.timer_set) {
        return;
    }

    rw->drain_timer.handler = ngx_http_twirt_redis_drain_timeout;
    rw->drain_timer.data = rw;
    rw->drain_timer.log = rw->log;

    ngx_add_timer(&rw->drain_timer, rw->conf->timeout);
}


static void
ngx_http_twirt_redis_drain_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_redis_worker_t *rw = ev->data;

    ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                  "twirt: redis \"%V\" did not answer %ui commands within "
                  "%M ms of the worker's shutdown",
                  &rw->conf->name, rw->ninflight + rw->npending,
                  rw->conf->timeout);
}


static void
ngx_http_twirt_redis_drained(ngx_http_twirt_redis_worker_t *rw)
{
    if (rw->drain_timer.timer_set && rw->ninflight + rw->npending == 0) {
        ngx_del_timer(&rw->drain_timer);
    }
}


ngx_int_t
ngx_http_twirt_redis_hgetall(ngx_str_t *key, ngx_msec_t timeout,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle)
{
    ngx_str_t  argv[2];

    ngx_str_set(&argv[0], "HGETALL");
    argv[1] = *key;

    return ngx_http_twirt_redis_read(2, argv, timeout, handler, data, handle);
}


ngx_int_t
ngx_http_twirt_redis_read(ngx_uint_t argc, ngx_str_t *argv,
    ngx_msec_t timeout, ngx_http_twirt_redis_hash_pt handler, void *data,
    void **handle)
{
    ngx_uint_t                      i;
    const char                     *av[NGX_HTTP_TWIRT_REDIS_ARGS];
    size_t                          avlen[NGX_HTTP_TWIRT_REDIS_ARGS];
    ngx_http_twirt_redis_read_t    *rd;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (rw->conf == NULL || rw->conf->name.len == 0
        || rw->state != NGX_HTTP_TWIRT_REDIS_READY
        || rw->nreads >= (ngx_uint_t) rw->conf->queue)
    {
        return NGX_DECLINED;
    }

    if (argc == 0 || argc > NGX_HTTP_TWIRT_REDIS_ARGS) {
        return NGX_ERROR;
    }

    rd = ngx_calloc(sizeof(ngx_http_twirt_redis_read_t), rw->log);
    if (rd == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < argc; i++) {
        av[i] = (const char *) argv[i].data;
        avlen[i] = argv[i].len;
    }

    if (ngx_http_twirt_redis_conn_command(rw->conn, (int) argc, av, avlen,
                                          ngx_http_twirt_redis_hash_reply, rd)
        != NGX_OK)
    {
        ngx_free(rd);
        return NGX_DECLINED;
    }

    rw->nreads++;

    rd->handler = handler;
    rd->data = data;
    rd->timer.handler = ngx_http_twirt_redis_read_timeout;
    rd->timer.data = rd;
    rd->timer.log = rw->log;
    rd->timer.cancelable = 1;

    ngx_add_timer(&rd->timer, timeout ? timeout : rw->conf->timeout);

    *handle = rd;

    return NGX_OK;
}


void
ngx_http_twirt_redis_cancel(void *handle)
{
    ngx_http_twirt_redis_read_t  *rd;

    rd = handle;

    /*
     * The worker exits: the connection is gone and every read was freed
     * with it (modules after this one cancel theirs from their own exit)
     */

    if (rd == NULL || ngx_http_twirt_redis_worker.exiting) {
        return;
    }

    /* the reply still comes, or the connection's end: then rd is freed */

    rd->handler = NULL;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }
}


time_t
ngx_http_twirt_redis_ttl(void)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_twirt_redis_worker.conf;

    return rmcf ? rmcf->ttl : 86400;
}


ngx_str_t *
ngx_http_twirt_redis_node(void)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_twirt_redis_worker.conf;

    return rmcf ? &rmcf->node : (ngx_str_t *) &ngx_cycle->hostname;
}


ngx_msec_t
ngx_http_twirt_redis_node_timeout(void)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_twirt_redis_worker.conf;

    return rmcf ? rmcf->node_timeout : 15000;
}


ngx_http_twirt_redis_stats_t *
ngx_http_twirt_redis_stats(void)
{
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    rw->stats.queued = ngx_http_twirt_redis_held(rw);
    rw->stats.connected = (rw->state == NGX_HTTP_TWIRT_REDIS_READY);

    return &rw->stats;
}


ngx_uint_t
ngx_http_twirt_redis_configured(void)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_twirt_redis_worker.conf;

    return rmcf != NULL && rmcf->name.len != 0;
}


/* building commands and keys */


void
ngx_http_twirt_redis_args_init(ngx_http_twirt_redis_args_t *args,
    ngx_pool_t *pool, ngx_log_t *log, const char *name)
{
    args->argc = 0;
    args->failed = 0;
    args->pool = pool;
    args->log = log;

    ngx_http_twirt_redis_args_cstr(args, name);
}


void
ngx_http_twirt_redis_args_add(ngx_http_twirt_redis_args_t *args,
    u_char *data, size_t len)
{
    if (args->failed) {
        return;
    }

    if (args->argc == NGX_HTTP_TWIRT_REDIS_ARGS) {
        ngx_http_twirt_redis_args_fail(args);
        return;
    }

    args->argv[args->argc].data = data;
    args->argv[args->argc].len = len;
    args->argc++;
}


void
ngx_http_twirt_redis_args_cstr(ngx_http_twirt_redis_args_t *args,
    const char *s)
{
    ngx_http_twirt_redis_args_add(args, (u_char *) s, ngx_strlen(s));
}


void
ngx_http_twirt_redis_args_str(ngx_http_twirt_redis_args_t *args,
    ngx_str_t *s)
{
    ngx_http_twirt_redis_args_add(args, s->data, s->len);
}


void
ngx_http_twirt_redis_args_num(ngx_http_twirt_redis_args_t *args,
    const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   vargs;

    p = ngx_http_twirt_redis_alloc(args->pool, NGX_INT64_LEN + 16);
    if (p == NULL) {
        ngx_http_twirt_redis_args_fail(args);
        return;
    }

    va_start(vargs, fmt);
    last = ngx_vslprintf(p, p + NGX_INT64_LEN + 16, fmt, vargs);
    va_end(vargs);

    ngx_http_twirt_redis_args_add(args, p, last - p);
}


/* ISO 8601 UTC with milliseconds */

void
ngx_http_twirt_redis_args_now(ngx_http_twirt_redis_args_t *args)
{
    u_char      *p, *last;
    ngx_tm_t     tm;
    ngx_time_t  *tp;

    p = ngx_http_twirt_redis_alloc(args->pool,
                                   sizeof("2026-11-21T00:00:00.000Z"));
    if (p == NULL) {
        ngx_http_twirt_redis_args_fail(args);
        return;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    last = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);

    ngx_http_twirt_redis_args_add(args, p, last - p);
}


void
ngx_http_twirt_redis_args_key(ngx_http_twirt_redis_args_t *args,
    const char *kind, ngx_str_t *id, const char *suffix)
{
    ngx_str_t  key;

    if (ngx_http_twirt_redis_key(args->pool, kind, id, suffix, &key)
        != NGX_OK)
    {
        ngx_http_twirt_redis_args_fail(args);
        return;
    }

    ngx_http_twirt_redis_args_str(args, &key);
}


/* the argument in the next slot is lost: so is the command */

static void
ngx_http_twirt_redis_args_fail(ngx_http_twirt_redis_args_t *args)
{
    if (args->failed == 0) {
        args->failed = args->argc + 1;
    }
}


ngx_int_t
ngx_http_twirt_redis_args_send(ngx_http_twirt_redis_args_t *args)
{
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (args->failed == 0) {
        return ngx_http_twirt_redis_command(args->argc, args->argv);
    }

    if (!ngx_http_twirt_redis_configured() || rw->exiting) {
        return NGX_DECLINED;
    }

    rw->stats.unbuilt++;

    ngx_log_error(NGX_LOG_ERR, args->log, 0,
                  "twirt: redis command \"%V\" not sent: its argument %ui "
                  "could not be built", &args->argv[0], args->failed);

    return NGX_ERROR;
}


ngx_int_t
ngx_http_twirt_redis_key(ngx_pool_t *pool, const char *kind, ngx_str_t *id,
    const char *suffix, ngx_str_t *key)
{
    u_char                            *p;
    size_t                             kind_len, suffix_len;
    ngx_str_t                         *prefix;
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_http_twirt_redis_worker.conf;
    prefix = rmcf ? &rmcf->prefix : &ngx_http_twirt_redis_default_prefix;

    kind_len = ngx_strlen(kind);
    suffix_len = suffix ? ngx_strlen(suffix) : 0;

    key->len = prefix->len + kind_len + suffix_len;

    if (id) {
        key->len += sizeof(":") - 1 + id->len;
    }

    key->data = ngx_http_twirt_redis_alloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, kind, kind_len);

    if (id) {
        *p++ = ':';
        p = ngx_cpymem(p, id->data, id->len);
    }

    ngx_memcpy(p, suffix, suffix_len);

    return NGX_OK;
}


/* the test build can make the builders' allocations fail, one by one */

static u_char *
ngx_http_twirt_redis_alloc(ngx_pool_t *pool, size_t size)
{
#if (NGX_HTTP_TWIRT_TEST)
    if (ngx_http_twirt_test_fail_alloc()) {
        return NULL;
    }
#endif

    return ngx_pnalloc(pool, size);
}


/* the connection: resolve, connect, handshake, ready; or fail and retry */


static void
ngx_http_twirt_redis_connect(ngx_http_twirt_redis_worker_t *rw)
{
    ngx_resolver_t                    *resolver;
    ngx_resolver_ctx_t                *ctx;
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = rw->conf;

    rw->attempts++;

    if (rmcf->master_name.len) {
        ngx_http_twirt_redis_discover(rw);
        return;
    }

    if (rmcf->host.len == 0) {
        ngx_http_twirt_redis_open(rw, &rmcf->addr.sockaddr.sockaddr,
                                  rmcf->addr.socklen);
        return;
    }

    resolver = rmcf->clcf->resolver;

    ctx = ngx_resolve_start(resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    "could not start resolving \"%V\"",
                                    &rmcf->host);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    ctx->name = rmcf->host;
    ctx->handler = ngx_http_twirt_redis_resolved;
    ctx->data = rw;
    ctx->timeout = rmcf->clcf->resolver_timeout;
    ctx->cancelable = 1;

    if (ctx->timeout == NGX_CONF_UNSET_MSEC) {
        ctx->timeout = 30000;
    }

    rw->state = NGX_HTTP_TWIRT_REDIS_RESOLVING;
    rw->resolving = ctx;

    /* the handler may run from inside, with an answer from the cache */

    if (ngx_resolve_name(ctx) != NGX_OK) {
        rw->resolving = NULL;
        rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;

        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    "could not resolve \"%V\"", &rmcf->host);
        ngx_http_twirt_redis_retry(rw);
    }
}


static void
ngx_http_twirt_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    u_char                          text[NGX_SOCKADDR_STRLEN + 1];
    size_t                          len;
    ngx_resolver_addr_t            *addr;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = ctx->data;

    rw->resolving = NULL;
    rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;

    if (ctx->state || ctx->naddrs == 0) {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    "\"%V\" could not be resolved (%i: %s)",
                                    &ctx->name, ctx->state,
                                    ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    /* a new attempt of a series takes the next address */

    addr = &ctx->addrs[(rw->attempts - 1) % ctx->naddrs];

    len = ngx_sock_ntop(addr->sockaddr, addr->socklen, text,
                        NGX_SOCKADDR_STRLEN, 0);
    text[len] = '\0';

    ngx_memcpy(&rw->resolved, addr->sockaddr, addr->socklen);
    rw->resolved_len = addr->socklen;
    ngx_inet_set_port(&rw->resolved.sockaddr, (in_port_t) rw->conf->port);

    ngx_resolve_name_done(ctx);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                   "twirt: redis \"%V\" resolved to %s",
                   &rw->conf->name, text);

    ngx_http_twirt_redis_open(rw, &rw->resolved.sockaddr, rw->resolved_len);
}


/*
 * Sentinel: each attempt asks the next sentinel where the master is, on
 * a connection of its own that is closed once it answered; then the
 * master is connected to as any address is, and asked its ROLE.
 */

static void
ngx_http_twirt_redis_discover(ngx_http_twirt_redis_worker_t *rw)
{
    size_t                        argvlen[3];
    const char                   *argv[3];
    ngx_http_twirt_redis_conn_t  *q;
    ngx_http_twirt_redis_addr_t  *a;

    a = rw->conf->sentinels->elts;
    a = &a[rw->sentinel++ % rw->conf->sentinels->nelts];

    q = ngx_http_twirt_redis_conn_create(rw->log);

    if (q == NULL) {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_DISCOVER,
                                    "sentinel %s:%d: connect failed: "
                                    "out of memory", a->ip, a->port);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    q->closed = ngx_http_twirt_redis_query_closed;
    q->data = rw;

    argv[0] = "SENTINEL";
    argvlen[0] = sizeof("SENTINEL") - 1;
    argv[1] = "get-master-addr-by-name";
    argvlen[1] = sizeof("get-master-addr-by-name") - 1;
    argv[2] = (const char *) rw->conf->master_name.data;
    argvlen[2] = rw->conf->master_name.len;

    if (ngx_http_twirt_redis_conn_command(q, 3, argv, argvlen,
                                          ngx_http_twirt_redis_discovered, a)
        != NGX_OK
        || ngx_http_twirt_redis_conn_connect(q, &a->sockaddr.sockaddr,
                                             a->socklen, &rw->conf->name,
                                             NULL)
           != NGX_OK)
    {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_DISCOVER,
                                    "sentinel %s:%d: connect failed: %s",
                                    a->ip, a->port,
                                    q->err ? (char *) q->errstr
                                           : "out of memory");
        q->closed = NULL;
        ngx_http_twirt_redis_conn_close(q);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    rw->query = q;
    rw->state = NGX_HTTP_TWIRT_REDIS_DISCOVERING;

    ngx_add_timer(&rw->connect_timer, rw->conf->timeout);
}


static void
ngx_http_twirt_redis_discovered(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata)
{
    ngx_http_twirt_redis_addr_t  *a = privdata;

    ngx_int_t                       port;
    redisReply                     *ip, *pt;
    ngx_http_twirt_redis_addr_t     m;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (reply == NULL || conn != rw->query) {
        /* the connection ends: the closed handler says why */
        return;
    }

    /* closed once this handler returns; the reply stays valid till then */

    rw->query = NULL;
    rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;
    ngx_http_twirt_redis_conn_close(conn);

    if (rw->connect_timer.timer_set) {
        ngx_del_timer(&rw->connect_timer);
    }

    ip = NULL;
    pt = NULL;
    port = NGX_ERROR;

    if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2) {
        ip = reply->element[0];
        pt = reply->element[1];

        if (ip->type == REDIS_REPLY_STRING && pt->type == REDIS_REPLY_STRING
            && ip->len > 0 && ip->len < NGX_SOCKADDR_STRLEN)
        {
            port = ngx_atoi((u_char *) pt->str, pt->len);
        }
    }

    if (port < 1 || port > 65535
        || ngx_http_twirt_redis_sockaddr((u_char *) ip->str, ip->len,
                                         (int) port, &m)
           != NGX_OK)
    {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_DISCOVER,
                                    "sentinel %s:%d does not know the master "
                                    "\"%V\"%s%*s", a->ip, a->port,
                                    &rw->conf->master_name,
                                    reply->type == REDIS_REPLY_ERROR
                                    ? ": " : "",
                                    reply->type == REDIS_REPLY_ERROR
                                    ? (size_t) reply->len : 0,
                                    reply->type == REDIS_REPLY_ERROR
                                    ? reply->str : "");
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    if (ngx_strcmp(rw->master.ip, m.ip) != 0 || rw->master.port != m.port) {
        ngx_log_error(NGX_LOG_INFO, rw->log, 0,
                      "twirt: redis \"%V\": sentinel %s:%d says the master "
                      "is %s:%d", &rw->conf->name, a->ip, a->port,
                      m.ip, m.port);
    }

    rw->master = m;

    ngx_http_twirt_redis_open(rw, &rw->master.sockaddr.sockaddr,
                              rw->master.socklen);
}


/* the sentinel's connection ended before it answered */

static void
ngx_http_twirt_redis_query_closed(ngx_http_twirt_redis_conn_t *conn, void *data)
{
    ngx_http_twirt_redis_worker_t  *rw = data;

    if (conn != rw->query) {
        return;
    }

    rw->query = NULL;
    rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;

    if (rw->connect_timer.timer_set) {
        ngx_del_timer(&rw->connect_timer);
    }

    if (rw->exiting) {
        return;
    }

    ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_DISCOVER,
                                "sentinel: %s",
                                conn->err ? (char *) conn->errstr : "closed");
    ngx_http_twirt_redis_retry(rw);
}


/*
 * Once connected to the master, one sentinel is told to say when the
 * sentinels switch it (SUBSCRIBE +switch-master): the connection to the
 * old master is dropped at once, its commands go out again to the new
 * one.  A master that dies is also noticed without it (the connection
 * ends, the sentinels are asked again), and one demoted alive answers
 * writes with READONLY.
 */

static void
ngx_http_twirt_redis_watch(ngx_http_twirt_redis_worker_t *rw)
{
    size_t                        argvlen[2];
    const char                   *argv[2];
    ngx_uint_t                    n;
    ngx_http_twirt_redis_conn_t  *w;
    ngx_http_twirt_redis_addr_t  *a;

    if (rw->watch || rw->exiting || rw->conf->master_name.len == 0
        || rw->watch_timer.timer_set)
    {
        return;
    }

    /* the sentinel that answered last */

    n = rw->conf->sentinels->nelts;
    a = rw->conf->sentinels->elts;
    a = &a[(rw->sentinel + n - 1) % n];

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = "+switch-master";
    argvlen[1] = sizeof("+switch-master") - 1;

    w = ngx_http_twirt_redis_conn_create(rw->log);

    if (w == NULL
        || ngx_http_twirt_redis_conn_command(w, 2, argv, argvlen,
                                             ngx_http_twirt_redis_switched,
                                             NULL)
           != NGX_OK
        || ngx_http_twirt_redis_conn_connect(w, &a->sockaddr.sockaddr,
                                             a->socklen, &rw->conf->name,
                                             NULL)
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                      "twirt: redis \"%V\": cannot watch sentinel %s:%d: %s",
                      &rw->conf->name, a->ip, a->port,
                      w && w->err ? (char *) w->errstr : "no memory");
        if (w) {
            ngx_http_twirt_redis_conn_close(w);
        }

        ngx_add_timer(&rw->watch_timer, 1000);
        return;
    }

    /* the messages that follow the subscription's answer */

    w->push = ngx_http_twirt_redis_switched;
    w->closed = ngx_http_twirt_redis_watch_closed;
    w->data = rw;

    rw->watch = w;
}


static void
ngx_http_twirt_redis_watch_handler(ngx_event_t *ev)
{
    ngx_http_twirt_redis_watch(ev->data);
}


/* "message", "+switch-master", "NAME old-ip old-port new-ip new-port" */

static void
ngx_http_twirt_redis_switched(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata)
{
    u_char                         *p, *last, *name_end;
    redisReply                     *m;
    ngx_http_twirt_redis_conn_t    *old;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (reply == NULL || conn != rw->watch || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[0]->len != 7
        || ngx_strncmp(reply->element[0]->str, "message", 7) != 0)
    {
        return;
    }

    m = reply->element[2];

    if (m->type != REDIS_REPLY_STRING) {
        return;
    }

    p = (u_char *) m->str;
    last = p + m->len;
    name_end = ngx_strlchr(p, last, ' ');

    if (name_end == NULL
        || (size_t) (name_end - p) != rw->conf->master_name.len
        || ngx_strncmp(p, rw->conf->master_name.data, name_end - p) != 0)
    {
        /* another master the sentinels watch */
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, rw->log, 0,
                  "twirt: redis \"%V\": the sentinels switched the master: "
                  "%*s", &rw->conf->name, (size_t) (last - name_end - 1),
                  name_end + 1);

    rw->backoff = NGX_HTTP_TWIRT_REDIS_BACKOFF_MIN;

    if (rw->conn) {
        /* not its handler: closed here, the closed handler requeues */
        old = rw->conn;
        rw->state = NGX_HTTP_TWIRT_REDIS_CLOSING;
        ngx_http_twirt_redis_conn_close(old);
        return;
    }

    if (rw->retry_timer.timer_set && !rw->query) {
        /* waiting out a backoff: ask now */
        ngx_del_timer(&rw->retry_timer);
        ngx_http_twirt_redis_connect(rw);
    }
}


static void
ngx_http_twirt_redis_watch_closed(ngx_http_twirt_redis_conn_t *conn, void *data)
{
    ngx_http_twirt_redis_worker_t  *rw = data;

    if (conn != rw->watch) {
        return;
    }

    rw->watch = NULL;

    if (!rw->exiting && !rw->watch_timer.timer_set) {
        ngx_add_timer(&rw->watch_timer, 1000);
    }
}


static void
ngx_http_twirt_redis_open(ngx_http_twirt_redis_worker_t *rw,
    struct sockaddr *sockaddr, socklen_t socklen)
{
    ngx_http_twirt_redis_conn_t  *conn;

    conn = ngx_http_twirt_redis_conn_create(rw->log);

    if (conn == NULL) {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    "connect failed: out of memory");
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    if (ngx_http_twirt_redis_conn_connect(conn, sockaddr, socklen,
                                          &rw->conf->name,
                                          rw->conf->ssl ? &rw->conf->tls
                                                        : NULL)
        != NGX_OK)
    {
        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    "connect failed: %s", conn->errstr);
        ngx_http_twirt_redis_conn_close(conn);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    conn->connected = ngx_http_twirt_redis_connected;
    conn->closed = ngx_http_twirt_redis_closed;
    conn->data = rw;

    rw->conn = conn;
    rw->state = NGX_HTTP_TWIRT_REDIS_CONNECTING;

    ngx_add_timer(&rw->connect_timer, rw->conf->timeout);
}


static void
ngx_http_twirt_redis_connected(ngx_http_twirt_redis_conn_t *conn, void *data)
{
    ngx_http_twirt_redis_worker_t  *rw = data;

    u_char                             db[NGX_INT_T_LEN];
    const char                        *argv[3];
    size_t                             argvlen[3];
    ngx_uint_t                         n;
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = rw->conf;

    if (conn != rw->conn) {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                   "twirt: redis \"%V\" connected, handshake",
                   &rmcf->name);

    rw->state = NGX_HTTP_TWIRT_REDIS_HANDSHAKE;

    /*
     * AUTH, SELECT and PING go out together; the queue is flushed on the
     * answer to PING, so no command ever meets an unauthenticated or
     * wrong-database connection.  A failure shows in the replies or the
     * connect timer.
     */

    if (rmcf->password.len) {
        n = 0;
        argv[n] = "AUTH";
        argvlen[n++] = sizeof("AUTH") - 1;

        if (rmcf->user.len) {
            argv[n] = (const char *) rmcf->user.data;
            argvlen[n++] = rmcf->user.len;
        }

        argv[n] = (const char *) rmcf->password.data;
        argvlen[n++] = rmcf->password.len;

        ngx_http_twirt_redis_step(rw, NGX_HTTP_TWIRT_REDIS_AUTH, (int) n,
                                  argv, argvlen);
    }

    if (rmcf->db > 0) {
        argv[0] = "SELECT";
        argvlen[0] = sizeof("SELECT") - 1;
        argv[1] = (const char *) db;
        argvlen[1] = ngx_sprintf(db, "%i", rmcf->db) - db;

        ngx_http_twirt_redis_step(rw, NGX_HTTP_TWIRT_REDIS_SELECT, 2, argv,
                                  argvlen);
    }

    if (rmcf->master_name.len) {
        /* what the sentinels said may be stale: a master says so itself */
        argv[0] = "ROLE";
        argvlen[0] = sizeof("ROLE") - 1;

        ngx_http_twirt_redis_step(rw, NGX_HTTP_TWIRT_REDIS_ROLE, 1, argv,
                                  argvlen);
    }

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    ngx_http_twirt_redis_step(rw, NGX_HTTP_TWIRT_REDIS_PING, 1, argv, argvlen);
}


static void
ngx_http_twirt_redis_step(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_step_e step, int argc, const char **argv,
    const size_t *argvlen)
{
    (void) ngx_http_twirt_redis_conn_command(rw->conn, argc, argv, argvlen,
                                             ngx_http_twirt_redis_handshake,
                                             (void *) (uintptr_t) step);
}


static void
ngx_http_twirt_redis_handshake(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata)
{
    ngx_http_twirt_redis_step_e     step;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;
    step = (ngx_http_twirt_redis_step_e) (uintptr_t) privdata;

    if (reply == NULL || rw->state != NGX_HTTP_TWIRT_REDIS_HANDSHAKE) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {

        switch (step) {

        case NGX_HTTP_TWIRT_REDIS_AUTH:
            ngx_http_twirt_redis_failed(rw, step, "refused AUTH: %*s",
                                        (size_t) reply->len, reply->str);
            break;

        case NGX_HTTP_TWIRT_REDIS_SELECT:
            ngx_http_twirt_redis_failed(rw, step, "refused SELECT %i: %*s",
                                        rw->conf->db, (size_t) reply->len,
                                        reply->str);
            break;

        default:
            ngx_http_twirt_redis_failed(rw, step, "refused PING: %*s",
                                        (size_t) reply->len, reply->str);
            break;
        }

        /* closed once this handler returns */

        rw->state = NGX_HTTP_TWIRT_REDIS_CLOSING;
        ngx_http_twirt_redis_conn_close(conn);
        return;
    }

    if (step == NGX_HTTP_TWIRT_REDIS_ROLE
        && (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
            || reply->element[0]->type != REDIS_REPLY_STRING
            || reply->element[0]->len != 6
            || ngx_strncmp(reply->element[0]->str, "master", 6) != 0))
    {
        ngx_http_twirt_redis_failed(rw, step, "%s:%d is not the master "
                                    "(ROLE: %*s): asking the sentinels again",
                                    rw->master.ip, rw->master.port,
                                    reply->type == REDIS_REPLY_ARRAY
                                    && reply->elements
                                    && reply->element[0]->type
                                       == REDIS_REPLY_STRING
                                    ? (size_t) reply->element[0]->len : 0,
                                    reply->type == REDIS_REPLY_ARRAY
                                    && reply->elements
                                    ? reply->element[0]->str : "");

        rw->state = NGX_HTTP_TWIRT_REDIS_CLOSING;
        ngx_http_twirt_redis_conn_close(conn);
        return;
    }

    if (step == NGX_HTTP_TWIRT_REDIS_PING) {
        ngx_http_twirt_redis_ready(rw);
    }
}


static void
ngx_http_twirt_redis_ready(ngx_http_twirt_redis_worker_t *rw)
{
    ngx_uint_t                   flushed;
    ngx_queue_t                 *q;
    ngx_http_twirt_redis_cmd_t  *cmd;

    if (rw->connect_timer.timer_set) {
        ngx_del_timer(&rw->connect_timer);
    }

    rw->state = NGX_HTTP_TWIRT_REDIS_READY;
    rw->ready_since = ngx_current_msec;

    flushed = 0;

    while (!ngx_queue_empty(&rw->pending)) {
        q = ngx_queue_head(&rw->pending);
        cmd = ngx_queue_data(q, ngx_http_twirt_redis_cmd_t, queue);

        ngx_queue_remove(q);
        rw->npending--;

        if (ngx_http_twirt_redis_send(rw, cmd) != NGX_OK) {
            ngx_queue_insert_head(&rw->pending, q);
            rw->npending++;
            break;
        }

        flushed++;
    }

    if (rw->was_ready) {
        rw->stats.reconnects++;
        ngx_log_error(NGX_LOG_INFO, rw->log, 0,
                      "twirt: redis \"%V\" reconnected after %ui attempt%s, "
                      "flushed %ui queued commands", &rw->conf->name,
                      rw->attempts, rw->attempts == 1 ? "" : "s", flushed);

    } else if (rw->attempts > 1) {
        ngx_log_error(NGX_LOG_INFO, rw->log, 0,
                      "twirt: redis \"%V\" connected after %ui attempts, "
                      "flushed %ui queued commands", &rw->conf->name,
                      rw->attempts, flushed);

    } else {
        ngx_log_error(NGX_LOG_INFO, rw->log, 0,
                      "twirt: redis \"%V\" connected, "
                      "flushed %ui queued commands", &rw->conf->name,
                      flushed);
    }

    rw->was_ready = 1;
    rw->attempts = 0;
    rw->logged = NGX_HTTP_TWIRT_REDIS_NONE;

    ngx_http_twirt_redis_watch(rw);

    if (ngx_http_twirt_redis_held(rw) <= (ngx_uint_t) rw->conf->queue / 2) {
        rw->full = 0;
    }
}


/*
 * One error line when a series of attempts starts failing, or fails for
 * another reason than the one last logged; the others at debug level.
 */

static void
ngx_http_twirt_redis_failed(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_step_e step, const char *fmt, ...)
{
    u_char   *p, text[NGX_MAX_ERROR_STR];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    rw->stats.errors++;

    if (rw->logged != step) {
        rw->logged = step;

        ngx_log_error(NGX_LOG_ERR, rw->log, 0, "twirt: redis \"%V\" %*s",
                      &rw->conf->name, (size_t) (p - text), text);
        return;
    }

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                   "twirt: redis \"%V\" attempt %ui: %*s",
                   &rw->conf->name, rw->attempts, (size_t) (p - text), text);
}


static void
ngx_http_twirt_redis_retry(ngx_http_twirt_redis_worker_t *rw)
{
    ngx_msec_t  delay, max;

    if (rw->exiting) {
        return;
    }

    delay = rw->backoff;

    /*
     * With sentinels a failover takes seconds, and asking them is cheap:
     * the delay stays short so that the new master is found soon.
     */

    max = rw->conf->master_name.len
          ? NGX_HTTP_TWIRT_REDIS_SENTINEL_BACKOFF_MAX
          : NGX_HTTP_TWIRT_REDIS_BACKOFF_MAX;

    rw->backoff = ngx_min(rw->backoff * 2, max);

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                   "twirt: redis \"%V\" attempt %ui in %M ms",
                   &rw->conf->name, rw->attempts + 1, delay);

    ngx_add_timer(&rw->retry_timer, delay);
}


static void
ngx_http_twirt_redis_connect_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_redis_conn_t    *q;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = ev->data;

    if (rw->query) {
        q = rw->query;
        rw->query = NULL;
        rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;

        ngx_http_twirt_redis_failed(rw, NGX_HTTP_TWIRT_REDIS_DISCOVER,
                                    "sentinel did not answer in %M ms",
                                    rw->conf->timeout);
        ngx_http_twirt_redis_conn_close(q);
        ngx_http_twirt_redis_retry(rw);
        return;
    }

    if (rw->conn == NULL) {
        return;
    }

    ngx_http_twirt_redis_failed(rw, rw->conn->tls_handshake
                                    ? NGX_HTTP_TWIRT_REDIS_TLS
                                    : NGX_HTTP_TWIRT_REDIS_CONNECT,
                                rw->state == NGX_HTTP_TWIRT_REDIS_HANDSHAKE
                                ? "did not answer the handshake in %M ms"
                                : rw->conn->tls_handshake
                                ? "TLS failed: no handshake within %M ms"
                                : "connect timed out after %M ms",
                                rw->conf->timeout);

    rw->state = NGX_HTTP_TWIRT_REDIS_CLOSING;

    /* not in one of its handlers: the closed handler runs from here */

    ngx_http_twirt_redis_conn_close(rw->conn);
}


static void
ngx_http_twirt_redis_retry_handler(ngx_event_t *ev)
{
    ngx_http_twirt_redis_worker_t  *rw;

    rw = ev->data;

    if (rw->exiting || rw->conn || rw->resolving || rw->query) {
        return;
    }

    ngx_http_twirt_redis_connect(rw);
}


/*
 * The adapter says the context is being freed: everything that follows
 * the end of a connection happens here, once per context.
 */

static void
ngx_http_twirt_redis_closed(ngx_http_twirt_redis_conn_t *conn, void *data)
{
    ngx_http_twirt_redis_worker_t  *rw = data;

    ngx_http_twirt_redis_state_e  state;

    if (conn != rw->conn) {
        return;
    }

    state = rw->state;

    rw->conn = NULL;
    rw->state = NGX_HTTP_TWIRT_REDIS_IDLE;

    if (rw->connect_timer.timer_set) {
        ngx_del_timer(&rw->connect_timer);
    }

    ngx_http_twirt_redis_requeue(rw);

    if (rw->exiting) {
        return;
    }

    if (state == NGX_HTTP_TWIRT_REDIS_READY) {
        rw->stats.errors++;
        rw->logged = NGX_HTTP_TWIRT_REDIS_CONNECT;

        ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                      "twirt: redis \"%V\" connection lost: %s, "
                      "%ui commands held", &rw->conf->name,
                      conn->err ? (char *) conn->errstr : "closed",
                      ngx_http_twirt_redis_held(rw));

        /* a connection that lasted starts again from the shortest delay */

        if (ngx_current_msec - rw->ready_since
            >= NGX_HTTP_TWIRT_REDIS_BACKOFF_MAX)
        {
            rw->backoff = NGX_HTTP_TWIRT_REDIS_BACKOFF_MIN;
        }

    } else if (state != NGX_HTTP_TWIRT_REDIS_CLOSING) {
        ngx_http_twirt_redis_failed(rw, conn->tls_handshake
                                        ? NGX_HTTP_TWIRT_REDIS_TLS
                                        : NGX_HTTP_TWIRT_REDIS_CONNECT,
                                    conn->tls_handshake ? "TLS failed: %s"
                                                      : "connect failed: %s",
                                    conn->err ? (char *) conn->errstr
                                            : "closed");
    }

    ngx_http_twirt_redis_retry(rw);
}


/*
 * The commands sent on a connection that ended before their answers go
 * back in front of the queue, in their order, to be sent again: Redis may
 * have run some of them (at least once, not exactly once).
 */

static void
ngx_http_twirt_redis_requeue(ngx_http_twirt_redis_worker_t *rw)
{
    ngx_queue_t                 *q;
    ngx_http_twirt_redis_cmd_t  *cmd;

    while (!ngx_queue_empty(&rw->inflight)) {
        q = ngx_queue_last(&rw->inflight);
        cmd = ngx_queue_data(q, ngx_http_twirt_redis_cmd_t, queue);

        ngx_queue_remove(q);
        rw->ninflight--;

        if (++cmd->tries >= NGX_HTTP_TWIRT_REDIS_TRIES) {
            rw->stats.dropped++;
            ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                          "twirt: redis command \"%*s\" dropped after %ui "
                          "connections ended before its answer",
                          cmd->argvlen[0], cmd->argv[0], cmd->tries);
            ngx_free(cmd);
            continue;
        }

        ngx_queue_insert_head(&rw->pending, q);
        rw->npending++;
    }
}


/* commands and replies */


static ngx_int_t
ngx_http_twirt_redis_send(ngx_http_twirt_redis_worker_t *rw,
    ngx_http_twirt_redis_cmd_t *cmd)
{
    if (ngx_http_twirt_redis_conn_command(rw->conn, cmd->argc, cmd->argv,
                                          cmd->argvlen,
                                          ngx_http_twirt_redis_reply, cmd)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&rw->inflight, &cmd->queue);
    rw->ninflight++;

    return NGX_OK;
}


static void
ngx_http_twirt_redis_reply(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata)
{
    ngx_http_twirt_redis_cmd_t     *cmd;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;
    cmd = privdata;

    if (reply == NULL) {
        /* the connection ends: the closed handler requeues the command */
        return;
    }

    ngx_queue_remove(&cmd->queue);
    rw->ninflight--;

    if (reply->type == REDIS_REPLY_ERROR && reply->len >= 8
        && ngx_strncmp(reply->str, "READONLY", 8) == 0
        && rw->state == NGX_HTTP_TWIRT_REDIS_READY)
    {
        /*
         * A master demoted under us (a failover it lived through): the
         * command is unanswered again (the first in flight: replies come
         * in order), the connection is dropped, so it goes out again with
         * the others, and the sentinels are asked again.
         */
        ngx_queue_insert_head(&rw->inflight, &cmd->queue);
        rw->ninflight++;

        ngx_log_error(NGX_LOG_WARN, rw->log, 0,
                      "twirt: redis \"%V\" %s:%d is a replica now: "
                      "asking the sentinels again", &rw->conf->name,
                      rw->master.ip, rw->master.port);

        rw->state = NGX_HTTP_TWIRT_REDIS_CLOSING;
        ngx_http_twirt_redis_conn_close(conn);
        return;
    }

    rw->stats.sent++;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_twirt_redis_reply_error(rw, cmd->argv[0], cmd->argvlen[0],
                                         reply);
    }

    ngx_free(cmd);

    if (rw->full
        && ngx_http_twirt_redis_held(rw) <= (ngx_uint_t) rw->conf->queue / 2)
    {
        rw->full = 0;
    }

    ngx_http_twirt_redis_drained(rw);
}


static void
ngx_http_twirt_redis_hash_reply(ngx_http_twirt_redis_conn_t *conn,
    redisReply *reply, void *privdata)
{
    size_t                          i;
    ngx_int_t                       rc;
    ngx_array_t                     pairs;
    ngx_keyval_t                   *kv;
    redisReply                     *f, *v;
    ngx_http_twirt_redis_read_t    *rd;
    ngx_http_twirt_redis_worker_t  *rw;
    ngx_http_twirt_redis_hash_pt    handler;

    rw = &ngx_http_twirt_redis_worker;
    rd = privdata;

    rw->nreads--;

    if (rd->timer.timer_set) {
        ngx_del_timer(&rd->timer);
    }

    handler = rd->handler;

    if (handler == NULL || rw->exiting) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                       "twirt: redis read answered after its caller left");
        ngx_free(rd);
        return;
    }

    rd->handler = NULL;

    ngx_memzero(&pairs, sizeof(ngx_array_t));
    pairs.size = sizeof(ngx_keyval_t);

    kv = NULL;

    if (reply == NULL) {
        rc = NGX_DECLINED;

    } else if (reply->type == REDIS_REPLY_ERROR) {
        ngx_http_twirt_redis_reply_error(rw, "read", sizeof("read") - 1,
                                         reply);
        rc = NGX_ERROR;

    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2) {
        rc = NGX_ERROR;

    } else {
        rc = NGX_OK;

        if (reply->elements) {
            kv = ngx_alloc(reply->elements / 2 * sizeof(ngx_keyval_t),
                           rw->log);
            if (kv == NULL) {
                rc = NGX_ERROR;
            }
        }

        for (i = 0; rc == NGX_OK && i < reply->elements; i += 2) {
            f = reply->element[i];
            v = reply->element[i + 1];

            if (f->type != REDIS_REPLY_STRING
                || v->type != REDIS_REPLY_STRING)
            {
                rc = NGX_ERROR;
                break;
            }

            kv[i / 2].key.len = f->len;
            kv[i / 2].key.data = (u_char *) f->str;
            kv[i / 2].value.len = v->len;
            kv[i / 2].value.data = (u_char *) v->str;
        }

        if (rc == NGX_OK) {
            pairs.elts = kv;
            pairs.nelts = reply->elements / 2;
            pairs.nalloc = pairs.nelts;
        }
    }

    handler(rd->data, rc, rc == NGX_OK ? &pairs : NULL);

    if (kv) {
        ngx_free(kv);
    }

    ngx_free(rd);
}


static void
ngx_http_twirt_redis_read_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_redis_read_t    *rd;
    ngx_http_twirt_redis_hash_pt    handler;

    rd = ev->data;

    handler = rd->handler;

    if (handler == NULL) {
        return;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "twirt: redis read timed out");

    /* the reply, when it comes, frees rd */

    rd->handler = NULL;

    handler(rd->data, NGX_DECLINED, NULL);
}


/* at most one error line a second for replies; all of them are counted */

static void
ngx_http_twirt_redis_reply_error(ngx_http_twirt_redis_worker_t *rw,
    const char *command, size_t len, redisReply *reply)
{
    rw->stats.errors++;

    if (rw->error_logged == ngx_time()) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, rw->log, 0,
                       "twirt: redis \"%*s\" failed: %s",
                       len, command, reply->str);
        return;
    }

    rw->error_logged = ngx_time();

    ngx_log_error(NGX_LOG_ERR, rw->log, 0,
                  "twirt: redis \"%V\" answered \"%*s\" with an error: %*s",
                  &rw->conf->name, len, command,
                  (size_t) reply->len, reply->str);
}


static ngx_uint_t
ngx_http_twirt_redis_held(ngx_http_twirt_redis_worker_t *rw)
{
    return rw->npending + rw->ninflight;
}


static ngx_int_t
ngx_http_twirt_redis_allowed(ngx_str_t *name)
{
    ngx_str_t  *s;

    for (s = ngx_http_twirt_redis_refused; s->len; s++) {
        if (s->len == name->len
            && ngx_strncasecmp(s->data, name->data, s->len) == 0)
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* an IP literal and a port, for connect(): NGX_ERROR when not an IP */

static ngx_int_t
ngx_http_twirt_redis_sockaddr(u_char *ip, size_t len, int port,
    ngx_http_twirt_redis_addr_t *a)
{
    in_addr_t             inaddr;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    if (len == 0 || len >= NGX_SOCKADDR_STRLEN) {
        return NGX_ERROR;
    }

    ngx_memzero(&a->sockaddr, sizeof(ngx_sockaddr_t));

    inaddr = ngx_inet_addr(ip, len);

    if (inaddr != INADDR_NONE) {
        sin = &a->sockaddr.sockaddr_in;
        sin->sin_family = AF_INET;
        sin->sin_addr.s_addr = inaddr;
        a->socklen = sizeof(struct sockaddr_in);

    } else {
#if (NGX_HAVE_INET6)
        sin6 = &a->sockaddr.sockaddr_in6;

        if (ngx_inet6_addr(ip, len, sin6->sin6_addr.s6_addr) != NGX_OK) {
            return NGX_ERROR;
        }

        sin6->sin6_family = AF_INET6;
        a->socklen = sizeof(struct sockaddr_in6);
#else
        return NGX_ERROR;
#endif
    }

    ngx_inet_set_port(&a->sockaddr.sockaddr, (in_port_t) port);

    (void) ngx_cpystrn(a->ip, ip, len + 1);
    a->port = port;

    return NGX_OK;
}


/* configuration */


static void *
ngx_http_twirt_redis_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_redis_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     rmcf->name = { 0, NULL };
     *     rmcf->host = { 0, NULL };
     *     rmcf->password = { 0, NULL };
     *     rmcf->prefix = { 0, NULL };
     *     rmcf->node = { 0, NULL };
     *     rmcf->db = 0;
     *     rmcf->tls_* = { 0, NULL };
     *     rmcf->tls = { NULL, ... };
     *     rmcf->unix_socket = 0;
     *     rmcf->ssl = 0;
     */

    rmcf->ttl = NGX_CONF_UNSET;
    rmcf->queue = NGX_CONF_UNSET;
    rmcf->timeout = NGX_CONF_UNSET_MSEC;
    rmcf->node_timeout = NGX_CONF_UNSET_MSEC;
    rmcf->tls_verify = NGX_CONF_UNSET;

    return rmcf;
}


static char *
ngx_http_twirt_redis_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf = conf;

    ngx_http_core_loc_conf_t  *clcf;

    if (rmcf->prefix.data == NULL) {
        rmcf->prefix = ngx_http_twirt_redis_default_prefix;
    }

    if (rmcf->node.data == NULL) {
        rmcf->node = cf->cycle->hostname;
    }

    ngx_conf_init_value(rmcf->ttl, 86400);
    ngx_conf_init_value(rmcf->queue, 10000);
    ngx_conf_init_msec_value(rmcf->timeout, 1000);

    if (rmcf->timeout == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"twirt_redis_timeout\" must be more than 0");
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_msec_value(rmcf->node_timeout, 15000);

    if (rmcf->node_timeout < 1000) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"twirt_node_timeout\" must be 1s at least");
        return NGX_CONF_ERROR;
    }

    /* TLS directives with a plaintext address: "rediss://" was meant */

    if (!rmcf->ssl && rmcf->name.len
        && (rmcf->tls_verify != NGX_CONF_UNSET || rmcf->tls_trusted.len
            || rmcf->tls_name.len || rmcf->tls_cert.len || rmcf->tls_key.len))
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"twirt_redis_ssl_*\" directives are set but "
                      "twirt_redis \"%V\" is not TLS: %s, in %V:%ui",
                      &rmcf->name,
                      rmcf->master_name.len
                      ? "TLS with Redis Sentinel is not supported"
                      : "write it \"rediss://host:port\"",
                      &rmcf->file, rmcf->line);
        return NGX_CONF_ERROR;
    }

    ngx_conf_init_value(rmcf->tls_verify, 1);

    if (rmcf->tls_trusted.len == 0) {
        rmcf->tls_trusted = ngx_http_twirt_redis_default_trusted;
    }

    if (rmcf->ssl && ngx_http_twirt_redis_ssl_init(cf, rmcf) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    if (rmcf->host.len == 0) {
        return NGX_CONF_OK;
    }

    /* a host name: resolved by nginx's resolver of the http{} block */

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->resolver == NULL || clcf->resolver->connections.nelts == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "twirt_redis \"%V\" is a host name: it needs a "
                      "\"resolver\" at http level, or use an IP address "
                      "or a unix socket, in %V:%ui",
                      &rmcf->name, &rmcf->file, rmcf->line);
        return NGX_CONF_ERROR;
    }

    rmcf->clcf = clcf;

    return NGX_CONF_OK;
}


/*
 * twirt_redis [redis://|rediss://]host:port | [ipv6]:port | unix:/path
 *             | sentinel:NAME ip:port... [user=] [password=] [db=]
 */

static char *
ngx_http_twirt_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_redis_main_conf_t  *rmcf = conf;

    u_char              *p, *colon, *last;
    size_t               len;
    ngx_int_t            port;
    ngx_str_t           *value, host, addr;
    ngx_uint_t           i, first;
    struct sockaddr_un  *sun;

    if (rmcf->name.len) {
        return "is duplicate";
    }

    value = cf->args->elts;

    rmcf->file = cf->conf_file->file.name;
    rmcf->line = cf->conf_file->line;

    first = 2;

    if (value[1].len >= 9
        && ngx_strncmp(value[1].data, "sentinel:", 9) == 0)
    {
        if (ngx_http_twirt_redis_sentinels(cf, rmcf, &first) != NGX_OK) {
            return NGX_CONF_ERROR;
        }

        goto parameters;
    }

    addr = value[1];

    if (addr.len >= 9
        && ngx_strncasecmp(addr.data, (u_char *) "rediss://", 9) == 0)
    {
        rmcf->ssl = 1;
        addr.data += 9;
        addr.len -= 9;

    } else if (addr.len >= 8
               && ngx_strncasecmp(addr.data, (u_char *) "redis://", 8) == 0)
    {
        addr.data += 8;
        addr.len -= 8;
    }

    if (addr.len >= 5
        && ngx_strncasecmp(addr.data, (u_char *) "unix:", 5) == 0)
    {
        if (rmcf->ssl) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "TLS to a unix socket is not supported in "
                               "\"%V\": use \"unix:/path\" (the socket's "
                               "file permissions protect it)", &value[1]);
            return NGX_CONF_ERROR;
        }

        len = addr.len - 5;

        if (len == 0 || len >= sizeof(((struct sockaddr_un *) 0)->sun_path)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "no path or too long a path in \"%V\"",
                               &value[1]);
            return NGX_CONF_ERROR;
        }

        sun = &rmcf->addr.sockaddr.sockaddr_un;
        sun->sun_family = AF_UNIX;
        (void) ngx_cpystrn((u_char *) sun->sun_path, addr.data + 5, len + 1);
        rmcf->addr.socklen = sizeof(struct sockaddr_un);

        rmcf->unix_socket = 1;
        rmcf->name = value[1];

        goto parameters;
    }

    p = addr.data;
    last = p + addr.len;
    port = NGX_HTTP_TWIRT_REDIS_PORT;

    if (p < last && *p == '[') {
        colon = ngx_strlchr(p, last, ']');

        if (colon == NULL) {
            goto invalid;
        }

        host.data = p + 1;
        host.len = colon - host.data;
        colon++;

        if (colon < last && *colon != ':') {
            goto invalid;
        }

    } else {
        colon = ngx_strlchr(p, last, ':');

        if (colon && ngx_strlchr(colon + 1, last, ':')) {
            /* an IPv6 address without brackets and without a port */
            colon = NULL;
        }

        host.data = p;
        host.len = (colon ? colon : last) - p;
    }

    if (colon && colon < last) {
        port = ngx_atoi(colon + 1, last - colon - 1);

        if (port < 1 || port > 65535) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid port in \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (host.len == 0) {
        goto invalid;
    }

    rmcf->port = (int) port;

    rmcf->name.data = ngx_pnalloc(cf->pool,
                                  host.len + sizeof("rediss://[]:65535"));
    if (rmcf->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the name TLS checks, unless twirt_redis_ssl_server_name says */

    rmcf->tls.name.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (rmcf->tls.name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    (void) ngx_cpystrn(rmcf->tls.name.data, host.data, host.len + 1);
    rmcf->tls.name.len = host.len;

    p = rmcf->name.data;

    if (rmcf->ssl) {
        p = ngx_cpymem(p, "rediss://", sizeof("rediss://") - 1);
    }

    if (ngx_http_twirt_redis_sockaddr(host.data, host.len, (int) port,
                                      &rmcf->addr)
        == NGX_OK)
    {
        rmcf->tls.ip = 1;
        rmcf->name.len = ngx_sprintf(p, rmcf->addr.sockaddr.sockaddr.sa_family
                                        == AF_INET ? "%V:%i" : "[%V]:%i",
                                     &host, port)
                         - rmcf->name.data;
        goto parameters;
    }

    for (i = 0; i < host.len; i++) {
        if (!(isalnum(host.data[i]) || host.data[i] == '-'
              || host.data[i] == '.' || host.data[i] == '_'))
        {
            goto invalid;
        }
    }

    rmcf->host = host;
    rmcf->name.len = ngx_sprintf(p, "%V:%i", &host, port) - rmcf->name.data;

parameters:

    for (i = first; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "password=", 9) == 0) {
            rmcf->password.data = value[i].data + 9;
            rmcf->password.len = value[i].len - 9;

            if (rmcf->password.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty \"password=\" in \"twirt_redis\"");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "user=", 5) == 0) {
            rmcf->user.data = value[i].data + 5;
            rmcf->user.len = value[i].len - 5;

            if (rmcf->user.len == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "empty \"user=\" in \"twirt_redis\"");
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "db=", 3) == 0) {
            rmcf->db = ngx_atoi(value[i].data + 3, value[i].len - 3);

            if (rmcf->db == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid database number \"%V\" in "
                                   "\"twirt_redis\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (rmcf->master_name.len && value[i].len == 3
            && ngx_strncmp(value[i].data, "tls", 3) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "TLS with Redis Sentinel is not supported: "
                               "use \"rediss://host:port\" for one server");
            return NGX_CONF_ERROR;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\" in \"twirt_redis\", "
                           "expected \"password=\", \"user=\" or \"db=\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (rmcf->user.len && rmcf->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"user=\" in \"twirt_redis\" needs "
                           "\"password=\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid address \"%V\" in \"twirt_redis\", expected "
                       "host:port, [ipv6]:port, rediss://host:port, "
                       "unix:/path or sentinel:NAME", &value[1]);

    return NGX_CONF_ERROR;
}


/*
 * rediss://: the TLS context, as for the Realtime and REST APIs:
 * verification on by default, against the system's CA bundle unless
 * twirt_redis_ssl_trusted_certificate names the service's own CA.
 */

static char *
ngx_http_twirt_redis_ssl_init(ngx_conf_t *cf,
    ngx_http_twirt_redis_main_conf_t *rmcf)
{
#if (NGX_HTTP_SSL)
#if (NGX_HAVE_INET6)
    u_char  inaddr6[16];
#endif

    if (rmcf->tls_name.len) {
        rmcf->tls.name.data = ngx_pnalloc(cf->pool,
                                          rmcf->tls_name.len + 1);
        if (rmcf->tls.name.data == NULL) {
            return NGX_CONF_ERROR;
        }

        (void) ngx_cpystrn(rmcf->tls.name.data, rmcf->tls_name.data,
                           rmcf->tls_name.len + 1);
        rmcf->tls.name.len = rmcf->tls_name.len;

        rmcf->tls.ip = (ngx_inet_addr(rmcf->tls.name.data,
                                      rmcf->tls.name.len)
                        != INADDR_NONE);
#if (NGX_HAVE_INET6)
        if (!rmcf->tls.ip) {
            rmcf->tls.ip = (ngx_inet6_addr(rmcf->tls.name.data,
                                           rmcf->tls.name.len, inaddr6)
                            == NGX_OK);
        }
#endif
    }

    if ((rmcf->tls_cert.len == 0) != (rmcf->tls_key.len == 0)) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"twirt_redis_ssl_certificate\" and "
                      "\"twirt_redis_ssl_certificate_key\" go together: "
                      "one is missing, in %V:%ui", &rmcf->file, rmcf->line);
        return NGX_CONF_ERROR;
    }

    rmcf->tls.verify = rmcf->tls_verify ? 1 : 0;

    if (ngx_http_twirt_tls_ctx(cf, &rmcf->tls.ssl, rmcf->tls.verify,
                               &rmcf->tls_trusted,
                               &rmcf->name, "twirt_redis_ssl_verify")
        != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (rmcf->tls_cert.len
        && ngx_ssl_certificate(cf, rmcf->tls.ssl, &rmcf->tls_cert,
                               &rmcf->tls_key, NULL)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;

#else

    ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                  "twirt_redis \"%V\" needs nginx built with SSL",
                  &rmcf->name);
    return NGX_CONF_ERROR;

#endif
}


/*
 * twirt_redis sentinel:NAME ip:port ... [password=] [db=]: the master
 * monitored as NAME, found by asking the sentinels, in turn.  Sentinels
 * are given by IP address (a name would need resolving at every ask).
 */

static ngx_int_t
ngx_http_twirt_redis_sentinels(ngx_conf_t *cf,
    ngx_http_twirt_redis_main_conf_t *rmcf, ngx_uint_t *next)
{
    u_char                       *p, *last, *colon;
    ngx_int_t                     port;
    ngx_str_t                    *value, host;
    ngx_uint_t                    i;
    ngx_http_twirt_redis_addr_t  *a;

    value = cf->args->elts;

    rmcf->master_name.data = value[1].data + 9;
    rmcf->master_name.len = value[1].len - 9;

    if (rmcf->master_name.len == 0 || rmcf->master_name.len > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "no master name, or a name longer than 64, in "
                           "\"%V\"", &value[1]);
        return NGX_ERROR;
    }

    for (i = 0; i < rmcf->master_name.len; i++) {
        if (!(isalnum(rmcf->master_name.data[i])
              || ngx_strchr("-._", rmcf->master_name.data[i])))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid master name in \"%V\": letters, "
                               "digits, \"-\", \".\" and \"_\"",
                               &value[1]);
            return NGX_ERROR;
        }
    }

    rmcf->name = value[1];

    rmcf->sentinels = ngx_array_create(cf->pool, 3,
                                       sizeof(ngx_http_twirt_redis_addr_t));
    if (rmcf->sentinels == NULL) {
        return NGX_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')
            || (value[i].len == 3 && ngx_strncmp(value[i].data, "tls", 3) == 0))
        {
            break;
        }

        p = value[i].data;
        last = p + value[i].len;

        if (*p == '[') {
            colon = ngx_strlchr(p, last, ']');
            if (colon == NULL || colon + 1 >= last || colon[1] != ':') {
                goto invalid;
            }

            host.data = p + 1;
            host.len = colon - host.data;
            colon++;

        } else {
            colon = ngx_strlchr(p, last, ':');
            if (colon == NULL) {
                goto invalid;
            }

            host.data = p;
            host.len = colon - p;
        }

        port = ngx_atoi(colon + 1, last - colon - 1);

        if (port < 1 || port > 65535) {
            goto invalid;
        }

        a = ngx_array_push(rmcf->sentinels);
        if (a == NULL) {
            return NGX_ERROR;
        }

        if (ngx_http_twirt_redis_sockaddr(host.data, host.len, (int) port, a)
            != NGX_OK)
        {
            goto invalid;
        }
    }

    if (rmcf->sentinels->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_redis %V\" needs the sentinels' "
                           "addresses (ip:port ...)", &value[1]);
        return NGX_ERROR;
    }

    *next = i;

    return NGX_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "invalid sentinel address \"%V\" in \"twirt_redis\", "
                       "expected ip:port or [ipv6]:port", &value[i]);

    return NGX_ERROR;
}


/* the worker */


static ngx_int_t
ngx_http_twirt_redis_init_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_redis_worker_t     *rw;
    ngx_http_twirt_redis_main_conf_t  *rmcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_twirt_redis_module);
    if (rmcf == NULL) {
        return NGX_OK;
    }

    rw = &ngx_http_twirt_redis_worker;

    ngx_memzero(rw, sizeof(ngx_http_twirt_redis_worker_t));

    rw->conf = rmcf;
    rw->log = cycle->log;

    if (rmcf->name.len == 0) {
        return NGX_OK;
    }

    ngx_queue_init(&rw->pending);
    ngx_queue_init(&rw->inflight);

    rw->backoff = NGX_HTTP_TWIRT_REDIS_BACKOFF_MIN;

    /* cancelable: neither timer keeps a quitting worker alive */

    rw->connect_timer.handler = ngx_http_twirt_redis_connect_timeout;
    rw->connect_timer.data = rw;
    rw->connect_timer.log = cycle->log;
    rw->connect_timer.cancelable = 1;

    rw->retry_timer.handler = ngx_http_twirt_redis_retry_handler;
    rw->retry_timer.data = rw;
    rw->retry_timer.log = cycle->log;
    rw->retry_timer.cancelable = 1;

    rw->watch_timer.handler = ngx_http_twirt_redis_watch_handler;
    rw->watch_timer.data = rw;
    rw->watch_timer.log = cycle->log;
    rw->watch_timer.cancelable = 1;

    ngx_http_twirt_redis_connect(rw);

    ngx_http_twirt_node_init(cycle);

    return NGX_OK;
}


static void
ngx_http_twirt_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                      n;
    ngx_queue_t                    *q;
    ngx_http_twirt_redis_conn_t    *conn;
    ngx_http_twirt_redis_cmd_t     *cmd;
    ngx_http_twirt_redis_worker_t  *rw;

    rw = &ngx_http_twirt_redis_worker;

    if (rw->conf == NULL || rw->conf->name.len == 0) {
        return;
    }

    rw->exiting = 1;

    ngx_http_twirt_node_exit();

    if (rw->watch_timer.timer_set) {
        ngx_del_timer(&rw->watch_timer);
    }

    if (rw->query) {
        conn = rw->query;
        rw->query = NULL;
        ngx_http_twirt_redis_conn_close(conn);
    }

    if (rw->watch) {
        conn = rw->watch;
        rw->watch = NULL;
        ngx_http_twirt_redis_conn_close(conn);
    }

    if (rw->retry_timer.timer_set) {
        ngx_del_timer(&rw->retry_timer);
    }

    if (rw->connect_timer.timer_set) {
        ngx_del_timer(&rw->connect_timer);
    }

    if (rw->drain_timer.timer_set) {
        ngx_del_timer(&rw->drain_timer);
    }

    if (rw->resolving) {
        ngx_resolve_name_done(rw->resolving);
        rw->resolving = NULL;
    }

    if (rw->conn) {

        /* what is already formatted goes out if the socket takes it */

        if (rw->state == NGX_HTTP_TWIRT_REDIS_READY) {
            ngx_http_twirt_redis_conn_flush(rw->conn);
        }

        if (rw->conn) {
            ngx_http_twirt_redis_conn_close(rw->conn);
        }
    }

    n = rw->ninflight + rw->npending;

    if (n) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "twirt: redis \"%V\" exiting with %ui commands "
                      "not acknowledged", &rw->conf->name, n);
    }

    while (!ngx_queue_empty(&rw->pending)) {
        q = ngx_queue_head(&rw->pending);
        cmd = ngx_queue_data(q, ngx_http_twirt_redis_cmd_t, queue);
        ngx_queue_remove(q);
        ngx_free(cmd);
    }

    rw->npending = 0;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, cycle->log, 0,
                   "twirt: redis \"%V\" closed", &rw->conf->name);
}

