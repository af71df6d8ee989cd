#include "seqinstruct/pipeline.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "scripted_backend.h"
#include "seqinstruct/parse.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::seqinstruct {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using testing::ScriptedBackend;

std::string after_last(const std::string& text, const std::string& marker) {
  const size_t at = text.rfind(marker);
  return at == std::string::npos ? text : text.substr(at + marker.size());
}
void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, at + to.size()))
    s.replace(at, from.size(), to);
}
std::string stage_of(const llm::Request& r) {
  const std::string& user = r.messages.back().content;
  if (user.find("Now the instruction to decide on:") != std::string::npos) return "classify";
  if (user.find("#Original Instruction#") != std::string::npos) return "generate";
  if (user.rfind("Prompt: \"", 0) == 0) return "extract";
  return "respond";
}

// The world of these tests: tags in an instruction say what the generator does with it.
//   [A] [B] [C] [D]  classify as that option (rewrites carry [D], so the next pass keeps them)
//   [BB]             B twice (the first rewrite carries [B])
//   [X]              never a parsable classification
//   [R]              unparsable on the first try, then B
//   [G]              classified B, the generation never parses
//   [E]              the backend fails (a server error)
struct World {
  std::mutex mutex;
  std::map<std::string, int> tries;  // instruction -> classify tries
  llm::Result<llm::Response> operator()(const llm::Request& r) {
    const std::string stage = stage_of(r);
    const std::string& user = r.messages.back().content;
    if (stage == "extract") {
      std::string prompt = after_last(user, "Prompt: \"");
      prompt = prompt.substr(0, prompt.rfind('"'));
      const size_t bar = prompt.find(" || ");
      return ScriptedBackend::reply(
          "Instruction: " + prompt.substr(0, bar) +
          "###\nInput: " + (bar == std::string::npos ? "" : prompt.substr(bar + 4)) + "###");
    }
    if (stage == "classify") {
      const std::string q = after_last(user, "Now the instruction to decide on:");
      if (q.find("[E]") != std::string::npos)
        return llm::LlmError{llm::ErrorKind::server, "boom", 500, 3, "scripted"};
      if (q.find("[X]") != std::string::npos)
        return ScriptedBackend::reply("I cannot decide; this option allows many things.");
      if (q.find("[R]") != std::string::npos) {
        std::lock_guard lock(mutex);
        if (tries[q]++ == 0) return ScriptedBackend::reply("Hmm.");
        return ScriptedBackend::reply("A prefix fits.\nOption: B");
      }
      for (const char* tag : {"[BB]", "[G]"})
        if (q.find(tag) != std::string::npos) return ScriptedBackend::reply("Option: B");
      for (char c : {'A', 'B', 'C', 'D'})
        if (q.find(std::string("[") + c + "]") != std::string::npos)
          return ScriptedBackend::reply(std::string("Reasoning.\nSo the option is: ") + c + ".");
      return ScriptedBackend::reply("Option: D");
    }
    if (stage == "generate") {
      std::string q = after_last(user, "*** End of example");
      q = after_last(q, "#Original Instruction#: \"");
      q = q.substr(0, q.rfind('"'));
      if (q.find("[G]") != std::string::npos) return ScriptedBackend::reply("no marker here");
      // The rewrite keeps the first sentence: an input after it is left out, one inside is kept.
      if (const size_t dot = q.find('.'); dot != std::string::npos) q = q.substr(0, dot + 1);
      std::string lead = "First do a step, then ";
      if (user.find("decompose the instruction") != std::string::npos) lead = "Split: ";
      if (user.find("add a suffix task") != std::string::npos) lead = "After that: ";
      for (const char* tag : {"[A]", "[C]", "[R]"}) replace_all(q, tag, "[D]");
      if (q.find("[BB]") != std::string::npos)
        replace_all(q, "[BB]", "[B]");
      else
        replace_all(q, "[B]", "[D]");
      return ScriptedBackend::reply("Thinking.\n#New Instruction#: " + lead + q + "###");
    }
    return ScriptedBackend::reply("ANSWER(" + user + ")");
  }
};

SourceItem item(std::string id, std::string instruction, std::string input = {},
                std::string output = "old") {
  SourceItem s;
  s.id = std::move(id);
  s.instruction = std::move(instruction);
  s.input = std::move(input);
  s.output = std::move(output);
  return s;
}

std::vector<SourceItem> indexed(std::vector<SourceItem> items) {
  for (size_t i = 0; i < items.size(); ++i) items[i].index = static_cast<int64_t>(i);
  return items;
}

std::vector<json> read_trace(const fs::path& path) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

class PipelineTest : public ::testing::Test {
 protected:
  seqit::testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
  PromptSet prompts_ = load_prompt_set("default");
};

TEST_F(PipelineTest, EveryOptionAndFreezing) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed({item("a", "Explain atoms [A]."), item("b", "Give tips [B]."),
                        item("c", "Who wrote Hamlet [C]?"), item("d", "Add 2 and 3 [D]."),
                        item("bb", "List colours [BB].")});
  PipelineOptions o;
  o.iterations = 3;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  ASSERT_EQ(result.items.size(), 5u);
  for (const auto& r : result.items) EXPECT_TRUE(r.complete) << r.source->id;
  EXPECT_EQ(result.items[0].options, (std::vector<char>{'A', 'D'}));
  EXPECT_EQ(result.items[0].instruction, "Split: Explain atoms [D].");
  EXPECT_EQ(result.items[1].options, (std::vector<char>{'B', 'D'}));
  EXPECT_EQ(result.items[1].instruction, "First do a step, then Give tips [D].");
  EXPECT_EQ(result.items[2].options, (std::vector<char>{'C', 'D'}));
  EXPECT_EQ(result.items[2].instruction, "After that: Who wrote Hamlet [D]?");
  // D on the first pass: frozen, the instruction kept, the response still regenerated.
  EXPECT_EQ(result.items[3].options, (std::vector<char>{'D'}));
  EXPECT_EQ(result.items[3].instruction, "Add 2 and 3 [D].");
  EXPECT_EQ(result.items[3].output, "ANSWER(Add 2 and 3 [D].)");
  // B twice, then D.
  EXPECT_EQ(result.items[4].options, (std::vector<char>{'B', 'B', 'D'}));
  // The response answers the final instruction; a D pass keeps the previous response.
  EXPECT_EQ(result.items[1].output, "ANSWER(First do a step, then Give tips [D].)");

  // Frozen items are never asked again: item d had one classify and one respond.
  int d_requests = 0;
  for (const auto& r : backend.requests())
    if (r.messages.back().content.find("Add 2 and 3") != std::string::npos) ++d_requests;
  EXPECT_EQ(d_requests, 2);

  const auto trace = read_trace(dir_ / "trace.jsonl");
  std::set<std::string> ids;
  for (const auto& t : trace) EXPECT_TRUE(ids.insert(t.at("id").get<std::string>()).second);
  EXPECT_TRUE(ids.count("#config"));
  EXPECT_TRUE(ids.count("a@1") && ids.count("a@2") && !ids.count("a@3"));
  EXPECT_TRUE(ids.count("d@1") && !ids.count("d@2"));
  EXPECT_TRUE(ids.count("bb@3"));
}

// Constrained: classification requests (only they) carry the answer line's regex as their response
// format, and the trace's config line says so (an unconstrained run's config has no such key, so
// traces from before the option still resume).
TEST_F(PipelineTest, ConstrainedClassificationSendsTheAnswerFormat) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed({item("a", "Explain atoms [A]."), item("d", "Add 2 and 3 [D].")});
  PipelineOptions o;
  o.constrained = true;
  run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  int classify = 0;
  for (const auto& r : backend.requests()) {
    if (stage_of(r) == "classify") {
      ++classify;
      EXPECT_EQ(r.response_format.kind, llm::ResponseFormat::Kind::regex);
      EXPECT_EQ(r.response_format.pattern, option_reply_pattern());
    } else {
      EXPECT_EQ(r.response_format.kind, llm::ResponseFormat::Kind::text) << stage_of(r);
    }
  }
  EXPECT_EQ(classify, 3);  // a: A then D; d: D
  EXPECT_EQ(read_trace(dir_ / "trace.jsonl").front().at("config").value("answer_format", ""),
            "constrained");
  PipelineOptions free;
  run_pipeline(backend, prompts_, items, dir_ / "free.jsonl", free);
  EXPECT_FALSE(read_trace(dir_ / "free.jsonl").front().at("config").contains("answer_format"));
}

TEST_F(PipelineTest, ParseFailuresRetryThenKeepAsD) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed({item("x", "Do something [X]."), item("r", "Retry me [R]."),
                        item("g", "Generate fails [G].")});
  PipelineOptions o;
  o.iterations = 1;
  o.max_attempts = 3;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(result.items[0].options, (std::vector<char>{'D'}));
  EXPECT_EQ(result.items[0].instruction, "Do something [X].");
  EXPECT_EQ(result.items[0].output, "ANSWER(Do something [X].)");
  EXPECT_EQ(result.items[1].options, (std::vector<char>{'B'}));
  EXPECT_EQ(result.items[2].options, (std::vector<char>{'D'}));
  EXPECT_EQ(result.items[2].instruction, "Generate fails [G].");
  // x: 3 classify tries; r: 1 retry; g: 3 generate tries.
  EXPECT_EQ(result.counts.parse_retries, 2 + 1 + 2);
  EXPECT_EQ(result.counts.parse_failures, 2);
  std::map<std::string, json> by_id;
  for (const auto& t : read_trace(dir_ / "trace.jsonl")) by_id[t.at("id")] = t;
  EXPECT_EQ(by_id["x@1"].at("status"), "parse_failed");
  EXPECT_EQ(by_id["x@1"].at("reason"), "classify: no option in the reply");
  EXPECT_EQ(by_id["g@1"].at("status"), "parse_failed");
  EXPECT_EQ(by_id["r@1"].at("status"), "ok");
  // Each retry asked with a new seed.
  std::set<uint64_t> seeds;
  for (const auto& call : by_id["x@1"].at("calls"))
    if (call.at("stage") == "classify") seeds.insert(call.at("seed").get<uint64_t>());
  EXPECT_EQ(seeds.size(), 3u);
}

TEST_F(PipelineTest, InputOnceAndDroppedWhenTheNewInstructionCarriesIt) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed({item("keep", "Summarize the text [B].", "The council met on Monday."),
                        item("empty", "Name a prime [C].", ""),
                        item("carried", "Categorize [B] Banana", "")});
  // An input the rewrite repeats: the generator's new instruction contains it.
  items[2].instruction = "Categorize [B]";
  items[2].input = "banana";
  PipelineOptions o;
  o.iterations = 1;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(result.items[0].input, "The council met on Monday.");
  EXPECT_EQ(result.items[1].input, "");
  EXPECT_EQ(result.items[1].output, "ANSWER(After that: Name a prime [D].)");
  // The generator saw "Categorize [B] banana" and wrote it into the new instruction.
  EXPECT_EQ(result.items[2].instruction, "First do a step, then Categorize [D] banana");
  EXPECT_EQ(result.items[2].input, "");
  for (const auto& r : backend.requests()) {
    const std::string& user = r.messages.back().content;
    size_t n = 0;
    for (size_t at = user.find("council met"); at != std::string::npos;
         at = user.find("council met", at + 1))
      ++n;
    if (user.find("Summarize the text") != std::string::npos) {
      EXPECT_EQ(n, 1u) << user;
    }
  }
}

TEST_F(PipelineTest, DirectResponseAnswersTheOriginals) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed({item("1", "Explain atoms [A]."), item("2", "Sort", "3 1 2")});
  PipelineOptions o;
  o.mode = Mode::direct;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(backend.requests().size(), 2u);
  for (const auto& r : backend.requests()) EXPECT_EQ(stage_of(r), "respond");
  EXPECT_EQ(result.items[0].instruction, "Explain atoms [A].");
  EXPECT_EQ(result.items[1].output, "ANSWER(Sort 3 1 2)");
  EXPECT_TRUE(result.items[1].options.empty());
}

TEST_F(PipelineTest, ExtractionSplitsAndKeepsASeparateInput) {
  World world;
  ScriptedBackend backend(std::ref(world));
  auto items = indexed(
      {item("f", "Which is prime? || (a) 21 (b) 23 [D]"), item("s", "Translate [D]", "bonjour")});
  PipelineOptions o;
  o.iterations = 1;
  o.extract_input = true;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(result.items[0].instruction, "Which is prime?");
  EXPECT_EQ(result.items[0].input, "(a) 21 (b) 23 [D]");
  // SIT_SPEC §8 item 5: the source's own input is not lost by extraction.
  EXPECT_EQ(result.items[1].input, "bonjour");
}

TEST_F(PipelineTest, MultiTurnKeepsLaterTurns) {
  data::Conversation conv;
  conv.messages = {{"system", "Be kind.", {}},
                   {"user", "Tell a joke [B].", {}},
                   {"assistant", "Why...", {}},
                   {"user", "Another one?", {}},
                   {"assistant", "Sure...", {}}};
  std::vector<SourceItem> items{to_source_item(conv, 0)};
  EXPECT_EQ(items[0].later_turns.size(), 2u);
  World world;
  ScriptedBackend backend(std::ref(world));
  PipelineOptions o;
  o.iterations = 1;
  const auto result = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  const auto record = std::get<data::Conversation>(training_record(result.items[0]));
  ASSERT_EQ(record.messages.size(), 5u);
  EXPECT_EQ(record.messages[0].content, "Be kind.");
  EXPECT_EQ(record.messages[1].content, "First do a step, then Tell a joke [D].");
  EXPECT_EQ(record.messages[2].content, "ANSWER(First do a step, then Tell a joke [D].)");
  EXPECT_EQ(record.messages[3].content, "Another one?");
  EXPECT_EQ(record.messages[4].content, "Sure...");
  // The response was asked with the system prompt.
  for (const auto& r : backend.requests())
    if (stage_of(r) == "respond") {
      EXPECT_EQ(r.messages.front().content, "Be kind.");
    }
}

std::vector<SourceItem> many_items(int n) {
  std::vector<SourceItem> items;
  const char* tags[] = {"[A]", "[B]", "[C]", "[D]", "[BB]", "[R]"};
  for (int i = 0; i < n; ++i)
    items.push_back(item(std::to_string(i), "Task " + std::to_string(i) + " " + tags[i % 6] + ".",
                         i % 3 ? "input " + std::to_string(i) : ""));
  return indexed(items);
}

TEST_F(PipelineTest, InterruptedRunResumesWithNothingLostOrRepeated) {
  const auto items = many_items(60);
  PipelineOptions o;
  o.iterations = 3;
  o.max_in_flight = 8;
  // A straight run. Its first reply waits a moment, so that the requests the pipeline keeps in
  // flight are seen queued however the threads are scheduled (a loaded machine could otherwise
  // answer each before the next is sent).
  World w1;
  std::atomic<bool> first_reply{true};
  ScriptedBackend straight_backend([&](const llm::Request& r) {
    if (first_reply.exchange(false)) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return w1(r);
  });
  const auto straight = run_pipeline(straight_backend, prompts_, items, dir_ / "straight.jsonl", o);
  const size_t straight_requests = straight_backend.requests().size();
  EXPECT_GT(straight_backend.max_outstanding(), 1u);

  // A run stopped after 40 replies, then resumed.
  World w2;
  std::atomic<int> replies{0};
  ScriptedBackend backend(std::ref(w2));
  PipelineOptions stopping = o;
  stopping.interrupted = [&] { return ++replies > 40; };
  const auto first = run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", stopping);
  int incomplete = 0;
  for (const auto& r : first.items) incomplete += !r.complete;
  EXPECT_GT(incomplete, 0);
  const size_t first_requests = backend.requests().size();
  ScriptedBackend backend2(std::ref(w2));
  const auto second = run_pipeline(backend2, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_GT(second.counts.resumed, 0);
  EXPECT_EQ(first_requests + backend2.requests().size(), straight_requests);
  ASSERT_EQ(second.items.size(), straight.items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_TRUE(second.items[i].complete);
    EXPECT_EQ(second.items[i].instruction, straight.items[i].instruction);
    EXPECT_EQ(second.items[i].input, straight.items[i].input);
    EXPECT_EQ(second.items[i].output, straight.items[i].output);
    EXPECT_EQ(second.items[i].options, straight.items[i].options);
  }
  std::set<std::string> ids;
  for (const auto& t : read_trace(dir_ / "trace.jsonl"))
    EXPECT_TRUE(ids.insert(t.at("id").get<std::string>()).second) << t.at("id");
  // A third run has nothing left to ask.
  ScriptedBackend backend3(std::ref(w2));
  run_pipeline(backend3, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(backend3.requests().size(), 0u);
  // Raising the iteration count continues the finished run.
  PipelineOptions more = o;
  more.iterations = 4;
  ScriptedBackend backend4(std::ref(w2));
  run_pipeline(backend4, prompts_, items, dir_ / "trace.jsonl", more);
  for (const auto& r : backend4.requests()) EXPECT_EQ(stage_of(r), "classify");
}

TEST_F(PipelineTest, ATraceFromOtherSettingsIsRefused) {
  World world;
  ScriptedBackend backend(std::ref(world));
  const auto items = many_items(3);
  PipelineOptions o;
  run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
  o.seed = 7;
  try {
    run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("other settings"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o, /*fresh=*/true));
}

TEST_F(PipelineTest, BackendErrorStopsAndARerunFinishes) {
  auto items = many_items(12);
  items[5].instruction = "Broken [E].";
  World world;
  ScriptedBackend backend(std::ref(world));
  PipelineOptions o;
  o.iterations = 2;
  o.max_in_flight = 2;
  try {
    run_pipeline(backend, prompts_, items, dir_ / "trace.jsonl", o);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item '5'"), std::string::npos) << e.what();
  }
  // Skip policy: the others finish, the broken one is counted and left out.
  o.stop_on_error = false;
  ScriptedBackend backend2(std::ref(world));
  const auto result = run_pipeline(backend2, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(result.counts.backend_errors, 1);
  for (size_t i = 0; i < items.size(); ++i) EXPECT_EQ(result.items[i].complete, i != 5) << i;
  // Fixed backend: the rerun completes it and asks nothing else.
  items[5].instruction = "Broken [D].";
  ScriptedBackend backend3(std::ref(world));
  // The instruction changed, but the item id is the same: only it is asked (1 classify + 1
  // respond).
  const auto fixed = run_pipeline(backend3, prompts_, items, dir_ / "trace.jsonl", o);
  EXPECT_EQ(backend3.requests().size(), 2u);
  EXPECT_TRUE(fixed.items[5].complete);
}

}  // namespace
}  // namespace seqit::seqinstruct
