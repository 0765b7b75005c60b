/* Unit test for the logging helpers' return convention. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "shared/log.h"

static void test_log_returns_negative_errno(void **state) {
        log_set_max_level(LOG_CRIT); /* keep the test output quiet */
        assert_int_equal(log_error_errno(EINVAL, "x"), -EINVAL);
        assert_int_equal(log_error_errno(-ENOENT, "x: %m"), -ENOENT);
        assert_int_equal(log_debug_errno(0, "nothing"), 0);
}

static void test_take_ptr(void **state) {
        _cleanup_free_ char *p = malloc(4);
        char *q;

        assert_non_null(p);
        q = TAKE_PTR(p);
        assert_null(p);
        free(q);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_log_returns_negative_errno),
                cmocka_unit_test(test_take_ptr),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
