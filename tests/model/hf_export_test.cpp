// HF folders written by write_hf_model: sharded like save_pretrained when large (index + shards
// that read back to the same weights), generation_config.json, and the chat template shipped both
// ways.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>

#include "chat/chat_template.h"
#include "model/checkpoint.h"
#include "model/convert.h"
#include "model/random_weights.h"
#include "testing.h"

namespace seqit::model {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

ModelConfig tiny() {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 64, c.hidden_size = 32, c.intermediate_size = 48, c.num_layers = 3;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 8, c.max_position_embeddings = 64;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

void expect_same_weights(const WeightSource& a, const WeightSource& b) {
  for (const WeightSpec& spec : expected_weights(a.config())) {
    std::vector<float> x(static_cast<size_t>(spec.elements())), y(x.size());
    a.read_f32(spec, x.data());
    b.read_f32(spec, y.data());
    ASSERT_EQ(x, y) << spec.name;
  }
}

TEST(HfExport, LargeModelsAreShardedWithAnIndexThatReadsBack) {
  RandomWeights source(tiny(), 3);
  seqit::testing::TempDir dir;
  ExportOptions options;
  options.max_shard_bytes = 20000;  // the tiny model has ~60 KB of f32 weights
  write_hf_model(source, dir.path(), options);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors"));
  const json index = json::parse(seqit::testing::slurp(dir / "model.safetensors.index.json"));
  std::set<std::string> files;
  for (const auto& [name, file] : index["weight_map"].items())
    files.insert(file.get<std::string>());
  EXPECT_GE(files.size(), 3u);
  EXPECT_TRUE(files.count("model-00001-of-0000" + std::to_string(files.size()) + ".safetensors"));
  EXPECT_EQ(index["weight_map"].size(), expected_weights(tiny()).size());
  uint64_t total = 0;
  for (const WeightSpec& spec : expected_weights(tiny())) total += 4 * uint64_t(spec.elements());
  EXPECT_EQ(index["metadata"]["total_size"], total);
  auto back = Checkpoint::open(dir.path());
  expect_same_weights(source, *back);

  // Written again small enough for one file: the index goes, model.safetensors reads back.
  options.max_shard_bytes = uint64_t{1} << 30;
  write_hf_model(source, dir.path(), options);
  EXPECT_FALSE(fs::exists(dir / "model.safetensors.index.json"));
  expect_same_weights(source, *Checkpoint::open(dir.path()));
}

TEST(HfExport, GenerationConfigAndChatTemplate) {
  RandomWeights source(tiny(), 3);
  seqit::testing::TempDir dir;
  ExportOptions options;
  options.chat_template = chat::ChatTemplate::builtin("tulu").source();
  options.tokenizer = seqit::testing::shared_data("tokenizers/llama2");
  write_hf_model(source, dir.path(), options);
  const json generation = json::parse(seqit::testing::slurp(dir / "generation_config.json"));
  EXPECT_EQ(generation["bos_token_id"], 1);
  EXPECT_EQ(generation["eos_token_id"], 2);
  EXPECT_EQ(seqit::testing::slurp(dir / "chat_template.jinja"), options.chat_template);
  const json tc = json::parse(seqit::testing::slurp(dir / "tokenizer_config.json"));
  EXPECT_EQ(tc["chat_template"], options.chat_template);
  // The folder's own template is what seqit finds there.
  EXPECT_EQ(chat::ChatTemplate::from_file(dir.path()).source(), options.chat_template);
}

}  // namespace
}  // namespace seqit::model
