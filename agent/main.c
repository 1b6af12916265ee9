/* pg-agent: the PostgreSQL charm's resident agent. Parses the command line, sets up the
 * socket, the log and the sd-event loop, and serves the relay until SIGTERM/SIGINT. */
/* _GNU_SOURCE is how glibc is asked for sigabbrev_np and asprintf. */
#define _GNU_SOURCE
#include "daemon.h"
#include "errmsg.h"
#include "ha.h"
#include "handler.h"
#include "hooktool.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "proc.h"
#include "proto.h"
#include "reconcile.h"
#include "server.h"
#include "service.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

enum mode {
    MODE_FOREGROUND,
    MODE_DAEMON,
    MODE_INSTALL_SERVICE,
};

struct options {
    enum mode mode;
    const char *socket;
    const char *templates;
    const char *unit_dir;
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: pg-agent [--foreground | --daemon | --install-service] [--socket PATH]\n"
            "\n"
            "The PostgreSQL charm's resident agent: serves the charm's dispatch relay on a\n"
            "Unix socket and handles each Juju event while its hook waits.\n"
            "\n"
            "  --foreground        run in the foreground (the default; what systemd runs)\n"
            "  --daemon            detach; exit 0 once the agent listens (or one already\n"
            "                      does), 1 with the reason if it cannot start\n"
            "  --socket PATH       socket to listen on (default: $PG_AGENT_SOCKET, else\n"
            "                      %s); ignored when systemd passes the socket\n"
            "  --install-service   write %s and %s to the unit\n"
            "                      directory, then systemctl daemon-reload and\n"
            "                      systemctl enable --now %s\n"
            "  --templates DIR     unit templates for --install-service (default:\n"
            "                      <directory of this binary>/../src/systemd)\n"
            "  --unit-dir DIR      unit directory for --install-service (default: %s)\n"
            "  --version           print the version and exit\n"
            "  --help              print this help and exit\n"
            "\n"
            "Environment: PG_AGENT_LOG=FILE logs to FILE instead of the journal or\n"
            "%s; PG_AGENT_LOG_LEVEL=DEBUG|INFO|WARNING|ERROR (default INFO).\n",
            PROTO_SOCKET_PATH, SERVICE_SOCKET_NAME, SERVICE_NAME, SERVICE_SOCKET_NAME,
            SERVICE_UNIT_DIR, PG_AGENT_LOG_FILE);
}

/* Returns -1 to continue, or an exit code. */
static int parse_options(int argc, char **argv, struct options *o)
{
    enum { OPT_SOCKET = 256, OPT_INSTALL, OPT_TEMPLATES, OPT_UNIT_DIR, OPT_VERSION, OPT_HELP };
    static const struct option longopts[] = {
        {"daemon", no_argument, NULL, 'd'},
        {"foreground", no_argument, NULL, 'f'},
        {"socket", required_argument, NULL, OPT_SOCKET},
        {"install-service", no_argument, NULL, OPT_INSTALL},
        {"templates", required_argument, NULL, OPT_TEMPLATES},
        {"unit-dir", required_argument, NULL, OPT_UNIT_DIR},
        {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    int modes = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o->mode = MODE_DAEMON;
            modes++;
            break;
        case 'f':
            o->mode = MODE_FOREGROUND;
            modes++;
            break;
        case OPT_INSTALL:
            o->mode = MODE_INSTALL_SERVICE;
            modes++;
            break;
        case OPT_SOCKET:
            o->socket = optarg;
            break;
        case OPT_TEMPLATES:
            o->templates = optarg;
            break;
        case OPT_UNIT_DIR:
            o->unit_dir = optarg;
            break;
        case OPT_VERSION:
            printf("pg-agent %s\n", PG_AGENT_VERSION);
            return 0;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pg-agent: unexpected argument: %s\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    if (modes > 1) {
        fprintf(stderr, "pg-agent: --foreground, --daemon and --install-service exclude "
                        "each other\n");
        return 2;
    }
    return -1;
}

/* fds 0-2 must be open, so that no file the agent opens becomes a child's stdio. */
static int ensure_stdio(void)
{
    for (int fd = 0; fd < 3; fd++) {
        if (fcntl(fd, F_GETFD) >= 0)
            continue;
        int n = open("/dev/null", O_RDWR);
        if (n < 0)
            return -errno;
        if (n != fd) {
            /* Lower fds are open, so open() returned fd itself; anything else is odd. */
            close(n);
            return -EBADF;
        }
    }
    return 0;
}

static int install_service(const struct options *o)
{
    char *agent = realpath("/proc/self/exe", NULL);
    if (!agent) {
        fprintf(stderr, "pg-agent: cannot find my own binary: %s\n", strerror(errno));
        return 1;
    }
    char *dir = strdup(agent);
    char *templates = NULL;
    if (!dir || (o->templates ? (templates = strdup(o->templates)) == NULL
                              : asprintf(&templates, "%s/../src/systemd", dirname(dir)) < 0)) {
        fprintf(stderr, "pg-agent: out of memory\n");
        free(dir);
        free(agent);
        return 1;
    }
    free(dir);
    struct service_paths paths = {
        .agent = agent,
        .socket = o->socket,
        .templates = templates,
        .unit_dir = o->unit_dir ? o->unit_dir : SERVICE_UNIT_DIR,
        .systemctl = SERVICE_SYSTEMCTL,
    };
    char *err = NULL;
    int code = 0;
    if (service_install(&paths, &err) < 0) {
        fprintf(stderr, "pg-agent: --install-service: %s\n", ERRMSG(err));
        code = 1;
    } else {
        printf("pg-agent: installed %s and %s in %s; the socket is enabled and listening\n",
               SERVICE_SOCKET_NAME, SERVICE_NAME, paths.unit_dir);
    }
    free(err);
    free(templates);
    free(agent);
    return code;
}

static int on_signal(sd_event_source *src, const struct signalfd_siginfo *si, void *userdata)
{
    (void)userdata;
    log_info("signal %s received: stopping", sigabbrev_np((int)si->ssi_signo));
    return sd_event_exit(sd_event_source_get_event(src), 0);
}

/* While a hook tool runs inline the loop cannot ping the watchdog itself. */
static void sd_watchdog_keepalive(void)
{
    sd_notify(0, "WATCHDOG=1");
}

#define SUPERVISE_INTERVAL_USEC (10ULL * 1000000ULL)

/* The listener, for a re-exec after upgrade-charm. */
static struct listener *current_listener;
static const char *current_socket;

/* Hand over to the new agent binary, in this same process: the listening socket stays
 * open (passed as systemd would, LISTEN_FDS=1 on fd 3) and so does the lock, so relays
 * that connect meanwhile simply wait in the backlog. PostgreSQL is not our child and is
 * not touched. On failure the current agent keeps serving. */
static int on_reexec(sd_event_source *src, void *userdata)
{
    (void)src;
    (void)userdata;
    const char *path = handler_reexec_path();
    struct listener *l = current_listener;
    if (!path || !l || access(path, X_OK) < 0) {
        log_error("cannot re-execute %s: %s", path ? path : "(none)", strerror(errno));
        return 0;
    }
    log_info("upgrade-charm: handing over to %s", path);
    if (l->lock_fd == 3) {
        int moved = fcntl(l->lock_fd, F_DUPFD_CLOEXEC, 10);
        if (moved < 0)
            return 0;
        close(l->lock_fd);
        l->lock_fd = moved;
    }
    if (l->fd != 3 && dup2(l->fd, 3) < 0) {
        log_error("cannot re-execute: dup2: %s", strerror(errno));
        return 0;
    }
    fcntl(3, F_SETFD, 0);
    if (l->lock_fd >= 0)
        fcntl(l->lock_fd, F_SETFD, 0); /* keep holding the lock across exec */
    char pid[32];
    snprintf(pid, sizeof pid, "%ld", (long)getpid());
    setenv("LISTEN_PID", pid, 1);
    setenv("LISTEN_FDS", "1", 1);
    unsetenv("LISTEN_FDNAMES");
    char *const argv[] = {(char *)path, "--foreground", "--socket", (char *)current_socket,
                          NULL};
    execv(path, argv);
    log_error("cannot re-execute %s: %s", path, strerror(errno));
    unsetenv("LISTEN_PID");
    unsetenv("LISTEN_FDS");
    return 0;
}

static int handle(const struct hook_event *ev, void *userdata)
{
    sd_event *e = userdata;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int code = handler_handle(ev);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    metrics_hook_observe(ev->name, (double)(t1.tv_sec - t0.tv_sec) +
                                       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    malloc_trim(0); /* give back what the pass used: the agent idles small */
    if (handler_reexec_path() && sd_event_add_defer(e, NULL, on_reexec, NULL) < 0)
        log_error("cannot schedule the re-exec of the new agent");
    return code;
}

/* Between hooks: keep PostgreSQL running. */
static int on_supervise(sd_event_source *src, uint64_t usec, void *userdata)
{
    (void)userdata;
    reconcile_supervise();
    int rc = sd_event_source_set_time(src, usec + SUPERVISE_INTERVAL_USEC);
    /* time sources are one-shot: enable it again */
    return rc < 0 ? rc : sd_event_source_set_enabled(src, SD_EVENT_ON);
}

/* jansson's memory holds secret content (secret-get answers): wipe it when freed. */
static void wiping_free(void *p)
{
    if (p) {
        explicit_bzero(p, malloc_usable_size(p));
        free(p);
    }
}

/* Report a start-up failure where it will be seen, and give the exit code. */
static int startup_failed(int report_fd, const char *msg)
{
    log_error("cannot start: %s", msg);
    if (report_fd >= 0)
        daemon_report(report_fd, DAEMON_FAILED, msg);
    else
        fprintf(stderr, "pg-agent: %s\n", msg);
    sd_notifyf(0, "STATUS=cannot start: %s", msg);
    return 1;
}

/* Everything after option parsing and daemonising. */
static int run(const char *socket_path, int report_fd)
{
    sd_event *e = NULL;
    struct server *srv = NULL;
    struct listener lst = {.fd = -1, .lock_fd = -1};
    char *err = NULL;
    int code = 1;
    int rc;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
        errmsg_format(&err, "sigprocmask: %s", strerror(errno));
        code = startup_failed(report_fd, ERRMSG(err));
        goto out;
    }
    rc = sd_event_default(&e);
    if (rc >= 0)
        rc = sd_event_add_signal(e, NULL, SIGTERM, on_signal, NULL);
    if (rc >= 0)
        rc = sd_event_add_signal(e, NULL, SIGINT, on_signal, NULL);
    if (rc < 0) {
        errmsg_format(&err, "cannot set up the event loop: %s", strerror(-rc));
        code = startup_failed(report_fd, ERRMSG(err));
        goto out;
    }

    rc = listener_from_systemd(&lst, &err);
    if (rc == 0)
        rc = listener_open(socket_path, &lst, &err);
    if (rc == -EALREADY) {
        log_info("%s", ERRMSG(err));
        if (report_fd >= 0)
            daemon_report(report_fd, DAEMON_ALREADY_RUNNING, NULL);
        else
            printf("pg-agent: %s\n", ERRMSG(err));
        report_fd = -1;
        code = 0;
        goto out;
    }
    if (rc < 0) {
        code = startup_failed(report_fd, ERRMSG(err));
        goto out;
    }

    current_listener = &lst;
    current_socket = socket_path;
    rc = server_new(e, lst.fd, handle, e, &srv, &err);
    if (rc < 0) {
        code = startup_failed(report_fd, ERRMSG(err));
        goto out;
    }
    rc = sd_event_set_watchdog(e, 1);
    if (rc < 0)
        log_warning("cannot enable the systemd watchdog: %s", strerror(-rc));
    if (rc > 0)
        proc_set_keepalive(sd_watchdog_keepalive);
    uint64_t now = 0;
    sd_event_now(e, CLOCK_MONOTONIC, &now);
    if (sd_event_add_time(e, NULL, CLOCK_MONOTONIC, now + SUPERVISE_INTERVAL_USEC, 1000000,
                          on_supervise, NULL) < 0)
        log_warning("cannot set up the supervision timer");

    (void)ha_resume();
    log_info("pg-agent %s listening on %s%s", PG_AGENT_VERSION,
             lst.from_systemd ? "the socket passed by systemd" : lst.path,
             rc > 0 ? " (watchdog on)" : "");
    sd_notify(0, "READY=1\nSTATUS=listening");
    daemon_report(report_fd, DAEMON_READY, NULL);
    report_fd = -1;

    rc = sd_event_loop(e);
    sd_notify(0, "STOPPING=1");
    if (rc < 0) {
        log_error("event loop failed: %s", strerror(-rc));
        code = 1;
    } else {
        log_info("stopped");
        code = 0;
    }
out:
    if (report_fd >= 0)
        daemon_report(report_fd, DAEMON_FAILED, "start-up failed");
    server_free(srv);
    listener_close(&lst);
    sd_event_unref(e);
    free(err);
    return code;
}

int main(int argc, char **argv)
{
    struct options o = {.mode = MODE_FOREGROUND};
    int code = parse_options(argc, argv, &o);
    if (code >= 0)
        return code;
    if (!o.socket) {
        const char *env = getenv("PG_AGENT_SOCKET");
        o.socket = env && *env ? env : PROTO_SOCKET_PATH;
    }

    if (ensure_stdio() < 0)
        return 1;
    json_set_alloc_funcs(malloc, wiping_free);
    /* libcurl's global set-up is not thread-safe: once, before the HA threads exist. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "pg-agent: cannot initialise libcurl\n");
        return 1;
    }
    /* A relay that goes away must not kill the agent; proto writes use MSG_NOSIGNAL,
     * pipes to hook tools do not. Children get SIGPIPE back (hooktool.c). */
    (void)signal(SIGPIPE, SIG_IGN);

    const char *level = getenv("PG_AGENT_LOG_LEVEL");
    enum log_level threshold;
    if (level && *level) {
        if (log_level_parse(level, &threshold) < 0) {
            fprintf(stderr, "pg-agent: PG_AGENT_LOG_LEVEL must be DEBUG, INFO, WARNING or "
                            "ERROR\n");
            return 2;
        }
        log_set_threshold(threshold);
    }

    if (o.mode == MODE_INSTALL_SERVICE)
        return install_service(&o);

    /* Socket activation aside, an agent already listening means there is nothing to do. */
    if (sd_listen_fds(0) <= 0 && listener_probe(o.socket)) {
        printf("pg-agent: an agent is already listening on %s\n", o.socket);
        return 0;
    }

    char *err = NULL;
    int report_fd = -1;
    if (o.mode == MODE_DAEMON && daemon_start(&report_fd, &err) < 0) {
        fprintf(stderr, "pg-agent: cannot daemonise: %s\n", ERRMSG(err));
        free(err);
        return 1;
    }
    if (log_init(&err) < 0) {
        int rc = startup_failed(report_fd, ERRMSG(err));
        free(err);
        return rc;
    }
    return run(o.socket, report_fd);
}
