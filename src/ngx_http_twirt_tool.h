
/*
 * A tool call run by the user's backend: a POST subrequest of the call's
 * request to the internal location "twirt_tool_uri" names, signed, with
 * its answer captured (bounded) by this file's body filter instead of being
 * sent to Twilio.  See README, "Tools".
 */


#ifndef _NGX_HTTP_TWIRT_TOOL_H_INCLUDED_
#define _NGX_HTTP_TWIRT_TOOL_H_INCLUDED_


#include "ngx_http_twirt.h"


/* how a tool call ended; the names are in events, logs and metrics */
typedef enum {
    NGX_HTTP_TWIRT_TOOL_OK = 0,
    NGX_HTTP_TWIRT_TOOL_STATUS,            /* the backend answered non-2xx */
    NGX_HTTP_TWIRT_TOOL_TIMEOUT,           /* twirt_tool_timeout, or 504 */
    NGX_HTTP_TWIRT_TOOL_UNREACHABLE,       /* no answer: refused, reset */
    NGX_HTTP_TWIRT_TOOL_TOO_LARGE,         /* over twirt_tool_max_output */
    NGX_HTTP_TWIRT_TOOL_INVALID_OUTPUT,    /* not UTF-8 */
    NGX_HTTP_TWIRT_TOOL_INVALID_ARGUMENTS, /* the model's JSON */
    NGX_HTTP_TWIRT_TOOL_UNKNOWN,           /* a name no tool has */
    NGX_HTTP_TWIRT_TOOL_NO_BACKEND,        /* no twirt_tool_uri */
    NGX_HTTP_TWIRT_TOOL_FAILED,            /* nginx could not ask */
    NGX_HTTP_TWIRT_TOOL_LAST
} ngx_http_twirt_tool_result_e;


typedef struct ngx_http_twirt_tool_s  ngx_http_twirt_tool_t;

typedef void (*ngx_http_twirt_tool_handler_pt)(ngx_http_twirt_tool_t *tool);


struct ngx_http_twirt_tool_s {
    /* set by the owner before ngx_http_twirt_tool_start() */
    ngx_str_t                        name;
    ngx_str_t                        call_id;
    ngx_str_t                        uri;
    ngx_str_t                        body;
    ngx_str_t                        secret;
    ngx_msec_t                       timeout;
    size_t                           max_output;
    ngx_http_twirt_tool_handler_pt   handler;   /* once, unless canceled */
    void                            *data;
    ngx_http_twirt_tool_t           *next;      /* the owner's list */

    /* the outcome, for the handler */
    ngx_http_twirt_tool_result_e     result;
    ngx_uint_t                       status;    /* HTTP, 0: none */
    u_char                          *output;    /* freed after the handler */
    size_t                           output_len;
    size_t                           received;  /* all of the body */
    ngx_msec_t                       started;

    /* private */
    ngx_http_request_t              *request;   /* the call's */
    ngx_http_request_t              *sr;
    ngx_event_t                      event;     /* start, then deliver */
    ngx_event_t                      timer;
    ngx_http_post_subrequest_t       ps;
    unsigned                         running:1; /* the subrequest lives */
    unsigned                         finished:1;
};


/* the body filter; from the module's postconfiguration */
ngx_int_t ngx_http_twirt_tool_init(ngx_conf_t *cf);

/* a tool call of the request r, allocated from its pool */
ngx_http_twirt_tool_t *ngx_http_twirt_tool_create(ngx_http_request_t *r,
    ngx_log_t *log);

/* the request starts from a posted event: never inside the caller */
void ngx_http_twirt_tool_start(ngx_http_twirt_tool_t *tool);

/* no handler call after this; the backend request is closed if it can be */
void ngx_http_twirt_tool_cancel(ngx_http_twirt_tool_t *tool);

/*
 * NULL if tools is an array of function definitions twirt can declare
 * (names unique, none of the built-in ones), else why, *bad its index
 */
const char *ngx_http_twirt_tool_check(json_t *tools, size_t *bad);

const char *ngx_http_twirt_tool_result_name(ngx_http_twirt_tool_result_e r);


#endif /* _NGX_HTTP_TWIRT_TOOL_H_INCLUDED_ */
