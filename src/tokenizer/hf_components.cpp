#include "tokenizer/hf_components.h"

#include <utf8proc.h>

#include <cstdlib>
#include <nlohmann/json.hpp>

#include "tokenizer/regex.h"
#include "util/error.h"
#include "util/utf8.h"

namespace seqit::tokenizer {

using nlohmann::json;

namespace {

constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

std::string type_of(const json& config, const std::string& what, const std::string& where) {
  if (!config.is_object() || !config.contains("type") || !config["type"].is_string()) {
    throw Error(what + " has no \"type\"").in_file(where).in_field(what);
  }
  return config["type"].get<std::string>();
}

[[noreturn]] void unsupported(const std::string& what, const std::string& type,
                              const std::string& where) {
  throw Error(what + " type '" + type + "' is not supported by seqit")
      .in_file(where)
      .in_field(what);
}

// ---- patterns (HF's Pattern: a literal string or a regex; matches and the gaps between them) ----

struct Segment {
  size_t begin, end;
  bool is_match;
};

class SplitPattern {
 public:
  SplitPattern(const json& pattern, const std::string& where) {
    if (pattern.is_object() && pattern.contains("String")) {
      literal_ = pattern["String"].get<std::string>();
    } else if (pattern.is_object() && pattern.contains("Regex")) {
      regex_ = std::make_unique<Regex>(pattern["Regex"].get<std::string>(), where);
    } else {
      throw Error("pattern must be {\"String\": ...} or {\"Regex\": ...}")
          .in_file(where)
          .in_field("pattern");
    }
  }
  explicit SplitPattern(std::string literal) : literal_(std::move(literal)) {}

  // Matches and gaps covering `text` in order (HF's find_matches).
  void find(std::string_view text, std::vector<Segment>& out) const {
    out.clear();
    if (text.empty()) {
      out.push_back({0, 0, false});
      return;
    }
    size_t prev = 0;
    auto on_match = [&](size_t b, size_t e) {
      if (prev != b) out.push_back({prev, b, false});
      out.push_back({b, e, true});
      prev = e;
    };
    if (regex_) {
      regex_->for_each_match(text, on_match);
    } else if (!literal_.empty()) {
      size_t pos = 0;
      while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
        on_match(pos, pos + literal_.size());
        pos += literal_.size();
      }
    }
    if (prev != text.size()) out.push_back({prev, text.size(), false});
  }
  const std::string& literal() const { return literal_; }
  bool is_regex() const { return regex_ != nullptr; }

 private:
  std::string literal_;
  std::unique_ptr<Regex> regex_;
};

enum class SplitBehavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

SplitBehavior parse_behavior(const json& config, const std::string& where) {
  std::string b = config.value("behavior", std::string("Isolated"));
  if (b == "Removed") return SplitBehavior::removed;
  if (b == "Isolated") return SplitBehavior::isolated;
  if (b == "MergedWithPrevious") return SplitBehavior::merged_with_previous;
  if (b == "MergedWithNext") return SplitBehavior::merged_with_next;
  if (b == "Contiguous") return SplitBehavior::contiguous;
  throw Error("split behavior '" + b + "' is not supported").in_file(where).in_field("behavior");
}

// HF's NormalizedString::split: turns matches/gaps into the ranges kept, per behavior.
void apply_behavior(std::vector<Segment>& segs, SplitBehavior behavior) {
  std::vector<Segment> out;
  switch (behavior) {
    case SplitBehavior::isolated:
      for (auto& s : segs) s.is_match = false;
      return;
    case SplitBehavior::removed:
      for (auto& s : segs) {
        if (!s.is_match) out.push_back(s);
      }
      break;
    case SplitBehavior::contiguous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.is_match == previous && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.begin, s.end, false});
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_previous: {
      bool previous = false;
      for (const auto& s : segs) {
        if (s.is_match && !previous && !out.empty())
          out.back().end = s.end;
        else
          out.push_back({s.begin, s.end, false});
        previous = s.is_match;
      }
      break;
    }
    case SplitBehavior::merged_with_next: {
      bool previous = false;
      for (size_t k = segs.size(); k-- > 0;) {
        const auto& s = segs[k];
        if (s.is_match && !previous && !out.empty())
          out.back().begin = s.begin;
        else
          out.push_back({s.begin, s.end, false});
        previous = s.is_match;
      }
      std::reverse(out.begin(), out.end());
      break;
    }
  }
  for (auto& s : out) s.is_match = false;
  segs = std::move(out);
}

// Splits every part by `pattern` with `behavior` (optionally inverted), dropping empty pieces.
void split_parts(std::vector<TextPart>& parts, const SplitPattern& pattern, SplitBehavior behavior,
                 bool invert) {
  thread_local std::vector<Segment> segs;
  std::vector<TextPart> out;
  out.reserve(parts.size() * 2);
  for (const TextPart& part : parts) {
    pattern.find(part.text, segs);
    if (invert) {
      for (auto& s : segs) s.is_match = !s.is_match;
    }
    apply_behavior(segs, behavior);
    for (const auto& s : segs) {
      if (s.end > s.begin) out.push_back(part.slice(s.begin, s.end));
    }
  }
  parts = std::move(out);
}

// Splits by a character predicate, each matching character being its own match (HF's Fn(char)
// pattern).
template <typename Pred>
void split_parts_by_char(std::vector<TextPart>& parts, Pred pred, SplitBehavior behavior) {
  thread_local std::vector<Segment> segs;
  std::vector<TextPart> out;
  for (const TextPart& part : parts) {
    segs.clear();
    std::string_view t = part.text;
    size_t last = 0;
    for (size_t i = 0; i < t.size();) {
      size_t b = i;
      char32_t cp = next_code_point(t, i);
      if (pred(cp)) {
        if (last < b) segs.push_back({last, b, false});
        segs.push_back({b, i, true});
        last = i;
      }
    }
    if (last < t.size()) segs.push_back({last, t.size(), false});
    apply_behavior(segs, behavior);
    for (const auto& s : segs) {
      if (s.end > s.begin) out.push_back(part.slice(s.begin, s.end));
    }
  }
  parts = std::move(out);
}

// Prepends `prefix` (aligned to the part's start, as an insertion).
TextPart prepend(const TextPart& part, std::string_view prefix, PartArena& arena) {
  PartArena::Builder b(arena);
  size_t at = part.original_begin();
  b.append(prefix, {at, at});
  b.copy(part, 0, part.text.size());
  return b.finish();
}

// Replaces every occurrence of `from` with `to` (each replacement aligned to what it replaced).
TextPart replace_all(const TextPart& part, std::string_view from, std::string_view to,
                     PartArena& arena) {
  size_t pos = part.text.find(from);
  if (pos == std::string_view::npos || from.empty()) return part;
  PartArena::Builder b(arena);
  size_t copied = 0;
  while (pos != std::string_view::npos) {
    b.copy(part, copied, pos);
    b.append(to, part.original(pos, pos + from.size()));
    copied = pos + from.size();
    pos = part.text.find(from, copied);
  }
  b.copy(part, copied, part.text.size());
  return b.finish();
}

bool is_numeric(char32_t cp) {
  auto cat = utf8proc_category(utf8proc_int32_t(cp));
  return cat == UTF8PROC_CATEGORY_ND || cat == UTF8PROC_CATEGORY_NL || cat == UTF8PROC_CATEGORY_NO;
}

// ---- normalizers ----

class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(utf8proc_option_t options)
      : options_(utf8proc_option_t(options | UTF8PROC_STABLE)) {}

  TextPart apply(const TextPart& part, PartArena& arena) const override {
    std::string_view t = part.text;
    // Segments start at characters that cannot interact with what precedes them, so each is
    // normalised alone and all of its output maps to all of its input.
    size_t first_non_ascii = 0;
    while (first_non_ascii < t.size() && static_cast<unsigned char>(t[first_non_ascii]) < 0x80)
      ++first_non_ascii;
    if (first_non_ascii == t.size()) return part;
    thread_local std::vector<size_t> bounds;
    bounds.clear();
    bounds.push_back(0);
    size_t i = 0;
    char32_t prev = 0;
    bool have_prev = false;
    while (i < t.size()) {
      size_t b = i;
      char32_t cp = next_code_point(t, i);
      if (have_prev &&
          starts_segment(prev, cp, t.substr(bounds.back(), i - bounds.back()), b - bounds.back())) {
        bounds.push_back(b);
      }
      prev = cp, have_prev = true;
    }
    bounds.push_back(t.size());
    // First pass: is anything different?
    bool changed = false;
    std::string normalized;
    for (size_t k = 0; k + 1 < bounds.size() && !changed; ++k) {
      std::string_view seg = t.substr(bounds[k], bounds[k + 1] - bounds[k]);
      if (is_ascii(seg)) continue;
      normalize(seg, normalized);
      changed = normalized != seg;
    }
    if (!changed) return part;
    PartArena::Builder out(arena);
    for (size_t k = 0; k + 1 < bounds.size(); ++k) {
      size_t b = bounds[k], e = bounds[k + 1];
      std::string_view seg = t.substr(b, e - b);
      if (is_ascii(seg)) {
        out.copy(part, b, e);
        continue;
      }
      normalize(seg, normalized);
      if (normalized == seg)
        out.copy(part, b, e);
      else
        out.append(normalized, part.original(b, e));
    }
    return out.finish();
  }

 private:
  static bool is_ascii(std::string_view s) {
    for (char c : s) {
      if (static_cast<unsigned char>(c) >= 0x80) return false;
    }
    return true;
  }
  void normalize(std::string_view s, std::string& out) const {
    utf8proc_uint8_t* result = nullptr;
    utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                      utf8proc_ssize_t(s.size()), &result, options_);
    if (n < 0) {
      out.assign(s);
      return;
    }
    out.assign(reinterpret_cast<const char*>(result), size_t(n));
    std::free(result);
  }
  // A segment boundary before `cp`, which follows `prev` and the current segment (`pair` is the
  // segment plus cp, `prev_len` the segment's length): cp is a starter and normalising the segment
  // and cp apart gives what normalising them together does (Hangul LV + T composes, for one).
  bool starts_segment(char32_t prev, char32_t cp, std::string_view pair, size_t prev_len) const {
    if (cp < 0x80) return true;
    if (utf8proc_get_property(utf8proc_int32_t(cp))->combining_class != 0) return false;
    if (prev < 0x80) return true;
    std::string together, a, b;
    normalize(pair, together);
    normalize(pair.substr(0, prev_len), a);
    normalize(pair.substr(prev_len), b);
    return together == a + b;
  }
  utf8proc_option_t options_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  TextPart apply(const TextPart& part, PartArena& arena) const override {
    std::string_view t = part.text;
    bool changed = false;
    for (size_t i = 0; i < t.size() && !changed;) {
      char32_t cp = next_code_point(t, i);
      changed = lower(cp) != cp || cp == 0x130;
    }
    if (!changed) return part;
    PartArena::Builder out(arena);
    std::string buf;
    for (size_t i = 0; i < t.size();) {
      size_t b = i;
      char32_t cp = next_code_point(t, i);
      char32_t lc = lower(cp);
      if (lc == cp && cp != 0x130) {
        out.copy(part, b, i);
        continue;
      }
      buf.clear();
      if (cp == 0x130) {
        buf = "i\xCC\x87";  // Rust's char::to_lowercase: U+0130 -> "i" + U+0307
      } else {
        utf8::append(buf, lc);
      }
      out.append(buf, part.original(b, i));
    }
    return out.finish();
  }

 private:
  static char32_t lower(char32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    return char32_t(utf8proc_tolower(utf8proc_int32_t(cp)));
  }
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  TextPart apply(const TextPart& part, PartArena&) const override {
    std::string_view t = part.text;
    size_t b = 0, e = t.size();
    if (left_) {
      while (b < e) {
        size_t i = b;
        if (!is_unicode_whitespace(next_code_point(t, i))) break;
        b = i;
      }
    }
    if (right_) {
      while (e > b) {
        size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(t[s]) & 0xC0) == 0x80) --s;
        size_t i = s;
        if (!is_unicode_whitespace(next_code_point(t, i))) break;
        e = s;
      }
    }
    return part.slice(b, e);
  }

 private:
  bool left_, right_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(const json& config, const std::string& where)
      : pattern_(config.at("pattern"), where), content_(config.at("content").get<std::string>()) {}
  TextPart apply(const TextPart& part, PartArena& arena) const override {
    if (!pattern_.is_regex()) return replace_all(part, pattern_.literal(), content_, arena);
    thread_local std::vector<Segment> segs;
    pattern_.find(part.text, segs);
    bool any = false;
    for (const auto& s : segs) any = any || (s.is_match && s.end > s.begin);
    if (!any) return part;
    PartArena::Builder out(arena);
    for (const auto& s : segs) {
      if (s.is_match)
        out.append(content_, part.original(s.begin, s.end));
      else
        out.copy(part, s.begin, s.end);
    }
    return out.finish();
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  TextPart apply(const TextPart& part, PartArena& arena) const override {
    if (part.text.empty()) return part;
    return prepend(part, prefix_, arena);
  }

 private:
  std::string prefix_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps)
      : steps_(std::move(steps)) {}
  TextPart apply(const TextPart& part, PartArena& arena) const override {
    TextPart p = part;
    for (const auto& s : steps_) p = s->apply(p, arena);
    return p;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// ---- pre-tokenizers ----

// GPT-2's split, used by the ByteLevel pre-tokenizer when use_regex is true.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(const json& config, const std::string& where)
      : pattern_(config.at("pattern"), where),
        behavior_(parse_behavior(config, where)),
        invert_(config.value("invert", false)) {}
  void apply(std::vector<TextPart>& parts, PartArena&) const override {
    split_parts(parts, pattern_, behavior_, invert_);
  }

 private:
  SplitPattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(const json& config, const std::string& where)
      : add_prefix_space_(config.value("add_prefix_space", true)),
        use_regex_(config.value("use_regex", true)) {
    if (use_regex_)
      regex_ = std::make_unique<SplitPattern>(json{{"Regex", std::string(kGpt2Pattern)}}, where);
  }
  void apply(std::vector<TextPart>& parts, PartArena& arena) const override {
    if (add_prefix_space_) {
      for (TextPart& p : parts) {
        if (p.text.empty() || p.text[0] != ' ') p = prepend(p, " ", arena);
      }
    }
    if (use_regex_) split_parts(parts, *regex_, SplitBehavior::isolated, false);
    // The byte -> character mapping is folded into the byte-level vocabulary (see BpeModel).
  }
  bool is_byte_level() const override { return true; }

 private:
  bool add_prefix_space_, use_regex_;
  std::unique_ptr<SplitPattern> regex_;
};

enum class PrependScheme { always, first, never };

PrependScheme parse_prepend_scheme(const json& config, const std::string& where) {
  if (config.contains("prepend_scheme") && config["prepend_scheme"].is_string()) {
    std::string s = config["prepend_scheme"].get<std::string>();
    if (s == "always") return PrependScheme::always;
    if (s == "first") return PrependScheme::first;
    if (s == "never") return PrependScheme::never;
    throw Error("prepend_scheme '" + s + "' is not supported")
        .in_file(where)
        .in_field("prepend_scheme");
  }
  return config.value("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(const json& config, const std::string& where)
      : replacement_(config.value("replacement", std::string("\xE2\x96\x81"))),
        scheme_(parse_prepend_scheme(config, where)),
        split_(config.value("split", true)),
        splitter_(replacement_) {}
  void apply(std::vector<TextPart>& parts, PartArena& arena) const override {
    for (TextPart& p : parts) {
      p = replace_all(p, " ", replacement_, arena);
      bool starts = p.text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts && (scheme_ == PrependScheme::always ||
                      (scheme_ == PrependScheme::first && p.original_begin() == 0))) {
        p = prepend(p, replacement_, arena);
      }
    }
    if (split_) split_parts(parts, splitter_, SplitBehavior::merged_with_next, false);
  }

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
  SplitPattern splitter_;
};

class DigitsPreTokenizer : public PreTokenizer {
 public:
  explicit DigitsPreTokenizer(bool individual) : individual_(individual) {}
  void apply(std::vector<TextPart>& parts, PartArena&) const override {
    split_parts_by_char(parts, is_numeric,
                        individual_ ? SplitBehavior::isolated : SplitBehavior::contiguous);
  }

 private:
  bool individual_;
};

class WhitespaceSplitPreTokenizer : public PreTokenizer {
 public:
  void apply(std::vector<TextPart>& parts, PartArena&) const override {
    split_parts_by_char(parts, is_unicode_whitespace, SplitBehavior::removed);
  }
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void apply(std::vector<TextPart>& parts, PartArena& arena) const override {
    for (const auto& s : steps_) s->apply(parts, arena);
  }
  bool is_byte_level() const override { return !steps_.empty() && steps_.back()->is_byte_level(); }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

// ---- decoders ----

class ByteLevelDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      if (auto b = byte_level_decode(t))
        bytes += *b;
      else
        bytes += t;
    }
    std::string out;
    append_utf8_lossy(out, bytes);
    tokens.assign(1, std::move(out));
  }
  void token_bytes(std::string& token) const override {
    if (auto b = byte_level_decode(token)) token = std::move(*b);
  }
  bool is_byte_level() const override { return true; }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(const json& config, const std::string& where)
      : replacement_(config.value("replacement", std::string("\xE2\x96\x81"))),
        scheme_(parse_prepend_scheme(config, where)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      // HF drops every replacement character of the first token when a prefix was added.
      tokens[i] = replace(tokens[i], i == 0 && scheme_ != PrependScheme::never ? "" : " ");
    }
  }
  void token_bytes(std::string& token) const override { token = replace(token, " "); }

 private:
  std::string replace(const std::string& t, std::string_view with) const {
    std::string out;
    size_t pos = 0, hit;
    while ((hit = t.find(replacement_, pos)) != std::string::npos) {
      out.append(t, pos, hit - pos).append(with);
      pos = hit + replacement_.size();
    }
    return out.append(t, pos, std::string::npos);
  }
  std::string replacement_;
  PrependScheme scheme_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(const json& config, const std::string& where)
      : pattern_(config.at("pattern"), where), content_(config.at("content").get<std::string>()) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) token_bytes(t);
  }
  void token_bytes(std::string& token) const override {
    thread_local std::vector<Segment> segs;
    pattern_.find(token, segs);
    std::string out;
    for (const auto& s : segs) {
      if (s.is_match)
        out += content_;
      else
        out.append(token, s.begin, s.end - s.begin);
    }
    token = std::move(out);
  }

 private:
  SplitPattern pattern_;
  std::string content_;
};

class ByteFallbackDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string bytes;
    auto flush = [&] {
      if (bytes.empty()) return;
      if (utf8::is_valid(bytes)) {
        out.push_back(bytes);
      } else {
        for (size_t k = 0; k < bytes.size(); ++k) out.emplace_back(kReplacementChar);
      }
      bytes.clear();
    };
    for (auto& t : tokens) {
      int b = parse_byte_token(t);
      // HF accepts only "<0x" + two hex digits + ">" (upper or lower case digits).
      if (b >= 0) {
        bytes.push_back(static_cast<char>(b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
  }
  void token_bytes(std::string& token) const override {
    int b = parse_byte_token(token);
    if (b >= 0) token.assign(1, static_cast<char>(b));
  }
};

class FuseDecoder : public Decoder {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
  void token_bytes(std::string&) const override {}
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(const json& config, const std::string& where)
      : start_(config.value("start", 0)), stop_(config.value("stop", 0)) {
    std::string c = config.value("content", std::string(" "));
    size_t i = 0;
    if (c.empty() || (content_ = next_code_point(c, i), i != c.size())) {
      throw Error("Strip decoder content must be one character").in_file(where).in_field("decoder");
    }
  }
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (auto& t : tokens) {
      std::vector<std::pair<size_t, size_t>> chars;  // byte ranges of characters
      for (size_t i = 0; i < t.size();) {
        size_t b = i;
        next_code_point(t, i);
        chars.emplace_back(b, i);
      }
      size_t start_cut = 0;
      for (size_t k = 0; k < chars.size() && k < start_; ++k) {
        size_t i = chars[k].first;
        if (next_code_point(t, i) != content_) break;
        start_cut = k + 1;
      }
      size_t stop_cut = chars.size();
      for (size_t k = 0; k < stop_ && k < chars.size(); ++k) {
        size_t idx = chars.size() - k - 1;
        size_t i = chars[idx].first;
        if (next_code_point(t, i) != content_) break;
        stop_cut = idx;
      }
      if (start_cut >= stop_cut) {
        t.clear();
        continue;
      }
      size_t b = start_cut < chars.size() ? chars[start_cut].first : t.size();
      size_t e = stop_cut < chars.size() ? chars[stop_cut].first : t.size();
      t = t.substr(b, e - b);
    }
  }
  void token_bytes(std::string&) const override {}

 private:
  size_t start_, stop_;
  char32_t content_ = ' ';
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& s : steps_) s->decode_chain(tokens);
  }
  void token_bytes(std::string& token) const override {
    for (const auto& s : steps_) s->token_bytes(token);
  }
  bool is_byte_level() const override {
    for (const auto& s : steps_) {
      if (s->is_byte_level()) return true;
    }
    return false;
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const json& config, const std::string& where) {
  std::string type = type_of(config, "normalizer", where);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(UTF8PROC_COMPOSE);
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(UTF8PROC_DECOMPOSE);
  if (type == "NFKC")
    return std::make_unique<UnicodeNormalizer>(
        utf8proc_option_t(UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  if (type == "NFKD")
    return std::make_unique<UnicodeNormalizer>(
        utf8proc_option_t(UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Strip") {
    return std::make_unique<StripNormalizer>(config.value("strip_left", true),
                                             config.value("strip_right", true));
  }
  if (type == "Replace") return std::make_unique<ReplaceNormalizer>(config, where);
  if (type == "Prepend")
    return std::make_unique<PrependNormalizer>(config.at("prepend").get<std::string>());
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& c : config.at("normalizers")) steps.push_back(make_normalizer(c, where));
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  unsupported("normalizer", type, where);
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const json& config, const std::string& where) {
  std::string type = type_of(config, "pre_tokenizer", where);
  if (type == "Split") return std::make_unique<SplitPreTokenizer>(config, where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelPreTokenizer>(config, where);
  if (type == "Metaspace") return std::make_unique<MetaspacePreTokenizer>(config, where);
  if (type == "Digits")
    return std::make_unique<DigitsPreTokenizer>(config.value("individual_digits", false));
  if (type == "WhitespaceSplit") return std::make_unique<WhitespaceSplitPreTokenizer>();
  if (type == "Sequence") {
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    const auto& list = config.at("pretokenizers");
    for (size_t k = 0; k < list.size(); ++k) {
      auto step = make_pre_tokenizer(list[k], where);
      if (step->is_byte_level() && k + 1 != list.size()) {
        throw Error(
            "a ByteLevel pre-tokenizer followed by other pre-tokenizers is not supported by seqit")
            .in_file(where)
            .in_field("pre_tokenizer");
      }
      steps.push_back(std::move(step));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  unsupported("pre_tokenizer", type, where);
}

std::unique_ptr<Decoder> make_decoder(const json& config, const std::string& where) {
  std::string type = type_of(config, "decoder", where);
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "Metaspace") return std::make_unique<MetaspaceDecoder>(config, where);
  if (type == "Replace") return std::make_unique<ReplaceDecoder>(config, where);
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") return std::make_unique<StripDecoder>(config, where);
  if (type == "Sequence") {
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const auto& c : config.at("decoders")) steps.push_back(make_decoder(c, where));
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  unsupported("decoder", type, where);
}

}  // namespace seqit::tokenizer
