// Malformed input: each kind of damage gives its documented error (docs/data.md, "Bad records")
// at the right file, line, column, record and field; --on-error skip counts and locates them.
#include <gtest/gtest.h>

#include "data/convert.h"
#include "data/reader.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;
using test::contains;
using test::read_error;

TEST(Malformed, TruncatedJsonArrayIsFatalWithLineColumnAndRecord) {
  TempDir dir;
  auto path = dir / "cut.json";
  spit(path, "[{\"instruction\": \"a\", \"output\": \"b\"},\n {\"instruction\": \"c\", \"outp");
  seqit::Error e = read_error(path);
  EXPECT_EQ(e.context().file, path.string());
  EXPECT_EQ(e.context().line, 2);
  EXPECT_EQ(e.context().column,
            28);  // just past the 27 bytes of line 2: the input ended in a string
  EXPECT_EQ(e.context().record, 1);
  EXPECT_TRUE(contains(e.message(), "invalid JSON")) << e.what();
  // Nothing after a syntax error in an array can be located, so even skip stops here; the records
  // before it were delivered.
  int64_t seen = 0;
  EXPECT_THROW(
      read_records(path, test::skipping(), [&](Record&&, const seqit::ErrorContext&) { ++seen; }),
      seqit::Error);
  EXPECT_EQ(seen, 1);
}

TEST(Malformed, TornFinalJsonlLineSaysTheFileLooksTruncated) {
  TempDir dir;
  auto path = dir / "torn.jsonl";
  spit(path, "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"c\", \"outp");
  seqit::Error e = read_error(path);
  EXPECT_EQ(e.context().line, 2);
  EXPECT_EQ(e.context().record, 1);
  EXPECT_TRUE(contains(e.message(), "the file looks truncated")) << e.what();
  ReadReport report =
      read_records(path, test::skipping(), [](Record&&, const seqit::ErrorContext&) {});
  EXPECT_EQ(report.records, 1);
  EXPECT_EQ(report.bad.count, 1);
}

TEST(Malformed, WrongTypesNameTheField) {
  TempDir dir;
  struct Case {
    std::string second_line;  // line 2 of a file whose line 1 fixes the format
    std::string first_line;
    std::string field;
    std::string message;
  };
  const std::string alpaca = R"({"instruction": "a", "output": "b"})";
  const std::vector<Case> cases = {
      {R"({"instruction": ["x"], "output": "y"})", alpaca, "instruction",
       "expected a string, found an array"},
      {R"({"instruction": "x", "input": null, "output": "y"})", alpaca, "input",
       "expected a string, found null"},
      {R"({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": 42}]})",
       R"({"conversations": [{"from": "human", "value": "q"}]})", "conversations[1].value",
       "expected a string, found an integer"},
      {R"({"conversations": [{"from": "human", "value": "q"}, "oops"]})",
       R"({"conversations": [{"from": "human", "value": "q"}]})", "conversations[1]",
       "expected a message object, found a string"},
      {R"({"messages": [{"role": "assistant", "content": null, "tool_calls": []}]})",
       R"({"messages": [{"role": "user", "content": "q"}]})", "messages[0].content",
       "null content are not supported"},
      {R"({"instruction": "x", "iteration": "2"})", R"({"instruction": "a", "iteration": 1})",
       "iteration", "expected an integer, found a string"},
      {R"({"conversations": ["q", 7]})", R"({"conversations": ["q", "a"]})", "conversations[1]",
       "expected a string, found an integer"},
      {R"({"id": 2, "instruction_1": "q", "answer_1": 3.5})",
       R"({"id": 1, "instruction_1": "q", "answer_1": "a"})", "answer_1",
       "expected a string, found a number"},
  };
  for (const auto& c : cases) {
    spit(dir / "w.jsonl", c.first_line + "\n" + c.second_line + "\n");
    seqit::Error e = read_error(dir / "w.jsonl");
    EXPECT_EQ(e.context().line, 2) << c.second_line;
    EXPECT_EQ(e.context().record, 1) << c.second_line;
    EXPECT_EQ(e.context().field, c.field) << e.what();
    EXPECT_TRUE(contains(e.message(), c.message)) << e.what();
  }
}

TEST(Malformed, MissingFieldsNameTheField) {
  TempDir dir;
  struct Case {
    std::string content;
    const char* from;
    std::string field;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"question": "q", "answer": "a"})"
       "\n"
       R"({"question": "q2"})",
       nullptr, "answer", "missing field 'answer'"},
      {R"({"question": "q", "response": "a"})"
       "\n"
       R"({"response": "a"})",
       "flancot", "question", "missing field 'question'"},
      {R"({"id": 1, "instruction_1": "a", "answer_1": "b"})"
       "\n"
       R"({"id": 2, "instruction_1": "a", "answer_1": "b", "instruction_2": "c"})",
       nullptr, "answer_2", "missing field 'answer_2'"},
      {R"({"id": 1, "instruction_1": "a", "answer_1": "b"})"
       "\n"
       R"({"id": 2, "instruction_1": "a", "answer_1": "b", "instruction_3": "c", "answer_3": "d"})",
       nullptr, "instruction_3", "does not follow instruction_1 / answer_1"},
      {R"({"instruction": "a", "iteration": 1})"
       "\n"
       R"({"instruction": "b"})",
       "seqeval", "iteration", "missing field 'iteration'"},
      {R"({"messages": [{"role": "user", "content": "q"}]})"
       "\n"
       R"({"messages": [{"content": "q"}]})",
       nullptr, "messages[0].role", "missing field 'role'"},
  };
  for (const auto& c : cases) {
    spit(dir / "m.jsonl", c.content + "\n");
    seqit::Error e = read_error(dir / "m.jsonl", c.from ? test::from(c.from) : ReadOptions{});
    EXPECT_EQ(e.context().line, 2) << e.what();
    EXPECT_EQ(e.context().record, 1) << e.what();
    EXPECT_EQ(e.context().field, c.field) << e.what();
    EXPECT_TRUE(contains(e.message(), c.message)) << e.what();
  }
}

TEST(Malformed, WrongTypeInJsonArrayNamesTheRecord) {
  TempDir dir;
  spit(
      dir / "a.json",
      R"([{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "b"}, {"instruction": "a", "output": "b"}, {"instruction": "a", "output": {"text": "b"}}])");
  seqit::Error e = read_error(dir / "a.json");
  EXPECT_EQ(e.context().record, 3);
  EXPECT_EQ(e.context().field, "output");
  EXPECT_EQ(std::string(e.what()), (dir / "a.json").string() +
                                       ": record 3, field 'output': expected a string, found an "
                                       "object; expected alpaca-json records "
                                       "{instruction, input?, output?, system_prompt?}");
}

TEST(Malformed, InvalidUtf8IsLocatedToTheByte) {
  TempDir dir;
  // JSON lines: the bad byte is the 20th of line 3.
  spit(dir / "u.jsonl",
       "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"ab\xff"
       "cd\", \"output\": \"x\"}\n");
  seqit::Error e = read_error(dir / "u.jsonl");
  EXPECT_EQ(e.context().line, 3);
  EXPECT_EQ(e.context().column, 20);
  EXPECT_EQ(e.context().record, 1);
  EXPECT_TRUE(contains(e.message(), "ill-formed UTF-8")) << e.what();
  // TSV: the second byte of line 2.
  spit(dir / "u.tsv", "q\ta\tr\nq\xfe\ta\tr\n");
  e = read_error(dir / "u.tsv");
  EXPECT_EQ(e.context().line, 2);
  EXPECT_EQ(e.context().column, 2);
  EXPECT_EQ(e.context().record, 1);
  EXPECT_TRUE(contains(e.message(), "invalid UTF-8 (byte 0xfe)")) << e.what();
  // JSON array: line and column in the file; the lead byte 0xc3 at column 18 is followed by '(',
  // which is where the sequence breaks.
  spit(dir / "u.json",
       "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n{\"instruction\": \"\xc3(\"}]");
  e = read_error(dir / "u.json");
  EXPECT_EQ(e.context().line, 3);
  EXPECT_EQ(e.context().column, 19);
  EXPECT_EQ(e.context().record, 1);
}

TEST(Malformed, TsvRowsNeedThreeFields) {
  TempDir dir;
  spit(dir / "f.tsv", "q1\ta1\tr1\nq2\ta2\tr2\nq3\ta3\n");
  seqit::Error e = read_error(dir / "f.tsv");
  EXPECT_EQ(e.context().line, 3);
  EXPECT_EQ(e.context().record, 2);
  EXPECT_TRUE(contains(e.message(),
                       "expected 3 tab-separated fields (question, answer, rationale), found 2"))
      << e.what();
  EXPECT_FALSE(contains(e.message(), "truncated"));
  spit(dir / "torn.tsv", "q1\ta1\tr1\nq2\ta2");
  e = read_error(dir / "torn.tsv");
  EXPECT_EQ(e.context().line, 2);
  EXPECT_TRUE(contains(e.message(), "the file may be truncated")) << e.what();
}

TEST(Malformed, SkipCountsAndKeepsTheFirstFewLocations) {
  TempDir dir;
  std::string content;
  for (int i = 0; i < 12; ++i) {
    content +=
        i % 3 == 0 ? "{\"instruction\": \"ok\", \"output\": \"y\"}\n" : "{\"instruction\": 1}\n";
  }
  spit(dir / "s.jsonl", content);
  ReadReport report =
      read_records(dir / "s.jsonl", test::skipping(), [](Record&&, const seqit::ErrorContext&) {});
  EXPECT_EQ(report.records, 4);
  EXPECT_EQ(report.bad.count, 8);
  ASSERT_EQ(report.bad.first.size(), 5u);
  std::vector<int64_t> lines;
  for (const auto& e : report.bad.first) lines.push_back(e.context().line);
  EXPECT_EQ(lines, (std::vector<int64_t>{2, 3, 5, 6, 8}));
  std::string summary = report.bad.summary();
  EXPECT_TRUE(contains(summary, "8 bad records skipped")) << summary;
  EXPECT_TRUE(contains(summary, "s.jsonl:2: record 1, field 'instruction': expected a string"))
      << summary;
  EXPECT_TRUE(contains(summary, "... and 3 more")) << summary;
}

TEST(Malformed, RecordsTheOutputCannotHoldAreBadRecordsOfTheConversion) {
  TempDir dir;
  spit(
      dir / "chat.jsonl",
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"
      "\n"
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}]})"
      "\n"
      "{\"messages\": 3}\n"
      R"({"messages": [{"role": "user", "content": "q3"}]})"
      "\n");
  spit(dir / "out.json", "previous content");
  ConvertOptions options;
  options.to = parse_format_request("alpaca");
  try {
    convert_file(dir / "chat.jsonl", dir / "out.json", options);
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().line, 2);
    EXPECT_EQ(e.context().record, 1);
    EXPECT_EQ(e.context().field, "messages");
    EXPECT_TRUE(contains(e.message(), "only a single-turn conversation")) << e.what();
  }
  EXPECT_EQ(slurp(dir / "out.json"), "previous content");  // stop: the old output is untouched
  options.read.on_error = OnError::skip;
  ConvertReport r = convert_file(dir / "chat.jsonl", dir / "out.json", options);
  EXPECT_EQ(r.read, 3);
  EXPECT_EQ(r.written, 2);
  EXPECT_EQ(r.unreadable, 1);
  EXPECT_EQ(r.unwritable, 1);
  ASSERT_EQ(r.bad.first.size(), 2u);
  EXPECT_EQ(r.bad.first[0].context().line, 2);  // in input order, whichever side failed
  EXPECT_EQ(r.bad.first[1].context().line, 3);
  EXPECT_EQ(
      slurp(dir / "out.json"),
      R"([{"instruction": "q", "input": "", "output": "a"}, {"instruction": "q3", "input": "", "output": ""}])"
      "\n");
}
