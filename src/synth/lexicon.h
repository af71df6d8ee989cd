// The closed world of words the synthetic tasks operate on, and the kinds of text they pass
// between steps.
//
// Everything is lower-case ASCII except the output of the upper-case task. The English words are
// short common nouns and adjectives; Vellan is an invented language whose words are built from
// consonant–vowel syllables, one Vellan word per English word (a bijection), so that translation
// word by word is exact in both directions. Facts ("key: value" pairs followed by a question) use
// nouns as keys and adjectives as values:
//
//   cat: red, dog: blue, fox: tall. dog?      -> lookup gives "blue"
//
// Text is split into world tokens by split_world_tokens(): spaces separate tokens, and each of the
// marks , . : ; ? is a token of its own (a newline is the token "\n"). Checkers compare token
// lists, so they ignore spacing but never spelling.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::synth {

// What a piece of text is, as far as the tasks care. A task accepts some kinds and gives one.
enum class Kind {
  kEnglish,  // lower-case English words from english_words()
  kForeign,  // lower-case Vellan words from vellan_words()
  kUpper,    // upper-case words (English or Vellan), the output of the upper-case task
  kNumbers,  // decimal integers 0..99
  kFacts,    // "k1: v1, k2: v2. q?" with distinct keys, q one of them
};
inline constexpr Kind kAllKinds[] = {Kind::kEnglish, Kind::kForeign, Kind::kUpper, Kind::kNumbers,
                                     Kind::kFacts};
std::string_view kind_name(Kind kind);

// The lexicon. english_words() = fact_keys() ++ fact_values(), in a fixed order; vellan_words()[i]
// translates english_words()[i].
const std::vector<std::string>& fact_keys();    // nouns
const std::vector<std::string>& fact_values();  // adjectives
const std::vector<std::string>& english_words();
const std::vector<std::string>& vellan_words();
std::optional<std::string> to_vellan(std::string_view english_word);
std::optional<std::string> to_english(std::string_view vellan_word);
bool is_english_word(std::string_view word);
bool is_vellan_word(std::string_view word);

// Numbers the world can write: 0..kMaxNumber (inputs hold 0..19; sums of up to five stay below).
inline constexpr int kMaxNumber = 99;

// World tokens of `text` (see the header comment).
std::vector<std::string> split_world_tokens(std::string_view text);
// Tokens joined back in the canonical spelling: one space between words, none before , . : ; ?
std::string join_world_tokens(const std::vector<std::string>& tokens);
// join_world_tokens(split_world_tokens(text)).
std::string canonical_text(std::string_view text);

std::string to_upper_ascii(std::string_view s);
std::string to_lower_ascii(std::string_view s);

// Facts: the parsed form of a kFacts text.
struct Facts {
  std::vector<std::pair<std::string, std::string>> pairs;  // key -> value, in text order
  std::string question;                                    // one of the keys
  bool operator==(const Facts&) const = default;
};
std::optional<Facts> parse_facts(std::string_view text);
std::string render_facts(const Facts& facts);

// The kind of `text`, or nullopt when it is none of them (empty, mixed, unknown words).
// Lower-case words belong to one language only (the test checks the lexicons are disjoint).
std::optional<Kind> classify_text(std::string_view text);

}  // namespace seqit::synth
