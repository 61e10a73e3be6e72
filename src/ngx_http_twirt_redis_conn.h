
/*
 * twirt: one connection to a Redis server (or a sentinel) on nginx's own
 * connection: TCP, a unix socket or TLS (ngx_ssl, verified here), with
 * hiredis only as the reply parser (redisReader) and the command
 * formatter.  Commands are answered in order; a reply that no command
 * waits for (a subscribed connection's messages) goes to the push
 * handler.  Nothing here knows about twirt's queue or configuration.
 */


#ifndef _NGX_HTTP_TWIRT_REDIS_CONN_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REDIS_CONN_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include <hiredis/hiredis.h>


typedef struct ngx_http_twirt_redis_conn_s  ngx_http_twirt_redis_conn_t;

/* reply is NULL when the connection ends before the answer */
typedef void (*ngx_http_twirt_redis_reply_pt)(ngx_http_twirt_redis_conn_t *rc,
    redisReply *reply, void *data);

typedef void (*ngx_http_twirt_redis_conn_pt)(ngx_http_twirt_redis_conn_t *rc,
    void *data);


/* TLS to the server, made at configuration time */
typedef struct {
#if (NGX_HTTP_SSL)
    ngx_ssl_t                              *ssl;      /* NULL: plain */
#endif
    ngx_str_t                               name;     /* SNI, verified;
                                                         NUL-terminated */
    unsigned                                verify:1;
    unsigned                                ip:1;     /* name is an IP */
} ngx_http_twirt_redis_tls_t;


struct ngx_http_twirt_redis_conn_s {
    ngx_peer_connection_t                   pc;
    ngx_log_t                               log;      /* quiet on connect */
    ngx_http_twirt_redis_tls_t             *tls;
    redisReader                            *reader;
    ngx_queue_t                             waiting;  /* of reply handlers */

    u_char                                 *out;      /* formatted; the
                                                         owner bounds the
                                                         commands */
    size_t                                  out_pos;
    size_t                                  out_len;
    size_t                                  out_size;

    ngx_http_twirt_redis_conn_pt            connected;
    ngx_http_twirt_redis_conn_pt            closed;   /* once, if started */
    ngx_http_twirt_redis_reply_pt           push;     /* NULL: an error */
    void                                   *data;

    u_char                                  errstr[NGX_MAX_ERROR_STR / 4];
    ngx_uint_t                              err;      /* errstr is set */

    ngx_uint_t                              dispatching;
    unsigned                                started:1;
    unsigned                                tls_handshake:1; /* in it */
    unsigned                                ready:1;  /* commands go out */
    unsigned                                closing:1;
};


ngx_http_twirt_redis_conn_t *ngx_http_twirt_redis_conn_create(ngx_log_t *log);

/*
 * NGX_OK: connecting; "connected" or "closed" is called later, never from
 * inside.  NGX_ERROR: rc->errstr says why; nothing is called back and the
 * caller frees rc with ngx_http_twirt_redis_conn_close().
 */
ngx_int_t ngx_http_twirt_redis_conn_connect(ngx_http_twirt_redis_conn_t *rc,
    struct sockaddr *sockaddr, socklen_t socklen, ngx_str_t *name,
    ngx_http_twirt_redis_tls_t *tls);

/*
 * Formats and queues one command: it goes out once connected (commands
 * given earlier go first).  The arguments are copied.  NGX_ERROR: no
 * memory or the connection is ending; the handler is not called.
 */
ngx_int_t ngx_http_twirt_redis_conn_command(ngx_http_twirt_redis_conn_t *rc,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_twirt_redis_reply_pt handler, void *data);

/* writes what the socket takes now, without waiting */
void ngx_http_twirt_redis_conn_flush(ngx_http_twirt_redis_conn_t *rc);

/*
 * Ends the connection: the waiting handlers get NULL, then "closed" (if
 * the connection was started), then rc is freed.  From inside one of
 * rc's handlers this happens once that handler returns.
 */
void ngx_http_twirt_redis_conn_close(ngx_http_twirt_redis_conn_t *rc);


#endif /* _NGX_HTTP_TWIRT_REDIS_CONN_H_INCLUDED_ */
