#include "eval/task_data.h"

#include <fmt/format.h>

#include <fstream>

#include "util/error.h"
#include "util/file_io.h"

namespace seqit::eval::detail {
namespace fs = std::filesystem;
using json = nlohmann::json;

std::vector<JsonLine> read_jsonl(const fs::path& path, int64_t limit) {
  std::ifstream in(path);
  if (!in) throw Error("cannot read the data file").in_file(path.string());
  std::vector<JsonLine> out;
  std::string line;
  int64_t number = 0;
  while ((limit < 0 || static_cast<int64_t>(out.size()) < limit) && std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    try {
      out.push_back({number, json::parse(line)});
    } catch (const json::exception& e) {
      throw Error(fmt::format("not JSON: {}", e.what())).in_file(path.string()).at_line(number);
    }
  }
  return out;
}

std::string string_field(const json& record, const std::string& field, const fs::path& path,
                         int64_t line) {
  auto it = record.find(field);
  if (it == record.end())
    throw Error("missing field").in_file(path.string()).at_line(line).in_field(field);
  if (it->is_number()) return it->dump();
  if (!it->is_string())
    throw Error("expected a string").in_file(path.string()).at_line(line).in_field(field);
  return it->get<std::string>();
}

fs::path task_dir(const TaskOptions& options, const std::string& sub) {
  const fs::path dir = fs::path(options.data_dir) / sub;
  if (!fs::is_directory(dir))
    throw Error(
        fmt::format("no data folder for this task; give --data-dir (the shared/data/eval folder "
                    "that holds {}/)",
                    sub))
        .in_file(dir.string());
  return dir;
}

std::vector<std::vector<std::string>> read_csv(const fs::path& path) {
  const std::string text = read_file(path);
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
        }
      } else {
        field += c;
      }
      continue;
    }
    if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
      any = true;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      if (any || !field.empty()) {
        row.push_back(std::move(field));
        rows.push_back(std::move(row));
      }
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (quoted)
    throw Error(fmt::format("unterminated quote (row {})", rows.size() + 1)).in_file(path.string());
  if (any || !field.empty()) {
    row.push_back(std::move(field));
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace seqit::eval::detail
