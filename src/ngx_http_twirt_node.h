
/*
 * twirt: the nodes sharing one Redis: each says it is alive, and the
 * calls of one that stopped are marked failed (node_lost).
 */


#ifndef _NGX_HTTP_TWIRT_NODE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_NODE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


/* from the Redis module's worker start and exit, with twirt_redis set */
void ngx_http_twirt_node_init(ngx_cycle_t *cycle);
void ngx_http_twirt_node_exit(void);


#endif /* _NGX_HTTP_TWIRT_NODE_H_INCLUDED_ */
