// Tensor: a strided view (shape, strides in elements, dtype, device) into reference-counted
// storage.
//
// Storage is either owned (64-byte aligned, from Tensor::empty/zeros) or borrowed: bytes that
// someone else owns — a memory-mapped weights file, a buffer — kept alive by a shared owner handle
// for as long as any view exists. Views (narrow/slice/select/transpose/permute/view) never copy;
// contiguous(), clone(), to(dtype) and reshape() of a non-viewable layout do.
//
// There is no autograd: every op in ops.h has an explicit forward and backward, and the model code
// owns its activation and gradient buffers (llm.c style).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tensor/dtype.h"
#include "util/error.h"

namespace seqit::tensor {

using Shape = std::vector<int64_t>;
std::string shape_string(const Shape& shape);  // "[2, 3, 4]"
int64_t shape_numel(const Shape& shape);

// Bytes plus whoever keeps them alive. Shared by every view of them.
class Storage {
 public:
  // Fresh, uninitialised, 64-byte aligned bytes on `device`. Host buffers of 4 MiB and more are
  // pages mapped for them, or a freed such block of about their size kept for reuse (at most 64 MiB
  // of them are kept; the rest go back to the system); smaller ones come from malloc.
  static std::shared_ptr<Storage> allocate(size_t nbytes, Device device = Device::cpu);
  // Zeroed host bytes that become memory only where written (an anonymous mapping, page by page,
  // huge pages off): for a large buffer of which a pass writes a few rows, such as an embedding's
  // gradient. An unwritten page reads as zeros, but reading it may take memory (kernels differ:
  // some map the shared zero page on a read fault, others a fresh page), so readers that only want
  // its values ask written_pages() and skip the rest. Tensor::zero() over it hands the written
  // pages back instead of writing zeros.
  static std::shared_ptr<Storage> allocate_on_demand(size_t nbytes);
  // Bytes owned elsewhere; `owner` (may be null for static memory) is held until the last view
  // dies.
  static std::shared_ptr<Storage> borrow(void* data, size_t nbytes,
                                         std::shared_ptr<const void> owner, bool writable,
                                         Device device = Device::cpu);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  std::byte* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }
  bool writable() const { return writable_; }
  bool owned() const { return owned_; }
  bool on_demand() const { return on_demand_; }
  bool mapped() const { return mapped_ > 0; }  // pages of its own
  bool fresh() const { return fresh_; }        // newly mapped: reads as zeros

  // Which pages of on-demand storage may hold something other than zeros: those written since it
  // was made or last zeroed (present or swapped out, per /proc/self/pagemap; a page only read
  // counts where the kernel mapped the zero page for it, which costs nothing). For other storage,
  // or where the page map cannot be read, every page counts as written.
  class WrittenPages {
   public:
    // The bytes [p, p + n) (inside the storage) as they read: `p` itself when every page under
    // them may hold data, null when none does (they are all zeros), otherwise `buffer` (n bytes)
    // holding the written pages' bytes and zeros for the rest. Never touches an unwritten page.
    const std::byte* read(const std::byte* p, size_t n, std::byte* buffer) const;

   private:
    friend class Storage;
    const std::byte* base_ = nullptr;
    size_t page_ = 0;
    std::vector<uint8_t> written_;  // per page from base_; empty: all written
  };
  WrittenPages written_pages() const;

 private:
  Storage() = default;
  std::byte* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_ = Device::cpu;
  bool writable_ = true;
  bool owned_ = true;
  bool on_demand_ = false;  // allocate_on_demand: zero() hands pages back
  size_t mapped_ = 0;       // > 0: data_ is an anonymous mapping of this many bytes
  bool fresh_ = false;
  std::shared_ptr<const void> owner_;
};

class Tensor {
 public:
  Tensor() = default;  // undefined: no storage (defined() == false)

  // ---- creation ----
  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::cpu);
  static Tensor zeros(const Shape& shape, DType dtype, Device device = Device::cpu);
  // Zeros on the host whose memory is taken only where written (Storage::allocate_on_demand): the
  // gradient of a large embedding, of which a step touches the rows of the tokens it saw. zero()
  // on the whole tensor gives the written pages back.
  static Tensor zeros_on_demand(const Shape& shape, DType dtype);
  static Tensor full(const Shape& shape, double value, DType dtype);
  // Copies of host values (tests, small tables). The value count must equal the shape's numel.
  static Tensor from_floats(std::span<const float> values, const Shape& shape,
                            DType dtype = DType::f32);
  static Tensor from_ints(std::span<const int32_t> values, const Shape& shape);
  // A contiguous view of borrowed bytes (no copy). `owner` keeps them alive (e.g. a
  // shared_ptr<MappedFile>). Read-only bytes (a memory map) give a tensor whose mutable accessors
  // throw.
  static Tensor borrow(const void* data, const Shape& shape, DType dtype,
                       std::shared_ptr<const void> owner);
  static Tensor borrow_mutable(void* data, const Shape& shape, DType dtype,
                               std::shared_ptr<const void> owner);

  // ---- properties ----
  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu; }
  int dim() const { return static_cast<int>(shape_.size()); }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }  // in elements
  int64_t size(int d) const;                         // d < 0 counts from the end
  int64_t stride(int d) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t element_size() const { return dtype_size(dtype_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * element_size(); }
  bool is_contiguous() const;  // row-major, no gaps
  bool is_writable() const { return storage_ && storage_->writable(); }
  bool shares_storage(const Tensor& other) const { return storage_ && storage_ == other.storage_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t byte_offset() const { return offset_; }
  std::string describe() const;  // "bf16[16, 64] strides [128, 1]"

  // ---- raw access: pointer to element [0, ..., 0]; T must match dtype() ----
  template <typename T>
  T* data() {
    check_access(dtype_of<T>(), true);
    return reinterpret_cast<T*>(storage_->data() + offset_);
  }
  template <typename T>
  const T* data() const {
    check_access(dtype_of<T>(), false);
    return reinterpret_cast<const T*>(storage_->data() + offset_);
  }
  void* raw_data();
  const void* raw_data() const;
  // Writable pointer through a const handle: ops take their outputs as `const Tensor&` (a Tensor is
  // a handle; views such as cache.narrow(...) can be passed directly). Still checks dtype and that
  // the storage is writable.
  template <typename T>
  T* mutable_data() const {
    check_access(dtype_of<T>(), true);
    return reinterpret_cast<T*>(storage_->data() + offset_);
  }

  // Element access by index, converting through double: slow, for tests and debugging only.
  double get(std::initializer_list<int64_t> index) const;
  void set(std::initializer_list<int64_t> index, double value);

  // ---- views (share storage) ----
  Tensor narrow(int dim, int64_t start, int64_t length) const;
  Tensor slice(int dim, int64_t begin, int64_t end) const {
    return narrow(dim, begin, end - begin);
  }
  Tensor select(int dim, int64_t index) const;  // removes `dim`
  Tensor transpose(int dim0, int dim1) const;
  Tensor permute(const std::vector<int>& order) const;
  Tensor unsqueeze(int dim) const;
  Tensor squeeze(int dim) const;  // that dim must have size 1
  // Same elements, new shape (one entry may be -1). Throws when the strides cannot express it
  // without copying; reshape() copies in that case.
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  // [rows, last]: every leading dim folded into rows (a view; throws if the layout forbids it).
  Tensor rows_view() const;

  // ---- copies ----
  Tensor contiguous() const;  // *this when already contiguous
  Tensor clone() const;       // always a fresh contiguous copy
  // Converted contiguous copy; *this when dtype already matches and it is contiguous.
  Tensor to(DType dtype) const;
  // Element-wise copy from `src` of the same shape, converting dtype, any strides on either side.
  void copy_from(const Tensor& src);
  void fill(double value);
  // fill(0); on on-demand storage (zeros_on_demand) the whole pages it covers are handed back.
  void zero();

 private:
  void check_access(DType want, bool mutate) const;
  // A fresh contiguous tensor of `shape` on storage from `allocate` (empty, zeros_on_demand).
  static Tensor contiguous_on(const Shape& shape, DType dtype,
                              std::shared_ptr<Storage> (*allocate)(size_t, Device), Device device);
  int normalize_dim(int d, int extra = 0) const;

  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;  // bytes from storage start to element [0,...,0]
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::f32;
};

// Host copies (tests, debugging): any float dtype -> f32 values in row-major order; ints likewise.
std::vector<float> to_float_vector(const Tensor& t);
std::vector<int32_t> to_int_vector(const Tensor& t);

// Bulk conversions over contiguous arrays (vectorised, multithreaded above a size threshold).
void convert_f32_to_bf16(const float* src, bf16* dst, size_t n);
void convert_bf16_to_f32(const bf16* src, float* dst, size_t n);
void convert_f32_to_f16(const float* src, f16* dst, size_t n);
void convert_f16_to_f32(const f16* src, float* dst, size_t n);

}  // namespace seqit::tensor
