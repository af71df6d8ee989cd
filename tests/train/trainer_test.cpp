// The optimiser step (train/trainer.h): loss normalisation over the whole step, gradient
// accumulation, clipping, and a real fine-tuning run of stories260K on instructions from the shared
// Alpaca data whose held-out loss falls and whose greedy answers move to the trained ones.
#include "train/trainer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "chat/chat_template.h"
#include "data/reader.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/sft_data.h"

namespace seqit::train {
namespace {

using model::LlamaModel;
using tensor::Tensor;

model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 96, c.hidden_size = 48, c.intermediate_size = 80, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 12, c.max_position_embeddings = 128;
  c.tie_word_embeddings = false;
  return c;
}

std::unique_ptr<LlamaModel> tiny_model() {
  model::RandomWeights weights(tiny_config(), 11, 0.15f);
  return LlamaModel::load(weights);
}

// An example of `length` random tokens whose first `prompt` positions are not trained.
Example random_example(std::mt19937& rng, int64_t length, int64_t prompt) {
  Example e;
  for (int64_t t = 0; t < length; ++t) e.tokens.push_back(static_cast<TokenId>(rng() % 96));
  e.targets.assign(static_cast<size_t>(length), kIgnoreIndex);
  for (int64_t t = prompt; t + 1 < length; ++t) {
    e.targets[static_cast<size_t>(t)] = e.tokens[static_cast<size_t>(t + 1)];
    ++e.target_count;
  }
  return e;
}

std::vector<float> values(const Tensor& t) {
  const float* p = t.data<float>();
  return {p, p + t.numel()};
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(double(a[i]) - double(b[i])));
  return d;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, std::abs(double(x)));
  return m;
}

struct Accumulation {
  std::vector<Example> examples;
  std::vector<Batch> micro, whole;
};

// Three micro-batches with very different trainable-token counts (3, 40 and 2x20) against one batch
// that holds all four rows.
Accumulation accumulation_case() {
  std::mt19937 rng(3);
  Accumulation a;
  a.examples = {random_example(rng, 12, 8), random_example(rng, 45, 4), random_example(rng, 30, 9),
                random_example(rng, 26, 5)};
  BatchOptions options;
  options.batch_size = 4;
  options.max_len = 64;
  options.shuffle = false;
  BatchPlan plan(a.examples, options, 1);
  a.micro = {plan.materialize(MicroBatch{{{0}}}), plan.materialize(MicroBatch{{{1}}}),
             plan.materialize(MicroBatch{{{2}, {3}}})};
  a.whole = {plan.materialize(MicroBatch{{{0}, {1}, {2}, {3}}})};
  return a;
}

TEST(Trainer, GradientAccumulationEqualsOneBatchHoldingEveryMicroBatch) {
  Accumulation a = accumulation_case();
  ASSERT_EQ(a.micro[0].count_targets(), 3);
  ASSERT_EQ(a.micro[1].count_targets(), 40);
  OptimizerConfig opt;
  opt.weight_decay = 0.1f;
  opt.max_grad_norm = 0;  // compare the raw accumulated gradients
  auto model_a = tiny_model(), model_b = tiny_model();
  Trainer accumulated(*model_a, {}, opt, 5), one_batch(*model_b, {}, opt, 5);
  const StepStats sa = accumulated.step(a.micro, 1e-3f);
  const StepStats sb = one_batch.step(a.whole, 1e-3f);
  EXPECT_EQ(sa.target_tokens, sb.target_tokens);
  EXPECT_NEAR(sa.loss, sb.loss, 1e-6 * sb.loss) << "the logged loss is the one-batch loss";
  EXPECT_NEAR(sa.grad_norm, sb.grad_norm, 1e-5 * sb.grad_norm);

  // The naive mean of per-micro-batch means differs clearly here, so this test can tell.
  double mean_of_means = 0;
  for (const Batch& b : a.micro) {
    auto fresh = tiny_model();
    Trainer probe(*fresh, {}, opt, 5);
    mean_of_means += probe.evaluate(std::span<const Batch>(&b, 1)).loss / 3.0;
  }
  EXPECT_GT(std::abs(mean_of_means - sb.loss), 1e-3);

  // AdamW's first moment after one step is (1 - beta1) · gradient: every gradient agrees.
  auto state_a = accumulated.state_tensors(), state_b = one_batch.state_tensors();
  ASSERT_EQ(state_a.size(), state_b.size());
  for (size_t i = 0; i < state_a.size(); ++i) {
    SCOPED_TRACE(state_a[i].name);
    ASSERT_EQ(state_a[i].name, state_b[i].name);
    const auto va = values(state_a[i].tensor), vb = values(state_b[i].tensor);
    const double scale = std::max(max_abs(vb), 1e-30);
    EXPECT_LT(max_abs_diff(va, vb) / scale, 2e-5);
  }
}

// bf16 compute trains like f32: 60 AdamW steps on the same batches from the same start, the loss
// curves stay within a few percent of each other while the loss falls by more than half (a bf16
// path that lost a gradient term, or rounded the master weights, would fall slower or stall).
TEST(Trainer, Bf16ComputeConvergesLikeF32) {
  std::mt19937 rng(9);
  std::vector<Example> examples;
  for (int i = 0; i < 8; ++i) examples.push_back(random_example(rng, 24 + 4 * i, 3));
  BatchOptions bo;
  bo.batch_size = 4;
  bo.max_len = 64;
  bo.shuffle = false;
  BatchPlan plan(examples, bo, 1);
  const std::vector<Batch> batches = {plan.materialize(MicroBatch{{{0}, {1}, {2}, {3}}}),
                                      plan.materialize(MicroBatch{{{4}, {5}, {6}, {7}}})};
  auto model_f32 = tiny_model(), model_bf16 = tiny_model();
  model::TrainOptions bf16_options;
  bf16_options.compute = tensor::DType::bf16;
  OptimizerConfig opt;
  Trainer f32(*model_f32, {}, opt, 5), bf16(*model_bf16, bf16_options, opt, 5);
  const double first = f32.evaluate(batches).loss;
  double worst = 0, last_f32 = 0, last_bf16 = 0;
  for (int step = 0; step < 60; ++step) {
    last_f32 = f32.step(batches, 3e-3f).loss;
    last_bf16 = bf16.step(batches, 3e-3f).loss;
    worst = std::max(worst, std::abs(last_bf16 - last_f32) / last_f32);
  }
  const double eval_f32 = f32.evaluate(batches).loss, eval_bf16 = bf16.evaluate(batches).loss;
  std::printf(
      "[ bf16     ] loss %.4f -> f32 %.4f, bf16 %.4f after 60 steps; worst step gap %.2f%%\n",
      first, eval_f32, eval_bf16, 100 * worst);
  EXPECT_LT(eval_f32, 0.5 * first);
  EXPECT_LT(eval_bf16, 0.5 * first);
  EXPECT_NEAR(eval_bf16, eval_f32, 0.03 * eval_f32);
  EXPECT_LT(worst, 0.05);
}

TEST(Trainer, ClippingScalesTheGlobalNormAndEmptyStepsChangeNothing) {
  Accumulation a = accumulation_case();
  OptimizerConfig clipped;
  clipped.max_grad_norm = 0.01;
  OptimizerConfig free;
  free.max_grad_norm = 0;
  auto model_a = tiny_model(), model_b = tiny_model();
  Trainer ta(*model_a, {}, clipped, 5), tb(*model_b, {}, free, 5);
  const StepStats sa = ta.step(a.whole, 1e-3f), sb = tb.step(a.whole, 1e-3f);
  ASSERT_GT(sb.grad_norm, 0.01);
  EXPECT_TRUE(sa.clipped);
  EXPECT_FALSE(sb.clipped);
  const double factor = 0.01 / (sb.grad_norm + 1e-6);
  auto state_a = ta.state_tensors(), state_b = tb.state_tensors();
  for (size_t i = 1; i < state_a.size(); i += 3) {  // exp_avg of each parameter
    const auto va = values(state_a[i].tensor), vb = values(state_b[i].tensor);
    for (size_t k = 0; k < va.size(); k += 7)
      ASSERT_NEAR(va[k], vb[k] * factor, 1e-6 * std::abs(vb[k]) + 1e-12) << state_a[i].name;
  }
  // A step without any trainable token: no update, no step counted.
  Batch empty = a.micro[0];
  std::fill(empty.targets.begin(), empty.targets.end(), kIgnoreIndex);
  const auto before = values(ta.state_tensors()[0].tensor);
  const StepStats se = ta.step(std::span<const Batch>(&empty, 1), 1e-3f);
  EXPECT_EQ(se.target_tokens, 0);
  EXPECT_EQ(ta.steps(), 1);
  EXPECT_EQ(values(ta.state_tensors()[0].tensor), before);
}

// ---- a real run
// ----------------------------------------------------------------------------------

// Greedy continuation of `prompt` (ids) by `count` tokens, through the full-sequence forward.
std::vector<TokenId> greedy(const LlamaModel& model, std::vector<TokenId> ids, int count) {
  std::vector<TokenId> out;
  for (int i = 0; i < count; ++i) {
    const Tensor logits = model.forward_sequence(ids);
    const float* last = logits.data<float>() + (logits.size(0) - 1) * logits.size(1);
    const TokenId next = static_cast<TokenId>(std::max_element(last, last + logits.size(1)) - last);
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

TEST(Trainer, FineTuningStories260KOnAlpacaLowersHeldOutLossAndTeachesTheAnswers) {
  seqit::testing::allow_seconds(120);
  const auto model_path = seqit::testing::shared_data("models/stories260K/stories260K.bin");
  auto tok =
      tokenizer::load_tokenizer(seqit::testing::shared_data("models/stories260K/tok512.bin"));
  auto model = LlamaModel::load(model_path);
  // Short Alpaca instructions with short answers: 48 to train on, 16 held out.
  auto records = data::read_all(seqit::testing::shared_data("train/alpaca/alpaca_5000.json"));
  std::vector<data::Record> picked;
  for (const data::Record& r : records) {
    const auto* ins = std::get_if<data::Instruction>(&r);
    if (ins && ins->input.empty() && ins->instruction.size() < 60 && ins->output.size() < 40 &&
        ins->output.size() > 3)
      picked.push_back(r);
    if (picked.size() == 64) break;
  }
  ASSERT_EQ(picked.size(), 64u);
  const chat::ChatTemplate tulu = chat::ChatTemplate::builtin("tulu");
  ExampleOptions eo;
  eo.max_len = 256;
  SftExamples all = build_sft_examples(picked, tulu, *tok, eo, "alpaca_5000.json");
  ASSERT_EQ(all.examples.size(), 64u) << all.summary.describe();
  std::vector<Example> train_set(all.examples.begin(), all.examples.begin() + 48);
  std::vector<Example> held_out(all.examples.begin() + 48, all.examples.end());

  BatchOptions bo;
  bo.mode = BatchMode::packed;
  bo.batch_size = 4;
  bo.max_len = 256;
  BatchPlan plan(train_set, bo, 42), eval_plan(held_out, bo, 42);
  std::vector<Batch> eval_batches;
  for (const MicroBatch& mb : eval_plan.epoch_batches(0))
    eval_batches.push_back(eval_plan.materialize(mb));

  // Which training answers the model reproduces greedily (first 4 tokens after the prompt).
  auto answers_learned = [&](const LlamaModel& m) {
    int learned = 0;
    for (size_t i = 0; i < 16; ++i) {
      const Example& e = train_set[i];
      const auto first = std::find_if(e.targets.begin(), e.targets.end(),
                                      [](int32_t t) { return t != kIgnoreIndex; });
      const size_t prompt_len = static_cast<size_t>(first - e.targets.begin()) + 1;
      std::vector<TokenId> prompt(e.tokens.begin(), e.tokens.begin() + prompt_len);
      std::vector<TokenId> want(e.tokens.begin() + prompt_len,
                                e.tokens.begin() + std::min(e.tokens.size(), prompt_len + 4));
      if (greedy(m, prompt, static_cast<int>(want.size())) == want) ++learned;
    }
    return learned;
  };

  OptimizerConfig opt;
  opt.max_grad_norm = 1.0;
  Trainer trainer(*model, {}, opt, 42);
  const double eval_before = trainer.evaluate(eval_batches).loss;
  const int learned_before = answers_learned(*model);
  double first_loss = 0, last_loss = 0, eval_early = 0;
  BatchStream stream(plan);
  // 40 steps of 8 packed rows at lr 1e-3 memorise the 48 answers; the held-out loss falls first
  // (the answers' style and their EOS) and rises again as the model overfits, so it is measured
  // after 8 steps.
  const int steps = 40;
  for (int s = 0; s < steps; ++s) {
    std::vector<Batch> micro;
    for (int k = 0; k < 2; ++k) micro.push_back(plan.materialize(stream.next()));
    const StepStats st = trainer.step(micro, 1e-3f);
    ASSERT_TRUE(std::isfinite(st.loss));
    if (s == 7) eval_early = trainer.evaluate(eval_batches).loss;
    if (s == 0) first_loss = st.loss;
    last_loss = st.loss;
  }
  const int learned_after = answers_learned(*model);
  std::printf(
      "[train] stories260K on 48 Alpaca examples, %d steps: train loss %.3f -> %.3f, held-out "
      "%.3f -> %.3f after 8 steps, greedy answers learned %d/16 -> %d/16\n",
      steps, first_loss, last_loss, eval_before, eval_early, learned_before, learned_after);
  EXPECT_LT(last_loss, 0.2 * first_loss);
  EXPECT_LT(eval_early, eval_before - 0.8);
  EXPECT_LE(learned_before, 1);
  EXPECT_GE(learned_after, 8);
}

}  // namespace
}  // namespace seqit::train
