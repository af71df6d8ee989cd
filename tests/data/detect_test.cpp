// Formats without a real file in ../shared/data (ShareGPT, OpenAI/Tulu messages, LIMA, FlanCoT
// JSONL, seqit JSONL), written here in their published layouts; format detection, --from, and the
// errors for unknown and mixed formats.
#include <gtest/gtest.h>

#include "data/format.h"
#include "data/reader.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
using seqit::testing::spit;
using seqit::testing::TempDir;
using test::as_conversation;
using test::as_instruction;
using test::contains;

TEST(ShareGpt, ReadsRolesExtraFieldsAndIds) {
  TempDir dir;
  spit(
      dir / "s.json",
      R"([{"id": "QWJhYvA_0", "conversations": [{"from": "system", "value": "Be kind."}, {"from": "human", "value": "Hi!"}, {"from": "gpt", "value": "Hello.", "weight": 1}, {"from": "user", "value": "Bye"}, {"from": "assistant", "value": "Bye."}], "source": "sharegpt90k"}])");
  auto records = read_all(dir / "s.json");
  EXPECT_EQ(detect_format(dir / "s.json"), (Format{Schema::sharegpt, Container::json}));
  ASSERT_EQ(records.size(), 1u);
  const Conversation& c = as_conversation(records[0]);
  EXPECT_EQ(c.id, "QWJhYvA_0");
  ASSERT_EQ(c.messages.size(), 5u);
  EXPECT_EQ(c.messages[0], (Message{"system", "Be kind.", {}}));
  EXPECT_EQ(c.messages[1], (Message{"user", "Hi!", {}}));
  EXPECT_EQ(c.messages[2].role, "assistant");
  EXPECT_EQ(c.messages[2].meta.dump(), R"({"weight":1})");
  EXPECT_EQ(c.messages[3].role, "user");
  EXPECT_EQ(c.messages[4].role, "assistant");
  EXPECT_EQ(c.meta.dump(), R"({"source":"sharegpt90k"})");
}

TEST(OpenAi, ReadsTuluMessagesWithSystemTurns) {
  TempDir dir;
  spit(dir / "t.jsonl",
       "{\"dataset\": \"flan_v2\", \"id\": \"flan_v2_0\", \"messages\": [{\"role\": \"system\", "
       "\"content\": "
       "\"S\"}, {\"role\": \"user\", \"content\": \"Q\"}, {\"role\": \"assistant\", \"content\": "
       "\"A\"}]}\n"
       "{\"messages\": [{\"role\": \"user\", \"content\": \"only a prompt\"}]}\n");
  EXPECT_EQ(detect_format(dir / "t.jsonl"), (Format{Schema::openai, Container::jsonl}));
  auto records = read_all(dir / "t.jsonl");
  ASSERT_EQ(records.size(), 2u);
  const Conversation& c = as_conversation(records[0]);
  EXPECT_EQ(c.id, "flan_v2_0");
  EXPECT_EQ(c.meta.dump(), R"({"dataset":"flan_v2"})");
  EXPECT_EQ(c.messages,
            (std::vector<Message>{{"system", "S", {}}, {"user", "Q", {}}, {"assistant", "A", {}}}));
  EXPECT_EQ(as_conversation(records[1]).messages.size(), 1u);
}

TEST(Lima, ReadsAlternatingTurnsAsPlainStrings) {
  TempDir dir;
  spit(
      dir / "lima.jsonl",
      R"({"conversations": ["Can brain cells move?", "Yes, some can.", "Which ones?", "Neurons, early on."], "source": "stackexchange"})"
      "\n");
  EXPECT_EQ(detect_format(dir / "lima.jsonl"), (Format{Schema::lima, Container::jsonl}));
  auto records = read_all(dir / "lima.jsonl");
  const Conversation& c = as_conversation(records[0]);
  ASSERT_EQ(c.messages.size(), 4u);
  EXPECT_EQ(c.messages[0], (Message{"user", "Can brain cells move?", {}}));
  EXPECT_EQ(c.messages[3], (Message{"assistant", "Neurons, early on.", {}}));
  EXPECT_EQ(c.meta.dump(), R"({"source":"stackexchange"})");
}

TEST(FlanCotJsonl, ReadsQuestionResponseAndSystemPrompt) {
  TempDir dir;
  spit(
      dir / "f.jsonl",
      R"({"id": "cot.86217", "system_prompt": "You are an AI assistant that helps people find information.", "question": "Is the sky blue?", "response": "Yes. Rayleigh scattering."})"
      "\n");
  EXPECT_EQ(detect_format(dir / "f.jsonl"), (Format{Schema::flancot, Container::jsonl}));
  auto records = read_all(dir / "f.jsonl");
  const Instruction& r = as_instruction(records[0]);
  EXPECT_EQ(r.id, "cot.86217");
  EXPECT_EQ(r.system, "You are an AI assistant that helps people find information.");
  EXPECT_EQ(r.instruction, "Is the sky blue?");
  EXPECT_EQ(r.input, "");
  EXPECT_EQ(r.output, "Yes. Rayleigh scattering.");
  EXPECT_TRUE(r.meta.empty());
}

TEST(SeqitJsonl, ReadsBothRecordKindsAndRejectsUnknownTopLevelFields) {
  TempDir dir;
  spit(
      dir / "o.jsonl",
      R"({"id": "1", "system": "", "instruction": "I", "input": "x", "output": "O", "meta": {"k": [1]}})"
      "\n"
      R"({"id": "2", "messages": [{"role": "user", "content": "hi", "meta": {"name": "bob"}}], "meta": {}})"
      "\n");
  EXPECT_EQ(detect_format(dir / "o.jsonl"), (Format{Schema::seqit, Container::jsonl}));
  auto records = read_all(dir / "o.jsonl");
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(as_instruction(records[0]).meta.dump(), R"({"k":[1]})");
  EXPECT_EQ(as_conversation(records[1]).messages[0].meta.dump(), R"({"name":"bob"})");

  spit(dir / "bad.jsonl",
       R"({"id": "1", "instruction": "I", "output": "O", "meta": {}, "extra": 1})"
       "\n");
  auto e = test::read_error(dir / "bad.jsonl", test::from("seqit"));
  EXPECT_EQ(e.context().field, "extra");
  EXPECT_TRUE(contains(e.message(), "extra fields belong under 'meta'")) << e.what();
}

TEST(Detection, FromOverridesTheGuess) {
  TempDir dir;
  // Looks like SeqEval (instruction + iteration, no output); read as Alpaca when asked.
  spit(dir / "x.jsonl", R"({"instruction": "Do it.", "iteration": 2})"
                        "\n");
  EXPECT_EQ(detect_format(dir / "x.jsonl").schema, Schema::seqeval);
  auto records = read_all(dir / "x.jsonl", test::from("alpaca"));
  const Instruction& r = as_instruction(records[0]);
  EXPECT_EQ(r.instruction, "Do it.");
  EXPECT_EQ(r.meta.dump(), R"({"iteration":2})");
  // A container in the name forces it too: a JSON-lines reading of a JSON array fails clearly.
  spit(dir / "arr.json", R"([{"instruction": "a", "output": "b"}])");
  EXPECT_THROW(read_all(dir / "arr.json", test::from("alpaca-jsonl")), seqit::Error);
  EXPECT_EQ(read_all(dir / "arr.json", test::from("alpaca-json")).size(), 1u);
}

TEST(Detection, FormatNamesParseWithContainersAndAliases) {
  EXPECT_EQ(parse_format_request("tulu").schema, Schema::openai);
  EXPECT_EQ(parse_format_request("messages-jsonl").container, Container::jsonl);
  EXPECT_EQ(parse_format_request("coi").schema, Schema::alpaca);
  EXPECT_EQ(parse_format_request("flancot-tsv").container, Container::tsv);
  EXPECT_FALSE(parse_format_request("sharegpt").container.has_value());
  EXPECT_THROW(parse_format_request("alpaca-tsv"), seqit::Error);
  try {
    parse_format_request("dolly");
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_TRUE(contains(e.message(), "unknown format 'dolly'")) << e.what();
    EXPECT_TRUE(contains(e.message(), "sharegpt")) << e.what();
  }
  EXPECT_EQ(container_for_path(Schema::flancot, "out.tsv"), Container::tsv);
  EXPECT_EQ(container_for_path(Schema::alpaca, "out.tsv"), Container::jsonl);
  EXPECT_EQ(container_for_path(Schema::alpaca, "out.json"), Container::json);
}

TEST(Detection, UnknownFormatNamesTheRecordAndWhatWasExpected) {
  TempDir dir;
  spit(dir / "u.jsonl", "\n{\"prompt\": \"a\", \"completion\": \"b\"}\n");
  auto e = test::read_error(dir / "u.jsonl");
  EXPECT_EQ(e.context().line, 2);
  EXPECT_EQ(e.context().record, 0);
  EXPECT_TRUE(
      contains(e.message(), "unknown format: found a record with fields {prompt, completion}"))
      << e.what();
  EXPECT_TRUE(contains(e.message(), "alpaca    {instruction, input?, output?")) << e.what();
  // Unknown formats are fatal even when bad records are skipped.
  EXPECT_THROW(read_all(dir / "u.jsonl", test::skipping()), seqit::Error);

  spit(dir / "n.json", "[5, 6]");
  e = test::read_error(dir / "n.json");
  EXPECT_EQ(e.context().record, 0);
  EXPECT_TRUE(contains(e.message(), "a JSON number instead of an object")) << e.what();

  spit(dir / "text.txt", "just some text\n");
  e = test::read_error(dir / "text.txt");
  EXPECT_TRUE(contains(e.message(), "cannot tell the format")) << e.what();

  spit(dir / "empty.jsonl", "");
  e = test::read_error(dir / "empty.jsonl");
  EXPECT_TRUE(contains(e.message(), "give --from")) << e.what();
  EXPECT_TRUE(read_all(dir / "empty.jsonl", test::from("alpaca")).empty());
}

TEST(Detection, MixedFormatsNameTheFirstOffendingRecord) {
  TempDir dir;
  spit(dir / "m.jsonl", R"({"instruction": "a", "input": "", "output": "b"})"
                        "\n"
                        R"({"instruction": "c", "input": "", "output": "d"})"
                        "\n"
                        R"({"conversations": [{"from": "human", "value": "e"}]})"
                        "\n"
                        R"({"messages": [{"role": "user", "content": "f"}]})"
                        "\n");
  auto e = test::read_error(dir / "m.jsonl");
  EXPECT_EQ(e.context().line, 3);
  EXPECT_EQ(e.context().record, 2);
  EXPECT_EQ(e.context().field, "instruction");
  EXPECT_TRUE(contains(
      e.message(),
      "missing field 'instruction'; expected alpaca-jsonl records {instruction, input?, output?"))
      << e.what();
  EXPECT_TRUE(
      contains(e.message(),
               "looks like sharegpt instead: mixed formats? the format was detected from record 0"))
      << e.what();
  // With skip: both foreign records are reported, the rest is read.
  ReadReport report =
      read_records(dir / "m.jsonl", test::skipping(), [](Record&&, const seqit::ErrorContext&) {});
  EXPECT_EQ(report.records, 2);
  EXPECT_EQ(report.bad.count, 2);
  ASSERT_EQ(report.bad.first.size(), 2u);
  EXPECT_EQ(report.bad.first[1].context().line, 4);
  EXPECT_TRUE(contains(report.bad.first[1].message(), "looks like openai"))
      << report.bad.first[1].what();
}
