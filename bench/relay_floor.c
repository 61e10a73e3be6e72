
/*
 * relay_floor: the kernel floor of a bridge.  A minimal epoll relay: it
 * accepts a connection, connects to the upstream, and copies bytes both
 * ways with no WebSocket framing, no JSON, no base64, no buffering beyond
 * what a slow side needs.  What it costs per message is what any bridge
 * on this kernel pays at least: the wakeup, the reads, the write.
 *
 * It makes per message the socket calls nginx makes for twirt's: the
 * sockets are edge-triggered for reading and writing, as nginx's are; a
 * read shorter than the buffer means the socket is empty (the next bytes
 * bring a new edge), so no read waits for EAGAIN then; each read is
 * written at once.  Run between twilio_load --direct and realtime_echo,
 * the bytes are a whole WebSocket session (the upgrade too) that it
 * never looks into.
 *
 * With --sink-listen it also takes the marks' echoes: twirt's audio to
 * Twilio carries marks and Twilio echoes each one, a third message a
 * frame that nginx reads and consumes without forwarding (any bridge
 * that truncates exactly must receive them).  twilio_load --mark-sink
 * keeps twirt's mark rule on the deltas it gets and sends each echo,
 * a masked Twilio mark event, on a second connection per call to this
 * sink, which reads it as the relay reads (edge-triggered, a read
 * shorter than the buffer means empty) and discards it: one wakeup, the
 * read, no forward, as nginx does.  A write-ready edge writes only
 * what waited for that side (nginx's write handler finds its queue
 * empty then).  perf stat of the syscall tracepoints, 5 s of 100 echo
 * calls: the nginx worker 75,051 recvfrom and 50,034 sendto, this relay
 * 75,037 and 50,025.
 *
 *   relay_floor --listen 127.0.0.1:0 --upstream 127.0.0.1:PORT \
 *       --ready-file FILE [--sink-listen 127.0.0.1:0 --sink-ready-file FILE]
 *       [--json FILE]
 *
 * SIGTERM or SIGINT stops it; it reports its counters and CPU time.
 * Only loopback addresses.
 */


#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "bench_net.h"
#include "bench_stats.h"


#define RELAY_BUF      (64 * 1024)
#define RELAY_EVENTS   256


typedef struct relay_side_s  relay_side_t;

struct relay_side_s {
    int             fd;
    relay_side_t   *peer;
    unsigned char  *buf;            /* read here, not yet written to peer */
    size_t          start;
    size_t          end;
    unsigned        connecting:1;
    unsigned        is_client:1;
    unsigned        sink:1;         /* a mark sink's: read, discarded */
};


typedef struct relay_pair_s  relay_pair_t;

struct relay_pair_s {
    relay_side_t    client;
    relay_side_t    upstream;
    relay_pair_t   *next_closed;
    unsigned        closed:1;
};


static void relay_accept(void);
static void relay_sink_accept(void);
static void relay_sink_read(relay_side_t *s, uint32_t events);
static void relay_event(relay_side_t *s, uint32_t events);
static int relay_pump(relay_side_t *from);
static void relay_close(relay_pair_t *p);
static relay_pair_t *relay_pair(relay_side_t *s);
static void relay_report(void);
static void relay_signal(int signo);


static int                   relay_ep;
static int                   relay_lfd;
static int                   relay_sink_lfd = -1;
static unsigned char         relay_sink_buf[RELAY_BUF];
static bench_url_t           relay_up;
static const char           *relay_json;
static volatile sig_atomic_t relay_stop;
static uint64_t              relay_started;
static relay_pair_t         *relay_closed;   /* freed after each batch */

static unsigned long         relay_accepted;
static unsigned long         relay_active;
static unsigned long         relay_failed;
static unsigned long long    relay_reads;
static unsigned long long    relay_writes;
static unsigned long long    relay_bytes;
static unsigned long         relay_sink_accepted;
static unsigned long long    relay_sink_reads;
static unsigned long long    relay_sink_bytes;


int
main(int argc, char **argv)
{
    int                  i, n;
    char                 err[256];
    sigset_t             orig;
    bench_url_t          listen_addr, sink_addr;
    struct epoll_event   ev, events[RELAY_EVENTS];
    const char          *listen_s, *up_s, *ready, *sink_s, *sink_ready;
    struct sockaddr_storage  bound, sink_bound;

    listen_s = "127.0.0.1:0";
    up_s = NULL;
    ready = NULL;
    sink_s = NULL;
    sink_ready = NULL;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--listen") == 0 && i + 1 < argc) {
            listen_s = argv[++i];

        } else if (strcmp(argv[i], "--upstream") == 0 && i + 1 < argc) {
            up_s = argv[++i];

        } else if (strcmp(argv[i], "--ready-file") == 0 && i + 1 < argc) {
            ready = argv[++i];

        } else if (strcmp(argv[i], "--sink-listen") == 0 && i + 1 < argc) {
            sink_s = argv[++i];

        } else if (strcmp(argv[i], "--sink-ready-file") == 0
                   && i + 1 < argc)
        {
            sink_ready = argv[++i];

        } else if (strcmp(argv[i], "--json") == 0 && i + 1 < argc) {
            relay_json = argv[++i];

        } else {
            fprintf(stderr, "usage: relay_floor [--listen HOST:PORT] "
                    "--upstream HOST:PORT [--ready-file FILE]\n"
                    "       [--sink-listen HOST:PORT "
                    "[--sink-ready-file FILE]] [--json FILE]\n"
                    "  --sink-listen: the mark sink, where twilio_load "
                    "--mark-sink sends the\n"
                    "  marks' echoes, read and discarded (port 0: any, "
                    "written to\n"
                    "  --sink-ready-file)\n");
            return 2;
        }
    }

    if (up_s == NULL
        || bench_listen_parse(up_s, &relay_up, err, sizeof(err)) != 0
        || bench_listen_parse(listen_s, &listen_addr, err, sizeof(err)) != 0
        || (sink_s
            && bench_listen_parse(sink_s, &sink_addr, err, sizeof(err)) != 0))
    {
        fprintf(stderr, "relay_floor: %s\n",
                up_s ? err : "--upstream is required");
        return 2;
    }

    if (sink_ready && sink_s == NULL) {
        fprintf(stderr, "relay_floor: --sink-ready-file without "
                "--sink-listen\n");
        return 2;
    }

    (void) bench_nofile(65536);

    relay_lfd = bench_listen(&listen_addr, &bound);

    if (relay_lfd == -1) {
        fprintf(stderr, "relay_floor: cannot listen on %s: %s\n", listen_s,
                strerror(errno));
        return 2;
    }

    if (sink_s) {
        relay_sink_lfd = bench_listen(&sink_addr, &sink_bound);

        if (relay_sink_lfd == -1) {
            fprintf(stderr, "relay_floor: cannot listen on %s: %s\n",
                    sink_s, strerror(errno));
            return 2;
        }
    }

    /* the listening sockets' events: NULL, and the sink's own address */

    relay_ep = epoll_create1(EPOLL_CLOEXEC);
    ev.events = EPOLLIN;
    ev.data.ptr = NULL;

    if (relay_ep == -1
        || epoll_ctl(relay_ep, EPOLL_CTL_ADD, relay_lfd, &ev) != 0)
    {
        fprintf(stderr, "relay_floor: epoll failed: %s\n", strerror(errno));
        return 2;
    }

    ev.data.ptr = &relay_sink_lfd;

    if (sink_s
        && epoll_ctl(relay_ep, EPOLL_CTL_ADD, relay_sink_lfd, &ev) != 0)
    {
        fprintf(stderr, "relay_floor: epoll failed: %s\n", strerror(errno));
        return 2;
    }

    bench_signals(relay_signal, &orig);

    /* the sink's first: the relay's ready file says both are */

    if (sink_ready && bench_ready_file(sink_ready, &sink_bound) != 0) {
        fprintf(stderr, "relay_floor: cannot write \"%s\"\n", sink_ready);
        return 2;
    }

    if (ready && bench_ready_file(ready, &bound) != 0) {
        fprintf(stderr, "relay_floor: cannot write \"%s\"\n", ready);
        return 2;
    }

    relay_started = bench_now();

    while (!relay_stop) {
        n = epoll_pwait(relay_ep, events, RELAY_EVENTS, -1, &orig);

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            fprintf(stderr, "relay_floor: epoll_pwait() failed: %s\n",
                    strerror(errno));
            break;
        }

        for (i = 0; i < n; i++) {
            if (events[i].data.ptr == NULL) {
                relay_accept();

            } else if (events[i].data.ptr == &relay_sink_lfd) {
                relay_sink_accept();

            } else {
                relay_event(events[i].data.ptr, events[i].events);
            }
        }

        /* a pair closed may still have had the other side's event here */

        while (relay_closed) {
            relay_pair_t  *p = relay_closed;

            relay_closed = p->next_closed;
            free(p->client.buf);
            free(p->upstream.buf);
            free(p);
        }
    }

    relay_report();

    return 0;
}


static void
relay_accept(void)
{
    int                  fd, ufd;
    relay_pair_t        *p;
    struct epoll_event   ev;

    for ( ;; ) {
        fd = accept4(relay_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            return;
        }

        relay_accepted++;

        ufd = bench_socket(&relay_up.sa);
        p = calloc(1, sizeof(relay_pair_t));

        if (ufd == -1 || p == NULL
            || (p->client.buf = malloc(RELAY_BUF)) == NULL
            || (p->upstream.buf = malloc(RELAY_BUF)) == NULL)
        {
            goto failed;
        }

        p->client.fd = fd;
        p->client.peer = &p->upstream;
        p->client.is_client = 1;
        p->upstream.fd = ufd;
        p->upstream.peer = &p->client;
        p->upstream.connecting = 1;

        if (connect(ufd, (struct sockaddr *) &relay_up.sa, relay_up.socklen)
            == 0)
        {
            p->upstream.connecting = 0;

        } else if (errno != EINPROGRESS) {
            goto failed;
        }

        /* edge-triggered, as nginx's sockets are */

        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = &p->client;

        if (epoll_ctl(relay_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            goto failed;
        }

        ev.data.ptr = &p->upstream;

        if (epoll_ctl(relay_ep, EPOLL_CTL_ADD, ufd, &ev) != 0) {
            (void) epoll_ctl(relay_ep, EPOLL_CTL_DEL, fd, NULL);
            goto failed;
        }

        relay_active++;
        continue;

    failed:

        relay_failed++;
        close(fd);

        if (ufd != -1) {
            close(ufd);
        }

        if (p) {
            free(p->client.buf);
            free(p->upstream.buf);
            free(p);
        }
    }
}


static void
relay_sink_accept(void)
{
    int                  fd;
    relay_side_t        *s;
    struct epoll_event   ev;

    for ( ;; ) {
        fd = accept4(relay_sink_lfd, NULL, NULL,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            return;
        }

        relay_sink_accepted++;

        s = calloc(1, sizeof(relay_side_t));

        if (s == NULL) {
            relay_failed++;
            close(fd);
            continue;
        }

        s->fd = fd;
        s->sink = 1;

        ev.events = EPOLLIN | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = s;

        if (epoll_ctl(relay_ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
            relay_failed++;
            close(fd);
            free(s);
        }
    }
}


/*
 * A mark sink's connection: what nginx does with a mark's echo, the read
 * and nothing more.  Read as the relay reads (a read shorter than the
 * buffer means empty, unless the peer closed), into one buffer for all:
 * the bytes are discarded.  The only event of its socket in a batch:
 * freed at once when closed.
 */

static void
relay_sink_read(relay_side_t *s, uint32_t events)
{
    ssize_t  n;

    for ( ;; ) {
        n = recv(s->fd, relay_sink_buf, RELAY_BUF, 0);
        relay_sink_reads++;

        if (n > 0) {
            relay_sink_bytes += (unsigned long long) n;

            if ((size_t) n < RELAY_BUF
                && !(events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
            {
                return;
            }

            continue;
        }

        if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }

        close(s->fd);
        free(s);

        return;
    }
}


static relay_pair_t *
relay_pair(relay_side_t *s)
{
    if (s->is_client) {
        return (relay_pair_t *) s;
    }

    return (relay_pair_t *) ((char *) s - offsetof(relay_pair_t, upstream));
}


static void
relay_event(relay_side_t *s, uint32_t events)
{
    int        err;
    socklen_t  len;

    if (s->sink) {
        relay_sink_read(s, events);
        return;
    }

    if (relay_pair(s)->closed) {
        return;
    }

    if (s->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        err = 0;
        len = sizeof(int);

        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0
            || err != 0)
        {
            relay_failed++;
            relay_close(relay_pair(s));
            return;
        }

        s->connecting = 0;

        /* what the client sent while the upstream was connecting */

        if (relay_pump(s->peer) != 0) {
            relay_close(relay_pair(s));
        }

        return;
    }

    /* readable: copy to the peer */

    if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        && relay_pump(s) != 0)
    {
        relay_close(relay_pair(s));
        return;
    }

    /*
     * writable: what waited for this side, if anything did (then the
     * peer's unread bytes too: its edge was spent).  A write-ready edge
     * with nothing waiting costs no socket call, as in nginx, where the
     * write handler finds its queue empty.
     */

    if ((events & EPOLLOUT)
        && s->peer->start < s->peer->end
        && relay_pump(s->peer) != 0)
    {
        relay_close(relay_pair(s));
    }
}


/*
 * Writes what from holds to its peer, then reads from until it is empty,
 * writing each read at once.  -1: the session is over.
 */

static int
relay_pump(relay_side_t *from)
{
    int            drained;
    ssize_t        n;
    relay_side_t  *to;

    to = from->peer;

    if (to->connecting) {
        return 0;
    }

    drained = 0;

    for ( ;; ) {
        while (from->start < from->end) {
            n = send(to->fd, from->buf + from->start, from->end - from->start,
                     MSG_NOSIGNAL);
            relay_writes++;

            if (n > 0) {
                from->start += (size_t) n;
                continue;
            }

            if (n == -1 && (errno == EAGAIN || errno == EINTR)) {
                return 0;       /* EPOLLOUT on "to" resumes */
            }

            return -1;
        }

        from->start = 0;
        from->end = 0;

        if (drained) {
            return 0;
        }

        n = recv(from->fd, from->buf, RELAY_BUF, 0);
        relay_reads++;

        if (n > 0) {
            from->end = (size_t) n;
            relay_bytes += (unsigned long long) n;

            /* shorter than asked: the socket is empty, the next bytes
             * bring a new edge */
            drained = (size_t) n < RELAY_BUF;
            continue;
        }

        if (n == 0) {
            return -1;
        }

        if (errno == EAGAIN || errno == EINTR) {
            return 0;
        }

        return -1;
    }
}


static void
relay_close(relay_pair_t *p)
{
    close(p->client.fd);
    close(p->upstream.fd);
    p->closed = 1;
    p->next_closed = relay_closed;
    relay_closed = p;
    relay_active--;
}


static void
relay_report(void)
{
    FILE         *f;
    double        wall;
    bench_cpu_t   cpu;

    bench_cpu(&cpu);
    wall = (double) (bench_now() - relay_started) / 1e9;

    fprintf(stderr, "relay_floor: %.1f s, %lu connections (%lu failed), "
            "%llu reads, %llu writes, %llu bytes; mark sink: %lu "
            "connections, %llu reads, %llu bytes; cpu user %.0f ms "
            "sys %.0f ms\n", wall, relay_accepted, relay_failed, relay_reads,
            relay_writes, relay_bytes, relay_sink_accepted, relay_sink_reads,
            relay_sink_bytes, cpu.user_ms, cpu.sys_ms);

    if (relay_json == NULL || (f = fopen(relay_json, "w")) == NULL) {
        return;
    }

    fprintf(f, "{\"tool\":\"relay_floor\",\"wall_s\":%.3f,\"accepted\":%lu,"
            "\"failed\":%lu,\"reads\":%llu,\"writes\":%llu,\"bytes\":%llu,"
            "\"sink\":{\"accepted\":%lu,\"reads\":%llu,\"bytes\":%llu},"
            "\"cpu_user_ms\":%.1f,\"cpu_sys_ms\":%.1f,\"cpu_ms\":%.1f,"
            "\"maxrss_kib\":%ld}\n", wall, relay_accepted, relay_failed,
            relay_reads, relay_writes, relay_bytes, relay_sink_accepted,
            relay_sink_reads, relay_sink_bytes, cpu.user_ms, cpu.sys_ms,
            cpu.user_ms + cpu.sys_ms, cpu.maxrss_kib);
    fclose(f);
}


static void
relay_signal(int signo)
{
    (void) signo;

    relay_stop = 1;
}
