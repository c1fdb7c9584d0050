/*
 * A well-behaved ABI v1 test plugin. Name and version come from the build:
 *   cc -shared -fPIC -DPLUGIN_NAME='"x"' -DPLUGIN_VERSION='"1.2.3"' basic.c
 * execute() echoes its whole context back as output.context (built with
 * -DPRINTS='"text"', it first prints text through C stdio, unflushed).
 */
#include "vtcode_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "basic"
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

uint32_t vtcode_plugin_version(void) { return VTCODE_PLUGIN_ABI_VERSION; }

const char *vtcode_plugin_metadata(void) {
    return dup_string("{\"name\":\"" PLUGIN_NAME "\",\"description\":\"test plugin\","
                      "\"version\":\"" PLUGIN_VERSION "\",\"abi_version\":1}");
}

const char *vtcode_plugin_execute(const char *context_json) {
#ifdef PRINTS
    fputs(PRINTS, stdout);
#endif
    const char *prefix = "{\"success\":true,\"output\":{\"context\":";
    const char *suffix = "},\"error\":null,\"files\":[]}";
    size_t n = strlen(prefix) + strlen(context_json) + strlen(suffix) + 1;
    char *out = malloc(n);
    if (!out) return NULL;
    snprintf(out, n, "%s%s%s", prefix, context_json, suffix);
    return out;
}

void vtcode_plugin_free_string(const char *s) { free((void *)s); }
