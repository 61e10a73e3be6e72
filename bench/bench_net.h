
/*
 * Addresses and sockets for the benchmark tools.  Only loopback addresses
 * are accepted (127.0.0.0/8 and ::1), and names are never resolved:
 * "localhost" is taken as 127.0.0.1.
 */


#ifndef _BENCH_NET_H_INCLUDED_
#define _BENCH_NET_H_INCLUDED_


#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>


#define BENCH_HOST_LEN  64
#define BENCH_PATH_LEN  512


typedef struct {
    struct sockaddr_storage  sa;
    socklen_t                socklen;
    char                     host[BENCH_HOST_LEN];   /* for Host: */
    char                     path[BENCH_PATH_LEN];
    char                     name[BENCH_HOST_LEN];   /* verified: no port */
    int                      tls;                    /* wss:// */
} bench_url_t;


/*
 * "ws://HOST[:PORT][/PATH]" or "wss://..." into url; 0, or -1 with a
 * message in err.
 */
int bench_url_parse(const char *s, bench_url_t *url, char *err, size_t n);

/* "HOST:PORT" (or "[::1]:PORT") for listening; port 0 is allowed */
int bench_listen_parse(const char *s, bench_url_t *url, char *err,
    size_t n);

/* a non-blocking TCP socket with TCP_NODELAY, of the address's family */
int bench_socket(const struct sockaddr_storage *sa);

/*
 * A listening socket on addr (non-blocking, SO_REUSEADDR, a backlog of
 * 4096), the address it got in bound; -1 with errno set.
 */
int bench_listen(const bench_url_t *addr, struct sockaddr_storage *bound);

/*
 * SIGTERM and SIGINT call handler only inside epoll_pwait() with *orig,
 * the mask before (they are blocked elsewhere: no lost wakeup); SIGPIPE
 * is ignored.
 */
void bench_signals(void (*handler)(int), sigset_t *orig);

/* the port of bound and a newline into path; -1 with errno set */
int bench_ready_file(const char *path, const struct sockaddr_storage *bound);

/*
 * Raises the soft RLIMIT_NOFILE towards want (up to the hard limit) and
 * returns the limit now in force.
 */
unsigned long bench_nofile(unsigned long want);

/* parses a decimal number within [min, max] */
int bench_number(const char *s, double min, double max, double *out);


#endif /* _BENCH_NET_H_INCLUDED_ */
