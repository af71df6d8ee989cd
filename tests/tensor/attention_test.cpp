// Fused causal GQA attention: forward and backward against the naive masked softmax(QKᵀ/√d)V in
// fp64, for head ratios 1/2/4/8, lengths around the 64-token tile, with and without a packing mask;
// the KV-cache decoding path against the full pass.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <tuple>

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

std::vector<int32_t> packing_segments(int64_t batch, int64_t t) {
  // Row b: documents of lengths 5, 17, 1, 40, ... (ids ascending, contiguous runs).
  std::vector<int32_t> seg(static_cast<size_t>(batch * t));
  const int64_t lengths[] = {5, 17, 1, 40, 23, 64, 3};
  for (int64_t b = 0; b < batch; ++b) {
    int64_t pos = 0, doc = 0;
    while (pos < t) {
      const int64_t len = lengths[(doc + b) % 7];
      for (int64_t i = 0; i < len && pos < t; ++i)
        seg[static_cast<size_t>(b * t + pos++)] = static_cast<int32_t>(doc);
      ++doc;
    }
  }
  return seg;
}

// (ratio Hq/Hkv, tokens, head_dim, packed)
class Attention : public ::testing::TestWithParam<std::tuple<int, int, int, bool>> {};

TEST_P(Attention, ForwardAndBackwardMatchNaiveSoftmax) {
  const auto [ratio, tokens, d, packed] = GetParam();
  const int64_t batch = 2, hkv = ratio == 8 ? 1 : 2, hq = hkv * ratio;
  const reference::AttnDims dims{batch, tokens, hq, hkv, d};
  const Vec q = reference::random_vec(static_cast<size_t>(batch * tokens * hq * d), 1);
  const Vec k = reference::random_vec(static_cast<size_t>(batch * tokens * hkv * d), 2);
  const Vec v = reference::random_vec(static_cast<size_t>(batch * tokens * hkv * d), 3);
  const std::vector<int32_t> seg = packing_segments(batch, tokens);
  const std::vector<int32_t>* segp = packed ? &seg : nullptr;
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  AttentionOptions options;
  if (packed) options.segment_ids = Tensor::from_ints(seg, {batch, tokens});

  const Tensor tq = to_tensor(q, {batch, tokens, hq, d}),
               tk = to_tensor(k, {batch, tokens, hkv, d}),
               tv = to_tensor(v, {batch, tokens, hkv, d});
  Tensor out = Tensor::empty({batch, tokens, hq, d}, DType::f32);
  Tensor lse = Tensor::empty({batch, hq, tokens}, DType::f32);
  attention_forward(out, lse, tq, tk, tv, options);
  const Vec want = reference::attention(q, k, v, dims, segp, scale);
  EXPECT_LT(rel_error(to_vec(out), want), 2e-6);

  const Vec dout = reference::random_vec(q.size(), 4);
  Vec dq, dk, dv;
  reference::attention_backward(dout, q, k, v, dims, segp, scale, dq, dk, dv);
  Tensor tdq = Tensor::zeros(tq.shape(), DType::f32), tdk = Tensor::zeros(tk.shape(), DType::f32),
         tdv = Tensor::zeros(tv.shape(), DType::f32);
  attention_backward(tdq, tdk, tdv, to_tensor(dout, tq.shape()), tq, tk, tv, out, lse, options);
  EXPECT_LT(rel_error(to_vec(tdq), dq), 1e-5);
  EXPECT_LT(rel_error(to_vec(tdk), dk), 1e-5);
  EXPECT_LT(rel_error(to_vec(tdv), dv), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(RatiosLengthsMasks, Attention,
                         ::testing::Combine(::testing::Values(1, 2, 4, 8),
                                            ::testing::Values(1, 63, 65, 130),
                                            ::testing::Values(16), ::testing::Bool()));
INSTANTIATE_TEST_SUITE_P(HeadDims, Attention,
                         ::testing::Combine(::testing::Values(2), ::testing::Values(70),
                                            ::testing::Values(12, 64), ::testing::Values(false)));

TEST(AttentionReference, GradientMatchesFiniteDifferences) {
  const reference::AttnDims dims{1, 9, 4, 2, 5};
  const Vec q = reference::random_vec(9 * 4 * 5, 10), k = reference::random_vec(9 * 2 * 5, 11),
            v = reference::random_vec(9 * 2 * 5, 12), dout = reference::random_vec(9 * 4 * 5, 13);
  const std::vector<int32_t> seg{0, 0, 0, 1, 1, 2, 2, 2, 2};
  for (const std::vector<int32_t>* segp :
       {static_cast<const std::vector<int32_t>*>(nullptr), &seg}) {
    Vec dq, dk, dv;
    reference::attention_backward(dout, q, k, v, dims, segp, 0.4, dq, dk, dv);
    reference::expect_fd_matches(
        [&](const Vec& x) {
          return reference::dot(dout, reference::attention(x, k, v, dims, segp, 0.4));
        },
        q, dq, "dq", 20);
    reference::expect_fd_matches(
        [&](const Vec& x) {
          return reference::dot(dout, reference::attention(q, x, v, dims, segp, 0.4));
        },
        k, dk, "dk", 20);
    reference::expect_fd_matches(
        [&](const Vec& x) {
          return reference::dot(dout, reference::attention(q, k, x, dims, segp, 0.4));
        },
        v, dv, "dv", 20);
  }
}

TEST(Attention, StridedFusedQkvBf16AndAccumulatingGradients) {
  // q, k, v are views into one fused [B, T, (Hq + 2 Hkv) · D] projection output, in bf16.
  const int64_t batch = 1, t = 77, hq = 4, hkv = 2, d = 8, width = (hq + 2 * hkv) * d;
  const Vec fused = reference::random_vec(static_cast<size_t>(batch * t * width), 20);
  const Tensor f = to_tensor(fused, {batch, t, width}, DType::bf16);
  const Tensor q = f.narrow(2, 0, hq * d).view({batch, t, hq, d});
  const Tensor k = f.narrow(2, hq * d, hkv * d).view({batch, t, hkv, d});
  const Tensor v = f.narrow(2, (hq + hkv) * d, hkv * d).view({batch, t, hkv, d});
  const Vec qr = to_vec(q.contiguous()), kr = to_vec(k.contiguous()), vr = to_vec(v.contiguous());
  const reference::AttnDims dims{batch, t, hq, hkv, d};
  Tensor out = Tensor::empty({batch, t, hq, d}, DType::f32),
         lse = Tensor::empty({batch, hq, t}, DType::f32);
  attention_forward(out, lse, q, k, v, {});
  EXPECT_LT(
      rel_error(to_vec(out), reference::attention(qr, kr, vr, dims, nullptr, 1 / std::sqrt(8.0))),
      2e-6);
  // Gradients accumulate: running backward twice doubles them.
  const Vec dout = reference::random_vec(qr.size(), 21);
  Vec dq, dk, dv;
  reference::attention_backward(dout, qr, kr, vr, dims, nullptr, 1 / std::sqrt(8.0), dq, dk, dv);
  Tensor dfused = Tensor::zeros({batch, t, width}, DType::f32);
  const Tensor dqv = dfused.narrow(2, 0, hq * d).view({batch, t, hq, d});
  const Tensor dkv = dfused.narrow(2, hq * d, hkv * d).view({batch, t, hkv, d});
  const Tensor dvv = dfused.narrow(2, (hq + hkv) * d, hkv * d).view({batch, t, hkv, d});
  for (int i = 0; i < 2; ++i)
    attention_backward(dqv, dkv, dvv, to_tensor(dout, {batch, t, hq, d}), q, k, v, out, lse, {});
  for (Vec* g : {&dq, &dk, &dv})
    for (double& x : *g) x *= 2;
  EXPECT_LT(rel_error(to_vec(dqv.contiguous()), dq), 1e-5);
  EXPECT_LT(rel_error(to_vec(dkv.contiguous()), dk), 1e-5);
  EXPECT_LT(rel_error(to_vec(dvv.contiguous()), dv), 1e-5);
  EXPECT_THROW(attention_forward(out, lse, q, Tensor::zeros({batch, t, 3, d}, DType::f32),
                                 Tensor::zeros({batch, t, 3, d}, DType::f32), {}),
               Error);
}

// bf16 q, k, v with a head dim that is a multiple of 16 take the bf16 tile path where the CPU has
// AVX512_BF16: Q·Kᵀ and dO·Vᵀ on the bf16 inputs as they are, and P, dS and dO rounded to bf16
// for the other four products (f32 accumulation, f32 softmax statistics). Against the fp64
// reference on the same bf16 inputs, the output stays within a few bf16 roundings (2^-9) of it
// and the gradients within 1e-2 norm-wise, over several key tiles, odd tile lengths and row
// counts, grouped heads, packed segments and head dims 32 and 64 (a transposed or mispaired
// operand is off by O(1)). The f32 tile path on the same inputs agrees with the reference to
// ~1e-6, so the errors printed show which path ran.
TEST(Attention, Bf16TilesStayWithinBf16RoundingOfTheReference) {
  const bool tiles16 = detail::attention_has_bf16_tiles();
  for (const auto& [d, t, packed] :
       {std::tuple<int64_t, int64_t, bool>{64, 150, false}, {64, 141, true}, {32, 97, false}}) {
    SCOPED_TRACE("d " + std::to_string(d) + (packed ? ", packed" : ""));
    const int64_t batch = 2, hq = 8, hkv = 2;
    const reference::AttnDims dims{batch, t, hq, hkv, d};
    const Tensor q = to_tensor(reference::random_vec(static_cast<size_t>(batch * t * hq * d), 60),
                               {batch, t, hq, d}, DType::bf16);
    const Tensor k = to_tensor(reference::random_vec(static_cast<size_t>(batch * t * hkv * d), 61),
                               {batch, t, hkv, d}, DType::bf16);
    const Tensor v = to_tensor(reference::random_vec(static_cast<size_t>(batch * t * hkv * d), 62),
                               {batch, t, hkv, d}, DType::bf16);
    const std::vector<int32_t> seg = packing_segments(batch, t);
    AttentionOptions options;
    if (packed) options.segment_ids = Tensor::from_ints(seg, {batch, t});
    const double sc = 1 / std::sqrt(static_cast<double>(d));
    const Vec qr = to_vec(q), kr = to_vec(k), vr = to_vec(v);
    const Vec want = reference::attention(qr, kr, vr, dims, packed ? &seg : nullptr, sc);
    Tensor out = Tensor::empty({batch, t, hq, d}, DType::f32),
           lse = Tensor::empty({batch, hq, t}, DType::f32);
    attention_forward(out, lse, q, k, v, options);
    const double out_error = rel_error(to_vec(out), want);
    EXPECT_LT(out_error, 4e-3);
    const Vec dout = reference::random_vec(qr.size(), 63);
    Vec dq, dk, dv;
    reference::attention_backward(dout, qr, kr, vr, dims, packed ? &seg : nullptr, sc, dq, dk, dv);
    Tensor tdq = Tensor::zeros(q.shape(), DType::f32), tdk = Tensor::zeros(k.shape(), DType::f32),
           tdv = Tensor::zeros(v.shape(), DType::f32);
    attention_backward(tdq, tdk, tdv, to_tensor(dout, q.shape()), q, k, v, out, lse, options);
    const double dq_error = rel_error(to_vec(tdq), dq), dk_error = rel_error(to_vec(tdk), dk),
                 dv_error = rel_error(to_vec(tdv), dv);
    EXPECT_LT(dq_error, 1e-2);
    EXPECT_LT(dk_error, 1e-2);
    EXPECT_LT(dv_error, 1e-2);
    std::printf("[ attn16   ] d %ld%s: %s path, errors out %.1e dq %.1e dk %.1e dv %.1e\n",
                static_cast<long>(d), packed ? " packed" : "", tiles16 ? "bf16 tile" : "f32 tile",
                out_error, dq_error, dk_error, dv_error);
    if (tiles16) {
      EXPECT_GT(out_error, 1e-5) << "bf16 tiles round P: the f32 path ran";
    }
  }
}

// Single-token steps over f32 caches take the in-place decoding kernel: head sizes below 8, at 64
// and past it (register blocks and their tails), 8-key score blocks and a remainder, caches stored
// position-major and head-major (a transposed view), 16 sequences per call.
TEST(AttentionDecode, SingleTokenStepsOverF32CachesMatchTheReference) {
  for (const int64_t d : {12, 64, 72}) {
    for (const bool head_major : {false, true}) {
      const int64_t hq = 6, hkv = 2, sequences = 16, steps = 21;
      std::vector<Vec> q, k, v, want;
      std::vector<Tensor> kc, vc;
      for (int64_t s = 0; s < sequences; ++s) {
        const int64_t t = steps + s;  // ragged: sequence s has s + 1 positions before the steps
        q.push_back(reference::random_vec(static_cast<size_t>(t * hq * d), 300 + s));
        k.push_back(reference::random_vec(static_cast<size_t>(t * hkv * d), 400 + s));
        v.push_back(reference::random_vec(static_cast<size_t>(t * hkv * d), 500 + s));
        want.push_back(reference::attention(q[s], k[s], v[s], {1, t, hq, hkv, d}, nullptr, 0.3));
        Tensor kt = head_major ? Tensor::zeros({hkv, t, d}, DType::f32).transpose(0, 1)
                               : Tensor::zeros({t, hkv, d}, DType::f32);
        Tensor vt = head_major ? Tensor::zeros({hkv, t, d}, DType::f32).transpose(0, 1)
                               : Tensor::zeros({t, hkv, d}, DType::f32);
        kt.copy_from(to_tensor(k[s], {t, hkv, d}));
        vt.copy_from(to_tensor(v[s], {t, hkv, d}));
        kc.push_back(kt);
        vc.push_back(vt);
      }
      for (int64_t step = 0; step < steps; ++step) {
        std::vector<int32_t> starts{0}, positions;
        Vec qstep;
        for (int64_t s = 0; s < sequences; ++s) {
          const int64_t p = s + step;  // the new token's position
          positions.push_back(static_cast<int32_t>(p));
          starts.push_back(starts.back() + 1);
          qstep.insert(qstep.end(), q[s].begin() + p * hq * d, q[s].begin() + (p + 1) * hq * d);
        }
        Tensor out = Tensor::empty({sequences, hq, d}, DType::f32);
        attention_decode(out, to_tensor(qstep, {sequences, hq, d}), kc, vc,
                         Tensor::from_ints(starts, {sequences + 1}),
                         Tensor::from_ints(positions, {sequences}), 0.3f);
        const Vec got = to_vec(out);
        for (int64_t s = 0; s < sequences; ++s) {
          const int64_t p = s + step;
          const Vec row(got.begin() + s * hq * d, got.begin() + (s + 1) * hq * d);
          const Vec ref(want[s].begin() + p * hq * d, want[s].begin() + (p + 1) * hq * d);
          ASSERT_LT(rel_error(row, ref), 2e-6) << "d " << d << (head_major ? " head-major" : "")
                                               << " sequence " << s << " position " << p;
        }
      }
    }
  }
}

TEST(AttentionDecode, RaggedBatchOverCachesEqualsTheFullPass) {
  // Three sequences of different lengths; each is decoded as a prefill chunk then single tokens,
  // all sequences of a step in one ragged call. Caches: one f32 pool viewed per slot, one bf16
  // [Hkv, L, D] buffer viewed transposed, and one f16 cache.
  const int64_t hq = 8, hkv = 2, d = 16, capacity = 160;
  const std::vector<int64_t> lengths{150, 70, 9};
  const std::vector<int64_t> prefill{100, 1, 9};
  const std::vector<DType> cache_dtype{DType::f32, DType::bf16, DType::f16};
  std::vector<Vec> q, k, v, want;
  for (size_t s = 0; s < lengths.size(); ++s) {
    const int64_t t = lengths[s];
    q.push_back(reference::random_vec(static_cast<size_t>(t * hq * d), 30 + s));
    k.push_back(
        rounded(reference::random_vec(static_cast<size_t>(t * hkv * d), 40 + s), cache_dtype[s]));
    v.push_back(
        rounded(reference::random_vec(static_cast<size_t>(t * hkv * d), 50 + s), cache_dtype[s]));
    want.push_back(reference::attention(q[s], k[s], v[s], {1, t, hq, hkv, d}, nullptr, 0.25));
  }
  Tensor pool = Tensor::zeros({2, capacity, hkv, d}, DType::f32);
  Tensor transposed_buffer = Tensor::zeros({hkv, capacity, d}, DType::bf16);
  Tensor half_cache = Tensor::zeros({capacity, hkv, d}, DType::f16);
  std::vector<Tensor> kc{pool.select(0, 0), transposed_buffer.transpose(0, 1), half_cache};
  Tensor vpool = Tensor::zeros({2, capacity, hkv, d}, DType::f32);
  Tensor vtrans = Tensor::zeros({hkv, capacity, d}, DType::bf16);
  Tensor vhalf = Tensor::zeros({capacity, hkv, d}, DType::f16);
  std::vector<Tensor> vc{vpool.select(0, 1), vtrans.transpose(0, 1), vhalf};
  std::vector<Vec> got(lengths.size());
  std::vector<int64_t> done(lengths.size(), 0);
  while (true) {
    std::vector<int32_t> starts{0}, positions;
    std::vector<int64_t> take;
    Vec qstep;
    for (size_t s = 0; s < lengths.size(); ++s) {
      const int64_t n = done[s] == 0 ? prefill[s] : std::min<int64_t>(1, lengths[s] - done[s]);
      take.push_back(n);
      positions.push_back(static_cast<int32_t>(done[s]));
      starts.push_back(starts.back() + static_cast<int32_t>(n));
      qstep.insert(qstep.end(), q[s].begin() + done[s] * hq * d,
                   q[s].begin() + (done[s] + n) * hq * d);
      // Append this step's keys/values into the cache first.
      if (n > 0) {
        const Vec kn(k[s].begin() + done[s] * hkv * d, k[s].begin() + (done[s] + n) * hkv * d);
        const Vec vn(v[s].begin() + done[s] * hkv * d, v[s].begin() + (done[s] + n) * hkv * d);
        kc[s].narrow(0, done[s], n).copy_from(to_tensor(kn, {n, hkv, d}));
        vc[s].narrow(0, done[s], n).copy_from(to_tensor(vn, {n, hkv, d}));
      }
    }
    const int64_t total = starts.back();
    if (total == 0) break;
    Tensor out = Tensor::empty({total, hq, d}, DType::f32);
    attention_decode(out, to_tensor(qstep, {total, hq, d}), kc, vc,
                     Tensor::from_ints(starts, {int64_t(starts.size())}),
                     Tensor::from_ints(positions, {int64_t(positions.size())}), 0.25f);
    const Vec o = to_vec(out);
    for (size_t s = 0; s < lengths.size(); ++s) {
      got[s].insert(got[s].end(), o.begin() + starts[s] * hq * d,
                    o.begin() + starts[s + 1] * hq * d);
      done[s] += take[s];
    }
  }
  for (size_t s = 0; s < lengths.size(); ++s) {
    EXPECT_LT(rel_error(got[s], want[s]), 2e-6)
        << "sequence " << s << " (" << dtype_name(cache_dtype[s]) << " cache)";
  }
  // A cache too short for the requested positions is an error naming it.
  Tensor out = Tensor::empty({1, hq, d}, DType::f32);
  std::vector<Tensor> short_k{Tensor::zeros({4, hkv, d}, DType::f32)},
      short_v{Tensor::zeros({4, hkv, d}, DType::f32)};
  EXPECT_THROW(attention_decode(out, Tensor::zeros({1, hq, d}, DType::f32), short_k, short_v,
                                Tensor::from_ints(std::vector<int32_t>{0, 1}, {2}),
                                Tensor::from_ints(std::vector<int32_t>{4}, {1})),
               Error);
}

}  // namespace
}  // namespace seqit::tensor
