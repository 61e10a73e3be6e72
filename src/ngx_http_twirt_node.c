
/*
 * Nodes that share one Redis (README, "Scaling out").  Every worker of
 * every node, every third of twirt_node_timeout, runs one script that
 *
 *   - says its node is alive: {prefix}nodes, a sorted set of node names
 *     by the time (Redis's clock, so that the nodes' clocks need not
 *     agree) they last said so;
 *   - finds the nodes that have not said so for twirt_node_timeout, and
 *     takes them out of the set;
 *   - marks each of their calls still in {prefix}calls:active failed,
 *     with the end reason node_lost, as the node itself would have on
 *     its way out (the hash, a "state" event on the call's stream and on
 *     the board's feed), and takes it out of the active set.
 *
 * A script runs alone in Redis, so a lost node's calls are marked once,
 * by whichever worker comes first; that worker counts them
 * (twirt_calls_node_lost_total) and logs each.  A reload is not a death:
 * the new workers say so within one period, well inside the timeout; the
 * old ones stop saying so when they start to exit (the timer is
 * cancelable).  A node is never lost to itself.
 */


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_node.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_metrics.h"


/*
 * KEYS: the nodes, the active calls, the board's feed.  ARGV: the prefix,
 * this node, the timeout (ms), the calls' TTL (s), the feed's length, the
 * channel, the time as records write it (this node's clock, ISO 8601).
 * Returns the calls marked, as pairs (CallSid, node).
 */

static ngx_str_t  ngx_http_twirt_node_script = ngx_string(
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "redis.call('ZADD', KEYS[1], now, ARGV[2]) "
    "local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', "
                           "now - tonumber(ARGV[3])) "
    "local lost, any, out = {}, false, {} "
    "for _, n in ipairs(old) do "
      "if n ~= ARGV[2] then "
        "lost[n] = true any = true "
        "redis.call('ZREM', KEYS[1], n) "
      "end "
    "end "
    "if not any then return out end "
    "local ttl = tonumber(ARGV[4]) "
    "for _, sid in ipairs(redis.call('SMEMBERS', KEYS[2])) do "
      "local h = ARGV[1] .. 'call:' .. sid "
      "local n = redis.call('HGET', h, 'node') "
      "if n and lost[n] then "
        "local detail = 'node ' .. n .. ' stopped answering' "
        "redis.call('HSET', h, 'status', 'failed', 'ended_at', ARGV[7], "
                   "'end_reason', 'node_lost', 'end_detail', detail, "
                   "'tools_running', '0') "
        "redis.call('SREM', KEYS[2], sid) "
        "local s = h .. ':events' "
        "local id = redis.call('XADD', s, '*', 'call_sid', sid, "
                              "'detail', detail, 'node', n, "
                              "'reason', 'node_lost', 'status', 'failed', "
                              "'type', 'state') "
        "local j = cjson.encode({event_id = id, call_sid = sid, "
                               "detail = detail, node = n, "
                               "reason = 'node_lost', status = 'failed', "
                               "type = 'state'}) "
        "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'j', j) "
        "redis.call('PUBLISH', ARGV[6], j) "
        "redis.call('EXPIRE', h, ttl) "
        "redis.call('EXPIRE', s, ttl) "
        "table.insert(out, sid) table.insert(out, n) "
      "end "
    "end "
    "return out");


typedef struct {
    ngx_event_t                 timer;
    ngx_pool_t                 *pool;        /* one run's arguments */
    void                       *read;        /* the script in flight */
    ngx_log_t                  *log;
} ngx_http_twirt_node_t;


static void ngx_http_twirt_node_tick(ngx_event_t *ev);
static void ngx_http_twirt_node_marked(void *data, ngx_int_t rc,
    ngx_array_t *pairs);


static ngx_http_twirt_node_t  ngx_http_twirt_node;


void
ngx_http_twirt_node_init(ngx_cycle_t *cycle)
{
    ngx_http_twirt_node_t  *node = &ngx_http_twirt_node;

    ngx_memzero(node, sizeof(ngx_http_twirt_node_t));

    node->log = cycle->log;
    node->pool = ngx_create_pool(1024, cycle->log);

    if (node->pool == NULL) {
        return;
    }

    node->timer.handler = ngx_http_twirt_node_tick;
    node->timer.data = node;
    node->timer.log = cycle->log;
    node->timer.cancelable = 1;

    /* at once: the connection may not be up yet, then one period later */
    ngx_add_timer(&node->timer, 1);
}


void
ngx_http_twirt_node_exit(void)
{
    ngx_http_twirt_node_t  *node = &ngx_http_twirt_node;

    if (node->timer.timer_set) {
        ngx_del_timer(&node->timer);
    }

    if (node->read) {
        ngx_http_twirt_redis_cancel(node->read);
        node->read = NULL;
    }

    if (node->pool) {
        ngx_destroy_pool(node->pool);
        node->pool = NULL;
    }
}


static void
ngx_http_twirt_node_tick(ngx_event_t *ev)
{
    ngx_http_twirt_node_t  *node = ev->data;

    ngx_int_t                     rc;
    ngx_msec_t                    timeout;
    ngx_http_twirt_redis_args_t   args;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    timeout = ngx_http_twirt_redis_node_timeout();

    ngx_add_timer(&node->timer, timeout / 3);

    if (node->read) {
        /* the last one is still unanswered: one at a time */
        return;
    }

    ngx_reset_pool(node->pool);

    ngx_http_twirt_redis_args_init(&args, node->pool, node->log, "EVAL");
    ngx_http_twirt_redis_args_str(&args, &ngx_http_twirt_node_script);
    ngx_http_twirt_redis_args_cstr(&args, "3");
    ngx_http_twirt_redis_args_key(&args, "nodes", NULL, NULL);
    ngx_http_twirt_redis_args_key(&args, "calls:active", NULL, NULL);
    ngx_http_twirt_redis_args_key(&args, "events:stream", NULL, NULL);
    ngx_http_twirt_redis_args_key(&args, "", NULL, NULL);
    ngx_http_twirt_redis_args_str(&args, ngx_http_twirt_redis_node());
    ngx_http_twirt_redis_args_num(&args, "%M", timeout);
    ngx_http_twirt_redis_args_num(&args, "%T", ngx_http_twirt_redis_ttl());
    ngx_http_twirt_redis_args_num(&args, "%d", NGX_HTTP_TWIRT_RECORD_FEED);
    ngx_http_twirt_redis_args_key(&args, "events", NULL, NULL);
    ngx_http_twirt_redis_args_now(&args);

    if (args.failed) {
        ngx_log_error(NGX_LOG_ALERT, node->log, 0,
                      "twirt: the node heartbeat could not be built");
        return;
    }

    rc = ngx_http_twirt_redis_read(args.argc, args.argv, 0,
                                   ngx_http_twirt_node_marked, node,
                                   &node->read);

    if (rc != NGX_OK) {
        /* not connected now: the next period tries again */
        node->read = NULL;
    }
}


static void
ngx_http_twirt_node_marked(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_node_t  *node = data;

    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    node->read = NULL;

    if (rc != NGX_OK) {
        if (rc == NGX_ERROR) {
            ngx_log_error(NGX_LOG_ERR, node->log, 0,
                          "twirt: the node heartbeat failed in Redis");
        }

        return;
    }

    kv = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {
        ngx_log_error(NGX_LOG_WARN, node->log, 0,
                      "twirt: call %V marked failed (node_lost): node "
                      "\"%V\" has not been heard of for %M ms",
                      &kv[i].key, &kv[i].value,
                      ngx_http_twirt_redis_node_timeout());
    }

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_NODE_LOST, pairs->nelts);
}
