/* Unit tests for the dashboard's authentication logic: password hashes, sessions, the login
 * rate limit, cookie parsing. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "services/web/web-auth.h"

#define SEC 1000000ull

static void test_password(void **state) {
        char *hash = NULL;

        assert_int_equal(web_password_hash("correct horse", &hash), 0);
        assert_true(strncmp(hash, "$y$", 3) == 0);
        assert_true(web_password_hash_valid(hash));
        assert_null(strstr(hash, "correct"));
        assert_int_equal(web_password_check(hash, "correct horse"), 1);
        assert_int_equal(web_password_check(hash, "correct horsf"), 0);
        assert_int_equal(web_password_check(hash, ""), 0);
        free(hash);

        /* sha512-crypt from another tool is taken too. */
        assert_int_equal(web_password_check("$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN."
                                            "Pq.H91p5hVO1",
                                            "secret"),
                         1);

        assert_false(web_password_hash_valid(NULL));
        assert_false(web_password_hash_valid("plaintext-password"));
        assert_false(web_password_hash_valid("$1$md5$notaccepted"));             /* md5-crypt: too weak */
        assert_false(web_password_hash_valid("$y$j9T$abc def$ghijklmnopqrstuvwx")); /* whitespace */
        assert_false(web_password_hash_valid("$y$j9T$abc:def$ghijklmnopqrstuvwx")); /* ':' */
        assert_int_equal(web_password_check("$1$md5$notaccepted", "x"), -EINVAL);
}

static void test_tokens(void **state) {
        char a[WEB_TOKEN_LEN + 1], b[WEB_TOKEN_LEN + 1];

        assert_int_equal(web_random_token(a), 0);
        assert_int_equal(web_random_token(b), 0);
        assert_int_equal(strlen(a), WEB_TOKEN_LEN);
        assert_string_not_equal(a, b);
        for (size_t i = 0; i < WEB_TOKEN_LEN; i++)
                assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", a[i]));
        assert_true(web_token_equal(a, strlen(a), a, strlen(a)));
        assert_false(web_token_equal(a, strlen(a), b, strlen(b)));
        assert_false(web_token_equal(a, strlen(a), a, strlen(a) - 1));
        assert_false(web_token_equal("", 0, a, strlen(a)));
}

static void test_sessions(void **state) {
        WebSessions s;
        const WebSession *x, *y, *found;
        char token_x[WEB_TOKEN_LEN + 1];
        uint64_t id_x;

        assert_int_equal(web_sessions_init(&s, 2, 10 * SEC, 100 * SEC), 0);
        assert_int_equal(web_sessions_create(&s, 1 * SEC, &x), 0);
        strcpy(token_x, x->token);
        id_x = x->id;
        assert_string_not_equal(x->token, x->csrf);

        found = web_sessions_find(&s, token_x, strlen(token_x), 5 * SEC);
        assert_non_null(found);
        assert_int_equal(found->id, id_x);
        /* A wrong or truncated token finds nothing. */
        assert_null(web_sessions_find(&s, token_x, strlen(token_x) - 1, 5 * SEC));
        assert_null(web_sessions_find(&s, "x", 1, 5 * SEC));

        /* Idle for longer than 10 s: gone. Used at 5 s, so still there at 14 s. */
        assert_non_null(web_sessions_find(&s, token_x, strlen(token_x), 14 * SEC));
        assert_null(web_sessions_find(&s, token_x, strlen(token_x), 25 * SEC));
        assert_false(web_sessions_alive(&s, id_x));

        /* Full table: the least recently used one ends. */
        assert_int_equal(web_sessions_create(&s, 30 * SEC, &x), 0);
        strcpy(token_x, x->token);
        id_x = x->id;
        assert_int_equal(web_sessions_create(&s, 31 * SEC, &y), 0);
        assert_non_null(web_sessions_find(&s, token_x, strlen(token_x), 32 * SEC)); /* x used last */
        assert_int_equal(web_sessions_create(&s, 33 * SEC, &y), 0);
        assert_int_equal(s.n_sessions, 2);
        assert_true(web_sessions_alive(&s, id_x));

        /* The absolute limit holds even for sessions in use. */
        for (uint64_t t = 34; t <= 134; t += 5)
                (void)web_sessions_find(&s, token_x, strlen(token_x), t * SEC);
        assert_false(web_sessions_alive(&s, id_x));

        assert_int_equal(web_sessions_create(&s, 200 * SEC, &x), 0);
        assert_true(web_sessions_remove(&s, x->id));
        assert_int_equal(web_sessions_create(&s, 200 * SEC, &x), 0);
        assert_int_equal(web_sessions_create(&s, 200 * SEC, &y), 0);
        assert_int_equal(web_sessions_revoke_all(&s), 2);
        assert_int_equal(s.n_sessions, 0);
        web_sessions_done(&s);
}

static void test_rate_limit(void **state) {
        WebRateLimit rl;
        uint64_t retry = 0;

        /* 3 at once per address, then one per 10 s; 5 at once in all. */
        web_rate_limit_init(&rl, 3, 0.1, 5, 0.5);
        for (int i = 0; i < 3; i++)
                assert_int_equal(web_rate_limit_take(&rl, "127.0.0.1", 0, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "127.0.0.1", 1 * SEC, &retry), -EAGAIN);
        assert_true(retry > 8 * SEC && retry <= 10 * SEC);
        /* Another address still may, until the global bucket is empty. */
        assert_int_equal(web_rate_limit_take(&rl, "::1", 1 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "::1", 1 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "10.0.0.9", 1 * SEC, &retry), -EAGAIN);
        /* Time refills. */
        assert_int_equal(web_rate_limit_take(&rl, "127.0.0.1", 12 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "127.0.0.1", 12 * SEC, &retry), -EAGAIN);

        /* A success gives its attempt back. */
        assert_int_equal(web_rate_limit_take(&rl, "192.0.2.1", 40 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "192.0.2.1", 40 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "192.0.2.1", 40 * SEC, &retry), 0);
        web_rate_limit_refund(&rl, "192.0.2.1");
        assert_int_equal(web_rate_limit_take(&rl, "192.0.2.1", 40 * SEC, &retry), 0);
        assert_int_equal(web_rate_limit_take(&rl, "192.0.2.1", 40 * SEC, &retry), -EAGAIN);

        /* Many addresses do not grow the table without bound. */
        web_rate_limit_init(&rl, 3, 0.1, 1e9, 1e9);
        for (int i = 0; i < 1000; i++) {
                char a[32];
                snprintf(a, sizeof(a), "10.1.%d.%d", i / 256, i % 256);
                assert_int_equal(web_rate_limit_take(&rl, a, (uint64_t)i, &retry), 0);
        }
        assert_int_equal(rl.n_addrs, 256);
}

static void test_cookie(void **state) {
        const char *h = "theme=dark; ca_session=abc123 ; other=ca_session=no";
        const char *v;
        size_t n;

        v = web_cookie_find(h, strlen(h), "ca_session", &n);
        assert_non_null(v);
        assert_int_equal(n, 6);
        assert_memory_equal(v, "abc123", 6);
        assert_null(web_cookie_find(h, strlen(h), "session", &n));
        assert_null(web_cookie_find("", 0, "ca_session", &n));
        v = web_cookie_find("ca_session=", 11, "ca_session", &n);
        assert_non_null(v);
        assert_int_equal(n, 0);
        /* Only the part of the header we were given is looked at. */
        assert_null(web_cookie_find(h, 10, "ca_session", &n));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_password), cmocka_unit_test(test_tokens),   cmocka_unit_test(test_sessions),
                cmocka_unit_test(test_rate_limit), cmocka_unit_test(test_cookie),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
