
/*
 * Transfer to a human (README, "Transfer to a human").
 *
 * The model is given a transfer_call tool whose "target" is an enum of
 * the configured names: it can choose a name, never dial a number of its
 * own.  A valid call is answered {"status":"transferring"} and one more
 * response, so that the agent finishes its sentence; once that has been
 * heard the call ends with the kind "transfer", after the target and the
 * summary are kept in this node's outcomes and in the call record.  The
 * stream closes, Twilio requests <Connect action>, and the twirt_action
 * location answers <Dial> (ngx_http_twirt_twiml.c).  When nobody answers,
 * the caller comes back on a new stream with the parameter
 * twirt_transfer: the conversation so far is read back from the call's
 * events and replayed into the new session, with a note of what failed.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_call.h"
#include "ngx_http_twirt_transfer.h"
#include "ngx_http_twirt_outcome.h"
#include "ngx_http_twirt_record.h"
#include "ngx_http_twirt_metrics.h"


static void ngx_http_twirt_transfer_cleanup(void *data);
static ngx_int_t ngx_http_twirt_transfer_e164(ngx_str_t *s);
static void ngx_http_twirt_transfer_history(void *data, json_t *history);
static void ngx_http_twirt_transfer_item(ngx_http_twirt_call_t *call,
    const char *role, const char *type, const char *text, size_t len);


const char  *ngx_http_twirt_transfer_labels[] = {
    "requested",
    "refused",
    "answered",
    "no-answer",
    "busy",
    "failed",
    "canceled",
    "returned"
};


/* DialCallStatus values, in the order of the results they give */
static ngx_str_t  ngx_http_twirt_transfer_statuses[] = {
    ngx_string("completed"),
    ngx_string("answered"),
    ngx_string("no-answer"),
    ngx_string("busy"),
    ngx_string("failed"),
    ngx_string("canceled")
};

static ngx_http_twirt_transfer_result_e  ngx_http_twirt_transfer_results[] = {
    NGX_HTTP_TWIRT_TRANSFER_ANSWERED,
    NGX_HTTP_TWIRT_TRANSFER_ANSWERED,
    NGX_HTTP_TWIRT_TRANSFER_NO_ANSWER,
    NGX_HTTP_TWIRT_TRANSFER_BUSY,
    NGX_HTTP_TWIRT_TRANSFER_FAILED,
    NGX_HTTP_TWIRT_TRANSFER_CANCELED
};


/* twirt_transfer NAME TARGET [caller_id=+81...] [timeout=30] */

char *
ngx_http_twirt_transfer_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    char  *p = conf;

    json_t              **targets, *v;
    ngx_str_t            *value, caller_id, timeout;
    ngx_int_t             n;
    ngx_uint_t            i;
    const char           *why;
    ngx_pool_cleanup_t   *cln;

    targets = (json_t **) (p + cmd->offset);
    value = cf->args->elts;

    ngx_str_null(&caller_id);
    n = 0;

    for (i = 3; i < cf->args->nelts; i++) {

        if (value[i].len > sizeof("caller_id=") - 1
            && ngx_strncmp(value[i].data, "caller_id=",
                           sizeof("caller_id=") - 1) == 0)
        {
            caller_id.data = value[i].data + sizeof("caller_id=") - 1;
            caller_id.len = value[i].len - (sizeof("caller_id=") - 1);
            continue;
        }

        if (value[i].len > sizeof("timeout=") - 1
            && ngx_strncmp(value[i].data, "timeout=",
                           sizeof("timeout=") - 1) == 0)
        {
            timeout.data = value[i].data + sizeof("timeout=") - 1;
            timeout.len = value[i].len - (sizeof("timeout=") - 1);

            n = ngx_atoi(timeout.data, timeout.len);

            if (n == NGX_ERROR || n == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid \"%V\": the ring timeout is "
                                   "whole seconds, from 5 to 600",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"caller_id=\" or \"timeout=\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    why = ngx_http_twirt_transfer_check(&value[1], &value[2], &caller_id,
                                        (ngx_uint_t) n);
    if (why) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid transfer \"%V\": %s",
                           &value[1], why);
        return NGX_CONF_ERROR;
    }

    if (*targets == NGX_CONF_UNSET_PTR) {
        *targets = json_object();
        if (*targets == NULL) {
            return NGX_CONF_ERROR;
        }

        cln = ngx_pool_cleanup_add(cf->pool, 0);
        if (cln == NULL) {
            json_decref(*targets);
            *targets = NGX_CONF_UNSET_PTR;
            return NGX_CONF_ERROR;
        }

        cln->handler = ngx_http_twirt_transfer_cleanup;
        cln->data = *targets;
    }

    if (json_object_getn(*targets, (char *) value[1].data, value[1].len)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "transfer \"%V\" is duplicate", &value[1]);
        return NGX_CONF_ERROR;
    }

    v = json_pack("{s:s%,s:s%,s:i}",
                  "target", value[2].data, value[2].len,
                  "caller_id", caller_id.data ? (char *) caller_id.data : "",
                  caller_id.len,
                  "timeout", n ? (int) n : NGX_HTTP_TWIRT_TRANSFER_TIMEOUT);

    if (v == NULL
        || json_object_setn_new(*targets, (char *) value[1].data,
                                value[1].len, v)
           != 0)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void
ngx_http_twirt_transfer_cleanup(void *data)
{
    json_decref(data);
}


const char *
ngx_http_twirt_transfer_check(ngx_str_t *name, ngx_str_t *target,
    ngx_str_t *caller_id, ngx_uint_t timeout)
{
    u_char      c;
    ngx_uint_t  i;

    if (name->len == 0 || name->len > NGX_HTTP_TWIRT_TRANSFER_NAME_LEN) {
        return "the name must be 1 to 32 characters";
    }

    for (i = 0; i < name->len; i++) {
        c = name->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            return "the name must be letters, digits, '_' and '-' only";
        }
    }

    if (target->len > 4 && ngx_strncmp(target->data, "sip:", 4) == 0) {
        if (target->len > NGX_HTTP_TWIRT_TRANSFER_TARGET_LEN) {
            return "the SIP URI is longer than 128 characters";
        }

        for (i = 4; i < target->len; i++) {
            c = target->data[i];

            if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"'
                || c == '\'' || c == '&')
            {
                return "the SIP URI has a space, a control character, "
                       "a quote, '<', '>', '&' or non-ASCII";
            }
        }

    } else if (ngx_http_twirt_transfer_e164(target) != NGX_OK) {
        return "the target must be a number in E.164 form (+81312345678) "
               "or a SIP URI (sip:reception@pbx.example.com)";
    }

    if (caller_id && caller_id->len
        && ngx_http_twirt_transfer_e164(caller_id) != NGX_OK)
    {
        return "caller_id must be a number in E.164 form (+81312345678)";
    }

    if (timeout && (timeout < 5 || timeout > 600)) {
        return "the ring timeout is whole seconds, from 5 to 600";
    }

    return NULL;
}


/* +, then 8 to 15 digits, the first not 0 */

static ngx_int_t
ngx_http_twirt_transfer_e164(ngx_str_t *s)
{
    ngx_uint_t  i;

    if (s->len < 9 || s->len > 16 || s->data[0] != '+' || s->data[1] == '0')
    {
        return NGX_DECLINED;
    }

    for (i = 1; i < s->len; i++) {
        if (s->data[i] < '0' || s->data[i] > '9') {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


json_t *
ngx_http_twirt_transfer_parse(ngx_str_t *value, const char **why)
{
    json_t        *in, *out, *v, *t;
    ngx_str_t      name, target, caller_id;
    const char    *key;
    json_int_t     timeout;
    json_error_t   err;

    in = json_loadb((char *) value->data, value->len, 0, &err);

    if (!json_is_object(in) || json_object_size(in) == 0) {
        json_decref(in);
        *why = "is not a JSON object of names";
        return NULL;
    }

    out = json_object();
    if (out == NULL) {
        json_decref(in);
        *why = "could not be kept (no memory)";
        return NULL;
    }

    json_object_foreach(in, key, v) {
        name.data = (u_char *) key;
        name.len = ngx_strlen(key);

        t = json_is_object(v) ? json_object_get(v, "target") : v;
        timeout = json_integer_value(json_object_get(v, "timeout"));

        if (!json_is_string(t)
            || (json_is_object(v)
                && ((json_object_get(v, "caller_id")
                     && !json_is_string(json_object_get(v, "caller_id")))
                    || (json_object_get(v, "timeout")
                        && (!json_is_integer(json_object_get(v, "timeout"))
                            || timeout <= 0 || timeout > 600)))))
        {
            *why = "has a target that is not a string, or a caller_id or "
                   "timeout of the wrong type";
            goto failed;
        }

        target.data = (u_char *) json_string_value(t);
        target.len = json_string_length(t);

        caller_id.data = (u_char *) json_string_value(
                             json_object_get(v, "caller_id"));
        caller_id.len = caller_id.data ? ngx_strlen(caller_id.data) : 0;

        *why = ngx_http_twirt_transfer_check(&name, &target, &caller_id,
                                             (ngx_uint_t) timeout);
        if (*why) {
            goto failed;
        }

        if (json_object_set_new(out, key,
                json_pack("{s:s%,s:s,s:I}",
                          "target", target.data, target.len,
                          "caller_id",
                          caller_id.data ? (char *) caller_id.data : "",
                          "timeout", timeout ? timeout
                                             : (json_int_t)
                                               NGX_HTTP_TWIRT_TRANSFER_TIMEOUT))
            != 0)
        {
            *why = "could not be kept (no memory)";
            goto failed;
        }
    }

    json_decref(in);

    return out;

failed:

    json_decref(in);
    json_decref(out);

    return NULL;
}


json_t *
ngx_http_twirt_transfer_targets(ngx_http_twirt_loc_conf_t *conf,
    json_t *profile)
{
    json_t  *t;

    t = json_object_get(profile, "transfers");

    if (json_is_object(t)) {
        return t;
    }

    return conf->transfers;
}


json_t *
ngx_http_twirt_transfer_tool(json_t *targets)
{
    json_t      *tool, *names;
    const char  *key;
    json_t      *v;

    if (json_object_size(targets) == 0) {
        return NULL;
    }

    names = json_array();
    if (names == NULL) {
        return NULL;
    }

    json_object_foreach(targets, key, v) {
        json_array_append_new(names, json_string(key));
    }

    tool = json_pack("{s:s,s:s,s:s,s:{s:s,s:{s:{s:s,s:o,s:s},s:{s:s,s:s}},"
                     "s:[s,s]}}",
                     "type", "function",
                     "name", "transfer_call",
                     "description",
                     "Transfer the caller to a person. Tell the caller "
                     "first; your next sentence is heard before the "
                     "transfer.",
                     "parameters",
                       "type", "object",
                       "properties",
                         "target",
                           "type", "string",
                           "enum", names,
                           "description", "Who to transfer to, by name.",
                         "summary",
                           "type", "string",
                           "description",
                           "What the person answering should know, in the "
                           "caller's language, one or two sentences.",
                       "required", "target", "summary");

    return tool;
}


ngx_int_t
ngx_http_twirt_transfer_request(json_t *targets, json_t *arguments,
    ngx_pool_t *pool, ngx_http_twirt_transfer_t *t, const char **output)
{
    json_t        *args, *name, *summary, *target;
    ngx_str_t      s;
    json_error_t   err;

    args = NULL;

    if (json_is_string(arguments)) {
        args = json_loadb(json_string_value(arguments),
                          json_string_length(arguments), 0, &err);
    }

    name = json_object_get(args, "target");
    summary = json_object_get(args, "summary");
    target = json_is_string(name)
             ? json_object_get(targets, json_string_value(name)) : NULL;

    if (target == NULL) {
        json_decref(args);
        *output = "{\"error\":\"unknown transfer target: use one of the "
                  "names in the tool's enum\"}";
        return NGX_DECLINED;
    }

    ngx_memzero(t, sizeof(ngx_http_twirt_transfer_t));

    s.data = (u_char *) json_string_value(name);
    s.len = json_string_length(name);
    t->name.data = ngx_pstrdup(pool, &s);
    t->name.len = s.len;

    s.data = (u_char *) json_string_value(json_object_get(target, "target"));
    s.len = ngx_strlen(s.data);
    t->target.data = ngx_pstrdup(pool, &s);
    t->target.len = s.len;

    s.data = (u_char *) json_string_value(json_object_get(target,
                                                          "caller_id"));
    s.len = s.data ? ngx_strlen(s.data) : 0;
    t->caller_id.data = s.len ? ngx_pstrdup(pool, &s) : (u_char *) "";
    t->caller_id.len = s.len;

    t->timeout = (ngx_uint_t) json_integer_value(json_object_get(target,
                                                                 "timeout"));

    if (json_is_string(summary)) {
        s.data = (u_char *) json_string_value(summary);
        s.len = ngx_http_twirt_transfer_utf8_cut(s.data,
                    json_string_length(summary),
                    NGX_HTTP_TWIRT_TRANSFER_SUMMARY_LEN);
        t->summary.data = s.len ? ngx_pstrdup(pool, &s) : (u_char *) "";
        t->summary.len = s.len;

    } else {
        ngx_str_set(&t->summary, "");
    }

    json_decref(args);

    if (t->name.data == NULL || t->target.data == NULL
        || t->caller_id.data == NULL || t->summary.data == NULL)
    {
        *output = "{\"error\":\"the transfer failed\"}";
        return NGX_ERROR;
    }

    *output = "{\"status\":\"transferring\"}";

    return NGX_OK;
}


size_t
ngx_http_twirt_transfer_utf8_cut(u_char *s, size_t len, size_t n)
{
    if (len <= n) {
        return len;
    }

    /* back to the first byte of a character */
    while (n > 0 && (s[n] & 0xc0) == 0x80) {
        n--;
    }

    return n;
}


ngx_http_twirt_transfer_result_e
ngx_http_twirt_transfer_dialed(ngx_str_t *status)
{
    ngx_uint_t  i;

    for (i = 0; i < sizeof(ngx_http_twirt_transfer_results)
                    / sizeof(ngx_http_twirt_transfer_results[0]); i++)
    {
        if (status->len == ngx_http_twirt_transfer_statuses[i].len
            && ngx_strncmp(status->data,
                           ngx_http_twirt_transfer_statuses[i].data,
                           status->len) == 0)
        {
            return ngx_http_twirt_transfer_results[i];
        }
    }

    return NGX_HTTP_TWIRT_TRANSFER_LAST;
}


/* the call's side: the tool call, the end, the return */


void
ngx_http_twirt_transfer_call(ngx_http_twirt_call_t *call, json_t *ev)
{
    json_t                     *out, *targets;
    ngx_int_t                   rc;
    const char                 *output;
    ngx_http_twirt_transfer_t  *t;
    ngx_http_twirt_log_text_t   lt;

    targets = ngx_http_twirt_transfer_targets(call->conf, call->profile);

    t = ngx_pcalloc(call->pool, sizeof(ngx_http_twirt_transfer_t));

    if (t == NULL) {
        rc = NGX_ERROR;
        output = "{\"error\":\"the transfer failed\"}";

    } else if (call->after != NGX_HTTP_TWIRT_AFTER_NOTHING) {
        rc = NGX_DECLINED;
        output = "{\"error\":\"the call is already ending\"}";

    } else {
        rc = ngx_http_twirt_transfer_request(targets,
                                             json_object_get(ev, "arguments"),
                                             call->pool, t, &output);
    }

    if (rc == NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, call->log, 0,
                      "twirt: the model transfers the call to \"%V\"",
                      &t->name);

        ngx_http_twirt_metrics_transfer(NGX_HTTP_TWIRT_TRANSFER_REQUESTED);

        t->stream_sid = call->stream_sid;
        call->transfer = t;
        call->after = NGX_HTTP_TWIRT_AFTER_TRANSFER;

    } else {
        ngx_log_error(NGX_LOG_WARN, call->log, 0,
                      "twirt: refused transfer_call: %V",
                      ngx_http_twirt_log_cstr(&lt, output));

        ngx_http_twirt_metrics_transfer(NGX_HTTP_TWIRT_TRANSFER_REFUSED);
    }

    out = json_pack("{s:s,s:{s:s,s:O*,s:s}}",
                    "type", "conversation.item.create",
                    "item", "type", "function_call_output",
                    "call_id", json_object_get(ev, "call_id"),
                    "output", output);

    /* the caller asks for the answer: the agent says so, or why not */

    if (out) {
        (void) ngx_http_twirt_call_send_json(call, out);
        json_decref(out);
    }
}


/* the agent's last sentence was heard: the transfer is kept, then the end */

void
ngx_http_twirt_transfer_heard(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_transfer_t  *t;

    t = call->transfer;

    ngx_http_twirt_call_event(call, "transfer",
        json_pack("{s:s,s:s%,s:s%}", "status", "transferring",
                  "target", t->name.data, t->name.len,
                  "summary", t->summary.data, t->summary.len));

    ngx_http_twirt_outcome_transfer(&call->call_sid, &call->stream_sid, t);
    ngx_http_twirt_record_transfer(&call->record, t);

    ngx_http_twirt_call_end(call, NGX_HTTP_TWIRT_END_TRANSFER, NULL,
                            NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
}


/*
 * A stream after a transfer nobody answered (start's parameters have
 * twirt_transfer): the conversation so far is read from the record, a
 * bounded wait, before the session is configured.
 */

void
ngx_http_twirt_transfer_resume(ngx_http_twirt_call_t *call)
{
    json_t  *v;

    v = json_object_get(call->parameters, "twirt_transfer");

    if (!json_is_string(v)) {
        return;
    }

    call->returning = 1;

    ngx_http_twirt_metrics_transfer(NGX_HTTP_TWIRT_TRANSFER_RETURNED);

    if (ngx_http_twirt_record_history(&call->record, call->conf->agent_timeout,
                                      NGX_HTTP_TWIRT_TRANSFER_HISTORY,
                                      NGX_HTTP_TWIRT_TRANSFER_HISTORY_SIZE,
                                      ngx_http_twirt_transfer_history, call,
                                      &call->history_handle)
        == NGX_OK)
    {
        call->waiting |= NGX_HTTP_TWIRT_CALL_WAIT_HISTORY;
    }
}


static void
ngx_http_twirt_transfer_history(void *data, json_t *history)
{
    ngx_http_twirt_call_t  *call = data;

    call->history = history;

    ngx_http_twirt_call_ready(call, NGX_HTTP_TWIRT_CALL_WAIT_HISTORY);
}


void
ngx_http_twirt_transfer_cancel(ngx_http_twirt_call_t *call)
{
    ngx_http_twirt_record_history_cancel(&call->history_handle);

    if (call->history) {
        json_decref(call->history);
        call->history = NULL;
    }
}


/*
 * The session of a returning call is configured: the conversation so
 * far as items, a note that the transfer failed, and the agent speaks
 * first.  NGX_DECLINED: not a returning call.
 */

ngx_int_t
ngx_http_twirt_transfer_replay(ngx_http_twirt_call_t *call)
{
    u_char      *p;
    size_t       i;
    json_t      *line, *role, *text, *name, *result;
    ngx_uint_t   caller;

    if (!call->returning) {
        return NGX_DECLINED;
    }

    json_array_foreach(call->history, i, line) {
        role = json_object_get(line, "role");
        text = json_object_get(line, "text");

        if (!json_is_string(role) || !json_is_string(text)) {
            continue;
        }

        caller = (ngx_strcmp(json_string_value(role), "caller") == 0);

        ngx_http_twirt_transfer_item(call, caller ? "user" : "assistant",
                                     caller ? "input_text" : "output_text",
                                     json_string_value(text),
                                     json_string_length(text));

        /* and to the sessions after this one */
        ngx_http_twirt_rotate_line(call, caller, text);
    }

    ngx_log_error(NGX_LOG_INFO, call->log, 0,
                  "twirt: the caller is back after a transfer, %uz lines "
                  "of the conversation replayed",
                  json_array_size(call->history));

    result = json_object_get(call->parameters, "twirt_transfer");
    name = json_object_get(call->parameters, "twirt_transfer_target");

    p = ngx_pnalloc(call->pool, 256);

    if (p) {
        i = ngx_snprintf(p, 256,
                         "The transfer to %s did not connect (%s). The "
                         "caller is back with you: tell them, and offer "
                         "what else you can do.",
                         json_is_string(name) ? json_string_value(name)
                                              : "a person",
                         json_string_value(result))
            - p;

        ngx_http_twirt_transfer_item(call, "system", "input_text",
                                     (char *) p, i);
    }

    ngx_http_twirt_call_event(call, "transfer",
        json_pack("{s:s,s:O}", "status", "returned", "result", result));

    ngx_http_twirt_call_response_create(call, NULL);

    return NGX_OK;
}


static void
ngx_http_twirt_transfer_item(ngx_http_twirt_call_t *call, const char *role,
    const char *type, const char *text, size_t len)
{
    json_t  *ev;

    ev = json_pack("{s:s,s:{s:s,s:s,s:[{s:s,s:s%}]}}",
                   "type", "conversation.item.create",
                   "item", "type", "message", "role", role,
                   "content", "type", type, "text", text, len);

    if (ev) {
        (void) ngx_http_twirt_call_send_json(call, ev);
        json_decref(ev);
    }
}
