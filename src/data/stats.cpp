#include "data/stats.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "util/utf8.h"

namespace seqit::data {

LengthSummary summarize_lengths(std::vector<int64_t> values) {
  LengthSummary s;
  s.count = static_cast<int64_t>(values.size());
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (int64_t v : values) sum += static_cast<double>(v);
  auto quantile = [&](double q) {
    double pos = q * static_cast<double>(values.size() - 1);
    auto lo = static_cast<size_t>(std::floor(pos));
    size_t hi = std::min(lo + 1, values.size() - 1);
    double frac = pos - static_cast<double>(lo);
    return static_cast<double>(values[lo]) +
           (static_cast<double>(values[hi]) - static_cast<double>(values[lo])) * frac;
  };
  s.min = static_cast<double>(values.front());
  s.max = static_cast<double>(values.back());
  s.mean = sum / static_cast<double>(values.size());
  s.median = quantile(0.5);
  s.p90 = quantile(0.9);
  s.p99 = quantile(0.99);
  return s;
}

int64_t count_chars(std::string_view text) {
  return static_cast<int64_t>(utf8::count_code_points(text));
}

namespace {
bool is_python_space(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes the code point at `i` and advances `i` (invalid bytes count as one non-space each).
char32_t next_code_point(std::string_view s, size_t& i) {
  auto c = static_cast<unsigned char>(s[i]);
  size_t len = utf8::sequence_length(c);
  if (len == 1 || i + len > s.size()) {
    ++i;
    return c;
  }
  char32_t cp = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

// 128 bits from two unrelated 64-bit hashes (libstdc++'s murmur-based std::hash and FNV-1a):
// duplicates are found without keeping every record's text in memory.
struct Hash128 {
  uint64_t a, b;
  bool operator==(const Hash128&) const = default;
};
struct Hash128Hasher {
  size_t operator()(const Hash128& h) const { return h.a ^ (h.b * 0x9E3779B97F4A7C15ull); }
};
Hash128 hash128(std::string_view s) {
  uint64_t fnv = 0xcbf29ce484222325ull;
  for (unsigned char c : s) fnv = (fnv ^ c) * 0x100000001b3ull;
  return {std::hash<std::string_view>{}(s), fnv};
}

// Length-prefixed pieces, so that different splits of the same text give different keys.
void put(std::string& key, std::string_view piece) {
  key += std::to_string(piece.size());
  key.push_back(':');
  key.append(piece);
}
}  // namespace

int64_t count_words(std::string_view text) {
  int64_t words = 0;
  bool in_word = false;
  for (size_t i = 0; i < text.size();) {
    bool space = is_python_space(next_code_point(text, i));
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

DatasetStats compute_stats(const std::filesystem::path& path, const StatsOptions& options) {
  DatasetStats stats;
  std::vector<int64_t> prompt_chars, prompt_words, response_chars, response_words, prompt_tokens,
      response_tokens;
  std::unordered_set<Hash128, Hash128Hasher> seen_records, seen_prompts;
  ReadReport report = read_records(path, options.read, [&](Record&& record, const ErrorContext&) {
    ++stats.records;
    std::string record_key, prompt_key;
    // The user side and the assistant side of the record, possibly over several turns.
    std::vector<std::string_view> prompts, responses;
    std::string joined_prompt;
    int64_t user_turns = 0;
    if (const auto* r = std::get_if<Instruction>(&record)) {
      ++stats.instructions;
      stats.messages += (r->system.empty() ? 0 : 1) + 1 + (r->output.empty() ? 0 : 1);
      if (r->input.empty()) ++stats.empty_input;
      joined_prompt = user_prompt(*r);
      prompts.push_back(joined_prompt);
      if (!r->output.empty()) responses.push_back(r->output);
      user_turns = 1;
      record_key = "I";
      for (const std::string* f : {&r->system, &r->instruction, &r->input, &r->output})
        put(record_key, *f);
      prompt_key = "P";
      put(prompt_key, r->system);
      put(prompt_key, joined_prompt);
    } else {
      const auto& c = std::get<Conversation>(record);
      ++stats.conversations;
      stats.messages += static_cast<int64_t>(c.messages.size());
      record_key = "C";
      prompt_key = "P";
      for (const auto& m : c.messages) {
        put(record_key, m.role);
        put(record_key, m.content);
        if (m.role == kRoleUser) {
          prompts.push_back(m.content);
          ++user_turns;
        } else if (m.role == kRoleAssistant) {
          responses.push_back(m.content);
        }
        if (m.role != kRoleAssistant) {
          put(prompt_key, m.role);
          put(prompt_key, m.content);
        }
      }
    }
    if (user_turns > 1) ++stats.multi_turn;
    if (!seen_records.insert(hash128(record_key)).second) ++stats.exact_duplicates;
    if (!seen_prompts.insert(hash128(prompt_key)).second) ++stats.duplicate_prompts;

    int64_t pc = 0, pw = 0, rc = 0, rw = 0, pt = 0, rt = 0;
    for (auto p : prompts) {
      pc += count_chars(p);
      pw += count_words(p);
      if (options.count_tokens) pt += options.count_tokens(p);
    }
    for (auto r : responses) {
      rc += count_chars(r);
      rw += count_words(r);
      if (options.count_tokens) rt += options.count_tokens(r);
    }
    if (pc == 0) ++stats.empty_prompt;
    if (rc == 0) ++stats.empty_response;
    prompt_chars.push_back(pc);
    prompt_words.push_back(pw);
    response_chars.push_back(rc);
    response_words.push_back(rw);
    if (options.count_tokens) {
      prompt_tokens.push_back(pt);
      response_tokens.push_back(rt);
    }
  });
  stats.format = report.format;
  stats.bad = std::move(report.bad);
  stats.prompt_chars = summarize_lengths(std::move(prompt_chars));
  stats.prompt_words = summarize_lengths(std::move(prompt_words));
  stats.response_chars = summarize_lengths(std::move(response_chars));
  stats.response_words = summarize_lengths(std::move(response_words));
  if (options.count_tokens) {
    stats.prompt_tokens = summarize_lengths(std::move(prompt_tokens));
    stats.response_tokens = summarize_lengths(std::move(response_tokens));
    stats.tokenizer = options.tokenizer_name;
  }
  return stats;
}

namespace {
nlohmann::ordered_json summary_json(const LengthSummary& s) {
  return {{"min", s.min}, {"mean", s.mean}, {"median", s.median},
          {"p90", s.p90}, {"p99", s.p99},   {"max", s.max}};
}

std::string summary_row(std::string_view name, const LengthSummary& s) {
  return fmt::format("  {:<16} {:>8} {:>10.1f} {:>8.1f} {:>8.1f} {:>8.1f} {:>8}\n", name, s.min,
                     s.mean, s.median, s.p90, s.p99, s.max);
}
}  // namespace

std::string stats_to_json(const DatasetStats& s) {
  nlohmann::ordered_json j;
  j["format"] = format_name(s.format);
  j["records"] = s.records;
  j["instructions"] = s.instructions;
  j["conversations"] = s.conversations;
  j["messages"] = s.messages;
  j["multi_turn"] = s.multi_turn;
  j["empty_input"] = s.empty_input;
  j["empty_prompt"] = s.empty_prompt;
  j["empty_response"] = s.empty_response;
  j["exact_duplicates"] = s.exact_duplicates;
  j["duplicate_prompts"] = s.duplicate_prompts;
  nlohmann::ordered_json lengths;
  lengths["prompt_chars"] = summary_json(s.prompt_chars);
  lengths["prompt_words"] = summary_json(s.prompt_words);
  lengths["response_chars"] = summary_json(s.response_chars);
  lengths["response_words"] = summary_json(s.response_words);
  if (s.prompt_tokens) {
    lengths["prompt_tokens"] = summary_json(*s.prompt_tokens);
    lengths["response_tokens"] = summary_json(*s.response_tokens);
  }
  j["lengths"] = std::move(lengths);
  j["tokenizer"] = s.prompt_tokens ? nlohmann::ordered_json(s.tokenizer) : nlohmann::ordered_json();
  nlohmann::ordered_json bad;
  bad["count"] = s.bad.count;
  bad["first"] = nlohmann::ordered_json::array();
  for (const auto& e : s.bad.first) bad["first"].push_back(e.what());
  j["bad_records"] = std::move(bad);
  return j.dump(2, ' ', false, nlohmann::ordered_json::error_handler_t::replace) + "\n";
}

std::string stats_to_text(const DatasetStats& s) {
  auto pct = [&](int64_t n) {
    return s.records > 0 ? 100.0 * static_cast<double>(n) / static_cast<double>(s.records) : 0.0;
  };
  std::string out;
  out += fmt::format("format             {}\n", format_name(s.format));
  out += fmt::format("records            {} ({} instructions, {} conversations, {} messages)\n",
                     s.records, s.instructions, s.conversations, s.messages);
  out += fmt::format("multi-turn         {} ({:.1f}%)\n", s.multi_turn, pct(s.multi_turn));
  out += fmt::format("empty input        {} ({:.1f}%)\n", s.empty_input, pct(s.empty_input));
  out += fmt::format("empty prompt       {} ({:.1f}%)\n", s.empty_prompt, pct(s.empty_prompt));
  out += fmt::format("empty response     {} ({:.1f}%)\n", s.empty_response, pct(s.empty_response));
  out +=
      fmt::format("exact duplicates   {} ({:.1f}%)\n", s.exact_duplicates, pct(s.exact_duplicates));
  out += fmt::format("duplicate prompts  {} ({:.1f}%)\n", s.duplicate_prompts,
                     pct(s.duplicate_prompts));
  out += fmt::format("\n  {:<16} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}\n", "length", "min", "mean",
                     "median", "p90", "p99", "max");
  out += summary_row("prompt chars", s.prompt_chars);
  out += summary_row("prompt words", s.prompt_words);
  if (s.prompt_tokens) out += summary_row("prompt tokens", *s.prompt_tokens);
  out += summary_row("response chars", s.response_chars);
  out += summary_row("response words", s.response_words);
  if (s.response_tokens) out += summary_row("response tokens", *s.response_tokens);
  if (s.prompt_tokens) {
    out += fmt::format("\ntokens counted with {}\n", s.tokenizer);
  } else {
    out += "\n(no token counts: no tokenizer given)\n";
  }
  if (s.bad.count > 0) out += "\n" + s.bad.summary() + "\n";
  return out;
}

}  // namespace seqit::data
