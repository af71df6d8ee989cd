// Deterministic generator of tokenizer stress strings for the oracle comparison: mixed scripts,
// emoji (ZWJ sequences, flags, keycaps, skin tones), whitespace runs of many kinds, digit runs,
// contractions, code, special-token text (well-formed and mangled) and invalid-looking sequences.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace seqit::tokenizer::testing {

// `count` strings from `seed` (same seed, same strings, on every platform: only mt19937's raw
// output is used).
std::vector<std::string> oracle_strings(size_t count, uint32_t seed);

}  // namespace seqit::tokenizer::testing
