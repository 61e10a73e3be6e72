
/*
 * The call board's feed and API (README, "The call board").  A location
 * with twirt_board answers, after its prefix:
 *
 *   GET  events                      Server-Sent Events: every call's
 *                                    events, live
 *   GET  config                      what the page needs to know
 *   GET  calls/active                the calls in progress
 *   GET  calls?q=&from=&to=&before=&limit=   the history, searched
 *   GET  calls/{CallSid}             a call and its whole timeline
 *   POST calls/{CallSid}/hangup      the live call control
 *   GET  stats                       the last day, counted
 *
 * The feed: each worker reads {prefix}events:stream once for all its
 * browsers (one read in flight, every 100 ms while one is connected) and
 * writes each event to each of them.  A browser that comes back with
 * Last-Event-ID first receives what it missed from the stream; that read
 * goes on the same Redis connection as the worker's, after the reads
 * whose events it has not seen, so that nothing is lost or sent twice.
 * Each browser's unsent output is bounded (twirt_board_queue): a browser
 * that stops reading is closed and logged, and memory stays flat.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_http.h>

#include <jansson.h>

#include "ngx_http_twirt_board.h"
#include "ngx_http_twirt_campaign.h"
#include "ngx_http_twirt_metrics.h"
#include "ngx_http_twirt_phone.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_signature.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_twiml.h"


#define NGX_HTTP_TWIRT_BOARD_PERIOD   100       /* ms between reads */
#define NGX_HTTP_TWIRT_BOARD_PING     15000     /* ms between comments */
#define NGX_HTTP_TWIRT_BOARD_BATCH    "500"     /* events per read, and */
#define NGX_HTTP_TWIRT_BOARD_BYTES    "65536"   /* their bytes at most */
#define NGX_HTTP_TWIRT_BOARD_REPLAY   50        /* reads of a replay */
#define NGX_HTTP_TWIRT_BOARD_BUF      1024      /* bytes of an output buffer:
                                                   most events fit one */
#define NGX_HTTP_TWIRT_BOARD_ID_LEN   (2 * NGX_INT64_LEN + 1)


typedef struct {
    size_t                          queue_size;
} ngx_http_twirt_board_loc_conf_t;


/* a stream entry's id: milliseconds and a sequence */
typedef struct {
    uint64_t                        ms;
    uint64_t                        seq;
} ngx_http_twirt_board_id_t;


/* a browser */
typedef struct {
    ngx_queue_t                     queue;     /* in the feed's */
    ngx_http_request_t             *request;
    ngx_chain_t                    *free;
    ngx_chain_t                    *busy;
    ngx_chain_t                    *out;       /* being filled */
    ngx_chain_t                    *tail;
    size_t                          limit;
    ngx_http_twirt_board_id_t       last;      /* the last event it has */
    void                           *read;      /* its replay in flight */
    ngx_uint_t                      reads;     /* of its replay */
    ngx_event_t                     ping;
    unsigned                        joined:1;  /* takes the feed's events */
    unsigned                        waiting:1; /* its replay, for the
                                                  writer */
    unsigned                        gone:1;
} ngx_http_twirt_board_client_t;


/* per worker */
typedef struct {
    ngx_queue_t                     clients;
    ngx_uint_t                      n;
    ngx_uint_t                      joined;    /* of them, taking events */
    ngx_event_t                     timer;
    void                           *read;      /* in flight */
    ngx_uint_t                      read_gen;  /* the read's generation */
    ngx_uint_t                      gen;       /* of last */
    ngx_http_twirt_board_id_t       last;      /* read so far */
    ngx_pool_t                     *pool;
    ngx_str_t                       key;
} ngx_http_twirt_board_feed_t;


static ngx_int_t ngx_http_twirt_board_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_board_events(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_board_calls(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_board_config(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_board_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *kind, const char *message);
static ngx_int_t ngx_http_twirt_board_replay(
    ngx_http_twirt_board_client_t *bc, u_char *from, size_t len);
static void ngx_http_twirt_board_replayed(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_board_join(ngx_http_twirt_board_client_t *bc);
static void ngx_http_twirt_board_tick(ngx_event_t *ev);
static void ngx_http_twirt_board_fed(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static ngx_int_t ngx_http_twirt_board_read(ngx_str_t *from,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle);
static ngx_int_t ngx_http_twirt_board_send(ngx_http_twirt_board_client_t *bc,
    ngx_str_t *parts, ngx_uint_t n);
static ngx_int_t ngx_http_twirt_board_add(ngx_http_twirt_board_client_t *bc,
    ngx_str_t *parts, ngx_uint_t n);
static ngx_int_t ngx_http_twirt_board_flush(
    ngx_http_twirt_board_client_t *bc);
static ngx_int_t ngx_http_twirt_board_event(
    ngx_http_twirt_board_client_t *bc, ngx_keyval_t *entry);
static ngx_int_t ngx_http_twirt_board_reset(
    ngx_http_twirt_board_client_t *bc, ngx_str_t *id);
static void ngx_http_twirt_board_writer(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_board_replay_on(
    ngx_http_twirt_board_client_t *bc);
static ngx_uint_t ngx_http_twirt_board_more(ngx_array_t *pairs);
static void ngx_http_twirt_board_ping(ngx_event_t *ev);
static void ngx_http_twirt_board_close(ngx_http_twirt_board_client_t *bc);
static void ngx_http_twirt_board_drop(ngx_http_twirt_board_client_t *bc);
static void ngx_http_twirt_board_forget(void *data);
static ngx_int_t ngx_http_twirt_board_id(ngx_str_t *s,
    ngx_http_twirt_board_id_t *id);
static ngx_int_t ngx_http_twirt_board_after(ngx_http_twirt_board_id_t *a,
    ngx_http_twirt_board_id_t *b);
static ngx_int_t ngx_http_twirt_board_last_event_id(ngx_http_request_t *r,
    ngx_str_t *id);

static void *ngx_http_twirt_board_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_board_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static char *ngx_http_twirt_board(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_twirt_board_init_process(ngx_cycle_t *cycle);
static void ngx_http_twirt_board_exit_process(ngx_cycle_t *cycle);


static ngx_command_t  ngx_http_twirt_board_commands[] = {

    { ngx_string("twirt_board"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_board,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_board_queue"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_board_loc_conf_t, queue_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_board_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_twirt_board_create_loc_conf,  /* create location configuration */
    ngx_http_twirt_board_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_board_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_board_module_ctx,      /* module context */
    ngx_http_twirt_board_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_twirt_board_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_twirt_board_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_http_twirt_board_feed_t  ngx_http_twirt_board_feed;


/*
 * The feed's read.  ARGV[1] empty: the last entry's id ({"last", id});
 * else the entries after ARGV[1] ({id, json}...), ARGV[2] of them and
 * ARGV[3] bytes at most, then {"more", ""} if that was not all.  When ARGV[1] is no
 * longer in the stream, first {"gap", ARGV[1]} (some is lost, what
 * follows it is there), or only {"gap", last} (nothing follows it: a
 * stream Redis lost and began again).
 */

static ngx_str_t  ngx_http_twirt_board_feed_script = ngx_string(
    "local k = KEYS[1] "
    "local function last() "
      "local e = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1) "
      "return e[1] and e[1][1] or '0-0' "
    "end "
    "if ARGV[1] == '' then return {'last', last()} end "
    "local out = {} "
    "if ARGV[1] ~= '0-0' "
       "and #redis.call('XRANGE', k, ARGV[1], ARGV[1]) == 0 then "
      /* gone: trimmed (what follows is still there) or another stream */
      "local after = redis.call('XRANGE', k, '(' .. ARGV[1], '+', "
                               "'COUNT', 1) "
      "if not after[1] then return {'gap', last()} end "
      "out = {'gap', ARGV[1]} "
    "end "
    "local r = redis.call('XRANGE', k, '(' .. ARGV[1], '+', 'COUNT', ARGV[2]) "
    "local size, more = 0, #r == tonumber(ARGV[2]) "
    "for _, e in ipairs(r) do "
      "if size > 0 and size + #e[2][2] > tonumber(ARGV[3]) then "
        "more = true "
        "break "
      "end "
      "size = size + #e[2][2] "
      "out[#out + 1] = e[1] "
      "out[#out + 1] = e[2][2] "
    "end "
    "if more then out[#out + 1] = 'more' out[#out + 1] = '' end "
    "return out");


/* what the API's scripts share: ARGV[1] the id, ARGV[2] the prefix */

#define NGX_HTTP_TWIRT_BOARD_LUA                                              \
    "local p = ARGV[2] "                                                      \
    "local function load(sid) "                                               \
      "local h = redis.call('HGETALL', p .. 'call:' .. sid) "                 \
      "if #h == 0 then return nil end "                                       \
      "local c = {call_sid = sid} "                                           \
      "for i = 1, #h, 2 do c[h[i]] = h[i + 1] end "                           \
      "return c "                                                             \
    "end "                                                                    \
    "local function list(t) "                                                 \
      "if #t == 0 then return '[]' end "                                      \
      "return cjson.encode(t) "                                               \
    "end "


static ngx_str_t  ngx_http_twirt_board_active_script = ngx_string(
    NGX_HTTP_TWIRT_BOARD_LUA
    "local t = {} "
    "for _, sid in ipairs(redis.call('SMEMBERS', p .. 'calls:active')) do "
      "if #t == 1000 then break end "
      "local c = load(sid) "
      "if c then t[#t + 1] = c end "
    "end "
    "table.sort(t, function(a, b) "
      "return (a.started_at or '') > (b.started_at or '') end) "
    "return {'json', '{\"calls\":' .. list(t) .. '}'}");


/* ARGV[3] the index (sid, number, agent or the history), ARGV[4] the
 * query, ARGV[5] and ARGV[6] the scores, ARGV[7] the limit, ARGV[8] the
 * cursor's CallSid (at the time ARGV[6]: newest first, then by CallSid
 * descending, as ZREVRANGEBYSCORE orders them) */

static ngx_str_t  ngx_http_twirt_board_history_script = ngx_string(
    NGX_HTTP_TWIRT_BOARD_LUA
    "local kind, q, limit = ARGV[3], ARGV[4], tonumber(ARGV[7]) "
    "local t = {} "
    "if kind == 'sid' then "
      "local c = load(q) "
      "if c then t[1] = c end "
      "return {'json', '{\"calls\":' .. list(t) .. ',\"next\":null}'} "
    "end "
    "local k = p .. 'calls:history' "
    "if kind == 'number' then k = p .. 'calls:number:' .. q "
    "elseif kind == 'agent' then k = p .. 'calls:agent:' .. q end "
    "local cur, extra = ARGV[8], 0 "
    "if cur ~= '' then extra = redis.call('ZCOUNT', k, ARGV[6], ARGV[6]) end "
    "local r = redis.call('ZREVRANGEBYSCORE', k, ARGV[6], ARGV[5], "
                         "'WITHSCORES', 'LIMIT', 0, limit + extra) "
    "local taken, nx = 0, 'null' "
    "for i = 1, #r, 2 do "
      /* the cursor's own time: the calls up to it were on the last page */
      "if not (cur ~= '' and tonumber(r[i + 1]) == tonumber(ARGV[6]) "
              "and r[i] >= cur) and taken < limit then "
        "taken = taken + 1 "
        "local c = load(r[i]) "
        "if c then t[#t + 1] = c end "
        "if taken == limit then nx = cjson.encode(r[i + 1] .. ':' .. r[i]) end "
      "end "
    "end "
    "return {'json', '{\"calls\":' .. list(t) .. ',\"next\":' .. nx .. '}'}");


static ngx_str_t  ngx_http_twirt_board_detail_script = ngx_string(
    NGX_HTTP_TWIRT_BOARD_LUA
    "local c = load(ARGV[1]) "
    "local ev = redis.call('XRANGE', p .. 'call:' .. ARGV[1] .. ':events', "
                          "'-', '+', 'COUNT', 5000) "
    "if not c and #ev == 0 then return {'error', 'not_found'} end "
    "local t = {} "
    "for _, e in ipairs(ev) do "
      "local o = {event_id = e[1]} "
      "for i = 1, #e[2], 2 do o[e[2][i]] = e[2][i + 1] end "
      "t[#t + 1] = o "
    "end "
    "return {'json', '{\"call\":' .. cjson.encode(c or {call_sid = ARGV[1]}) "
                    ".. ',\"events\":' .. list(t) .. '}'}");


/* ARGV[3] now (s): the last 24 hours of {prefix}stats:{hour} */

static ngx_str_t  ngx_http_twirt_board_stats_script = ngx_string(
    NGX_HTTP_TWIRT_BOARD_LUA
    "local now = tonumber(ARGV[3]) "
    "local hour = math.floor(now / 3600) "
    "local cpm, cph, dc = {}, {}, {} "
    "local order = {'15', '30', '60', '120', '300', '600', '+'} "
    "for _, b in ipairs(order) do dc[b] = 0 end "
    "for h = hour - 23, hour do "
      "local f = redis.call('HGETALL', p .. 'stats:' .. h) "
      "for i = 1, #f, 2 do "
        "local n, v = f[i], tonumber(f[i + 1]) "
        "local c, rest = string.sub(n, 1, 1), string.sub(n, 2) "
        "if n == 'cost' then cph[#cph + 1] = {h * 3600, v} "
        "elseif c == 'm' and tonumber(rest) "
               "and tonumber(rest) * 60 > now - 86400 then "
          "cpm[#cpm + 1] = {tonumber(rest) * 60, v} "
        "elseif c == 'd' and dc[rest] then dc[rest] = dc[rest] + v end "
      "end "
    "end "
    "table.sort(cpm, function(a, b) return a[1] < b[1] end) "
    "local d = {} "
    "for _, b in ipairs(order) do "
      "d[#d + 1] = '{\"le\":' .. (b == '+' and 'null' or b) "
                 ".. ',\"count\":' .. dc[b] .. '}' "
    "end "
    "return {'json', '{\"now\":' .. math.floor(now) "
      ".. ',\"calls_per_minute\":' .. list(cpm) "
      ".. ',\"cost_per_hour\":' .. list(cph) "
      ".. ',\"durations\":[' .. table.concat(d, ',') .. ']}'}");


static ngx_int_t
ngx_http_twirt_board_handler(ngx_http_request_t *r)
{
    u_char      *seg[3];
    size_t       len[3];
    ngx_int_t    rc;
    ngx_str_t    tail, argv[1];
    ngx_uint_t   n;

    /* the path after the location's prefix: at most three segments */

    if (ngx_http_twirt_api_path(r, seg, len, 3, &n) != NGX_OK) {
        return ngx_http_twirt_board_error(r, NGX_HTTP_NOT_FOUND,
                                          "not_found", "no such resource");
    }

#define twirt_seg(i, s)                                                       \
    (len[i] == sizeof(s) - 1 && ngx_strncmp(seg[i], s, sizeof(s) - 1) == 0)

    if (n == 3 && twirt_seg(0, "calls") && twirt_seg(2, "hangup")) {

        if (r->method != NGX_HTTP_POST) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_NOT_ALLOWED,
                                              "method", "POST to hang up");
        }

        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        if (!ngx_http_twirt_redis_configured()) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                              "no_redis", "the board needs "
                                              "\"twirt_redis\"");
        }

        tail.data = seg[1];
        tail.len = len[1];

        return ngx_http_twirt_campaign_hangup(r, &tail);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_http_twirt_board_error(r, NGX_HTTP_NOT_ALLOWED, "method",
                                          "the board is read with GET");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (n == 1 && twirt_seg(0, "config")) {
        return ngx_http_twirt_board_config(r);
    }

    if (!ngx_http_twirt_redis_configured()) {
        return ngx_http_twirt_board_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                          "no_redis", "the board needs "
                                          "\"twirt_redis\"");
    }

    if (n == 1 && twirt_seg(0, "events")) {
        return ngx_http_twirt_board_events(r);
    }

    if (n == 1 && twirt_seg(0, "calls")) {
        return ngx_http_twirt_board_calls(r);
    }

    if (n == 2 && twirt_seg(0, "calls") && twirt_seg(1, "active")) {
        ngx_str_set(&tail, "");
        return ngx_http_twirt_campaign_api(r,
                                           &ngx_http_twirt_board_active_script,
                                           &tail, 0, NULL);
    }

    if (n == 2 && twirt_seg(0, "calls")) {
        tail.data = seg[1];
        tail.len = len[1];

        if (ngx_http_twirt_sid_valid(&tail) != NGX_OK) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request",
                                              "not a CallSid");
        }

        return ngx_http_twirt_campaign_api(r,
                                           &ngx_http_twirt_board_detail_script,
                                           &tail, 0, NULL);
    }

    if (n == 1 && twirt_seg(0, "stats")) {
        argv[0].data = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (argv[0].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[0].len = ngx_sprintf(argv[0].data, "%T", ngx_time())
                      - argv[0].data;

        ngx_str_set(&tail, "");
        return ngx_http_twirt_campaign_api(r,
                                           &ngx_http_twirt_board_stats_script,
                                           &tail, 1, argv);
    }

#undef twirt_seg

    return ngx_http_twirt_board_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such resource");
}


/*
 * GET calls?q=&from=&to=&before=&limit=: q is a CallSid, a number (any
 * form ngx_http_twirt_phone_e164() takes) or an agent's name; from and to
 * are seconds; before is the last answer's "next"
 */

static ngx_int_t
ngx_http_twirt_board_calls(ngx_http_request_t *r)
{
    u_char       *p, e164[NGX_HTTP_TWIRT_E164_LEN + 1];
    size_t        n;
    ngx_str_t     q, arg, argv[6], id;
    ngx_int_t     limit;
    ngx_uint_t    i, dots;
    const char   *error;

    static const char  *names[] = { "from", "to", "before" };

    ngx_str_set(&argv[0], "");
    ngx_str_set(&argv[1], "");
    ngx_str_set(&argv[2], "-inf");
    ngx_str_set(&argv[3], "+inf");
    ngx_str_set(&argv[4], "50");
    ngx_str_set(&argv[5], "");

    if (ngx_http_arg(r, (u_char *) "q", 1, &arg) == NGX_OK && arg.len) {

        q.data = ngx_pnalloc(r->pool, arg.len);
        if (q.data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p = q.data;
        ngx_unescape_uri(&p, &arg.data, arg.len, NGX_UNESCAPE_URI);
        q.len = p - q.data;

        while (q.len && q.data[0] == ' ') {
            q.data++;
            q.len--;
        }

        while (q.len && q.data[q.len - 1] == ' ') {
            q.len--;
        }

        if (q.len > 64) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request", "q is too "
                                              "long");
        }

        error = ngx_http_twirt_phone_e164(q.data, q.len, e164, &n);

        if (q.len == 34 && ngx_strncmp(q.data, "CA", 2) == 0
            && ngx_http_twirt_sid_valid(&q) == NGX_OK)
        {
            ngx_str_set(&argv[0], "sid");
            argv[1] = q;

        } else if (error == NULL) {
            ngx_str_set(&argv[0], "number");

            argv[1].data = ngx_pnalloc(r->pool, n);
            if (argv[1].data == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            argv[1].len = n;
            ngx_memcpy(argv[1].data, e164, n);

        } else if (q.len && ngx_http_twirt_sid_valid(&q) == NGX_OK) {
            ngx_str_set(&argv[0], "agent");
            argv[1] = q;

        } else {
            return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request", "q is a "
                                              "phone number, a CallSid or "
                                              "an agent's name");
        }
    }

    for (i = 0; i < 3; i++) {
        if (ngx_http_arg(r, (u_char *) names[i], ngx_strlen(names[i]), &arg)
            != NGX_OK || arg.len == 0)
        {
            continue;
        }

        /* before: the last page's "next", its time and CallSid */

        p = ngx_pnalloc(r->pool, arg.len);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        q.data = p;
        ngx_unescape_uri(&p, &arg.data, arg.len, NGX_UNESCAPE_URI);
        arg.data = q.data;
        arg.len = p - q.data;

        p = (i == 2) ? ngx_strlchr(arg.data, arg.data + arg.len, ':') : NULL;

        if (p) {
            argv[5].data = p + 1;
            argv[5].len = arg.data + arg.len - (p + 1);
            arg.len = p - arg.data;

            if (ngx_http_twirt_sid_valid(&argv[5]) != NGX_OK) {
                return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                                  "invalid_request", "before "
                                                  "is the \"next\" of the "
                                                  "last page");
            }
        }

        dots = 0;

        for (n = 0; n < arg.len; n++) {
            if (arg.data[n] == '.' && n > 0 && dots++ == 0) {
                continue;
            }

            if (arg.data[n] < '0' || arg.data[n] > '9') {
                break;
            }
        }

        if (n < arg.len || arg.len == 0 || arg.len > 20) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request", "from, to "
                                              "and before are seconds "
                                              "since 1970");
        }

        if (i == 0) {
            argv[2] = arg;
            continue;
        }

        if (i == 1 || p) {
            /* to, or before with its CallSid: the bound itself is in */
            argv[3] = arg;
            continue;
        }

        argv[3].data = ngx_pnalloc(r->pool, arg.len + 1);
        if (argv[3].data == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[3].data[0] = '(';
        ngx_memcpy(argv[3].data + 1, arg.data, arg.len);
        argv[3].len = arg.len + 1;
    }

    if (ngx_http_arg(r, (u_char *) "limit", 5, &arg) == NGX_OK) {
        limit = ngx_atoi(arg.data, arg.len);

        if (limit < 1 || limit > 200) {
            return ngx_http_twirt_board_error(r, NGX_HTTP_BAD_REQUEST,
                                              "invalid_request", "limit is "
                                              "1 to 200");
        }

        argv[4] = arg;
    }

    ngx_str_set(&id, "");

    return ngx_http_twirt_campaign_api(r, &ngx_http_twirt_board_history_script,
                                       &id, 6, argv);
}


/* GET config: where the campaigns are, this node */

static ngx_int_t
ngx_http_twirt_board_config(ngx_http_request_t *r)
{
    json_t     *json;
    ngx_str_t  *loc, *node;

    loc = ngx_http_twirt_campaign_location();
    node = ngx_http_twirt_redis_node();

    json = json_pack("{s:o,s:s%,s:b}",
                     "campaigns", loc ? json_stringn((char *) loc->data,
                                                     loc->len)
                                      : json_null(),
                     "node", node ? (char *) node->data : "",
                     node ? node->len : 0,
                     "redis", (int) ngx_http_twirt_redis_configured());

    return ngx_http_twirt_send_json(r, NGX_HTTP_OK, json);
}


static ngx_int_t
ngx_http_twirt_board_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *kind, const char *message)
{
    return ngx_http_twirt_send_json(r, status,
                                    json_pack("{s:{s:s,s:s}}", "error",
                                              "kind", kind,
                                              "message", message));
}


/* GET events: the headers go at once, then what the browser missed */

static ngx_int_t
ngx_http_twirt_board_events(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_str_t                         from;
    ngx_uint_t                        i;
    ngx_table_elt_t                  *h;
    ngx_pool_cleanup_t               *cln;
    ngx_http_twirt_board_id_t         id;
    ngx_http_twirt_board_client_t    *bc;
    ngx_http_twirt_board_loc_conf_t  *blcf;

    static ngx_keyval_t  headers[] = {
        { ngx_string("Cache-Control"), ngx_string("no-cache") },
        { ngx_string("X-Accel-Buffering"), ngx_string("no") }
    };

    static ngx_str_t  retry = ngx_string("retry: 1000\n\n");

    blcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_board_module);

    bc = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_board_client_t));
    if (bc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    bc->request = r;
    bc->limit = blcf->queue_size;
    bc->gone = 1;

    cln->handler = ngx_http_twirt_board_forget;
    cln->data = bc;

    ngx_http_set_ctx(r, bc, ngx_http_twirt_board_module);

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;
    ngx_str_set(&r->headers_out.content_type,
                "text/event-stream; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/event-stream") - 1;

    /* nothing between here and the browser keeps the feed back */

    for (i = 0; i < 2; i++) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        h->key = headers[i].key;
        h->value = headers[i].value;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    r->read_event_handler = ngx_http_test_reading;
    r->write_event_handler = ngx_http_twirt_board_writer;

    bc->gone = 0;
    ngx_queue_insert_tail(&ngx_http_twirt_board_feed.clients, &bc->queue);
    ngx_http_twirt_board_feed.n++;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_BOARD_CLIENTS, 1);

    bc->ping.handler = ngx_http_twirt_board_ping;
    bc->ping.data = bc;
    bc->ping.log = r->connection->log;

    /* not cancelable: an exiting worker closes its browsers first */
    ngx_add_timer(&bc->ping, NGX_HTTP_TWIRT_BOARD_PING);

    if (!ngx_http_twirt_board_feed.timer.timer_set) {
        ngx_add_timer(&ngx_http_twirt_board_feed.timer,
                      NGX_HTTP_TWIRT_BOARD_PERIOD);
    }

    r->main->count++;

    if (ngx_http_twirt_board_send(bc, &retry, 1) != NGX_OK) {
        ngx_http_twirt_board_close(bc);
        return NGX_DONE;
    }

    from.len = 0;

    if (ngx_http_twirt_board_last_event_id(r, &from) != NGX_OK
        || (from.len && ngx_http_twirt_board_id(&from, &id) != NGX_OK))
    {
        /* an id no stream ever gave: everything is read again */
        from.len = 0;

        if (ngx_http_twirt_board_reset(bc, NULL) != NGX_OK) {
            ngx_http_twirt_board_close(bc);
            return NGX_DONE;
        }

    } else if (from.len) {
        /* what the browser has: nothing up to it is sent again */
        bc->last = id;
    }

    if (ngx_http_twirt_board_replay(bc, from.data, from.len) != NGX_OK) {
        /* Redis is away: the browser comes back in a second */
        ngx_http_twirt_board_close(bc);
    }

    return NGX_DONE;
}


/* Last-Event-ID, or ?last= (a browser that opens the feed anew) */

static ngx_int_t
ngx_http_twirt_board_last_event_id(ngx_http_request_t *r, ngx_str_t *id)
{
    if (ngx_http_twirt_header_in(r, "Last-Event-ID", id) == NGX_OK) {
        return id->len ? NGX_OK : NGX_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "last", 4, id) == NGX_OK && id->len) {
        return NGX_OK;
    }

    id->len = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_board_replay(ngx_http_twirt_board_client_t *bc, u_char *from,
    size_t len)
{
    ngx_str_t  s;

    s.data = from;
    s.len = len;

    bc->reads++;

    return ngx_http_twirt_board_read(&s, ngx_http_twirt_board_replayed, bc,
                                     &bc->read);
}


static void
ngx_http_twirt_board_replayed(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_board_client_t *bc = data;

    ngx_str_t                   parts[5];
    ngx_uint_t                  i, first;
    ngx_keyval_t               *kv;
    ngx_connection_t           *c;
    ngx_http_twirt_board_id_t   id;

    bc->read = NULL;
    c = bc->request->connection;

    if (rc != NGX_OK) {
        /* no answer: the browser comes back with its Last-Event-ID */
        goto close;
    }

    kv = pairs->elts;

    if (pairs->nelts == 1
        && ((kv[0].key.len == 4
             && ngx_strncmp(kv[0].key.data, "last", 4) == 0)
            || (kv[0].key.len == 3
                && ngx_strncmp(kv[0].key.data, "gap", 3) == 0))
        && ngx_http_twirt_board_id(&kv[0].value, &id) == NGX_OK)
    {
        /*
         * a new browser, or one whose Last-Event-ID the stream no longer
         * has (the page reloads what it shows): the feed from now on
         */

        if (kv[0].key.len == 3 && ngx_http_twirt_board_reset(bc, NULL) != NGX_OK)
        {
            goto close;
        }

        /* with the id: a browser that reconnects says where it was */

        ngx_str_set(&parts[0], "id: ");
        parts[1] = kv[0].value;
        ngx_str_set(&parts[2], "\nevent: hello\ndata: {\"last\":\"");
        parts[3] = kv[0].value;
        ngx_str_set(&parts[4], "\"}\n\n");

        if (ngx_http_twirt_board_send(bc, parts, 5) != NGX_OK) {
            goto close;
        }

        bc->last = id;
        ngx_http_twirt_board_join(bc);
        goto done;
    }

    first = 0;

    if (pairs->nelts > 1 && kv[0].key.len == 3
        && ngx_strncmp(kv[0].key.data, "gap", 3) == 0)
    {
        /* some of what the browser missed is gone: the page reloads */

        if (ngx_http_twirt_board_reset(bc, &kv[0].value) != NGX_OK) {
            goto close;
        }

        first = 1;
    }

    for (i = first; i < pairs->nelts; i++) {
        if (ngx_http_twirt_board_event(bc, &kv[i]) != NGX_OK) {
            goto close;
        }
    }

    if (ngx_http_twirt_board_flush(bc) != NGX_OK) {
        goto close;
    }

    if (!ngx_http_twirt_board_more(pairs)) {
        ngx_http_twirt_board_join(bc);
        goto done;
    }

    if (bc->reads < NGX_HTTP_TWIRT_BOARD_REPLAY) {

        if (bc->busy) {
            /* the rest once this is sent (the writer): the queue holds
             * one read, not the whole replay */
            bc->waiting = 1;
            goto done;
        }

        if (ngx_http_twirt_board_replay_on(bc) != NGX_OK) {
            goto close;
        }

        goto done;
    }

    /* too much was missed: the page reloads, the feed goes on from now */

    if (ngx_http_twirt_board_reset(bc, NULL) != NGX_OK
        || ngx_http_twirt_board_replay(bc, NULL, 0) != NGX_OK)
    {
        goto close;
    }

    goto done;

close:

    ngx_http_twirt_board_close(bc);

done:

    ngx_http_run_posted_requests(c);
}


/* the page reloads what it shows; with an id, the feed goes on from it */

static ngx_int_t
ngx_http_twirt_board_reset(ngx_http_twirt_board_client_t *bc, ngx_str_t *id)
{
    ngx_str_t  parts[3];

    ngx_str_set(&parts[0], "id: ");
    ngx_str_set(&parts[2], "\nevent: reset\ndata: {}\n\n");

    if (id) {
        parts[1] = *id;
        return ngx_http_twirt_board_send(bc, parts, 3);
    }

    parts[2].data++;
    parts[2].len--;

    return ngx_http_twirt_board_send(bc, &parts[2], 1);
}


/* the browser has all until bc->last: it takes the feed's events */

static void
ngx_http_twirt_board_join(ngx_http_twirt_board_client_t *bc)
{
    ngx_http_twirt_board_feed_t  *feed;

    feed = &ngx_http_twirt_board_feed;

    if (feed->joined == 0) {
        /* the first: the feed starts where it is, earlier reads are old */
        feed->last = bc->last;
        feed->gen++;
    }

    feed->joined++;
    bc->joined = 1;
    bc->reads = 0;
}


/* per worker, every 100 ms while a browser is connected */

static void
ngx_http_twirt_board_tick(ngx_event_t *ev)
{
    u_char                          buf[NGX_HTTP_TWIRT_BOARD_ID_LEN];
    ngx_str_t                       from;
    ngx_queue_t                    *q;
    ngx_http_twirt_board_feed_t    *feed;
    ngx_http_twirt_board_client_t  *bc;

    feed = &ngx_http_twirt_board_feed;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        /* the browsers reconnect to the workers that stay */

        while (!ngx_queue_empty(&feed->clients)) {
            q = ngx_queue_head(&feed->clients);
            bc = ngx_queue_data(q, ngx_http_twirt_board_client_t, queue);
            ngx_http_twirt_board_drop(bc);
        }

        return;
    }

    if (feed->n == 0) {
        return;
    }

    ngx_add_timer(&feed->timer, NGX_HTTP_TWIRT_BOARD_PERIOD);

    if (feed->read || feed->joined == 0) {
        return;
    }

    from.data = buf;
    from.len = ngx_sprintf(buf, "%uL-%uL", feed->last.ms, feed->last.seq)
               - buf;

    feed->read_gen = feed->gen;

    (void) ngx_http_twirt_board_read(&from, ngx_http_twirt_board_fed, feed,
                                     &feed->read);
}


static void
ngx_http_twirt_board_fed(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_board_feed_t *feed = data;

    ngx_uint_t                      i, first;
    ngx_queue_t                    *q, *next;
    ngx_keyval_t                   *kv;
    ngx_http_twirt_board_id_t       id;
    ngx_http_twirt_board_client_t  *bc;

    feed->read = NULL;

    if (rc != NGX_OK || feed->read_gen != feed->gen) {
        /* no answer: the next tick asks again; or an answer to a feed
         * that had no browsers since */
        return;
    }

    kv = pairs->elts;
    first = 0;

    if (pairs->nelts && kv[0].key.len == 3
        && ngx_strncmp(kv[0].key.data, "gap", 3) == 0
        && ngx_http_twirt_board_id(&kv[0].value, &id) == NGX_OK)
    {
        /*
         * the stream lost what was read last: trimmed (what follows is
         * sent next), or lost and begun again (the feed goes on from its
         * end); the pages reload what they show
         */

        first = 1;

        if (pairs->nelts == 1) {
            feed->last = id;
        }

        for (q = ngx_queue_head(&feed->clients);
             q != ngx_queue_sentinel(&feed->clients);
             q = next)
        {
            next = ngx_queue_next(q);
            bc = ngx_queue_data(q, ngx_http_twirt_board_client_t, queue);

            if (!bc->joined) {
                continue;
            }

            if (pairs->nelts == 1) {
                bc->last = id;
            }

            if (ngx_http_twirt_board_reset(bc, &kv[0].value) != NGX_OK) {
                ngx_http_twirt_board_drop(bc);
            }
        }
    }

    for (i = first; i < pairs->nelts; i++) {

        if (ngx_http_twirt_board_id(&kv[i].key, &id) != NGX_OK) {
            continue;
        }

        feed->last = id;

        for (q = ngx_queue_head(&feed->clients);
             q != ngx_queue_sentinel(&feed->clients);
             q = next)
        {
            next = ngx_queue_next(q);
            bc = ngx_queue_data(q, ngx_http_twirt_board_client_t, queue);

            if (bc->joined
                && ngx_http_twirt_board_event(bc, &kv[i]) != NGX_OK)
            {
                ngx_http_twirt_board_drop(bc);
            }
        }
    }

    /* each browser's share of this read goes out at once */

    for (q = ngx_queue_head(&feed->clients);
         q != ngx_queue_sentinel(&feed->clients);
         q = next)
    {
        next = ngx_queue_next(q);
        bc = ngx_queue_data(q, ngx_http_twirt_board_client_t, queue);

        if (bc->joined && ngx_http_twirt_board_flush(bc) != NGX_OK) {
            ngx_http_twirt_board_drop(bc);
        }
    }

    if (ngx_http_twirt_board_more(pairs) && feed->n) {
        /* more is waiting: read on now */
        ngx_http_twirt_board_tick(&feed->timer);
    }
}


static ngx_int_t
ngx_http_twirt_board_read(ngx_str_t *from,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle)
{
    ngx_str_t  argv[7];

    ngx_str_set(&argv[0], "EVAL");
    argv[1] = ngx_http_twirt_board_feed_script;
    ngx_str_set(&argv[2], "1");
    argv[3] = ngx_http_twirt_board_feed.key;
    argv[4] = *from;
    ngx_str_set(&argv[5], NGX_HTTP_TWIRT_BOARD_BATCH);
    ngx_str_set(&argv[6], NGX_HTTP_TWIRT_BOARD_BYTES);

    return ngx_http_twirt_redis_read(7, argv, 0, handler, data, handle);
}


/* one entry to a browser that does not have it yet */

static ngx_int_t
ngx_http_twirt_board_event(ngx_http_twirt_board_client_t *bc,
    ngx_keyval_t *entry)
{
    ngx_str_t                  parts[5];
    ngx_http_twirt_board_id_t  id;

    if (ngx_http_twirt_board_id(&entry->key, &id) != NGX_OK
        || !ngx_http_twirt_board_after(&id, &bc->last))
    {
        return NGX_OK;
    }

    if (ngx_strlchr(entry->value.data, entry->value.data + entry->value.len,
                    LF)
        || ngx_strlchr(entry->value.data, entry->value.data + entry->value.len,
                       CR))
    {
        /* compact JSON has neither: one data line, nothing more */
        return NGX_OK;
    }

    ngx_str_set(&parts[0], "id: ");
    parts[1] = entry->key;
    ngx_str_set(&parts[2], "\ndata: ");
    parts[3] = entry->value;
    ngx_str_set(&parts[4], "\n\n");

    bc->last = id;

    return ngx_http_twirt_board_add(bc, parts, 5);
}


/*
 * Output through the request's filters, in the browser's own buffers,
 * reused once sent.  Events are added to the buffers being filled (one
 * read's events share them: what is held is what was written) and go out
 * on a flush.  A browser whose unsent output would pass its limit is one
 * that stopped reading.
 */

static ngx_int_t
ngx_http_twirt_board_send(ngx_http_twirt_board_client_t *bc,
    ngx_str_t *parts, ngx_uint_t n)
{
    if (ngx_http_twirt_board_add(bc, parts, n) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_http_twirt_board_flush(bc);
}


static ngx_int_t
ngx_http_twirt_board_add(ngx_http_twirt_board_client_t *bc,
    ngx_str_t *parts, ngx_uint_t n)
{
    size_t               size, queued, k, m;
    u_char              *p;
    ngx_buf_t           *b;
    ngx_uint_t           i;
    ngx_chain_t         *cl;
    ngx_http_request_t  *r;

    r = bc->request;

    if (bc->gone) {
        return NGX_ERROR;
    }

    size = 0;

    for (i = 0; i < n; i++) {
        size += parts[i].len;
    }

    /* what the unsent output holds: its buffers, whole */

    queued = 0;

    for (cl = bc->busy; cl; cl = cl->next) {
        queued += cl->buf->end - cl->buf->start;
    }

    for (cl = bc->out; cl; cl = cl->next) {
        queued += cl->buf->end - cl->buf->start;
    }

    /* one event larger than the bound still goes, alone */

    if (queued && queued + size > bc->limit) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "twirt: board: a browser is not reading, %uz bytes "
                      "unsent (twirt_board_queue %uz): closed",
                      queued + size, bc->limit);
        ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_BOARD_SLOW, 1);
        return NGX_ERROR;
    }

    b = bc->tail ? bc->tail->buf : NULL;
    i = 0;
    p = parts[0].data;
    k = parts[0].len;

    while (size) {

        if (b == NULL || b->last == b->end) {
            cl = ngx_chain_get_free_buf(r->pool, &bc->free);
            if (cl == NULL) {
                return NGX_ERROR;
            }

            b = cl->buf;

            if (b->start == NULL) {
                b->start = ngx_palloc(r->pool, NGX_HTTP_TWIRT_BOARD_BUF);
                if (b->start == NULL) {
                    return NGX_ERROR;
                }

                b->end = b->start + NGX_HTTP_TWIRT_BOARD_BUF;
                b->temporary = 1;
                b->tag = (ngx_buf_tag_t) &ngx_http_twirt_board_module;
            }

            b->pos = b->start;
            b->last = b->start;

            if (bc->tail) {
                bc->tail->next = cl;

            } else {
                bc->out = cl;
            }

            bc->tail = cl;
        }

        while (k == 0) {
            i++;
            p = parts[i].data;
            k = parts[i].len;
        }

        m = ngx_min(k, (size_t) (b->end - b->last));
        b->last = ngx_cpymem(b->last, p, m);
        p += m;
        k -= m;
        size -= m;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_board_flush(ngx_http_twirt_board_client_t *bc)
{
    ngx_chain_t         *out;
    ngx_http_request_t  *r;

    r = bc->request;
    out = bc->out;

    if (bc->gone || out == NULL) {
        return bc->gone ? NGX_ERROR : NGX_OK;
    }

    bc->tail->buf->flush = 1;
    bc->out = NULL;
    bc->tail = NULL;

    if (ngx_http_output_filter(r, out) == NGX_ERROR) {
        return NGX_ERROR;
    }

    ngx_chain_update_chains(r->pool, &bc->free, &bc->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_twirt_board_module);

    return NGX_OK;
}


static void
ngx_http_twirt_board_writer(ngx_http_request_t *r)
{
    ngx_chain_t                    *out;
    ngx_http_twirt_board_client_t  *bc;

    bc = ngx_http_get_module_ctx(r, ngx_http_twirt_board_module);

    if (bc == NULL || bc->gone) {
        return;
    }

    out = NULL;

    if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
        ngx_http_twirt_board_close(bc);
        return;
    }

    ngx_chain_update_chains(r->pool, &bc->free, &bc->busy, &out,
                            (ngx_buf_tag_t) &ngx_http_twirt_board_module);

    if (bc->waiting && bc->busy == NULL) {
        bc->waiting = 0;

        if (ngx_http_twirt_board_replay_on(bc) != NGX_OK) {
            ngx_http_twirt_board_close(bc);
        }
    }
}


/* the replay goes on after what the browser has */

static ngx_int_t
ngx_http_twirt_board_replay_on(ngx_http_twirt_board_client_t *bc)
{
    u_char  buf[NGX_HTTP_TWIRT_BOARD_ID_LEN];

    return ngx_http_twirt_board_replay(bc, buf,
                                       ngx_sprintf(buf, "%uL-%uL",
                                                   bc->last.ms, bc->last.seq)
                                       - buf);
}


/* a read that was not all: {"more", ""} last */

static ngx_uint_t
ngx_http_twirt_board_more(ngx_array_t *pairs)
{
    ngx_keyval_t  *kv;

    kv = pairs->elts;

    return pairs->nelts
           && kv[pairs->nelts - 1].key.len == 4
           && ngx_strncmp(kv[pairs->nelts - 1].key.data, "more", 4) == 0;
}


/* a comment now and then: proxies keep the stream, dead peers show */

static void
ngx_http_twirt_board_ping(ngx_event_t *ev)
{
    ngx_http_twirt_board_client_t *bc = ev->data;

    ngx_str_t  ping = ngx_string(": ping\n\n");

    if (ngx_http_twirt_board_send(bc, &ping, 1) != NGX_OK) {
        ngx_http_twirt_board_drop(bc);
        return;
    }

    ngx_add_timer(&bc->ping, NGX_HTTP_TWIRT_BOARD_PING);
}


/*
 * The browser is closed (it reconnects by itself); outside its own
 * handlers (a Redis answer, a timer) the close is run at once.
 */

static void
ngx_http_twirt_board_close(ngx_http_twirt_board_client_t *bc)
{
    if (bc->gone) {
        return;
    }

    ngx_http_twirt_board_forget(bc);

    ngx_http_finalize_request(bc->request, NGX_ERROR);
}


static void
ngx_http_twirt_board_drop(ngx_http_twirt_board_client_t *bc)
{
    ngx_connection_t  *c;

    c = bc->request->connection;

    ngx_http_twirt_board_close(bc);
    ngx_http_run_posted_requests(c);
}


/* the request's cleanup, or a close: the feed forgets the browser */

static void
ngx_http_twirt_board_forget(void *data)
{
    ngx_http_twirt_board_client_t *bc = data;

    if (bc->gone) {
        return;
    }

    bc->gone = 1;

    ngx_queue_remove(&bc->queue);
    ngx_http_twirt_board_feed.n--;
    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_BOARD_CLIENTS, -1);

    if (bc->joined) {
        ngx_http_twirt_board_feed.joined--;
    }

    if (bc->read) {
        ngx_http_twirt_redis_cancel(bc->read);
        bc->read = NULL;
    }

    if (bc->ping.timer_set) {
        ngx_del_timer(&bc->ping);
    }
}


static ngx_int_t
ngx_http_twirt_board_id(ngx_str_t *s, ngx_http_twirt_board_id_t *id)
{
    u_char      *p, *end;
    uint64_t     v[2];
    ngx_uint_t   part, digits;

    p = s->data;
    end = s->data + s->len;
    v[0] = 0;
    v[1] = 0;
    part = 0;
    digits = 0;

    for ( /* void */ ; p < end; p++) {

        if (*p == '-' && part == 0 && digits) {
            part = 1;
            digits = 0;
            continue;
        }

        if (*p < '0' || *p > '9' || ++digits > 19) {
            return NGX_ERROR;
        }

        v[part] = v[part] * 10 + (*p - '0');
    }

    if (part == 0 || digits == 0) {
        return NGX_ERROR;
    }

    id->ms = v[0];
    id->seq = v[1];

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_board_after(ngx_http_twirt_board_id_t *a,
    ngx_http_twirt_board_id_t *b)
{
    return a->ms > b->ms || (a->ms == b->ms && a->seq > b->seq);
}


static void
ngx_http_twirt_board_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_board_feed_t  *feed;

    feed = &ngx_http_twirt_board_feed;

    if (feed->timer.timer_set) {
        ngx_del_timer(&feed->timer);
    }

    if (feed->read) {
        ngx_http_twirt_redis_cancel(feed->read);
        feed->read = NULL;
    }

    if (feed->pool) {
        ngx_destroy_pool(feed->pool);
        feed->pool = NULL;
    }
}


static char *
ngx_http_twirt_board(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_http_twirt_board_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_twirt_board_init_process(ngx_cycle_t *cycle)
{
    ngx_http_twirt_board_feed_t  *feed;

    feed = &ngx_http_twirt_board_feed;

    ngx_memzero(feed, sizeof(ngx_http_twirt_board_feed_t));
    ngx_queue_init(&feed->clients);

    feed->timer.handler = ngx_http_twirt_board_tick;
    feed->timer.data = feed;
    feed->timer.log = cycle->log;
    feed->timer.cancelable = 1;

    feed->pool = ngx_create_pool(1024, cycle->log);
    if (feed->pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_redis_configured()
        && ngx_http_twirt_redis_key(feed->pool, "events:stream", NULL, NULL,
                                    &feed->key)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void *
ngx_http_twirt_board_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_board_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_board_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->queue_size = NGX_CONF_UNSET_SIZE;

    return conf;
}


static char *
ngx_http_twirt_board_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_twirt_board_loc_conf_t *prev = parent;
    ngx_http_twirt_board_loc_conf_t *conf = child;

    ngx_conf_merge_size_value(conf->queue_size, prev->queue_size,
                              256 * 1024);

    if (conf->queue_size < NGX_HTTP_TWIRT_BOARD_BUF) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_board_queue\" must be at least %d",
                           NGX_HTTP_TWIRT_BOARD_BUF);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
