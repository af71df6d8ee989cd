#include "data/record.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "util/error.h"

namespace seqit::data {
using nlohmann::ordered_json;

namespace {
const ordered_json& empty_object() {
  static const ordered_json kEmpty = ordered_json::object();
  return kEmpty;
}
}  // namespace

Meta::Meta() = default;
Meta::~Meta() = default;
Meta::Meta(const Meta& other)
    : object_(other.object_ && !other.object_->empty()
                  ? std::make_unique<ordered_json>(*other.object_)
                  : nullptr) {}
Meta& Meta::operator=(const Meta& other) {
  if (this != &other) *this = Meta(other);
  return *this;
}
Meta::Meta(Meta&& other) noexcept = default;
Meta& Meta::operator=(Meta&& other) noexcept = default;

bool Meta::empty() const {
  return !object_ || object_->empty();
}
size_t Meta::size() const {
  return object_ ? object_->size() : 0;
}

bool Meta::contains(std::string_view key) const {
  return object_ && object_->is_object() && object_->contains(key);
}

std::vector<std::string> Meta::keys() const {
  std::vector<std::string> out;
  if (!object_ || !object_->is_object()) return out;
  for (auto it = object_->begin(); it != object_->end(); ++it) out.push_back(it.key());
  return out;
}

std::optional<std::string> Meta::get_string(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  const auto& v = object_->find(key).value();
  if (!v.is_string()) return std::nullopt;
  return v.get<std::string>();
}

std::optional<int64_t> Meta::get_integer(std::string_view key) const {
  if (!contains(key)) return std::nullopt;
  const auto& v = object_->find(key).value();
  if (v.is_number_integer()) return v.get<int64_t>();
  return std::nullopt;
}

void Meta::set_string(const std::string& key, std::string value) {
  object()[key] = std::move(value);
}
void Meta::set_integer(const std::string& key, int64_t value) {
  object()[key] = value;
}

bool Meta::erase(std::string_view key) {
  if (!contains(key)) return false;
  object_->erase(object_->find(key));
  return true;
}

std::string Meta::dump() const {
  return object().dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

const ordered_json& Meta::object() const {
  return object_ ? *object_ : empty_object();
}

ordered_json& Meta::object() {
  if (!object_) object_ = std::make_unique<ordered_json>(ordered_json::object());
  return *object_;
}

bool Meta::operator==(const Meta& other) const {
  if (empty() || other.empty()) return empty() == other.empty();
  // ordered_json compares objects key by key in order: key order is part of a record's identity,
  // since it decides the bytes written back.
  return *object_ == *other.object_;
}

const std::string& record_id(const Record& record) {
  return std::visit([](const auto& r) -> const std::string& { return r.id; }, record);
}

const Meta& record_meta(const Record& record) {
  return std::visit([](const auto& r) -> const Meta& { return r.meta; }, record);
}

std::string user_prompt(const Instruction& instruction) {
  if (instruction.input.empty()) return instruction.instruction;
  return instruction.instruction + " " + instruction.input;
}

Meta meta_with_input(const Instruction& instruction) {
  Meta meta = instruction.meta;
  if (!instruction.input.empty()) {
    if (meta.contains(kInputMetaKey)) {
      throw Error(fmt::format("meta has a field '{}', which is where the input goes when the "
                              "instruction and input are joined into one prompt; rename it",
                              kInputMetaKey))
          .in_field("meta");
    }
    meta.set_string(std::string(kInputMetaKey), instruction.input);
  }
  return meta;
}

Conversation to_conversation(const Instruction& instruction) {
  Conversation out;
  out.id = instruction.id;
  out.meta = meta_with_input(instruction);
  if (!instruction.system.empty()) {
    out.messages.push_back({std::string(kRoleSystem), instruction.system, {}});
  }
  out.messages.push_back({std::string(kRoleUser), user_prompt(instruction), {}});
  if (!instruction.output.empty()) {
    out.messages.push_back({std::string(kRoleAssistant), instruction.output, {}});
  }
  return out;
}

std::optional<std::string> why_not_instruction(const Conversation& conversation) {
  const auto& m = conversation.messages;
  size_t i = 0;
  if (i < m.size() && m[i].role == kRoleSystem) ++i;
  if (i >= m.size() || m[i].role != kRoleUser) {
    return fmt::format(
        "message {} must be the user turn (found {}); an instruction is an optional "
        "system message, one user message and an optional assistant message",
        i, i < m.size() ? "role '" + m[i].role + "'" : "no message");
  }
  ++i;
  if (i < m.size() && m[i].role == kRoleAssistant) ++i;
  if (i < m.size()) {
    size_t user_turns = 0;
    for (const auto& msg : m) user_turns += msg.role == kRoleUser;
    return fmt::format(
        "the conversation has {} messages ({} user turns); only a single-turn "
        "conversation (optional system, one user, optional assistant) maps to an "
        "instruction",
        m.size(), user_turns);
  }
  for (size_t k = 0; k < m.size(); ++k) {
    if (!m[k].meta.empty()) {
      return fmt::format("message {} has extra fields ({}) that an instruction cannot hold", k,
                         fmt::join(m[k].meta.keys(), ", "));
    }
  }
  return std::nullopt;
}

std::pair<std::string, std::string> split_user_prompt(std::string prompt, Meta& meta) {
  std::optional<std::string> input = meta.get_string(kInputMetaKey);
  if (input && !input->empty() && prompt.size() > input->size() && prompt.ends_with(*input) &&
      prompt[prompt.size() - input->size() - 1] == ' ') {
    prompt.resize(prompt.size() - input->size() - 1);
    meta.erase(kInputMetaKey);
    return {std::move(prompt), std::move(*input)};
  }
  return {std::move(prompt), std::string()};
}

Instruction to_instruction(const Conversation& conversation) {
  if (auto why = why_not_instruction(conversation)) throw Error(*why).in_field("messages");
  Instruction out;
  out.id = conversation.id;
  out.meta = conversation.meta;
  size_t i = 0;
  const auto& m = conversation.messages;
  if (m[i].role == kRoleSystem) out.system = m[i++].content;
  auto [instruction, input] = split_user_prompt(m[i++].content, out.meta);
  out.instruction = std::move(instruction);
  out.input = std::move(input);
  if (i < m.size()) out.output = m[i].content;
  return out;
}

}  // namespace seqit::data
