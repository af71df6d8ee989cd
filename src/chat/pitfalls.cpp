#include "chat/pitfalls.h"

#include <algorithm>

#include "chat/assistant_mask.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace seqit::chat {
namespace {

// Probe contents: distinctive, so their provenance is easy to follow in messages.
constexpr const char* kSystem = "You are the probe assistant.";
constexpr const char* kUser1 = "First probe question?";
constexpr const char* kReply1 = "First probe answer.";
constexpr const char* kUser2 = "Second probe question?";
constexpr const char* kReply2 = "Second probe answer.";

std::string quote(std::string_view s, size_t max = 60) {
  std::string out;
  for (char c : s.substr(0, max)) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else
      out += c;
  }
  if (s.size() > max) out += "...";
  return "'" + out + "'";
}

bool blank(std::string_view s) {
  return s.find_first_not_of(" \t\r\n") == std::string_view::npos;
}

// Renders, turning a template's raise_exception into a message.
std::optional<Rendered> try_render(const ChatTemplate& t, const std::vector<Message>& messages,
                                   const RenderOptions& options, std::string* raised) {
  try {
    return t.render(messages, options);
  } catch (const jinja::TemplateRaisedError& e) {
    if (raised) *raised = e.message();
    return std::nullopt;
  }
}

// Known end-of-turn texts for the text-only check (no tokenizer).
std::vector<std::string> end_marker_texts(const ChatTemplate& t) {
  std::vector<std::string> out;
  auto eos = t.special_tokens().eos();
  if (eos) out.push_back(*eos);
  for (const auto& s : t.special_tokens().all) {
    if (is_end_marker_text(s, eos) && std::find(out.begin(), out.end(), s) == out.end())
      out.push_back(s);
  }
  for (const char* s :
       {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>",
        "<|end_of_text|>", "<|eom_id|>", "<｜end▁of▁sentence｜>"}) {
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

}  // namespace

std::vector<Finding> check_template(const ChatTemplate& t, const tokenizer::Tokenizer* tok,
                                    const CheckOptions& options) {
  std::vector<Finding> findings;
  auto add = [&](Severity s, const char* check, std::string message) {
    findings.push_back({s, check, std::move(message)});
  };
  RenderOptions render = options.render;
  render.add_generation_prompt = false;

  // The probe conversation, with a system message when the template accepts one.
  std::vector<Message> with_system = {{"system", kSystem},
                                      {"user", kUser1},
                                      {"assistant", kReply1},
                                      {"user", kUser2},
                                      {"assistant", kReply2}};
  std::vector<Message> without_system(with_system.begin() + 1, with_system.end());
  std::string raised;
  std::optional<Rendered> sys_render = try_render(t, with_system, render, &raised);
  bool system_ok = sys_render.has_value();
  std::vector<Message> probe = system_ok ? with_system : without_system;
  std::string raised_plain;
  std::optional<Rendered> full =
      system_ok ? sys_render : try_render(t, without_system, render, &raised_plain);
  if (!full) {
    throw Error("the template refuses a plain user/assistant conversation: " + raised_plain)
        .in_file(t.name());
  }

  // end-marker
  if (tok) {
    MaskOptions mo;
    mo.render = render;
    mo.add_special = options.add_special;
    MaskedConversation mc = encode_with_assistant_mask(t, *tok, messages_value(probe), mo);
    for (const auto& w : mc.warnings) add(Severity::warning, "end-marker", w);
  } else {
    auto markers = end_marker_texts(t);
    for (const auto& m : full->messages) {
      if (m.role != "assistant") continue;
      size_t end = m.content.back().end;
      size_t next = full->text.find_first_not_of(" \t\r\n", end);
      std::string_view rest = next == std::string::npos ? std::string_view()
                                                        : std::string_view(full->text).substr(next);
      bool found = std::any_of(markers.begin(), markers.end(),
                               [&](const std::string& mk) { return rest.rfind(mk, 0) == 0; });
      if (!found) {
        add(Severity::warning, "end-marker",
            "assistant message " + std::to_string(m.message_index) +
                ": no end-of-turn marker follows its content (next: " + quote(rest, 30) +
                "), so the model would not learn to stop");
      }
    }
  }

  // double-bos
  auto bos = t.special_tokens().bos();
  bool adds_special = options.add_special.value_or(t.tokenizer_adds_special_tokens());
  if (tok && tok->bos_id()) {
    tokenizer::EncodeOptions eo;
    eo.add_special = adds_special;
    auto ids = tok->encode(full->text, eo);
    if (ids.size() >= 2 && ids[0] == *tok->bos_id() && ids[1] == *tok->bos_id()) {
      add(Severity::warning, "double-bos",
          "the text starts with two BOS tokens: the template writes " +
              tok->token_text(*tok->bos_id()) +
              " and the tokenizer adds another; encode the rendered text without the tokenizer's "
              "special tokens");
    } else if (ids.empty() || ids[0] != *tok->bos_id()) {
      if (t.special_tokens().add_bos_token.value_or(
              false)) {  // the config says the model wants BOS
        add(Severity::info, "double-bos",
            "no BOS at the start of the encoded text (the template does not write it and the "
            "tokenizer does not add it)");
      }
    }
  } else if (bos && !bos->empty() && full->text.rfind(*bos, 0) == 0 && adds_special &&
             t.special_tokens().add_bos_token.value_or(true)) {
    add(Severity::warning, "double-bos",
        "the template writes " + *bos +
            " and the tokenizer would add it again; encode the rendered text without the "
            "tokenizer's special tokens");
  }

  // system-dropped
  if (!system_ok) {
    add(Severity::info, "system-dropped",
        "the template refuses a system message: \"" + raised + "\"");
  } else if (!full->find(0)) {
    add(Severity::warning, "system-dropped",
        "the system message does not appear in the rendered text: the template drops it silently");
  }

  // generation-prompt: the prompt for the last reply must be the start of the training text.
  std::vector<Message> head(probe.begin(), probe.end() - 1);
  RenderOptions with_prompt = render;
  with_prompt.add_generation_prompt = true;
  std::optional<Rendered> prompt = try_render(t, head, with_prompt, nullptr);
  std::optional<Rendered> no_prompt = try_render(t, head, render, nullptr);
  const MessageText* reply = full->find(probe.size() - 1);
  if (prompt && no_prompt && reply) {
    size_t content_begin = reply->content.front().begin;
    const std::string& p = prompt->text;
    const std::string& f = full->text;
    bool has_prompt = p != no_prompt->text;
    if (f.compare(0, p.size(), p) != 0 || p.size() > content_begin) {
      size_t diverge = 0;
      while (diverge < p.size() && diverge < f.size() && p[diverge] == f[diverge]) ++diverge;
      add(Severity::warning, "generation-prompt",
          "the inference prompt is not the start of the training text: after " +
              quote(std::string_view(p).substr(diverge >= 20 ? diverge - 20 : 0,
                                               std::min<size_t>(diverge, 20)),
                    20) +
              " the prompt has " + quote(std::string_view(p).substr(diverge), 30) +
              " but the training text has " + quote(std::string_view(f).substr(diverge), 30));
    } else {
      std::string_view gap = std::string_view(f).substr(p.size(), content_begin - p.size());
      if (!has_prompt && !blank(gap)) {
        add(Severity::warning, "generation-prompt",
            "add_generation_prompt changes nothing: at inference the model would have to write " +
                quote(gap) + " itself before its reply");
      } else if (has_prompt && !blank(gap)) {
        add(Severity::info, "generation-prompt",
            "after the generation prompt the template writes " + quote(gap) +
                " before the reply; it is part of what the model learns to produce");
      }
    }
  }

  // Text after the last assistant turn in a training render (e.g. a generation prompt written
  // even though add_generation_prompt is false): harmless for masks, surprising for packing.
  if (reply) {
    size_t tail = reply->content.back().end;
    std::string_view rest = std::string_view(full->text).substr(tail);
    auto markers = end_marker_texts(t);
    size_t skip = rest.find_first_not_of(" \t\r\n");
    if (skip != std::string_view::npos) {
      rest = rest.substr(skip);
      for (const auto& mk : markers) {
        if (rest.rfind(mk, 0) == 0) {
          rest = rest.substr(mk.size());
          break;
        }
      }
      if (!blank(rest)) {
        add(Severity::info, "generation-prompt",
            "even with add_generation_prompt=false the template writes " + quote(rest) +
                " after the last assistant turn (it is not learned)");
      }
    }
  }

  // unknown-filter
  for (const auto& u : t.jinja().unknown_filters_and_tests()) {
    add(Severity::warning, "unknown-filter",
        "the template uses " + u +
            ", which transformers does not have: transformers refuses to load the template "
            "(or, inside an if block, fails when it is reached), and so does seqit when it is "
            "reached");
  }
  return findings;
}

}  // namespace seqit::chat
