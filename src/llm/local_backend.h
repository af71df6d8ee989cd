// The local backend: the in-process engine (infer::Engine) behind llm::Backend.
//
// One scheduling thread owns the engine. Submitted requests join the running batch between decoding
// steps (continuous batching: a request does not wait for the batch it arrives during to finish),
// each with its own KV cache and seeded sampler, so an answer never depends on what else runs. A
// request with n > 1 becomes n sequences (choice i samples with seed + i). Score requests run on
// the same thread between steps.
//
// chat() needs the messages as one prompt: a ChatFormatter renders them (the model's chat template,
// a builtin format). Without one the "plain" format is used: the message contents joined by a blank
// line, no role markers — what a base model such as stories260K can continue.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "llm/backend.h"
#include "llm/tool_calls.h"

namespace seqit::model {
class LlamaModel;
}
namespace seqit::tokenizer {
class Tokenizer;
}
namespace seqit::chat {
class ChatTemplate;
}

namespace seqit::llm {

struct ChatPrompt {
  std::string text;
  bool add_special_tokens = true;  // let the tokenizer add BOS (false when the template writes it)
  std::vector<std::string>
      stop_strings;                  // end-of-turn markers to stop at, besides the request's own
  std::vector<int32_t> stop_tokens;  // end-of-turn token ids (<|eot_id|>, <|im_end|>), besides EOS
  // With tools: how the template's model writes a call; the reply is read back in it.
  ToolFormat tool_format = ToolFormat::none;
};
// Renders a conversation; `tools` is the JSON text of OpenAI's tools array (empty: none). Throws
// seqit::Error when it cannot render what was asked (tools for a template without them).
using ChatFormatter =
    std::function<ChatPrompt(const std::vector<Message>& messages, const std::string& tools)>;

// A chat template as a ChatFormatter: messages (tool calls and results included, as transformers
// and vLLM hand them to templates) and tools rendered with add_generation_prompt; `end_tokens`
// become the prompt's stop tokens.
ChatFormatter template_chat_formatter(std::shared_ptr<const chat::ChatTemplate> tmpl,
                                      std::vector<int32_t> end_tokens);

// The "plain" chat format: contents joined by "\n\n"; BOS added by the tokenizer.
ChatPrompt plain_chat_prompt(const std::vector<Message>& messages);

struct LocalBackendOptions {
  std::string model_name;         // the id requests and answers use; default: the model file's stem
  int64_t max_batch = 16;         // sequences decoded together
  int64_t max_step_tokens = 512;  // tokens per forward pass (decode + chunked prefill)
  int64_t max_context = 0;        // positions per sequence; 0 = the model's context length
  ChatFormatter chat_formatter;   // empty: plain_chat_prompt
  std::string chat_format_name = "plain";  // for describe()
  // For open(): the chat template when no chat_formatter is given. Empty: the model's own template
  // when it ships one, else "plain"; "plain"; a builtin format name (tulu, chatml, ...); or a
  // template file / tokenizer folder.
  std::string chat_template;
  // For open(): the KV cache's element type, "f32", "f16" or "bf16" (model::LoadOptions::kv_cache).
  std::string kv_cache = "f32";
};

struct LocalStats {
  int64_t steps = 0;             // engine steps run
  int64_t generated_tokens = 0;  // tokens sampled, all requests
  int64_t max_running = 0;       // most sequences decoded in one step
  int64_t completed = 0;         // requests answered (errors included)
};

class LocalBackend final : public Backend {
 public:
  // Loads a model (any format model/ reads) and its tokenizer (`tokenizer_path`, or the one found
  // with the model). Throws seqit::Error naming the file that cannot be used.
  static std::unique_ptr<LocalBackend> open(const std::filesystem::path& model_path,
                                            const std::filesystem::path& tokenizer_path = {},
                                            LocalBackendOptions options = {}, bool bf16 = false);
  LocalBackend(std::shared_ptr<const model::LlamaModel> model,
               std::shared_ptr<const tokenizer::Tokenizer> tokenizer, LocalBackendOptions options);
  // Answers every request already submitted, then stops the scheduling thread.
  ~LocalBackend() override;

  void submit(Request request, ResponseCallback done) override;
  std::string default_model() const override;
  std::string describe() const override;

  // Positions a prompt and its answer may use together.
  int64_t context_length() const;
  LocalStats stats() const;
  const tokenizer::Tokenizer& tokenizer() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace seqit::llm
