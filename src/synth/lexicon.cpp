#include "synth/lexicon.h"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "util/error.h"

namespace seqit::synth {

std::string_view kind_name(Kind kind) {
  switch (kind) {
    case Kind::kEnglish:
      return "english";
    case Kind::kForeign:
      return "vellan";
    case Kind::kUpper:
      return "upper";
    case Kind::kNumbers:
      return "numbers";
    case Kind::kFacts:
      return "facts";
  }
  return "?";
}

const std::vector<std::string>& fact_keys() {
  static const std::vector<std::string> words = {
      "cat",  "dog",  "fox",  "owl",  "bee",  "cow",  "pig",  "hen",  "ant",  "bat",  "elk",
      "yak",  "eel",  "rat",  "emu",  "ram",  "hat",  "cup",  "box",  "pen",  "map",  "bag",
      "bed",  "car",  "bus",  "ship", "tree", "lamp", "door", "book", "ring", "coin", "shoe",
      "sock", "kite", "drum", "bell", "fish", "frog", "moon", "star", "sun"};
  return words;
}

const std::vector<std::string>& fact_values() {
  static const std::vector<std::string> words = {"red",   "blue", "green", "pink",  "gray", "black",
                                                 "white", "gold", "tall",  "small", "big",  "old",
                                                 "new",   "hot",  "cold",  "soft",  "loud", "fast",
                                                 "slow",  "dark", "wet",   "dry",   "odd",  "shy"};
  return words;
}

const std::vector<std::string>& english_words() {
  static const std::vector<std::string> words = [] {
    std::vector<std::string> w = fact_keys();
    w.insert(w.end(), fact_values().begin(), fact_values().end());
    return w;
  }();
  return words;
}

// Vellan word i is the consonant-vowel-consonant-vowel word number (i * 7919 + 13) mod 4900 (14
// consonants x 5 vowels, squared); 7919 is prime to 4900, so the words are distinct, and they
// scatter so that neighbouring English words get unrelated translations. A result that happens
// to be an English word is skipped for the next number.
const std::vector<std::string>& vellan_words() {
  static const std::vector<std::string> words = [] {
    constexpr std::string_view consonants = "bdfgklmnprstvz";
    constexpr std::string_view vowels = "aeiou";
    constexpr uint64_t syllables = 14 * 5;
    std::unordered_set<std::string> english(english_words().begin(), english_words().end());
    std::vector<std::string> out;
    uint64_t step = 0;
    while (out.size() < english_words().size()) {
      uint64_t j = (step++ * 7919 + 13) % (syllables * syllables);
      uint64_t a = j / syllables, b = j % syllables;
      std::string w = {consonants[a / 5], vowels[a % 5], consonants[b / 5], vowels[b % 5]};
      if (english.count(w) || std::find(out.begin(), out.end(), w) != out.end()) continue;
      out.push_back(std::move(w));
    }
    return out;
  }();
  return words;
}

namespace {
struct Dictionary {
  std::unordered_map<std::string, std::string> forward, backward;
};
const Dictionary& dictionary() {
  static const Dictionary d = [] {
    Dictionary d;
    for (size_t i = 0; i < english_words().size(); ++i) {
      d.forward.emplace(english_words()[i], vellan_words()[i]);
      d.backward.emplace(vellan_words()[i], english_words()[i]);
    }
    return d;
  }();
  return d;
}
}  // namespace

std::optional<std::string> to_vellan(std::string_view english_word) {
  auto it = dictionary().forward.find(std::string(english_word));
  if (it == dictionary().forward.end()) return std::nullopt;
  return it->second;
}

std::optional<std::string> to_english(std::string_view vellan_word) {
  auto it = dictionary().backward.find(std::string(vellan_word));
  if (it == dictionary().backward.end()) return std::nullopt;
  return it->second;
}

bool is_english_word(std::string_view word) {
  return dictionary().forward.count(std::string(word)) > 0;
}
bool is_vellan_word(std::string_view word) {
  return dictionary().backward.count(std::string(word)) > 0;
}

namespace {
bool is_mark(char c) {
  return c == ',' || c == '.' || c == ':' || c == ';' || c == '?';
}
bool is_mark_token(std::string_view t) {
  return t.size() == 1 && is_mark(t[0]);
}
bool is_number_token(std::string_view t) {
  if (t.empty() || t.size() > 2) return false;
  if (!std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  return t.size() == 1 || t[0] != '0';  // no leading zeros: "7", never "07"
}
}  // namespace

std::vector<std::string> split_world_tokens(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  auto flush = [&] {
    if (!word.empty()) out.push_back(std::move(word));
    word.clear();
  };
  for (char c : text) {
    if (c == '\n') {
      flush();
      out.emplace_back("\n");
    } else if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
      flush();
    } else if (is_mark(c)) {
      flush();
      out.emplace_back(1, c);
    } else {
      word.push_back(c);
    }
  }
  flush();
  return out;
}

std::string join_world_tokens(const std::vector<std::string>& tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    bool glue = i == 0 || is_mark_token(t) || t == "\n" || tokens[i - 1] == "\n";
    if (!glue) out.push_back(' ');
    out += t;
  }
  return out;
}

std::string canonical_text(std::string_view text) {
  return join_world_tokens(split_world_tokens(text));
}

std::string to_upper_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return out;
}

std::string to_lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::optional<Facts> parse_facts(std::string_view text) {
  std::vector<std::string> t = split_world_tokens(text);
  // k : v ( , k : v )* . q ?
  Facts facts;
  size_t i = 0;
  auto is_key = [](const std::string& w) {
    return std::find(fact_keys().begin(), fact_keys().end(), w) != fact_keys().end();
  };
  auto is_value = [](const std::string& w) {
    return std::find(fact_values().begin(), fact_values().end(), w) != fact_values().end();
  };
  for (;;) {
    if (i + 3 > t.size() || !is_key(t[i]) || t[i + 1] != ":" || !is_value(t[i + 2]))
      return std::nullopt;
    for (const auto& [k, v] : facts.pairs)
      if (k == t[i]) return std::nullopt;  // keys are distinct, so the answer is unique
    facts.pairs.emplace_back(t[i], t[i + 2]);
    i += 3;
    if (i < t.size() && t[i] == ",") {
      ++i;
      continue;
    }
    break;
  }
  if (i + 3 != t.size() || t[i] != "." || t[i + 2] != "?") return std::nullopt;
  facts.question = t[i + 1];
  for (const auto& [k, v] : facts.pairs)
    if (k == facts.question) return facts;
  return std::nullopt;
}

std::string render_facts(const Facts& facts) {
  std::string out;
  for (size_t i = 0; i < facts.pairs.size(); ++i) {
    if (i > 0) out += ", ";
    out += facts.pairs[i].first + ": " + facts.pairs[i].second;
  }
  return out + ". " + facts.question + "?";
}

std::optional<Kind> classify_text(std::string_view text) {
  std::vector<std::string> t = split_world_tokens(text);
  if (t.empty()) return std::nullopt;
  if (parse_facts(text)) return Kind::kFacts;
  auto all = [&](auto pred) { return std::all_of(t.begin(), t.end(), pred); };
  if (all([](const std::string& w) { return is_number_token(w); })) return Kind::kNumbers;
  if (all([](const std::string& w) { return is_english_word(w); })) return Kind::kEnglish;
  if (all([](const std::string& w) { return is_vellan_word(w); })) return Kind::kForeign;
  if (all([](const std::string& w) {
        std::string lower = to_lower_ascii(w);
        return w == to_upper_ascii(w) && (is_english_word(lower) || is_vellan_word(lower));
      }))
    return Kind::kUpper;
  return std::nullopt;
}

}  // namespace seqit::synth
