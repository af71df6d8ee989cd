#include "tokenizer/bpe_model.h"

#include <algorithm>

#include "tokenizer/text.h"
#include "util/error.h"
#include "util/utf8.h"

namespace seqit::tokenizer {

namespace {
constexpr size_t kMaxCachedWord = 256;

uint64_t pair_key(uint32_t a, uint32_t b) {
  return (uint64_t(a) << 32) | b;
}

// Scratch buffers reused by every call on a thread, so merging a word allocates nothing.
struct MergeScratch {
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    TokenId new_id;
  };
  std::vector<Candidate> heap;
  std::string text;
};
MergeScratch& merge_scratch() {
  thread_local MergeScratch scratch;
  return scratch;
}
// Min-heap on (rank, pos): the lowest-ranked merge first, the leftmost among equal ranks.
bool heap_after(const MergeScratch::Candidate& a, const MergeScratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}
}  // namespace

BpeModel::BpeModel(std::vector<std::pair<std::string, TokenId>> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges,
                   BpeOptions options, const std::string& where)
    : options_(std::move(options)), where_(where) {
  TokenId max_id = -1;
  for (const auto& [token, id] : vocab) {
    if (id < 0) throw Error("vocabulary entry '" + token + "' has a negative id").in_file(where_);
    max_id = std::max(max_id, id);
  }
  id_to_token_.assign(size_t(max_id + 1), std::string());
  has_id_.assign(size_t(max_id + 1), false);
  byte_ids_.fill(-1);
  fallback_ids_.fill(-1);
  file_vocab_.reserve(vocab.size());
  model_vocab_.reserve(vocab.size());
  for (auto& [token, id] : vocab) {
    if (options_.byte_level) {
      // Tokens that do not spell bytes cannot come out of byte-level input; they stay decodable.
      if (auto bytes = byte_level_decode(token)) {
        model_vocab_.emplace(*bytes, id);
        if (bytes->size() == 1) byte_ids_[static_cast<unsigned char>((*bytes)[0])] = id;
      }
    } else {
      model_vocab_.emplace(token, id);
    }
    int b = parse_byte_token(token);
    if (b >= 0) fallback_ids_[b] = id;
    id_to_token_[id] = token;
    has_id_[id] = true;
    file_vocab_.emplace(std::move(token), id);
  }
  all_fallback_bytes_ =
      std::all_of(fallback_ids_.begin(), fallback_ids_.end(), [](TokenId i) { return i >= 0; });
  if (options_.unk_token) {
    auto it = file_vocab_.find(*options_.unk_token);
    if (it != file_vocab_.end()) unk_id_ = it->second;
  }

  // Merge ranks: the line index; a pair listed twice keeps its last rank, as HF's map does.
  merges_.reserve(merges.size());
  const size_t prefix_len = options_.continuing_subword_prefix.size();
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    // Named references, not a structured binding: clang before 16 cannot capture those (the
    // fuzz build uses clang 14).
    const std::string& left = merges[rank].first;
    const std::string& right = merges[rank].second;
    auto find = [&](const std::string& t) -> TokenId {
      auto it = file_vocab_.find(t);
      if (it == file_vocab_.end()) {
        throw Error("merge " + std::to_string(rank) + " ('" + left + " " + right + "') uses '" + t +
                    "', which is not in the vocabulary")
            .in_file(where_);
      }
      return it->second;
    };
    TokenId a = find(left), b = find(right);
    std::string merged = left;
    merged.append(prefix_len > 0 &&
                          right.compare(0, prefix_len, options_.continuing_subword_prefix) == 0
                      ? right.substr(prefix_len)
                      : right);
    TokenId m = find(merged);
    merges_.set(pair_key(uint32_t(a), uint32_t(b)), (uint64_t(rank) << 32) | uint32_t(m));
  }

  // SentencePiece-style BPE gets the whole text as one word. A boundary between two characters
  // that are tokens themselves, where no vocabulary token contains that character pair, can never
  // be crossed by a merge, and merges on either side never interact: splitting the word there gives
  // identical tokens and lets the word cache work.
  split_words_ = !options_.byte_level && options_.continuing_subword_prefix.empty() &&
                 options_.end_of_word_suffix.empty() && !options_.ignore_merges;
  if (split_words_) {
    for (const auto& [token, id] : model_vocab_) {
      size_t i = 0;
      if (!utf8::is_valid(token) || token.empty()) continue;
      char32_t prev = next_code_point(token, i);
      while (i < token.size()) {
        char32_t cp = next_code_point(token, i);
        crossable_pairs_.set(pair_key(prev, cp), 1);
        prev = cp;
      }
    }
  }
}

std::optional<TokenId> BpeModel::token_id(std::string_view token) const {
  auto it = file_vocab_.find(token);
  if (it == file_vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string& BpeModel::token_text(TokenId id) const {
  static const std::string empty;
  return has_id(id) ? id_to_token_[id] : empty;
}

std::optional<TokenId> BpeModel::model_id(std::string_view model_token) const {
  auto it = model_vocab_.find(model_token);
  if (it == model_vocab_.end()) return std::nullopt;
  return it->second;
}

void BpeModel::tokenize(std::string_view word, std::vector<WordToken>& out) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto id = model_id(word)) {
      out.push_back({*id, 0, uint32_t(word.size())});
      return;
    }
  }
  if (!split_words_) {
    tokenize_segment(word, 0, out);
    return;
  }
  size_t start = 0, i = 0;
  char32_t prev = next_code_point(word, i);
  bool prev_known = model_vocab_.count(word.substr(0, i)) > 0;
  while (i < word.size()) {
    size_t begin = i;
    char32_t cp = next_code_point(word, i);
    bool known = model_vocab_.count(word.substr(begin, i - begin)) > 0;
    if (prev_known && known && crossable_pairs_.get(pair_key(prev, cp)) == FlatU64Map::kEmpty) {
      tokenize_segment(word.substr(start, begin - start), start, out);
      start = begin;
    }
    prev = cp, prev_known = known;
  }
  tokenize_segment(word.substr(start), start, out);
}

void BpeModel::tokenize_segment(std::string_view word, size_t offset,
                                std::vector<WordToken>& out) const {
  size_t first = out.size();
  bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable && cache_.lookup(word, out)) {
    // Cached tokens are relative to the word.
  } else {
    tokenize_uncached(word, out);
    if (cacheable) cache_.insert(word, out.data() + first, out.size() - first);
  }
  if (offset) {
    for (size_t k = first; k < out.size(); ++k) {
      out[k].begin += uint32_t(offset);
      out[k].end += uint32_t(offset);
    }
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<Symbol>& symbols) const {
  const bool plain =
      options_.continuing_subword_prefix.empty() && options_.end_of_word_suffix.empty();
  if (options_.byte_level && plain) {
    bool all_known = true;
    for (size_t i = 0; i < word.size(); ++i) {
      TokenId id = byte_ids_[static_cast<unsigned char>(word[i])];
      if (id < 0) {
        all_known = false;
        break;
      }
      symbols.push_back({id, uint32_t(i), 1, int32_t(i) - 1, int32_t(i) + 1});
    }
    if (all_known) return;
    symbols.clear();
  }
  // HF's merge_word: one symbol per character (per byte for byte-level vocabularies).
  std::string& s = merge_scratch().text;
  bool have_unk = false;
  Symbol unk{};
  auto push = [&](TokenId id, uint32_t begin, uint32_t length) {
    symbols.push_back({id, begin, length, 0, 0});
  };
  size_t i = 0;
  while (i < word.size()) {
    size_t begin = i;
    size_t len = options_.byte_level ? 1 : utf8_char_length(static_cast<unsigned char>(word[i]));
    if (begin + len > word.size()) len = word.size() - begin;
    i += len;
    std::string_view ch = word.substr(begin, len);
    std::optional<TokenId> id;
    if (plain) {
      id = model_id(ch);
    } else {
      s.clear();
      if (begin != 0) s += options_.continuing_subword_prefix;
      s += ch;
      if (i == word.size()) s += options_.end_of_word_suffix;
      id = model_id(s);
    }
    if (id) {
      if (have_unk) {
        symbols.push_back(unk);
        have_unk = false;
      }
      push(*id, uint32_t(begin), uint32_t(len));
      continue;
    }
    if (options_.byte_fallback && all_fallback_bytes_) {
      // As HF: a pending unknown is not flushed before the byte tokens.
      for (size_t k = 0; k < len; ++k) {
        push(fallback_ids_[static_cast<unsigned char>(ch[k])], uint32_t(begin + k), 1);
      }
      continue;
    }
    if (options_.unk_token) {
      if (!unk_id_) {
        throw Error("the unknown token '" + *options_.unk_token + "' is not in the vocabulary")
            .in_file(where_);
      }
      if (have_unk && options_.fuse_unk) {
        unk.length = uint32_t(begin + len - unk.begin);
      } else {
        if (have_unk) symbols.push_back(unk);
        unk = {*unk_id_, uint32_t(begin), uint32_t(len), 0, 0};
        have_unk = true;
      }
    }
    // Without an unknown token HF drops the character.
  }
  if (have_unk) symbols.push_back(unk);
  for (size_t k = 0; k < symbols.size(); ++k) {
    symbols[k].prev = int32_t(k) - 1;
    symbols[k].next = int32_t(k) + 1;
  }
}

void BpeModel::merge(std::vector<Symbol>& symbols) const {
  const int32_t n = int32_t(symbols.size());
  if (n < 2) return;
  auto& heap = merge_scratch().heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    if (next >= n) return;
    uint64_t m = merges_.get(pair_key(uint32_t(symbols[pos].id), uint32_t(symbols[next].id)));
    if (m == FlatU64Map::kEmpty) return;
    heap.push_back({uint32_t(m >> 32), pos, TokenId(uint32_t(m))});
    std::push_heap(heap.begin(), heap.end(), heap_after);
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), heap_after);
    auto top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.length == 0 || left.next >= n) continue;
    Symbol& right = symbols[left.next];
    // Skip entries made stale by an earlier merge of either symbol.
    uint64_t m = merges_.get(pair_key(uint32_t(left.id), uint32_t(right.id)));
    if (m == FlatU64Map::kEmpty || TokenId(uint32_t(m)) != top.new_id) continue;
    left.id = top.new_id;
    left.length = right.begin + right.length - left.begin;
    right.length = 0;
    left.next = right.next;
    if (right.next < n) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
}

void BpeModel::tokenize_uncached(std::string_view word, std::vector<WordToken>& out) const {
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  initial_symbols(word, symbols);
  merge(symbols);
  for (const Symbol& s : symbols) {
    if (s.length == 0) continue;
    out.push_back({s.id, s.begin, s.begin + s.length});
  }
}

}  // namespace seqit::tokenizer
