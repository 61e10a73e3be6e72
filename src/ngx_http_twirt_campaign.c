
/*
 * Outbound campaigns.
 *
 * Redis holds everything ({prefix} is twirt_redis's prefix):
 *
 *   {prefix}campaign:{id}              hash: the settings, the status,
 *                                      counts by outcome ("o:busy"...),
 *                                      the pacing slot, the cost
 *   {prefix}campaign:{id}:row:{n}      hash: a row (to, vars, state,
 *                                      attempts, sid, outcome...)
 *   {prefix}campaign:{id}:queue        zset: rows to dial, by due time
 *   {prefix}campaign:{id}:live         zset: rows dialed or in a call, by
 *                                      lease expiry
 *   {prefix}campaign:{id}:numbers      hash: number -> row (one dial each)
 *   {prefix}campaigns                  zset: every campaign, by creation
 *   {prefix}campaigns:running          set: the campaigns to dispatch
 *   {prefix}dnc                        set: numbers never to call
 *   {prefix}pace                       the account's next dialing slot
 *
 * Every change is one Lua script, so any number of workers and nodes can
 * dispatch one campaign: a row is claimed by one of them, with a lease;
 * calls are spaced by the slots, per campaign and per account; Redis's
 * own clock (TIME) is the only clock.  A lease that expires (a node died,
 * a callback was lost) hands the row to another worker, which asks
 * Twilio what became of it before anything is dialed again.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_http.h"
#include "ngx_http_twirt_form.h"
#include "ngx_http_twirt_escape.h"
#include "ngx_http_twirt_phone.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_twiml.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_outbound.h"
#include "ngx_http_twirt_csv.h"
#include "ngx_http_twirt_control.h"
#include "ngx_http_twirt_campaign.h"


#define NGX_HTTP_TWIRT_CAMPAIGN_TICK     200
#define NGX_HTTP_TWIRT_CAMPAIGN_HORIZON  250
#define NGX_HTTP_TWIRT_CAMPAIGN_CLAIMS   16
#define NGX_HTTP_TWIRT_CAMPAIGN_ERRORS_STR  "5"
#define NGX_HTTP_TWIRT_CAMPAIGN_ROWS     100000
/* numbers added at once: a script's arguments after its own ten and
 * "add" (at most NGX_HTTP_TWIRT_REDIS_ARGS - 11) */
#define NGX_HTTP_TWIRT_CAMPAIGN_DNC      21


typedef struct {
    ngx_http_twirt_loc_conf_t     *tlcf;      /* of the twirt_campaigns
                                                 location */
    ngx_http_core_loc_conf_t      *clcf;
    ngx_uint_t                     cps;       /* the account's */
    ngx_msec_t                     lease;
} ngx_http_twirt_campaign_main_conf_t;


/* a calling window: days of the week, seconds of the day, a time zone */
typedef struct {
    ngx_uint_t                     days;      /* bit 0: Sunday */
    ngx_int_t                      start;
    ngx_int_t                      end;
    u_char                         tz[64];
} ngx_http_twirt_window_t;


typedef enum {
    NGX_HTTP_TWIRT_JOB_DIAL = 0,
    NGX_HTTP_TWIRT_JOB_CHECK,
    NGX_HTTP_TWIRT_JOB_HANGUP
} ngx_http_twirt_job_e;


/* one row's work in this worker: a call to place, a call to check */
typedef struct {
    ngx_pool_t                    *pool;
    ngx_log_t                     *log;
    ngx_queue_t                    queue;
    ngx_http_twirt_job_e           kind;
    ngx_str_t                      id;
    ngx_str_t                      row;
    ngx_str_t                      attempt;
    ngx_str_t                      to;
    ngx_str_t                      from;
    ngx_str_t                      sid;
    json_t                         *json;     /* from the claim */
    time_t                         claimed;   /* seconds */
    ngx_event_t                    timer;
    ngx_http_twirt_http_t         *http;
    void                          *read;
} ngx_http_twirt_job_t;


/* this worker's dispatcher */
typedef struct {
    ngx_http_twirt_campaign_main_conf_t  *cmcf;
    ngx_log_t                     *log;
    ngx_event_t                    timer;
    ngx_uint_t                     pending;   /* scripts of this tick */
    ngx_msec_t                     claimed_at; /* when they were sent */
    void                          *read;      /* the list's */
    ngx_queue_t                    jobs;
    ngx_str_t                      worker;
} ngx_http_twirt_dispatcher_t;


/* an API request's state */
typedef struct {
    ngx_http_request_t            *request;
    ngx_str_t                      id;
    ngx_uint_t                     what;
    void                          *read;
    ngx_str_t                      rows;      /* the script's argument */
    ngx_uint_t                     cleanup;   /* its handler is set */
    ngx_uint_t                     control;   /* read is a control's */

    /* while Redis is not connected: the script, tried again */
    ngx_event_t                    retry;
    ngx_uint_t                     tries;
    ngx_str_t                     *script;
    ngx_str_t                      script_id;
    ngx_uint_t                     argc;
    ngx_str_t                     *argv;
    json_t                        *created;   /* the create's answer */
} ngx_http_twirt_campaign_ctx_t;


enum {
    NGX_HTTP_TWIRT_API_LIST = 0,
    NGX_HTTP_TWIRT_API_CREATE,
    NGX_HTTP_TWIRT_API_CREATE_ROWS,
    NGX_HTTP_TWIRT_API_ROWS,
    NGX_HTTP_TWIRT_API_STATUS,
    NGX_HTTP_TWIRT_API_ACTION,
    NGX_HTTP_TWIRT_API_RESULTS,
    NGX_HTTP_TWIRT_API_CSV,
    NGX_HTTP_TWIRT_API_DNC,
    NGX_HTTP_TWIRT_API_BOARD
};


static ngx_int_t ngx_http_twirt_campaign_handler(ngx_http_request_t *r);
static void ngx_http_twirt_campaign_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_campaign_create(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_twirt_campaign_rows(ngx_http_request_t *r,
    ngx_str_t *id, ngx_str_t *body);
static ngx_int_t ngx_http_twirt_campaign_rows_json(ngx_http_request_t *r,
    json_t *in, ngx_uint_t csv, ngx_str_t *out, char *error, size_t size);
static ngx_int_t ngx_http_twirt_campaign_results(ngx_http_request_t *r,
    ngx_str_t *id, ngx_uint_t csv);
static ngx_int_t ngx_http_twirt_campaign_dnc(ngx_http_request_t *r,
    ngx_str_t *tail, ngx_str_t *body);
static ngx_int_t ngx_http_twirt_campaign_run(ngx_http_request_t *r,
    ngx_str_t *script, ngx_str_t *id, ngx_uint_t argc, ngx_str_t *argv,
    ngx_uint_t what);
static void ngx_http_twirt_campaign_answered(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static ngx_int_t ngx_http_twirt_campaign_csv(ngx_http_request_t *r,
    json_t *res);
static void ngx_http_twirt_campaign_times(json_t *obj);
static ngx_int_t ngx_http_twirt_campaign_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *kind, const char *fmt, ...);
static ngx_int_t ngx_http_twirt_campaign_hold(ngx_http_request_t *r,
    ngx_http_twirt_campaign_ctx_t *ctx);
static void ngx_http_twirt_campaign_cleanup(void *data);
static void ngx_http_twirt_campaign_retry(ngx_event_t *ev);
static ngx_http_twirt_campaign_ctx_t *ngx_http_twirt_campaign_request(
    ngx_http_request_t *r);
static void ngx_http_twirt_campaign_controlled(void *data,
    ngx_http_twirt_control_result_e result);

static void ngx_http_twirt_campaign_window_open(json_t *status);
static ngx_int_t ngx_http_twirt_window_parse(u_char *p, size_t len,
    ngx_http_twirt_window_t *w, const char **error);
static ngx_int_t ngx_http_twirt_window_open(ngx_http_twirt_window_t *w,
    time_t now);
static ngx_int_t ngx_http_twirt_tz_offset(u_char *tz, time_t now,
    ngx_int_t *offset);

static ngx_int_t ngx_http_twirt_campaign_eval(ngx_str_t *script,
    ngx_str_t *id, ngx_uint_t argc, ngx_str_t *argv, ngx_pool_t *pool,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle);
static void ngx_http_twirt_dispatch_tick(ngx_event_t *ev);
static void ngx_http_twirt_dispatch_listed(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_dispatch_claimed(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static ngx_http_twirt_job_t *ngx_http_twirt_job_create(ngx_str_t *value,
    ngx_http_twirt_job_e kind);
static void ngx_http_twirt_job_free(ngx_http_twirt_job_t *job);
static void ngx_http_twirt_job_dial(ngx_event_t *ev);
static void ngx_http_twirt_job_dialed(ngx_http_twirt_http_t *h);
static void ngx_http_twirt_job_check(ngx_http_twirt_job_t *job);
static void ngx_http_twirt_job_checked(ngx_http_twirt_http_t *h);
static void ngx_http_twirt_job_report(ngx_http_twirt_job_t *job,
    const char *kind, ngx_str_t *sid, ngx_uint_t retry_after,
    const char *message);
static void ngx_http_twirt_job_finish(ngx_http_twirt_job_t *job,
    json_t *call);
static void ngx_http_twirt_job_reported(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_job_hangup(ngx_http_twirt_job_t *job);
static ngx_int_t ngx_http_twirt_job_request(ngx_http_twirt_job_t *job,
    const char *method, ngx_str_t *uri, ngx_str_t *body,
    ngx_http_twirt_http_pt handler);
static void ngx_http_twirt_job_hung_up(ngx_http_twirt_http_t *h);
static ngx_int_t ngx_http_twirt_job_url(ngx_http_twirt_job_t *job,
    ngx_str_t *base, ngx_uint_t vars, ngx_uint_t amd, ngx_str_t *url);
static ngx_str_t *ngx_http_twirt_json_str(ngx_pool_t *pool, json_t *obj,
    const char *key);

static void *ngx_http_twirt_campaign_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_campaign_init_main_conf(ngx_conf_t *cf,
    void *conf);
static char *ngx_http_twirt_campaigns(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_twirt_campaign_init_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_campaign_exit_process(ngx_cycle_t *cycle);


static ngx_http_twirt_dispatcher_t  ngx_http_twirt_dispatcher;


static ngx_command_t  ngx_http_twirt_campaign_commands[] = {

    { ngx_string("twirt_campaigns"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_campaigns,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_campaign_cps"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_campaign_main_conf_t, cps),
      NULL },

    { ngx_string("twirt_campaign_lease"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_campaign_main_conf_t, lease),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_campaign_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_twirt_campaign_create_main_conf, /* create main configuration */
    ngx_http_twirt_campaign_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_campaign_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_campaign_module_ctx,   /* module context */
    ngx_http_twirt_campaign_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_twirt_campaign_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_twirt_campaign_exit_process,  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * The scripts.  KEYS: the campaign's hash, the running set, the DNC set,
 * the account's pace, the list of campaigns; ARGV[1] the id, ARGV[2] the
 * prefix, then each script's own.
 */

#define NGX_HTTP_TWIRT_LUA_HEAD                                               \
    "local c = KEYS[1] "                                                      \
    "local t = redis.call('TIME') "                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "  \
    "local function rowkey(n) return c .. ':row:' .. n end "                  \
    "local function done(n, outcome, detail) "                                \
      "redis.call('HSET', rowkey(n), 'state', 'done', 'outcome', outcome, "   \
                 "'ended_at', now) "                                          \
      "if detail then redis.call('HSET', rowkey(n), 'detail', detail) end "   \
      "redis.call('ZREM', c .. ':live', n) "                                  \
      "redis.call('ZREM', c .. ':queue', n) "                                 \
      "redis.call('HINCRBY', c, 'o:' .. outcome, 1) "                         \
    "end "                                                                    \
    "local function requeue(n, at) "                                          \
      "redis.call('HSET', rowkey(n), 'state', 'queued') "                     \
      "redis.call('ZREM', c .. ':live', n) "                                  \
      "redis.call('ZADD', c .. ':queue', at, n) "                             \
    "end "                                                                    \
    "local function finished() "                                              \
      "if redis.call('HGET', c, 'status') == 'running' "                      \
         "and redis.call('ZCARD', c .. ':queue') == 0 "                       \
         "and redis.call('ZCARD', c .. ':live') == 0 then "                   \
        "redis.call('HSET', c, 'status', 'finished', 'finished_at', now) "    \
        "redis.call('SREM', KEYS[2], ARGV[1]) "                               \
      "end "                                                                  \
    "end "                                                                    \
    "local function status() "                                                \
      "local h = redis.call('HGETALL', c) "                                   \
      "if #h == 0 then return nil end "                                       \
      "local s = {} "                                                         \
      "for i = 1, #h, 2 do s[h[i]] = h[i + 1] end "                           \
      "local o, d = {}, 0 "                                                   \
      "for _, k in ipairs({'completed', 'voicemail', 'busy', 'no_answer', "   \
                          "'failed', 'invalid', 'dnc', 'cancelled'}) do "     \
        "o[k] = tonumber(s['o:' .. k] or '0') d = d + o[k] "                  \
      "end "                                                                  \
      "local r = {id = s.id, name = s.name, agent = s.agent, from = s.from, " \
        "status = s.status, error = s.error, window = s.window, "             \
        "cps = tonumber(s.cps), cps_now = tonumber(s.cps_now), "              \
        "concurrency = tonumber(s.concurrency), "                             \
        "retries = tonumber(s.retries), "                                     \
        "retry_delay = tonumber(s.retry_delay) / 1000, "                      \
        "timeout = tonumber(s.timeout), machine_detection = s.amd, "          \
        "created_at = tonumber(s.created_at), "                               \
        "started_at = tonumber(s.started_at), "                               \
        "finished_at = tonumber(s.finished_at), "                             \
        "rows = tonumber(s.rows), "                                           \
        "queued = redis.call('ZCARD', c .. ':queue'), "                       \
        "in_progress = redis.call('ZCARD', c .. ':live'), "                   \
        "outcomes = o, done = d, dialed = tonumber(s.dialed or '0'), "        \
        "cost_usd = tonumber(s.cost or '0')} "                                \
      "if s.status == 'running' and s.started_at and d > 0 then "             \
        "r.eta = now + math.floor((r.queued + r.in_progress) "                \
                                 "* (now - tonumber(s.started_at)) / d) "     \
      "end "                                                                  \
      "return r "                                                             \
    "end "


/* ARGV[3]: the settings as a JSON object of strings */
static ngx_str_t  ngx_http_twirt_lua_create = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "if redis.call('EXISTS', c) == 1 then return {'error', 'exists'} end "
    "local f = cjson.decode(ARGV[3]) "
    "for k, v in pairs(f) do redis.call('HSET', c, k, v) end "
    "redis.call('HSET', c, 'id', ARGV[1], 'created_at', now, 'rows', 0, "
               "'cps_now', f.cps) "
    "if f.status == 'running' then redis.call('SADD', KEYS[2], ARGV[1]) end "
    "redis.call('ZADD', KEYS[5], now, ARGV[1]) "
    "return {'json', cjson.encode(status())}");


/*
 * ARGV[3]: the rows, [{row, line, to, vars, error}]; ARGV[4]: the most
 * rows a campaign may have.  A number already in the campaign is dialed
 * once; an invalid one is a row with the outcome "invalid".
 */
static ngx_str_t  ngx_http_twirt_lua_rows = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local st = redis.call('HGET', c, 'status') "
    "if not st then return {'error', 'not_found'} end "
    "if st == 'cancelled' then return {'error', 'cancelled'} end "
    "local rows = cjson.decode(ARGV[3]) "
    "local n = tonumber(redis.call('HGET', c, 'rows')) "
    "if n + #rows > tonumber(ARGV[4]) then return {'error', 'too_many'} end "
    "local res = {accepted = 0, duplicates = {}, invalid = {}, dnc = {}} "
    "for _, r in ipairs(rows) do "
      "if r.error then "
        "n = n + 1 "
        "redis.call('HSET', rowkey(n), 'to', r.to, 'line', r.line, "
                   "'vars', r.vars, 'attempts', 0) "
        "done(n, 'invalid', r.error) "
        "table.insert(res.invalid, {row = r.row, line = r.line, to = r.to, "
                                   "error = r.error}) "
      "else "
        "local first = redis.call('HGET', c .. ':numbers', r.to) "
        "if first then "
          "table.insert(res.duplicates, {row = r.row, line = r.line, "
                                        "to = r.to, "
                                        "same_as = tonumber(first)}) "
        "else "
          "n = n + 1 "
          "redis.call('HSET', c .. ':numbers', r.to, n) "
          "redis.call('HSET', rowkey(n), 'to', r.to, 'line', r.line, "
                     "'vars', r.vars, 'attempts', 0) "
          "if redis.call('SISMEMBER', KEYS[3], r.to) == 1 then "
            "done(n, 'dnc') "
            "table.insert(res.dnc, {row = r.row, line = r.line, to = r.to}) "
          "else "
            "redis.call('HSET', rowkey(n), 'state', 'queued') "
            /* equal scores go in the members' order, "10" before "2":
             * a row is due n ms after the upload, rows go in order */
            "redis.call('ZADD', c .. ':queue', now + n, n) "
            "res.accepted = res.accepted + 1 "
          "end "
        "end "
      "end "
    "end "
    "redis.call('HSET', c, 'rows', n) "
    "if res.accepted > 0 and st == 'finished' then "
      "redis.call('HSET', c, 'status', 'running') "
      "redis.call('HDEL', c, 'finished_at') "
      "redis.call('SADD', KEYS[2], ARGV[1]) "
    "end "
    "res.rows = n "
    "return {'json', cjson.encode(res)}");


static ngx_str_t  ngx_http_twirt_lua_status = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local s = status() "
    "if not s then return {'error', 'not_found'} end "
    "return {'json', cjson.encode(s)}");


/* ARGV[3]: pause, resume or cancel */
static ngx_str_t  ngx_http_twirt_lua_action = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local st = redis.call('HGET', c, 'status') "
    "if not st then return {'error', 'not_found'} end "
    "local a = ARGV[3] "
    "if a == 'pause' then "
      "if st ~= 'running' then return {'error', 'conflict:' .. st} end "
      /* the dispatcher still looks after its calls' leases */
      "redis.call('HSET', c, 'status', 'paused') "
    "elseif a == 'resume' then "
      "if st ~= 'paused' then return {'error', 'conflict:' .. st} end "
      "redis.call('HSET', c, 'status', 'running', 'cps_now', "
                 "redis.call('HGET', c, 'cps')) "
      "redis.call('HDEL', c, 'error') "
      "redis.call('SADD', KEYS[2], ARGV[1]) "
      "finished() "
    "else "
      "if st == 'cancelled' or st == 'finished' then "
        "return {'error', 'conflict:' .. st} end "
      "redis.call('HSET', c, 'status', 'cancelled', 'finished_at', now) "
      "for _, n in ipairs(redis.call('ZRANGE', c .. ':queue', 0, -1)) do "
        "done(n, 'cancelled') "
      "end "
    "end "
    "return {'json', cjson.encode(status())}");


/*
 * ARGV[3] offset, ARGV[4] limit, ARGV[5] "1": with transcripts.  A row's
 * cost is its call record's when the record came after the outcome.
 */
static ngx_str_t  ngx_http_twirt_lua_results = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local total = tonumber(redis.call('HGET', c, 'rows')) "
    "if not total then return {'error', 'not_found'} end "
    "local out = {} "
    "local last = math.min(total, tonumber(ARGV[3]) + tonumber(ARGV[4])) "
    "for n = tonumber(ARGV[3]) + 1, last do "
      "local h = redis.call('HGETALL', rowkey(n)) "
      "local r = {row = n} "
      "for i = 1, #h, 2 do r[h[i]] = h[i + 1] end "
      "local v = r.vars r.vars = nil "
      "r.variables = v and v ~= '' and cjson.decode(v) or nil "
      "r.attempts = tonumber(r.attempts) r.line = tonumber(r.line) "
      "r.duration = tonumber(r.duration) "
      "r.claimed_at = nil r.worker = nil r.errors = nil "
      "if r.sid then "
        "local rec = ARGV[2] .. 'call:' .. r.sid "
        "if not r.cost_usd then "
          "r.cost_usd = redis.call('HGET', rec, 'cost_usd') or nil "
        "end "
        "r.end_reason = redis.call('HGET', rec, 'end_reason') or nil "
        "if ARGV[5] == '1' then "
          "local lines = {} "
          "for _, e in ipairs(redis.call('XRANGE', rec .. ':events', '-', "
                                        "'+', 'COUNT', 500)) do "
            "local f, ty, role, text = e[2] "
            "for j = 1, #f, 2 do "
              "if f[j] == 'type' then ty = f[j + 1] "
              "elseif f[j] == 'role' then role = f[j + 1] "
              "elseif f[j] == 'text' then text = f[j + 1] end "
            "end "
            "if ty == 'transcript' and role and text then "
              "table.insert(lines, {role = role, text = text}) "
            "end "
          "end "
          "if #lines > 0 then r.transcript = lines end "
        "end "
      "end "
      "r.cost_usd = tonumber(r.cost_usd) or 0 "
      "r.call_sid = r.sid r.sid = nil "
      "table.insert(out, r) "
    "end "
    "return {'json', cjson.encode({rows = out, total = total, "
                                  "offset = tonumber(ARGV[3])})}");


/* the running campaigns and their windows */
static ngx_str_t  ngx_http_twirt_lua_list_running = ngx_string(
    "local out = {} "
    "for _, id in ipairs(redis.call('SMEMBERS', KEYS[2])) do "
      "out[#out + 1] = id "
      "out[#out + 1] = redis.call('HGET', ARGV[2] .. 'campaign:' .. id, "
                                 "'window') or '' "
    "end "
    "return out");


static ngx_str_t  ngx_http_twirt_lua_list = ngx_string(
    "local out = {} "
    "for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do "
      "local h = redis.call('HMGET', ARGV[2] .. 'campaign:' .. id, 'name', "
                           "'status', 'rows', 'created_at') "
      "table.insert(out, {id = id, name = h[1], status = h[2], "
                         "rows = tonumber(h[3]), "
                         "created_at = tonumber(h[4])}) "
    "end "
    "return {'json', cjson.encode({campaigns = out})}");


/*
 * The dispatcher's claim.  ARGV[3] the worker, ARGV[4] "1": the window is
 * open, ARGV[5] the horizon (ms), ARGV[6] the lease (ms), ARGV[7] the
 * account's calls per second, ARGV[8] the most rows to claim.
 * Answers pairs: "check" (a lease expired), "dial", "status" (not
 * running), "now".
 */
static ngx_str_t  ngx_http_twirt_lua_claim = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local st = redis.call('HGET', c, 'status') "
    "if not st then "
      "redis.call('SREM', KEYS[2], ARGV[1]) "
      "return {'status', 'gone'} "
    "end "
    "local out = {} "
    "local lease = tonumber(ARGV[6]) "
    "local cf = redis.call('HMGET', c, 'concurrency', 'cps', 'cps_now', "
                          "'next_slot', 'from', 'agent', 'timeout', 'amd', "
                          "'variables', 'started_at') "
    "for _, n in ipairs(redis.call('ZRANGEBYSCORE', c .. ':live', '-inf', "
                                  "now, 'LIMIT', 0, 8)) do "
      "local r = redis.call('HMGET', rowkey(n), 'state', 'sid', 'to', "
                           "'claimed_at', 'attempts') "
      "redis.call('ZADD', c .. ':live', now + lease, n) "
      "out[#out + 1] = 'check' "
      "out[#out + 1] = cjson.encode({campaign = ARGV[1], row = n, "
                                   "state = r[1], sid = r[2], "
                                   "to = r[3], "
                                   "claimed_at = tonumber(r[4]), "
                                   "attempt = r[5], from = cf[5]}) "
    "end "
    /* paused or cancelled: its calls' leases are still looked after */
    "if st ~= 'running' then "
      "if redis.call('ZCARD', c .. ':live') == 0 then "
        "redis.call('SREM', KEYS[2], ARGV[1]) "
      "end "
      "out[#out + 1] = 'status' out[#out + 1] = st "
      "return out "
    "end "
    "if ARGV[4] == '1' then "
      "local room = tonumber(cf[1]) - redis.call('ZCARD', c .. ':live') "
      "local acps = tonumber(ARGV[7]) "
      "local cps = math.min(tonumber(cf[3]) or tonumber(cf[2]), acps) "
      "local slot = tonumber(cf[4]) or 0 "
      "local aslot = tonumber(redis.call('GET', KEYS[4]) or '0') "
      "local claimed = 0 "
      "while room > 0 and claimed < tonumber(ARGV[8]) do "
        "local s = math.max(slot, aslot, now) "
        "if s > now + tonumber(ARGV[5]) then break end "
        "local q = redis.call('ZRANGEBYSCORE', c .. ':queue', '-inf', now, "
                             "'LIMIT', 0, 1) "
        "if #q == 0 then break end "
        "local n = q[1] "
        "redis.call('ZREM', c .. ':queue', n) "
        "local to = redis.call('HGET', rowkey(n), 'to') "
        "if redis.call('SISMEMBER', KEYS[3], to) == 1 then "
          "done(n, 'dnc', 'on the do-not-call list at dial time') "
        "else "
          "local a = redis.call('HINCRBY', rowkey(n), 'attempts', 1) "
          "redis.call('HSET', rowkey(n), 'state', 'dialing', "
                     "'claimed_at', s, 'worker', ARGV[3]) "
          "redis.call('HDEL', rowkey(n), 'sid') "
          "redis.call('ZADD', c .. ':live', s + lease, n) "
          "redis.call('HINCRBY', c, 'dialed', 1) "
          "if not cf[10] then "
            "cf[10] = s redis.call('HSET', c, 'started_at', s) "
          "end "
          "out[#out + 1] = 'dial' "
          "out[#out + 1] = cjson.encode({campaign = ARGV[1], row = n, "
                                       "attempt = tostring(a), "
                                       "to = to, delay = s - now, "
                                       "claimed_at = s, "
                                       "vars = redis.call('HGET', "
                                                    "rowkey(n), 'vars'), "
                                       "defaults = cf[9], from = cf[5], "
                                       "agent = cf[6], timeout = cf[7], "
                                       "amd = cf[8]}) "
          "slot = math.floor(s + 1000 / cps) "
          "aslot = math.floor(s + 1000 / acps) "
          "room = room - 1 claimed = claimed + 1 "
        "end "
      "end "
      "if claimed > 0 then "
        "redis.call('HSET', c, 'next_slot', slot) "
        "redis.call('SET', KEYS[4], aslot, 'PX', 60000) "
      "end "
    "end "
    "finished() "
    "out[#out + 1] = 'now' out[#out + 1] = tostring(now) "
    "return out");


/*
 * What became of a claimed dial.  ARGV[3] row, ARGV[4] attempt, ARGV[5]
 * the kind: ok (ARGV[6] the CallSid), invalid, failed, pause,
 * rate_limited (ARGV[7] seconds), retry, unknown (ask Twilio once a
 * lease is over: a request Twilio took late makes its call late), lost
 * (Twilio has no such call: dial again); ARGV[8] the words; ARGV[9] the
 * lease (ms).  An attempt not placed does not count.
 */
static ngx_str_t  ngx_http_twirt_lua_report = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local n = ARGV[3] "
    "local k = ARGV[5] "
    "local r = redis.call('HMGET', rowkey(n), 'state', 'attempts', 'sid') "
    "if k == 'ok' and r[2] == ARGV[4] and r[3] == ARGV[6] then "
      /* a callback of the call came first */
      "return {'result', 'known'} "
    "end "
    "if k == 'lost' and r[1] == 'calling' and r[2] == ARGV[4] "
       "and r[3] == ARGV[6] then "
      /* Twilio does not know the row's call */
      "done(n, 'failed', ARGV[8]) "
      "finished() "
      "return {'result', 'failed'} "
    "end "
    "if r[1] ~= 'dialing' or r[2] ~= ARGV[4] then "
      "return {'result', 'stale'} "
    "end "
    "if k == 'ok' then "
      "redis.call('HSET', rowkey(n), 'state', 'calling', 'sid', ARGV[6]) "
      "redis.call('HDEL', rowkey(n), 'errors', 'detail') "
      "redis.call('ZADD', c .. ':live', now + tonumber(ARGV[9]), n) "
      "local cf = redis.call('HMGET', c, 'cps', 'cps_now') "
      "if tonumber(cf[2]) < tonumber(cf[1]) then "
        "redis.call('HSET', c, 'cps_now', "
                   "math.min(tonumber(cf[1]), tonumber(cf[2]) * 1.25)) "
      "end "
      "return {'result', 'calling'} "
    "end "
    "if k == 'unknown' then "
      "redis.call('ZADD', c .. ':live', now + tonumber(ARGV[9]), n) "
      "return {'result', 'unknown'} "
    "end "
    "redis.call('HINCRBY', rowkey(n), 'attempts', -1) "
    "redis.call('HINCRBY', c, 'dialed', -1) "
    "if k == 'invalid' then "
      "done(n, 'invalid', ARGV[8]) "
    "elseif k == 'failed' then "
      "done(n, 'failed', ARGV[8]) "
    "elseif k == 'rate_limited' then "
      "requeue(n, now + 1000 * tonumber(ARGV[7])) "
      "local cps = tonumber(redis.call('HGET', c, 'cps_now')) "
      "redis.call('HSET', c, 'cps_now', math.max(cps / 2, 0.1), "
                 "'throttled_at', now) "
    "elseif k == 'pause' then "
      "requeue(n, now) "
      "if redis.call('HGET', c, 'status') == 'running' then "
        "redis.call('HSET', c, 'status', 'paused', 'error', ARGV[8]) "
      "end "
    "elseif k == 'lost' then "
      "requeue(n, now) "
    "else "
      "local e = redis.call('HINCRBY', rowkey(n), 'errors', 1) "
      "if e > " NGX_HTTP_TWIRT_CAMPAIGN_ERRORS_STR " then "
        "done(n, 'failed', ARGV[8]) "
      "else "
        "redis.call('HSET', rowkey(n), 'detail', ARGV[8]) "
        "requeue(n, now + 1000 * math.min(2 ^ e, 60)) "
      "end "
    "end "
    "finished() "
    "return {'result', k}");


/*
 * A call of a row ended (its StatusCallback, or Twilio asked).  ARGV[3]
 * row, ARGV[4] attempt, ARGV[5] CallSid, ARGV[6] Twilio's final status,
 * ARGV[7] duration, ARGV[8] AnsweredBy.  Busy, no answer and failed are
 * dialed again after the delay while attempts are left.
 */
static ngx_str_t  ngx_http_twirt_lua_finish = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local n = ARGV[3] "
    "local r = redis.call('HMGET', rowkey(n), 'state', 'attempts', 'sid', "
                         "'answered_by') "
    "if (r[1] ~= 'calling' and r[1] ~= 'dialing') or r[2] ~= ARGV[4] "
       "or (r[3] and r[3] ~= ARGV[5]) then "
      "return {'result', 'stale'} "
    "end "
    "local ab = ARGV[8] ~= '' and ARGV[8] or r[4] "
    "local st, outcome = ARGV[6] "
    "if st == 'completed' then "
      "if ab and (string.sub(ab, 1, 7) == 'machine' or ab == 'fax') then "
        "outcome = 'voicemail' else outcome = 'completed' end "
    "elseif st == 'busy' then outcome = 'busy' "
    "elseif st == 'no-answer' then outcome = 'no_answer' "
    "elseif st == 'canceled' then outcome = 'cancelled' "
    "else outcome = 'failed' end "
    "redis.call('HSET', rowkey(n), 'sid', ARGV[5], 'duration', "
               "tonumber(ARGV[7]) or 0) "
    "if ab then redis.call('HSET', rowkey(n), 'answered_by', ab) end "
    "local h = redis.call('HGET', rowkey(n), 'history') "
    "redis.call('HSET', rowkey(n), 'history', "
               "(h and h .. ' ' or '') .. outcome) "
    "local cf = redis.call('HMGET', c, 'status', 'retries', 'retry_delay') "
    "if (outcome == 'busy' or outcome == 'no_answer' "
         "or outcome == 'failed') "
       "and tonumber(r[2]) <= tonumber(cf[2]) and cf[1] ~= 'cancelled' then "
      "redis.call('HSET', rowkey(n), 'last_outcome', outcome) "
      "requeue(n, now + tonumber(cf[3])) "
      "return {'result', 'retry'} "
    "end "
    "done(n, outcome) "
    "local cost = redis.call('HGET', ARGV[2] .. 'call:' .. ARGV[5], "
                            "'cost_usd') "
    "if cost then "
      "redis.call('HSET', rowkey(n), 'cost_usd', cost) "
      "redis.call('HINCRBYFLOAT', c, 'cost', cost) "
    "end "
    "finished() "
    "return {'result', outcome}");


/*
 * Progress of a row's call: ARGV[3] row, ARGV[4] attempt, ARGV[5]
 * CallSid, ARGV[6] the event (a status, or "amd"), ARGV[7] AnsweredBy.
 * Answers the campaign's machine handling when a machine answered.
 */
static ngx_str_t  ngx_http_twirt_lua_progress = ngx_string(
    NGX_HTTP_TWIRT_LUA_HEAD
    "local n = ARGV[3] "
    "local r = redis.call('HMGET', rowkey(n), 'state', 'attempts', 'sid') "
    "if (r[1] ~= 'calling' and r[1] ~= 'dialing') or r[2] ~= ARGV[4] "
       "or (r[3] and r[3] ~= ARGV[5]) then "
      "return {'result', 'stale'} "
    "end "
    "if not r[3] then "
      "redis.call('HSET', rowkey(n), 'sid', ARGV[5], 'state', 'calling') "
    "end "
    "if ARGV[6] == 'amd' then "
      "redis.call('HSET', rowkey(n), 'answered_by', ARGV[7]) "
      "local cf = redis.call('HMGET', c, 'amd', 'machine_message') "
      "return {'result', 'amd', 'amd', cf[1] or 'off', "
              "'message', cf[2] or ''} "
    "end "
    "if ARGV[6] == 'in-progress' or ARGV[6] == 'answered' then "
      "redis.call('HSET', rowkey(n), 'answered_at', now) "
    "end "
    "return {'result', 'progress'}");


/* ARGV[3]: add, remove, check, list; ARGV[4..]: numbers */
static ngx_str_t  ngx_http_twirt_lua_dnc = ngx_string(
    "local a = ARGV[3] "
    "if a == 'list' then "
      "return {'json', cjson.encode({numbers = "
                                   "redis.call('SMEMBERS', KEYS[3])})} "
    "end "
    "local n = 0 "
    "for i = 4, #ARGV do "
      "if a == 'add' then n = n + redis.call('SADD', KEYS[3], ARGV[i]) "
      "elseif a == 'remove' then "
        "n = n + redis.call('SREM', KEYS[3], ARGV[i]) "
      "else n = n + redis.call('SISMEMBER', KEYS[3], ARGV[i]) end "
    "end "
    "return {'json', cjson.encode({changed = n, "
                                  "size = redis.call('SCARD', KEYS[3])})}");


static ngx_int_t
ngx_http_twirt_campaign_handler(ngx_http_request_t *r)
{
    u_char                         *seg[3];
    size_t                          len[3];
    ngx_int_t                       rc;
    ngx_str_t                       id, argv[1];
    ngx_uint_t                      n, i;
    ngx_http_twirt_campaign_ctx_t  *ctx;

    if (!ngx_http_twirt_redis_configured()) {
        return ngx_http_twirt_campaign_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "no_redis", "campaigns need "
                                             "\"twirt_redis\"");
    }

    /* the path after the location's prefix: at most three segments */

    if (ngx_http_twirt_api_path(r, seg, len, 3, &n) != NGX_OK) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                                 "not_found", "no such "
                                                 "resource");
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_campaign_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ngx_http_set_ctx(r, ctx, ngx_http_twirt_campaign_module);

    if (n == 0) {
        if (r->method == NGX_HTTP_GET) {
            rc = ngx_http_discard_request_body(r);
            if (rc != NGX_OK) {
                return rc;
            }

            ngx_str_set(&id, "");
            return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_list,
                                               &id, 0, NULL,
                                               NGX_HTTP_TWIRT_API_LIST);
        }

        if (r->method != NGX_HTTP_POST) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "GET the "
                                                 "campaigns or POST one");
        }

        ctx->what = NGX_HTTP_TWIRT_API_CREATE;
        goto body;
    }

    if (len[0] == 3 && ngx_strncmp(seg[0], "dnc", 3) == 0) {
        ctx->what = NGX_HTTP_TWIRT_API_DNC;

        if (n > 2) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                                 "not_found", "no such "
                                                 "resource");
        }

        ctx->id.data = seg[1];
        ctx->id.len = len[1];

        if (r->method == NGX_HTTP_POST) {
            goto body;
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_twirt_campaign_dnc(r, &ctx->id, NULL);
    }

    if (len[0] == 5 && ngx_strncmp(seg[0], "calls", 5) == 0 && n == 1) {
        /* one call, as twirt_calls places it (the board, scripts) */
        ngx_http_set_ctx(r, NULL, ngx_http_twirt_campaign_module);
        return ngx_http_twirt_calls_handler(r);
    }

    if (len[0] == 5 && ngx_strncmp(seg[0], "calls", 5) == 0) {

        if (n != 3 || len[2] != 6 || ngx_strncmp(seg[2], "hangup", 6) != 0)
        {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                                 "not_found", "a call is "
                                                 "controlled with POST "
                                                 "calls/{CallSid}/hangup");
        }

        if (r->method != NGX_HTTP_POST) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "POST to hang "
                                                 "up");
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        ctx->id.data = seg[1];
        ctx->id.len = len[1];

        return ngx_http_twirt_campaign_hangup(r, &ctx->id);
    }

    /* a campaign */

    id.data = seg[0];
    id.len = len[0];

    for (i = 0; i < id.len; i++) {
        if (!((id.data[i] >= 'a' && id.data[i] <= 'z')
              || (id.data[i] >= '0' && id.data[i] <= '9')))
        {
            break;
        }
    }

    if (id.len == 0 || id.len > 32 || i < id.len) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                             "not_found", "no such "
                                             "campaign");
    }

    ctx->id = id;

    if (n == 1) {
        if (r->method != NGX_HTTP_GET) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "GET a "
                                                 "campaign's status");
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_status,
                                           &id, 0, NULL,
                                           NGX_HTTP_TWIRT_API_STATUS);
    }

    if (n == 2 && len[1] == 4 && ngx_strncmp(seg[1], "rows", 4) == 0) {
        if (r->method != NGX_HTTP_POST) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "POST rows, as "
                                                 "JSON or CSV");
        }

        ctx->what = NGX_HTTP_TWIRT_API_ROWS;
        goto body;
    }

    if (n == 2
        && ((len[1] == 5 && ngx_strncmp(seg[1], "pause", 5) == 0)
            || (len[1] == 6 && ngx_strncmp(seg[1], "resume", 6) == 0)
            || (len[1] == 6 && ngx_strncmp(seg[1], "cancel", 6) == 0)))
    {
        if (r->method != NGX_HTTP_POST) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "POST to %*s",
                                                 len[1], seg[1]);
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        argv[0].data = seg[1];
        argv[0].len = len[1];

        return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_action,
                                           &id, 1, argv,
                                           NGX_HTTP_TWIRT_API_ACTION);
    }

    if (n == 2
        && ((len[1] == 7 && ngx_strncmp(seg[1], "results", 7) == 0)
            || (len[1] == 11 && ngx_strncmp(seg[1], "results.csv", 11)
                                == 0)))
    {
        return ngx_http_twirt_campaign_results(r, &id, len[1] == 11);
    }

    return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                         "no such resource");

body:

    if (r->headers_in.content_length_n < 0 && !r->headers_in.chunked) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_LENGTH_REQUIRED,
                                             "invalid_request", "send a "
                                             "body");
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_twirt_campaign_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_twirt_campaign_body(ngx_http_request_t *r)
{
    ngx_int_t                       rc;
    ngx_str_t                       body;
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_campaign_module);

    rc = ngx_http_twirt_read_body(r, NGX_MAX_SIZE_T_VALUE, &body);

    if (rc == NGX_OK) {
        switch (ctx->what) {

        case NGX_HTTP_TWIRT_API_CREATE:
            rc = ngx_http_twirt_campaign_create(r, &body);
            break;

        case NGX_HTTP_TWIRT_API_ROWS:
            rc = ngx_http_twirt_campaign_rows(r, &ctx->id, &body);
            break;

        default:
            rc = ngx_http_twirt_campaign_dnc(r, &ctx->id, &body);
        }
    }

    /* NGX_DONE: the script's answer finalizes the request */

    ngx_http_finalize_request(r, rc);
}


/* a positive integer field within bounds, or its default */

static ngx_int_t
ngx_http_twirt_campaign_int(json_t *req, const char *key, ngx_int_t def,
    ngx_int_t min, ngx_int_t max, ngx_int_t *value)
{
    json_t  *v;

    v = json_object_get(req, key);

    if (v == NULL) {
        *value = def;
        return NGX_OK;
    }

    if (!json_is_integer(v) || json_integer_value(v) < min
        || json_integer_value(v) > max)
    {
        return NGX_ERROR;
    }

    *value = (ngx_int_t) json_integer_value(v);

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_campaign_create(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char                               *p, from[NGX_HTTP_TWIRT_E164_LEN];
    char                                  text[256], *settings;
    json_t                               *req, *v, *set, *rows;
    double                                cps;
    uint32_t                              rnd[2];
    ngx_int_t                             rc, conc, retries, delay, timeout;
    ngx_str_t                             argv[1], agent, id;
    const char                           *error, *amd;
    json_error_t                          err;
    ngx_http_twirt_window_t               w;
    ngx_http_twirt_campaign_ctx_t        *ctx;
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_campaign_module);
    cmcf = ngx_http_get_module_main_conf(r, ngx_http_twirt_campaign_module);

    req = json_loadb((char *) body->data, body->len, JSON_REJECT_DUPLICATES,
                     &err);

    if (req == NULL || !json_is_object(req)) {
        json_decref(req);
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_json", "the body "
                                             "must be a JSON object");
    }

    set = json_object();
    if (set == NULL) {
        json_decref(req);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the answer is made before the request's JSON is freed */

#define twirt_bad(...)                                                        \
    do {                                                                      \
        rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,           \
                                           "invalid_request", __VA_ARGS__);   \
        json_decref(req);                                                     \
        json_decref(set);                                                     \
        return rc;                                                            \
    } while (0)

    v = json_object_get(req, "name");

    if (!json_is_string(v) || json_string_length(v) == 0
        || ngx_http_twirt_utf8_length((u_char *) json_string_value(v),
                                      json_string_length(v)) > 200)
    {
        twirt_bad("\"name\" must be a string of 1 to 200 characters");
    }

    json_object_set(set, "name", v);

    v = json_object_get(req, "from");

    if (!json_is_string(v)) {
        twirt_bad("\"from\" must be the caller ID, a phone number as a "
                  "string");
    }

    error = ngx_http_twirt_phone_e164((u_char *) json_string_value(v),
                                      json_string_length(v), from,
                                      &agent.len);
    if (error) {
        twirt_bad("\"from\": %s", error);
    }

    json_object_set_new(set, "from", json_stringn((char *) from, agent.len));

    v = json_object_get(req, "agent");

    if (v) {
        agent.data = (u_char *) json_string_value(v);
        agent.len = json_string_length(v);

        if (!json_is_string(v) || agent.len == 0 || agent.len > 64
            || ngx_http_twirt_sid_valid(&agent) != NGX_OK)
        {
            twirt_bad("\"agent\" must be a name of letters, digits, '_' "
                      "and '-', at most 64");
        }

        json_object_set(set, "agent", v);
    }

    cps = (double) cmcf->cps;
    v = json_object_get(req, "cps");

    if (v) {
        if (!json_is_number(v) || json_number_value(v) < 0.1
            || json_number_value(v) > 1000)
        {
            twirt_bad("\"cps\" must be the calls per second, 0.1 to 1000");
        }

        cps = ngx_min(json_number_value(v), (double) cmcf->cps);
    }

    p = (u_char *) text;
    p = ngx_sprintf(p, "%.3f%Z", cps);
    json_object_set_new(set, "cps", json_string(text));

    if (ngx_http_twirt_campaign_int(req, "concurrency", 10, 1, 10000, &conc)
        != NGX_OK)
    {
        twirt_bad("\"concurrency\" must be the calls at once, 1 to 10000");
    }

    if (ngx_http_twirt_campaign_int(req, "retries", 2, 0, 10, &retries)
        != NGX_OK)
    {
        twirt_bad("\"retries\" must be 0 to 10");
    }

    if (ngx_http_twirt_campaign_int(req, "retry_delay", 300, 1, 86400,
                                    &delay)
        != NGX_OK)
    {
        twirt_bad("\"retry_delay\" must be seconds, 1 to 86400");
    }

    if (ngx_http_twirt_campaign_int(req, "timeout", 30, 5, 600, &timeout)
        != NGX_OK)
    {
        twirt_bad("\"timeout\" must be the seconds of ringing, 5 to 600");
    }

    json_object_set_new(set, "concurrency", json_integer(conc));
    json_object_set_new(set, "retries", json_integer(retries));
    json_object_set_new(set, "retry_delay", json_integer(delay * 1000));
    json_object_set_new(set, "timeout", json_integer(timeout));

    amd = "off";
    v = json_object_get(req, "machine_detection");

    if (v) {
        amd = json_is_string(v) ? json_string_value(v) : "";

        if (ngx_strcmp(amd, "off") != 0 && ngx_strcmp(amd, "hangup") != 0
            && ngx_strcmp(amd, "message") != 0)
        {
            twirt_bad("\"machine_detection\" must be \"off\", \"hangup\" "
                      "or \"message\"");
        }
    }

    json_object_set_new(set, "amd", json_string(amd));

    v = json_object_get(req, "machine_message");

    if (ngx_strcmp(amd, "message") == 0) {
        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > 2000)
        {
            twirt_bad("\"machine_detection\": \"message\" needs "
                      "\"machine_message\", the words left after the beep "
                      "(at most 2000 bytes)");
        }

        json_object_set(set, "machine_message", v);

    } else if (v) {
        twirt_bad("\"machine_message\" is spoken only with "
                  "\"machine_detection\": \"message\"");
    }

    v = json_object_get(req, "window");

    if (v) {
        if (!json_is_string(v)
            || ngx_http_twirt_window_parse((u_char *) json_string_value(v),
                                           json_string_length(v), &w,
                                           &error)
               != NGX_OK)
        {
            twirt_bad("\"window\" must be like \"mon-fri 09:00-20:00 "
                      "Asia/Tokyo\": %s",
                      json_is_string(v) ? error : "not a string");
        }

        json_object_set(set, "window", v);
    }

    v = json_object_get(req, "variables");

    if (v) {
        if (ngx_http_twirt_outbound_vars(v, text, sizeof(text)) != NGX_OK) {
            twirt_bad("%s", text);
        }

        settings = json_dumps(v, JSON_COMPACT);
        if (settings == NULL) {
            json_decref(req);
            json_decref(set);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        json_object_set_new(set, "variables", json_string(settings));
        free(settings);
    }

    v = json_object_get(req, "paused");

    if (v && !json_is_boolean(v)) {
        twirt_bad("\"paused\" must be true or false");
    }

    json_object_set_new(set, "status",
                        json_string(json_is_true(v) ? "paused" : "running"));

#undef twirt_bad

    /* the rows, checked before anything is written */

    rows = json_object_get(req, "rows");

    if (rows
        && ngx_http_twirt_campaign_rows_json(r, rows, 0, &ctx->rows, text,
                                             sizeof(text))
           != NGX_OK)
    {
        json_decref(req);
        json_decref(set);
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_rows", "%s", text);
    }

    json_decref(req);

    /* c + 16 hex digits */

    rnd[0] = (uint32_t) ngx_random();
    rnd[1] = (uint32_t) ngx_random() ^ (uint32_t) ngx_pid;

    id.data = ngx_pnalloc(r->pool, 17);
    if (id.data == NULL) {
        json_decref(set);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    id.len = ngx_sprintf(id.data, "c%08xD%08xD", rnd[0], rnd[1]) - id.data;
    ctx->id = id;

    json_object_set_new(set, "id", json_stringn((char *) id.data, id.len));

    settings = json_dumps(set, JSON_COMPACT);
    json_decref(set);

    if (settings == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0].len = ngx_strlen(settings);
    argv[0].data = ngx_pnalloc(r->pool, argv[0].len);

    if (argv[0].data == NULL) {
        free(settings);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(argv[0].data, settings, argv[0].len);
    free(settings);

    return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_create, &id, 1,
                                       argv, NGX_HTTP_TWIRT_API_CREATE);
}


static ngx_int_t
ngx_http_twirt_campaign_rows(ngx_http_request_t *r, ngx_str_t *id,
    ngx_str_t *body)
{
    u_char                         *p;
    char                            text[256];
    json_t                         *in, *rows, *vars, *v;
    ngx_int_t                       rc;
    ngx_str_t                       argv[2], error, *type;
    const char                     *key;
    ngx_uint_t                      csv;
    json_error_t                    err;
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_campaign_module);

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

    csv = type && type->len >= sizeof("text/csv") - 1
          && ngx_strncasecmp(type->data, (u_char *) "text/csv",
                             sizeof("text/csv") - 1) == 0;

    if (csv) {
        if (ngx_http_twirt_csv_rows(r->pool, body->data, body->len, &in,
                                    &error)
            != NGX_OK)
        {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_csv", "%V",
                                                 &error);
        }

        rows = in;

        /* the columns are the variables' names: checked once */

        vars = json_deep_copy(json_object_get(json_array_get(rows, 0),
                                              "variables"));

        json_object_foreach(vars, key, v) {
            json_object_set_new(vars, key, json_string(""));
        }

        rc = vars ? ngx_http_twirt_outbound_vars(vars, text, sizeof(text))
                  : NGX_OK;
        json_decref(vars);

        if (rc != NGX_OK) {
            json_decref(in);
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_csv", "the header "
                                                 "line: %s", text);
        }

    } else {
        in = json_loadb((char *) body->data, body->len,
                        JSON_REJECT_DUPLICATES, &err);

        rows = json_is_object(in) ? json_object_get(in, "rows") : in;

        if (in == NULL || rows == NULL) {
            json_decref(in);
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_json", "the body "
                                                 "must be JSON rows, "
                                                 "[...] or {\"rows\": "
                                                 "[...]}, or CSV "
                                                 "(Content-Type: "
                                                 "text/csv)");
        }
    }

    if (ngx_http_twirt_campaign_rows_json(r, rows, csv, &ctx->rows, text,
                                          sizeof(text))
        != NGX_OK)
    {
        json_decref(in);
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_rows", "%s", text);
    }

    json_decref(in);

    argv[0] = ctx->rows;

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[1].data = p;
    argv[1].len = ngx_sprintf(p, "%d", NGX_HTTP_TWIRT_CAMPAIGN_ROWS) - p;

    return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_rows, id, 2,
                                       argv, NGX_HTTP_TWIRT_API_ROWS);
}


/*
 * Rows as the scripts take them: [{row, line, to, vars, error}], "to" in
 * E.164 when valid, "vars" a JSON text.  A row's own fault (its number,
 * its variables) makes it an invalid row, reported; NGX_ERROR is for the
 * whole upload, with the words in error.
 */

static ngx_int_t
ngx_http_twirt_campaign_rows_json(ngx_http_request_t *r, json_t *in,
    ngx_uint_t csv, ngx_str_t *out, char *error, size_t size)
{
    u_char       e164[NGX_HTTP_TWIRT_E164_LEN];
    char        *text, words[256];
    size_t       i, len;
    json_t      *arr, *row, *o, *to, *vars, *line;
    const char  *bad;

    if (!json_is_array(in) || json_array_size(in) == 0) {
        ngx_snprintf((u_char *) error, size, "\"rows\" must be a non-empty "
                     "array of {\"to\", \"variables\"}%Z");
        return NGX_ERROR;
    }

    if (json_array_size(in) > NGX_HTTP_TWIRT_CAMPAIGN_ROWS) {
        ngx_snprintf((u_char *) error, size, "at most %d rows%Z",
                     NGX_HTTP_TWIRT_CAMPAIGN_ROWS);
        return NGX_ERROR;
    }

    arr = json_array();
    if (arr == NULL) {
        ngx_snprintf((u_char *) error, size, "out of memory%Z");
        return NGX_ERROR;
    }

    json_array_foreach(in, i, row) {
        o = json_object();
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            ngx_snprintf((u_char *) error, size, "out of memory%Z");
            return NGX_ERROR;
        }

        line = csv ? json_object_get(row, "line") : NULL;

        json_object_set_new(o, "row", json_integer(i + 1));
        json_object_set_new(o, "line", line ? json_incref(line)
                                            : json_integer(i + 1));

        to = json_is_object(row) ? json_object_get(row, "to") : NULL;
        vars = json_is_object(row) ? json_object_get(row, "variables")
                                   : NULL;
        bad = NULL;

        if (!json_is_string(to)) {
            json_object_set_new(o, "to", json_string(""));
            bad = csv ? "no phone number"
                      : "a row must be an object with \"to\", a phone "
                        "number as a string";

        } else {
            bad = ngx_http_twirt_phone_e164((u_char *) json_string_value(to),
                                            json_string_length(to), e164,
                                            &len);

            if (bad) {
                json_object_set(o, "to", to);

            } else {
                json_object_set_new(o, "to",
                                    json_stringn((char *) e164, len));
            }
        }

        if (bad == NULL && vars
            && ngx_http_twirt_outbound_vars(vars, words, sizeof(words))
               != NGX_OK)
        {
            bad = words;
        }

        if (bad) {
            json_object_set_new(o, "error", json_string(bad));
        }

        text = vars && json_is_object(vars) ? json_dumps(vars, JSON_COMPACT)
                                            : NULL;

        json_object_set_new(o, "vars", json_string(text ? text : "{}"));
        free(text);
    }

    text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);

    if (text == NULL) {
        ngx_snprintf((u_char *) error, size, "out of memory%Z");
        return NGX_ERROR;
    }

    out->len = ngx_strlen(text);
    out->data = ngx_pnalloc(r->pool, out->len);

    if (out->data == NULL) {
        free(text);
        ngx_snprintf((u_char *) error, size, "out of memory%Z");
        return NGX_ERROR;
    }

    ngx_memcpy(out->data, text, out->len);
    free(text);

    return NGX_OK;
}


/*
 * The do-not-call list: GET (the list), GET {number} (on it?), POST
 * {"numbers": [...]} (add), DELETE {number} (remove)
 */

static ngx_int_t
ngx_http_twirt_campaign_dnc(ngx_http_request_t *r, ngx_str_t *number,
    ngx_str_t *body)
{
    u_char        *p;
    size_t         i, len;
    json_t        *req, *nums, *v;
    ngx_str_t      argv[NGX_HTTP_TWIRT_CAMPAIGN_DNC + 1], id;
    ngx_uint_t     argc;
    const char    *error;
    json_error_t   err;

    ngx_str_set(&id, "");

    if (body == NULL && number->len == 0) {
        if (r->method != NGX_HTTP_GET) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "GET the list, "
                                                 "or POST numbers to it");
        }

        ngx_str_set(&argv[0], "list");

        return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_dnc, &id,
                                           1, argv, NGX_HTTP_TWIRT_API_DNC);
    }

    if (body == NULL) {
        if (r->method == NGX_HTTP_GET) {
            ngx_str_set(&argv[0], "check");

        } else if (r->method == NGX_HTTP_DELETE) {
            ngx_str_set(&argv[0], "remove");

        } else {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                                 "method", "GET or DELETE "
                                                 "a number");
        }

        p = ngx_pnalloc(r->pool, NGX_HTTP_TWIRT_E164_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        error = ngx_http_twirt_phone_e164(number->data, number->len, p,
                                          &len);
        if (error) {
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_number", "%s",
                                                 error);
        }

        argv[1].data = p;
        argv[1].len = len;

        return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_dnc, &id,
                                           2, argv, NGX_HTTP_TWIRT_API_DNC);
    }

    if (number->len) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method", "POST numbers to "
                                             "the list itself");
    }

    req = json_loadb((char *) body->data, body->len, 0, &err);
    nums = json_object_get(req, "numbers");

    if (!json_is_array(nums) || json_array_size(nums) == 0
        || json_array_size(nums) > NGX_HTTP_TWIRT_CAMPAIGN_DNC)
    {
        json_decref(req);
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", "the body "
                                             "must be {\"numbers\": [...]}, "
                                             "1 to %d numbers",
                                             NGX_HTTP_TWIRT_CAMPAIGN_DNC);
    }

    ngx_str_set(&argv[0], "add");
    argc = 1;

    json_array_foreach(nums, i, v) {
        p = ngx_pnalloc(r->pool, NGX_HTTP_TWIRT_E164_LEN);
        if (p == NULL) {
            json_decref(req);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        error = json_is_string(v)
                ? ngx_http_twirt_phone_e164((u_char *) json_string_value(v),
                                            json_string_length(v), p, &len)
                : "not a string";

        if (error) {
            json_decref(req);
            return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_number",
                                                 "numbers[%uz]: %s", i,
                                                 error);
        }

        argv[argc].data = p;
        argv[argc++].len = len;
    }

    json_decref(req);

    return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_dnc, &id, argc,
                                       argv, NGX_HTTP_TWIRT_API_DNC);
}


static ngx_int_t
ngx_http_twirt_campaign_results(ngx_http_request_t *r, ngx_str_t *id,
    ngx_uint_t csv)
{
    u_char     *p;
    ngx_int_t   rc, offset, limit;
    ngx_str_t   argv[3], v;

    if (r->method != NGX_HTTP_GET && r->method != NGX_HTTP_HEAD) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method", "GET the results");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    offset = 0;
    limit = csv ? NGX_HTTP_TWIRT_CAMPAIGN_ROWS : 1000;

    if (ngx_http_arg(r, (u_char *) "offset", 6, &v) == NGX_OK) {
        offset = ngx_atoi(v.data, v.len);
    }

    if (ngx_http_arg(r, (u_char *) "limit", 5, &v) == NGX_OK) {
        limit = ngx_atoi(v.data, v.len);
    }

    if (offset < 0 || limit <= 0 || limit > NGX_HTTP_TWIRT_CAMPAIGN_ROWS) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", "\"offset\" "
                                             "and \"limit\" must be "
                                             "numbers, limit 1 to %d",
                                             NGX_HTTP_TWIRT_CAMPAIGN_ROWS);
    }

    p = ngx_pnalloc(r->pool, 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    argv[0].data = p;
    argv[0].len = ngx_sprintf(p, "%i", offset) - p;
    p += argv[0].len;
    argv[1].data = p;
    argv[1].len = ngx_sprintf(p, "%i", limit) - p;
    ngx_str_set(&argv[2], "1");

    if (ngx_http_arg(r, (u_char *) "transcript", 10, &v) == NGX_OK
        && v.len == 1 && v.data[0] == '0')
    {
        ngx_str_set(&argv[2], "0");
    }

    return ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_results, id, 3,
                                       argv,
                                       csv ? NGX_HTTP_TWIRT_API_CSV
                                           : NGX_HTTP_TWIRT_API_RESULTS);
}


/* a script for the API: NGX_DONE, the answer comes */

static ngx_int_t
ngx_http_twirt_campaign_run(ngx_http_request_t *r, ngx_str_t *script,
    ngx_str_t *id, ngx_uint_t argc, ngx_str_t *argv, ngx_uint_t what)
{
    ngx_int_t                       rc;
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_campaign_module);
    ctx->what = what;

    rc = ngx_http_twirt_campaign_eval(script, id, argc, argv, r->pool,
                                      ngx_http_twirt_campaign_answered, ctx,
                                      &ctx->read);

    if (rc == NGX_DECLINED && ctx->tries < 20) {

        /*
         * Redis is not connected (yet: a worker just started, or it is
         * reconnecting): the request waits for it, 2 s at most
         */

        if (script != ctx->script || argv != ctx->argv) {
            /* not a retry: kept for the retries */
            ctx->script = script;
            ctx->script_id = *id;
            ctx->argc = argc;

            ctx->argv = ngx_palloc(r->pool, (argc + 1) * sizeof(ngx_str_t));
            if (ctx->argv == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            ngx_memcpy(ctx->argv, argv, argc * sizeof(ngx_str_t));
        }

        ctx->tries++;
        ctx->retry.handler = ngx_http_twirt_campaign_retry;
        ctx->retry.data = ctx;
        ctx->retry.log = r->connection->log;

        ngx_add_timer(&ctx->retry, 100);

        if (ngx_http_twirt_campaign_hold(r, ctx) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_DONE;
    }

    if (rc == NGX_DECLINED) {
        return ngx_http_twirt_campaign_error(r,
                                             NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "redis_unavailable", "Redis is "
                                             "not connected: nothing was "
                                             "done, try again");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_twirt_campaign_hold(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


/*
 * The request waits for Redis: one more reference, and a cleanup that
 * cancels the read if the request goes first
 */

static ngx_int_t
ngx_http_twirt_campaign_hold(ngx_http_request_t *r,
    ngx_http_twirt_campaign_ctx_t *ctx)
{
    ngx_pool_cleanup_t  *cln;

    if (ctx->cleanup == 0) {
        cln = ngx_pool_cleanup_add(r->pool, 0);
        if (cln == NULL) {
            ngx_http_twirt_campaign_cleanup(ctx);
            return NGX_ERROR;
        }

        cln->handler = ngx_http_twirt_campaign_cleanup;
        cln->data = ctx;
        ctx->cleanup = 1;
    }

    r->main->count++;

    return NGX_OK;
}


/*
 * The board (ngx_http_twirt_board.c) answers through the same runner: a
 * script answering {"json", text}, sent as it is, or {"error",
 * "not_found"}; and hangs a call up as POST calls/{CallSid}/hangup does.
 */

ngx_int_t
ngx_http_twirt_campaign_api(ngx_http_request_t *r, ngx_str_t *script,
    ngx_str_t *id, ngx_uint_t argc, ngx_str_t *argv)
{
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_twirt_campaign_request(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->id = *id;

    return ngx_http_twirt_campaign_run(r, script, id, argc, argv,
                                       NGX_HTTP_TWIRT_API_BOARD);
}


ngx_int_t
ngx_http_twirt_campaign_hangup(ngx_http_request_t *r, ngx_str_t *sid)
{
    ngx_int_t                       rc;
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_twirt_campaign_request(r);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->id = *sid;

    if (ctx->id.len < 3 || ngx_strncmp(ctx->id.data, "CA", 2) != 0
        || ngx_http_twirt_sid_valid(&ctx->id) != NGX_OK)
    {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_request", "not a "
                                             "CallSid");
    }

    rc = ngx_http_twirt_control_send(r->pool, r->connection->log,
                                     &ctx->id, "hangup", NULL,
                                     ngx_http_twirt_campaign_controlled,
                                     ctx, &ctx->read);
    if (rc == NGX_DECLINED) {
        return ngx_http_twirt_campaign_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                             "redis_unavailable", "Redis "
                                             "is not connected: nothing "
                                             "was done, try again");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->control = 1;

    if (ngx_http_twirt_campaign_hold(r, ctx) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_DONE;
}


static ngx_http_twirt_campaign_ctx_t *
ngx_http_twirt_campaign_request(ngx_http_request_t *r)
{
    ngx_http_twirt_campaign_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_campaign_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_campaign_ctx_t));
        if (ctx == NULL) {
            return NULL;
        }

        ctx->request = r;
        ngx_http_set_ctx(r, ctx, ngx_http_twirt_campaign_module);
    }

    return ctx;
}


static void
ngx_http_twirt_campaign_retry(ngx_event_t *ev)
{
    ngx_http_twirt_campaign_ctx_t *ctx = ev->data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    rc = ngx_http_twirt_campaign_run(r, ctx->script, &ctx->script_id,
                                     ctx->argc, ctx->argv, ctx->what);

    if (rc == NGX_DONE) {
        /* still the one reference of the first try */
        r->main->count--;
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_twirt_campaign_cleanup(void *data)
{
    ngx_http_twirt_campaign_ctx_t *ctx = data;

    json_decref(ctx->created);
    ctx->created = NULL;

    if (ctx->retry.timer_set) {
        ngx_del_timer(&ctx->retry);
    }

    if (ctx->read) {
        if (ctx->control) {
            ngx_http_twirt_control_cancel(ctx->read);

        } else {
            ngx_http_twirt_redis_cancel(ctx->read);
        }

        ctx->read = NULL;
    }
}


/* POST calls/{CallSid}/hangup: the control went, or could not */

static void
ngx_http_twirt_campaign_controlled(void *data,
    ngx_http_twirt_control_result_e result)
{
    ngx_http_twirt_campaign_ctx_t *ctx = data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;
    ctx->read = NULL;

    switch (result) {

    case NGX_HTTP_TWIRT_CONTROL_QUEUED:
        rc = ngx_http_twirt_send_json(r, NGX_HTTP_ACCEPTED,
                                          json_pack("{s:s%,s:s}", "call_sid",
                                                    ctx->id.data,
                                                    ctx->id.len, "result",
                                                    "queued"));
        break;

    case NGX_HTTP_TWIRT_CONTROL_NOT_LIVE:
        rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_CONFLICT, "not_live",
                                           "the call %V has ended",
                                           &ctx->id);
        break;

    case NGX_HTTP_TWIRT_CONTROL_UNKNOWN:
        rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                           "not_found", "no record of a "
                                           "call %V", &ctx->id);
        break;

    default:
        rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "redis_unavailable", "Redis did "
                                           "not answer in time");
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* a status says whether its window is open now (no window: always) */

static void
ngx_http_twirt_campaign_window_open(json_t *status)
{
    json_t                   *w;
    ngx_int_t                 open;
    const char               *error;
    ngx_http_twirt_window_t   win;

    if (!json_is_object(status) || json_object_get(status, "id") == NULL) {
        return;
    }

    w = json_object_get(status, "window");
    open = 1;

    if (json_is_string(w) && json_string_length(w)) {
        open = ngx_http_twirt_window_parse((u_char *) json_string_value(w),
                                           json_string_length(w), &win,
                                           &error) == NGX_OK
               && ngx_http_twirt_window_open(&win, ngx_time());
    }

    json_object_set_new(status, "window_open", json_boolean(open));
}


/* Lua's cjson makes an empty array an object: these are arrays */

static void
ngx_http_twirt_campaign_arrays(json_t *obj)
{
    size_t       i;
    json_t      *v, *row;

    static const char  *arrays[] = {
        "duplicates", "invalid", "dnc", "rows", "campaigns", "numbers", NULL
    };

    for (i = 0; arrays[i]; i++) {
        v = json_object_get(obj, arrays[i]);

        if (json_is_object(v) && json_object_size(v) == 0) {
            json_object_set_new(obj, arrays[i], json_array());
        }
    }

    v = json_object_get(obj, "rows");

    if (json_is_array(v)) {
        json_array_foreach(v, i, row) {
            ngx_http_twirt_campaign_times(row);
        }
    }

    v = json_object_get(obj, "campaigns");

    if (json_is_array(v)) {
        json_array_foreach(v, i, row) {
            ngx_http_twirt_campaign_times(row);
        }
    }

    ngx_http_twirt_campaign_times(obj);
}


/* times in Redis are milliseconds; the API's are ISO 8601, UTC */

static void
ngx_http_twirt_campaign_times(json_t *obj)
{
    u_char       buf[sizeof("2026-11-30T17:00:00Z")];
    json_t      *v;
    ngx_uint_t   i;
    ngx_tm_t     tm;

    static const char  *times[] = {
        "created_at", "started_at", "finished_at", "eta", "ended_at",
        "answered_at", "claimed_at", NULL
    };

    for (i = 0; times[i]; i++) {
        v = json_object_get(obj, times[i]);

        if (v == NULL) {
            continue;
        }

        if (json_is_string(v)) {
            v = json_integer(ngx_atotm((u_char *) json_string_value(v),
                                       json_string_length(v)));
            json_object_set_new(obj, times[i], v);
        }

        if (!json_is_number(v) || json_number_value(v) <= 0) {
            json_object_del(obj, times[i]);
            continue;
        }

        ngx_gmtime((time_t) (json_number_value(v) / 1000), &tm);

        (void) ngx_sprintf(buf, "%4d-%02d-%02dT%02d:%02d:%02dZ",
                           tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                           tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec);

        json_object_set_new(obj, times[i],
                            json_stringn((char *) buf, sizeof(buf) - 1));
    }
}


static void
ngx_http_twirt_campaign_answered(void *data, ngx_int_t rc,
    ngx_array_t *pairs)
{
    ngx_http_twirt_campaign_ctx_t *ctx = data;

    json_t                         *json;
    ngx_str_t                       argv[2], *value;
    ngx_keyval_t                   *kv;
    json_error_t                    err;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;

    r = ctx->request;
    c = r->connection;
    ctx->read = NULL;

    if (rc == NGX_DECLINED) {
        rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                           "redis_unavailable", "Redis did "
                                           "not answer in time");
        goto done;
    }

    kv = (rc == NGX_OK && pairs->nelts) ? pairs->elts : NULL;

    if (kv == NULL) {
        rc = ngx_http_twirt_campaign_error(r,
                                           NGX_HTTP_INTERNAL_SERVER_ERROR,
                                           "redis_error", "Redis refused "
                                           "the script (see the error "
                                           "log)");
        goto done;
    }

    value = &kv[0].value;

    if (kv[0].key.len == 5 && ngx_strncmp(kv[0].key.data, "error", 5) == 0) {

        if (value->len == 9 && ngx_strncmp(value->data, "not_found", 9) == 0)
        {
            rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_NOT_FOUND,
                                               "not_found", "no %s \"%V\"",
                                               ctx->what
                                               == NGX_HTTP_TWIRT_API_BOARD
                                               ? "record of a call"
                                               : "campaign", &ctx->id);

        } else if (value->len == 8
                   && ngx_strncmp(value->data, "too_many", 8) == 0)
        {
            rc = ngx_http_twirt_campaign_error(r,
                                       NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                       "too_many_rows", "a campaign has at "
                                       "most %d rows",
                                       NGX_HTTP_TWIRT_CAMPAIGN_ROWS);

        } else if (value->len > 9
                   && ngx_strncmp(value->data, "conflict:", 9) == 0)
        {
            rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_CONFLICT,
                                               "conflict", "the campaign is "
                                               "%*s", value->len - 9,
                                               value->data + 9);

        } else {
            rc = ngx_http_twirt_campaign_error(r, NGX_HTTP_CONFLICT,
                                               "conflict", "the campaign "
                                               "is %V", value);
        }

        goto done;
    }

    if (ctx->what == NGX_HTTP_TWIRT_API_BOARD) {
        /* the board's scripts answer JSON as it is sent */
        rc = ngx_http_twirt_send(r, NGX_HTTP_OK, "application/json",
                                 value->data, value->len);
        goto done;
    }

    json = json_loadb((char *) value->data, value->len, 0, &err);

    if (json == NULL) {
        rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        goto done;
    }

    ngx_http_twirt_campaign_arrays(json);

    switch (ctx->what) {

    case NGX_HTTP_TWIRT_API_CREATE:

        if (ctx->rows.len == 0) {
            rc = ngx_http_twirt_send_json(r, NGX_HTTP_CREATED, json);
            break;
        }

        ctx->created = json;

        argv[0] = ctx->rows;
        ngx_str_set(&argv[1], "100000");

        rc = ngx_http_twirt_campaign_run(r, &ngx_http_twirt_lua_rows,
                                         &ctx->id, 2, argv,
                                         NGX_HTTP_TWIRT_API_CREATE_ROWS);
        if (rc == NGX_DONE) {
            /* still the one reference of the first script */
            r->main->count--;
            return;
        }

        break;

    case NGX_HTTP_TWIRT_API_CREATE_ROWS:
        json_object_set_new(ctx->created, "upload", json);
        json = ctx->created;
        ctx->created = NULL;
        rc = ngx_http_twirt_send_json(r, NGX_HTTP_CREATED, json);
        break;

    case NGX_HTTP_TWIRT_API_CSV:
        rc = ngx_http_twirt_campaign_csv(r, json);
        json_decref(json);
        break;

    case NGX_HTTP_TWIRT_API_STATUS:
    case NGX_HTTP_TWIRT_API_ACTION:
        ngx_http_twirt_campaign_window_open(json);
        rc = ngx_http_twirt_send_json(r, NGX_HTTP_OK, json);
        break;

    default:
        rc = ngx_http_twirt_send_json(r, NGX_HTTP_OK, json);
    }

done:

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* one CSV cell; p NULL: its length */

static size_t
ngx_http_twirt_csv_cell(u_char *p, const char *s, size_t len)
{
    size_t   i, n;
    u_char  *start;

    for (i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == ',' || s[i] == CR || s[i] == LF) {
            break;
        }
    }

    if (i == len) {
        if (p) {
            ngx_memcpy(p, s, len);
        }

        return len;
    }

    n = 2 + len;

    for (i = 0; i < len; i++) {
        n += (s[i] == '"');
    }

    if (p == NULL) {
        return n;
    }

    start = p;
    *p++ = '"';

    for (i = 0; i < len; i++) {
        if (s[i] == '"') {
            *p++ = '"';
        }

        *p++ = s[i];
    }

    *p++ = '"';

    return p - start;
}


/*
 * The results as CSV for Excel: UTF-8 with a BOM, CRLF, a header line;
 * the variables' columns after the fixed ones, the transcript last.
 */

static ngx_int_t
ngx_http_twirt_campaign_csv(ngx_http_request_t *r, json_t *res)
{
    u_char      *buf, *p;
    char         num[64];
    size_t       size, i, j, k, pass, len;
    json_t      *rows, *row, *names, *vars, *v, *tr, *line;
    const char  *key, *s;

    static const char  *fixed[] = {
        "row", "line", "to", "outcome", "attempts", "call_sid", "duration",
        "answered_by", "cost_usd", "ended_at", "end_reason", "detail", NULL
    };

    rows = json_object_get(res, "rows");
    names = json_array();

    if (names == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_array_foreach(rows, i, row) {
        vars = json_object_get(row, "variables");

        json_object_foreach(vars, key, v) {
            json_array_foreach(names, j, tr) {
                if (ngx_strcmp(json_string_value(tr), key) == 0) {
                    break;
                }
            }

            if (j == json_array_size(names)) {
                json_array_append_new(names, json_string(key));
            }
        }
    }

    /* a transcript is one cell: "agent: ...\ncaller: ..." */

    json_array_foreach(rows, i, row) {
        tr = json_object_get(row, "transcript");

        if (!json_is_array(tr)) {
            continue;
        }

        len = 0;

        json_array_foreach(tr, j, line) {
            len += json_string_length(json_object_get(line, "role")) + 2
                   + json_string_length(json_object_get(line, "text")) + 1;
        }

        p = ngx_pnalloc(r->pool, len);
        if (p == NULL) {
            json_decref(names);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        buf = p;

        json_array_foreach(tr, j, line) {
            if (j) {
                *p++ = LF;
            }

            v = json_object_get(line, "role");
            p = ngx_cpymem(p, json_string_value(v), json_string_length(v));
            *p++ = ':';
            *p++ = ' ';
            v = json_object_get(line, "text");
            p = ngx_cpymem(p, json_string_value(v), json_string_length(v));
        }

        json_object_set_new(row, "transcript",
                            json_stringn((char *) buf, p - buf));
    }

    /* pass 0 measures, pass 1 writes */

    buf = NULL;
    size = 0;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            buf = ngx_pnalloc(r->pool, size);
            if (buf == NULL) {
                json_decref(names);
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        p = buf;
        len = 3;

        if (p) {
            p = ngx_cpymem(p, "\xef\xbb\xbf", 3);
        }

#define twirt_cell(str, n)                                                    \
        do {                                                                  \
            size_t  cl = ngx_http_twirt_csv_cell(p, str, n);                  \
            len += cl;                                                        \
            if (p) { p += cl; }                                               \
        } while (0)

#define twirt_sep(c)                                                          \
        do { len++; if (p) { *p++ = c; } } while (0)

        for (k = 0; fixed[k]; k++) {
            twirt_cell(fixed[k], ngx_strlen(fixed[k]));
            twirt_sep(',');
        }

        json_array_foreach(names, j, tr) {
            twirt_cell(json_string_value(tr), json_string_length(tr));
            twirt_sep(',');
        }

        twirt_cell("transcript", sizeof("transcript") - 1);
        twirt_sep(CR);
        twirt_sep(LF);

        json_array_foreach(rows, i, row) {

            for (k = 0; fixed[k]; k++) {
                v = json_object_get(row, fixed[k]);

                if (json_is_string(v)) {
                    twirt_cell(json_string_value(v), json_string_length(v));

                } else if (json_is_integer(v)) {
                    s = (char *) ngx_sprintf((u_char *) num, "%L",
                                             (int64_t) json_integer_value(v));
                    twirt_cell(num, s - num);

                } else if (json_is_real(v)) {
                    s = (char *) ngx_sprintf((u_char *) num, "%.6f",
                                             json_real_value(v));
                    twirt_cell(num, s - num);
                }

                twirt_sep(',');
            }

            vars = json_object_get(row, "variables");

            json_array_foreach(names, j, tr) {
                v = json_object_get(vars, json_string_value(tr));

                if (json_is_string(v)) {
                    twirt_cell(json_string_value(v), json_string_length(v));
                }

                twirt_sep(',');
            }

            v = json_object_get(row, "transcript");

            if (json_is_string(v)) {
                twirt_cell(json_string_value(v), json_string_length(v));
            }

            twirt_sep(CR);
            twirt_sep(LF);
        }

#undef twirt_cell
#undef twirt_sep

        size = len;
    }

    json_decref(names);

    r->headers_out.content_type_len = sizeof("text/csv; charset=utf-8") - 1;
    ngx_str_set(&r->headers_out.content_type, "text/csv; charset=utf-8");

    return ngx_http_twirt_send(r, NGX_HTTP_OK, NULL, buf, size);
}


static ngx_int_t
ngx_http_twirt_campaign_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *kind, const char *fmt, ...)
{
    u_char                     *p, text[512];
    va_list                     args;
    ngx_http_twirt_log_text_t   t;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    /* the words may quote the request (a CSV's column): escaped */

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "twirt: campaign request refused with %ui, %s: %V",
                  status, kind, ngx_http_twirt_log_text(&t, text, p - text));

    if (r->headers_in.content_length_n > 0 && !r->request_body
        && ngx_http_discard_request_body(r) != NGX_OK)
    {
        r->keepalive = 0;
    }

    return ngx_http_twirt_send_json(r, status,
               json_pack("{s:{s:s,s:s%}}", "error", "kind", kind,
                         "message", text, (size_t) (p - text)));
}


/* EVAL with the campaigns' keys; the contract of ngx_http_twirt_redis_read */

static ngx_int_t
ngx_http_twirt_campaign_eval(ngx_str_t *script, ngx_str_t *id,
    ngx_uint_t argc, ngx_str_t *argv, ngx_pool_t *pool,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle)
{
    ngx_str_t   av[NGX_HTTP_TWIRT_REDIS_ARGS], prefix;
    ngx_uint_t  i;

    if (10 + argc > NGX_HTTP_TWIRT_REDIS_ARGS) {
        return NGX_ERROR;
    }

    ngx_str_set(&av[0], "EVAL");
    av[1] = *script;
    ngx_str_set(&av[2], "5");

    if (ngx_http_twirt_redis_key(pool, "campaign", id, NULL, &av[3])
           != NGX_OK
        || ngx_http_twirt_redis_key(pool, "campaigns:running", NULL, NULL,
                                    &av[4])
           != NGX_OK
        || ngx_http_twirt_redis_key(pool, "dnc", NULL, NULL, &av[5])
           != NGX_OK
        || ngx_http_twirt_redis_key(pool, "pace", NULL, NULL, &av[6])
           != NGX_OK
        || ngx_http_twirt_redis_key(pool, "campaigns", NULL, NULL, &av[7])
           != NGX_OK
        || ngx_http_twirt_redis_key(pool, "", NULL, NULL, &prefix) != NGX_OK)
    {
        return NGX_ERROR;
    }

    av[8] = *id;
    av[9] = prefix;

    for (i = 0; i < argc; i++) {
        av[10 + i] = argv[i];
    }

    return ngx_http_twirt_redis_read(10 + argc, av, 0, handler, data,
                                     handle);
}


/*
 * "mon-fri 09:00-20:00 Asia/Tokyo": days (mon..sun, ranges and lists,
 * "daily", "weekdays", "weekends"), a start and an end of the day (HH:MM
 * or HH:MM:SS, end up to 24:00, after the start), a time zone of the
 * system's database (or UTC).
 */

static ngx_int_t
ngx_http_twirt_window_parse(u_char *p, size_t len,
    ngx_http_twirt_window_t *w, const char **error)
{
    u_char      *end, *word, *tz;
    ngx_int_t    first, last, d, *t, h, m, s;
    ngx_uint_t   i, k;
    ngx_int_t    offset;

    static const char  *days[] = {
        "sun", "mon", "tue", "wed", "thu", "fri", "sat"
    };

    ngx_memzero(w, sizeof(ngx_http_twirt_window_t));

    end = p + len;

    /* the days */

    word = p;

    while (p < end && *p != ' ') {
        p++;
    }

    if (p - word == 5 && ngx_strncasecmp(word, (u_char *) "daily", 5) == 0) {
        w->days = 0x7f;

    } else if (p - word == 8
               && ngx_strncasecmp(word, (u_char *) "weekdays", 8) == 0)
    {
        w->days = 0x3e;

    } else if (p - word == 8
               && ngx_strncasecmp(word, (u_char *) "weekends", 8) == 0)
    {
        w->days = 0x41;

    } else {
        while (word < p) {
            first = -1;
            last = -1;

            for (k = 0; k < 2; k++) {
                d = -1;

                for (i = 0; i < 7; i++) {
                    if (p - word >= 3
                        && ngx_strncasecmp(word, (u_char *) days[i], 3) == 0)
                    {
                        d = i;
                        break;
                    }
                }

                if (d < 0) {
                    *error = "days are mon, tue, wed, thu, fri, sat, sun, "
                             "ranges (mon-fri), lists (sat,sun), daily, "
                             "weekdays or weekends";
                    return NGX_ERROR;
                }

                word += 3;

                if (k == 0) {
                    first = d;
                    last = d;

                    if (word < p && *word == '-') {
                        word++;
                        continue;
                    }

                    break;
                }

                last = d;
            }

            for (d = first; ; d = (d + 1) % 7) {
                w->days |= 1 << d;

                if (d == last) {
                    break;
                }
            }

            if (word < p && *word == ',') {
                word++;

                if (word == p) {
                    *error = "a list of days ends with ','";
                    return NGX_ERROR;
                }

            } else if (word < p) {
                *error = "days are separated by ',' or '-'";
                return NGX_ERROR;
            }
        }
    }

    if (w->days == 0) {
        *error = "no days";
        return NGX_ERROR;
    }

    /* the hours */

    while (p < end && *p == ' ') {
        p++;
    }

    for (k = 0; k < 2; k++) {
        t = k ? &w->end : &w->start;

        h = -1;
        m = -1;
        s = 0;

        if (end - p >= 5 && p[2] == ':') {
            h = ngx_atoi(p, 2);
            m = ngx_atoi(p + 3, 2);
            p += 5;

            if (end - p >= 3 && p[0] == ':') {
                s = ngx_atoi(p + 1, 2);
                p += 3;
            }
        }

        if (h < 0 || m < 0 || s < 0 || m > 59 || s > 59 || h > 24
            || (h == 24 && (m || s)))
        {
            *error = "times are HH:MM or HH:MM:SS, 00:00 to 24:00";
            return NGX_ERROR;
        }

        *t = h * 3600 + m * 60 + s;

        if (k == 0) {
            if (p == end || *p != '-') {
                *error = "the hours are START-END, like 09:00-20:00";
                return NGX_ERROR;
            }

            p++;
        }
    }

    if (w->end <= w->start) {
        *error = "the end of the day's window must come after its start";
        return NGX_ERROR;
    }

    /* the time zone */

    while (p < end && *p == ' ') {
        p++;
    }

    tz = p;

    if (p == end || end - tz >= (ssize_t) sizeof(w->tz)) {
        *error = "a time zone is needed, like Asia/Tokyo or UTC";
        return NGX_ERROR;
    }

    for ( /* void */ ; p < end; p++) {
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')
              || (*p >= '0' && *p <= '9') || *p == '/' || *p == '_'
              || *p == '-' || *p == '+'))
        {
            *error = "a time zone is a name like Asia/Tokyo or UTC";
            return NGX_ERROR;
        }
    }

    if (tz[0] == '/' || ngx_strlcasestrn(tz, end, (u_char *) "..", 1)) {
        *error = "a time zone is a name like Asia/Tokyo or UTC";
        return NGX_ERROR;
    }

    ngx_memcpy(w->tz, tz, end - tz);

    if (ngx_http_twirt_tz_offset(w->tz, ngx_time(), &offset) != NGX_OK) {
        *error = "the time zone is not in the system's database "
                 "(/usr/share/zoneinfo)";
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_window_open(ngx_http_twirt_window_t *w, time_t now)
{
    time_t     local;
    ngx_int_t  offset, secs;
    ngx_tm_t   tm;

    if (ngx_http_twirt_tz_offset(w->tz, now, &offset) != NGX_OK) {
        return 0;
    }

    local = now + offset;
    ngx_gmtime(local, &tm);

    if (!(w->days & (1 << tm.ngx_tm_wday))) {
        return 0;
    }

    secs = local % 86400;

    return secs >= w->start && secs < w->end;
}


/*
 * A zone's offset from UTC now.  The C library knows the zones: TZ is
 * set for a moment (a worker has one thread) and put back; the answer is
 * kept for a minute, so that the file is read once a minute at most.
 */

static ngx_int_t
ngx_http_twirt_tz_offset(u_char *tz, time_t now, ngx_int_t *offset)
{
    char             *saved, path[sizeof("/usr/share/zoneinfo/") + 64];
    struct tm         tm;
    ngx_file_info_t   fi;
    ngx_uint_t   i;

    static struct {
        u_char     name[64];
        time_t     until;
        ngx_int_t  offset;
    } cache[8];

    static ngx_uint_t  next;

    if (ngx_strcmp(tz, "UTC") == 0) {
        *offset = 0;
        return NGX_OK;
    }

    for (i = 0; i < 8; i++) {
        if (cache[i].until > now && ngx_strcmp(cache[i].name, tz) == 0) {
            *offset = cache[i].offset;
            return NGX_OK;
        }
    }

    (void) ngx_sprintf((u_char *) path, "/usr/share/zoneinfo/%s%Z", tz);

    /* a zone's file: "Asia" is a directory, which the C library takes
     * for UTC without a word */

    if (ngx_file_info(path, &fi) == NGX_FILE_ERROR || !ngx_is_file(&fi)) {
        return NGX_ERROR;
    }

    saved = getenv("TZ");

    if (saved) {
        saved = strdup(saved);
        if (saved == NULL) {
            return NGX_ERROR;
        }
    }

    setenv("TZ", (char *) tz, 1);
    tzset();

    (void) localtime_r(&now, &tm);

    if (saved) {
        setenv("TZ", saved, 1);
        free(saved);

    } else {
        unsetenv("TZ");
    }

    tzset();

    *offset = tm.tm_gmtoff;

    i = next++ % 8;
    (void) ngx_cpystrn(cache[i].name, tz, sizeof(cache[i].name));
    cache[i].until = now + 60;
    cache[i].offset = *offset;

    return NGX_OK;
}


/* the dispatcher: a tick lists the running campaigns, then claims rows */

static void
ngx_http_twirt_dispatch_tick(ngx_event_t *ev)
{
    ngx_int_t                     rc;
    ngx_str_t                     id;
    ngx_pool_t                   *pool;
    ngx_http_twirt_dispatcher_t  *d;

    d = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    /*
     * Jittered: slots come every 1000 / cps ms, and with a fixed period
     * the worker whose phase comes first after a slot would claim every
     * one of them, on every node, for ever (at 5 cps, one worker dialed
     * all of them).
     */

    ngx_add_timer(&d->timer, NGX_HTTP_TWIRT_CAMPAIGN_TICK * 3 / 4
                             + ngx_random() % (NGX_HTTP_TWIRT_CAMPAIGN_TICK
                                               / 2));

    if (d->pending) {
        /* the last tick's scripts are still out */
        return;
    }

    pool = ngx_create_pool(1024, d->log);
    if (pool == NULL) {
        return;
    }

    ngx_str_set(&id, "");

    rc = ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_list_running, &id,
                                      0, NULL, pool,
                                      ngx_http_twirt_dispatch_listed, d,
                                      &d->read);
    ngx_destroy_pool(pool);

    if (rc == NGX_OK) {
        d->pending = 1;
    }
}


static void
ngx_http_twirt_dispatch_listed(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_dispatcher_t *d = data;

    u_char                   *p;
    void                     *handle;
    ngx_str_t                 argv[6];
    ngx_msec_t                lease;
    ngx_uint_t                i, open;
    ngx_pool_t               *pool;
    const char               *error;
    ngx_keyval_t             *kv;
    ngx_http_twirt_window_t   w;

    d->pending = 0;
    d->read = NULL;

    if (rc != NGX_OK || pairs->nelts == 0) {
        return;
    }

    pool = ngx_create_pool(1024, d->log);
    if (pool == NULL) {
        return;
    }

    p = ngx_pnalloc(pool, 4 * NGX_INT_T_LEN);
    if (p == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    argv[0] = d->worker;

    argv[2].data = p;
    argv[2].len = ngx_sprintf(p, "%d", NGX_HTTP_TWIRT_CAMPAIGN_HORIZON) - p;
    p += argv[2].len;

    /*
     * A dial's lease outlasts the request to Twilio: its worker has the
     * answer, or has given up, before another asks what became of it
     */

    lease = ngx_max(d->cmcf->lease, d->cmcf->tlcf->twilio_timeout + 2000);

    argv[3].data = p;
    argv[3].len = ngx_sprintf(p, "%M", lease) - p;
    p += argv[3].len;

    argv[4].data = p;
    argv[4].len = ngx_sprintf(p, "%ui", d->cmcf->cps) - p;
    p += argv[4].len;

    argv[5].data = p;
    argv[5].len = ngx_sprintf(p, "%d", NGX_HTTP_TWIRT_CAMPAIGN_CLAIMS) - p;

    kv = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {

        open = 1;

        if (kv[i].value.len) {
            if (ngx_http_twirt_window_parse(kv[i].value.data,
                                            kv[i].value.len, &w, &error)
                != NGX_OK)
            {
                ngx_log_error(NGX_LOG_ERR, d->log, 0,
                              "twirt: campaign \"%V\": its window: %s",
                              &kv[i].key, error);
                open = 0;

            } else {
                open = ngx_http_twirt_window_open(&w, ngx_time());
            }
        }

        if (open) {
            ngx_str_set(&argv[1], "1");

        } else {
            ngx_str_set(&argv[1], "0");
        }

        if (ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_claim,
                                         &kv[i].key, 6, argv, pool,
                                         ngx_http_twirt_dispatch_claimed, d,
                                         &handle)
            == NGX_OK)
        {
            d->pending++;
        }
    }

    d->claimed_at = ngx_current_msec;

    ngx_destroy_pool(pool);
}


static void
ngx_http_twirt_dispatch_claimed(void *data, ngx_int_t rc,
    ngx_array_t *pairs)
{
    ngx_http_twirt_dispatcher_t *d = data;

    json_t                 *delay;
    ngx_uint_t              i;
    ngx_keyval_t           *kv;
    ngx_http_twirt_job_t   *job;

    d->pending--;

    if (rc != NGX_OK) {
        return;
    }

    kv = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {

        if (kv[i].key.len == 4
            && ngx_strncmp(kv[i].key.data, "dial", 4) == 0)
        {
            job = ngx_http_twirt_job_create(&kv[i].value,
                                            NGX_HTTP_TWIRT_JOB_DIAL);
            if (job == NULL) {
                continue;
            }

            /*
             * The claim came back after its slots had passed (Redis was
             * slow or away): dialing now would bunch the calls; the row
             * goes back, its attempt not counted
             */

            if (ngx_current_msec - d->claimed_at
                > NGX_HTTP_TWIRT_CAMPAIGN_HORIZON)
            {
                ngx_log_error(NGX_LOG_INFO, job->log, 0,
                              "twirt: campaign %V row %V: its claim came "
                              "back %M ms late, its slot has passed: "
                              "queued again", &job->id, &job->row,
                              ngx_current_msec - d->claimed_at);
                ngx_http_twirt_job_report(job, "lost", NULL, 0,
                                          "the claim came back late");
                continue;
            }

            /* dialed at its slot: the pacing is the slots' */

            delay = json_object_get(job->json, "delay");

            if (json_is_number(delay) && json_number_value(delay) > 0) {
                ngx_add_timer(&job->timer,
                              (ngx_msec_t) json_number_value(delay));

            } else {
                ngx_post_event(&job->timer, &ngx_posted_events);
            }

            continue;
        }

        if (kv[i].key.len == 5
            && ngx_strncmp(kv[i].key.data, "check", 5) == 0)
        {
            job = ngx_http_twirt_job_create(&kv[i].value,
                                            NGX_HTTP_TWIRT_JOB_CHECK);
            if (job) {
                ngx_http_twirt_job_check(job);
            }
        }
    }
}


static ngx_http_twirt_job_t *
ngx_http_twirt_job_create(ngx_str_t *value, ngx_http_twirt_job_e kind)
{
    json_t                *json, *v;
    ngx_str_t             *s;
    ngx_log_t             *log;
    ngx_uint_t             i;
    ngx_pool_t            *pool;
    json_error_t           err;
    ngx_http_twirt_job_t  *job;

    /* the claim's strings the job keeps */
    static struct {
        const char  *name;
        size_t       offset;
    } fields[] = {
        { "campaign", offsetof(ngx_http_twirt_job_t, id) },
        { "row", offsetof(ngx_http_twirt_job_t, row) },
        { "attempt", offsetof(ngx_http_twirt_job_t, attempt) },
        { "to", offsetof(ngx_http_twirt_job_t, to) },
        { "from", offsetof(ngx_http_twirt_job_t, from) },
        { "sid", offsetof(ngx_http_twirt_job_t, sid) },
        { NULL, 0 }
    };

    json = json_loadb((char *) value->data, value->len, 0, &err);

    if (!json_is_object(json)) {
        json_decref(json);
        return NULL;
    }

    pool = ngx_create_pool(2048, ngx_http_twirt_dispatcher.log);
    if (pool == NULL) {
        json_decref(json);
        return NULL;
    }

    job = ngx_pcalloc(pool, sizeof(ngx_http_twirt_job_t));
    log = ngx_palloc(pool, sizeof(ngx_log_t));

    if (job == NULL || log == NULL) {
        ngx_destroy_pool(pool);
        json_decref(json);
        return NULL;
    }

    *log = *ngx_http_twirt_dispatcher.log;
    log->action = "dispatching a campaign";

    job->pool = pool;
    job->log = log;
    job->kind = kind;
    job->json = json;

    for (i = 0; fields[i].name; i++) {
        s = ngx_http_twirt_json_str(pool, json, fields[i].name);

        if (s) {
            *(ngx_str_t *) ((u_char *) job + fields[i].offset) = *s;
        }
    }

    v = json_object_get(json, "claimed_at");
    job->claimed = json_is_number(v) ? (time_t) (json_number_value(v) / 1000)
                                     : 0;

    if (job->id.len == 0 || job->row.len == 0 || job->to.len == 0) {
        ngx_log_error(NGX_LOG_ERR, log, 0,
                      "twirt: a campaign's claim without a row");
        ngx_http_twirt_job_free(job);
        return NULL;
    }

    job->timer.handler = ngx_http_twirt_job_dial;
    job->timer.data = job;
    job->timer.log = log;

    ngx_queue_insert_tail(&ngx_http_twirt_dispatcher.jobs, &job->queue);

    return job;
}


static void
ngx_http_twirt_job_free(ngx_http_twirt_job_t *job)
{
    if (job->timer.timer_set) {
        ngx_del_timer(&job->timer);
    }

    if (job->timer.posted) {
        ngx_delete_posted_event(&job->timer);
    }

    if (job->http) {
        ngx_http_twirt_http_cancel(job->http);
        job->http = NULL;
    }

    if (job->read) {
        ngx_http_twirt_redis_cancel(job->read);
        job->read = NULL;
    }

    if (job->queue.next) {
        ngx_queue_remove(&job->queue);
    }

    json_decref(job->json);
    ngx_destroy_pool(job->pool);
}


/* a string (or a number as one) of a JSON object, in the pool */

static ngx_str_t *
ngx_http_twirt_json_str(ngx_pool_t *pool, json_t *obj, const char *key)
{
    u_char     *p;
    json_t     *v;
    ngx_str_t  *s;

    v = json_object_get(obj, key);

    if (v == NULL || !(json_is_string(v) || json_is_integer(v))) {
        return NULL;
    }

    s = ngx_palloc(pool, sizeof(ngx_str_t));
    if (s == NULL) {
        return NULL;
    }

    if (json_is_string(v)) {
        s->len = json_string_length(v);
        s->data = ngx_pnalloc(pool, s->len + 1);
        if (s->data == NULL) {
            return NULL;
        }

        ngx_memcpy(s->data, json_string_value(v), s->len);
        s->data[s->len] = '\0';
        return s;
    }

    p = ngx_pnalloc(pool, NGX_INT64_LEN + 1);
    if (p == NULL) {
        return NULL;
    }

    s->data = p;
    s->len = ngx_sprintf(p, "%L", (int64_t) json_integer_value(v)) - p;
    p[s->len] = '\0';

    return s;
}


/*
 * twirt's own URL with the row's query: the webhook gets the agent and
 * the variables (the row's over the campaign's), the callbacks the row
 */

static ngx_int_t
ngx_http_twirt_job_url(ngx_http_twirt_job_t *job, ngx_str_t *base,
    ngx_uint_t vars, ngx_uint_t amd, ngx_str_t *url)
{
    u_char        *p, sep;
    size_t         len;
    json_t        *all, *row, *v;
    ngx_str_t     *agent, *s;
    const char    *key;
    json_error_t   err;

    all = NULL;
    agent = NULL;

    if (vars) {
        s = ngx_http_twirt_json_str(job->pool, job->json, "defaults");
        all = s ? json_loadb((char *) s->data, s->len, 0, &err) : NULL;

        if (!json_is_object(all)) {
            json_decref(all);
            all = json_object();
        }

        s = ngx_http_twirt_json_str(job->pool, job->json, "vars");
        row = s ? json_loadb((char *) s->data, s->len, 0, &err) : NULL;

        if (json_is_object(row)) {
            json_object_update(all, row);
        }

        json_decref(row);

        agent = ngx_http_twirt_json_str(job->pool, job->json, "agent");
    }

    len = base->len + sizeof("?agent=&campaign=&row=&attempt=&amd=1") - 1
          + 3 * (agent ? agent->len : 0) + job->id.len + job->row.len
          + job->attempt.len;

    json_object_foreach(all, key, v) {
        len += sizeof("&var.=") - 1 + 3 * ngx_strlen(key)
               + 3 * json_string_length(v);
    }

    p = ngx_pnalloc(job->pool, len);
    if (p == NULL) {
        json_decref(all);
        return NGX_ERROR;
    }

    url->data = p;
    p = ngx_cpymem(p, base->data, base->len);
    sep = ngx_strlchr(url->data, p, '?') ? '&' : '?';

    if (agent && agent->len) {
        *p++ = sep;
        p = ngx_http_twirt_form_add(p, "agent=", agent->data, agent->len);
        sep = '&';
    }

    json_object_foreach(all, key, v) {
        if (!json_is_string(v)) {
            continue;
        }

        *p++ = sep;
        p = ngx_cpymem(p, "var.", 4);
        p = ngx_http_twirt_form_add(p, "", (u_char *) key, ngx_strlen(key));
        *p++ = '=';
        p = ngx_http_twirt_form_add(p, "", (u_char *) json_string_value(v),
                                    json_string_length(v));
        sep = '&';
    }

    json_decref(all);

    *p++ = sep;
    p = ngx_sprintf(p, "campaign=%V&row=%V&attempt=%V", &job->id, &job->row,
                    &job->attempt);

    if (amd) {
        p = ngx_cpymem(p, "&amd=1", sizeof("&amd=1") - 1);
    }

    url->len = p - url->data;

    return NGX_OK;
}


static void
ngx_http_twirt_job_dial(ngx_event_t *ev)
{
    ngx_http_twirt_job_t *job = ev->data;

    ngx_str_t                             form, *amd, *timeout;
    ngx_http_twirt_place_t                pl;
    ngx_http_twirt_loc_conf_t            *tlcf;
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    cmcf = ngx_http_twirt_dispatcher.cmcf;
    tlcf = cmcf->tlcf;

    ngx_memzero(&pl, sizeof(ngx_http_twirt_place_t));

    pl.to = job->to;
    pl.from = job->from;

    amd = ngx_http_twirt_json_str(job->pool, job->json, "amd");
    timeout = ngx_http_twirt_json_str(job->pool, job->json, "timeout");

    if (timeout) {
        pl.timeout = ngx_atoi(timeout->data, timeout->len);

        if (pl.timeout == NGX_ERROR) {
            pl.timeout = 0;
        }
    }

    if (ngx_http_twirt_job_url(job, &tlcf->outbound_url, 1, 0, &pl.url)
        != NGX_OK)
    {
        goto failed;
    }

    /* without a callback URL, outcomes come from asking Twilio */

    if (tlcf->outbound_status_callback.len
        && ngx_http_twirt_job_url(job, &tlcf->outbound_status_callback, 0, 0,
                                  &pl.status_callback)
           != NGX_OK)
    {
        goto failed;
    }

    if (amd && amd->len && ngx_strcmp(amd->data, "off") != 0
        && tlcf->outbound_status_callback.len)
    {
        ngx_str_set(&pl.amd, "DetectMessageEnd");

        if (ngx_http_twirt_job_url(job, &tlcf->outbound_status_callback, 0,
                                   1, &pl.amd_callback)
            != NGX_OK)
        {
            goto failed;
        }
    }

    if (ngx_http_twirt_outbound_form(job->pool, &pl, &form) != NGX_OK) {
        goto failed;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, job->log, 0,
                   "twirt: campaign %V row %V attempt %V: dialing",
                   &job->id, &job->row, &job->attempt);

    if (ngx_http_twirt_job_request(job, "POST", &tlcf->twilio_calls_uri,
                                   &form, ngx_http_twirt_job_dialed)
        != NGX_OK)
    {
        ngx_http_twirt_job_report(job, "retry", NULL, 0,
                                  "could not start a request to the Twilio "
                                  "API");
    }

    return;

failed:

    ngx_http_twirt_job_report(job, "retry", NULL, 0, "out of memory");
}


static void
ngx_http_twirt_job_dialed(ngx_http_twirt_http_t *h)
{
    ngx_http_twirt_job_t *job = h->data;

    u_char                          *p, words[512];
    json_t                          *sid;
    ngx_str_t                        s;
    const char                      *kind;
    ngx_http_twirt_log_text_t        t;
    ngx_http_twirt_twilio_answer_t   a;

    job->http = NULL;

    ngx_http_twirt_twilio_answer(h, &a);

    p = words;
    kind = "retry";

    switch (a.kind) {

    case NGX_HTTP_TWIRT_TWILIO_OK:
        sid = json_object_get(a.json, "sid");
        s.data = (u_char *) json_string_value(sid);
        s.len = json_string_length(sid);

        if (!json_is_string(sid) || ngx_http_twirt_sid_valid(&s) != NGX_OK) {
            kind = "unknown";
            p = ngx_slprintf(p, words + sizeof(words), "the Twilio API "
                             "answered %ui without a call", a.status);
            break;
        }

        ngx_log_error(NGX_LOG_INFO, job->log, 0,
                      "twirt: campaign %V row %V attempt %V: call %V "
                      "placed", &job->id, &job->row, &job->attempt, &s);

        ngx_http_twirt_metrics_dial("ok");

        ngx_http_twirt_job_report(job, "ok", &s, 0, "");
        json_decref(a.json);
        return;

    case NGX_HTTP_TWIRT_TWILIO_INVALID:
        kind = ngx_strcmp(a.name, "invalid_number") == 0 ? "invalid"
               : ngx_strcmp(a.name, "invalid_from") == 0 ? "pause"
               : "failed";
        p = ngx_slprintf(p, words + sizeof(words), "%s (%ui): %s",
                         a.words, a.code, a.message);
        break;

    case NGX_HTTP_TWIRT_TWILIO_REFUSED:
        kind = "failed";
        p = ngx_slprintf(p, words + sizeof(words), "%s (%ui): %s",
                         a.words, a.code, a.message);
        break;

    case NGX_HTTP_TWIRT_TWILIO_AUTH:
    case NGX_HTTP_TWIRT_TWILIO_NOT_FOUND:
        kind = "pause";
        p = ngx_slprintf(p, words + sizeof(words), "%s (%ui %ui): fix "
                         "twirt_twilio_account_sid and its credentials, "
                         "then resume the campaign", a.words, a.status,
                         a.code);
        break;

    case NGX_HTTP_TWIRT_TWILIO_RATE_LIMITED:
        kind = "rate_limited";
        p = ngx_slprintf(p, words + sizeof(words), "%s (%ui)", a.words,
                         a.code);
        break;

    case NGX_HTTP_TWIRT_TWILIO_TIMEOUT:
        /* it may have reached Twilio: ask before dialing again */
        kind = "unknown";
        p = ngx_slprintf(p, words + sizeof(words), "%s", a.words);
        break;

    case NGX_HTTP_TWIRT_TWILIO_NETWORK:
        kind = ngx_strcmp(a.name, "twilio_protocol") == 0 ? "unknown"
                                                           : "retry";
        p = ngx_slprintf(p, words + sizeof(words), "%s: %s", a.name,
                         a.words);
        break;

    default:
        p = ngx_slprintf(p, words + sizeof(words), "the Twilio API "
                         "answered %ui (%ui)", a.status, a.code);
    }

    json_decref(a.json);

    if (p == words + sizeof(words)) {
        p--;
    }

    *p = '\0';

    /* Twilio's words are not ours: escaped */

    ngx_log_error(NGX_LOG_WARN, job->log, 0,
                  "twirt: campaign %V row %V attempt %V not placed, %s: %V",
                  &job->id, &job->row, &job->attempt, kind,
                  ngx_http_twirt_log_text(&t, words, p - words));

    ngx_http_twirt_metrics_dial(kind);

    ngx_http_twirt_job_report(job, kind, NULL, a.retry_after,
                              (char *) words);
}


static void
ngx_http_twirt_job_report(ngx_http_twirt_job_t *job, const char *kind,
    ngx_str_t *sid, ngx_uint_t retry_after, const char *message)
{
    u_char     *p;
    ngx_str_t   argv[7];

    argv[0] = job->row;
    argv[1] = job->attempt;
    argv[2].data = (u_char *) kind;
    argv[2].len = ngx_strlen(kind);

    if (sid) {
        argv[3] = *sid;
        job->sid.data = ngx_pstrdup(job->pool, sid);
        job->sid.len = job->sid.data ? sid->len : 0;

    } else {
        ngx_str_set(&argv[3], "");
    }

    p = ngx_pnalloc(job->pool, 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        ngx_http_twirt_job_free(job);
        return;
    }

    argv[4].data = p;
    argv[4].len = ngx_sprintf(p, "%ui", retry_after) - p;
    p += argv[4].len;

    argv[5].data = (u_char *) message;
    argv[5].len = ngx_strlen(message);

    argv[6].data = p;
    argv[6].len = ngx_sprintf(p, "%M",
                              ngx_http_twirt_dispatcher.cmcf->lease) - p;

    job->kind = NGX_HTTP_TWIRT_JOB_DIAL;

    if (ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_report, &job->id,
                                     7, argv, job->pool,
                                     ngx_http_twirt_job_reported, job,
                                     &job->read)
        != NGX_OK)
    {
        /* the lease expires, and the row is checked with Twilio */
        ngx_log_error(NGX_LOG_WARN, job->log, 0,
                      "twirt: campaign %V row %V: the outcome of a dial "
                      "could not be written, the lease will tell",
                      &job->id, &job->row);
        ngx_http_twirt_job_free(job);
    }
}


/* Twilio's final word on a row's call (asked, after its lease expired) */

static void
ngx_http_twirt_job_finish(ngx_http_twirt_job_t *job, json_t *call)
{
    ngx_str_t  argv[6], *v;

    argv[0] = job->row;
    argv[1] = job->attempt;

    v = ngx_http_twirt_json_str(job->pool, call, "sid");
    if (v == NULL) {
        ngx_http_twirt_job_free(job);
        return;
    }

    argv[2] = *v;

    v = ngx_http_twirt_json_str(job->pool, call, "status");
    if (v == NULL) {
        ngx_http_twirt_job_free(job);
        return;
    }

    argv[3] = *v;

    v = ngx_http_twirt_json_str(job->pool, call, "duration");
    if (v) {
        argv[4] = *v;
    } else {
        ngx_str_set(&argv[4], "0");
    }

    v = ngx_http_twirt_json_str(job->pool, call, "answered_by");
    if (v) {
        argv[5] = *v;
    } else {
        ngx_str_set(&argv[5], "");
    }

    ngx_log_error(NGX_LOG_INFO, job->log, 0,
                  "twirt: campaign %V row %V: Twilio says call %V is %V",
                  &job->id, &job->row, &argv[2], &argv[3]);

    job->kind = NGX_HTTP_TWIRT_JOB_CHECK;

    if (ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_finish, &job->id, 6,
                                     argv, job->pool,
                                     ngx_http_twirt_job_reported, job,
                                     &job->read)
        != NGX_OK)
    {
        ngx_http_twirt_job_free(job);
    }
}


static void
ngx_http_twirt_job_reported(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_job_t *job = data;

    ngx_keyval_t  *kv;

    job->read = NULL;

    kv = (rc == NGX_OK && pairs->nelts) ? pairs->elts : NULL;

    /*
     * A call placed for a row that moved on meanwhile (its lease expired
     * and it was dialed again, or the campaign was cancelled): two calls
     * of one row never overlap, this one is hung up.
     */

    if (kv && job->kind == NGX_HTTP_TWIRT_JOB_DIAL && job->sid.len
        && kv[0].value.len == 5 && ngx_strncmp(kv[0].value.data, "stale", 5)
                                   == 0)
    {
        ngx_log_error(NGX_LOG_WARN, job->log, 0,
                      "twirt: campaign %V row %V: call %V was placed for "
                      "an attempt that is over; hanging it up", &job->id,
                      &job->row, &job->sid);
        ngx_http_twirt_job_hangup(job);
        return;
    }

    ngx_http_twirt_job_free(job);
}


static void
ngx_http_twirt_job_hangup(ngx_http_twirt_job_t *job)
{
    ngx_str_t  form;

    ngx_str_set(&form, "Status=completed");

    job->kind = NGX_HTTP_TWIRT_JOB_HANGUP;

    if (ngx_http_twirt_job_request(job, "POST", NULL, &form,
                                   ngx_http_twirt_job_hung_up)
        != NGX_OK)
    {
        ngx_http_twirt_job_free(job);
    }
}


/*
 * A job's request to Twilio's REST API, started; uri NULL: the job's
 * call, .../Calls/{CallSid}.json.  NGX_ERROR: nothing started.
 */

static ngx_int_t
ngx_http_twirt_job_request(ngx_http_twirt_job_t *job, const char *method,
    ngx_str_t *uri, ngx_str_t *body, ngx_http_twirt_http_pt handler)
{
    u_char                               *p;
    ngx_str_t                             call, *calls;
    ngx_http_twirt_http_t                *h;
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    cmcf = ngx_http_twirt_dispatcher.cmcf;

    if (uri == NULL) {
        calls = &cmcf->tlcf->twilio_calls_uri;

        p = ngx_pnalloc(job->pool, calls->len + 1 + job->sid.len);
        if (p == NULL) {
            return NGX_ERROR;
        }

        call.data = p;
        p = ngx_cpymem(p, calls->data, calls->len - sizeof(".json") + 1);
        *p++ = '/';
        p = ngx_cpymem(p, job->sid.data, job->sid.len);
        p = ngx_cpymem(p, ".json", sizeof(".json") - 1);
        call.len = p - call.data;

        uri = &call;
    }

    h = ngx_http_twirt_twilio_request(cmcf->tlcf, cmcf->clcf, job->log,
                                      method, uri, body);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->data = job;
    h->handler = handler;
    job->http = h;

    if (ngx_http_twirt_http_start(h) != NGX_OK) {
        ngx_http_twirt_http_cancel(h);
        job->http = NULL;
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_http_twirt_job_hung_up(ngx_http_twirt_http_t *h)
{
    ngx_http_twirt_job_t *job = h->data;

    ngx_http_twirt_twilio_answer_t  a;

    job->http = NULL;

    ngx_http_twirt_twilio_answer(h, &a);
    json_decref(a.json);

    ngx_http_twirt_job_free(job);
}


/*
 * A row's lease expired.  With a CallSid: Twilio tells how the call is;
 * without: the dial's answer never came, and Twilio's list of calls to
 * the number since the claim tells whether it was placed.
 */

static void
ngx_http_twirt_job_check(ngx_http_twirt_job_t *job)
{
    u_char     *p;
    ngx_str_t   list, *calls, *state;

    state = ngx_http_twirt_json_str(job->pool, job->json, "state");

    if (state == NULL
        || (ngx_strcmp(state->data, "dialing") != 0
            && ngx_strcmp(state->data, "calling") != 0))
    {
        ngx_http_twirt_job_free(job);
        return;
    }

    if (job->sid.len) {
        if (ngx_http_twirt_job_request(job, "GET", NULL, NULL,
                                       ngx_http_twirt_job_checked)
            != NGX_OK)
        {
            ngx_http_twirt_job_free(job);
        }

        return;
    }

    calls = &ngx_http_twirt_dispatcher.cmcf->tlcf->twilio_calls_uri;

    p = ngx_pnalloc(job->pool, calls->len
                               + sizeof("?To=&From=&PageSize=20") - 1
                               + 3 * (job->to.len + job->from.len));
    if (p == NULL) {
        ngx_http_twirt_job_free(job);
        return;
    }

    list.data = p;
    p = ngx_cpymem(p, calls->data, calls->len);
    p = ngx_http_twirt_form_add(p, "?To=", job->to.data, job->to.len);
    p = ngx_http_twirt_form_add(p, "&From=", job->from.data, job->from.len);
    p = ngx_cpymem(p, "&PageSize=20", sizeof("&PageSize=20") - 1);
    list.len = p - list.data;

    if (ngx_http_twirt_job_request(job, "GET", &list, NULL,
                                   ngx_http_twirt_job_checked)
        != NGX_OK)
    {
        ngx_http_twirt_job_free(job);
    }
}


static void
ngx_http_twirt_job_checked(ngx_http_twirt_http_t *h)
{
    ngx_http_twirt_job_t *job = h->data;

    size_t                           i;
    json_t                          *calls, *call, *v, *found;
    time_t                           created;
    ngx_str_t                        s;
    ngx_http_twirt_twilio_answer_t   a;

    job->http = NULL;

    ngx_http_twirt_twilio_answer(h, &a);

    if (a.kind == NGX_HTTP_TWIRT_TWILIO_NOT_FOUND && job->sid.len) {
        json_decref(a.json);
        ngx_http_twirt_job_report(job, "lost", &job->sid, 0,
                                  "Twilio does not know the call");
        return;
    }

    if (a.kind != NGX_HTTP_TWIRT_TWILIO_OK) {
        /* asked again when the new lease expires */
        json_decref(a.json);
        ngx_http_twirt_job_free(job);
        return;
    }

    if (job->sid.len) {
        found = a.json;

    } else {
        found = NULL;
        calls = json_object_get(a.json, "calls");

        json_array_foreach(calls, i, call) {
            v = json_object_get(call, "date_created");

            if (!json_is_string(v)) {
                continue;
            }

            created = ngx_parse_http_time((u_char *) json_string_value(v),
                                          json_string_length(v));

            /* Twilio's times are in seconds */

            if (created != NGX_ERROR && created + 1 >= job->claimed) {
                found = call;
                break;
            }
        }

        if (found == NULL) {
            json_decref(a.json);
            ngx_log_error(NGX_LOG_WARN, job->log, 0,
                          "twirt: campaign %V row %V: its dial was never "
                          "answered and Twilio has no call to %V since: "
                          "dialing it again", &job->id, &job->row,
                          &job->to);
            ngx_http_twirt_job_report(job, "lost", NULL, 0,
                                      "the dial's answer was lost");
            return;
        }
    }

    v = json_object_get(found, "status");
    s.data = (u_char *) json_string_value(v);
    s.len = json_string_length(v);

    if (s.data
        && ((s.len == 9 && ngx_strncmp(s.data, "completed", 9) == 0)
            || (s.len == 4 && ngx_strncmp(s.data, "busy", 4) == 0)
            || (s.len == 9 && ngx_strncmp(s.data, "no-answer", 9) == 0)
            || (s.len == 6 && ngx_strncmp(s.data, "failed", 6) == 0)
            || (s.len == 8 && ngx_strncmp(s.data, "canceled", 8) == 0)))
    {
        ngx_http_twirt_job_finish(job, found);
        json_decref(a.json);
        return;
    }

    if (job->sid.len == 0) {
        /* placed and live: the row has its call */
        v = json_object_get(found, "sid");
        s.data = (u_char *) json_string_value(v);
        s.len = json_string_length(v);

        if (s.data && ngx_http_twirt_sid_valid(&s) == NGX_OK) {
            ngx_log_error(NGX_LOG_INFO, job->log, 0,
                          "twirt: campaign %V row %V: its dial's answer was "
                          "lost, Twilio has call %V", &job->id, &job->row,
                          &s);
            ngx_http_twirt_job_report(job, "ok", &s, 0, "");
            json_decref(a.json);
            return;
        }
    }

    json_decref(a.json);
    ngx_http_twirt_job_free(job);
}


/* a campaign call's callback: the row learns how its call goes */

typedef struct {
    ngx_str_t                      sid;
    ngx_log_t                     *log;
    u_char                         data[1];
} ngx_http_twirt_campaign_amd_t;


static void
ngx_http_twirt_campaign_amd(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_campaign_amd_t *amd = data;

    ngx_str_t      mode, message;
    ngx_uint_t     i;
    ngx_pool_t    *pool;
    ngx_keyval_t  *kv;

    if (rc != NGX_OK) {
        ngx_free(amd);
        return;
    }

    kv = pairs->elts;
    ngx_str_null(&mode);
    ngx_str_null(&message);

    for (i = 0; i < pairs->nelts; i++) {
        if (kv[i].key.len == 3 && ngx_strncmp(kv[i].key.data, "amd", 3) == 0) {
            mode = kv[i].value;

        } else if (kv[i].key.len == 7
                   && ngx_strncmp(kv[i].key.data, "message", 7) == 0)
        {
            message = kv[i].value;
        }
    }

    if (mode.len && !(mode.len == 3 && ngx_strncmp(mode.data, "off", 3) == 0))
    {
        ngx_log_error(NGX_LOG_INFO, amd->log, 0,
                      "twirt: call %V: a machine answered, %V",
                      &amd->sid, &mode);

        pool = ngx_create_pool(1024, amd->log);

        if (pool) {
            (void) ngx_http_twirt_control_send(pool, amd->log, &amd->sid,
                                               (mode.len == 7) ? "machine"
                                                               : "hangup",
                                               (mode.len == 7) ? &message
                                                               : NULL,
                                               NULL, NULL, NULL);
            ngx_destroy_pool(pool);
        }
    }

    ngx_free(amd);
}


static void
ngx_http_twirt_campaign_noop(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
}


ngx_int_t
ngx_http_twirt_campaign_callback(ngx_http_request_t *r, ngx_array_t *pairs)
{
    void                           *handle;
    ngx_str_t                       id, row, attempt, v, argv[6];
    ngx_uint_t                      i, amd;
    ngx_http_twirt_pair_t          *p;
    ngx_http_twirt_loc_conf_t      *tlcf;
    ngx_http_twirt_redis_hash_pt    handler;
    ngx_http_twirt_campaign_amd_t  *ctx;

    if (ngx_http_arg(r, (u_char *) "campaign", 8, &id) != NGX_OK
        || ngx_http_arg(r, (u_char *) "row", 3, &row) != NGX_OK
        || ngx_http_arg(r, (u_char *) "attempt", 7, &attempt) != NGX_OK)
    {
        return NGX_DECLINED;
    }

    /* only a signed callback may write a row's outcome or hang up */

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    if (tlcf->auth_token.len == 0) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "twirt: a campaign's callback ignored: its signature "
                      "cannot be checked without \"twirt_twilio_auth_token\"");
        return NGX_DECLINED;
    }

    for (i = 0; i < id.len; i++) {
        if (!((id.data[i] >= 'a' && id.data[i] <= 'z')
              || (id.data[i] >= '0' && id.data[i] <= '9')))
        {
            return NGX_DECLINED;
        }
    }

    if (id.len == 0 || id.len > 32
        || ngx_atoi(row.data, row.len) <= 0 || row.len > 9
        || ngx_atoi(attempt.data, attempt.len) <= 0 || attempt.len > 3)
    {
        return NGX_DECLINED;
    }

    amd = (ngx_http_arg(r, (u_char *) "amd", 3, &v) == NGX_OK);

    argv[0] = row;
    argv[1] = attempt;

    p = ngx_http_twirt_form_find(pairs, (u_char *) "CallSid", 7, 0);
    if (p == NULL || ngx_http_twirt_sid_valid(&p->value) != NGX_OK) {
        return NGX_DECLINED;
    }

    argv[2] = p->value;

    p = ngx_http_twirt_form_find(pairs, (u_char *) "AnsweredBy", 10, 0);

    if (p) {
        argv[5] = p->value;
    } else {
        ngx_str_set(&argv[5], "");
    }

    handler = ngx_http_twirt_campaign_noop;
    ctx = NULL;

    if (amd) {
        if (argv[5].len == 0) {
            return NGX_DECLINED;
        }

        ngx_str_set(&argv[3], "amd");
        argv[4] = argv[5];

        /* only a machine's verdict needs the answer */

        if ((argv[5].len > 7 && ngx_strncmp(argv[5].data, "machine", 7) == 0)
            || (argv[5].len == 3 && ngx_strncmp(argv[5].data, "fax", 3) == 0))
        {
            ctx = ngx_alloc(sizeof(ngx_http_twirt_campaign_amd_t)
                            + argv[2].len, r->connection->log);
            if (ctx == NULL) {
                return NGX_ERROR;
            }

            ctx->sid.data = ctx->data;
            ctx->sid.len = argv[2].len;
            ngx_memcpy(ctx->data, argv[2].data, argv[2].len);
            ctx->log = ngx_cycle->log;
            handler = ngx_http_twirt_campaign_amd;
        }

        if (ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_progress, &id,
                                         5, argv, r->pool, handler, ctx,
                                         &handle)
            != NGX_OK && ctx)
        {
            ngx_free(ctx);
        }

        return NGX_OK;
    }

    p = ngx_http_twirt_form_find(pairs, (u_char *) "CallStatus", 10, 0);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    argv[3] = p->value;

    v = p->value;

    if ((v.len == 9 && ngx_strncmp(v.data, "completed", 9) == 0)
        || (v.len == 4 && ngx_strncmp(v.data, "busy", 4) == 0)
        || (v.len == 9 && ngx_strncmp(v.data, "no-answer", 9) == 0)
        || (v.len == 6 && ngx_strncmp(v.data, "failed", 6) == 0)
        || (v.len == 8 && ngx_strncmp(v.data, "canceled", 8) == 0))
    {
        p = ngx_http_twirt_form_find(pairs, (u_char *) "CallDuration", 12, 0);

        if (p) {
            argv[4] = p->value;
        } else {
            ngx_str_set(&argv[4], "0");
        }

        (void) ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_finish, &id,
                                            6, argv, r->pool,
                                            handler, NULL, &handle);
        return NGX_OK;
    }

    argv[4] = argv[5];

    (void) ngx_http_twirt_campaign_eval(&ngx_http_twirt_lua_progress, &id, 5,
                                        argv, r->pool, handler, NULL, &handle);
    return NGX_OK;
}


/* configuration */

static void *
ngx_http_twirt_campaign_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_campaign_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    cmcf->cps = NGX_CONF_UNSET_UINT;
    cmcf->lease = NGX_CONF_UNSET_MSEC;

    return cmcf;
}


static char *
ngx_http_twirt_campaign_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_twirt_campaign_main_conf_t *cmcf = conf;

    ngx_conf_init_uint_value(cmcf->cps, 1);
    ngx_conf_init_msec_value(cmcf->lease, 60000);

    if (cmcf->cps == 0 || cmcf->cps > 1000) {
        return "\"twirt_campaign_cps\" must be 1 to 1000";
    }

    if (cmcf->lease < 1000) {
        return "\"twirt_campaign_lease\" must be at least 1s";
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_campaigns(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_campaign_main_conf_t *cmcf = conf;

    ngx_http_core_loc_conf_t   *clcf;
    ngx_http_twirt_loc_conf_t  *tlcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    if (cmcf->tlcf) {
        return "is duplicate: one location is the campaigns' API";
    }

    tlcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_twirt_module);

    clcf->handler = ngx_http_twirt_campaign_handler;

    /* the location places calls: its Twilio settings are checked */
    tlcf->calls = 1;

    cmcf->tlcf = tlcf;
    cmcf->clcf = clcf;

    return NGX_CONF_OK;
}



ngx_str_t *
ngx_http_twirt_campaign_location(void)
{
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(ngx_cycle,
                                               ngx_http_twirt_campaign_module);

    /* a prefix the page can put its paths after; a regex is no address */

    if (cmcf == NULL || cmcf->clcf == NULL || cmcf->clcf->regex) {
        return NULL;
    }

    return &cmcf->clcf->name;
}

static ngx_int_t
ngx_http_twirt_campaign_init_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_dispatcher_t          *d;
    ngx_http_twirt_campaign_main_conf_t  *cmcf;

    d = &ngx_http_twirt_dispatcher;

    ngx_queue_init(&d->jobs);

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_twirt_campaign_module);

    if (cmcf == NULL || cmcf->tlcf == NULL
        || !ngx_http_twirt_redis_configured())
    {
        return NGX_OK;
    }

    if (cmcf->tlcf->outbound_status_callback.len == 0) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "twirt: campaigns without "
                      "\"twirt_outbound_status_callback\" learn their "
                      "calls' outcomes only when leases expire");
    }

    d->cmcf = cmcf;
    d->log = cycle->log;

    d->worker = *ngx_http_twirt_control_worker();

    d->timer.handler = ngx_http_twirt_dispatch_tick;
    d->timer.data = d;
    d->timer.log = cycle->log;
    d->timer.cancelable = 1;

    /* the workers' ticks spread over the interval */
    ngx_add_timer(&d->timer, 50 + ngx_random() % NGX_HTTP_TWIRT_CAMPAIGN_TICK);

    return NGX_OK;
}


static void
ngx_http_twirt_campaign_exit_process(ngx_cycle_t *cycle)
{
    ngx_queue_t                  *q;
    ngx_http_twirt_job_t         *job;
    ngx_http_twirt_dispatcher_t  *d;

    d = &ngx_http_twirt_dispatcher;

    if (d->timer.timer_set) {
        ngx_del_timer(&d->timer);
    }

    if (d->read) {
        ngx_http_twirt_redis_cancel(d->read);
        d->read = NULL;
    }

    if (d->jobs.next == NULL) {
        return;
    }

    while (!ngx_queue_empty(&d->jobs)) {
        q = ngx_queue_head(&d->jobs);
        job = ngx_queue_data(q, ngx_http_twirt_job_t, queue);
        ngx_http_twirt_job_free(job);
    }
}
