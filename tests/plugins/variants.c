/*
 * One ABI v1 test plugin, many behaviours, chosen at build time:
 *
 *   -DPLUGIN_NAME='"x"' -DPLUGIN_VERSION='"1.0.0"'   what it is
 *   -DABI_VERSION=2                                  reports another ABI version
 *   -DMETA_NAME='"y"' / -DMETA_VERSION='"9.9.9"'     metadata disagrees with what was signed
 *   -DNO_EXECUTE                                     does not export vtcode_plugin_execute
 *   -DNO_FREE                                        does not export vtcode_plugin_free_string
 *   -DMARKER='"/path"'                               a constructor creates /path when loaded
 *   -DCONSTRUCTOR_HANGS                              a constructor never returns
 *   -DCONSTRUCTOR_CRASHES                            a constructor dies of SIGSEGV
 *   -DCONSTRUCTOR_HOGS                               a constructor fills a 256 MiB static arena
 *   -DPID_FILE='"/path"'                             MODE_FORK_*: the child's pid is written there
 *   -DMODE=n                                         what execute() does (MODE_* below)
 *
 * execute() output always includes "frees": how many strings the host has
 * freed so far with vtcode_plugin_free_string.
 */
#include "vtcode_plugin.h"

#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "variants"
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif
#ifndef ABI_VERSION
#define ABI_VERSION VTCODE_PLUGIN_ABI_VERSION
#endif
#ifndef META_NAME
#define META_NAME PLUGIN_NAME
#endif
#ifndef META_VERSION
#define META_VERSION PLUGIN_VERSION
#endif

#define MODE_ECHO 0
#define MODE_NULL 1
#define MODE_BAD_UTF8 2
#define MODE_NOT_JSON 3
#define MODE_BAD_SHAPE 4
#define MODE_SEGV 5
#define MODE_ABORT 6
#define MODE_HANG 7
#define MODE_HOG 8
#define MODE_CONCURRENCY 9
#define MODE_PRINT 10
#define MODE_FAIL 11
#define MODE_FORK_HANG 12 /* forks a child holding every inherited fd, then hangs */
#define MODE_FORK_SEGV 13 /* forks such a child, then crashes */
#define MODE_ENV 14       /* reports what getenv() sees of the host's secrets */
#ifndef MODE
#define MODE MODE_ECHO
#endif

/* Not every build uses every helper. */
#define MAYBE_UNUSED __attribute__((unused))

static MAYBE_UNUSED atomic_int frees;
static MAYBE_UNUSED atomic_int active;
static MAYBE_UNUSED atomic_int max_active;

#ifdef MARKER
__attribute__((constructor)) static void leave_marker(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        (void)write(fd, "constructor ran\n", 16);
        close(fd);
    }
}
#endif

#ifdef CONSTRUCTOR_HANGS
__attribute__((constructor)) static void never_return(void) {
    for (;;) pause();
}
#endif

#ifdef CONSTRUCTOR_CRASHES
__attribute__((constructor)) static void crash_while_loading(void) {
    raise(SIGSEGV);
}
#endif

#ifdef CONSTRUCTOR_HOGS
/* 256 MiB of zero-fill pages, mapped when the library is loaded: more than a small
 * memory limit leaves, so loading fails before (or while) the constructor runs. */
static char arena[256 << 20];
__attribute__((constructor)) static void fill_the_arena(void) {
    memset(arena, 1, sizeof arena);
}
#endif

/* A child that sleeps on, holding the reply pipe and everything else inherited. */
static MAYBE_UNUSED void fork_a_sleeper(void) {
    pid_t child = fork();
    if (child == 0) {
        for (;;) pause();
    }
#ifdef PID_FILE
    if (child > 0) {
        char text[32];
        int fd = open(PID_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        int n = snprintf(text, sizeof text, "%d", (int)child);
        if (fd >= 0) {
            (void)write(fd, text, (size_t)n);
            close(fd);
        }
    }
#endif
}

static MAYBE_UNUSED void json_env(char *out, size_t size, const char *name) {
    const char *value = getenv(name);
    size_t used = strlen(out);
    snprintf(out + used, size - used, ",\"%s\":%s", name, value ? "true" : "false");
}

static MAYBE_UNUSED char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

static const char *give(const char *s) {
#ifdef NO_FREE
    static char buffers[64][512];
    static atomic_int next;
    char *b = buffers[atomic_fetch_add(&next, 1) % 64];
    snprintf(b, sizeof buffers[0], "%s", s);
    return b;
#else
    return dup_string(s);
#endif
}

uint32_t vtcode_plugin_version(void) { return ABI_VERSION; }

const char *vtcode_plugin_metadata(void) {
    return give("{\"name\":\"" META_NAME "\",\"description\":\"test variant\","
                "\"version\":\"" META_VERSION "\",\"abi_version\":1}");
}

#ifndef NO_EXECUTE
static const char *result(const char *extra) {
    char buffer[512];
    snprintf(buffer, sizeof buffer,
             "{\"success\":true,\"output\":{\"frees\":%d%s},\"error\":null,\"files\":[]}",
             atomic_load(&frees), extra);
    return give(buffer);
}

const char *vtcode_plugin_execute(const char *context_json) {
    char extra[128];
    (void)context_json;
    switch (MODE) {
    case MODE_NULL:
        return NULL;
    case MODE_BAD_UTF8:
        return give("{\"success\":true,\"output\":{\"x\":\"\xff\xfe\"},\"files\":[]}");
    case MODE_NOT_JSON:
        return give("this is not json");
    case MODE_BAD_SHAPE:
        return give("{\"ok\":true}");
    case MODE_SEGV:
        raise(SIGSEGV);
        return NULL;
    case MODE_ABORT:
        abort();
    case MODE_HANG:
        for (;;) pause();
    case MODE_HOG: {
        /* Keep allocating and touching memory; give up only when malloc does. */
        for (;;) {
            char *p = malloc(16 << 20);
            if (!p) return NULL;
            memset(p, 1, 16 << 20);
        }
    }
    case MODE_CONCURRENCY: {
        int now = atomic_fetch_add(&active, 1) + 1;
        int seen = atomic_load(&max_active);
        while (now > seen && !atomic_compare_exchange_weak(&max_active, &seen, now)) {
        }
        usleep(20000);
        atomic_fetch_sub(&active, 1);
        snprintf(extra, sizeof extra, ",\"max_active\":%d", atomic_load(&max_active));
        return result(extra);
    }
    case MODE_FORK_HANG:
        fork_a_sleeper();
        for (;;) pause();
    case MODE_FORK_SEGV:
        fork_a_sleeper();
        raise(SIGSEGV);
        return NULL;
    case MODE_ENV:
        extra[0] = '\0';
        json_env(extra, sizeof extra, "VTREG_PASSPHRASE");
        json_env(extra, sizeof extra, "VTREG_DATABASE_URL");
        json_env(extra, sizeof extra, "PATH");
        return result(extra);
    case MODE_FAIL:
        return give("{\"success\":false,\"output\":{},\"error\":\"no greeting today\","
                    "\"files\":[]}");
    case MODE_PRINT:
        printf("plugin chatter on stdout\n");
        fflush(stdout);
        return result("");
    default:
        return result(",\"mode\":\"echo\"");
    }
}
#endif

#ifndef NO_FREE
void vtcode_plugin_free_string(const char *s) {
    atomic_fetch_add(&frees, 1);
    free((void *)s);
}
#endif
