// `seqit study`: the paper's experiment on the embedded synthetic world, as one resumable command
// (docs/study.md); `seqit study status` shows which stages are done.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "study/recipe.h"
#include "study/study.h"
#include "util/error.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::cli {
namespace {
namespace fs = std::filesystem;

struct StudyOptions {
  std::string output = "runs/study";
  bool quick = false;
  bool print_settings = false;
  std::string recipe;
  int64_t limit = -1;
  std::vector<std::string> settings;
};

study::StudySettings settings_of(const StudyOptions& o) {
  study::StudySettings s = o.quick ? study::StudySettings::quick() : study::StudySettings{};
  s.apply(o.settings);
  if (s.threads == 0) s.threads = thread_count();
  return s;
}

// `seqit study --recipe FILE`: the stages are seqit commands (study/recipe.h).
void run_recipe(const StudyOptions& o) {
  if (o.quick) throw Error("--quick is for the embedded study; a recipe takes --limit N");
  if (o.print_settings) {
    const study::RecipePlan plan = study::plan_recipe(o.recipe, o.output, o.settings, o.limit);
    std::printf("# %s: %s\n# params\n", plan.name.c_str(), plan.about.c_str());
    for (const auto& [name, value] : plan.params)
      std::printf("%s=%s\n", name.c_str(), value.c_str());
    std::printf("# stages (%zu)\n", plan.stages.size());
    for (const auto& st : plan.stages)
      std::printf("%s: seqit %s\n", st.name.c_str(),
                  fmt::format("{}", fmt::join(st.args, " ")).c_str());
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return Progress::format_duration(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  };
  study::RecipeRunOptions ro;
  ro.executable = fs::read_symlink("/proc/self/exe");
  if (globals().threads > 0) ro.global_args = {"--threads", std::to_string(globals().threads)};
  ro.stage_started = [&](const study::RecipeStage& st, bool done, size_t index, size_t total) {
    if (done) return;
    log::info("study [{}]: stage {} ({}/{}): seqit {} (log: {})", elapsed(), st.name, index, total,
              st.args.empty() ? "" : st.args.front(), (st.dir / "log.txt").string());
  };
  ro.stage_done = [&](const study::RecipeStage& st, double seconds) {
    log::info("study [{}]: stage {} done in {}", elapsed(), st.name,
              Progress::format_duration(seconds));
  };
  const study::RecipePlan plan =
      study::run_recipe_study(o.recipe, o.output, o.settings, o.limit, ro);
  std::printf("\nstudy %s: %zu stages done\nreport: %s (took %s)\n", plan.name.c_str(),
              plan.stages.size(), (fs::path(o.output) / "report.md").c_str(), elapsed().c_str());
}

void run(const StudyOptions& o) {
  if (!o.recipe.empty()) return run_recipe(o);
  if (o.limit >= 0) throw Error("--limit is for --recipe studies");
  const study::StudySettings s = settings_of(o);
  if (o.print_settings) {
    std::printf("%s\n", s.to_json().dump(2).c_str());
    return;
  }
  const auto t0 = std::chrono::steady_clock::now();
  study::StudyProgress progress;
  progress.bars = !globals().quiet;
  progress.stage_started = [&](const std::string& stage, const std::string& what) {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log::info("study [{}]: {} ({})", Progress::format_duration(t), stage, what);
  };
  log::info("study: {} — arms {}, seeds {}, into {}", s.name, fmt::join(s.arms, ", "),
            fmt::join(s.seeds, ", "), o.output);
  const study::StudyResult result = study::run_study(o.output, s, progress);
  const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("\n%s\n\nreport: %s (took %s)\n", result.verdict.c_str(),
              (result.report_dir / "report.md").c_str(), Progress::format_duration(t).c_str());
}

void status(const StudyOptions& o) {
  const auto stages = study::study_status(o.output);
  int done = 0;
  for (const auto& st : stages) {
    done += st.done;
    std::printf("%-24s %-6s %8s  %s\n", st.name.c_str(), st.done ? "done" : "to do",
                st.done ? Progress::format_duration(st.seconds).c_str() : "",
                st.dir.filename().c_str());
  }
  std::printf("%d of %zu stages done in %s\n", done, stages.size(), o.output.c_str());
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<StudyOptions>();
  cmd.add_option("-o,--output", o->output, "The study folder (stages, report/); a rerun resumes it")
      ->capture_default_str();
  cmd.add_flag("--quick", o->quick,
               "A small study for a smoke test (one seed, IT vs SIT, a small model): about 2 "
               "minutes on 2 cores");
  cmd.add_flag(
      "--print-settings", o->print_settings,
      "Print every setting (JSON) after --quick and the overrides (with --recipe: the params and "
      "each stage's command), and exit");
  cmd.add_option("--recipe", o->recipe,
                 "Run the experiment a recipe describes (configs/study/paper-alpaca.yaml, "
                 "paper-flancot.yaml: the paper's runs) instead of the embedded one; settings are "
                 "then the recipe's params (model=..., generator=..., judge=...)")
      ->check(CLI::ExistingFile);
  cmd.add_option("--limit", o->limit,
                 "With --recipe: a small end-to-end run (each param the recipe's `limits` names "
                 "becomes N x its factor)")
      ->check(CLI::NonNegativeNumber);
  cmd.add_option("settings", o->settings,
                 "key=value settings over the defaults, e.g. steps=600 seeds=[1,2,3,4] "
                 "arms=[it,sit] base=stories260K (--print-settings lists them; docs/study.md)");
  cmd.footer(
      "Stages (world, data, train and eval per arm and seed) are cached by the hash of their "
      "settings: a rerun after Ctrl-C or kill -9 redoes only what is not done, and training "
      "resumes from its last checkpoint. The report (report/report.md, report.json, scores.png, "
      "loss.png) is recomputed from the evaluation results every run.\n\nThe paper's runs: seqit "
      "study --recipe configs/study/paper-alpaca.yaml -o runs/paper model=PATH generator='--url "
      "URL --model NAME' judge='--judge-url URL --judge-model NAME' (--print-settings shows every "
      "stage's command; --limit 4 runs it end to end on a few items).");
  auto* st = cmd.add_subcommand("status", "Which stages of a study are done");
  st->add_option("-o,--output", o->output, "The study folder")->capture_default_str();
  st->callback([o] { status(*o); });
  // CLI11 runs a command's callback after its subcommand's: `seqit study status` must not also run
  // a study.
  cmd.callback([o, st] {
    if (!st->parsed()) run(*o);
  });
}

}  // namespace
SEQIT_COMMAND("study",
              "The SIT experiment (IT vs SIT vs token-matched IT) on a synthetic world, "
              "end to end and resumable",
              setup);
}  // namespace seqit::cli
