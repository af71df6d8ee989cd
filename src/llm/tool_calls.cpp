#include "llm/tool_calls.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "infer/constraint.h"
#include "util/error.h"

namespace seqit::llm {
namespace {
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// A call object {"name": string, <arguments_key>: object (or JSON text of one)}; false otherwise.
bool read_call(const json& j, const char* arguments_key, ToolCall& out) {
  if (!j.is_object()) return false;
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get<std::string>().empty()) return false;
  auto args = j.find(arguments_key);
  if (args == j.end()) args = j.find("arguments");
  if (args == j.end()) {
    out.arguments = "{}";
  } else if (args->is_object()) {
    out.arguments = args->dump();
  } else if (args->is_string() && json::accept(args->get<std::string>())) {
    out.arguments = args->get<std::string>();
  } else {
    return false;
  }
  out.name = name->get<std::string>();
  return true;
}

}  // namespace

const char* to_string(ToolFormat format) {
  switch (format) {
    case ToolFormat::none:
      return "none";
    case ToolFormat::unknown:
      return "unknown";
    case ToolFormat::hermes:
      return "hermes";
    case ToolFormat::mistral:
      return "mistral";
    case ToolFormat::llama3_json:
      return "llama3_json";
  }
  return "?";
}

ToolFormat detect_tool_format(std::string_view source) {
  if (source.find("tools") == std::string_view::npos) return ToolFormat::none;
  if (source.find("<tool_call>") != std::string_view::npos) return ToolFormat::hermes;
  if (source.find("[TOOL_CALLS]") != std::string_view::npos) return ToolFormat::mistral;
  if (source.find("\"parameters\": ") != std::string_view::npos &&
      source.find("{\"name\": \"") != std::string_view::npos)
    return ToolFormat::llama3_json;
  return ToolFormat::unknown;
}

ParsedReply parse_tool_calls(ToolFormat format, std::string_view reply) {
  ParsedReply out;
  out.content = std::string(trim(reply));
  switch (format) {
    case ToolFormat::hermes: {
      const std::string_view open = "<tool_call>", close = "</tool_call>";
      const size_t first = reply.find(open);
      if (first == std::string_view::npos) return out;
      std::vector<ToolCall> calls;
      std::string rest;  // text between and after the blocks
      size_t pos = first;
      while (pos != std::string_view::npos) {
        const size_t body = pos + open.size();
        size_t end = reply.find(close, body);
        const std::string_view inside =
            trim(reply.substr(body, end == std::string_view::npos ? end : end - body));
        ToolCall call;
        const json j = json::parse(inside, nullptr, /*allow_exceptions=*/false);
        if (!read_call(j, "arguments", call)) return out;
        calls.push_back(std::move(call));
        if (end == std::string_view::npos) break;  // cut off after the JSON: still a call
        end += close.size();
        pos = reply.find(open, end);
        rest += reply.substr(end, pos == std::string_view::npos ? pos : pos - end);
      }
      out.calls = std::move(calls);
      out.content = std::string(trim(reply.substr(0, first))) + std::string(trim(rest));
      return out;
    }
    case ToolFormat::mistral: {
      std::string_view text = trim(reply);
      if (text.starts_with("[TOOL_CALLS]")) text = trim(text.substr(12));
      if (!text.starts_with("[")) return out;
      const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
      if (!j.is_array() || j.empty()) return out;
      std::vector<ToolCall> calls;
      for (const json& c : j) {
        ToolCall call;
        if (!read_call(c, "arguments", call)) return out;
        if (auto id = c.find("id"); id != c.end() && id->is_string()) call.id = *id;
        calls.push_back(std::move(call));
      }
      out.calls = std::move(calls);
      out.content.clear();
      return out;
    }
    case ToolFormat::llama3_json: {
      std::string_view text = trim(reply);
      if (text.starts_with("<|python_tag|>")) text = trim(text.substr(14));
      if (!text.starts_with("{")) return out;
      const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
      ToolCall call;
      if (!read_call(j, "parameters", call)) return out;
      out.calls = {std::move(call)};
      out.content.clear();
      return out;
    }
    case ToolFormat::none:
    case ToolFormat::unknown:
      return out;
  }
  return out;
}

std::string tool_call_pattern(ToolFormat format, const std::string& tools_json,
                              const std::string& function) {
  if (format != ToolFormat::hermes && format != ToolFormat::mistral &&
      format != ToolFormat::llama3_json)
    throw Error(fmt::format(
        "the chat template's tool-call format is {}: seqit can hold a reply to a call only in "
        "the hermes (<tool_call>), Mistral ([TOOL_CALLS]) and Llama 3 JSON formats",
        format == ToolFormat::none ? "missing (it does not use tools)" : "not one it knows"));
  const ordered_json tools = ordered_json::parse(tools_json);
  const char* key = format == ToolFormat::llama3_json ? "parameters" : "arguments";
  std::vector<std::string> alternatives;
  for (const auto& t : tools) {
    const auto& f = t.at("function");
    const std::string name = f.at("name").get<std::string>();
    if (!function.empty() && name != function) continue;
    std::string arguments;
    auto params = f.find("parameters");
    if (params != f.end() && params->is_object() && !params->empty()) {
      try {
        arguments = infer::json_schema_regex(*params);
      } catch (const Error&) {
        arguments.clear();  // a keyword the constraint cannot enforce: any object
      }
    } else if (params != f.end() && params->is_object()) {
      arguments = "\\{\\}";
    }
    if (arguments.empty()) arguments = infer::any_json_object_regex();
    alternatives.push_back(
        infer::regex_escape("{\"name\":" + json(name).dump() + ",\"" + key + "\":") +
        "(?:" + arguments + ")" + infer::regex_escape("}"));
  }
  if (alternatives.empty()) throw Error(fmt::format("no tool is named \"{}\"", function));
  std::string call;
  for (size_t i = 0; i < alternatives.size(); ++i)
    call += (i ? "|" : "") + std::string("(?:") + alternatives[i] + ")";
  switch (format) {
    case ToolFormat::hermes:
      return infer::regex_escape("<tool_call>\n") + "(?:" + call + ")" +
             infer::regex_escape("\n</tool_call>");
    case ToolFormat::mistral:
      return infer::regex_escape("[") + "(?:" + call + ")" + infer::regex_escape("]");
    default:
      return "(?:" + call + ")";
  }
}

}  // namespace seqit::llm
