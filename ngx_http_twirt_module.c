
/*
 * twirt: an nginx module that bridges Twilio Media Streams to the
 * OpenAI Realtime API.
 *
 * The module object, the directives, configuration and merging.
 */


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_twiml.h"
#include "ngx_http_twirt_stream.h"
#include "ngx_http_twirt_escape.h"


static ngx_int_t ngx_http_twirt_add_variables(ngx_conf_t *cf);
static void *ngx_http_twirt_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);

static char *ngx_http_twirt_twiml(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_stream(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_parameter(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_say(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_connect_action(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_twirt_fallback_dial(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_twirt_url_value(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

static ngx_int_t ngx_http_twirt_complex(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv);
static ngx_int_t ngx_http_twirt_option(ngx_str_t *arg, const char *name,
    ngx_str_t *value);


static ngx_command_t  ngx_http_twirt_commands[] = {

    { ngx_string("twirt_twiml"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_twiml,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_stream"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_twirt_stream,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_frame_size),
      NULL },

    { ngx_string("twirt_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_message_size),
      NULL },

    { ngx_string("twirt_send_queue_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, send_queue_size),
      NULL },

    { ngx_string("twirt_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, idle_timeout),
      NULL },

    { ngx_string("twirt_close_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, close_timeout),
      NULL },

    { ngx_string("twirt_max_call_duration"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_call_duration),
      NULL },

    { ngx_string("twirt_stream_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_url_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, stream_url),
      NULL },

    { ngx_string("twirt_public_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_twirt_url_value,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, public_url),
      NULL },

    { ngx_string("twirt_twilio_auth_token"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, auth_token),
      NULL },

    { ngx_string("twirt_parameter"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_http_twirt_parameter,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_twirt_say,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, say),
      NULL },

    { ngx_string("twirt_connect_action"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_connect_action,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_fallback_say"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE123,
      ngx_http_twirt_say,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, fallback_say),
      NULL },

    { ngx_string("twirt_fallback_dial"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_http_twirt_fallback_dial,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("twirt_twiml_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_twirt_loc_conf_t, max_body_size),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_module_ctx = {
    ngx_http_twirt_add_variables,          /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_twirt_create_loc_conf,        /* create location configuration */
    ngx_http_twirt_merge_loc_conf          /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_module_ctx,            /* module context */
    ngx_http_twirt_commands,               /* module directives */
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


static ngx_http_variable_t  ngx_http_twirt_vars[] = {

    { ngx_string("twirt_param_"), NULL, ngx_http_twirt_param_variable,
      0, NGX_HTTP_VAR_NOCACHEABLE|NGX_HTTP_VAR_PREFIX, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_twirt_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_twirt_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_twirt_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_loc_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_loc_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     conf->auth_token = { 0, NULL };
     */

    conf->stream_url = NGX_CONF_UNSET_PTR;
    conf->public_url = NGX_CONF_UNSET_PTR;
    conf->params = NGX_CONF_UNSET_PTR;
    conf->say = NGX_CONF_UNSET_PTR;
    conf->action = NGX_CONF_UNSET_PTR;
    conf->fallback_say = NGX_CONF_UNSET_PTR;
    conf->fallback_dial = NGX_CONF_UNSET_PTR;
    conf->max_body_size = NGX_CONF_UNSET_SIZE;
    conf->max_frame_size = NGX_CONF_UNSET_SIZE;
    conf->max_message_size = NGX_CONF_UNSET_SIZE;
    conf->send_queue_size = NGX_CONF_UNSET_SIZE;
    conf->idle_timeout = NGX_CONF_UNSET_MSEC;
    conf->close_timeout = NGX_CONF_UNSET_MSEC;
    conf->max_call_duration = NGX_CONF_UNSET_MSEC;

    return conf;
}


static char *
ngx_http_twirt_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_twirt_loc_conf_t  *prev = parent;
    ngx_http_twirt_loc_conf_t  *conf = child;

    ngx_conf_merge_ptr_value(conf->stream_url, prev->stream_url, NULL);
    ngx_conf_merge_ptr_value(conf->public_url, prev->public_url, NULL);
    ngx_conf_merge_str_value(conf->auth_token, prev->auth_token, "");
    ngx_conf_merge_ptr_value(conf->params, prev->params, NULL);
    ngx_conf_merge_ptr_value(conf->say, prev->say, NULL);
    ngx_conf_merge_ptr_value(conf->action, prev->action, NULL);
    ngx_conf_merge_ptr_value(conf->fallback_say, prev->fallback_say, NULL);
    ngx_conf_merge_ptr_value(conf->fallback_dial, prev->fallback_dial, NULL);
    ngx_conf_merge_size_value(conf->max_body_size, prev->max_body_size,
                              16 * 1024);

    ngx_conf_merge_size_value(conf->max_frame_size, prev->max_frame_size,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_message_size, prev->max_message_size,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->send_queue_size, prev->send_queue_size,
                              256 * 1024);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout, 15000);
    ngx_conf_merge_msec_value(conf->close_timeout, prev->close_timeout, 5000);
    ngx_conf_merge_msec_value(conf->max_call_duration,
                              prev->max_call_duration, 3600000);

    if (conf->max_frame_size > conf->max_message_size) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_max_frame_size\" %uz is larger than "
                           "\"twirt_max_message_size\" %uz",
                           conf->max_frame_size, conf->max_message_size);
        return NGX_CONF_ERROR;
    }

    if (conf->send_queue_size < 2 * NGX_HTTP_TWIRT_WS_MAX_CONTROL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_send_queue_size\" %uz is too small",
                           conf->send_queue_size);
        return NGX_CONF_ERROR;
    }

    conf->twilio_ws.max_frame = conf->max_frame_size;
    conf->twilio_ws.max_message = conf->max_message_size;
    conf->twilio_ws.max_queue = conf->send_queue_size;
    conf->twilio_ws.buffer_size = 4096;
    conf->twilio_ws.idle_timeout = conf->idle_timeout;
    conf->twilio_ws.close_timeout = conf->close_timeout;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_twiml(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_http_twirt_twiml_handler;

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler) {
        return "is duplicate or conflicts with another content handler";
    }

    clcf->handler = ngx_http_twirt_stream_handler;

    return NGX_CONF_OK;
}


/* a URL, possibly with variables; a static one must be absolute */

static char *
ngx_http_twirt_url_value(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t                  *value;
    ngx_http_complex_value_t  **cv;

    cv = (ngx_http_complex_value_t **) (p + cmd->offset);

    if (*cv != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    *cv = ngx_palloc(cf->pool, sizeof(ngx_http_complex_value_t));
    if (*cv == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], *cv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if ((*cv)->lengths == NULL
        && ngx_strlcasestrn(value[1].data, value[1].data + value[1].len,
                            (u_char *) "://", 3 - 1)
           == NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must be an absolute URL with a scheme, "
                           "not \"%V\"", &cmd->name, &value[1]);
        return NGX_CONF_ERROR;
    }

    if (cmd->offset == offsetof(ngx_http_twirt_loc_conf_t, stream_url)
        && (*cv)->lengths == NULL
        && (value[1].len < sizeof("wss://") - 1
            || ngx_strncasecmp(value[1].data, (u_char *) "wss://",
                               sizeof("wss://") - 1) != 0))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_stream_url\" must start with \"wss://\": "
                           "Twilio streams only to secure WebSockets");
        return NGX_CONF_ERROR;
    }

    if (cmd->offset == offsetof(ngx_http_twirt_loc_conf_t, stream_url)
        && (*cv)->lengths == NULL
        && ngx_strlchr(value[1].data, value[1].data + value[1].len, '?'))
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_stream_url\" cannot have a query string: "
                           "Twilio drops it, use \"twirt_parameter\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_http_twirt_parameter(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    size_t                   n;
    ngx_str_t               *value;
    ngx_uint_t               i;
    ngx_http_twirt_param_t  *param;

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty name";
    }

    for (i = 0; i < value[1].len; i++) {
        if (value[1].data[i] <= ' ' || value[1].data[i] == 0x7f) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter name \"%V\": "
                               "no spaces or control characters", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    if (tlcf->params == NGX_CONF_UNSET_PTR) {
        tlcf->params = ngx_array_create(cf->pool, 4,
                                        sizeof(ngx_http_twirt_param_t));
        if (tlcf->params == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    param = tlcf->params->elts;

    for (i = 0; i < tlcf->params->nelts; i++) {
        if (param[i].name.len == value[1].len
            && ngx_strncmp(param[i].name.data, value[1].data, value[1].len)
               == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "duplicate parameter \"%V\"", &value[1]);
            return NGX_CONF_ERROR;
        }
    }

    param = ngx_array_push(tlcf->params);
    if (param == NULL) {
        return NGX_CONF_ERROR;
    }

    param->name = value[1];

    if (ngx_http_twirt_complex(cf, &value[2], &param->value) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (param->value.lengths == NULL) {
        n = ngx_http_twirt_utf8_length(value[1].data, value[1].len)
            + ngx_http_twirt_utf8_length(value[2].data, value[2].len);

        if (n >= NGX_HTTP_TWIRT_PARAM_MAX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "parameter \"%V\" is %uz characters with its "
                               "name, Twilio allows less than %d",
                               &value[1], n, NGX_HTTP_TWIRT_PARAM_MAX);
            return NGX_CONF_ERROR;
        }
    }

    return NGX_CONF_OK;
}


/* twirt_say text [language=xx-XX] [voice=name] */

static char *
ngx_http_twirt_say(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char  *p = conf;

    ngx_str_t              *value;
    ngx_uint_t              i;
    ngx_http_twirt_say_t  **say;

    say = (ngx_http_twirt_say_t **) (p + cmd->offset);

    if (*say != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has empty text";
    }

    *say = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_say_t));
    if (*say == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &(*say)->text) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_http_twirt_option(&value[i], "language=", &(*say)->language)
            == NGX_OK
            || ngx_http_twirt_option(&value[i], "voice=", &(*say)->voice)
               == NGX_OK)
        {
            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"language=\" or \"voice=\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* twirt_connect_action url [method=POST|GET] */

static char *
ngx_http_twirt_connect_action(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t                *value;
    ngx_http_twirt_action_t  *action;

    if (tlcf->action != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty URL";
    }

    action = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_action_t));
    if (action == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &action->url) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    ngx_str_set(&action->method, "POST");

    if (cf->args->nelts == 3) {
        if (ngx_http_twirt_option(&value[2], "method=", &action->method)
            != NGX_OK
            || !((action->method.len == 4
                  && ngx_strncmp(action->method.data, "POST", 4) == 0)
                 || (action->method.len == 3
                     && ngx_strncmp(action->method.data, "GET", 3) == 0)))
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\", expected "
                               "\"method=POST\" or \"method=GET\"",
                               &value[2]);
            return NGX_CONF_ERROR;
        }
    }

    tlcf->action = action;

    return NGX_CONF_OK;
}


/* twirt_fallback_dial number [caller_id=+81...] */

static char *
ngx_http_twirt_fallback_dial(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_twirt_loc_conf_t *tlcf = conf;

    ngx_str_t              *value;
    ngx_http_twirt_dial_t  *dial;

    if (tlcf->fallback_dial != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0) {
        return "has an empty number";
    }

    dial = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_dial_t));
    if (dial == NULL) {
        return NGX_CONF_ERROR;
    }

    if (ngx_http_twirt_complex(cf, &value[1], &dial->number) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (cf->args->nelts == 3
        && ngx_http_twirt_option(&value[2], "caller_id=", &dial->caller_id)
           != NGX_OK)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\", expected "
                           "\"caller_id=\"", &value[2]);
        return NGX_CONF_ERROR;
    }

    tlcf->fallback_dial = dial;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_twirt_complex(ngx_conf_t *cf, ngx_str_t *value,
    ngx_http_complex_value_t *cv)
{
    ngx_http_compile_complex_value_t  ccv;

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;

    return ngx_http_compile_complex_value(&ccv);
}


/* "name=value" arguments: NGX_OK and the value when the name matches */

static ngx_int_t
ngx_http_twirt_option(ngx_str_t *arg, const char *name, ngx_str_t *value)
{
    size_t  len;

    len = ngx_strlen(name);

    if (arg->len <= len || ngx_strncmp(arg->data, name, len) != 0) {
        return NGX_DECLINED;
    }

    value->data = arg->data + len;
    value->len = arg->len - len;

    return NGX_OK;
}
