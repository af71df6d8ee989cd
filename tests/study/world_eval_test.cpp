#include "study/world_eval.h"

#include <gtest/gtest.h>

#include <atomic>
#include <fstream>

#include "scripted_backend.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::study {
namespace {
using testing::ScriptedBackend;

// Answers with the reference response, except items whose prompt hashes odd get a wrong last line.
struct HalfRight {
  std::map<std::string, std::string> reference;  // prompt -> response
  llm::Result<llm::Response> operator()(const llm::Request& r) const {
    const std::string& prompt = r.messages.back().content;
    std::string response = reference.at(prompt);
    if (std::hash<std::string>{}(prompt) % 2) response += "x";  // the answer is now wrong
    return ScriptedBackend::reply(response);
  }
};

TEST(WorldEval, GradesEveryItemAndResumesWithoutAskingAgain) {
  const auto items = synth::make_eval_items(3, 6, 4);
  HalfRight script;
  for (const auto& item : items) script.reference[eval_prompt(item)] = item.response;
  seqit::testing::TempDir tmp;
  // Stopped after 10 answers.
  int answers = 0;
  {
    ScriptedBackend backend(std::cref(script));
    WorldEvalOptions o;
    o.max_in_flight = 4;
    o.interrupted = [&] { return answers >= 10; };
    o.progress = [&](int64_t, int64_t) { ++answers; };
    EXPECT_THROW(evaluate_world(backend, items, tmp / "results.jsonl", o), Error);
  }
  ScriptedBackend backend(std::cref(script));
  const auto grades = evaluate_world(backend, items, tmp / "results.jsonl");
  EXPECT_EQ(backend.requests().size() + static_cast<size_t>(answers), items.size());
  ASSERT_EQ(grades.size(), items.size());
  int right = 0;
  for (size_t i = 0; i < items.size(); ++i) {
    const bool wrong = std::hash<std::string>{}(eval_prompt(items[i])) % 2;
    EXPECT_EQ(grades[i].final_correct, !wrong) << items[i].id;
    right += grades[i].final_correct;
  }
  EXPECT_GT(right, 0);
  const auto scores = score_by_length(items, grades);
  EXPECT_EQ(scores.by_length.size(), 4u);
  EXPECT_EQ(scores.all.items, static_cast<int64_t>(items.size()));
  EXPECT_DOUBLE_EQ(scores.all.final_accuracy, static_cast<double>(right) / items.size());
  // Read back from the file: the same grades.
  const auto again = read_grades(items, tmp / "results.jsonl");
  for (size_t i = 0; i < items.size(); ++i)
    EXPECT_EQ(again[i].final_correct, grades[i].final_correct);
  // Every line of the results file is one item, none twice.
  std::ifstream in(tmp / "results.jsonl");
  std::string line;
  size_t lines = 0;
  while (std::getline(in, line)) ++lines;
  EXPECT_EQ(lines, items.size());
}

}  // namespace
}  // namespace seqit::study

#include "llm/local_backend.h"
#include "study/scratch_model.h"
#include "tokenizer/tokenizer.h"

namespace seqit::study {
namespace {

// The evaluation asks a model through the local backend with the chat template it was trained with:
// the template's role markers must be the tokenizer's control tokens there too (as in training and
// in Hugging Face's apply_chat_template), not spelled out byte by byte.
TEST(WorldEval, LocalChatPromptsParseTheTemplatesControlTokens) {
  seqit::testing::TempDir tmp;
  write_scratch_model(tmp.path(), world_model_config(), 1);
  llm::LocalBackendOptions lo;
  lo.chat_template = "tulu";
  auto backend =
      llm::LocalBackend::open(tmp.path().string(), (tmp / "tokenizer.json").string(), lo);
  llm::SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 1;
  const auto r = backend->chat({{"user", "Say it in vellan. tree cup"}}, p);
  ASSERT_TRUE(r.ok()) << r.error().describe();
  const auto tok = tokenizer::load_tokenizer(tmp / "tokenizer.json");
  const std::string rendered = "<|user|>\nSay it in vellan. tree cup\n<|assistant|>\n";
  const auto parsed = tok->encode(rendered, {.add_special = true, .parse_special = true});
  const auto spelled = tok->encode(rendered, {.add_special = true, .parse_special = false});
  ASSERT_LT(parsed.size(), spelled.size());
  EXPECT_EQ(r.value().usage.prompt_tokens, static_cast<int64_t>(parsed.size()));
}

}  // namespace
}  // namespace seqit::study
