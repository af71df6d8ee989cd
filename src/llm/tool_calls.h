// Tool calls through a model's chat template: which call format a template teaches its model, the
// calls read back from a reply in that format, and the regular expression that holds a reply to
// one call (tool_choice "required" or a named function) for constrained decoding.
//
// Formats (recognised by what the template writes):
//   hermes      <tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>, one block per call
//               (Qwen 2.5, Hermes 2 Pro / 3, and the many templates that copied them);
//   mistral     [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...] (Mistral v3 / Nemo; the
//               marker is a special token that a decoded text may not show);
//   llama3_json {"name": ..., "parameters": {...}} as the whole reply (Llama 3.1 - 3.3).
// A template that uses `tools` in another way is `unknown`: tools are rendered, replies are text.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "llm/backend.h"

namespace seqit::llm {

enum class ToolFormat { none, unknown, hermes, mistral, llama3_json };
const char* to_string(ToolFormat format);

// The format of a chat template's source: none when it never mentions `tools`.
ToolFormat detect_tool_format(std::string_view template_source);

struct ParsedReply {
  std::string content;          // the text outside the calls (trimmed); the whole reply if none
  std::vector<ToolCall> calls;  // ids left empty
};
// The calls in a reply of the given format; a block that is not a well-formed call (JSON with a
// string "name" and an object of arguments) leaves the reply as text.
ParsedReply parse_tool_calls(ToolFormat format, std::string_view reply);

// A regular expression (infer/constraint.h's dialect) for a reply that is exactly one call, in
// the format, of one of the `tools` (the JSON text of OpenAI's tools array) — only `function` when
// it is not empty. The arguments follow each tool's parameters schema where the constraint can
// enforce it, else any JSON object. Throws seqit::Error for a format without a call syntax.
std::string tool_call_pattern(ToolFormat format, const std::string& tools_json,
                              const std::string& function = "");

}  // namespace seqit::llm
