// The training network's loss and gradients (full fine-tuning and LoRA) against two independent
// references — a PyTorch Llama (tests/model/torch_llama.py, float64, autograd) and central finite
// differences of an fp64 loop implementation (train_reference.h) — and its own invariants: a packed
// row equals its examples run alone, ignored targets contribute nothing, activation checkpointing
// changes no bit, LoRA starts at the base model, leaves it frozen and merges into it, and the loss
// of stories260K equals the cross-entropy of LlamaModel's inference logits.
//
// Tiny configs: C = 64, 2 layers, Hq = 4, Hkv = 2 (GQA), D = 16, F = 96, V = 128; batches of 2 rows
// of 33 tokens holding two packed examples, a long one, ignored prompt targets and a padded tail.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "model/checkpoint.h"
#include "model/llama.h"
#include "model/random_weights.h"
#include "model/train_network.h"
#include "tensor/calibrate.h"
#include "testing.h"
#include "train_reference.h"

namespace fs = std::filesystem;
using namespace seqit::model;
using seqit::tensor::DType;
using seqit::tensor::Tensor;
using seqit::testing::RefBatch;
using seqit::testing::RefLora;
using seqit::testing::RefParams;
using seqit::testing::RefShape;

namespace {

ModelConfig tiny_config(bool tied, bool biases) {
  ModelConfig c;
  c.architecture = biases ? "qwen2" : "llama";
  c.vocab_size = 128, c.hidden_size = 64, c.intermediate_size = 96, c.num_layers = 2;
  c.num_heads = 4, c.num_kv_heads = 2, c.head_dim = 16, c.max_position_embeddings = 128;
  c.tie_word_embeddings = tied;
  c.qkv_bias = biases;
  c.o_bias = biases;  // Llama's attention_bias: covers the o_proj bias path too
  c.rope_theta = biases ? 1e6 : 1e4;
  return c;
}

// Weights ~ N(0, 0.15²) (norms 1 + N(0, 0.15²)): large enough that every path carries signal.
std::unique_ptr<LlamaModel> tiny_model(const ModelConfig& c, uint64_t seed = 7,
                                       DType dtype = DType::f32) {
  RandomWeights weights(c, seed, 0.15f);
  return LlamaModel::load(weights, {.dtype = dtype});
}

struct Example {
  std::vector<int32_t> tokens;
  int64_t prompt = 0;  // the first `prompt` tokens are not predicted (their targets are -100)
};

Example random_example(std::mt19937& rng, int64_t length, int64_t prompt, int32_t vocab) {
  Example e;
  e.prompt = prompt;
  for (int64_t i = 0; i < length; ++i)
    e.tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab)));
  return e;
}

// Packs the examples of each row one after another (segment ids 0, 1, ..., positions restarting),
// then pads the row to T with token `pad` in a segment of its own, targets -100.
TrainBatch pack(const std::vector<std::vector<Example>>& rows, int64_t T, int32_t pad = 0) {
  TrainBatch b;
  b.batch = static_cast<int64_t>(rows.size()), b.seq_len = T;
  for (const auto& row : rows) {
    int64_t used = 0;
    int32_t segment = 0;
    for (const Example& e : row) {
      const auto n = static_cast<int64_t>(e.tokens.size());
      for (int64_t t = 0; t < n; ++t) {
        b.tokens.push_back(e.tokens[t]);
        const bool trained = t + 1 < n && t + 1 >= e.prompt;
        b.targets.push_back(trained ? e.tokens[t + 1] : -100);
        b.positions.push_back(static_cast<int32_t>(t));
        b.segment_ids.push_back(segment);
      }
      used += n, ++segment;
    }
    for (int64_t t = 0; used + t < T; ++t) {
      b.tokens.push_back(pad);
      b.targets.push_back(-100);
      b.positions.push_back(static_cast<int32_t>(t));
      b.segment_ids.push_back(segment);
    }
  }
  return b;
}

// Row 0: examples of 14 and 12 tokens packed, 7 padding; row 1: one example of 30, 3 padding.
TrainBatch standard_batch(int32_t vocab = 128, uint32_t seed = 3) {
  std::mt19937 rng(seed);
  Example a = random_example(rng, 14, 4, vocab), b = random_example(rng, 12, 3, vocab),
          c = random_example(rng, 30, 5, vocab);
  return pack({{a, b}, {c}}, 33);
}

RefShape ref_shape(const ModelConfig& c) {
  RefShape s;
  s.hidden = c.hidden_size, s.intermediate = c.intermediate_size, s.layers = c.num_layers;
  s.heads = c.num_heads, s.kv_heads = c.num_kv_heads, s.head_dim = c.head_dim,
  s.vocab = c.vocab_size;
  s.eps = c.rms_norm_eps, s.theta = c.rope_theta, s.tied = c.tie_word_embeddings;
  return s;
}

RefBatch ref_batch(const TrainBatch& b) {
  return RefBatch{b.batch, b.seq_len, b.tokens, b.targets, b.positions, b.segment_ids};
}

std::vector<float> values(const Tensor& t) {
  return seqit::tensor::to_float_vector(t);
}

// Every weight of the model under its HF name, in fp64.
RefParams ref_params(const LlamaModel& m) {
  RefParams p;
  for (const WeightSpec& spec : expected_weights(m.config())) {
    std::vector<float> v(static_cast<size_t>(spec.elements()));
    m.read_f32(spec, v.data());
    p[spec.name] = std::vector<double>(v.begin(), v.end());
  }
  return p;
}

// The adapters of a LoRA network in the reference's form.
RefLora ref_lora(TrainNetwork& net) {
  RefLora r;
  r.scale = net.lora_scale();
  r.rank = net.options().lora_spec.rank;
  for (const Parameter& p : net.parameters()) {
    const std::string module = p.name.substr(0, p.name.find(".lora_"));
    const std::vector<float> v = values(p.value);
    auto& slot = r.adapters[module];
    (p.name.find("lora_A") != std::string::npos ? slot.first : slot.second) =
        std::vector<double>(v.begin(), v.end());
  }
  return r;
}

// B = 0 at init makes every A gradient zero; tests that want signal through both give B values.
void randomise_lora_b(TrainNetwork& net, uint32_t seed, float scale = 0.1f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  for (Parameter& p : net.parameters()) {
    if (p.name.find("lora_B") == std::string::npos) continue;
    float* v = p.value.data<float>();
    for (int64_t i = 0; i < p.value.numel(); ++i) v[i] = dist(rng);
  }
}

const Parameter& param(TrainNetwork& net, const std::string& name) {
  for (const Parameter& p : net.parameters())
    if (p.name == name) return p;
  throw std::runtime_error("no parameter " + name);
}

// ||got - want|| / ||want||.
double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (static_cast<double>(got[i]) - want[i]) * (static_cast<double>(got[i]) - want[i]);
    den += static_cast<double>(want[i]) * want[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}
// max |got - want| / max |want|.
double max_error(const std::vector<float>& got, const std::vector<float>& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(got[i]) - want[i]));
    den = std::max(den, std::abs(static_cast<double>(want[i])));
  }
  return den == 0 ? num : num / den;
}
bool all_finite(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); });
}

void write_floats(const fs::path& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()),
          static_cast<std::streamsize>(v.size() * sizeof(float)));
}
std::vector<float> read_floats(const fs::path& path) {
  std::string bytes = seqit::testing::slurp(path);
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

}  // namespace

// ---- 1. PyTorch reference -----------------------------------------------------------------------

namespace {
struct TorchCase {
  std::string name;
  ModelConfig config;
  bool lora = false;
  LoraSpec spec;
};
struct Compared {
  std::vector<float> seqit, torch;
};
struct TorchOutcome {
  std::string name;
  bool lora = false;
  double loss_seqit = 0, loss_torch = 0;
  int64_t tokens_seqit = 0, tokens_torch = 0;
  size_t parameters = 0;
  std::map<std::string, Compared> grads, adamw;
};

// AdamW settings of the optimizer comparison (two steps from the same gradients).
constexpr float kLr = 1e-2f, kBeta1 = 0.9f, kBeta2 = 0.95f, kEps = 1e-6f, kWeightDecay = 0.1f;
}  // namespace

class TorchReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::vector<TorchCase> cases;
    cases.push_back({"full_llama_untied", tiny_config(false, false), false, {}});
    cases.push_back({"full_qwen2_tied_biases", tiny_config(true, true), false, {}});
    LoraSpec spec;
    spec.rank = 4, spec.alpha = 8, spec.seed = 5;
    cases.push_back({"lora_llama_untied", tiny_config(false, false), true, spec});
    spec.rslora = true, spec.targets = {"q_proj", "v_proj", "o_proj", "down"}, spec.rank = 3;
    cases.push_back({"lora_qwen2_tied_rslora", tiny_config(true, true), true, spec});

    seqit::testing::TempDir dir;
    nlohmann::json manifest;
    const TrainBatch batch = standard_batch();
    int file = 0;
    auto save = [&](const std::vector<float>& v) {
      std::string name = "t" + std::to_string(file++) + ".f32";
      write_floats(dir / name, v);
      return name;
    };
    for (const TorchCase& tc : cases) {
      auto model = tiny_model(tc.config);
      TrainOptions options;
      options.lora = tc.lora;
      options.lora_spec = tc.spec;
      TrainNetwork net(*model, options);
      if (tc.lora) randomise_lora_b(net, 17);
      const float grad_scale = 1.0f / 44;  // any scale: both sides multiply the loss by it
      TorchOutcome out;
      out.name = tc.name, out.lora = tc.lora;
      nlohmann::json c;
      c["name"] = tc.name;
      const ModelConfig& mc = tc.config;
      c["config"] = {{"hidden", mc.hidden_size},    {"intermediate", mc.intermediate_size},
                     {"layers", mc.num_layers},     {"heads", mc.num_heads},
                     {"kv_heads", mc.num_kv_heads}, {"head_dim", mc.head_dim},
                     {"vocab", mc.vocab_size},      {"eps", mc.rms_norm_eps},
                     {"theta", mc.rope_theta},      {"tied", mc.tie_word_embeddings}};
      c["batch"] = {{"B", batch.batch},
                    {"T", batch.seq_len},
                    {"tokens", batch.tokens},
                    {"targets", batch.targets},
                    {"positions", batch.positions},
                    {"segment_ids", batch.segment_ids}};
      c["grad_scale"] = grad_scale;
      for (const WeightSpec& spec_w : expected_weights(mc)) {
        std::vector<float> v(static_cast<size_t>(spec_w.elements()));
        model->read_f32(spec_w, v.data());
        c["weights"].push_back({{"name", spec_w.name}, {"shape", spec_w.shape}, {"file", save(v)}});
      }
      if (tc.lora) {
        nlohmann::json lora;
        lora["scale"] = net.lora_scale();
        auto& ps = net.parameters();
        for (size_t i = 0; i + 1 < ps.size(); i += 2) {
          lora["adapters"].push_back({{"module", ps[i].name.substr(0, ps[i].name.find(".lora_A"))},
                                      {"a_file", save(values(ps[i].value))},
                                      {"a_shape", ps[i].value.shape()},
                                      {"b_file", save(values(ps[i + 1].value))},
                                      {"b_shape", ps[i + 1].value.shape()}});
        }
        c["lora"] = lora;
      }
      for (const Parameter& p : net.parameters()) c["trainable"].push_back(p.name);

      const seqit::tensor::CrossEntropyResult r = net.forward_backward(batch, grad_scale);
      out.loss_seqit = r.loss_sum, out.tokens_seqit = r.tokens,
      out.parameters = net.parameters().size();
      for (const Parameter& p : net.parameters()) out.grads[p.name].seqit = values(p.grad);

      // AdamW from these gradients: seqit's adamw_step per parameter, weight decay where decay is
      // set.
      nlohmann::json adamw = {{"lr", kLr},
                              {"betas", {kBeta1, kBeta2}},
                              {"eps", kEps},
                              {"weight_decay", kWeightDecay},
                              {"steps", 2}};
      for (const Parameter& p : net.parameters()) {
        adamw["grads"][p.name] = {
            {"file", save(values(p.grad))}, {"shape", p.grad.shape()}, {"decay", p.decay}};
      }
      c["adamw"] = adamw;
      for (const Parameter& p : net.parameters()) {
        Tensor m = Tensor::zeros(p.value.shape(), DType::f32),
               v = Tensor::zeros(p.value.shape(), DType::f32);
        seqit::tensor::AdamWConfig cfg{kLr, kBeta1, kBeta2, kEps, p.decay ? kWeightDecay : 0.0f};
        for (int64_t step = 1; step <= 2; ++step)
          seqit::tensor::adamw_step(p.value, {}, p.grad, m, v, cfg, step);
        out.adamw[p.name].seqit = values(p.value);
      }
      manifest["cases"].push_back(c);
      outcomes_.push_back(std::move(out));
    }
    seqit::testing::spit(dir / "manifest.json", manifest.dump());
    const fs::path script = seqit::testing::source_dir() / "tests/model/torch_llama.py";
    std::string output;
    const int status = seqit::testing::run_command(
        "OMP_NUM_THREADS=2 /usr/bin/python3 " + seqit::testing::shell_quote(script.string()) + " " +
            seqit::testing::shell_quote(dir.path().string()),
        &output);
    if (status == 77) {  // the script's "no torch" exit
      skip_ =
          "PyTorch is not installed for /usr/bin/python3: apt-get install python3-torch (a "
          "test-only package)";
      return;
    }
    if (status != 0) {
      failure_ = "torch_llama.py failed:\n" + output;
      return;
    }
    for (TorchOutcome& out : outcomes_) {
      const auto j = nlohmann::json::parse(seqit::testing::slurp(dir / (out.name + ".out.json")));
      out.loss_torch = j["loss"].get<double>();
      out.tokens_torch = j["tokens"].get<int64_t>();
      for (auto& [name, file] : j["grads"].items())
        out.grads[name].torch = read_floats(dir / file.get<std::string>());
      for (auto& [name, file] : j["adamw"].items())
        out.adamw[name].torch = read_floats(dir / file.get<std::string>());
    }
  }
  void SetUp() override {
    if (!skip_.empty()) GTEST_SKIP() << skip_;
    ASSERT_TRUE(failure_.empty()) << failure_;
  }
  static void check_gradients(bool lora) {
    int checked = 0;
    for (const TorchOutcome& out : outcomes_) {
      if (out.lora != lora) continue;
      ++checked;
      EXPECT_EQ(out.tokens_seqit, out.tokens_torch) << out.name;
      EXPECT_NEAR(out.loss_seqit, out.loss_torch, 1e-5 * out.loss_torch) << out.name;
      EXPECT_EQ(out.grads.size(), out.parameters)
          << out.name << ": every trainable tensor has a torch gradient";
      double worst_rel = 0, worst_max = 0;
      for (const auto& [name, g] : out.grads) {
        ASSERT_EQ(g.seqit.size(), g.torch.size()) << out.name << " " << name;
        ASSERT_TRUE(all_finite(g.seqit)) << out.name << " " << name;
        const double rel = rel_error(g.seqit, g.torch), mx = max_error(g.seqit, g.torch);
        worst_rel = seqit::testing::nan_max(worst_rel, rel),
        worst_max = seqit::testing::nan_max(worst_max, mx);
        // f32 against float64 through 2 layers: measured <= ~1e-6 norm-wise; 1e-4 leaves room for
        // other kernels (sanitizer build) and still fails on any wrong term.
        EXPECT_LT(rel, 1e-4) << out.name << " " << name;
        EXPECT_LT(mx, 1e-4) << out.name << " " << name;
        double norm = 0;
        for (float x : g.torch) norm += static_cast<double>(x) * x;
        EXPECT_GT(norm, 0) << out.name << " " << name << ": no signal";
      }
      std::printf(
          "[ torch    ] %s: loss %.9g vs %.9g, worst gradient error %.2e norm-wise, %.2e max-abs "
          "(scaled)\n",
          out.name.c_str(), out.loss_seqit, out.loss_torch, worst_rel, worst_max);
    }
    EXPECT_EQ(checked, 2);
  }
  static inline std::string skip_, failure_;
  static inline std::vector<TorchOutcome> outcomes_;
};

TEST_F(TorchReference, FullFineTuningLossAndEveryWeightGradientMatchPyTorch) {
  check_gradients(false);
}

TEST_F(TorchReference, LoraLossAndEveryAdapterGradientMatchPyTorch) {
  check_gradients(true);
}

TEST_F(TorchReference, TwoAdamWStepsEqualTorchOptimAdamWWithDecayGroups) {
  // The groups: weight decay on matrices (embedding, projections, head, adapters), not on norm
  // weights and biases.
  for (bool lora : {false, true}) {
    auto model = tiny_model(tiny_config(true, true));
    TrainOptions options;
    options.lora = lora;
    TrainNetwork net(*model, options);
    for (const Parameter& p : net.parameters()) {
      const bool vector =
          p.name.find("norm.weight") != std::string::npos || p.name.ends_with(".bias");
      EXPECT_EQ(p.decay, !vector) << p.name;
      EXPECT_EQ(p.value.dim(), vector ? 1 : 2) << p.name;
    }
  }
  for (const TorchOutcome& out : outcomes_) {
    ASSERT_EQ(out.adamw.size(), out.parameters) << out.name;
    double worst = 0;
    for (const auto& [name, p] : out.adamw) {
      ASSERT_EQ(p.seqit.size(), p.torch.size()) << name;
      for (size_t i = 0; i < p.seqit.size(); ++i) {
        const double d = std::abs(static_cast<double>(p.seqit[i]) - p.torch[i]);
        worst = seqit::testing::nan_max(worst, d);
        // Both in f32 from the same gradients: equal up to f32 rounding of the update (lr = 1e-2).
        ASSERT_LE(d, 1e-6 + 1e-6 * std::abs(p.torch[i]))
            << out.name << " " << name << " element " << i;
      }
    }
    std::printf("[ adamw    ] %s: worst |seqit - torch| after 2 steps %.2e\n", out.name.c_str(),
                worst);
  }
}

// ---- 2. fp64 finite differences -----------------------------------------------------------------

namespace {
// For each trainable tensor: its largest-gradient element and 5 random ones; the analytic f32
// gradient of loss_sum against (L(w+h) - L(w-h)) / 2h of the fp64 reference loss.
void expect_gradients_match_fd(
    TrainNetwork& net, const std::function<double(const std::string&, size_t, double)>& loss_at,
    const char* what) {
  std::mt19937 rng(11);
  double worst = 0;
  for (const Parameter& p : net.parameters()) {
    const std::vector<float> g = values(p.grad);
    ASSERT_TRUE(all_finite(g)) << what << " " << p.name;
    double scale = 0;
    size_t top = 0;
    for (size_t i = 0; i < g.size(); ++i)
      if (std::abs(g[i]) > scale) scale = std::abs(g[i]), top = i;
    ASSERT_GT(scale, 0) << what << " " << p.name << ": no gradient signal";
    std::vector<size_t> samples = {top};
    for (int s = 0; s < 5; ++s) samples.push_back(rng() % g.size());
    for (size_t i : samples) {
      const double h = 1e-4;
      const double fd = (loss_at(p.name, i, h) - loss_at(p.name, i, -h)) / (2 * h);
      worst = seqit::testing::nan_max(worst, std::abs(fd - g[i]) / scale);
      // fp64 FD truncation ~h²·L''' ~ 1e-8, f32 gradient error ~1e-6 of the tensor's largest
      // gradient (measured); a wrong term is off by O(1).
      EXPECT_NEAR(g[i], fd, 1e-4 * scale) << what << " " << p.name << " element " << i;
    }
  }
  std::printf("[ fd       ] %s: worst |analytic - fd| / max|grad| %.2e\n", what, worst);
}
}  // namespace

TEST(TrainNetwork, FullFineTuningGradientsMatchFp64FiniteDifferences) {
  for (bool tied_biases : {false, true}) {
    const ModelConfig c = tiny_config(tied_biases, tied_biases);
    auto model = tiny_model(c);
    TrainNetwork net(*model, {});
    const TrainBatch batch = standard_batch();
    const auto r = net.forward_backward(batch, 1.0f);
    RefParams params = ref_params(*model);
    const RefShape shape = ref_shape(c);
    const RefBatch rb = ref_batch(batch);
    const double ref = seqit::testing::reference_train_loss(shape, params, rb);
    EXPECT_NEAR(r.loss_sum, ref, 1e-5 * ref);
    EXPECT_EQ(net.parameters().size(), expected_weights(c).size())
        << "a parameter for every weight";
    auto loss_at = [&](const std::string& name, size_t i, double h) {
      RefParams p = params;
      p.at(name)[i] += h;
      return seqit::testing::reference_train_loss(shape, p, rb);
    };
    expect_gradients_match_fd(net, loss_at,
                              tied_biases ? "qwen2 tied with biases" : "llama untied");
  }
}

TEST(TrainNetwork, LoraGradientsMatchFp64FiniteDifferences) {
  const ModelConfig c = tiny_config(false, false);
  auto model = tiny_model(c);
  TrainOptions options;
  options.lora = true;
  options.lora_spec.rank = 4, options.lora_spec.alpha = 6, options.lora_spec.rslora = true;
  TrainNetwork net(*model, options);
  randomise_lora_b(net, 23);
  const TrainBatch batch = standard_batch();
  const auto r = net.forward_backward(batch, 1.0f);
  const RefParams params = ref_params(*model);
  const RefLora lora = ref_lora(net);
  const RefShape shape = ref_shape(c);
  const RefBatch rb = ref_batch(batch);
  EXPECT_FLOAT_EQ(net.lora_scale(), static_cast<float>(6 / std::sqrt(4.0)));
  EXPECT_NEAR(r.loss_sum, seqit::testing::reference_train_loss(shape, params, rb, &lora),
              1e-5 * r.loss_sum);
  EXPECT_EQ(net.parameters().size(), 2u * 7 * 2);
  auto loss_at = [&](const std::string& name, size_t i, double h) {
    RefLora l = lora;
    auto& slot = l.adapters.at(name.substr(0, name.find(".lora_")));
    (name.find("lora_A") != std::string::npos ? slot.first : slot.second)[i] += h;
    return seqit::testing::reference_train_loss(shape, params, rb, &l);
  };
  expect_gradients_match_fd(net, loss_at, "lora");
}

// ---- 3. packing ---------------------------------------------------------------------------------

TEST(TrainNetwork, PackedRowEqualsItsExamplesRunOneByOne) {
  auto model = tiny_model(tiny_config(false, false));
  std::mt19937 rng(5);
  const Example a = random_example(rng, 14, 4, 128), b = random_example(rng, 12, 3, 128);
  TrainNetwork packed(*model, {}), alone(*model, {});
  const auto rp = packed.forward_backward(pack({{a, b}}, 33), 1.0f);
  double loss = 0;
  int64_t tokens = 0;
  for (const Example& e : {a, b}) {  // gradients accumulate over the two calls
    TrainBatch one = pack({{e}}, static_cast<int64_t>(e.tokens.size()));
    one.segment_ids.clear();  // plain causal rows
    one.positions.clear();    // default 0..T-1
    const auto r = alone.forward_backward(one, 1.0f);
    loss += r.loss_sum, tokens += r.tokens;
  }
  EXPECT_EQ(rp.tokens, tokens);
  EXPECT_EQ(rp.tokens, 10 + 9);
  EXPECT_NEAR(rp.loss_sum, loss, 1e-6 * loss);
  double worst = 0;
  for (size_t i = 0; i < packed.parameters().size(); ++i) {
    const auto gp = values(packed.parameters()[i].grad), ga = values(alone.parameters()[i].grad);
    const double e = rel_error(gp, ga);
    worst = seqit::testing::nan_max(worst, e);
    EXPECT_LT(e, 1e-5) << packed.parameters()[i].name;
  }
  std::printf("[ packing  ] loss %.9g vs %.9g, worst gradient error %.2e norm-wise\n", rp.loss_sum,
              loss, worst);
}

// ---- 4. ignored targets -------------------------------------------------------------------------

TEST(TrainNetwork, IgnoredTargetsContributeNothing) {
  auto model = tiny_model(tiny_config(false, false));
  const TrainBatch batch = standard_batch();
  TrainNetwork net(*model, {});
  const auto r = net.forward_backward(batch, 0.5f);
  EXPECT_EQ(r.tokens, std::count_if(batch.targets.begin(), batch.targets.end(),
                                    [](int32_t t) { return t != -100; }));
  std::vector<std::vector<float>> want;
  for (const Parameter& p : net.parameters()) want.push_back(values(p.grad));

  // Other token ids in the padded tails (targets -100, attended by nothing trained): not one
  // gradient bit changes (every contribution they make is an exact zero).
  TrainBatch other = batch;
  for (size_t i = 0; i < other.tokens.size(); ++i) {
    const bool tail = (i >= 26 && i < 33) || i >= 33 + 30;
    if (tail) other.tokens[i] = static_cast<int32_t>((i * 37 + 11) % 128);
  }
  ASSERT_NE(other.tokens, batch.tokens);
  net.zero_grads();
  const auto r2 = net.forward_backward(other, 0.5f);
  EXPECT_EQ(r2.loss_sum, r.loss_sum);
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_EQ(values(net.parameters()[i].grad), want[i]) << net.parameters()[i].name;

  // The loss of a masked batch plus the losses of the masked positions, each trained alone, is the
  // loss with those positions trained: masking removes exactly their terms.
  TrainBatch all = batch;
  std::vector<size_t> masked;
  for (size_t i : {1u, 15u, 35u}) {  // prompt positions of each example (targets -100 in `batch`)
    ASSERT_EQ(batch.targets[i], -100);
    all.targets[i] = batch.tokens[i + 1];
    masked.push_back(i);
  }
  double sum = net.forward_loss(batch).loss_sum;
  for (size_t i : masked) {
    TrainBatch one = batch;
    std::fill(one.targets.begin(), one.targets.end(), -100);
    one.targets[i] = all.targets[i];
    const auto ri = net.forward_loss(one);
    EXPECT_EQ(ri.tokens, 1);
    sum += ri.loss_sum;
  }
  const auto ra = net.forward_loss(all);
  EXPECT_EQ(ra.tokens, r.tokens + 3);
  EXPECT_NEAR(ra.loss_sum, sum, 1e-6 * sum);
  EXPECT_GT(ra.loss_sum, r.loss_sum + 1.0);  // the three terms are not nothing
}

// Full fine-tuning or LoRA (rank 4 on every projection, with dropout) in a compute dtype.
TrainOptions rank4_options(bool lora, DType compute, float dropout) {
  TrainOptions options;
  options.compute = compute;
  options.lora = lora;
  options.lora_spec.rank = 4;
  options.lora_spec.dropout = dropout;
  return options;
}
// Two networks compared pass for pass: the same nonzero B (LoRA) and the same dropout masks.
void same_start(TrainNetwork& a, TrainNetwork& b, bool lora, uint64_t step_seed) {
  if (lora) {
    randomise_lora_b(a, 3);
    randomise_lora_b(b, 3);
  }
  a.set_step_seed(step_seed);
  b.set_step_seed(step_seed);
}
std::string variant(bool lora, DType compute) {
  return std::string(lora ? "LoRA, " : "full, ") + (compute == DType::bf16 ? "bf16" : "f32");
}

// When some targets are ignored, the top layer's o projection and MLP, the final norm and the head
// run on the trained rows alone (padded to a multiple of 16 with ignored ones). Against the path
// over all rows: one row with 27 of its 32 targets trained takes all rows (32 rows, no fewer); the
// same row beside a row of padding takes the top path (32 of 64). Same loss and gradients up to
// summation order, and with LoRA dropout the same masks (each row keeps its batch row's mask: the
// trained rows start at row 4, not 0).
TEST(TrainNetwork, TopLayerOnTheTrainedRowsEqualsAllRows) {
  for (bool lora : {false, true}) {
    for (DType compute : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(variant(lora, compute));
      auto model = tiny_model(tiny_config(true, lora));
      const TrainOptions options = rank4_options(lora, compute, 0.2f);
      TrainNetwork all_rows(*model, options), top_rows(*model, options);
      same_start(all_rows, top_rows, lora, 9);
      std::mt19937 rng(4);
      const Example e = random_example(rng, 32, 5, 128);
      const TrainBatch one = pack({{e}}, 32), two = pack({{e}, {}}, 32);
      ASSERT_EQ(std::count(one.targets.begin(), one.targets.end(), -100), 5);
      const auto a = all_rows.forward_backward(one, 0.5f), b = top_rows.forward_backward(two, 0.5f);
      EXPECT_EQ(a.tokens, 27);
      EXPECT_EQ(b.tokens, 27);
      // f32: summation order; bf16: its roundings of operands that differ in their last f32 bits
      const bool f32 = compute == DType::f32;
      EXPECT_NEAR(b.loss_sum, a.loss_sum, (f32 ? 1e-6 : 1e-4) * a.loss_sum);
      const double tolerance = f32 ? 1e-5 : 3e-3;
      for (size_t i = 0; i < all_rows.parameters().size(); ++i) {
        const std::vector<float> want = values(all_rows.parameters()[i].grad);
        const double e = rel_error(values(top_rows.parameters()[i].grad), want);
        EXPECT_LT(e, tolerance) << all_rows.parameters()[i].name;
        EXPECT_GT(*std::max_element(want.begin(), want.end()), 0.0f)
            << all_rows.parameters()[i].name;  // every gradient carries signal
      }
    }
  }
}

// ---- 5. checkpointing, LoRA invariants ----------------------------------------------------------

TEST(TrainNetwork, CheckpointedActivationsGiveTheSameLossAndGradients) {
  for (bool lora : {false, true}) {
    for (DType compute : {DType::f32, DType::bf16}) {
      SCOPED_TRACE(variant(lora, compute));
      auto model = tiny_model(tiny_config(lora, lora));
      // dropout: the masks must be recomputed identically too
      TrainOptions options = rank4_options(lora, compute, 0.1f);
      TrainNetwork stored(*model, options);
      options.checkpoint_activations = true;
      TrainNetwork recomputed(*model, options);
      same_start(stored, recomputed, lora, 42);
      // A smaller batch first: the workspace then grows for the real one and must not carry
      // anything over.
      std::mt19937 rng(1);
      recomputed.forward_backward(pack({{random_example(rng, 9, 2, 128)}}, 9), 1.0f);
      recomputed.zero_grads();
      const TrainBatch batch = standard_batch();
      const auto a = stored.forward_backward(batch, 0.25f),
                 b = recomputed.forward_backward(batch, 0.25f);
      EXPECT_EQ(a.loss_sum, b.loss_sum);
      EXPECT_EQ(a.tokens, b.tokens);
      for (size_t i = 0; i < stored.parameters().size(); ++i) {
        // Recomputing runs the same ops on the same inputs: bit-identical.
        EXPECT_EQ(values(stored.parameters()[i].grad), values(recomputed.parameters()[i].grad))
            << stored.parameters()[i].name;
      }
      // and once more, same batch, on the warm workspace: the gradients accumulate to twice (up to
      // the rounding of the sums).
      recomputed.forward_backward(batch, 0.25f);
      for (size_t i = 0; i < stored.parameters().size(); ++i) {
        std::vector<float> twice = values(stored.parameters()[i].grad);
        for (float& x : twice) x *= 2;
        EXPECT_LT(max_error(values(recomputed.parameters()[i].grad), twice), 1e-6)
            << stored.parameters()[i].name;
      }
      if (lora) {
        // Dropout masks follow the step seed; evaluation has none.
        const double l42 = a.loss_sum;
        stored.set_step_seed(43);
        const double l43 = stored.forward_backward(batch, 0.25f).loss_sum;
        EXPECT_NE(l43, l42);
        stored.set_step_seed(42);
        EXPECT_EQ(stored.forward_backward(batch, 0.25f).loss_sum, l42);
        const double eval = stored.forward_loss(batch).loss_sum;
        stored.set_step_seed(43);
        EXPECT_EQ(stored.forward_loss(batch).loss_sum, eval);
        TrainOptions no_dropout = options;
        no_dropout.lora_spec.dropout = 0;
        TrainNetwork plain(*model, no_dropout);
        for (size_t i = 0; i < plain.parameters().size(); ++i)
          plain.parameters()[i].value.copy_from(stored.parameters()[i].value);
        EXPECT_EQ(plain.forward_backward(batch, 0.25f).loss_sum, eval);
        EXPECT_NE(eval, l42);
      }
    }
  }
}

// ---- 6. bf16 compute ----------------------------------------------------------------------------

// bf16 compute rounds every GEMM operand (weights, normalised activations, attention output,
// SwiGLU product, the gradients fed to GEMMs) to bf16's 8 significant bits (relative rounding
// <= 2^-9 = 2e-3) and accumulates in f32. Against the f32 pass, the loss then moves by ~4e-4 of
// itself and the gradients by 1.5-4% norm-wise, every tensor alike (measured: roundings compound
// through 2 layers and the head, and this model's large weights, N(0, 0.15²), make its softmaxes
// sharp); 3e-3 and 8e-2 leave room above that and stay far below what a wrong op gives (a missing
// term or a transposed operand is O(1)). Where the CPU has no bf16 arithmetic the same
// rounding runs through f32 GEMMs, so the test holds there too (it says which path ran).
TEST(TrainNetwork, Bf16ComputeMatchesF32WithinBf16Rounding) {
  const bool native = seqit::tensor::cpu_has_bf16_arithmetic();
  std::printf("[ bf16     ] %s\n", native ? "native bf16 GEMMs (this CPU has bf16 arithmetic)"
                                          : "this CPU has no bf16 arithmetic: the emulated path");
  for (bool lora : {false, true}) {
    SCOPED_TRACE(lora ? "LoRA" : "full");
    auto model = tiny_model(tiny_config(lora, lora));
    TrainOptions options;
    options.lora = lora;
    options.lora_spec.rank = 4;
    TrainNetwork f32(*model, options);
    options.compute = DType::bf16;
    TrainNetwork bf16(*model, options);
    if (lora) {
      randomise_lora_b(f32, 3);
      randomise_lora_b(bf16, 3);
    }
    const TrainBatch batch = standard_batch();
    const auto a = f32.forward_backward(batch, 0.25f), b = bf16.forward_backward(batch, 0.25f);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_NEAR(b.loss_sum, a.loss_sum, 3e-3 * a.loss_sum);
    EXPECT_NE(b.loss_sum, a.loss_sum) << "bf16 compute must round (it ran in f32)";
    double worst = 0;
    for (size_t i = 0; i < f32.parameters().size(); ++i) {
      const Parameter& p = f32.parameters()[i];
      const std::vector<float> want = values(p.grad), got = values(bf16.parameters()[i].grad);
      ASSERT_TRUE(all_finite(got)) << p.name;
      const double e = rel_error(got, want);
      EXPECT_LT(e, 8e-2) << p.name;
      worst = std::max(worst, e);
    }
    EXPECT_GT(worst, 1e-5) << "the gradients must show bf16 rounding";
    // Evaluation computes the same way, without gradients.
    const auto eval = bf16.forward_loss(batch);
    EXPECT_NEAR(eval.loss_sum, b.loss_sum, 1e-6 * b.loss_sum);
    std::printf("[ bf16     ] %s: loss %.7g vs f32 %.7g, worst gradient error %.2e norm-wise\n",
                lora ? "LoRA" : "full", b.loss_sum, a.loss_sum, worst);
  }
}

// A bf16 base (LoRA with base_dtype bf16) computed in bf16 uses its weights as they are, and gives
// the loss of the f32 base rounded to bf16 computed in bf16.
TEST(TrainNetwork, Bf16ComputeOverABf16BaseEqualsTheRoundedF32Base) {
  const ModelConfig c = tiny_config(false, false);
  auto m32 = tiny_model(c), m16 = tiny_model(c, 7, DType::bf16);
  TrainOptions options;
  options.lora = true;
  options.lora_spec.rank = 4;
  options.compute = DType::bf16;
  TrainNetwork over32(*m32, options), over16(*m16, options);
  randomise_lora_b(over32, 3);
  randomise_lora_b(over16, 3);
  const TrainBatch batch = standard_batch();
  const auto a = over32.forward_backward(batch, 0.25f), b = over16.forward_backward(batch, 0.25f);
  // The projections see the same bf16 weights; only the embedding and norms (f32 vs bf16-rounded
  // in the bf16 model) differ, by bf16 rounding.
  EXPECT_NEAR(b.loss_sum, a.loss_sum, 3e-3 * a.loss_sum);
  for (size_t i = 0; i < over32.parameters().size(); ++i) {
    EXPECT_LT(rel_error(values(over16.parameters()[i].grad), values(over32.parameters()[i].grad)),
              8e-2)
        << over32.parameters()[i].name;
  }
}

// LoRA under bf16 compute packs its frozen base once for the GEMMs (f32 and bf16 bases alike): the
// same loss and gradients as the plain weights, up to f32 summation order, in training and in
// evaluation; merging the adapters into the base drops the packed copies (a stale copy would give
// the base's loss without the adapters).
TEST(TrainNetwork, PackedFrozenBaseGivesThePlainWeightsNumbers) {
  for (DType base : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(base == DType::f32 ? "f32 base" : "bf16 base");
    const ModelConfig c = tiny_config(true, true);
    auto m_plain = tiny_model(c, 7, base), m_packed = tiny_model(c, 7, base);
    TrainOptions options;
    options.lora = true;
    options.lora_spec.rank = 4;
    options.compute = DType::bf16;
    options.pack_frozen_base = false;
    TrainNetwork plain(*m_plain, options);
    options.pack_frozen_base = true;
    TrainNetwork packed(*m_packed, options);
    randomise_lora_b(plain, 3);
    randomise_lora_b(packed, 3);
    const TrainBatch batch = standard_batch();
    const auto a = plain.forward_backward(batch, 0.25f), b = packed.forward_backward(batch, 0.25f);
    EXPECT_NEAR(b.loss_sum, a.loss_sum, 1e-6 * a.loss_sum);
    for (size_t i = 0; i < plain.parameters().size(); ++i) {
      EXPECT_LT(rel_error(values(packed.parameters()[i].grad), values(plain.parameters()[i].grad)),
                1e-5)
          << plain.parameters()[i].name;
    }
    const double eval = packed.forward_loss(batch).loss_sum;
    EXPECT_NEAR(eval, plain.forward_loss(batch).loss_sum, 1e-6 * eval);
    packed.merge_lora_into_base();
    plain.merge_lora_into_base();
    const double merged = packed.forward_loss(batch).loss_sum;
    EXPECT_NEAR(merged, plain.forward_loss(batch).loss_sum, 1e-6 * merged);
    // merged weights are rounded into the base's dtype: near the adapter's loss, not the base's
    EXPECT_NEAR(merged, eval, 3e-3 * eval);
  }
}

TEST(TrainNetwork, LoraStartsAtTheBaseModelAndLeavesItFrozen) {
  const ModelConfig c = tiny_config(true, true);
  auto model = tiny_model(c);
  const RefParams before = ref_params(*model);
  const TrainBatch batch = standard_batch();
  double base_loss = 0;
  {
    TrainNetwork full(*model, {});
    base_loss = full.forward_loss(batch).loss_sum;
  }
  TrainOptions options;
  options.lora = true;
  options.lora_spec.rank = 8, options.lora_spec.alpha = 16, options.lora_spec.seed = 9;
  TrainNetwork net(*model, options);
  EXPECT_FLOAT_EQ(net.lora_scale(), 2.0f);
  ASSERT_EQ(net.parameters().size(), 2u * 7 * 2);
  EXPECT_EQ(net.parameters()[0].name, "model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(net.parameters()[1].name, "model.layers.0.self_attn.q_proj.lora_B.weight");
  EXPECT_EQ(net.parameters()[13].name, "model.layers.0.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(param(net, "model.layers.1.mlp.down_proj.lora_A.weight").value.shape(),
            (seqit::tensor::Shape{8, 96}));
  EXPECT_EQ(param(net, "model.layers.1.self_attn.k_proj.lora_B.weight").value.shape(),
            (seqit::tensor::Shape{32, 8}));
  // PEFT's init: A ~ U(-1/sqrt(in), 1/sqrt(in)) (std bound/sqrt(3)), B = 0.
  const std::vector<float> a =
      values(param(net, "model.layers.0.self_attn.q_proj.lora_A.weight").value);
  double ss = 0, bound = 1 / std::sqrt(64.0);
  for (float x : a) {
    ss += static_cast<double>(x) * x;
    EXPECT_LE(std::abs(x), bound);
  }
  EXPECT_NEAR(std::sqrt(ss / a.size()), bound / std::sqrt(3.0), 0.1 * bound);
  for (float x : values(param(net, "model.layers.0.self_attn.q_proj.lora_B.weight").value))
    ASSERT_EQ(x, 0.0f);

  // B = 0: exactly the base model's loss; only B gets a gradient at the first step.
  const auto r = net.forward_backward(batch, 1.0f / 44);
  EXPECT_EQ(r.loss_sum, base_loss);
  for (const Parameter& p : net.parameters()) {
    double norm = 0;
    for (float x : values(p.grad)) norm += static_cast<double>(x) * x;
    if (p.name.find("lora_A") != std::string::npos) {
      EXPECT_EQ(norm, 0) << p.name;
    } else {
      EXPECT_GT(norm, 0) << p.name;
    }
  }
  // Steps of AdamW on the trainable tensors move the adapters and not one bit of the base.
  for (int step = 1; step <= 2; ++step) {
    for (const Parameter& p : net.parameters()) {
      Tensor m = Tensor::zeros(p.value.shape(), DType::f32),
             v = Tensor::zeros(p.value.shape(), DType::f32);
      seqit::tensor::adamw_step(p.value, {}, p.grad, m, v, {}, step);
    }
    net.zero_grads();
    net.forward_backward(batch, 1.0f / 44);
  }
  EXPECT_NE(net.forward_loss(batch).loss_sum, base_loss);
  const RefParams after = ref_params(*model);
  for (const auto& [name, w] : before) EXPECT_EQ(after.at(name), w) << name;
}

TEST(TrainNetwork, MergedLoraWeightsGiveTheAdapterModelsLoss) {
  for (DType dtype : {DType::f32, DType::bf16}) {
    const ModelConfig c = tiny_config(false, true);
    auto model = tiny_model(c, 7, dtype);
    TrainOptions options;
    options.lora = true;
    options.lora_spec.rank = 4, options.lora_spec.alpha = 8;
    TrainNetwork net(*model, options);
    randomise_lora_b(net, 31, 0.2f);
    const TrainBatch batch = standard_batch();
    const double base = [&] {
      TrainNetwork probe(*model, options);  // B = 0: the base model
      return probe.forward_loss(batch).loss_sum;
    }();
    const double with_adapter = net.forward_loss(batch).loss_sum;
    ASSERT_GT(std::abs(with_adapter - base), 1.0)
        << "the adapters must change the loss for this test to mean anything";
    const RefLora lora = ref_lora(net);
    const RefParams base_weights = ref_params(*model);
    net.merge_lora_into_base();
    EXPECT_THROW(net.merge_lora_into_base(), seqit::Error);
    // W' = W + scale · B·A for every adapted block (f32: to f32 rounding; bf16: one rounding).
    const RefParams merged = ref_params(*model);
    const std::string q = "model.layers.1.self_attn.q_proj";
    const auto& [A, B] = lora.adapters.at(q);
    const auto& W0 = base_weights.at(q + ".weight");
    const auto& W1 = merged.at(q + ".weight");
    for (int64_t o = 0; o < 64; o += 7) {
      for (int64_t i = 0; i < 64; i += 5) {
        double d = 0;
        for (int64_t k = 0; k < 4; ++k) d += B[o * 4 + k] * A[k * 64 + i];
        const double want = W0[o * 64 + i] + lora.scale * d;
        EXPECT_NEAR(W1[o * 64 + i], want,
                    dtype == DType::f32 ? 1e-6 : 4e-3 * std::abs(want) + 1e-6);
      }
    }
    // The merged base alone (adapters now off) gives the adapter model's loss.
    const double after = net.forward_loss(batch).loss_sum;
    EXPECT_NEAR(after, with_adapter, (dtype == DType::f32 ? 1e-5 : 2e-2) * with_adapter)
        << seqit::tensor::dtype_name(dtype);
    TrainNetwork fresh(*model, {.lora = true, .lora_spec = options.lora_spec});
    EXPECT_NEAR(fresh.forward_loss(batch).loss_sum, after, 1e-6 * after);
  }
}

// ---- 6. the real model --------------------------------------------------------------------------

TEST(TrainNetwork, Stories260KLossEqualsTheCrossEntropyOfInferenceLogits) {
  auto model = LlamaModel::load(seqit::testing::shared_data("models/stories260K/stories260K.bin"));
  ASSERT_TRUE(model->config().tie_word_embeddings);
  const std::vector<int32_t> story = {1,   403, 407, 261, 378, 430, 289, 266, 360,
                                      263, 275, 281, 296, 400, 261, 378, 289};
  const auto T = static_cast<int64_t>(story.size() - 1);
  TrainBatch b;
  b.batch = 1, b.seq_len = T;
  b.tokens.assign(story.begin(), story.end() - 1);
  b.targets.assign(story.begin() + 1, story.end());
  b.targets[2] = -100;                                      // and one ignored target
  const Tensor logits = model->forward_sequence(b.tokens);  // [T, V]
  double want = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (b.targets[t] == -100) continue;
    const std::vector<float> row = values(logits.narrow(0, t, 1));
    const double mx = *std::max_element(row.begin(), row.end());
    double z = 0;
    for (float x : row) z += std::exp(x - mx);
    want += mx + std::log(z) - row[static_cast<size_t>(b.targets[t])];
  }
  TrainNetwork net(*model, {});
  const auto r = net.forward_loss(b);
  EXPECT_EQ(r.tokens, T - 1);
  // Same weights, same ops (the inference pass through the full causal attention op): f32 rounding.
  EXPECT_NEAR(r.loss_sum, want, 1e-5 * want);
  const auto rb = net.forward_backward(b, 1.0f / static_cast<float>(r.tokens));
  EXPECT_EQ(rb.loss_sum, r.loss_sum);
  EXPECT_TRUE(all_finite(values(param(net, "model.embed_tokens.weight").grad)));
  std::printf("[ stories  ] loss %.9g, from forward_sequence logits %.9g\n", r.loss_sum, want);
}

TEST(TrainNetwork, BadBatchesAndModelsAreClearErrors) {
  auto model = tiny_model(tiny_config(false, false));
  TrainNetwork net(*model, {});
  TrainBatch b = standard_batch();
  b.targets.pop_back();
  EXPECT_THROW(net.forward_loss(b), seqit::Error);
  b = standard_batch();
  b.targets[5] = 128;
  EXPECT_THROW(net.forward_backward(b, 1.0f), seqit::Error);
  b = standard_batch();
  b.tokens[5] = -1;
  EXPECT_THROW(net.forward_backward(b, 1.0f), seqit::Error);
  auto bf16 = tiny_model(tiny_config(false, false), 7, DType::bf16);
  EXPECT_THROW(TrainNetwork(*bf16, {}), seqit::Error);  // full fine-tuning needs f32 weights
  TrainOptions bad;
  bad.lora = true;
  bad.lora_spec.targets = {"q", "lm_head"};
  EXPECT_THROW(TrainNetwork(*model, bad), seqit::Error);
}
