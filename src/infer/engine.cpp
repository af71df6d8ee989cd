#include "infer/engine.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>

#include "util/error.h"

namespace seqit::infer {
using tensor::Tensor;

std::string_view finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::none:
      return "none";
    case FinishReason::length:
      return "length";
    case FinishReason::stop_token:
      return "stop";
    case FinishReason::stop_string:
      return "stop";
    case FinishReason::context_full:
      return "length";
    case FinishReason::cancelled:
      return "cancelled";
    case FinishReason::dead_end:
      return "stop";
  }
  return "?";
}

struct Engine::Sequence {
  RequestId id;
  GenerationRequest request;
  model::KvCache cache;
  std::vector<TokenId> tokens;  // prompt + generated
  int64_t prompt_length;
  Sampler sampler;
  std::optional<TextStream> stream;
  GenerationResult result;
  bool cancelled = false;
  int32_t constraint_state = 0;  // the constraint automaton's state after the generated text

  Sequence(RequestId id_, GenerationRequest req, model::KvCache cache_)
      : id(id_),
        request(std::move(req)),
        cache(std::move(cache_)),
        tokens(request.prompt),
        prompt_length(static_cast<int64_t>(request.prompt.size())),
        sampler(request.sampling) {
    result.id = id;
    result.prompt_tokens = prompt_length;
  }
  // Tokens not yet in the cache: the rest of the prompt, or the last sampled token.
  int64_t unfed() const { return static_cast<int64_t>(tokens.size()) - cache.length(); }
};

Engine::Engine(const model::LlamaModel& model, const tokenizer::Tokenizer* tokenizer,
               EngineOptions options)
    : model_(model), tokenizer_(tokenizer), options_(options) {
  if (options_.max_batch < 1) throw Error("engine: max_batch must be at least 1");
  if (options_.max_step_tokens < options_.max_batch) options_.max_step_tokens = options_.max_batch;
  eos_ids_ = model.config().eos_token_ids;
  if (tokenizer_) {
    if (auto eos = tokenizer_->eos_id();
        eos && std::find(eos_ids_.begin(), eos_ids_.end(), *eos) == eos_ids_.end()) {
      eos_ids_.push_back(*eos);
    }
  }
}

Engine::~Engine() = default;

RequestId Engine::add(GenerationRequest request) {
  const model::ModelConfig& c = model_.config();
  if (request.prompt.empty())
    throw Error("generation needs a prompt of at least one token (e.g. BOS)");
  for (TokenId id : request.prompt) {
    if (id < 0 || id >= c.vocab_size) {
      throw Error(fmt::format("prompt token id {} is outside the model's vocabulary of {}", id,
                              c.vocab_size));
    }
  }
  model::KvCache cache = model_.new_cache(options_.max_context);
  if (static_cast<int64_t>(request.prompt.size()) >= cache.max_length()) {
    throw Error(
        fmt::format("the prompt has {} tokens; the context holds {}, leaving no room to generate",
                    request.prompt.size(), cache.max_length()));
  }
  if (!tokenizer_ && !request.stop.stop_strings.empty())
    throw Error("stop strings need a tokenizer");
  if (request.stop.max_new_tokens < 1) throw Error("max new tokens must be at least 1");
  if (request.top_logprobs < 0 || request.top_logprobs > 20)
    throw Error("top_logprobs must be from 0 to 20");
  if (request.constraint) {
    if (!tokenizer_) throw Error("constrained decoding needs a tokenizer");
    if (!trie_) trie_ = std::make_unique<TokenTrie>(*tokenizer_);
  }
  RequestId id = next_id_++;
  auto seq = std::make_unique<Sequence>(id, std::move(request), std::move(cache));
  if (tokenizer_) {
    bool at_start = seq->request.text_standalone;
    if (!at_start) {
      // The reply starts a text when the prompt has no text of its own (e.g. only BOS).
      at_start = std::all_of(seq->request.prompt.begin(), seq->request.prompt.end(),
                             [&](TokenId t) { return tokenizer_->is_special(t); });
    }
    seq->stream.emplace(*tokenizer_, seq->request.stop.stop_strings, at_start);
  }
  waiting_.push_back(std::move(seq));
  return id;
}

void Engine::cancel(RequestId id) {
  for (auto& s : waiting_) {
    if (s->id == id) s->cancelled = true;
  }
  for (auto& s : running_) {
    if (s->id == id) s->cancelled = true;
  }
}

bool Engine::idle() const {
  return waiting_.empty() && running_.empty();
}

void Engine::finish(Sequence& s, FinishReason reason, StepEvent& event) {
  if (s.stream) {
    std::string tail = s.stream->finish();
    if (!tail.empty()) {
      event.text += tail;
      if (s.request.on_text) s.request.on_text(tail);
    }
    s.result.text = s.stream->text();
    s.result.stop_string = s.stream->stop_string();
  }
  s.result.finish = reason;
  event.finished = true;
  event.result = s.result;
}

std::vector<StepEvent> Engine::step() {
  std::vector<StepEvent> events;
  auto event_for = [&](Sequence& s) -> StepEvent& {
    for (StepEvent& e : events) {
      if (e.id == s.id) return e;
    }
    events.push_back(StepEvent{});
    events.back().id = s.id;
    return events.back();
  };
  // Cancelled requests leave first, so their places can be taken this step.
  auto drop_cancelled = [&](auto& container) {
    for (auto it = container.begin(); it != container.end();) {
      if ((*it)->cancelled) {
        finish(**it, FinishReason::cancelled, event_for(**it));
        it = container.erase(it);
      } else {
        ++it;
      }
    }
  };
  drop_cancelled(waiting_);
  drop_cancelled(running_);
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_batch) {
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
  if (running_.empty()) return events;

  // Decoding sequences feed their one new token; prefilling ones share the remaining token budget.
  model::ForwardBatch batch;
  std::vector<Sequence*> sampled;  // sequences whose last fed token yields logits this step
  int64_t budget = options_.max_step_tokens;
  for (auto& s : running_) budget -= s->unfed() == 1 ? 1 : 0;
  for (auto& sp : running_) {
    Sequence& s = *sp;
    int64_t n = s.unfed();
    if (n > 1) {  // prefilling: a chunk of what the step has left
      n = std::min(n, std::max<int64_t>(budget, 0));
      budget -= n;
    }
    if (n <= 0) continue;
    int64_t first = s.cache.length();
    batch.tokens.insert(batch.tokens.end(), s.tokens.begin() + first, s.tokens.begin() + first + n);
    batch.chunks.push_back({&s.cache, n});
    if (first + n == static_cast<int64_t>(s.tokens.size())) {
      batch.logit_rows.push_back(static_cast<int32_t>(batch.tokens.size() - 1));
      sampled.push_back(&s);
    }
  }
  const int64_t V = model_.config().vocab_size;
  const auto R = static_cast<int64_t>(batch.logit_rows.size());
  if (!logits_.defined() || logits_.size(0) < R)
    logits_ = Tensor::empty({std::max<int64_t>(R, 1), V}, tensor::DType::f32);
  Tensor logits = logits_.narrow(0, 0, R);
  model_.forward(batch, logits, workspace_);

  for (int64_t r = 0; r < R; ++r) {
    Sequence& s = *sampled[r];
    std::span<float> row(logits.narrow(0, r, 1).data<float>(), static_cast<size_t>(V));
    StepEvent& event = event_for(s);
    TokenId next = 0;
    int32_t next_state = 0;
    if (s.request.constraint) {
      const std::optional<TokenId> pick = sample_constrained(s, row, &next_state);
      if (!pick) {
        finish(s, FinishReason::dead_end, event);
        continue;
      }
      next = *pick;
    } else {
      next = s.sampler.sample(row, s.tokens);
    }
    const bool is_eos = !s.request.stop.ignore_eos &&
                        std::find(eos_ids_.begin(), eos_ids_.end(), next) != eos_ids_.end();
    const bool is_stop =
        std::find(s.request.stop.stop_tokens.begin(), s.request.stop.stop_tokens.end(), next) !=
        s.request.stop.stop_tokens.end();
    if (is_eos || is_stop) {
      finish(s, FinishReason::stop_token, event);
      continue;
    }
    s.tokens.push_back(next);
    s.result.tokens.push_back(next);
    event.tokens.push_back(next);
    if (s.request.logprobs) {
      // log softmax(row)[next], in double for a stable log-sum-exp over the vocabulary.
      double max = *std::max_element(row.begin(), row.end()), sum = 0;
      for (float x : row) sum += std::exp(static_cast<double>(x) - max);
      const double log_z = max + std::log(sum);
      auto lp = static_cast<float>(row[next] - log_z);
      s.result.token_logprobs.push_back(lp);
      event.logprobs.push_back(lp);
      if (s.request.top_logprobs > 0) {
        // The k largest logits (ties to the lower id), most likely first.
        const auto k = std::min<size_t>(static_cast<size_t>(s.request.top_logprobs), row.size());
        std::vector<TokenId> ids(row.size());
        std::iota(ids.begin(), ids.end(), 0);
        std::partial_sort(
            ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(k), ids.end(),
            [&](TokenId a, TokenId b) { return row[a] > row[b] || (row[a] == row[b] && a < b); });
        std::vector<std::pair<TokenId, float>> top;
        for (size_t i = 0; i < k; ++i)
          top.push_back({ids[i], static_cast<float>(row[ids[i]] - log_z)});
        s.result.top_logprobs.push_back(top);
        event.top_logprobs.push_back(std::move(top));
      }
    }
    if (s.stream) {
      std::string piece = s.stream->push(next);
      if (!piece.empty()) {
        event.text += piece;
        if (s.request.on_text) s.request.on_text(piece);
      }
      if (s.stream->stopped()) {
        finish(s, FinishReason::stop_string, event);
        continue;
      }
    }
    if (s.request.constraint) {
      s.constraint_state = next_state;
      if (s.request.constraint->complete(next_state)) {
        finish(s, FinishReason::stop_token, event);
        continue;
      }
    }
    const auto generated = static_cast<int64_t>(s.result.tokens.size());
    if (generated >= s.request.stop.max_new_tokens) {
      finish(s, FinishReason::length, event);
    } else if (static_cast<int64_t>(s.tokens.size()) >= s.cache.max_length()) {
      finish(s, FinishReason::context_full, event);
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [&](const std::unique_ptr<Sequence>& s) {
                                  return s->result.finish != FinishReason::none;
                                }),
                 running_.end());
  return events;
}

std::optional<TokenId> Engine::sample_constrained(Sequence& s, std::span<const float> row,
                                                  int32_t* next_state) {
  const auto t0 = std::chrono::steady_clock::now();
  const Constraint& c = *s.request.constraint;
  const int32_t state = s.constraint_state;
  // The token that starts a text shows without its leading space (TextStream): tokens that drop
  // one are judged by what shows. Computed per request (one step).
  Constraint::Mask first_mask;
  const bool stripped = s.stream && s.stream->at_text_start() && !trie_->space_dropping().empty();
  if (stripped) {
    const auto& drops = trie_->space_dropping();
    auto& first = first_mask.allowed;
    for (const auto& a : c.allowed(*trie_, state))
      if (!std::binary_search(drops.begin(), drops.end(), a.token)) first.push_back(a);
    for (TokenId t : drops) {
      const int32_t next = c.advance(state, std::string_view(trie_->bytes(t)).substr(1));
      if (next != Constraint::kDead) first.push_back({t, next});
    }
    std::sort(first.begin(), first.end(),
              [](const auto& a, const auto& b) { return a.token < b.token; });
    for (const auto& a : first)
      first_mask.max_distance = std::max(first_mask.max_distance, c.distance(a.next));
  }
  const Constraint::Mask& mask = stripped ? first_mask : c.mask(*trie_, state);
  const auto& allowed = mask.allowed;
  // Tokens this one may still use, itself included: the budget and the context both bound it.
  const int64_t left =
      std::min(s.request.stop.max_new_tokens - static_cast<int64_t>(s.result.tokens.size()),
               s.cache.max_length() - static_cast<int64_t>(s.tokens.size()));
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  // Keep tokens after which the rest still fits (one byte per token at worst); when none does,
  // those that come closest.
  const int64_t fit = left - 1;
  bool any = !allowed.empty();
  if (fit >= mask.max_distance) {
    // The budget filters nothing: the cached mask as it is (the common case).
    if (mask.has_excluded) {
      masked_.assign(row.begin(), row.end());
      for (TokenId e : mask.excluded) masked_[static_cast<size_t>(e)] = kNone;
    } else {
      masked_.assign(row.size(), kNone);
      for (const auto& a : allowed)
        masked_[static_cast<size_t>(a.token)] = row[static_cast<size_t>(a.token)];
    }
  } else {
    int32_t nearest = std::numeric_limits<int32_t>::max();
    for (const auto& a : allowed) nearest = std::min(nearest, c.distance(a.next));
    const int64_t keep = std::max<int64_t>(fit, nearest);
    masked_.assign(row.size(), kNone);
    for (const auto& a : allowed) {
      if (c.distance(a.next) <= keep)
        masked_[static_cast<size_t>(a.token)] = row[static_cast<size_t>(a.token)];
    }
  }
  if (c.accepting(state)) {
    for (TokenId e : eos_ids_)
      masked_[static_cast<size_t>(e)] = row[static_cast<size_t>(e)], any = true;
    for (TokenId e : s.request.stop.stop_tokens)
      masked_[static_cast<size_t>(e)] = row[static_cast<size_t>(e)], any = true;
  }
  constraint_seconds_ +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!any) return std::nullopt;
  const TokenId next = s.sampler.sample(masked_, s.tokens);
  auto it = std::lower_bound(allowed.begin(), allowed.end(), next,
                             [](const Constraint::Allowed& a, TokenId t) { return a.token < t; });
  *next_state = it != allowed.end() && it->token == next ? it->next : state;  // an end token
  return next;
}

std::vector<GenerationResult> Engine::generate(std::vector<GenerationRequest> requests) {
  std::vector<RequestId> ids;
  for (auto& r : requests) ids.push_back(add(std::move(r)));
  std::unordered_map<RequestId, GenerationResult> done;
  while (done.size() < ids.size()) {
    for (StepEvent& e : step()) {
      if (e.finished) done[e.id] = std::move(e.result);
    }
  }
  std::vector<GenerationResult> out;
  for (RequestId id : ids) out.push_back(std::move(done[id]));
  return out;
}

}  // namespace seqit::infer
