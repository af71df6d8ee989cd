#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/error.h"
#include "util/json_io.h"

using nlohmann::json;
using seqit::testing::spit;
using seqit::testing::TempDir;

TEST(JsonlReader, ReadsRecordsAndSkipsBlankLines) {
  TempDir dir;
  spit(dir / "a.jsonl", "{\"id\":1}\n\n{\"id\":2}\r\n{\"id\":3}");
  seqit::JsonlReader r(dir / "a.jsonl");
  json v;
  std::vector<int> ids;
  while (r.next(v)) ids.push_back(v["id"].get<int>());
  EXPECT_EQ(ids, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(r.line(), 4);
}

TEST(JsonlReader, MalformedLineNamesFileLineAndColumnAndReaderContinues) {
  TempDir dir;
  spit(dir / "b.jsonl", "{\"id\":1}\n{\"id\": tru}\n{\"id\":3}\n");
  seqit::JsonlReader r(dir / "b.jsonl");
  json v;
  ASSERT_TRUE(r.next(v));
  try {
    r.next(v);
    FAIL() << "expected an error";
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().line, 2);
    EXPECT_EQ(e.context().record, 1);
    EXPECT_GT(e.context().column, 6);
    EXPECT_NE(std::string(e.what()).find("b.jsonl:2:"), std::string::npos) << e.what();
  }
  ASSERT_TRUE(r.next(v));
  EXPECT_EQ(v["id"], 3);
  EXPECT_FALSE(r.next(v));
}

TEST(JsonlReader, TornLastLineIsReportedAsTruncated) {
  TempDir dir;
  spit(dir / "c.jsonl", "{\"id\":1}\n{\"id\":2, \"te");
  seqit::JsonlReader r(dir / "c.jsonl");
  json v;
  ASSERT_TRUE(r.next(v));
  try {
    r.next(v);
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
    EXPECT_EQ(e.context().line, 2);
  }
}

TEST(JsonArray, StreamsElementsInOrder) {
  TempDir dir;
  spit(dir / "a.json", "[{\"a\": [1, 2]}, 5, \"x\", {\"b\": {\"c\": null}}]");
  std::vector<json> seen;
  seqit::for_each_json_array_element(dir / "a.json", [&](json&& v, int64_t i) {
    EXPECT_EQ(i, static_cast<int64_t>(seen.size()));
    seen.push_back(std::move(v));
  });
  ASSERT_EQ(seen.size(), 4u);
  EXPECT_EQ(seen[0], json::parse("{\"a\": [1, 2]}"));
  EXPECT_EQ(seen[1], 5);
  EXPECT_EQ(seen[3]["b"]["c"], nullptr);
}

TEST(JsonArray, TruncatedDocumentGivesLineColumnAndRecord) {
  TempDir dir;
  spit(dir / "t.json", "[\n {\"a\": 1},\n {\"a\": 2},\n {\"a\": ");
  int64_t count = 0;
  try {
    seqit::for_each_json_array_element(dir / "t.json", [&](json&&, int64_t) { ++count; });
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(count, 2);
    EXPECT_EQ(e.context().line, 4);
    EXPECT_EQ(e.context().record, 2);
  }
}

TEST(JsonArray, NonArrayTopLevelIsAnError) {
  TempDir dir;
  spit(dir / "o.json", "{\"a\": 1}");
  EXPECT_THROW(seqit::for_each_json_array_element(dir / "o.json", [](json&&, int64_t) {}),
               seqit::Error);
}

TEST(JsonArray, RealAlpacaFileHas5000Records) {
  int64_t n = 0;
  seqit::for_each_json_array_element(seqit::testing::shared_data("train/alpaca/alpaca_5000.json"),
                                     [&](json&& v, int64_t) {
                                       EXPECT_TRUE(v.contains("instruction"));
                                       ++n;
                                     });
  EXPECT_EQ(n, 5000);
}

TEST(ParseJson, ErrorHasLineAndColumn) {
  try {
    seqit::parse_json("{\n  \"a\": 1,\n  \"b\" 2\n}", "doc.json");
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().file, "doc.json");
    EXPECT_EQ(e.context().line, 3);
    EXPECT_EQ(e.context().column, 7);
  }
}

TEST(JsonWrite, KeepsUtf8AndRejectsInvalidUtf8) {
  EXPECT_EQ(seqit::to_json_line(json{{"t", "héllo ✓"}}), "{\"t\":\"héllo ✓\"}");
  EXPECT_THROW(seqit::to_json_line(json{{"t", std::string("\xff\xfe")}}), seqit::Error);
}

TEST(JsonArray, ErrorFromVisitorNamesTheElementItWasGiven) {
  TempDir dir;
  spit(dir / "v.json", "[{\"a\": 1}, {\"a\": \"two\"}, {\"a\": 3}]");
  try {
    seqit::for_each_json_array_element(dir / "v.json", [&](json&& v, int64_t) {
      if (!v["a"].is_number()) throw seqit::Error("not a number").in_field("a");
    });
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().record, 1) << e.what();
    EXPECT_EQ(e.context().field, "a");
    EXPECT_NE(std::string(e.what()).find("v.json"), std::string::npos) << e.what();
  }
}

TEST(JsonArray, OrderedVariantKeepsKeysInFileOrder) {
  TempDir dir;
  spit(dir / "k.json", "[{\"zeta\": 1, \"alpha\": 2, \"mid\": {\"y\": 1, \"b\": 2}}]");
  std::vector<std::string> keys;
  seqit::for_each_ordered_json_array_element(dir / "k.json",
                                             [&](nlohmann::ordered_json&& v, int64_t) {
                                               for (auto it = v.begin(); it != v.end(); ++it)
                                                 keys.push_back(it.key());
                                               EXPECT_EQ(v["mid"].dump(), "{\"y\":1,\"b\":2}");
                                             });
  EXPECT_EQ(keys, (std::vector<std::string>{"zeta", "alpha", "mid"}));
}

TEST(JsonlReader, OrderedVariantKeepsKeysInFileOrderAndReportsErrors) {
  TempDir dir;
  spit(dir / "k.jsonl", "{\"z\": 1, \"a\": 2}\n{\"z\": }\n");
  seqit::JsonlReader r(dir / "k.jsonl");
  nlohmann::ordered_json v;
  ASSERT_TRUE(r.next(v));
  EXPECT_EQ(v.dump(), "{\"z\":1,\"a\":2}");
  try {
    r.next(v);
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().line, 2);
    EXPECT_EQ(e.context().record, 1);
  }
  EXPECT_FALSE(r.next(v));
}

// Expected strings are what Python 3's json.dumps(s) and json.dumps(s, ensure_ascii=False) print.
TEST(PythonJsonString, MatchesJsonDumpsWithAndWithoutEnsureAscii) {
  const std::string s =
      "a\"b\\c\n\r\t\b\f\x01\x7f"
      "\xc3\xa9"
      "\xf0\x9f\x98\x80";  // ... é 😀
  std::string ascii, utf8;
  seqit::append_python_json_string(ascii, s, true);
  seqit::append_python_json_string(utf8, s, false);
  EXPECT_EQ(ascii, R"("a\"b\\c\n\r\t\b\f\u0001\u007f\u00e9\ud83d\ude00")");
  EXPECT_EQ(utf8, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\x7f\xc3\xa9\xf0\x9f\x98\x80\"");
  // A stray byte is copied (or \u00XX-escaped), never dropped.
  std::string stray;
  seqit::append_python_json_string(stray, "x\xffy", true);
  EXPECT_EQ(stray, R"("x\u00ffy")");
}

namespace seqit {
namespace {

std::string nested(int depth) {
  return "{\"instruction\": " + std::string(depth, '[') + std::string(depth, ']') +
         ", \"output\": \"x\"}";
}

// Issue 17: 70k levels inside a record overflowed the stack; now every reader stops at
// kMaxJsonDepth with the place named, and strings full of brackets are not nesting.
TEST(JsonDepth, DeepRecordsAreClearErrorsNotCrashes) {
  testing::TempDir dir;
  testing::spit(dir / "deep.jsonl", "{\"a\": 1}\n" + nested(70000) + "\n");
  JsonlReader reader(dir / "deep.jsonl");
  nlohmann::json record;
  ASSERT_TRUE(reader.next(record));
  try {
    reader.next(record);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("deep.jsonl:2:"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("deeper than 1000"), std::string::npos) << e.what();
  }
  testing::spit(dir / "deep.json", "[" + nested(70000) + "]");
  EXPECT_THROW(for_each_json_array_element(dir / "deep.json", [](nlohmann::json&&, int64_t) {}),
               Error);
  EXPECT_THROW(parse_json(nested(70000), "inline"), Error);
  // At the limit: fine; brackets inside strings do not count.
  EXPECT_NO_THROW(parse_json(nested(kMaxJsonDepth - 1), "inline"));
  EXPECT_FALSE(json_too_deep("{\"s\": \"" + std::string(5000, '[') + "\\\" [[[\"}").has_value());
  EXPECT_EQ(json_too_deep("[[[", 2), std::optional<size_t>(2));
}

TEST(JsonNumbers, OutOfRangeNamesFileAndLine) {
  testing::TempDir dir;
  testing::spit(dir / "big.jsonl", "{\"a\": 1}\n{\"temperature\": 1e999999}\n");
  JsonlReader reader(dir / "big.jsonl");
  nlohmann::json record;
  ASSERT_TRUE(reader.next(record));
  try {
    reader.next(record);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("big.jsonl:2"), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).find("internal error"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace seqit
