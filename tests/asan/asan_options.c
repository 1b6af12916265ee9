/* Linked only into the sanitizer build of the charm (make charm-asan): where ASan and
 * UBSan report inside a unit, so that the integration test can read their findings. */

/* The sanitizer runtimes look these up by name; they must have external linkage. */
const char *__asan_default_options(void);   // NOLINT(bugprone-reserved-identifier)
const char *__ubsan_default_options(void);  // NOLINT(bugprone-reserved-identifier)

const char *__asan_default_options(void)    // NOLINT(bugprone-reserved-identifier)
{
    /* Leak checking needs ptrace, which a unit's PID namespace may not allow; the agent
     * only exits when stopped anyway. */
    return "log_path=/var/log/pg-agent/asan:detect_leaks=0:abort_on_error=0";
}

const char *__ubsan_default_options(void)   // NOLINT(bugprone-reserved-identifier)
{
    return "log_path=/var/log/pg-agent/ubsan:print_stacktrace=1";
}
