
/*
 * Realtime API (GA) events: the session.update we send, and the usage and
 * cost we read from response.done and transcription events.
 */


#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_twilio.h"
#include "ngx_http_twirt_template.h"
#include "ngx_http_twirt_transfer.h"


/*
 * What twirt_session_json may hold: the GA session's fields.  A field
 * twirt sets itself says why it cannot come from there (the directive
 * that sets it); objects marked nested have their keys checked too.
 */
typedef struct {
    const char                 *path;
    const char                 *owner;
    ngx_uint_t                  nested;
} ngx_http_twirt_session_field_t;


/* names of the beta interface (or never GA): the GA name, if any */
typedef struct {
    const char                 *name;
    const char                 *ga;
} ngx_http_twirt_session_beta_t;


static json_t *ngx_http_twirt_realtime_json_str(ngx_str_t *s);
static void ngx_http_twirt_realtime_profile_str(json_t *profile,
    const char *key, ngx_str_t *out);
static json_t *ngx_http_twirt_realtime_vad(ngx_http_twirt_vad_t *conf,
    json_t *profile);
static uint64_t ngx_http_twirt_realtime_json_uint(json_t *obj, const char *key);
static ngx_int_t ngx_http_twirt_realtime_usage_bounded(uint64_t *v,
    ngx_uint_t n);
static json_t *ngx_http_twirt_realtime_tool_choice(ngx_str_t *choice);
static json_t *ngx_http_twirt_realtime_truncation(
    ngx_http_twirt_loc_conf_t *conf);
static json_t *ngx_http_twirt_realtime_prompt(ngx_http_twirt_prompt_t *prompt,
    json_t *profile, json_t *parameters, ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_http_twirt_session_json_object(json_t *obj,
    const char *prefix, u_char *buf, size_t size);
static ngx_int_t ngx_http_twirt_session_json_value(const char *path,
    json_t *v, u_char *buf, size_t size);
static ngx_http_twirt_session_field_t *ngx_http_twirt_session_field(
    const char *path);


ngx_conf_enum_t  ngx_http_twirt_voices[] = {
    { ngx_string("alloy"), 0 },
    { ngx_string("ash"), 1 },
    { ngx_string("ballad"), 2 },
    { ngx_string("coral"), 3 },
    { ngx_string("echo"), 4 },
    { ngx_string("sage"), 5 },
    { ngx_string("shimmer"), 6 },
    { ngx_string("verse"), 7 },
    { ngx_string("marin"), 8 },
    { ngx_string("cedar"), 9 },
    { ngx_null_string, 0 }
};


/* "off" is a value of the directive and of a profile, not a model */
ngx_conf_enum_t  ngx_http_twirt_transcription_models[] = {
    { ngx_string("whisper-1"), 1 },
    { ngx_string("gpt-4o-transcribe"), 2 },
    { ngx_string("gpt-4o-mini-transcribe"), 3 },
    { ngx_string("off"), 0 },
    { ngx_null_string, 0 }
};


/* the directive's words and a profile's "vad" */
ngx_conf_enum_t  ngx_http_twirt_vad_types[] = {
    { ngx_string("server"), NGX_HTTP_TWIRT_VAD_SERVER },
    { ngx_string("semantic"), NGX_HTTP_TWIRT_VAD_SEMANTIC },
    { ngx_string("off"), NGX_HTTP_TWIRT_VAD_OFF },
    { ngx_null_string, 0 }
};


/* turn_detection.type as the API (and a parsed profile) spells it */
ngx_conf_enum_t  ngx_http_twirt_vad_api_types[] = {
    { ngx_string("server_vad"), NGX_HTTP_TWIRT_VAD_SERVER },
    { ngx_string("semantic_vad"), NGX_HTTP_TWIRT_VAD_SEMANTIC },
    { ngx_string("off"), NGX_HTTP_TWIRT_VAD_OFF },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_http_twirt_eagerness[] = {
    { ngx_string("low"), NGX_HTTP_TWIRT_EAGERNESS_LOW },
    { ngx_string("medium"), NGX_HTTP_TWIRT_EAGERNESS_MEDIUM },
    { ngx_string("high"), NGX_HTTP_TWIRT_EAGERNESS_HIGH },
    { ngx_string("auto"), NGX_HTTP_TWIRT_EAGERNESS_AUTO },
    { ngx_null_string, 0 }
};


ngx_conf_enum_t  ngx_http_twirt_noise_reductions[] = {
    { ngx_string("near_field"), NGX_HTTP_TWIRT_NOISE_NEAR_FIELD },
    { ngx_string("far_field"), NGX_HTTP_TWIRT_NOISE_FAR_FIELD },
    { ngx_string("off"), NGX_HTTP_TWIRT_NOISE_OFF },
    { ngx_null_string, 0 }
};


/* the words twirt_max_output_tokens takes besides a number */
ngx_conf_enum_t  ngx_http_twirt_max_output_tokens_words[] = {
    { ngx_string("inf"), NGX_HTTP_TWIRT_TOKENS_INF },
    { ngx_null_string, 0 }
};


/* the words twirt_tool_choice takes besides a function's name */
ngx_conf_enum_t  ngx_http_twirt_tool_choices[] = {
    { ngx_string("auto"), 1 },
    { ngx_string("none"), 2 },
    { ngx_string("required"), 3 },
    { ngx_null_string, 0 }
};


/* "retention_ratio" takes its ratio: retention_ratio=0.8 */
ngx_conf_enum_t  ngx_http_twirt_truncations[] = {
    { ngx_string("auto"), NGX_HTTP_TWIRT_TRUNCATION_AUTO },
    { ngx_string("disabled"), NGX_HTTP_TWIRT_TRUNCATION_DISABLED },
    { ngx_string("retention_ratio"), NGX_HTTP_TWIRT_TRUNCATION_RATIO },
    { ngx_null_string, 0 }
};


static ngx_http_twirt_session_field_t  ngx_http_twirt_session_fields[] = {
    { "type", "is always \"realtime\"", 0 },
    { "model", "is set by \"twirt_model\"", 0 },
    { "instructions", "is set by \"twirt_instructions\"", 0 },
    { "output_modalities",
      "is always [\"audio\"]: the caller must hear the model", 0 },
    { "audio", NULL, 1 },
    { "audio.input", NULL, 1 },
    { "audio.input.format",
      "is always audio/pcmu: Twilio's audio passes through as it is", 0 },
    { "audio.input.noise_reduction", "is set by \"twirt_noise_reduction\"",
      0 },
    { "audio.input.transcription",
      "is set by \"twirt_transcription\" and "
      "\"twirt_transcription_prompt\"", 0 },
    { "audio.input.turn_detection", "is set by \"twirt_vad\"", 0 },
    { "audio.output", NULL, 1 },
    { "audio.output.format",
      "is always audio/pcmu: Twilio's audio passes through as it is", 0 },
    { "audio.output.voice", "is set by \"twirt_voice\"", 0 },
    { "audio.output.speed", "is set by \"twirt_speed\"", 0 },
    { "tools", "is set by \"twirt_tools\", \"twirt_end_call\" and "
      "\"twirt_transfer\"", 0 },
    { "tool_choice", "is set by \"twirt_tool_choice\"", 0 },
    { "max_output_tokens", "is set by \"twirt_max_output_tokens\"", 0 },
    { "truncation", "is set by \"twirt_truncation\"", 0 },
    { "prompt", "is set by \"twirt_prompt\"", 0 },
    { "tracing", NULL, 0 },
    { "include", NULL, 0 },
    { NULL, NULL, 0 }
};


static ngx_http_twirt_session_beta_t  ngx_http_twirt_session_beta[] = {
    { "voice", "audio.output.voice" },
    { "speed", "audio.output.speed" },
    { "input_audio_format", "audio.input.format" },
    { "output_audio_format", "audio.output.format" },
    { "turn_detection", "audio.input.turn_detection" },
    { "input_audio_transcription", "audio.input.transcription" },
    { "input_audio_noise_reduction", "audio.input.noise_reduction" },
    { "modalities", "output_modalities" },
    { "max_response_output_tokens", "max_output_tokens" },
    { "temperature", NULL },
    { NULL, NULL }
};


/*
 * The GA shape: audio/pcmu both ways, so that Twilio's payloads pass
 * through untouched.  Never beta fields, never "temperature".
 */

json_t *
ngx_http_twirt_realtime_session(ngx_http_twirt_loc_conf_t *conf,
    ngx_str_t *instructions, json_t *profile, json_t *parameters,
    ngx_pool_t *pool, ngx_log_t *log)
{
    json_t      *ev, *session, *audio, *input, *output, *tools, *tool, *t;
    ngx_str_t    voice, transcription, language, prompt, *name;

    ev = json_object();
    session = json_object();
    audio = json_object();
    input = json_object();
    output = json_object();
    tools = json_array();

    if (ev == NULL || session == NULL || audio == NULL || input == NULL
        || output == NULL || tools == NULL)
    {
        goto failed;
    }

    json_object_set_new(ev, "type", json_string("session.update"));
    json_object_set_new(ev, "event_id",
                        json_string(NGX_HTTP_TWIRT_SESSION_EVENT));

    json_object_set_new(session, "type", json_string("realtime"));
    json_object_set_new(session, "model",
                        ngx_http_twirt_realtime_json_str(&conf->model));

    if (instructions->len) {
        json_object_set_new(session, "instructions",
                            ngx_http_twirt_realtime_json_str(instructions));
    }

    json_object_set_new(session, "output_modalities",
                        json_pack("[s]", "audio"));

    json_object_set_new(input, "format", json_pack("{s:s}", "type",
                                                   "audio/pcmu"));

    if (conf->noise_reduction == NGX_HTTP_TWIRT_NOISE_OFF) {
        json_object_set_new(input, "noise_reduction", json_null());

    } else {
        name = ngx_http_twirt_realtime_enum_name(
                   ngx_http_twirt_noise_reductions, conf->noise_reduction);
        json_object_set_new(input, "noise_reduction",
                            json_pack("{s:s%}", "type", name->data,
                                      name->len));
    }

    /* an agent profile overrides the configuration */

    voice = conf->voice;
    transcription = conf->transcription;
    language = conf->language;

    ngx_http_twirt_realtime_profile_str(profile, "voice", &voice);
    ngx_http_twirt_realtime_profile_str(profile, "transcription",
                                        &transcription);
    ngx_http_twirt_realtime_profile_str(profile, "language", &language);

    prompt = conf->transcription_prompt;
    ngx_http_twirt_realtime_profile_str(profile, "transcription_prompt",
                                        &prompt);

    if (transcription.len) {
        t = json_object();
        json_object_set_new(t, "model",
                            ngx_http_twirt_realtime_json_str(&transcription));
        if (language.len) {
            json_object_set_new(t, "language",
                                ngx_http_twirt_realtime_json_str(&language));
        }

        if (prompt.len) {
            json_object_set_new(t, "prompt",
                                ngx_http_twirt_realtime_json_str(&prompt));
        }

        json_object_set_new(input, "transcription", t);
    }

    t = ngx_http_twirt_realtime_vad(&conf->vad,
                                    json_object_get(profile,
                                                    "turn_detection"));
    if (t == NULL) {
        goto failed;
    }

    json_object_set_new(input, "turn_detection", t);

    json_object_set_new(output, "format", json_pack("{s:s}", "type",
                                                    "audio/pcmu"));
    json_object_set_new(output, "voice",
                        ngx_http_twirt_realtime_json_str(&voice));

    if (conf->speed >= 0) {
        json_object_set_new(output, "speed", json_real(conf->speed));
    }

    json_object_set_new(audio, "input", input);
    json_object_set_new(audio, "output", output);
    json_object_set_new(session, "audio", audio);

    if (conf->end_call) {
        tool = json_pack("{s:s,s:s,s:s,s:{s:s,s:{}}}",
                         "type", "function",
                         "name", "end_call",
                         "description",
                         "End the phone call. Call it after you have said "
                         "goodbye; the caller hears the rest of your last "
                         "sentence first.",
                         "parameters", "type", "object", "properties");
        json_array_append_new(tools, tool);
    }

    /* the agent profile's tools replace the configuration's */

    t = json_object_get(profile, "tools");

    if (t || conf->tools) {
        json_array_extend(tools, t ? t : conf->tools);
    }

    tool = ngx_http_twirt_transfer_tool(
               ngx_http_twirt_transfer_targets(conf, profile));

    if (tool) {
        json_array_append_new(tools, tool);
    }

    if (json_array_size(tools)) {
        json_object_set_new(session, "tools", tools);
        json_object_set_new(session, "tool_choice",
                            ngx_http_twirt_realtime_tool_choice(
                                &conf->tool_choice));

    } else {
        json_decref(tools);
    }

    tools = NULL;

    if (conf->max_output_tokens == NGX_HTTP_TWIRT_TOKENS_INF) {
        json_object_set_new(session, "max_output_tokens", json_string("inf"));

    } else {
        json_object_set_new(session, "max_output_tokens",
                            json_integer(conf->max_output_tokens));
    }

    json_object_set_new(session, "truncation",
                        ngx_http_twirt_realtime_truncation(conf));

    if (conf->prompt) {
        t = ngx_http_twirt_realtime_prompt(conf->prompt, profile, parameters,
                                           pool, log);
        if (t == NULL) {
            json_decref(session);
            json_decref(ev);
            return NULL;
        }

        json_object_set_new(session, "prompt", t);
    }

    if (conf->session_json) {
        json_object_update_recursive(session, conf->session_json);
    }

    json_object_set_new(ev, "session", session);

    return ev;

failed:

    json_decref(ev);
    json_decref(session);
    json_decref(audio);
    json_decref(input);
    json_decref(output);
    json_decref(tools);

    return NULL;
}


/*
 * The greeting's response.create: response.instructions replace the
 * session's for that response, so they carry the agent's instructions
 * and, last, the greeting to say as written.
 */

ngx_int_t
ngx_http_twirt_realtime_greeting(ngx_pool_t *pool, ngx_str_t *instructions,
    ngx_str_t *greeting, ngx_str_t *out)
{
    u_char  *p;
    size_t   len;

    static ngx_str_t  line = ngx_string(
        "Start the call now: greet the caller first, with the greeting "
        "below word for word, then listen. Say exactly: ");

    len = instructions->len + sizeof("\n\n") - 1 + line.len + greeting->len;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;

    if (instructions->len) {
        p = ngx_cpymem(p, instructions->data, instructions->len);
        *p++ = '\n';
        *p++ = '\n';
    }

    p = ngx_cpymem(p, line.data, line.len);
    p = ngx_cpymem(p, greeting->data, greeting->len);

    out->len = p - out->data;

    return NGX_OK;
}


/* "auto", "none", "required", or a function: {"type":"function",...} */

static json_t *
ngx_http_twirt_realtime_tool_choice(ngx_str_t *choice)
{
    ngx_uint_t  v;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_tool_choices, choice, &v)
        == NGX_OK)
    {
        return ngx_http_twirt_realtime_json_str(choice);
    }

    return json_pack("{s:s,s:s%}", "type", "function",
                     "name", choice->data, choice->len);
}


static json_t *
ngx_http_twirt_realtime_truncation(ngx_http_twirt_loc_conf_t *conf)
{
    if (conf->truncation == NGX_HTTP_TWIRT_TRUNCATION_RATIO) {
        return json_pack("{s:s,s:f}", "type", "retention_ratio",
                         "retention_ratio", conf->retention_ratio);
    }

    return ngx_http_twirt_realtime_json_str(ngx_http_twirt_realtime_enum_name(
                                            ngx_http_twirt_truncations,
                                            conf->truncation));
}


/*
 * session.prompt: {id, version, variables}, each variable's value filled
 * like the instructions: the profile's variables, then the stream's
 * parameters.  NULL: no memory.
 */

static json_t *
ngx_http_twirt_realtime_prompt(ngx_http_twirt_prompt_t *prompt,
    json_t *profile, json_t *parameters, ngx_pool_t *pool, ngx_log_t *log)
{
    json_t        *p, *vars, *from[2];
    ngx_str_t      value;
    ngx_uint_t     i, n;
    ngx_keyval_t  *kv;

    p = json_object();
    vars = json_object();

    if (p == NULL || vars == NULL) {
        goto failed;
    }

    n = 0;

    if (profile) {
        from[n++] = json_object_get(profile, "variables");
    }

    from[n++] = parameters;

    kv = prompt->variables ? prompt->variables->elts : NULL;

    for (i = 0; prompt->variables && i < prompt->variables->nelts; i++) {
        if (ngx_http_twirt_template(pool, log, &kv[i].value, from, n, &value)
            != NGX_OK
            || json_object_setn_new(vars, (char *) kv[i].key.data,
                                    kv[i].key.len,
                                    ngx_http_twirt_realtime_json_str(&value))
               != 0)
        {
            goto failed;
        }
    }

    if (json_object_set_new(p, "id",
                            ngx_http_twirt_realtime_json_str(&prompt->id))
        != 0)
    {
        goto failed;
    }

    if (prompt->version.len
        && json_object_set_new(p, "version",
                               ngx_http_twirt_realtime_json_str(
                                   &prompt->version))
           != 0)
    {
        goto failed;
    }

    if (json_object_size(vars)) {
        if (json_object_set_new(p, "variables", vars) != 0) {
            vars = NULL;
            goto failed;
        }

    } else {
        json_decref(vars);
    }

    return p;

failed:

    json_decref(p);
    json_decref(vars);

    return NULL;
}


/* the usage of a response.done: cached counts are subsets of the inputs */

/*
 * Usage is the Realtime side's word: a count no session can reach (more
 * than NGX_HTTP_TWIRT_USAGE_MAX tokens in one event) is refused whole,
 * and the sums saturate instead of wrapping.
 */

ngx_int_t
ngx_http_twirt_realtime_usage(json_t *usage, ngx_http_twirt_usage_t *u)
{
    json_t    *in, *out, *cached;
    uint64_t   v[7];

    if (!json_is_object(usage)) {
        return NGX_DECLINED;
    }

    in = json_object_get(usage, "input_token_details");
    out = json_object_get(usage, "output_token_details");
    cached = json_object_get(in, "cached_tokens_details");

    v[0] = ngx_http_twirt_realtime_json_uint(usage, "total_tokens");
    v[1] = ngx_http_twirt_realtime_json_uint(in, "text_tokens");
    v[2] = ngx_http_twirt_realtime_json_uint(in, "audio_tokens");
    v[3] = ngx_http_twirt_realtime_json_uint(cached, "text_tokens");
    v[4] = ngx_http_twirt_realtime_json_uint(cached, "audio_tokens");
    v[5] = ngx_http_twirt_realtime_json_uint(out, "text_tokens");
    v[6] = ngx_http_twirt_realtime_json_uint(out, "audio_tokens");

    if (ngx_http_twirt_realtime_usage_bounded(v, 7) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_twirt_add_sat(&u->total, v[0]);
    ngx_http_twirt_add_sat(&u->text_in, v[1]);
    ngx_http_twirt_add_sat(&u->audio_in, v[2]);
    ngx_http_twirt_add_sat(&u->cached_text_in, v[3]);
    ngx_http_twirt_add_sat(&u->cached_audio_in, v[4]);
    ngx_http_twirt_add_sat(&u->text_out, v[5]);
    ngx_http_twirt_add_sat(&u->audio_out, v[6]);

    return NGX_OK;
}


/*
 * Input transcription is billed on its own: in tokens, or, for
 * whisper-1, by the duration of the audio ({"type":"duration",
 * "seconds":2.5}), bounded too.
 */

ngx_int_t
ngx_http_twirt_realtime_transcription_usage(json_t *usage,
    ngx_http_twirt_usage_t *u)
{
    json_t    *type, *seconds;
    double     d;
    uint64_t   v[3];

    if (!json_is_object(usage)) {
        return NGX_DECLINED;
    }

    type = json_object_get(usage, "type");

    if (json_is_string(type)
        && ngx_strcmp(json_string_value(type), "duration") == 0)
    {
        seconds = json_object_get(usage, "seconds");

        if (!json_is_number(seconds)) {
            return NGX_DECLINED;
        }

        d = json_number_value(seconds);

        /* also refuses NaN */
        if (!(d >= 0.0 && d <= NGX_HTTP_TWIRT_USAGE_SECONDS_MAX)) {
            return NGX_ERROR;
        }

        ngx_http_twirt_add_sat(&u->transcribe_ms, (uint64_t) (d * 1000.0));

        return NGX_OK;
    }

    v[0] = ngx_http_twirt_realtime_json_uint(usage, "input_tokens");
    v[1] = ngx_http_twirt_realtime_json_uint(usage, "output_tokens");
    v[2] = ngx_http_twirt_realtime_json_uint(usage, "total_tokens");

    if (ngx_http_twirt_realtime_usage_bounded(v, 3) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_twirt_add_sat(&u->transcribe_in, v[0]);
    ngx_http_twirt_add_sat(&u->transcribe_out, v[1]);
    ngx_http_twirt_add_sat(&u->total, v[2]);

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_realtime_usage_bounded(uint64_t *v, ngx_uint_t n)
{
    ngx_uint_t  i;

    for (i = 0; i < n; i++) {
        if (v[i] > NGX_HTTP_TWIRT_USAGE_MAX) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


double
ngx_http_twirt_realtime_cost(ngx_http_twirt_prices_t *p,
    ngx_http_twirt_usage_t *u)
{
    double  usd;

    usd = (double) (u->audio_in - ngx_min(u->audio_in, u->cached_audio_in))
          * p->audio_in
          + (double) u->cached_audio_in * p->cached_audio_in
          + (double) (u->text_in - ngx_min(u->text_in, u->cached_text_in))
            * p->text_in
          + (double) u->cached_text_in * p->cached_text_in
          + (double) u->audio_out * p->audio_out
          + (double) u->text_out * p->text_out
          + (double) u->transcribe_in * p->transcribe_in
          + (double) u->transcribe_out * p->transcribe_out;

    return usd / 1000000.0
           + (double) u->transcribe_ms / 60000.0 * p->transcribe_minute;
}


/*
 * turn_detection: the configuration's, with an agent profile's fields
 * over it.  A profile that changes the type keeps nothing of the other
 * type's parameters: semantic VAD has no threshold, prefix padding or
 * silence duration, server VAD no eagerness.
 */

static json_t *
ngx_http_twirt_realtime_vad(ngx_http_twirt_vad_t *conf, json_t *profile)
{
    json_t                *td, *v;
    ngx_str_t              s, *name;
    ngx_uint_t             type;
    ngx_http_twirt_vad_t   vad;

    vad = *conf;

    if (json_is_object(profile)) {

        v = json_object_get(profile, "type");

        if (json_is_string(v)) {
            s.data = (u_char *) json_string_value(v);
            s.len = json_string_length(v);

            if (ngx_http_twirt_realtime_enum(ngx_http_twirt_vad_api_types,
                                             &s, &type)
                != NGX_OK)
            {
                type = vad.type;
            }

        } else {
            /* parameters alone turn an "off" configuration into server */
            type = (vad.type == NGX_HTTP_TWIRT_VAD_OFF)
                   ? NGX_HTTP_TWIRT_VAD_SERVER : vad.type;
        }

        if (type != vad.type) {
            vad.type = type;
            vad.threshold = -1;
            vad.prefix_padding_ms = -1;
            vad.silence_duration_ms = -1;
            vad.eagerness = NGX_HTTP_TWIRT_EAGERNESS_UNSET;
        }

        v = json_object_get(profile, "threshold");
        if (json_is_number(v)) {
            vad.threshold = json_number_value(v);
        }

        v = json_object_get(profile, "prefix_padding_ms");
        if (json_is_integer(v)) {
            vad.prefix_padding_ms = (ngx_int_t) json_integer_value(v);
        }

        v = json_object_get(profile, "silence_duration_ms");
        if (json_is_integer(v)) {
            vad.silence_duration_ms = (ngx_int_t) json_integer_value(v);
        }

        v = json_object_get(profile, "eagerness");
        if (json_is_string(v)) {
            s.data = (u_char *) json_string_value(v);
            s.len = json_string_length(v);

            (void) ngx_http_twirt_realtime_enum(ngx_http_twirt_eagerness, &s,
                                                &vad.eagerness);
        }
    }

    if (vad.type == NGX_HTTP_TWIRT_VAD_OFF) {
        return json_null();
    }

    name = ngx_http_twirt_realtime_enum_name(ngx_http_twirt_vad_api_types,
                                             vad.type);

    td = json_pack("{s:s%,s:b,s:b}", "type", name->data, name->len,
                   "create_response", (int) vad.create_response,
                   "interrupt_response", (int) vad.interrupt_response);
    if (td == NULL) {
        return NULL;
    }

    if (vad.type == NGX_HTTP_TWIRT_VAD_SEMANTIC) {
        if (vad.eagerness != NGX_HTTP_TWIRT_EAGERNESS_UNSET) {
            name = ngx_http_twirt_realtime_enum_name(ngx_http_twirt_eagerness,
                                                     vad.eagerness);
            json_object_set_new(td, "eagerness",
                                ngx_http_twirt_realtime_json_str(name));
        }

        return td;
    }

    if (vad.threshold >= 0) {
        json_object_set_new(td, "threshold", json_real(vad.threshold));
    }

    if (vad.prefix_padding_ms >= 0) {
        json_object_set_new(td, "prefix_padding_ms",
                            json_integer(vad.prefix_padding_ms));
    }

    if (vad.silence_duration_ms >= 0) {
        json_object_set_new(td, "silence_duration_ms",
                            json_integer(vad.silence_duration_ms));
    }

    return td;
}


/* NGX_OK and the value when name is in the table, else NGX_DECLINED */

ngx_int_t
ngx_http_twirt_realtime_enum(ngx_conf_enum_t *table, ngx_str_t *name,
    ngx_uint_t *value)
{
    for ( /* void */ ; table->name.len; table++) {
        if (table->name.len == name->len
            && ngx_strncmp(table->name.data, name->data, name->len) == 0)
        {
            *value = table->value;
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


ngx_str_t *
ngx_http_twirt_realtime_enum_name(ngx_conf_enum_t *table, ngx_uint_t value)
{
    ngx_conf_enum_t  *e;

    for (e = table; e->name.len; e++) {
        if (e->value == value) {
            return &e->name;
        }
    }

    /* values come from the same table: not reached */
    return &table->name;
}


/* "a, b, c": for messages that say what is valid */

u_char *
ngx_http_twirt_realtime_enum_names(u_char *buf, u_char *last,
    ngx_conf_enum_t *table)
{
    u_char  *p;

    p = buf;

    for ( /* void */ ; table->name.len; table++) {
        p = ngx_slprintf(p, last, "%s%V", p == buf ? "" : ", ",
                         &table->name);
    }

    return p;
}


/*
 * The checks below return NULL when the value is valid, else why not,
 * to follow the value's name in a message.
 */

char *
ngx_http_twirt_realtime_threshold(ngx_str_t *s, double *threshold)
{
    if (ngx_http_twirt_realtime_decimal(s, 0.0, 1.0, threshold) != NULL) {
        return "is not a number from 0 to 1";
    }

    return NULL;
}


char *
ngx_http_twirt_realtime_speed(ngx_str_t *s, double *speed)
{
    if (ngx_http_twirt_realtime_decimal(s, 0.25, 1.5, speed) != NULL) {
        return "is not a number from 0.25 to 1.5";
    }

    return NULL;
}


/* a function's name, as the API takes it: a-z, A-Z, 0-9, '_' and '-' */

char *
ngx_http_twirt_realtime_name(ngx_str_t *s)
{
    ngx_uint_t  i;
    u_char      c;

    if (s->len == 0 || s->len > 64) {
        return "is not 1 to 64 characters";
    }

    for (i = 0; i < s->len; i++) {
        c = s->data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '-'))
        {
            return "has characters other than letters, digits, '_' and '-'";
        }
    }

    return NULL;
}


/* digits and one point, from min to max: no signs, exponents, "nan" */

char *
ngx_http_twirt_realtime_decimal(ngx_str_t *s, double min, double max,
    double *d)
{
    char        buf[32], *end;
    double      v;
    ngx_uint_t  i, dot;

    if (s->len == 0 || s->len >= sizeof(buf)) {
        return "";
    }

    dot = 0;

    for (i = 0; i < s->len; i++) {
        if (s->data[i] == '.' && dot++ == 0) {
            continue;
        }

        if (s->data[i] < '0' || s->data[i] > '9') {
            return "";
        }
    }

    ngx_memcpy(buf, s->data, s->len);
    buf[s->len] = '\0';

    v = strtod(buf, &end);

    if (end != buf + s->len || v < min || v > max) {
        return "";
    }

    *d = v;

    return NULL;
}


char *
ngx_http_twirt_realtime_ms(ngx_str_t *s, ngx_int_t *ms)
{
    ngx_int_t  n;

    n = ngx_atoi(s->data, s->len);

    if (n == NGX_ERROR || n > 10000) {
        return "is not a whole number of milliseconds from 0 to 10000";
    }

    *ms = n;

    return NULL;
}


char *
ngx_http_twirt_realtime_max_output_tokens(ngx_str_t *s, ngx_int_t *n)
{
    ngx_int_t   v;
    ngx_uint_t  word;

    if (ngx_http_twirt_realtime_enum(ngx_http_twirt_max_output_tokens_words,
                                     s, &word)
        == NGX_OK)
    {
        *n = (ngx_int_t) word;
        return NULL;
    }

    v = ngx_atoi(s->data, s->len);

    if (v == NGX_ERROR || v < 1 || v > 4096) {
        return "is not 1 to 4096 or \"inf\"";
    }

    *n = v;

    return NULL;
}


/*
 * twirt_session_json against the GA session: NGX_OK, or NGX_ERROR with
 * why in buf (a beta name is told its GA name).
 */

ngx_int_t
ngx_http_twirt_realtime_session_json(json_t *json, u_char *buf, size_t size)
{
    return ngx_http_twirt_session_json_object(json, "", buf, size);
}


static ngx_int_t
ngx_http_twirt_session_json_object(json_t *obj, const char *prefix,
    u_char *buf, size_t size)
{
    u_char                          path[128], *p;
    json_t                         *v;
    const char                     *key;
    ngx_http_twirt_session_beta_t  *b;
    ngx_http_twirt_session_field_t *f, *ga;

    json_object_foreach(obj, key, v) {

        p = ngx_snprintf(path, sizeof(path) - 1, "%s%s%s", prefix,
                         *prefix ? "." : "", key);
        *p = '\0';

        f = ngx_http_twirt_session_field((char *) path);

        if (f == NULL) {
            for (b = ngx_http_twirt_session_beta; b->name; b++) {
                if (*prefix == '\0' && ngx_strcmp(b->name, key) == 0) {
                    break;
                }
            }

            if (b->name == NULL) {
                p = ngx_snprintf(buf, size - 1, "\"%s\" is not a field of "
                                 "the GA session", path);

            } else if (b->ga == NULL) {
                p = ngx_snprintf(buf, size - 1, "\"%s\" is a beta field "
                                 "that the GA session does not have", path);

            } else {
                ga = ngx_http_twirt_session_field(b->ga);
                p = ngx_snprintf(buf, size - 1, "\"%s\" is a beta name, "
                                 "the GA session's is \"%s\"%s%s", path,
                                 b->ga, ga->owner ? ", which " : "",
                                 ga->owner ? ga->owner : "");
            }

            *p = '\0';
            return NGX_ERROR;
        }

        if (f->owner) {
            p = ngx_snprintf(buf, size - 1, "\"%s\" %s", path, f->owner);
            *p = '\0';
            return NGX_ERROR;
        }

        if (f->nested) {
            if (!json_is_object(v)) {
                p = ngx_snprintf(buf, size - 1, "\"%s\" is not an object",
                                 path);
                *p = '\0';
                return NGX_ERROR;
            }

            if (ngx_http_twirt_session_json_object(v, (char *) path, buf,
                                                   size)
                != NGX_OK)
            {
                return NGX_ERROR;
            }

            continue;
        }

        if (ngx_http_twirt_session_json_value((char *) path, v, buf, size)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/* the values of the fields left to twirt_session_json, as GA takes them */

static ngx_int_t
ngx_http_twirt_session_json_value(const char *path, json_t *v, u_char *buf,
    size_t size)
{
    u_char      *p;
    size_t       i;
    json_t      *e;
    const char  *key, *why;

    why = NULL;

    if (ngx_strcmp(path, "include") == 0) {
        if (!json_is_array(v)) {
            why = "is not an array";
        }

        json_array_foreach(v, i, e) {
            if (!json_is_string(e)
                || ngx_strcmp(json_string_value(e),
                              "item.input_audio_transcription.logprobs")
                   != 0)
            {
                why = "may only hold "
                      "\"item.input_audio_transcription.logprobs\"";
            }
        }

    } else { /* tracing: "auto", null or {workflow_name, group_id, ...} */

        if (json_is_string(v)) {
            if (ngx_strcmp(json_string_value(v), "auto") != 0) {
                why = "is not \"auto\", null or an object";
            }

        } else if (json_is_object(v)) {
            json_object_foreach(v, key, e) {
                if (!((ngx_strcmp(key, "workflow_name") == 0
                       || ngx_strcmp(key, "group_id") == 0)
                      && json_is_string(e))
                    && !(ngx_strcmp(key, "metadata") == 0
                         && json_is_object(e)))
                {
                    why = "takes only the strings \"workflow_name\" and "
                          "\"group_id\" and the object \"metadata\"";
                }
            }

        } else if (!json_is_null(v)) {
            why = "is not \"auto\", null or an object";
        }
    }

    if (why == NULL) {
        return NGX_OK;
    }

    p = ngx_snprintf(buf, size - 1, "\"%s\" %s", path, why);
    *p = '\0';

    return NGX_ERROR;
}


static ngx_http_twirt_session_field_t *
ngx_http_twirt_session_field(const char *path)
{
    ngx_http_twirt_session_field_t  *f;

    for (f = ngx_http_twirt_session_fields; f->path; f++) {
        if (ngx_strcmp(f->path, path) == 0) {
            return f;
        }
    }

    return NULL;
}


/* a profile's value replaces the configuration's */

static void
ngx_http_twirt_realtime_profile_str(json_t *profile, const char *key,
    ngx_str_t *out)
{
    ngx_str_t  v;

    ngx_http_twirt_json_get_str(profile, key, &v);

    if (v.data) {
        *out = v;
    }
}


static json_t *
ngx_http_twirt_realtime_json_str(ngx_str_t *s)
{
    return json_stringn((const char *) s->data, s->len);
}


static uint64_t
ngx_http_twirt_realtime_json_uint(json_t *obj, const char *key)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }

    return (uint64_t) json_integer_value(v);
}
