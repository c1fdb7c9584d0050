/*
 * An ABI v1 test plugin that needs a library of its own (tests/plugins/dependency.c),
 * linked against it, e.g. with -Wl,-rpath,'$ORIGIN' so that VT Code finds it:
 *   cc -shared -fPIC -DPLUGIN_NAME='"x"' -DPLUGIN_VERSION='"1.0.0"' needs_dependency.c libdep.so
 * execute() answers {"dep": dep_value()}.
 */
#include "vtcode_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PLUGIN_NAME
#define PLUGIN_NAME "needsdep"
#endif
#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif

int dep_value(void);

uint32_t vtcode_plugin_version(void) { return VTCODE_PLUGIN_ABI_VERSION; }

const char *vtcode_plugin_metadata(void) {
    const char *m = "{\"name\":\"" PLUGIN_NAME "\",\"description\":\"test plugin\","
                    "\"version\":\"" PLUGIN_VERSION "\",\"abi_version\":1}";
    return strdup(m);
}

const char *vtcode_plugin_execute(const char *context_json) {
    (void)context_json;
    char *out = malloc(96);
    if (!out) return NULL;
    snprintf(out, 96, "{\"success\":true,\"output\":{\"dep\":%d},\"error\":null,\"files\":[]}",
             dep_value());
    return out;
}

void vtcode_plugin_free_string(const char *s) { free((void *)s); }
