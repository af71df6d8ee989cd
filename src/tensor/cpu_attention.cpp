// Fused causal grouped-query attention on the CPU: tiled, online softmax (FlashAttention-2 style),
// no T×T matrix anywhere. Forward keeps per query row a running max m, a running sum l and an
// output accumulator; each 64-key tile updates them. Backward recomputes the probabilities of each
// tile from q, k and the saved log-sum-exp. All tile products go through tile_gemm (f32, AVX2).
// Decoding a single new token over f32 caches skips the tiles: see decode_one_token.
//
// Work split: forward and decoding run one item per (sequence, kv head, block of 64 query tokens),
// the R = Hq/Hkv query heads that share the kv head stacked as rows of one tile so each K/V tile is
// loaded once for all of them. Backward runs one item per (sequence, kv head): the item owns the
// dK/dV rows of its kv head and the dQ rows of its query heads, so no two threads write the same
// gradient (no atomics, deterministic sums); parallelism is B·Hkv items.
// See cpu_gemm.cpp: GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized under -O3.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tensor/cpu_backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"
#include "tensor/cpu_math.h"
#include "tensor/cpu_tile.h"

namespace seqit::tensor::detail {

namespace {

constexpr int64_t kBq = 64;  // query tokens per tile
constexpr int64_t kBk = 64;  // keys per tile

// Rows of a [.., H, D] tensor addressed by (b, t, h) with arbitrary strides (unit stride in D).
struct HeadRows {
  std::byte* base = nullptr;
  int64_t s0 = 0, s1 = 0, s2 = 0;  // strides of b, t, h (elements)
  DType dtype = DType::f32;
  int64_t es = 4;
  void* row(int64_t b, int64_t t, int64_t h) const {
    return base + (b * s0 + t * s1 + h * s2) * es;
  }
};

HeadRows head_rows(const char* op, const char* arg, const Tensor& t, bool mutate) {
  check_float(op, arg, t);
  check_cpu(op, arg, t);
  if (t.size(-1) > 1 && t.stride(-1) != 1)
    fail(op, std::string(arg) + " needs a unit stride in head_dim, got " + t.describe());
  if (mutate && !t.is_writable()) fail(op, std::string(arg) + " is read-only");
  HeadRows r;
  r.base = static_cast<std::byte*>(const_cast<void*>(t.raw_data()));
  r.dtype = t.dtype();
  r.es = static_cast<int64_t>(t.element_size());
  if (t.dim() == 4) {
    r.s0 = t.stride(0), r.s1 = t.stride(1), r.s2 = t.stride(2);
  } else {  // [T, H, D] (one sequence, e.g. a cache): b is always 0
    r.s1 = t.stride(0), r.s2 = t.stride(1);
  }
  return r;
}

// A per-thread, grow-only float arena carved into the tiles of one work item.
class Arena {
 public:
  float* take(int64_t n) {
    const size_t start = used_;
    used_ += static_cast<size_t>((n + 15) / 16 * 16);
    // Growing here would move tiles already handed out; reset() sizes the arena for the whole item.
    if (used_ > storage_.size()) fail("attention", "internal: tile arena sized too small");
    return storage_.data() + start;
  }
  // Sizes the arena for `n` floats up front so take() never reallocates within an item.
  void reset(int64_t n) {
    used_ = 0;
    if (storage_.size() < static_cast<size_t>(n)) storage_.resize(static_cast<size_t>(n));
  }

 private:
  std::vector<float> storage_;
  size_t used_ = 0;
};
Arena& thread_arena() {
  thread_local Arena arena;
  return arena;
}

// Loads keys [j0, j1) into Kt [dp][kBk] (transposed) and/or Kr [kBk][dp], and V into V [kBk][dp]
// and/or Vt [dp][kBk], converting to f32; the padding the tile products read (columns up to the
// next multiple of 8 keys, rows/columns beyond head_dim) is 0.
struct KeyTiles {
  float* kt = nullptr;  // [dp][kBk]
  float* kr = nullptr;  // [kBk][dp]
  float* v = nullptr;   // [kBk][dp]
  float* vt = nullptr;  // [dp][kBk]
};
void load_key_tiles(const HeadRows& K, const HeadRows& V, int64_t b, int64_t g, int64_t j0,
                    int64_t j1, int64_t d, int64_t dp, const KeyTiles& tiles, float* row_buffer) {
  const int64_t nk = j1 - j0, w = round_up8(nk);
  // Zero only what the tile products read besides the keys themselves: the transposed tiles'
  // columns [nk, w) and rows [d, dp), the row tiles' columns [d, dp).
  for (float* t : {tiles.kt, tiles.vt}) {
    if (!t) continue;
    if (w > nk)
      for (int64_t x = 0; x < d; ++x) zero_f32(t + x * kBk + nk, w - nk);
    for (int64_t x = d; x < dp; ++x) zero_f32(t + x * kBk, w);
  }
  if (dp > d) {
    for (float* t : {tiles.kr, tiles.v}) {
      if (t)
        for (int64_t j = 0; j < nk; ++j) zero_f32(t + j * dp + d, dp - d);
    }
  }
  for (int64_t j = 0; j < nk; ++j) {
    if (tiles.kt || tiles.kr) {
      const float* kr = load_f32(K.row(b, j0 + j, g), K.dtype, row_buffer, d);
      if (tiles.kt)
        for (int64_t x = 0; x < d; ++x) tiles.kt[x * kBk + j] = kr[x];
      if (tiles.kr) copy_f32(tiles.kr + j * dp, kr, d);
    }
    if (tiles.v || tiles.vt) {
      const float* vr = load_f32(V.row(b, j0 + j, g), V.dtype, row_buffer, d);
      if (tiles.vt)
        for (int64_t x = 0; x < d; ++x) tiles.vt[x * kBk + j] = vr[x];
      if (tiles.v) copy_f32(tiles.v + j * dp, vr, d);
    }
  }
}

// target[0, d) += alpha · acc[0, d): in place for f32 (no round trip through a buffer, whose
// just-written values the next loads would wait for), through `buffer` for 16-bit targets.
inline void accumulate_row(void* target, DType dtype, float alpha, const float* acc, int64_t d,
                           float* buffer) {
  if (dtype == DType::f32) return axpy(alpha, acc, static_cast<float*>(target), d);
  load_f32(target, dtype, buffer, d);
  axpy(alpha, acc, buffer, d);
  store_f32(buffer, target, dtype, d);
}

// Whether key j (absolute) is visible to a query row with causal limit `limit` and segment `seg`.
inline bool visible(int64_t j, int64_t limit, const int32_t* kseg, int32_t seg) {
  return j <= limit && (!kseg || kseg[j] == seg);
}

// Keys of the tile j0 + [0, nk) that a row with causal limit `limit` can see at most: [0, end).
inline int64_t causal_end(int64_t j0, int64_t nk, int64_t limit) {
  return std::clamp<int64_t>(limit - j0 + 1, 0, nk);
}

// Masks one score row (keys j0 + [0, w), of which the first nk exist) and returns its extent e (a
// multiple of 8, <= w): entries [0, e) hold the scores with the invisible ones set to -inf, entries
// [e, w) are 0 and need no softmax (a causal row's later keys: exp would only give 0 there).
// Returns 0 when no key in the tile is visible to the row.
inline int64_t mask_row(float* s, int64_t j0, int64_t nk, int64_t w, int64_t limit,
                        const int32_t* kseg, int32_t seg) {
  const int64_t end = causal_end(j0, nk, limit), e = round_up8(end);
  bool any = end > 0;
  if (kseg) {
    any = false;
    for (int64_t j = 0; j < end; ++j) {
      if (visible(j0 + j, limit, kseg, seg))
        any = true;
      else
        s[j] = -INFINITY;
    }
  }
  for (int64_t j = end; j < e; ++j) s[j] = -INFINITY;
  if (!any) return 0;
  zero_f32(s + e, w - e);
  return e;
}

// Causal attention's early rows see only the first keys of a tile, so S = Q·Kᵀ needs only their
// columns and P·V only their keys; what is left out is 0 in the full product (columns beyond every
// row's extent are masked, keys beyond it have probability 0), so the results are the same. This
// walks the m rows in blocks of 4 and calls product(i0, rows, ext) for each block with a visible
// key, ext being the largest extent(i) of its rows.
template <typename Extent, typename Product>
void causal_row_blocks(int64_t m, Extent&& extent, Product&& product) {
  for (int64_t i0 = 0; i0 < m; i0 += 4) {
    const int64_t rows = std::min<int64_t>(4, m - i0);
    int64_t ext = 0;
    for (int64_t i = i0; i < i0 + rows; ++i) ext = std::max(ext, extent(i));
    if (ext > 0) product(i0, rows, ext);
  }
}

// C (= or +=) A·B over blocks of 4 rows, each block computing only the columns (kColumns) or the
// reduction (otherwise) its rows need: extent(i) for row i (causal_row_blocks).
template <bool kColumns, typename Extent>
void tile_gemm_causal(const float* A, int64_t a_rs, int64_t a_cs, const float* B, int64_t ldb,
                      float* C, int64_t ldc, int64_t m, int64_t k, int64_t n, bool accumulate,
                      Extent&& extent) {
  causal_row_blocks(m, extent, [&](int64_t i0, int64_t rows, int64_t ext) {
    tile_gemm(A + i0 * a_rs, a_rs, a_cs, B, ldb, C + i0 * ldc, ldc, rows, kColumns ? k : ext,
              kColumns ? ext : n, accumulate);
  });
}

// One key tile's online-softmax step over query rows [0, nq): each score row of s (row stride kBk,
// w columns computed) is masked, its max joins the running max m, the row's output accumulator (o,
// row stride ldo) and running sum l are rescaled to it, and s is left holding exp(s - m) — 0 where
// masked and beyond the row's extent, so the tile's P·V needs no mask.
void online_softmax_tile(float* s, int64_t nq, int64_t j0, int64_t nk, int64_t w,
                         const int64_t* limit, const int32_t* qseg, const int32_t* kseg, float* m,
                         float* l, float* o, int64_t ldo) {
  for (int64_t i = 0; i < nq; ++i) {
    float* row = s + i * kBk;
    const int64_t e =
        limit[i] < j0 ? 0 : mask_row(row, j0, nk, w, limit[i], kseg, qseg ? qseg[i] : 0);
    if (e == 0) {
      zero_f32(row, w);  // contributes nothing to P·V
      continue;
    }
    const float mx = max_of(row, e);
    const float m_new = std::max(m[i], mx);
    const float alpha = m[i] == -INFINITY ? 0.0f : exp_scalar(m[i] - m_new);
    const float sum = exp_shift_sum(row, m_new, row, e);
    l[i] = l[i] * alpha + sum;
    if (alpha != 1.0f) scale(o + i * ldo, alpha, ldo);
    m[i] = m_new;
  }
}

// After the last key tile: each output row divided by its softmax sum, and lse = m + log l.
void finish_rows(int64_t nq, const float* m, const float* l, float* o, int64_t ldo, float* lse) {
  for (int64_t i = 0; i < nq; ++i) {
    if (l[i] > 0) {
      scale(o + i * ldo, 1.0f / l[i], ldo);
      lse[i] = m[i] + std::log(l[i]);
    } else {
      lse[i] = -INFINITY;  // no visible key (cannot happen for causal rows: a token sees itself)
    }
  }
}

// The online-softmax forward over one stack of query rows.
//   qs [nq][dp]: queries already multiplied by the softmax scale, zero-padded.
//   limit[i]: last visible key index of row i (causal); qseg/kseg: segment ids or null.
//   Keys [kbegin, kend) are visited in tiles; load(j0, j1, kt, v) fills the key/value tiles.
//   Writes o [nq][dp] (normalised) and lse[nq] (natural log of the softmax denominator).
template <typename LoadTiles>
void attend_rows(const float* qs, int64_t nq, int64_t dp, const int64_t* limit, const int32_t* qseg,
                 const int32_t* kseg, int64_t kbegin, int64_t kend, LoadTiles&& load, float* o,
                 float* lse, Arena& arena) {
  float* kt = arena.take(dp * kBk);
  float* v = arena.take(kBk * dp);
  float* s = arena.take(nq * kBk);
  float* m = arena.take(nq);
  float* l = arena.take(nq);
  zero_f32(o, nq * dp);
  std::fill(m, m + nq, -INFINITY);
  zero_f32(l, nq);
  for (int64_t j0 = kbegin; j0 < kend; j0 += kBk) {
    const int64_t j1 = std::min(kend, j0 + kBk), nk = j1 - j0;
    // Only the tile's first w = round_up8(nk) columns are computed (short sequences: a 40-token
    // row used to pay for 64); the rest of the row stride is never read.
    const int64_t w = round_up8(nk);
    load(j0, j1, kt, v);
    // S = Q·Kᵀ, each block of rows over the keys it can see (the rest of its w columns is masked).
    tile_gemm_causal<true>(qs, dp, 1, kt, kBk, s, kBk, nq, dp, w, false,
                           [&](int64_t i) { return round_up8(causal_end(j0, nk, limit[i])); });
    online_softmax_tile(s, nq, j0, nk, w, limit, qseg, kseg, m, l, o, dp);
    // O += P·V, each block of rows over the keys it can see (P is 0 beyond).
    tile_gemm_causal<false>(s, kBk, 1, v, dp, o, dp, nq, nk, dp, true,
                            [&](int64_t i) { return causal_end(j0, nk, limit[i]); });
  }
  finish_rows(nq, m, l, o, dp, lse);
}

#if defined(SEQIT_AVX2) && defined(__AVX512F__)
// ---- the bf16 tile path
// --------------------------------------------------------------------------- Where q, k and v are
// bf16 (the trainer's bf16 compute), the head dim a multiple of 16 and the CPU has AVX512_BF16, the
// tile products run on bf16 pairs (tile_dp): Q·Kᵀ and dO·Vᵀ exactly as the f32 tiles would on these
// inputs up to summation order, and P·V, dS·K, Pᵀ·dO, dSᵀ·Q with P, dS (and an f32 dO) rounded to
// bf16 first — what FlashAttention does on GPUs; softmax statistics, accumulators and outputs stay
// f32. Twice the multiply-adds per instruction, and the bf16 rows are repacked instead of widened
// to f32.
inline uint32_t bf16_pair(uint16_t lo, uint16_t hi) {
  return static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
}
inline int64_t round_up16(int64_t n) {
  return (n + 15) / 16 * 16;
}
bool bf16_tiles(const HeadRows& Q, const HeadRows& K, const HeadRows& V, int64_t d) {
  return Q.dtype == DType::bf16 && K.dtype == DType::bf16 && V.dtype == DType::bf16 &&
         d % 16 == 0 && attention_has_bf16_tiles();
}
// Keys j0 + [0, nk) of kv head g as pairs along the head dim, transposed: dst[p][j] (row stride
// kBk) = (k[j][2p], k[j][2p + 1]); columns [nk, round_up16(nk)) zero. For S = Q·Kᵀ and dO·Vᵀ.
void pack_keys_transposed(const HeadRows& K, int64_t b, int64_t g, int64_t j0, int64_t nk,
                          int64_t d, uint32_t* dst) {
  const int64_t w = round_up16(nk);
  for (int64_t j = 0; j < nk; ++j) {
    const auto* row = static_cast<const uint32_t*>(K.row(b, j0 + j, g));
    for (int64_t p = 0; p < d / 2; ++p) dst[p * kBk + j] = row[p];
  }
  for (int64_t p = 0; p < d / 2; ++p) std::fill(dst + p * kBk + nk, dst + p * kBk + w, 0u);
}
// Keys as pairs along the key index: dst[p][x] (row stride d) = (k[2p][x], k[2p + 1][x]), a zero
// key after an odd last one. For P·V and dS·K.
void pack_keys_interleaved(const HeadRows& K, int64_t b, int64_t g, int64_t j0, int64_t nk,
                           int64_t d, uint32_t* dst) {
  for (int64_t p = 0; p < (nk + 1) / 2; ++p) {
    const auto* r0 = static_cast<const uint16_t*>(K.row(b, j0 + 2 * p, g));
    const bool two = 2 * p + 1 < nk;
    const auto* r1 = two ? static_cast<const uint16_t*>(K.row(b, j0 + 2 * p + 1, g)) : nullptr;
    for (int64_t x = 0; x < d; ++x) dst[p * d + x] = bf16_pair(r0[x], two ? r1[x] : 0);
  }
}
// rows [n][d] of bf16 bits as pairs along the row index: dst[p][x] = (rows[2p][x], rows[2p+1][x]),
// a zero row after an odd last one. For Pᵀ·dO and dSᵀ·Q (their reduction runs over query rows).
void interleave_rows(const uint16_t* rows, int64_t ld, int64_t n, int64_t d, uint32_t* dst) {
  for (int64_t p = 0; p < (n + 1) / 2; ++p) {
    const uint16_t* r0 = rows + 2 * p * ld;
    const uint16_t* r1 = 2 * p + 1 < n ? r0 + ld : nullptr;
    for (int64_t x = 0; x < d; ++x) dst[p * d + x] = bf16_pair(r0[x], r1 ? r1[x] : 0);
  }
}
// The transpose of tile rows [n][w] (bf16 bits, row stride kBk) as pairs along the rows:
// dst[j][p] (row stride ldd) = (t[2p][j], t[2p + 1][j]), for j < w. For Pᵀ and dSᵀ as A operands.
void transpose_pairs(const uint16_t* t, int64_t n, int64_t w, uint32_t* dst, int64_t ldd) {
  for (int64_t p = 0; p < (n + 1) / 2; ++p) {
    const uint16_t* r0 = t + 2 * p * kBk;
    const uint16_t* r1 = 2 * p + 1 < n ? r0 + kBk : nullptr;
    for (int64_t j = 0; j < w; ++j) dst[j * ldd + p] = bf16_pair(r0[j], r1 ? r1[j] : 0);
  }
}
// f32 tile rows [n][w] (row stride kBk) rounded to bf16 bits (row stride kBk).
void round_tile(const float* t, int64_t n, int64_t w, uint16_t* dst) {
  for (int64_t i = 0; i < n; ++i) store_f32(t + i * kBk, dst + i * kBk, DType::bf16, w);
}
// C (= or +=) A·B over blocks of 4 rows, each block's columns (kColumns) or reduction pairs
// (otherwise) cut to its rows' extent, as tile_gemm_causal: columns round up to 16, reduction
// elements to pairs.
template <bool kColumns, typename Extent>
void tile_dp_causal(const uint32_t* A, int64_t lda, const uint32_t* B, int64_t ldb, float* C,
                    int64_t ldc, int64_t m, int64_t kp, int64_t n, bool accumulate,
                    Extent&& extent) {
  causal_row_blocks(m, extent, [&](int64_t i0, int64_t rows, int64_t ext) {
    tile_dp(A + i0 * lda, lda, B, ldb, C + i0 * ldc, ldc, rows,
            kColumns ? kp : std::min(kp, (ext + 1) / 2),
            kColumns ? std::min(n, round_up16(ext)) : n, accumulate);
  });
}

// attend_rows on the bf16 tile path: q2 [nq][d/2] the scaled queries as bf16 pairs; keys
// [kbegin, kend) of kv head g read from K and V; o [nq][d] and lse as in attend_rows.
void attend_rows_bf16(const uint32_t* q2, int64_t nq, int64_t d, const int64_t* limit,
                      const int32_t* qseg, const int32_t* kseg, const HeadRows& K,
                      const HeadRows& V, int64_t b, int64_t g, int64_t kbegin, int64_t kend,
                      float* o, float* lse, Arena& arena) {
  auto* kt = reinterpret_cast<uint32_t*>(arena.take(d / 2 * kBk));
  auto* v2 = reinterpret_cast<uint32_t*>(arena.take(kBk / 2 * d));
  float* s = arena.take(nq * kBk);
  auto* p16 = reinterpret_cast<uint16_t*>(arena.take(nq * kBk / 2));
  float* m = arena.take(nq);
  float* l = arena.take(nq);
  zero_f32(o, nq * d);
  std::fill(m, m + nq, -INFINITY);
  zero_f32(l, nq);
  for (int64_t j0 = kbegin; j0 < kend; j0 += kBk) {
    const int64_t j1 = std::min(kend, j0 + kBk), nk = j1 - j0, w = round_up16(nk);
    pack_keys_transposed(K, b, g, j0, nk, d, kt);
    pack_keys_interleaved(V, b, g, j0, nk, d, v2);
    tile_dp_causal<true>(q2, d / 2, kt, kBk, s, kBk, nq, d / 2, w, false,
                         [&](int64_t i) { return causal_end(j0, nk, limit[i]); });
    online_softmax_tile(s, nq, j0, nk, w, limit, qseg, kseg, m, l, o, d);
    round_tile(s, nq, w, p16);
    tile_dp_causal<false>(reinterpret_cast<const uint32_t*>(p16), kBk / 2, v2, d, o, d, nq,
                          (nk + 1) / 2, d, true,
                          [&](int64_t i) { return causal_end(j0, nk, limit[i]); });
  }
  finish_rows(nq, m, l, o, d, lse);
}
#endif

// Decoding one new token over f32 caches: its nq query rows (the heads sharing kv head g, scaled
// q in qs, row stride dp) see every cached key [0, kend), so there are no masks and no online
// rescaling, and K and V are read in place from the cache rows — no tiles to fill, transpose and
// pad (the tile path ran at ~1/5 of the read bandwidth on long contexts). Scores for 8 keys at a
// time, one accumulator per key, reduced together; then softmax per row; then O = P·V one row at
// a time with the output in registers. `scores` holds nq·kend floats; o gets nq rows of dp.
// KT: the cache's element type (K and V alike); 16-bit rows are widened 8 values at a time in the
// vector loops and into `row` (d floats) for the scalar tails.
template <typename KT>
void decode_one_token(const float* qs, int64_t nq, int64_t dp, int64_t d, const HeadRows& K,
                      const HeadRows& V, int64_t g, int64_t kend, float* scores, float* o,
                      float* row) {
  [[maybe_unused]] auto key16 = [&](int64_t j) { return static_cast<const KT*>(K.row(0, j, g)); };
  [[maybe_unused]] auto val16 = [&](int64_t j) { return static_cast<const KT*>(V.row(0, j, g)); };
  auto key = [&](int64_t j) { return load_f32(K.row(0, j, g), K.dtype, row, d); };
  auto value = [&](int64_t j) { return load_f32(V.row(0, j, g), V.dtype, row, d); };
  int64_t j = 0;
#ifdef SEQIT_AVX2
  if (d % 8 == 0) {
    for (; j + 8 <= kend; j += 8) {
      const KT* k[8];
      for (int u = 0; u < 8; ++u) k[u] = key16(j + u);
      for (int64_t r = 0; r < nq; ++r) {
        const float* q = qs + r * dp;
        __m256 acc[8];
#pragma GCC unroll 8
        for (int u = 0; u < 8; ++u) acc[u] = _mm256_setzero_ps();
        for (int64_t x = 0; x < d; x += 8) {
          const __m256 qv = _mm256_loadu_ps(q + x);
#pragma GCC unroll 8
          for (int u = 0; u < 8; ++u) acc[u] = _mm256_fmadd_ps(qv, load8_f32(k[u] + x), acc[u]);
        }
        // Eight horizontal sums at once: pairwise hadds leave [s0 s1 s2 s3 | s0' s1' s2' s3'] and
        // [s4 .. s7 | s4' .. s7'] (low and high 128-bit halves); adding the halves gives s0..s7.
        const __m256 h01 = _mm256_hadd_ps(acc[0], acc[1]), h23 = _mm256_hadd_ps(acc[2], acc[3]);
        const __m256 h45 = _mm256_hadd_ps(acc[4], acc[5]), h67 = _mm256_hadd_ps(acc[6], acc[7]);
        const __m256 lo = _mm256_hadd_ps(h01, h23), hi = _mm256_hadd_ps(h45, h67);
        const __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(lo, hi, 0x20),
                                          _mm256_permute2f128_ps(lo, hi, 0x31));
        _mm256_storeu_ps(scores + r * kend + j, sums);
      }
    }
  }
#endif
  for (; j < kend; ++j) {
    const float* kr = key(j);
    for (int64_t r = 0; r < nq; ++r) scores[r * kend + j] = dot(qs + r * dp, kr, d);
  }
  for (int64_t r = 0; r < nq; ++r) {
    float* p = scores + r * kend;
    const float sum = exp_shift_sum(p, max_of(p, kend), p, kend);
    float* out = o + r * dp;
    int64_t x = 0;
#ifdef SEQIT_AVX2
    for (; x + 64 <= d; x += 64) {  // 8 output vectors in registers over all keys
      __m256 acc[8];
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) acc[v] = _mm256_setzero_ps();
      for (int64_t jj = 0; jj < kend; ++jj) {
        const __m256 pj = _mm256_broadcast_ss(p + jj);
        const KT* vr = val16(jj) + x;
#pragma GCC unroll 8
        for (int v = 0; v < 8; ++v) acc[v] = _mm256_fmadd_ps(pj, load8_f32(vr + 8 * v), acc[v]);
      }
#pragma GCC unroll 8
      for (int v = 0; v < 8; ++v) _mm256_storeu_ps(out + x + 8 * v, acc[v]);
    }
#endif
    std::fill(out + x, out + dp, 0.0f);  // the columns the registers did not cover, and the padding
    if (x < d)
      for (int64_t jj = 0; jj < kend; ++jj) axpy(p[jj], value(jj) + x, out + x, d - x);
    detail::scale(out, 1.0f / sum, d);
  }
}

struct AttentionShape {
  int64_t batch, tokens, hq, hkv, d, dp, group;
  float scale;
};

AttentionShape check_attention(const char* op, const Tensor& q, const Tensor& k, const Tensor& v,
                               const AttentionOptions& options) {
  check_dim(op, "q", q, 4);
  check_dim(op, "k", k, 4);
  check_dim(op, "v", v, 4);
  AttentionShape s{};
  s.batch = q.size(0), s.tokens = q.size(1), s.hq = q.size(2), s.d = q.size(3);
  s.hkv = k.size(2);
  if (k.size(0) != s.batch || k.size(1) != s.tokens || k.size(3) != s.d) {
    fail(op, "k " + k.describe() + " does not match q " + q.describe());
  }
  if (v.shape() != k.shape()) fail(op, "v " + v.describe() + " does not match k " + k.describe());
  if (s.hkv == 0 || s.hq % s.hkv != 0) {
    fail(op, "query heads (" + std::to_string(s.hq) + ") must be a multiple of kv heads (" +
                 std::to_string(s.hkv) + ")");
  }
  s.group = s.hq / s.hkv;
  s.dp = round_up8(s.d);
  s.scale = options.scale != 0.0f ? options.scale
                                  : static_cast<float>(1.0 / std::sqrt(static_cast<double>(s.d)));
  if (options.segment_ids.defined()) {
    check_dtype(op, "segment_ids", options.segment_ids, DType::i32);
    check_contiguous(op, "segment_ids", options.segment_ids);
    check_shape(op, "segment_ids", options.segment_ids, {s.batch, s.tokens});
  }
  return s;
}

// For packed rows: run_start[b][t] = first index of the run of equal segment ids containing t, when
// each segment id occupies one contiguous run (the packing case) — keys before a query block's
// first run start can then be skipped. Empty vector when some id repeats non-contiguously (no
// skipping).
std::vector<int64_t> segment_run_starts(const int32_t* seg, int64_t batch, int64_t tokens) {
  std::vector<int64_t> start(static_cast<size_t>(batch * tokens));
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* sb = seg + b * tokens;
    std::vector<int32_t> seen;
    for (int64_t t = 0; t < tokens; ++t) {
      if (t > 0 && sb[t] == sb[t - 1]) {
        start[b * tokens + t] = start[b * tokens + t - 1];
        continue;
      }
      if (std::find(seen.begin(), seen.end(), sb[t]) != seen.end()) return {};
      seen.push_back(sb[t]);
      start[b * tokens + t] = t;
    }
  }
  return start;
}

float* lse_ptr(const char* op, const Tensor& lse, const AttentionShape& s, bool mutate) {
  if (!lse.defined()) return nullptr;
  check_dtype(op, "lse", lse, DType::f32);
  check_contiguous(op, "lse", lse);
  check_shape(op, "lse", lse, {s.batch, s.hq, s.tokens});
  if (mutate) return lse.mutable_data<float>();
  return const_cast<float*>(lse.data<float>());
}

}  // namespace

bool attention_has_bf16_tiles() {
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
  return cpu_has_avx512_bf16();
#else
  return false;  // built without AVX-512: the f32 tiles only
#endif
}

void CpuBackend::attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q,
                                   const Tensor& k, const Tensor& v,
                                   const AttentionOptions& options) {
  const char* op = "attention_forward";
  const AttentionShape s = check_attention(op, q, k, v, options);
  check_shape(op, "out", out, q.shape());
  const HeadRows Q = head_rows(op, "q", q, false), K = head_rows(op, "k", k, false),
                 V = head_rows(op, "v", v, false), O = head_rows(op, "out", out, true);
  float* lse_out = lse_ptr(op, lse, s, true);
  const int32_t* seg =
      options.segment_ids.defined() ? options.segment_ids.data<int32_t>() : nullptr;
  const std::vector<int64_t> run_start =
      seg ? segment_run_starts(seg, s.batch, s.tokens) : std::vector<int64_t>{};
  const int64_t blocks = (s.tokens + kBq - 1) / kBq;
  const int64_t items = s.batch * s.hkv * blocks;
  // (the bf16 tile path takes fewer: its tiles are pairs)
  const int64_t arena_floats =
      4 * s.group * kBq * s.dp + s.group * kBq * (kBk + 8) + 2 * kBk * s.dp + 16 * 64;
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
  const bool bf16 = bf16_tiles(Q, K, V, s.d);
#endif
  apply_threads();
#pragma omp parallel for schedule(dynamic, \
                                  1) if (items > 1 && s.tokens * s.hq * s.d >= kParallelThreshold)
  for (int64_t item = 0; item < items; ++item) {
    // Last query blocks first: they see the most keys (causal), so dynamic scheduling balances.
    const int64_t qb = blocks - 1 - item % blocks;
    const int64_t g = (item / blocks) % s.hkv, b = item / (blocks * s.hkv);
    const int64_t t0 = qb * kBq, t1 = std::min(s.tokens, t0 + kBq), nt = t1 - t0;
    const int64_t nq = s.group * nt;
    Arena& arena = thread_arena();
    arena.reset(arena_floats);
    float* qs = arena.take(nq * s.dp);
    float* o = arena.take(nq * s.dp);
    float* lse_rows = arena.take(nq);
    float* row_buffer = arena.take(s.dp);
    auto* limit = reinterpret_cast<int64_t*>(arena.take(2 * nq));
    auto* qseg = reinterpret_cast<int32_t*>(arena.take(nq));
    // Row r = hr·nt + (t - t0) for query head h = g·R + hr.
    for (int64_t hr = 0; hr < s.group; ++hr) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = hr * nt + (t - t0);
        float* dst = qs + r * s.dp;
        const float* src = load_f32(Q.row(b, t, g * s.group + hr), Q.dtype, row_buffer, s.d);
        for (int64_t x = 0; x < s.d; ++x) dst[x] = src[x] * s.scale;
        std::fill(dst + s.d, dst + s.dp, 0.0f);
        limit[r] = t;
        qseg[r] = seg ? seg[b * s.tokens + t] : 0;
      }
    }
    const int64_t kbegin =
        run_start.empty() ? 0 : run_start[static_cast<size_t>(b * s.tokens + t0)];
    const int32_t* kseg = seg ? seg + b * s.tokens : nullptr;
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
    if (bf16) {
      // The scaled queries as bf16 pairs, written over the start of their f32 rows.
      auto* q16 = reinterpret_cast<uint16_t*>(qs);
      for (int64_t r = 0; r < nq; ++r) store_f32(qs + r * s.dp, q16 + r * s.d, DType::bf16, s.d);
      attend_rows_bf16(reinterpret_cast<const uint32_t*>(q16), nq, s.d, limit, seg ? qseg : nullptr,
                       kseg, K, V, b, g, kbegin, t1, o, lse_rows, arena);
    } else
#endif
    {
      float* key_row = arena.take(s.dp);
      attend_rows(
          qs, nq, s.dp, limit, seg ? qseg : nullptr, kseg, kbegin, t1,
          [&](int64_t j0, int64_t j1, float* kt, float* vv) {
            load_key_tiles(K, V, b, g, j0, j1, s.d, s.dp, KeyTiles{kt, nullptr, vv, nullptr},
                           key_row);
          },
          o, lse_rows, arena);
    }
    for (int64_t hr = 0; hr < s.group; ++hr) {
      const int64_t h = g * s.group + hr;
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = hr * nt + (t - t0);
        store_f32(o + r * s.dp, O.row(b, t, h), O.dtype, s.d);
        if (lse_out) lse_out[(b * s.hq + h) * s.tokens + t] = lse_rows[r];
      }
    }
  }
}

void CpuBackend::attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dout, const Tensor& q, const Tensor& k,
                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                    const AttentionOptions& options) {
  const char* op = "attention_backward";
  const AttentionShape s = check_attention(op, q, k, v, options);
  check_shape(op, "dout", dout, q.shape());
  check_shape(op, "out", out, q.shape());
  check_defined(op, "lse", lse);
  const float* lse_in = lse_ptr(op, lse, s, false);
  const HeadRows Q = head_rows(op, "q", q, false), K = head_rows(op, "k", k, false),
                 V = head_rows(op, "v", v, false), O = head_rows(op, "out", out, false),
                 dO = head_rows(op, "dout", dout, false);
  HeadRows dQ, dK, dV;
  if (dq.defined()) check_shape(op, "dq", dq, q.shape()), dQ = head_rows(op, "dq", dq, true);
  if (dk.defined()) check_shape(op, "dk", dk, k.shape()), dK = head_rows(op, "dk", dk, true);
  if (dv.defined()) check_shape(op, "dv", dv, v.shape()), dV = head_rows(op, "dv", dv, true);
  const int32_t* seg =
      options.segment_ids.defined() ? options.segment_ids.data<int32_t>() : nullptr;
  const std::vector<int64_t> run_start =
      seg ? segment_run_starts(seg, s.batch, s.tokens) : std::vector<int64_t>{};
  const int64_t blocks = (s.tokens + kBq - 1) / kBq;
  const int64_t items = s.batch * s.hkv;
  const int64_t nq_max = s.group * kBq;
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
  const bool bf16 = bf16_tiles(Q, K, V, s.d);
#else
  const bool bf16 = false;
#endif
  // The bf16 tile path's pairs (queries, dO, their row-interleaved forms, three key tiles, P, dS
  // and their transposes) on top.
  const int64_t arena_floats =
      2 * s.tokens * s.dp + 4 * nq_max * s.dp + 2 * nq_max * kBk + 2 * kBk * nq_max +
      4 * kBk * s.dp + 8 * nq_max + 16 * 64 +
      (bf16 ? 2 * nq_max * s.dp + 2 * kBk * s.dp + 2 * nq_max * kBk + 4 * kBk + 16 * 64 : 0);
  apply_threads();
#pragma omp parallel for schedule(dynamic, \
                                  1) if (items > 1 && s.tokens * s.hq * s.d >= kParallelThreshold)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t g = item % s.hkv, b = item / s.hkv;
    Arena& arena = thread_arena();
    arena.reset(arena_floats);
    float* dk_acc = arena.take(s.tokens * s.dp);
    float* dv_acc = arena.take(s.tokens * s.dp);
    zero_f32(dk_acc, s.tokens * s.dp);
    zero_f32(dv_acc, s.tokens * s.dp);
    float* qs = arena.take(nq_max * s.dp);
    float* go = arena.take(nq_max * s.dp);
    float* dq_acc = arena.take(nq_max * s.dp);
    float* p = arena.take(nq_max * kBk);
    float* dp_tile = arena.take(nq_max * kBk);
    float* kt = arena.take(s.dp * kBk);
    float* kr = arena.take(kBk * s.dp);
    float* vt = arena.take(s.dp * kBk);
    float* row_lse = arena.take(nq_max);
    float* delta = arena.take(nq_max);
    float* row_buffer = arena.take(s.dp);
    float* row_buffer2 = arena.take(s.dp);
    auto* limit = reinterpret_cast<int64_t*>(arena.take(2 * nq_max));
    auto* qseg = reinterpret_cast<int32_t*>(arena.take(nq_max));
    const int32_t* kseg = seg ? seg + b * s.tokens : nullptr;
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
    // bf16 tile path: q16, go16 [nq][d] (bits: pairs along d), qi2, goi2 [nq/2][d] (pairs along
    // the rows), kt2, vt2 [d/2][kBk], k2 [kBk/2][d], p16, ds16 [nq][kBk], pt2, dst2 [kBk][ldt].
    uint16_t *q16 = nullptr, *go16 = nullptr, *p16 = nullptr, *ds16 = nullptr;
    uint32_t *qi2 = nullptr, *goi2 = nullptr, *kt2 = nullptr, *vt2 = nullptr, *k2 = nullptr,
             *pt2 = nullptr, *dst2 = nullptr;
    const int64_t ldt = (nq_max + 1) / 2;
    if (bf16) {
      auto pairs = [&](int64_t n) { return reinterpret_cast<uint32_t*>(arena.take(n)); };
      q16 = reinterpret_cast<uint16_t*>(pairs(nq_max * s.d / 2));
      go16 = reinterpret_cast<uint16_t*>(pairs(nq_max * s.d / 2));
      qi2 = pairs(ldt * s.d);
      goi2 = pairs(ldt * s.d);
      kt2 = pairs(s.d / 2 * kBk);
      vt2 = pairs(s.d / 2 * kBk);
      k2 = pairs(kBk / 2 * s.d);
      p16 = reinterpret_cast<uint16_t*>(pairs(nq_max * kBk / 2));
      ds16 = reinterpret_cast<uint16_t*>(pairs(nq_max * kBk / 2));
      pt2 = pairs(kBk * ldt);
      dst2 = pairs(kBk * ldt);
    }
#endif
    for (int64_t qb = 0; qb < blocks; ++qb) {
      const int64_t t0 = qb * kBq, t1 = std::min(s.tokens, t0 + kBq), nt = t1 - t0;
      const int64_t nq = s.group * nt;
      for (int64_t hr = 0; hr < s.group; ++hr) {
        const int64_t h = g * s.group + hr;
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t r = hr * nt + (t - t0);
          const float* src = load_f32(Q.row(b, t, h), Q.dtype, row_buffer, s.d);
          float* qrow = qs + r * s.dp;
          for (int64_t x = 0; x < s.d; ++x) qrow[x] = src[x] * s.scale;
          std::fill(qrow + s.d, qrow + s.dp, 0.0f);
          const float* gsrc = load_f32(dO.row(b, t, h), dO.dtype, row_buffer, s.d);
          float* grow = go + r * s.dp;
          copy_f32(grow, gsrc, s.d);
          std::fill(grow + s.d, grow + s.dp, 0.0f);
          // Δ = Σ dO·O: the softmax backward's row term (dS = P ∘ (dP - Δ)).
          const float* orow = load_f32(O.row(b, t, h), O.dtype, row_buffer2, s.d);
          delta[r] = dot(grow, orow, s.d);
          row_lse[r] = lse_in[(b * s.hq + h) * s.tokens + t];
          limit[r] = t;
          qseg[r] = seg ? seg[b * s.tokens + t] : 0;
        }
      }
      zero_f32(dq_acc, nq * s.dp);
      const int64_t kbegin =
          run_start.empty() ? 0 : run_start[static_cast<size_t>(b * s.tokens + t0)];
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
      if (bf16) {
        for (int64_t r = 0; r < nq; ++r) {
          store_f32(qs + r * s.dp, q16 + r * s.d, DType::bf16, s.d);
          store_f32(go + r * s.dp, go16 + r * s.d, DType::bf16, s.d);
        }
        interleave_rows(q16, s.d, nq, s.d, qi2);
        interleave_rows(go16, s.d, nq, s.d, goi2);
      }
#endif
      for (int64_t j0 = kbegin; j0 < t1; j0 += kBk) {
        const int64_t j1 = std::min(t1, j0 + kBk), nk = j1 - j0;
        // columns computed (as in the forward; the bf16 tiles' vectors are 16 wide)
        const int64_t w = bf16 ? (nk + 15) / 16 * 16 : round_up8(nk);
        auto visible_keys = [&](int64_t i) { return causal_end(j0, nk, limit[i]); };
        if (!bf16) {
          load_key_tiles(K, V, b, g, j0, j1, s.d, s.dp, KeyTiles{kt, kr, nullptr, vt}, row_buffer);
          // S and dP = dO·Vᵀ, each block of rows over the keys it can see (as in the forward).
          auto columns = [&](int64_t i) { return round_up8(visible_keys(i)); };
          tile_gemm_causal<true>(qs, s.dp, 1, kt, kBk, p, kBk, nq, s.dp, w, false, columns);
          tile_gemm_causal<true>(go, s.dp, 1, vt, kBk, dp_tile, kBk, nq, s.dp, w, false, columns);
        }
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
        if (bf16) {
          pack_keys_transposed(K, b, g, j0, nk, s.d, kt2);
          pack_keys_transposed(V, b, g, j0, nk, s.d, vt2);
          pack_keys_interleaved(K, b, g, j0, nk, s.d, k2);
          const auto* q2 = reinterpret_cast<const uint32_t*>(q16);
          const auto* go2 = reinterpret_cast<const uint32_t*>(go16);
          tile_dp_causal<true>(q2, s.d / 2, kt2, kBk, p, kBk, nq, s.d / 2, w, false, visible_keys);
          tile_dp_causal<true>(go2, s.d / 2, vt2, kBk, dp_tile, kBk, nq, s.d / 2, w, false,
                               visible_keys);
        }
#endif
        for (int64_t i = 0; i < nq; ++i) {
          float* prow = p + i * kBk;
          float* dsrow = dp_tile + i * kBk;
          const int64_t e = limit[i] < j0 ? 0 : mask_row(prow, j0, nk, w, limit[i], kseg, qseg[i]);
          if (e == 0) {
            zero_f32(prow, w);
            zero_f32(dsrow, w);
            continue;
          }
          exp_shift_sum(prow, row_lse[i], prow, e);  // P = exp(S - lse); masked -> 0
          for (int64_t j = 0; j < e; ++j) dsrow[j] = prow[j] * (dsrow[j] - delta[i]);
          zero_f32(dsrow + e, w - e);
        }
#if defined(SEQIT_AVX2) && defined(__AVX512F__)
        if (bf16) {
          // The same three products on P and dS rounded to bf16 (pairs along the keys for dS·K,
          // transposed pairs along the query rows for Pᵀ·dO and dSᵀ·Q).
          round_tile(p, nq, w, p16);
          round_tile(dp_tile, nq, w, ds16);
          tile_dp_causal<false>(reinterpret_cast<const uint32_t*>(ds16), kBk / 2, k2, s.d, dq_acc,
                                s.d, nq, (nk + 1) / 2, s.d, true, visible_keys);
          transpose_pairs(p16, nq, nk, pt2, ldt);
          transpose_pairs(ds16, nq, nk, dst2, ldt);
          tile_dp(pt2, ldt, goi2, s.d, dv_acc + j0 * s.d, s.d, nk, (nq + 1) / 2, s.d, true);
          tile_dp(dst2, ldt, qi2, s.d, dk_acc + j0 * s.d, s.d, nk, (nq + 1) / 2, s.d, true);
          continue;
        }
#endif
        // dQ += dS·K over the keys each block of rows can see (dS is 0 beyond).
        tile_gemm_causal<false>(dp_tile, kBk, 1, kr, s.dp, dq_acc, s.dp, nq, nk, s.dp, true,
                                visible_keys);
        // dV += Pᵀ·dO and dK += dSᵀ·(scale·Q): the tiles are read transposed through A's strides.
        tile_gemm(p, 1, kBk, go, s.dp, dv_acc + j0 * s.dp, s.dp, nk, nq, s.dp, true);
        tile_gemm(dp_tile, 1, kBk, qs, s.dp, dk_acc + j0 * s.dp, s.dp, nk, nq, s.dp, true);
      }
      if (dQ.base) {
        for (int64_t hr = 0; hr < s.group; ++hr)
          for (int64_t t = t0; t < t1; ++t) {
            const int64_t r = hr * nt + (t - t0);
            accumulate_row(dQ.row(b, t, g * s.group + hr), dQ.dtype, s.scale, dq_acc + r * s.dp,
                           s.d, row_buffer);
          }
      }
    }
    for (int64_t t = 0; t < s.tokens; ++t) {
      if (dK.base)
        accumulate_row(dK.row(b, t, g), dK.dtype, 1.0f, dk_acc + t * s.dp, s.d, row_buffer);
      if (dV.base)
        accumulate_row(dV.row(b, t, g), dV.dtype, 1.0f, dv_acc + t * s.dp, s.d, row_buffer);
    }
  }
}

void CpuBackend::attention_decode(const Tensor& out, const Tensor& q,
                                  std::span<const Tensor> k_caches,
                                  std::span<const Tensor> v_caches, const Tensor& seq_starts,
                                  const Tensor& positions, float scale) {
  const char* op = "attention_decode";
  check_dim(op, "q", q, 3);
  check_shape(op, "out", out, q.shape());
  const int64_t n = q.size(0), hq = q.size(1), d = q.size(2), dp = round_up8(d);
  check_dtype(op, "seq_starts", seq_starts, DType::i32);
  check_contiguous(op, "seq_starts", seq_starts);
  check_dtype(op, "positions", positions, DType::i32);
  check_contiguous(op, "positions", positions);
  const int64_t sequences = positions.numel();
  if (seq_starts.numel() != sequences + 1) {
    fail(op, "seq_starts must hold sequences + 1 = " + std::to_string(sequences + 1) +
                 " offsets, got " + seq_starts.describe());
  }
  if (static_cast<int64_t>(k_caches.size()) != sequences ||
      static_cast<int64_t>(v_caches.size()) != sequences) {
    fail(op,
         "one k cache and one v cache per sequence (" + std::to_string(sequences) + ") expected");
  }
  const int32_t* starts = seq_starts.data<int32_t>();
  const int32_t* pos = positions.data<int32_t>();
  if (starts[0] != 0 || starts[sequences] != n)
    fail(op, "seq_starts must run from 0 to q rows (" + std::to_string(n) + ")");
  int64_t hkv = -1;
  std::vector<HeadRows> kc(static_cast<size_t>(sequences)), vc(static_cast<size_t>(sequences));
  for (int64_t sq = 0; sq < sequences; ++sq) {
    if (starts[sq + 1] < starts[sq]) fail(op, "seq_starts must not decrease");
    if (pos[sq] < 0) fail(op, "positions[" + std::to_string(sq) + "] is negative");
    const Tensor& kt = k_caches[static_cast<size_t>(sq)];
    const Tensor& vt = v_caches[static_cast<size_t>(sq)];
    const std::string which = "k_caches[" + std::to_string(sq) + "]";
    check_dim(op, which.c_str(), kt, 3);
    if (vt.shape() != kt.shape())
      fail(op, "v_caches[" + std::to_string(sq) + "] does not match " + which);
    if (kt.size(2) != d)
      fail(op, which + " head_dim " + std::to_string(kt.size(2)) + " != q's " + std::to_string(d));
    if (hkv < 0) hkv = kt.size(1);
    if (kt.size(1) != hkv) fail(op, "all caches need the same number of kv heads");
    const int64_t needed = pos[sq] + (starts[sq + 1] - starts[sq]);
    if (kt.size(0) < needed) {
      fail(op, which + " holds " + std::to_string(kt.size(0)) + " positions; " +
                   std::to_string(needed) + " needed");
    }
    kc[static_cast<size_t>(sq)] = head_rows(op, which.c_str(), kt, false);
    vc[static_cast<size_t>(sq)] = head_rows(op, "v_caches", vt, false);
  }
  if (sequences == 0 || n == 0) return;
  if (hkv <= 0 || hq % hkv != 0) fail(op, "query heads must be a multiple of kv heads");
  const int64_t group = hq / hkv;
  const float sc =
      scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
  const HeadRows Q = head_rows(op, "q", q, false), O = head_rows(op, "out", out, true);
  // Items: (sequence, kv head, block of kBq new tokens).
  std::vector<int64_t> item_seq, item_t0;
  for (int64_t sq = 0; sq < sequences; ++sq)
    for (int64_t t0 = starts[sq]; t0 < starts[sq + 1]; t0 += kBq) {
      item_seq.push_back(sq);
      item_t0.push_back(t0);
    }
  const int64_t items = static_cast<int64_t>(item_seq.size()) * hkv;
  int64_t max_keys = 0;
  for (int64_t sq = 0; sq < sequences; ++sq)
    max_keys = std::max<int64_t>(max_keys, pos[sq] + starts[sq + 1] - starts[sq]);
  const int64_t arena_floats = 4 * group * kBq * dp + group * kBq * (kBk + 8) + 2 * kBk * dp +
                               group * (max_keys + 16) + 16 * 64;
  apply_threads();
#pragma omp parallel for schedule(dynamic, 1) if (items > 1)
  for (int64_t item = 0; item < items; ++item) {
    const int64_t g = item % hkv, which = item / hkv;
    const int64_t sq = item_seq[static_cast<size_t>(which)],
                  t0 = item_t0[static_cast<size_t>(which)];
    const int64_t t1 = std::min<int64_t>(starts[sq + 1], t0 + kBq), nt = t1 - t0;
    const int64_t nq = group * nt;
    Arena& arena = thread_arena();
    arena.reset(arena_floats);
    float* qs = arena.take(nq * dp);
    float* o = arena.take(nq * dp);
    float* lse_rows = arena.take(nq);
    float* row_buffer = arena.take(dp);
    auto* limit = reinterpret_cast<int64_t*>(arena.take(2 * nq));
    for (int64_t hr = 0; hr < group; ++hr)
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = hr * nt + (t - t0);
        const float* src = load_f32(Q.row(0, t, g * group + hr), Q.dtype, row_buffer, d);
        float* dst = qs + r * dp;
        for (int64_t x = 0; x < d; ++x) dst[x] = src[x] * sc;
        std::fill(dst + d, dst + dp, 0.0f);
        limit[r] = pos[sq] + (t - starts[sq]);
      }
    const HeadRows& K = kc[static_cast<size_t>(sq)];
    const HeadRows& V = vc[static_cast<size_t>(sq)];
    const int64_t kend = pos[sq] + (t1 - starts[sq]);
    float* key_row = arena.take(dp);
    if (nt == 1 && K.dtype == V.dtype) {
      float* scores = arena.take(nq * kend);
      switch (K.dtype) {
        case DType::f32:
          decode_one_token<float>(qs, nq, dp, d, K, V, g, kend, scores, o, key_row);
          break;
        case DType::bf16:
          decode_one_token<bf16>(qs, nq, dp, d, K, V, g, kend, scores, o, key_row);
          break;
        default:
          decode_one_token<f16>(qs, nq, dp, d, K, V, g, kend, scores, o, key_row);
          break;
      }
    } else {
      attend_rows(
          qs, nq, dp, limit, nullptr, nullptr, 0, kend,
          [&](int64_t j0, int64_t j1, float* kt, float* vv) {
            load_key_tiles(K, V, 0, g, j0, j1, d, dp, KeyTiles{kt, nullptr, vv, nullptr}, key_row);
          },
          o, lse_rows, arena);
    }
    for (int64_t hr = 0; hr < group; ++hr)
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t r = hr * nt + (t - t0);
        store_f32(o + r * dp, O.row(0, t, g * group + hr), O.dtype, d);
      }
  }
}

}  // namespace seqit::tensor::detail
