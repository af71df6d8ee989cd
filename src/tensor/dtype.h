// Element types of tensors, and exact scalar conversions between the 16-bit floats and f32.
// Bulk (vectorised) conversions live in tensor.h (Tensor::to, convert()).
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace seqit::tensor {

enum class DType : uint8_t { f32, bf16, f16, i32, i64 };

// Where a tensor's bytes live. Only cpu is implemented; cuda is the seam for a later backend.
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType dtype);
std::string_view dtype_name(DType dtype);  // "f32", "bf16", ...
std::string_view device_name(Device device);
inline bool is_floating(DType dtype) {
  return dtype == DType::f32 || dtype == DType::bf16 || dtype == DType::f16;
}

// Storage types of the 16-bit floats: raw bits, so they are trivially copyable and never convert
// implicitly (a silent conversion in a hot loop is a bug we want the compiler to catch).
struct bf16 {
  uint16_t bits;
};
struct f16 {
  uint16_t bits;
};

// bfloat16 = the top 16 bits of an IEEE f32. f32 -> bf16 rounds to nearest, ties to even; NaN stays
// a (quiet) NaN; values beyond bf16's range round to infinity as IEEE requires.
inline float bf16_to_f32(bf16 h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h.bits) << 16);
}
inline bf16 f32_to_bf16(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return bf16{static_cast<uint16_t>((u >> 16) | 0x0040u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return bf16{static_cast<uint16_t>(u >> 16)};
}

// IEEE binary16 (1 sign, 5 exponent, 10 mantissa bits), with subnormals; round to nearest even.
inline float f16_to_f32(f16 h) {
  const uint32_t sign = static_cast<uint32_t>(h.bits & 0x8000u) << 16;
  const uint32_t exponent = (h.bits >> 10) & 0x1fu;
  uint32_t mantissa = h.bits & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0)
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
  if (mantissa == 0) return std::bit_cast<float>(sign);
  // Subnormal: value = mantissa * 2^-24, exact in f32.
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return sign ? -magnitude : magnitude;
}
inline f16 f32_to_f16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return f16{static_cast<uint16_t>(sign | 0x7e00u)};   // NaN
  if (abs >= 0x477ff000u) return f16{static_cast<uint16_t>(sign | 0x7c00u)};  // rounds to >= 65536
  if (abs >= 0x38800000u) {  // normal half (>= 2^-14)
    const uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
    return f16{static_cast<uint16_t>(sign | ((rounded - (112u << 23)) >> 13))};
  }
  // Subnormal half or zero: the value in units of 2^-24, rounded to nearest even. Adding 0.5f and
  // letting the f32 adder round does exactly that (the sum's ulp is 2^-24 at this magnitude).
  const float scaled = std::bit_cast<float>(abs) + 0.5f;
  const uint32_t bits = std::bit_cast<uint32_t>(scaled) - std::bit_cast<uint32_t>(0.5f);
  return f16{static_cast<uint16_t>(sign | bits)};
}

// The C++ type that stores each dtype (for Tensor::data<T>()).
template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::f32;
}
template <>
constexpr DType dtype_of<bf16>() {
  return DType::bf16;
}
template <>
constexpr DType dtype_of<f16>() {
  return DType::f16;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::i32;
}
template <>
constexpr DType dtype_of<int64_t>() {
  return DType::i64;
}

}  // namespace seqit::tensor
