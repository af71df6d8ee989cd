// A .safetensors file: header validation, then every tensor's bytes decoded to fp32 (what loading
// a checkpoint does), so an entry that points outside the map is read and caught.
#include <vector>

#include "fuzz_input.h"
#include "model/safetensors.h"
#include "model/storage.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto file = seqit::model::SafetensorsFile::open(
        seqit::fuzz::input_file(data, size, "model.safetensors"));
    std::vector<float> values;
    for (const seqit::model::StoredTensor& t : file->tensors()) {
      if (!seqit::model::is_weight_type(t.type)) continue;
      values.resize(static_cast<size_t>(t.elements()));
      seqit::model::decode_to_f32(t.type, t.data, t.elements(), values.data());
    }
  } catch (const seqit::Error&) {
  }
  return 0;
}
