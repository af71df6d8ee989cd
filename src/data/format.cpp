#include "data/format.h"

#include <fmt/format.h>

#include <array>
#include <utility>

#include "util/error.h"

namespace seqit::data {

namespace {
struct SchemaInfo {
  Schema schema;
  std::string_view name;
  std::string_view fields;  // shown in help and in "expected ..." errors
};

constexpr std::array<SchemaInfo, 9> kSchemas = {{
    {Schema::seqit, "seqit",
     "{id, system, instruction, input, output, meta} or {id, messages: [{role, content}], meta}"},
    {Schema::alpaca, "alpaca",
     "{instruction, input?, output?, system_prompt?} (Chain-of-Instructions too)"},
    {Schema::sharegpt, "sharegpt", "{conversations: [{from: system|human|gpt, value}]}"},
    {Schema::openai, "openai",
     "{messages: [{role: system|user|assistant, content}]} (alias tulu, messages)"},
    {Schema::flancot, "flancot",
     "JSONL {question, response, system_prompt?}; TSV question<TAB>answer<TAB>rationale"},
    {Schema::lima, "lima", "{conversations: [\"user turn\", \"assistant turn\", ...]}"},
    {Schema::seqeval, "seqeval", "{instruction, iteration}"},
    {Schema::sifo, "sifo", "{id, context?, instruction_1, answer_1, instruction_2, answer_2, ...}"},
    {Schema::gsm8k, "gsm8k", "{question, answer}"},
}};

const SchemaInfo& info(Schema schema) {
  for (const auto& s : kSchemas) {
    if (s.schema == schema) return s;
  }
  return kSchemas[0];
}
}  // namespace

std::string_view schema_name(Schema schema) {
  return info(schema).name;
}

std::string_view container_name(Container container) {
  switch (container) {
    case Container::jsonl:
      return "jsonl";
    case Container::json:
      return "json";
    case Container::tsv:
      return "tsv";
  }
  return "jsonl";
}

std::string format_name(Format format) {
  return fmt::format("{}-{}", schema_name(format.schema), container_name(format.container));
}

bool schema_supports(Schema schema, Container container) {
  if (container == Container::tsv) return schema == Schema::flancot;
  return true;
}

FormatRequest parse_format_request(std::string_view name) {
  std::string_view base = name;
  std::optional<Container> container;
  for (Container c : {Container::jsonl, Container::json, Container::tsv}) {
    std::string suffix = fmt::format("-{}", container_name(c));
    if (base.size() > suffix.size() && base.ends_with(suffix)) {
      base.remove_suffix(suffix.size());
      container = c;
      break;
    }
  }
  std::optional<Schema> schema;
  for (const auto& s : kSchemas) {
    if (base == s.name) schema = s.schema;
  }
  if (base == "tulu" || base == "messages") schema = Schema::openai;
  if (base == "coi" || base == "chain-of-instructions") schema = Schema::alpaca;
  if (!schema || (container && !schema_supports(*schema, *container))) {
    throw Error(
        fmt::format("unknown format '{}'; known formats (add -json, -jsonl or, for flancot, "
                    "-tsv to choose the container):\n{}",
                    name, formats_help()));
  }
  return {*schema, container};
}

Container container_for_path(Schema schema, std::string_view path) {
  if (path.ends_with(".tsv") && schema_supports(schema, Container::tsv)) return Container::tsv;
  if (path.ends_with(".json")) return Container::json;
  return Container::jsonl;
}

std::string formats_help() {
  std::string out;
  for (const auto& s : kSchemas) out += fmt::format("  {:<9} {}\n", s.name, s.fields);
  return out;
}

}  // namespace seqit::data
