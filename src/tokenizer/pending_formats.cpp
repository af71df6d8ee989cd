// Temporary: formats whose loaders land next.
#include "tokenizer/formats.h"
#include "util/error.h"

namespace seqit::tokenizer {
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& path) {
  throw Error("tokenizer.json support is not in this build yet").in_file(path.string());
}
std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::filesystem::path& path) {
  throw Error("GGUF vocabularies are not supported in this build yet").in_file(path.string());
}
}  // namespace seqit::tokenizer
