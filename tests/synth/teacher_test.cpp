// The world's teacher (synth::Teacher): the three requests the Seq-Instruct pipeline sends with the
// default prompt set, built here by the pipeline's own prompt builders, answered as the world's
// EditPolicy, edits and reference responses say; errors for anything else; the corrupted steps.
#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "seqinstruct/parse.h"
#include "seqinstruct/prompts.h"
#include "synth/grade.h"
#include "synth/split.h"
#include "synth/teacher.h"

using namespace seqit;
using namespace seqit::synth;

namespace {

const seqinstruct::PromptSet& prompts() {
  static const seqinstruct::PromptSet set = seqinstruct::load_prompt_set("default");
  return set;
}

llm::Request chat(std::vector<llm::Message> messages, uint64_t seed) {
  llm::Request r;
  r.kind = llm::RequestKind::chat;
  r.messages = std::move(messages);
  r.params.seed = seed;
  return r;
}

std::string full_prompt(const Item& item) {
  return seqinstruct::join_prompt(item.instruction, item.input);
}

}  // namespace

TEST(SynthTeacher, SplitsTheJoinedPromptBack) {
  // Facts hold their own full stop; a numbered instruction holds several.
  Chain chain{{{TaskId::kLookup, 0}, {TaskId::kToVellan, 1}}, Connective::kNumbered};
  const std::string instruction = render_instruction(chain);
  const std::string input = "cat: red, dog: blue. dog?";
  auto split = split_world_prompt(instruction + " " + input);
  ASSERT_TRUE(split);
  EXPECT_EQ(split->chain, chain);
  EXPECT_EQ(split->instruction, instruction);
  EXPECT_EQ(split->input, input);
  for (const Item& item : make_train_chain_items(5, 2000)) {
    auto s = split_world_prompt(full_prompt(item));
    ASSERT_TRUE(s) << full_prompt(item);
    ASSERT_EQ(s->chain, item.chain);
    ASSERT_EQ(s->input, item.input);
  }
  EXPECT_FALSE(split_world_prompt("Sort the words."));      // no input
  EXPECT_FALSE(split_world_prompt("Sort the words. 3 4"));  // sort does not take numbers
  EXPECT_FALSE(split_world_prompt("What is the capital of France? Paris."));
}

TEST(SynthTeacher, ClassifyChoosesWithThePolicyFromTheRequestSeed) {
  Teacher teacher;
  std::map<char, int> seen;
  uint64_t seed = 1000;
  for (const Item& item : make_it_items(3, 400)) {
    ++seed;
    auto messages = seqinstruct::classify_messages(prompts(), full_prompt(item), seed * 7);
    auto result = teacher.answer(chat(messages, seed));
    ASSERT_TRUE(result.ok()) << result.error().describe();
    auto parsed = seqinstruct::parse_option(result.value().text());
    ASSERT_TRUE(parsed.ok()) << result.value().text();
    ASSERT_EQ(parsed.how, "answer line");
    Rng rng(seed);
    const Edit want =
        choose_edit(item.chain, *classify_text(item.input), EditPolicy::first_pass(), rng);
    ASSERT_EQ(seqinstruct::option_letter(*parsed.value), edit_letter(want)) << item.instruction;
    ++seen[edit_letter(want)];
  }
  // Every option occurs (A only for compound tasks, about 1.4% of single tasks).
  for (char c : {'A', 'B', 'C', 'D'}) EXPECT_GT(seen[c], 0) << c;

  // A chain of two steps is on a later pass: the later-pass policy (mostly D).
  int keep = 0, n = 0;
  for (const Item& item : make_train_chain_items(4, 600)) {
    if (item.chain.steps.size() != 2) continue;
    ++n;
    auto messages = seqinstruct::classify_messages(prompts(), full_prompt(item), 1);
    auto result = teacher.answer(chat(messages, 5000 + static_cast<uint64_t>(n)));
    ASSERT_TRUE(result.ok());
    Rng rng(5000 + static_cast<uint64_t>(n));
    const Edit want =
        choose_edit(item.chain, *classify_text(item.input), EditPolicy::later_pass(), rng);
    ASSERT_EQ(*seqinstruct::parse_option(result.value().text()).value,
              static_cast<seqinstruct::Option>(edit_letter(want)));
    keep += want == Edit::kKeep;
  }
  EXPECT_GT(keep, n / 2);
}

TEST(SynthTeacher, GenerateAppliesTheEditAndKeepsTheInputOut) {
  Teacher teacher;
  const std::pair<seqinstruct::Option, Edit> edits[] = {{seqinstruct::Option::A, Edit::kDecompose},
                                                        {seqinstruct::Option::B, Edit::kPrefix},
                                                        {seqinstruct::Option::C, Edit::kSuffix}};
  std::map<char, int> done;
  uint64_t seed = 77;
  for (const Item& item : make_it_items(8, 3000)) {
    const Kind kind = *classify_text(item.input);
    for (const auto& [option, edit] : edits) {
      if (!edit_applies(item.chain, kind, edit, EditPolicy::first_pass())) continue;
      ++seed;
      auto messages = seqinstruct::generate_messages(prompts(), option, full_prompt(item), 9);
      auto result = teacher.answer(chat(messages, seed));
      ASSERT_TRUE(result.ok()) << result.error().describe();
      auto parsed = seqinstruct::parse_new_instruction(result.value().text());
      ASSERT_TRUE(parsed.ok()) << result.value().text();
      Rng rng(seed);
      const Chain want = apply_edit(item.chain, kind, edit, rng);
      ASSERT_EQ(*parsed.value, render_instruction(want));
      // The pipeline keeps the input only when the new instruction does not seem to hold it.
      ASSERT_FALSE(seqinstruct::input_in_instruction(*parsed.value, item.input))
          << *parsed.value << " | " << item.input;
      ++done[edit_letter(edit)];
    }
  }
  EXPECT_GT(done['A'], 100);
  EXPECT_GT(done['B'], 1000);
  EXPECT_GT(done['C'], 1000);
}

TEST(SynthTeacher, GenerateAcceptsTheChainsOfALaterPass) {
  Teacher teacher;
  int checked = 0;
  for (const Item& item : make_train_chain_items(6, 1500)) {
    const Kind kind = *classify_text(item.input);
    if (!edit_applies(item.chain, kind, Edit::kSuffix, EditPolicy::first_pass())) continue;
    auto messages =
        seqinstruct::generate_messages(prompts(), seqinstruct::Option::C, full_prompt(item), 2);
    auto result = teacher.answer(chat(messages, 31));
    ASSERT_TRUE(result.ok()) << result.error().describe();
    auto chain =
        parse_instruction(*seqinstruct::parse_new_instruction(result.value().text()).value);
    ASSERT_TRUE(chain);
    ASSERT_EQ(chain->steps.size(), item.chain.steps.size() + 1);
    ASSERT_FALSE(seqinstruct::input_in_instruction(render_instruction(*chain), item.input))
        << render_instruction(*chain) << " | " << item.input;
    ++checked;
  }
  EXPECT_GT(checked, 300);
}

TEST(SynthTeacher, RespondGivesTheReferenceResponse) {
  Teacher teacher;
  for (const Item& item : make_train_chain_items(9, 500)) {
    auto result = teacher.answer(chat(seqinstruct::respond_messages("", full_prompt(item)), 3));
    ASSERT_TRUE(result.ok()) << result.error().describe();
    ASSERT_EQ(result.value().text(), item.response);
  }
}

TEST(SynthTeacher, RequestsOutsideTheWorldAreInvalid) {
  Teacher teacher;
  auto is_invalid = [&](const llm::Request& r) {
    auto result = teacher.answer(r);
    return !result.ok() && result.error().kind == llm::ErrorKind::invalid_request;
  };
  EXPECT_TRUE(is_invalid(chat({{"user", "What is the capital of France?"}}, 1)));
  // The message quotes at most 160 bytes of a long request.
  auto long_request = teacher.answer(chat({{"user", std::string(5000, 'x')}}, 1));
  ASSERT_FALSE(long_request.ok());
  EXPECT_LT(long_request.error().message.size(), 300u);
  EXPECT_TRUE(is_invalid(chat({{"system", "Sort the words. red cat dog"}}, 1)));  // no user turn
  const Item item = make_it_items(1, 1).front();
  llm::Request completion = chat({{"user", full_prompt(item)}}, 1);
  completion.kind = llm::RequestKind::completion;
  EXPECT_TRUE(is_invalid(completion));
  llm::Request two = chat({{"user", full_prompt(item)}}, 1);
  two.params.n = 2;
  EXPECT_TRUE(is_invalid(two));
  // A classify or generate request about an instruction of another world.
  EXPECT_TRUE(is_invalid(chat(
      seqinstruct::classify_messages(prompts(), "Give three tips for sleeping better.", 1), 1)));
  EXPECT_TRUE(is_invalid(chat(
      seqinstruct::generate_messages(prompts(), seqinstruct::Option::B, "Explain atoms.", 1), 1)));
  // Decompose asked of an atomic task: the edit does not apply.
  Chain atomic{{{TaskId::kSort, 0}}, Connective::kFirstThen};
  const std::string prompt = render_instruction(atomic) + " red cat dog";
  auto error = teacher.answer(
      chat(seqinstruct::generate_messages(prompts(), seqinstruct::Option::A, prompt, 1), 1));
  ASSERT_FALSE(error.ok());
  EXPECT_EQ(error.error().kind, llm::ErrorKind::invalid_request);
  EXPECT_NE(error.error().message.find("does not apply"), std::string::npos)
      << error.error().message;
}

TEST(SynthTeacher, SubmitAnswersInOrderFromAWorkerThread) {
  Teacher teacher;
  const auto items = make_it_items(2, 50);
  std::mutex mutex;
  std::vector<std::string> replies;
  std::vector<std::thread::id> threads;
  std::promise<void> all;
  for (const Item& item : items) {
    teacher.submit(chat(seqinstruct::respond_messages("", full_prompt(item)), 1),
                   [&](llm::Result<llm::Response> r) {
                     std::lock_guard lock(mutex);
                     replies.push_back(r.value().text());
                     threads.push_back(std::this_thread::get_id());
                     if (replies.size() == items.size()) all.set_value();
                   });
  }
  all.get_future().wait();
  for (size_t i = 0; i < items.size(); ++i) {
    EXPECT_EQ(replies[i], items[i].response);
    EXPECT_NE(threads[i], std::this_thread::get_id());
  }
}

TEST(SynthTeacher, SameRequestSameReplyAndSeedsVaryTheEdit) {
  Teacher teacher;
  const Item item = make_it_items(12, 1).front();
  auto messages =
      seqinstruct::generate_messages(prompts(), seqinstruct::Option::C, full_prompt(item), 4);
  std::set<std::string> different;
  for (uint64_t seed = 0; seed < 40; ++seed) {
    const std::string a = teacher.answer(chat(messages, seed)).value().text();
    EXPECT_EQ(a, teacher.answer(chat(messages, seed)).value().text());
    different.insert(a);
  }
  EXPECT_GT(different.size(), 3u);
}

TEST(SynthTeacher, CorruptedStepsAreWrongButShapedAndTheAnswerStays) {
  Rng rng(21);
  int corrupted = 0;
  for (const Item& item : make_train_chain_items(13, 1500)) {
    Rng zero(1);
    ASSERT_EQ(corrupt_steps(item.chain, item.input, 0, zero), item.response);
    const std::string response = corrupt_steps(item.chain, item.input, 1, rng);
    const Grade g = grade_response(item, response);
    ASSERT_TRUE(g.following) << response;
    ASSERT_TRUE(g.final_correct) << response;
    for (size_t i = 0; i + 1 < g.steps.size(); ++i) {
      ASSERT_TRUE(g.steps[i].shaped) << response;
      ASSERT_FALSE(g.steps[i].correct) << response;
      ++corrupted;
    }
  }
  EXPECT_GT(corrupted, 1000);

  // Through the backend: a rate of one half corrupts about half of the intermediate steps.
  TeacherOptions options;
  options.corrupt = 0.5;
  Teacher teacher(options);
  int steps = 0, wrong = 0;
  uint64_t seed = 0;
  for (const Item& item : make_train_chain_items(14, 1500)) {
    auto r = teacher.answer(chat(seqinstruct::respond_messages("", full_prompt(item)), ++seed));
    const Grade g = grade_response(item, r.value().text());
    ASSERT_TRUE(g.final_correct);
    for (size_t i = 0; i + 1 < g.steps.size(); ++i, ++steps) wrong += !g.steps[i].correct;
  }
  EXPECT_NEAR(static_cast<double>(wrong) / steps, 0.5, 0.05) << wrong << "/" << steps;
}
