/* Unit tests for the config service logic: set/get/list, apply hook, revisions, secrets. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "services/config/config-service.h"
#include "shared/log.h"

#define SECRET "hunter2-very-secret"
#define SECRET2 "second-secret-value"

static const char *schema_text =
        "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"host\",\"password\"],"
        "\"properties\":{\"host\":{\"type\":\"string\",\"minLength\":1},"
        "\"port\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":65535,\"default\":8554},"
        "\"password\":{\"type\":\"string\",\"writeOnly\":true,\"minLength\":4},"
        "\"cameras\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":"
        "{\"url\":{\"type\":\"string\"},\"token\":{\"type\":\"string\",\"format\":\"password\"}}}}}}";

/* What the hooks and callbacks saw. */
typedef struct Seen {
        ConfigStatus status;
        char *message;
        uint64_t revision;
        char *result_json;
        int n_done;
        ConfigApply *pending; /* async mode: held here */
        bool async;
        ConfigStatus answer;
        char *applied_json;
        int n_applied;
        char *notified_json;
        uint64_t notified_revision;
        int n_notified;
} Seen;

static void seen_reset(Seen *s) {
        free(s->message);
        free(s->result_json);
        free(s->applied_json);
        free(s->notified_json);
        *s = (Seen){};
}

static void on_done(const ConfigSetResult *r, void *userdata) {
        Seen *s = userdata;

        s->status = r->status;
        free(s->message);
        s->message = r->message ? strdup(r->message) : NULL;
        s->revision = r->revision;
        free(s->result_json);
        s->result_json = r->config_json ? strdup(r->config_json) : NULL;
        s->n_done++;
}

static void on_apply(ConfigApply *op, const char *module, const char *config_json,
                     void *userdata) {
        Seen *s = userdata;

        free(s->applied_json);
        s->applied_json = strdup(config_json);
        s->n_applied++;
        if (s->async)
                s->pending = op;
        else
                config_apply_complete(op, s->answer, s->answer ? "module says no" : NULL);
}

static void on_change(const char *module, uint64_t revision, const char *redacted_json,
                      void *userdata) {
        Seen *s = userdata;

        free(s->notified_json);
        s->notified_json = strdup(redacted_json);
        s->notified_revision = revision;
        s->n_notified++;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        return remove(path);
}

static void assert_no_secret(const char *text) {
        if (!text)
                return;
        if (strstr(text, SECRET) || strstr(text, SECRET2))
                fail_msg("secret leaked in: %s", text);
}

static void test_service(void **state) {
        _cleanup_free_ char *dir = strdup("/tmp/test-config-service-XXXXXX");
        _cleanup_free_ char *logpath = NULL, *err = NULL, *stored = NULL, *file = NULL;
        ConfigService *svc = NULL;
        ConfigInfo info = {};
        ConfigInfo *list = NULL;
        size_t n_list = 0;
        Seen seen = {};
        int saved_stderr, logfd;
        char buf[65536];
        ssize_t k;

        assert_non_null(mkdtemp(dir));
        /* Capture everything the service logs, at debug level, to check it for secrets. */
        assert_true(asprintf(&logpath, "%s.log", dir) > 0);
        logfd = open(logpath, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(logfd >= 0);
        saved_stderr = dup(STDERR_FILENO);
        assert_true(dup2(logfd, STDERR_FILENO) >= 0);
        log_set_max_level(LOG_DEBUG);

        assert_int_equal(config_service_new(dir, &svc), 0);
        config_service_set_apply_hook(svc, on_apply, &seen);
        config_service_set_change_hook(svc, on_change, &seen);

        /* Unknown module / no schema. */
        assert_int_equal(config_service_get(svc, "demo", &info), CONFIG_STATUS_NOT_FOUND);
        assert_int_equal(config_service_get(svc, "../x", &info),
                         CONFIG_STATUS_INVALID_ARGUMENT);
        assert_int_equal(config_service_set(svc, "demo", "{}", false, 0, on_done, &seen), 0);
        assert_int_equal(seen.status, CONFIG_STATUS_NOT_FOUND);
        seen_reset(&seen);

        /* A bad schema is refused with its path. */
        assert_int_equal(config_service_register_schema(svc, "demo", "{\"oneOf\":[]}", &err),
                         -EINVAL);
        assert_string_equal(err, "/oneOf: unsupported keyword");
        err = mfree_str(err);
        assert_int_equal(config_service_register_schema(svc, "demo", schema_text, NULL), 0);

        /* Validation errors: INVALID_ARGUMENT with paths, nothing applied or stored. */
        assert_int_equal(config_service_set(svc, "demo",
                                            "{\"host\":\"\",\"port\":0,\"password\":\"" SECRET
                                            "\",\"extra\":1}",
                                            false, 0, on_done, &seen),
                         0);
        assert_int_equal(seen.n_done, 1);
        assert_int_equal(seen.status, CONFIG_STATUS_INVALID_ARGUMENT);
        assert_string_equal(seen.message, "/host: must be at least 1 characters long; "
                                          "/port: must be >= 1; "
                                          "/extra: additional property not allowed");
        assert_int_equal(seen.n_applied, 0);
        seen_reset(&seen);
        assert_int_equal(config_service_set(svc, "demo", "[1", false, 0, on_done, &seen), 0);
        assert_int_equal(seen.status, CONFIG_STATUS_INVALID_ARGUMENT);
        assert_non_null(strstr(seen.message, "invalid JSON at line 1"));
        seen_reset(&seen);
        /* The secret itself must pass the schema too, without being quoted. */
        assert_int_equal(config_service_set(svc, "demo", "{\"host\":\"h\",\"password\":\"abc\"}",
                                            false, 0, on_done, &seen),
                         0);
        assert_string_equal(seen.message, "/password: must be at least 4 characters long");
        seen_reset(&seen);

        /* A valid set: applied with secret and defaults, stored, notified redacted. */
        config_service_set(svc, "demo",
                           "{\"host\":\"cam\",\"password\":\"" SECRET "\",\"cameras\":"
                           "[{\"url\":\"rtsp://x\",\"token\":\"" SECRET2 "\"}]}",
                           false, 0, on_done, &seen);
        assert_int_equal(seen.status, CONFIG_STATUS_OK);
        assert_int_equal(seen.revision, 1);
        assert_non_null(strstr(seen.applied_json, SECRET));
        assert_non_null(strstr(seen.applied_json, SECRET2));
        assert_non_null(strstr(seen.applied_json, "\"port\":8554"));
        assert_no_secret(seen.result_json);
        assert_non_null(strstr(seen.result_json, "\"password\":\"********\""));
        assert_int_equal(seen.n_notified, 1);
        assert_int_equal(seen.notified_revision, 1);
        assert_no_secret(seen.notified_json);
        assert_non_null(strstr(seen.notified_json, "\"token\":\"********\""));
        seen_reset(&seen);

        /* The file is 0600 and holds the secret (it is the durable copy). */
        assert_true(asprintf(&file, "%s/demo.json", dir) > 0);
        {
                struct stat st;
                assert_int_equal(stat(file, &st), 0);
                assert_int_equal(st.st_mode & 07777, 0600);
        }

        /* Get: redacted. */
        assert_int_equal(config_service_get(svc, "demo", &info), CONFIG_STATUS_OK);
        assert_int_equal(info.revision, 1);
        assert_true(info.updated_at > 0);
        assert_non_null(info.schema_json);
        assert_no_secret(info.config_json);
        assert_non_null(strstr(info.config_json, "\"host\":\"cam\""));
        config_info_clear(&info);

        /* Changing another field with the placeholder sent back keeps the secrets. */
        config_service_set(svc, "demo",
                           "{\"host\":\"cam2\",\"password\":\"********\",\"cameras\":"
                           "[{\"url\":\"rtsp://y\",\"token\":\"********\"}]}",
                           true, 1, on_done, &seen);
        assert_int_equal(seen.status, CONFIG_STATUS_OK);
        assert_int_equal(seen.revision, 2);
        assert_non_null(strstr(seen.applied_json, SECRET));
        assert_non_null(strstr(seen.applied_json, SECRET2));
        assert_non_null(strstr(seen.applied_json, "cam2"));
        assert_no_secret(seen.result_json);
        assert_no_secret(seen.notified_json);
        seen_reset(&seen);

        /* Stale expected revision. */
        config_service_set(svc, "demo", "{\"host\":\"x\"}", true, 1, on_done, &seen);
        assert_int_equal(seen.status, CONFIG_STATUS_ABORTED);
        assert_int_equal(seen.n_applied, 0);
        seen_reset(&seen);

        /* The module refuses: nothing changes. */
        seen.answer = CONFIG_STATUS_FAILED_PRECONDITION;
        config_service_set(svc, "demo", "{\"host\":\"refused\"}", false, 0, on_done, &seen);
        assert_int_equal(seen.n_applied, 1);
        assert_int_equal(seen.status, CONFIG_STATUS_FAILED_PRECONDITION);
        assert_string_equal(seen.message, "module says no");
        assert_int_equal(seen.n_notified, 0);
        seen_reset(&seen);
        assert_int_equal(config_service_get(svc, "demo", &info), CONFIG_STATUS_OK);
        assert_int_equal(info.revision, 2);
        assert_non_null(strstr(info.config_json, "cam2"));
        config_info_clear(&info);

        /* Asynchronous apply: a second set meanwhile is refused; completion later. */
        seen.async = true;
        config_service_set(svc, "demo", "{\"host\":\"async\"}", false, 0, on_done, &seen);
        assert_int_equal(seen.n_done, 0);
        assert_non_null(seen.pending);
        {
                Seen other = {};
                config_service_set(svc, "demo", "{\"host\":\"other\"}", false, 0, on_done, &other);
                assert_int_equal(other.status, CONFIG_STATUS_ABORTED);
                seen_reset(&other);
        }
        config_apply_complete(seen.pending, CONFIG_STATUS_OK, NULL);
        assert_int_equal(seen.n_done, 1);
        assert_int_equal(seen.status, CONFIG_STATUS_OK);
        assert_int_equal(seen.revision, 3);
        seen_reset(&seen);

        config_service_free(svc);

        /* Reopen: the durable state comes back; re-apply material has secrets. */
        assert_int_equal(config_service_new(dir, &svc), 0);
        assert_int_equal(config_service_get(svc, "demo", &info), CONFIG_STATUS_OK);
        assert_int_equal(info.revision, 3);
        assert_null(info.schema_json); /* not registered in this run yet */
        assert_no_secret(info.config_json);
        config_info_clear(&info);
        assert_int_equal(config_service_register_schema(svc, "demo", schema_text, NULL), 0);
        assert_int_equal(config_service_get_stored_for_apply(svc, "demo", &stored), 1);
        assert_non_null(strstr(stored, SECRET));
        assert_non_null(strstr(stored, "async"));
        assert_int_equal(config_service_get_stored_for_apply(svc, "other", &err), 0);

        assert_int_equal(config_service_list(svc, &list, &n_list), 0);
        assert_int_equal(n_list, 1);
        assert_string_equal(list[0].module, "demo");
        assert_no_secret(list[0].config_json);
        config_info_array_free(list, n_list);
        config_service_free(svc);

        /* A corrupt file: surfaced by List, module unconfigured, file kept aside. */
        {
                FILE *f = fopen(file, "we");
                assert_non_null(f);
                fputs("{\"revision\": 4, \"config\": {\"password\": \"" SECRET "\"", f);
                fclose(f);
        }
        assert_int_equal(config_service_new(dir, &svc), 0);
        assert_int_equal(config_service_list(svc, &list, &n_list), 0);
        assert_int_equal(n_list, 1);
        assert_non_null(list[0].load_error);
        assert_non_null(strstr(list[0].load_error, "demo.json:1:"));
        assert_no_secret(list[0].load_error);
        assert_int_equal(list[0].revision, 0);
        config_info_array_free(list, n_list);
        config_service_free(svc);

        /* Restore stderr; nothing logged may contain a secret. */
        log_set_max_level(LOG_INFO);
        assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
        close(saved_stderr);
        assert_int_equal(lseek(logfd, 0, SEEK_SET), 0);
        k = read(logfd, buf, sizeof(buf) - 1);
        assert_true(k > 0); /* debug/info lines were written */
        buf[k] = 0;
        assert_no_secret(buf);
        close(logfd);
        unlink(logpath);
        (void)nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_service),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
