// The generated data sets: instruction-tuning items for training and held-out evaluation chains.
//
// What training never sees, and how evaluation is kept apart (docs/synth.md, "Splits"):
//   - phrasings: training items use each task's training phrasings, evaluation chains only the
//     held-out ones (task.h);
//   - task combinations: no training chain contains a held-out pair of adjacent tasks
//     (held_out_pairs()); every evaluation chain of two or more steps contains at least one;
//   - length: training chains have at most kMaxTrainSteps (3) steps, evaluation goes to 5;
//   - inputs: an input string belongs to evaluation when is_eval_input() says so (a fixed hash
//     rule, the same for every seed), so no evaluation input is ever a training input.
// Evaluation chains use atomic steps only, so that each step of the response is one task.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "data/record.h"
#include "synth/chain.h"

namespace seqit::synth {

enum class Split { kTrain, kEval };

struct Item {
  std::string id;  // "synth-it-000017", "synth-train-000003", "synth-eval-4-00012"
  Chain chain;
  std::string input;        // canonical spelling
  std::string instruction;  // render_instruction(chain)
  std::string response;     // reference_response(chain, input)
  bool operator==(const Item&) const = default;
};

// The held-out input rule: FNV-1a-64 of the canonical input text, modulo 5, is 0 (a fifth of all
// inputs are reserved for evaluation).
bool is_eval_input(std::string_view input);
// A random input of `kind` on the `split` side of the rule.
std::string random_split_input(Kind kind, Split split, Rng& rng, const InputShape& shape = {});

// A random type-valid chain of `steps` atomic steps for input of kind `input`, every step allowed
// after the one before it (may_follow). kTrain: training phrasings, no held-out pair. kEval:
// held-out phrasings, at least one held-out pair when steps >= 2. The connective is drawn at random
// for two or more steps.
Chain random_chain(Kind input, int steps, Split split, Rng& rng);

// An item from its parts (instruction and response rendered here).
Item make_item(std::string id, Chain chain, std::string_view input);

// (a) Instruction tuning: `count` single-task items (80% atomic tasks, 20% compound), training
// phrasings, training inputs of a kind the task accepts.
std::vector<Item> make_it_items(uint64_t seed, int64_t count, const InputShape& shape = {});
// Training chains of 1..max_steps atomic steps (uniform length), training phrasings and inputs,
// no held-out pair; max_steps <= kMaxTrainSteps.
std::vector<Item> make_train_chain_items(uint64_t seed, int64_t count,
                                         int max_steps = kMaxTrainSteps);
// (b) Held-out evaluation: `per_length` chains of each length 1..max_steps (max_steps <=
// kMaxEvalSteps), held-out phrasings, held-out pairs, held-out inputs; ordered by length.
std::vector<Item> make_eval_items(uint64_t seed, int64_t per_length, int max_steps = kMaxEvalSteps,
                                  const InputShape& shape = {});

// The item as a seqit record: id, instruction, input, output = response; meta "synth_chain" =
// describe(chain), "synth_steps" = number of steps.
data::Instruction to_instruction(const Item& item);

}  // namespace seqit::synth
