// The op set the model, inference and training code is written in: explicit forward and backward
// functions, llm.c style, no autograd. Each call dispatches on the device of its tensors to a
// Backend (backend.h): the CPU backend now, a CUDA one later, with no change to code written
// against this header.
//
// Conventions (every op):
// - Tensors are handles. Outputs are passed as `const Tensor&` and written through, so a view
//   (`cache.narrow(1, pos, 1)`, `qkv.narrow(-1, 0, q_dim)`) can be passed directly. The caller
//   allocates every output and gradient buffer (the model owns its memory; nothing here allocates
//   per call except small scratch).
// - Shapes in comments: [N, C] means any tensor whose leading dims fold into N rows of C (e.g.
// [B,T,C]).
//   Unless said otherwise, inputs/outputs need a unit stride in the last dim and row strides that
//   fold (rows_view()); a narrowed last dim (a column block of a fused output) is fine.
// - Float tensors may be f32, bf16 or f16; compute and accumulation are f32 (f64 for reductions
// such
//   as norms of gradients); results are rounded once on store.
// - Gradients ACCUMULATE (+=) into their buffers (zero them before a backward pass / an
// accumulation
//   window), except where an op says "writes". An undefined Tensor{} gradient is skipped.
// - Errors (bad shapes, dtypes, devices) throw seqit::Error naming the op and the argument.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tensor/tensor.h"

namespace seqit::tensor {

// ---- linear algebra
// --------------------------------------------------------------------------------

// y[N, O] = x[N, I] · w[O, I]ᵀ (+ bias[O]). w may be f32, bf16 or f16 (e.g. memory-mapped). Rows N
// <= 32 take a weight-streaming GEMV path (decoding), larger N a cached oneDNN GEMM. Writes y.
void linear_forward(const Tensor& y, const Tensor& x, const Tensor& w, const Tensor& bias = {});
// Backward of linear_forward: dx[N, I] += dy·w, dw[O, I] += dyᵀ·x, dbias[O] += Σ_rows dy.
void linear_backward(const Tensor& dx, const Tensor& dw, const Tensor& dbias, const Tensor& dy,
                     const Tensor& x, const Tensor& w);

// A frozen weight w [O, I] (f32 or bf16) packed once into the blocked layout the CPU GEMM reads its
// weight operand in, for one of the two products a trainer runs with it:
//   GemmUse::forward          y = x · wᵀ     (k = I, n = O)
//   GemmUse::input_gradient   dx += dy · w   (k = O, n = I)
// oneDNN's kernels otherwise copy a plain weight into that layout inside every product: ~10% of a
// LoRA step whose base is frozen (the LoRA trainer packs its base once, under bf16 compute). `data`
// is a copy in w's dtype (later changes to w do not reach it) that only the two ops below read;
// their activations must have w's dtype. Undefined (defined() false) where this CPU's GEMM has no
// such layout: callers then keep using the plain weight.
enum class GemmUse { forward, input_gradient };
struct GemmWeight {
  Tensor data;
  int64_t k = 0, n = 0;
  GemmUse use = GemmUse::forward;
  bool defined() const { return data.defined(); }
  DType dtype() const { return data.dtype(); }
};
GemmWeight pack_gemm_weight(const Tensor& w, GemmUse use);
// y[N, O] = x[N, I] · wᵀ (+ bias[O]), w packed for GemmUse::forward: linear_forward's numbers.
void linear_forward(const Tensor& y, const Tensor& x, const GemmWeight& w, const Tensor& bias = {});
// dx[N, I] += dy[N, O] · w, w packed for GemmUse::input_gradient: linear_backward's dx.
void linear_backward_input(const Tensor& dx, const Tensor& dy, const GemmWeight& w);

// A weight matrix w [O, I] repacked once for decoding (inference only: training keeps plain
// weights). `panels` [ceil(O/kPackedPanel), I, kPackedPanel] holds kPackedPanel output rows per
// panel stored input-major, zero-padded: element (o, i) at panels[o / P, i, o % P], same dtype as w
// (f32, bf16 or f16). Few-row products then stream each panel once and reuse every loaded weight
// vector across 4 activation rows (see cpu_gemm.cpp): batched decoding runs at several times the
// FMA rate of the row-major GEMV. The packed copy replaces the plain one; it takes the same memory.
inline constexpr int64_t kPackedPanel = 24;
struct PackedWeight {
  Tensor panels;
  int64_t out = 0, in = 0;
  bool defined() const { return panels.defined(); }
  DType dtype() const { return panels.dtype(); }
};
PackedWeight pack_weight(const Tensor& w);
// The plain [O, I] matrix back (a new tensor, same dtype).
Tensor unpack_weight(const PackedWeight& w);
// y[N, O] = x[N, I] · wᵀ (+ bias[O]) with w packed: up to 64 rows the packed kernel, more rows
// (prefill) oneDNN's GEMM over blocks of unpacked panels. Same results as the plain
// linear_forward up to f32 summation order — except for bf16 weights under bf16 activations
// (below), where x is first rounded to bf16.
void linear_forward(const Tensor& y, const Tensor& x, const PackedWeight& w,
                    const Tensor& bias = {});

// How products with packed bf16 weights (inference) treat f32 activations:
// - kF32: x stays f32 and the weights are widened to f32 (exact up to f32 summation order);
// - kBf16: x is rounded to bf16 and the product runs bf16 x bf16 with f32 accumulation — on a CPU
//   with bf16 arithmetic (AVX512_BF16) through its dot products (oneDNN's bf16 matmul for prefill,
//   vdpbf16ps panels for decoding), twice the f32 multiply-add rate; elsewhere the same rounding
//   through the f32 kernels (so results do not depend on the CPU beyond summation order);
// - kAuto (the default): kBf16 where the CPU has bf16 arithmetic, else kF32 (nothing gets slower).
// The environment variable SEQIT_BF16_ACTIVATIONS=auto|f32|bf16 sets the starting mode. Plain
// (unpacked) weights — training — are not affected: the trainer chooses its compute dtype itself.
enum class Bf16Activations { kAuto, kF32, kBf16 };
void set_bf16_activations(Bf16Activations mode);
// The mode in force, resolved: kF32 or kBf16.
Bf16Activations bf16_activations();

// General (batched) matmul: c[.., M, N] = alpha · a[.., M, K] · b[.., K, N] (+ c when accumulate).
// a and b may be transposed views (strides describe the layout; no copy). Leading batch dims equal.
void matmul(const Tensor& c, const Tensor& a, const Tensor& b, float alpha = 1.0f,
            bool accumulate = false);

// ---- embedding
// -------------------------------------------------------------------------------------

// out[N, C] = table[ids[n], :]; ids [N] i32 (throws naming the row for an id outside [0, V)).
void embedding_forward(const Tensor& out, const Tensor& ids, const Tensor& table);
// dtable[V, C] += scatter-add of dout[N, C] rows at ids.
void embedding_backward(const Tensor& dtable, const Tensor& dout, const Tensor& ids);

// ---- normalisation, activations, residuals
// ---------------------------------------------------------

// out[N, C] = x / sqrt(mean(x²) + eps) · weight[C]. rstd [N] f32 receives 1/sqrt(mean(x²)+eps) for
// the backward pass (pass Tensor{} when not training). out may alias x.
void rmsnorm_forward(const Tensor& out, const Tensor& rstd, const Tensor& x, const Tensor& weight,
                     float eps);
void rmsnorm_backward(const Tensor& dx, const Tensor& dweight, const Tensor& dout, const Tensor& x,
                      const Tensor& weight, const Tensor& rstd);

// SwiGLU: out[N, F] = silu(gate) · up. gate and up may be column blocks of one fused projection.
// swiglu_backward may write dgate and dup over gate and up (both, the same views): the gradients
// then replace the inputs instead of accumulating (the trainer's backward, which needs no scratch).
void swiglu_forward(const Tensor& out, const Tensor& gate, const Tensor& up);
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up);

// out = a + b (writes; out may alias a or b). Residual backward is add_inplace on the gradients.
void add(const Tensor& out, const Tensor& a, const Tensor& b);
// acc += alpha · x.
void add_inplace(const Tensor& acc, const Tensor& x, float alpha = 1.0f);
// x *= alpha.
void scale_inplace(const Tensor& x, float alpha);

// ---- rotary position embedding
// ---------------------------------------------------------------------

enum class RopeLayout {
  half,         // HF Llama: pairs (x[i], x[i + R/2]) — rotate_half
  interleaved,  // llama2.c / GGUF / Meta: pairs (x[2i], x[2i+1])
};
struct RopeConfig {
  int64_t head_dim = 0;
  int64_t rotary_dim = 0;  // 0 = head_dim; only the first rotary_dim of each head rotate
  double theta = 10000.0;
  RopeLayout layout = RopeLayout::half;
  // Llama 3 frequency scaling ("rope_type": "llama3"); factor 0 = off.
  double llama3_factor = 0.0;
  double llama3_low_freq_factor = 1.0;
  double llama3_high_freq_factor = 4.0;
  int64_t llama3_original_max_position = 8192;
  // Linear position scaling ("rope_type": "linear"): position / linear_factor; 1 = off.
  double linear_factor = 1.0;
};
// The rotary_dim/2 inverse frequencies (after scaling), in f64: theta^(-2i/R) adjusted per config.
std::vector<double> rope_inverse_frequencies(const RopeConfig& config);
// out[..., H, D] = rotate(x) by angle position·inv_freq, one position per token: positions (i32)
// has the shape of x's leading dims ([B, T] for x [B, T, H, D]; [N] for a flattened ragged batch x
// [N, H, D]); packed sequences restart at 0. x/out may be strided views (e.g. q of a fused qkv
// output); out may alias x.
void rope_forward(const Tensor& out, const Tensor& x, const Tensor& positions,
                  const RopeConfig& config);
// The inverse rotation (the backward of rope_forward). Writes dx; dx may alias dout.
void rope_backward(const Tensor& dx, const Tensor& dout, const Tensor& positions,
                   const RopeConfig& config);

// ---- attention
// -------------------------------------------------------------------------------------

struct AttentionOptions {
  float scale = 0.0f;  // 0 = 1/sqrt(head_dim)
  // Packed sequences: [B, T] i32; token t attends only to tokens s <= t with segment_ids[s] ==
  // segment_ids[t] (block-diagonal causal mask). Undefined = plain causal.
  Tensor segment_ids;
};
// Causal grouped-query attention, fused and tiled (online softmax; no T×T matrix):
//   q [B, T, Hq, D], k/v [B, T, Hkv, D] (Hq a multiple of Hkv; query head h uses kv head
//   h/(Hq/Hkv)), out [B, T, Hq, D]. lse [B, Hq, T] f32 receives each row's log-sum-exp for the
//   backward pass (Tensor{} when not training). Strided views (a fused qkv output) are fine.
void attention_forward(const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                       const Tensor& v, const AttentionOptions& options = {});
// Recomputes the probabilities tile by tile from q, k, lse; dq/dk/dv accumulate.
void attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& dout,
                        const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const AttentionOptions& options = {});
// Attention of new tokens against per-sequence KV caches, for batched / continuous generation (a
// ragged batch in one call). The new tokens of S sequences are flattened into q [N, Hq, D]:
// sequence s owns rows [seq_starts[s], seq_starts[s+1]) (seq_starts [S+1] i32, ascending, last =
// N); its first new token sits at absolute position positions[s] ([S] i32), so its row i attends to
// cache entries [0, positions[s] + i] (causal with offset). k_caches[s] / v_caches[s] are [L_s,
// Hkv, D] (f32/bf16/f16, any strides with a unit last dim: a view into a pool, or [Hkv, L, D]
// transposed) and must already hold positions 0 .. positions[s] + n_s - 1 (append the new rows
// first, e.g. k_caches[s].narrow(0, p, n).copy_from(k_new)). Writes out [N, Hq, D]. scale 0 =
// 1/sqrt(D). Sequences with n_s = 0 are allowed. Parallel over (sequence, kv head, query block).
void attention_decode(const Tensor& out, const Tensor& q, std::span<const Tensor> k_caches,
                      std::span<const Tensor> v_caches, const Tensor& seq_starts,
                      const Tensor& positions, float scale = 0.0f);

// ---- loss
// ------------------------------------------------------------------------------------------

struct CrossEntropyResult {
  double loss_sum = 0;  // Σ over counted tokens of -log softmax(logits)[target]
  int64_t tokens = 0;   // targets != ignore_index
};
// logits [N, V] (f32/bf16), targets [N] i32. When dlogits is defined (may alias logits) it is
// WRITTEN with grad_scale · (softmax - onehot), and zero on ignored rows. Row by row: no copy.
CrossEntropyResult cross_entropy(const Tensor& logits, const Tensor& targets, int32_t ignore_index,
                                 const Tensor& dlogits = {}, float grad_scale = 1.0f);
// The output projection fused with the loss: logits = h[N, C] · w[V, C]ᵀ are formed chunk_rows rows
// at a time (never all N×V at once) and dropped after use. When dh / dw are defined their gradients
// (of grad_scale · loss_sum) accumulate. The large-vocabulary training path. With h and w both bf16
// (bf16 compute) each chunk's logit gradient is rounded to bf16 for the two backward GEMMs (a
// chunk_rows × V bf16 buffer more). With bf16 h and an f32 w (bf16 compute over f32 masters), w is
// rounded to bf16 one block of vocabulary rows at a time and the softmax runs online over the
// blocks: no bf16 copy of w and no V-wide logits, for a second logits GEMM (chunk_rows unused). The
// loss and its softmax are f32 throughout. scratch (optional, f32, contiguous): memory the caller
// has idle, used for the chunk's logits (and bf16 gradient) instead of allocating them when it
// holds at least min(chunk_rows, 64) rows of them; chunks are then at most as many rows as it
// holds.
CrossEntropyResult linear_cross_entropy(const Tensor& h, const Tensor& w, const Tensor& targets,
                                        int32_t ignore_index, const Tensor& dh = {},
                                        const Tensor& dw = {}, float grad_scale = 1.0f,
                                        int64_t chunk_rows = 256, const Tensor& scratch = {});
// logprobs [N] f32 = log softmax(logits[n])[targets[n]] (0 for ignored rows): scoring /
// log-likelihood.
void token_logprobs(const Tensor& logprobs, const Tensor& logits, const Tensor& targets,
                    int32_t ignore_index = -100);
// Counts targets != ignore_index (to set grad_scale = 1/tokens before a backward pass).
int64_t count_targets(const Tensor& targets, int32_t ignore_index);
// The rows that a pass over trained rows only takes: those whose target is not ignore_index, in
// order, then the first ignored rows up to a multiple of `multiple` (so that the GEMMs of a
// training see a few row counts, not one per count of trained tokens: each new shape costs oneDNN a
// primitive). `rows` is empty when that block would hold all n rows, or none is trained.
struct TrainedRows {
  int64_t trained = 0;        // rows whose target is not ignore_index
  std::vector<int32_t> rows;  // the block: trained rows first, then the padding
};
TrainedRows padded_trained_rows(std::span<const int32_t> targets, int32_t ignore_index,
                                int64_t multiple);

// ---- LoRA
// ------------------------------------------------------------------------------------------

struct LoraConfig {
  float scale = 1.0f;  // alpha / r (PEFT); or alpha / sqrt(r) for rsLoRA
  float dropout = 0.0f;
  // Dropout mask = hash(seed, element index): reproducible and recomputed in backward, never
  // stored. Vary the seed per step and per layer.
  uint64_t seed = 0;
  // Row r of x takes the mask of row rows[r] (null: of row r), so that a pass over some rows of a
  // batch (the trainer's top layer on the trained rows) drops what the whole batch would. Not
  // owned; as many entries as x has rows.
  const int32_t* rows = nullptr;
};
// y[N, O] += scale · (dropout(x)[N, I] · a[r, I]ᵀ) · b[O, r]ᵀ. xa [N, r] f32 receives dropout(x)·aᵀ
// for the backward pass (PEFT layout: a = lora_A.weight [r, in], b = lora_B.weight [out, r]).
void lora_forward(const Tensor& y, const Tensor& xa, const Tensor& x, const Tensor& a,
                  const Tensor& b, const LoraConfig& config);
// da, db accumulate; dx accumulates (it is the same dx as the frozen base linear's).
void lora_backward(const Tensor& dx, const Tensor& da, const Tensor& db, const Tensor& dy,
                   const Tensor& x, const Tensor& xa, const Tensor& a, const Tensor& b,
                   const LoraConfig& config);

// ---- optimisation
// ----------------------------------------------------------------------------------

struct AdamWConfig {
  float lr = 1e-4f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr · weight_decay · p
};
// One fused AdamW step at 1-based `step` for one parameter. grad (f32/bf16) is multiplied by
// grad_scale first (global clipping, loss scaling). m and v are f32 of param's shape. For a
// bf16/f16 param pass its f32 `master` copy: the update happens in master, then param =
// round(master). For an f32 param pass master = Tensor{}.
void adamw_step(const Tensor& param, const Tensor& master, const Tensor& grad, const Tensor& m,
                const Tensor& v, const AdamWConfig& config, int64_t step, float grad_scale = 1.0f);
// sqrt(Σ over all tensors of Σ g²), accumulated in f64.
double global_grad_norm(std::span<const Tensor> grads);
// Scales every gradient by max_norm / norm when norm > max_norm; returns the norm before clipping.
double clip_grad_norm(std::span<const Tensor> grads, double max_norm);

}  // namespace seqit::tensor
