// Reading the generator's replies (SIT_SPEC §1.3, §1.5, §1.6), robustly where the reference is
// fragile (§8 item 6): the option comes from the explicit answer line the prompt asks for, and the
// fallbacks accept only an option letter that stands alone ("option B", "(C)"), never a letter that
// starts a word ("option allows" is not A). A reply that names two different options, or none, is a
// parse failure with a reason; the pipeline retries it with a new seed and, after the last attempt,
// records the item as D with that reason.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "seqinstruct/prompts.h"

namespace seqit::seqinstruct {

template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string how;  // which rule matched ("answer line", "option mention", ...), or why it failed
  bool ok() const { return value.has_value(); }
};

// The option of a classification reply. Rules, first that decides wins:
//  1. the last line that is an answer line: "Option: B", "So the option is: B.", "**Option:** (B)",
//     "The option is B" (letter A-D alone, case-insensitive, nothing but punctuation after it);
//  2. every standalone mention "option B" / "option (B)" / "(Option B)" in the text: one distinct
//     letter decides, two or more is a failure ("ambiguous");
//  3. the phrases "prefix task" (B), "suffix task" (C), "decompose" (A), "keep the original" (D),
//     when exactly one of them occurs;
//  otherwise a failure.
Parsed<Option> parse_option(std::string_view reply);
// A regular expression (infer/constraint.h syntax) of classification replies that rule 1 always
// reads: up to 40 lines of anything, then the answer line "Option: <A-D>". Sent as the classify
// stage's response format when the pipeline is constrained.
std::string option_reply_pattern();

// The new instruction of a generation reply: the text after the last "#New Instruction#" marker
// (case-insensitive; else after the last "new instruction:"), cut at the first "###", with
// surrounding colons, quotes, asterisks and white space removed; a cut at "Explanation:" removes a
// trailing explanation. Empty or missing is a failure.
Parsed<std::string> parse_new_instruction(std::string_view reply);

struct Extraction {
  std::string instruction, input;
};
// An extraction reply "Instruction: ...###\nInput: ...###" (keys case-insensitive, the ### optional
// on the last field). A missing or empty instruction is a failure; an empty input is fine.
Parsed<Extraction> parse_extraction(std::string_view reply);

// Post-processing of a rewritten instruction (SIT_SPEC §1.9): cut at "explanation:", strip quotes
// (' " “ ” ‘ ’), spaces and newlines at both ends.
std::string clean_instruction(std::string_view text);

// Whether `input` is already part of `instruction` (so it must not be appended again, §1.9
// filter_input): a case-insensitive substring, or a unigram-overlap F1 (ROUGE-1 F) above 0.3 over
// lower-cased alphanumeric words — without the reference's typo that made this check crash (§8 4).
bool input_in_instruction(std::string_view instruction, std::string_view input);

}  // namespace seqit::seqinstruct
