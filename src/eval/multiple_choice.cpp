// Multiple-choice tasks scored by log-likelihood (RequestKind::score; no generation, no chat
// template: the backend scores prompt + continuation as raw text).
//
// MMLU (Hendrycks's data/{dev,test}/<subject>_{dev,test}.csv), 5-shot: the header "The following
// are multiple choice questions (with answers) about <subject>.", the first K dev questions with
// their answers, then the question; the continuations " A".." D" are scored and the most likely
// one is the answer. Accuracy per subject, micro (over all questions) and macro (over subjects).
//
// ARC-Challenge (ARC-Challenge-{Train,Test}.jsonl), as lm-evaluation-harness scores it:
// "Question: <stem>\nAnswer:" and each choice's text " <text>" as a continuation; acc takes the
// highest log-probability, acc_norm the highest per byte of the continuation. Exemplars are the
// first K training questions with their correct text.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "eval/task_data.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace seqit::eval {
namespace {
namespace fs = std::filesystem;
using namespace detail;

size_t argmax(const std::vector<double>& v) {
  return static_cast<size_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

std::string join_logprobs(const std::vector<double>& v) {
  std::string s;
  for (size_t k = 0; k < v.size(); ++k) s += fmt::format("{}{:.4f}", k ? " " : "", v[k]);
  return s;
}

// ---- MMLU

struct MmluQuestion {
  std::string subject, question;
  std::vector<std::string> options;  // A..D
  char answer = 'A';
};

std::vector<MmluQuestion> read_mmlu_csv(const fs::path& path, const std::string& subject,
                                        int64_t limit) {
  std::vector<MmluQuestion> out;
  const auto rows = read_csv(path);
  for (size_t r = 0; r < rows.size() && (limit < 0 || static_cast<int64_t>(out.size()) < limit);
       ++r) {
    const auto& row = rows[r];
    if (row.size() != 6)
      throw Error(
          fmt::format("expected 6 columns (question, A, B, C, D, answer), found {}", row.size()))
          .in_file(path.string())
          .at_record(static_cast<int64_t>(r) + 1);
    MmluQuestion q;
    q.subject = subject;
    q.question = row[0];
    q.options.assign(row.begin() + 1, row.begin() + 5);
    if (row[5].size() != 1 || row[5][0] < 'A' || row[5][0] > 'D')
      throw Error(fmt::format("the answer '{}' is not one of A, B, C, D", row[5]))
          .in_file(path.string())
          .at_record(static_cast<int64_t>(r) + 1)
          .in_field("answer");
    q.answer = row[5][0];
    out.push_back(std::move(q));
  }
  return out;
}

std::string mmlu_block(const MmluQuestion& q) {
  std::string s = q.question + "\n";
  for (size_t k = 0; k < q.options.size(); ++k)
    s += fmt::format("{}. {}\n", static_cast<char>('A' + k), q.options[k]);
  return s + "Answer:";
}

std::string subject_words(std::string s) {
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

class Mmlu final : public Task {
 public:
  explicit Mmlu(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "mmlu") / "data";
    shots_ = o.shots >= 0 ? o.shots : 5;
    std::vector<std::string> subjects;
    for (const auto& entry : fs::directory_iterator(dir / "test")) {
      const std::string file = entry.path().filename().string();
      const std::string suffix = "_test.csv";
      if (file.size() > suffix.size() && file.ends_with(suffix))
        subjects.push_back(file.substr(0, file.size() - suffix.size()));
    }
    std::sort(subjects.begin(), subjects.end());
    for (const auto& g : o.groups)
      if (std::find(subjects.begin(), subjects.end(), g) == subjects.end())
        throw Error(fmt::format("no MMLU subject '{}' (--groups takes names like "
                                "abstract_algebra, high_school_physics)",
                                g))
            .in_file((dir / "test").string());
    std::erase_if(subjects, [&](const std::string& s) { return !group_selected(o, s); });
    if (subjects.empty())
      throw Error("no <subject>_test.csv files").in_file((dir / "test").string());
    for (const auto& subject : subjects) {
      auto dev = read_mmlu_csv(dir / "dev" / (subject + "_dev.csv"), subject, shots_);
      if (static_cast<int>(dev.size()) < shots_)
        throw Error(fmt::format("{} exemplars asked for, {} found", shots_, dev.size()))
            .in_file((dir / "dev" / (subject + "_dev.csv")).string());
      shots_by_subject_[subject] = std::move(dev);
      for (auto& q : read_mmlu_csv(dir / "test" / (subject + "_test.csv"), subject, o.limit))
        items_.push_back(std::move(q));
      counts_[subject] = 0;
    }
    for (size_t i = 0; i < items_.size(); ++i)
      ids_.push_back(items_[i].subject + "/" + std::to_string(counts_[items_[i].subject]++));
  }

  std::string name() const override { return "mmlu"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots",
             fmt::format("{} (the first {} questions of each subject's dev set)", shots_, shots_)},
            {"prompt",
             "raw text (log-likelihood requests take no chat template): 'The following are "
             "multiple choice questions (with answers) about <subject>.', exemplars, the "
             "question with options A-D, 'Answer:'"},
            {"scoring",
             "log-likelihood of the continuations ' A', ' B', ' C', ' D'; the most "
             "likely is the answer"},
            {"selection", o_.limit >= 0 ? fmt::format("first {} questions per subject", o_.limit)
                                        : std::string("all")}};
  }
  std::vector<MetricSpec> main_metrics() const override { return {{"acc", "accuracy"}}; }
  std::string group_label() const override { return "subject"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return ids_[i]; }

  // The prompt with the first `shots` exemplars of the subject.
  std::string prompt(size_t i, size_t shots) const {
    const MmluQuestion& q = items_[i];
    std::string prompt =
        fmt::format("The following are multiple choice questions (with answers) about {}.\n\n",
                    subject_words(q.subject));
    const auto& exemplars = shots_by_subject_.at(q.subject);
    for (size_t k = 0; k < std::min(shots, exemplars.size()); ++k)
      prompt += mmlu_block(exemplars[k]) + " " + std::string(1, exemplars[k].answer) + "\n\n";
    return prompt + mmlu_block(q);
  }
  // Exemplars kept under --max-prompt-chars (the continuation " X" counted too).
  size_t shots_kept(size_t i) const {
    size_t k = static_cast<size_t>(shots_);
    if (o_.max_prompt_chars > 0)
      while (k > 0 && prompt(i, k).size() + 2 > static_cast<size_t>(o_.max_prompt_chars)) --k;
    return k;
  }

  std::vector<llm::Request> requests(size_t i) const override {
    llm::Request r;
    r.kind = llm::RequestKind::score;
    r.model = o_.model;
    r.prompt = prompt(i, shots_kept(i));
    r.continuations = {" A", " B", " C", " D"};
    return {r};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const MmluQuestion& q = items_[i];
    const auto& lp = responses.at(0).logprobs;
    if (lp.size() != 4)
      throw Error(fmt::format("mmlu item '{}': the backend scored {} continuations, not 4", ids_[i],
                              lp.size()));
    const char chosen = static_cast<char>('A' + argmax(lp));
    ItemResult r;
    r.group = q.subject;
    r.scores["acc"] = chosen == q.answer ? 1 : 0;
    r.fields["gold"] = std::string(1, q.answer);
    r.fields["chosen"] = std::string(1, chosen);
    r.replies = {join_logprobs(lp)};
    if (o_.max_prompt_chars > 0) r.scores["shots_used"] = static_cast<double>(shots_kept(i));
    return r;
  }

 private:
  TaskOptions o_;
  int shots_ = 5;
  std::map<std::string, std::vector<MmluQuestion>> shots_by_subject_;
  std::map<std::string, int> counts_;
  std::vector<MmluQuestion> items_;
  std::vector<std::string> ids_;
};

// ---- ARC-Challenge

struct ArcQuestion {
  std::string id, stem;
  std::vector<std::string> texts, labels;
  size_t answer = 0;
};

std::vector<ArcQuestion> read_arc(const fs::path& path, int64_t limit) {
  std::vector<ArcQuestion> out;
  for (const auto& row : read_jsonl(path, limit)) {
    ArcQuestion q;
    try {
      q.id = row.value.at("id").get<std::string>();
      q.stem = row.value.at("question").at("stem").get<std::string>();
      for (const auto& c : row.value.at("question").at("choices")) {
        q.texts.push_back(c.at("text").get<std::string>());
        q.labels.push_back(c.at("label").get<std::string>());
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(fmt::format("not an ARC question: {}", e.what()))
          .in_file(path.string())
          .at_line(row.line);
    }
    const std::string key = string_field(row.value, "answerKey", path, row.line);
    auto it = std::find(q.labels.begin(), q.labels.end(), key);
    if (it == q.labels.end() || q.texts.empty())
      throw Error(fmt::format("the answer key '{}' names no choice", key))
          .in_file(path.string())
          .at_line(row.line)
          .in_field("answerKey");
    q.answer = static_cast<size_t>(it - q.labels.begin());
    out.push_back(std::move(q));
  }
  return out;
}

class ArcChallenge final : public Task {
 public:
  explicit ArcChallenge(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "arc");
    shots_ = o.shots >= 0 ? o.shots : 25;
    exemplars_ = read_arc(dir / "ARC-Challenge-Train.jsonl", shots_);
    items_ = read_arc(dir / "ARC-Challenge-Test.jsonl", o.limit);
  }
  std::string name() const override { return "arc_challenge"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots",
             fmt::format("{} (the first {} questions of ARC-Challenge-Train)", shots_, shots_)},
            {"prompt",
             "raw text (log-likelihood requests take no chat template): 'Question: "
             "<stem>\\nAnswer: <correct text>' per exemplar, then the question"},
            {"scoring",
             "log-likelihood of each choice's text; acc: the most likely, acc_norm: "
             "the most likely per byte"}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"acc", "accuracy"}, {"acc_norm", "accuracy (length-normalised)"}};
  }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }
  std::string prompt(size_t i, size_t shots) const {
    std::string prompt;
    for (size_t k = 0; k < std::min(shots, exemplars_.size()); ++k)
      prompt += "Question: " + exemplars_[k].stem +
                "\nAnswer: " + exemplars_[k].texts[exemplars_[k].answer] + "\n\n";
    return prompt + "Question: " + items_[i].stem + "\nAnswer:";
  }
  // Exemplars kept under --max-prompt-chars (the longest continuation counted too).
  size_t shots_kept(size_t i) const {
    size_t k = exemplars_.size();
    if (o_.max_prompt_chars > 0) {
      size_t longest = 0;
      for (const auto& t : items_[i].texts) longest = std::max(longest, t.size() + 1);
      while (k > 0 && prompt(i, k).size() + longest > static_cast<size_t>(o_.max_prompt_chars)) --k;
    }
    return k;
  }

  std::vector<llm::Request> requests(size_t i) const override {
    llm::Request r;
    r.kind = llm::RequestKind::score;
    r.model = o_.model;
    r.prompt = prompt(i, shots_kept(i));
    for (const auto& t : items_[i].texts) r.continuations.push_back(" " + t);
    return {r};
  }
  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const ArcQuestion& q = items_[i];
    const auto& lp = responses.at(0).logprobs;
    if (lp.size() != q.texts.size())
      throw Error(fmt::format("arc item '{}': the backend scored {} continuations, not {}", q.id,
                              lp.size(), q.texts.size()));
    std::vector<double> norm(lp.size());
    for (size_t k = 0; k < lp.size(); ++k)
      norm[k] = lp[k] / static_cast<double>(std::max<size_t>(1, q.texts[k].size() + 1));
    ItemResult r;
    r.scores["acc"] = argmax(lp) == q.answer ? 1 : 0;
    r.scores["acc_norm"] = argmax(norm) == q.answer ? 1 : 0;
    r.fields["gold"] = q.labels[q.answer];
    r.fields["chosen"] = q.labels[argmax(lp)];
    r.fields["chosen_norm"] = q.labels[argmax(norm)];
    r.replies = {join_logprobs(lp)};
    if (o_.max_prompt_chars > 0) r.scores["shots_used"] = static_cast<double>(shots_kept(i));
    return r;
  }

 private:
  TaskOptions o_;
  int shots_ = 25;
  std::vector<ArcQuestion> exemplars_, items_;
};

}  // namespace

std::unique_ptr<Task> make_mmlu(const TaskOptions& options) {
  return std::make_unique<Mmlu>(options);
}
std::unique_ptr<Task> make_arc_challenge(const TaskOptions& options) {
  return std::make_unique<ArcChallenge>(options);
}

}  // namespace seqit::eval
