/* The relay socket's server side (server.h): sd-event io sources for the listener and
 * each connection, a deadline timer per connection, frame assembly, replies. */
/* _GNU_SOURCE is how glibc is asked for accept4, struct ucred. */
#define _GNU_SOURCE
#include "server.h"

#include "errmsg.h"
#include "log.h"
#include "proto.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A log line longer than this is cut before it is sent to the relay. */
#define MAX_LOG_FRAME_TEXT ((size_t)65536)
/* Accepts per wake-up, so that a flood cannot starve the connections being read. */
#define ACCEPT_BATCH 16
/* Pause before accepting again after running out of fds or memory. */
#define ACCEPT_RETRY_USEC ((uint64_t)1000000)

struct conn {
    struct server *srv;
    struct conn *prev, *next;
    int fd;
    pid_t pid;
    uid_t uid;
    sd_event_source *io, *timer;
    unsigned char hdr[4];
    size_t hdr_got;
    char *body;
    size_t body_len, body_got;
    bool broken; /* a reply could not be sent: send nothing more */
};

struct server {
    sd_event *e;
    int listen_fd;
    sd_event_source *listen_src, *retry_src;
    server_handler_fn handler;
    void *userdata;
    struct conn *conns;
    unsigned n_conns;
    bool handling;
};

static void conn_free(struct conn *c)
{
    struct server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->timer);
    if (c->fd >= 0)
        close(c->fd);
    free(c->body);
    free(c);
}

/* Send one reply frame; after a failure the connection is marked broken and later
 * frames are dropped (the relay has gone: the hook's context is gone with it). */
static void conn_send(struct conn *c, const char *body, size_t len)
{
    if (c->broken)
        return;
    int rc = proto_write_frame(c->fd, body, len);
    if (rc < 0) {
        c->broken = true;
        log_warning("cannot send a reply to pid %d: %s", (int)c->pid, strerror(-rc));
    }
}

static void conn_send_log(struct conn *c, enum log_level level, const char *msg)
{
    struct proto_buf b = {0};
    size_t n = strnlen(msg, MAX_LOG_FRAME_TEXT);
    char *cut = strndup(msg, n);
    int rc = cut ? 0 : -ENOMEM;
    if (rc == 0)
        rc = proto_buf_append(&b, "{\"log\":", 7);
    if (rc == 0)
        rc = proto_buf_append_json_string(&b, cut);
    if (rc == 0)
        rc = proto_buf_append(&b, ",\"level\":", 9);
    if (rc == 0)
        rc = proto_buf_append_json_string(&b, log_level_name(level));
    if (rc == 0)
        rc = proto_buf_append(&b, "}", 1);
    if (rc == 0)
        conn_send(c, b.data, b.len);
    free(cut);
    proto_buf_free(&b);
}

static void conn_send_exit(struct conn *c, int code)
{
    char *buf = NULL;
    int n = asprintf(&buf, "{\"exit\":%d}", code);
    if (n < 0) {
        log_error("out of memory for the final reply to pid %d", (int)c->pid);
        return;
    }
    conn_send(c, buf, (size_t)n);
    free(buf);
}

/* The log sink while a request is handled: every line also goes to the relay. */
static void conn_log_sink(void *userdata, enum log_level level, const char *message)
{
    conn_send_log(userdata, level, message);
}

/* Blocking writes with a timeout from here on: replies are small, and a relay that
 * stops reading must not hang the agent. */
static int conn_prepare_replies(struct conn *c)
{
    int fl = fcntl(c->fd, F_GETFL);
    if (fl < 0 || fcntl(c->fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return -errno;
    struct timeval tv = {.tv_sec = SERVER_SEND_TIMEOUT_SEC};
    if (setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0)
        return -errno;
    return 0;
}

/* The whole frame is in: validate, handle, answer, close. */
static void conn_dispatch(struct conn *c)
{
    struct server *s = c->srv;
    c->io = sd_event_source_disable_unref(c->io);
    c->timer = sd_event_source_disable_unref(c->timer);

    int rc = conn_prepare_replies(c);
    if (rc < 0) {
        log_warning("cannot set up replies to pid %d: %s", (int)c->pid, strerror(-rc));
        conn_free(c);
        return;
    }
    if (s->handling) {
        /* Handling is inline, so this cannot happen today; refuse rather than share
         * state if the handler ever becomes asynchronous. */
        log_warning("a request from pid %d arrived while another is handled: refused", (int)c->pid);
        conn_send_log(c, LOG_LEVEL_ERROR, "pg-agent is busy with another request");
        conn_send_exit(c, 1);
        conn_free(c);
        return;
    }

    s->handling = true;
    log_set_sink(conn_log_sink, c);

    struct hook_event ev;
    char *err = NULL;
    int code;
    if (request_parse(c->body, c->body_len, &ev, &err) < 0) {
        log_error("invalid request from pid %d: %s", (int)c->pid, ERRMSG(err));
        code = 1;
    } else {
        code = s->handler(&ev, s->userdata);
        if (code < 0 || code > 255)
            code = 1;
    }
    free(err);
    request_free(&ev);

    log_set_sink(NULL, NULL);
    s->handling = false;
    conn_send_exit(c, code);
    conn_free(c);
}

/* Read what is available. Returns 1 when the frame is complete, 0 when more is needed,
 * -1 when the connection was closed here (and c freed). */
static int conn_read(struct conn *c)
{
    for (;;) {
        void *dst;
        size_t want;
        if (c->hdr_got < sizeof c->hdr) {
            dst = c->hdr + c->hdr_got;
            want = sizeof c->hdr - c->hdr_got;
        } else {
            dst = c->body + c->body_got;
            want = c->body_len - c->body_got;
        }
        ssize_t r = read(c->fd, dst, want);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return 0;
            log_warning("reading a request from pid %d: %s", (int)c->pid, strerror(errno));
            conn_free(c);
            return -1;
        }
        if (r == 0) {
            if (c->hdr_got == 0)
                /* A liveness probe (a second agent checking, the relay retrying). */
                log_debug("pid %d closed the connection without a request", (int)c->pid);
            else
                log_warning("pid %d closed the connection in the middle of a request", (int)c->pid);
            conn_free(c);
            return -1;
        }
        if (c->hdr_got < sizeof c->hdr) {
            c->hdr_got += (size_t)r;
            if (c->hdr_got < sizeof c->hdr)
                continue;
            uint32_t n = ((uint32_t)c->hdr[0] << 24) | ((uint32_t)c->hdr[1] << 16) |
                         ((uint32_t)c->hdr[2] << 8) | (uint32_t)c->hdr[3];
            if (n == 0 || n > PROTO_MAX_FRAME) {
                log_warning("pid %d sent a frame of %u bytes (allowed 1..%u): closing", (int)c->pid,
                            (unsigned)n, PROTO_MAX_FRAME);
                conn_free(c);
                return -1;
            }
            c->body = malloc((size_t)n + 1);
            if (!c->body) {
                log_error("out of memory for a request of %u bytes from pid %d", (unsigned)n,
                          (int)c->pid);
                conn_free(c);
                return -1;
            }
            c->body_len = n;
        } else {
            c->body_got += (size_t)r;
            if (c->body_got == c->body_len) {
                c->body[c->body_len] = '\0';
                return 1;
            }
        }
    }
}

static int on_conn_io(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)src;
    (void)fd;
    (void)revents;
    struct conn *c = userdata;
    if (conn_read(c) == 1)
        conn_dispatch(c);
    return 0;
}

static int on_conn_deadline(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)src;
    (void)usec;
    struct conn *c = userdata;
    /* The loop may have been busy handling another request: take what has arrived. */
    int r = conn_read(c);
    if (r == 1) {
        conn_dispatch(c);
        return 0;
    }
    if (r == 0) {
        log_warning("pid %d sent no complete request within %d s: closing", (int)c->pid,
                    SERVER_READ_DEADLINE_SEC);
        conn_free(c);
    }
    return 0;
}

/* Refuse a connection that cannot be served now. */
static void refuse_busy(int fd, pid_t pid)
{
    log_warning("refused a connection from pid %d: already %d connections open", (int)pid,
                SERVER_MAX_CONNS);
    static const char msg[] = "{\"log\":\"pg-agent is busy: too many connections\","
                              "\"level\":\"ERROR\"}";
    static const char bye[] = "{\"exit\":1}";
    /* A fresh socket's buffer takes these two small frames without blocking. */
    if (proto_write_frame(fd, msg, sizeof msg - 1) == 0)
        (void)proto_write_frame(fd, bye, sizeof bye - 1);
    close(fd);
}

static void conn_new(struct server *s, int fd)
{
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || len != sizeof cred) {
        log_warning("cannot read the credentials of a new connection: %s", strerror(errno));
        close(fd);
        return;
    }
    if (cred.uid != 0) {
        log_warning("refused a connection from pid %d uid %u: only root may use the agent",
                    (int)cred.pid, (unsigned)cred.uid);
        close(fd);
        return;
    }
    if (s->n_conns >= SERVER_MAX_CONNS) {
        refuse_busy(fd, cred.pid);
        return;
    }

    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        log_error("out of memory for a connection from pid %d", (int)cred.pid);
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;

    int rc = sd_event_add_io(s->e, &c->io, fd, EPOLLIN, on_conn_io, c);
    if (rc >= 0)
        rc = sd_event_add_time_relative(s->e, &c->timer, CLOCK_MONOTONIC,
                                        (uint64_t)SERVER_READ_DEADLINE_SEC * UINT64_C(1000000), 0,
                                        on_conn_deadline, c);
    if (rc < 0) {
        log_error("cannot watch the connection from pid %d: %s", (int)cred.pid, strerror(-rc));
        conn_free(c);
        return;
    }
    log_debug("connection from pid %d", (int)cred.pid);
}

static int on_accept_retry(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)usec;
    struct server *s = userdata;
    s->retry_src = sd_event_source_disable_unref(src);
    sd_event_source_set_enabled(s->listen_src, SD_EVENT_ON);
    return 0;
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata)
{
    (void)revents;
    struct server *s = userdata;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd >= 0) {
            conn_new(s, cfd);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the socket stays readable, so pause rather
         * than spin. */
        log_error("cannot accept connections: %s; pausing for a second", strerror(errno));
        if (!s->retry_src &&
            sd_event_add_time_relative(s->e, &s->retry_src, CLOCK_MONOTONIC, ACCEPT_RETRY_USEC, 0,
                                       on_accept_retry, s) >= 0)
            sd_event_source_set_enabled(src, SD_EVENT_OFF);
        return 0;
    }
    return 0;
}

int server_new(sd_event *e, int listen_fd, server_handler_fn handler, void *userdata,
               struct server **out, char **err)
{
    *out = NULL;
    int fl = fcntl(listen_fd, F_GETFL);
    if (fl < 0 || fcntl(listen_fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return errmsg_set(err, -errno, "cannot make the listening socket non-blocking: %s",
                          strerror(errno));
    struct server *s = calloc(1, sizeof *s);
    if (!s)
        return errmsg_set(err, -ENOMEM, "out of memory");
    s->e = e;
    s->listen_fd = listen_fd;
    s->handler = handler;
    s->userdata = userdata;
    int rc = sd_event_add_io(e, &s->listen_src, listen_fd, EPOLLIN, on_accept, s);
    if (rc < 0) {
        free(s);
        return errmsg_set(err, rc, "cannot watch the listening socket: %s", strerror(-rc));
    }
    *out = s;
    return 0;
}

void server_free(struct server *s)
{
    if (!s)
        return;
    for (struct conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        conn_free(c);
    }
    sd_event_source_disable_unref(s->listen_src);
    sd_event_source_disable_unref(s->retry_src);
    free(s);
}
