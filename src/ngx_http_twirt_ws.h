
/*
 * A WebSocket connection over an nginx connection: frames in and out,
 * a bounded output queue, ping/pong, the close handshake and its timer.
 * The Twilio side (we are the server) and the Realtime side (we are the
 * client) are both one of these; the owner gets "message" and "closed"
 * callbacks.
 */


#ifndef _NGX_HTTP_TWIRT_WS_H_INCLUDED_
#define _NGX_HTTP_TWIRT_WS_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_ws_frame.h"
#include "ngx_http_twirt_end.h"


typedef void (*ngx_http_twirt_ws_message_pt)(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, u_char *data, size_t len);
typedef void (*ngx_http_twirt_ws_closed_pt)(ngx_http_twirt_ws_t *ws);


struct ngx_http_twirt_ws_s {
    ngx_connection_t               *connection;
    ngx_http_request_t             *request;     /* server side only */
    ngx_http_twirt_ws_conf_t       *conf;
    const char                     *peer;        /* "twilio", "upstream" */
    ngx_int_t                       role;

    void                           *data;
    ngx_http_twirt_ws_message_pt    on_message;
    ngx_http_twirt_ws_closed_pt     on_closed;

    /* input: raw bytes, then the message being reassembled */
    u_char                         *in;
    u_char                         *in_pos;
    u_char                         *in_last;
    ngx_http_twirt_ws_frame_t       frame;
    uint64_t                        frame_done;  /* payload bytes consumed */
    u_char                         *msg;
    size_t                          msg_len;
    size_t                          msg_size;
    unsigned                        msg_opcode;  /* for the sequence rules */
    unsigned                        msg_type;    /* of the message built */
    ngx_http_twirt_utf8_t           utf8;
    u_char                          control[NGX_HTTP_TWIRT_WS_MAX_CONTROL];

    /* output: one contiguous queue of whole frames */
    u_char                         *out;
    u_char                         *out_pos;
    u_char                         *out_last;
    u_char                         *out_end;
    uint64_t                        queued_at;   /* µs: oldest unsent */

    ngx_event_t                     close_timer;

    ngx_uint_t                      frames_in;
    ngx_uint_t                      frames_out;

    /* how it ended: codes sent and received, and why */
    ngx_uint_t                      close_code;
    ngx_uint_t                      peer_close_code;
    ngx_str_t                       peer_close_reason;
    ngx_http_twirt_end_e            end;         /* as a Twilio-side kind */
    const char                     *error;       /* its words, for the log */

    unsigned                        header:1;    /* a frame header is held */
    unsigned                        close_sent:1;
    unsigned                        close_received:1;
    unsigned                        closed:1;    /* no more I/O */
    unsigned                        notified:1;  /* on_closed was called */
    unsigned                        draining:1;  /* failed, awaiting EOF */
};


ngx_http_twirt_ws_t *ngx_http_twirt_ws_create(ngx_pool_t *pool,
    ngx_connection_t *c, ngx_http_twirt_ws_conf_t *conf, ngx_int_t role);
ngx_int_t ngx_http_twirt_ws_keep(ngx_http_twirt_ws_t *ws, u_char *data,
    size_t len);
ngx_int_t ngx_http_twirt_ws_feed(ngx_http_twirt_ws_t *ws, u_char *data,
    size_t len);
void ngx_http_twirt_ws_read(ngx_http_twirt_ws_t *ws);
void ngx_http_twirt_ws_write(ngx_http_twirt_ws_t *ws);
ngx_int_t ngx_http_twirt_ws_send(ngx_http_twirt_ws_t *ws, ngx_uint_t opcode,
    u_char *data, size_t len);
ngx_int_t ngx_http_twirt_ws_send_parts(ngx_http_twirt_ws_t *ws,
    ngx_uint_t opcode, ngx_str_t *parts, ngx_uint_t n);
void ngx_http_twirt_ws_close(ngx_http_twirt_ws_t *ws, ngx_uint_t code,
    const char *reason);
void ngx_http_twirt_ws_abort(ngx_http_twirt_ws_t *ws,
    ngx_http_twirt_end_e end, const char *error);
void ngx_http_twirt_ws_drop(ngx_http_twirt_ws_t *ws, ngx_uint_t code);
void ngx_http_twirt_ws_free(ngx_http_twirt_ws_t *ws);


#endif /* _NGX_HTTP_TWIRT_WS_H_INCLUDED_ */
