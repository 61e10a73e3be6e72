
/*
 * Outbound campaigns (一斉コール): a list of customers called by the agent,
 * paced, retried, with results.  The control API is the twirt_campaigns
 * location; the dispatcher runs on a timer in every worker of every node,
 * and Redis, through atomic scripts, is the only coordinator.
 */


#ifndef _NGX_HTTP_TWIRT_CAMPAIGN_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CAMPAIGN_H_INCLUDED_


#include "ngx_http_twirt.h"


/*
 * A signed StatusCallback (or AsyncAmdStatusCallback) of a campaign's
 * call, its query carrying "campaign", "row" and "attempt": the row's
 * outcome is written.  NGX_DECLINED: not a campaign's.
 */
ngx_int_t ngx_http_twirt_campaign_callback(ngx_http_request_t *r,
    ngx_array_t *pairs);



/*
 * For the board: a script of the campaigns' runner (ARGV[1] the id,
 * ARGV[2] the prefix, then argv) whose answer {"json", text} is sent as
 * the response (NGX_DONE: the request waits for it); and
 * POST calls/{CallSid}/hangup.
 */
ngx_int_t ngx_http_twirt_campaign_api(ngx_http_request_t *r,
    ngx_str_t *script, ngx_str_t *id, ngx_uint_t argc, ngx_str_t *argv);
ngx_int_t ngx_http_twirt_campaign_hangup(ngx_http_request_t *r,
    ngx_str_t *sid);

/* the twirt_campaigns location's name, NULL without one */
ngx_str_t *ngx_http_twirt_campaign_location(void);


extern ngx_module_t  ngx_http_twirt_campaign_module;


#endif /* _NGX_HTTP_TWIRT_CAMPAIGN_H_INCLUDED_ */
