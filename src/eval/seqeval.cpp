#include "eval/seqeval.h"

#include <fmt/format.h>

#include <optional>

#include "eval/judge.h"
#include "eval/metrics.h"
#include "eval/prompting.h"
#include "eval/task_data.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::eval {
namespace {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace detail;

struct SeqItem {
  std::string instruction;
  int iteration = 0;
};

std::vector<SeqItem> read_seqeval(const TaskOptions& o) {
  const fs::path path = task_dir(o, "seqeval") / "seqEval.json";
  json data;
  try {
    data = json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string());
  }
  if (!data.is_array()) throw Error("expected a JSON list").in_file(path.string());
  std::vector<SeqItem> out;
  for (size_t k = 0; k < data.size(); ++k) {
    if (o.limit >= 0 && static_cast<int64_t>(out.size()) >= o.limit) break;
    SeqItem item;
    item.instruction = string_field(data[k], "instruction", path, static_cast<int64_t>(k) + 1);
    if (!data[k].contains("iteration") || !data[k]["iteration"].is_number_integer())
      throw Error("expected an integer")
          .in_file(path.string())
          .at_record(static_cast<int64_t>(k) + 1)
          .in_field("iteration");
    item.iteration = data[k]["iteration"].get<int>();
    out.push_back(std::move(item));
  }
  return out;
}

std::string strip_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  size_t b = 0;
  while (b < s.size() && s[b] == '\n') ++b;
  return s.substr(b);
}

class SeqEvalResponses final : public Task {
 public:
  explicit SeqEvalResponses(const TaskOptions& o) : o_(o), items_(read_seqeval(o)) {}
  std::string name() const override { return "seqeval_responses"; }
  std::map<std::string, std::string> settings() const override {
    return {{"prompt", "the instruction as the only user message (chat template)"},
            {"decoding", fmt::format("greedy, max {} new tokens; the reply stripped of leading "
                                     "and trailing newlines",
                                     params().max_tokens)}};
  }
  std::vector<MetricSpec> main_metrics() const override { return {}; }
  std::string group_label() const override { return "iteration"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return std::to_string(i); }
  std::vector<llm::Request> requests(size_t i) const override {
    llm::Request r;
    r.kind = llm::RequestKind::chat;
    r.model = o_.model;
    r.messages = {{"user", items_[i].instruction}};
    r.params = params();
    return {r};
  }
  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    ItemResult r;
    r.group = std::to_string(items_[i].iteration);
    r.replies = {strip_newlines(responses.at(0).text())};
    r.answer_found = !r.replies[0].empty();
    r.scores["response_chars"] = static_cast<double>(r.replies[0].size());
    return r;
  }

 private:
  llm::SamplingParams params() const { return greedy(o_, 2048); }
  TaskOptions o_;
  std::vector<SeqItem> items_;
};

// The four judgements of an item, in request order.
enum Judgement : size_t { kFollowing = 0, kQuality = 1, kModelFirst = 2, kReferenceFirst = 3 };

class SeqEvalJudge final : public Task {
 public:
  SeqEvalJudge(const TaskOptions& o, const std::vector<std::optional<std::string>>& responses,
               const SeqEvalJudgeOptions& judge)
      : o_(o), judge_(judge) {
    const auto all = read_seqeval(o);
    const fs::path ref_path =
        task_dir(o, "alpaca_eval") / fmt::format("{}_model_outputs.json", judge.reference);
    json refs;
    try {
      refs = json::parse(read_file(ref_path));
    } catch (const json::exception& e) {
      throw Error(fmt::format("not JSON: {}", e.what())).in_file(ref_path.string());
    }
    if (!refs.is_array() || refs.size() < all.size())
      throw Error(
          fmt::format("expected a list of at least {} outputs (AlpacaEval order)", all.size()))
          .in_file(ref_path.string());
    for (size_t i = 0; i < all.size() && i < responses.size(); ++i) {
      if (!responses[i]) continue;
      items_.push_back({std::to_string(i), all[i].instruction, all[i].iteration, *responses[i],
                        string_field(refs[i], "output", ref_path, static_cast<int64_t>(i) + 1)});
    }
  }

  std::string name() const override { return "seqeval"; }
  std::map<std::string, std::string> settings() const override {
    return {{"judge",
             judge_.judge_backend +
                 (judge_.judge_model.empty() ? std::string() : ", model " + judge_.judge_model)},
            {"judge decoding",
             fmt::format("greedy, max {} tokens; an unparsable reply is asked once more with a "
                         "new seed at temperature 0.7, then counted as unparsable",
                         judge_.max_tokens)},
            {"reference", fmt::format("alpaca_eval/{}_model_outputs.json (the AlpacaEval "
                                      "instruction's output, same index)",
                                      judge_.reference)},
            {"pairwise",
             "judged in both orders; a win needs both orders, anything else that "
             "parses is a tie"},
            {"weighted win rate",
             judge_.logprobs ? "AlpacaEval 2's: per order the judge's probabilities of 1, 2 and "
                               "TIE at its answer token (top 5 log-probabilities, renormalised), "
                               "the model's chance averaged over both orders"
                             : "off (--judge-logprobs)"},
            {"length control",
             "AlpacaEval-2-style logistic fit on tanh(characters of response "
             "- reference / sd); LC win rate at zero difference"}};
  }
  std::vector<MetricSpec> main_metrics() const override {
    return {{"followed", "following rate"},
            {"quality", "quality (1-5)"},
            {"preference", "win rate vs reference (ties half)"},
            {"preference_weighted",
             "win rate weighted by the judge's probabilities (AlpacaEval 2; with logprobs)"},
            {"following_unparsable", "following: unparsable"},
            {"quality_unparsable", "quality: unparsable"},
            {"pairwise_unparsable", "pairwise: unparsable"}};
  }
  std::string group_label() const override { return "iteration"; }
  size_t size() const override { return items_.size(); }
  std::string item_id(size_t i) const override { return items_[i].id; }

  std::vector<llm::Request> requests(size_t i) const override {
    std::vector<llm::Request> out;
    for (size_t k = 0; k < 4; ++k) out.push_back(judge_request(i, static_cast<Judgement>(k), 0));
    return out;
  }

  std::vector<llm::Request> follow_up(size_t i, const std::vector<llm::Response>& responses,
                                      int round) const override {
    if (round > 0) return {};
    std::vector<llm::Request> out;
    for (size_t k : unparsable_first(responses))
      out.push_back(judge_request(i, static_cast<Judgement>(k), 1));
    return out;
  }

  ItemResult score(size_t i, const std::vector<llm::Response>& responses) const override {
    const Item& item = items_[i];
    // The reply that counts for each judgement: the retry when the first did not parse.
    std::vector<const llm::Response*> counted(4);
    for (size_t k = 0; k < 4; ++k) counted[k] = &responses.at(k);
    const auto retried = unparsable_first(responses);
    for (size_t j = 0; j < retried.size(); ++j) counted[retried[j]] = &responses.at(4 + j);
    std::vector<std::string> replies(4);
    for (size_t k = 0; k < 4; ++k) replies[k] = counted[k]->text();
    ItemResult r;
    r.group = std::to_string(item.iteration);
    r.replies = replies;
    const auto following = parse_following_reply(replies[kFollowing]);
    const auto quality = parse_quality_reply(replies[kQuality]);
    const auto model_first = parse_pairwise_reply(replies[kModelFirst]);
    const auto reference_first = parse_pairwise_reply(replies[kReferenceFirst]);
    r.scores["following_unparsable"] = following.ok() ? 0 : 1;
    r.scores["quality_unparsable"] = quality.ok() ? 0 : 1;
    if (following.ok()) r.scores["followed"] = following.value->followed ? 1 : 0;
    if (quality.ok()) r.scores["quality"] = *quality.value;
    const auto verdict = combine_pairwise_orders(model_first, reference_first);
    r.scores["pairwise_unparsable"] = verdict ? 0 : 1;
    if (verdict)
      r.scores["preference"] = *verdict == PairVerdict::kAWins   ? 1.0
                               : *verdict == PairVerdict::kBWins ? 0.0
                                                                 : 0.5;
    r.answer_found = following.ok() && quality.ok() && verdict.has_value();
    if (judge_.logprobs) {
      // Per order, from the reply that counts (the retry's when the first was retried).
      auto probabilities = [&](size_t k) {
        const auto& choices = counted[k]->choices;
        return choices.empty() ? std::nullopt : pairwise_probabilities(choices[0].logprobs);
      };
      const auto a = probabilities(kModelFirst), b = probabilities(kReferenceFirst);
      if (a && b) {
        // The model's chance of winning in each order (a tie counts half), averaged.
        r.scores["preference_weighted"] =
            0.5 * (((*a)[0] + 0.5 * (*a)[2]) + ((*b)[1] + 0.5 * (*b)[2]));
      }
    }
    r.fields["retried"] = std::to_string(retried.size());
    if (!following.ok()) r.fields["following_problem"] = following.problem;
    if (!quality.ok()) r.fields["quality_problem"] = quality.problem;
    if (!model_first.ok()) r.fields["pairwise_problem"] = model_first.problem;
    if (!reference_first.ok()) r.fields["pairwise_problem_swapped"] = reference_first.problem;
    if (verdict) r.fields["verdict"] = std::string(to_string(*verdict));
    r.fields["length_difference"] = std::to_string(static_cast<int64_t>(item.response.size()) -
                                                   static_cast<int64_t>(item.reference.size()));
    return r;
  }

  std::map<std::string, double> aggregate(const std::vector<ItemResult>& items) const override {
    std::vector<double> prefs, diffs;
    for (const auto& item : items) {
      auto p = item.scores.find("preference");
      auto d = item.fields.find("length_difference");
      if (p == item.scores.end() || d == item.fields.end()) continue;
      prefs.push_back(p->second);
      diffs.push_back(std::stod(d->second));
    }
    if (prefs.size() < 2) return {};
    const auto lc = length_controlled_win_rate(prefs, diffs);
    std::map<std::string, double> out = {{"raw_win_rate", lc.raw_win_rate},
                                         {"lc_win_rate", lc.lc_win_rate},
                                         {"lc_length_slope", lc.length_slope},
                                         {"lc_length_scale_chars", lc.length_scale},
                                         {"pairs_judged", static_cast<double>(lc.items)}};
    // The LC win rate per iteration level, where a level has pairs of different lengths.
    std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> by_level;
    for (const auto& item : items) {
      auto p = item.scores.find("preference");
      auto d = item.fields.find("length_difference");
      if (p == item.scores.end() || d == item.fields.end()) continue;
      by_level[item.group].first.push_back(p->second);
      by_level[item.group].second.push_back(std::stod(d->second));
    }
    for (const auto& [level, data] : by_level) {
      if (data.first.size() < 2) continue;
      try {
        out["lc_win_rate_iteration_" + level] =
            length_controlled_win_rate(data.first, data.second).lc_win_rate;
      } catch (const Error&) {
        // all lengths equal: no scale to fit on; the raw rate per iteration is in the table
      }
    }
    return out;
  }

 private:
  struct Item {
    std::string id, instruction;
    int iteration = 0;
    std::string response, reference;
  };

  // Which of the four first replies do not parse (in order): those are asked again.
  static std::vector<size_t> unparsable_first(const std::vector<llm::Response>& responses) {
    std::vector<size_t> out;
    if (!parse_following_reply(responses.at(kFollowing).text()).ok()) out.push_back(kFollowing);
    if (!parse_quality_reply(responses.at(kQuality).text()).ok()) out.push_back(kQuality);
    if (!parse_pairwise_reply(responses.at(kModelFirst).text()).ok()) out.push_back(kModelFirst);
    if (!parse_pairwise_reply(responses.at(kReferenceFirst).text()).ok())
      out.push_back(kReferenceFirst);
    return out;
  }

  llm::Request judge_request(size_t i, Judgement k, int attempt) const {
    const Item& item = items_[i];
    llm::Request r;
    r.kind = llm::RequestKind::chat;
    r.model = judge_.judge_model;
    std::string prompt;
    switch (k) {
      case kFollowing:
        prompt = following_judge_prompt(item.instruction, item.response);
        break;
      case kQuality:
        prompt = quality_judge_prompt(item.instruction, item.response);
        break;
      case kModelFirst:
        prompt = pairwise_judge_prompt(item.instruction, item.response, item.reference);
        break;
      case kReferenceFirst:
        prompt = pairwise_judge_prompt(item.instruction, item.reference, item.response);
        break;
    }
    r.messages = {{"user", std::move(prompt)}};
    if (judge_.constrained) {
      r.response_format.kind = llm::ResponseFormat::Kind::regex;
      r.response_format.pattern = k == kFollowing ? following_reply_pattern()
                                  : k == kQuality ? quality_reply_pattern()
                                                  : pairwise_reply_pattern();
    }
    if (judge_.logprobs && (k == kModelFirst || k == kReferenceFirst)) {
      r.logprobs = true;
      r.top_logprobs = 5;
    }
    r.params.temperature = attempt == 0 ? 0.0 : 0.7;
    r.params.top_p = 1;
    r.params.max_tokens = judge_.max_tokens;
    r.params.seed = request_seed(o_.seed, "seqeval-judge", item.id, k * 16 + attempt);
    return r;
  }

  TaskOptions o_;
  SeqEvalJudgeOptions judge_;
  std::vector<Item> items_;
};

}  // namespace

std::unique_ptr<Task> make_seqeval_responses(const TaskOptions& options) {
  return std::make_unique<SeqEvalResponses>(options);
}

std::unique_ptr<Task> make_seqeval_judge(const TaskOptions& options,
                                         const std::vector<std::optional<std::string>>& responses,
                                         const SeqEvalJudgeOptions& judge) {
  return std::make_unique<SeqEvalJudge>(options, responses, judge);
}

}  // namespace seqit::eval
