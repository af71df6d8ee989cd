// SIFo (Chen et al. 2024): sequential instruction following in four categories (text
// modification, question answering, mathematics, security rules). Each item holds a context (not
// in math) and instruction_1..n with answer_1..n; every instruction works on the result of the one
// before, so a step is right only when the steps before it were followed.
//
// The model gets the context and all instructions at once, numbered, and is asked for one
// "Answer k: <result>" per instruction (our wording). An answer is the text after its marker up
// to the next marker (it may span lines). A step is right when the answer equals the gold one:
// as numbers for math (parse_number, "$1,000" = 1000), else after the SQuAD normalisation
// (lower-case, no punctuation, no articles, collapsed spaces).
//
// Metrics per item: sample_acc (every step right), instruction_acc (the share of steps right),
// following_depth (steps right before the first wrong one); per category and overall.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/task_data.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace seqit::eval {

namespace {
namespace fs = std::filesystem;
using namespace detail;

struct SifoItem {
  std::string category, id, context;
  std::vector<std::string> instructions, answers;
};

const char* const kCategories[] = {"math", "qa", "security", "text_modification"};

class Sifo final : public Task {
 public:
  explicit Sifo(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "sifo");
    for (const auto& g : o.groups)
      if (std::find(std::begin(kCategories), std::end(kCategories), g) == std::end(kCategories))
        throw Error(
            fmt::format("no SIFo category '{}' (math, qa, security, text_modification)", g));
    for (const char* category : kCategories) {
      if (!group_selected(o, category)) continue;
      const fs::path path = dir / (std::string(category) + ".jsonl");
      for (const auto& row : read_jsonl(path, o.limit)) {
        SifoItem item;
        item.category = category;
        item.id = std::string(category) + "/" + string_field(row.value, "id", path, row.line);
        if (row.value.contains("context"))
          item.context = string_field(row.value, "context", path, row.line);
        for (int k = 1;; ++k) {
          const std::string key = fmt::format("instruction_{}", k);
          if (!row.value.contains(key)) break;
          item.instructions.push_back(string_field(row.value, key, path, row.line));
          item.answers.push_back(
              string_field(row.value, fmt::format("answer_{}", k), path, row.line));
        }
        if (item.instructions.empty())
          throw Error("no instruction_1").in_file(path.string()).at_line(row.line);
        items_.push_back(std::move(item));
      }
    }
  }

  std::string name() const override { return "sifo"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots", "0"},
            {"prompt", prompt_layout(o_) +
                           "; the context and every instruction, numbered, in one message; one "
                           "'Answer k: <result>' line per instruction asked for"},
            {"decoding", fmt::format("greedy, max {} new tokens", params().max_tokens)},
            {"matching", "math: as numbers; otherwise SQuAD-normalised exact match"},
            {"selection", o_.limit >= 0 ? fmt::format("first {} items per category", o_.limit)
                                        : std::string("all")}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"sample_acc", "sample accuracy (all steps right)"},
            {"instruction_acc", "instruction accuracy"},
            {"following_depth", "following depth (steps)"}};
  }
  std::string group_label() const override { return "category"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }

  std::vector<llm::Request> requests(size_t i) const override {
    const SifoItem& item = items_[i];
    std::string text;
    if (!item.context.empty()) text += "Context:\n" + item.context + "\n\n";
    text +=
        "Carry out the following instructions in order. Each one works on the result of the "
        "one before it.\n\n";
    for (size_t k = 0; k < item.instructions.size(); ++k)
      text += fmt::format("{}. {}\n", k + 1, item.instructions[k]);
    text +=
        "\nGive the result of every instruction, in order, each starting on a new line as "
        "'Answer <number>: <result>'";
    std::string example;
    for (size_t k = 0; k < std::min<size_t>(2, item.instructions.size()); ++k)
      example += fmt::format("{}Answer {}: ...", k ? ", " : "", k + 1);
    text += " (" + example + ").";
    FewShotPrompt p;
    p.question = std::move(text);
    p.cue = "Answer 1:";
    // A completion prompt ends with the cue "Answer 1:"; score() puts it back before parsing.
    return {few_shot_request(p, o_, params())};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const SifoItem& item = items_[i];
    std::string reply = responses.at(0).text();
    if (!o_.chat) reply = "Answer 1:" + reply;
    const auto answers = parse_sifo_answers(reply);
    ItemResult r;
    r.group = item.category;
    r.replies = {responses.at(0).text()};
    r.answer_found = !answers.empty();
    int right = 0, depth = 0;
    bool chain = true;
    std::string marks;
    for (size_t k = 0; k < item.answers.size(); ++k) {
      auto it = answers.find(static_cast<int>(k + 1));
      const bool ok =
          it != answers.end() && sifo_answer_matches(item.category, it->second, item.answers[k]);
      right += ok;
      if (ok && chain) ++depth;
      if (!ok) chain = false;
      marks += ok ? '1' : '0';
    }
    const double steps = static_cast<double>(item.answers.size());
    r.scores["sample_acc"] = right == static_cast<int>(item.answers.size()) ? 1 : 0;
    r.scores["instruction_acc"] = right / steps;
    r.scores["following_depth"] = depth;
    r.fields["steps_right"] = marks;
    r.fields["answers_found"] = std::to_string(answers.size());
    return r;
  }

 private:
  llm::SamplingParams params() const { return greedy(o_, 1024); }
  TaskOptions o_;
  std::vector<SifoItem> items_;
};

std::string strip_decoration(std::string s) {
  auto is_space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!s.empty() && (is_space(s.back()) || s.back() == '*')) s.pop_back();
  size_t b = 0;
  while (b < s.size() && (is_space(s[b]) || s[b] == '*')) ++b;
  return s.substr(b);
}

}  // namespace

// "Answer 2: 13" markers at the start of a line (markdown bold and list dashes allowed); the answer
// runs to the next marker. A marker number seen twice keeps the first answer.
std::map<int, std::string> parse_sifo_answers(std::string_view reply) {
  struct Marker {
    int number;
    size_t line_start, text_start;
  };
  std::vector<Marker> markers;
  size_t pos = 0;
  while (pos <= reply.size()) {
    const size_t end = std::min(reply.find('\n', pos), reply.size());
    size_t p = pos;
    while (p < end && (reply[p] == ' ' || reply[p] == '\t' || reply[p] == '*' || reply[p] == '-' ||
                       reply[p] == '#'))
      ++p;
    static constexpr std::string_view kWord = "answer";
    if (end - p > kWord.size()) {
      bool match = true;
      for (size_t k = 0; k < kWord.size(); ++k)
        match &= std::tolower(static_cast<unsigned char>(reply[p + k])) == kWord[k];
      size_t q = p + kWord.size();
      while (match && q < end && reply[q] == ' ') ++q;
      int number = 0;
      size_t digits = 0;
      while (match && q < end && std::isdigit(static_cast<unsigned char>(reply[q])) && digits < 3) {
        number = number * 10 + (reply[q] - '0');
        ++q;
        ++digits;
      }
      while (match && q < end && (reply[q] == '*' || reply[q] == ' ')) ++q;
      if (match && digits > 0 && q < end && reply[q] == ':') {
        ++q;
        while (q < end && reply[q] == '*') ++q;
        markers.push_back({number, pos, q});
      }
    }
    if (end == reply.size()) break;
    pos = end + 1;
  }
  std::map<int, std::string> out;
  for (size_t m = 0; m < markers.size(); ++m) {
    const size_t stop = m + 1 < markers.size() ? markers[m + 1].line_start : reply.size();
    std::string text(reply.substr(markers[m].text_start, stop - markers[m].text_start));
    out.emplace(markers[m].number, strip_decoration(std::move(text)));
  }
  return out;
}

bool sifo_answer_matches(std::string_view category, std::string_view answer,
                         std::string_view gold) {
  if (category == "math") {
    auto clean = [](std::string_view s) {
      std::string out;
      for (char c : s)
        if (c != '%' && c != ' ') out += c;
      while (!out.empty() && out.back() == '.') out.pop_back();
      return out;
    };
    const auto g = parse_number(clean(gold));
    if (g) {
      // "13", "$1,000", or a short sentence whose last number is the result.
      auto a = parse_number(clean(answer));
      if (!a) a = extract_last_number(answer);
      return a && numbers_equal(*a, *g);
    }
  }
  return normalize_squad_answer(answer) == normalize_squad_answer(gold);
}

std::unique_ptr<Task> make_sifo(const TaskOptions& options) {
  return std::make_unique<Sifo>(options);
}

}  // namespace seqit::eval
