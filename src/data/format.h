// The instruction-data formats seqit reads and writes. A format is a record schema (which fields
// a record has) in a container (JSON lines, one JSON array, or TSV). docs/data.md describes each.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::data {

enum class Schema {
  seqit,     // seqit's own: {id, system, instruction, input, output, meta} or {id, messages, meta}
  alpaca,    // {instruction, input, output} (+ system_prompt); also Chain-of-Instructions files
  sharegpt,  // {conversations: [{from, value}]}
  openai,    // {messages: [{role, content}]} (OpenAI chat, Tulu)
  flancot,   // JSONL {question, response, system_prompt}; TSV question<TAB>answer<TAB>rationale
  lima,      // {conversations: [user, assistant, ...]} as plain strings
  seqeval,   // {instruction, iteration}
  sifo,      // {id, context, instruction_1, answer_1, ...}
  gsm8k,     // {question, answer}
};

enum class Container { jsonl, json, tsv };

struct Format {
  Schema schema = Schema::seqit;
  Container container = Container::jsonl;
  bool operator==(const Format&) const = default;
};

// Names as the CLI spells them: "alpaca", "sharegpt", "openai", "flancot", "lima", "seqeval",
// "sifo", "gsm8k", "seqit".
std::string_view schema_name(Schema schema);
std::string_view container_name(Container container);  // "jsonl", "json", "tsv"
// "alpaca-json", "flancot-tsv", "seqit-jsonl", ...
std::string format_name(Format format);

// What the user asked for with --from/--to: a schema, and a container when the name carries one.
struct FormatRequest {
  Schema schema;
  std::optional<Container> container;
};
// Parses "alpaca", "alpaca-json", "alpaca-jsonl", "sharegpt-json", "flancot-tsv", ... and the
// aliases "tulu" / "messages" (openai) and "coi" (alpaca). Throws seqit::Error listing the known
// names for anything else.
FormatRequest parse_format_request(std::string_view name);

bool schema_supports(Schema schema, Container container);
// The container for writing `schema` to `path` when the request names none: by extension
// (.json -> json array, .tsv -> tsv, anything else -> jsonl) when the schema supports it, else the
// schema's natural container (flancot without .tsv -> jsonl).
Container container_for_path(Schema schema, std::string_view path);

// One line per format for --help and error messages.
std::string formats_help();

}  // namespace seqit::data
