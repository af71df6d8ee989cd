// Grading responses: per-step correctness, shape, following, depth and final answer.
#include <gtest/gtest.h>

#include "synth/grade.h"

using namespace seqit::synth;

namespace {
// reverse > upper > count on "red big cat":
//   Step 1: cat big red / Step 2: CAT BIG RED / Answer: 3
Item three_steps() {
  Chain c{{{TaskId::kReverse, 5}, {TaskId::kUpper, 5}, {TaskId::kCount, 5}}, Connective::kNumbered};
  return make_item("t", c, "red big cat");
}
std::vector<bool> correct(const Grade& g) {
  std::vector<bool> out;
  for (const StepGrade& s : g.steps) out.push_back(s.correct);
  return out;
}
}  // namespace

TEST(SynthGrade, AllRight) {
  Item item = three_steps();
  ASSERT_EQ(item.response, "Step 1: cat big red\nStep 2: CAT BIG RED\nAnswer: 3");
  Grade g = grade_response(item, item.response);
  EXPECT_EQ(correct(g), (std::vector<bool>{true, true, true}));
  EXPECT_TRUE(g.following);
  EXPECT_EQ(g.depth, 3);
  EXPECT_TRUE(g.final_correct);
  EXPECT_DOUBLE_EQ(g.step_accuracy(), 1.0);
  EXPECT_EQ(g.steps[1].expected, "CAT BIG RED");
  EXPECT_EQ(g.steps[1].got, "CAT BIG RED");
}

TEST(SynthGrade, StepTwoWrongButShaped) {
  Grade g = grade_response(three_steps(), "Step 1: cat big red\nStep 2: RED BIG CAT\nAnswer: 3");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(g.steps[1].shaped);
  EXPECT_TRUE(g.following);  // every step carried out, in order: following is about shape
  EXPECT_EQ(g.depth, 1);
  EXPECT_TRUE(g.final_correct);
  EXPECT_NEAR(g.step_accuracy(), 2.0 / 3.0, 1e-12);
}

TEST(SynthGrade, UpperCaseIsCaseSensitiveOtherStepsAreNot) {
  Grade g = grade_response(three_steps(), "Step 1: Cat BIG red\nStep 2: cat big red\nAnswer: 3");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, false, true}));
  EXPECT_TRUE(g.steps[0].shaped);
  EXPECT_FALSE(g.steps[1].shaped);  // lower-case text is not what upper-casing gives
  EXPECT_FALSE(g.following);
}

TEST(SynthGrade, StepsSwapped) {
  // The lines of steps 1 and 2 in the wrong order: each is right for its label, but the
  // response does not follow the instruction in order.
  Grade g = grade_response(three_steps(), "Step 2: CAT BIG RED\nStep 1: cat big red\nAnswer: 3");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, true, true}));
  EXPECT_FALSE(g.following);
  EXPECT_EQ(g.depth, 3);
  // The tasks done in the wrong order (upper first, then reverse): wrong from step 1 on.
  g = grade_response(three_steps(), "Step 1: RED BIG CAT\nStep 2: CAT BIG RED\nAnswer: 3");
  EXPECT_EQ(correct(g), (std::vector<bool>{false, true, true}));
  EXPECT_TRUE(g.following);
  EXPECT_EQ(g.depth, 0);
}

TEST(SynthGrade, MissingAnswer) {
  Grade g = grade_response(three_steps(), "Step 1: cat big red\nStep 2: CAT BIG RED\n");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, true, false}));
  EXPECT_FALSE(g.steps[2].got);
  EXPECT_FALSE(g.following);
  EXPECT_EQ(g.depth, 2);
  EXPECT_FALSE(g.final_correct);
  // "Step 3:" is not the Answer line.
  g = grade_response(three_steps(), "Step 1: cat big red\nStep 2: CAT BIG RED\nStep 3: 3");
  EXPECT_FALSE(g.final_correct);
  EXPECT_FALSE(g.following);
}

TEST(SynthGrade, ExtraWhitespaceAndLabelCaseAreForgiven) {
  Grade g = grade_response(
      three_steps(), "\n  step 1 :   cat  big\tred  \r\n\nSTEP 2:CAT BIG RED\n answer :3 \n\n");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, true, true}));
  EXPECT_TRUE(g.following);
  EXPECT_EQ(g.depth, 3);
}

TEST(SynthGrade, ExtraOrRepeatedLinesBreakFollowingOnly) {
  Item item = three_steps();
  Grade g = grade_response(item, "Sure!\n" + item.response);
  EXPECT_FALSE(g.following);
  EXPECT_TRUE(g.final_correct);
  g = grade_response(item, item.response + "\nAnswer: 3");
  EXPECT_FALSE(g.following);
  EXPECT_EQ(g.depth, 3);
}

TEST(SynthGrade, AnswerOnlyForAChainSkipsTheSteps) {
  Grade g = grade_response(three_steps(), "Answer: 3");
  EXPECT_EQ(correct(g), (std::vector<bool>{false, false, true}));
  EXPECT_FALSE(g.following);
  EXPECT_EQ(g.depth, 0);
  EXPECT_TRUE(g.final_correct);
}

TEST(SynthGrade, SingleTaskAndFacts) {
  Item item =
      make_item("f", Chain{{{TaskId::kRepeat, 0}, {TaskId::kLookup, 0}}, Connective::kFirstThen},
                "cat: red, dog: blue. dog?");
  EXPECT_EQ(item.response, "Step 1: cat: red, dog: blue. dog?\nAnswer: blue");
  Grade g = grade_response(item, "Step 1: cat : red , dog : blue . dog ?\nAnswer: BLUE");
  EXPECT_EQ(correct(g), (std::vector<bool>{true, true}));
  EXPECT_TRUE(g.following);
  g = grade_response(item, "Step 1: cat: red. dog?\nAnswer: blue");
  EXPECT_FALSE(g.steps[0].correct);
  EXPECT_FALSE(g.steps[0].shaped);  // a fact went missing
  Item single = make_item("s", Chain{{{TaskId::kSum, 0}}, Connective::kFirstThen}, "3 12 5");
  EXPECT_TRUE(grade_response(single, "Answer: 20").following);
  EXPECT_FALSE(grade_response(single, "Answer: 21").final_correct);
  EXPECT_TRUE(grade_response(single, "Answer: 21").following);
  EXPECT_FALSE(grade_response(single, "Answer: twenty").following);
}

TEST(SynthGrade, ReferenceResponsesOfEvalItemsScorePerfectly) {
  std::vector<Grade> grades;
  for (const Item& item : make_eval_items(12, 100))
    grades.push_back(grade_response(item, item.response));
  GradeSummary s = summarize(grades);
  EXPECT_EQ(s.items, 500);
  EXPECT_EQ(s.steps, 100 * (1 + 2 + 3 + 4 + 5));
  EXPECT_DOUBLE_EQ(s.following_rate, 1.0);
  EXPECT_DOUBLE_EQ(s.step_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(s.final_accuracy, 1.0);
  EXPECT_DOUBLE_EQ(s.mean_depth, 3.0);
}

TEST(SynthGrade, Summary) {
  Item item = three_steps();
  std::vector<Grade> grades = {
      grade_response(item, item.response),
      grade_response(item, "Step 1: cat big red\nStep 2: RED BIG CAT\nAnswer: 4"),
      grade_response(item, "")};
  GradeSummary s = summarize(grades);
  EXPECT_EQ(s.items, 3);
  EXPECT_EQ(s.steps, 9);
  EXPECT_NEAR(s.following_rate, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.step_accuracy, 4.0 / 9.0, 1e-12);
  EXPECT_NEAR(s.final_accuracy, 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(s.mean_depth, 4.0 / 3.0, 1e-12);
  EXPECT_EQ(summarize({}).items, 0);
}
