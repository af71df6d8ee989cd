// Round trips. The real files were all written by Python's json module (or are FLAN's TSV), so
// reading one and writing it back in its own format with the same layout must give the file's exact
// bytes; so must going through seqit JSONL or another format and back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "data/convert.h"
#include "data/reader.h"
#include "data/writer.h"
#include "data_testing.h"
#include "testing.h"

using namespace seqit::data;
using seqit::testing::shared_data;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
// How each real file was laid out by Python: ensure_ascii, indent, and a final newline or not.
struct RealFile {
  std::string path;
  const char* format;
  WriteOptions layout;
};

WriteOptions layout(bool ascii, int indent, bool final_newline) {
  WriteOptions w;
  w.ascii = ascii;
  w.indent = indent;
  w.final_newline = final_newline;
  return w;
}

const std::vector<RealFile>& real_files() {
  static const std::vector<RealFile> files = {
      {"train/alpaca/alpaca_5000.json", "alpaca-json", layout(true, -1, false)},
      {"eval/seqeval/seqEval.json", "seqeval-json", layout(false, 2, false)},
      {"eval/gsm8k/test.jsonl", "gsm8k-jsonl", layout(true, -1, true)},
      {"eval/sifo/math.jsonl", "sifo-jsonl", layout(true, -1, true)},
      {"eval/sifo/security.jsonl", "sifo-jsonl", layout(true, -1, true)},
      {"eval/sifo/text_modification.jsonl", "sifo-jsonl", layout(false, -1, false)},
      {"eval/chain-of-instructions/test/coi2_test.json", "alpaca-json", layout(false, -1, false)},
      {"eval/chain-of-instructions/test/coi3_test.json", "alpaca-json", layout(false, -1, false)},
      {"eval/chain-of-instructions/test/eng2fra_summarize_then_translate200.json", "alpaca-json",
       layout(false, -1, false)},
      {"eval/chain-of-instructions/test/spa2eng_summarize_then_translate200.json.json",
       "alpaca-json", layout(false, -1, false)},
      {"eval/chain-of-instructions/train/coi_2.json", "alpaca-json", layout(false, -1, false)},
      {"eval/chain-of-instructions/train/coi_3.json", "alpaca-json", layout(true, -1, false)},
      {"train/flan_cot/aqua_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/creak_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/ecqa_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/gsm8k_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/qasc_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/sensemaking_train.tsv", "flancot-tsv", layout(false, -1, true)},
      {"train/flan_cot/strategyqa_train.tsv", "flancot-tsv", layout(false, -1, true)},
  };
  return files;
}

ConvertReport convert(const std::filesystem::path& in, const std::filesystem::path& out,
                      const char* to, WriteOptions write = {}) {
  ConvertOptions options;
  options.to = parse_format_request(to);
  options.write = write;
  return convert_file(in, out, options);
}
}  // namespace

TEST(RoundTrip, EveryRealFileIsRewrittenByteForByte) {
  TempDir dir;
  for (const auto& f : real_files()) {
    auto out = dir / "same";
    ConvertReport r = convert(shared_data(f.path), out, f.format, f.layout);
    EXPECT_EQ(r.bad.count, 0) << f.path;
    EXPECT_TRUE(slurp(out) == slurp(shared_data(f.path)))
        << f.path << " differs after a round trip";
  }
}

TEST(RoundTrip, ThroughSeqitJsonlEveryRealFileComesBackByteForByte) {
  TempDir dir;
  for (const auto& f : real_files()) {
    ConvertReport to_seqit = convert(shared_data(f.path), dir / "mid.jsonl", "seqit");
    EXPECT_EQ(to_seqit.to, (Format{Schema::seqit, Container::jsonl}));
    ConvertReport back = convert(dir / "mid.jsonl", dir / "back", f.format, f.layout);
    EXPECT_EQ(back.from, (Format{Schema::seqit, Container::jsonl})) << f.path;
    EXPECT_EQ(back.written, to_seqit.written) << f.path;
    EXPECT_TRUE(slurp(dir / "back") == slurp(shared_data(f.path)))
        << f.path << " differs after seqit JSONL";
  }
}

// SIFo qa.jsonl puts "context" last where the other SIFo files put it second; seqit writes SIFo
// with the context first, so this file comes back with the same content in another key order.
TEST(RoundTrip, SifoQaComesBackWithTheSameContent) {
  TempDir dir;
  convert(shared_data("eval/sifo/qa.jsonl"), dir / "mid.jsonl", "openai");
  convert(dir / "mid.jsonl", dir / "qa.jsonl", "sifo", layout(true, -1, false));
  std::string original = slurp(shared_data("eval/sifo/qa.jsonl"));
  std::string again = slurp(dir / "qa.jsonl");
  auto lines = [](const std::string& text) {
    std::vector<nlohmann::json> out;  // unordered objects: compares content, not key order
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      out.push_back(
          nlohmann::json::parse(text.substr(start, end == std::string::npos ? end : end - start)));
      start = end == std::string::npos ? text.size() : end + 1;
    }
    return out;
  };
  auto a = lines(original), b = lines(again);
  ASSERT_EQ(a.size(), 200u);
  EXPECT_EQ(a, b);
}

// Between formats: every record must come back equal (ids, systems, instruction/input split, meta,
// and thus the bytes) after a trip through another format.
TEST(RoundTrip, AcrossFormatsRecordsComeBackUnchanged) {
  TempDir dir;
  struct Trip {
    const char* source;
    const char* via;
  };
  const std::vector<Trip> trips = {
      {"train/alpaca/alpaca_5000.json", "sharegpt-jsonl"},
      {"train/alpaca/alpaca_5000.json", "openai-json"},
      {"train/alpaca/alpaca_5000.json", "flancot-jsonl"},
      {"train/alpaca/alpaca_5000.json", "lima-jsonl"},
      {"eval/chain-of-instructions/test/eng2fra_summarize_then_translate200.json", "sharegpt-json"},
      {"eval/seqeval/seqEval.json", "openai-jsonl"},
      {"eval/seqeval/seqEval.json", "alpaca-jsonl"},
      {"eval/gsm8k/test.jsonl", "alpaca-json"},
      {"eval/gsm8k/test.jsonl", "sharegpt-jsonl"},
      {"eval/sifo/security.jsonl", "sharegpt-jsonl"},
      {"eval/sifo/math.jsonl", "openai-jsonl"},
      {"train/flan_cot/strategyqa_train.tsv", "alpaca-jsonl"},
      {"train/flan_cot/strategyqa_train.tsv", "openai-jsonl"},
  };
  for (const auto& t : trips) {
    std::vector<Record> original = read_all(shared_data(t.source));
    Format source_format = detect_format(shared_data(t.source));
    convert(shared_data(t.source), dir / "via", t.via);
    convert(dir / "via", dir / "back", format_name(source_format).c_str());
    std::vector<Record> again = read_all(dir / "back", test::from(format_name(source_format)));
    ASSERT_EQ(again.size(), original.size()) << t.source << " via " << t.via;
    size_t differing = 0;
    for (size_t i = 0; i < original.size(); ++i) differing += !(original[i] == again[i]);
    EXPECT_EQ(differing, 0u) << t.source << " via " << t.via;
  }
}

TEST(RoundTrip, AlpacaThroughShareGptKeepsTheInputSplitInTheExtraInputField) {
  TempDir dir;
  convert(shared_data("train/alpaca/alpaca_5000.json"), dir / "s.jsonl", "sharegpt");
  std::string first_line = slurp(dir / "s.jsonl").substr(0, slurp(dir / "s.jsonl").find('\n'));
  EXPECT_EQ(
      first_line,
      R"({"conversations": [{"from": "human", "value": "Are the two sentences below grammatically correct? Output yes or no. Sentence 1: I am going to the store.\nSentence 2: I goes to the store."}, {"from": "gpt", "value": "No"}], "input": "Sentence 1: I am going to the store.\nSentence 2: I goes to the store."})");
}

TEST(Layout, PythonJsonEscapingAndSeparators) {
  Instruction r;
  r.instruction = "caf\u00e9 \U0001F389 \x1f\x7f \"q\" \\ \t\n/";
  r.output = "x";
  Format alpaca{Schema::alpaca, Container::jsonl};
  WriteOptions ascii;
  ascii.ascii = true;
  // Expected strings: python3 -c 'import json; print(json.dumps({...}, ensure_ascii=...))'
  EXPECT_EQ(
      encode_record(r, alpaca, ascii),
      R"({"instruction": "caf\u00e9 \ud83c\udf89 \u001f\u007f \"q\" \\ \t\n/", "input": "", "output": "x"})");
  EXPECT_EQ(encode_record(r, alpaca),
            "{\"instruction\": \"caf\u00e9 \U0001F389 \\u001f\x7f \\\"q\\\" \\\\ \\t\\n/\", "
            "\"input\": \"\", "
            "\"output\": \"x\"}");
  r.instruction = std::string("bad \xff byte");
  EXPECT_THROW(encode_record(r, alpaca), seqit::Error);
}

TEST(Layout, JsonArraysEmptyOneLineAndIndented) {
  TempDir dir;
  Format json{Schema::alpaca, Container::json};
  {
    RecordFileWriter w(dir / "empty.json", json);
    w.commit();
  }
  EXPECT_EQ(slurp(dir / "empty.json"), "[]\n");
  Instruction a;
  a.instruction = "a";
  a.meta.object()["tags"] = {"x", "y"};
  Instruction b;
  b.instruction = "b";
  {
    RecordFileWriter w(dir / "one.json", json);
    w.write(a);
    w.write(b);
    w.commit();
  }
  EXPECT_EQ(
      slurp(dir / "one.json"),
      "[{\"instruction\": \"a\", \"input\": \"\", \"output\": \"\", \"tags\": [\"x\", \"y\"]}, "
      "{\"instruction\": \"b\", \"input\": \"\", \"output\": \"\"}]\n");
  WriteOptions indented;
  indented.indent = 2;
  indented.final_newline = false;
  {
    RecordFileWriter w(dir / "ind.json", json, indented);
    w.write(a);
    w.commit();
  }
  // json.dumps([...], indent=2)
  EXPECT_EQ(slurp(dir / "ind.json"),
            "[\n  {\n    \"instruction\": \"a\",\n    \"input\": \"\",\n    \"output\": \"\",\n    "
            "\"tags\": [\n"
            "      \"x\",\n      \"y\"\n    ]\n  }\n]");
}
