#include "dist/shards.h"

#include "util/jsonl_writer.h"

namespace seqit::dist {

void merge_parts(Communicator& world, const std::filesystem::path& out) {
  world.barrier();  // every part complete
  if (world.rank() == 0) merge_jsonl_parts(out);
  world.barrier();  // the output whole before any rank reads it or returns
}

}  // namespace seqit::dist
