/* ECMA-262 patterns (what JSON Schema says "pattern" is) translated to POSIX EREs for glibc's
 * regcomp: exactly, or refused with the reason. Matching runs in the C.UTF-8 locale, so that
 * "." and bracket expressions take a code point, as in ECMA-262 (and as minLength counts). */
#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "services/config/pattern.h"
#include "shared/macro.h"

typedef struct Out {
        char *buf;
        size_t len, size;
} Out;

static int put(Out *o, const char *s, size_t n) {
        if (o->len + n + 1 > o->size) {
                size_t size = MAX(o->size * 2, o->len + n + 64);
                char *b = realloc(o->buf, size);
                if (!b)
                        return -ENOMEM;
                o->buf = b;
                o->size = size;
        }
        memcpy(o->buf + o->len, s, n);
        o->len += n;
        o->buf[o->len] = 0;
        return 0;
}

static int puts_(Out *o, const char *s) {
        return put(o, s, strlen(s));
}

static int putc_(Out *o, char c) {
        return put(o, &c, 1);
}

static int refuse(char **ret_error, const char *format, ...) _printf_(2, 3);
static int refuse(char **ret_error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return *ret_error ? -EINVAL : -ENOMEM;
}

/* \t \n \r \f \v as the character itself (an ERE has no such escapes). */
static char control_escape(char e) {
        switch (e) {
        case 't':
                return '\t';
        case 'n':
                return '\n';
        case 'r':
                return '\r';
        case 'f':
                return '\f';
        case 'v':
                return '\v';
        default:
                return 0;
        }
}

static bool is_ascii_punct(char c) {
        return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}

/* Escapes that are refused, and why. */
static int refuse_escape(char e, bool in_class, char **ret_error) {
        if (e == 's' || e == 'S')
                return refuse(ret_error, "\\%c (white space, Unicode's in JSON Schema) is not supported: "
                                         "use [[:space:]] or list the characters", e);
        if ((e == 'b' || e == 'B') && !in_class)
                return refuse(ret_error, "word boundaries (\\%c) are not supported", e);
        if (e >= '0' && e <= '9')
                return refuse(ret_error, "\\%c (a backreference or NUL) is not supported", e);
        if (in_class && (e == 'D' || e == 'W'))
                return refuse(ret_error, "\\%c inside [...] is not supported: use [^...] around the class", e);
        return refuse(ret_error, "\\%c is not supported (supported escapes: \\d \\D \\w \\W \\t \\n \\r \\f \\v "
                                 "and escaped punctuation)", e);
}

/* One member of a bracket expression: a character, or (class != NULL) a class such as "0-9". */
typedef struct Member {
        char c;
        const char *class;
} Member;

static int bracket_member(const char *p, size_t *i, Member *ret, char **ret_error) {
        char c = p[*i];

        if (c == '\\') {
                char e = p[*i + 1], ctl = control_escape(e);
                if (!e)
                        return refuse(ret_error, "the pattern ends with a lone backslash");
                *i += 2;
                if (ctl)
                        *ret = (Member){ .c = ctl };
                else if (e == 'd')
                        *ret = (Member){ .class = "0-9" };
                else if (e == 'w')
                        *ret = (Member){ .class = "A-Za-z0-9_" };
                else if (is_ascii_punct(e))
                        *ret = (Member){ .c = e };
                else
                        return refuse_escape(e, true, ret_error);
                return 0;
        }
        if (c == '[' && p[*i + 1] == ':') {
                /* A POSIX class ([:alpha:]): an extension, kept as it is. */
                const char *end = strstr(p + *i + 2, ":]");
                if (!end)
                        return refuse(ret_error, "unterminated POSIX class '[:' in [...]");
                ret->c = 0;
                ret->class = NULL;
                *i = (size_t)(end - p) + 2;
                return 1; /* the caller copies p[start..*i) */
        }
        *ret = (Member){ .c = c };
        (*i)++;
        return 0;
}

/* [...] starting at p[*i] == '[': written as a POSIX bracket expression, whose rules differ
 * (no escapes inside; ']' must come first and '-' last to be literal). */
static int translate_class(const char *p, size_t *i, Out *o, char **ret_error) {
        Out items = {};
        bool negated = false, has_bracket = false, has_dash = false, has_caret = false, has_open = false;
        size_t n_members = 0;
        int r;

        (*i)++;
        if (p[*i] == '^') {
                negated = true;
                (*i)++;
        }
        if (p[*i] == ']')
                return refuse(ret_error, negated ? "[^] (any character) is not supported: use (.|\\n)"
                                                 : "[] matches nothing");
        for (;;) {
                size_t start = *i;
                Member a = {}, b = {};

                if (!p[*i]) {
                        free(items.buf);
                        return refuse(ret_error, "unterminated [...]");
                }
                if (p[*i] == ']') {
                        (*i)++;
                        break;
                }
                r = bracket_member(p, i, &a, ret_error);
                if (r < 0) {
                        free(items.buf);
                        return r;
                }
                n_members++;
                if (r == 1) {
                        r = put(&items, p + start, *i - start);
                        goto next;
                }
                if (!a.class && p[*i] == '-' && p[*i + 1] && p[*i + 1] != ']') {
                        (*i)++;
                        r = bracket_member(p, i, &b, ret_error);
                        if (r < 0) {
                                free(items.buf);
                                return r;
                        }
                        if (r == 1 || b.class) {
                                free(items.buf);
                                return refuse(ret_error, "a range in [...] must end with a character");
                        }
                        if ((unsigned char)b.c < (unsigned char)a.c) {
                                free(items.buf);
                                return refuse(ret_error, "range out of order in [...]: '%c-%c'", a.c, b.c);
                        }
                        if (strchr("]-^[", a.c) || strchr("]-^[", b.c) || !a.c || !b.c) {
                                free(items.buf);
                                return refuse(ret_error, "a range in [...] cannot start or end with '%c'",
                                              a.c && strchr("]-^[", a.c) ? a.c : b.c);
                        }
                        r = putc_(&items, a.c);
                        if (r >= 0)
                                r = putc_(&items, '-');
                        if (r >= 0)
                                r = putc_(&items, b.c);
                        goto next;
                }
                if (a.class)
                        r = puts_(&items, a.class);
                else if (a.c == ']')
                        has_bracket = true;
                else if (a.c == '-')
                        has_dash = true;
                else if (a.c == '^')
                        has_caret = true;
                else if (a.c == '[')
                        has_open = true; /* written last: "[:", "[." and "[=" would mean more */
                else
                        r = putc_(&items, a.c);
        next:
                if (r < 0) {
                        free(items.buf);
                        return r;
                }
        }
        /* Only '^' (and not negated): a bracket expression "[^]" would mean something else. */
        if (!negated && has_caret && !has_bracket && !has_dash && !has_open && items.len == 0) {
                free(items.buf);
                return puts_(o, "\\^");
        }
        r = putc_(o, '[');
        if (r >= 0 && negated)
                r = putc_(o, '^');
        if (r >= 0 && has_bracket)
                r = putc_(o, ']');
        if (r >= 0 && items.len > 0)
                r = put(o, items.buf, items.len);
        if (r >= 0 && has_open)
                r = putc_(o, '[');
        if (r >= 0 && has_caret)
                r = putc_(o, '^');
        if (r >= 0 && has_dash)
                r = putc_(o, '-');
        if (r >= 0)
                r = putc_(o, ']');
        free(items.buf);
        return r;
}

/* {n}, {n,} or {n,m} at p: its length, or 0 if it is not a quantifier (then '{' is literal). */
static size_t quantifier_length(const char *p) {
        size_t k = 1;

        if (p[k] < '0' || p[k] > '9')
                return 0;
        while (p[k] >= '0' && p[k] <= '9')
                k++;
        if (p[k] == ',') {
                k++;
                while (p[k] >= '0' && p[k] <= '9')
                        k++;
        }
        return p[k] == '}' ? k + 1 : 0;
}

int pattern_to_ere(const char *ecma, char **ret_ere, char **ret_error) {
        Out o = {};
        bool after_quantifier = false;
        size_t i = 0;
        int r = 0;

        *ret_error = NULL;
        r = puts_(&o, "");
        while (r >= 0 && ecma[i]) {
                char c = ecma[i];
                bool quantifier = false;
                size_t q;

                switch (c) {
                case '\\': {
                        char e = ecma[i + 1], ctl = control_escape(e);
                        if (!e) {
                                r = refuse(ret_error, "the pattern ends with a lone backslash");
                                break;
                        }
                        if (ctl)
                                r = putc_(&o, ctl);
                        else if (e == 'd')
                                r = puts_(&o, "[0-9]");
                        else if (e == 'D')
                                r = puts_(&o, "[^0-9]");
                        else if (e == 'w')
                                r = puts_(&o, "[A-Za-z0-9_]");
                        else if (e == 'W')
                                r = puts_(&o, "[^A-Za-z0-9_]");
                        else if (strchr(".[](){}*+?|^$\\", e)) {
                                r = putc_(&o, '\\');
                                if (r >= 0)
                                        r = putc_(&o, e);
                        } else if (is_ascii_punct(e))
                                r = putc_(&o, e); /* \/ \- \: ...: the character (GNU \< \> \` \' mean more) */
                        else
                                r = refuse_escape(e, false, ret_error);
                        i += 2;
                        break;
                }
                case '[':
                        r = translate_class(ecma, &i, &o, ret_error);
                        break;
                case '(':
                        if (ecma[i + 1] == '?') {
                                if (ecma[i + 2] == ':') {
                                        r = putc_(&o, '(');
                                        i += 3;
                                        break;
                                }
                                if (ecma[i + 2] == '=' || ecma[i + 2] == '!' ||
                                    (ecma[i + 2] == '<' && (ecma[i + 3] == '=' || ecma[i + 3] == '!')))
                                        r = refuse(ret_error, "lookaround ((?=, (?!, (?<=, (?<!) is not supported");
                                else if (ecma[i + 2] == '<')
                                        r = refuse(ret_error, "named groups ((?<name>...)) are not supported: use (...)");
                                else
                                        r = refuse(ret_error, "'(?' must be followed by ':'");
                                break;
                        }
                        r = putc_(&o, '(');
                        i++;
                        break;
                case '*':
                case '+':
                case '?':
                        /* A lazy quantifier (x*?, x+?, x??, x{n}?) matches the same strings. */
                        if (!(c == '?' && after_quantifier))
                                r = putc_(&o, c);
                        quantifier = c != '?' || !after_quantifier;
                        i++;
                        break;
                case '{':
                        q = quantifier_length(ecma + i);
                        if (q > 0) {
                                r = put(&o, ecma + i, q);
                                quantifier = true;
                                i += q;
                        } else {
                                r = puts_(&o, "\\{"); /* a literal '{', as ECMA-262 (Annex B) reads it */
                                i++;
                        }
                        break;
                case '}':
                        r = puts_(&o, "\\}");
                        i++;
                        break;
                case '.':
                        /* Any character but a line terminator. */
                        r = puts_(&o, "[^\n\r]");
                        i++;
                        break;
                default:
                        r = putc_(&o, c);
                        i++;
                        break;
                }
                after_quantifier = quantifier;
        }
        if (r < 0) {
                free(o.buf);
                return r;
        }
        *ret_ere = o.buf;
        return 0;
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_locale_init(void) {
        utf8_locale = newlocale(LC_CTYPE_MASK | LC_COLLATE_MASK, "C.UTF-8", (locale_t)0);
}

/* Run in C.UTF-8 where there is one (glibc >= 2.35 has it built in); else bytes. */
static locale_t enter_utf8(void) {
        (void)pthread_once(&utf8_once, utf8_locale_init);
        return utf8_locale ? uselocale(utf8_locale) : (locale_t)0;
}

static void leave_utf8(locale_t old) {
        if (old)
                (void)uselocale(old);
}

int pattern_compile(const char *ecma, regex_t *ret, char **ret_error) {
        _cleanup_free_ char *ere = NULL;
        locale_t old;
        int r;

        r = pattern_to_ere(ecma, &ere, ret_error);
        if (r < 0)
                return r;
        old = enter_utf8();
        r = regcomp(ret, ere, REG_EXTENDED | REG_NOSUB);
        leave_utf8(old);
        if (r != 0) {
                char msg[128];
                regerror(r, NULL, msg, sizeof(msg));
                return refuse(ret_error, "invalid regular expression: %s", msg);
        }
        return 0;
}

bool pattern_match(const regex_t *re, const char *s) {
        locale_t old = enter_utf8();
        bool m = regexec(re, s, 0, NULL, 0) == 0;

        leave_utf8(old);
        return m;
}
