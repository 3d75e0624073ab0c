// Adam with coupled weight decay in one pass over memory, for XLA's CPU backend (see _fused_adam.py).
//
// XLA compiles optax's Adam into three loops that together move 48 bytes a parameter; this loop reads
// p, g, m, v and writes p, m, v once each (28 bytes), in place when the caller donates them. The operations
// are optax's, in its order (add_decayed_weights, scale_by_adam, scale_by_learning_rate, apply_updates),
// each rounded once (built with -ffp-contract=off; XLA fuses some into FMAs, so the two differ by an ulp
// in a few elements).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <thread>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int64_t kScalars = 9;  // lr, wd, b1, c1, b2, c2, eps, bc1, bc2

void AdamLoop(int64_t n, const float* p, const float* g, const float* m, const float* v, float* po, float* mo,
              float* vo, const float* s) {
  const float lr = s[0], wd = s[1], b1 = s[2], c1 = s[3], b2 = s[4], c2 = s[5], eps = s[6], bc1 = s[7],
              bc2 = s[8];
  // Element i is read before it is written and no other element is touched, so in place (p == po, ...) there
  // is no dependence between iterations: ivdep says so, and GCC vectorises without a runtime alias check
  // (which in place would send it down the scalar path). -fno-math-errno lets sqrt vectorise.
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] + wd * p[i];
    const float mi = c1 * gi + b1 * m[i];
    const float vi = c2 * (gi * gi) + b2 * v[i];
    mo[i] = mi;
    vo[i] = vi;
    po[i] = p[i] + (-lr) * ((mi / bc1) / (std::sqrt(vi / bc2) + eps));
  }
}

// Elements a task updates at a time: 7 arrays of 64K floats (1.75 MiB) stay in a core's cache share.
constexpr int64_t kChunk = 1 << 16;

// One update spread over XLA's intra-op thread pool (as XLA's own loops are). Chunks are claimed from a
// shared counter by the calling thread and by the tasks it schedules; the caller waits only for chunks other
// threads have claimed and are running, never for tasks still queued, so it cannot deadlock when every pool
// thread is busy (those tasks start later, find nothing left, and exit). A process pinned to one CPU has a
// pool of one: no tasks are scheduled.
struct Work {
  const float *p, *g, *m, *v, *s;
  float *po, *mo, *vo;
  int64_t n, per, chunks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};

  void Run() {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      const int64_t lo = c * kChunk, hi = std::min(n, lo + kChunk);
      for (int64_t a = lo; a < hi;) {  // a chunk may span members (vmap): one call per member's part
        const int64_t member = a / per, b = std::min(hi, (member + 1) * per);
        AdamLoop(b - a, p + a, g + a, m + a, v + a, po + a, mo + a, vo + a, s + member * kScalars);
        a = b;
      }
      done.fetch_add(1, std::memory_order_release);
    }
  }
};

ffi::Error AdamImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> p, ffi::Buffer<ffi::F32> g,
                    ffi::Buffer<ffi::F32> m, ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> s,
                    ffi::ResultBuffer<ffi::F32> po, ffi::ResultBuffer<ffi::F32> mo, ffi::ResultBuffer<ffi::F32> vo) {
  const int64_t n = static_cast<int64_t>(p.element_count());
  const int64_t members = static_cast<int64_t>(s.element_count()) / kScalars;  // > 1 under vmap
  if (members < 1 || members * kScalars != static_cast<int64_t>(s.element_count()) || n % members != 0 ||
      g.element_count() != p.element_count() || m.element_count() != p.element_count() ||
      v.element_count() != p.element_count()) {
    return ffi::Error::InvalidArgument("hmljax_adam_cpu: mismatched buffer sizes");
  }
  if (n == 0) return ffi::Error::Success();
  auto work = std::make_shared<Work>();
  work->p = p.typed_data(); work->g = g.typed_data(); work->m = m.typed_data(); work->v = v.typed_data();
  work->s = s.typed_data(); work->po = po->typed_data(); work->mo = mo->typed_data(); work->vo = vo->typed_data();
  work->n = n; work->per = n / members; work->chunks = (n + kChunk - 1) / kChunk;
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), work->chunks) - 1;
  for (int64_t t = 0; t < helpers; ++t) pool.Schedule([work] { work->Run(); });
  work->Run();
  while (work->done.load(std::memory_order_acquire) < work->chunks) std::this_thread::yield();
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(HmljaxAdamCpu, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
