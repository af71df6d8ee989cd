#include "infer/scoring.h"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "util/error.h"

namespace seqit::infer {
using tensor::Tensor;

namespace {

// One sequence to run through a cache: positions [cache->length(), feed_end) are fed; the logits
// of positions >= first_target are scored against the next token into `result`.
struct Job {
  model::KvCache* cache;
  std::vector<int32_t> tokens;
  int64_t feed_end;
  int64_t first_target;
  ScoreResult* result;                               // null: nothing scored (a shared prompt)
  std::optional<model::KvCache>* release = nullptr;  // freed when the job is done (its last use)
};

// Runs every job to its end, packing chunks of several jobs into each forward pass: at most
// `budget` tokens and `max_rows` logit rows per pass.
void run_jobs(const model::LlamaModel& model, std::vector<Job>& jobs, int64_t budget,
              int64_t max_rows, model::ForwardWorkspace& ws) {
  const int64_t V = model.config().vocab_size;
  size_t next_job = 0;
  std::vector<Job*> active;
  while (next_job < jobs.size() || !active.empty()) {
    // One forward pass: continue active jobs, then admit new ones while the token budget and the
    // logits-row budget last.
    model::ForwardBatch batch;
    std::vector<std::pair<Job*, int64_t>> row_owner;  // (job, position) of each logits row
    int64_t tokens_left = budget, rows_left = max_rows;
    auto schedule = [&](Job& j) {
      const int64_t start = j.cache->length();
      int64_t n = std::min(j.feed_end - start, tokens_left);
      // Cap the rows that need logits (positions >= first_target).
      const int64_t scored_from = std::max(start, j.first_target);
      if (start + n > scored_from) n = std::min(n, scored_from - start + rows_left);
      if (n <= 0) return false;
      for (int64_t p = start; p < start + n; ++p) {
        batch.tokens.push_back(j.tokens[p]);
        if (p >= j.first_target) {
          batch.logit_rows.push_back(static_cast<int32_t>(batch.tokens.size() - 1));
          row_owner.emplace_back(&j, p);
        }
      }
      batch.chunks.push_back({j.cache, n});
      tokens_left -= n;
      rows_left -= std::max<int64_t>(0, start + n - scored_from);
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
        ScoreResult& res = *row_owner[r].first->result;
        res.token_logprobs.push_back(lp[r]);
        res.logprob += lp[r];
        const float* row = logits.narrow(0, r, 1).data<float>();
        // Greedy: no token has a strictly higher logit than the target.
        const float target_logit = row[targets[r]];
        if (std::any_of(row, row + V, [&](float x) { return x > target_logit; }))
          res.is_greedy = false;
      }
    }
    active.erase(std::remove_if(active.begin(), active.end(),
                                [](Job* j) {
                                  if (j->cache->length() < j->feed_end) return false;
                                  if (j->release) j->release->reset();
                                  return true;
                                }),
                 active.end());
  }
}

}  // namespace

std::vector<std::vector<ScoreResult>> score_groups(const model::LlamaModel& model,
                                                   std::span<const ScoreGroup> groups,
                                                   const ScoreOptions& options) {
  const int64_t V = model.config().vocab_size;
  const int64_t budget = std::max<int64_t>(options.max_step_tokens, 1);
  // Logit rows per forward pass: at most 32M floats of logits (128 MB).
  const int64_t max_rows = std::max<int64_t>(1, (int64_t{32} << 20) / V);
  // Requests are named by their index when every group holds one (score_continuations).
  const bool single = std::all_of(groups.begin(), groups.end(),
                                  [](const ScoreGroup& g) { return g.requests.size() <= 1; });
  auto name = [&](size_t g, size_t i) {
    return single ? fmt::format("score request {}", g)
                  : fmt::format("score group {} request {}", g, i);
  };
  auto check_ids = [&](const std::vector<int32_t>& ids, const std::string& what) {
    for (int32_t id : ids)
      if (id < 0 || id >= V)
        throw Error(fmt::format("{}: token id {} is outside the vocabulary of {}", what, id, V));
  };
  std::vector<std::optional<model::KvCache>> caches(groups.size());
  size_t rounds = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    check_ids(groups[g].shared, fmt::format("score group {} (shared context)", g));
    size_t longest = 0, longest_index = 0;
    for (size_t i = 0; i < groups[g].requests.size(); ++i) {
      const ScoreRequest& r = groups[g].requests[i];
      if (r.context.empty() || r.continuation.empty())
        throw Error(fmt::format("{}: context and continuation must both be non-empty", name(g, i)));
      check_ids(r.context, name(g, i));
      check_ids(r.continuation, name(g, i));
      if (r.context.size() + r.continuation.size() > longest)
        longest = r.context.size() + r.continuation.size(), longest_index = i;
    }
    rounds = std::max(rounds, groups[g].requests.size());
    if (groups[g].requests.empty()) continue;
    const auto length = static_cast<int64_t>(groups[g].shared.size() + longest);
    caches[g] = model.new_cache(length);
    if (length > caches[g]->max_length())
      throw Error(fmt::format("{}: {} tokens exceed the model's context of {}",
                              name(g, longest_index), length, caches[g]->max_length()));
  }
  std::vector<std::vector<ScoreResult>> results(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) results[g].resize(groups[g].requests.size());
  model::ForwardWorkspace ws;
  constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
  // The shared prompts, packed together; no logits.
  std::vector<Job> jobs;
  for (size_t g = 0; g < groups.size(); ++g)
    if (caches[g] && !groups[g].shared.empty())
      jobs.push_back({&*caches[g], groups[g].shared, static_cast<int64_t>(groups[g].shared.size()),
                      kNever, nullptr});
  run_jobs(model, jobs, budget, max_rows, ws);
  // Round k: request k of every group that has one, each from its group's shared prompt.
  for (size_t k = 0; k < rounds; ++k) {
    jobs.clear();
    for (size_t g = 0; g < groups.size(); ++g) {
      if (k >= groups[g].requests.size()) continue;
      const ScoreRequest& r = groups[g].requests[k];
      const auto S = static_cast<int64_t>(groups[g].shared.size());
      // The group's last request frees its cache as soon as it is done.
      Job j{&*caches[g],
            groups[g].shared,
            0,
            S + static_cast<int64_t>(r.context.size()) - 1,
            &results[g][k],
            k + 1 == groups[g].requests.size() ? &caches[g] : nullptr};
      j.tokens.insert(j.tokens.end(), r.context.begin(), r.context.end());
      j.tokens.insert(j.tokens.end(), r.continuation.begin(), r.continuation.end());
      j.feed_end = static_cast<int64_t>(j.tokens.size()) - 1;
      jobs.push_back(std::move(j));
    }
    run_jobs(model, jobs, budget, max_rows, ws);
    for (size_t g = 0; g < groups.size(); ++g)
      if (caches[g]) caches[g]->truncate(static_cast<int64_t>(groups[g].shared.size()));
  }
  return results;
}

std::vector<ScoreResult> score_continuations(const model::LlamaModel& model,
                                             std::span<const ScoreRequest> requests,
                                             const ScoreOptions& options) {
  // One group per request: nothing shared, every request in the first round together.
  std::vector<ScoreGroup> groups(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) groups[i].requests = {requests[i]};
  std::vector<std::vector<ScoreResult>> grouped = score_groups(model, groups, options);
  std::vector<ScoreResult> out;
  out.reserve(grouped.size());
  for (auto& g : grouped) out.push_back(std::move(g.at(0)));
  return out;
}

}  // namespace seqit::infer
