#include "eval/humaneval.h"

#include <fmt/format.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace seqit::eval {
namespace {

// The whole file, inflated when it is gzip (zlib reads plain files through unchanged).
std::string read_maybe_gzip(const std::filesystem::path& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("cannot open HumanEval data").in_file(path.string());
  std::string text;
  char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  int errnum = Z_OK;
  const char* message = n < 0 ? gzerror(f, &errnum) : nullptr;
  const std::string why = message ? message : "";
  gzclose(f);
  if (n < 0) throw Error(fmt::format("cannot read HumanEval data: {}", why)).in_file(path.string());
  return text;
}

}  // namespace

std::vector<HumanEvalProblem> read_humaneval(const std::filesystem::path& path) {
  const std::string text = read_maybe_gzip(path);
  std::vector<HumanEvalProblem> problems;
  int64_t line = 0, record = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view raw(text.data() + start, end - start);
    start = end + 1;
    ++line;
    if (raw.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    try {
      const nlohmann::json j = nlohmann::json::parse(raw, nullptr, /*allow_exceptions=*/false);
      if (j.is_discarded() || !j.is_object()) throw Error("not a JSON object");
      HumanEvalProblem p;
      for (auto [field, out] :
           {std::pair{"task_id", &p.task_id}, std::pair{"prompt", &p.prompt},
            std::pair{"canonical_solution", &p.canonical_solution}, std::pair{"test", &p.test},
            std::pair{"entry_point", &p.entry_point}}) {
        auto it = j.find(field);
        if (it == j.end() || !it->is_string())
          throw Error(it == j.end() ? "missing field" : "must be a string").in_field(field);
        *out = it->get<std::string>();
      }
      problems.push_back(std::move(p));
    } catch (Error& e) {
      e.add_context(ErrorContext{path.string(), line, 0, record, ""});
      throw;
    }
    ++record;
  }
  return problems;
}

std::string humaneval_program(const HumanEvalProblem& problem, std::string_view completion) {
  return fmt::format("{}{}\n{}\ncheck({})\n", problem.prompt, completion, problem.test,
                     problem.entry_point);
}

}  // namespace seqit::eval
