// The pipeline stages of an HF tokenizer.json, each with the semantics of the Rust `tokenizers`
// crate that transformers uses: normalizers (NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace,
// Prepend, Sequence), pre-tokenizers (Split, ByteLevel, Metaspace, Digits, WhitespaceSplit,
// Sequence) and decoders (ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, Sequence).
// Text flows through them as TextParts, so every byte keeps its origin in the input.
#pragma once

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "tokenizer/text.h"

namespace seqit::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // The normalised part (the input itself when nothing changes).
  virtual TextPart apply(const TextPart& part, PartArena& arena) const = 0;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may transform) every part; empty parts are dropped, as HF does.
  virtual void apply(std::vector<TextPart>& parts, PartArena& arena) const = 0;
  // True for the ByteLevel pre-tokenizer, whose byte-to-character mapping seqit folds into the
  // vocabulary instead of applying it to the text.
  virtual bool is_byte_level() const { return false; }
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // HF's decode_chain: token strings in, token strings out (joined at the very end).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
  // The bytes one token contributes away from the start of the text (no first-token rules).
  virtual void token_bytes(std::string& token) const = 0;
  virtual bool is_byte_level() const { return false; }
};

// Builders from the JSON objects of tokenizer.json; `where` names the file for errors, which name
// the unsupported component ("normalizer type 'Precompiled' is not supported").
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config, const std::string& where);
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config,
                                                 const std::string& where);
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config, const std::string& where);

}  // namespace seqit::tokenizer
