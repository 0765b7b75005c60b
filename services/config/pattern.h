/* JSON Schema "pattern": ECMA-262 regular expressions, checked with POSIX regex (glibc). */
#pragma once

#include <regex.h>
#include <stdbool.h>

/* Translate an ECMA-262 pattern into a POSIX extended regular expression that matches the same
 * strings (see docs/config-service.md for what is supported). Anything it cannot translate
 * exactly (\s, \b, backreferences, lookaround, named groups, \x/\u/\c/\p escapes, ...) is refused:
 * returns -EINVAL with *ret_error saying what and why; -ENOMEM on out-of-memory. */
int pattern_to_ere(const char *ecma, char **ret_ere, char **ret_error);

/* Compile (pattern_to_ere() + regcomp, in UTF-8 so that "." and classes match code points). */
int pattern_compile(const char *ecma, regex_t *ret, char **ret_error);
/* Does the string match (anywhere, as ECMA-262's test() without anchors)? */
bool pattern_match(const regex_t *re, const char *s);
