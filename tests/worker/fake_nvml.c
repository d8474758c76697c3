/* A stand-in NVML for tests: the few entry points the worker loads with
 * dlopen, reporting two devices. The real library is a true seam here: a
 * machine without a driver cannot exercise the discovery path otherwise. */
#include <stdio.h>
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
