// A .gguf file: the container (metadata and tensor table), then what seqit reads from it — the
// model config and the tokenizer.ggml.* vocabulary — as `seqit generate --model x.gguf` does.
#include "util/gguf.h"
#include "fuzz_input.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = seqit::fuzz::input_file(data, size, "model.gguf");
  try {
    auto file = seqit::gguf::File::open(path);
    try {
      (void)seqit::model::config_from_gguf(*file);
    } catch (const seqit::Error&) {
    }
    auto tok = seqit::tokenizer::load_tokenizer(path);
    const auto ids = tok->encode("Hello world, <s> 123");
    (void)tok->decode(ids);
  } catch (const seqit::Error&) {
  }
  return 0;
}
