// The teacher's edits: decompose (A), prefix (B), suffix (C), keep (D), and the policy.
#include <gtest/gtest.h>

#include <array>

#include "synth/edit.h"
#include "synth/split.h"
#include "util/error.h"

using namespace seqit::synth;

namespace {
bool all_train_phrasings(const Chain& c) {
  for (const Step& s : c.steps)
    if (is_held_out_phrasing(s.task, s.phrasing)) return false;
  return true;
}
}  // namespace

TEST(SynthEdit, PrefixAndSuffixAddOneTypeValidStep) {
  std::vector<Item> items = make_it_items(11, 3000);
  int prefixed = 0, suffixed = 0;
  Rng rng(3);
  for (const Item& item : items) {
    Kind k = *classify_text(item.input);
    for (bool front : {true, false}) {
      std::optional<Chain> c =
          front ? add_prefix(item.chain, k, rng) : add_suffix(item.chain, k, rng);
      if (!c) continue;
      (front ? prefixed : suffixed)++;
      ASSERT_EQ(c->steps.size(), item.chain.steps.size() + 1);
      // The old steps are untouched, in place.
      for (size_t i = 0; i < item.chain.steps.size(); ++i)
        ASSERT_EQ(c->steps[i + (front ? 1 : 0)], item.chain.steps[i]);
      const Step& added = front ? c->steps.front() : c->steps.back();
      ASSERT_FALSE(is_compound(added.task));
      std::vector<TaskId> seq = atomic_sequence(item.chain);
      ASSERT_TRUE(front ? may_follow(added.task, seq.front()) : may_follow(seq.back(), added.task))
          << describe(*c);
      ASSERT_TRUE(is_type_valid(*c, k)) << describe(*c);
      ASSERT_FALSE(has_held_out_pair(*c)) << describe(*c);
      ASSERT_TRUE(all_train_phrasings(*c)) << describe(*c);
      // The edited instruction runs on the same input and says what it means.
      ASSERT_NO_THROW(run_chain(*c, item.input)) << describe(*c);
      ASSERT_EQ(parse_instruction(render_instruction(*c)), *c);
    }
  }
  // Almost every single task can grow at both ends (facts behind repeat cannot grow at the front).
  EXPECT_GT(prefixed, 2700);
  EXPECT_GT(suffixed, 2900);
}

TEST(SynthEdit, PrefixOnFactsIsRepeatOnlyAndThenNothing) {
  Chain lookup{{{TaskId::kLookup, 0}}, Connective::kFirstThen};
  Rng rng(1);
  std::optional<Chain> c = add_prefix(lookup, Kind::kFacts, rng);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->steps[0].task, TaskId::kRepeat);
  EXPECT_FALSE(add_prefix(*c, Kind::kFacts, rng));
  // Held-out pairs are never made: after lookup, upper is never suffixed.
  for (int i = 0; i < 300; ++i) {
    std::optional<Chain> s = add_suffix(lookup, Kind::kFacts, rng);
    ASSERT_TRUE(s);
    ASSERT_NE(s->steps[1].task, TaskId::kUpper);
  }
}

TEST(SynthEdit, DecomposeSplitsOneCompoundStep) {
  Rng rng(9);
  for (TaskId compound : compound_tasks()) {
    const TaskInfo& info = task_info(compound);
    Chain c{{{TaskId::kRepeat, 1}, {compound, 0}}, Connective::kSentences};
    std::optional<Chain> d = decompose(c, rng);
    ASSERT_TRUE(d) << info.name;
    ASSERT_EQ(d->steps.size(), 3u);
    EXPECT_EQ(d->steps[0], c.steps[0]);
    EXPECT_EQ(d->steps[1].task, info.parts[0]);
    EXPECT_EQ(d->steps[2].task, info.parts[1]);
    EXPECT_EQ(d->connective, Connective::kSentences);
    EXPECT_TRUE(all_train_phrasings(*d));
    EXPECT_EQ(atomic_sequence(*d), atomic_sequence(c));
    // Same meaning, so the same final answer.
    std::string in = random_input_for(compound, rng);
    EXPECT_EQ(run_chain(*d, in).back(), run_chain(c, in).back()) << info.name;
  }
  EXPECT_FALSE(decompose(Chain{{{TaskId::kSort, 0}}, Connective::kFirstThen}, rng));
}

TEST(SynthEdit, PolicyMirrorsThePapersFirstPass) {
  // On single atomic English tasks every edit but A applies; A applies to compounds only.
  Rng rng(77);
  std::array<int, 4> counts{};
  int trials = 20000;
  Chain reverse{{{TaskId::kReverse, 0}}, Connective::kFirstThen};
  Chain sort_upper{{{TaskId::kSortUpper, 0}}, Connective::kFirstThen};
  for (int i = 0; i < trials; ++i)
    counts[static_cast<size_t>(
        choose_edit(sort_upper, Kind::kEnglish, EditPolicy::first_pass(), rng))]++;
  // Binomial standard deviation at n = 20000 is at most 0.0036; 0.015 is four of them.
  EXPECT_NEAR(counts[0] / double(trials), 0.07, 0.015);
  EXPECT_NEAR(counts[1] / double(trials), 0.51, 0.015);
  EXPECT_NEAR(counts[2] / double(trials), 0.25, 0.015);
  EXPECT_NEAR(counts[3] / double(trials), 0.17, 0.015);
  counts = {};
  for (int i = 0; i < trials; ++i)
    counts[static_cast<size_t>(
        choose_edit(reverse, Kind::kEnglish, EditPolicy::first_pass(), rng))]++;
  EXPECT_EQ(counts[0], 0);  // nothing to decompose: A's weight goes to the others
  EXPECT_NEAR(counts[1] / double(trials), 0.51 / 0.93, 0.015);
  counts = {};
  for (int i = 0; i < trials; ++i)
    counts[static_cast<size_t>(
        choose_edit(sort_upper, Kind::kEnglish, EditPolicy::later_pass(), rng))]++;
  EXPECT_NEAR(counts[3] / double(trials), 0.80, 0.015);
}

TEST(SynthEdit, NothingButKeepAtTheLengthLimit) {
  Rng rng(4);
  Chain full{{{TaskId::kReverse, 0}, {TaskId::kSortUpper, 0}, {TaskId::kCount, 0}},
             Connective::kFirstThen};
  ASSERT_TRUE(is_type_valid(full, Kind::kEnglish));
  for (Edit e : {Edit::kDecompose, Edit::kPrefix, Edit::kSuffix})
    EXPECT_FALSE(edit_applies(full, Kind::kEnglish, e, EditPolicy::first_pass()));
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(choose_edit(full, Kind::kEnglish, EditPolicy::first_pass(), rng), Edit::kKeep);
  EXPECT_EQ(apply_edit(full, Kind::kEnglish, Edit::kKeep, rng), full);
  EXPECT_THROW(apply_edit(Chain{{{TaskId::kSort, 0}}, Connective::kFirstThen}, Kind::kEnglish,
                          Edit::kDecompose, rng),
               seqit::Error);
}

TEST(SynthEdit, IteratedEditsStayWithinTrainingRules) {
  // Three passes over instruction-tuning items, as the pipeline does: every result is a
  // type-valid training chain of at most three steps.
  std::vector<Item> items = make_it_items(5, 1000);
  Rng rng(6);
  std::array<int, 4> lengths{};
  for (const Item& item : items) {
    Kind k = *classify_text(item.input);
    Chain c = item.chain;
    for (int pass = 0; pass < 3; ++pass) {
      EditPolicy policy = pass == 0 ? EditPolicy::first_pass() : EditPolicy::later_pass();
      c = apply_edit(c, k, choose_edit(c, k, policy, rng), rng);
      ASSERT_TRUE(is_type_valid(c, k)) << describe(c);
      ASSERT_FALSE(has_held_out_pair(c)) << describe(c);
      ASSERT_LE(static_cast<int>(c.steps.size()), kMaxTrainSteps);
    }
    lengths[c.steps.size()]++;
  }
  EXPECT_GT(lengths[2], 300);
  EXPECT_GT(lengths[3], 50);
  EXPECT_EQ(edit_letter(Edit::kDecompose), 'A');
  EXPECT_EQ(edit_letter(Edit::kKeep), 'D');
}
