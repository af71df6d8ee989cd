#include "synth/grade.h"

#include <algorithm>

#include "synth/lexicon.h"

namespace seqit::synth {

double Grade::step_accuracy() const {
  if (steps.empty()) return 0;
  auto n = std::count_if(steps.begin(), steps.end(), [](const StepGrade& s) { return s.correct; });
  return static_cast<double>(n) / static_cast<double>(steps.size());
}

bool output_matches(std::string_view output, std::string_view expected) {
  std::vector<std::string> got = split_world_tokens(output);
  std::vector<std::string> want = split_world_tokens(expected);
  if (classify_text(expected) == Kind::kUpper) return got == want;
  if (got.size() != want.size()) return false;
  for (size_t i = 0; i < got.size(); ++i)
    if (to_lower_ascii(got[i]) != to_lower_ascii(want[i])) return false;
  return true;
}

bool output_has_shape(std::string_view output, std::string_view expected) {
  std::optional<Kind> want = classify_text(expected);
  // Case is part of the shape only where it is part of the answer (upper-case text).
  std::string seen = want == Kind::kUpper ? std::string(output) : to_lower_ascii(output);
  return want && classify_text(seen) == want &&
         split_world_tokens(output).size() == split_world_tokens(expected).size();
}

namespace {

struct Line {
  enum Label { kOther, kStep, kAnswer } label = kOther;
  int step = 0;  // for kStep
  std::string content;
};

std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

bool eat_word(std::string_view& s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (size_t i = 0; i < word.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  s.remove_prefix(word.size());
  return true;
}

Line read_line(std::string_view text) {
  Line line;
  std::string_view s = text;
  if (eat_word(s, "step")) {
    s = trim(s);
    int k = 0;
    size_t digits = 0;
    while (digits < s.size() && digits < 3 && s[digits] >= '0' && s[digits] <= '9')
      k = k * 10 + (s[digits++] - '0');
    s.remove_prefix(digits);
    s = trim(s);
    if (digits > 0 && !s.empty() && s[0] == ':') {
      line.label = Line::kStep;
      line.step = k;
      line.content = std::string(trim(s.substr(1)));
      return line;
    }
  } else if (eat_word(s, "answer")) {
    s = trim(s);
    if (!s.empty() && s[0] == ':') {
      line.label = Line::kAnswer;
      line.content = std::string(trim(s.substr(1)));
      return line;
    }
  }
  line.content = std::string(text);
  return line;
}

std::vector<Line> read_lines(std::string_view response) {
  std::vector<Line> out;
  while (!response.empty()) {
    size_t nl = response.find('\n');
    std::string_view raw = response.substr(0, nl);
    response = nl == std::string_view::npos ? std::string_view() : response.substr(nl + 1);
    std::string_view t = trim(raw);
    if (!t.empty()) out.push_back(read_line(t));
  }
  return out;
}

}  // namespace

Grade grade_response(const Chain& chain, std::string_view input, std::string_view response) {
  std::vector<std::string> expected = run_chain(chain, input);
  std::vector<Line> lines = read_lines(response);
  size_t n = expected.size();
  Grade g;
  g.steps.resize(n);
  for (size_t i = 0; i < n; ++i) {
    StepGrade& s = g.steps[i];
    s.expected = expected[i];
    bool last = i + 1 == n;
    for (const Line& l : lines) {
      bool mine = last ? l.label == Line::kAnswer
                       : l.label == Line::kStep && l.step == static_cast<int>(i) + 1;
      if (mine) {
        s.got = l.content;
        break;
      }
    }
    if (s.got) {
      s.correct = output_matches(*s.got, s.expected);
      s.shaped = output_has_shape(*s.got, s.expected);
    }
  }
  // Following: exactly the expected labels in order, every step shaped.
  bool in_order = lines.size() == n;
  for (size_t i = 0; in_order && i < n; ++i) {
    bool last = i + 1 == n;
    in_order = last ? lines[i].label == Line::kAnswer
                    : lines[i].label == Line::kStep && lines[i].step == static_cast<int>(i) + 1;
  }
  g.following = in_order && std::all_of(g.steps.begin(), g.steps.end(),
                                        [](const StepGrade& s) { return s.shaped; });
  while (g.depth < static_cast<int>(n) && g.steps[static_cast<size_t>(g.depth)].correct) ++g.depth;
  g.final_correct = g.steps.back().correct;
  return g;
}

GradeSummary summarize(const std::vector<Grade>& grades) {
  GradeSummary s;
  int64_t following = 0, final = 0, correct_steps = 0, depth = 0;
  for (const Grade& g : grades) {
    ++s.items;
    s.steps += static_cast<int64_t>(g.steps.size());
    following += g.following;
    final += g.final_correct;
    depth += g.depth;
    for (const StepGrade& st : g.steps) correct_steps += st.correct;
  }
  if (s.items > 0) {
    auto items = static_cast<double>(s.items);
    s.following_rate = static_cast<double>(following) / items;
    s.final_accuracy = static_cast<double>(final) / items;
    s.mean_depth = static_cast<double>(depth) / items;
  }
  if (s.steps > 0)
    s.step_accuracy = static_cast<double>(correct_steps) / static_cast<double>(s.steps);
  return s;
}

}  // namespace seqit::synth
