// Weight formats: safetensors (fixtures from swift-transformers, writer round trips, sharded sets,
// corrupt files), the GGUF writer against util's reader, llama2.c legacy files, and the canonical
// checkpoint view over all of them.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model/checkpoint.h"
#include "model/convert.h"
#include "model/gguf_writer.h"
#include "model/random_weights.h"
#include "model/safetensors.h"
#include "testing.h"
#include "util/error.h"
#include "util/gguf.h"

namespace fs = std::filesystem;
using namespace seqit::model;
using seqit::Error;
using seqit::testing::shared_data;
using seqit::testing::slurp;
using seqit::testing::spit;
using seqit::testing::TempDir;

namespace {
template <typename T>
std::vector<T> values_of(const StoredTensor& t) {
  std::vector<T> v(t.nbytes / sizeof(T));
  std::memcpy(v.data(), t.data, t.nbytes);
  return v;
}

// The error text of `f()`, which must throw seqit::Error.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a seqit::Error";
  return {};
}

// A safetensors file written by hand: header JSON text + data bytes.
std::string safetensors_bytes(const std::string& header, const std::string& data) {
  uint64_t n = header.size();
  std::string out(reinterpret_cast<const char*>(&n), 8);
  return out + header + data;
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.architecture = "llama";
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.max_position_embeddings = 64;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

void expect_same_weights(const WeightSource& a, const WeightSource& b, float tolerance = 0) {
  ASSERT_EQ(expected_weights(a.config()).size(), expected_weights(b.config()).size());
  for (const WeightSpec& spec : expected_weights(a.config())) {
    std::vector<float> x(spec.elements()), y(spec.elements());
    a.read_f32(spec, x.data());
    b.read_f32(spec, y.data());
    for (size_t i = 0; i < x.size(); ++i) {
      // Relative for normal numbers; half's subnormals (below 6.1e-5) have an absolute step of
      // 6e-8.
      ASSERT_NEAR(x[i], y[i], tolerance * std::abs(x[i]) + (tolerance > 0 ? 6e-8 : 0))
          << spec.name << "[" << i << "]";
    }
  }
}
}  // namespace

TEST(Safetensors, ReadsTheSwiftTransformersFixtures) {
  auto f1 = SafetensorsFile::open(shared_data("fixtures/safetensors/tensor-1d-int32.safetensors"));
  const StoredTensor* t = f1->find("embedding");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->type, StorageType::i32);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{3}));
  EXPECT_EQ(values_of<int32_t>(*t), (std::vector<int32_t>{1, 2, 3}));

  auto f2 =
      SafetensorsFile::open(shared_data("fixtures/safetensors/tensor-2d-float64.safetensors"));
  t = f2->find("embedding");
  EXPECT_EQ(t->type, StorageType::f64);
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(values_of<double>(*t), (std::vector<double>{1, 2, 3, 24, 25, 26}));

  auto f3 =
      SafetensorsFile::open(shared_data("fixtures/safetensors/tensor-3d-float32.safetensors"));
  t = f3->find("embedding");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(values_of<float>(*t), (std::vector<float>{22, 23, 24, 11, 12, 13, 2, 3, 4, 1, 2, 3}));

  auto f4 =
      SafetensorsFile::open(shared_data("fixtures/safetensors/tensor-4d-float32.safetensors"));
  t = f4->find("embedding");
  EXPECT_EQ(t->shape, (std::vector<int64_t>{2, 3, 1, 3}));
  EXPECT_EQ(values_of<float>(*t).size(), 18u);
  EXPECT_EQ(values_of<float>(*t)[0], 11.0f);
  EXPECT_EQ(values_of<float>(*t)[17], 19.0f);
}

TEST(Safetensors, WriterRoundTripsEveryFloatTypeWithMetadata) {
  TempDir dir;
  SafetensorsWriter w;
  w.set_metadata("format", "pt");
  std::vector<float> a = {1.5f, -2.25f, 3.0f, 0.0f, 1e-3f, 65504.0f};
  for (StorageType type : {StorageType::f32, StorageType::f16, StorageType::bf16}) {
    w.add(std::string(storage_type_name(type)), type, {2, 3},
          [&a, type](uint8_t* dst) { encode_from_f32(type, a.data(), 6, dst); });
  }
  w.write(dir / "x.safetensors");
  std::string bytes = slurp(dir / "x.safetensors");
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u) << "data section must start 8-byte aligned";
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), 3u);
  for (const StoredTensor& t : f->tensors()) {
    std::vector<float> back(6);
    decode_to_f32(t.type, t.data, 6, back.data());
    for (int i = 0; i < 6; ++i) {
      float tol = t.type == StorageType::f32 ? 0 : t.type == StorageType::f16 ? 1e-3f : 8e-3f;
      EXPECT_NEAR(back[i], a[i], tol * std::abs(a[i])) << t.name;
    }
  }
  // The header is plain JSON that other tools read: check its fields directly.
  auto header = nlohmann::json::parse(bytes.substr(8, header_len));
  EXPECT_EQ(header["BF16"]["dtype"], "BF16");
  EXPECT_EQ(header["BF16"]["shape"], nlohmann::json::array({2, 3}));
  EXPECT_EQ(header["F32"]["data_offsets"], nlohmann::json::array({0, 24}));
}

TEST(Safetensors, CorruptFilesNameTheFileAndTensor) {
  TempDir dir;
  std::string data(24, '\0');
  const std::string good = R"({"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";
  spit(dir / "good.safetensors", safetensors_bytes(good, data));
  EXPECT_NO_THROW(SafetensorsFile::open(dir / "good.safetensors"));

  auto expect_error = [&](const std::string& name, const std::string& content,
                          const std::string& needle) {
    spit(dir / name, content);
    std::string msg = error_of([&] { SafetensorsFile::open(dir / name); });
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
  };
  expect_error("short.safetensors", "abc", "truncated");
  expect_error("truncated.safetensors", safetensors_bytes(good, data.substr(0, 20)),
               "tensor 'w' needs bytes [0, 24)");
  expect_error("cut_header.safetensors", safetensors_bytes(good, data).substr(0, 30), "truncated");
  expect_error("huge_header.safetensors", std::string("\xff\xff\xff\xff\xff\xff\xff\x7f", 8) + good,
               "implausible");
  expect_error("not_json.safetensors", safetensors_bytes("{\"w\": [", data), "not valid JSON");
  expect_error(
      "dtype.safetensors",
      safetensors_bytes(R"({"w":{"dtype":"F8","shape":[2,3],"data_offsets":[0,24]}})", data),
      "tensor 'w': unknown dtype 'F8'");
  expect_error(
      "size.safetensors",
      safetensors_bytes(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,24]}})", data),
      "tensor 'w': [2, 2] F32 needs 16 bytes");
  expect_error("overlap.safetensors",
               safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                 R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                                 data),
               "overlap");
  expect_error("backwards.safetensors",
               safetensors_bytes(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", data),
               "backwards");
}

TEST(Safetensors, ShardedSetFollowsTheIndex) {
  TempDir dir;
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6};
  SafetensorsWriter w1, w2;
  w1.add("a", StorageType::f32, {2, 2}, [&](uint8_t* d) { std::memcpy(d, a.data(), 16); });
  w2.add("b", StorageType::f32, {2}, [&](uint8_t* d) { std::memcpy(d, b.data(), 8); });
  w1.write(dir / "model-00001-of-00002.safetensors");
  w2.write(dir / "model-00002-of-00002.safetensors");
  spit(dir / "model.safetensors.index.json",
       R"({"metadata":{"total_size":24},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
       R"("b":"model-00002-of-00002.safetensors"}})");
  auto set = SafetensorsSet::open(dir.path());
  ASSERT_NE(set->find("a"), nullptr);
  ASSERT_NE(set->find("b"), nullptr);
  EXPECT_EQ(values_of<float>(*set->find("b")), b);
  EXPECT_EQ(set->files().size(), 2u);
  EXPECT_EQ(set->tensors().size(), 2u);

  spit(
      dir / "model.safetensors.index.json",
      R"({"weight_map":{"a":"model-00001-of-00002.safetensors","c":"model-00002-of-00002.safetensors"}})");
  std::string msg = error_of([&] { SafetensorsSet::open(dir.path()); });
  EXPECT_NE(msg.find("tensor 'c' is listed in the index but not in its shard"), std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model-00002-of-00002.safetensors"), std::string::npos) << msg;

  spit(dir / "model.safetensors.index.json",
       R"({"weight_map":{"a":"model-00003-of-00003.safetensors"}})");
  msg = error_of([&] { SafetensorsSet::open(dir.path()); });
  EXPECT_NE(msg.find("shard 'model-00003-of-00003.safetensors' (holding tensor 'a') is missing"),
            std::string::npos)
      << msg;
}

TEST(Gguf, WriterOutputReadsBackWithUtilReader) {
  TempDir dir;
  GgufWriter w;
  w.set_string("general.architecture", "llama");
  w.set_u32("llama.block_count", 3);
  w.set_f32("llama.rope.freq_base", 500000.0f);
  w.set_bool("tokenizer.ggml.add_bos_token", true);
  w.set_string_array("tokenizer.ggml.tokens", {"<s>", "a",
                                               "\xe2\x96\x81"
                                               "b"});
  w.set_i32_array("tokenizer.ggml.token_type", {3, 1, 1});
  std::vector<float> t1 = {1, 2, 3, 4, 5, 6};
  w.add_tensor("t1", {3, 2}, seqit::gguf::TensorType::f32,
               [&](uint8_t* d) { std::memcpy(d, t1.data(), 24); });
  w.add_tensor("t2", {5}, seqit::gguf::TensorType::f16, [](uint8_t* d) {
    for (int i = 0; i < 5; ++i) {
      uint16_t h = f32_to_f16(0.5f * i);
      std::memcpy(d + 2 * i, &h, 2);
    }
  });
  w.write(dir / "x.gguf");
  auto f = seqit::gguf::File::open(dir / "x.gguf");
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count"), 3);
  EXPECT_EQ(f->get_double("llama.rope.freq_base"), 500000.0);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens")[2],
            "\xe2\x96\x81"
            "b");
  EXPECT_EQ(f->get_int_array("tokenizer.ggml.token_type"), (std::vector<int64_t>{3, 1, 1}));
  EXPECT_EQ(f->get_int("general.alignment"), 32);
  const auto* ti = f->tensor("t1");
  ASSERT_NE(ti, nullptr);
  EXPECT_EQ(ti->dims, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(std::memcmp(ti->data, t1.data(), 24), 0);
  const auto* t2 = f->tensor("t2");
  EXPECT_EQ(t2->offset % 32, 0u);
  uint16_t h;
  std::memcpy(&h, t2->data + 8, 2);
  EXPECT_EQ(f16_to_f32(h), 2.0f);

  // Copying values (arrays included) from one file to another preserves them.
  GgufWriter copy;
  for (const std::string& key : f->keys()) copy.set_value(key, *f->find(key));
  copy.write(dir / "copy.gguf");
  auto g = seqit::gguf::File::open(dir / "copy.gguf");
  EXPECT_EQ(g->keys(), f->keys());
  EXPECT_EQ(g->get_string_array("tokenizer.ggml.tokens"),
            f->get_string_array("tokenizer.ggml.tokens"));
}

TEST(Llama2c, Stories260KHeaderAndWeights) {
  auto c = Checkpoint::open(shared_data("models/stories260K/stories260K.bin"));
  EXPECT_EQ(c->format(), CheckpointFormat::llama2c);
  const ModelConfig& cfg = c->config();
  EXPECT_EQ(cfg.hidden_size, 64);
  EXPECT_EQ(cfg.intermediate_size, 172);
  EXPECT_EQ(cfg.num_layers, 5);
  EXPECT_EQ(cfg.num_heads, 8);
  EXPECT_EQ(cfg.num_kv_heads, 4);
  EXPECT_EQ(cfg.vocab_size, 512);
  EXPECT_EQ(cfg.max_position_embeddings, 512);
  EXPECT_TRUE(cfg.tie_word_embeddings);
  EXPECT_EQ(cfg.head_dim, 8);
  ASSERT_TRUE(c->tokenizer_path().has_value());
  EXPECT_EQ(c->tokenizer_path()->filename(), "tok512.bin");
  // The embedding is the first block after the 28-byte header.
  std::string raw = slurp(shared_data("models/stories260K/stories260K.bin"));
  std::vector<float> emb(512 * 64);
  c->read_f32({"model.embed_tokens.weight", {512, 64}}, emb.data());
  EXPECT_EQ(std::memcmp(emb.data(), raw.data() + 28, emb.size() * 4), 0);
  // The final norm sits right after the 5 layers' blocks.
  int64_t before = 512 * 64 + 5 * (64 + 64 * 64 + 2 * 32 * 64 + 64 * 64 + 64 + 3 * 172 * 64);
  std::vector<float> norm(64);
  c->read_f32({"model.norm.weight", {64}}, norm.data());
  EXPECT_EQ(std::memcmp(norm.data(), raw.data() + 28 + before * 4, 256), 0);
}

TEST(Llama2c, TruncatedAndMismatchedFilesAreRefused) {
  TempDir dir;
  std::string raw = slurp(shared_data("models/stories260K/stories260K.bin"));
  spit(dir / "cut.bin", raw.substr(0, raw.size() - 5000));
  std::string msg = error_of([&] { Checkpoint::open(dir / "cut.bin"); });
  EXPECT_NE(msg.find("cut.bin"), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated llama2.c checkpoint: weight 'freq_cis"), std::string::npos) << msg;

  spit(dir / "long.bin", raw + std::string(16, '\0'));
  msg = error_of([&] { Checkpoint::open(dir / "long.bin"); });
  EXPECT_NE(msg.find("16 bytes after the weights"), std::string::npos) << msg;

  spit(dir / "junk.bin", std::string(100, 'x'));
  msg = error_of([&] { Checkpoint::open(dir / "junk.bin"); });
  EXPECT_NE(msg.find("not a llama2.c checkpoint"), std::string::npos) << msg;

  // Negative vocab_size: a separate classifier must follow; without it the file is short.
  std::string unshared = raw;
  int32_t neg = -512;
  std::memcpy(unshared.data() + 20, &neg, 4);
  spit(dir / "unshared.bin", unshared);
  msg = error_of([&] { Checkpoint::open(dir / "unshared.bin"); });
  EXPECT_NE(msg.find("weight 'lm_head.weight'"), std::string::npos) << msg;
  // ... and with it appended, the file loads with an untied head equal to what was appended.
  std::string head = raw.substr(28, 512 * 64 * 4);
  spit(dir / "unshared.bin", unshared + head);
  auto c = Checkpoint::open(dir / "unshared.bin");
  EXPECT_FALSE(c->config().tie_word_embeddings);
  std::vector<float> w(512 * 64);
  c->read_f32({"lm_head.weight", {512, 64}}, w.data());
  EXPECT_EQ(std::memcmp(w.data(), head.data(), head.size()), 0);
}

TEST(Gguf, TinyRandomFixtureOpens) {
  auto c = Checkpoint::open(shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf"));
  EXPECT_EQ(c->format(), CheckpointFormat::gguf);
  const ModelConfig& cfg = c->config();
  EXPECT_EQ(cfg.vocab_size, 32000);
  EXPECT_EQ(cfg.hidden_size, 8);
  EXPECT_EQ(cfg.num_layers, 1);
  EXPECT_EQ(cfg.num_heads, 2);
  EXPECT_EQ(cfg.head_dim, 4);
  EXPECT_FALSE(cfg.tie_word_embeddings);
  EXPECT_NEAR(cfg.rms_norm_eps, 1e-5, 1e-9);
  EXPECT_EQ(cfg.bos_token_id, 1);
  EXPECT_EQ(cfg.eos_token_ids, (std::vector<int32_t>{2}));
  EXPECT_EQ(c->stored("model.layers.0.self_attn.q_proj.weight").type, StorageType::f16);
  EXPECT_EQ(c->stored("model.norm.weight").type, StorageType::f32);
  EXPECT_EQ(c->preferred_type(), StorageType::f16);
  EXPECT_TRUE(c->tokenizer_path().has_value());
}

TEST(Gguf, TruncatedFixtureNamesTheTensor) {
  TempDir dir;
  std::string raw = slurp(shared_data("models/gguf-fixtures/llama-2-tiny-random.gguf"));
  spit(dir / "cut.gguf", raw.substr(0, raw.size() - 100));
  std::string msg = error_of([&] { Checkpoint::open(dir / "cut.gguf"); });
  EXPECT_NE(msg.find("cut.gguf"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tensor 'output.weight'"), std::string::npos) << msg;
}

TEST(Permute, InterleavedAndHalfLayoutsAreInverse) {
  // 2 heads of dim 4, rows of 3: interleaved row 2i+j <-> half row j*2+i.
  std::vector<float> in(2 * 4 * 3), mid(in.size()), back(in.size());
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>(i);
  permute_rope_rows(in.data(), mid.data(), 2, 4, 3, RopeLayout::interleaved, RopeLayout::half);
  // half row 1 (real part of pair 1) = interleaved row 2; half row 2 (imag of pair 0) = interleaved
  // row 1.
  EXPECT_EQ(mid[1 * 3], in[2 * 3]);
  EXPECT_EQ(mid[2 * 3], in[1 * 3]);
  EXPECT_EQ(mid[(4 + 3) * 3 + 2], in[(4 + 3) * 3 + 2]);
  permute_rope_rows(mid.data(), back.data(), 2, 4, 3, RopeLayout::half, RopeLayout::interleaved);
  EXPECT_EQ(back, in);
}

TEST(Checkpoint, MissingAndMisshapenTensorsAreNamed) {
  TempDir dir;
  ModelConfig cfg = tiny_config();
  RandomWeights weights(cfg, 1);
  write_hf_model(weights, dir / "m", {});
  ASSERT_NO_THROW(Checkpoint::open(dir / "m"));

  // Drop one tensor.
  SafetensorsWriter w;
  for (const WeightSpec& spec : expected_weights(cfg)) {
    if (spec.name == "model.layers.1.mlp.up_proj.weight") continue;
    std::vector<int64_t> shape = spec.shape;
    if (spec.name == "model.layers.0.self_attn.k_proj.weight")
      shape = {cfg.q_dim(), cfg.hidden_size};
    w.add(spec.name, StorageType::f32, shape, [](uint8_t*) {});
  }
  fs::create_directories(dir / "bad");
  fs::copy_file(dir / "m" / "config.json", dir / "bad" / "config.json");
  w.write(dir / "bad" / "model.safetensors");
  std::string msg = error_of([&] { Checkpoint::open(dir / "bad"); });
  EXPECT_NE(msg.find("tensor 'model.layers.0.self_attn.k_proj.weight' has shape [16, 16], but the "
                     "config expects [8, 16]"),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;

  SafetensorsWriter w2;
  for (const WeightSpec& spec : expected_weights(cfg)) {
    if (spec.name != "model.layers.1.mlp.up_proj.weight")
      w2.add(spec.name, StorageType::bf16, spec.shape, [](uint8_t*) {});
  }
  w2.write(dir / "bad" / "model.safetensors");
  msg = error_of([&] { Checkpoint::open(dir / "bad"); });
  EXPECT_NE(msg.find("tensor 'model.layers.1.mlp.up_proj.weight' is missing"), std::string::npos)
      << msg;

  // A weight stored as an integer type.
  SafetensorsWriter w3;
  for (const WeightSpec& spec : expected_weights(cfg)) {
    w3.add(spec.name, spec.name == "model.norm.weight" ? StorageType::i32 : StorageType::f32,
           spec.shape, [](uint8_t*) {});
  }
  w3.write(dir / "bad" / "model.safetensors");
  msg = error_of([&] { Checkpoint::open(dir / "bad"); });
  EXPECT_NE(msg.find("tensor 'model.norm.weight' is stored as I32"), std::string::npos) << msg;
}

TEST(Convert, RoundTripsAreExactInF32AndKeepTheLayout) {
  TempDir dir;
  for (std::string arch : {"llama", "qwen2"}) {
    ModelConfig cfg = tiny_config();
    cfg.architecture = arch;
    cfg.qkv_bias = arch == "qwen2";
    cfg.tie_word_embeddings = arch == "qwen2";
    RandomWeights weights(cfg, 42);
    write_hf_model(weights, dir / arch, {});
    write_gguf_model(weights, dir / (arch + ".gguf"), {});
    auto hf = Checkpoint::open(dir / arch);
    auto gg = Checkpoint::open(dir / (arch + ".gguf"));
    EXPECT_EQ(gg->config().architecture, arch);
    EXPECT_EQ(gg->config().qkv_bias, cfg.qkv_bias);
    EXPECT_EQ(gg->config().tie_word_embeddings, cfg.tie_word_embeddings);
    expect_same_weights(weights, *hf);
    expect_same_weights(weights, *gg);
    // HF -> GGUF -> HF through convert_model.
    convert_model(dir / (arch + ".gguf"), dir / (arch + "-back"), ExportFormat::hf, std::nullopt,
                  std::nullopt);
    expect_same_weights(weights, *Checkpoint::open(dir / (arch + "-back")));
  }
  // In the llama GGUF file q/k rows are stored interleaved: row 1 of head 0 there is half-layout
  // row 2.
  auto gfile = seqit::gguf::File::open(dir / "llama.gguf");
  const auto* q = gfile->tensor("blk.0.attn_q.weight");
  std::vector<float> hf_q(16 * 16);
  RandomWeights(tiny_config(), 42)
      .read_f32({"model.layers.0.self_attn.q_proj.weight", {16, 16}}, hf_q.data());
  std::vector<float> row(16);
  std::memcpy(row.data(), q->data + 1 * 16 * 4, 64);
  for (int k = 0; k < 16; ++k) EXPECT_EQ(row[k], hf_q[2 * 16 + k]);
}

TEST(Convert, HalfPrecisionExportsRoundOnce) {
  TempDir dir;
  RandomWeights weights(tiny_config(), 5);
  for (StorageType type : {StorageType::f16, StorageType::bf16}) {
    ExportOptions o;
    o.type = type;
    write_hf_model(weights, dir / "hf", o);
    write_gguf_model(weights, dir / "m.gguf", o);
    auto hf = Checkpoint::open(dir / "hf");
    auto gg = Checkpoint::open(dir / "m.gguf");
    EXPECT_EQ(hf->preferred_type(), type);
    EXPECT_EQ(gg->preferred_type(), type);
    EXPECT_EQ(gg->stored("model.norm.weight").type, StorageType::f32) << "GGUF keeps norms in F32";
    expect_same_weights(*hf, *gg, type == StorageType::f16 ? 1e-3f : 8e-3f);
    expect_same_weights(weights, *hf, type == StorageType::f16 ? 1e-3f : 8e-3f);
    nlohmann::json config = nlohmann::json::parse(slurp(dir / "hf" / "config.json"));
    EXPECT_EQ(config["torch_dtype"], type == StorageType::f16 ? "float16" : "bfloat16");
  }
}

TEST(Convert, Stories260KToHfAndGgufKeepsWeightsAndTokenizer) {
  TempDir dir;
  fs::path bin = shared_data("models/stories260K/stories260K.bin");
  convert_model(bin, dir / "hf", ExportFormat::hf, std::nullopt, std::nullopt);
  convert_model(bin, dir / "s.gguf", ExportFormat::gguf, std::nullopt, std::nullopt);
  auto src = Checkpoint::open(bin);
  auto hf = Checkpoint::open(dir / "hf");
  auto gg = Checkpoint::open(dir / "s.gguf");
  expect_same_weights(*src, *hf);
  expect_same_weights(*src, *gg);
  EXPECT_TRUE(fs::exists(dir / "hf" / "tokenizer.bin"));
  EXPECT_EQ(hf->tokenizer_path(), dir / "hf" / "tokenizer.bin");
  // llama2.c stories end with BOS: both end tokens survive the trip through HF and GGUF.
  EXPECT_EQ(src->config().eos_token_ids, (std::vector<int32_t>{2, 1}));
  EXPECT_EQ(hf->config().eos_token_ids, (std::vector<int32_t>{2, 1}));
  EXPECT_EQ(gg->config().eos_token_ids, (std::vector<int32_t>{2, 1}));
  auto gfile = seqit::gguf::File::open(dir / "s.gguf");
  auto tokens = gfile->get_string_array("tokenizer.ggml.tokens");
  ASSERT_EQ(tokens.size(), 512u);
  EXPECT_EQ(tokens[1], "<s>");
  EXPECT_EQ(tokens[259], "\xe2\x96\x81t");
  EXPECT_EQ(tokens[3], "<0x00>");
  EXPECT_EQ(gfile->get_int_array("tokenizer.ggml.token_type")[3], 6);
  EXPECT_EQ(gfile->get_f32_array("tokenizer.ggml.scores")[261], -2.0f);
  // The stories260K weights are llama2.c's (interleaved RoPE), and so are GGUF's: the stored q rows
  // of the GGUF file equal the .bin's bytes.
  std::string raw = slurp(bin);
  const auto* q = gfile->tensor("blk.0.attn_q.weight");
  EXPECT_EQ(std::memcmp(q->data, raw.data() + 28 + (512 * 64 + 5 * 64) * 4, 64 * 64 * 4), 0);
}

TEST(Config, HfConfigsOfTheThreeFamilies) {
  ModelConfig llama3 = parse_hf_config(R"({
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "vocab_size": 128256,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "tie_word_embeddings": true, "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009],
    "hidden_act": "silu", "torch_dtype": "bfloat16"})",
                                       "llama3.json");
  EXPECT_EQ(llama3.num_kv_heads, 8);
  EXPECT_EQ(llama3.head_dim, 64);
  EXPECT_TRUE(llama3.tie_word_embeddings);
  EXPECT_EQ(llama3.eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(llama3.rope_scaling.type, "llama3");
  // llama3 scaling: wavelengths below 8192/4 keep their frequency, above 8192/1 are divided by 32,
  // and between the two the frequency moves monotonically from one regime to the other.
  ModelConfig plain = llama3;
  plain.rope_scaling = {};
  auto scaled = llama3.rope_inv_freq(), base = plain.rope_inv_freq();
  ASSERT_EQ(scaled.size(), 32u);
  double previous_ratio = 1.0;
  for (size_t i = 0; i < scaled.size(); ++i) {
    double wavelen = 2 * M_PI / base[i];
    double ratio = base[i] / scaled[i];
    if (wavelen < 2048) {
      EXPECT_DOUBLE_EQ(ratio, 1.0) << i;
    }
    if (wavelen > 8192) {
      EXPECT_NEAR(ratio, 32.0, 1e-9) << i;
    }
    EXPECT_GE(ratio, previous_ratio - 1e-12) << i;
    previous_ratio = ratio;
  }
  // One value by hand: i = 20, theta^(-40/64) with theta 5e5, wavelength ~ 2*pi*3654 = 22960 >
  // 8192.
  EXPECT_NEAR(scaled[20], std::pow(500000.0, -40.0 / 64) / 32, 1e-15);

  ModelConfig qwen = parse_hf_config(R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "vocab_size": 151936,
    "tie_word_embeddings": true, "use_sliding_window": false, "sliding_window": 32768, "eos_token_id": 151643,
    "bos_token_id": 151643, "hidden_act": "silu"})",
                                     "qwen.json");
  EXPECT_EQ(qwen.architecture, "qwen2");
  EXPECT_TRUE(qwen.qkv_bias);
  EXPECT_FALSE(qwen.o_bias);
  EXPECT_EQ(qwen.head_dim, 64);
  EXPECT_FALSE(qwen.sliding_window.has_value());

  ModelConfig mistral =
      parse_hf_config(R"({"architectures": ["MistralForCausalLM"], "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "vocab_size": 32000,
    "sliding_window": 4096, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"})",
                      "mistral.json");
  EXPECT_EQ(mistral.architecture, "mistral");
  EXPECT_EQ(mistral.sliding_window, 4096);
  EXPECT_FALSE(mistral.tie_word_embeddings);
  EXPECT_FALSE(mistral.qkv_bias);
  // Written back and read again, the config is the same.
  ModelConfig again = parse_hf_config(hf_config_json(llama3, "bfloat16"), "again.json");
  EXPECT_EQ(again.rope_inv_freq(), llama3.rope_inv_freq());
  EXPECT_EQ(again.eos_token_ids, llama3.eos_token_ids);
  EXPECT_EQ(again.parameter_count(), llama3.parameter_count());
  EXPECT_EQ(llama3.parameter_count(), 1235814400);  // Llama-3.2-1B
}

TEST(Config, BadConfigsNameTheField) {
  std::string msg = error_of([] {
    parse_hf_config(R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})", "c.json");
  });
  EXPECT_NE(msg.find("unsupported architecture 'GPT2LMHeadModel'"), std::string::npos) << msg;
  msg = error_of([] {
    parse_hf_config(
        R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 6, "num_key_value_heads": 4, "vocab_size": 10})",
        "c.json");
  });
  EXPECT_NE(msg.find("num_key_value_heads"), std::string::npos) << msg;
  msg =
      error_of([] { parse_hf_config(R"({"model_type": "llama", "hidden_size": 64})", "c.json"); });
  EXPECT_NE(msg.find("lacks 'vocab_size'"), std::string::npos) << msg;
  msg = error_of([] {
    parse_hf_config(
        R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
      "num_attention_heads": 4, "vocab_size": 10, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})",
        "c.json");
  });
  EXPECT_NE(msg.find("unsupported rope_scaling type 'yarn'"), std::string::npos) << msg;
  // Issue 17: 2^31 layers made the loader allocate ~100 MB/s until bad_alloc.
  msg = error_of([] {
    parse_hf_config(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2147483648, "num_attention_heads": 4, "vocab_size": 10})",
                    "c.json");
  });
  EXPECT_NE(msg.find("num_hidden_layers is 2147483648, over the limit"), std::string::npos) << msg;
  msg = error_of([] {
    parse_hf_config(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 1099511627776})",
                    "c.json");
  });
  EXPECT_NE(msg.find("vocab_size"), std::string::npos) << msg;
}

TEST(Convert, Llama3RopeScalingTravelsThroughGgufAsRopeFreqs) {
  TempDir dir;
  ModelConfig cfg = tiny_config();
  cfg.head_dim = 8;
  cfg.num_heads = 2;
  cfg.num_kv_heads = 1;
  cfg.rope_theta = 500000;
  cfg.rope_scaling.type = "llama3";
  cfg.rope_scaling.factor = 8;
  cfg.rope_scaling.original_max_position_embeddings = 16;
  RandomWeights weights(cfg, 9);
  write_gguf_model(weights, dir / "m.gguf", {});
  auto gg = Checkpoint::open(dir / "m.gguf");
  auto a = cfg.rope_inv_freq(), b = gg->config().rope_inv_freq();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(b[i], a[i], 1e-6 * a[i]);
  EXPECT_NE(a.front() / a.back(), std::pow(500000.0, 6.0 / 8))
      << "scaling must change the frequencies";
}

TEST(ConvertCli, WritesBothFormatsAndReportsBadInputOnce) {
  TempDir dir;
  using seqit::testing::run_command;
  using seqit::testing::seqit_binary;
  using seqit::testing::shell_quote;
  std::string seqit = shell_quote(seqit_binary().string());
  std::string bin = shell_quote(shared_data("models/stories260K/stories260K.bin").string());
  std::string out;
  ASSERT_EQ(run_command(seqit + " convert --in " + bin + " --out " +
                            shell_quote((dir / "hf").string()) + " --to hf",
                        &out),
            0)
      << out;
  ASSERT_EQ(run_command(seqit + " convert --in " + shell_quote((dir / "hf").string()) + " --out " +
                            shell_quote((dir / "m.gguf").string()) + " --to gguf --dtype f16",
                        &out),
            0)
      << out;
  auto gg = Checkpoint::open(dir / "m.gguf");
  EXPECT_EQ(gg->preferred_type(), StorageType::f16);
  EXPECT_EQ(gg->config().hidden_size, 64);
  spit(dir / "junk.bin", std::string(64, 'x'));
  int rc = run_command(seqit + " convert --in " + shell_quote((dir / "junk.bin").string()) +
                           " --out " + shell_quote((dir / "o").string()) + " --to hf",
                       &out);
  EXPECT_EQ(rc, 1);
  EXPECT_NE(out.find("seqit: error: "), std::string::npos) << out;
  EXPECT_NE(out.find("junk.bin"), std::string::npos) << out;
  EXPECT_FALSE(fs::exists(dir / "o" / "model.safetensors"));
}
