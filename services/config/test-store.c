/* Unit tests for the durable config store: round trip, modes, corrupt files, kill -9. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "services/config/store.h"

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void rm_rf(const char *path) {
        (void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-config-store-XXXXXX");

        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void write_text(const char *path, const char *text) {
        FILE *f = fopen(path, "we");

        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static void test_module_names(void **state) {
        assert_true(config_module_name_valid("go2rtc"));
        assert_true(config_module_name_valid("matrix-protocol"));
        assert_true(config_module_name_valid("a.b_c-1"));
        assert_true(config_module_name_valid("0x"));
        assert_false(config_module_name_valid(""));
        assert_false(config_module_name_valid(NULL));
        assert_false(config_module_name_valid(".hidden"));
        assert_false(config_module_name_valid("-x"));
        assert_false(config_module_name_valid("Upper"));
        assert_false(config_module_name_valid("../etc"));
        assert_false(config_module_name_valid("a/b"));
        assert_false(config_module_name_valid("a b"));
        assert_false(config_module_name_valid(
                "a1234567890123456789012345678901234567890123456789012345678901234"));
}

static void test_round_trip(void **state) {
        _cleanup_free_ char *top = make_tmpdir(), *dir = NULL, *file = NULL;
        _cleanup_(config_store_freep) ConfigStore *s = NULL;
        _cleanup_strv_free_ char **names = NULL;
        ConfigRecord in = { .revision = 7, .updated_at = 1234567 }, out = {};
        struct stat st;

        assert_true(asprintf(&dir, "%s/state/config", top) > 0);
        assert_true(asprintf(&file, "%s/demo.json", dir) > 0);
        assert_int_equal(config_store_open(dir, &s), 0);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);

        assert_int_equal(config_store_load(s, "demo", &out, NULL), CONFIG_STORE_ABSENT);
        in.config = json_pack("{s:s, s:i, s:[i,i]}", "host", "h", "port", 5, "l", 1, 2);
        assert_int_equal(config_store_save(s, "demo", &in), 0);
        assert_int_equal(config_store_save(s, "Bad/Name", &in), -EINVAL);
        assert_int_equal(config_store_load(s, "../x", &out, NULL), -EINVAL);

        assert_int_equal(stat(file, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);

        assert_int_equal(config_store_load(s, "demo", &out, NULL), CONFIG_STORE_LOADED);
        assert_int_equal(out.revision, 7);
        assert_int_equal(out.updated_at, 1234567);
        assert_true(json_equal(out.config, in.config));

        assert_int_equal(config_store_list(s, &names), 0);
        assert_string_equal(names[0], "demo");
        assert_null(names[1]);

        config_record_clear(&in);
        config_record_clear(&out);
        rm_rf(top);
}

static void test_temp_files_cleaned(void **state) {
        _cleanup_free_ char *dir = make_tmpdir(), *tmp = NULL, *other = NULL;
        _cleanup_(config_store_freep) ConfigStore *s = NULL;

        assert_true(asprintf(&tmp, "%s/demo.json.tmp-0123456789abcdef", dir) > 0);
        assert_true(asprintf(&other, "%s/notes.txt", dir) > 0);
        write_text(tmp, "{\"revision\": 3, \"upd");
        write_text(other, "keep me");
        assert_int_equal(config_store_open(dir, &s), 0);
        assert_int_equal(access(tmp, F_OK), -1);
        assert_int_equal(access(other, F_OK), 0);
        rm_rf(dir);
}

static bool has_corrupt_copy(const char *dir, const char *prefix) {
        DIR *d = opendir(dir);
        struct dirent *de;
        bool found = false;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
                        found = true;
        closedir(d);
        return found;
}

static void test_corrupt_kept_aside(void **state) {
        _cleanup_free_ char *dir = make_tmpdir(), *file = NULL, *problem = NULL, *p2 = NULL;
        _cleanup_(config_store_freep) ConfigStore *s = NULL;
        ConfigRecord out = {};

        assert_true(asprintf(&file, "%s/demo.json", dir) > 0);
        write_text(file, "{\n  \"revision\": 1,\n  \"updated_at\": 2,\n  oops \"secret-value\"\n}\n");
        assert_int_equal(config_store_open(dir, &s), 0);
        assert_int_equal(config_store_load(s, "demo", &out, &problem), CONFIG_STORE_CORRUPT);
        assert_non_null(problem);
        /* file:line:column, and never the file's content. */
        assert_non_null(strstr(problem, "demo.json:4:"));
        assert_non_null(strstr(problem, "kept as"));
        assert_null(strstr(problem, "secret-value"));
        assert_int_equal(access(file, F_OK), -1);
        assert_true(has_corrupt_copy(dir, "demo.json.corrupt-"));
        /* Now the module counts as unconfigured. */
        assert_int_equal(config_store_load(s, "demo", &out, NULL), CONFIG_STORE_ABSENT);

        /* Valid JSON of the wrong shape is corrupt too. */
        write_text(file, "[1, 2]\n");
        assert_int_equal(config_store_load(s, "demo", &out, &p2), CONFIG_STORE_CORRUPT);
        assert_non_null(strstr(p2, "revision"));
        rm_rf(dir);
}

/* ---- durability under kill -9 ---- */

#define DURABILITY_WRITES 1000

_noreturn_ static void writer(const char *dir, uint64_t first, int ack_fd) {
        ConfigStore *s = NULL;

        if (config_store_open(dir, &s) < 0)
                _exit(2);
        for (uint64_t i = first; i <= DURABILITY_WRITES; i++) {
                ConfigRecord rec = { .revision = i, .updated_at = i };

                rec.config = json_pack("{s:I, s:s}", "i", (json_int_t)i, "pad",
                                       "0123456789012345678901234567890123456789");
                if (!rec.config || config_store_save(s, "victim", &rec) < 0)
                        _exit(3);
                json_decref(rec.config);
                if (write(ack_fd, &i, sizeof(i)) != sizeof(i))
                        _exit(4);
        }
        _exit(0);
}

static void test_durability_kill9(void **state) {
        _cleanup_free_ char *dir = make_tmpdir();
        uint64_t last_ack = 0, rounds = 0, kills = 0;
        struct timespec t0, t1;

        srand((unsigned)time(NULL) ^ (unsigned)getpid());
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (last_ack < DURABILITY_WRITES) {
                ConfigStore *s = NULL;
                ConfigRecord rec = {};
                uint64_t first = last_ack + 1, v;
                unsigned want = 20 + (unsigned)(rand() % 150);
                int p[2], status;
                pid_t pid;
                ssize_t k;

                assert_int_equal(pipe2(p, O_CLOEXEC), 0);
                pid = fork();
                assert_true(pid >= 0);
                if (pid == 0) {
                        close(p[0]);
                        writer(dir, first, p[1]);
                }
                close(p[1]);

                /* Let it acknowledge a random number of writes, then kill it at a random
                 * moment inside the next ones. */
                for (unsigned n = 0; n < want; n++) {
                        k = read(p[0], &v, sizeof(v));
                        if (k != sizeof(v))
                                break;
                        last_ack = v;
                }
                usleep((useconds_t)(rand() % 3000));
                if (kill(pid, SIGKILL) == 0)
                        kills++;
                assert_int_equal(waitpid(pid, &status, 0), pid);
                /* Acks written before death still count as acknowledged. */
                while ((k = read(p[0], &v, sizeof(v))) == sizeof(v))
                        last_ack = v;
                close(p[0]);
                if (WIFEXITED(status))
                        assert_int_equal(WEXITSTATUS(status), 0);

                /* Never torn: the file parses, revision between acknowledged and attempted. */
                assert_int_equal(config_store_open(dir, &s), 0);
                assert_int_equal(config_store_load(s, "victim", &rec, NULL), CONFIG_STORE_LOADED);
                assert_true(rec.revision >= last_ack);
                assert_true(rec.revision <= last_ack + 1);
                assert_int_equal(json_integer_value(json_object_get(rec.config, "i")),
                                 (json_int_t)rec.revision);
                /* The next writer continues after what is stored. */
                last_ack = rec.revision;
                config_record_clear(&rec);
                config_store_free(s);
                rounds++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        print_message("durability: %llu rounds, %llu kills, %.2f s\n",
                      (unsigned long long)rounds, (unsigned long long)kills,
                      (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
        assert_true(rounds > 3);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_module_names),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_temp_files_cleaned),
                cmocka_unit_test(test_corrupt_kept_aside),
                cmocka_unit_test(test_durability_kill9),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
