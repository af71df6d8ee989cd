#include "util/gguf.h"

#include <fmt/format.h>

#include <cstring>

#include "util/error.h"

namespace seqit::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian

// Bounds-checked little-endian cursor over the mapped bytes.
class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& path)
      : p_(data), size_(size), path_(path) {}

  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const char* what) {
    uint64_t len = read<uint64_t>(what);
    need(len, what);
    std::string_view s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  const uint8_t* skip(uint64_t bytes, const char* what) {
    need(bytes, what);
    const uint8_t* at = p_ + pos_;
    pos_ += bytes;
    return at;
  }
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(fmt::format("{} (at byte {})", msg, pos_)).in_file(path_);
  }

 private:
  void need(uint64_t bytes, const char* what) const {
    if (bytes > size_ || pos_ > size_ - bytes) {
      fail(fmt::format("truncated GGUF file: {} needs {} more bytes, {} left", what, bytes,
                       size_ - pos_));
    }
  }
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  const std::string& path_;
};

size_t scalar_size(ValueType t) {
  switch (t) {
    case ValueType::u8:
    case ValueType::i8:
    case ValueType::boolean:
      return 1;
    case ValueType::u16:
    case ValueType::i16:
      return 2;
    case ValueType::u32:
    case ValueType::i32:
    case ValueType::f32:
      return 4;
    case ValueType::u64:
    case ValueType::i64:
    case ValueType::f64:
      return 8;
    default:
      return 0;
  }
}

void read_scalar(Cursor& c, ValueType t, Value& v) {
  switch (t) {
    case ValueType::u8:
      v.u = c.read<uint8_t>("u8");
      v.i = static_cast<int64_t>(v.u);
      break;
    case ValueType::i8:
      v.i = c.read<int8_t>("i8");
      break;
    case ValueType::u16:
      v.u = c.read<uint16_t>("u16");
      v.i = static_cast<int64_t>(v.u);
      break;
    case ValueType::i16:
      v.i = c.read<int16_t>("i16");
      break;
    case ValueType::u32:
      v.u = c.read<uint32_t>("u32");
      v.i = static_cast<int64_t>(v.u);
      break;
    case ValueType::i32:
      v.i = c.read<int32_t>("i32");
      break;
    case ValueType::u64:
      v.u = c.read<uint64_t>("u64");
      v.i = static_cast<int64_t>(v.u);
      break;
    case ValueType::i64:
      v.i = c.read<int64_t>("i64");
      break;
    case ValueType::f32:
      v.f = c.read<float>("f32");
      break;
    case ValueType::f64:
      v.f = c.read<double>("f64");
      break;
    case ValueType::boolean:
      v.b = c.read<uint8_t>("bool") != 0;
      v.i = v.b;
      break;
    default:
      break;
  }
  if (t == ValueType::i8 || t == ValueType::i16 || t == ValueType::i32 || t == ValueType::i64) {
    v.u = static_cast<uint64_t>(v.i);
  }
}

void read_value(Cursor& c, ValueType t, Value& v, const std::string& key, int depth) {
  v.type = t;
  if (scalar_size(t) > 0) {
    read_scalar(c, t, v);
  } else if (t == ValueType::string) {
    v.str = c.read_string("string value");
  } else if (t == ValueType::array) {
    if (depth > 4) c.fail(fmt::format("key '{}': arrays nested too deeply", key));
    auto et = static_cast<ValueType>(c.read<uint32_t>("array element type"));
    v.elem_type = et;
    v.count = c.read<uint64_t>("array length");
    if (size_t sz = scalar_size(et); sz > 0) {
      if (v.count > (uint64_t{1} << 40))
        c.fail(fmt::format("key '{}': implausible array length {}", key, v.count));
      v.raw = c.skip(v.count * sz, "array data");
    } else if (et == ValueType::string || et == ValueType::array) {
      // Each element takes at least its 8-byte length (a nested array also its 4-byte type): a
      // count the rest of the file cannot hold is an error, not a giant allocation.
      const uint64_t min_element = et == ValueType::string ? 8 : 12;
      if (v.count > c.remaining() / min_element)
        c.fail(fmt::format("key '{}': array of {} elements, but only {} bytes are left", key,
                           v.count, c.remaining()));
      if (et == ValueType::string) {
        v.strings.reserve(v.count);
        for (uint64_t k = 0; k < v.count; ++k) v.strings.push_back(c.read_string("array string"));
      } else {
        v.items.resize(v.count);
        for (uint64_t k = 0; k < v.count; ++k) read_value(c, et, v.items[k], key, depth + 1);
      }
    } else {
      c.fail(
          fmt::format("key '{}': unknown array element type {}", key, static_cast<uint32_t>(et)));
    }
  } else {
    c.fail(fmt::format("key '{}': unknown value type {}", key, static_cast<uint32_t>(t)));
  }
}

}  // namespace

std::string_view type_name(ValueType t) {
  static constexpr std::string_view names[] = {"u8",  "i8",  "u16",  "i16",    "u32",
                                               "i32", "f32", "bool", "string", "array",
                                               "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < std::size(names) ? names[i] : "unknown";
}

bool tensor_type_layout(uint32_t type, int64_t* block_elems, int64_t* block_bytes) {
  int64_t e = 1, b = 0;
  switch (static_cast<TensorType>(type)) {
    case TensorType::f32:
      b = 4;
      break;
    case TensorType::f16:
      b = 2;
      break;
    case TensorType::bf16:
      b = 2;
      break;
    case TensorType::f64:
      b = 8;
      break;
    case TensorType::i8:
      b = 1;
      break;
    case TensorType::i16:
      b = 2;
      break;
    case TensorType::i32:
      b = 4;
      break;
    case TensorType::i64:
      b = 8;
      break;
    case TensorType::q4_0:
      e = 32;
      b = 18;
      break;
    case TensorType::q4_1:
      e = 32;
      b = 20;
      break;
    case TensorType::q5_0:
      e = 32;
      b = 22;
      break;
    case TensorType::q5_1:
      e = 32;
      b = 24;
      break;
    case TensorType::q8_0:
      e = 32;
      b = 34;
      break;
    case TensorType::q8_1:
      e = 32;
      b = 36;
      break;
    case TensorType::q2_k:
      e = 256;
      b = 84;
      break;
    case TensorType::q3_k:
      e = 256;
      b = 110;
      break;
    case TensorType::q4_k:
      e = 256;
      b = 144;
      break;
    case TensorType::q5_k:
      e = 256;
      b = 176;
      break;
    case TensorType::q6_k:
      e = 256;
      b = 210;
      break;
    case TensorType::q8_k:
      e = 256;
      b = 292;
      break;
    default:
      return false;
  }
  *block_elems = e;
  *block_bytes = b;
  return true;
}

std::string tensor_type_name(uint32_t type) {
  switch (static_cast<TensorType>(type)) {
    case TensorType::f32:
      return "F32";
    case TensorType::f16:
      return "F16";
    case TensorType::bf16:
      return "BF16";
    case TensorType::f64:
      return "F64";
    case TensorType::i8:
      return "I8";
    case TensorType::i16:
      return "I16";
    case TensorType::i32:
      return "I32";
    case TensorType::i64:
      return "I64";
    case TensorType::q4_0:
      return "Q4_0";
    case TensorType::q4_1:
      return "Q4_1";
    case TensorType::q5_0:
      return "Q5_0";
    case TensorType::q5_1:
      return "Q5_1";
    case TensorType::q8_0:
      return "Q8_0";
    case TensorType::q8_1:
      return "Q8_1";
    case TensorType::q2_k:
      return "Q2_K";
    case TensorType::q3_k:
      return "Q3_K";
    case TensorType::q4_k:
      return "Q4_K";
    case TensorType::q5_k:
      return "Q5_K";
    case TensorType::q6_k:
      return "Q6_K";
    case TensorType::q8_k:
      return "Q8_K";
  }
  return fmt::format("type#{}", type);
}

bool Value::is_integer() const {
  switch (type) {
    case ValueType::u8:
    case ValueType::i8:
    case ValueType::u16:
    case ValueType::i16:
    case ValueType::u32:
    case ValueType::i32:
    case ValueType::u64:
    case ValueType::i64:
    case ValueType::boolean:
      return true;
    default:
      return false;
  }
}

int64_t Value::as_int() const {
  if (!is_integer()) throw Error(fmt::format("expected an integer, found {}", type_name(type)));
  return i;
}

double Value::as_double() const {
  if (type == ValueType::f32 || type == ValueType::f64) return f;
  if (is_integer()) return static_cast<double>(i);
  throw Error(fmt::format("expected a number, found {}", type_name(type)));
}

int64_t TensorInfo::elements() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

std::unique_ptr<File> File::open(const std::filesystem::path& path) {
  std::unique_ptr<File> f(new File());
  f->map_ = MappedFile(path);
  const std::string& p = f->map_.path();
  Cursor c(f->map_.data(), f->map_.size(), p);
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) c.fail("not a GGUF file (bad magic)");
  f->version_ = c.read<uint32_t>("version");
  if (f->version_ != 2 && f->version_ != 3)
    c.fail(fmt::format("unsupported GGUF version {} (supported: 2, 3)", f->version_));
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("key-value count");
  if (n_kv > (1u << 24) || n_tensors > (1u << 24)) c.fail("implausible key or tensor count");

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key(c.read_string("key"));
    auto t = static_cast<ValueType>(c.read<uint32_t>("value type"));
    Value v;
    read_value(c, t, v, key, 0);
    if (!f->kv_.emplace(key, std::move(v)).second) c.fail(fmt::format("duplicate key '{}'", key));
    f->key_order_.push_back(std::move(key));
  }
  if (const Value* a = f->find("general.alignment")) {
    int64_t al = a->is_integer() ? a->as_int() : 0;
    if (al <= 0 || (al & (al - 1)) != 0) c.fail("general.alignment must be a power of two");
    f->alignment_ = static_cast<uint64_t>(al);
  }

  f->tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    TensorInfo ti;
    ti.name = std::string(c.read_string("tensor name"));
    uint32_t n_dims = c.read<uint32_t>("tensor rank");
    if (n_dims == 0 || n_dims > 8) c.fail(fmt::format("tensor '{}': bad rank {}", ti.name, n_dims));
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      auto dim = c.read<uint64_t>("tensor dimension");
      if (dim == 0 || dim > (uint64_t{1} << 40))
        c.fail(fmt::format("tensor '{}': bad dimension {}", ti.name, dim));
      // The product must fit too (each dimension alone may: 2^40 x 2^40 does not).
      if (elements > (uint64_t{1} << 50) / dim)
        c.fail(fmt::format("tensor '{}': more than 2^50 elements", ti.name));
      elements *= dim;
      ti.dims.push_back(static_cast<int64_t>(dim));
    }
    ti.type = c.read<uint32_t>("tensor type");
    ti.offset = c.read<uint64_t>("tensor offset");
    int64_t be, bb;
    if (!tensor_type_layout(ti.type, &be, &bb)) {
      c.fail(fmt::format("tensor '{}': unknown tensor type {}", ti.name, ti.type));
    }
    if (ti.dims[0] % be != 0) {
      c.fail(fmt::format("tensor '{}': row length {} is not a multiple of the {} block size {}",
                         ti.name, ti.dims[0], tensor_type_name(ti.type), be));
    }
    ti.nbytes = static_cast<uint64_t>(ti.elements() / be * bb);
    f->tensor_index_[ti.name] = f->tensors_.size();
    f->tensors_.push_back(std::move(ti));
  }
  uint64_t data_start = (c.pos() + f->alignment_ - 1) / f->alignment_ * f->alignment_;
  for (TensorInfo& ti : f->tensors_) {
    uint64_t begin = data_start + ti.offset;
    if (ti.offset % f->alignment_ != 0) {
      throw Error(fmt::format("tensor '{}': offset {} is not aligned to {}", ti.name, ti.offset,
                              f->alignment_))
          .in_file(p);
    }
    if (begin > f->map_.size() || ti.nbytes > f->map_.size() - begin) {
      throw Error(
          fmt::format(
              "truncated GGUF file: tensor '{}' ({} bytes at {}) extends past the end ({} bytes)",
              ti.name, ti.nbytes, begin, f->map_.size()))
          .in_file(p);
    }
    ti.data = f->map_.data() + begin;
  }
  return f;
}

const Value* File::find(std::string_view key) const {
  auto it = kv_.find(std::string(key));
  return it == kv_.end() ? nullptr : &it->second;
}

const Value& File::get(std::string_view key) const {
  const Value* v = find(key);
  if (!v) throw Error(fmt::format("GGUF key '{}' is missing", key)).in_file(path());
  return *v;
}

std::string File::get_string(std::string_view key) const {
  const Value& v = get(key);
  if (v.type != ValueType::string) {
    throw Error(fmt::format("GGUF key '{}' is {}, expected string", key, type_name(v.type)))
        .in_file(path());
  }
  return std::string(v.str);
}

int64_t File::get_int(std::string_view key) const {
  const Value& v = get(key);
  if (!v.is_integer()) {
    throw Error(fmt::format("GGUF key '{}' is {}, expected an integer", key, type_name(v.type)))
        .in_file(path());
  }
  return v.i;
}

double File::get_double(std::string_view key) const {
  const Value& v = get(key);
  if (v.type != ValueType::f32 && v.type != ValueType::f64 && !v.is_integer()) {
    throw Error(fmt::format("GGUF key '{}' is {}, expected a number", key, type_name(v.type)))
        .in_file(path());
  }
  return v.as_double();
}

bool File::get_bool(std::string_view key) const {
  const Value& v = get(key);
  if (v.type != ValueType::boolean) {
    throw Error(fmt::format("GGUF key '{}' is {}, expected bool", key, type_name(v.type)))
        .in_file(path());
  }
  return v.b;
}

std::vector<std::string_view> File::get_string_array(std::string_view key) const {
  const Value& v = get(key);
  if (v.type != ValueType::array || v.elem_type != ValueType::string) {
    throw Error(fmt::format("GGUF key '{}' is not an array of strings", key)).in_file(path());
  }
  return v.strings;
}

std::vector<float> File::get_f32_array(std::string_view key) const {
  const Value& v = get(key);
  if (v.type != ValueType::array ||
      (v.elem_type != ValueType::f32 && v.elem_type != ValueType::f64)) {
    throw Error(fmt::format("GGUF key '{}' is not an array of floats", key)).in_file(path());
  }
  std::vector<float> out(v.count);
  for (uint64_t k = 0; k < v.count; ++k) {
    if (v.elem_type == ValueType::f32) {
      std::memcpy(&out[k], v.raw + 4 * k, 4);
    } else {
      double d;
      std::memcpy(&d, v.raw + 8 * k, 8);
      out[k] = static_cast<float>(d);
    }
  }
  return out;
}

std::vector<int64_t> File::get_int_array(std::string_view key) const {
  const Value& v = get(key);
  size_t sz = v.type == ValueType::array ? scalar_size(v.elem_type) : 0;
  if (sz == 0 || v.elem_type == ValueType::f32 || v.elem_type == ValueType::f64) {
    throw Error(fmt::format("GGUF key '{}' is not an array of integers", key)).in_file(path());
  }
  std::vector<int64_t> out(v.count);
  bool is_signed = v.elem_type == ValueType::i8 || v.elem_type == ValueType::i16 ||
                   v.elem_type == ValueType::i32 || v.elem_type == ValueType::i64;
  for (uint64_t k = 0; k < v.count; ++k) {
    const uint8_t* at = v.raw + sz * k;
    uint64_t u = 0;
    std::memcpy(&u, at, sz);  // little-endian host
    if (is_signed && sz < 8 && (u >> (8 * sz - 1)) & 1) u |= ~uint64_t{0} << (8 * sz);
    out[k] = static_cast<int64_t>(u);
  }
  return out;
}

const TensorInfo* File::tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace seqit::gguf
