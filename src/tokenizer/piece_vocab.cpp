#include "tokenizer/piece_vocab.h"

#include <algorithm>

#include "tokenizer/token_trie.h"
#include "tokenizer/word_cache.h"
#include "util/error.h"
#include "util/utf8.h"

namespace seqit::tokenizer {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // "▁"
constexpr size_t kMaxCachedWord = 256;
uint64_t pair_key(uint32_t a, uint32_t b) {
  return (uint64_t(a) << 32) | b;
}
}  // namespace

struct PieceVocabTokenizer::Impl {
  StringMap<TokenId> any_piece;     // every piece -> first id
  StringMap<TokenId> merge_target;  // normal and user-defined pieces: what merges may produce
  std::array<TokenId, 256> byte_ids;
  bool byte_fallback = false;
  TokenTrie always_split;   // user-defined pieces
  TokenTrie special_split;  // user-defined + control + unknown pieces
  FlatU64Map crossable_pairs;
  mutable WordCache cache;

  struct Symbol {
    uint32_t begin, length;
    int32_t prev, next;
  };
  struct Candidate {
    float score;
    int32_t pos;
    uint32_t length;  // of the merged piece: a stale entry no longer matches
  };
  void merge_word(std::string_view word, std::vector<WordToken>& out) const;
  void tokenize(std::string_view word, std::vector<WordToken>& out) const;
  const PieceVocab* vocab = nullptr;
};

PieceVocabTokenizer::PieceVocabTokenizer(PieceVocab vocab)
    : vocab_(std::move(vocab)), impl_(std::make_unique<Impl>()) {
  const size_t n = vocab_.pieces.size();
  if (n == 0) throw Error("the vocabulary is empty").in_file(vocab_.path);
  if (vocab_.scores.size() != n || vocab_.types.size() != n) {
    throw Error("the vocabulary has " + std::to_string(n) + " pieces but " +
                std::to_string(vocab_.scores.size()) + " scores and " +
                std::to_string(vocab_.types.size()) + " types")
        .in_file(vocab_.path);
  }
  for (auto* special : {&vocab_.unk, &vocab_.bos, &vocab_.eos}) {
    if (*special && (**special < 0 || size_t(**special) >= n)) {
      throw Error("special token id " + std::to_string(**special) +
                  " is outside the vocabulary of " + std::to_string(n))
          .in_file(vocab_.path);
    }
  }
  Impl& im = *impl_;
  im.vocab = &vocab_;
  im.byte_ids.fill(-1);
  for (size_t id = 0; id < n; ++id) {
    const std::string& piece = vocab_.pieces[id];
    im.any_piece.emplace(piece, TokenId(id));
    switch (vocab_.types[id]) {
      case PieceType::normal:
        im.merge_target.emplace(piece, TokenId(id));
        break;
      case PieceType::user_defined:
        im.merge_target.emplace(piece, TokenId(id));
        im.always_split.add(piece, TokenId(id));
        im.special_split.add(piece, TokenId(id));
        break;
      case PieceType::control:
      case PieceType::unknown:
        im.special_split.add(piece, TokenId(id));
        break;
      case PieceType::byte: {
        int b = parse_byte_token(piece);
        if (b >= 0 && im.byte_ids[b] < 0) im.byte_ids[b] = TokenId(id);
        break;
      }
      case PieceType::unused:
        break;
    }
  }
  im.byte_fallback =
      std::all_of(im.byte_ids.begin(), im.byte_ids.end(), [](TokenId t) { return t >= 0; });
  for (const auto& [piece, id] : im.merge_target) {
    if (!utf8::is_valid(piece) || piece.empty()) continue;
    size_t i = 0;
    char32_t prev = next_code_point(piece, i);
    while (i < piece.size()) {
      char32_t cp = next_code_point(piece, i);
      im.crossable_pairs.set(pair_key(prev, cp), 1);
      prev = cp;
    }
  }
}

PieceVocabTokenizer::~PieceVocabTokenizer() = default;

// SentencePiece BPE on one word (see the header): merges by score with a heap, stale entries
// recognised by the merged length they promised.
void PieceVocabTokenizer::Impl::merge_word(std::string_view word,
                                           std::vector<WordToken>& out) const {
  thread_local std::vector<Symbol> symbols;
  thread_local std::vector<Candidate> heap;
  symbols.clear();
  heap.clear();
  for (size_t i = 0; i < word.size();) {
    size_t len = utf8_char_length(static_cast<unsigned char>(word[i]));
    symbols.push_back(
        {uint32_t(i), uint32_t(len), int32_t(symbols.size()) - 1, int32_t(symbols.size()) + 1});
    i += len;
  }
  const int32_t n = int32_t(symbols.size());
  auto after = [](const Candidate& a, const Candidate& b) {
    return a.score != b.score ? a.score < b.score : a.pos > b.pos;
  };
  auto consider = [&](int32_t pos) {
    int32_t next = symbols[pos].next;
    if (pos < 0 || next >= n) return;
    uint32_t length = symbols[pos].length + symbols[next].length;
    auto it = merge_target.find(word.substr(symbols[pos].begin, length));
    if (it == merge_target.end()) return;
    heap.push_back({vocab->scores[it->second], pos, length});
    std::push_heap(heap.begin(), heap.end(), after);
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), after);
    Candidate top = heap.back();
    heap.pop_back();
    Symbol& left = symbols[top.pos];
    if (left.length == 0 || left.next >= n) continue;
    Symbol& right = symbols[left.next];
    if (left.length + right.length != top.length) continue;
    left.length = top.length;
    right.length = 0;
    left.next = right.next;
    if (right.next < n) symbols[right.next].prev = top.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.length == 0) continue;
    std::string_view text = word.substr(s.begin, s.length);
    auto it = merge_target.find(text);
    if (it != merge_target.end()) {
      out.push_back({it->second, s.begin, s.begin + s.length});
    } else if (byte_fallback) {
      for (uint32_t k = 0; k < s.length; ++k) {
        out.push_back(
            {byte_ids[static_cast<unsigned char>(text[k])], s.begin + k, s.begin + k + 1});
      }
    } else {
      if (!vocab->unk)
        throw Error("the vocabulary has no unknown piece for '" + std::string(text) + "'")
            .in_file(vocab->path);
      out.push_back({*vocab->unk, s.begin, s.begin + s.length});
    }
  }
}

void PieceVocabTokenizer::Impl::tokenize(std::string_view word, std::vector<WordToken>& out) const {
  // Split where no merge can cross (two known characters that no piece holds side by side), so
  // words are merged and cached one at a time; see BpeModel for why this changes nothing.
  auto run = [&](size_t start, size_t end) {
    std::string_view w = word.substr(start, end - start);
    size_t first = out.size();
    if (w.size() > kMaxCachedWord || !cache.lookup(w, out)) {
      merge_word(w, out);
      if (w.size() <= kMaxCachedWord) cache.insert(w, out.data() + first, out.size() - first);
    }
    for (size_t k = first; k < out.size(); ++k)
      out[k].begin += uint32_t(start), out[k].end += uint32_t(start);
  };
  size_t start = 0, i = 0;
  char32_t prev = next_code_point(word, i);
  bool prev_known = merge_target.count(word.substr(0, i)) > 0;
  while (i < word.size()) {
    size_t begin = i;
    char32_t cp = next_code_point(word, i);
    bool known = merge_target.count(word.substr(begin, i - begin)) > 0;
    if (prev_known && known && crossable_pairs.get(pair_key(prev, cp)) == FlatU64Map::kEmpty) {
      run(start, begin);
      start = begin;
    }
    prev = cp, prev_known = known;
  }
  run(start, word.size());
}

void PieceVocabTokenizer::encode_fragment(const TextPart& part, std::vector<TokenId>& ids,
                                          std::vector<Span>* spans) const {
  if (part.text.empty()) return;
  // Escape whitespace and add the dummy prefix, keeping where each byte came from.
  thread_local std::string text;
  thread_local std::vector<Span> align;
  text.clear();
  align.clear();
  if (vocab_.add_space_prefix) {
    size_t at = part.original_begin();
    text.append(kSpace);
    align.insert(align.end(), 3, Span{at, at});
  }
  for (size_t i = 0; i < part.text.size(); ++i) {
    Span from = part.original(i, i + 1);
    if (part.text[i] == ' ') {
      text.append(kSpace);
      align.insert(align.end(), 3, from);
    } else {
      text.push_back(part.text[i]);
      align.push_back(from);
    }
  }
  thread_local std::vector<WordToken> tokens;
  tokens.clear();
  impl_->tokenize(text, tokens);
  TextPart normalized{text, align.data(), 0};
  // SentencePiece merges consecutive unknown pieces into one (without byte fallback).
  const bool fuse_unknown = vocab_.unk && !impl_->byte_fallback;
  const size_t first = ids.size();
  for (const WordToken& t : tokens) {
    if (fuse_unknown && t.id == *vocab_.unk && ids.size() > first && ids.back() == *vocab_.unk) {
      if (spans)
        spans->back().end = std::max(spans->back().end, normalized.original(t.begin, t.end).end);
      continue;
    }
    ids.push_back(t.id);
    if (spans) spans->push_back(normalized.original(t.begin, t.end));
  }
}

std::vector<TokenId> PieceVocabTokenizer::encode(std::string_view input,
                                                 const EncodeOptions& options,
                                                 std::vector<Span>* spans) const {
  std::vector<TokenId> ids;
  if (spans) spans->clear();
  PartArena arena;
  TextPart text = repair_utf8(input, arena);
  if (options.add_special && vocab_.add_bos && vocab_.bos) {
    ids.push_back(*vocab_.bos);
    if (spans) spans->push_back({0, 0});
  }
  const TokenTrie& trie = options.parse_special ? impl_->special_split : impl_->always_split;
  size_t pos = 0;
  while (pos <= text.text.size()) {
    auto match = trie.find(text.text, pos);
    size_t end = match ? match->begin : text.text.size();
    if (end > pos) encode_fragment(text.slice(pos, end), ids, spans);
    if (!match) break;
    ids.push_back(match->value);
    if (spans) spans->push_back(text.original(match->begin, match->end));
    pos = match->end;
  }
  if (options.add_special && vocab_.add_eos && vocab_.eos) {
    ids.push_back(*vocab_.eos);
    if (spans) spans->push_back({input.size(), input.size()});
  }
  return ids;
}

std::string piece_bytes(const std::string& piece, PieceType type) {
  if (type == PieceType::byte) {
    int b = parse_byte_token(piece);
    if (b >= 0) return std::string(1, static_cast<char>(b));
  }
  if (type == PieceType::control || type == PieceType::unknown) return piece;
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpace.size(), kSpace) == 0) {
      out.push_back(' ');
      i += kSpace.size();
    } else {
      out.push_back(piece[i++]);
    }
  }
  return out;
}

std::string decode_pieces(std::span<const TokenId> ids, bool skip_special, bool strip_leading_space,
                          const std::vector<std::string>& pieces,
                          const std::vector<PieceType>& types) {
  std::string out;
  std::string pending_bytes;
  auto flush_bytes = [&] {
    if (pending_bytes.empty()) return;
    if (utf8::is_valid(pending_bytes)) {
      out += pending_bytes;
    } else {
      // HF's ByteFallback decoder: one U+FFFD per byte of an invalid run.
      for (size_t k = 0; k < pending_bytes.size(); ++k) out += "\xEF\xBF\xBD";
    }
    pending_bytes.clear();
  };
  for (TokenId id : ids) {
    if (id < 0 || size_t(id) >= pieces.size()) continue;
    PieceType type = types[id];
    if (skip_special && (type == PieceType::control || type == PieceType::unknown)) continue;
    if (type == PieceType::byte && parse_byte_token(pieces[id]) >= 0) {
      pending_bytes.push_back(static_cast<char>(parse_byte_token(pieces[id])));
      continue;
    }
    flush_bytes();
    out += piece_bytes(pieces[id], type);
  }
  flush_bytes();
  if (strip_leading_space && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

std::string PieceVocabTokenizer::decode(std::span<const TokenId> ids, bool skip_special) const {
  return decode_pieces(ids, skip_special, vocab_.add_space_prefix, vocab_.pieces, vocab_.types);
}

std::string PieceVocabTokenizer::token_bytes(TokenId id) const {
  if (id < 0 || size_t(id) >= vocab_.pieces.size()) return {};
  return piece_bytes(vocab_.pieces[id], vocab_.types[id]);
}

std::string PieceVocabTokenizer::token_text(TokenId id) const {
  if (id < 0 || size_t(id) >= vocab_.pieces.size()) return {};
  return vocab_.pieces[id];
}

std::optional<TokenId> PieceVocabTokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->any_piece.find(token_text);
  if (it == impl_->any_piece.end()) return std::nullopt;
  return it->second;
}

bool PieceVocabTokenizer::is_special(TokenId id) const {
  if (id < 0 || size_t(id) >= vocab_.types.size()) return false;
  return vocab_.types[id] == PieceType::control || vocab_.types[id] == PieceType::unknown;
}

}  // namespace seqit::tokenizer
