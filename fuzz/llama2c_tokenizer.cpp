// A llama2.c tokenizer.bin through load_tokenizer (format detection included), then encoding and
// decoding a fixed text with it.
#include "fuzz_input.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok =
        seqit::tokenizer::load_tokenizer(seqit::fuzz::input_file(data, size, "tokenizer.bin"));
    const auto ids = tok->encode("Once upon a time, <s> a cat \xE2\x96\x81 sat. 12345");
    (void)tok->decode(ids);
  } catch (const seqit::Error&) {
  }
  return 0;
}
