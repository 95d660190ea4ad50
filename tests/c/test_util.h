/* test_util.h — the C unit-test harness: TEST_CASE registers a test at load time, CHECK
 * records a failure with file:line and keeps going, CHECK_EQ_INT prints both values.
 * tests/c/test_main.c runs one test by name (or lists them); tests/test_c_units.py builds
 * the binary (optionally under ASan+UBSan) and runs every test as its own pytest case. */
#ifndef LIGHTLLM_TEST_UTIL_H
#define LIGHTLLM_TEST_UTIL_H

#include <stdio.h>

typedef void (*test_fn)(void);
void test_register(const char *name, test_fn fn);
extern int test_failures;

#define TEST_CASE(name)                                                        \
    static void test_##name(void);                                             \
    __attribute__((constructor)) static void test_register_##name(void)        \
    {                                                                          \
        test_register(#name, test_##name);                                     \
    }                                                                          \
    static void test_##name(void)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                     \
    do {                                                                       \
        long long check_a_ = (long long)(a), check_b_ = (long long)(b);        \
        if (check_a_ != check_b_) {                                            \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n",  \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);           \
            test_failures++;                                                   \
        }                                                                      \
    } while (0)

#endif
