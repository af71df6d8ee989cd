// `seqit data stats`: what is in a dataset (counts, empties, duplicates, length distributions).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data/format.h"
#include "data/reader.h"

namespace seqit::data {

// Distribution of one length over the records. Percentiles interpolate linearly between the two
// nearest ranks (numpy's default, Python's statistics.quantiles(method="inclusive")).
struct LengthSummary {
  int64_t count = 0;
  double min = 0, mean = 0, median = 0, p90 = 0, p99 = 0, max = 0;
};
LengthSummary summarize_lengths(std::vector<int64_t> values);

// Unicode code points (what Python's len(str) counts).
int64_t count_chars(std::string_view text);
// Whitespace-separated words, with Python's str.split() idea of whitespace (ASCII whitespace,
// U+001C..U+001F, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
int64_t count_words(std::string_view text);

struct DatasetStats {
  Format format;
  int64_t records = 0;
  int64_t instructions = 0, conversations = 0;  // records of each kind
  int64_t messages = 0;           // turns, counting an Instruction as its conversation
  int64_t multi_turn = 0;         // records with more than one user turn
  int64_t empty_input = 0;        // Instruction records whose `input` is empty (Alpaca's notion)
  int64_t empty_prompt = 0;       // records whose user text is empty
  int64_t empty_response = 0;     // records with no or only empty assistant text
  int64_t exact_duplicates = 0;   // records equal to an earlier one in everything but id and meta
  int64_t duplicate_prompts = 0;  // records whose system + user text equals an earlier record's
  // Prompt = the user text (an Instruction's instruction + " " + input; a conversation's user turns
  // summed); response = the assistant text (output; assistant turns summed).
  LengthSummary prompt_chars, prompt_words, response_chars, response_words;
  // Token counts, when a token counter was given.
  std::optional<LengthSummary> prompt_tokens, response_tokens;
  std::string tokenizer;  // what counted the tokens
  BadRecords bad;
};

struct StatsOptions {
  ReadOptions read;
  // Counts the tokens of a text (no special tokens). The CLI passes a tokenizer through it (data/
  // does not depend on tokenizer/); empty = no token statistics.
  std::function<int64_t(std::string_view)> count_tokens;
  std::string tokenizer_name;
};

DatasetStats compute_stats(const std::filesystem::path& path, const StatsOptions& options = {});

// Pretty JSON (for --json) and an aligned plain-text table.
std::string stats_to_json(const DatasetStats& stats);
std::string stats_to_text(const DatasetStats& stats);

}  // namespace seqit::data
