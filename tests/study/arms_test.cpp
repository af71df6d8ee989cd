// The study's arms built through the real Seq-Instruct pipeline with the world's teacher: each
// arm's structure, the SIT options against the teacher's policy, the token budget of the
// token-matched arm, the corrupted arm, determinism and resume.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "study/arms.h"
#include "synth/edit.h"
#include "synth/grade.h"
#include "synth/split.h"
#include "synth/world_tokenizer.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace seqit;
using namespace seqit::study;

namespace {

const tokenizer::Tokenizer& world_tokenizer() {
  static const std::unique_ptr<tokenizer::Tokenizer> tok = [] {
    seqit::testing::TempDir dir;
    synth::write_world_tokenizer(dir.path());
    return tokenizer::load_tokenizer(dir.path());
  }();
  return *tok;
}

constexpr int64_t kItems = 400;
constexpr uint64_t kSeed = 7;

const Arms& arms() {
  static seqit::testing::TempDir dir;
  static const Arms built = [] {
    ArmOptions o;
    o.seed = kSeed;
    o.items = kItems;
    o.work_dir = dir.path();
    return build_arms(o, world_tokenizer());
  }();
  return built;
}

std::string dump(const Arm& arm) {
  std::string out;
  for (const data::Instruction& r : arm.records) {
    out += nlohmann::json({r.id, r.system, r.instruction, r.input, r.output}).dump();
    out += r.meta.dump() + "\n";
  }
  return out;
}

int64_t steps_of(const data::Instruction& r) {
  return *r.meta.get_integer("synth_steps");
}

}  // namespace

TEST(StudyArms, ItArmIsTheSingleTasksAnsweredByTheTeacher) {
  seqit::testing::allow_seconds(180);
  const Arm& it = arms().it;
  const auto items = synth::make_it_items(kSeed, kItems);
  ASSERT_EQ(it.records.size(), items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const data::Instruction& r = it.records[i];
    EXPECT_EQ(r.id, items[i].id);
    EXPECT_EQ(r.instruction, items[i].instruction);
    EXPECT_EQ(r.input, items[i].input);
    EXPECT_EQ(r.output, items[i].response);
    EXPECT_EQ(steps_of(r), 1);
  }
  EXPECT_EQ(it.steps.size(), 1u);
  EXPECT_GT(it.response_tokens, 0);
}

TEST(StudyArms, SitArmHoldsCorrectChainsOfAtMostThreeSteps) {
  seqit::testing::allow_seconds(180);
  const Arm& sit = arms().sit;
  const auto items = synth::make_it_items(kSeed, kItems);
  ASSERT_EQ(sit.records.size(), items.size());
  int64_t chains = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const data::Instruction& r = sit.records[i];
    EXPECT_EQ(r.id, items[i].id);
    // The input stays the item's input: never dropped into the instruction.
    ASSERT_EQ(r.input, items[i].input) << r.instruction;
    auto chain = synth::parse_instruction(r.instruction);
    ASSERT_TRUE(chain) << r.instruction;
    ASSERT_GE(chain->steps.size(), 1u);
    ASSERT_LE(chain->steps.size(), 3u) << r.instruction;
    EXPECT_FALSE(synth::has_held_out_pair(*chain)) << r.instruction;
    // Every response is the reference response: fully correct under the grader.
    const synth::Grade g = synth::grade_response(*chain, r.input, r.output);
    ASSERT_TRUE(g.following) << r.output;
    ASSERT_EQ(g.depth, static_cast<int>(chain->steps.size())) << r.output;
    EXPECT_EQ(*r.meta.get_integer("synth_corrupted_steps"), 0);
    const std::string options = *r.meta.get_string("sit_options");
    ASSERT_FALSE(options.empty());
    if (options[0] == 'D') {
      // Kept on the first pass: frozen, the instruction unchanged.
      EXPECT_EQ(options, "D");
      EXPECT_EQ(r.instruction, items[i].instruction);
    } else {
      EXPECT_NE(r.instruction, items[i].instruction);
      ++chains;
    }
  }
  EXPECT_GT(chains, kItems / 2);
  int64_t histogram = 0;
  for (const auto& [n, count] : sit.steps) histogram += count;
  EXPECT_EQ(histogram, kItems);
  EXPECT_GT(sit.steps.count(3), 0u);
}

// Pass 1 options against the policy: the expected count of each option is the sum, over the items,
// of the first-pass weights renormalised over the edits that apply to that item.
TEST(StudyArms, SitOptionsFollowTheTeachersPolicy) {
  seqit::testing::allow_seconds(180);
  const Arm& sit = arms().sit;
  ASSERT_EQ(sit.options.size(), 2u);
  const synth::EditPolicy policy = synth::EditPolicy::first_pass();
  const synth::Edit edits[] = {synth::Edit::kDecompose, synth::Edit::kPrefix, synth::Edit::kSuffix,
                               synth::Edit::kKeep};
  const double weights[] = {policy.decompose, policy.prefix, policy.suffix, policy.keep};
  std::map<char, double> expected;
  for (const synth::Item& item : synth::make_it_items(kSeed, kItems)) {
    const synth::Kind kind = *synth::classify_text(item.input);
    double total = 0;
    for (int e = 0; e < 4; ++e)
      total += synth::edit_applies(item.chain, kind, edits[e], policy) ? weights[e] : 0;
    for (int e = 0; e < 4; ++e)
      if (synth::edit_applies(item.chain, kind, edits[e], policy))
        expected[synth::edit_letter(edits[e])] += weights[e] / total;
  }
  for (char c : {'A', 'B', 'C', 'D'}) {
    const double want = expected[c];
    const double got = static_cast<double>(sit.options[0].count(c) ? sit.options[0].at(c) : 0);
    const double p = want / kItems;
    // Four standard deviations of a binomial count, plus one for rounding.
    EXPECT_NEAR(got, want, 4 * std::sqrt(kItems * p * (1 - p)) + 1) << c;
  }
  for (size_t pass = 0; pass < sit.options.size(); ++pass) {
    std::printf("pass %zu:", pass + 1);
    for (const auto& [c, n] : sit.options[pass])
      std::printf("  %c %lld", c, static_cast<long long>(n));
    std::printf("   (expected pass 1: A %.1f B %.1f C %.1f D %.1f)\n", expected['A'], expected['B'],
                expected['C'], expected['D']);
  }
  std::printf("chain lengths:");
  for (const auto& [n, count] : sit.steps)
    std::printf("  %lld: %lld", static_cast<long long>(n), static_cast<long long>(count));
  std::printf("\n");
  // Pass 2: items frozen in pass 1 count as D, and the later-pass policy keeps most of the rest.
  const int64_t d1 = sit.options[0].at('D');
  const int64_t d2 = sit.options[1].at('D');
  EXPECT_GT(d2, d1 + (kItems - d1) / 2);
  EXPECT_LT(d2, kItems);
}

TEST(StudyArms, TokenMatchedArmIsWithinTwoPercentOfSit) {
  seqit::testing::allow_seconds(180);
  const Arms& a = arms();
  const double sit = static_cast<double>(a.sit.response_tokens);
  const double matched = static_cast<double>(a.it_matched.response_tokens);
  EXPECT_LE(std::abs(matched - sit), 0.02 * sit) << matched << " vs " << sit;
  // SIT responses are longer, so the matched arm needs more single tasks than the IT arm ...
  EXPECT_GT(a.sit.response_tokens, a.it.response_tokens);
  EXPECT_GT(a.it_matched.records.size(), a.it.records.size());
  // ... taken in order from the pool, which starts with the IT arm.
  for (size_t i = 0; i < a.it.records.size(); ++i)
    ASSERT_EQ(a.it_matched.records[i], a.it.records[i]);
  const auto pool = synth::make_it_items(kSeed, static_cast<int64_t>(a.it_matched.records.size()));
  for (size_t i = 0; i < pool.size(); ++i) {
    ASSERT_EQ(a.it_matched.records[i].id, pool[i].id);
    ASSERT_EQ(a.it_matched.records[i].output, pool[i].response);
    ASSERT_EQ(steps_of(a.it_matched.records[i]), 1);
  }
  // Taking the closest prefix lands far inside the 2%: one item holds a few tokens.
  EXPECT_LE(std::abs(matched - sit), 0.005 * sit) << matched << " vs " << sit;
  std::printf("arm            items  response tokens  prompt tokens\n");
  for (const Arm* arm : {&a.it, &a.sit, &a.it_matched, &a.sit_corrupted})
    std::printf("%-13s  %5zu  %15lld  %13lld\n", arm->name.c_str(), arm->records.size(),
                static_cast<long long>(arm->response_tokens),
                static_cast<long long>(arm->prompt_tokens));
}

TEST(StudyArms, CorruptedArmHasTheSitInstructionsAndWrongIntermediateSteps) {
  seqit::testing::allow_seconds(180);
  const Arms& a = arms();
  ASSERT_EQ(a.sit_corrupted.records.size(), a.sit.records.size());
  int64_t intermediate = 0, wrong = 0;
  for (size_t i = 0; i < a.sit.records.size(); ++i) {
    const data::Instruction& clean = a.sit.records[i];
    const data::Instruction& r = a.sit_corrupted.records[i];
    ASSERT_EQ(r.instruction, clean.instruction);
    ASSERT_EQ(r.input, clean.input);
    const auto chain = synth::parse_instruction(r.instruction);
    const synth::Grade g = synth::grade_response(*chain, r.input, r.output);
    ASSERT_TRUE(g.following) << r.output;  // well-shaped
    ASSERT_TRUE(g.final_correct) << r.output;
    for (size_t s = 0; s + 1 < g.steps.size(); ++s) {
      ++intermediate;
      wrong += !g.steps[s].correct;
    }
    EXPECT_EQ(*r.meta.get_integer("synth_corrupted_steps"),
              static_cast<int64_t>(std::count_if(g.steps.begin(), g.steps.end(),
                                                 [](const auto& s) { return !s.correct; })));
  }
  ASSERT_GT(intermediate, 200);
  EXPECT_NEAR(static_cast<double>(wrong) / intermediate, 0.5, 0.08) << wrong << "/" << intermediate;
}

TEST(StudyArms, SameSeedGivesByteIdenticalSetsAndResumeChangesNothing) {
  seqit::testing::allow_seconds(180);
  seqit::testing::TempDir one, two;
  ArmOptions o;
  o.seed = 11;
  o.items = 120;
  o.work_dir = one.path();
  const Arms a = build_arms(o, world_tokenizer());
  o.work_dir = two.path();
  const Arms b = build_arms(o, world_tokenizer());
  // Resumed from the traces written by the first build: no request is asked again.
  const Arms resumed = build_arms(o, world_tokenizer());
  for (auto member : {&Arms::it, &Arms::sit, &Arms::it_matched, &Arms::sit_corrupted}) {
    EXPECT_EQ(dump(a.*member), dump(b.*member)) << (a.*member).name;
    EXPECT_EQ(dump(a.*member), dump(resumed.*member)) << (a.*member).name;
    EXPECT_EQ((a.*member).response_tokens, (b.*member).response_tokens);
  }
  o.seed = 12;
  o.work_dir = one.path() / "other-seed";
  const Arms c = build_arms(o, world_tokenizer());
  EXPECT_NE(dump(a.sit), dump(c.sit));
}

TEST(StudyArms, TokenMatchedPrefixTakesTheClosestPrefix) {
  EXPECT_EQ(token_matched_prefix({10, 10, 10, 10}, 30, 0.02), 3u);
  EXPECT_EQ(token_matched_prefix({10, 10, 10, 10}, 0, 0.02), 0u);
  EXPECT_EQ(token_matched_prefix({50, 49, 3}, 100, 0.02), 2u);         // 99 is closer than 102
  EXPECT_EQ(token_matched_prefix({50, 49, 1, 9}, 100, 0.02), 3u);      // 100 exactly
  EXPECT_EQ(token_matched_prefix({50, 48, 3}, 100, 0.02), 3u);         // 101 is closer than 98
  EXPECT_THROW(token_matched_prefix({10, 10}, 100, 0.02), Error);      // the pool is too small
  EXPECT_THROW(token_matched_prefix({50, 40, 30}, 100, 0.02), Error);  // 90 short, 120 over
}
