// An independent Llama forward for tests: plain loops in fp64, weights read straight from the file
// bytes (GGUF via util's reader, llama2.c from the raw .bin), RoPE applied in the file's own
// interleaved layout — no code shared with model/ beyond the GGUF container parser.
#pragma once

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "util/gguf.h"

namespace seqit::testing {

struct ReferenceLlama {
  int64_t dim = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, vocab = 0;
  double eps = 1e-5, theta = 10000;
  bool interleaved = true;  // RoPE pairs (2i, 2i+1); false: (i, i + D/2)
  // Row-major [out][in] matrices, as stored.
  std::vector<double> embedding, final_norm, head;
  struct Layer {
    std::vector<double> attn_norm, wq, wk, wv, wo, ffn_norm, w1, w2, w3;
  };
  std::vector<Layer> layer;

  // Logits [T][vocab] for every position of `tokens`.
  std::vector<std::vector<double>> logits(const std::vector<int>& tokens) const {
    const int64_t D = dim / heads, T = static_cast<int64_t>(tokens.size()), kvd = kv_heads * D;
    std::vector<std::vector<double>> x(T, std::vector<double>(dim));
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t i = 0; i < dim; ++i) x[t][i] = embedding[tokens[t] * dim + i];
    }
    auto rmsnorm = [&](const std::vector<double>& v, const std::vector<double>& w) {
      double ss = 0;
      for (double a : v) ss += a * a;
      double r = 1.0 / std::sqrt(ss / v.size() + eps);
      std::vector<double> out(v.size());
      for (size_t i = 0; i < v.size(); ++i) out[i] = v[i] * r * w[i];
      return out;
    };
    auto matvec = [](const std::vector<double>& m, const std::vector<double>& v, int64_t rows) {
      std::vector<double> out(rows, 0.0);
      const int64_t cols = static_cast<int64_t>(v.size());
      for (int64_t r = 0; r < rows; ++r) {
        double s = 0;
        for (int64_t c = 0; c < cols; ++c) s += m[r * cols + c] * v[c];
        out[r] = s;
      }
      return out;
    };
    auto rope = [&](std::vector<double>& v, int64_t n_heads, int64_t pos) {
      for (int64_t h = 0; h < n_heads; ++h) {
        for (int64_t i = 0; i < D / 2; ++i) {
          double freq = std::pow(theta, -2.0 * i / D);
          double c = std::cos(pos * freq), s = std::sin(pos * freq);
          int64_t a = interleaved ? h * D + 2 * i : h * D + i;
          int64_t b = interleaved ? a + 1 : a + D / 2;
          double va = v[a], vb = v[b];
          v[a] = va * c - vb * s;
          v[b] = va * s + vb * c;
        }
      }
    };
    for (const Layer& L : layer) {
      std::vector<std::vector<double>> q(T), k(T), v(T);
      for (int64_t t = 0; t < T; ++t) {
        auto h = rmsnorm(x[t], L.attn_norm);
        q[t] = matvec(L.wq, h, dim);
        k[t] = matvec(L.wk, h, kvd);
        v[t] = matvec(L.wv, h, kvd);
        rope(q[t], heads, t);
        rope(k[t], kv_heads, t);
      }
      for (int64_t t = 0; t < T; ++t) {
        std::vector<double> att(dim, 0.0);
        for (int64_t h = 0; h < heads; ++h) {
          int64_t kh = h / (heads / kv_heads);
          std::vector<double> score(t + 1);
          double mx = -1e300;
          for (int64_t s = 0; s <= t; ++s) {
            double d = 0;
            for (int64_t i = 0; i < D; ++i) d += q[t][h * D + i] * k[s][kh * D + i];
            score[s] = d / std::sqrt(static_cast<double>(D));
            mx = std::max(mx, score[s]);
          }
          double z = 0;
          for (double& sc : score) z += (sc = std::exp(sc - mx));
          for (int64_t s = 0; s <= t; ++s) {
            for (int64_t i = 0; i < D; ++i) att[h * D + i] += score[s] / z * v[s][kh * D + i];
          }
        }
        auto o = matvec(L.wo, att, dim);
        for (int64_t i = 0; i < dim; ++i) x[t][i] += o[i];
        auto h2 = rmsnorm(x[t], L.ffn_norm);
        auto g = matvec(L.w1, h2, hidden), u = matvec(L.w3, h2, hidden);
        for (int64_t i = 0; i < hidden; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        auto d = matvec(L.w2, g, dim);
        for (int64_t i = 0; i < dim; ++i) x[t][i] += d[i];
      }
    }
    std::vector<std::vector<double>> out(T);
    for (int64_t t = 0; t < T; ++t) out[t] = matvec(head, rmsnorm(x[t], final_norm), vocab);
    return out;
  }

  // llama2.c legacy .bin: header of 7 int32, then fp32 blocks (see llama2.c run.c).
  static ReferenceLlama from_llama2c(const std::string& bytes) {
    ReferenceLlama m;
    int32_t h[7];
    std::memcpy(h, bytes.data(), sizeof(h));
    m.dim = h[0], m.hidden = h[1], m.layers = h[2], m.heads = h[3], m.kv_heads = h[4],
    m.vocab = std::abs(h[5]);
    bool shared = h[5] > 0;
    int64_t seq_len = h[6], D = m.dim / m.heads, kvd = m.kv_heads * D;
    size_t at = sizeof(h);
    auto take = [&](int64_t n) {
      std::vector<double> v(n);
      for (int64_t i = 0; i < n; ++i) {
        float f;
        std::memcpy(&f, bytes.data() + at + 4 * i, 4);
        v[i] = f;
      }
      at += 4 * n;
      return v;
    };
    m.embedding = take(m.vocab * m.dim);
    m.layer.resize(m.layers);
    for (auto& L : m.layer) L.attn_norm = take(m.dim);
    for (auto& L : m.layer) L.wq = take(m.dim * m.dim);
    for (auto& L : m.layer) L.wk = take(kvd * m.dim);
    for (auto& L : m.layer) L.wv = take(kvd * m.dim);
    for (auto& L : m.layer) L.wo = take(m.dim * m.dim);
    for (auto& L : m.layer) L.ffn_norm = take(m.dim);
    for (auto& L : m.layer) L.w1 = take(m.hidden * m.dim);
    for (auto& L : m.layer) L.w2 = take(m.dim * m.hidden);
    for (auto& L : m.layer) L.w3 = take(m.hidden * m.dim);
    m.final_norm = take(m.dim);
    at += 4 * seq_len * D;  // freq_cis_real, freq_cis_imag
    m.head = shared ? m.embedding : take(m.vocab * m.dim);
    return m;
  }

  // GGUF "llama" file with F32/F16 tensors (f16 decoded by the compiler's _Float16).
  static ReferenceLlama from_gguf(const std::filesystem::path& path) {
    auto f = gguf::File::open(path);
    ReferenceLlama m;
    m.dim = f->get_int("llama.embedding_length");
    m.hidden = f->get_int("llama.feed_forward_length");
    m.layers = f->get_int("llama.block_count");
    m.heads = f->get_int("llama.attention.head_count");
    m.kv_heads = f->has("llama.attention.head_count_kv")
                     ? f->get_int("llama.attention.head_count_kv")
                     : m.heads;
    m.eps = f->get_double("llama.attention.layer_norm_rms_epsilon");
    m.theta = f->has("llama.rope.freq_base") ? f->get_double("llama.rope.freq_base") : 10000.0;
    auto get = [&](const std::string& name) {
      const gguf::TensorInfo* t = f->tensor(name);
      if (!t) throw std::runtime_error("missing " + name);
      std::vector<double> v(t->elements());
      for (int64_t i = 0; i < t->elements(); ++i) {
        if (t->type == 0) {
          float x;
          std::memcpy(&x, t->data + 4 * i, 4);
          v[i] = x;
        } else if (t->type == 1) {
          _Float16 x;
          std::memcpy(&x, t->data + 2 * i, 2);
          v[i] = static_cast<double>(x);
        } else {
          throw std::runtime_error("reference reads F32/F16 only: " + name);
        }
      }
      return v;
    };
    m.embedding = get("token_embd.weight");
    m.vocab = static_cast<int64_t>(m.embedding.size()) / m.dim;
    m.final_norm = get("output_norm.weight");
    m.head = f->tensor("output.weight") ? get("output.weight") : m.embedding;
    m.layer.resize(m.layers);
    for (int64_t l = 0; l < m.layers; ++l) {
      std::string p = "blk." + std::to_string(l) + ".";
      auto& L = m.layer[l];
      L.attn_norm = get(p + "attn_norm.weight");
      L.wq = get(p + "attn_q.weight");
      L.wk = get(p + "attn_k.weight");
      L.wv = get(p + "attn_v.weight");
      L.wo = get(p + "attn_output.weight");
      L.ffn_norm = get(p + "ffn_norm.weight");
      L.w1 = get(p + "ffn_gate.weight");
      L.w2 = get(p + "ffn_down.weight");
      L.w3 = get(p + "ffn_up.weight");
    }
    return m;
  }
};

}  // namespace seqit::testing
