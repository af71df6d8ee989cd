// Constrained decoding: a regular language over output bytes that generation must stay inside, so
// that an answer parses by construction (a judge's verdict, a JSON object, one of a few choices).
//
// A Constraint is compiled once from a regular expression, a list of choices, a JSON schema (the
// subset OpenAI's structured outputs accept) or "any JSON object", into a deterministic automaton
// over bytes (built eagerly, then immutable). For a tokenizer, the tokens allowed in an automaton
// state are found by walking a trie of every token's bytes through the automaton — a dead branch
// prunes all tokens that share its prefix — and cached per state, so a decoding step costs a cache
// lookup plus masking the logits. Shared, read-only, by any number of requests and threads.
//
// Finishing within the token budget: each state knows the fewest bytes that still complete the
// language. Where the tokenizer has a token for every byte (byte-fallback SentencePiece, byte-level
// BPE) a token count >= that many bytes always suffices, so the mask keeps only tokens after which
// the rest still fits the request's remaining tokens: a constrained request that was given enough
// tokens to finish at all ends complete instead of cut off mid-string.
//
// Regular expressions: full-match, byte-oriented: literals (UTF-8 characters are single atoms),
// `.` (any UTF-8 character but newline), classes `[a-z_]`, `[^"]` (ASCII members; a negated class
// also admits every non-ASCII character), `\d \w \s \D \W \S`, escapes `\n \t \r \f \v \xHH \uHHHH`
// and escaped punctuation, groups `( )` and `(?: )`, alternation `|`, quantifiers `* + ? {m} {m,}
// {m,n}` (bounded repeats up to 1000). `^` at the start and `$` at the end are accepted and
// ignored. Backreferences and lookaround are not regular and are refused.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace seqit::infer {

using tokenizer::TokenId;

// Every non-special token's output bytes as a trie, built once per tokenizer.
class TokenTrie {
 public:
  explicit TokenTrie(const tokenizer::Tokenizer& tokenizer);
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> children;  // byte -> node, sorted by byte
    std::vector<TokenId> tokens;                        // tokens whose bytes end here
  };
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::string& bytes(TokenId id) const { return bytes_[static_cast<size_t>(id)]; }
  size_t vocab_size() const { return bytes_.size(); }
  // Whether every byte value is some token's whole output (then byte budgets are token budgets).
  bool has_every_byte() const { return every_byte_; }
  // Tokens whose leading space a text that starts with them does not show (SentencePiece "▁"
  // words: infer/text_stream.h drops_leading_space), in id order.
  const std::vector<TokenId>& space_dropping() const { return space_dropping_; }
  // Unique in the process (never reused, unlike an address): what cached masks are keyed by.
  uint64_t id() const { return id_; }

 private:
  uint64_t id_;
  std::vector<Node> nodes_;
  std::vector<std::string> bytes_;
  std::vector<TokenId> space_dropping_;
  bool every_byte_ = false;
};

class Constraint {
 public:
  // Compile; throw seqit::Error naming the problem (position in the pattern, path in the schema).
  static std::shared_ptr<const Constraint> regex(std::string_view pattern);
  static std::shared_ptr<const Constraint> choice(const std::vector<std::string>& options);
  // The JSON schema subset of OpenAI's structured outputs: object (properties, required,
  // additionalProperties false), array (items, minItems, maxItems), string (enum, const, minLength,
  // maxLength, pattern), number, integer, boolean, null, enum / const of any JSON value, anyOf,
  // type lists, $ref into $defs / definitions (not recursive). Output is compact JSON, properties
  // in the schema's order (ordered_json keeps the order of the text it was parsed from); optional
  // properties may be left out. Validation keywords it cannot enforce (format, minimum, ...) are
  // refused rather than ignored.
  static std::shared_ptr<const Constraint> json_schema(const nlohmann::ordered_json& schema);
  // Any JSON object (JSON mode), compact, nested up to `depth` levels of objects / arrays.
  static std::shared_ptr<const Constraint> json_object(int depth = 3);

  // The regular expression it was compiled from (schemas and choices are compiled to one).
  const std::string& pattern() const { return pattern_; }
  std::string describe() const { return description_; }

  // Automaton states: 0 is the start; kDead is no state.
  static constexpr int32_t kDead = -1;
  int32_t start() const { return 0; }
  int32_t next(int32_t state, uint8_t byte) const {
    return transitions_[static_cast<size_t>(state) * 256 + byte];
  }
  int32_t advance(int32_t state, std::string_view bytes) const;
  bool accepting(int32_t state) const { return accepting_[static_cast<size_t>(state)] != 0; }
  // Fewest bytes from `state` to an accepting state (0 when accepting).
  int32_t distance(int32_t state) const { return distance_[static_cast<size_t>(state)]; }
  // Whether the language is finished in `state`: accepting and no byte can follow.
  bool complete(int32_t state) const;
  size_t states() const { return accepting_.size(); }
  // Whether `text` is in the language.
  bool matches(std::string_view text) const;

  // The tokens allowed in `state`, each with the state it leads to (sorted by token id). Cached
  // per (trie, state) for the 8 most recent tries; thread-safe.
  struct Allowed {
    TokenId token;
    int32_t next;
  };
  const std::vector<Allowed>& allowed(const TokenTrie& trie, int32_t state) const {
    return mask(trie, state).allowed;
  }
  // The same with what makes masking a row of logits cheap: the largest distance() after an
  // allowed token (a budget at least that large filters nothing), and, when more than half the
  // vocabulary is allowed (inside a JSON string), the ids that are not (special tokens included)
  // so that the row can be copied and the few excluded ones cleared.
  struct Mask {
    std::vector<Allowed> allowed;
    int32_t max_distance = 0;
    bool has_excluded = false;
    std::vector<TokenId> excluded;
  };
  const Mask& mask(const TokenTrie& trie, int32_t state) const;

 private:
  Constraint() = default;
  static std::shared_ptr<const Constraint> compile(std::string pattern, std::string description);

  std::string pattern_, description_;
  std::vector<int32_t> transitions_;  // states x 256
  std::vector<uint8_t> accepting_;
  std::vector<int32_t> distance_;
  mutable std::mutex mutex_;
  mutable std::map<uint64_t, std::vector<std::unique_ptr<Mask>>> masks_;  // by TokenTrie::id
};

// JSON schema -> the regular expression json_schema() compiles (exposed for tests and docs).
std::string json_schema_regex(const nlohmann::ordered_json& schema);
// Any JSON object (JSON mode), nested up to `depth` levels -> the regular expression
// json_object() compiles.
std::string any_json_object_regex(int depth = 3);
// A regular expression matching exactly `text` (metacharacters escaped).
std::string regex_escape(std::string_view text);

}  // namespace seqit::infer
