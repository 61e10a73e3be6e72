
/*
 * {{name}} placeholders in instructions and greetings, filled from JSON
 * objects of string values searched in order (profile variables, then
 * the call's parameters).  A name without a value becomes empty with a
 * warning; a "{{" that does not open a placeholder is dropped, so that no
 * template syntax ever reaches the model.
 */


#include "ngx_http_twirt_template.h"


static json_t *ngx_http_twirt_template_lookup(json_t **vars,
    ngx_uint_t nvars, u_char *name, size_t len);


ngx_int_t
ngx_http_twirt_template(ngx_pool_t *pool, ngx_log_t *log, ngx_str_t *src,
    json_t **vars, ngx_uint_t nvars, ngx_str_t *out)
{
    u_char     *p, *end, *open, *close, *name, *name_end, *d;
    size_t      len, pass;
    json_t     *v;

    end = src->data + src->len;

    /* pass 0 measures, pass 1 writes */

    d = NULL;
    len = 0;

    for (pass = 0; pass < 2; pass++) {

        if (pass == 1) {
            out->data = ngx_pnalloc(pool, len + 1);
            if (out->data == NULL) {
                return NGX_ERROR;
            }

            d = out->data;
        }

        len = 0;
        p = src->data;

        while (p < end) {
            open = ngx_strlcasestrn(p, end, (u_char *) "{{", 2 - 1);

            if (open == NULL) {
                open = end;
            }

            len += open - p;
            if (d) {
                d = ngx_cpymem(d, p, open - p);
            }

            if (open == end) {
                break;
            }

            close = ngx_strlcasestrn(open + 2, end, (u_char *) "}}", 2 - 1);

            if (close == NULL) {
                /* not a placeholder: drop the braces, keep the text */
                p = open + 2;
                continue;
            }

            name = open + 2;
            name_end = close;

            while (name < name_end && (*name == ' ' || *name == '\t')) {
                name++;
            }

            while (name_end > name
                   && (name_end[-1] == ' ' || name_end[-1] == '\t'))
            {
                name_end--;
            }

            v = ngx_http_twirt_template_lookup(vars, nvars, name,
                                               name_end - name);

            if (v) {
                len += json_string_length(v);
                if (d) {
                    d = ngx_cpymem(d, json_string_value(v),
                                   json_string_length(v));
                }

            } else if (pass == 1) {
                ngx_log_error(NGX_LOG_WARN, log, 0,
                              "twirt: template variable \"%*s\" has no "
                              "value, left empty", name_end - name, name);
            }

            p = close + 2;
        }
    }

    *d = '\0';
    out->len = d - out->data;

    return NGX_OK;
}


static json_t *
ngx_http_twirt_template_lookup(json_t **vars, ngx_uint_t nvars,
    u_char *name, size_t len)
{
    json_t      *v;
    ngx_uint_t   i;
    u_char       key[128];

    if (len == 0 || len >= sizeof(key)) {
        return NULL;
    }

    ngx_memcpy(key, name, len);
    key[len] = '\0';

    for (i = 0; i < nvars; i++) {
        v = json_object_get(vars[i], (char *) key);

        if (json_is_string(v)) {
            return v;
        }
    }

    return NULL;
}
