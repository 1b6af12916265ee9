/* The listening socket (listener.h): systemd's, or our own in a 0700 root directory under
 * an flock, with stale-socket cleanup; and the "is an agent already there" probe. */
#include "listener.h"

#include "errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define LOCK_NAME "agent.lock"

static int make_addr(const char *path, struct sockaddr_un *addr)
{
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof addr->sun_path)
        return -ENAMETOOLONG;
    *addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    /* Bounded by the length check above. */
    memcpy(addr->sun_path, path, n + 1);
    return 0;
}

int listener_probe(const char *path)
{
    struct sockaddr_un addr;
    if (make_addr(path, &addr) < 0)
        return 0;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    int rc;
    do
        rc = connect(fd, (const struct sockaddr *)&addr, sizeof addr);
    while (rc < 0 && errno == EINTR);
    close(fd);
    return rc == 0;
}

int listener_from_systemd(struct listener *out, char **err)
{
    *out = (struct listener){.fd = -1, .lock_fd = -1};
    int n = sd_listen_fds(1);
    if (n < 0)
        return errmsg_set(err, n, "cannot read the sockets passed by systemd: %s", strerror(-n));
    if (n == 0)
        return 0;
    if (n > 1)
        return errmsg_set(err, -EINVAL, "systemd passed %d sockets; pg-agent.socket must have one",
                          n);
    int fd = SD_LISTEN_FDS_START;
    int r = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0);
    if (r <= 0)
        return errmsg_set(err, -EINVAL,
                          "the socket passed by systemd is not a listening Unix stream socket");
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0 || fcntl(fd, F_SETFD, fl | FD_CLOEXEC) < 0)
        return errmsg_set(err, -errno, "fcntl on the socket passed by systemd: %s",
                          strerror(errno));
    out->fd = fd;
    out->from_systemd = true;
    return 1;
}

/* mkdir the socket's directory (its last component only) and force 0700 root:root. */
static int secure_dir(const char *dir, int *dir_fd, char **err)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return errmsg_set(err, -errno, "cannot create %s: %s", dir, strerror(errno));
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errmsg_set(err, -errno, "cannot open %s: %s", dir, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0 || (st.st_uid != 0 && fchown(fd, 0, 0) < 0) ||
        ((st.st_mode & 07777) != 0700 && fchmod(fd, 0700) < 0)) {
        int e = errno;
        close(fd);
        return errmsg_set(err, -e, "cannot make %s a root-only directory: %s", dir, strerror(e));
    }
    *dir_fd = fd;
    return 0;
}

int listener_open(const char *path, struct listener *out, char **err)
{
    *out = (struct listener){.fd = -1, .lock_fd = -1};

    struct sockaddr_un addr;
    if (!path) /* explicit, so that sanitizer builds can prove it below */
        return errmsg_set(err, -EINVAL, "no socket path");
    if (path[0] != '/' || make_addr(path, &addr) < 0)
        return errmsg_set(err, -EINVAL, "socket path must be absolute and under %zu bytes",
                          sizeof addr.sun_path);
    char *dir = strdup(path);
    if (!dir)
        return errmsg_set(err, -ENOMEM, "out of memory");
    int dir_fd = -1, sock = -1, rc;
    char *slash = strrchr(dir, '/'); /* not NULL: path starts with '/' */
    if (slash == dir) {
        rc = errmsg_set(err, -EINVAL, "the socket must be in a directory of its own, not in /");
        goto fail;
    }
    *slash = '\0';
    rc = secure_dir(dir, &dir_fd, err);
    if (rc < 0)
        goto fail;

    out->lock_fd = openat(dir_fd, LOCK_NAME, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (out->lock_fd < 0) {
        rc = errmsg_set(err, -errno, "cannot open %s/%s: %s", dir, LOCK_NAME, strerror(errno));
        goto fail;
    }
    if (flock(out->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            rc = errmsg_set(err, -EALREADY, "another pg-agent holds %s/%s", dir, LOCK_NAME);
        else
            rc = errmsg_set(err, -errno, "cannot lock %s/%s: %s", dir, LOCK_NAME, strerror(errno));
        goto fail;
    }

    /* We hold the lock, so whatever socket is there belongs to a dead agent. */
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            rc = errmsg_set(err, -EEXIST, "%s exists and is not a socket", path);
            goto fail;
        }
        if (unlink(path) < 0) {
            rc = errmsg_set(err, -errno, "cannot remove the stale socket %s: %s", path,
                            strerror(errno));
            goto fail;
        }
    } else if (errno != ENOENT) {
        rc = errmsg_set(err, -errno, "cannot inspect %s: %s", path, strerror(errno));
        goto fail;
    }

    sock = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sock < 0) {
        rc = errmsg_set(err, -errno, "socket: %s", strerror(errno));
        goto fail;
    }
    /* Create the socket file 0600 whatever the caller's umask. */
    mode_t old = umask(0177);
    int b = bind(sock, (const struct sockaddr *)&addr, sizeof addr);
    int berr = errno;
    umask(old);
    if (b < 0) {
        rc = errmsg_set(err, -berr, "cannot bind %s: %s", path, strerror(berr));
        goto fail;
    }
    if (lstat(path, &st) < 0 || listen(sock, SOMAXCONN) < 0) {
        rc = errmsg_set(err, -errno, "cannot listen on %s: %s", path, strerror(errno));
        unlink(path);
        goto fail;
    }
    out->fd = sock;
    out->path = strdup(path);
    if (!out->path) {
        unlink(path);
        rc = errmsg_set(err, -ENOMEM, "out of memory");
        goto fail;
    }
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    close(dir_fd);
    free(dir);
    return 0;

fail:
    if (sock >= 0)
        close(sock);
    out->fd = -1;
    if (out->lock_fd >= 0)
        close(out->lock_fd);
    out->lock_fd = -1;
    if (dir_fd >= 0)
        close(dir_fd);
    free(dir);
    return rc;
}

void listener_close(struct listener *l)
{
    if (!l)
        return;
    if (l->path) {
        /* Only our own socket: never a newer agent's. */
        struct stat st;
        if (lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
            unlink(l->path);
        free(l->path);
    }
    if (l->fd >= 0)
        close(l->fd);
    if (l->lock_fd >= 0)
        close(l->lock_fd); /* after the unlink: the next agent may take over now */
    *l = (struct listener){.fd = -1, .lock_fd = -1};
}
