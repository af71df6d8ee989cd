#include "chat/assistant_mask.h"

#include <algorithm>
#include <cctype>

#include "chat/jinja_lexer.h"
#include "util/error.h"
#include "util/utf8.h"

namespace seqit::chat {

size_t MaskedConversation::masked_count() const {
  return size_t(std::count(mask.begin(), mask.end(), uint8_t(1)));
}

bool is_end_marker_text(std::string_view token_text, const std::optional<std::string>& eos_token) {
  if (token_text.empty()) return false;
  if (eos_token && token_text == *eos_token) return true;
  std::string lower(token_text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (lower.find("start") != std::string::npos || lower.find("begin") != std::string::npos)
    return false;
  if (lower.rfind("</", 0) == 0) return true;  // </s>
  for (const char* word : {"end", "eot", "eom", "eos"}) {
    if (lower.find(word) != std::string::npos) return true;
  }
  return false;
}

namespace {

bool whitespace_only(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (!jinja::python_isspace(c)) return false;
      ++i;
      continue;
    }
    // Multi-byte: only the Unicode spaces count; decode the code point.
    size_t n = utf8::sequence_length(c);
    if (i + n > s.size()) return false;
    char32_t cp = c & (0xff >> (n + 1));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    if (!jinja::python_isspace(cp)) return false;
    i += n;
  }
  return true;
}

// Why no end marker was found after a reply ending at `content_end`.
std::string describe_missing_marker(const std::string& text, size_t content_end,
                                    const std::optional<std::string>& eos) {
  std::string_view rest = std::string_view(text).substr(content_end);
  if (rest.empty())
    return "no end-of-turn token follows its content (the text ends), so the model would not learn "
           "to stop";
  std::string shown;
  for (char c : rest.substr(0, 24)) shown += c == '\n' ? std::string("\\n") : std::string(1, c);
  if (rest.size() > 24) shown += "...";
  std::string out = "no end-of-turn token follows its content (the text continues '" + shown + "')";
  size_t skip = rest.find_first_not_of(" \t\r\n");
  if (eos && skip != std::string_view::npos && rest.substr(skip).rfind(*eos, 0) == 0) {
    out += "; " + *eos + " is written there but the tokenizer does not read it as a special token";
  }
  return out + ", so the model would not learn to stop";
}

const jinja::Value* message_field(const jinja::Value& m, const char* key) {
  return m.is_dict() ? m.dict_data().find(key) : nullptr;
}

// Does this assistant message have text the template should have written?
bool has_text_content(const jinja::Value& m) {
  const jinja::Value* c = message_field(m, "content");
  if (!c) return false;
  if (c->is_string()) return c->str().find_first_not_of(" \t\r\n") != std::string::npos;
  if (c->is_list()) {
    for (const auto& part : c->items()) {
      const jinja::Value* t = message_field(part, "text");
      if (t && t->is_string() && !t->str().empty()) return true;
    }
  }
  return false;
}

}  // namespace

MaskedConversation encode_with_assistant_mask(const ChatTemplate& chat_template,
                                              const tokenizer::Tokenizer& tok,
                                              const jinja::Value& messages,
                                              const MaskOptions& options) {
  Rendered r = chat_template.render(messages, options.render);
  MaskedConversation out;
  out.text = std::move(r.text);
  tokenizer::EncodeOptions eo;
  eo.add_special = options.add_special.value_or(chat_template.tokenizer_adds_special_tokens());
  eo.parse_special = true;
  out.ids = tok.encode(out.text, eo, &out.spans);
  if (out.spans.size() != out.ids.size())
    throw Error("tokenizer returned no byte spans: cannot build the assistant mask");
  out.mask.assign(out.ids.size(), 0);
  // Spans must be monotone for the searches below. A zero-width span that points backwards (some
  // encoders give byte-fallback pieces of one character no bytes of their own) is moved to where
  // the previous token ends.
  for (size_t k = 1; k < out.spans.size(); ++k) {
    if (out.spans[k].begin < out.spans[k - 1].end) {
      size_t at = out.spans[k - 1].end;
      if (out.spans[k].end <= at)
        out.spans[k] = {at, at};
      else
        out.spans[k].begin = at;
    }
  }

  std::optional<std::string> eos = chat_template.special_tokens().eos();
  if (!eos) {
    if (auto id = tok.eos_id()) eos = tok.token_text(*id);
  }
  const size_t n = out.ids.size();
  auto token_view = [&](size_t k) {
    return std::string_view(out.text).substr(out.spans[k].begin,
                                             out.spans[k].end - out.spans[k].begin);
  };
  auto is_marker = [&](size_t k) {
    return out.spans[k].end > out.spans[k].begin && tok.is_special(out.ids[k]) &&
           is_end_marker_text(token_view(k), eos);
  };
  // Does [b, e) hold any content byte of a message other than `self`?
  auto holds_other_content = [&](size_t b, size_t e, size_t self) {
    for (const auto& m : r.messages) {
      if (m.message_index == self) continue;
      for (const auto& range : m.content) {
        if (range.begin < e && range.end > b) return true;
      }
    }
    return false;
  };
  // First token whose bytes end after `byte`.
  auto token_at = [&](size_t byte) {
    return size_t(std::lower_bound(out.spans.begin(), out.spans.end(), byte,
                                   [](const tokenizer::Span& s, size_t b) { return s.end <= b; }) -
                  out.spans.begin());
  };

  const auto& list = messages.items();
  size_t previous_end = 0;  // end of the previous learned region
  for (size_t mi = 0; mi < list.size(); ++mi) {
    const jinja::Value* role = message_field(list[mi], "role");
    if (!role || !role->is_string() || role->str() != "assistant") continue;
    MaskedTurn turn;
    turn.message_index = mi;
    const MessageText* rendered = r.find(mi);
    if (rendered) turn.content = rendered->content;

    // The generation prompt the model sees at inference for this turn: trusted when the template
    // has one (add_generation_prompt changes the text) and the full text starts with it.
    try {
      std::optional<bool> template_has_prompt = chat_template.has_generation_prompt();
      if (template_has_prompt.value_or(true)) {
        jinja::Value head =
            jinja::Value::list(std::vector<jinja::Value>(list.begin(), list.begin() + long(mi)));
        RenderOptions prompt_options = options.render;
        prompt_options.add_generation_prompt = true;
        std::string prompt = chat_template.render(head, prompt_options).text;
        bool changes_text = true;
        if (!template_has_prompt) {  // the probe failed: compare for this conversation
          prompt_options.add_generation_prompt = false;
          changes_text = prompt != chat_template.render(head, prompt_options).text;
        }
        if (changes_text && out.text.compare(0, prompt.size(), prompt) == 0)
          turn.prompt_end = prompt.size();
      }
    } catch (const Error&) {
      // Templates may refuse a conversation that ends before an assistant turn; no prompt then.
    }

    size_t region_begin;
    if (rendered) {
      region_begin = rendered->content.front().begin;
      if (turn.prompt_end && *turn.prompt_end <= region_begin && *turn.prompt_end >= previous_end &&
          !holds_other_content(*turn.prompt_end, region_begin, mi)) {
        region_begin = *turn.prompt_end;
      }
    } else if (turn.prompt_end && *turn.prompt_end >= previous_end && !has_text_content(list[mi])) {
      // No content (e.g. only tool calls): learn what the template writes for the turn, up to its
      // end marker, as long as no other message's content comes first.
      region_begin = *turn.prompt_end;
    } else {
      if (has_text_content(list[mi])) {
        out.warnings.push_back(
            "assistant message " + std::to_string(mi) +
            ": its content does not appear in the rendered text (the template drops or "
            "rewrites it), so nothing is learned from it");
      }
      out.turns.push_back(std::move(turn));
      continue;
    }

    std::optional<size_t> first, last;
    auto learn = [&](size_t k) {
      // Inserted special tokens (BOS/EOS) are never learned; a zero-width ordinary piece inside
      // the region (a byte-fallback piece of a character) is.
      if (out.spans[k].end <= out.spans[k].begin && (tok.is_special(out.ids[k]) || !first)) return;
      out.mask[k] = 1;
      if (!first) first = k;
      last = k;
    };
    size_t k = token_at(region_begin);
    if (rendered) {
      const size_t content_end = rendered->content.back().end;
      for (; k < n && out.spans[k].begin < content_end; ++k) learn(k);
      if (options.train_end_marker) {
        size_t m = k;
        while (m < n && !tok.is_special(out.ids[m]) && whitespace_only(token_view(m))) ++m;
        if (m < n && is_marker(m)) {
          for (size_t g = k; g <= m; ++g) learn(g);
          turn.end_marker = ByteRange{out.spans[m].begin, out.spans[m].end};
        } else {
          out.warnings.push_back("assistant message " + std::to_string(mi) + ": " +
                                 describe_missing_marker(out.text, content_end, eos));
        }
      }
    } else {
      size_t m = k;
      while (m < n && !is_marker(m)) ++m;
      if (m < n && !holds_other_content(region_begin, out.spans[m].end, mi)) {
        for (size_t g = k; g <= m; ++g) learn(g);
        turn.end_marker = ByteRange{out.spans[m].begin, out.spans[m].end};
      }
    }
    if (first) {
      turn.first_token = *first;
      turn.end_token = *last + 1;
      previous_end = out.spans[*last].end;
    }
    out.turns.push_back(std::move(turn));
  }
  return out;
}

}  // namespace seqit::chat
