// `seqit study --recipe`: the expansion of a recipe (params, foreach, stage references, globs,
// limits) and what a changed param reruns; errors that name the file, line and field; and the
// paper's Alpaca recipe end to end with stories260K as the model, the generator and the judge
// (--limit 2): every stage done, a rerun runs nothing, kill -9 in the middle resumes without
// redoing finished stages and ends with the same comparisons.
#include "study/recipe.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "testing.h"
#include "util/error.h"

namespace seqit::study {
namespace {
namespace fs = std::filesystem;
using seqit::testing::TempDir;

const char* kRecipe = R"(name: toy
about: a toy
params:
  model: ~
  words: [a, b]
  seeds: [1, 2]
  limit: -1
  extra: "--x 1"
limits:
  limit: 2
stages:
  - name: data
    run: data make ${model} --limit ${limit} -o ${out}
  - name: other
    run: data other ${extra} -o ${out}
  - name: train-${word}-s${seed}
    foreach: {word: "${words}", seed: "${seeds}"}
    run: train data=${stage:data}/d.json word=${word} seed=${seed} 'quoted arg' out=${out}
  - name: report
    run: compare ${stages:train-*} --label ${names:train-a-*} -o ${out}
)";

const RecipeStage& stage(const RecipePlan& plan, const std::string& name) {
  for (const auto& s : plan.stages)
    if (s.name == name) return s;
  throw Error("no stage " + name);
}

TEST(StudyRecipe, ExpandsForeachStageReferencesGlobsAndLimits) {
  TempDir tmp;
  const fs::path recipe = tmp / "toy.yaml";
  seqit::testing::spit(recipe, kRecipe);
  const fs::path out = tmp / "out";
  const RecipePlan plan = plan_recipe(recipe, out, {"model=m.bin"});
  ASSERT_EQ(plan.stages.size(), 7u);
  // foreach: the first variable outermost.
  const std::vector<std::string> names = {"data",       "other",      "train-a-s1", "train-a-s2",
                                          "train-b-s1", "train-b-s2", "report"};
  for (size_t i = 0; i < names.size(); ++i) EXPECT_EQ(plan.stages[i].name, names[i]);
  const RecipeStage& data = stage(plan, "data");
  EXPECT_EQ(data.args, (std::vector<std::string>{"data", "make", "m.bin", "--limit", "-1", "-o",
                                                 data.dir.string()}));
  EXPECT_EQ(data.dir, out / "stages" / ("data-" + data.hash));
  // A param with spaces is several arguments; quotes keep one.
  EXPECT_EQ(stage(plan, "other").args[2], "--x");
  const RecipeStage& t = stage(plan, "train-b-s2");
  EXPECT_EQ(t.args,
            (std::vector<std::string>{"train", "data=" + (data.dir / "d.json").string(), "word=b",
                                      "seed=2", "quoted arg", "out=" + t.dir.string()}));
  // Globs: every matching earlier stage, in order.
  const RecipeStage& report = stage(plan, "report");
  ASSERT_EQ(report.args.size(), 10u);
  EXPECT_EQ(report.args[1], stage(plan, "train-a-s1").dir.string());
  EXPECT_EQ(report.args[4], stage(plan, "train-b-s2").dir.string());
  EXPECT_EQ(report.args[6], "train-a-s1");
  EXPECT_EQ(report.args[7], "train-a-s2");
  // A list param on the command line; --limit scales the limits.
  const RecipePlan small = plan_recipe(recipe, out, {"model=m.bin", "seeds=[7]"}, 3);
  EXPECT_EQ(small.stages.size(), 5u);
  EXPECT_EQ(stage(small, "data").args[4], "6");
  EXPECT_NO_THROW(stage(small, "train-a-s7"));
}

TEST(StudyRecipe, AChangedParamRerunsExactlyTheStagesThatDependOnIt) {
  TempDir tmp;
  const fs::path recipe = tmp / "toy.yaml";
  seqit::testing::spit(recipe, kRecipe);
  const RecipePlan a = plan_recipe(recipe, tmp / "out", {"model=m.bin"});
  const RecipePlan b = plan_recipe(recipe, tmp / "out", {"model=other.bin"});
  const RecipePlan c = plan_recipe(recipe, tmp / "out", {"model=m.bin", "extra=--y"});
  for (size_t i = 0; i < a.stages.size(); ++i) {
    const std::string& name = a.stages[i].name;
    // model feeds `data`, whose folder every train stage reads, and the report reads those.
    if (name == "other")
      EXPECT_EQ(a.stages[i].hash, b.stages[i].hash);
    else
      EXPECT_NE(a.stages[i].hash, b.stages[i].hash) << name;
    // extra feeds only `other`.
    if (name == "other")
      EXPECT_NE(a.stages[i].hash, c.stages[i].hash);
    else
      EXPECT_EQ(a.stages[i].hash, c.stages[i].hash) << name;
  }
  // The study folder is not part of a key: the same recipe elsewhere has the same hashes.
  const RecipePlan moved = plan_recipe(recipe, tmp / "elsewhere", {"model=m.bin"});
  for (size_t i = 0; i < a.stages.size(); ++i) EXPECT_EQ(a.stages[i].hash, moved.stages[i].hash);
}

std::string error_of(const fs::path& recipe, const std::vector<std::string>& overrides,
                     int64_t limit = -1) {
  try {
    plan_recipe(recipe, recipe.parent_path() / "out", overrides, limit);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(StudyRecipe, ErrorsNameTheFileLineAndField) {
  TempDir tmp;
  const fs::path recipe = tmp / "toy.yaml";
  seqit::testing::spit(recipe, kRecipe);
  std::string e = error_of(recipe, {});
  EXPECT_NE(e.find("param 'model' is required"), std::string::npos) << e;
  EXPECT_NE(e.find("toy.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("stages[0].run"), std::string::npos) << e;
  e = error_of(recipe, {"model=m", "lr=3"});
  EXPECT_NE(e.find("no param 'lr'"), std::string::npos) << e;
  EXPECT_NE(e.find("model, words, seeds, limit, extra"), std::string::npos) << e;

  seqit::testing::spit(tmp / "bad.yaml",
                       "name: x\nstages:\n  - name: a\n    run: eval ${nope} -o ${out}\n");
  e = error_of(tmp / "bad.yaml", {});
  EXPECT_NE(e.find("${nope}: unknown"), std::string::npos) << e;
  EXPECT_NE(e.find("bad.yaml:4:"), std::string::npos) << e;
  seqit::testing::spit(tmp / "ref.yaml",
                       "name: x\nstages:\n  - name: a\n    run: eval ${stage:b}\n  - name: b\n    "
                       "run: eval\n");
  e = error_of(tmp / "ref.yaml", {});
  EXPECT_NE(e.find("no earlier stage is named 'b'"), std::string::npos) << e;
  seqit::testing::spit(tmp / "dup.yaml",
                       "name: x\nstages:\n  - name: a\n    run: eval\n  - name: a\n    run: x\n");
  e = error_of(tmp / "dup.yaml", {});
  EXPECT_NE(e.find("two stages are named 'a'"), std::string::npos) << e;
  EXPECT_NE(e.find("dup.yaml:5:"), std::string::npos) << e;
  seqit::testing::spit(tmp / "key.yaml", "name: x\nstages:\n  - name: a\n    runs: eval\n");
  e = error_of(tmp / "key.yaml", {});
  EXPECT_NE(e.find("stages[0]"), std::string::npos) << e;
  seqit::testing::spit(tmp / "yaml.yaml", "name: x\nstages: [\n");
  e = error_of(tmp / "yaml.yaml", {});
  EXPECT_NE(e.find("not valid YAML"), std::string::npos) << e;
  e = error_of(tmp / "bad.yaml", {}, 3);
  EXPECT_NE(e.find("declares no limits"), std::string::npos) << e;
}

// The paper's recipe, tiny: stories260K generates the data, is fine-tuned on each arm and judges
// SeqEval; two items everywhere.
std::vector<std::string> paper_args(const fs::path& out) {
  const std::string model =
      seqit::testing::shared_data("models/stories260K/stories260K.bin").string();
  const std::string tok = seqit::testing::shared_data("models/stories260K/tok512.bin").string();
  const std::string local = "--local " + model + " --tokenizer " + tok + " --chat-template tulu";
  return {
      seqit::testing::seqit_binary().string(), "--threads", "1", "study", "--recipe",
      (seqit::testing::source_dir() / "configs/study/paper-alpaca.yaml").string(), "--limit", "2",
      "-o", out.string(), "model=" + model, "tokenizer=" + tok, "generator=" + local,
      "seqinstruct_args=--prompts compact --max-tokens 48",
      // stories260K's 512-token context cannot hold a judge prompt: a tiny random Llama 2
      // (GGUF fixture, 2048 tokens) judges; its verdicts are gibberish, counted unparsable.
      "judge=--judge-local " +
          seqit::testing::shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf").string() +
          " --judge-chat-template tulu --judge-max-tokens 48",
      "train_args=max_steps=4 max_len=384 micro_batch_size=2 effective_batch=2 "
      "activation_checkpointing=false compute_dtype=f32 eval_every=0 save_every=2",
      // No exemplars: few-shot prompts do not fit stories260K's context.
      "eval_args=--tokenizer " + tok + " --chat-template tulu --max-tokens 24 --shots 0",
      "tasks=[gsm8k,arc_challenge]"};
}

std::string command(const std::vector<std::string>& args) {
  std::string cmd;
  for (const auto& a : args) cmd += seqit::testing::shell_quote(a) + " ";
  return cmd;
}

std::map<std::string, fs::file_time_type> done_times(const fs::path& out) {
  std::map<std::string, fs::file_time_type> t;
  for (const auto& e : fs::directory_iterator(out / "stages"))
    if (fs::exists(e.path() / "done.json"))
      t[e.path().filename().string()] = fs::last_write_time(e.path() / "done.json");
  return t;
}

TEST(StudyRecipeCli, PaperAlpacaRecipeRunsEndToEndAndResumesAfterKill) {
  seqit::testing::allow_seconds(400);
  // The recipe's source is ${shared}/...: ctest runs in the build folder, so say where it is.
  setenv("SEQIT_SHARED_DATA", seqit::testing::shared_data_dir().c_str(), 1);
  TempDir tmp;
  std::string out;
  const auto args = paper_args(tmp / "a");
  ASSERT_EQ(seqit::testing::run_command(command(args), &out), 0) << out;
  // 4 data stages, 3 trainings, 3 SeqEvals, 3 GSM8K and 3 ARC runs, 3 comparisons.
  const auto done = done_times(tmp / "a");
  EXPECT_EQ(done.size(), 19u);
  const std::string report = seqit::testing::slurp(tmp / "a/report.md");
  EXPECT_NE(report.find("## compare-gsm8k"), std::string::npos) << report;
  EXPECT_NE(report.find("## compare-seqeval"), std::string::npos) << report;
  EXPECT_NE(report.find("train-it_matched-s42"), std::string::npos) << report;
  // The token-matched arm's file exists and the SIT set went through Seq-Instruct.
  bool matched = false, sit = false;
  for (const auto& e : fs::directory_iterator(tmp / "a/stages")) {
    const std::string name = e.path().filename().string();
    if (name.rfind("it_matched-", 0) == 0) matched = fs::exists(e.path() / "it_matched.json");
    if (name.rfind("sit-", 0) == 0) sit = fs::exists(e.path() / "trace.jsonl");
  }
  EXPECT_TRUE(matched);
  EXPECT_TRUE(sit);
  // A rerun runs nothing.
  ASSERT_EQ(seqit::testing::run_command(command(args), &out), 0) << out;
  EXPECT_EQ(done_times(tmp / "a"), done);
  // status lists the plan.
  ASSERT_EQ(seqit::testing::run_command(
                seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
                    " study status -o " + seqit::testing::shell_quote((tmp / "a").string()),
                &out),
            0);
  EXPECT_NE(out.find("19 of 19 stages done"), std::string::npos) << out;

  // Killed once a training stage has started, then rerun.
  const fs::path b = tmp / "b";
  auto args_b = paper_args(b);
  const pid_t child = seqit::testing::start_in_background(args_b);
  ASSERT_GT(child, 0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(240);
  bool training = false;
  while (!training && std::chrono::steady_clock::now() < deadline) {
    if (fs::exists(b / "stages"))
      for (const auto& e : fs::directory_iterator(b / "stages"))
        if (e.path().filename().string().rfind("train-", 0) == 0) training = true;
    if (!training) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(training) << "never saw a training stage start";
  ASSERT_TRUE(WIFSIGNALED(status));
  const auto before = done_times(b);
  EXPECT_GE(before.size(), 4u);  // the data stages
  ASSERT_EQ(seqit::testing::run_command(command(args_b), &out), 0) << out;
  const auto after = done_times(b);
  EXPECT_EQ(after.size(), 19u);
  for (const auto& [name, time] : before) EXPECT_EQ(after.at(name), time) << name << " redone";
  // The same stages (same hashes) and the same comparisons as the uninterrupted run.
  for (const auto& [name, time] : done) EXPECT_TRUE(after.count(name)) << name;
  auto comparison = [](const fs::path& file) {
    nlohmann::json j = nlohmann::json::parse(seqit::testing::slurp(file));
    for (auto& run : j["runs"]) run.erase("path");  // the run folders (a/ or b/)
    return j;
  };
  int compared = 0;
  for (const auto& [name, time] : done)
    if (name.rfind("compare-", 0) == 0) {
      ++compared;
      EXPECT_EQ(comparison(tmp / "a/stages" / name / "compare.json"),
                comparison(b / "stages" / name / "compare.json"))
          << name;
    }
  EXPECT_EQ(compared, 3);
}

}  // namespace
}  // namespace seqit::study
