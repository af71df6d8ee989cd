// PEFT adapters (train/export.h): the files have PEFT's names, shapes and config fields, read back
// bit for bit, merge into the same model the adapter computes, and bad folders are clear errors.
#include "train/export.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <random>

#include "model/llama.h"
#include "model/random_weights.h"
#include "model/safetensors.h"
#include "testing.h"

namespace seqit::train {
namespace {

namespace fs = std::filesystem;
using model::LlamaModel;
using nlohmann::json;

model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 64, c.hidden_size = 32, c.intermediate_size = 48, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 8, c.max_position_embeddings = 64;
  return c;
}

std::unique_ptr<LlamaModel> tiny_model() {
  return LlamaModel::load(model::RandomWeights(tiny_config(), 5, 0.2f));
}

model::TrainOptions lora_options(std::vector<std::string> targets) {
  model::TrainOptions o;
  o.lora = true;
  o.lora_spec.rank = 4;
  o.lora_spec.alpha = 8;
  o.lora_spec.dropout = 0.05f;
  o.lora_spec.targets = std::move(targets);
  return o;
}

// B is zero at initialisation; give every matrix values so that the adapter changes the model.
void randomise(model::TrainNetwork& net) {
  std::mt19937 rng(9);
  std::normal_distribution<float> n(0.0f, 0.3f);
  for (model::Parameter& p : net.parameters()) {
    float* v = p.value.data<float>();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] = n(rng);
  }
}

model::TrainBatch batch() {
  model::TrainBatch b;
  b.batch = 1;
  b.seq_len = 20;
  for (int t = 0; t < 20; ++t) {
    b.tokens.push_back((t * 7 + 3) % 64);
    b.targets.push_back(t + 1 < 20 ? ((t + 1) * 7 + 3) % 64 : -100);
  }
  return b;
}

TEST(PeftAdapter, FilesHavePeftNamesShapesAndConfig) {
  auto model = tiny_model();
  model::TrainNetwork net(*model, lora_options({"q", "v", "down"}));
  randomise(net);
  seqit::testing::TempDir dir;
  write_peft_adapter(net, dir.path(), "my/base");
  const json config = json::parse(seqit::testing::slurp(dir / "adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(config["r"], 4);
  EXPECT_EQ(config["lora_alpha"], 8.0);
  EXPECT_NEAR(config["lora_dropout"].get<double>(), 0.05, 1e-7);
  EXPECT_EQ(config["target_modules"], json({"q_proj", "v_proj", "down_proj"}));
  EXPECT_EQ(config["bias"], "none");
  EXPECT_EQ(config["use_rslora"], false);
  EXPECT_EQ(config["base_model_name_or_path"], "my/base");

  auto file = model::SafetensorsFile::open(dir / "adapter_model.safetensors");
  EXPECT_EQ(file->tensors().size(), 2u * 3u * 2u);  // layers x modules x (A, B)
  const auto* qa = file->find("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  const auto* qb = file->find("base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight");
  const auto* va = file->find("base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight");
  const auto* vb = file->find("base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight");
  const auto* db = file->find("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  const auto* da = file->find("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight");
  ASSERT_TRUE(qa && qb && va && vb && da && db);
  EXPECT_EQ(qa->shape, (std::vector<int64_t>{4, 32}));  // [r, in]
  EXPECT_EQ(qb->shape, (std::vector<int64_t>{32, 4}));  // [out = Hq·D, r]
  EXPECT_EQ(vb->shape, (std::vector<int64_t>{16, 4}));  // [Hkv·D, r]
  EXPECT_EQ(da->shape, (std::vector<int64_t>{4, 48}));  // [r, F]
  EXPECT_EQ(db->shape, (std::vector<int64_t>{32, 4}));
  EXPECT_EQ(qa->type, model::StorageType::f32);
}

TEST(PeftAdapter, ReadsBackBitForBitAndMergesToTheSameLoss) {
  auto model = tiny_model();
  model::TrainNetwork net(*model, lora_options({"q", "k", "v", "o", "gate", "up", "down"}));
  randomise(net);
  const double adapted = net.forward_loss(batch()).loss_sum;
  const double base = [&] {
    auto plain = tiny_model();
    model::TrainNetwork full(*plain, {});
    return full.forward_loss(batch()).loss_sum;
  }();
  ASSERT_GT(std::abs(adapted - base), 1e-3) << "the adapter must change the model for this test";
  seqit::testing::TempDir dir;
  write_peft_adapter(net, dir.path(), "base");
  const PeftAdapter read = read_peft_adapter(dir.path(), tiny_config());
  EXPECT_EQ(read.spec.rank, 4);
  EXPECT_EQ(read.spec.targets,
            (std::vector<std::string>{"q", "k", "v", "o", "gate", "up", "down"}));
  ASSERT_EQ(read.tensors.size(), net.parameters().size());
  for (size_t i = 0; i < read.tensors.size(); ++i) {
    const model::Parameter& p = net.parameters()[i];
    ASSERT_EQ(read.tensors[i].first, p.name);
    EXPECT_EQ(0, std::memcmp(read.tensors[i].second.data(), p.value.data<float>(),
                             read.tensors[i].second.size() * sizeof(float)))
        << p.name;
  }
  // base + adapter, merged into a fresh copy of the base: the same loss.
  auto merged = tiny_model();
  merge_peft_adapter(*merged, read);
  model::TrainNetwork plain(*merged, {});
  EXPECT_NEAR(plain.forward_loss(batch()).loss_sum, adapted, 1e-5 * std::abs(adapted));
  // A bf16 adapter reads back within bf16 rounding.
  seqit::testing::TempDir half;
  write_peft_adapter(net, half.path(), "base", model::StorageType::bf16);
  const PeftAdapter read16 = read_peft_adapter(half.path(), tiny_config());
  for (size_t i = 0; i < read16.tensors.size(); ++i)
    for (size_t k = 0; k < read16.tensors[i].second.size(); ++k)
      ASSERT_NEAR(read16.tensors[i].second[k], read.tensors[i].second[k],
                  std::abs(read.tensors[i].second[k]) / 128.0f);
}

TEST(PeftAdapter, BadFoldersAreClearErrors) {
  auto model = tiny_model();
  model::TrainNetwork net(*model, lora_options({"q", "v"}));
  seqit::testing::TempDir dir;
  write_peft_adapter(net, dir.path(), "base");
  auto expect_error = [&](const std::string& needle) {
    try {
      read_peft_adapter(dir.path(), tiny_config());
      ADD_FAILURE() << "no error; expected one mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // Another rank than the tensors have.
  json config = json::parse(seqit::testing::slurp(dir / "adapter_config.json"));
  config["r"] = 8;
  seqit::testing::spit(dir / "adapter_config.json", config.dump());
  expect_error("shape");
  // A module the file has no tensors for.
  config["r"] = 4;
  config["target_modules"] = {"q_proj", "v_proj", "o_proj"};
  seqit::testing::spit(dir / "adapter_config.json", config.dump());
  expect_error("o_proj.lora_A.weight' is missing");
  config["target_modules"] = {"q_proj", "lm_head"};
  seqit::testing::spit(dir / "adapter_config.json", config.dump());
  expect_error("unknown LoRA target module 'lm_head'");
  seqit::testing::spit(dir / "adapter_config.json", "{not json");
  expect_error("adapter_config.json");
  EXPECT_THROW(read_peft_adapter(dir / "nowhere", tiny_config()), Error);
}

// `seqit export` of stories260K with a LoRA adapter merged, to an HF folder and a GGUF file: both
// reload (seqit's loaders) to the logits of the model with the adapter merged in memory.
TEST(SeqitExport, MergedAdapterToHfAndGgufReloadsToTheSameLogits) {
  const auto base = seqit::testing::shared_data("models/stories260K/stories260K.bin");
  auto model = LlamaModel::load(base);
  model::TrainOptions o = lora_options({"q", "k", "v", "o", "gate", "up", "down"});
  model::TrainNetwork net(*model, o);
  randomise(net);
  seqit::testing::TempDir dir;
  write_peft_adapter(net, dir / "adapter", base.string());
  net.merge_lora_into_base();  // the reference: base + adapter, merged in memory
  const std::vector<int32_t> tokens = {1, 403, 407, 261, 378, 434, 1164 % 512, 273, 320};
  const tensor::Tensor want = model->forward_sequence(tokens);
  for (const char* to : {"hf", "gguf"}) {
    SCOPED_TRACE(to);
    const fs::path out = dir / (std::string("merged.") + to);
    std::string output;
    ASSERT_EQ(
        seqit::testing::run_command(
            seqit::testing::shell_quote(seqit::testing::seqit_binary().string()) +
                " export --model " + seqit::testing::shell_quote(base.string()) + " --adapter " +
                seqit::testing::shell_quote((dir / "adapter").string()) + " --to " + to +
                " --out " + seqit::testing::shell_quote(out.string()) + " --chat-template tulu",
            &output),
        0)
        << output;
    auto reloaded = LlamaModel::load(out);
    const tensor::Tensor got = reloaded->forward_sequence(tokens);
    ASSERT_EQ(got.numel(), want.numel());
    double worst = 0;
    for (int64_t i = 0; i < got.numel(); ++i)
      worst = seqit::testing::nan_max(
          worst, std::abs(double(got.data<float>()[i]) - double(want.data<float>()[i])));
    EXPECT_LT(worst, 1e-4);
  }
  EXPECT_TRUE(fs::exists(dir / "merged.hf" / "tokenizer.bin"));
  EXPECT_TRUE(fs::exists(dir / "merged.hf" / "chat_template.jinja"));
}

}  // namespace
}  // namespace seqit::train
