// The tasks' prompts, answer extraction and aggregation on hand-checked cases: small data folders
// written by the test (so every gold answer is known) and the real shared data where the exact
// prompt text matters.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/report.h"
#include "eval/tasks.h"
#include "scripted_backend.h"
#include "testing.h"
#include "util/error.h"

namespace seqit::testing {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;

llm::Response reply(std::string text) {
  return ScriptedBackend::reply(std::move(text));
}

llm::Response logprobs(std::vector<double> lp) {
  llm::Response r;
  r.logprobs = std::move(lp);
  return r;
}

// A data folder with a two-problem GSM8K (gold 1,000 and 18) and a one-problem train split.
void write_gsm8k(const fs::path& root) {
  fs::create_directories(root / "gsm8k");
  spit(root / "gsm8k" / "train.jsonl",
       json({{"question", "Tom has 3 apples and buys 2. How many?"},
             {"answer", "He has 3 + 2 = <<3+2=5>>5 apples.\nSo 5.\n#### 5"}})
               .dump() +
           "\n");
  spit(root / "gsm8k" / "test.jsonl",
       json({{"question", "A shop earns $600 and $400. Total?"},
             {"answer", "600 + 400 = <<600+400=1000>>1000\n#### 1,000"}})
               .dump() +
           "\n" +
           json({{"question", "Eggs?"}, {"answer", "16 - 3 - 4 = 9; 9 * 2 = 18\n#### 18"}}).dump() +
           "\n");
}

eval::TaskOptions options_for(const fs::path& root) {
  eval::TaskOptions o;
  o.data_dir = root.string();
  return o;
}

TEST(Gsm8kTask, CompletionPromptHasTheExemplarWithoutAnnotationsAndEndsWithTheCue) {
  TempDir tmp;
  write_gsm8k(tmp.path());
  auto o = options_for(tmp.path());
  o.chat = false;
  o.shots = 1;
  const auto task = eval::make_task("gsm8k", o);
  ASSERT_EQ(task->size(), 2u);
  const auto requests = task->requests(0);
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].kind, llm::RequestKind::completion);
  EXPECT_EQ(requests[0].prompt,
            "Answer the following questions.\n\n"
            "Question: Tom has 3 apples and buys 2. How many?\n"
            "Answer: He has 3 + 2 = 5 apples. So 5. The answer is 5.\n\n"
            "Question: A shop earns $600 and $400. Total?\nAnswer:");
  EXPECT_EQ(requests[0].params.temperature, 0);
  EXPECT_EQ(requests[0].params.max_tokens, 512);
  EXPECT_EQ(requests[0].params.stop, (std::vector<std::string>{"\n\n", "Question:"}));
}

TEST(Gsm8kTask, ChatPromptsInOneTurnOrOneTurnPairPerExemplar) {
  TempDir tmp;
  write_gsm8k(tmp.path());
  auto o = options_for(tmp.path());
  o.shots = 1;
  o.max_tokens = 64;
  auto request = eval::make_task("gsm8k", o)->requests(1).at(0);
  EXPECT_EQ(request.kind, llm::RequestKind::chat);
  ASSERT_EQ(request.messages.size(), 1u);
  EXPECT_EQ(request.messages[0].content,
            "Answer the following questions.\n\n"
            "Question: Tom has 3 apples and buys 2. How many?\n"
            "Answer: He has 3 + 2 = 5 apples. So 5. The answer is 5.\n\nQuestion: Eggs?");
  EXPECT_TRUE(request.params.stop.empty());
  EXPECT_EQ(request.params.max_tokens, 64);
  o.shots_as_turns = true;
  request = eval::make_task("gsm8k", o)->requests(1).at(0);
  ASSERT_EQ(request.messages.size(), 3u);
  EXPECT_EQ(request.messages[0].content,
            "Answer the following questions.\n\nQuestion: Tom has 3 apples and buys 2. How many?");
  EXPECT_EQ(request.messages[1].role, "assistant");
  EXPECT_EQ(request.messages[1].content, "He has 3 + 2 = 5 apples. So 5. The answer is 5.");
  EXPECT_EQ(request.messages[2].content, "Question: Eggs?");
}

TEST(Gsm8kTask, StrictAndFlexibleExtractionSideBySide) {
  TempDir tmp;
  write_gsm8k(tmp.path());
  auto o = options_for(tmp.path());
  o.shots = 1;
  const auto task = eval::make_task("gsm8k", o);
  auto scores = [&](const std::string& text) {
    return task->score(0, {reply(text)});  // gold 1,000
  };
  auto both = scores("600 + 400 = 1000. The answer is $1,000.");
  EXPECT_EQ(both.scores.at("strict_em"), 1);
  EXPECT_EQ(both.scores.at("flexible_em"), 1);
  EXPECT_TRUE(both.answer_found);
  EXPECT_EQ(both.fields.at("gold"), "1000");
  // The right number, but not after a cue: flexible only.
  auto flexible = scores("Adding 600 and 400 gives 1000 dollars in all.");
  EXPECT_EQ(flexible.scores.at("strict_em"), 0);
  EXPECT_EQ(flexible.scores.at("flexible_em"), 1);
  // Right after the cue, then another number: strict only.
  auto strict = scores("The answer is 1000. Next year it earns 1200.");
  EXPECT_EQ(strict.scores.at("strict_em"), 1);
  EXPECT_EQ(strict.scores.at("flexible_em"), 0);
  // The right number only in the middle: neither.
  auto neither = scores("It earns 1000 now and 5 more later.");
  EXPECT_EQ(neither.scores.at("strict_em"), 0);
  EXPECT_EQ(neither.scores.at("flexible_em"), 0);
  auto none = scores("I do not know.");
  EXPECT_FALSE(none.answer_found);
  EXPECT_EQ(none.scores.at("flexible_em"), 0);
}

TEST(PromptBudget, ExemplarsAreDroppedUntilThePromptFitsAndTheReportSaysHowMany) {
  TempDir tmp;
  write_gsm8k(tmp.path());
  auto o = options_for(tmp.path());
  o.shots = 1;
  o.chat = false;
  o.max_prompt_chars = 100;  // the exemplar does not fit; the question alone does
  auto task = eval::make_task("gsm8k", o);
  auto r = task->requests(0).at(0);
  EXPECT_EQ(r.prompt,
            "Answer the following questions.\n\nQuestion: A shop earns $600 and $400. "
            "Total?\nAnswer:");
  EXPECT_EQ(task->score(0, {reply("1000")}).scores.at("shots_used"), 0);
  o.max_prompt_chars = 1000;
  task = eval::make_task("gsm8k", o);
  EXPECT_NE(task->requests(0).at(0).prompt.find("Tom has 3 apples"), std::string::npos);
  EXPECT_EQ(task->score(0, {reply("1000")}).scores.at("shots_used"), 1);
  o.max_prompt_chars = 0;
  EXPECT_EQ(eval::make_task("gsm8k", o)->score(0, {reply("1")}).scores.count("shots_used"), 0u);

  auto m = options_for(shared_data("eval"));
  m.limit = 1;
  m.groups = {"anatomy"};
  m.max_prompt_chars = 700;
  const auto mmlu = eval::make_task("mmlu", m);
  const std::string prompt = mmlu->requests(0).at(0).prompt;
  EXPECT_LE(prompt.size() + 2, 700u);
  size_t shots = 0;
  for (size_t p = prompt.find("\nAnswer: "); p != std::string::npos;
       p = prompt.find("\nAnswer: ", p + 1))
    ++shots;
  EXPECT_LT(shots, 5u);
  EXPECT_EQ(mmlu->score(0, {logprobs({-1, -2, -3, -4})}).scores.at("shots_used"),
            static_cast<double>(shots));
}

TEST(Gsm8kTask, RealDataLoadsWithEightShots) {
  auto o = options_for(shared_data("eval"));
  o.limit = 3;
  const auto task = eval::make_task("gsm8k", o);
  ASSERT_EQ(task->size(), 3u);
  const auto content = task->requests(0).at(0).messages.at(0).content;
  size_t shots = 0;
  for (size_t p = content.find("The answer is"); p != std::string::npos;
       p = content.find("The answer is", p + 1))
    ++shots;
  EXPECT_EQ(shots, 8u);
  EXPECT_EQ(content.find("<<"), std::string::npos);
  EXPECT_EQ(task->score(0, {reply("The answer is 18.")}).scores.at("strict_em"), 1);
}

TEST(Gsm8kTask, MalformedDataNamesFileLineAndField) {
  TempDir tmp;
  write_gsm8k(tmp.path());
  spit(tmp / "gsm8k" / "test.jsonl", "{\"question\": \"q\", \"answer\": \"no hashes\"}\n");
  auto o = options_for(tmp.path());
  o.shots = 1;
  try {
    eval::make_task("gsm8k", o);
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("test.jsonl:1"), std::string::npos) << what;
    EXPECT_NE(what.find("answer"), std::string::npos) << what;
  }
  EXPECT_THROW(eval::make_task("nope", o), Error);
  EXPECT_THROW(eval::make_task("mmlu", o), Error);  // no mmlu folder
  o.shots = 2;                                      // the train split holds one problem
  spit(tmp / "gsm8k" / "test.jsonl", "");
  EXPECT_THROW(eval::make_task("gsm8k", o), Error);
}

TEST(MgsmTask, BothModesPerLanguage) {
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.shots = 1;
  o.groups = {"de", "en"};
  o.mgsm_exemplars = "english";
  const auto cot = eval::make_task("mgsm_cot_en", o);
  const auto trans = eval::make_task("mgsm_trans_cot", o);
  ASSERT_EQ(cot->size(), 2u);
  EXPECT_EQ(cot->item_id(0), "de/0");
  EXPECT_EQ(cot->item_id(1), "en/0");
  EXPECT_EQ(cot->group_label(), "language");
  const std::string a = cot->requests(0).at(0).messages.at(0).content;
  const std::string b = trans->requests(0).at(0).messages.at(0).content;
  EXPECT_NE(a.find("\nThe Answer is: 72\n\nQuestion: Janets Enten legen 16 Eier"),
            std::string::npos)
      << a;
  EXPECT_EQ(a.find("Translation of the question"), std::string::npos);
  EXPECT_NE(b.find("Answer: Translation of the question into English:\nNatalia sold clips"),
            std::string::npos)
      << b;
  auto s =
      trans->score(0, {reply("Janet has 16 - 3 - 4 = 9 eggs, 9 * 2 = 18.\nThe Answer is: 18")});
  EXPECT_EQ(s.group, "de");
  EXPECT_EQ(s.scores.at("strict_em"), 1);
  EXPECT_EQ(s.scores.at("flexible_em"), 1);
  o.groups = {"xx"};
  EXPECT_THROW(eval::make_task("mgsm_cot_en", o), Error);
}

TEST(MgsmTask, TranslatedExemplarsAreHeldOutProblemsInTheItemsLanguage) {
  auto o = options_for(shared_data("eval"));
  o.shots = 2;
  o.groups = {"de", "ja"};
  ASSERT_EQ(o.mgsm_exemplars, "translated");  // the default
  const auto cot = eval::make_task("mgsm_cot_en", o);
  const auto trans = eval::make_task("mgsm_trans_cot", o);
  // The last two problems of each language are the exemplars, the other 248 are scored.
  ASSERT_EQ(cot->size(), 2u * 248u);
  EXPECT_EQ(cot->item_id(247), "de/247");
  EXPECT_EQ(cot->item_id(248), "ja/0");
  const std::string de = cot->requests(0).at(0).messages.at(0).content;
  const std::string ja = cot->requests(248).at(0).messages.at(0).content;
  const std::string de_trans = trans->requests(0).at(0).messages.at(0).content;
  // Problem 250 (Sue's cookies): German question, English worked answer of GSM8K test line 250
  // (calculator annotations removed), then the answer; it comes after problem 249.
  const std::string sue_de = "Question: Am Montag aß Sue 4 Mal so viele Kekse wie ihre Schwester.";
  const std::string sue_en = "Sue’s Monday cookie intake is 4*5 = 20. Sue’s Tuesday cookie";
  const size_t q = de.find(sue_de);
  ASSERT_NE(q, std::string::npos) << de;
  EXPECT_NE(de.find(sue_en, q), std::string::npos) << de;
  EXPECT_NE(de.find("Sue consumed 28*200=5,600 more calories.\nThe Answer is: 5600\n", q),
            std::string::npos)
      << de;
  EXPECT_NE(de.find("Question: Ein Koch kaufte 4 Säcke Zwiebeln."), std::string::npos);
  EXPECT_LT(de.find("Question: Ein Koch kaufte 4 Säcke Zwiebeln."), q);
  EXPECT_EQ(de.find("On Monday, Sue ate"), std::string::npos);  // no English question in cot-en
  EXPECT_EQ(ja.find(sue_de), std::string::npos);
  EXPECT_NE(ja.find(sue_en), std::string::npos);  // the same English answer, Japanese question
  // trans-cot: the exemplar's answer starts with the English question.
  EXPECT_NE(de_trans.find("Answer: Translation of the question into English:\nOn Monday, Sue ate "
                          "4 times as many cookies as her sister."),
            std::string::npos)
      << de_trans;
  // The scored item is the first German problem and the exemplar is never scored.
  EXPECT_NE(de.rfind("Question: Janets Enten legen 16 Eier"), std::string::npos);
  o.limit = 300;  // the limit cannot reach the held-out problems
  EXPECT_EQ(eval::make_task("mgsm_cot_en", o)->size(), 2u * 248u);
  o.mgsm_exemplars = "native";
  EXPECT_THROW(eval::make_task("mgsm_cot_en", o), Error);
}

TEST(MmluTask, PromptScoresTheFourLettersAndPicksTheMostLikely) {
  auto o = options_for(shared_data("eval"));
  o.limit = 2;
  o.shots = 1;
  o.groups = {"abstract_algebra", "anatomy"};
  const auto task = eval::make_task("mmlu", o);
  ASSERT_EQ(task->size(), 4u);
  EXPECT_EQ(task->item_id(0), "abstract_algebra/0");
  EXPECT_EQ(task->item_id(2), "anatomy/0");
  const auto r = task->requests(0).at(0);
  EXPECT_EQ(r.kind, llm::RequestKind::score);
  EXPECT_EQ(r.continuations, (std::vector<std::string>{" A", " B", " C", " D"}));
  EXPECT_EQ(r.prompt.rfind("The following are multiple choice questions (with answers) about "
                           "abstract algebra.\n\nFind all c in Z_3 such that Z_3[x]/(x^2 + c) is "
                           "a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n",
                           0),
            0u)
      << r.prompt;
  EXPECT_TRUE(r.prompt.ends_with("over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:")) << r.prompt;
  // The gold of abstract_algebra test 0 is B.
  auto right = task->score(0, {logprobs({-3, -0.5, -2, -4})});
  EXPECT_EQ(right.scores.at("acc"), 1);
  EXPECT_EQ(right.group, "abstract_algebra");
  EXPECT_EQ(right.fields.at("chosen"), "B");
  EXPECT_EQ(task->score(0, {logprobs({-0.1, -0.5, -2, -4})}).scores.at("acc"), 0);
  EXPECT_THROW(task->score(0, {logprobs({-1, -2})}), Error);
  o.groups = {"astrology"};
  EXPECT_THROW(eval::make_task("mmlu", o), Error);
}

TEST(Report, MicroAndMacroOverGroupsWithBootstrapIntervals) {
  auto o = options_for(shared_data("eval"));
  o.limit = 3;
  o.shots = 0;
  o.groups = {"abstract_algebra", "anatomy"};
  const auto task = eval::make_task("mmlu", o);
  // abstract_algebra: 1 of 1 right; anatomy: 1 of 3 right. Micro 2/4, macro (1 + 1/3) / 2.
  std::vector<eval::ItemResult> items;
  auto item = [](std::string group, double acc) {
    eval::ItemResult r;
    r.group = std::move(group);
    r.scores["acc"] = acc;
    return r;
  };
  items = {item("abstract_algebra", 1), item("anatomy", 1), item("anatomy", 0), item("anatomy", 0)};
  items[3].answer_found = false;
  const auto report = eval::build_report(*task, items, 6, {{"k", "v"}});
  EXPECT_DOUBLE_EQ(report.metrics.at("acc").mean, 0.5);
  EXPECT_LE(report.metrics.at("acc").lower, 0.5);
  EXPECT_GE(report.metrics.at("acc").upper, 0.5);
  EXPECT_DOUBLE_EQ(report.macro.at("acc"), (1 + 1.0 / 3) / 2);
  EXPECT_DOUBLE_EQ(report.group_means.at("anatomy").at("acc"), 1.0 / 3);
  EXPECT_EQ(report.group_items.at("anatomy"), 3);
  EXPECT_DOUBLE_EQ(report.no_answer_rate, 0.25);
  TempDir tmp;
  eval::write_report(tmp.path(), report);
  const json j = json::parse(slurp(tmp / "report.json"));
  EXPECT_EQ(j.at("items"), 4);
  EXPECT_EQ(j.at("items_total"), 6);
  EXPECT_EQ(j.at("settings").at("k"), "v");
  const std::string md = slurp(tmp / "report.md");
  EXPECT_NE(md.find("| accuracy | 50.0 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| anatomy | 3 | 33.3 |"), std::string::npos) << md;
  EXPECT_NE(md.find("No extractable answer: 25.0%"), std::string::npos) << md;
  EXPECT_NE(md.find("| **macro average (over 2 subject groups)** | 4 | 66.7 |"), std::string::npos)
      << md;
}

TEST(ArcTask, ChoicesByLikelihoodAndPerByte) {
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.shots = 1;
  const auto task = eval::make_task("arc_challenge", o);
  ASSERT_EQ(task->size(), 1u);
  EXPECT_EQ(task->item_id(0), "Mercury_7175875");
  const auto r = task->requests(0).at(0);
  EXPECT_EQ(r.kind, llm::RequestKind::score);
  EXPECT_TRUE(
      r.prompt.starts_with("Question: George wants to warm his hands quickly by rubbing "
                           "them. Which skin surface will produce the most heat?\nAnswer: "
                           "dry palms\n\nQuestion: An astronomer"))
      << r.prompt;
  ASSERT_EQ(r.continuations.size(), 4u);
  EXPECT_EQ(r.continuations[2], " Planetary days will become shorter.");
  // Gold C (36 bytes with its space; A has 33). Raw: A most likely; per byte: C.
  auto s = task->score(0, {logprobs({-9.0, -40, -9.5, -50})});
  EXPECT_EQ(s.scores.at("acc"), 0);
  EXPECT_EQ(s.scores.at("acc_norm"), 1);
  EXPECT_EQ(s.fields.at("chosen"), "A");
}

TEST(SifoParsing, AnswersRunToTheNextMarker) {
  const auto a = eval::parse_sifo_answers(
      "Sure.\nAnswer 1: 16\n**Answer 2:** 13 eggs\n- answer 3 : the new\ncontext here\nAnswer 1: "
      "99");
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a.at(1), "16");
  EXPECT_EQ(a.at(2), "13 eggs");
  EXPECT_EQ(a.at(3), "the new\ncontext here");
  EXPECT_TRUE(eval::parse_sifo_answers("The answers are 16 and 13.").empty());
  EXPECT_TRUE(eval::sifo_answer_matches("math", "$1,000", "1000"));
  EXPECT_TRUE(eval::sifo_answer_matches("math", "13 eggs", "13"));
  EXPECT_FALSE(eval::sifo_answer_matches("math", "12", "13"));
  EXPECT_TRUE(eval::sifo_answer_matches("security", "Himalayas, Alps.", "Himalayas, Alps"));
  EXPECT_FALSE(eval::sifo_answer_matches("security", "Himalayas", "Himalayas, Alps"));
  EXPECT_TRUE(eval::sifo_answer_matches("qa", "The nine months", "nine months"));
}

TEST(SifoTask, PromptAndStepMetrics) {
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.groups = {"math", "security"};
  const auto task = eval::make_task("sifo", o);
  ASSERT_EQ(task->size(), 2u);
  EXPECT_EQ(task->item_id(0), "math/30001");
  EXPECT_EQ(task->item_id(1), "security/40000");
  const auto r = task->requests(0).at(0);
  ASSERT_EQ(r.messages.size(), 1u);
  const std::string& text = r.messages[0].content;
  EXPECT_NE(text.find("1. Janet's ducks lay 16 eggs every day."), std::string::npos) << text;
  EXPECT_NE(text.find("\n4. Janet sells the remaining eggs"), std::string::npos) << text;
  EXPECT_EQ(text.find("Context:"), std::string::npos);  // math has no context
  EXPECT_NE(task->requests(1).at(0).messages[0].content.find("Context:\nYou are the principal"),
            std::string::npos);
  // Gold 16, 13, 9, 18: steps 1, 2 and 4 right, 3 wrong.
  auto s = task->score(0, {reply("Answer 1: 16\nAnswer 2: 13\nAnswer 3: 10\nAnswer 4: $18")});
  EXPECT_EQ(s.group, "math");
  EXPECT_EQ(s.scores.at("sample_acc"), 0);
  EXPECT_DOUBLE_EQ(s.scores.at("instruction_acc"), 0.75);
  EXPECT_EQ(s.scores.at("following_depth"), 2);
  EXPECT_EQ(s.fields.at("steps_right"), "1101");
  auto all = task->score(0, {reply("Answer 1: 16\nAnswer 2: 13\nAnswer 3: 9\nAnswer 4: 18")});
  EXPECT_EQ(all.scores.at("sample_acc"), 1);
  EXPECT_EQ(all.scores.at("following_depth"), 4);
  auto none = task->score(0, {reply("no idea")});
  EXPECT_FALSE(none.answer_found);
  EXPECT_EQ(none.scores.at("following_depth"), 0);
  // Without chat the prompt ends with the cue "Answer 1:", which the reply continues.
  o.chat = false;
  const auto plain = eval::make_task("sifo", o);
  EXPECT_TRUE(plain->requests(0).at(0).prompt.ends_with("\nAnswer 1:"));
  EXPECT_EQ(plain->score(0, {reply(" 16\nAnswer 2: 13")}).scores.at("following_depth"), 2);
}

TEST(BbhTask, ThreeWorkedExemplarsAndTheAnswerCue) {
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.groups = {"boolean_expressions", "date_understanding"};
  const auto task = eval::make_task("bbh", o);
  ASSERT_EQ(task->size(), 2u);
  EXPECT_EQ(task->item_id(0), "boolean_expressions/0");
  const std::string text = task->requests(0).at(0).messages.at(0).content;
  EXPECT_TRUE(
      text.starts_with("Evaluate the result of a random Boolean expression.\n\nQ: not ( "
                       "( not not True ) ) is\nA: Let's think step by step.\n"))
      << text;
  EXPECT_TRUE(text.ends_with("So the answer is True.\n\nQ: not ( True ) and ( True ) is")) << text;
  size_t shots = 0;
  for (size_t p = text.find("\nA: "); p != std::string::npos; p = text.find("\nA: ", p + 1))
    ++shots;
  EXPECT_EQ(shots, 3u);
  auto s = task->score(0, {reply("not True is False, and so on. So the answer is False.")});
  EXPECT_EQ(s.scores.at("em"), 1);
  EXPECT_EQ(s.group, "boolean_expressions");
  EXPECT_EQ(task->score(0, {reply("So the answer is True.")}).scores.at("em"), 0);
  EXPECT_FALSE(task->score(0, {reply("False")}).answer_found);
  EXPECT_TRUE(eval::bbh_answer_matches("B", "(B)"));
  EXPECT_TRUE(eval::bbh_answer_matches("(B) 12/14/2026", "(B)"));
  EXPECT_FALSE(eval::bbh_answer_matches("(C)", "(B)"));
  EXPECT_FALSE(eval::bbh_answer_matches("valid", "invalid"));
}

TEST(ChainOfInstructionsTask, StepsAndRougeL) {
  const auto steps = eval::split_coi_steps(
      "Task 1 output and task 2 input: They prepared.  Task 2 output: The input is not ironic");
  ASSERT_EQ(steps.size(), 2u);
  EXPECT_EQ(steps.at(1), "They prepared.");
  EXPECT_EQ(steps.at(2), "The input is not ironic");
  EXPECT_TRUE(eval::split_coi_steps("no markers here").empty());
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  const auto task = eval::make_task("chain_of_instructions", o);
  ASSERT_EQ(task->size(), 2u);
  EXPECT_EQ(task->item_id(1), "coi3/0");
  const std::string text = task->requests(0).at(0).messages.at(0).content;
  EXPECT_NE(text.find("\n\nInput: Sentence1: Danny bought a boat."), std::string::npos) << text;
  EXPECT_TRUE(text.ends_with("Task 1 output and task 2 input: <result>\nTask 2 output: <result>"))
      << text;
  auto perfect =
      task->score(0, {reply("Task 1 output and task 2 input: They prepared for the "
                            "start of the race.\nTask 2 output: The input is not ironic")});
  EXPECT_DOUBLE_EQ(perfect.scores.at("rouge_l_final"), 1.0);
  EXPECT_DOUBLE_EQ(perfect.scores.at("rouge_l_step1"), 1.0);
  EXPECT_EQ(perfect.group, "coi2");
  // Unmarked: the whole reply is the final output; the steps score 0.
  auto unmarked = task->score(0, {reply("The input is ironic")});
  EXPECT_FALSE(unmarked.answer_found);
  EXPECT_NEAR(unmarked.scores.at("rouge_l_final"),
              eval::rouge_l("The input is ironic", "The input is not ironic").f1, 1e-12);
  EXPECT_EQ(unmarked.scores.at("rouge_l_step1"), 0);
  EXPECT_EQ(unmarked.scores.count("rouge_l_step3"), 0u);
}

TEST(XquadTask, TranslateThenAnswerAgainstTheEnglishGold) {
  const std::vector<std::string> gold = {"Denver Broncos"};
  auto r = eval::read_xquad_reply("Translation: Who won?\nAnswer: Denver Broncos", gold);
  EXPECT_TRUE(r.followed);
  EXPECT_TRUE(r.correct);
  EXPECT_EQ(r.prediction, "denver broncos");
  // The earliest cue decides; the prediction is everything after it.
  r = eval::read_xquad_reply("The answer is the Broncos. Result: no", gold);
  EXPECT_TRUE(r.followed);
  EXPECT_EQ(r.prediction, "the broncos. result: no");
  EXPECT_FALSE(r.correct);
  // No cue: the whole reply, contained or containing.
  r = eval::read_xquad_reply("I think the Denver Broncos won it.", gold);
  EXPECT_FALSE(r.followed);
  EXPECT_TRUE(r.correct);
  // An empty prediction is wrong (the reference counted it right).
  r = eval::read_xquad_reply("Answer:", gold);
  EXPECT_TRUE(r.followed);
  EXPECT_FALSE(r.correct);
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.groups = {"de"};
  const auto task = eval::make_task("xquad", o);
  ASSERT_EQ(task->size(), 1u);
  EXPECT_EQ(task->item_id(0), "de/56beb4343aeaaa14008c925b");
  const std::string text = task->requests(0).at(0).messages.at(0).content;
  EXPECT_NE(text.find("Question: Wie viele Punkte gab die Verteidigung der Panthers ab?"),
            std::string::npos)
      << text;
  auto s =
      task->score(0, {reply("Translation: How many points did the defense give up?\nAnswer: 308")});
  EXPECT_EQ(s.group, "de");
  EXPECT_EQ(s.scores.at("follow"), 1);
  EXPECT_EQ(s.scores.at("acc"), 1);
  EXPECT_EQ(s.scores.at("acc_with_follow"), 1);
  EXPECT_DOUBLE_EQ(s.scores.at("f1"), 1.0);
  auto no_cue = task->score(0, {reply("308 points")});
  EXPECT_EQ(no_cue.scores.at("follow"), 0);
  EXPECT_EQ(no_cue.scores.at("acc"), 1);
  EXPECT_EQ(no_cue.scores.at("acc_with_follow"), 0);
}

TEST(HumanEvalTask, SamplesRunInTheSandboxForPassAtK) {
  EXPECT_EQ(eval::humaneval_completion_from_chat(
                "Here:\n```python\ndef f(x):\n    return x\n```\nDone.", "f"),
            "\ndef f(x):\n    return x\n");
  EXPECT_EQ(eval::humaneval_completion_from_chat("    return x\n", "f"), "    return x\n");
  auto o = options_for(shared_data("eval"));
  o.limit = 1;
  o.samples = 3;
  o.chat = false;
  const auto task = eval::make_task("humaneval", o);
  ASSERT_EQ(task->size(), 1u);
  EXPECT_EQ(task->item_id(0), "HumanEval/0");
  const auto requests = task->requests(0);
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].kind, llm::RequestKind::completion);
  EXPECT_DOUBLE_EQ(requests[0].params.temperature, 0.8);
  EXPECT_DOUBLE_EQ(requests[0].params.top_p, 0.95);
  EXPECT_NE(requests[0].params.seed, requests[1].params.seed);
  EXPECT_TRUE(requests[0].prompt.starts_with("from typing import List"));
  const std::string right =
      "    for i, a in enumerate(numbers):\n        for j, b in enumerate(numbers):\n"
      "            if i != j and abs(a - b) < threshold:\n                return True\n"
      "    return False\n";
  auto s = task->score(0, {reply(right), reply("    return True\n"), reply(right)});
  EXPECT_NEAR(s.scores.at("pass@1"), 2.0 / 3, 1e-12);
  EXPECT_EQ(s.scores.count("pass@10"), 0u);  // n = 3 < 10
  EXPECT_EQ(s.fields.at("passed"), "2 of 3");
}

TEST(Suites, NameExistingTasks) {
  for (const char* suite : {"quick", "sequential", "paper"})
    for (const auto& name : eval::suite_tasks(suite))
      EXPECT_NO_THROW(eval::task_summary(name)) << suite << " " << name;
  EXPECT_EQ(eval::suite_limit("quick"), 5);
  EXPECT_THROW(eval::suite_tasks("everything"), Error);
}

}  // namespace
}  // namespace seqit::testing
