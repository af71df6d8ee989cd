#include "model/gguf_writer.h"

#include <fmt/format.h>

#include <cstring>

#include "util/error.h"
#include "util/file_io.h"

namespace seqit::model {
namespace {
constexpr uint64_t kAlignment = 32;

template <typename T>
void put(std::string& out, T value) {
  out.append(reinterpret_cast<const char*>(&value), sizeof(T));
}
void put_string(std::string& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.append(s);
}
void put_type(std::string& out, gguf::ValueType t) {
  put<uint32_t>(out, static_cast<uint32_t>(t));
}

size_t scalar_size(gguf::ValueType t) {
  using V = gguf::ValueType;
  switch (t) {
    case V::u8:
    case V::i8:
    case V::boolean:
      return 1;
    case V::u16:
    case V::i16:
      return 2;
    case V::u32:
    case V::i32:
    case V::f32:
      return 4;
    case V::u64:
    case V::i64:
    case V::f64:
      return 8;
    default:
      return 0;
  }
}

// Encodes a value without its type tag (the caller writes the tag).
void encode_value(std::string& out, const gguf::Value& v) {
  using V = gguf::ValueType;
  switch (v.type) {
    case V::u8:
      put<uint8_t>(out, static_cast<uint8_t>(v.u));
      break;
    case V::i8:
      put<int8_t>(out, static_cast<int8_t>(v.i));
      break;
    case V::u16:
      put<uint16_t>(out, static_cast<uint16_t>(v.u));
      break;
    case V::i16:
      put<int16_t>(out, static_cast<int16_t>(v.i));
      break;
    case V::u32:
      put<uint32_t>(out, static_cast<uint32_t>(v.u));
      break;
    case V::i32:
      put<int32_t>(out, static_cast<int32_t>(v.i));
      break;
    case V::u64:
      put<uint64_t>(out, v.u);
      break;
    case V::i64:
      put<int64_t>(out, v.i);
      break;
    case V::f32:
      put<float>(out, static_cast<float>(v.f));
      break;
    case V::f64:
      put<double>(out, v.f);
      break;
    case V::boolean:
      put<uint8_t>(out, v.b ? 1 : 0);
      break;
    case V::string:
      put_string(out, v.str);
      break;
    case V::array:
      put_type(out, v.elem_type);
      put<uint64_t>(out, v.count);
      if (size_t sz = scalar_size(v.elem_type); sz > 0) {
        out.append(reinterpret_cast<const char*>(v.raw), sz * v.count);
      } else if (v.elem_type == V::string) {
        for (std::string_view s : v.strings) put_string(out, s);
      } else {
        for (const gguf::Value& item : v.items) encode_value(out, item);
      }
      break;
  }
}
}  // namespace

void GgufWriter::set_raw(const std::string& key, std::string encoded) {
  if (key == "general.alignment")
    return;  // the writer always aligns to kAlignment and says so itself
  for (auto& [k, v] : kv_) {
    if (k == key) {
      v = std::move(encoded);
      return;
    }
  }
  kv_.emplace_back(key, std::move(encoded));
}

void GgufWriter::set_string(const std::string& key, std::string_view value) {
  std::string e;
  put_type(e, gguf::ValueType::string);
  put_string(e, value);
  set_raw(key, std::move(e));
}
void GgufWriter::set_u32(const std::string& key, uint32_t value) {
  std::string e;
  put_type(e, gguf::ValueType::u32);
  put(e, value);
  set_raw(key, std::move(e));
}
void GgufWriter::set_i32(const std::string& key, int32_t value) {
  std::string e;
  put_type(e, gguf::ValueType::i32);
  put(e, value);
  set_raw(key, std::move(e));
}
void GgufWriter::set_u64(const std::string& key, uint64_t value) {
  std::string e;
  put_type(e, gguf::ValueType::u64);
  put(e, value);
  set_raw(key, std::move(e));
}
void GgufWriter::set_f32(const std::string& key, float value) {
  std::string e;
  put_type(e, gguf::ValueType::f32);
  put(e, value);
  set_raw(key, std::move(e));
}
void GgufWriter::set_bool(const std::string& key, bool value) {
  std::string e;
  put_type(e, gguf::ValueType::boolean);
  put<uint8_t>(e, value ? 1 : 0);
  set_raw(key, std::move(e));
}
void GgufWriter::set_string_array(const std::string& key, const std::vector<std::string>& values) {
  std::string e;
  put_type(e, gguf::ValueType::array);
  put_type(e, gguf::ValueType::string);
  put<uint64_t>(e, values.size());
  for (const auto& s : values) put_string(e, s);
  set_raw(key, std::move(e));
}
void GgufWriter::set_f32_array(const std::string& key, const std::vector<float>& values) {
  std::string e;
  put_type(e, gguf::ValueType::array);
  put_type(e, gguf::ValueType::f32);
  put<uint64_t>(e, values.size());
  for (float v : values) put(e, v);
  set_raw(key, std::move(e));
}
void GgufWriter::set_i32_array(const std::string& key, const std::vector<int32_t>& values) {
  std::string e;
  put_type(e, gguf::ValueType::array);
  put_type(e, gguf::ValueType::i32);
  put<uint64_t>(e, values.size());
  for (int32_t v : values) put(e, v);
  set_raw(key, std::move(e));
}
void GgufWriter::set_value(const std::string& key, const gguf::Value& value) {
  std::string e;
  put_type(e, value.type);
  encode_value(e, value);
  set_raw(key, std::move(e));
}

void GgufWriter::add_tensor(const std::string& name, std::vector<int64_t> dims,
                            gguf::TensorType type, Fill fill) {
  int64_t block_elems, block_bytes;
  if (!gguf::tensor_type_layout(static_cast<uint32_t>(type), &block_elems, &block_bytes) ||
      dims.empty() || dims[0] % block_elems != 0) {
    throw Error(fmt::format("tensor '{}': cannot store as GGUF {}", name,
                            gguf::tensor_type_name(static_cast<uint32_t>(type))));
  }
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  for (const Entry& e : tensors_) {
    if (e.name == name) throw Error(fmt::format("tensor '{}' added twice", name));
  }
  tensors_.push_back({name, std::move(dims), type,
                      static_cast<uint64_t>(n / block_elems * block_bytes), std::move(fill)});
}

void GgufWriter::write(const std::filesystem::path& path) const {
  std::string head;
  put<uint32_t>(head, 0x46554747);  // "GGUF"
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size() + 1);
  for (const auto& [k, v] : kv_) {
    put_string(head, k);
    head += v;
  }
  put_string(head, "general.alignment");
  put_type(head, gguf::ValueType::u32);
  put<uint32_t>(head, kAlignment);
  uint64_t offset = 0;
  std::vector<uint64_t> offsets;
  for (const Entry& e : tensors_) {
    put_string(head, e.name);
    put<uint32_t>(head, static_cast<uint32_t>(e.dims.size()));
    for (int64_t d : e.dims) put<uint64_t>(head, static_cast<uint64_t>(d));
    put<uint32_t>(head, static_cast<uint32_t>(e.type));
    put<uint64_t>(head, offset);
    offsets.push_back(offset);
    offset = (offset + e.nbytes + kAlignment - 1) / kAlignment * kAlignment;
  }
  head.append((kAlignment - head.size() % kAlignment) % kAlignment, '\0');
  AtomicFileWriter out(path);
  out.write(head);
  std::vector<uint8_t> buffer;
  for (const Entry& e : tensors_) {
    uint64_t padded = (e.nbytes + kAlignment - 1) / kAlignment * kAlignment;
    buffer.assign(padded, 0);
    e.fill(buffer.data());
    out.write(std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()));
  }
  out.commit();
}

}  // namespace seqit::model
