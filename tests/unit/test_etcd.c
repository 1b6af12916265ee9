/* Unit tests for the pure parts of agent/etcd.c: base64, prefix range ends, parsing of
 * answers recorded from etcd 3.4.23's JSON gateway (and broken ones), the watch splitter. */
#include "check.h"

#include "errmsg.h"
#include "etcd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define HDR                                                                                  \
    "\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"                     \
    "\"13668033151171901709\",\"revision\":\"2\",\"raft_term\":\"2\"}"

/* Parse text as a 200 answer; NULL when that fails. */
static json_t *answer(const char *text)
{
    json_t *root = NULL;
    char *err = NULL;
    if (etcd_parse_answer(200, text, strlen(text), &root, &err) != 0)
        root = NULL;
    free(err);
    return root;
}

static int answer_rc(long status, const char *text, char **err)
{
    json_t *root = NULL;
    int rc = etcd_parse_answer(status, text, strlen(text), &root, err);
    json_decref(root);
    return rc;
}

TEST(base64_vectors)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar",
                                        "/service/demo/leader", "node1", "/service/demo0"};
    static const char *const enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=",
                                      "Zm9vYmFy", "L3NlcnZpY2UvZGVtby9sZWFkZXI=", "bm9kZTE=",
                                      "L3NlcnZpY2UvZGVtbzA="};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        char *e = etcd_b64_encode(plain[i], strlen(plain[i]));
        CHECK_STR(e, enc[i]);
        free(e);
        char *d = NULL;
        size_t n = 99;
        CHECK(etcd_b64_decode(enc[i], strlen(enc[i]), &d, &n) == 0);
        CHECK(d && n == strlen(plain[i]) && memcmp(d, plain[i], n) == 0 && d[n] == '\0');
        free(d);
    }
}

TEST(base64_binary_roundtrip)
{
    unsigned char bytes[300];
    for (size_t i = 0; i < sizeof(bytes); i++)
        bytes[i] = (unsigned char)(255 - i * 7);
    for (size_t len = 0; len <= sizeof(bytes); len++) {
        char *e = etcd_b64_encode(bytes, len);
        CHECK(e && strlen(e) == (len + 2) / 3 * 4);
        char *d = NULL;
        size_t n = 0;
        CHECK(e && etcd_b64_decode(e, strlen(e), &d, &n) == 0);
        CHECK(d && n == len && memcmp(d, bytes, len) == 0);
        free(e);
        free(d);
    }
}

TEST(base64_strict_decoder)
{
    static const char *const bad[] = {"Zg",       "Zg=",   "Zg=a", "Z===", "====", "Zh==",
                                      "Zm9=",     "Zm9v!", "=Zg=", " Zg=", "Zg== ", "Zg==Zg==",
                                      "Zm9v\nYg==", "Zm-_", "A"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *d = (char *)"sentinel";
        size_t n = 7;
        if (etcd_b64_decode(bad[i], strlen(bad[i]), &d, &n) != -EPROTO) {
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
            (*failed)++;
        }
        CHECK(d == NULL && n == 0);
    }
}

TEST(prefix_range_end)
{
    unsigned char out[32];
    size_t n = etcd_prefix_range_end("/service/demo/", 14, out);
    CHECK(n == 14 && memcmp(out, "/service/demo0", 14) == 0);
    char *e = etcd_b64_encode(out, n);
    CHECK_STR(e, "L3NlcnZpY2UvZGVtbzA=");
    free(e);
    n = etcd_prefix_range_end("a\xff", 2, out);
    CHECK(n == 1 && out[0] == 'b');
    n = etcd_prefix_range_end("a\xff\xff\xff", 4, out);
    CHECK(n == 1 && out[0] == 'b');
    n = etcd_prefix_range_end("ab\xfe", 3, out);
    CHECK(n == 3 && memcmp(out, "ab\xff", 3) == 0);
    n = etcd_prefix_range_end("\x01\xff", 2, out);
    CHECK(n == 1 && out[0] == 2);
    /* nothing left to increment: every key from the prefix on */
    n = etcd_prefix_range_end("\xff\xff", 2, out);
    CHECK(n == 1 && out[0] == 0);
    n = etcd_prefix_range_end("", 0, out);
    CHECK(n == 1 && out[0] == 0);
}

TEST(answer_errors_are_mapped)
{
    static const struct {
        long status;
        const char *body;
        int rc;
    } cases[] = {
        {404,
         "{\"error\":\"etcdserver: requested lease not found\",\"message\":\"etcdserver: "
         "requested lease not found\",\"code\":5}",
         -ENOKEY},
        {404,
         "{\"error\":\"etcdserver: member not found\",\"message\":\"etcdserver: member not "
         "found\",\"code\":5}",
         -ENOENT},
        {412,
         "{\"error\":\"etcdserver: can only promote a learner member which is in sync with "
         "leader\",\"message\":\"etcdserver: can only promote a learner member which is in "
         "sync with leader\",\"code\":9}",
         -EBUSY},
        {403, "{\"error\":\"etcdserver: permission denied\",\"code\":7}", -EACCES},
        {401, "{\"error\":\"etcdserver: invalid auth token\",\"code\":16}", -EACCES},
        {503, "{\"error\":\"etcdserver: unhealthy cluster\",\"code\":14}", -EAGAIN},
        {400, "{\"error\":\"unexpected end of JSON input\",\"code\":3}", -EINVAL},
        {400, "{\"error\":\"etcdserver: mvcc: required revision has been compacted\","
              "\"code\":11}",
         -ESTALE},
        {500, "{\"error\":\"illegal base64 data at input byte 0\",\"code\":2}", -EREMOTEIO},
        /* code as a string, and no code at all: the HTTP status decides */
        {404, "{\"error\":\"etcdserver: requested lease not found\",\"code\":\"5\"}", -ENOKEY},
        {412, "{\"error\":\"something\"}", -EBUSY},
        /* a stream's error object */
        {200,
         "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"etcdserver: requested "
         "lease not found\",\"http_status\":\"Not Found\"}}",
         -ENOKEY},
        {200, "{\"error\":{\"grpc_code\":14,\"message\":\"no leader\"}}", -EAGAIN},
        /* not JSON */
        {404, "Not Found", -ENOENT},
        {200, "", -EPROTO},
        {200, "{\"header\":", -EPROTO},
        {200, "[1,2]", -EPROTO},
        {200, "\"x\"", -EPROTO},
        {200, "{\"a\":1,\"a\":2}", -EPROTO},
        {200, "{\"error\":42}", -EPROTO},
        {500, "{\"header\":{}}", -EREMOTEIO},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        int rc = answer_rc(cases[i].status, cases[i].body, &err);
        if (rc != cases[i].rc) {
            fprintf(stderr, "  case %zu: rc %d, expected %d (%s)\n", i, rc, cases[i].rc,
                    ERRMSG(err));
            (*failed)++;
        }
        CHECK(err != NULL);
        free(err);
    }
    char *err = NULL;
    CHECK(answer_rc(404, "{\"error\":\"bad\\u0001\\nthing\",\"code\":5}", &err) == -ENOENT);
    CHECK(err && !strchr(err, '\n') && !strchr(err, '\x01') && strstr(err, "bad??thing"));
    free(err);
}

TEST(answer_too_large)
{
    size_t n = ETCD_MAX_RESPONSE + 1;
    char *big = malloc(n);
    CHECK(big != NULL);
    if (!big)
        return;
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    json_t *root = NULL;
    char *err = NULL;
    CHECK(etcd_parse_answer(200, big, n, &root, &err) == -EMSGSIZE && root == NULL);
    free(err);
    free(big);
}

TEST(range_with_and_without_kvs)
{
    json_t *root = answer("{" HDR ",\"kvs\":[{\"key\":\"YQ==\",\"create_revision\":\"2\","
                          "\"mod_revision\":\"3\",\"version\":\"1\",\"value\":\"MQ==\","
                          "\"lease\":\"5668802722429443588\"},{\"key\":\"Yg==\","
                          "\"create_revision\":4,\"mod_revision\":4,\"version\":1}],"
                          "\"count\":\"2\"}");
    struct etcd_range r;
    char *err = NULL;
    CHECK(root && etcd_parse_range(root, &r, &err) == 0);
    CHECK(r.header.revision == 2 && r.header.raft_term == 2);
    CHECK(r.header.member_id == 13668033151171901709ull);
    CHECK(r.n == 2 && r.count == 2 && !r.more);
    if (r.n == 2) {
        CHECK(r.kvs[0].key_len == 1 && strcmp(r.kvs[0].key, "a") == 0);
        CHECK(r.kvs[0].value_len == 1 && strcmp(r.kvs[0].value, "1") == 0);
        CHECK(r.kvs[0].create_revision == 2 && r.kvs[0].mod_revision == 3);
        CHECK(r.kvs[0].version == 1 && r.kvs[0].lease == 5668802722429443588ll);
        /* numbers accepted too; value and lease omitted: empty, 0 */
        CHECK(r.kvs[1].create_revision == 4 && r.kvs[1].lease == 0);
        CHECK(r.kvs[1].value && r.kvs[1].value_len == 0);
    }
    etcd_range_clear(&r);
    json_decref(root);

    /* an empty range: header only (no kvs, no count) */
    root = answer("{" HDR "}");
    CHECK(root && etcd_parse_range(root, &r, &err) == 0);
    CHECK(r.n == 0 && r.count == 0 && r.kvs == NULL && r.header.revision == 2);
    etcd_range_clear(&r);
    json_decref(root);
    free(err);
}

TEST(range_malformed)
{
    static const char *const bad[] = {
        "{}",                                        /* no header */
        "{\"header\":[]}",                           /* header not an object */
        "{\"header\":{\"revision\":\"0\"}}",         /* no revision */
        "{\"header\":{\"revision\":\"x2\"}}",        /* not a number */
        "{\"header\":{\"revision\":\" 2\"}}",        /* spaces */
        "{\"header\":{\"revision\":\"-2\"}}",        /* negative */
        "{\"header\":{\"revision\":\"99999999999999999999\"}}", /* overflow */
        "{\"header\":{\"revision\":2.5}}",           /* real */
        "{\"header\":{\"revision\":true}}",          /* bool */
        "{\"header\":{\"revision\":\"2\",\"cluster_id\":\"-1\"}}",
        "{" HDR ",\"kvs\":{}}",                      /* kvs not an array */
        "{" HDR ",\"kvs\":[1]}",                     /* kv not an object */
        "{" HDR ",\"kvs\":[{\"value\":\"MQ==\"}]}",  /* no key */
        "{" HDR ",\"kvs\":[{\"key\":\"\"}]}",        /* empty key */
        "{" HDR ",\"kvs\":[{\"key\":\"YQ\"}]}",      /* bad base64 */
        "{" HDR ",\"kvs\":[{\"key\":7}]}",           /* key not a string */
        "{" HDR ",\"kvs\":[{\"key\":\"YQ==\",\"value\":\"*\"}]}",
        "{" HDR ",\"kvs\":[{\"key\":\"YQ==\",\"mod_revision\":\"1e3\"}]}",
        "{" HDR ",\"kvs\":[{\"key\":\"YQ==\"}, {\"key\":\"YQ==\",\"lease\":{}}]}",
        "{" HDR ",\"count\":\"many\"}",
        "{" HDR ",\"more\":\"true\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *root = answer(bad[i]);
        struct etcd_range r = {0};
        char *err = NULL;
        int rc = root ? etcd_parse_range(root, &r, &err) : -1;
        if (rc != -EPROTO) {
            fprintf(stderr, "  accepted range %zu: %s\n", i, bad[i]);
            (*failed)++;
        }
        CHECK(err != NULL);
        CHECK(r.kvs == NULL && r.n == 0);
        free(err);
        json_decref(root);
    }
}

TEST(put_and_delete)
{
    json_t *root = answer("{\"header\":{\"cluster_id\":\"1\",\"member_id\":\"2\","
                          "\"revision\":\"17\",\"raft_term\":\"3\"}}");
    int64_t rev = 0, deleted = 9;
    char *err = NULL;
    CHECK(root && etcd_parse_put(root, &rev, &err) == 0 && rev == 17);
    CHECK(etcd_parse_delete(root, &deleted, &err) == 0 && deleted == 0);
    json_decref(root);
    root = answer("{" HDR ",\"deleted\":\"1\"}");
    CHECK(root && etcd_parse_delete(root, &deleted, &err) == 0 && deleted == 1);
    json_decref(root);
    root = answer("{\"deleted\":\"1\"}");
    CHECK(root && etcd_parse_put(root, &rev, &err) == -EPROTO && rev == 0);
    json_decref(root);
    free(err);
}

TEST(txn_outcomes)
{
    struct etcd_txn_result t;
    char *err = NULL;
    /* won: succeeded with the put's response */
    json_t *root = answer("{" HDR ",\"succeeded\":true,\"responses\":[{\"response_put\":"
                          "{\"header\":{\"revision\":\"2\"}}}]}");
    CHECK(root && etcd_parse_txn(root, &t, &err) == 0);
    CHECK(t.succeeded && !t.have_kv && t.header.revision == 2);
    etcd_txn_result_clear(&t);
    json_decref(root);

    /* lost: no "succeeded", the failure branch's range names the holder */
    root = answer("{" HDR ",\"responses\":[{\"response_range\":{\"header\":{\"revision\":"
                  "\"2\"},\"kvs\":[{\"key\":\"L3NlcnZpY2UvZGVtby9sZWFkZXI=\","
                  "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
                  "\"value\":\"bm9kZTE=\",\"lease\":\"7\"}],\"count\":\"1\"}}]}");
    CHECK(root && etcd_parse_txn(root, &t, &err) == 0);
    CHECK(!t.succeeded && t.have_kv);
    CHECK_STR(t.kv.key, "/service/demo/leader");
    CHECK_STR(t.kv.value, "node1");
    CHECK(t.kv.value_len == 5 && t.kv.lease == 7);
    etcd_txn_result_clear(&t);
    CHECK(t.kv.key == NULL);
    json_decref(root);

    /* lost, key gone meanwhile (empty range), and a bare header (no branches) */
    root = answer("{" HDR ",\"responses\":[{\"response_range\":{\"header\":{}}}]}");
    CHECK(root && etcd_parse_txn(root, &t, &err) == 0 && !t.succeeded && !t.have_kv);
    etcd_txn_result_clear(&t);
    json_decref(root);
    root = answer("{" HDR "}");
    CHECK(root && etcd_parse_txn(root, &t, &err) == 0 && !t.succeeded && !t.have_kv);
    etcd_txn_result_clear(&t);
    json_decref(root);

    /* delete branch */
    root = answer("{" HDR ",\"succeeded\":true,\"responses\":[{\"response_delete_range\":"
                  "{\"header\":{\"revision\":\"3\"},\"deleted\":\"1\"}}]}");
    CHECK(root && etcd_parse_txn(root, &t, &err) == 0 && t.succeeded && t.deleted == 1);
    etcd_txn_result_clear(&t);
    json_decref(root);
    free(err);
}

TEST(txn_malformed)
{
    static const char *const bad[] = {
        "{\"succeeded\":true}",
        "{" HDR ",\"succeeded\":\"true\"}",
        "{" HDR ",\"succeeded\":1}",
        "{" HDR ",\"responses\":{}}",
        "{" HDR ",\"responses\":[1]}",
        "{" HDR ",\"responses\":[{}]}",
        "{" HDR ",\"responses\":[{\"response_frob\":{}}]}",
        "{" HDR ",\"responses\":[{\"response_put\":{},\"response_range\":{}}]}",
        "{" HDR ",\"responses\":[{\"response_range\":[]}]}",
        "{" HDR ",\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":\"YQ==\"}]}},"
        "{\"response_range\":{\"kvs\":\"x\"}}]}",
        "{" HDR ",\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":\"YQ==\"}]}},"
        "{\"response_delete_range\":{\"deleted\":\"-1\"}}]}",
        "{" HDR ",\"responses\":[{\"response_range\":{\"kvs\":[{\"key\":\"YQ==\","
        "\"value\":\"@@@@\"}]}}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *root = answer(bad[i]);
        struct etcd_txn_result t = {0};
        char *err = NULL;
        int rc = root ? etcd_parse_txn(root, &t, &err) : -1;
        if (rc != -EPROTO) {
            fprintf(stderr, "  accepted txn %zu: %s\n", i, bad[i]);
            (*failed)++;
        }
        CHECK(t.kv.key == NULL && !t.have_kv);
        free(err);
        json_decref(root);
    }
}

TEST(lease_grant_and_keepalive)
{
    char *err = NULL;
    int64_t id = 0, ttl = 0;
    json_t *root = answer("{" HDR ",\"ID\":\"5668802722429443588\",\"TTL\":\"30\"}");
    CHECK(root && etcd_parse_lease_grant(root, &id, &ttl, &err) == 0);
    CHECK(id == 5668802722429443588ll && ttl == 30);
    json_decref(root);
    root = answer("{" HDR ",\"ID\":\"5668802722429443588\"}");
    CHECK(root && etcd_parse_lease_grant(root, &id, &ttl, &err) == -EPROTO && id == 0);
    json_decref(root);
    root = answer("{" HDR ",\"ID\":5,\"TTL\":\"thirty\"}");
    CHECK(root && etcd_parse_lease_grant(root, &id, &ttl, &err) == -EPROTO);
    json_decref(root);

    /* keep-alive: the streamed "result" wrapper */
    root = answer("{\"result\":{" HDR ",\"ID\":\"5668802722429443588\",\"TTL\":\"29\"}}");
    CHECK(root && etcd_parse_keepalive(root, 5668802722429443588ll, &ttl, &err) == 0);
    CHECK(ttl == 29);
    json_decref(root);
    /* expired or unknown lease: 200 without TTL (ha.md 5.4 #3) */
    root = answer("{\"result\":{" HDR ",\"ID\":\"12345\"}}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -ENOKEY && ttl == 0);
    CHECK(err && strstr(err, "12345"));
    json_decref(root);
    root = answer("{\"result\":{" HDR ",\"ID\":\"12345\",\"TTL\":\"0\"}}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -ENOKEY);
    json_decref(root);
    root = answer("{\"result\":{" HDR ",\"ID\":\"12345\",\"TTL\":\"-1\"}}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -ENOKEY);
    json_decref(root);
    /* unwrapped form accepted; wrong ID, wrong types refused */
    root = answer("{" HDR ",\"ID\":\"12345\",\"TTL\":\"7\"}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == 0 && ttl == 7);
    json_decref(root);
    root = answer("{\"result\":{\"ID\":\"999\",\"TTL\":\"7\"}}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -EPROTO && ttl == 0);
    json_decref(root);
    root = answer("{\"result\":[]}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -EPROTO);
    json_decref(root);
    root = answer("{\"result\":{\"ID\":\"12345\",\"TTL\":true}}");
    CHECK(root && etcd_parse_keepalive(root, 12345, &ttl, &err) == -EPROTO);
    json_decref(root);
    free(err);
}

TEST(member_list_add_and_status)
{
    char *err = NULL;
    struct etcd_members m = {0};
    json_t *root = answer(
        "{\"header\":{\"cluster_id\":\"15118495548433857066\",\"member_id\":"
        "\"13668033151171901709\",\"raft_term\":\"2\"},\"members\":[{\"ID\":"
        "\"3466916785390028185\",\"peerURLs\":[\"http://127.0.0.1:23999\"],\"isLearner\":true},"
        "{\"ID\":\"13668033151171901709\",\"name\":\"t\",\"peerURLs\":[\"http://127.0.0.1:23801\"],"
        "\"clientURLs\":[\"http://127.0.0.1:23791\",\"https://10.0.0.1:2379\"]}]}");
    CHECK(root && etcd_parse_members(root, &m, &err) == 0);
    CHECK(m.n == 2 && m.header.revision == 0);
    if (m.n == 2) {
        CHECK(m.members[0].id == 3466916785390028185ull && m.members[0].is_learner);
        CHECK_STR(m.members[0].name, "");
        CHECK(m.members[0].n_peer_urls == 1 && m.members[0].n_client_urls == 0);
        CHECK(m.members[1].id == 13668033151171901709ull && !m.members[1].is_learner);
        CHECK_STR(m.members[1].name, "t");
        CHECK(m.members[1].n_client_urls == 2);
        if (m.members[1].n_client_urls == 2)
            CHECK_STR(m.members[1].client_urls[1], "https://10.0.0.1:2379");
    }
    etcd_members_clear(&m);
    json_decref(root);

    uint64_t id = 0;
    root = answer("{\"header\":{},\"member\":{\"ID\":\"3466916785390028185\",\"peerURLs\":"
                  "[\"http://127.0.0.1:23999\"],\"isLearner\":true},\"members\":[{\"ID\":"
                  "\"3466916785390028185\",\"peerURLs\":[\"http://127.0.0.1:23999\"]}]}");
    CHECK(root && etcd_parse_member_add(root, &id, &m, &err) == 0);
    CHECK(id == 3466916785390028185ull && m.n == 1);
    etcd_members_clear(&m);
    json_decref(root);

    static const char *const bad[] = {
        "{\"members\":{}}",
        "{\"members\":[{\"name\":\"x\"}]}",
        "{\"members\":[{\"ID\":\"1\",\"peerURLs\":\"http://a\"}]}",
        "{\"members\":[{\"ID\":\"1\",\"peerURLs\":[7]}]}",
        "{\"members\":[{\"ID\":\"1\",\"name\":\"a\\nb\"}]}",
        "{\"members\":[{\"ID\":\"1\",\"isLearner\":\"yes\"}]}",
        "{\"members\":[{\"ID\":\"1\"},{\"ID\":\"-4\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        root = answer(bad[i]);
        int rc = root ? etcd_parse_members(root, &m, &err) : -1;
        if (rc != -EPROTO) {
            fprintf(stderr, "  accepted members %zu: %s\n", i, bad[i]);
            (*failed)++;
        }
        CHECK(m.members == NULL && m.n == 0);
        json_decref(root);
    }
    root = answer("{\"members\":[]}");
    CHECK(root && etcd_parse_member_add(root, &id, &m, &err) == -EPROTO && id == 0);
    json_decref(root);

    struct etcd_status st = {0};
    root = answer("{" HDR ",\"version\":\"3.4.23\",\"dbSize\":\"20480\",\"leader\":"
                  "\"13668033151171901709\",\"raftIndex\":\"8\",\"raftTerm\":\"2\","
                  "\"raftAppliedIndex\":\"8\",\"dbSizeInUse\":\"16384\"}");
    CHECK(root && etcd_parse_status(root, &st, &err) == 0);
    CHECK_STR(st.version, "3.4.23");
    CHECK(st.leader == 13668033151171901709ull && st.raft_index == 8 && st.raft_term == 2);
    CHECK(st.raft_applied_index == 8 && st.db_size == 20480 && st.n_errors == 0);
    json_decref(root);
    root = answer("{" HDR ",\"version\":\"3.4.23\",\"errors\":[\"NOSPACE\"]}");
    CHECK(root && etcd_parse_status(root, &st, &err) == 0 && st.n_errors == 1 && st.leader == 0);
    json_decref(root);
    static const char *const bad_status[] = {
        "{" HDR "}",
        "{\"version\":3}",
        "{\"version\":\"3.4.23; rm -rf\"}",
        "{\"version\":\"333333333333333333333333333333333333\"}",
        "{\"version\":\"3.4\",\"leader\":\"x\"}",
        "{\"version\":\"3.4\",\"errors\":\"NOSPACE\"}",
    };
    for (size_t i = 0; i < sizeof(bad_status) / sizeof(bad_status[0]); i++) {
        root = answer(bad_status[i]);
        CHECK(root && etcd_parse_status(root, &st, &err) == -EPROTO);
        json_decref(root);
    }
    free(err);
}

TEST(watch_responses)
{
    char *err = NULL;
    struct etcd_watch_response r = {0};
    json_t *root = answer("{\"result\":{" HDR ",\"created\":true}}");
    CHECK(root && etcd_parse_watch_response(root, &r, &err) == 0);
    CHECK(r.created && !r.canceled && r.n_events == 0 && r.header.revision == 2);
    etcd_watch_response_clear(&r);
    json_decref(root);

    root = answer("{\"result\":{" HDR ",\"events\":[{\"kv\":{\"key\":\"YQ==\","
                  "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
                  "\"value\":\"MQ==\"}},{\"type\":\"DELETE\",\"kv\":{\"key\":\"YQ==\","
                  "\"mod_revision\":\"3\"}},{\"type\":\"PUT\",\"kv\":{\"key\":\"Yg==\"}}]}}");
    CHECK(root && etcd_parse_watch_response(root, &r, &err) == 0);
    CHECK(r.n_events == 3);
    if (r.n_events == 3) {
        CHECK(r.events[0].type == ETCD_EVENT_PUT && r.events[0].revision == 2);
        CHECK_STR(r.events[0].kv.key, "a");
        CHECK_STR(r.events[0].kv.value, "1");
        CHECK(r.events[1].type == ETCD_EVENT_DELETE && r.events[1].kv.mod_revision == 3);
        CHECK(r.events[1].kv.value_len == 0);
        CHECK(r.events[2].type == ETCD_EVENT_PUT);
    }
    etcd_watch_response_clear(&r);
    json_decref(root);

    root = answer("{\"result\":{\"header\":{\"cluster_id\":\"1\",\"raft_term\":\"2\"},"
                  "\"canceled\":true,\"compact_revision\":\"3\"}}");
    CHECK(root && etcd_parse_watch_response(root, &r, &err) == 0);
    CHECK(r.canceled && r.compact_revision == 3 && r.header.revision == 0);
    etcd_watch_response_clear(&r);
    json_decref(root);

    static const char *const bad[] = {
        "{\"header\":{}}",
        "{\"result\":[]}",
        "{\"result\":{\"created\":\"true\"}}",
        "{\"result\":{\"events\":{}}}",
        "{\"result\":{\"events\":[{\"type\":\"PATCH\",\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"events\":[{\"type\":1,\"kv\":{\"key\":\"YQ==\"}}]}}",
        "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\"}},{\"type\":\"PUT\"}]}}",
        "{\"result\":{\"events\":[\"x\"]}}",
        "{\"result\":{\"cancel_reason\":5}}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        root = answer(bad[i]);
        int rc = root ? etcd_parse_watch_response(root, &r, &err) : -1;
        if (rc != -EPROTO) {
            fprintf(stderr, "  accepted watch %zu: %s\n", i, bad[i]);
            (*failed)++;
        }
        CHECK(r.events == NULL && r.n_events == 0);
        json_decref(root);
    }
    free(err);
}

/* The objects of a stream, separated the way etcd does (newlines), with strings that
 * contain braces, brackets, escaped quotes and escaped backslashes. */
static const char *const stream_objects[] = {
    "{\"result\":{\"header\":{\"revision\":\"3\"},\"created\":true}}",
    "{\"result\":{\"events\":[{\"kv\":{\"key\":\"YQ==\",\"value\":\"MQ==\"}}],"
    "\"cancel_reason\":\"a \\\"}{\\\" b\"}}",
    "{\"a\":\"\\\\\",\"b\":[{\"c\":\"]}\\\\\\\"{[\"}],\"d\":{}}",
    "{}",
    "{\"x\":\"\\u007b\"}",
};

static void collect(struct etcd_splitter *s, char *got, size_t gotsz, int *n, int *bad)
{
    const char *obj;
    size_t len;
    int rc;
    while ((rc = etcd_splitter_next(s, &obj, &len)) == 1) {
        size_t used = strlen(got);
        if (used + len + 2 < gotsz) {
            memcpy(got + used, obj, len);
            got[used + len] = '|';
            got[used + len + 1] = '\0';
        }
        (*n)++;
    }
    if (rc < 0)
        (*bad)++;
}

TEST(splitter_on_every_boundary)
{
    char stream[1024] = "", expected[1024] = "";
    for (size_t i = 0; i < sizeof(stream_objects) / sizeof(stream_objects[0]); i++) {
        strcat(stream, stream_objects[i]);
        strcat(stream, i % 2 ? "\n" : "\r\n \t");
        strcat(expected, stream_objects[i]);
        strcat(expected, "|");
    }
    size_t len = strlen(stream);
    /* two chunks, cut at every position; then three chunks at every pair */
    for (size_t cut = 0; cut <= len; cut++) {
        struct etcd_splitter s;
        etcd_splitter_init(&s, 4096);
        char got[1024] = "";
        int n = 0, bad = 0;
        CHECK(etcd_splitter_feed(&s, stream, cut) == 0);
        collect(&s, got, sizeof(got), &n, &bad);
        CHECK(etcd_splitter_feed(&s, stream + cut, len - cut) == 0);
        collect(&s, got, sizeof(got), &n, &bad);
        if (bad || n != 5 || strcmp(got, expected) != 0) {
            fprintf(stderr, "  cut at %zu: %d objects, %d errors\n", cut, n, bad);
            (*failed)++;
        }
        etcd_splitter_free(&s);
    }
    for (size_t a = 0; a <= len; a += 3)
        for (size_t b = a; b <= len; b += 5) {
            struct etcd_splitter s;
            etcd_splitter_init(&s, 4096);
            char got[1024] = "";
            int n = 0, bad = 0;
            CHECK(etcd_splitter_feed(&s, stream, a) == 0);
            collect(&s, got, sizeof(got), &n, &bad);
            CHECK(etcd_splitter_feed(&s, stream + a, b - a) == 0);
            collect(&s, got, sizeof(got), &n, &bad);
            CHECK(etcd_splitter_feed(&s, stream + b, len - b) == 0);
            collect(&s, got, sizeof(got), &n, &bad);
            if (bad || n != 5 || strcmp(got, expected) != 0) {
                fprintf(stderr, "  cuts at %zu,%zu: %d objects\n", a, b, n);
                (*failed)++;
            }
            etcd_splitter_free(&s);
        }
    /* byte by byte, and every object parses as JSON */
    struct etcd_splitter s;
    etcd_splitter_init(&s, 4096);
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        CHECK(etcd_splitter_feed(&s, stream + i, 1) == 0);
        const char *obj;
        size_t olen;
        while (etcd_splitter_next(&s, &obj, &olen) == 1) {
            json_error_t je;
            json_t *j = json_loadb(obj, olen, 0, &je);
            CHECK(j != NULL);
            json_decref(j);
            n++;
        }
    }
    CHECK(n == 5);
    etcd_splitter_free(&s);
}

TEST(splitter_refuses_garbage_and_overflow)
{
    static const char *const bad[] = {"x{}", "{} x", "[1]", "{}}", "\"a\"{}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct etcd_splitter s;
        etcd_splitter_init(&s, 4096);
        CHECK(etcd_splitter_feed(&s, bad[i], strlen(bad[i])) == 0);
        const char *obj;
        size_t len;
        int rc;
        while ((rc = etcd_splitter_next(&s, &obj, &len)) == 1)
            ;
        CHECK(rc == -EPROTO);
        etcd_splitter_free(&s);
    }
    /* deep nesting */
    struct etcd_splitter s;
    etcd_splitter_init(&s, 4096);
    char deep[600];
    memset(deep, '[', sizeof(deep));
    deep[0] = '{';
    CHECK(etcd_splitter_feed(&s, deep, sizeof(deep)) == 0);
    const char *obj;
    size_t len;
    CHECK(etcd_splitter_next(&s, &obj, &len) == -EPROTO);
    etcd_splitter_free(&s);
    /* an object that never ends: bounded */
    etcd_splitter_init(&s, 64);
    CHECK(etcd_splitter_feed(&s, "{\"a\":\"", 6) == 0);
    char filler[16];
    memset(filler, 'x', sizeof(filler));
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++) {
        rc = etcd_splitter_feed(&s, filler, sizeof(filler));
        if (rc == 0)
            CHECK(etcd_splitter_next(&s, &obj, &len) == 0);
    }
    CHECK(rc == -EMSGSIZE);
    etcd_splitter_free(&s);
    /* consumed objects free their room: many small objects through a small buffer */
    etcd_splitter_init(&s, 64);
    int n = 0;
    for (int i = 0; i < 1000; i++) {
        CHECK(etcd_splitter_feed(&s, "{\"k\":\"v\"}\n", 10) == 0);
        while (etcd_splitter_next(&s, &obj, &len) == 1)
            n++;
    }
    CHECK(n == 1000);
    etcd_splitter_free(&s);
}

TEST(client_config_is_validated)
{
    struct etcd_client *c = NULL;
    char *err = NULL;
    struct etcd_config cfg = {.endpoints = {"https://10.0.0.1:2379", "http://127.0.0.1:2379"},
                              .n_endpoints = 2,
                              .ca_file = "/nonexistent/ca.pem"};
    CHECK(etcd_client_new(&cfg, &c, &err) == 0 && c != NULL);
    if (c)
        CHECK_STR(etcd_client_endpoint(c), "https://10.0.0.1:2379");
    etcd_client_free(c);
    static const char *const bad_eps[] = {"ftp://a:1",       "https://",         "https://a:1/v3",
                                          "https://a b:1",   "a:2379",           "https://a:",
                                          "https://a:1?x=y", "https://u@a:1",    ""};
    for (size_t i = 0; i < sizeof(bad_eps) / sizeof(bad_eps[0]); i++) {
        struct etcd_config b = {.endpoints = {bad_eps[i]}, .n_endpoints = 1};
        c = NULL;
        CHECK(etcd_client_new(&b, &c, &err) == -EINVAL && c == NULL);
    }
    struct etcd_config none = {.n_endpoints = 0};
    CHECK(etcd_client_new(&none, &c, &err) == -EINVAL);
    struct etcd_config neg = {.endpoints = {"http://a:1"}, .n_endpoints = 1, .timeout_ms = -5};
    CHECK(etcd_client_new(&neg, &c, &err) == -EINVAL);
    struct etcd_config half = {.endpoints = {"http://a:1"}, .n_endpoints = 1, .cert_file = "x"};
    CHECK(etcd_client_new(&half, &c, &err) == -EINVAL);
    struct etcd_config pfx = {.endpoints = {"http://a:1"}, .n_endpoints = 1, .api_prefix = "/v2"};
    CHECK(etcd_client_new(&pfx, &c, &err) == -EINVAL);
    free(err);
}

TEST(client_refuses_bad_arguments_without_sending)
{
    /* port 9 on an unroutable test address: nothing is sent because arguments fail first */
    struct etcd_config cfg = {.endpoints = {"http://192.0.2.1:9"}, .n_endpoints = 1,
                              .timeout_ms = 50};
    struct etcd_client *c = NULL;
    char *err = NULL;
    CHECK(etcd_client_new(&cfg, &c, &err) == 0);
    if (!c)
        return;
    struct etcd_range r;
    int64_t id = 0, ttl = 0;
    CHECK(etcd_get(c, "", &r, &err) == -EINVAL);
    CHECK(etcd_put(c, "k", NULL, 3, 0, NULL, &err) == -EINVAL);
    CHECK(etcd_put(c, "k", "v", 1, -1, NULL, &err) == -EINVAL);
    CHECK(etcd_lease_grant(c, 1, &id, &ttl, &err) == -EINVAL);
    CHECK(etcd_lease_keepalive(c, 0, &ttl, &err) == -EINVAL);
    CHECK(etcd_member_promote(c, 0, &err) == -EINVAL);
    const char *urls[] = {"gopher://x"};
    uint64_t mid;
    CHECK(etcd_member_add(c, urls, 1, true, &mid, NULL, &err) == -EINVAL);
    struct etcd_watch *w = NULL;
    CHECK(etcd_watch_start(c, "", 0, &w, &err) == -EINVAL && w == NULL);
    etcd_client_free(c);
    free(err);
}

CHECK_MAIN("etcd", CASE(base64_vectors), CASE(base64_binary_roundtrip),
           CASE(base64_strict_decoder), CASE(prefix_range_end), CASE(answer_errors_are_mapped),
           CASE(answer_too_large), CASE(range_with_and_without_kvs), CASE(range_malformed),
           CASE(put_and_delete), CASE(txn_outcomes), CASE(txn_malformed),
           CASE(lease_grant_and_keepalive), CASE(member_list_add_and_status),
           CASE(watch_responses), CASE(splitter_on_every_boundary),
           CASE(splitter_refuses_garbage_and_overflow), CASE(client_config_is_validated),
           CASE(client_refuses_bad_arguments_without_sending))
