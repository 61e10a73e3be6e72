
/*
 * twirt: the test module, built into the .so only when the build is
 * configured with TWIRT_TEST_BUILD=1 (make test, util/test).  Its
 * content handlers drive the Redis module's API from HTTP so that
 * t/redis.t needs nothing else of twirt, and the CSV reader for t/csv.t;
 * production builds have neither the directives nor the code.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_twirt_csv.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_redis_test.h"


/* one request waiting for an HGETALL */
typedef struct {
    ngx_http_request_t                *request;
    void                              *handle;
} ngx_http_twirt_test_ctx_t;


static char *ngx_http_twirt_redis_test(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_twirt_redis_test_command(ngx_http_request_t *r);
static void ngx_http_twirt_redis_test_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_redis_test_hgetall(ngx_http_request_t *r);
static void ngx_http_twirt_redis_test_hash(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static void ngx_http_twirt_redis_test_cleanup(void *data);
static ngx_int_t ngx_http_twirt_redis_test_stats(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_redis_test_build(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_redis_test_send(ngx_http_request_t *r,
    ngx_str_t *text);
static ngx_str_t *ngx_http_twirt_redis_test_word(ngx_int_t rc);
static char *ngx_http_twirt_csv_test(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_twirt_csv_test_handler(ngx_http_request_t *r);
static void ngx_http_twirt_csv_test_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_test_body(ngx_http_request_t *r,
    ngx_str_t *body);


static ngx_command_t  ngx_http_twirt_test_commands[] = {

    { ngx_string("twirt_redis_test"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_http_twirt_redis_test,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_csv_test"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_csv_test,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_test_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


/* bit n set: the builders' nth allocation from now fails */
static uint64_t    ngx_http_twirt_test_fail;
static ngx_uint_t  ngx_http_twirt_test_allocs;


ngx_module_t  ngx_http_twirt_test_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_test_module_ctx,       /* module context */
    ngx_http_twirt_test_commands,          /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/* twirt_redis_test [command | hgetall | stats | build]: for the suites */

static char *
ngx_http_twirt_redis_test(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_str_t                 *value;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 1 || ngx_strcmp(value[1].data, "command") == 0) {
        clcf->handler = ngx_http_twirt_redis_test_command;

    } else if (ngx_strcmp(value[1].data, "hgetall") == 0) {
        clcf->handler = ngx_http_twirt_redis_test_hgetall;

    } else if (ngx_strcmp(value[1].data, "stats") == 0) {
        clcf->handler = ngx_http_twirt_redis_test_stats;

    } else if (ngx_strcmp(value[1].data, "build") == 0) {
        clcf->handler = ngx_http_twirt_redis_test_build;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\", expected \"command\", "
                           "\"hgetall\", \"stats\" or \"build\"",
                           &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Test-only content handlers (twirt_redis_test): they drive the public
 * API from HTTP so that t/redis.t needs nothing else of twirt.
 *
 *     GET /redis?cmd=RPUSH&a=key&a=value    one command, arguments
 *                                           percent-encoded
 *     POST /redis                           one argument per line,
 *                                           commands apart by empty lines
 *
 * answer one word per command: queued, dropped, disabled or refused.
 *
 *     GET /redis-hget?key=K[&timeout=ms]    field=value lines, "empty",
 *                                           "error" or "unavailable"
 *     GET /redis-hget?key=K&cancel=1        cancels at once: "canceled"
 *     GET /redis-stats                      the counters
 *     GET /redis-build?id=ID[&fail=2,4]     HSET {prefix}test:ID n1 1 n2 2
 *                                           n3 3 at <now> from the command
 *                                           builder, its allocations 2 and
 *                                           4 (of 5: key, numbers, time)
 *                                           made to fail: "unbuilt" or
 *                                           the command's word
 */


static ngx_int_t
ngx_http_twirt_redis_test_command(ngx_http_request_t *r)
{
    u_char       *p, *last, *amp, *eq, *dst, *src;
    ngx_int_t     rc;
    ngx_str_t    *arg;
    ngx_array_t   args;

    if (r->method == NGX_HTTP_POST) {
        r->request_body_in_single_buf = 1;

        rc = ngx_http_read_client_request_body(r,
                                           ngx_http_twirt_redis_test_body);
        if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
            return rc;
        }

        return NGX_DONE;
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_array_init(&args, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* cmd= is the first argument wherever it is, the a= follow in order */

    arg = ngx_array_push(&args);
    if (arg == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_str_null(arg);

    p = r->args.data;
    last = p + r->args.len;

    while (p < last) {
        amp = ngx_strlchr(p, last, '&');
        if (amp == NULL) {
            amp = last;
        }

        eq = ngx_strlchr(p, amp, '=');

        if (eq == NULL) {
            p = amp + 1;
            continue;
        }

        if (eq - p == 3 && ngx_strncmp(p, "cmd", 3) == 0) {
            arg = args.elts;

        } else if (eq - p == 1 && *p == 'a') {
            arg = ngx_array_push(&args);
            if (arg == NULL) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

        } else {
            p = amp + 1;
            continue;
        }

        dst = ngx_pnalloc(r->pool, amp - eq);
        if (dst == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        arg->data = dst;
        src = eq + 1;
        ngx_unescape_uri(&dst, &src, amp - eq - 1, 0);
        arg->len = dst - arg->data;

        p = amp + 1;
    }

    rc = ngx_http_twirt_redis_command(args.nelts, args.elts);

    return ngx_http_twirt_redis_test_send(r,
                                          ngx_http_twirt_redis_test_word(rc));
}


static void
ngx_http_twirt_redis_test_body(ngx_http_request_t *r)
{
    u_char       *p, *last, *eol, *body;
    size_t        len;
    ngx_int_t     rc;
    ngx_str_t     out, in, *arg, *word;
    ngx_array_t   args;

    rc = ngx_http_twirt_test_body(r, &in);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    body = in.data;
    len = in.len;
    last = body + len;

    /* at most one word and a newline per line of the body */

    out.data = ngx_pnalloc(r->pool, (len + 1) * sizeof("disabled\n"));
    if (out.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    out.len = 0;

    if (ngx_array_init(&args, r->pool, 8, sizeof(ngx_str_t)) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (p = body; p <= last; p = eol + 1) {
        eol = ngx_strlchr(p, last, '\n');
        if (eol == NULL) {
            eol = last;
        }

        if (eol > p) {
            arg = ngx_array_push(&args);
            if (arg == NULL) {
                ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }

            arg->data = p;
            arg->len = eol - p;

            if (eol < last) {
                continue;
            }
        }

        if (args.nelts) {
            rc = ngx_http_twirt_redis_command(args.nelts, args.elts);
            word = ngx_http_twirt_redis_test_word(rc);

            out.len = ngx_cpymem(out.data + out.len, word->data, word->len)
                      - out.data;
            args.nelts = 0;
        }
    }

    if (out.len == 0) {
        ngx_str_set(&out, "nothing\n");
    }

    ngx_http_finalize_request(r, ngx_http_twirt_redis_test_send(r, &out));
}


static ngx_int_t
ngx_http_twirt_redis_test_hgetall(ngx_http_request_t *r)
{
    u_char                           *dst, *src;
    ngx_int_t                         rc, timeout;
    ngx_str_t                         key, value, text;
    ngx_http_cleanup_t               *cln;
    ngx_http_twirt_test_ctx_t  *ctx;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_arg(r, (u_char *) "key", 3, &value) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    key.data = ngx_pnalloc(r->pool, value.len);
    if (key.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    dst = key.data;
    src = value.data;
    ngx_unescape_uri(&dst, &src, value.len, 0);
    key.len = dst - key.data;

    timeout = 0;

    if (ngx_http_arg(r, (u_char *) "timeout", 7, &value) == NGX_OK) {
        timeout = ngx_atoi(value.data, value.len);

        if (timeout == NGX_ERROR) {
            return NGX_HTTP_BAD_REQUEST;
        }
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_test_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_twirt_redis_test_cleanup;
    cln->data = ctx;

    ctx->request = r;

    rc = ngx_http_twirt_redis_hgetall(&key, (ngx_msec_t) timeout,
                                      ngx_http_twirt_redis_test_hash, ctx,
                                      &ctx->handle);

    if (rc == NGX_DECLINED) {
        if (!ngx_http_twirt_redis_configured()) {
            ngx_str_set(&text, "disabled\n");

        } else {
            ngx_str_set(&text, "unavailable\n");
        }

        return ngx_http_twirt_redis_test_send(r, &text);
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_arg(r, (u_char *) "cancel", 6, &value) == NGX_OK) {

        /* the handler must never run now: this request is gone first */

        ngx_http_twirt_redis_cancel(ctx->handle);
        ctx->handle = NULL;

        ngx_str_set(&text, "canceled\n");
        return ngx_http_twirt_redis_test_send(r, &text);
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_twirt_redis_test_hash(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_twirt_test_ctx_t *ctx = data;

    u_char              *p;
    size_t               len;
    ngx_str_t            text;
    ngx_uint_t           i;
    ngx_keyval_t        *kv;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->request;
    c = r->connection;

    ctx->handle = NULL;

    if (rc == NGX_ERROR) {
        ngx_str_set(&text, "error\n");

    } else if (rc != NGX_OK) {
        ngx_str_set(&text, "unavailable\n");

    } else if (pairs->nelts == 0) {
        ngx_str_set(&text, "empty\n");

    } else {
        kv = pairs->elts;
        len = 0;

        for (i = 0; i < pairs->nelts; i++) {
            len += kv[i].key.len + kv[i].value.len + sizeof("=\n") - 1;
        }

        text.data = ngx_pnalloc(r->pool, len);
        if (text.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            ngx_http_run_posted_requests(c);
            return;
        }

        p = text.data;

        for (i = 0; i < pairs->nelts; i++) {
            p = ngx_sprintf(p, "%V=%V\n", &kv[i].key, &kv[i].value);
        }

        text.len = p - text.data;
    }

    ngx_http_finalize_request(r, ngx_http_twirt_redis_test_send(r, &text));
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_twirt_redis_test_cleanup(void *data)
{
    ngx_http_twirt_test_ctx_t *ctx = data;

    if (ctx->handle) {
        ngx_http_twirt_redis_cancel(ctx->handle);
        ctx->handle = NULL;
    }
}


static ngx_int_t
ngx_http_twirt_redis_test_stats(ngx_http_request_t *r)
{
    ngx_int_t                      rc;
    ngx_str_t                      text;
    ngx_http_twirt_redis_stats_t  *st;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (!ngx_http_twirt_redis_configured()) {
        ngx_str_set(&text, "disabled\n");
        return ngx_http_twirt_redis_test_send(r, &text);
    }

    st = ngx_http_twirt_redis_stats();

    text.data = ngx_pnalloc(r->pool,
                            7 * (NGX_INT_T_LEN + sizeof("reconnects= ")));
    if (text.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.len = ngx_sprintf(text.data,
                           "queued=%ui dropped=%ui reconnects=%ui "
                           "errors=%ui connected=%ui sent=%ui unbuilt=%ui\n",
                           st->queued, st->dropped, st->reconnects,
                           st->errors, st->connected, st->sent, st->unbuilt)
               - text.data;

    return ngx_http_twirt_redis_test_send(r, &text);
}


static ngx_int_t
ngx_http_twirt_redis_test_build(ngx_http_request_t *r)
{
    u_char                       *p, *last;
    ngx_int_t                     rc, n;
    ngx_str_t                     id, fail, text;
    ngx_http_twirt_redis_args_t   args;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_arg(r, (u_char *) "id", 2, &id) != NGX_OK) {
        return NGX_HTTP_BAD_REQUEST;
    }

    ngx_http_twirt_test_fail = 0;
    ngx_http_twirt_test_allocs = 0;

    if (ngx_http_arg(r, (u_char *) "fail", 4, &fail) == NGX_OK) {
        last = fail.data + fail.len;

        for (p = fail.data; p < last; p++) {
            n = 0;

            while (p < last && *p >= '0' && *p <= '9') {
                n = n * 10 + (*p++ - '0');

                if (n > 63) {
                    return NGX_HTTP_BAD_REQUEST;
                }
            }

            if (n == 0 || (p < last && *p != ',')) {
                return NGX_HTTP_BAD_REQUEST;
            }

            ngx_http_twirt_test_fail |= (uint64_t) 1 << n;
        }
    }

    ngx_http_twirt_redis_args_init(&args, r->pool, r->connection->log,
                                   "HSET");
    ngx_http_twirt_redis_args_key(&args, "test", &id, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "n1");
    ngx_http_twirt_redis_args_num(&args, "%ui", (ngx_uint_t) 1);
    ngx_http_twirt_redis_args_cstr(&args, "n2");
    ngx_http_twirt_redis_args_num(&args, "%ui", (ngx_uint_t) 2);
    ngx_http_twirt_redis_args_cstr(&args, "n3");
    ngx_http_twirt_redis_args_num(&args, "%ui", (ngx_uint_t) 3);
    ngx_http_twirt_redis_args_cstr(&args, "at");
    ngx_http_twirt_redis_args_now(&args);

    ngx_http_twirt_test_fail = 0;

    rc = ngx_http_twirt_redis_args_send(&args);

    if (rc == NGX_ERROR && args.failed) {
        ngx_str_set(&text, "unbuilt\n");
        return ngx_http_twirt_redis_test_send(r, &text);
    }

    return ngx_http_twirt_redis_test_send(r,
                                          ngx_http_twirt_redis_test_word(rc));
}


ngx_uint_t
ngx_http_twirt_test_fail_alloc(void)
{
    ngx_uint_t  n;

    if (ngx_http_twirt_test_fail == 0) {
        return 0;
    }

    n = ++ngx_http_twirt_test_allocs;

    return n < 64 && (ngx_http_twirt_test_fail & ((uint64_t) 1 << n));
}


static ngx_int_t
ngx_http_twirt_redis_test_send(ngx_http_request_t *r, ngx_str_t *text)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = text->len;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = text->data;
    b->last = text->data + text->len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_str_t *
ngx_http_twirt_redis_test_word(ngx_int_t rc)
{
    static ngx_str_t  queued = ngx_string("queued\n");
    static ngx_str_t  dropped = ngx_string("dropped\n");
    static ngx_str_t  disabled = ngx_string("disabled\n");
    static ngx_str_t  refused = ngx_string("refused\n");

    switch (rc) {

    case NGX_OK:
        return &queued;

    case NGX_BUSY:
        return &dropped;

    case NGX_DECLINED:
        return &disabled;

    default:
        return &refused;
    }
}


/*
 * twirt_csv_test: POST a CSV upload, get back the rows as compact JSON
 * and a newline, or "error: " and the message.
 */

static char *
ngx_http_twirt_csv_test(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_http_twirt_csv_test_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_twirt_csv_test_handler(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_twirt_csv_test_body);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_twirt_csv_test_body(ngx_http_request_t *r)
{
    char       *json;
    json_t     *rows;
    ngx_int_t   rc;
    ngx_str_t   body, error, out;

    rc = ngx_http_twirt_test_body(r, &body);
    if (rc != NGX_OK) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (ngx_http_twirt_csv_rows(r->pool, body.data, body.len, &rows, &error)
        != NGX_OK)
    {
        out.data = ngx_pnalloc(r->pool, sizeof("error: \n") + error.len);
        if (out.data == NULL) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        out.len = ngx_sprintf(out.data, "error: %V\n", &error) - out.data;

        ngx_http_finalize_request(r, ngx_http_twirt_redis_test_send(r, &out));
        return;
    }

    json = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);

    if (json == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    out.len = ngx_strlen(json);
    out.data = ngx_pnalloc(r->pool, out.len + 1);

    if (out.data == NULL) {
        free(json);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    *ngx_cpymem(out.data, json, out.len) = '\n';
    out.len++;
    free(json);

    ngx_http_finalize_request(r, ngx_http_twirt_redis_test_send(r, &out));
}


/* the request body in one piece of memory */

static ngx_int_t
ngx_http_twirt_test_body(ngx_http_request_t *r, ngx_str_t *body)
{
    u_char       *p;
    size_t        len;
    ngx_chain_t  *cl;

    if (r->request_body == NULL || r->request_body->temp_file) {
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
    }

    body->data = ngx_pnalloc(r->pool, len + 1);
    if (body->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = body->data;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    body->len = p - body->data;

    return NGX_OK;
}
