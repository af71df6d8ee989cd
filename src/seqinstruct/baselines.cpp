#include "seqinstruct/baselines.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <unordered_map>

#include "llm/in_flight.h"
#include "util/error.h"
#include "util/jsonl_writer.h"
#include "util/random.h"

namespace seqit::seqinstruct {
namespace {
using json = nlohmann::json;

std::string lower_first(const std::string& text) {
  std::string out = text;
  // Lower-case a leading ASCII capital unless the word is an acronym ("UK", "JSON").
  if (out.size() >= 2 && std::isupper(static_cast<unsigned char>(out[0])) &&
      !std::isupper(static_cast<unsigned char>(out[1])))
    out[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[0])));
  else if (out.size() == 1)
    out[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(out[0])));
  return out;
}

std::string clean_text(std::string_view text) {
  size_t a = 0, b = text.size();
  while (a < b && std::isspace(static_cast<unsigned char>(text[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(text[b - 1]))) --b;
  return std::string(text.substr(a, b - a));
}

// Asks every request not yet in the trace (id -> text), many in flight; returns id -> text for
// all of them (the trace's earlier answers included).
std::unordered_map<std::string, std::string> ask_all(
    llm::Backend& backend, const std::vector<std::pair<std::string, llm::Request>>& requests,
    const std::filesystem::path& trace_path, int max_in_flight,
    const std::function<bool()>& interrupted, ManualReport& report) {
  std::unordered_map<std::string, std::string> answers;
  if (std::filesystem::exists(trace_path)) {
    std::ifstream in(trace_path, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("id") && j.contains("text"))
        answers[j["id"].get<std::string>()] = j["text"].get<std::string>();
    }
  }
  ResumableJsonlWriter trace(trace_path, "id");
  std::optional<Error> failure;
  llm::for_each_reply(
      backend, requests.size(),
      [&](size_t i) -> std::optional<llm::Request> {
        if (answers.count(requests[i].first)) return std::nullopt;
        return requests[i].second;
      },
      max_in_flight, interrupted,
      [&](size_t i, llm::Result<llm::Response>&& result) {
        const std::string& id = requests[i].first;
        if (!result.ok()) {
          if (!failure)
            failure = Error(fmt::format("request '{}': {}", id, result.error().describe()));
          return false;
        }
        const llm::Response& response = result.value();
        ++report.requests;
        if (response.cached) ++report.cached;
        const std::string text = clean_text(response.text());
        trace.append(json{{"id", id}, {"text", text}, {"cached", response.cached}});
        answers[id] = text;
        return true;
      });
  if (failure) throw *failure;
  return answers;
}

}  // namespace

ManualKind parse_manual_kind(const std::string& name) {
  if (name == "repeat") return ManualKind::repeat;
  if (name == "paraphrase") return ManualKind::paraphrase;
  if (name == "translate") return ManualKind::translate;
  throw Error(fmt::format("unknown chain kind '{}' (repeat, paraphrase, translate)", name));
}

std::string chain_instruction(ManualKind kind, const std::string& instruction) {
  switch (kind) {
    case ManualKind::repeat:
      return "First repeat the input below, then " + lower_first(instruction);
    case ManualKind::paraphrase:
      return "First paraphrase the input below, then " + lower_first(instruction);
    case ManualKind::translate:
      return "First translate the input below into English, then " + lower_first(instruction);
  }
  return instruction;
}

std::string chain_output(ManualKind kind, const std::string& intermediate,
                         const std::string& output) {
  switch (kind) {
    case ManualKind::repeat:
      return "Repeat:\n" + intermediate + "\nResult: " + output;
    case ManualKind::paraphrase:
      return "Paraphrase:\n" + intermediate + "\nResult: " + output;
    case ManualKind::translate:
      return "Translation into English:\n" + intermediate + "\nResult: " + output;
  }
  return output;
}

std::vector<data::Instruction> build_manual(
    llm::Backend* backend, const std::vector<SourceItem>& items,
    const std::map<std::string, std::vector<SourceItem>>& parallel,
    const std::filesystem::path& trace_path, const ManualOptions& o, ManualReport* report_out) {
  ManualReport local;
  ManualReport& report = report_out ? *report_out : local;
  report = {};
  report.items = static_cast<int64_t>(items.size());
  if (o.share < 0 || o.share > 1) throw Error("--share must be between 0 and 1");
  if (o.kind == ManualKind::translate && o.languages.empty())
    throw Error("translate-then-answer needs at least one language (--languages)");
  for (const auto& [language, rows] : parallel) {
    if (rows.size() != items.size())
      throw Error(
          fmt::format("the parallel data for {} has {} items, the source {}: they must "
                      "align item by item",
                      language, rows.size(), items.size()));
  }
  // The rows with an input, shuffled with the seed; the first share of them become chains, split
  // into one block per language for translation (§2.1).
  std::vector<size_t> with_input;
  for (size_t i = 0; i < items.size(); ++i)
    if (!items[i].input.empty()) with_input.push_back(i);
  SplitMix64 rng(o.seed);
  seeded_shuffle(with_input, rng);
  const size_t chosen = static_cast<size_t>(o.share * static_cast<double>(with_input.size()));
  std::vector<std::string> language_of(items.size());
  std::vector<bool> is_chain(items.size(), false);
  const size_t blocks = o.kind == ManualKind::translate ? o.languages.size() : 1;
  for (size_t k = 0; k < chosen; ++k) {
    const size_t i = with_input[k];
    is_chain[i] = true;
    if (o.kind == ManualKind::translate) language_of[i] = o.languages[k * blocks / chosen];
  }

  // What the generator must write: paraphrases, and translations no parallel file provides.
  std::vector<std::pair<std::string, llm::Request>> requests;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!is_chain[i] || o.kind == ManualKind::repeat) continue;
    if (o.kind == ManualKind::translate && parallel.count(language_of[i])) continue;
    llm::Request request;
    request.kind = llm::RequestKind::chat;
    request.model = o.model;
    request.params = o.params;
    if (o.kind == ManualKind::paraphrase) {
      request.messages = {{"system",
                           "Rewrite the text the user sends in other words, keeping its meaning "
                           "and every detail. Reply with the rewritten text only."},
                          {"user", items[i].input}};
    } else {
      request.messages = {{"system", fmt::format("Translate the text the user sends into {}. Reply "
                                                 "with the translation only.",
                                                 language_of[i])},
                          {"user", items[i].input}};
    }
    requests.emplace_back(fmt::format("{}:{}", items[i].id, language_of[i]), std::move(request));
  }
  std::unordered_map<std::string, std::string> answers;
  if (!requests.empty()) {
    if (!backend)
      throw Error(o.kind == ManualKind::paraphrase
                      ? "paraphrase-then-answer needs a generator (--url or --local)"
                      : "translate-then-answer needs a generator (--url or --local) or parallel "
                        "data for every language (--parallel LANG=FILE)");
    answers = ask_all(*backend, requests, trace_path, o.max_in_flight, o.interrupted, report);
  }
  if (o.interrupted && o.interrupted() && answers.size() < requests.size())
    throw Error(fmt::format("stopped with {} of {} generator answers; rerun to go on",
                            answers.size(), requests.size()));

  std::vector<data::Instruction> out;
  for (size_t i = 0; i < items.size(); ++i) {
    const SourceItem& src = items[i];
    data::Instruction row;
    row.id = src.id == std::to_string(src.index) ? std::string() : src.id;
    row.system = src.system;
    row.meta = src.meta;
    if (!is_chain[i]) {
      row.instruction = src.instruction;
      row.input = src.input;
      row.output = src.output;
      ++report.plain;
      if (src.input.empty()) ++report.no_input;
      out.push_back(std::move(row));
      continue;
    }
    ++report.chains;
    row.instruction = chain_instruction(o.kind, src.instruction);
    switch (o.kind) {
      case ManualKind::repeat:
        row.input = src.input;
        row.output = chain_output(o.kind, src.input, src.output);
        break;
      case ManualKind::paraphrase:
        row.input = src.input;
        row.output = chain_output(o.kind, answers.at(fmt::format("{}:", src.id)), src.output);
        break;
      case ManualKind::translate: {
        const std::string& language = language_of[i];
        auto it = parallel.find(language);
        row.input = it != parallel.end() ? it->second[i].input
                                         : answers.at(fmt::format("{}:{}", src.id, language));
        // The answer is the English original: translate, then answer in English (§2.1).
        row.output = chain_output(o.kind, src.input, src.output);
        ++report.per_language[language];
        break;
      }
    }
    out.push_back(std::move(row));
  }
  return out;
}

std::vector<data::Instruction> token_matched(const std::vector<data::Instruction>& pool,
                                             int64_t target_tokens, double tolerance,
                                             const std::function<int64_t(std::string_view)>& count,
                                             TokenMatchReport* report_out) {
  TokenMatchReport local;
  TokenMatchReport& report = report_out ? *report_out : local;
  report = {};
  report.target_tokens = target_tokens;
  report.pool = static_cast<int64_t>(pool.size());
  if (tolerance < 0 || tolerance >= 1) throw Error("the tolerance must be in [0, 1)");
  const double low = static_cast<double>(target_tokens) * (1 - tolerance);
  const double high = static_cast<double>(target_tokens) * (1 + tolerance);
  std::vector<data::Instruction> out;
  for (const auto& item : pool) {
    if (static_cast<double>(report.tokens) >= low) break;
    const int64_t t = count(item.output);
    if (static_cast<double>(report.tokens + t) > high) continue;  // a shorter one may fit
    report.tokens += t;
    out.push_back(item);
  }
  report.items = static_cast<int64_t>(out.size());
  if (static_cast<double>(report.tokens) < low)
    throw Error(fmt::format(
        "the IT pool holds {} response tokens in {} items; matching the SIT set's {} (within "
        "{:.0f}%) needs {} more: generate more IT data (seqinstruct run --direct-response with a "
        "larger --limit)",
        report.tokens, pool.size(), target_tokens, tolerance * 100,
        static_cast<int64_t>(low) - report.tokens));
  return out;
}

}  // namespace seqit::seqinstruct
