// Structured output from servers that do not enforce it. The HTTP backend sends a request's
// response_format (OpenAI's json_object / json_schema, vLLM's guided_regex / guided_choice); a
// server may refuse it (HTTP 400 naming the field: llama.cpp's server has no guided_regex, OpenAI
// none of vLLM's fields) or accept it and answer outside it. FormatCheckedBackend sits between the
// caller (and the response cache) and such a backend and makes the answer hold anyway:
//   - every reply is checked against the format (infer::Constraint, the same language the local
//     engine decodes under);
//   - a server that refuses the format once is remembered (per format kind): the request is sent
//     without it from then on, and the reply checked here;
//   - a reply that does not match is asked again with another seed, up to `max_attempts` in all;
//     then the last reply is returned marked "failed" (callers that parse replies already count
//     unparsable ones; an error would stop their runs).
// Response::format_check says which held the format: "server" (sent and accepted; the reply
// matched), "seqit" (checked here after the server refused the field) or "failed", with
// Response::format_attempts. A streaming request (on_delta) is not asked again: its deltas are
// already out.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "llm/backend.h"

namespace seqit::infer {
class Constraint;
}

namespace seqit::llm {

// The constraint of a response format (null for text); throws seqit::Error for a format it cannot
// compile (an unsupported schema keyword, a bad regex). Compiled once per format and process (a
// small cache shared by the local engine and the checks here: formats are few, a schema costs
// tens of milliseconds); thread-safe.
std::shared_ptr<const infer::Constraint> compile_response_format(const ResponseFormat& format);

class FormatCheckedBackend final : public Backend {
 public:
  explicit FormatCheckedBackend(std::shared_ptr<Backend> inner, int max_attempts = 3);
  // Waits for the requests it sent to `inner` to come back.
  ~FormatCheckedBackend() override;

  void submit(Request request, ResponseCallback done) override;
  std::string default_model() const override { return inner_->default_model(); }
  std::string describe() const override { return inner_->describe(); }

  // The format kinds the server refused so far ("json_schema", "regex", ...).
  std::vector<std::string> refused_formats() const;

 private:
  struct Call;
  void send(std::shared_ptr<Call> call);
  void on_result(std::shared_ptr<Call> call, Result<Response> result);
  void finish(const std::shared_ptr<Call>& call, Result<Response> result);

  std::shared_ptr<Backend> inner_;
  int max_attempts_;
  std::array<std::atomic<bool>, 5> refused_{};  // by ResponseFormat::Kind
  mutable std::mutex mutex_;
  std::condition_variable idle_;
  int64_t sent_ = 0;
};

}  // namespace seqit::llm
