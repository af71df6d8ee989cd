#include "train/run_dir.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "model/safetensors.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::train {
namespace fs = std::filesystem;
using nlohmann::ordered_json;

namespace {

constexpr const char* kManifest = "checkpoint.json";
constexpr const char* kFormat = "seqit-checkpoint";

std::string number_text(double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

std::string list_text(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + "]";
}

template <typename T>
std::string optional_text(const std::optional<T>& v) {
  if (!v) return "null";
  if constexpr (std::is_same_v<T, std::string>)
    return "\"" + *v + "\"";
  else
    return std::to_string(*v);
}

// "step-000120" -> 120; nullopt for anything else.
std::optional<int64_t> step_of_name(const std::string& name) {
  if (!name.starts_with("step-") || name.size() == 5) return std::nullopt;
  int64_t step = 0;
  auto [end, ec] = std::from_chars(name.data() + 5, name.data() + name.size(), step);
  if (ec != std::errc() || end != name.data() + name.size() || step < 0) return std::nullopt;
  return step;
}

int64_t element_count(const std::vector<int64_t>& shape, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      throw Error(
          fmt::format("{}: negative dimension in shape {}", what, model::shape_string(shape)));
    if (d != 0 && n > INT64_MAX / 4 / d)
      throw Error(fmt::format("{}: shape {} is too large", what, model::shape_string(shape)));
    n *= d;
  }
  return n;
}

bool plain_file_name(const std::string& file) {
  return !file.empty() && file.find('/') == std::string::npos && file != "." && file != ".." &&
         file != kManifest && file.ends_with(".safetensors");
}

// Tensors grouped by file, files in order of first appearance; checks names and shapes.
std::vector<std::pair<std::string, std::vector<const TensorRef*>>> group_by_file(
    const std::vector<TensorRef>& tensors) {
  std::vector<std::pair<std::string, std::vector<const TensorRef*>>> files;
  std::set<std::pair<std::string, std::string>> seen;
  for (const TensorRef& t : tensors) {
    std::string what = fmt::format("tensor '{}' of {}", t.name, t.file);
    if (!plain_file_name(t.file))
      throw Error(fmt::format("{}: the file must be a plain name ending in .safetensors", what));
    if (t.name.empty()) throw Error(fmt::format("a tensor of {} has no name", t.file));
    if (!seen.emplace(t.file, t.name).second) throw Error(fmt::format("{}: given twice", what));
    if (element_count(t.shape, what) > 0 && t.data == nullptr)
      throw Error(fmt::format("{}: no data", what));
    auto it =
        std::find_if(files.begin(), files.end(), [&](const auto& f) { return f.first == t.file; });
    if (it == files.end()) {
      files.emplace_back(t.file, std::vector<const TensorRef*>{});
      it = files.end() - 1;
    }
    it->second.push_back(&t);
  }
  return files;
}

ordered_json fingerprint_json(const Fingerprint& f) {
  ordered_json j = ordered_json::object();
  for (const auto& [k, v] : f) j[k] = v;
  return j;
}

// Folders left by a crashed save beside `dir` (.tmp-*) or by a crashed replace/prune (.trash-*).
void remove_stale_temporaries(const fs::path& parent) {
  std::error_code ec;
  if (!fs::is_directory(parent, ec)) return;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    std::string name = entry.path().filename().string();
    if ((name.starts_with(".tmp-") || name.starts_with(".trash-")) && entry.is_directory(ec))
      fs::remove_all(entry.path(), ec);
  }
}

fs::path sibling_name(const fs::path& dir, std::string_view prefix) {
  static std::atomic<uint64_t> counter{0};
  return dir.parent_path() /
         fmt::format("{}{}-{}-{}", prefix, dir.filename().string(), ::getpid(), counter++);
}

[[noreturn]] void bad_manifest(const fs::path& dir, const std::string& why) {
  throw Error(fmt::format("not a complete seqit checkpoint: {}", why))
      .in_file((dir / kManifest).string());
}

}  // namespace

// ---- the run folder ------------------------------------------------------------------------

fs::path RunDir::checkpoint_dir(int64_t step) const {
  return checkpoints_dir() / fmt::format("step-{:06d}", step);
}

void RunDir::create() const {
  std::error_code ec;
  fs::create_directories(checkpoints_dir(), ec);
  if (ec)
    throw Error(fmt::format("cannot create the run folder: {}", ec.message()))
        .in_file(checkpoints_dir().string());
}

// ---- fingerprints --------------------------------------------------------------------------

Fingerprint model_fingerprint(const model::ModelConfig& c) {
  Fingerprint f;
  f["architecture"] = c.architecture;
  f["vocab_size"] = std::to_string(c.vocab_size);
  f["hidden_size"] = std::to_string(c.hidden_size);
  f["intermediate_size"] = std::to_string(c.intermediate_size);
  f["num_layers"] = std::to_string(c.num_layers);
  f["num_heads"] = std::to_string(c.num_heads);
  f["num_kv_heads"] = std::to_string(c.num_kv_heads);
  f["head_dim"] = std::to_string(c.head_dim);
  f["rms_norm_eps"] = number_text(c.rms_norm_eps);
  f["rope_theta"] = number_text(c.rope_theta);
  f["rope_scaling"] =
      fmt::format("{} factor {} low {} high {} original {}", c.rope_scaling.type,
                  number_text(c.rope_scaling.factor), number_text(c.rope_scaling.low_freq_factor),
                  number_text(c.rope_scaling.high_freq_factor),
                  c.rope_scaling.original_max_position_embeddings);
  f["rope_freq_factors"] = std::to_string(c.rope_freq_factors.size());
  f["tie_word_embeddings"] = c.tie_word_embeddings ? "true" : "false";
  f["qkv_bias"] = c.qkv_bias ? "true" : "false";
  f["o_bias"] = c.o_bias ? "true" : "false";
  f["sliding_window"] = optional_text(c.sliding_window);
  return f;
}

Fingerprint recipe_fingerprint(const TrainRecipe& r) {
  Fingerprint f;
  f["data"] = list_text(r.data);
  f["data_format"] = r.data_format;
  f["eval_data"] = optional_text(r.eval_data);
  f["eval_fraction"] = number_text(r.eval_fraction);
  f["eval_count"] = optional_text(r.eval_count);
  f["tokenizer"] = optional_text(r.tokenizer);
  f["init"] = r.init == "random" ? "random std " + number_text(r.init_std) : r.init;
  f["template"] = r.chat_template;
  f["turns"] = std::string(turn_policy_name(r.turns));
  f["train_on_inputs"] = r.train_on_inputs ? "true" : "false";
  f["max_len"] = std::to_string(r.max_len);
  f["default_system"] = optional_text(r.default_system);
  f["batch_mode"] = std::string(batch_mode_name(r.batch_mode));
  f["micro_batch_size"] = std::to_string(r.micro_batch_size);
  // Micro-batches per optimiser step over all processes (effective_batch / micro_batch_size): a run
  // checkpointed with N processes resumes with M. (With one process this is gradient_accumulation,
  // the key's name from before data-parallel training.)
  f["gradient_accumulation"] = r.effective_batch
                                   ? std::to_string(*r.effective_batch / r.micro_batch_size)
                                   : optional_text(r.gradient_accumulation);
  f["seed"] = std::to_string(r.seed);
  f["method"] = std::string(method_name(r.method));
  if (r.method == TrainMethod::lora) {
    f["lora.rank"] = std::to_string(r.lora.rank);
    f["lora.alpha"] = number_text(r.lora.alpha);
    f["lora.targets"] = list_text(r.lora.targets);
    f["lora.rslora"] = r.lora.rslora ? "true" : "false";
    f["lora.base_dtype"] = std::string(base_dtype_name(r.lora.base_dtype));
  }
  return f;
}

std::vector<std::string> fingerprint_differences(const Fingerprint& saved, const Fingerprint& now) {
  std::vector<std::string> out;
  std::set<std::string> keys;
  for (const auto& [k, v] : saved) keys.insert(k);
  for (const auto& [k, v] : now) keys.insert(k);
  for (const std::string& k : keys) {
    auto a = saved.find(k), b = now.find(k);
    std::string va = a == saved.end() ? "(absent)" : a->second;
    std::string vb = b == now.end() ? "(absent)" : b->second;
    if (va != vb) out.push_back(fmt::format("{}: checkpoint {}, now {}", k, va, vb));
  }
  return out;
}

// ---- save ----------------------------------------------------------------------------------

void save_checkpoint(const fs::path& dir, const CheckpointState& state,
                     const std::vector<TensorRef>& tensors) {
  const fs::path parent = dir.parent_path().empty() ? fs::path(".") : dir.parent_path();
  fs::path temp;
  try {
    auto files = group_by_file(tensors);
    fs::create_directories(parent);
    remove_stale_temporaries(parent);
    temp = sibling_name(dir, ".tmp-");
    fs::create_directory(temp);

    ordered_json manifest_files = ordered_json::object();
    for (const auto& [file, refs] : files) {
      model::SafetensorsWriter writer;
      writer.set_metadata("format", "pt");  // what transformers expects of a torch-written file
      for (const TensorRef* t : refs) {
        int64_t n = element_count(t->shape, t->name);
        const float* data = t->data;
        writer.add(t->name, model::StorageType::f32, t->shape,
                   [data, n](uint8_t* out) { std::memcpy(out, data, size_t(n) * sizeof(float)); });
      }
      writer.write(temp / file);  // fsync'ed (AtomicFileWriter)
      manifest_files[file] = {{"bytes", fs::file_size(temp / file)}, {"tensors", refs.size()}};
    }

    ordered_json m;
    m["format"] = kFormat;
    m["format_version"] = state.format_version;
    m["step"] = state.step;
    m["epoch"] = state.epoch;
    m["data_position"] = {{"epoch", state.data.epoch}, {"index", state.data.index}};
    m["schedule"] = {{"kind", std::string(schedule_name(state.schedule.kind))},
                     {"base_lr", state.schedule.base_lr},
                     {"warmup_steps", state.schedule.warmup_steps},
                     {"total_steps", state.schedule.total_steps}};
    m["rng"] = state.rng;
    m["tokens"] = state.tokens;
    m["elapsed_s"] = state.elapsed_s;
    m["model"] = fingerprint_json(state.model);
    m["recipe"] = fingerprint_json(state.recipe);
    m["files"] = manifest_files;
    write_file_atomic(temp / kManifest, m.dump(2) + "\n");  // last: its presence marks completeness
    fsync_directory(temp);

    if (fs::exists(dir)) {
      // rename() cannot replace a non-empty folder: move the old one aside, move the new one in,
      // then delete the old one. A crash in between leaves the new one or neither, never a mix.
      fs::path trash = sibling_name(dir, ".trash-");
      fs::rename(dir, trash);
      fs::rename(temp, dir);
      fsync_directory(parent);
      fs::remove_all(trash);
    } else {
      fs::rename(temp, dir);
      fsync_directory(parent);
    }
  } catch (const std::exception& e) {
    std::error_code ec;
    if (!temp.empty()) fs::remove_all(temp, ec);
    throw Error(
        fmt::format("cannot save checkpoint {}: {} (nothing was written there; earlier "
                    "checkpoints are untouched)",
                    dir.string(), e.what()));
  }
}

// ---- read ----------------------------------------------------------------------------------

CheckpointState read_checkpoint_state(const fs::path& dir) {
  const fs::path path = dir / kManifest;
  if (!fs::is_directory(dir)) throw Error("no such checkpoint folder").in_file(dir.string());
  if (!fs::exists(path)) bad_manifest(dir, "no checkpoint.json (an interrupted save?)");
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(read_file(path));
  } catch (const nlohmann::json::exception& e) {
    bad_manifest(dir, std::string("checkpoint.json is not JSON: ") + e.what());
  }
  CheckpointState s;
  try {
    if (m.value("format", "") != kFormat)
      bad_manifest(dir, "\"format\" is not \"seqit-checkpoint\"");
    s.format_version = m.at("format_version").get<int>();
    if (s.format_version > kCheckpointFormatVersion || s.format_version < 1) {
      throw Error(fmt::format("checkpoint format version {} is not one this seqit reads (1 to {}); "
                              "it was written by a newer seqit",
                              s.format_version, kCheckpointFormatVersion))
          .in_file(path.string());
    }
    s.step = m.at("step").get<int64_t>();
    s.epoch = m.at("epoch").get<double>();
    s.data.epoch = m.at("data_position").at("epoch").get<int64_t>();
    s.data.index = m.at("data_position").at("index").get<int64_t>();
    const auto& sch = m.at("schedule");
    s.schedule.kind = parse_schedule(sch.at("kind").get<std::string>());
    s.schedule.base_lr = sch.at("base_lr").get<double>();
    s.schedule.warmup_steps = sch.at("warmup_steps").get<int64_t>();
    s.schedule.total_steps = sch.at("total_steps").get<int64_t>();
    s.rng = m.at("rng").get<std::vector<uint64_t>>();
    s.tokens = m.at("tokens").get<int64_t>();
    s.elapsed_s = m.at("elapsed_s").get<double>();
    s.model = m.at("model").get<Fingerprint>();
    s.recipe = m.at("recipe").get<Fingerprint>();
    for (const auto& [file, info] : m.at("files").items()) {
      if (!plain_file_name(file)) bad_manifest(dir, fmt::format("bad file name '{}'", file));
      fs::path p = dir / file;
      std::error_code ec;
      uint64_t size = fs::file_size(p, ec);
      if (ec) bad_manifest(dir, fmt::format("{} is missing", file));
      if (size != info.at("bytes").get<uint64_t>()) {
        bad_manifest(dir, fmt::format("{} has {} bytes, the manifest says {}", file, size,
                                      info.at("bytes").get<uint64_t>()));
      }
    }
  } catch (const nlohmann::json::exception& e) {
    bad_manifest(dir,
                 std::string("checkpoint.json lacks a field or has a wrong type: ") + e.what());
  }
  return s;
}

void check_resumable(const CheckpointState& saved, const Fingerprint& model,
                     const Fingerprint& recipe, const fs::path& dir) {
  std::vector<std::string> m = fingerprint_differences(saved.model, model);
  std::vector<std::string> r = fingerprint_differences(saved.recipe, recipe);
  if (m.empty() && r.empty()) return;
  std::string text;
  if (!m.empty()) {
    text += "it was written for another model:";
    for (const std::string& d : m) text += "\n  " + d;
  }
  if (!r.empty()) {
    text += std::string(text.empty() ? "" : "\n") +
            "the recipe changed in fields that must stay the same to resume (they decide the data "
            "order and the trained parameters):";
    for (const std::string& d : r) text += "\n  " + d;
  }
  throw Error(fmt::format("cannot resume from this checkpoint: {}\nStart a new run (another "
                          "output_dir), or resume with the model and recipe it was made with.",
                          text))
      .in_file(dir.string());
}

CheckpointState load_checkpoint(const fs::path& dir, const std::vector<TensorSlot>& slots,
                                const Fingerprint& model, const Fingerprint& recipe) {
  CheckpointState state = read_checkpoint_state(dir);
  check_resumable(state, model, recipe, dir);

  nlohmann::json manifest = nlohmann::json::parse(read_file(dir / kManifest));
  std::map<std::string, std::vector<const TensorSlot*>> by_file;
  for (const TensorSlot& s : slots) by_file[s.file].push_back(&s);
  for (const auto& [file, info] : manifest.at("files").items()) {
    if (!by_file.count(file))
      throw Error(fmt::format("the checkpoint has {} ({} tensors) and nothing loads it", file,
                              info.at("tensors").get<int64_t>()))
          .in_file(dir.string());
  }
  for (const auto& [file, wanted] : by_file) {
    if (!manifest.at("files").contains(file))
      throw Error(fmt::format("no file {} in the checkpoint", file)).in_file(dir.string());
    auto st = model::SafetensorsFile::open(dir / file);
    std::set<std::string> loaded;
    for (const TensorSlot* s : wanted) {
      const model::StoredTensor* t = st->find(s->name);
      if (!t)
        throw Error(fmt::format("no tensor '{}' in the checkpoint", s->name)).in_file(st->path());
      if (t->type != model::StorageType::f32)
        throw Error(fmt::format("tensor '{}' is {}, expected F32", s->name,
                                model::storage_type_name(t->type)))
            .in_file(st->path());
      if (t->shape != s->shape)
        throw Error(fmt::format("tensor '{}' has shape {} in the checkpoint, the run expects {}",
                                s->name, model::shape_string(t->shape),
                                model::shape_string(s->shape)))
            .in_file(st->path());
      if (t->nbytes > 0) std::memcpy(s->data, t->data, t->nbytes);
      loaded.insert(s->name);
    }
    for (const model::StoredTensor& t : st->tensors()) {
      if (!loaded.count(t.name))
        throw Error(
            fmt::format("the checkpoint has tensor '{}' that the run does not load", t.name))
            .in_file(st->path());
    }
  }
  return state;
}

// ---- listing and pruning -------------------------------------------------------------------

std::vector<fs::path> list_checkpoints(const fs::path& run_dir) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  const fs::path dir = RunDir{run_dir}.checkpoints_dir();
  if (!fs::is_directory(dir, ec)) return {};
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::optional<int64_t> step = step_of_name(entry.path().filename().string());
    if (!step || !entry.is_directory(ec)) continue;
    try {
      if (read_checkpoint_state(entry.path()).step == *step)
        found.emplace_back(*step, entry.path());
    } catch (const Error&) {
      // incomplete or damaged: not a checkpoint to resume from
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<fs::path> out;
  for (auto& [step, path] : found) out.push_back(std::move(path));
  return out;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
  std::vector<fs::path> all = list_checkpoints(run_dir);
  if (all.empty()) return std::nullopt;
  return all.back();
}

std::vector<fs::path> prune_checkpoints(const fs::path& run_dir, int64_t keep_last) {
  std::vector<fs::path> deleted;
  if (keep_last <= 0) return deleted;
  std::vector<fs::path> all = list_checkpoints(run_dir);
  if (int64_t(all.size()) <= keep_last) return deleted;
  for (size_t i = 0; i + size_t(keep_last) < all.size(); ++i) {
    fs::path trash = sibling_name(all[i], ".trash-");
    fs::rename(all[i], trash);
    fs::remove_all(trash);
    deleted.push_back(all[i]);
  }
  fsync_directory(RunDir{run_dir}.checkpoints_dir());
  return deleted;
}

fs::path save_run_checkpoint(const RunDir& run, const CheckpointState& state,
                             const std::vector<TensorRef>& tensors, int64_t keep_last) {
  fs::path dir = run.checkpoint_dir(state.step);
  save_checkpoint(dir, state, tensors);
  prune_checkpoints(run.root, keep_last);
  return dir;
}

}  // namespace seqit::train
