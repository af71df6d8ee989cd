// llama2.c's tokenizer.bin: the SentencePiece vocabulary of a Llama-2-style model exported by
// llama2.c's tokenizer.py (spaces instead of "▁", BOS/EOS written as "\n<s>\n" and "\n</s>\n").
// Pieces are turned back into SentencePiece form so ids, token_text and decoding agree with the
// model's tokenizer.model and tokenizer.json. Encoding is SentencePiece BPE by score, which is what
// llama2.c's encode() computes, except that merges never produce control or byte pieces (llama2.c
// would merge literal text "<0x41>" into a byte token; SentencePiece never does).
#include <cstring>

#include "tokenizer/formats.h"
#include "tokenizer/piece_vocab.h"
#include "util/error.h"
#include "util/mapped_file.h"
#include "util/utf8.h"

namespace seqit::tokenizer {

namespace {
struct RawEntry {
  float score;
  std::string_view bytes;
};

// Parses the whole file; returns false (with a reason) when it is not a consistent tokenizer.bin.
bool parse_llama2c(const MappedFile& file, std::vector<RawEntry>* entries, std::string* why) {
  const uint8_t* p = file.data();
  const size_t n = file.size();
  if (n < 4) {
    *why = "the file is shorter than its 4-byte header";
    return false;
  }
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  if (max_len <= 0 || max_len > 4096) {
    *why = "max_token_length " + std::to_string(max_len) + " is not plausible";
    return false;
  }
  size_t pos = 4;
  while (pos < n) {
    if (pos + 8 > n) {
      *why = "token " + std::to_string(entries->size()) + " is truncated at byte " + std::to_string(pos);
      return false;
    }
    RawEntry e;
    int32_t len;
    std::memcpy(&e.score, p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    if (len < 0 || len > max_len || pos + 8 + size_t(len) > n) {
      *why = "token " + std::to_string(entries->size()) + " at byte " + std::to_string(pos) + " has length " +
             std::to_string(len) + " (max_token_length " + std::to_string(max_len) + ", file size " +
             std::to_string(n) + ")";
      return false;
    }
    e.bytes = std::string_view(reinterpret_cast<const char*>(p + pos + 8), size_t(len));
    entries->push_back(e);
    pos += 8 + size_t(len);
  }
  if (entries->empty()) {
    *why = "the file holds no tokens";
    return false;
  }
  return true;
}

std::string trim_newlines(std::string_view s) {
  while (!s.empty() && s.front() == '\n') s.remove_prefix(1);
  while (!s.empty() && s.back() == '\n') s.remove_suffix(1);
  return std::string(s);
}
}  // namespace

bool looks_like_llama2c(const MappedFile& file) {
  std::vector<RawEntry> entries;
  std::string why;
  return parse_llama2c(file, &entries, &why);
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path) {
  MappedFile file(path);
  std::vector<RawEntry> entries;
  std::string why;
  if (!parse_llama2c(file, &entries, &why)) {
    throw Error("not a llama2.c tokenizer.bin: " + why).in_file(path.string());
  }
  PieceVocab v;
  v.path = path.string();
  v.description = "llama2.c tokenizer.bin (SentencePiece BPE, " + std::to_string(entries.size()) + " pieces)";
  for (size_t id = 0; id < entries.size(); ++id) {
    const RawEntry& e = entries[id];
    std::string trimmed = trim_newlines(e.bytes);
    PieceType type = PieceType::normal;
    std::string piece;
    if (trimmed == "<unk>" && !v.unk) {
      type = PieceType::unknown;
      piece = trimmed;
      v.unk = TokenId(id);
    } else if ((trimmed == "<s>" && !v.bos) || (trimmed == "</s>" && !v.eos)) {
      type = PieceType::control;
      piece = trimmed;
      (trimmed == "<s>" ? v.bos : v.eos) = TokenId(id);
    } else if (parse_byte_token(e.bytes) >= 0) {
      type = PieceType::byte;
      piece = std::string(e.bytes);
    } else {
      if (!utf8::is_valid(e.bytes)) {
        throw Error("token " + std::to_string(id) + " is not valid UTF-8").in_file(path.string());
      }
      for (char c : e.bytes) {
        if (c == ' ') piece += "\xE2\x96\x81";
        else piece.push_back(c);
      }
    }
    v.pieces.push_back(std::move(piece));
    v.scores.push_back(e.score);
    v.types.push_back(type);
  }
  v.add_bos = true;
  v.add_eos = false;
  v.add_space_prefix = true;
  return std::make_unique<PieceVocabTokenizer>(std::move(v));
}

}  // namespace seqit::tokenizer
