// GGUF vocabularies (tokenizer.ggml.*), so a GGUF model carries its own tokenizer:
//  - model "llama": SentencePiece pieces with scores and types -> PieceVocabTokenizer
//  (SentencePiece
//    BPE by score, as llama.cpp's SPM tokenizer and libsentencepiece compute it);
//  - model "gpt2": byte-level BPE tokens and merges. The pre-tokenizer regex is not stored, only
//  its
//    name (tokenizer.ggml.pre); seqit maps the names whose HF pre-tokenizer it knows to that
//    pre-tokenizer and builds the equivalent tokenizer.json, so the GGUF file encodes exactly as
//    the HF tokenizer it was converted from. Control tokens (type 3) become special added tokens,
//    user-defined ones (type 4) plain added tokens.
#include <nlohmann/json.hpp>

#include "tokenizer/formats.h"
#include "tokenizer/piece_vocab.h"
#include "util/error.h"
#include "util/gguf.h"

namespace seqit::tokenizer {

namespace {
using nlohmann::json;

constexpr const char* kGpt2Regex =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

json split(const char* regex) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", "Isolated"},
          {"invert", false}};
}

// The HF pre-tokenizer for a tokenizer.ggml.pre name; sets ignore_merges for Llama-3 vocabularies.
json pre_tokenizer_for(const std::string& pre, bool* ignore_merges, const std::string& where) {
  json byte_level = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", false}};
  *ignore_merges = false;
  if (pre.empty() || pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre == "mpt" ||
      pre == "olmo" || pre == "jais" || pre == "gpt-neox") {
    return {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"trim_offsets", true},
            {"use_regex", true}};
  }
  if (pre == "starcoder" || pre == "refact" || pre == "smollm" || pre == "codeshell") {
    return {{"type", "Sequence"},
            {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                           split(kGpt2Regex),
                                           byte_level})}};
  }
  if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe" || pre == "dbrx") {
    *ignore_merges = pre != "dbrx";
    return {{"type", "Sequence"},
            {"pretokenizers", json::array({split(kLlama3Regex), byte_level})}};
  }
  if (pre == "qwen2" || pre == "stablelm2" || pre == "deepseek-r1-qwen") {
    return {{"type", "Sequence"}, {"pretokenizers", json::array({split(kQwen2Regex), byte_level})}};
  }
  throw Error("GGUF pre-tokenizer '" + pre + "' is not supported by seqit")
      .in_file(where)
      .in_field("tokenizer.ggml.pre");
}

std::optional<TokenId> optional_id(const gguf::File& f, const char* key) {
  const gguf::Value* v = f.find(key);
  if (!v || !v->is_integer()) return std::nullopt;
  int64_t id = v->as_int();
  if (id < 0) return std::nullopt;
  return TokenId(id);
}

bool optional_bool(const gguf::File& f, const char* key, bool fallback) {
  const gguf::Value* v = f.find(key);
  return v ? f.get_bool(key) : fallback;
}

std::unique_ptr<Tokenizer> load_spm(const gguf::File& f, const std::string& where) {
  PieceVocab v;
  v.path = where;
  for (auto s : f.get_string_array("tokenizer.ggml.tokens")) v.pieces.emplace_back(s);
  const size_t n = v.pieces.size();
  if (f.has("tokenizer.ggml.scores"))
    v.scores = f.get_f32_array("tokenizer.ggml.scores");
  else
    v.scores.assign(n, 0.0f);
  if (f.has("tokenizer.ggml.token_type")) {
    for (int64_t t : f.get_int_array("tokenizer.ggml.token_type")) {
      if (t < 1 || t > 6) {
        throw Error("token type " + std::to_string(t) + " is not a SentencePiece piece type")
            .in_file(where)
            .in_field("tokenizer.ggml.token_type");
      }
      v.types.push_back(PieceType(t));
    }
  } else {
    v.types.assign(n, PieceType::normal);
  }
  v.unk = optional_id(f, "tokenizer.ggml.unknown_token_id");
  v.bos = optional_id(f, "tokenizer.ggml.bos_token_id");
  v.eos = optional_id(f, "tokenizer.ggml.eos_token_id");
  v.add_bos = optional_bool(f, "tokenizer.ggml.add_bos_token", true);
  v.add_eos = optional_bool(f, "tokenizer.ggml.add_eos_token", false);
  v.add_space_prefix = optional_bool(f, "tokenizer.ggml.add_space_prefix", true);
  v.description = "GGUF vocabulary (llama/SentencePiece BPE, " + std::to_string(n) + " pieces)";
  return std::make_unique<PieceVocabTokenizer>(std::move(v));
}

std::unique_ptr<Tokenizer> load_bpe(const gguf::File& f, const std::string& where) {
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  std::vector<int64_t> types;
  if (f.has("tokenizer.ggml.token_type")) types = f.get_int_array("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() != tokens.size()) {
    throw Error("tokenizer.ggml.token_type has " + std::to_string(types.size()) + " entries for " +
                std::to_string(tokens.size()) + " tokens")
        .in_file(where);
  }
  std::string pre =
      f.has("tokenizer.ggml.pre") ? f.get_string("tokenizer.ggml.pre") : std::string();
  bool ignore_merges = false;
  json doc;
  doc["pre_tokenizer"] = pre_tokenizer_for(pre, &ignore_merges, where);
  json vocab = json::object();
  json added = json::array();
  for (size_t id = 0; id < tokens.size(); ++id) {
    std::string t(tokens[id]);
    int64_t type = types.empty() ? 1 : types[id];
    if (type == 3 || type == 4) {
      added.push_back({{"id", id},
                       {"content", t},
                       {"single_word", false},
                       {"lstrip", false},
                       {"rstrip", false},
                       {"normalized", false},
                       {"special", type == 3}});
    }
    vocab[t] = id;
  }
  json merges = json::array();
  if (f.has("tokenizer.ggml.merges")) {
    for (auto m : f.get_string_array("tokenizer.ggml.merges")) merges.push_back(std::string(m));
  }
  doc["model"] = {{"type", "BPE"},
                  {"vocab", std::move(vocab)},
                  {"merges", std::move(merges)},
                  {"ignore_merges", ignore_merges},
                  {"byte_fallback", false},
                  {"fuse_unk", false}};
  doc["added_tokens"] = std::move(added);
  doc["decoder"] = {{"type", "ByteLevel"}};
  auto bos = optional_id(f, "tokenizer.ggml.bos_token_id");
  auto eos = optional_id(f, "tokenizer.ggml.eos_token_id");
  json single = json::array();
  auto token_name = [&](TokenId id) { return std::string(tokens.at(size_t(id))); };
  json special_tokens = json::object();
  if (optional_bool(f, "tokenizer.ggml.add_bos_token", false) && bos) {
    single.push_back({{"SpecialToken", {{"id", token_name(*bos)}, {"type_id", 0}}}});
    special_tokens[token_name(*bos)] = {
        {"id", token_name(*bos)}, {"ids", {*bos}}, {"tokens", {token_name(*bos)}}};
  }
  single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
  if (optional_bool(f, "tokenizer.ggml.add_eos_token", false) && eos) {
    single.push_back({{"SpecialToken", {{"id", token_name(*eos)}, {"type_id", 0}}}});
    special_tokens[token_name(*eos)] = {
        {"id", token_name(*eos)}, {"ids", {*eos}}, {"tokens", {token_name(*eos)}}};
  }
  doc["post_processor"] = {
      {"type", "TemplateProcessing"}, {"single", single}, {"special_tokens", special_tokens}};
  json config = json::object();
  if (bos && size_t(*bos) < tokens.size()) config["bos_token"] = token_name(*bos);
  if (eos && size_t(*eos) < tokens.size()) config["eos_token"] = token_name(*eos);
  std::string description = "GGUF vocabulary (gpt2/byte-level BPE, pre '" +
                            (pre.empty() ? std::string("default") : pre) + "', " +
                            std::to_string(tokens.size()) + " tokens)";
  return make_hf_tokenizer(doc, &config, where, description);
}
}  // namespace

std::unique_ptr<Tokenizer> load_gguf_tokenizer(const std::filesystem::path& path) {
  auto file = gguf::File::open(path);
  const std::string where = path.string();
  if (!file->has("tokenizer.ggml.model")) {
    throw Error("this GGUF file has no vocabulary (tokenizer.ggml.model is missing)")
        .in_file(where);
  }
  std::string model = file->get_string("tokenizer.ggml.model");
  if (model == "llama") return load_spm(*file, where);
  if (model == "gpt2") return load_bpe(*file, where);
  throw Error("GGUF tokenizer model '" + model +
              "' is not supported by seqit (only llama and gpt2)")
      .in_file(where)
      .in_field("tokenizer.ggml.model");
}

}  // namespace seqit::tokenizer
