// Kernel 1 on the CPU: the row kernel, written once against `Ops` (augment_normalize_simd.h).
//
// augment_normalize.cpp includes this file twice, inside namespace `portable` (Ops = ScalarOps)
// and inside namespace `avx2` (Ops = Avx2Ops, under a target("avx2,fma,f16c") pragma), so it
// has no include guard and includes nothing itself. Include it nowhere else.
//
// One output row of one sample is made in two passes over a small float buffer:
//   1. sample_row<mode, pad, load>: coordinates, padding, taps, interpolation -> buf[c][j], the
//      sampled value in [0, 255] (grid_sample on images / 255, times 255);
//   2. finish_row<...>: lighting, normalization, conversion to the output dtype and layout.

using F = Ops::F;
using M = Ops::M;
using I32 = Ops::I32;
using Idx = Ops::Idx;
constexpr int kW = Ops::kWidth;

// ---- pass 1: sampling ---------------------------------------------------------------------

// Input coordinate after the padding rule. Border and reflection clip into [0, size - 1]
// (NaN -> 0 through max's rule); zeros keeps the coordinate but bounds it to [-2, size + 1],
// which changes no result (every tap is outside there) and keeps NaN/inf out of the weights.
// Inside [0, size - 1] every rule is the identity, exactly: the reflection formula is used only
// outside [-0.5, size - 0.5].
template <Pad pad>
inline F pad_coordinate(F x, float size) {
  if constexpr (pad == Pad::Zeros) {
    return Ops::min(Ops::max(x, Ops::set1(-2.0f)), Ops::set1(size + 1.0f));
  }
  if constexpr (pad == Pad::Reflection) {
    // grid_sample, align_corners=False: reflect about -0.5 and size - 0.5. With t = x + 0.5 and
    // u = t mod 2 size (a floor, no fmod), the reflected coordinate is size - 0.5 - |u - size|.
    const F t = Ops::add(x, Ops::set1(0.5f));
    const F q = Ops::floor(Ops::mul(t, Ops::set1(float(0.5 / double(size)))));
    const F u = Ops::fnmadd(q, Ops::set1(2.0f * size), t);
    const F r = Ops::sub(Ops::set1(size - 0.5f), Ops::abs(Ops::sub(u, Ops::set1(size))));
    const M in = Ops::mand(Ops::ge(x, Ops::set1(-0.5f)), Ops::le(x, Ops::set1(size - 0.5f)));
    x = Ops::select(in, x, r);
  }
  return Ops::min(Ops::max(x, Ops::set1(0.0f)), Ops::set1(size - 1.0f));
}

// Coordinates (ix, iy) of the kW output pixels j0, j0 + 1, ... of row i.
struct RowCoords {
  const Geometry& g;
  double dx, dy;                 // the row terms b i + c of Nx, Ny
  float ax, ay, aw, rx, ry, rw;  // N = a j + r in float
  bool affine;

  RowCoords(const Geometry& geo, int64_t i) : g(geo) {
    dx = g.bx * double(i) + g.cx;
    dy = g.by * double(i) + g.cy;
    ax = float(g.ax);
    ay = float(g.ay);
    aw = float(g.aw);
    rx = float(dx);
    ry = float(dy);
    rw = float(g.bw * double(i) + g.cw);
    affine = g.affine;
  }

  void at(int64_t j0, F& x, F& y) const {
    const F j = Ops::add(Ops::set1(float(j0)), Ops::iota());
    x = Ops::fmadd(Ops::set1(ax), j, Ops::set1(rx));
    y = Ops::fmadd(Ops::set1(ay), j, Ops::set1(ry));
    if (!affine) {
      const F d = Ops::fmadd(Ops::set1(aw), j, Ops::set1(rw));
      x = Ops::div(x, d);
      y = Ops::div(y, d);
    }
  }

  // Affine rows: is output pixel j's input point inside [0, W - 1] x [0, H - 1]? Evaluated
  // exactly as `at` evaluates lane j.
  bool inside(int64_t j, float fw, float fh) const {
    const float x = std::fma(ax, float(j), rx), y = std::fma(ay, float(j), ry);
    return x >= 0.0f && x <= fw - 1.0f && y >= 0.0f && y <= fh - 1.0f;
  }

  // Affine rows: [lo, hi), multiples of kW within [0, n), such that every pixel of it maps
  // inside the image. Solved in double, then checked at the two ends in float as `at`
  // computes them (the coordinates are monotone in j), and narrowed if needed.
  void inside_span(int64_t n, float fw, float fh, int64_t& lo, int64_t& hi) const {
    lo = hi = 0;
    if (!affine) return;
    double jlo = 0.0, jhi = double(n - 1);
    // 0 <= a j + d <= limit  <=>  j between -d / a and (limit - d) / a
    auto clip = [&](double a, double inv_a, double d, double limit) {
      if (a == 0.0) {
        if (!(d >= 0.0 && d <= limit)) jhi = -1.0;
        return;
      }
      const double j1 = -d * inv_a, j2 = (limit - d) * inv_a;
      jlo = std::max(jlo, std::min(j1, j2));
      jhi = std::min(jhi, std::max(j1, j2));
    };
    clip(g.ax, g.inv_ax, dx, double(fw) - 1.0);
    clip(g.ay, g.inv_ay, dy, double(fh) - 1.0);
    if (!(jlo <= jhi)) return;  // empty, or NaN
    lo = int64_t(std::ceil(jlo / kW)) * kW;
    hi = int64_t(std::floor((jhi + 1.0) / kW)) * kW;
    while (lo < hi && !inside(lo, fw, fh)) lo += kW;
    while (lo < hi && !inside(hi - 1, fw, fh)) hi -= kW;
    if (lo >= hi) lo = hi = 0;
  }
};

// Output pixels [j_begin, j_end) of one row (multiples of kW, except that j_end may pass the
// row's end: buf has room for whole vectors). kInside: every pixel maps inside the image, so
// the padding rule is skipped (it would be the identity, see pad_coordinate).
//
// Bilinear runs in two phases per chunk of vectors, coordinates -> (offsets, weights) in
// small arrays, then loads and interpolation: two short dependency chains instead of one long
// one, which the out-of-order window overlaps better.
template <Mode mode, Pad pad, Load L, int C, bool Safe, bool kInside>
inline void sample_span(const SampleSource& src, const RowCoords& rc, int64_t j_begin,
                        int64_t j_end, float fw, float fh, float* buf, int64_t buf_stride) {
  constexpr bool kZeros = pad == Pad::Zeros && !kInside;
  const F zero = Ops::set1(0.0f), one = Ops::set1(1.0f);
  const F wmax = Ops::set1(fw - 1.0f), hmax = Ops::set1(fh - 1.0f);
  if constexpr (mode == Mode::Nearest) {
    for (int64_t j0 = j_begin; j0 < j_end; j0 += kW) {
      F x, y;
      rc.at(j0, x, y);
      if constexpr (!kInside) {
        x = pad_coordinate<pad>(x, fw);
        y = pad_coordinate<pad>(y, fh);
      }
      // grid_sample rounds with nearbyint: half to even.
      x = Ops::round_even(x);
      y = Ops::round_even(y);
      M valid{};
      if constexpr (kZeros) {
        valid = Ops::mand(Ops::mand(Ops::ge(x, zero), Ops::le(x, wmax)),
                          Ops::mand(Ops::ge(y, zero), Ops::le(y, hmax)));
        x = Ops::min(Ops::max(x, zero), wmax);
        y = Ops::min(Ops::max(y, zero), hmax);
      }
      F v[C];
      Ops::template load_row1<L, C, Safe>(src, Ops::offset(src, x, y), v);
      for (int c = 0; c < C; ++c) {
        if constexpr (kZeros) v[c] = Ops::zero_unless(valid, v[c]);
        Ops::store(buf + c * buf_stride + j0, v[c]);
      }
    }
  } else {
    constexpr int kChunk = 16;                             // vectors per phase
    alignas(32) typename Ops::IdxMem off[4][kChunk * kW];  // tl, tr, bl, br
    alignas(32) float wgt[4][kChunk * kW];                 // nw, ne, sw, se
    for (int64_t c0 = j_begin; c0 < j_end; c0 += kChunk * kW) {
      const int nv = int(std::min<int64_t>(kChunk, (j_end - c0) / kW));
      for (int k = 0; k < nv; ++k) {
        F x, y;
        rc.at(c0 + k * kW, x, y);
        if constexpr (!kInside) {
          x = pad_coordinate<pad>(x, fw);
          y = pad_coordinate<pad>(y, fh);
        }
        // grid_sample's bilinear: corners (x0, y0) .. (x0 + 1, y0 + 1), weights from the
        // distances to the opposite corner, summed in the order nw, ne, sw, se.
        const F x0 = Ops::floor(x), y0 = Ops::floor(y);
        const F x1 = Ops::add(x0, one), y1 = Ops::add(y0, one);
        const F e = Ops::sub(x, x0), w = Ops::sub(x1, x);
        const F s = Ops::sub(y, y0), n = Ops::sub(y1, y);
        F wnw = Ops::mul(w, n), wne = Ops::mul(e, n), wsw = Ops::mul(w, s), wse = Ops::mul(e, s);
        // Taps are read at clamped coordinates. Inside, border, reflection: x0, y0 are inside
        // already; x1, y1 may be one past the edge, where their weight is 0. Zeros: the weight
        // of a tap outside the image is 0 (0 * value adds exactly what 0 * 0 would).
        const F xa = kZeros ? Ops::min(Ops::max(x0, zero), wmax) : x0;
        const F ya = kZeros ? Ops::min(Ops::max(y0, zero), hmax) : y0;
        const F xb = kZeros ? Ops::min(Ops::max(x1, zero), wmax) : Ops::min(x1, wmax);
        const F yb = kZeros ? Ops::min(Ops::max(y1, zero), hmax) : Ops::min(y1, hmax);
        if constexpr (kZeros) {
          const M vx0 = Ops::mand(Ops::ge(x0, zero), Ops::le(x0, wmax));
          const M vx1 = Ops::mand(Ops::ge(x1, zero), Ops::le(x1, wmax));
          const M vy0 = Ops::mand(Ops::ge(y0, zero), Ops::le(y0, hmax));
          const M vy1 = Ops::mand(Ops::ge(y1, zero), Ops::le(y1, hmax));
          wnw = Ops::zero_unless(Ops::mand(vy0, vx0), wnw);
          wne = Ops::zero_unless(Ops::mand(vy0, vx1), wne);
          wsw = Ops::zero_unless(Ops::mand(vy1, vx0), wsw);
          wse = Ops::zero_unless(Ops::mand(vy1, vx1), wse);
          // x0 = -1: the taps are read at x = 0 (left) and, by the word loads, x = 1 (right);
          // the x = 0 pixel is the right tap, so its weight moves left.
          const M left_out = Ops::lt(x0, zero);
          wnw = Ops::select(left_out, wne, wnw);
          wne = Ops::select(left_out, zero, wne);
          wsw = Ops::select(left_out, wse, wsw);
          wse = Ops::select(left_out, zero, wse);
        }
        Ops::store_idx(off[0] + k * kW, Ops::offset(src, xa, ya));
        Ops::store_idx(off[1] + k * kW, Ops::offset(src, xb, ya));
        Ops::store_idx(off[2] + k * kW, Ops::offset(src, xa, yb));
        Ops::store_idx(off[3] + k * kW, Ops::offset(src, xb, yb));
        Ops::store(wgt[0] + k * kW, wnw);
        Ops::store(wgt[1] + k * kW, wne);
        Ops::store(wgt[2] + k * kW, wsw);
        Ops::store(wgt[3] + k * kW, wse);
      }
      for (int k = 0; k < nv; ++k) {
        F t[2 * C], u[2 * C];
        Ops::template load_row2<L, C, Safe>(src, off[0] + k * kW, off[1] + k * kW, t);
        Ops::template load_row2<L, C, Safe>(src, off[2] + k * kW, off[3] + k * kW, u);
        const F wnw = Ops::load_f(wgt[0] + k * kW), wne = Ops::load_f(wgt[1] + k * kW);
        const F wsw = Ops::load_f(wgt[2] + k * kW), wse = Ops::load_f(wgt[3] + k * kW);
        for (int c = 0; c < C; ++c) {
          F acc = Ops::mul(t[2 * c], wnw);
          acc = Ops::fmadd(t[2 * c + 1], wne, acc);
          acc = Ops::fmadd(u[2 * c], wsw, acc);
          Ops::store(buf + c * buf_stride + c0 + k * kW, Ops::fmadd(u[2 * c + 1], wse, acc));
        }
      }
    }
  }
}

// Output row i: the sampled values (0..255) into buf[c * buf_stride + j]. The part of an
// affine row that maps inside the image skips the padding rule.
template <Mode mode, Pad pad, Load L, int C, bool Safe>
void sample_row(const SampleSource& src, const Geometry& geo, int64_t i, int64_t H, int64_t W,
                int64_t out_w, float* buf, int64_t buf_stride) {
  const RowCoords rc(geo, i);
  const float fw = float(W), fh = float(H);
  const int64_t end = (out_w + kW - 1) / kW * kW;
  int64_t lo, hi;
  rc.inside_span(end, fw, fh, lo, hi);
  sample_span<mode, pad, L, C, Safe, false>(src, rc, 0, lo, fw, fh, buf, buf_stride);
  sample_span<mode, pad, L, C, Safe, true>(src, rc, lo, hi, fw, fh, buf, buf_stride);
  sample_span<mode, pad, L, C, Safe, false>(src, rc, hi, end, fw, fh, buf, buf_stride);
}

// ---- pass 2: lighting, normalization, output ----------------------------------------------

// The polynomials below are evaluated with Estrin's scheme (shorter dependency chains than
// Horner's: the lighting pass is latency-bound otherwise).

// log2(x) for x in [2^-40, 2^40]: x = 2^k m with m in [2/3, 4/3), log2(m) = t Q(t), t = m - 1,
// Q a degree-6 fit of log2(1 + t) / t (absolute error of t Q(t) below 6e-7).
inline F log2_pos(F x) {
  const I32 xi = Ops::bits(x);
  const I32 k = Ops::template sra<23>(Ops::isub(xi, Ops::iset1(0x3f2aaaab)));  // 0x3f2aaaab: 2/3
  const F t = Ops::sub(Ops::from_bits(Ops::isub(xi, Ops::template sll<23>(k))), Ops::set1(1.0f));
  const F t2 = Ops::mul(t, t), t4 = Ops::mul(t2, t2);
  const F a = Ops::fmadd(Ops::set1(-0.7213798761367798f), t, Ops::set1(1.4426945447921753f));
  const F b = Ops::fmadd(Ops::set1(-0.358388751745224f), t, Ops::set1(0.48100560903549194f));
  F c = Ops::fmadd(Ops::set1(-0.2799982726573944f), t, Ops::set1(0.2846195101737976f));
  c = Ops::fmadd(Ops::set1(0.25263744592666626f), t2, c);
  const F q = Ops::fmadd(c, t4, Ops::fmadd(b, t2, a));
  return Ops::fmadd(t, q, Ops::to_float(k));
}

// 2^z for z clamped to [-126, 126]: 2^n 2^f, n = round(z), f in [-1/2, 1/2], 2^f a degree-4 fit
// (relative error below 3e-6, so y below moves by at most 8e-7).
inline F exp2_clamped(F z) {
  z = Ops::min(Ops::max(z, Ops::set1(-126.0f)), Ops::set1(126.0f));
  const F n = Ops::round_even(z);
  const F f = Ops::sub(z, n);
  const F f2 = Ops::mul(f, f), f4 = Ops::mul(f2, f2);
  const F a = Ops::fmadd(Ops::set1(0.6931210160255432f), f, Ops::set1(1.0000001192092896f));
  const F b = Ops::fmadd(Ops::set1(0.055922023952007294f), f, Ops::set1(0.2402186542749405f));
  const F p = Ops::fmadd(Ops::set1(0.00968569703400135f), f4, Ops::fmadd(b, f2, a));
  const F scale = Ops::from_bits(Ops::template sll<23>(Ops::iadd(Ops::to_int(n), Ops::iset1(127))));
  return Ops::mul(p, scale);
}

// The lighting curve, y = 1 / (1 + 2^z), z = c log2(r) + log2k with r = (1 - x) / x =
// (255 - v) / v; clamping x to [eps, 1 - eps] is clamping r to [eps / (1 - eps), (1 - eps) / eps]
// (255 - v is exact near 255, where 1 - x in float would not be; v = 0 gives r = inf, clamped).
// Two passes over the row, v -> z then z -> output, keep each dependency chain short enough
// for the out-of-order window to overlap several vectors.
inline F light_exponent(F v, const LightParams& lp) {
  F r = Ops::div(Ops::sub(Ops::set1(255.0f), v), v);
  r = Ops::min(Ops::max(r, Ops::set1(kLightRMin)), Ops::set1(kLightRMax));
  return Ops::fmadd(Ops::set1(lp.c), log2_pos(r), Ops::set1(lp.log2k));
}

// u: the sampled value v in [0, 255] (Light::None, Identity) or the exponent z (Curve) ->
// the normalized output value of the channel.
template <Light light>
inline F finish_value(F u, float scale, float shift, float inv_std) {
  if constexpr (light == Light::None) {
    return Ops::fmadd(u, Ops::set1(scale), Ops::set1(shift));
  } else if constexpr (light == Light::Identity) {
    F x = Ops::mul(u, Ops::set1(float(1.0 / 255.0)));
    x = Ops::min(Ops::max(x, Ops::set1(kLightEps)), Ops::set1(1.0f - kLightEps));
    return Ops::fmadd(x, Ops::set1(inv_std), Ops::set1(shift));
  } else {
    const F one = Ops::set1(1.0f);
    const F y = Ops::div(one, Ops::add(one, exp2_clamped(u)));
    return Ops::fmadd(y, Ops::set1(inv_std), Ops::set1(shift));
  }
}

// Output row i of sample b: element (c, j) at out + c * sC + j * sW (sW = 1 for NCHW, C for
// channels_last with C = 3). buf is overwritten.
template <int C, typename OutT, bool kInterleaved, Light light>
void finish_row(float* buf, int64_t buf_stride, int64_t out_w, const Plan& plan,
                const LightParams& lp, OutT* out, int64_t out_sC) {
  if constexpr (light == Light::Curve) {
    for (int64_t j0 = 0; j0 < out_w; j0 += kW) {
      for (int c = 0; c < C; ++c) {
        float* p = buf + c * buf_stride + j0;
        Ops::store(p, light_exponent(Ops::load_f(p), lp));
      }
    }
  }
  for (int64_t j0 = 0; j0 < out_w; j0 += kW) {
    const int n = int(std::min<int64_t>(kW, out_w - j0));
    F v[C];
    for (int c = 0; c < C; ++c) {
      v[c] = finish_value<light>(Ops::load_f(buf + c * buf_stride + j0), plan.scale[c],
                                 plan.shift[c], plan.inv_std[c]);
    }
    if constexpr (kInterleaved) {
      static_assert(C == 3, "interleaved output needs 3 channels");
      Ops::interleave3(v[0], v[1], v[2]);
      OutT* dst = out + j0 * 3;
      for (int k = 0; k < 3; ++k) {
        Ops::store_out(dst + k * kW, v[k], std::min(kW, std::max(0, 3 * n - k * kW)));
      }
    } else {
      for (int c = 0; c < C; ++c) Ops::store_out(out + c * out_sC + j0, v[c], n);
    }
  }
}

using SampleRowFn = void (*)(const SampleSource&, const Geometry&, int64_t, int64_t, int64_t,
                             int64_t, float*, int64_t);

// sample_row for this call's mode, pad, load layout and channel count; [0] reads with the
// end-of-tensor clamp, [1] without (samples that end 8+ bytes before the end of images).
template <Mode mode, Pad pad, Load L>
void pick_sample_row(int64_t C, SampleRowFn* fn) {
  if (C == 1) {
    fn[0] = &sample_row<mode, pad, L, 1, false>;
    fn[1] = &sample_row<mode, pad, L, 1, true>;
  } else {
    fn[0] = &sample_row<mode, pad, L, 3, false>;
    fn[1] = &sample_row<mode, pad, L, 3, true>;
  }
}

template <Mode mode, Pad pad>
void pick_sample_row(Load load, int64_t C, SampleRowFn* fn) {
  switch (load) {
    case Load::Word1:
      return pick_sample_row<mode, pad, Load::Word1>(C, fn);
    case Load::WordPerChannel:
      return pick_sample_row<mode, pad, Load::WordPerChannel>(C, fn);
    case Load::WordPerTap:
      return pick_sample_row<mode, pad, Load::WordPerTap>(C, fn);
  }
}

template <Mode mode>
void pick_sample_row(Pad pad, Load load, int64_t C, SampleRowFn* fn) {
  switch (pad) {
    case Pad::Zeros:
      return pick_sample_row<mode, Pad::Zeros>(load, C, fn);
    case Pad::Border:
      return pick_sample_row<mode, Pad::Border>(load, C, fn);
    case Pad::Reflection:
      return pick_sample_row<mode, Pad::Reflection>(load, C, fn);
  }
}

// The whole op over output rows [begin, end) of the flattened (b, i) range.
template <typename OutT>
void run_rows(const Job& job, int64_t begin, int64_t end) {
  const Plan& p = *job.plan;
  SampleRowFn sample[2];
  if (p.mode == Mode::Nearest) {
    pick_sample_row<Mode::Nearest>(p.pad, job.load, p.C, sample);
  } else {
    pick_sample_row<Mode::Bilinear>(p.pad, job.load, p.C, sample);
  }
  const int64_t buf_stride = (p.out_w + kW - 1) / kW * kW;
  std::vector<float> buf(size_t(buf_stride * p.C));
  OutT* out = static_cast<OutT*>(job.out);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t b = r / p.out_h, i = r % p.out_h;
    const SampleJob& s = job.samples[size_t(b)];
    sample[s.safe ? 1 : 0](s.src, s.geo, i, p.H, p.W, p.out_w, buf.data(), buf_stride);
    OutT* row = out + b * job.out_sB + i * job.out_sH;
    const bool cl3 = p.C == 3 && job.out_sW == 3;
#define FCX_FINISH(CH, IL, LIGHT) \
  finish_row<CH, OutT, IL, LIGHT>(buf.data(), buf_stride, p.out_w, p, s.light, row, job.out_sC)
#define FCX_FINISH_LIGHT(CH, IL)           \
  switch (s.light.kind) {                  \
    case Light::None:                      \
      FCX_FINISH(CH, IL, Light::None);     \
      break;                               \
    case Light::Identity:                  \
      FCX_FINISH(CH, IL, Light::Identity); \
      break;                               \
    case Light::Curve:                     \
      FCX_FINISH(CH, IL, Light::Curve);    \
      break;                               \
  }
    if (p.C == 1) {
      FCX_FINISH_LIGHT(1, false)
    } else if (cl3) {
      FCX_FINISH_LIGHT(3, true)
    } else {
      FCX_FINISH_LIGHT(3, false)
    }
#undef FCX_FINISH_LIGHT
#undef FCX_FINISH
  }
}

inline void run(const Job& job, int64_t begin, int64_t end) {
  switch (job.plan->out.scalar_type()) {
    case at::kFloat:
      run_rows<float>(job, begin, end);
      break;
    case at::kHalf:
      run_rows<c10::Half>(job, begin, end);
      break;
    case at::kBFloat16:
      run_rows<c10::BFloat16>(job, begin, end);
      break;
    default:
      TORCH_INTERNAL_ASSERT(false, "augment_normalize: unexpected out dtype");
  }
}
