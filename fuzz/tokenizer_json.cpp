// A Hugging Face tokenizer.json through load_tokenizer, then encoding (special tokens parsed) and
// decoding a fixed multilingual text.
#include "fuzz_input.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok =
        seqit::tokenizer::load_tokenizer(seqit::fuzz::input_file(data, size, "tokenizer.json"));
    const auto ids =
        tok->encode("Hello world! <s> <|endoftext|> caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD 42\n\t ");
    (void)tok->decode(ids);
    (void)tok->decode(ids, /*skip_special=*/true);
  } catch (const seqit::Error&) {
  }
  return 0;
}
