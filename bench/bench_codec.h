
/*
 * The text codecs the benchmark tools need: base64, and a JSON reader
 * that finds one value by its path ("media.payload") without building a
 * tree.  Strings are returned raw (escapes left in place).
 */


#ifndef _BENCH_CODEC_H_INCLUDED_
#define _BENCH_CODEC_H_INCLUDED_


#include <stddef.h>


#define bench_base64_len(n)  (((n) + 2) / 3 * 4)


typedef enum {
    BENCH_JSON_NONE = 0,
    BENCH_JSON_STRING,
    BENCH_JSON_NUMBER,
    BENCH_JSON_OBJECT,
    BENCH_JSON_ARRAY,
    BENCH_JSON_LITERAL          /* true, false, null */
} bench_json_type_e;


typedef struct {
    bench_json_type_e   type;
    const char         *p;      /* strings: the content without quotes */
    size_t              len;
} bench_json_t;


/* writes bench_base64_len(n) characters, no terminating zero */
size_t bench_base64_encode(char *out, const unsigned char *in, size_t n);

/*
 * Decodes into out (room for len / 4 * 3 bytes).  Accepts the JSON escape
 * "\/" for "/".  Returns the length, or -1 on a bad character or length.
 */
long bench_base64_decode(unsigned char *out, const char *in, size_t len);

/*
 * Looks up a dotted path of object keys in the JSON text p[0..len):
 * 0 with v set, 1 if absent, -1 if the text is not JSON up to the value.
 */
int bench_json_get(const char *p, size_t len, const char *path,
    bench_json_t *v);

/* 1 if v is the string s exactly */
int bench_json_is(const bench_json_t *v, const char *s);


#endif /* _BENCH_CODEC_H_INCLUDED_ */
