#include "model/safetensors.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/file_io.h"
#include "util/json_io.h"

namespace seqit::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
// Headers of real checkpoints are well under a megabyte; the cap keeps a corrupt length from
// turning into a giant allocation.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

[[noreturn]] void fail(const std::string& file, const std::string& message) {
  throw Error(message).in_file(file);
}
}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const fs::path& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->map_ = MappedFile(path);
  const std::string& p = f->map_.path();
  const uint8_t* bytes = f->map_.data();
  uint64_t size = f->map_.size();
  if (size < 8)
    fail(p, fmt::format("truncated safetensors file: {} bytes, the header length alone needs 8",
                        size));
  uint64_t header_len;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > kMaxHeaderBytes) {
    fail(p, fmt::format("not a safetensors file: header length {} is implausible", header_len));
  }
  if (header_len > size - 8) {
    fail(p, fmt::format("truncated safetensors file: header of {} bytes but only {} bytes follow",
                        header_len, size - 8));
  }
  std::string_view header_text(reinterpret_cast<const char*>(bytes + 8), header_len);
  json header;
  try {
    header = json::parse(header_text.begin(), header_text.end());
  } catch (const json::exception& e) {
    // parse_error, or out_of_range for a number no double can hold (1e999): both are bad input.
    fail(p, "safetensors header is not valid JSON: " + clean_json_error(e.what()));
  }
  if (!header.is_object()) fail(p, "safetensors header is not a JSON object");
  const uint8_t* data = bytes + 8 + header_len;
  uint64_t data_size = size - 8 - header_len;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object()) fail(p, "safetensors __metadata__ is not an object");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string()) {
          fail(p, fmt::format("safetensors __metadata__ value '{}' is not a string", m.key()));
        }
        f->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    auto bad = [&](const std::string& why) -> Error {
      return Error(fmt::format("tensor '{}': {}", name, why)).in_file(p);
    };
    if (!entry.is_object()) throw bad("entry is not an object");
    auto dt = entry.find("dtype");
    auto sh = entry.find("shape");
    auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) throw bad("missing or non-string 'dtype'");
    if (sh == entry.end() || !sh->is_array()) throw bad("missing or non-array 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned()) {
      throw bad("'data_offsets' must be [begin, end] with non-negative integers");
    }
    StoredTensor t;
    t.name = name;
    t.file = p;
    auto type = parse_storage_type(dt->get<std::string>());
    if (!type || *type == StorageType::q8_0)
      throw bad(fmt::format("unknown dtype '{}'", dt->get<std::string>()));
    t.type = *type;
    int64_t elements = 1;
    for (const json& d : *sh) {
      if (!d.is_number_unsigned()) throw bad("shape entries must be non-negative integers");
      auto v = d.get<uint64_t>();
      if (v > (uint64_t{1} << 40)) throw bad(fmt::format("implausible dimension {}", v));
      t.shape.push_back(static_cast<int64_t>(v));
      if (v != 0 && elements > (int64_t{1} << 50) / static_cast<int64_t>(v))
        throw bad("too many elements");
      elements *= static_cast<int64_t>(v);
    }
    uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
    if (begin > end) throw bad(fmt::format("data_offsets [{}, {}] run backwards", begin, end));
    if (end > data_size) {
      throw Error(
          fmt::format(
              "truncated safetensors file: tensor '{}' needs bytes [{}, {}) of the data section, "
              "which has {} bytes",
              name, begin, end, data_size))
          .in_file(p);
    }
    auto expected = storage_bytes(t.type, elements);
    if (!expected || *expected != end - begin) {
      throw bad(fmt::format("{} {} needs {} bytes but data_offsets [{}, {}] hold {}",
                            t.shape.empty() ? "scalar" : shape_string(t.shape),
                            storage_type_name(t.type), expected ? *expected : 0, begin, end,
                            end - begin));
    }
    t.data = data + begin;
    t.nbytes = end - begin;
    f->tensors_.push_back(std::move(t));
  }
  std::sort(f->tensors_.begin(), f->tensors_.end(),
            [](const StoredTensor& a, const StoredTensor& b) { return a.data < b.data; });
  for (size_t i = 0; i + 1 < f->tensors_.size(); ++i) {
    const StoredTensor& a = f->tensors_[i];
    const StoredTensor& b = f->tensors_[i + 1];
    if (a.data + a.nbytes > b.data) {
      fail(p, fmt::format("tensors '{}' and '{}' overlap in the data section", a.name, b.name));
    }
  }
  for (size_t i = 0; i < f->tensors_.size(); ++i) f->index_[f->tensors_[i].name] = i;
  return f;
}

const StoredTensor* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::unique_ptr<SafetensorsSet> SafetensorsSet::open(const fs::path& path) {
  auto set = std::make_unique<SafetensorsSet>();
  fs::path target = path;
  if (fs::is_directory(path)) {
    if (fs::exists(path / "model.safetensors.index.json")) {
      target = path / "model.safetensors.index.json";
    } else if (fs::exists(path / "model.safetensors")) {
      target = path / "model.safetensors";
    } else {
      std::vector<fs::path> found;
      for (const auto& e : fs::directory_iterator(path)) {
        if (e.path().extension() == ".safetensors") found.push_back(e.path());
      }
      if (found.size() != 1) {
        throw Error(
            found.empty()
                ? "no *.safetensors weights in this folder"
                : "several *.safetensors files but no model.safetensors.index.json naming them")
            .in_file(path.string());
      }
      target = found[0];
    }
  }
  set->source_ = target.string();
  if (target.extension() == ".json") {
    json index = read_json_file(target);
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      throw Error("a safetensors index needs an object 'weight_map' {tensor: file}")
          .in_file(set->source_)
          .in_field("weight_map");
    }
    std::map<std::string, size_t> file_of_shard;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string()) {
        throw Error(fmt::format("tensor '{}': shard file name is not a string", it.key()))
            .in_file(set->source_);
      }
      std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard == "..") {
        throw Error(fmt::format("tensor '{}': shard '{}' must be a file name in the same folder",
                                it.key(), shard))
            .in_file(set->source_);
      }
      auto [pos, inserted] = file_of_shard.emplace(shard, set->files_.size());
      if (inserted) {
        fs::path shard_path = target.parent_path() / shard;
        if (!fs::exists(shard_path)) {
          throw Error(fmt::format("shard '{}' (holding tensor '{}') is missing", shard, it.key()))
              .in_file(set->source_);
        }
        set->files_.push_back(SafetensorsFile::open(shard_path));
      }
      const SafetensorsFile& file = *set->files_[pos->second];
      const StoredTensor* t = file.find(it.key());
      if (!t) {
        throw Error(
            fmt::format("tensor '{}' is listed in the index but not in its shard", it.key()))
            .in_file(file.path());
      }
      set->index_[it.key()] = t;
    }
  } else {
    set->files_.push_back(SafetensorsFile::open(target));
    for (const StoredTensor& t : set->files_[0]->tensors()) set->index_[t.name] = &t;
  }
  return set;
}

const StoredTensor* SafetensorsSet::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const StoredTensor*> SafetensorsSet::tensors() const {
  std::vector<const StoredTensor*> out;
  for (const auto& f : files_) {
    for (const StoredTensor& t : f->tensors()) {
      if (find(t.name) == &t) out.push_back(&t);
    }
  }
  return out;
}

void SafetensorsWriter::add(const std::string& name, StorageType type, std::vector<int64_t> shape,
                            Fill fill) {
  int64_t elements = 1;
  for (int64_t d : shape) elements *= d;
  auto nbytes = storage_bytes(type, elements);
  if (!nbytes || type == StorageType::q8_0) {
    throw Error(fmt::format("tensor '{}': cannot store {} {} in safetensors", name,
                            shape_string(shape), storage_type_name(type)));
  }
  for (const Entry& e : entries_) {
    if (e.name == name) throw Error(fmt::format("tensor '{}' added twice", name));
  }
  entries_.push_back({name, type, std::move(shape), *nbytes, std::move(fill)});
}

void SafetensorsWriter::write(const fs::path& path) const {
  // Header keys are written in insertion order (ordered_json) so the data order matches it.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Entry& e : entries_) {
    header[e.name] = {{"dtype", storage_type_name(e.type)},
                      {"shape", e.shape},
                      {"data_offsets", {offset, offset + e.nbytes}}};
    offset += e.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // keep the data section 8-byte aligned
  uint64_t header_len = text.size();
  AtomicFileWriter out(path);
  out.write(std::string_view(reinterpret_cast<const char*>(&header_len), 8));
  out.write(text);
  std::vector<uint8_t> buffer;
  for (const Entry& e : entries_) {
    buffer.assign(e.nbytes, 0);
    e.fill(buffer.data());
    out.write(std::string_view(reinterpret_cast<const char*>(buffer.data()), buffer.size()));
  }
  out.commit();
}

}  // namespace seqit::model
