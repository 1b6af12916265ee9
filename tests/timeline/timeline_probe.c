/* Test driver for agent/timeline.c against real PostgreSQL servers and data directories: one
 * operation per run, its result as one JSON line on stdout, for tests/integration/test_timeline.py. */
#include "log.h"
#include "timeline.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: timeline_probe identify CONNINFO\n"
                    "       timeline_probe local BINDIR DATADIR\n"
                    "       timeline_probe decide BINDIR DATADIR CONNINFO\n");
    exit(2);
}

static json_t *lsn_json(uint64_t lsn)
{
    char buf[TL_LSN_BUFSZ];
    return json_string(tl_lsn_format(lsn, buf));
}

static json_t *history_json(bool has, const struct tl_history *h)
{
    if (!has)
        return json_null();
    json_t *a = json_array();
    for (size_t i = 0; i < h->n; i++)
        json_array_append_new(a, json_pack("[I o]", (json_int_t)h->tli[i],
                                           lsn_json(h->switchpoint[i])));
    return a;
}

static json_t *sysid_json(uint64_t id)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%" PRIu64, id);
    return json_string(buf);
}

static json_t *leader_json(const struct tl_leader *ld)
{
    return json_pack("{so sI so so}", "system_id", sysid_json(ld->system_id), "timeline",
                     (json_int_t)ld->timeline, "lsn", lsn_json(ld->lsn), "history",
                     history_json(ld->has_history, &ld->history));
}

static json_t *local_json(const struct tl_local *l)
{
    return json_pack("{so sI so sb sb sb so}", "system_id", sysid_json(l->system_id),
                     "timeline", (json_int_t)l->timeline, "lsn", lsn_json(l->lsn),
                     "lsn_lower_bound", l->lsn_lower_bound, "was_primary", l->was_primary,
                     "clean_shutdown", l->clean_shutdown, "history",
                     history_json(l->has_history, &l->history));
}

static void emit(int rc, const char *err, json_t *o)
{
    json_object_set_new(o, "rc", json_integer(rc));
    if (rc < 0)
        json_object_set_new(o, "error", json_string(err ? err : "out of memory"));
    char *s = json_dumps(o, JSON_COMPACT);
    if (s)
        printf("%s\n", s);
    if (fflush(stdout) != 0)
        exit(3); /* the test reads this line: nothing to report to otherwise */
    free(s);
    json_decref(o);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        usage();
    log_set_threshold(LOG_LEVEL_DEBUG); /* to stderr: the test checks what is logged */
    const char *cmd = argv[1];
    /* both are large: static */
    static struct tl_leader leader;
    static struct tl_local local;
    char *err = NULL;
    json_t *o = json_object();
    int rc = 0;
    if (strcmp(cmd, "identify") == 0 && argc == 3) {
        rc = tl_identify(argv[2], &leader, &err);
        if (rc == 0)
            json_object_set_new(o, "leader", leader_json(&leader));
    } else if (strcmp(cmd, "local") == 0 && argc == 4) {
        rc = tl_local_read(argv[2], argv[3], &local, &err);
        if (rc == 0)
            json_object_set_new(o, "local", local_json(&local));
    } else if (strcmp(cmd, "decide") == 0 && argc == 5) {
        rc = tl_local_read(argv[2], argv[3], &local, &err);
        if (rc == 0) {
            json_object_set_new(o, "local", local_json(&local));
            rc = tl_identify(argv[4], &leader, &err);
        }
        if (rc == 0) {
            json_object_set_new(o, "leader", leader_json(&leader));
            struct tl_decision d;
            tl_decide(&local, &leader, &d);
            json_object_set_new(o, "outcome", json_string(tl_outcome_name(d.outcome)));
            json_object_set_new(o, "reason", json_string(d.reason));
        }
    } else {
        json_decref(o);
        usage();
    }
    emit(rc, err, o);
    free(err);
    return 0;
}
