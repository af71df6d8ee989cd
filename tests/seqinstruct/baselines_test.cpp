#include "seqinstruct/baselines.h"

#include <gtest/gtest.h>

#include <set>

#include "scripted_backend.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::seqinstruct {
namespace {
using testing::ScriptedBackend;

std::vector<SourceItem> source(int n) {
  std::vector<SourceItem> items;
  for (int i = 0; i < n; ++i) {
    SourceItem s;
    s.id = std::to_string(i);
    s.index = i;
    s.instruction = "Summarize the text " + std::to_string(i) + ".";
    s.input = i % 4 == 3 ? "" : "text number " + std::to_string(i);
    s.output = "summary " + std::to_string(i);
    items.push_back(s);
  }
  return items;
}

llm::Result<llm::Response> echo_generator(const llm::Request& r) {
  return ScriptedBackend::reply("  <" + r.messages.front().content.substr(0, 28) + "|" +
                                r.messages.back().content + ">\n");
}

TEST(Manual, RepeatFormatsAndKeepsTheRest) {
  const auto items = source(8);
  ManualOptions o;
  o.kind = ManualKind::repeat;
  ManualReport report;
  seqit::testing::TempDir tmp;
  const auto rows = build_manual(nullptr, items, {}, tmp / "t.jsonl", o, &report);
  ASSERT_EQ(rows.size(), 8u);
  EXPECT_EQ(report.chains, 6);
  EXPECT_EQ(report.plain, 2);
  EXPECT_EQ(report.no_input, 2);
  EXPECT_EQ(rows[0].instruction, "First repeat the input below, then summarize the text 0.");
  EXPECT_EQ(rows[0].input, "text number 0");
  EXPECT_EQ(rows[0].output, "Repeat:\ntext number 0\nResult: summary 0");
  EXPECT_EQ(rows[3].instruction, "Summarize the text 3.");  // no input: kept as it was
  EXPECT_EQ(rows[3].output, "summary 3");
  // An acronym keeps its capitals.
  EXPECT_EQ(chain_instruction(ManualKind::repeat, "UK nations?"),
            "First repeat the input below, then UK nations?");
}

TEST(Manual, ShareSplitsDeterministically) {
  const auto items = source(40);
  ManualOptions o;
  o.share = 0.5;
  seqit::testing::TempDir tmp;
  ManualReport a, b;
  const auto x = build_manual(nullptr, items, {}, tmp / "a.jsonl", o, &a);
  const auto y = build_manual(nullptr, items, {}, tmp / "b.jsonl", o, &b);
  EXPECT_EQ(a.chains, 15);  // half of the 30 rows with an input
  EXPECT_EQ(x, y);
  o.seed = 43;
  const auto z = build_manual(nullptr, items, {}, tmp / "c.jsonl", o, nullptr);
  EXPECT_NE(x, z);
}

TEST(Manual, TranslateThroughTheGeneratorInLanguageBlocksAndResumes) {
  const auto items = source(12);
  ScriptedBackend backend(echo_generator);
  ManualOptions o;
  o.kind = ManualKind::translate;
  o.languages = {"German", "Spanish", "Russian"};
  seqit::testing::TempDir tmp;
  ManualReport report;
  const auto rows = build_manual(&backend, items, {}, tmp / "t.jsonl", o, &report);
  EXPECT_EQ(report.chains, 9);
  EXPECT_EQ(report.per_language,
            (std::map<std::string, int64_t>{{"German", 3}, {"Russian", 3}, {"Spanish", 3}}));
  EXPECT_EQ(report.requests, 9);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (items[i].input.empty()) continue;
    EXPECT_EQ(rows[i].instruction, "First translate the input below into English, then " +
                                       std::string("summarize the text ") + std::to_string(i) +
                                       ".");
    // The input is the generator's translation (trimmed); the output translates back and answers.
    EXPECT_NE(rows[i].input.find("|text number " + std::to_string(i) + ">"), std::string::npos)
        << rows[i].input;
    EXPECT_EQ(rows[i].input.front(), '<');
    EXPECT_EQ(rows[i].output, "Translation into English:\ntext number " + std::to_string(i) +
                                  "\nResult: summary " + std::to_string(i));
  }
  // A rerun asks nothing: the answers are in the trace.
  ScriptedBackend again(echo_generator);
  ManualReport second;
  EXPECT_EQ(build_manual(&again, items, {}, tmp / "t.jsonl", o, &second), rows);
  EXPECT_EQ(again.requests().size(), 0u);
}

TEST(Manual, TranslateFromParallelDataNeedsNoGenerator) {
  const auto items = source(8);
  auto german = items;
  for (auto& g : german) g.input = "Text Nummer " + g.id;
  ManualOptions o;
  o.kind = ManualKind::translate;
  o.languages = {"German"};
  seqit::testing::TempDir tmp;
  const auto rows = build_manual(nullptr, items, {{"German", german}}, tmp / "t.jsonl", o, nullptr);
  EXPECT_EQ(rows[1].input, "Text Nummer 1");
  EXPECT_EQ(rows[1].output, "Translation into English:\ntext number 1\nResult: summary 1");
  auto short_german = german;
  short_german.pop_back();
  EXPECT_THROW(
      build_manual(nullptr, items, {{"German", short_german}}, tmp / "u.jsonl", o, nullptr), Error);
  o.languages = {"Spanish"};
  EXPECT_THROW(build_manual(nullptr, items, {{"German", german}}, tmp / "v.jsonl", o, nullptr),
               Error);  // Spanish has neither parallel data nor a generator
}

TEST(Manual, ParaphraseUsesTheGenerator) {
  const auto items = source(4);
  ScriptedBackend backend(echo_generator);
  ManualOptions o;
  o.kind = ManualKind::paraphrase;
  seqit::testing::TempDir tmp;
  const auto rows = build_manual(&backend, items, {}, tmp / "t.jsonl", o, nullptr);
  EXPECT_EQ(rows[0].instruction, "First paraphrase the input below, then summarize the text 0.");
  EXPECT_EQ(rows[0].output.rfind("Paraphrase:\n<Rewrite the text", 0), 0u) << rows[0].output;
  EXPECT_NE(rows[0].output.find("\nResult: summary 0"), std::string::npos);
  EXPECT_THROW(build_manual(nullptr, items, {}, tmp / "u.jsonl", o, nullptr), Error);
}

TEST(TokenMatch, PicksWithinTheToleranceOrSaysHowMuchIsMissing) {
  std::vector<data::Instruction> pool;
  for (int i = 0; i < 200; ++i) {
    data::Instruction row;
    row.instruction = "q" + std::to_string(i);
    row.output = std::string(static_cast<size_t>(5 + (i * 37) % 60), 'x');
    pool.push_back(row);
  }
  auto count = [](std::string_view text) { return static_cast<int64_t>(text.size()); };
  TokenMatchReport report;
  const auto picked = token_matched(pool, 3001, 0.02, count, &report);
  EXPECT_LE(std::abs(report.deviation()), 0.02);
  int64_t total = 0;
  for (const auto& row : picked) total += count(row.output);
  EXPECT_EQ(total, report.tokens);
  EXPECT_EQ(report.items, static_cast<int64_t>(picked.size()));
  // Pool order is kept (a prefix of the pool, minus items that would overshoot).
  EXPECT_EQ(picked.front().instruction, "q0");
  // A tight tolerance on an exact target.
  const auto exact = token_matched(pool, 5, 0.0, count, &report);
  EXPECT_EQ(report.tokens, 5);
  EXPECT_EQ(exact.size(), 1u);
  try {
    token_matched(pool, 1000000, 0.02, count, &report);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("more"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace seqit::seqinstruct
