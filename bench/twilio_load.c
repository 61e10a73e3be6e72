
/*
 * twilio_load: holds N simulated Twilio Media Streams calls against a
 * ws:// URL, one process, one thread, epoll.
 *
 * Each call upgrades (random key, Sec-WebSocket-Accept verified), sends
 * "connected" and "start", then one "media" of 160 bytes of mu-law every
 * 20 ms on a drift-free CLOCK_MONOTONIC grid, each call at a random phase
 * of its own (no shared tick: calls are independent).  Each payload
 * begins with an id (call, sequence number, send time) so that the audio
 * echoed back is matched to the frame it
 * came from: the round-trip time is measured per frame, and a frame never
 * echoed within the grace period is lost.  Marks are echoed as Twilio
 * does; at the end "stop" and a close.
 *
 * With --shape conversation the Realtime side talks instead of echoing
 * (realtime_echo --shape conversation): the caller's frames still go
 * every 20 ms, and the agent's frames are what is measured: each carries
 * its send time, its call and a sequence number, so that the time from
 * the simulator to here is measured per frame and a gap in the sequence
 * (or a turn cut short at the end) is a frame lost.
 *
 * With --direct it speaks the Realtime API instead (for the floor: the
 * same path without the gateway): input_audio_buffer.append out,
 * response.output_audio.delta back.  With --mark-sink too (the kernel
 * floor, relay_floor --sink-listen) each call keeps twirt's mark rule
 * on the deltas it gets (ngx_http_twirt_call_play()): after a delta a
 * mark if the buffer was dry (no mark outstanding, no audio unmarked:
 * twirt's clock needs the echo) or twirt_mark_interval (100 ms) of audio
 * went unmarked; the last audio of an item when the next starts or the
 * response is done, and, with no response on, what is unmarked when a
 * mark is echoed (ngx_http_twirt_call_heard()).  Each mark is echoed as
 * --marks says, as Twilio's echo (a masked mark event of its size) on a
 * second connection per call, to the sink: the floor then receives
 * what nginx receives for twirt and consumes without forwarding.
 *
 * Only loopback addresses are accepted.  Every loop and wait is bounded.
 */


#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bench_codec.h"
#include "bench_net.h"
#include "bench_stats.h"
#include "bench_ws.h"


#define LOAD_PERIOD          20000000ULL     /* ns: 20 ms of audio */
#define LOAD_FRAME           160             /* bytes of mu-law per 20 ms */
#define LOAD_B64             bench_base64_len(LOAD_FRAME)
#define LOAD_ID_LEN          16
#define LOAD_MAGIC0          0xb5
#define LOAD_MAGIC1          0x7e
#define LOAD_AGENT1          0x7f            /* the agent's frames */
#define LOAD_NO_CALL         0xffffff        /* the simulator's "unknown" */
#define LOAD_DRAIN_MIN       200000000ULL    /* ns: a last turn shows */
#define LOAD_MAX_CALLS       20000
#define LOAD_MAX_DURATION    3600
#define LOAD_MAX_MESSAGE     (64 * 1024)
#define LOAD_OUT_SIZE        (64 * 1024)
#define LOAD_CATCHUP         50              /* frames at most per wakeup */
#define LOAD_MARKS           64              /* marks waiting to "play" */
#define LOAD_MARK_NAME       128
#define LOAD_MARK_BYTES      800             /* twirt_mark_interval 100 ms */
#define LOAD_ITEM_ID         64              /* as NGX_HTTP_TWIRT_ID_MAX */
#define LOAD_SINK_OUT        (16 * 1024)
#define LOAD_CLOSE_TIMEOUT   2000000000ULL
#define LOAD_EVENTS          512
#define LOAD_ERRORS_SHOWN    5

#define LOAD_IDLE            0
#define LOAD_CONNECTING      1
#define LOAD_UPGRADING       2
#define LOAD_STREAMING       3
#define LOAD_DRAINING        4      /* media sent, waiting for echoes */
#define LOAD_CLOSING         5      /* stop and close sent */
#define LOAD_DONE            6


typedef struct {
    uint64_t            due;
    size_t              len;
    char                name[LOAD_MARK_NAME];
} load_mark_t;


/* epoll's data: the call's index, and which of its sockets */
#define LOAD_EV(c, sink)     (((uint64_t) (c)->idx << 1) | (sink))


typedef struct {
    bench_ws_t          ws;             /* ws.fd == -1: no socket */
    bench_ws_t          sink;           /* --mark-sink; sink.fd == -1: none */
    unsigned            idx;
    int                 state;
    size_t              heap;           /* position in the timer heap */
    uint64_t            wake;

    uint64_t            t_start;        /* when to connect */
    uint64_t            t_connect;
    uint64_t            t_101;
    uint64_t            first_echo_us;  /* since load_t0 */
    uint64_t            deadline;       /* of the current state */
    uint64_t            anchor;         /* the call's phase on the grid */
    uint64_t            next_media;

    uint32_t            frames_total;
    uint32_t            sent;
    uint32_t            echoed;
    uint32_t            twilio_seq;
    uint32_t            agent_next;     /* the next agent frame expected */
    unsigned            agent_left;     /* frames left in the agent's turn */
    uint64_t            drain_min;      /* conversation: drain at least */
    unsigned char      *echo_map;       /* one bit per frame */

    unsigned char       rx[LOAD_FRAME];  /* audio split across messages */
    size_t              rx_len;

    uint64_t            play_end;       /* --marks played */
    load_mark_t        *marks;
    unsigned            mark_head;
    unsigned            mark_count;

    uint64_t            unmarked;       /* --mark-sink: twirt's rule */
    unsigned            outstanding;    /* marks made, not echoed yet */
    unsigned            mark_seq;
    size_t              item_len;
    char                item[LOAD_ITEM_ID];

    char                key[BENCH_WS_KEY_LEN + 1];

    unsigned            want_out:1;
    unsigned            sink_want_out:1;
    unsigned            sink_connecting:1;
    unsigned            responding:1;   /* response.created to .done */
    unsigned            close_sent:1;
    unsigned            upgraded:1;
    unsigned            echo_seen:1;
    unsigned            failed:1;
    unsigned            dropped:1;
    unsigned            completed:1;
} load_call_t;


typedef struct {
    unsigned long       requested;
    unsigned long       started;
    unsigned long       established;
    unsigned long       failed;
    unsigned long       dropped;
    unsigned long       completed;
    unsigned long       no_audio;
    unsigned long       close_timeouts;
    unsigned long       active;

    unsigned long long  frames_sent;
    unsigned long long  frames_received;
    unsigned long long  frames_duplicate;
    unsigned long long  frames_misrouted;
    unsigned long long  frames_corrupt;
    unsigned long long  frames_late;
    unsigned long long  bytes_skipped;      /* resynchronising */
    unsigned long long  late_sends;         /* over 1 ms behind schedule */
    unsigned long long  messages_in;
    unsigned long long  other_in;
    unsigned long long  bad_json;
    unsigned long long  stream_mismatch;

    unsigned long long  marks_received;
    unsigned long long  marks_echoed;
    unsigned long long  marks_overflow;
    unsigned long long  clears;
    unsigned long long  pings;
    unsigned long long  upstream_errors;    /* --direct: "error" events */
    unsigned long long  sessions_created;
    unsigned long long  sessions_updated;
    unsigned long long  send_overflows;

    unsigned long long  agent_frames;       /* --shape conversation */
    unsigned long long  agent_lost;
    unsigned long long  agent_duplicate;
    unsigned long long  agent_turns;

    bench_hist_t        rtt;                /* us, once the call is up */
    bench_hist_t        rtt_setup;          /* us, sent before 1st echo */
    bench_hist_t        lag;                /* us behind the grid, sends */
    bench_hist_t        setup_101;          /* us, connect to 101 */
    bench_hist_t        setup_media;        /* us, connect to first echo */
} load_stats_t;


static int load_options(int argc, char **argv);
static void load_usage(void);
static void load_timer(load_call_t *c, uint64_t now);
static void load_connect(load_call_t *c, uint64_t now);
static void load_connected(load_call_t *c);
static void load_tls(load_call_t *c);
static void load_event(load_call_t *c, uint32_t events);
static int load_sink_open(load_call_t *c);
static void load_sink_event(load_call_t *c, uint32_t events);
static int load_upgrade(load_call_t *c, uint64_t now);
static int load_begin(load_call_t *c, uint64_t now);
static int load_message(load_call_t *c, bench_ws_msg_t *m, uint64_t now);
static int load_twilio(load_call_t *c, const char *p, size_t len,
    uint64_t now);
static int load_realtime(load_call_t *c, const char *p, size_t len,
    uint64_t now);
static void load_audio(load_call_t *c, const unsigned char *p, size_t n,
    uint64_t now);
static int load_drained(load_call_t *c, uint64_t now);
static int load_agent_frame(load_call_t *c, const unsigned char *f,
    uint64_t now);
static int load_frame_check(load_call_t *c, const unsigned char *f,
    uint64_t now);
static int load_rule_audio(load_call_t *c, const char *p, size_t len,
    size_t bytes, uint64_t now);
static int load_rule_mark(load_call_t *c, uint64_t now);
static int load_mark(load_call_t *c, const char *name, size_t len,
    uint64_t now);
static int load_mark_send(load_call_t *c, const char *name, size_t len,
    uint64_t now);
static int load_marks_due(load_call_t *c, uint64_t now, int all);
static int load_media(load_call_t *c, uint64_t now);
static int load_finish(load_call_t *c, uint64_t now);
static int load_close(load_call_t *c, unsigned code);
static int load_request_build(void);
static void load_frame_build(unsigned char *f, unsigned idx, uint32_t seq,
    uint64_t us);
static void load_fail(load_call_t *c, const char *why);
static void load_drop(load_call_t *c, const char *why);
static void load_done(load_call_t *c);
static void load_io(load_call_t *c);
static void load_reschedule(load_call_t *c);
static uint64_t load_wake(load_call_t *c);
static void load_interrupt(uint64_t now);
static void load_progress(uint64_t now);
static void load_report(void);
static void load_json(const char *path, double wall, bench_cpu_t *cpu);
static void load_frames(unsigned long long *sent,
    unsigned long long *received, unsigned long long *lost);
static void load_error(load_call_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void load_signal(int signo);

static uint64_t load_phase(void);
static void load_heap_push(load_call_t *c);
static void load_heap_remove(load_call_t *c);
static void load_heap_fix(load_call_t *c);
static void load_heap_up(size_t i);
static void load_heap_down(size_t i);


/* options */
static bench_url_t           load_url;
static const char           *load_url_s;
static unsigned              load_ncalls = 1;
static double                load_duration = 10;
static double                load_ramp = 1;
static double                load_grace = 2;
static uint64_t              load_steady_us;    /* --steady-after */
static double                load_setup_timeout = 10;
static double                load_progress_s = 5;
static uint64_t              load_tick;               /* ns, 0: none */
static int                   load_direct;
static int                   load_conversation;
static int                   load_played;
static int                   load_quiet;
static const char           *load_json_path;
static const char           *load_api_key = "bench";
static const char           *load_auth_token;
static const char           *load_signature_url;
static const char           *load_ca;
static bench_url_t           load_sink;
static int                   load_sink_on;
static SSL_CTX              *load_ssl_ctx;

/* state */
static int                   load_ep;
static load_call_t          *load_calls;
static load_call_t         **load_heap;
static size_t                load_heap_n;
static load_stats_t          load_stats;
static uint64_t              load_t0;
static uint64_t              load_sid_base;
static unsigned long         load_errors_shown;
static char                  load_request[1024];
static size_t                load_request_key;   /* offset of the key */
static size_t                load_request_len;
static volatile sig_atomic_t load_signals;
static int                   load_interrupted;


int
main(int argc, char **argv)
{
    int                  n, i, interrupted;
    double               wall;
    sigset_t             orig;
    uint64_t             now, next, hard, next_progress, next_timers,
                         frames;
    unsigned             k;
    bench_cpu_t          cpu;
    load_call_t         *c;
    struct timespec      ts;
    struct epoll_event   events[LOAD_EVENTS];

    n = load_options(argc, argv);

    if (n != 0) {
        if (n == -2) {
            load_usage();

        } else {
            fprintf(stderr, "twilio_load: see twilio_load --help\n");
        }

        return 2;
    }

    if (bench_nofile(load_ncalls + 64) < load_ncalls + 64) {
        fprintf(stderr, "twilio_load: %u calls need %u file descriptors, "
                "the limit is %lu (ulimit -n)\n", load_ncalls,
                load_ncalls + 64, bench_nofile(0));
        return 2;
    }

    /* wakeups on time: the default slack is 50 us */
    (void) prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

    load_calls = calloc(load_ncalls, sizeof(load_call_t));
    load_heap = calloc(load_ncalls, sizeof(load_call_t *));

    if (load_calls == NULL || load_heap == NULL
        || bench_hist_init(&load_stats.rtt) != 0
        || bench_hist_init(&load_stats.rtt_setup) != 0
        || bench_hist_init(&load_stats.lag) != 0
        || bench_hist_init(&load_stats.setup_101) != 0
        || bench_hist_init(&load_stats.setup_media) != 0)
    {
        fprintf(stderr, "twilio_load: out of memory\n");
        return 2;
    }

    load_ep = epoll_create1(EPOLL_CLOEXEC);
    if (load_ep == -1) {
        fprintf(stderr, "twilio_load: epoll_create1() failed: %s\n",
                strerror(errno));
        return 2;
    }

    bench_signals(load_signal, &orig);

    /* CallSids unique across runs too: seconds since 1970, then the index */
    load_sid_base = (uint64_t) time(NULL) * 100000;

    frames = (uint64_t) (load_duration * 50 + 0.5);
    if (frames == 0) {
        frames = 1;
    }

    load_t0 = bench_now() + 10000000;    /* 10 ms to set everything up */

    for (k = 0; k < load_ncalls; k++) {
        c = &load_calls[k];

        c->idx = k;
        c->ws.fd = -1;
        c->sink.fd = -1;
        c->state = LOAD_IDLE;
        c->frames_total = (uint32_t) frames;
        c->t_start = load_t0
                     + (uint64_t) (load_ramp * 1e9 * k / load_ncalls);
        c->anchor = load_t0 + load_phase();
        c->echo_map = calloc((frames + 7) / 8, 1);

        if (c->echo_map == NULL) {
            fprintf(stderr, "twilio_load: out of memory\n");
            return 2;
        }

        if (load_played) {
            c->marks = calloc(LOAD_MARKS, sizeof(load_mark_t));
            if (c->marks == NULL) {
                fprintf(stderr, "twilio_load: out of memory\n");
                return 2;
            }
        }

        c->wake = c->t_start;
        load_heap_push(c);
    }

    load_stats.requested = load_ncalls;
    load_stats.active = load_ncalls;

    hard = load_t0 + (uint64_t) ((load_ramp + load_setup_timeout
                                  + load_duration + load_grace + 7) * 1e9);
    next_progress = load_t0 + (uint64_t) (load_progress_s * 1e9);
    interrupted = 0;
    next_timers = 0;

    if (!load_quiet) {
        fprintf(stderr, "twilio_load: %u %s calls to %s for %.1f s "
                "(ramp %.1f s), marks %s%s\n", load_ncalls,
                load_direct ? "direct (Realtime)" : "Twilio", load_url_s,
                load_duration, load_ramp,
                load_played ? "echoed when played" : "echoed at once",
                load_sink_on ? " to the mark sink"
                : load_direct ? " (none: no --mark-sink)" : "");
    }

    while (load_stats.active > 0) {
        now = bench_now();

        if (now >= hard) {
            fprintf(stderr, "twilio_load: the run took too long, "
                    "%lu calls still open: stopping\n", load_stats.active);
            break;
        }

        if (load_signals && !interrupted) {
            interrupted = 1;
            load_interrupted = 1;
            fprintf(stderr, "twilio_load: interrupted, ending the calls\n");
            load_interrupt(now);
            hard = now + (uint64_t) ((load_grace + 3) * 1e9);
            continue;
        }

        if (load_signals > 1) {
            fprintf(stderr, "twilio_load: interrupted again, stopping\n");
            break;
        }

        /*
         * By default every call's frame leaves at its own time, as
         * independent callers' do.  --tick-us groups the sends due within
         * a tick into one wakeup (cheaper for this tool at 1000 calls,
         * but the gateway then sees bursts of calls that real traffic
         * does not have).
         */

        if (now >= next_timers) {
            while (load_heap_n && load_heap[0]->wake <= now) {
                load_timer(load_heap[0], now);
            }

            next_timers = now + load_tick;
        }

        if (load_progress_s > 0 && now >= next_progress && !load_quiet) {
            load_progress(now);
            next_progress += (uint64_t) (load_progress_s * 1e9);
        }

        next = hard;

        if (load_heap_n && load_heap[0]->wake < next) {
            next = load_heap[0]->wake > next_timers ? load_heap[0]->wake
                                                    : next_timers;
        }

        if (load_progress_s > 0 && !load_quiet && next_progress < next) {
            next = next_progress;
        }

        now = bench_now();
        next = next > now ? next - now : 0;
        ts.tv_sec = (time_t) (next / 1000000000);
        ts.tv_nsec = (long) (next % 1000000000);

        n = epoll_pwait2(load_ep, events, LOAD_EVENTS, &ts, &orig);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            fprintf(stderr, "twilio_load: epoll_pwait2() failed: %s\n",
                    strerror(errno));
            break;
        }

        for (i = 0; i < n; i++) {
            c = &load_calls[events[i].data.u64 >> 1];

            if (events[i].data.u64 & 1) {
                load_sink_event(c, events[i].events);

            } else {
                load_event(c, events[i].events);
            }
        }
    }

    /* whatever is still open at a hard stop */

    for (k = 0; k < load_ncalls; k++) {
        if (load_calls[k].state != LOAD_DONE) {
            if (load_calls[k].state == LOAD_IDLE) {
                load_calls[k].state = LOAD_DONE;
                continue;
            }

            if (load_calls[k].state < LOAD_STREAMING) {
                load_fail(&load_calls[k], "not set up at the end");

            } else if (load_calls[k].state < LOAD_CLOSING) {
                load_drop(&load_calls[k], "still streaming at the end");

            } else {
                load_stats.close_timeouts++;
                load_done(&load_calls[k]);
            }
        }
    }

    bench_cpu(&cpu);
    wall = (double) (bench_now() - load_t0) / 1e9;

    if (!load_quiet) {
        load_report();
    }

    if (load_json_path) {
        load_json(load_json_path, wall, &cpu);
    }

    if (load_interrupted
        || load_stats.established != load_stats.requested
        || load_stats.dropped
        || (load_conversation
            ? load_stats.agent_lost || load_stats.agent_frames == 0
              || load_stats.frames_misrouted
            : load_stats.frames_received != load_stats.frames_sent))
    {
        return 1;
    }

    return 0;
}


static int
load_options(int argc, char **argv)
{
    int          i;
    char         err[256];
    double       v;
    const char  *a;

    for (i = 1; i < argc; i++) {
        a = argv[i];

        if (strcmp(a, "--direct") == 0) {
            load_direct = 1;
            continue;
        }

        if (strcmp(a, "--quiet") == 0) {
            load_quiet = 1;
            continue;
        }

        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return -2;
        }

        if (i + 1 == argc) {
            fprintf(stderr, "twilio_load: \"%s\" needs a value\n", a);
            return -1;
        }

        i++;

        if (strcmp(a, "--url") == 0) {
            load_url_s = argv[i];

        } else if (strcmp(a, "--ca") == 0) {
            load_ca = argv[i];

        } else if (strcmp(a, "--shape") == 0) {
            if (strcmp(argv[i], "conversation") == 0) {
                load_conversation = 1;

            } else if (strcmp(argv[i], "echo") != 0) {
                fprintf(stderr, "twilio_load: --shape: echo or "
                        "conversation\n");
                return -1;
            }

        } else if (strcmp(a, "--calls") == 0) {
            if (bench_number(argv[i], 1, LOAD_MAX_CALLS, &v) != 0) {
                fprintf(stderr, "twilio_load: --calls: 1 to %d\n",
                        LOAD_MAX_CALLS);
                return -1;
            }

            load_ncalls = (unsigned) v;

        } else if (strcmp(a, "--duration") == 0) {
            if (bench_number(argv[i], 0.02, LOAD_MAX_DURATION, &load_duration)
                != 0)
            {
                fprintf(stderr, "twilio_load: --duration: 0.02 to %d s\n",
                        LOAD_MAX_DURATION);
                return -1;
            }

        } else if (strcmp(a, "--ramp") == 0) {
            if (bench_number(argv[i], 0, 600, &load_ramp) != 0) {
                fprintf(stderr, "twilio_load: --ramp: 0 to 600 s\n");
                return -1;
            }

        } else if (strcmp(a, "--steady-after") == 0) {
            if (bench_number(argv[i], 0, 3600, &v) != 0) {
                fprintf(stderr, "twilio_load: --steady-after: 0 to 3600 s\n");
                return -1;
            }

            load_steady_us = (uint64_t) (v * 1e6);

        } else if (strcmp(a, "--grace") == 0) {
            if (bench_number(argv[i], 0, 60, &load_grace) != 0) {
                fprintf(stderr, "twilio_load: --grace: 0 to 60 s\n");
                return -1;
            }

        } else if (strcmp(a, "--setup-timeout") == 0) {
            if (bench_number(argv[i], 0.1, 60, &load_setup_timeout) != 0) {
                fprintf(stderr, "twilio_load: --setup-timeout: 0.1 to 60 s\n");
                return -1;
            }

        } else if (strcmp(a, "--tick-us") == 0) {
            if (bench_number(argv[i], 0, 5000, &v) != 0) {
                fprintf(stderr, "twilio_load: --tick-us: 0 to 5000\n");
                return -1;
            }

            load_tick = (uint64_t) (v * 1000);

        } else if (strcmp(a, "--progress") == 0) {
            if (bench_number(argv[i], 0, 3600, &load_progress_s) != 0) {
                fprintf(stderr, "twilio_load: --progress: 0 to 3600 s\n");
                return -1;
            }

        } else if (strcmp(a, "--marks") == 0) {
            if (strcmp(argv[i], "played") == 0) {
                load_played = 1;

            } else if (strcmp(argv[i], "immediate") != 0) {
                fprintf(stderr, "twilio_load: --marks: immediate or "
                        "played\n");
                return -1;
            }

        } else if (strcmp(a, "--mark-sink") == 0) {
            if (bench_listen_parse(argv[i], &load_sink, err, sizeof(err))
                != 0)
            {
                fprintf(stderr, "twilio_load: --mark-sink: %s\n", err);
                return -1;
            }

            load_sink_on = 1;

        } else if (strcmp(a, "--json") == 0) {
            load_json_path = argv[i];

        } else if (strcmp(a, "--api-key") == 0) {
            load_api_key = argv[i];

        } else if (strcmp(a, "--auth-token") == 0) {
            load_auth_token = argv[i];

        } else if (strcmp(a, "--signature-url") == 0) {
            load_signature_url = argv[i];

        } else {
            fprintf(stderr, "twilio_load: unknown option \"%s\"\n", a);
            return -1;
        }
    }

    if (load_url_s == NULL) {
        return -2;
    }

    if (load_sink_on && !load_direct) {
        fprintf(stderr, "twilio_load: --mark-sink goes with --direct "
                "(through a gateway, the gateway makes the marks)\n");
        return -1;
    }

    if (bench_url_parse(load_url_s, &load_url, err, sizeof(err)) != 0) {
        fprintf(stderr, "twilio_load: %s\n", err);
        return -1;
    }

    if (load_url.tls) {
        load_ssl_ctx = bench_tls_client_ctx(load_ca, err, sizeof(err));

        if (load_ssl_ctx == NULL) {
            fprintf(stderr, "twilio_load: %s\n", err);
            return -1;
        }
    }

    if (strpbrk(load_api_key, "\r\n") != NULL
        || strlen(load_api_key) > 200)
    {
        fprintf(stderr, "twilio_load: bad --api-key\n");
        return -1;
    }

    return load_request_build();
}


/* the upgrade request, the same for every call but for the key */

static int
load_request_build(void)
{
    int            n;
    char           sig[64], hdr[128];
    unsigned int   mdlen;
    const char    *surl;
    unsigned char  md[EVP_MAX_MD_SIZE];

    hdr[0] = '\0';

    if (load_auth_token) {
        surl = load_signature_url ? load_signature_url : load_url_s;

        if (HMAC(EVP_sha1(), load_auth_token, (int) strlen(load_auth_token),
                 (const unsigned char *) surl, strlen(surl), md, &mdlen)
            == NULL)
        {
            fprintf(stderr, "twilio_load: HMAC() failed\n");
            return -1;
        }

        sig[bench_base64_encode(sig, md, mdlen)] = '\0';
        snprintf(hdr, sizeof(hdr), "X-Twilio-Signature: %s\r\n", sig);
    }

    n = snprintf(load_request, sizeof(load_request),
                 "GET %s HTTP/1.1\r\n"
                 "Host: %s\r\n"
                 "Upgrade: websocket\r\n"
                 "Connection: Upgrade\r\n"
                 "Sec-WebSocket-Version: 13\r\n"
                 "User-Agent: Twilio.TmeWs/1.0 (twirt bench)\r\n"
                 "%s%s%s%s"
                 "Sec-WebSocket-Key: ",
                 load_url.path, load_url.host, hdr,
                 load_direct ? "Authorization: Bearer " : "",
                 load_direct ? load_api_key : "",
                 load_direct ? "\r\n" : "");

    if (n < 0 || (size_t) n + BENCH_WS_KEY_LEN + 5 > sizeof(load_request)) {
        fprintf(stderr, "twilio_load: the URL is too long\n");
        return -1;
    }

    load_request_key = (size_t) n;
    memcpy(load_request + n + BENCH_WS_KEY_LEN, "\r\n\r\n", 4);
    load_request_len = (size_t) n + BENCH_WS_KEY_LEN + 4;

    return 0;
}


static void
load_usage(void)
{
    fprintf(stderr,
        "usage: twilio_load --url ws://HOST:PORT/PATH [options]\n"
        "  --calls N           simulated calls at once (default 1, max %d)\n"
        "  --duration S        seconds of audio per call (default 10)\n"
        "  --ramp S            spread the connection starts over S seconds"
        " (default 1)\n"
        "  --grace S           wait for echoes after the last frame"
        " (default 2)\n"
        "  --setup-timeout S   connect and upgrade within S (default 10)\n"
        "  --tick-us US        send timers run at most once per US"
        " microseconds\n"
        "                      (default 0: each at its exact time)\n"
        "  --marks MODE        immediate (default) or played: echo a mark\n"
        "                      when the audio before it would have played\n"
        "  --direct            speak the Realtime API (input_audio_buffer."
        "append)\n"
        "                      to a Realtime simulator: the floor\n"
        "  --api-key KEY       bearer key with --direct (default bench)\n"
        "  --mark-sink H:P     with --direct: make marks by twirt's rule on"
        " the deltas\n"
        "                      and send their echoes (Twilio mark events,"
        " as --marks\n"
        "                      says) on a second connection per call to H:P"
        "\n"
        "                      (relay_floor --sink-listen: the kernel"
        " floor)\n"
        "  --steady-after S    frames sent in the first S seconds (the"
        " ramp: other\n"
        "                      calls' setups, TLS handshakes) are counted"
        " with the\n"
        "                      setup's, apart (default 0)\n"
        "  --ca FILE           wss://: the CAs to verify the server with"
        " (default:\n"
        "                      the system's)\n"
        "  --shape SHAPE       echo (default: every frame comes back) or\n"
        "                      conversation (realtime_echo --shape"
        " conversation:\n"
        "                      the agent's frames are measured)\n"
        "  --auth-token TOKEN  sign the upgrade (X-Twilio-Signature)\n"
        "  --signature-url U   the URL signed (default --url)\n"
        "  --json FILE         the report as JSON\n"
        "  --progress S        a progress line every S seconds (default 5,"
        " 0 off)\n"
        "  --quiet             nothing on stderr but errors\n"
        "Only loopback addresses (127.0.0.0/8, ::1, localhost).  Exit 0 when"
        " every call\nwas set up and no frame was lost, 1 otherwise (or when"
        " interrupted), 2 on\nbad usage.\n", LOAD_MAX_CALLS);
}


static void
load_timer(load_call_t *c, uint64_t now)
{
    uint32_t  burst;

    switch (c->state) {

    case LOAD_IDLE:
        load_connect(c, now);
        break;

    case LOAD_CONNECTING:
    case LOAD_UPGRADING:
        if (now >= c->deadline) {
            load_fail(c, c->state == LOAD_CONNECTING ? "connect timed out"
                                                     : "upgrade timed out");
            return;
        }

        break;

    case LOAD_STREAMING:
        burst = 0;

        while (c->next_media <= now && c->sent < c->frames_total
               && burst++ < LOAD_CATCHUP)
        {
            if (load_media(c, now) != 0) {
                load_drop(c, "output buffer full");
                return;
            }

            now = bench_now();
        }

        if (load_played && load_marks_due(c, now, 0) != 0) {
            load_drop(c, "output buffer full");
            return;
        }

        if (c->sent == c->frames_total) {
            c->state = LOAD_DRAINING;
            c->deadline = now + (uint64_t) (load_grace * 1e9);
            c->drain_min = now + LOAD_DRAIN_MIN;
        }

        if (c->state == LOAD_DRAINING && load_drained(c, now)) {
            if (load_finish(c, now) != 0) {
                load_drop(c, "output buffer full");
                return;
            }
        }

        break;

    case LOAD_DRAINING:
        if (load_played && load_marks_due(c, now, 0) != 0) {
            load_drop(c, "output buffer full");
            return;
        }

        if (now >= c->deadline || load_drained(c, now)) {
            if (load_finish(c, now) != 0) {
                load_drop(c, "output buffer full");
                return;
            }
        }

        break;

    case LOAD_CLOSING:
        if (now >= c->deadline) {
            load_stats.close_timeouts++;
            load_done(c);
            return;
        }

        break;

    default:
        return;
    }

    load_io(c);

    if (c->state != LOAD_DONE) {
        load_reschedule(c);
    }
}


static void
load_connect(load_call_t *c, uint64_t now)
{
    int                 fd;
    struct epoll_event  ev;

    load_stats.started++;

    fd = bench_socket(&load_url.sa);
    if (fd == -1) {
        load_error(c, "socket() failed: %s", strerror(errno));
        c->failed = 1;
        load_stats.failed++;
        load_done(c);
        return;
    }

    if (bench_ws_init(&c->ws, fd, NGX_HTTP_TWIRT_WS_CLIENT, LOAD_MAX_MESSAGE,
                      LOAD_OUT_SIZE) != 0)
    {
        close(fd);
        c->ws.fd = -1;
        load_fail(c, "out of memory");
        return;
    }

    c->t_connect = bench_now();
    c->deadline = now + (uint64_t) (load_setup_timeout * 1e9);
    c->state = LOAD_CONNECTING;

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u64 = LOAD_EV(c, 0);

    if (epoll_ctl(load_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        load_fail(c, "epoll_ctl() failed");
        return;
    }

    c->want_out = 1;

    if (load_sink_on && load_sink_open(c) != 0) {
        load_error(c, "mark sink: %s", strerror(errno));
        load_fail(c, NULL);
        return;
    }

    if (connect(fd, (struct sockaddr *) &load_url.sa, load_url.socklen) == 0)
    {
        load_connected(c);
        return;
    }

    if (errno != EINPROGRESS) {
        load_error(c, "connect() failed: %s", strerror(errno));
        load_fail(c, NULL);
        return;
    }

    load_reschedule(c);
}


static void
load_connected(load_call_t *c)
{
    /* wss://: TLS first, the certificate verified as Twilio does */

    if (load_ssl_ctx && c->ws.ssl == NULL) {
        c->state = LOAD_UPGRADING;

        if (bench_ws_tls(&c->ws, load_ssl_ctx, load_url.name) != 0) {
            load_fail(c, "TLS setup failed");
            return;
        }

        load_tls(c);
        return;
    }

    bench_ws_key(c->key);
    memcpy(load_request + load_request_key, c->key, BENCH_WS_KEY_LEN);

    if (bench_ws_send_raw(&c->ws, load_request, load_request_len) != 0) {
        load_fail(c, "output buffer full");
        return;
    }

    c->state = LOAD_UPGRADING;

    load_io(c);

    if (c->state != LOAD_DONE) {
        load_reschedule(c);
    }
}


static void
load_tls(load_call_t *c)
{
    int  rc;

    rc = bench_ws_tls_handshake(&c->ws);

    if (rc == -1) {
        load_error(c, "TLS handshake failed: %s", c->ws.error);
        load_fail(c, NULL);
        return;
    }

    if (rc == 0) {
        load_connected(c);
        return;
    }

    load_io(c);

    if (c->state != LOAD_DONE) {
        load_reschedule(c);
    }
}


/*
 * --mark-sink: the call's second connection, to the floor's sink, where
 * the echoes of its marks go (masked frames, no upgrade: the sink only
 * reads).  0, or -1 with errno set.
 */

static int
load_sink_open(load_call_t *c)
{
    int                 fd;
    struct epoll_event  ev;

    fd = bench_socket(&load_sink.sa);
    if (fd == -1) {
        return -1;
    }

    if (bench_ws_init(&c->sink, fd, NGX_HTTP_TWIRT_WS_CLIENT, 0,
                      LOAD_SINK_OUT)
        != 0)
    {
        close(fd);
        c->sink.fd = -1;
        errno = ENOMEM;
        return -1;
    }

    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP;
    ev.data.u64 = LOAD_EV(c, 1);

    if (epoll_ctl(load_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        return -1;
    }

    c->sink_want_out = 1;
    c->sink_connecting = 1;

    if (connect(fd, (struct sockaddr *) &load_sink.sa, load_sink.socklen)
        == 0)
    {
        c->sink_connecting = 0;
        return 0;
    }

    return errno == EINPROGRESS ? 0 : -1;
}


static void
load_sink_event(load_call_t *c, uint32_t events)
{
    int          err;
    ssize_t      n;
    socklen_t    len;
    const char  *why;

    if (c->state == LOAD_DONE || c->sink.fd == -1) {
        return;
    }

    why = NULL;

    if (c->sink_connecting) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->sink.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
            || err != 0 || (events & (EPOLLERR | EPOLLHUP)))
        {
            why = "mark sink: connect() failed";

        } else {
            c->sink_connecting = 0;
        }

    } else if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        /* the sink never writes: this is its end */
        n = bench_ws_read(&c->sink);
        c->sink.in_start = 0;
        c->sink.in_end = 0;

        if (n == 0 || n == -1) {
            why = "the mark sink closed the connection";
        }
    }

    if (why) {
        if (c->state < LOAD_STREAMING) {
            load_fail(c, why);

        } else {
            load_drop(c, why);
        }

        return;
    }

    load_io(c);

    if (c->state != LOAD_DONE) {
        load_reschedule(c);
    }
}


static void
load_event(load_call_t *c, uint32_t events)
{
    int             rc, err;
    ssize_t         n;
    uint64_t        now;
    socklen_t       len;
    bench_ws_msg_t  m;

    if (c->state == LOAD_CONNECTING) {
        err = 0;
        len = sizeof(int);

        if (getsockopt(c->ws.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
            || err != 0)
        {
            load_error(c, "connect() failed: %s",
                       strerror(err ? err : errno));
            load_fail(c, NULL);
            return;
        }

        if (!(events & (EPOLLOUT | EPOLLIN))) {
            load_fail(c, "connect() failed");
            return;
        }

        load_connected(c);
        return;
    }

    if (c->ws.tls_handshake) {
        load_tls(c);
        return;
    }

    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        n = bench_ws_read(&c->ws);
        now = bench_now();

        if (n == 0 || n == -1) {
            if (c->state == LOAD_CLOSING) {
                load_done(c);

            } else if (c->state == LOAD_UPGRADING) {
                load_fail(c, n == 0 ? "closed during the upgrade"
                                    : "read error during the upgrade");

            } else {
                load_drop(c, n == 0 ? "the gateway closed the connection"
                                    : "read error");
            }

            return;
        }

        if (n > 0 && c->state == LOAD_UPGRADING) {
            rc = load_upgrade(c, now);

            if (rc != 0 || c->state == LOAD_DONE) {
                return;
            }
        }

        while (c->state >= LOAD_STREAMING && c->state <= LOAD_CLOSING) {
            rc = bench_ws_next(&c->ws, &m);

            if (rc == 0) {
                break;
            }

            if (rc == -1) {
                load_error(c, "protocol error: %s", c->ws.error);
                (void) load_close(c, c->ws.close_code);
                (void) bench_ws_flush(&c->ws);
                load_drop(c, NULL);
                return;
            }

            if (load_message(c, &m, now) != 0) {
                return;
            }
        }

        if (c->state == LOAD_DONE) {
            return;
        }

        /* the last echo: no need to wait out the grace period */

        if (c->state == LOAD_DRAINING && load_drained(c, now)
            && load_finish(c, now) != 0)
        {
            load_drop(c, "output buffer full");
            return;
        }
    }

    load_io(c);

    if (c->state != LOAD_DONE) {
        load_reschedule(c);
    }
}


static int
load_upgrade(load_call_t *c, uint64_t now)
{
    char                  accept[BENCH_WS_ACCEPT_LEN + 1];
    size_t                end, avail, vlen;
    const unsigned char  *p, *v, *eol;

    p = c->ws.in + c->ws.in_start;
    avail = c->ws.in_end - c->ws.in_start;

    end = bench_http_header_end(p, avail);

    if (end == 0) {
        if (avail > 8192) {
            load_fail(c, "response header too long");
            return -1;
        }

        return 0;
    }

    if (avail < 12 || memcmp(p, "HTTP/1.1 101", 12) != 0) {
        eol = memchr(p, '\r', end);
        load_error(c, "upgrade refused: \"%.*s\"",
                   (int) (eol ? eol - p : 0), (const char *) p);
        load_fail(c, NULL);
        return -1;
    }

    if (!bench_http_header(p, end, "Upgrade", &v, &vlen)
        || !bench_http_has_token(v, vlen, "websocket")
        || !bench_http_header(p, end, "Connection", &v, &vlen)
        || !bench_http_has_token(v, vlen, "upgrade"))
    {
        load_fail(c, "101 without Upgrade: websocket and "
                  "Connection: upgrade");
        return -1;
    }

    if (bench_ws_accept((const unsigned char *) c->key, BENCH_WS_KEY_LEN,
                        accept) != 0
        || !bench_http_header(p, end, "Sec-WebSocket-Accept", &v, &vlen)
        || vlen != BENCH_WS_ACCEPT_LEN
        || memcmp(v, accept, BENCH_WS_ACCEPT_LEN) != 0)
    {
        load_fail(c, "wrong Sec-WebSocket-Accept");
        return -1;
    }

    bench_ws_consume(&c->ws, end);

    c->t_101 = now;
    c->upgraded = 1;
    load_stats.established++;
    bench_hist_add(&load_stats.setup_101, (now - c->t_connect) / 1000);

    if (load_begin(c, now) != 0) {
        load_drop(c, "output buffer full");
        return -1;
    }

    return 0;
}


/* connected and start, or session.update; the first frame's place */

static int
load_begin(load_call_t *c, uint64_t now)
{
    int   n;
    char  buf[1024];

    if (load_direct) {
        n = snprintf(buf, sizeof(buf),
            "{\"type\":\"session.update\",\"event_id\":\"bench_session_%u\","
            "\"session\":{\"type\":\"realtime\",\"model\":\"gpt-realtime\","
            "\"instructions\":\"bench\",\"output_modalities\":[\"audio\"],"
            "\"audio\":{\"input\":{\"format\":{\"type\":\"audio/pcmu\"},"
            "\"turn_detection\":{\"type\":\"server_vad\"}},"
            "\"output\":{\"format\":{\"type\":\"audio/pcmu\"},"
            "\"voice\":\"marin\"}}}}", c->idx);

        if (bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, (size_t) n)
            != 0)
        {
            return -1;
        }

        /* --mark-sink: the echoes numbered as a Twilio stream's, after
         * its start (and each media, below): of the same size */
        c->twilio_seq = 2;

    } else {
        n = snprintf(buf, sizeof(buf),
                     "{\"event\":\"connected\",\"protocol\":\"Call\","
                     "\"version\":\"1.0.0\"}");

        if (bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, (size_t) n)
            != 0)
        {
            return -1;
        }

        c->twilio_seq = 1;

        n = snprintf(buf, sizeof(buf),
            "{\"event\":\"start\",\"sequenceNumber\":\"%u\","
            "\"streamSid\":\"MZ%032llx\",\"start\":{"
            "\"accountSid\":\"AC%032d\",\"streamSid\":\"MZ%032llx\","
            "\"callSid\":\"CA%032llu\",\"tracks\":[\"inbound\"],"
            "\"customParameters\":{\"agent\":\"bench\"},"
            "\"mediaFormat\":{\"encoding\":\"audio/x-mulaw\","
            "\"sampleRate\":8000,\"channels\":1}}}",
            c->twilio_seq++,
            (unsigned long long) (load_sid_base + c->idx), 0,
            (unsigned long long) (load_sid_base + c->idx),
            (unsigned long long) (load_sid_base + c->idx));

        if (bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, (size_t) n)
            != 0)
        {
            return -1;
        }
    }

    /*
     * The first frame goes at once, as Twilio's does, so that "first
     * echo" measures the setup; then the call's own phase of the grid,
     * drift-free.
     */

    c->next_media = now;
    c->state = LOAD_STREAMING;

    if (load_media(c, now) != 0) {
        return -1;
    }

    if (now < c->anchor) {
        c->next_media = c->anchor;

    } else {
        c->next_media = c->anchor
                        + ((now - c->anchor) / LOAD_PERIOD + 1) * LOAD_PERIOD;
    }

    return 0;
}


static int
load_message(load_call_t *c, bench_ws_msg_t *m, uint64_t now)
{
    unsigned              code, err;
    size_t                rlen;
    const unsigned char  *reason;

    switch (m->opcode) {

    case NGX_HTTP_TWIRT_WS_TEXT:
        load_stats.messages_in++;

        if (load_direct) {
            return load_realtime(c, (const char *) m->data, m->len, now);
        }

        return load_twilio(c, (const char *) m->data, m->len, now);

    case NGX_HTTP_TWIRT_WS_BINARY:
        load_stats.messages_in++;
        load_stats.other_in++;
        return 0;

    case NGX_HTTP_TWIRT_WS_PING:
        load_stats.pings++;

        if (bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_PONG, m->data, m->len)
            != 0)
        {
            load_drop(c, "output buffer full");
            return -1;
        }

        return 0;

    case NGX_HTTP_TWIRT_WS_PONG:
        return 0;

    default: /* CLOSE */

        if (c->close_sent) {
            load_done(c);
            return -1;
        }

        if (ngx_http_twirt_ws_close_parse(m->data, m->len, &code, &reason,
                                          &rlen, &err)
            != NGX_HTTP_TWIRT_WS_OK)
        {
            code = err;
            reason = (const unsigned char *) "(bad close frame)";
            rlen = 17;
        }

        load_error(c, "the gateway closed with %u \"%.*s\"", code,
                   (int) rlen, (const char *) reason);

        (void) load_close(c, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL);
        (void) bench_ws_flush(&c->ws);
        load_drop(c, NULL);

        return -1;
    }
}


static int
load_twilio(load_call_t *c, const char *p, size_t len, uint64_t now)
{
    long            n;
    char            sid[40];
    bench_json_t    event, v;
    unsigned char   audio[LOAD_MAX_MESSAGE / 4 * 3];

    if (bench_json_get(p, len, "event", &event) != 0
        || event.type != BENCH_JSON_STRING)
    {
        load_stats.bad_json++;
        load_error(c, "not a Twilio message: \"%.*s\"",
                   (int) (len > 80 ? 80 : len), p);
        return 0;
    }

    if (bench_json_is(&event, "media")) {
        if (bench_json_get(p, len, "media.payload", &v) != 0
            || v.type != BENCH_JSON_STRING)
        {
            load_stats.bad_json++;
            return 0;
        }

        n = bench_base64_decode(audio, v.p, v.len);
        if (n < 0) {
            load_stats.bad_json++;
            load_error(c, "bad base64 in a media payload");
            return 0;
        }

        snprintf(sid, sizeof(sid), "MZ%032llx",
                 (unsigned long long) (load_sid_base + c->idx));

        if (bench_json_get(p, len, "streamSid", &v) != 0
            || !bench_json_is(&v, sid))
        {
            load_stats.stream_mismatch++;
        }

        load_audio(c, audio, (size_t) n, now);

        return 0;
    }

    if (bench_json_is(&event, "mark")) {
        if (bench_json_get(p, len, "mark.name", &v) != 0
            || v.type != BENCH_JSON_STRING)
        {
            load_stats.bad_json++;
            return 0;
        }

        return load_mark(c, v.p, v.len, now);
    }

    if (bench_json_is(&event, "clear")) {
        load_stats.clears++;

        if (load_played) {
            c->play_end = now;

            if (load_marks_due(c, now, 1) != 0) {
                load_drop(c, "output buffer full");
                return -1;
            }
        }

        return 0;
    }

    load_stats.other_in++;

    return 0;
}


static int
load_realtime(load_call_t *c, const char *p, size_t len, uint64_t now)
{
    long            n;
    bench_json_t    type, v;
    unsigned char   audio[LOAD_MAX_MESSAGE / 4 * 3];

    if (bench_json_get(p, len, "type", &type) != 0
        || type.type != BENCH_JSON_STRING)
    {
        load_stats.bad_json++;
        return 0;
    }

    /* the GA name, or the beta's (realtime_echo --interface beta) */

    if (bench_json_is(&type, "response.output_audio.delta")
        || bench_json_is(&type, "response.audio.delta"))
    {
        if (bench_json_get(p, len, "delta", &v) != 0
            || v.type != BENCH_JSON_STRING)
        {
            load_stats.bad_json++;
            return 0;
        }

        n = bench_base64_decode(audio, v.p, v.len);
        if (n < 0) {
            load_stats.bad_json++;
            return 0;
        }

        load_audio(c, audio, (size_t) n, now);

        if (load_sink_on) {
            return load_rule_audio(c, p, len, (size_t) n, now);
        }

        return 0;
    }

    if (bench_json_is(&type, "response.created")) {
        c->responding = 1;
        load_stats.other_in++;

    } else if (bench_json_is(&type, "response.done")) {
        c->responding = 0;
        load_stats.other_in++;

        /* the answer's audio has ended: its last part gets its mark */

        if (load_sink_on) {
            return load_rule_mark(c, now);
        }

    } else if (bench_json_is(&type, "session.created")) {
        load_stats.sessions_created++;

    } else if (bench_json_is(&type, "session.updated")) {
        load_stats.sessions_updated++;

    } else if (bench_json_is(&type, "error")) {
        load_stats.upstream_errors++;
        load_error(c, "error event: %.*s", (int) (len > 200 ? 200 : len),
                   p);

    } else {
        load_stats.other_in++;
    }

    return 0;
}


/*
 * Echoed audio is a byte stream made of our 160-byte frames: the gateway
 * may pass them one by one, join them or split them, so they are
 * reassembled; a frame that does not check out is skipped up to the next
 * frame marker.
 */

static void
load_audio(load_call_t *c, const unsigned char *p, size_t n, uint64_t now)
{
    size_t                k;
    const unsigned char  *q;

    if (load_played) {
        if (c->play_end < now) {
            c->play_end = now;
        }

        c->play_end += (uint64_t) n * 125000;    /* 8 bytes a millisecond */
    }

    while (n) {

        if (c->rx_len == 0 && n >= LOAD_FRAME) {
            if (load_frame_check(c, p, now) == 0) {
                p += LOAD_FRAME;
                n -= LOAD_FRAME;
                continue;
            }

            /* skip to the next marker */

            for (k = 1; k < n; k++) {
                if (p[k] == LOAD_MAGIC0 && (k + 1 == n
                                            || p[k + 1] == LOAD_MAGIC1
                                            || p[k + 1] == LOAD_AGENT1))
                {
                    break;
                }
            }

            load_stats.bytes_skipped += k;
            p += k;
            n -= k;
            continue;
        }

        k = LOAD_FRAME - c->rx_len;
        if (k > n) {
            k = n;
        }

        memcpy(c->rx + c->rx_len, p, k);
        c->rx_len += k;
        p += k;
        n -= k;

        if (c->rx_len < LOAD_FRAME) {
            break;
        }

        if (load_frame_check(c, c->rx, now) == 0) {
            c->rx_len = 0;
            continue;
        }

        q = memchr(c->rx + 1, LOAD_MAGIC0, LOAD_FRAME - 1);
        k = q ? (size_t) (q - c->rx) : LOAD_FRAME;

        load_stats.bytes_skipped += k;
        memmove(c->rx, c->rx + k, LOAD_FRAME - k);
        c->rx_len = LOAD_FRAME - k;
    }
}


static void
load_frame_build(unsigned char *f, unsigned idx, uint32_t seq, uint64_t us)
{
    unsigned       i, sum;

    f[0] = LOAD_MAGIC0;
    f[1] = LOAD_MAGIC1;
    f[2] = (unsigned char) (idx >> 16);
    f[3] = (unsigned char) (idx >> 8);
    f[4] = (unsigned char) idx;
    f[5] = (unsigned char) (seq >> 24);
    f[6] = (unsigned char) (seq >> 16);
    f[7] = (unsigned char) (seq >> 8);
    f[8] = (unsigned char) seq;

    for (i = 0; i < 6; i++) {
        f[9 + i] = (unsigned char) (us >> (40 - 8 * i));
    }

    sum = 0;

    for (i = 0; i < 15; i++) {
        sum += f[i];
    }

    f[15] = (unsigned char) (sum ^ 0x5a);

    /* near-silence, different for every frame: corruption shows */

    for (i = LOAD_ID_LEN; i < LOAD_FRAME; i++) {
        f[i] = (unsigned char) (0xf0 | ((seq + i) & 0x0f));
    }
}


static int
load_frame_check(load_call_t *c, const unsigned char *f, uint64_t now)
{
    unsigned  i, sum, idx;
    uint32_t  seq;
    uint64_t  us, now_us;

    if (f[0] == LOAD_MAGIC0 && f[1] == LOAD_AGENT1) {
        return load_agent_frame(c, f, now);
    }

    if (f[0] != LOAD_MAGIC0 || f[1] != LOAD_MAGIC1) {
        return -1;
    }

    if (load_conversation) {
        /* the caller's own audio sent back: not what a model does */
        load_stats.frames_misrouted++;
        return 0;
    }

    sum = 0;

    for (i = 0; i < 15; i++) {
        sum += f[i];
    }

    if (f[15] != (unsigned char) (sum ^ 0x5a)) {
        return -1;
    }

    idx = ((unsigned) f[2] << 16) | ((unsigned) f[3] << 8) | f[4];
    seq = ((uint32_t) f[5] << 24) | ((uint32_t) f[6] << 16)
          | ((uint32_t) f[7] << 8) | f[8];
    us = 0;

    for (i = 0; i < 6; i++) {
        us = (us << 8) | f[9 + i];
    }

    if (idx != c->idx) {
        load_stats.frames_misrouted++;
        return 0;
    }

    if (seq >= c->sent) {
        load_stats.frames_corrupt++;
        return 0;
    }

    for (i = LOAD_ID_LEN; i < LOAD_FRAME; i++) {
        if (f[i] != (unsigned char) (0xf0 | ((seq + i) & 0x0f))) {
            load_stats.frames_corrupt++;
            break;
        }
    }

    if (c->echo_map[seq / 8] & (1u << (seq % 8))) {
        load_stats.frames_duplicate++;
        return 0;
    }

    c->echo_map[seq / 8] |= (unsigned char) (1u << (seq % 8));

    if (c->state == LOAD_CLOSING) {
        /* after the grace period: lost all the same */
        load_stats.frames_late++;
        return 0;
    }

    c->echoed++;
    load_stats.frames_received++;

    now_us = (now - load_t0) / 1000;

    if (!c->echo_seen) {
        c->echo_seen = 1;
        c->first_echo_us = now_us;
        bench_hist_add(&load_stats.setup_media, (now - c->t_connect) / 1000);
    }

    /*
     * Frames sent before the call's first echo may have waited for the
     * gateway's upstream, and the ones of the ramp (--steady-after) for
     * other calls' setups: they belong to the setup, not to the steady
     * latency.
     */

    bench_hist_add(us < c->first_echo_us || us < load_steady_us
                   ? &load_stats.rtt_setup : &load_stats.rtt,
                   now_us > us ? now_us - us : 0);

    return 0;
}


/* every frame sent, or in conversation no turn in progress */

static int
load_drained(load_call_t *c, uint64_t now)
{
    if (!load_conversation) {
        return c->echoed == c->sent;
    }

    /*
     * The caller's last frame may have started a turn whose first delta
     * is not here yet: a short wait shows it, and then the turn is
     * waited for, up to the grace period.
     */

    return c->agent_left == 0 && now >= c->drain_min;
}


/*
 * An agent's frame (realtime_echo --shape conversation): marker, the
 * call's index, a sequence number of 24 bits, the frames left in its
 * turn, the send time (CLOCK_MONOTONIC, us: the same clock here), a
 * checksum.  The time it took is the simulator -> gateway -> here path.
 */

static int
load_agent_frame(load_call_t *c, const unsigned char *f, uint64_t now)
{
    unsigned  i, sum, idx;
    uint32_t  seq;
    uint64_t  us, now_us;

    for (sum = 0, i = 0; i < 15; i++) {
        sum += f[i];
    }

    if (f[15] != (unsigned char) (sum ^ 0x5a)) {
        return -1;
    }

    idx = ((unsigned) f[2] << 16) | ((unsigned) f[3] << 8) | f[4];
    seq = ((uint32_t) f[5] << 16) | ((uint32_t) f[6] << 8) | f[7];

    for (us = 0, i = 0; i < 6; i++) {
        us = (us << 8) | f[9 + i];
    }

    if (idx != LOAD_NO_CALL && idx != c->idx) {
        load_stats.frames_misrouted++;
        return 0;
    }

    for (i = LOAD_ID_LEN; i < LOAD_FRAME; i++) {
        if (f[i] != (unsigned char) (0xf0 | ((seq + i) & 0x0f))) {
            load_stats.frames_corrupt++;
            break;
        }
    }

    if (seq < c->agent_next) {
        load_stats.agent_duplicate++;
        return 0;
    }

    if (c->state == LOAD_CLOSING) {
        load_stats.frames_late++;
        return 0;
    }

    /* a gap: frames the gateway never delivered */

    load_stats.agent_lost += seq - c->agent_next;

    if (c->agent_left == 0) {
        load_stats.agent_turns++;
    }

    c->agent_next = seq + 1;
    c->agent_left = f[8];
    load_stats.agent_frames++;

    now_us = now / 1000;

    if (!c->echo_seen) {
        c->echo_seen = 1;
        c->first_echo_us = (now - load_t0) / 1000;
        bench_hist_add(&load_stats.setup_media, (now - c->t_connect) / 1000);
    }

    /* before --steady-after: the ramp's, with the setups */

    bench_hist_add(us < load_t0 / 1000 + load_steady_us
                   ? &load_stats.rtt_setup : &load_stats.rtt,
                   now_us > us ? now_us - us : 0);

    return 0;
}


/*
 * --mark-sink: twirt's mark rule (ngx_http_twirt_call_play()) on a delta
 * of bytes of audio, just counted for playback.  Its item's first audio
 * marks the previous item's last; then a mark follows this audio if the
 * buffer was dry (no mark outstanding, nothing unmarked: twirt's clock
 * waits for this audio's echo) or the audio unmarked reached
 * twirt_mark_interval.  -1: the call was dropped.
 */

static int
load_rule_audio(load_call_t *c, const char *p, size_t len, size_t bytes,
    uint64_t now)
{
    int           dry;
    bench_json_t  item;

    if (bench_json_get(p, len, "item_id", &item) != 0
        || item.type != BENCH_JSON_STRING)
    {
        item.p = "";
        item.len = 0;
    }

    if (item.len >= LOAD_ITEM_ID) {
        item.len = LOAD_ITEM_ID - 1;
    }

    if (item.len != c->item_len || memcmp(item.p, c->item, item.len) != 0) {
        if (load_rule_mark(c, now) != 0) {
            return -1;
        }

        memcpy(c->item, item.p, item.len);
        c->item_len = item.len;
    }

    dry = (c->outstanding == 0 && c->unmarked == 0);
    c->unmarked += bytes;

    if (!dry && c->unmarked < LOAD_MARK_BYTES) {
        return 0;
    }

    return load_rule_mark(c, now);
}


/* a mark after the audio unmarked, named as twirt names them */

static int
load_rule_mark(load_call_t *c, uint64_t now)
{
    int   n;
    char  name[16];

    if (c->unmarked == 0) {
        return 0;
    }

    c->unmarked = 0;
    c->outstanding++;
    n = snprintf(name, sizeof(name), "%u", ++c->mark_seq);

    return load_mark(c, name, (size_t) n, now);
}


static int
load_mark(load_call_t *c, const char *name, size_t len, uint64_t now)
{
    load_mark_t  *mk;

    load_stats.marks_received++;

    if (len > LOAD_MARK_NAME) {
        load_error(c, "mark name of %zu bytes ignored", len);
        return 0;
    }

    if (!load_played || c->play_end <= now) {
        if (load_mark_send(c, name, len, now) != 0) {
            load_drop(c, "output buffer full");
            return -1;
        }

        return 0;
    }

    if (c->mark_count == LOAD_MARKS) {
        load_stats.marks_overflow++;

        if (load_mark_send(c, name, len, now) != 0) {
            load_drop(c, "output buffer full");
            return -1;
        }

        return 0;
    }

    mk = &c->marks[(c->mark_head + c->mark_count) % LOAD_MARKS];
    mk->due = c->play_end;
    mk->len = len;
    memcpy(mk->name, name, len);
    c->mark_count++;

    return 0;
}


/*
 * The echo of a mark, as Twilio's; with --mark-sink the echo of our own
 * mark, on the sink's connection, and then what twirt does on hearing
 * it.  -1: no room.
 */

static int
load_mark_send(load_call_t *c, const char *name, size_t len, uint64_t now)
{
    int             n;
    bench_ws_t     *ws;
    unsigned char  *out;

    ws = load_sink_on ? &c->sink : &c->ws;

    out = bench_ws_reserve(ws, 128 + len);
    if (out == NULL) {
        return -1;
    }

    n = snprintf((char *) out, 128 + len,
                 "{\"event\":\"mark\",\"sequenceNumber\":\"%u\","
                 "\"streamSid\":\"MZ%032llx\",\"mark\":{\"name\":\"%.*s\"}}",
                 c->twilio_seq++,
                 (unsigned long long) (load_sid_base + c->idx),
                 (int) len, name);

    load_stats.marks_echoed++;

    if (bench_ws_commit(ws, NGX_HTTP_TWIRT_WS_TEXT, (size_t) n) != 0) {
        return -1;
    }

    if (!load_sink_on) {
        return 0;
    }

    /*
     * twirt heard it (ngx_http_twirt_call_heard()): with no response on,
     * the audio unmarked since gets its mark
     */

    c->outstanding--;

    return c->responding ? 0 : load_rule_mark(c, now);
}


/* echoes the marks whose audio has played by now (all: after a clear) */

static int
load_marks_due(load_call_t *c, uint64_t now, int all)
{
    load_mark_t  *mk;

    while (c->mark_count) {
        mk = &c->marks[c->mark_head];

        if (!all && mk->due > now) {
            break;
        }

        if (load_mark_send(c, mk->name, mk->len, now) != 0) {
            return -1;
        }

        c->mark_head = (c->mark_head + 1) % LOAD_MARKS;
        c->mark_count--;
    }

    return 0;
}


static int
load_media(load_call_t *c, uint64_t now)
{
    int             n;
    size_t          len;
    uint64_t        late;
    unsigned char  *out, frame[LOAD_FRAME];

    out = bench_ws_reserve(&c->ws, 256 + LOAD_B64);
    if (out == NULL) {
        load_stats.send_overflows++;
        return -1;
    }

    late = now > c->next_media ? (now - c->next_media) / 1000 : 0;
    bench_hist_add(&load_stats.lag, late);

    if (late > 1000) {
        load_stats.late_sends++;
    }

    if (load_direct) {
        n = snprintf((char *) out, 256,
                     "{\"type\":\"input_audio_buffer.append\",\"audio\":\"");
        c->twilio_seq++;

    } else {
        n = snprintf((char *) out, 256,
                     "{\"event\":\"media\",\"sequenceNumber\":\"%u\","
                     "\"streamSid\":\"MZ%032llx\",\"media\":{\"track\":"
                     "\"inbound\",\"chunk\":\"%u\",\"timestamp\":\"%u\","
                     "\"payload\":\"",
                     c->twilio_seq++,
                     (unsigned long long) (load_sid_base + c->idx),
                     c->sent + 1, c->sent * 20);
    }

    len = (size_t) n;

    /* the send time is taken last: the frame leaves right after */

    load_frame_build(frame, c->idx, c->sent, (bench_now() - load_t0) / 1000);

    len += bench_base64_encode((char *) out + len, frame, LOAD_FRAME);

    if (load_direct) {
        memcpy(out + len, "\"}", 2);
        len += 2;

    } else {
        memcpy(out + len, "\"}}", 3);
        len += 3;
    }

    c->sent++;
    c->next_media += LOAD_PERIOD;     /* the grid, not now: no drift */
    load_stats.frames_sent++;

    if (bench_ws_commit(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, len) != 0) {
        return -1;
    }

    /* each frame goes out at its time, not with the next one */

    if (bench_ws_flush(&c->ws) == -1) {
        return -1;
    }

    return 0;
}


static int
load_finish(load_call_t *c, uint64_t now)
{
    int   n;
    char  buf[256];

    if (load_played && load_marks_due(c, now, 1) != 0) {
        return -1;
    }

    /* a turn cut short: its frames never came */

    load_stats.agent_lost += c->agent_left;
    c->agent_left = 0;

    if (!load_direct) {
        n = snprintf(buf, sizeof(buf),
                     "{\"event\":\"stop\",\"sequenceNumber\":\"%u\","
                     "\"streamSid\":\"MZ%032llx\",\"stop\":{"
                     "\"accountSid\":\"AC%032d\",\"callSid\":\"CA%032llu\"}}",
                     c->twilio_seq++,
                     (unsigned long long) (load_sid_base + c->idx), 0,
                     (unsigned long long) (load_sid_base + c->idx));

        if (bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_TEXT, buf, (size_t) n)
            != 0)
        {
            return -1;
        }
    }

    if (load_close(c, NGX_HTTP_TWIRT_WS_CLOSE_NORMAL) != 0) {
        return -1;
    }

    c->completed = 1;
    load_stats.completed++;
    c->state = LOAD_CLOSING;
    c->deadline = now + LOAD_CLOSE_TIMEOUT;

    return 0;
}


static int
load_close(load_call_t *c, unsigned code)
{
    size_t         n;
    unsigned char  payload[NGX_HTTP_TWIRT_WS_MAX_CONTROL];

    if (c->close_sent) {
        return 0;
    }

    c->close_sent = 1;
    n = ngx_http_twirt_ws_close_payload(payload, code, "", 0);

    return bench_ws_send(&c->ws, NGX_HTTP_TWIRT_WS_CLOSE, payload, n);
}


static void
load_fail(load_call_t *c, const char *why)
{
    if (why) {
        load_error(c, "%s", why);
    }

    c->failed = 1;
    load_stats.failed++;
    load_done(c);
}


static void
load_drop(load_call_t *c, const char *why)
{
    if (why) {
        load_error(c, "%s", why);
    }

    if (!c->completed && !c->dropped) {
        c->dropped = 1;
        load_stats.dropped++;
    }

    load_done(c);
}


static void
load_done(load_call_t *c)
{
    if (c->state == LOAD_DONE) {
        return;
    }

    if (c->ws.fd != -1) {
        close(c->ws.fd);
        c->ws.fd = -1;
    }

    bench_ws_free(&c->ws);

    if (c->sink.fd != -1) {
        close(c->sink.fd);
        c->sink.fd = -1;
    }

    bench_ws_free(&c->sink);

    if (c->upgraded && !c->echo_seen) {
        load_stats.no_audio++;
    }

    c->state = LOAD_DONE;
    load_heap_remove(c);
    load_stats.active--;
}


static void
load_io(load_call_t *c)
{
    int                 rc, want;
    struct epoll_event  ev;

    if (c->state == LOAD_DONE || c->ws.fd == -1) {
        return;
    }

    rc = bench_ws_flush(&c->ws);

    if (rc == -1) {
        if (c->state == LOAD_CLOSING) {
            load_done(c);

        } else if (c->state < LOAD_STREAMING) {
            load_fail(c, "write error during the upgrade");

        } else {
            load_drop(c, "write error");
        }

        return;
    }

    want = rc == 1 || c->state == LOAD_CONNECTING
           || (c->ws.tls_handshake && c->ws.tls_want_write);

    if (want != c->want_out) {
        c->want_out = want;
        ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
        ev.data.u64 = LOAD_EV(c, 0);
        (void) epoll_ctl(load_ep, EPOLL_CTL_MOD, c->ws.fd, &ev);
    }

    if (c->sink.fd == -1) {
        return;
    }

    rc = c->sink_connecting ? 1 : bench_ws_flush(&c->sink);

    if (rc == -1) {
        load_drop(c, "write error on the mark sink");
        return;
    }

    want = rc == 1;

    if (want != c->sink_want_out) {
        c->sink_want_out = want;
        ev.events = EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0);
        ev.data.u64 = LOAD_EV(c, 1);
        (void) epoll_ctl(load_ep, EPOLL_CTL_MOD, c->sink.fd, &ev);
    }
}


static uint64_t
load_wake(load_call_t *c)
{
    uint64_t  t;

    switch (c->state) {

    case LOAD_IDLE:
        return c->t_start;

    case LOAD_STREAMING:
        t = c->sent < c->frames_total ? c->next_media : c->deadline;
        break;

    default:
        t = c->deadline;
        break;
    }

    if (c->state == LOAD_DRAINING && load_conversation && c->agent_left == 0
        && c->drain_min < t)
    {
        t = c->drain_min;
    }

    if (c->mark_count && c->marks[c->mark_head].due < t) {
        t = c->marks[c->mark_head].due;
    }

    return t;
}


static void
load_reschedule(load_call_t *c)
{
    c->wake = load_wake(c);
    load_heap_fix(c);
}


static void
load_interrupt(uint64_t now)
{
    unsigned      k;
    load_call_t  *c;

    for (k = 0; k < load_ncalls; k++) {
        c = &load_calls[k];

        switch (c->state) {

        case LOAD_IDLE:
            c->state = LOAD_DONE;
            load_heap_remove(c);
            load_stats.active--;
            break;

        case LOAD_CONNECTING:
        case LOAD_UPGRADING:
            load_fail(c, NULL);
            break;

        case LOAD_STREAMING:
            c->frames_total = c->sent;
            c->state = LOAD_DRAINING;
            c->deadline = now + (uint64_t) (load_grace * 1e9);
            c->drain_min = now + LOAD_DRAIN_MIN;

            /* finishes at once if every echo is already in */
            load_timer(c, now);
            break;

        default:
            break;
        }
    }
}


static void
load_progress(uint64_t now)
{
    fprintf(stderr, "twilio_load: %6.1f s: %lu active, %lu up, %lu failed, "
            "%lu dropped; frames %llu sent %llu back; rtt p50 %llu p99 %llu "
            "max %llu us\n",
            (double) (now - load_t0) / 1e9, load_stats.active,
            load_stats.established, load_stats.failed, load_stats.dropped,
            load_stats.frames_sent, load_stats.frames_received,
            (unsigned long long) bench_hist_percentile(&load_stats.rtt, 50),
            (unsigned long long) bench_hist_percentile(&load_stats.rtt, 99),
            (unsigned long long) load_stats.rtt.max);
}


static void
load_report(void)
{
    double              wall, cs;
    bench_cpu_t         cpu;
    unsigned long long  sent, received, lost;

    bench_cpu(&cpu);
    wall = (double) (bench_now() - load_t0) / 1e9;
    cs = (double) load_stats.frames_sent / 50.0;
    load_frames(&sent, &received, &lost);

    fprintf(stderr,
        "twilio_load: %s, %.1f s\n"
        "  calls      requested %lu, established %lu, failed %lu, "
        "dropped %lu, completed %lu, without audio %lu\n"
        "  frames     sent %llu, received %llu, lost %llu, duplicate %llu, "
        "misrouted %llu, corrupt %llu\n"
        "  %s p50 %llu  p90 %llu  p99 %llu  p99.9 %llu  max %llu"
        " (%llu frames sent before the first echo: p50 %llu max %llu)\n"
        "  setup ms   101: p50 %.3f p99 %.3f; first echo: p50 %.3f "
        "p99 %.3f\n"
        "  marks      %s %llu, echoed%s %llu; clears %llu\n"
        "  sending    lag p99 %llu us, max %llu us, %llu frames over 1 ms "
        "late\n"
        "  own cpu    user %.0f ms, sys %.0f ms, %.1f%% of a core, "
        "%.4f ms per call-second, maxrss %ld KiB\n",
        load_direct ? "direct (floor)" : "through the gateway", wall,
        load_stats.requested, load_stats.established, load_stats.failed,
        load_stats.dropped, load_stats.completed, load_stats.no_audio,
        sent, received, lost, load_stats.frames_duplicate
        + load_stats.agent_duplicate, load_stats.frames_misrouted,
        load_stats.frames_corrupt,
        load_conversation ? "agent us  " : "rtt us    ",
        (unsigned long long) bench_hist_percentile(&load_stats.rtt, 50),
        (unsigned long long) bench_hist_percentile(&load_stats.rtt, 90),
        (unsigned long long) bench_hist_percentile(&load_stats.rtt, 99),
        (unsigned long long) bench_hist_percentile(&load_stats.rtt, 99.9),
        (unsigned long long) load_stats.rtt.max,
        (unsigned long long) load_stats.rtt_setup.n,
        (unsigned long long) bench_hist_percentile(&load_stats.rtt_setup, 50),
        (unsigned long long) load_stats.rtt_setup.max,
        bench_hist_percentile(&load_stats.setup_101, 50) / 1000.0,
        bench_hist_percentile(&load_stats.setup_101, 99) / 1000.0,
        bench_hist_percentile(&load_stats.setup_media, 50) / 1000.0,
        bench_hist_percentile(&load_stats.setup_media, 99) / 1000.0,
        load_sink_on ? "made by twirt's rule" : "received",
        load_stats.marks_received, load_sink_on ? " to the sink" : "",
        load_stats.marks_echoed, load_stats.clears,
        (unsigned long long) bench_hist_percentile(&load_stats.lag, 99),
        (unsigned long long) load_stats.lag.max, load_stats.late_sends,
        cpu.user_ms, cpu.sys_ms,
        wall > 0 ? (cpu.user_ms + cpu.sys_ms) / (wall * 10) : 0.0,
        cs > 0 ? (cpu.user_ms + cpu.sys_ms) / cs : 0.0, cpu.maxrss_kib);
}


/* the frames measured: the echoed ones, or in conversation the agent's */

static void
load_frames(unsigned long long *sent, unsigned long long *received,
    unsigned long long *lost)
{
    if (load_conversation) {
        *sent = load_stats.agent_frames + load_stats.agent_lost;
        *received = load_stats.agent_frames;
        *lost = load_stats.agent_lost;

    } else {
        *sent = load_stats.frames_sent;
        *received = load_stats.frames_received;
        *lost = load_stats.frames_sent - load_stats.frames_received;
    }
}


static void
load_json(const char *path, double wall, bench_cpu_t *cpu)
{
    FILE                *f;
    double               cs;
    unsigned long long   sent, received, lost;

    f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "twilio_load: cannot write \"%s\": %s\n", path,
                strerror(errno));
        return;
    }

    cs = (double) load_stats.frames_sent / 50.0;

    fprintf(f, "{\"tool\":\"twilio_load\",\"mode\":\"%s\",\"url\":\"%s\","
            "\"marks_mode\":\"%s\",\"mark_sink\":%s,\"duration_s\":%.3f,"
            "\"ramp_s\":%.3f,\"grace_s\":%.3f,\"wall_s\":%.3f,"
            "\"interrupted\":%s,",
            load_direct ? "direct" : "twilio", load_url_s,
            load_played ? "played" : "immediate",
            load_sink_on ? "true" : "false", load_duration, load_ramp,
            load_grace, wall, load_interrupted ? "true" : "false");

    fprintf(f, "\"calls\":{\"requested\":%lu,\"started\":%lu,"
            "\"established\":%lu,\"failed\":%lu,\"dropped\":%lu,"
            "\"completed\":%lu,\"without_audio\":%lu,"
            "\"close_timeouts\":%lu},",
            load_stats.requested, load_stats.started, load_stats.established,
            load_stats.failed, load_stats.dropped, load_stats.completed,
            load_stats.no_audio, load_stats.close_timeouts);

    /* in conversation "frames" are the agent's: what is measured */

    load_frames(&sent, &received, &lost);

    fprintf(f, "\"shape\":\"%s\",\"caller_frames_sent\":%llu,"
            "\"agent\":{\"frames\":%llu,\"lost\":%llu,\"duplicate\":%llu,"
            "\"turns\":%llu},",
            load_conversation ? "conversation" : "echo",
            load_stats.frames_sent, load_stats.agent_frames,
            load_stats.agent_lost, load_stats.agent_duplicate,
            load_stats.agent_turns);

    fprintf(f, "\"frames\":{\"sent\":%llu,\"received\":%llu,\"lost\":%llu,"
            "\"duplicate\":%llu,\"misrouted\":%llu,\"corrupt\":%llu,"
            "\"late\":%llu,\"bytes_skipped\":%llu,\"late_sends\":%llu},",
            sent, received, lost,
            load_stats.frames_duplicate + load_stats.agent_duplicate,
            load_stats.frames_misrouted,
            load_stats.frames_corrupt, load_stats.frames_late,
            load_stats.bytes_skipped, load_stats.late_sends);

    fprintf(f, "\"messages\":{\"in\":%llu,\"other\":%llu,\"bad\":%llu,"
            "\"stream_mismatch\":%llu,\"marks_received\":%llu,"
            "\"marks_echoed\":%llu,\"marks_overflow\":%llu,\"clears\":%llu,"
            "\"pings\":%llu,\"sessions_created\":%llu,"
            "\"sessions_updated\":%llu,\"upstream_errors\":%llu,"
            "\"send_overflows\":%llu},",
            load_stats.messages_in, load_stats.other_in, load_stats.bad_json,
            load_stats.stream_mismatch, load_stats.marks_received,
            load_stats.marks_echoed, load_stats.marks_overflow,
            load_stats.clears, load_stats.pings, load_stats.sessions_created,
            load_stats.sessions_updated, load_stats.upstream_errors,
            load_stats.send_overflows);

    fprintf(f, "\"rtt_us\":");
    bench_hist_json(f, &load_stats.rtt);
    fprintf(f, ",\"rtt_setup_us\":");
    bench_hist_json(f, &load_stats.rtt_setup);
    fprintf(f, ",\"send_lag_us\":");
    bench_hist_json(f, &load_stats.lag);
    fprintf(f, ",\"setup_101_us\":");
    bench_hist_json(f, &load_stats.setup_101);
    fprintf(f, ",\"setup_media_us\":");
    bench_hist_json(f, &load_stats.setup_media);

    fprintf(f, ",\"call_seconds\":%.2f,\"cpu\":{\"user_ms\":%.1f,"
            "\"sys_ms\":%.1f,\"total_ms\":%.1f,\"core_share\":%.4f,"
            "\"ms_per_call_second\":%.5f,\"maxrss_kib\":%ld}}\n",
            cs, cpu->user_ms, cpu->sys_ms, cpu->user_ms + cpu->sys_ms,
            wall > 0 ? (cpu->user_ms + cpu->sys_ms) / (wall * 1000) : 0.0,
            cs > 0 ? (cpu->user_ms + cpu->sys_ms) / cs : 0.0,
            cpu->maxrss_kib);

    fclose(f);
}


static void
load_error(load_call_t *c, const char *fmt, ...)
{
    char     buf[512];
    va_list  args;

    if (load_errors_shown >= LOAD_ERRORS_SHOWN) {
        if (load_errors_shown++ == LOAD_ERRORS_SHOWN) {
            fprintf(stderr, "twilio_load: more errors not shown\n");
        }

        return;
    }

    load_errors_shown++;

    va_start(args, fmt);
    vsnprintf(buf, sizeof(buf), fmt, args);
    va_end(args);

    fprintf(stderr, "twilio_load: call %u: %s\n", c->idx, buf);
}


static void
load_signal(int signo)
{
    (void) signo;

    load_signals++;
}


/* a binary min-heap of calls by wake time */

/*
 * A call's phase on the 20 ms grid: uniform and independent of the other
 * calls', as real callers' are.  Evenly spread phases would hand the
 * gateway a perfectly smooth load, which no production server sees: with
 * random ones some calls' frames collide and queue behind each other.
 */

static uint64_t
load_phase(void)
{
    uint64_t  r;

    bench_random(&r, sizeof(uint64_t));

    return r % LOAD_PERIOD;
}


static void
load_heap_push(load_call_t *c)
{
    c->heap = load_heap_n;
    load_heap[load_heap_n++] = c;
    load_heap_up(c->heap);
}


static void
load_heap_remove(load_call_t *c)
{
    size_t        i;
    load_call_t  *last;

    i = c->heap;

    if (i >= load_heap_n || load_heap[i] != c) {
        return;
    }

    last = load_heap[--load_heap_n];
    c->heap = (size_t) -1;

    if (i == load_heap_n) {
        return;
    }

    load_heap[i] = last;
    last->heap = i;
    load_heap_up(i);
    load_heap_down(last->heap);
}


static void
load_heap_fix(load_call_t *c)
{
    if (c->heap >= load_heap_n || load_heap[c->heap] != c) {
        return;
    }

    load_heap_up(c->heap);
    load_heap_down(c->heap);
}


static void
load_heap_up(size_t i)
{
    size_t        parent;
    load_call_t  *c;

    c = load_heap[i];

    while (i > 0) {
        parent = (i - 1) / 2;

        if (load_heap[parent]->wake <= c->wake) {
            break;
        }

        load_heap[i] = load_heap[parent];
        load_heap[i]->heap = i;
        i = parent;
    }

    load_heap[i] = c;
    c->heap = i;
}


static void
load_heap_down(size_t i)
{
    size_t        child;
    load_call_t  *c;

    c = load_heap[i];

    for ( ;; ) {
        child = 2 * i + 1;

        if (child >= load_heap_n) {
            break;
        }

        if (child + 1 < load_heap_n
            && load_heap[child + 1]->wake < load_heap[child]->wake)
        {
            child++;
        }

        if (load_heap[child]->wake >= c->wake) {
            break;
        }

        load_heap[i] = load_heap[child];
        load_heap[i]->heap = i;
        i = child;
    }

    load_heap[i] = c;
    c->heap = i;
}
