/* Thread placement for parallel regions (fs_threads.h). */
#if defined(__linux__)
#define _GNU_SOURCE
#include <sched.h>
#endif

#include "fs_threads.h"

#if defined(__linux__) && defined(CPU_ISSET)

int fs_current_cpu(void)
{
    return sched_getcpu();
}

void fs_leave_cpu(int cpu)
{
    if (cpu < 0 || cpu >= CPU_SETSIZE || sched_getcpu() != cpu)
        return;
    cpu_set_t allowed, others;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0 || !CPU_ISSET(cpu, &allowed))
        return;
    others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) == 0)
        return;
    if (sched_setaffinity(0, sizeof others, &others) == 0) /* migrates now */
        sched_setaffinity(0, sizeof allowed, &allowed);
}

#else

int fs_current_cpu(void)
{
    return -1;
}

void fs_leave_cpu(int cpu)
{
    (void)cpu;
}

#endif
