/* The unit manager: transient units over sd-bus, followed through systemd's signals. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-login.h>
#include <unistd.h>

#include "shared/log.h"
#include "shared/macro.h"
#include "systemd/unit-manager.h"

#define SD_DEST "org.freedesktop.systemd1"
#define SD_PATH "/org/freedesktop/systemd1"
#define SD_MANAGER "org.freedesktop.systemd1.Manager"
#define BUS_TIMEOUT_USEC (25ULL * 1000 * 1000)

/* dbus-daemon allows 128 pending replies per connection on the system bus by default; more
 * in-flight calls fail with LimitsExceeded. Keep well below that and queue the rest. */
#define MAX_INFLIGHT 64

typedef struct Job Job;
typedef struct Call Call;

struct Call {
        UnitManager *manager;
        sd_bus_message *msg;
        sd_bus_message_handler_t callback;
        void *userdata;
        sd_bus_slot *slot;     /* once sent */
        Call **owner;          /* the owner's pointer to this call, cleared when it completes */
        Call *next;            /* in the queue, while not sent */
};

struct Job {
        UnitManager *manager;
        char *unit;
        char *path;           /* job object path, once the method reply told us */
        Call *call;
        unit_job_handler_t handler;
        void *userdata;
        Job *next;
};

struct UnitWatch {
        UnitManager *manager;
        char *unit;
        char *path;                /* unit object path */
        sd_bus_slot *match_slot;   /* PropertiesChanged on path */
        Call *refresh;             /* GetAll in flight (or queued) */
        bool dirty;                /* another change arrived while a refresh was in flight */
        bool reported;             /* the handler ran at least once */
        UnitStatus status;
        unit_status_handler_t handler;
        void *userdata;
        UnitWatch *next;
};

struct UnitManager {
        sd_event *event;
        sd_bus *bus;
        sd_bus_slot *job_removed_slot;
        sd_bus_slot *disconnect_slot;
        bool user;
        Job *jobs;
        UnitWatch *watches;
        unsigned n_inflight;
        Call *queue_head, *queue_tail;
        bool closing;          /* being freed: send nothing more */
};

static void call_pump(UnitManager *m);

static void call_destroyed(void *userdata) {
        Call *c = userdata;
        UnitManager *m = c->manager;

        if (c->owner && *c->owner == c)
                *c->owner = NULL;
        sd_bus_message_unref(c->msg);
        free(c);
        m->n_inflight--;
        call_pump(m);
}

static int call_trampoline(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Call *c = userdata;
        sd_bus_message_handler_t cb = c->callback;
        void *ud = c->userdata;

        /* The owner no longer has a call in flight once its callback runs. */
        if (c->owner && *c->owner == c)
                *c->owner = NULL;
        c->owner = NULL;
        cb(reply, ud, ret_error);
        /* Frees c (destroy callback), which may send the next queued call. */
        sd_bus_slot_unref(c->slot);
        return 0;
}

static int call_send(Call *c) {
        UnitManager *m = c->manager;
        int r;

        r = sd_bus_call_async(m->bus, &c->slot, c->msg, call_trampoline, c, BUS_TIMEOUT_USEC);
        if (r < 0)
                return r;
        m->n_inflight++;
        (void)sd_bus_slot_set_destroy_callback(c->slot, call_destroyed);
        return 0;
}

static void call_pump(UnitManager *m) {
        while (!m->closing && m->queue_head && m->n_inflight < MAX_INFLIGHT) {
                Call *c = m->queue_head;
                m->queue_head = c->next;
                if (!m->queue_head)
                        m->queue_tail = NULL;
                c->next = NULL;
                if (call_send(c) < 0) {
                        /* Tell the owner the call failed, as if systemd had answered so. */
                        _cleanup_(sd_bus_message_unrefp) sd_bus_message *err = NULL;
                        sd_bus_error e = SD_BUS_ERROR_MAKE_CONST(SD_BUS_ERROR_NO_REPLY, "could not send the call");
                        if (c->owner && *c->owner == c)
                                *c->owner = NULL;
                        if (sd_bus_message_new_method_error(c->msg, &err, &e) >= 0)
                                c->callback(err, c->userdata, NULL);
                        sd_bus_message_unref(c->msg);
                        free(c);
                }
        }
}

/* Send msg now or when fewer calls are in flight; *owner points to the call until its
 * callback runs. */
static int call_async(UnitManager *m, sd_bus_message *msg, sd_bus_message_handler_t callback, void *userdata,
                      Call **owner) {
        Call *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        *c = (Call){ .manager = m, .msg = sd_bus_message_ref(msg), .callback = callback, .userdata = userdata,
                     .owner = owner };
        if (m->n_inflight < MAX_INFLIGHT) {
                r = call_send(c);
                if (r < 0) {
                        sd_bus_message_unref(c->msg);
                        free(c);
                        return r;
                }
        } else {
                if (m->queue_tail)
                        m->queue_tail->next = c;
                else
                        m->queue_head = c;
                m->queue_tail = c;
        }
        *owner = c;
        return 0;
}

/* Cancel a call: no callback will run. */
static void call_cancel(Call *c) {
        UnitManager *m;

        if (!c)
                return;
        m = c->manager;
        c->owner = NULL;
        if (c->slot) {
                sd_bus_slot_unref(c->slot); /* destroy callback frees it */
                return;
        }
        for (Call **p = &m->queue_head; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        if (m->queue_tail == c) {
                                m->queue_tail = NULL;
                                for (Call *t = m->queue_head; t; t = t->next)
                                        m->queue_tail = t;
                        }
                        break;
                }
        sd_bus_message_unref(c->msg);
        free(c);
}

static Job *job_free(Job *j) {
        if (!j)
                return NULL;
        call_cancel(j->call);
        free(j->unit);
        free(j->path);
        free(j);
        return NULL;
}

static void job_unlink(UnitManager *m, Job *j) {
        for (Job **p = &m->jobs; *p; p = &(*p)->next)
                if (*p == j) {
                        *p = j->next;
                        return;
                }
}

/* Finish a job: unlink first, so that the handler may start new jobs or free the manager's
 * other objects safely. */
static void job_finish(Job *j, int error, const char *result) {
        UnitManager *m = j->manager;

        job_unlink(m, j);
        if (j->handler)
                j->handler(m, j->unit, error, result, j->userdata);
        job_free(j);
}

static int on_job_removed(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        UnitManager *m = userdata;
        const char *path, *unit, *result;
        uint32_t id;
        int r;

        r = sd_bus_message_read(message, "uoss", &id, &path, &unit, &result);
        if (r < 0) {
                log_warning_errno(r, "Failed to parse JobRemoved signal, ignoring: %m");
                return 0;
        }
        for (Job *j = m->jobs; j; j = j->next)
                if (j->path && strcmp(j->path, path) == 0) {
                        job_finish(j, 0, result);
                        break;
                }
        return 0;
}

static int on_job_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        Job *j = userdata;
        const sd_bus_error *e;
        const char *path;
        int r;

        e = sd_bus_message_get_error(reply);
        if (e) {
                r = -sd_bus_error_get_errno(e);
                log_debug("Job for %s refused: %s: %s", j->unit, e->name, e->message ? e->message : "");
                job_finish(j, r < 0 ? r : -EIO, e->message ? e->message : e->name);
                return 0;
        }
        r = sd_bus_message_read(reply, "o", &path);
        if (r < 0) {
                job_finish(j, r, "invalid-reply");
                return 0;
        }
        j->path = strdup(path);
        if (!j->path)
                job_finish(j, -ENOMEM, "oom");
        return 0;
}

static int job_new(UnitManager *m, const char *unit, unit_job_handler_t handler, void *userdata, Job **ret) {
        Job *j = calloc(1, sizeof(*j));

        if (!j)
                return -ENOMEM;
        j->manager = m;
        j->handler = handler;
        j->userdata = userdata;
        j->unit = strdup(unit);
        if (!j->unit) {
                free(j);
                return -ENOMEM;
        }
        *ret = j;
        return 0;
}

static void job_start(UnitManager *m, Job *j) {
        j->next = m->jobs;
        m->jobs = j;
}

/* Without the bus we can neither follow nor control units, and sd-bus does not reconnect:
 * end the event loop with an error. A daemon under systemd is then restarted, and adopts its
 * modules, which kept running. */
static int on_disconnected(sd_bus_message *msg, void *userdata, sd_bus_error *ret_error) {
        UnitManager *m = userdata;

        if (!sd_bus_message_is_signal(msg, "org.freedesktop.DBus.Local", "Disconnected"))
                return 0;
        log_error("Lost the connection to the %s bus, exiting.", m->user ? "user" : "system");
        return sd_event_exit(m->event, -ENOTCONN);
}

int unit_manager_new(UnitManager **ret, sd_event *event, bool user) {
        _cleanup_(unit_manager_freep) UnitManager *m = NULL;
        int r;

        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->event = sd_event_ref(event);

        r = user ? sd_bus_open_user(&m->bus) : sd_bus_open_system(&m->bus);
        if (r < 0)
                return log_error_errno(r, "Failed to connect to the %s bus: %m", user ? "user" : "system");
        r = sd_bus_attach_event(m->bus, event, SD_EVENT_PRIORITY_NORMAL);
        if (r < 0)
                return r;
        m->user = user;
        r = sd_bus_add_filter(m->bus, &m->disconnect_slot, on_disconnected, m);
        if (r < 0)
                return r;

        /* The match must exist before any job does, or JobRemoved can be missed. */
        r = sd_bus_match_signal(m->bus, &m->job_removed_slot, SD_DEST, SD_PATH, SD_MANAGER, "JobRemoved",
                                on_job_removed, m);
        if (r < 0)
                return log_error_errno(r, "Failed to add JobRemoved match: %m");

        /* Most signals, PropertiesChanged included, are only sent once a client subscribed. */
        r = sd_bus_call_method(m->bus, SD_DEST, SD_PATH, SD_MANAGER, "Subscribe", NULL, NULL, "");
        if (r < 0)
                return log_error_errno(r, "Failed to subscribe to systemd's signals: %m");

        *ret = TAKE_PTR(m);
        return 0;
}

UnitManager *unit_manager_free(UnitManager *m) {
        if (!m)
                return NULL;
        m->closing = true;
        while (m->queue_head)
                call_cancel(m->queue_head);
        while (m->jobs) {
                Job *j = m->jobs;
                m->jobs = j->next;
                job_free(j);
        }
        while (m->watches)
                unit_watch_free(m->watches);
        sd_bus_slot_unref(m->job_removed_slot);
        sd_bus_slot_unref(m->disconnect_slot);
        if (m->bus) {
                sd_bus_flush(m->bus);
                sd_bus_detach_event(m->bus);
                sd_bus_close_unref(m->bus);
        }
        sd_event_unref(m->event);
        free(m);
        return NULL;
}

sd_bus *unit_manager_get_bus(UnitManager *m) {
        return m->bus;
}

int unit_manager_start_transient(UnitManager *m, const char *unit, unit_props_append_t append,
                                 void *append_userdata, unit_job_handler_t handler, void *userdata) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        Job *j;
        int r;

        r = sd_bus_message_new_method_call(m->bus, &msg, SD_DEST, SD_PATH, SD_MANAGER, "StartTransientUnit");
        if (r < 0)
                return r;
        r = sd_bus_message_append(msg, "ss", unit, "fail");
        if (r < 0)
                return r;
        r = sd_bus_message_open_container(msg, 'a', "(sv)");
        if (r < 0)
                return r;
        if (append) {
                r = append(msg, append_userdata);
                if (r < 0)
                        return log_error_errno(r, "Failed to build the properties of %s: %m", unit);
        }
        r = sd_bus_message_close_container(msg);
        if (r < 0)
                return r;
        r = sd_bus_message_append(msg, "a(sa(sv))", 0);
        if (r < 0)
                return r;

        r = job_new(m, unit, handler, userdata, &j);
        if (r < 0)
                return r;
        r = call_async(m, msg, on_job_reply, j, &j->call);
        if (r < 0) {
                job_free(j);
                return r;
        }
        job_start(m, j);
        return 0;
}

static int unit_manager_job(UnitManager *m, const char *method, const char *unit, unit_job_handler_t handler,
                            void *userdata) {
        Job *j;
        int r;

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;

        r = sd_bus_message_new_method_call(m->bus, &msg, SD_DEST, SD_PATH, SD_MANAGER, method);
        if (r >= 0)
                r = sd_bus_message_append(msg, "ss", unit, "replace");
        if (r < 0)
                return r;
        r = job_new(m, unit, handler, userdata, &j);
        if (r < 0)
                return r;
        r = call_async(m, msg, on_job_reply, j, &j->call);
        if (r < 0) {
                job_free(j);
                return r;
        }
        job_start(m, j);
        return 0;
}

int unit_manager_stop(UnitManager *m, const char *unit, unit_job_handler_t handler, void *userdata) {
        return unit_manager_job(m, "StopUnit", unit, handler, userdata);
}

int unit_manager_restart(UnitManager *m, const char *unit, unit_job_handler_t handler, void *userdata) {
        return unit_manager_job(m, "RestartUnit", unit, handler, userdata);
}

int unit_manager_reset_failed(UnitManager *m, const char *unit) {
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_call_method(m->bus, SD_DEST, SD_PATH, SD_MANAGER, "ResetFailedUnit", &error, NULL, "s", unit);
        if (r < 0 && !sd_bus_error_has_name(&error, "org.freedesktop.systemd1.NoSuchUnit"))
                log_debug("ResetFailedUnit(%s): %s", unit, error.message ? error.message : strerror(-r));
        sd_bus_error_free(&error);
        return r < 0 ? r : 0;
}

int unit_manager_own_job_type(UnitManager *m, char **ret) {
        _cleanup_free_ char *unit = NULL, *path = NULL, *type = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *job_path = NULL;
        uint32_t job_id = 0, main_pid = 0;
        int r;

        /* Our unit, from our own cgroup; then make sure systemd sees us as its main process
         * (a process outside the manager's namespace must not read another unit's job). */
        r = m->user ? sd_pid_get_user_unit(0, &unit) : sd_pid_get_unit(0, &unit);
        if (r < 0)
                return r == -ENODATA || r == -ENXIO || r == -ENOENT ? 0 : r;
        r = sd_bus_path_encode(SD_PATH "/unit", unit, &path);
        if (r < 0)
                return r;
        r = sd_bus_get_property_trivial(m->bus, SD_DEST, path, "org.freedesktop.systemd1.Service", "MainPID", &error,
                                        'u', &main_pid);
        sd_bus_error_free(&error);
        if (r < 0 || main_pid != (uint32_t)getpid())
                return 0;

        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        r = sd_bus_get_property(m->bus, SD_DEST, path, "org.freedesktop.systemd1.Unit", "Job", &error, &reply, "(uo)");
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_read(reply, "(uo)", &job_id, &job_path);
        if (r < 0)
                return r;
        if (job_id == 0)
                return 0;
        r = sd_bus_get_property_string(m->bus, SD_DEST, job_path, "org.freedesktop.systemd1.Job", "JobType", &error,
                                       &type);
        sd_bus_error_free(&error);
        if (r < 0)
                return r == -ENOENT || r == -EBADR ? 0 : r; /* the job is gone already */
        *ret = TAKE_PTR(type);
        return 1;
}

static void copy_string(char *dst, size_t size, const char *src) {
        size_t n = strnlen(src, size - 1);
        memcpy(dst, src, n);
        dst[n] = 0;
}

/* Read an a{sv} of unit/service properties into *s, changing only the fields present.
 * *load_state is set if LoadState is present. */
static int parse_properties(sd_bus_message *reply, UnitStatus *ret, char load_state[static 32]) {
        UnitStatus s = *ret;
        int r;

        r = sd_bus_message_enter_container(reply, 'a', "{sv}");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
                const char *name, *str;

                r = sd_bus_message_read(reply, "s", &name);
                if (r < 0)
                        return r;

#define READ_STR(prop, field)                                                          \
        if (strcmp(name, prop) == 0) {                                                 \
                r = sd_bus_message_read(reply, "v", "s", &str);                        \
                if (r < 0)                                                             \
                        return r;                                                      \
                copy_string(field, sizeof(field), str);                                \
                goto next;                                                             \
        }
#define READ_NUM(prop, sig, field)                                                     \
        if (strcmp(name, prop) == 0) {                                                 \
                r = sd_bus_message_read(reply, "v", sig, &field);                      \
                if (r < 0)                                                             \
                        return r;                                                      \
                goto next;                                                             \
        }
                READ_STR("ActiveState", s.active_state);
                READ_STR("SubState", s.sub_state);
                READ_STR("Result", s.result);
                if (strcmp(name, "LoadState") == 0) {
                        r = sd_bus_message_read(reply, "v", "s", &str);
                        if (r < 0)
                                return r;
                        copy_string(load_state, 32, str);
                        goto next;
                }
                READ_NUM("MainPID", "u", s.main_pid);
                READ_NUM("UID", "u", s.uid);
                READ_NUM("NRestarts", "u", s.n_restarts);
                READ_NUM("ExecMainCode", "i", s.exec_main_code);
                READ_NUM("ExecMainStatus", "i", s.exec_main_status);
                READ_NUM("StateChangeTimestampMonotonic", "t", s.state_change_usec);
#undef READ_STR
#undef READ_NUM
                r = sd_bus_message_skip(reply, "v");
                if (r < 0)
                        return r;
        next:
                r = sd_bus_message_exit_container(reply);
                if (r < 0)
                        return r;
        }
        if (r < 0)
                return r;
        r = sd_bus_message_exit_container(reply);
        if (r < 0)
                return r;
        *ret = s;
        return 0;
}

/* Parse a GetAll("") reply (a{sv} over every interface) into a status. */
static int parse_status(sd_bus_message *reply, UnitStatus *ret) {
        UnitStatus s = { .loaded = true, .uid = UNIT_UID_INVALID };
        char load_state[32] = "";
        int r;

        r = parse_properties(reply, &s, load_state);
        if (r < 0)
                return r;
        /* A unit systemd loaded only because we asked about it is not a unit. */
        if (strcmp(load_state, "not-found") == 0 || load_state[0] == 0)
                s.loaded = false;
        *ret = s;
        return 0;
}

static void status_unloaded(UnitStatus *s) {
        *s = (UnitStatus){ .loaded = false, .uid = UNIT_UID_INVALID };
        copy_string(s->active_state, sizeof(s->active_state), "inactive");
        copy_string(s->sub_state, sizeof(s->sub_state), "dead");
}

int unit_manager_list_loaded(UnitManager *m, const char *pattern, char ***ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        const char *name;
        char **l = NULL;
        size_t n = 0;
        int r;

        r = sd_bus_call_method(m->bus, SD_DEST, SD_PATH, SD_MANAGER, "ListUnitsByPatterns", &error, &reply, "asas", 0,
                               1, pattern);
        sd_bus_error_free(&error);
        if (r < 0)
                return r;
        r = sd_bus_message_enter_container(reply, 'a', "(ssssssouso)");
        if (r < 0)
                return r;
        while ((r = sd_bus_message_read(reply, "(ssssssouso)", &name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                        NULL)) > 0) {
                char **nl = realloc(l, (n + 2) * sizeof(char *));
                if (!nl) {
                        strv_free(l);
                        return -ENOMEM;
                }
                l = nl;
                l[n] = strdup(name);
                l[++n] = NULL;
                if (!l[n - 1]) {
                        strv_free(l);
                        return -ENOMEM;
                }
        }
        if (r < 0) {
                strv_free(l);
                return r;
        }
        if (!l) {
                l = calloc(1, sizeof(char *));
                if (!l)
                        return -ENOMEM;
        }
        *ret = l;
        return 0;
}

int unit_manager_get_status(UnitManager *m, const char *unit, UnitStatus *ret) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_free_ char *path = NULL;
        sd_bus_error error = SD_BUS_ERROR_NULL;
        int r;

        r = sd_bus_path_encode(SD_PATH "/unit", unit, &path);
        if (r < 0)
                return r;
        r = sd_bus_call_method(m->bus, SD_DEST, path, "org.freedesktop.DBus.Properties", "GetAll", &error, &reply,
                               "s", "");
        if (r < 0) {
                sd_bus_error_free(&error);
                status_unloaded(ret);
                return 0;
        }
        sd_bus_error_free(&error);
        r = parse_status(reply, ret);
        if (r >= 0 && !ret->loaded)
                status_unloaded(ret);
        return r;
}

/* ---- cgroup accounting figures ---- */

struct UnitResourceQuery {
        UnitManager *manager;
        char *unit;
        sd_bus_slot *slots[2];
        unsigned pending;
        int error;
        UnitResources res;
        unit_resources_handler_t handler;
        void *userdata;
};

UnitResourceQuery *unit_resource_query_free(UnitResourceQuery *q) {
        if (!q)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(q->slots); i++)
                sd_bus_slot_unref(q->slots[i]);
        free(q->unit);
        free(q);
        return NULL;
}

static int on_resource_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        UnitResourceQuery *q = userdata;
        sd_bus_slot *slot = sd_bus_get_current_slot(sd_bus_message_get_bus(reply));
        uint64_t v = UINT64_MAX;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                q->error = q->error ?: -sd_bus_message_get_errno(reply) ?: -EIO;
        else {
                r = sd_bus_message_read(reply, "v", "t", &v);
                if (r < 0)
                        q->error = q->error ?: r;
        }
        if (slot == q->slots[0])
                q->res.cpu_usage_nsec = v;
        else
                q->res.memory_current = v;
        if (--q->pending > 0)
                return 0;
        q->handler(q->manager, q->unit, q->error, &q->res, q->userdata);
        unit_resource_query_free(q);
        return 0;
}

int unit_manager_get_resources(UnitManager *m, const char *unit, unit_resources_handler_t handler, void *userdata,
                               UnitResourceQuery **ret) {
        static const char *const props[] = { "CPUUsageNSec", "MemoryCurrent" };
        _cleanup_free_ char *path = NULL;
        UnitResourceQuery *q;
        int r;

        r = sd_bus_path_encode(SD_PATH "/unit", unit, &path);
        if (r < 0)
                return r;
        q = new0(UnitResourceQuery, 1);
        if (!q || !(q->unit = strdup(unit))) {
                free(q);
                return -ENOMEM;
        }
        q->manager = m;
        q->handler = handler;
        q->userdata = userdata;
        q->res = (UnitResources){ UINT64_MAX, UINT64_MAX };
        for (size_t i = 0; i < ELEMENTSOF(props); i++) {
                r = sd_bus_call_method_async(m->bus, &q->slots[i], SD_DEST, path, "org.freedesktop.DBus.Properties", "Get",
                                             on_resource_reply, q, "ss", "org.freedesktop.systemd1.Service", props[i]);
                if (r < 0) {
                        unit_resource_query_free(q);
                        return r;
                }
                q->pending++;
        }
        if (ret)
                *ret = q;
        return 0;
}

static int watch_refresh(UnitWatch *w);
static void watch_report(UnitWatch *w, const UnitStatus *s);

static int on_refresh_reply(sd_bus_message *reply, void *userdata, sd_bus_error *ret_error) {
        UnitWatch *w = userdata;
        UnitStatus s;
        int r;

        if (sd_bus_message_is_method_error(reply, NULL))
                status_unloaded(&s);
        else {
                r = parse_status(reply, &s);
                if (r < 0) {
                        log_warning_errno(r, "Failed to parse the status of %s, ignoring: %m", w->unit);
                        return 0;
                }
                if (!s.loaded)
                        status_unloaded(&s);
        }

        if (w->dirty) {
                /* Something changed again meanwhile: read once more before reporting. */
                w->dirty = false;
                r = watch_refresh(w);
                if (r >= 0)
                        return 0;
        }

        watch_report(w, &s);
        return 0;
}

static int watch_refresh(UnitWatch *w) {
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *msg = NULL;
        int r;

        if (w->refresh) {
                w->dirty = true;
                return 0;
        }
        r = sd_bus_message_new_method_call(w->manager->bus, &msg, SD_DEST, w->path, "org.freedesktop.DBus.Properties",
                                           "GetAll");
        if (r >= 0)
                r = sd_bus_message_append(msg, "s", "");
        if (r >= 0)
                r = call_async(w->manager, msg, on_refresh_reply, w, &w->refresh);
        return r;
}

static void watch_report(UnitWatch *w, const UnitStatus *s) {
        if (w->reported && memcmp(s, &w->status, sizeof(*s)) == 0)
                return;
        w->status = *s;
        w->reported = true;
        if (w->handler)
                w->handler(w->manager, w->unit, &w->status, w->userdata);
}

static int on_properties_changed(sd_bus_message *message, void *userdata, sd_bus_error *ret_error) {
        UnitWatch *w = userdata;
        char load_state[32] = "";
        const char *interface;
        UnitStatus s;
        int r;

        /* The signal carries the new values: use them, without a round trip. Only when values
         * come as invalidations (or before the first full read) read everything again. */
        if (w->refresh || !w->reported) {
                w->dirty = true;
                return 0;
        }
        s = w->status;
        r = sd_bus_message_read(message, "s", &interface);
        if (r >= 0)
                r = parse_properties(message, &s, load_state);
        if (r >= 0)
                r = sd_bus_message_enter_container(message, 'a', "s");
        if (r >= 0) {
                const char *inv;
                bool invalidated = false;
                while ((r = sd_bus_message_read(message, "s", &inv)) > 0)
                        invalidated = true;
                if (r >= 0 && invalidated)
                        r = -ESTALE;
        }
        if (r < 0) {
                r = watch_refresh(w);
                if (r < 0)
                        log_warning_errno(r, "Failed to refresh the status of %s, ignoring: %m", w->unit);
                return 0;
        }
        if (load_state[0])
                s.loaded = strcmp(load_state, "not-found") != 0;
        /* The unit got loaded (it was started) since our last full read: read it fully. */
        if (!s.loaded || !w->status.loaded) {
                r = watch_refresh(w);
                if (r < 0)
                        log_warning_errno(r, "Failed to refresh the status of %s, ignoring: %m", w->unit);
                return 0;
        }
        watch_report(w, &s);
        return 0;
}

int unit_manager_watch(UnitManager *m, const char *unit, unit_status_handler_t handler, void *userdata,
                       UnitWatch **ret) {
        UnitWatch *w;
        int r;

        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->manager = m;
        w->handler = handler;
        w->userdata = userdata;
        status_unloaded(&w->status);
        w->next = m->watches;
        m->watches = w;

        w->unit = strdup(unit);
        if (!w->unit) {
                unit_watch_free(w);
                return -ENOMEM;
        }
        r = sd_bus_path_encode(SD_PATH "/unit", unit, &w->path);
        if (r < 0) {
                unit_watch_free(w);
                return r;
        }
        /* Asynchronous AddMatch: no round trip per unit. The match is in place before the
         * GetAll below is answered (the bus orders our messages), so no change is missed. */
        r = sd_bus_match_signal_async(m->bus, &w->match_slot, SD_DEST, w->path, "org.freedesktop.DBus.Properties",
                                      "PropertiesChanged", on_properties_changed, NULL, w);
        if (r >= 0)
                r = watch_refresh(w);
        if (r < 0) {
                unit_watch_free(w);
                return r;
        }
        if (ret)
                *ret = w;
        return 0;
}

UnitWatch *unit_watch_free(UnitWatch *w) {
        if (!w)
                return NULL;
        for (UnitWatch **p = &w->manager->watches; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        sd_bus_slot_unref(w->match_slot);
        call_cancel(w->refresh);
        free(w->unit);
        free(w->path);
        free(w);
        return NULL;
}

const UnitStatus *unit_watch_get_status(UnitWatch *w) {
        return &w->status;
}
