// `seqit seqinstruct`: the Seq-Instruct pipeline (run), its prompt set (prompts). See
// docs/seqinstruct.md.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>

#include "cli/backend_options.h"
#include "cli/command.h"
#include "data/writer.h"
#include "dist/communicator.h"
#include "llm/http_backend.h"
#include "seqinstruct/baselines.h"
#include "seqinstruct/pipeline.h"
#include "seqinstruct/report.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/interrupt.h"
#include "util/log.h"
#include "util/progress.h"

namespace seqit::cli {
namespace {
namespace fs = std::filesystem;
using namespace seqit::seqinstruct;

struct RunOptions {
  std::string input, output;
  BackendOptions backend;
  std::string prompts = "default";
  std::string from, to, on_error = "stop";
  std::string answer_format = "auto";
  int iterations = 2;
  bool direct = false, extract = false, fresh = false, dry_run = false, decontaminate = false;
  int64_t limit = -1;
  uint64_t seed = 42;
  int max_attempts = 3;
  double temperature = 1.0, top_p = 0.9;
  int top_k = 50, max_tokens = 2048;
  std::string eval_dir;
};

std::string default_eval_dir() {
  return find_shared_data("eval").value_or(fs::path()).string();
}

void print_messages(const char* stage, const std::vector<llm::Message>& messages) {
  std::printf("==== %s ====\n", stage);
  for (const auto& m : messages) std::printf("--- %s ---\n%s\n", m.role.c_str(), m.content.c_str());
  std::printf("\n");
}

void dry_run(const PromptSet& prompts, const std::vector<SourceItem>& items,
             const PipelineOptions& p) {
  if (items.empty()) throw Error("no items to show");
  const SourceItem& item = items.front();
  const std::string full = join_prompt(item.instruction, item.input);
  std::printf("Dry run: the prompts of item '%s' (no backend is called).\n\n", item.id.c_str());
  if (p.extract_input)
    print_messages("extract",
                   extract_messages(prompts, full, request_seed(p.seed, item.id, 0, "extract", 0)));
  if (p.mode == Mode::sit) {
    print_messages(
        "classify (iteration 1)",
        classify_messages(prompts, full, request_seed(p.seed, item.id, 1, "classify", 0)));
    for (Option o : {Option::A, Option::B, Option::C})
      print_messages(
          fmt::format("generate, option {}", option_letter(o)).c_str(),
          generate_messages(prompts, o, full, request_seed(p.seed, item.id, 1, "generate", 0)));
  }
  print_messages("respond", respond_messages(item.system, full));
}

void run(const RunOptions& o) {
  const PromptSet prompts = load_prompt_set(o.prompts);
  data::ReadOptions read;
  if (!o.from.empty()) read.from = data::parse_format_request(o.from);
  read.on_error = data::parse_on_error(o.on_error);
  read.progress_label = "reading";
  LoadReport loaded;
  std::vector<SourceItem> items = load_source(o.input, read, &loaded);
  if (loaded.bad.count > 0) log::warn("{}", loaded.bad.summary());
  if (o.limit >= 0 && static_cast<int64_t>(items.size()) > o.limit) items.resize(o.limit);
  log::info("seqinstruct: {} items from {} ({}){}", items.size(), o.input,
            data::format_name(loaded.format),
            loaded.multi_turn ? fmt::format("; {} multi-turn: the first user turn is rewritten, "
                                            "later turns are kept as they are",
                                            loaded.multi_turn)
                              : std::string());

  PipelineOptions p;
  p.mode = o.direct ? Mode::direct : Mode::sit;
  p.iterations = o.iterations;
  p.extract_input = o.extract;
  p.seed = o.seed;
  p.max_attempts = o.max_attempts;
  p.model = o.backend.model;
  p.rewrite.temperature = p.respond.temperature = o.temperature;
  p.rewrite.top_p = p.respond.top_p = o.top_p;
  p.rewrite.top_k = p.respond.top_k = o.top_k;
  p.rewrite.max_tokens = p.respond.max_tokens = o.max_tokens;
  p.extract.max_tokens = std::min(1024, o.max_tokens);
  // With the local engine, twice its batch: a finished sequence's place is taken at the next
  // decoding step instead of after a round trip through the pipeline.
  p.max_in_flight = std::max(1, o.backend.concurrency) * (o.backend.local_model.empty() ? 1 : 2);
  p.stop_on_error = o.on_error == "stop";
  p.constrained = o.answer_format == "constrained" ||
                  (o.answer_format == "auto" && !o.backend.local_model.empty());
  if (o.dry_run) return dry_run(prompts, items, p);

  fs::create_directories(o.output);
  const fs::path dir = o.output;
  const OpenedBackend opened = open_backend(o.backend, (dir / "cache.sqlite").string());
  log::info(
      "seqinstruct: {}, {} items via {}; prompts {} ({})",
      o.direct ? "direct-response (IT baseline)" : fmt::format("SIT, {} iterations", o.iterations),
      items.size(), opened.backend->describe(), prompts.name, prompts.source);

  InterruptGuard guard;
  p.interrupted = [&] { return guard.requested(); };
  Progress progress("seqinstruct", static_cast<int64_t>(items.size()), "items");
  PipelineResult result;
  try {
    result = run_pipeline(*opened.backend, prompts, items, dir / "trace.jsonl", p, o.fresh,
                          [&](const PipelineCounts& c) {
                            progress.set(c.items_done);
                            std::string note =
                                fmt::format("{} req ({} cached)", c.requests, c.cached);
                            for (const auto& [stage, n] : c.stage_requests)
                              note += fmt::format(", {} {}", stage, n);
                            if (c.parse_retries)
                              note += fmt::format(", {} retries", c.parse_retries);
                            progress.set_note(note);
                          });
  } catch (...) {
    progress.finish();
    throw;
  }
  progress.finish();
  // Several processes: every rank holds the whole result; rank 0 writes the files.
  if (dist::world().rank() != 0) return;
  if (guard.requested()) {
    log::warn(
        "seqinstruct: stopped by signal; {} items finished, the trace keeps them: rerun the "
        "same command to go on",
        result.counts.items_done);
    return;
  }

  // Decontamination: report always (when the eval sets are found), drop with --decontaminate.
  std::unique_ptr<EvalOverlap> overlap;
  std::map<std::string, int64_t> eval_prompts;
  const std::string eval_dir = o.eval_dir.empty() ? default_eval_dir() : o.eval_dir;
  if (!eval_dir.empty() && fs::exists(eval_dir)) {
    overlap = std::make_unique<EvalOverlap>();
    eval_prompts = overlap->load(eval_dir);
  } else if (o.decontaminate) {
    throw Error("--decontaminate needs the evaluation sets: give --eval-dir (shared/data/eval)");
  }
  RunReport report = build_report(result, p, overlap.get());
  report.eval_prompts = eval_prompts;

  // The training file, in source order.
  data::Format format;
  bool any_conversation = false;
  for (const auto& item : items) any_conversation |= item.conversation;
  const std::string to = o.to.empty() ? (any_conversation ? "openai-jsonl" : "alpaca-json") : o.to;
  const data::FormatRequest request = data::parse_format_request(to);
  format.schema = request.schema;
  format.container = request.container.value_or(data::Container::jsonl);
  const std::string stem = o.direct ? "it" : "sit";
  const fs::path train_path =
      dir / fmt::format("{}.{}", stem, data::container_name(format.container));
  std::set<std::string> drop;
  if (o.decontaminate) drop.insert(report.contaminated_ids.begin(), report.contaminated_ids.end());
  data::RecordFileWriter writer(train_path, format,
                                {.indent = format.container == data::Container::json ? 2 : -1});
  for (const ItemResult& item : result.items) {
    if (!item.complete) continue;
    if (drop.count(item.source->id)) {
      ++report.dropped;
      continue;
    }
    writer.write(training_record(item));
  }
  writer.commit();
  const std::string settings = fmt::format(
      "- input: `{}` ({}), {} items{}\n- mode: {}\n- prompts: {} ({})\n- seed: {}; attempts per "
      "stage: {}\n- sampling: temperature {}, top-p {}, top-k {}, max tokens {}\n- backend: {}\n",
      o.input, data::format_name(loaded.format), items.size(),
      o.limit >= 0 ? fmt::format(" (--limit {})", o.limit) : "",
      o.direct ? "direct response (IT baseline)" : fmt::format("SIT, {} iterations", o.iterations),
      prompts.name, prompts.source, o.seed, o.max_attempts, o.temperature, o.top_p, o.top_k,
      o.max_tokens, opened.backend->describe());
  write_report(dir, report, settings);
  std::fprintf(stderr,
               "seqinstruct: %lld of %lld items written to %s; %lld requests (%lld from the "
               "cache), %lld resumed, %lld parse retries, %lld parse failures; %s; report: %s\n",
               (long long)writer.records(), (long long)items.size(), train_path.c_str(),
               (long long)result.counts.requests, (long long)result.counts.cached,
               (long long)result.counts.resumed, (long long)result.counts.parse_retries,
               (long long)result.counts.parse_failures, opened.cache_summary().c_str(),
               (dir / "report.md").c_str());
  if (result.counts.backend_errors > 0)
    throw Error(
        fmt::format("{} items stopped on backend errors (see the warnings above); rerun the "
                    "same command to retry them, finished items are kept",
                    result.counts.backend_errors));
}

void setup_run(CLI::App& cmd) {
  auto o = std::make_shared<RunOptions>();
  cmd.add_option("input", o->input,
                 "Instruction data in any format seqit reads (Alpaca, FLAN CoT, ShareGPT, OpenAI "
                 "messages, LIMA, ...)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("-o,--output", o->output,
                 "Output folder: sit.json / it.json (training file), trace.jsonl, report.md, "
                 "report.json, options.png, cache.sqlite; a rerun resumes it")
      ->required();
  add_backend_options(cmd, o->backend);
  cmd.add_option("--iterations", o->iterations, "Seq-Instruct passes (D items freeze)")
      ->check(CLI::Range(1, 16))
      ->capture_default_str();
  cmd.add_flag("--direct-response", o->direct,
               "The IT baseline: the generator answers the original instructions");
  cmd.add_flag("--extract-input", o->extract,
               "First split monolithic (FLAN-style) prompts into instruction + input");
  cmd.add_option("--prompts", o->prompts,
                 "Prompt set: 'default', 'compact' (one example per stage, for small-context "
                 "models) or a YAML file")
      ->capture_default_str();
  cmd.add_option("--limit", o->limit, "Only the first N items");
  cmd.add_option("--seed", o->seed, "Seed of few-shot orders and sampling")->capture_default_str();
  cmd.add_option("--max-attempts", o->max_attempts,
                 "Tries per parsed stage before the item is kept as D")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  cmd.add_option("--temperature", o->temperature, "Sampling temperature (the reference: 1.0)")
      ->capture_default_str();
  cmd.add_option("--top-p", o->top_p, "Nucleus mass (the reference: 0.9)")->capture_default_str();
  cmd.add_option("--top-k", o->top_k, "Top-k (the reference: 50)")->capture_default_str();
  cmd.add_option("--max-tokens", o->max_tokens, "New tokens per reply (the reference: 2048)")
      ->capture_default_str();
  cmd.add_option("--from", o->from, "Input format (default: detected)");
  cmd.add_option("--to", o->to,
                 "Training file format (default: alpaca-json, or openai-jsonl for conversations)");
  cmd.add_option("--on-error", o->on_error,
                 "stop: stop at the first bad record or failed request; skip: go on and count")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  cmd.add_option("--answer-format", o->answer_format,
                 "auto | constrained | free: constrained holds the classifier to its answer line "
                 "(\"Option: <A-D>\") while decoding, so no classification fails to parse; auto = "
                 "constrained with --local, free with --url")
      ->check(CLI::IsMember({"auto", "constrained", "free"}))
      ->capture_default_str();
  cmd.add_flag("--fresh", o->fresh, "Start the trace anew instead of resuming it");
  cmd.add_flag("--dry-run", o->dry_run,
               "Print the first item's prompts for every stage; call no backend");
  cmd.add_option("--eval-dir", o->eval_dir,
                 "Evaluation sets to check overlap against (default: $SEQIT_SHARED_DATA/eval or "
                 "../shared/data/eval)");
  cmd.add_flag("--decontaminate", o->decontaminate,
               "Leave items that overlap an evaluation set out of the training file");
  cmd.footer(
      "Every finished item-iteration is appended to trace.jsonl and every answer to the response "
      "cache: after Ctrl-C or kill -9, rerun the same command and nothing is asked twice or "
      "written twice.");
  cmd.callback([o] { run(*o); });
}

// ---- seqit seqinstruct manual
// ----------------------------------------------------------------------

struct ManualCliOptions {
  std::string kind, input, output, from, on_error = "stop";
  BackendOptions backend;
  bool use_backend = false;
  std::vector<std::string> languages, parallel;
  double share = 1.0;
  uint64_t seed = 42;
  int64_t limit = -1;
  int max_tokens = 512;
};

std::vector<SourceItem> read_items(const std::string& path, const std::string& from,
                                   const std::string& on_error, int64_t limit) {
  data::ReadOptions read;
  if (!from.empty()) read.from = data::parse_format_request(from);
  read.on_error = data::parse_on_error(on_error);
  LoadReport loaded;
  std::vector<SourceItem> items = load_source(path, read, &loaded);
  if (loaded.bad.count > 0) log::warn("{}", loaded.bad.summary());
  if (limit >= 0 && static_cast<int64_t>(items.size()) > limit) items.resize(limit);
  return items;
}

void write_instructions(const fs::path& path, const std::vector<data::Instruction>& rows) {
  const data::FormatRequest request = data::parse_format_request("alpaca");
  data::Format format{request.schema, path.extension() == ".jsonl" ? data::Container::jsonl
                                                                   : data::Container::json};
  data::WriteOptions options;
  if (format.container == data::Container::json) options.indent = 2;
  data::RecordFileWriter writer(path, format, options);
  for (const auto& row : rows) writer.write(row);
  writer.commit();
}

void run_manual(const ManualCliOptions& o) {
  ManualOptions m;
  m.kind = parse_manual_kind(o.kind);
  m.languages = o.languages;
  m.share = o.share;
  m.seed = o.seed;
  m.model = o.backend.model;
  m.params.max_tokens = o.max_tokens;
  m.max_in_flight = o.backend.concurrency;
  const std::vector<SourceItem> items = read_items(o.input, o.from, o.on_error, o.limit);
  std::map<std::string, std::vector<SourceItem>> parallel;
  for (const std::string& spec : o.parallel) {
    const size_t eq = spec.find('=');
    if (eq == std::string::npos)
      throw Error("--parallel takes LANGUAGE=FILE, e.g. German=alpaca.de.json, not '" + spec + "'");
    parallel[spec.substr(0, eq)] = read_items(spec.substr(eq + 1), o.from, "stop", o.limit);
  }
  OpenedBackend opened;
  const fs::path out = o.output;
  if (out.has_parent_path()) fs::create_directories(out.parent_path());
  if (!o.backend.urls.empty() || !o.backend.local_model.empty())
    opened = open_backend(o.backend, out.string() + ".cache.sqlite");
  InterruptGuard guard;
  m.interrupted = [&] { return guard.requested(); };
  ManualReport report;
  const auto rows = build_manual(opened.backend.get(), items, parallel,
                                 out.string() + ".trace.jsonl", m, &report);
  write_instructions(out, rows);
  std::string languages;
  for (const auto& [language, n] : report.per_language)
    languages += fmt::format(", {} {}", language, n);
  std::fprintf(stderr,
               "seqinstruct manual %s: %lld rows written to %s: %lld chains, %lld kept as they "
               "were (%lld without an input)%s; %lld generator requests (%lld from the cache)\n",
               o.kind.c_str(), (long long)rows.size(), out.c_str(), (long long)report.chains,
               (long long)report.plain, (long long)report.no_input, languages.c_str(),
               (long long)report.requests, (long long)report.cached);
}

void setup_manual(CLI::App& cmd) {
  auto o = std::make_shared<ManualCliOptions>();
  cmd.add_option("kind", o->kind, "repeat, paraphrase or translate")
      ->required()
      ->check(CLI::IsMember({"repeat", "paraphrase", "translate"}));
  cmd.add_option("input", o->input, "Instruction data (any format seqit reads)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("-o,--output", o->output, "The training file (.json or .jsonl, Alpaca fields)")
      ->required();
  add_backend_options(cmd, o->backend);
  cmd.add_option("--languages", o->languages,
                 "translate: the languages the inputs go into, in disjoint blocks (e.g. German "
                 "Spanish Russian Chinese)")
      ->delimiter(',');
  cmd.add_option("--parallel", o->parallel,
                 "translate: LANGUAGE=FILE, the same dataset in that language, item by item "
                 "(instead of asking the generator)");
  cmd.add_option("--share", o->share,
                 "Share of the rows with an input that become chains (the rest stay plain)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd.add_option("--seed", o->seed, "Seed of the row selection")->capture_default_str();
  cmd.add_option("--limit", o->limit, "Only the first N items");
  cmd.add_option("--max-tokens", o->max_tokens, "Tokens per paraphrase or translation")
      ->capture_default_str();
  cmd.add_option("--from", o->from, "Input format (default: detected)");
  cmd.add_option("--on-error", o->on_error, "stop or skip bad records")
      ->check(CLI::IsMember({"stop", "skip"}))
      ->capture_default_str();
  cmd.footer(
      "Formats (SIT_SPEC §2): repeat: \"First repeat the input below, then ...\" -> "
      "\"Repeat:\\n<input>\\n"
      "Result: <output>\"; paraphrase: the generator's paraphrase in place of the repeat; "
      "translate: the input in another language, the output \"Translation into English:\\n<English "
      "input>\\nResult: <output>\". Generator answers go to OUTPUT.trace.jsonl and the cache: a "
      "rerun "
      "asks only what is missing.");
  cmd.callback([o] { run_manual(*o); });
}

// ---- seqit seqinstruct token-match
// -----------------------------------------------------------------

struct TokenMatchCliOptions {
  std::string sit, pool, tokenizer, output;
  double tolerance = 0.02;
};

void run_token_match(const TokenMatchCliOptions& o) {
  const auto tokenizer = tokenizer::load_tokenizer(o.tokenizer);
  auto count = [&](std::string_view text) {
    return static_cast<int64_t>(tokenizer->encode(text).size());
  };
  int64_t target = 0;
  for (const auto& item : read_items(o.sit, "", "stop", -1)) target += count(item.output);
  std::vector<data::Instruction> pool;
  for (const auto& item : read_items(o.pool, "", "stop", -1)) {
    if (item.conversation) throw Error("token-match works on single-turn IT data").in_file(o.pool);
    data::Instruction row;
    row.id = item.id == std::to_string(item.index) ? std::string() : item.id;
    row.system = item.system;
    row.instruction = item.instruction;
    row.input = item.input;
    row.output = item.output;
    row.meta = item.meta;
    pool.push_back(std::move(row));
  }
  TokenMatchReport report;
  const auto rows = token_matched(pool, target, o.tolerance, count, &report);
  write_instructions(o.output, rows);
  std::fprintf(stderr,
               "token-match: %lld of %lld IT items with %lld response tokens (SIT: %lld, %+.2f%%) "
               "written to %s\n",
               (long long)report.items, (long long)report.pool, (long long)report.tokens,
               (long long)report.target_tokens, 100 * report.deviation(), o.output.c_str());
}

void setup_token_match(CLI::App& cmd) {
  auto o = std::make_shared<TokenMatchCliOptions>();
  cmd.add_option("--sit", o->sit, "The SIT training file whose response tokens are the target")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--pool", o->pool,
                 "IT data to pick from, in order (seqinstruct run --direct-response on more items "
                 "than the SIT set)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd.add_option("--tokenizer", o->tokenizer,
                 "The tokenizer of the model to be trained (tokens are counted with it)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd.add_option("-o,--output", o->output, "The token-matched IT file (.json or .jsonl)")
      ->required();
  cmd.add_option("--tolerance", o->tolerance, "Allowed difference, as a fraction")
      ->check(CLI::Range(0.0, 0.5))
      ->capture_default_str();
  cmd.callback([o] { run_token_match(*o); });
}

void setup(CLI::App& cmd) {
  cmd.require_subcommand(1);
  setup_run(*cmd.add_subcommand("run",
                                "Rewrite instruction data into sequential instructions "
                                "(or, with --direct-response, the IT baseline)"));
  setup_manual(*cmd.add_subcommand(
      "manual", "Hand-made chains: repeat-, paraphrase- or translate-then-answer (SIT_SPEC §2)"));
  setup_token_match(*cmd.add_subcommand(
      "token-match", "The token-matched IT baseline: IT items with the SIT set's response tokens"));
  auto* prompts = cmd.add_subcommand("prompts", "Print a builtin prompt set (YAML) to edit");
  auto name = std::make_shared<std::string>("default");
  prompts->add_option("name", *name, "default or compact")->capture_default_str();
  prompts->callback([name] {
    const std::string_view yaml = builtin_prompts_yaml(*name);
    std::fwrite(yaml.data(), 1, yaml.size(), stdout);
  });
}

}  // namespace
SEQIT_COMMAND("seqinstruct", "Seq-Instruct: turn instruction data into sequential instructions",
              setup);
}  // namespace seqit::cli
