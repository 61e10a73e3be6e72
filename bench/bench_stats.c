
/*
 * Clocks, latency histograms, CPU time.
 */


#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>

#include "bench_stats.h"


static size_t bench_hist_index(uint64_t v);
static uint64_t bench_hist_value(size_t i);


uint64_t
bench_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000000000 + (uint64_t) ts.tv_nsec;
}


int
bench_hist_init(bench_hist_t *h)
{
    memset(h, 0, sizeof(bench_hist_t));

    h->counts = calloc(BENCH_HIST_SIZE, sizeof(uint64_t));
    if (h->counts == NULL) {
        return -1;
    }

    h->min = UINT64_MAX;

    return 0;
}


void
bench_hist_free(bench_hist_t *h)
{
    free(h->counts);
    h->counts = NULL;
}


void
bench_hist_add(bench_hist_t *h, uint64_t v)
{
    h->counts[bench_hist_index(v)]++;
    h->n++;
    h->sum += v;

    if (v < h->min) {
        h->min = v;
    }

    if (v > h->max) {
        h->max = v;
    }
}


uint64_t
bench_hist_percentile(bench_hist_t *h, double p)
{
    size_t    i;
    uint64_t  rank, seen, v;

    if (h->n == 0) {
        return 0;
    }

    rank = (uint64_t) (p / 100.0 * (double) h->n + 0.999999);

    if (rank < 1) {
        rank = 1;
    }

    if (rank > h->n) {
        rank = h->n;
    }

    seen = 0;

    for (i = 0; i < BENCH_HIST_SIZE; i++) {
        seen += h->counts[i];

        if (seen >= rank) {
            v = bench_hist_value(i);

            /* a bucket's lower bound may undercut the true minimum */
            if (v < h->min) {
                v = h->min;
            }

            return v > h->max ? h->max : v;
        }
    }

    return h->max;
}


void
bench_hist_json(FILE *f, bench_hist_t *h)
{
    fprintf(f, "{\"count\":%llu,\"mean\":%.1f,\"min\":%llu,\"p50\":%llu,"
            "\"p90\":%llu,\"p99\":%llu,\"p999\":%llu,\"max\":%llu}",
            (unsigned long long) h->n,
            h->n ? (double) h->sum / (double) h->n : 0.0,
            (unsigned long long) (h->n ? h->min : 0),
            (unsigned long long) bench_hist_percentile(h, 50),
            (unsigned long long) bench_hist_percentile(h, 90),
            (unsigned long long) bench_hist_percentile(h, 99),
            (unsigned long long) bench_hist_percentile(h, 99.9),
            (unsigned long long) h->max);
}


void
bench_cpu(bench_cpu_t *cpu)
{
    struct rusage  ru;

    memset(&ru, 0, sizeof(struct rusage));
    getrusage(RUSAGE_SELF, &ru);

    cpu->user_ms = ru.ru_utime.tv_sec * 1000.0 + ru.ru_utime.tv_usec / 1000.0;
    cpu->sys_ms = ru.ru_stime.tv_sec * 1000.0 + ru.ru_stime.tv_usec / 1000.0;
    cpu->maxrss_kib = ru.ru_maxrss;
}


static size_t
bench_hist_index(uint64_t v)
{
    unsigned  b, shift;
    size_t    i;

    if (v < BENCH_HIST_EXACT) {
        return (size_t) v;
    }

    b = 63 - (unsigned) __builtin_clzll(v);   /* 2^b <= v, b >= 11 */
    shift = b - 10;

    i = BENCH_HIST_EXACT + (size_t) (b - 11) * BENCH_HIST_SUB
        + (size_t) ((v >> shift) - BENCH_HIST_SUB);

    return i < BENCH_HIST_SIZE ? i : BENCH_HIST_SIZE - 1;
}


static uint64_t
bench_hist_value(size_t i)
{
    unsigned  b;
    uint64_t  m;

    if (i < BENCH_HIST_EXACT) {
        return i;
    }

    i -= BENCH_HIST_EXACT;
    b = 11 + (unsigned) (i / BENCH_HIST_SUB);
    m = BENCH_HIST_SUB + i % BENCH_HIST_SUB;

    return m << (b - 10);
}
