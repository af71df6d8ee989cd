// HF tokenizer.json, encoded as the Rust `tokenizers` crate does (what transformers' fast
// tokenizers run):
//   1. added tokens whose "normalized" is false are found in the raw text (leftmost-longest, with
//      their single_word/lstrip/rstrip rules; special ones only when parse_special);
//   2. each remaining stretch is normalised on its own, and added tokens whose "normalized" is true
//      are found in the normalised text, matched in their normalised form (so with Llama-2's
//      Prepend("▁") normalizer "<s>" only matches as "▁<s>", exactly as in HF);
//   3. each remaining stretch is pre-tokenized, and each pre-token run through the BPE model;
//   4. the post-processor adds BOS/EOS when add_special.
// tokenizer_config.json beside the file (or "<prefix>tokenizer_config.json" next to
// "<prefix>tokenizer.json") supplies bos/eos, and for Llama tokenizer classes add_bos_token /
// add_eos_token, which transformers turns into the post-processor.
#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tokenizer/bpe_model.h"
#include "tokenizer/formats.h"
#include "tokenizer/hf_components.h"
#include "tokenizer/token_trie.h"
#include "util/error.h"
#include "util/json_io.h"
#include "util/utf8.h"

namespace seqit::tokenizer {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct AddedToken {
  TokenId id = -1;
  std::string content;
  // What decode() feeds the decoder for this token: HF decodes a "normalized" added token through
  // its normalised form, so Llama-2's "<s>" decodes as "▁<s>" -> " <s>" after the first token.
  std::string decode_form;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

bool is_word_char(char32_t cp) {
  if (cp == '_') return true;
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
  return false;  // conservative outside ASCII: single_word is rare and only used with ASCII tokens
}

std::string content_of(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return {};
}

class HfTokenizer : public Tokenizer {
 public:
  HfTokenizer(const json& doc, const json* config, const std::string& where) : where_(where) {
    if (!doc.is_object()) throw Error("tokenizer.json must be a JSON object").in_file(where);
    load_model(doc.value("model", json()),
               doc.contains("pre_tokenizer") ? doc["pre_tokenizer"] : json());
    if (doc.contains("normalizer") && !doc["normalizer"].is_null())
      normalizer_ = make_normalizer(doc["normalizer"], where);
    if (doc.contains("decoder") && !doc["decoder"].is_null())
      decoder_ = make_decoder(doc["decoder"], where);
    load_added_tokens(doc.value("added_tokens", json::array()));
    if (doc.contains("post_processor") && !doc["post_processor"].is_null())
      load_post_processor(doc["post_processor"]);
    if (config) apply_config(*config);
    if (!bos_) bos_ = first_of({"<s>", "<|begin_of_text|>", "<bos>"});
    if (!eos_) eos_ = first_of({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"});
  }

  std::vector<TokenId> encode(std::string_view input, const EncodeOptions& options,
                              std::vector<Span>* spans) const override {
    std::vector<TokenId> ids;
    if (spans) spans->clear();
    thread_local PartArena arena;
    arena.clear();
    TextPart text = repair_utf8(input, arena);
    if (options.add_special) {
      for (TokenId id : prefix_ids_) {
        ids.push_back(id);
        if (spans) spans->push_back({0, 0});
      }
    }
    split_added(text, raw_trie_, options, ids, spans, [&](const TextPart& stretch) {
      TextPart normalized = normalizer_ ? normalizer_->apply(stretch, arena) : stretch;
      split_added(normalized, normalized_trie_, options, ids, spans,
                  [&](const TextPart& piece) { tokenize_text(piece, arena, ids, spans); });
    });
    if (options.add_special) {
      for (TokenId id : suffix_ids_) {
        ids.push_back(id);
        if (spans) spans->push_back({input.size(), input.size()});
      }
    }
    return ids;
  }

  std::string decode(std::span<const TokenId> ids, bool skip_special) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (TokenId id : ids) {
      if (skip_special && is_special(id)) continue;
      auto it = added_by_id_.find(id);
      if (it != added_by_id_.end()) {
        tokens.push_back(added_[it->second].decode_form);
      } else if (model_->has_id(id)) {
        tokens.push_back(model_->token_text(id));
      }
    }
    if (!decoder_) {
      std::string out;
      for (size_t k = 0; k < tokens.size(); ++k) out += (k ? " " : "") + tokens[k];
      return out;
    }
    decoder_->decode_chain(tokens);
    std::string out;
    for (const auto& t : tokens) out += t;
    return out;
  }

  std::string token_bytes(TokenId id) const override {
    auto added = added_by_id_.find(id);
    std::string t =
        added != added_by_id_.end() ? added_[added->second].decode_form : token_text(id);
    if (decoder_) decoder_->token_bytes(t);
    return t;
  }

  size_t vocab_size() const override { return vocab_size_; }

  std::string token_text(TokenId id) const override {
    auto it = added_by_id_.find(id);
    if (it != added_by_id_.end()) return added_[it->second].content;
    return model_->token_text(id);
  }

  std::optional<TokenId> token_id(std::string_view text) const override {
    auto it = added_by_content_.find(text);
    if (it != added_by_content_.end()) return added_[it->second].id;
    return model_->token_id(text);
  }

  bool is_special(TokenId id) const override {
    auto it = added_by_id_.find(id);
    return it != added_by_id_.end() && added_[it->second].special;
  }
  std::optional<TokenId> bos_id() const override { return bos_; }
  std::optional<TokenId> eos_id() const override { return eos_; }
  std::string describe() const override { return description_; }
  void set_description(std::string d) { description_ = std::move(d); }

 private:
  void load_model(const json& model, const json& pre_tokenizer) {
    if (!model.is_object())
      throw Error("tokenizer.json has no \"model\" object").in_file(where_).in_field("model");
    std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") {
      throw Error("model type '" + type + "' is not supported by seqit (only BPE)")
          .in_file(where_)
          .in_field("model.type");
    }
    if (!pre_tokenizer.is_null()) pre_tokenizer_ = make_pre_tokenizer(pre_tokenizer, where_);
    BpeOptions o;
    o.byte_level = pre_tokenizer_ && pre_tokenizer_->is_byte_level();
    if (model.contains("unk_token") && model["unk_token"].is_string())
      o.unk_token = model["unk_token"].get<std::string>();
    auto flag = [&](const char* key) {
      return model.contains(key) && model[key].is_boolean() && model[key].get<bool>();
    };
    auto text = [&](const char* key) {
      return model.contains(key) && model[key].is_string() ? model[key].get<std::string>()
                                                           : std::string();
    };
    o.fuse_unk = flag("fuse_unk");
    o.byte_fallback = flag("byte_fallback");
    o.ignore_merges = flag("ignore_merges");
    o.continuing_subword_prefix = text("continuing_subword_prefix");
    o.end_of_word_suffix = text("end_of_word_suffix");
    if (model.contains("dropout") && model["dropout"].is_number() &&
        model["dropout"].get<double>() > 0) {
      throw Error("BPE dropout is not supported by seqit (it makes encoding random)")
          .in_file(where_)
          .in_field("model.dropout");
    }
    if (!model.contains("vocab") || !model["vocab"].is_object()) {
      throw Error("the BPE model has no \"vocab\" object").in_file(where_).in_field("model.vocab");
    }
    std::vector<std::pair<std::string, TokenId>> vocab;
    vocab.reserve(model["vocab"].size());
    for (const auto& [token, id] : model["vocab"].items())
      vocab.emplace_back(token, checked_id(id, "model.vocab", token));
    if (vocab.empty())
      throw Error("the BPE model's vocabulary is empty").in_file(where_).in_field("model.vocab");
    std::vector<std::pair<std::string, std::string>> merges;
    const json& list = model.contains("merges") ? model["merges"] : json::array();
    merges.reserve(list.size());
    for (size_t k = 0; k < list.size(); ++k) {
      const json& m = list[k];
      if (m.is_string()) {
        const std::string& s = m.get_ref<const std::string&>();
        size_t space = s.find(' ', 1);
        if (space == std::string::npos) {
          throw Error("merge " + std::to_string(k) + " ('" + s +
                      "') is not two tokens separated by a space")
              .in_file(where_)
              .in_field("model.merges");
        }
        merges.emplace_back(s.substr(0, space), s.substr(space + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        throw Error("merge " + std::to_string(k) + " is neither \"a b\" nor [\"a\", \"b\"]")
            .in_file(where_)
            .in_field("model.merges");
      }
    }
    model_ = std::make_unique<BpeModel>(std::move(vocab), merges, o, where_);
    vocab_size_ = model_->id_limit();
    description_ = std::string("tokenizer.json (BPE, ") +
                   (o.byte_level      ? "byte-level"
                    : o.byte_fallback ? "SentencePiece-style, byte fallback"
                                      : "character-level") +
                   ", " + std::to_string(model["vocab"].size()) + " tokens)";
  }

  // A token id from the file: an integer in [0, 2^24) (the largest vocabularies have ~256K tokens).
  // A larger one would be truncated to TokenId, or make the id tables allocate without end.
  TokenId checked_id(const json& id, const char* field, const std::string& token) const {
    constexpr int64_t kLimit = int64_t(1) << 24;
    if (!id.is_number_integer())
      throw Error("token '" + token + "' has no integer id").in_file(where_).in_field(field);
    if (id.is_number_unsigned() ? id.get<uint64_t>() >= uint64_t(kLimit)
                                : (id.get<int64_t>() < 0 || id.get<int64_t>() >= kLimit))
      throw Error("token '" + token + "' has id " + id.dump() + ", outside [0, " +
                  std::to_string(kLimit) + ")")
          .in_file(where_)
          .in_field(field);
    return static_cast<TokenId>(id.get<int64_t>());
  }

  void load_added_tokens(const json& list) {
    if (!list.is_array())
      throw Error("\"added_tokens\" must be an array").in_file(where_).in_field("added_tokens");
    for (const auto& t : list) {
      AddedToken a;
      if (!t.is_object() || !t.contains("content") || !t["content"].is_string())
        throw Error("an added token needs a string \"content\"")
            .in_file(where_)
            .in_field("added_tokens");
      a.content = t.at("content").get<std::string>();
      a.id = checked_id(t.contains("id") ? t.at("id") : json(), "added_tokens", a.content);
      a.single_word = t.value("single_word", false);
      a.lstrip = t.value("lstrip", false);
      a.rstrip = t.value("rstrip", false);
      a.normalized = t.value("normalized", !t.value("special", false));
      a.special = t.value("special", false);
      if (a.content.empty()) continue;
      size_t index = added_.size();
      added_by_id_[a.id] = index;
      added_by_content_[a.content] = index;
      vocab_size_ = std::max(vocab_size_, size_t(a.id) + 1);
      added_.push_back(std::move(a));
    }
    // Normalised tokens are matched in their normalised form.
    PartArena arena;
    for (size_t k = 0; k < added_.size(); ++k) {
      AddedToken& a = added_[k];
      a.decode_form = a.content;
      if (!a.normalized) {
        raw_trie_.add(a.content, int32_t(k));
      } else {
        TextPart p{a.content, nullptr, 0};
        a.decode_form = std::string(normalizer_ ? normalizer_->apply(p, arena).text : p.text);
        normalized_trie_.add(a.decode_form, int32_t(k));
      }
    }
  }

  std::vector<TokenId> special_ids(const json& special_tokens, const std::string& name) const {
    if (special_tokens.is_object() && special_tokens.contains(name)) {
      std::vector<TokenId> ids;
      for (const auto& i : special_tokens[name].at("ids")) ids.push_back(i.get<TokenId>());
      return ids;
    }
    if (auto id = token_id(name)) return {*id};
    throw Error("post-processor special token '" + name + "' is not in the vocabulary")
        .in_file(where_)
        .in_field("post_processor");
  }

  void load_post_processor(const json& p) {
    std::string type = p.value("type", std::string());
    if (type == "ByteLevel") return;  // only adjusts offsets
    if (type == "Sequence") {
      for (const auto& step : p.at("processors")) load_post_processor(step);
      return;
    }
    if (type == "TemplateProcessing") {
      prefix_ids_.clear();
      suffix_ids_.clear();
      bool seen_sequence = false;
      for (const auto& piece : p.at("single")) {
        if (piece.contains("Sequence")) {
          seen_sequence = true;
        } else if (piece.contains("SpecialToken")) {
          auto ids = special_ids(p.value("special_tokens", json::object()),
                                 piece["SpecialToken"].at("id").get<std::string>());
          auto& target = seen_sequence ? suffix_ids_ : prefix_ids_;
          target.insert(target.end(), ids.begin(), ids.end());
        }
      }
      return;
    }
    if (type == "RobertaProcessing" || type == "BertProcessing") {
      prefix_ids_ = {p.at("cls").at(1).get<TokenId>()};
      suffix_ids_ = {p.at("sep").at(1).get<TokenId>()};
      return;
    }
    throw Error("post_processor type '" + type + "' is not supported by seqit")
        .in_file(where_)
        .in_field("post_processor");
  }

  void apply_config(const json& config) {
    if (!config.is_object()) return;
    if (config.contains("bos_token")) {
      if (auto id = token_id(content_of(config["bos_token"]))) bos_ = id;
    }
    if (config.contains("eos_token")) {
      if (auto id = token_id(content_of(config["eos_token"]))) eos_ = id;
    }
    // transformers rebuilds the post-processor of these classes from add_bos_token/add_eos_token.
    std::string cls = config.value("tokenizer_class", std::string());
    bool llama_like = cls == "LlamaTokenizer" || cls == "LlamaTokenizerFast" ||
                      cls == "CodeLlamaTokenizer" || cls == "CodeLlamaTokenizerFast" ||
                      cls == "GemmaTokenizer" || cls == "GemmaTokenizerFast";
    if (llama_like && (config.contains("add_bos_token") || config.contains("add_eos_token"))) {
      bool add_bos = config.value("add_bos_token", true),
           add_eos = config.value("add_eos_token", false);
      prefix_ids_.clear();
      suffix_ids_.clear();
      if (add_bos && bos_) prefix_ids_.push_back(*bos_);
      if (add_eos && eos_) suffix_ids_.push_back(*eos_);
    }
  }

  std::optional<TokenId> first_of(std::initializer_list<const char*> names) const {
    for (const char* n : names) {
      if (auto id = token_id(n)) return id;
    }
    return std::nullopt;
  }

  // HF's AddedVocabulary::find_matches on one stretch: calls on_text for the text between tokens
  // and appends the tokens themselves.
  template <typename OnText>
  void split_added(const TextPart& text, const TokenTrie& trie, const EncodeOptions& options,
                   std::vector<TokenId>& ids, std::vector<Span>* spans, OnText&& on_text) const {
    if (trie.empty()) {
      on_text(text);
      return;
    }
    std::string_view s = text.text;
    size_t start_offset = 0, pos = 0;
    while (auto m = trie.find(s, pos)) {
      pos = m->end;
      const AddedToken& a = added_[m->value];
      if (a.special && !options.parse_special) continue;
      size_t start = m->begin, stop = m->end;
      if (a.single_word) {
        bool start_ok = true, stop_ok = true;
        if (start > 0) {
          size_t i = start - 1;
          while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
          size_t j = i;
          start_ok = !is_word_char(next_code_point(s, j));
        }
        if (stop < s.size()) {
          size_t j = stop;
          stop_ok = !is_word_char(next_code_point(s, j));
        }
        if (!start_ok || !stop_ok) continue;
      }
      if (a.lstrip) {
        size_t b = start;
        while (b > 0) {
          size_t i = b - 1;
          while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
          size_t j = i;
          if (!is_unicode_whitespace(next_code_point(s, j))) break;
          b = i;
        }
        start = std::max(b, start_offset);
      }
      if (a.rstrip) {
        while (stop < s.size()) {
          size_t j = stop;
          if (!is_unicode_whitespace(next_code_point(s, j))) break;
          stop = j;
        }
      }
      if (start_offset < start) on_text(text.slice(start_offset, start));
      ids.push_back(a.id);
      if (spans) spans->push_back(text.original(start, stop));
      start_offset = stop;
      pos = std::max(pos, stop);
    }
    if (start_offset < s.size()) on_text(text.slice(start_offset, s.size()));
  }

  void tokenize_text(const TextPart& piece, PartArena& arena, std::vector<TokenId>& ids,
                     std::vector<Span>* spans) const {
    thread_local std::vector<TextPart> parts;
    thread_local std::vector<WordToken> words;
    parts.assign(1, piece);
    if (pre_tokenizer_) pre_tokenizer_->apply(parts, arena);
    for (const TextPart& part : parts) {
      words.clear();
      model_->tokenize(part.text, words);
      for (const WordToken& w : words) {
        ids.push_back(w.id);
        if (spans) spans->push_back(part.original(w.begin, w.end));
      }
    }
  }

  std::string where_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Decoder> decoder_;
  std::vector<AddedToken> added_;
  std::unordered_map<TokenId, size_t> added_by_id_;
  StringMap<size_t> added_by_content_;
  TokenTrie raw_trie_, normalized_trie_;
  std::vector<TokenId> prefix_ids_, suffix_ids_;
  std::optional<TokenId> bos_, eos_;
  size_t vocab_size_ = 0;
  std::string description_;
};

fs::path config_path_for(const fs::path& path) {
  std::string name = path.filename().string();
  const std::string suffix = "tokenizer.json";
  if (name.size() >= suffix.size() &&
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
    return path.parent_path() /
           (name.substr(0, name.size() - suffix.size()) + "tokenizer_config.json");
  }
  return path.parent_path() / "tokenizer_config.json";
}

}  // namespace

std::unique_ptr<Tokenizer> make_hf_tokenizer(const json& doc, const json* config,
                                             const std::string& where,
                                             const std::string& description) {
  try {
    auto tok = std::make_unique<HfTokenizer>(doc, config, where);
    if (!description.empty()) tok->set_description(description);
    return tok;
  } catch (const json::exception& e) {
    throw Error(std::string("malformed tokenizer description: ") + clean_json_error(e.what()))
        .in_file(where);
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const fs::path& path) {
  json doc = read_json_file(path);
  fs::path config_path = config_path_for(path);
  std::error_code ec;
  json config;
  bool have_config = fs::is_regular_file(config_path, ec);
  if (have_config) config = read_json_file(config_path);
  try {
    return std::make_unique<HfTokenizer>(doc, have_config ? &config : nullptr, path.string());
  } catch (const json::exception& e) {
    throw Error(std::string("malformed tokenizer.json: ") + clean_json_error(e.what()))
        .in_file(path.string());
  }
}

}  // namespace seqit::tokenizer
