// Fused Adam / SGD step on the CPU: one parallel region over fixed-size chunks of the
// concatenated elements of all tensors (threads take chunks dynamically, so a tensor boundary
// or a busy core does not unbalance the work), an AVX2 + FMA loop picked at run time with a
// scalar path doing exactly the same operations, fp32 math, bf16/fp16 params with fp32 state.
#include "fused_optim.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>

#include "cpu/cpu_features.h"

namespace fastcore_ext {
namespace optim {

namespace {

// Elements per work unit. Threads grab units from a shared counter; a unit may span several
// small tensors. 64K elements keep each of the 3-4 streams a long contiguous run.
constexpr int64_t kChunk = int64_t{1} << 16;

// ---- the per-element loops: a scalar version and an AVX2 version of the same operations ----

template <typename P>
void adam_scalar(P* p, const P* g, float* m, float* v, int64_t n, const AdamScalars& s) {
  for (int64_t i = 0; i < n; ++i) {
    float pf = static_cast<float>(p[i]);
    adam_element(pf, static_cast<float>(g[i]), m[i], v[i], s);
    p[i] = static_cast<P>(pf);
  }
}

template <typename P>
void sgd_scalar(P* p, const P* g, float* buf, int64_t n, const SgdScalars& s) {
  for (int64_t i = 0; i < n; ++i) {
    float pf = static_cast<float>(p[i]);
    sgd_element(pf, static_cast<float>(g[i]), buf[i], s);
    p[i] = static_cast<P>(pf);
  }
}

#if FCX_X86_SIMD

FCX_TARGET_AVX2 inline __m256 load8(const float* x) { return _mm256_loadu_ps(x); }
FCX_TARGET_AVX2 inline __m256 load8(const c10::BFloat16* x) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
FCX_TARGET_AVX2 inline __m256 load8(const c10::Half* x) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(x)));
}
FCX_TARGET_AVX2 inline void store8(float* x, __m256 v) { _mm256_storeu_ps(x, v); }
FCX_TARGET_AVX2 inline void store8(c10::Half* x, __m256 v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(x),
                   _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
// Round to nearest even, NaN to 0x7FC0: c10::BFloat16's conversion, 8 at a time.
FCX_TARGET_AVX2 inline void store8(c10::BFloat16* x, __m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7FFF)));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC00000), nan);
  r = _mm256_srli_epi32(r, 16);
  const __m128i packed =
      _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(x), packed);
}

template <typename P>
FCX_TARGET_AVX2 void adam_avx2(P* p, const P* g, float* m, float* v, int64_t n,
                               const AdamScalars& s) {
  const __m256 inv = _mm256_set1_ps(s.inv_scale), decay = _mm256_set1_ps(s.decay);
  const __m256 b1c = _mm256_set1_ps(s.b1c), b2 = _mm256_set1_ps(s.b2);
  const __m256 b2c = _mm256_set1_ps(s.b2c), rbc2 = _mm256_set1_ps(s.rbc2);
  const __m256 eps = _mm256_set1_ps(s.eps), step = _mm256_set1_ps(s.step_size);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {  // adam_element, 8 lanes at a time
    const __m256 gv = _mm256_mul_ps(load8(g + i), inv);
    __m256 pv = _mm256_mul_ps(load8(p + i), decay);
    __m256 mv = _mm256_loadu_ps(m + i);
    __m256 vv = _mm256_loadu_ps(v + i);
    mv = _mm256_fmadd_ps(b1c, _mm256_sub_ps(gv, mv), mv);
    vv = _mm256_fmadd_ps(b2c, _mm256_mul_ps(gv, gv), _mm256_mul_ps(vv, b2));
    const __m256 den = _mm256_fmadd_ps(_mm256_sqrt_ps(vv), rbc2, eps);
    pv = _mm256_fnmadd_ps(step, _mm256_div_ps(mv, den), pv);
    _mm256_storeu_ps(m + i, mv);
    _mm256_storeu_ps(v + i, vv);
    store8(p + i, pv);
  }
  adam_scalar(p + i, g + i, m + i, v + i, n - i, s);
}

template <typename P>
FCX_TARGET_AVX2 void sgd_avx2(P* p, const P* g, float* buf, int64_t n, const SgdScalars& s) {
  const __m256 inv = _mm256_set1_ps(s.inv_scale), decay = _mm256_set1_ps(s.decay);
  const __m256 mom = _mm256_set1_ps(s.mom), lr = _mm256_set1_ps(s.lr);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {  // sgd_element, 8 lanes at a time
    const __m256 gv = _mm256_mul_ps(load8(g + i), inv);
    __m256 pv = _mm256_mul_ps(load8(p + i), decay);
    const __m256 bv = _mm256_fmadd_ps(mom, _mm256_loadu_ps(buf + i), gv);
    pv = _mm256_fnmadd_ps(lr, bv, pv);
    _mm256_storeu_ps(buf + i, bv);
    store8(p + i, pv);
  }
  sgd_scalar(p + i, g + i, buf + i, n - i, s);
}
#endif  // FCX_X86_SIMD

// ---- the two algorithms, as the driver below sees them ----

struct Adam {
  using Scalars = AdamScalars;
  static constexpr int kStates = 2;
  template <typename P>
  static void run(P* p, const P* g, float* const* s, int64_t n, const Scalars& sc) {
#if FCX_X86_SIMD
    if (fastcore_ext::cpu::has_avx2_fma_f16c()) return adam_avx2(p, g, s[0], s[1], n, sc);
#endif
    adam_scalar(p, g, s[0], s[1], n, sc);
  }
};

struct Sgd {
  using Scalars = SgdScalars;
  static constexpr int kStates = 1;
  template <typename P>
  static void run(P* p, const P* g, float* const* s, int64_t n, const Scalars& sc) {
#if FCX_X86_SIMD
    if (fastcore_ext::cpu::has_avx2_fma_f16c()) return sgd_avx2(p, g, s[0], n, sc);
#endif
    sgd_scalar(p, g, s[0], n, sc);
  }
};

template <class Algo>
struct Item {
  void* p;
  const void* g;
  float* s[Algo::kStates];
  int64_t numel;
  at::ScalarType dtype;
  typename Algo::Scalars sc;
};

template <class Algo>
void run_range(const Item<Algo>& it, int64_t lo, int64_t hi) {
  const int64_t n = hi - lo;
  float* s[Algo::kStates];
  for (int k = 0; k < Algo::kStates; ++k) s[k] = it.s[k] + lo;
  switch (it.dtype) {
    case at::kFloat:
      return Algo::run(static_cast<float*>(it.p) + lo, static_cast<const float*>(it.g) + lo, s, n,
                       it.sc);
    case at::kBFloat16:
      return Algo::run(static_cast<c10::BFloat16*>(it.p) + lo,
                       static_cast<const c10::BFloat16*>(it.g) + lo, s, n, it.sc);
    case at::kHalf:
      return Algo::run(static_cast<c10::Half*>(it.p) + lo, static_cast<const c10::Half*>(it.g) + lo,
                       s, n, it.sc);
    default:
      TORCH_INTERNAL_ASSERT(false, "dtype checked in check_step_args");
  }
}

// One parallel region for all tensors. Element e of the concatenation of every tensor lives in
// the tensor t with offsets[t] <= e < offsets[t + 1]; the threads take kChunk-element units of
// the concatenation from a shared counter until none is left.
template <class Algo>
void run_all(const std::vector<Item<Algo>>& items) {
  const int64_t n = static_cast<int64_t>(items.size());
  std::vector<int64_t> offsets(n + 1, 0);
  for (int64_t t = 0; t < n; ++t) offsets[t + 1] = offsets[t] + items[t].numel;
  const int64_t total = offsets[n];
  if (total == 0) return;
  const int64_t units = (total + kChunk - 1) / kChunk;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), units);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t u = next.fetch_add(1, std::memory_order_relaxed); u < units;
         u = next.fetch_add(1, std::memory_order_relaxed)) {
      int64_t b = u * kChunk;
      const int64_t e = std::min(total, b + kChunk);
      int64_t t = std::upper_bound(offsets.begin(), offsets.end(), b) - offsets.begin() - 1;
      while (b < e) {
        const int64_t hi = std::min(e, offsets[t + 1]);
        run_range(items[t], b - offsets[t], hi - offsets[t]);
        b = hi;
        ++t;
      }
    }
  });
}

// The groups' lr and mom at the current schedule step.
std::vector<LrMom> groups_lr_mom(const at::Tensor& hyper, const at::Tensor& sched, int64_t step) {
  const double* h = hyper.data_ptr<double>();
  const double* sc = sched.data_ptr<double>();
  std::vector<LrMom> out(hyper.size(0));
  for (int64_t gi = 0; gi < hyper.size(0); ++gi) {
    out[gi] = group_lr_mom(h + gi * kHyperCols, sc, step);
  }
  return out;
}

// GradScaler found inf/NaN: no param or state changes, the tensors' step counts stay (as torch's
// fused AdamW reverts its own), and the schedule position advances: it counts training batches.
bool skipped_step(const std::optional<at::Tensor>& found_inf, const at::Tensor& counter) {
  if (!found_inf.has_value() || *found_inf->data_ptr<float>() == 0.0f) return false;
  counter.data_ptr<int64_t>()[kStep] += 1;
  return true;
}

float inv_scale_of(const std::optional<at::Tensor>& grad_scale) {
  return inverse_scale(grad_scale.has_value() ? grad_scale->data_ptr<float>() : nullptr);
}

void fused_adam_cpu(at::TensorList params, at::TensorList grads_in, at::TensorList exp_avgs,
                    at::TensorList exp_avg_sqs, at::TensorList steps, c10::IntArrayRef groups,
                    const at::Tensor& hyper, const at::Tensor& sched, const at::Tensor& counter,
                    const std::optional<at::Tensor>& grad_scale,
                    const std::optional<at::Tensor>& found_inf) {
  check_step_args("fused_adam_", params, grads_in, {exp_avgs, exp_avg_sqs},
                  {"exp_avgs", "exp_avg_sqs"}, &steps, groups, hyper, sched, counter, grad_scale,
                  found_inf);
  if (skipped_step(found_inf, counter)) return;
  const std::vector<at::Tensor> conformed = conformed_grads(params, grads_in);
  const at::TensorList grads = conformed.empty() ? grads_in : at::TensorList(conformed);
  int64_t* count = counter.data_ptr<int64_t>();
  const std::vector<LrMom> lm = groups_lr_mom(hyper, sched, count[kStep]);
  const float inv_scale = inv_scale_of(grad_scale);
  const double* h = hyper.data_ptr<double>();
  std::vector<Item<Adam>> items(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t gi = groups[i];
    const double t = static_cast<double>(*steps[i].data_ptr<float>()) + 1.0;
    items[i] = {params[i].data_ptr(),
                grads[i].data_ptr(),
                {exp_avgs[i].data_ptr<float>(), exp_avg_sqs[i].data_ptr<float>()},
                params[i].numel(),
                params[i].scalar_type(),
                adam_scalars(h + gi * kHyperCols, lm[gi], t, inv_scale)};
  }
  run_all(items);
  for (const at::Tensor& st : steps) *st.data_ptr<float>() += 1.0f;
  count[kStep] += 1;
}

void fused_sgd_cpu(at::TensorList params, at::TensorList grads_in, at::TensorList momentum_buffers,
                   c10::IntArrayRef groups, const at::Tensor& hyper, const at::Tensor& sched,
                   const at::Tensor& counter, const std::optional<at::Tensor>& grad_scale,
                   const std::optional<at::Tensor>& found_inf) {
  check_step_args("fused_sgd_", params, grads_in, {momentum_buffers}, {"momentum_buffers"}, nullptr,
                  groups, hyper, sched, counter, grad_scale, found_inf);
  if (skipped_step(found_inf, counter)) return;
  const std::vector<at::Tensor> conformed = conformed_grads(params, grads_in);
  const at::TensorList grads = conformed.empty() ? grads_in : at::TensorList(conformed);
  int64_t* count = counter.data_ptr<int64_t>();
  const std::vector<LrMom> lm = groups_lr_mom(hyper, sched, count[kStep]);
  const float inv_scale = inv_scale_of(grad_scale);
  const double* h = hyper.data_ptr<double>();
  std::vector<Item<Sgd>> items(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t gi = groups[i];
    items[i] = {params[i].data_ptr(),
                grads[i].data_ptr(),
                {momentum_buffers[i].data_ptr<float>()},
                params[i].numel(),
                params[i].scalar_type(),
                sgd_scalars(h + gi * kHyperCols, lm[gi], inv_scale)};
  }
  run_all(items);
  count[kStep] += 1;
}

}  // namespace
}  // namespace optim
}  // namespace fastcore_ext

TORCH_LIBRARY_IMPL(fastcore_ext, CPU, m) {
  m.impl("fused_adam_", &fastcore_ext::optim::fused_adam_cpu);
  m.impl("fused_sgd_", &fastcore_ext::optim::fused_sgd_cpu);
}
