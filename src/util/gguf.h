// Reader for GGUF files (llama.cpp's model/vocabulary container, versions 2 and 3): metadata
// key-values and tensor descriptions, with every offset and size checked against the file. Tensor
// bytes stay in the memory map. Used by tokenizer/ (tokenizer.ggml.*) and model/ (weights).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/mapped_file.h"

namespace seqit::gguf {

enum class ValueType : uint32_t {
  u8 = 0,
  i8 = 1,
  u16 = 2,
  i16 = 3,
  u32 = 4,
  i32 = 5,
  f32 = 6,
  boolean = 7,
  string = 8,
  array = 9,
  u64 = 10,
  i64 = 11,
  f64 = 12,
};
std::string_view type_name(ValueType t);

// ggml tensor types seqit knows the block layout of.
enum class TensorType : uint32_t {
  f32 = 0,
  f16 = 1,
  q4_0 = 2,
  q4_1 = 3,
  q5_0 = 6,
  q5_1 = 7,
  q8_0 = 8,
  q8_1 = 9,
  q2_k = 10,
  q3_k = 11,
  q4_k = 12,
  q5_k = 13,
  q6_k = 14,
  q8_k = 15,
  i8 = 24,
  i16 = 25,
  i32 = 26,
  i64 = 27,
  f64 = 28,
  bf16 = 30,
};
// Elements per block and bytes per block; false for a type id seqit does not know.
bool tensor_type_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes);
std::string tensor_type_name(uint32_t type);

struct Value {
  ValueType type = ValueType::u8;
  // Scalars (integers widen to 64 bits; f32 widens to double).
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string_view str;  // points into the map
  // Arrays: element type and count; scalar elements stay in the map (`raw`), strings and nested
  // arrays are decoded.
  ValueType elem_type = ValueType::u8;
  uint64_t count = 0;
  const uint8_t* raw = nullptr;
  std::vector<std::string_view> strings;
  std::vector<Value> items;  // nested arrays only

  bool is_integer() const;
  int64_t as_int() const;    // any integer or bool; throws otherwise
  double as_double() const;  // any number
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // ggml order: dims[0] is the fastest-varying (row length)
  uint32_t type = 0;
  uint64_t offset = 0;  // relative to the start of the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the map
  int64_t elements() const;
};

class File {
 public:
  // Maps and parses `path`. Throws seqit::Error naming the file, the key or tensor, and the byte
  // offset for a bad magic, unsupported version, truncation, an unknown value type or tensor type,
  // or a tensor that lies outside the file.
  static std::unique_ptr<File> open(const std::filesystem::path& path);

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& path() const { return map_.path(); }

  bool has(std::string_view key) const { return find(key) != nullptr; }
  const Value* find(std::string_view key) const;
  // Typed lookups; throw (naming file and key) when the key is missing or has another type.
  const Value& get(std::string_view key) const;
  std::string get_string(std::string_view key) const;
  int64_t get_int(std::string_view key) const;
  double get_double(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  std::vector<std::string_view> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int64_t> get_int_array(std::string_view key) const;
  // Keys in file order.
  const std::vector<std::string>& keys() const { return key_order_; }

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* tensor(std::string_view name) const;

 private:
  File() = default;
  MappedFile map_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  std::unordered_map<std::string, Value> kv_;
  std::vector<std::string> key_order_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace seqit::gguf
