#include "infer/scoring.h"

#include <fmt/format.h>

#include <algorithm>
#include <optional>

#include "util/error.h"

namespace seqit::infer {
using tensor::Tensor;

std::vector<ScoreResult> score_continuations(const model::LlamaModel& model,
                                             std::span<const ScoreRequest> requests,
                                             const ScoreOptions& options) {
  const model::ModelConfig& c = model.config();
  const int64_t V = c.vocab_size;
  const int64_t budget = std::max<int64_t>(options.max_step_tokens, 1);
  // Logits of one step stay under ~128 MB however large the vocabulary.
  const int64_t max_rows = std::max<int64_t>(1, (int64_t{32} << 20) / V);

  struct Job {
    size_t index;
    std::vector<int32_t> tokens;  // context + continuation
    int64_t first_target;         // position whose logits predict the first continuation token
    std::optional<model::KvCache> cache;
  };
  std::vector<Job> jobs;
  for (size_t i = 0; i < requests.size(); ++i) {
    const ScoreRequest& r = requests[i];
    if (r.context.empty() || r.continuation.empty()) {
      throw Error(
          fmt::format("score request {}: context and continuation must both be non-empty", i));
    }
    Job j{i, r.context, static_cast<int64_t>(r.context.size()) - 1, std::nullopt};
    j.tokens.insert(j.tokens.end(), r.continuation.begin(), r.continuation.end());
    for (int32_t id : j.tokens) {
      if (id < 0 || id >= V)
        throw Error(
            fmt::format("score request {}: token id {} is outside the vocabulary of {}", i, id, V));
    }
    jobs.push_back(std::move(j));
  }
  std::vector<ScoreResult> results(requests.size());
  model::ForwardWorkspace ws;
  size_t next_job = 0;
  std::vector<Job*> active;
  // The last token of a request predicts nothing we score, so it is never fed.
  auto fed_total = [](const Job& j) { return static_cast<int64_t>(j.tokens.size()) - 1; };
  while (next_job < jobs.size() || !active.empty()) {
    // Fill the step: continue active requests, then start new ones, within the token and row
    // budgets.
    model::ForwardBatch batch;
    std::vector<std::pair<Job*, int64_t>> row_owner;  // (job, position) of each logits row
    int64_t tokens_left = budget, rows_left = max_rows;
    std::vector<Job*> stepping;
    auto schedule = [&](Job& j) {
      if (!j.cache) {
        j.cache = model.new_cache(static_cast<int64_t>(j.tokens.size()));
        if (static_cast<int64_t>(j.tokens.size()) > j.cache->max_length()) {
          throw Error(fmt::format("score request {}: {} tokens exceed the model's context of {}",
                                  j.index, j.tokens.size(), j.cache->max_length()));
        }
      }
      int64_t start = j.cache->length();
      int64_t n = std::min(fed_total(j) - start, tokens_left);
      // Positions >= first_target produce logits; keep their count within the row budget.
      int64_t scored_from = std::max(start, j.first_target);
      if (start + n > scored_from) n = std::min(n, scored_from - start + rows_left);
      if (n <= 0) return false;
      for (int64_t p = start; p < start + n; ++p) {
        batch.tokens.push_back(j.tokens[p]);
        if (p >= j.first_target) {
          batch.logit_rows.push_back(static_cast<int32_t>(batch.tokens.size() - 1));
          row_owner.emplace_back(&j, p);
        }
      }
      batch.chunks.push_back({&*j.cache, n});
      tokens_left -= n;
      rows_left -= std::max<int64_t>(0, start + n - scored_from);
      stepping.push_back(&j);
      return true;
    };
    for (Job* j : active) {
      if (tokens_left <= 0 || rows_left <= 0) break;
      schedule(*j);
    }
    while (next_job < jobs.size() && tokens_left > 0 && rows_left > 0) {
      Job& j = jobs[next_job];
      if (!schedule(j)) break;
      active.push_back(&j);
      ++next_job;
    }
    if (batch.tokens.empty()) throw Error("scoring made no progress (token budget too small)");
    const auto R = static_cast<int64_t>(batch.logit_rows.size());
    Tensor logits = Tensor::empty({R, V}, tensor::DType::f32);
    model.forward(batch, logits, ws);
    if (R > 0) {
      std::vector<int32_t> targets(static_cast<size_t>(R));
      for (int64_t r = 0; r < R; ++r)
        targets[r] = row_owner[r].first->tokens[row_owner[r].second + 1];
      Tensor target_t = Tensor::from_ints(targets, {R});
      Tensor logprobs = Tensor::empty({R}, tensor::DType::f32);
      tensor::token_logprobs(logprobs, logits, target_t);
      const float* lp = logprobs.data<float>();
      for (int64_t r = 0; r < R; ++r) {
        Job& j = *row_owner[r].first;
        ScoreResult& res = results[j.index];
        res.token_logprobs.push_back(lp[r]);
        res.logprob += lp[r];
        const float* row = logits.narrow(0, r, 1).data<float>();
        // Greedy when no other token scores strictly higher than the target.
        const float target_logit = row[targets[r]];
        if (std::any_of(row, row + V, [&](float x) { return x > target_logit; }))
          res.is_greedy = false;
      }
    }
    // Requests fed completely leave; their caches are freed.
    active.erase(std::remove_if(active.begin(), active.end(),
                                [&](Job* j) {
                                  if (j->cache->length() < fed_total(*j)) return false;
                                  j->cache.reset();
                                  return true;
                                }),
                 active.end());
  }
  return results;
}

}  // namespace seqit::infer
