/* gRPC port allocation with a small state file written atomically. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ports/port-alloc.h"
#include "shared/fileio.h"
#include "shared/macro.h"

typedef struct Entry {
        char *name;
        uint16_t port;
} Entry;

struct PortAllocator {
        char *path;
        char *dir;
        uint16_t min, max;
        Entry *entries;
        size_t n;
        port_in_use_t in_use;
        void *in_use_userdata;
};

bool port_in_use_by_bind(uint16_t port, void *userdata) {
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
        _cleanup_close_ int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int one = 1;

        if (fd < 0)
                return false;
        /* Bind as a gRPC server does (SO_REUSEADDR): connections in TIME_WAIT from the module's
         * last run do not keep it from its port, a listener (even with SO_REUSEPORT) does. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0;
}

static int add_entry(PortAllocator *pa, const char *name, uint16_t port) {
        Entry *e = realloc(pa->entries, (pa->n + 1) * sizeof(Entry));

        if (!e)
                return -ENOMEM;
        pa->entries = e;
        pa->entries[pa->n].name = strdup(name);
        if (!pa->entries[pa->n].name)
                return -ENOMEM;
        pa->entries[pa->n].port = port;
        pa->n++;
        return 0;
}

static void clear_entries(PortAllocator *pa) {
        for (size_t i = 0; i < pa->n; i++)
                free(pa->entries[i].name);
        free(pa->entries);
        pa->entries = NULL;
        pa->n = 0;
}

static int load(PortAllocator *pa, FILE *err) {
        _cleanup_free_ char *line = NULL;
        size_t size = 0;
        unsigned lineno = 0;
        FILE *f;
        int r = 0;

        f = fopen(pa->path, "re");
        if (!f)
                return errno == ENOENT ? 0 : -errno;
        while (getline(&line, &size, f) >= 0) {
                char name[128];
                unsigned port;
                char extra;

                lineno++;
                if (line[0] == '#' || line[0] == '\n')
                        continue;
                if (sscanf(line, "%127s %u %c", name, &port, &extra) != 2 || port < 1 || port > 65535) {
                        char aside[4200];
                        fprintf(err, "%s:%u: error: expected \"<module> <port>\"; keeping the file aside\n", pa->path,
                                lineno);
                        snprintf(aside, sizeof(aside), "%s.corrupt-%lld", pa->path, (long long)time(NULL));
                        if (rename(pa->path, aside) == 0)
                                fprintf(err, "%s: moved to %s; ports will be assigned anew\n", pa->path, aside);
                        clear_entries(pa);
                        r = 0;
                        goto done;
                }
                r = add_entry(pa, name, (uint16_t)port);
                if (r < 0)
                        goto done;
        }
done:
        fclose(f);
        return r;
}

int port_allocator_new(PortAllocator **ret, const char *state_dir, uint16_t min, uint16_t max, FILE *err) {
        PortAllocator *pa;
        int r;

        if (min == 0 || min > max)
                return -EINVAL;
        pa = calloc(1, sizeof(*pa));
        if (!pa)
                return -ENOMEM;
        pa->min = min;
        pa->max = max;
        pa->in_use = port_in_use_by_bind;
        pa->dir = strdup(state_dir);
        if (!pa->dir || asprintf(&pa->path, "%s/ports", state_dir) < 0) {
                port_allocator_free(pa);
                return -ENOMEM;
        }
        r = load(pa, err);
        if (r < 0) {
                port_allocator_free(pa);
                return r;
        }
        *ret = pa;
        return 0;
}

PortAllocator *port_allocator_free(PortAllocator *pa) {
        if (!pa)
                return NULL;
        clear_entries(pa);
        free(pa->path);
        free(pa->dir);
        free(pa);
        return NULL;
}

void port_allocator_set_in_use_check(PortAllocator *pa, port_in_use_t check, void *userdata) {
        pa->in_use = check;
        pa->in_use_userdata = userdata;
}

static bool taken_by_other_module(PortAllocator *pa, const char *name, uint16_t port) {
        for (size_t i = 0; i < pa->n; i++)
                if (pa->entries[i].port == port && strcmp(pa->entries[i].name, name) != 0)
                        return true;
        return false;
}

int port_allocator_get(PortAllocator *pa, const char *name, bool keep_busy, uint16_t *ret) {
        for (size_t i = 0; i < pa->n; i++) {
                Entry *e = &pa->entries[i];
                if (strcmp(e->name, name) != 0)
                        continue;
                if (e->port >= pa->min && e->port <= pa->max &&
                    (keep_busy || !pa->in_use(e->port, pa->in_use_userdata))) {
                        *ret = e->port;
                        return 0;
                }
                /* Out of range now, or someone else took it: forget it. */
                free(e->name);
                memmove(e, e + 1, (pa->n - i - 1) * sizeof(Entry));
                pa->n--;
                break;
        }
        for (unsigned p = pa->min; p <= pa->max; p++) {
                int r;
                if (taken_by_other_module(pa, name, (uint16_t)p) || pa->in_use((uint16_t)p, pa->in_use_userdata))
                        continue;
                r = add_entry(pa, name, (uint16_t)p);
                if (r < 0)
                        return r;
                *ret = (uint16_t)p;
                return 0;
        }
        return -EADDRINUSE;
}

int port_allocator_save(PortAllocator *pa, char *const *names) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        FILE *f;

        /* Drop modules that are gone. */
        for (size_t i = 0; i < pa->n;) {
                bool keep = false;
                for (char *const *n = names; n && *n; n++)
                        if (strcmp(*n, pa->entries[i].name) == 0)
                                keep = true;
                if (keep) {
                        i++;
                        continue;
                }
                free(pa->entries[i].name);
                memmove(&pa->entries[i], &pa->entries[i + 1], (pa->n - i - 1) * sizeof(Entry));
                pa->n--;
        }

        f = open_memstream(&text, &len);
        if (!f)
                return -ENOMEM;
        fprintf(f, "# call-assistant: gRPC port of each module (kept across restarts)\n");
        for (size_t i = 0; i < pa->n; i++)
                fprintf(f, "%s %u\n", pa->entries[i].name, pa->entries[i].port);
        if (fclose(f) != 0)
                return -ENOMEM;
        return write_file_atomic(pa->path, text, len, 0600);
}
