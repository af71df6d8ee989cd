#include "tensor/tensor.h"

#include <fcntl.h>
#include <immintrin.h>
#include <omp.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <numeric>
#include <vector>

#include "tensor/backend.h"
#include "tensor/cpu_gemm.h"
#include "tensor/cpu_internal.h"

namespace seqit::tensor {

// ---- dtype
// ---------------------------------------------------------------------------------------

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return 4;
    case DType::bf16:
      return 2;
    case DType::f16:
      return 2;
    case DType::i32:
      return 4;
    case DType::i64:
      return 8;
  }
  return 0;
}

std::string_view dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32:
      return "f32";
    case DType::bf16:
      return "bf16";
    case DType::f16:
      return "f16";
    case DType::i32:
      return "i32";
    case DType::i64:
      return "i64";
  }
  return "?";
}

std::string_view device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

std::string shape_string(const Shape& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace detail {

void fail(const char* op, const std::string& what) {
  throw Error(std::string(op) + ": " + what);
}

void check_defined(const char* op, const char* arg, const Tensor& t) {
  if (!t.defined()) fail(op, std::string(arg) + " is an undefined tensor");
}
void check_dtype(const char* op, const char* arg, const Tensor& t, DType want) {
  check_defined(op, arg, t);
  if (t.dtype() != want) {
    fail(op,
         std::string(arg) + " must be " + std::string(dtype_name(want)) + ", got " + t.describe());
  }
}
void check_float(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  if (!is_floating(t.dtype())) {
    fail(op, std::string(arg) + " must be a float tensor (f32/bf16/f16), got " + t.describe());
  }
}
void check_shape(const char* op, const char* arg, const Tensor& t, const Shape& want) {
  check_defined(op, arg, t);
  if (t.shape() != want) {
    fail(op, std::string(arg) + " must have shape " + shape_string(want) + ", got " + t.describe());
  }
}
void check_dim(const char* op, const char* arg, const Tensor& t, int dims) {
  check_defined(op, arg, t);
  if (t.dim() != dims) {
    fail(op,
         std::string(arg) + " must have " + std::to_string(dims) + " dims, got " + t.describe());
  }
}
void check_cpu(const char* op, const char* arg, const Tensor& t) {
  if (t.defined() && t.device() != Device::cpu) {
    fail(op, std::string(arg) + " is on " + std::string(device_name(t.device())) +
                 "; this op ran on the cpu backend");
  }
}
void check_contiguous(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  if (!t.is_contiguous()) fail(op, std::string(arg) + " must be contiguous, got " + t.describe());
}
void check_last_dim_unit_stride(const char* op, const char* arg, const Tensor& t) {
  check_defined(op, arg, t);
  if (t.dim() > 0 && t.stride(-1) != 1 && t.size(-1) > 1) {
    fail(op, std::string(arg) + " must have a unit stride in its last dim, got " + t.describe());
  }
}

}  // namespace detail

// ---- storage
// -------------------------------------------------------------------------------------

namespace {
constexpr size_t kAlignment = 64;
}

namespace {
// Host buffers of at least this size are mapped from the system directly and returned to it when
// freed. Through malloc, glibc raises its mmap threshold after freeing a large block (up to 32 MiB)
// and then serves blocks below it from the heap; a temporary freed there was not reused by the next
// aligned allocation of the same size (the alignment asks a little more), so the heap grew by one
// such block per use: a trainer's 31 MiB logits chunk added 31 MiB of resident memory every step.
constexpr size_t kMapBytes = size_t{4} << 20;

void* map_pages(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}
size_t whole_pages(size_t nbytes) {
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return std::max<size_t>(page, (nbytes + page - 1) / page * page);
}

// Freed mapped blocks kept for the next allocation of about their size: an op's temporary of the
// same shape in its next call gets pages already faulted in (a fresh mapping costs a page fault and
// a cleared page per 4 KiB, and unmapping one a TLB shootdown: 2-3 ms per 8 MiB here). At most
// kKeepBytes are kept, the oldest unmapped first; a block is reused for a request of at least 3/4
// of its size.
class FreedBlocks {
 public:
  static constexpr size_t kKeepBytes = size_t{64} << 20;
  // A kept block of `bytes` to 4/3·bytes (its size in *mapped), or null.
  void* take(size_t bytes, size_t* mapped) {
    std::lock_guard<std::mutex> lock(mutex_);
    size_t best = blocks_.size();
    for (size_t i = 0; i < blocks_.size(); ++i) {
      const size_t size = blocks_[i].second;
      if (size >= bytes && size <= bytes / 3 * 4 &&
          (best == blocks_.size() || size < blocks_[best].second))
        best = i;
    }
    if (best == blocks_.size()) return nullptr;
    void* p = blocks_[best].first;
    *mapped = blocks_[best].second;
    kept_ -= *mapped;
    blocks_.erase(blocks_.begin() + static_cast<std::ptrdiff_t>(best));
    return p;
  }
  void give(void* p, size_t mapped) {
    if (mapped > kKeepBytes) {
      munmap(p, mapped);
      return;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    blocks_.emplace_back(p, mapped);
    kept_ += mapped;
    while (kept_ > kKeepBytes) {
      munmap(blocks_.front().first, blocks_.front().second);
      kept_ -= blocks_.front().second;
      blocks_.erase(blocks_.begin());
    }
  }

 private:
  std::mutex mutex_;
  std::vector<std::pair<void*, size_t>> blocks_;  // oldest first
  size_t kept_ = 0;
};
FreedBlocks& freed_blocks() {
  static auto* blocks = new FreedBlocks();  // never destroyed: storages may outlive statics
  return *blocks;
}
}  // namespace

std::shared_ptr<Storage> Storage::allocate(size_t nbytes, Device device) {
  if (device != Device::cpu) return backend_for(device).allocate(nbytes);
  auto storage = std::shared_ptr<Storage>(new Storage());
  if (nbytes >= kMapBytes) {
    size_t mapped = whole_pages(nbytes);
    void* p = freed_blocks().take(mapped, &mapped);
    storage->fresh_ = p == nullptr;
    if (p == nullptr) p = map_pages(mapped);
    if (!p) throw Error("tensor: out of memory allocating " + std::to_string(nbytes) + " bytes");
    storage->data_ = static_cast<std::byte*>(p);
    storage->nbytes_ = nbytes;
    storage->mapped_ = mapped;
    return storage;
  }
  const size_t rounded =
      std::max<size_t>(kAlignment, (nbytes + kAlignment - 1) / kAlignment * kAlignment);
  void* p = std::aligned_alloc(kAlignment, rounded);
  if (!p) throw Error("tensor: out of memory allocating " + std::to_string(nbytes) + " bytes");
  storage->data_ = static_cast<std::byte*>(p);
  storage->nbytes_ = nbytes;
  storage->device_ = device;
  return storage;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t nbytes,
                                         std::shared_ptr<const void> owner, bool writable,
                                         Device device) {
  auto storage = std::shared_ptr<Storage>(new Storage());
  storage->data_ = static_cast<std::byte*>(data);
  storage->nbytes_ = nbytes;
  storage->device_ = device;
  storage->writable_ = writable;
  storage->owned_ = false;
  storage->owner_ = std::move(owner);
  return storage;
}

std::shared_ptr<Storage> Storage::allocate_on_demand(size_t nbytes) {
  auto storage = std::shared_ptr<Storage>(new Storage());
  const size_t mapped = whole_pages(nbytes);
  void* p = map_pages(mapped);
  if (!p) throw Error("tensor: out of memory mapping " + std::to_string(nbytes) + " bytes");
  // A huge page would make one written row take 2 MiB; the point is to take only what is written.
  madvise(p, mapped, MADV_NOHUGEPAGE);
  storage->data_ = static_cast<std::byte*>(p);
  storage->nbytes_ = nbytes;
  storage->on_demand_ = true;
  storage->fresh_ = true;
  storage->mapped_ = mapped;
  return storage;
}

Storage::WrittenPages Storage::written_pages() const {
  WrittenPages pages;
  if (!on_demand_) return pages;
  const auto page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  const size_t count = mapped_ / page;
  // One 64-bit entry per virtual page: bit 63 present, bit 62 swapped out (a written page either
  // way). Readable by the process itself without privileges (only the frame numbers are hidden).
  const int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pages;
  std::vector<uint64_t> entries(count);
  const auto first = static_cast<off_t>(reinterpret_cast<uintptr_t>(data_) / page * 8);
  size_t done = 0;
  const size_t want = count * 8;
  while (done < want) {
    const ssize_t got = pread(fd, reinterpret_cast<char*>(entries.data()) + done, want - done,
                              first + static_cast<off_t>(done));
    if (got <= 0) break;
    done += static_cast<size_t>(got);
  }
  close(fd);
  if (done < want) return pages;
  pages.base_ = data_;
  pages.page_ = page;
  pages.written_.resize(count);
  for (size_t i = 0; i < count; ++i) pages.written_[i] = (entries[i] >> 62) != 0;
  return pages;
}

const std::byte* Storage::WrittenPages::read(const std::byte* p, size_t n,
                                             std::byte* buffer) const {
  if (written_.empty() || n == 0) return p;
  const size_t begin = static_cast<size_t>(p - base_), end = begin + n;
  const size_t first = begin / page_, last = (end - 1) / page_;
  bool all = true, any = false;
  for (size_t i = first; i <= last; ++i) {
    if (written_[i])
      any = true;
    else
      all = false;
  }
  if (all) return p;
  if (!any) return nullptr;
  for (size_t i = first; i <= last; ++i) {
    const size_t lo = std::max(begin, i * page_), hi = std::min(end, (i + 1) * page_);
    if (written_[i])
      std::memcpy(buffer + (lo - begin), base_ + lo, hi - lo);
    else
      std::memset(buffer + (lo - begin), 0, hi - lo);
  }
  return buffer;
}

Storage::~Storage() {
  if (on_demand_)
    munmap(data_, mapped_);
  else if (mapped_ > 0)
    freed_blocks().give(data_, mapped_);
  else if (owned_)
    std::free(data_);
}

// ---- creation
// ------------------------------------------------------------------------------------

namespace {
Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    s *= shape[i];
  }
  return strides;
}

void check_shape_valid(const Shape& shape) {
  for (int64_t d : shape) {
    if (d < 0) throw Error("tensor: negative dimension in shape " + shape_string(shape));
  }
}
}  // namespace

Tensor Tensor::contiguous_on(const Shape& shape, DType dtype,
                             std::shared_ptr<Storage> (*allocate)(size_t, Device), Device device) {
  check_shape_valid(shape);
  Tensor t;
  t.storage_ = allocate(static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype), device);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return contiguous_on(shape, dtype, &Storage::allocate, device);
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  // Freshly mapped pages read as zeros already (and take memory only when written).
  if (!t.storage_->fresh()) std::memset(t.storage_->data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::zeros_on_demand(const Shape& shape, DType dtype) {
  return contiguous_on(
      shape, dtype, [](size_t nbytes, Device) { return Storage::allocate_on_demand(nbytes); },
      Device::cpu);
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  t.fill(value);
  return t;
}

Tensor Tensor::from_floats(std::span<const float> values, const Shape& shape, DType dtype) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw Error("tensor: " + std::to_string(values.size()) + " values for shape " +
                shape_string(shape));
  }
  Tensor src = borrow(values.data(), shape, DType::f32, nullptr);
  Tensor t = empty(shape, dtype);
  t.copy_from(src);
  return t;
}

Tensor Tensor::from_ints(std::span<const int32_t> values, const Shape& shape) {
  if (static_cast<int64_t>(values.size()) != shape_numel(shape)) {
    throw Error("tensor: " + std::to_string(values.size()) + " values for shape " +
                shape_string(shape));
  }
  Tensor t = empty(shape, DType::i32);
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(int32_t));
  return t;
}

Tensor Tensor::borrow(const void* data, const Shape& shape, DType dtype,
                      std::shared_ptr<const void> owner) {
  check_shape_valid(shape);
  Tensor t;
  t.storage_ = Storage::borrow(const_cast<void*>(data),
                               static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
                               std::move(owner), false);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::borrow_mutable(void* data, const Shape& shape, DType dtype,
                              std::shared_ptr<const void> owner) {
  check_shape_valid(shape);
  Tensor t;
  t.storage_ = Storage::borrow(data, static_cast<size_t>(shape_numel(shape)) * dtype_size(dtype),
                               std::move(owner), true);
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  return t;
}

// ---- properties
// ----------------------------------------------------------------------------------

int Tensor::normalize_dim(int d, int extra) const {
  const int n = dim() + extra;
  const int r = d < 0 ? d + n : d;
  if (r < 0 || r >= n) {
    throw Error("tensor: dim " + std::to_string(d) + " out of range for " + describe());
  }
  return r;
}

int64_t Tensor::size(int d) const {
  return shape_[normalize_dim(d)];
}
int64_t Tensor::stride(int d) const {
  return strides_[normalize_dim(d)];
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;  // the stride of a size-1 dim never matters
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  std::string s = std::string(dtype_name(dtype_)) + shape_string(shape_);
  if (!is_contiguous()) s += " strides " + shape_string(strides_);
  if (device() != Device::cpu) s += " on " + std::string(device_name(device()));
  return s;
}

void Tensor::check_access(DType want, bool mutate) const {
  if (!storage_) throw Error("tensor: access to an undefined tensor");
  if (want != dtype_) {
    throw Error("tensor: accessed " + describe() + " as " + std::string(dtype_name(want)));
  }
  if (mutate && !storage_->writable()) {
    throw Error("tensor: " + describe() + " is read-only (borrowed, e.g. memory-mapped weights)");
  }
}

void* Tensor::raw_data() {
  check_access(dtype_, true);
  return storage_->data() + offset_;
}
const void* Tensor::raw_data() const {
  check_access(dtype_, false);
  return storage_->data() + offset_;
}

namespace {
double load_as_double(const std::byte* p, DType dtype) {
  switch (dtype) {
    case DType::f32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::bf16: {
      bf16 v;
      std::memcpy(&v, p, 2);
      return bf16_to_f32(v);
    }
    case DType::f16: {
      f16 v;
      std::memcpy(&v, p, 2);
      return f16_to_f32(v);
    }
    case DType::i32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case DType::i64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      return static_cast<double>(v);
    }
  }
  return 0;
}
void store_from_double(std::byte* p, DType dtype, double value) {
  switch (dtype) {
    case DType::f32: {
      float v = static_cast<float>(value);
      std::memcpy(p, &v, 4);
      return;
    }
    case DType::bf16: {
      bf16 v = f32_to_bf16(static_cast<float>(value));
      std::memcpy(p, &v, 2);
      return;
    }
    case DType::f16: {
      f16 v = f32_to_f16(static_cast<float>(value));
      std::memcpy(p, &v, 2);
      return;
    }
    case DType::i32: {
      int32_t v = static_cast<int32_t>(value);
      std::memcpy(p, &v, 4);
      return;
    }
    case DType::i64: {
      int64_t v = static_cast<int64_t>(value);
      std::memcpy(p, &v, 8);
      return;
    }
  }
}
}  // namespace

double Tensor::get(std::initializer_list<int64_t> index) const {
  if (static_cast<int>(index.size()) != dim()) {
    throw Error("tensor: " + std::to_string(index.size()) + " indices for " + describe());
  }
  check_access(dtype_, false);
  int64_t offset = 0;
  int d = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape_[d]) throw Error("tensor: index out of range for " + describe());
    offset += i * strides_[d++];
  }
  return load_as_double(storage_->data() + offset_ + offset * static_cast<int64_t>(element_size()),
                        dtype_);
}

void Tensor::set(std::initializer_list<int64_t> index, double value) {
  if (static_cast<int>(index.size()) != dim()) {
    throw Error("tensor: " + std::to_string(index.size()) + " indices for " + describe());
  }
  check_access(dtype_, true);
  int64_t offset = 0;
  int d = 0;
  for (int64_t i : index) {
    if (i < 0 || i >= shape_[d]) throw Error("tensor: index out of range for " + describe());
    offset += i * strides_[d++];
  }
  store_from_double(storage_->data() + offset_ + offset * static_cast<int64_t>(element_size()),
                    dtype_, value);
}

// ---- views
// ---------------------------------------------------------------------------------------

Tensor Tensor::narrow(int d, int64_t start, int64_t length) const {
  const int k = normalize_dim(d);
  if (start < 0 || length < 0 || start + length > shape_[k]) {
    throw Error("tensor: narrow(dim " + std::to_string(d) + ", start " + std::to_string(start) +
                ", length " + std::to_string(length) + ") out of range for " + describe());
  }
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(start * strides_[k]) * element_size();
  t.shape_[k] = length;
  return t;
}

Tensor Tensor::select(int d, int64_t index) const {
  const int k = normalize_dim(d);
  if (index < 0 || index >= shape_[k]) {
    throw Error("tensor: select(dim " + std::to_string(d) + ", index " + std::to_string(index) +
                ") out of range for " + describe());
  }
  Tensor t = *this;
  t.offset_ += static_cast<size_t>(index * strides_[k]) * element_size();
  t.shape_.erase(t.shape_.begin() + k);
  t.strides_.erase(t.strides_.begin() + k);
  return t;
}

Tensor Tensor::transpose(int dim0, int dim1) const {
  const int a = normalize_dim(dim0), b = normalize_dim(dim1);
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::permute(const std::vector<int>& order) const {
  if (static_cast<int>(order.size()) != dim()) {
    throw Error("tensor: permute with " + std::to_string(order.size()) + " dims for " + describe());
  }
  std::vector<bool> seen(order.size(), false);
  Tensor t = *this;
  for (size_t i = 0; i < order.size(); ++i) {
    const int k = normalize_dim(order[i]);
    if (seen[k]) throw Error("tensor: permute repeats dim " + std::to_string(k));
    seen[k] = true;
    t.shape_[i] = shape_[k];
    t.strides_[i] = strides_[k];
  }
  return t;
}

Tensor Tensor::unsqueeze(int d) const {
  const int k = normalize_dim(d, 1);
  Tensor t = *this;
  const int64_t stride = k < dim() ? strides_[k] * shape_[k] : 1;
  t.shape_.insert(t.shape_.begin() + k, 1);
  t.strides_.insert(t.strides_.begin() + k, stride);
  return t;
}

Tensor Tensor::squeeze(int d) const {
  const int k = normalize_dim(d);
  if (shape_[k] != 1)
    throw Error("tensor: squeeze of dim " + std::to_string(d) + " in " + describe());
  Tensor t = *this;
  t.shape_.erase(t.shape_.begin() + k);
  t.strides_.erase(t.strides_.begin() + k);
  return t;
}

namespace {
// Resolves one -1 entry against `numel`; throws when the shape cannot hold exactly numel elements.
Shape infer_shape(const Shape& requested, int64_t numel, const std::string& what) {
  Shape shape = requested;
  int infer_at = -1;
  int64_t known = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      if (infer_at >= 0) throw Error("tensor: more than one -1 in " + shape_string(requested));
      infer_at = static_cast<int>(i);
    } else if (shape[i] < 0) {
      throw Error("tensor: negative dimension in " + shape_string(requested));
    } else {
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    if (known == 0 || numel % known != 0) {
      throw Error("tensor: cannot view " + what + " as " + shape_string(requested));
    }
    shape[infer_at] = numel / known;
  }
  if (shape_numel(shape) != numel)
    throw Error("tensor: cannot view " + what + " as " + shape_string(requested));
  return shape;
}

// Strides for viewing (shape, strides) as `target` without copying, or false. Works chunk by chunk:
// a run of source dims that is contiguous among itself can be re-split any way.
bool view_strides(const Shape& shape, const Shape& strides, const Shape& target, Shape* out) {
  out->assign(target.size(), 0);
  if (shape_numel(shape) == 0) {
    *out = contiguous_strides(target);
    return true;
  }
  int64_t view_d = static_cast<int64_t>(target.size()) - 1;
  int64_t chunk_base_stride = strides.empty() ? 1 : strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    // End of a contiguous chunk: at dim 0 or where the next-outer dim is not laid out right after.
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || target[view_d] == 1)) {
        (*out)[view_d] = view_numel * chunk_base_stride;
        view_numel *= target[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}
}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), describe());
  Shape strides;
  if (!view_strides(shape_, strides_, shape, &strides)) {
    throw Error("tensor: cannot view " + describe() + " as " + shape_string(shape) +
                " without a copy (use reshape or contiguous)");
  }
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = strides;
  return t;
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), describe());
  Shape strides;
  if (view_strides(shape_, strides_, shape, &strides)) {
    Tensor t = *this;
    t.shape_ = shape;
    t.strides_ = strides;
    return t;
  }
  return contiguous().view(shape);
}

Tensor Tensor::rows_view() const {
  if (dim() == 0) return view({1, 1});
  return view({-1, shape_.back()});
}

// ---- copies
// --------------------------------------------------------------------------------------

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  if (!defined()) return Tensor();
  Tensor t = empty(shape_, dtype_, device());
  t.copy_from(*this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (!defined()) throw Error("tensor: to() of an undefined tensor");
  if (dtype == dtype_ && is_contiguous()) return *this;
  Tensor t = empty(shape_, dtype, device());
  t.copy_from(*this);
  return t;
}

// Bulk conversions: F16C/AVX2 where the CPU has them (chosen at run time, so a build with or
// without -march=native stays correct), a scalar loop otherwise.
namespace {
bool cpu_has_avx2_f16c() {
  static const bool has =
      __builtin_cpu_supports("avx2") && detail::cpu_has_f16c() && __builtin_cpu_supports("fma");
  return has;
}

__attribute__((target("avx2,fma,f16c"))) void f32_to_bf16_avx2(const float* src, bf16* dst,
                                                               size_t n) {
  size_t i = 0;
  const __m256i bias = _mm256_set1_epi32(0x7fff);
  const __m256i one = _mm256_set1_epi32(1);
  for (; i + 8 <= n; i += 8) {
    const __m256 f = _mm256_loadu_ps(src + i);
    __m256i u = _mm256_castps_si256(f);
    const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    // NaNs: keep the top bits and force a quiet NaN instead of rounding into infinity.
    const __m256 is_nan = _mm256_cmp_ps(f, f, _CMP_UNORD_Q);
    const __m256i nan_bits = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    rounded = _mm256_blendv_epi8(rounded, nan_bits, _mm256_castps_si256(is_nan));
    // Pack 8 x u32 (values < 65536) into 8 x u16.
    const __m128i lo = _mm256_castsi256_si128(rounded);
    const __m128i hi = _mm256_extracti128_si256(rounded, 1);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_packus_epi32(lo, hi));
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}

__attribute__((target("avx2,fma,f16c"))) void bf16_to_f32_avx2(const bf16* src, float* dst,
                                                               size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i u = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(u));
  }
  for (; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

// See cpu_gemm.cpp: GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// vcvtneps2bf16 rounds to nearest even and quiets NaNs exactly as f32_to_bf16 does, but flushes
// denormal inputs to zero: a vector holding one (fpclass) takes the scalar conversion.
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"))) void f32_to_bf16_avx512(
    const float* src, bf16* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 f = _mm512_loadu_ps(src + i);
    if (_mm512_fpclass_ps_mask(f, 0x20) != 0) {  // 0x20: denormal
      for (size_t k = i; k < i + 16; ++k) dst[k] = f32_to_bf16(src[k]);
      continue;
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(f)));
  }
  for (; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}
#pragma GCC diagnostic pop

detail::ConvertIsa best_convert_isa() {
  static const detail::ConvertIsa isa =
      detail::cpu_has_avx512_bf16() && __builtin_cpu_supports("avx512dq")
          ? detail::ConvertIsa::avx512
          : (cpu_has_avx2_f16c() ? detail::ConvertIsa::avx2 : detail::ConvertIsa::scalar);
  return isa;
}

__attribute__((target("avx2,fma,f16c"))) void f32_to_f16_avx2(const float* src, f16* dst,
                                                              size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

__attribute__((target("avx2,fma,f16c"))) void f16_to_f32_avx2(const f16* src, float* dst,
                                                              size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(h));
  }
  for (; i < n; ++i) dst[i] = f16_to_f32(src[i]);
}

// Splits [0, n) over the OpenMP pool when n is large enough to pay for it.
template <typename F>
void parallel_chunks(size_t n, F&& body) {
  if (static_cast<int64_t>(n) < detail::kParallelThreshold * 4) {
    body(size_t{0}, n);
    return;
  }
  detail::apply_threads();
#pragma omp parallel
  {
    const size_t threads = static_cast<size_t>(omp_get_num_threads());
    const size_t id = static_cast<size_t>(omp_get_thread_num());
    // Chunks are multiples of 64 elements so no two threads write the same cache line.
    const size_t per = (n + threads - 1) / threads;
    const size_t chunk = (per + 63) / 64 * 64;
    const size_t begin = std::min(n, id * chunk), end = std::min(n, begin + chunk);
    if (begin < end) body(begin, end);
  }
}
}  // namespace

namespace detail {
std::vector<ConvertIsa> available_convert_isas() {
  std::vector<ConvertIsa> isas{ConvertIsa::scalar};
  if (cpu_has_avx2_f16c()) isas.push_back(ConvertIsa::avx2);
  if (best_convert_isa() == ConvertIsa::avx512) isas.push_back(ConvertIsa::avx512);
  return isas;
}
void f32_to_bf16_on(ConvertIsa isa, const float* src, bf16* dst, size_t n) {
  if (isa == ConvertIsa::avx512) return f32_to_bf16_avx512(src, dst, n);
  if (isa == ConvertIsa::avx2) return f32_to_bf16_avx2(src, dst, n);
  for (size_t i = 0; i < n; ++i) dst[i] = f32_to_bf16(src[i]);
}
void bf16_to_f32_on(ConvertIsa isa, const bf16* src, float* dst, size_t n) {
  // Widening is a shift: a 16-lane form ran 1.25x the 8-lane one in cache and the same out of
  // cache on Zen 5; not kept (the f32 -> bf16 direction is the one the training step waited on).
  if (isa != ConvertIsa::scalar) return bf16_to_f32_avx2(src, dst, n);
  for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(src[i]);
}

const float* load_f32_converted(const void* src, DType dtype, float* buffer, int64_t n) {
  const size_t count = static_cast<size_t>(n);
  switch (dtype) {
    case DType::f32:
      return static_cast<const float*>(src);
    case DType::bf16:
      bf16_to_f32_on(best_convert_isa(), static_cast<const bf16*>(src), buffer, count);
      return buffer;
    case DType::f16:
      if (cpu_has_avx2_f16c())
        f16_to_f32_avx2(static_cast<const f16*>(src), buffer, count);
      else
        for (size_t i = 0; i < count; ++i) buffer[i] = f16_to_f32(static_cast<const f16*>(src)[i]);
      return buffer;
    default:
      fail("tensor", "not a float dtype");
  }
}

void store_f32_converted(const float* src, void* dst, DType dtype, int64_t n) {
  const size_t count = static_cast<size_t>(n);
  switch (dtype) {
    case DType::f32:
      if (src != dst) std::memcpy(dst, src, count * sizeof(float));
      return;
    case DType::bf16:
      f32_to_bf16_on(best_convert_isa(), src, static_cast<bf16*>(dst), count);
      return;
    case DType::f16:
      if (cpu_has_avx2_f16c())
        f32_to_f16_avx2(src, static_cast<f16*>(dst), count);
      else
        for (size_t i = 0; i < count; ++i) static_cast<f16*>(dst)[i] = f32_to_f16(src[i]);
      return;
    default:
      fail("tensor", "not a float dtype");
  }
}

RowsRef rows_of(const char* op, const char* arg, const Tensor& t, bool mutate) {
  check_float(op, arg, t);
  check_cpu(op, arg, t);
  Tensor r;
  try {
    r = t.rows_view();
  } catch (const Error&) {
    fail(op, std::string(arg) + " " + t.describe() + " does not fold into rows without a copy");
  }
  if (r.size(1) > 1 && r.stride(1) != 1) {
    fail(op, std::string(arg) + " must have a unit stride in its last dim, got " + t.describe());
  }
  if (mutate && !t.is_writable()) fail(op, std::string(arg) + " is read-only");
  RowsRef ref;
  ref.base = static_cast<std::byte*>(const_cast<void*>(static_cast<const Tensor&>(r).raw_data()));
  ref.rows = r.size(0);
  ref.cols = r.size(1);
  ref.row_stride = r.size(0) > 1 ? r.stride(0) : r.size(1);
  ref.dtype = t.dtype();
  return ref;
}
}  // namespace detail

void convert_f32_to_bf16(const float* src, bf16* dst, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t e) {
    detail::f32_to_bf16_on(best_convert_isa(), src + b, dst + b, e - b);
  });
}
void convert_bf16_to_f32(const bf16* src, float* dst, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t e) {
    detail::bf16_to_f32_on(best_convert_isa(), src + b, dst + b, e - b);
  });
}
void convert_f32_to_f16(const float* src, f16* dst, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t e) {
    if (cpu_has_avx2_f16c()) return f32_to_f16_avx2(src + b, dst + b, e - b);
    for (size_t i = b; i < e; ++i) dst[i] = f32_to_f16(src[i]);
  });
}
void convert_f16_to_f32(const f16* src, float* dst, size_t n) {
  parallel_chunks(n, [&](size_t b, size_t e) {
    if (cpu_has_avx2_f16c()) return f16_to_f32_avx2(src + b, dst + b, e - b);
    for (size_t i = b; i < e; ++i) dst[i] = f16_to_f32(src[i]);
  });
}

namespace {
// Converts a contiguous run of n elements between any two dtypes.
void convert_run(const std::byte* src, DType from, std::byte* dst, DType to, size_t n) {
  if (from == to) {
    std::memcpy(dst, src, n * dtype_size(from));
    return;
  }
  if (from == DType::f32 && to == DType::bf16) {
    return convert_f32_to_bf16(reinterpret_cast<const float*>(src), reinterpret_cast<bf16*>(dst),
                               n);
  }
  if (from == DType::bf16 && to == DType::f32) {
    return convert_bf16_to_f32(reinterpret_cast<const bf16*>(src), reinterpret_cast<float*>(dst),
                               n);
  }
  if (from == DType::f32 && to == DType::f16) {
    return convert_f32_to_f16(reinterpret_cast<const float*>(src), reinterpret_cast<f16*>(dst), n);
  }
  if (from == DType::f16 && to == DType::f32) {
    return convert_f16_to_f32(reinterpret_cast<const f16*>(src), reinterpret_cast<float*>(dst), n);
  }
  const size_t in = dtype_size(from), out = dtype_size(to);
  for (size_t i = 0; i < n; ++i)
    store_from_double(dst + i * out, to, load_as_double(src + i * in, from));
}
}  // namespace

void Tensor::copy_from(const Tensor& src) {
  if (!defined() || !src.defined()) throw Error("tensor: copy_from with an undefined tensor");
  if (src.shape_ != shape_) {
    throw Error("tensor: copy_from " + src.describe() + " into " + describe() + ": shapes differ");
  }
  if (device() != Device::cpu || src.device() != Device::cpu) {
    throw Error("tensor: copy_from between devices needs that device's backend");
  }
  check_access(dtype_, true);
  const std::byte* s = src.storage_->data() + src.offset_;
  std::byte* d = storage_->data() + offset_;
  const int64_t n = numel();
  if (n == 0) return;
  if (is_contiguous() && src.is_contiguous()) {
    if (s == d && dtype_ == src.dtype_) return;
    convert_run(s, src.dtype_, d, dtype_, static_cast<size_t>(n));
    return;
  }
  // Strided: walk the leading dims with an index counter; the innermost dim is a run when both
  // sides have a unit stride there, else element by element.
  const int nd = dim();
  const int64_t inner = shape_[nd - 1];
  const bool unit_inner = strides_[nd - 1] == 1 && src.strides_[nd - 1] == 1;
  const int64_t outer = n / inner;
  const size_t sin = src.element_size(), sout = element_size();
  std::vector<int64_t> idx(nd, 0);
  for (int64_t o = 0; o < outer; ++o) {
    int64_t soff = 0, doff = 0;
    for (int k = 0; k < nd - 1; ++k) {
      soff += idx[k] * src.strides_[k];
      doff += idx[k] * strides_[k];
    }
    if (unit_inner) {
      convert_run(s + soff * sin, src.dtype_, d + doff * sout, dtype_, static_cast<size_t>(inner));
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        convert_run(s + (soff + i * src.strides_[nd - 1]) * sin, src.dtype_,
                    d + (doff + i * strides_[nd - 1]) * sout, dtype_, 1);
      }
    }
    for (int k = nd - 2; k >= 0; --k) {
      if (++idx[k] < shape_[k]) break;
      idx[k] = 0;
    }
  }
}

namespace {
// Fills n contiguous elements of size es with the pattern `one`: memset for all-zero-bytes
// patterns (zeroing gradient buffers every step), typed stores otherwise.
void fill_run(std::byte* d, const std::byte* one, size_t es, int64_t n) {
  bool zero = true;
  for (size_t b = 0; b < es; ++b) zero = zero && one[b] == std::byte{0};
  if (zero) {
    std::memset(d, 0, static_cast<size_t>(n) * es);
    return;
  }
  if (es == 2) {
    uint16_t v;
    std::memcpy(&v, one, 2);
    std::fill_n(reinterpret_cast<uint16_t*>(d), n, v);
  } else if (es == 4) {
    uint32_t v;
    std::memcpy(&v, one, 4);
    std::fill_n(reinterpret_cast<uint32_t*>(d), n, v);
  } else {
    uint64_t v;
    std::memcpy(&v, one, 8);
    std::fill_n(reinterpret_cast<uint64_t*>(d), n, v);
  }
}
}  // namespace

void Tensor::fill(double value) {
  check_access(dtype_, true);
  std::byte one[8];
  store_from_double(one, dtype_, value);
  const size_t es = element_size();
  std::byte* d = storage_->data() + offset_;
  const int64_t n = numel();
  if (n == 0) return;
  if (is_contiguous()) {
    // Large buffers: split over the OpenMP pool (memory bandwidth of both cores).
    if (n >= detail::kParallelThreshold * 8) {
      detail::apply_threads();
#pragma omp parallel
      {
        const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
        const int64_t b = n * t / nt, e = n * (t + 1) / nt;
        fill_run(d + b * static_cast<int64_t>(es), one, es, e - b);
      }
      return;
    }
    fill_run(d, one, es, n);
    return;
  }
  // Strided: runs along the last dim when it is unit-stride, element by element otherwise.
  const int nd = dim();
  const int64_t inner = shape_[nd - 1];
  const bool unit = strides_[nd - 1] == 1;
  std::vector<int64_t> idx(nd, 0);
  for (int64_t o = 0; o < n / inner; ++o) {
    int64_t off = 0;
    for (int k = 0; k < nd - 1; ++k) off += idx[k] * strides_[k];
    if (unit) {
      fill_run(d + off * static_cast<int64_t>(es), one, es, inner);
    } else {
      for (int64_t i = 0; i < inner; ++i) {
        std::memcpy(d + (off + i * strides_[nd - 1]) * static_cast<int64_t>(es), one, es);
      }
    }
    for (int k = nd - 2; k >= 0; --k) {
      if (++idx[k] < shape_[k]) break;
      idx[k] = 0;
    }
  }
}

void Tensor::zero() {
  if (!storage_ || !storage_->on_demand() || !is_contiguous()) {
    fill(0.0);
    return;
  }
  check_access(dtype_, true);
  // Whole pages are dropped (they read as zeros again and take no memory until written); the
  // partial pages at either end are written.
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  std::byte* begin = storage_->data() + offset_;
  std::byte* end = begin + nbytes();
  const auto first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const auto last = reinterpret_cast<uintptr_t>(end) / page * page;
  if (first >= last) {
    std::memset(begin, 0, nbytes());
    return;
  }
  std::memset(begin, 0, first - reinterpret_cast<uintptr_t>(begin));
  std::memset(reinterpret_cast<std::byte*>(last), 0, reinterpret_cast<uintptr_t>(end) - last);
  if (madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED) != 0)
    std::memset(reinterpret_cast<std::byte*>(first), 0, last - first);
}

std::vector<float> to_float_vector(const Tensor& t) {
  Tensor f = t.to(DType::f32);
  const float* p = f.data<float>();
  return std::vector<float>(p, p + f.numel());
}

std::vector<int32_t> to_int_vector(const Tensor& t) {
  Tensor f = t.to(DType::i32);
  const int32_t* p = f.data<int32_t>();
  return std::vector<int32_t>(p, p + f.numel());
}

}  // namespace seqit::tensor
