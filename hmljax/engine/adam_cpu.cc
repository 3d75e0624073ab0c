// Adam with coupled weight decay in one pass over memory, for XLA's CPU backend (see _fused_adam.py).
//
// XLA compiles optax's Adam into three loops that together move 48 bytes a parameter; this loop reads
// p, g, m, v and writes p, m, v once each (28 bytes), in place when the caller donates them. The operations
// are optax's, in its order (add_decayed_weights, scale_by_adam, scale_by_learning_rate, apply_updates),
// each rounded once (built with -ffp-contract=off; XLA fuses some into FMAs, so the two differ by an ulp
// in a few elements).
#include <cmath>
#include <cstdint>

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

ffi::Error AdamImpl(ffi::Buffer<ffi::F32> p, ffi::Buffer<ffi::F32> g, ffi::Buffer<ffi::F32> m,
                    ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::F32> s, ffi::ResultBuffer<ffi::F32> po,
                    ffi::ResultBuffer<ffi::F32> mo, ffi::ResultBuffer<ffi::F32> vo) {
  const int64_t n = static_cast<int64_t>(p.element_count());
  const int64_t members = static_cast<int64_t>(s.element_count()) / kScalars;  // > 1 under vmap
  if (members < 1 || members * kScalars != static_cast<int64_t>(s.element_count()) || n % members != 0 ||
      g.element_count() != p.element_count() || m.element_count() != p.element_count() ||
      v.element_count() != p.element_count()) {
    return ffi::Error::InvalidArgument("hmljax_adam_cpu: mismatched buffer sizes");
  }
  const int64_t per = n / members;
  for (int64_t b = 0; b < members; ++b) {
    const int64_t o = b * per;
    AdamLoop(per, p.typed_data() + o, g.typed_data() + o, m.typed_data() + o, v.typed_data() + o,
             po->typed_data() + o, mo->typed_data() + o, vo->typed_data() + o, s.typed_data() + b * kScalars);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(HmljaxAdamCpu, AdamImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());
