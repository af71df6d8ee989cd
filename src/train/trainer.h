// One optimiser step of supervised fine-tuning, done right: the micro-batches of a step are run
// forward and backward with their gradients accumulated, the step's loss is the mean over ALL
// trainable tokens of the step (not a mean of per-micro-batch means: every micro-batch's loss sum
// is scaled by 1 / the step's total target count before its backward pass, so uneven micro-batches
// weigh by their tokens, as one big batch would), the global gradient norm is clipped, and AdamW
// (decoupled weight decay, none on norms and biases) updates every trainable tensor. The reported
// loss is that same number.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dist/communicator.h"
#include "model/train_network.h"
#include "tensor/tensor.h"
#include "train/batcher.h"

namespace seqit::model {
class LlamaModel;
}

namespace seqit::train {

struct OptimizerConfig {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;   // applied to matrices only (Parameter::decay)
  double max_grad_norm = 1.0;  // clip the global norm to this; 0 = no clipping
};

struct StepStats {
  double loss = 0;            // mean cross-entropy over the step's trainable tokens
  int64_t target_tokens = 0;  // trainable tokens of the step (all micro-batches)
  int64_t tokens = 0;         // real (non-padding) tokens processed
  int64_t slots = 0;          // rows x length summed over micro-batches (padding included)
  double grad_norm = 0;       // global norm before clipping
  bool clipped = false;
  float lr = 0;
  // Several processes: seconds spent waiting for gradient sums after this rank's backward pass
  // (what the overlap with the backward did not hide).
  double sync_wait_s = 0;
};

struct EvalStats {
  double loss = 0;  // mean over the trainable tokens of every batch
  int64_t target_tokens = 0;
};

class GradientSync;  // train/data_parallel.h

// The batcher's arrays as the network takes them.
model::TrainBatch to_train_batch(const Batch& batch);

class Trainer {
 public:
  // `model` and `comm` must outlive the trainer. The network (gradients, adapters) is created here.
  // With a communicator of several ranks the trainer is data-parallel: each rank passes its own
  // share of every step's micro-batches, and every rank takes the same step.
  Trainer(model::LlamaModel& model, const model::TrainOptions& network, OptimizerConfig optimizer,
          uint64_t seed, dist::Communicator& comm = dist::single_process());
  ~Trainer();

  // One optimiser step over `micro_batches` (this rank's share of the step) at learning rate `lr`.
  // The loss and its gradient are the mean over the trainable tokens of the whole step, all ranks
  // together; the returned counts are the whole step's. A step whose micro-batches hold no
  // trainable token (on any rank) changes nothing and returns target_tokens = 0.
  StepStats step(std::span<const Batch> micro_batches, float lr);
  // Loss over held-out batches (this rank's share), no gradients (LoRA dropout off); the result is
  // over every rank's.
  EvalStats evaluate(std::span<const Batch> batches);
  // Bytes of gradients summed across ranks per step (0 for one process).
  int64_t sync_bytes_per_step() const;

  // Optimiser steps taken so far (AdamW's bias correction counts from here).
  int64_t steps() const { return steps_; }
  model::TrainNetwork& network() { return *network_; }

  // Everything a checkpoint must hold to continue bit-identically: the trainable tensors' values
  // and AdamW's first and second moments, by name ("<param>", "<param>.exp_avg",
  // "<param>.exp_avg_sq"), all contiguous f32. Writing into these tensors restores the state.
  struct StateTensor {
    std::string name;
    tensor::Tensor tensor;
  };
  std::vector<StateTensor> state_tensors();
  void restore_steps(int64_t steps) { steps_ = steps; }

 private:
  model::LlamaModel& model_;
  std::unique_ptr<model::TrainNetwork> network_;
  OptimizerConfig optimizer_;
  uint64_t seed_;
  dist::Communicator& comm_;
  std::unique_ptr<GradientSync> sync_;  // several ranks only
  int64_t steps_ = 0;
  std::vector<tensor::Tensor> exp_avg_, exp_avg_sq_;  // one pair per parameter
};

}  // namespace seqit::train
