// Pitfall checks: the silent chat-template mistakes that ruin fine-tunes, found by rendering
// probe conversations and (with a tokenizer) encoding them:
//   end-marker        an assistant turn is not followed by an end-of-turn token (model never stops)
//   double-bos        BOS written by the template and added again by the tokenizer
//   system-dropped    a system message disappears from the text (or the template refuses it)
//   generation-prompt the inference prompt (add_generation_prompt=true) is not the text the model
//                     was trained to continue
//   unknown-filter    filters/tests transformers does not have (it cannot even load the template)
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "chat/chat_template.h"

namespace seqit::tokenizer {
class Tokenizer;
}

namespace seqit::chat {

enum class Severity { info, warning };

struct Finding {
  Severity severity = Severity::warning;
  std::string check;    // end-marker, double-bos, system-dropped, generation-prompt, unknown-filter
  std::string message;  // what is wrong and what it does to training
};

struct CheckOptions {
  RenderOptions render;
  // As in MaskOptions: whether the tokenizer adds BOS to the rendered text (default: the template's
  // tokenizer_adds_special_tokens()).
  std::optional<bool> add_special;
};

// Runs every check; `tokenizer` may be null (then token-level checks use the text and the
// template's special tokens). Findings come in the order of the list above.
std::vector<Finding> check_template(const ChatTemplate& chat_template,
                                    const tokenizer::Tokenizer* tokenizer,
                                    const CheckOptions& options = {});

}  // namespace seqit::chat
