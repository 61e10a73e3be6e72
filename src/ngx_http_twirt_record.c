
/*
 * The call record in Redis (README, "Redis"):
 *
 *   {prefix}call:{CallSid}          hash: status, stream_sid, agent, from, to,
 *                                   direction, started_at, answered_at,
 *                                   ended_at, end_reason, end_detail,
 *                                   openai_session_id,
 *                                   tokens, cost_usd, node, worker
 *                                   transfer_target, transfer_number,
 *                                   transfer_caller_id, transfer_timeout,
 *                                   transfer_summary, transfer_result
 *   {prefix}call:{CallSid}:events   stream: transcript lines, state changes,
 *                                   tool calls, transfers, errors
 *   {prefix}events:stream           every call's events as JSON (field
 *                                   "j"), capped: the board's feed
 *   PUBLISH {prefix}events          the same JSON
 *   {prefix}calls:active            set of the calls in progress
 *   {prefix}calls:history           sorted set of the calls by start,
 *   {prefix}calls:number:{E.164}    and by number and by agent (the
 *   {prefix}calls:agent:{name}      board's search), trimmed to the TTL
 *   {prefix}stats:{hour}            hash: calls started per minute, cost,
 *                                   durations of the calls that ended
 *   {prefix}agent:{name}            hash: an agent profile, read at start
 *
 * Commands are argument vectors built by the Redis module's builder: a
 * command missing an argument is not sent.  Nothing from a caller is ever
 * formatted into a command string.  CallSids are checked when "start"
 * arrives (letters, digits, '_', '-'), so keys need no escaping.
 */


#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_profile.h"
#include "ngx_http_twirt_control.h"


/* a profile read in flight: what the caller gave */
typedef struct {
    ngx_http_twirt_record_profile_pt   handler;
    void                              *data;
    void                             **handle;
    void                              *read;        /* the Redis read */
    ngx_log_t                         *log;
} ngx_http_twirt_record_profile_ctx_t;


/*
 * A call's record belongs to the stream that created it: every write is
 * run by a script that first checks the hash's stream_sid (none yet, or
 * this stream's), so a second stream claiming the same CallSid, on this
 * node or another, changes nothing of it.
 */

static ngx_str_t  ngx_http_twirt_record_owned = ngx_string(
    "local o = redis.call('HGET', KEYS[1], 'stream_sid') "
    "if o and o ~= ARGV[1] then return 0 end "
    "return redis.call(unpack(ARGV, 2))");


static ngx_str_t  ngx_http_twirt_record_takeover = ngx_string(
    "local o = redis.call('HGET', KEYS[1], 'stream_sid') "
    "if o and o ~= ARGV[1] then "
    "if redis.call('HGET', KEYS[1], 'end_reason') ~= 'transfer' "
    "then return 0 end "
    "redis.call('HDEL', KEYS[1], 'end_reason', 'end_detail', 'ended_at', "
    "'board_cost') "
    "end "
    "return redis.call(unpack(ARGV, 2))");


/*
 * The last transcript lines of a call's events, oldest first, as pairs
 * (role, text): ARGV[1] entries scanned, ARGV[2] lines, ARGV[3] bytes.
 */

/*
 * An event: an entry of the call's stream (its scalar fields), the same
 * JSON with the entry's id in the board's feed and published, and the
 * counters the board lists calls with.  KEYS: the hash, the call's
 * stream, the feed; ARGV: 1 to check the owner (0: a call-level
 * event), the owner's StreamSid, the channel, the feed's length, the
 * JSON, then the fields.
 */

static ngx_str_t  ngx_http_twirt_record_event_script = ngx_string(
    "local h = KEYS[1] "
    "if ARGV[1] == '1' then "
      "local o = redis.call('HGET', h, 'stream_sid') "
      "if o and o ~= ARGV[2] then return 0 end "
    "end "
    "local id = redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6)) "
    "local j = '{\"event_id\":\"' .. id .. '\",' .. string.sub(ARGV[5], 2) "
    "redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'j', j) "
    "redis.call('PUBLISH', ARGV[3], j) "
    "local f = {} "
    "for i = 6, #ARGV - 1, 2 do f[ARGV[i]] = ARGV[i + 1] end "
    "if f.type == 'barge_in' then "
      "redis.call('HINCRBY', h, 'barge_ins', 1) "
    "elseif f.type == 'tool' and f.name ~= 'end_call' "
           "and f.name ~= 'transfer_call' then "
      "redis.call('HINCRBY', h, 'tools_running', 1) "
    "elseif f.type == 'tool_result' then "
      "if tonumber(redis.call('HGET', h, 'tools_running') or '0') > 0 then "
        "redis.call('HINCRBY', h, 'tools_running', -1) "
      "end "
    "elseif f.type == 'cost' then "
      "redis.call('HSET', h, 'cost_usd', f.cost_usd, 'tokens', f.tokens) "
    "end "
    "return 1");


/*
 * A call started: it is found by time, by number and by agent, and
 * counted in its minute.  KEYS: the history; ARGV: the prefix, the
 * CallSid, the time (s), the TTL, from, to, the agent.
 */

static ngx_str_t  ngx_http_twirt_record_index_script = ngx_string(
    "local p, sid = ARGV[1], ARGV[2] "
    "local now, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]) "
    "local function add(k) "
      "redis.call('ZADD', k, now, sid) "
      "redis.call('ZREMRANGEBYSCORE', k, '-inf', now - ttl) "
      "redis.call('EXPIRE', k, ttl) "
    "end "
    "add(KEYS[1]) "
    "for i = 5, 6 do "
      "local n = ARGV[i] "
      "if #n <= 24 and string.match(n, '^%+?[0-9]+$') "
         "and not (i == 6 and n == ARGV[5]) then "
        "add(p .. 'calls:number:' .. n) "
      "end "
    "end "
    "if #ARGV[7] <= 64 and string.match(ARGV[7], '^[%w_%-]+$') then "
      "add(p .. 'calls:agent:' .. ARGV[7]) "
    "end "
    "local s = p .. 'stats:' .. math.floor(now / 3600) "
    "redis.call('HINCRBY', s, 'calls', 1) "
    "redis.call('HINCRBY', s, 'm' .. math.floor(now / 60), 1) "
    "redis.call('EXPIRE', s, 172800) "
    "return 1");


/*
 * A call ended: its cost in its hour, its duration in the histogram.  The
 * end is recorded twice (when decided, and with the last usage when the
 * stream closes): the call's hash keeps what was counted, and the second
 * time only the difference is.  A caller back from a transfer nobody
 * answered is the same call: its second stream's cost is added, its
 * duration moves the call's bucket.  KEYS: the hash; ARGV: the prefix, the time
 * (s), the duration (ms), the cost.
 */

static ngx_str_t  ngx_http_twirt_record_stats_script = ngx_string(
    "local h = KEYS[1] "
    "local d = tonumber(ARGV[3]) / 1000 "
    "local b = '+' "
    "for _, le in ipairs({15, 30, 60, 120, 300, 600}) do "
      "if d <= le then b = tostring(le) break end "
    "end "
    "local was = redis.call('HMGET', h, 'board_hour', 'board_bucket', "
                           "'board_cost') "
    "local hour = was[1] or tostring(math.floor(tonumber(ARGV[2]) / 3600)) "
    "local s = ARGV[1] .. 'stats:' .. hour "
    "local cost = tonumber(ARGV[4]) - tonumber(was[3] or '0') "
    "if cost ~= 0 then redis.call('HINCRBYFLOAT', s, 'cost', cost) end "
    "if was[2] ~= b then "
      "if was[2] then redis.call('HINCRBY', s, 'd' .. was[2], -1) "
      "else redis.call('HINCRBY', s, 'ended', 1) end "
      "redis.call('HINCRBY', s, 'd' .. b, 1) "
    "end "
    "redis.call('EXPIRE', s, 172800) "
    "redis.call('HSET', h, 'board_hour', hour, 'board_bucket', b, "
               "'board_cost', ARGV[4]) "
    "return 1");


static ngx_str_t  ngx_http_twirt_record_history_script = ngx_string(
    "local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1]) "
    "local out, n, size = {}, 0, 0 "
    "for i = 1, #e do "
    "local f, t, role, text = e[i][2] "
    "for j = 1, #f, 2 do "
    "if f[j] == 'type' then t = f[j + 1] "
    "elseif f[j] == 'role' then role = f[j + 1] "
    "elseif f[j] == 'text' then text = f[j + 1] end "
    "end "
    "if t == 'transcript' and role and text then "
    "n = n + 1 size = size + #text "
    "if n > tonumber(ARGV[2]) or size > tonumber(ARGV[3]) then break end "
    "table.insert(out, 1, text) table.insert(out, 1, role) "
    "end "
    "end "
    "return out");


static void ngx_http_twirt_record_command(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *name);
static void ngx_http_twirt_record_value(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *param);
static void ngx_http_twirt_record_time(ngx_http_twirt_redis_args_t *args);
static void ngx_http_twirt_record_param(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *field, const char *param);
static void ngx_http_twirt_record_profile_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_record_history_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs);


void
ngx_http_twirt_record_start(ngx_http_twirt_record_t *rec)
{
    ngx_uint_t                   takeover;
    ngx_http_twirt_redis_args_t  args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ngx_http_twirt_record_command(&args, rec, "HSET");

    /*
     * The stream a caller comes back on after a transfer nobody answered
     * takes the record over: the first stream's end is over (end_reason
     * "transfer"); the transfer_* fields stay, the end fields go.
     */
    takeover = (json_object_get(rec->parameters, "twirt_transfer") != NULL);

    if (takeover) {
        args.argv[1] = ngx_http_twirt_record_takeover;
    }

    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "status");
    ngx_http_twirt_redis_args_cstr(&args, "connecting");
    ngx_http_twirt_redis_args_cstr(&args, "stream_sid");
    ngx_http_twirt_redis_args_str(&args, &rec->stream_sid);
    ngx_http_twirt_redis_args_cstr(&args, "account_sid");
    ngx_http_twirt_redis_args_str(&args, &rec->account_sid);
    ngx_http_twirt_record_param(&args, rec, "agent", "agent");
    ngx_http_twirt_record_param(&args, rec, "from", "from");
    ngx_http_twirt_record_param(&args, rec, "to", "to");
    ngx_http_twirt_record_param(&args, rec, "direction", "direction");
    ngx_http_twirt_record_param(&args, rec, "campaign", "campaign");
    ngx_http_twirt_record_param(&args, rec, "row", "row");
    ngx_http_twirt_redis_args_cstr(&args, "started_at");
    ngx_http_twirt_redis_args_now(&args);
    ngx_http_twirt_redis_args_cstr(&args, "node");
    ngx_http_twirt_redis_args_str(&args, ngx_http_twirt_redis_node());
    ngx_http_twirt_redis_args_cstr(&args, "worker");
    ngx_http_twirt_redis_args_str(&args, ngx_http_twirt_control_worker());
    (void) ngx_http_twirt_redis_args_send(&args);

    ngx_http_twirt_record_command(&args, rec, "SADD");
    ngx_http_twirt_redis_args_key(&args, "calls:active", NULL, NULL);
    ngx_http_twirt_redis_args_str(&args, &rec->call_sid);
    (void) ngx_http_twirt_redis_args_send(&args);

    if (takeover) {
        /* found and counted when its first stream started */
        return;
    }

    ngx_http_twirt_redis_args_init(&args, rec->pool, rec->log, "EVAL");
    ngx_http_twirt_redis_args_str(&args, &ngx_http_twirt_record_index_script);
    ngx_http_twirt_redis_args_cstr(&args, "1");
    ngx_http_twirt_redis_args_key(&args, "calls:history", NULL, NULL);
    ngx_http_twirt_redis_args_key(&args, "", NULL, NULL);
    ngx_http_twirt_redis_args_str(&args, &rec->call_sid);
    ngx_http_twirt_record_time(&args);
    ngx_http_twirt_redis_args_num(&args, "%T", ngx_http_twirt_redis_ttl());
    ngx_http_twirt_record_value(&args, rec, "from");
    ngx_http_twirt_record_value(&args, rec, "to");
    ngx_http_twirt_record_value(&args, rec, "agent");
    (void) ngx_http_twirt_redis_args_send(&args);
}


/*
 * One event: an entry of the call's stream (its scalar fields), the same
 * JSON published for live dashboards, and for state changes the status
 * in the hash.
 */

void
ngx_http_twirt_record_event(ngx_http_twirt_record_t *rec, json_t *ev,
    const char *text)
{
    json_t                       *v;
    const char                   *name, *status;
    ngx_http_twirt_redis_args_t   args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ngx_http_twirt_redis_args_init(&args, rec->pool, rec->log, "EVAL");
    ngx_http_twirt_redis_args_str(&args, &ngx_http_twirt_record_event_script);
    ngx_http_twirt_redis_args_cstr(&args, "3");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, ":events");
    ngx_http_twirt_redis_args_key(&args, "events:stream", NULL, NULL);
    ngx_http_twirt_redis_args_cstr(&args, rec->call_level ? "0" : "1");
    ngx_http_twirt_redis_args_str(&args, &rec->stream_sid);
    ngx_http_twirt_redis_args_key(&args, "events", NULL, NULL);
    ngx_http_twirt_redis_args_num(&args, "%d", NGX_HTTP_TWIRT_RECORD_FEED);
    ngx_http_twirt_redis_args_cstr(&args, text);

    json_object_foreach(ev, name, v) {
        if (json_is_string(v)) {
            ngx_http_twirt_redis_args_cstr(&args, name);
            ngx_http_twirt_redis_args_add(&args,
                                          (u_char *) json_string_value(v),
                                          json_string_length(v));

        } else if (json_is_integer(v)) {
            ngx_http_twirt_redis_args_cstr(&args, name);
            ngx_http_twirt_redis_args_num(&args, "%L",
                                          (int64_t) json_integer_value(v));

        } else if (json_is_real(v)) {
            ngx_http_twirt_redis_args_cstr(&args, name);
            ngx_http_twirt_redis_args_num(&args, "%.6f", json_real_value(v));
        }
    }

    (void) ngx_http_twirt_redis_args_send(&args);

    status = json_string_value(json_object_get(ev, "status"));

    if (status == NULL || ngx_strcmp(status, "active") != 0) {
        return;
    }

    ngx_http_twirt_record_command(&args, rec, "HSET");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "status");
    ngx_http_twirt_redis_args_cstr(&args, "active");
    ngx_http_twirt_redis_args_cstr(&args, "answered_at");
    ngx_http_twirt_redis_args_now(&args);
    ngx_http_twirt_redis_args_cstr(&args, "openai_session_id");
    ngx_http_twirt_redis_args_str(&args, &rec->session_id);
    (void) ngx_http_twirt_redis_args_send(&args);
}


/* the final record; then the call leaves the active set and expires */

void
ngx_http_twirt_record_end(ngx_http_twirt_record_t *rec,
    ngx_http_twirt_record_end_t *end)
{
    ngx_http_twirt_redis_args_t  args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ngx_http_twirt_record_command(&args, rec, "HSET");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "status");
    ngx_http_twirt_redis_args_cstr(&args, end->failed ? "failed" : "ended");
    ngx_http_twirt_redis_args_cstr(&args, "ended_at");
    ngx_http_twirt_redis_args_now(&args);
    ngx_http_twirt_redis_args_cstr(&args, "end_reason");
    ngx_http_twirt_redis_args_str(&args, &end->reason);
    ngx_http_twirt_redis_args_cstr(&args, "end_detail");
    ngx_http_twirt_redis_args_str(&args, &end->detail);
    ngx_http_twirt_redis_args_cstr(&args, "duration_ms");
    ngx_http_twirt_redis_args_num(&args, "%M", end->duration);
    ngx_http_twirt_redis_args_cstr(&args, "openai_session_id");
    ngx_http_twirt_redis_args_str(&args, &rec->session_id);
    ngx_http_twirt_redis_args_cstr(&args, "tokens");
    ngx_http_twirt_redis_args_num(&args, "%uL", end->tokens);
    ngx_http_twirt_redis_args_cstr(&args, "cost_usd");
    ngx_http_twirt_redis_args_num(&args, "%.6f", end->cost);
    ngx_http_twirt_redis_args_cstr(&args, "tools_running");
    ngx_http_twirt_redis_args_cstr(&args, "0");
    (void) ngx_http_twirt_redis_args_send(&args);

    ngx_http_twirt_record_command(&args, rec, "SREM");
    ngx_http_twirt_redis_args_key(&args, "calls:active", NULL, NULL);
    ngx_http_twirt_redis_args_str(&args, &rec->call_sid);
    (void) ngx_http_twirt_redis_args_send(&args);

    ngx_http_twirt_redis_args_init(&args, rec->pool, rec->log, "EVAL");
    ngx_http_twirt_redis_args_str(&args, &ngx_http_twirt_record_stats_script);
    ngx_http_twirt_redis_args_cstr(&args, "1");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_key(&args, "", NULL, NULL);
    ngx_http_twirt_record_time(&args);
    ngx_http_twirt_redis_args_num(&args, "%M", end->duration);
    ngx_http_twirt_redis_args_num(&args, "%.6f", end->cost);
    (void) ngx_http_twirt_redis_args_send(&args);

    ngx_http_twirt_record_expire(rec);
}


/*
 * The call's keys expire after twirt_redis_ttl: when it ends, and when
 * something is recorded of a call that may never start (a stream status
 * callback), so that no key stays for ever.
 */

void
ngx_http_twirt_record_expire(ngx_http_twirt_record_t *rec)
{
    time_t                        ttl;
    ngx_http_twirt_redis_args_t   args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ttl = ngx_http_twirt_redis_ttl();

    ngx_http_twirt_record_command(&args, rec, "EXPIRE");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_num(&args, "%T", ttl);
    (void) ngx_http_twirt_redis_args_send(&args);

    ngx_http_twirt_record_command(&args, rec, "EXPIRE");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, ":events");
    ngx_http_twirt_redis_args_num(&args, "%T", ttl);
    (void) ngx_http_twirt_redis_args_send(&args);
}


static void
ngx_http_twirt_record_command(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *name)
{
    if (rec->call_level) {
        ngx_http_twirt_redis_args_init(args, rec->pool, rec->log, name);
        return;
    }

    ngx_http_twirt_redis_args_init(args, rec->pool, rec->log, "EVAL");
    ngx_http_twirt_redis_args_str(args, &ngx_http_twirt_record_owned);
    ngx_http_twirt_redis_args_cstr(args, "1");
    ngx_http_twirt_redis_args_key(args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_str(args, &rec->stream_sid);
    ngx_http_twirt_redis_args_cstr(args, name);
}


/* a field from the stream's parameters, when Twilio sent it */

static void
ngx_http_twirt_record_param(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *field, const char *param)
{
    json_t  *v;

    v = json_object_get(rec->parameters, param);

    if (!json_is_string(v)) {
        return;
    }

    ngx_http_twirt_redis_args_cstr(args, field);
    ngx_http_twirt_redis_args_add(args, (u_char *) json_string_value(v),
                                  json_string_length(v));
}



/* a parameter's value, or an empty argument */

static void
ngx_http_twirt_record_value(ngx_http_twirt_redis_args_t *args,
    ngx_http_twirt_record_t *rec, const char *param)
{
    json_t  *v;

    v = json_object_get(rec->parameters, param);

    ngx_http_twirt_redis_args_add(args,
                                  (u_char *) (json_is_string(v)
                                              ? json_string_value(v) : ""),
                                  json_is_string(v) ? json_string_length(v)
                                                    : 0);
}


/* now, in seconds with milliseconds: the scores of the indexes */

static void
ngx_http_twirt_record_time(ngx_http_twirt_redis_args_t *args)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    ngx_http_twirt_redis_args_num(args, "%T.%03M", tp->sec, tp->msec);
}

ngx_int_t
ngx_http_twirt_record_profile(ngx_http_twirt_record_t *rec, ngx_str_t *agent,
    ngx_msec_t timeout, ngx_http_twirt_record_profile_pt handler, void *data,
    void **handle)
{
    ngx_int_t                             rc;
    ngx_str_t                             key;
    ngx_http_twirt_record_profile_ctx_t  *ctx;

    *handle = NULL;

    ctx = ngx_palloc(rec->pool, sizeof(ngx_http_twirt_record_profile_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_redis_key(rec->pool, "agent", agent, NULL, &key)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ctx->handler = handler;
    ctx->data = data;
    ctx->handle = handle;
    ctx->read = NULL;
    ctx->log = rec->log;

    rc = ngx_http_twirt_redis_hgetall(&key, timeout,
                                      ngx_http_twirt_record_profile_read,
                                      ctx, &ctx->read);

    if (rc == NGX_OK) {
        *handle = ctx;
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, rec->log, 0,
                  "twirt: agent profile \"%V\" cannot be read now (Redis "
                  "not configured or not connected), using the defaults",
                  agent);

    return NGX_DECLINED;
}


void
ngx_http_twirt_record_profile_cancel(void **handle)
{
    ngx_http_twirt_record_profile_ctx_t  *ctx;

    ctx = *handle;

    if (ctx == NULL) {
        return;
    }

    ngx_http_twirt_redis_cancel(ctx->read);
    ctx->read = NULL;

    *handle = NULL;
}


static void
ngx_http_twirt_record_profile_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs)
{
    ngx_http_twirt_record_profile_ctx_t  *ctx = data;

    json_t  *profile;

    ctx->read = NULL;
    *ctx->handle = NULL;

    profile = NULL;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "twirt: agent profile not read in time (%s), using "
                      "the defaults",
                      rc == NGX_DECLINED ? "no answer" : "Redis error");

    } else {
        profile = ngx_http_twirt_profile_parse(ctx->log, pairs);

        if (profile) {
            ngx_log_error(NGX_LOG_INFO, ctx->log, 0,
                          "twirt: agent profile read, %ui fields",
                          pairs->nelts);
        }

        /* an empty hash is no agent of that name */

        if (pairs->nelts == 0) {
            json_decref(profile);
            profile = NULL;
        }
    }

    ctx->handler(ctx->data, profile);
}


void
ngx_http_twirt_record_transfer(ngx_http_twirt_record_t *rec,
    ngx_http_twirt_transfer_t *t)
{
    ngx_http_twirt_redis_args_t  args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ngx_http_twirt_record_command(&args, rec, "HSET");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_target");
    ngx_http_twirt_redis_args_str(&args, &t->name);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_number");
    ngx_http_twirt_redis_args_str(&args, &t->target);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_caller_id");
    ngx_http_twirt_redis_args_str(&args, &t->caller_id);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_timeout");
    ngx_http_twirt_redis_args_num(&args, "%ui", t->timeout);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_summary");
    ngx_http_twirt_redis_args_str(&args, &t->summary);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_result");
    ngx_http_twirt_redis_args_cstr(&args, "dialing");
    (void) ngx_http_twirt_redis_args_send(&args);
}


void
ngx_http_twirt_record_transfer_result(ngx_http_twirt_record_t *rec,
    ngx_str_t *result, ngx_uint_t returning)
{
    char                         *text;
    json_t                       *ev;
    ngx_http_twirt_redis_args_t   args;

    if (rec->call_sid.len == 0) {
        return;
    }

    ngx_http_twirt_record_command(&args, rec, "HSET");
    ngx_http_twirt_redis_args_key(&args, "call", &rec->call_sid, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "transfer_result");
    ngx_http_twirt_redis_args_str(&args, result);

    if (returning) {
        ngx_http_twirt_redis_args_cstr(&args, "status");
        ngx_http_twirt_redis_args_cstr(&args, "returning");
    }

    (void) ngx_http_twirt_redis_args_send(&args);

    ev = json_pack("{s:s,s:s%,s:s,s:s%}", "type", "transfer",
                   "call_sid", rec->call_sid.data, rec->call_sid.len,
                   "status", returning ? "returning" : "connected",
                   "result", result->data, result->len);
    if (ev == NULL) {
        return;
    }

    text = json_dumps(ev, JSON_COMPACT|JSON_SORT_KEYS);

    if (text) {
        ngx_log_error(NGX_LOG_INFO, rec->log, 0, "twirt: event %s", text);
        ngx_http_twirt_record_event(rec, ev, text);
        free(text);
    }

    json_decref(ev);
}


ngx_int_t
ngx_http_twirt_record_history(ngx_http_twirt_record_t *rec,
    ngx_msec_t timeout, ngx_uint_t lines, size_t size,
    ngx_http_twirt_record_profile_pt handler, void *data, void **handle)
{
    ngx_int_t                             rc;
    ngx_str_t                             argv[7];
    ngx_http_twirt_record_profile_ctx_t  *ctx;

    *handle = NULL;

    if (rec->call_sid.len == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_palloc(rec->pool, sizeof(ngx_http_twirt_record_profile_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    argv[0].data = (u_char *) "EVAL";
    argv[0].len = 4;
    argv[1] = ngx_http_twirt_record_history_script;
    ngx_str_set(&argv[2], "1");

    if (ngx_http_twirt_redis_key(rec->pool, "call", &rec->call_sid,
                                 ":events", &argv[3])
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    argv[4].data = ngx_pnalloc(rec->pool, 3 * NGX_INT_T_LEN);
    if (argv[4].data == NULL) {
        return NGX_ERROR;
    }

    argv[4].len = ngx_sprintf(argv[4].data, "%ui", lines * 4) - argv[4].data;
    argv[5].data = argv[4].data + argv[4].len;
    argv[5].len = ngx_sprintf(argv[5].data, "%ui", lines) - argv[5].data;
    argv[6].data = argv[5].data + argv[5].len;
    argv[6].len = ngx_sprintf(argv[6].data, "%uz", size) - argv[6].data;

    ctx->handler = handler;
    ctx->data = data;
    ctx->handle = handle;
    ctx->read = NULL;
    ctx->log = rec->log;

    rc = ngx_http_twirt_redis_read(7, argv, timeout,
                                   ngx_http_twirt_record_history_read, ctx,
                                   &ctx->read);

    if (rc == NGX_OK) {
        *handle = ctx;
        return NGX_OK;
    }

    ngx_log_error(NGX_LOG_WARN, rec->log, 0,
                  "twirt: the conversation before the transfer cannot be "
                  "read now (Redis not configured or not connected)");

    return NGX_DECLINED;
}


void
ngx_http_twirt_record_history_cancel(void **handle)
{
    ngx_http_twirt_record_profile_cancel(handle);
}


static void
ngx_http_twirt_record_history_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs)
{
    ngx_http_twirt_record_profile_ctx_t  *ctx = data;

    json_t        *history, *line;
    ngx_uint_t     i;
    ngx_keyval_t  *kv;

    ctx->read = NULL;
    *ctx->handle = NULL;

    history = NULL;

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, ctx->log, 0,
                      "twirt: the conversation before the transfer was not "
                      "read in time (%s)",
                      rc == NGX_DECLINED ? "no answer" : "Redis error");

    } else {
        history = json_array();
        kv = pairs->elts;

        for (i = 0; history && i < pairs->nelts; i++) {
            /* jansson checks UTF-8: a line that is not is left out */
            line = json_pack("{s:s%,s:s%}",
                             "role", kv[i].key.data, kv[i].key.len,
                             "text", kv[i].value.data, kv[i].value.len);

            if (line) {
                json_array_append_new(history, line);
            }
        }
    }

    ctx->handler(ctx->data, history);
}
