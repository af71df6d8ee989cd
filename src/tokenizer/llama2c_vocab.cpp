// llama2.c's tokenizer.bin: the SentencePiece vocabulary of a Llama-2-style model exported by
// llama2.c's tokenizer.py (spaces instead of "▁", BOS/EOS written as "\n<s>\n" and "\n</s>\n").
// Pieces are turned back into SentencePiece form so ids, token_text and decoding agree with the
// model's tokenizer.model and tokenizer.json. Encoding is SentencePiece BPE by score, which is what
// llama2.c's encode() computes, except that merges never produce control or byte pieces (llama2.c
// would merge literal text "<0x41>" into a byte token; SentencePiece never does).
#include <cmath>
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
  size_t offset;  // of the bytes in the file
};

// llama2.c's exporter writes the longest piece's length; real vocabularies stay far below this.
constexpr int32_t kMaxTokenLength = 4096;

// The layout (little-endian): int32 max_token_length, then per token float32 score, int32 len and
// `len` bytes. Parses the whole file; returns false with what is wrong and where (the token, the
// field and its byte offset) when it is not a consistent tokenizer.bin.
bool parse_llama2c(const MappedFile& file, std::vector<RawEntry>* entries, std::string* why) {
  const uint8_t* p = file.data();
  const size_t n = file.size();
  if (n < 4) {
    *why = "the file is " + std::to_string(n) +
           " bytes, shorter than its 4-byte header (max_token_length)";
    return false;
  }
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  if (max_len <= 0 || max_len > kMaxTokenLength) {
    *why = "the header's max_token_length (bytes 0-3) is " + std::to_string(max_len) +
           "; expected 1.." + std::to_string(kMaxTokenLength);
    return false;
  }
  size_t pos = 4;
  while (pos < n) {
    const std::string token =
        "token " + std::to_string(entries->size()) + " (at byte " + std::to_string(pos) + ")";
    if (pos + 8 > n) {
      *why = token + " is truncated: its score and len fields need 8 bytes, the file has " +
             std::to_string(n - pos) + " left";
      return false;
    }
    RawEntry e;
    int32_t len;
    std::memcpy(&e.score, p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    if (!std::isfinite(e.score)) {
      *why = token + ": its score (byte " + std::to_string(pos) + ") is " +
             std::to_string(e.score) + ", not a finite number";
      return false;
    }
    if (len < 0 || len > max_len) {
      *why = token + ": its len field (byte " + std::to_string(pos + 4) + ") is " +
             std::to_string(len) + "; expected 0..max_token_length (" + std::to_string(max_len) +
             ")";
      return false;
    }
    if (pos + 8 + size_t(len) > n) {
      *why = token + " is truncated: its len field says " + std::to_string(len) +
             " bytes, the file has " + std::to_string(n - pos - 8) + " left";
      return false;
    }
    e.bytes = std::string_view(reinterpret_cast<const char*>(p + pos + 8), size_t(len));
    e.offset = pos + 8;
    entries->push_back(e);
    pos += 8 + size_t(len);
  }
  if (entries->empty()) {
    *why = "the file holds no tokens (only the 4-byte header)";
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
  // A plausible max_token_length: a small positive int32. No other format starts like this: a
  // SentencePiece model starts 0A <len> 0A (a piece inside a piece), JSON with '{', GGUF with
  // "GGUF".
  if (file.size() < 4) return false;
  int32_t max_len;
  std::memcpy(&max_len, file.data(), 4);
  return max_len > 0 && max_len <= kMaxTokenLength;
}

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& path) {
  MappedFile file(path);
  std::vector<RawEntry> entries;
  std::string why;
  if (!parse_llama2c(file, &entries, &why)) {
    throw Error("corrupt llama2.c tokenizer.bin: " + why).in_file(path.string());
  }
  PieceVocab v;
  v.path = path.string();
  v.description =
      "llama2.c tokenizer.bin (SentencePiece BPE, " + std::to_string(entries.size()) + " pieces)";
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
        throw Error("corrupt llama2.c tokenizer.bin: token " + std::to_string(id) + " (bytes at " +
                    std::to_string(e.offset) + ") is not valid UTF-8 (byte " +
                    std::to_string(e.offset + utf8::first_invalid(e.bytes)) + ")")
            .in_file(path.string());
      }
      for (char c : e.bytes) {
        if (c == ' ')
          piece += "\xE2\x96\x81";
        else
          piece.push_back(c);
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
