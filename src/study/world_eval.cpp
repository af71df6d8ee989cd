#include "study/world_eval.h"

#include <fmt/format.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "data/record.h"
#include "llm/in_flight.h"
#include "synth/task.h"
#include "util/error.h"
#include "util/jsonl_writer.h"

namespace seqit::study {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::string eval_prompt(const synth::Item& item) {
  return data::user_prompt(synth::to_instruction(item));
}

namespace {

json grade_json(const synth::Item& item, const std::string& response, const synth::Grade& g) {
  json steps = json::array(), tasks = json::array();
  for (const auto& s : g.steps) steps.push_back(s.correct);
  for (const auto& s : item.chain.steps) tasks.push_back(synth::task_info(s.task).name);
  return {{"id", item.id},        {"length", item.chain.steps.size()},
          {"tasks", tasks},       {"prompt", eval_prompt(item)},
          {"response", response}, {"following", g.following},
          {"depth", g.depth},     {"final_correct", g.final_correct},
          {"step_correct", steps}};
}

}  // namespace

std::vector<synth::Grade> evaluate_world(llm::Backend& backend,
                                         const std::vector<synth::Item>& items,
                                         const fs::path& results, const WorldEvalOptions& o) {
  // Earlier answers: graded again from their stored response (grading is cheap and exact).
  std::unordered_map<std::string, std::string> answered;
  if (fs::exists(results)) {
    std::ifstream in(results, std::ios::binary);
    std::string line;
    while (std::getline(in, line)) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("id") && j.contains("response"))
        answered[j["id"].get<std::string>()] = j["response"].get<std::string>();
    }
  }
  ResumableJsonlWriter out(results, "id");
  std::vector<std::optional<synth::Grade>> grades(items.size());
  int64_t finished = 0;
  std::optional<Error> failure;
  for (size_t i = 0; i < items.size(); ++i) {
    auto it = answered.find(items[i].id);
    if (it != answered.end()) {
      grades[i] = synth::grade_response(items[i], it->second);
      ++finished;
    }
  }
  llm::for_each_reply(
      backend, items.size(),
      [&](size_t i) -> std::optional<llm::Request> {
        if (grades[i]) return std::nullopt;
        llm::Request request;
        request.kind = llm::RequestKind::chat;
        request.messages = {{"user", eval_prompt(items[i])}};
        request.params.temperature = 0;
        request.params.max_tokens = o.max_tokens;
        return request;
      },
      o.max_in_flight, o.interrupted,
      [&](size_t i, llm::Result<llm::Response>&& reply) {
        const synth::Item& item = items[i];
        if (!reply.ok()) {
          if (!failure)
            failure = Error(fmt::format("eval item {}: {}", item.id, reply.error().describe()));
          return false;
        }
        const std::string& response = reply.value().text();
        synth::Grade g = synth::grade_response(item, response);
        out.append(grade_json(item, response, g));
        grades[i] = std::move(g);
        ++finished;
        if (o.progress) o.progress(finished, static_cast<int64_t>(items.size()));
        return true;
      });
  if (failure) throw *failure;
  std::vector<synth::Grade> all;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!grades[i])
      throw Error("evaluation stopped before every item was answered; rerun to go on");
    all.push_back(std::move(*grades[i]));
  }
  return all;
}

std::vector<synth::Grade> read_grades(const std::vector<synth::Item>& items,
                                      const fs::path& results) {
  std::unordered_map<std::string, std::string> responses;
  std::ifstream in(results, std::ios::binary);
  if (!in) throw Error("cannot read the evaluation results").in_file(results.string());
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("id") || !j.contains("response"))
      throw Error("not a result line").in_file(results.string()).at_line(line_no);
    responses[j["id"].get<std::string>()] = j["response"].get<std::string>();
  }
  std::vector<synth::Grade> grades;
  for (const auto& item : items) {
    auto it = responses.find(item.id);
    if (it == responses.end())
      throw Error("no result for item " + item.id).in_file(results.string());
    grades.push_back(synth::grade_response(item, it->second));
  }
  return grades;
}

WorldScores score_by_length(const std::vector<synth::Item>& items,
                            const std::vector<synth::Grade>& grades) {
  if (items.size() != grades.size()) throw Error("items and grades differ in number");
  std::map<int, std::vector<synth::Grade>> groups;
  for (size_t i = 0; i < items.size(); ++i)
    groups[static_cast<int>(items[i].chain.steps.size())].push_back(grades[i]);
  WorldScores scores;
  for (const auto& [length, g] : groups) scores.by_length[length] = synth::summarize(g);
  scores.all = synth::summarize(grades);
  return scores;
}

}  // namespace seqit::study
