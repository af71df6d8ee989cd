// Workloads shared by the benchmarks: the 155.7M-parameter Llama shape the issues measure, and
// deterministic pseudo-random tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "tensor/tensor.h"

namespace seqit::bench {

// hidden 1024, 8 layers, 16 heads, 4 kv heads (head 64), ffn 2816, vocab 32000, untied head.
inline model::ModelConfig llama_155m_config() {
  model::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 32000;
  c.hidden_size = 1024;
  c.intermediate_size = 2816;
  c.num_layers = 8;
  c.num_heads = 16;
  c.num_kv_heads = 4;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  c.tie_word_embeddings = false;
  return c;
}

// Uniform values in [-scale/2, scale/2) from a linear congruential generator seeded by `seed`.
inline tensor::Tensor random_tensor(const tensor::Shape& shape, tensor::DType dtype, float scale,
                                    uint32_t seed) {
  std::vector<float> v(static_cast<size_t>(tensor::shape_numel(shape)));
  uint32_t x = seed * 2654435761u + 1;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = (static_cast<float>(x >> 8) / 16777216.0f - 0.5f) * scale;
  }
  return tensor::Tensor::from_floats(v, shape, dtype);
}

}  // namespace seqit::bench
