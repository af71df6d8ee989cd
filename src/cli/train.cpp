// `seqit train`: supervised fine-tuning (full or LoRA) from a YAML recipe plus key=value overrides.
#include <cstdio>
#include <string>
#include <vector>

#include "cli/command.h"
#include "train/recipe.h"
#include "train/run.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::cli {
namespace {
struct TrainOptions {
  std::vector<std::string> args;  // RECIPE.yaml and/or key=value overrides
  bool resume = false, print = false;
  int64_t stop_after = 0;
};

void setup(CLI::App& cmd) {
  auto o = std::make_shared<TrainOptions>();
  cmd.description(
      "Fine-tune a Llama-family model on instruction data: full fine-tuning or LoRA, the loss on "
      "the assistant's "
      "tokens only, the model's chat template or a builtin format (tulu, the SIT paper's). "
      "Everything comes from "
      "a YAML recipe (configs/ has the paper's) plus key=value overrides; the run folder gets "
      "recipe.yaml, "
      "metrics.jsonl, loss.png, checkpoints/ and final/ (an HF folder; LoRA runs also a PEFT "
      "adapter). Ctrl-C or "
      "SIGTERM writes a checkpoint; --resume continues bit for bit. See docs/training.md.\n\n"
      "  seqit train configs/tiny-stories.yaml output_dir=runs/tiny\n"
      "  seqit train configs/sit-paper.yaml model=path/to/Meta-Llama-3-8B data=[sit.jsonl] "
      "output_dir=runs/sit\n"
      "  seqit train configs/sit-lora.yaml model=base/ data=[it.jsonl] lora.rank=16 lr=2e-4 "
      "output_dir=runs/lora\n"
      "  seqit train runs/tiny/recipe.yaml --resume\n"
      "  mpirun -np 2 seqit train configs/tiny-stories.yaml output_dir=runs/dp threads=0   "
      "(data-parallel: "
      "each step's micro-batches split between the processes; resumes on any number)");
  cmd.add_option("args", o->args,
                 "RECIPE.yaml, then key=value overrides (dotted keys: lora.rank=8)")
      ->required();
  cmd.add_flag("--resume", o->resume, "Continue from the newest checkpoint in output_dir");
  cmd.add_flag("--print-recipe", o->print, "Print the resolved recipe and exit");
  cmd.add_option("--stop-after", o->stop_after,
                 "Stop with a checkpoint after N steps of this invocation");
  cmd.callback([o] {
    std::vector<std::string> overrides;
    std::string file;
    for (const std::string& a : o->args) {
      if (a.find('=') == std::string::npos && file.empty())
        file = a;
      else if (a.find('=') == std::string::npos)
        throw Error(fmt::format("'{}': expected key=value after the recipe file", a));
      else
        overrides.push_back(a);
    }
    const train::TrainRecipe recipe = file.empty() ? train::recipe_from_overrides(overrides)
                                                   : train::load_recipe(file, overrides);
    if (o->print) {
      std::fputs(train::to_yaml(recipe.resolved()).c_str(), stdout);
      return;
    }
    train::RunOptions options;
    options.resume = o->resume;
    options.stop_after = o->stop_after;
    options.progress = !globals().quiet;
    if (globals().threads > 0 && recipe.threads == 0) {
      train::TrainRecipe with_threads = recipe;
      with_threads.threads = globals().threads;
      train::run_training(with_threads, options);
    } else {
      train::run_training(recipe, options);
    }
  });
}
}  // namespace
SEQIT_COMMAND("train", "Fine-tune a model (full or LoRA) from a recipe; resumable", setup);
}  // namespace seqit::cli
