/* test_main.c — runs the registered C unit tests: `unit --list` or `unit NAME...`. */
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

#define TEST_MAX 512

static struct { const char *name; test_fn fn; } tests[TEST_MAX];
static int num_tests;
int test_failures;

void test_register(const char *name, test_fn fn)
{
    if (num_tests < TEST_MAX) {
        tests[num_tests].name = name;
        tests[num_tests].fn = fn;
        num_tests++;
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < num_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    int ran = 0;
    for (int a = 1; a < argc; a++) {
        for (int i = 0; i < num_tests; i++) {
            if (strcmp(tests[i].name, argv[a]) == 0 || strcmp(argv[a], "--all") == 0) {
                tests[i].fn();
                ran++;
            }
        }
    }
    if (ran == 0) {
        fprintf(stderr, "no test matched\n");
        return 2;
    }
    return test_failures ? 1 : 0;
}
