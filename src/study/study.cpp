#include "study/study.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/writer.h"
#include "llm/local_backend.h"
#include "model/config.h"
#include "study/arms.h"
#include "study/report.h"
#include "study/scratch_model.h"
#include "study/world_eval.h"
#include "synth/chain.h"
#include "synth/rng.h"
#include "synth/split.h"
#include "synth/task.h"
#include "synth/world_tokenizer.h"
#include "tensor/threading.h"
#include "tokenizer/tokenizer.h"
#include "train/metrics.h"
#include "train/recipe.h"
#include "train/run.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::study {
namespace fs = std::filesystem;
using json = nlohmann::json;

StudySettings StudySettings::quick() {
  StudySettings s;
  s.name = "quick";
  s.seeds = {1};
  s.arms = {"it", "sit"};
  s.items = 300;
  s.pool_items = 0;
  s.eval_per_length = 8;
  s.eval_max_steps = 4;
  s.hidden = 64;
  s.layers = 2;
  s.heads = 4;
  s.kv_heads = 2;
  s.ffn = 172;
  s.steps = 60;
  return s;
}

json StudySettings::to_json() const {
  return {{"name", name},
          {"data_seed", data_seed},
          {"seeds", seeds},
          {"arms", arms},
          {"items", items},
          {"pool_items", pool_items},
          {"iterations", iterations},
          {"lexicon", lexicon},
          {"input_words", input_words},
          {"input_numbers", input_numbers},
          {"input_facts", input_facts},
          {"max_number", max_number},
          {"base", base},
          {"base_tokenizer", base_tokenizer},
          {"corrupt_rate", corrupt_rate},
          {"eval_per_length", eval_per_length},
          {"eval_max_steps", eval_max_steps},
          {"eval_max_tokens", eval_max_tokens},
          {"hidden", hidden},
          {"layers", layers},
          {"heads", heads},
          {"kv_heads", kv_heads},
          {"ffn", ffn},
          {"context", context},
          {"steps", steps},
          {"micro_batch", micro_batch},
          {"max_len", max_len},
          {"lr", lr},
          {"warmup_ratio", warmup_ratio},
          {"threads", threads},
          {"jobs", jobs}};
}

void StudySettings::apply(const std::vector<std::string>& overrides) {
  json j = to_json();
  for (const std::string& o : overrides) {
    const size_t eq = o.find('=');
    if (eq == std::string::npos) throw Error("a setting is key=value, not '" + o + "'");
    const std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    if (!j.contains(key)) {
      std::string keys;
      for (const auto& [k, v] : j.items()) keys += (keys.empty() ? "" : ", ") + k;
      throw Error(fmt::format("unknown study setting '{}' (settings: {})", key, keys));
    }
    // JSON, or the shorthand a shell makes easy: a bare word is a string, [a,b] a list of them.
    auto scalar = [](const std::string& text) {
      json v = json::parse(text, nullptr, false);
      return v.is_discarded() ? json(text) : v;
    };
    json parsed = json::parse(value, nullptr, false);
    if (parsed.is_discarded() && value.size() >= 2 && value.front() == '[' && value.back() == ']') {
      parsed = json::array();
      std::string inner = value.substr(1, value.size() - 2), part;
      for (size_t start = 0; start <= inner.size();) {
        size_t comma = inner.find(',', start);
        if (comma == std::string::npos) comma = inner.size();
        part = inner.substr(start, comma - start);
        part.erase(0, part.find_first_not_of(' '));
        part.erase(part.find_last_not_of(' ') + 1);
        if (!part.empty()) parsed.push_back(scalar(part));
        start = comma + 1;
      }
    } else if (parsed.is_discarded()) {
      parsed = value;
    }
    if (j[key].is_array() && !parsed.is_array()) parsed = json::array({parsed});
    const bool same_kind = (j[key].is_number() && parsed.is_number()) ||
                           (j[key].is_string() && parsed.is_string()) ||
                           (j[key].is_array() && parsed.is_array());
    if (!same_kind)
      throw Error(fmt::format("study setting '{}': expected {} like {}, got '{}'", key,
                              j[key].type_name(), j[key].dump(), value));
    j[key] = parsed;
  }
  try {
    name = j["name"];
    data_seed = j["data_seed"];
    seeds = j["seeds"].get<std::vector<uint64_t>>();
    arms = j["arms"].get<std::vector<std::string>>();
    items = j["items"];
    pool_items = j["pool_items"];
    iterations = j["iterations"];
    corrupt_rate = j["corrupt_rate"];
    eval_per_length = j["eval_per_length"];
    eval_max_steps = j["eval_max_steps"];
    eval_max_tokens = j["eval_max_tokens"];
    lexicon = j["lexicon"];
    input_words = j["input_words"].get<std::vector<int>>();
    input_numbers = j["input_numbers"].get<std::vector<int>>();
    input_facts = j["input_facts"].get<std::vector<int>>();
    max_number = j["max_number"];
    base = j["base"];
    base_tokenizer = j["base_tokenizer"];
    hidden = j["hidden"];
    layers = j["layers"];
    heads = j["heads"];
    kv_heads = j["kv_heads"];
    ffn = j["ffn"];
    context = j["context"];
    steps = j["steps"];
    micro_batch = j["micro_batch"];
    max_len = j["max_len"];
    lr = j["lr"];
    warmup_ratio = j["warmup_ratio"];
    threads = j["threads"];
    jobs = j["jobs"];
  } catch (const json::exception& e) {
    throw Error(std::string("study settings: ") + e.what());
  }
  for (const auto& arm : arms)
    if (arm != "it" && arm != "sit" && arm != "it_matched" && arm != "sit_corrupted")
      throw Error("unknown arm '" + arm + "' (it, sit, it_matched, sit_corrupted)");
  if (seeds.empty()) throw Error("study setting 'seeds': at least one seed");
  if (threads < 0)
    throw Error(fmt::format("study setting 'threads': 0 (every core) or more, got {}", threads));
  if (jobs < 0)
    throw Error(fmt::format("study setting 'jobs': 0 (one per thread) or more, got {}", jobs));
  for (const auto& [key, range] : {std::pair{"input_words", &input_words},
                                   {"input_numbers", &input_numbers},
                                   {"input_facts", &input_facts}})
    if (range->size() != 2)
      throw Error(fmt::format("study setting '{}': [min, max], e.g. {}=[2,4]", key, key));
  try {
    input_shape().validate();
  } catch (const Error& e) {
    throw Error(std::string("study settings: ") + e.what());
  }
}

synth::InputShape StudySettings::input_shape() const {
  synth::InputShape shape;
  shape.lexicon = lexicon;
  if (input_words.size() == 2) shape.min_words = input_words[0], shape.max_words = input_words[1];
  if (input_numbers.size() == 2)
    shape.min_numbers = input_numbers[0], shape.max_numbers = input_numbers[1];
  if (input_facts.size() == 2) shape.min_facts = input_facts[0], shape.max_facts = input_facts[1];
  shape.max_number = max_number;
  return shape;
}

namespace {

// Bumped when the synthetic world (tasks, phrasings, teacher, tokenizer) changes what a stage
// makes, so that cached stages of an older world are not reused.
constexpr const char* kWorldVersion = "world-1";

// The model every arm starts from and its tokenizer.
struct Base {
  std::string model, tokenizer;
  bool scratch = false;
};
Base resolve_base(const StudySettings& s, const fs::path& world_dir) {
  if (s.base == "scratch")
    return {(world_dir / "config.json").string(), (world_dir / "tokenizer.json").string(), true};
  Base b;
  if (s.base == "stories260K") {
    const auto dir = find_shared_data("models/stories260K");
    if (!dir || !fs::exists(*dir / "stories260K.bin"))
      throw Error(
          "study setting base=stories260K: no models/stories260K/stories260K.bin in the "
          "shared data (set SEQIT_SHARED_DATA to the shared data folder)");
    b.model = fs::absolute(*dir / "stories260K.bin").string();
    b.tokenizer = fs::absolute(*dir / "tok512.bin").string();
  } else {
    const fs::path model = fs::absolute(s.base);
    if (!fs::exists(model)) throw Error("study setting 'base': no model at " + model.string());
    b.model = model.string();
    // A folder or a GGUF file holds its tokenizer; a llama2.c .bin has its tok512.bin beside it.
    b.tokenizer = model.extension() == ".bin" && fs::exists(model.parent_path() / "tok512.bin")
                      ? (model.parent_path() / "tok512.bin").string()
                      : b.model;
  }
  if (!s.base_tokenizer.empty()) b.tokenizer = fs::absolute(s.base_tokenizer).string();
  return b;
}

// The stage "world": the tokenizer and the model's config.json (from scratch), or the pretrained
// base model's size.
json write_world(const fs::path& dir, const StudySettings& s, const Base& b) {
  if (!b.scratch) {
    const auto tok = tokenizer::load_tokenizer(b.tokenizer);
    return {{"base", b.model}, {"tokenizer", b.tokenizer}, {"vocab", tok->vocab_size()}};
  }
  study::ScratchModelSize size;
  size.hidden = s.hidden;
  size.layers = s.layers;
  size.heads = s.heads;
  size.intermediate = s.ffn;
  size.context = s.context;
  model::ModelConfig config = world_model_config(size);
  config.num_kv_heads = s.kv_heads;
  config.validate("study settings");
  synth::write_world_tokenizer(dir, static_cast<int>(s.context));
  write_file_atomic(dir / "config.json", model::hf_config_json(config, "float32"));
  return {{"vocab", config.vocab_size}, {"parameters", config.parameter_count()}};
}

// The stage "data": the arms' training files (seqit JSONL: the chain of each record in its meta).
json write_arms(const fs::path& dir, const Base& base, const StudySettings& s) {
  const auto tok = tokenizer::load_tokenizer(base.tokenizer);
  ArmOptions o;
  o.seed = s.data_seed;
  o.items = s.items;
  o.pool_factor =
      std::max<int64_t>(4, (s.pool_items + s.items - 1) / std::max<int64_t>(1, s.items));
  o.iterations = s.iterations;
  o.corrupt = s.corrupt_rate;
  o.shape = s.input_shape();
  o.work_dir = dir / "work";
  const Arms arms = build_arms(o, *tok);
  json summary = json::object();
  for (const Arm* arm : {&arms.it, &arms.sit, &arms.it_matched, &arms.sit_corrupted}) {
    data::RecordFileWriter writer(dir / (arm->name + ".jsonl"),
                                  data::Format{data::Schema::seqit, data::Container::jsonl});
    for (const auto& record : arm->records) writer.write(record);
    writer.commit();
    json steps = json::object();
    for (const auto& [n, count] : arm->steps) steps[std::to_string(n)] = count;
    summary[arm->name] = {{"records", arm->records.size()},
                          {"response_tokens", arm->response_tokens},
                          {"steps", steps}};
  }
  return summary;
}

// The training recipe of one arm and seed: the base (from scratch: init random) on the arm's file,
// the same steps and batch for every arm; no system block, as the evaluation asks.
train::TrainRecipe study_recipe(const StudySettings& s, const Base& base, const fs::path& data_dir,
                                const std::string& arm, uint64_t seed, const fs::path& out) {
  train::TrainRecipe r;
  r.model = base.model;
  r.init = base.scratch ? "random" : "pretrained";
  r.tokenizer = base.tokenizer;
  r.data = {(data_dir / (arm + ".jsonl")).string()};
  r.output_dir = out.string();
  r.chat_template = "tulu";
  r.default_system.reset();
  r.max_len = s.max_len;
  r.batch_mode = train::BatchMode::length_grouped;
  r.micro_batch_size = s.micro_batch;
  r.gradient_accumulation = 1;
  r.epochs = 1000;
  r.max_steps = s.steps;
  r.lr = s.lr;
  r.schedule = train::ScheduleKind::cosine;
  r.warmup_ratio = s.warmup_ratio;
  r.weight_decay = 0;
  r.seed = seed;
  r.save_every = std::max<int64_t>(50, s.steps / 4);
  r.keep_last = 1;
  r.log_every = 1;
  r.compute_dtype = train::ComputeDtype::f32;
  r.threads = s.threads;
  return r.resolved();
}

json world_key(const StudySettings& s) {
  if (s.base != "scratch")
    return {{"base", s.base}, {"base_tokenizer", s.base_tokenizer}, {"world", kWorldVersion}};
  return {{"hidden", s.hidden},     {"layers", s.layers}, {"heads", s.heads},
          {"kv_heads", s.kv_heads}, {"ffn", s.ffn},       {"context", s.context},
          {"world", kWorldVersion}};
}
json shape_json(const StudySettings& s) {
  return {{"lexicon", s.lexicon},
          {"words", s.input_words},
          {"numbers", s.input_numbers},
          {"facts", s.input_facts},
          {"max_number", s.max_number}};
}

// The data depend on the tokenizer (the token-matched arm counts tokens), not on the model's size.
json data_key(const StudySettings& s) {
  return {{"base", s.base},
          {"base_tokenizer", s.base_tokenizer},
          {"inputs", shape_json(s)},
          {"data_seed", s.data_seed},
          {"items", s.items},
          {"pool_items", s.pool_items},
          {"iterations", s.iterations},
          {"corrupt_rate", s.corrupt_rate},
          {"arms", s.arms},
          {"world", kWorldVersion}};
}
json train_key(const StudySettings& s, const StageInfo& world, const StageInfo& data,
               const std::string& arm, uint64_t seed) {
  return {{"world", world.hash},  {"data", data.hash}, {"arm", arm},
          {"seed", seed},         {"steps", s.steps},  {"micro_batch", s.micro_batch},
          {"max_len", s.max_len}, {"lr", s.lr},        {"warmup_ratio", s.warmup_ratio}};
}
json eval_key(const StudySettings& s, const StageInfo& train) {
  return {{"train", train.hash},
          {"inputs", shape_json(s)},
          {"data_seed", s.data_seed},
          {"eval_per_length", s.eval_per_length},
          {"eval_max_steps", s.eval_max_steps},
          {"eval_max_tokens", s.eval_max_tokens},
          {"world", kWorldVersion}};
}
std::string train_name(const std::string& arm, uint64_t seed) {
  return fmt::format("train-{}-s{}", arm, seed);
}
std::string eval_name(const std::string& arm, uint64_t seed) {
  return fmt::format("eval-{}-s{}", arm, seed);
}

// The held-out evaluation items (a seed of their own, derived from the data seed).
std::vector<synth::Item> eval_items(const StudySettings& s) {
  return synth::make_eval_items(s.data_seed * 1000003 + 17, s.eval_per_length, s.eval_max_steps,
                                s.input_shape());
}

// The sanity gate's items: single atomic tasks in their *training* phrasings on *held-out* inputs
// — can the IT model do the tasks it was taught, on inputs it has not seen?
std::vector<synth::Item> gate_items(const StudySettings& s) {
  synth::Rng rng(s.data_seed * 7919 + 5);
  std::vector<synth::Item> out;
  for (int64_t i = 0; i < s.eval_per_length; ++i) {
    const synth::TaskId t = rng.pick(synth::atomic_tasks());
    std::vector<synth::Kind> kinds;
    for (synth::Kind k : synth::kInputKinds)
      if (synth::accepts(t, k)) kinds.push_back(k);
    const std::string input =
        synth::random_split_input(rng.pick(kinds), synth::Split::kEval, rng, s.input_shape());
    synth::Chain chain{{{t, synth::random_phrasing(t, false, rng)}}, synth::Connective::kFirstThen};
    out.push_back(synth::make_item(fmt::format("synth-gate-{:05d}", i), std::move(chain), input));
  }
  return out;
}

}  // namespace

StudyResult run_study(const fs::path& out, const StudySettings& s, const StudyProgress& progress) {
  StageStore store(out);
  auto started = [&](const std::string& stage, const std::string& what) {
    if (progress.stage_started) progress.stage_started(stage, what);
  };

  // The plan, for `seqit study status` (keys of later stages depend on earlier hashes).
  const StageInfo world0 = store.info("world", world_key(s));
  // The model every arm starts from (checked before any stage runs).
  const Base base = resolve_base(s, world0.dir);
  const StageInfo data0 = store.info("data", data_key(s));
  std::vector<std::pair<std::string, json>> plan = {{"world", world_key(s)}, {"data", data_key(s)}};
  for (const auto& arm : s.arms)
    for (uint64_t seed : s.seeds) {
      const json tk = train_key(s, world0, data0, arm, seed);
      plan.emplace_back(train_name(arm, seed), tk);
      plan.emplace_back(eval_name(arm, seed), eval_key(s, store.info(train_name(arm, seed), tk)));
    }
  store.plan(plan);
  write_file_atomic(out / "settings.json", s.to_json().dump(2) + "\n");

  started("world", "tokenizer and model config");
  const StageInfo world = store.run("world", world_key(s),
                                    [&](const fs::path& dir) { return write_world(dir, s, base); });
  started("data", "the arms' training sets through Seq-Instruct and the teacher");
  json data_summary;
  const StageInfo data = store.run(
      "data", data_key(s), [&](const fs::path& dir) { return write_arms(dir, base, s); },
      &data_summary);

  const std::vector<synth::Item> items = eval_items(s), gates = gate_items(s);
  std::vector<synth::Item> asked = items;
  asked.insert(asked.end(), gates.begin(), gates.end());
  // One job per arm and seed: train, then answer the held-out items. Jobs are independent and run
  // `jobs` at a time; a job's results do not depend on what runs beside it.
  struct Job {
    std::string arm;
    uint64_t seed;
  };
  std::vector<Job> in_order;  // arm by arm, seed by seed: the report's order
  for (const auto& arm : s.arms)
    for (uint64_t seed : s.seeds) in_order.push_back({arm, seed});
  std::vector<Job> jobs = in_order;  // the order they run in
  int64_t pending = 0;
  for (const Job& job : jobs) {
    const StageInfo t =
        store.info(train_name(job.arm, job.seed), train_key(s, world, data, job.arm, job.seed));
    pending += !t.done || !store.info(eval_name(job.arm, job.seed), eval_key(s, t)).done;
  }
  const int threads = s.threads > 0 ? s.threads : tensor::num_threads();
  const int parallel = static_cast<int>(
      std::clamp<int64_t>(s.jobs > 0 ? s.jobs : threads, 1, std::max<int64_t>(1, pending)));
  const int job_threads = std::max(1, threads / parallel);
  // With jobs at once, longest first (rows of SIT chains are ~1.7x as long as IT's), so that two
  // jobs at once do not end with one long job running alone; the results do not depend on the
  // order.
  if (parallel > 1) {
    std::map<std::string, double> bytes_per_row;
    for (const auto& arm : s.arms) {
      const fs::path file = data.dir / (arm + ".jsonl");
      const int64_t records =
          data_summary.contains(arm) ? data_summary[arm].value("records", 0) : 0;
      bytes_per_row[arm] =
          records > 0 && fs::exists(file) ? double(fs::file_size(file)) / double(records) : 0.0;
    }
    std::stable_sort(jobs.begin(), jobs.end(), [&](const Job& a, const Job& b) {
      return bytes_per_row[a.arm] > bytes_per_row[b.arm];
    });
  }
  const bool job_bars = progress.bars && parallel == 1;
  // With several jobs at once, one bar counts the optimiser steps of them all.
  std::unique_ptr<Progress> overall;
  if (parallel > 1) {
    log::info("study: {} jobs at once, {} thread{} each", parallel, job_threads,
              job_threads == 1 ? "" : "s");
    overall = std::make_unique<Progress>("study: training", pending * s.steps, "steps");
    overall->set_visible(progress.bars);
  }
  std::mutex started_mutex;
  std::atomic<bool> failed{false};
  std::exception_ptr first_error;
  std::mutex error_mutex;

  auto run_job = [&](const Job& job) {
    const std::string tname = train_name(job.arm, job.seed);
    {
      std::lock_guard lock(started_mutex);
      started(tname, fmt::format("{} steps on {}", s.steps, job.arm));
    }
    const StageInfo train =
        store.run(tname, train_key(s, world, data, job.arm, job.seed), [&](const fs::path& dir) {
          train::TrainRecipe r = study_recipe(s, base, data.dir, job.arm, job.seed, dir / "run");
          r.threads = job_threads;
          train::RunOptions ro;
          ro.resume = true;
          ro.progress = job_bars;
          // Counts the steps of this invocation (a resumed run starts late).
          int64_t last = -1;
          ro.on_step = [&](int64_t done, int64_t) {
            if (overall) overall->add(last < 0 ? 1 : done - last);
            last = done;
          };
          ro.stop_requested = [&] { return failed.load(); };
          const train::RunResult result = train::run_training(r, ro);
          if (!result.finished) throw Error("training stopped before the end; rerun to continue");
          return json{{"steps", result.steps}, {"final_loss", result.last_loss}};
        });
    const std::string ename = eval_name(job.arm, job.seed);
    {
      std::lock_guard lock(started_mutex);
      started(ename,
              fmt::format("{} held-out chains and {} gate items", items.size(), gates.size()));
    }
    store.run(ename, eval_key(s, train), [&](const fs::path& dir) {
      llm::LocalBackendOptions lo;
      lo.max_batch = 16;
      lo.chat_template = "tulu";
      auto backend = llm::LocalBackend::open((train.dir / "run" / "final" / "model").string(),
                                             base.tokenizer, lo);
      WorldEvalOptions eo;
      eo.max_tokens = s.eval_max_tokens;
      std::unique_ptr<Progress> bar;
      if (job_bars)
        bar = std::make_unique<Progress>(ename, static_cast<int64_t>(asked.size()), "items");
      eo.progress = [&](int64_t done, int64_t) {
        if (bar) bar->set(done);
      };
      auto grades = evaluate_world(*backend, asked, dir / "results.jsonl", eo);
      if (bar) bar->finish();
      grades.resize(items.size());
      const auto scores = score_by_length(items, grades);
      return json{{"final_accuracy", scores.all.final_accuracy},
                  {"following", scores.all.following_rate}};
    });
  };

  tensor::set_num_threads(job_threads);
  if (parallel == 1) {
    for (const Job& job : jobs) run_job(job);
  } else {
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i; !failed.load() && (i = next.fetch_add(1)) < jobs.size();) {
        try {
          run_job(jobs[i]);
        } catch (...) {
          std::lock_guard lock(error_mutex);
          if (!first_error) first_error = std::current_exception();
          failed = true;  // the other jobs checkpoint and stop
        }
      }
    };
    std::vector<std::thread> workers;
    for (int w = 0; w < parallel; ++w) workers.emplace_back(worker);
    for (auto& w : workers) w.join();
    overall->finish();
    if (first_error) std::rethrow_exception(first_error);
  }

  // The report reads the results back, in arm and seed order: every number comes from the results
  // files.
  std::vector<ArmRun> runs;
  for (const Job& job : in_order) {
    const StageInfo train =
        store.info(train_name(job.arm, job.seed), train_key(s, world, data, job.arm, job.seed));
    const StageInfo ev = store.info(eval_name(job.arm, job.seed), eval_key(s, train));
    ArmRun run;
    run.arm = job.arm;
    run.seed = job.seed;
    run.results_file = fs::relative(ev.dir / "results.jsonl", out).string();
    run.grades = read_grades(items, ev.dir / "results.jsonl");
    run.gate_grades = read_grades(gates, ev.dir / "results.jsonl");
    for (const auto& g : gates)
      run.gate_tasks.emplace_back(synth::task_info(g.chain.steps.front().task).name);
    run.metrics = train::read_metrics(train.dir / "run" / "metrics.jsonl");
    runs.push_back(std::move(run));
  }

  started("report", "comparison");
  const fs::path report_dir = out / "report";
  fs::create_directories(report_dir);
  const StudyReport report = build_study_report(items, runs);
  const std::string model_md =
      s.base == "scratch"
          ? fmt::format("from scratch, hidden {}, {} layers, {} heads ({} kv), ffn {}, context {}",
                        s.hidden, s.layers, s.heads, s.kv_heads, s.ffn, s.context)
          : fmt::format("pretrained `{}` (`{}`, tokenizer `{}`)", s.base, base.model,
                        base.tokenizer);
  std::string settings_md = fmt::format(
      "- study: `{}`; arms: {}; seeds: {}\n- data: {} single-task items (seed {}), {} Seq-Instruct "
      "passes; arm sizes: {}\n- inputs: {}\n- model: {}\n- training: {} steps of {} rows (max {} "
      "tokens), lr {}, "
      "warmup {}\n- evaluation: {} held-out chains of each length 1..{} (held-out phrasings, task "
      "pairs and inputs), greedy, {} tokens; gate: {} single tasks in training phrasings on "
      "held-out inputs\n- all settings: `{}`\n",
      s.name, fmt::join(s.arms, ", "), fmt::join(s.seeds, ", "), s.items, s.data_seed, s.iterations,
      data_summary.dump(), shape_json(s).dump(), model_md, s.steps, s.micro_batch, s.max_len, s.lr,
      s.warmup_ratio, s.eval_per_length, s.eval_max_steps, s.eval_max_tokens, gates.size(),
      (out / "settings.json").string());
  write_study_report(report_dir, report, runs, settings_md);
  return {report_dir, report.verdict, report.meaningful};
}

std::vector<StageInfo> study_status(const fs::path& out) {
  if (!fs::exists(out / "manifest.json"))
    throw Error("no study here (no manifest.json): run `seqit study -o " + out.string() +
                "` first");
  return StageStore(out).status();
}

}  // namespace seqit::study
