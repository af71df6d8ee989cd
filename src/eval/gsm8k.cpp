// GSM8K, 8-shot chain of thought (SIT_SPEC §5): the exemplars are the first K problems of
// gsm8k/train.jsonl, their worked answers with the calculator annotations (<<...>>) removed, the
// lines joined and "#### N" written as "The answer is N."; the items come from test.jsonl.
// Scored two ways side by side: strict (the number after "The answer is" / "####") and flexible
// (the last number in the reply), each compared with the gold number.
//
// MGSM (mgsm/mgsm_<lang>.tsv: question TAB number; the first 250 GSM8K test problems in 11
// languages), 8-shot, two modes as two tasks (SIT_SPEC §5):
//   mgsm_cot_en     think step by step in English, then answer;
//   mgsm_trans_cot  first translate the question into English, then think, then answer.
// Exemplars (each answer ending "The Answer is: N"; trans-cot: after "Translation of the question
// into English:" and the English question). The data holds no exemplar split (the reference's
// exemplars.py is not shipped), so by default (`translated`) the last K problems of each language
// are held out as its exemplars: the question in that language (as the reference's prompts have
// it) and the English worked answer of the same problem from gsm8k/test.jsonl, 250 - K problems
// scored. `english`: the first K GSM8K training problems in English for every language, all 250
// scored. Exact match per language (strict and flexible) and the average over languages.
#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>

#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/task_data.h"
#include "eval/tasks.h"
#include "util/error.h"

namespace seqit::eval {
namespace {
namespace fs = std::filesystem;
using namespace detail;

struct Problem {
  std::string question;
  std::string rationale;  // the worked answer, one line, ending "The answer is N."
  double gold = 0;
  std::string gold_text;
};

// "Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.\n...\n#### 18"
// A numeric answer scored both ways (GSM8K and MGSM): strict (after an explicit cue) and flexible
// (the last number in the reply), with what each extracted.
void score_number(const std::string& reply, double gold, const std::string& gold_text,
                  ItemResult& r) {
  const auto strict = extract_cued_number(reply);
  const auto flexible = extract_last_number(reply);
  r.scores["strict_em"] = strict && numbers_equal(*strict, gold) ? 1 : 0;
  r.scores["flexible_em"] = flexible && numbers_equal(*flexible, gold) ? 1 : 0;
  r.answer_found = flexible.has_value();
  r.fields["gold"] = gold_text;
  r.fields["strict"] = strict ? fmt::format("{}", *strict) : "";
  r.fields["flexible"] = flexible ? fmt::format("{}", *flexible) : "";
}

Problem parse_problem(const JsonLine& row, const fs::path& path) {
  Problem p;
  p.question = string_field(row.value, "question", path, row.line);
  const std::string answer = string_field(row.value, "answer", path, row.line);
  const size_t hashes = answer.rfind("####");
  if (hashes == std::string::npos)
    throw Error("the answer has no '#### N' line")
        .in_file(path.string())
        .at_line(row.line)
        .in_field("answer");
  std::string gold = answer.substr(hashes + 4);
  std::string digits;
  for (char c : gold)
    if (c != ',' && c != ' ' && c != '\n') digits += c;
  const auto value = parse_number(digits);
  if (!value)
    throw Error(fmt::format("the gold answer '{}' is not a number", digits))
        .in_file(path.string())
        .at_line(row.line)
        .in_field("answer");
  p.gold = *value;
  p.gold_text = digits;
  std::string steps;
  const std::string body = answer.substr(0, hashes);
  for (size_t i = 0; i < body.size(); ++i) {
    if (body.compare(i, 2, "<<") == 0) {
      const size_t end = body.find(">>", i);
      if (end != std::string::npos) {
        i = end + 1;
        continue;
      }
    }
    steps += body[i] == '\n' ? ' ' : body[i];
  }
  while (!steps.empty() && steps.back() == ' ') steps.pop_back();
  p.rationale = (steps.empty() ? std::string() : steps + " ") + "The answer is " + digits + ".";
  return p;
}

class Gsm8k final : public Task {
 public:
  explicit Gsm8k(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "gsm8k");
    shots_ = o.shots >= 0 ? o.shots : 8;
    for (const auto& row : read_jsonl(dir / "train.jsonl", shots_))
      exemplars_.push_back(parse_problem(row, dir / "train.jsonl"));
    if (static_cast<int>(exemplars_.size()) < shots_)
      throw Error(fmt::format("{} exemplars asked for, {} found", shots_, exemplars_.size()))
          .in_file((dir / "train.jsonl").string());
    for (const auto& row : read_jsonl(dir / "test.jsonl", o.limit))
      items_.push_back(parse_problem(row, dir / "test.jsonl"));
  }

  std::string name() const override { return "gsm8k"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots", fmt::format("{} (the first {} problems of gsm8k/train.jsonl, calculator "
                                  "annotations removed, ending 'The answer is N.')",
                                  shots_, shots_)},
            {"prompt", prompt_layout(o_) + "; header 'Answer the following questions.'; "
                                           "'Question: ...' / 'Answer: ...'"},
            {"decoding", fmt::format("greedy, max {} new tokens{}", params().max_tokens,
                                     o_.chat ? "" : ", stops '\\n\\n' and 'Question:'")},
            {"extraction",
             "strict: the number after the last 'The answer is' or '####'; "
             "flexible: the last number in the reply"}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"strict_em", "exact match (strict)"}, {"flexible_em", "exact match (flexible)"}};
  }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return std::to_string(i); }

  FewShotPrompt prompt(size_t i) const {
    FewShotPrompt p;
    p.header = "Answer the following questions.";
    for (const Problem& e : exemplars_) p.shots.push_back({"Question: " + e.question, e.rationale});
    p.question = "Question: " + items_[i].question;
    p.cue = "Answer:";
    return p;
  }
  std::vector<llm::Request> requests(size_t i) const override {
    return {few_shot_request(prompt(i), o_, params())};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Problem& p = items_[i];
    const std::string& reply = responses.at(0).text();
    ItemResult r;
    r.replies = {reply};
    score_number(reply, p.gold, p.gold_text, r);
    if (o_.max_prompt_chars > 0)
      r.scores["shots_used"] = static_cast<double>(fit_prompt(prompt(i), o_).shots.size());
    return r;
  }

 private:
  llm::SamplingParams params() const { return greedy(o_, 512, {"\n\n", "Question:"}); }
  TaskOptions o_;
  int shots_ = 8;
  std::vector<Problem> exemplars_, items_;
};

const char* const kMgsmLanguages[] = {"bn", "de", "en", "es", "fr", "ja",
                                      "ru", "sw", "te", "th", "zh"};

class Mgsm final : public Task {
 public:
  Mgsm(const TaskOptions& o, bool translate) : o_(o), translate_(translate) {
    const fs::path gsm = task_dir(o, "gsm8k"), dir = task_dir(o, "mgsm");
    shots_ = o.shots >= 0 ? o.shots : 8;
    if (o.mgsm_exemplars != "translated" && o.mgsm_exemplars != "english")
      throw Error(
          fmt::format("MGSM exemplars '{}': expected translated or english", o.mgsm_exemplars));
    translated_ = o.mgsm_exemplars == "translated";
    // Translated exemplars: MGSM's problems are GSM8K's first 250 test problems in order, so
    // the English question and worked answer of MGSM line n are line n of gsm8k/test.jsonl.
    std::vector<Problem> english;
    if (translated_) {
      for (const auto& row : read_jsonl(gsm / "test.jsonl", kMgsmProblems))
        english.push_back(parse_problem(row, gsm / "test.jsonl"));
    } else {
      for (const auto& row : read_jsonl(gsm / "train.jsonl", shots_))
        english.push_back(parse_problem(row, gsm / "train.jsonl"));
      if (static_cast<int>(english.size()) < shots_)
        throw Error(fmt::format("{} exemplars asked for, {} found", shots_, english.size()))
            .in_file((gsm / "train.jsonl").string());
    }
    for (const auto& g : o.groups)
      if (std::find(std::begin(kMgsmLanguages), std::end(kMgsmLanguages), g) ==
          std::end(kMgsmLanguages))
        throw Error(fmt::format("no MGSM language '{}' (bn de en es fr ja ru sw te th zh)", g));
    for (const char* lang : kMgsmLanguages) {
      if (!group_selected(o, lang)) continue;
      const fs::path path = dir / fmt::format("mgsm_{}.tsv", lang);
      const std::vector<Item> rows = read_language(path, lang);
      size_t scored = rows.size();
      std::vector<Exemplar>& shots = exemplars_[lang];
      if (translated_) {
        if (rows.size() <= static_cast<size_t>(shots_))
          throw Error(
              fmt::format("{} exemplars asked for, the file has {} problems", shots_, rows.size()))
              .in_file(path.string());
        scored = rows.size() - shots_;
        for (size_t k = scored; k < rows.size(); ++k) {
          if (k >= english.size() || !numbers_equal(english[k].gold, rows[k].gold))
            throw Error(fmt::format("problem {} does not match line {} of gsm8k/test.jsonl (answer "
                                    "{} vs {}): translated exemplars need MGSM's problems in "
                                    "GSM8K's test order (or --mgsm-exemplars english)",
                                    k + 1, k + 1, rows[k].gold_text,
                                    k < english.size() ? english[k].gold_text : "none"))
                .in_file(path.string())
                .at_line(rows[k].line);
          shots.push_back(
              {rows[k].question, english[k].question, english[k].rationale, rows[k].gold_text});
        }
      } else {
        for (const Problem& e : english)
          shots.push_back({e.question, e.question, e.rationale, e.gold_text});
      }
      const size_t keep = o.limit < 0 ? scored : std::min(scored, static_cast<size_t>(o.limit));
      items_.insert(items_.end(), rows.begin(), rows.begin() + static_cast<ptrdiff_t>(keep));
    }
  }

  std::string name() const override { return translate_ ? "mgsm_trans_cot" : "mgsm_cot_en"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots",
             translated_
                 ? fmt::format("{} (the last {} MGSM problems of each language, held out from "
                               "scoring: the question in the item's language, the worked answer "
                               "in English from the same GSM8K test problem)",
                               shots_, shots_)
                 : fmt::format("{} (the first {} GSM8K training problems, in English for every "
                               "language)",
                               shots_, shots_)},
            {"mode", translate_ ? "trans-cot: translate into English, think, answer"
                                : "cot-en: think step by step in English, answer"},
            {"prompt", prompt_layout(o_)},
            {"decoding", fmt::format("greedy, max {} new tokens", params().max_tokens)},
            {"extraction",
             "strict: the number after the last 'The Answer is'; flexible: the "
             "last number in the reply (the reference's)"}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"flexible_em", "exact match (flexible)"}, {"strict_em", "exact match (strict)"}};
  }
  std::string group_label() const override { return "language"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].lang + "/" + items_[i].index; }

  std::vector<llm::Request> requests(size_t i) const override {
    return {few_shot_request(prompt(i), o_, params())};
  }
  FewShotPrompt prompt(size_t i) const {
    FewShotPrompt p;
    p.header = translate_
                   ? "First, translate the question into English. Then think step by step about "
                     "it in English. Finally, answer it, ending with 'The Answer is: <number>'."
                   : "First, think step by step about the question in English. Then answer it, "
                     "ending with 'The Answer is: <number>'.";
    for (const Exemplar& e : exemplars_.at(items_[i].lang)) {
      std::string rationale = e.rationale.substr(0, e.rationale.rfind("The answer is"));
      while (!rationale.empty() && rationale.back() == ' ') rationale.pop_back();
      std::string answer = translate_ ? "Translation of the question into English:\n" +
                                            e.english_question + "\n" + rationale
                                      : rationale;
      answer += "\nThe Answer is: " + e.gold_text;
      p.shots.push_back({"Question: " + e.question, std::move(answer)});
    }
    p.question = "Question: " + items_[i].question;
    p.cue = "Answer:";
    return p;
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Item& item = items_[i];
    const std::string& reply = responses.at(0).text();
    ItemResult r;
    r.group = item.lang;
    r.replies = {reply};
    score_number(reply, item.gold, item.gold_text, r);
    if (o_.max_prompt_chars > 0)
      r.scores["shots_used"] = static_cast<double>(fit_prompt(prompt(i), o_).shots.size());
    return r;
  }

 private:
  struct Item {
    std::string lang, index, question;
    double gold = 0;
    std::string gold_text;
    int64_t line = 0;
  };
  struct Exemplar {
    std::string question;          // in the item's language (english: in English)
    std::string english_question;  // the trans-cot exemplar's translation
    std::string rationale;         // English, ending "The answer is N."
    std::string gold_text;
  };
  static constexpr int64_t kMgsmProblems = 250;

  // Every problem of one language's file, in order ("question<TAB>number" per line).
  static std::vector<Item> read_language(const fs::path& path, const std::string& lang) {
    std::ifstream in(path);
    if (!in) throw Error("cannot read the data file").in_file(path.string());
    std::vector<Item> rows;
    std::string line;
    int64_t number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (line.empty()) continue;
      const size_t tab = line.rfind('\t');
      std::string gold = tab == std::string::npos ? "" : line.substr(tab + 1);
      while (!gold.empty() && (gold.back() == '\r' || gold.back() == ' ')) gold.pop_back();
      std::string digits;
      for (char c : gold)
        if (c != ',') digits += c;
      const auto value = parse_number(digits);
      if (!value)
        throw Error(fmt::format("expected 'question<TAB>number', the answer is '{}'", gold))
            .in_file(path.string())
            .at_line(number);
      rows.push_back(
          {lang, std::to_string(rows.size()), line.substr(0, tab), *value, digits, number});
    }
    return rows;
  }
  // Exemplars end with a blank line in completion prompts; the next "Question:" stops a reply.
  llm::SamplingParams params() const { return greedy(o_, 1024, {"\n\n", "Question:"}); }
  TaskOptions o_;
  bool translate_ = false;
  int shots_ = 8;
  bool translated_ = true;
  std::map<std::string, std::vector<Exemplar>> exemplars_;  // per language
  std::vector<Item> items_;
};

}  // namespace

std::unique_ptr<Task> make_mgsm_cot_en(const TaskOptions& options) {
  return std::make_unique<Mgsm>(options, false);
}
std::unique_ptr<Task> make_mgsm_trans_cot(const TaskOptions& options) {
  return std::make_unique<Mgsm>(options, true);
}

std::unique_ptr<Task> make_gsm8k(const TaskOptions& options) {
  return std::make_unique<Gsm8k>(options);
}

}  // namespace seqit::eval
