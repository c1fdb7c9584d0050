/*
 * A shared library a test plugin needs (tests/plugins/needs_dependency.c):
 *   cc -shared -fPIC -Wl,-soname,libdep.so -DDEP_VALUE=7 -DMARKER='"/tmp/x"' dependency.c
 * Its constructor creates MARKER (if given), so a test can tell whether this
 * copy's code ever ran; dep_value() says which copy answered.
 */
#include <fcntl.h>
#include <unistd.h>

#ifndef DEP_VALUE
#define DEP_VALUE 1
#endif

#ifdef MARKER
__attribute__((constructor)) static void ran(void) {
    int fd = open(MARKER, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) close(fd);
}
#endif

#ifdef INNER
int inner_value(void);
int dep_value(void) { return DEP_VALUE + inner_value(); }
#else
int dep_value(void) { return DEP_VALUE; }
#endif
