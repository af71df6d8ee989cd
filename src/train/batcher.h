// Micro-batches of SFT examples: which examples go together (a BatchPlan, fixed by seed and epoch)
// and the arrays a training step reads (a Batch: B rows x T tokens).
//
// Two modes (docs/training.md, "Data → batches"):
//   length_grouped — one example per row. Each epoch: a seeded shuffle, cut into mega-batches of
//                    mega_batch_factor x B examples, each sorted by length (longest first) and cut
//                    into micro-batches of B; the micro-batches are then shuffled. A batch is
//                    padded to its longest example, so similar lengths waste little padding.
//   packed         — several whole examples per row of at most max_len tokens, placed by best-fit
//                    decreasing (each example, longest first, goes to the open row with the least
//                    room that still holds it). Positions restart at 0 for every example and
//                    segment_ids tell the examples of a row apart, so attention stays inside an
//                    example; no target crosses an example boundary.
//
// Determinism: the batches of epoch e depend only on (examples, options, seed, e). A run resumes
// exactly from a BatchPosition {epoch, index} (what BatchStream::position() returns).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/sft_data.h"

namespace seqit::train {

enum class BatchMode { length_grouped, packed };
// "length_grouped" (or "grouped") and "packed"; throws seqit::Error otherwise.
BatchMode parse_batch_mode(std::string_view name);

struct BatchOptions {
  BatchMode mode = BatchMode::length_grouped;
  int64_t batch_size = 1;  // B: rows per micro-batch (at most)
  // The longest row: packed rows hold at most max_len tokens; in both modes an example longer than
  // max_len is an error (build examples with the same max_len, which truncates them). 0 = no limit
  // (length_grouped only).
  int64_t max_len = 2048;
  int64_t mega_batch_factor = 50;  // length_grouped: sort by length within groups of factor x B
  // Most tokens (rows x T, padding included) in one micro-batch; 0 = no budget. A micro-batch then
  // holds fewer rows when its rows are long. Must be >= max_len when set.
  int64_t token_budget = 0;
  // Pad every micro-batch to max_len (fixed shapes) instead of to its longest row.
  bool fixed_length = false;
  bool shuffle =
      true;  // false: examples in their given order (length grouping and packing still apply)
  bool drop_last = false;  // drop an epoch's last micro-batch when it has fewer than B rows
  TokenId pad_id = 0;      // token written in padding (may equal EOS: padding has no target anyway)
};

// One row: the examples it holds, in order (one for length_grouped).
using RowPlan = std::vector<int64_t>;

// One micro-batch: rows of example indices.
struct MicroBatch {
  std::vector<RowPlan> rows;
};

// The arrays of one micro-batch, row-major (B, T).
struct Batch {
  int64_t rows = 0;              // B
  int64_t length = 0;            // T
  std::vector<TokenId> tokens;   // (B, T) pad_id in padding
  std::vector<int32_t> targets;  // (B, T) next-token id, kIgnoreIndex where nothing is trained
  std::vector<int32_t>
      positions;  // (B, T) position inside its example (restarts at 0); 0 in padding
  std::vector<int32_t> segment_ids;  // (B, T) 1, 2, ... per example within its row; 0 in padding
  int64_t real_tokens = 0;           // tokens of examples
  int64_t padded_tokens = 0;         // rows x length - real_tokens

  // Positions that are trained (targets != kIgnoreIndex): the trainer sums these over the
  // micro-batches of an optimizer step and divides the summed loss by the total.
  int64_t count_targets() const;
};

// What an epoch's plan holds and wastes.
struct BatchAccounting {
  int64_t micro_batches = 0;
  int64_t rows = 0;
  int64_t examples = 0;          // examples placed (each exactly once)
  int64_t tokens_kept = 0;       // tokens of the placed examples
  int64_t tokens_truncated = 0;  // tokens the examples lost to max_len when they were built
  int64_t tokens_padded = 0;  // sum over micro-batches of rows x T - tokens: kept + padded = slots
  int64_t slots = 0;          // sum over micro-batches of rows x T
  int64_t target_tokens = 0;  // trained positions
  int64_t dropped_examples = 0;  // left out by drop_last
  double fill() const { return slots > 0 ? double(tokens_kept) / double(slots) : 0.0; }
  std::string describe() const;
};

// Where a run is: the next micro-batch is index `index` of epoch `epoch`.
struct BatchPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  bool operator==(const BatchPosition&) const = default;
};

class BatchPlan {
 public:
  // `examples` must outlive the plan (it keeps a reference). Throws seqit::Error for bad options
  // or an example longer than max_len.
  BatchPlan(const std::vector<Example>& examples, BatchOptions options, uint64_t seed);
  BatchPlan(std::vector<Example>&&, BatchOptions, uint64_t) = delete;  // would dangle

  // The micro-batches of `epoch`, in training order (computed each call; cheap next to training).
  std::vector<MicroBatch> epoch_batches(int64_t epoch) const;
  // The arrays of one micro-batch.
  Batch materialize(const MicroBatch& batch) const;
  // count_targets() of the materialized batch, without building it.
  int64_t count_targets(const MicroBatch& batch) const;
  // Tokens the batch will have (rows x T, padding included).
  int64_t padded_size(const MicroBatch& batch) const;
  BatchAccounting accounting(int64_t epoch) const;

  const BatchOptions& options() const { return options_; }
  uint64_t seed() const { return seed_; }
  const std::vector<Example>& examples() const { return *examples_; }

 private:
  int64_t row_length(const RowPlan& row) const;
  int64_t batch_length(const MicroBatch& batch) const;
  std::vector<MicroBatch> group_rows(const std::vector<RowPlan>& rows) const;

  const std::vector<Example>* examples_;
  BatchOptions options_;
  uint64_t seed_;
};

// Walks the plan's micro-batches epoch after epoch, from a saved position.
class BatchStream {
 public:
  explicit BatchStream(const BatchPlan& plan, BatchPosition start = {});
  // The micro-batch at position(), then advances (to the next epoch after the last batch).
  MicroBatch next();
  // The position of the micro-batch next() returns next: save it with a checkpoint.
  BatchPosition position() const { return position_; }
  int64_t batches_in_epoch();  // of the current epoch

 private:
  void load_epoch();
  const BatchPlan* plan_;
  BatchPosition position_;
  int64_t loaded_epoch_ = -1;
  std::vector<MicroBatch> batches_;
};

// Packing of `lengths` into bins of `capacity` (every length <= capacity); returns the bins as
// indices into `lengths`, each bin in placement order. best_fit_decreasing is what the batcher
// uses; first_fit (in the given order) is the baseline it is measured against.
enum class PackingAlgorithm { best_fit_decreasing, first_fit };
std::vector<RowPlan> pack_rows(const std::vector<int64_t>& lengths,
                               const std::vector<int64_t>& order, int64_t capacity,
                               PackingAlgorithm algorithm);

}  // namespace seqit::train
