/* Minimal unit-test harness for the C tests: CHECK macros, a test table and a runner
 * that ends with the line "N passed, N failed" (the closing summary CI reads). */
#ifndef PG_CHECK_H
#define PG_CHECK_H

#include <stdio.h>
#include <string.h>

struct check_case {
    const char *name;
    void (*fn)(int *failed);
};

#define CHECK(cond)                                                                   \
    do {                                                                              \
        if (!(cond)) {                                                                \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            (*failed)++;                                                              \
        }                                                                             \
    } while (0)

#define CHECK_STR(a, b)                                                                   \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                          \
            fprintf(stderr, "  %s:%d: \"%s\" != \"%s\"\n", __FILE__, __LINE__,             \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                              \
            (*failed)++;                                                                  \
        }                                                                                 \
    } while (0)

#define TEST(name) static void name(int *failed)

static inline int check_run(const char *suite, const struct check_case *cases, size_t n)
{
    int passed = 0, failed_cases = 0;
    for (size_t i = 0; i < n; i++) {
        int failed = 0;
        cases[i].fn(&failed);
        if (failed) {
            failed_cases++;
            fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
        } else {
            passed++;
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed_cases);
    return failed_cases ? 1 : 0;
}

#define CHECK_MAIN(suite, ...)                                                       \
    int main(void)                                                                   \
    {                                                                                \
        static const struct check_case cases_[] = {__VA_ARGS__};                     \
        return check_run(suite, cases_, sizeof(cases_) / sizeof(cases_[0]));         \
    }
#define CASE(fn) {#fn, fn}

#endif
