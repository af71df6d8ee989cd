#include "seqinstruct/parse.h"

#include <gtest/gtest.h>

namespace seqit::seqinstruct {
namespace {

char opt(std::string_view reply) {
  auto p = parse_option(reply);
  return p.ok() ? option_letter(*p.value) : '-';
}

TEST(ParseOption, AnswerLineForms) {
  EXPECT_EQ(opt("Adding a first step helps.\nOption: B"), 'B');
  EXPECT_EQ(opt("reasoning...\nSo the option is: C."), 'C');
  EXPECT_EQ(opt("**Option:** (A)"), 'A');
  EXPECT_EQ(opt("The option is d"), 'D');
  EXPECT_EQ(opt("Final answer - option [B]\n"), 'B');
  EXPECT_EQ(opt("  option:   c  \n\n"), 'C');
}

TEST(ParseOption, LastAnswerLineWins) {
  EXPECT_EQ(opt("Option: A\nOn second thought a prefix is better.\nOption: B"), 'B');
}

// SIT_SPEC §8 item 6: the reference takes "option a" as a substring, so "option allows" reads as A.
TEST(ParseOption, OptionAllowsIsNotA) {
  auto p = parse_option("This option allows the model to keep the meaning. So a suffix task fits.");
  // Not A: the only evidence is the phrase "suffix task" -> C.
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(option_letter(*p.value), 'C');
  EXPECT_EQ(opt("The option adds detail and the option does not."), '-');
  EXPECT_EQ(opt("Optional: B"), '-');
}

// The reference checks a case-sensitive "A." first: "A. decompose" in an echoed option list wins.
TEST(ParseOption, EchoedOptionListDoesNotDecide) {
  EXPECT_EQ(opt("A. Decompose\nB. Prefix task\nC. Suffix task\nD. Keep\nI choose to keep it.\n"
                "Option: D"),
            'D');
}

TEST(ParseOption, MentionsInProse) {
  EXPECT_EQ(opt("I would go with option (C) here, since the answer can be extended."), 'C');
  auto both = parse_option("Option A is tempting, but option B fits better.");
  EXPECT_FALSE(both.ok());
  EXPECT_NE(both.how.find("ambiguous"), std::string::npos);
}

TEST(ParseOption, NothingIsAFailureNotD) {
  auto p = parse_option("I am not sure what to do with this instruction.");
  EXPECT_FALSE(p.ok());
  EXPECT_EQ(p.how, "no option in the reply");
}

TEST(ParseNewInstruction, MarkerAndCleanup) {
  auto p = parse_new_instruction(
      "Reasoning here.\n#New Instruction#: \"First list the parts, then explain each.\"###\nextra");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p.value, "First list the parts, then explain each.");
  // The last marker wins (an echoed example earlier does not).
  p = parse_new_instruction("#New Instruction#: old###\nnow:\n#new instruction#: **new one**");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p.value, "new one");
  p = parse_new_instruction("New instruction: Summarize it, then title it. Explanation: because");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p.value, "Summarize it, then title it.");
  EXPECT_FALSE(parse_new_instruction("#New Instruction#: ###").ok());
  EXPECT_FALSE(parse_new_instruction("no marker at all").ok());
}

TEST(ParseExtraction, FieldsAndEmptyInput) {
  auto p = parse_extraction("Instruction: Which is prime?###\nInput: (a) 21 (b) 23###");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value->instruction, "Which is prime?");
  EXPECT_EQ(p.value->input, "(a) 21 (b) 23");
  p = parse_extraction("instruction: \"Name the capital of Portugal.\"###\ninput: ###");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value->input, "");
  EXPECT_FALSE(parse_extraction("Input: only###").ok());
}

TEST(InputInInstruction, SubstringAndOverlap) {
  EXPECT_TRUE(input_in_instruction("Categorize banana as citrus or not.", "Banana"));
  EXPECT_TRUE(input_in_instruction("anything", ""));
  EXPECT_FALSE(input_in_instruction("Summarize the passage, then give it a title.",
                                    "The council met on Monday to discuss the new budget."));
  EXPECT_TRUE(input_in_instruction("Translate the sentence the cat sat on the warm mat into French",
                                   "The cat sat on the mat."));
}

TEST(CleanInstruction, QuotesAndExplanation) {
  EXPECT_EQ(clean_instruction("  \u201cDo this.\u201d \n"), "Do this.");
  EXPECT_EQ(clean_instruction("'Do this.' Explanation: it is good"), "Do this.");
}

}  // namespace
}  // namespace seqit::seqinstruct
