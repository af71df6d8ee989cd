// SentencePiece-style vocabularies given as pieces with scores (llama2.c tokenizer.bin, GGUF
// "llama" vocabularies), encoded as SentencePiece's BPE does: spaces become "▁", a "▁" is
// prepended (add_dummy_prefix), the text is split into characters, and the adjacent pair whose
// concatenation is a piece with the highest score is merged first (leftmost among equals) until
// no pair forms a piece; characters that are no piece become byte pieces "<0xE2>" (byte fallback)
// or <unk>. Decoding follows HF's Llama decoder: "▁" -> " ", byte runs -> UTF-8, one leading
// space removed.
//
// Special pieces written in the text: user-defined pieces always, control and unknown pieces
// ("<s>", "[INST]") when parse_special; each stretch of text between them is encoded on its own
// with its own "▁" prefix (as llama.cpp does for GGUF vocabularies).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/text.h"
#include "tokenizer/tokenizer.h"

namespace seqit::tokenizer {

// SentencePiece's piece types (the values GGUF's tokenizer.ggml.token_type uses).
enum class PieceType : uint8_t {
  normal = 1,
  unknown = 2,
  control = 3,
  user_defined = 4,
  unused = 5,
  byte = 6
};

struct PieceVocab {
  std::vector<std::string> pieces;  // SentencePiece form: "▁the", "<0x0A>", "<s>"
  std::vector<float> scores;
  std::vector<PieceType> types;
  std::optional<TokenId> unk, bos, eos;
  bool add_bos = true, add_eos = false;
  bool add_space_prefix = true;
  std::string description;  // what describe() returns
  std::string path;         // for errors
};

// A tokenizer over `vocab` (validated: sizes agree, bos/eos/unk in range). The SentencePiece
// .model tokenizer derives from it and replaces encode_fragment() by libsentencepiece.
class PieceVocabTokenizer : public Tokenizer {
 public:
  explicit PieceVocabTokenizer(PieceVocab vocab);
  ~PieceVocabTokenizer() override;

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {},
                              std::vector<Span>* spans = nullptr) const override;
  std::string decode(std::span<const TokenId> ids, bool skip_special = false) const override;
  std::string token_bytes(TokenId id) const override;
  size_t vocab_size() const override { return vocab_.pieces.size(); }
  std::string token_text(TokenId id) const override;
  std::optional<TokenId> token_id(std::string_view token_text) const override;
  bool is_special(TokenId id) const override;
  std::optional<TokenId> bos_id() const override { return vocab_.bos; }
  std::optional<TokenId> eos_id() const override { return vocab_.eos; }
  std::string describe() const override { return vocab_.description; }

 protected:
  // Encodes one stretch of valid UTF-8 text without special pieces; appends ids and (when asked)
  // spans in the caller's input.
  virtual void encode_fragment(const TextPart& part, std::vector<TokenId>& ids,
                               std::vector<Span>* spans) const;
  const PieceVocab& vocab() const { return vocab_; }

 private:
  struct Impl;
  PieceVocab vocab_;
  std::unique_ptr<Impl> impl_;
};

// Decodes SentencePiece pieces as HF's Llama decoder does (Replace "▁"->" ", ByteFallback, Fuse,
// Strip one leading space when `strip_leading_space`); special pieces are kept as their text
// unless skip_special. `is_special(id)` and `piece(id)` describe the vocabulary.
std::string decode_pieces(std::span<const TokenId> ids, bool skip_special, bool strip_leading_space,
                          const std::vector<std::string>& pieces,
                          const std::vector<PieceType>& types);
// The bytes one piece stands for ("▁the" -> " the", "<0x0A>" -> "\n", "<s>" -> "<s>").
std::string piece_bytes(const std::string& piece, PieceType type);

}  // namespace seqit::tokenizer
