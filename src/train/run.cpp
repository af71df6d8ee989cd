#include "train/run.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>

#include "chat/model_template.h"
#include "dist/communicator.h"
#include "model/checkpoint.h"
#include "model/convert.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "tensor/calibrate.h"
#include "tensor/threading.h"
#include "tokenizer/tokenizer.h"
#include "train/data_parallel.h"
#include "train/export.h"
#include "train/loss_chart.h"
#include "train/metrics.h"
#include "train/run_dir.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::train {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// Everything the run reads before its first step: examples, batches, model, trainer.
struct Setup {
  std::unique_ptr<tokenizer::Tokenizer> tok;
  fs::path tokenizer_file;
  std::string
      chat_template;  // the Jinja source the examples were rendered with (shipped in final/)
  std::vector<Example> train_examples, eval_examples;
  std::unique_ptr<BatchPlan> plan, eval_plan;
  std::unique_ptr<model::LlamaModel> model;
  std::unique_ptr<Trainer> trainer;
  LrSchedule schedule;
  int64_t grad_accum = 1;  // micro-batches per optimiser step, all processes together
  int64_t batches_per_epoch = 0;
  double flops_per_token = 0;  // forward + backward, for MFU
  std::string compute_note;    // why the compute dtype is what it is (printed at start)
};

// compute_dtype -> the network's GEMM dtype. auto: bf16 where the CPU has bf16 arithmetic
// (AVX512_BF16 or AMX, with oneDNN using it), else f32. An explicit bf16 on a CPU without it is
// computed anyway, with the same rounding, through f32 GEMMs: correct, and slower than f32.
tensor::DType resolve_compute(ComputeDtype asked, std::string& note) {
  const bool native = tensor::cpu_has_bf16_arithmetic();
  switch (asked) {
    case ComputeDtype::f32:
      note = "f32 (as asked)";
      return tensor::DType::f32;
    case ComputeDtype::bf16:
      note = native ? "bf16 (as asked; this CPU has bf16 arithmetic)"
                    : "bf16 (as asked; this CPU has no bf16 arithmetic: emulated through f32 GEMMs "
                      "with the "
                      "same rounding, slower than compute_dtype=f32)";
      return tensor::DType::bf16;
    default:
      note = native ? "bf16 (auto: this CPU has bf16 arithmetic)"
                    : "f32 (auto: this CPU has no bf16 arithmetic)";
      return native ? tensor::DType::bf16 : tensor::DType::f32;
  }
}

ExampleOptions example_options(const TrainRecipe& r) {
  ExampleOptions o;
  o.turns = r.turns;
  o.train_on_inputs = r.train_on_inputs;
  o.max_len = r.max_len;
  o.default_system = r.default_system;
  if (r.data_format != "auto") o.from = data::parse_format_request(r.data_format);
  return o;
}

std::vector<Example> load_examples(const std::vector<std::string>& files,
                                   const chat::ChatTemplate& tmpl, const tokenizer::Tokenizer& tok,
                                   const ExampleOptions& options) {
  std::vector<Example> all;
  for (const std::string& file : files) {
    SftExamples loaded = load_sft_examples(file, tmpl, tok, options);
    log::info("train: {}: {}", file, loaded.summary.describe());
    if (loaded.examples.empty())
      throw Error(fmt::format("{}: no trainable example (see the summary above)", file));
    for (Example& e : loaded.examples) all.push_back(std::move(e));
  }
  return all;
}

// FLOPs of one token's forward + backward: 6 per weight of every matrix product that gets a weight
// gradient (2 forward, 2 for the input gradient, 2 for the weight gradient), 4 per frozen weight
// (no weight gradient), plus causal attention (QK^T and PV: 2·2·T·qd forward at mean context T/2,
// three times that with the backward).
double flops_per_token(const model::ModelConfig& c, bool lora, int64_t mean_len) {
  const double qd = double(c.num_heads * c.head_dim), kvd = double(c.num_kv_heads * c.head_dim);
  const double per_layer = double(c.hidden_size) * (qd + 2 * kvd) + qd * double(c.hidden_size) +
                           3.0 * double(c.hidden_size) * double(c.intermediate_size);
  const double matmul =
      per_layer * double(c.num_layers) + double(c.vocab_size) * double(c.hidden_size);
  const double attention = 3.0 * 2.0 * 2.0 * (double(mean_len) / 2.0) * qd * double(c.num_layers);
  return (lora ? 4.0 : 6.0) * matmul + attention;
}

Setup prepare(const TrainRecipe& r, dist::Communicator& world) {
  Setup s;
  // The starting weights: a checkpoint, or (init: random) weights drawn for a config.json.
  std::unique_ptr<model::Checkpoint> checkpoint;
  std::unique_ptr<model::WeightSource> random;
  if (r.init == "random") {
    model::ModelConfig config = model::read_hf_config(r.model);
    config.validate(r.model);
    random = std::make_unique<model::RandomWeights>(config, r.seed, static_cast<float>(r.init_std));
    log::info("train: from scratch: {} parameters drawn with seed {} (std {})",
              config.parameter_count(), r.seed, r.init_std);
  } else {
    checkpoint = model::Checkpoint::open(r.model);
  }
  const model::WeightSource& weights =
      checkpoint ? static_cast<const model::WeightSource&>(*checkpoint) : *random;
  if (r.tokenizer) {
    s.tokenizer_file = *r.tokenizer;
  } else if (checkpoint && checkpoint->tokenizer_path()) {
    s.tokenizer_file = *checkpoint->tokenizer_path();
  } else {
    throw Error(fmt::format(
        "model {}: no tokenizer found beside it; set `tokenizer:` in the recipe", r.model));
  }
  s.tok = tokenizer::load_tokenizer(s.tokenizer_file);
  const chat::ChatTemplate tmpl = chat::resolve_chat_template(
      r.chat_template == "model" ? "" : r.chat_template, r.model, s.tokenizer_file, *s.tok);
  s.chat_template = tmpl.source();
  const ExampleOptions eo = example_options(r);
  std::vector<Example> examples = load_examples(r.data, tmpl, *s.tok, eo);
  if (r.eval_data) {
    s.train_examples = std::move(examples);
    s.eval_examples = load_examples({*r.eval_data}, tmpl, *s.tok, eo);
  } else if (r.eval_count || r.eval_fraction > 0) {
    const EvalSplit how =
        r.eval_count ? EvalSplit::of_count(*r.eval_count) : EvalSplit::of_fraction(r.eval_fraction);
    auto parts = split(std::move(examples), how, r.seed);
    s.train_examples = std::move(parts.train);
    s.eval_examples = std::move(parts.eval);
  } else {
    s.train_examples = std::move(examples);
  }

  BatchOptions bo;
  bo.mode = r.batch_mode;
  bo.batch_size = r.micro_batch_size;
  bo.max_len = r.max_len;
  bo.pad_id = s.tok->eos_id().value_or(0);
  s.plan = std::make_unique<BatchPlan>(s.train_examples, bo, r.seed);
  BatchOptions eval_bo = bo;
  eval_bo.shuffle = false;
  if (!s.eval_examples.empty())
    s.eval_plan = std::make_unique<BatchPlan>(s.eval_examples, eval_bo, r.seed);
  const BatchAccounting acc = s.plan->accounting(0);
  s.batches_per_epoch = acc.micro_batches;
  log::info("train: {} training examples, {} held out; per epoch: {}", s.train_examples.size(),
            s.eval_examples.size(), acc.describe());

  s.grad_accum = r.gradient_accumulation.value_or(1) * world.size();
  const int64_t total =
      total_optimizer_steps(s.batches_per_epoch, s.grad_accum, r.epochs, r.max_steps);
  s.schedule = {r.schedule, r.lr, warmup_steps_for(total, r.warmup_ratio, r.warmup_steps), total};

  const bool lora = r.method == TrainMethod::lora;
  model::LoadOptions lo;
  lo.dtype =
      lora && r.lora.base_dtype == BaseDtype::bf16 ? tensor::DType::bf16 : tensor::DType::f32;
  s.model = model::LlamaModel::load(weights, lo);
  model::TrainOptions to;
  to.lora = lora;
  to.lora_spec.rank = r.lora.rank;
  to.lora_spec.alpha = static_cast<float>(r.lora.alpha);
  to.lora_spec.dropout = static_cast<float>(r.lora.dropout);
  to.lora_spec.rslora = r.lora.rslora;
  to.lora_spec.targets = r.lora.targets;
  to.lora_spec.seed = r.seed;
  to.checkpoint_activations = r.activation_checkpointing;
  to.compute = resolve_compute(r.compute_dtype, s.compute_note);
  OptimizerConfig oc;
  oc.beta1 = static_cast<float>(r.adam_beta1);
  oc.beta2 = static_cast<float>(r.adam_beta2);
  oc.eps = static_cast<float>(r.adam_epsilon);
  oc.weight_decay = static_cast<float>(r.weight_decay);
  oc.max_grad_norm = r.max_grad_norm;
  s.trainer = std::make_unique<Trainer>(*s.model, to, oc, r.seed, world);
  const int64_t mean_len =
      acc.rows > 0 ? acc.tokens_kept / std::max<int64_t>(1, acc.examples) : r.max_len;
  s.flops_per_token = flops_per_token(s.model->config(), lora, mean_len);
  return s;
}

// The micro-batches of the optimiser step that starts at `position`: up to grad_accum of them,
// never across the end of an epoch (its last step may hold fewer, as the paper's script does).
std::vector<MicroBatch> next_step_batches(BatchStream& stream, int64_t grad_accum) {
  std::vector<MicroBatch> out;
  const int64_t epoch = stream.position().epoch;
  while (static_cast<int64_t>(out.size()) < grad_accum && stream.position().epoch == epoch)
    out.push_back(stream.next());
  return out;
}

// This rank's share of `batches` (all of them for one process), in their order.
std::vector<Batch> my_share(const BatchPlan& plan, const std::vector<MicroBatch>& batches,
                            const dist::Communicator& world) {
  std::vector<int64_t> costs;
  for (const MicroBatch& mb : batches) costs.push_back(plan.padded_size(mb));
  const std::vector<int> rank_of = assign_to_ranks(costs, world.size());
  std::vector<Batch> mine;
  for (size_t i = 0; i < batches.size(); ++i)
    if (rank_of[i] == world.rank()) mine.push_back(plan.materialize(batches[i]));
  return mine;
}

EvalStats evaluate(Setup& s, const dist::Communicator& world) {
  if (!s.eval_plan) return {};
  return s.trainer->evaluate(my_share(*s.eval_plan, s.eval_plan->epoch_batches(0), world));
}

// Every rank must run the same model on the same data with the same recipe: compare each rank's
// fingerprints with rank 0's before the first step, and refuse (on every rank, naming the ranks and
// the fields) when any differs.
void check_ranks_agree(dist::Communicator& world, const Fingerprint& model,
                       const Fingerprint& recipe, const Setup& s) {
  if (world.size() == 1) return;
  Fingerprint mine;
  for (const auto& [k, v] : model) mine["model." + k] = v;
  for (const auto& [k, v] : recipe) mine["recipe." + k] = v;
  int64_t tokens = 0;
  for (const Example& e : s.train_examples) tokens += static_cast<int64_t>(e.tokens.size());
  mine["data.examples"] = std::to_string(s.train_examples.size());
  mine["data.tokens"] = std::to_string(tokens);
  mine["data.held_out"] = std::to_string(s.eval_examples.size());
  const std::vector<std::string> all = world.allgather(nlohmann::json(mine).dump());
  const auto first = nlohmann::json::parse(all[0]).get<Fingerprint>();
  std::vector<std::string> problems;
  for (size_t r = 1; r < all.size(); ++r) {
    if (all[r] == all[0]) continue;
    for (const std::string& d :
         fingerprint_differences(first, nlohmann::json::parse(all[r]).get<Fingerprint>()))
      problems.push_back(fmt::format("rank {}: {}", r, d));
  }
  if (!problems.empty()) {
    std::string list;
    for (const std::string& p : problems) list += "\n  " + p;
    // fingerprint_differences says "checkpoint X, now Y": here X is rank 0's value.
    throw Error(
        fmt::format("the {} processes do not run the same job (the model, the data or the "
                    "recipe differs from rank 0's; \"checkpoint\" below is rank 0's value):{}",
                    world.size(), list));
  }
}

void write_final(const TrainRecipe& r, Setup& s, const fs::path& dir) {
  const fs::path tmp = dir.parent_path() / (dir.filename().string() + ".tmp");
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  model::ExportOptions eo;
  eo.tokenizer = s.tokenizer_file;
  eo.name = fs::path(r.output_dir).filename().string();
  eo.chat_template = s.chat_template;
  if (r.method == TrainMethod::lora) {
    write_peft_adapter(s.trainer->network(), tmp / "adapter", r.model);
    // The merged model too, so that generate/chat/serve use the result at once.
    s.trainer->network().merge_lora_into_base();
  }
  model::write_hf_model(*s.model, tmp / "model", eo);
  fs::remove_all(dir);
  fs::rename(tmp, dir);
}

// The checkpoint's tensors: the trainable tensors in model.safetensors, AdamW's moments in
// optimizer.safetensors.
std::string checkpoint_file(const std::string& name) {
  const bool moment = name.ends_with(".exp_avg") || name.ends_with(".exp_avg_sq");
  return moment ? "optimizer.safetensors" : "model.safetensors";
}

std::vector<TensorRef> checkpoint_tensors(Trainer& trainer) {
  std::vector<TensorRef> refs;
  for (const Trainer::StateTensor& t : trainer.state_tensors())
    refs.push_back({checkpoint_file(t.name), t.name, t.tensor.data<float>(),
                    std::vector<int64_t>(t.tensor.shape().begin(), t.tensor.shape().end())});
  return refs;
}

std::vector<TensorSlot> checkpoint_slots(Trainer& trainer) {
  std::vector<TensorSlot> slots;
  for (Trainer::StateTensor& t : trainer.state_tensors())
    slots.push_back({checkpoint_file(t.name), t.name, t.tensor.data<float>(),
                     std::vector<int64_t>(t.tensor.shape().begin(), t.tensor.shape().end())});
  return slots;
}

}  // namespace

RunResult run_training(const TrainRecipe& recipe_in, const RunOptions& options) {
  dist::Communicator& world = options.world ? *options.world : dist::world();
  const bool lead = world.rank() == 0;  // rank 0 writes the run folder; every rank computes
  const TrainRecipe r = recipe_in.resolved(world.size());
  if (r.threads > 0) tensor::set_num_threads(static_cast<int>(r.threads));
  RunResult result;
  result.output = r.output_dir;
  const fs::path out = r.output_dir;
  const RunDir run{out};
  if (!options.resume && !list_checkpoints(out).empty())
    throw Error(fmt::format(
        "{} already holds checkpoints of a run: pass --resume to continue it, or choose another "
        "output_dir",
        out.string()));
  log::info("train: recipe\n{}", to_yaml(r));
  Setup s = prepare(r, world);
  log::info(
      "train: compute {}; master weights, gradients and AdamW f32 ({} trainable tensors{}); {} "
      "optimiser "
      "steps ({} per epoch, up to {} micro-batches each), warmup {}",
      s.compute_note, s.trainer->network().parameters().size(),
      r.method == TrainMethod::lora ? ", LoRA" : "", s.schedule.total_steps,
      (s.batches_per_epoch + s.grad_accum - 1) / s.grad_accum, s.grad_accum,
      s.schedule.warmup_steps);
  result.total_steps = s.schedule.total_steps;
  if (world.size() > 1) {
    log::info(
        "train: data-parallel, {}: each step's {} micro-batches split between the processes by "
        "tokens; {:.1f} MB of gradients summed per step, overlapped with the backward pass",
        world.describe(), s.grad_accum, double(s.trainer->sync_bytes_per_step()) / 1e6);
    if (s.grad_accum < world.size())
      log::warn(
          "train: {} micro-batches per step for {} processes: {} of them idle each step; "
          "raise effective_batch (or gradient_accumulation)",
          s.grad_accum, world.size(), world.size() - s.grad_accum);
  }

  // Resume: weights, optimiser moments, step and data position from the newest checkpoint.
  const Fingerprint model_fp = model_fingerprint(s.model->config()),
                    recipe_fp = recipe_fingerprint(r);
  check_ranks_agree(world, model_fp, recipe_fp, s);
  BatchPosition position;
  int64_t tokens_done = 0;
  double elapsed_before = 0;
  std::optional<int64_t> resumed_at;
  if (options.resume) {
    if (auto latest = latest_checkpoint(out)) {
      const CheckpointState state =
          load_checkpoint(*latest, checkpoint_slots(*s.trainer), model_fp, recipe_fp);
      position = state.data;
      s.trainer->restore_steps(state.step);
      tokens_done = state.tokens;
      elapsed_before = state.elapsed_s;
      resumed_at = state.step;
      log::info("train: resumed from {} (step {}, epoch {}, batch {})", latest->string(),
                state.step, position.epoch, position.index);
    } else {
      log::info("train: --resume: no checkpoint in {} yet; starting from the beginning",
                out.string());
    }
  }
  if (world.size() > 1) {
    // Every rank must have resumed from the same checkpoint (the run folder on a file system they
    // all see).
    const std::string mine = fmt::format("step {}, epoch {}, batch {}", s.trainer->steps(),
                                         position.epoch, position.index);
    const std::vector<std::string> all = world.allgather(mine);
    for (size_t k = 1; k < all.size(); ++k)
      if (all[k] != all[0])
        throw Error(fmt::format(
            "rank {} resumes at {} but rank 0 at {}: every process must see the same run folder "
            "{} (a shared file system)",
            k, all[k], all[0], out.string()));
  }
  std::optional<MetricsLog> metrics;
  if (lead) {
    run.create();
    // The recipe as it resumes: the global batch (effective_batch) fixed, gradient_accumulation
    // left to follow from it, so that the run can go on with another number of processes.
    TrainRecipe saved = r;
    saved.gradient_accumulation.reset();
    write_file_atomic(run.recipe_file(), to_yaml(saved));
    metrics.emplace(run.metrics_file(), resumed_at);
  }

  // MFU against the peak of the dtype computed (bf16: the dot-product peak, where the CPU has one).
  const bool bf16 = s.trainer->network().options().compute == tensor::DType::bf16;
  double peak_gflops = bf16 ? tensor::measure_bf16_dot_peak(tensor::num_threads(), 0.2).gflops : 0;
  if (peak_gflops <= 0) peak_gflops = tensor::measure_fma_peak(tensor::num_threads(), 0.2).gflops;
  if (world.size() > 1) {  // the job's peak: every process's, measured at the same time
    std::array<double, 1> sum{peak_gflops};
    world.allreduce_sum(sum);
    peak_gflops = sum[0];
  }
  BatchStream stream(*s.plan, position);
  InterruptGuard interrupt;
  Progress progress("train", s.schedule.total_steps, "step");
  progress.set_visible(options.progress);
  progress.set(s.trainer->steps());
  const auto t_start = Clock::now();
  int64_t steps_this_run = 0;
  int interrupt_signal = 0;  // a signal another process received
  double smoothed = -1;
  while (s.trainer->steps() < s.schedule.total_steps) {
    const int64_t step = s.trainer->steps();
    const int64_t epoch = stream.position().epoch;
    const std::vector<Batch> micro =
        my_share(*s.plan, next_step_batches(stream, s.grad_accum), world);
    const auto t0 = Clock::now();
    const StepStats st = s.trainer->step(micro, static_cast<float>(s.schedule.lr(step)));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (st.target_tokens == 0) {
      log::warn("train: step {} had no trainable token; skipped", step + 1);
      s.trainer->restore_steps(step + 1);
    }
    ++steps_this_run;
    tokens_done += st.tokens;
    result.last_loss = st.loss;
    smoothed = smoothed < 0 ? st.loss : 0.9 * smoothed + 0.1 * st.loss;
    const double tokens_per_s = seconds > 0 ? double(st.tokens) / seconds : 0;
    const int64_t done = s.trainer->steps();
    MetricsRow row;
    row.step = done;
    row.epoch = double(epoch) + double(stream.position().epoch == epoch ? stream.position().index
                                                                        : s.batches_per_epoch) /
                                    double(std::max<int64_t>(1, s.batches_per_epoch));
    if (st.target_tokens > 0) row.loss = st.loss;
    row.lr = st.lr;
    row.grad_norm = st.grad_norm;
    row.tokens = tokens_done;
    row.tokens_per_s = tokens_per_s;
    if (peak_gflops > 0) row.mfu = tokens_per_s * s.flops_per_token / (peak_gflops * 1e9);
    row.rss_mb = current_rss_mb();  // the largest of any process (below)
    row.elapsed_s = elapsed_before + std::chrono::duration<double>(Clock::now() - t_start).count();
    const bool last = done >= s.schedule.total_steps;
    if (s.eval_plan && ((r.eval_every > 0 && done % r.eval_every == 0) || last)) {
      row.eval_loss = evaluate(s, world).loss;
      result.eval_loss = *row.eval_loss;
    }
    bool interrupted = interrupt.requested();
    bool stop_now = interrupted || (options.stop_requested && options.stop_requested()) ||
                    (options.stop_after > 0 && steps_this_run >= options.stop_after);
    if (world.size() > 1) {
      // The processes stop together (a signal may reach one before another) and report the
      // largest memory of any.
      std::array<double, 3> agree{stop_now ? 1.0 : 0.0,
                                  interrupted ? double(interrupt.signal()) : 0.0, row.rss_mb};
      world.allreduce_max(agree);
      stop_now = agree[0] > 0;
      interrupted = agree[1] > 0;
      if (interrupted && !interrupt.requested()) interrupt_signal = static_cast<int>(agree[1]);
      row.rss_mb = agree[2];
    }
    if (metrics && (done % std::max<int64_t>(1, r.log_every) == 0 || last || row.eval_loss))
      metrics->append(row);
    progress.set(done);
    if (options.on_step) options.on_step(done, s.schedule.total_steps);
    progress.set_note(
        fmt::format("loss {:.4f}{} lr {:.2e} {:.0f} tok/s", smoothed,
                    row.eval_loss ? fmt::format(" eval {:.4f}", *row.eval_loss) : std::string(),
                    st.lr, tokens_per_s));
    if (lead && ((r.save_every > 0 && done % r.save_every == 0 && !last) || (stop_now && !last))) {
      CheckpointState state;
      state.step = done;
      state.epoch = row.epoch;
      state.data = stream.position();
      state.schedule = s.schedule;
      state.tokens = tokens_done;
      state.elapsed_s = row.elapsed_s;
      state.model = model_fp;
      state.recipe = recipe_fp;
      save_run_checkpoint(run, state, checkpoint_tensors(*s.trainer), r.keep_last);
    }
    if (stop_now && !last) {
      result.interrupted = interrupted;
      const int signal = interrupt.requested() ? interrupt.signal() : interrupt_signal;
      if (result.interrupted)
        log::info(
            "train: {} received: checkpoint written at step {}; rerun with --resume to continue",
            signal == 2 ? "SIGINT" : "SIGTERM", done);
      break;
    }
  }
  progress.finish();
  result.steps = s.trainer->steps();
  if (world.size() > 1) world.barrier();  // the last checkpoint is written before anyone returns
  if (result.steps >= s.schedule.total_steps) {
    if (lead) write_final(r, s, run.final_dir());
    result.finished = true;
    log::info("train: done: {} steps, last loss {:.4f}{}; model in {}", result.steps,
              result.last_loss,
              result.eval_loss >= 0 ? fmt::format(", held-out loss {:.4f}", result.eval_loss)
                                    : std::string(),
              (out / "final").string());
  }
  if (lead) write_loss_chart(run.chart_file(), metrics->rows());
  if (world.size() > 1) world.barrier();  // final/ and loss.png are there when any process returns
  return result;
}

}  // namespace seqit::train
