
/*
 * Outbound calls: the twirt_calls location takes a JSON request, checks
 * and normalises it, and places the call through Twilio's REST API
 * (POST /2010-04-01/Accounts/{AccountSid}/Calls.json) with the HTTP
 * client.  The call's Url is twirt's own voice webhook, carrying the
 * agent and the variables in its query string, which Twilio signs: the
 * twirt_twiml location turns them into <Parameter>s.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_http.h"
#include "ngx_http_twirt_phone.h"
#include "ngx_http_twirt_escape.h"
#include "ngx_http_twirt_twiml.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_outbound.h"


typedef struct {
    ngx_http_request_t         *request;
    ngx_http_twirt_http_t      *http;       /* NULL once answered */
    ngx_str_t                   to;
} ngx_http_twirt_outbound_ctx_t;


static void ngx_http_twirt_outbound_body(ngx_http_request_t *r);
static ngx_int_t ngx_http_twirt_outbound_place(ngx_http_request_t *r,
    ngx_str_t *body);
static ngx_int_t ngx_http_twirt_outbound_number(ngx_http_request_t *r,
    json_t *req, const char *field, ngx_str_t *number, ngx_int_t *rc);
static ngx_int_t ngx_http_twirt_outbound_url(ngx_http_request_t *r,
    json_t *req, ngx_str_t *url, ngx_int_t *rc);
static void ngx_http_twirt_outbound_done(ngx_http_twirt_http_t *h);
static void ngx_http_twirt_outbound_cleanup(void *data);
static ngx_int_t ngx_http_twirt_outbound_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *kind, const char *fmt, ...);
static size_t ngx_http_twirt_form_escape(u_char *dst, u_char *src,
    size_t len);
static void ngx_http_twirt_outbound_env(ngx_str_t *value, const char *name);


/* Twilio's codes, by what they mean for the API's user */
static struct {
    ngx_uint_t   code;
    const char  *kind;
    const char  *words;
} ngx_http_twirt_twilio_codes[] = {
    { 21211, "invalid_number", "Twilio refused the number to call" },
    { 21214, "invalid_number", "Twilio refused the number to call" },
    { 21217, "invalid_number", "Twilio refused the number to call" },
    { 21210, "invalid_from", "Twilio refused the caller ID" },
    { 21212, "invalid_from", "Twilio refused the caller ID" },
    { 21215, "not_permitted", "the Twilio account may not call this "
                              "number" },
    { 21216, "not_permitted", "the Twilio account may not call this "
                              "number" },
    { 0, NULL, NULL }
};


ngx_int_t
ngx_http_twirt_calls_handler(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_http_twirt_loc_conf_t  *tlcf;

    if (r->method != NGX_HTTP_POST) {
        return ngx_http_twirt_outbound_error(r, NGX_HTTP_NOT_ALLOWED,
                                             "method", "POST a JSON call");
    }

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    if (r->headers_in.content_length_n > (off_t) tlcf->max_body_size) {
        return ngx_http_twirt_outbound_error(r,
                                     NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                     "too_large", "the body is larger than "
                                     "%uz bytes", tlcf->max_body_size);
    }

    rc = ngx_http_read_client_request_body(r, ngx_http_twirt_outbound_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_twirt_outbound_body(ngx_http_request_t *r)
{
    ngx_int_t                   rc;
    ngx_str_t                   body;
    ngx_http_twirt_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    rc = ngx_http_twirt_read_body(r, tlcf->max_body_size, &body);

    if (rc == NGX_OK) {
        rc = ngx_http_twirt_outbound_place(r, &body);
    }

    if (rc == NGX_DONE) {
        /* the request stays until Twilio answers */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


/* checks the call, then asks Twilio: NGX_DONE, or the answer's rc */

static ngx_int_t
ngx_http_twirt_outbound_place(ngx_http_request_t *r, ngx_str_t *body)
{
    json_t                         *req, *v;
    ngx_int_t                       rc, timeout;
    ngx_str_t                       to, from, url, form, amd;
    json_error_t                    err;
    ngx_pool_cleanup_t             *cln;
    ngx_http_twirt_http_t          *h;
    ngx_http_twirt_place_t          place;
    ngx_http_twirt_loc_conf_t      *tlcf;
    ngx_http_twirt_outbound_ctx_t  *ctx;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    req = json_loadb((char *) body->data, body->len, JSON_REJECT_DUPLICATES,
                     &err);

    if (req == NULL || !json_is_object(req)) {
        json_decref(req);
        return ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                             "invalid_json",
                                             "the body must be a JSON "
                                             "object");
    }

    if (ngx_http_twirt_outbound_number(r, req, "to", &to, &rc) != NGX_OK
        || ngx_http_twirt_outbound_number(r, req, "from", &from, &rc)
           != NGX_OK)
    {
        json_decref(req);
        return rc;
    }

    timeout = 0;
    v = json_object_get(req, "timeout");

    if (v) {
        if (!json_is_integer(v) || json_integer_value(v) < 5
            || json_integer_value(v) > 600)
        {
            json_decref(req);
            return ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_request",
                                                 "\"timeout\" must be the "
                                                 "seconds of ringing, 5 to "
                                                 "600");
        }

        timeout = (ngx_int_t) json_integer_value(v);
    }

    ngx_str_null(&amd);
    v = json_object_get(req, "machine_detection");

    if (v) {
        if (!json_is_string(v)
            || (ngx_strcmp(json_string_value(v), "Enable") != 0
                && ngx_strcmp(json_string_value(v), "DetectMessageEnd") != 0))
        {
            json_decref(req);
            return ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                                 "invalid_request",
                                                 "\"machine_detection\" "
                                                 "must be \"Enable\" or "
                                                 "\"DetectMessageEnd\"");
        }

        amd.data = (u_char *) json_string_value(v);
        amd.len = json_string_length(v);
    }

    if (ngx_http_twirt_outbound_url(r, req, &url, &rc) != NGX_OK) {
        json_decref(req);
        return rc;
    }

    ngx_memzero(&place, sizeof(ngx_http_twirt_place_t));
    place.to = to;
    place.from = from;
    place.url = url;
    place.status_callback = tlcf->outbound_status_callback;
    place.timeout = timeout;
    place.amd = amd;

    rc = ngx_http_twirt_outbound_form(r->pool, &place, &form);

    json_decref(req);

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* Twilio's REST API */

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_twirt_outbound_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->request = r;
    ctx->to = to;

    h = ngx_http_twirt_twilio_request(tlcf,
                                      ngx_http_get_module_loc_conf(r,
                                                      ngx_http_core_module),
                                      r->connection->log, "POST",
                                      &tlcf->twilio_calls_uri, &form);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->log->action = "placing a call through Twilio's REST API";
    h->data = ctx;
    h->handler = ngx_http_twirt_outbound_done;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_http_twirt_http_cancel(h);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_twirt_outbound_cleanup;
    cln->data = ctx;

    ctx->http = h;

    /* a client that goes away cancels the request to Twilio */
    r->read_event_handler = ngx_http_test_reading;

    if (ngx_http_twirt_http_start(h) != NGX_OK) {
        ngx_http_twirt_http_cancel(h);
        ctx->http = NULL;
        return ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_GATEWAY,
                                             "twilio_connect",
                                             "could not start a request to "
                                             "the Twilio API");
    }

    return NGX_DONE;
}


/*
 * A number of the request, in E.164.  NGX_ERROR: *rc is how the request
 * was answered (or is to be finalized).
 */

static ngx_int_t
ngx_http_twirt_outbound_number(ngx_http_request_t *r, json_t *req,
    const char *field, ngx_str_t *number, ngx_int_t *rc)
{
    u_char      *p;
    json_t      *v;
    const char  *error;

    v = json_object_get(req, field);

    if (v == NULL || !json_is_string(v)) {
        *rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_request",
                                           "\"%s\" must be a phone number "
                                           "as a string", field);
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_HTTP_TWIRT_E164_LEN);
    if (p == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    error = ngx_http_twirt_phone_e164((u_char *) json_string_value(v),
                                      json_string_length(v), p,
                                      &number->len);
    if (error) {
        *rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                           "invalid_number",
                                           "\"%s\": %s", field, error);
        return NGX_ERROR;
    }

    number->data = p;

    return NGX_OK;
}


/*
 * The call's Url: twirt_outbound_url and, in its query, "agent" and each
 * variable as "var.NAME".  Bounded as Twilio bounds a <Parameter>: name
 * and value under 500 characters; at most 16 variables.
 */

static ngx_int_t
ngx_http_twirt_outbound_url(ngx_http_request_t *r, json_t *req,
    ngx_str_t *url, ngx_int_t *rc)
{
    u_char                     *p, sep;
    size_t                      len;
    char                        text[256];
    json_t                     *agent, *vars, *v;
    ngx_str_t                   name;
    const char                 *key;
    ngx_http_twirt_loc_conf_t  *tlcf;

    tlcf = ngx_http_get_module_loc_conf(r, ngx_http_twirt_module);

    agent = json_object_get(req, "agent");

    if (agent) {
        name.data = (u_char *) json_string_value(agent);
        name.len = json_string_length(agent);

        if (!json_is_string(agent) || name.len == 0 || name.len > 64
            || ngx_http_twirt_sid_valid(&name) != NGX_OK)
        {
            *rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                                "invalid_request",
                                                "\"agent\" must be a name "
                                                "of letters, digits, '_' "
                                                "and '-', at most 64");
            return NGX_ERROR;
        }
    }

    vars = json_object_get(req, "variables");

    if (vars && ngx_http_twirt_outbound_vars(vars, text, sizeof(text))
                != NGX_OK)
    {
        *rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_REQUEST,
                                            "invalid_request", "%s", text);
        return NGX_ERROR;
    }

    len = tlcf->outbound_url.len + sizeof("?agent=") - 1 + 64;

    json_object_foreach(vars, key, v) {
        len += sizeof("&var.=") - 1 + ngx_strlen(key)
               + 3 * json_string_length(v);
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        *rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
        return NGX_ERROR;
    }

    url->data = p;
    p = ngx_cpymem(p, tlcf->outbound_url.data, tlcf->outbound_url.len);
    sep = ngx_strlchr(url->data, p, '?') ? '&' : '?';

    if (agent) {
        *p++ = sep;
        p = ngx_http_twirt_form_add(p, "agent=",
                                    (u_char *) json_string_value(agent),
                                    json_string_length(agent));
        sep = '&';
    }

    json_object_foreach(vars, key, v) {
        *p++ = sep;
        p = ngx_cpymem(p, "var.", 4);
        p = ngx_cpymem(p, key, ngx_strlen(key));
        *p++ = '=';
        p += ngx_http_twirt_form_escape(p, (u_char *) json_string_value(v),
                                        json_string_length(v));
        sep = '&';
    }

    url->len = p - url->data;

    return NGX_OK;
}


/*
 * The variables of a call, each a <Parameter> of the stream: an object of
 * at most 16 strings, named with letters, digits and '_' (at most 64),
 * each under Twilio's bound with its name.  NGX_ERROR: the error's words
 * in error (NUL-terminated).
 */

ngx_int_t
ngx_http_twirt_outbound_vars(json_t *vars, char *error, size_t size)
{
    size_t       n;
    json_t      *v;
    ngx_str_t    name;
    const char  *key;

    if (!json_is_object(vars)
        || json_object_size(vars) > NGX_HTTP_TWIRT_OUTBOUND_VARS)
    {
        ngx_snprintf((u_char *) error, size, "\"variables\" must be an "
                     "object of at most %d strings%Z",
                     NGX_HTTP_TWIRT_OUTBOUND_VARS);
        return NGX_ERROR;
    }

    json_object_foreach(vars, key, v) {
        name.data = (u_char *) key;
        name.len = ngx_strlen(key);

        if (name.len == 0 || name.len > 64
            || ngx_http_twirt_sid_valid(&name) != NGX_OK
            || ngx_strchr(key, '-'))
        {
            ngx_snprintf((u_char *) error, size, "variable names are of "
                         "letters, digits and '_', at most 64%Z");
            return NGX_ERROR;
        }

        if (!json_is_string(v)) {
            ngx_snprintf((u_char *) error, size, "variable \"%s\" must be "
                         "a string%Z", key);
            return NGX_ERROR;
        }

        n = name.len + ngx_http_twirt_utf8_length(
                           (u_char *) json_string_value(v),
                           json_string_length(v));

        if (n >= NGX_HTTP_TWIRT_PARAM_MAX) {
            ngx_snprintf((u_char *) error, size, "variable \"%s\" is %uz "
                         "characters with its name, Twilio allows less "
                         "than %d%Z", key, n, NGX_HTTP_TWIRT_PARAM_MAX);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_http_twirt_outbound_done(ngx_http_twirt_http_t *h)
{
    ngx_http_twirt_outbound_ctx_t *ctx = h->data;

    json_t                          *sid, *status, *v;
    ngx_int_t                        rc;
    ngx_table_elt_t                 *header;
    ngx_http_request_t              *r;
    ngx_http_twirt_twilio_answer_t   a;

    r = ctx->request;
    ctx->http = NULL;

    ngx_http_twirt_twilio_answer(h, &a);

    switch (a.kind) {

    case NGX_HTTP_TWIRT_TWILIO_OK:
        break;

    case NGX_HTTP_TWIRT_TWILIO_TIMEOUT:
        rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_GATEWAY_TIME_OUT,
                                           a.name, "%s", a.words);
        goto done;

    case NGX_HTTP_TWIRT_TWILIO_RATE_LIMITED:
        header = ngx_list_push(&r->headers_out.headers);
        if (header == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        header->hash = 1;
        ngx_str_set(&header->key, "Retry-After");
        header->value.data = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
        if (header->value.data == NULL) {
            rc = NGX_HTTP_INTERNAL_SERVER_ERROR;
            goto done;
        }

        header->value.len = ngx_sprintf(header->value.data, "%ui",
                                        a.retry_after)
                            - header->value.data;

        rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                           a.name, "%s (%ui): retry later",
                                           a.words, a.code);
        goto done;

    case NGX_HTTP_TWIRT_TWILIO_INVALID:
    case NGX_HTTP_TWIRT_TWILIO_REFUSED:
        v = json_pack("{s:{s:s,s:i,s:s,s:s}}", "error",
                      "kind", a.name,
                      "code", (json_int_t) a.code,
                      "message", a.words,
                      "twilio_message", a.message);
        rc = ngx_http_twirt_send_json(r, NGX_HTTP_BAD_REQUEST, v);
        goto done;

    case NGX_HTTP_TWIRT_TWILIO_AUTH:
        rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_GATEWAY, a.name,
                                           "%s (%ui)", a.words, a.code);
        goto done;

    default:
        if (a.status) {
            rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_GATEWAY,
                                               a.name, "the Twilio API "
                                               "answered %ui (%ui)",
                                               a.status, a.code);
        } else {
            rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_GATEWAY,
                                               a.name, "the Twilio API "
                                               "failed: %s", a.words);
        }

        goto done;
    }

    sid = json_object_get(a.json, "sid");
    status = json_object_get(a.json, "status");

    if (!json_is_string(sid) || !json_is_string(status)) {
        rc = ngx_http_twirt_outbound_error(r, NGX_HTTP_BAD_GATEWAY,
                                           "twilio_protocol",
                                           "the Twilio API answered %ui "
                                           "without a call", h->status);
        goto done;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "twirt: outbound call %s to %V placed, status %s",
                  json_string_value(sid), &ctx->to,
                  json_string_value(status));

    rc = ngx_http_twirt_send_json(r, NGX_HTTP_CREATED,
                                        json_pack("{s:O,s:O,s:s%}",
                                                  "call_sid", sid,
                                                  "status", status,
                                                  "to", ctx->to.data,
                                                  ctx->to.len));

done:

    json_decref(a.json);

    ngx_http_finalize_request(r, rc);
}


/*
 * What Twilio's answer means, by kind: the transport's failure, else its
 * code, else its HTTP status.  a->json is the body (when JSON), for the
 * caller to json_decref(); a->words are static.  Refusals are logged.
 */

void
ngx_http_twirt_twilio_answer(ngx_http_twirt_http_t *h,
    ngx_http_twirt_twilio_answer_t *a)
{
    json_t                     *v;
    ngx_str_t                   retry;
    ngx_int_t                   n;
    ngx_uint_t                  i, level;
    json_error_t                err;
    ngx_http_twirt_log_text_t   t;

    ngx_memzero(a, sizeof(ngx_http_twirt_twilio_answer_t));
    a->message = "";

    switch (h->error) {

    case NGX_HTTP_TWIRT_HTTP_OK:
        break;

    case NGX_HTTP_TWIRT_HTTP_TIMEOUT:
        a->kind = NGX_HTTP_TWIRT_TWILIO_TIMEOUT;
        a->name = "twilio_timeout";
        a->words = "the Twilio API did not answer in time";
        return;

    case NGX_HTTP_TWIRT_HTTP_TLS:
        a->kind = NGX_HTTP_TWIRT_TWILIO_NETWORK;
        a->name = "twilio_tls";
        a->words = h->reason;
        return;

    case NGX_HTTP_TWIRT_HTTP_RESOLVE:
    case NGX_HTTP_TWIRT_HTTP_CONNECT:
        a->kind = NGX_HTTP_TWIRT_TWILIO_NETWORK;
        a->name = "twilio_connect";
        a->words = h->reason;
        return;

    default:
        a->kind = NGX_HTTP_TWIRT_TWILIO_NETWORK;
        a->name = "twilio_protocol";
        a->words = h->reason;
        return;
    }

    a->status = h->status;
    a->json = json_loadb((char *) h->body_in.data, h->body_in.len, 0, &err);

    if (h->status == 200 || h->status == 201) {
        a->kind = NGX_HTTP_TWIRT_TWILIO_OK;
        return;
    }

    v = json_object_get(a->json, "code");
    a->code = json_is_integer(v) && json_integer_value(v) > 0
              ? (ngx_uint_t) json_integer_value(v) : 0;

    v = json_object_get(a->json, "message");
    a->message = json_is_string(v) ? json_string_value(v) : "";

    /* a number or a caller ID refused is the API user's to fix */
    level = (h->status == 400 || h->status == 404) ? NGX_LOG_INFO
                                                   : NGX_LOG_ERR;

    ngx_log_error(level, h->log, 0,
                  "twirt: the Twilio API refused the request with %ui, "
                  "code %ui: \"%V\"", h->status, a->code,
                  ngx_http_twirt_log_text(&t, (u_char *) a->message,
                                          ngx_strlen(a->message)));

    if (a->code == 20003 || h->status == 401) {
        a->kind = NGX_HTTP_TWIRT_TWILIO_AUTH;
        a->name = "twilio_auth";
        a->words = "Twilio refused the credentials";
        return;
    }

    if (a->code == 20429 || h->status == 429) {
        a->kind = NGX_HTTP_TWIRT_TWILIO_RATE_LIMITED;
        a->name = "rate_limited";
        a->words = "Twilio is rate limiting requests";
        a->retry_after = 1;

        if (ngx_http_twirt_http_header(&h->headers_in, "Retry-After",
                                       &retry)
            == NGX_OK && retry.len && retry.len <= 4)
        {
            n = ngx_atoi(retry.data, retry.len);

            if (n > 0) {
                a->retry_after = n;
            }
        }

        return;
    }

    if (h->status >= 500) {
        a->kind = NGX_HTTP_TWIRT_TWILIO_UNAVAILABLE;
        a->name = "twilio_unavailable";
        a->words = "the Twilio API failed";
        return;
    }

    if (h->status == 404) {
        a->kind = NGX_HTTP_TWIRT_TWILIO_NOT_FOUND;
        a->name = "twilio_not_found";
        a->words = "the Twilio API does not know it";
        return;
    }

    if (h->status == 400) {
        for (i = 0; ngx_http_twirt_twilio_codes[i].code; i++) {
            if (ngx_http_twirt_twilio_codes[i].code == a->code) {
                a->kind = NGX_HTTP_TWIRT_TWILIO_INVALID;
                a->name = ngx_http_twirt_twilio_codes[i].kind;
                a->words = ngx_http_twirt_twilio_codes[i].words;
                return;
            }
        }

        a->kind = NGX_HTTP_TWIRT_TWILIO_REFUSED;
        a->name = "twilio_refused";
        a->words = "Twilio refused the request";
        return;
    }

    a->kind = NGX_HTTP_TWIRT_TWILIO_ERROR;
    a->name = "twilio_error";
    a->words = "the Twilio API answered an unexpected status";
}


/*
 * The form of a call to place: every value escaped; three times the
 * values for the escapes.
 */

ngx_int_t
ngx_http_twirt_outbound_form(ngx_pool_t *pool, ngx_http_twirt_place_t *pl,
    ngx_str_t *form)
{
    u_char  *p;
    size_t   len;

    len = sizeof("To=&From=&Url=&Method=POST") - 1
          + 3 * (pl->to.len + pl->from.len + pl->url.len)
          + sizeof("&StatusCallback=&StatusCallbackMethod=POST") - 1
          + 3 * pl->status_callback.len
          + 4 * sizeof("&StatusCallbackEvent=completed") - 1
          + sizeof("&Timeout=600") - 1
          + sizeof("&MachineDetection=") - 1 + 3 * pl->amd.len
          + sizeof("&AsyncAmd=true&AsyncAmdStatusCallback="
                   "&AsyncAmdStatusCallbackMethod=POST") - 1
          + 3 * pl->amd_callback.len;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    form->data = p;

    p = ngx_http_twirt_form_add(p, "To=", pl->to.data, pl->to.len);
    p = ngx_http_twirt_form_add(p, "&From=", pl->from.data, pl->from.len);
    p = ngx_http_twirt_form_add(p, "&Url=", pl->url.data, pl->url.len);
    p = ngx_cpymem(p, "&Method=POST", sizeof("&Method=POST") - 1);

    if (pl->status_callback.len) {
        p = ngx_http_twirt_form_add(p, "&StatusCallback=",
                                    pl->status_callback.data,
                                    pl->status_callback.len);
        p = ngx_cpymem(p, "&StatusCallbackMethod=POST"
                          "&StatusCallbackEvent=initiated"
                          "&StatusCallbackEvent=ringing"
                          "&StatusCallbackEvent=answered"
                          "&StatusCallbackEvent=completed",
                       sizeof("&StatusCallbackMethod=POST"
                              "&StatusCallbackEvent=initiated"
                              "&StatusCallbackEvent=ringing"
                              "&StatusCallbackEvent=answered"
                              "&StatusCallbackEvent=completed") - 1);
    }

    if (pl->timeout) {
        p = ngx_sprintf(p, "&Timeout=%i", pl->timeout);
    }

    if (pl->amd.len) {
        p = ngx_http_twirt_form_add(p, "&MachineDetection=", pl->amd.data,
                                    pl->amd.len);
    }

    if (pl->amd_callback.len) {
        p = ngx_http_twirt_form_add(p, "&AsyncAmd=true"
                                       "&AsyncAmdStatusCallbackMethod=POST"
                                       "&AsyncAmdStatusCallback=",
                                    pl->amd_callback.data,
                                    pl->amd_callback.len);
    }

    form->len = p - form->data;

    return NGX_OK;
}


/*
 * A request to Twilio's REST API, ready to start: the caller sets its
 * handler and data.  uri is the path (and query); body, for a POST, the
 * form.
 */

ngx_http_twirt_http_t *
ngx_http_twirt_twilio_request(ngx_http_twirt_loc_conf_t *tlcf,
    ngx_http_core_loc_conf_t *clcf, ngx_log_t *log, const char *method,
    ngx_str_t *uri, ngx_str_t *body)
{
    ngx_http_twirt_http_t  *h;

    h = ngx_http_twirt_http_create(log);
    if (h == NULL) {
        return NULL;
    }

    h->url = tlcf->twilio_api_url;
    h->tls = &tlcf->twilio_tls;
    h->resolver = clcf->resolver;
    h->resolver_timeout = clcf->resolver_timeout;
    h->timeout = tlcf->twilio_timeout;
    h->max_response = 65536;
    h->peer = "Twilio API";
    h->method.data = (u_char *) method;
    h->method.len = ngx_strlen(method);
    h->uri = *uri;
    h->headers = tlcf->twilio_headers;

    if (body) {
        h->body = *body;
    }

    return h;
}


/* the request goes away (the client closed it, or nginx quits) first */

static void
ngx_http_twirt_outbound_cleanup(void *data)
{
    ngx_http_twirt_outbound_ctx_t *ctx = data;

    if (ctx->http) {
        ngx_log_error(NGX_LOG_INFO, ctx->request->connection->log, 0,
                      "twirt: request to the Twilio API canceled: the "
                      "request went away");
        ngx_http_twirt_http_cancel(ctx->http);
        ctx->http = NULL;
    }
}


static ngx_int_t
ngx_http_twirt_outbound_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *kind, const char *fmt, ...)
{
    u_char   *p, text[512];
    va_list   args;

    va_start(args, fmt);
    p = ngx_vslprintf(text, text + sizeof(text), fmt, args);
    va_end(args);

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "twirt: outbound call refused with %ui, %s: %*s", status,
                  kind, p - text, text);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;
    }

    return ngx_http_twirt_send_json(r, status,
               json_pack("{s:{s:s,s:s%}}", "error", "kind", kind,
                         "message", text, (size_t) (p - text)));
}


u_char *
ngx_http_twirt_form_add(u_char *p, const char *name, u_char *value,
    size_t len)
{
    p = ngx_cpymem(p, name, ngx_strlen(name));

    return p + ngx_http_twirt_form_escape(p, value, len);
}


/* application/x-www-form-urlencoded: all but unreserved as %XX */

static size_t
ngx_http_twirt_form_escape(u_char *dst, u_char *src, size_t len)
{
    u_char  *p;

    static u_char  hex[] = "0123456789ABCDEF";

    p = dst;

    while (len--) {
        if ((*src >= 'a' && *src <= 'z') || (*src >= 'A' && *src <= 'Z')
            || (*src >= '0' && *src <= '9') || *src == '-' || *src == '.'
            || *src == '_' || *src == '~')
        {
            *p++ = *src++;
            continue;
        }

        *p++ = '%';
        *p++ = hex[*src >> 4];
        *p++ = hex[*src & 0xf];
        src++;
    }

    return p - dst;
}


/* a variable of the environment nginx was started with; "": none */

static void
ngx_http_twirt_outbound_env(ngx_str_t *value, const char *name)
{
    char  *v;

    v = getenv(name);

    value->data = (u_char *) v;
    value->len = v ? ngx_strlen(v) : 0;
}


/*
 * Configuration time, for a twirt_calls location: what a call needs, the
 * TLS context, the path of Calls.json and the headers with the
 * credentials (an API key if there is one, else the auth token).
 */

ngx_int_t
ngx_http_twirt_outbound_init_conf(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf)
{
    u_char      *p;
    size_t       len;
    ngx_str_t    user, pass, plain, basic, base, env_key, env_secret,
                 env_token;

    static const char  *directives[2] = {
        "twirt_twilio_api_url", "twirt_twilio_ssl_verify"
    };

    /*
     * What the configuration does not say may come from nginx's own
     * environment, as Twilio's tools name it: TWILIO_ACCOUNT_SID, then
     * TWILIO_API_KEY and TWILIO_API_SECRET, or TWILIO_AUTH_TOKEN
     */

    if (conf->account_sid.len == 0) {
        ngx_http_twirt_outbound_env(&conf->account_sid, "TWILIO_ACCOUNT_SID");
    }

    if (conf->account_sid.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_calls\" needs \"twirt_twilio_account_sid\" "
                           "(or TWILIO_ACCOUNT_SID in the environment)");
        return NGX_ERROR;
    }

    if (conf->twilio_key.len == 0 && conf->auth_token.len == 0) {
        ngx_http_twirt_outbound_env(&env_key, "TWILIO_API_KEY");
        ngx_http_twirt_outbound_env(&env_secret, "TWILIO_API_SECRET");
        ngx_http_twirt_outbound_env(&env_token, "TWILIO_AUTH_TOKEN");
    }

    if (conf->twilio_key.len) {
        user = conf->twilio_key;
        pass = conf->twilio_secret;

    } else if (conf->auth_token.len) {
        user = conf->account_sid;
        pass = conf->auth_token;

    } else if (env_key.len && env_secret.len) {
        user = env_key;
        pass = env_secret;

    } else if (env_token.len) {
        user = conf->account_sid;
        pass = env_token;

    } else {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_calls\" needs credentials: "
                           "\"twirt_twilio_auth_token\" (or its \"_file\"), "
                           "or \"twirt_twilio_api_key\" (or its \"_file\"), "
                           "or TWILIO_AUTH_TOKEN (or TWILIO_API_KEY and "
                           "TWILIO_API_SECRET) in the environment");
        return NGX_ERROR;
    }

    if (conf->outbound_url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_calls\" needs \"twirt_outbound_url\": "
                           "the public URL of a \"twirt_twiml\" location, "
                           "which Twilio requests when the callee answers");
        return NGX_ERROR;
    }

    conf->twilio_tls.verify = conf->twilio_ssl_verify;

    if (ngx_http_twirt_tls_init(cf, &conf->twilio_tls, conf->twilio_api_url,
                                &conf->twilio_ssl_trusted_certificate,
                                directives)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    base = conf->twilio_api_url->uri;

    if (base.len && base.data[base.len - 1] == '/') {
        base.len--;
    }

    len = base.len + sizeof("/2010-04-01/Accounts//Calls.json") - 1
          + conf->account_sid.len;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->twilio_calls_uri.data = p;
    p = ngx_cpymem(p, base.data, base.len);
    p = ngx_cpymem(p, "/2010-04-01/Accounts/",
                   sizeof("/2010-04-01/Accounts/") - 1);
    p = ngx_cpymem(p, conf->account_sid.data, conf->account_sid.len);
    p = ngx_cpymem(p, "/Calls.json", sizeof("/Calls.json") - 1);
    conf->twilio_calls_uri.len = p - conf->twilio_calls_uri.data;

    plain.len = user.len + 1 + pass.len;
    plain.data = ngx_pnalloc(cf->pool, plain.len);
    if (plain.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(plain.data, user.data, user.len);
    *p++ = ':';
    ngx_memcpy(p, pass.data, pass.len);

    basic.len = ngx_base64_encoded_length(plain.len);
    basic.data = ngx_pnalloc(cf->pool, basic.len);
    if (basic.data == NULL) {
        return NGX_ERROR;
    }

    ngx_encode_base64(&basic, &plain);
    ngx_explicit_memzero(plain.data, plain.len);

    len = sizeof("Authorization: Basic " CRLF
                 "Content-Type: application/x-www-form-urlencoded" CRLF
                 "Accept: application/json" CRLF) - 1 + basic.len;

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    conf->twilio_headers.data = p;
    p = ngx_cpymem(p, "Authorization: Basic ",
                   sizeof("Authorization: Basic ") - 1);
    p = ngx_cpymem(p, basic.data, basic.len);
    p = ngx_cpymem(p, CRLF "Content-Type: application/x-www-form-urlencoded"
                      CRLF "Accept: application/json" CRLF,
                   sizeof(CRLF "Content-Type: "
                          "application/x-www-form-urlencoded"
                          CRLF "Accept: application/json" CRLF) - 1);
    conf->twilio_headers.len = p - conf->twilio_headers.data;

    return NGX_OK;
}
