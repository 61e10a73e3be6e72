
/*
 * Campaign rows from a CSV upload (RFC 4180, as Excel writes it in
 * Japan: UTF-8 with or without a BOM, or Shift_JIS/CP932).  Pure: no I/O,
 * the pool only for error messages and the converted text.
 */


#ifndef _NGX_HTTP_TWIRT_CSV_H_INCLUDED_
#define _NGX_HTTP_TWIRT_CSV_H_INCLUDED_


#include "ngx_http_twirt.h"


#define NGX_HTTP_TWIRT_CSV_MAX_VARIABLES  16
#define NGX_HTTP_TWIRT_CSV_MAX_COLUMNS    256      /* ignored ones too */
#define NGX_HTTP_TWIRT_CSV_MAX_CELL       500      /* characters */
#define NGX_HTTP_TWIRT_CSV_MAX_NAME       64       /* bytes */
#define NGX_HTTP_TWIRT_CSV_MAX_ROWS       100000


/*
 * Parses a CSV upload into a JSON array of rows:
 *   [{"line": L, "to": "<the phone cell as written, UTF-8>",
 *     "variables": {"col": "value", ...}}, ...]
 * NGX_OK: *rows set (caller json_decref()s it).  NGX_ERROR: *error set to
 * a static-or-pool message that says what is wrong and where (line
 * number), e.g. "line 7: a quoted field is not closed", "no phone column:
 * name one to, phone, number, 電話番号 or 電話", "the file is neither
 * UTF-8 nor Shift_JIS (CP932)".  data is only read.
 */
ngx_int_t ngx_http_twirt_csv_rows(ngx_pool_t *pool, u_char *data, size_t len,
    json_t **rows, ngx_str_t *error);


#endif /* _NGX_HTTP_TWIRT_CSV_H_INCLUDED_ */
