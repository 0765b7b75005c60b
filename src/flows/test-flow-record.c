/* Unit tests for the flow record: JSON round trip, validation with the field named, the store
 * (atomic save, removal, corrupt files moved aside, a FIFO that must not hang loading). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "flows/flow-record.h"
#include "shared/macro.h"

static FlowRecord *sample(void) {
        FlowRecord *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        assert_int_equal(flow_id_new(&f->id), 0);
        f->source_module = strdup("onvif");
        f->source_entity = strdup("cam-1");
        f->target_module = strdup("matrix");
        f->target_entity = strdup("!room:example.org");
        f->state = FLOW_ACTIVE;
        f->reason = strdup("every step is connected");
        f->created_usec = 1700000000000000ull;
        f->changed_usec = 1700000000500000ull;
        f->n_heals = 2;
        f->n_steps = 3;
        f->steps = calloc(3, sizeof(FlowStepRecord));
        const char *mods[] = { "onvif", "go2rtc", "matrix" }, *ids[] = { "cam-1", "conv-7", "!room:example.org" };
        const char *in[] = { "", "rtsp", "webrtc" }, *out[] = { "rtsp", "webrtc", "" };
        for (size_t i = 0; i < 3; i++) {
                FlowStepRecord *s = &f->steps[i];
                s->module = strdup(mods[i]);
                s->entity_id = strdup(ids[i]);
                s->entity_type = strdup(i == 1 ? "converter" : "x");
                s->created = i == 1;
                s->media_in = strdup(in[i]);
                s->media_out = strdup(out[i]);
                s->state = strdup("connected");
                s->message = strdup("");
        }
        return f;
}

static void test_ids(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL;

        assert_int_equal(flow_id_new(&a), 0);
        assert_int_equal(flow_id_new(&b), 0);
        assert_true(flow_id_valid(a));
        assert_string_not_equal(a, b);
        assert_false(flow_id_valid("flow-0123"));
        assert_false(flow_id_valid("flow-0123456789ABCDEF"));
        assert_false(flow_id_valid("../../etc/passwd"));
        assert_false(flow_id_valid(NULL));
}

static void test_round_trip(void **state) {
        _cleanup_(flow_record_freep) FlowRecord *f = sample(), *g = NULL;
        _cleanup_free_ char *text = NULL, *again = NULL, *error = NULL;

        assert_int_equal(flow_record_to_json(f, &text), 0);
        assert_int_equal(flow_record_from_json(text, &g, &error), 0);
        assert_string_equal(g->id, f->id);
        assert_string_equal(g->target_entity, "!room:example.org");
        assert_int_equal(g->state, FLOW_ACTIVE);
        assert_int_equal(g->n_heals, 2);
        assert_int_equal(g->n_steps, 3);
        assert_true(g->steps[1].created);
        assert_string_equal(g->steps[1].media_out, "webrtc");
        assert_int_equal(flow_record_to_json(g, &again), 0);
        assert_string_equal(text, again);

        /* A flow to an external peer has no target. */
        free(f->target_module);
        free(f->target_entity);
        f->target_module = f->target_entity = NULL;
        free(text);
        text = NULL;
        g = flow_record_free(g);
        assert_int_equal(flow_record_to_json(f, &text), 0);
        assert_int_equal(flow_record_from_json(text, &g, &error), 0);
        assert_null(g->target_module);
}

static void expect_error(const char *json, const char *what) {
        FlowRecord *g = NULL;
        _cleanup_free_ char *error = NULL;

        assert_int_equal(flow_record_from_json(json, &g, &error), -EINVAL);
        assert_null(g);
        assert_non_null(error);
        if (!strstr(error, what))
                fail_msg("error '%s' does not mention '%s'", error, what);
}

static void test_validation(void **state) {
        expect_error("{", "line 1");
        expect_error("[]", "not a JSON object");
        expect_error("{\"id\": \"flow-zz\"}", "field 'state'");
        expect_error("{\"id\": \"x\", \"state\": \"ACTIVE\"}", "field 'id'");
        expect_error("{\"id\": \"flow-0123456789abcdef\", \"state\": \"BOGUS\"}", "field 'state'");
        expect_error("{\"id\": \"flow-0123456789abcdef\", \"state\": \"ACTIVE\", \"source\": {\"module\": \"a\", "
                     "\"id\": \"b\"}, \"created_usec\": 1, \"changed_usec\": 1, \"n_heals\": 0, \"steps\": []}",
                     "field 'steps'");
        expect_error("{\"id\": \"flow-0123456789abcdef\", \"state\": \"ACTIVE\", \"source\": {\"module\": \"a\", "
                     "\"id\": \"b\"}, \"created_usec\": 1, \"changed_usec\": 1, \"n_heals\": 0, \"steps\": [{\"module\": "
                     "\"a\", \"entity_id\": \"b\", \"entity_type\": \"t\", \"created\": 1, \"media_in\": \"\", "
                     "\"media_out\": \"\", \"state\": \"\", \"message\": \"\"}]}",
                     "field 'steps[0].created'");
        expect_error("{\"id\": \"flow-0123456789abcdef\", \"state\": \"ACTIVE\", \"source\": {\"module\": \"a\", "
                     "\"id\": \"b\"}, \"created_usec\": -1}",
                     "field 'created_usec'");
}

typedef struct Reports {
        unsigned n;
        char last[700];
} Reports;

static void on_report(const char *path, const char *problem, void *userdata) {
        Reports *r = userdata;
        r->n++;
        snprintf(r->last, sizeof(r->last), "%s: %s", path, problem);
}

static void test_store(void **state) {
        char dir[] = "/tmp/test-flow-store-XXXXXX", path[256];
        _cleanup_(flow_record_freep) FlowRecord *a = sample(), *b = sample();
        FlowRecord **l = NULL;
        Reports rep = {};
        size_t n = 0;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        b->created_usec = a->created_usec - 1;
        assert_int_equal(flow_store_save(dir, a), 0);
        assert_int_equal(flow_store_save(dir, b), 0);
        snprintf(path, sizeof(path), "%s/%s.json", dir, a->id);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        /* A corrupt file, a file whose id does not match its name, and a FIFO. */
        snprintf(path, sizeof(path), "%s/flow-00000000000000aa.json", dir);
        assert_non_null(f = fopen(path, "w"));
        fputs("{\"id\": \"flow-00000000000000aa\", \"state\": ", f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/flow-00000000000000bb.json", dir);
        assert_non_null(f = fopen(path, "w"));
        _cleanup_free_ char *text = NULL;
        assert_int_equal(flow_record_to_json(a, &text), 0);
        fputs(text, f);
        fclose(f);
        snprintf(path, sizeof(path), "%s/flow-00000000000000cc.json", dir);
        assert_int_equal(mkfifo(path, 0600), 0);

        assert_int_equal(flow_store_load_all(dir, &l, &n, on_report, &rep), 0);
        assert_int_equal(n, 2);
        assert_string_equal(l[0]->id, b->id); /* oldest first */
        assert_string_equal(l[1]->id, a->id);
        assert_int_equal(rep.n, 3);
        for (size_t i = 0; i < n; i++)
                flow_record_free(l[i]);
        free(l);
        snprintf(path, sizeof(path), "%s/flow-00000000000000aa.json.corrupt", dir);
        assert_int_equal(access(path, F_OK), 0);

        /* Removal; loading again finds only b, and no more problems. */
        assert_int_equal(flow_store_remove(dir, a->id), 0);
        assert_int_equal(flow_store_remove(dir, a->id), 0);
        assert_int_equal(flow_store_remove(dir, "../x"), -EINVAL);
        rep.n = 0;
        assert_int_equal(flow_store_load_all(dir, &l, &n, on_report, &rep), 0);
        assert_int_equal(n, 1);
        assert_int_equal(rep.n, 0);
        flow_record_free(l[0]);
        free(l);

        /* A missing folder holds no flows. */
        assert_int_equal(flow_store_load_all("/nonexistent/flows", &l, &n, NULL, NULL), 0);
        assert_int_equal(n, 0);
        char cmd[300];
        snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
        assert_int_equal(system(cmd), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_ids),
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_store),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
