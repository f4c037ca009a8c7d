// A stand-in for libcuda.so.1, for gpuload's tests on machines without a
// GPU: the entry points gpuload loads, with a pretend device. FAKECUDA=nodevice
// makes cuInit fail with CUDA_ERROR_NO_DEVICE; FAKECUDA_LOG names a file that
// gets the module's kernel and each launch's parameters.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long long CUdeviceptr;
static char heap[1 << 20];
static size_t used;

static void logf_(const char *fmt, unsigned a, unsigned b, unsigned c, unsigned long long d) {
	const char *p = getenv("FAKECUDA_LOG");
	if (!p) return;
	FILE *f = fopen(p, "a");
	if (!f) return;
	fprintf(f, fmt, a, b, c, d);
	fclose(f);
}

int cuInit(unsigned flags) {
	const char *m = getenv("FAKECUDA");
	return (m && strcmp(m, "nodevice") == 0) ? 100 : (flags ? 1 : 0);
}
int cuDriverGetVersion(int *v) { *v = 12040; return 0; }
int cuDeviceGetCount(int *n) { *n = 1; return 0; }
int cuDeviceGet(int *d, int i) { if (i != 0) return 101; *d = 0; return 0; }
int cuDeviceGetName(char *buf, int n, int d) { snprintf(buf, n, "Fake GPU %d", d); return 0; }
int cuDeviceGetAttribute(int *v, int attr, int d) {
	switch (attr) {
	case 16: *v = 4; return 0;  // multiprocessors
	case 75: *v = 9; return 0;  // compute capability
	case 76: *v = 0; return 0;
	}
	return 1;
}
int cuCtxCreate_v2(void **c, unsigned flags, int d) { *c = (void *)heap; return 0; }
int cuCtxDestroy_v2(void *c) { return 0; }
int cuCtxSynchronize(void) { return 0; }
// Device memory is pretend: an address, and a byte count for cuMemGetInfo.
int cuMemAlloc_v2(CUdeviceptr *p, size_t n) { used += n; *p = 0x100000 + used; return 0; }
int cuMemFree_v2(CUdeviceptr p) { return 0; }
int cuMemsetD8_v2(CUdeviceptr p, unsigned char v, size_t n) { return p ? 0 : 1; }
int cuMemGetInfo_v2(size_t *f, size_t *t) { *t = (size_t)80 << 30; *f = *t - used; return 0; }
int cuModuleLoadData(void **m, const void *ptx) {
	if (!strstr((const char *)ptx, ".entry busy(")) return 218; // CUDA_ERROR_INVALID_PTX
	*m = (void *)heap;
	return 0;
}
int cuModuleGetFunction(void **f, void *m, const char *name) {
	if (strcmp(name, "busy") != 0) return 500; // CUDA_ERROR_NOT_FOUND
	*f = (void *)heap;
	return 0;
}
int cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                   unsigned shared, void *stream, void **params, void **extra) {
	CUdeviceptr out = *(CUdeviceptr *)params[0];
	unsigned iters = *(unsigned *)params[1];
	logf_("launch grid=%u block=%u iters=%u out=%llx\n", gx, bx, iters, out);
	usleep(2000);
	return (out && gy == 1 && gz == 1 && by == 1 && bz == 1 && !extra) ? 0 : 1;
}
int cuGetErrorName(int r, const char **s) {
	*s = r == 100 ? "CUDA_ERROR_NO_DEVICE" : r == 218 ? "CUDA_ERROR_INVALID_PTX" : "CUDA_ERROR_UNKNOWN";
	return 0;
}
