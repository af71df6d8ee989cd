// A tokenizer for the synthetic world, written as a Hugging Face tokenizer.json (+
// tokenizer_config.json) that seqit's tokenizer module and the HF `tokenizers` library load.
//
// One token per world word: a byte-level BPE (GPT-2's byte-to-character alphabet) with
// `ignore_merges` and no merges, whose vocabulary holds every world_vocabulary() token twice — as
// it is and with a leading space ("Ġred") — after the 256 byte tokens. The pre-tokenizer is
// Llama-3's shape, Sequence[Split(regex), ByteLevel(use_regex = false)], with the regex
//   ` ?[^\s,.:;?]+| ?[,.:;?]|\s`
// i.e. a world word or mark with at most one leading space, or one white-space character, so every
// world text splits into exactly its world tokens and each is one vocabulary entry. Any other text
// still encodes (byte tokens) and decodes back byte for byte.
//
// Ids: 0 <pad>, 1 <s> (BOS, added by the post-processor), 2 </s> (EOS), 3 <|system|>,
// 4 <|user|>, 5 <|assistant|> (the role markers of the `tulu` chat format), then the 256 byte
// tokens, then the world words in world_vocabulary() order, each bare then with its space.
#pragma once

#include <filesystem>
#include <string>

namespace seqit::synth {

inline constexpr int kWorldPadId = 0;
inline constexpr int kWorldBosId = 1;
inline constexpr int kWorldEosId = 2;

// The tokenizer.json text (compact JSON).
std::string world_tokenizer_json();
// tokenizer_config.json: bos/eos/pad tokens, PreTrainedTokenizerFast, the context length.
std::string world_tokenizer_config_json(int model_max_length = 512);
// Writes tokenizer.json and tokenizer_config.json into `dir` (created when missing), atomically.
void write_world_tokenizer(const std::filesystem::path& dir, int model_max_length = 512);

}  // namespace seqit::synth
