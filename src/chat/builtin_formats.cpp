// Builtin chat formats for base models that ship no chat_template, written as Jinja so they go
// through the same renderer (and the same assistant-mask tracking) as Hugging Face templates.
//
// tulu  — the SIT paper's training format (open-instruct encode_with_messages_format, see
//         shared/docs/SIT_SPEC.md §3.2): "<|system|>\n{sys}\n<|user|>\n{user}\n<|assistant|>\n
//         {reply}{eos}\n", contents stripped, the whole text stripped (so the last EOS ends it);
//         the generation prompt is "<|assistant|>\n" (open-instruct's
//         create_prompt_with_tulu_chat_format). No BOS in the text: the tokenizer adds it.
// alpaca — alpaca-lora's templates/alpaca.json (the SIT repository's legacy recipe): preamble,
//         "### Instruction:\n...\n\n", "### Response:\n{reply}{eos}"; a system message replaces the
//         preamble. No BOS in the text: the tokenizer adds it.
// chatml — "<|im_start|>{role}\n{content}<|im_end|>\n", prompt "<|im_start|>assistant\n".
// llama3 — Llama-3 Instruct: BOS,
// "<|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>". mistral —
// Mistral-7B-Instruct v0.1: BOS, "[INST] {user} [/INST]{reply}{eos}", a system message
//         folded into the first user turn, roles must alternate.
#include <string>

#include "chat/chat_template.h"
#include "util/error.h"

namespace seqit::chat {
namespace {

struct Builtin {
  const char* name;
  const char* source;
  bool tokenizer_adds_special;
};

const Builtin kBuiltins[] = {
    {"tulu",
     R"JINJA({%- if eos_token is not defined or eos_token is none -%}
{{- raise_exception('the tulu format needs the tokenizer\'s eos_token') -}}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}
{%- set block = '<|system|>\n' + message['content'] | trim -%}
{%- elif message['role'] == 'user' -%}
{%- set block = '<|user|>\n' + message['content'] | trim -%}
{%- elif message['role'] == 'assistant' -%}
{%- set block = '<|assistant|>\n' + message['content'] | trim + eos_token -%}
{%- else -%}
{{- raise_exception('the tulu format has no role ' ~ message['role'] ~ ' (system, user, assistant)') -}}
{%- endif -%}
{%- if loop.last and not add_generation_prompt -%}
{{- block | trim -}}
{%- else -%}
{{- block + '\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|assistant|>\n' -}}
{%- endif -%})JINJA",
     true},
    {"alpaca",
     R"JINJA({%- if eos_token is not defined or eos_token is none -%}
{{- raise_exception('the alpaca format needs the tokenizer\'s eos_token') -}}
{%- endif -%}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set preamble = messages[0]['content'] -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set preamble = 'Below is an instruction that describes a task. Write a response that appropriately completes the request.' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- if preamble -%}
{{- preamble + '\n\n' -}}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if message['role'] == 'user' -%}
{{- '### Instruction:\n' + message['content'] + '\n\n' -}}
{%- elif message['role'] == 'assistant' -%}
{{- '### Response:\n' + message['content'] + eos_token -}}
{%- if not loop.last -%}
{{- '\n\n' -}}
{%- endif -%}
{%- else -%}
{{- raise_exception('the alpaca format has no role ' ~ message['role'] ~ ' (system first, then user, assistant)') -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '### Response:\n' -}}
{%- endif -%})JINJA",
     true},
    {"chatml",
     R"JINJA({%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- endif -%})JINJA",
     false},
    {"llama3",
     R"JINJA({{- bos_token if bos_token is defined else '<|begin_of_text|>' -}}
{%- for message in messages -%}
{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%})JINJA",
     false},
    {"mistral",
     R"JINJA({%- if eos_token is not defined or eos_token is none -%}
{{- raise_exception('the mistral format needs the tokenizer\'s eos_token') -}}
{%- endif -%}
{{- bos_token if bos_token is defined else '<s>' -}}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] -%}
{%- set loop_messages = messages[1:] -%}
{%- else -%}
{%- set system = '' -%}
{%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
{{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}
{%- endif -%}
{%- if message['role'] == 'user' -%}
{{- '[INST] ' + (system + '\n\n' if loop.first and system else '') + message['content'] + ' [/INST]' -}}
{%- else -%}
{{- message['content'] + eos_token -}}
{%- endif -%}
{%- endfor -%})JINJA",
     false},
};

}  // namespace

std::vector<std::string> ChatTemplate::builtin_names() {
  std::vector<std::string> names;
  for (const auto& b : kBuiltins) names.emplace_back(b.name);
  return names;
}

ChatTemplate ChatTemplate::builtin(std::string_view name, SpecialTokens tokens) {
  for (const auto& b : kBuiltins) {
    if (name == b.name) {
      ChatTemplate t = from_source(b.source, "builtin:" + std::string(name), std::move(tokens));
      t.tokenizer_adds_special_ = b.tokenizer_adds_special;
      return t;
    }
  }
  std::string names;
  for (const auto& b : kBuiltins) names += (names.empty() ? "" : ", ") + std::string(b.name);
  throw Error("unknown builtin chat format '" + std::string(name) + "' (available: " + names + ")");
}

}  // namespace seqit::chat
