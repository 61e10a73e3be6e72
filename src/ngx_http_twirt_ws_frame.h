
/*
 * The WebSocket frame codec (RFC 6455): frame headers, masking,
 * fragmentation order, UTF-8 and close payload validation, and the
 * handshake key arithmetic.  Pure C without nginx types so that it can be
 * unit-tested and fuzzed alone; both the Twilio side (we are the server)
 * and the OpenAI side (we are the client) use it.
 */


#ifndef _NGX_HTTP_TWIRT_WS_FRAME_H_INCLUDED_
#define _NGX_HTTP_TWIRT_WS_FRAME_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>


#define NGX_HTTP_TWIRT_WS_OK              0
#define NGX_HTTP_TWIRT_WS_ERROR          -1
#define NGX_HTTP_TWIRT_WS_AGAIN          -2

#define NGX_HTTP_TWIRT_WS_SERVER          0
#define NGX_HTTP_TWIRT_WS_CLIENT          1

#define NGX_HTTP_TWIRT_WS_MAX_HEADER      14
#define NGX_HTTP_TWIRT_WS_MAX_CONTROL     125
#define NGX_HTTP_TWIRT_WS_ACCEPT_LEN      28

#define NGX_HTTP_TWIRT_WS_CONT            0x0
#define NGX_HTTP_TWIRT_WS_TEXT            0x1
#define NGX_HTTP_TWIRT_WS_BINARY          0x2
#define NGX_HTTP_TWIRT_WS_CLOSE           0x8
#define NGX_HTTP_TWIRT_WS_PING            0x9
#define NGX_HTTP_TWIRT_WS_PONG            0xa

#define ngx_http_twirt_ws_is_control(opcode)  ((opcode) & 0x8)

#define NGX_HTTP_TWIRT_WS_CLOSE_NORMAL        1000
#define NGX_HTTP_TWIRT_WS_CLOSE_GOING_AWAY    1001
#define NGX_HTTP_TWIRT_WS_CLOSE_PROTOCOL      1002
#define NGX_HTTP_TWIRT_WS_CLOSE_NO_STATUS     1005
#define NGX_HTTP_TWIRT_WS_CLOSE_BAD_DATA      1007
#define NGX_HTTP_TWIRT_WS_CLOSE_POLICY        1008
#define NGX_HTTP_TWIRT_WS_CLOSE_TOO_BIG       1009
#define NGX_HTTP_TWIRT_WS_CLOSE_INTERNAL      1011


typedef struct {
    unsigned        fin:1;
    unsigned        rsv:3;
    unsigned        opcode:4;
    unsigned        masked:1;
    uint64_t        payload_len;
    unsigned char   mask[4];
    size_t          header_len;
    unsigned        close_code;  /* on ERROR: the code to close with */
    const char     *error;       /* on ERROR: static lowercase reason */
} ngx_http_twirt_ws_frame_t;


typedef struct {
    uint32_t        state;       /* continuation bytes still expected */
    unsigned char   lo;          /* range of the next continuation byte */
    unsigned char   hi;
} ngx_http_twirt_utf8_t;


/*
 * Parses one frame header from p[0..len).  OK: the fields and header_len
 * are set.  AGAIN: the header is incomplete, retry with more bytes.
 * ERROR: close_code and error are set.  role is ours: a SERVER requires
 * masked frames from its peer, a CLIENT requires unmasked ones.  Lengths
 * in non-minimal encodings are accepted.
 */
int ngx_http_twirt_ws_frame_parse(ngx_http_twirt_ws_frame_t *f,
    const unsigned char *p, size_t len, int role, uint64_t max_payload);

/*
 * Checks a parsed frame against the fragmentation rules (RFC 6455 5.4).
 * *message is the opcode of the data message in progress (TEXT or BINARY),
 * or CONT when there is none; it is updated on OK.  On ERROR, f->close_code
 * and f->error are set.
 */
int ngx_http_twirt_ws_frame_sequence(ngx_http_twirt_ws_frame_t *f,
    unsigned *message);

/*
 * XORs p[0..len) with the mask in place; offset is the number of payload
 * bytes of this frame already done, so that a payload can be unmasked
 * piecewise as it arrives.  Masking is the same operation.
 */
void ngx_http_twirt_ws_unmask(unsigned char *p, size_t len,
    const unsigned char mask[4], uint64_t offset);

/*
 * Writes a frame header into out (NGX_HTTP_TWIRT_WS_MAX_HEADER bytes at
 * least) and returns its length.  mask NULL: unmasked (server frames);
 * otherwise the 4-byte key is written (client frames) and the caller masks
 * the payload with ngx_http_twirt_ws_unmask().
 */
size_t ngx_http_twirt_ws_frame_header(unsigned char *out, unsigned fin,
    unsigned opcode, uint64_t payload_len, const unsigned char *mask);

/*
 * Strict RFC 3629 validation that can be fed a message piecewise: no
 * overlong forms, no surrogates, nothing above U+10FFFF.  Errors stick.
 */
void ngx_http_twirt_utf8_init(ngx_http_twirt_utf8_t *u);
int ngx_http_twirt_utf8_feed(ngx_http_twirt_utf8_t *u,
    const unsigned char *p, size_t len);
int ngx_http_twirt_utf8_finish(ngx_http_twirt_utf8_t *u);

/*
 * Validates a close frame payload.  An empty one yields *code 1005.  On
 * ERROR, *close_code_on_error is 1002 (bad length or code) or 1007 (the
 * reason is not UTF-8).  *reason points into p.
 */
int ngx_http_twirt_ws_close_parse(const unsigned char *p, size_t len,
    unsigned *code, const unsigned char **reason, size_t *reason_len,
    unsigned *close_code_on_error);

/*
 * Builds a close payload into out (NGX_HTTP_TWIRT_WS_MAX_CONTROL bytes at
 * least): the code, then the reason cut to fit without splitting a UTF-8
 * sequence.  Code 0 builds the empty payload ("no status").  Returns the
 * length.
 */
size_t ngx_http_twirt_ws_close_payload(unsigned char *out, unsigned code,
    const char *reason, size_t reason_len);

/*
 * Sec-WebSocket-Key: OK if the (trimmed) value is the base64 of exactly
 * 16 bytes, else ERROR.  Sec-WebSocket-Accept: writes the 28 characters
 * into out and returns 28, or 0 if OpenSSL failed.
 */
int ngx_http_twirt_ws_key_valid(const unsigned char *key, size_t len);
size_t ngx_http_twirt_ws_accept(const unsigned char *key, size_t len,
    unsigned char out[NGX_HTTP_TWIRT_WS_ACCEPT_LEN]);


#endif /* _NGX_HTTP_TWIRT_WS_FRAME_H_INCLUDED_ */
