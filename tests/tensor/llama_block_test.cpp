// A whole Llama decoder block composed from the ops, llm.c style (forward then the backward written
// out layer by layer), against the same block composed from the fp64 references: the output and
// every gradient (input, all seven weight matrices, both norm weights) agree to 1e-5 relative in
// f32.
#include <gtest/gtest.h>

#include <cmath>

#include "reference.h"
#include "tensor/ops.h"

namespace seqit::tensor {
namespace {

using reference::rel_error;
using reference::to_tensor;
using reference::to_vec;
using reference::Vec;

struct Dims {
  int64_t b = 2, t = 70, c = 64, hq = 4, hkv = 2, d = 16, f = 96;
  double eps = 1e-5;
};

struct Weights {
  Vec norm1, wq, wk, wv, wo, norm2, wg, wu, wd;
};

Weights random_weights(const Dims& s) {
  Weights w;
  w.norm1 = reference::random_vec(static_cast<size_t>(s.c), 1, 0.2);
  for (double& x : w.norm1) x += 1.0;
  w.norm2 = reference::random_vec(static_cast<size_t>(s.c), 2, 0.2);
  for (double& x : w.norm2) x += 1.0;
  const double init = 1.0 / std::sqrt(static_cast<double>(s.c));
  w.wq = reference::random_vec(static_cast<size_t>(s.hq * s.d * s.c), 3, init);
  w.wk = reference::random_vec(static_cast<size_t>(s.hkv * s.d * s.c), 4, init);
  w.wv = reference::random_vec(static_cast<size_t>(s.hkv * s.d * s.c), 5, init);
  w.wo = reference::random_vec(static_cast<size_t>(s.c * s.hq * s.d), 6, init);
  w.wg = reference::random_vec(static_cast<size_t>(s.f * s.c), 7, init);
  w.wu = reference::random_vec(static_cast<size_t>(s.f * s.c), 8, init);
  w.wd = reference::random_vec(static_cast<size_t>(s.c * s.f), 9,
                               1.0 / std::sqrt(static_cast<double>(s.f)));
  return w;
}

RopeConfig rope_config(const Dims& s) {
  RopeConfig cfg;
  cfg.head_dim = s.d;
  cfg.theta = 10000.0;
  cfg.layout = RopeLayout::half;
  return cfg;
}

std::vector<int32_t> positions(const Dims& s) {
  std::vector<int32_t> p;
  for (int64_t b = 0; b < s.b; ++b)
    for (int64_t t = 0; t < s.t; ++t) p.push_back(static_cast<int32_t>(t));
  return p;
}

// ---- fp64 reference block -----------------------------------------------------------------------

struct RefActivations {
  Vec h1, q, k, v, a, x2, h2, g, u, sw, y;
};

RefActivations ref_forward(const Vec& x, const Weights& w, const Dims& s) {
  const int64_t n = s.b * s.t;
  const std::vector<int32_t> pos = positions(s);
  const RopeConfig cfg = rope_config(s);
  RefActivations r;
  r.h1 = reference::rmsnorm(x, w.norm1, n, s.c, s.eps);
  r.q = reference::rope(reference::linear(r.h1, w.wq, nullptr, n, s.c, s.hq * s.d), pos, s.hq, s.d,
                        cfg);
  r.k = reference::rope(reference::linear(r.h1, w.wk, nullptr, n, s.c, s.hkv * s.d), pos, s.hkv,
                        s.d, cfg);
  r.v = reference::linear(r.h1, w.wv, nullptr, n, s.c, s.hkv * s.d);
  r.a = reference::attention(r.q, r.k, r.v, {s.b, s.t, s.hq, s.hkv, s.d}, nullptr,
                             1 / std::sqrt(double(s.d)));
  const Vec o = reference::linear(r.a, w.wo, nullptr, n, s.hq * s.d, s.c);
  r.x2 = x;
  for (size_t i = 0; i < o.size(); ++i) r.x2[i] += o[i];
  r.h2 = reference::rmsnorm(r.x2, w.norm2, n, s.c, s.eps);
  r.g = reference::linear(r.h2, w.wg, nullptr, n, s.c, s.f);
  r.u = reference::linear(r.h2, w.wu, nullptr, n, s.c, s.f);
  r.sw = reference::swiglu(r.g, r.u);
  const Vec m = reference::linear(r.sw, w.wd, nullptr, n, s.f, s.c);
  r.y = r.x2;
  for (size_t i = 0; i < m.size(); ++i) r.y[i] += m[i];
  return r;
}

void add_to(Vec& acc, const Vec& x) {
  for (size_t i = 0; i < acc.size(); ++i) acc[i] += x[i];
}

Weights ref_backward(const Vec& dy, const Vec& x, const Weights& w, const Dims& s, Vec& dx) {
  const int64_t n = s.b * s.t;
  const RefActivations r = ref_forward(x, w, s);
  const std::vector<int32_t> pos = positions(s);
  const RopeConfig cfg = rope_config(s);
  Weights g;
  Vec db, dsw, dgate, dup, dh2, dh2b, dx2, dn, da, dq, dk, dv, dh1, tmp;
  reference::linear_backward(dy, r.sw, w.wd, n, s.f, s.c, dsw, g.wd, db);
  reference::swiglu_backward(dsw, r.g, r.u, dgate, dup);
  reference::linear_backward(dgate, r.h2, w.wg, n, s.c, s.f, dh2, g.wg, db);
  reference::linear_backward(dup, r.h2, w.wu, n, s.c, s.f, dh2b, g.wu, db);
  add_to(dh2, dh2b);
  reference::rmsnorm_backward(dh2, r.x2, w.norm2, n, s.c, s.eps, dx2, g.norm2);
  add_to(dx2, dy);  // residual
  reference::linear_backward(dx2, r.a, w.wo, n, s.hq * s.d, s.c, da, g.wo, db);
  reference::attention_backward(da, r.q, r.k, r.v, {s.b, s.t, s.hq, s.hkv, s.d}, nullptr,
                                1 / std::sqrt(double(s.d)), dq, dk, dv);
  dq = reference::rope(dq, pos, s.hq, s.d, cfg, true);
  dk = reference::rope(dk, pos, s.hkv, s.d, cfg, true);
  reference::linear_backward(dq, r.h1, w.wq, n, s.c, s.hq * s.d, dh1, g.wq, db);
  reference::linear_backward(dk, r.h1, w.wk, n, s.c, s.hkv * s.d, tmp, g.wk, db);
  add_to(dh1, tmp);
  reference::linear_backward(dv, r.h1, w.wv, n, s.c, s.hkv * s.d, tmp, g.wv, db);
  add_to(dh1, tmp);
  reference::rmsnorm_backward(dh1, x, w.norm1, n, s.c, s.eps, dx, g.norm1);
  add_to(dx, dx2);  // residual
  return g;
}

// ---- the block from the ops (what model/ will write)
// ---------------------------------------------

struct BlockParams {
  Tensor norm1, wq, wk, wv, wo, norm2, wg, wu, wd;
};

TEST(LlamaBlock, ForwardAndAllGradientsMatchFp64Reference) {
  const Dims s;
  const int64_t n = s.b * s.t, qd = s.hq * s.d, kvd = s.hkv * s.d;
  const float eps = static_cast<float>(s.eps);
  const Weights w = random_weights(s);
  const Vec xv = reference::random_vec(static_cast<size_t>(n * s.c), 10);
  const Vec dyv = reference::random_vec(static_cast<size_t>(n * s.c), 11);
  const RopeConfig cfg = rope_config(s);
  const Tensor pos = Tensor::from_ints(positions(s), {s.b, s.t});

  BlockParams p{
      to_tensor(w.norm1, {s.c}),   to_tensor(w.wq, {qd, s.c}),  to_tensor(w.wk, {kvd, s.c}),
      to_tensor(w.wv, {kvd, s.c}), to_tensor(w.wo, {s.c, qd}),  to_tensor(w.norm2, {s.c}),
      to_tensor(w.wg, {s.f, s.c}), to_tensor(w.wu, {s.f, s.c}), to_tensor(w.wd, {s.c, s.f})};
  auto f32 = [](Shape shape) { return Tensor::zeros(shape, DType::f32); };

  // forward. x, y: [B, T, C]
  const Tensor x = to_tensor(xv, {s.b, s.t, s.c});
  Tensor h1 = f32({s.b, s.t, s.c}), rstd1 = f32({n});
  rmsnorm_forward(h1, rstd1, x, p.norm1, eps);
  Tensor q = f32({s.b, s.t, s.hq, s.d}), k = f32({s.b, s.t, s.hkv, s.d}),
         v = f32({s.b, s.t, s.hkv, s.d});
  linear_forward(q.view({s.b, s.t, qd}), h1, p.wq);
  linear_forward(k.view({s.b, s.t, kvd}), h1, p.wk);
  linear_forward(v.view({s.b, s.t, kvd}), h1, p.wv);
  rope_forward(q, q, pos, cfg);
  rope_forward(k, k, pos, cfg);
  Tensor a = f32({s.b, s.t, s.hq, s.d}), lse = f32({s.b, s.hq, s.t});
  attention_forward(a, lse, q, k, v);
  Tensor x2 = f32({s.b, s.t, s.c});
  linear_forward(x2, a.view({s.b, s.t, qd}), p.wo);
  add(x2, x2, x);  // x2 = x + attn
  Tensor h2 = f32({s.b, s.t, s.c}), rstd2 = f32({n});
  rmsnorm_forward(h2, rstd2, x2, p.norm2, eps);
  Tensor gate = f32({s.b, s.t, s.f}), up = f32({s.b, s.t, s.f}), sw = f32({s.b, s.t, s.f});
  linear_forward(gate, h2, p.wg);
  linear_forward(up, h2, p.wu);
  swiglu_forward(sw, gate, up);
  Tensor y = f32({s.b, s.t, s.c});
  linear_forward(y, sw, p.wd);
  add(y, y, x2);  // y = x2 + mlp

  // backward (every gradient buffer starts at zero; ops accumulate).
  const Tensor dy = to_tensor(dyv, {s.b, s.t, s.c});
  BlockParams g{f32({s.c}), f32({qd, s.c}),  f32({kvd, s.c}), f32({kvd, s.c}), f32({s.c, qd}),
                f32({s.c}), f32({s.f, s.c}), f32({s.f, s.c}), f32({s.c, s.f})};
  Tensor dsw = f32({s.b, s.t, s.f}), dgate = f32({s.b, s.t, s.f}), dup = f32({s.b, s.t, s.f});
  linear_backward(dsw, g.wd, Tensor(), dy, sw, p.wd);
  swiglu_backward(dgate, dup, dsw, gate, up);
  Tensor dh2 = f32({s.b, s.t, s.c});
  linear_backward(dh2, g.wg, Tensor(), dgate, h2, p.wg);
  linear_backward(dh2, g.wu, Tensor(), dup, h2, p.wu);
  Tensor dx2 = f32({s.b, s.t, s.c});
  rmsnorm_backward(dx2, g.norm2, dh2, x2, p.norm2, rstd2);
  add_inplace(dx2, dy);  // residual
  Tensor da = f32({s.b, s.t, s.hq, s.d});
  linear_backward(da.view({s.b, s.t, qd}), g.wo, Tensor(), dx2, a.view({s.b, s.t, qd}), p.wo);
  Tensor dq = f32(q.shape()), dk = f32(k.shape()), dv = f32(v.shape());
  attention_backward(dq, dk, dv, da, q, k, v, a, lse);
  rope_backward(dq, dq, pos, cfg);
  rope_backward(dk, dk, pos, cfg);
  Tensor dh1 = f32({s.b, s.t, s.c});
  linear_backward(dh1, g.wq, Tensor(), dq.view({s.b, s.t, qd}), h1, p.wq);
  linear_backward(dh1, g.wk, Tensor(), dk.view({s.b, s.t, kvd}), h1, p.wk);
  linear_backward(dh1, g.wv, Tensor(), dv.view({s.b, s.t, kvd}), h1, p.wv);
  Tensor dx = f32({s.b, s.t, s.c});
  rmsnorm_backward(dx, g.norm1, dh1, x, p.norm1, rstd1);
  add_inplace(dx, dx2);  // residual

  // compare
  const RefActivations r = ref_forward(xv, w, s);
  Vec dx_ref;
  const Weights gr = ref_backward(dyv, xv, w, s, dx_ref);
  constexpr double kTol = 1e-5;
  EXPECT_LT(rel_error(to_vec(y), r.y), kTol) << "y";
  EXPECT_LT(rel_error(to_vec(dx), dx_ref), kTol) << "dx";
  EXPECT_LT(rel_error(to_vec(g.norm1), gr.norm1), kTol) << "d attn_norm";
  EXPECT_LT(rel_error(to_vec(g.wq), gr.wq), kTol) << "d wq";
  EXPECT_LT(rel_error(to_vec(g.wk), gr.wk), kTol) << "d wk";
  EXPECT_LT(rel_error(to_vec(g.wv), gr.wv), kTol) << "d wv";
  EXPECT_LT(rel_error(to_vec(g.wo), gr.wo), kTol) << "d wo";
  EXPECT_LT(rel_error(to_vec(g.norm2), gr.norm2), kTol) << "d mlp_norm";
  EXPECT_LT(rel_error(to_vec(g.wg), gr.wg), kTol) << "d w_gate";
  EXPECT_LT(rel_error(to_vec(g.wu), gr.wu), kTol) << "d w_up";
  EXPECT_LT(rel_error(to_vec(g.wd), gr.wd), kTol) << "d w_down";

  // The composed fp64 backward is itself checked against central differences of the composed
  // forward.
  auto loss_x = [&](const Vec& xp) { return reference::dot(dyv, ref_forward(xp, w, s).y); };
  reference::expect_fd_matches(loss_x, xv, dx_ref, "block dx", 8);
  auto loss_wq = [&](const Vec& wp) {
    Weights w2 = w;
    w2.wq = wp;
    return reference::dot(dyv, ref_forward(xv, w2, s).y);
  };
  reference::expect_fd_matches(loss_wq, w.wq, gr.wq, "block dwq", 8);
  auto loss_n1 = [&](const Vec& np) {
    Weights w2 = w;
    w2.norm1 = np;
    return reference::dot(dyv, ref_forward(xv, w2, s).y);
  };
  reference::expect_fd_matches(loss_n1, w.norm1, gr.norm1, "block dnorm1", 8);
}

}  // namespace
}  // namespace seqit::tensor
