// A chain of steps (what a sequential instruction asks for), its rendering as an instruction in
// natural language, the parse back, and the reference response.
//
// Instruction connectives (n >= 2 steps; p_i is step i's phrasing, P_i the same capitalised):
//   kFirstThen  First p1, then p2, then p3, and finally p4.      (n = 2: First p1, then p2.)
//   kAfterThat  P1, and after that p2, and after that p3.
//   kSentences  P1. Then p2. Then p3. Finally p4.                (n = 2: P1. Then p2.)
//   kNumbered   Do these steps in order: 1. P1. 2. P2. 3. P3.
//   kCommaThen  P1, then p2, then p3.
// A one-step chain is rendered "P1." whatever its connective, and parses back with kFirstThen.
//
// Reference response (n steps, out_i the output of step i):
//   Step 1: out_1
//   ...
//   Step n-1: out_(n-1)
//   Answer: out_n
// so a single task is answered "Answer: out_1". Lines are joined by "\n", with no final newline.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "synth/lexicon.h"
#include "synth/rng.h"
#include "synth/task.h"

namespace seqit::synth {

struct Step {
  TaskId task;
  int phrasing = 0;  // index into task_info(task).phrasings
  bool operator==(const Step&) const = default;
};

enum class Connective { kFirstThen, kAfterThat, kSentences, kNumbered, kCommaThen };
inline constexpr Connective kAllConnectives[] = {Connective::kFirstThen, Connective::kAfterThat,
                                                 Connective::kSentences, Connective::kNumbered,
                                                 Connective::kCommaThen};
std::string_view connective_name(Connective c);

struct Chain {
  std::vector<Step> steps;
  Connective connective = Connective::kFirstThen;  // not rendered for one step
  bool operator==(const Chain&) const = default;
};

// The training chains are at most this long; evaluation goes to kMaxEvalSteps.
inline constexpr int kMaxTrainSteps = 3;
inline constexpr int kMaxEvalSteps = 5;

// The atomic tasks the chain performs, compound steps expanded into their two parts.
std::vector<TaskId> atomic_sequence(const Chain& chain);
// The kind the chain gives for input of kind `in`, or nullopt when some step does not accept
// what it is given.
std::optional<Kind> chain_output_kind(const Chain& chain, Kind in);
inline bool is_type_valid(const Chain& chain, Kind in) {
  return !chain.steps.empty() && chain_output_kind(chain, in).has_value();
}
// True when two adjacent tasks of atomic_sequence(chain) form a held-out pair.
bool has_held_out_pair(const Chain& chain);
// "reverse#0 > upper#6 (numbered)": a compact, stable description for logs and record metadata.
std::string describe(const Chain& chain);

std::string render_instruction(const Chain& chain);
// The chain whose rendering is `text`, up to ASCII case and runs of whitespace; nullopt when
// `text` is not an instruction of this world.
std::optional<Chain> parse_instruction(std::string_view text);

// Each step's output on `input` (throws seqit::Error when the chain does not accept the input).
std::vector<std::string> run_chain(const Chain& chain, std::string_view input);
std::string reference_response(const Chain& chain, std::string_view input);
// parse_instruction + reference_response; throws seqit::Error when the instruction is not of this
// world or does not accept `input`.
std::string solve(std::string_view instruction_text, std::string_view input);

// A connective drawn uniformly.
Connective random_connective(Rng& rng);
// A random phrasing of `task`: a training one or a held-out one.
int random_phrasing(TaskId task, bool held_out, Rng& rng);

}  // namespace seqit::synth
