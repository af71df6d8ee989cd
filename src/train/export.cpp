#include "train/export.h"

#include <fmt/format.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "chat/chat_template.h"
#include "model/checkpoint.h"
#include "model/llama.h"
#include "model/safetensors.h"
#include "tensor/dtype.h"
#include "util/error.h"
#include "util/file_io.h"

namespace seqit::train {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kPrefix = "base_model.model.";
constexpr const char* kShortNames[] = {"q", "k", "v", "o", "gate", "up", "down"};
constexpr const char* kLongNames[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                      "gate_proj", "up_proj", "down_proj"};

std::string short_name(const std::string& module) {
  for (size_t i = 0; i < std::size(kLongNames); ++i)
    if (module == kLongNames[i] || module == kShortNames[i]) return kShortNames[i];
  throw Error(fmt::format(
      "unknown LoRA target module '{}' (valid: q k v o gate up down, or q_proj ... down_proj)",
      module));
}

}  // namespace

std::string peft_module_name(const std::string& target) {
  const std::string s = short_name(target);
  for (size_t i = 0; i < std::size(kShortNames); ++i)
    if (s == kShortNames[i]) return kLongNames[i];
  return s;  // unreachable: short_name throws first
}

void write_peft_adapter(model::TrainNetwork& network, const fs::path& dir,
                        const std::string& base_model, model::StorageType type) {
  if (!network.lora())
    throw Error("write_peft_adapter: the network trains all weights, not LoRA adapters");
  if (type != model::StorageType::f32 && type != model::StorageType::bf16)
    throw Error("write_peft_adapter: adapters are written as f32 or bf16");
  const model::LoraSpec& spec = network.options().lora_spec;
  fs::create_directories(dir);
  json modules = json::array();
  for (const std::string& t : spec.targets) modules.push_back(peft_module_name(t));
  const json config = {
      {"peft_type", "LORA"},
      {"task_type", "CAUSAL_LM"},
      {"r", spec.rank},
      {"lora_alpha", spec.alpha},
      {"lora_dropout", spec.dropout},
      {"target_modules", modules},
      {"use_rslora", spec.rslora},
      {"use_dora", false},
      {"bias", "none"},
      {"fan_in_fan_out", false},
      {"init_lora_weights", true},
      {"inference_mode", true},
      {"modules_to_save", nullptr},
      {"layers_to_transform", nullptr},
      {"layers_pattern", nullptr},
      {"rank_pattern", json::object()},
      {"alpha_pattern", json::object()},
      {"revision", nullptr},
      {"base_model_name_or_path", base_model},
  };
  model::SafetensorsWriter writer;
  writer.set_metadata("format", "pt");
  for (const model::Parameter& p : network.parameters()) {
    const tensor::Tensor value = p.value;
    const int64_t n = value.numel();
    std::vector<int64_t> shape(value.shape().begin(), value.shape().end());
    writer.add(kPrefix + p.name, type, shape, [value, n, type](uint8_t* out) {
      const float* src = value.data<float>();
      if (type == model::StorageType::f32) {
        std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      } else {
        for (int64_t i = 0; i < n; ++i) {
          const uint16_t bits = tensor::f32_to_bf16(src[i]).bits;
          std::memcpy(out + 2 * i, &bits, 2);
        }
      }
    });
  }
  writer.write(dir / "adapter_model.safetensors");
  write_file_atomic(dir / "adapter_config.json", config.dump(2) + "\n");
}

PeftAdapter read_peft_adapter(const fs::path& dir, const model::ModelConfig& config) {
  const fs::path config_path = dir / "adapter_config.json";
  if (!fs::exists(config_path))
    throw Error(
        fmt::format("{} is not a PEFT adapter folder: no adapter_config.json", dir.string()));
  json c;
  try {
    c = json::parse(read_file(config_path));
  } catch (const json::exception& e) {
    throw Error(fmt::format("not JSON: {}", e.what())).in_file(config_path.string());
  }
  auto field = [&](const char* name) -> const json& {
    if (!c.is_object() || !c.contains(name))
      throw Error(fmt::format("missing field '{}'", name)).in_file(config_path.string());
    return c[name];
  };
  PeftAdapter a;
  try {
    if (field("peft_type").get<std::string>() != "LORA")
      throw Error(
          fmt::format("field 'peft_type': '{}' is not LORA", c["peft_type"].get<std::string>()));
    a.spec.rank = field("r").get<int64_t>();
    a.spec.alpha = field("lora_alpha").get<float>();
    a.spec.dropout = c.value("lora_dropout", 0.0f);
    a.spec.rslora = c.value("use_rslora", false);
    if (c.value("use_dora", false))
      throw Error("field 'use_dora': DoRA adapters are not supported");
    if (c.value("fan_in_fan_out", false))
      throw Error("field 'fan_in_fan_out': true is not supported");
    const json& modules = field("target_modules");
    if (!modules.is_array()) throw Error("field 'target_modules': expected a list of module names");
    a.spec.targets.clear();
    for (const json& m : modules) a.spec.targets.push_back(short_name(m.get<std::string>()));
    if (c.contains("base_model_name_or_path") && c["base_model_name_or_path"].is_string())
      a.base_model = c["base_model_name_or_path"].get<std::string>();
  } catch (const json::exception& e) {
    throw Error(fmt::format("bad field type: {}", e.what())).in_file(config_path.string());
  } catch (Error& e) {
    throw std::move(e.in_file(config_path.string()));
  }
  if (a.spec.rank <= 0) throw Error("field 'r' must be positive").in_file(config_path.string());

  // The tensors a network of this spec has, in its order; each must be in the file.
  const fs::path weights_path = dir / "adapter_model.safetensors";
  auto file = model::SafetensorsFile::open(weights_path);
  const int64_t C = config.hidden_size, F = config.intermediate_size;
  const int64_t qd = config.num_heads * config.head_dim,
                kvd = config.num_kv_heads * config.head_dim;
  auto dims = [&](const std::string& s) -> std::pair<int64_t, int64_t> {  // (in, out)
    if (s == "q") return {C, qd};
    if (s == "k" || s == "v") return {C, kvd};
    if (s == "o") return {qd, C};
    if (s == "gate" || s == "up") return {C, F};
    return {F, C};  // down
  };
  size_t expected = 0;
  for (int64_t l = 0; l < config.num_layers; ++l) {
    for (const char* s : kShortNames) {
      if (std::find(a.spec.targets.begin(), a.spec.targets.end(), s) == a.spec.targets.end())
        continue;
      const std::string module = peft_module_name(s);
      const bool mlp =
          std::string(s) == "gate" || std::string(s) == "up" || std::string(s) == "down";
      const std::string group = mlp ? "mlp" : "self_attn";
      const auto [in, out] = dims(s);
      for (const auto& [suffix, shape] :
           {std::pair<const char*, std::vector<int64_t>>{"lora_A.weight", {a.spec.rank, in}},
            {"lora_B.weight", {out, a.spec.rank}}}) {
        const std::string name = fmt::format("model.layers.{}.{}.{}.{}", l, group, module, suffix);
        const model::StoredTensor* t = file->find(kPrefix + name);
        if (!t)
          throw Error(fmt::format("tensor '{}{}' is missing (target_modules lists {})", kPrefix,
                                  name, module))
              .in_file(weights_path.string());
        if (t->shape != shape)
          throw Error(fmt::format("tensor '{}': shape {} where r = {} on this model needs {}",
                                  t->name, model::shape_string(t->shape), a.spec.rank,
                                  model::shape_string(shape)))
              .in_file(weights_path.string());
        std::vector<float> values(static_cast<size_t>(t->elements()));
        model::decode_to_f32(t->type, t->data, t->elements(), values.data());
        a.tensors.emplace_back(name, std::move(values));
        ++expected;
      }
    }
  }
  if (file->tensors().size() != expected)
    throw Error(
        fmt::format(
            "{} tensors where the adapter's config implies {} (other modules or layers are not "
            "supported)",
            file->tensors().size(), expected))
        .in_file(weights_path.string());
  return a;
}

void load_adapter(model::TrainNetwork& network, const PeftAdapter& adapter) {
  std::vector<model::Parameter>& params = network.parameters();
  if (!network.lora() || params.size() != adapter.tensors.size())
    throw Error(fmt::format("the adapter has {} tensors, the network {} LoRA parameters",
                            adapter.tensors.size(), network.lora() ? params.size() : 0));
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& [name, values] = adapter.tensors[i];
    if (params[i].name != name || static_cast<int64_t>(values.size()) != params[i].value.numel())
      throw Error(fmt::format("adapter tensor '{}' does not match the network's '{}'", name,
                              params[i].name));
    std::memcpy(params[i].value.data<float>(), values.data(), values.size() * sizeof(float));
  }
}

void merge_peft_adapter(model::LlamaModel& model, const PeftAdapter& adapter) {
  model::TrainOptions options;
  options.lora = true;
  options.lora_spec = adapter.spec;
  model::TrainNetwork network(model, options);
  load_adapter(network, adapter);
  network.merge_lora_into_base();
}

void export_model(const ExportRequest& request) {
  auto checkpoint = model::Checkpoint::open(request.model);
  auto network = model::LlamaModel::load(*checkpoint);
  if (request.adapter) {
    const PeftAdapter adapter = read_peft_adapter(*request.adapter, network->config());
    merge_peft_adapter(*network, adapter);
  }
  model::ExportOptions options;
  options.type = request.dtype.value_or(checkpoint->preferred_type());
  if (options.type != model::StorageType::f16 && options.type != model::StorageType::bf16)
    options.type = model::StorageType::f32;
  options.tokenizer = request.tokenizer ? request.tokenizer : checkpoint->tokenizer_path();
  options.name = request.model.filename().string();
  options.max_shard_bytes = request.max_shard_bytes;
  if (!request.chat_template.empty()) {
    const auto names = chat::ChatTemplate::builtin_names();
    const bool builtin =
        std::find(names.begin(), names.end(), request.chat_template) != names.end();
    options.chat_template = builtin ? chat::ChatTemplate::builtin(request.chat_template).source()
                                    : chat::ChatTemplate::from_file(request.chat_template).source();
  }
  if (request.to == model::ExportFormat::hf)
    model::write_hf_model(*network, request.out, options);
  else
    model::write_gguf_model(*network, request.out, options);
}

}  // namespace seqit::train
