// `seqit data convert`: any supported format to any other, record by record.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>

#include "data/format.h"
#include "data/reader.h"
#include "data/writer.h"

namespace seqit::data {

struct ConvertOptions {
  ReadOptions read;  // --from, --on-error (the policy covers records that cannot be written, too)
  FormatRequest to{Schema::seqit,
                   std::nullopt};  // --to; container from the output's extension if unset
  WriteOptions write;
};

struct ConvertReport {
  Format from, to;
  int64_t read = 0;        // records read successfully
  int64_t written = 0;     // records written
  int64_t unreadable = 0;  // bad input records (skipped)
  int64_t unwritable = 0;  // good records the output format cannot hold (skipped)
  BadRecords bad;          // both kinds: the total count and the first few, in input order
};

// Reads `in`, writes `out` atomically: `out` appears complete or not at all, and an existing `out`
// stays untouched when the conversion fails (`in` and `out` may be the same file).
ConvertReport convert_file(const std::filesystem::path& in, const std::filesystem::path& out,
                           const ConvertOptions& options);

}  // namespace seqit::data
