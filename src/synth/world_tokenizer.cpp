#include "synth/world_tokenizer.h"

#include <array>
#include <nlohmann/json.hpp>
#include <set>

#include "synth/vocabulary.h"
#include "util/file_io.h"

namespace seqit::synth {

namespace {

using json = nlohmann::ordered_json;

constexpr const char* kSpecialTokens[] = {"<pad>",      "<s>",      "</s>",
                                          "<|system|>", "<|user|>", "<|assistant|>"};

// UTF-8 of one code point below 0x800.
std::string utf8(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256 + n.
const std::array<std::string, 256>& byte_chars() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      t[static_cast<size_t>(b)] = utf8(printable ? static_cast<char32_t>(b) : next++);
    }
    return t;
  }();
  return table;
}

std::string byte_level(std::string_view text) {
  std::string out;
  for (unsigned char c : text) out += byte_chars()[c];
  return out;
}

}  // namespace

std::string world_tokenizer_json() {
  json vocab = json::object();
  std::set<std::string> seen;
  int next_id = static_cast<int>(std::size(kSpecialTokens));
  auto add = [&](const std::string& token) {
    if (seen.insert(token).second) vocab[token] = next_id++;
  };
  for (const std::string& b : byte_chars()) add(b);
  for (const std::string& word : world_vocabulary()) {
    add(byte_level(word));
    if (word != "\n") add(byte_level(" " + word));
  }

  json added = json::array();
  for (size_t id = 0; id < std::size(kSpecialTokens); ++id) {
    added.push_back({{"id", id},
                     {"content", kSpecialTokens[id]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  const json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  const json seq_a = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  const json seq_b = {{"Sequence", {{"id", "B"}, {"type_id", 1}}}};
  json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"},
                                        {"pattern", {{"Regex", R"( ?[^\s,.:;?]+| ?[,.:;?]|\s)"}}},
                                        {"behavior", "Isolated"},
                                        {"invert", false}},
                                       {{"type", "ByteLevel"},
                                        {"add_prefix_space", false},
                                        {"trim_offsets", true},
                                        {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", json::array({bos, seq_a})},
        {"pair", json::array({bos, seq_a, bos, seq_b})},
        {"special_tokens",
         {{"<s>", {{"id", "<s>"}, {"ids", json::array({kWorldBosId})}, {"tokens", {"<s>"}}}}}}}},
      {"decoder",
       {{"type", "ByteLevel"},
        {"add_prefix_space", true},
        {"trim_offsets", true},
        {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", true},
        {"vocab", vocab},
        {"merges", json::array()}}}};
  return doc.dump();
}

std::string world_tokenizer_config_json(int model_max_length) {
  json added = json::object();
  for (size_t id = 0; id < std::size(kSpecialTokens); ++id) {
    added[std::to_string(id)] = {{"content", kSpecialTokens[id]}, {"lstrip", false},
                                 {"normalized", false},           {"rstrip", false},
                                 {"single_word", false},          {"special", true}};
  }
  const json config = {{"added_tokens_decoder", added},
                       {"bos_token", "<s>"},
                       {"eos_token", "</s>"},
                       {"pad_token", "<pad>"},
                       {"clean_up_tokenization_spaces", false},
                       {"model_max_length", model_max_length},
                       {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return config.dump(2);
}

void write_world_tokenizer(const std::filesystem::path& dir, int model_max_length) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir / "tokenizer.json", world_tokenizer_json());
  write_file_atomic(dir / "tokenizer_config.json", world_tokenizer_config_json(model_max_length));
}

}  // namespace seqit::synth
