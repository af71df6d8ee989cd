// Jobs split between the ranks item by item (sharded generate, eval, seqinstruct): item i goes to
// rank i mod N, and each rank appends its results to its own part beside the job's resumable
// JSONL output ("<out>.part-<rank>", util/jsonl_writer.h).
#pragma once

#include <cstdint>
#include <filesystem>

#include "dist/communicator.h"

namespace seqit::dist {

// Whether this rank runs item `item`.
inline bool runs_item(const Communicator& world, int64_t item) {
  return item % world.size() == world.rank();
}

// Called by every rank once its part is complete: rank 0 merges the parts into `out`; when this
// returns, on any rank, `out` is whole.
void merge_parts(Communicator& world, const std::filesystem::path& out);

}  // namespace seqit::dist
