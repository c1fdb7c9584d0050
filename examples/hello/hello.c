/*
 * hello - the vtreg example plugin (VT Code native plugin ABI v1).
 *
 * execute({"input": {"name": "Ada"}, ...}) returns
 *   {"success": true, "output": {"greeting": "Hello, Ada!"}, "error": null, "files": []}
 *
 * The "name" lookup is a deliberately small scanner, not a JSON parser: it
 * finds the first "name" key and copies its string value, escaping what it
 * copies back out. A real plugin would use a JSON library.
 */
#include "vtcode_plugin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HELLO_VERSION "1.0.0"
#define MAX_NAME 256
#define RESULT_FORMAT \
    "{\"success\":true,\"output\":{\"greeting\":\"Hello, %s!\"},\"error\":null,\"files\":[]}"

static char *dup_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

uint32_t vtcode_plugin_version(void) { return VTCODE_PLUGIN_ABI_VERSION; }

const char *vtcode_plugin_metadata(void) {
    /* Heap-allocated: the host frees it with vtcode_plugin_free_string.
     * thread_safe is declared here, where VT Code reads it: execute() keeps no
     * shared state, so calls may run at once. */
    return dup_string("{\"name\":\"hello\",\"description\":\"Greets whoever is named in "
                      "input.name\",\"version\":\"" HELLO_VERSION "\",\"abi_version\":1,"
                      "\"thread_safe\":true}");
}

/* Copy the string value of the first "name" key into out, JSON-escaped. */
static void find_name(const char *json, char *out, size_t cap) {
    const char *p = json ? strstr(json, "\"name\"") : NULL;
    size_t n = 0;
    out[0] = '\0';
    if (!p) return;
    p += 6;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != ':') return;
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    if (*p++ != '"') return;
    while (*p && *p != '"' && n + 2 < cap) {
        if (*p == '\\' && p[1]) out[n++] = *p++; /* keep escapes as they are */
        out[n++] = *p++;
    }
    out[n] = '\0';
}

const char *vtcode_plugin_execute(const char *context_json) {
    char name[MAX_NAME];
    char *result;
    int len;
    find_name(context_json, name, sizeof name);
    if (name[0] == '\0') strcpy(name, "world");
    len = snprintf(NULL, 0, RESULT_FORMAT, name);
    result = malloc((size_t)len + 1);
    if (!result) return NULL;
    snprintf(result, (size_t)len + 1, RESULT_FORMAT, name);
    return result;
}

void vtcode_plugin_free_string(const char *s) { free((void *)s); }
