#include "data/codec.h"

#include <fmt/format.h>

#include <algorithm>
#include <initializer_list>

#include "util/error.h"
#include "util/json_io.h"
#include "util/utf8.h"

namespace seqit::data::codec {
namespace {

std::string type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "an array";
    case Json::value_t::object:
      return "an object";
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an integer";
  }
}

[[noreturn]] void throw_wrong_type(const std::string& field, const char* expected, const Json& v) {
  throw Error(fmt::format("expected {}, found {}", expected, type_name(v))).in_field(field);
}

// Removes `key` from `object` and returns its string value; nullopt when absent and not required.
std::optional<std::string> take_string(Json& object, const std::string& key, bool required,
                                       const std::string& field_prefix = "") {
  auto it = object.find(key);
  if (it == object.end()) {
    if (required) throw Error(fmt::format("missing field '{}'", key)).in_field(field_prefix + key);
    return std::nullopt;
  }
  if (!it->is_string()) throw_wrong_type(field_prefix + key, "a string", *it);
  std::string value = it->get<std::string>();
  object.erase(it);
  return value;
}

// A string id becomes the record id and leaves the object; an integer id also becomes the record
// id (as decimal text) but stays in the object, hence in meta, so it is written back as a number.
void take_id(Json& object, std::string& id) {
  auto it = object.find("id");
  if (it == object.end()) return;
  if (it->is_string()) {
    id = it->get<std::string>();
    object.erase(it);
  } else if (it->is_number_integer()) {
    id = it->dump();
  }
}

Meta to_meta(Json&& rest) {
  Meta meta;
  if (!rest.empty()) meta.object() = std::move(rest);
  return meta;
}

// Starts an output object with the record's id: the original value kept in meta when it is the
// same id (so integer ids stay integers), else the id as a string; nothing when there is no id.
Json start_object(const std::string& id, const Meta& meta) {
  Json out = Json::object();
  const Json& m = meta.object();
  auto it = m.find("id");
  if (it != m.end() && (id.empty() || it->dump() == id)) {
    out["id"] = *it;
  } else if (!id.empty()) {
    out["id"] = id;
  }
  return out;
}

// Appends meta's fields after the schema's own; a meta key that the schema uses itself cannot be
// written without changing the record's meaning, so it is an error.
void append_meta(Json& out, const Meta& meta, Schema schema) {
  const Json& m = meta.object();
  if (!m.is_object()) throw Error("meta must be a JSON object").in_field("meta");
  for (auto it = m.begin(); it != m.end(); ++it) {
    if (it.key() == "id") continue;  // written by start_object
    if (out.contains(it.key())) {
      throw Error(fmt::format("meta field '{}' has the name of a {} field and cannot be written as "
                              "one; write to seqit JSONL to keep it",
                              it.key(), schema_name(schema)))
          .in_field("meta." + it.key());
    }
    out[it.key()] = *it;
  }
}

Instruction as_instruction(const Record& record) {
  if (const auto* i = std::get_if<Instruction>(&record)) return *i;
  return to_instruction(std::get<Conversation>(record));
}

Conversation as_conversation(const Record& record) {
  if (const auto* c = std::get_if<Conversation>(&record)) return *c;
  return to_conversation(std::get<Instruction>(record));
}

void require_no_system(const Instruction& r, Schema schema) {
  if (!r.system.empty()) {
    throw Error(fmt::format("{} records have no system prompt field", schema_name(schema)))
        .in_field("system");
  }
}

void require_plain_messages(const Conversation& c, Schema schema) {
  for (size_t k = 0; k < c.messages.size(); ++k) {
    if (!c.messages[k].meta.empty()) {
      throw Error(fmt::format("{} messages cannot hold extra fields ({})", schema_name(schema),
                              fmt::join(c.messages[k].meta.keys(), ", ")))
          .in_field(fmt::format("messages[{}]", k));
    }
  }
}

// ---- roles
// ---------------------------------------------------------------------------------------

// ShareGPT speaker names: the common spellings become seqit's roles; anything else (e.g.
// "function_call", "observation") is kept verbatim.
std::string role_from_sharegpt(const std::string& from) {
  if (from == "human" || from == "user") return std::string(kRoleUser);
  if (from == "gpt" || from == "assistant" || from == "chatgpt" || from == "bard" ||
      from == "bing" || from == "model") {
    return std::string(kRoleAssistant);
  }
  return from;
}

std::string role_to_sharegpt(const std::string& role) {
  if (role == kRoleUser) return "human";
  if (role == kRoleAssistant) return "gpt";
  return role;
}

// Reads an array of message objects with string fields `role_key` and `content_key`; the other
// fields of each message go to its meta.
std::vector<Message> take_messages(Json& object, const std::string& key,
                                   const std::string& role_key, const std::string& content_key,
                                   bool sharegpt_roles) {
  auto it = object.find(key);
  if (it == object.end()) throw Error(fmt::format("missing field '{}'", key)).in_field(key);
  if (!it->is_array()) throw_wrong_type(key, "an array of messages", *it);
  std::vector<Message> messages;
  messages.reserve(it->size());
  for (size_t k = 0; k < it->size(); ++k) {
    Json& m = (*it)[k];
    std::string prefix = fmt::format("{}[{}].", key, k);
    if (!m.is_object()) throw_wrong_type(fmt::format("{}[{}]", key, k), "a message object", m);
    Message msg;
    std::string role = *take_string(m, role_key, true, prefix);
    auto content = m.find(content_key);
    if (content == m.end()) {
      throw Error(fmt::format("missing field '{}'", content_key)).in_field(prefix + content_key);
    }
    if (!content->is_string()) {
      throw Error(fmt::format("expected a string, found {} (content parts, tool calls and null "
                              "content are not supported)",
                              type_name(*content)))
          .in_field(prefix + content_key);
    }
    msg.content = content->get<std::string>();
    m.erase(content);
    msg.role = sharegpt_roles ? role_from_sharegpt(role) : role;
    msg.meta = to_meta(std::move(m));
    messages.push_back(std::move(msg));
  }
  object.erase(it);
  return messages;
}

Json encode_messages(const std::vector<Message>& messages, const std::string& role_key,
                     const std::string& content_key, bool sharegpt_roles) {
  Json out = Json::array();
  for (size_t k = 0; k < messages.size(); ++k) {
    const Message& m = messages[k];
    Json obj = Json::object();
    obj[role_key] = sharegpt_roles ? role_to_sharegpt(m.role) : m.role;
    obj[content_key] = m.content;
    const Json& extra = m.meta.object();
    for (auto it = extra.begin(); it != extra.end(); ++it) {
      if (obj.contains(it.key())) {
        throw Error(
            fmt::format("message meta field '{}' has the name of a message field", it.key()))
            .in_field(fmt::format("messages[{}].meta", k));
      }
      obj[it.key()] = *it;
    }
    out.push_back(std::move(obj));
  }
  return out;
}

// ---- schemas
// -------------------------------------------------------------------------------------

Record decode_seqit(Json&& object) {
  bool conversation = object.contains("messages");
  static const std::initializer_list<std::string_view> kInstructionKeys = {
      "id", "system", "instruction", "input", "output", "meta"};
  static const std::initializer_list<std::string_view> kConversationKeys = {"id", "messages",
                                                                            "meta"};
  const auto& allowed = conversation ? kConversationKeys : kInstructionKeys;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
      throw Error(fmt::format("unknown field '{}' in a seqit {} record (extra fields belong under "
                              "'meta')",
                              it.key(), conversation ? "conversation" : "instruction"))
          .in_field(it.key());
    }
  }
  std::string id = take_string(object, "id", false).value_or("");
  Meta meta;
  if (auto it = object.find("meta"); it != object.end()) {
    if (!it->is_object()) throw_wrong_type("meta", "an object", *it);
    meta = to_meta(std::move(*it));
  }
  if (conversation) {
    Conversation c;
    c.id = std::move(id);
    auto& list = object["messages"];
    if (!list.is_array()) throw_wrong_type("messages", "an array of messages", list);
    for (size_t k = 0; k < list.size(); ++k) {
      Json& m = list[k];
      std::string prefix = fmt::format("messages[{}].", k);
      if (!m.is_object()) throw_wrong_type(fmt::format("messages[{}]", k), "a message object", m);
      Message msg;
      msg.role = *take_string(m, "role", true, prefix);
      msg.content = *take_string(m, "content", true, prefix);
      if (auto mm = m.find("meta"); mm != m.end()) {
        if (!mm->is_object()) throw_wrong_type(prefix + "meta", "an object", *mm);
        msg.meta = to_meta(std::move(*mm));
        m.erase(mm);
      }
      if (!m.empty()) {
        throw Error(fmt::format("unknown field '{}' in a seqit message", m.begin().key()))
            .in_field(prefix + m.begin().key());
      }
      c.messages.push_back(std::move(msg));
    }
    c.meta = std::move(meta);
    return c;
  }
  Instruction r;
  r.id = std::move(id);
  r.system = take_string(object, "system", false).value_or("");
  r.instruction = *take_string(object, "instruction", true);
  r.input = take_string(object, "input", false).value_or("");
  r.output = take_string(object, "output", false).value_or("");
  r.meta = std::move(meta);
  return r;
}

Json encode_seqit(const Record& record) {
  Json out = Json::object();
  if (const auto* r = std::get_if<Instruction>(&record)) {
    out["id"] = r->id;
    out["system"] = r->system;
    out["instruction"] = r->instruction;
    out["input"] = r->input;
    out["output"] = r->output;
    out["meta"] = r->meta.object();
  } else {
    const auto& c = std::get<Conversation>(record);
    out["id"] = c.id;
    Json messages = Json::array();
    for (const auto& m : c.messages) {
      Json obj = {{"role", m.role}, {"content", m.content}};
      if (!m.meta.empty()) obj["meta"] = m.meta.object();
      messages.push_back(std::move(obj));
    }
    out["messages"] = std::move(messages);
    out["meta"] = c.meta.object();
  }
  if (!out["meta"].is_object()) throw Error("meta must be a JSON object").in_field("meta");
  return out;
}

Record decode_alpaca(Json&& object) {
  Instruction r;
  take_id(object, r.id);
  r.instruction = *take_string(object, "instruction", true);
  r.input = take_string(object, "input", false).value_or("");
  r.output = take_string(object, "output", false).value_or("");
  if (auto s = take_string(object, "system_prompt", false)) {
    r.system = std::move(*s);
  } else if (auto s2 = take_string(object, "system", false)) {
    r.system = std::move(*s2);
  }
  r.meta = to_meta(std::move(object));
  return r;
}

Json encode_alpaca(const Record& record) {
  Instruction r = as_instruction(record);
  Json out = start_object(r.id, r.meta);
  out["instruction"] = r.instruction;
  out["input"] = r.input;
  out["output"] = r.output;
  if (!r.system.empty()) out["system_prompt"] = r.system;
  append_meta(out, r.meta, Schema::alpaca);
  return out;
}

Record decode_sharegpt(Json&& object) {
  Conversation c;
  take_id(object, c.id);
  c.messages = take_messages(object, "conversations", "from", "value", true);
  c.meta = to_meta(std::move(object));
  return c;
}

Json encode_sharegpt(const Record& record) {
  Conversation c = as_conversation(record);
  Json out = start_object(c.id, c.meta);
  out["conversations"] = encode_messages(c.messages, "from", "value", true);
  append_meta(out, c.meta, Schema::sharegpt);
  return out;
}

Record decode_openai(Json&& object) {
  Conversation c;
  take_id(object, c.id);
  c.messages = take_messages(object, "messages", "role", "content", false);
  c.meta = to_meta(std::move(object));
  return c;
}

Json encode_openai(const Record& record) {
  Conversation c = as_conversation(record);
  Json out = start_object(c.id, c.meta);
  out["messages"] = encode_messages(c.messages, "role", "content", false);
  append_meta(out, c.meta, Schema::openai);
  return out;
}

// Formats whose prompt field holds instruction and input joined (FlanCoT JSONL, GSM8K, SeqEval):
// the split comes back from meta["input"] (see split_user_prompt).
Instruction instruction_from_prompt(std::string prompt, Json&& rest) {
  Instruction r;
  r.meta = to_meta(std::move(rest));
  auto [instruction, input] = split_user_prompt(std::move(prompt), r.meta);
  r.instruction = std::move(instruction);
  r.input = std::move(input);
  return r;
}

Record decode_flancot(Json&& object) {
  std::string id;
  take_id(object, id);
  std::string question = *take_string(object, "question", true);
  std::string response = *take_string(object, "response", true);
  std::string system = take_string(object, "system_prompt", false).value_or("");
  Instruction r = instruction_from_prompt(std::move(question), std::move(object));
  r.id = std::move(id);
  r.output = std::move(response);
  r.system = std::move(system);
  return r;
}

Json encode_flancot(const Record& record) {
  Instruction r = as_instruction(record);
  Meta meta = meta_with_input(r);
  Json out = start_object(r.id, meta);
  out["question"] = user_prompt(r);
  out["response"] = r.output;
  out["system_prompt"] = r.system;
  append_meta(out, meta, Schema::flancot);
  return out;
}

Record decode_gsm8k(Json&& object) {
  std::string id;
  take_id(object, id);
  std::string question = *take_string(object, "question", true);
  std::string answer = *take_string(object, "answer", true);
  Instruction r = instruction_from_prompt(std::move(question), std::move(object));
  r.id = std::move(id);
  r.output = std::move(answer);
  return r;
}

Json encode_gsm8k(const Record& record) {
  Instruction r = as_instruction(record);
  require_no_system(r, Schema::gsm8k);
  Meta meta = meta_with_input(r);
  Json out = start_object(r.id, meta);
  out["question"] = user_prompt(r);
  out["answer"] = r.output;
  append_meta(out, meta, Schema::gsm8k);
  return out;
}

// SeqEval prompts have no reference output; "iteration" (how many times the instruction was made
// sequential) stays in meta where it was.
Record decode_seqeval(Json&& object) {
  std::string id;
  take_id(object, id);
  std::string prompt = *take_string(object, "instruction", true);
  auto it = object.find("iteration");
  if (it == object.end()) throw Error("missing field 'iteration'").in_field("iteration");
  if (!it->is_number_integer()) throw_wrong_type("iteration", "an integer", *it);
  Instruction r = instruction_from_prompt(std::move(prompt), std::move(object));
  r.id = std::move(id);
  return r;
}

Json encode_seqeval(const Record& record) {
  Instruction r = as_instruction(record);
  require_no_system(r, Schema::seqeval);
  if (!r.output.empty()) throw Error("seqeval records have no output field").in_field("output");
  if (!r.meta.get_integer("iteration")) {
    throw Error("seqeval records need an integer 'iteration' (kept in meta)")
        .in_field("meta.iteration");
  }
  Meta meta = meta_with_input(r);
  Json out = start_object(r.id, meta);
  out["instruction"] = user_prompt(r);
  append_meta(out, meta, Schema::seqeval);
  return out;
}

// LIMA: turns are plain strings, alternating user and assistant, starting with the user.
Record decode_lima(Json&& object) {
  Conversation c;
  take_id(object, c.id);
  auto it = object.find("conversations");
  if (it == object.end()) throw Error("missing field 'conversations'").in_field("conversations");
  if (!it->is_array()) throw_wrong_type("conversations", "an array of strings", *it);
  for (size_t k = 0; k < it->size(); ++k) {
    const Json& turn = (*it)[k];
    if (!turn.is_string()) throw_wrong_type(fmt::format("conversations[{}]", k), "a string", turn);
    c.messages.push_back(
        {std::string(k % 2 == 0 ? kRoleUser : kRoleAssistant), turn.get<std::string>(), {}});
  }
  object.erase(it);
  c.meta = to_meta(std::move(object));
  return c;
}

Json encode_lima(const Record& record) {
  Conversation c = as_conversation(record);
  require_plain_messages(c, Schema::lima);
  Json turns = Json::array();
  for (size_t k = 0; k < c.messages.size(); ++k) {
    std::string_view expected = k % 2 == 0 ? kRoleUser : kRoleAssistant;
    if (c.messages[k].role != expected) {
      throw Error(fmt::format("lima turns alternate user and assistant starting with the user; "
                              "message {} is '{}'",
                              k, c.messages[k].role))
          .in_field(fmt::format("messages[{}]", k));
    }
    turns.push_back(c.messages[k].content);
  }
  Json out = start_object(c.id, c.meta);
  out["conversations"] = std::move(turns);
  append_meta(out, c.meta, Schema::lima);
  return out;
}

// SIFo: an optional shared context (the system message) and numbered instruction/answer pairs
// (user/assistant turns).
Record decode_sifo(Json&& object) {
  Conversation c;
  take_id(object, c.id);
  if (auto context = take_string(object, "context", false)) {
    c.messages.push_back({std::string(kRoleSystem), std::move(*context), {}});
  }
  int pairs = 0;
  for (int k = 1;; ++k) {
    std::string instruction_key = fmt::format("instruction_{}", k);
    std::string answer_key = fmt::format("answer_{}", k);
    bool has_instruction = object.contains(instruction_key),
         has_answer = object.contains(answer_key);
    if (!has_instruction && !has_answer) break;
    std::string instruction = *take_string(object, instruction_key, true);
    std::string answer = *take_string(object, answer_key, true);
    c.messages.push_back({std::string(kRoleUser), std::move(instruction), {}});
    c.messages.push_back({std::string(kRoleAssistant), std::move(answer), {}});
    pairs = k;
  }
  if (pairs == 0) throw Error("missing field 'instruction_1'").in_field("instruction_1");
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (it.key().starts_with("instruction_") || it.key().starts_with("answer_")) {
      throw Error(fmt::format("field '{}' does not follow instruction_{} / answer_{}", it.key(),
                              pairs, pairs))
          .in_field(it.key());
    }
  }
  c.meta = to_meta(std::move(object));
  return c;
}

Json encode_sifo(const Record& record) {
  Conversation c = as_conversation(record);
  require_plain_messages(c, Schema::sifo);
  Json out = start_object(c.id, c.meta);
  size_t k = 0;
  if (k < c.messages.size() && c.messages[k].role == kRoleSystem)
    out["context"] = c.messages[k++].content;
  int pair = 0;
  for (; k < c.messages.size(); k += 2) {
    ++pair;
    if (c.messages[k].role != kRoleUser || k + 1 >= c.messages.size() ||
        c.messages[k + 1].role != kRoleAssistant) {
      throw Error(fmt::format("sifo records are an optional system context and then user/assistant "
                              "pairs; message {} does not start a complete pair",
                              k))
          .in_field(fmt::format("messages[{}]", k));
    }
    out[fmt::format("instruction_{}", pair)] = c.messages[k].content;
    out[fmt::format("answer_{}", pair)] = c.messages[k + 1].content;
  }
  if (pair == 0) {
    throw Error("sifo records need at least one instruction/answer pair").in_field("messages");
  }
  append_meta(out, c.meta, Schema::sifo);
  return out;
}

// ---- FlanCoT TSV
// --------------------------------------------------------------------------------- FLAN reads
// these files one line per example, splits on tabs and turns the two characters "\n" into a newline
// in the question and the rationale (flan/v2 preprocessors.simple_cot_tsv). There is no quoting.
// The rationale and answer become one output with FLAN's own CoT target template
// "{rationale} So the answer is {answer}." so that the record trains like FLAN's CoT data.
constexpr std::string_view kAnswerMarker = "So the answer is ";

std::string unescape_newlines(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == 'n') {
      out.push_back('\n');
      ++i;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string escape_for_tsv(const std::string& text, const char* field, bool newlines_allowed) {
  if (text.find('\t') != std::string::npos || text.find('\r') != std::string::npos) {
    throw Error("FlanCoT TSV cannot hold a tab or carriage return in a field").in_field(field);
  }
  if (!newlines_allowed && text.find('\n') != std::string::npos) {
    throw Error("FlanCoT TSV cannot hold a newline in the answer").in_field(field);
  }
  if (newlines_allowed && text.find("\\n") != std::string::npos) {
    // FLAN would read the two characters back as a newline.
    throw Error("FlanCoT TSV cannot hold a literal backslash followed by 'n' (it means a newline)")
        .in_field(field);
  }
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

std::optional<Schema> guess_schema(const Json& record) {
  if (!record.is_object()) return std::nullopt;
  auto has = [&](const char* key) { return record.contains(key); };
  bool only_seqit_keys = true;
  for (auto it = record.begin(); it != record.end(); ++it) {
    static const std::initializer_list<std::string_view> kKeys = {
        "id", "system", "instruction", "input", "output", "messages", "meta"};
    if (std::find(kKeys.begin(), kKeys.end(), it.key()) == kKeys.end()) only_seqit_keys = false;
  }
  if (only_seqit_keys && has("meta") && record["meta"].is_object() &&
      has("instruction") != has("messages")) {
    return Schema::seqit;
  }
  if (has("messages")) return Schema::openai;
  if (has("conversations")) {
    const Json& c = record["conversations"];
    if (c.is_array() && !c.empty() && c[0].is_string()) return Schema::lima;
    return Schema::sharegpt;
  }
  if (has("instruction_1")) return Schema::sifo;
  if (has("question")) {
    if (has("response")) return Schema::flancot;
    if (has("answer")) return Schema::gsm8k;
    return std::nullopt;
  }
  if (has("instruction")) {
    if (has("iteration") && !has("output")) return Schema::seqeval;
    return Schema::alpaca;
  }
  return std::nullopt;
}

Record decode(Schema schema, Json&& record) {
  if (!record.is_object()) {
    throw Error(fmt::format("expected a JSON object, found {}", type_name(record)));
  }
  switch (schema) {
    case Schema::seqit:
      return decode_seqit(std::move(record));
    case Schema::alpaca:
      return decode_alpaca(std::move(record));
    case Schema::sharegpt:
      return decode_sharegpt(std::move(record));
    case Schema::openai:
      return decode_openai(std::move(record));
    case Schema::flancot:
      return decode_flancot(std::move(record));
    case Schema::lima:
      return decode_lima(std::move(record));
    case Schema::seqeval:
      return decode_seqeval(std::move(record));
    case Schema::sifo:
      return decode_sifo(std::move(record));
    case Schema::gsm8k:
      return decode_gsm8k(std::move(record));
  }
  throw Error("unknown schema");
}

Json encode(Schema schema, const Record& record) {
  switch (schema) {
    case Schema::seqit:
      return encode_seqit(record);
    case Schema::alpaca:
      return encode_alpaca(record);
    case Schema::sharegpt:
      return encode_sharegpt(record);
    case Schema::openai:
      return encode_openai(record);
    case Schema::flancot:
      return encode_flancot(record);
    case Schema::lima:
      return encode_lima(record);
    case Schema::seqeval:
      return encode_seqeval(record);
    case Schema::sifo:
      return encode_sifo(record);
    case Schema::gsm8k:
      return encode_gsm8k(record);
  }
  throw Error("unknown schema");
}

Record decode_flancot_tsv(std::string_view line) {
  if (size_t bad = utf8::first_invalid(line); bad != std::string_view::npos) {
    throw Error(fmt::format("invalid UTF-8 (byte 0x{:02x})", static_cast<unsigned char>(line[bad])))
        .at_line(0, static_cast<int64_t>(bad) + 1);
  }
  std::vector<std::string_view> fields;
  size_t start = 0;
  for (;;) {
    size_t tab = line.find('\t', start);
    fields.push_back(
        line.substr(start, tab == std::string_view::npos ? std::string_view::npos : tab - start));
    if (tab == std::string_view::npos) break;
    start = tab + 1;
  }
  if (fields.size() != 3) {
    throw Error(fmt::format(
        "expected 3 tab-separated fields (question, answer, rationale), found {}", fields.size()));
  }
  Instruction r;
  r.instruction = unescape_newlines(fields[0]);
  std::string answer(fields[1]);
  std::string rationale = unescape_newlines(fields[2]);
  r.output = rationale.empty() ? fmt::format("{}{}.", kAnswerMarker, answer)
                               : fmt::format("{} {}{}.", rationale, kAnswerMarker, answer);
  return r;
}

std::string encode_flancot_tsv(const Record& record) {
  Instruction r = as_instruction(record);
  require_no_system(r, Schema::flancot);
  if (!r.meta.empty()) {
    throw Error(fmt::format("FlanCoT TSV has only question, answer and rationale columns; cannot "
                            "write the extra fields {}",
                            fmt::join(r.meta.keys(), ", ")))
        .in_field("meta");
  }
  // Inverse of decode_flancot_tsv: output = "[rationale ]So the answer is <answer>."
  const std::string& out = r.output;
  size_t marker = out.ends_with('.') ? out.rfind(kAnswerMarker, out.size() - 1) : std::string::npos;
  if (marker == std::string::npos || (marker > 0 && out[marker - 1] != ' ')) {
    throw Error(fmt::format("FlanCoT TSV needs an output of the form '<rationale> {}<answer>.'",
                            kAnswerMarker))
        .in_field("output");
  }
  std::string rationale = marker == 0 ? std::string() : out.substr(0, marker - 1);
  std::string answer =
      out.substr(marker + kAnswerMarker.size(), out.size() - 1 - (marker + kAnswerMarker.size()));
  return escape_for_tsv(user_prompt(r), "instruction", true) + "\t" +
         escape_for_tsv(answer, "output", false) + "\t" + escape_for_tsv(rationale, "output", true);
}

// ---- Python-compatible JSON text
// -----------------------------------------------------------------

namespace {
void dump_string(const std::string& s, bool ascii, std::string& out) {
  if (size_t bad = utf8::first_invalid(s); bad != std::string::npos) {
    throw Error(fmt::format("cannot write invalid UTF-8 (byte {} of a string)", bad));
  }
  append_python_json_string(out, s, ascii);
}

void newline_indent(const WriteOptions& style, int level, std::string& out) {
  out.push_back('\n');
  out.append(static_cast<size_t>(style.indent) * static_cast<size_t>(level), ' ');
}
}  // namespace

void dump(const Json& value, const WriteOptions& style, int level, std::string& out) {
  switch (value.type()) {
    case Json::value_t::string:
      dump_string(value.get_ref<const std::string&>(), style.ascii, out);
      return;
    case Json::value_t::array:
    case Json::value_t::object: {
      bool is_object = value.is_object();
      out.push_back(is_object ? '{' : '[');
      if (value.empty()) {
        out.push_back(is_object ? '}' : ']');
        return;
      }
      bool first = true;
      for (auto it = value.begin(); it != value.end(); ++it) {
        if (!first) out += style.indent >= 0 ? "," : ", ";
        first = false;
        if (style.indent >= 0) newline_indent(style, level + 1, out);
        if (is_object) {
          dump_string(it.key(), style.ascii, out);
          out += ": ";
        }
        dump(*it, style, level + 1, out);
      }
      if (style.indent >= 0) newline_indent(style, level, out);
      out.push_back(is_object ? '}' : ']');
      return;
    }
    default:
      out += value.dump();
      return;  // null, booleans and numbers read the same in Python
  }
}

std::string expected_fields(Schema schema, Container container) {
  switch (schema) {
    case Schema::seqit:
      return "{id, system, instruction, input, output, meta} or {id, messages: [{role, content}], "
             "meta}";
    case Schema::alpaca:
      return "{instruction, input?, output?, system_prompt?}";
    case Schema::sharegpt:
      return "{conversations: [{from, value}, ...]}";
    case Schema::openai:
      return "{messages: [{role, content}, ...]}";
    case Schema::flancot:
      return container == Container::tsv ? "question<TAB>answer<TAB>rationale"
                                         : "{question, response, system_prompt?}";
    case Schema::lima:
      return "{conversations: [\"user turn\", \"assistant turn\", ...]}";
    case Schema::seqeval:
      return "{instruction, iteration}";
    case Schema::sifo:
      return "{id, context?, instruction_1, answer_1, ...}";
    case Schema::gsm8k:
      return "{question, answer}";
  }
  return "";
}

}  // namespace seqit::data::codec
