#include "data/convert.h"

#include <algorithm>

#include "util/error.h"

namespace seqit::data {

ConvertReport convert_file(const std::filesystem::path& in, const std::filesystem::path& out,
                           const ConvertOptions& options) {
  ConvertReport report;
  report.to = {options.to.schema,
               options.to.container.value_or(container_for_path(options.to.schema, out.string()))};
  RecordFileWriter writer(out, report.to, options.write);
  BadRecords unwritable;
  unwritable.keep = options.read.report_errors;
  ReadReport read = read_records(in, options.read, [&](Record&& record, const ErrorContext& where) {
    std::string text;
    try {
      text = writer.encode(record);
    } catch (Error& e) {
      // The record is fine but the target format cannot hold it (e.g. a multi-turn chat as
      // Alpaca); nothing was written for it, so skipping it leaves the output whole.
      e.add_context(where);
      if (options.read.on_error == OnError::stop) throw;
      unwritable.add(e);
      return;
    }
    writer.write_encoded(text);  // I/O errors are fatal whatever the policy
  });
  writer.commit();
  report.from = read.format;
  report.read = read.records;
  report.written = writer.records();
  report.unreadable = read.bad.count;
  report.unwritable = unwritable.count;
  report.bad = std::move(read.bad);
  // Keep the first few of both kinds in input order.
  report.bad.count += unwritable.count;
  for (auto& e : unwritable.first) report.bad.first.push_back(std::move(e));
  std::stable_sort(
      report.bad.first.begin(), report.bad.first.end(),
      [](const Error& a, const Error& b) { return a.context().record < b.context().record; });
  if (report.bad.first.size() > report.bad.keep) {
    report.bad.first.erase(report.bad.first.begin() + static_cast<ptrdiff_t>(report.bad.keep),
                           report.bad.first.end());
  }
  return report;
}

}  // namespace seqit::data
