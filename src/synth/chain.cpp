#include "synth/chain.h"

#include <fmt/format.h>

#include "util/error.h"

namespace seqit::synth {

std::string_view connective_name(Connective c) {
  switch (c) {
    case Connective::kFirstThen:
      return "first_then";
    case Connective::kAfterThat:
      return "after_that";
    case Connective::kSentences:
      return "sentences";
    case Connective::kNumbered:
      return "numbered";
    case Connective::kCommaThen:
      return "comma_then";
  }
  return "?";
}

std::vector<TaskId> atomic_sequence(const Chain& chain) {
  std::vector<TaskId> out;
  for (const Step& s : chain.steps) {
    const TaskInfo& t = task_info(s.task);
    if (t.parts.empty()) {
      out.push_back(s.task);
    } else {
      out.insert(out.end(), t.parts.begin(), t.parts.end());
    }
  }
  return out;
}

std::optional<Kind> chain_output_kind(const Chain& chain, Kind in) {
  std::optional<Kind> k = in;
  for (const Step& s : chain.steps) {
    k = output_kind(s.task, *k);
    if (!k) return std::nullopt;
  }
  return k;
}

bool has_held_out_pair(const Chain& chain) {
  std::vector<TaskId> seq = atomic_sequence(chain);
  for (size_t i = 1; i < seq.size(); ++i)
    if (is_held_out_pair(seq[i - 1], seq[i])) return true;
  return false;
}

std::string describe(const Chain& chain) {
  std::string out;
  for (size_t i = 0; i < chain.steps.size(); ++i) {
    if (i > 0) out += " > ";
    out += fmt::format("{}#{}", task_info(chain.steps[i].task).name, chain.steps[i].phrasing);
  }
  if (chain.steps.size() > 1) out += fmt::format(" ({})", connective_name(chain.connective));
  return out;
}

namespace {

std::string capitalise(std::string_view s) {
  std::string out(s);
  if (!out.empty() && out[0] >= 'a' && out[0] <= 'z')
    out[0] = static_cast<char>(out[0] - 'a' + 'A');
  return out;
}

std::string_view phrasing_of(const Step& s) {
  const TaskInfo& t = task_info(s.task);
  if (s.phrasing < 0 || s.phrasing >= static_cast<int>(t.phrasings.size()))
    throw Error(fmt::format("synth: task {} has no phrasing {}", t.name, s.phrasing));
  return t.phrasings[static_cast<size_t>(s.phrasing)];
}

std::string render(const std::vector<std::string_view>& p, Connective c) {
  size_t n = p.size();
  std::string out;
  if (n == 1) return capitalise(p[0]) + ".";
  switch (c) {
    case Connective::kFirstThen:
      out = "First " + std::string(p[0]);
      for (size_t i = 1; i < n; ++i)
        out += (i + 1 == n && n >= 3 ? ", and finally " : ", then ") + std::string(p[i]);
      return out + ".";
    case Connective::kAfterThat:
      out = capitalise(p[0]);
      for (size_t i = 1; i < n; ++i) out += ", and after that " + std::string(p[i]);
      return out + ".";
    case Connective::kSentences:
      out = capitalise(p[0]);
      for (size_t i = 1; i < n; ++i)
        out += (i + 1 == n && n >= 3 ? ". Finally " : ". Then ") + std::string(p[i]);
      return out + ".";
    case Connective::kNumbered:
      out = "Do these steps in order:";
      for (size_t i = 0; i < n; ++i) out += fmt::format(" {}. {}.", i + 1, capitalise(p[i]));
      return out;
    case Connective::kCommaThen:
      out = capitalise(p[0]);
      for (size_t i = 1; i < n; ++i) out += ", then " + std::string(p[i]);
      return out + ".";
  }
  throw Error("synth: unknown connective");
}

// Lower-case, whitespace runs collapsed to one space, trimmed: what parse compares.
std::string normalise(std::string_view text) {
  std::string out;
  for (char c : text) {
    bool space = c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
    if (space) {
      if (!out.empty() && out.back() != ' ') out.push_back(' ');
    } else {
      out.push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
    }
  }
  if (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

bool is_boundary(const std::string& s, size_t at) {
  if (at >= s.size()) return true;
  char c = s[at];
  return c == ' ' || c == ',' || c == '.' || c == ':' || c == ';' || c == '?';
}

}  // namespace

std::string render_instruction(const Chain& chain) {
  if (chain.steps.empty()) throw Error("synth: cannot render an empty chain");
  std::vector<std::string_view> p;
  for (const Step& s : chain.steps) p.push_back(phrasing_of(s));
  return render(p, chain.connective);
}

std::optional<Chain> parse_instruction(std::string_view text) {
  std::string t = normalise(text);
  // Find the phrasings left to right: at each word start the longest phrasing that ends at a word
  // boundary (so "sort the words and upper-case them" wins over "sort the words"); the text
  // between them is connective. Then the candidate is confirmed by rendering it again with each
  // connective: only an exact rendering counts, so stray words are never silently skipped.
  Chain chain;
  for (size_t at = 0; at < t.size();) {
    if (at > 0 && t[at - 1] != ' ') {
      ++at;
      continue;
    }
    std::optional<Step> best;
    size_t best_len = 0;
    for (TaskId id : all_tasks()) {
      const TaskInfo& info = task_info(id);
      for (size_t k = 0; k < info.phrasings.size(); ++k) {
        std::string_view p = info.phrasings[k];
        if (p.size() > best_len && t.compare(at, p.size(), p) == 0 &&
            is_boundary(t, at + p.size())) {
          best = Step{id, static_cast<int>(k)};
          best_len = p.size();
        }
      }
    }
    if (best) {
      chain.steps.push_back(*best);
      at += best_len;
    } else {
      ++at;
    }
  }
  if (chain.steps.empty() || chain.steps.size() > 64) return std::nullopt;
  for (Connective c : kAllConnectives) {
    chain.connective = c;
    if (normalise(render_instruction(chain)) == t) return chain;
    if (chain.steps.size() == 1) break;  // one rendering only
  }
  return std::nullopt;
}

std::vector<std::string> run_chain(const Chain& chain, std::string_view input) {
  if (chain.steps.empty()) throw Error("synth: cannot run an empty chain");
  std::vector<std::string> outputs;
  std::string text = canonical_text(input);
  for (size_t i = 0; i < chain.steps.size(); ++i) {
    try {
      text = apply_task(chain.steps[i].task, text);
    } catch (Error& e) {
      throw Error(fmt::format("step {} of '{}': {}", i + 1, describe(chain), e.message()));
    }
    outputs.push_back(text);
  }
  return outputs;
}

std::string reference_response(const Chain& chain, std::string_view input) {
  std::vector<std::string> outputs = run_chain(chain, input);
  std::string out;
  for (size_t i = 0; i + 1 < outputs.size(); ++i)
    out += fmt::format("Step {}: {}\n", i + 1, outputs[i]);
  return out + "Answer: " + outputs.back();
}

std::string solve(std::string_view instruction_text, std::string_view input) {
  std::optional<Chain> chain = parse_instruction(instruction_text);
  if (!chain)
    throw Error(
        fmt::format("synth: not an instruction of the synthetic world: '{}'", instruction_text));
  return reference_response(*chain, input);
}

Connective random_connective(Rng& rng) {
  return kAllConnectives[rng.below(std::size(kAllConnectives))];
}

int random_phrasing(TaskId task, bool held_out, Rng& rng) {
  const TaskInfo& t = task_info(task);
  int total = static_cast<int>(t.phrasings.size());
  if (held_out) {
    if (total == t.train_count)
      throw Error(fmt::format("synth: task {} has no held-out phrasing", t.name));
    return t.train_count +
           static_cast<int>(rng.below(static_cast<uint64_t>(total - t.train_count)));
  }
  return static_cast<int>(rng.below(static_cast<uint64_t>(t.train_count)));
}

}  // namespace seqit::synth
