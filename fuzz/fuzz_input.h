// Helpers shared by the fuzz targets: the bytes of one input as a file (the loaders read files),
// and the rule for what a target may throw.
//
// A target calls the same entry point the CLI calls and lets through only seqit::Error, the
// documented "bad input" outcome. Anything else — a crash, a hang, a leak, or any other exception
// (std::bad_alloc, nlohmann::json's exceptions, std::out_of_range: each an input that reached code
// which did not expect it) — is a finding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace seqit::fuzz {

// Writes `size` bytes to `name` in a folder private to this process (under /dev/shm when there is
// one) and returns the path. The same name is overwritten by the next input.
std::filesystem::path input_file(const uint8_t* data, size_t size, const std::string& name);

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace seqit::fuzz
