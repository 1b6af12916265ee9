/* Timeline ancestry: may this node stream from the leader, must it pg_rewind first, or be
 * re-cloned? Decided from real timeline histories and LSNs (../shared/reference/ha.md §9).
 *
 * Three layers:
 *   - pure parsers: LSNs ("16/B374D848"), timeline history files (TIMELINE_HISTORY or
 *     pg_wal/0000000N.history), pg_controldata output, one pg_waldump record line;
 *   - the pure decision tl_decide() (no I/O, no clock, no logging: the caller logs the
 *     reason);
 *   - I/O: tl_identify() asks the leader over a physical replication connection
 *     (IDENTIFY_SYSTEM, TIMELINE_HISTORY); tl_local_read() reads a stopped data directory
 *     (pg_controldata, pg_waldump, the local history file).
 *
 * THE RULES (tl_decide). "lsn" is the end of the WAL the node has (see struct tl_local);
 * "S" is the switch point where the leader's history left this node's timeline L: the
 * entry of the leader's history whose parent timeline is L.
 *   1. Unknown identity on either side (system id or timeline 0)             -> WAIT
 *   2. Different system identifiers                                           -> RECLONE
 *   3. A history inconsistent with its own timeline (parents not increasing,
 *      a parent >= the timeline, a switch point past the leader's LSN)        -> WAIT
 *   4. L > leader's timeline: this node is ahead, on a timeline the leader
 *      does not have (pg_auto_failover#683): it cannot stream               -> REWIND
 *   5. L == leader's timeline:
 *      a. both histories known and different (two promotions to the same
 *         timeline number, patroni#890/#1251): pg_rewind cannot repair this,
 *         it sees equal timeline IDs and reports "no rewind required"       -> RECLONE
 *      b. a crashed former primary (WAL end unknown; the leader has not
 *         promoted yet, or it would be on a newer timeline)                 -> WAIT
 *      c. lsn <= leader's LSN (a former primary with lsn only a lower bound:
 *         lsn < leader's LSN)                                               -> STREAM
 *      d. else: this node has WAL the leader has not (yet): the leader is a
 *         standby that has not promoted, or a fork without a timeline switch -> WAIT
 *   6. L < leader's timeline:
 *      a. the leader's history is not known                                  -> WAIT
 *      b. L is not a parent timeline in the leader's history (a sibling
 *         branch the leader never followed, patroni#2118)                    -> REWIND
 *      c. this node's own history for L (when known) differs from the
 *         leader's record of how L began: same number, another history
 *         (patroni#1251); pg_rewind compares the histories and finds the real
 *         divergence point                                                   -> REWIND
 *      d. replica (was_primary false): lsn <= S and lsn exact -> STREAM;
 *         lsn > S (replayed/received past the switch point) -> REWIND;
 *         lsn only a lower bound -> REWIND (pg_rewind reads the WAL and does
 *         nothing when there is no divergence)
 *      e. former primary, clean shutdown: lsn (the END of its shutdown
 *         checkpoint record) == S -> STREAM (a graceful switchover: the new
 *         leader replayed exactly up to the end of that record, then promoted);
 *         anything else -> REWIND: lsn > S means the shutdown checkpoint (or
 *         more WAL) is not in the leader's history; lsn < S means the leader's
 *         copy of timeline L continues past WAL this node wrote (Patroni's rule);
 *         an unknown end (lower bound) -> REWIND
 *      f. former primary, not shut down cleanly                             -> REWIND
 *         (pg_rewind runs crash recovery first and finds the divergence itself)
 *
 * Why the END of the shutdown checkpoint, not its start: a graceful switchover stops the
 * primary first; its walsender sends the shutdown checkpoint record before exiting, the
 * standby replays it and promotes, so S = end of that record and the old primary's
 * "Latest checkpoint location" (the record's START) is S minus the record's length
 * (observed on PostgreSQL 15: checkpoint 0/3027AF0, record 114 bytes, MAXALIGNed 120,
 * switch point 0/3027B68). When the standby missed that record (it stopped first, or
 * the network failed), the standby promotes at S = the checkpoint's START: "checkpoint
 * location > S" would then say STREAM, but such a node never streams ("new timeline 2
 * forked off current database system timeline 1 before current recovery point", observed
 * too): it has the checkpoint record the leader does not. The integration test
 * (tests/integration/test_timeline.py) reproduces both cases.
 *
 * Prerequisites the caller owns: the leader is a primary (not in recovery; a physical
 * replication connection cannot tell); after a promotion the leader has completed a
 * CHECKPOINT before pg_rewind runs (pg_rewind reads the source's timeline from its control
 * file, which changes only at that checkpoint: before it, pg_rewind sees equal timelines
 * and does nothing); a WAIT that lasts must be escalated by the caller (ha.md §17 row 10).
 *
 * Known limit (shared with pg_rewind and Patroni): for a stopped standby the end of WAL
 * is max(minimum recovery ending location, end of the latest checkpoint record); WAL it
 * received but did not replay, or replayed records that dirtied no page, can lie beyond.
 * Decide while the replica runs (max(receive, replay) LSN) when possible, and treat a
 * replica that runs but does not stream as unhealthy (ha.md §9).
 *
 * Ownership: every struct is plain data with fixed-size arrays (a struct tl_history is
 * about 12 KiB; allocate tl_local/tl_leader where that is fine). *err is malloc'd for the
 * caller (errmsg.h). Nothing keeps a pointer to the caller's strings. Passwords: never
 * logged; tl_identify logs and reports only host and port of the conninfo.
 */
#ifndef PG_AGENT_TIMELINE_H
#define PG_AGENT_TIMELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TL_HISTORY_MAX 1000                   /* entries in one history */
#define TL_HISTORY_TEXT_MAX ((size_t)262144)  /* bytes of history text accepted */
#define TL_LSN_BUFSZ 18                       /* "FFFFFFFF/FFFFFFFF" and NUL */
#define TL_REASON_MAX 512

/* ---- LSNs -------------------------------------------------------------------------- */

/* Parse "X/Y" (each 1 to 8 hex digits, nothing else) into a 64-bit LSN. 0 or -EINVAL. */
int tl_lsn_parse(const char *s, uint64_t *out);

/* Format as PostgreSQL does ("%X/%X": "16/B374D848", "0/0") into buf; returns buf. */
const char *tl_lsn_format(uint64_t lsn, char buf[TL_LSN_BUFSZ]);

/* ---- timeline histories ------------------------------------------------------------ */

/* The history of one timeline T: entry i says that timeline tli[i] ended at switchpoint[i]
 * (the next entry's timeline, or T for the last one, begins there). Parent timelines are
 * strictly increasing and below T; switch points never decrease. Timeline 1 has none. */
struct tl_history {
    size_t n;
    uint32_t tli[TL_HISTORY_MAX];
    uint64_t switchpoint[TL_HISTORY_MAX];
};

/* Parse a history file's text (len bytes, NUL not needed): lines
 * "<parentTLI><TAB or spaces><X/Y>[<TAB or spaces><reason>]", blank lines and lines
 * starting with '#' (after leading blanks) ignored. Strict: decimal timeline 1..2^32-1,
 * LSN halves of 1-8 hex digits, no control characters but TAB, no NUL, at most
 * TL_HISTORY_MAX entries and TL_HISTORY_TEXT_MAX bytes, parents strictly increasing,
 * switch points not decreasing. tli is the timeline whose history this is (0: unknown):
 * every parent must be below it, and a timeline above 1 must have at least one entry.
 * Returns 0, or -EINVAL with *err "line N: ..." (out->n is then 0). */
int tl_history_parse(const char *text, size_t len, uint32_t tli, struct tl_history *out,
                     char **err);

/* Read <data_dir>/pg_wal/<tli as %08X>.history. *found false (and out->n 0) when the file
 * does not exist; returns 0, or a negative errno with *err on a read or parse error. */
int tl_history_read_file(const char *data_dir, uint32_t tli, struct tl_history *out,
                         bool *found, char **err);

/* ---- pg_controldata and pg_waldump output ------------------------------------------ */

enum tl_db_state {
    TL_DB_UNKNOWN = 0, /* a state text this code does not know */
    TL_DB_STARTING_UP,
    TL_DB_SHUT_DOWN,
    TL_DB_SHUT_DOWN_IN_RECOVERY,
    TL_DB_SHUTTING_DOWN,
    TL_DB_IN_CRASH_RECOVERY,
    TL_DB_IN_ARCHIVE_RECOVERY,
    TL_DB_IN_PRODUCTION,
};

/* "shut down in recovery" etc., as pg_controldata prints it ("unknown" for TL_DB_UNKNOWN). */
const char *tl_db_state_name(enum tl_db_state state);

/* The fields of pg_controldata's output this module uses. */
struct tl_controldata {
    uint64_t system_id;          /* Database system identifier (never 0) */
    enum tl_db_state state;      /* Database cluster state */
    uint64_t checkpoint;         /* Latest checkpoint location (the record's start) */
    uint64_t redo;               /* Latest checkpoint's REDO location */
    uint32_t checkpoint_tli;     /* Latest checkpoint's TimeLineID (>= 1) */
    uint64_t min_recovery;       /* Minimum recovery ending location (0/0: none) */
    uint32_t min_recovery_tli;   /* Min recovery ending loc's timeline (0: none) */
    uint32_t wal_block_size;     /* WAL block size: a power of 2, 1 KiB..64 KiB */
    uint64_t wal_segment_size;   /* Bytes per WAL segment: a power of 2, 1 MiB..1 GiB */
    uint32_t max_align;          /* Maximum data alignment: 4 or 8 */
    bool data_checksums;         /* Data page checksum version != 0 */
    bool wal_log_hints;          /* wal_log_hints setting: on */
};

/* Parse the text pg_controldata printed with LC_ALL=C (PostgreSQL 14 to 17). Lines are
 * "<name>: <value>"; unknown names are ignored, the fields above are required (once
 * each) and strictly validated; CRC warnings ("WARNING: Calculated CRC checksum does not
 * match") and "pg_controldata: ..." messages are refused. 0 or -EINVAL with *err. */
int tl_controldata_parse(const char *text, size_t len, struct tl_controldata *out,
                         char **err);

/* From the output of `pg_waldump -p <pg_wal> -t <tli> -s <lsn> -n 1` (one line): the end
 * of that record, i.e. where the next record starts, as the WAL reader computes it: the
 * record's total length laid over WAL pages (a page header at every page boundary, the
 * long one at segment starts) and rounded up to max_align. The line must be a
 * CHECKPOINT_SHUTDOWN or CHECKPOINT_ONLINE record of rmgr XLOG at exactly lsn. 0 or
 * -EINVAL with *err. */
int tl_waldump_record_end(const char *output, uint64_t lsn, const struct tl_controldata *cd,
                          uint64_t *end, char **err);

/* ---- the decision ------------------------------------------------------------------ */

/* This node. For a running replica the caller fills it from SQL: timeline of the WAL at
 * lsn, lsn = max(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), was_primary false,
 * and the history from tl_history_read_file. For a stopped node, tl_local_read(). */
struct tl_local {
    uint64_t system_id;
    uint32_t timeline;      /* the timeline of the WAL at lsn */
    uint64_t lsn;           /* end of the WAL this node has (see tl_local_from_controldata) */
    bool lsn_lower_bound;   /* lsn is only a lower bound (the WAL may extend beyond it) */
    bool was_primary;       /* its control file says it ran as a primary */
    bool clean_shutdown;    /* stopped with a shutdown checkpoint (used for former
                               primaries only) */
    bool has_history;       /* history holds this node's history of `timeline` */
    struct tl_history history;
};

/* The leader, as tl_identify() saw it. */
struct tl_leader {
    uint64_t system_id;
    uint32_t timeline;
    uint64_t lsn;           /* IDENTIFY_SYSTEM xlogpos: its WAL flush position */
    bool has_history;       /* true once known: always for timeline 1 (no entries) */
    struct tl_history history;
};

enum tl_outcome {
    TL_WAIT = 0, /* not decidable now; decide again next cycle */
    TL_STREAM,   /* start/keep following the leader as it is */
    TL_REWIND,   /* stop, pg_rewind from the leader, then follow */
    TL_RECLONE,  /* the data directory cannot follow this leader: clone it anew */
};

/* "wait", "stream", "rewind", "reclone". */
const char *tl_outcome_name(enum tl_outcome outcome);

struct tl_decision {
    enum tl_outcome outcome;
    char reason[TL_REASON_MAX]; /* one sentence for the log, never empty */
};

/* The rules at the top of this file. Never fails: NULL inputs give TL_WAIT. */
void tl_decide(const struct tl_local *local, const struct tl_leader *leader,
               struct tl_decision *out);

/* How a stopped node's control file maps to struct tl_local (has_history and history are
 * left unset). checkpoint_end is the end of the latest checkpoint record (from pg_waldump;
 * 0: unknown). By "Database cluster state":
 *   shut down: a former primary, clean; lsn = checkpoint_end (unknown: the checkpoint
 *     location, as a lower bound);
 *   shut down in recovery / in archive recovery, with a minimum recovery point: a replica
 *     (clean only for the former), timeline = max(min recovery timeline, checkpoint
 *     timeline), lsn = max(min recovery point, checkpoint_end), a lower bound when
 *     checkpoint_end is unknown and the min recovery point is not past the checkpoint's
 *     start (past it, it is also past the checkpoint record's end);
 *   the same states with min recovery 0/0: a former primary, as Patroni reads it;
 *   in production, shutting down, in crash recovery, starting up, unknown: a former
 *     primary that did not shut down cleanly; lsn = the checkpoint (end if known), a lower
 *     bound. */
void tl_local_from_controldata(const struct tl_controldata *cd, uint64_t checkpoint_end,
                               struct tl_local *out);

/* ---- I/O --------------------------------------------------------------------------- */

/* Both block (tl_identify up to connect_timeout plus 2 x 15 s, tl_local_read up to 30 s
 * per program, keepalive pinged meanwhile): run them off the path that renews the leader
 * lease, like the other slow work (DESIGN.md §4). */

/* Connect with libpq to conninfo plus replication=true (conninfo gives host, port, user,
 * sslmode/sslcert/sslkey/sslrootcert or a socket directory, and connect_timeout; without
 * connect_timeout 10 s is used), run IDENTIFY_SYSTEM and, for a timeline above 1,
 * TIMELINE_HISTORY <timeline>; validate and parse both into *out. Each query has a 15 s
 * deadline. Returns 0, or a negative errno with *err (connection errors name host and port
 * only; conninfo values are never logged or reported). */
int tl_identify(const char *conninfo, struct tl_leader *out, char **err);

/* Read a STOPPED data directory: `<pg_bindir>/pg_controldata -D <data_dir>` (as the OS user
 * postgres when running as root, LC_ALL=C), `pg_waldump` for the end of the latest
 * checkpoint record when it matters (a failure there is logged and leaves the LSN a lower
 * bound), and pg_wal/<timeline>.history for a timeline above 1. Returns 0, or a negative
 * errno with *err. */
int tl_local_read(const char *pg_bindir, const char *data_dir, struct tl_local *out,
                  char **err);

#endif
