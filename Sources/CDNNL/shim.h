#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

// Debian's oneDNN runs on GNU OpenMP (libgomp). omp.h lives in GCC's private include
// directory, which Swift's Clang importer does not search, so the two calls used are declared here.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
int omp_get_thread_num(void);
int omp_get_num_threads(void);
// The entry point GCC compiles `#pragma omp parallel num_threads(n)` into: runs fn(data) on a
// team of up to n threads (the caller is thread 0) and returns when all are done. cbam-run's
// own parallel loops use it so that they share libgomp's pool with oneDNN instead of
// competing with it from a second pool.
void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
