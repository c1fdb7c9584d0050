/*
 * vtcode_plugin.h - the VT Code native plugin C ABI, version 1.
 *
 * A plugin is a shared library (lib<name>.so, lib<name>.dylib, <name>.dll)
 * next to a plugin.json, exporting these symbols with C linkage:
 *
 *   uint32_t    vtcode_plugin_version(void);                 must return 1
 *   const char *vtcode_plugin_metadata(void);                JSON object
 *   const char *vtcode_plugin_execute(const char *context);  JSON object
 *   void        vtcode_plugin_free_string(const char *s);    optional
 *
 * Strings are NUL-terminated UTF-8 JSON.
 *
 * metadata() returns an object with at least "name", "description" and
 * "version" (the same values as plugin.json); vtreg refuses a plugin whose
 * metadata name or version differs from what was signed.
 *
 * execute() receives the context {"input": {...}, "workspace_root": str|null,
 * "config": {...}} and returns a result {"success": bool, "output": {...},
 * "error": str|null, "files": [str, ...]}. Returning NULL is an error.
 *
 * Ownership: if the plugin exports vtcode_plugin_free_string, the host calls
 * it exactly once on every string returned by metadata() and execute(), after
 * copying it; such strings must therefore be heap-allocated by the plugin.
 * Without it, returned strings stay owned by the plugin (static, or leaked).
 *
 * Threads: the host serialises calls into a plugin unless its plugin.json
 * says "thread_safe": true.
 */
#ifndef VTCODE_PLUGIN_H
#define VTCODE_PLUGIN_H

#include <stdint.h>

#define VTCODE_PLUGIN_ABI_VERSION 1u

#if defined(_WIN32)
#define VTCODE_PLUGIN_EXPORT __declspec(dllexport)
#else
#define VTCODE_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

VTCODE_PLUGIN_EXPORT uint32_t vtcode_plugin_version(void);
VTCODE_PLUGIN_EXPORT const char *vtcode_plugin_metadata(void);
VTCODE_PLUGIN_EXPORT const char *vtcode_plugin_execute(const char *context_json);
VTCODE_PLUGIN_EXPORT void vtcode_plugin_free_string(const char *s);

#ifdef __cplusplus
}
#endif

#endif /* VTCODE_PLUGIN_H */
