#include "llm/openai_json.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "util/json_io.h"
#include "util/utf8.h"

namespace seqit::llm {
using nlohmann::json;

namespace {

// Thrown inside this file only; turned into an LlmError at each public function's boundary.
struct FieldProblem {
  ErrorKind kind;
  std::string message;
};

[[noreturn]] void bad_response(std::string message) {
  throw FieldProblem{ErrorKind::bad_response, std::move(message)};
}
[[noreturn]] void invalid(std::string message) {
  throw FieldProblem{ErrorKind::invalid_request, std::move(message)};
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    case json::value_t::discarded:
      return "nothing";
    default:
      return "a number";
  }
}

// ---------------------------------------------------------------- client side

void put_sampling(json& body, const SamplingParams& p) {
  body["temperature"] = p.temperature;
  body["top_p"] = p.top_p;
  if (p.top_k > 0) body["top_k"] = p.top_k;
  body["max_tokens"] = p.max_tokens;
  if (!p.stop.empty()) body["stop"] = p.stop;
  if (p.seed) body["seed"] = *p.seed;
  if (p.n != 1) body["n"] = p.n;
}

Usage read_usage(const json& body) {
  Usage u;
  auto it = body.find("usage");
  if (it == body.end() || !it->is_object()) return u;  // some servers omit usage; it is optional
  if (auto p = it->find("prompt_tokens"); p != it->end() && p->is_number_integer())
    u.prompt_tokens = p->get<int64_t>();
  if (auto c = it->find("completion_tokens"); c != it->end() && c->is_number_integer())
    u.completion_tokens = c->get<int64_t>();
  return u;
}

const json& need(const json& obj, const char* key, const std::string& where) {
  if (!obj.is_object())
    bad_response(fmt::format("'{}' is {}, expected an object", where, type_name(obj)));
  auto it = obj.find(key);
  if (it == obj.end()) bad_response(fmt::format("'{}.{}' is missing", where, key));
  return *it;
}

std::string choice_text(RequestKind kind, const json& choice, const std::string& where) {
  if (kind == RequestKind::chat) {
    const json& message = need(choice, "message", where);
    const json& content = need(message, "content", where + ".message");
    if (content.is_null()) return {};  // e.g. a refusal or tool call: no text
    if (!content.is_string())
      bad_response(
          fmt::format("'{}.message.content' is {}, expected a string", where, type_name(content)));
    return content.get<std::string>();
  }
  const json& text = need(choice, "text", where);
  if (!text.is_string())
    bad_response(fmt::format("'{}.text' is {}, expected a string", where, type_name(text)));
  return text.get<std::string>();
}

// Index of a choice in the response ("index" when given, else its position).
size_t choice_index(const json& choice, size_t position) {
  auto it = choice.find("index");
  if (it != choice.end() && it->is_number_unsigned()) return it->get<size_t>();
  if (it != choice.end() && it->is_number_integer() && it->get<int64_t>() >= 0)
    return it->get<size_t>();
  return position;
}

void parse_score(const Request& request, const json& choices, Response& out) {
  const size_t count = request.continuations.size();
  if (choices.size() != count)
    bad_response(
        fmt::format("expected {} choices (one per continuation), got {}", count, choices.size()));
  out.logprobs.assign(count, 0.0);
  out.token_counts.assign(count, 0);
  if (request.token_logprobs) out.token_logprobs.assign(count, {});
  const size_t prompt_cp = utf8::count_code_points(request.prompt);
  std::vector<bool> seen(count, false);
  for (size_t pos = 0; pos < choices.size(); ++pos) {
    const json& choice = choices[pos];
    const std::string where = fmt::format("choices[{}]", pos);
    const size_t i = choice_index(choice, pos);
    if (i >= count || seen[i])
      bad_response(fmt::format("'{}.index' is {}, out of range or repeated", where, i));
    seen[i] = true;
    const json& lp = need(choice, "logprobs", where);
    if (lp.is_null())
      bad_response(
          fmt::format("'{}.logprobs' is null: the server does not return prompt log-probabilities "
                      "(echo + logprobs), so it cannot score",
                      where));
    const json& tokens = need(lp, "token_logprobs", where + ".logprobs");
    const json& offsets = need(lp, "text_offset", where + ".logprobs");
    const json* texts = lp.contains("tokens") ? &lp["tokens"] : nullptr;
    if (!tokens.is_array() || !offsets.is_array() || tokens.size() != offsets.size())
      bad_response(fmt::format(
          "'{}.logprobs.token_logprobs' and 'text_offset' must be arrays of equal length", where));
    const std::string full = request.prompt + request.continuations[i];
    const size_t end_cp = utf8::count_code_points(full);
    // byte_at[k]: byte offset of code point k in `full`; byte_at[end_cp] == full.size().
    std::vector<size_t> byte_at;
    if (request.token_logprobs) {
      for (size_t b = 0; b < full.size();) {
        byte_at.push_back(b);
        b += std::min(utf8::sequence_length(static_cast<unsigned char>(full[b])), full.size() - b);
      }
      byte_at.push_back(full.size());
    }
    double sum = 0;
    int64_t n = 0;
    for (size_t t = 0; t < tokens.size(); ++t) {
      if (!offsets[t].is_number_integer())
        bad_response(fmt::format("'{}.logprobs.text_offset[{}]' is not an integer", where, t));
      const auto offset = offsets[t].get<int64_t>();
      std::optional<double> value;
      if (tokens[t].is_number())
        value = tokens[t].get<double>();
      else if (!tokens[t].is_null())
        bad_response(
            fmt::format("'{}.logprobs.token_logprobs[{}]' is {}", where, t, type_name(tokens[t])));
      if (request.token_logprobs && offset >= 0 && static_cast<size_t>(offset) < end_cp) {
        TokenLogprob tl;
        if (texts && texts->is_array() && t < texts->size() && (*texts)[t].is_string())
          tl.text = (*texts)[t].get<std::string>();
        tl.logprob = value;
        tl.offset = byte_at[std::min(static_cast<size_t>(offset), byte_at.size() - 1)];
        out.token_logprobs[i].push_back(std::move(tl));
      }
      // The continuation's tokens: those starting inside it. Tokens at or after its end were
      // generated (max_tokens = 1) and are not part of the text.
      if (offset < 0 || static_cast<size_t>(offset) < prompt_cp ||
          static_cast<size_t>(offset) >= end_cp)
        continue;
      if (!value) continue;
      sum += *value;
      ++n;
    }
    if (n == 0)
      bad_response(fmt::format(
          "'{}': no token starts inside the continuation (the tokenizer may merge it with "
          "the end of the prompt; move separating spaces into the continuation)",
          where));
    out.logprobs[i] = sum;
    out.token_counts[i] = n;
  }
}

// ---------------------------------------------------------------- server side

struct FieldReader {
  const json& body;

  const json* find(const char* key) const {
    auto it = body.find(key);
    return it == body.end() || it->is_null() ? nullptr : &*it;
  }
  double number(const char* key, double fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_number()) invalid(fmt::format("'{}' must be a number, got {}", key, type_name(*v)));
    return v->get<double>();
  }
  int64_t integer(const char* key, int64_t fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (v->is_number_float()) {
      double d = v->get<double>();
      if (d != std::floor(d)) invalid(fmt::format("'{}' must be an integer, got {}", key, d));
      // Out of int64's range: stand for the nearest bound (the caller's range check names it).
      if (!(std::abs(d) < 9.2e18))
        invalid(fmt::format("'{}' is out of range, got {}", key, v->dump()));
      return static_cast<int64_t>(d);
    }
    if (!v->is_number())
      invalid(fmt::format("'{}' must be an integer, got {}", key, type_name(*v)));
    // An unsigned value above int64's range (e.g. 2^63) must not wrap to a negative number.
    if (v->is_number_unsigned() &&
        v->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      invalid(fmt::format("'{}' is out of range, got {}", key, v->dump()));
    return v->get<int64_t>();
  }
  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean())
      invalid(fmt::format("'{}' must be true or false, got {}", key, type_name(*v)));
    return v->get<bool>();
  }
  std::string string(const char* key) const {
    const json* v = find(key);
    if (!v) return {};
    if (!v->is_string()) invalid(fmt::format("'{}' must be a string, got {}", key, type_name(*v)));
    return v->get<std::string>();
  }
};

SamplingParams read_sampling(const FieldReader& r, const SamplingParams& defaults) {
  SamplingParams p = defaults;
  p.temperature = r.number("temperature", defaults.temperature);
  p.top_p = r.number("top_p", defaults.top_p);
  p.top_k = static_cast<int>(r.integer("top_k", defaults.top_k));
  if (p.top_k < 0) p.top_k = 0;  // vLLM and llama.cpp use -1 for "off"
  // max_completion_tokens is the newer name of max_tokens in the chat API.
  int64_t max_tokens =
      r.integer("max_completion_tokens", r.integer("max_tokens", defaults.max_tokens));
  if (max_tokens < 0 || max_tokens > (1 << 30))
    invalid(fmt::format("'max_tokens' must be between 0 and {}, got {}", 1 << 30, max_tokens));
  p.max_tokens = static_cast<int>(max_tokens);
  int64_t n = r.integer("n", defaults.n);
  if (n < 1 || n > 128) invalid(fmt::format("'n' must be between 1 and 128, got {}", n));
  p.n = static_cast<int>(n);
  if (const json* seed = r.find("seed")) {
    if (!seed->is_number_integer())
      invalid(fmt::format("'seed' must be an integer, got {}", type_name(*seed)));
    p.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                        : static_cast<uint64_t>(seed->get<int64_t>());
  }
  if (const json* stop = r.find("stop")) {
    p.stop.clear();
    if (stop->is_string()) {
      p.stop.push_back(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) invalid(fmt::format("'stop[{}]' must be a string", i));
        p.stop.push_back((*stop)[i].get<std::string>());
      }
    } else {
      invalid(
          fmt::format("'stop' must be a string or an array of strings, got {}", type_name(*stop)));
    }
    std::erase_if(p.stop, [](const std::string& s) { return s.empty(); });
  }
  return p;
}

// Fields whose meaning seqit serve cannot honour: rejected rather than silently ignored.
void reject_unsupported(const FieldReader& r) {
  for (const char* key : {"functions", "function_call", "logit_bias", "suffix"}) {
    if (r.find(key)) invalid(fmt::format("'{}' is not supported by seqit serve", key));
  }
  for (const char* key : {"presence_penalty", "frequency_penalty"}) {
    if (r.number(key, 0.0) != 0.0)
      invalid(fmt::format("'{}' is not supported by seqit serve (only 0)", key));
  }
  if (r.integer("best_of", 1) > 1 && r.integer("best_of", 1) != r.integer("n", 1))
    invalid("'best_of' is not supported by seqit serve");
}

// response_format ({"type": "text" | "json_object" | "json_schema", "json_schema": {"name",
// "schema", "strict"}}) and vLLM's guided_regex / guided_choice.
ResponseFormat read_response_format(const FieldReader& r) {
  ResponseFormat f;
  int given = 0;
  if (const json* rf = r.find("response_format")) {
    ++given;
    if (!rf->is_object()) invalid("'response_format' must be an object");
    FieldReader fr{*rf};
    const json* type = fr.find("type");
    if (!type || !type->is_string())
      invalid("'response_format.type' must be \"text\", \"json_object\" or \"json_schema\"");
    const std::string t = type->get<std::string>();
    if (t == "text") {
      --given;
    } else if (t == "json_object") {
      f.kind = ResponseFormat::Kind::json_object;
    } else if (t == "json_schema") {
      f.kind = ResponseFormat::Kind::json_schema;
      const json* js = fr.find("json_schema");
      if (!js || !js->is_object()) invalid("'response_format.json_schema' must be an object");
      FieldReader jr{*js};
      const json* schema = jr.find("schema");
      if (!schema || !schema->is_object())
        invalid("'response_format.json_schema.schema' must be an object");
      f.schema = schema->dump();
      f.name = jr.string("name");
    } else {
      invalid(
          "'response_format.type' must be \"text\", \"json_object\" or \"json_schema\", got \"" +
          t + "\"");
    }
  }
  if (const json* g = r.find("guided_regex")) {
    ++given;
    if (!g->is_string()) invalid("'guided_regex' must be a string");
    f.kind = ResponseFormat::Kind::regex;
    f.pattern = g->get<std::string>();
  }
  if (const json* g = r.find("guided_choice")) {
    ++given;
    if (!g->is_array() || g->empty())
      invalid("'guided_choice' must be a non-empty array of strings");
    f.kind = ResponseFormat::Kind::choice;
    for (size_t i = 0; i < g->size(); ++i) {
      if (!(*g)[i].is_string()) invalid(fmt::format("'guided_choice[{}]' must be a string", i));
      f.choices.push_back((*g)[i].get<std::string>());
    }
  }
  if (given > 1) invalid("give at most one of 'response_format', 'guided_regex', 'guided_choice'");
  return f;
}

std::string message_content(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (content.is_null()) return {};
  if (content.is_array()) {
    // [{"type": "text", "text": "..."}]: text parts are joined; other part types are refused.
    std::string text;
    for (size_t i = 0; i < content.size(); ++i) {
      const json& part = content[i];
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string())
        invalid(fmt::format("'{}[{}]' must be a text part {{\"type\": \"text\", \"text\": ...}}",
                            where, i));
      text += part["text"].get<std::string>();
    }
    return text;
  }
  invalid(fmt::format("'{}' must be a string or an array of text parts, got {}", where,
                      type_name(content)));
}

// An assistant message's tool_calls: [{"id", "type": "function", "function": {"name",
// "arguments": JSON text}}].
std::vector<ToolCall> read_tool_calls(const json& calls, const std::string& where) {
  if (!calls.is_array()) invalid(fmt::format("'{}' must be an array", where));
  std::vector<ToolCall> out;
  for (size_t i = 0; i < calls.size(); ++i) {
    const std::string at = fmt::format("{}[{}]", where, i);
    const json& c = calls[i];
    if (!c.is_object()) invalid(fmt::format("'{}' must be an object", at));
    FieldReader cr{c};
    const std::string type = cr.string("type");
    if (!type.empty() && type != "function")
      invalid(fmt::format("'{}.type' must be \"function\", got \"{}\"", at, type));
    const json* f = cr.find("function");
    if (!f || !f->is_object()) invalid(fmt::format("'{}.function' must be an object", at));
    FieldReader fr{*f};
    ToolCall call;
    call.id = cr.string("id");
    call.name = fr.string("name");
    if (call.name.empty()) invalid(fmt::format("'{}.function.name' is required", at));
    const json* args = fr.find("arguments");
    // OpenAI sends the arguments as JSON text; an object is taken as it is.
    if (!args || args->is_null()) {
      call.arguments = "{}";
    } else if (args->is_string()) {
      call.arguments = args->get<std::string>();
      if (!json::accept(call.arguments))
        invalid(fmt::format("'{}.function.arguments' is not JSON text", at));
    } else if (args->is_object()) {
      call.arguments = args->dump();
    } else {
      invalid(fmt::format("'{}.function.arguments' must be a JSON string", at));
    }
    out.push_back(std::move(call));
  }
  return out;
}

// `tools` ([{"type": "function", "function": {"name", "description", "parameters"}}]) and
// `tool_choice` ("none", "auto", "required" or {"type": "function", "function": {"name"}}).
void read_tools(const FieldReader& r, Request& req) {
  std::vector<std::string> names;
  if (const json* tools = r.find("tools")) {
    if (!tools->is_array()) invalid("'tools' must be an array");
    for (size_t i = 0; i < tools->size(); ++i) {
      const std::string at = fmt::format("tools[{}]", i);
      const json& t = (*tools)[i];
      if (!t.is_object()) invalid(fmt::format("'{}' must be an object", at));
      FieldReader tr{t};
      if (tr.string("type") != "function")
        invalid(fmt::format("'{}.type' must be \"function\"", at));
      const json* f = tr.find("function");
      if (!f || !f->is_object()) invalid(fmt::format("'{}.function' must be an object", at));
      FieldReader fr{*f};
      const std::string name = fr.string("name");
      if (name.empty()) invalid(fmt::format("'{}.function.name' is required", at));
      if (std::find(names.begin(), names.end(), name) != names.end())
        invalid(fmt::format("'{}.function.name': \"{}\" is given twice", at, name));
      if (const json* p = fr.find("parameters"); p && !p->is_object())
        invalid(fmt::format("'{}.function.parameters' must be a JSON schema object", at));
      names.push_back(name);
    }
    if (!tools->empty()) req.tools = tools->dump();
  }
  if (const json* choice = r.find("tool_choice")) {
    if (choice->is_string()) {
      const std::string c = choice->get<std::string>();
      if (c == "auto")
        req.tool_choice.mode = ToolChoice::Mode::automatic;
      else if (c == "none")
        req.tool_choice.mode = ToolChoice::Mode::none;
      else if (c == "required")
        req.tool_choice.mode = ToolChoice::Mode::required;
      else
        invalid(
            fmt::format("'tool_choice' must be \"none\", \"auto\", \"required\" or a "
                        "function, got \"{}\"",
                        c));
    } else if (choice->is_object()) {
      FieldReader cr{*choice};
      const json* f = cr.find("function");
      if (cr.string("type") != "function" || !f || !f->is_object())
        invalid("'tool_choice' must be {\"type\": \"function\", \"function\": {\"name\": ...}}");
      req.tool_choice.mode = ToolChoice::Mode::function;
      req.tool_choice.function = FieldReader{*f}.string("name");
      if (std::find(names.begin(), names.end(), req.tool_choice.function) == names.end())
        invalid(fmt::format("'tool_choice.function.name': no tool is named \"{}\"",
                            req.tool_choice.function));
    } else {
      invalid("'tool_choice' must be a string or an object");
    }
    if (req.tool_choice.mode != ToolChoice::Mode::none &&
        req.tool_choice.mode != ToolChoice::Mode::automatic && names.empty())
      invalid("'tool_choice' asks for a tool call, but no 'tools' are given");
  }
  if (!req.tools.empty() && req.tool_choice.mode != ToolChoice::Mode::none &&
      req.response_format.kind != ResponseFormat::Kind::text &&
      req.tool_choice.mode != ToolChoice::Mode::automatic)
    invalid("'tool_choice' that forces a call cannot be combined with 'response_format'");
}

}  // namespace

// ---------------------------------------------------------------- client side

json tool_choice_json(const ToolChoice& choice) {
  switch (choice.mode) {
    case ToolChoice::Mode::automatic:
      return "auto";
    case ToolChoice::Mode::none:
      return "none";
    case ToolChoice::Mode::required:
      return "required";
    case ToolChoice::Mode::function:
      return {{"type", "function"}, {"function", {{"name", choice.function}}}};
  }
  return "auto";
}

const char* endpoint_path(RequestKind kind) {
  return kind == RequestKind::chat ? "/chat/completions" : "/completions";
}

// OpenAI's response_format for the JSON kinds; vLLM's guided_regex / guided_choice for the others
// (servers without them answer 400, which names the field).
void put_response_format(json& body, const ResponseFormat& f) {
  switch (f.kind) {
    case ResponseFormat::Kind::text:
      return;
    case ResponseFormat::Kind::json_object:
      body["response_format"] = {{"type", "json_object"}};
      return;
    case ResponseFormat::Kind::json_schema:
      body["response_format"] = {{"type", "json_schema"},
                                 {"json_schema",
                                  {{"name", f.name.empty() ? "answer" : f.name},
                                   {"schema", json::parse(f.schema)},
                                   {"strict", true}}}};
      return;
    case ResponseFormat::Kind::regex:
      body["guided_regex"] = f.pattern;
      return;
    case ResponseFormat::Kind::choice:
      body["guided_choice"] = f.choices;
      return;
  }
}

json to_openai_request(const Request& request, const std::string& model) {
  json body = json::object();
  body["model"] = model;
  switch (request.kind) {
    case RequestKind::chat: {
      json messages = json::array();
      for (const auto& m : request.messages) {
        json j = {{"role", m.role}, {"content", m.content}};
        if (!m.tool_calls.empty()) {
          if (m.content.empty()) j["content"] = nullptr;
          j["tool_calls"] = tool_calls_json(m.tool_calls);
        }
        if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
        if (!m.name.empty()) j["name"] = m.name;
        messages.push_back(std::move(j));
      }
      body["messages"] = std::move(messages);
      put_sampling(body, request.params);
      if (!request.tools.empty()) {
        body["tools"] = json::parse(request.tools);
        body["tool_choice"] = tool_choice_json(request.tool_choice);
      }
      break;
    }
    case RequestKind::completion:
      body["prompt"] = request.prompt;
      put_sampling(body, request.params);
      break;
    case RequestKind::score: {
      json prompts = json::array();
      for (const auto& c : request.continuations) prompts.push_back(request.prompt + c);
      body["prompt"] = std::move(prompts);
      body["echo"] = true;
      body["logprobs"] = 1;
      body["max_tokens"] = 1;  // some servers refuse 0; the generated token is not counted
      body["temperature"] = 0.0;
      break;
    }
  }
  if (request.logprobs && request.kind == RequestKind::chat) {
    body["logprobs"] = true;
    if (request.top_logprobs > 0) body["top_logprobs"] = request.top_logprobs;
  }
  put_response_format(body, request.response_format);
  return body;
}

Result<Response> parse_openai_response(const Request& request, const json& body) {
  try {
    Response out;
    if (!body.is_object())
      bad_response(fmt::format("the body is {}, expected a JSON object", type_name(body)));
    const json& choices = need(body, "choices", "response");
    if (!choices.is_array()) bad_response("'choices' is not an array");
    if (auto m = body.find("model"); m != body.end() && m->is_string())
      out.model = m->get<std::string>();
    out.usage = read_usage(body);
    if (request.kind == RequestKind::score) {
      parse_score(request, choices, out);
      return out;
    }
    const size_t n = static_cast<size_t>(request.params.n);
    if (choices.size() != n)
      bad_response(
          fmt::format("asked for n={} choices, the server returned {} (some servers ignore 'n')", n,
                      choices.size()));
    out.choices.resize(n);
    std::vector<bool> seen(n, false);
    for (size_t pos = 0; pos < choices.size(); ++pos) {
      const std::string where = fmt::format("choices[{}]", pos);
      size_t i = choice_index(choices[pos], pos);
      if (i >= n || seen[i])
        bad_response(fmt::format("'{}.index' is {}, out of range or repeated", where, i));
      seen[i] = true;
      if (request.kind == RequestKind::chat && choices[pos].contains("message") &&
          choices[pos]["message"].is_object() && choices[pos]["message"].contains("tool_calls") &&
          !choices[pos]["message"]["tool_calls"].is_null()) {
        try {
          out.choices[i].tool_calls =
              read_tool_calls(choices[pos]["message"]["tool_calls"], where + ".message.tool_calls");
        } catch (const FieldProblem& p) {
          bad_response(p.message);
        }
        const json& content = choices[pos]["message"]["content"];
        out.choices[i].text = content.is_string() ? content.get<std::string>() : std::string();
      } else {
        out.choices[i].text = choice_text(request.kind, choices[pos], where);
      }
      if (auto f = choices[pos].find("finish_reason"); f != choices[pos].end() && f->is_string())
        out.choices[i].finish_reason = f->get<std::string>();
      if (request.logprobs && request.kind == RequestKind::chat) {
        const json& lp = need(choices[pos], "logprobs", where);
        if (!lp.is_object())
          bad_response(fmt::format("'{}.logprobs' is {}: the server returned no log-probabilities",
                                   where, type_name(lp)));
        const json& content = need(lp, "content", where + ".logprobs");
        if (!content.is_array())
          bad_response(fmt::format("'{}.logprobs.content' must be an array", where));
        for (const json& t : content)
          out.choices[i].logprobs.push_back(generated_token_from_json(t));
      }
    }
    return out;
  } catch (const FieldProblem& p) {
    return LlmError{p.kind, p.message, 0, 0, {}};
  }
}

std::string openai_error_message(const json& body) {
  if (!body.is_object()) return {};
  if (auto e = body.find("error"); e != body.end()) {
    if (e->is_string()) return e->get<std::string>();
    if (e->is_object()) {
      if (auto m = e->find("message"); m != e->end() && m->is_string())
        return m->get<std::string>();
    }
  }
  if (auto d = body.find("detail"); d != body.end())
    return d->is_string() ? d->get<std::string>() : d->dump();
  if (auto m = body.find("message"); m != body.end() && m->is_string())
    return m->get<std::string>();
  return {};
}

json canonical_request(const Request& request, const std::string& model) {
  // nlohmann::json objects keep keys sorted, so dump() of this is canonical.
  json c = json::object();
  c["kind"] = to_string(request.kind);
  c["model"] = model;
  switch (request.kind) {
    case RequestKind::chat: {
      json messages = json::array();
      for (const auto& m : request.messages) {
        json entry = json::array({m.role, m.content});
        // Tool fields only when present, so that other requests keep their keys.
        if (!m.tool_calls.empty() || !m.tool_call_id.empty() || !m.name.empty())
          entry.push_back({{"tool_calls", tool_calls_json(m.tool_calls)},
                           {"tool_call_id", m.tool_call_id},
                           {"name", m.name}});
        messages.push_back(std::move(entry));
      }
      c["messages"] = std::move(messages);
      if (!request.tools.empty()) {
        c["tools"] = request.tools;  // the text: its key order reaches the prompt
        c["tool_choice"] = tool_choice_json(request.tool_choice);
      }
      break;
    }
    case RequestKind::completion:
      c["prompt"] = request.prompt;
      break;
    case RequestKind::score:
      c["prompt"] = request.prompt;
      c["continuations"] = request.continuations;
      c["token_logprobs"] = request.token_logprobs;
      return c;  // sampling parameters do not affect a score
  }
  const SamplingParams& p = request.params;
  c["temperature"] = p.temperature;
  c["top_p"] = p.top_p;
  c["top_k"] = p.top_k;
  c["max_tokens"] = p.max_tokens;
  c["stop"] = p.stop;
  c["seed"] = p.seed ? json(*p.seed) : json(nullptr);
  c["n"] = p.n;
  // Only when set, so that plain requests keep the keys they had before these fields existed.
  if (request.logprobs) {
    c["logprobs"] = true;
    c["top_logprobs"] = request.top_logprobs;
  }
  const ResponseFormat& f = request.response_format;
  if (f.kind != ResponseFormat::Kind::text) {
    c["response_format"] = {{"type", to_string(f.kind)},
                            {"schema", f.schema},
                            {"pattern", f.pattern},
                            {"choices", f.choices}};
  }
  return c;
}

// ---------------------------------------------------------------- server side

Result<ServerRequest> parse_openai_server_request(RequestKind endpoint, const json& body) {
  try {
    if (!body.is_object())
      invalid(fmt::format("the request body must be a JSON object, got {}", type_name(body)));
    FieldReader r{body};
    reject_unsupported(r);
    ServerRequest out;
    out.endpoint = endpoint;
    out.model = r.string("model");
    out.stream = r.boolean("stream", false);
    if (const json* so = r.find("stream_options")) {
      if (!so->is_object()) invalid("'stream_options' must be an object");
      FieldReader sr{*so};
      out.include_usage_in_stream = sr.boolean("include_usage", false);
    }
    SamplingParams openai_defaults;
    openai_defaults.max_tokens = 16;  // the OpenAI API's default for completions
    SamplingParams params = read_sampling(r, openai_defaults);
    const ResponseFormat format = read_response_format(r);
    if (endpoint == RequestKind::chat) {
      const json* messages = r.find("messages");
      if (!messages) invalid("'messages' is required");
      if (!messages->is_array() || messages->empty())
        invalid("'messages' must be a non-empty array");
      Request req;
      req.kind = RequestKind::chat;
      req.model = out.model;
      req.params = params;
      req.response_format = format;
      for (size_t i = 0; i < messages->size(); ++i) {
        const json& m = (*messages)[i];
        const std::string where = fmt::format("messages[{}]", i);
        if (!m.is_object()) invalid(fmt::format("'{}' must be an object", where));
        auto role = m.find("role");
        if (role == m.end() || !role->is_string())
          invalid(fmt::format("'{}.role' must be a string", where));
        auto content = m.find("content");
        const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
        if (content == m.end() && !has_calls)
          invalid(fmt::format("'{}.content' is required", where));
        Message msg{role->get<std::string>(), content == m.end()
                                                  ? std::string()
                                                  : message_content(*content, where + ".content")};
        if (has_calls) msg.tool_calls = read_tool_calls(m["tool_calls"], where + ".tool_calls");
        FieldReader mr{m};
        msg.tool_call_id = mr.string("tool_call_id");
        msg.name = mr.string("name");
        req.messages.push_back(std::move(msg));
      }
      read_tools(r, req);
      req.logprobs = r.boolean("logprobs", false);
      if (const json* top = r.find("top_logprobs")) {
        const int64_t k = r.integer("top_logprobs", 0);
        if (k < 0 || k > 20) invalid(fmt::format("'top_logprobs' must be from 0 to 20, got {}", k));
        if (!req.logprobs) invalid("'top_logprobs' needs 'logprobs': true");
        req.top_logprobs = static_cast<int>(k);
        (void)top;
      }
      out.requests.push_back(std::move(req));
      return out;
    }
    // Legacy completions.
    out.echo = r.boolean("echo", false);
    const json* logprobs = r.find("logprobs");
    if (logprobs && !logprobs->is_number_integer()) invalid("'logprobs' must be an integer");
    out.logprobs = logprobs != nullptr;
    if (out.logprobs && !out.echo)
      invalid("'logprobs' is supported only with echo=true (scoring the prompt) by seqit serve");
    if (out.logprobs && out.stream)
      invalid("'logprobs' with 'stream' is not supported by seqit serve");
    const json* prompt = r.find("prompt");
    if (!prompt) invalid("'prompt' is required");
    std::vector<std::string> prompts;
    if (prompt->is_string()) {
      prompts.push_back(prompt->get<std::string>());
    } else if (prompt->is_array() && !prompt->empty()) {
      for (size_t i = 0; i < prompt->size(); ++i) {
        if (!(*prompt)[i].is_string())
          invalid(
              fmt::format("'prompt[{}]' must be a string (token-id prompts are not supported)", i));
        prompts.push_back((*prompt)[i].get<std::string>());
      }
    } else {
      invalid("'prompt' must be a string or a non-empty array of strings");
    }
    if (out.stream && prompts.size() > 1)
      invalid("'stream' with several prompts is not supported by seqit serve");
    for (auto& p : prompts) {
      Request req;
      req.model = out.model;
      if (out.logprobs) {
        // Scoring: the log-probability of every prompt token; nothing is generated.
        req.kind = RequestKind::score;
        req.continuations.push_back(std::move(p));
        req.token_logprobs = true;
      } else {
        req.kind = RequestKind::completion;
        req.prompt = std::move(p);
        req.params = params;
        req.response_format = format;
      }
      out.requests.push_back(std::move(req));
    }
    return out;
  } catch (const FieldProblem& p) {
    return LlmError{p.kind, p.message, 400, 0, {}};
  } catch (const json::exception& e) {
    return LlmError{ErrorKind::invalid_request, e.what(), 400, 0, {}};
  }
}

Result<SamplingParams> parse_sampling_params(const json& body, const SamplingParams& defaults) {
  try {
    if (!body.is_object()) invalid("expected a JSON object");
    return read_sampling(FieldReader{body}, defaults);
  } catch (const FieldProblem& p) {
    return LlmError{p.kind, p.message, 0, 0, {}};
  }
}

namespace {
json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.total()}};
}
}  // namespace

namespace {
json bytes_json(const std::string& s) {
  json b = json::array();
  for (char c : s) b.push_back(static_cast<unsigned char>(c));
  return b;
}
std::string bytes_or_token(const json& j, const std::string& where) {
  if (auto b = j.find("bytes"); b != j.end() && b->is_array()) {
    std::string s;
    for (const json& v : *b) {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 255)
        bad_response(fmt::format("'{}.bytes' must hold byte values", where));
      s += static_cast<char>(v.get<int>());
    }
    return s;
  }
  const json& t = need(j, "token", where);
  if (!t.is_string()) bad_response(fmt::format("'{}.token' must be a string", where));
  return t.get<std::string>();
}
double logprob_of(const json& j, const std::string& where) {
  const json& v = need(j, "logprob", where);
  if (!v.is_number()) bad_response(fmt::format("'{}.logprob' must be a number", where));
  return v.get<double>();
}
}  // namespace

std::optional<LlmError> parse_tools(const json& body, Request& request) {
  try {
    if (!body.is_object()) invalid("the request must be a JSON object");
    read_tools(FieldReader{body}, request);
    // The text's key order (the template prints the tools as given).
    if (!request.tools.empty()) request.tools = nlohmann::ordered_json(body.at("tools")).dump();
    return std::nullopt;
  } catch (const FieldProblem& p) {
    return LlmError{p.kind, p.message, 400, 0, {}};
  }
}

Result<ResponseFormat> parse_response_format(const json& body) {
  try {
    if (!body.is_object()) invalid("the request must be a JSON object");
    return read_response_format(FieldReader{body});
  } catch (const FieldProblem& p) {
    return LlmError{p.kind, p.message, 400, 0, {}};
  }
}

json chat_logprobs_json(const std::vector<GeneratedToken>& tokens) {
  if (tokens.empty()) return nullptr;
  json content = json::array();
  for (const auto& t : tokens) content.push_back(generated_token_json(t));
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

json generated_token_json(const GeneratedToken& t) {
  json top = json::array();
  for (const auto& [text, lp] : t.top)
    top.push_back({{"token", utf8::sanitize(text)}, {"logprob", lp}, {"bytes", bytes_json(text)}});
  return {{"token", utf8::sanitize(t.token)},
          {"logprob", t.logprob},
          {"bytes", bytes_json(t.token)},
          {"top_logprobs", std::move(top)}};
}

GeneratedToken generated_token_from_json(const json& j) {
  if (!j.is_object()) bad_response("a logprobs entry must be an object");
  GeneratedToken t;
  t.token = bytes_or_token(j, "logprobs.content[]");
  t.logprob = logprob_of(j, "logprobs.content[]");
  if (auto top = j.find("top_logprobs"); top != j.end() && top->is_array()) {
    for (const json& e : *top)
      t.top.push_back({bytes_or_token(e, "top_logprobs[]"), logprob_of(e, "top_logprobs[]")});
  }
  return t;
}

json tool_calls_json(const std::vector<ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (size_t k = 0; k < calls.size(); ++k) {
    json c = {{"id", calls[k].id},
              {"type", "function"},
              {"function", {{"name", calls[k].name}, {"arguments", calls[k].arguments}}}};
    if (with_index) c["index"] = k;
    out.push_back(std::move(c));
  }
  return out;
}

json to_openai_chat_response(const Response& response, const std::string& id, int64_t created,
                             const std::string& model) {
  json choices = json::array();
  for (size_t i = 0; i < response.choices.size(); ++i) {
    const Choice& c = response.choices[i];
    json logprobs = chat_logprobs_json(c.logprobs);
    json message = {{"role", "assistant"}, {"content", c.text}};
    if (!c.tool_calls.empty()) {
      if (c.text.empty()) message["content"] = nullptr;
      message["tool_calls"] = tool_calls_json(c.tool_calls);
    }
    choices.push_back({{"index", i},
                       {"message", std::move(message)},
                       {"logprobs", std::move(logprobs)},
                       {"finish_reason", c.finish_reason}});
  }
  return {{"id", id},       {"object", "chat.completion"},   {"created", created},
          {"model", model}, {"choices", std::move(choices)}, {"usage", usage_json(response.usage)}};
}

json to_openai_completion_response(const ServerRequest& request,
                                   const std::vector<Response>& responses, const std::string& id,
                                   int64_t created, const std::string& model) {
  json choices = json::array();
  Usage total;
  for (size_t p = 0; p < responses.size(); ++p) {
    const Response& r = responses[p];
    const Request& req = request.requests[p];
    total.prompt_tokens += r.usage.prompt_tokens;
    total.completion_tokens += r.usage.completion_tokens;
    if (req.kind == RequestKind::score) {
      // Echo + logprobs: the prompt itself with its token log-probabilities; offsets in code
      // points.
      const std::string& text = req.continuations.front();
      json tokens = json::array(), values = json::array(), offsets = json::array(),
           top = json::array();
      for (const auto& t :
           r.token_logprobs.empty() ? std::vector<TokenLogprob>{} : r.token_logprobs.front()) {
        tokens.push_back(t.text);
        values.push_back(t.logprob ? json(*t.logprob) : json(nullptr));
        offsets.push_back(utf8::count_code_points(std::string_view(text).substr(0, t.offset)));
        top.push_back(t.logprob ? json{{t.text, *t.logprob}} : json(nullptr));
      }
      choices.push_back({{"index", choices.size()},
                         {"text", text},
                         {"logprobs",
                          {{"tokens", std::move(tokens)},
                           {"token_logprobs", std::move(values)},
                           {"text_offset", std::move(offsets)},
                           {"top_logprobs", std::move(top)}}},
                         {"finish_reason", "length"}});
      continue;
    }
    for (const Choice& c : r.choices) {
      choices.push_back({{"index", choices.size()},
                         {"text", request.echo ? req.prompt + c.text : c.text},
                         {"logprobs", nullptr},
                         {"finish_reason", c.finish_reason}});
    }
  }
  return {{"id", id},       {"object", "text_completion"},   {"created", created},
          {"model", model}, {"choices", std::move(choices)}, {"usage", usage_json(total)}};
}

json openai_error_body(const std::string& message, const std::string& type, const std::string& code,
                       const std::string& param) {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", code.empty() ? json(nullptr) : json(code)}}}};
}

Result<ServerRequest> parse_openai_request_body(RequestKind endpoint, std::string_view body) {
  auto invalid = [](std::string message) {
    return LlmError{ErrorKind::invalid_request, std::move(message), 0, 0, {}};
  };
  // JSON text must be UTF-8 (RFC 8259); the parser does not check strings, and a body that is
  // not would fail later, when the answer or the cache key is written, as a 500.
  if (const size_t bad = utf8::first_invalid(body); bad != std::string_view::npos)
    return invalid(fmt::format(
        "The body of your request is not valid UTF-8 (byte {}): JSON text must be UTF-8", bad));
  // Deep nesting costs a stack frame per level wherever a value is copied or compared.
  if (const auto deep = json_too_deep(body))
    return invalid(
        fmt::format("The JSON body of your request nests deeper than {} levels (byte {})",
                    kMaxJsonDepth, *deep));
  json parsed;
  try {
    parsed = json::parse(body);
  } catch (const json::out_of_range& e) {
    // A number JSON allows but a double cannot hold ("temperature": 1e999).
    return invalid("A number in your request is out of range: " + clean_json_error(e.what()));
  } catch (const json::exception& e) {
    return invalid("We could not parse the JSON body of your request: " +
                   clean_json_error(e.what()));
  }
  Result<ServerRequest> out = parse_openai_server_request(endpoint, parsed);
  // A JSON schema's property order is the order of its answer: take it from the text (the parsed
  // body above sorts keys).
  if (out.ok()) {
    for (Request& req : out.value().requests) {
      // The tools' key order is how the template prints them: the text's, too.
      if (!req.tools.empty()) req.tools = nlohmann::ordered_json::parse(body).at("tools").dump();
      if (req.response_format.kind != ResponseFormat::Kind::json_schema) continue;
      req.response_format.schema = nlohmann::ordered_json::parse(body)
                                       .at("response_format")
                                       .at("json_schema")
                                       .at("schema")
                                       .dump();
    }
  }
  return out;
}

}  // namespace seqit::llm
