
/*
 * twirt: what the test module (test/module/, TWIRT_TEST_BUILD=1) may
 * reach in the Redis module beyond its public API.  Nothing else
 * includes this file.
 */


#ifndef _NGX_HTTP_TWIRT_REDIS_TEST_H_INCLUDED_
#define _NGX_HTTP_TWIRT_REDIS_TEST_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#if (NGX_HTTP_TWIRT_TEST)

/*
 * In the test module: 1 when the command and key builders' next
 * allocation must fail (twirt_redis_test build).
 */
ngx_uint_t ngx_http_twirt_test_fail_alloc(void);

#endif


#endif /* _NGX_HTTP_TWIRT_REDIS_TEST_H_INCLUDED_ */
