#ifndef MALLOC_COUNTER_H
#define MALLOC_COUNTER_H
#include <stdint.h>

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign) made by
/// this process since it started. Linking this target interposes those functions (glibc) and
/// forwards to glibc's own implementations.
uint64_t malloc_counter_allocations(void);

#endif
