
/*
 * Twilio Media Streams messages: what Twilio sends, parsed with jansson.
 * Unknown events and unknown fields are ignored; a malformed message is
 * NGX_DECLINED with a reason, never fatal for the call.
 */


#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_json_scan.h"


static ngx_int_t ngx_http_twirt_twilio_fast(u_char *data, size_t len,
    ngx_http_twirt_twilio_msg_t *m);


typedef struct {
    const char                     *name;
    ngx_http_twirt_twilio_event_e   event;
} ngx_http_twirt_twilio_name_t;


static ngx_http_twirt_twilio_name_t  ngx_http_twirt_twilio_events[] = {
    { "media",     NGX_HTTP_TWIRT_TWILIO_MEDIA },
    { "mark",      NGX_HTTP_TWIRT_TWILIO_MARK },
    { "start",     NGX_HTTP_TWIRT_TWILIO_START },
    { "connected", NGX_HTTP_TWIRT_TWILIO_CONNECTED },
    { "dtmf",      NGX_HTTP_TWIRT_TWILIO_DTMF },
    { "stop",      NGX_HTTP_TWIRT_TWILIO_STOP },
    { NULL,        NGX_HTTP_TWIRT_TWILIO_UNKNOWN }
};


ngx_int_t
ngx_http_twirt_twilio_parse(u_char *data, size_t len,
    ngx_http_twirt_twilio_msg_t *m)
{
    json_t                        *obj;
    json_error_t                   err;
    ngx_http_twirt_twilio_name_t  *n;

    ngx_memzero(m, sizeof(ngx_http_twirt_twilio_msg_t));

    if (ngx_http_twirt_twilio_fast(data, len, m) == NGX_OK) {
        return NGX_OK;
    }

    m->root = json_loadb((const char *) data, len,
                         JSON_REJECT_DUPLICATES|JSON_ALLOW_NUL, &err);
    if (m->root == NULL) {
        m->error = "invalid JSON";
        return NGX_DECLINED;
    }

    if (!json_is_object(m->root)) {
        m->error = "not a JSON object";
        return NGX_DECLINED;
    }

    ngx_http_twirt_json_get_str(m->root, "event", &m->name);

    if (m->name.len == 0) {
        m->error = "no \"event\"";
        return NGX_DECLINED;
    }

    for (n = ngx_http_twirt_twilio_events; n->name; n++) {
        if (ngx_strlen(n->name) == m->name.len
            && ngx_strncmp(n->name, m->name.data, m->name.len) == 0)
        {
            m->event = n->event;
            break;
        }
    }

    ngx_http_twirt_json_get_str(m->root, "streamSid", &m->stream_sid);

    switch (m->event) {

    case NGX_HTTP_TWIRT_TWILIO_MEDIA:
        obj = json_object_get(m->root, "media");
        ngx_http_twirt_json_get_str(obj, "payload", &m->payload);

        if (m->payload.data == NULL) {
            m->error = "media without \"payload\"";
            return NGX_DECLINED;
        }

        break;

    case NGX_HTTP_TWIRT_TWILIO_MARK:
        ngx_http_twirt_json_get_str(json_object_get(m->root, "mark"), "name",
                                &m->mark);
        break;

    case NGX_HTTP_TWIRT_TWILIO_START:
        obj = json_object_get(m->root, "start");

        if (!json_is_object(obj)) {
            m->error = "start without \"start\" object";
            return NGX_DECLINED;
        }

        ngx_http_twirt_json_get_str(obj, "callSid", &m->call_sid);
        ngx_http_twirt_json_get_str(obj, "accountSid", &m->account_sid);

        if (m->stream_sid.len == 0) {
            ngx_http_twirt_json_get_str(obj, "streamSid", &m->stream_sid);
        }

        m->parameters = json_object_get(obj, "customParameters");

        if (m->parameters && !json_is_object(m->parameters)) {
            m->parameters = NULL;
        }

        if (ngx_http_twirt_sid_valid(&m->stream_sid) != NGX_OK
            || ngx_http_twirt_sid_valid(&m->call_sid) != NGX_OK)
        {
            m->error = "start with an invalid callSid or streamSid";
            return NGX_DECLINED;
        }

        break;

    case NGX_HTTP_TWIRT_TWILIO_DTMF:
        ngx_http_twirt_json_get_str(json_object_get(m->root, "dtmf"), "digit",
                                &m->digit);
        break;

    case NGX_HTTP_TWIRT_TWILIO_STOP:
        obj = json_object_get(m->root, "stop");
        ngx_http_twirt_json_get_str(obj, "callSid", &m->call_sid);
        break;

    default:
        break;
    }

    return NGX_OK;
}


/*
 * media and mark, 100 messages a second in a call, without a jansson
 * tree: their values are plain strings; anything else goes the long way
 */

static ngx_int_t
ngx_http_twirt_twilio_fast(u_char *data, size_t len,
    ngx_http_twirt_twilio_msg_t *m)
{
    ngx_http_twirt_json_field_t  f[4];

    f[0].path = "event";
    f[1].path = "streamSid";
    f[2].path = "media.payload";
    f[3].path = "mark.name";

    if (ngx_http_twirt_json_scan(data, len, f, 4) != NGX_OK
        || !f[0].found)
    {
        return NGX_DECLINED;
    }

    if (f[0].value.len == 5 && ngx_strncmp(f[0].value.data, "media", 5) == 0
        && f[2].found)
    {
        m->event = NGX_HTTP_TWIRT_TWILIO_MEDIA;
        m->payload = f[2].value;

    } else if (f[0].value.len == 4
               && ngx_strncmp(f[0].value.data, "mark", 4) == 0
               && f[3].found)
    {
        m->event = NGX_HTTP_TWIRT_TWILIO_MARK;
        m->mark = f[3].value;

    } else {
        return NGX_DECLINED;
    }

    m->name = f[0].value;
    m->stream_sid = f[1].value;

    return NGX_OK;
}


void
ngx_http_twirt_twilio_free(ngx_http_twirt_twilio_msg_t *m)
{
    if (m->root) {
        json_decref(m->root);
        m->root = NULL;
    }
}


/*
 * Sids go into log lines, JSON we write and Redis keys: only letters,
 * digits, '_' and '-', so that none of them needs escaping.
 */

ngx_int_t
ngx_http_twirt_sid_valid(ngx_str_t *sid)
{
    size_t  i;
    u_char  c;

    if (sid->len == 0 || sid->len > NGX_HTTP_TWIRT_SID_MAX) {
        return NGX_DECLINED;
    }

    for (i = 0; i < sid->len; i++) {
        c = sid->data[i];

        if (!((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
              || c == '_' || c == '-'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* the sixteen DTMF keys: 0-9, *, #, and A-D (not on phone keypads) */

ngx_uint_t
ngx_http_twirt_dtmf_key(u_char c)
{
    return (c >= '0' && c <= '9') || c == '*' || c == '#'
           || (c >= 'A' && c <= 'D');
}


/* a string member of a JSON object; data NULL when it is not one */

void
ngx_http_twirt_json_get_str(json_t *obj, const char *key, ngx_str_t *out)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (!json_is_string(v)) {
        ngx_str_null(out);
        return;
    }

    out->data = (u_char *) json_string_value(v);
    out->len = json_string_length(v);
}
