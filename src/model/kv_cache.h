// The keys and values one sequence has produced so far, for every layer: what lets generation feed
// one new token per step instead of the whole text. Grows on demand (capacity doubles, copying), up
// to a limit; can be cut back (to reuse a prompt prefix or roll back).
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "tensor/tensor.h"

namespace seqit::model {

class KvCache {
 public:
  // `max_length`: positions this cache may ever hold (the model's context, or less).
  KvCache(const ModelConfig& config, int64_t max_length, tensor::DType dtype = tensor::DType::f32);

  int64_t length() const { return length_; }
  int64_t capacity() const { return capacity_; }
  int64_t max_length() const { return max_length_; }
  // Makes room for `length` positions; throws seqit::Error beyond max_length().
  void reserve(int64_t length);
  // Forgets positions >= length (length <= length()).
  void truncate(int64_t length);
  // Marks `n` more positions as filled (after the forward pass wrote them).
  void advance(int64_t n);

  // [capacity, Hkv, D] for layer l (a view of head-major storage [Hkv, capacity, D]); rows
  // [0, length) are valid.
  const tensor::Tensor& keys(int64_t layer) const { return keys_[layer]; }
  const tensor::Tensor& values(int64_t layer) const { return values_[layer]; }
  size_t bytes() const;

 private:
  int64_t layers_, kv_heads_, head_dim_;
  int64_t length_ = 0, capacity_ = 0, max_length_;
  tensor::DType dtype_;
  std::vector<tensor::Tensor> keys_, values_;
};

}  // namespace seqit::model
