
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
 * With --shape conversation it does not echo: it talks.  Each connection
 * alternates an agent's turn and the caller's: a turn starts with the
 * first append after the caller's turn ended, and is what the GA API
 * sends for a spoken answer (response.created, output_item.added,
 * content_part.added, audio deltas, output_audio.done, content_part.done,
 * output_item.done, response.done), its audio in deltas of 100-200 ms
 * sent 2-5 times faster than real time, as the model generates it.  The
 * caller's turn lasts as long as the agent's audio takes to play plus
 * 2-5 s, so the agent speaks about half of the time.  The audio is made
 * of 160-byte frames, each with an id (the call's index as learnt from
 * its appended audio, a sequence number, the frames left in the turn and
 * the send time) so that the Twilio side measures each frame's way
 * through the gateway and counts the ones lost.
 *
 * With --greeting MS_AUDIO (and --first-audio MS) it is the model of the
 * first-audio benchmark: it does not echo (the caller is silent), and
 * answers each response.create as the GA API does: response.created at
 * once (the request's metadata echoed), then after --first-audio ms
 * response.output_item.added, response.content_part.added and MS_AUDIO
 * ms of audio in deltas of 100 ms (800 bytes of mu-law) sent 5 times
 * faster than real time, then response.output_audio.done, the
 * transcript (the words after the instructions' last "Say exactly:"),
 * response.content_part.done, response.output_item.done and
 * response.done, completed, with its usage.  Its own time from reading a
 * response.create to writing the first delta is measured per response.
 * With --upgrade-delay MS each WebSocket upgrade is answered MS ms after
 * its request arrived (a timer in the loop: other connections go on).
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
#define ECHO_HELD            3      /* --upgrade-delay: the 101 waits */

/* what a connection's place in the timer heap is for */
#define ECHO_TIMER_TURN      0      /* --shape conversation: a delta */
#define ECHO_TIMER_UPGRADE   1      /* --upgrade-delay: the 101 */
#define ECHO_TIMER_RESPONSE  2      /* --greeting: the next delta */

#define ECHO_GREETING_DELTA  100    /* ms of audio per greeting delta */
#define ECHO_GREETING_SPEED  5      /* times real time */
#define ECHO_METADATA_MAX    512
#define ECHO_TRANSCRIPT_MAX  1024

#define ECHO_FRAME           160    /* bytes of mu-law per 20 ms */
#define ECHO_FRAME_NS        20000000ULL
#define ECHO_NO_CALL         0xffffff   /* the call's index is not known */
#define ECHO_TURN_MAX        255    /* frames: "left" is one byte */


typedef struct {
    bench_ws_t          ws;
    int                 state;
    unsigned            want_out:1;
    unsigned            close_sent:1;
    unsigned long       id;
    unsigned long       answers;         /* --transcripts: answers sent */
    unsigned long       events;          /* deltas sent: their event_ids */
    uint64_t            next_answer;     /* when the next one is due, ns */

    /* --shape conversation */
    size_t              heap;            /* in the timer heap, or -1 */
    uint64_t            wake;            /* the next delta is due, ns */
    uint64_t            listen_until;    /* the caller's turn ends, ns */
    unsigned            call;            /* from the appended audio */
    unsigned            turns;
    unsigned            turn_left;       /* frames of the turn to send */
    unsigned            turn_frames;
    double              speed;           /* times real time */
    uint32_t            seq;             /* the next frame's number */
    unsigned            speaking:1;
    unsigned            responding:1;    /* --greeting: a response is on */
    unsigned            timer:2;         /* ECHO_TIMER_* */

    uint64_t            read_at;         /* the last read, ns */

    /* --upgrade-delay */
    uint64_t            arrived;         /* the upgrade request, ns */
    char                accept[BENCH_WS_ACCEPT_LEN + 1];

    /* --greeting: the response being sent */
    unsigned            responses;
    unsigned            resp_left;       /* ms of audio still to send */
    unsigned            resp_deltas;     /* deltas sent */
    uint64_t            resp_asked;      /* its response.create read, ns */
    size_t              metadata_len;
    size_t              transcript_len;
    char                metadata[ECHO_METADATA_MAX];
    char                transcript[ECHO_TRANSCRIPT_MAX];
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
    unsigned long       tls_failed;      /* handshakes */
    unsigned long       turns;           /* --shape conversation */
    unsigned long       turns_cut;       /* closed while speaking */
    unsigned long long  agent_frames;
    unsigned long long  timer_late;      /* timers over 1 ms late */
    unsigned long       upgrades_held;   /* --upgrade-delay */
    unsigned long       responses_created;   /* --greeting */
    unsigned long       responses_refused;   /* one was on already */
    unsigned long       responses_cancelled;
    unsigned long       responses_cut;   /* closed while responding */
    unsigned long       appends_silent;  /* not echoed: --greeting */
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
static int echo_turn_start(echo_conn_t *c, uint64_t now);
static int echo_turn_delta(echo_conn_t *c, uint64_t now);
static int echo_turn_end(echo_conn_t *c, uint64_t now);
static void echo_learn_call(echo_conn_t *c, const char *b64, size_t len);
static double echo_uniform(double a, double b);
static void echo_heap_set(echo_conn_t *c, uint64_t wake);
static void echo_heap_remove(echo_conn_t *c);
static void echo_heap_up(size_t i);
static void echo_heap_down(size_t i);
static int echo_process(echo_conn_t *c);
static int echo_upgrade(echo_conn_t *c);
static int echo_timer(echo_conn_t *c, uint64_t now);
static int echo_response_create(echo_conn_t *c, const unsigned char *p,
    size_t len);
static int echo_response_cancel(echo_conn_t *c);
static int echo_response_delta(echo_conn_t *c, uint64_t now);
static int echo_response_end(echo_conn_t *c, const char *status);
static void echo_hist_say(const char *what, bench_hist_t *h);


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
static int                   echo_conversation;
static SSL_CTX              *echo_ssl_ctx;          /* --tls-cert: wss:// */

/*
 * The audio delta's name: the GA interface's, or with --interface beta
 * the beta's (response.audio.delta), which bridges written for the beta
 * still wait for.
 */
static const char           *echo_delta_type = "response.output_audio.delta";
static double                echo_turn_min = 2000;  /* ms of agent audio */
static double                echo_turn_max = 5000;
static echo_conn_t         **echo_heap;
static size_t                echo_heap_n;
static size_t                echo_heap_size;

static uint64_t              echo_upgrade_delay;    /* ns, 0: at once */
static unsigned              echo_greeting;         /* ms of audio, 0: off */
static uint64_t              echo_first_audio;      /* ns */
static double                echo_first_audio_ms = -1;
static bench_hist_t          echo_first_us;  /* response.create -> delta */
static bench_hist_t          echo_hold_us;   /* upgrade request -> 101 */


int
main(int argc, char **argv)
{
    int                  i, n;
    char                 err[256];
    double               v, max_time;
    sigset_t             orig;
    uint64_t             deadline, now, next;
    bench_url_t          listen_addr;
    unsigned long        nofile;
    struct timespec      ts;
    struct epoll_event   ev, events[ECHO_EVENTS];
    const char          *listen_s, *ready, *cert, *key;
    struct sockaddr_storage  bound;

    listen_s = "127.0.0.1:0";
    ready = NULL;
    cert = NULL;
    key = NULL;
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

        } else if (strcmp(argv[i], "--interface") == 0 && i + 1 < argc) {
            i++;

            if (strcmp(argv[i], "beta") == 0) {
                echo_delta_type = "response.audio.delta";

            } else if (strcmp(argv[i], "ga") != 0) {
                echo_usage();
            }

        } else if (strcmp(argv[i], "--tls-cert") == 0 && i + 1 < argc) {
            cert = argv[++i];

        } else if (strcmp(argv[i], "--tls-key") == 0 && i + 1 < argc) {
            key = argv[++i];

        } else if (strcmp(argv[i], "--shape") == 0 && i + 1 < argc) {
            i++;

            if (strcmp(argv[i], "conversation") == 0) {
                echo_conversation = 1;

            } else if (strcmp(argv[i], "echo") != 0) {
                echo_usage();
            }

        } else if (strcmp(argv[i], "--turn-ms") == 0 && i + 1 < argc) {
            if (sscanf(argv[++i], "%lf-%lf", &echo_turn_min, &echo_turn_max)
                != 2 || echo_turn_min < 20 || echo_turn_max < echo_turn_min
                || echo_turn_max > ECHO_TURN_MAX * 20)
            {
                fprintf(stderr, "realtime_echo: --turn-ms MIN-MAX, 20 to "
                        "%d\n", ECHO_TURN_MAX * 20);
                return 2;
            }

        } else if (strcmp(argv[i], "--upgrade-delay") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 0, 60000, &v) != 0) {
                echo_usage();
            }

            echo_upgrade_delay = (uint64_t) (v * 1e6);

        } else if (strcmp(argv[i], "--greeting") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 1, 60000, &v) != 0) {
                echo_usage();
            }

            echo_greeting = (unsigned) v;

        } else if (strcmp(argv[i], "--first-audio") == 0 && i + 1 < argc) {
            if (bench_number(argv[++i], 0, 60000, &echo_first_audio_ms)
                != 0)
            {
                echo_usage();
            }

            echo_first_audio = (uint64_t) (echo_first_audio_ms * 1e6);

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

    if (echo_first_audio_ms >= 0 && echo_greeting == 0) {
        fprintf(stderr, "realtime_echo: --first-audio goes with "
                "--greeting\n");
        return 2;
    }

    if (echo_greeting && (echo_conversation || echo_answer_every)) {
        fprintf(stderr, "realtime_echo: --greeting answers responses only: "
                "not with --shape conversation or --transcripts\n");
        return 2;
    }

    if (echo_first_audio_ms < 0) {
        echo_first_audio_ms = 0;
    }

    if (bench_hist_init(&echo_first_us) != 0
        || bench_hist_init(&echo_hold_us) != 0)
    {
        fprintf(stderr, "realtime_echo: out of memory\n");
        return 2;
    }

    if ((cert == NULL) != (key == NULL)) {
        fprintf(stderr, "realtime_echo: --tls-cert and --tls-key go "
                "together\n");
        return 2;
    }

    if (cert) {
        echo_ssl_ctx = bench_tls_server_ctx(cert, key, err, sizeof(err));

        if (echo_ssl_ctx == NULL) {
            fprintf(stderr, "realtime_echo: %s\n", err);
            return 2;
        }
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

    echo_lfd = bench_listen(&listen_addr, &bound);

    if (echo_lfd == -1) {
        fprintf(stderr, "realtime_echo: cannot listen on %s: %s\n",
                listen_s, strerror(errno));
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

    bench_signals(echo_signal, &orig);

    if (ready && bench_ready_file(ready, &bound) != 0) {
        fprintf(stderr, "realtime_echo: cannot write \"%s\": %s\n", ready,
                strerror(errno));
        return 2;
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

        /* the timers due: each connection's at its own time */

        while (echo_heap_n && echo_heap[0]->wake <= now) {
            echo_conn_t  *t = echo_heap[0];

            if (now - t->wake > 1000000) {
                echo_stats.timer_late++;
            }

            if (echo_timer(t, now) != 0) {
                echo_free(t);
                continue;
            }

            echo_io(t);
            now = bench_now();
        }

        next = deadline;

        if (echo_heap_n && echo_heap[0]->wake < next) {
            next = echo_heap[0]->wake;
        }

        next = next > now ? next - now : 0;
        ts.tv_sec = (time_t) (next / 1000000000);
        ts.tv_nsec = (long) (next % 1000000000);

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

        if (echo_ssl_ctx
            && bench_ws_tls(&c->ws, echo_ssl_ctx, NULL) != 0)
        {
            fprintf(stderr, "realtime_echo: TLS setup failed\n");
            bench_ws_free(&c->ws);
            free(c);
            close(fd);
            continue;
        }

        c->id = ++echo_next_id;
        c->state = ECHO_HANDSHAKE;
        c->heap = (size_t) -1;
        c->call = ECHO_NO_CALL;

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
    int      rc;
    ssize_t  n;

    if (c->ws.tls_handshake) {
        rc = bench_ws_tls_handshake(&c->ws);

        if (rc == -1) {
            echo_stats.tls_failed++;

            if (!echo_quiet) {
                fprintf(stderr, "realtime_echo: connection %lu: TLS "
                        "handshake failed: %s\n", c->id, c->ws.error);
            }

            echo_free(c);
            return;
        }

        if (rc == 1) {
            echo_io(c);
            return;
        }

        /* the upgrade request may have come with the handshake's end */
        events |= EPOLLIN;
    }

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        n = bench_ws_read(&c->ws);

        if (n == 0 || n == -1) {
            echo_free(c);
            return;
        }

        c->read_at = bench_now();

        if (n > 0 && c->state == ECHO_HANDSHAKE) {
            rc = echo_handshake(c);

            if (rc == -1) {
                echo_free(c);
                return;
            }
        }

        /* held: what comes before the 101 waits in the buffer */

        if (echo_process(c) != 0) {
            echo_free(c);
            return;
        }
    }

    echo_io(c);
}


/* the messages read, while the connection is open; -1: free it */

static int
echo_process(echo_conn_t *c)
{
    int             rc;
    bench_ws_msg_t  m;

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
                return -1;
            }

            c->state = ECHO_CLOSING;
            break;
        }

        if (echo_message(c, &m) != 0) {
            return -1;
        }
    }

    if (c->state == ECHO_CLOSING) {
        /* nothing more is read from a closing connection */
        c->ws.in_start = c->ws.in_end;
    }

    return 0;
}


static int
echo_handshake(echo_conn_t *c)
{
    char                  accept[BENCH_WS_ACCEPT_LEN + 1];
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
    memcpy(c->accept, accept, sizeof(accept));

    if (echo_upgrade_delay) {
        /* answered by the timer: the request arrived with the last read */
        c->state = ECHO_HELD;
        c->arrived = c->read_at;
        c->timer = ECHO_TIMER_UPGRADE;
        echo_stats.upgrades_held++;
        echo_heap_set(c, c->arrived + echo_upgrade_delay);
        return 0;
    }

    return echo_upgrade(c);
}


/* the 101, and the session.created the API sends first */

static int
echo_upgrade(echo_conn_t *c)
{
    char  buf[1024];

    snprintf(buf, sizeof(buf),
             "HTTP/1.1 101 Switching Protocols\r\n"
             "Upgrade: websocket\r\n"
             "Connection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n"
             "\r\n", c->accept);

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

        if (echo_greeting) {
            /* the caller is silent: an echo would be the agent's audio */
            echo_stats.appends_silent++;
            return 0;
        }

        if (echo_conversation) {
            /*
             * The caller's audio is the clock of the turns: the agent
             * answers once the caller's turn is over and the caller is
             * still there, as a model answers speech.
             */

            if (c->call == ECHO_NO_CALL) {
                echo_learn_call(c, v.p, v.len);
            }

            if (!c->speaking && bench_now() >= c->listen_until) {
                return echo_turn_start(c, bench_now());
            }

            return 0;
        }

        /* the GA API's delta, every field of it, one event_id each */

        hlen = (size_t) snprintf(head, sizeof(head),
                                 "{\"type\":\"%s\","
                                 "\"event_id\":\"event_%lu_a%lu\","
                                 "\"response_id\":\"resp_%lu_0\","
                                 "\"item_id\":\"item_%lu_0\","
                                 "\"output_index\":0,\"content_index\":0,"
                                 "\"delta\":\"", echo_delta_type, c->id,
                                 ++c->events, c->id, c->id);
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

    if (echo_greeting && bench_json_is(&type, "response.create")) {
        return echo_response_create(c, p, len);
    }

    if (echo_greeting && bench_json_is(&type, "response.cancel")) {
        return echo_response_cancel(c);
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

    if (c->ws.tls_handshake) {
        rc = c->ws.tls_want_write;
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
    if (c->speaking) {
        echo_stats.turns_cut++;
    }

    if (c->responding) {
        echo_stats.responses_cut++;
    }

    echo_heap_remove(c);
    close(c->ws.fd);
    bench_ws_free(&c->ws);
    free(c);

    echo_stats.active--;
    echo_stats.closed++;
}


/*
 * The caller's index from its audio: twilio_load's frames begin with a
 * marker, the index and a checksum.  A bridge that transcodes the audio
 * leaves it unknown, and the agent's frames then carry ECHO_NO_CALL.
 */

static void
echo_learn_call(echo_conn_t *c, const char *b64, size_t len)
{
    long           n;
    unsigned       i, sum;
    unsigned char  f[18];

    if (len < 24) {
        return;
    }

    n = bench_base64_decode(f, b64, 24);

    if (n != 18 || f[0] != 0xb5 || f[1] != 0x7e) {
        return;
    }

    for (sum = 0, i = 0; i < 15; i++) {
        sum += f[i];
    }

    if (f[15] != (unsigned char) (sum ^ 0x5a)) {
        return;
    }

    c->call = ((unsigned) f[2] << 16) | ((unsigned) f[3] << 8) | f[4];
}


static double
echo_uniform(double a, double b)
{
    uint32_t  r;

    bench_random(&r, sizeof(uint32_t));

    return a + (b - a) * ((double) r / 4294967296.0);
}


/* the events a spoken answer begins with, then its first delta */

static int
echo_turn_start(echo_conn_t *c, uint64_t now)
{
    int   n;
    char  buf[1024];

    c->turns++;
    c->speaking = 1;
    c->turn_frames = (unsigned) (echo_uniform(echo_turn_min, echo_turn_max)
                                 / 20 + 0.5);
    if (c->turn_frames == 0) {
        c->turn_frames = 1;
    }

    c->turn_left = c->turn_frames;
    c->speed = echo_uniform(2, 5);
    echo_stats.turns++;

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.created\",\"event_id\":\"event_%lu_c%u\","
        "\"response\":{\"object\":\"realtime.response\","
        "\"id\":\"resp_%lu_%u\",\"status\":\"in_progress\","
        "\"status_details\":null,\"output\":[],\"conversation_id\":"
        "\"conv_bench_%lu\",\"output_modalities\":[\"audio\"],"
        "\"max_output_tokens\":\"inf\",\"audio\":{\"output\":{\"format\":"
        "{\"type\":\"audio/pcmu\"},\"voice\":\"marin\"}},\"usage\":null,"
        "\"metadata\":null}}", c->id, c->turns, c->id, c->turns, c->id);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.output_item.added\","
        "\"event_id\":\"event_%lu_i%u\",\"response_id\":\"resp_%lu_%u\","
        "\"output_index\":0,\"item\":{\"id\":\"item_%lu_%u\","
        "\"type\":\"message\",\"status\":\"in_progress\","
        "\"role\":\"assistant\",\"content\":[]}}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.content_part.added\","
        "\"event_id\":\"event_%lu_p%u\",\"response_id\":\"resp_%lu_%u\","
        "\"item_id\":\"item_%lu_%u\",\"output_index\":0,"
        "\"content_index\":0,\"part\":{\"type\":\"audio\","
        "\"transcript\":\"\"}}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    return echo_turn_delta(c, now);
}


/*
 * One delta of 100-200 ms of the turn's audio; the next is due when the
 * model would have generated it, speed times faster than it plays.
 */

static int
echo_turn_delta(echo_conn_t *c, uint64_t now)
{
    size_t          hlen, n, len;
    unsigned        k, i, j, sum;
    uint64_t        us;
    unsigned char  *out, *f, audio[11 * ECHO_FRAME];
    char            head[256];

    k = (unsigned) echo_uniform(5, 11);     /* 5..10 frames */
    if (k > c->turn_left) {
        k = c->turn_left;
    }

    hlen = (size_t) snprintf(head, sizeof(head),
                             "{\"type\":\"%s\","
                             "\"event_id\":\"event_%lu_a%lu\","
                             "\"response_id\":\"resp_%lu_%u\","
                             "\"item_id\":\"item_%lu_%u\","
                             "\"output_index\":0,\"content_index\":0,"
                             "\"delta\":\"", echo_delta_type, c->id,
                             ++c->events, c->id, c->turns, c->id, c->turns);

    n = hlen + bench_base64_len(k * ECHO_FRAME) + 2;

    if (echo_out(c, n) != 0) {
        return -1;
    }

    out = bench_ws_reserve(&c->ws, n);
    memcpy(out, head, hlen);
    len = hlen;

    /* the send time is the delta's: it leaves right after */

    us = bench_now() / 1000;

    for (j = 0; j < k; j++) {
        f = audio + j * ECHO_FRAME;
        c->turn_left--;

        f[0] = 0xb5;
        f[1] = 0x7f;
        f[2] = (unsigned char) (c->call >> 16);
        f[3] = (unsigned char) (c->call >> 8);
        f[4] = (unsigned char) c->call;
        f[5] = (unsigned char) (c->seq >> 16);
        f[6] = (unsigned char) (c->seq >> 8);
        f[7] = (unsigned char) c->seq;
        f[8] = (unsigned char) c->turn_left;

        for (i = 0; i < 6; i++) {
            f[9 + i] = (unsigned char) (us >> (40 - 8 * i));
        }

        for (sum = 0, i = 0; i < 15; i++) {
            sum += f[i];
        }

        f[15] = (unsigned char) (sum ^ 0x5a);

        for (i = 16; i < ECHO_FRAME; i++) {
            f[i] = (unsigned char) (0xf0 | ((c->seq + i) & 0x0f));
        }

        c->seq++;
        echo_stats.agent_frames++;
    }

    len += bench_base64_encode((char *) out + len, audio, k * ECHO_FRAME);

    memcpy(out + len, "\"}", 2);
    len += 2;

    echo_stats.deltas_out++;

    if (bench_ws_commit(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, len) != 0) {
        return -1;
    }

    if (c->turn_left == 0) {
        echo_heap_remove(c);
        return echo_turn_end(c, now);
    }

    echo_heap_set(c, now + (uint64_t) (k * ECHO_FRAME_NS / c->speed));

    return 0;
}


/* what ends a spoken answer; then the caller's turn */

static int
echo_turn_end(echo_conn_t *c, uint64_t now)
{
    int       n;
    char      buf[2048];
    uint64_t  played;

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.output_audio.done\","
        "\"event_id\":\"event_%lu_ad%u\",\"response_id\":\"resp_%lu_%u\","
        "\"item_id\":\"item_%lu_%u\",\"output_index\":0,"
        "\"content_index\":0}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.content_part.done\","
        "\"event_id\":\"event_%lu_pd%u\",\"response_id\":\"resp_%lu_%u\","
        "\"item_id\":\"item_%lu_%u\",\"output_index\":0,"
        "\"content_index\":0,\"part\":{\"type\":\"audio\","
        "\"transcript\":\"\"}}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.output_item.done\","
        "\"event_id\":\"event_%lu_id%u\",\"response_id\":\"resp_%lu_%u\","
        "\"output_index\":0,\"item\":{\"id\":\"item_%lu_%u\","
        "\"type\":\"message\",\"status\":\"completed\","
        "\"role\":\"assistant\",\"content\":[{\"type\":\"output_audio\","
        "\"transcript\":\"\"}]}}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.done\",\"event_id\":\"event_%lu_d%u\","
        "\"response\":{\"object\":\"realtime.response\","
        "\"id\":\"resp_%lu_%u\",\"status\":\"completed\","
        "\"status_details\":null,\"output\":[{\"id\":\"item_%lu_%u\","
        "\"type\":\"message\",\"object\":\"realtime.item\","
        "\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
        "[{\"type\":\"output_audio\",\"transcript\":\"\"}]}],"
        "\"conversation_id\":\"conv_bench_%lu\",\"output_modalities\":"
        "[\"audio\"],\"max_output_tokens\":\"inf\",\"audio\":{\"output\":"
        "{\"format\":{\"type\":\"audio/pcmu\"},\"voice\":\"marin\"}},"
        "\"usage\":{\"total_tokens\":%u,\"input_tokens\":%u,"
        "\"output_tokens\":%u,\"input_token_details\":{\"text_tokens\":400,"
        "\"audio_tokens\":%u,\"image_tokens\":0,\"cached_tokens\":0,"
        "\"cached_tokens_details\":{\"text_tokens\":0,"
        "\"audio_tokens\":0,\"image_tokens\":0}},"
        "\"output_token_details\":{\"text_tokens\":20,"
        "\"audio_tokens\":%u}},\"metadata\":null}}",
        c->id, c->turns, c->id, c->turns, c->id, c->turns, c->id,
        500 + c->turn_frames, 400 + 100 * c->turns, 20 + c->turn_frames,
        100 * c->turns, c->turn_frames);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    echo_stats.responses_done++;

    /*
     * The caller's turn: the agent's audio plays out on the phone (it
     * was sent faster than real time), then the caller speaks 2-5 s.
     */

    played = (uint64_t) c->turn_frames * ECHO_FRAME_NS;
    played -= (uint64_t) (played / c->speed);

    c->speaking = 0;
    c->listen_until = now + played
                      + (uint64_t) (echo_uniform(2000, 5000) * 1e6);

    return 0;
}


/* a connection's timer is due: -1 to free it */

static int
echo_timer(echo_conn_t *c, uint64_t now)
{
    switch (c->timer) {

    case ECHO_TIMER_UPGRADE:
        echo_heap_remove(c);

        if (c->state != ECHO_HELD) {
            return 0;
        }

        bench_hist_add(&echo_hold_us, (now - c->arrived) / 1000);

        if (echo_upgrade(c) != 0) {
            return -1;
        }

        /* what the client sent before the 101, if anything */
        return echo_process(c);

    case ECHO_TIMER_RESPONSE:
        if (c->state != ECHO_OPEN || !c->responding) {
            echo_heap_remove(c);
            return 0;
        }

        return echo_response_delta(c, now);

    default: /* ECHO_TIMER_TURN */
        if (c->state != ECHO_OPEN) {
            /* closing: no more of the turn */
            echo_heap_remove(c);
            return 0;
        }

        return echo_turn_delta(c, now);
    }
}


/*
 * --greeting: a response.create answered as the GA API answers it:
 * response.created at once, with the request's metadata (twirt knows its
 * greeting's response by it), the audio after --first-audio ms.  One
 * response at a time, as the API: a second one is an error.
 */

static int
echo_response_create(echo_conn_t *c, const unsigned char *p, size_t len)
{
    int            n;
    char           buf[2048];
    size_t         k, skip;
    const char    *t, *end, *found;
    bench_json_t   v, id;

    static const char  say[] = "Say exactly:";
    static const char  line[] =
        "お電話ありがとうございます。さくら歯科でございます。";

    if (c->responding) {
        echo_stats.responses_refused++;

        if (bench_json_get((const char *) p, len, "event_id", &id) != 0
            || id.type != BENCH_JSON_STRING || id.len > 128)
        {
            id.p = "";
            id.len = 0;
        }

        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"error\",\"event_id\":\"event_%lu_e%lu\","
            "\"error\":{\"type\":\"invalid_request_error\","
            "\"code\":\"conversation_already_has_active_response\","
            "\"message\":\"Conversation already has an active response in "
            "progress: resp_%lu_g%u. Wait until the response is finished "
            "before creating a new one.\",\"param\":null,"
            "\"event_id\":\"%.*s\"}}", c->id, echo_stats.responses_refused,
            c->id, c->responses, (int) id.len, id.p);

        return echo_send_text(c, buf, (size_t) n, sizeof(buf));
    }

    c->responses++;
    c->responding = 1;
    c->resp_asked = c->read_at;
    c->resp_left = echo_greeting;
    c->resp_deltas = 0;
    echo_stats.responses_created++;

    /* response.metadata, as it came (raw JSON), echoed */

    if (bench_json_get((const char *) p, len, "response.metadata", &v) == 0
        && v.type == BENCH_JSON_OBJECT && v.len < ECHO_METADATA_MAX)
    {
        memcpy(c->metadata, v.p, v.len);
        c->metadata_len = v.len;

    } else {
        memcpy(c->metadata, "null", 4);
        c->metadata_len = 4;
    }

    /*
     * The transcript: what follows the instructions' last "Say exactly:",
     * raw (escapes kept), else a fixed line
     */

    found = NULL;

    if (bench_json_get((const char *) p, len, "response.instructions", &v)
        == 0 && v.type == BENCH_JSON_STRING)
    {
        t = v.p;
        end = v.p + v.len;

        while ((t = memmem(t, (size_t) (end - t), say, sizeof(say) - 1))
               != NULL)
        {
            t += sizeof(say) - 1;
            found = t;
        }

        if (found) {
            for ( ;; ) {
                skip = 0;

                if (found < end && *found == ' ') {
                    skip = 1;

                } else if (end - found >= 2 && found[0] == '\\'
                           && (found[1] == 'n' || found[1] == 't'))
                {
                    skip = 2;
                }

                if (skip == 0) {
                    break;
                }

                found += skip;
            }

            k = (size_t) (end - found);

            if (k == 0 || k >= ECHO_TRANSCRIPT_MAX) {
                found = NULL;

            } else {
                memcpy(c->transcript, found, k);
                c->transcript_len = k;
            }
        }
    }

    if (found == NULL) {
        memcpy(c->transcript, line, sizeof(line) - 1);
        c->transcript_len = sizeof(line) - 1;
    }

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.created\",\"event_id\":\"event_%lu_gc%u\","
        "\"response\":{\"object\":\"realtime.response\","
        "\"id\":\"resp_%lu_g%u\",\"status\":\"in_progress\","
        "\"status_details\":null,\"output\":[],\"conversation_id\":"
        "\"conv_bench_%lu\",\"output_modalities\":[\"audio\"],"
        "\"max_output_tokens\":\"inf\",\"audio\":{\"output\":{\"format\":"
        "{\"type\":\"audio/pcmu\"},\"voice\":\"marin\"}},\"usage\":null,"
        "\"metadata\":%.*s}}", c->id, c->responses, c->id, c->responses,
        c->id, (int) c->metadata_len, c->metadata);

    if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
        return -1;
    }

    c->timer = ECHO_TIMER_RESPONSE;
    echo_heap_set(c, c->resp_asked + echo_first_audio);

    return 0;
}


/* response.cancel: the response ends at once, cancelled */

static int
echo_response_cancel(echo_conn_t *c)
{
    if (!c->responding) {
        echo_stats.ignored++;
        return 0;
    }

    echo_heap_remove(c);
    echo_stats.responses_cancelled++;

    return echo_response_end(c, "cancelled");
}


/*
 * The greeting's audio: the first delta after --first-audio ms (with the
 * events that come before it), then one of 100 ms every 100 / 5 ms.
 */

static int
echo_response_delta(echo_conn_t *c, uint64_t now)
{
    int             rc;
    char            head[256];
    size_t          hlen, n, len, bytes;
    unsigned        ms, i;
    unsigned char  *out, audio[8 * ECHO_GREETING_DELTA];

    if (c->resp_deltas == 0) {
        n = (size_t) snprintf((char *) audio, sizeof(audio),
            "{\"type\":\"response.output_item.added\","
            "\"event_id\":\"event_%lu_gi%u\",\"response_id\":\"resp_%lu_g%u\","
            "\"output_index\":0,\"item\":{\"id\":\"item_%lu_g%u\","
            "\"object\":\"realtime.item\",\"type\":\"message\","
            "\"status\":\"in_progress\",\"role\":\"assistant\","
            "\"content\":[]}}",
            c->id, c->responses, c->id, c->responses, c->id, c->responses);

        if (echo_send_text(c, (char *) audio, n, sizeof(audio)) != 0) {
            return -1;
        }

        n = (size_t) snprintf((char *) audio, sizeof(audio),
            "{\"type\":\"response.content_part.added\","
            "\"event_id\":\"event_%lu_gp%u\",\"response_id\":\"resp_%lu_g%u\","
            "\"item_id\":\"item_%lu_g%u\",\"output_index\":0,"
            "\"content_index\":0,\"part\":{\"type\":\"audio\","
            "\"transcript\":\"\"}}",
            c->id, c->responses, c->id, c->responses, c->id, c->responses);

        if (echo_send_text(c, (char *) audio, n, sizeof(audio)) != 0) {
            return -1;
        }
    }

    ms = c->resp_left < ECHO_GREETING_DELTA ? c->resp_left
                                            : ECHO_GREETING_DELTA;
    bytes = 8 * (size_t) ms;

    hlen = (size_t) snprintf(head, sizeof(head),
                             "{\"type\":\"%s\","
                             "\"event_id\":\"event_%lu_a%lu\","
                             "\"response_id\":\"resp_%lu_g%u\","
                             "\"item_id\":\"item_%lu_g%u\","
                             "\"output_index\":0,\"content_index\":0,"
                             "\"delta\":\"", echo_delta_type, c->id,
                             ++c->events, c->id, c->responses, c->id,
                             c->responses);

    n = hlen + bench_base64_len(bytes) + 2;

    if (echo_out(c, n) != 0) {
        return -1;
    }

    /* any mu-law will do: a quiet ramp, not silence */

    for (i = 0; i < bytes; i++) {
        audio[i] = (unsigned char) (0xf0 | ((c->resp_deltas + i) & 0x0f));
    }

    out = bench_ws_reserve(&c->ws, n);
    memcpy(out, head, hlen);
    len = hlen + bench_base64_encode((char *) out + hlen, audio, bytes);
    memcpy(out + len, "\"}", 2);
    len += 2;

    echo_stats.deltas_out++;

    if (bench_ws_commit(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, len) != 0) {
        return -1;
    }

    if (c->resp_deltas++ == 0) {
        /* the stand-in's own latency: response.create read -> written */

        rc = bench_ws_flush(&c->ws);

        if (rc == -1) {
            return -1;
        }

        bench_hist_add(&echo_first_us, (bench_now() - c->resp_asked) / 1000);
    }

    c->resp_left -= ms;

    if (c->resp_left == 0) {
        echo_heap_remove(c);
        return echo_response_end(c, "completed");
    }

    /* the model's pace, from the schedule: no drift when a wake is late */
    echo_heap_set(c, c->wake + (uint64_t) ms * 1000000
                             / ECHO_GREETING_SPEED);

    (void) now;

    return 0;
}


/* what ends the response: the audio's end, its transcript, response.done */

static int
echo_response_end(echo_conn_t *c, const char *status)
{
    int       n, done;
    char      buf[4096], item[2048];
    unsigned  k, ms, audio_tokens, text_tokens;

    k = c->responses;
    done = (strcmp(status, "completed") == 0);
    ms = echo_greeting - c->resp_left;

    c->responding = 0;
    echo_stats.responses_done++;

    if (c->resp_deltas) {
        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"response.output_audio.done\","
            "\"event_id\":\"event_%lu_gad%u\","
            "\"response_id\":\"resp_%lu_g%u\","
            "\"item_id\":\"item_%lu_g%u\",\"output_index\":0,"
            "\"content_index\":0}",
            c->id, k, c->id, k, c->id, k);

        if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
            return -1;
        }

        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"response.output_audio_transcript.done\","
            "\"event_id\":\"event_%lu_gt%u\",\"response_id\":\"resp_%lu_g%u\","
            "\"item_id\":\"item_%lu_g%u\",\"output_index\":0,"
            "\"content_index\":0,\"transcript\":\"%.*s\"}",
            c->id, k, c->id, k, c->id, k, (int) c->transcript_len,
            c->transcript);

        if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
            return -1;
        }

        echo_stats.transcripts_out++;

        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"response.content_part.done\","
            "\"event_id\":\"event_%lu_gpd%u\","
            "\"response_id\":\"resp_%lu_g%u\","
            "\"item_id\":\"item_%lu_g%u\",\"output_index\":0,"
            "\"content_index\":0,\"part\":{\"type\":\"audio\","
            "\"transcript\":\"%.*s\"}}",
            c->id, k, c->id, k, c->id, k, (int) c->transcript_len,
            c->transcript);

        if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
            return -1;
        }

        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"response.output_item.done\","
            "\"event_id\":\"event_%lu_gid%u\","
            "\"response_id\":\"resp_%lu_g%u\","
            "\"output_index\":0,\"item\":{\"id\":\"item_%lu_g%u\","
            "\"object\":\"realtime.item\",\"type\":\"message\","
            "\"status\":\"%s\",\"role\":\"assistant\","
            "\"content\":[{\"type\":\"output_audio\","
            "\"transcript\":\"%.*s\"}]}}",
            c->id, k, c->id, k, c->id, k, done ? "completed" : "incomplete",
            (int) c->transcript_len, c->transcript);

        if (echo_send_text(c, buf, (size_t) n, sizeof(buf)) != 0) {
            return -1;
        }
    }

    /* the output: the message, if its audio had begun */

    item[0] = '\0';

    if (c->resp_deltas) {
        (void) snprintf(item, sizeof(item),
            "{\"id\":\"item_%lu_g%u\",\"object\":\"realtime.item\","
            "\"type\":\"message\",\"status\":\"%s\",\"role\":\"assistant\","
            "\"content\":[{\"type\":\"output_audio\",\"transcript\":"
            "\"%.*s\"}]}", c->id, k, done ? "completed" : "incomplete",
            (int) c->transcript_len, c->transcript);
    }

    /* about 20 audio tokens a second, a token per 3 bytes of the words */

    audio_tokens = ms / 50;
    text_tokens = (unsigned) (c->transcript_len / 3);

    n = snprintf(buf, sizeof(buf),
        "{\"type\":\"response.done\",\"event_id\":\"event_%lu_gd%u\","
        "\"response\":{\"object\":\"realtime.response\","
        "\"id\":\"resp_%lu_g%u\",\"status\":\"%s\","
        "\"status_details\":%s,\"output\":[%s],"
        "\"conversation_id\":\"conv_bench_%lu\",\"output_modalities\":"
        "[\"audio\"],\"max_output_tokens\":\"inf\",\"audio\":{\"output\":"
        "{\"format\":{\"type\":\"audio/pcmu\"},\"voice\":\"marin\"}},"
        "\"usage\":{\"total_tokens\":%u,\"input_tokens\":%u,"
        "\"output_tokens\":%u,\"input_token_details\":{\"text_tokens\":%u,"
        "\"audio_tokens\":0,\"image_tokens\":0,\"cached_tokens\":0,"
        "\"cached_tokens_details\":{\"text_tokens\":0,"
        "\"audio_tokens\":0,\"image_tokens\":0}},"
        "\"output_token_details\":{\"text_tokens\":%u,"
        "\"audio_tokens\":%u}},\"metadata\":%.*s}}",
        c->id, k, c->id, k, status,
        done ? "null" : "{\"type\":\"cancelled\","
                        "\"reason\":\"client_cancelled\"}",
        item, c->id,
        300 + 2 * text_tokens + audio_tokens, 300 + text_tokens,
        text_tokens + audio_tokens, 300 + text_tokens, text_tokens,
        audio_tokens, (int) c->metadata_len, c->metadata);

    return echo_send_text(c, buf, (size_t) n, sizeof(buf));
}


/* the timer heap of the speaking connections, earliest wake first */

static void
echo_heap_set(echo_conn_t *c, uint64_t wake)
{
    size_t         size;
    echo_conn_t  **h;

    c->wake = wake;

    if (c->heap != (size_t) -1) {
        echo_heap_up(c->heap);
        echo_heap_down(c->heap);
        return;
    }

    if (echo_heap_n == echo_heap_size) {
        size = echo_heap_size ? 2 * echo_heap_size : 256;
        h = realloc(echo_heap, size * sizeof(echo_conn_t *));

        if (h == NULL) {
            fprintf(stderr, "realtime_echo: out of memory\n");
            exit(1);
        }

        echo_heap = h;
        echo_heap_size = size;
    }

    c->heap = echo_heap_n;
    echo_heap[echo_heap_n++] = c;
    echo_heap_up(c->heap);
}


static void
echo_heap_remove(echo_conn_t *c)
{
    size_t  i;

    i = c->heap;

    if (i == (size_t) -1) {
        return;
    }

    c->heap = (size_t) -1;
    echo_heap_n--;

    if (i == echo_heap_n) {
        return;
    }

    echo_heap[i] = echo_heap[echo_heap_n];
    echo_heap[i]->heap = i;
    echo_heap_up(i);
    echo_heap_down(echo_heap[i]->heap);
}


static void
echo_heap_up(size_t i)
{
    size_t        p;
    echo_conn_t  *c;

    c = echo_heap[i];

    while (i > 0) {
        p = (i - 1) / 2;

        if (echo_heap[p]->wake <= c->wake) {
            break;
        }

        echo_heap[i] = echo_heap[p];
        echo_heap[i]->heap = i;
        i = p;
    }

    echo_heap[i] = c;
    c->heap = i;
}


static void
echo_heap_down(size_t i)
{
    size_t        l, m;
    echo_conn_t  *c;

    c = echo_heap[i];

    for ( ;; ) {
        l = 2 * i + 1;

        if (l >= echo_heap_n) {
            break;
        }

        m = l;

        if (l + 1 < echo_heap_n && echo_heap[l + 1]->wake < echo_heap[l]->wake)
        {
            m = l + 1;
        }

        if (c->wake <= echo_heap[m]->wake) {
            break;
        }

        echo_heap[i] = echo_heap[m];
        echo_heap[i]->heap = i;
        i = m;
    }

    echo_heap[i] = c;
    c->heap = i;
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
            "protocol errors %lu, overflows %lu, turns %lu (%lu cut), "
            "agent frames %llu, timers over 1 ms late %llu; "
            "cpu user %.0f ms sys %.0f ms (%.1f%% of a core), "
            "maxrss %ld KiB\n",
            wall, echo_stats.upgraded, echo_stats.active_max,
            echo_stats.refused, echo_stats.bad_handshake,
            echo_stats.unauthorized, echo_stats.appends,
            echo_stats.deltas_out, echo_stats.session_updates,
            echo_stats.ignored, echo_stats.transcripts_out,
            echo_stats.responses_done, echo_stats.bad_json,
            echo_stats.protocol_errors, echo_stats.overflows,
            echo_stats.turns, echo_stats.turns_cut, echo_stats.agent_frames,
            echo_stats.timer_late, cpu.user_ms, cpu.sys_ms,
            wall > 0 ? (cpu.user_ms + cpu.sys_ms) / (wall * 10) : 0.0,
            cpu.maxrss_kib);

    if (echo_upgrade_delay) {
        fprintf(stderr, "realtime_echo: %lu upgrades held %.0f ms:",
                echo_stats.upgrades_held, (double) echo_upgrade_delay / 1e6);
        echo_hist_say("held", &echo_hold_us);
    }

    if (echo_greeting) {
        fprintf(stderr, "realtime_echo: %lu responses (%lu refused, %lu "
                "cancelled, %lu cut), %u ms of audio each after %.0f ms, "
                "%lu appends not echoed:", echo_stats.responses_created,
                echo_stats.responses_refused, echo_stats.responses_cancelled,
                echo_stats.responses_cut, echo_greeting, echo_first_audio_ms,
                echo_stats.appends_silent);
        echo_hist_say("response.create read -> first delta written",
                      &echo_first_us);
    }

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
            "\"tls\":%s,\"tls_failed\":%lu,"
            "\"shape\":\"%s\",\"turns\":%lu,\"turns_cut\":%lu,"
            "\"agent_frames\":%llu,\"timer_late\":%llu,"
            "\"cpu_user_ms\":%.1f,\"cpu_sys_ms\":%.1f,\"cpu_ms\":%.1f,"
            "\"maxrss_kib\":%ld,",
            wall, echo_stats.accepted, echo_stats.refused,
            echo_stats.upgraded, echo_stats.bad_handshake,
            echo_stats.unauthorized, echo_stats.active_max,
            echo_stats.messages_in, echo_stats.appends,
            echo_stats.deltas_out, echo_stats.session_updates,
            echo_stats.ignored, echo_stats.transcripts_out,
            echo_stats.responses_done, echo_stats.bad_json, echo_stats.binary,
            echo_stats.pings, echo_stats.protocol_errors,
            echo_stats.overflows, echo_stats.audio_bytes,
            echo_ssl_ctx ? "true" : "false", echo_stats.tls_failed,
            echo_conversation ? "conversation" : "echo", echo_stats.turns,
            echo_stats.turns_cut, echo_stats.agent_frames,
            echo_stats.timer_late, cpu.user_ms,
            cpu.sys_ms, cpu.user_ms + cpu.sys_ms, cpu.maxrss_kib);

    /*
     * --upgrade-delay: each upgrade's hold as measured (request read ->
     * 101 written to the buffer), us; --greeting: each response's first
     * audio as measured (response.create read -> first delta written), us
     */

    fprintf(f, "\"upgrade_delay_ms\":%.3f,\"upgrades_held\":%lu,"
            "\"upgrade_hold_us\":", (double) echo_upgrade_delay / 1e6,
            echo_stats.upgrades_held);
    bench_hist_json(f, &echo_hold_us);

    fprintf(f, ",\"greeting_ms\":%u,\"first_audio_ms\":%.3f,"
            "\"responses_created\":%lu,\"responses_refused\":%lu,"
            "\"responses_cancelled\":%lu,\"responses_cut\":%lu,"
            "\"appends_silent\":%lu,\"first_audio_us\":", echo_greeting,
            echo_first_audio_ms, echo_stats.responses_created,
            echo_stats.responses_refused, echo_stats.responses_cancelled,
            echo_stats.responses_cut, echo_stats.appends_silent);
    bench_hist_json(f, &echo_first_us);
    fprintf(f, "}\n");

    fclose(f);
}


static void
echo_hist_say(const char *what, bench_hist_t *h)
{
    if (h->n == 0) {
        fprintf(stderr, " none\n");
        return;
    }

    fprintf(stderr, " %s p50 %.2f ms p99 %.2f ms max %.2f ms (%llu)\n", what,
            (double) bench_hist_percentile(h, 50) / 1e3,
            (double) bench_hist_percentile(h, 99) / 1e3,
            (double) h->max / 1e3, (unsigned long long) h->n);
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
            "                     [--transcripts MS] [--shape SHAPE]"
            " [--turn-ms MIN-MAX]\n"
            "                     [--upgrade-delay MS] [--greeting MS_AUDIO]"
            " [--first-audio MS]\n"
            "                     [--quiet]\n"
            "  --listen      loopback address to listen on"
            " (default 127.0.0.1:0: a free port)\n"
            "  --ready-file  written with the port once listening\n"
            "  --json        counters and own CPU time at exit\n"
            "  --max-conns   connections at once (default 10000)\n"
            "  --max-time    exits by itself after S seconds"
            " (default 3600)\n"
            "  --transcripts every MS ms per connection, a transcript"
            " and a response.done\n"
            "                with usage (default: never)\n"
            "  --shape       echo (default): every append answered with"
            " its audio;\n"
            "                conversation: agent turns of audio deltas"
            " (100-200 ms each,\n"
            "                2-5x real time) about half of the time\n"
            "  --turn-ms     an agent turn's audio, ms (default"
            " 2000-5000)\n"
            "  --tls-cert FILE --tls-key FILE  serve wss://\n"
            "  --interface   ga (default) or beta: the audio deltas named"
            " as the beta\n"
            "                interface named them (response.audio.delta)\n"
            "  --upgrade-delay MS  each upgrade answered MS ms after its"
            " request\n"
            "  --greeting MS_AUDIO  no echo; each response.create answered"
            " with MS_AUDIO\n"
            "                ms of audio (100 ms deltas, 5x real time) and"
            " its transcript\n"
            "  --first-audio MS  with --greeting: response.create -> the"
            " first delta\n"
            "                (default 0)\n");
    exit(2);
}
