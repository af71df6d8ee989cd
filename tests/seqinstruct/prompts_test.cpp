#include "seqinstruct/prompts.h"

#include <gtest/gtest.h>

#include "util/error.h"

namespace seqit::seqinstruct {
namespace {

size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

std::string all_text(const std::vector<llm::Message>& messages) {
  std::string s;
  for (const auto& m : messages) s += m.content + "\n";
  return s;
}

TEST(Prompts, DefaultSetParses) {
  const PromptSet set = load_prompt_set("default");
  EXPECT_EQ(set.name, "default");
  EXPECT_EQ(set.classify_examples.size(), 5u);
  EXPECT_EQ(set.extract_examples.size(), 4u);
  for (Option o : {Option::A, Option::B, Option::C})
    EXPECT_EQ(set.generate.at(o).examples.size(), 3u);
}

// SIT_SPEC §8 item 3: the reference puts the input into the generation prompt twice and crashes on
// an empty one. Every stage here carries it exactly once, and an empty input works.
TEST(Prompts, InputAppearsExactlyOnceInEveryStage) {
  const PromptSet set = load_prompt_set("default");
  const std::string input = "QQINPUTQQ 17 42";
  const std::string full = join_prompt("Sort these numbers.", input);
  EXPECT_EQ(full, "Sort these numbers. QQINPUTQQ 17 42");
  EXPECT_EQ(count(all_text(classify_messages(set, full, 1)), "QQINPUTQQ"), 1u);
  for (Option o : {Option::A, Option::B, Option::C})
    EXPECT_EQ(count(all_text(generate_messages(set, o, full, 1)), "QQINPUTQQ"), 1u);
  EXPECT_EQ(count(all_text(extract_messages(set, full, 1)), "QQINPUTQQ"), 1u);
  EXPECT_EQ(count(all_text(respond_messages("", full)), "QQINPUTQQ"), 1u);
  // Empty input: the instruction alone.
  EXPECT_EQ(join_prompt("Name a prime.", ""), "Name a prime.");
  EXPECT_NO_THROW(generate_messages(set, Option::B, join_prompt("Name a prime.", ""), 3));
}

TEST(Prompts, ExamplesShuffleWithTheSeed) {
  const PromptSet set = load_prompt_set("default");
  const auto a = classify_messages(set, "x", 1), b = classify_messages(set, "x", 1);
  EXPECT_EQ(a, b);
  bool differs = false;
  for (uint64_t seed = 2; seed < 12 && !differs; ++seed)
    differs = classify_messages(set, "x", seed) != a;
  EXPECT_TRUE(differs);
  EXPECT_NE(request_seed(42, "7", 1, "classify", 0), request_seed(42, "7", 1, "classify", 1));
  EXPECT_EQ(request_seed(42, "7", 1, "classify", 0), request_seed(42, "7", 1, "classify", 0));
}

TEST(Prompts, RespondKeepsAnEmptySystemOut) {
  EXPECT_EQ(respond_messages("", "hi").size(), 1u);
  const auto with = respond_messages("Be brief.", "hi");
  ASSERT_EQ(with.size(), 2u);
  EXPECT_EQ(with[0].role, "system");
}

TEST(Prompts, BadSetNamesTheField) {
  std::string yaml(default_prompts_yaml());
  const std::string from = "option: C", to = "option: E";
  yaml.replace(yaml.find(from), from.size(), to);
  try {
    parse_prompt_set(yaml, "mine.yaml");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("mine.yaml"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("classify.examples[0].option"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(load_prompt_set("/nonexistent/prompts.yaml"), Error);
}

}  // namespace
}  // namespace seqit::seqinstruct
