// A chat template (lexer, parser, interpreter) rendering a short conversation, as
// `seqit template render` and generate --chat do.
#include "chat/chat_template.h"
#include "fuzz_input.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace seqit::chat;
  try {
    SpecialTokens tokens;
    tokens.set("bos_token", "<s>");
    tokens.set("eos_token", "</s>");
    ChatTemplate t =
        ChatTemplate::from_source(seqit::fuzz::as_text(data, size), "fuzz.jinja", tokens);
    RenderOptions options;
    options.add_generation_prompt = true;
    options.now_unix = 0;
    (void)t.render(std::vector<Message>{{"system", "Be brief."},
                                        {"user", "Hi <b>there</b>"},
                                        {"assistant", "Hello!"},
                                        {"user", "2 + 2?"}},
                   options);
  } catch (const seqit::Error&) {
  }
  return 0;
}
