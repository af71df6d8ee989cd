#include "train/batcher.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>

#include "train/random_order.h"
#include "util/error.h"

namespace seqit::train {
namespace {

// Stream purposes for stream_seed(): each use of randomness has its own.
constexpr uint64_t kExampleOrder = 1;
constexpr uint64_t kBatchOrder = 2;

}  // namespace

BatchMode parse_batch_mode(std::string_view name) {
  if (name == "length_grouped" || name == "grouped") return BatchMode::length_grouped;
  if (name == "packed") return BatchMode::packed;
  throw Error(fmt::format("unknown batch mode '{}' (expected length_grouped or packed)", name));
}

int64_t Batch::count_targets() const {
  return std::count_if(targets.begin(), targets.end(), [](int32_t v) { return v != kIgnoreIndex; });
}

std::string BatchAccounting::describe() const {
  return fmt::format(
      "{} micro-batches, {} rows, {} examples; tokens: {} kept, {} padded ({:.1f}% fill), {} "
      "truncated earlier, "
      "{} trained{}",
      micro_batches, rows, examples, tokens_kept, tokens_padded, 100.0 * fill(), tokens_truncated,
      target_tokens,
      dropped_examples > 0 ? fmt::format("; {} examples left out by drop_last", dropped_examples)
                           : "");
}

std::vector<RowPlan> pack_rows(const std::vector<int64_t>& lengths,
                               const std::vector<int64_t>& order, int64_t capacity,
                               PackingAlgorithm algorithm) {
  std::vector<RowPlan> rows;
  std::vector<int64_t> room;  // free tokens per row
  if (algorithm == PackingAlgorithm::first_fit) {
    for (int64_t i : order) {
      const int64_t len = lengths[size_t(i)];
      size_t r = 0;
      while (r < rows.size() && room[r] < len) ++r;
      if (r == rows.size()) {
        rows.emplace_back();
        room.push_back(capacity);
      }
      rows[r].push_back(i);
      room[r] -= len;
    }
    return rows;
  }
  // Best-fit decreasing: longest first (ties keep `order`), each into the row with the least room
  // that still holds it. Rows keyed by room; among equal room the oldest row comes first.
  std::vector<int64_t> sorted = order;
  std::stable_sort(sorted.begin(), sorted.end(),
                   [&](int64_t a, int64_t b) { return lengths[size_t(a)] > lengths[size_t(b)]; });
  std::multimap<int64_t, size_t> by_room;
  for (int64_t i : sorted) {
    const int64_t len = lengths[size_t(i)];
    auto it = by_room.lower_bound(len);
    size_t r;
    if (it == by_room.end()) {
      r = rows.size();
      rows.emplace_back();
      room.push_back(capacity);
    } else {
      r = it->second;
      by_room.erase(it);
    }
    rows[r].push_back(i);
    room[r] -= len;
    if (room[r] > 0) by_room.emplace(room[r], r);
  }
  return rows;
}

BatchPlan::BatchPlan(const std::vector<Example>& examples, BatchOptions options, uint64_t seed)
    : examples_(&examples), options_(options), seed_(seed) {
  const BatchOptions& o = options_;
  if (o.batch_size < 1) throw Error(fmt::format("batch_size must be >= 1, not {}", o.batch_size));
  if (o.max_len < 0) throw Error(fmt::format("max_len must be >= 0, not {}", o.max_len));
  if (o.mode == BatchMode::packed && o.max_len == 0)
    throw Error("packing needs max_len (the row length)");
  if (o.fixed_length && o.max_len == 0) throw Error("fixed_length needs max_len");
  if (o.mega_batch_factor < 1)
    throw Error(fmt::format("mega_batch_factor must be >= 1, not {}", o.mega_batch_factor));
  if (o.token_budget < 0)
    throw Error(fmt::format("token_budget must be >= 0, not {}", o.token_budget));
  if (o.token_budget > 0 && o.max_len > 0 && o.token_budget < o.max_len) {
    throw Error(fmt::format("token_budget {} is smaller than max_len {}: a full row would not fit",
                            o.token_budget, o.max_len));
  }
  for (size_t i = 0; i < examples.size(); ++i) {
    const int64_t n = examples[i].size();
    if (n == 0) throw Error(fmt::format("example {} has no tokens", i));
    if (o.max_len > 0 && n > o.max_len) {
      throw Error(fmt::format(
          "example {} has {} tokens, more than max_len {} (build the examples with the same "
          "max_len: it truncates them)",
          i, n, o.max_len));
    }
    if (o.token_budget > 0 && n > o.token_budget) {
      throw Error(
          fmt::format("example {} has {} tokens, more than token_budget {}", i, n, o.token_budget));
    }
  }
}

int64_t BatchPlan::row_length(const RowPlan& row) const {
  int64_t n = 0;
  for (int64_t i : row) n += (*examples_)[size_t(i)].size();
  return n;
}

int64_t BatchPlan::batch_length(const MicroBatch& batch) const {
  if (options_.fixed_length) return options_.max_len;
  int64_t t = 0;
  for (const auto& row : batch.rows) t = std::max(t, row_length(row));
  return t;
}

int64_t BatchPlan::padded_size(const MicroBatch& batch) const {
  return int64_t(batch.rows.size()) * batch_length(batch);
}

// Consecutive rows into micro-batches of at most B rows and at most token_budget padded tokens.
std::vector<MicroBatch> BatchPlan::group_rows(const std::vector<RowPlan>& rows) const {
  std::vector<MicroBatch> batches;
  MicroBatch current;
  int64_t current_t = 0;
  for (const auto& row : rows) {
    const int64_t t =
        options_.fixed_length ? options_.max_len : std::max(current_t, row_length(row));
    const bool full = int64_t(current.rows.size()) == options_.batch_size;
    const bool over =
        options_.token_budget > 0 && int64_t(current.rows.size() + 1) * t > options_.token_budget;
    if (!current.rows.empty() && (full || over)) {
      batches.push_back(std::move(current));
      current = {};
      current_t = 0;
    }
    current.rows.push_back(row);
    current_t = options_.fixed_length ? options_.max_len : std::max(current_t, row_length(row));
  }
  if (!current.rows.empty()) batches.push_back(std::move(current));
  return batches;
}

std::vector<MicroBatch> BatchPlan::epoch_batches(int64_t epoch) const {
  if (epoch < 0) throw Error(fmt::format("epoch must be >= 0, not {}", epoch));
  const auto& examples = *examples_;
  std::vector<int64_t> order(examples.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
  if (options_.shuffle) {
    SplitMix64 rng(stream_seed(seed_, kExampleOrder, uint64_t(epoch)));
    seeded_shuffle(order, rng);
  }
  auto length = [&](int64_t i) { return examples[size_t(i)].size(); };

  std::vector<MicroBatch> batches;
  if (options_.mode == BatchMode::packed) {
    std::vector<int64_t> lengths(examples.size());
    for (size_t i = 0; i < lengths.size(); ++i) lengths[i] = examples[i].size();
    std::vector<RowPlan> rows =
        pack_rows(lengths, order, options_.max_len, PackingAlgorithm::best_fit_decreasing);
    // Best-fit decreasing leaves the rows sorted by their first (longest) example: shuffle them.
    if (options_.shuffle) {
      SplitMix64 rng(stream_seed(seed_, kBatchOrder, uint64_t(epoch)));
      seeded_shuffle(rows, rng);
    }
    batches = group_rows(rows);
  } else {
    const size_t mega = size_t(options_.mega_batch_factor * options_.batch_size);
    for (size_t begin = 0; begin < order.size(); begin += mega) {
      const size_t end = std::min(order.size(), begin + mega);
      std::vector<int64_t> group(order.begin() + long(begin), order.begin() + long(end));
      std::stable_sort(group.begin(), group.end(),
                       [&](int64_t a, int64_t b) { return length(a) > length(b); });
      std::vector<RowPlan> rows;
      rows.reserve(group.size());
      for (int64_t i : group) rows.push_back({i});
      for (auto& b : group_rows(rows)) batches.push_back(std::move(b));
    }
  }
  if (options_.drop_last && !batches.empty() &&
      int64_t(batches.back().rows.size()) < options_.batch_size) {
    batches.pop_back();
  }
  if (options_.shuffle && options_.mode == BatchMode::length_grouped) {
    SplitMix64 rng(stream_seed(seed_, kBatchOrder, uint64_t(epoch)));
    seeded_shuffle(batches, rng);
  }
  return batches;
}

Batch BatchPlan::materialize(const MicroBatch& batch) const {
  Batch out;
  out.rows = int64_t(batch.rows.size());
  out.length = batch_length(batch);
  const size_t cells = size_t(out.rows * out.length);
  out.tokens.assign(cells, options_.pad_id);
  out.targets.assign(cells, kIgnoreIndex);
  out.positions.assign(cells, 0);
  out.segment_ids.assign(cells, 0);
  for (size_t r = 0; r < batch.rows.size(); ++r) {
    size_t at = r * size_t(out.length);  // next free cell of row r
    int32_t segment = 0;
    for (int64_t i : batch.rows[r]) {
      const Example& ex = (*examples_)[size_t(i)];
      ++segment;
      for (size_t t = 0; t < ex.tokens.size(); ++t, ++at) {
        out.tokens[at] = ex.tokens[t];
        // An example's last target is kIgnoreIndex: no target reaches into the next example.
        out.targets[at] = ex.targets[t];
        out.positions[at] = int32_t(t);
        out.segment_ids[at] = segment;
      }
      out.real_tokens += ex.size();
    }
  }
  out.padded_tokens = int64_t(cells) - out.real_tokens;
  return out;
}

int64_t BatchPlan::count_targets(const MicroBatch& batch) const {
  int64_t n = 0;
  for (const auto& row : batch.rows) {
    for (int64_t i : row) n += (*examples_)[size_t(i)].target_count;
  }
  return n;
}

BatchAccounting BatchPlan::accounting(int64_t epoch) const {
  BatchAccounting a;
  std::vector<MicroBatch> batches = epoch_batches(epoch);
  a.micro_batches = int64_t(batches.size());
  for (const auto& b : batches) {
    a.rows += int64_t(b.rows.size());
    a.slots += padded_size(b);
    a.target_tokens += count_targets(b);
    for (const auto& row : b.rows) {
      for (int64_t i : row) {
        const Example& ex = (*examples_)[size_t(i)];
        ++a.examples;
        a.tokens_kept += ex.size();
        a.tokens_truncated += ex.truncated_tokens;
      }
    }
  }
  a.tokens_padded = a.slots - a.tokens_kept;
  a.dropped_examples = int64_t(examples_->size()) - a.examples;
  return a;
}

BatchStream::BatchStream(const BatchPlan& plan, BatchPosition start)
    : plan_(&plan), position_(start) {
  if (start.epoch < 0 || start.index < 0) {
    throw Error(fmt::format("bad batch position (epoch {}, index {})", start.epoch, start.index));
  }
}

void BatchStream::load_epoch() {
  if (loaded_epoch_ == position_.epoch) return;
  batches_ = plan_->epoch_batches(position_.epoch);
  loaded_epoch_ = position_.epoch;
  if (batches_.empty())
    throw Error(fmt::format("epoch {} has no micro-batches (no examples?)", position_.epoch));
}

int64_t BatchStream::batches_in_epoch() {
  load_epoch();
  return int64_t(batches_.size());
}

MicroBatch BatchStream::next() {
  load_epoch();
  if (position_.index >= int64_t(batches_.size())) {
    throw Error(fmt::format("batch position {} is past the end of epoch {} ({} micro-batches)",
                            position_.index, position_.epoch, batches_.size()));
  }
  MicroBatch out = batches_[size_t(position_.index)];
  if (++position_.index == int64_t(batches_.size())) position_ = {position_.epoch + 1, 0};
  return out;
}

}  // namespace seqit::train
