// XQuAD translate-then-answer (SIT_SPEC §2.2, §4.5): a SQuAD-style passage and question in one of
// the XQuAD languages; the model is asked (in our words) to translate the question into English
// and answer in English, ending with "Answer: <answer>". The reference is the English gold of the
// same question id (xquad.en.json; XQuAD is parallel across languages).
//
// Scoring as the reference's eval_xquad.py, without its empty-prediction quirk: lower-case the
// reply; find the earliest of the cues "result:", "answer:", "answer is", "result is". With a cue,
// the prediction is the text after it; without one, the whole reply. The item is correct when the
// prediction is non-empty and a gold answer contains it or it contains a gold answer (lower-cased;
// an empty prediction is wrong, where the reference counted it right). Metrics per language:
// follow (a cue was found), acc (correct), acc_with_follow (both); and SQuAD F1 of the prediction.
#include <fmt/format.h>

#include <algorithm>
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

const char* const kXquadLanguages[] = {"ar", "de", "el", "en", "es", "hi",
                                       "ro", "ru", "th", "tr", "vi", "zh"};

struct Question {
  std::string id, context, question;
  std::vector<std::string> answers;
};

std::vector<Question> read_xquad(const fs::path& path, int64_t limit) {
  json data;
  try {
    data = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string());
  }
  std::vector<Question> out;
  try {
    for (const auto& article : data.at("data"))
      for (const auto& paragraph : article.at("paragraphs"))
        for (const auto& qa : paragraph.at("qas")) {
          if (limit >= 0 && static_cast<int64_t>(out.size()) >= limit) return out;
          Question q;
          q.id = qa.at("id").get<std::string>();
          q.context = paragraph.at("context").get<std::string>();
          q.question = qa.at("question").get<std::string>();
          for (const auto& a : qa.at("answers"))
            q.answers.push_back(a.at("text").get<std::string>());
          out.push_back(std::move(q));
        }
  } catch (const json::exception& e) {
    throw Error(fmt::format("not SQuAD v1.1 (data/paragraphs/qas): {}", e.what()))
        .in_file(path.string());
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

class Xquad final : public Task {
 public:
  explicit Xquad(const TaskOptions& o) : o_(o) {
    const fs::path dir = task_dir(o, "xquad");
    for (const auto& q : read_xquad(dir / "xquad.en.json", -1)) english_[q.id] = q.answers;
    for (const auto& g : o.groups)
      if (std::find(std::begin(kXquadLanguages), std::end(kXquadLanguages), g) ==
          std::end(kXquadLanguages))
        throw Error(fmt::format("no XQuAD language '{}' (ar de el en es hi ro ru th tr vi zh)", g));
    for (const char* lang : kXquadLanguages) {
      if (!group_selected(o, lang)) continue;
      const fs::path path = dir / fmt::format("xquad.{}.json", lang);
      for (auto& q : read_xquad(path, o.limit)) {
        if (!english_.count(q.id))
          throw Error(
              fmt::format("question '{}' has no English counterpart in xquad.en.json", q.id))
              .in_file(path.string());
        items_.push_back({lang, std::move(q)});
      }
    }
  }

  std::string name() const override { return "xquad"; }
  std::map<std::string, std::string> settings() const override {
    return {{"shots", "0"},
            {"prompt", prompt_layout(o_) +
                           "; translate the question into English, then answer in English, "
                           "ending with 'Answer: <answer>'"},
            {"decoding", fmt::format("greedy, max {} new tokens", params().max_tokens)},
            {"reference", "the English gold answers of the same question id"},
            {"scoring",
             "the text after the first cue (result:, answer:, answer is, result is) "
             "or the whole reply; correct when non-empty and contained in a gold "
             "answer or containing one (lower-cased; the reference's empty-prediction "
             "quirk is not kept)"},
            {"selection", o_.limit >= 0 ? fmt::format("first {} questions per language", o_.limit)
                                        : std::string("all")}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"follow", "follow rate"},
            {"acc", "accuracy"},
            {"acc_with_follow", "accuracy with follow"},
            {"f1", "SQuAD F1"}};
  }
  std::string group_label() const override { return "language"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].lang + "/" + items_[i].q.id; }

  std::vector<llm::Request> requests(size_t i) const override {
    const Question& q = items_[i].q;
    FewShotPrompt p;
    p.question = fmt::format(
        "First translate the question into English. Then answer it in English with a short "
        "span from the passage, and end with a line 'Answer: <answer>'.\nInput: Passage: {}\n"
        "Question: {}",
        q.context, q.question);
    p.cue = "Translation:";
    return {few_shot_request(p, o_, params())};
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Item& item = items_[i];
    const std::string& reply = responses.at(0).text();
    const auto& golds = english_.at(item.q.id);
    const XquadReading reading = read_xquad_reply(reply, golds);
    ItemResult r;
    r.group = item.lang;
    r.replies = {reply};
    r.answer_found = reading.followed;
    r.scores["follow"] = reading.followed ? 1 : 0;
    r.scores["acc"] = reading.correct ? 1 : 0;
    r.scores["acc_with_follow"] = reading.followed && reading.correct ? 1 : 0;
    r.scores["f1"] = squad_f1(reading.prediction, golds);
    r.fields["prediction"] = reading.prediction;
    r.fields["gold"] = golds.empty() ? "" : golds.front();
    return r;
  }

 private:
  struct Item {
    std::string lang;
    Question q;
  };
  llm::SamplingParams params() const { return greedy(o_, 512); }
  TaskOptions o_;
  std::map<std::string, std::vector<std::string>> english_;
  std::vector<Item> items_;
};

}  // namespace

XquadReading read_xquad_reply(std::string_view reply, const std::vector<std::string>& golds) {
  const std::string text = lower(reply);
  size_t best = std::string::npos, cue_length = 0;
  for (std::string_view cue : {"result:", "answer:", "answer is", "result is"}) {
    const size_t p = text.find(cue);
    if (p != std::string::npos && (best == std::string::npos || p < best)) {
      best = p;
      cue_length = cue.size();
    }
  }
  XquadReading r;
  r.followed = best != std::string::npos;
  std::string prediction = r.followed ? text.substr(best + cue_length) : text;
  const auto b = prediction.find_first_not_of(" \t\r\n:*");
  prediction = b == std::string::npos ? "" : prediction.substr(b);
  while (!prediction.empty() && std::isspace(static_cast<unsigned char>(prediction.back())))
    prediction.pop_back();
  r.prediction = prediction;
  if (!prediction.empty())
    for (const auto& gold : golds) {
      const std::string g = lower(gold);
      if (!g.empty() &&
          (g.find(prediction) != std::string::npos || prediction.find(g) != std::string::npos))
        r.correct = true;
    }
  return r;
}

std::unique_ptr<Task> make_xquad(const TaskOptions& options) {
  return std::make_unique<Xquad>(options);
}

}  // namespace seqit::eval
