#include "llm/local_backend.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <span>
#include <thread>
#include <unordered_map>

#include "chat/chat_template.h"
#include "chat/jinja.h"
#include "chat/model_template.h"
#include "infer/engine.h"
#include "infer/scoring.h"
#include "llm/format_check.h"
#include "model/llama.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/log.h"

namespace seqit::llm {
namespace fs = std::filesystem;
using tokenizer::TokenId;

ChatPrompt plain_chat_prompt(const std::vector<Message>& messages) {
  ChatPrompt p;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i > 0) p.text += "\n\n";
    p.text += messages[i].content;
  }
  return p;
}

namespace {

// A submitted request while the scheduler works on it.
struct Job {
  Request request;
  ResponseCallback done;
  Response response;
  int remaining = 0;  // choices still generating
  bool cancelled = false;
  std::vector<infer::RequestId> ids;
  std::shared_ptr<const infer::Constraint> constraint;  // of request.response_format, or null
  ToolFormat tool_format = ToolFormat::none;  // chat with tools: the template's call format
};

LlmError invalid(std::string message) {
  return LlmError{ErrorKind::invalid_request, std::move(message), 0, 0, {}};
}

// The messages as a template sees them in transformers / vLLM: a call's arguments as an object,
// the content of a message that only calls tools as None.
std::string messages_json(const std::vector<Message>& messages) {
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  for (const Message& m : messages) {
    nlohmann::ordered_json j = {{"role", m.role}};
    j["content"] = m.content.empty() && !m.tool_calls.empty() ? nlohmann::ordered_json(nullptr)
                                                              : nlohmann::ordered_json(m.content);
    if (!m.tool_calls.empty()) {
      nlohmann::ordered_json calls = nlohmann::ordered_json::array();
      for (const ToolCall& c : m.tool_calls) {
        nlohmann::ordered_json args = nlohmann::ordered_json::parse(c.arguments, nullptr, false);
        if (args.is_discarded()) args = c.arguments;
        calls.push_back({{"id", c.id},
                         {"type", "function"},
                         {"function", {{"name", c.name}, {"arguments", std::move(args)}}}});
      }
      j["tool_calls"] = std::move(calls);
    }
    if (!m.tool_call_id.empty()) j["tool_call_id"] = m.tool_call_id;
    if (!m.name.empty()) j["name"] = m.name;
    out.push_back(std::move(j));
  }
  return out.dump();
}

}  // namespace

ChatFormatter template_chat_formatter(std::shared_ptr<const chat::ChatTemplate> shared,
                                      std::vector<int32_t> end_tokens) {
  const ToolFormat tool_format = detect_tool_format(shared->source());
  return [shared, end_tokens, tool_format](const std::vector<Message>& messages,
                                           const std::string& tools) {
    if (!tools.empty() && tool_format == ToolFormat::none)
      throw Error(fmt::format(
          "the chat template '{}' does not render tools (it never uses the 'tools' variable): "
          "give the model a template with a tool format, or send no tools",
          shared->name()));
    ChatPrompt prompt;
    chat::RenderOptions ro;
    ro.add_generation_prompt = true;
    if (!tools.empty()) ro.tools = chat::jinja::parse_json_value(tools, "tools");
    prompt.text =
        shared->render(chat::jinja::parse_json_value(messages_json(messages), "messages"), ro).text;
    prompt.add_special_tokens = shared->tokenizer_adds_special_tokens();
    if (!tools.empty()) prompt.tool_format = tool_format;
    prompt.stop_tokens = end_tokens;
    return prompt;
  };
}

struct LocalBackend::Impl {
  std::shared_ptr<const model::LlamaModel> model;
  std::shared_ptr<const tokenizer::Tokenizer> tok;
  LocalBackendOptions options;
  int64_t context = 0;
  std::unique_ptr<infer::Engine> engine;  // used by the scheduler thread only

  std::mutex mutex;
  std::condition_variable wake;
  std::deque<std::unique_ptr<Job>> incoming;
  bool stopping = false;
  LocalStats stats;  // under mutex

  // Scheduler-thread state.
  std::vector<std::unique_ptr<Job>> active;
  std::unordered_map<infer::RequestId, std::pair<Job*, int>>
      by_sequence;  // engine id -> (job, choice)
  std::mt19937_64 seeds{std::random_device{}()};
  std::thread thread;

  void finish(std::unique_ptr<Job> job, Result<Response> result) {
    try {
      job->done(std::move(result));
    } catch (const std::exception& e) {
      log::error("llm: a response callback threw: {}", e.what());
    }
    std::lock_guard lock(mutex);
    ++stats.completed;
  }

  // parse_special: recognise special tokens written in the text. Off for completion and scoring
  // prompts (user text is text: "<|eot_id|>" typed by a user is not a control token); on for a
  // chat prompt rendered by the template, whose role markers and end-of-turn tokens are control
  // tokens — as Hugging Face's apply_chat_template and vLLM's chat endpoint tokenize it, and as the
  // trainer does, so a model answers the prompt format it was trained on.
  std::vector<TokenId> encode(std::string_view text, bool add_special,
                              std::vector<tokenizer::Span>* spans = nullptr,
                              bool parse_special = false) {
    tokenizer::EncodeOptions o;
    o.add_special = add_special;
    o.parse_special = parse_special;
    return tok->encode(text, o, spans);
  }

  // ------------------------------------------------------------ scoring

  // A score request tokenized: per continuation the ids of prompt + continuation, their spans and
  // the index of the continuation's first token.
  struct Scoring {
    std::unique_ptr<Job> job;
    std::vector<std::vector<TokenId>> ids;
    std::vector<std::vector<tokenizer::Span>> spans;
    std::vector<size_t> first_continuation;
    infer::ScoreGroup group;
  };
  std::vector<std::unique_ptr<Job>> pending_scores;  // admitted, scored after the arrivals

  // Tokenizes and checks a score request; the error is the request's fault.
  std::optional<LlmError> prepare_score(Scoring& s) {
    const Request& r = s.job->request;
    for (size_t c = 0; c < r.continuations.size(); ++c) {
      const std::string full = r.prompt + r.continuations[c];
      std::vector<tokenizer::Span> spans;
      std::vector<TokenId> ids = encode(full, true, &spans);
      if (ids.size() < 2)
        return invalid(fmt::format(
            "continuation {}: prompt + continuation is {} token(s); scoring needs at least 2", c,
            ids.size()));
      if (static_cast<int64_t>(ids.size()) > context)
        return invalid(fmt::format(
            "This model's maximum context length is {} tokens, but prompt + continuation {} "
            "has {} tokens",
            context, c, ids.size()));
      // The continuation's tokens are those that start inside it (the same rule as the HTTP
      // client's); a leading BOS belongs to the prompt even when the prompt is empty.
      size_t k = ids.size();
      for (size_t i = 0; i < ids.size(); ++i) {
        if (i == 0 && tok->is_special(ids[0])) continue;
        if (spans[i].begin >= r.prompt.size() && spans[i].end > spans[i].begin) {
          k = i;
          break;
        }
      }
      if (!r.token_logprobs && k == ids.size())
        return invalid(fmt::format(
            "continuation {}: no token starts inside it (the tokenizer merges it with the end "
            "of the prompt; move separating spaces into the continuation)",
            c));
      s.first_continuation.push_back(std::max<size_t>(k, 1));
      s.ids.push_back(std::move(ids));
      s.spans.push_back(std::move(spans));
    }
    if (r.token_logprobs) {
      // Echo: every token after the first is scored, so that the prompt's are seen too.
      for (const auto& ids : s.ids)
        s.group.requests.push_back({{ids[0]}, std::vector<TokenId>(ids.begin() + 1, ids.end())});
      return std::nullopt;
    }
    // Only the continuations' tokens are scored, and the tokens every continuation shares (the
    // prompt, up to the position that predicts the first continuation token) run once.
    size_t shared = s.ids.empty() ? 0 : s.ids[0].size();
    for (size_t c = 0; c < s.ids.size(); ++c) {
      size_t common = 0;
      while (common < shared && common < s.ids[c].size() && s.ids[c][common] == s.ids[0][common])
        ++common;
      shared = std::min({shared, common, s.first_continuation[c] - 1});
    }
    if (!s.ids.empty()) s.group.shared.assign(s.ids[0].begin(), s.ids[0].begin() + shared);
    for (size_t c = 0; c < s.ids.size(); ++c) {
      const auto k = static_cast<ptrdiff_t>(s.first_continuation[c]);
      s.group.requests.push_back(
          {std::vector<TokenId>(s.ids[c].begin() + static_cast<ptrdiff_t>(shared),
                                s.ids[c].begin() + k),
           std::vector<TokenId>(s.ids[c].begin() + k, s.ids[c].end())});
    }
    return std::nullopt;
  }

  Response score_response(const Scoring& s, const std::vector<infer::ScoreResult>& scored) {
    const Request& r = s.job->request;
    Response out;
    out.model = options.model_name;
    for (size_t c = 0; c < scored.size(); ++c) {
      const auto& ids = s.ids[c];
      // Echo scores every token after the first; otherwise the continuation's only.
      const size_t base = r.token_logprobs ? 1 : s.first_continuation[c];
      double sum = 0;
      int64_t n = 0;
      for (size_t i = s.first_continuation[c]; i < ids.size(); ++i) {
        sum += scored[c].token_logprobs[i - base];
        ++n;
      }
      out.logprobs.push_back(sum);
      out.token_counts.push_back(n);
      out.usage.prompt_tokens += static_cast<int64_t>(ids.size());
      if (r.token_logprobs) {
        std::vector<TokenLogprob> tokens;
        for (size_t i = 0; i < ids.size(); ++i) {
          TokenLogprob t;
          t.text = tok->is_special(ids[i]) ? tok->token_text(ids[i]) : tok->token_bytes(ids[i]);
          if (i > 0) t.logprob = scored[c].token_logprobs[i - 1];
          t.offset = s.spans[c][i].begin;
          tokens.push_back(std::move(t));
        }
        out.token_logprobs.push_back(std::move(tokens));
      }
    }
    return out;
  }

  // Scores the pending score requests together: forward passes are filled with several
  // questions' prompts (up to max_step_tokens), in waves of about 4 passes' worth of tokens to
  // bound the caches' memory. A wave that fails is scored request by request, so that only the
  // request at fault gets the error.
  void score_pending() {
    std::vector<Scoring> wave;
    int64_t wave_tokens = 0;
    const int64_t wave_limit = 4 * std::max<int64_t>(options.max_step_tokens, 1);
    auto run_wave = [&](std::vector<Scoring>& batch) {
      std::vector<infer::ScoreGroup> groups;
      for (auto& s : batch) groups.push_back(std::move(s.group));
      const infer::ScoreOptions so{options.max_step_tokens};
      try {
        const auto results = infer::score_groups(*model, groups, so);
        for (size_t i = 0; i < batch.size(); ++i)
          finish(std::move(batch[i].job), score_response(batch[i], results[i]));
      } catch (const Error& e) {
        if (batch.size() == 1) {
          finish(std::move(batch[0].job), invalid(e.what()));
          return;
        }
        for (size_t i = 0; i < batch.size(); ++i) {
          try {
            const auto one = infer::score_groups(*model, std::span(&groups[i], 1), so);
            finish(std::move(batch[i].job), score_response(batch[i], one[0]));
          } catch (const Error& e1) {
            finish(std::move(batch[i].job), invalid(e1.what()));
          }
        }
      }
    };
    for (auto& job : pending_scores) {
      Scoring s;
      s.job = std::move(job);
      if (auto error = prepare_score(s)) {
        finish(std::move(s.job), std::move(*error));
        continue;
      }
      int64_t tokens = static_cast<int64_t>(s.group.shared.size());
      for (const auto& q : s.group.requests)
        tokens += static_cast<int64_t>(q.context.size() + q.continuation.size());
      wave.push_back(std::move(s));
      wave_tokens += tokens;
      if (wave_tokens >= wave_limit) {
        run_wave(wave);
        wave.clear();
        wave_tokens = 0;
      }
    }
    pending_scores.clear();
    if (!wave.empty()) run_wave(wave);
  }

  // ------------------------------------------------------------ generation

  // Adds the job's sequences to the engine, or answers it at once (errors, max_tokens = 0), or
  // queues a score request for score_pending().
  void admit(std::unique_ptr<Job> job) {
    Request& r = job->request;
    try {
      if (r.cancelled && r.cancelled->load()) {
        finish(std::move(job),
               LlmError{ErrorKind::cancelled, "cancelled before it started", 0, 0, {}});
        return;
      }
      if (r.kind == RequestKind::score) {
        pending_scores.push_back(std::move(job));  // scored with the others that arrived
        return;
      }
      ChatPrompt prompt;
      if (r.kind == RequestKind::chat) {
        const bool with_tools = !r.tools.empty() && r.tool_choice.mode != ToolChoice::Mode::none;
        if (with_tools && !options.chat_formatter)
          throw Error(
              "tools need a chat template that renders them; this model has none (plain "
              "format): give one with --chat-template");
        prompt = options.chat_formatter
                     ? options.chat_formatter(r.messages, with_tools ? r.tools : std::string())
                     : plain_chat_prompt(r.messages);
        job->tool_format = prompt.tool_format;
        const ToolChoice::Mode mode = r.tool_choice.mode;
        if (with_tools &&
            (mode == ToolChoice::Mode::required || mode == ToolChoice::Mode::function)) {
          // Held to one call in the template's format (compiled once per tool set: cached).
          ResponseFormat call;
          call.kind = ResponseFormat::Kind::regex;
          call.pattern = tool_call_pattern(prompt.tool_format, r.tools, r.tool_choice.function);
          job->constraint = compile_response_format(call);
        }
      } else {
        prompt.text = r.prompt;
      }
      std::vector<TokenId> ids = encode(prompt.text, prompt.add_special_tokens, nullptr,
                                        /*parse_special=*/r.kind == RequestKind::chat);
      if (ids.empty()) {
        finish(std::move(job),
               invalid("the prompt is empty (no tokens, and the tokenizer adds no BOS)"));
        return;
      }
      const auto prompt_tokens = static_cast<int64_t>(ids.size());
      if (prompt_tokens >= context) {
        finish(
            std::move(job),
            invalid(fmt::format("This model's maximum context length is {} tokens, but the prompt "
                                "has {} tokens (no room to generate)",
                                context, prompt_tokens)));
        return;
      }
      const SamplingParams& p = r.params;
      job->response.model = options.model_name;
      job->response.usage.prompt_tokens = prompt_tokens;
      job->response.choices.assign(static_cast<size_t>(p.n), Choice{"", "length", {}});
      if (p.max_tokens == 0) {
        Response empty = std::move(job->response);
        finish(std::move(job), std::move(empty));
        return;
      }
      const uint64_t base_seed = p.seed ? *p.seed : seeds();
      std::vector<std::string> stops = p.stop;
      stops.insert(stops.end(), prompt.stop_strings.begin(), prompt.stop_strings.end());
      Job* raw = job.get();
      for (int choice = 0; choice < p.n; ++choice) {
        infer::GenerationRequest g;
        g.prompt = ids;
        g.sampling.temperature = static_cast<float>(p.temperature);
        g.sampling.top_k = p.top_k;
        g.sampling.top_p = static_cast<float>(p.top_p);
        g.sampling.seed = base_seed + static_cast<uint64_t>(choice);
        // The answer may use what the context has left; past that it ends with "length".
        g.stop.max_new_tokens = std::min<int64_t>(p.max_tokens, context - prompt_tokens);
        g.stop.stop_strings = stops;
        g.stop.stop_tokens = prompt.stop_tokens;
        g.text_standalone = r.kind == RequestKind::chat;
        g.constraint = job->constraint;
        g.logprobs = r.logprobs;
        g.top_logprobs = r.top_logprobs;
        const infer::RequestId id = engine->add(std::move(g));
        raw->ids.push_back(id);
        by_sequence[id] = {raw, choice};
        ++raw->remaining;
      }
      active.push_back(std::move(job));
    } catch (const Error& e) {
      // What the engine or tokenizer refuses is the request's fault (ids, lengths); say so. Choices
      // already added are withdrawn (their cancel events then find no job and are ignored).
      if (job) {
        for (infer::RequestId id : job->ids) {
          engine->cancel(id);
          by_sequence.erase(id);
        }
        finish(std::move(job), invalid(e.what()));
      }
    }
  }

  // Token t of a step's (or a whole result's) tokens, with its log-probability and alternatives.
  GeneratedToken generated_token(const std::vector<TokenId>& ids,
                                 const std::vector<float>& logprobs,
                                 const std::vector<std::vector<std::pair<TokenId, float>>>& top,
                                 size_t t) const {
    GeneratedToken g{tok->token_bytes(ids[t]), logprobs[t], {}};
    if (t < top.size())
      for (const auto& [alt, lp] : top[t]) g.top.push_back({tok->token_bytes(alt), lp});
    return g;
  }

  void on_event(infer::StepEvent& event) {
    auto it = by_sequence.find(event.id);
    if (it == by_sequence.end()) return;
    auto [job, choice] = it->second;
    {
      std::lock_guard lock(mutex);
      stats.generated_tokens += static_cast<int64_t>(event.tokens.size());
    }
    // Streaming: this step's text and, with logprobs, its tokens, in one delta.
    if (job->request.on_delta) {
      std::vector<GeneratedToken> tokens;
      if (job->request.logprobs)
        for (size_t t = 0; t < event.tokens.size() && t < event.logprobs.size(); ++t)
          tokens.push_back(generated_token(event.tokens, event.logprobs, event.top_logprobs, t));
      if (!event.text.empty() || !tokens.empty()) job->request.on_delta(choice, event.text, tokens);
    }
    if (!event.finished) return;
    by_sequence.erase(it);
    const infer::GenerationResult& result = event.result;
    if (result.finish == infer::FinishReason::cancelled) job->cancelled = true;
    job->response.choices[choice] = {
        result.text, std::string(infer::finish_reason_name(result.finish)), {}};
    if (job->tool_format != ToolFormat::none && result.finish != infer::FinishReason::cancelled) {
      ParsedReply parsed = parse_tool_calls(job->tool_format, result.text);
      if (!parsed.calls.empty()) {
        Choice& c = job->response.choices[choice];
        for (ToolCall& call : parsed.calls)
          if (call.id.empty()) call.id = new_call_id(job->tool_format);
        c.text = std::move(parsed.content);
        c.tool_calls = std::move(parsed.calls);
        c.finish_reason = "tool_calls";
      }
    }
    if (job->request.logprobs) {
      auto& out = job->response.choices[choice].logprobs;
      for (size_t t = 0; t < result.tokens.size(); ++t)
        out.push_back(
            generated_token(result.tokens, result.token_logprobs, result.top_logprobs, t));
    }
    job->response.usage.completion_tokens += static_cast<int64_t>(result.tokens.size());
    if (--job->remaining > 0) return;
    // An init-capture, not [job]: clang before 16 cannot capture a structured binding.
    auto owned = std::find_if(active.begin(), active.end(),
                              [finished = job](const auto& j) { return j.get() == finished; });
    std::unique_ptr<Job> done = std::move(*owned);
    active.erase(owned);
    if (done->cancelled) {
      finish(std::move(done), LlmError{ErrorKind::cancelled, "cancelled", 0, 0, {}});
    } else {
      Response response = std::move(done->response);
      finish(std::move(done), std::move(response));
    }
  }

  // OpenAI-style call ids; Mistral's templates insist on 9 letters and digits.
  std::string new_call_id(ToolFormat format) {
    static constexpr char kAlphabet[] =
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    std::string id = format == ToolFormat::mistral ? "" : "call_";
    const size_t n = format == ToolFormat::mistral ? 9 : 24;
    for (size_t i = 0; i < n; ++i) id += kAlphabet[seeds() % 62];
    return id;
  }

  void cancel_if_asked() {
    for (auto& job : active) {
      if (job->cancelled || !job->request.cancelled || !job->request.cancelled->load()) continue;
      job->cancelled = true;
      for (infer::RequestId id : job->ids) engine->cancel(id);
    }
  }

  void run() {
    for (;;) {
      std::deque<std::unique_ptr<Job>> arrived;
      {
        std::unique_lock lock(mutex);
        // Sleep only when the engine has nothing to do; a cancellation is noticed within 200 ms.
        wake.wait_for(lock, std::chrono::milliseconds(200),
                      [&] { return !incoming.empty() || stopping || !engine->idle(); });
        arrived.swap(incoming);
        if (stopping && arrived.empty() && engine->idle() && active.empty()) return;
      }
      for (auto& job : arrived) admit(std::move(job));
      if (!pending_scores.empty()) score_pending();
      cancel_if_asked();
      if (engine->idle()) continue;
      try {
        std::vector<infer::StepEvent> events = engine->step();
        // Every sequence decoded in this step sampled a token.
        const auto decoded = std::count_if(events.begin(), events.end(),
                                           [](const auto& e) { return !e.tokens.empty(); });
        {
          std::lock_guard lock(mutex);
          ++stats.steps;
          stats.max_running = std::max<int64_t>(stats.max_running, decoded);
        }
        for (auto& e : events) on_event(e);
      } catch (const std::exception& e) {
        // An engine failure is not one request's fault: fail everything running and start over.
        log::error("llm: the engine failed: {}", e.what());
        for (auto& job : active)
          finish(
              std::move(job),
              LlmError{ErrorKind::internal, std::string("engine failure: ") + e.what(), 0, 0, {}});
        active.clear();
        by_sequence.clear();
        engine = std::make_unique<infer::Engine>(*model, tok.get(), engine_options());
      }
    }
  }

  infer::EngineOptions engine_options() const {
    infer::EngineOptions e;
    e.max_batch = options.max_batch;
    e.max_step_tokens = options.max_step_tokens;
    e.max_context = options.max_context;
    return e;
  }
};

std::unique_ptr<LocalBackend> LocalBackend::open(const fs::path& model_path,
                                                 const fs::path& tokenizer_path,
                                                 LocalBackendOptions options, bool bf16) {
  model::LoadOptions load;
  load.dtype = bf16 ? tensor::DType::bf16 : tensor::DType::f32;
  load.pack_for_inference = true;  // serving only: the decoding layout
  load.kv_cache = model::kv_cache_dtype(options.kv_cache);
  std::shared_ptr<const model::LlamaModel> model = model::LlamaModel::load(model_path, load);
  fs::path tok_path = tokenizer_path;
  if (tok_path.empty()) {
    if (!model->tokenizer_path())
      throw Error("no tokenizer found with the model; give one with --tokenizer")
          .in_file(model_path.string());
    tok_path = *model->tokenizer_path();
  }
  std::shared_ptr<const tokenizer::Tokenizer> tok = tokenizer::load_tokenizer(tok_path);
  if (!options.chat_formatter && options.chat_template != "plain") {
    std::optional<chat::ChatTemplate> tmpl;
    if (options.chat_template.empty()) {
      tmpl = chat::find_model_chat_template(model_path, tok_path);
      if (tmpl) tmpl->special_tokens().fill_from(*tok);
    } else {
      tmpl = chat::resolve_chat_template(options.chat_template, model_path, tok_path, *tok);
    }
    if (tmpl) {
      auto shared = std::make_shared<const chat::ChatTemplate>(std::move(*tmpl));
      std::vector<int32_t> end_tokens = chat::end_of_turn_tokens(*shared, *tok);
      options.chat_format_name = shared->name();
      options.chat_formatter = template_chat_formatter(shared, std::move(end_tokens));
    }
  }
  if (options.model_name.empty()) {
    fs::path p = model_path;
    while (!p.empty() && p.filename().empty()) p = p.parent_path();  // "folder/" -> "folder"
    options.model_name = p.stem().string();
  }
  return std::make_unique<LocalBackend>(std::move(model), std::move(tok), std::move(options));
}

LocalBackend::LocalBackend(std::shared_ptr<const model::LlamaModel> model,
                           std::shared_ptr<const tokenizer::Tokenizer> tokenizer,
                           LocalBackendOptions options)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.model = std::move(model);
  im.tok = std::move(tokenizer);
  im.options = std::move(options);
  if (im.options.model_name.empty()) im.options.model_name = "local";
  if (im.tok->vocab_size() > static_cast<size_t>(im.model->config().vocab_size))
    throw Error(fmt::format("the tokenizer has {} tokens but the model only {}",
                            im.tok->vocab_size(), im.model->config().vocab_size));
  const int64_t model_context = im.model->config().max_position_embeddings;
  im.context =
      im.options.max_context > 0 ? std::min(im.options.max_context, model_context) : model_context;
  im.engine = std::make_unique<infer::Engine>(*im.model, im.tok.get(), im.engine_options());
  im.thread = std::thread([&im] { im.run(); });
}

LocalBackend::~LocalBackend() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  impl_->thread.join();
}

void LocalBackend::submit(Request request, ResponseCallback done) {
  if (auto problem = validate_request(request)) {
    done(std::move(*problem));
    return;
  }
  if (!request.model.empty() && request.model != impl_->options.model_name) {
    done(LlmError{ErrorKind::not_found,
                  fmt::format("model '{}' is not served here (this backend runs '{}')",
                              request.model, impl_->options.model_name),
                  0,
                  0,
                  {}});
    return;
  }
  auto job = std::make_unique<Job>();
  try {
    // Compiled here, on the caller's thread, once per distinct format (compile_response_format
    // caches it: a pipeline sends the same schema many times), so that a new schema never holds up
    // the decoding of the others; a compile error is the request's fault.
    job->constraint = compile_response_format(request.response_format);
    if (!request.tools.empty()) {
      const auto tools = nlohmann::json::parse(request.tools, nullptr, false);
      if (!tools.is_array())
        throw Error("'tools' must be the JSON text of an array of {\"type\": \"function\", ...}");
      for (const auto& t : tools)
        if (!t.is_object() || !t.contains("function") || !t["function"].is_object() ||
            !t["function"].contains("name") || !t["function"]["name"].is_string())
          throw Error("each tool needs \"function\": {\"name\": ...}");
    }
  } catch (const Error& e) {
    done(invalid(e.what()));
    return;
  }
  job->request = std::move(request);
  job->done = std::move(done);
  {
    std::lock_guard lock(impl_->mutex);
    if (!impl_->stopping) {
      impl_->incoming.push_back(std::move(job));
    }
  }
  if (job) {
    job->done(LlmError{ErrorKind::cancelled, "the local backend is shutting down", 0, 0, {}});
    return;
  }
  impl_->wake.notify_all();
}

std::string LocalBackend::default_model() const {
  return impl_->options.model_name;
}

std::string LocalBackend::describe() const {
  return fmt::format("local {} ({} context, batch {}, chat format {})", impl_->options.model_name,
                     impl_->context, impl_->options.max_batch, impl_->options.chat_format_name);
}

int64_t LocalBackend::context_length() const {
  return impl_->context;
}

LocalStats LocalBackend::stats() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->stats;
}

const tokenizer::Tokenizer& LocalBackend::tokenizer() const {
  return *impl_->tok;
}

}  // namespace seqit::llm
