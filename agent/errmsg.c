/* Error messages handed back to callers (errmsg.h): one formatted, malloc'd sentence per
 * failure, so that the caller decides whether to log it, send it or print it. */
/* _GNU_SOURCE is how glibc is asked for vasprintf. */
#define _GNU_SOURCE
#include "errmsg.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

void errmsg_format(char **err, const char *fmt, ...)
{
    if (!err)
        return;
    int saved = errno;
    free(*err);
    *err = NULL;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    *err = s;
    errno = saved;
}
