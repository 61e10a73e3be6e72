
/*
 * The cached greeting's shared memory zone (see the header): a red-black
 * tree by digest and a queue, most recently used first, in a slab pool.
 * When the slab has no room, the least recently used entries go until it
 * has; an entry bigger than the whole zone is never kept.  Entries are
 * copied out under the lock: one may be evicted while a call plays it.
 * An entry without audio is a mark: a greeting filled per call, seen
 * once; it is kept when it comes again.
 */


#include <ngx_md5.h>

#include "ngx_http_twirt_greeting.h"
#include "ngx_http_twirt_metrics.h"


typedef struct {
    ngx_rbtree_node_t               node;     /* key: the digest's start */
    ngx_queue_t                     queue;
    u_char                          key[NGX_HTTP_TWIRT_GREETING_KEY];
    time_t                          expires;
    size_t                          audio_len;
    size_t                          text_len;
    u_char                          data[1];  /* audio, then text */
} ngx_http_twirt_greeting_node_t;


typedef struct {
    ngx_rbtree_t                    rbtree;
    ngx_rbtree_node_t               sentinel;
    ngx_queue_t                     lru;      /* most recently used first */
} ngx_http_twirt_greeting_sh_t;


typedef struct {
    ngx_http_twirt_greeting_sh_t   *sh;
    ngx_slab_pool_t                *shpool;
} ngx_http_twirt_greeting_ctx_t;


static ngx_int_t ngx_http_twirt_greeting_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_http_twirt_greeting_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_http_twirt_greeting_node_t *ngx_http_twirt_greeting_find(
    ngx_http_twirt_greeting_ctx_t *ctx, u_char *key);
static void ngx_http_twirt_greeting_delete(ngx_http_twirt_greeting_ctx_t *ctx,
    ngx_http_twirt_greeting_node_t *gn);


/* the zones' tag: a name of another module's zone is refused */
static u_char  ngx_http_twirt_greeting_tag;


ngx_shm_zone_t *
ngx_http_twirt_greeting_zone(ngx_conf_t *cf, ngx_str_t *name, size_t size)
{
    ngx_shm_zone_t                 *shm_zone;
    ngx_http_twirt_greeting_ctx_t  *ctx;

    shm_zone = ngx_shared_memory_add(cf, name, size,
                                     &ngx_http_twirt_greeting_tag);
    if (shm_zone == NULL) {
        return NULL;
    }

    /* named again elsewhere, with the same size */
    if (shm_zone->data) {
        return shm_zone;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_twirt_greeting_ctx_t));
    if (ctx == NULL) {
        return NULL;
    }

    shm_zone->init = ngx_http_twirt_greeting_init_zone;
    shm_zone->data = ctx;

    return shm_zone;
}


static ngx_int_t
ngx_http_twirt_greeting_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_twirt_greeting_ctx_t  *octx = data;

    size_t                          len;
    ngx_http_twirt_greeting_ctx_t  *ctx;

    ctx = shm_zone->data;

    /* a reload: the greetings cached stay */
    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool,
                             sizeof(ngx_http_twirt_greeting_sh_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_twirt_greeting_rbtree_insert);
    ngx_queue_init(&ctx->sh->lru);

    len = sizeof(" in twirt_greeting_cache zone \"\"") + shm_zone->shm.name.len;

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool, len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in twirt_greeting_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full zone is the normal case: the least recently used go */
    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_http_twirt_greeting_rbtree_insert(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_twirt_greeting_node_t   *gn, *gnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            gn = (ngx_http_twirt_greeting_node_t *) node;
            gnt = (ngx_http_twirt_greeting_node_t *) temp;

            p = (ngx_memcmp(gn->key, gnt->key, NGX_HTTP_TWIRT_GREETING_KEY)
                 < 0) ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/*
 * The digest of what the audio is made of: the model says the same text
 * in the same voice at the same speed the same way (near enough to be
 * heard as the same greeting)
 */

void
ngx_http_twirt_greeting_key(ngx_str_t *voice, ngx_str_t *model, double speed,
    ngx_str_t *text, u_char *key)
{
    u_char     buf[NGX_INT_T_LEN + 8], *p;
    ngx_md5_t  md5;

    ngx_md5_init(&md5);
    ngx_md5_update(&md5, voice->data, voice->len);
    ngx_md5_update(&md5, "\n", 1);
    ngx_md5_update(&md5, model->data, model->len);

    p = ngx_sprintf(buf, "\n%.2f\n", speed);

    ngx_md5_update(&md5, buf, p - buf);
    ngx_md5_update(&md5, text->data, text->len);
    ngx_md5_final(key, &md5);
}


static ngx_http_twirt_greeting_node_t *
ngx_http_twirt_greeting_find(ngx_http_twirt_greeting_ctx_t *ctx, u_char *key)
{
    ngx_int_t                        rc;
    ngx_rbtree_key_t                 hash;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_twirt_greeting_node_t  *gn;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        gn = (ngx_http_twirt_greeting_node_t *) node;

        rc = ngx_memcmp(key, gn->key, NGX_HTTP_TWIRT_GREETING_KEY);

        if (rc == 0) {
            return gn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static void
ngx_http_twirt_greeting_delete(ngx_http_twirt_greeting_ctx_t *ctx,
    ngx_http_twirt_greeting_node_t *gn)
{
    ngx_queue_remove(&gn->queue);
    ngx_rbtree_delete(&ctx->sh->rbtree, &gn->node);
    ngx_slab_free_locked(ctx->shpool, gn);
}


ngx_int_t
ngx_http_twirt_greeting_lookup(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_pool_t *pool, ngx_str_t *audio, ngx_str_t *text)
{
    u_char                          *p;
    ngx_int_t                        rc;
    ngx_http_twirt_greeting_ctx_t   *ctx;
    ngx_http_twirt_greeting_node_t  *gn;

    ctx = gc->zone->data;
    rc = NGX_DECLINED;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    gn = ngx_http_twirt_greeting_find(ctx, key);

    if (gn && gn->expires <= ngx_time()) {
        ngx_http_twirt_greeting_delete(ctx, gn);
        gn = NULL;
    }

    if (gn && gn->audio_len) {
        ngx_queue_remove(&gn->queue);
        ngx_queue_insert_head(&ctx->sh->lru, &gn->queue);

        p = ngx_pnalloc(pool, gn->audio_len + gn->text_len);

        if (p == NULL) {
            rc = NGX_ERROR;

        } else {
            audio->data = p;
            audio->len = gn->audio_len;
            text->data = p + gn->audio_len;
            text->len = gn->text_len;
            ngx_memcpy(p, gn->data, gn->audio_len + gn->text_len);
            rc = NGX_OK;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    return rc;
}


ngx_int_t
ngx_http_twirt_greeting_store(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_str_t *audio, ngx_str_t *text, ngx_uint_t twice,
    ngx_log_t *log)
{
    size_t                           size;
    ngx_uint_t                       evicted, mark;
    ngx_queue_t                     *q;
    ngx_http_twirt_greeting_ctx_t   *ctx;
    ngx_http_twirt_greeting_node_t  *gn;

    static ngx_uint_t  too_big;

    ctx = gc->zone->data;
    size = offsetof(ngx_http_twirt_greeting_node_t, data)
           + audio->len + text->len;

    /* more pages than the zone has: evicting all would not help */

    if (size > (size_t) (ctx->shpool->end - ctx->shpool->start)) {
        if (!too_big) {
            too_big = 1;
            ngx_log_error(NGX_LOG_INFO, log, 0,
                          "twirt: a greeting of %uz bytes is not cached: "
                          "larger than the zone \"%V\" can hold",
                          size, &gc->zone->shm.name);
        }

        return NGX_DECLINED;
    }

    evicted = 0;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    gn = ngx_http_twirt_greeting_find(ctx, key);

    /* seen before (a mark, expired or not), or filled meanwhile */
    mark = (twice && (gn == NULL || gn->expires <= ngx_time()));

    if (gn) {
        ngx_http_twirt_greeting_delete(ctx, gn);
    }

    if (mark) {
        size = offsetof(ngx_http_twirt_greeting_node_t, data);
    }

    for ( ;; ) {
        gn = ngx_slab_alloc_locked(ctx->shpool, size);

        if (gn || ngx_queue_empty(&ctx->sh->lru)) {
            break;
        }

        q = ngx_queue_last(&ctx->sh->lru);
        ngx_http_twirt_greeting_delete(ctx,
            ngx_queue_data(q, ngx_http_twirt_greeting_node_t, queue));
        evicted++;
    }

    if (gn) {
        ngx_memcpy(&gn->node.key, key, sizeof(ngx_rbtree_key_t));
        ngx_memcpy(gn->key, key, NGX_HTTP_TWIRT_GREETING_KEY);
        gn->expires = ngx_time() + gc->max_age;
        gn->audio_len = mark ? 0 : audio->len;
        gn->text_len = mark ? 0 : text->len;
        ngx_memcpy(gn->data, audio->data, gn->audio_len);
        ngx_memcpy(gn->data + gn->audio_len, text->data, gn->text_len);

        ngx_rbtree_insert(&ctx->sh->rbtree, &gn->node);
        ngx_queue_insert_head(&ctx->sh->lru, &gn->queue);
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    ngx_http_twirt_metrics_add(NGX_HTTP_TWIRT_M_GREETING_EVICTED, evicted);

    if (gn == NULL) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "twirt: a greeting of %uz bytes is not cached: no "
                      "room in the zone \"%V\"", size, &gc->zone->shm.name);
        return NGX_DECLINED;
    }

    if (mark) {
        ngx_log_error(NGX_LOG_INFO, log, 0,
                      "twirt: a greeting filled per call is not cached "
                      "the first time it is said");
        return NGX_DECLINED;
    }

    return NGX_OK;
}


void
ngx_http_twirt_greeting_redis_store(ngx_http_twirt_greeting_conf_t *gc,
    u_char *key, ngx_str_t *audio, ngx_str_t *text, ngx_pool_t *pool,
    ngx_log_t *log)
{
    u_char                       hex[2 * NGX_HTTP_TWIRT_GREETING_KEY];
    ngx_str_t                    id;
    ngx_http_twirt_redis_args_t  args;

    if (!ngx_http_twirt_redis_configured()) {
        return;
    }

    id.data = hex;
    id.len = ngx_hex_dump(hex, key, NGX_HTTP_TWIRT_GREETING_KEY) - hex;

    ngx_http_twirt_redis_args_init(&args, pool, log, "HSET");
    ngx_http_twirt_redis_args_key(&args, "greeting", &id, NULL);
    ngx_http_twirt_redis_args_cstr(&args, "audio");
    ngx_http_twirt_redis_args_str(&args, audio);
    ngx_http_twirt_redis_args_cstr(&args, "text");
    ngx_http_twirt_redis_args_str(&args, text);

    if (ngx_http_twirt_redis_args_send(&args) != NGX_OK) {
        return;
    }

    ngx_http_twirt_redis_args_init(&args, pool, log, "EXPIRE");
    ngx_http_twirt_redis_args_key(&args, "greeting", &id, NULL);
    ngx_http_twirt_redis_args_num(&args, "%T", gc->max_age);

    (void) ngx_http_twirt_redis_args_send(&args);
}


ngx_int_t
ngx_http_twirt_greeting_redis_get(u_char *key, ngx_pool_t *pool,
    ngx_http_twirt_redis_hash_pt handler, void *data, void **handle)
{
    u_char     hex[2 * NGX_HTTP_TWIRT_GREETING_KEY];
    ngx_str_t  id, rkey;

    if (!ngx_http_twirt_redis_configured()) {
        return NGX_DECLINED;
    }

    id.data = hex;
    id.len = ngx_hex_dump(hex, key, NGX_HTTP_TWIRT_GREETING_KEY) - hex;

    if (ngx_http_twirt_redis_key(pool, "greeting", &id, NULL, &rkey)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_http_twirt_redis_hgetall(&rkey, 0, handler, data, handle);
}


size_t
ngx_http_twirt_greeting_heard(ngx_str_t *text, uint64_t heard, uint64_t total)
{
    size_t      i;
    uint64_t    chars, n;

    if (total == 0 || heard >= total) {
        return text->len;
    }

    chars = 0;

    for (i = 0; i < text->len; i++) {
        if ((text->data[i] & 0xc0) != 0x80) {
            chars++;
        }
    }

    n = chars * heard / total;

    for (i = 0; i < text->len; i++) {
        if ((text->data[i] & 0xc0) != 0x80) {
            if (n == 0) {
                return i;
            }

            n--;
        }
    }

    return text->len;
}
