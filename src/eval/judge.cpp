#include "eval/judge.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdlib>

namespace seqit::eval {
namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// Strips markdown decoration around a line or a value: emphasis, headings, quotes, bullets, code.
std::string_view strip_decoration(std::string_view s, std::string_view leading,
                                  std::string_view trailing) {
  for (;;) {
    s = trim(s);
    if (!s.empty() && leading.find(s.front()) != std::string_view::npos) {
      s.remove_prefix(1);
      continue;
    }
    if (!s.empty() && trailing.find(s.back()) != std::string_view::npos) {
      s.remove_suffix(1);
      continue;
    }
    return s;
  }
}
constexpr std::string_view kLineLead = "*_#>-`";
constexpr std::string_view kEmphasis = "*_`";

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t nl = text.find('\n', start);
    const size_t end = nl == std::string_view::npos ? text.size() : nl;
    out.push_back(text.substr(start, end - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

// A `KEY: value` line: the key (lower-cased, decoration stripped) and the raw value.
struct KeyLine {
  std::string key;
  std::string_view value;
  int line = 0;  // 1-based line number in the reply
};
std::optional<KeyLine> key_line(std::string_view raw, int line_number) {
  const std::string_view line = strip_decoration(raw, kLineLead, kEmphasis);
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  KeyLine k;
  k.key = lower(strip_decoration(line.substr(0, colon), kEmphasis, kEmphasis));
  k.value = line.substr(colon + 1);
  k.line = line_number;
  return k;
}

// The cleaned value: decoration and one trailing full stop removed.
std::string clean_value(std::string_view v) {
  v = strip_decoration(v, kEmphasis, kEmphasis);
  if (!v.empty() && v.back() == '.') v.remove_suffix(1);
  return std::string(strip_decoration(v, kEmphasis, kEmphasis));
}

// The shared reading rule (see judge.h): the last `key:` line decides; it must be valid, and every
// valid `key:` line must agree with it. `read_value` returns the value, or sets *why.
template <typename T, typename ReadValue>
JudgeReading<T> read_answer(std::string_view reply, std::string_view key,
                            std::string_view shown_key, ReadValue read_value) {
  JudgeReading<T> r;
  std::vector<std::pair<int, T>> valid;  // (line, value)
  std::optional<std::pair<int, std::string>> last_invalid;
  int last_line = 0;
  int n = 0;
  for (std::string_view raw : lines_of(reply)) {
    ++n;
    auto k = key_line(raw, n);
    if (!k || k->key != key) continue;
    last_line = n;
    std::string why;
    const std::string value = clean_value(k->value);
    if (auto v = read_value(value, &why)) {
      valid.emplace_back(n, *v);
    } else {
      last_invalid = std::make_pair(n, fmt::format("line {}: {} (\"{}\")", n, why, value));
    }
  }
  if (last_line == 0) {
    r.problem = fmt::format("no `{}: ...` answer line", shown_key);
    return r;
  }
  if (valid.empty() || valid.back().first != last_line) {
    r.problem = last_invalid->second;
    return r;
  }
  for (const auto& [line, v] : valid) {
    if (!(v == valid.back().second)) {
      r.problem =
          fmt::format("conflicting answer lines: line {} and line {} give different {} values",
                      line, valid.back().first, shown_key);
      return r;
    }
  }
  r.value = valid.back().second;
  return r;
}

}  // namespace

// ---- Prompts
// ----------------------------------------------------------------------------------------------

std::string following_judge_prompt(std::string_view instruction, std::string_view response) {
  return fmt::format(
      "You are checking whether an assistant did everything a user asked, in the order asked.\n"
      "\n"
      "Read the instruction and break it into the separate tasks it asks for (for example: "
      "translate, "
      "then answer, then summarise). Then read the response and decide, for each task, whether the "
      "response actually carried it out. Judge only whether each task was done, not how well.\n"
      "\n"
      "Write one line per task, numbered from 1 in the order the instruction gives them:\n"
      "SUBTASK <number>: <the task in a few words> -> DONE\n"
      "or\n"
      "SUBTASK <number>: <the task in a few words> -> NOT DONE\n"
      "\n"
      "Finish with exactly one last line:\n"
      "FOLLOWED: YES   (every task is DONE and they were done in the order asked)\n"
      "FOLLOWED: NO    (otherwise)\n"
      "\n"
      "[Instruction]\n{}\n[End of instruction]\n"
      "\n"
      "[Response]\n{}\n[End of response]\n",
      instruction, response);
}

std::string quality_judge_prompt(std::string_view instruction, std::string_view response) {
  return fmt::format(
      "You are grading an assistant's response to a user's instruction.\n"
      "\n"
      "Consider whether the response does what was asked, whether it is correct, and whether it is "
      "clear and useful. Length is not a merit in itself. Explain your grade in a few sentences, "
      "then "
      "finish with exactly one last line holding a whole number from 1 (useless) to 5 "
      "(excellent):\n"
      "SCORE: <number>\n"
      "\n"
      "[Instruction]\n{}\n[End of instruction]\n"
      "\n"
      "[Response]\n{}\n[End of response]\n",
      instruction, response);
}

std::string pairwise_judge_prompt(std::string_view instruction, std::string_view first,
                                  std::string_view second) {
  return fmt::format(
      "You are comparing two assistant responses to the same user instruction.\n"
      "\n"
      "Decide which response serves the user better: does what was asked, is correct, is clear. Do "
      "not "
      "let the order in which they are shown or their length sway you. Explain your choice in a "
      "few "
      "sentences, then finish with exactly one last line:\n"
      "PREFERRED: 1     (Response 1 is better)\n"
      "PREFERRED: 2     (Response 2 is better)\n"
      "PREFERRED: TIE   (neither is better)\n"
      "\n"
      "[Instruction]\n{}\n[End of instruction]\n"
      "\n"
      "[Response 1]\n{}\n[End of response 1]\n"
      "\n"
      "[Response 2]\n{}\n[End of response 2]\n",
      instruction, first, second);
}

// ---- Replies
// -------------------------------------------------------------------------------------------------

JudgeReading<FollowingJudgement> parse_following_reply(std::string_view reply) {
  JudgeReading<FollowingJudgement> r;
  auto followed =
      read_answer<bool>(reply, "followed", "FOLLOWED", [](const std::string& v, std::string* why) {
        const std::string l = lower(v);
        if (l == "yes") return std::optional<bool>(true);
        if (l == "no") return std::optional<bool>(false);
        *why = "FOLLOWED must be YES or NO";
        return std::optional<bool>();
      });
  if (!followed.ok()) {
    r.problem = followed.problem;
    return r;
  }
  FollowingJudgement j;
  j.followed = *followed.value;
  int n = 0;
  for (std::string_view raw : lines_of(reply)) {
    ++n;
    auto k = key_line(raw, n);
    if (!k || k->key.rfind("subtask ", 0) != 0) continue;  // "Subtasks:" as a heading is prose
    const std::string_view number = trim(std::string_view(k->key).substr(8));
    SubtaskCheck s;
    char* end = nullptr;
    const std::string number_text(number);
    s.number = static_cast<int>(std::strtol(number_text.c_str(), &end, 10));
    const size_t arrow = k->value.rfind("->");
    if (number.empty() || *end != '\0' || arrow == std::string_view::npos) {
      r.problem = fmt::format(
          "line {}: a SUBTASK line must read `SUBTASK <n>: <task> -> DONE|NOT DONE`", n);
      return r;
    }
    const std::string status = lower(clean_value(k->value.substr(arrow + 2)));
    if (status == "done") {
      s.done = true;
    } else if (status == "not done") {
      s.done = false;
    } else {
      r.problem =
          fmt::format("line {}: sub-task status must be DONE or NOT DONE (\"{}\")", n, status);
      return r;
    }
    s.description = std::string(strip_decoration(k->value.substr(0, arrow), kEmphasis, kEmphasis));
    j.subtasks.push_back(std::move(s));
  }
  if (j.followed) {
    for (const auto& s : j.subtasks) {
      if (!s.done) {
        r.problem = fmt::format("FOLLOWED: YES contradicts sub-task {} marked NOT DONE", s.number);
        return r;
      }
    }
  }
  r.value = std::move(j);
  return r;
}

JudgeReading<int> parse_quality_reply(std::string_view reply) {
  return read_answer<int>(reply, "score", "SCORE", [](const std::string& v, std::string* why) {
    std::string_view s = v;
    if (s.size() > 2 && s.substr(s.size() - 2) == "/5") s = trim(s.substr(0, s.size() - 2));
    if (s.empty() || s.size() > 3 || s.find_first_not_of("0123456789") != std::string_view::npos) {
      *why = "SCORE must be a whole number from 1 to 5";
      return std::optional<int>();
    }
    const int score = std::atoi(std::string(s).c_str());
    if (score < 1 || score > 5) {
      *why = fmt::format("SCORE {} is outside 1..5", score);
      return std::optional<int>();
    }
    return std::optional<int>(score);
  });
}

JudgeReading<Preference> parse_pairwise_reply(std::string_view reply) {
  return read_answer<Preference>(reply, "preferred", "PREFERRED",
                                 [](const std::string& v, std::string* why) {
                                   const std::string l = lower(v);
                                   if (l == "1")
                                     return std::optional<Preference>(Preference::kFirst);
                                   if (l == "2")
                                     return std::optional<Preference>(Preference::kSecond);
                                   if (l == "tie")
                                     return std::optional<Preference>(Preference::kTie);
                                   *why = "PREFERRED must be 1, 2 or TIE";
                                   return std::optional<Preference>();
                                 });
}

std::optional<std::array<double, 3>> pairwise_probabilities(
    const std::vector<llm::GeneratedToken>& tokens) {
  std::string text;
  std::vector<size_t> starts;
  for (const auto& t : tokens) {
    starts.push_back(text.size());
    text += t.token;
  }
  const std::string low = lower(text);
  const size_t cue = low.rfind("preferred:");
  if (cue == std::string::npos) return std::nullopt;
  size_t v = cue + 10;
  while (v < text.size() && (text[v] == ' ' || text[v] == '*' || text[v] == '\t')) ++v;
  if (v >= text.size()) return std::nullopt;
  // The token holding the value's first byte; its text before that byte is what every counted
  // alternative must also start with.
  size_t k = tokens.size() - 1;
  while (k > 0 && starts[k] > v) --k;
  const std::string prefix = text.substr(starts[k], v - starts[k]);
  std::array<double, 3> p = {0, 0, 0};
  auto count = [&](const std::string& alternative, double logprob) {
    if (alternative.compare(0, prefix.size(), prefix) != 0) return;
    size_t i = prefix.size();
    while (i < alternative.size() && (alternative[i] == ' ' || alternative[i] == '*')) ++i;
    if (i >= alternative.size()) return;
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(alternative[i])));
    const int slot = c == '1' ? 0 : c == '2' ? 1 : c == 't' ? 2 : -1;
    if (slot >= 0) p[slot] += std::exp(logprob);
  };
  // The alternatives, and the chosen token itself where they leave it out (sampled, or held to a
  // format by constrained decoding).
  bool chosen_listed = false;
  for (const auto& [alternative, logprob] : tokens[k].top) {
    count(alternative, logprob);
    chosen_listed |= alternative == tokens[k].token;
  }
  if (!chosen_listed) count(tokens[k].token, tokens[k].logprob);
  const double total = p[0] + p[1] + p[2];
  if (!(total > 0)) return std::nullopt;
  for (double& x : p) x /= total;
  return p;
}

PairVerdict combine_pairwise_orders(Preference a_shown_first, Preference b_shown_first) {
  if (a_shown_first == Preference::kFirst && b_shown_first == Preference::kSecond)
    return PairVerdict::kAWins;
  if (a_shown_first == Preference::kSecond && b_shown_first == Preference::kFirst)
    return PairVerdict::kBWins;
  return PairVerdict::kTie;
}

std::optional<PairVerdict> combine_pairwise_orders(const JudgeReading<Preference>& a_shown_first,
                                                   const JudgeReading<Preference>& b_shown_first) {
  if (!a_shown_first.ok() || !b_shown_first.ok()) return std::nullopt;
  return combine_pairwise_orders(*a_shown_first.value, *b_shown_first.value);
}

std::string_view to_string(Preference p) {
  switch (p) {
    case Preference::kFirst:
      return "1";
    case Preference::kSecond:
      return "2";
    case Preference::kTie:
      return "TIE";
  }
  return "?";
}

std::string_view to_string(PairVerdict v) {
  switch (v) {
    case PairVerdict::kAWins:
      return "A";
    case PairVerdict::kBWins:
      return "B";
    case PairVerdict::kTie:
      return "tie";
  }
  return "?";
}

std::string following_reply_pattern() {
  auto line = [](const std::string& status) {
    return "SUBTASK [1-9]: [^\\n:>-]{1,60} -> " + status + "\\n";
  };
  const std::string any = "(?:" + line("(?:DONE|NOT DONE)") + ")";
  // All DONE: YES or NO (done, but perhaps not in order); a first NOT DONE after 0-5 DONE lines:
  // only NO. (Written around the *first* NOT DONE so that the automaton need not remember which
  // of several NOT DONE lines a match hinges on: the other way it passed 60,000 states.)
  return "(?:" + line("DONE") + "){1,6}FOLLOWED: (?:YES|NO)|(?:" + line("DONE") + "){0,5}" +
         line("NOT DONE") + any + "{0,5}FOLLOWED: NO";
}

std::string quality_reply_pattern() {
  return "(?:[^\\n:]{1,200}\\n){1,4}SCORE: [1-5]";
}

std::string pairwise_reply_pattern() {
  return "(?:[^\\n:]{1,200}\\n){1,4}PREFERRED: (?:1|2|TIE)";
}

}  // namespace seqit::eval
