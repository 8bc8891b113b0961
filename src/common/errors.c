/* src/common/errors.c - error names and sentences from DAGGER_ERROR_MAP, last-error messages.
 * SPDX-License-Identifier: MIT
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/common.h"

const char *dagger_strerror(int rc)
{
    switch (rc) {
    case 0:
        return "success";
#define X(name, value, text)                                                                       \
    case value:                                                                                    \
        return text;
        DAGGER_ERROR_MAP(X)
#undef X
    default:
        return "unknown error";
    }
}

const char *dagger_err_name(int rc)
{
    switch (rc) {
    case 0:
        return "DAGGER_OK";
#define X(name, value, text)                                                                       \
    case value:                                                                                    \
        return "DAGGER_" #name;
        DAGGER_ERROR_MAP(X)
#undef X
    default:
        return "DAGGER_E?";
    }
}

#define MSG_CAP 1024
static __thread char last_msg[MSG_CAP];

/* Kept out of line: a task may resume on another thread, so the TLS address is recomputed. */
DAGGER_NOINLINE static char *msg_buf(void) { return last_msg; }

const char *dagger_last_errmsg(void) { return msg_buf(); }

int dagger__set_errmsg(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg_buf(), MSG_CAP, fmt, ap);
    va_end(ap);
    return code;
}

int dagger__set_errmsg_str(int code, const char *msg)
{
    snprintf(msg_buf(), MSG_CAP, "%s", msg ? msg : "");
    return code;
}

void dagger__panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dagger: internal error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

void dagger__misuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("dagger: API misuse: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

char *dagger__vasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    char *s = dagger__malloc((size_t)n + 1);
    if (s)
        vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

char *dagger__asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = dagger__vasprintf(fmt, ap);
    va_end(ap);
    return s;
}
