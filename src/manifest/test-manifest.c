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

#include "graph/check.h"
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

static void expect_error_in(const char *rel_dir, const char *needle) {
        Diagnostics d = {};
        Manifest *m = NULL;
        char path[300];
        char *out;

        snprintf(path, sizeof(path), "%s/%s/module.yaml", root, rel_dir);
        assert_int_equal(manifest_parse_file(path, rel_dir, &m, &d), 0);
        assert_false(m->valid);
        assert_non_null(m->disabled_reason);
        out = render(&d);
        if (!strstr(out, needle))
                fail_msg("expected '%s' in:\n%s", needle, out);
        free(out);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_null_is_not_a_string(void **state) {
        Diagnostics d = {};
        Manifest *m = NULL;
        char path[300];

        /* "command: ~" is YAML's null, not the command "~". */
        expect_error("name: a\nversion: \"1\"\ncommand: ~\n",
                     "3:10: error: field 'command': expected a string, got null ('~'); quote it if it is meant");
        expect_error("name: a\nversion: null\ncommand: x\n", "2:10: error: field 'version': expected a string, got null");
        expect_error("name: NULL\nversion: \"1\"\ncommand: x\n", "1:7: error: field 'name': expected a string, got null");
        expect_error("name: a\nversion: \"1\"\ncommand: !!null x\n", "field 'command': expected a string, got null");
        /* Optional fields that are null are simply not set; a quoted "~" is a string. */
        write_file("n/module.yaml", "name: n\nversion: \"1\"\ncommand: \"~\"\ndescription: ~\ndev_command: null\n"
                                    "dependencies: ~\n");
        snprintf(path, sizeof(path), "%s/n/module.yaml", root);
        assert_int_equal(manifest_parse_file(path, "n", &m, &d), 0);
        assert_true(m->valid);
        assert_string_equal(m->command, "~");
        assert_null(m->description);
        assert_null(m->dev_command);
        assert_null(m->dependencies[0]);
        manifest_free(m);
        diagnostics_done(&d);
}

static void test_size_and_depth_are_capped(void **state) {
        char *text;
        size_t n;

        /* Bigger than a manifest can reasonably be: refused before parsing. */
        n = MANIFEST_MAX_SIZE + 1;
        text = malloc(n + 1);
        assert_non_null(text);
        memset(text, '#', n);
        text[n] = 0;
        write_file("big/module.yaml", text);
        free(text);
        expect_error_in("big", "big/module.yaml: error: the manifest is 65537 bytes; at most 65536 are read");

        /* Deep nesting (libyaml's loader is quadratic in the depth: 400 KB took 99 s): refused
         * at the 17th level, before loading. */
        n = 30000;
        text = malloc(2 * n + 20);
        assert_non_null(text);
        strcpy(text, "name: ");
        memset(text + 6, '[', n);
        memset(text + 6 + n, ']', n);
        text[6 + 2 * n] = 0;
        write_file("deep/module.yaml", text);
        free(text);
        expect_error_in("deep", "deep/module.yaml:1:22: error: nested deeper than 16 levels; a manifest needs 3");
}

static void test_special_files(void **state) {
        Diagnostics d = {};
        ModuleSet set = {};
        char path[300], target[600];
        char *out;

        write_file("good/module.yaml", GOOD("good", "[]"));
        /* A FIFO: reading it would block discovery (and the daemon's start) forever. */
        snprintf(path, sizeof(path), "%s/fifo", root);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/fifo/module.yaml", root);
        assert_int_equal(mkfifo(path, 0644), 0);
        /* Symlinked manifests that lead nowhere: reported, not skipped silently. */
        snprintf(path, sizeof(path), "%s/dangling", root);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/dangling/module.yaml", root);
        assert_int_equal(symlink("../gone/module.yaml", path), 0);
        snprintf(path, sizeof(path), "%s/loop", root);
        assert_int_equal(mkdir(path, 0755), 0);
        snprintf(path, sizeof(path), "%s/loop/module.yaml", root);
        assert_int_equal(symlink("module.yaml", path), 0);
        /* A module folder that is a dangling symlink: a warning. */
        snprintf(path, sizeof(path), "%s/moved", root);
        assert_int_equal(symlink("/nonexistent/call-assistant-module", path), 0);
        snprintf(path, sizeof(path), "%s/folder-loop", root);
        assert_int_equal(symlink("folder-loop", path), 0);
        /* A module.yaml that is a folder. */
        snprintf(path, sizeof(path), "%s/odd/module.yaml", root);
        write_file("odd/x", "");
        assert_int_equal(mkdir(path, 0755), 0);

        alarm(20); /* a hang is a failure */
        assert_int_equal(discovery_scan(root, &set, &d), 0);
        alarm(0);
        out = render(&d);
        assert_int_equal(set.n, 5);
        assert_non_null(module_set_find(&set, "good"));
        assert_true(module_set_find(&set, "good")->valid);
        snprintf(target, sizeof(target), "%s/fifo/module.yaml: error: the manifest is a FIFO, not a regular file", root);
        if (!strstr(out, target))
                fail_msg("expected '%s' in:\n%s", target, out);
        assert_non_null(strstr(out, "dangling/module.yaml: error: the manifest is a dangling symlink to '../gone/module.yaml'"));
        assert_non_null(strstr(out, "loop/module.yaml: error: the manifest is a symlink loop"));
        assert_non_null(strstr(out, "odd/module.yaml: error: the manifest is a folder, not a regular file"));
        assert_non_null(strstr(out, "/moved: warning: a dangling symlink, skipped"));
        assert_non_null(strstr(out, "/folder-loop: warning: a symlink loop, skipped"));
        assert_int_equal(d.n_errors, 4);
        for (size_t i = 0; i < set.n; i++)
                if (strcmp(set.items[i]->rel_dir, "good") != 0) {
                        assert_false(set.items[i]->valid);
                        assert_string_equal(set.items[i]->disabled_reason, "manifest cannot be read");
                }
        free(out);
        module_set_done(&set);
        diagnostics_done(&d);
}

static void test_symlinked_module_folder(void **state) {
        Diagnostics d = {};
        ModuleSet set = {};
        char link[300], real[300], *resolved;

        /* The module lives elsewhere (here: a hidden folder, which discovery does not scan) and
         * is linked into the modules directory: the unit must bind and run in the real folder,
         * or the module's relative paths break inside it. */
        write_file(".store/cam-1.2/module.yaml", GOOD("cam", "[]"));
        snprintf(real, sizeof(real), "%s/.store/cam-1.2", root);
        snprintf(link, sizeof(link), "%s/cam", root);
        assert_int_equal(symlink(".store/cam-1.2", link), 0);

        assert_int_equal(discovery_scan(root, &set, &d), 0);
        assert_int_equal(d.n, 0);
        assert_int_equal(set.n, 1);
        resolved = realpath(real, NULL);
        assert_non_null(resolved);
        assert_string_equal(set.items[0]->rel_dir, "cam");           /* names the unit */
        assert_string_equal(set.items[0]->abs_dir, resolved);        /* what the unit binds */
        free(resolved);
        module_set_done(&set);
        diagnostics_done(&d);
}

static void test_missing_modules_folder_is_an_error(void **state) {
        Diagnostics d = {};
        ModuleSet set = {};
        char path[300], *out;

        snprintf(path, sizeof(path), "%s/no-such-folder", root);
        assert_int_equal(discovery_scan(path, &set, &d), 0);
        assert_int_equal(set.n, 0);
        assert_int_equal(d.n_errors, 1);
        out = render(&d);
        assert_non_null(strstr(out, "no-such-folder: error: cannot read the modules directory: No such file or directory"));
        free(out);
        diagnostics_done(&d);

        write_file("file", "");
        snprintf(path, sizeof(path), "%s/file", root);
        assert_int_equal(discovery_scan(path, &set, &d), 0);
        assert_int_equal(d.n_errors, 1);
        out = render(&d);
        assert_non_null(strstr(out, "file: error: the modules directory is not a folder"));
        free(out);
        diagnostics_done(&d);
}

static void test_control_characters_are_escaped(void **state) {
        Diagnostics d = {};
        ModuleSet set = {};
        char *out;

        /* A folder name and a value with a terminal escape sequence and a newline. */
        write_file("evil\x1b[2J/module.yaml", "name: \"x\\e]0;owned\\a\\nline\"\nversion: \"1\"\ncommand: x\n");
        assert_int_equal(discovery_scan(root, &set, &d), 0);
        out = render(&d);
        assert_null(strchr(out, '\x1b'));
        assert_null(strchr(out, '\a'));
        if (!strstr(out, "evil\\x1b[2J/module.yaml:1:7: error: field 'name': 'x\\x1b]0;owned\\x07\\x0aline' is not a valid name"))
                fail_msg("%s", out);
        /* One line per diagnostic. */
        size_t lines = 0;
        for (const char *c = out; *c; c++)
                lines += *c == '\n';
        assert_int_equal(lines, d.n);
        free(out);
        module_set_done(&set);
        diagnostics_done(&d);
}

static void test_check_escapes_names(void **state) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        /* What call-assistantctl check prints: the diagnostics and the "disabled:" lines. */
        write_file("bad\x1b[31m\x07/module.yaml", "name: \"x\\e[2J\"\nversion: \"1\"\ncommand: x\n");
        write_file("ok/module.yaml", GOOD("ok", "[]"));
        f = open_memstream(&buf, &size);
        assert_non_null(f);
        assert_int_equal(modules_check(root, f), -EINVAL);
        fclose(f);
        assert_null(strchr(buf, '\x1b'));
        assert_null(strchr(buf, '\a'));
        if (!strstr(buf, "disabled: x\\x1b[2J (bad\\x1b[31m\\x07): invalid manifest"))
                fail_msg("%s", buf);
        assert_non_null(strstr(buf, "start order: ok\n"));
        free(buf);
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
                cmocka_unit_test_setup_teardown(test_null_is_not_a_string, setup, teardown),
                cmocka_unit_test_setup_teardown(test_control_characters_are_escaped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_check_escapes_names, setup, teardown),
                cmocka_unit_test_setup_teardown(test_size_and_depth_are_capped, setup, teardown),
                cmocka_unit_test_setup_teardown(test_special_files, setup, teardown),
                cmocka_unit_test_setup_teardown(test_symlinked_module_folder, setup, teardown),
                cmocka_unit_test_setup_teardown(test_missing_modules_folder_is_an_error, setup, teardown),
                cmocka_unit_test_setup_teardown(test_discovery_and_graph, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
