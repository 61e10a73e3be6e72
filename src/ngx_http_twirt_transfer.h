
/*
 * Transfer to a human: the transfer_call tool, its targets (twirt_transfer,
 * an agent profile's "transfers"), and what a call keeps of a transfer.
 */


#ifndef _NGX_HTTP_TWIRT_TRANSFER_H_INCLUDED_
#define _NGX_HTTP_TWIRT_TRANSFER_H_INCLUDED_


#include "ngx_http_twirt.h"


#define NGX_HTTP_TWIRT_TRANSFER_NAME_LEN     32
#define NGX_HTTP_TWIRT_TRANSFER_TARGET_LEN   128
#define NGX_HTTP_TWIRT_TRANSFER_ID_LEN       32    /* a caller ID */
#define NGX_HTTP_TWIRT_TRANSFER_SUMMARY_LEN  480   /* bytes, UTF-8 kept */
#define NGX_HTTP_TWIRT_TRANSFER_TIMEOUT      30    /* s, Twilio's default */

/* the history a returning call replays, at most */
#define NGX_HTTP_TWIRT_TRANSFER_HISTORY      100   /* transcript lines */
#define NGX_HTTP_TWIRT_TRANSFER_HISTORY_SIZE 16384 /* bytes of text */


/* how a transfer went: the "result" label of twirt_transfers_total */
typedef enum {
    NGX_HTTP_TWIRT_TRANSFER_REQUESTED = 0,  /* the model asked, validly */
    NGX_HTTP_TWIRT_TRANSFER_REFUSED,        /* a name not in the list */
    NGX_HTTP_TWIRT_TRANSFER_ANSWERED,       /* DialCallStatus completed,
                                               answered */
    NGX_HTTP_TWIRT_TRANSFER_NO_ANSWER,
    NGX_HTTP_TWIRT_TRANSFER_BUSY,
    NGX_HTTP_TWIRT_TRANSFER_FAILED,
    NGX_HTTP_TWIRT_TRANSFER_CANCELED,
    NGX_HTTP_TWIRT_TRANSFER_RETURNED,       /* the caller is back */
    NGX_HTTP_TWIRT_TRANSFER_LAST
} ngx_http_twirt_transfer_result_e;


/* a transfer decided: what <Dial> and the whisper need, on any node */
typedef struct {
    ngx_str_t                   name;          /* the target's name */
    ngx_str_t                   target;        /* +E.164 or sip:... */
    ngx_str_t                   caller_id;     /* "": Twilio's default */
    ngx_str_t                   summary;       /* for the person answering */
    ngx_str_t                   stream_sid;    /* of the stream that ended */
    ngx_uint_t                  timeout;       /* s */
} ngx_http_twirt_transfer_t;


extern const char *ngx_http_twirt_transfer_labels[];


/* twirt_transfer NAME TARGET [caller_id=+81...] [timeout=30] */
char *ngx_http_twirt_transfer_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/*
 * The one check of a target, for the directive and the profile: NULL, or
 * why it is not valid.  timeout 0: the default.
 */
const char *ngx_http_twirt_transfer_check(ngx_str_t *name, ngx_str_t *target,
    ngx_str_t *caller_id, ngx_uint_t timeout);

/*
 * A profile's "transfers" (a JSON object: NAME -> "TARGET" or
 * {"target", "caller_id", "timeout"}): the same object, normalized to
 * {"target", "caller_id", "timeout"} values; NULL with *why when invalid.
 */
json_t *ngx_http_twirt_transfer_parse(ngx_str_t *value, const char **why);

/* the targets in force: the profile's, else the configuration's, or NULL */
json_t *ngx_http_twirt_transfer_targets(ngx_http_twirt_loc_conf_t *conf,
    json_t *profile);

/* the transfer_call tool of the session, or NULL when no targets */
json_t *ngx_http_twirt_transfer_tool(json_t *targets);

/*
 * The model called transfer_call with these arguments (a JSON string):
 * NGX_OK and *t filled (from pool) when the name is a target; otherwise
 * NGX_DECLINED and *output says why, for the model.
 */
ngx_int_t ngx_http_twirt_transfer_request(json_t *targets, json_t *arguments,
    ngx_pool_t *pool, ngx_http_twirt_transfer_t *t, const char **output);

/* keeps at most n bytes of s, never cutting a UTF-8 character */
size_t ngx_http_twirt_transfer_utf8_cut(u_char *s, size_t len, size_t n);

/* DialCallStatus -> result; NGX_HTTP_TWIRT_TRANSFER_LAST when unknown */
ngx_http_twirt_transfer_result_e ngx_http_twirt_transfer_dialed(
    ngx_str_t *status);


/* the call's side (ngx_http_twirt_call.c calls them) */
struct ngx_http_twirt_call_s;

/*
 * The model called transfer_call ({"name", "call_id", "arguments"}): its
 * function_call_output is sent; the caller asks for the response.
 */
void ngx_http_twirt_transfer_call(struct ngx_http_twirt_call_s *call,
    json_t *ev);
/* call->after NGX_HTTP_TWIRT_AFTER_TRANSFER: the answer was heard */
void ngx_http_twirt_transfer_heard(struct ngx_http_twirt_call_s *call);
/* at "start": a returning call reads its history (WAIT_HISTORY) */
void ngx_http_twirt_transfer_resume(struct ngx_http_twirt_call_s *call);
/* the call ends: a history read in flight is cancelled */
void ngx_http_twirt_transfer_cancel(struct ngx_http_twirt_call_s *call);
/* session.updated of a returning call; NGX_DECLINED: not one */
ngx_int_t ngx_http_twirt_transfer_replay(struct ngx_http_twirt_call_s *call);


#endif /* _NGX_HTTP_TWIRT_TRANSFER_H_INCLUDED_ */
