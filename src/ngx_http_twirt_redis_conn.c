
/*
 * twirt: a Redis connection on nginx's own connection.
 *
 * connect (ngx_event_connect_peer), TLS when asked (ngx_ssl, the chain
 * and the name checked after the handshake), then commands formatted by
 * hiredis into one output buffer written by c->send, and bytes read by
 * c->recv fed to a hiredis redisReader whose replies go to the handlers
 * in the order of the commands.  The same code serves TCP, unix sockets
 * and TLS, the master's connection and the sentinels'.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_http_twirt_redis_conn.h"
#include "ngx_http_twirt_connect.h"


#define NGX_HTTP_TWIRT_REDIS_CONN_READ   16384


typedef struct {
    ngx_queue_t                     queue;
    ngx_http_twirt_redis_reply_pt   handler;
    void                           *data;
} ngx_http_twirt_redis_wait_t;


static void ngx_http_twirt_redis_conn_connected(ngx_event_t *ev);
#if (NGX_HTTP_SSL)
static void ngx_http_twirt_redis_conn_ssl_init(
    ngx_http_twirt_redis_conn_t *rc);
static void ngx_http_twirt_redis_conn_ssl_done(ngx_connection_t *c);
#endif
static void ngx_http_twirt_redis_conn_ready(ngx_http_twirt_redis_conn_t *rc);
static void ngx_http_twirt_redis_conn_read(ngx_event_t *rev);
static void ngx_http_twirt_redis_conn_write(ngx_event_t *wev);
static ngx_int_t ngx_http_twirt_redis_conn_dispatch(
    ngx_http_twirt_redis_conn_t *rc);
static ngx_int_t ngx_http_twirt_redis_conn_send(
    ngx_http_twirt_redis_conn_t *rc);
static void ngx_http_twirt_redis_conn_failed(ngx_http_twirt_redis_conn_t *rc,
    const char *fmt, ...);
static void ngx_http_twirt_redis_conn_finish(ngx_http_twirt_redis_conn_t *rc);


ngx_http_twirt_redis_conn_t *
ngx_http_twirt_redis_conn_create(ngx_log_t *log)
{
    ngx_http_twirt_redis_conn_t  *rc;

    rc = ngx_calloc(sizeof(ngx_http_twirt_redis_conn_t), log);
    if (rc == NULL) {
        return NULL;
    }

    rc->reader = redisReaderCreate();
    if (rc->reader == NULL) {
        ngx_free(rc);
        return NULL;
    }

    rc->log = *log;
    ngx_queue_init(&rc->waiting);

    return rc;
}


ngx_int_t
ngx_http_twirt_redis_conn_connect(ngx_http_twirt_redis_conn_t *rc,
    struct sockaddr *sockaddr, socklen_t socklen, ngx_str_t *name,
    ngx_http_twirt_redis_tls_t *tls)
{
    u_char            *p;
    ngx_int_t          n;
    ngx_err_t          err;
    ngx_uint_t         level;
    ngx_connection_t  *c;

    rc->tls = tls;

    rc->pc.sockaddr = sockaddr;
    rc->pc.socklen = socklen;
    rc->pc.name = name;
    rc->pc.get = ngx_event_get_peer;
    rc->pc.log = &rc->log;
    rc->pc.log_error = NGX_ERROR_INFO;

    /*
     * nginx logs a refused connect() at "error" on every attempt: the
     * owner says it once for a series of attempts, from rc->errstr.
     */

    level = rc->log.log_level;

    if (level > NGX_LOG_CRIT) {
        rc->log.log_level = NGX_LOG_CRIT;
    }

    n = ngx_event_connect_peer(&rc->pc);
    err = ngx_socket_errno;

    rc->log.log_level = level;

    if (n == NGX_ERROR || n == NGX_BUSY || n == NGX_DECLINED) {
        if (rc->pc.connection) {
            ngx_close_connection(rc->pc.connection);
            rc->pc.connection = NULL;
        }

        p = ngx_strerror(err, rc->errstr, sizeof(rc->errstr) - 1);
        *p = '\0';
        rc->err = 1;

        return NGX_ERROR;
    }

    c = rc->pc.connection;

    c->data = rc;
    c->read->handler = ngx_http_twirt_redis_conn_connected;
    c->write->handler = ngx_http_twirt_redis_conn_connected;

    rc->started = 1;

    /* a unix socket is connected at once: go on from the event loop */

    if (n == NGX_OK) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_http_twirt_redis_conn_connected(ngx_event_t *ev)
{
    u_char                        text[NGX_MAX_ERROR_STR / 4];
    ngx_err_t                     err;
    ngx_connection_t             *c;
    ngx_http_twirt_redis_conn_t  *rc;

    c = ev->data;
    rc = c->data;

    err = ngx_http_twirt_connect_error(c);

    if (err) {
        *ngx_strerror(err, text, sizeof(text) - 1) = '\0';
        ngx_http_twirt_redis_conn_failed(rc, "%s", text);
        return;
    }

    /* small commands, each due now: no Nagle delay */
    (void) ngx_tcp_nodelay(c);

#if (NGX_HTTP_SSL)
    if (rc->tls && rc->tls->ssl) {
        ngx_http_twirt_redis_conn_ssl_init(rc);
        return;
    }
#endif

    ngx_http_twirt_redis_conn_ready(rc);
}


#if (NGX_HTTP_SSL)

static void
ngx_http_twirt_redis_conn_ssl_init(ngx_http_twirt_redis_conn_t *rc)
{
    ngx_int_t          n;
    ngx_connection_t  *c;

    c = rc->pc.connection;

    rc->tls_handshake = 1;

    /* ngx_ssl_create_connection() allocates from the connection's pool */

    c->pool = ngx_create_pool(512, &rc->log);
    if (c->pool == NULL) {
        ngx_http_twirt_redis_conn_failed(rc, "TLS setup failed: no memory");
        return;
    }

    n = ngx_http_twirt_tls_start(c, rc->tls->ssl,
                                 rc->tls->ip ? NULL : &rc->tls->name,
                                 ngx_http_twirt_redis_conn_ssl_done);

    if (n == NGX_ERROR) {
        ngx_http_twirt_redis_conn_failed(rc, "TLS setup failed");
        return;
    }

    if (n == NGX_AGAIN) {
        return;
    }

    ngx_http_twirt_redis_conn_ssl_done(c);
}


static void
ngx_http_twirt_redis_conn_ssl_done(ngx_connection_t *c)
{
    long                          verify;
    ngx_int_t                     n;
    ngx_http_twirt_redis_conn_t  *rc;

    rc = c->data;

    if (!c->ssl->handshaked) {
        ngx_http_twirt_redis_conn_failed(rc, "TLS handshake failed");
        return;
    }

    if (rc->tls->verify) {
        n = ngx_http_twirt_tls_check(c, &rc->tls->name, rc->tls->ip, &verify);

        if (n == NGX_DECLINED) {
            ngx_http_twirt_redis_conn_failed(rc,
                                         "certificate verify failed: (%l:%s)",
                                         verify,
                                         X509_verify_cert_error_string(verify));
            return;
        }

        if (n != NGX_OK) {
            ngx_http_twirt_redis_conn_failed(rc,
                                          "certificate does not match \"%V\"",
                                          &rc->tls->name);
            return;
        }
    }

    ngx_http_twirt_redis_conn_ready(rc);
}

#endif


static void
ngx_http_twirt_redis_conn_ready(ngx_http_twirt_redis_conn_t *rc)
{
    ngx_connection_t  *c;

    c = rc->pc.connection;

    c->read->handler = ngx_http_twirt_redis_conn_read;
    c->write->handler = ngx_http_twirt_redis_conn_write;

    rc->ready = 1;
    rc->tls_handshake = 0;

    rc->dispatching++;

    if (rc->connected) {
        rc->connected(rc, rc->data);
    }

    rc->dispatching--;

    if (rc->closing) {
        ngx_http_twirt_redis_conn_finish(rc);
        return;
    }

    /* what was asked before the connection was ready goes out now */

    if (ngx_http_twirt_redis_conn_send(rc) != NGX_OK) {
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


ngx_int_t
ngx_http_twirt_redis_conn_command(ngx_http_twirt_redis_conn_t *rc,
    int argc, const char **argv, const size_t *argvlen,
    ngx_http_twirt_redis_reply_pt handler, void *data)
{
    int                           len;
    char                         *cmd;
    u_char                       *out;
    size_t                        size, left;
    ngx_connection_t             *c;
    ngx_http_twirt_redis_wait_t  *w;

    if (rc->closing) {
        return NGX_ERROR;
    }

    w = ngx_alloc(sizeof(ngx_http_twirt_redis_wait_t), &rc->log);
    if (w == NULL) {
        return NGX_ERROR;
    }

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        ngx_free(w);
        return NGX_ERROR;
    }

    left = rc->out_len - rc->out_pos;

    if (rc->out_len + len > rc->out_size) {

        if (left + len <= rc->out_size) {
            ngx_memmove(rc->out, rc->out + rc->out_pos, left);

        } else {
            size = ngx_max(rc->out_size * 2, left + len);
            size = ngx_max(size, 4096);

            out = ngx_alloc(size, &rc->log);
            if (out == NULL) {
                redisFreeCommand(cmd);
                ngx_free(w);
                return NGX_ERROR;
            }

            if (rc->out) {
                ngx_memcpy(out, rc->out + rc->out_pos, left);
                ngx_free(rc->out);
            }

            rc->out = out;
            rc->out_size = size;
        }

        rc->out_pos = 0;
        rc->out_len = left;
    }

    ngx_memcpy(rc->out + rc->out_len, cmd, len);
    rc->out_len += len;

    redisFreeCommand(cmd);

    w->handler = handler;
    w->data = data;
    ngx_queue_insert_tail(&rc->waiting, &w->queue);

    /* written from the event loop: the commands of one turn go together */

    c = rc->pc.connection;

    if (rc->ready && c->write->ready && !c->write->posted) {
        ngx_post_event(c->write, &ngx_posted_events);
    }

    return NGX_OK;
}


void
ngx_http_twirt_redis_conn_flush(ngx_http_twirt_redis_conn_t *rc)
{
    if (rc->ready && !rc->closing) {
        (void) ngx_http_twirt_redis_conn_send(rc);
    }
}


void
ngx_http_twirt_redis_conn_close(ngx_http_twirt_redis_conn_t *rc)
{
    if (rc->closing) {
        return;
    }

    rc->closing = 1;

    if (rc->dispatching) {
        return;
    }

    ngx_http_twirt_redis_conn_finish(rc);
}


static void
ngx_http_twirt_redis_conn_read(ngx_event_t *rev)
{
    u_char                        buf[NGX_HTTP_TWIRT_REDIS_CONN_READ];
    u_char                        text[NGX_MAX_ERROR_STR / 4];
    ssize_t                       n;
    ngx_err_t                     err;
    ngx_connection_t             *c;
    ngx_http_twirt_redis_conn_t  *rc;

    c = rev->data;
    rc = c->data;

    /* edge-triggered events: read until the socket says EAGAIN */

    for ( ;; ) {
        ngx_set_socket_errno(0);

        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0) {
            ngx_http_twirt_redis_conn_failed(rc,
                                             "Server closed the connection");
            return;
        }

        if (n == NGX_ERROR) {
            err = ngx_socket_errno;

            if (err) {
                *ngx_strerror(err, text, sizeof(text) - 1) = '\0';
                ngx_http_twirt_redis_conn_failed(rc, "%s", text);

            } else {
                ngx_http_twirt_redis_conn_failed(rc, "read failed");
            }

            return;
        }

        if (redisReaderFeed(rc->reader, (const char *) buf, n) != REDIS_OK) {
            ngx_http_twirt_redis_conn_failed(rc, "no memory for a reply");
            return;
        }

        if (ngx_http_twirt_redis_conn_dispatch(rc) != NGX_OK) {
            return;
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_twirt_redis_conn_failed(rc, "read event failed");
    }
}


/* NGX_DONE: the connection ended, rc is gone */

static ngx_int_t
ngx_http_twirt_redis_conn_dispatch(ngx_http_twirt_redis_conn_t *rc)
{
    void                         *reply;
    ngx_int_t                     rv;
    ngx_queue_t                  *q;
    ngx_http_twirt_redis_wait_t  *w;

    rv = NGX_OK;

    rc->dispatching++;

    while (!rc->closing) {

        if (redisReaderGetReply(rc->reader, &reply) != REDIS_OK) {
            *ngx_snprintf(rc->errstr, sizeof(rc->errstr) - 1,
                          "Protocol error: %s", rc->reader->errstr) = '\0';
            rc->err = 1;
            rc->closing = 1;
            break;
        }

        if (reply == NULL) {
            break;
        }

        if (ngx_queue_empty(&rc->waiting)) {

            if (rc->push) {
                rc->push(rc, reply, rc->data);

            } else {
                (void) ngx_cpystrn(rc->errstr,
                                   (u_char *) "a reply no command waits for",
                                   sizeof(rc->errstr));
                rc->err = 1;
                rc->closing = 1;
            }

        } else {
            q = ngx_queue_head(&rc->waiting);
            ngx_queue_remove(q);
            w = ngx_queue_data(q, ngx_http_twirt_redis_wait_t, queue);

            w->handler(rc, reply, w->data);
            ngx_free(w);
        }

        freeReplyObject(reply);
    }

    rc->dispatching--;

    if (rc->closing && rc->dispatching == 0) {
        ngx_http_twirt_redis_conn_finish(rc);
        rv = NGX_DONE;
    }

    return rv;
}


static void
ngx_http_twirt_redis_conn_write(ngx_event_t *wev)
{
    ngx_connection_t             *c;
    ngx_http_twirt_redis_conn_t  *rc;

    c = wev->data;
    rc = c->data;

    (void) ngx_http_twirt_redis_conn_send(rc);
}


/* NGX_OK: written or waiting for the socket; NGX_DONE: rc is gone */

static ngx_int_t
ngx_http_twirt_redis_conn_send(ngx_http_twirt_redis_conn_t *rc)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = rc->pc.connection;

    while (rc->out_pos < rc->out_len) {
        n = c->send(c, rc->out + rc->out_pos, rc->out_len - rc->out_pos);

        if (n == NGX_ERROR) {
            ngx_http_twirt_redis_conn_failed(rc, "write failed");
            return NGX_DONE;
        }

        if (n == NGX_AGAIN) {
            break;
        }

        rc->out_pos += n;
    }

    if (rc->out_pos == rc->out_len) {
        rc->out_pos = 0;
        rc->out_len = 0;
    }

    if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_twirt_redis_conn_failed(rc, "write event failed");
        return NGX_DONE;
    }

    return NGX_OK;
}


/* the end of a started connection, with why */

static void
ngx_http_twirt_redis_conn_failed(ngx_http_twirt_redis_conn_t *rc,
    const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (!rc->err) {
        va_start(args, fmt);
        p = ngx_vslprintf(rc->errstr, rc->errstr + sizeof(rc->errstr) - 1,
                          fmt, args);
        va_end(args);

        *p = '\0';
        rc->err = 1;
    }

    ngx_http_twirt_redis_conn_close(rc);
}


/*
 * The waiting handlers hear of the end first, then the socket is closed,
 * then the owner is told, once, and rc is freed.
 */

static void
ngx_http_twirt_redis_conn_finish(ngx_http_twirt_redis_conn_t *rc)
{
    ngx_queue_t                  *q;
    ngx_connection_t             *c;
    ngx_http_twirt_redis_wait_t  *w;

    rc->closing = 1;
    rc->ready = 0;
    rc->dispatching++;

    while (!ngx_queue_empty(&rc->waiting)) {
        q = ngx_queue_head(&rc->waiting);
        ngx_queue_remove(q);
        w = ngx_queue_data(q, ngx_http_twirt_redis_wait_t, queue);

        w->handler(rc, NULL, w->data);
        ngx_free(w);
    }

    c = rc->pc.connection;

    if (c) {
        ngx_http_twirt_connect_close(c);
        rc->pc.connection = NULL;
    }

    if (rc->started && rc->closed) {
        rc->closed(rc, rc->data);
    }

    redisReaderFree(rc->reader);

    if (rc->out) {
        ngx_free(rc->out);
    }

    ngx_free(rc);
}
