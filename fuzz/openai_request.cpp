// An HTTP request body as `seqit serve` parses it, for both endpoints: UTF-8 and JSON checks, then
// every field. Errors are values here (the server's 400s); nothing may throw.
#include <nlohmann/json.hpp>

#include "fuzz_input.h"
#include "llm/openai_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace seqit::llm;
  for (RequestKind endpoint : {RequestKind::chat, RequestKind::completion}) {
    Result<ServerRequest> parsed =
        parse_openai_request_body(endpoint, seqit::fuzz::as_text(data, size));
    if (parsed.ok()) (void)canonical_request(parsed.value().requests.at(0), "m");
  }
  return 0;
}
