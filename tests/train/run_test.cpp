// Whole runs (train/run.h, `seqit train`): a run stopped after N steps and resumed ends bit for bit
// where the straight run ends (weights, optimiser state, data order, metrics), mid-epoch and with
// gradient accumulation, for full fine-tuning and LoRA with dropout; kill -9 and SIGTERM lose
// nothing; bad recipes and foreign checkpoints are clear errors.
#include "train/run.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "model/checkpoint.h"
#include "model/convert.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "testing.h"
#include "train/metrics.h"
#include "train/recipe.h"
#include "train/run_dir.h"
#include "train_testing.h"

namespace seqit::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using seqit::testing::shared_data;

// 40 short Alpaca records in a file of their own.
fs::path small_data(const seqit::testing::TempDir& dir) {
  return short_alpaca(dir, 40);
}

// stories260K, 40 examples, micro-batches of 2, 2 per step: 10 steps per epoch; 14 steps cross an
// epoch.
TrainRecipe recipe(const fs::path& data, const fs::path& out, bool lora) {
  std::vector<std::string> o = {
      "model=" + shared_data("models/stories260K/stories260K.bin").string(),
      "data=[" + data.string() + "]",
      "output_dir=" + out.string(),
      "template=tulu",
      "max_len=192",
      "batch_mode=grouped",
      "micro_batch_size=2",
      "gradient_accumulation=2",
      "epochs=2",
      "max_steps=14",
      "lr=1e-3",
      "schedule=linear",
      "warmup_ratio=0.1",
      "weight_decay=0.01",
      "eval_count=4",
      "eval_every=5",
      "log_every=1",
      "keep_last=2",
      "threads=2",
      "seed=7",
  };
  if (lora) {
    for (const char* s : {"method=lora", "lora.rank=4", "lora.alpha=8", "lora.dropout=0.1"})
      o.push_back(s);
  }
  return recipe_from_overrides(o);
}

// The metrics that must repeat exactly (not the timings).
std::vector<std::string> numbers(const fs::path& metrics) {
  std::vector<std::string> out;
  for (const MetricsRow& r : read_metrics(metrics))
    out.push_back(fmt::format("{} {} {} {} {} {}", r.step, r.loss.value_or(-1), r.lr,
                              r.grad_norm.value_or(-1), r.eval_loss.value_or(-1), r.tokens));
  return out;
}

void expect_same_final(const fs::path& a, const fs::path& b) {
  for (const char* f :
       {"final/model/model.safetensors", "final/adapter/adapter_model.safetensors"}) {
    SCOPED_TRACE(f);
    ASSERT_EQ(fs::exists(a / f), fs::exists(b / f));
    if (fs::exists(a / f)) {
      EXPECT_TRUE(seqit::testing::slurp(a / f) == seqit::testing::slurp(b / f)) << "differ";
    }
  }
  EXPECT_EQ(numbers(a / "metrics.jsonl"), numbers(b / "metrics.jsonl"));
}

class Resume : public ::testing::TestWithParam<bool> {};

TEST_P(Resume, StoppedAndResumedRunsEndBitForBitWhereTheStraightRunEnds) {
  seqit::testing::allow_seconds(120);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  RunOptions quiet;
  quiet.progress = false;
  const RunResult straight = run_training(recipe(data, dir / "straight", GetParam()), quiet);
  ASSERT_TRUE(straight.finished);
  EXPECT_EQ(straight.steps, 14);

  // 3 steps (mid-epoch), then 8 more (into the second epoch), then the rest.
  RunOptions part = quiet;
  part.stop_after = 3;
  const RunResult first = run_training(recipe(data, dir / "split", GetParam()), part);
  EXPECT_FALSE(first.finished);
  EXPECT_EQ(first.steps, 3);
  EXPECT_TRUE(fs::exists(dir / "split/checkpoints/step-000003/checkpoint.json"));
  part.resume = true;
  part.stop_after = 8;
  EXPECT_EQ(run_training(recipe(data, dir / "split", GetParam()), part).steps, 11);
  part.stop_after = 0;
  const RunResult last = run_training(recipe(data, dir / "split", GetParam()), part);
  EXPECT_TRUE(last.finished);
  EXPECT_EQ(last.steps, 14);
  expect_same_final(dir / "straight", dir / "split");
  // keep_last 2: the checkpoints at 3 and 11 remain, nothing half-written beside them.
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir / "split/checkpoints"))
    names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step-000003", "step-000011"}));
  EXPECT_TRUE(fs::exists(dir / "split/loss.png"));
}
INSTANTIATE_TEST_SUITE_P(FullAndLora, Resume, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "Lora" : "Full"; });

// init: random — training from scratch from a config.json: the weights depend only on the seed,
// the loss falls from ln(vocab), the run resumes like any other, and the final folder loads.
TEST(Run, FromScratchWithAConfigAndATokenizer) {
  seqit::testing::allow_seconds(120);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  seqit::testing::spit(dir / "config.json", R"({"architectures": ["LlamaForCausalLM"],
    "model_type": "llama", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 172,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "tie_word_embeddings": false})");
  auto scratch = [&](const fs::path& out, uint64_t seed) {
    TrainRecipe r = recipe(data, out, false);
    r.model = (dir / "config.json").string();
    r.init = "random";
    r.tokenizer = shared_data("models/stories260K/tok512.bin").string();
    r.seed = seed;
    r.max_steps = 30;
    r.eval_every = 0;
    r.lr = 3e-3;
    return r;
  };
  RunOptions quiet;
  quiet.progress = false;
  ASSERT_TRUE(run_training(scratch(dir / "a", 1), quiet).finished);
  const auto rows = read_metrics(dir / "a/metrics.jsonl");
  ASSERT_GE(rows.size(), 30u);
  // A random model starts near ln(512) = 6.24 and learns.
  EXPECT_NEAR(*rows.front().loss, std::log(512.0), 0.5);
  EXPECT_LT(*rows.back().loss, *rows.front().loss - 1.0);
  // Same seed, same run; another seed, other weights.
  ASSERT_TRUE(run_training(scratch(dir / "b", 1), quiet).finished);
  expect_same_final(dir / "a", dir / "b");
  ASSERT_TRUE(run_training(scratch(dir / "c", 2), quiet).finished);
  EXPECT_FALSE(seqit::testing::slurp(dir / "a/final/model/model.safetensors") ==
               seqit::testing::slurp(dir / "c/final/model/model.safetensors"));
  // The final folder is a model like any other.
  const auto model = model::Checkpoint::open(dir / "a/final/model");
  EXPECT_EQ(model->config().num_layers, 2);
  // No tokenizer: an error naming the field.
  try {
    (void)recipe_from_overrides({"model=" + (dir / "config.json").string(), "init=random",
                                 "data=[" + data.string() + "]",
                                 "output_dir=" + (dir / "d").string()});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer"), std::string::npos) << e.what();
  }
}

TEST(Run, RefusesToOverwriteARunAndAForeignCheckpoint) {
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  RunOptions part;
  part.progress = false;
  part.stop_after = 1;
  run_training(recipe(data, dir / "run", false), part);
  try {
    run_training(recipe(data, dir / "run", false), part);
    ADD_FAILURE() << "a second fresh run over the same folder must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  // The same run folder resumed with another model (stories260K's vocabulary and tokenizer, other
  // sizes): the checkpoint's fingerprint says what differs.
  model::ModelConfig c =
      model::LlamaModel::load(shared_data("models/stories260K/stories260K.bin"))->config();
  c.hidden_size = 32;
  c.head_dim = 4;
  c.num_layers = 2;
  model::ExportOptions eo;
  eo.tokenizer = shared_data("models/stories260K/tok512.bin");
  model::write_hf_model(model::RandomWeights(c, 1), dir / "other-model", eo);
  TrainRecipe other = recipe(data, dir / "run", false);
  other.model = (dir / "other-model").string();
  part.resume = true;
  try {
    run_training(other, part);
    ADD_FAILURE() << "a checkpoint of another model must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("hidden_size: checkpoint 64, now 32"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("num_layers"), std::string::npos) << e.what();
  }
  // Recipe fields that fix the data stream are fingerprinted too.
  other = recipe(data, dir / "run", false);
  other.max_len = 100;
  try {
    run_training(other, part);
    ADD_FAILURE() << "a checkpoint from another recipe must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_len"), std::string::npos) << e.what();
  }
}

// ---- the command line ---------------------------------------------------------------------------

std::string train_command(const fs::path& data, const fs::path& out,
                          const std::string& extra = "") {
  return seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
         " --quiet train configs/tiny-stories.yaml data=[" + data.string() +
         "] output_dir=" + out.string() +
         " max_steps=12 save_every=1 keep_last=3 eval_count=4 eval_every=6 max_len=192 " + extra;
}

// Runs `command` from the source folder as a child whose pid is the command's own (exec).
pid_t spawn(const std::string& command) {
  const std::string line = "cd " +
                           seqit::testing::shell_quote(seqit::testing::source_dir().string()) +
                           " && exec " + command + " >/dev/null 2>&1";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execl("/bin/sh", "sh", "-c", line.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

bool wait_for(const fs::path& path, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

TEST(TrainCli, KillNineAndSigtermLoseNothingAndDuplicateNothing) {
  seqit::testing::allow_seconds(150);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  const std::string cd =
      "cd " + seqit::testing::shell_quote(seqit::testing::source_dir().string()) + " && ";
  std::string output;
  ASSERT_EQ(seqit::testing::run_command(cd + train_command(data, dir / "straight"), &output), 0)
      << output;

  // kill -9 as soon as the second checkpoint exists; then resume to the end.
  const pid_t killed = spawn(train_command(data, dir / "killed"));
  ASSERT_TRUE(wait_for(dir / "killed/checkpoints/step-000002/checkpoint.json", 60));
  ::kill(killed, SIGKILL);
  int status = 0;
  ::waitpid(killed, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the run ended before it could be killed";
  ASSERT_EQ(
      seqit::testing::run_command(cd + train_command(data, dir / "killed", "--resume"), &output), 0)
      << output;
  expect_same_final(dir / "straight", dir / "killed");

  // SIGTERM: a checkpoint at the step it stopped, exit 0, and the resumed run ends the same.
  const pid_t stopped = spawn(train_command(data, dir / "stopped"));
  ASSERT_TRUE(wait_for(dir / "stopped/checkpoints/step-000001/checkpoint.json", 60));
  ::kill(stopped, SIGTERM);
  ::waitpid(stopped, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  ASSERT_FALSE(latest_checkpoint(dir / "stopped") == std::nullopt);
  ASSERT_EQ(
      seqit::testing::run_command(cd + train_command(data, dir / "stopped", "--resume"), &output),
      0)
      << output;
  expect_same_final(dir / "straight", dir / "stopped");
}

TEST(TrainCli, BadRecipesNameTheFileLineAndField) {
  seqit::testing::TempDir dir;
  const fs::path bad = dir / "bad.yaml";
  seqit::testing::spit(
      bad, "model: m.bin\ndata: [d.json]\noutput_dir: out\nlora:\n  targets: [q, lm_head]\n");
  std::string output;
  EXPECT_NE(seqit::testing::run_command(
                seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) + " train " +
                    seqit::testing::shell_quote(bad.string()),
                &output),
            0);
  EXPECT_NE(output.find("bad.yaml:5"), std::string::npos) << output;
  EXPECT_NE(output.find("lm_head"), std::string::npos) << output;
}

}  // namespace
}  // namespace seqit::train
