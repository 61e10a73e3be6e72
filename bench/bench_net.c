
/*
 * Loopback-only addresses, sockets, file descriptor limits.
 */


#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>

#include "bench_net.h"


static int bench_addr_parse(const char *s, size_t len, unsigned port_default,
    int port_required, bench_url_t *url, char *err, size_t n);


int
bench_url_parse(const char *s, bench_url_t *url, char *err, size_t n)
{
    size_t       len;
    const char  *path;

    memset(url, 0, sizeof(bench_url_t));

    if (strncmp(s, "ws://", 5) == 0) {
        s += 5;

    } else if (strncmp(s, "wss://", 6) == 0) {
        s += 6;
        url->tls = 1;

    } else {
        snprintf(err, n, "\"%s\": only ws:// and wss:// URLs are supported",
                 s);
        return -1;
    }

    path = strchr(s, '/');
    len = path ? (size_t) (path - s) : strlen(s);

    if (bench_addr_parse(s, len, url->tls ? 443 : 80, 0, url, err, n) != 0) {
        return -1;
    }

    if (path == NULL) {
        path = "/";
    }

    if (strlen(path) >= BENCH_PATH_LEN
        || strpbrk(path, " \t\r\n\"\\") != NULL)
    {
        snprintf(err, n, "\"%s\": bad path", path);
        return -1;
    }

    strcpy(url->path, path);

    return 0;
}


int
bench_listen_parse(const char *s, bench_url_t *url, char *err, size_t n)
{
    memset(url, 0, sizeof(bench_url_t));

    return bench_addr_parse(s, strlen(s), 0, 1, url, err, n);
}


int
bench_socket(const struct sockaddr_storage *sa)
{
    int  fd, one;

    fd = socket(sa->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(int));

    return fd;
}


int
bench_listen(const bench_url_t *addr, struct sockaddr_storage *bound)
{
    int        fd, one, err;
    socklen_t  len;

    fd = bench_socket(&addr->sa);
    if (fd == -1) {
        return -1;
    }

    one = 1;
    len = sizeof(struct sockaddr_storage);

    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(int)) != 0
        || bind(fd, (struct sockaddr *) &addr->sa, addr->socklen) != 0
        || listen(fd, 4096) != 0
        || getsockname(fd, (struct sockaddr *) bound, &len) != 0)
    {
        err = errno;
        close(fd);
        errno = err;
        return -1;
    }

    return fd;
}


void
bench_signals(void (*handler)(int), sigset_t *orig)
{
    sigset_t          block;
    struct sigaction  sa;

    memset(&sa, 0, sizeof(struct sigaction));
    sa.sa_handler = handler;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigprocmask(SIG_BLOCK, &block, orig);
}


int
bench_ready_file(const char *path, const struct sockaddr_storage *bound)
{
    FILE  *f;

    f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }

    fprintf(f, "%u\n", bound->ss_family == AF_INET
            ? ntohs(((const struct sockaddr_in *) bound)->sin_port)
            : ntohs(((const struct sockaddr_in6 *) bound)->sin6_port));

    return fclose(f) == 0 ? 0 : -1;
}


unsigned long
bench_nofile(unsigned long want)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        return 0;
    }

    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur = (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
                      ? rl.rlim_max : want;

        (void) setrlimit(RLIMIT_NOFILE, &rl);

        if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
            return 0;
        }
    }

    return rl.rlim_cur == RLIM_INFINITY ? want : (unsigned long) rl.rlim_cur;
}


int
bench_number(const char *s, double min, double max, double *out)
{
    char    *end;
    double   v;

    if (s == NULL || *s == '\0') {
        return -1;
    }

    errno = 0;
    v = strtod(s, &end);

    if (errno != 0 || *end != '\0' || v != v || v < min || v > max) {
        return -1;
    }

    *out = v;

    return 0;
}


static int
bench_addr_parse(const char *s, size_t len, unsigned port_default,
    int port_required, bench_url_t *url, char *err, size_t n)
{
    char                 host[BENCH_HOST_LEN], *end;
    size_t               hlen;
    unsigned long        port;
    const char          *h, *colon;
    struct sockaddr_in  *sin;
    struct sockaddr_in6 *sin6;

    if (len == 0 || len >= BENCH_HOST_LEN) {
        snprintf(err, n, "bad address \"%.*s\"", (int) len, s);
        return -1;
    }

    if (s[0] == '[') {
        colon = memchr(s, ']', len);
        if (colon == NULL) {
            snprintf(err, n, "bad address \"%.*s\"", (int) len, s);
            return -1;
        }

        h = s + 1;
        hlen = (size_t) (colon - h);
        colon++;

        if (colon < s + len && *colon != ':') {
            snprintf(err, n, "bad address \"%.*s\"", (int) len, s);
            return -1;
        }

        if (colon == s + len) {
            colon = NULL;
        }

    } else {
        h = s;
        colon = memchr(s, ':', len);
        hlen = colon ? (size_t) (colon - s) : len;
    }

    if (colon == NULL) {
        if (port_required) {
            snprintf(err, n, "\"%.*s\": a port is required", (int) len, s);
            return -1;
        }

        port = port_default;

    } else {
        memcpy(host, colon + 1, (size_t) (s + len - colon - 1));
        host[s + len - colon - 1] = '\0';

        errno = 0;
        port = strtoul(host, &end, 10);

        if (host[0] < '0' || host[0] > '9' || *end != '\0' || errno != 0
            || port > 65535 || (port == 0 && !port_required))
        {
            snprintf(err, n, "bad port in \"%.*s\"", (int) len, s);
            return -1;
        }
    }

    memcpy(host, h, hlen);
    host[hlen] = '\0';

    if (strcmp(host, "localhost") == 0) {
        strcpy(host, "127.0.0.1");
    }

    /* what a certificate is verified against: the address itself */
    strcpy(url->name, host);

    sin = (struct sockaddr_in *) &url->sa;
    sin6 = (struct sockaddr_in6 *) &url->sa;

    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
            snprintf(err, n, "\"%s\" is not a loopback address "
                     "(127.0.0.0/8 or ::1 only)", host);
            return -1;
        }

        sin->sin_family = AF_INET;
        sin->sin_port = htons((unsigned short) port);
        url->socklen = sizeof(struct sockaddr_in);

        if (colon) {
            snprintf(url->host, BENCH_HOST_LEN, "%s:%lu", host, port);

        } else {
            snprintf(url->host, BENCH_HOST_LEN, "%s", host);
        }

        return 0;
    }

    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
            snprintf(err, n, "\"%s\" is not a loopback address "
                     "(127.0.0.0/8 or ::1 only)", host);
            return -1;
        }

        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((unsigned short) port);
        url->socklen = sizeof(struct sockaddr_in6);

        if (colon) {
            snprintf(url->host, BENCH_HOST_LEN, "[::1]:%lu", port);

        } else {
            snprintf(url->host, BENCH_HOST_LEN, "[::1]");
        }

        return 0;
    }

    snprintf(err, n, "\"%s\" is not a loopback address literal "
             "(names are not resolved; 127.0.0.0/8, ::1 or localhost)", host);

    return -1;
}
