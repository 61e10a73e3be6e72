
/*
 * Phone numbers to E.164.  Accepted: ASCII and full-width digits, a
 * leading "+" (or full-width "＋"), and between digits hyphens (ASCII,
 * U+2010-U+2012, U+2212, full-width), spaces (ASCII, U+3000) and
 * parentheses.  A number that starts with one 0 is Japanese: the trunk 0
 * is dropped and +81 put in front, and it must have 9 or 10 digits after
 * that (03-1234-5678, 090-1234-5678).  An international number keeps its
 * country code; after +81 the same lengths apply.
 */


#include "ngx_http_twirt_phone.h"


/* separators, as UTF-8 */
static const char  *ngx_http_twirt_phone_separators[] = {
    "-", " ", "(", ")", "\xe2\x80\x90", "\xe2\x80\x91", "\xe2\x80\x92",
    "\xe2\x88\x92", "\xef\xbc\x8d", "\xe3\x80\x80", "\xef\xbc\x88",
    "\xef\xbc\x89", NULL
};


/* NULL, or what is wrong, in words for the caller of the API */

const char *
ngx_http_twirt_phone_e164(u_char *p, size_t len, u_char *out,
    size_t *out_len)
{
    u_char       digits[32];
    size_t       n, slen;
    u_char      *end;
    ngx_uint_t   i, plus, matched;

    end = p + len;
    n = 0;
    plus = 0;

    if (len == 0) {
        return "the number is empty";
    }

    if (*p == '+') {
        plus = 1;
        p++;

    } else if (len >= 3 && ngx_strncmp(p, "\xef\xbc\x8b", 3) == 0) {
        plus = 1;
        p += 3;
    }

    while (p < end) {
        if (*p >= '0' && *p <= '9') {
            if (n == sizeof(digits)) {
                return "the number has too many digits";
            }

            digits[n++] = *p++;
            continue;
        }

        /* full-width digits: U+FF10..U+FF19 */
        if (end - p >= 3 && p[0] == 0xef && p[1] == 0xbc
            && p[2] >= 0x90 && p[2] <= 0x99)
        {
            if (n == sizeof(digits)) {
                return "the number has too many digits";
            }

            digits[n++] = (u_char) ('0' + p[2] - 0x90);
            p += 3;
            continue;
        }

        matched = 0;

        for (i = 0; ngx_http_twirt_phone_separators[i]; i++) {
            slen = ngx_strlen(ngx_http_twirt_phone_separators[i]);

            if ((size_t) (end - p) >= slen
                && ngx_strncmp(p, ngx_http_twirt_phone_separators[i], slen)
                   == 0)
            {
                p += slen;
                matched = 1;
                break;
            }
        }

        if (!matched) {
            return "the number may hold only digits, \"+\" at the start, "
                   "hyphens, spaces and parentheses";
        }
    }

    if (n == 0) {
        return "the number has no digits";
    }

    if (plus) {
        if (digits[0] == '0') {
            return "a country code does not start with 0";
        }

        if (n > 15) {
            return "an E.164 number has at most 15 digits";
        }

        if (n < 8) {
            return "the number is too short";
        }

        if (digits[0] == '8' && digits[1] == '1') {
            if (digits[2] == '0') {
                return "after +81 the trunk 0 is dropped: +81 90..., "
                       "not +81 090...";
            }

            if (n - 2 < 9 || n - 2 > 10) {
                return "a Japanese number has 9 or 10 digits after +81";
            }
        }

        out[0] = '+';
        ngx_memcpy(out + 1, digits, n);
        *out_len = n + 1;

        return NULL;
    }

    if (digits[0] != '0') {
        return "a Japanese number starts with 0 (090-1234-5678), an "
               "international one with + and the country code";
    }

    if ((n > 1 && digits[1] == '0')
        || (n > 2 && digits[1] == '1' && digits[2] == '0'))
    {
        return "an international prefix (010, 00...) is not accepted: "
               "write +, then the country code";
    }

    if (n - 1 < 9 || n - 1 > 10) {
        return "a Japanese number has 10 or 11 digits with the leading 0";
    }

    /* mobile (070, 080, 090), IP (050), M2M (020) and 060: 11 digits */
    if (n - 1 == 9 && digits[2] == '0'
        && (digits[1] == '2' || digits[1] == '5' || digits[1] == '6'
            || digits[1] == '7' || digits[1] == '8' || digits[1] == '9'))
    {
        return "a mobile or IP phone number (090, 080, 070, 050...) has "
               "11 digits with the leading 0";
    }

    out = ngx_cpymem(out, "+81", 3);
    ngx_memcpy(out, digits + 1, n - 1);
    *out_len = n - 1 + 3;

    return NULL;
}
