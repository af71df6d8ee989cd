// Outputs that lose nothing: the resumable JSONL appender after a crash mid-line, and whole-file
// conversions that are atomic.
#include <gtest/gtest.h>

#include <filesystem>

#include "data/convert.h"
#include "data/reader.h"
#include "data/writer.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
namespace fs = std::filesystem;
using seqit::testing::shared_data;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
// The first `n` SIFo math items (integer ids, multi-turn), as a long job would produce them.
std::vector<Record> sifo_records(size_t n) {
  std::vector<Record> all = read_all(shared_data("eval/sifo/math.jsonl"));
  all.resize(n);
  return all;
}

void append_missing(RecordAppender& out, const std::vector<Record>& records) {
  for (const auto& r : records) {
    if (!out.contains(record_id(r))) out.append(r);
  }
}

size_t count_files(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator()));
}
}  // namespace

TEST(Resume, WriterKilledMidLineReopensWithEveryCompleteRecordAndNoDuplicates) {
  TempDir dir;
  std::vector<Record> records = sifo_records(20);
  Format format{Schema::seqit, Container::jsonl};
  {
    RecordAppender clean(dir / "reference.jsonl", format);
    append_missing(clean, records);
  }
  const std::string reference = slurp(dir / "reference.jsonl");

  // A run that got through 12 records and was killed while writing the 13th.
  {
    RecordAppender first(dir / "out.jsonl", format);
    append_missing(first, std::vector<Record>(records.begin(), records.begin() + 13));
  }
  std::string written = slurp(dir / "out.jsonl");
  size_t twelve = 0;
  for (int i = 0; i < 12; ++i) twelve = written.find('\n', twelve) + 1;
  fs::resize_file(dir / "out.jsonl", twelve + 40);  // 40 bytes into line 13

  RecordAppender resumed(dir / "out.jsonl", format);
  EXPECT_EQ(resumed.resumed_records(), 12);
  EXPECT_EQ(resumed.dropped_bytes(), 40);
  EXPECT_TRUE(resumed.contains("30012"));   // the 12th record (ids 30001..)
  EXPECT_FALSE(resumed.contains("30013"));  // the torn one
  append_missing(resumed, records);
  EXPECT_EQ(resumed.records(), 20);
  resumed.sync();
  EXPECT_EQ(slurp(dir / "out.jsonl"), reference);  // every record once, in order, byte for byte
  std::vector<Record> again = read_all(dir / "out.jsonl");
  ASSERT_EQ(again.size(), 20u);
  for (size_t i = 0; i < again.size(); ++i) EXPECT_TRUE(again[i] == records[i]) << i;
}

TEST(Resume, CutAtALineEndOrInsideTheFirstLine) {
  TempDir dir;
  std::vector<Record> records = sifo_records(5);
  Format format{Schema::openai, Container::jsonl};
  {
    RecordAppender out(dir / "a.jsonl", format);
    append_missing(out, records);
  }
  const std::string reference = slurp(dir / "a.jsonl");
  size_t two = reference.find('\n', reference.find('\n') + 1) + 1;
  fs::resize_file(dir / "a.jsonl", two);  // killed between records: nothing torn
  {
    RecordAppender out(dir / "a.jsonl", format);
    EXPECT_EQ(out.resumed_records(), 2);
    EXPECT_EQ(out.dropped_bytes(), 0);
    append_missing(out, records);
  }
  EXPECT_EQ(slurp(dir / "a.jsonl"), reference);
  fs::resize_file(dir / "a.jsonl", 10);  // killed during the very first record
  {
    RecordAppender out(dir / "a.jsonl", format);
    EXPECT_EQ(out.resumed_records(), 0);
    EXPECT_EQ(out.dropped_bytes(), 10);
    append_missing(out, records);
  }
  EXPECT_EQ(slurp(dir / "a.jsonl"), reference);
}

TEST(Resume, AppenderRefusesRecordsWithoutIdsOrTwice) {
  TempDir dir;
  RecordAppender out(dir / "x.jsonl", Format{Schema::seqit, Container::jsonl});
  Instruction r;
  r.instruction = "no id";
  EXPECT_THROW(out.append(r), seqit::Error);
  r.id = "1";
  out.append(r);
  EXPECT_THROW(out.append(r), seqit::Error);
  EXPECT_THROW(RecordAppender(dir / "y.json", Format{Schema::alpaca, Container::json}),
               seqit::Error);
}

TEST(AtomicConvert, FailedConversionLeavesTheOldOutputAndNoTemporaries) {
  TempDir dir;
  spit(dir / "in.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": 5}\n");
  spit(dir / "out.jsonl", "keep me\n");
  ConvertOptions options;
  options.to = parse_format_request("sharegpt");
  EXPECT_THROW(convert_file(dir / "in.jsonl", dir / "out.jsonl", options), seqit::Error);
  EXPECT_EQ(slurp(dir / "out.jsonl"), "keep me\n");
  EXPECT_EQ(count_files(dir.path()), 2u);
}

TEST(AtomicConvert, InputMayBeTheOutput) {
  TempDir dir;
  fs::copy_file(shared_data("eval/gsm8k/test.jsonl"), dir / "g.jsonl");
  ConvertOptions options;
  options.to = parse_format_request("alpaca-jsonl");
  ConvertReport r = convert_file(dir / "g.jsonl", dir / "g.jsonl", options);
  EXPECT_EQ(r.written, 1319);
  EXPECT_EQ(detect_format(dir / "g.jsonl"), (Format{Schema::alpaca, Container::jsonl}));
  EXPECT_EQ(read_all(dir / "g.jsonl").size(), 1319u);
  EXPECT_EQ(count_files(dir.path()), 1u);
}

TEST(FlanCotTsvWriter, RefusesWhatFlanWouldReadBackDifferently) {
  Format tsv{Schema::flancot, Container::tsv};
  Instruction r;
  r.instruction = "line one\nline two";
  r.output = "Because.\nReally. So the answer is 4.";
  EXPECT_EQ(encode_record(r, tsv), "line one\\nline two\t4\tBecause.\\nReally.");
  r.output = "So the answer is 4.";  // no rationale
  EXPECT_EQ(encode_record(r, tsv), "line one\\nline two\t4\t");
  r.output = "4";  // not FLAN's CoT target shape
  EXPECT_THROW(encode_record(r, tsv), seqit::Error);
  r.output = "x So the answer is a\tb.";
  EXPECT_THROW(encode_record(r, tsv), seqit::Error);
  r.output = "x So the answer is 4.";
  r.instruction = "print('a\\nb')";  // a literal backslash-n would come back as a newline
  EXPECT_THROW(encode_record(r, tsv), seqit::Error);
  r.instruction = "q";
  r.system = "sys";
  EXPECT_THROW(encode_record(r, tsv), seqit::Error);
  r.system.clear();
  r.meta.set_string("source", "x");
  EXPECT_THROW(encode_record(r, tsv), seqit::Error);
}

TEST(Writers, MetaFieldsNamedLikeTheFormatsOwnAreRefused) {
  Instruction r;
  r.instruction = "q";
  r.output = "a";
  r.meta.set_string("conversations", "clash");
  EXPECT_THROW(encode_record(r, Format{Schema::sharegpt, Container::jsonl}), seqit::Error);
  EXPECT_NO_THROW(encode_record(r, Format{Schema::alpaca, Container::jsonl}));
  EXPECT_NO_THROW(encode_record(r, Format{Schema::seqit, Container::jsonl}));  // kept under meta
}
