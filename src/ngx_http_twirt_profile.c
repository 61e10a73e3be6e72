
/*
 * An agent profile: the fields of a Redis hash become the JSON object the
 * session is built from (ngx_http_twirt_realtime_session()):
 *
 *   instructions, greeting, language,      strings, as they are
 *   transcription_prompt
 *   voice, transcription                   checked against the tables
 *   vad                                    server or semantic (off cannot
 *                                          answer): turn_detection.type
 *   vad_threshold, vad_prefix_padding_ms,  checked as the twirt_vad
 *   vad_silence_duration_ms,               parameters are: become
 *   vad_eagerness                          turn_detection's fields
 *   var_NAME, variables (a JSON object)    "variables", for {{NAME}}
 *   tools (a JSON array)                   checked as twirt_tools files
 *                                          are: replace them
 *   transfers (a JSON object)              checked as twirt_transfer is:
 *                                          the transfer_call targets
 *
 * A field that fails its check is logged, saying why, and left out: the
 * configuration's value applies.
 */


#include "ngx_http_twirt_log.h"
#include "ngx_http_twirt_profile.h"
#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_tool.h"
#include "ngx_http_twirt_transfer.h"


typedef struct ngx_http_twirt_profile_field_s  ngx_http_twirt_profile_field_t;

typedef char *(*ngx_http_twirt_profile_field_pt)(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);


struct ngx_http_twirt_profile_field_s {
    ngx_str_t                        name;
    ngx_http_twirt_profile_field_pt  handler;
    const char                      *key;     /* where the value goes */
    ngx_conf_enum_t                 *table;   /* the valid names */
    ngx_uint_t                       turn;    /* 1: into turn_detection */
};


static char *ngx_http_twirt_profile_name(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_transcription(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_vad(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_threshold(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_ms(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_variables(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_tools(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_transfers(
    ngx_http_twirt_profile_field_t *f, ngx_str_t *value, json_t *profile,
    json_t *vars, json_t *td);
static char *ngx_http_twirt_profile_enum(ngx_str_t *value,
    ngx_conf_enum_t *table, ngx_uint_t *v);
static char *ngx_http_twirt_profile_set(json_t *obj, const char *key,
    json_t *v);


static ngx_http_twirt_profile_field_t  ngx_http_twirt_profile_fields[] = {
    { ngx_string("voice"), ngx_http_twirt_profile_name, "voice",
      ngx_http_twirt_voices, 0 },
    { ngx_string("transcription"), ngx_http_twirt_profile_transcription,
      "transcription", ngx_http_twirt_transcription_models, 0 },
    { ngx_string("vad"), ngx_http_twirt_profile_vad, "type",
      ngx_http_twirt_vad_types, 1 },
    { ngx_string("vad_threshold"), ngx_http_twirt_profile_threshold,
      "threshold", NULL, 1 },
    { ngx_string("vad_prefix_padding_ms"), ngx_http_twirt_profile_ms,
      "prefix_padding_ms", NULL, 1 },
    { ngx_string("vad_silence_duration_ms"), ngx_http_twirt_profile_ms,
      "silence_duration_ms", NULL, 1 },
    { ngx_string("vad_eagerness"), ngx_http_twirt_profile_name, "eagerness",
      ngx_http_twirt_eagerness, 1 },
    { ngx_string("variables"), ngx_http_twirt_profile_variables, NULL,
      NULL, 0 },
    { ngx_string("tools"), ngx_http_twirt_profile_tools, "tools", NULL, 0 },
    { ngx_string("transfers"), ngx_http_twirt_profile_transfers, NULL,
      NULL, 0 },
    { ngx_null_string, NULL, NULL, NULL, 0 }
};


/* the names list of a message, as long as any table's */
static u_char  ngx_http_twirt_profile_why[256];


/* pairs: ngx_keyval_t; NULL: no memory */

json_t *
ngx_http_twirt_profile_parse(ngx_log_t *log, ngx_array_t *pairs)
{
    char                            *why;
    json_t                          *profile, *vars, *td, *v;
    ngx_str_t                       *name, *value;
    ngx_uint_t                       i;
    ngx_keyval_t                    *kv;
    ngx_http_twirt_log_text_t        t;
    ngx_http_twirt_profile_field_t  *f;

    profile = json_object();
    vars = json_object();
    td = json_object();

    if (profile == NULL || vars == NULL || td == NULL) {
        goto failed;
    }

    kv = pairs->elts;

    for (i = 0; i < pairs->nelts; i++) {
        name = &kv[i].key;
        value = &kv[i].value;

        /* jansson checks UTF-8 */
        v = json_stringn((char *) value->data, value->len);

        if (v == NULL) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "twirt: agent profile field \"%V\" is not UTF-8, "
                          "ignored", ngx_http_twirt_log_str(&t, name));
            continue;
        }

        if (name->len > 4 && ngx_strncmp(name->data, "var_", 4) == 0) {
            if (json_object_setn_new(vars, (char *) name->data + 4,
                                     name->len - 4, v)
                != 0)
            {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "twirt: agent profile field \"%V\" ignored: "
                              "its name is not UTF-8",
                              ngx_http_twirt_log_str(&t, name));
            }

            continue;
        }

        for (f = ngx_http_twirt_profile_fields; f->name.len; f++) {
            if (f->name.len == name->len
                && ngx_strncmp(f->name.data, name->data, name->len) == 0)
            {
                break;
            }
        }

        if (f->handler == NULL) {
            if (name->len > 4 && ngx_strncmp(name->data, "vad_", 4) == 0) {
                json_decref(v);
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "twirt: agent profile field \"%V\" ignored: "
                              "there is no such turn detection parameter",
                              ngx_http_twirt_log_str(&t, name));
                continue;
            }

            if (json_object_setn_new(profile, (char *) name->data, name->len,
                                     v)
                != 0)
            {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "twirt: agent profile field \"%V\" ignored: "
                              "its name is not UTF-8",
                              ngx_http_twirt_log_str(&t, name));
            }

            continue;
        }

        json_decref(v);

        why = f->handler(f, value, profile, vars, td);

        if (why == NGX_CONF_ERROR) {
            goto failed;
        }

        if (why) {
            ngx_log_error(NGX_LOG_WARN, log, 0,
                          "twirt: agent profile field \"%V\" ignored: the "
                          "value %s", ngx_http_twirt_log_str(&t, name),
                          why);
        }
    }

    if (json_object_set_new(profile, "variables", vars) != 0) {
        vars = NULL;
        goto failed;
    }

    vars = NULL;

    if (json_object_size(td)) {
        if (json_object_set_new(profile, "turn_detection", td) != 0) {
            td = NULL;
            goto failed;
        }

    } else {
        json_decref(td);
    }

    return profile;

failed:

    json_decref(profile);
    json_decref(vars);
    json_decref(td);

    return NULL;
}


/*
 * The field handlers: NULL when the value was taken, NGX_CONF_ERROR on
 * no memory, else why the value was not taken.
 */

/* a name from a table: into the session (voice) or turn_detection */

static char *
ngx_http_twirt_profile_name(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    char        *why;
    ngx_uint_t   v;

    why = ngx_http_twirt_profile_enum(value, f->table, &v);
    if (why) {
        return why;
    }

    return ngx_http_twirt_profile_set(f->turn ? td : profile, f->key,
                                      json_stringn((char *) value->data,
                                                   value->len));
}


/* "off": an empty model, no transcription */

static char *
ngx_http_twirt_profile_transcription(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    char        *why;
    ngx_uint_t   v;

    why = ngx_http_twirt_profile_enum(value, f->table, &v);
    if (why) {
        return why;
    }

    return ngx_http_twirt_profile_set(profile, f->key,
                                      json_stringn((char *) value->data,
                                                   v ? value->len : 0));
}


/* turn_detection.type as the API spells it */

static char *
ngx_http_twirt_profile_vad(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    char        *why;
    ngx_str_t   *type;
    ngx_uint_t   v;

    why = ngx_http_twirt_profile_enum(value, f->table, &v);
    if (why) {
        return why;
    }

    if (v == NGX_HTTP_TWIRT_VAD_OFF) {
        /* as "twirt_vad off": nobody would commit the caller's audio */
        return "is \"off\", which would never answer the caller";
    }

    type = ngx_http_twirt_realtime_enum_name(ngx_http_twirt_vad_api_types, v);

    return ngx_http_twirt_profile_set(td, f->key,
                                      json_stringn((char *) type->data,
                                                   type->len));
}


static char *
ngx_http_twirt_profile_threshold(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    char    *why;
    double   d;

    why = ngx_http_twirt_realtime_threshold(value, &d);
    if (why) {
        return why;
    }

    return ngx_http_twirt_profile_set(td, f->key, json_real(d));
}


static char *
ngx_http_twirt_profile_ms(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    char       *why;
    ngx_int_t   ms;

    why = ngx_http_twirt_realtime_ms(value, &ms);
    if (why) {
        return why;
    }

    return ngx_http_twirt_profile_set(td, f->key, json_integer(ms));
}


/* a JSON object of variables; var_NAME fields are taken as they come */

static char *
ngx_http_twirt_profile_variables(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    json_t        *v;
    json_error_t   err;

    v = json_loadb((char *) value->data, value->len, 0, &err);

    if (!json_is_object(v)) {
        json_decref(v);
        return "is not a JSON object";
    }

    if (json_object_update(vars, v) != 0) {
        json_decref(v);
        return NGX_CONF_ERROR;
    }

    json_decref(v);

    return NULL;
}


static char *
ngx_http_twirt_profile_tools(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    u_char        *p;
    size_t         bad;
    json_t        *v;
    const char    *why;
    json_error_t   err;

    v = json_loadb((char *) value->data, value->len, JSON_REJECT_DUPLICATES,
                   &err);

    if (v == NULL) {
        return "is not JSON";
    }

    why = ngx_http_twirt_tool_check(v, &bad);

    if (why) {
        json_decref(v);

        p = ngx_snprintf(ngx_http_twirt_profile_why,
                         sizeof(ngx_http_twirt_profile_why) - 1,
                         "entry %uz %s", bad, why);
        *p = '\0';

        return (char *) ngx_http_twirt_profile_why;
    }

    return ngx_http_twirt_profile_set(profile, f->key, v);
}


static char *
ngx_http_twirt_profile_enum(ngx_str_t *value, ngx_conf_enum_t *table,
    ngx_uint_t *v)
{
    u_char  *p, *last;

    if (ngx_http_twirt_realtime_enum(table, value, v) == NGX_OK) {
        return NULL;
    }

    p = ngx_http_twirt_profile_why;
    last = p + sizeof(ngx_http_twirt_profile_why) - 1;

    p = ngx_slprintf(p, last, "is not one of ");
    p = ngx_http_twirt_realtime_enum_names(p, last, table);
    *p = '\0';

    return (char *) ngx_http_twirt_profile_why;
}


/* the transfer_call targets, checked as the directive's are */

static char *
ngx_http_twirt_profile_transfers(ngx_http_twirt_profile_field_t *f,
    ngx_str_t *value, json_t *profile, json_t *vars, json_t *td)
{
    json_t      *t;
    const char  *why;

    t = ngx_http_twirt_transfer_parse(value, &why);

    if (t == NULL) {
        ngx_snprintf(ngx_http_twirt_profile_why,
                     sizeof(ngx_http_twirt_profile_why) - 1,
                     "is invalid (%s), the configuration's transfers "
                     "apply%Z", why);
        return (char *) ngx_http_twirt_profile_why;
    }

    return ngx_http_twirt_profile_set(profile, "transfers", t);
}


static char *
ngx_http_twirt_profile_set(json_t *obj, const char *key, json_t *v)
{
    if (v == NULL || json_object_set_new(obj, key, v) != 0) {
        return NGX_CONF_ERROR;
    }

    return NULL;
}
