// JSON documents as every reader takes them: parse_json (whole files: configs, tokenizer.json) and
// for_each_json_array_element (the streamed top-level arrays of data files).
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "util/error.h"
#include "util/json_io.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = seqit::fuzz::as_text(data, size);
  try {
    const nlohmann::json value = seqit::parse_json(text, "fuzz.json");
    (void)value.dump();
  } catch (const seqit::Error&) {
  }
  try {
    int64_t elements = 0;
    seqit::for_each_json_array_element(seqit::fuzz::input_file(data, size, "array.json"),
                                       [&](nlohmann::json&& element, int64_t) {
                                         (void)element.dump();
                                         ++elements;
                                       });
  } catch (const seqit::Error&) {
  }
  return 0;
}
