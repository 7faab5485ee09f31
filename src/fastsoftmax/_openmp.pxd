# OpenMP runtime calls that still compile (as serial stubs) in a build
# without OpenMP; prange needs no shim, Cython guards it with _OPENMP itself.
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define FS_OPENMP_ENABLED 1
    #else
    #define FS_OPENMP_ENABLED 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    bint FS_OPENMP_ENABLED
    int omp_get_max_threads() nogil
