// Learning-rate schedules with linear warmup, exactly Hugging Face transformers' (optimization.py):
//
//   warmup w, total steps N, step s = optimizer updates already done (LambdaLR's last_epoch: the lr
//   of update s+1; scheduler.step() runs after each optimizer.step()). lr(s) = base_lr · f(s):
//
//   get_linear_schedule_with_warmup:
//     f(s) = s / max(1, w)                                  if s < w
//            max(0, (N - s) / max(1, N - w))                otherwise
//   get_cosine_schedule_with_warmup (num_cycles = 0.5: half a cosine, from 1 down to 0):
//     f(s) = s / max(1, w)                                  if s < w
//            p = (s - w) / max(1, N - w)
//            max(0, 0.5 · (1 + cos(π · num_cycles · 2 · p)))  otherwise
//   get_constant_schedule_with_warmup:
//     f(s) = s / max(1, w)                                  if s < w
//            1                                              otherwise
//
// So the first update (s = 0) has lr 0 when there is warmup, as in HF. The warmup length is
// TrainingArguments.get_warmup_steps: warmup_steps when given (> 0), else ceil(N · warmup_ratio).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace seqit::train {

enum class ScheduleKind { linear, cosine, constant };
std::string_view schedule_name(ScheduleKind kind);  // "linear", "cosine", "constant"
// Throws seqit::Error listing the valid names.
ScheduleKind parse_schedule(std::string_view name);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::linear;
  double base_lr = 0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 0;  // N: optimizer updates of the whole run

  // The lr of the update that follows `step` completed updates (0 <= step; past N it stays at the
  // schedule's end value: 0 for linear and cosine).
  double lr(int64_t step) const;
  // The multiplier f(step) (lr / base_lr).
  double factor(int64_t step) const;
  bool operator==(const LrSchedule&) const = default;
};

// HF's warmup length: `steps` when given and > 0, else math.ceil(total_steps · ratio), the product
// taken in double as Python does (390 · 0.03 = 11.7 -> 12; 100 · 0.03 = 3.0 -> 3).
int64_t warmup_steps_for(int64_t total_steps, double ratio, std::optional<int64_t> steps = {});

// Optimizer updates in a run of `epochs` over `micro_batches_per_epoch` micro-batches with
// `grad_accum` micro-batches per update: ceil(micro_batches_per_epoch / grad_accum) per epoch, as
// open-instruct's finetune.py (the paper's script) counts (the last update of an epoch may sum
// fewer micro-batches); max_steps, when given, replaces the count (HF: it overrides
// num_train_epochs).
int64_t total_optimizer_steps(int64_t micro_batches_per_epoch, int64_t grad_accum, int64_t epochs,
                              std::optional<int64_t> max_steps = {});

}  // namespace seqit::train
