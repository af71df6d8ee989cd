// The run folder and its checkpoints.
//
//   OUTPUT/recipe.yaml                    the resolved recipe (to_yaml)
//   OUTPUT/metrics.jsonl                  one row per logged step (train/metrics.h)
//   OUTPUT/loss.png                       the loss chart (train/loss_chart.h)
//   OUTPUT/checkpoints/step-000120/       a checkpoint: checkpoint.json + *.safetensors
//   OUTPUT/final/                         the last weights, same layout
//
// A checkpoint is named f32 tensors in safetensors files the caller chooses (e.g. model.safetensors
// for the weights or the adapter, optimizer.safetensors for AdamW's m, v and master copies) plus a
// JSON manifest (checkpoint.json): format version, step, epoch, the data position, the schedule,
// RNG words, fingerprints of the model config and of the recipe fields that must match on resume,
// and each file's tensors and size.
//
// Atomicity: a checkpoint is written into a temporary sibling folder (.tmp-step-000120-<pid>-<n>),
// every file fsync'ed, the manifest last, then the folder is renamed into place and its parent
// fsync'ed. A crash or a full disk at any point leaves the earlier checkpoints as they were and no
// folder that latest_checkpoint() would take: it only takes step-N folders whose manifest reads and
// whose files have the sizes it lists. Old checkpoints are deleted (prune_checkpoints) only after
// the new one is in place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"
#include "train/batcher.h"
#include "train/recipe.h"
#include "train/schedule.h"

namespace seqit::train {

struct RunDir {
  std::filesystem::path root;  // OUTPUT

  std::filesystem::path recipe_file() const { return root / "recipe.yaml"; }
  std::filesystem::path metrics_file() const { return root / "metrics.jsonl"; }
  std::filesystem::path chart_file() const { return root / "loss.png"; }
  std::filesystem::path checkpoints_dir() const { return root / "checkpoints"; }
  std::filesystem::path final_dir() const { return root / "final"; }
  // checkpoints/step-000120 (six digits, more when the step needs them).
  std::filesystem::path checkpoint_dir(int64_t step) const;
  // Creates OUTPUT and OUTPUT/checkpoints (existing ones are fine).
  void create() const;
};

// What must be the same to resume: field -> value, as text ("num_layers" -> "32").
using Fingerprint = std::map<std::string, std::string>;

// The model's architecture: everything that decides the parameters' names and shapes and the
// network's function (family, sizes, heads, rope, norms, tying, biases, vocabulary).
Fingerprint model_fingerprint(const model::ModelConfig& config);
// The recipe fields that fix the data stream and the trained parameters: data, data_format,
// eval_data, eval split, tokenizer, template, turns, train_on_inputs, max_len, default_system,
// batch_mode, micro_batch_size, gradient_accumulation (as resolved), seed, method and the LoRA
// shape (rank, alpha, targets, rslora, base_dtype). Not: lr, schedule, epochs, max_steps, cadence,
// threads, dtype, output_dir, model path — these may change on resume (a longer run, a moved
// model). Pass the resolved recipe (TrainRecipe::resolved), so gradient_accumulation is the one in
// use.
Fingerprint recipe_fingerprint(const TrainRecipe& recipe);

// One line per differing field: "num_layers: checkpoint 5, now 32" (empty when equal).
std::vector<std::string> fingerprint_differences(const Fingerprint& saved, const Fingerprint& now);

inline constexpr int kCheckpointFormatVersion = 1;

struct CheckpointState {
  int format_version = kCheckpointFormatVersion;
  int64_t step = 0;           // optimizer updates done
  double epoch = 0;           // epochs done, fractional (for logs)
  BatchPosition data;         // the next micro-batch (BatchStream::position())
  LrSchedule schedule;        // kind, base lr, warmup, total steps; lr(step) is the next update's
  std::vector<uint64_t> rng;  // RNG state words (dropout and anything else seeded)
  int64_t tokens = 0;         // trained tokens so far
  double elapsed_s = 0;       // training time so far
  Fingerprint model;
  Fingerprint recipe;
  bool operator==(const CheckpointState&) const = default;
};

// A tensor to save: `data` holds product(shape) f32 values, row-major.
struct TensorRef {
  std::string file;  // "model.safetensors", "optimizer.safetensors", ... (a plain file name)
  std::string name;  // unique within its file
  const float* data = nullptr;
  std::vector<int64_t> shape;
};

// A preallocated buffer to load into: exactly product(shape) f32 values.
struct TensorSlot {
  std::string file;
  std::string name;
  float* data = nullptr;
  std::vector<int64_t> shape;
};

// Writes the checkpoint folder `dir` atomically (see the top of this file); replaces an existing
// one at the same path (the old one stays until the new one is complete). A failure (full disk,
// I/O error, a bad tensor list) throws seqit::Error saying which checkpoint and why, after removing
// the temporary folder; nothing at `dir` changes. Stale temporary folders from crashed saves beside
// `dir` are removed first (one writer per run folder).
void save_checkpoint(const std::filesystem::path& dir, const CheckpointState& state,
                     const std::vector<TensorRef>& tensors);

// The manifest of a checkpoint, validated (format, version, every listed file present with its
// size). Throws seqit::Error naming the folder otherwise.
CheckpointState read_checkpoint_state(const std::filesystem::path& dir);

// Refuses (seqit::Error listing every difference) a checkpoint whose fingerprints differ from the
// current run's, e.g. one from another model.
void check_resumable(const CheckpointState& saved, const Fingerprint& model,
                     const Fingerprint& recipe, const std::filesystem::path& dir);

// Reads the manifest, checks it is resumable with (model, recipe), and copies every tensor into its
// slot, bit for bit. The slots must be exactly the checkpoint's tensors: a missing or extra tensor,
// another shape or a non-f32 tensor is an error naming the tensor and file.
CheckpointState load_checkpoint(const std::filesystem::path& dir,
                                const std::vector<TensorSlot>& slots, const Fingerprint& model,
                                const Fingerprint& recipe);

// Complete checkpoints under OUTPUT/checkpoints, oldest first (step-N folders whose manifest is
// valid and whose step is N; anything else there is ignored).
std::vector<std::filesystem::path> list_checkpoints(const std::filesystem::path& run_dir);
// The newest complete checkpoint of the run folder OUTPUT; nullopt when there is none.
std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& run_dir);
// Keeps the newest `keep_last` complete checkpoints (0 = all) and deletes the older ones (each is
// renamed aside first, so a crash mid-delete leaves no half checkpoint); returns the deleted paths.
std::vector<std::filesystem::path> prune_checkpoints(const std::filesystem::path& run_dir,
                                                     int64_t keep_last);

// save_checkpoint into run.checkpoint_dir(state.step), then prune to keep_last. Returns the folder.
std::filesystem::path save_run_checkpoint(const RunDir& run, const CheckpointState& state,
                                          const std::vector<TensorRef>& tensors, int64_t keep_last);

}  // namespace seqit::train
