/*
 * A library that a test dependency (tests/plugins/dependency.c built with -DINNER)
 * needs in turn; linked back against that dependency, the two form a cycle:
 *   cc -shared -fPIC -Wl,-soname,libinner.so inner.c libdep.so
 */
#ifndef INNER_VALUE
#define INNER_VALUE 100
#endif

int inner_value(void) { return INNER_VALUE; }
