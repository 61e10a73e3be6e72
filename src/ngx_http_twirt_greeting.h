
/*
 * The cached greeting (twirt_greeting_cache): the μ-law audio and the
 * transcript of a greeting the model spoke once, kept in a shared memory
 * zone for every worker (and in Redis, with "twirt_redis", for every
 * node), so that a later call with the same greeting hears it at once,
 * while its session is configured.  Keyed by a digest of what makes the
 * audio: the voice, its speed, the model and the greeting's text as
 * filled.  Bounded: the zone's size, least recently used entries evicted
 * first, max_age; an entry is at most NGX_HTTP_TWIRT_GREETING_MAX bytes
 * of audio.
 */


#ifndef _NGX_HTTP_TWIRT_GREETING_H_INCLUDED_
#define _NGX_HTTP_TWIRT_GREETING_H_INCLUDED_


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_redis.h"


#define NGX_HTTP_TWIRT_GREETING_MAX      240000    /* μ-law: 30 s */
#define NGX_HTTP_TWIRT_GREETING_MAX_AGE  86400     /* s: the default */
#define NGX_HTTP_TWIRT_GREETING_KEY      16        /* an MD5 digest */


typedef struct {
    ngx_shm_zone_t             *zone;
    time_t                      max_age;           /* seconds */
} ngx_http_twirt_greeting_conf_t;


/* configuration time: the zone NAME of size bytes, shared by locations */
ngx_shm_zone_t *ngx_http_twirt_greeting_zone(ngx_conf_t *cf, ngx_str_t *name,
    size_t size);

void ngx_http_twirt_greeting_key(ngx_str_t *voice, ngx_str_t *model,
    double speed, ngx_str_t *text, u_char *key);

/*
 * NGX_OK: a live entry, audio and text copied into pool; NGX_DECLINED:
 * none; NGX_ERROR: no memory
 */
ngx_int_t ngx_http_twirt_greeting_lookup(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_pool_t *pool, ngx_str_t *audio, ngx_str_t *text);

/*
 * The least recently used entries make room; NGX_DECLINED: not kept.
 * twice: kept from the second time only, the first leaves a mark of the
 * key alone (a greeting filled per call: a name said once is not kept).
 */
ngx_int_t ngx_http_twirt_greeting_store(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_str_t *audio, ngx_str_t *text, ngx_uint_t twice,
    ngx_log_t *log);

/*
 * Redis, with "twirt_redis": {prefix}greeting:{hex digest}, a hash of
 * "audio" and "text" expiring at max_age, for other nodes and restarts.
 * The read: as ngx_http_twirt_redis_hgetall().
 */
void ngx_http_twirt_greeting_redis_store(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_str_t *audio, ngx_str_t *text, ngx_pool_t *pool,
    ngx_log_t *log);
ngx_int_t ngx_http_twirt_greeting_redis_get(u_char *key, ngx_pool_t *pool,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle);

/*
 * The first n characters of text, n being its characters in proportion
 * heard/total, cut at a UTF-8 character's start
 */
size_t ngx_http_twirt_greeting_heard(ngx_str_t *text, uint64_t heard,
    uint64_t total);


#endif /* _NGX_HTTP_TWIRT_GREETING_H_INCLUDED_ */
