#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "util/error.h"

namespace seqit::train {

std::string_view schedule_name(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::linear:
      return "linear";
    case ScheduleKind::cosine:
      return "cosine";
    case ScheduleKind::constant:
      return "constant";
  }
  return "?";
}

ScheduleKind parse_schedule(std::string_view name) {
  for (ScheduleKind k : {ScheduleKind::linear, ScheduleKind::cosine, ScheduleKind::constant}) {
    if (name == schedule_name(k)) return k;
  }
  throw Error("unknown schedule '" + std::string(name) + "': expected linear, cosine or constant");
}

double LrSchedule::factor(int64_t step) const {
  // The arithmetic follows transformers' lambdas operation by operation (Python floats are
  // doubles), so the values agree to the last bit.
  const double s = double(step), w = double(warmup_steps), n = double(total_steps);
  if (step < warmup_steps) return s / std::max(1.0, w);
  switch (kind) {
    case ScheduleKind::linear:
      return std::max(0.0, (n - s) / std::max(1.0, n - w));
    case ScheduleKind::cosine: {
      const double num_cycles = 0.5;
      double progress = (s - w) / std::max(1.0, n - w);
      return std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * num_cycles * 2.0 * progress)));
    }
    case ScheduleKind::constant:
      return 1.0;
  }
  return 1.0;
}

double LrSchedule::lr(int64_t step) const {
  return base_lr * factor(step);
}

int64_t warmup_steps_for(int64_t total_steps, double ratio, std::optional<int64_t> steps) {
  if (steps && *steps > 0) return *steps;
  return int64_t(std::ceil(double(total_steps) * ratio));
}

int64_t total_optimizer_steps(int64_t micro_batches_per_epoch, int64_t grad_accum, int64_t epochs,
                              std::optional<int64_t> max_steps) {
  if (max_steps && *max_steps > 0) return *max_steps;
  if (grad_accum < 1) throw Error("gradient accumulation must be at least 1");
  int64_t per_epoch = (micro_batches_per_epoch + grad_accum - 1) / grad_accum;
  return per_epoch * epochs;
}

}  // namespace seqit::train
