// f32/bf16 GEMM over oneDNN with a primitive cache, block-wise conversion of 16-bit operands where
// oneDNN has no fast 16-bit kernel (AVX2 machines), and the weight-streaming GEMV for decoding.
#include "tensor/cpu_gemm.h"

// GCC 12 reports its own _mm512_undefined_* helpers (inlined from avx512fintrin.h) as "maybe
// uninitialized" under -O3; the diagnostic state that applies is the one in force where the header
// is included, hence before it.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <dnnl.hpp>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>

#include "tensor/cpu_internal.h"
#include "tensor/tensor.h"

namespace seqit::tensor::detail {

// ---- scratch
// -------------------------------------------------------------------------------------

float* scratch_f32(int slot, size_t count) {
  if (slot < 0 || slot >= kScratchSlots) fail("tensor", "scratch slot out of range");
  struct Buffer {
    float* data = nullptr;
    size_t capacity = 0;
    ~Buffer() { std::free(data); }
  };
  thread_local Buffer buffers[kScratchSlots];
  Buffer& b = buffers[slot];
  if (b.capacity < count) {
    std::free(b.data);
    const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
    b.data = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!b.data)
      throw Error("tensor: out of memory for " + std::to_string(bytes) + " bytes of scratch");
    b.capacity = count;
  }
  return b.data;
}

// ---- oneDNN
// --------------------------------------------------------------------------------------

namespace {

dnnl::engine& cpu_engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}
dnnl::stream& cpu_stream() {
  // Streams are not thread-safe; primitives are. One stream per calling thread.
  thread_local dnnl::stream stream(cpu_engine());
  return stream;
}

dnnl::memory::data_type onednn_type(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return dnnl::memory::data_type::f32;
    case DType::bf16:
      return dnnl::memory::data_type::bf16;
    case DType::f16:
      return dnnl::memory::data_type::f16;
    default:
      fail("matmul", "integer operands are not supported");
  }
}

struct GemmShape {
  int64_t batch, m, n, k;
  MatrixRef a, b;
  MutableMatrixRef c;
  bool bias, accumulate;
  float alpha;
  int threads = 0;  // the OpenMP threads the primitive is created and run with (run_onednn sets it)
  bool b_packed = false;  // b's data is in packed_b_desc's layout (pack_b), not b's strides
};

// A product below this many FLOPs (~0.1-0.2 ms on one core) runs on one thread: splitting it saves
// less than a parallel region can cost on a machine shared with other processes, where each region
// may wait a scheduler slice for its second thread (stories260K, dim 64, 4x256-token batches: most
// of its GEMMs are 8-22 MFLOP). Not higher: LoRA's rank-16 products of a 1024-token batch (~34
// MFLOP, skinny, slow on one thread) lost 4% of the 155.7M Llama's LoRA step at 64 MFLOP.
constexpr double kGemmParallelFlops = 24e6;

dnnl::memory::desc matrix_desc(int64_t batch, DType dtype, int64_t rows, int64_t cols, int64_t rs,
                               int64_t cs, int64_t bs) {
  if (batch == 1) return dnnl::memory::desc({rows, cols}, onednn_type(dtype), {rs, cs});
  return dnnl::memory::desc({batch, rows, cols}, onednn_type(dtype), {bs, rs, cs});
}

// Everything a primitive depends on (not the data pointers).
using CacheKey = std::array<int64_t, 20>;
CacheKey cache_key(const GemmShape& s) {
  uint32_t alpha_bits = 0;
  std::memcpy(&alpha_bits, &s.alpha, sizeof alpha_bits);
  return {s.batch,
          s.m,
          s.n,
          s.k,
          s.a.row_stride,
          s.a.col_stride,
          s.a.batch_stride,
          s.b.row_stride,
          s.b.col_stride,
          s.b.batch_stride,
          s.c.row_stride,
          s.c.col_stride,
          s.c.batch_stride,
          static_cast<int64_t>(s.a.dtype),
          static_cast<int64_t>(s.b.dtype),
          static_cast<int64_t>(s.c.dtype),
          (s.bias ? 1 : 0) | (s.accumulate ? 2 : 0),
          static_cast<int64_t>(alpha_bits),
          s.threads,
          s.b_packed ? 1 : 0};
}
struct CacheKeyHash {
  size_t operator()(const CacheKey& key) const {
    uint64_t h = 1469598103934665603ull;  // FNV-1a over the values
    for (int64_t v : key) h = (h ^ static_cast<uint64_t>(v)) * 1099511628211ull;
    return static_cast<size_t>(h);
  }
};

// The blocked layout oneDNN's matmul reads its weights operand B [k, n] in without copying it: the
// one it picks when left free to choose (format any), for a product of kPackRows rows. Its brgemm
// kernels otherwise copy a plain B into such a layout inside every product. The layout depends on
// k, n and the dtype, not on the rows (products of 16 rows take it as well, tested): one per shape,
// shared by every thread. An empty desc (zero size) where the kernel oneDNN picks is not a brgemm
// one (no copy to save).
constexpr int64_t kPackRows = 512;
dnnl::memory::desc packed_b_desc(int64_t k, int64_t n, DType dtype) {
  static std::mutex mutex;
  static std::map<std::tuple<int64_t, int64_t, int>, dnnl::memory::desc> descs;
  const std::lock_guard lock(mutex);
  const auto key = std::make_tuple(k, n, static_cast<int>(dtype));
  if (auto it = descs.find(key); it != descs.end()) return it->second;
  dnnl::memory::desc packed;
  try {
    const dnnl::memory::desc a({kPackRows, k}, onednn_type(dtype), {k, 1});
    const dnnl::memory::desc b({k, n}, onednn_type(dtype), dnnl::memory::format_tag::any);
    const dnnl::memory::desc c({kPackRows, n}, dnnl::memory::data_type::f32, {n, 1});
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), cpu_engine());
    if (std::string(pd.impl_info_str()).rfind("brg", 0) == 0) packed = pd.weights_desc();
  } catch (const dnnl::error&) {
    // no matmul for this dtype here: nothing to pack for
  }
  descs.emplace(key, packed);
  return packed;
}

// The descriptors of a product's operands: a [m, k], b [k, n], c [m, n] (batched when batch > 1)
// and the f32 bias [n] broadcast over the rows.
struct OperandDescs {
  dnnl::memory::desc a, b, c, bias;
};
OperandDescs operand_descs(const GemmShape& s) {
  OperandDescs d;
  d.a = matrix_desc(s.batch, s.a.dtype, s.m, s.k, s.a.row_stride, s.a.col_stride, s.a.batch_stride);
  d.b = s.b_packed ? packed_b_desc(s.k, s.n, s.b.dtype)
                   : matrix_desc(s.batch, s.b.dtype, s.k, s.n, s.b.row_stride, s.b.col_stride,
                                 s.b.batch_stride);
  d.c = matrix_desc(s.batch, s.c.dtype, s.m, s.n, s.c.row_stride, s.c.col_stride, s.c.batch_stride);
  if (s.bias) {
    d.bias = s.batch == 1
                 ? dnnl::memory::desc({1, s.n}, dnnl::memory::data_type::f32, {s.n, 1})
                 : dnnl::memory::desc({1, 1, s.n}, dnnl::memory::data_type::f32, {s.n, s.n, 1});
  }
  return d;
}

dnnl::matmul::primitive_desc make_primitive_desc(const GemmShape& s) {
  const OperandDescs d = operand_descs(s);
  dnnl::primitive_attr attr;
  if (s.alpha != 1.0f) attr.set_output_scales(0, {s.alpha});
  if (s.accumulate) {
    dnnl::post_ops ops;
    ops.append_sum(1.0f);
    attr.set_post_ops(ops);
  }
  if (s.bias) {
    return dnnl::matmul::primitive_desc(dnnl::matmul::desc(d.a, d.b, d.bias, d.c), attr,
                                        cpu_engine());
  }
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(d.a, d.b, d.c), attr, cpu_engine());
}

// A primitive with its operands' memory objects and argument map, made once per shape: a call
// only points the memories at its data (building descriptors, memories and the map on every call
// cost a few microseconds of allocation per GEMM, a training step of a small model runs ~40).
struct CachedMatmul {
  dnnl::matmul primitive;
  dnnl::memory a, b, c, bias;
  std::unordered_map<int, dnnl::memory> args;

  explicit CachedMatmul(const GemmShape& s) : primitive(make_primitive_desc(s)) {
    const dnnl::engine& engine = cpu_engine();
    const OperandDescs d = operand_descs(s);
    a = dnnl::memory(d.a, engine, DNNL_MEMORY_NONE);
    b = dnnl::memory(d.b, engine, DNNL_MEMORY_NONE);
    c = dnnl::memory(d.c, engine, DNNL_MEMORY_NONE);
    args = {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}};
    if (s.bias) {
      bias = dnnl::memory(d.bias, engine, DNNL_MEMORY_NONE);
      args.emplace(DNNL_ARG_BIAS, bias);
    }
  }
};

// Creating a primitive costs 0.2-1.4 ms (ENGINE_NOTES.md); a training step reuses a handful of
// shapes thousands of times. Bounded LRU so that decoding with ever-growing lengths cannot grow it
// forever.
class PrimitiveCache {
 public:
  // One cache per thread (primitive_cache()): no locking.
  CachedMatmul& get(const GemmShape& shape) {
    const CacheKey key = cache_key(shape);
    if (auto it = map_.find(key); it != map_.end()) {
      order_.splice(order_.begin(), order_, it->second.second);
      return *it->second.first;
    }
    auto entry = std::make_unique<CachedMatmul>(shape);
    CachedMatmul& result = *entry;
    order_.push_front(key);
    map_.emplace(key, std::make_pair(std::move(entry), order_.begin()));
    if (map_.size() > kCapacity) {
      map_.erase(order_.back());
      order_.pop_back();
    }
    return result;
  }

 private:
  static constexpr size_t kCapacity = 256;
  std::list<CacheKey> order_;
  std::unordered_map<CacheKey,
                     std::pair<std::unique_ptr<CachedMatmul>, std::list<CacheKey>::iterator>,
                     CacheKeyHash>
      map_;
};

// One cache per thread: Debian's oneDNN is built with DNNL_ENABLE_CONCURRENT_EXEC=OFF, so its
// scratchpad is shared by the primitives of a thread and a primitive must run on the thread that
// created it (two studies' jobs training at once on two threads crashed in JIT code with one
// process-wide cache).
PrimitiveCache& primitive_cache() {
  thread_local PrimitiveCache cache;
  return cache;
}

void run_onednn(GemmShape s, const float* bias) {
  apply_threads();
  // oneDNN (OpenMP runtime) sizes its work split and parallel regions by omp_get_max_threads() at
  // creation and execution: a small product gets a one-thread primitive, run with one thread.
  const double flops = 2.0 * static_cast<double>(s.batch * s.m) * static_cast<double>(s.n * s.k);
  s.threads = flops < kGemmParallelFlops ? 1 : omp_get_max_threads();
  const int restore = omp_get_max_threads();
  if (s.threads != restore) omp_set_num_threads(s.threads);
  struct Restore {
    int threads;
    ~Restore() {
      if (omp_get_max_threads() != threads) omp_set_num_threads(threads);
    }
  } restore_threads{restore};
  CachedMatmul* entry = nullptr;
  try {
    entry = &primitive_cache().get(s);
  } catch (const dnnl::error& e) {
    fail("matmul", std::string("oneDNN has no matmul for this layout: ") + e.what());
  }
  entry->a.set_data_handle(const_cast<void*>(s.a.data));
  entry->b.set_data_handle(const_cast<void*>(s.b.data));
  entry->c.set_data_handle(s.c.data);
  if (s.bias) entry->bias.set_data_handle(const_cast<float*>(bias));
  entry->primitive.execute(cpu_stream(), entry->args);
  cpu_stream().wait();
}

void check_operand(const char* what, const MatrixRef& m) {
  if (m.col_stride != 1 && m.row_stride != 1 && m.rows > 1 && m.cols > 1) {
    fail("matmul", std::string(what) + " needs a unit stride in one of its two last dims");
  }
}

}  // namespace

std::string onednn_f32_implementation() {
  GemmShape s{1,
              64,
              64,
              64,
              {nullptr, DType::f32, 64, 64, 64, 1, 0},
              {nullptr, DType::f32, 64, 64, 1, 64, 0},
              {nullptr, DType::f32, 64, 64, 64, 1, 0},
              false,
              false,
              1.0f};
  return make_primitive_desc(s).impl_info_str();
}

bool onednn_has_fast_bf16() {
  static const bool fast = [] {
    GemmShape s{1,
                64,
                64,
                64,
                {nullptr, DType::bf16, 64, 64, 64, 1, 0},
                {nullptr, DType::bf16, 64, 64, 1, 64, 0},
                {nullptr, DType::f32, 64, 64, 64, 1, 0},
                false,
                false,
                1.0f};
    try {
      const std::string impl = make_primitive_desc(s).impl_info_str();
      return impl.find("ref") == std::string::npos;
    } catch (const dnnl::error&) {
      return false;  // oneDNN 2.6 on AVX2: no bf16 matmul at all
    }
  }();
  return fast;
}

void gemm_f32(int64_t batch, const MatrixRef& a, const MatrixRef& b, const MutableMatrixRef& c,
              const float* bias, float alpha, bool accumulate) {
  if (a.rows == 0 || b.cols == 0) return;
  if (a.cols == 0) {  // empty reduction: c = 0 (+ bias), or unchanged when accumulating
    if (accumulate && !bias) return;
    for (int64_t bi = 0; bi < batch; ++bi)
      for (int64_t r = 0; r < c.rows; ++r) {
        float* row = static_cast<float*>(c.data) + bi * c.batch_stride + r * c.row_stride;
        for (int64_t j = 0; j < c.cols; ++j) {
          float& v = row[j * c.col_stride];
          v = (accumulate ? v : 0.0f) + (bias ? bias[j] : 0.0f);
        }
      }
    return;
  }
  check_operand("a", a);
  check_operand("b", b);
  if (bias && alpha != 1.0f) fail("matmul", "alpha with a bias is not supported");
  GemmShape s{batch, a.rows, b.cols, a.cols, a, b, c, bias != nullptr, accumulate, alpha};
  run_onednn(s, bias);
}

size_t packed_b_bytes(int64_t k, int64_t n, DType dtype) {
  if (k <= 0 || n <= 0 || (dtype != DType::f32 && dtype != DType::bf16)) return 0;
  return packed_b_desc(k, n, dtype).get_size();
}

void pack_b(const MatrixRef& b, void* dst) {
  check_operand("b", b);
  const dnnl::memory::desc packed = packed_b_desc(b.rows, b.cols, b.dtype);
  if (packed.get_size() == 0) fail("pack_b", "no packed layout for this product here");
  apply_threads();
  dnnl::memory src(matrix_desc(1, b.dtype, b.rows, b.cols, b.row_stride, b.col_stride, 0),
                   cpu_engine(), const_cast<void*>(b.data));
  dnnl::memory out(packed, cpu_engine(), dst);
  dnnl::reorder(src, out).execute(cpu_stream(), src, out);
  cpu_stream().wait();
}

namespace {

// Converts n 16-bit (or f32) values at src into dst (serial: called per line inside parallel
// loops).
void load_f32_into(const void* src, DType dtype, float* dst, int64_t n) {
  const float* p = load_f32(src, dtype, dst, n);
  if (p != dst) std::memcpy(dst, p, static_cast<size_t>(n) * sizeof(float));
}

// A dense f32 accumulator for a product into c (a 16-bit c, or one oneDNN cannot write directly):
// scratch slot 2, holding c's values when accumulating. store_accumulator writes it back into c,
// rounded once.
MutableMatrixRef f32_accumulator(int64_t batch, const MutableMatrixRef& c, bool accumulate) {
  float* buffer = scratch_f32(2, static_cast<size_t>(batch * c.rows * c.cols));
  const size_t c_es = dtype_size(c.dtype);
  if (accumulate) {
    const int64_t total = batch * c.rows;
    apply_threads();
#pragma omp parallel for schedule(static) if (total * c.cols >= kParallelThreshold)
    for (int64_t idx = 0; idx < total; ++idx) {
      const int64_t bi = idx / c.rows, r = idx % c.rows;
      const auto* src =
          static_cast<const std::byte*>(c.data) + (bi * c.batch_stride + r * c.row_stride) * c_es;
      load_f32_into(src, c.dtype, buffer + idx * c.cols, c.cols);
    }
  }
  return MutableMatrixRef{buffer, DType::f32, c.rows, c.cols, c.cols, 1, c.rows * c.cols};
}
void store_accumulator(int64_t batch, const MutableMatrixRef& acc, const MutableMatrixRef& c) {
  const size_t c_es = dtype_size(c.dtype);
  const int64_t total = batch * c.rows;
  apply_threads();
#pragma omp parallel for schedule(static) if (total * c.cols >= kParallelThreshold)
  for (int64_t idx = 0; idx < total; ++idx) {
    const int64_t bi = idx / c.rows, r = idx % c.rows;
    auto* dst = static_cast<std::byte*>(c.data) + (bi * c.batch_stride + r * c.row_stride) * c_es;
    store_f32(static_cast<const float*>(acc.data) + idx * c.cols, dst, c.dtype, c.cols);
  }
}

}  // namespace

void gemm_packed_b(const MatrixRef& a, const void* b, DType b_dtype, const MutableMatrixRef& c,
                   const float* bias, float alpha, bool accumulate) {
  if (a.rows == 0 || c.cols == 0) return;
  if (a.dtype != b_dtype) fail("matmul", "a packed weight needs activations of its own dtype");
  if (bias && alpha != 1.0f) fail("matmul", "alpha with a bias is not supported");
  check_operand("a", a);
  if (c.col_stride != 1) fail("matmul", "a packed product needs a unit column stride in c");
  // oneDNN's brgemm takes packed weights only with dense a and c (with a column block of a wider
  // buffer, as a gate or up half is, it fell back to its reference kernel, ~100x slower): strided
  // operands go through dense scratch. a 16-bit c from f32 operands goes through f32 scratch too
  // (rounded once, as gemm_any does); so does a strided one (rounded once, as oneDNN would).
  const size_t a_es = dtype_size(a.dtype);
  MatrixRef a_dense = a;
  if (a.col_stride != 1 || a.row_stride != a.cols) {
    auto* dst = reinterpret_cast<std::byte*>(
        scratch_f32(1, (static_cast<size_t>(a.rows * a.cols) * a_es + 3) / 4));
    for (int64_t r = 0; r < a.rows; ++r) {
      const auto* row = static_cast<const std::byte*>(a.data) + r * a.row_stride * a_es;
      if (a.col_stride == 1) {
        std::memcpy(dst + r * a.cols * a_es, row, static_cast<size_t>(a.cols) * a_es);
      } else {
        for (int64_t x = 0; x < a.cols; ++x)
          std::memcpy(dst + (r * a.cols + x) * a_es, row + x * a.col_stride * a_es, a_es);
      }
    }
    a_dense = MatrixRef{dst, a.dtype, a.rows, a.cols, a.cols, 1, 0};
  }
  const bool direct = (c.dtype == DType::f32 || a.dtype == DType::bf16) && c.row_stride == c.cols;
  const MutableMatrixRef c_dense = direct ? c : f32_accumulator(1, c, accumulate);
  // b's strides are not read (b_packed): its layout is packed_b_desc(k, n).
  GemmShape s{1,       a.rows,          c.cols,
              a.cols,  a_dense,         MatrixRef{b, b_dtype, a.cols, c.cols, 0, 0, 0},
              c_dense, bias != nullptr, accumulate,
              alpha};
  s.b_packed = true;
  run_onednn(s, bias);
  if (!direct) store_accumulator(1, c_dense, c);
}

namespace {

// Converts a (possibly transposed) 16-bit or f32 matrix to f32, keeping its orientation: the result
// has strides (cols, 1) when the source is row-major, (1, rows) when it is transposed.
MatrixRef to_f32(int64_t batch, const MatrixRef& m, int slot) {
  if (m.dtype == DType::f32) return m;
  const bool transposed = m.col_stride != 1 && m.row_stride == 1;
  const int64_t lines = transposed ? m.cols : m.rows;  // contiguous runs in the source
  const int64_t run = transposed ? m.rows : m.cols;
  const int64_t line_stride = transposed ? m.col_stride : m.row_stride;
  float* dst = scratch_f32(slot, static_cast<size_t>(batch * lines * run));
  const size_t es = dtype_size(m.dtype);
  // Lines are short (a row of a weight matrix); spread them over the threads.
  const int64_t total = batch * lines;
  apply_threads();
#pragma omp parallel for schedule(static) if (total * run >= kParallelThreshold)
  for (int64_t idx = 0; idx < total; ++idx) {
    const int64_t bi = idx / lines, l = idx % lines;
    const auto* src =
        static_cast<const std::byte*>(m.data) + (bi * m.batch_stride + l * line_stride) * es;
    load_f32_into(src, m.dtype, dst + idx * run, run);
  }
  MatrixRef r = m;
  r.data = dst;
  r.dtype = DType::f32;
  r.batch_stride = lines * run;
  r.row_stride = transposed ? 1 : run;
  r.col_stride = transposed ? run : 1;
  return r;
}

MatrixRef sub_matrix(const MatrixRef& m, int64_t r0, int64_t rows, int64_t c0, int64_t cols) {
  MatrixRef s = m;
  s.data = static_cast<const std::byte*>(m.data) +
           (r0 * m.row_stride + c0 * m.col_stride) * dtype_size(m.dtype);
  s.rows = rows;
  s.cols = cols;
  return s;
}

}  // namespace

void gemm_any(int64_t batch, const MatrixRef& a, const MatrixRef& b, const MutableMatrixRef& c,
              const float* bias, float alpha, bool accumulate) {
  const bool all_f32 = a.dtype == DType::f32 && b.dtype == DType::f32 && c.dtype == DType::f32;
  const bool native16 = a.dtype == DType::bf16 && b.dtype == DType::bf16 &&
                        (c.dtype == DType::f32 || c.dtype == DType::bf16) && onednn_has_fast_bf16();
  if (all_f32 || native16) {
    if (a.rows == 0 || b.cols == 0) return;
    if (bias && alpha != 1.0f) fail("matmul", "alpha with a bias is not supported");
    if (a.cols == 0 && c.dtype != DType::f32)
      fail("matmul", "empty reduction into a 16-bit output");
    if (a.cols == 0) return gemm_f32(batch, a, b, c, bias, alpha, accumulate);
    check_operand("a", a);
    check_operand("b", b);
    GemmShape s{batch, a.rows, b.cols, a.cols, a, b, c, bias != nullptr, accumulate, alpha};
    run_onednn(s, bias);
    return;
  }
  if (c.col_stride != 1) fail("matmul", "a 16-bit output needs a unit column stride");
  // The f32 accumulator: c itself, or scratch holding c's values when accumulating into 16-bit c.
  const MutableMatrixRef c32 = c.dtype == DType::f32 ? c : f32_accumulator(batch, c, accumulate);
  const MatrixRef a32 = to_f32(batch, a, 0);
  if (b.dtype == DType::f32 || batch != 1) {
    gemm_f32(batch, a32, to_f32(batch, b, 1), c32, bias, alpha, accumulate);
  } else {
    // 16-bit b (a weight matrix): convert ~1M elements at a time so no full f32 copy of a large
    // weight (an output embedding) ever exists. Blocks are output columns — each GEMM keeps the
    // full reduction — unless the reduction is so long (> 4096) that a 1M-element column block
    // would be too narrow; then blocks are reduction rows accumulated into c.
    constexpr int64_t kBlockElements = int64_t{1} << 20;
    const int64_t k = b.rows, n = b.cols;
    if (k <= 4096) {
      const int64_t cols_per_block =
          std::max<int64_t>(64, kBlockElements / std::max<int64_t>(k, 1) / 64 * 64);
      for (int64_t c0 = 0; c0 < n; c0 += cols_per_block) {
        const int64_t cols = std::min(cols_per_block, n - c0);
        // c[:, cols] = a · b[:, cols] (+ bias[cols])
        const MatrixRef block = to_f32(1, sub_matrix(b, 0, k, c0, cols), 1);
        MutableMatrixRef c_block = c32;
        c_block.data = static_cast<float*>(c32.data) + c0 * c32.col_stride;
        c_block.cols = cols;
        gemm_f32(1, a32, block, c_block, bias ? bias + c0 : nullptr, alpha, accumulate);
      }
    } else {
      const int64_t rows_per_block =
          std::max<int64_t>(64, kBlockElements / std::max<int64_t>(n, 1) / 64 * 64);
      for (int64_t r0 = 0; r0 < k; r0 += rows_per_block) {
        const int64_t rows = std::min(rows_per_block, k - r0);
        // c (+)= a[:, rows] · b[rows, :]; the bias once, with the first block.
        const MatrixRef block = to_f32(1, sub_matrix(b, r0, rows, 0, n), 1);
        const MatrixRef a_block = sub_matrix(a32, 0, a32.rows, r0, rows);
        gemm_f32(1, a_block, block, c32, r0 == 0 ? bias : nullptr, alpha, accumulate || r0 > 0);
      }
    }
  }
  if (c.dtype != DType::f32) store_accumulator(batch, c32, c);
}

// ---- GEMV
// ----------------------------------------------------------------------------------------
//
// Decoding multiplies one (or a few) activation rows by every weight matrix: 2 flops per weight
// element loaded, so the speed limit is memory bandwidth, not FMA throughput. The kernels stream
// weight rows once, converting bf16/f16 to f32 in registers (bf16 halves the bytes streamed), and
// keep `M x R` accumulators in registers (R weight rows at a time) so each loaded weight vector
// feeds every activation row. Chosen at run time (__builtin_cpu_supports), so one binary is correct
// on AVX2-only and AVX-512 machines whatever -march it was built with.

namespace {

template <typename WT>
inline float load_scalar(const WT* p) {
  if constexpr (std::is_same_v<WT, float>)
    return *p;
  else if constexpr (std::is_same_v<WT, bf16>)
    return bf16_to_f32(*p);
  else
    return f16_to_f32(*p);
}

template <typename WT>
void gemv_block_scalar(int64_t rows, int64_t in, const float* x, int64_t ldx, const WT* w,
                       int64_t ldw, const float* bias, float* y, int64_t ldy, int64_t o0,
                       int64_t o1) {
  for (int64_t o = o0; o < o1; ++o) {
    const WT* wr = w + o * ldw;
    for (int64_t m = 0; m < rows; ++m) {
      float acc = 0;
      const float* xr = x + m * ldx;
      for (int64_t i = 0; i < in; ++i) acc += xr[i] * load_scalar(wr + i);
      y[m * ldy + o] = acc + (bias ? bias[o] : 0.0f);
    }
  }
}

// ---- AVX2 ----
template <typename WT>
__attribute__((target("avx2,fma,f16c"))) inline __m256 load8(const WT* p) {
  if constexpr (std::is_same_v<WT, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<WT, bf16>) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

__attribute__((target("avx2,fma,f16c"))) inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// One tile: MT activation rows x R weight rows, dot products over `in` in MT x R accumulators.
// 1-4 rows run one tile shape per row count over the whole output range (gemv_block_avx2). More
// rows (batched decoding, short prefill chunks) would need one weight row per step to fit the
// registers, and then every FMA also needs an activation vector, which for M x `in` floats no
// longer fits L1: the kernel waits on L2 rather than on memory or the FMA units. So they run tiles
// of 4 activation rows x 3 weight rows (gemv_multi_avx2): 12 accumulators + 3 weight vectors + 1
// activation vector in the 16 registers, the three weight rows (<= 3 x in floats) stay in L1 while
// every 4-row group of activations passes over them, and each weight row still comes from memory
// once.
template <int MT, int R, typename WT>
__attribute__((target("avx2,fma,f16c"))) inline void gemv_tile_avx2(int64_t in, const float* x,
                                                                    int64_t ldx, const WT* w,
                                                                    int64_t ldw, const float* bias,
                                                                    float* y, int64_t ldy,
                                                                    int64_t o) {
  const int64_t in8 = in / 8 * 8;
  __m256 acc[MT][R];
#pragma GCC unroll 8
  for (int m = 0; m < MT; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) acc[m][r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < in8; i += 8) {
    __m256 wv[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) wv[r] = load8(w + (o + r) * ldw + i);
#pragma GCC unroll 8
    for (int m = 0; m < MT; ++m) {
      const __m256 xv = _mm256_loadu_ps(x + m * ldx + i);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[m][r] = _mm256_fmadd_ps(xv, wv[r], acc[m][r]);
    }
  }
  for (int m = 0; m < MT; ++m)
    for (int r = 0; r < R; ++r) {
      float s = hsum8(acc[m][r]);
      const WT* wr = w + (o + r) * ldw;
      for (int64_t i = in8; i < in; ++i) s += x[m * ldx + i] * load_scalar(wr + i);
      y[m * ldy + o + r] = s + (bias ? bias[o + r] : 0.0f);
    }
}

// M activation rows x R weight rows per step, for the fixed row counts (M <= 4).
template <int M, int R, typename WT>
__attribute__((target("avx2,fma,f16c"))) void gemv_block_avx2(int64_t in, const float* x,
                                                              int64_t ldx, const WT* w, int64_t ldw,
                                                              const float* bias, float* y,
                                                              int64_t ldy, int64_t o0, int64_t o1) {
  int64_t o = o0;
  for (; o + R <= o1; o += R) gemv_tile_avx2<M, R, WT>(in, x, ldx, w, ldw, bias, y, ldy, o);
  if (o < o1) gemv_block_scalar<WT>(M, in, x, ldx, w, ldw, bias, y, ldy, o, o1);
}

template <int R, typename WT>
__attribute__((target("avx2,fma,f16c"))) void gemv_rows_avx2(int64_t rows, int64_t in,
                                                             const float* x, int64_t ldx,
                                                             const WT* w, int64_t ldw,
                                                             const float* bias, float* y,
                                                             int64_t ldy, int64_t o) {
  int64_t m = 0;
  for (; m + 4 <= rows; m += 4)
    gemv_tile_avx2<4, R, WT>(in, x + m * ldx, ldx, w, ldw, bias, y + m * ldy, ldy, o);
  switch (rows - m) {
    case 3:
      gemv_tile_avx2<3, R, WT>(in, x + m * ldx, ldx, w, ldw, bias, y + m * ldy, ldy, o);
      break;
    case 2:
      gemv_tile_avx2<2, R, WT>(in, x + m * ldx, ldx, w, ldw, bias, y + m * ldy, ldy, o);
      break;
    case 1:
      gemv_tile_avx2<1, R, WT>(in, x + m * ldx, ldx, w, ldw, bias, y + m * ldy, ldy, o);
      break;
    default:
      break;
  }
}

// Any number of rows: weight rows three at a time, every activation row against each triple.
template <typename WT>
__attribute__((target("avx2,fma,f16c"))) void gemv_multi_avx2(int64_t rows, int64_t in,
                                                              const float* x, int64_t ldx,
                                                              const void* wv, int64_t ldw,
                                                              const float* bias, float* y,
                                                              int64_t ldy, int64_t o0, int64_t o1) {
  const WT* w = static_cast<const WT*>(wv);
  int64_t o = o0;
  for (; o + 3 <= o1; o += 3) gemv_rows_avx2<3, WT>(rows, in, x, ldx, w, ldw, bias, y, ldy, o);
  for (; o < o1; ++o) gemv_rows_avx2<1, WT>(rows, in, x, ldx, w, ldw, bias, y, ldy, o);
}

template <typename WT>
void gemv_multi_scalar(int64_t rows, int64_t in, const float* x, int64_t ldx, const void* w,
                       int64_t ldw, const float* bias, float* y, int64_t ldy, int64_t o0,
                       int64_t o1) {
  gemv_block_scalar<WT>(rows, in, x, ldx, static_cast<const WT*>(w), ldw, bias, y, ldy, o0, o1);
}

// ---- AVX-512 ----
template <typename WT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) inline __m512 load16(
    const WT* p) {
  if constexpr (std::is_same_v<WT, float>) {
    return _mm512_loadu_ps(p);
  } else if constexpr (std::is_same_v<WT, bf16>) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  } else {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
}

template <int M, int R, typename WT>
__attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma,f16c"))) void gemv_block_avx512(
    int64_t in, const float* x, int64_t ldx, const WT* w, int64_t ldw, const float* bias, float* y,
    int64_t ldy, int64_t o0, int64_t o1) {
  const int64_t in16 = in / 16 * 16;
  int64_t o = o0;
  for (; o + R <= o1; o += R) {
    __m512 acc[M][R];
#pragma GCC unroll 8
    for (int m = 0; m < M; ++m)
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) acc[m][r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < in16; i += 16) {
      __m512 wv[R];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) wv[r] = load16(w + (o + r) * ldw + i);
#pragma GCC unroll 8
      for (int m = 0; m < M; ++m) {
        const __m512 xv = _mm512_loadu_ps(x + m * ldx + i);
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) acc[m][r] = _mm512_fmadd_ps(xv, wv[r], acc[m][r]);
      }
    }
    for (int m = 0; m < M; ++m)
      for (int r = 0; r < R; ++r) {
        float s = _mm512_reduce_add_ps(acc[m][r]);
        const WT* wr = w + (o + r) * ldw;
        for (int64_t i = in16; i < in; ++i) s += x[m * ldx + i] * load_scalar(wr + i);
        y[m * ldy + o + r] = s + (bias ? bias[o + r] : 0.0f);
      }
  }
  if (o < o1) gemv_block_scalar<WT>(M, in, x, ldx, w, ldw, bias, y, ldy, o, o1);
}

using GemvBlockFn = void (*)(int64_t, const float*, int64_t, const void*, int64_t, const float*,
                             float*, int64_t, int64_t, int64_t);

// R (weight rows per step) keeps M·R accumulators within the 16 vector registers.
template <int M>
constexpr int rows_per_step() {
  return M == 1 ? 8 : (M <= 2 ? 4 : (M <= 4 ? 2 : 1));
}

template <int M, typename WT>
void avx2_entry(int64_t in, const float* x, int64_t ldx, const void* w, int64_t ldw,
                const float* bias, float* y, int64_t ldy, int64_t o0, int64_t o1) {
  gemv_block_avx2<M, rows_per_step<M>(), WT>(in, x, ldx, static_cast<const WT*>(w), ldw, bias, y,
                                             ldy, o0, o1);
}
template <int M, typename WT>
void avx512_entry(int64_t in, const float* x, int64_t ldx, const void* w, int64_t ldw,
                  const float* bias, float* y, int64_t ldy, int64_t o0, int64_t o1) {
  gemv_block_avx512<M, rows_per_step<M>(), WT>(in, x, ldx, static_cast<const WT*>(w), ldw, bias, y,
                                               ldy, o0, o1);
}
template <int M, typename WT>
void scalar_entry(int64_t in, const float* x, int64_t ldx, const void* w, int64_t ldw,
                  const float* bias, float* y, int64_t ldy, int64_t o0, int64_t o1) {
  gemv_block_scalar<WT>(M, in, x, ldx, static_cast<const WT*>(w), ldw, bias, y, ldy, o0, o1);
}

template <typename WT>
GemvBlockFn pick(GemvIsa isa, int64_t rows) {
  static_assert(kGemvFixedRows == 4, "one entry per row count up to kGemvFixedRows");
  static constexpr GemvBlockFn avx2[] = {avx2_entry<1, WT>, avx2_entry<2, WT>, avx2_entry<3, WT>,
                                         avx2_entry<4, WT>};
  static constexpr GemvBlockFn avx512[] = {avx512_entry<1, WT>, avx512_entry<2, WT>,
                                           avx512_entry<3, WT>, avx512_entry<4, WT>};
  static constexpr GemvBlockFn scalar[] = {scalar_entry<1, WT>, scalar_entry<2, WT>,
                                           scalar_entry<3, WT>, scalar_entry<4, WT>};
  switch (isa) {
    case GemvIsa::kAvx512:
      return avx512[rows - 1];
    case GemvIsa::kAvx2:
      return avx2[rows - 1];
    default:
      return scalar[rows - 1];
  }
}

bool cpu_has_avx2() {
  static const bool has =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && detail::cpu_has_f16c();
  return has;
}
bool cpu_has_avx512() {
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  return has;
}

}  // namespace

std::vector<GemvIsa> available_gemv_isas() {
  std::vector<GemvIsa> isas{GemvIsa::kScalar};
  if (cpu_has_avx2()) isas.push_back(GemvIsa::kAvx2);
  if (cpu_has_avx512()) isas.push_back(GemvIsa::kAvx512);
  return isas;
}

const char* gemv_isa_name(GemvIsa isa) {
  switch (isa) {
    case GemvIsa::kAvx512:
      return "avx512";
    case GemvIsa::kAvx2:
      return "avx2";
    case GemvIsa::kScalar:
      return "scalar";
    default:
      return "auto";
  }
}

void gemv(int64_t rows, int64_t in, int64_t out, const float* x, int64_t ldx, const void* w,
          DType w_dtype, int64_t ldw, const float* bias, float* y, int64_t ldy, GemvIsa isa) {
  if (rows < 1 || rows > kGemvMaxRows)
    fail("gemv", "rows must be 1.." + std::to_string(kGemvMaxRows));
  if (out == 0) return;
  // Every linear of a decode step comes through here: look the best kernel up once.
  static const GemvIsa best = available_gemv_isas().back();
  if (isa == GemvIsa::kAuto) isa = best;
  if ((isa == GemvIsa::kAvx512 && !cpu_has_avx512()) ||
      (isa == GemvIsa::kAvx2 && !cpu_has_avx2())) {
    fail("gemv", std::string("this CPU cannot run the ") + gemv_isa_name(isa) + " kernel");
  }
  // 1-4 rows: the kernels with M x R accumulators (R = 8..2 weight rows per step); more rows: the
  // 4 x 3 tiles of gemv_multi_avx2 (which AVX-512 machines run too).
  using GemvRowsFn = void (*)(int64_t, int64_t, const float*, int64_t, const void*, int64_t,
                              const float*, float*, int64_t, int64_t, int64_t);
  GemvRowsFn multi = nullptr;
  GemvBlockFn fn = nullptr;
  if (rows > kGemvFixedRows) {
    const bool simd = isa != GemvIsa::kScalar;
    switch (w_dtype) {
      case DType::f32:
        multi = simd ? gemv_multi_avx2<float> : gemv_multi_scalar<float>;
        break;
      case DType::bf16:
        multi = simd ? gemv_multi_avx2<bf16> : gemv_multi_scalar<bf16>;
        break;
      case DType::f16:
        multi = simd ? gemv_multi_avx2<f16> : gemv_multi_scalar<f16>;
        break;
      default:
        fail("gemv", "weights must be f32, bf16 or f16");
    }
  } else {
    switch (w_dtype) {
      case DType::f32:
        fn = pick<float>(isa, rows);
        break;
      case DType::bf16:
        fn = pick<bf16>(isa, rows);
        break;
      case DType::f16:
        fn = pick<f16>(isa, rows);
        break;
      default:
        fail("gemv", "weights must be f32, bf16 or f16");
    }
  }
  // Blocks of 16 weight rows; a thread takes a contiguous range of blocks so its stream through the
  // weights is sequential.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (out + kBlock - 1) / kBlock;
  auto run = [&](int64_t o0, int64_t o1) {
    if (multi)
      multi(rows, in, x, ldx, w, ldw, bias, y, ldy, o0, o1);
    else
      fn(in, x, ldx, w, ldw, bias, y, ldy, o0, o1);
  };
  if (out * in * std::min<int64_t>(rows, 4) < kParallelThreshold || blocks < 2) {
    run(0, out);
    return;
  }
  apply_threads();
#pragma omp parallel
  {
    const int64_t threads = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t b0 = blocks * id / threads, b1 = blocks * (id + 1) / threads;
    const int64_t o0 = b0 * kBlock, o1 = std::min(out, b1 * kBlock);
    if (o0 < o1) run(o0, o1);
  }
}

// ---- Packed panels ----------------------------------------------------------------------------
//
// The row-major GEMV tiles above compute dot products along `in`: every FMA needs an activation
// vector as well as a weight vector, and with more than 4 rows the activations no longer fit L1 —
// those kernels reach a third of the FMA peak. Repacking the weights once (at model load) into
// panels of kPanel = 24 output rows stored input-major turns the product into outer products, the
// layout of BLIS/GotoBLAS micro-kernels: per input index i, 3 weight vectors (24 outputs) are
// loaded once and each of up to 4 activation rows is broadcast against them into 4 x 3
// accumulators — 12 FMAs for 3 loads + 4 broadcasts, all from L1. The panel block of kPackedKc
// inputs (24 KB f32) stays in L1 while every 4-row group of activations passes over it, and each
// thread streams its panels from memory once, in address order.
namespace {

constexpr int64_t kPackedKc = 256;

template <typename WT>
void pack_panels_typed(const WT* w, int64_t out, int64_t in, int64_t ldw, WT* panels) {
  const int64_t panels_n = panel_count(out);
  apply_threads();
#pragma omp parallel for schedule(static) if (out * in > kParallelThreshold)
  for (int64_t p = 0; p < panels_n; ++p) {
    WT* dst = panels + p * in * kPanel;
    for (int64_t r = 0; r < kPanel; ++r) {
      const int64_t o = p * kPanel + r;
      if (o < out) {
        const WT* src = w + o * ldw;
        for (int64_t i = 0; i < in; ++i) dst[i * kPanel + r] = src[i];
      } else {
        for (int64_t i = 0; i < in; ++i) dst[i * kPanel + r] = WT{};
      }
    }
  }
}

// Rows r and r + 1 (r even) of one panel, 32 inputs from `src` (the panel at the tile's first
// input), into two rows of 16-bit values: each 32-bit gather at byte 48·i + 2r takes input i's pair
// (row r, row r + 1) — never past the panel row, as r + 1 <= 23 — and two word permutes split the
// pairs into the rows.
__attribute__((target("avx512f,avx512bw"))) inline void unpack_pair_x32_avx512(const uint16_t* src,
                                                                               int r,
                                                                               uint16_t* row_r,
                                                                               uint16_t* row_r1) {
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(static_cast<int>(kPanel * sizeof(uint16_t))));
  const uint16_t* base = src + r;
  const __m512i lo = _mm512_i32gather_epi32(offsets, base, 1);                // inputs 0-15
  const __m512i hi = _mm512_i32gather_epi32(offsets, base + 16 * kPanel, 1);  // inputs 16-31
  alignas(64) static constexpr std::array<uint16_t, 32> kEven = [] {
    std::array<uint16_t, 32> a{};
    for (size_t k = 0; k < a.size(); ++k) a[k] = static_cast<uint16_t>(2 * k);
    return a;
  }();
  const __m512i even = _mm512_load_si512(kEven.data());
  const __m512i odd = _mm512_add_epi16(even, _mm512_set1_epi16(1));
  _mm512_storeu_si512(row_r, _mm512_permutex2var_epi16(lo, even, hi));
  _mm512_storeu_si512(row_r1, _mm512_permutex2var_epi16(lo, odd, hi));
}

bool cpu_has_avx512bw() {
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  return has;
}

// Panels to rows, a tile of kTile inputs of one panel at a time: the tile (kTile x 24 values,
// 3 KiB of bf16) stays in L1 while each of the panel's rows takes its run of kTile. Walking a
// whole row first read the panel (48 KiB of bf16 at I = 1024) at a 24-value stride once per row,
// from L2. 16-bit panels into 16-bit rows (a bf16 prefill's blocks) take two rows per step where
// the CPU has AVX-512BW (unpack_pair_x32_avx512); other rows and a tile's last < 32 inputs are
// copied one value at a time.
template <typename WT, typename DT>
void unpack_panels_typed(const WT* panels, int64_t in, int64_t o0, int64_t o1, DT* dst,
                         bool vector = true) {
  constexpr int64_t kTile = 64;
  constexpr bool k16 = sizeof(WT) == 2 && std::is_same_v<WT, DT>;
  const bool pairs = k16 && vector && cpu_has_avx512bw();
  const int64_t p0 = o0 / kPanel, p1 = (o1 + kPanel - 1) / kPanel;
  apply_threads();
#pragma omp parallel for schedule(static) if ((o1 - o0) * in > kParallelThreshold)
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t r0 = std::max(o0, p * kPanel), r1 = std::min(o1, (p + 1) * kPanel);
    const WT* panel = panels + p * in * kPanel;
    for (int64_t i0 = 0; i0 < in; i0 += kTile) {
      const int64_t n = std::min(kTile, in - i0);
      // Row o's values for inputs [i0 + from, i0 + n), one at a time.
      auto copy_run = [&](int64_t o, int64_t from) {
        const WT* src = panel + i0 * kPanel + o % kPanel;
        DT* row = dst + (o - o0) * in + i0;
        for (int64_t i = from; i < n; ++i) {
          if constexpr (std::is_same_v<DT, float>)
            row[i] = load_scalar(src + i * kPanel);
          else
            row[i] = src[i * kPanel];
        }
      };
      int64_t o = r0;
      if constexpr (k16) {
        if (pairs) {
          const int64_t vec_n = n / 32 * 32;
          if (o % 2 == 1) copy_run(o++, 0);  // pairs start at an even row
          for (; o + 1 < r1; o += 2) {
            for (int64_t i = 0; i < vec_n; i += 32) {
              unpack_pair_x32_avx512(reinterpret_cast<const uint16_t*>(panel + (i0 + i) * kPanel),
                                     static_cast<int>(o % kPanel),
                                     reinterpret_cast<uint16_t*>(dst + (o - o0) * in + i0 + i),
                                     reinterpret_cast<uint16_t*>(dst + (o + 1 - o0) * in + i0 + i));
            }
            copy_run(o, vec_n);
            copy_run(o + 1, vec_n);
          }
        }
      }
      for (; o < r1; ++o) copy_run(o, 0);  // every row, or an unpaired last one
    }
  }
}

// A loaded weight vector pinned to a register. Otherwise GCC folds an f32 load into every row's
// FMA as a memory operand — MR loads of the same vector instead of one — and the 4-row kernel
// becomes load-port bound: 16 loads per 12 FMAs (measured 93 -> 127-147 GFLOP/s on 16 rows).
__attribute__((target("avx2"))) inline __m256 in_register(__m256 v) {
  __asm__("" : "+x"(v));
  return v;
}

// MR activation rows (packed input-major: xp[i·MR + m]) x NP consecutive whole panels (panel q at
// wp + q·pstride) over inputs [0, kc): c[m, q·24 + 0..23] (row stride ldc) = (first ? 0 : c) +
// Σ_i xp[i, m] · panel_q[i, 0..23]. Step i also prefetches pf + i·pf_step unless pf is null
// (pf_step <= 64: the steps cover every line).
template <int MR, int NP, typename WT>
__attribute__((target("avx2,fma,f16c"))) void panel_kernel_avx2(int64_t kc, const float* xp,
                                                                const WT* wp, int64_t pstride,
                                                                float* c, int64_t ldc, bool first,
                                                                const char* pf, int64_t pf_step) {
  constexpr int NV = kPanel / 8;
  // MR·NP·3 accumulator chains must hide the FMA latency (4 cycles, 2 per cycle: 8 chains); with
  // at most 6 (1-2 rows, one panel), S = 2 sets, one for even and one for odd inputs, summed at the
  // end.
  constexpr int S = MR * NP * NV <= 6 ? 2 : 1;
  static_assert(S * MR * NP * NV <= 12, "accumulators must fit the 16 ymm registers");
  __m256 acc[S][MR][NP][NV];
  // Every loop over the accumulators is unrolled so GCC keeps them in registers (a runtime index
  // into acc would put the array in memory and store it on every step).
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < NP; ++q)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        float* cp = c + m * ldc + q * kPanel + v * 8;
        acc[0][m][q][v] = first ? _mm256_setzero_ps() : _mm256_loadu_ps(cp);
        if constexpr (S == 2) acc[S - 1][m][q][v] = _mm256_setzero_ps();
      }
  auto step = [&](auto prefetch, int64_t i, __m256(&a)[MR][NP][NV])
      __attribute__((always_inline, target("avx2,fma,f16c"))) {
    if constexpr (decltype(prefetch)::value) _mm_prefetch(pf + i * pf_step, _MM_HINT_T0);
    // Live registers: the accumulators plus either NV weight vectors and one broadcast (one panel:
    // load the panel's weights, then broadcast row by row) or MR broadcasts and one weight vector
    // (several panels). The other order needs 17 with 4 rows and GCC spills an accumulator to the
    // stack — a store-to-load round trip on every step that halved the 4-row kernel's speed.
    if constexpr (NP == 1) {
      __m256 wv[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) wv[v] = in_register(load8(wp + i * kPanel + v * 8));
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        const __m256 xb = _mm256_broadcast_ss(xp + i * MR + m);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) a[m][0][v] = _mm256_fmadd_ps(xb, wv[v], a[m][0][v]);
      }
    } else {
      __m256 xb[MR];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) xb[m] = _mm256_broadcast_ss(xp + i * MR + m);
#pragma GCC unroll 8
      for (int q = 0; q < NP; ++q)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
          __m256 w = load8(wp + q * pstride + i * kPanel + v * 8);
          if constexpr (MR > 1) w = in_register(w);
#pragma GCC unroll 8
          for (int m = 0; m < MR; ++m) a[m][q][v] = _mm256_fmadd_ps(xb[m], w, a[m][q][v]);
        }
    }
  };
  // The loop is written twice, with and without the prefetch, rather than testing pf on every
  // step: with 4 rows the step is ~25 instructions for 12 FMAs, near the 6-per-cycle dispatch
  // limit, and a compare and branch more per step showed.
  auto steps = [&](auto prefetch) __attribute__((always_inline, target("avx2,fma,f16c"))) {
    int64_t i = 0;
    for (; i + S <= kc; i += S) {
#pragma GCC unroll 2
      for (int s = 0; s < S; ++s) step(prefetch, i + s, acc[s]);
    }
    for (; i < kc; ++i) step(prefetch, i, acc[0]);
  };
  if (pf)
    steps(std::true_type{});
  else
    steps(std::false_type{});
#pragma GCC unroll 8
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
    for (int q = 0; q < NP; ++q)
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        __m256 sum = acc[0][m][q][v];
        if constexpr (S == 2) sum = _mm256_add_ps(sum, acc[S - 1][m][q][v]);
        _mm256_storeu_ps(c + m * ldc + q * kPanel + v * 8, sum);
      }
}

template <int MR, int NP, typename WT>
void panel_kernel_scalar(int64_t kc, const float* xp, const WT* wp, int64_t pstride, float* c,
                         int64_t ldc, bool first, const char*, int64_t) {
  for (int m = 0; m < MR; ++m)
    for (int64_t r = 0; r < NP * kPanel; ++r) {
      const WT* w = wp + (r / kPanel) * pstride + r % kPanel;
      float acc = first ? 0.0f : c[m * ldc + r];
      for (int64_t i = 0; i < kc; ++i) acc += xp[i * MR + m] * load_scalar(w + i * kPanel);
      c[m * ldc + r] = acc;
    }
}

// xp: the activations in the kernel's own layout (f32 values, or bf16 pairs for the dot-product
// kernels).
using PanelKernel = void (*)(int64_t, const void*, const void*, int64_t, float*, int64_t, bool,
                             const char*, int64_t);
template <int MR, int NP, typename WT, bool kSimd>
void panel_entry(int64_t kc, const void* xpv, const void* wp, int64_t pstride, float* c,
                 int64_t ldc, bool first, const char* pf, int64_t pf_step) {
  const auto* w = static_cast<const WT*>(wp);
  const auto* xp = static_cast<const float*>(xpv);
  if constexpr (kSimd)
    panel_kernel_avx2<MR, NP, WT>(kc, xp, w, pstride, c, ldc, first, pf, pf_step);
  else
    panel_kernel_scalar<MR, NP, WT>(kc, xp, w, pstride, c, ldc, first, pf, pf_step);
}

// For MR = 1..G rows (index MR - 1): the kernel for one panel and the one for `wide` panels at
// once. A single thread streaming one panel after another reads ~10-20% below the bandwidth the
// row-major GEMV's 8 row streams reach (measured, f32 and bf16); walking 4 panels (1 row) or 2
// (2 rows) side by side gives the memory system as many streams and fills the accumulators.
// More rows fill them with one panel; several groups of G rows prefetch instead (packed_gemv).
struct PanelKernels {
  PanelKernel one = nullptr;
  PanelKernel wide = nullptr;
  int64_t wide_panels = 1;
};
template <typename WT, bool kSimd>
std::array<PanelKernels, 4> panel_kernels() {
  return {PanelKernels{panel_entry<1, 1, WT, kSimd>, panel_entry<1, 4, WT, kSimd>, 4},
          PanelKernels{panel_entry<2, 1, WT, kSimd>, panel_entry<2, 2, WT, kSimd>, 2},
          PanelKernels{panel_entry<3, 1, WT, kSimd>, panel_entry<3, 1, WT, kSimd>, 1},
          PanelKernels{panel_entry<4, 1, WT, kSimd>, panel_entry<4, 1, WT, kSimd>, 1}};
}

// ---- bf16 panels x bf16 activations: AVX512_BF16 dot products
//
// vdpbf16ps adds, in each f32 lane, the products of two adjacent bf16 pairs: twice the
// multiply-adds of an f32 FMA per instruction, and no widening of the weights. The panels keep
// their layout (24 outputs per input, input-major); a step takes two inputs i, i+1 — two 48-byte
// panel rows, loaded as 64 + 32 bytes — and interleaves them with two vpermt2w into (w[o][i],
// w[o][i+1]) pairs: 16 outputs in a zmm, the other 8 in a ymm. Each activation row contributes
// its (x[i], x[i+1]) pair as one broadcast 32-bit lane. With MR rows a step is 2 permutes and
// 2·MR dot products; groups of 8 rows (16 accumulators) make the permutes a small share.
alignas(64) constexpr uint16_t kPairLow[32] = {0,  24, 1,  25, 2,  26, 3,  27, 4,  28, 5,
                                               29, 6,  30, 7,  31, 8,  32, 9,  33, 10, 34,
                                               11, 35, 12, 36, 13, 37, 14, 38, 15, 39};
alignas(64) constexpr uint16_t kPairHigh[32] = {16, 40, 17, 41, 18, 42, 19, 43, 20, 44, 21,
                                                45, 22, 46, 23, 47, 16, 40, 17, 41, 18, 42,
                                                19, 43, 20, 44, 21, 45, 22, 46, 23, 47};
static_assert(kPanel == 24, "the pair permutes assume 24-output panels");

// MR rows x NP panels over inputs [0, kc) (kc even): xq[j·MR + m] holds row m's bf16 pair for
// inputs (2j, 2j + 1), low half first; otherwise as panel_kernel_avx2.
// A panel's 24 outputs per pair step are 16 + 8 lanes. The 8 (outputs 16-23) of two consecutive
// pair steps share one 16-lane accumulator — step j in its low half, j + 1 in its high half, the
// halves added at the end — so a two-step round issues 3 dot products per row and panel where an
// 8-lane one per step cost a whole 16-lane slot for half the work (4 per round): the kernel is
// bound by the dot-product rate once the weights are in L1 (16 rows). With 1-2 rows the kernel
// streams weights and the extra shuffles of a round cost more than the saved products (~10% with
// the weights in cache): those keep one 8-lane product per step.
template <int MR, int NP>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) void panel_kernel_dp(
    int64_t kc, const void* xpv, const void* wpv, int64_t pstride, float* c, int64_t ldc,
    bool first, const char* pf, int64_t pf_step) {
  static_assert(2 * MR * NP <= 26, "accumulators and operands must fit the 32 zmm registers");
  constexpr bool kShareHigh = MR >= 3;
  const auto* xq = static_cast<const uint32_t*>(xpv);
  const auto* wp = static_cast<const uint16_t*>(wpv);
  // Step j's 48 values are positions [0, 48) of A:B; step j + 1's are [48, 96), that is [16, 64)
  // of B:C, so its indexes are step j's plus 16.
  const __m512i idx_lo = _mm512_load_si512(kPairLow);
  const __m512i idx_hi = _mm512_load_si512(kPairHigh);
  const __m512i idx_lo1 = _mm512_add_epi16(idx_lo, _mm512_set1_epi16(16));
  const __m512i idx_hi1 = _mm512_add_epi16(idx_hi, _mm512_set1_epi16(16));
  __m512 lo[MR][NP];
  __m512 hi[MR][NP];
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      float* cp = c + m * ldc + q * kPanel;
      lo[m][q] = first ? _mm512_setzero_ps() : _mm512_loadu_ps(cp);
      hi[m][q] = first ? _mm512_setzero_ps() : _mm512_zextps256_ps512(_mm256_loadu_ps(cp + 16));
    }
  // One round: pair steps j and j + 1, or only j (`two` false: the block's odd last step, whose
  // high half gets zero weights).
  auto round = [&](auto prefetch, int64_t j, bool two)
      __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16"))) {
    if constexpr (decltype(prefetch)::value) {
      _mm_prefetch(pf + j * pf_step, _MM_HINT_T0);
      if (two) _mm_prefetch(pf + (j + 1) * pf_step, _MM_HINT_T0);
    }
    // Live registers (16 rows in groups of 8, one panel): 16 accumulators, the 4 indexes, the
    // panel's 3 weight vectors and 2 broadcasts plus their blend per row. Several panels (1-2
    // rows): every row's broadcasts first, reused across the panels.
    struct Weights {
      __m512bh l0, l1, h;
    };
    auto weights = [&](int q)
        __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16"))) {
      const uint16_t* w = wp + q * pstride + j * 2 * kPanel;
      const __m512i a = _mm512_loadu_si512(w);
      Weights r;
      if (two) {
        const __m512i b = _mm512_loadu_si512(w + 32);
        const __m512i cc = _mm512_loadu_si512(w + 64);
        r.l0 = reinterpret_cast<__m512bh>(_mm512_permutex2var_epi16(a, idx_lo, b));
        r.l1 = reinterpret_cast<__m512bh>(_mm512_permutex2var_epi16(b, idx_lo1, cc));
        r.h = reinterpret_cast<__m512bh>(
            _mm512_mask_blend_epi16(0xFFFF0000u, _mm512_permutex2var_epi16(a, idx_hi, b),
                                    _mm512_permutex2var_epi16(b, idx_hi1, cc)));
      } else {  // 48 values: no read past them (the panel may end here)
        const __m512i b =
            _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32)));
        r.l0 = reinterpret_cast<__m512bh>(_mm512_permutex2var_epi16(a, idx_lo, b));
        const __m512i h = _mm512_permutex2var_epi16(a, idx_hi, b);
        r.h = reinterpret_cast<__m512bh>(kShareHigh ? _mm512_maskz_mov_epi16(0x0000FFFFu, h) : h);
      }
      return r;
    };
    auto dots = [&](int m, int q, __m512i x0, __m512i x1, const Weights& w)
        __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16"))) {
      lo[m][q] = _mm512_dpbf16_ps(lo[m][q], w.l0, reinterpret_cast<__m512bh>(x0));
      if (two) {
        lo[m][q] = _mm512_dpbf16_ps(lo[m][q], w.l1, reinterpret_cast<__m512bh>(x1));
        hi[m][q] = _mm512_dpbf16_ps(
            hi[m][q], w.h, reinterpret_cast<__m512bh>(_mm512_mask_blend_epi32(0xFF00, x0, x1)));
      } else if constexpr (kShareHigh) {
        hi[m][q] = _mm512_dpbf16_ps(hi[m][q], w.h, reinterpret_cast<__m512bh>(x0));
      } else {  // the low 8 lanes only (the high ones stay 0)
        hi[m][q] = _mm512_zextps256_ps512(_mm256_dpbf16_ps(
            _mm512_castps512_ps256(hi[m][q]),
            reinterpret_cast<__m256bh>(_mm512_castsi512_si256(reinterpret_cast<__m512i>(w.h))),
            reinterpret_cast<__m256bh>(_mm512_castsi512_si256(x0))));
      }
    };
    auto broadcast = [&](int64_t step, int m) __attribute__((always_inline, target("avx512f"))) {
      return _mm512_set1_epi32(static_cast<int>(xq[step * MR + m]));
    };
    if constexpr (NP == 1) {
      const Weights w = weights(0);
#pragma GCC unroll 16
      for (int m = 0; m < MR; ++m)
        dots(m, 0, broadcast(j, m), two ? broadcast(j + 1, m) : _mm512_setzero_si512(), w);
    } else {
      __m512i x0[MR], x1[MR];
#pragma GCC unroll 8
      for (int m = 0; m < MR; ++m) {
        x0[m] = broadcast(j, m);
        x1[m] = two ? broadcast(j + 1, m) : _mm512_setzero_si512();
      }
#pragma GCC unroll 4
      for (int q = 0; q < NP; ++q) {
        const Weights w = weights(q);
#pragma GCC unroll 8
        for (int m = 0; m < MR; ++m) dots(m, q, x0[m], x1[m], w);
      }
    }
  };
  const int64_t pairs = kc / 2;
  int64_t j = 0;
  if constexpr (kShareHigh) {
    if (pf)
      for (; j + 2 <= pairs; j += 2) round(std::true_type{}, j, true);
    else
      for (; j + 2 <= pairs; j += 2) round(std::false_type{}, j, true);
  }
  if (pf)
    for (; j < pairs; ++j) round(std::true_type{}, j, false);
  else
    for (; j < pairs; ++j) round(std::false_type{}, j, false);
#pragma GCC unroll 16
  for (int m = 0; m < MR; ++m)
#pragma GCC unroll 4
    for (int q = 0; q < NP; ++q) {
      float* cp = c + m * ldc + q * kPanel;
      _mm512_storeu_ps(cp, lo[m][q]);
      const __m512 h = hi[m][q];
      _mm256_storeu_ps(
          cp + 16, _mm256_add_ps(_mm512_castps512_ps256(h),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(h), 1))));
    }
}

std::array<PanelKernels, 8> panel_kernels_dp() {
  return {PanelKernels{panel_kernel_dp<1, 1>, panel_kernel_dp<1, 4>, 4},
          PanelKernels{panel_kernel_dp<2, 1>, panel_kernel_dp<2, 2>, 2},
          PanelKernels{panel_kernel_dp<3, 1>, panel_kernel_dp<3, 1>, 1},
          PanelKernels{panel_kernel_dp<4, 1>, panel_kernel_dp<4, 1>, 1},
          PanelKernels{panel_kernel_dp<5, 1>, panel_kernel_dp<5, 1>, 1},
          PanelKernels{panel_kernel_dp<6, 1>, panel_kernel_dp<6, 1>, 1},
          PanelKernels{panel_kernel_dp<7, 1>, panel_kernel_dp<7, 1>, 1},
          PanelKernels{panel_kernel_dp<8, 1>, panel_kernel_dp<8, 1>, 1}};
}

// The packed product's driver, shared by both kernel families: kernels[mr - 1] for groups of up to
// `group` rows; the activations xp of group g start at element g·group·in/per_elem of xp (per_elem
// inputs per element: 1 for f32 values, 2 for bf16 pairs), inputs [k0, ...) of a group of mr rows
// at k0/per_elem·mr elements further. Splits the panels over the threads.
template <typename XE, size_t N>
void drive_panels(int64_t rows, int64_t in, int64_t out, const XE* xp, int64_t per_elem,
                  const std::array<PanelKernels, N>& kernels, int64_t group, const void* panels,
                  DType dtype, const float* bias, float* y, int64_t ldy) {
  const int64_t groups = (rows + group - 1) / group;
  const int64_t panels_n = panel_count(out);
  const size_t panel_elems = static_cast<size_t>(in * kPanel);
  const size_t esize = dtype_size(dtype);
  auto run = [&](int64_t p0, int64_t p1) {
    float tail[kPackedMaxRows * kPanel];  // the last, partial panel's outputs
    // With one group, whole panels go `wide` at a time where they can.
    const int64_t wide = groups == 1 ? kernels[rows - 1].wide_panels : 1;
    for (int64_t p = p0; p < p1;) {
      const int64_t np = p + wide <= p1 && (p + wide) * kPanel <= out ? wide : 1;
      const auto* wp = static_cast<const std::byte*>(panels) + p * panel_elems * esize;
      const int64_t o = p * kPanel, width = std::min(np * kPanel, out - o);
      float* c = width == np * kPanel ? y + o : tail;
      const int64_t ldc = width == np * kPanel ? ldy : kPanel;
      for (int64_t k0 = 0; k0 < in; k0 += kPackedKc) {
        const int64_t kc = std::min(kPackedKc, in - k0);
        const std::byte* block = wp + k0 * kPanel * esize;
        // Only the first group's pass over a block waits on memory; the later passes compute from
        // L1 while the memory system idles. So every pass prefetches its share of the next block
        // (the weights that follow in memory: this panel's next inputs or the next panel) and
        // streaming overlaps computing — measured 1.4-1.6x on 16 rows. One group is plain
        // streams, which the hardware prefetcher follows on its own.
        const int64_t steps = kc / per_elem;
        const int64_t block_bytes = kc * kPanel * static_cast<int64_t>(esize);
        const int64_t share = (block_bytes + groups - 1) / groups;
        const int64_t pf_step = (share + steps - 1) / steps;  // <= 64 bytes when groups > 1
        const auto* next = reinterpret_cast<const char*>(block + block_bytes);
        for (int64_t g = 0; g < groups; ++g) {
          const int64_t mr = std::min<int64_t>(group, rows - g * group);
          const PanelKernels& k = kernels[mr - 1];
          (np == 1 ? k.one : k.wide)(kc, xp + g * group * in / per_elem + k0 / per_elem * mr, block,
                                     static_cast<int64_t>(panel_elems), c + g * group * ldc, ldc,
                                     k0 == 0, groups > 1 ? next + g * share : nullptr, pf_step);
        }
      }
      if (width < np * kPanel || bias)
        for (int64_t m = 0; m < rows; ++m)
          for (int64_t r = 0; r < width; ++r)
            y[m * ldy + o + r] = c[m * ldc + r] + (bias ? bias[o + r] : 0.0f);
      p += np;
    }
  };
  if (out * in * std::min<int64_t>(rows, 4) < kParallelThreshold || panels_n < 2) {
    run(0, panels_n);
    return;
  }
  // Runs of whole panels handed to whichever thread is free: on a shared VM one core is often
  // slower than the other for a while, and with fixed halves the faster one waited at the barrier
  // (three alternating bench_model pairs: 16-sequence gain 8.54x -> 9.32x f32, 4.85x -> 5.45x
  // bf16; single-sequence decode unchanged). A run of >= 8 panels (>= 192 outputs) keeps the
  // weights streaming in address order and the 1-row walk 4 panels wide.
  const int64_t chunk = std::max<int64_t>(8, panels_n / 16);
  const int64_t chunks = (panels_n + chunk - 1) / chunk;
  apply_threads();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t ci = 0; ci < chunks; ++ci) run(ci * chunk, std::min(panels_n, (ci + 1) * chunk));
}

}  // namespace

int64_t panel_count(int64_t out) {
  return (out + kPanel - 1) / kPanel;
}

void pack_panels(const void* w, DType dtype, int64_t out, int64_t in, int64_t ldw, void* panels) {
  switch (dtype) {
    case DType::f32:
      return pack_panels_typed(static_cast<const float*>(w), out, in, ldw,
                               static_cast<float*>(panels));
    case DType::bf16:
      return pack_panels_typed(static_cast<const bf16*>(w), out, in, ldw,
                               static_cast<bf16*>(panels));
    case DType::f16:
      return pack_panels_typed(static_cast<const f16*>(w), out, in, ldw, static_cast<f16*>(panels));
    default:
      fail("pack_weight", "weights must be f32, bf16 or f16");
  }
}

void unpack_panels_f32(const void* panels, DType dtype, int64_t in, int64_t o0, int64_t o1,
                       float* dst) {
  switch (dtype) {
    case DType::f32:
      return unpack_panels_typed(static_cast<const float*>(panels), in, o0, o1, dst);
    case DType::bf16:
      return unpack_panels_typed(static_cast<const bf16*>(panels), in, o0, o1, dst);
    case DType::f16:
      return unpack_panels_typed(static_cast<const f16*>(panels), in, o0, o1, dst);
    default:
      fail("unpack_weight", "weights must be f32, bf16 or f16");
  }
}

void unpack_panels(const void* panels, DType dtype, int64_t in, int64_t o0, int64_t o1, void* dst,
                   bool vector) {
  switch (dtype) {
    case DType::f32:
      return unpack_panels_typed(static_cast<const float*>(panels), in, o0, o1,
                                 static_cast<float*>(dst), vector);
    case DType::bf16:
      return unpack_panels_typed(static_cast<const bf16*>(panels), in, o0, o1,
                                 static_cast<bf16*>(dst), vector);
    case DType::f16:
      return unpack_panels_typed(static_cast<const f16*>(panels), in, o0, o1,
                                 static_cast<f16*>(dst), vector);
    default:
      fail("unpack_weight", "weights must be f32, bf16 or f16");
  }
}

void packed_gemv(int64_t rows, int64_t in, int64_t out, const float* x, int64_t ldx,
                 const void* panels, DType dtype, const float* bias, float* y, int64_t ldy,
                 GemvIsa isa) {
  if (rows < 1 || rows > kPackedMaxRows)
    fail("packed_gemv", "rows must be 1.." + std::to_string(kPackedMaxRows));
  if (out == 0) return;
  const bool simd = isa != GemvIsa::kScalar && cpu_has_avx2();
  std::array<PanelKernels, 4> kernels;
  switch (dtype) {
    case DType::f32:
      kernels = simd ? panel_kernels<float, true>() : panel_kernels<float, false>();
      break;
    case DType::bf16:
      kernels = simd ? panel_kernels<bf16, true>() : panel_kernels<bf16, false>();
      break;
    case DType::f16:
      kernels = simd ? panel_kernels<f16, true>() : panel_kernels<f16, false>();
      break;
    default:
      fail("packed_gemv", "weights must be f32, bf16 or f16");
  }
  // Activations input-major in groups of 4 rows (the last group 1-3 rows): group g at
  // xp + g·4·in, element (i, m) at i·MR + m. Shared, read-only, by every thread.
  const int64_t groups = (rows + 3) / 4;
  float* xp = scratch_f32(4, static_cast<size_t>(rows * in));
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t mr = std::min<int64_t>(4, rows - g * 4);
    float* dst = xp + g * 4 * in;
    for (int64_t m = 0; m < mr; ++m) {
      const float* src = x + (g * 4 + m) * ldx;
      for (int64_t i = 0; i < in; ++i) dst[i * mr + m] = src[i];
    }
  }
  drive_panels(rows, in, out, xp, 1, kernels, 4, panels, dtype, bias, y, ldy);
}

bool cpu_has_avx512_bf16() {
  static const bool has = cpu_has_avx512() && __builtin_cpu_supports("avx512bf16");
  return has;
}

void packed_gemv_bf16(int64_t rows, int64_t in, int64_t out, const void* x, DType x_dtype,
                      int64_t ldx, const void* panels, const float* bias, float* y, int64_t ldy) {
  if (rows < 1 || rows > kPackedMaxRows)
    fail("packed_gemv", "rows must be 1.." + std::to_string(kPackedMaxRows));
  if (!cpu_has_avx512_bf16()) fail("packed_gemv", "this CPU has no AVX512_BF16");
  if (in % 2 != 0) fail("packed_gemv", "bf16 dot products need an even input size");
  if (x_dtype != DType::f32 && x_dtype != DType::bf16)
    fail("packed_gemv", "activations must be f32 or bf16");
  if (out == 0) return;
  static const std::array<PanelKernels, 8> kernels = panel_kernels_dp();
  // bf16 pairs, input-major in groups of 8 rows: group g at xq + g·8·in/2, pair (j, m) at j·MR + m.
  constexpr int64_t kGroup = 8;  // (6 and 12 measured 5-10% slower on 16 rows)
  const int64_t groups = (rows + kGroup - 1) / kGroup, pairs = in / 2;
  auto* xq = reinterpret_cast<uint32_t*>(scratch_f32(4, static_cast<size_t>(rows * pairs)));
  const size_t xs = dtype_size(x_dtype);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t mr = std::min<int64_t>(kGroup, rows - g * kGroup);
    uint32_t* dst = xq + g * kGroup * pairs;
    for (int64_t m = 0; m < mr; ++m) {
      const void* src = static_cast<const std::byte*>(x) + (g * kGroup + m) * ldx * xs;
      for (int64_t j = 0; j < pairs; ++j) {
        uint32_t lo, hi;
        if (x_dtype == DType::f32) {
          lo = f32_to_bf16(static_cast<const float*>(src)[2 * j]).bits;
          hi = f32_to_bf16(static_cast<const float*>(src)[2 * j + 1]).bits;
        } else {
          lo = static_cast<const bf16*>(src)[2 * j].bits;
          hi = static_cast<const bf16*>(src)[2 * j + 1].bits;
        }
        dst[j * mr + m] = lo | hi << 16;
      }
    }
  }
  drive_panels(rows, in, out, xq, 2, kernels, kGroup, panels, DType::bf16, bias, y, ldy);
}

}  // namespace seqit::tensor::detail
