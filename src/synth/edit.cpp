#include "synth/edit.h"

#include <fmt/format.h>

#include "util/error.h"

namespace seqit::synth {

char edit_letter(Edit edit) {
  switch (edit) {
    case Edit::kDecompose:
      return 'A';
    case Edit::kPrefix:
      return 'B';
    case Edit::kSuffix:
      return 'C';
    case Edit::kKeep:
      return 'D';
  }
  return '?';
}

namespace {

// The chain with `step` inserted at `at`, connective drawn when it grows from one step.
Chain with_step(const Chain& chain, size_t at, Step step, Rng& rng) {
  Chain out = chain;
  out.steps.insert(out.steps.begin() + static_cast<std::ptrdiff_t>(at), step);
  if (chain.steps.size() == 1) out.connective = random_connective(rng);
  return out;
}

bool fits(const Chain& candidate, Kind input) {
  return is_type_valid(candidate, input) && !has_held_out_pair(candidate);
}

// Atomic tasks that can go at the front (at = 0) or the back (at = size) of `chain`.
std::vector<TaskId> candidates(const Chain& chain, Kind input, bool front) {
  std::vector<TaskId> out;
  if (chain.steps.empty()) return out;
  std::vector<TaskId> seq = atomic_sequence(chain);
  TaskId neighbour = front ? seq.front() : seq.back();
  for (TaskId t : atomic_tasks()) {
    if (front ? !may_follow(t, neighbour) : !may_follow(neighbour, t)) continue;
    Chain c = chain;
    c.steps.insert(front ? c.steps.begin() : c.steps.end(), Step{t, 0});
    if (fits(c, input)) out.push_back(t);
  }
  return out;
}

std::optional<Chain> add_at(const Chain& chain, Kind input, bool front, Rng& rng) {
  std::vector<TaskId> ok = candidates(chain, input, front);
  if (ok.empty()) return std::nullopt;
  TaskId t = rng.pick(ok);
  Step step{t, random_phrasing(t, false, rng)};
  return with_step(chain, front ? 0 : chain.steps.size(), step, rng);
}

}  // namespace

std::optional<Chain> decompose(const Chain& chain, Rng& rng) {
  std::vector<size_t> compound;
  for (size_t i = 0; i < chain.steps.size(); ++i)
    if (is_compound(chain.steps[i].task)) compound.push_back(i);
  if (compound.empty()) return std::nullopt;
  size_t at = rng.pick(compound);
  const TaskInfo& info = task_info(chain.steps[at].task);
  Step a{info.parts[0], random_phrasing(info.parts[0], false, rng)};
  Step b{info.parts[1], random_phrasing(info.parts[1], false, rng)};
  Chain out = chain;
  out.steps[at] = b;
  out.steps.insert(out.steps.begin() + static_cast<std::ptrdiff_t>(at), a);
  if (chain.steps.size() == 1) out.connective = random_connective(rng);
  return out;
}

std::optional<Chain> add_prefix(const Chain& chain, Kind input, Rng& rng) {
  return add_at(chain, input, true, rng);
}

std::optional<Chain> add_suffix(const Chain& chain, Kind input, Rng& rng) {
  return add_at(chain, input, false, rng);
}

bool edit_applies(const Chain& chain, Kind input, Edit edit, const EditPolicy& policy) {
  if (edit == Edit::kKeep) return true;
  if (static_cast<int>(chain.steps.size()) >= policy.max_steps) return false;
  switch (edit) {
    case Edit::kDecompose:
      for (const Step& s : chain.steps)
        if (is_compound(s.task)) return true;
      return false;
    case Edit::kPrefix:
      return !candidates(chain, input, true).empty();
    case Edit::kSuffix:
      return !candidates(chain, input, false).empty();
    case Edit::kKeep:
      return true;
  }
  return false;
}

Edit choose_edit(const Chain& chain, Kind input, const EditPolicy& policy, Rng& rng) {
  const Edit edits[] = {Edit::kDecompose, Edit::kPrefix, Edit::kSuffix, Edit::kKeep};
  std::vector<double> w = {policy.decompose, policy.prefix, policy.suffix, policy.keep};
  for (size_t i = 0; i < 4; ++i) {
    if (w[i] < 0) throw Error("synth: an edit policy weight is negative");
    if (!edit_applies(chain, input, edits[i], policy)) w[i] = 0;
  }
  // Only D is left and the policy gives it no weight: keeping is the one thing possible.
  if (w[0] + w[1] + w[2] + w[3] <= 0) return Edit::kKeep;
  return edits[rng.weighted(w)];
}

Chain apply_edit(const Chain& chain, Kind input, Edit edit, Rng& rng) {
  std::optional<Chain> out;
  switch (edit) {
    case Edit::kDecompose:
      out = decompose(chain, rng);
      break;
    case Edit::kPrefix:
      out = add_prefix(chain, input, rng);
      break;
    case Edit::kSuffix:
      out = add_suffix(chain, input, rng);
      break;
    case Edit::kKeep:
      return chain;
  }
  if (!out)
    throw Error(
        fmt::format("synth: edit {} does not apply to '{}'", edit_letter(edit), describe(chain)));
  return *out;
}

}  // namespace seqit::synth
