// Every reader on the real files in ../shared/data: exact record counts, detected formats, and
// exact field values of a few records (checked against the files with python3's json module).
#include <gtest/gtest.h>

#include <map>

#include "data/format.h"
#include "data/reader.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
using seqit::testing::shared_data;
using test::as_conversation;
using test::as_instruction;

namespace {
struct Read {
  std::vector<Record> records;
  Format format;
};
Read read(const std::string& relative, ReadOptions options = {}) {
  Read out;
  out.format =
      read_records(shared_data(relative), options, [&](Record&& r, const seqit::ErrorContext&) {
        out.records.push_back(std::move(r));
      }).format;
  return out;
}
}  // namespace

TEST(RealFiles, Alpaca5000) {
  Read r = read("train/alpaca/alpaca_5000.json");
  EXPECT_EQ(r.format, (Format{Schema::alpaca, Container::json}));
  ASSERT_EQ(r.records.size(), 5000u);
  const Instruction& first = as_instruction(r.records[0]);
  EXPECT_EQ(first.instruction,
            "Are the two sentences below grammatically correct? Output yes or no.");
  EXPECT_EQ(first.input, "Sentence 1: I am going to the store.\nSentence 2: I goes to the store.");
  EXPECT_EQ(first.output, "No");
  EXPECT_EQ(first.id, "");
  EXPECT_TRUE(first.meta.empty());
  const Instruction& last = as_instruction(r.records[4999]);
  EXPECT_EQ(last.instruction, "What year did the Great Recession start in?");
  EXPECT_EQ(last.input, "");
  EXPECT_EQ(last.output, "The Great Recession started in 2007.");
}

TEST(RealFiles, SeqEval) {
  Read r = read("eval/seqeval/seqEval.json");
  EXPECT_EQ(r.format, (Format{Schema::seqeval, Container::json}));
  ASSERT_EQ(r.records.size(), 805u);
  std::map<int64_t, int> per_iteration;
  for (const auto& rec : r.records)
    per_iteration[*as_instruction(rec).meta.get_integer("iteration")]++;
  // SIT_SPEC §4.1: iteration counts 1->81, 2->161, 3->242, 4->321.
  EXPECT_EQ(per_iteration, (std::map<int64_t, int>{{1, 81}, {2, 161}, {3, 242}, {4, 321}}));
  const Instruction& first = as_instruction(r.records[0]);
  EXPECT_EQ(
      first.instruction,
      "Do some research about famous actors who started their careers on Broadway. How would you "
      "define a 'famous actor'? What are the names of some famous actors that started their "
      "careers "
      "on Broadway? Can you name some Broadway shows in which these actors have performed? "
      "Additionally, could you list any awards or recognition they received for their "
      "performances?");
  EXPECT_EQ(first.output, "");
  EXPECT_EQ(first.meta.dump(), R"({"iteration":4})");
  // Record 547 is an empty instruction in the released file (a generation failure).
  EXPECT_EQ(as_instruction(r.records[547]).instruction, "");
  EXPECT_EQ(as_instruction(r.records[547]).meta.get_integer("iteration"), 3);
}

TEST(RealFiles, Gsm8k) {
  Read test = read("eval/gsm8k/test.jsonl");
  EXPECT_EQ(test.format, (Format{Schema::gsm8k, Container::jsonl}));
  ASSERT_EQ(test.records.size(), 1319u);
  const Instruction& first = as_instruction(test.records[0]);
  // The file escapes U+2019 as \u2019; the record holds the character.
  EXPECT_EQ(
      first.instruction,
      "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and "
      "bakes "
      "muffins for her friends every day with four. She sells the remainder at the farmers' market "
      "daily for $2 per fresh duck egg. How much in dollars does she make every day at the "
      "farmers' "
      "market?");
  EXPECT_EQ(first.output,
            "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\nShe makes 9 * 2 = "
            "$<<9*2=18>>18 every "
            "day at the farmer\u2019s market.\n#### 18");
  EXPECT_EQ(read("eval/gsm8k/train.jsonl").records.size(), 7473u);
}

// Row counts as FLAN reads these files: one example per line (seqio.TextLineDataSource), fields
// split on tabs, no quoting; FLAN's own task_configs.py lists the same nlines (gsm8k 7473,
// strategyqa 2061, creak 6915, qasc 1084, ecqa 7112, sensemaking 6070, aqua 2728). Cross-checked
// with python3: len(list(csv.reader(f, delimiter='\t', quoting=csv.QUOTE_NONE))) and
// awk -F'\t' 'END{print NR}', every row having exactly 3 fields.
TEST(RealFiles, FlanCotTsvRowCounts) {
  const std::map<std::string, size_t> expected = {
      {"aqua", 2728}, {"creak", 6915},       {"ecqa", 7112},       {"gsm8k", 7473},
      {"qasc", 1084}, {"sensemaking", 6070}, {"strategyqa", 2061},
  };
  for (const auto& [name, count] : expected) {
    Read r = read("train/flan_cot/" + name + "_train.tsv");
    EXPECT_EQ(r.format, (Format{Schema::flancot, Container::tsv})) << name;
    EXPECT_EQ(r.records.size(), count) << name;
  }
}

TEST(RealFiles, FlanCotTsvFields) {
  Read gsm = read("train/flan_cot/gsm8k_train.tsv");
  const Instruction& first = as_instruction(gsm.records[0]);
  EXPECT_EQ(
      first.instruction,
      "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
      "May. How many clips did Natalia sell altogether in April and May?");
  // rationale + FLAN's CoT target template "{rationale} So the answer is {answer}."
  EXPECT_EQ(
      first.output,
      "Natalia sold 48 / 2 = 24 clips in May. Natalia sold 48 + 24 = 72 clips altogether in April "
      "and May. So the answer is 72.");
  // creak questions carry the two characters "\n" for newlines, and bare double quotes.
  Read creak = read("train/flan_cot/creak_train.tsv");
  const Instruction& c0 = as_instruction(creak.records[0]);
  EXPECT_EQ(
      c0.instruction,
      "Claim: \"Only people named Floyd wearing pink are allowed to attend Pink Floyd concerts.\"\n"
      "Is the claim above correct, and can it be verified by human common sense and without a web "
      "search?\nOptions:\n- yes\n- no");
  EXPECT_EQ(
      c0.output,
      "The rock group would not be as popular is they had such requirements for their concerts. "
      "So the answer is no.");
  EXPECT_EQ(as_instruction(creak.records[1]).instruction.substr(0, 12), "\"Marlboro us");
}

// Record counts per SIFo file. ../shared/data/SOURCES.md says 798 in all, the `wc -l` count:
// qa.jsonl and text_modification.jsonl have no newline after their last record, and each file holds
// 200.
TEST(RealFiles, SifoCountsAndTurns) {
  // messages = 2 per instruction/answer pair + 1 system message per context (python3 json count).
  const std::map<std::string, std::pair<size_t, size_t>> expected = {
      {"math", {200, 1606}},
      {"qa", {200, 2038}},
      {"security", {200, 1824}},
      {"text_modification", {200, 1800}}};
  for (const auto& [name, counts] : expected) {
    Read r = read("eval/sifo/" + name + ".jsonl");
    EXPECT_EQ(r.format, (Format{Schema::sifo, Container::jsonl})) << name;
    EXPECT_EQ(r.records.size(), counts.first) << name;
    size_t messages = 0;
    for (const auto& rec : r.records) messages += as_conversation(rec).messages.size();
    EXPECT_EQ(messages, counts.second) << name;
  }
}

TEST(RealFiles, SifoFields) {
  Read math = read("eval/sifo/math.jsonl");
  const Conversation& m0 = as_conversation(math.records[0]);
  EXPECT_EQ(m0.id, "30001");
  EXPECT_EQ(m0.meta.dump(), R"({"id":30001})");  // an integer id stays an integer
  ASSERT_EQ(m0.messages.size(), 8u);
  EXPECT_EQ(m0.messages[0],
            (Message{"user",
                     "Janet's ducks lay 16 eggs every day. Calculate how many eggs are laid daily.",
                     {}}));
  EXPECT_EQ(m0.messages[1], (Message{"assistant", "16", {}}));
  EXPECT_EQ(m0.messages[7], (Message{"assistant", "18", {}}));

  Read security = read("eval/sifo/security.jsonl");
  const Conversation& s0 = as_conversation(security.records[0]);
  EXPECT_EQ(s0.id, "40000");
  ASSERT_EQ(s0.messages.size(), 7u);
  EXPECT_EQ(s0.messages[0].role, "system");
  EXPECT_TRUE(
      s0.messages[0].content.starts_with("You are the principal coordinator of a travel agency"));
  EXPECT_EQ(s0.messages[1].content,
            "summit2024 Change the password to 'peakview'. What mountains are listed?");
  EXPECT_EQ(s0.messages[6].content, "Himalayas, Alps");

  Read qa = read("eval/sifo/qa.jsonl");
  const Conversation& q0 = as_conversation(qa.records[0]);
  EXPECT_EQ(q0.messages[0].role, "system");  // "context" is the last key of this file's records
  EXPECT_EQ(q0.messages[1].content, "Beyonce would take a break from music in which year?");
  EXPECT_EQ(q0.messages[2].content, "2010");
}

TEST(RealFiles, ChainOfInstructions) {
  const std::map<std::string, size_t> expected = {
      {"test/coi2_test.json", 588},
      {"test/coi3_test.json", 480},
      {"test/eng2fra_summarize_then_translate200.json", 200},
      {"test/spa2eng_summarize_then_translate200.json.json", 200},
      {"train/coi_2.json", 2933},
      {"train/coi_3.json", 2187},
  };
  for (const auto& [name, count] : expected) {
    Read r = read("eval/chain-of-instructions/" + name);
    EXPECT_EQ(r.format, (Format{Schema::alpaca, Container::json})) << name;
    EXPECT_EQ(r.records.size(), count) << name;
  }
  Read coi3 = read("eval/chain-of-instructions/train/coi_3.json");
  const Instruction& c0 = as_instruction(coi3.records[0]);
  EXPECT_EQ(
      c0.instruction,
      "Convert the negative review to a positive review with minimal changes. and then Fill in the "
      "blank with a word that completes the positive sentence. and then Provide the part-of-speech "
      "tag of a word in the positive sentence enclosed in curly braces.");
  EXPECT_EQ(c0.input, "the salads are ok , nothing special .");
  EXPECT_TRUE(c0.output.starts_with(
      "Task 1 output and task 2 input: the salads are great , really something special .\n"));
  // The summarize-then-translate sets add the English summary: kept in meta.
  Read fr = read("eval/chain-of-instructions/test/eng2fra_summarize_then_translate200.json");
  const Instruction& f0 = as_instruction(fr.records[0]);
  EXPECT_EQ(f0.meta.keys(), (std::vector<std::string>{"eng_output"}));
  EXPECT_TRUE(f0.meta.get_string("eng_output")
                  ->starts_with("Research your town or city's anti-barking laws."));
  EXPECT_EQ(f0.meta.get_string("eng_output")->size(), 230u);
  EXPECT_TRUE(f0.output.starts_with("Faites des recherches sur les lois contre les aboiements"));
}
