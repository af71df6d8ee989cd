// Cross-entropy, token log-probs, LoRA, AdamW against fp64 references.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "reference.h"
#include "tensor/cpu_internal.h"
#include "tensor/ops.h"

namespace seqit::tensor {
namespace {

using reference::rel_error;
using reference::rounded;
using reference::to_tensor;
using reference::to_vec;
using reference::Vec;

TEST(CrossEntropy, LossCountAndGradientWithIgnoreIndex) {
  const int64_t n = 13, vocab = 1031;  // odd vocabulary: vector tails
  const Vec logits = reference::random_vec(static_cast<size_t>(n * vocab), 1, 3.0);
  std::vector<int32_t> targets(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    targets[static_cast<size_t>(i)] = static_cast<int32_t>((i * 101) % vocab);
  targets[0] = -100;
  targets[7] = -100;
  Vec dlogits;
  int64_t tokens = 0;
  const double loss =
      reference::cross_entropy(logits, targets, vocab, -100, &dlogits, 0.5, &tokens);
  reference::expect_fd_matches(
      [&](const Vec& x) {
        return 0.5 * reference::cross_entropy(x, targets, vocab, -100, nullptr, 1.0);
      },
      logits, dlogits, "dlogits", 30);
  const Tensor tt = Tensor::from_ints(targets, {n});
  EXPECT_EQ(count_targets(tt, -100), 11);
  // Gradient written in place over the logits (the memory-saving path) and into a separate buffer.
  Tensor in_place = to_tensor(logits, {n, vocab});
  const CrossEntropyResult r = cross_entropy(in_place, tt, -100, in_place, 0.5f);
  EXPECT_EQ(r.tokens, tokens);
  EXPECT_NEAR(r.loss_sum, loss, 1e-6 * loss);
  EXPECT_LT(rel_error(to_vec(in_place), dlogits), 1e-5);
  // bf16 logits (as a bf16 lm head would produce them): the reference on the rounded values.
  const Vec lb = rounded(logits, DType::bf16);
  const double loss_b = reference::cross_entropy(lb, targets, vocab, -100, nullptr, 1.0);
  const CrossEntropyResult rb = cross_entropy(to_tensor(logits, {n, vocab}, DType::bf16), tt, -100);
  EXPECT_NEAR(rb.loss_sum, loss_b, 1e-6 * loss_b);
  // Per-token log-probabilities for scoring.
  Tensor lp = Tensor::empty({n}, DType::f32);
  token_logprobs(lp, to_tensor(logits, {n, vocab}), tt, -100);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += lp.get({i});
  EXPECT_NEAR(-sum, loss, 1e-6 * loss);
  EXPECT_EQ(lp.get({0}), 0.0);
  // Out-of-vocabulary targets are errors naming the row.
  std::vector<int32_t> bad = targets;
  bad[4] = static_cast<int32_t>(vocab);
  try {
    cross_entropy(to_tensor(logits, {n, vocab}), Tensor::from_ints(bad, {n}), -100);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("targets[4]"), std::string::npos) << e.what();
  }
}

TEST(CrossEntropy, ExtremeLogitsStayFinite) {
  const std::vector<float> logits{1000.0f, -1000.0f, 0.0f, 999.0f};
  Tensor t = Tensor::from_floats(logits, {1, 4});
  const CrossEntropyResult r =
      cross_entropy(t, Tensor::from_ints(std::vector<int32_t>{3}, {1}), -100);
  EXPECT_NEAR(r.loss_sum, std::log1p(std::exp(-1.0)) + 1.0, 1e-5);
}

// LoRA reference: y += scale · (drop(x)·aᵀ)·bᵀ with a given 0/1 keep mask.
Vec lora_ref(const Vec& x, const Vec& a, const Vec& b, const Vec& keep, double scale, double p,
             int64_t n, int64_t in, int64_t out, int64_t rank) {
  Vec xd(x.size());
  for (size_t i = 0; i < x.size(); ++i) xd[i] = x[i] * keep[i] / (1 - p);
  const Vec xa = reference::linear(xd, a, nullptr, n, in, rank);
  Vec y = reference::linear(xa, b, nullptr, n, rank, out);
  for (double& v : y) v *= scale;
  return y;
}

TEST(Lora, ForwardBackwardWithSeededDropout) {
  const int64_t n = 6, in = 20, out = 14, rank = 4;
  const Vec x = reference::random_vec(static_cast<size_t>(n * in), 10);
  const Vec a = reference::random_vec(static_cast<size_t>(rank * in), 11, 0.5);
  const Vec b = reference::random_vec(static_cast<size_t>(out * rank), 12, 0.5);
  const Vec y0 = reference::random_vec(static_cast<size_t>(n * out), 13);
  const Vec dy = reference::random_vec(static_cast<size_t>(n * out), 14);
  for (float p : {0.0f, 0.3f}) {
    LoraConfig cfg;
    cfg.scale = 2.0f;
    cfg.dropout = p;
    cfg.seed = 1234;
    const Tensor tx = to_tensor(x, {n, in}), ta = to_tensor(a, {rank, in}),
                 tb = to_tensor(b, {out, rank});
    Tensor y = to_tensor(y0, {n, out});
    Tensor xa = Tensor::empty({n, rank}, DType::f32);
    lora_forward(y, xa, tx, ta, tb, cfg);
    // Recover the mask the op used from a probe with x = 1 (same seed, same element indices).
    Vec keep(x.size(), 1.0);
    if (p > 0) {
      Tensor ones = Tensor::full({n, in}, 1.0, DType::f32);
      Tensor id_a = Tensor::zeros({in, in}, DType::f32);
      for (int64_t i = 0; i < in; ++i) id_a.set({i, i}, 1.0);
      Tensor probe = Tensor::empty({n, in}, DType::f32);
      LoraConfig probe_cfg = cfg;
      probe_cfg.scale = 1.0f;
      Tensor sink = Tensor::zeros({n, in}, DType::f32);
      lora_forward(sink, probe, ones, id_a, id_a, probe_cfg);  // probe = drop(1)·I = keep/(1-p)
      int64_t kept = 0;
      for (int64_t i = 0; i < n * in; ++i) {
        const double m = probe.get({i / in, i % in}) * (1 - p);
        ASSERT_TRUE(std::abs(m) < 1e-6 || std::abs(m - 1) < 1e-5) << m;
        keep[static_cast<size_t>(i)] = m > 0.5 ? 1.0 : 0.0;
        kept += m > 0.5;
      }
      EXPECT_GT(kept, n * in * 0.5);  // ~70% kept
      EXPECT_LT(kept, n * in * 0.9);
    }
    Vec want = lora_ref(x, a, b, keep, 2.0, p, n, in, out, rank);
    for (size_t i = 0; i < want.size(); ++i) want[i] += y0[i];
    EXPECT_LT(rel_error(to_vec(y), want), 2e-6) << "p=" << p;
    // Gradients: the reference's, checked by finite differences, then the op's against it.
    auto loss_x = [&](const Vec& xv) {
      return reference::dot(dy, lora_ref(xv, a, b, keep, 2.0, p, n, in, out, rank));
    };
    auto loss_a = [&](const Vec& av) {
      return reference::dot(dy, lora_ref(x, av, b, keep, 2.0, p, n, in, out, rank));
    };
    auto loss_b = [&](const Vec& bv) {
      return reference::dot(dy, lora_ref(x, a, bv, keep, 2.0, p, n, in, out, rank));
    };
    // Analytic reference gradients (chain rule written out).
    Vec xd(x.size());
    for (size_t i = 0; i < x.size(); ++i) xd[i] = x[i] * keep[i] / (1 - p);
    const Vec xav = reference::linear(xd, a, nullptr, n, in, rank);
    Vec dxa, dbv, dummy;
    reference::linear_backward(dy, xav, b, n, rank, out, dxa, dbv, dummy);
    for (double& g : dxa) g *= 2.0;
    for (double& g : dbv) g *= 2.0;
    Vec dxd, dav;
    reference::linear_backward(dxa, xd, a, n, in, rank, dxd, dav, dummy);
    Vec dxv(x.size());
    for (size_t i = 0; i < x.size(); ++i) dxv[i] = dxd[i] * keep[i] / (1 - p);
    reference::expect_fd_matches(loss_x, x, dxv, "lora dx");
    reference::expect_fd_matches(loss_a, a, dav, "lora da");
    reference::expect_fd_matches(loss_b, b, dbv, "lora db");
    Tensor tdx = Tensor::zeros({n, in}, DType::f32), tda = Tensor::zeros({rank, in}, DType::f32),
           tdb = Tensor::zeros({out, rank}, DType::f32);
    lora_backward(tdx, tda, tdb, to_tensor(dy, {n, out}), tx, xa, ta, tb, cfg);
    EXPECT_LT(rel_error(to_vec(tdx), dxv), 1e-5) << "p=" << p;
    EXPECT_LT(rel_error(to_vec(tda), dav), 1e-5) << "p=" << p;
    EXPECT_LT(rel_error(to_vec(tdb), dbv), 1e-5) << "p=" << p;
  }
}

// Under bf16 compute (bf16 x, y and dy) the adapter multiplies in bf16 with f32 accumulation. On
// operands whose products and sums are small integers (exact in bf16 and f32) it must give exactly
// the f32 path's numbers — the same dropout masks, operands and transposes (p = 0.5 keeps a scale
// of 2: still exact) — and it rounds A to bf16 where the f32 path does not.
TEST(Lora, Bf16OperandsGiveTheF32NumbersWhereBf16IsExact) {
  const int64_t n = 40, in = 64, out = 48, rank = 8;
  std::mt19937_64 rng(5);
  auto ternary = [&](int64_t count) {
    Vec v(static_cast<size_t>(count));
    for (double& x : v) x = static_cast<double>(rng() % 3) - 1.0;
    return v;
  };
  const Vec x = ternary(n * in), a = ternary(rank * in), b = ternary(out * rank),
            y0 = ternary(n * out), dy = ternary(n * out);
  struct Run {
    Vec y, xa, dx, da, db;
  };
  auto run = [&](DType act, const Vec& av, const LoraConfig& cfg) {
    Tensor y = to_tensor(y0, {n, out}, act), xa = Tensor::empty({n, rank}, DType::f32);
    const Tensor tx = to_tensor(x, {n, in}, act), ta = to_tensor(av, {rank, in}),
                 tb = to_tensor(b, {out, rank});
    lora_forward(y, xa, tx, ta, tb, cfg);
    Tensor dx = Tensor::zeros({n, in}, DType::f32), da = Tensor::zeros({rank, in}, DType::f32),
           db = Tensor::zeros({out, rank}, DType::f32);
    lora_backward(dx, da, db, to_tensor(dy, {n, out}, act), tx, xa, ta, tb, cfg);
    return Run{to_vec(y), to_vec(xa), to_vec(dx), to_vec(da), to_vec(db)};
  };
  for (float p : {0.0f, 0.5f}) {
    SCOPED_TRACE(p);
    LoraConfig cfg;
    cfg.scale = 2.0f;
    cfg.dropout = p;
    cfg.seed = 99;
    const Run f = run(DType::f32, a, cfg), h = run(DType::bf16, a, cfg);
    EXPECT_EQ(h.xa, f.xa);
    EXPECT_EQ(h.dx, f.dx);
    EXPECT_EQ(h.da, f.da);
    EXPECT_EQ(h.db, f.db);
    EXPECT_EQ(h.y, rounded(f.y, DType::bf16));
    for (const Vec* v : {&f.xa, &f.dx, &f.da, &f.db})
      EXPECT_GT(*std::max_element(v->begin(), v->end()), 1.0);  // not all zero
  }
  // A = ±(1 + 2^-10) is ±1 in bf16: the bf16 path sees the integer A, the f32 path does not.
  Vec fine = a;
  for (double& v : fine) v *= 1.0 + 1.0 / 1024;
  const LoraConfig plain;
  EXPECT_EQ(run(DType::bf16, fine, plain).xa, run(DType::f32, a, plain).xa);
  EXPECT_NE(run(DType::f32, fine, plain).xa, run(DType::f32, a, plain).xa);
}

// The dropout mask is a pure function of (seed, element index): value i of a row starting at index
// `first` is dropped when the high 32 bits of f(seed ^ f(first + i)) are below p · (2^32 - 1), f
// being splitmix64's finaliser (written out here). The vectorised and scalar paths give the same
// bits (masks must not depend on the CPU a run resumes on), in place and accumulating.
TEST(Lora, DropoutMaskIsTheDocumentedHashOnEveryPath) {
  auto f = [](uint64_t z) {
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  const float p = 0.1f, keep_scale = 1.0f / (1.0f - p);
  const auto threshold = static_cast<uint32_t>(static_cast<double>(p) * 4294967295.0);
  for (int64_t n : {1, 7, 16, 37, 1000}) {
    for (uint64_t first : {uint64_t{0}, uint64_t{123456789012}}) {
      const uint64_t seed = 0x5eed0000 + static_cast<uint64_t>(n);
      const Vec x = reference::random_vec(static_cast<size_t>(n), 40 + static_cast<uint64_t>(n));
      std::vector<float> src(x.begin(), x.end()), want(static_cast<size_t>(n)), base(want);
      int64_t dropped = 0;
      for (int64_t i = 0; i < n; ++i) {
        const bool drop =
            static_cast<uint32_t>(f(seed ^ f(first + static_cast<uint64_t>(i))) >> 32) < threshold;
        dropped += drop;
        base[static_cast<size_t>(i)] = static_cast<float>(i);
        want[static_cast<size_t>(i)] = drop ? 0.0f : src[static_cast<size_t>(i)] * keep_scale;
      }
      if (n == 1000) {  // ~10% dropped
        EXPECT_GT(dropped, 60);
        EXPECT_LT(dropped, 140);
      }
      for (bool vector : {false, true}) {
        std::vector<float> out(static_cast<size_t>(n), -1.0f);
        detail::dropout_row(src.data(), out.data(), n, seed, first, threshold, keep_scale, false,
                            vector);
        EXPECT_EQ(out, want) << "n " << n << " vector " << vector;
        std::vector<float> in_place = src;
        detail::dropout_row(in_place.data(), in_place.data(), n, seed, first, threshold, keep_scale,
                            false, vector);
        EXPECT_EQ(in_place, want);
        std::vector<float> acc = base;
        detail::dropout_row(src.data(), acc.data(), n, seed, first, threshold, keep_scale, true,
                            vector);
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(acc[static_cast<size_t>(i)],
                    base[static_cast<size_t>(i)] + want[static_cast<size_t>(i)])
              << i;
        }
      }
    }
  }
}

TEST(AdamW, MatchesTheReferenceUpdateForF32AndBf16MasterWeights) {
  const int64_t n = 5000;
  const Vec p0 = reference::random_vec(static_cast<size_t>(n), 20);
  AdamWConfig cfg;
  cfg.lr = 1e-2f;
  cfg.beta1 = 0.9f;
  cfg.beta2 = 0.95f;
  cfg.eps = 1e-8f;
  cfg.weight_decay = 0.1f;
  Vec p = p0, m(static_cast<size_t>(n), 0.0), v(static_cast<size_t>(n), 0.0);
  Tensor tp = to_tensor(p0, {n}), tm = Tensor::zeros({n}, DType::f32),
         tv = Tensor::zeros({n}, DType::f32);
  Tensor bp = to_tensor(p0, {n}, DType::bf16), master = to_tensor(p0, {n}),
         bm = Tensor::zeros({n}, DType::f32), bv = Tensor::zeros({n}, DType::f32);
  for (int64_t step = 1; step <= 3; ++step) {
    const Vec g = reference::random_vec(static_cast<size_t>(n), 30 + static_cast<uint64_t>(step));
    const double gs = 0.5;  // grad_scale (e.g. a clipping coefficient)
    for (int64_t i = 0; i < n; ++i) {
      const double gi = g[i] * gs;
      m[i] = 0.9 * m[i] + 0.1 * gi;
      v[i] = 0.95 * v[i] + 0.05 * gi * gi;
      const double mh = m[i] / (1 - std::pow(0.9, step)), vh = v[i] / (1 - std::pow(0.95, step));
      p[i] = p[i] - 1e-2 * 0.1 * p[i] - 1e-2 * mh / (std::sqrt(vh) + 1e-8);
    }
    adamw_step(tp, Tensor(), to_tensor(g, {n}), tm, tv, cfg, step, 0.5f);
    adamw_step(bp, master, to_tensor(g, {n}, DType::bf16), bm, bv, cfg, step, 0.5f);
  }
  EXPECT_LT(rel_error(to_vec(tp), p), 1e-6);
  EXPECT_LT(rel_error(to_vec(tm), m), 1e-6);
  EXPECT_LT(rel_error(to_vec(tv), v), 1e-5);
  // bf16 param: the f32 master tracks the update (gradients were bf16-rounded), the param is its
  // rounding.
  EXPECT_LT(rel_error(to_vec(master), p), 1e-2);
  EXPECT_EQ(to_vec(bp), rounded(to_vec(master), DType::bf16));
  EXPECT_THROW(adamw_step(bp, Tensor(), to_tensor(p0, {n}), bm, bv, cfg, 1),
               Error);  // bf16 needs a master
  EXPECT_THROW(adamw_step(tp, Tensor(), to_tensor(p0, {n}), tm, tv, cfg, 0),
               Error);  // steps are 1-based
}

}  // namespace
}  // namespace seqit::tensor
