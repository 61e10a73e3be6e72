
/*
 * twirt: hiredis on nginx's event loop.
 *
 * hiredis asks for read and write interest through five hooks; nginx
 * tells it when the socket is ready.  With edge-triggered events (epoll,
 * kqueue) both directions are registered once and the hooks only follow
 * readiness; with level-triggered ones the hooks add and delete events.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <hiredis/hiredis.h>
#include <hiredis/async.h>

#include "ngx_http_twirt_redis_adapter.h"


typedef struct {
    ngx_connection_t                        *connection;
    redisAsyncContext                       *context;
    ngx_http_twirt_redis_adapter_closed_pt   closed;
    void                                    *data;
} ngx_http_twirt_redis_adapter_t;


static ngx_uint_t ngx_http_twirt_redis_adapter_gone(ngx_connection_t *c,
    ngx_atomic_uint_t number);
static void ngx_http_twirt_redis_adapter_read(ngx_event_t *rev);
static void ngx_http_twirt_redis_adapter_write(ngx_event_t *wev);
static void ngx_http_twirt_redis_adapter_add_read(void *privdata);
static void ngx_http_twirt_redis_adapter_del_read(void *privdata);
static void ngx_http_twirt_redis_adapter_add_write(void *privdata);
static void ngx_http_twirt_redis_adapter_del_write(void *privdata);
static void ngx_http_twirt_redis_adapter_cleanup(void *privdata);
static void ngx_http_twirt_redis_adapter_release(ngx_connection_t *c);


ngx_int_t
ngx_http_twirt_redis_adapter_attach(redisAsyncContext *ac, ngx_log_t *log,
    ngx_http_twirt_redis_adapter_closed_pt closed, void *data)
{
    ngx_int_t                        event;
    ngx_connection_t                *c;
    ngx_http_twirt_redis_adapter_t  *ad;

    ad = ngx_alloc(sizeof(ngx_http_twirt_redis_adapter_t), log);
    if (ad == NULL) {
        return NGX_ERROR;
    }

    c = ngx_get_connection(ac->c.fd, log);
    if (c == NULL) {
        ngx_free(ad);
        return NGX_ERROR;
    }

    ad->connection = c;
    ad->context = ac;
    ad->closed = closed;
    ad->data = data;

    c->data = ad;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    c->read->handler = ngx_http_twirt_redis_adapter_read;
    c->write->handler = ngx_http_twirt_redis_adapter_write;
    c->read->log = c->log;
    c->write->log = c->log;

    if (ngx_event_flags & NGX_USE_CLEAR_EVENT) {

        if (ngx_add_conn) {
            if (ngx_add_conn(c) != NGX_OK) {
                goto failed;
            }

        } else {
            event = NGX_CLEAR_EVENT;

            if (ngx_add_event(c->read, NGX_READ_EVENT, event) != NGX_OK
                || ngx_add_event(c->write, NGX_WRITE_EVENT, event) != NGX_OK)
            {
                goto failed;
            }
        }
    }

    ac->ev.addRead = ngx_http_twirt_redis_adapter_add_read;
    ac->ev.delRead = ngx_http_twirt_redis_adapter_del_read;
    ac->ev.addWrite = ngx_http_twirt_redis_adapter_add_write;
    ac->ev.delWrite = ngx_http_twirt_redis_adapter_del_write;
    ac->ev.cleanup = ngx_http_twirt_redis_adapter_cleanup;
    ac->ev.data = ad;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, log, 0,
                   "twirt: redis connection *%uA fd:%d",
                   c->number, c->fd);

    return NGX_OK;

failed:

    ngx_http_twirt_redis_adapter_release(c);
    ngx_free(ad);

    return NGX_ERROR;
}


/*
 * A context freed from inside redisAsyncHandleRead() or ...Write() took
 * its connection with it: the cleanup hook set c->fd to -1, and a slot
 * given out again since has another number.
 */

static ngx_uint_t
ngx_http_twirt_redis_adapter_gone(ngx_connection_t *c,
    ngx_atomic_uint_t number)
{
    return c->fd == (ngx_socket_t) -1 || c->number != number;
}


static void
ngx_http_twirt_redis_adapter_read(ngx_event_t *rev)
{
    char                             b;
    ssize_t                          n;
    ngx_err_t                        err;
    ngx_connection_t                *c;
    ngx_atomic_uint_t                number;
    ngx_http_twirt_redis_adapter_t  *ad;

    c = rev->data;
    ad = c->data;
    number = c->number;

    /*
     * hiredis reads at most 16 KiB per call: with edge-triggered events
     * call it again until the socket says EAGAIN, or the next bytes would
     * wait for an event that never comes.  EOF and errors are left for
     * hiredis to see.
     */

    for ( ;; ) {
        redisAsyncHandleRead(ad->context);

        if (ngx_http_twirt_redis_adapter_gone(c, number)) {
            return;
        }

        if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT)) {
            return;
        }

        n = recv(c->fd, &b, 1, MSG_PEEK);

        if (n == -1) {
            err = ngx_socket_errno;

            if (err == NGX_EAGAIN) {
                return;
            }

            if (err == NGX_EINTR) {
                continue;
            }
        }
    }
}


static void
ngx_http_twirt_redis_adapter_write(ngx_event_t *wev)
{
    ngx_connection_t                *c;
    redisAsyncContext               *ac;
    ngx_atomic_uint_t                number;
    ngx_http_twirt_redis_adapter_t  *ad;

    c = wev->data;
    ad = c->data;
    ac = ad->context;
    number = c->number;

    redisAsyncHandleWrite(ac);

    if (ngx_http_twirt_redis_adapter_gone(c, number)) {
        return;
    }

    /* a partial write filled the socket: the next edge says when to go on */

    if ((ngx_event_flags & NGX_USE_CLEAR_EVENT)
        && ac->c.obuf && sdslen(ac->c.obuf))
    {
        wev->ready = 0;
    }
}


static void
ngx_http_twirt_redis_adapter_add_read(void *privdata)
{
    ngx_connection_t                *c;
    ngx_http_twirt_redis_adapter_t  *ad;

    ad = privdata;
    c = ad->connection;

    if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT) && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "twirt: redis could not add a read event");
        }
    }
}


static void
ngx_http_twirt_redis_adapter_del_read(void *privdata)
{
    ngx_connection_t                *c;
    ngx_http_twirt_redis_adapter_t  *ad;

    ad = privdata;
    c = ad->connection;

    if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT) && c->read->active) {
        (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
    }
}


static void
ngx_http_twirt_redis_adapter_add_write(void *privdata)
{
    ngx_connection_t                *c;
    ngx_http_twirt_redis_adapter_t  *ad;

    ad = privdata;
    c = ad->connection;

    if (ngx_event_flags & NGX_USE_CLEAR_EVENT) {

        /*
         * hiredis has bytes to write and the socket is known writable:
         * no edge will come, so have the write handler called from this
         * turn of the event loop.
         */

        if (c->write->ready && !c->write->posted) {
            ngx_post_event(c->write, &ngx_posted_events);
        }

        return;
    }

    if (!c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                          "twirt: redis could not add a write event");
        }
    }
}


static void
ngx_http_twirt_redis_adapter_del_write(void *privdata)
{
    ngx_connection_t                *c;
    ngx_http_twirt_redis_adapter_t  *ad;

    ad = privdata;
    c = ad->connection;

    if (!(ngx_event_flags & NGX_USE_CLEAR_EVENT) && c->write->active) {
        (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }
}


/*
 * hiredis frees the context: after the pending callbacks got a NULL reply
 * and before it closes the socket itself.  The connection goes back to
 * nginx, then the owner hears of it, once per context.
 */

static void
ngx_http_twirt_redis_adapter_cleanup(void *privdata)
{
    void                                    *data;
    redisAsyncContext                       *ac;
    ngx_http_twirt_redis_adapter_t          *ad;
    ngx_http_twirt_redis_adapter_closed_pt   closed;

    ad = privdata;
    ac = ad->context;
    closed = ad->closed;
    data = ad->data;

    if (ad->connection->read->posted) {
        ngx_delete_posted_event(ad->connection->read);
    }

    if (ad->connection->write->posted) {
        ngx_delete_posted_event(ad->connection->write);
    }

    ngx_http_twirt_redis_adapter_release(ad->connection);

    ac->ev.data = NULL;
    ngx_free(ad);

    closed(data, ac);
}


/* not ngx_close_connection(): hiredis owns the socket and closes it */

static void
ngx_http_twirt_redis_adapter_release(ngx_connection_t *c)
{
    if (ngx_del_conn) {
        ngx_del_conn(c, NGX_CLOSE_EVENT);

    } else {
        if (c->read->active || c->read->disabled) {
            ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
        }

        if (c->write->active || c->write->disabled) {
            ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
        }
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
}
