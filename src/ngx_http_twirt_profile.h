
/*
 * An agent profile ({prefix}agent:{name} in Redis) as the session builder
 * reads it: every field goes through the directives' validators.
 */


#ifndef _NGX_HTTP_TWIRT_PROFILE_H_INCLUDED_
#define _NGX_HTTP_TWIRT_PROFILE_H_INCLUDED_


#include <jansson.h>

#include "ngx_http_twirt.h"


json_t *ngx_http_twirt_profile_parse(ngx_log_t *log, ngx_array_t *pairs);


#endif /* _NGX_HTTP_TWIRT_PROFILE_H_INCLUDED_ */
