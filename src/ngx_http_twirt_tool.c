
/*
 * Tool calls as background subrequests of the call's request.
 *
 * The backend is whatever the user's internal location does (proxy_pass
 * to an upstream block with keepalive and TLS verification, fastcgi, a
 * plain "return"): nginx's own machinery, configured the nginx way.  The
 * subrequest is a background one, so the connection keeps serving the
 * Twilio stream; its answer never reaches Twilio: the body filter below
 * keeps up to twirt_tool_max_output bytes of the body and drops the rest
 * (the status is the subrequest's own).
 *
 * A tool call ends once: the subrequest finalized (post_subrequest), the
 * timeout, or a cancel.  The owner's handler runs from a posted event,
 * never inside nginx's finalization of the subrequest.
 */


#include <openssl/hmac.h>
#include <openssl/evp.h>

#include "ngx_http_twirt_tool.h"


static void ngx_http_twirt_tool_run(ngx_event_t *ev);
static ngx_int_t ngx_http_twirt_tool_request(ngx_http_twirt_tool_t *tool);
static ngx_int_t ngx_http_twirt_tool_header(ngx_http_request_t *sr,
    ngx_http_twirt_tool_t *tool, const char *name, ngx_str_t *value);
static ngx_int_t ngx_http_twirt_tool_sign(ngx_http_twirt_tool_t *tool,
    ngx_str_t *value);
static ngx_int_t ngx_http_twirt_tool_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc);
static ngx_uint_t ngx_http_twirt_tool_utf8(ngx_http_twirt_tool_t *tool);
static void ngx_http_twirt_tool_timeout(ngx_event_t *ev);
static void ngx_http_twirt_tool_abort(ngx_http_twirt_tool_t *tool);
static void ngx_http_twirt_tool_finish(ngx_http_twirt_tool_t *tool,
    ngx_http_twirt_tool_result_e result);
static void ngx_http_twirt_tool_deliver(ngx_event_t *ev);
static void ngx_http_twirt_tool_release(ngx_http_twirt_tool_t *tool);
static ngx_http_twirt_tool_t *ngx_http_twirt_tool_of(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_tool_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);


static ngx_http_output_body_filter_pt    ngx_http_twirt_tool_next_body;


static const char  *ngx_http_twirt_tool_results[] = {
    "ok",
    "status",
    "timeout",
    "unreachable",
    "too_large",
    "invalid_output",
    "invalid_arguments",
    "unknown_tool",
    "no_backend",
    "failed"
};


static ngx_str_t  ngx_http_twirt_tool_post = ngx_string("POST");


ngx_int_t
ngx_http_twirt_tool_init(ngx_conf_t *cf)
{
    ngx_http_twirt_tool_next_body = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_twirt_tool_body_filter;

    return NGX_OK;
}


const char *
ngx_http_twirt_tool_result_name(ngx_http_twirt_tool_result_e r)
{
    return r < NGX_HTTP_TWIRT_TOOL_LAST ? ngx_http_twirt_tool_results[r]
                                        : "unknown";
}


const char *
ngx_http_twirt_tool_check(json_t *tools, size_t *bad)
{
    u_char       *p;
    size_t        i, j, len;
    json_t       *tool, *other, *params;
    const char   *name, *type;

    *bad = 0;

    if (!json_is_array(tools)) {
        return "is not a JSON array of function definitions";
    }

    json_array_foreach(tools, i, tool) {
        *bad = i;

        type = json_string_value(json_object_get(tool, "type"));
        name = json_string_value(json_object_get(tool, "name"));
        params = json_object_get(tool, "parameters");

        if (!json_is_object(tool) || type == NULL
            || ngx_strcmp(type, "function") != 0 || name == NULL)
        {
            return "is not {\"type\":\"function\",\"name\":...}";
        }

        len = ngx_strlen(name);

        if (len == 0 || len > 64) {
            return "has a name of 1 to 64 characters";
        }

        for (p = (u_char *) name; *p; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            {
                return "has a name of letters, digits, \"_\" and \"-\" "
                       "only";
            }
        }

        if (ngx_strcmp(name, "end_call") == 0
            || ngx_strcmp(name, "transfer_call") == 0)
        {
            return "has the name of a built-in tool "
                   "(end_call, transfer_call)";
        }

        if (params && !json_is_object(params)) {
            return "has \"parameters\" that is not a JSON schema object";
        }

        for (j = 0; j < i; j++) {
            other = json_array_get(tools, j);

            if (ngx_strcmp(json_string_value(json_object_get(other, "name")),
                           name)
                == 0)
            {
                return "repeats the name of an earlier tool";
            }
        }
    }

    return NULL;
}


ngx_http_twirt_tool_t *
ngx_http_twirt_tool_create(ngx_http_request_t *r, ngx_log_t *log)
{
    ngx_http_twirt_tool_t  *tool;

    /*
     * From the request's pool, not the call's: a subrequest that cannot
     * be closed at once finishes after the call and still finds it
     */

    tool = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_tool_t));
    if (tool == NULL) {
        return NULL;
    }

    tool->request = r;

    tool->event.handler = ngx_http_twirt_tool_run;
    tool->event.data = tool;
    tool->event.log = log;

    tool->timer.handler = ngx_http_twirt_tool_timeout;
    tool->timer.data = tool;
    tool->timer.log = log;
    tool->timer.cancelable = 1;

    tool->ps.handler = ngx_http_twirt_tool_done;
    tool->ps.data = tool;

    return tool;
}


void
ngx_http_twirt_tool_start(ngx_http_twirt_tool_t *tool)
{
    tool->started = ngx_current_msec;

    ngx_add_timer(&tool->timer, tool->timeout);
    ngx_post_event(&tool->event, &ngx_posted_events);
}


static void
ngx_http_twirt_tool_run(ngx_event_t *ev)
{
    ngx_http_twirt_tool_t  *tool = ev->data;

    ngx_connection_t  *c;

    c = tool->request->connection;

    if (ngx_http_twirt_tool_request(tool) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                      "twirt: tool \"%V\": the subrequest to \"%V\" could "
                      "not be made", &tool->name, &tool->uri);
        ngx_http_twirt_tool_finish(tool, NGX_HTTP_TWIRT_TOOL_FAILED);
        return;
    }

    /* the handler may run from here on: the event delivers it */
    tool->event.handler = ngx_http_twirt_tool_deliver;

    ngx_http_run_posted_requests(c);
}


/*
 * POST the body to the URI with headers of its own: the call's request
 * headers (the WebSocket upgrade, Twilio's signature) are not passed.
 */

static ngx_int_t
ngx_http_twirt_tool_request(ngx_http_twirt_tool_t *tool)
{
    ngx_buf_t                *b;
    ngx_str_t                 value;
    ngx_chain_t              *cl;
    ngx_http_request_t       *r, *sr;
    ngx_http_request_body_t  *rb;

    r = tool->request;

    if (ngx_http_subrequest(r, &tool->uri, NULL, &sr, &tool->ps,
                            NGX_HTTP_SUBREQUEST_BACKGROUND)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    tool->sr = sr;
    tool->running = 1;

    sr->method = NGX_HTTP_POST;
    sr->method_name = ngx_http_twirt_tool_post;
    sr->discard_body = 0;
    sr->header_only = 0;

    b = ngx_calloc_buf(r->pool);
    cl = ngx_alloc_chain_link(r->pool);
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));

    if (b == NULL || cl == NULL || rb == NULL) {
        return NGX_ERROR;
    }

    b->pos = tool->body.data;
    b->last = tool->body.data + tool->body.len;
    b->start = b->pos;
    b->end = b->last;
    b->memory = 1;
    b->last_buf = 1;

    cl->buf = b;
    cl->next = NULL;
    rb->bufs = cl;

    sr->request_body = rb;

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));

    if (ngx_list_init(&sr->headers_in.headers, r->pool, 4,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    sr->headers_in.server = r->headers_in.server;
    sr->headers_in.content_length_n = tool->body.len;
    sr->headers_in.keep_alive_n = -1;

    ngx_str_set(&value, "application/json");

    if (ngx_http_twirt_tool_header(sr, tool, "Content-Type", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    value.data = ngx_pnalloc(r->pool, NGX_OFF_T_LEN);
    if (value.data == NULL) {
        return NGX_ERROR;
    }

    value.len = ngx_sprintf(value.data, "%uz", tool->body.len) - value.data;

    if (ngx_http_twirt_tool_header(sr, tool, "Content-Length", &value)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_str_set(&value, "twirt");

    if (ngx_http_twirt_tool_header(sr, tool, "User-Agent", &value) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_tool_sign(tool, &value) != NGX_OK
        || ngx_http_twirt_tool_header(sr, tool, "X-Twirt-Signature", &value)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_tool_header(ngx_http_request_t *sr, ngx_http_twirt_tool_t *tool,
    const char *name, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    h->lowcase_key = ngx_pnalloc(tool->request->pool, h->key.len);
    if (h->lowcase_key == NULL) {
        return NGX_ERROR;
    }

    h->hash = ngx_hash_strlow(h->lowcase_key, h->key.data, h->key.len);

    if (name[0] == 'C' && name[8] == 'L') {
        sr->headers_in.content_length = h;

    } else if (name[0] == 'C') {
        sr->headers_in.content_type = h;

    } else if (name[0] == 'U') {
        sr->headers_in.user_agent = h;
    }

    return NGX_OK;
}


/* "t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>" */

static ngx_int_t
ngx_http_twirt_tool_sign(ngx_http_twirt_tool_t *tool, ngx_str_t *value)
{
    u_char        *p, *data, md[EVP_MAX_MD_SIZE];
    size_t         ts_len;
    unsigned int   md_len;

    data = ngx_alloc(NGX_TIME_T_LEN + 1 + tool->body.len, tool->timer.log);
    if (data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(data, "%T.", ngx_time());
    ts_len = p - data;
    p = ngx_cpymem(p, tool->body.data, tool->body.len);

    if (HMAC(EVP_sha256(), tool->secret.data, (int) tool->secret.len,
             data, p - data, md, &md_len)
        == NULL)
    {
        ngx_free(data);
        return NGX_ERROR;
    }

    value->data = ngx_pnalloc(tool->request->pool,
                              sizeof("t=,v1=") - 1 + ts_len + 2 * md_len);
    if (value->data == NULL) {
        ngx_free(data);
        return NGX_ERROR;
    }

    p = ngx_sprintf(value->data, "t=%*s,v1=", ts_len - 1, data);
    p = ngx_hex_dump(p, md, md_len);

    value->len = p - value->data;

    ngx_free(data);

    return NGX_OK;
}


/*
 * Called each time nginx finalizes the subrequest.  NGX_DONE and
 * NGX_AGAIN: it goes on.  A special response (an error status nginx
 * makes itself) is sent through the filters next and comes back here.
 * Anything else is the end; an error is made NGX_OK, or nginx would
 * terminate the call's own request with it.
 */

static ngx_int_t
ngx_http_twirt_tool_done(ngx_http_request_t *sr, void *data, ngx_int_t rc)
{
    ngx_http_twirt_tool_t  *tool = data;

    ngx_http_upstream_t           *u;
    ngx_http_twirt_tool_result_e   result;

    if (rc == NGX_DONE || rc == NGX_AGAIN) {
        return rc;
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE && rc != NGX_HTTP_CLOSE
        && rc != NGX_HTTP_REQUEST_TIME_OUT
        && rc != NGX_HTTP_CLIENT_CLOSED_REQUEST
        && !sr->header_sent)
    {
        return rc;
    }

    if (!tool->running) {
        return (rc == NGX_OK || rc >= NGX_HTTP_SPECIAL_RESPONSE) ? rc
                                                                : NGX_OK;
    }

    tool->running = 0;

    if (tool->finished) {
        /* timed out or canceled while nginx could not close it */
        ngx_http_twirt_tool_release(tool);
        return NGX_OK;
    }

    tool->status = sr->headers_out.status;
    u = sr->upstream;

    if (rc == NGX_ERROR || rc == NGX_HTTP_CLOSE
        || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST)
    {
        result = NGX_HTTP_TWIRT_TOOL_UNREACHABLE;

    } else if (tool->status == NGX_HTTP_GATEWAY_TIME_OUT
               || rc == NGX_HTTP_REQUEST_TIME_OUT)
    {
        result = (u && u->headers_in.status_n)
                 ? NGX_HTTP_TWIRT_TOOL_STATUS : NGX_HTTP_TWIRT_TOOL_TIMEOUT;

    } else if (u && u->headers_in.status_n == 0) {
        /* nginx's own 502: the backend never answered */
        result = NGX_HTTP_TWIRT_TOOL_UNREACHABLE;

    } else if (tool->status < 200 || tool->status > 299) {
        result = NGX_HTTP_TWIRT_TOOL_STATUS;

    } else if (tool->received > tool->max_output) {
        result = NGX_HTTP_TWIRT_TOOL_TOO_LARGE;

    } else if (!ngx_http_twirt_tool_utf8(tool)) {
        result = NGX_HTTP_TWIRT_TOOL_INVALID_OUTPUT;

    } else {
        result = NGX_HTTP_TWIRT_TOOL_OK;
    }

    ngx_http_twirt_tool_finish(tool, result);

    return NGX_OK;
}


/* the output goes into a JSON string: jansson takes valid UTF-8 only */

static ngx_uint_t
ngx_http_twirt_tool_utf8(ngx_http_twirt_tool_t *tool)
{
    json_t  *s;

    if (tool->output_len == 0) {
        return 1;
    }

    s = json_stringn((char *) tool->output, tool->output_len);

    if (s == NULL) {
        return 0;
    }

    json_decref(s);

    return 1;
}


static void
ngx_http_twirt_tool_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_tool_t  *tool = ev->data;

    ngx_http_twirt_tool_finish(tool, NGX_HTTP_TWIRT_TOOL_TIMEOUT);
    ngx_http_twirt_tool_abort(tool);
}


/* the handler runs from the posted event, once */

static void
ngx_http_twirt_tool_finish(ngx_http_twirt_tool_t *tool,
    ngx_http_twirt_tool_result_e result)
{
    if (tool->finished) {
        return;
    }

    tool->finished = 1;
    tool->result = result;

    if (tool->timer.timer_set) {
        ngx_del_timer(&tool->timer);
    }

    tool->event.handler = ngx_http_twirt_tool_deliver;

    if (!tool->event.posted) {
        ngx_post_event(&tool->event, &ngx_posted_events);
    }
}


static void
ngx_http_twirt_tool_deliver(ngx_event_t *ev)
{
    ngx_http_twirt_tool_t  *tool = ev->data;

    ngx_http_twirt_tool_handler_pt  handler;

    if (!tool->finished) {
        /* posted to start and started already: nothing yet */
        return;
    }

    handler = tool->handler;
    tool->handler = NULL;

    if (handler) {
        handler(tool);
    }

    if (!tool->running) {
        ngx_http_twirt_tool_release(tool);
    }
}


void
ngx_http_twirt_tool_cancel(ngx_http_twirt_tool_t *tool)
{
    tool->handler = NULL;

    if (tool->event.posted) {
        ngx_delete_posted_event(&tool->event);
    }

    if (tool->timer.timer_set) {
        ngx_del_timer(&tool->timer);
    }

    tool->finished = 1;

    ngx_http_twirt_tool_abort(tool);

    if (!tool->running) {
        ngx_http_twirt_tool_release(tool);
    }
}


/*
 * Closes the backend request: an upstream's own cleanup finalizes the
 * subrequest at once.  Other content handlers finish on their own; the
 * call's request waits for them.
 */

static void
ngx_http_twirt_tool_abort(ngx_http_twirt_tool_t *tool)
{
    ngx_http_request_t   *sr;
    ngx_http_cleanup_pt   cleanup;

    sr = tool->sr;

    if (!tool->running || sr->upstream == NULL
        || sr->upstream->cleanup == NULL)
    {
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, tool->timer.log, 0,
                   "twirt: tool \"%V\": closing the backend request",
                   &tool->name);

    tool->running = 0;

    cleanup = *sr->upstream->cleanup;
    cleanup(sr);
}


static void
ngx_http_twirt_tool_release(ngx_http_twirt_tool_t *tool)
{
    if (tool->output) {
        ngx_free(tool->output);
        tool->output = NULL;
    }
}


static ngx_http_twirt_tool_t *
ngx_http_twirt_tool_of(ngx_http_request_t *r)
{
    /* survives internal redirects, unlike a module context */

    if (r == r->main || r->post_subrequest == NULL
        || r->post_subrequest->handler != ngx_http_twirt_tool_done)
    {
        return NULL;
    }

    return r->post_subrequest->data;
}


/* keeps up to max_output bytes (and one more: too large), drops the rest */

static ngx_int_t
ngx_http_twirt_tool_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                   size;
    size_t                  room, n;
    ssize_t                 got;
    ngx_buf_t              *b;
    ngx_chain_t            *cl;
    ngx_http_twirt_tool_t  *tool;

    tool = ngx_http_twirt_tool_of(r);

    if (tool == NULL) {
        return ngx_http_twirt_tool_next_body(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        b = cl->buf;
        size = ngx_buf_size(b);

        if (size > 0 && !tool->finished) {
            room = tool->max_output + 1 - ngx_min(tool->received,
                                                  tool->max_output + 1);
            n = (size_t) ngx_min((off_t) room, size);

            if (n && tool->output == NULL) {
                tool->output = ngx_alloc(tool->max_output + 1, r->connection->log);
                if (tool->output == NULL) {
                    return NGX_ERROR;
                }
            }

            if (n && ngx_buf_in_memory(b)) {
                ngx_memcpy(tool->output + tool->output_len, b->pos, n);
                tool->output_len += n;

            } else if (n) {
                got = ngx_read_file(b->file, tool->output + tool->output_len,
                                    n, b->file_pos);
                if (got != (ssize_t) n) {
                    return NGX_ERROR;
                }

                tool->output_len += n;
            }

            tool->received += size;
        }

        if (ngx_buf_in_memory(b)) {
            b->pos = b->last;
        }

        if (b->in_file) {
            b->file_pos = b->file_last;
        }
    }

    return NGX_OK;
}
