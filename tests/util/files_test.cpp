#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "testing.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/jsonl_writer.h"

namespace fs = std::filesystem;
using nlohmann::json;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

TEST(AtomicWrite, ReplacesWholeFileAndLeavesNoTemporaries) {
  TempDir dir;
  spit(dir / "out.txt", "old");
  seqit::write_file_atomic(dir / "out.txt", "new content");
  EXPECT_EQ(slurp(dir / "out.txt"), "new content");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(AtomicWrite, AbandonedWriterLeavesTargetUntouched) {
  TempDir dir;
  spit(dir / "out.txt", "old");
  {
    seqit::AtomicFileWriter w(dir / "out.txt");
    w.write("partial");
  }
  EXPECT_EQ(slurp(dir / "out.txt"), "old");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 1);
}

TEST(AtomicWrite, MissingFolderIsAClearError) {
  TempDir dir;
  EXPECT_THROW(seqit::write_file_atomic(dir / "no/such/out.txt", "x"), seqit::Error);
}

TEST(ResumableJsonl, ResumeDropsTornLineAndKnowsDoneIds) {
  TempDir dir;
  fs::path p = dir / "out.jsonl";
  {
    seqit::ResumableJsonlWriter w(p, "id");
    for (int i = 0; i < 5; ++i) w.append(json{{"id", i}, {"text", "row " + std::to_string(i)}});
  }
  // Simulate a crash mid-line: cut the file inside the last record.
  std::string full = slurp(p);
  fs::resize_file(p, full.size() - 7);
  {
    seqit::ResumableJsonlWriter w(p, "id");
    EXPECT_EQ(w.resumed_records(), 4);
    EXPECT_GT(w.dropped_bytes(), 0);
    for (int i = 0; i < 6; ++i) {
      if (!w.has_id_value(json(i))) w.append(json{{"id", i}, {"text", "row " + std::to_string(i)}});
    }
    EXPECT_EQ(w.records(), 6);
  }
  // Every id exactly once, every line complete JSON.
  std::string content = slurp(p);
  std::vector<int> ids;
  size_t start = 0;
  while (start < content.size()) {
    size_t end = content.find('\n', start);
    ASSERT_NE(end, std::string::npos);
    ids.push_back(json::parse(content.substr(start, end - start))["id"].get<int>());
    start = end + 1;
  }
  EXPECT_EQ(ids, (std::vector<int>{0, 1, 2, 3, 4, 5}));
}

TEST(ResumableJsonl, StringAndNumberIdsAreTheSameText) {
  TempDir dir;
  {
    seqit::ResumableJsonlWriter w(dir / "o.jsonl", "idx");
    w.append(json{{"idx", "a-1"}});
    w.append(json{{"idx", 7}});
  }
  seqit::ResumableJsonlWriter w(dir / "o.jsonl", "idx");
  EXPECT_TRUE(w.has_id("a-1"));
  EXPECT_TRUE(w.has_id_value(json(7)));
  EXPECT_FALSE(w.has_id_value(json(8)));
}

TEST(ResumableJsonl, CorruptCompleteLineRefusesToResume) {
  TempDir dir;
  spit(dir / "o.jsonl", "{\"id\":1}\nnot json\n{\"id\":3}\n");
  try {
    seqit::ResumableJsonlWriter w(dir / "o.jsonl");
    FAIL();
  } catch (const seqit::Error& e) {
    EXPECT_EQ(e.context().line, 2);
  }
}

TEST(TextPosition, CountsLinesAndColumns) {
  auto p = seqit::position_of_offset("ab\ncd\nef", 7);
  EXPECT_EQ(p.line, 3);
  EXPECT_EQ(p.column, 2);
}

TEST(ResumableJsonl, AppendLineWritesPreEncodedLinesAndTracksIds) {
  TempDir dir;
  fs::path p = dir / "pre.jsonl";
  {
    seqit::ResumableJsonlWriter w(p, "id");
    w.append_line("{\"id\": \"a\", \"x\": 1}", "a");
    w.append_line("{\"id\": \"b\", \"x\": 2}", "b");
    EXPECT_TRUE(w.has_id("b"));
    EXPECT_THROW(w.append_line("{\"id\": \"c\",\n\"x\": 3}", "c"), seqit::Error);
  }
  EXPECT_EQ(slurp(p), "{\"id\": \"a\", \"x\": 1}\n{\"id\": \"b\", \"x\": 2}\n");
  seqit::ResumableJsonlWriter again(p, "id");
  EXPECT_EQ(again.resumed_records(), 2);
  EXPECT_TRUE(again.has_id("a"));
}

TEST(JsonlParts, MergeMovesEachIdOnceDropsTornLinesAndRemovesTheParts) {
  TempDir dir;
  const fs::path out = dir / "o.jsonl";
  spit(out, "{\"id\":\"a\",\"v\":1}\n");
  EXPECT_EQ(seqit::jsonl_part_path(out, 3), dir / "o.jsonl.part-3");
  // Two ranks' parts of a killed run: rank 1's torn mid-line; "a" is already in the output.
  spit(dir / "o.jsonl.part-0", "{\"id\":\"b\",\"v\":2}\n{\"id\":\"a\",\"v\":9}\n");
  spit(dir / "o.jsonl.part-1", "{\"id\":\"c\",\"v\":3}\n{\"id\":\"d\",\"v");
  spit(dir / "o.jsonl.part-x", "not a part\n");  // only numbered parts are merged
  EXPECT_EQ(seqit::merge_jsonl_parts(out), 2);
  EXPECT_EQ(slurp(out), "{\"id\":\"a\",\"v\":1}\n{\"id\":\"b\",\"v\":2}\n{\"id\":\"c\",\"v\":3}\n");
  EXPECT_FALSE(fs::exists(dir / "o.jsonl.part-0"));
  EXPECT_FALSE(fs::exists(dir / "o.jsonl.part-1"));
  EXPECT_TRUE(fs::exists(dir / "o.jsonl.part-x"));
  // Nothing left to merge; a merge repeated after a crash midway writes nothing twice.
  EXPECT_EQ(seqit::merge_jsonl_parts(out), 0);
  spit(dir / "o.jsonl.part-0", "{\"id\":\"b\",\"v\":2}\n{\"id\":\"e\",\"v\":5}\n");
  EXPECT_EQ(seqit::merge_jsonl_parts(out), 1);
  EXPECT_EQ(seqit::remove_jsonl_parts(out), 0);
  spit(dir / "o.jsonl.part-7", "{}\n");
  EXPECT_EQ(seqit::remove_jsonl_parts(out), 1);
}
