// How tensors lie in weight files (safetensors, GGUF, llama2.c): element types as the formats name
// them, a zero-copy view of one stored tensor, and decoding/encoding between the float storage
// types and fp32. These are file-format concerns; compute dtypes belong to tensor/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace seqit::model {

enum class StorageType { f32, f16, bf16, f64, i8, u8, i16, i32, i64, boolean, q8_0 };

// Safetensors spelling ("F32", "BF16", ...; "Q8_0" for the GGUF block type).
std::string_view storage_type_name(StorageType type);
std::optional<StorageType> parse_storage_type(std::string_view name);
// Bytes that `elements` values take (Q8_0: blocks of 32 values in 34 bytes; `elements` must be a
// multiple of 32). Returns nullopt on overflow or a partial Q8_0 block.
std::optional<uint64_t> storage_bytes(StorageType type, int64_t elements);
// Types the model loader can turn into weights.
bool is_weight_type(StorageType type);

// One tensor as stored in a file; `data` points into a memory map owned by whoever produced it.
struct StoredTensor {
  std::string name;
  StorageType type = StorageType::f32;
  std::vector<int64_t> shape;  // outermost first (PyTorch order): a Linear weight is (out, in)
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
  std::string file;  // for errors

  int64_t elements() const;
};

std::string shape_string(const std::vector<int64_t>& shape);  // "[32000, 4096]"

// fp32 <-> half/bfloat16 (round to nearest even on the way down; NaN stays NaN).
float f16_to_f32(uint16_t bits);
uint16_t f32_to_f16(float value);
float bf16_to_f32(uint16_t bits);
uint16_t f32_to_bf16(float value);

// Decodes `count` values of a weight type (f32, f16, bf16, f64, q8_0) from `src` into `dst`.
void decode_to_f32(StorageType type, const uint8_t* src, int64_t count, float* dst);
// Encodes `count` fp32 values as f32, f16 or bf16 into `dst` (storage_bytes(type, count) bytes).
void encode_from_f32(StorageType type, const float* src, int64_t count, uint8_t* dst);

}  // namespace seqit::model
