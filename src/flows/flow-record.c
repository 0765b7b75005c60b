/* A flow as it is stored durably and shown (see flow-record.h). */
#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "flows/flow-record.h"
#include "shared/fileio.h"
#include "shared/macro.h"

#define MAX_STEPS 16
#define MAX_FILE (256 * 1024)

static const char *const state_names[_FLOW_STATE_MAX] = {
        [FLOW_PENDING] = "PENDING",   [FLOW_ACTIVE] = "ACTIVE",   [FLOW_DEGRADED] = "DEGRADED",
        [FLOW_FAILED] = "FAILED",     [FLOW_STOPPED] = "STOPPED",
};

const char *flow_state_to_string(FlowState s) {
        return s >= 0 && s < _FLOW_STATE_MAX ? state_names[s] : "UNKNOWN";
}

static int flow_state_from_string(const char *s) {
        for (int i = 0; i < _FLOW_STATE_MAX; i++)
                if (strcmp(s, state_names[i]) == 0)
                        return i;
        return -EINVAL;
}

bool flow_id_valid(const char *id) {
        if (!id || strncmp(id, "flow-", 5) != 0 || strlen(id) != 21)
                return false;
        for (const char *p = id + 5; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

int flow_id_new(char **ret) {
        uint8_t raw[8];

        if (getrandom(raw, sizeof(raw), 0) != sizeof(raw))
                return -EIO;
        if (asprintf(ret, "flow-%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2], raw[3], raw[4], raw[5],
                     raw[6], raw[7]) < 0)
                return -ENOMEM;
        return 0;
}

void flow_step_record_done(FlowStepRecord *s) {
        free(s->module);
        free(s->entity_id);
        free(s->entity_type);
        free(s->media_in);
        free(s->media_out);
        free(s->state);
        free(s->message);
        *s = (FlowStepRecord){};
}

FlowRecord *flow_record_free(FlowRecord *f) {
        if (!f)
                return NULL;
        free(f->id);
        free(f->source_module);
        free(f->source_entity);
        free(f->target_module);
        free(f->target_entity);
        free(f->reason);
        for (size_t i = 0; i < f->n_steps; i++)
                flow_step_record_done(&f->steps[i]);
        free(f->steps);
        free(f);
        return NULL;
}

int flow_set_string(char **field, const char *value) {
        char *s = strdup(value ? value : "");

        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

/* ---- JSON -------------------------------------------------------------------------- */

int flow_record_to_json(const FlowRecord *f, char **ret) {
        json_t *root, *steps;
        char *text;

        assert(f);
        steps = json_array();
        root = json_pack("{s:s, s:{s:s, s:s}, s:s, s:s, s:I, s:I, s:i}", "id", f->id, "source", "module",
                         f->source_module, "id", f->source_entity, "state", flow_state_to_string(f->state),
                         "reason", f->reason ? f->reason : "", "created_usec", (json_int_t)f->created_usec, "changed_usec",
                         (json_int_t)f->changed_usec, "n_heals", (int)f->n_heals);
        if (!root || !steps)
                goto oom;
        if (f->target_module &&
            json_object_set_new(root, "target", json_pack("{s:s, s:s}", "module", f->target_module, "id",
                                                          f->target_entity ? f->target_entity : "")) < 0)
                goto oom;
        for (size_t i = 0; i < f->n_steps; i++) {
                const FlowStepRecord *s = &f->steps[i];
                json_t *j = json_pack("{s:s, s:s, s:s, s:b, s:s, s:s, s:s, s:s}", "module", s->module, "entity_id",
                                      s->entity_id ? s->entity_id : "", "entity_type", s->entity_type, "created",
                                      s->created, "media_in", s->media_in ? s->media_in : "", "media_out",
                                      s->media_out ? s->media_out : "", "state", s->state ? s->state : "",
                                      "message", s->message ? s->message : "");
                if (!j || json_array_append_new(steps, j) < 0)
                        goto oom;
        }
        if (json_object_set_new(root, "steps", steps) < 0) {
                steps = NULL;
                goto oom;
        }
        text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(root);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
oom:
        json_decref(steps);
        json_decref(root);
        return -ENOMEM;
}

static int fail(char **ret_error, const char *fmt, ...) _printf_(2, 3);
static int fail(char **ret_error, const char *fmt, ...) {
        va_list ap;

        if (ret_error) {
                va_start(ap, fmt);
                if (vasprintf(ret_error, fmt, ap) < 0)
                        *ret_error = NULL;
                va_end(ap);
        }
        return -EINVAL;
}

/* A string member (required unless optional), copied into *dst. */
static int take_string(json_t *obj, const char *key, const char *where, bool optional, char **dst,
                       char **ret_error) {
        json_t *v = json_object_get(obj, key);

        if (!v && optional)
                return 0;
        if (!json_is_string(v))
                return fail(ret_error, "field '%s%s': %s", where, key, v ? "must be a string" : "missing");
        if (json_string_length(v) > 4096)
                return fail(ret_error, "field '%s%s': longer than 4096 bytes", where, key);
        *dst = strdup(json_string_value(v));
        return *dst ? 0 : -ENOMEM;
}

static int take_uint(json_t *obj, const char *key, uint64_t max, uint64_t *dst, char **ret_error) {
        json_t *v = json_object_get(obj, key);

        if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
                return fail(ret_error, "field '%s': must be an integer from 0 to %" PRIu64, key, max);
        *dst = (uint64_t)json_integer_value(v);
        return 0;
}

static int parse_step(json_t *j, size_t i, FlowStepRecord *s, char **ret_error) {
        char where[32];
        json_t *created;
        int r;

        snprintf(where, sizeof(where), "steps[%zu].", i);
        if (!json_is_object(j))
                return fail(ret_error, "field 'steps[%zu]': must be an object", i);
        if ((r = take_string(j, "module", where, false, &s->module, ret_error)) < 0 ||
            (r = take_string(j, "entity_id", where, false, &s->entity_id, ret_error)) < 0 ||
            (r = take_string(j, "entity_type", where, false, &s->entity_type, ret_error)) < 0 ||
            (r = take_string(j, "media_in", where, false, &s->media_in, ret_error)) < 0 ||
            (r = take_string(j, "media_out", where, false, &s->media_out, ret_error)) < 0 ||
            (r = take_string(j, "state", where, false, &s->state, ret_error)) < 0 ||
            (r = take_string(j, "message", where, false, &s->message, ret_error)) < 0)
                return r;
        created = json_object_get(j, "created");
        if (!json_is_boolean(created))
                return fail(ret_error, "field '%screated': must be true or false", where);
        s->created = json_is_true(created);
        if (!*s->module)
                return fail(ret_error, "field '%smodule': must not be empty", where);
        return 0;
}

int flow_record_from_json(const char *text, FlowRecord **ret, char **ret_error) {
        _cleanup_(flow_record_freep) FlowRecord *f = NULL;
        _cleanup_free_ char *state = NULL;
        json_t *root, *src, *tgt, *steps;
        json_error_t jerr;
        uint64_t u = 0;
        int r, s;

        assert(text);
        assert(ret);
        root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
        if (!root)
                return fail(ret_error, "line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        f = new0(FlowRecord, 1);
        if (!f) {
                json_decref(root);
                return -ENOMEM;
        }
        r = -EINVAL;
        if (!json_is_object(root)) {
                r = fail(ret_error, "not a JSON object");
                goto finish;
        }
        src = json_object_get(root, "source");
        tgt = json_object_get(root, "target");
        steps = json_object_get(root, "steps");
        if ((r = take_string(root, "id", "", false, &f->id, ret_error)) < 0 ||
            (r = take_string(root, "state", "", false, &state, ret_error)) < 0 ||
            (r = take_string(root, "reason", "", true, &f->reason, ret_error)) < 0)
                goto finish;
        if (!flow_id_valid(f->id)) {
                r = fail(ret_error, "field 'id': must be \"flow-\" and 16 hex digits");
                goto finish;
        }
        s = flow_state_from_string(state);
        if (s < 0) {
                r = fail(ret_error, "field 'state': unknown flow state");
                goto finish;
        }
        f->state = s;
        if (!json_is_object(src)) {
                r = fail(ret_error, "field 'source': must be an object");
                goto finish;
        }
        if ((r = take_string(src, "module", "source.", false, &f->source_module, ret_error)) < 0 ||
            (r = take_string(src, "id", "source.", false, &f->source_entity, ret_error)) < 0)
                goto finish;
        if (tgt && (!json_is_object(tgt) ||
                    (r = take_string(tgt, "module", "target.", false, &f->target_module, ret_error)) < 0 ||
                    (r = take_string(tgt, "id", "target.", false, &f->target_entity, ret_error)) < 0)) {
                if (r >= 0)
                        r = fail(ret_error, "field 'target': must be an object");
                goto finish;
        }
        if ((r = take_uint(root, "created_usec", UINT64_MAX >> 1, &f->created_usec, ret_error)) < 0 ||
            (r = take_uint(root, "changed_usec", UINT64_MAX >> 1, &f->changed_usec, ret_error)) < 0 ||
            (r = take_uint(root, "n_heals", UINT32_MAX, &u, ret_error)) < 0)
                goto finish;
        f->n_heals = (uint32_t)u;
        if (!json_is_array(steps) || json_array_size(steps) < 1 || json_array_size(steps) > MAX_STEPS) {
                r = fail(ret_error, "field 'steps': must be an array of 1 to %d steps", MAX_STEPS);
                goto finish;
        }
        f->steps = new0(FlowStepRecord, json_array_size(steps));
        if (!f->steps) {
                r = -ENOMEM;
                goto finish;
        }
        for (size_t i = 0; i < json_array_size(steps); i++) {
                f->n_steps++;
                r = parse_step(json_array_get(steps, i), i, &f->steps[i], ret_error);
                if (r < 0)
                        goto finish;
        }
        *ret = TAKE_PTR(f);
        r = 0;
finish:
        json_decref(root);
        return r;
}

/* ---- the store ---------------------------------------------------------------------- */

int flow_store_save(const char *dir, const FlowRecord *f) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        assert(dir);
        assert(f);
        if (!flow_id_valid(f->id))
                return -EINVAL;
        r = flow_record_to_json(f, &text);
        if (r < 0)
                return r;
        if (asprintf(&path, "%s/%s.json", dir, f->id) < 0)
                return -ENOMEM;
        return write_file_atomic(path, text, strlen(text), 0600);
}

int flow_store_remove(const char *dir, const char *id) {
        _cleanup_free_ char *path = NULL;

        if (!flow_id_valid(id))
                return -EINVAL;
        if (asprintf(&path, "%s/%s.json", dir, id) < 0)
                return -ENOMEM;
        if (unlink(path) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

static int read_small_file(const char *path, char **ret) {
        _cleanup_close_ int fd = -1;
        _cleanup_free_ char *buf = NULL;
        struct stat st;
        ssize_t n;

        /* O_NONBLOCK: a FIFO put there must not hang us; fstat then refuses it. */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADF;
        if (st.st_size > MAX_FILE)
                return -EFBIG;
        buf = malloc((size_t)st.st_size + 1);
        if (!buf)
                return -ENOMEM;
        n = read(fd, buf, (size_t)st.st_size);
        if (n < 0)
                return -errno;
        buf[n] = 0;
        *ret = TAKE_PTR(buf);
        return 0;
}

static int cmp_records(const void *a, const void *b) {
        const FlowRecord *x = *(FlowRecord *const *)a, *y = *(FlowRecord *const *)b;

        if (x->created_usec != y->created_usec)
                return x->created_usec < y->created_usec ? -1 : 1;
        return strcmp(x->id, y->id);
}

int flow_store_load_all(const char *dir, FlowRecord ***ret, size_t *ret_n,
                        void (*report)(const char *path, const char *problem, void *userdata), void *userdata) {
        DIR *d;
        struct dirent *de;
        FlowRecord **l = NULL;
        size_t n = 0;
        int r = 0;

        assert(dir);
        d = opendir(dir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                *ret = NULL;
                *ret_n = 0;
                return 0;
        }
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *text = NULL, *error = NULL, *aside = NULL;
                size_t len = strlen(de->d_name);
                FlowRecord *f = NULL, **nl;

                if (len < 6 || strcmp(de->d_name + len - 5, ".json") != 0 || de->d_name[0] == '.')
                        continue;
                if (asprintf(&path, "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = read_small_file(path, &text);
                if (r >= 0)
                        r = flow_record_from_json(text, &f, &error);
                if (r >= 0 && strncmp(de->d_name, f->id, len - 5) != 0) {
                        f = flow_record_free(f);
                        r = fail(&error, "field 'id': does not match the file name");
                }
                if (r == -ENOMEM)
                        break;
                if (r < 0) {
                        /* Keep it for the operator, out of the way of the next start. */
                        if (asprintf(&aside, "%s.corrupt", path) >= 0)
                                (void)rename(path, aside);
                        if (report) {
                                char msg[600];
                                snprintf(msg, sizeof(msg), "%s; moved to %s", error ? error : strerror(-r),
                                         aside ? aside : "?");
                                report(path, msg, userdata);
                        }
                        r = 0;
                        continue;
                }
                nl = realloc(l, (n + 1) * sizeof(*l));
                if (!nl) {
                        flow_record_free(f);
                        r = -ENOMEM;
                        break;
                }
                l = nl;
                l[n++] = f;
        }
        closedir(d);
        if (r < 0) {
                for (size_t i = 0; i < n; i++)
                        flow_record_free(l[i]);
                free(l);
                return r;
        }
        if (n > 1)
                qsort(l, n, sizeof(*l), cmp_records);
        *ret = l;
        *ret_n = n;
        return 0;
}
