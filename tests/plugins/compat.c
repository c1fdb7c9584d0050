/*
 * A test plugin for the shapes where VT Code's loader and vtreg's could differ.
 *
 *   -DPLUGIN_NAME='"x"' -DPLUGIN_VERSION='"1.0.0"'   what it is
 *   -DMETADATA='"{...}"'     the whole metadata() JSON (default: name, version,
 *                            a description and "abi_version":1)
 *   -DRESULT='"{...}"'       what execute() returns, verbatim
 *   -DBARRIER_WAIT_MS=n      execute() waits at a 4-party barrier for up to n ms
 *                            (a bound, so that a serialised host cannot hang the
 *                            test), counting how many calls overlap
 *   -DUNRESOLVED             execute() calls a function no library defines, but
 *                            only if the context holds "call_missing":true
 *
 * By default execute() reports the context it received and where dladdr()
 * says its own code was loaded from.
 */
#define _GNU_SOURCE
#include "vtcode_plugin.h"

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "compat"
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif
#ifndef METADATA
#define METADATA                                                                      \
    "{\"name\":\"" PLUGIN_NAME "\",\"description\":\"compat\",\"version\":\"" PLUGIN_VERSION \
    "\",\"abi_version\":1}"
#endif

#define PARTIES 4

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

uint32_t vtcode_plugin_version(void) { return VTCODE_PLUGIN_ABI_VERSION; }

const char *vtcode_plugin_metadata(void) { return dup_string(METADATA); }

void vtcode_plugin_free_string(const char *s) { free((void *)s); }

#if defined(RESULT)

const char *vtcode_plugin_execute(const char *context_json) {
    (void)context_json;
    return dup_string(RESULT);
}

#elif defined(BARRIER_WAIT_MS)

static atomic_int released; /* set once all four parties were inside at once */
static atomic_int active;
static atomic_int max_active;

/* How many calls were inside execute() at the same time, at most, so far. */
static void note_overlap(int now) {
    int seen = atomic_load(&max_active);
    while (now > seen && !atomic_compare_exchange_weak(&max_active, &seen, now)) {
    }
}

const char *vtcode_plugin_execute(const char *context_json) {
    char out[160];
    int waited = 0, reached;
    (void)context_json;
    note_overlap(atomic_fetch_add(&active, 1) + 1);
    /* Wait until all four parties are inside at once, or give up after BARRIER_WAIT_MS. */
    while (!atomic_load(&released) && waited < BARRIER_WAIT_MS) {
        if (atomic_load(&active) >= PARTIES) {
            atomic_store(&released, 1);
        } else {
            usleep(1000);
            waited++;
        }
    }
    reached = atomic_load(&released);
    atomic_fetch_sub(&active, 1);
    snprintf(out, sizeof out,
             "{\"success\":true,\"output\":{\"reached\":%s,\"max_active\":%d},"
             "\"error\":null,\"files\":[]}",
             reached ? "true" : "false", atomic_load(&max_active));
    return dup_string(out);
}

#else

#ifdef UNRESOLVED
extern void vtreg_test_symbol_nobody_defines(void);
#endif

/* JSON-escape s into out (enough for a path). */
static void escape(const char *s, char *out, size_t cap) {
    size_t n = 0;
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
}

const char *vtcode_plugin_execute(const char *context_json) {
    Dl_info info;
    char where[1024] = "";
    const char *format = "{\"success\":true,\"output\":{\"context\":%s,\"dladdr\":\"%s\"},"
                         "\"error\":null,\"files\":[]}";
    char *out;
    size_t n;
#ifdef UNRESOLVED
    if (strstr(context_json, "\"call_missing\":true")) vtreg_test_symbol_nobody_defines();
#endif
    if (dladdr((void *)vtcode_plugin_execute, &info) && info.dli_fname)
        escape(info.dli_fname, where, sizeof where);
    n = strlen(format) + strlen(context_json) + strlen(where) + 1;
    out = malloc(n);
    if (out) snprintf(out, n, format, context_json, where);
    return out;
}

#endif
