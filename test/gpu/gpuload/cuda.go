package main

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>

// The few CUDA driver API declarations gpuload needs, written out so that
// it builds without CUDA headers (cuda.h): handles are opaque pointers,
// CUresult and CUdevice ints, CUdeviceptr a 64-bit integer.
typedef int CUresult;
typedef int CUdevice;
typedef void *CUcontext;
typedef void *CUmodule;
typedef void *CUfunction;
typedef void *CUstream;
typedef unsigned long long CUdeviceptr;

static CUresult (*p_cuInit)(unsigned int);
static CUresult (*p_cuDriverGetVersion)(int *);
static CUresult (*p_cuDeviceGetCount)(int *);
static CUresult (*p_cuDeviceGet)(CUdevice *, int);
static CUresult (*p_cuDeviceGetName)(char *, int, CUdevice);
static CUresult (*p_cuDeviceGetAttribute)(int *, int, CUdevice);
static CUresult (*p_cuCtxCreate)(CUcontext *, unsigned int, CUdevice);
static CUresult (*p_cuCtxDestroy)(CUcontext);
static CUresult (*p_cuCtxSynchronize)(void);
static CUresult (*p_cuMemAlloc)(CUdeviceptr *, size_t);
static CUresult (*p_cuMemFree)(CUdeviceptr);
static CUresult (*p_cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
static CUresult (*p_cuMemGetInfo)(size_t *, size_t *);
static CUresult (*p_cuModuleLoadData)(CUmodule *, const void *);
static CUresult (*p_cuModuleGetFunction)(CUfunction *, CUmodule, const char *);
static CUresult (*p_cuLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int,
	unsigned int, unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
static CUresult (*p_cuGetErrorName)(CUresult, const char **);

// gl_open loads the driver library and its entry points. It returns NULL,
// or why not (dlerror's text, or the missing symbol).
static const char *gl_open(const char *path) {
	void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) return dlerror();
#define SYM(p, name) if (!(p = (__typeof__(p))dlsym(lib, name))) return "symbol " name " not found";
	SYM(p_cuInit, "cuInit")
	SYM(p_cuDriverGetVersion, "cuDriverGetVersion")
	SYM(p_cuDeviceGetCount, "cuDeviceGetCount")
	SYM(p_cuDeviceGet, "cuDeviceGet")
	SYM(p_cuDeviceGetName, "cuDeviceGetName")
	SYM(p_cuDeviceGetAttribute, "cuDeviceGetAttribute")
	SYM(p_cuCtxCreate, "cuCtxCreate_v2")
	SYM(p_cuCtxDestroy, "cuCtxDestroy_v2")
	SYM(p_cuCtxSynchronize, "cuCtxSynchronize")
	SYM(p_cuMemAlloc, "cuMemAlloc_v2")
	SYM(p_cuMemFree, "cuMemFree_v2")
	SYM(p_cuMemsetD8, "cuMemsetD8_v2")
	SYM(p_cuMemGetInfo, "cuMemGetInfo_v2")
	SYM(p_cuModuleLoadData, "cuModuleLoadData")
	SYM(p_cuModuleGetFunction, "cuModuleGetFunction")
	SYM(p_cuLaunchKernel, "cuLaunchKernel")
	SYM(p_cuGetErrorName, "cuGetErrorName")
#undef SYM
	return NULL;
}

static CUresult gl_init(void) { return p_cuInit(0); }
static CUresult gl_driver_version(int *v) { return p_cuDriverGetVersion(v); }
static CUresult gl_device_count(int *n) { return p_cuDeviceGetCount(n); }
static CUresult gl_device(CUdevice *d, int i) { return p_cuDeviceGet(d, i); }
static CUresult gl_device_name(char *buf, int n, CUdevice d) { return p_cuDeviceGetName(buf, n, d); }
static CUresult gl_device_attr(int *v, int attr, CUdevice d) { return p_cuDeviceGetAttribute(v, attr, d); }
static CUresult gl_ctx_create(CUcontext *c, CUdevice d) { return p_cuCtxCreate(c, 0, d); }
static CUresult gl_ctx_destroy(CUcontext c) { return p_cuCtxDestroy(c); }
static CUresult gl_sync(void) { return p_cuCtxSynchronize(); }
static CUresult gl_alloc(CUdeviceptr *p, size_t n) { return p_cuMemAlloc(p, n); }
static CUresult gl_free(CUdeviceptr p) { return p_cuMemFree(p); }
static CUresult gl_memset(CUdeviceptr p, size_t n) { return p_cuMemsetD8(p, 0, n); }
static CUresult gl_mem_info(size_t *free, size_t *total) { return p_cuMemGetInfo(free, total); }
static CUresult gl_module(CUmodule *m, const char *ptx) { return p_cuModuleLoadData(m, ptx); }
static CUresult gl_function(CUfunction *f, CUmodule m, const char *name) { return p_cuModuleGetFunction(f, m, name); }

// gl_launch runs busy(out, iters) on grid blocks of block threads.
static CUresult gl_launch(CUfunction f, unsigned int grid, unsigned int block, CUdeviceptr out, unsigned int iters) {
	void *args[2] = { &out, &iters };
	return p_cuLaunchKernel(f, grid, 1, 1, block, 1, 1, 0, NULL, args, NULL);
}

static const char *gl_error_name(CUresult r) {
	const char *s = NULL;
	if (p_cuGetErrorName(r, &s) != 0 || s == NULL) return "unknown CUresult";
	return s;
}
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Device attributes (CUdevice_attribute) gpuload reads.
const (
	attrMultiprocessorCount = 16
	attrComputeMajor        = 75
	attrComputeMinor        = 76
)

// cudaErrorNoDevice is CUDA_ERROR_NO_DEVICE: a driver but no GPU.
const cudaErrorNoDevice = 100

// cuError is a failed driver API call.
type cuError struct {
	call string
	code int
	name string
}

func (e *cuError) Error() string { return fmt.Sprintf("%s: %s (%d)", e.call, e.name, e.code) }

func check(call string, r C.CUresult) error {
	if r == 0 {
		return nil
	}
	return &cuError{call: call, code: int(r), name: C.GoString(C.gl_error_name(r))}
}

// openDriver loads the driver library (libcuda.so.1 unless path says
// otherwise); the error says why it cannot be.
func openDriver(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	if msg := C.gl_open(cpath); msg != nil {
		return fmt.Errorf("%s", C.GoString(msg))
	}
	return nil
}

// gpu is one device with a context current on this thread.
type gpu struct {
	dev      C.CUdevice
	ctx      C.CUcontext
	fn       C.CUfunction
	name     string
	sms      int
	cc       string
	driver   int
	out, mem C.CUdeviceptr
}

func initDriver() (int, error) {
	if err := check("cuInit", C.gl_init()); err != nil {
		return 0, err
	}
	var v C.int
	if err := check("cuDriverGetVersion", C.gl_driver_version(&v)); err != nil {
		return 0, err
	}
	var n C.int
	if err := check("cuDeviceGetCount", C.gl_device_count(&n)); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, &cuError{call: "cuDeviceGetCount", code: cudaErrorNoDevice, name: "no device"}
	}
	return int(v), nil
}

// openGPU creates a context on device index and loads the busy kernel.
func openGPU(index int, ptx string) (*gpu, error) {
	g := &gpu{}
	if err := check("cuDeviceGet", C.gl_device(&g.dev, C.int(index))); err != nil {
		return nil, err
	}
	buf := make([]byte, 256)
	if err := check("cuDeviceGetName", C.gl_device_name((*C.char)(unsafe.Pointer(&buf[0])), C.int(len(buf)), g.dev)); err != nil {
		return nil, err
	}
	g.name = C.GoString((*C.char)(unsafe.Pointer(&buf[0])))
	var sms, major, minor C.int
	for _, a := range []struct {
		attr int
		v    *C.int
	}{{attrMultiprocessorCount, &sms}, {attrComputeMajor, &major}, {attrComputeMinor, &minor}} {
		if err := check("cuDeviceGetAttribute", C.gl_device_attr(a.v, C.int(a.attr), g.dev)); err != nil {
			return nil, err
		}
	}
	g.sms, g.cc = int(sms), fmt.Sprintf("%d.%d", major, minor)
	if err := check("cuCtxCreate", C.gl_ctx_create(&g.ctx, g.dev)); err != nil {
		return nil, err
	}
	cptx := C.CString(ptx)
	defer C.free(unsafe.Pointer(cptx))
	var mod C.CUmodule
	if err := check("cuModuleLoadData", C.gl_module(&mod, cptx)); err != nil {
		g.close()
		return nil, err
	}
	cname := C.CString("busy")
	defer C.free(unsafe.Pointer(cname))
	if err := check("cuModuleGetFunction", C.gl_function(&g.fn, mod, cname)); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// alloc allocates n bytes and writes them, so that they are resident.
func (g *gpu) alloc(n uint64) error {
	if n == 0 {
		return nil
	}
	if err := check("cuMemAlloc", C.gl_alloc(&g.mem, C.size_t(n))); err != nil {
		return err
	}
	if err := check("cuMemsetD8", C.gl_memset(g.mem, C.size_t(n))); err != nil {
		return err
	}
	return check("cuCtxSynchronize", C.gl_sync())
}

// memInfo is the device's free and total memory as this context sees it.
func (g *gpu) memInfo() (free, total uint64, err error) {
	var f, t C.size_t
	err = check("cuMemGetInfo", C.gl_mem_info(&f, &t))
	return uint64(f), uint64(t), err
}

// launch runs one busy kernel and waits for it.
func (g *gpu) launch(grid, block int, iters uint32) error {
	if g.out == 0 {
		if err := check("cuMemAlloc", C.gl_alloc(&g.out, C.size_t(grid*block*4))); err != nil {
			return err
		}
	}
	if err := check("cuLaunchKernel", C.gl_launch(g.fn, C.uint(grid), C.uint(block), g.out, C.uint(iters))); err != nil {
		return err
	}
	return check("cuCtxSynchronize", C.gl_sync())
}

func (g *gpu) close() {
	if g.mem != 0 {
		C.gl_free(g.mem)
	}
	if g.out != 0 {
		C.gl_free(g.out)
	}
	if g.ctx != nil {
		C.gl_ctx_destroy(g.ctx)
	}
}
