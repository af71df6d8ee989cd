// Data-parallel training over a dist::Communicator (docs/training.md, "Several processes"): every
// process holds the whole model and runs its share of each optimiser step's micro-batches; the
// gradients are summed across processes while the backward pass is still running, so every
// process then takes the same AdamW step on the same numbers.
#pragma once

#include <cstdint>
#include <vector>

#include "dist/communicator.h"
#include "model/train_network.h"

namespace seqit::train {

// Which rank runs each item of a step: longest processing time first (items by cost, largest
// first, each to the rank with the least cost so far; ties to the lower rank), so that ranks
// finish together. The same answer on every rank (it depends only on the costs). Returns the rank
// of each item, in item order.
std::vector<int> assign_to_ranks(const std::vector<int64_t>& costs, int ranks);

// Sums the gradients of every trainable tensor across the ranks, stage by stage of the backward
// pass (model::Parameter::stage): arm() before this rank's last backward pass of the step; the
// network's gradient hook then calls stage_ready() as each stage completes, which starts that
// stage's sums (non-blocking, in place) and lets the earlier ones progress; finish() starts
// whatever is left (a rank with no micro-batch starts every stage there) and waits for all.
// Every rank starts the same sums in the same order (stage 0 first), as MPI requires.
// SEQIT_DP_OVERLAP=0 (for measuring what the overlap gains: bench_train --mpi) starts every sum in
// finish() instead.
class GradientSync {
 public:
  GradientSync(dist::Communicator& comm, std::vector<model::Parameter>& parameters, int stages);

  void arm();
  void stage_ready(int stage);
  void finish();

  // Seconds finish() spent waiting for sums that were started earlier (communication the backward
  // pass did not hide), and in all; bytes summed per step.
  double last_wait_seconds() const { return last_wait_s_; }
  int64_t bytes_per_step() const { return bytes_per_step_; }

 private:
  void start(int stage);
  dist::Communicator& comm_;
  std::vector<std::vector<model::Parameter*>> by_stage_;
  std::vector<int> handles_;  // started sums, in order
  int next_ = 0;              // the next stage to start (stages start in order)
  bool overlap_ = true;
  double last_wait_s_ = 0;
  int64_t bytes_per_step_ = 0;
};

}  // namespace seqit::train
