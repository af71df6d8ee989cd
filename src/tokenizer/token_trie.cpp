#include "tokenizer/token_trie.h"

namespace seqit::tokenizer {

int32_t TokenTrie::child(int32_t node, unsigned char b) const {
  for (const auto& [byte, next] : nodes_[node].children) {
    if (byte == b) return next;
  }
  return -1;
}

void TokenTrie::add(std::string_view text, int32_t value) {
  if (text.empty()) return;
  first_byte_[static_cast<unsigned char>(text[0])] = true;
  int32_t node = 0;
  for (char ch : text) {
    auto b = static_cast<unsigned char>(ch);
    int32_t next = child(node, b);
    if (next < 0) {
      next = static_cast<int32_t>(nodes_.size());
      nodes_[node].children.emplace_back(b, next);
      nodes_.emplace_back();
    }
    node = next;
  }
  nodes_[node].value = value;
}

std::optional<TokenTrie::Match> TokenTrie::find(std::string_view text, size_t from) const {
  if (empty()) return std::nullopt;
  const size_t n = text.size();
  for (size_t start = from; start < n; ++start) {
    if (!first_byte_[static_cast<unsigned char>(text[start])]) continue;
    int32_t node = 0;
    Match best;
    for (size_t i = start; i < n; ++i) {
      node = child(node, static_cast<unsigned char>(text[i]));
      if (node < 0) break;
      if (nodes_[node].value >= 0) best = {start, i + 1, nodes_[node].value};
    }
    if (best.value >= 0) return best;
  }
  return std::nullopt;
}

}  // namespace seqit::tokenizer
