// `seqit generate`: text generation with a local model, for one prompt or a JSONL file of prompts.
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/command.h"
#include "cli/model_options.h"
#include "infer/engine.h"
#include "infer/generate_job.h"
#include "util/error.h"
#include "util/file_io.h"
#include "util/json_io.h"
#include "util/log.h"

namespace seqit::cli {
namespace {
struct GenerateOptions {
  ModelOptions model;
  SamplingOptions sampling;
  std::string prompt, prompts, out;
  bool prompt_given = false, ids = false, fresh = false, stream = false;
  int64_t batch = 16;
};

void run(const GenerateOptions& o) {
  LoadedModel m = load_model(o.model);
  infer::GenerateJobOptions job;
  job.sampling = o.sampling.sampling();
  job.stop = o.sampling.stop_params();
  job.engine.max_batch = o.batch;
  infer::PromptBuilder builder = prompt_builder(m, o.model, &job.stop.stop_tokens);
  if (!o.prompts.empty()) {
    if (o.out.empty())
      throw Error("--prompts needs --out FILE.jsonl (results are appended there and resumed)");
    job.prompts = o.prompts;
    job.out = o.out;
    job.fresh = o.fresh;
    job.include_ids = o.ids;
    infer::GenerateJobStats stats = infer::run_generate_job(*m.model, *m.tokenizer, job, builder);
    log::info("{} outputs written to {} ({} tokens), {} already there", stats.written, o.out,
              stats.tokens, stats.skipped);
    return;
  }
  nlohmann::json record = {{"prompt", o.prompt}};
  infer::GenerationRequest request;
  request.sampling = job.sampling;
  request.stop = job.stop;
  request.prompt = builder(record, &request.text_standalone);
  if (o.stream) {
    request.on_text = [](std::string_view piece) {
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    };
  }
  std::vector<infer::TokenId> prompt_ids = request.prompt;
  infer::Engine engine(*m.model, m.tokenizer.get(), job.engine);
  infer::GenerationResult r = engine.generate({std::move(request)})[0];
  nlohmann::json row = {{"prompt", o.prompt},
                        {"output", r.text},
                        {"finish_reason", std::string(infer::finish_reason_name(r.finish))},
                        {"prompt_tokens", r.prompt_tokens},
                        {"completion_tokens", r.tokens.size()}};
  if (o.ids) {
    row["prompt_token_ids"] = prompt_ids;
    row["token_ids"] = r.tokens;
  }
  if (o.stream) std::fputc('\n', stdout);
  if (!o.out.empty()) {
    write_file_atomic(o.out, to_json_line(row) + "\n");
  } else if (!o.stream) {
    std::printf("%s\n", to_json_line(row).c_str());
  }
}

void setup(CLI::App& cmd) {
  auto o = std::make_shared<GenerateOptions>();
  cmd.description(
      "Generate text with a local model (HF folder, GGUF or llama2.c .bin). One --prompt prints a "
      "JSON line "
      "{prompt, output, finish_reason, ...} (or streams the text with --stream); --prompts "
      "FILE.jsonl generates "
      "for every record ({\"id\", \"prompt\"} or, with --chat, {\"id\", \"messages\"}) in batches "
      "and appends "
      "results to --out, resuming where a previous run stopped. Under mpirun the records are "
      "split between the processes (each its own engine) and merged into --out.");
  add_model_options(cmd, o->model);
  auto* prompt = cmd.add_option("--prompt", o->prompt,
                                "The prompt text (the tokenizer adds BOS where the model uses it)");
  auto* prompts = cmd.add_option("--prompts", o->prompts, "JSONL file of prompt records");
  prompt->excludes(prompts);
  cmd.add_option("--out", o->out, "Output JSONL (required with --prompts)");
  add_sampling_options(cmd, o->sampling);
  cmd.add_flag("--ids", o->ids, "Also write the token ids");
  cmd.add_flag("--stream", o->stream,
               "With --prompt: print the text as it is generated instead of JSON");
  cmd.add_flag("--fresh", o->fresh, "With --prompts: start --out over instead of resuming it");
  cmd.add_option("--batch", o->batch, "Prompts generated together (continuous batching)")
      ->check(CLI::PositiveNumber);
  cmd.callback([o, prompt, prompts] {
    if (!*prompt && !*prompts) throw Error("give --prompt TEXT or --prompts FILE.jsonl");
    run(*o);
  });
}
}  // namespace
SEQIT_COMMAND("generate",
              "Generate text from prompts with a local model (batched, resumable JSONL)", setup);
}  // namespace seqit::cli
