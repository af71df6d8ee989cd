// The loss chart of a run, OUTPUT/loss.png: the training loss per step (thin), its smoothed curve
// (bold), the eval loss (points), and the learning rate in a panel below, on the same step axis.
// Drawn with PLplot (its pngcairo device: antialiased lines, real fonts) from the metrics rows.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "train/metrics.h"

namespace seqit::train {

struct LossChartOptions {
  int width = 1200;  // pixels
  int height = 800;
  std::string title = "training loss";
  // Smoothing of the training loss: an exponential moving average with this weight, debiased at
  // the start (TensorBoard's rule); 0 = none.
  double smoothing = 0.9;
};

// Writes the chart as a PNG (atomically: the old chart stays until the new one is complete). Rows
// without a loss or eval loss are skipped for that series; with no data at all the chart says so.
// Throws seqit::Error when PLplot lacks the pngcairo device (install plplot-driver-cairo) or the
// file cannot be written.
void write_loss_chart(const std::filesystem::path& png, const std::vector<MetricsRow>& rows,
                      const LossChartOptions& options = {});

// The smoothed series (same length as `values`).
std::vector<double> smooth_ema(const std::vector<double>& values, double weight);

}  // namespace seqit::train
