
/*
 * Clocks, latency histograms and the process's own CPU time, for the
 * benchmark tools.  A histogram is exact below 2048 and keeps about 0.1%
 * relative precision above, so percentiles of microsecond latencies are
 * exact where the targets live (under a few milliseconds).
 */


#ifndef _BENCH_STATS_H_INCLUDED_
#define _BENCH_STATS_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>


#define BENCH_HIST_SUB      1024
#define BENCH_HIST_EXACT    (2 * BENCH_HIST_SUB)
#define BENCH_HIST_POWERS   30                  /* up to 2^40 */
#define BENCH_HIST_SIZE     (BENCH_HIST_EXACT                              \
                             + BENCH_HIST_POWERS * BENCH_HIST_SUB)


typedef struct {
    uint64_t   *counts;       /* BENCH_HIST_SIZE entries */
    uint64_t    n;
    uint64_t    sum;
    uint64_t    min;
    uint64_t    max;
} bench_hist_t;


typedef struct {
    double      user_ms;
    double      sys_ms;
    long        maxrss_kib;
} bench_cpu_t;


/* CLOCK_MONOTONIC in nanoseconds */
uint64_t bench_now(void);

int bench_hist_init(bench_hist_t *h);
void bench_hist_free(bench_hist_t *h);
void bench_hist_add(bench_hist_t *h, uint64_t v);

/* the smallest recorded value v with at least p percent of values <= v */
uint64_t bench_hist_percentile(bench_hist_t *h, double p);

/* {"count":..,"mean":..,"p50":..,"p90":..,"p99":..,"p999":..,"max":..} */
void bench_hist_json(FILE *f, bench_hist_t *h);

void bench_cpu(bench_cpu_t *cpu);


#endif /* _BENCH_STATS_H_INCLUDED_ */
