// Chain-of-Instructions (Hayati et al. 2024): composed instructions where each task's output is
// the next task's input (chain-of-instructions/test/coi{2,3}_test.json: {"instruction" (the tasks
// joined by " and then "), "input", "output"}). The gold output marks each step:
//   "Task 1 output and task 2 input: ...  Task 2 output: ..."
// The model gets the instruction and the input and is asked (in our words) to write each task's
// result after the same markers. Scores: ROUGE-L F1 (eval/metrics.h) of the final output (the
// last marked step, or the whole reply when it marks none) against the gold final output, and of
// each chained step k against gold step k; per chain length (coi2, coi3).
#include <fmt/format.h>

#include <cctype>

#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/task_data.h"
#include "eval/tasks.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::eval {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace detail;

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r\n*");
  if (b == std::string_view::npos) return {};
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n*") - b + 1));
}

class ChainOfInstructions final : public Task {
 public:
  explicit ChainOfInstructions(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "chain-of-instructions") / "test";
    for (const char* group : {"coi2", "coi3"}) {
      if (!group_selected(o, group)) continue;
      const fs::path path = dir / (std::string(group) + "_test.json");
      json data;
      try {
        data = json::parse(read_file(path));
      } catch (const json::exception& e) {
        throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string());
      }
      if (!data.is_array()) throw Error("expected a JSON list of records").in_file(path.string());
      int64_t k = 0;
      for (const auto& rec : data) {
        if (o.limit >= 0 && k >= o.limit) break;
        Item item;
        item.group = group;
        item.index = std::to_string(k);
        item.instruction = string_field(rec, "instruction", path, k + 1);
        item.input = string_field(rec, "input", path, k + 1);
        item.output = string_field(rec, "output", path, k + 1);
        item.steps = split_coi_steps(item.output);
        if (item.steps.empty())
          throw Error("the output marks no 'Task k output' step")
              .in_file(path.string())
              .at_record(k + 1)
              .in_field("output");
        items_.push_back(std::move(item));
        ++k;
      }
    }
  }

  std::string name() const override { return "chain_of_instructions"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots", "0"},
            {"prompt", prompt_layout(o_) +
                           "; the instruction, 'Input: ...', and a request to mark each step "
                           "'Task k output and task k+1 input:' / 'Task n output:'"},
            {"decoding", fmt::format("greedy, max {} new tokens", params().max_tokens)},
            {"scoring",
             "ROUGE-L F1 (rouge-score tokens, no stemming) of the final output and of "
             "each step"},
            {"selection", o_.limit >= 0 ? fmt::format("first {} items per chain length", o_.limit)
                                        : std::string("all")}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"rouge_l_final", "ROUGE-L F1, final output"},
            {"rouge_l_step1", "ROUGE-L F1, step 1"},
            {"rouge_l_step2", "ROUGE-L F1, step 2"},
            {"rouge_l_step3", "ROUGE-L F1, step 3"}};
  }
  std::string group_label() const override { return "chain"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].group + "/" + items_[i].index; }

  std::vector<llm::Request> requests(size_t i) const override {
    const Item& item = items_[i];
    const size_t n = item.steps.size();
    std::string format;
    for (size_t k = 1; k < n; ++k)
      format += fmt::format("Task {} output and task {} input: <result>\n", k, k + 1);
    format += fmt::format("Task {} output: <result>", n);
    FewShotPrompt p;
    p.question = fmt::format(
        "{}\n\nInput: {}\n\nThis instruction chains {} tasks: each task's output is the next "
        "task's input. Write every task's result, in order, marked like this:\n{}",
        item.instruction, item.input, n, format);
    p.cue = "Task 1 output";
    return {few_shot_request(p, o_, params())};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Item& item = items_[i];
    std::string reply = responses.at(0).text();
    const std::string raw = reply;
    if (!o_.chat) reply = "Task 1 output" + reply;
    const auto steps = split_coi_steps(reply);
    ItemResult r;
    r.group = item.group;
    r.replies = {raw};
    r.answer_found = !steps.empty();
    const std::string final_output = steps.empty() ? trim(reply) : steps.rbegin()->second;
    r.scores["rouge_l_final"] = rouge_l(final_output, item.steps.rbegin()->second).f1;
    for (const auto& [k, gold] : item.steps) {
      auto it = steps.find(k);
      r.scores[fmt::format("rouge_l_step{}", k)] =
          it == steps.end() ? 0.0 : rouge_l(it->second, gold).f1;
    }
    r.fields["final_output"] = final_output;
    r.fields["steps_marked"] = std::to_string(steps.size());
    return r;
  }

 private:
  struct Item {
    std::string group, index, instruction, input, output;
    std::map<int, std::string> steps;
  };
  llm::SamplingParams params() const { return greedy(o_, 1024); }
  TaskOptions o_;
  std::vector<Item> items_;
};

}  // namespace

// "Task 1 output and task 2 input: A  Task 2 output: B" -> {1: "A", 2: "B"}; case-insensitive;
// the first text for a step number wins.
std::map<int, std::string> split_coi_steps(std::string_view text) {
  struct Marker {
    int step;
    size_t begin, text_start;
  };
  std::vector<Marker> markers;
  auto lower_at = [&](size_t p, std::string_view word) {
    if (p + word.size() > text.size()) return false;
    for (size_t k = 0; k < word.size(); ++k)
      if (std::tolower(static_cast<unsigned char>(text[p + k])) != word[k]) return false;
    return true;
  };
  for (size_t p = 0; p < text.size(); ++p) {
    if (!lower_at(p, "task ")) continue;
    size_t q = p + 5;
    int step = 0;
    size_t digits = 0;
    while (q < text.size() && std::isdigit(static_cast<unsigned char>(text[q])) && digits < 3) {
      step = step * 10 + (text[q++] - '0');
      ++digits;
    }
    if (digits == 0 || !lower_at(q, " output")) continue;
    q += 7;
    // Optional " and task k+1 input".
    if (lower_at(q, " and task ")) {
      size_t z = q + 10;
      while (z < text.size() && std::isdigit(static_cast<unsigned char>(text[z]))) ++z;
      if (lower_at(z, " input")) q = z + 6;
    }
    while (q < text.size() && (text[q] == ' ' || text[q] == '*')) ++q;
    if (q >= text.size() || text[q] != ':') continue;
    markers.push_back({step, p, q + 1});
    p = q;
  }
  std::map<int, std::string> out;
  for (size_t m = 0; m < markers.size(); ++m) {
    const size_t end = m + 1 < markers.size() ? markers[m + 1].begin : text.size();
    out.emplace(markers[m].step,
                trim(text.substr(markers[m].text_start, end - markers[m].text_start)));
  }
  return out;
}

std::unique_ptr<Task> make_chain_of_instructions(const TaskOptions& options) {
  return std::make_unique<ChainOfInstructions>(options);
}

}  // namespace seqit::eval
