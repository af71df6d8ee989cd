#include "model/storage.h"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#include "tensor/dtype.h"
#include "util/error.h"

namespace seqit::model {

std::string_view storage_type_name(StorageType type) {
  switch (type) {
    case StorageType::f32:
      return "F32";
    case StorageType::f16:
      return "F16";
    case StorageType::bf16:
      return "BF16";
    case StorageType::f64:
      return "F64";
    case StorageType::i8:
      return "I8";
    case StorageType::u8:
      return "U8";
    case StorageType::i16:
      return "I16";
    case StorageType::i32:
      return "I32";
    case StorageType::i64:
      return "I64";
    case StorageType::boolean:
      return "BOOL";
    case StorageType::q8_0:
      return "Q8_0";
  }
  return "?";
}

std::optional<StorageType> parse_storage_type(std::string_view name) {
  for (StorageType t : {StorageType::f32, StorageType::f16, StorageType::bf16, StorageType::f64,
                        StorageType::i8, StorageType::u8, StorageType::i16, StorageType::i32,
                        StorageType::i64, StorageType::boolean, StorageType::q8_0}) {
    if (storage_type_name(t) == name) return t;
  }
  return std::nullopt;
}

std::optional<uint64_t> storage_bytes(StorageType type, int64_t elements) {
  if (elements < 0) return std::nullopt;
  auto n = static_cast<uint64_t>(elements);
  if (type == StorageType::q8_0) {
    if (n % 32 != 0) return std::nullopt;
    return n / 32 * 34;
  }
  uint64_t size = 0;
  switch (type) {
    case StorageType::f64:
    case StorageType::i64:
      size = 8;
      break;
    case StorageType::f32:
    case StorageType::i32:
      size = 4;
      break;
    case StorageType::f16:
    case StorageType::bf16:
    case StorageType::i16:
      size = 2;
      break;
    default:
      size = 1;
      break;
  }
  if (n > std::numeric_limits<uint64_t>::max() / size) return std::nullopt;
  return n * size;
}

bool is_weight_type(StorageType type) {
  return type == StorageType::f32 || type == StorageType::f16 || type == StorageType::bf16 ||
         type == StorageType::f64 || type == StorageType::q8_0;
}

int64_t StoredTensor::elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

// The scalar codecs are tensor/dtype.h's (one implementation of the rounding rules); these
// overloads take and return the raw bits that file formats store.
float f16_to_f32(uint16_t bits) {
  return tensor::f16_to_f32(tensor::f16{bits});
}
uint16_t f32_to_f16(float value) {
  return tensor::f32_to_f16(value).bits;
}
float bf16_to_f32(uint16_t bits) {
  return tensor::bf16_to_f32(tensor::bf16{bits});
}
uint16_t f32_to_bf16(float value) {
  return tensor::f32_to_bf16(value).bits;
}

void decode_to_f32(StorageType type, const uint8_t* src, int64_t count, float* dst) {
  switch (type) {
    case StorageType::f32:
      std::memcpy(dst, src, static_cast<size_t>(count) * 4);
      return;
    case StorageType::f16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    case StorageType::bf16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    case StorageType::f64:
      for (int64_t i = 0; i < count; ++i) {
        double d;
        std::memcpy(&d, src + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      return;
    case StorageType::q8_0:
      // Blocks of 32: an f16 scale, then 32 int8 quants; value = scale * quant.
      for (int64_t b = 0; b < count / 32; ++b) {
        const uint8_t* block = src + 34 * b;
        uint16_t h;
        std::memcpy(&h, block, 2);
        float scale = f16_to_f32(h);
        for (int k = 0; k < 32; ++k) dst[32 * b + k] = scale * static_cast<int8_t>(block[2 + k]);
      }
      return;
    default:
      throw Error(fmt::format("cannot decode {} values as weights", storage_type_name(type)));
  }
}

void encode_from_f32(StorageType type, const float* src, int64_t count, uint8_t* dst) {
  switch (type) {
    case StorageType::f32:
      std::memcpy(dst, src, static_cast<size_t>(count) * 4);
      return;
    case StorageType::f16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h = f32_to_f16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case StorageType::bf16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t h = f32_to_bf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    default:
      throw Error(fmt::format("cannot encode weights as {} (supported: F32, F16, BF16)",
                              storage_type_name(type)));
  }
}

}  // namespace seqit::model
