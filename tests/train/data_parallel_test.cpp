// Data-parallel training (train/data_parallel.h, `mpirun -np N seqit train`): the split of a step
// between ranks, and whole runs under Open MPI's mpirun — one step on 2 ranks equals the
// single-process step over the same global batch, 2 ranks repeat bit for bit, a run checkpointed
// on 2 ranks resumes on 1 and the reverse with the same data order, a rank killed with -9 takes the
// job down naming the rank, and ranks that run different jobs are refused. The mpirun tests skip
// (saying why) where seqit was built without MPI or mpirun is missing.
#include "train/data_parallel.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "model/safetensors.h"
#include "testing.h"
#include "train/metrics.h"
#include "train_testing.h"

namespace seqit::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using seqit::testing::shared_data;
using seqit::testing::shell_quote;

TEST(AssignToRanks, BalancesCostLongestFirstAndIsTheSameOnEveryCall) {
  // 7 items on 2 ranks: 9 -> r0, 8 -> r1, 5 -> r1 (8 < 9), 4 -> r0 (9 < 13), 3 -> r0, 2 -> r1,
  // 1 -> r0 (16 < 17)... loads end 17 and 15.
  const std::vector<int64_t> costs = {5, 9, 1, 8, 3, 4, 2};
  const std::vector<int> ranks = assign_to_ranks(costs, 2);
  EXPECT_EQ(ranks, assign_to_ranks(costs, 2));
  std::array<int64_t, 2> load{};
  for (size_t i = 0; i < costs.size(); ++i) load[static_cast<size_t>(ranks[i])] += costs[i];
  EXPECT_EQ(load[0] + load[1], 32);
  EXPECT_LE(std::abs(load[0] - load[1]), 2) << load[0] << " vs " << load[1];
  EXPECT_EQ(ranks[1], 0);  // the largest goes to rank 0
  EXPECT_EQ(ranks[3], 1);  // the next to the emptier rank
  // One rank takes everything; more ranks than items leave some idle, never two items on one.
  EXPECT_EQ(assign_to_ranks(costs, 1), std::vector<int>(costs.size(), 0));
  const std::vector<int> spread = assign_to_ranks({3, 3}, 4);
  EXPECT_NE(spread[0], spread[1]);
  EXPECT_THROW(assign_to_ranks(costs, 0), Error);
}

// ---- whole runs under mpirun
// ----------------------------------------------------------------------

#define SKIP_WITHOUT_MPI()                                                   \
  do {                                                                       \
    if (const std::string why = seqit::testing::mpi_missing(); !why.empty()) \
      GTEST_SKIP() << "no data-parallel test here: " << why;                 \
  } while (0)

std::string mpirun(int ranks) {
  return seqit::testing::mpirun_command(ranks);
}

std::string seqit() {
  return shell_quote(seqit::testing::seqit_binary().string());
}

// 24 short Alpaca records.
fs::path small_data(const seqit::testing::TempDir& dir) {
  return short_alpaca(dir, 24);
}

// stories260K, micro-batches of 2, 4 examples per step (2 micro-batches: one per rank on 2 ranks),
// 5 steps per epoch (20 examples after the 4 held out); epsilon 1 makes AdamW's first steps nearly
// linear in the gradient, so that summation-order differences stay at their own size in the
// weights.
std::string train_args(const fs::path& data, const fs::path& out, int64_t steps,
                       const std::string& extra = "") {
  return fmt::format(
      " -q train model={} data=[{}] output_dir={} template=tulu max_len=160 micro_batch_size=2 "
      "effective_batch=4 max_steps={} lr=1e-2 adam_epsilon=1 warmup_ratio=0 schedule=constant "
      "eval_count=4 eval_every=2 save_every=2 threads=1 compute_dtype=f32 seed=3 {}",
      shell_quote(shared_data("models/stories260K/stories260K.bin").string()),
      shell_quote(data.string()), shell_quote(out.string()), steps, extra);
}

std::vector<float> weights(const fs::path& run) {
  auto file = model::SafetensorsSet::open(run / "final/model");
  std::vector<float> all;
  for (const model::StoredTensor* t : file->tensors()) {
    EXPECT_EQ(t->type, model::StorageType::f32) << t->name;
    const size_t n = t->nbytes / sizeof(float);
    const size_t at = all.size();
    all.resize(at + n);
    std::memcpy(all.data() + at, t->data, t->nbytes);
  }
  return all;
}

struct StepNumbers {
  int64_t step, tokens;
  double loss, grad_norm, eval_loss;
};
std::vector<StepNumbers> metrics(const fs::path& run) {
  std::vector<StepNumbers> out;
  for (const MetricsRow& r : read_metrics(run / "metrics.jsonl"))
    out.push_back({r.step, r.tokens, r.loss.value_or(-1), r.grad_norm.value_or(-1),
                   r.eval_loss.value_or(-1)});
  return out;
}

// Same steps, same data (token counts), the same numbers up to summation order.
void expect_same_run(const fs::path& a, const fs::path& b, double tolerance) {
  const std::vector<StepNumbers> ma = metrics(a), mb = metrics(b);
  ASSERT_EQ(ma.size(), mb.size());
  for (size_t i = 0; i < ma.size(); ++i) {
    SCOPED_TRACE(fmt::format("step {}", ma[i].step));
    EXPECT_EQ(ma[i].step, mb[i].step);
    EXPECT_EQ(ma[i].tokens, mb[i].tokens);
    EXPECT_NEAR(ma[i].loss, mb[i].loss, tolerance * std::abs(ma[i].loss));
    EXPECT_NEAR(ma[i].grad_norm, mb[i].grad_norm, tolerance * std::abs(ma[i].grad_norm));
    EXPECT_NEAR(ma[i].eval_loss, mb[i].eval_loss, tolerance * std::abs(ma[i].eval_loss) + 1e-12);
  }
  const std::vector<float> wa = weights(a), wb = weights(b);
  ASSERT_EQ(wa.size(), wb.size());
  double worst = 0;
  for (size_t i = 0; i < wa.size(); ++i)
    worst = seqit::testing::nan_max(worst, std::abs(double(wa[i]) - double(wb[i])));
  EXPECT_LT(worst, 1e-6) << "largest weight difference";
}

TEST(DataParallel, TwoRanksTakeTheSingleProcessStepsOverTheSameGlobalBatch) {
  SKIP_WITHOUT_MPI();
  seqit::testing::allow_seconds(120);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  std::string output;
  ASSERT_EQ(seqit::testing::run_command(seqit() + train_args(data, dir / "one", 3), &output), 0)
      << output;
  ASSERT_EQ(
      seqit::testing::run_command(mpirun(2) + seqit() + train_args(data, dir / "two", 3), &output),
      0)
      << output;
  expect_same_run(dir / "one", dir / "two", 1e-6);
  // Rank 0 alone wrote the run folder: one metrics row per step, the chart, the recipe.
  EXPECT_EQ(metrics(dir / "two").size(), 3u);
  EXPECT_TRUE(fs::exists(dir / "two/loss.png"));
  const std::string recipe = seqit::testing::slurp(dir / "two/recipe.yaml");
  EXPECT_NE(recipe.find("effective_batch: 4"), std::string::npos) << recipe;

  // With a fixed rank count the run repeats bit for bit.
  ASSERT_EQ(seqit::testing::run_command(mpirun(2) + seqit() + train_args(data, dir / "again", 3),
                                        &output),
            0)
      << output;
  EXPECT_TRUE(seqit::testing::slurp(dir / "two/final/model/model.safetensors") ==
              seqit::testing::slurp(dir / "again/final/model/model.safetensors"));
}

TEST(DataParallel, LoraWithAccumulationOnTwoRanksMatchesOneProcess) {
  SKIP_WITHOUT_MPI();
  seqit::testing::allow_seconds(120);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  // 8 examples per step: 2 micro-batches accumulated on each rank (4 in one process); the gradient
  // norms (~10) are clipped to 1, on the global norm.
  const std::string lora =
      "method=lora lora.rank=4 lora.alpha=8 lora.dropout=0.1 effective_batch=8 max_grad_norm=1";
  std::string output;
  ASSERT_EQ(seqit::testing::run_command(seqit() + train_args(data, dir / "one", 2, lora), &output),
            0)
      << output;
  ASSERT_EQ(seqit::testing::run_command(
                mpirun(2) + seqit() + train_args(data, dir / "two", 2, lora), &output),
            0)
      << output;
  expect_same_run(dir / "one", dir / "two", 1e-5);
}

TEST(DataParallel, ACheckpointOfTwoRanksResumesOnOneAndTheReverse) {
  SKIP_WITHOUT_MPI();
  seqit::testing::allow_seconds(180);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  std::string output;
  // 8 steps cross the end of the first epoch (5 steps).
  ASSERT_EQ(seqit::testing::run_command(seqit() + train_args(data, dir / "straight", 8), &output),
            0)
      << output;
  // 2 ranks for 3 steps (a checkpoint at step 3), then 1 process to the end...
  ASSERT_EQ(seqit::testing::run_command(
                mpirun(2) + seqit() + train_args(data, dir / "a", 8) + " --stop-after 3", &output),
            0)
      << output;
  EXPECT_FALSE(fs::exists(dir / "a/final"));
  ASSERT_EQ(
      seqit::testing::run_command(
          seqit() + " -q train " + shell_quote((dir / "a/recipe.yaml").string()) + " --resume",
          &output),
      0)
      << output;
  expect_same_run(dir / "straight", dir / "a", 1e-5);
  // ... and 1 process for 5 steps, then 2 ranks to the end.
  ASSERT_EQ(seqit::testing::run_command(
                seqit() + train_args(data, dir / "b", 8) + " --stop-after 5", &output),
            0)
      << output;
  ASSERT_EQ(
      seqit::testing::run_command(mpirun(2) + seqit() + " -q train " +
                                      shell_quote((dir / "b/recipe.yaml").string()) + " --resume",
                                  &output),
      0)
      << output;
  expect_same_run(dir / "straight", dir / "b", 1e-5);
}

TEST(DataParallel, RanksThatRunDifferentJobsAreRefusedNamingTheRankAndTheField) {
  SKIP_WITHOUT_MPI();
  seqit::testing::allow_seconds(60);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  // mpirun's MPMD form: rank 0 and rank 1 get different seeds.
  std::string output;
  const int status = seqit::testing::run_command(
      mpirun(1) + seqit() + train_args(data, dir / "x", 2) + " : -np 1 " + seqit() +
          train_args(data, dir / "x", 2, "seed=4"),
      &output);
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("do not run the same job"), std::string::npos) << output;
  EXPECT_NE(output.find("rank 1: recipe.seed"), std::string::npos) << output;
  EXPECT_FALSE(fs::exists(dir / "x/final"));
}

// The pid of rank `rank` of the job that mpirun `launcher` started (0 while it has not started).
pid_t rank_pid(pid_t launcher, int rank) {
  const std::string want = fmt::format("OMPI_COMM_WORLD_RANK={}", rank);
  for (const fs::directory_entry& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    if (!std::getline(stat, line)) continue;
    // pid (comm) state ppid ...
    const size_t close = line.rfind(')');
    if (close == std::string::npos) continue;
    int ppid = 0;
    char state = 0;
    if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2 || ppid != launcher)
      continue;
    std::ifstream env(e.path() / "environ", std::ios::binary);
    std::string var;
    while (std::getline(env, var, '\0'))
      if (var == want) return static_cast<pid_t>(std::stoi(name));
  }
  return 0;
}

TEST(DataParallel, ARankKilledWithSigkillEndsTheJobNamingItAndTheRunResumes) {
  SKIP_WITHOUT_MPI();
  seqit::testing::allow_seconds(180);
  seqit::testing::TempDir dir;
  const fs::path data = small_data(dir);
  const fs::path log = dir / "mpirun.log";
  const std::string command = "exec " + mpirun(2) + seqit() +
                              train_args(data, dir / "run", 5000, "save_every=4 eval_count=null") +
                              " > " + shell_quote(log.string()) + " 2>&1";
  const pid_t launcher = fork();
  ASSERT_GE(launcher, 0);
  if (launcher == 0) {
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first checkpoint, then kill rank 1.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!fs::exists(dir / "run/checkpoints") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const pid_t victim = rank_pid(launcher, 1);
  if (victim <= 0) kill(launcher, SIGKILL);
  ASSERT_GT(victim, 0) << "rank 1 not found";
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  int status = 0;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(waitpid(launcher, &status, 0), launcher);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 30) << "the job hung after a rank died";
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const std::string text = seqit::testing::slurp(log);
  EXPECT_NE(text.find("rank 1"), std::string::npos) << text;
  // The newest complete checkpoint resumes (on one process, 2 more steps).
  std::string output;
  ASSERT_EQ(seqit::testing::run_command(seqit() + " -q train " +
                                            shell_quote((dir / "run/recipe.yaml").string()) +
                                            " --resume --stop-after 2",
                                        &output),
            0)
      << output;
}

}  // namespace
}  // namespace seqit::train
