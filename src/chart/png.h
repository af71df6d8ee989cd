// PNG charts through PLplot (Debian's plotting library; its pngcairo device gives antialiased lines
// and real fonts): the part every chart shares — the device check, one chart at a time (PLplot
// keeps global state), a fresh stream, and a file that appears atomically and durably. The
// drawing itself stays with each chart (train/loss_chart, seqinstruct/report, study/report).
#pragma once

#include <array>
#include <filesystem>
#include <functional>
#include <vector>

namespace seqit::chart {

// Colour map 0 entries set before drawing: index i gets colours[i] (red, green, blue). Entry 0 is
// the background.
using Palette = std::vector<std::array<int, 3>>;

// Writes `png` (width x height pixels): sets the palette, runs plinit, then `draw` (which calls
// pladv, plvpor, plbox, plline, ...), then plend1; the file replaces any old one only when
// complete. Throws seqit::Error naming the file when PLplot lacks the pngcairo device (install
// plplot-driver-cairo) or the file cannot be written. Everything that could fail is checked before
// plinit: PLplot exits the process on its own fatal errors.
void write_png(const std::filesystem::path& png, int width, int height, const Palette& palette,
               const std::function<void()>& draw);

// Whether PLplot has the pngcairo device.
bool has_pngcairo();

}  // namespace seqit::chart
