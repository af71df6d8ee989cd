#include "study/scratch_model.h"

#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "model/random_weights.h"
#include "model/safetensors.h"
#include "synth/world_tokenizer.h"
#include "tokenizer/tokenizer.h"
#include "util/file_io.h"

namespace seqit::study {

model::ModelConfig world_model_config(const ScratchModelSize& size) {
  // The vocabulary size is the tokenizer's, read back from what write_world_tokenizer writes.
  const nlohmann::json doc = nlohmann::json::parse(synth::world_tokenizer_json());
  int64_t vocab = 0;
  for (const auto& [token, id] : doc["model"]["vocab"].items())
    vocab = std::max(vocab, id.get<int64_t>() + 1);
  for (const auto& added : doc["added_tokens"])
    vocab = std::max(vocab, added["id"].get<int64_t>() + 1);

  model::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = vocab;
  c.hidden_size = size.hidden;
  c.intermediate_size = size.intermediate;
  c.num_layers = size.layers;
  c.num_heads = size.heads;
  c.num_kv_heads = size.heads;
  c.head_dim = size.hidden / size.heads;
  c.max_position_embeddings = size.context;
  c.tie_word_embeddings = true;
  c.bos_token_id = synth::kWorldBosId;
  c.eos_token_ids = {synth::kWorldEosId};
  c.validate("world model config");
  return c;
}

void write_scratch_model(const std::filesystem::path& dir, const model::ModelConfig& config,
                         uint64_t seed) {
  std::filesystem::create_directories(dir);
  const model::RandomWeights weights(config, seed);
  model::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (const model::WeightSpec& spec : model::expected_weights(config)) {
    writer.add(spec.name, model::StorageType::f32, spec.shape, [&weights, spec](uint8_t* out) {
      weights.read_f32(spec, reinterpret_cast<float*>(out));
    });
  }
  writer.write(dir / "model.safetensors");
  write_file_atomic(dir / "config.json", model::hf_config_json(config, "float32"));
  const nlohmann::json generation = {{"bos_token_id", synth::kWorldBosId},
                                     {"eos_token_id", synth::kWorldEosId},
                                     {"pad_token_id", synth::kWorldPadId}};
  write_file_atomic(dir / "generation_config.json", generation.dump(2));
  synth::write_world_tokenizer(dir, static_cast<int>(config.max_position_embeddings));
}

}  // namespace seqit::study
