// The Tensor type: shapes, strides, views, copies, dtype conversions, borrowed storage, threading.
#include "tensor/tensor.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>

#include "tensor/cpu_internal.h"
#include "tensor/ops.h"
#include "tensor/threading.h"

namespace seqit::tensor {
namespace {

Tensor iota(const Shape& shape, DType dtype = DType::f32) {
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<float>(i);
  return Tensor::from_floats(v, shape, dtype);
}

TEST(Tensor, EmptyIsAlignedContiguousAndSized) {
  Tensor t = Tensor::empty({2, 3, 5}, DType::bf16);
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.dim(), 3);
  EXPECT_EQ(t.numel(), 30);
  EXPECT_EQ(t.nbytes(), 60u);
  EXPECT_EQ(t.strides(), (Shape{15, 5, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t.raw_data()) % 64, 0u);
  EXPECT_EQ(t.size(-1), 5);
  EXPECT_THROW(t.size(3), Error);
  EXPECT_THROW(t.data<float>(), Error);  // wrong element type
  EXPECT_FALSE(Tensor().defined());
}

TEST(Tensor, NarrowSelectTransposeAreViews) {
  Tensor t = iota({3, 4});
  Tensor row = t.select(0, 1);  // [4, 5, 6, 7]
  EXPECT_EQ(row.shape(), (Shape{4}));
  EXPECT_EQ(row.get({2}), 6);
  Tensor cols = t.narrow(1, 1, 2);  // [[1,2],[5,6],[9,10]]
  EXPECT_FALSE(cols.is_contiguous());
  EXPECT_EQ(cols.get({2, 1}), 10);
  Tensor tt = t.transpose(0, 1);
  EXPECT_EQ(tt.shape(), (Shape{4, 3}));
  EXPECT_EQ(tt.get({3, 2}), 11);
  tt.set({0, 1}, 100);  // writes through to t[1][0]
  EXPECT_EQ(t.get({1, 0}), 100);
  EXPECT_TRUE(tt.shares_storage(t));
  EXPECT_THROW(t.narrow(1, 3, 2), Error);
  EXPECT_THROW(t.select(0, 3), Error);
}

TEST(Tensor, ViewAndReshape) {
  Tensor t = iota({2, 3, 4});
  Tensor v = t.view({6, -1});
  EXPECT_EQ(v.shape(), (Shape{6, 4}));
  EXPECT_TRUE(v.shares_storage(t));
  EXPECT_EQ(v.get({5, 3}), 23);
  // A narrowed last dim keeps leading dims mergeable: [2,3,2] -> [6,2] is a view.
  Tensor n = t.narrow(2, 1, 2);
  Tensor nv = n.view({6, 2});
  EXPECT_EQ(nv.strides(), (Shape{4, 1}));
  EXPECT_EQ(nv.get({4, 1}), 18);  // t[1][1][2]
  // Transposed data cannot be flattened without a copy: view throws, reshape copies.
  Tensor tr = t.transpose(1, 2);  // [2,4,3]
  EXPECT_THROW(tr.view({2, 12}), Error);
  Tensor r = tr.reshape({2, 12});
  EXPECT_FALSE(r.shares_storage(t));
  EXPECT_EQ(r.get({0, 1}), 4);  // tr[0][0][1] = t[0][1][0]
  // Splitting a dim of a transposed tensor is a view.
  Tensor split = tr.view({2, 2, 2, 3});
  EXPECT_TRUE(split.shares_storage(t));
  EXPECT_EQ(split.get({1, 1, 0, 2}), t.get({1, 2, 2}));
  EXPECT_THROW(t.view({5, -1}), Error);
  EXPECT_EQ(t.rows_view().shape(), (Shape{6, 4}));
  EXPECT_EQ(t.unsqueeze(0).shape(), (Shape{1, 2, 3, 4}));
  EXPECT_EQ(t.unsqueeze(-1).shape(), (Shape{2, 3, 4, 1}));
  EXPECT_EQ(t.unsqueeze(1).squeeze(1).shape(), t.shape());
}

TEST(Tensor, PermuteAndContiguousCopy) {
  Tensor t = iota({2, 3, 4});
  Tensor p = t.permute({2, 0, 1});  // [4,2,3]
  Tensor c = p.contiguous();
  EXPECT_TRUE(c.is_contiguous());
  for (int64_t a = 0; a < 4; ++a)
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t d = 0; d < 3; ++d) EXPECT_EQ(c.get({a, b, d}), t.get({b, d, a}));
  EXPECT_THROW(t.permute({0, 0, 1}), Error);
  Tensor same = t.contiguous();
  EXPECT_TRUE(same.shares_storage(t));
}

TEST(Tensor, ScalarConversionsAreExact) {
  // bf16: round to nearest even at the 16th bit.
  EXPECT_EQ(f32_to_bf16(1.0f).bits, 0x3f80);
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808000u)).bits, 0x3f80);  // tie -> even
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f818000u)).bits, 0x3f82);  // tie -> even (up)
  EXPECT_EQ(f32_to_bf16(std::bit_cast<float>(0x3f808001u)).bits, 0x3f81);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(bf16_to_f32(f32_to_bf16(std::numeric_limits<float>::infinity()))));
  // f16: normals, subnormals, overflow, every half value round-trips.
  EXPECT_EQ(f32_to_f16(1.0f).bits, 0x3c00);
  EXPECT_EQ(f32_to_f16(65504.0f).bits, 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f).bits, 0x7c00);  // rounds to infinity
  EXPECT_EQ(f32_to_f16(0x1p-24f).bits, 0x0001);
  EXPECT_EQ(f32_to_f16(0x1p-25f).bits, 0x0000);    // tie -> even (zero)
  EXPECT_EQ(f32_to_f16(0x1.8p-24f).bits, 0x0002);  // tie -> even (up)
  EXPECT_EQ(f32_to_f16(-2.0f).bits, 0xc000);
  for (uint32_t bits = 0; bits < 0x10000; ++bits) {
    const f16 h{static_cast<uint16_t>(bits)};
    const float f = f16_to_f32(h);
    if (std::isnan(f)) continue;
    ASSERT_EQ(f32_to_f16(f).bits, bits) << std::hex << bits;
  }
}

TEST(Tensor, BulkConversionsMatchScalar) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> dist(-70000.0f, 70000.0f);
  std::vector<float> v(200003);  // large enough for the multithreaded path, odd for the tails
  for (size_t i = 0; i < v.size(); ++i) v[i] = dist(rng) * (i % 7 == 0 ? 1e-9f : 1.0f);
  v[5] = std::numeric_limits<float>::quiet_NaN();
  v[6] = -std::numeric_limits<float>::infinity();
  std::vector<bf16> b(v.size());
  std::vector<f16> h(v.size());
  convert_f32_to_bf16(v.data(), b.data(), v.size());
  convert_f32_to_f16(v.data(), h.data(), v.size());
  std::vector<float> back_b(v.size()), back_h(v.size());
  convert_bf16_to_f32(b.data(), back_b.data(), v.size());
  convert_f16_to_f32(h.data(), back_h.data(), v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) {
      ASSERT_TRUE(std::isnan(back_b[i]) && std::isnan(back_h[i]));
      continue;
    }
    ASSERT_EQ(b[i].bits, f32_to_bf16(v[i]).bits) << i;
    ASSERT_EQ(h[i].bits, f32_to_f16(v[i]).bits) << i;
    ASSERT_EQ(back_b[i], bf16_to_f32(b[i]));
    ASSERT_EQ(back_h[i], f16_to_f32(h[i]));
  }
}

// Every bf16 conversion path this CPU has gives the scalar conversion's bits, NaN payloads and
// denormals included (vcvtneps2bf16 flushes denormal inputs: such vectors go the scalar way), at
// every alignment of the 16-value vectors.
TEST(Tensor, Bf16ConversionsOnEveryInstructionSetGiveTheScalarBits) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<uint32_t> bits;
  std::vector<float> v(4099);
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t u = bits(rng);
    if (i % 5 == 0) u &= 0x807fffffu;                  // denormal (or zero)
    if (i % 11 == 0) u |= 0x7f800000u;                 // NaN or infinity
    if (i % 13 == 0) u = (u & 0xffff0000u) | 0x8000u;  // a tie: rounds to even
    v[i] = std::bit_cast<float>(u);
  }
  for (size_t i = 600; i < 1400; ++i) v[i] = std::bit_cast<float>(bits(rng) & 0x3fffffffu);
  std::vector<bf16> want(v.size());
  for (size_t i = 0; i < v.size(); ++i) want[i] = f32_to_bf16(v[i]);
  const std::vector<detail::ConvertIsa> isas = detail::available_convert_isas();
  std::printf("conversion paths on this CPU: %zu\n", isas.size());
  for (const detail::ConvertIsa isa : isas) {
    for (const size_t offset : {size_t{0}, size_t{3}}) {
      const size_t n = v.size() - offset;
      std::vector<bf16> got(n);
      detail::f32_to_bf16_on(isa, v.data() + offset, got.data(), n);
      std::vector<float> back(n);
      detail::bf16_to_f32_on(isa, want.data() + offset, back.data(), n);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_EQ(got[i].bits, want[i + offset].bits) << static_cast<int>(isa) << " " << i;
        ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), uint32_t{want[i + offset].bits} << 16);
      }
    }
  }
}

TEST(Tensor, ToDtypeAndStridedCopy) {
  Tensor t = iota({3, 5});
  Tensor b = t.transpose(0, 1).to(DType::bf16);  // strided source -> contiguous bf16
  EXPECT_TRUE(b.is_contiguous());
  EXPECT_EQ(b.get({4, 2}), 14);
  Tensor f = b.to(DType::f32);
  EXPECT_EQ(to_float_vector(f), to_float_vector(t.transpose(0, 1)));
  Tensor ints = t.to(DType::i32);
  EXPECT_EQ(to_int_vector(ints)[7], 7);
  Tensor dst = Tensor::zeros({5, 3}, DType::f16);
  dst.transpose(0, 1).copy_from(t);  // strided destination
  EXPECT_EQ(dst.get({4, 2}), 14);
  EXPECT_THROW(dst.copy_from(t), Error);  // shapes differ
  Tensor filled = Tensor::full({2, 2}, 1.5, DType::bf16);
  EXPECT_EQ(to_float_vector(filled), (std::vector<float>{1.5f, 1.5f, 1.5f, 1.5f}));
  t.narrow(1, 1, 2).zero();
  EXPECT_EQ(t.get({2, 2}), 0);
  EXPECT_EQ(t.get({2, 3}), 13);
}

TEST(Tensor, BorrowedStorageKeepsOwnerAliveAndIsReadOnly) {
  auto buffer = std::make_shared<std::vector<float>>(std::vector<float>{1, 2, 3, 4, 5, 6});
  std::weak_ptr<std::vector<float>> watch = buffer;
  Tensor view;
  {
    Tensor t = Tensor::borrow(buffer->data(), {2, 3}, DType::f32, buffer);
    buffer.reset();
    view = t.select(0, 1);
  }
  EXPECT_FALSE(watch.expired());  // the last view holds the owner
  EXPECT_EQ(view.get({2}), 6);
  EXPECT_FALSE(view.is_writable());
  EXPECT_THROW(view.data<float>(), Error);
  EXPECT_NO_THROW(static_cast<const Tensor&>(view).data<float>());
  EXPECT_THROW(view.set({0}, 1), Error);
  view = Tensor();
  EXPECT_TRUE(watch.expired());

  std::vector<int32_t> ids{1, 2, 3};
  Tensor m = Tensor::borrow_mutable(ids.data(), {3}, DType::i32, nullptr);
  m.set({1}, 9);
  EXPECT_EQ(ids[1], 9);
}

// This process's resident memory (VmRSS), in MiB.
double resident_mib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  ADD_FAILURE() << "no VmRSS in /proc/self/status";
  return 0;
}

// zeros_on_demand: zeros that take memory only where written. The ops that read a whole gradient
// (its norm, AdamW) skip the pages never written: the same results as over dense zeros, and no
// memory for those pages (reading one directly takes a page on kernels that do not map the shared
// zero page on a read fault: Linux 6.18 on some of our VMs). zero() hands the pages back (a
// narrowed view's zero() clears exactly its elements, partial pages included).
TEST(Tensor, OnDemandZerosTakeMemoryOnlyWhereWritten) {
  const int64_t rows = 1024, cols = 4096;  // 16 MiB of f32, 16 KiB rows
  Tensor t = Tensor::zeros_on_demand({rows, cols}, DType::f32);
  ASSERT_TRUE(t.storage()->on_demand());
  AdamWConfig adam;
  adam.weight_decay = 0.1f;
  Tensor param[2], m[2], v[2];
  for (int k = 0; k < 2; ++k) {
    param[k] = Tensor::full({rows, cols}, 0.5, DType::f32);
    m[k] = Tensor::full({rows, cols}, 0.01, DType::f32);
    v[k] = Tensor::full({rows, cols}, 0.001, DType::f32);
  }
  const double start = resident_mib();
  float* p = t.data<float>();
  for (int64_t c = 0; c < cols; ++c) {
    p[7 * cols + c] = 1.0f;
    p[1000 * cols + c] = 2.0f;
  }
  EXPECT_DOUBLE_EQ(global_grad_norm(std::span<const Tensor>(&t, 1)), std::sqrt(5.0 * cols));
  adamw_step(param[0], Tensor{}, t, m[0], v[0], adam, 3, 0.5f);
  EXPECT_LT(resident_mib() - start, 4.0);  // two rows written: 32 KiB, not 16 MiB

  const auto* bytes = reinterpret_cast<const std::byte*>(p);
  const Storage::WrittenPages written = t.storage()->written_pages();
  std::vector<std::byte> buffer(3 * cols * 4);
  EXPECT_EQ(written.read(bytes + 7 * cols * 4, cols * 4, buffer.data()), bytes + 7 * cols * 4);
  EXPECT_EQ(written.read(bytes + 500 * cols * 4, cols * 4, buffer.data()), nullptr);
  const std::byte* rows678 =
      written.read(bytes + 6 * cols * 4 + 12, 3 * cols * 4 - 20, buffer.data());
  ASSERT_EQ(rows678, buffer.data());
  for (int64_t i = 0; i < 3 * cols - 5; ++i) {
    float x;
    std::memcpy(&x, rows678 + 4 * i, 4);
    ASSERT_EQ(x, i + 3 >= cols && i + 3 < 2 * cols ? 1.0f : 0.0f) << i;
  }

  // The same step over a dense copy of the gradient: bit for bit.
  Tensor dense = Tensor::empty({rows, cols}, DType::f32);
  dense.copy_from(t);
  adamw_step(param[1], Tensor{}, dense, m[1], v[1], adam, 3, 0.5f);
  for (auto* pair : {param, m, v})
    ASSERT_EQ(std::memcmp(pair[0].raw_data(), pair[1].raw_data(), pair[0].nbytes()), 0);

  for (int64_t i = 0; i < rows * cols; i += 1024) p[i] = 1.0f;  // every page written
  const double full = resident_mib();
  EXPECT_GT(full - start, 14.0);
  t.zero();
  EXPECT_LT(resident_mib(), full - 14.0);  // handed back
  EXPECT_EQ(global_grad_norm(std::span<const Tensor>(&t, 1)), 0.0);
  double sum = 0;
  for (int64_t i = 0; i < rows * cols; ++i) sum += std::abs(p[i]);
  EXPECT_EQ(sum, 0.0);

  // A view that starts and ends inside pages.
  for (int64_t i = 0; i < 3 * cols; ++i) p[i] = 5.0f;
  t.view({-1}).narrow(0, 1001, 2 * cols + 77).zero();
  for (int64_t i = 0; i < 3 * cols; ++i) {
    const bool cleared = i >= 1001 && i < 1001 + 2 * cols + 77;
    ASSERT_EQ(p[i], cleared ? 0.0f : 5.0f) << i;
  }
}

// Large buffers are pages of their own. A fresh one reads as zeros without being written (no memory
// until written); freed, it is kept for the next allocation of about its size (an op's temporary
// reuses its pages, already faulted in), at most 64 MiB of such blocks; zeros() of a reused block
// is written. Allocating and freeing one over and over next to small allocations does not grow the
// process (through malloc, glibc served such blocks from a heap that grew by one block per round: a
// trainer gained 31 MiB per step).
TEST(Tensor, LargeBuffersAreMappedKeptForReuseAndBounded) {
  const int64_t big = (int64_t{80} << 20) / 4;  // above what is kept: always fresh
  const double start = resident_mib();
  {
    Tensor z = Tensor::zeros({big}, DType::f32);
    ASSERT_TRUE(z.storage()->mapped());
    ASSERT_TRUE(z.storage()->fresh());
    EXPECT_LT(resident_mib() - start, 8.0);  // not written by zeros()
    const float* p = z.data<float>();
    double sum = 0;
    for (int64_t i = 0; i < big; i += 997) sum += p[i];
    EXPECT_EQ(sum, 0.0);
  }

  const int64_t n = (int64_t{31} << 20) / 4;  // 31 MiB of f32
  const void* first = nullptr;
  {
    Tensor t = Tensor::full({n}, 3.0, DType::f32);
    first = t.raw_data();
  }
  {
    Tensor again = Tensor::empty({n - 1000}, DType::f32);  // about the same size: the same block
    EXPECT_EQ(again.raw_data(), first);
    EXPECT_FALSE(again.storage()->fresh());
    EXPECT_EQ(again.data<float>()[5], 3.0f);  // not cleared: empty() is uninitialised
  }
  {
    Tensor z = Tensor::zeros({n}, DType::f32);  // reused, so written with zeros
    EXPECT_EQ(z.raw_data(), first);
    double sum = 0;
    for (int64_t i = 0; i < n; i += 997) sum += z.data<float>()[i];
    EXPECT_EQ(sum, 0.0);
  }
  EXPECT_NE(Tensor::empty({n / 2}, DType::f32).raw_data(), first);  // too small a request for it

  std::vector<std::unique_ptr<char[]>> small;
  double after_first = 0;
  for (int round = 0; round < 12; ++round) {
    Tensor t = Tensor::empty({n}, DType::f32);
    t.fill(1.0);
    small.push_back(std::make_unique<char[]>(1000));
    small.back()[0] = 1;
    if (round == 0) after_first = resident_mib();
  }
  EXPECT_LT(resident_mib() - after_first, 16.0);

  {  // four at once, then freed: at most 64 MiB of them stay
    std::vector<Tensor> four;
    for (int k = 0; k < 4; ++k) {
      four.push_back(Tensor::empty({n}, DType::f32));
      four.back().fill(1.0);
    }
    const double all = resident_mib();
    four.clear();
    EXPECT_LT(resident_mib(), all - 2 * 31 + 8);
  }
  EXPECT_FALSE(Tensor::empty({1000}, DType::f32).storage()->mapped());  // small: malloc
}

TEST(Threading, SetNumThreadsAndWaitPolicy) {
  const int before = num_threads();
  EXPECT_GE(before, 1);
  set_num_threads(1);
  EXPECT_EQ(num_threads(), 1);
  set_num_threads(0);
  EXPECT_EQ(num_threads(), before);
  // Test binaries are not re-executed (only the seqit executable does that); the policy reported is
  // what the environment chose, or libgomp's default.
  const std::string policy = openmp_wait_policy();
  const char* marker = std::getenv("SEQIT_OPENMP_REEXEC");
  if (!std::getenv("OMP_WAIT_POLICY") && !std::getenv("GOMP_SPINCOUNT")) {
    EXPECT_EQ(policy, "libgomp default (GOMP_SPINCOUNT=300000)");
  } else if (!std::getenv("OMP_WAIT_POLICY") && marker && std::string(marker) == "done") {
    EXPECT_EQ(policy, "GOMP_SPINCOUNT=10000 (seqit default)");
  }
  EXPECT_FALSE(policy.empty());
}

}  // namespace
}  // namespace seqit::tensor
