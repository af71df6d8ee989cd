// Every world token (split_world_tokens) that an instruction, input or response of the synthetic
// world can contain: the words of every phrasing and connective (lower-case, and capitalised where
// a sentence can start with them), English and Vellan words in lower and upper case, the numbers
// 0..99, the marks , . : ?, the response labels "Step" and "Answer", and the line break "\n".
// For building a closed word-level tokenizer for the tiny study models.
#pragma once

#include <string>
#include <vector>

namespace seqit::synth {

// Sorted by byte order, no duplicates.
const std::vector<std::string>& world_vocabulary();

}  // namespace seqit::synth
