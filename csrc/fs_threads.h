/*
 * Where a parallel region's threads run (Linux; elsewhere these do nothing).
 *
 * fastsoftmax's OpenMP threads sleep soon after a call (src/fastsoftmax/
 * _runtime.py says why). Woken for the next call, a worker is often placed by
 * the scheduler on the CPU of the thread that woke it, the caller, which is
 * about to work too: the two then share one core and a 2-thread call takes
 * as long as a 1-thread one (measured here after every pause of 0.3 s). So a
 * worker that finds itself on the caller's CPU moves off it, once: it
 * narrows its affinity to the other CPUs, which migrates it at once, and
 * widens it back, so that nothing stays pinned.
 */
#ifndef FS_THREADS_H
#define FS_THREADS_H

/* The CPU the calling thread runs on, or -1. */
int fs_current_cpu(void);

/* Called by a worker thread at the start of a region: leaves CPU `cpu`
 * (the caller's) if it runs there and another CPU is allowed. */
void fs_leave_cpu(int cpu);

#endif /* FS_THREADS_H */
