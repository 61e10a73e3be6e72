
/*
 * twirt: the per-worker Redis connection, as the rest of twirt sees it.
 *
 * Everything here is safe to call from any handler of a worker and never
 * blocks: commands are copied and queued, reads answer through a callback.
 * Without "twirt_redis" in the configuration the calls do nothing and
 * return NGX_DECLINED.  Keys are built here, from the prefix, by
 * ngx_http_twirt_redis_key() alone.
 */


#ifndef _NGX_HTTP_TWIRT_REDIS_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REDIS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_TWIRT_REDIS_ARGS  64


/*
 * rc is NGX_OK with the hash as an array of ngx_keyval_t (field, value),
 * empty for a missing key; NGX_ERROR when Redis answered with an error or
 * not with a hash; NGX_DECLINED when no answer came: the connection was
 * lost or the timeout expired.  The array and the strings are valid only
 * during the call.
 */
typedef void (*ngx_http_twirt_redis_hash_pt)(void *data, ngx_int_t rc,
    ngx_array_t *pairs);


/* per worker */
typedef struct {
    ngx_uint_t                  queued;      /* held: waiting or unanswered */
    ngx_uint_t                  dropped;     /* refused: the queue was full */
    ngx_uint_t                  reconnects;  /* connection back after a loss */
    ngx_uint_t                  errors;      /* failed attempts, losses,
                                                error replies */
    ngx_uint_t                  connected;   /* 1 when commands go out */
    ngx_uint_t                  sent;        /* commands Redis answered */
    ngx_uint_t                  unbuilt;     /* not sent: an argument or
                                                the copy could not be made */
} ngx_http_twirt_redis_stats_t;


/*
 * A command built one argument at a time.  An argument that cannot be
 * added (no memory, more than NGX_HTTP_TWIRT_REDIS_ARGS) spoils the whole
 * command: later arguments are ignored and ngx_http_twirt_redis_args_send()
 * sends nothing, counts it (stats "unbuilt") and logs it, once.  Nothing
 * ever slides into another argument's slot.  Arguments point into the
 * caller's memory or the pool until the command is sent, copied then.
 */
typedef struct {
    ngx_str_t                   argv[NGX_HTTP_TWIRT_REDIS_ARGS];
    ngx_uint_t                  argc;
    ngx_uint_t                  failed;      /* the first argument lost,
                                                from 1; 0: none */
    ngx_pool_t                 *pool;
    ngx_log_t                  *log;
} ngx_http_twirt_redis_args_t;


/*
 * Queues one command; argv is copied, the caller keeps its memory.
 * NGX_OK: queued or sent; NGX_BUSY: dropped, the queue is full;
 * NGX_DECLINED: Redis is not configured; NGX_ERROR: an empty or a
 * connection-state command (SUBSCRIBE, MULTI, SELECT, BLPOP...), or no
 * memory.
 */
ngx_int_t ngx_http_twirt_redis_command(ngx_uint_t argc, ngx_str_t *argv);

/*
 * HGETALL key.  NGX_OK: handler will be called exactly once, never from
 * inside this call, unless ngx_http_twirt_redis_cancel(*handle) is called
 * first; *handle is valid until then.  NGX_DECLINED: Redis is not
 * configured, not connected now, or too many reads are waiting (the
 * handler is not called: go on without Redis).  NGX_ERROR: no memory.
 * A timeout of 0 means "twirt_redis_timeout".
 */
ngx_int_t ngx_http_twirt_redis_hgetall(ngx_str_t *key, ngx_msec_t timeout,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle);

/*
 * Any read answered with a flat array of strings of even length (HGETALL,
 * or a script that returns pairs): the same contract as above.
 */
ngx_int_t ngx_http_twirt_redis_read(ngx_uint_t argc, ngx_str_t *argv,
    ngx_msec_t timeout, ngx_http_twirt_redis_hash_pt handler, void *data,
    void **handle);

/* the caller went away: its handler will not be called */
void ngx_http_twirt_redis_cancel(void *handle);

void ngx_http_twirt_redis_args_init(ngx_http_twirt_redis_args_t *args,
    ngx_pool_t *pool, ngx_log_t *log, const char *name);
void ngx_http_twirt_redis_args_add(ngx_http_twirt_redis_args_t *args,
    u_char *data, size_t len);
void ngx_http_twirt_redis_args_cstr(ngx_http_twirt_redis_args_t *args,
    const char *s);
void ngx_http_twirt_redis_args_str(ngx_http_twirt_redis_args_t *args,
    ngx_str_t *s);
void ngx_http_twirt_redis_args_num(ngx_http_twirt_redis_args_t *args,
    const char *fmt, ...);
void ngx_http_twirt_redis_args_now(ngx_http_twirt_redis_args_t *args);
void ngx_http_twirt_redis_args_key(ngx_http_twirt_redis_args_t *args,
    const char *kind, ngx_str_t *id, const char *suffix);

/*
 * ngx_http_twirt_redis_command() of a built command; NGX_ERROR, and
 * nothing sent, when it could not be built.
 */
ngx_int_t ngx_http_twirt_redis_args_send(ngx_http_twirt_redis_args_t *args);

/*
 * The one place keys are made: {prefix}{kind}:{id}{suffix}, or
 * {prefix}{kind}{suffix} without an id ("call", CallSid, ":events";
 * "calls:active", NULL, NULL).  The id is checked by the caller.
 */
ngx_int_t ngx_http_twirt_redis_key(ngx_pool_t *pool, const char *kind,
    ngx_str_t *id, const char *suffix, ngx_str_t *key);

/* 1 when "twirt_redis" is in the configuration */
ngx_uint_t ngx_http_twirt_redis_configured(void);

time_t ngx_http_twirt_redis_ttl(void);
ngx_str_t *ngx_http_twirt_redis_node(void);
ngx_msec_t ngx_http_twirt_redis_node_timeout(void);   /* twirt_node_timeout */
ngx_http_twirt_redis_stats_t *ngx_http_twirt_redis_stats(void);


extern ngx_module_t  ngx_http_twirt_redis_module;


#endif /* _NGX_HTTP_TWIRT_REDIS_H_INCLUDED_ */
