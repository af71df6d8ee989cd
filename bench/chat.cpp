// bench_chat: rendering a two-turn conversation with a real chat template, and rendering +
// assistant-masking it, against the reference cost of tokenizing the rendered text once (the
// floor for any masking method) measured in the same run.
//
//   bench_chat [shared-data-dir]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include "chat/assistant_mask.h"
#include "chat/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace {
namespace fs = std::filesystem;
using namespace seqit;

// Mean microseconds per call of f, repeated for at least `seconds`.
double time_us(const std::function<void()>& f, double seconds = 0.5) {
  using clock = std::chrono::steady_clock;
  for (int i = 0; i < 20; ++i) f();  // warm up
  size_t n = 0;
  auto start = clock::now();
  double elapsed = 0;
  do {
    for (int i = 0; i < 50; ++i) f();
    n += 50;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < seconds);
  return elapsed / double(n) * 1e6;
}

struct Setup {
  const char* name;
  fs::path tokenizer, template_file, tokens_config;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::printf(
        "usage: bench_chat [SHARED_DATA_DIR]\n"
        "Rendering a two-turn conversation with real chat templates, and rendering + "
        "assistant-masking\n"
        "it, against tokenizing the rendered text once. SHARED_DATA_DIR defaults to "
        "$SEQIT_SHARED_DATA\n"
        "or ../shared/data.\n");
    return 0;
  }
  fs::path data =
      argc > 1 ? fs::path(argv[1])
               : (std::getenv("SEQIT_SHARED_DATA") ? fs::path(std::getenv("SEQIT_SHARED_DATA"))
                                                   : fs::path(SEQIT_SHARED_DATA_DEFAULT));
  const Setup setups[] = {
      {"Llama-3 (tokenizer_config.json template)", data / "tokenizers/llama3/tokenizer.json",
       data / "tokenizers/llama3/tokenizer_config.json",
       data / "tokenizers/llama3/tokenizer_config.json"},
      {"Qwen2.5 chatml (Qwen tokenizer)", data / "tokenizers/qwen/qwen3_tokenizer.json",
       data / "tokenizers/chat_templates/llamacpp/Qwen-Qwen2.5-7B-Instruct.jinja",
       data / "tokenizers/qwen/qwen3_tokenizer_config.json"},
  };
  const std::vector<chat::Message> conversation = {
      {"system", "You are a helpful assistant. Answer briefly and precisely."},
      {"user", "Translate 'good morning' into French, then use it in a sentence."},
      {"assistant", "Bonjour. Example: « Bonjour, comment allez-vous ce matin ? »"},
      {"user", "Now do the same for 'thank you very much', and explain when it is used."},
      {"assistant",
       "Merci beaucoup. Example: « Merci beaucoup pour votre aide ! » It is a polite, "
       "slightly emphatic way to thank someone, used in speech and writing."},
  };
  std::printf(
      "bench_chat: 2-turn conversation (system + 2 user/assistant pairs), mean per "
      "conversation\n\n");
  std::printf(
      "| setup | tokens | encode text (reference) | render | render + assistant mask | mask / "
      "encode |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const auto& s : setups) {
    auto tok = tokenizer::load_tokenizer(s.tokenizer);
    chat::ChatTemplate t = chat::ChatTemplate::from_file(s.template_file);
    t.special_tokens() = chat::read_special_tokens(s.tokens_config);
    chat::jinja::Value messages = chat::messages_value(conversation);
    std::string text = t.render(messages).text;
    tokenizer::EncodeOptions eo;
    eo.add_special = false;
    size_t tokens = 0;
    double encode_us = time_us([&] {
      std::vector<tokenizer::Span> spans;
      tokens = tok->encode(text, eo, &spans).size();
    });
    double render_us = time_us([&] { (void)t.render(messages); });
    size_t masked = 0;
    double mask_us = time_us(
        [&] { masked = chat::encode_with_assistant_mask(t, *tok, messages).masked_count(); });
    std::printf("| %s | %zu (%zu learned) | %.1f µs | %.1f µs | %.1f µs | %.2fx |\n", s.name,
                tokens, masked, encode_us, render_us, mask_us, mask_us / encode_us);
  }
  std::printf(
      "\nrender + mask includes the generation-prompt renders used to anchor each turn and one "
      "encode.\n");
  return 0;
}
