// `seqit train`: a whole fine-tuning run from a recipe (train/recipe.h) — data to examples to
// batches, the model and its trainable tensors, the optimiser steps with their schedule, held-out
// evaluation, metrics, checkpoints that resume bit for bit, Ctrl-C/SIGTERM handled with a
// checkpoint, and the final weights in the ecosystem's formats (docs/training.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include "train/recipe.h"

namespace seqit::dist {
class Communicator;
}

namespace seqit::train {

struct RunOptions {
  // Continue from the newest complete checkpoint in the run folder when there is one. Without it,
  // a run folder that already holds checkpoints is an error (nothing is overwritten).
  bool resume = false;
  // Stop (with a checkpoint) after this many optimiser steps of this invocation; 0 = run to the
  // end. For tests and for splitting a run over several sessions.
  int64_t stop_after = 0;
  bool progress = true;  // the progress bar (the CLI's --quiet turns it off)
  // Called after each optimiser step with the steps done (in total) and the run's total.
  std::function<void(int64_t done, int64_t total)> on_step;
  // Polled between steps like Ctrl-C: when it returns true the run writes a checkpoint and returns
  // unfinished (a study stops its other jobs this way when one fails).
  std::function<bool()> stop_requested;
  // The processes of a data-parallel run; null: dist::world() (MPI under mpirun, else one).
  dist::Communicator* world = nullptr;
};

struct RunResult {
  int64_t steps = 0;         // optimiser steps done in total (including those before a resume)
  int64_t total_steps = 0;   // of the whole run
  bool finished = false;     // the last step is done and final/ is written
  bool interrupted = false;  // stopped by Ctrl-C / SIGTERM (a checkpoint was written)
  double last_loss = 0;      // the last step's loss
  double eval_loss = -1;     // the last held-out loss (-1: none)
  std::filesystem::path output;
};

RunResult run_training(const TrainRecipe& recipe, const RunOptions& options = {});

}  // namespace seqit::train
