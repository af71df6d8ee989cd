// Grading a model's response to a chain, with the exact checkers of the tasks.
//
// The response is read line by line (lines trimmed, empty lines skipped). A line is labelled
// "Step k" when it reads `step <k>:` and "Answer" when it reads `answer:` (labels in any ASCII
// case, spaces allowed before the colon); any other line is unlabelled. For an n-step chain the
// expected lines are Step 1 .. Step n-1 then Answer (chain.h).
//
//   step i correct   the first line labelled for step i (Answer for the last step) exists and its
//                    content equals the reference output of step i as world tokens: spacing is
//                    free; letter case is free unless the reference output is upper-case text
//                    (kind upper), where it must match exactly.
//   step i shaped    that line exists and its content is text of the kind step i gives (numbers,
//                    upper-case words, English words, Vellan words, facts) with as many world
//                    tokens as the reference output: the step was carried out, right or wrong.
//   following        the response is exactly the n expected lines, labelled in order (no missing,
//                    repeated, extra or unlabelled line), and every step is shaped.
//   depth            the number of leading steps that are correct (0..n).
//   final correct    step n (the Answer line) is correct, whatever came before.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "synth/chain.h"
#include "synth/split.h"

namespace seqit::synth {

struct StepGrade {
  std::string expected;            // reference output of the step
  std::optional<std::string> got;  // content of the step's line, when there is one
  bool shaped = false;
  bool correct = false;
};

struct Grade {
  std::vector<StepGrade> steps;
  bool following = false;
  int depth = 0;
  bool final_correct = false;
  // Correct steps / steps.
  double step_accuracy() const;
};

// Whether `output` is right for a step whose reference output is `expected` (see above).
bool output_matches(std::string_view output, std::string_view expected);
// Whether `output` has the shape of `expected` (see above).
bool output_has_shape(std::string_view output, std::string_view expected);

Grade grade_response(const Chain& chain, std::string_view input, std::string_view response);
inline Grade grade_response(const Item& item, std::string_view response) {
  return grade_response(item.chain, item.input, response);
}

// Means over items (per-step accuracy is over all steps of all items, so long chains weigh more).
struct GradeSummary {
  int64_t items = 0;
  int64_t steps = 0;
  double following_rate = 0;
  double step_accuracy = 0;
  double final_accuracy = 0;
  double mean_depth = 0;
};
GradeSummary summarize(const std::vector<Grade>& grades);

}  // namespace seqit::synth
