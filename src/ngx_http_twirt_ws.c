
/*
 * A WebSocket connection over an nginx connection: frames in and out,
 * a bounded output queue, ping/pong, the close handshake and its timer.
 */


#include <openssl/rand.h>

#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_connect.h"
#include "ngx_http_twirt_ws.h"
#include "ngx_http_twirt_metrics.h"


#define ngx_http_twirt_ws_metric(ws, m, n)                                  \
    ngx_http_twirt_metrics_add((ws)->role == NGX_HTTP_TWIRT_WS_SERVER         \
                               ? NGX_HTTP_TWIRT_M_TWILIO_##m                  \
                               : NGX_HTTP_TWIRT_M_UPSTREAM_##m, n)


/* when the bytes being handled arrived: for the bridge latency */
static uint64_t  ngx_http_twirt_ws_arrival;


/*
 * Input buffers are lent: a connection holds one only while a read is
 * being handled or bytes of a frame wait for the rest, so a call between
 * two messages holds none.  A worker reads one connection at a time: a
 * spare of each size (the Twilio side's, the upstream's) serves them all.
 */

#define NGX_HTTP_TWIRT_WS_SPARES  2

static u_char  *ngx_http_twirt_ws_spare[NGX_HTTP_TWIRT_WS_SPARES];
static size_t   ngx_http_twirt_ws_spare_size[NGX_HTTP_TWIRT_WS_SPARES];


static ngx_int_t ngx_http_twirt_ws_in_get(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_ws_in_put(ngx_http_twirt_ws_t *ws);
static ngx_int_t ngx_http_twirt_ws_process(ngx_http_twirt_ws_t *ws);
static ngx_int_t ngx_http_twirt_ws_payload(ngx_http_twirt_ws_t *ws);
static ngx_int_t ngx_http_twirt_ws_control(ngx_http_twirt_ws_t *ws,
    u_char *data, size_t len);
static ngx_int_t ngx_http_twirt_ws_message(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
static ngx_int_t ngx_http_twirt_ws_msg_reserve(ngx_http_twirt_ws_t *ws,
    size_t size);
static ngx_int_t ngx_http_twirt_ws_out_reserve(ngx_http_twirt_ws_t *ws,
    size_t size);
static void ngx_http_twirt_ws_fail(ngx_http_twirt_ws_t *ws, ngx_uint_t code,
    const char *error);
static void ngx_http_twirt_ws_close_timeout(ngx_event_t *ev);
static void ngx_http_twirt_ws_notify(ngx_http_twirt_ws_t *ws);
static void ngx_http_twirt_ws_mask(u_char mask[4]);
static uint64_t ngx_http_twirt_ws_now(void);


ngx_http_twirt_ws_t *
ngx_http_twirt_ws_create(ngx_pool_t *pool, ngx_connection_t *c,
    ngx_http_twirt_ws_conf_t *conf, ngx_int_t role)
{
    ngx_http_twirt_ws_t  *ws;

    ws = ngx_pcalloc(pool, sizeof(ngx_http_twirt_ws_t));
    if (ws == NULL) {
        return NULL;
    }

    ws->connection = c;
    ws->conf = conf;
    ws->role = role;
    ws->msg_opcode = NGX_HTTP_TWIRT_WS_CONT;
    ws->peer = "peer";

    ws->close_timer.handler = ngx_http_twirt_ws_close_timeout;
    ws->close_timer.data = ws;
    ws->close_timer.log = c->log;

    /* a quitting worker waits for the close handshakes, a bounded time */

    return ws;
}


/* bytes that arrived before the connection was ours, e.g. with the 101 */

ngx_int_t
ngx_http_twirt_ws_feed(ngx_http_twirt_ws_t *ws, u_char *data, size_t len)
{
    size_t  n;

    while (len && !ws->closed) {
        if (ngx_http_twirt_ws_in_get(ws) != NGX_OK) {
            return NGX_ERROR;
        }

        n = ngx_min(len, (size_t) (ws->in + ws->conf->buffer_size
                                   - ws->in_last));

        ws->in_last = ngx_cpymem(ws->in_last, data, n);
        data += n;
        len -= n;

        if (ngx_http_twirt_ws_process(ws) != NGX_OK) {
            break;
        }
    }

    if (ws->closed) {
        return NGX_ERROR;
    }

    ngx_http_twirt_ws_in_put(ws);

    return NGX_OK;
}


/*
 * Bytes that arrived with the upgrade's answer, kept for the owner's
 * first read (its handlers are not set yet).
 */

ngx_int_t
ngx_http_twirt_ws_keep(ngx_http_twirt_ws_t *ws, u_char *data, size_t len)
{
    if (len == 0) {
        return NGX_OK;
    }

    if (ngx_http_twirt_ws_in_get(ws) != NGX_OK) {
        return NGX_ERROR;
    }

    len = ngx_min(len, ws->conf->buffer_size);
    ws->in_last = ngx_cpymem(ws->in_last, data, len);

    return NGX_OK;
}


/* the input buffer, from the worker's spare if one of its size waits */

static ngx_int_t
ngx_http_twirt_ws_in_get(ngx_http_twirt_ws_t *ws)
{
    ngx_uint_t  i;

    if (ws->in) {
        return NGX_OK;
    }

    for (i = 0; i < NGX_HTTP_TWIRT_WS_SPARES; i++) {
        if (ngx_http_twirt_ws_spare[i]
            && ngx_http_twirt_ws_spare_size[i] == ws->conf->buffer_size)
        {
            ws->in = ngx_http_twirt_ws_spare[i];
            ngx_http_twirt_ws_spare[i] = NULL;
            break;
        }
    }

    if (ws->in == NULL) {
        ws->in = ngx_alloc(ws->conf->buffer_size, ws->connection->log);
        if (ws->in == NULL) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                    "out of memory");
            return NGX_ERROR;
        }
    }

    ws->in_pos = ws->in;
    ws->in_last = ws->in;

    return NGX_OK;
}


/* an empty input buffer goes back to the worker (all: whatever it holds) */

static void
ngx_http_twirt_ws_in_release(ngx_http_twirt_ws_t *ws)
{
    ngx_uint_t  i, slot;

    slot = NGX_HTTP_TWIRT_WS_SPARES;

    for (i = 0; i < NGX_HTTP_TWIRT_WS_SPARES; i++) {
        if (ngx_http_twirt_ws_spare[i] == NULL) {
            slot = ngx_min(slot, i);

        } else if (ngx_http_twirt_ws_spare_size[i] == ws->conf->buffer_size) {
            /* one of each size is enough */
            slot = NGX_HTTP_TWIRT_WS_SPARES;
            break;
        }
    }

    if (slot < NGX_HTTP_TWIRT_WS_SPARES) {
        ngx_http_twirt_ws_spare[slot] = ws->in;
        ngx_http_twirt_ws_spare_size[slot] = ws->conf->buffer_size;

    } else {
        ngx_free(ws->in);
    }

    ws->in = NULL;
    ws->in_pos = NULL;
    ws->in_last = NULL;
}


static void
ngx_http_twirt_ws_in_put(ngx_http_twirt_ws_t *ws)
{
    if (ws->in && ws->in_pos == ws->in_last) {
        ngx_http_twirt_ws_in_release(ws);
    }
}


void
ngx_http_twirt_ws_read(ngx_http_twirt_ws_t *ws)
{
    ssize_t            n;
    ngx_event_t       *rev;
    ngx_connection_t  *c;

    c = ws->connection;
    rev = c->read;

    if (ws->closed) {
        ngx_http_twirt_ws_notify(ws);
        return;
    }

    if (rev->timedout) {
        rev->timedout = 0;

        if (ws->close_sent) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                    "close timeout");

        } else {
            ws->end = NGX_HTTP_TWIRT_END_IDLE_TIMEOUT;
            ws->error = "idle timeout";
            ngx_http_twirt_ws_close(ws, NGX_HTTP_TWIRT_WS_CLOSE_GOING_AWAY,
                                    "idle timeout");
        }

        ngx_http_twirt_ws_notify(ws);
        return;
    }

    /* frames that arrived with the handshake */

    if (ws->in_pos != ws->in_last && !ws->header
        && ngx_http_twirt_ws_process(ws) != NGX_OK)
    {
        ngx_http_twirt_ws_notify(ws);
        return;
    }

    ngx_http_twirt_ws_arrival = ngx_http_twirt_ws_now();

    while (rev->ready && !ws->closed) {

        if (ngx_http_twirt_ws_in_get(ws) != NGX_OK) {
            break;
        }

        n = c->recv(c, ws->in_last,
                    ws->in + ws->conf->buffer_size - ws->in_last);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                    (ws->close_received || ws->draining)
                                    ? NULL : "connection lost");
            break;
        }

        ngx_http_twirt_ws_metric(ws, BYTES_IN, n);

        if (ws->draining) {
            /* after failing the connection: only wait for the peer's EOF */
            continue;
        }

        ws->in_last += n;

        if (ngx_http_twirt_ws_process(ws) != NGX_OK) {
            break;
        }
    }

    ngx_http_twirt_ws_arrival = 0;

    if (!ws->closed) {
        ngx_http_twirt_ws_in_put(ws);

        if (ngx_handle_read_event(rev, 0) != NGX_OK) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                    "read event failed");

        } else if (ws->conf->idle_timeout && !ws->close_sent) {
            ngx_add_timer(rev, ws->conf->idle_timeout);
        }
    }

    ngx_http_twirt_ws_notify(ws);
}


/* parses and delivers every complete frame in the input buffer */

static ngx_int_t
ngx_http_twirt_ws_process(ngx_http_twirt_ws_t *ws)
{
    size_t                      left;
    ngx_int_t                   rc;
    unsigned                    type;
    ngx_http_twirt_ws_frame_t  *f;

    f = &ws->frame;

    while (!ws->closed) {

        if (!ws->header) {
            rc = ngx_http_twirt_ws_frame_parse(f, ws->in_pos,
                                               ws->in_last - ws->in_pos,
                                               ws->role,
                                               ws->conf->max_frame);
            if (rc == NGX_HTTP_TWIRT_WS_AGAIN) {
                break;
            }

            type = ws->msg_opcode;

            if (rc == NGX_HTTP_TWIRT_WS_OK) {
                rc = ngx_http_twirt_ws_frame_sequence(f, &ws->msg_opcode);
            }

            if (rc != NGX_HTTP_TWIRT_WS_OK) {
                ngx_http_twirt_ws_fail(ws, f->close_code, f->error);
                return NGX_ERROR;
            }

            if (!ngx_http_twirt_ws_is_control(f->opcode)) {
                if (f->opcode != NGX_HTTP_TWIRT_WS_CONT) {
                    type = f->opcode;
                    ws->msg_len = 0;
                    ngx_http_twirt_utf8_init(&ws->utf8);
                }

                if (ws->msg_len + f->payload_len > ws->conf->max_message) {
                    ngx_http_twirt_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_TOO_BIG,
                                           "message too big");
                    return NGX_ERROR;
                }

                ws->msg_type = type;
            }

            ws->in_pos += f->header_len;
            ws->frame_done = 0;
            ws->header = 1;
        }

        left = ws->in_last - ws->in_pos;

        /* a whole unfragmented data frame in the buffer: no copy */

        if (ws->frame_done == 0
            && left >= f->payload_len
            && f->fin
            && f->opcode != NGX_HTTP_TWIRT_WS_CONT
            && !ngx_http_twirt_ws_is_control(f->opcode))
        {
            if (f->masked) {
                ngx_http_twirt_ws_unmask(ws->in_pos, f->payload_len, f->mask,
                                         0);
            }

            ws->header = 0;
            ws->frames_in++;
            ngx_http_twirt_ws_metric(ws, FRAMES_IN, 1);

            rc = ngx_http_twirt_ws_message(ws, f->opcode, ws->in_pos,
                                           f->payload_len);

            ws->in_pos += f->payload_len;

            if (rc != NGX_OK) {
                return NGX_ERROR;
            }

            continue;
        }

        rc = ngx_http_twirt_ws_payload(ws);

        if (rc == NGX_AGAIN) {
            break;
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    /* keep what is left of a frame at the start of the buffer */

    if (ws->in_pos == ws->in_last) {
        ws->in_pos = ws->in;
        ws->in_last = ws->in;

    } else if (ws->in_pos != ws->in) {
        ws->in_last = ngx_movemem(ws->in, ws->in_pos,
                                  ws->in_last - ws->in_pos);
        ws->in_pos = ws->in;
    }

    return ws->closed ? NGX_ERROR : NGX_OK;
}


/* moves the payload piecewise into the message or control buffer */

static ngx_int_t
ngx_http_twirt_ws_payload(ngx_http_twirt_ws_t *ws)
{
    u_char                     *dst;
    size_t                      n;
    ngx_uint_t                  control;
    ngx_http_twirt_ws_frame_t  *f;

    f = &ws->frame;
    control = ngx_http_twirt_ws_is_control(f->opcode);

    n = ngx_min((uint64_t) (ws->in_last - ws->in_pos),
                f->payload_len - ws->frame_done);

    if (control) {
        dst = ws->control + ws->frame_done;

    } else {
        if (ngx_http_twirt_ws_msg_reserve(ws, ws->msg_len + n) != NGX_OK) {
            ngx_http_twirt_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL,
                                   "out of memory");
            return NGX_ERROR;
        }

        dst = ws->msg + ws->msg_len;
    }

    ngx_memcpy(dst, ws->in_pos, n);

    if (f->masked) {
        ngx_http_twirt_ws_unmask(dst, n, f->mask, ws->frame_done);
    }

    ws->in_pos += n;
    ws->frame_done += n;

    if (!control) {
        ws->msg_len += n;

        if (ws->msg_type == NGX_HTTP_TWIRT_WS_TEXT
            && ngx_http_twirt_utf8_feed(&ws->utf8, dst, n)
               != NGX_HTTP_TWIRT_WS_OK)
        {
            ngx_http_twirt_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA,
                                   "invalid utf-8 in text message");
            return NGX_ERROR;
        }
    }

    if (ws->frame_done < f->payload_len) {
        return NGX_AGAIN;
    }

    ws->header = 0;
    ws->frames_in++;
    ngx_http_twirt_ws_metric(ws, FRAMES_IN, 1);

    if (control) {
        return ngx_http_twirt_ws_control(ws, ws->control, f->payload_len);
    }

    if (!f->fin) {
        return NGX_OK;
    }

    if (ws->msg_type == NGX_HTTP_TWIRT_WS_TEXT
        && ngx_http_twirt_utf8_finish(&ws->utf8) != NGX_HTTP_TWIRT_WS_OK)
    {
        ngx_http_twirt_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA,
                               "invalid utf-8 in text message");
        return NGX_ERROR;
    }

    n = ws->msg_len;
    ws->msg_len = 0;

    return ngx_http_twirt_ws_message(ws, ws->msg_type, ws->msg, n);
}


static ngx_int_t
ngx_http_twirt_ws_message(ngx_http_twirt_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_http_twirt_utf8_t  u;

    if (ws->close_sent) {
        /* after our close only the peer's close matters */
        return NGX_OK;
    }

    if (opcode == NGX_HTTP_TWIRT_WS_TEXT && data != ws->msg) {
        ngx_http_twirt_utf8_init(&u);

        if (ngx_http_twirt_utf8_feed(&u, data, len) != NGX_HTTP_TWIRT_WS_OK
            || ngx_http_twirt_utf8_finish(&u) != NGX_HTTP_TWIRT_WS_OK)
        {
            ngx_http_twirt_ws_fail(ws, NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA,
                                   "invalid utf-8 in text message");
            return NGX_ERROR;
        }
    }

    ws->on_message(ws, opcode, data, len);

    return ws->closed ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_http_twirt_ws_control(ngx_http_twirt_ws_t *ws, u_char *data, size_t len)
{
    unsigned                    code, error_code;
    const unsigned char        *reason;
    size_t                      reason_len;
#if (NGX_DEBUG)
    ngx_http_twirt_log_text_t   t;
#endif

    switch (ws->frame.opcode) {

    case NGX_HTTP_TWIRT_WS_PING:
        if (!ws->close_sent) {
            return ngx_http_twirt_ws_send(ws, NGX_HTTP_TWIRT_WS_PONG, data,
                                          len)
                   == NGX_ERROR ? NGX_ERROR : NGX_OK;
        }

        return NGX_OK;

    case NGX_HTTP_TWIRT_WS_PONG:
        return NGX_OK;

    default: /* NGX_HTTP_TWIRT_WS_CLOSE */
        break;
    }

    if (ngx_http_twirt_ws_close_parse(data, len, &code, &reason, &reason_len,
                                      &error_code)
        != NGX_HTTP_TWIRT_WS_OK)
    {
        ngx_http_twirt_ws_fail(ws, error_code, "invalid close frame");
        return NGX_ERROR;
    }

    ws->close_received = 1;
    ws->peer_close_code = code;

    ws->peer_close_reason.data = ngx_pnalloc(ws->connection->pool,
                                             reason_len);
    if (ws->peer_close_reason.data) {
        ngx_memcpy(ws->peer_close_reason.data, reason, reason_len);
        ws->peer_close_reason.len = reason_len;
    }

    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ws->connection->log, 0,
                   "twirt: %s sent close %ui \"%V\"", ws->peer,
                   ws->peer_close_code,
                   ngx_http_twirt_log_str(&t, &ws->peer_close_reason));

    if (!ws->close_sent) {
        /* echo the code; "no status" is answered with an empty close */
        ngx_http_twirt_ws_close(ws, code == NGX_HTTP_TWIRT_WS_CLOSE_NO_STATUS
                                    ? 0 : code, NULL);
    }

    if (ws->out_pos == ws->out_last) {
        ws->closed = 1;
    }

    return NGX_ERROR;
}


void
ngx_http_twirt_ws_write(ngx_http_twirt_ws_t *ws)
{
    ssize_t              n;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    c = ws->connection;

    if (ws->closed) {
        ngx_http_twirt_ws_notify(ws);
        return;
    }

    r = ws->request;

    if (r && r->out) {
        /* the rest of the 101 response header */
        if (ngx_http_output_filter(r, NULL) == NGX_ERROR) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                    "send failed");
            ngx_http_twirt_ws_notify(ws);
            return;
        }
    }

    while (ws->out_pos < ws->out_last && (r == NULL || r->out == NULL)) {

        n = c->send(c, ws->out_pos, ws->out_last - ws->out_pos);

        if (n == NGX_ERROR) {
            ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                    "connection lost");
            ngx_http_twirt_ws_notify(ws);
            return;
        }

        if (n == NGX_AGAIN || n == 0) {
            break;
        }

        ws->out_pos += n;
        ngx_http_twirt_ws_metric(ws, BYTES_OUT, n);
    }

    if (ws->out_pos == ws->out_last) {
        ws->out_pos = ws->out;
        ws->out_last = ws->out;

        if (ws->queued_at) {
            ngx_http_twirt_metrics_observe(NGX_HTTP_TWIRT_H_BRIDGE,
                                           ngx_http_twirt_ws_now()
                                           - ws->queued_at);
            ws->queued_at = 0;
        }

        if (ws->close_sent && ws->close_received) {
            /* the handshake is complete */
            ws->closed = 1;

        } else if (ws->close_sent && ws->error && !ws->draining) {
            /*
             * We failed the connection.  Closing now, with the peer's
             * frames unread, would reset the connection and could lose our
             * close frame on its way: half-close and wait for the peer's
             * EOF instead (at most close_timeout).
             */
            if (c->ssl || ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1)
            {
                ws->closed = 1;

            } else {
                ws->draining = 1;
                ws->in_pos = ws->in;
                ws->in_last = ws->in;
            }
        }

    } else if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
        ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                "write event failed");
    }

    ngx_http_twirt_ws_notify(ws);
}


ngx_int_t
ngx_http_twirt_ws_send(ngx_http_twirt_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len)
{
    ngx_str_t  part;

    part.data = data;
    part.len = len;

    return ngx_http_twirt_ws_send_parts(ws, opcode, &part, 1);
}


/*
 * Queues one frame made of the parts, unfragmented; written when the event
 * loop comes back, so that a burst of frames goes out in one write.
 * NGX_DECLINED: the connection is closing and the frame was dropped.
 */

ngx_int_t
ngx_http_twirt_ws_send_parts(ngx_http_twirt_ws_t *ws, ngx_uint_t opcode,
    ngx_str_t *parts, ngx_uint_t n)
{
    u_char      *p, mask[4];
    size_t       len, hlen;
    uint64_t     done;
    ngx_uint_t   i;

    if (ws->closed) {
        return NGX_ERROR;
    }

    if (ws->close_sent) {
        return NGX_DECLINED;
    }

    len = 0;

    for (i = 0; i < n; i++) {
        len += parts[i].len;
    }

    if (ngx_http_twirt_ws_out_reserve(ws, NGX_HTTP_TWIRT_WS_MAX_HEADER + len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ws->role == NGX_HTTP_TWIRT_WS_CLIENT) {
        ngx_http_twirt_ws_mask(mask);
        hlen = ngx_http_twirt_ws_frame_header(ws->out_last, 1, opcode, len,
                                              mask);
    } else {
        hlen = ngx_http_twirt_ws_frame_header(ws->out_last, 1, opcode, len,
                                              NULL);
    }

    p = ws->out_last + hlen;
    done = 0;

    for (i = 0; i < n; i++) {
        ngx_memcpy(p, parts[i].data, parts[i].len);

        if (ws->role == NGX_HTTP_TWIRT_WS_CLIENT) {
            ngx_http_twirt_ws_unmask(p, parts[i].len, mask, done);
        }

        p += parts[i].len;
        done += parts[i].len;
    }

    if (ws->out_pos == ws->out_last && ws->queued_at == 0) {
        ws->queued_at = ngx_http_twirt_ws_arrival ? ngx_http_twirt_ws_arrival
                                                  : ngx_http_twirt_ws_now();
    }

    ws->out_last = p;
    ws->frames_out++;
    ngx_http_twirt_ws_metric(ws, FRAMES_OUT, 1);

    if (!ws->connection->write->posted) {
        ngx_post_event(ws->connection->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * Starts the close handshake: queues a close frame and waits for the
 * peer's close at most close_timeout.  code 0 sends an empty close.
 */

void
ngx_http_twirt_ws_close(ngx_http_twirt_ws_t *ws, ngx_uint_t code,
    const char *reason)
{
    u_char  payload[NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    size_t  len;

    if (ws->close_sent || ws->closed) {
        return;
    }

    len = ngx_http_twirt_ws_close_payload(payload, code, reason,
                                          reason ? ngx_strlen(reason) : 0);

    if (ngx_http_twirt_ws_send(ws, NGX_HTTP_TWIRT_WS_CLOSE, payload, len)
        != NGX_OK)
    {
        ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                                "close failed");
        return;
    }

    ws->close_sent = 1;
    ws->close_code = code;

    if (ws->connection->read->timer_set) {
        ngx_del_timer(ws->connection->read);
    }

    ngx_add_timer(&ws->close_timer, ws->conf->close_timeout);
}


/* the connection is unusable: no handshake, the owner is told */

void
ngx_http_twirt_ws_abort(ngx_http_twirt_ws_t *ws, ngx_http_twirt_end_e end,
    const char *error)
{
    if (ws->closed) {
        return;
    }

    ws->closed = 1;

    if (error && ws->error == NULL) {
        ws->end = end;
        ws->error = error;
    }

    if (ws->connection && !ws->connection->write->posted) {
        ngx_post_event(ws->connection->write, &ngx_posted_events);
    }
}


/* a protocol violation by the peer: close with the code, do not wait */

static void
ngx_http_twirt_ws_fail(ngx_http_twirt_ws_t *ws, ngx_uint_t code,
    const char *error)
{
    ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                  "twirt: %s %s, closing with %ui", ws->peer, error, code);

    ws->end = NGX_HTTP_TWIRT_END_TWILIO_PROTOCOL;
    ws->error = error;
    ngx_http_twirt_ws_close(ws, code, error);
}


static void
ngx_http_twirt_ws_close_timeout(ngx_event_t *ev)
{
    ngx_http_twirt_ws_t  *ws = ev->data;

    ngx_log_error(NGX_LOG_INFO, ws->connection->log, 0,
                  "twirt: %s did not answer our close in time", ws->peer);

    ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_TWILIO_LOST,
                            "close timeout");
    ngx_http_twirt_ws_notify(ws);
}


static void
ngx_http_twirt_ws_notify(ngx_http_twirt_ws_t *ws)
{
    if (!ws->closed || ws->notified) {
        return;
    }

    ws->notified = 1;

    if (ws->close_timer.timer_set) {
        ngx_del_timer(&ws->close_timer);
    }

    ws->on_closed(ws);
}


/*
 * Closes at once, without waiting for the peer's close: a close frame if
 * the socket takes it now, then ngx_http_twirt_ws_free().  For a
 * connection nobody is talking on (a pooled one); nothing is called back.
 */

void
ngx_http_twirt_ws_drop(ngx_http_twirt_ws_t *ws, ngx_uint_t code)
{
    u_char             payload[NGX_HTTP_TWIRT_WS_MAX_CONTROL];
    size_t             len;
    ssize_t            n;
    ngx_connection_t  *c;

    c = ws->connection;

    if (c && !ws->closed && !ws->close_sent) {
        len = ngx_http_twirt_ws_close_payload(payload, code, NULL, 0);

        if (ngx_http_twirt_ws_send(ws, NGX_HTTP_TWIRT_WS_CLOSE, payload, len)
            == NGX_OK)
        {
            while (ws->out_pos < ws->out_last) {
                n = c->send(c, ws->out_pos, ws->out_last - ws->out_pos);

                if (n <= 0) {
                    break;
                }

                ws->out_pos += n;
            }
        }
    }

    ngx_http_twirt_ws_free(ws);
}


/* closes the connection and releases the buffers; the owner's last call */

void
ngx_http_twirt_ws_free(ngx_http_twirt_ws_t *ws)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    if (ws->close_timer.timer_set) {
        ngx_del_timer(&ws->close_timer);
    }

    c = ws->connection;

    if (c) {
        if (c->write->posted) {
            ngx_delete_posted_event(c->write);
        }

        if (c->read->posted) {
            ngx_delete_posted_event(c->read);
        }

        if (c->read->timer_set) {
            ngx_del_timer(c->read);
        }

        ws->connection = NULL;

        if (ws->request) {
            r = ws->request;
            ws->request = NULL;

            /* the request may linger a moment: nothing of ours is left */
            r->read_event_handler = ngx_http_block_reading;
            r->write_event_handler = ngx_http_request_empty_handler;

            r->keepalive = 0;
            r->lingering_close = 0;
            ngx_http_finalize_request(r, NGX_DONE);

        } else {
            ngx_http_twirt_connect_close(c);
        }
    }

    if (ws->in) {
        ngx_http_twirt_ws_in_release(ws);
    }

    if (ws->msg) {
        ngx_free(ws->msg);
        ws->msg = NULL;
    }

    if (ws->out) {
        ngx_free(ws->out);
        ws->out = NULL;
    }
}


static ngx_int_t
ngx_http_twirt_ws_msg_reserve(ngx_http_twirt_ws_t *ws, size_t size)
{
    u_char  *p;
    size_t   n;

    if (size <= ws->msg_size) {
        return NGX_OK;
    }

    n = ngx_max(size, ngx_min(ws->msg_size * 2, ws->conf->max_message));
    n = ngx_max(n, 1024);

    p = ngx_alloc(n, ws->connection->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (ws->msg) {
        ngx_memcpy(p, ws->msg, ws->msg_len);
        ngx_free(ws->msg);
    }

    ws->msg = p;
    ws->msg_size = n;

    return NGX_OK;
}


/*
 * Room for size more bytes at the end of the output queue; the queue
 * never holds more than max_queue bytes: a peer that stops reading cannot
 * make memory grow.
 */

static ngx_int_t
ngx_http_twirt_ws_out_reserve(ngx_http_twirt_ws_t *ws, size_t size)
{
    u_char  *p;
    size_t   pending, n;

    if ((size_t) (ws->out_end - ws->out_last) >= size) {
        return NGX_OK;
    }

    pending = ws->out_last - ws->out_pos;

    if (pending + size > ws->conf->max_queue) {
        ngx_log_error(NGX_LOG_ERR, ws->connection->log, 0,
                      "twirt: %s does not read: %uz bytes queued, over the "
                      "limit of %uz", ws->peer, pending + size,
                      ws->conf->max_queue);

        ws->end = NGX_HTTP_TWIRT_END_TWILIO_QUEUE_FULL;
        ws->error = "send queue full";
        ngx_http_twirt_ws_abort(ws, ws->end, ws->error);
        return NGX_ERROR;
    }

    if ((size_t) (ws->out_end - ws->out) >= pending + size) {
        ws->out_last = ngx_movemem(ws->out, ws->out_pos, pending);
        ws->out_pos = ws->out;
        return NGX_OK;
    }

    n = ngx_max(pending + size, (size_t) (ws->out_end - ws->out) * 2);
    n = ngx_max(n, 2048);

    p = ngx_alloc(n, ws->connection->log);
    if (p == NULL) {
        ngx_http_twirt_ws_abort(ws, NGX_HTTP_TWIRT_END_NO_MEMORY,
                                "out of memory");
        return NGX_ERROR;
    }

    if (ws->out) {
        ngx_memcpy(p, ws->out_pos, pending);
        ngx_free(ws->out);
    }

    ws->out = p;
    ws->out_pos = p;
    ws->out_last = p + pending;
    ws->out_end = p + n;

    return NGX_OK;
}


/* microseconds, monotonic */

static uint64_t
ngx_http_twirt_ws_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* masks from a strong source, fetched in batches: one call per 64 frames */

static void
ngx_http_twirt_ws_mask(u_char mask[4])
{
    static u_char      pool[256];
    static ngx_uint_t  next = sizeof(pool);

    if (next == sizeof(pool)) {
        if (RAND_bytes(pool, sizeof(pool)) != 1) {
            ngx_uint_t  i;

            for (i = 0; i < sizeof(pool); i++) {
                pool[i] = (u_char) ngx_random();
            }
        }

        next = 0;
    }

    ngx_memcpy(mask, &pool[next], 4);
    next += 4;
}
