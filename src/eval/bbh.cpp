// BIG-Bench Hard, 3-shot chain of thought (SIT_SPEC §5): the 27 tasks of bbh/bbh/<task>.json
// ({"examples": [{"input", "target"}]}), each with its own three worked exemplars from
// bbh/cot-prompts/<task>.txt (a canary line, "-----", the task description, then "Q: ..." / "A:
// Let's think step by step. ... So the answer is X." blocks). The prompt is the description, the
// exemplars and "Q: <input>"; a completion prompt ends with "A:".
//
// The answer is BBH's `the answer is (.*?)\.` (extract_bbh_answer), compared with the target
// exactly after trimming; a target written "(B)" also accepts "B". Exact match per task and the
// average over tasks (macro).
#include <fmt/format.h>

#include <algorithm>

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

struct CotPrompt {
  std::string description;
  std::vector<Shot> shots;
};

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

CotPrompt read_cot_prompt(const fs::path& path, int shots) {
  const std::string text = read_file(path);
  const size_t dashes = text.find("-----\n");
  if (dashes == std::string::npos)
    throw Error("no '-----' line after the canary").in_file(path.string());
  const std::string body = text.substr(dashes + 6);
  CotPrompt out;
  size_t q = body.find("Q: ");
  if (q == std::string::npos) throw Error("no 'Q: ' exemplar").in_file(path.string());
  out.description = trim(body.substr(0, q));
  while (q != std::string::npos && static_cast<int>(out.shots.size()) < shots) {
    const size_t a = body.find("\nA: ", q);
    if (a == std::string::npos)
      throw Error(fmt::format("exemplar {} has no 'A: '", out.shots.size() + 1))
          .in_file(path.string());
    const size_t next = body.find("\n\nQ: ", a);
    out.shots.push_back(
        {"Q: " + trim(body.substr(q + 3, a - q - 3)),
         trim(body.substr(a + 4, next == std::string::npos ? std::string::npos : next - a - 4))});
    q = next == std::string::npos ? next : next + 2;
  }
  if (static_cast<int>(out.shots.size()) < shots)
    throw Error(fmt::format("{} exemplars asked for, {} found", shots, out.shots.size()))
        .in_file(path.string());
  return out;
}

class Bbh final : public Task {
 public:
  explicit Bbh(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "bbh");
    shots_ = o.shots >= 0 ? o.shots : 3;
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir / "bbh"))
      if (entry.path().extension() == ".json") names.push_back(entry.path().stem().string());
    std::sort(names.begin(), names.end());
    for (const auto& g : o.groups)
      if (std::find(names.begin(), names.end(), g) == names.end())
        throw Error(
            fmt::format("no BBH task '{}' (e.g. boolean_expressions, date_understanding)", g))
            .in_file((dir / "bbh").string());
    for (const auto& name : names) {
      if (!group_selected(o, name)) continue;
      prompts_[name] = read_cot_prompt(dir / "cot-prompts" / (name + ".txt"), shots_);
      const fs::path path = dir / "bbh" / (name + ".json");
      json data;
      try {
        data = json::parse(read_file(path));
      } catch (const json::exception& e) {
        throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string());
      }
      if (!data.contains("examples") || !data["examples"].is_array())
        throw Error("expected {\"examples\": [...]}").in_file(path.string()).in_field("examples");
      int64_t k = 0;
      for (const auto& ex : data["examples"]) {
        if (o.limit >= 0 && k >= o.limit) break;
        items_.push_back({name, std::to_string(k), string_field(ex, "input", path, k + 1),
                          string_field(ex, "target", path, k + 1)});
        ++k;
      }
    }
  }

  std::string name() const override { return "bbh"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots", fmt::format("{} (each task's cot-prompts/<task>.txt)", shots_)},
            {"prompt", prompt_layout(o_) + "; the task description, 'Q: ...' / 'A: ...'"},
            {"decoding", fmt::format("greedy, max {} new tokens{}", params().max_tokens,
                                     o_.chat ? "" : ", stop at the next 'Q:'")},
            {"extraction",
             "the text after the last 'the answer is', up to the sentence's end; "
             "exact match with the target ('(B)' also accepts 'B')"},
            {"selection", o_.limit >= 0 ? fmt::format("first {} examples per task", o_.limit)
                                        : std::string("all")}};
  }
  std::vector<MetricSpec> main_metrics() const override { return {{"em", "exact match"}}; }
  std::string group_label() const override { return "task"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].task + "/" + items_[i].index; }

  FewShotPrompt prompt(size_t i) const {
    const Item& item = items_[i];
    const CotPrompt& cot = prompts_.at(item.task);
    FewShotPrompt p;
    p.header = cot.description;
    p.shots = cot.shots;
    p.question = "Q: " + item.input;
    p.cue = "A:";
    return p;
  }
  std::vector<llm::Request> requests(size_t i) const override {
    return {few_shot_request(prompt(i), o_, params())};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Item& item = items_[i];
    const std::string& reply = responses.at(0).text();
    const auto answer = extract_bbh_answer(reply);
    ItemResult r;
    r.group = item.task;
    r.replies = {reply};
    r.answer_found = answer.has_value();
    r.scores["em"] = answer && bbh_answer_matches(*answer, item.target) ? 1 : 0;
    r.fields["gold"] = item.target;
    r.fields["answer"] = answer.value_or("");
    if (o_.max_prompt_chars > 0)
      r.scores["shots_used"] = static_cast<double>(fit_prompt(prompt(i), o_).shots.size());
    return r;
  }

 private:
  struct Item {
    std::string task, index, input, target;
  };
  llm::SamplingParams params() const { return greedy(o_, 512, {"\n\nQ:", "\nQ:"}); }
  TaskOptions o_;
  int shots_ = 3;
  std::map<std::string, CotPrompt> prompts_;
  std::vector<Item> items_;
};

}  // namespace

bool bbh_answer_matches(std::string_view answer, std::string_view target) {
  auto clean = [](std::string_view s) {
    std::string out = trim(std::string(s));
    while (!out.empty() && out.back() == '.') out.pop_back();
    return out;
  };
  const std::string a = clean(answer), t = clean(target);
  if (a == t) return true;
  // "(B)" targets: a bare letter, or "(B) the option's text".
  if (t.size() == 3 && t.front() == '(' && t.back() == ')')
    return a == t.substr(1, 1) || a.starts_with(t + " ");
  return false;
}

std::unique_ptr<Task> make_bbh(const TaskOptions& options) {
  return std::make_unique<Bbh>(options);
}

}  // namespace seqit::eval
