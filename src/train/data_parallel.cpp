#include "train/data_parallel.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <string>

#include "util/error.h"

namespace seqit::train {

std::vector<int> assign_to_ranks(const std::vector<int64_t>& costs, int ranks) {
  if (ranks < 1) throw Error(fmt::format("assign_to_ranks: {} ranks", ranks));
  std::vector<size_t> order(costs.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return costs[a] > costs[b]; });
  std::vector<int64_t> load(static_cast<size_t>(ranks), 0);
  std::vector<int> rank_of(costs.size(), 0);
  for (const size_t item : order) {
    const auto least =
        static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    rank_of[item] = static_cast<int>(least);
    load[least] += costs[item];
  }
  return rank_of;
}

GradientSync::GradientSync(dist::Communicator& comm, std::vector<model::Parameter>& parameters,
                           int stages)
    : comm_(comm), by_stage_(static_cast<size_t>(stages)) {
  if (const char* env = std::getenv("SEQIT_DP_OVERLAP")) overlap_ = std::string(env) != "0";
  for (model::Parameter& p : parameters) {
    if (p.stage < 0 || p.stage >= stages)
      throw Error(
          fmt::format("GradientSync: parameter {} has stage {} of {}", p.name, p.stage, stages));
    if (!p.grad.is_contiguous())
      throw Error(fmt::format("GradientSync: the gradient of {} is not contiguous", p.name));
    by_stage_[static_cast<size_t>(p.stage)].push_back(&p);
    bytes_per_step_ += p.grad.numel() * static_cast<int64_t>(sizeof(float));
  }
}

void GradientSync::arm() {
  handles_.clear();
  next_ = 0;
  last_wait_s_ = 0;
}

void GradientSync::start(int stage) {
  for (model::Parameter* p : by_stage_[static_cast<size_t>(stage)])
    handles_.push_back(
        comm_.start_allreduce_sum({p->grad.data<float>(), static_cast<size_t>(p->grad.numel())}));
}

void GradientSync::stage_ready(int stage) {
  if (!overlap_) return;  // everything starts in finish()
  // Stages complete in order; start every stage up to this one that has not started.
  while (next_ <= stage && next_ < static_cast<int>(by_stage_.size())) start(next_++);
  // Progress for the sums in flight (MPI moves non-blocking collectives along inside its calls).
  for (const int h : handles_) {
    if (!comm_.test(h)) break;
  }
}

void GradientSync::finish() {
  while (next_ < static_cast<int>(by_stage_.size())) start(next_++);
  const auto t0 = std::chrono::steady_clock::now();
  for (const int h : handles_) comm_.wait(h);
  handles_.clear();
  last_wait_s_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace seqit::train
