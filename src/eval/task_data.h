// Internal to the task files (not a public header of eval: it brings in nlohmann/json): reading
// the data files with errors that name the file, line and field.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/task.h"

namespace seqit::eval::detail {

struct JsonLine {
  int64_t line = 0;
  nlohmann::json value;
};
// Every non-empty line of a JSONL file (at most `limit` when limit >= 0).
std::vector<JsonLine> read_jsonl(const std::filesystem::path& path, int64_t limit = -1);
// A string field of a record; throws naming the file, line and field when missing or not a string.
std::string string_field(const nlohmann::json& record, const std::string& field,
                         const std::filesystem::path& path, int64_t line);
// The data folder of a task: options.data_dir / sub; throws with a hint when it does not exist.
std::filesystem::path task_dir(const TaskOptions& options, const std::string& sub);
// CSV with RFC 4180 quoting (MMLU): rows of fields.
std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& path);

}  // namespace seqit::eval::detail
