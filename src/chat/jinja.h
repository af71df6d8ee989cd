// A Jinja2 interpreter for Hugging Face chat templates: parse once, render many times.
//
//   auto t = jinja::Template::parse(source, "tokenizer_config.json");
//   jinja::StringData out = t.render({{"messages", messages}, {"add_generation_prompt", true}});
//
// Semantics are Python jinja2's as transformers configures it (trim_blocks, lstrip_blocks,
// loop controls, sandboxed: lists and dicts cannot be modified), plus transformers' globals
// raise_exception() and strftime_now() and its tojson filter. docs/chat.md lists what is supported
// and where seqit deliberately differs.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"
#include "util/error.h"

namespace seqit::chat::jinja {

struct Program;

// The template called raise_exception(message): message() is the template's text, and the
// context names the template and the line of the call.
class TemplateRaisedError : public Error {
 public:
  TemplateRaisedError(std::string message, int line, int column, std::string template_name);
};

struct RenderSettings {
  // strftime_now() uses this time (seconds since the epoch, formatted as UTC) instead of the local
  // clock, for reproducible renders.
  std::optional<int64_t> now_unix;
};

class Template {
 public:
  // Throws seqit::Error with file = `name` and the line/column of the first syntax error.
  static Template parse(std::string_view source, std::string name);

  // Renders with the given variables. Errors in the template throw seqit::Error with the template
  // location (TemplateRaisedError for raise_exception). The result carries the provenance of
  // tagged input strings and of {% generation %} blocks (tag -1).
  StringData render(const std::vector<std::pair<std::string, Value>>& variables,
                    const RenderSettings& settings = {}) const;

  const std::string& name() const;
  // Does the template contain {% generation %} blocks?
  bool has_generation_blocks() const;
  // Names of filters and tests the template uses that seqit (and transformers) do not know.
  std::vector<std::string> unknown_filters_and_tests() const;

 private:
  std::shared_ptr<const Program> program_;
};

// JSON -> Value with Python json.loads types: integers stay int, numbers with a fraction or
// exponent are float, objects keep their key order (use ordered_json to keep the file's order).
Value from_json(const nlohmann::json& j);
Value from_json(const nlohmann::ordered_json& j);
// Parses JSON text straight into a Value, keeping key order and int/float as written.
Value parse_json_value(std::string_view text, const std::string& source_name);

}  // namespace seqit::chat::jinja
