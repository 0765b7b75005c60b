/* Unit tests for module objects and the registry. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "registry/module.h"

static void test_state_names(void **state) {
        for (int i = 0; i < _MODULE_STATE_MAX; i++)
                for (int k = 0; k < i; k++)
                        assert_string_not_equal(module_state_to_string(i), module_state_to_string(k));
        assert_string_equal(module_state_to_string(MODULE_WAITING_FOR_CONFIG), "WAITING_FOR_CONFIG");
        assert_string_equal(module_state_to_string(_MODULE_STATE_MAX), "UNKNOWN");
}

static void test_registry_lookup(void **state) {
        Registry r = {};
        Module *a = module_new("a", "a", "/m/a"), *b = module_new("b", "sub/b", "/m/sub/b");

        assert_non_null(a);
        assert_non_null(b);
        a->token = strdup("0123456789abcdef");
        b->token = strdup("fedcba9876543210");
        b->unit = strdup("call-assistant-module@sub-b.service");
        assert_int_equal(registry_add(&r, a), 0);
        assert_int_equal(registry_add(&r, b), 0);

        assert_ptr_equal(registry_find(&r, "b"), b);
        assert_null(registry_find(&r, "c"));
        assert_ptr_equal(registry_find_by_unit(&r, "call-assistant-module@sub-b.service"), b);
        assert_ptr_equal(registry_find_by_token(&r, "0123456789abcdef"), a);
        assert_ptr_equal(registry_find_by_token(&r, "fedcba9876543210"), b);
        /* Prefixes, extensions, empty and missing tokens identify nobody. */
        assert_null(registry_find_by_token(&r, "0123456789abcde"));
        assert_null(registry_find_by_token(&r, "0123456789abcdef0"));
        assert_null(registry_find_by_token(&r, ""));
        assert_null(registry_find_by_token(&r, NULL));

        char *deps[] = { "x", "y", NULL };
        assert_int_equal(module_set_dependencies(a, deps), 0);
        assert_string_equal(a->dependencies[1], "y");
        assert_null(a->dependencies[2]);
        assert_int_equal(module_set_state(a, MODULE_ERROR, "boom"), 0);
        assert_string_equal(a->state_message, "boom");
        registry_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_state_names),
                cmocka_unit_test(test_registry_lookup),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
