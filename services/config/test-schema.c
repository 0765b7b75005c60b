/* Unit tests for the JSON Schema subset: every keyword, compile errors, defaults, secrets. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "services/config/schema.h"

/* json_decrefp() comes with jansson (2.9+). */

static json_t *parse(const char *text) {
        json_error_t err;
        json_t *j = json_loads(text, JSON_DECODE_ANY, &err);

        if (!j)
                fail_msg("bad test JSON %s: %s", text, err.text);
        return j;
}

static Schema *compile_ok(const char *text) {
        _cleanup_(json_decrefp) json_t *j = parse(text);
        _cleanup_(schema_errors_clear) SchemaErrors errors = {};
        Schema *s = NULL;
        int r = schema_compile(j, &s, &errors);

        if (r < 0) {
                _cleanup_free_ char *m = schema_errors_format(&errors);
                fail_msg("schema %s did not compile: %s", text, m);
        }
        return s;
}

/* Expected: NULL if valid, else the formatted errors ("path: message; ..."). */
static const struct {
        const char *schema;
        const char *doc;
        const char *errors;
} cases[] = {
        /* type */
        { "{\"type\":\"string\"}", "\"x\"", NULL },
        { "{\"type\":\"string\"}", "1", ": expected type string, got integer" },
        { "{\"type\":\"integer\"}", "3", NULL },
        { "{\"type\":\"integer\"}", "3.0", NULL },
        { "{\"type\":\"integer\"}", "3.5", ": expected type integer, got number" },
        { "{\"type\":\"number\"}", "3.5", NULL },
        { "{\"type\":\"number\"}", "3", NULL },
        { "{\"type\":\"number\"}", "\"3\"", ": expected type number, got string" },
        { "{\"type\":\"boolean\"}", "false", NULL },
        { "{\"type\":\"boolean\"}", "null", ": expected type boolean, got null" },
        { "{\"type\":\"null\"}", "null", NULL },
        { "{\"type\":\"object\"}", "{}", NULL },
        { "{\"type\":\"object\"}", "[]", ": expected type object, got array" },
        { "{\"type\":\"array\"}", "[]", NULL },
        { "{\"type\":\"array\"}", "{}", ": expected type array, got object" },
        { "{\"type\":[\"string\",\"null\"]}", "null", NULL },
        { "{\"type\":[\"string\",\"null\"]}", "true", ": expected type null or string, got boolean" },
        /* properties, nested, JSON pointer paths */
        { "{\"properties\":{\"devices\":{\"type\":\"array\",\"items\":{\"type\":\"object\","
          "\"properties\":{\"host\":{\"type\":\"string\"}},\"required\":[\"host\"]}}}}",
          "{\"devices\":[{\"host\":\"a\"},{\"host\":5},{}]}",
          "/devices/1/host: expected type string, got integer; "
          "/devices/2/host: required property missing" },
        { "{\"properties\":{\"a/b~c\":{\"type\":\"string\"}}}", "{\"a/b~c\":1}",
          "/a~1b~0c: expected type string, got integer" },
        /* required */
        { "{\"required\":[\"a\",\"b\"]}", "{\"a\":1,\"b\":2}", NULL },
        { "{\"required\":[\"a\",\"b\"]}", "{\"a\":1}", "/b: required property missing" },
        /* additionalProperties */
        { "{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1}", NULL },
        { "{\"properties\":{\"a\":{}},\"additionalProperties\":false}", "{\"a\":1,\"b\":2}",
          "/b: additional property not allowed" },
        { "{\"properties\":{\"a\":{}},\"additionalProperties\":true}", "{\"b\":2}", NULL },
        { "{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"x\":1}", NULL },
        { "{\"additionalProperties\":{\"type\":\"integer\"}}", "{\"x\":\"s\"}",
          "/x: expected type integer, got string" },
        /* enum, const */
        { "{\"enum\":[\"a\",\"b\"]}", "\"b\"", NULL },
        { "{\"enum\":[\"a\",\"b\"]}", "\"c\"", ": must be one of [\"a\",\"b\"]" },
        { "{\"const\":5}", "5", NULL },
        { "{\"const\":5}", "6", ": must be equal to 5" },
        /* numeric bounds */
        { "{\"minimum\":0}", "0", NULL },
        { "{\"minimum\":0}", "-1", ": must be >= 0" },
        { "{\"minimum\":1.5}", "1.25", ": must be >= 1.5" },
        { "{\"maximum\":10}", "10", NULL },
        { "{\"maximum\":10}", "10.5", ": must be <= 10" },
        { "{\"exclusiveMinimum\":0}", "0.1", NULL },
        { "{\"exclusiveMinimum\":0}", "0", ": must be > 0" },
        { "{\"exclusiveMaximum\":10}", "9", NULL },
        { "{\"exclusiveMaximum\":10}", "10", ": must be < 10" },
        { "{\"minimum\":0}", "\"not a number\"", NULL }, /* bounds only apply to numbers */
        /* string length in code points */
        { "{\"minLength\":2}", "\"\xc3\xa9\xc3\xa9\"", NULL },
        { "{\"minLength\":2}", "\"\xc3\xa9\"", ": must be at least 2 characters long" },
        { "{\"maxLength\":2}", "\"\xc3\xa9\xc3\xa9\"", NULL },
        { "{\"maxLength\":2}", "\"abc\"", ": must be at most 2 characters long" },
        /* pattern (POSIX ERE) */
        { "{\"pattern\":\"^[a-z]+$\"}", "\"abc\"", NULL },
        { "{\"pattern\":\"^[a-z]+$\"}", "\"ab1\"", ": does not match pattern ^[a-z]+$" },
        { "{\"pattern\":\"[0-9]{2}\"}", "\"x12y\"", NULL },
        /* items, minItems, maxItems */
        { "{\"items\":{\"type\":\"integer\"}}", "[1,2]", NULL },
        { "{\"items\":{\"type\":\"integer\"}}", "[1,\"x\"]", "/1: expected type integer, got string" },
        { "{\"minItems\":1}", "[1]", NULL },
        { "{\"minItems\":1}", "[]", ": must have at least 1 items" },
        { "{\"maxItems\":1}", "[1]", NULL },
        { "{\"maxItems\":1}", "[1,2]", ": must have at most 1 items" },
        /* several errors at once */
        { "{\"type\":\"object\",\"properties\":{\"port\":{\"type\":\"integer\",\"minimum\":1,"
          "\"maximum\":65535},\"name\":{\"type\":\"string\",\"minLength\":1}},"
          "\"required\":[\"port\",\"name\"]}",
          "{\"port\":70000,\"name\":\"\"}",
          "/port: must be <= 65535; /name: must be at least 1 characters long" },
};

static void test_validate_table(void **state) {
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_(schema_freep) Schema *s = compile_ok(cases[i].schema);
                _cleanup_(json_decrefp) json_t *doc = parse(cases[i].doc);
                _cleanup_(schema_errors_clear) SchemaErrors errors = {};
                _cleanup_free_ char *got = NULL;
                int r = schema_validate(s, doc, &errors);

                assert_true(r >= 0);
                got = schema_errors_format(&errors);
                assert_non_null(got);
                if (!cases[i].errors) {
                        if (r != 0)
                                fail_msg("case %zu (%s on %s): unexpected errors: %s", i,
                                         cases[i].schema, cases[i].doc, got);
                } else if (r == 0 || strcmp(got, cases[i].errors) != 0)
                        fail_msg("case %zu (%s on %s): expected \"%s\", got \"%s\"", i,
                                 cases[i].schema, cases[i].doc, cases[i].errors, got);
                else
                        assert_int_equal((size_t)r, errors.n);
        }
}

static bool errors_contain(const SchemaErrors *e, const char *path, const char *needle) {
        for (size_t i = 0; i < e->n; i++)
                if (strcmp(e->items[i].path, path) == 0 && strstr(e->items[i].message, needle))
                        return true;
        return false;
}

static void test_compile_errors(void **state) {
        static const struct {
                const char *schema;
                const char *path;
                const char *message;
        } bad[] = {
                { "{\"oneOf\":[]}", "/oneOf", "unsupported keyword" },
                { "{\"properties\":{\"x\":{\"type\":\"string\",\"if\":{}}}}", "/properties/x/if",
                  "unsupported keyword" },
                { "{\"items\":{\"$ref\":\"#/x\"}}", "/items/$ref", "unsupported keyword" },
                { "{\"items\":[{}]}", "/items", "tuple form" },
                { "{\"pattern\":\"(\"}", "/pattern", "invalid regular expression" },
                /* An escape it cannot check exactly is refused, never read as a letter (\d was "d"). */
                { "{\"pattern\":\"^\\\\s+$\"}", "/pattern", "\\s (white space, Unicode's in JSON Schema) is not supported" },
                { "{\"type\":\"str\"}", "/type", "unknown type" },
                { "{\"minLength\":-1}", "/minLength", "non-negative" },
                { "{\"minimum\":\"1\"}", "/minimum", "must be a number" },
                { "{\"exclusiveMinimum\":true}", "/exclusiveMinimum", "must be a number" },
                { "{\"required\":[1]}", "/required", "array of strings" },
                { "{\"enum\":[]}", "/enum", "non-empty" },
                { "{\"properties\":{\"a\":1}}", "/properties/a", "must be a JSON object" },
                { "[]", "", "must be a JSON object" },
        };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(json_decrefp) json_t *j = parse(bad[i].schema);
                _cleanup_(schema_errors_clear) SchemaErrors errors = {};
                Schema *s = NULL;

                assert_int_equal(schema_compile(j, &s, &errors), -EINVAL);
                assert_null(s);
                if (!errors_contain(&errors, bad[i].path, bad[i].message)) {
                        _cleanup_free_ char *m = schema_errors_format(&errors);
                        fail_msg("case %zu: expected %s: %s, got %s", i, bad[i].path,
                                 bad[i].message, m);
                }
        }

        /* Several unsupported keywords are all reported, not just the first. */
        _cleanup_(json_decrefp) json_t *j = parse("{\"anyOf\":[],\"properties\":{\"x\":{\"not\":{}}}}");
        _cleanup_(schema_errors_clear) SchemaErrors errors = {};
        Schema *s = NULL;
        assert_int_equal(schema_compile(j, &s, &errors), -EINVAL);
        assert_int_equal(errors.n, 2);
        assert_true(errors_contain(&errors, "/anyOf", "unsupported"));
        assert_true(errors_contain(&errors, "/properties/x/not", "unsupported"));
}

static void test_annotations_accepted(void **state) {
        _cleanup_(schema_freep) Schema *s = compile_ok(
                "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"x\","
                "\"title\":\"t\",\"description\":\"d\",\"$comment\":\"c\",\"examples\":[{}],"
                "\"type\":\"object\",\"properties\":{\"u\":{\"type\":\"string\",\"format\":\"uri\","
                "\"readOnly\":true,\"default\":\"x\"},\"p\":{\"writeOnly\":false}}}");

        assert_non_null(s);
        assert_false(schema_has_secrets(s));
}

static void test_defaults(void **state) {
        _cleanup_(schema_freep) Schema *s = compile_ok(
                "{\"properties\":{\"a\":{\"default\":1},\"b\":{\"type\":\"object\",\"properties\":"
                "{\"c\":{\"default\":\"x\"}}},\"l\":{\"items\":{\"properties\":{\"d\":{\"default\":"
                "true}}}}}}");
        _cleanup_(json_decrefp) json_t *doc = parse("{\"b\":{},\"l\":[{},{\"d\":false}]}");
        _cleanup_(json_decrefp) json_t *want =
                parse("{\"a\":1,\"b\":{\"c\":\"x\"},\"l\":[{\"d\":true},{\"d\":false}]}");
        _cleanup_(json_decrefp) json_t *got = schema_apply_defaults(s, doc);
        _cleanup_(json_decrefp) json_t *empty = parse("{}");
        _cleanup_(json_decrefp) json_t *got2 = schema_apply_defaults(s, empty);
        _cleanup_(json_decrefp) json_t *want2 = parse("{\"a\":1}");

        assert_true(json_equal(got, want));
        assert_true(json_equal(got2, want2));
        /* The input is not modified. */
        assert_null(json_object_get(doc, "a"));
}

static const char *secret_schema =
        "{\"type\":\"object\",\"properties\":{\"user\":{\"type\":\"string\"},"
        "\"password\":{\"type\":\"string\",\"writeOnly\":true},"
        "\"token\":{\"type\":\"string\",\"format\":\"password\"},"
        "\"devices\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":"
        "{\"host\":{},\"key\":{\"writeOnly\":true}}}}}}";

static void test_redact(void **state) {
        _cleanup_(schema_freep) Schema *s = compile_ok(secret_schema);
        _cleanup_(json_decrefp) json_t *doc = parse(
                "{\"user\":\"u\",\"password\":\"p1\",\"token\":\"t1\","
                "\"devices\":[{\"host\":\"h\",\"key\":\"k1\"},{\"host\":\"h2\"}]}");
        _cleanup_(json_decrefp) json_t *want = parse(
                "{\"user\":\"u\",\"password\":\"********\",\"token\":\"********\","
                "\"devices\":[{\"host\":\"h\",\"key\":\"********\"},{\"host\":\"h2\"}]}");
        _cleanup_(json_decrefp) json_t *got = schema_redact(s, doc);

        assert_true(schema_has_secrets(s));
        assert_true(json_equal(got, want));
        assert_string_equal(json_string_value(json_object_get(doc, "password")), "p1");
}

static void test_merge_secrets(void **state) {
        _cleanup_(schema_freep) Schema *s = compile_ok(secret_schema);
        _cleanup_(json_decrefp) json_t *old = parse(
                "{\"user\":\"u\",\"password\":\"p1\",\"token\":\"t1\","
                "\"devices\":[{\"host\":\"h\",\"key\":\"k1\"}]}");
        /* Placeholder keeps, omission keeps, a new value replaces. */
        _cleanup_(json_decrefp) json_t *n1 = parse(
                "{\"user\":\"u2\",\"password\":\"********\","
                "\"devices\":[{\"host\":\"h2\",\"key\":\"********\"}]}");
        _cleanup_(json_decrefp) json_t *w1 = parse(
                "{\"user\":\"u2\",\"password\":\"p1\",\"token\":\"t1\","
                "\"devices\":[{\"host\":\"h2\",\"key\":\"k1\"}]}");
        _cleanup_(json_decrefp) json_t *g1 = schema_merge_secrets(s, old, n1);
        _cleanup_(json_decrefp) json_t *n2 = parse("{\"user\":\"u\",\"password\":\"p2\"}");
        _cleanup_(json_decrefp) json_t *w2 =
                parse("{\"user\":\"u\",\"password\":\"p2\",\"token\":\"t1\"}");
        _cleanup_(json_decrefp) json_t *g2 = schema_merge_secrets(s, old, n2);
        /* A placeholder with nothing stored is dropped, not stored as a password. */
        _cleanup_(json_decrefp) json_t *n3 = parse("{\"password\":\"********\"}");
        _cleanup_(json_decrefp) json_t *g3 = schema_merge_secrets(s, NULL, n3);

        assert_true(json_equal(g1, w1));
        assert_true(json_equal(g2, w2));
        assert_int_equal(json_object_size(g3), 0);
}

static void test_errors_format_splittable(void **state) {
        _cleanup_(schema_errors_clear) SchemaErrors e = {};
        _cleanup_free_ char *m = NULL;

        assert_int_equal(schema_errors_add(&e, "/a", "x; y"), 0);
        assert_int_equal(schema_errors_add(&e, "", "z"), 0);
        m = schema_errors_format(&e);
        assert_string_equal(m, "/a: x, y; : z");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_validate_table),
                cmocka_unit_test(test_compile_errors),
                cmocka_unit_test(test_annotations_accepted),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_redact),
                cmocka_unit_test(test_merge_secrets),
                cmocka_unit_test(test_errors_format_splittable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
