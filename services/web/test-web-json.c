/* Unit tests for the dashboard's JSON: modules, field errors, events, status mapping, names. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "rpc/rpc.h"
#include "services/web/web-journal.h"
#include "services/web/web-json.h"

static void test_module(void **state) {
        Callassistant__V1__ModuleInfo m = CALLASSISTANT__V1__MODULE_INFO__INIT;
        Callassistant__V1__EntityType t = CALLASSISTANT__V1__ENTITY_TYPE__INIT;
        Callassistant__V1__EntityType *types[] = { &t };
        char *deps[] = { "camera" }, *caps[] = { "rtsp" }, *out[] = { "rtsp" };
        json_t *j;

        m.name = "go2rtc";
        m.unit = "call-assistant-module@go2rtc.service";
        m.status = CALLASSISTANT__V1__MODULE_STATUS__MODULE_STATUS_READY;
        m.health = CALLASSISTANT__V1__HEALTH_STATUS__HEALTH_STATUS_SERVING;
        m.main_pid = 42;
        m.n_restarts = 3;
        m.n_dependencies = 1;
        m.dependencies = deps;
        t.name = "camera";
        t.n_capabilities = 1;
        t.capabilities = caps;
        t.n_media_out = 1;
        t.media_out = out;
        m.n_entity_types = 1;
        m.entity_types = types;

        j = web_module_json(&m, -1);
        assert_non_null(j);
        assert_string_equal(json_string_value(json_object_get(j, "state")), "READY");
        assert_string_equal(json_string_value(json_object_get(j, "health")), "serving");
        assert_int_equal(json_integer_value(json_object_get(j, "main_pid")), 42);
        assert_int_equal(json_integer_value(json_object_get(j, "restarts")), 3);
        assert_string_equal(json_string_value(json_array_get(json_object_get(j, "dependencies"), 0)), "camera");
        assert_true(json_is_null(json_object_get(j, "memory_bytes")));
        assert_string_equal(json_string_value(json_object_get(j, "version")), ""); /* NULL in the message */
        json_t *et = json_array_get(json_object_get(j, "entity_types"), 0);
        assert_string_equal(json_string_value(json_array_get(json_object_get(et, "media_out"), 0)), "rtsp");
        json_decref(j);

        m.has_resources = true;
        m.memory_current_bytes = 1234567;
        m.cpu_usage_nsec = 5;
        j = web_module_json(&m, 12.5);
        assert_int_equal(json_integer_value(json_object_get(j, "memory_bytes")), 1234567);
        assert_true(json_real_value(json_object_get(j, "cpu_percent")) == 12.5);
        json_decref(j);

        assert_string_equal(web_module_status_name(99), "UNKNOWN");
        assert_string_equal(web_module_status_name(-1), "UNKNOWN");
}

static void test_field_errors(void **state) {
        json_t *a = web_field_errors("/devices/1/host: expected type string, got integer; : missing; /port: must be <= 65535");

        assert_int_equal(json_array_size(a), 3);
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "path")), "/devices/1/host");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "message")),
                            "expected type string, got integer");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 1), "path")), "");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 2), "path")), "/port");
        json_decref(a);

        /* A message that is not in the format keeps its text, at the root. */
        a = web_field_errors("the module is not running");
        assert_int_equal(json_array_size(a), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "path")), "");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "message")), "the module is not running");
        json_decref(a);

        /* A module's refusal: the path inside its message. */
        a = web_field_errors("module needy refused the configuration: /ok: must be true");
        assert_int_equal(json_array_size(a), 1);
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "path")), "/ok");
        assert_string_equal(json_string_value(json_object_get(json_array_get(a, 0), "message")), "must be true");
        json_decref(a);

        a = web_field_errors("");
        assert_int_equal(json_array_size(a), 0);
        json_decref(a);
}

static void test_sse_and_errors(void **state) {
        json_t *d = json_pack("{s:s}", "message", "two\nlines");
        size_t len;
        char *s = web_sse_event("log", d, &len);
        char *body;

        /* Exactly one data line: the newline is escaped inside the JSON string. */
        assert_string_equal(s, "event: log\ndata: {\"message\":\"two\\nlines\"}\n\n");
        assert_int_equal(len, strlen(s));
        free(s);
        json_decref(d);

        body = web_error_body("no such module", NULL);
        assert_string_equal(body, "{\"error\":\"no such module\"}");
        free(body);
        body = web_error_body("invalid configuration", web_field_errors("/a: bad"));
        assert_string_equal(body, "{\"error\":\"invalid configuration\",\"fields\":[{\"path\":\"/a\",\"message\":\"bad\"}]}");
        free(body);

        assert_int_equal(web_http_status_of_rpc(RPC_NOT_FOUND), 404);
        assert_int_equal(web_http_status_of_rpc(RPC_INVALID_ARGUMENT), 422);
        assert_int_equal(web_http_status_of_rpc(RPC_FAILED_PRECONDITION), 409);
        assert_int_equal(web_http_status_of_rpc(RPC_UNAVAILABLE), 503);
        assert_int_equal(web_http_status_of_rpc(RPC_INTERNAL), 502);
}

static void test_names(void **state) {
        assert_true(web_name_valid("camera", 6));
        assert_true(web_name_valid("go2rtc-bridge.1", 15));
        assert_false(web_name_valid("", 0));
        assert_false(web_name_valid("..", 2));
        assert_false(web_name_valid(".", 1));
        assert_false(web_name_valid("a/b", 3));
        assert_false(web_name_valid("a\nb", 3));
}

static void test_log_query(void **state) {
        WebLogQuery q = {};
        char *storage = NULL;
        const char *what = NULL;

        assert_int_equal(web_log_query_parse("", &q, &storage, &what), 0);
        assert_int_equal(q.limit, 200);
        assert_int_equal(q.max_priority, 7);
        assert_null(q.before);
        free(storage);

        q = (WebLogQuery){};
        assert_int_equal(web_log_query_parse("limit=50&priority=3&q=hello+world%21&before=s%3D1%3Bi%3D2", &q, &storage,
                                             &what),
                         0);
        assert_int_equal(q.limit, 50);
        assert_int_equal(q.max_priority, 3);
        assert_string_equal(q.text, "hello world!");
        assert_string_equal(q.before, "s=1;i=2");
        free(storage);

        q = (WebLogQuery){};
        assert_int_equal(web_log_query_parse("limit=0", &q, &storage, &what), -EINVAL);
        assert_non_null(strstr(what, "limit"));
        free(storage);
        q = (WebLogQuery){};
        assert_int_equal(web_log_query_parse("priority=9", &q, &storage, &what), -EINVAL);
        free(storage);
        q = (WebLogQuery){};
        assert_int_equal(web_log_query_parse("q=%zz", &q, &storage, &what), -EINVAL);
        free(storage);
        q = (WebLogQuery){};
        assert_int_equal(web_log_query_parse("q=%4", &q, &storage, &what), -EINVAL);
        free(storage);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_module), cmocka_unit_test(test_field_errors), cmocka_unit_test(test_sse_and_errors),
                cmocka_unit_test(test_names),  cmocka_unit_test(test_log_query),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
