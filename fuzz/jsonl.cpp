// Data files as `seqit data stats|convert` read them: the container (JSON lines, JSON array, TSV)
// and the schema detected from the content, bad records skipped as --on-error skip does.
#include "data/reader.h"
#include "fuzz_input.h"
#include "util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  seqit::data::ReadOptions options;
  options.on_error = seqit::data::OnError::skip;
  try {
    seqit::data::read_records(seqit::fuzz::input_file(data, size, "records.jsonl"), options,
                              [](seqit::data::Record&&, const seqit::ErrorContext&) {});
  } catch (const seqit::Error&) {
  }
  return 0;
}
