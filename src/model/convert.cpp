#include "model/convert.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>

#include "model/gguf_writer.h"
#include "model/safetensors.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/gguf.h"
#include "util/json_io.h"
#include "util/log.h"
#include "util/mapped_file.h"

namespace seqit::model {
namespace fs = std::filesystem;

namespace {

void check_export_type(StorageType type) {
  if (type != StorageType::f32 && type != StorageType::f16 && type != StorageType::bf16) {
    throw Error(fmt::format("cannot write weights as {} (choose f32, f16 or bf16)",
                            storage_type_name(type)));
  }
}

std::string torch_dtype_name(StorageType type) {
  return type == StorageType::bf16 ? "bfloat16" : type == StorageType::f16 ? "float16" : "float32";
}

bool is_gguf(const fs::path& path) {
  if (fs::is_directory(path)) return false;
  MappedFile m(path);
  return m.size() >= 4 && std::memcmp(m.data(), "GGUF", 4) == 0;
}

// A llama2.c tokenizer.bin: int32 max_token_length, then per token: f32 score, int32 length, bytes.
struct Llama2cVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
};
std::optional<Llama2cVocab> read_llama2c_vocab(const fs::path& path) {
  MappedFile m(path);
  const uint8_t* p = m.data();
  size_t size = m.size(), pos = 4;
  if (size < 4) return std::nullopt;
  Llama2cVocab v;
  while (pos < size) {
    if (size - pos < 8) return std::nullopt;
    float score;
    int32_t len;
    std::memcpy(&score, p + pos, 4);
    std::memcpy(&len, p + pos + 4, 4);
    pos += 8;
    if (len < 0 || static_cast<size_t>(len) > size - pos) return std::nullopt;
    v.tokens.emplace_back(reinterpret_cast<const char*>(p + pos), static_cast<size_t>(len));
    v.scores.push_back(score);
    pos += static_cast<size_t>(len);
  }
  if (v.tokens.empty()) return std::nullopt;
  return v;
}

// Writes tokenizer.ggml.* for the tokenizer at `path`: copied from a GGUF file, or rebuilt as a
// SentencePiece ("llama") vocabulary from a llama2.c tokenizer.bin.
void add_gguf_tokenizer(GgufWriter& w, const fs::path& path, int64_t vocab_size) {
  if (is_gguf(path)) {
    auto src = gguf::File::open(path);
    int copied = 0;
    for (const std::string& key : src->keys()) {
      if (key.rfind("tokenizer.", 0) == 0) {
        w.set_value(key, *src->find(key));
        ++copied;
      }
    }
    if (copied == 0) log::warn("{}: no tokenizer.* metadata to copy", path.string());
    return;
  }
  if (fs::is_directory(path) || path.extension() == ".json" || path.extension() == ".model") {
    log::warn(
        "{}: writing an HF/SentencePiece tokenizer into GGUF metadata is not supported; the GGUF "
        "file has no "
        "vocabulary (pass --tokenizer when loading it)",
        path.string());
    return;
  }
  auto vocab = read_llama2c_vocab(path);
  if (!vocab)
    throw Error(
        "not a tokenizer seqit can write into GGUF (expected GGUF or llama2.c tokenizer.bin)")
        .in_file(path.string());
  if (static_cast<int64_t>(vocab->tokens.size()) != vocab_size) {
    throw Error(fmt::format("tokenizer has {} tokens but the model's vocabulary has {}",
                            vocab->tokens.size(), vocab_size))
        .in_file(path.string());
  }
  // llama2.c writes SentencePiece pieces with U+2581 turned into a space, and BOS/EOS as "\n<s>\n".
  std::vector<std::string> tokens;
  std::vector<int32_t> types;  // llama.cpp token types: 1 normal, 2 unknown, 3 control, 6 byte
  for (size_t i = 0; i < vocab->tokens.size(); ++i) {
    std::string t = vocab->tokens[i];
    int32_t type = 1;
    if (t == "<unk>") {
      type = 2;
    } else if (t == "\n<s>\n" || t == "\n</s>\n") {
      t = t.substr(1, t.size() - 2);
      type = 3;
    } else if (t.size() == 6 && t.rfind("<0x", 0) == 0 && t.back() == '>') {
      type = 6;
    } else {
      std::string piece;
      for (char ch : t) piece += ch == ' ' ? std::string("\xe2\x96\x81") : std::string(1, ch);
      t = piece;
    }
    tokens.push_back(std::move(t));
    types.push_back(type);
  }
  w.set_string("tokenizer.ggml.model", "llama");
  w.set_string_array("tokenizer.ggml.tokens", tokens);
  w.set_f32_array("tokenizer.ggml.scores", vocab->scores);
  w.set_i32_array("tokenizer.ggml.token_type", types);
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] == "<unk>")
      w.set_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(i));
    if (tokens[i] == "<s>") w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(i));
    if (tokens[i] == "</s>") w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(i));
  }
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_bool("tokenizer.ggml.add_eos_token", false);
}

void copy_file_atomic(const fs::path& from, const fs::path& to) {
  write_file_atomic(to, read_file(from));
}

bool is_rope_projection(const std::string& name, bool* is_key) {
  *is_key = name.find(".self_attn.k_proj.") != std::string::npos;
  return *is_key || name.find(".self_attn.q_proj.") != std::string::npos;
}

// The tokenizer files that go with an HF folder (see write_hf_model).
void copy_tokenizer_files(const fs::path& tok, const fs::path& out) {
  if (fs::is_directory(tok) || tok.filename() == "tokenizer.json") {
    fs::path folder = fs::is_directory(tok) ? tok : tok.parent_path();
    for (const char* name : {"tokenizer.json", "tokenizer_config.json", "tokenizer.model",
                             "special_tokens_map.json", "generation_config.json"}) {
      if (fs::exists(folder / name) && !fs::equivalent(folder, out))
        copy_file_atomic(folder / name, out / name);
    }
  } else if (is_gguf(tok)) {
    log::warn(
        "{}: a GGUF vocabulary is not exported to HF tokenizer files; pass --tokenizer when "
        "loading {}",
        tok.string(), out.string());
  } else if (tok.extension() == ".model") {
    copy_file_atomic(tok, out / "tokenizer.model");
  } else {
    if (!read_llama2c_vocab(tok))
      throw Error("not a tokenizer file seqit can export").in_file(tok.string());
    copy_file_atomic(tok, out / "tokenizer.bin");
  }
}

}  // namespace

void write_hf_model(const WeightSource& source, const fs::path& out, const ExportOptions& options) {
  check_export_type(options.type);
  const ModelConfig& config = source.config();
  if (!config.rope_freq_factors.empty()) {
    throw Error(
        "this model's RoPE frequencies come from a GGUF rope_freqs tensor, which config.json "
        "cannot express")
        .in_file(out.string());
  }
  fs::create_directories(out);
  // Shards of at most max_shard_bytes (a single weight larger than that gets a shard of its own).
  const std::vector<WeightSpec> specs = expected_weights(config);
  std::vector<std::vector<WeightSpec>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const WeightSpec& spec : specs) {
    const uint64_t bytes = *storage_bytes(options.type, spec.elements());
    if (shard_bytes > 0 && shard_bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(spec);
    shard_bytes += bytes;
    total_bytes += bytes;
  }
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string file = shards.size() == 1 ? "model.safetensors"
                                                : fmt::format("model-{:05d}-of-{:05d}.safetensors",
                                                              i + 1, shards.size());
    SafetensorsWriter writer;
    writer.set_metadata("format", "pt");
    for (const WeightSpec& spec : shards[i]) {
      weight_map[spec.name] = file;
      writer.add(spec.name, options.type, spec.shape,
                 [&source, spec, type = options.type](uint8_t* dst) {
                   std::vector<float> values(static_cast<size_t>(spec.elements()));
                   source.read_f32(spec, values.data());
                   encode_from_f32(type, values.data(), spec.elements(), dst);
                 });
    }
    writer.write(out / file);
  }
  if (shards.size() > 1) {
    const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}},
                                  {"weight_map", weight_map}};
    write_file_atomic(out / "model.safetensors.index.json", index.dump(2) + "\n");
  } else if (fs::exists(out / "model.safetensors.index.json")) {
    fs::remove(out / "model.safetensors.index.json");  // a stale index would shadow the new file
  }
  write_file_atomic(out / "config.json", hf_config_json(config, torch_dtype_name(options.type)));
  nlohmann::json generation = {{"_from_model_config", true}};
  if (config.bos_token_id) generation["bos_token_id"] = *config.bos_token_id;
  if (config.eos_token_ids.size() == 1) generation["eos_token_id"] = config.eos_token_ids[0];
  if (config.eos_token_ids.size() > 1) generation["eos_token_id"] = config.eos_token_ids;
  write_file_atomic(out / "generation_config.json", generation.dump(2) + "\n");
  if (options.tokenizer) copy_tokenizer_files(*options.tokenizer, out);
  if (!options.chat_template.empty()) {
    write_file_atomic(out / "chat_template.jinja", options.chat_template);
    if (fs::exists(out / "tokenizer_config.json")) {
      nlohmann::json tc = nlohmann::json::parse(read_file(out / "tokenizer_config.json"));
      tc["chat_template"] = options.chat_template;
      write_file_atomic(out / "tokenizer_config.json", tc.dump(2) + "\n");
    }
  }
}

void write_gguf_model(const WeightSource& source, const fs::path& out,
                      const ExportOptions& options) {
  check_export_type(options.type);
  const ModelConfig& c = source.config();
  if (c.architecture == "qwen2" ? c.o_bias : (c.qkv_bias != c.o_bias)) {
    throw Error("GGUF export: this combination of attention biases has no llama.cpp architecture")
        .in_file(out.string());
  }
  const std::string arch = c.architecture == "qwen2" ? "qwen2" : "llama";
  // llama.cpp rotates "llama" q/k interleaved; "qwen2" uses NeoX (half) rotation.
  const RopeLayout layout = arch == "llama" ? RopeLayout::interleaved : RopeLayout::half;
  GgufWriter w;
  w.set_string("general.architecture", arch);
  w.set_string("general.name", options.name);
  w.set_u32("general.file_type", options.type == StorageType::f32   ? 0
                                 : options.type == StorageType::f16 ? 1
                                                                    : 32);
  auto key = [&](const char* suffix) { return arch + "." + suffix; };
  w.set_u32(key("context_length"), static_cast<uint32_t>(c.max_position_embeddings));
  w.set_u32(key("embedding_length"), static_cast<uint32_t>(c.hidden_size));
  w.set_u32(key("block_count"), static_cast<uint32_t>(c.num_layers));
  w.set_u32(key("feed_forward_length"), static_cast<uint32_t>(c.intermediate_size));
  w.set_u32(key("rope.dimension_count"), static_cast<uint32_t>(c.head_dim));
  w.set_u32(key("attention.head_count"), static_cast<uint32_t>(c.num_heads));
  w.set_u32(key("attention.head_count_kv"), static_cast<uint32_t>(c.num_kv_heads));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    w.set_u32(key("attention.key_length"), static_cast<uint32_t>(c.head_dim));
    w.set_u32(key("attention.value_length"), static_cast<uint32_t>(c.head_dim));
  }
  w.set_f32(key("attention.layer_norm_rms_epsilon"), static_cast<float>(c.rms_norm_eps));
  w.set_f32(key("rope.freq_base"), static_cast<float>(c.rope_theta));
  w.set_u32(key("vocab_size"), static_cast<uint32_t>(c.vocab_size));
  if (c.rope_scaling.type == "linear") {
    w.set_string(key("rope.scaling.type"), "linear");
    w.set_f32(key("rope.scaling.factor"), static_cast<float>(c.rope_scaling.factor));
  }
  if (options.tokenizer) add_gguf_tokenizer(w, *options.tokenizer, c.vocab_size);
  if (c.bos_token_id)
    w.set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(*c.bos_token_id));
  if (!c.eos_token_ids.empty())
    w.set_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(c.eos_token_ids[0]));
  // GGUF has one more end token: the end of turn (read back into eos_token_ids by
  // config_from_gguf).
  if (c.eos_token_ids.size() > 1)
    w.set_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(c.eos_token_ids[1]));

  // llama3 scaling travels as llama.cpp does it: per-frequency divisors in rope_freqs.weight.
  if (c.rope_scaling.type == "llama3" || !c.rope_freq_factors.empty()) {
    ModelConfig unscaled = c;
    unscaled.rope_scaling = RopeScaling{};
    unscaled.rope_freq_factors.clear();
    std::vector<double> base = unscaled.rope_inv_freq(), scaled = c.rope_inv_freq();
    std::vector<float> factors(base.size());
    for (size_t i = 0; i < base.size(); ++i) factors[i] = static_cast<float>(base[i] / scaled[i]);
    w.add_tensor("rope_freqs.weight", {static_cast<int64_t>(factors.size())}, gguf::TensorType::f32,
                 [factors](uint8_t* dst) { std::memcpy(dst, factors.data(), factors.size() * 4); });
  }
  for (const WeightSpec& spec : expected_weights(c)) {
    bool is_vector = spec.shape.size() == 1;
    StorageType type = is_vector ? StorageType::f32 : options.type;
    gguf::TensorType gtype = type == StorageType::f32   ? gguf::TensorType::f32
                             : type == StorageType::f16 ? gguf::TensorType::f16
                                                        : gguf::TensorType::bf16;
    std::vector<int64_t> dims(spec.shape.rbegin(), spec.shape.rend());
    w.add_tensor(
        gguf_tensor_name(spec.name), dims, gtype, [&source, &c, spec, type, layout](uint8_t* dst) {
          std::vector<float> values(static_cast<size_t>(spec.elements()));
          source.read_f32(spec, values.data());
          bool is_key = false;
          if (layout == RopeLayout::interleaved && is_rope_projection(spec.name, &is_key)) {
            std::vector<float> permuted(values.size());
            int64_t row_elems = spec.shape.size() == 2 ? spec.shape[1] : 1;
            permute_rope_rows(values.data(), permuted.data(), is_key ? c.num_kv_heads : c.num_heads,
                              c.head_dim, row_elems, RopeLayout::half, RopeLayout::interleaved);
            values.swap(permuted);
          }
          encode_from_f32(type, values.data(), spec.elements(), dst);
        });
  }
  w.write(out);
}

void convert_model(const fs::path& in, const fs::path& out, ExportFormat to,
                   std::optional<StorageType> type, std::optional<fs::path> tokenizer) {
  auto checkpoint = Checkpoint::open(in);
  ExportOptions options;
  options.type = type.value_or(checkpoint->preferred_type());
  options.tokenizer = tokenizer ? tokenizer : checkpoint->tokenizer_path();
  options.name = in.filename().string();
  if (checkpoint->gguf_file() && checkpoint->gguf_file()->has("general.name")) {
    options.name = checkpoint->gguf_file()->get_string("general.name");
  }
  if (to == ExportFormat::hf) {
    write_hf_model(*checkpoint, out, options);
  } else {
    write_gguf_model(*checkpoint, out, options);
  }
}

}  // namespace seqit::model
