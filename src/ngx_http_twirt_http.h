
/*
 * A small HTTP/1.1 client on nginx's loop, for requests twirt makes on
 * its own (Twilio's REST API): one request, one response, then the
 * connection is closed.  It needs no HTTP request around it: a timer
 * handler may start one.
 *
 *     h = ngx_http_twirt_http_create(log);
 *     h->url = ...; h->method = ...; h->handler = ...;
 *     ngx_http_twirt_http_start(h);
 *
 * The handler is called once (maybe from inside start), with h->error
 * and, on success, h->status, h->headers and h->body; h is freed when it
 * returns.  ngx_http_twirt_http_cancel() frees it without a call.
 */


#ifndef _NGX_HTTP_TWIRT_HTTP_H_INCLUDED_
#define _NGX_HTTP_TWIRT_HTTP_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_connect.h"


/* why there is no response; OK: there is one (of any status) */
typedef enum {
    NGX_HTTP_TWIRT_HTTP_OK = 0,
    NGX_HTTP_TWIRT_HTTP_RESOLVE,
    NGX_HTTP_TWIRT_HTTP_CONNECT,
    NGX_HTTP_TWIRT_HTTP_TLS,
    NGX_HTTP_TWIRT_HTTP_TIMEOUT,
    NGX_HTTP_TWIRT_HTTP_PROTOCOL,
    NGX_HTTP_TWIRT_HTTP_TOO_LARGE,
    NGX_HTTP_TWIRT_HTTP_NO_MEMORY
} ngx_http_twirt_http_error_e;


typedef struct ngx_http_twirt_http_s  ngx_http_twirt_http_t;

typedef void (*ngx_http_twirt_http_pt)(ngx_http_twirt_http_t *h);


struct ngx_http_twirt_http_s {
    ngx_pool_t                    *pool;         /* h's own */
    ngx_log_t                     *log;          /* a copy */

    /* the request, set by the owner before start */
    ngx_http_twirt_url_t          *url;
    ngx_http_twirt_tls_t          *tls;
    ngx_resolver_t                *resolver;
    ngx_msec_t                     resolver_timeout;
    ngx_msec_t                     timeout;      /* the whole exchange */
    size_t                         max_response; /* headers and body */
    const char                    *peer;         /* log words */
    ngx_str_t                      method;
    ngx_str_t                      uri;          /* "": the URL's */
    ngx_str_t                      headers;      /* "Name: value" CRLF
                                                    lines; never logged */
    ngx_str_t                      body;

    /* the response */
    ngx_http_twirt_http_error_e    error;
    const char                    *reason;       /* error's words */
    ngx_uint_t                     status;
    ngx_str_t                      headers_in;   /* the block, CRLF lines */
    ngx_str_t                      body_in;

    void                          *data;
    ngx_http_twirt_http_pt         handler;

    /* private */
    ngx_http_twirt_connect_t       connect;
    ngx_event_t                    timer;
    ngx_buf_t                     *out;
    ngx_buf_t                     *in;
    u_char                        *body_start;
    off_t                          content_length; /* -1: none */
    unsigned                       chunked:1;
    unsigned                       done:1;
};


ngx_http_twirt_http_t *ngx_http_twirt_http_create(ngx_log_t *log);
ngx_int_t ngx_http_twirt_http_start(ngx_http_twirt_http_t *h);
void ngx_http_twirt_http_cancel(ngx_http_twirt_http_t *h);
ngx_int_t ngx_http_twirt_http_header(ngx_str_t *headers, const char *name,
    ngx_str_t *value);


#endif /* _NGX_HTTP_TWIRT_HTTP_H_INCLUDED_ */
