
/*
 * realtime_echo: an OpenAI Realtime API simulator for benchmarks.
 *
 * One thread, epoll.  Accepts the WebSocket upgrade (a bearer token is
 * required), sends session.created, answers session.update with
 * session.updated, and answers every input_audio_buffer.append at once
 * with a response.output_audio.delta that carries the same base64 audio.
 * Everything else is counted and ignored.  Client frames must be masked.
 * With --transcripts MS, each connection also gets, every MS milliseconds,
 * what ends a spoken answer: response.output_audio_transcript.done (a
 * Japanese line) and response.done with its usage, so that the gateway
 * has transcript and cost events to record (the board bench).
 *
 *   realtime_echo --listen 127.0.0.1:0 --ready-file /tmp/echo.port
 *
 * SIGTERM or SIGINT stops it; it reports its counters and its own CPU
 * time on stderr (and as JSON with --json FILE).
 */


#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench_codec.h"
#include "bench_net.h"
#include "bench_stats.h"
#include "bench_ws.h"


#define ECHO_MAX_MESSAGE     (256 * 1024)
#define ECHO_OUT_SIZE        (ECHO_MAX_MESSAGE + 64 * 1024)
#define ECHO_MAX_HANDSHAKE   8192
#define ECHO_EVENTS          256

#define ECHO_HANDSHAKE       0
#define ECHO_OPEN            1
#define ECHO_CLOSING         2      /* flush what is left, then close */


typedef struct {
    bench_ws_t          ws;
    int                 state;
    unsigned            want_out:1;
    unsigned            close_sent:1;
    unsigned long       id;
    unsigned long       answers;         /* --transcripts: answers sent */
    unsigned long       events;          /* deltas sent: their event_ids */
    uint64_t            next_answer;     /* when the next one is due, ns */
} echo_conn_t;


typedef struct {
    unsigned long       accepted;
    unsigned long       refused;         /* over --max-conns */
    unsigned long       upgraded;
    unsigned long       bad_handshake;
    unsigned long       unauthorized;
    unsigned long       closed;
    unsigned long       active;
    unsigned long       active_max;
    unsigned long       messages_in;
    unsigned long       appends;
    unsigned long       deltas_out;
    unsigned long       session_updates;
    unsigned long       ignored;
    unsigned long       transcripts_out;
    unsigned long       responses_done;
    unsigned long       bad_json;
    unsigned long       binary;
    unsigned long       pings;
    unsigned long       protocol_errors;
    unsigned long       overflows;
    unsigned long long  audio_bytes;     /* base64 characters echoed */
} echo_stats_t;


static void echo_accept(void);
static void echo_event(echo_conn_t *c, uint32_t events);
static int echo_handshake(echo_conn_t *c);
static int echo_refuse(echo_conn_t *c, const char *status, const char *why);
static int echo_message(echo_conn_t *c, bench_ws_msg_t *m);
static int echo_text(echo_conn_t *c, const unsigned char *p, size_t len);
static int echo_answer(echo_conn_t *c);
static int echo_send_text(echo_conn_t *c, const char *buf, size_t n,
    size_t size);
static int echo_close(echo_conn_t *c, unsigned code, const char *reason);
static int echo_out(echo_conn_t *c, size_t need);
static void echo_io(echo_conn_t *c);
static void echo_free(echo_conn_t *c);
static void echo_report(void);
static void echo_signal(int signo);
static void echo_usage(void);


static int                   echo_ep;
static int                   echo_lfd;
static int                   echo_quiet;
static unsigned long         echo_max_conns = 10000;
static unsigned long         echo_next_id;
static uint64_t              echo_answer_every;     /* ns, 0: never */
static const char           *echo_json;
static echo_stats_t          echo_stats;
static volatile sig_atomic_t echo_stop;
static uint64_t              echo_started;


int
main(int argc, char **argv)
{
    int                  i, n;
    char                 err[256];
    FILE                *f;
    double               v, max_time;
    sigset_t             block, orig;
    uint64_t             deadline, now;
    socklen_t            len;
    bench_url_t          listen_addr;
    unsigned long        nofile;
    struct timespec      ts;
    struct sigaction     sa;
    struct epoll_event   ev, events[ECHO_EVENTS];
    const char          *listen_s, *ready;
    struct sockaddr_storage  bound;

    listen_s = "127.0.0.1:0";
    ready = NULL;
    max_time = 3600;

    for (i = 1; i < argc; i++) {

        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_s = argv[++i];

        } else if (strcmp(argv[i], "--ready-file") == 0 && i + 1 < argc) {
            ready = argv[++i];

        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            echo_json = argv[++i];

        } else if (strcmp(argv[i], "--max-conns") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 1, 100000, &v) != 0) {
                echo_usage();
            }

            echo_max_conns = (unsigned long) v;

        } else if (strcmp(argv[i], "--max-time") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 1, 86400, &max_time) != 0) {
                echo_usage();
            }

        } else if (strcmp(argv[i], "--transcripts") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 1, 3600000, &v) != 0) {
                echo_usage();
            }

            echo_answer_every = (uint64_t) (v * 1e6);

        } else if (strcmp(argv[i], "--quiet") == 0) {
            echo_quiet = 1;

        } else {
            echo_usage();
        }
    }

    if (bench_listen_parse(listen_s, &listen_addr, err, sizeof(err)) != 0) {
        fprintf(stderr, "realtime_echo: %s\n", err);
        return 2;
    }

    nofile = bench_nofile(echo_max_conns + 64);

    if (nofile < echo_max_conns + 64) {
        if (nofile < 128) {
            fprintf(stderr, "realtime_echo: only %lu file descriptors\n",
                    nofile);
            return 2;
        }

        echo_max_conns = nofile - 64;
        fprintf(stderr, "realtime_echo: file descriptors limited to %lu: "
                "at most %lu connections\n", nofile, echo_max_conns);
    }

    echo_lfd = bench_socket(&listen_addr.sa);
    if (echo_lfd == -1) {
        fprintf(stderr, "realtime_echo: socket() failed: %s\n",
                strerror(errno));
        return 2;
    }

    n = 1;
    (void) setsockopt(echo_lfd, SOL_SOCKET, SO_REUSEADDR, &n, sizeof(int));

    if (bind(echo_lfd, (struct sockaddr *) &listen_addr.sa,
             listen_addr.socklen) != 0
        || listen(echo_lfd, 4096) != 0)
    {
        fprintf(stderr, "realtime_echo: cannot listen on %s: %s\n",
                listen_s, strerror(errno));
        return 2;
    }

    len = sizeof(bound);
    if (getsockname(echo_lfd, (struct sockaddr *) &bound, &len) != 0) {
        fprintf(stderr, "realtime_echo: getsockname() failed: %s\n",
                strerror(errno));
        return 2;
    }

    echo_ep = epoll_create1(EPOLL_CLOEXEC);
    if (echo_ep == -1) {
        fprintf(stderr, "realtime_echo: epoll_create1() failed: %s\n",
                strerror(errno));
        return 2;
    }

    ev.events = EPOLLIN;
    ev.data.ptr = NULL;

    if (epoll_ctl(echo_ep, EPOLL_CTL_ADD, echo_lfd, &ev) != 0) {
        fprintf(stderr, "realtime_echo: epoll_ctl() failed: %s\n",
                strerror(errno));
        return 2;
    }

    /* the signals only arrive inside epoll_pwait(): no lost wakeup */

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = echo_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, &orig);

    if (ready) {
        f = fopen(ready, "w");
        if (f == NULL) {
            fprintf(stderr, "realtime_echo: cannot write \"%s\": %s\n", ready,
                    strerror(errno));
            return 2;
        }

        fprintf(f, "%u\n", bound.ss_family == AF_INET
                ? ntohs(((struct sockaddr_in *) &bound)->sin_port)
                : ntohs(((struct sockaddr_in6 *) &bound)->sin6_port));
        fclose(f);
    }

    echo_started = bench_now();
    deadline = echo_started + (uint64_t) (max_time * 1e9);

    if (!echo_quiet) {
        fprintf(stderr, "realtime_echo: listening on %s, pid %d\n", listen_s,
                (int) getpid());
    }

    while (!echo_stop) {
        now = bench_now();

        if (now >= deadline) {
            fprintf(stderr, "realtime_echo: --max-time reached\n");
            break;
        }

        ts.tv_sec = (time_t) ((deadline - now) / 1000000000);
        ts.tv_nsec = (long) ((deadline - now) % 1000000000);

        n = epoll_pwait2(echo_ep, events, ECHO_EVENTS, &ts, &orig);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            fprintf(stderr, "realtime_echo: epoll_pwait2() failed: %s\n",
                    strerror(errno));
            break;
        }

        for (i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                echo_accept();

            } else {
                echo_event(events[i].data.ptr, events[i].events);
            }
        }
    }

    echo_report();

    return 0;
}


static void
echo_accept(void)
{
    int                  fd, one;
    echo_conn_t         *c;
    struct epoll_event   ev;

    for ( ;; ) {
        fd = accept4(echo_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED)
            {
                fprintf(stderr, "realtime_echo: accept4() failed: %s\n",
                        strerror(errno));
            }

            return;
        }

        echo_stats.accepted++;

        if (echo_stats.active >= echo_max_conns) {
            echo_stats.refused++;
            close(fd);
            continue;
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int));

        c = calloc(1, sizeof(echo_conn_t));

        if (c == NULL
            || bench_ws_init(&c->ws, fd, NGX_HTTP_TWIRT_WS_SERVER,
                             ECHO_MAX_MESSAGE, ECHO_OUT_SIZE) != 0)
        {
            fprintf(stderr, "realtime_echo: out of memory\n");
            free(c);
            close(fd);
            continue;
        }

        c->id = ++echo_next_id;
        c->state = ECHO_HANDSHAKE;

        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.ptr = c;

        if (epoll_ctl(echo_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            fprintf(stderr, "realtime_echo: epoll_ctl() failed: %s\n",
                    strerror(errno));
            bench_ws_free(&c->ws);
            free(c);
            close(fd);
            continue;
        }

        echo_stats.active++;

        if (echo_stats.active > echo_stats.active_max) {
            echo_stats.active_max = echo_stats.active;
        }
    }
}


static void
echo_event(echo_conn_t *c, uint32_t events)
{
    int             rc;
    ssize_t         n;
    bench_ws_msg_t  m;

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        n = bench_ws_read(&c->ws);

        if (n == 0 || n == -1) {
            echo_free(c);
            return;
        }

        if (n > 0 && c->state == ECHO_HANDSHAKE) {
            rc = echo_handshake(c);

            if (rc == -1) {
                echo_free(c);
                return;
            }
        }

        while (c->state == ECHO_OPEN) {
            rc = bench_ws_next(&c->ws, &m);

            if (rc == 0) {
                break;
            }

            if (rc == -1) {
                echo_stats.protocol_errors++;

                if (!echo_quiet) {
                    fprintf(stderr, "realtime_echo: connection %lu: %s\n",
                            c->id, c->ws.error);
                }

                if (echo_close(c, c->ws.close_code, c->ws.error) != 0) {
                    echo_free(c);
                    return;
                }

                c->state = ECHO_CLOSING;
                break;
            }

            if (echo_message(c, &m) != 0) {
                echo_free(c);
                return;
            }
        }

        if (c->state == ECHO_CLOSING) {
            /* nothing more is read from a closing connection */
            c->ws.in_start = c->ws.in_end;
        }
    }

    echo_io(c);
}


static int
echo_handshake(echo_conn_t *c)
{
    char                  accept[BENCH_WS_ACCEPT_LEN + 1], buf[1024];
    size_t                end, vlen, avail;
    const unsigned char  *p, *v;

    p = c->ws.in + c->ws.in_start;
    avail = c->ws.in_end - c->ws.in_start;

    end = bench_http_header_end(p, avail);

    if (end == 0) {
        if (avail >= ECHO_MAX_HANDSHAKE) {
            return echo_refuse(c, "400 Bad Request", "request too long");
        }

        return 0;
    }

    if (avail < 4 || memcmp(p, "GET ", 4) != 0) {
        return echo_refuse(c, "400 Bad Request", "not a GET");
    }

    if (!bench_http_header(p, end, "Upgrade", &v, &vlen)
        || !bench_http_has_token(v, vlen, "websocket")
        || !bench_http_header(p, end, "Connection", &v, &vlen)
        || !bench_http_has_token(v, vlen, "upgrade"))
    {
        return echo_refuse(c, "400 Bad Request", "not a websocket upgrade");
    }

    if (!bench_http_header(p, end, "Sec-WebSocket-Version", &v, &vlen)
        || vlen != 2 || memcmp(v, "13", 2) != 0)
    {
        return echo_refuse(c, "400 Bad Request", "websocket version not 13");
    }

    if (!bench_http_header(p, end, "Authorization", &v, &vlen)
        || vlen < 8 || strncasecmp((const char *) v, "Bearer ", 7) != 0)
    {
        echo_stats.unauthorized++;
        return echo_refuse(c, "401 Unauthorized",
                           "missing bearer authentication in header");
    }

    if (!bench_http_header(p, end, "Sec-WebSocket-Key", &v, &vlen)
        || ngx_http_twirt_ws_key_valid(v, vlen) != NGX_HTTP_TWIRT_WS_OK
        || bench_ws_accept(v, vlen, accept) != 0)
    {
        return echo_refuse(c, "400 Bad Request", "bad Sec-WebSocket-Key");
    }

    bench_ws_consume(&c->ws, end);

    snprintf(buf, sizeof(buf),
             "HTTP/1.1 101 Switching Protocols\r\n"
             "Upgrade: websocket\r\n"
             "Connection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n"
             "\r\n", accept);

    if (bench_ws_send_raw(&c->ws, buf, strlen(buf)) != 0) {
        return -1;
    }

    c->state = ECHO_OPEN;
    c->next_answer = bench_now() + echo_answer_every;
    echo_stats.upgraded++;

    snprintf(buf, sizeof(buf),
             "{\"type\":\"session.created\",\"event_id\":\"event_%lu_0\","
             "\"session\":{\"type\":\"realtime\",\"object\":"
             "\"realtime.session\",\"id\":\"sess_bench_%lu\",\"model\":"
             "\"gpt-realtime\",\"output_modalities\":[\"audio\"],"
             "\"instructions\":\"\",\"audio\":{\"input\":{\"format\":"
             "{\"type\":\"audio/pcm\",\"rate\":24000},\"transcription\":null,"
             "\"noise_reduction\":null,\"turn_detection\":{\"type\":"
             "\"server_vad\",\"threshold\":0.5,\"prefix_padding_ms\":300,"
             "\"silence_duration_ms\":200,\"create_response\":true,"
             "\"interrupt_response\":true}},\"output\":{\"format\":{\"type\":"
             "\"audio/pcm\",\"rate\":24000},\"voice\":\"alloy\","
             "\"speed\":1.0}},"
             "\"tools\":[],\"tool_choice\":\"auto\",\"max_output_tokens\":"
             "\"inf\"}}", c->id, c->id);

    return bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, strlen(buf));
}


static int
echo_refuse(echo_conn_t *c, const char *status, const char *why)
{
    char  body[256], buf[512];

    if (strncmp(status, "401", 3) != 0) {
        echo_stats.bad_handshake++;
    }

    snprintf(body, sizeof(body),
             "{\"error\":{\"type\":\"invalid_request_error\",\"code\":null,"
             "\"message\":\"%s\",\"param\":null}}", why);

    snprintf(buf, sizeof(buf),
             "HTTP/1.1 %s\r\n"
             "Content-Type: application/json\r\n"
             "Content-Length: %zu\r\n"
             "Connection: close\r\n"
             "\r\n%s", status, strlen(body), body);

    c->ws.in_start = c->ws.in_end;
    c->state = ECHO_CLOSING;

    return bench_ws_send_raw(&c->ws, buf, strlen(buf));
}


static int
echo_message(echo_conn_t *c, bench_ws_msg_t *m)
{
    unsigned              code, err;
    size_t                rlen;
    const unsigned char  *reason;

    switch (m->opcode) {

    case NGX_HTTP_TWIRT_WS_TEXT:
        echo_stats.messages_in++;
        return echo_text(c, m->data, m->len);

    case NGX_HTTP_TWIRT_WS_BINARY:
        echo_stats.messages_in++;
        echo_stats.binary++;
        return 0;

    case NGX_HTTP_TWIRT_WS_PING:
        echo_stats.pings++;

        if (echo_out(c, m->len) != 0) {
            return -1;
        }

        return bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_PONG, m->data, m->len);

    case NGX_HTTP_TWIRT_WS_PONG:
        return 0;

    default: /* CLOSE */

        if (ngx_http_twirt_ws_close_parse(m->data, m->len, &code, &reason,
                                          &rlen, &err)
            != NGX_HTTP_TWIRT_WS_OK)
        {
            code = err;
        }

        if (code == NGX_HTTP_TWIRT_WS_CLOSE_NO_STATUS) {
            code = NGX_HTTP_TWIRT_WS_CLOSE_NORMAL;
        }

        if (echo_close(c, code, "") != 0) {
            return -1;
        }

        c->state = ECHO_CLOSING;

        return 0;
    }
}


static int
echo_text(echo_conn_t *c, const unsigned char *p, size_t len)
{
    int             rc;
    char            head[256];
    size_t          n, hlen;
    bench_json_t    type, v;
    unsigned char  *out;


    rc = bench_json_get((const char *) p, len, "type", &type);

    if (rc != 0 || type.type != BENCH_JSON_STRING) {
        echo_stats.bad_json++;
        return 0;
    }

    if (bench_json_is(&type, "input_audio_buffer.append")) {
        echo_stats.appends++;

        if (bench_json_get((const char *) p, len, "audio", &v) != 0
            || v.type != BENCH_JSON_STRING)
        {
            echo_stats.bad_json++;
            return 0;
        }

        /* the GA API's delta, every field of it, one event_id each */

        hlen = (size_t) snprintf(head, sizeof(head),
                                 "{\"type\":\"response.output_audio.delta\","
                                 "\"event_id\":\"event_%lu_a%lu\","
                                 "\"response_id\":\"resp_%lu_0\","
                                 "\"item_id\":\"item_%lu_0\","
                                 "\"output_index\":0,\"content_index\":0,"
                                 "\"delta\":\"", c->id, ++c->events, c->id,
                                 c->id);
        n = hlen + v.len + 2;

        if (echo_out(c, n) != 0) {
            return -1;
        }

        out = bench_ws_reserve(&c->ws, n);
        memcpy(out, head, hlen);
        memcpy(out + hlen, v.p, v.len);
        memcpy(out + hlen + v.len, "\"}", 2);

        echo_stats.deltas_out++;
        echo_stats.audio_bytes += v.len;

        if (bench_ws_commit(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, n) != 0) {
            return -1;
        }

        /* appends come every 20 ms: they are the clock of the answers */

        if (echo_answer_every && bench_now() >= c->next_answer) {
            return echo_answer(c);
        }

        return 0;
    }

    if (bench_json_is(&type, "session.update")) {
        echo_stats.session_updates++;

        rc = bench_json_get((const char *) p, len, "session", &v);

        if (rc != 0 || v.type != BENCH_JSON_OBJECT) {
            v.p = "{}";
            v.len = 2;
        }

        hlen = (size_t) snprintf(head, sizeof(head),
                                 "{\"type\":\"session.updated\",\"event_id\":"
                                 "\"event_%lu_%lu\",\"session\":", c->id,
                                 echo_stats.session_updates);
        n = hlen + v.len + 1;

        if (echo_out(c, n) != 0) {
            return -1;
        }

        out = bench_ws_reserve(&c->ws, n);
        memcpy(out, head, hlen);
        memcpy(out + hlen, v.p, v.len);
        out[hlen + v.len] = '}';

        return bench_ws_commit(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, n);
    }

    echo_stats.ignored++;

    return 0;
}


/*
 * The end of a spoken answer, as the GA Realtime API sends it: the
 * transcript of the audio, then response.done with the response's usage
 * (a conversation that grows: more input tokens each turn, part cached).
 */

static int
echo_answer(echo_conn_t *c)
{
    char           buf[2048];
    size_t         n;
    unsigned long  k, in_text, in_audio;
    const char    *line;

    static const char  *lines[] = {
        "お電話ありがとうございます。ご用件をお伺いします。",
        "かしこまりました。ご予約の日時を確認いたします。",
        "12月3日の午後2時でよろしいでしょうか。",
        "少々お待ちください。担当者の空き状況を確認しております。",
        "ご予約を承りました。確認のメールをお送りします。",
        "ほかにご不明な点はございますか。"
    };

    k = ++c->answers;
    line = lines[k % (sizeof(lines) / sizeof(lines[0]))];

    c->next_answer += echo_answer_every;

    if (c->next_answer < bench_now()) {
        c->next_answer = bench_now() + echo_answer_every;
    }

    n = (size_t) snprintf(buf, sizeof(buf),
        "{\"type\":\"response.output_audio_transcript.done\","
        "\"event_id\":\"event_%lu_t%lu\",\"response_id\":\"resp_%lu_%lu\","
        "\"item_id\":\"item_%lu_%lu\",\"output_index\":0,"
        "\"content_index\":0,\"transcript\":\"%s\"}",
        c->id, k, c->id, k, c->id, k, line);

    if (echo_send_text(c, buf, n, sizeof(buf)) != 0) {
        return -1;
    }

    echo_stats.transcripts_out++;

    in_text = 420 + 18 * k;
    in_audio = 160 * k;

    n = (size_t) snprintf(buf, sizeof(buf),
        "{\"type\":\"response.done\",\"event_id\":\"event_%lu_d%lu\","
        "\"response\":{\"object\":\"realtime.response\","
        "\"id\":\"resp_%lu_%lu\",\"status\":\"completed\","
        "\"status_details\":null,\"output\":[{\"id\":\"item_%lu_%lu\","
        "\"type\":\"message\",\"object\":\"realtime.item\","
        "\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
        "[{\"type\":\"output_audio\",\"transcript\":\"%s\"}]}],"
        "\"conversation_id\":\"conv_bench_%lu\",\"output_modalities\":"
        "[\"audio\"],\"max_output_tokens\":\"inf\",\"audio\":{\"output\":"
        "{\"format\":{\"type\":\"audio/pcmu\"},\"voice\":\"alloy\"}},"
        "\"usage\":{\"total_tokens\":%lu,\"input_tokens\":%lu,"
        "\"output_tokens\":%lu,\"input_token_details\":{\"text_tokens\":%lu,"
        "\"audio_tokens\":%lu,\"image_tokens\":0,\"cached_tokens\":%lu,"
        "\"cached_tokens_details\":{\"text_tokens\":%lu,"
        "\"audio_tokens\":%lu,\"image_tokens\":0}},"
        "\"output_token_details\":{\"text_tokens\":32,"
        "\"audio_tokens\":100}},\"metadata\":null}}",
        c->id, k, c->id, k, c->id, k, line, c->id,
        in_text + in_audio + 132, in_text + in_audio, 132UL, in_text,
        in_audio, 384 + (in_audio - 160), 384UL, in_audio - 160);

    if (echo_send_text(c, buf, n, sizeof(buf)) != 0) {
        return -1;
    }

    echo_stats.responses_done++;

    return 0;
}


/* a text message snprintf()ed into a buffer of size bytes: n of them */

static int
echo_send_text(echo_conn_t *c, const char *buf, size_t n, size_t size)
{
    if (n >= size || echo_out(c, n) != 0) {
        return -1;
    }

    return bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, n);
}


static int
echo_close(echo_conn_t *c, unsigned code, const char *reason)
{
    size_t         n;
    unsigned char  payload[NGX_HTTP_TWIRT_WS_MAX_CONTROL];

    if (c->close_sent) {
        return 0;
    }

    n = ngx_http_twirt_ws_close_payload(payload, code, reason,
                                        strlen(reason));
    c->close_sent = 1;

    if (echo_out(c, n) != 0) {
        return -1;
    }

    return bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_CLOSE, payload, n);
}


/* makes room for a frame of need bytes, writing out if it must */

static int
echo_out(echo_conn_t *c, size_t need)
{
    if (bench_ws_reserve(&c->ws, need) != NULL) {
        return 0;
    }

    if (bench_ws_flush(&c->ws) == -1) {
        return -1;
    }

    if (bench_ws_reserve(&c->ws, need) != NULL) {
        return 0;
    }

    /* the gateway does not read: drop it as a real server would */

    echo_stats.overflows++;

    if (!echo_quiet) {
        fprintf(stderr, "realtime_echo: connection %lu: output buffer full, "
                "dropped\n", c->id);
    }

    return -1;
}


static void
echo_io(echo_conn_t *c)
{
    int                 rc;
    struct epoll_event  ev;

    rc = bench_ws_flush(&c->ws);

    if (rc == -1 || (rc == 0 && c->state == ECHO_CLOSING)) {
        echo_free(c);
        return;
    }

    if ((rc == 1) != c->want_out) {
        c->want_out = rc == 1;
        ev.events = EPOLLIN | EPOLLRDHUP | (c->want_out ? EPOLLOUT : 0);
        ev.data.ptr = c;
        (void) epoll_ctl(echo_ep, EPOLL_CTL_MOD, c->ws.fd, &ev);
    }
}


static void
echo_free(echo_conn_t *c)
{
    close(c->ws.fd);
    bench_ws_free(&c->ws);
    free(c);

    echo_stats.active--;
    echo_stats.closed++;
}


static void
echo_report(void)
{
    FILE         *f;
    double        wall;
    bench_cpu_t   cpu;

    bench_cpu(&cpu);
    wall = (double) (bench_now() - echo_started) / 1e9;

    fprintf(stderr,
            "realtime_echo: %.1f s, connections %lu (max %lu at once, "
            "%lu refused, %lu bad handshakes, %lu unauthorized), "
            "appends %lu, deltas %lu, session.update %lu, ignored %lu, "
            "transcripts %lu, response.done %lu, bad json %lu, "
            "protocol errors %lu, overflows %lu; "
            "cpu user %.0f ms sys %.0f ms (%.1f%% of a core), "
            "maxrss %ld KiB\n",
            wall, echo_stats.upgraded, echo_stats.active_max,
            echo_stats.refused, echo_stats.bad_handshake,
            echo_stats.unauthorized, echo_stats.appends,
            echo_stats.deltas_out, echo_stats.session_updates,
            echo_stats.ignored, echo_stats.transcripts_out,
            echo_stats.responses_done, echo_stats.bad_json,
            echo_stats.protocol_errors, echo_stats.overflows,
            cpu.user_ms, cpu.sys_ms,
            wall > 0 ? (cpu.user_ms + cpu.sys_ms) / (wall * 10) : 0.0,
            cpu.maxrss_kib);

    if (echo_json == NULL) {
        return;
    }

    f = fopen(echo_json, "w");
    if (f == NULL) {
        fprintf(stderr, "realtime_echo: cannot write \"%s\": %s\n",
                echo_json, strerror(errno));
        return;
    }

    fprintf(f, "{\"tool\":\"realtime_echo\",\"wall_s\":%.3f,"
            "\"accepted\":%lu,\"refused\":%lu,\"upgraded\":%lu,"
            "\"bad_handshake\":%lu,\"unauthorized\":%lu,\"active_max\":%lu,"
            "\"messages_in\":%lu,\"appends\":%lu,\"deltas_out\":%lu,"
            "\"session_updates\":%lu,\"ignored\":%lu,"
            "\"transcripts_out\":%lu,\"responses_done\":%lu,"
            "\"bad_json\":%lu,"
            "\"binary\":%lu,\"pings\":%lu,\"protocol_errors\":%lu,"
            "\"overflows\":%lu,\"audio_base64_bytes\":%llu,"
            "\"cpu_user_ms\":%.1f,\"cpu_sys_ms\":%.1f,\"cpu_ms\":%.1f,"
            "\"maxrss_kib\":%ld}\n",
            wall, echo_stats.accepted, echo_stats.refused,
            echo_stats.upgraded, echo_stats.bad_handshake,
            echo_stats.unauthorized, echo_stats.active_max,
            echo_stats.messages_in, echo_stats.appends,
            echo_stats.deltas_out, echo_stats.session_updates,
            echo_stats.ignored, echo_stats.transcripts_out,
            echo_stats.responses_done, echo_stats.bad_json, echo_stats.binary,
            echo_stats.pings, echo_stats.protocol_errors,
            echo_stats.overflows, echo_stats.audio_bytes, cpu.user_ms,
            cpu.sys_ms, cpu.user_ms + cpu.sys_ms, cpu.maxrss_kib);

    fclose(f);
}


static void
echo_signal(int signo)
{
    (void) signo;

    echo_stop = 1;
}


static void
echo_usage(void)
{
    fprintf(stderr,
            "usage: realtime_echo [--listen HOST:PORT] [--ready-file FILE]\n"
            "                     [--json FILE] [--max-conns N]"
            " [--max-time S]\n"
            "                     [--transcripts MS] [--quiet]\n"
            "  --listen      loopback address to listen on"
            " (default 127.0.0.1:0: a free port)\n"
            "  --ready-file  written with the port once listening\n"
            "  --json        counters and own CPU time at exit\n"
            "  --max-conns   connections at once (default 10000)\n"
            "  --max-time    exits by itself after S seconds"
            " (default 3600)\n"
            "  --transcripts every MS ms per connection, a transcript"
            " and a response.done\n"
            "                with usage (default: never)\n");
    exit(2);
}
