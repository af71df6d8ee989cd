// The trainer's seeded orders: util/random.h (SplitMix64, stream seeds, Fisher-Yates), named in
// this namespace for the train code that uses them.
#pragma once

#include "util/random.h"

namespace seqit::train {
using seqit::seeded_shuffle;
using seqit::shuffled_indices;
using seqit::SplitMix64;
using seqit::stream_seed;
}  // namespace seqit::train
