// The tokenizer interface every vocabulary format implements (HF tokenizer.json, SentencePiece
// .model, llama2.c tokenizer.bin, GGUF tokenizer.ggml.*). Token ids must equal the model's own
// tokenizer's ids exactly: training masks, generation and evaluation all stand on them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace seqit::tokenizer {

using TokenId = int32_t;

struct EncodeOptions {
  // Add the tokens the format's post-processor adds (e.g. BOS for Llama, nothing for GPT-2),
  // as HF's add_special_tokens=True does.
  bool add_special = true;
  // Recognise special tokens written in the text (e.g. "<|eot_id|>") as single tokens, as HF
  // does. When false, special tokens' text is tokenized as ordinary text (HF's
  // split_special_tokens); non-special added tokens (Qwen3's "<think>") are still matched, as in
  // HF.
  bool parse_special = true;
};

// Byte range [begin, end) of the input text that a token came from. Tokens added by the
// post-processor (BOS/EOS) have begin == end == position where they were inserted (0, or the text's
// size for EOS). Spans go through normalisation: a byte that normalisation inserted (the
// SentencePiece "▁" prefix) maps to no input bytes, so "▁Hello" spans just "Hello" and a token made
// only of inserted bytes (a lone prefix "▁") gets an empty span at its insertion point; a replaced
// byte maps to what it replaced (" " -> "▁" spans the space; NFC output spans the whole composed
// sequence). Byte-level tokens that split a character span exactly their bytes. Spans never
// overlap, except that a multi-byte character spread over several tokens by normalisation may be
// covered by each of them.
struct Span {
  size_t begin = 0, end = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Token ids for `text`. When `spans` is given it receives one Span per id, mapping each token
  // back to the bytes of `text` it covers (through normalisation), for assistant-token masks.
  virtual std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {},
                                      std::vector<Span>* spans = nullptr) const = 0;
  // Text for `ids` as the model's tokenizer decodes it (HF decode semantics, including the
  // SentencePiece leading-space rule). Invalid UTF-8 produced by partial byte tokens becomes
  // U+FFFD.
  virtual std::string decode(std::span<const TokenId> ids, bool skip_special = false) const = 0;

  // The raw bytes a token stands for in the output (byte-fallback and byte-level tokens decoded,
  // "▁" turned into a space), without any leading-space rule: what a streaming decoder appends.
  virtual std::string token_bytes(TokenId id) const = 0;

  virtual size_t vocab_size() const = 0;
  // The token as stored in the vocabulary (e.g. "Ġthe", "▁the", "<0x0A>", "<|eot_id|>").
  virtual std::string token_text(TokenId id) const = 0;
  virtual std::optional<TokenId> token_id(std::string_view token_text) const = 0;
  // Control/special tokens (BOS, EOS, <|eot_id|>, ...): skipped by decode(skip_special=true).
  virtual bool is_special(TokenId id) const = 0;

  virtual std::optional<TokenId> bos_id() const = 0;
  virtual std::optional<TokenId> eos_id() const = 0;
  // Short description of the format and model type, e.g. "tokenizer.json (BPE, byte-level)".
  virtual std::string describe() const = 0;
};

// Loads any supported format, chosen by content: a folder (tokenizer.json, else tokenizer.model),
// tokenizer.json, a SentencePiece .model, a llama2.c tokenizer.bin, or a GGUF file. Errors name the
// file and the unsupported component.
std::unique_ptr<Tokenizer> load_tokenizer(const std::filesystem::path& path);

}  // namespace seqit::tokenizer
