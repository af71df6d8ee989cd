// safetensors (Hugging Face's weight format): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the raw
// little-endian data. Reading maps the file and validates every entry before anything is used;
// sharded checkpoints (model.safetensors.index.json) are opened as one set. Writing streams tensors
// through an atomic file writer, so an interrupted write leaves no partial file.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/storage.h"
#include "util/mapped_file.h"

namespace seqit::model {

class SafetensorsFile {
 public:
  // Throws seqit::Error naming the file (and tensor) for a short file, a header that is not JSON or
  // not an object, an unknown dtype, a bad shape, offsets outside the data section or inconsistent
  // with shape and dtype, or overlapping tensors.
  static std::unique_ptr<SafetensorsFile> open(const std::filesystem::path& path);

  const std::string& path() const { return map_.path(); }
  const std::vector<StoredTensor>& tensors() const { return tensors_; }  // in data-offset order
  const StoredTensor* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  SafetensorsFile() = default;
  MappedFile map_;
  std::vector<StoredTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// All tensors of a checkpoint: one .safetensors file, a sharded set named by an index JSON, or a
// folder holding either (model.safetensors.index.json preferred, else model.safetensors, else the
// single *.safetensors file).
class SafetensorsSet {
 public:
  static std::unique_ptr<SafetensorsSet> open(const std::filesystem::path& path);

  const StoredTensor* find(const std::string& name) const;
  std::vector<const StoredTensor*> tensors() const;
  const std::vector<std::unique_ptr<SafetensorsFile>>& files() const { return files_; }
  // What was opened (the file, or the index JSON), for errors.
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::unordered_map<std::string, const StoredTensor*> index_;
};

class SafetensorsWriter {
 public:
  // Writes `nbytes` of tensor data into `out` (exactly storage_bytes(type, elements) bytes).
  using Fill = std::function<void(uint8_t* out)>;

  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }
  void add(const std::string& name, StorageType type, std::vector<int64_t> shape, Fill fill);
  // Writes the file atomically (temporary + rename), calling each fill in turn.
  void write(const std::filesystem::path& path) const;

 private:
  struct Entry {
    std::string name;
    StorageType type;
    std::vector<int64_t> shape;
    uint64_t nbytes;
    Fill fill;
  };
  std::vector<Entry> entries_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace seqit::model
