/* Unit tests for JSON Schema patterns: ECMA-262 syntax matched exactly by POSIX regex, or
 * refused at registration with the reason. */
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "services/config/pattern.h"
#include "shared/macro.h"

static void test_matches_like_ecma262(void **state) {
        static const struct {
                const char *pattern, *s;
                bool match;
        } cases[] = {
                { "^\\d+$", "123", true },          { "^\\d+$", "12a", false },
                { "^\\d+$", "d", false }, /* was read as the letter d */
                { "^\\D$", "a", true },             { "^\\D$", "1", false },
                { "^\\w+$", "a_Z1", true },         { "^\\w+$", "a-1", false },
                { "^\\W$", "-", true },             { "^\\W$", "_", false },
                { "^a\\tb$", "a\tb", true },        { "^a\\tb$", "atb", false },
                { "^a\\nb$", "a\nb", true },
                { "^\\.$", ".", true },             { "^\\.$", "x", false },
                { "^a.c$", "abc", true },           { "^a.c$", "a\nc", false },
                { "^a.c$", "a\xc3\xa9" "c", true }, /* one code point */
                { "^.{3}$", "h\xc3\xa9\xc3\xa9", true },
                { "^\xc3\xa9{2}$", "\xc3\xa9\xc3\xa9", true },
                { "^[\\d-]+$", "1-2", true },       { "^[\\d-]+$", "a", false },
                { "^[\\w.]+$", "a.b_1", true },     { "^[\\w.]+$", "a b", false },
                { "^[^\\d]$", "x", true },          { "^[^\\d]$", "5", false },
                { "^[\\]a]+$", "]a", true },        { "^[\\]a]+$", "b", false },
                { "^[a\\-z]+$", "-az", true },      { "^[a\\-z]+$", "b", false },
                { "^[\\[:]+$", "[:", true },        { "^[\\[:]+$", "a", false },
                { "^[\\^]$", "^", true },           { "^[\\^]$", "a", false },
                { "^[\\\\]$", "\\", true },
                { "^[[:alpha:]]+$", "abc", true },  { "^[[:alpha:]]+$", "ab1", false },
                { "^(?:ab)+$", "abab", true },      { "^(?:ab)+$", "aba", false },
                { "^a+?$", "", false },             { "^a+?$", "aaa", true },
                { "^a??b$", "b", true },            { "^a{2}?$", "aa", true },
                { "^a{2,3}$", "aaa", true },        { "^a{2,3}$", "aaaa", false },
                { "^{x}$", "{x}", true }, /* not a quantifier: literal braces */
                { "^a{,2}$", "a{,2}", true },
                { "^\\/p\\-q$", "/p-q", true },
                { "a|b", "xbx", true },             { "a|b", "xyz", false }, /* unanchored */
                { "^\\$\\d+(\\.\\d{2})?$", "$10.50", true }, { "^\\$\\d+(\\.\\d{2})?$", "$10.5", false },
                { "^[a-f0-9]{8}$", "deadbeef", true },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                regex_t re;

                if (pattern_compile(cases[i].pattern, &re, &error) != 0)
                        fail_msg("'%s' refused: %s", cases[i].pattern, error);
                if (pattern_match(&re, cases[i].s) != cases[i].match)
                        fail_msg("'%s' on '%s': expected %s", cases[i].pattern, cases[i].s,
                                 cases[i].match ? "a match" : "no match");
                regfree(&re);
        }
}

static void test_refused_with_the_reason(void **state) {
        static const struct {
                const char *pattern, *error;
        } cases[] = {
                { "^\\s+$", "\\s (white space, Unicode's in JSON Schema) is not supported: use [[:space:]]" },
                { "\\S", "\\S (white space" },
                { "\\bword\\b", "word boundaries (\\b) are not supported" },
                { "(a)\\1", "\\1 (a backreference or NUL) is not supported" },
                { "a(?=b)", "lookaround" },
                { "(?<!a)b", "lookaround" },
                { "(?<year>\\d{4})", "named groups" },
                { "(?i)a", "'(?' must be followed by ':'" },
                { "\\x41", "\\x is not supported" },
                { "\\u0041", "\\u is not supported" },
                { "\\cA", "\\c is not supported" },
                { "\\p{L}", "\\p is not supported" },
                { "[\\D]", "\\D inside [...] is not supported" },
                { "[\\s]", "\\s (white space" },
                { "[]", "[] matches nothing" },
                { "[^]", "[^] (any character) is not supported" },
                { "[z-a]", "range out of order in [...]: 'z-a'" },
                { "[a-\\d]", "a range in [...] must end with a character" },
                { "a\\", "ends with a lone backslash" },
                { "[abc", "unterminated [...]" },
                { "(", "invalid regular expression" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *error = NULL;
                regex_t re;

                if (pattern_compile(cases[i].pattern, &re, &error) == 0) {
                        regfree(&re);
                        fail_msg("'%s' was accepted", cases[i].pattern);
                }
                assert_non_null(error);
                if (!strstr(error, cases[i].error))
                        fail_msg("'%s': '%s', expected '%s'", cases[i].pattern, error, cases[i].error);
        }
}

static void test_translation(void **state) {
        _cleanup_free_ char *ere = NULL, *error = NULL;

        assert_int_equal(pattern_to_ere("^\\d{2}[\\w-]\\.x*?$", &ere, &error), 0);
        assert_string_equal(ere, "^[0-9]{2}[A-Za-z0-9_-]\\.x*$");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_matches_like_ecma262),
                cmocka_unit_test(test_refused_with_the_reason),
                cmocka_unit_test(test_translation),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
