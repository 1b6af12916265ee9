/* Relay <-> agent wire protocol (proto.h): length-prefixed frames over a stream fd and
 * a growable buffer with a JSON string encoder; libc only, shared by relay and agent. */
#include "proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* Write every byte of the iovec array, retrying on EINTR and short writes. Sockets are
 * written with MSG_NOSIGNAL so a vanished peer gives -EPIPE, not SIGPIPE, whatever the
 * caller's signal disposition; other fds (pipes in tests) fall back to writev. */
int proto_write_all_iov(int fd, struct iovec *iov, int iovcnt)
{
    int use_send = 1;
    while (iovcnt > 0) {
        ssize_t w;
        if (use_send) {
            struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
            w = sendmsg(fd, &msg, MSG_NOSIGNAL);
            if (w < 0 && errno == ENOTSOCK) {
                use_send = 0;
                continue;
            }
        } else {
            w = writev(fd, iov, iovcnt);
        }
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        size_t done = (size_t)w;
        while (iovcnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
    return 0;
}

int proto_write_frame(int fd, const char *body, size_t len)
{
    if (!body || len == 0)
        return -EINVAL;
    if (len > PROTO_MAX_FRAME)
        return -EMSGSIZE;
    unsigned char hdr[4] = {(unsigned char)(len >> 24), (unsigned char)(len >> 16),
                            (unsigned char)(len >> 8), (unsigned char)len};
    struct iovec iov[2] = {{.iov_base = hdr, .iov_len = sizeof hdr},
                           {.iov_base = (void *)body, .iov_len = len}};
    return proto_write_all_iov(fd, iov, 2);
}

/* Read exactly n bytes. 0 on success, -ECONNRESET on EOF before n bytes, -errno else. */
static int read_full(int fd, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ECONNRESET;
        got += (size_t)r;
    }
    return 0;
}

int proto_read_frame(int fd, char **out, size_t *len)
{
    if (!out || !len)
        return -EINVAL;
    *out = NULL;
    *len = 0;
    unsigned char hdr[4];
    int rc = read_full(fd, hdr, sizeof hdr);
    if (rc < 0)
        return rc;
    uint32_t n = ((uint32_t)hdr[0] << 24) | ((uint32_t)hdr[1] << 16) | ((uint32_t)hdr[2] << 8) |
                 (uint32_t)hdr[3];
    if (n == 0 || n > PROTO_MAX_FRAME)
        return -EPROTO;
    char *body = malloc((size_t)n + 1);
    if (!body)
        return -ENOMEM;
    rc = read_full(fd, body, n);
    if (rc < 0) {
        free(body);
        return rc;
    }
    body[n] = '\0';
    *out = body;
    *len = n;
    return 0;
}

/* Make room for extra more bytes plus a NUL terminator (data stays NUL-terminated). */
static int buf_reserve(struct proto_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        return -ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int proto_buf_append(struct proto_buf *b, const char *s, size_t n)
{
    if (buf_reserve(b, n) < 0)
        return -ENOMEM;
    /* Bounded by buf_reserve. */
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int proto_buf_append_json_string(struct proto_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    /* Worst case every byte becomes \u00XX (6 bytes), plus the two quotes. */
    if (n > (SIZE_MAX - 3) / 6 || buf_reserve(b, n * 6 + 2) < 0)
        return -ENOMEM;
    char *o = b->data + b->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            *o++ = '\\';
            *o++ = '"';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\b':
            *o++ = '\\';
            *o++ = 'b';
            break;
        case '\f':
            *o++ = '\\';
            *o++ = 'f';
            break;
        default:
            if (c < 0x20) {
                *o++ = '\\';
                *o++ = 'u';
                *o++ = '0';
                *o++ = '0';
                *o++ = hex[c >> 4];
                *o++ = hex[c & 0xf];
            } else {
                *o++ = (char)c; /* printable ASCII, DEL and UTF-8 bytes as-is */
            }
        }
    }
    *o++ = '"';
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
    return 0;
}

void proto_buf_free(struct proto_buf *b)
{
    if (!b)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int proto_write_all(int fd, const void *buf, size_t len)
{
    /* iovec's base is not const, but writev does not modify it. */
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return len ? proto_write_all_iov(fd, &iov, 1) : 0;
}
