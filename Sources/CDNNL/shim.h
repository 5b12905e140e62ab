#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

// Debian's oneDNN runs on GNU OpenMP (libgomp). omp.h lives in GCC's private include
// directory, which Swift's Clang importer does not search, so the two calls used are declared here.
void omp_set_num_threads(int);
int omp_get_max_threads(void);
