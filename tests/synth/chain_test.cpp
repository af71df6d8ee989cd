// Rendering chains as instructions, parsing them back, and the reference response.
#include <gtest/gtest.h>

#include "synth/chain.h"
#include "synth/split.h"
#include "util/error.h"

using namespace seqit::synth;

namespace {
Chain chain_of(std::vector<Step> steps, Connective c = Connective::kFirstThen) {
  return {std::move(steps), c};
}
const Step kReverse0{TaskId::kReverse, 0};  // "reverse the order of the words"
const Step kUpper1{TaskId::kUpper, 1};      // "write the words in capital letters"
const Step kCount0{TaskId::kCount, 0};      // "count the words"
const Step kSort4{TaskId::kSort, 4};        // "sort the words"

// Any chain of 1..5 steps of any tasks and phrasings (type validity does not matter to rendering).
Chain random_any_chain(Rng& rng) {
  Chain c;
  int n = static_cast<int>(rng.between(1, kMaxEvalSteps));
  for (int i = 0; i < n; ++i) {
    TaskId t = rng.pick(all_tasks());
    c.steps.push_back({t, static_cast<int>(rng.below(task_info(t).phrasings.size()))});
  }
  if (n > 1) c.connective = kAllConnectives[rng.below(5)];
  return c;
}
}  // namespace

TEST(SynthChain, RendersEachConnective) {
  std::vector<Step> three = {kReverse0, kUpper1, kCount0};
  EXPECT_EQ(render_instruction(chain_of({kReverse0})), "Reverse the order of the words.");
  EXPECT_EQ(render_instruction(chain_of({kReverse0}, Connective::kNumbered)),
            "Reverse the order of the words.");
  EXPECT_EQ(render_instruction(chain_of({kReverse0, kUpper1})),
            "First reverse the order of the words, then write the words in capital letters.");
  EXPECT_EQ(
      render_instruction(chain_of(three)),
      "First reverse the order of the words, then write the words in capital letters, and finally "
      "count the words.");
  EXPECT_EQ(render_instruction(chain_of(three, Connective::kAfterThat)),
            "Reverse the order of the words, and after that write the words in capital letters, "
            "and after "
            "that count the words.");
  EXPECT_EQ(render_instruction(chain_of(three, Connective::kSentences)),
            "Reverse the order of the words. Then write the words in capital letters. Finally "
            "count the words.");
  EXPECT_EQ(render_instruction(chain_of({kReverse0, kUpper1}, Connective::kSentences)),
            "Reverse the order of the words. Then write the words in capital letters.");
  EXPECT_EQ(
      render_instruction(chain_of(three, Connective::kNumbered)),
      "Do these steps in order: 1. Reverse the order of the words. 2. Write the words in capital "
      "letters. 3. Count the words.");
  EXPECT_EQ(render_instruction(chain_of(three, Connective::kCommaThen)),
            "Reverse the order of the words, then write the words in capital letters, then count "
            "the words.");
  EXPECT_THROW(render_instruction(Chain{}), seqit::Error);
  EXPECT_THROW(render_instruction(chain_of({{TaskId::kReverse, 99}})), seqit::Error);
}

TEST(SynthChain, EveryPhrasingParsesBackAlone) {
  for (TaskId id : all_tasks()) {
    for (size_t k = 0; k < task_info(id).phrasings.size(); ++k) {
      Chain c = chain_of({{id, static_cast<int>(k)}});
      std::optional<Chain> back = parse_instruction(render_instruction(c));
      ASSERT_TRUE(back) << task_info(id).phrasings[k];
      EXPECT_EQ(*back, c) << task_info(id).phrasings[k];
    }
  }
}

TEST(SynthChain, EveryPhrasingParsesBackBetweenOthersInEveryConnective) {
  for (TaskId id : all_tasks()) {
    for (size_t k = 0; k < task_info(id).phrasings.size(); ++k) {
      for (Connective conn : kAllConnectives) {
        // The phrasing in the middle, with a prefix of itself (sort the words) on one side.
        Chain c = chain_of({kSort4, {id, static_cast<int>(k)}, kReverse0}, conn);
        std::optional<Chain> back = parse_instruction(render_instruction(c));
        ASSERT_TRUE(back) << render_instruction(c);
        EXPECT_EQ(*back, c) << render_instruction(c);
      }
    }
  }
}

TEST(SynthChain, RandomChainsRoundTrip) {
  Rng rng(2024);
  for (int i = 0; i < 5000; ++i) {
    Chain c = random_any_chain(rng);
    std::string text = render_instruction(c);
    std::optional<Chain> back = parse_instruction(text);
    ASSERT_TRUE(back) << text;
    ASSERT_EQ(*back, c) << text << " parsed as " << describe(*back);
  }
}

TEST(SynthChain, ParseForgivesCaseAndSpacingButNothingElse) {
  Chain c = chain_of({kReverse0, kUpper1}, Connective::kAfterThat);
  EXPECT_EQ(
      parse_instruction("  reverse the ORDER of the words,\n and  after that write the words in "
                        "capital letters.  "),
      c);
  EXPECT_FALSE(parse_instruction(""));
  EXPECT_FALSE(parse_instruction("Tell me a joke."));
  EXPECT_FALSE(parse_instruction("Reverse the order of the words"));          // no full stop
  EXPECT_FALSE(parse_instruction("Please reverse the order of the words."));  // stray word
  EXPECT_FALSE(parse_instruction("Reverse the order of the words and count the words."));
  EXPECT_FALSE(
      parse_instruction("First reverse the order of the words, and finally count the words."));
  EXPECT_FALSE(
      parse_instruction("Do these steps in order: 2. Count the words. 1. Sort the words."));
}

TEST(SynthChain, CompoundPhrasingWinsOverItsPrefix) {
  // "sort the words" is a phrasing, and so is "sort the words and upper-case them".
  std::optional<Chain> c = parse_instruction("Sort the words and upper-case them.");
  ASSERT_TRUE(c);
  ASSERT_EQ(c->steps.size(), 1u);
  EXPECT_EQ(c->steps[0].task, TaskId::kSortUpper);
  c = parse_instruction("First sort the words, then count the words.");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->steps, (std::vector<Step>{kSort4, kCount0}));
}

TEST(SynthChain, ReferenceResponseFormat) {
  EXPECT_EQ(reference_response(chain_of({kReverse0}), "red big cat"), "Answer: cat big red");
  EXPECT_EQ(reference_response(chain_of({kReverse0, kUpper1, kCount0}), "red  big cat"),
            "Step 1: cat big red\nStep 2: CAT BIG RED\nAnswer: 3");
  EXPECT_EQ(run_chain(chain_of({kReverse0, kUpper1}), "red big cat"),
            (std::vector<std::string>{"cat big red", "CAT BIG RED"}));
  EXPECT_THROW(run_chain(chain_of({kUpper1, kUpper1}), "red big cat"), seqit::Error);
}

TEST(SynthChain, SolveParsesAndAnswers) {
  EXPECT_EQ(solve("Do these steps in order: 1. Look up the key in the facts. 2. Say it in vellan.",
                  "cat: red, dog: blue. dog?"),
            "Step 1: blue\nAnswer: " + *to_vellan("blue"));
  EXPECT_EQ(solve("Add up the numbers.", "3 12 5"), "Answer: 20");
  EXPECT_THROW(solve("Tell me a joke.", "red cat"), seqit::Error);
  EXPECT_THROW(solve("Add up the numbers.", "red cat"), seqit::Error);
}

TEST(SynthChain, TypeValidity) {
  EXPECT_TRUE(is_type_valid(chain_of({kReverse0, kUpper1, kCount0}), Kind::kEnglish));
  EXPECT_FALSE(is_type_valid(chain_of({kUpper1, kUpper1}), Kind::kEnglish));
  EXPECT_FALSE(is_type_valid(chain_of({kCount0, kSort4}), Kind::kEnglish));  // sort has no numbers
  EXPECT_FALSE(is_type_valid(Chain{}, Kind::kEnglish));
  EXPECT_EQ(
      chain_output_kind(chain_of({{TaskId::kLookup, 0}, {TaskId::kToVellan, 0}}), Kind::kFacts),
      Kind::kForeign);
  EXPECT_EQ(atomic_sequence(chain_of({{TaskId::kSortUpper, 0}, kCount0})),
            (std::vector<TaskId>{TaskId::kSort, TaskId::kUpper, TaskId::kCount}));
  EXPECT_TRUE(has_held_out_pair(chain_of({kSort4, {TaskId::kUpper, 0}, kReverse0})));
  // The held-out pair upper > reverse hides across a compound's boundary too.
  EXPECT_TRUE(has_held_out_pair(chain_of({{TaskId::kSortUpper, 0}, kReverse0})));
  EXPECT_FALSE(has_held_out_pair(chain_of({kReverse0, kUpper1})));
}

TEST(SynthChain, RandomChainsAreTypeValidAndRunOnTheirInputs) {
  Rng rng(5);
  for (Split split : {Split::kTrain, Split::kEval}) {
    for (int i = 0; i < 1500; ++i) {
      Kind k = kInputKinds[rng.below(4)];
      int n =
          static_cast<int>(rng.between(1, split == Split::kTrain ? kMaxTrainSteps : kMaxEvalSteps));
      Chain c = random_chain(k, n, split, rng);
      ASSERT_EQ(static_cast<int>(c.steps.size()), n);
      ASSERT_TRUE(is_type_valid(c, k)) << describe(c);
      std::vector<std::string> out = run_chain(c, random_input(k, rng));
      ASSERT_EQ(classify_text(out.back()), chain_output_kind(c, k)) << describe(c);
      for (size_t s = 1; s < c.steps.size(); ++s)
        ASSERT_TRUE(may_follow(c.steps[s - 1].task, c.steps[s].task)) << describe(c);
    }
  }
}
