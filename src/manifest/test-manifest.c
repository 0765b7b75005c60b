/* Unit tests for manifests, discovery and the dependency graph: every error names file,
 * line, column and field; bad modules and their dependents are disabled, the rest are not. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "graph/dep-graph.h"
#include "manifest/module-discovery.h"

static char root[256];

static void write_file(const char *rel, const char *text) {
        char path[512], dir[512];
        FILE *f;

        snprintf(path, sizeof(path), "%s/%s", root, rel);
        snprintf(dir, sizeof(dir), "%s", path);
        for (char *s = dir + strlen(root) + 1; *s; s++)
                if (*s == '/') {
                        *s = 0;
                        mkdir(dir, 0755);
                        *s = '/';
                }
        f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
}

static int setup(void **state) {
        snprintf(root, sizeof(root), "/tmp/ca-manifest-test-XXXXXX");
        assert_non_null(mkdtemp(root));
        return 0;
}

static int teardown(void **state) {
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
        assert_int_equal(system(cmd), 0);
        return 0;
}

/* All diagnostics as one string. */
static char *render(const Diagnostics *d) {
        char *buf = NULL;
        size_t size;
        FILE *f = open_memstream(&buf, &size);
        diagnostics_print(d, f);
        fclose(f);
        return buf;
}

#define GOOD(name, deps)                                                                                          \
        "name: " name "\nversion: \"1.0\"\ndescription: test\ncommand: ./run\ndependencies: " deps "\n"

static void test_valid_manifest(void **state) {
        Diagnostics d = {};
        Manifest *m = NULL;
        char path[300];

        write_file("a/module.yaml", "# comment\nname: \"go2rtc-bridge\"\nversion: \"1.0.0\"\n"
                                    "description: \"RTSP to WebRTC\"\ncommand: \"./go2rtc-module\"\n"
                                    "dev_command: \"go run . --dev\"\ndependencies:\n  - \"b\"\n  - c\n");
        snprintf(path, sizeof(path), "%s/a/module.yaml", root);
        assert_int_equal(manifest_parse_file(path, "a", &m, &d), 0);
        assert_true(m->valid);
        assert_int_equal(d.n, 0);
        assert_string_equal(m->name, "go2rtc-bridge");
        assert_string_equal(m->command, "./go2rtc-module");
        assert_string_equal(m->dev_command, "go run . --dev");
        assert_string_equal(m->dependencies[0], "b");
        assert_string_equal(m->dependencies[1], "c");
        assert_null(m->dependencies[2]);
        assert_int_equal(m->dependency_lines[1], 9);
        assert_int_equal(m->dependency_columns[1], 5);
        manifest_free(m);
        diagnostics_done(&d);
}

static void expect_error(const char *text, const char *needle) {
        Diagnostics d = {};
        Manifest *m = NULL;
        char path[300];
        char *out;

        write_file("x/module.yaml", text);
        snprintf(path, sizeof(path), "%s/x/module.yaml", root);
        assert_int_equal(manifest_parse_file(path, "x", &m, &d), 0);
        assert_false(m->valid);
        assert_non_null(m->disabled_reason);
        out = render(&d);
        if (!strstr(out, needle))
                fail_msg("expected '%s' in:\n%s", needle, out);
        assert_non_null(strstr(out, path));
        free(out);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_errors(void **state) {
        expect_error("name: [unclosed\n", "x/module.yaml:2:1: error: invalid YAML");
        expect_error("", "x/module.yaml:1:1: error: the manifest is empty");
        expect_error("- a\n- b\n", "1:1: error: the manifest must be a mapping");
        expect_error("name: a\nversion: \"1\"\ndescription: d\n", "1:1: error: field 'command': missing (required)");
        expect_error("name: a\nversion: \"1\"\ncommand: \"\"\n", "3:10: error: field 'command': must not be empty");
        expect_error("name: Bad Name\nversion: \"1\"\ncommand: x\n", "1:7: error: field 'name': 'Bad Name' is not a valid name");
        expect_error("name: {a: 1}\nversion: \"1\"\ncommand: x\n", "1:7: error: field 'name': expected a string, got a mapping");
        expect_error("name: a\nversion: \"1\"\ncommand: x\ndependencies: b\n",
                     "4:15: error: field 'dependencies': expected a list of module names, got a scalar");
        expect_error("name: a\nversion: \"1\"\ncommand: x\ndependencies: [a]\n",
                     "4:16: error: field 'dependencies': a module cannot depend on itself");
        expect_error("name: a\nversion: \"1\"\ncommand: x\ndependencies: [b, b]\n",
                     "4:19: error: field 'dependencies': 'b' is listed twice");
        expect_error("name: a\nname: b\nversion: \"1\"\ncommand: x\n",
                     "2:1: error: field 'name': duplicate key (first at line 1)");
        expect_error("name: a\nversion: \"1\"\ncommand: x\n---\nname: b\n", "5:1: error: more than one YAML document");
}

static void test_unknown_key_is_a_warning(void **state) {
        Diagnostics d = {};
        Manifest *m = NULL;
        char path[300], *out;

        write_file("w/module.yaml", GOOD("w", "[]") "colour: blue\n");
        snprintf(path, sizeof(path), "%s/w/module.yaml", root);
        assert_int_equal(manifest_parse_file(path, "w", &m, &d), 0);
        assert_true(m->valid);
        assert_int_equal(d.n_errors, 0);
        assert_int_equal(d.n_warnings, 1);
        out = render(&d);
        assert_non_null(strstr(out, "w/module.yaml:6:1: warning: field 'colour': unknown key, ignored"));
        free(out);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_discovery_and_graph(void **state) {
        Diagnostics d = {};
        ModuleSet set = {};
        Manifest **order = NULL;
        char *out;

        write_file("base/module.yaml", GOOD("base", "[]"));
        write_file("app/module.yaml", GOOD("app", "[base]"));
        write_file("vendor/nested/module.yaml", GOOD("nested", "[app]"));
        write_file("vendor/nested/sub/module.yaml", GOOD("not-a-module", "[]")); /* inside a module: ignored */
        write_file(".hidden/module.yaml", GOOD("hidden", "[]"));
        write_file("node_modules/x/module.yaml", GOOD("npm", "[]"));
        write_file("build-1/module.yaml", GOOD("built", "[]"));
        write_file("broken/module.yaml", "name: broken\nversion: \"1\"\n");
        write_file("needs-broken/module.yaml", GOOD("needs-broken", "[broken]"));
        write_file("lonely/module.yaml", GOOD("lonely", "[ghost]"));
        write_file("c1/module.yaml", GOOD("c1", "[c2]"));
        write_file("c2/module.yaml", GOOD("c2", "[c3]"));
        write_file("c3/module.yaml", GOOD("c3", "[c1]"));
        write_file("after-cycle/module.yaml", GOOD("after-cycle", "[c2]"));
        write_file("dup1/module.yaml", GOOD("twin", "[]"));
        write_file("dup2/module.yaml", GOOD("twin", "[]"));
        char loop[300];
        snprintf(loop, sizeof(loop), "%s/vendor/loop", root);
        assert_int_equal(symlink(root, loop), 0); /* a symlink loop must not hang or duplicate */

        assert_int_equal(discovery_scan(root, &set, &d), 0);
        assert_int_equal(graph_resolve(&set, &d), 0);
        out = render(&d);

        assert_int_equal(set.n, 12);
        assert_null(module_set_find(&set, "hidden"));
        assert_null(module_set_find(&set, "npm"));
        assert_null(module_set_find(&set, "built"));
        assert_null(module_set_find(&set, "not-a-module"));
        assert_string_equal(module_set_find(&set, "nested")->rel_dir, "vendor/nested");

        assert_null(module_set_find(&set, "base")->disabled_reason);
        assert_null(module_set_find(&set, "app")->disabled_reason);
        assert_null(module_set_find(&set, "nested")->disabled_reason);
        assert_non_null(module_set_find(&set, "needs-broken")->disabled_reason);
        assert_non_null(strstr(module_set_find(&set, "needs-broken")->disabled_reason, "dependency 'broken' is disabled"));
        assert_string_equal(module_set_find(&set, "lonely")->disabled_reason, "missing dependency 'ghost'");
        assert_string_equal(module_set_find(&set, "c1")->disabled_reason, "part of a dependency cycle");
        assert_non_null(module_set_find(&set, "after-cycle")->disabled_reason);

        assert_non_null(strstr(out, "lonely/module.yaml:5:16: error: field 'dependencies': module 'lonely' depends on 'ghost', which does not exist"));
        if (!strstr(out, "dependency cycle: c1 -> c2 -> c3 -> c1"))
                fail_msg("%s", out);
        assert_non_null(strstr(out, "dup2/module.yaml:1:7: error: field 'name': duplicate module name 'twin'"));
        assert_non_null(strstr(out, "broken/module.yaml:1:1: error: field 'command': missing (required)"));

        assert_int_equal(graph_start_order(&set, &order), 0);
        assert_string_equal(order[0]->name, "base");
        assert_string_equal(order[1]->name, "app");
        assert_string_equal(order[2]->name, "nested");
        assert_null(order[3]);

        free(order);
        free(out);
        module_set_done(&set);
        diagnostics_done(&d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_valid_manifest, setup, teardown),
                cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_unknown_key_is_a_warning, setup, teardown),
                cmocka_unit_test_setup_teardown(test_discovery_and_graph, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
