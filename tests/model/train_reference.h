// An independent fp64 training loss of a Llama-family network for gradient checks: plain loops over
// weights held under their HF names (unfused), packed rows (segment-blocked causal attention,
// positions restarting per example), GQA, RoPE in the half layout, optional q/k/v/o biases, tied or
// untied head, LoRA adapters (dropout 0), and the token-sum cross-entropy over targets != -100.
// It shares no code with model/ or tensor/, so central finite differences of it check the analytic
// backward of TrainNetwork.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace seqit::testing {

struct RefShape {
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0,
          vocab = 0;
  double eps = 1e-5, theta = 10000;
  bool tied = false;
};

struct RefBatch {
  int64_t batch = 0, seq_len = 0;
  std::vector<int32_t> tokens, targets, positions, segment_ids;  // segment_ids may be empty
};

using RefParams = std::map<std::string, std::vector<double>>;

struct RefLora {
  double scale = 1;
  int64_t rank = 0;
  // module name ("model.layers.0.self_attn.q_proj") -> lora_A [r, in], lora_B [out, r]
  std::map<std::string, std::pair<std::vector<double>, std::vector<double>>> adapters;
};

// Σ over tokens with target != -100 of -log softmax(logits)[target].
inline double reference_train_loss(const RefShape& s, const RefParams& p, const RefBatch& batch,
                                   const RefLora* lora = nullptr) {
  using V = std::vector<double>;
  auto get = [&](const std::string& name) -> const V& {
    auto it = p.find(name);
    if (it == p.end()) throw std::runtime_error("reference: no weight " + name);
    return it->second;
  };
  auto find = [&](const std::string& name) -> const V* {
    auto it = p.find(name);
    return it == p.end() ? nullptr : &it->second;
  };
  const int64_t C = s.hidden, F = s.intermediate, D = s.head_dim, Hq = s.heads, Hkv = s.kv_heads,
                T = batch.seq_len;
  const int64_t qd = Hq * D, kvd = Hkv * D;
  // y[out] = W x (+ b) (+ scale · B A x) for module `mod` ("model.layers.0.self_attn.q_proj").
  auto project = [&](const std::string& mod, const V& x, int64_t out) {
    const V& w = get(mod + ".weight");
    const V* b = find(mod + ".bias");
    const int64_t in = static_cast<int64_t>(x.size());
    V y(static_cast<size_t>(out));
    for (int64_t o = 0; o < out; ++o) {
      double acc = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) acc += w[o * in + i] * x[i];
      y[o] = acc;
    }
    if (lora) {
      auto it = lora->adapters.find(mod);
      if (it != lora->adapters.end()) {
        const V &A = it->second.first, &B = it->second.second;
        V ax(static_cast<size_t>(lora->rank), 0.0);
        for (int64_t r = 0; r < lora->rank; ++r)
          for (int64_t i = 0; i < in; ++i) ax[r] += A[r * in + i] * x[i];
        for (int64_t o = 0; o < out; ++o)
          for (int64_t r = 0; r < lora->rank; ++r)
            y[o] += lora->scale * B[o * lora->rank + r] * ax[r];
      }
    }
    return y;
  };
  auto rmsnorm = [&](const V& x, const V& w) {
    double ss = 0;
    for (double a : x) ss += a * a;
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + s.eps);
    V y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
    return y;
  };
  auto rope = [&](V& v, int64_t heads, int32_t pos) {
    for (int64_t h = 0; h < heads; ++h)
      for (int64_t i = 0; i < D / 2; ++i) {
        const double angle =
            pos * std::pow(s.theta, -2.0 * static_cast<double>(i) / static_cast<double>(D));
        const double c = std::cos(angle), sn = std::sin(angle);
        double& a = v[h * D + i];
        double& b = v[h * D + i + D / 2];
        const double va = a, vb = b;
        a = va * c - vb * sn;
        b = vb * c + va * sn;
      }
  };
  const V& embed = get("model.embed_tokens.weight");
  const V& head = s.tied ? embed : get("lm_head.weight");
  double loss = 0;
  for (int64_t row = 0; row < batch.batch; ++row) {
    auto at = [&](const std::vector<int32_t>& v, int64_t t) {
      return v[static_cast<size_t>(row * T + t)];
    };
    auto visible = [&](int64_t t, int64_t u) {
      return u <= t &&
             (batch.segment_ids.empty() || at(batch.segment_ids, u) == at(batch.segment_ids, t));
    };
    std::vector<V> x(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t)
      x[t] =
          V(embed.begin() + at(batch.tokens, t) * C, embed.begin() + (at(batch.tokens, t) + 1) * C);
    for (int64_t l = 0; l < s.layers; ++l) {
      const std::string pre = "model.layers." + std::to_string(l) + ".";
      std::vector<V> q(T), k(T), v(T);
      for (int64_t t = 0; t < T; ++t) {
        const V h = rmsnorm(x[t], get(pre + "input_layernorm.weight"));
        q[t] = project(pre + "self_attn.q_proj", h, qd);
        k[t] = project(pre + "self_attn.k_proj", h, kvd);
        v[t] = project(pre + "self_attn.v_proj", h, kvd);
        rope(q[t], Hq, at(batch.positions, t));
        rope(k[t], Hkv, at(batch.positions, t));
      }
      for (int64_t t = 0; t < T; ++t) {
        V attn(static_cast<size_t>(qd), 0.0);
        for (int64_t h = 0; h < Hq; ++h) {
          const int64_t kh = h / (Hq / Hkv);
          V score(static_cast<size_t>(T), 0.0);
          double mx = -1e300;
          for (int64_t u = 0; u < T; ++u) {
            if (!visible(t, u)) continue;
            double d = 0;
            for (int64_t i = 0; i < D; ++i) d += q[t][h * D + i] * k[u][kh * D + i];
            score[u] = d / std::sqrt(static_cast<double>(D));
            mx = std::max(mx, score[u]);
          }
          double z = 0;
          for (int64_t u = 0; u < T; ++u)
            if (visible(t, u)) z += (score[u] = std::exp(score[u] - mx));
          for (int64_t u = 0; u < T; ++u)
            if (visible(t, u))
              for (int64_t i = 0; i < D; ++i) attn[h * D + i] += score[u] / z * v[u][kh * D + i];
        }
        const V o = project(pre + "self_attn.o_proj", attn, C);
        for (int64_t i = 0; i < C; ++i) x[t][i] += o[i];
      }
      for (int64_t t = 0; t < T; ++t) {
        const V h = rmsnorm(x[t], get(pre + "post_attention_layernorm.weight"));
        V g = project(pre + "mlp.gate_proj", h, F);
        const V u = project(pre + "mlp.up_proj", h, F);
        for (int64_t i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        const V d = project(pre + "mlp.down_proj", g, C);
        for (int64_t i = 0; i < C; ++i) x[t][i] += d[i];
      }
    }
    for (int64_t t = 0; t < T; ++t) {
      const int32_t target = at(batch.targets, t);
      if (target == -100) continue;
      const V h = rmsnorm(x[t], get("model.norm.weight"));
      V logits(static_cast<size_t>(s.vocab));
      double mx = -1e300;
      for (int64_t o = 0; o < s.vocab; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < C; ++i) acc += head[o * C + i] * h[i];
        logits[o] = acc;
        mx = std::max(mx, acc);
      }
      double z = 0;
      for (double lg : logits) z += std::exp(lg - mx);
      loss += mx + std::log(z) - logits[target];
    }
  }
  return loss;
}

}  // namespace seqit::testing
