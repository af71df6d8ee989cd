// A byte trie over a few hundred token strings (added/special tokens such as "<|eot_id|>") with
// leftmost-longest search: the match that starts first, and among those the longest, which is the
// semantics of the Aho-Corasick automaton HF tokenizers builds (MatchKind::LeftmostLongest). Added
// vocabularies are small, so a trie with a first-byte filter is as fast and much simpler.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

namespace seqit::tokenizer {

class TokenTrie {
 public:
  TokenTrie() {
    first_byte_.fill(false);
    nodes_.emplace_back();
  }
  // Adds `text` (non-empty) carrying `value`; a later add of the same text replaces the value.
  void add(std::string_view text, int32_t value);
  bool empty() const { return nodes_.size() == 1; }

  struct Match {
    size_t begin = 0, end = 0;
    int32_t value = -1;
  };
  // The leftmost-longest match in text[from, end), or nullopt.
  std::optional<Match> find(std::string_view text, size_t from) const;

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;  // byte -> node index
    int32_t value = -1;
  };
  int32_t child(int32_t node, unsigned char b) const;
  std::vector<Node> nodes_;
  std::array<bool, 256> first_byte_;
};

}  // namespace seqit::tokenizer
