// `seqit study --recipe FILE`: an experiment written as a list of seqit commands — the paper's runs
// (configs/study/*.yaml: Seq-Instruct with a generator, fine-tuning per arm and seed, evaluation
// with a judge, comparison) — run as cached stages of the study's StageStore (stage.h).
//
// A recipe (YAML):
//   name, about        what it is
//   params             name -> value (a string, a number or a list); `null` marks a required one.
//                      key=value on the command line overrides them.
//   limits             param -> factor: `--limit N` sets each to N x factor (a small end-to-end
//   run) stages             in order; each has `name`, `run` (a seqit command line, without
//   "seqit")
//                      and optionally `foreach` (var -> list, or "${list_param}"): one stage per
//                      combination, first var outermost.
// In names and command lines:
//   ${param}, ${var}   a param or a foreach variable (a list becomes [a,b,c])
//   ${stage:NAME}      the folder of an earlier stage (its output depends on that stage's key)
//   ${stages:GLOB}     the folders of the earlier stages whose names match GLOB, in order
//   ${names:GLOB}      their names
//   ${out}             this stage's folder; ${shared}: the shared data folder ($SEQIT_SHARED_DATA
//                      or ../shared/data); ${recipe_dir}: the recipe's folder
// Substitution goes innermost first, so ${stage:train-${arm}-s${seed}} works; a value with spaces
// becomes several arguments (quote with '' or "" to keep one).
//
// A stage's key is its expanded command line (other stages' folders by name and hash, its own as
// ${out}): a changed param reruns exactly the stages whose commands change and those after them
// that read their folders. Each stage runs as a child seqit process (stdout and stderr to log.txt
// in its folder), which dies with the study; the commands resume on their own (Seq-Instruct traces,
// eval results, `train --resume`), so a rerun after kill -9 loses and repeats nothing.
#pragma once

#include <filesystem>
#include <functional>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace seqit::study {

struct RecipeStage {
  std::string name;               // expanded: "train-sit-s1"
  std::vector<std::string> args;  // the seqit command line, paths filled in
  std::string key;                // the command line with ${out} and stage folders symbolic
  std::string hash;               // of the key (the folder is stages/<name>-<hash>)
  std::filesystem::path dir;
};

struct RecipePlan {
  std::string name, about;
  std::vector<std::pair<std::string, std::string>> params;  // as resolved, in recipe order
  std::vector<std::string> missing;                         // required params not set
  std::vector<RecipeStage> stages;
};

// Reads the recipe, applies key=value overrides and `limit` (>= 0: --limit N), expands every stage.
// Throws seqit::Error naming the file, line and field (or the stage and the ${...} it could not
// resolve).
RecipePlan plan_recipe(const std::filesystem::path& recipe, const std::filesystem::path& out,
                       const std::vector<std::string>& overrides, int64_t limit = -1);

struct RecipeRunOptions {
  std::filesystem::path executable;  // the seqit binary the stages run
  // Global options put before every stage's command (e.g. "--threads", "2"); not part of the keys.
  std::vector<std::string> global_args;
  // `index` counts from 1 over the `total` stages of the plan.
  std::function<void(const RecipeStage& stage, bool already_done, size_t index, size_t total)>
      stage_started;
  std::function<void(const RecipeStage& stage, double seconds)> stage_done;
};

// Runs every stage that is not done, in order, then writes out/report.md (the params and every
// compare.md of the stages) and returns the plan. A failed stage throws naming it, its command, its
// log and the log's last lines; Ctrl-C stops after the running stage's command has saved its work.
RecipePlan run_recipe_study(const std::filesystem::path& recipe, const std::filesystem::path& out,
                            const std::vector<std::string>& overrides, int64_t limit,
                            const RecipeRunOptions& options);

}  // namespace seqit::study
