// OpenBLAS, opened on the first matrix product.
//
// Linked as a dependency of the executable, Debian's pthreads OpenBLAS runs
// its initialiser in every process before main: CPU detection, buffers and a
// thread pool of (cores - 1) threads, measured at ~3 ms and ~3 MB RSS on 2
// cores (more threads on bigger machines), in `assay query`, `assay --version`
// and idle daemons alike, which never multiply a matrix. The engine calls the
// four OpenBLAS entry points below by their usual names (cblas.h, and
// LAPACK's dgesvd_ in lora.cpp); these definitions open libopenblas.so.0 by
// its soname (so Debian's alternatives still pick the variant) on the first
// call and forward to it.
#include <cblas.h>
#include <dlfcn.h>

#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace {

constexpr const char* kOpenBlas = "libopenblas.so.0";

using SgemmFn = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint, float,
                         const float*, blasint, const float*, blasint, float, float*, blasint);
using DgemmFn = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint, double,
                         const double*, blasint, const double*, blasint, double, double*, blasint);
using SetThreadsFn = void (*)(int);
using DgesvdFn = void (*)(const char*, const char*, const int*, const int*, double*, const int*, double*,
                          double*, const int*, double*, const int*, double*, const int*, int*, size_t, size_t);

struct OpenBlas {
  SgemmFn sgemm = nullptr;
  DgemmFn dgemm = nullptr;
  SetThreadsFn set_num_threads = nullptr;
  DgesvdFn dgesvd = nullptr;
};

// Without OpenBLAS no product can be computed and the callers return void:
// say what is missing and exit, as the dynamic linker would have at start.
[[noreturn]] void fail(const char* what, const char* detail) {
  std::fprintf(stderr, "assay: %s %s: %s; install Debian's libopenblas0 (libopenblas-dev to build)\n", what,
               kOpenBlas, detail ? detail : "unknown error");
  std::exit(127);
}

template <class F>
F symbol(void* h, const char* name) {
  void* p = dlsym(h, name);
  if (!p) fail("cannot find an entry point in", name);
  return reinterpret_cast<F>(p);
}

OpenBlas open_blas() {
  // RTLD_LOCAL: its symbols must not interpose on these forwarding ones.
  void* h = dlopen(kOpenBlas, RTLD_NOW | RTLD_LOCAL);
  if (!h) fail("cannot load", dlerror());
  OpenBlas b;
  b.sgemm = symbol<SgemmFn>(h, "cblas_sgemm");
  b.dgemm = symbol<DgemmFn>(h, "cblas_dgemm");
  b.set_num_threads = symbol<SetThreadsFn>(h, "openblas_set_num_threads");
  b.dgesvd = symbol<DgesvdFn>(h, "dgesvd_");
  return b;  // never closed: the library's threads live until exit
}

const OpenBlas& blas() {
  static const OpenBlas b = open_blas();  // thread-safe, once
  return b;
}

}  // namespace

extern "C" {

void cblas_sgemm(const CBLAS_ORDER order, const CBLAS_TRANSPOSE ta, const CBLAS_TRANSPOSE tb, const blasint M,
                 const blasint N, const blasint K, const float alpha, const float* A, const blasint lda,
                 const float* B, const blasint ldb, const float beta, float* C, const blasint ldc) {
  blas().sgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void cblas_dgemm(const CBLAS_ORDER order, const CBLAS_TRANSPOSE ta, const CBLAS_TRANSPOSE tb, const blasint M,
                 const blasint N, const blasint K, const double alpha, const double* A, const blasint lda,
                 const double* B, const blasint ldb, const double beta, double* C, const blasint ldc) {
  blas().dgemm(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void openblas_set_num_threads(int n) { blas().set_num_threads(n); }

// LAPACK's SVD (declared in lora.cpp; gfortran's hidden CHARACTER lengths last).
void dgesvd_(const char* jobu, const char* jobvt, const int* m, const int* n, double* a, const int* lda,
             double* s, double* u, const int* ldu, double* vt, const int* ldvt, double* work, const int* lwork,
             int* info, size_t jobu_len, size_t jobvt_len) {
  blas().dgesvd(jobu, jobvt, m, n, a, lda, s, u, ldu, vt, ldvt, work, lwork, info, jobu_len, jobvt_len);
}

}  // extern "C"
