// Writer for GGUF v3 files (llama.cpp's container): typed metadata key-values, then tensor
// descriptions, then tensor data aligned to `general.alignment` (32). Written atomically.
// The reader lives in util/gguf.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/gguf.h"

namespace seqit::model {

class GgufWriter {
 public:
  using Fill = std::function<void(uint8_t* out)>;

  void set_string(const std::string& key, std::string_view value);
  void set_u32(const std::string& key, uint32_t value);
  void set_i32(const std::string& key, int32_t value);
  void set_u64(const std::string& key, uint64_t value);
  void set_f32(const std::string& key, float value);
  void set_bool(const std::string& key, bool value);
  void set_string_array(const std::string& key, const std::vector<std::string>& values);
  void set_f32_array(const std::string& key, const std::vector<float>& values);
  void set_i32_array(const std::string& key, const std::vector<int32_t>& values);
  // Copies a value read from another GGUF file (any type, arrays included).
  void set_value(const std::string& key, const gguf::Value& value);

  // `dims` in ggml order (dims[0] is the row length); `fill` writes the tensor's bytes.
  void add_tensor(const std::string& name, std::vector<int64_t> dims, gguf::TensorType type,
                  Fill fill);
  void write(const std::filesystem::path& path) const;

 private:
  void set_raw(const std::string& key, std::string encoded);
  struct Entry {
    std::string name;
    std::vector<int64_t> dims;
    gguf::TensorType type;
    uint64_t nbytes;
    Fill fill;
  };
  std::vector<std::pair<std::string, std::string>> kv_;  // key -> encoded (type + value)
  std::vector<Entry> tensors_;
};

}  // namespace seqit::model
