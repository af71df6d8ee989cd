// Constrained decoding's compilers, which `seqit serve` runs on what clients send
// (response_format json_schema, guided_regex, guided_choice): the first byte picks a regular
// expression (even) or a JSON schema (odd), the rest is its text. A compiled constraint is then
// matched against the input itself and walked byte by byte. Refusals are seqit::Error; anything
// else (a crash, a hang past the fuzzer's timeout, memory past its limit) is a finding.
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "infer/constraint.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using seqit::infer::Constraint;
  if (size == 0) return 0;
  const std::string_view text = seqit::fuzz::as_text(data + 1, size - 1);
  try {
    std::shared_ptr<const Constraint> c;
    if (data[0] % 2 == 0) {
      c = Constraint::regex(text);
    } else {
      const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
      if (schema.is_discarded()) return 0;
      c = Constraint::json_schema(schema);
    }
    (void)c->matches(text);
    int32_t state = c->start();
    for (size_t i = 0; i < size && state != Constraint::kDead; ++i) {
      (void)c->distance(state);
      (void)c->complete(state);
      state = c->next(state, data[i]);
    }
  } catch (const seqit::Error&) {
  }
  return 0;
}
