/* Dashboard authentication: the password hash, sessions, and the login rate limit.
 *
 * Pure logic without I/O or threads; the h2o thread owns the session table and the rate
 * limiter (web-server.c), the password is checked on a worker thread (crypt is slow on
 * purpose). Times are CLOCK_MONOTONIC microseconds passed in by the caller. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- password ---- */

/* A crypt(3) hash we accept for the dashboard password: yescrypt ("$y$") or sha512-crypt
 * ("$6$"), printable, no whitespace or ':' (it is stored as one line). */
bool web_password_hash_valid(const char *hash);
/* Hash a password with yescrypt and a fresh random salt (crypt_gensalt_rn + crypt_r). */
int web_password_hash(const char *password, char **ret);
/* 1 if password matches hash, 0 if not, negative errno if the hash cannot be used. The
 * comparison does not depend on where the first difference is. */
int web_password_check(const char *hash, const char *password);

/* ---- sessions ---- */

#define WEB_TOKEN_LEN 43   /* 32 random bytes, base64url without padding */

typedef struct WebSession {
        char token[WEB_TOKEN_LEN + 1];  /* the cookie value */
        char csrf[WEB_TOKEN_LEN + 1];   /* sent back in X-CSRF-Token on state-changing requests */
        uint64_t created_usec;
        uint64_t last_used_usec;
        uint64_t id;                    /* never reused within a process */
} WebSession;

typedef struct WebSessions {
        WebSession *sessions;
        size_t n_sessions, capacity;
        uint64_t idle_usec;       /* ends after this long without a request */
        uint64_t max_age_usec;    /* ends this long after login, used or not */
        uint64_t next_id;
} WebSessions;

int web_sessions_init(WebSessions *s, size_t capacity, uint64_t idle_usec, uint64_t max_age_usec);
void web_sessions_done(WebSessions *s);
/* A new session; when the table is full the least recently used one ends. The pointer is
 * valid until the next call that changes the table. */
int web_sessions_create(WebSessions *s, uint64_t now, const WebSession **ret);
/* The live session with this token (updating its last use), or NULL. Expired sessions found
 * on the way are removed. */
const WebSession *web_sessions_find(WebSessions *s, const char *token, size_t len, uint64_t now);
/* Whether the session with this id still exists (for long-lived event streams). */
bool web_sessions_alive(const WebSessions *s, uint64_t id);
bool web_sessions_remove(WebSessions *s, uint64_t id);
size_t web_sessions_revoke_all(WebSessions *s);
/* Drop expired sessions; returns how many. */
size_t web_sessions_expire(WebSessions *s, uint64_t now);

/* Random token (base64url, WEB_TOKEN_LEN characters + NUL). */
int web_random_token(char ret[static WEB_TOKEN_LEN + 1]);
/* Compare without an early exit (for tokens). */
bool web_token_equal(const char *a, size_t a_len, const char *b, size_t b_len);

/* ---- login rate limit ---- */

/* Token buckets: one per client address (a few attempts, then one per interval) and one for
 * all clients together, so that many addresses cannot try faster either. */
typedef struct WebRateBucket {
        char addr[64];
        double tokens;
        uint64_t updated_usec;
} WebRateBucket;

typedef struct WebRateLimit {
        WebRateBucket global;
        WebRateBucket addrs[256];
        size_t n_addrs;
        double addr_burst, addr_per_sec;
        double global_burst, global_per_sec;
} WebRateLimit;

void web_rate_limit_init(WebRateLimit *rl, double addr_burst, double addr_per_sec, double global_burst,
                         double global_per_sec);
/* Take one attempt for addr: 0 if allowed; -EAGAIN if not, with the wait in *ret_retry_usec. */
int web_rate_limit_take(WebRateLimit *rl, const char *addr, uint64_t now, uint64_t *ret_retry_usec);
/* Give back the attempt of a login that succeeded: only failures count. */
void web_rate_limit_refund(WebRateLimit *rl, const char *addr);

/* ---- HTTP helpers ---- */

/* The value of cookie name in a Cookie header (not NUL-terminated), or NULL. */
const char *web_cookie_find(const char *header, size_t len, const char *name, size_t *ret_len);
