// Which lock guards which field, written where the field is declared.
//
// Under clang the macros are its thread-safety attributes
// (https://clang.llvm.org/docs/ThreadSafetyAnalysis.html), so -Wthread-safety
// can check them once the mutexes are annotated capability types; under
// other compilers they compile away and remain documentation. Fields that
// need no lock say why with a comment instead (immutable after start-up,
// atomic, or thread-safe themselves).
//
//   std::mutex mu;
//   std::deque<Run> incoming ASSAY_GUARDED_BY(mu);
//   Spool* spool ASSAY_PT_GUARDED_BY(...)  // the pointee, not the pointer
#pragma once

#if defined(__clang__)
#define ASSAY_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define ASSAY_THREAD_ANNOTATION(x)
#endif

// The field is read and written only while holding `m`.
#define ASSAY_GUARDED_BY(m) ASSAY_THREAD_ANNOTATION(guarded_by(m))
// The data the pointer points to is accessed only while holding `m`.
#define ASSAY_PT_GUARDED_BY(m) ASSAY_THREAD_ANNOTATION(pt_guarded_by(m))
// The function must be called with `...` held.
#define ASSAY_REQUIRES(...) ASSAY_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
// The function takes `...` itself: callers must not hold it.
#define ASSAY_EXCLUDES(...) ASSAY_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
// Lock order: this mutex is taken after `...`.
#define ASSAY_ACQUIRED_AFTER(...) ASSAY_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
