#include "seqinstruct/parse.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <unordered_map>
#include <vector>

namespace seqit::seqinstruct {
namespace {

std::string lower_ascii(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

bool is_alnum(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0;
}
bool is_space(char c) {
  return std::isspace(static_cast<unsigned char>(c)) != 0;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// A line with markdown emphasis and code marks removed and white space collapsed, lower-cased.
std::string plain_line(std::string_view line) {
  std::string out;
  for (char c : line) {
    if (c == '*' || c == '_' || c == '`' || c == '#' || c == '>') continue;
    char l = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (is_space(l)) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(l);
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::optional<Option> letter_option(char c) {
  switch (std::tolower(static_cast<unsigned char>(c))) {
    case 'a':
      return Option::A;
    case 'b':
      return Option::B;
    case 'c':
      return Option::C;
    case 'd':
      return Option::D;
    default:
      return std::nullopt;
  }
}

// After "option" at `pos` (just past the word): [ is] [:|=|-] [ ] [(] letter [)]; returns the
// option and the position after it when the letter stands alone (no letter or digit follows).
std::optional<std::pair<Option, size_t>> option_after(const std::string& s, size_t pos) {
  auto skip_spaces = [&](size_t p) {
    while (p < s.size() && s[p] == ' ') ++p;
    return p;
  };
  size_t p = skip_spaces(pos);
  if (s.compare(p, 2, "is") == 0 && (p + 2 >= s.size() || !is_alnum(s[p + 2])))
    p = skip_spaces(p + 2);
  if (p < s.size() && (s[p] == ':' || s[p] == '=' || s[p] == '-')) p = skip_spaces(p + 1);
  bool paren = false;
  if (p < s.size() && (s[p] == '(' || s[p] == '[')) {
    paren = true;
    ++p;
  }
  if (p >= s.size()) return std::nullopt;
  auto option = letter_option(s[p]);
  if (!option) return std::nullopt;
  ++p;
  if (paren && p < s.size() && (s[p] == ')' || s[p] == ']')) ++p;
  if (p < s.size() && (is_alnum(s[p]) || s[p] == '\'')) return std::nullopt;  // "option allows"
  return std::make_pair(*option, p);
}

// Rule 1: a whole line that states the option.
std::optional<Option> answer_line(std::string_view raw_line) {
  const std::string line = plain_line(raw_line);
  const size_t at = line.find("option");
  if (at == std::string::npos) return std::nullopt;
  if (at > 0 && is_alnum(line[at - 1])) return std::nullopt;
  // Only lead-in words may come before "option".
  static const std::set<std::string> lead = {
      "so",     "the", "therefore", "thus",    "hence", "my",       "final", "chosen",
      "answer", "is",  "selected",  "correct", "best",  "suitable", "most"};
  std::string word;
  for (size_t i = 0; i <= at; ++i) {
    const char c = i < at ? line[i] : ' ';
    if (is_alnum(c)) {
      word.push_back(c);
    } else {
      if (!word.empty() && !lead.count(word)) return std::nullopt;
      word.clear();
      if (c != ' ' && c != ',' && c != ':' && c != '-' && c != '(') return std::nullopt;
    }
  }
  auto found = option_after(line, at + 6);
  if (!found) return std::nullopt;
  for (size_t p = found->second; p < line.size(); ++p)
    if (is_alnum(line[p])) return std::nullopt;  // more words after the letter: prose
  return found->first;
}

}  // namespace

Parsed<Option> parse_option(std::string_view reply) {
  const auto lines = split_lines(reply);
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    if (auto option = answer_line(*it)) return {option, "answer line"};
  }
  const std::string text = plain_line(reply);
  std::set<char> mentioned;
  for (size_t at = text.find("option"); at != std::string::npos; at = text.find("option", at + 1)) {
    if (at > 0 && is_alnum(text[at - 1])) continue;
    if (auto found = option_after(text, at + 6)) mentioned.insert(option_letter(found->first));
  }
  if (mentioned.size() == 1) return {static_cast<Option>(*mentioned.begin()), "option mention"};
  if (mentioned.size() > 1)
    return {std::nullopt, "ambiguous: the reply names options " +
                              std::string(mentioned.begin(), mentioned.end()) +
                              " and has no answer line"};
  const std::pair<const char*, Option> phrases[] = {{"prefix task", Option::B},
                                                    {"suffix task", Option::C},
                                                    {"decompose", Option::A},
                                                    {"keep the original", Option::D}};
  std::set<char> named;
  for (const auto& [phrase, option] : phrases)
    if (text.find(phrase) != std::string::npos) named.insert(option_letter(option));
  if (named.size() == 1) return {static_cast<Option>(*named.begin()), "edit named in prose"};
  if (named.size() > 1) return {std::nullopt, "ambiguous: the reply names several edits"};
  return {std::nullopt, "no option in the reply"};
}

std::string clean_instruction(std::string_view text) {
  std::string s(text);
  const std::string low = lower_ascii(s);
  const size_t explanation = low.find("explanation:");
  if (explanation != std::string::npos && explanation > 0) s.resize(explanation);
  static const std::vector<std::string> quotes = {
      "\"",           "'", "\xe2\x80\x9c", "\xe2\x80\x9d", "\xe2\x80\x98",
      "\xe2\x80\x99", " ", "\n",           "\t",           "\r"};
  bool changed = true;
  while (changed && !s.empty()) {
    changed = false;
    for (const auto& q : quotes) {
      if (s.size() >= q.size() && s.compare(0, q.size(), q) == 0) {
        s.erase(0, q.size());
        changed = true;
      }
      if (s.size() >= q.size() && s.compare(s.size() - q.size(), q.size(), q) == 0) {
        s.resize(s.size() - q.size());
        changed = true;
      }
    }
  }
  return s;
}

Parsed<std::string> parse_new_instruction(std::string_view reply) {
  const std::string low = lower_ascii(reply);
  size_t start = std::string::npos;
  std::string how;
  const size_t marker = low.rfind("#new instruction#");
  if (marker != std::string::npos) {
    start = marker + std::string_view("#new instruction#").size();
    how = "#New Instruction# marker";
  } else {
    const size_t plain = low.rfind("new instruction");
    if (plain != std::string::npos) {
      start = plain + std::string_view("new instruction").size();
      how = "'new instruction' label";
    }
  }
  if (start == std::string::npos) return {std::nullopt, "no '#New Instruction#' in the reply"};
  std::string_view rest = reply.substr(start);
  // Leading label punctuation: ":", "**", spaces.
  size_t p = 0;
  while (p < rest.size() && (rest[p] == ':' || rest[p] == '*' || is_space(rest[p]))) ++p;
  rest = rest.substr(p);
  const size_t end = rest.find("###");
  if (end != std::string_view::npos) rest = rest.substr(0, end);
  std::string cleaned = clean_instruction(rest);
  while (!cleaned.empty() && (cleaned.back() == '*')) cleaned.pop_back();
  cleaned = clean_instruction(cleaned);
  if (cleaned.empty()) return {std::nullopt, "the new instruction after the marker is empty"};
  return {std::move(cleaned), how};
}

Parsed<Extraction> parse_extraction(std::string_view reply) {
  const std::string low = lower_ascii(reply);
  const size_t key = low.find("instruction:");
  if (key == std::string::npos) return {std::nullopt, "no 'Instruction:' in the reply"};
  const size_t start = key + std::string_view("instruction:").size();
  const size_t input_key = low.find("input:", start);
  size_t end = low.find("###", start);
  if (input_key != std::string::npos && (end == std::string::npos || input_key < end))
    end = input_key;
  std::string instruction = clean_instruction(
      reply.substr(start, end == std::string::npos ? std::string::npos : end - start));
  if (instruction.empty()) return {std::nullopt, "the extracted instruction is empty"};
  std::string input;
  if (input_key != std::string::npos) {
    const size_t in_start = input_key + std::string_view("input:").size();
    const size_t in_end = low.find("###", in_start);
    input = clean_instruction(reply.substr(
        in_start, in_end == std::string::npos ? std::string::npos : in_end - in_start));
  }
  return {Extraction{std::move(instruction), std::move(input)}, "instruction/input fields"};
}

namespace {
std::vector<std::string> words(std::string_view text) {
  std::vector<std::string> out;
  std::string word;
  for (char c : text) {
    if (is_alnum(c)) {
      word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    } else if (!word.empty()) {
      out.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) out.push_back(std::move(word));
  return out;
}
}  // namespace

bool input_in_instruction(std::string_view instruction, std::string_view input) {
  const std::string in = clean_instruction(input);
  if (in.empty()) return true;
  if (lower_ascii(instruction).find(lower_ascii(in)) != std::string::npos) return true;
  const auto a = words(in), b = words(instruction);
  if (a.empty() || b.empty()) return false;
  std::unordered_map<std::string, int> counts;
  for (const auto& w : b) ++counts[w];
  int overlap = 0;
  for (const auto& w : a) {
    auto it = counts.find(w);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++overlap;
    }
  }
  if (overlap == 0) return false;
  const double precision = static_cast<double>(overlap) / static_cast<double>(b.size());
  const double recall = static_cast<double>(overlap) / static_cast<double>(a.size());
  return 2 * precision * recall / (precision + recall) > 0.3;
}

std::string option_reply_pattern() {
  return "(?:[^\\n]*\\n){0,40}Option: [ABCD]";
}

}  // namespace seqit::seqinstruct
