// The BPE model of HF tokenizers (tokenizer.json "model": {"type": "BPE"}) and of GGUF's gpt2
// vocabularies: a word's characters are merged pair by pair, always the adjacent pair whose merge
// has the lowest rank (its line in the merges list), leftmost first among equals, until no
// adjacent pair has a merge. Options follow HF: ignore_merges (a word that is itself in the
// vocabulary is one token, as Llama-3 sets), byte_fallback ("<0xE2>" tokens for characters not in
// the vocabulary), unk_token with fuse_unk, continuing_subword_prefix and end_of_word_suffix.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/tokenizer.h"
#include "tokenizer/word_cache.h"

namespace seqit::tokenizer {

struct BpeOptions {
  // The vocabulary is GPT-2 byte-level: its token strings spell bytes through byte_level_table(),
  // and words are given to tokenize() as raw bytes.
  bool byte_level = false;
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
};

class BpeModel {
 public:
  // `vocab` holds token strings as in the file; `merges` are pairs of token strings in rank order.
  // `where` names the file in errors (a merge whose parts or result are not in the vocabulary).
  BpeModel(std::vector<std::pair<std::string, TokenId>> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options,
           const std::string& where);

  // Appends the tokens of one pre-token, with the bytes of `word` each covers.
  void tokenize(std::string_view word, std::vector<WordToken>& out) const;

  std::optional<TokenId> token_id(std::string_view token) const;
  // The token string as in the file ("Ġthe"); empty for an id the model does not have.
  const std::string& token_text(TokenId id) const;
  bool has_id(TokenId id) const {
    return id >= 0 && size_t(id) < id_to_token_.size() && has_id_[id];
  }
  size_t id_limit() const { return id_to_token_.size(); }
  const BpeOptions& options() const { return options_; }

 private:
  struct Symbol {
    TokenId id;
    uint32_t begin, length;
    int32_t prev, next;
  };
  void tokenize_segment(std::string_view word, size_t offset, std::vector<WordToken>& out) const;
  void tokenize_uncached(std::string_view word, std::vector<WordToken>& out) const;
  void initial_symbols(std::string_view word, std::vector<Symbol>& symbols) const;
  void merge(std::vector<Symbol>& symbols) const;
  std::optional<TokenId> model_id(std::string_view model_token) const;
  // Split points inside a word that no merge can cross (see bpe_model.cpp).
  bool boundary_between(char32_t left, char32_t right) const;

  BpeOptions options_;
  std::string where_;
  StringMap<TokenId> file_vocab_;   // token as in the file -> id
  StringMap<TokenId> model_vocab_;  // byte-level: raw bytes -> id; else same keys as file_vocab_
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  FlatU64Map merges_;                      // (left id << 32 | right id) -> (rank << 32 | merged id)
  std::array<TokenId, 256> byte_ids_;      // byte-level: the single-byte token of each byte
  std::array<TokenId, 256> fallback_ids_;  // byte_fallback: "<0xXX>" ids
  bool all_fallback_bytes_ = false;
  std::optional<TokenId> unk_id_;
  // Word splitting for SentencePiece-style BPE (no pre-tokenizer: the whole text is one word).
  bool split_words_ = false;
  FlatU64Map crossable_pairs_;  // (code point << 32 | next code point) present inside some token
  mutable WordCache cache_;
};

}  // namespace seqit::tokenizer
