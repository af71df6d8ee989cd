// Training from scratch on the world: the IT arm's data, a model folder written by
// write_scratch_model (random weights, the world tokenizer), seqit's own trainer
// (train::run_training, what `seqit train` runs). The loss must fall from about ln(vocab), where a
// random model starts, to below the entropy of the trained tokens' frequencies.
// SEQIT_STUDY_SMOKE_STEPS sets the number of steps (default 200).
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "study/arms.h"
#include "study/scratch_model.h"
#include "testing.h"
#include "tokenizer/tokenizer.h"
#include "train/metrics.h"
#include "train/recipe.h"
#include "train/run.h"
#include "util/file_io.h"

using namespace seqit;

TEST(StudyTrainSmoke, ScratchModelLearnsTheItArm) {
  const char* env = std::getenv("SEQIT_STUDY_SMOKE_STEPS");
  const int64_t steps = env ? std::atoll(env) : 200;
  seqit::testing::allow_seconds(static_cast<int>(60 + steps));
  // SEQIT_STUDY_SMOKE_DIR keeps the model folder, the data and the run there (it must not hold a
  // run already); by default everything goes to a temporary folder.
  seqit::testing::TempDir temp;
  const char* keep = std::getenv("SEQIT_STUDY_SMOKE_DIR");
  const std::filesystem::path dir = keep ? std::filesystem::path(keep) : temp.path();

  const model::ModelConfig config = study::world_model_config();
  study::write_scratch_model(dir / "model", config, 42);
  const auto tok = tokenizer::load_tokenizer(dir / "model");
  ASSERT_EQ(static_cast<int64_t>(tok->vocab_size()), config.vocab_size);

  study::ArmOptions o;
  o.seed = 3;
  o.items = 3000;
  o.work_dir = dir / "arms";
  const study::Arms arms = study::build_arms(o, *tok);
  // The entropy of the trained tokens' unigram distribution (reply tokens and EOS): the loss of a
  // model that learned only how often each token is trained, from no context at all.
  std::map<tokenizer::TokenId, double> counts;
  double trained = 0;
  for (const data::Instruction& r : arms.it.records) {
    for (tokenizer::TokenId id : tok->encode(r.output, {.add_special = false})) ++counts[id];
    ++counts[*tok->eos_id()];
    trained += static_cast<double>(tok->encode(r.output, {.add_special = false}).size()) + 1;
  }
  double unigram = 0;
  for (const auto& [id, n] : counts) unigram -= n / trained * std::log(n / trained);
  nlohmann::json data = nlohmann::json::array();
  for (const data::Instruction& r : arms.it.records)
    data.push_back({{"instruction", r.instruction}, {"input", r.input}, {"output", r.output}});
  write_file_atomic(dir / "it.json", data.dump());

  train::TrainRecipe r;
  r.model = (dir / "model").string();
  r.data = {(dir / "it.json").string()};
  r.output_dir = (dir / "run").string();
  r.chat_template = "tulu";
  r.default_system = "";
  r.max_len = 128;
  r.micro_batch_size = 16;
  r.max_steps = steps;
  r.epochs = 100;
  r.lr = 3e-3;
  r.schedule = train::ScheduleKind::cosine;
  r.warmup_ratio = 0.05;
  r.weight_decay = 0;
  r.compute_dtype = train::ComputeDtype::f32;
  r.threads = 2;
  r.log_every = 1;
  train::RunOptions ro;
  ro.progress = false;
  const auto start = std::chrono::steady_clock::now();
  const train::RunResult result = train::run_training(r, ro);
  const double wall =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(result.finished);
  ASSERT_EQ(result.steps, steps);

  const auto rows = train::read_metrics(dir / "run" / "metrics.jsonl");
  ASSERT_GE(rows.size(), 20u);
  auto mean_loss = [&](size_t from, size_t to) {
    double sum = 0;
    for (size_t i = from; i < to; ++i) sum += *rows[i].loss;
    return sum / static_cast<double>(to - from);
  };
  const double first = mean_loss(0, 5), last = mean_loss(rows.size() - 10, rows.size());
  std::printf(
      "%lld steps in %.1f s (%.3f s/step, training %.1f s); loss %.3f -> %.3f (ln V = %.3f, "
      "unigram entropy %.3f)\n",
      static_cast<long long>(steps), wall, rows.back().elapsed_s / static_cast<double>(steps),
      rows.back().elapsed_s, first, last, std::log(static_cast<double>(config.vocab_size)),
      unigram);
  // A random model starts near ln(V); the trained one ends below what token frequencies alone give,
  // so it reads its context.
  EXPECT_NEAR(first, std::log(static_cast<double>(config.vocab_size)), 1.0);
  EXPECT_LT(last, unigram);
}
