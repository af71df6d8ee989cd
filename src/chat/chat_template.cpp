#include "chat/chat_template.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "chat/jinja_interpreter.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/json_io.h"

namespace seqit::chat {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// SpecialTokens

std::optional<std::string> SpecialTokens::get(std::string_view name) const {
  for (const auto& [k, v] : named) {
    if (k == name) return v;
  }
  return std::nullopt;
}

void SpecialTokens::set(std::string_view name, std::string text) {
  for (auto& [k, v] : named) {
    if (k == name) {
      v = std::move(text);
      return;
    }
  }
  named.emplace_back(std::string(name), std::move(text));
}

void SpecialTokens::fill_from(const tokenizer::Tokenizer& tok) {
  if (!bos() && !from_config) {
    if (auto id = tok.bos_id()) set("bos_token", tok.token_text(*id));
  }
  if (!eos() && !from_config) {
    if (auto id = tok.eos_id()) set("eos_token", tok.token_text(*id));
  }
  for (const auto& [k, v] : named) {
    if (std::find(all.begin(), all.end(), v) == all.end()) all.push_back(v);
  }
}

namespace {

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open file").in_file(path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A token in tokenizer_config.json: "<s>" or {"content": "<s>", ...} (AddedToken).
std::optional<std::string> token_text(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return std::nullopt;
}

SpecialTokens special_tokens_from(const nlohmann::json& config) {
  SpecialTokens t;
  t.from_config = config.contains("bos_token") || config.contains("eos_token");
  static const char* const names[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                      "pad_token", "cls_token", "mask_token"};
  for (const char* n : names) {
    if (config.contains(n)) {
      if (auto text = token_text(config[n])) t.set(n, *text);
    }
  }
  if (config.contains("additional_special_tokens") &&
      config["additional_special_tokens"].is_array()) {
    for (const auto& x : config["additional_special_tokens"]) {
      if (auto text = token_text(x)) t.additional.push_back(*text);
    }
  }
  if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
    for (const auto& [id, tok] : config["added_tokens_decoder"].items()) {
      if (tok.is_object() && tok.value("special", false)) {
        if (auto text = token_text(tok)) t.all.push_back(*text);
      }
    }
  }
  for (const auto& [k, v] : t.named) {
    if (std::find(t.all.begin(), t.all.end(), v) == t.all.end()) t.all.push_back(v);
  }
  for (const auto& v : t.additional) {
    if (std::find(t.all.begin(), t.all.end(), v) == t.all.end()) t.all.push_back(v);
  }
  if (config.contains("add_bos_token") && config["add_bos_token"].is_boolean()) {
    t.add_bos_token = config["add_bos_token"].get<bool>();
  }
  return t;
}

// The template text in a tokenizer_config.json-like document.
std::string template_from_config(const nlohmann::json& config, const std::string& path,
                                 const std::string& template_name) {
  if (!config.is_object() || !config.contains("chat_template")) {
    throw Error("no \"chat_template\" in this file").in_file(path).in_field("chat_template");
  }
  const auto& t = config["chat_template"];
  if (t.is_string()) {
    if (!template_name.empty() && template_name != "default") {
      throw Error("this file has a single chat template; there is no template named '" +
                  template_name + "'")
          .in_file(path)
          .in_field("chat_template");
    }
    return t.get<std::string>();
  }
  if (t.is_array()) {
    std::string wanted = template_name.empty() ? "default" : template_name;
    std::string names;
    for (const auto& entry : t) {
      if (!entry.is_object() || !entry.contains("name") || !entry.contains("template")) {
        throw Error("chat_template list entries must be {\"name\", \"template\"} objects")
            .in_file(path)
            .in_field("chat_template");
      }
      std::string name = entry["name"].get<std::string>();
      if (name == wanted) return entry["template"].get<std::string>();
      names += (names.empty() ? "" : ", ") + name;
    }
    throw Error("no chat template named '" + wanted + "' (available: " + names + ")")
        .in_file(path)
        .in_field("chat_template");
  }
  throw Error("\"chat_template\" must be a string or a list of {name, template}")
      .in_file(path)
      .in_field("chat_template");
}

}  // namespace

SpecialTokens read_special_tokens(const fs::path& tokenizer_config) {
  nlohmann::json config = read_json_file(tokenizer_config);
  if (!config.is_object()) throw Error("expected a JSON object").in_file(tokenizer_config.string());
  return special_tokens_from(config);
}

// ---------------------------------------------------------------------------------------------
// ChatTemplate

ChatTemplate ChatTemplate::from_source(std::string_view source, std::string name,
                                       SpecialTokens tokens) {
  ChatTemplate t;
  t.source_ = std::string(source);
  t.template_ = jinja::Template::parse(source, std::move(name));
  t.tokens_ = std::move(tokens);
  return t;
}

ChatTemplate ChatTemplate::from_file(const fs::path& path, const std::string& template_name) {
  if (fs::is_directory(path)) {
    fs::path jinja_file = path / "chat_template.jinja";
    fs::path config = path / "tokenizer_config.json";
    if (fs::exists(jinja_file)) {
      SpecialTokens tokens = fs::exists(config) ? read_special_tokens(config) : SpecialTokens{};
      return from_source(read_text(jinja_file), jinja_file.string(), std::move(tokens));
    }
    if (fs::exists(config)) return from_file(config, template_name);
    throw Error("no chat_template.jinja or tokenizer_config.json in this folder")
        .in_file(path.string());
  }
  if (!fs::exists(path)) throw Error("file not found").in_file(path.string());
  std::string text = read_text(path);
  if (path.extension() == ".json") {
    nlohmann::json config = parse_json(text, path.string());
    std::string source = template_from_config(config, path.string(), template_name);
    return from_source(source, path.string(), special_tokens_from(config));
  }
  SpecialTokens tokens;
  fs::path sibling = path.parent_path() / "tokenizer_config.json";
  if (path.filename() == "chat_template.jinja" && fs::exists(sibling))
    tokens = read_special_tokens(sibling);
  return from_source(text, path.string(), std::move(tokens));
}

jinja::Value messages_value(const std::vector<Message>& messages) {
  std::vector<jinja::Value> list;
  list.reserve(messages.size());
  for (const auto& m : messages) {
    list.push_back(jinja::Value::dict({{jinja::Value("role"), jinja::Value(m.role)},
                                       {jinja::Value("content"), jinja::Value(m.content)}}));
  }
  return jinja::Value::list(std::move(list));
}

namespace {

jinja::Value tagged(const jinja::Value& s, int32_t tag) {
  jinja::StringData d{s.str(), {}};
  if (!d.text.empty()) d.provenance.push_back({0, uint32_t(d.text.size()), tag});
  return jinja::Value(std::move(d));
}

// A copy of `messages` whose contents carry provenance tag = message index. Only the list and
// the message dicts are copied; everything else is shared.
jinja::Value tag_contents(const jinja::Value& messages) {
  if (!messages.is_list()) throw Error("messages must be a list of {role, content} objects");
  std::vector<jinja::Value> out = messages.items();
  for (size_t i = 0; i < out.size(); ++i) {
    const jinja::Value& m = out[i];
    if (!m.is_dict())
      throw Error("message must be an object with role and content").at_record(int64_t(i));
    const jinja::Value* content = m.dict_data().find("content");
    if (!content) continue;
    jinja::Value copy = jinja::Value::dict(m.dict_data().items);
    int32_t tag = int32_t(i);
    if (content->is_string()) {
      copy.dict_data().set(jinja::Value("content"), tagged(*content, tag));
    } else if (content->is_list()) {
      // Multimodal-style content: [{"type": "text", "text": "..."}, ...]
      std::vector<jinja::Value> parts = content->items();
      for (auto& part : parts) {
        if (!part.is_dict()) continue;
        const jinja::Value* text = part.dict_data().find("text");
        if (text && text->is_string()) {
          jinja::Value p = jinja::Value::dict(part.dict_data().items);
          p.dict_data().set(jinja::Value("text"), tagged(*text, tag));
          part = p;
        }
      }
      copy.dict_data().set(jinja::Value("content"), jinja::Value::list(std::move(parts)));
    }
    out[i] = copy;
  }
  return jinja::Value::list(std::move(out), messages.is_tuple());
}

void add_range(std::vector<ByteRange>& ranges, size_t b, size_t e) {
  if (!ranges.empty() && ranges.back().end >= b) {
    ranges.back().end = std::max(ranges.back().end, e);
    return;
  }
  ranges.push_back({b, e});
}

}  // namespace

Rendered ChatTemplate::render(const jinja::Value& messages, const RenderOptions& options) const {
  std::vector<std::pair<std::string, jinja::Value>> vars;
  vars.reserve(8 + tokens_.named.size() + options.variables.size());
  vars.emplace_back("messages", tag_contents(messages));
  vars.emplace_back("tools", options.tools);
  vars.emplace_back("documents", options.documents);
  vars.emplace_back("add_generation_prompt", jinja::Value(options.add_generation_prompt));
  for (const auto& [k, v] : tokens_.named) vars.emplace_back(k, jinja::Value(v));
  if (!tokens_.additional.empty()) {
    std::vector<jinja::Value> extra;
    for (const auto& a : tokens_.additional) extra.emplace_back(a);
    vars.emplace_back("additional_special_tokens", jinja::Value::list(std::move(extra)));
  }
  for (const auto& variable : options.variables) {
    // Not a structured binding: clang before 16 cannot capture one (the fuzz build uses clang 14).
    const std::string& k = variable.first;
    auto it = std::find_if(vars.begin(), vars.end(), [&](const auto& p) { return p.first == k; });
    if (it != vars.end())
      it->second = variable.second;
    else
      vars.emplace_back(k, variable.second);
  }
  jinja::RenderSettings settings;
  settings.now_unix = options.now_unix;
  jinja::StringData out = template_.render(vars, settings);

  Rendered r;
  r.text = std::move(out.text);
  std::vector<jinja::Provenance> prov = std::move(out.provenance);
  std::sort(prov.begin(), prov.end(), [](const auto& a, const auto& b) {
    return a.tag != b.tag ? a.tag < b.tag : a.begin < b.begin;
  });
  for (const auto& p : prov) {
    if (p.tag == jinja::kGenerationTag) {
      add_range(r.generation, p.begin, p.end);
      continue;
    }
    if (p.tag < 0) continue;
    if (r.messages.empty() || r.messages.back().message_index != size_t(p.tag)) {
      const jinja::Value* role = messages.items()[size_t(p.tag)].dict_data().find("role");
      r.messages.push_back(
          {size_t(p.tag), role && role->is_string() ? role->str() : std::string(), {}});
    }
    add_range(r.messages.back().content, p.begin, p.end);
  }
  return r;
}

std::optional<bool> ChatTemplate::has_generation_prompt() const {
  int cached = has_generation_prompt_->load(std::memory_order_relaxed);
  if (cached == -2) {
    try {
      std::vector<Message> probe = {{"user", "probe"}};
      RenderOptions with, without;
      with.add_generation_prompt = true;
      cached = render(probe, with).text != render(probe, without).text ? 1 : 0;
    } catch (const Error&) {
      cached = -1;
    }
    has_generation_prompt_->store(cached, std::memory_order_relaxed);
  }
  if (cached < 0) return std::nullopt;
  return cached == 1;
}

const MessageText* Rendered::find(size_t index) const {
  for (const auto& m : messages) {
    if (m.message_index == index) return &m;
  }
  return nullptr;
}

Rendered ChatTemplate::render(const std::vector<Message>& messages,
                              const RenderOptions& options) const {
  return render(messages_value(messages), options);
}

}  // namespace seqit::chat
