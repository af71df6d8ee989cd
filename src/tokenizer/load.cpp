// load_tokenizer(): picks the format by content (and, for folders, by the standard file names).
#include <cstring>

#include "tokenizer/formats.h"
#include "util/error.h"
#include "util/mapped_file.h"

namespace seqit::tokenizer {

namespace fs = std::filesystem;

std::unique_ptr<Tokenizer> load_tokenizer(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    for (const char* name : {"tokenizer.json", "tokenizer.model", "tokenizer.bin"}) {
      if (fs::is_regular_file(path / name, ec)) return load_tokenizer(path / name);
    }
    throw Error(
        "no tokenizer in this folder (looked for tokenizer.json, tokenizer.model, tokenizer.bin)")
        .in_file(path.string());
  }
  if (!fs::exists(path, ec)) throw Error("tokenizer file not found").in_file(path.string());
  MappedFile file(path);
  const auto* p = file.data();
  const size_t n = file.size();
  if (n == 0) throw Error("the tokenizer file is empty").in_file(path.string());
  if (n >= 4 && std::memcmp(p, "GGUF", 4) == 0) return load_gguf_tokenizer(path);
  size_t i = 0;
  if (n >= 3 && std::memcmp(p, "\xEF\xBB\xBF", 3) == 0) i = 3;
  while (i < n && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')) ++i;
  if (i < n && p[i] == '{') return load_hf_tokenizer(path);
  if (looks_like_llama2c(file)) return load_llama2c_tokenizer(path);
  // A SentencePiece model is a protobuf whose first field is a repeated piece (tag byte 0x0A).
  if (p[0] == 0x0A) return load_sentencepiece_tokenizer(path);
  throw Error(
      "unrecognised tokenizer format (expected a tokenizer.json, a SentencePiece .model, a "
      "llama2.c "
      "tokenizer.bin or a GGUF file)")
      .in_file(path.string());
}

}  // namespace seqit::tokenizer
