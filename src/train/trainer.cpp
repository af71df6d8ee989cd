#include "train/trainer.h"

#include <fmt/format.h>

#include <array>

#include "model/llama.h"
#include "tensor/ops.h"
#include "train/data_parallel.h"
#include "train/random_order.h"
#include "util/error.h"

namespace seqit::train {

using tensor::DType;
using tensor::Tensor;

model::TrainBatch to_train_batch(const Batch& batch) {
  model::TrainBatch t;
  t.batch = batch.rows;
  t.seq_len = batch.length;
  t.tokens.assign(batch.tokens.begin(), batch.tokens.end());
  t.targets = batch.targets;
  t.positions = batch.positions;
  t.segment_ids = batch.segment_ids;
  return t;
}

Trainer::Trainer(model::LlamaModel& model, const model::TrainOptions& network,
                 OptimizerConfig optimizer, uint64_t seed, dist::Communicator& comm)
    : model_(model),
      network_(std::make_unique<model::TrainNetwork>(model, network)),
      optimizer_(optimizer),
      seed_(seed),
      comm_(comm) {
  for (const model::Parameter& p : network_->parameters()) {
    exp_avg_.push_back(Tensor::zeros(p.value.shape(), DType::f32));
    exp_avg_sq_.push_back(Tensor::zeros(p.value.shape(), DType::f32));
  }
  if (comm_.size() > 1)
    sync_ =
        std::make_unique<GradientSync>(comm_, network_->parameters(), network_->backward_stages());
}

int64_t Trainer::sync_bytes_per_step() const {
  return sync_ ? sync_->bytes_per_step() : 0;
}

Trainer::~Trainer() = default;

StepStats Trainer::step(std::span<const Batch> micro_batches, float lr) {
  StepStats stats;
  stats.lr = lr;
  std::vector<int64_t> targets;
  for (const Batch& b : micro_batches) {
    targets.push_back(b.count_targets());
    stats.target_tokens += targets.back();
    stats.tokens += b.real_tokens;
    stats.slots += b.rows * b.length;
  }
  if (sync_) {  // the whole step's counts: every rank scales its gradients by the same total
    std::array<double, 3> counts{double(stats.target_tokens), double(stats.tokens),
                                 double(stats.slots)};
    comm_.allreduce_sum(counts);
    stats.target_tokens = static_cast<int64_t>(counts[0]);
    stats.tokens = static_cast<int64_t>(counts[1]);
    stats.slots = static_cast<int64_t>(counts[2]);
  }
  if (stats.target_tokens == 0) return stats;

  // Each micro-batch's gradient is that of loss_sum / (the whole step's target count): their sum
  // (over micro-batches, then over ranks) is the gradient of the step's token mean.
  model::TrainNetwork& net = *network_;
  net.zero_grads();
  net.set_step_seed(SplitMix64(seed_ ^ static_cast<uint64_t>(steps_ + 1)).next());
  const float grad_scale = 1.0f / static_cast<float>(stats.target_tokens);
  size_t last = micro_batches.size();  // this rank's last pass: its gradients go out as they form
  for (size_t i = 0; i < micro_batches.size(); ++i)
    if (targets[i] > 0) last = i;
  double loss_sum = 0;
  if (sync_) sync_->arm();
  for (size_t i = 0; i < micro_batches.size(); ++i) {
    if (targets[i] == 0) continue;
    if (sync_ && i == last) net.set_gradient_hook([this](int stage) { sync_->stage_ready(stage); });
    loss_sum += net.forward_backward(to_train_batch(micro_batches[i]), grad_scale).loss_sum;
  }
  if (sync_) {
    net.set_gradient_hook({});
    sync_->finish();
    stats.sync_wait_s = sync_->last_wait_seconds();
    std::array<double, 1> sum{loss_sum};
    comm_.allreduce_sum(sum);
    loss_sum = sum[0];
  }
  stats.loss = loss_sum / static_cast<double>(stats.target_tokens);

  std::vector<model::Parameter>& params = net.parameters();
  std::vector<Tensor> grads;
  grads.reserve(params.size());
  for (const model::Parameter& p : params) grads.push_back(p.grad);
  stats.grad_norm = tensor::global_grad_norm(grads);
  float clip = 1.0f;
  if (optimizer_.max_grad_norm > 0 && stats.grad_norm > optimizer_.max_grad_norm) {
    clip = static_cast<float>(optimizer_.max_grad_norm / (stats.grad_norm + 1e-6));
    stats.clipped = true;
  }
  ++steps_;
  tensor::AdamWConfig adam{lr, optimizer_.beta1, optimizer_.beta2, optimizer_.eps, 0.0f};
  for (size_t i = 0; i < params.size(); ++i) {
    adam.weight_decay = params[i].decay ? optimizer_.weight_decay : 0.0f;
    tensor::adamw_step(params[i].value, Tensor{}, params[i].grad, exp_avg_[i], exp_avg_sq_[i], adam,
                       steps_, clip);
  }
  return stats;
}

EvalStats Trainer::evaluate(std::span<const Batch> batches) {
  EvalStats stats;
  double loss_sum = 0;
  for (const Batch& b : batches) {
    if (b.count_targets() == 0) continue;
    const tensor::CrossEntropyResult r = network_->forward_loss(to_train_batch(b));
    loss_sum += r.loss_sum;
    stats.target_tokens += r.tokens;
  }
  if (comm_.size() > 1) {
    std::array<double, 2> sums{loss_sum, double(stats.target_tokens)};
    comm_.allreduce_sum(sums);
    loss_sum = sums[0];
    stats.target_tokens = static_cast<int64_t>(sums[1]);
  }
  if (stats.target_tokens > 0) stats.loss = loss_sum / static_cast<double>(stats.target_tokens);
  return stats;
}

std::vector<Trainer::StateTensor> Trainer::state_tensors() {
  std::vector<StateTensor> out;
  std::vector<model::Parameter>& params = network_->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    if (params[i].value.dtype() != DType::f32)
      throw Error(fmt::format("trainer: parameter {} is not f32", params[i].name));
    out.push_back({params[i].name, params[i].value});
    out.push_back({params[i].name + ".exp_avg", exp_avg_[i]});
    out.push_back({params[i].name + ".exp_avg_sq", exp_avg_sq_[i]});
  }
  return out;
}

}  // namespace seqit::train
