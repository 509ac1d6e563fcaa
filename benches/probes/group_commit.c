// The ceiling of group commit on this machine: N threads each append a
// 100-byte record (a mutex, a memcpy into a mapped file) and wait until it is
// durable, with nothing else to do. What auditlog's durable appends at N
// writers are measured against (docs/BENCHMARKS.md, issue 14, stop 26).
//
//   cc -O2 -pthread benches/probes/group_commit.c -o /tmp/group_commit
//   /tmp/group_commit DIR THREADS leader|thread YIELD_US
//
// leader: the first waiter with no leader syncs (msync of what is unsynced),
//         after waiting up to half its last sync for the threads its last
//         round covered (auditlog's design, `engine::writer::sync_to`);
// thread: a dedicated thread syncs back to back and wakes every waiter.
// Waiters yield the CPU for up to YIELD_US, then sleep on a futex.
// Prints appends/s, records per sync, and that against THREADS ÷ the
// fdatasync p50 measured first on the same file (the yardstick).
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAP_BYTES (1UL << 30)
#define RUN_SECONDS 3

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static char *map;
static size_t off, synced;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static _Atomic unsigned appended, durable;
static _Atomic int leading, stop, returning;
static _Atomic long total, syncs, last_sync_ns = 100000;
static int thread_mode;
static double yield_us;

static void wake_all(void) {
  syscall(SYS_futex, &durable, FUTEX_WAKE_PRIVATE, 0x7fffffff, 0, 0, 0);
}

// Syncs everything appended so far; returns once it is durable.
static void sync_all(void) {
  pthread_mutex_lock(&mu);
  unsigned upto = appended;
  size_t end = off;
  pthread_mutex_unlock(&mu);
  size_t from = synced & ~4095UL;
  double t = now();
  msync(map + from, end - from, MS_SYNC);
  last_sync_ns = (long)((now() - t) * 1e9);
  synced = end;
  syncs++;
  returning = (int)(upto - durable);
  durable = upto;
  wake_all();
}

static void *writer(void *arg) {
  (void)arg;
  char rec[100];
  memset(rec, 7, sizeof rec);
  long n = 0;
  while (!stop) {
    pthread_mutex_lock(&mu);
    memcpy(map + off, rec, sizeof rec);
    off += sizeof rec;
    unsigned mine = ++appended;
    pthread_mutex_unlock(&mu);
    int r = returning;
    while (r > 0 && !atomic_compare_exchange_weak(&returning, &r, r - 1)) {
    }
    double t0 = now();
    while (durable < mine && !stop) {
      int no = 0;
      if (!thread_mode && atomic_compare_exchange_strong(&leading, &no, 1)) {
        if (durable < mine) {
          double g = now();
          while (returning > 0 && (now() - g) * 1e9 < last_sync_ns / 2) sched_yield();
          sync_all();
        }
        leading = 0;
        break;
      }
      if (now() - t0 < yield_us * 1e-6) {
        sched_yield();
        continue;
      }
      unsigned d = durable;
      if (d >= mine) break;
      struct timespec limit = {0, 2000000};
      syscall(SYS_futex, &durable, FUTEX_WAIT_PRIVATE, d, &limit, 0, 0);
    }
    n++;
  }
  total += n;
  return 0;
}

static void *syncer(void *arg) {
  (void)arg;
  while (!stop) {
    if (appended == durable) {
      sched_yield();
      continue;
    }
    sync_all();
  }
  return 0;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s DIR THREADS leader|thread YIELD_US\n", argv[0]);
    return 2;
  }
  int threads = atoi(argv[2]);
  thread_mode = strcmp(argv[3], "thread") == 0;
  yield_us = atof(argv[4]);
  if (threads < 1 || threads > 1024) return 2;
  char path[4096];
  snprintf(path, sizeof path, "%s/group_commit.probe", argv[1]);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0 || fallocate(fd, 0, 0, MAP_BYTES) != 0) {
    perror(path);
    return 1;
  }
  map = mmap(0, MAP_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  for (size_t i = 0; i < MAP_BYTES; i += 4096) map[i] = 0;
  fdatasync(fd);
  // The yardstick: fdatasync of a one-byte write, 200 times.
  double d[200];
  for (int i = 0; i < 200; i++) {
    if (pwrite(fd, "x", 1, (off_t)i * 4096) != 1) return 1;
    double t = now();
    fdatasync(fd);
    d[i] = now() - t;
  }
  qsort(d, 200, sizeof d[0], by_value);
  double p50 = d[100];
  pthread_t s, t[1024];
  if (thread_mode) pthread_create(&s, 0, syncer, 0);
  for (int i = 0; i < threads; i++) pthread_create(&t[i], 0, writer, 0);
  sleep(RUN_SECONDS);
  stop = 1;
  wake_all();
  for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
  if (thread_mode) pthread_join(s, 0);
  double rate = total / (double)RUN_SECONDS;
  printf("%d threads, %s, yield %.0f us: %.0f appends/s, %.1f records/sync; "
         "fdatasync p50 %.0f us: %.0f%% of threads / p50\n",
         threads, thread_mode ? "sync thread" : "leader", yield_us, rate,
         (double)total / (syncs ? syncs : 1), p50 * 1e6, 100 * rate / (threads / p50));
  unlink(path);
  return 0;
}
