
/*
 * Realtime API (GA) events: the session.update we send, and the usage and
 * cost we read from response.done and transcription events.
 */


#include "ngx_http_twirt_realtime.h"
#include "ngx_http_twirt_twilio.h"


static json_t *ngx_http_twirt_json_str(ngx_str_t *s);
static void ngx_http_twirt_profile_str(json_t *profile, const char *key,
    ngx_str_t *out);
static uint64_t ngx_http_twirt_json_uint(json_t *obj, const char *key);
static ngx_int_t ngx_http_twirt_usage_bounded(uint64_t *v, ngx_uint_t n);
static ngx_int_t ngx_http_twirt_in_list(ngx_str_t *s, const char **list);


static const char  *ngx_http_twirt_voices[] = {
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse",
    "marin", "cedar", NULL
};


static const char  *ngx_http_twirt_transcription_models[] = {
    "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe", NULL
};


/*
 * The GA shape: audio/pcmu both ways, so that Twilio's payloads pass
 * through untouched.  Never beta fields, never "temperature".
 */

json_t *
ngx_http_twirt_realtime_session(ngx_http_twirt_loc_conf_t *conf,
    ngx_str_t *instructions, json_t *profile)
{
    json_t      *ev, *session, *audio, *input, *output, *tools, *tool, *t, *v;
    ngx_str_t    voice, transcription, language;
    const char  *type;

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
    json_object_set_new(session, "model", ngx_http_twirt_json_str(&conf->model));

    if (instructions->len) {
        json_object_set_new(session, "instructions",
                            ngx_http_twirt_json_str(instructions));
    }

    json_object_set_new(session, "output_modalities",
                        json_pack("[s]", "audio"));

    json_object_set_new(input, "format", json_pack("{s:s}", "type",
                                                   "audio/pcmu"));

    if (conf->noise_reduction.len == 3
        && ngx_strncmp(conf->noise_reduction.data, "off", 3) == 0)
    {
        json_object_set_new(input, "noise_reduction", json_null());

    } else {
        t = json_object();
        json_object_set_new(t, "type",
                            ngx_http_twirt_json_str(&conf->noise_reduction));
        json_object_set_new(input, "noise_reduction", t);
    }

    /* an agent profile overrides the configuration */

    voice = conf->voice;
    transcription = conf->transcription;
    language = conf->language;

    ngx_http_twirt_profile_str(profile, "voice", &voice);
    ngx_http_twirt_profile_str(profile, "transcription", &transcription);
    ngx_http_twirt_profile_str(profile, "language", &language);

    if (transcription.len) {
        t = json_object();
        json_object_set_new(t, "model",
                            ngx_http_twirt_json_str(&transcription));
        if (language.len) {
            json_object_set_new(t, "language",
                                ngx_http_twirt_json_str(&language));
        }

        json_object_set_new(input, "transcription", t);
    }

    v = json_object_get(profile, "turn_detection");

    if (json_is_object(v)) {
        t = json_deep_copy(json_is_object(conf->turn_detection)
                           ? conf->turn_detection : v);
        json_object_update(t, v);

        type = json_string_value(json_object_get(t, "type"));

        if (type == NULL) {
            json_object_set_new(t, "type", json_string("server_vad"));

        } else if (ngx_strcmp(type, "off") == 0) {
            json_decref(t);
            t = json_null();

        } else if (ngx_strcmp(type, "semantic_vad") == 0) {
            json_object_del(t, "threshold");
            json_object_del(t, "prefix_padding_ms");
            json_object_del(t, "silence_duration_ms");
        }

        json_object_set_new(input, "turn_detection", t);

    } else if (conf->turn_detection) {
        json_object_set(input, "turn_detection", conf->turn_detection);
    }

    json_object_set_new(output, "format", json_pack("{s:s}", "type",
                                                    "audio/pcmu"));
    json_object_set_new(output, "voice", ngx_http_twirt_json_str(&voice));

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

    if (conf->tools) {
        json_array_extend(tools, conf->tools);
    }

    if (json_array_size(tools)) {
        json_object_set_new(session, "tools", tools);
        json_object_set_new(session, "tool_choice", json_string("auto"));

    } else {
        json_decref(tools);
    }

    tools = NULL;

    if (conf->max_output_tokens.len == 3
        && ngx_strncmp(conf->max_output_tokens.data, "inf", 3) == 0)
    {
        json_object_set_new(session, "max_output_tokens", json_string("inf"));

    } else {
        json_object_set_new(session, "max_output_tokens",
                            json_integer(ngx_atoi(conf->max_output_tokens.data,
                                                  conf->max_output_tokens.len)));
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

    v[0] = ngx_http_twirt_json_uint(usage, "total_tokens");
    v[1] = ngx_http_twirt_json_uint(in, "text_tokens");
    v[2] = ngx_http_twirt_json_uint(in, "audio_tokens");
    v[3] = ngx_http_twirt_json_uint(cached, "text_tokens");
    v[4] = ngx_http_twirt_json_uint(cached, "audio_tokens");
    v[5] = ngx_http_twirt_json_uint(out, "text_tokens");
    v[6] = ngx_http_twirt_json_uint(out, "audio_tokens");

    if (ngx_http_twirt_usage_bounded(v, 7) != NGX_OK) {
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


/* input transcription is billed on its own */

ngx_int_t
ngx_http_twirt_realtime_transcription_usage(json_t *usage,
    ngx_http_twirt_usage_t *u)
{
    uint64_t  v[3];

    if (!json_is_object(usage)) {
        return NGX_DECLINED;
    }

    v[0] = ngx_http_twirt_json_uint(usage, "input_tokens");
    v[1] = ngx_http_twirt_json_uint(usage, "output_tokens");
    v[2] = ngx_http_twirt_json_uint(usage, "total_tokens");

    if (ngx_http_twirt_usage_bounded(v, 3) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_http_twirt_add_sat(&u->transcribe_in, v[0]);
    ngx_http_twirt_add_sat(&u->transcribe_out, v[1]);
    ngx_http_twirt_add_sat(&u->total, v[2]);

    return NGX_OK;
}


static ngx_int_t
ngx_http_twirt_usage_bounded(uint64_t *v, ngx_uint_t n)
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

    return usd / 1000000.0;
}


ngx_int_t
ngx_http_twirt_realtime_voice_valid(ngx_str_t *voice)
{
    return ngx_http_twirt_in_list(voice, ngx_http_twirt_voices);
}


ngx_int_t
ngx_http_twirt_realtime_transcription_valid(ngx_str_t *model)
{
    return ngx_http_twirt_in_list(model, ngx_http_twirt_transcription_models);
}


static ngx_int_t
ngx_http_twirt_in_list(ngx_str_t *s, const char **list)
{
    for ( /* void */ ; *list; list++) {
        if (ngx_strlen(*list) == s->len
            && ngx_strncmp(*list, s->data, s->len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* a profile's value replaces the configuration's */

static void
ngx_http_twirt_profile_str(json_t *profile, const char *key, ngx_str_t *out)
{
    ngx_str_t  v;

    ngx_http_twirt_json_get_str(profile, key, &v);

    if (v.data) {
        *out = v;
    }
}


static json_t *
ngx_http_twirt_json_str(ngx_str_t *s)
{
    return json_stringn((const char *) s->data, s->len);
}


static uint64_t
ngx_http_twirt_json_uint(json_t *obj, const char *key)
{
    json_t  *v;

    v = json_object_get(obj, key);

    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        return 0;
    }

    return (uint64_t) json_integer_value(v);
}
