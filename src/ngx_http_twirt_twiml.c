
/*
 * The voice webhook: answers Twilio's request with TwiML that connects the
 * call to the Media Streams location.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_twiml.h"
#include "ngx_http_twirt_campaign.h"
#include "ngx_http_twirt_form.h"
#include "ngx_http_twirt_escape.h"
#include "ngx_http_twirt_signature.h"
#include "ngx_http_twirt_redis.h"
#include "ngx_http_twirt_outcome.h"
#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_transfer.h"
#include "ngx_http_twirt_metrics.h"


/* which request of a call the action location is answering */
#define NGX_HTTP_TWIRT_ACTION_STREAM   0   /* <Connect action> */
#define NGX_HTTP_TWIRT_ACTION_WHISPER  1   /* <Number url>: the callee */
#define NGX_HTTP_TWIRT_ACTION_DIALED   2   /* <Dial action> */


/* what the action knows of the call: this node's outcomes, or the record */
typedef struct {
    ngx_uint_t                  step;      /* NGX_HTTP_TWIRT_ACTION_* */
    ngx_str_t                   call_sid;
    ngx_str_t                  *status;
    ngx_str_t                  *reason;
    ngx_str_t                   status_value;
    ngx_str_t                   reason_value;
    ngx_http_twirt_transfer_t   transfer;  /* target.len 0: none */
    const char                 *source;
} ngx_http_twirt_action_outcome_t;


/* the pieces of a TwiML answer, escaped where they come from outside */
typedef struct {
    ngx_http_request_t  *request;
    ngx_array_t          parts;
    size_t               len;
} ngx_http_twirt_twiml_t;


static void ngx_http_twirt_twiml_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_twiml_process(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx, ngx_str_t *args);
static ngx_int_t ngx_http_twirt_twiml_build(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_http_twirt_twiml_t *t,
    ngx_keyval_t *extra, ngx_uint_t nextra);
static ngx_int_t ngx_http_twirt_twiml_query_params(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_http_twirt_twiml_t *t);
static ngx_int_t ngx_http_twirt_twiml_say(ngx_http_twirt_twiml_t *t,
    ngx_http_twirt_say_t *say);
static ngx_int_t ngx_http_twirt_twiml_stream_url(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_str_t *url);
static ngx_int_t ngx_http_twirt_twiml_send(ngx_http_request_t *r,
    ngx_http_twirt_twiml_t *t);
static ngx_int_t ngx_http_twirt_twiml_raw(ngx_http_twirt_twiml_t *t,
    const char *s);
static ngx_int_t ngx_http_twirt_twiml_text(ngx_http_twirt_twiml_t *t,
    ngx_str_t *s);
static ngx_int_t ngx_http_twirt_escaped(ngx_http_twirt_twiml_t *t,
    ngx_str_t *s, ngx_uint_t attr);
static ngx_int_t ngx_http_twirt_twiml_attr(ngx_http_twirt_twiml_t *t,
    const char *name, ngx_str_t *value);
static ngx_str_t *ngx_http_twirt_twiml_call_sid(
    ngx_http_twirt_twiml_ctx_t *ctx);
static ngx_int_t ngx_http_twirt_twiml_webhook(ngx_http_request_t *r,
    ngx_uint_t kind);
static ngx_int_t ngx_http_twirt_stream_status(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx);
static json_t *ngx_http_twirt_stream_status_field(ngx_array_t *pairs,
    const char *name);
static ngx_int_t ngx_http_twirt_twiml_action_start(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx);
static void ngx_http_twirt_twiml_action_read(void *data, ngx_int_t rc,
    ngx_array_t *pairs);
static ngx_int_t ngx_http_twirt_twiml_action_answer(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o);
static ngx_int_t ngx_http_twirt_twiml_action_transfer(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, ngx_http_twirt_twiml_t *t);
static ngx_int_t ngx_http_twirt_twiml_action_dialed(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, ngx_http_twirt_twiml_t *t);
static ngx_int_t ngx_http_twirt_twiml_action_url(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, const char *step, ngx_str_t *url);
static void ngx_http_twirt_twiml_action_cleanup(void *data);
static ngx_int_t ngx_http_twirt_twiml_fallback(ngx_http_twirt_twiml_t *t,
    ngx_http_twirt_loc_conf_t *tlcf);
static ngx_str_t *ngx_http_twirt_twiml_host(ngx_http_request_t *r);


static ngx_str_t  ngx_http_twirt_unknown = ngx_string("-");


ngx_int_t
ngx_http_twirt_twiml_handler(ngx_http_request_t *r)
{
    return ngx_http_twirt_twiml_webhook(r, 0);
}


/* <Connect action>: Twilio asks what to do now that the stream ended */

ngx_int_t
ngx_http_twirt_action_handler(ngx_http_request_t *r)
{
    return ngx_http_twirt_twiml_webhook(r, 1);
}


/* <Stream statusCallback>: Twilio reports the stream's events */

ngx_int_t
ngx_http_twirt_stream_status_handler(ngx_http_request_t *r)
{
    return ngx_http_twirt_twiml_webhook(r, 2);
}


/* the outbound call's StatusCallback: Twilio reports its progress */

ngx_int_t
ngx_http_twirt_call_status_handler(ngx_http_request_t *r)
{
    return ngx_http_twirt_twiml_webhook(r, 3);
}


/*
 * kind: 0 the voice webhook, 1 the action, 2 the stream's status, 3 the
 * call's status
 */

static ngx_int_t
ngx_http_twirt_twiml_webhook(ngx_http_request_t *r, ngx_uint_t kind)
{
    ngx_int_t                    rc;
    ngx_str_t                   *type;
    ngx_http_twirt_loc_conf_t   *tlcf;
    ngx_http_twirt_twiml_ctx_t  *ctx;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD|NGX_HTTP_POST))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_twiml_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->pairs = ngx_array_create(r->pool, 16, sizeof(ngx_http_twirt_pair_t));
    if (ctx->pairs == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->kind = NGX_HTTP_TWIRT_CTX_WEBHOOK;
    ctx->action = (kind == 1);
    ctx->stream_status = (kind == 2);
    ctx->call_status = (kind == 3);

    ngx_http_set_ctx(r, ctx, ngx_http_twirt_module);

    if (r->method != NGX_HTTP_POST) {
        rc = ngx_http_discard_request_body(r);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_twirt_twiml_process(r, ctx, &r->args);
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    type = r->headers_in.content_type ? &r->headers_in.content_type->value
                                      : NULL;

    if (type == NULL
        || type->len < sizeof("application/x-www-form-urlencoded") - 1
        || ngx_strncasecmp(type->data,
                           (u_char *) "application/x-www-form-urlencoded",
                           sizeof("application/x-www-form-urlencoded") - 1)
           != 0
        || (type->len > sizeof("application/x-www-form-urlencoded") - 1
            && type->data[sizeof("application/x-www-form-urlencoded") - 1]
               != ';'
            && type->data[sizeof("application/x-www-form-urlencoded") - 1]
               != ' '))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: voice webhook body is not "
                      "application/x-www-form-urlencoded");
        return NGX_HTTP_UNSUPPORTED_MEDIA_TYPE;
    }

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: voice webhook body of %O bytes is larger than "
                      "twirt_twiml_max_body_size %uz",
                      r->headers_in.content_length_n, tlcf->max_body_size);
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    rc = ngx_http_read_client_request_body(r,
                                          ngx_http_twirt_twiml_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_twirt_twiml_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                    rc;
    ngx_str_t                    body;
    ngx_http_twirt_loc_conf_t   *tlcf;
    ngx_http_twirt_twiml_ctx_t  *ctx;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    rc = ngx_http_twirt_read_body(r, tlcf->max_body_size, &body);

    if (rc == NGX_OK) {
        rc = ngx_http_twirt_twiml_process(r, ctx, &body);
    }

    ngx_http_finalize_request(r, rc);
}


/* the body in one piece, from memory or from the temporary file */

ngx_int_t
ngx_http_twirt_read_body(ngx_http_request_t *r, size_t max,
    ngx_str_t *body)
{
    u_char       *p;
    size_t        len, size;
    ssize_t       n;
    ngx_buf_t    *b;
    ngx_chain_t  *cl;

    ngx_str_set(body, "");

    if (r->request_body == NULL || r->request_body->bufs == NULL) {
        return NGX_OK;
    }

    len = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;
        len += b->in_file ? (size_t) (b->file_last - b->file_pos)
                          : (size_t) (b->last - b->pos);
    }

    if (len > max) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: request body of %uz bytes is larger than "
                      "%uz", len, max);
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    body->data = p;
    body->len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        size = (size_t) (b->file_last - b->file_pos);

        n = ngx_read_file(b->file, p, size, b->file_pos);
        if (n != (ssize_t) size) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        p += size;
    }

    *p = '\0';

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_twiml_process(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx, ngx_str_t *args)
{
    ngx_int_t                   rc;
    ngx_http_twirt_pair_t      *pair;
    ngx_http_twirt_twiml_t      t;
    ngx_http_twirt_log_text_t   lt;
    ngx_http_twirt_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    rc = ngx_http_twirt_form_parse(r->pool, args->data, args->len,
                                   ctx->pairs);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: voice webhook parameters have malformed "
                      "percent-encoding");
        return NGX_HTTP_BAD_REQUEST;
    }

    ctx->done = 1;

    rc = ngx_http_twirt_signature_check(r, NGX_HTTP_TWIRT_SIGNED_WEBHOOK,
                                        r->method == NGX_HTTP_POST
                                        ? ctx->pairs : NULL,
                                        ngx_http_twirt_twiml_call_sid(ctx));

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return NGX_HTTP_FORBIDDEN;
    }

    if (ngx_http_twirt_form_repeated(r->pool, ctx->pairs, &pair) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (pair) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: voice webhook parameter \"%V\" is repeated",
                      ngx_http_twirt_log_str(&lt, &pair->name));
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ngx_http_twirt_twiml_call_sid(ctx) == NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: voice webhook request without CallSid");
        return NGX_HTTP_BAD_REQUEST;
    }

    if (ctx->action) {
        return ngx_http_twirt_twiml_action_start(r, ctx);
    }

    if (ctx->stream_status || ctx->call_status) {
        return ngx_http_twirt_stream_status(r, ctx);
    }

    t.request = r;
    t.len = 0;

    if (ngx_array_init(&t.parts, r->pool, 32, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_twirt_twiml_build(r, tlcf, &t, NULL, 0);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_twirt_twiml_send(r, &t);
}


/*
 * The <Connect><Stream> answer.  extra: parameters of a caller coming back
 * after a transfer (twirt_transfer...), who does not hear twirt_say again.
 */

static ngx_int_t
ngx_http_twirt_twiml_build(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_http_twirt_twiml_t *t,
    ngx_keyval_t *extra, ngx_uint_t nextra)
{
    size_t                   n;
    ngx_str_t                url, value;
    ngx_uint_t               i;
    ngx_http_twirt_param_t  *param;

    if (ngx_http_twirt_twiml_raw(t,
                                 "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                                 "<Response>")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tlcf->say && extra == NULL
        && ngx_http_twirt_twiml_say(t, tlcf->say) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_twirt_twiml_raw(t, "<Connect") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tlcf->action) {
        if (ngx_http_complex_value(r, &tlcf->action->url, &value) != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "action", &value) != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "method", &tlcf->action->method)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_twirt_twiml_stream_url(r, tlcf, &url) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "><Stream") != NGX_OK
        || ngx_http_twirt_twiml_attr(t, "url", &url) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tlcf->stream_status) {
        if (ngx_http_complex_value(r, &tlcf->stream_status->url, &value)
            != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "statusCallback", &value) != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "statusCallbackMethod",
                                         &tlcf->stream_status->method)
               != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_twirt_twiml_raw(t, ">") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (tlcf->params) {
        param = tlcf->params->elts;

        for (i = 0; i < tlcf->params->nelts; i++) {
            if (ngx_http_complex_value(r, &param[i].value, &value) != NGX_OK) {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }

            /*
             * Twilio would refuse the whole answer and the caller would
             * hear an application error: the call goes on without it
             */

            n = ngx_http_twirt_utf8_length(param[i].name.data,
                                           param[i].name.len)
                + ngx_http_twirt_utf8_length(value.data, value.len);

            if (n >= NGX_HTTP_TWIRT_PARAM_MAX) {
                ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                              "twirt: parameter \"%V\" is %uz characters "
                              "with its name, Twilio allows less than %d: "
                              "not sent", &param[i].name, n,
                              NGX_HTTP_TWIRT_PARAM_MAX);
                continue;
            }

            if (ngx_http_twirt_twiml_raw(t, "<Parameter") != NGX_OK
                || ngx_http_twirt_twiml_attr(t, "name", &param[i].name)
                   != NGX_OK
                || ngx_http_twirt_twiml_attr(t, "value", &value) != NGX_OK
                || ngx_http_twirt_twiml_raw(t, "/>") != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    }

    if (extra == NULL && ngx_http_twirt_twiml_query_params(r, tlcf, t)
                         != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < nextra; i++) {
        if (ngx_http_twirt_twiml_raw(t, "<Parameter") != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "name", &extra[i].key) != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "value", &extra[i].value)
               != NGX_OK
            || ngx_http_twirt_twiml_raw(t, "/>") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (ngx_http_twirt_twiml_raw(t, "</Stream></Connect>") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /*
     * With <Connect action> Twilio asks the action when the stream ends
     * and never plays what follows: the twirt_action location answers the
     * fallback, only when the call failed (nginx -t refuses fallback verbs
     * without an action)
     */

    if (tlcf->action == NULL
        && ngx_http_twirt_twiml_fallback(t, tlcf) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_twirt_twiml_raw(t, "</Response>\n") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/*
 * An outbound call's Url (twirt_calls) carries "agent" and "var.NAME" in
 * its query: each becomes a <Parameter>.  Only when the signature was
 * checked: Twilio signed the URL with the query, as twirt made it.  A
 * name that a twirt_parameter sets keeps the configuration's value.
 */

static ngx_int_t
ngx_http_twirt_twiml_query_params(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_http_twirt_twiml_t *t)
{
    size_t                   n;
    ngx_str_t                name;
    ngx_uint_t               i, j, count;
    ngx_array_t             *pairs;
    ngx_http_twirt_pair_t   *pair;
    ngx_http_twirt_param_t  *param;

    if (tlcf->auth_token.len == 0 || r->args.len == 0) {
        return NGX_OK;
    }

    pairs = ngx_array_create(r->pool, 8, sizeof(ngx_http_twirt_pair_t));
    if (pairs == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_form_parse(r->pool, r->args.data, r->args.len, pairs)
        != NGX_OK)
    {
        return NGX_OK;
    }

    pair = pairs->elts;
    count = 0;

    for (i = 0; i < pairs->nelts; i++) {
        name = pair[i].name;

        if (name.len > 4 && ngx_strncmp(name.data, "var.", 4) == 0) {
            name.data += 4;
            name.len -= 4;

        } else if (name.len != 5 || ngx_strncmp(name.data, "agent", 5) != 0)
        {
            continue;
        }

        if (++count > 1 + NGX_HTTP_TWIRT_QUERY_PARAMS) {
            break;
        }

        if (tlcf->params) {
            param = tlcf->params->elts;

            for (j = 0; j < tlcf->params->nelts; j++) {
                if (param[j].name.len == name.len
                    && ngx_strncmp(param[j].name.data, name.data, name.len)
                       == 0)
                {
                    break;
                }
            }

            if (j < tlcf->params->nelts) {
                continue;
            }
        }

        n = ngx_http_twirt_utf8_length(name.data, name.len)
            + ngx_http_twirt_utf8_length(pair[i].value.data,
                                         pair[i].value.len);

        if (n >= NGX_HTTP_TWIRT_PARAM_MAX) {
            continue;
        }

        if (ngx_http_twirt_twiml_raw(t, "<Parameter") != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "name", &name) != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "value", &pair[i].value)
               != NGX_OK
            || ngx_http_twirt_twiml_raw(t, "/>") != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the verbs after </Connect>: a message, a number to dial */

static ngx_int_t
ngx_http_twirt_twiml_fallback(ngx_http_twirt_twiml_t *t,
    ngx_http_twirt_loc_conf_t *tlcf)
{
    ngx_str_t  value;

    if (tlcf->fallback_say
        && ngx_http_twirt_twiml_say(t, tlcf->fallback_say) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (tlcf->fallback_dial) {
        if (ngx_http_complex_value(t->request, &tlcf->fallback_dial->number,
                                   &value)
            != NGX_OK
            || ngx_http_twirt_twiml_raw(t, "<Dial") != NGX_OK
            || (tlcf->fallback_dial->caller_id.len
                && ngx_http_twirt_twiml_attr(t, "callerId",
                                             &tlcf->fallback_dial->caller_id)
                   != NGX_OK)
            || ngx_http_twirt_twiml_raw(t, ">") != NGX_OK
            || ngx_http_twirt_twiml_text(t, &value) != NGX_OK
            || ngx_http_twirt_twiml_raw(t, "</Dial>") != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * How the call ended: from this node's recent outcomes (the stream was
 * here), else from the call record in Redis (written by whichever node
 * had it), else unknown.  A normal end hangs up; a failed or unknown one
 * gets the fallback; a transfer dials.  The transfer's own requests come
 * back here with ?twirt=whisper|dialed&call=CallSid (signed like any
 * other: the query is part of the URL Twilio signs).
 */

static ngx_int_t
ngx_http_twirt_twiml_action_start(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx)
{
    void                             *handle;
    ngx_int_t                         rc;
    ngx_str_t                         key, step, sid;
    ngx_uint_t                        failed;
    ngx_http_cleanup_t               *cln;
    ngx_http_twirt_log_text_t         t;
    ngx_http_twirt_action_outcome_t  *o;

    o = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_action_outcome_t));
    if (o == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->outcome = o;
    o->source = "nothing";
    o->call_sid = *ngx_http_twirt_twiml_call_sid(ctx);

    if (ngx_http_arg(r, (u_char *) "twirt", 5, &step) == NGX_OK) {
        if (step.len == 7 && ngx_strncmp(step.data, "whisper", 7) == 0) {
            o->step = NGX_HTTP_TWIRT_ACTION_WHISPER;

        } else if (step.len == 6 && ngx_strncmp(step.data, "dialed", 6) == 0) {
            o->step = NGX_HTTP_TWIRT_ACTION_DIALED;
        }

        /* the whisper is requested with the callee's CallSid */
        if (ngx_http_arg(r, (u_char *) "call", 4, &sid) == NGX_OK) {
            o->call_sid = sid;
        }
    }

    /* what no call can have is not looked up, nor logged raw */

    if (ngx_http_twirt_sid_valid(&o->call_sid) != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "twirt: <Connect action> for an invalid CallSid "
                      "\"%V\"", ngx_http_twirt_log_str(&t, &o->call_sid));

        return ngx_http_twirt_twiml_action_answer(r, o);
    }

    rc = ngx_http_twirt_outcome_get(&o->call_sid, &failed, &o->reason_value,
                                    r->pool);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_OK) {
        if (failed) {
            ngx_str_set(&o->status_value, "failed");

        } else {
            ngx_str_set(&o->status_value, "ended");
        }

        o->status = &o->status_value;
        o->reason = &o->reason_value;
        o->source = "this node's outcomes";

        if (ngx_http_twirt_outcome_get_transfer(&o->call_sid, &o->transfer,
                                                r->pool)
            == NGX_ERROR)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_http_twirt_twiml_action_answer(r, o);
    }

    if (ngx_http_twirt_redis_key(r->pool, "call", &o->call_sid, NULL, &key)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_http_cleanup_add(r, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_twirt_redis_hgetall(&key, 0,
                                      ngx_http_twirt_twiml_action_read, r,
                                      &handle);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "twirt: no call record for CallSid \"%V\" (Redis not "
                      "configured or not connected)", &o->call_sid);
        return ngx_http_twirt_twiml_action_answer(r, o);
    }

    ctx->redis = handle;

    cln->handler = ngx_http_twirt_twiml_action_cleanup;
    cln->data = ctx;

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_http_twirt_twiml_action_read(void *data, ngx_int_t rc, ngx_array_t *pairs)
{
    ngx_http_request_t *r = data;

    ngx_str_t                        *v, *timeout;
    ngx_int_t                         n;
    ngx_uint_t                        i, j;
    ngx_keyval_t                     *kv;
    ngx_connection_t                 *c;
    ngx_http_twirt_twiml_ctx_t       *ctx;
    ngx_http_twirt_action_outcome_t  *o;

    static struct {
        ngx_str_t   name;
        size_t      offset;
    } fields[] = {
        { ngx_string("transfer_target"),
          offsetof(ngx_http_twirt_transfer_t, name) },
        { ngx_string("transfer_number"),
          offsetof(ngx_http_twirt_transfer_t, target) },
        { ngx_string("transfer_caller_id"),
          offsetof(ngx_http_twirt_transfer_t, caller_id) },
        { ngx_string("transfer_summary"),
          offsetof(ngx_http_twirt_transfer_t, summary) },
        { ngx_string("stream_sid"),
          offsetof(ngx_http_twirt_transfer_t, stream_sid) },
        { ngx_null_string, 0 }
    };

    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);
    ctx->redis = NULL;
    o = ctx->outcome;

    timeout = NULL;

    if (rc == NGX_OK) {
        kv = pairs->elts;

        for (i = 0; i < pairs->nelts; i++) {
            v = NULL;

            if (kv[i].key.len == 6
                && ngx_strncmp(kv[i].key.data, "status", 6) == 0)
            {
                v = &o->status_value;
                o->status = v;

            } else if (kv[i].key.len == 10
                       && ngx_strncmp(kv[i].key.data, "end_reason", 10) == 0)
            {
                v = &o->reason_value;
                o->reason = v;

            } else if (kv[i].key.len == 16
                       && ngx_strncmp(kv[i].key.data, "transfer_timeout",
                                      16) == 0)
            {
                timeout = &kv[i].value;
                continue;

            } else {
                for (j = 0; fields[j].name.len; j++) {
                    if (kv[i].key.len == fields[j].name.len
                        && ngx_strncmp(kv[i].key.data, fields[j].name.data,
                                       kv[i].key.len) == 0)
                    {
                        v = (ngx_str_t *) ((u_char *) &o->transfer
                                           + fields[j].offset);
                        break;
                    }
                }
            }

            if (v == NULL) {
                continue;
            }

            /* the reply's strings live only during this call */
            v->data = ngx_pstrdup(r->pool, &kv[i].value);
            v->len = v->data ? kv[i].value.len : 0;
        }

        if (timeout) {
            n = ngx_atoi(timeout->data, timeout->len);
            o->transfer.timeout = (n == NGX_ERROR) ? 0 : (ngx_uint_t) n;
        }
    }

    if (o->status == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "twirt: no call record for CallSid \"%V\"%s",
                      &o->call_sid,
                      rc == NGX_OK ? "" : " (Redis did not answer)");

    } else {
        o->source = "the call record";
    }

    c = r->connection;

    rc = ngx_http_twirt_twiml_action_answer(r, o);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_twirt_twiml_action_answer(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o)
{
    ngx_int_t                    rc;
    ngx_uint_t                   fallback, transfer;
    ngx_http_twirt_twiml_t       t;
    ngx_http_twirt_loc_conf_t   *tlcf;
    ngx_http_twirt_log_text_t    lt, ls, lr;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    t.request = r;
    t.len = 0;

    if (ngx_array_init(&t.parts, r->pool, 16, sizeof(ngx_str_t)) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* a transfer is known only from a valid end with its target */
    transfer = o->transfer.target.len && o->transfer.name.len
               && o->reason && o->reason->len == sizeof("transfer") - 1
               && ngx_strncmp(o->reason->data, "transfer",
                              sizeof("transfer") - 1) == 0;

    if (!transfer) {
        o->transfer.target.len = 0;
    }

    if (o->step != NGX_HTTP_TWIRT_ACTION_STREAM) {
        rc = ngx_http_twirt_twiml_action_transfer(r, o, &t);
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_http_twirt_twiml_send(r, &t);
    }

    /* unknown or failed: the caller hears the fallback, if there is one */
    fallback = (o->status == NULL
                || (o->status->len == 6
                    && ngx_strncmp(o->status->data, "failed", 6) == 0))
               && (tlcf->fallback_say || tlcf->fallback_dial);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "twirt: stream of CallSid \"%V\" ended (%V, %V): %s, "
                  "known from %s",
                  ngx_http_twirt_log_str(&lt, &o->call_sid),
                  o->status ? ngx_http_twirt_log_str(&ls, o->status)
                            : &ngx_http_twirt_unknown,
                  o->reason ? ngx_http_twirt_log_str(&lr, o->reason)
                            : &ngx_http_twirt_unknown,
                  transfer ? "transfer" : fallback ? "fallback" : "hang up",
                  o->source);

    if (ngx_http_twirt_twiml_raw(&t, "<?xml version=\"1.0\" "
                                 "encoding=\"UTF-8\"?>\n<Response>")
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (transfer) {
        rc = ngx_http_twirt_twiml_action_transfer(r, o, &t);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if ((fallback ? ngx_http_twirt_twiml_fallback(&t, tlcf)
                         : ngx_http_twirt_twiml_raw(&t, "<Hangup/>"))
               != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_twirt_twiml_raw(&t, "</Response>\n") != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_twirt_twiml_send(r, &t);
}


/*
 * The transfer's TwiML.  After the stream: <Dial> of the target, whose
 * end comes back as ?twirt=dialed, with the whisper at ?twirt=whisper.
 * The whisper: the summary, said to the person who answered.  The dial's
 * end: hang up when they talked; otherwise the caller comes back to the
 * agent (with Redis, which keeps the conversation), or the fallback.
 */

static ngx_int_t
ngx_http_twirt_twiml_action_transfer(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, ngx_http_twirt_twiml_t *t)
{
    u_char                     *p;
    ngx_str_t                   url, timeout;
    ngx_http_twirt_say_t       *say;
    ngx_http_twirt_loc_conf_t  *tlcf;
    ngx_http_twirt_log_text_t   lt;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    if (o->step == NGX_HTTP_TWIRT_ACTION_DIALED) {
        return ngx_http_twirt_twiml_action_dialed(r, o, t);
    }

    if (o->step == NGX_HTTP_TWIRT_ACTION_WHISPER) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: whisper for the transfer of CallSid \"%V\"%s",
                      ngx_http_twirt_log_str(&lt, &o->call_sid),
                      o->transfer.target.len ? "" : ": no transfer known");

        say = tlcf->fallback_say ? tlcf->fallback_say : tlcf->say;

        if (ngx_http_twirt_twiml_raw(t, "<?xml version=\"1.0\" "
                                     "encoding=\"UTF-8\"?>\n<Response>")
            != NGX_OK
            || (o->transfer.target.len && o->transfer.summary.len
                && (ngx_http_twirt_twiml_raw(t, "<Say") != NGX_OK
                    || (say && say->language.len
                        && ngx_http_twirt_twiml_attr(t, "language",
                                                     &say->language)
                           != NGX_OK)
                    || (say && say->voice.len
                        && ngx_http_twirt_twiml_attr(t, "voice", &say->voice)
                           != NGX_OK)
                    || ngx_http_twirt_twiml_raw(t, ">") != NGX_OK
                    || ngx_http_twirt_twiml_text(t, &o->transfer.summary)
                       != NGX_OK
                    || ngx_http_twirt_twiml_raw(t, "</Say>") != NGX_OK))
            || ngx_http_twirt_twiml_raw(t, "</Response>\n") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;
    }

    /* <Dial callerId timeout action><Number url>+81...</Number></Dial> */

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    timeout.data = p;
    timeout.len = ngx_sprintf(p, "%ui", o->transfer.timeout
                                        ? o->transfer.timeout
                                        : NGX_HTTP_TWIRT_TRANSFER_TIMEOUT)
                  - p;

    if (ngx_http_twirt_twiml_action_url(r, o, "dialed", &url) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "<Dial") != NGX_OK
        || (o->transfer.caller_id.len
            && ngx_http_twirt_twiml_attr(t, "callerId", &o->transfer.caller_id)
               != NGX_OK)
        || ngx_http_twirt_twiml_attr(t, "timeout", &timeout) != NGX_OK
        || ngx_http_twirt_twiml_attr(t, "action", &url) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, " method=\"POST\">") != NGX_OK
        || ngx_http_twirt_twiml_action_url(r, o, "whisper", &url) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (o->transfer.target.len > 4
        && ngx_strncmp(o->transfer.target.data, "sip:", 4) == 0)
    {
        if (ngx_http_twirt_twiml_raw(t, "<Sip") != NGX_OK
            || ngx_http_twirt_twiml_attr(t, "url", &url) != NGX_OK
            || ngx_http_twirt_twiml_raw(t, " method=\"POST\">") != NGX_OK
            || ngx_http_twirt_twiml_text(t, &o->transfer.target) != NGX_OK
            || ngx_http_twirt_twiml_raw(t, "</Sip></Dial>") != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return NGX_OK;
    }

    if (ngx_http_twirt_twiml_raw(t, "<Number") != NGX_OK
        || ngx_http_twirt_twiml_attr(t, "url", &url) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, " method=\"POST\">") != NGX_OK
        || ngx_http_twirt_twiml_text(t, &o->transfer.target) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "</Number></Dial>") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_twiml_action_dialed(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, ngx_http_twirt_twiml_t *t)
{
    ngx_str_t                          status, none = ngx_string("-");
    ngx_uint_t                         back;
    ngx_keyval_t                       extra[2];
    ngx_http_twirt_pair_t             *pair;
    ngx_http_twirt_record_t            rec;
    ngx_http_twirt_loc_conf_t         *tlcf;
    ngx_http_twirt_twiml_ctx_t        *ctx;
    ngx_http_twirt_log_text_t          lt, ls;
    ngx_http_twirt_transfer_result_e   result;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);
    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    pair = ngx_http_twirt_form_find(ctx->pairs, (u_char *) "DialCallStatus",
                                    sizeof("DialCallStatus") - 1, 0);

    status = pair ? pair->value : none;
    result = ngx_http_twirt_transfer_dialed(&status);

    if (result == NGX_HTTP_TWIRT_TRANSFER_LAST) {
        /* an unknown status: as if nobody answered */
        result = NGX_HTTP_TWIRT_TRANSFER_FAILED;
    }

    ngx_http_twirt_metrics_transfer(result);

    back = (result != NGX_HTTP_TWIRT_TRANSFER_ANSWERED);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "twirt: the transfer of CallSid \"%V\" to \"%V\" ended: "
                  "%V, %s, known from %s",
                  ngx_http_twirt_log_str(&lt, &o->call_sid),
                  o->transfer.target.len ? &o->transfer.name
                                         : &ngx_http_twirt_unknown,
                  ngx_http_twirt_log_str(&ls, &status),
                  !back ? "hang up"
                  : ngx_http_twirt_redis_configured() && o->transfer.target.len
                  ? "back to the agent"
                  : (tlcf->fallback_say || tlcf->fallback_dial)
                  ? "fallback" : "hang up",
                  o->source);

    if (o->transfer.target.len) {
        ngx_memzero(&rec, sizeof(ngx_http_twirt_record_t));
        rec.pool = r->pool;
        rec.log = r->connection->log;
        rec.call_sid = o->call_sid;
        rec.stream_sid = o->transfer.stream_sid;

        ngx_http_twirt_record_transfer_result(&rec, &status,
            back && ngx_http_twirt_redis_configured());
    }

    if (back && ngx_http_twirt_redis_configured() && o->transfer.target.len) {
        /* the stream again: the agent goes on with the conversation */

        ngx_str_set(&extra[0].key, "twirt_transfer");
        extra[0].value = (pair && pair->value.len <= 32) ? pair->value : none;
        ngx_str_set(&extra[1].key, "twirt_transfer_target");
        extra[1].value = o->transfer.name;

        return ngx_http_twirt_twiml_build(r, tlcf, t, extra, 2);
    }

    if (ngx_http_twirt_twiml_raw(t, "<?xml version=\"1.0\" "
                                 "encoding=\"UTF-8\"?>\n<Response>")
        != NGX_OK
        || ((back && (tlcf->fallback_say || tlcf->fallback_dial))
            ? ngx_http_twirt_twiml_fallback(t, tlcf)
            : ngx_http_twirt_twiml_raw(t, "<Hangup/>"))
           != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "</Response>\n") != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


/* this location's public URL, ?twirt=STEP&call=CallSid */

static ngx_int_t
ngx_http_twirt_twiml_action_url(ngx_http_request_t *r,
    ngx_http_twirt_action_outcome_t *o, const char *step, ngx_str_t *url)
{
    u_char     *p;
    ngx_str_t   base;

    if (ngx_http_twirt_public_url(r, &base) != NGX_OK) {
        return NGX_ERROR;
    }

    url->len = base.len + sizeof("?twirt=&call=") - 1 + ngx_strlen(step)
               + o->call_sid.len;

    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    /* the CallSid was checked: letters and digits only */
    p = ngx_cpymem(url->data, base.data, base.len);
    p = ngx_sprintf(p, "?twirt=%s&call=%V", step, &o->call_sid);

    url->len = p - url->data;

    return NGX_OK;
}


static void
ngx_http_twirt_twiml_action_cleanup(void *data)
{
    ngx_http_twirt_twiml_ctx_t  *ctx = data;

    if (ctx->redis) {
        ngx_http_twirt_redis_cancel(ctx->redis);
        ctx->redis = NULL;
    }
}


/*
 * stream-started, stream-stopped, stream-error (with StreamError): a call
 * event, logged as JSON (untrusted text escaped: no raw CR, LF or NUL)
 * and, with Redis, an entry of the call's events stream.  The CallSid was
 * required and the signature checked; it must be a SID to make a key.
 */

static ngx_int_t
ngx_http_twirt_stream_status(ngx_http_request_t *r,
    ngx_http_twirt_twiml_ctx_t *ctx)
{
    char                     *text;
    json_t                   *ev, *v;
    ngx_uint_t                i, level;
    ngx_http_twirt_record_t   rec;
    ngx_http_twirt_pair_t    *event, *stream_sid;

    typedef struct {
        const char  *param;
        const char  *field;
    } field_t;

    static field_t  stream_fields[] = {
        { "StreamSid", "stream_sid" },
        { "StreamName", "stream_name" },
        { "StreamError", "error" },
        { "Timestamp", "timestamp" },
        { "AccountSid", "account_sid" },
        { NULL, NULL }
    };

    /* an outbound call's progress (its StatusCallback) */
    static field_t  call_fields[] = {
        { "To", "to" },
        { "From", "from" },
        { "Direction", "direction" },
        { "AnsweredBy", "answered_by" },
        { "CallDuration", "duration" },
        { "SipResponseCode", "sip_response_code" },
        { "SequenceNumber", "sequence" },
        { "Timestamp", "timestamp" },
        { "AccountSid", "account_sid" },
        { NULL, NULL }
    };

    field_t  *fields;
    ngx_str_t  amd;

    /* a campaign's call: its row learns how it goes */

    if (ctx->call_status
        && ngx_http_twirt_campaign_callback(r, ctx->pairs) == NGX_OK
        && ngx_http_arg(r, (u_char *) "amd", 3, &amd) == NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: a campaign call's answering machine "
                      "detection");
        return NGX_HTTP_NO_CONTENT;
    }

    fields = ctx->call_status ? call_fields : stream_fields;

    event = ngx_http_twirt_form_find(ctx->pairs,
                                     (u_char *) (ctx->call_status
                                                 ? "CallStatus"
                                                 : "StreamEvent"),
                                     ctx->call_status
                                     ? sizeof("CallStatus") - 1
                                     : sizeof("StreamEvent") - 1, 0);
    stream_sid = ngx_http_twirt_form_find(ctx->pairs, (u_char *) "StreamSid",
                                          sizeof("StreamSid") - 1, 0);

    if (event == NULL || event->value.len == 0
        || ngx_http_twirt_sid_valid(ngx_http_twirt_twiml_call_sid(ctx))
           != NGX_OK
        || (stream_sid && ngx_http_twirt_sid_valid(&stream_sid->value)
                          != NGX_OK))
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "twirt: %s status callback without a %s "
                      "or with an invalid CallSid or StreamSid",
                      ctx->call_status ? "call" : "stream",
                      ctx->call_status ? "CallStatus" : "StreamEvent");
        return NGX_HTTP_BAD_REQUEST;
    }

    ev = json_object();
    if (ev == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    json_object_set_new(ev, "type",
                        json_string(ctx->call_status ? "call" : "stream"));
    json_object_set_new(ev, "call_sid",
                        ngx_http_twirt_stream_status_field(ctx->pairs,
                                                           "CallSid"));
    json_object_set_new(ev, "event",
                        ngx_http_twirt_stream_status_field(ctx->pairs,
                            ctx->call_status ? "CallStatus"
                                             : "StreamEvent"));

    for (i = 0; fields[i].param; i++) {
        v = ngx_http_twirt_stream_status_field(ctx->pairs, fields[i].param);

        if (v) {
            json_object_set_new(ev, fields[i].field, v);
        }
    }

    text = json_dumps(ev, JSON_COMPACT|JSON_SORT_KEYS);

    if (text == NULL) {
        json_decref(ev);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    level = (event->value.len == sizeof("stream-error") - 1
             && ngx_strncmp(event->value.data, "stream-error",
                            sizeof("stream-error") - 1) == 0)
            || (event->value.len == sizeof("failed") - 1
                && ngx_strncmp(event->value.data, "failed",
                               sizeof("failed") - 1) == 0)
            ? NGX_LOG_WARN : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0, "twirt: event %s", text);

    ngx_memzero(&rec, sizeof(ngx_http_twirt_record_t));
    rec.pool = r->pool;
    rec.log = r->connection->log;
    rec.call_sid = *ngx_http_twirt_twiml_call_sid(ctx);

    /* the record takes the event only from the call's own stream */
    if (stream_sid) {
        rec.stream_sid = stream_sid->value;
    }

    rec.call_level = ctx->call_status;

    ngx_http_twirt_record_event(&rec, ev, text);
    ngx_http_twirt_record_expire(&rec);

    free(text);
    json_decref(ev);

    return NGX_HTTP_NO_CONTENT;
}


/* a parameter as a JSON string; not UTF-8: its bytes made so, escaped */

static json_t *
ngx_http_twirt_stream_status_field(ngx_array_t *pairs, const char *name)
{
    u_char                 *p;
    size_t                  size;
    json_t                 *v;
    ngx_http_twirt_pair_t  *pair;

    pair = ngx_http_twirt_form_find(pairs, (u_char *) name, ngx_strlen(name),
                                    0);
    if (pair == NULL) {
        return NULL;
    }

    v = json_stringn((char *) pair->value.data, pair->value.len);
    if (v) {
        return v;
    }

    /* invalid UTF-8: replaced as in TwiML, then it is valid */

    ngx_http_twirt_xml_escape(NULL, pair->value.data, pair->value.len, &size,
                              0);

    p = ngx_alloc(size, ngx_cycle->log);
    if (p == NULL) {
        return NULL;
    }

    ngx_http_twirt_xml_escape(p, pair->value.data, pair->value.len, &size, 0);

    v = json_stringn((char *) p, size);
    ngx_free(p);

    return v;
}


static ngx_int_t
ngx_http_twirt_twiml_say(ngx_http_twirt_twiml_t *t, ngx_http_twirt_say_t *say)
{
    ngx_str_t  text;

    if (ngx_http_complex_value(t->request, &say->text, &text) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_http_twirt_twiml_raw(t, "<Say") != NGX_OK
        || (say->language.len
            && ngx_http_twirt_twiml_attr(t, "language", &say->language)
               != NGX_OK)
        || (say->voice.len
            && ngx_http_twirt_twiml_attr(t, "voice", &say->voice) != NGX_OK)
        || ngx_http_twirt_twiml_raw(t, ">") != NGX_OK
        || ngx_http_twirt_twiml_text(t, &text) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "</Say>") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* twirt_stream_url, or wss:// on the Host of the request, /twilio/media */

static ngx_int_t
ngx_http_twirt_twiml_stream_url(ngx_http_request_t *r,
    ngx_http_twirt_loc_conf_t *tlcf, ngx_str_t *url)
{
    u_char     *p;
    ngx_str_t  *host;

    if (tlcf->stream_url) {
        return ngx_http_complex_value(r, tlcf->stream_url, url);
    }

    host = ngx_http_twirt_twiml_host(r);

    url->len = sizeof("wss://") - 1 + host->len
               + sizeof("/twilio/media") - 1;

    url->data = ngx_pnalloc(r->pool, url->len);
    if (url->data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(url->data, "wss://", sizeof("wss://") - 1);
    p = ngx_cpymem(p, host->data, host->len);
    ngx_memcpy(p, "/twilio/media", sizeof("/twilio/media") - 1);

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_twiml_send(ngx_http_request_t *r, ngx_http_twirt_twiml_t *t)
{
    u_char      *p, *data;
    ngx_str_t   *part;
    ngx_uint_t   i;

    data = ngx_pnalloc(r->pool, t->len);
    if (data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = data;
    part = t->parts.elts;

    for (i = 0; i < t->parts.nelts; i++) {
        p = ngx_cpymem(p, part[i].data, part[i].len);
    }

    return ngx_http_twirt_send(r, NGX_HTTP_OK, "text/xml", data, p - data);
}


/*
 * An answer of twirt's own, whole: data stays the caller's (the pool's)
 * until sent.  type NULL: the caller set it.
 */

/*
 * An API location's path after its prefix, split at '/' into at most max
 * segments; NGX_DECLINED: more than max.
 */

ngx_int_t
ngx_http_twirt_api_path(ngx_http_request_t *r, u_char **seg, size_t *len,
    ngx_uint_t max, ngx_uint_t *n)
{
    u_char                    *p, *end;
    ngx_str_t                  tail;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    tail = r->uri;

    if (!clcf->exact_match && !clcf->regex && tail.len >= clcf->name.len
        && ngx_strncmp(tail.data, clcf->name.data, clcf->name.len) == 0)
    {
        tail.data += clcf->name.len;
        tail.len -= clcf->name.len;
    }

    if (tail.len && tail.data[0] == '/') {
        tail.data++;
        tail.len--;
    }

    ngx_memzero(seg, max * sizeof(u_char *));
    ngx_memzero(len, max * sizeof(size_t));

    p = tail.data;
    end = tail.data + tail.len;
    *n = 0;

    while (p < end) {
        if (*n == max) {
            return NGX_DECLINED;
        }

        seg[*n] = p;

        while (p < end && *p != '/') {
            p++;
        }

        len[*n] = p - seg[*n];
        (*n)++;

        if (p < end) {
            p++;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_twirt_send(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *data, size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = data;
    b->last = data + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (type) {
        r->headers_out.content_type.data = (u_char *) type;
        r->headers_out.content_type.len = ngx_strlen(type);
        r->headers_out.content_type_len = r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* a JSON answer, a line; json is taken (NULL: out of memory) */

ngx_int_t
ngx_http_twirt_send_json(ngx_http_request_t *r, ngx_uint_t status,
    json_t *json)
{
    char    *text;
    u_char  *p;
    size_t   len;

    text = json ? json_dumps(json, JSON_COMPACT|JSON_SORT_KEYS) : NULL;
    json_decref(json);

    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(text);

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        free(text);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(p, text, len);
    p[len] = LF;
    free(text);

    return ngx_http_twirt_send(r, status, "application/json", p, len + 1);
}


static ngx_int_t
ngx_http_twirt_twiml_raw(ngx_http_twirt_twiml_t *t, const char *s)
{
    ngx_str_t  *part;

    part = ngx_array_push(&t->parts);
    if (part == NULL) {
        return NGX_ERROR;
    }

    part->data = (u_char *) s;
    part->len = ngx_strlen(s);
    t->len += part->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_twiml_text(ngx_http_twirt_twiml_t *t, ngx_str_t *s)
{
    return ngx_http_twirt_escaped(t, s, 0);
}


static ngx_int_t
ngx_http_twirt_escaped(ngx_http_twirt_twiml_t *t, ngx_str_t *s,
    ngx_uint_t attr)
{
    size_t      size;
    ngx_str_t  *part;

    part = ngx_array_push(&t->parts);
    if (part == NULL) {
        return NGX_ERROR;
    }

    ngx_http_twirt_xml_escape(NULL, s->data, s->len, &size, attr);

    part->data = ngx_pnalloc(t->request->pool, size);
    if (part->data == NULL) {
        return NGX_ERROR;
    }

    ngx_http_twirt_xml_escape(part->data, s->data, s->len, &part->len, attr);
    t->len += part->len;

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_twiml_attr(ngx_http_twirt_twiml_t *t, const char *name,
    ngx_str_t *value)
{
    if (ngx_http_twirt_twiml_raw(t, " ") != NGX_OK
        || ngx_http_twirt_twiml_raw(t, name) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "=\"") != NGX_OK
        || ngx_http_twirt_escaped(t, value, 1) != NGX_OK
        || ngx_http_twirt_twiml_raw(t, "\"") != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static ngx_str_t *
ngx_http_twirt_twiml_call_sid(ngx_http_twirt_twiml_ctx_t *ctx)
{
    ngx_http_twirt_pair_t  *pair;

    pair = ngx_http_twirt_form_find(ctx->pairs, (u_char *) "CallSid",
                                    sizeof("CallSid") - 1, 0);

    return (pair && pair->value.len) ? &pair->value : NULL;
}


/*
 * $twirt_call_sid, $twirt_stream_sid, $twirt_end_reason,
 * $twirt_duration_ms, $twirt_tokens, $twirt_cost_usd: for access logs, of
 * the webhook (the CallSid) and of a finished stream (its summary)
 */

ngx_int_t
ngx_http_twirt_call_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    u_char                       *p;
    ngx_str_t                     s, *sid;
    ngx_http_twirt_twiml_ctx_t   *wctx;
    ngx_http_twirt_stream_ctx_t  *sctx;

    wctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);
    sctx = (ngx_http_twirt_stream_ctx_t *) wctx;

    ngx_str_null(&s);

    if (wctx && wctx->kind == NGX_HTTP_TWIRT_CTX_WEBHOOK) {
        sid = wctx->done ? ngx_http_twirt_twiml_call_sid(wctx) : NULL;

        if (data == 0 && sid) {
            s = *sid;
        }

    } else if (sctx && sctx->kind == NGX_HTTP_TWIRT_CTX_STREAM) {

        switch (data) {
        case 0:
            s = sctx->call_sid;
            break;
        case 1:
            s = sctx->stream_sid;
            break;
        case 2:
            s = sctx->end_reason;
            break;
        default:
            if (!sctx->ended) {
                break;
            }

            p = ngx_pnalloc(r->pool, NGX_INT64_LEN + 8);
            if (p == NULL) {
                return NGX_ERROR;
            }

            s.data = p;
            s.len = (data == 3 ? ngx_sprintf(p, "%M", sctx->duration)
                     : data == 4 ? ngx_sprintf(p, "%uL", sctx->tokens)
                     : ngx_sprintf(p, "%.6f", sctx->cost))
                    - p;
        }
    }

    if (s.len == 0) {
        v->not_found = 1;
        v->no_cacheable = 1;
        return NGX_OK;
    }

    v->data = s.data;
    v->len = s.len;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


/* the Host header as sent, with its port: the host Twilio requested */

static ngx_str_t *
ngx_http_twirt_twiml_host(ngx_http_request_t *r)
{
    if (r->headers_in.host) {
        return &r->headers_in.host->value;
    }

    return &r->headers_in.server;
}


/* $twirt_param_NAME: a parameter of Twilio's request, case-insensitive */

ngx_int_t
ngx_http_twirt_param_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_str_t                   *name;
    ngx_http_twirt_pair_t       *pair;
    ngx_http_twirt_twiml_ctx_t  *ctx;

    name = (ngx_str_t *) data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_twirt_module);

    if (ctx == NULL || ctx->kind != NGX_HTTP_TWIRT_CTX_WEBHOOK || !ctx->done)
    {
        v->not_found = 1;
        v->no_cacheable = 1;
        return NGX_OK;
    }

    pair = ngx_http_twirt_form_find(ctx->pairs,
                                    name->data + sizeof("twirt_param_") - 1,
                                    name->len - (sizeof("twirt_param_") - 1),
                                    1);
    if (pair == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = pair->value.data;
    v->len = pair->value.len;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    return NGX_OK;
}
