// The Seq-Instruct edits, as the world's teacher makes them. Given an instruction (a chain) and
// the kind of its input, the teacher picks one of
//   A decompose  a compound step ("sort the words and upper-case them") becomes its two steps
//   B prefix     a task is added before the first step (it works on the input)
//   C suffix     a task is added after the last step (it works on the last output)
//   D keep       the instruction stays as it is
// Every edit keeps the chain type-valid for the same input, uses training phrasings only and never
// creates a held-out pair (edits make training data); a task added by B or C is allowed next to
// its neighbour (may_follow: not the same task, not a translation undoing a translation).
// When a one-step chain grows, its connective is drawn at random; a longer chain keeps its own.
#pragma once

#include <optional>

#include "synth/chain.h"
#include "synth/rng.h"

namespace seqit::synth {

enum class Edit { kDecompose, kPrefix, kSuffix, kKeep };
char edit_letter(Edit edit);  // 'A', 'B', 'C', 'D'

// nullopt when the edit has nothing to work with (no compound step; no task fits before/after).
std::optional<Chain> decompose(const Chain& chain, Rng& rng);
std::optional<Chain> add_prefix(const Chain& chain, Kind input, Rng& rng);
std::optional<Chain> add_suffix(const Chain& chain, Kind input, Rng& rng);

// How often the teacher picks each edit. The defaults are the paper's first pass over Alpaca
// (A 7%, B 51%, C 25%, D 17%); later passes keep most instructions as they are.
struct EditPolicy {
  double decompose = 0.07;
  double prefix = 0.51;
  double suffix = 0.25;
  double keep = 0.17;
  int max_steps = kMaxTrainSteps;  // A, B and C are not chosen for a chain this long

  static EditPolicy first_pass() { return {}; }
  // An assumption, not a number from the paper: A 2%, B 10%, C 8%, D 80%.
  static EditPolicy later_pass() { return {0.02, 0.10, 0.08, 0.80, kMaxTrainSteps}; }
};

// Whether `edit` can be applied to `chain` under `policy` (kKeep always can).
bool edit_applies(const Chain& chain, Kind input, Edit edit, const EditPolicy& policy);
// Draws an edit with the policy's weights, renormalised over the edits that apply.
Edit choose_edit(const Chain& chain, Kind input, const EditPolicy& policy, Rng& rng);
// Applies `edit`; throws seqit::Error when it does not apply (kKeep returns the chain).
Chain apply_edit(const Chain& chain, Kind input, Edit edit, Rng& rng);

}  // namespace seqit::synth
