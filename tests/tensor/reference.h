// Naive fp64 reference implementations of every op (forward and analytic backward), written plainly
// from the formulas, plus the checking tools the op tests share: random data, norm-wise relative
// error, and central finite differences on the fp64 references.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#include "tensor/ops.h"
#include "tensor/tensor.h"

namespace seqit::tensor::reference {

using Vec = std::vector<double>;

inline Vec random_vec(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, scale);
  Vec v(n);
  for (double& x : v) x = dist(rng);
  return v;
}

inline Tensor to_tensor(const Vec& v, const Shape& shape, DType dtype = DType::f32) {
  std::vector<float> f(v.begin(), v.end());
  return Tensor::from_floats(f, shape, dtype);
}
inline Vec to_vec(const Tensor& t) {
  const std::vector<float> f = to_float_vector(t);
  return Vec(f.begin(), f.end());
}
// The values a tensor of `dtype` actually holds for v (rounding through bf16/f16), as fp64.
inline Vec rounded(const Vec& v, DType dtype) {
  return to_vec(to_tensor(v, {static_cast<int64_t>(v.size())}, dtype));
}

// ||got - want||₂ / ||want||₂ (norm-wise relative error; 0/0 = 0).
inline double rel_error(const Vec& got, const Vec& want) {
  EXPECT_EQ(got.size(), want.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size() && i < got.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  if (den == 0) return std::sqrt(num);
  return std::sqrt(num / den);
}

inline double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// Central finite differences of `loss` (an fp64 reference composed with a fixed random projection
// of its output) at `samples` coordinates of x, against the analytic gradient `grad`. In fp64 with
// h = 1e-5 the truncation error is O(h²) ~ 1e-10, so agreement to 1e-6 relative proves the formula.
inline void expect_fd_matches(const std::function<double(const Vec&)>& loss, const Vec& x,
                              const Vec& grad, const char* what, int samples = 12,
                              double tol = 1e-6) {
  ASSERT_EQ(x.size(), grad.size()) << what;
  double scale = 0;
  for (double g : grad) scale = std::max(scale, std::abs(g));
  std::mt19937_64 rng(99);
  for (int s = 0; s < samples && s < static_cast<int>(x.size()); ++s) {
    const size_t i =
        samples >= static_cast<int>(x.size()) ? static_cast<size_t>(s) : rng() % x.size();
    const double h = 1e-5 * std::max(1.0, std::abs(x[i]));
    Vec xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    const double fd = (loss(xp) - loss(xm)) / (2 * h);
    EXPECT_NEAR(fd, grad[i], tol * std::max(1.0, scale)) << what << " coordinate " << i;
  }
}

// ---- linear: y[n,o] = Σ_i x[n,i] w[o,i] + b[o] ----
inline Vec linear(const Vec& x, const Vec& w, const Vec* b, int64_t n, int64_t in, int64_t out) {
  Vec y(static_cast<size_t>(n * out));
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[r * in + i] * w[o * in + i];
      y[r * out + o] = s;
    }
  return y;
}
inline void linear_backward(const Vec& dy, const Vec& x, const Vec& w, int64_t n, int64_t in,
                            int64_t out, Vec& dx, Vec& dw, Vec& db) {
  dx.assign(static_cast<size_t>(n * in), 0.0);
  dw.assign(static_cast<size_t>(out * in), 0.0);
  db.assign(static_cast<size_t>(out), 0.0);
  for (int64_t r = 0; r < n; ++r)
    for (int64_t o = 0; o < out; ++o) {
      const double g = dy[r * out + o];
      db[o] += g;
      for (int64_t i = 0; i < in; ++i) {
        dx[r * in + i] += g * w[o * in + i];
        dw[o * in + i] += g * x[r * in + i];
      }
    }
}

// ---- RMSNorm: y = x / sqrt(mean(x²) + eps) · w ----
inline Vec rmsnorm(const Vec& x, const Vec& w, int64_t n, int64_t c, double eps) {
  Vec y(x.size());
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < c; ++i) ss += x[r * c + i] * x[r * c + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(c) + eps);
    for (int64_t i = 0; i < c; ++i) y[r * c + i] = x[r * c + i] * inv * w[i];
  }
  return y;
}
inline void rmsnorm_backward(const Vec& dy, const Vec& x, const Vec& w, int64_t n, int64_t c,
                             double eps, Vec& dx, Vec& dw) {
  dx.assign(x.size(), 0.0);
  dw.assign(static_cast<size_t>(c), 0.0);
  for (int64_t r = 0; r < n; ++r) {
    double ss = 0;
    for (int64_t i = 0; i < c; ++i) ss += x[r * c + i] * x[r * c + i];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(c) + eps);
    double dot_gwx = 0;
    for (int64_t i = 0; i < c; ++i) dot_gwx += dy[r * c + i] * w[i] * x[r * c + i];
    for (int64_t i = 0; i < c; ++i) {
      dw[i] += dy[r * c + i] * x[r * c + i] * inv;
      dx[r * c + i] = inv * dy[r * c + i] * w[i] -
                      x[r * c + i] * inv * inv * inv * dot_gwx / static_cast<double>(c);
    }
  }
}

// ---- SwiGLU: y = g·σ(g)·u ----
inline double sigmoid(double x) {
  return 1.0 / (1.0 + std::exp(-x));
}
inline Vec swiglu(const Vec& g, const Vec& u) {
  Vec y(g.size());
  for (size_t i = 0; i < g.size(); ++i) y[i] = g[i] * sigmoid(g[i]) * u[i];
  return y;
}
inline void swiglu_backward(const Vec& dy, const Vec& g, const Vec& u, Vec& dg, Vec& du) {
  dg.resize(g.size());
  du.resize(g.size());
  for (size_t i = 0; i < g.size(); ++i) {
    const double s = sigmoid(g[i]);
    du[i] = dy[i] * g[i] * s;
    dg[i] = dy[i] * u[i] * (s + g[i] * s * (1 - s));
  }
}

// ---- RoPE on x [tokens, heads, d] with positions[tokens] ----
inline Vec rope(const Vec& x, const std::vector<int32_t>& pos, int64_t heads, int64_t d,
                const RopeConfig& cfg, bool inverse = false) {
  const std::vector<double> inv = rope_inverse_frequencies(cfg);
  const int64_t half = static_cast<int64_t>(inv.size());
  Vec y = x;
  for (size_t t = 0; t < pos.size(); ++t)
    for (int64_t h = 0; h < heads; ++h) {
      const double* v = x.data() + (static_cast<int64_t>(t) * heads + h) * d;
      double* o = y.data() + (static_cast<int64_t>(t) * heads + h) * d;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = pos[t] * inv[static_cast<size_t>(i)] * (inverse ? -1.0 : 1.0);
        const int64_t a = cfg.layout == RopeLayout::interleaved ? 2 * i : i;
        const int64_t b = cfg.layout == RopeLayout::interleaved ? 2 * i + 1 : i + half;
        o[a] = v[a] * std::cos(angle) - v[b] * std::sin(angle);
        o[b] = v[a] * std::sin(angle) + v[b] * std::cos(angle);
      }
    }
  return y;
}

// ---- attention: naive masked softmax(QKᵀ·scale)V, q [B,T,Hq,D], k/v [B,T,Hkv,D] ----
struct AttnDims {
  int64_t b, t, hq, hkv, d;
};
inline bool attn_visible(const std::vector<int32_t>* seg, int64_t b, int64_t tq, int64_t tk,
                         int64_t t) {
  return tk <= tq && (!seg || (*seg)[b * t + tk] == (*seg)[b * t + tq]);
}
// Returns out; P (probabilities) are recomputed where needed.
inline Vec attention(const Vec& q, const Vec& k, const Vec& v, const AttnDims& s,
                     const std::vector<int32_t>* seg, double scale) {
  Vec out(q.size(), 0.0);
  const int64_t r = s.hq / s.hkv;
  std::vector<double> p(static_cast<size_t>(s.t));
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.hq; ++h)
      for (int64_t i = 0; i < s.t; ++i) {
        const double* qi = q.data() + ((b * s.t + i) * s.hq + h) * s.d;
        double mx = -INFINITY;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          const double* kj = k.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          double dotp = 0;
          for (int64_t x = 0; x < s.d; ++x) dotp += qi[x] * kj[x];
          p[j] = dotp * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          p[j] = std::exp(p[j] - mx);
          sum += p[j];
        }
        double* oi = out.data() + ((b * s.t + i) * s.hq + h) * s.d;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          const double* vj = v.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          for (int64_t x = 0; x < s.d; ++x) oi[x] += p[j] / sum * vj[x];
        }
      }
  return out;
}
inline void attention_backward(const Vec& dout, const Vec& q, const Vec& k, const Vec& v,
                               const AttnDims& s, const std::vector<int32_t>* seg, double scale,
                               Vec& dq, Vec& dk, Vec& dv) {
  dq.assign(q.size(), 0.0);
  dk.assign(k.size(), 0.0);
  dv.assign(v.size(), 0.0);
  const int64_t r = s.hq / s.hkv;
  std::vector<double> p(static_cast<size_t>(s.t)), dp(static_cast<size_t>(s.t));
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t h = 0; h < s.hq; ++h)
      for (int64_t i = 0; i < s.t; ++i) {
        const double* qi = q.data() + ((b * s.t + i) * s.hq + h) * s.d;
        const double* gi = dout.data() + ((b * s.t + i) * s.hq + h) * s.d;
        double mx = -INFINITY;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          const double* kj = k.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          double dotp = 0;
          for (int64_t x = 0; x < s.d; ++x) dotp += qi[x] * kj[x];
          p[j] = dotp * scale;
          mx = std::max(mx, p[j]);
        }
        double sum = 0;
        for (int64_t j = 0; j < s.t; ++j)
          if (attn_visible(seg, b, i, j, s.t)) sum += (p[j] = std::exp(p[j] - mx));
        double pdp = 0;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          p[j] /= sum;
          const double* vj = v.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          double* dvj = dv.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          dp[j] = 0;
          for (int64_t x = 0; x < s.d; ++x) {
            dp[j] += gi[x] * vj[x];
            dvj[x] += p[j] * gi[x];
          }
          pdp += p[j] * dp[j];
        }
        double* dqi = dq.data() + ((b * s.t + i) * s.hq + h) * s.d;
        for (int64_t j = 0; j < s.t; ++j) {
          if (!attn_visible(seg, b, i, j, s.t)) continue;
          const double ds = p[j] * (dp[j] - pdp) * scale;
          const double* kj = k.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          double* dkj = dk.data() + ((b * s.t + j) * s.hkv + h / r) * s.d;
          for (int64_t x = 0; x < s.d; ++x) {
            dqi[x] += ds * kj[x];
            dkj[x] += ds * qi[x];
          }
        }
      }
}

// ---- cross-entropy over rows of logits [n, v] ----
inline double cross_entropy(const Vec& logits, const std::vector<int32_t>& targets, int64_t v,
                            int32_t ignore, Vec* dlogits, double grad_scale,
                            int64_t* tokens = nullptr) {
  double loss = 0;
  int64_t count = 0;
  if (dlogits) dlogits->assign(logits.size(), 0.0);
  for (size_t r = 0; r < targets.size(); ++r) {
    if (targets[r] == ignore) continue;
    const double* x = logits.data() + static_cast<int64_t>(r) * v;
    double mx = -INFINITY;
    for (int64_t i = 0; i < v; ++i) mx = std::max(mx, x[i]);
    double sum = 0;
    for (int64_t i = 0; i < v; ++i) sum += std::exp(x[i] - mx);
    const double lse = mx + std::log(sum);
    loss += lse - x[targets[r]];
    ++count;
    if (dlogits) {
      for (int64_t i = 0; i < v; ++i) (*dlogits)[r * v + i] = grad_scale * std::exp(x[i] - lse);
      (*dlogits)[r * v + targets[r]] -= grad_scale;
    }
  }
  if (tokens) *tokens = count;
  return loss;
}

}  // namespace seqit::tensor::reference
