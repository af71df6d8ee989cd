// `seqit template render|check`: render a conversation with a chat template, and check a template
// for the pitfalls that silently ruin fine-tunes, showing which tokens the model would learn.
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>

#include "chat/assistant_mask.h"
#include "chat/chat_template.h"
#include "chat/pitfalls.h"
#include "cli/command.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::cli {
namespace {

struct SourceOptions {
  std::string template_file, tokenizer_config, builtin, template_name, tokenizer;
  std::string bos_token, eos_token;
  std::vector<std::string> variables;  // key=json
  bool add_generation_prompt = false;
  int64_t now = -1;
};

void add_source_options(CLI::App& cmd, SourceOptions& o) {
  auto* group = cmd.add_option_group("template", "Where the chat template comes from (one of)");
  group->add_option(
      "--template", o.template_file,
      "A Jinja file, chat_template.jinja, a tokenizer_config.json or a tokenizer folder");
  group->add_option("--tokenizer-config", o.tokenizer_config,
                    "A tokenizer_config.json with \"chat_template\"");
  group->add_option("--builtin", o.builtin,
                    "A builtin format: tulu, alpaca, chatml, llama3, mistral");
  group->require_option(0, 1);
  cmd.add_option("--template-name", o.template_name,
                 "Which template of a named list (default: \"default\")");
  cmd.add_option(
      "--tokenizer", o.tokenizer,
      "Tokenizer (folder, tokenizer.json, .model, .gguf): special tokens, masks; with no template "
      "option, a folder's own chat template is used");
  cmd.add_option("--bos-token", o.bos_token, "Override bos_token");
  cmd.add_option("--eos-token", o.eos_token, "Override eos_token");
  cmd.add_option("--var", o.variables,
                 "Extra template variable KEY=JSON (e.g. --var enable_thinking=false)");
  cmd.add_option("--now", o.now,
                 "strftime_now() clock as seconds since the epoch (UTC), for reproducible output");
}

chat::ChatTemplate load_template(const SourceOptions& o, const tokenizer::Tokenizer* tok) {
  chat::ChatTemplate t = [&] {
    if (!o.builtin.empty()) return chat::ChatTemplate::builtin(o.builtin);
    if (!o.tokenizer_config.empty())
      return chat::ChatTemplate::from_file(o.tokenizer_config, o.template_name);
    if (!o.template_file.empty())
      return chat::ChatTemplate::from_file(o.template_file, o.template_name);
    if (!o.tokenizer.empty() && std::filesystem::is_directory(o.tokenizer)) {
      return chat::ChatTemplate::from_file(o.tokenizer, o.template_name);
    }
    throw Error("give a template: --template FILE, --tokenizer-config FILE or --builtin NAME");
  }();
  if (!o.tokenizer.empty() && std::filesystem::is_directory(o.tokenizer) &&
      !t.special_tokens().eos()) {
    auto config = std::filesystem::path(o.tokenizer) / "tokenizer_config.json";
    if (std::filesystem::exists(config)) t.special_tokens() = chat::read_special_tokens(config);
  }
  if (tok) t.special_tokens().fill_from(*tok);
  if (!o.bos_token.empty()) t.special_tokens().set("bos_token", o.bos_token);
  if (!o.eos_token.empty()) t.special_tokens().set("eos_token", o.eos_token);
  return t;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open file").in_file(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A messages file: a JSON array of messages, or an object with "messages" (and "tools").
struct Conversation {
  chat::jinja::Value messages, tools = chat::jinja::Value::none();
};

Conversation read_messages(const std::string& path) {
  chat::jinja::Value v = chat::jinja::parse_json_value(read_file(path), path);
  Conversation c;
  if (v.is_list()) {
    c.messages = v;
  } else if (v.is_dict() && v.dict_data().find("messages")) {
    c.messages = *v.dict_data().find("messages");
    if (const auto* tools = v.dict_data().find("tools")) c.tools = *tools;
  } else {
    throw Error("expected a JSON array of messages or an object with \"messages\"").in_file(path);
  }
  if (!c.messages.is_list())
    throw Error("\"messages\" must be an array").in_file(path).in_field("messages");
  for (size_t i = 0; i < c.messages.items().size(); ++i) {
    const auto& m = c.messages.items()[i];
    if (!m.is_dict() || !m.dict_data().find("role")) {
      throw Error("each message must be an object with \"role\" and \"content\"")
          .in_file(path)
          .at_record(int64_t(i));
    }
  }
  return c;
}

chat::RenderOptions render_options(const SourceOptions& o, const Conversation* c) {
  chat::RenderOptions r;
  r.add_generation_prompt = o.add_generation_prompt;
  if (o.now >= 0) r.now_unix = o.now;
  if (c) r.tools = c->tools;
  for (const auto& kv : o.variables) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--var wants KEY=JSON, got '" + kv + "'");
    std::string value = kv.substr(eq + 1);
    chat::jinja::Value v;
    try {
      v = chat::jinja::parse_json_value(value, "--var " + kv.substr(0, eq));
    } catch (const Error&) {
      v = chat::jinja::Value(value);  // not JSON: a plain string
    }
    r.variables.emplace_back(kv.substr(0, eq), v);
  }
  return r;
}

std::unique_ptr<tokenizer::Tokenizer> maybe_tokenizer(const SourceOptions& o) {
  if (o.tokenizer.empty()) return nullptr;
  return tokenizer::load_tokenizer(o.tokenizer);
}

void setup_render(CLI::App& cmd) {
  auto o = std::make_shared<SourceOptions>();
  auto messages = std::make_shared<std::string>();
  add_source_options(cmd, *o);
  cmd.add_option("--messages", *messages,
                 "JSON file: [{role, content}, ...] or {\"messages\": [...], \"tools\": [...]}")
      ->required();
  cmd.add_flag("--add-generation-prompt", o->add_generation_prompt,
               "End with the prompt for the assistant's reply");
  cmd.callback([o, messages] {
    auto tok = maybe_tokenizer(*o);
    chat::ChatTemplate t = load_template(*o, tok.get());
    Conversation c = read_messages(*messages);
    chat::Rendered r = t.render(c.messages, render_options(*o, &c));
    std::fwrite(r.text.data(), 1, r.text.size(), stdout);
  });
}

struct CheckSettings {
  std::string messages, color = "auto";
  bool strict = false;
  int add_special = -1;
};

// Prints the text with the learned tokens highlighted (colour) or bracketed «...» (plain).
void show_mask(const chat::MaskedConversation& mc, const tokenizer::Tokenizer& tok, bool colour) {
  const char* on = colour ? "\x1b[30;42m" : "«";
  const char* off = colour ? "\x1b[0m" : "»";
  const char* special_on = colour ? "\x1b[2m" : "";
  const char* special_off = colour ? "\x1b[0m" : "";
  std::string out;
  size_t pos = 0;
  bool in_mask = false;
  for (size_t k = 0; k < mc.ids.size(); ++k) {
    const auto& s = mc.spans[k];
    if (s.begin < pos) continue;
    bool learned = mc.mask[k];
    if (learned != in_mask) {
      out += learned ? on : off;
      in_mask = learned;
    }
    std::string piece =
        s.end > s.begin ? mc.text.substr(s.begin, s.end - s.begin)
                        : (tok.is_special(mc.ids[k]) ? tok.token_text(mc.ids[k]) : std::string());
    bool special = tok.is_special(mc.ids[k]);
    if (special && !learned) out += special_on;
    out += piece;
    if (special && !learned) out += special_off;
    pos = std::max(pos, s.end);
  }
  if (in_mask) out += off;
  std::printf("%s\n", out.c_str());
}

void setup_check(CLI::App& cmd) {
  auto o = std::make_shared<SourceOptions>();
  auto c = std::make_shared<CheckSettings>();
  add_source_options(cmd, *o);
  cmd.add_option("--messages", c->messages,
                 "Show the learned tokens of this conversation (needs --tokenizer)");
  cmd.add_option("--color", c->color, "auto, always or never")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  cmd.add_option(
      "--add-special", c->add_special,
      "1: the tokenizer adds BOS/EOS to the rendered text, 0: it does not (default: 0 for HF "
      "templates, as apply_chat_template; 1 for tulu/alpaca)");
  cmd.add_flag("--strict", c->strict, "Exit with status 3 when a check warns");
  cmd.footer(
      "Checks: end-marker (no end-of-turn token after an assistant reply), double-bos, "
      "system-dropped, "
      "generation-prompt (inference prompt differs from the training text), unknown-filter.");
  cmd.callback([o, c] {
    auto tok = maybe_tokenizer(*o);
    chat::ChatTemplate t = load_template(*o, tok.get());
    chat::CheckOptions co;
    co.render = render_options(*o, nullptr);
    if (c->add_special >= 0) co.add_special = c->add_special == 1;
    auto findings = chat::check_template(t, tok.get(), co);
    size_t warnings = 0;
    std::printf("template: %s%s\n", t.name().c_str(),
                tok ? (" with " + tok->describe()).c_str() : "");
    for (const auto& f : findings) {
      warnings += f.severity == chat::Severity::warning;
      std::printf("%s [%s] %s\n",
                  f.severity == chat::Severity::warning ? "warning:" : "note:", f.check.c_str(),
                  f.message.c_str());
    }
    if (findings.empty()) std::printf("no problems found\n");
    if (!c->messages.empty()) {
      if (!tok) throw Error("--messages needs --tokenizer to show the learned tokens");
      Conversation conv = read_messages(c->messages);
      chat::MaskOptions mo;
      mo.render = render_options(*o, &conv);
      mo.render.add_generation_prompt = false;
      mo.add_special = co.add_special;
      chat::MaskedConversation mc = chat::encode_with_assistant_mask(t, *tok, conv.messages, mo);
      bool colour = c->color == "always" || (c->color == "auto" && ::isatty(STDOUT_FILENO));
      std::printf("\n");
      show_mask(mc, *tok, colour);
      std::printf("\ntokens: %zu, learned: %zu (%.1f%%)\n", mc.ids.size(), mc.masked_count(),
                  mc.ids.empty() ? 0.0 : 100.0 * double(mc.masked_count()) / double(mc.ids.size()));
      for (const auto& w : mc.warnings) {
        ++warnings;
        std::printf("warning: [mask] %s\n", w.c_str());
      }
    }
    if (c->strict && warnings > 0) throw CLI::RuntimeError(3);
  });
}

void setup(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_render(
      *cmd.add_subcommand("render", "Render a conversation with a chat template (to stdout)"));
  setup_check(*cmd.add_subcommand(
      "check", "Check a chat template for fine-tuning pitfalls; show learned tokens"));
}

}  // namespace
SEQIT_COMMAND("template",
              "Chat templates: render conversations, check for pitfalls, show assistant masks",
              setup);
}  // namespace seqit::cli
