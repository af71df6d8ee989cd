// Embedding, RMSNorm, SwiGLU, residual adds, RoPE, gradient norms: forward and backward against
// fp64 references, references against central finite differences.
#include <gtest/gtest.h>

#include <cmath>

#include "reference.h"
#include "tensor/ops.h"

namespace seqit::tensor {
namespace {

using reference::rel_error;
using reference::rounded;
using reference::to_tensor;
using reference::to_vec;
using reference::Vec;

constexpr double kF32Tol = 2e-6;

Vec minus(Vec a, const Vec& b) {
  for (size_t i = 0; i < a.size(); ++i) a[i] -= b[i];
  return a;
}

TEST(Embedding, GatherAndScatterAddWithRepeatedIds) {
  const int64_t vocab = 11, c = 13;
  const Vec table = reference::random_vec(static_cast<size_t>(vocab * c), 1);
  const std::vector<int32_t> ids{3, 0, 10, 3, 3, 7};
  const int64_t n = static_cast<int64_t>(ids.size());
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor out = Tensor::empty({2, 3, c}, DType::f32);  // ids [6] fill [2, 3, c]
    embedding_forward(out, Tensor::from_ints(ids, {2, 3}), to_tensor(table, {vocab, c}, dt));
    const Vec tr = rounded(table, dt);
    Vec want;
    for (int32_t id : ids) want.insert(want.end(), tr.begin() + id * c, tr.begin() + (id + 1) * c);
    EXPECT_EQ(to_vec(out), want) << dtype_name(dt);
  }
  const Vec dout = reference::random_vec(static_cast<size_t>(n * c), 2);
  const Vec d0 = reference::random_vec(static_cast<size_t>(vocab * c), 3);
  Vec want = d0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < c; ++i) want[ids[static_cast<size_t>(r)] * c + i] += dout[r * c + i];
  Tensor dtable = to_tensor(d0, {vocab, c});
  embedding_backward(dtable, to_tensor(dout, {n, c}), Tensor::from_ints(ids, {n}));
  EXPECT_LT(rel_error(to_vec(dtable), want), kF32Tol);
  try {
    embedding_forward(Tensor::empty({1, c}, DType::f32),
                      Tensor::from_ints(std::vector<int32_t>{11}, {1}),
                      to_tensor(table, {vocab, c}));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ids[0] = 11"), std::string::npos) << e.what();
  }
}

TEST(RmsNorm, ForwardBackwardMatchReferenceAndFiniteDifferences) {
  const int64_t n = 7, c = 45;
  const double eps = 1e-5;
  const Vec x = reference::random_vec(static_cast<size_t>(n * c), 10);
  const Vec w = reference::random_vec(static_cast<size_t>(c), 11);
  const Vec dy = reference::random_vec(static_cast<size_t>(n * c), 12);
  Vec dx, dw;
  reference::rmsnorm_backward(dy, x, w, n, c, eps, dx, dw);
  reference::expect_fd_matches(
      [&](const Vec& v) { return reference::dot(dy, reference::rmsnorm(v, w, n, c, eps)); }, x, dx,
      "dx");
  reference::expect_fd_matches(
      [&](const Vec& v) { return reference::dot(dy, reference::rmsnorm(x, v, n, c, eps)); }, w, dw,
      "dweight");
  Tensor out = Tensor::empty({n, c}, DType::f32), rstd = Tensor::empty({n}, DType::f32);
  const Tensor xt = to_tensor(x, {n, c}), wt = to_tensor(w, {c});
  rmsnorm_forward(out, rstd, xt, wt, static_cast<float>(eps));
  EXPECT_LT(rel_error(to_vec(out), reference::rmsnorm(x, w, n, c, eps)), kF32Tol);
  const Vec dx0 = reference::random_vec(dx.size(), 13), dw0 = reference::random_vec(dw.size(), 14);
  Tensor tdx = to_tensor(dx0, {n, c}), tdw = to_tensor(dw0, {c});
  rmsnorm_backward(tdx, tdw, to_tensor(dy, {n, c}), xt, wt, rstd);
  EXPECT_LT(rel_error(minus(to_vec(tdx), dx0), dx), 1e-5);
  EXPECT_LT(rel_error(minus(to_vec(tdw), dw0), dw), 1e-5);
  // bf16 in, bf16 out (in place): one rounding of the output.
  Tensor xb = to_tensor(x, {n, c}, DType::bf16);
  rmsnorm_forward(xb, Tensor(), xb, wt, static_cast<float>(eps));
  EXPECT_LT(rel_error(to_vec(xb), reference::rmsnorm(rounded(x, DType::bf16), w, n, c, eps)), 4e-3);
}

TEST(SwiGlu, ForwardBackwardOnColumnBlocksOfAFusedProjection) {
  const int64_t n = 9, f = 37;
  const Vec gu = reference::random_vec(static_cast<size_t>(n * 2 * f), 20, 2.0);
  Vec g, u;
  for (int64_t r = 0; r < n; ++r) {
    g.insert(g.end(), gu.begin() + r * 2 * f, gu.begin() + r * 2 * f + f);
    u.insert(u.end(), gu.begin() + r * 2 * f + f, gu.begin() + (r + 1) * 2 * f);
  }
  const Vec dy = reference::random_vec(static_cast<size_t>(n * f), 21);
  Vec dg, du;
  reference::swiglu_backward(dy, g, u, dg, du);
  reference::expect_fd_matches(
      [&](const Vec& v) { return reference::dot(dy, reference::swiglu(v, u)); }, g, dg, "dgate");
  reference::expect_fd_matches(
      [&](const Vec& v) { return reference::dot(dy, reference::swiglu(g, v)); }, u, du, "dup");
  Tensor fused = to_tensor(gu, {n, 2 * f});
  const Tensor gate = fused.narrow(1, 0, f), up = fused.narrow(1, f, f);
  Tensor out = Tensor::empty({n, f}, DType::f32);
  swiglu_forward(out, gate, up);
  EXPECT_LT(rel_error(to_vec(out), reference::swiglu(g, u)), kF32Tol);
  Tensor dfused = Tensor::zeros({n, 2 * f}, DType::f32);
  swiglu_backward(dfused.narrow(1, 0, f), dfused.narrow(1, f, f), to_tensor(dy, {n, f}), gate, up);
  const Vec d = to_vec(dfused);
  Vec got_g, got_u;
  for (int64_t r = 0; r < n; ++r) {
    got_g.insert(got_g.end(), d.begin() + r * 2 * f, d.begin() + r * 2 * f + f);
    got_u.insert(got_u.end(), d.begin() + r * 2 * f + f, d.begin() + (r + 1) * 2 * f);
  }
  EXPECT_LT(rel_error(got_g, dg), 1e-5);
  EXPECT_LT(rel_error(got_u, du), 1e-5);
  // In place (the trainer's backward): the gradients overwrite gate|up, written, not accumulated,
  // with the same bits as into zeroed buffers; f32 and bf16.
  for (DType dtype : {DType::f32, DType::bf16}) {
    Tensor inputs = to_tensor(gu, {n, 2 * f}, dtype), grads = Tensor::zeros({n, 2 * f}, dtype);
    swiglu_backward(grads.narrow(1, 0, f), grads.narrow(1, f, f), to_tensor(dy, {n, f}),
                    inputs.narrow(1, 0, f), inputs.narrow(1, f, f));
    swiglu_backward(inputs.narrow(1, 0, f), inputs.narrow(1, f, f), to_tensor(dy, {n, f}),
                    inputs.narrow(1, 0, f), inputs.narrow(1, f, f));
    EXPECT_EQ(to_vec(inputs), to_vec(grads)) << dtype_name(dtype);
  }
  // Overwriting only one of the two would corrupt the other's input: refused.
  EXPECT_THROW(swiglu_backward(fused.narrow(1, 0, f), dfused.narrow(1, f, f), to_tensor(dy, {n, f}),
                               gate, up),
               Error);
  // Extreme gates do not overflow: silu(-100) ~ 0, silu(100) = 100.
  Tensor big = Tensor::from_floats(std::vector<float>{-100.0f, 100.0f, -1000.0f}, {1, 3});
  Tensor ones = Tensor::full({1, 3}, 1.0, DType::f32), res = Tensor::empty({1, 3}, DType::f32);
  swiglu_forward(res, big, ones);
  EXPECT_NEAR(res.get({0, 0}), 0.0, 1e-30);
  EXPECT_FLOAT_EQ(static_cast<float>(res.get({0, 1})), 100.0f);
  EXPECT_EQ(res.get({0, 2}), 0.0);
}

TEST(Residual, AddAddInplaceScale) {
  const Vec a = reference::random_vec(100, 30), b = reference::random_vec(100, 31);
  Tensor ta = to_tensor(a, {10, 10}), tb = to_tensor(b, {10, 10});
  Tensor out = Tensor::empty({10, 10}, DType::bf16);
  add(out, ta, tb);
  Vec want(100);
  for (size_t i = 0; i < 100; ++i) want[i] = a[i] + b[i];
  EXPECT_LT(rel_error(to_vec(out), want), 4e-3);
  add(ta, ta, tb);  // in place
  EXPECT_LT(rel_error(to_vec(ta), want), kF32Tol);
  add_inplace(ta, tb, -2.0f);
  for (size_t i = 0; i < 100; ++i) want[i] -= 2 * b[i];
  EXPECT_LT(rel_error(to_vec(ta), want), kF32Tol);
  scale_inplace(ta, 0.25f);
  for (double& v : want) v *= 0.25;
  EXPECT_LT(rel_error(to_vec(ta), want), kF32Tol);
  EXPECT_THROW(add(out, ta, Tensor::zeros({10, 9}, DType::f32)), Error);
}

TEST(Rope, InverseFrequenciesFollowThePublishedFormulas) {
  RopeConfig cfg;
  cfg.head_dim = 64;
  cfg.theta = 500000.0;
  std::vector<double> plain = rope_inverse_frequencies(cfg);
  ASSERT_EQ(plain.size(), 32u);
  EXPECT_DOUBLE_EQ(plain[0], 1.0);
  EXPECT_NEAR(plain[5], std::pow(500000.0, -10.0 / 64.0), 1e-15);
  // Llama 3.1 scaling (factor 8, low 1, high 4, original 8192): wavelengths shorter than 2048 keep
  // their frequency, longer than 8192 are divided by 8, between blend smoothly.
  cfg.llama3_factor = 8.0;
  cfg.llama3_low_freq_factor = 1.0;
  cfg.llama3_high_freq_factor = 4.0;
  cfg.llama3_original_max_position = 8192;
  const std::vector<double> scaled = rope_inverse_frequencies(cfg);
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 2048) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i]) << i;
    } else if (wavelen > 8192) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 8) << i;
    } else {
      const double smooth = (8192 / wavelen - 1) / 3;
      EXPECT_NEAR(scaled[i], (1 - smooth) * plain[i] / 8 + smooth * plain[i], 1e-15) << i;
      EXPECT_LT(scaled[i], plain[i]);
      EXPECT_GT(scaled[i], plain[i] / 8);
    }
  }
  RopeConfig bad;
  bad.head_dim = 7;
  EXPECT_THROW(rope_inverse_frequencies(bad), Error);
}

TEST(Rope, BothLayoutsPerTokenPositionsStridedAndInverse) {
  const int64_t tokens = 6, heads = 3, d = 16;
  const std::vector<int32_t> pos{0, 1, 2, 0, 1, 4000};  // packed: the second sequence restarts at 0
  for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved}) {
    for (int64_t rotary : {int64_t{0}, int64_t{8}}) {
      RopeConfig cfg;
      cfg.head_dim = d;
      cfg.rotary_dim = rotary;
      cfg.layout = layout;
      const Vec x = reference::random_vec(static_cast<size_t>(tokens * heads * d), 40);
      const Vec want = reference::rope(x, pos, heads, d, cfg);
      // x lives inside a fused buffer [tokens, (heads + 2) * d]: a strided view.
      Tensor fused = Tensor::zeros({tokens, (heads + 2) * d}, DType::f32);
      Tensor view = fused.narrow(1, d, heads * d).view({tokens, heads, d});
      view.copy_from(to_tensor(x, {tokens, heads, d}));
      const Tensor positions = Tensor::from_ints(pos, {tokens});
      rope_forward(view, view, positions, cfg);  // in place
      EXPECT_LT(rel_error(to_vec(view.contiguous()), want), kF32Tol)
          << static_cast<int>(layout) << " " << rotary;
      // backward = inverse rotation; a rotation's adjoint is its inverse, so rope_backward(rope(x))
      // = x.
      const Vec dy = reference::random_vec(x.size(), 41);
      const Vec dx = reference::rope(dy, pos, heads, d, cfg, true);
      reference::expect_fd_matches(
          [&](const Vec& v) { return reference::dot(dy, reference::rope(v, pos, heads, d, cfg)); },
          x, dx, "rope dx");
      Tensor g = to_tensor(dy, {2, 3, heads, d});  // [B, T, H, D] with positions [B, T]
      Tensor gout = Tensor::empty({2, 3, heads, d}, DType::f32);
      rope_backward(gout, g, Tensor::from_ints(pos, {2, 3}), cfg);
      EXPECT_LT(rel_error(to_vec(gout), dx), kF32Tol);
      // Untouched columns of the fused buffer stay zero.
      EXPECT_EQ(fused.get({5, 0}), 0.0);
      EXPECT_EQ(fused.get({5, (heads + 1) * d}), 0.0);
    }
  }
  RopeConfig cfg;
  cfg.head_dim = d;
  Tensor x = Tensor::zeros({tokens, heads, d}, DType::f32);
  EXPECT_THROW(rope_forward(x, x, Tensor::from_ints(std::vector<int32_t>{0, 1}, {2}), cfg), Error);
}

// A batch of rows that each count from 0 takes cos/sin from a table of its positions: the same bits
// as computing them token by token (a single token, positions far apart), and the reference's
// values.
TEST(Rope, RepeatedPositionsShareOneTableWithTheSameValues) {
  const int64_t rows = 4, tokens = 7, heads = 2, d = 8;
  RopeConfig cfg;
  cfg.head_dim = d;
  std::vector<int32_t> pos;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t t = 0; t < tokens; ++t) pos.push_back(static_cast<int32_t>(t + (r == 3 ? 2 : 0)));
  const Vec x = reference::random_vec(static_cast<size_t>(rows * tokens * heads * d), 42);
  for (bool inverse : {false, true}) {
    Tensor out = Tensor::empty({rows, tokens, heads, d}, DType::f32);
    const Tensor in = to_tensor(x, {rows, tokens, heads, d});
    const Tensor positions = Tensor::from_ints(pos, {rows, tokens});
    inverse ? rope_backward(out, in, positions, cfg) : rope_forward(out, in, positions, cfg);
    EXPECT_LT(rel_error(to_vec(out), reference::rope(x, pos, heads, d, cfg, inverse)), kF32Tol);
    const Tensor flat = in.view({rows * tokens, heads, d});
    for (int64_t i = 0; i < rows * tokens; ++i) {
      Tensor one = Tensor::empty({1, heads, d}, DType::f32);
      const Tensor p = Tensor::from_ints(std::vector<int32_t>{pos[static_cast<size_t>(i)]}, {1});
      const Tensor xi = flat.narrow(0, i, 1).contiguous();
      inverse ? rope_backward(one, xi, p, cfg) : rope_forward(one, xi, p, cfg);
      const Vec got = to_vec(out.view({rows * tokens, heads, d}).narrow(0, i, 1).contiguous());
      ASSERT_EQ(got, to_vec(one)) << "token " << i << (inverse ? " (inverse)" : "");
    }
  }
}

TEST(GradNorm, GlobalNormAndClipping) {
  const Vec a = reference::random_vec(1000, 50), b = reference::random_vec(70001, 51);
  Tensor ta = to_tensor(a, {1000}), tb = to_tensor(b, {70001}, DType::bf16);
  double want = 0;
  for (double v : a) want += v * v;
  for (double v : rounded(b, DType::bf16)) want += v * v;
  want = std::sqrt(want);
  const std::vector<Tensor> grads{ta, tb, Tensor()};
  EXPECT_NEAR(global_grad_norm(grads), want, 1e-6 * want);
  EXPECT_NEAR(clip_grad_norm(grads, 1e9), want, 1e-6 * want);  // below the limit: unchanged
  EXPECT_NEAR(global_grad_norm(grads), want, 1e-6 * want);
  EXPECT_NEAR(clip_grad_norm(grads, 2.0), want, 1e-6 * want);
  EXPECT_NEAR(global_grad_norm(grads), 2.0, 2e-3);  // bf16 storage rounds the scaled values
  EXPECT_NEAR(ta.get({7}), a[7] * 2.0 / (want + 1e-6), 1e-6);
}

}  // namespace
}  // namespace seqit::tensor
