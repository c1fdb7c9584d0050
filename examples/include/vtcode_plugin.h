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
 * Strings are NUL-terminated UTF-8 JSON. Hosts parse them strictly, as VT
 * Code's serde_json does: NaN, Infinity, a number out of double range or a
 * duplicate key makes the whole document an error.
 *
 * metadata() returns an object with "name", "description", "version" (the
 * same name and version as plugin.json) and "abi_version" (required: an
 * unsigned integer, 1, not "1"), and optionally "author", "when_to_use",
 * "when_not_to_use", "allowed_tools" and "thread_safe". vtreg refuses a
 * plugin whose metadata name or version differs from what was signed.
 *
 * execute() receives the context {"input": {...}, "workspace_root": str|null,
 * "config": {...}}, and from vtreg also "plugin_dir": the absolute, canonical
 * path of the plugin's verified directory (null if it is not UTF-8). Look
 * for your own templates/ or scripts/ there; under VT Code, which does not
 * send it, fall back to dladdr(). Under vtreg, dladdr() on your own code
 * names "/proc/self/fd/N", the sealed copy of the verified library that was
 * loaded, not the directory: that path says nothing about where the plugin
 * lives. Files read from plugin_dir later were verified when the plugin was
 * loaded, not when you read them.
 *
 * execute() returns a result {"success": bool, "output": {...},
 * "error": str|null, "files": [str, ...]}. Returning NULL is an error.
 *
 * Ownership: if the plugin exports vtcode_plugin_free_string, the host calls
 * it exactly once on every string returned by metadata() and execute(), after
 * copying it; such strings must therefore be heap-allocated by the plugin.
 * Without it, returned strings stay owned by the plugin (static, or leaked).
 *
 * Threads: the host serialises calls into a plugin unless the JSON that
 * metadata() returns says "thread_safe": true (VT Code reads it there, not
 * from plugin.json). Under vtreg, a signed plugin.json that says
 * "thread_safe": false serialises calls whatever metadata() says; an isolated
 * plugin (one worker process) is always called one call at a time.
 *
 * Loading: the library is opened with RTLD_LAZY | RTLD_LOCAL, as VT Code does,
 * so a function that is never called need not resolve; calling one that does
 * not resolve ends the host process.
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
