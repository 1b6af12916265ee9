/* libFuzzer target for agent/tls_wire.c: any bytes as the provider's `certificates` value
 * go through tls_wire_parse_provider; every entry read is matched (tls_wire_find) against a
 * fixed request, checked (tls_wire_check) with a fixed key, and its request echoed through
 * tls_wire_requests; everything is freed (sanitizers catch leaks and memory errors).
 *
 * The key is derived from a fixed scalar, so that the seed corpus (tests/fuzz/corpus/
 * fuzz_tls_provider) can hold this key's request and certificates for it (from a CA valid
 * for 100 years): the fuzzer starts past the key check, deep in the chain checks. */
#include "errmsg.h"
#include "password.h"
#include "tls_wire.h"
#include "x509.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The request of the seed corpus, for the fixed key (x509_csr_create_unique). */
static const char my_csr[] = "-----BEGIN CERTIFICATE REQUEST-----\n"
                             "MIIBPDCB4gIBADBGMRUwEwYDVQQDDAxwb3N0Z3Jlc3FsLTAxLTArBgNVBC0MJDY2\n"
                             "NjEzYTYyLTEzNWEtNDc2NS04NWQ5LWJhMDYxZDdjMzJmNDBZMBMGByqGSM49AgEG\n"
                             "CCqGSM49AwEHA0IABBHySjjea/EINhovsVPbLmB0dDtXS1oAZLVjQkzOnBl09JJC\n"
                             "9Jas3eupUsksQ42ojclDl89CUm2y1EOBIjr+67WgOjA4BgkqhkiG9w0BCQ4xKzAp\n"
                             "MCcGA1UdEQQgMB6CDHBvc3RncmVzcWwtMIIIMTAuMC4wLjWHBAoAAAUwCgYIKoZI\n"
                             "zj0EAwIDSQAwRgIhAJ1+4PI4COkwJVgflrTK44Y/3IHUTan7kEJBD2sX8UMrAiEA\n"
                             "yf3YlhawGmxvGHQ4+hcOY4UG/mwTZGJJxBaTq/GHiXU=\n"
                             "-----END CERTIFICATE REQUEST-----\n";

static char *my_key;
static time_t now;

/* The fixed EC P-256 private key as PKCS#8 PEM (malloc'd), NULL on failure. */
static char *fixed_key(void)
{
    static const char label[] = "fuzz_tls_provider fixed key";
    unsigned char d[SHA256_DIGEST_LENGTH], pub[65];
    SHA256((const unsigned char *)label, sizeof(label) - 1, d);
    BIGNUM *priv = BN_bin2bn(d, (int)sizeof(d), NULL);
    EC_GROUP *g = EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1);
    EC_POINT *pt = g ? EC_POINT_new(g) : NULL;
    size_t publen = 0;
    if (priv && pt && EC_POINT_mul(g, pt, priv, NULL, NULL, NULL) == 1)
        publen = EC_POINT_point2oct(g, pt, POINT_CONVERSION_UNCOMPRESSED, pub, sizeof(pub), NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    if (bld && publen &&
        OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, priv) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, publen))
        params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = params ? EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL) : NULL;
    EVP_PKEY *pk = NULL;
    if (ctx && EVP_PKEY_fromdata_init(ctx) == 1)
        (void)EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_KEYPAIR, params);
    BIO *b = pk ? BIO_new(BIO_s_mem()) : NULL;
    char *out = NULL;
    if (b && PEM_write_bio_PrivateKey(b, pk, NULL, NULL, 0, NULL, NULL) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        out = n > 0 ? strndup(data, (size_t)n) : NULL;
    }
    BIO_free(b);
    EVP_PKEY_free(pk);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    EC_POINT_free(pt);
    EC_GROUP_free(g);
    BN_free(priv);
    return out;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    my_key = fixed_key();
    now = time(NULL);
    /* the seeds are for this key: a mismatch would make the corpus shallow, so stop */
    struct x509_csr_info info;
    bool same = false;
    char *err = NULL;
    if (!my_key || x509_key_check(my_key, strlen(my_key), &err) != 0 ||
        x509_csr_info(my_csr, &info, &err) != 0 || x509_csr_same(my_csr, my_csr, &same, &err) != 0)
        abort();
    free(err);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct tls_provided *v = NULL;
    size_t n = 0;
    char *problems = NULL, *err = NULL;
    int rc = tls_wire_parse_provider((const char *)data, size, &v, &n, &problems, &err);
    if (rc == 0) {
        if ((n == 0) != (v == NULL) || n > TLS_WIRE_MAX_ENTRIES || err)
            abort();
        if (problems && (strstr(problems, "-----") || strstr(problems, "BEGIN")))
            abort();
        int found = tls_wire_find(v, n, my_csr);
        if (found < -1 || found >= (int)n)
            abort();
        for (size_t i = 0; i < n; i++) {
            if (!v[i].csr || !v[i].certificate || !v[i].ca || (v[i].n_chain && !v[i].chain))
                abort();
            struct tls_checked out;
            char *why = NULL;
            int c = tls_wire_check(&v[i], my_key, false, now, &out, &why);
            if (c == 0 && (!out.fullchain || !out.ca || !out.certificate || why ||
                           strncmp(out.fullchain, out.certificate, strlen(out.certificate)) != 0))
                abort();
            if (c != 0 && (!why || out.fullchain || strstr(why, "-----")))
                abort();
            tls_checked_clear(&out);
            free(why);
            char *json = NULL, *jerr = NULL;
            if (tls_wire_requests(v[i].csr, v[i].revoked, &json, &jerr) == 0 && !json)
                abort();
            free(json);
            free(jerr);
        }
    } else if (v || n || problems || !err || strstr(err, "-----")) {
        abort();
    }
    free(problems);
    free(err);
    tls_provided_free(v, n);
    return 0;
}
