/* Unit tests for flow path finding: direct, one and two converters, cycles, ties,
 * unreachable targets, the step limit. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "flows/flow-path.h"
#include "shared/macro.h"

#define L(...) ((char *const[]){ __VA_ARGS__, NULL })

static void test_direct(void **state) {
        FlowPath p;

        /* The source gives rtsp and hls, the target takes hls: no converter at all. */
        assert_int_equal(flow_path_find(L("rtsp", "hls"), L("hls"), NULL, 0, 8, &p), 0);
        assert_int_equal(p.n_steps, 0);
        assert_string_equal(p.source_media, "hls");
        assert_string_equal(p.target_media, "hls");
        flow_path_done(&p);
}

static void test_one_and_two_converters(void **state) {
        const PathConverter conv[] = {
                { "go2rtc", "converter", L("rtsp"), L("webrtc", "hls") },
                { "trans", "mjpeg", L("rtsp"), L("mjpeg") },
                { "trans", "mjpeg2sip", L("mjpeg"), L("sip") },
        };
        FlowPath p;

        assert_int_equal(flow_path_find(L("rtsp"), L("webrtc"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.n_steps, 1);
        assert_int_equal(p.steps[0].converter, 0);
        assert_string_equal(p.steps[0].media_in, "rtsp");
        assert_string_equal(p.steps[0].media_out, "webrtc");
        assert_string_equal(p.source_media, "rtsp");
        assert_string_equal(p.target_media, "webrtc");
        flow_path_done(&p);

        assert_int_equal(flow_path_find(L("rtsp"), L("sip"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.n_steps, 2);
        assert_int_equal(p.steps[0].converter, 1);
        assert_string_equal(p.steps[0].media_out, "mjpeg");
        assert_int_equal(p.steps[1].converter, 2);
        assert_string_equal(p.steps[1].media_in, "mjpeg");
        assert_string_equal(p.target_media, "sip");
        flow_path_done(&p);

        /* The limit counts converters. */
        assert_int_equal(flow_path_find(L("rtsp"), L("sip"), conv, ELEMENTSOF(conv), 1, &p), -ENOENT);
}

static void test_shortest_wins_over_order(void **state) {
        /* A long way listed first, a short way second: the short one is taken. */
        const PathConverter conv[] = {
                { "a", "x2y", L("x"), L("y") },
                { "a", "y2z", L("y"), L("z") },
                { "b", "x2z", L("x"), L("z") },
        };
        FlowPath p;

        assert_int_equal(flow_path_find(L("x"), L("z"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.n_steps, 1);
        assert_int_equal(p.steps[0].converter, 2);
        flow_path_done(&p);
}

static void test_ties(void **state) {
        const PathConverter conv[] = {
                { "alpha", "conv", L("rtsp"), L("hls") },
                { "beta", "conv", L("rtsp"), L("hls") },
                { "gamma", "conv", L("mjpeg"), L("hls") },
        };
        FlowPath p;

        /* Two converters do it: the first given wins. */
        assert_int_equal(flow_path_find(L("rtsp"), L("hls"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.steps[0].converter, 0);
        flow_path_done(&p);
        /* The source's media order decides before the converters' order. */
        assert_int_equal(flow_path_find(L("mjpeg", "rtsp"), L("hls"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.steps[0].converter, 2);
        assert_string_equal(p.source_media, "mjpeg");
        flow_path_done(&p);
        /* The target's preference does not matter, only the distance and the order. */
        assert_int_equal(flow_path_find(L("rtsp"), L("webrtc", "hls"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_string_equal(p.target_media, "hls");
        flow_path_done(&p);
}

static void test_cycles_and_unreachable(void **state) {
        const PathConverter conv[] = {
                { "a", "x2y", L("x"), L("y") },
                { "a", "y2x", L("y"), L("x") },
                { "a", "y2y", L("y"), L("y") },
        };
        FlowPath p;

        assert_int_equal(flow_path_find(L("x"), L("z"), conv, ELEMENTSOF(conv), 100, &p), -ENOENT);
        assert_int_equal(flow_path_find(L("x"), L("z"), NULL, 0, 8, &p), -ENOENT);
        assert_int_equal(flow_path_find(NULL, L("x"), conv, ELEMENTSOF(conv), 8, &p), -ENOENT);
        assert_int_equal(flow_path_find(L("x"), NULL, conv, ELEMENTSOF(conv), 8, &p), -ENOENT);
        /* Through the cycle to something reachable. */
        assert_int_equal(flow_path_find(L("y"), L("x"), conv, ELEMENTSOF(conv), 8, &p), 0);
        assert_int_equal(p.n_steps, 1);
        flow_path_done(&p);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_direct),
                cmocka_unit_test(test_one_and_two_converters),
                cmocka_unit_test(test_shortest_wins_over_order),
                cmocka_unit_test(test_ties),
                cmocka_unit_test(test_cycles_and_unreachable),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
