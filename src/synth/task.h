// The atomic tasks of the synthetic world, the compound tasks built from two of them, and the
// pairs of tasks held out of training.
//
// Every task is exact: apply_task() computes the one right output, and the grader compares token
// lists against it. Tasks pass text to each other (step i's output is step i+1's input), so each
// task declares which kinds of text it accepts and which kind it gives (output_kind); a chain is
// type-valid when every step accepts what the step before it gave.
//
//   task        accepts                        gives           example
//   reverse     english vellan upper numbers   same kind       red big cat -> cat big red
//   upper       english vellan                 upper           red cat -> RED CAT
//   sort        english vellan upper           same kind       red big cat -> big cat red
//   count       english vellan upper numbers   numbers         red big cat -> 3
//   first/last  english vellan upper numbers   same kind       red big cat -> red / cat
//   sum, max    numbers                        numbers         3 12 5 -> 20 / 12
//   lookup      facts                          english         cat: red, dog: blue. dog? -> blue
//   to_vellan   english                        vellan          red cat -> (Vellan words)
//   to_english  vellan                         english         (Vellan words) -> red cat
//   repeat      every kind                     same kind       the input, unchanged
//
// Phrasings: each atomic task has kTrainPhrasings phrasings for training followed by
// kHeldOutPhrasings held out for evaluation. A held-out phrasing is a new sentence made only of
// words that training phrasings use ("give the word count" from "give the number of words" and
// "tell me the word count"): a model trained from scratch has no meaning for a word it never saw,
// so what is held out is the combination, not the words. A compound task (e.g. "sort the words and
// upper-case them") is one instruction that means two atomic tasks in order; its phrasings are all
// training phrasings (compounds exist so that the teacher's decompose edit has something to split).
// Phrasings are lower-case imperatives with no punctuation and no digits, so that connectives
// (which all carry punctuation) can never be mistaken for part of one.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "synth/lexicon.h"
#include "synth/rng.h"

namespace seqit::synth {

enum class TaskId : uint8_t {
  // atomic
  kReverse,
  kUpper,
  kSort,
  kCount,
  kFirst,
  kLast,
  kSum,
  kMax,
  kLookup,
  kToVellan,
  kToEnglish,
  kRepeat,
  // compound: two atomic tasks said as one instruction
  kSortUpper,        // sort, upper
  kReverseUpper,     // reverse, upper
  kSortFirst,        // sort, first
  kToVellanReverse,  // to_vellan, reverse
  kLookupToVellan,   // lookup, to_vellan
};
inline constexpr int kAtomicTaskCount = 12;
inline constexpr int kTaskCount = 17;
inline constexpr int kTrainPhrasings = 5;
inline constexpr int kHeldOutPhrasings = 2;

struct TaskInfo {
  TaskId id;
  std::string_view name;                    // stable id: "reverse", "sort_upper", ...
  std::vector<TaskId> parts;                // the two atomic tasks of a compound; empty if atomic
  std::vector<std::string_view> phrasings;  // [0, train_count) train, the rest held out
  int train_count = 0;
};

const TaskInfo& task_info(TaskId id);
// All tasks, atomic ones first, in TaskId order.
const std::vector<TaskId>& all_tasks();
const std::vector<TaskId>& atomic_tasks();
const std::vector<TaskId>& compound_tasks();
inline bool is_compound(TaskId id) {
  return static_cast<int>(id) >= kAtomicTaskCount;
}
std::optional<TaskId> task_by_name(std::string_view name);
bool is_held_out_phrasing(TaskId id, int phrasing);

// The kind `id` gives for input of kind `in`, or nullopt when it does not accept `in`.
std::optional<Kind> output_kind(TaskId id, Kind in);
inline bool accepts(TaskId id, Kind in) {
  return output_kind(id, in).has_value();
}

// The exact output of `id` on `input`; throws seqit::Error when `input` is not a kind the task
// accepts. The output is in canonical spelling (canonical_text).
std::string apply_task(TaskId id, std::string_view input);

// The shape of generated inputs. The defaults are the world's (docs/synth.md); a smaller shape
// makes an easier world for small models (`seqit study lexicon=20 max_words=4 ...`).
struct InputShape {
  int lexicon = 0;  // English inputs draw from the first `lexicon` words of
                    // english_words(), Vellan inputs from their translations; 0: all
  int min_words = 3, max_words = 8;      // distinct words per English / Vellan input
  int min_numbers = 2, max_numbers = 5;  // integers per numbers input ...
  int max_number = 19;               // ... each in 0..max_number (max_numbers x max_number <= 99)
  int min_facts = 2, max_facts = 4;  // facts per facts input
  bool operator==(const InputShape&) const = default;
  // Throws seqit::Error naming the field when the shape cannot be generated.
  void validate() const;
};

// A random input of kind `kind` (english, vellan, numbers or facts; never upper); by default
//   english / vellan: 3-8 distinct words; numbers: 2-5 integers in 0..19; facts: 2-4 facts.
std::string random_input(Kind kind, Rng& rng, const InputShape& shape = {});
// The kinds a chain can start from, and an input generator per task: a random input of a kind
// the task accepts.
inline constexpr Kind kInputKinds[] = {Kind::kEnglish, Kind::kForeign, Kind::kNumbers,
                                       Kind::kFacts};
std::string random_input_for(TaskId id, Rng& rng, const InputShape& shape = {});

// Whether atomic task `next` may directly follow `prev` in a generated or edited chain: never the
// same task twice in a row, and never one translation right after the other (it would undo it).
// Type validity is checked separately (output_kind).
bool may_follow(TaskId prev, TaskId next);

// Adjacent ordered pairs of atomic tasks that no training chain contains and every evaluation
// chain of two or more steps contains at least once (docs/synth.md, "Splits"). Fixed by hand; no
// pair is the two parts of a compound task, so decomposing never creates one.
const std::vector<std::pair<TaskId, TaskId>>& held_out_pairs();
bool is_held_out_pair(TaskId a, TaskId b);

}  // namespace seqit::synth
