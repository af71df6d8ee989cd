// A llama2.c model .bin (header + fp32 weights), opened as a checkpoint and every weight read, as
// `seqit generate --model stories.bin` does before building the network.
#include <vector>

#include "fuzz_input.h"
#include "model/checkpoint.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto checkpoint =
        seqit::model::Checkpoint::open(seqit::fuzz::input_file(data, size, "model.bin"));
    std::vector<float> values;
    for (const auto& spec : seqit::model::expected_weights(checkpoint->config())) {
      values.resize(static_cast<size_t>(spec.elements()));
      checkpoint->read_f32(spec, values.data());
    }
  } catch (const seqit::Error&) {
  }
  return 0;
}
