
/*
 * A WebSocket connection for the benchmark tools: bounded input and
 * output buffers over a non-blocking socket, frames parsed and built with
 * twirt's frame codec (src/ngx_http_twirt_ws_frame.h), fragmented
 * messages reassembled, and the HTTP upgrade arithmetic of both sides.
 */


#ifndef _BENCH_WS_H_INCLUDED_
#define _BENCH_WS_H_INCLUDED_


#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "ngx_http_twirt_ws_frame.h"


#define BENCH_WS_KEY_LEN      24
#define BENCH_WS_ACCEPT_LEN   28

#define BENCH_WS_AGAIN        -2


typedef struct {
    int              fd;
    int              role;         /* ours: NGX_HTTP_TWIRT_WS_SERVER/CLIENT */

    SSL             *ssl;          /* TLS over fd, or NULL */
    unsigned         tls_handshake:1;   /* not done yet */
    unsigned         tls_want_write:1;  /* it waits for the socket */

    unsigned char   *in;
    size_t           in_start;
    size_t           in_end;
    size_t           in_size;

    unsigned char   *out;
    size_t           out_start;
    size_t           out_end;
    size_t           out_size;

    unsigned char   *msg;          /* fragments, allocated when needed */
    size_t           msg_len;
    size_t           max_message;
    unsigned         message;      /* opcode of the fragmented message */

    unsigned         close_code;   /* after an error: close with this */
    const char      *error;
} bench_ws_t;


typedef struct {
    unsigned         opcode;
    unsigned char   *data;         /* valid until the next bench_ws_next() */
    size_t           len;
} bench_ws_msg_t;


/*
 * TLS: a client context verifying peers with the CAs in ca (NULL: the
 * system's), a server one with a certificate chain and key; NULL with a
 * message in err.  bench_ws_tls() starts TLS on a connection (name: the
 * peer's address to verify, for a client); bench_ws_tls_handshake() goes
 * on with the handshake: 0 done, 1 not yet (tls_want_write says for
 * which event), -1 failed (error set).  Once done, bench_ws_read() and
 * bench_ws_flush() go through TLS.
 */
SSL_CTX *bench_tls_client_ctx(const char *ca, char *err, size_t n);
SSL_CTX *bench_tls_server_ctx(const char *cert, const char *key, char *err,
    size_t n);
int bench_ws_tls(bench_ws_t *ws, SSL_CTX *ctx, const char *name);
int bench_ws_tls_handshake(bench_ws_t *ws);

/* fills p[0..n) from the kernel's random source, through a pool */
void bench_random(void *p, size_t n);

int bench_ws_init(bench_ws_t *ws, int fd, int role, size_t max_message,
    size_t out_size);
void bench_ws_free(bench_ws_t *ws);

/*
 * Reads once into the input buffer: bytes read, 0 at end of stream, -1 on
 * an error (errno), BENCH_WS_AGAIN when nothing is there.
 */
ssize_t bench_ws_read(bench_ws_t *ws);

/*
 * The next complete message or control frame from the input: 1 with m
 * set, 0 when more bytes are needed, -1 on a protocol error (close_code
 * and error set).
 */
int bench_ws_next(bench_ws_t *ws, bench_ws_msg_t *m);

/*
 * Sending: reserve room for a payload of at most max bytes and write it
 * at the returned address, then commit its real length; masked with a
 * fresh random key when we are the client.  NULL / -1: the output buffer
 * is full.
 */
unsigned char *bench_ws_reserve(bench_ws_t *ws, size_t max);
int bench_ws_commit(bench_ws_t *ws, unsigned opcode, size_t len);
int bench_ws_send(bench_ws_t *ws, unsigned opcode, const void *p,
    size_t len);

/* raw bytes (the HTTP handshake) into the output buffer */
int bench_ws_send_raw(bench_ws_t *ws, const void *p, size_t len);

/* writes what is buffered: 0 all written, 1 some left (wait for EPOLLOUT),
 * -1 on an error */
int bench_ws_flush(bench_ws_t *ws);

#define bench_ws_pending(ws)  ((ws)->out_end - (ws)->out_start)

/* takes n bytes off the front of the input (the HTTP header) */
void bench_ws_consume(bench_ws_t *ws, size_t n);


/*
 * HTTP: the length of the header block including "\r\n\r\n", or 0 if it
 * is not complete; a header's trimmed value (first occurrence, name
 * case-insensitive); whether a comma-separated value holds a token.
 */
size_t bench_http_header_end(const unsigned char *p, size_t len);
int bench_http_header(const unsigned char *p, size_t len, const char *name,
    const unsigned char **value, size_t *vlen);
int bench_http_has_token(const unsigned char *v, size_t len,
    const char *token);

/* a fresh Sec-WebSocket-Key and the accept value for a key */
void bench_ws_key(char key[BENCH_WS_KEY_LEN + 1]);
int bench_ws_accept(const unsigned char *key, size_t len,
    char accept[BENCH_WS_ACCEPT_LEN + 1]);


#endif /* _BENCH_WS_H_INCLUDED_ */
