// Batching on synthetic examples whose tokens say where they come from (token = 1000 x example +
// position): packing loses and duplicates nothing, restarts positions, separates segments and
// never trains across a boundary; length grouping visits every example once per epoch in a
// seeded order; a resumed stream continues exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

#include "train/batcher.h"
#include "train/random_order.h"

namespace seqit::train {
namespace {

constexpr TokenId kPad = 2;

// Example `i` of `length` tokens 1000*i + t; every third position is not trained; the last never
// is.
Example synthetic(int64_t i, int64_t length) {
  Example ex;
  ex.id = std::to_string(i);
  ex.record = i;
  for (int64_t t = 0; t < length; ++t) ex.tokens.push_back(TokenId(1000 * i + t + 10));
  ex.targets.assign(size_t(length), kIgnoreIndex);
  for (int64_t t = 0; t + 1 < length; ++t) {
    if (t % 3 != 0) ex.targets[size_t(t)] = ex.tokens[size_t(t + 1)];
  }
  ex.target_count = std::count_if(ex.targets.begin(), ex.targets.end(),
                                  [](int32_t v) { return v != kIgnoreIndex; });
  ex.truncated_tokens = length == 64 ? 5 : 0;  // pretend the longest ones were cut when built
  return ex;
}

std::vector<Example> synthetic_set(size_t n, int64_t max_len, uint64_t seed) {
  SplitMix64 rng(seed);
  std::vector<Example> out;
  for (size_t i = 0; i < n; ++i)
    out.push_back(synthetic(int64_t(i), 1 + int64_t(rng.below(uint64_t(max_len)))));
  return out;
}

BatchOptions packed(int64_t batch_size, int64_t max_len) {
  BatchOptions o;
  o.mode = BatchMode::packed;
  o.batch_size = batch_size;
  o.max_len = max_len;
  o.pad_id = kPad;
  return o;
}

// Every cell of a materialized batch, checked against the example it came from; returns the
// (example, position) of every real token.
std::multiset<std::pair<int64_t, int64_t>> check_batch(const BatchPlan& plan,
                                                       const MicroBatch& mb) {
  std::multiset<std::pair<int64_t, int64_t>> seen;
  Batch b = plan.materialize(mb);
  const auto& examples = plan.examples();
  EXPECT_EQ(b.rows, int64_t(mb.rows.size()));
  EXPECT_EQ(int64_t(b.tokens.size()), b.rows * b.length);
  EXPECT_EQ(b.count_targets(), plan.count_targets(mb));
  EXPECT_EQ(b.real_tokens + b.padded_tokens, b.rows * b.length);
  for (int64_t r = 0; r < b.rows; ++r) {
    const RowPlan& row = mb.rows[size_t(r)];
    int32_t expected_segment = 0;
    int64_t example = -1;
    bool in_padding = false;
    for (int64_t t = 0; t < b.length; ++t) {
      const size_t k = size_t(r * b.length + t);
      if (b.segment_ids[k] == 0) {  // padding: only at the end of a row
        in_padding = true;
        EXPECT_EQ(b.tokens[k], kPad);
        EXPECT_EQ(b.targets[k], kIgnoreIndex);
        EXPECT_EQ(b.positions[k], 0);
        continue;
      }
      EXPECT_FALSE(in_padding) << "a token after padding";
      if (b.positions[k] == 0) {  // a new example starts: a new segment
        ++expected_segment;
        example = row[size_t(expected_segment - 1)];
      }
      EXPECT_EQ(b.segment_ids[k], expected_segment);
      const Example& ex = examples[size_t(example)];
      const int64_t pos = b.positions[k];
      EXPECT_EQ(b.tokens[k], ex.tokens[size_t(pos)]);
      EXPECT_EQ(b.targets[k], ex.targets[size_t(pos)]);
      EXPECT_EQ(b.tokens[k], TokenId(1000 * example + pos + 10)) << "token from another place";
      // A target is the next token of the same example: the last one of an example has none.
      const bool last_of_example = pos + 1 == ex.size();
      if (last_of_example) {
        EXPECT_EQ(b.targets[k], kIgnoreIndex) << "target crosses an example boundary";
      }
      if (b.targets[k] != kIgnoreIndex) {
        EXPECT_LT(t + 1, b.length);
        if (t + 1 >= b.length) continue;
        EXPECT_EQ(b.targets[k], b.tokens[k + 1]);
        EXPECT_EQ(b.segment_ids[k + 1], b.segment_ids[k]);
      }
      seen.insert({example, pos});
    }
    EXPECT_EQ(expected_segment, int32_t(row.size()));
  }
  return seen;
}

std::multiset<std::pair<int64_t, int64_t>> all_tokens(const std::vector<Example>& examples) {
  std::multiset<std::pair<int64_t, int64_t>> all;
  for (size_t i = 0; i < examples.size(); ++i) {
    for (int64_t t = 0; t < examples[i].size(); ++t) all.insert({int64_t(i), t});
  }
  return all;
}

TEST(Packing, NoTokenLostOrDuplicatedAndAccountingAddsUp) {
  const auto examples = synthetic_set(300, 64, 1);
  for (bool fixed : {false, true}) {
    SCOPED_TRACE(fixed ? "fixed length" : "padded to the longest row");
    BatchOptions o = packed(4, 64);
    o.fixed_length = fixed;
    BatchPlan plan(examples, o, 42);
    for (int64_t epoch : {0, 1}) {
      auto batches = plan.epoch_batches(epoch);
      std::multiset<std::pair<int64_t, int64_t>> seen;
      int64_t rows = 0, slots = 0, padded = 0, targets = 0;
      for (const auto& mb : batches) {
        EXPECT_LE(int64_t(mb.rows.size()), 4);
        for (const auto& row : mb.rows) {
          int64_t n = 0;
          for (int64_t i : row) n += examples[size_t(i)].size();
          EXPECT_LE(n, 64) << "row longer than max_len";
        }
        auto s = check_batch(plan, mb);
        seen.insert(s.begin(), s.end());
        Batch b = plan.materialize(mb);
        rows += b.rows;
        slots += b.rows * b.length;
        padded += b.padded_tokens;
        targets += b.count_targets();
        if (fixed) {
          EXPECT_EQ(b.length, 64);
        }
      }
      EXPECT_EQ(seen, all_tokens(examples));
      BatchAccounting a = plan.accounting(epoch);
      EXPECT_EQ(a.micro_batches, int64_t(batches.size()));
      EXPECT_EQ(a.rows, rows);
      EXPECT_EQ(a.slots, slots);
      EXPECT_EQ(a.tokens_padded, padded);
      EXPECT_EQ(a.target_tokens, targets);
      EXPECT_EQ(a.examples, 300);
      EXPECT_EQ(a.tokens_kept, int64_t(all_tokens(examples).size()));
      EXPECT_EQ(a.tokens_kept + a.tokens_padded, a.slots);
      if (fixed) {
        EXPECT_EQ(a.slots, a.rows * 64);
      }
      int64_t truncated = 0;
      for (const auto& ex : examples) truncated += ex.truncated_tokens;
      EXPECT_EQ(a.tokens_truncated, truncated);
      EXPECT_GT(a.fill(), 0.9) << a.describe();
    }
  }
}

TEST(Packing, BestFitUsesNoMoreRowsThanFirstFit) {
  // A case where first-fit in arrival order wastes a row: 5, 6, 4, 5 into rows of 10.
  std::vector<int64_t> lengths = {5, 6, 4, 5};
  std::vector<int64_t> order = {0, 1, 2, 3};
  EXPECT_EQ(pack_rows(lengths, order, 10, PackingAlgorithm::first_fit).size(), 3u);
  EXPECT_EQ(pack_rows(lengths, order, 10, PackingAlgorithm::best_fit_decreasing).size(), 2u);
  // On random sets: every index once, no row over capacity, best-fit never worse.
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    SplitMix64 rng(seed);
    std::vector<int64_t> ls;
    for (int i = 0; i < 200; ++i) ls.push_back(1 + int64_t(rng.below(100)));
    std::vector<int64_t> ord(ls.size());
    for (size_t i = 0; i < ord.size(); ++i) ord[i] = int64_t(i);
    auto bf = pack_rows(ls, ord, 128, PackingAlgorithm::best_fit_decreasing);
    auto ff = pack_rows(ls, ord, 128, PackingAlgorithm::first_fit);
    EXPECT_LE(bf.size(), ff.size()) << "seed " << seed;
    std::vector<int> used(ls.size(), 0);
    for (const auto& row : bf) {
      int64_t n = 0;
      for (int64_t i : row) {
        ++used[size_t(i)];
        n += ls[size_t(i)];
      }
      EXPECT_LE(n, 128);
    }
    EXPECT_TRUE(std::all_of(used.begin(), used.end(), [](int u) { return u == 1; }));
  }
  // The batcher's own rows: no more than first fit over the same shuffled examples.
  const auto examples = synthetic_set(300, 64, 5);
  BatchPlan plan(examples, packed(1, 64), 9);
  std::vector<int64_t> ls, ord;
  for (size_t i = 0; i < examples.size(); ++i) {
    ls.push_back(examples[i].size());
    ord.push_back(int64_t(i));
  }
  EXPECT_LE(plan.accounting(0).rows,
            int64_t(pack_rows(ls, ord, 64, PackingAlgorithm::first_fit).size()));
}

TEST(Packing, TokenBudgetCapsEachMicroBatch) {
  const auto examples = synthetic_set(200, 64, 2);
  BatchOptions o = packed(8, 64);
  o.token_budget = 200;  // at most 3 rows of up to 64
  BatchPlan plan(examples, o, 3);
  for (const auto& mb : plan.epoch_batches(0)) {
    EXPECT_LE(plan.padded_size(mb), 200);
    EXPECT_LE(mb.rows.size(), 3u);
  }
  o.token_budget = 32;
  EXPECT_THROW(BatchPlan(examples, o, 3), Error);  // smaller than a row
}

TEST(Packing, RejectsExamplesLongerThanMaxLen) {
  std::vector<Example> examples = {synthetic(0, 10), synthetic(1, 70)};
  EXPECT_THROW(BatchPlan(examples, packed(2, 64), 1), Error);
}

std::vector<int64_t> flat_order(const std::vector<MicroBatch>& batches) {
  std::vector<int64_t> order;
  for (const auto& mb : batches) {
    for (const auto& row : mb.rows) order.insert(order.end(), row.begin(), row.end());
  }
  return order;
}

TEST(LengthGrouping, EveryExampleOncePerEpochInASeededOrder) {
  const auto examples = synthetic_set(500, 64, 3);
  BatchOptions o;
  o.batch_size = 8;
  o.max_len = 64;
  o.mega_batch_factor = 10;
  o.pad_id = kPad;
  BatchPlan plan(examples, o, 42), same(examples, o, 42), other_seed(examples, o, 43);
  std::vector<int64_t> previous;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    auto batches = plan.epoch_batches(epoch);
    std::vector<int64_t> order = flat_order(batches);
    std::vector<int64_t> sorted = order;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 0; i < sorted.size(); ++i)
      ASSERT_EQ(sorted[i], int64_t(i)) << "not exactly once";
    ASSERT_EQ(sorted.size(), examples.size());
    EXPECT_EQ(order, flat_order(same.epoch_batches(epoch))) << "same seed and epoch, other order";
    EXPECT_NE(order, flat_order(other_seed.epoch_batches(epoch)));
    EXPECT_NE(order, previous) << "epoch " << epoch << " repeats the previous order";
    previous = order;
    std::multiset<std::pair<int64_t, int64_t>> seen;
    for (const auto& mb : batches) {
      EXPECT_LE(mb.rows.size(), 8u);
      for (const auto& row : mb.rows) EXPECT_EQ(row.size(), 1u);
      auto s = check_batch(plan, mb);
      seen.insert(s.begin(), s.end());
    }
    EXPECT_EQ(seen, all_tokens(examples));
  }
  // Grouping by length pads less than batches of random lengths (mega-batch = one batch).
  BatchOptions ungrouped = o;
  ungrouped.mega_batch_factor = 1;
  BatchAccounting grouped_acc = plan.accounting(0),
                  ungrouped_acc = BatchPlan(examples, ungrouped, 42).accounting(0);
  EXPECT_EQ(grouped_acc.tokens_kept, ungrouped_acc.tokens_kept);
  EXPECT_LT(grouped_acc.tokens_padded * 3, ungrouped_acc.tokens_padded)
      << grouped_acc.describe() << "\n"
      << ungrouped_acc.describe();
}

TEST(LengthGrouping, DropLastAndTokenBudget) {
  const auto examples = synthetic_set(50, 64, 4);
  BatchOptions o;
  o.batch_size = 8;
  o.max_len = 64;
  o.drop_last = true;
  BatchPlan plan(examples, o, 1);
  BatchAccounting a = plan.accounting(0);
  EXPECT_EQ(a.micro_batches, 6);
  EXPECT_EQ(a.examples, 48);
  EXPECT_EQ(a.dropped_examples, 2);
  for (const auto& mb : plan.epoch_batches(0)) EXPECT_EQ(mb.rows.size(), 8u);

  o.drop_last = false;
  o.token_budget = 128;
  BatchPlan budget(examples, o, 1);
  std::set<int64_t> seen;
  for (const auto& mb : budget.epoch_batches(0)) {
    EXPECT_LE(budget.padded_size(mb), 128);
    for (const auto& row : mb.rows) seen.insert(row[0]);
  }
  EXPECT_EQ(seen.size(), examples.size());
}

TEST(BatchStream, ResumesExactlyFromASavedPosition) {
  const auto examples = synthetic_set(60, 64, 6);
  for (BatchMode mode : {BatchMode::length_grouped, BatchMode::packed}) {
    BatchOptions o = packed(4, 64);
    o.mode = mode;
    BatchPlan plan(examples, o, 11);
    BatchStream stream(plan);
    const int64_t per_epoch = stream.batches_in_epoch();
    ASSERT_GT(per_epoch, 2);
    std::vector<MicroBatch> straight;
    std::vector<BatchPosition> positions;
    for (int64_t k = 0; k < 3 * per_epoch; ++k) {
      positions.push_back(stream.position());
      straight.push_back(stream.next());
    }
    EXPECT_EQ(stream.position(), (BatchPosition{3, 0}));
    EXPECT_EQ(positions[size_t(per_epoch + 1)], (BatchPosition{1, 1}));
    // Interrupt anywhere (also right at an epoch boundary) and continue from the saved position.
    for (int64_t stop : {int64_t(1), per_epoch - 1, per_epoch, 2 * per_epoch + 2}) {
      BatchStream resumed(plan, positions[size_t(stop)]);
      for (int64_t k = stop; k < 3 * per_epoch; ++k) {
        MicroBatch mb = resumed.next();
        ASSERT_EQ(flat_order({mb}), flat_order({straight[size_t(k)]}))
            << "step " << k << " after resuming at " << stop;
      }
    }
    // The epochs are the plan's epoch_batches, in order.
    EXPECT_EQ(flat_order(std::vector<MicroBatch>(straight.begin() + per_epoch,
                                                 straight.begin() + 2 * per_epoch)),
              flat_order(plan.epoch_batches(1)));
  }
}

TEST(BatchPlan, RejectsBadOptions) {
  const auto examples = synthetic_set(10, 32, 7);
  BatchOptions o;
  o.batch_size = 0;
  EXPECT_THROW(BatchPlan(examples, o, 1), Error);
  o = packed(2, 0);
  EXPECT_THROW(BatchPlan(examples, o, 1), Error);
  EXPECT_EQ(parse_batch_mode("packed"), BatchMode::packed);
  EXPECT_THROW(parse_batch_mode("random"), Error);
}

}  // namespace
}  // namespace seqit::train
