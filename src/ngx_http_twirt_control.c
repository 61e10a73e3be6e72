
/*
 * Live call control through Redis (see the header).  A sender, on any
 * worker of any node, reads the call's record and pushes the message to
 * the list of the worker holding it, in one script; each worker drains
 * its own list on a timer and hands what it finds to the call
 * (ngx_http_twirt_call_control).  The lists expire: a dead worker's
 * vanishes.  What comes from the list is untrusted: checked, counted and
 * dropped when it is not a control message.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_twirt_control.h"
#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_log.h"


#define NGX_HTTP_TWIRT_CONTROL_PERIOD   200      /* ms between drains */
#define NGX_HTTP_TWIRT_CONTROL_BATCH    "32"     /* messages per drain */
#define NGX_HTTP_TWIRT_CONTROL_RAW_MAX  8192     /* bytes of one message */
#define NGX_HTTP_TWIRT_CONTROL_TTL      "60"     /* s: a list's life */


/* a send waiting for its answer */
typedef struct {
    ngx_http_twirt_control_pt          handler;
    void                              *data;
    void                              *read;
    ngx_log_t                         *log;
} ngx_http_twirt_control_send_t;


/* per worker: the drain */
typedef struct {
    ngx_event_t                        timer;
    void                              *read;      /* a drain in flight */
    ngx_str_t                          key;       /* this worker's list */
    ngx_int_t                          failed;    /* the last drain's rc,
                                                     logged once */
} ngx_http_twirt_control_drain_t;


static ngx_int_t ngx_http_twirt_control_init_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_control_exit_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_control_sent(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_control_tick(ngx_event_t *ev);
static void ngx_http_twirt_control_drained(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_control_apply(ngx_str_t *raw);
static void ngx_http_twirt_control_invalid(ngx_str_t *raw, const char *why);


/*
 * KEYS[1] the call record, ARGV[1] the lists' key up to the worker,
 * ARGV[2] the message, ARGV[3] the list's TTL
 */

static ngx_str_t  ngx_http_twirt_control_send_script = ngx_string(
    "local s = redis.call('HGET', KEYS[1], 'status') "
    "if not s then return {'result', 'unknown'} end "
    "local w = redis.call('HGET', KEYS[1], 'worker') "
    "if not w or s == 'ended' or s == 'failed' then "
    "return {'result', 'not_live'} end "
    "local k = ARGV[1] .. w "
    "redis.call('RPUSH', k, ARGV[2]) "
    "redis.call('EXPIRE', k, ARGV[3]) "
    "return {'result', 'queued'}");


/*
 * KEYS[1] this worker's list; at most ARGV[1] messages, as pairs
 * ("m", message), or ("x", its length) for one longer than ARGV[2]
 */

static ngx_str_t  ngx_http_twirt_control_drain_script = ngx_string(
    "local out = {} "
    "for i = 1, tonumber(ARGV[1]) do "
    "local m = redis.call('LPOP', KEYS[1]) "
    "if not m then break end "
    "if #m > tonumber(ARGV[2]) then "
    "table.insert(out, 'x') table.insert(out, tostring(#m)) "
    "else table.insert(out, 'm') table.insert(out, m) end "
    "end "
    "return out");


static const char  *ngx_http_twirt_control_results[] = {
    "queued",
    "not_live",
    "unknown",
    "failed"
};


static ngx_http_module_t  ngx_http_twirt_control_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_control_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_control_module_ctx,    /* module context */
    NULL,                                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_twirt_control_init_process,   /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_twirt_control_exit_process,   /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_twirt_control_drain_t  ngx_http_twirt_control_drain;


ngx_str_t *
ngx_http_twirt_control_worker(void)
{
    ngx_str_t  *node;

    static ngx_pid_t  pid;
    static ngx_str_t  worker;
    static u_char     buf[512];

    /* made once per process: the node is known from init_process on */

    if (worker.len == 0 || pid != ngx_pid) {
        node = ngx_http_twirt_redis_node();

        worker.data = buf;
        worker.len = ngx_snprintf(buf, sizeof(buf), "%V:%P", node, ngx_pid)
                     - buf;
        pid = ngx_pid;
    }

    return &worker;
}


const char *
ngx_http_twirt_control_result_name(ngx_http_twirt_control_result_e result)
{
    return ngx_http_twirt_control_results[
               result <= NGX_HTTP_TWIRT_CONTROL_FAILED
               ? result : NGX_HTTP_TWIRT_CONTROL_FAILED];
}


/* sending */


ngx_int_t
ngx_http_twirt_control_send(ngx_pool_t *pool, ngx_log_t *log,
    ngx_str_t *call_sid, const char *action, ngx_str_t *message,
    ngx_http_twirt_control_pt handler, void *data, void **handle)
{
    char                           *text;
    json_t                         *msg;
    ngx_int_t                       rc;
    ngx_str_t                       stem;
    ngx_http_twirt_redis_args_t     args;
    ngx_http_twirt_control_send_t  *ctx;

    if (handle) {
        *handle = NULL;
    }

    if (!ngx_http_twirt_redis_configured()) {
        return NGX_DECLINED;
    }

    if (ngx_http_twirt_sid_valid(call_sid) != NGX_OK
        || (ngx_strcmp(action, "hangup") != 0
            && ngx_strcmp(action, "machine") != 0)
        || (message && message->len > NGX_HTTP_TWIRT_CONTROL_MESSAGE_MAX))
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "twirt: control not sent: an invalid CallSid, action "
                      "or message");
        return NGX_ERROR;
    }

    /* the message is not UTF-8: jansson refuses it */

    msg = json_pack("{s:s%,s:s}", "call", call_sid->data, call_sid->len,
                    "action", action);

    if (msg && message) {
        if (json_object_set_new(msg, "message",
                                json_stringn((char *) message->data,
                                             message->len))
            != 0)
        {
            json_decref(msg);
            msg = NULL;
        }
    }

    text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);

    if (text == NULL) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "twirt: control not sent: the message is not UTF-8 "
                      "or there is no memory");
        return NGX_ERROR;
    }

    if (ngx_http_twirt_redis_key(pool, "control", NULL, ":", &stem)
        != NGX_OK)
    {
        free(text);
        return NGX_ERROR;
    }

    ngx_http_twirt_redis_args_init(&args, pool, log, "EVAL");
    ngx_http_twirt_redis_args_str(&args, &ngx_http_twirt_control_send_script);
    ngx_http_twirt_redis_args_cstr(&args, "1");
    ngx_http_twirt_redis_args_key(&args, "call", call_sid, NULL);
    ngx_http_twirt_redis_args_str(&args, &stem);
    ngx_http_twirt_redis_args_cstr(&args, text);
    ngx_http_twirt_redis_args_cstr(&args, NGX_HTTP_TWIRT_CONTROL_TTL);

    if (handler == NULL) {
        rc = ngx_http_twirt_redis_args_send(&args);
        free(text);

        return (rc == NGX_BUSY) ? NGX_DECLINED : rc;
    }

    ctx = ngx_palloc(pool, sizeof(ngx_http_twirt_control_send_t));

    if (ctx == NULL || args.failed) {
        free(text);
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "twirt: control not sent: no memory");
        return NGX_ERROR;
    }

    ctx->handler = handler;
    ctx->data = data;
    ctx->read = NULL;
    ctx->log = log;

    /* the arguments are copied by hiredis before this returns */

    rc = ngx_http_twirt_redis_read(args.argc, args.argv, 0,
                                   ngx_http_twirt_control_sent, ctx,
                                   &ctx->read);
    free(text);

    if (rc != NGX_OK) {
        return rc;
    }

    if (handle) {
        *handle = ctx;
    }

    return NGX_OK;
}


void
ngx_http_twirt_control_cancel(void *handle)
{
    ngx_http_twirt_control_send_t  *ctx = handle;

    if (ctx == NULL || ctx->read == NULL) {
        return;
    }

    ngx_http_twirt_redis_cancel(ctx->read);
    ctx->read = NULL;
}


static void
ngx_http_twirt_control_sent(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_control_send_t  *ctx = data;

    ngx_uint_t                        i;
    ngx_keyval_t                     *kv;
    ngx_http_twirt_control_result_e   result;

    ctx->read = NULL;
    result = NGX_HTTP_TWIRT_CONTROL_FAILED;

    if (rc == NGX_OK) {
        kv = pairs->elts;

        for (i = 0; i < pairs->nelts; i++) {
            if (kv[i].key.len != sizeof("result") - 1
                || ngx_strncmp(kv[i].key.data, "result", kv[i].key.len) != 0)
            {
                continue;
            }

            for (result = NGX_HTTP_TWIRT_CONTROL_QUEUED;
                 result < NGX_HTTP_TWIRT_CONTROL_FAILED;
                 result++)
            {
                if (kv[i].value.len
                    == ngx_strlen(ngx_http_twirt_control_results[result])
                    && ngx_strncmp(kv[i].value.data,
                                   ngx_http_twirt_control_results[result],
                                   kv[i].value.len)
                       == 0)
                {
                    break;
                }
            }
        }

    } else {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "twirt: control: %s",
                      rc == NGX_DECLINED ? "no answer from Redis in time"
                                         : "Redis answered with an error");
    }

    ctx->handler(ctx->data, result);
}


/* receiving: this worker's list */


static ngx_int_t
ngx_http_twirt_control_init_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_control_drain_t  *cd;

    if ((ngx_process != NGX_PROCESS_WORKER
         && ngx_process != NGX_PROCESS_SINGLE)
        || !ngx_http_twirt_redis_configured())
    {
        return NGX_OK;
    }

    cd = &ngx_http_twirt_control_drain;

    ngx_memzero(cd, sizeof(ngx_http_twirt_control_drain_t));

    if (ngx_http_twirt_redis_key(cycle->pool, "control",
                                 ngx_http_twirt_control_worker(), NULL,
                                 &cd->key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* cancelable: a quitting worker does not wait for it */

    cd->timer.handler = ngx_http_twirt_control_tick;
    cd->timer.data = cd;
    cd->timer.log = cycle->log;
    cd->timer.cancelable = 1;

    ngx_add_timer(&cd->timer, NGX_HTTP_TWIRT_CONTROL_PERIOD);

    return NGX_OK;
}


static void
ngx_http_twirt_control_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_control_drain_t  *cd;

    cd = &ngx_http_twirt_control_drain;

    if (cd->timer.timer_set) {
        ngx_del_timer(&cd->timer);
    }

    if (cd->read) {
        ngx_http_twirt_redis_cancel(cd->read);
        cd->read = NULL;
    }
}


static void
ngx_http_twirt_control_tick(ngx_event_t *ev)
{
    ngx_http_twirt_control_drain_t  *cd = ev->data;

    ngx_int_t  rc;
    ngx_str_t  argv[6];

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        return;
    }

    if (cd->read == NULL) {
        ngx_str_set(&argv[0], "EVAL");
        argv[1] = ngx_http_twirt_control_drain_script;
        ngx_str_set(&argv[2], "1");
        argv[3] = cd->key;
        ngx_str_set(&argv[4], NGX_HTTP_TWIRT_CONTROL_BATCH);
        argv[5].data = (u_char *) ngx_value(NGX_HTTP_TWIRT_CONTROL_RAW_MAX);
        argv[5].len = ngx_strlen(argv[5].data);

        /* NGX_DECLINED: Redis is not connected now, the next tick tries */

        rc = ngx_http_twirt_redis_read(6, argv, 0,
                                       ngx_http_twirt_control_drained, cd,
                                       &cd->read);
        if (rc != NGX_OK) {
            cd->read = NULL;
        }
    }

    ngx_add_timer(ev, NGX_HTTP_TWIRT_CONTROL_PERIOD);
}


static void
ngx_http_twirt_control_drained(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_control_drain_t  *cd = data;

    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    cd->read = NULL;

    if (rc != NGX_OK) {
        if (rc != cd->failed) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "twirt: control messages not read from \"%V\": %s",
                          &cd->key,
                          rc == NGX_DECLINED ? "no answer in time"
                                             : "Redis answered with an error");
        }

        cd->failed = rc;
        return;
    }

    cd->failed = NGX_OK;
    kv = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {
        if (kv[i].key.len == 1 && kv[i].key.data[0] == 'm') {
            ngx_http_twirt_control_apply(&kv[i].value);
            continue;
        }

        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CONTROL_INVALID, 1);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "twirt: dropped a control message of %V bytes: "
                      "longer than %d", &kv[i].value,
                      NGX_HTTP_TWIRT_CONTROL_RAW_MAX);
    }
}


static void
ngx_http_twirt_control_apply(ngx_str_t *raw)
{
    json_t        *root, *v;
    ngx_int_t      rc;
    ngx_str_t      call_sid, action, message, *m;
    json_error_t   err;

    if (raw->len > NGX_HTTP_TWIRT_CONTROL_RAW_MAX) {
        ngx_http_twirt_control_invalid(raw, "too long");
        return;
    }

    root = json_loadb((char *) raw->data, raw->len, JSON_REJECT_DUPLICATES,
                      &err);

    if (!json_is_object(root)) {
        json_decref(root);
        ngx_http_twirt_control_invalid(raw, "not a JSON object");
        return;
    }

    v = json_object_get(root, "call");
    call_sid.data = (u_char *) json_string_value(v);
    call_sid.len = call_sid.data ? json_string_length(v) : 0;

    if (call_sid.data == NULL
        || ngx_http_twirt_sid_valid(&call_sid) != NGX_OK)
    {
        json_decref(root);
        ngx_http_twirt_control_invalid(raw, "no valid \"call\"");
        return;
    }

    v = json_object_get(root, "action");
    action.data = (u_char *) json_string_value(v);
    action.len = action.data ? json_string_length(v) : 0;

    if (action.data == NULL
        || (ngx_strcmp(action.data, "hangup") != 0
            && ngx_strcmp(action.data, "machine") != 0)
        || action.len != ngx_strlen(action.data))
    {
        json_decref(root);
        ngx_http_twirt_control_invalid(raw, "an unknown \"action\"");
        return;
    }

    v = json_object_get(root, "message");
    m = NULL;

    if (json_is_string(v)) {
        message.data = (u_char *) json_string_value(v);
        message.len = json_string_length(v);
        m = &message;

        if (message.len > NGX_HTTP_TWIRT_CONTROL_MESSAGE_MAX) {
            json_decref(root);
            ngx_http_twirt_control_invalid(raw, "a \"message\" too long");
            return;
        }

    } else if (v && !json_is_null(v)) {
        json_decref(root);
        ngx_http_twirt_control_invalid(raw, "a \"message\" not a string");
        return;
    }

    rc = ngx_http_twirt_call_control(&call_sid, &action, m);

    json_decref(root);

    switch (rc) {

    case NGX_OK:
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CONTROL_APPLIED, 1);
        break;

    case NGX_DECLINED:
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CONTROL_UNKNOWN_CALL, 1);
        break;

    default:
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CONTROL_INVALID, 1);
        break;
    }
}


static void
ngx_http_twirt_control_invalid(ngx_str_t *raw, const char *why)
{
    ngx_http_twirt_log_text_t  t;

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_CONTROL_INVALID, 1);

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "twirt: dropped a control message, %s: \"%V\"", why,
                  ngx_http_twirt_log_str(&t, raw));
}
