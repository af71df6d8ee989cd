// linear / matmul / GEMV / fused output-projection cross-entropy against fp64 references.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "reference.h"
#include "tensor/cpu_gemm.h"
#include "tensor/ops.h"

namespace seqit::tensor {
namespace {

using reference::rel_error;
using reference::rounded;
using reference::to_tensor;
using reference::to_vec;
using reference::Vec;

// f32 compute over K <= ~100 terms: ~1e-7 relative; 2e-6 leaves room for oneDNN's blocking order.
constexpr double kF32Tol = 2e-6;
// A 16-bit output is rounded once: bf16 keeps 8 mantissa bits (relative step 2^-8).
constexpr double kBf16OutTol = 4e-3;

struct LinearCase {
  int64_t n, in, out;
};

class LinearForward : public ::testing::TestWithParam<LinearCase> {};

TEST_P(LinearForward, MatchesReferenceForEveryWeightDtype) {
  const auto [n, in, out] = GetParam();
  const Vec x = reference::random_vec(static_cast<size_t>(n * in), 1);
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 2, 0.2);
  const Vec b = reference::random_vec(static_cast<size_t>(out), 3);
  for (DType wd : {DType::f32, DType::bf16, DType::f16}) {
    // The reference sees exactly the weight values the 16-bit tensor holds, so the comparison is of
    // the arithmetic (f32 accumulate), not of the rounding of the inputs.
    const Vec wr = rounded(w, wd);
    const Vec want = reference::linear(x, wr, &b, n, in, out);
    Tensor y = Tensor::empty({n, out}, DType::f32);
    linear_forward(y, to_tensor(x, {n, in}), to_tensor(w, {out, in}, wd), to_tensor(b, {out}));
    EXPECT_LT(rel_error(to_vec(y), want), kF32Tol) << "weights " << dtype_name(wd);
    // bf16 activations and output (the bf16 training path).
    Tensor yb = Tensor::empty({n, out}, DType::bf16);
    linear_forward(yb, to_tensor(x, {n, in}, DType::bf16), to_tensor(w, {out, in}, wd),
                   to_tensor(b, {out}));
    const Vec want_b = reference::linear(rounded(x, DType::bf16), wr, &b, n, in, out);
    EXPECT_LT(rel_error(to_vec(yb), want_b), kBf16OutTol)
        << "bf16 activations, weights " << dtype_name(wd);
  }
}

// n <= 8 takes the GEMV path, larger n the oneDNN GEMM; widths are odd to exercise every tail.
INSTANTIATE_TEST_SUITE_P(Shapes, LinearForward,
                         ::testing::Values(LinearCase{1, 37, 29}, LinearCase{3, 64, 40},
                                           LinearCase{8, 131, 67}, LinearCase{9, 37, 29},
                                           LinearCase{40, 96, 130}, LinearCase{1, 1, 1}));

TEST(Linear, WritesIntoStridedViewsOfFusedBuffers) {
  // x is a column block of a wider buffer; y is a column block of a fused [q | kv] output.
  const int64_t n = 11, in = 24, out = 10;
  const Vec xw = reference::random_vec(static_cast<size_t>(n * 40), 4);
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 5);
  Tensor xbuf = to_tensor(xw, {n, 40});
  Tensor x = xbuf.narrow(1, 8, in);
  Tensor ybuf = Tensor::zeros({n, 3 * out}, DType::f32);
  for (int64_t rows : {n, int64_t{2}}) {
    ybuf.zero();
    linear_forward(ybuf.narrow(0, 0, rows).narrow(1, out, out), x.narrow(0, 0, rows),
                   to_tensor(w, {out, in}));
    Vec xs;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < in; ++i) xs.push_back(xw[r * 40 + 8 + i]);
    const Vec want = reference::linear(xs, w, nullptr, rows, in, out);
    const Vec all = to_vec(ybuf);
    Vec got;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t o = 0; o < 3 * out; ++o) {
        if (o >= out && o < 2 * out)
          got.push_back(all[r * 3 * out + o]);
        else
          EXPECT_EQ(all[r * 3 * out + o], 0.0) << "wrote outside the view";
      }
    EXPECT_LT(rel_error(got, want), kF32Tol) << rows << " rows";
  }
}

TEST(Linear, BackwardMatchesReferenceAndFiniteDifferences) {
  for (const LinearCase c : {LinearCase{5, 19, 23}, LinearCase{33, 40, 17}}) {
    const auto [n, in, out] = c;
    const Vec x = reference::random_vec(static_cast<size_t>(n * in), 11);
    const Vec w = reference::random_vec(static_cast<size_t>(out * in), 12, 0.3);
    const Vec b = reference::random_vec(static_cast<size_t>(out), 13);
    const Vec dy = reference::random_vec(static_cast<size_t>(n * out), 14);
    Vec dx, dw, db;
    reference::linear_backward(dy, x, w, n, in, out, dx, dw, db);
    // The reference gradient is the gradient of L = Σ dy·y: check it by central differences.
    reference::expect_fd_matches(
        [&](const Vec& xv) { return reference::dot(dy, reference::linear(xv, w, &b, n, in, out)); },
        x, dx, "dx");
    reference::expect_fd_matches(
        [&](const Vec& wv) { return reference::dot(dy, reference::linear(x, wv, &b, n, in, out)); },
        w, dw, "dw");
    reference::expect_fd_matches(
        [&](const Vec& bv) { return reference::dot(dy, reference::linear(x, w, &bv, n, in, out)); },
        b, db, "db");
    // The op accumulates into its gradient buffers: start from known values and subtract them.
    const Vec dx0 = reference::random_vec(dx.size(), 15),
              dw0 = reference::random_vec(dw.size(), 16),
              db0 = reference::random_vec(db.size(), 17);
    Tensor tdx = to_tensor(dx0, {n, in}), tdw = to_tensor(dw0, {out, in}),
           tdb = to_tensor(db0, {out});
    linear_backward(tdx, tdw, tdb, to_tensor(dy, {n, out}), to_tensor(x, {n, in}),
                    to_tensor(w, {out, in}));
    auto minus = [](Vec a, const Vec& b0) {
      for (size_t i = 0; i < a.size(); ++i) a[i] -= b0[i];
      return a;
    };
    EXPECT_LT(rel_error(minus(to_vec(tdx), dx0), dx), 1e-5) << "dx, n=" << n;
    EXPECT_LT(rel_error(minus(to_vec(tdw), dw0), dw), 1e-5) << "dw, n=" << n;
    EXPECT_LT(rel_error(minus(to_vec(tdb), db0), db), 1e-5) << "db, n=" << n;
    // bf16 weights and activations, f32 gradients: same math on the rounded inputs.
    const Vec xb = rounded(x, DType::bf16), wb = rounded(w, DType::bf16),
              dyb = rounded(dy, DType::bf16);
    Vec dxb, dwb, dbb;
    reference::linear_backward(dyb, xb, wb, n, in, out, dxb, dwb, dbb);
    Tensor gx = Tensor::zeros({n, in}, DType::f32), gw = Tensor::zeros({out, in}, DType::f32);
    linear_backward(gx, gw, Tensor(), to_tensor(dy, {n, out}, DType::bf16),
                    to_tensor(x, {n, in}, DType::bf16), to_tensor(w, {out, in}, DType::bf16));
    EXPECT_LT(rel_error(to_vec(gx), dxb), kF32Tol) << "bf16 dx";
    EXPECT_LT(rel_error(to_vec(gw), dwb), kF32Tol) << "bf16 dw";
  }
}

TEST(Linear, RejectsMismatchedShapesNamingTheArgument) {
  Tensor x = Tensor::zeros({4, 8}, DType::f32), w = Tensor::zeros({5, 7}, DType::f32);
  Tensor y = Tensor::zeros({4, 5}, DType::f32);
  try {
    linear_forward(y, x, w);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("linear_forward: x"), std::string::npos) << e.what();
  }
  EXPECT_THROW(
      linear_forward(Tensor::zeros({4, 6}, DType::f32), x, Tensor::zeros({5, 8}, DType::f32)),
      Error);
  EXPECT_THROW(
      linear_forward(y, Tensor::zeros({4, 8}, DType::i32), Tensor::zeros({5, 8}, DType::f32)),
      Error);
}

TEST(Gemv, EveryIsaOnThisCpuMatchesTheReference) {
  using detail::GemvIsa;
  for (const GemvIsa isa : detail::available_gemv_isas()) {
    for (int64_t rows = 1; rows <= detail::kGemvMaxRows; ++rows) {
      const int64_t in = 75, out = 53;  // tails in both directions
      const Vec x =
          reference::random_vec(static_cast<size_t>(rows * in), 20 + static_cast<uint64_t>(rows));
      const Vec w = reference::random_vec(static_cast<size_t>(out * in), 30);
      const Vec b = reference::random_vec(static_cast<size_t>(out), 31);
      for (DType wd : {DType::f32, DType::bf16, DType::f16}) {
        const Tensor wt = to_tensor(w, {out, in}, wd);
        const Tensor xt = to_tensor(x, {rows, in});
        std::vector<float> bf(b.begin(), b.end()), y(static_cast<size_t>(rows * out));
        detail::gemv(rows, in, out, xt.data<float>(), in, wt.raw_data(), wd, in, bf.data(),
                     y.data(), out, isa);
        const Vec want = reference::linear(x, rounded(w, wd), &b, rows, in, out);
        EXPECT_LT(rel_error(Vec(y.begin(), y.end()), want), kF32Tol)
            << detail::gemv_isa_name(isa) << " rows " << rows << " " << dtype_name(wd);
      }
    }
  }
}

TEST(Gemv, LargeMatrixUsesEveryThreadAndStaysExact) {
  // Big enough for the multithreaded split (blocks of 16 rows across threads).
  const int64_t in = 300, out = 1001;
  const Vec x = reference::random_vec(static_cast<size_t>(in), 40);
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 41);
  Tensor y = Tensor::empty({1, out}, DType::f32);
  linear_forward(y, to_tensor(x, {1, in}), to_tensor(w, {out, in}, DType::bf16));
  EXPECT_LT(
      rel_error(to_vec(y), reference::linear(x, rounded(w, DType::bf16), nullptr, 1, in, out)),
      kF32Tol);
}

// Any row range of 16-bit panels unpacks to the plain rows, bit for bit, on the AVX-512 path (two
// rows per step, 32 inputs per step; odd first and last rows, partial panels and inputs past a
// multiple of 32 by the scalar copy) and on the scalar one.
TEST(PackedWeight, RowRangesOf16BitPanelsUnpackExactly) {
  const int64_t out = 53;
  for (int64_t in : {19, 64, 100, 1024}) {
    const Vec w = reference::random_vec(static_cast<size_t>(out * in), 51);
    for (DType wd : {DType::bf16, DType::f16}) {
      const Tensor wt = to_tensor(w, {out, in}, wd);
      const PackedWeight p = pack_weight(wt);
      const auto* plain = static_cast<const uint16_t*>(wt.raw_data());
      for (auto [o0, o1] : {std::pair<int64_t, int64_t>{0, 53},
                            {1, 52},
                            {5, 6},
                            {24, 25},
                            {23, 49},
                            {7, 8},
                            {2, 4}}) {
        for (bool vector : {true, false}) {
          std::vector<uint16_t> got(static_cast<size_t>((o1 - o0) * in), 0xffff);
          detail::unpack_panels(p.panels.raw_data(), wd, in, o0, o1, got.data(), vector);
          ASSERT_EQ(std::memcmp(got.data(), plain + o0 * in, got.size() * 2), 0)
              << "in " << in << " rows " << o0 << ".." << o1 << " vector " << vector << " "
              << dtype_name(wd);
        }
      }
    }
  }
}

TEST(PackedWeight, UnpacksToTheSameBitsForEveryDtype) {
  // 53 rows: two full panels of 24 and a partial one.
  const int64_t out = 53, in = 19;
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 50);
  for (DType wd : {DType::f32, DType::bf16, DType::f16}) {
    const Tensor wt = to_tensor(w, {out, in}, wd);
    const PackedWeight p = pack_weight(wt);
    EXPECT_EQ(p.panels.size(0), 3);
    EXPECT_EQ(p.panels.dtype(), wd);
    const Tensor back = unpack_weight(p);
    ASSERT_EQ(back.nbytes(), wt.nbytes());
    EXPECT_EQ(std::memcmp(back.raw_data(), wt.raw_data(), wt.nbytes()), 0) << dtype_name(wd);
    // Element (o, i) sits at panels[o / 24, i, o % 24]; the padding rows are zero.
    const Vec panels = to_vec(p.panels.to(DType::f32));
    const Vec plain = to_vec(wt.to(DType::f32));
    EXPECT_EQ(panels[(1 * in + 5) * kPackedPanel + 30 % kPackedPanel], plain[30 * in + 5]);
    EXPECT_EQ(panels[(2 * in + in - 1) * kPackedPanel + 23], 0.0);
  }
}

// Every row count up to the packed kernel's limit and past it (the unpack + GEMM path), inputs on
// both sides of the 256-input block, partial last panels, with and without bias, both ISAs; the
// wider shapes split their panels over threads and walk 2 or 4 panels at once for 1-2 rows.
// Sets the bf16 activation mode for one scope (the process default is restored after).
class Bf16ActivationsScope {
 public:
  explicit Bf16ActivationsScope(Bf16Activations mode) { set_bf16_activations(mode); }
  ~Bf16ActivationsScope() { set_bf16_activations(Bf16Activations::kAuto); }
  Bf16ActivationsScope(const Bf16ActivationsScope&) = delete;
  Bf16ActivationsScope& operator=(const Bf16ActivationsScope&) = delete;
};

TEST(PackedWeight, LinearMatchesTheReferenceForEveryRowCountDtypeAndIsa) {
  const Bf16ActivationsScope exact(Bf16Activations::kF32);
  struct Shape {
    int64_t in, out;
  };
  for (const Shape s :
       {Shape{75, 53}, Shape{300, 24}, Shape{513, 70}, Shape{300, 250}, Shape{513, 200}}) {
    const Vec w = reference::random_vec(static_cast<size_t>(s.out * s.in), 60, 0.2);
    const Vec b = reference::random_vec(static_cast<size_t>(s.out), 61);
    for (DType wd : {DType::f32, DType::bf16, DType::f16}) {
      const PackedWeight p = pack_weight(to_tensor(w, {s.out, s.in}, wd));
      const Vec wr = rounded(w, wd);
      for (int64_t rows : {1, 2, 3, 4, 5, 7, 8, 16, 17, 31, 64, 65, 100}) {
        const Vec x = reference::random_vec(static_cast<size_t>(rows * s.in),
                                            70 + static_cast<uint64_t>(rows));
        const bool with_bias = rows % 2 == 1;
        const Vec want = reference::linear(x, wr, with_bias ? &b : nullptr, rows, s.in, s.out);
        Tensor y = Tensor::empty({rows, s.out}, DType::f32);
        linear_forward(y, to_tensor(x, {rows, s.in}), p,
                       with_bias ? to_tensor(b, {s.out}) : Tensor{});
        EXPECT_LT(rel_error(to_vec(y), want), kF32Tol)
            << "rows " << rows << " in " << s.in << " out " << s.out << " " << dtype_name(wd);
        if (rows > detail::kPackedMaxRows) continue;
        for (const detail::GemvIsa isa : detail::available_gemv_isas()) {
          const Tensor xt = to_tensor(x, {rows, s.in});
          std::vector<float> bf(b.begin(), b.end()), yk(static_cast<size_t>(rows * s.out));
          detail::packed_gemv(rows, s.in, s.out, xt.data<float>(), s.in, p.panels.raw_data(), wd,
                              with_bias ? bf.data() : nullptr, yk.data(), s.out, isa);
          EXPECT_LT(rel_error(Vec(yk.begin(), yk.end()), want), kF32Tol)
              << detail::gemv_isa_name(isa) << " rows " << rows << " " << dtype_name(wd);
        }
      }
    }
  }
}

// Packed bf16 weights under bf16 activations: x is rounded to bf16 and the products (exact in f32)
// are summed in f32, so the reference is the f64 product of the rounded operands at the f32
// tolerance. Every row count through the dot-product kernel (groups of 8 rows, 1-2 rows walking
// 4 / 2 panels), past it (the bf16 GEMM), odd input sizes (the f32 kernels on rounded x), bf16 x.
TEST(PackedWeight, Bf16ActivationsRoundTheInputsAndSumInF32) {
  const Bf16ActivationsScope fast(Bf16Activations::kBf16);
  EXPECT_EQ(bf16_activations(), Bf16Activations::kBf16);
  struct Shape {
    int64_t in, out;
  };
  for (const Shape s : {Shape{76, 53}, Shape{300, 24}, Shape{514, 70}, Shape{75, 53},
                        Shape{512, 250}, Shape{1024, 200}}) {
    const Vec w = reference::random_vec(static_cast<size_t>(s.out * s.in), 90, 0.2);
    const Vec b = reference::random_vec(static_cast<size_t>(s.out), 91);
    const PackedWeight p = pack_weight(to_tensor(w, {s.out, s.in}, DType::bf16));
    const Vec wr = rounded(w, DType::bf16);
    for (int64_t rows : {1, 2, 3, 5, 8, 9, 16, 17, 24, 31, 64, 65, 100}) {
      const Vec x =
          reference::random_vec(static_cast<size_t>(rows * s.in), 92 + static_cast<uint64_t>(rows));
      const bool with_bias = rows % 2 == 1;
      const Vec want = reference::linear(rounded(x, DType::bf16), wr, with_bias ? &b : nullptr,
                                         rows, s.in, s.out);
      for (DType xd : {DType::f32, DType::bf16}) {
        Tensor y = Tensor::empty({rows, s.out}, DType::f32);
        linear_forward(y, to_tensor(x, {rows, s.in}, xd), p,
                       with_bias ? to_tensor(b, {s.out}) : Tensor{});
        EXPECT_LT(rel_error(to_vec(y), want), kF32Tol)
            << "rows " << rows << " in " << s.in << " out " << s.out << " x " << dtype_name(xd);
      }
      // Not the f32-activation result: the rounding of x shows (about 2^-9 relative).
      Tensor y = Tensor::empty({rows, s.out}, DType::f32);
      linear_forward(y, to_tensor(x, {rows, s.in}), p);
      EXPECT_GT(rel_error(to_vec(y), reference::linear(x, wr, nullptr, rows, s.in, s.out)), 1e-4);
    }
  }
}

TEST(PackedWeight, Bf16DotProductKernelOnThisCpu) {
  if (!detail::cpu_has_avx512_bf16()) {
    GTEST_SKIP() << "this CPU has no AVX512_BF16 (the kernel cannot run here; the f32 path on "
                    "rounded activations is tested above)";
  }
  const int64_t in = 1030, out = 97;  // 4 full k-blocks of 256 and a 6-input tail; a partial panel
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 93, 0.2);
  const PackedWeight p = pack_weight(to_tensor(w, {out, in}, DType::bf16));
  const Vec b = reference::random_vec(static_cast<size_t>(out), 94);
  for (int64_t rows = 1; rows <= detail::kPackedMaxRows; ++rows) {
    const Vec x = reference::random_vec(static_cast<size_t>(rows * (in + 2)),
                                        95 + static_cast<uint64_t>(rows));
    const Tensor xt = to_tensor(x, {rows, in + 2}).narrow(1, 2, in);  // a row stride of in + 2
    Vec xs;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t i = 0; i < in; ++i) xs.push_back(x[static_cast<size_t>(r * (in + 2) + 2 + i)]);
    std::vector<float> bf(b.begin(), b.end()), y(static_cast<size_t>(rows * out));
    detail::packed_gemv_bf16(rows, in, out, xt.raw_data(), DType::f32, in + 2, p.panels.raw_data(),
                             bf.data(), y.data(), out);
    const Vec want =
        reference::linear(rounded(xs, DType::bf16), rounded(w, DType::bf16), &b, rows, in, out);
    EXPECT_LT(rel_error(Vec(y.begin(), y.end()), want), kF32Tol) << "rows " << rows;
  }
  EXPECT_THROW(
      detail::packed_gemv_bf16(1, 3, 1, nullptr, DType::f32, 3, nullptr, nullptr, nullptr, 1),
      Error);  // odd input size
}

TEST(PackedWeight, WritesStridedViewsAndBf16Outputs) {
  // x a column block of a wider buffer, y a column block of a fused output, y and x bf16.
  const int64_t rows = 6, in = 40, out = 30;
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 80);
  const Vec xw = reference::random_vec(static_cast<size_t>(rows * (in + 8)), 81);
  const PackedWeight p = pack_weight(to_tensor(w, {out, in}));
  const Tensor xbuf = to_tensor(xw, {rows, in + 8});
  Tensor ybuf = Tensor::zeros({rows, out + 10}, DType::f32);
  linear_forward(ybuf.narrow(1, 10, out), xbuf.narrow(1, 8, in), p);
  Vec x;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < in; ++i) x.push_back(xw[static_cast<size_t>(r * (in + 8) + 8 + i)]);
  const Vec want = reference::linear(x, w, nullptr, rows, in, out);
  const Vec got = to_vec(ybuf.narrow(1, 10, out).contiguous());
  EXPECT_LT(rel_error(got, want), kF32Tol);
  for (double v : to_vec(ybuf.narrow(1, 0, 10).contiguous())) EXPECT_EQ(v, 0.0);  // untouched
  Tensor yb = Tensor::empty({rows, out}, DType::bf16);
  linear_forward(yb, to_tensor(x, {rows, in}, DType::bf16), p);
  EXPECT_LT(
      rel_error(to_vec(yb), reference::linear(rounded(x, DType::bf16), w, nullptr, rows, in, out)),
      kBf16OutTol);
}

TEST(PackedWeight, RejectsMismatchedShapes) {
  const PackedWeight p = pack_weight(Tensor::zeros({30, 16}, DType::f32));
  Tensor y = Tensor::empty({2, 30}, DType::f32);
  EXPECT_THROW(linear_forward(y, Tensor::zeros({2, 15}, DType::f32), p), Error);
  EXPECT_THROW(
      linear_forward(Tensor::empty({2, 29}, DType::f32), Tensor::zeros({2, 16}, DType::f32), p),
      Error);
  EXPECT_THROW(linear_forward(y, Tensor::zeros({2, 16}, DType::f32), PackedWeight{}), Error);
  EXPECT_THROW(pack_weight(Tensor::zeros({30}, DType::f32)), Error);
}

// A weight packed once for the GEMM gives linear_forward's y and linear_backward's dx (the same
// kernels read the same blocked layout they would copy a plain weight into), for any row count —
// the layout is chosen for 512 rows, products of 16 and 1000 rows read it too — with a bias, into
// a bf16 y and accumulating into dx. It is a copy: changing w afterwards does not reach it.
TEST(GemmWeight, PackedWeightsGiveThePlainProducts) {
  const int64_t out = 200, in = 96;  // 200: not a multiple of the layout's column blocks
  const Vec w = reference::random_vec(static_cast<size_t>(out * in), 70, 0.2);
  const Vec bias = reference::random_vec(static_cast<size_t>(out), 71);
  int packed_dtypes = 0;
  for (DType dtype : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Tensor tw = to_tensor(w, {out, in}, dtype);
    const GemmWeight fwd = pack_gemm_weight(tw, GemmUse::forward);
    const GemmWeight bwd = pack_gemm_weight(tw, GemmUse::input_gradient);
    ASSERT_EQ(fwd.defined(), bwd.defined());
    if (!fwd.defined()) {
      std::printf("[ packed   ] %s: no blocked GEMM layout on this CPU (plain weights used)\n",
                  std::string(dtype_name(dtype)).c_str());
      continue;
    }
    ++packed_dtypes;
    EXPECT_EQ(fwd.k, in);
    EXPECT_EQ(fwd.n, out);
    EXPECT_EQ(bwd.k, out);
    EXPECT_EQ(bwd.n, in);
    const Tensor tb = to_tensor(bias, {out});
    const double tol = dtype == DType::f32 ? kF32Tol : 1e-5;  // bf16 operands: f32 sums
    for (int64_t n : {16, 100, 1000}) {
      SCOPED_TRACE(n);
      const Vec x = reference::random_vec(static_cast<size_t>(n * in), 72 + n);
      const Vec dy = reference::random_vec(static_cast<size_t>(n * out), 73 + n);
      const Tensor tx = to_tensor(x, {n, in}, dtype), tdy = to_tensor(dy, {n, out}, dtype);
      Tensor want = Tensor::empty({n, out}, DType::f32), got = Tensor::empty({n, out}, DType::f32);
      linear_forward(want, tx, tw, tb);
      linear_forward(got, tx, fwd, tb);
      EXPECT_LT(rel_error(to_vec(got), to_vec(want)), tol);
      Tensor want16 = Tensor::empty({n, out}, DType::bf16),
             got16 = Tensor::empty({n, out}, DType::bf16);
      linear_forward(want16, tx, tw);
      linear_forward(got16, tx, fwd);
      EXPECT_LT(rel_error(to_vec(got16), to_vec(want16)), kBf16OutTol);
      const Vec start = reference::random_vec(static_cast<size_t>(n * in), 74 + n);
      Tensor dx_want = to_tensor(start, {n, in}), dx_got = to_tensor(start, {n, in});
      linear_backward(dx_want, {}, {}, tdy, {}, tw);
      linear_backward_input(dx_got, tdy, bwd);
      EXPECT_LT(rel_error(to_vec(dx_got), to_vec(dx_want)), tol);
      EXPECT_GT(rel_error(to_vec(dx_got), start), 0.1);  // accumulated onto, not left as it was
    }
    // Column blocks of wider buffers (a gate or up half of gate|up): strided x, y, dy and dx go
    // through dense scratch (oneDNN took its reference kernel for them with packed weights).
    {
      const int64_t n = 40;
      Tensor wide_x =
          to_tensor(reference::random_vec(static_cast<size_t>(n * 2 * in), 76), {n, 2 * in}, dtype);
      Tensor wide_y = Tensor::zeros({n, 2 * out}, DType::f32);
      const Tensor x = wide_x.narrow(1, in, in), y = wide_y.narrow(1, out, out);
      Tensor want = Tensor::empty({n, out}, DType::f32);
      linear_forward(want, x, tw, tb);
      linear_forward(y, x, fwd, tb);
      EXPECT_LT(rel_error(to_vec(y.contiguous()), to_vec(want)), tol);
      EXPECT_EQ(to_vec(wide_y.narrow(1, 0, out).contiguous()), Vec(static_cast<size_t>(n * out)));
      Tensor wide_dy = to_tensor(reference::random_vec(static_cast<size_t>(n * 2 * out), 77),
                                 {n, 2 * out}, dtype);
      Tensor wide_dx = Tensor::zeros({n, 2 * in}, DType::f32);
      const Tensor dy = wide_dy.narrow(1, 0, out), dx = wide_dx.narrow(1, 0, in);
      Tensor dx_want = Tensor::zeros({n, in}, DType::f32);
      linear_backward(dx_want, {}, {}, dy, {}, tw);
      linear_backward_input(dx, dy, bwd);
      EXPECT_LT(rel_error(to_vec(dx.contiguous()), to_vec(dx_want)), tol);
    }
    // A copy: zeroing w leaves the packed products as they were.
    const Tensor tx =
        to_tensor(reference::random_vec(static_cast<size_t>(64 * in), 75), {64, in}, dtype);
    Tensor before = Tensor::empty({64, out}, DType::f32),
           after = Tensor::empty({64, out}, DType::f32);
    linear_forward(before, tx, fwd);
    tw.zero();
    linear_forward(after, tx, fwd);
    EXPECT_EQ(to_vec(after), to_vec(before));
    // Misuse is an error naming the op: the other side's packing, another dtype, other widths.
    Tensor y = Tensor::empty({64, out}, DType::f32);
    EXPECT_THROW(linear_forward(y, tx, bwd), Error);
    EXPECT_THROW(linear_backward_input(
                     Tensor::zeros({64, in}, DType::f32),
                     Tensor::zeros({64, out}, DType::f32 == dtype ? DType::f32 : DType::bf16), fwd),
                 Error);
    const DType other = dtype == DType::f32 ? DType::bf16 : DType::f32;
    EXPECT_THROW(linear_forward(y, Tensor::zeros({64, in}, other), fwd), Error);
    EXPECT_THROW(linear_forward(y, Tensor::zeros({64, in + 2}, dtype), fwd), Error);
    EXPECT_THROW(linear_forward(y, tx, GemmWeight{}), Error);
  }
  if (packed_dtypes == 0) GTEST_SKIP() << "oneDNN has no blocked GEMM layout on this CPU";
}

TEST(Matmul, TransposedViewsBatchesAlphaAndAccumulate) {
  const int64_t batch = 3, m = 10, k = 17, n = 12;
  const Vec a =
      reference::random_vec(static_cast<size_t>(batch * k * m), 50);  // stored as [batch, k, m]
  const Vec b = reference::random_vec(static_cast<size_t>(batch * k * n), 51);
  const Vec c0 = reference::random_vec(static_cast<size_t>(batch * m * n), 52);
  for (DType dt : {DType::f32, DType::bf16}) {
    Tensor at = to_tensor(a, {batch, k, m}, dt).transpose(1, 2);  // [batch, m, k] view
    Tensor bt = to_tensor(b, {batch, k, n}, dt);
    Tensor c = to_tensor(c0, {batch, m, n});
    matmul(c, at, bt, 0.5f, true);
    const Vec ar = rounded(a, dt), br = rounded(b, dt);
    Vec want = c0;
    for (int64_t z = 0; z < batch; ++z)
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0;
          for (int64_t x = 0; x < k; ++x) s += ar[(z * k + x) * m + i] * br[(z * k + x) * n + j];
          want[(z * m + i) * n + j] += 0.5 * s;
        }
    EXPECT_LT(rel_error(to_vec(c), want), kF32Tol) << dtype_name(dt);
  }
  EXPECT_THROW(matmul(Tensor::zeros({2, 3}, DType::f32), Tensor::zeros({2, 4}, DType::f32),
                      Tensor::zeros({5, 3}, DType::f32)),
               Error);
}

TEST(Matmul, SixteenBitOperandsAreConvertedInBlocksAlongEitherDimension) {
  // A reduction longer than 4096 converts b in blocks of rows (accumulated into c); a shorter one
  // in blocks of output columns. Both must equal the unblocked product.
  for (const auto& [m, k, n] : {std::tuple<int64_t, int64_t, int64_t>{3, 9000, 130},
                                std::tuple<int64_t, int64_t, int64_t>{20, 700, 1600}}) {
    const Vec a = reference::random_vec(static_cast<size_t>(m * k), 70);
    const Vec b = reference::random_vec(static_cast<size_t>(k * n), 71);
    Tensor c = Tensor::empty({m, n}, DType::f32);
    matmul(c, to_tensor(a, {m, k}), to_tensor(b, {k, n}, DType::bf16));
    const Vec br = rounded(b, DType::bf16);
    Vec want(static_cast<size_t>(m * n), 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t x = 0; x < k; ++x)
        for (int64_t j = 0; j < n; ++j) want[i * n + j] += a[i * k + x] * br[x * n + j];
    EXPECT_LT(rel_error(to_vec(c), want), 1e-5) << "k=" << k;
  }
}

// A loss head's inputs: h [n, c] and w [vocab, c] random (seeds `seed`, `seed` + 1; w scaled by
// 0.3), target i = (i · stride) % vocab.
struct HeadCase {
  Vec h, w;
  std::vector<int32_t> targets;
};
HeadCase head_case(int64_t n, int64_t c, int64_t vocab, uint64_t seed, int64_t stride) {
  HeadCase hc{reference::random_vec(static_cast<size_t>(n * c), seed),
              reference::random_vec(static_cast<size_t>(vocab * c), seed + 1, 0.3),
              std::vector<int32_t>(static_cast<size_t>(n))};
  for (int64_t i = 0; i < n; ++i)
    hc.targets[static_cast<size_t>(i)] = static_cast<int32_t>((i * stride) % vocab);
  return hc;
}

TEST(LinearCrossEntropy, ChunkedEqualsFullLogitsPathWithGradients) {
  const int64_t n = 37, c = 24, vocab = 300;
  auto [h, w, targets] = head_case(n, c, vocab, 60, 37);
  targets[3] = -100;
  targets[20] = -100;
  const float grad_scale = 1.0f / 35.0f;
  // Reference: full logits, full softmax, chain rule through the projection.
  const Vec logits = reference::linear(h, w, nullptr, n, c, vocab);
  Vec dlogits;
  int64_t tokens = 0;
  const double loss =
      reference::cross_entropy(logits, targets, vocab, -100, &dlogits, grad_scale, &tokens);
  Vec dh, dw, db;
  reference::linear_backward(dlogits, h, w, n, c, vocab, dh, dw, db);
  for (int64_t chunk : {int64_t{8}, int64_t{256}}) {
    Tensor tdh = Tensor::zeros({n, c}, DType::f32), tdw = Tensor::zeros({vocab, c}, DType::f32);
    const CrossEntropyResult r =
        linear_cross_entropy(to_tensor(h, {n, c}), to_tensor(w, {vocab, c}),
                             Tensor::from_ints(targets, {n}), -100, tdh, tdw, grad_scale, chunk);
    EXPECT_EQ(r.tokens, 35);
    EXPECT_EQ(tokens, 35);
    EXPECT_NEAR(r.loss_sum, loss, 1e-5 * std::abs(loss)) << "chunk " << chunk;
    EXPECT_LT(rel_error(to_vec(tdh), dh), 1e-5) << "chunk " << chunk;
    EXPECT_LT(rel_error(to_vec(tdw), dw), 1e-5) << "chunk " << chunk;
  }
  // FD on the reference loss w.r.t. h.
  reference::expect_fd_matches(
      [&](const Vec& hv) {
        return grad_scale * reference::cross_entropy(reference::linear(hv, w, nullptr, n, c, vocab),
                                                     targets, vocab, -100, nullptr, 1.0);
      },
      h, dh, "dh");
}

// The caller's idle memory as the logits chunk: the same results as the op's own buffer with as
// many rows per chunk (bit for bit), in f32 and with bf16 h and w (whose chunk also holds the bf16
// logit gradient); a scratch smaller than min(chunk_rows, 64) rows is not used; a wrong one is an
// error.
TEST(LinearCrossEntropy, ScratchHoldsTheLogitsChunk) {
  const int64_t n = 150, c = 16, vocab = 300;
  const auto [h, w, targets] = head_case(n, c, vocab, 66, 53);
  const Tensor t = Tensor::from_ints(targets, {n});
  for (DType dtype : {DType::f32, DType::bf16}) {
    const Tensor th = to_tensor(h, {n, c}, dtype), tw = to_tensor(w, {vocab, c}, dtype);
    const int64_t row_floats = dtype == DType::f32 ? vocab : vocab + vocab / 2;
    auto run = [&](int64_t chunk_rows, const Tensor& scratch) {
      Tensor dh = Tensor::zeros({n, c}, DType::f32), dw = Tensor::zeros({vocab, c}, DType::f32);
      const CrossEntropyResult r =
          linear_cross_entropy(th, tw, t, -100, dh, dw, 1.0f / 150, chunk_rows, scratch);
      return std::make_tuple(r.loss_sum, to_vec(dh), to_vec(dw));
    };
    // 100 rows of room: chunks of 100 rows whatever chunk_rows asks above that.
    Tensor scratch = Tensor::full({100 * row_floats}, std::nan(""), DType::f32);
    EXPECT_EQ(run(256, scratch), run(100, Tensor{})) << dtype_name(dtype);
    EXPECT_FALSE(std::isnan(to_vec(scratch)[0])) << "the scratch was used";
    EXPECT_EQ(run(64, scratch), run(64, Tensor{})) << dtype_name(dtype);
    // 40 rows of room < 64: the op's own buffer, chunks of 256.
    Tensor small = Tensor::full({40 * row_floats}, std::nan(""), DType::f32);
    EXPECT_EQ(run(256, small), run(256, Tensor{})) << dtype_name(dtype);
    EXPECT_TRUE(std::isnan(to_vec(small)[0])) << "too small a scratch is left alone";
  }
  EXPECT_THROW(linear_cross_entropy(to_tensor(h, {n, c}), to_tensor(w, {vocab, c}), t, -100, {}, {},
                                    1.0f, 256, Tensor::zeros({100 * vocab}, DType::bf16)),
               Error);
}

// Rows whose target is ignored are left out of the head's GEMMs: the loss and gradients equal those
// of the kept rows alone (bit for bit: the same op on the gathered rows), dh's ignored rows keep
// what they held, and a batch with no target at all costs nothing and changes nothing.
TEST(LinearCrossEntropy, IgnoredRowsAreSkippedAndTheirGradientRowsLeftAsTheyWere) {
  const int64_t n = 40, c = 16, vocab = 500;
  const Vec h = reference::random_vec(static_cast<size_t>(n * c), 64);
  const Vec w = reference::random_vec(static_cast<size_t>(vocab * c), 65, 0.3);
  std::vector<int32_t> targets(static_cast<size_t>(n), -100), kept_targets;
  Vec kept_h;
  std::vector<int64_t> kept_rows;
  for (int64_t i = 0; i < n; ++i) {
    if (i % 4 != 3 && i != 17) continue;  // a quarter of the rows (a prompt-masked batch)
    targets[static_cast<size_t>(i)] = static_cast<int32_t>((i * 131) % vocab);
    kept_targets.push_back(targets[static_cast<size_t>(i)]);
    kept_h.insert(kept_h.end(), h.begin() + i * c, h.begin() + (i + 1) * c);
    kept_rows.push_back(i);
  }
  const auto m = static_cast<int64_t>(kept_rows.size());
  for (DType dtype : {DType::f32, DType::bf16}) {
    Tensor dh = Tensor::full({n, c}, 1.0, dtype), dw = Tensor::zeros({vocab, c}, DType::f32);
    const CrossEntropyResult r =
        linear_cross_entropy(to_tensor(h, {n, c}, dtype), to_tensor(w, {vocab, c}),
                             Tensor::from_ints(targets, {n}), -100, dh, dw, 0.5f);
    Tensor kdh = Tensor::zeros({m, c}, dtype), kdw = Tensor::zeros({vocab, c}, DType::f32);
    const CrossEntropyResult k =
        linear_cross_entropy(to_tensor(kept_h, {m, c}, dtype), to_tensor(w, {vocab, c}),
                             Tensor::from_ints(kept_targets, {m}), -100, kdh, kdw, 0.5f);
    EXPECT_EQ(r.tokens, m);
    EXPECT_EQ(r.loss_sum, k.loss_sum);
    EXPECT_EQ(to_vec(dw), to_vec(kdw));
    const Vec got = to_vec(dh), kept = to_vec(kdh);
    for (int64_t i = 0, j = 0; i < n; ++i) {
      const bool is_kept = j < m && kept_rows[static_cast<size_t>(j)] == i;
      for (int64_t x = 0; x < c; ++x) {
        const double want = is_kept ? reference::rounded({1.0 + kept[j * c + x]}, dtype)[0] : 1.0;
        ASSERT_EQ(got[i * c + x], want) << "row " << i << " col " << x;
      }
      j += is_kept;
    }
  }
  // No target at all: no loss, no tokens, nothing written.
  std::vector<int32_t> none(static_cast<size_t>(n), -100);
  Tensor dh = Tensor::full({n, c}, 2.0, DType::f32), dw = Tensor::full({vocab, c}, 3.0, DType::f32);
  const CrossEntropyResult r =
      linear_cross_entropy(to_tensor(h, {n, c}), to_tensor(w, {vocab, c}),
                           Tensor::from_ints(none, {n}), -100, dh, dw, 1.0f);
  EXPECT_EQ(r.tokens, 0);
  EXPECT_EQ(r.loss_sum, 0.0);
  EXPECT_EQ(to_vec(dh), Vec(static_cast<size_t>(n * c), 2.0));
  EXPECT_EQ(to_vec(dw), Vec(static_cast<size_t>(vocab * c), 3.0));
}

// bf16 compute over f32 master weights: bf16 h against an f32 head. The op rounds w to bf16 block
// by block (3000 rows: two blocks of 1024 and one of 952) with an online softmax; the reference is
// the fp64 loss of the bf16-rounded h and w. The gradients differ from it by the bf16 rounding of
// the logit gradient (relative 2^-9 per element), hence 5e-3; the loss only by f32 summation.
TEST(LinearCrossEntropy, Bf16HiddenAgainstF32WeightsRoundsTheWeightsBlockByBlock) {
  const int64_t n = 37, c = 24, vocab = 3000;
  auto [h, w, targets] = head_case(n, c, vocab, 62, 911);
  targets[5] = -100;
  targets[36] = -100;
  const float grad_scale = 1.0f / 35.0f;
  const Vec hr = reference::rounded(h, DType::bf16), wr = reference::rounded(w, DType::bf16);
  Vec dlogits, dh, dw, db;
  int64_t tokens = 0;
  const double loss = reference::cross_entropy(reference::linear(hr, wr, nullptr, n, c, vocab),
                                               targets, vocab, -100, &dlogits, grad_scale, &tokens);
  reference::linear_backward(dlogits, hr, wr, n, c, vocab, dh, dw, db);
  const Tensor h16 = to_tensor(h, {n, c}, DType::bf16), t = Tensor::from_ints(targets, {n});
  Tensor tdh = Tensor::zeros({n, c}, DType::f32), tdw = Tensor::zeros({vocab, c}, DType::f32);
  const CrossEntropyResult r =
      linear_cross_entropy(h16, to_tensor(w, {vocab, c}), t, -100, tdh, tdw, grad_scale);
  EXPECT_EQ(r.tokens, 35);
  EXPECT_NEAR(r.loss_sum, loss, 1e-5 * std::abs(loss));
  EXPECT_LT(rel_error(to_vec(tdh), dh), 5e-3);
  EXPECT_LT(rel_error(to_vec(tdw), dw), 5e-3);
  // Without gradients: the first pass alone, the same loss.
  EXPECT_EQ(linear_cross_entropy(h16, to_tensor(w, {vocab, c}), t, -100).loss_sum, r.loss_sum);
  // And the path with a whole bf16 copy of w agrees.
  Tensor cdh = Tensor::zeros({n, c}, DType::f32), cdw = Tensor::zeros({vocab, c}, DType::f32);
  const CrossEntropyResult rc = linear_cross_entropy(h16, to_tensor(w, {vocab, c}, DType::bf16), t,
                                                     -100, cdh, cdw, grad_scale);
  EXPECT_NEAR(rc.loss_sum, r.loss_sum, 1e-5 * std::abs(loss));
  EXPECT_LT(rel_error(to_vec(cdh), to_vec(tdh)), 5e-3);
  EXPECT_LT(rel_error(to_vec(cdw), to_vec(tdw)), 5e-3);
}

}  // namespace
}  // namespace seqit::tensor
