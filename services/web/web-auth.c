/* Dashboard authentication: password hashes (libcrypt), sessions, login rate limit. */
#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "services/web/web-auth.h"
#include "shared/macro.h"

/* ---- password ---- */

bool web_password_hash_valid(const char *hash) {
        size_t n;

        if (!hash || (strncmp(hash, "$y$", 3) != 0 && strncmp(hash, "$6$", 3) != 0))
                return false;
        n = strlen(hash);
        if (n < 20 || n > 512)
                return false;
        for (const char *p = hash; *p; p++)
                if (*p <= ' ' || *p >= 0x7f || *p == ':')
                        return false;
        return true;
}

int web_password_hash(const char *password, char **ret) {
        _cleanup_free_ struct crypt_data *data = NULL;
        char salt[CRYPT_GENSALT_OUTPUT_SIZE];
        const char *h;
        char *copy;

        if (!crypt_gensalt_rn("$y$", 0, NULL, 0, salt, sizeof(salt)))
                return errno > 0 ? -errno : -EINVAL;
        data = calloc(1, sizeof(*data));
        if (!data)
                return -ENOMEM;
        h = crypt_r(password, salt, data);
        if (!h || h[0] == '*')
                return -EINVAL;
        copy = strdup(h);
        explicit_bzero(data, sizeof(*data));
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int web_password_check(const char *hash, const char *password) {
        _cleanup_free_ struct crypt_data *data = NULL;
        const char *h;
        bool equal;

        if (!web_password_hash_valid(hash))
                return -EINVAL;
        data = calloc(1, sizeof(*data));
        if (!data)
                return -ENOMEM;
        h = crypt_r(password, hash, data);
        if (!h || h[0] == '*') {
                explicit_bzero(data, sizeof(*data));
                return -EINVAL;
        }
        equal = web_token_equal(h, strlen(h), hash, strlen(hash));
        explicit_bzero(data, sizeof(*data));
        return equal;
}

/* ---- tokens ---- */

int web_random_token(char ret[static WEB_TOKEN_LEN + 1]) {
        static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        uint8_t raw[33] = {};
        size_t got = 0;

        while (got < 32) {
                ssize_t n = getrandom(raw + got, 32 - got, 0);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                got += (size_t)n;
        }
        /* 32 bytes = 256 bits: 42 full groups of 6 bits and 4 bits left. */
        for (size_t i = 0, bit = 0; i < WEB_TOKEN_LEN; i++, bit += 6) {
                unsigned v = ((unsigned)raw[bit / 8] << 8 | raw[bit / 8 + 1]) >> (10 - bit % 8);
                ret[i] = alphabet[v & 0x3f];
        }
        ret[WEB_TOKEN_LEN] = 0;
        explicit_bzero(raw, sizeof(raw));
        return 0;
}

bool web_token_equal(const char *a, size_t a_len, const char *b, size_t b_len) {
        unsigned char d = a_len != b_len;
        size_t n = MIN(a_len, b_len);

        for (size_t i = 0; i < n; i++)
                d |= (unsigned char)(a[i] ^ b[i]);
        return d == 0;
}

/* ---- sessions ---- */

int web_sessions_init(WebSessions *s, size_t capacity, uint64_t idle_usec, uint64_t max_age_usec) {
        *s = (WebSessions){ .capacity = capacity, .idle_usec = idle_usec, .max_age_usec = max_age_usec, .next_id = 1 };
        s->sessions = calloc(capacity, sizeof(WebSession));
        return s->sessions ? 0 : -ENOMEM;
}

void web_sessions_done(WebSessions *s) {
        if (s->sessions)
                explicit_bzero(s->sessions, s->capacity * sizeof(WebSession));
        free(s->sessions);
        *s = (WebSessions){};
}

static void session_drop(WebSessions *s, size_t i) {
        s->sessions[i] = s->sessions[--s->n_sessions];
        explicit_bzero(&s->sessions[s->n_sessions], sizeof(WebSession));
}

static bool session_expired(const WebSessions *s, const WebSession *x, uint64_t now) {
        return now - x->last_used_usec > s->idle_usec || now - x->created_usec > s->max_age_usec;
}

size_t web_sessions_expire(WebSessions *s, uint64_t now) {
        size_t n = 0;

        for (size_t i = 0; i < s->n_sessions;)
                if (session_expired(s, &s->sessions[i], now)) {
                        session_drop(s, i);
                        n++;
                } else
                        i++;
        return n;
}

int web_sessions_create(WebSessions *s, uint64_t now, const WebSession **ret) {
        WebSession *x;
        int r;

        (void)web_sessions_expire(s, now);
        if (s->n_sessions == s->capacity) {
                size_t lru = 0;
                for (size_t i = 1; i < s->n_sessions; i++)
                        if (s->sessions[i].last_used_usec < s->sessions[lru].last_used_usec)
                                lru = i;
                session_drop(s, lru);
        }
        x = &s->sessions[s->n_sessions];
        r = web_random_token(x->token);
        if (r >= 0)
                r = web_random_token(x->csrf);
        if (r < 0) {
                explicit_bzero(x, sizeof(*x));
                return r;
        }
        x->created_usec = x->last_used_usec = now;
        x->id = s->next_id++;
        s->n_sessions++;
        *ret = x;
        return 0;
}

const WebSession *web_sessions_find(WebSessions *s, const char *token, size_t len, uint64_t now) {
        WebSession *found = NULL;

        if (len != WEB_TOKEN_LEN)
                return NULL;
        for (size_t i = 0; i < s->n_sessions;) {
                WebSession *x = &s->sessions[i];
                if (session_expired(s, x, now)) {
                        session_drop(s, i);
                        continue;
                }
                /* Every live token is compared in full: the time does not tell which matched. */
                if (web_token_equal(x->token, WEB_TOKEN_LEN, token, len))
                        found = x;
                i++;
        }
        if (found)
                found->last_used_usec = now;
        return found;
}

bool web_sessions_alive(const WebSessions *s, uint64_t id) {
        for (size_t i = 0; i < s->n_sessions; i++)
                if (s->sessions[i].id == id)
                        return true;
        return false;
}

bool web_sessions_remove(WebSessions *s, uint64_t id) {
        for (size_t i = 0; i < s->n_sessions; i++)
                if (s->sessions[i].id == id) {
                        session_drop(s, i);
                        return true;
                }
        return false;
}

size_t web_sessions_revoke_all(WebSessions *s) {
        size_t n = s->n_sessions;

        explicit_bzero(s->sessions, s->capacity * sizeof(WebSession));
        s->n_sessions = 0;
        return n;
}

/* ---- rate limit ---- */

void web_rate_limit_init(WebRateLimit *rl, double addr_burst, double addr_per_sec, double global_burst,
                         double global_per_sec) {
        *rl = (WebRateLimit){ .addr_burst = addr_burst, .addr_per_sec = addr_per_sec,
                              .global_burst = global_burst, .global_per_sec = global_per_sec };
        rl->global.tokens = global_burst;
}

static void bucket_refill(WebRateBucket *b, double burst, double per_sec, uint64_t now) {
        if (now > b->updated_usec)
                b->tokens = MIN(burst, b->tokens + (double)(now - b->updated_usec) * per_sec / 1e6);
        b->updated_usec = now;
}

static uint64_t bucket_wait(const WebRateBucket *b, double per_sec) {
        return (uint64_t)((1.0 - b->tokens) / per_sec * 1e6) + 1;
}

int web_rate_limit_take(WebRateLimit *rl, const char *addr, uint64_t now, uint64_t *ret_retry_usec) {
        WebRateBucket *b = NULL;

        for (size_t i = 0; i < rl->n_addrs; i++)
                if (strcmp(rl->addrs[i].addr, addr) == 0) {
                        b = &rl->addrs[i];
                        break;
                }
        if (!b) {
                /* A new address; when the table is full, reuse the bucket that is fullest
                 * again (the address that tried least recently). */
                if (rl->n_addrs < ELEMENTSOF(rl->addrs))
                        b = &rl->addrs[rl->n_addrs++];
                else {
                        b = &rl->addrs[0];
                        for (size_t i = 1; i < rl->n_addrs; i++)
                                if (rl->addrs[i].updated_usec < b->updated_usec)
                                        b = &rl->addrs[i];
                }
                *b = (WebRateBucket){ .tokens = rl->addr_burst, .updated_usec = now };
                snprintf(b->addr, sizeof(b->addr), "%s", addr);
        }
        bucket_refill(b, rl->addr_burst, rl->addr_per_sec, now);
        bucket_refill(&rl->global, rl->global_burst, rl->global_per_sec, now);
        if (b->tokens < 1.0) {
                *ret_retry_usec = bucket_wait(b, rl->addr_per_sec);
                return -EAGAIN;
        }
        if (rl->global.tokens < 1.0) {
                *ret_retry_usec = bucket_wait(&rl->global, rl->global_per_sec);
                return -EAGAIN;
        }
        b->tokens -= 1.0;
        rl->global.tokens -= 1.0;
        return 0;
}

void web_rate_limit_refund(WebRateLimit *rl, const char *addr) {
        for (size_t i = 0; i < rl->n_addrs; i++)
                if (strcmp(rl->addrs[i].addr, addr) == 0) {
                        rl->addrs[i].tokens = MIN(rl->addr_burst, rl->addrs[i].tokens + 1.0);
                        break;
                }
        rl->global.tokens = MIN(rl->global_burst, rl->global.tokens + 1.0);
}

/* ---- cookies ---- */

const char *web_cookie_find(const char *header, size_t len, const char *name, size_t *ret_len) {
        size_t nlen = strlen(name);
        const char *p = header, *end = header + len;

        while (p < end) {
                const char *semi, *eq;
                while (p < end && (*p == ' ' || *p == '\t' || *p == ';'))
                        p++;
                semi = memchr(p, ';', (size_t)(end - p));
                if (!semi)
                        semi = end;
                eq = memchr(p, '=', (size_t)(semi - p));
                if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
                        const char *v = eq + 1, *ve = semi;
                        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                                ve--;
                        *ret_len = (size_t)(ve - v);
                        return v;
                }
                p = semi;
        }
        return NULL;
}
