
/*
 * libFuzzer: the JSON scanner against jansson.  Whatever the scanner
 * accepts, jansson must accept, but for what jansson refuses beyond the
 * grammar (numbers it cannot represent, NUL in keys, lone surrogates in
 * \u escapes); and every field the scanner found must be jansson's string
 * at that path.
 */


#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "ngx_http_twirt_json_scan.h"
#include "ngx_http_twirt_ws_frame.h"


static json_t *
path_get(json_t *root, const char *path)
{
    char    key[64];
    size_t  len;

    while (root && *path) {
        len = strcspn(path, ".");
        if (len >= sizeof(key)) {
            return NULL;
        }

        memcpy(key, path, len);
        key[len] = '\0';
        root = json_object_get(root, key);
        path += len + (path[len] == '.');
    }

    return root;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t                       *root, *v;
    ngx_uint_t                    i;
    json_error_t                  err;
    ngx_http_twirt_utf8_t         u;
    ngx_http_twirt_json_field_t   f[4];

    /* text messages reach the scanner as valid UTF-8 only */
    ngx_http_twirt_utf8_init(&u);
    if (ngx_http_twirt_utf8_feed(&u, data, size) != NGX_HTTP_TWIRT_WS_OK
        || ngx_http_twirt_utf8_finish(&u) != NGX_HTTP_TWIRT_WS_OK)
    {
        return 0;
    }

    f[0].path = "event";
    f[1].path = "media.payload";
    f[2].path = "type";
    f[3].path = "a.b.c";

    if (ngx_http_twirt_json_scan((u_char *) data, size, f, 4) != NGX_OK) {
        return 0;
    }

    root = json_loadb((const char *) data, size, JSON_ALLOW_NUL, &err);

    if (root == NULL) {
        if (strstr(err.text, "overflow") || strstr(err.text, "too big")
            || strstr(err.text, "NUL byte in object key")
            || strstr(err.text, "invalid Unicode"))
        {
            return 0;
        }

        abort();
    }

    for (i = 0; i < 4; i++) {
        v = path_get(root, f[i].path);

        if (!f[i].found) {
            continue;
        }

        if (!json_is_string(v) || json_string_length(v) != f[i].value.len
            || memcmp(json_string_value(v), f[i].value.data, f[i].value.len)
               != 0)
        {
            abort();
        }
    }

    json_decref(root);

    return 0;
}
