/* Unit tests for the entity registry: put/replace, removal, sync from a module's listing,
 * availability. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "registry/entity-registry.h"

static EntityRecord rec(const char *module, const char *id, const char *state) {
        static char *attrs[] = { (char *)"url", (char *)"rtsp://cam/1", NULL };
        return (EntityRecord){ .module = (char *)module, .id = (char *)id, .type = (char *)"camera",
                               .name = (char *)id, .state = (char *)state, .attributes = attrs, .available = true };
}

static void test_put_find_replace_remove(void **state) {
        EntityRegistry r = {};
        EntityRecord a = rec("cams", "front", "idle"), b = rec("cams", "back", "idle"), c = rec("conv", "front", "x");

        assert_int_equal(entity_registry_put(&r, &a), 0);
        assert_int_equal(entity_registry_put(&r, &b), 0);
        assert_int_equal(entity_registry_put(&r, &c), 0);
        assert_int_equal(r.n, 3);
        /* Same id in another module is another entity. */
        assert_string_equal(entity_registry_find(&r, "conv", "front")->state, "x");
        assert_string_equal(entity_registry_find(&r, "cams", "front")->state, "idle");
        assert_string_equal(entity_record_attribute(entity_registry_find(&r, "cams", "front"), "url"), "rtsp://cam/1");
        assert_null(entity_record_attribute(entity_registry_find(&r, "cams", "front"), "nope"));

        a.state = (char *)"streaming";
        assert_int_equal(entity_registry_put(&r, &a), 0);
        assert_int_equal(r.n, 3);
        assert_string_equal(entity_registry_find(&r, "cams", "front")->state, "streaming");

        assert_int_equal(entity_registry_remove(&r, "cams", "front"), 0);
        assert_int_equal(entity_registry_remove(&r, "cams", "front"), -ENOENT);
        assert_null(entity_registry_find(&r, "cams", "front"));
        assert_null(entity_registry_find(&r, NULL, "front"));
        assert_int_equal(r.n, 2);
        entity_registry_done(&r);
        assert_int_equal(r.n, 0);
}

static void test_sync_and_availability(void **state) {
        EntityRegistry r = {};
        EntityRecord a = rec("cams", "a", "idle"), b = rec("cams", "b", "idle"), other = rec("tv", "a", "on");
        EntityRecord listing[2] = { rec("cams", "b", "new"), rec("cams", "c", "idle") };

        assert_int_equal(entity_registry_put(&r, &a), 0);
        assert_int_equal(entity_registry_put(&r, &b), 0);
        assert_int_equal(entity_registry_put(&r, &other), 0);

        /* The module went away: its entities stay, unavailable; others are untouched. */
        entity_registry_set_available(&r, "cams", false);
        assert_false(entity_registry_find(&r, "cams", "a")->available);
        assert_false(entity_registry_find(&r, "cams", "b")->available);
        assert_true(entity_registry_find(&r, "tv", "a")->available);

        /* It is back and lists b and c: a is gone, b replaced and available, c added. */
        assert_int_equal(entity_registry_sync_module(&r, "cams", listing, 2), 0);
        assert_null(entity_registry_find(&r, "cams", "a"));
        assert_string_equal(entity_registry_find(&r, "cams", "b")->state, "new");
        assert_true(entity_registry_find(&r, "cams", "b")->available);
        assert_non_null(entity_registry_find(&r, "cams", "c"));
        assert_int_equal(entity_registry_count_module(&r, "cams"), 2);
        assert_int_equal(entity_registry_count_module(&r, "tv"), 1);

        /* An empty listing forgets them all. */
        assert_int_equal(entity_registry_sync_module(&r, "cams", NULL, 0), 0);
        assert_int_equal(entity_registry_count_module(&r, "cams"), 0);
        assert_int_equal(r.n, 1);
        entity_registry_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_put_find_replace_remove),
                cmocka_unit_test(test_sync_and_availability),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
