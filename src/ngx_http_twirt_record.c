
/*
 * The call record in Redis (BRIEF.md "Redis"):
 *
 *   {prefix}call:{CallSid}          hash: status, stream_sid, agent, from, to,
 *                                   direction, started_at, answered_at,
 *                                   ended_at, end_reason, openai_session_id,
 *                                   tokens, cost_usd, node
 *   {prefix}call:{CallSid}:events   stream: transcript lines, state changes,
 *                                   tool calls, errors
 *   PUBLISH {prefix}events          the same events as JSON
 *   {prefix}calls:active            set of the calls in progress
 *   {prefix}agent:{name}            hash: an agent profile, read at start
 *
 * Commands are argument vectors: nothing from a caller is ever formatted
 * into a command string.  CallSids are checked when "start" arrives
 * (letters, digits, '_', '-'), so keys need no escaping.
 */


#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_profile.h"


#define NGX_HTTP_TWIRT_ARGS  32


typedef struct {
    ngx_str_t    argv[NGX_HTTP_TWIRT_ARGS];
    ngx_uint_t   argc;
    ngx_pool_t  *pool;
} ngx_http_twirt_cmd_t;


static void ngx_http_twirt_cmd_init(ngx_http_twirt_cmd_t *cmd,
    ngx_pool_t *pool, const char *name);
static void ngx_http_twirt_cmd_arg(ngx_http_twirt_cmd_t *cmd, u_char *data,
    size_t len);
static void ngx_http_twirt_cmd_cstr(ngx_http_twirt_cmd_t *cmd,
    const char *s);
static void ngx_http_twirt_cmd_str(ngx_http_twirt_cmd_t *cmd, ngx_str_t *s);
static void ngx_http_twirt_cmd_num(ngx_http_twirt_cmd_t *cmd,
    const char *fmt, ...);
static void ngx_http_twirt_cmd_param(ngx_http_twirt_cmd_t *cmd,
    ngx_http_twirt_call_t *call, const char *field, const char *param);
static void ngx_http_twirt_cmd_send(ngx_http_twirt_cmd_t *cmd);
static void ngx_http_twirt_cmd_now(ngx_http_twirt_cmd_t *cmd);
static void ngx_http_twirt_record_profile_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs);


ngx_int_t
ngx_http_twirt_record_call_key(ngx_pool_t *pool, ngx_str_t *sid,
    const char *suffix, ngx_str_t *key)
{
    u_char     *p;
    ngx_str_t  *prefix;

    prefix = ngx_http_twirt_redis_prefix();

    key->len = prefix->len + sizeof("call:") - 1 + sid->len
               + ngx_strlen(suffix);

    key->data = ngx_pnalloc(pool, key->len);
    if (key->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(key->data, prefix->data, prefix->len);
    p = ngx_cpymem(p, "call:", sizeof("call:") - 1);
    p = ngx_cpymem(p, sid->data, sid->len);
    ngx_memcpy(p, suffix, ngx_strlen(suffix));

    return NGX_OK;
}


void
ngx_http_twirt_record_start(ngx_http_twirt_call_t *call)
{
    ngx_str_t              key, set;
    ngx_str_t             *prefix;
    ngx_http_twirt_cmd_t   cmd;

    if (ngx_http_twirt_record_call_key(call->pool, &call->call_sid, "", &key)
        != NGX_OK)
    {
        return;
    }

    ngx_http_twirt_cmd_init(&cmd, call->pool, "HSET");
    ngx_http_twirt_cmd_str(&cmd, &key);
    ngx_http_twirt_cmd_cstr(&cmd, "status");
    ngx_http_twirt_cmd_cstr(&cmd, "connecting");
    ngx_http_twirt_cmd_cstr(&cmd, "stream_sid");
    ngx_http_twirt_cmd_str(&cmd, &call->stream_sid);
    ngx_http_twirt_cmd_cstr(&cmd, "account_sid");
    ngx_http_twirt_cmd_str(&cmd, &call->account_sid);
    ngx_http_twirt_cmd_param(&cmd, call, "agent", "agent");
    ngx_http_twirt_cmd_param(&cmd, call, "from", "from");
    ngx_http_twirt_cmd_param(&cmd, call, "to", "to");
    ngx_http_twirt_cmd_param(&cmd, call, "direction", "direction");
    ngx_http_twirt_cmd_cstr(&cmd, "started_at");
    ngx_http_twirt_cmd_now(&cmd);
    ngx_http_twirt_cmd_cstr(&cmd, "node");
    ngx_http_twirt_cmd_str(&cmd, ngx_http_twirt_redis_node());
    ngx_http_twirt_cmd_send(&cmd);

    prefix = ngx_http_twirt_redis_prefix();
    set.len = prefix->len + sizeof("calls:active") - 1;
    set.data = ngx_pnalloc(call->pool, set.len);
    if (set.data == NULL) {
        return;
    }

    ngx_memcpy(ngx_cpymem(set.data, prefix->data, prefix->len),
               "calls:active", sizeof("calls:active") - 1);

    ngx_http_twirt_cmd_init(&cmd, call->pool, "SADD");
    ngx_http_twirt_cmd_str(&cmd, &set);
    ngx_http_twirt_cmd_str(&cmd, &call->call_sid);
    ngx_http_twirt_cmd_send(&cmd);
}


/*
 * One event: an entry of the call's stream (its scalar fields), the same
 * JSON published for live dashboards, and for state changes the status
 * in the hash.
 */

void
ngx_http_twirt_record_event(ngx_http_twirt_call_t *call, json_t *ev,
    const char *text)
{
    u_char                *p;
    json_t                *v;
    ngx_str_t              key, channel, *prefix;
    const char            *name, *status;
    ngx_http_twirt_cmd_t   cmd;

    if (!ngx_http_twirt_call_started(call)) {
        return;
    }

    if (ngx_http_twirt_record_call_key(call->pool, &call->call_sid,
                                       ":events", &key)
        != NGX_OK)
    {
        return;
    }

    ngx_http_twirt_cmd_init(&cmd, call->pool, "XADD");
    ngx_http_twirt_cmd_str(&cmd, &key);
    ngx_http_twirt_cmd_cstr(&cmd, "*");

    json_object_foreach(ev, name, v) {
        if (json_is_string(v)) {
            ngx_http_twirt_cmd_cstr(&cmd, name);
            ngx_http_twirt_cmd_arg(&cmd, (u_char *) json_string_value(v),
                                   json_string_length(v));

        } else if (json_is_integer(v)) {
            ngx_http_twirt_cmd_cstr(&cmd, name);
            ngx_http_twirt_cmd_num(&cmd, "%L",
                                   (int64_t) json_integer_value(v));

        } else if (json_is_real(v)) {
            ngx_http_twirt_cmd_cstr(&cmd, name);
            ngx_http_twirt_cmd_num(&cmd, "%.6f", json_real_value(v));
        }
    }

    ngx_http_twirt_cmd_send(&cmd);

    prefix = ngx_http_twirt_redis_prefix();
    channel.len = prefix->len + sizeof("events") - 1;
    channel.data = ngx_pnalloc(call->pool, channel.len);
    if (channel.data == NULL) {
        return;
    }

    p = ngx_cpymem(channel.data, prefix->data, prefix->len);
    ngx_memcpy(p, "events", sizeof("events") - 1);

    ngx_http_twirt_cmd_init(&cmd, call->pool, "PUBLISH");
    ngx_http_twirt_cmd_str(&cmd, &channel);
    ngx_http_twirt_cmd_cstr(&cmd, text);
    ngx_http_twirt_cmd_send(&cmd);

    status = json_string_value(json_object_get(ev, "status"));

    if (status && ngx_strcmp(status, "active") == 0
        && ngx_http_twirt_record_call_key(call->pool, &call->call_sid, "",
                                          &key)
           == NGX_OK)
    {
        ngx_http_twirt_cmd_init(&cmd, call->pool, "HSET");
        ngx_http_twirt_cmd_str(&cmd, &key);
        ngx_http_twirt_cmd_cstr(&cmd, "status");
        ngx_http_twirt_cmd_cstr(&cmd, "active");
        ngx_http_twirt_cmd_cstr(&cmd, "answered_at");
        ngx_http_twirt_cmd_now(&cmd);
        ngx_http_twirt_cmd_cstr(&cmd, "openai_session_id");
        ngx_http_twirt_cmd_str(&cmd, &call->session_id);
        ngx_http_twirt_cmd_send(&cmd);
    }
}


/* the final record; then the call leaves the active set and expires */

void
ngx_http_twirt_record_end(ngx_http_twirt_call_t *call)
{
    time_t                 ttl;
    ngx_str_t              key, events, set, *prefix;
    ngx_msec_t             ms;
    ngx_http_twirt_cmd_t   cmd;

    if (!ngx_http_twirt_call_started(call)) {
        return;
    }

    if (ngx_http_twirt_record_call_key(call->pool, &call->call_sid, "", &key)
        != NGX_OK
        || ngx_http_twirt_record_call_key(call->pool, &call->call_sid,
                                          ":events", &events)
           != NGX_OK)
    {
        return;
    }

    ms = ngx_current_msec - call->upgraded;

    ngx_http_twirt_cmd_init(&cmd, call->pool, "HSET");
    ngx_http_twirt_cmd_str(&cmd, &key);
    ngx_http_twirt_cmd_cstr(&cmd, "status");
    ngx_http_twirt_cmd_cstr(&cmd, ngx_http_twirt_call_failed(call)
                                  ? "failed" : "ended");
    ngx_http_twirt_cmd_cstr(&cmd, "ended_at");
    ngx_http_twirt_cmd_now(&cmd);
    ngx_http_twirt_cmd_cstr(&cmd, "end_reason");
    ngx_http_twirt_cmd_str(&cmd, &ngx_http_twirt_end_kind(call->end)->name);
    ngx_http_twirt_cmd_cstr(&cmd, "end_detail");
    ngx_http_twirt_cmd_cstr(&cmd, call->end_detail);
    ngx_http_twirt_cmd_cstr(&cmd, "duration_ms");
    ngx_http_twirt_cmd_num(&cmd, "%M", ms);
    ngx_http_twirt_cmd_cstr(&cmd, "openai_session_id");
    ngx_http_twirt_cmd_str(&cmd, &call->session_id);
    ngx_http_twirt_cmd_cstr(&cmd, "tokens");
    ngx_http_twirt_cmd_num(&cmd, "%uL", call->usage.total);
    ngx_http_twirt_cmd_cstr(&cmd, "cost_usd");
    ngx_http_twirt_cmd_num(&cmd, "%.6f",
                           ngx_http_twirt_realtime_cost(call->conf->prices,
                                                        &call->usage));
    ngx_http_twirt_cmd_send(&cmd);

    prefix = ngx_http_twirt_redis_prefix();
    set.len = prefix->len + sizeof("calls:active") - 1;
    set.data = ngx_pnalloc(call->pool, set.len);

    if (set.data) {
        ngx_memcpy(ngx_cpymem(set.data, prefix->data, prefix->len),
                   "calls:active", sizeof("calls:active") - 1);

        ngx_http_twirt_cmd_init(&cmd, call->pool, "SREM");
        ngx_http_twirt_cmd_str(&cmd, &set);
        ngx_http_twirt_cmd_str(&cmd, &call->call_sid);
        ngx_http_twirt_cmd_send(&cmd);
    }

    ttl = ngx_http_twirt_redis_ttl();

    ngx_http_twirt_cmd_init(&cmd, call->pool, "EXPIRE");
    ngx_http_twirt_cmd_str(&cmd, &key);
    ngx_http_twirt_cmd_num(&cmd, "%T", ttl);
    ngx_http_twirt_cmd_send(&cmd);

    ngx_http_twirt_cmd_init(&cmd, call->pool, "EXPIRE");
    ngx_http_twirt_cmd_str(&cmd, &events);
    ngx_http_twirt_cmd_num(&cmd, "%T", ttl);
    ngx_http_twirt_cmd_send(&cmd);
}


/*
 * Reads {prefix}agent:{name}.  NGX_OK: the call waits for
 * ngx_http_twirt_record_profile_read(); NGX_DECLINED: go on with the
 * configuration's defaults.
 */

ngx_int_t
ngx_http_twirt_record_profile(ngx_http_twirt_call_t *call, ngx_str_t *agent,
    ngx_http_twirt_record_profile_pt handler)
{
    u_char     *p;
    ngx_int_t   rc;
    ngx_str_t   key, *prefix;

    prefix = ngx_http_twirt_redis_prefix();

    key.len = prefix->len + sizeof("agent:") - 1 + agent->len;
    key.data = ngx_pnalloc(call->pool, key.len);
    if (key.data == NULL) {
        return NGX_DECLINED;
    }

    p = ngx_cpymem(key.data, prefix->data, prefix->len);
    p = ngx_cpymem(p, "agent:", sizeof("agent:") - 1);
    ngx_memcpy(p, agent->data, agent->len);

    call->profile_handler = handler;

    rc = ngx_http_twirt_redis_hgetall(&key, call->conf->agent_timeout,
                                      ngx_http_twirt_record_profile_read,
                                      call, &call->profile_handle);

    if (rc == NGX_OK) {
        return NGX_OK;
    }

    call->profile_handle = NULL;

    ngx_log_error(NGX_LOG_WARN, call->log, 0,
                  "twirt: agent profile \"%V\" cannot be read now (Redis "
                  "not configured or not connected), using the defaults",
                  agent);

    return NGX_DECLINED;
}


void
ngx_http_twirt_record_cancel(ngx_http_twirt_call_t *call)
{
    if (call->profile_handle) {
        ngx_http_twirt_redis_cancel(call->profile_handle);
        call->profile_handle = NULL;
    }
}


/* the profile becomes the JSON object the session is built from */

static void
ngx_http_twirt_record_profile_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs)
{
    ngx_http_twirt_call_t  *call = data;

    json_t  *profile;

    call->profile_handle = NULL;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: agent profile not read in time (%s), using "
                      "the defaults",
                      rc == NGX_DECLINED ? "no answer" : "Redis error");
        goto done;
    }

    profile = ngx_http_twirt_profile_parse(call->log, pairs);

    if (profile == NULL) {
        goto done;
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: agent profile read, %ui fields", pairs->nelts);

    call->profile_handler(call, profile);
    return;

done:

    call->profile_handler(call, NULL);
}


static void
ngx_http_twirt_cmd_init(ngx_http_twirt_cmd_t *cmd, ngx_pool_t *pool,
    const char *name)
{
    cmd->argc = 0;
    cmd->pool = pool;
    ngx_http_twirt_cmd_cstr(cmd, name);
}


static void
ngx_http_twirt_cmd_arg(ngx_http_twirt_cmd_t *cmd, u_char *data, size_t len)
{
    if (cmd->argc == NGX_HTTP_TWIRT_ARGS) {
        return;
    }

    cmd->argv[cmd->argc].data = data;
    cmd->argv[cmd->argc].len = len;
    cmd->argc++;
}


static void
ngx_http_twirt_cmd_cstr(ngx_http_twirt_cmd_t *cmd, const char *s)
{
    ngx_http_twirt_cmd_arg(cmd, (u_char *) s, ngx_strlen(s));
}


static void
ngx_http_twirt_cmd_str(ngx_http_twirt_cmd_t *cmd, ngx_str_t *s)
{
    ngx_http_twirt_cmd_arg(cmd, s->data, s->len);
}


/* numbers are formatted into the call's pool: argv is copied at send */

static void
ngx_http_twirt_cmd_num(ngx_http_twirt_cmd_t *cmd, const char *fmt, ...)
{
    u_char   *p, *last;
    va_list   args;

    p = ngx_pnalloc(cmd->pool, 32);
    if (p == NULL) {
        return;
    }

    va_start(args, fmt);
    last = ngx_vslprintf(p, p + 32, fmt, args);
    va_end(args);

    ngx_http_twirt_cmd_arg(cmd, p, last - p);
}


/* a field from the stream's parameters, when Twilio sent it */

static void
ngx_http_twirt_cmd_param(ngx_http_twirt_cmd_t *cmd,
    ngx_http_twirt_call_t *call, const char *field, const char *param)
{
    json_t  *v;

    v = json_object_get(call->parameters, param);

    if (!json_is_string(v)) {
        return;
    }

    ngx_http_twirt_cmd_cstr(cmd, field);
    ngx_http_twirt_cmd_arg(cmd, (u_char *) json_string_value(v),
                           json_string_length(v));
}


/* ISO 8601 UTC with milliseconds */

static void
ngx_http_twirt_cmd_now(ngx_http_twirt_cmd_t *cmd)
{
    u_char      *p, *last;
    ngx_tm_t     tm;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    p = ngx_pnalloc(cmd->pool, sizeof("2026-11-21T00:00:00.000Z"));
    if (p == NULL) {
        return;
    }

    last = ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03MZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       tp->msec);

    ngx_http_twirt_cmd_arg(cmd, p, last - p);
}


static void
ngx_http_twirt_cmd_send(ngx_http_twirt_cmd_t *cmd)
{
    (void) ngx_http_twirt_redis_command(cmd->argc, cmd->argv);
}
