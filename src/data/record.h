// The two record types every instruction format is normalised into, and the rules that convert
// one into the other (docs/data.md, "Conversion rules").
//
//   Instruction  {id, system, instruction, input, output, meta}   Alpaca-like, single turn
//   Conversation {id, messages[{role, content, meta}], meta}     chat-like, any number of turns
//
// `meta` holds every field of a source record that seqit does not interpret, in file order, so
// that a record written back (to its own format or to seqit JSONL) keeps them.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace seqit::data {

// A JSON object of uninterpreted fields, keys in insertion order. Value type: copy and compare it
// like a string. Code that includes <nlohmann/json.hpp> can reach the object itself.
class Meta {
 public:
  Meta();
  ~Meta();
  Meta(const Meta& other);
  Meta& operator=(const Meta& other);
  Meta(Meta&& other) noexcept;
  Meta& operator=(Meta&& other) noexcept;

  bool empty() const;
  size_t size() const;
  bool contains(std::string_view key) const;
  std::vector<std::string> keys() const;
  // The value of `key` if it is a JSON string.
  std::optional<std::string> get_string(std::string_view key) const;
  // The value of `key` if it is a JSON integer.
  std::optional<int64_t> get_integer(std::string_view key) const;
  void set_string(const std::string& key, std::string value);
  void set_integer(const std::string& key, int64_t value);
  // Removes `key`; returns whether it was there.
  bool erase(std::string_view key);
  // Compact JSON text of the object ("{}" when empty).
  std::string dump() const;

  // The object itself (an empty object when nothing was set). Assigning a non-object through the
  // mutable reference is a programming error and is rejected when the record is written.
  const nlohmann::ordered_json& object() const;
  nlohmann::ordered_json& object();

  bool operator==(const Meta& other) const;

 private:
  std::unique_ptr<nlohmann::ordered_json> object_;  // null = empty
};

inline constexpr std::string_view kRoleSystem = "system";
inline constexpr std::string_view kRoleUser = "user";
inline constexpr std::string_view kRoleAssistant = "assistant";

struct Message {
  std::string role;  // "system", "user", "assistant", or a format's own role kept verbatim ("tool")
  std::string content;
  Meta meta;  // extra fields of the message object (e.g. "name", "weight")
  bool operator==(const Message&) const = default;
};

struct Instruction {
  std::string id;  // the source record's id ("" when it had none)
  std::string system;
  std::string instruction;
  std::string input;
  std::string output;
  Meta meta;
  bool operator==(const Instruction&) const = default;
};

struct Conversation {
  std::string id;
  std::vector<Message> messages;
  Meta meta;
  bool operator==(const Conversation&) const = default;
};

using Record = std::variant<Instruction, Conversation>;

const std::string& record_id(const Record& record);
const Meta& record_meta(const Record& record);

// ---- Conversion rules
// ---------------------------------------------------------------------------- The meta key that
// remembers how a user turn splits into instruction and input, so that Instruction -> Conversation
// -> Instruction (or -> a format without an input field -> back) gives the same record. See
// user_prompt().
inline constexpr std::string_view kInputMetaKey = "input";

// The text of the user turn an Instruction becomes: `instruction`, followed by one space and
// `input` when the input is not empty. This is how the SIT pipeline and its training code join
// them (SIT_SPEC §1.8 and §3.2: user = instruction + " " + input).
std::string user_prompt(const Instruction& instruction);

// Instruction -> Conversation: a system message when `system` is not empty, the user turn
// (user_prompt), and an assistant message when `output` is not empty. When `input` is not empty its
// text is also kept in meta["input"] so that to_instruction() can split the turn again.
// Throws seqit::Error if meta already has an "input" key that would be overwritten.
Conversation to_conversation(const Instruction& instruction);

// Conversation -> Instruction, defined for single-turn conversations only: an optional system
// message, one user message, and an optional assistant message, in that order, without per-message
// extra fields. instruction = the user turn (split back into instruction + input when meta["input"]
// is a non-empty string and the turn ends with " " + that string; the key is then dropped).
// Throws seqit::Error (field "messages") saying why for anything else, e.g. multi-turn chats.
Instruction to_instruction(const Conversation& conversation);

// Why `conversation` cannot become an Instruction, or nullopt when it can.
std::optional<std::string> why_not_instruction(const Conversation& conversation);

// The meta an Instruction carries into a record without an input field: its own meta plus
// meta["input"] = input when the input is not empty. Throws seqit::Error (field "meta") when meta
// already has an "input" key.
Meta meta_with_input(const Instruction& instruction);

// Splits a prompt written by a format without an input field back into instruction and input,
// using and consuming meta["input"] as to_instruction() does. Returns {instruction, input}.
std::pair<std::string, std::string> split_user_prompt(std::string prompt, Meta& meta);

}  // namespace seqit::data
