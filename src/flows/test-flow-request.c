/* Unit tests for the checks of a module's flow request (KIND_FLOW_REQUEST): its own entity as
 * the target only, the source, the request id, the offer. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "flows/flow-request.h"

#define OFFER "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"

static FlowRequestFields good(void) {
        return (FlowRequestFields){
                .reporter = "matrix", .claimed_module = "", .target_id = "family",
                .source_module = "onvif-discovery", .source_id = "cam-1", .request_id = "c1a2b3",
                .media = "webrtc", .sdp_type = "offer", .sdp = OFFER,
        };
}

static void expect(const FlowRequestFields *r, int want, const char *field) {
        const char *problem = "unset";

        assert_int_equal(flow_request_check(r, &problem), want);
        if (want == 0)
                assert_null(problem);
        else
                assert_non_null(strstr(problem, field));
}

static void test_valid(void **state) {
        FlowRequestFields r = good();

        expect(&r, 0, NULL);
        /* Naming itself is fine; so is a source of its own (another entity). */
        r.claimed_module = "matrix";
        r.source_module = "matrix";
        r.source_id = "lobby";
        expect(&r, 0, NULL);
        r.claimed_module = NULL;
        expect(&r, 0, NULL);
}

static void test_only_own_entities(void **state) {
        FlowRequestFields r = good();

        r.claimed_module = "chromecast";
        expect(&r, -EPERM, "own entities");
        r.reporter = NULL;
        r.claimed_module = "matrix";
        expect(&r, -EPERM, "own entities");
}

static void test_target_and_source(void **state) {
        char long_id[300];
        FlowRequestFields r = good();

        memset(long_id, 'a', sizeof(long_id) - 1);
        long_id[sizeof(long_id) - 1] = 0;
        r.target_id = "";
        expect(&r, -EINVAL, "entity.id");
        r.target_id = long_id;
        expect(&r, -EINVAL, "entity.id");
        r = good();
        r.source_module = NULL;
        expect(&r, -EINVAL, "flow_source");
        r = good();
        r.source_id = long_id;
        expect(&r, -EINVAL, "flow_source");
        r = good();
        r.source_module = "matrix";
        r.source_id = "family";
        expect(&r, -EINVAL, "same entity");
}

static void test_request_id(void **state) {
        char id[FLOW_REQUEST_ID_MAX + 2];
        FlowRequestFields r = good();

        memset(id, 'x', sizeof(id) - 1);
        id[sizeof(id) - 1] = 0;
        r.request_id = id;                      /* 129 characters */
        expect(&r, -EINVAL, "request_id");
        id[FLOW_REQUEST_ID_MAX] = 0;            /* 128: fine */
        expect(&r, 0, NULL);
        static const char *const bad[] = { "", "a b", "a\nb", "\x1b[31m", "caf\xc3\xa9" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                r.request_id = bad[i];
                expect(&r, -EINVAL, "request_id");
        }
        r.request_id = NULL;
        expect(&r, -EINVAL, "request_id");
}

static void test_offer(void **state) {
        FlowRequestFields r = good();
        char *big;

        r.media = "hls";
        expect(&r, -EINVAL, "link");
        r = good();
        r.sdp_type = "answer";
        expect(&r, -EINVAL, "link");
        r = good();
        r.sdp_type = NULL;
        expect(&r, -EINVAL, "link");
        r = good();
        r.sdp = "hello";
        expect(&r, -EINVAL, "link.sdp");
        r.sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"; /* no media section */
        expect(&r, -EINVAL, "link.sdp");
        big = malloc(FLOW_REQUEST_SDP_MAX + 100);
        assert_non_null(big);
        memset(big, 'a', FLOW_REQUEST_SDP_MAX + 99);
        memcpy(big, OFFER, strlen(OFFER));
        big[FLOW_REQUEST_SDP_MAX + 99] = 0;
        r.sdp = big;
        expect(&r, -EINVAL, "64 KiB");
        free(big);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_valid),
                cmocka_unit_test(test_only_own_entities),
                cmocka_unit_test(test_target_and_source),
                cmocka_unit_test(test_request_id),
                cmocka_unit_test(test_offer),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
