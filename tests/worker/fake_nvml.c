/* A stand-in NVML for tests: the few entry points the worker loads with
 * dlopen, reporting two devices. The real library is a true seam here: a
 * machine without a driver cannot exercise the discovery path otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned int gpu, memory; } util_t;

static int inited = 0;
static int devs[2] = {0, 1};

int nvmlInit_v2(void) { inited = 1; return 0; }
int nvmlShutdown(void) { inited = 0; return 0; }
int nvmlDeviceGetCount_v2(unsigned int* n) {
  if (!inited) return 1; /* NVML_ERROR_UNINITIALIZED */
  *n = 2;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int i, void** h) {
  if (i >= 2) return 2;
  *h = &devs[i];
  return 0;
}
int nvmlDeviceGetName(void* h, char* buf, unsigned int n) {
  snprintf(buf, n, "Fake H100 %d", *(int*)h);
  return 0;
}
int nvmlDeviceGetUUID(void* h, char* buf, unsigned int n) {
  snprintf(buf, n, "GPU-fake-%04d", *(int*)h);
  return 0;
}
int nvmlDeviceGetMemoryInfo(void* h, mem_t* m) {
  m->total = 80ull << 30;
  m->used = (unsigned long long)(*(int*)h + 1) << 30;
  m->free = m->total - m->used;
  return 0;
}
int nvmlDeviceGetUtilizationRates(void* h, util_t* u) {
  u->gpu = 10u * (unsigned)(*(int*)h + 1);
  u->memory = 0;
  return 0;
}

/* Compute processes: lines "<device> <pid> <MiB>" from the file named by
 * $FAKE_NVML_PROCS_FILE (rewritten by the test's run as it "allocates");
 * no file means no processes. */
typedef struct {
  unsigned int pid;
  unsigned long long used;
  unsigned int gi, ci;
} proc_t;

int nvmlDeviceGetComputeRunningProcesses_v3(void* h, unsigned int* count, proc_t* out) {
  const char* path = getenv("FAKE_NVML_PROCS_FILE");
  unsigned int n = 0, cap = *count;
  FILE* f = path ? fopen(path, "r") : NULL;
  if (f) {
    int dev, pid;
    long long mib;
    while (fscanf(f, "%d %d %lld", &dev, &pid, &mib) == 3) {
      if (dev != *(int*)h) continue;
      if (n < cap) {
        out[n].pid = (unsigned)pid;
        out[n].used = (unsigned long long)mib << 20;
        out[n].gi = out[n].ci = 0;
      }
      ++n;
    }
    fclose(f);
  }
  *count = n;
  return n > cap ? 7 /* NVML_ERROR_INSUFFICIENT_SIZE */ : 0;
}
