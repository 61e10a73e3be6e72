
/*
 * Outbound calls through Twilio's REST API: the twirt_calls location.
 */


#ifndef _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_
#define _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_http.h"


/* variables of one call, each a <Parameter> */
#define NGX_HTTP_TWIRT_OUTBOUND_VARS  NGX_HTTP_TWIRT_QUERY_PARAMS


/* a call to place */
typedef struct {
    ngx_str_t                   to;               /* E.164 */
    ngx_str_t                   from;
    ngx_str_t                   url;
    ngx_str_t                   status_callback;  /* "": none */
    ngx_str_t                   amd;              /* "", "Enable",
                                                     "DetectMessageEnd" */
    ngx_str_t                   amd_callback;     /* "": synchronous */
    ngx_int_t                   timeout;          /* 0: Twilio's */
} ngx_http_twirt_place_t;


/* what an answer of Twilio's REST API means to its caller */
typedef enum {
    NGX_HTTP_TWIRT_TWILIO_OK = 0,
    NGX_HTTP_TWIRT_TWILIO_INVALID,       /* a number refused: never retry */
    NGX_HTTP_TWIRT_TWILIO_REFUSED,       /* another 400 */
    NGX_HTTP_TWIRT_TWILIO_NOT_FOUND,
    NGX_HTTP_TWIRT_TWILIO_AUTH,          /* the credentials */
    NGX_HTTP_TWIRT_TWILIO_RATE_LIMITED,  /* back off: retry_after */
    NGX_HTTP_TWIRT_TWILIO_UNAVAILABLE,   /* 5xx: retry later */
    NGX_HTTP_TWIRT_TWILIO_TIMEOUT,
    NGX_HTTP_TWIRT_TWILIO_NETWORK,       /* resolve, connect, TLS, HTTP */
    NGX_HTTP_TWIRT_TWILIO_ERROR          /* another status */
} ngx_http_twirt_twilio_e;


typedef struct {
    ngx_http_twirt_twilio_e     kind;
    const char                 *name;        /* the API's "kind" */
    const char                 *words;
    const char                 *message;     /* Twilio's, in json */
    ngx_uint_t                  status;      /* HTTP */
    ngx_uint_t                  code;        /* Twilio's */
    ngx_uint_t                  retry_after; /* seconds */
    json_t                     *json;        /* the body: the caller's */
} ngx_http_twirt_twilio_answer_t;


ngx_int_t ngx_http_twirt_calls_handler(ngx_http_request_t *r);

ngx_int_t ngx_http_twirt_outbound_form(ngx_pool_t *pool,
    ngx_http_twirt_place_t *pl, ngx_str_t *form);
ngx_http_twirt_http_t *ngx_http_twirt_twilio_request(
    ngx_http_twirt_loc_conf_t *tlcf, ngx_http_core_loc_conf_t *clcf,
    ngx_log_t *log, const char *method, ngx_str_t *uri, ngx_str_t *body);
void ngx_http_twirt_twilio_answer(ngx_http_twirt_http_t *h,
    ngx_http_twirt_twilio_answer_t *a);
/* name, then value in application/x-www-form-urlencoded: 3 * len room */
u_char *ngx_http_twirt_form_add(u_char *p, const char *name, u_char *value,
    size_t len);
ngx_int_t ngx_http_twirt_outbound_vars(json_t *vars, char *error,
    size_t size);
ngx_int_t ngx_http_twirt_outbound_init_conf(ngx_conf_t *cf,
    ngx_http_twirt_loc_conf_t *conf);


#endif /* _NGX_HTTP_TWIRT_OUTBOUND_H_INCLUDED_ */
