// `seqit chat`: an interactive conversation with a local model through its chat template. Reads
// one user message per line from standard input, streams each reply to standard output, and keeps
// the conversation (oldest turns are dropped when it no longer fits the context).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include "chat/model_template.h"
#include "cli/command.h"
#include "cli/model_options.h"
#include "infer/engine.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {
namespace {

struct ChatOptions {
  ModelOptions model;
  SamplingOptions sampling;
};

constexpr const char* kHelp =
    "Type a message and press Enter. Commands: /reset (forget the conversation), /system TEXT (set "
    "the "
    "system message and reset), /exit (or end of input).\n";

void run(ChatOptions o) {
  LoadedModel m = load_model(o.model);
  const chat::ChatTemplate tmpl = chat_template(m, o.model);
  const std::vector<infer::TokenId> end_tokens = chat::end_of_turn_tokens(tmpl, *m.tokenizer);
  const bool interactive = isatty(STDIN_FILENO) != 0;
  const int64_t context = m.model->config().max_position_embeddings;
  infer::EngineOptions engine_options;
  engine_options.max_batch = 1;
  infer::Engine engine(*m.model, m.tokenizer.get(), engine_options);
  if (interactive) {
    std::fprintf(stderr, "seqit chat: %s, template %s, context %lld tokens. %s",
                 o.model.model.c_str(), tmpl.name().c_str(), static_cast<long long>(context),
                 kHelp);
  }

  std::string system = o.model.system;
  std::vector<chat::Message> history;  // user/assistant turns, oldest first
  std::string line;
  while (true) {
    if (interactive) std::fputs("> ", stderr);
    if (!std::getline(std::cin, line)) break;
    if (line.empty()) continue;
    if (line == "/exit" || line == "/quit") break;
    if (line == "/help") {
      std::fputs(kHelp, stderr);
      continue;
    }
    if (line == "/reset" || line.rfind("/system", 0) == 0) {
      if (line != "/reset") system = line.size() > 8 ? line.substr(8) : "";
      history.clear();
      std::fputs("(conversation reset)\n", stderr);
      continue;
    }
    history.push_back({"user", line});

    // Render; drop the oldest exchange while the prompt leaves no room for a reply.
    std::vector<infer::TokenId> prompt;
    while (true) {
      std::vector<chat::Message> messages;
      if (!system.empty()) messages.push_back({"system", system});
      messages.insert(messages.end(), history.begin(), history.end());
      chat::ChatPromptText text = chat::render_chat_prompt(tmpl, messages);
      tokenizer::EncodeOptions enc;
      enc.add_special = text.add_special_tokens;
      prompt = m.tokenizer->encode(text.text, enc);
      if (static_cast<int64_t>(prompt.size()) < context || history.size() <= 1) break;
      history.erase(history.begin(), history.begin() + std::min<size_t>(2, history.size() - 1));
      log::warn("the conversation no longer fits the context of {} tokens; dropped the oldest turn",
                context);
    }
    if (static_cast<int64_t>(prompt.size()) >= context) {
      std::fprintf(
          stderr,
          "seqit chat: the message is %zu tokens, more than the model's context (%lld); not sent\n",
          prompt.size(), static_cast<long long>(context));
      history.pop_back();
      continue;
    }

    infer::GenerationRequest request;
    request.prompt = std::move(prompt);
    request.sampling = o.sampling.sampling();
    request.stop = o.sampling.stop_params();
    request.stop.stop_tokens = end_tokens;
    request.stop.max_new_tokens = std::min<int64_t>(
        request.stop.max_new_tokens, context - static_cast<int64_t>(request.prompt.size()));
    request.text_standalone = true;
    request.on_text = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
    infer::GenerationResult r = engine.generate({std::move(request)})[0];
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (r.finish == infer::FinishReason::length)
      log::info("(reply cut at {} tokens; --max-tokens)", r.tokens.size());
    history.push_back({"assistant", r.text});
  }
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<ChatOptions>();
  cmd.description(
      "Chat with a local model in the terminal. Each line you type is a user message; the reply "
      "streams back "
      "as it is generated, formatted with the model's chat template (or --chat-template). The "
      "conversation is "
      "kept until /reset; when it outgrows the context the oldest turns are dropped. Also works "
      "with standard "
      "input from a file or pipe: one message per line, replies on standard output.");
  add_model_options(cmd, o->model, /*chat_flag=*/false);
  add_sampling_options(cmd, o->sampling);
  cmd.callback([o] { run(*o); });
}

}  // namespace
SEQIT_COMMAND("chat", "Interactive chat with a local model (streaming, with its chat template)",
              setup);
}  // namespace seqit::cli
