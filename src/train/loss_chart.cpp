#include "train/loss_chart.h"

#include <fmt/format.h>
#include <plplot.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "chart/png.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::train {
namespace fs = std::filesystem;

std::vector<double> smooth_ema(const std::vector<double>& values, double weight) {
  std::vector<double> out(values.size());
  double last = 0, debias = 1;
  for (size_t i = 0; i < values.size(); ++i) {
    last = last * weight + (1 - weight) * values[i];
    debias *= weight;  // weight^(i+1)
    out[i] = weight > 0 ? last / (1 - debias) : values[i];
  }
  return out;
}

namespace {

// Colour map 0 entries the chart uses.
enum Colour : PLINT { kBackground = 0, kInk, kRaw, kSmooth, kEval, kLr, kGrid, kColours };

struct Range {
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  void add(double v) {
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
  // Some room around the data (and a non-empty span when every value is the same).
  Range padded(double fraction) const {
    if (empty()) return {0, 1};
    double span = hi - lo;
    if (span <= 0) span = std::max(std::abs(hi), 1e-12);
    return {lo - span * fraction, hi + span * fraction};
  }
};

// Axes with a light grid under them, in the current viewport.
void frame(const Range& x, const Range& y, const char* xopt, const char* yopt) {
  plwind(x.lo, x.hi, y.lo, y.hi);
  plcol0(kGrid);
  plwidth(0.5);
  plbox("g", 0, 0, "g", 0, 0);
  plcol0(kInk);
  plwidth(1.0);
  plbox(xopt, 0, 0, yopt, 0, 0);
}

void line(const std::vector<double>& x, const std::vector<double>& y, Colour c, double width) {
  if (x.empty()) return;
  plcol0(c);
  plwidth(width);
  plline(PLINT(x.size()), x.data(), y.data());
}

}  // namespace

void write_loss_chart(const fs::path& png, const std::vector<MetricsRow>& rows,
                      const LossChartOptions& options) {
  if (options.width < 200 || options.height < 150)
    throw Error(fmt::format("chart size {}x{} is too small", options.width, options.height))
        .in_file(png.string());

  // The series.
  std::vector<double> loss_x, loss_y, eval_x, eval_y, lr_x, lr_y;
  Range steps, losses, lrs;
  for (const MetricsRow& r : rows) {
    double s = double(r.step);
    if (r.loss && std::isfinite(*r.loss)) loss_x.push_back(s), loss_y.push_back(*r.loss);
    if (r.eval_loss && std::isfinite(*r.eval_loss))
      eval_x.push_back(s), eval_y.push_back(*r.eval_loss);
    if (r.loss && std::isfinite(r.lr)) lr_x.push_back(s), lr_y.push_back(r.lr);
  }
  std::vector<double> smooth = smooth_ema(loss_y, options.smoothing);
  for (double s : loss_x) steps.add(s);
  for (double s : eval_x) steps.add(s);
  for (double v : loss_y) losses.add(v);
  for (double v : eval_y) losses.add(v);
  for (double v : lr_y) lrs.add(v);
  lrs.add(0);  // the lr panel starts at 0, where warmup starts and decay ends
  bool no_data = loss_x.empty() && eval_x.empty();

  Range xr = steps.empty() ? Range{0, 1} : steps;
  if (xr.hi <= xr.lo) xr.hi = xr.lo + 1;
  Range yr = losses.padded(0.05);
  // The lr axis in units of a power of ten (2e-05 -> "2.0" on a "(x 1e-05)" axis): PLplot's own
  // exponent label sits outside the frame and gets cut off.
  int lr_exp = 0;
  if (!lrs.empty() && lrs.hi > 0) lr_exp = int(std::floor(std::log10(lrs.hi)));
  if (lr_exp >= -1 && lr_exp <= 2) lr_exp = 0;
  const double lr_unit = std::pow(10.0, lr_exp);
  for (double& v : lr_y) v /= lr_unit;
  Range lr_r{0, lrs.hi > 0 ? lrs.hi / lr_unit : 1};
  lr_r = lr_r.padded(0.08);
  lr_r.lo = 0;
  std::string lr_label = lr_exp == 0 ? "lr" : fmt::format("lr (×1e{})", lr_exp);

  std::string subtitle;
  if (!loss_y.empty()) {
    subtitle = fmt::format("step {}: loss {:.4f}", int64_t(loss_x.back()), loss_y.back());
    if (options.smoothing > 0) subtitle += fmt::format(" (smoothed {:.4f})", smooth.back());
  }
  if (!eval_y.empty())
    subtitle += fmt::format("{}eval {:.4f} at step {}", subtitle.empty() ? "" : ", ", eval_y.back(),
                            int64_t(eval_x.back()));

  chart::Palette palette(kColours);
  palette[kBackground] = {255, 255, 255};
  palette[kInk] = {40, 40, 40};
  palette[kRaw] = {160, 190, 230};
  palette[kSmooth] = {20, 80, 170};
  palette[kEval] = {215, 60, 40};
  palette[kLr] = {40, 140, 60};
  palette[kGrid] = {225, 225, 225};
  chart::write_png(png, options.width, options.height, palette, [&] {
    pladv(0);
    plschr(0, 0.85);

    // Top panel: the losses.
    plvpor(0.08, 0.97, 0.40, 0.89);
    frame(xr, yr, "bcst", "bcnstv");
    plcol0(kInk);
    plschr(0, 1.0);
    plmtex("t", 2.4, 0.5, 0.5, options.title.c_str());
    plschr(0, 0.75);
    if (!subtitle.empty()) plmtex("t", 1.0, 0.5, 0.5, subtitle.c_str());
    plschr(0, 0.85);
    plmtex("l", 3.6, 0.5, 0.5, "loss");
    if (no_data) {
      plptex((xr.lo + xr.hi) / 2, (yr.lo + yr.hi) / 2, 1, 0, 0.5, "no data yet");
    } else {
      line(loss_x, loss_y, kRaw, 1.0);
      if (options.smoothing > 0) line(loss_x, smooth, kSmooth, 2.5);
      if (!eval_x.empty()) {
        line(eval_x, eval_y, kEval, 1.5);
        plcol0(kEval);
        plstring(PLINT(eval_x.size()), eval_x.data(), eval_y.data(), "#(840)");
      }

      // The legend, top right inside the panel.
      std::string smooth_label = fmt::format("smoothed (EMA {:g})", options.smoothing);
      std::vector<const char*> text = {"train loss"};
      std::vector<PLINT> opts = {PL_LEGEND_LINE}, line_colours = {kRaw}, line_styles = {1},
                         symbol_colours = {0}, symbol_numbers = {0}, text_colours = {kInk};
      std::vector<PLFLT> line_widths = {1.0}, symbol_scales = {1.0};
      std::vector<const char*> symbols = {""};
      if (options.smoothing > 0) {
        text.push_back(smooth_label.c_str());
        opts.push_back(PL_LEGEND_LINE);
        line_colours.push_back(kSmooth), line_styles.push_back(1), line_widths.push_back(2.5);
        symbol_colours.push_back(0), symbol_scales.push_back(1.0), symbol_numbers.push_back(0);
        symbols.push_back("");
        text_colours.push_back(kInk);
      }
      if (!eval_x.empty()) {
        text.push_back("eval loss");
        opts.push_back(PL_LEGEND_LINE | PL_LEGEND_SYMBOL);
        line_colours.push_back(kEval), line_styles.push_back(1), line_widths.push_back(1.5);
        symbol_colours.push_back(kEval), symbol_scales.push_back(1.0), symbol_numbers.push_back(1);
        symbols.push_back("#(840)");
        text_colours.push_back(kInk);
      }
      PLFLT legend_w = 0, legend_h = 0;
      PLINT n = PLINT(text.size());
      plschr(0, 0.75);
      pllegend(&legend_w, &legend_h, PL_LEGEND_BACKGROUND | PL_LEGEND_BOUNDING_BOX,
               PL_POSITION_TOP | PL_POSITION_RIGHT | PL_POSITION_INSIDE, 0.02, 0.03, 0.08,
               kBackground, kGrid, 1, 0, 0, n, opts.data(), 1.0, 0.8, 2.0, 0.0, text_colours.data(),
               text.data(), nullptr, nullptr, nullptr, nullptr, line_colours.data(),
               line_styles.data(), line_widths.data(), symbol_colours.data(), symbol_scales.data(),
               symbol_numbers.data(), symbols.data());
      plschr(0, 0.85);
    }

    // Bottom panel: the learning rate on the same steps.
    plvpor(0.08, 0.97, 0.10, 0.31);
    frame(xr, lr_r, "bcnst", "bcnstv");
    plcol0(kInk);
    plmtex("b", 2.6, 0.5, 0.5, "step");
    plmtex("l", 3.6, 0.5, 0.5, lr_label.c_str());
    line(lr_x, lr_y, kLr, 2.0);
  });
}

}  // namespace seqit::train
