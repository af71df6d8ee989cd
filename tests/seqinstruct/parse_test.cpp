#include "seqinstruct/parse.h"

#include <gtest/gtest.h>

#include <random>

#include "infer/constraint.h"

namespace seqit::seqinstruct {
namespace {

char opt(std::string_view reply) {
  auto p = parse_option(reply);
  return p.ok() ? option_letter(*p.value) : '-';
}

// Random texts of the constrained classification language (byte walks through its automaton,
// mostly printable ASCII, steered to the end after a while; prose lines may say "option A" or
// "Option: C") are always read, by rule 1, as the letter of their last line.
TEST(ParseOption, EveryTextOfTheConstrainedFormatParses) {
  const auto c = seqit::infer::Constraint::regex(option_reply_pattern());
  std::mt19937 rng(3);
  const std::vector<std::string> pieces = {
      "option A", "Option: C", "The option is B", "(D)", "Let's think", "\n", "x", " ", ":"};
  for (int walk = 0; walk < 500; ++walk) {
    int32_t state = c->start();
    std::string text;
    for (int step = 0; !c->complete(state); ++step) {
      ASSERT_LT(step, 20000);
      if (step >= 60 && c->accepting(state)) break;  // where generation would take EOS
      // A whole piece when it fits the language, else one byte that does.
      const std::string& piece = pieces[rng() % pieces.size()];
      const int32_t after = c->advance(state, piece);
      if (step < 60 && after != seqit::infer::Constraint::kDead) {
        text += piece;
        state = after;
        continue;
      }
      std::vector<int> next;
      for (int b = 0x0a; b < 0x7f; ++b) {
        if (b > 0x0a && b < 0x20) continue;  // newline and printable ASCII
        const int32_t t = c->next(state, static_cast<uint8_t>(b));
        if (t != seqit::infer::Constraint::kDead &&
            (step < 60 || c->distance(t) < c->distance(state)))
          next.push_back(b);
      }
      ASSERT_FALSE(next.empty()) << text;
      const int b = next[rng() % next.size()];
      text += static_cast<char>(b);
      state = c->next(state, static_cast<uint8_t>(b));
    }
    const auto got = parse_option(text);
    ASSERT_TRUE(got.ok()) << "'" << text << "': " << got.how;
    EXPECT_EQ(option_letter(*got.value), text.back()) << text;
    EXPECT_EQ(got.how, "answer line") << text;
  }
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
