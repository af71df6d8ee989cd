// A model to train from scratch on the synthetic world: a Hugging Face folder (config.json,
// model.safetensors with seeded random weights, the world tokenizer) that `seqit train` and every
// other model reader take like any downloaded model. The trainer itself only continues checkpoints;
// this is how a study run starts from nothing.
#pragma once

#include <cstdint>
#include <filesystem>

#include "model/config.h"

namespace seqit::study {

struct ScratchModelSize {
  int64_t hidden = 64;
  int64_t layers = 4;
  int64_t heads = 4;  // head_dim = hidden / heads; as many KV heads as heads
  int64_t intermediate = 192;
  int64_t context = 256;
};

// A Llama config for the world tokenizer's vocabulary (tied embeddings, BOS/EOS of the tokenizer).
model::ModelConfig world_model_config(const ScratchModelSize& size = {});

// Writes config.json, model.safetensors (f32; N(0, 0.02^2) linear and embedding weights, norms
// near 1, each weight seeded by (seed, name): model::RandomWeights), generation_config.json and the
// world tokenizer (tokenizer.json, tokenizer_config.json) into `dir`.
void write_scratch_model(const std::filesystem::path& dir, const model::ModelConfig& config,
                         uint64_t seed);

}  // namespace seqit::study
