#include "chart/png.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <plplot.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <string_view>

#include "util/error.h"
#include "util/file_io.h"

namespace seqit::chart {
namespace fs = std::filesystem;

namespace {
std::mutex plplot_mutex;  // PLplot keeps global state (streams, the current device)
}

bool has_pngcairo() {
  // plgDevs fills caller-provided arrays of n entries.
  std::vector<PLCHAR_VECTOR> menu_storage(256, nullptr), device_storage(256, nullptr);
  PLCHAR_VECTOR* menus = menu_storage.data();
  PLCHAR_VECTOR* devices = device_storage.data();
  int n = 256;
  plgDevs(&menus, &devices, &n);
  for (int i = 0; i < n; ++i)
    if (devices[i] && std::string_view(devices[i]) == "pngcairo") return true;
  return false;
}

void write_png(const fs::path& png, int width, int height, const Palette& palette,
               const std::function<void()>& draw) {
  if (width < 100 || height < 100)
    throw Error(fmt::format("chart size {}x{} is too small", width, height)).in_file(png.string());
  // PLplot writes the file itself: to a temporary beside the target, which then replaces it.
  const fs::path temp =
      png.parent_path() / fmt::format(".{}.tmp.{}", png.filename().string(), ::getpid());
  {
    int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
      throw Error(fmt::format("cannot write the chart: {}", std::strerror(errno)))
          .in_file(png.string());
    ::close(fd);
  }
  {
    std::lock_guard lock(plplot_mutex);
    if (!has_pngcairo()) {
      fs::remove(temp);
      throw Error("PLplot has no pngcairo device: install plplot-driver-cairo")
          .in_file(png.string());
    }
    PLINT stream = 0;
    plmkstrm(&stream);
    plsdev("pngcairo");
    plsfnam(temp.c_str());
    plspage(0, 0, width, height, 0, 0);
    for (size_t i = 0; i < palette.size(); ++i)
      plscol0(static_cast<PLINT>(i), palette[i][0], palette[i][1], palette[i][2]);
    plspause(0);
    plinit();
    try {
      draw();
    } catch (...) {
      plend1();
      fs::remove(temp);
      throw;
    }
    plend1();
  }
  // Replace the chart atomically (and durably) with what PLplot wrote.
  try {
    const std::string bytes = read_file(temp);
    fs::remove(temp);
    if (bytes.size() < 8 || bytes.compare(1, 3, "PNG") != 0)
      throw Error("PLplot wrote no PNG (is plplot-driver-cairo installed?)");
    write_file_atomic(png, bytes);
  } catch (Error& e) {
    std::error_code ec;
    fs::remove(temp, ec);
    e.add_context(ErrorContext{png.string(), 0, 0, -1, ""});
    throw;
  }
}

}  // namespace seqit::chart
