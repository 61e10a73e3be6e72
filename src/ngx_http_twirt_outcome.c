
/*
 * Recent call outcomes of this node.  When a call ends its outcome is
 * kept here, before the stream closes, so that <Connect action>, which
 * Twilio requests at once, is answered from it: a normal end hangs up, a
 * failure plays the fallback, with or without Redis.
 *
 * A fixed ring of entries in a shared zone (every worker sees them),
 * indexed by a hash of the CallSid: a new call takes the oldest entry,
 * and an entry older than twirt_outcome_ttl is not believed.  Nothing
 * grows with traffic.
 */


#include "ngx_http_twirt.h"
#include "ngx_http_twirt_outcome.h"


typedef struct {
    ngx_uint_t                  outcome_entries;
    time_t                      outcome_ttl;
} ngx_http_twirt_outcome_conf_t;


typedef struct {
    time_t                      stored;
    uint32_t                    next;        /* in the bucket, index + 1 */
    u_char                      used;
    u_char                      live;        /* claimed, not ended yet */
    u_char                      failed;
    u_char                      sid_len;
    u_char                      stream_len;
    u_char                      name_len;
    u_char                      sid[NGX_HTTP_TWIRT_OUTCOME_SID_LEN];
    u_char                      stream[NGX_HTTP_TWIRT_OUTCOME_SID_LEN];
    u_char                      name[NGX_HTTP_TWIRT_OUTCOME_NAME_LEN];

    /* a transfer: target_len 0 when there is none */
    u_char                      to_len;        /* the target's name */
    u_char                      target_len;
    u_char                      caller_id_len;
    uint16_t                    timeout;
    uint16_t                    summary_len;
    u_char                      to[NGX_HTTP_TWIRT_TRANSFER_NAME_LEN];
    u_char                      target[NGX_HTTP_TWIRT_TRANSFER_TARGET_LEN];
    u_char                      caller_id[NGX_HTTP_TWIRT_TRANSFER_ID_LEN];
    u_char                      summary[NGX_HTTP_TWIRT_TRANSFER_SUMMARY_LEN];
} ngx_http_twirt_outcome_entry_t;


typedef struct {
    ngx_uint_t                  magic;
    ngx_uint_t                  entries;
    ngx_uint_t                  buckets;     /* a power of two */
    ngx_uint_t                  oldest;      /* the ring's next victim */
    time_t                      ttl;
    uint32_t                   *bucket;      /* first entry, index + 1 */
    ngx_http_twirt_outcome_entry_t  *entry;
    ngx_slab_pool_t            *shpool;
} ngx_http_twirt_outcome_shm_t;


#define NGX_HTTP_TWIRT_OUTCOME_MAGIC  0x74776f63   /* "twoc" */


static void *ngx_http_twirt_outcome_create_conf(ngx_conf_t *cf);
static char *ngx_http_twirt_outcome_init_conf(ngx_conf_t *cf, void *conf);
static ngx_int_t ngx_http_twirt_outcome_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_uint_t ngx_http_twirt_outcome_buckets(ngx_uint_t entries);
static ngx_http_twirt_outcome_shm_t *ngx_http_twirt_outcome_shm(void);
static ngx_http_twirt_outcome_entry_t *ngx_http_twirt_outcome_find(
    ngx_http_twirt_outcome_shm_t *shm, ngx_str_t *call_sid, uint32_t **link);
static ngx_http_twirt_outcome_entry_t *ngx_http_twirt_outcome_take(
    ngx_http_twirt_outcome_shm_t *shm, ngx_str_t *call_sid);
static ngx_uint_t ngx_http_twirt_outcome_owner(
    ngx_http_twirt_outcome_entry_t *e, ngx_str_t *stream_sid);
static uint32_t *ngx_http_twirt_outcome_bucket(
    ngx_http_twirt_outcome_shm_t *shm, u_char *sid, size_t len);


static ngx_command_t  ngx_http_twirt_outcome_commands[] = {

    { ngx_string("twirt_outcome_entries"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_outcome_conf_t, outcome_entries),
      NULL },

    { ngx_string("twirt_outcome_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_twirt_outcome_conf_t, outcome_ttl),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_twirt_outcome_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    ngx_http_twirt_outcome_create_conf,    /* create main configuration */
    ngx_http_twirt_outcome_init_conf,      /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_twirt_outcome_module = {
    NGX_MODULE_V1,
    &ngx_http_twirt_outcome_module_ctx,    /* module context */
    ngx_http_twirt_outcome_commands,       /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_str_t  ngx_http_twirt_outcome_zone_name =
    ngx_string("twirt_outcomes");


/* the zone found in the running cycle, looked up again after a reload */
static ngx_cycle_t                   *ngx_http_twirt_outcome_cycle;
static ngx_http_twirt_outcome_shm_t  *ngx_http_twirt_outcome_current;


static void *
ngx_http_twirt_outcome_create_conf(ngx_conf_t *cf)
{
    ngx_http_twirt_outcome_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_outcome_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->outcome_entries = NGX_CONF_UNSET_UINT;
    conf->outcome_ttl = NGX_CONF_UNSET;

    return conf;
}


static char *
ngx_http_twirt_outcome_init_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_twirt_outcome_conf_t *ocf = conf;

    ngx_conf_init_uint_value(ocf->outcome_entries, 10000);
    ngx_conf_init_value(ocf->outcome_ttl, 600);

    if (ocf->outcome_entries == 0 || ocf->outcome_entries > 1000000) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_outcome_entries\" must be from 1 to "
                           "1000000, not %ui", ocf->outcome_entries);
        return NGX_CONF_ERROR;
    }

    if (ocf->outcome_ttl == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"twirt_outcome_ttl\" must be at least 1s");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_http_twirt_outcome_init(ngx_conf_t *cf)
{
    size_t                          size;
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_twirt_outcome_conf_t  *ocf;

    ocf = ngx_http_conf_get_module_main_conf(cf,
                                             ngx_http_twirt_outcome_module);

    size = sizeof(ngx_http_twirt_outcome_shm_t)
           + ngx_http_twirt_outcome_buckets(ocf->outcome_entries)
             * sizeof(uint32_t)
           + ocf->outcome_entries * sizeof(ngx_http_twirt_outcome_entry_t);

    /*
     * The slab pool's own headers, and a page descriptor for each page
     * (under 1% of the zone: a sixteenth is ample at any size).
     */
    size = ngx_align(size + size / 16, ngx_pagesize) + 8 * ngx_pagesize;

    shm_zone = ngx_shared_memory_add(cf, &ngx_http_twirt_outcome_zone_name,
                                     size, &ngx_http_twirt_outcome_module);
    if (shm_zone == NULL) {
        return NGX_ERROR;
    }

    shm_zone->init = ngx_http_twirt_outcome_init_zone;
    shm_zone->data = ocf;

    return NGX_OK;
}


static ngx_uint_t
ngx_http_twirt_outcome_buckets(ngx_uint_t entries)
{
    ngx_uint_t  n;

    for (n = 1; n < entries; n <<= 1) { /* void */ }

    return n;
}


static ngx_int_t
ngx_http_twirt_outcome_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_twirt_outcome_shm_t   *old = data;

    size_t                          size;
    ngx_uint_t                      buckets;
    ngx_slab_pool_t                *shpool;
    ngx_http_twirt_outcome_shm_t   *shm;
    ngx_http_twirt_outcome_conf_t  *ocf;

    ocf = shm_zone->data;

    /* a reload: the outcomes kept so far stay */
    if (old
        && old->magic == NGX_HTTP_TWIRT_OUTCOME_MAGIC
        && old->entries == ocf->outcome_entries)
    {
        old->ttl = ocf->outcome_ttl;
        shm_zone->data = old;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    /* the same zone with another number of entries: start afresh */
    if (old && old->magic == NGX_HTTP_TWIRT_OUTCOME_MAGIC) {
        ngx_slab_free(shpool, old);
    }
    buckets = ngx_http_twirt_outcome_buckets(ocf->outcome_entries);

    size = sizeof(ngx_http_twirt_outcome_shm_t) + buckets * sizeof(uint32_t)
           + ocf->outcome_entries * sizeof(ngx_http_twirt_outcome_entry_t);

    shm = ngx_slab_calloc(shpool, size);
    if (shm == NULL) {
        ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                      "twirt: no memory for the \"%V\" zone",
                      &shm_zone->shm.name);
        return NGX_ERROR;
    }

    shm->magic = NGX_HTTP_TWIRT_OUTCOME_MAGIC;
    shm->entries = ocf->outcome_entries;
    shm->buckets = buckets;
    shm->ttl = ocf->outcome_ttl;
    shm->bucket = (uint32_t *) (shm + 1);
    shm->entry = (ngx_http_twirt_outcome_entry_t *)
                     (shm->bucket + buckets);
    shm->shpool = shpool;

    shm_zone->data = shm;

    return NGX_OK;
}


/*
 * A stream claims its CallSid at "start": NGX_BUSY when another stream
 * of this node holds it live.  A call's outcome is kept only by the
 * stream that claimed it.
 */

ngx_int_t
ngx_http_twirt_outcome_claim(ngx_str_t *call_sid, ngx_str_t *stream_sid)
{
    ngx_int_t                        rc;
    ngx_http_twirt_outcome_shm_t    *shm;
    ngx_http_twirt_outcome_entry_t  *e;

    if (call_sid->len == 0 || call_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN
        || stream_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN)
    {
        return NGX_DECLINED;
    }

    shm = ngx_http_twirt_outcome_shm();
    if (shm == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_OK;

    ngx_shmtx_lock(&shm->shpool->mutex);

    e = ngx_http_twirt_outcome_take(shm, call_sid);

    if (e->live && !ngx_http_twirt_outcome_owner(e, stream_sid)) {
        rc = NGX_BUSY;

    } else {
        e->live = 1;
        e->target_len = 0;            /* a new stream: no transfer yet */
        e->stored = ngx_time();
        e->stream_len = (u_char) stream_sid->len;
        ngx_memcpy(e->stream, stream_sid->data, stream_sid->len);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    return rc;
}


void
ngx_http_twirt_outcome_set(ngx_str_t *call_sid, ngx_str_t *stream_sid,
    ngx_uint_t failed, ngx_str_t *end_name)
{
    ngx_http_twirt_outcome_shm_t    *shm;
    ngx_http_twirt_outcome_entry_t  *e;

    if (call_sid->len == 0 || call_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN
        || stream_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN)
    {
        return;
    }

    shm = ngx_http_twirt_outcome_shm();
    if (shm == NULL) {
        return;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    e = ngx_http_twirt_outcome_take(shm, call_sid);

    if (e->stream_len == 0 || ngx_http_twirt_outcome_owner(e, stream_sid)) {
        e->live = 0;
        e->stored = ngx_time();
        e->failed = failed ? 1 : 0;
        e->stream_len = (u_char) stream_sid->len;
        ngx_memcpy(e->stream, stream_sid->data, stream_sid->len);
        e->name_len = (u_char) ngx_min(end_name->len,
                                       NGX_HTTP_TWIRT_OUTCOME_NAME_LEN);
        ngx_memcpy(e->name, end_name->data, e->name_len);
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


/*
 * Under the lock: the entry of the CallSid, or the oldest entry emptied
 * and given to it.
 */

static ngx_http_twirt_outcome_entry_t *
ngx_http_twirt_outcome_take(ngx_http_twirt_outcome_shm_t *shm,
    ngx_str_t *call_sid)
{
    uint32_t                        *link, *head;
    ngx_uint_t                       i;
    ngx_http_twirt_outcome_entry_t  *e;

    e = ngx_http_twirt_outcome_find(shm, call_sid, &link);

    if (e) {
        return e;
    }

    /* the oldest entry makes room: out of its bucket first */

    i = shm->oldest;
    shm->oldest = (i + 1) % shm->entries;
    e = &shm->entry[i];

    if (e->used) {
        for (link = ngx_http_twirt_outcome_bucket(shm, e->sid, e->sid_len);
             *link != i + 1;
             link = &shm->entry[*link - 1].next)
        { /* void */ }

        *link = e->next;
    }

    head = ngx_http_twirt_outcome_bucket(shm, call_sid->data, call_sid->len);

    ngx_memzero(e, sizeof(ngx_http_twirt_outcome_entry_t));
    e->used = 1;
    e->sid_len = (u_char) call_sid->len;
    ngx_memcpy(e->sid, call_sid->data, call_sid->len);
    e->next = *head;
    *head = i + 1;

    return e;
}


static ngx_uint_t
ngx_http_twirt_outcome_owner(ngx_http_twirt_outcome_entry_t *e,
    ngx_str_t *stream_sid)
{
    return e->stream_len == stream_sid->len
           && ngx_memcmp(e->stream, stream_sid->data, stream_sid->len) == 0;
}


ngx_int_t
ngx_http_twirt_outcome_get(ngx_str_t *call_sid, ngx_uint_t *failed,
    ngx_str_t *end_name, ngx_pool_t *pool)
{
    u_char                           name[NGX_HTTP_TWIRT_OUTCOME_NAME_LEN];
    size_t                           len;
    uint32_t                        *link;
    ngx_int_t                        rc;
    ngx_http_twirt_outcome_shm_t    *shm;
    ngx_http_twirt_outcome_entry_t  *e;

    if (call_sid->len == 0 || call_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN)
    {
        return NGX_DECLINED;
    }

    shm = ngx_http_twirt_outcome_shm();
    if (shm == NULL) {
        return NGX_DECLINED;
    }

    len = 0;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&shm->shpool->mutex);

    e = ngx_http_twirt_outcome_find(shm, call_sid, &link);

    if (e && !e->live && ngx_time() - e->stored <= shm->ttl) {
        *failed = e->failed;
        len = e->name_len;
        ngx_memcpy(name, e->name, len);
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (rc != NGX_OK) {
        return rc;
    }

    end_name->data = ngx_pnalloc(pool, len);
    if (end_name->data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(end_name->data, name, len);
    end_name->len = len;

    return NGX_OK;
}


/* under the lock: the entry of the CallSid and the link that points to it */

static ngx_http_twirt_outcome_entry_t *
ngx_http_twirt_outcome_find(ngx_http_twirt_outcome_shm_t *shm,
    ngx_str_t *call_sid, uint32_t **link)
{
    ngx_http_twirt_outcome_entry_t  *e;

    *link = ngx_http_twirt_outcome_bucket(shm, call_sid->data, call_sid->len);

    while (**link) {
        e = &shm->entry[**link - 1];

        if (e->sid_len == call_sid->len
            && ngx_memcmp(e->sid, call_sid->data, call_sid->len) == 0)
        {
            return e;
        }

        *link = &e->next;
    }

    return NULL;
}


static uint32_t *
ngx_http_twirt_outcome_bucket(ngx_http_twirt_outcome_shm_t *shm, u_char *sid,
    size_t len)
{
    return &shm->bucket[ngx_crc32_short(sid, len) & (shm->buckets - 1)];
}


/* this cycle's zone: a failed reload must not leave a stale pointer */

static ngx_http_twirt_outcome_shm_t *
ngx_http_twirt_outcome_shm(void)
{
    if (ngx_http_twirt_outcome_cycle == (ngx_cycle_t *) ngx_cycle) {
        return ngx_http_twirt_outcome_current;
    }

    ngx_http_twirt_outcome_cycle = (ngx_cycle_t *) ngx_cycle;
    ngx_http_twirt_outcome_current = ngx_http_twirt_shm_lookup(
                                         (ngx_cycle_t *) ngx_cycle,
                                         &ngx_http_twirt_outcome_zone_name,
                                         &ngx_http_twirt_outcome_module);

    return ngx_http_twirt_outcome_current;
}


void
ngx_http_twirt_outcome_transfer(ngx_str_t *call_sid, ngx_str_t *stream_sid,
    ngx_http_twirt_transfer_t *t)
{
    ngx_http_twirt_outcome_shm_t    *shm;
    ngx_http_twirt_outcome_entry_t  *e;

    if (call_sid->len == 0 || call_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN
        || stream_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN
        || t->name.len > NGX_HTTP_TWIRT_TRANSFER_NAME_LEN
        || t->target.len > NGX_HTTP_TWIRT_TRANSFER_TARGET_LEN
        || t->caller_id.len > NGX_HTTP_TWIRT_TRANSFER_ID_LEN
        || t->summary.len > NGX_HTTP_TWIRT_TRANSFER_SUMMARY_LEN)
    {
        return;
    }

    shm = ngx_http_twirt_outcome_shm();
    if (shm == NULL) {
        return;
    }

    ngx_shmtx_lock(&shm->shpool->mutex);

    e = ngx_http_twirt_outcome_take(shm, call_sid);

    if (e->stream_len == 0 || ngx_http_twirt_outcome_owner(e, stream_sid)) {
        e->stream_len = (u_char) stream_sid->len;
        ngx_memcpy(e->stream, stream_sid->data, stream_sid->len);
        e->to_len = (u_char) t->name.len;
        ngx_memcpy(e->to, t->name.data, t->name.len);
        e->target_len = (u_char) t->target.len;
        ngx_memcpy(e->target, t->target.data, t->target.len);
        e->caller_id_len = (u_char) t->caller_id.len;
        ngx_memcpy(e->caller_id, t->caller_id.data, t->caller_id.len);
        e->summary_len = (uint16_t) t->summary.len;
        ngx_memcpy(e->summary, t->summary.data, t->summary.len);
        e->timeout = (uint16_t) t->timeout;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);
}


ngx_int_t
ngx_http_twirt_outcome_get_transfer(ngx_str_t *call_sid,
    ngx_http_twirt_transfer_t *t, ngx_pool_t *pool)
{
    u_char                          *p;
    uint32_t                        *link;
    ngx_int_t                        rc;
    ngx_http_twirt_outcome_shm_t    *shm;
    ngx_http_twirt_outcome_entry_t  *e, copy;

    if (call_sid->len == 0 || call_sid->len > NGX_HTTP_TWIRT_OUTCOME_SID_LEN)
    {
        return NGX_DECLINED;
    }

    shm = ngx_http_twirt_outcome_shm();
    if (shm == NULL) {
        return NGX_DECLINED;
    }

    rc = NGX_DECLINED;

    ngx_shmtx_lock(&shm->shpool->mutex);

    e = ngx_http_twirt_outcome_find(shm, call_sid, &link);

    if (e && !e->live && e->target_len
        && ngx_time() - e->stored <= shm->ttl)
    {
        copy = *e;
        rc = NGX_OK;
    }

    ngx_shmtx_unlock(&shm->shpool->mutex);

    if (rc != NGX_OK) {
        return rc;
    }

    p = ngx_pnalloc(pool, copy.to_len + copy.target_len + copy.caller_id_len
                          + copy.summary_len + copy.stream_len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    t->name.data = p;
    t->name.len = copy.to_len;
    p = ngx_cpymem(p, copy.to, copy.to_len);

    t->target.data = p;
    t->target.len = copy.target_len;
    p = ngx_cpymem(p, copy.target, copy.target_len);

    t->caller_id.data = p;
    t->caller_id.len = copy.caller_id_len;
    p = ngx_cpymem(p, copy.caller_id, copy.caller_id_len);

    t->summary.data = p;
    t->summary.len = copy.summary_len;
    p = ngx_cpymem(p, copy.summary, copy.summary_len);

    t->stream_sid.data = p;
    t->stream_sid.len = copy.stream_len;
    ngx_memcpy(p, copy.stream, copy.stream_len);

    t->timeout = copy.timeout;

    return NGX_OK;
}
