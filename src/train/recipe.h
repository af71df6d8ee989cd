// A training recipe: everything one fine-tuning run needs, as data. Loaded from a YAML file plus
// `key=value` overrides (dotted keys reach nested fields: `lora.rank=8`), validated with errors
// that name the file, line and field (or the override), and written back resolved as `recipe.yaml`
// in the run folder, which loads to an equal recipe. docs/training.md ("Recipes") lists every
// field.
//
// Shipped recipes (configs/): sit-paper.yaml (SIT_SPEC §3.1, full fine-tuning), sit-lora.yaml (the
// same with LoRA r 64), tiny-stories.yaml (stories260K, a minute on two cores).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "train/batcher.h"
#include "train/schedule.h"

namespace seqit::train {

enum class ComputeDtype {
  auto_,
  f32,
  bf16
};  // auto: bf16 where the device is fast at it, else f32
enum class TrainMethod { full, lora };
enum class BaseDtype { f32, bf16 };  // LoRA: how the frozen base weights are held

// The recipe's spelling of the data side's enums: "packed" / "grouped"; "all" / "last".
std::string_view batch_mode_name(BatchMode mode);
std::string_view turn_policy_name(TurnPolicy policy);
std::string_view compute_dtype_name(ComputeDtype dtype);  // "auto", "f32", "bf16"
std::string_view method_name(TrainMethod method);         // "full", "lora"
std::string_view base_dtype_name(BaseDtype dtype);        // "f32", "bf16"

// The projections LoRA can adapt, in canonical order; HF module names are q_proj ... down_proj.
inline constexpr std::string_view kLoraTargets[] = {"q", "k", "v", "o", "gate", "up", "down"};

struct LoraRecipe {
  int64_t rank = 64;     // SIT_SPEC §3.1's (unused) LoRA flags: r 64, alpha 16, dropout 0.1
  double alpha = 16;     // scale alpha / rank (alpha / sqrt(rank) with rslora)
  double dropout = 0.1;  // on the adapter's input
  // Canonical short names (q, k, v, o, gate, up, down) in kLoraTargets order; the YAML also takes
  // q_proj ... down_proj and "all".
  std::vector<std::string> targets = {"q", "k", "v", "o", "gate", "up", "down"};
  bool rslora = false;  // rank-stabilised scaling (Kalajdzievski 2023)
  BaseDtype base_dtype = BaseDtype::f32;
  bool operator==(const LoraRecipe&) const = default;
};

struct TrainRecipe {
  // What to train.
  std::string model;                     // required: HF folder, .gguf or llama2.c .bin
  std::optional<std::string> tokenizer;  // nullopt: the model's own
  // "pretrained": start from the weights at `model`. "random": train from scratch — `model` is then
  // an HF config.json (or a folder holding one) and the weights are drawn with `seed`: N(0,
  // init_std^2) for matrices and embeddings, 1 for norms (model::RandomWeights); `tokenizer` is
  // required.
  std::string init = "pretrained";
  double init_std = 0.02;
  std::vector<std::string> data;         // required: one or more files, read in order
  std::string data_format = "auto";      // "auto" (detected) or a data/ format name
  std::optional<std::string> eval_data;  // a separate held-out file (instead of a split)
  // Paths are used as written: relative ones are relative to the working folder, not to the
  // recipe file.

  // How examples are made (train/sft_data.h).
  std::string chat_template = "tulu";  // YAML key `template`: tulu | model | a builtin | a file
  TurnPolicy turns = TurnPolicy::all_assistant;  // all | last
  bool train_on_inputs = false;
  int64_t max_len = 2048;
  std::optional<std::string> default_system;  // the SIT data's empty system block: ""

  // Batches: effective_batch = micro_batch_size x gradient_accumulation x processes. When
  // effective_batch is set it wins and gradient_accumulation is derived from it; setting both to
  // values that disagree is an error (resolved()).
  // grouped (length_grouped: one example per row) | packed (needs segment-aware attention)
  BatchMode batch_mode = BatchMode::length_grouped;
  int64_t micro_batch_size = 1;
  std::optional<int64_t> gradient_accumulation;
  std::optional<int64_t> effective_batch;

  // How long, and the optimizer (AdamW, decoupled weight decay).
  int64_t epochs = 3;
  std::optional<int64_t> max_steps;  // when set, the run's optimizer updates (overrides epochs)
  double lr = 2e-5;
  ScheduleKind schedule = ScheduleKind::linear;
  double warmup_ratio = 0.03;
  std::optional<int64_t> warmup_steps;  // when set, wins over warmup_ratio (as HF)
  double weight_decay = 0;
  double adam_beta1 = 0.9;
  double adam_beta2 = 0.999;
  double adam_epsilon = 1e-8;
  double max_grad_norm = 1.0;  // global-norm clipping; 0 = off
  uint64_t seed = 42;

  // Held-out evaluation (a split of `data` unless eval_data is given): eval_count wins over
  // eval_fraction; eval_every steps (0 = only after the last step).
  double eval_fraction = 0;
  std::optional<int64_t> eval_count;
  int64_t eval_every = 0;

  // The run folder and its cadence.
  std::string output_dir;  // required
  int64_t save_every = 0;  // steps between checkpoints; 0 = only the final weights
  int64_t keep_last = 3;   // checkpoints kept; 0 = all
  int64_t log_every = 1;   // steps between metrics rows

  // Compute.
  bool activation_checkpointing = false;  // recompute activations in backward (memory for time)
  ComputeDtype compute_dtype = ComputeDtype::auto_;
  int64_t threads = 0;  // 0 = every core

  TrainMethod method = TrainMethod::full;
  LoraRecipe lora;

  bool operator==(const TrainRecipe&) const = default;

  // Checks every field and the fields together; throws seqit::Error naming the field. (Loading
  // checks the same, with the file and line.)
  void validate() const;
  // The recipe as the run uses it, for `processes` data-parallel processes: gradient_accumulation
  // and effective_batch both set and consistent, warmup_steps left as given (it needs the step
  // count). Throws seqit::Error when effective_batch is not a multiple of micro_batch_size x
  // processes, or disagrees with a given gradient_accumulation.
  TrainRecipe resolved(int64_t processes = 1) const;
};

// Reads a recipe file (YAML) and applies `overrides` ("key=value", value in YAML syntax: `lr=1e-4`,
// `lora.targets=[q,v]`, `max_steps=null` unsets, `default_system=` is the empty string), then
// validates. Errors name the file, line, column and field, or the override; an unknown key gets a
// did-you-mean suggestion.
TrainRecipe load_recipe(const std::filesystem::path& path,
                        const std::vector<std::string>& overrides = {});
// The same from text; `source` names it in errors.
TrainRecipe parse_recipe(std::string_view yaml, const std::string& source,
                         const std::vector<std::string>& overrides = {});
// Only overrides, on the defaults (a recipe given entirely on the command line).
TrainRecipe recipe_from_overrides(const std::vector<std::string>& overrides);

// Every field, grouped and commented, in a YAML that parse_recipe reads back to an equal recipe.
// Numbers are written in their shortest exact form (2e-05, 0.03).
std::string to_yaml(const TrainRecipe& recipe);

// Every key a recipe accepts, dotted ("lr", "lora.rank"), in the order to_yaml writes them.
const std::vector<std::string>& recipe_keys();

}  // namespace seqit::train
