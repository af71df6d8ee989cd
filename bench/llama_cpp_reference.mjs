// llama.cpp as a reference measured in the same run, through node-llama-cpp's prebuilt CPU binaries
// (the npm package @node-llama-cpp/linux-x64; scripts/bench-oracles installs it into
// build/bench-oracles). bench_model runs it on the GGUF files it writes; it can also be run alone.
//   node llama_cpp_reference.mjs bench <model.gguf> [--threads N] [--prefill-tokens N]
//        [--prefill-reps N] [--prompt-tokens N] [--decode-tokens N] [--warmup-tokens N] [--sequences N]
//       Prefill: one sequence evaluates prefill-tokens ids in one batch (batch size = prefill-tokens),
//       logits for the last; best of prefill-reps after one warm-up. Decode: after a prompt-tokens
//       prompt and warmup-tokens untimed steps, decode-tokens greedy steps of 1 sequence, then of
//       `sequences` sequences decoded together (node-llama-cpp puts the sequences' pending tokens of
//       one event-loop cycle into one llama_decode batch). The token ids are (i * 7919 + 13) % vocab,
//       the ones bench_model feeds seqit. Prints one JSON object on stdout with two figures per
//       measure: *_tps from llama.cpp's own counters (the time inside llama_decode, as llama-bench
//       reports it) and *_wall_tps around node-llama-cpp's calls, which adds the addon's per-call
//       overhead (a few ms per decode step here: scheduling, thread reservation, sampling in JS land).
//   node llama_cpp_reference.mjs check <model.gguf> [--prompt TEXT] [--tokens N] [--threads N]
//       Greedy continuation of the prompt (BOS + the GGUF's own tokenizer): prints JSON with the
//       prompt and generated token ids and the text.
// The package directory is $SEQIT_BENCH_ORACLE_DIR (default: build/bench-oracles next to this
// repository's bench/ folder). Nothing is downloaded or built: build "never", CPU backend only.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const [mode, modelPath, ...rest] = process.argv.slice(2);
if (!['bench', 'check'].includes(mode) || !modelPath) {
  console.error('usage: node llama_cpp_reference.mjs bench|check <model.gguf> [options]');
  process.exit(2);
}
const options = {
  threads: 2, prefillTokens: 512, prefillReps: 3, promptTokens: 16, decodeTokens: 48, warmupTokens: 3,
  sequences: 16, prompt: 'Once upon a time', tokens: 32,
};
for (let i = 0; i < rest.length; i += 2) {
  const name = rest[i].replace(/^--/, '').replace(/-([a-z])/g, (_, c) => c.toUpperCase());
  if (!(name in options) || i + 1 >= rest.length) {
    console.error(`llama_cpp_reference: unknown option or missing value: ${rest[i]}`);
    process.exit(2);
  }
  options[name] = typeof options[name] === 'number' ? Number(rest[i + 1]) : rest[i + 1];
}

const here = path.dirname(fileURLToPath(import.meta.url));
const oracleDir = process.env.SEQIT_BENCH_ORACLE_DIR ?? path.join(here, '..', 'build', 'bench-oracles');
if (!fs.existsSync(path.join(oracleDir, 'node_modules', 'node-llama-cpp'))) {
  console.error(`llama_cpp_reference: node-llama-cpp is not installed in ${oracleDir} (run scripts/bench-oracles)`);
  process.exit(3);
}
const require = createRequire(path.join(oracleDir, 'package.json'));
const { getLlama, LlamaLogLevel, GgmlType } = await import(require.resolve('node-llama-cpp'));

// maxThreads 0: a context's `threads` is then exactly the number of threads llama.cpp uses. Log lines
// at info level are kept (llama_perf_context_print's timings arrive that way); errors go to stderr.
let logLines = [];
const allLogLines = [];
const llama = await getLlama({
  gpu: false, build: 'never', usePrebuiltBinaries: true, skipDownload: true, progressLogs: false, maxThreads: 0,
  logLevel: LlamaLogLevel.info,
  logger: (level, message) => {
    if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) console.error(message);
    logLines.push(message);
    allLogLines.push(message);
  },
});
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });

// Which of the prebuilt CPU backend variants (libggml-cpu-<arch>.so) ggml picked for this CPU.
function loadedCpuVariant() {
  const maps = fs.readFileSync('/proc/self/maps', 'utf8');
  const found = new Set([...maps.matchAll(/libggml-cpu-([\w.-]+?)\.so/g)].map((m) => m[1]));
  return [...found].join(',') || 'unknown';
}

const now = () => Number(process.hrtime.bigint()) / 1e9;

async function createContext(contextSize, batchSize, sequences) {
  return await model.createContext({
    contextSize, batchSize, sequences, threads: options.threads, ignoreMemorySafetyChecks: true,
    performanceTracking: true,
  });
}

// Seconds and tokens spent in llama_decode since the last call (llama_perf_context_print, then reset):
// its "prompt eval" (decodes of several tokens) and "eval" (one-token decodes) lines together.
async function decodeCounters(context) {
  logLines = [];
  await context.printTimings();
  let ms = 0, tokens = 0, found = 0;
  for (const line of logLines) {
    const m = line.match(/(prompt eval|\beval) time =\s*([\d.]+) ms \/\s*(\d+) (tokens|runs)/);
    if (!m) continue;
    ++found;
    const t = Number(m[2]);
    if (t > 0) ms += t, tokens += Number(m[3]);  // an empty counter still prints 1 token
  }
  if (found !== 2) throw new Error(`llama.cpp's timings were not printed as expected: ${JSON.stringify(logLines)}`);
  return { seconds: ms / 1000, tokens };
}

// One greedy step for each sequence: feeds its token, returns the argmax of the logits after it.
async function step(sequences, tokens) {
  const outputs = await Promise.all(sequences.map((seq, s) =>
    seq.controlledEvaluate([[tokens[s], { generateNext: { token: true, options: { temperature: 0 } } }]])));
  return outputs.map((out) => out[0].next.token);
}

if (mode === 'check') {
  const context = await createContext(256, 256, 1);
  const seq = context.getSequence();
  const prompt = [model.tokens.bos, ...model.tokenize(options.prompt)];
  const out = await seq.controlledEvaluate(prompt.map((t, i) =>
    i + 1 < prompt.length ? t : [t, { generateNext: { token: true, options: { temperature: 0 } } }]));
  const generated = [out[prompt.length - 1].next.token];
  while (generated.length < options.tokens) generated.push((await step([seq], [generated.at(-1)]))[0]);
  console.log(JSON.stringify({
    prompt: options.prompt, prompt_ids: prompt, generated_ids: generated,
    text: model.detokenize(generated), cpu_variant: loadedCpuVariant(),
  }));
  process.exit(0);
}

// Token ids must be below the vocabulary's size, which llama.cpp takes from tokenizer.ggml.tokens.
const vocab = model.fileInfo.metadata.tokenizer?.ggml?.tokens?.length;
if (!vocab) throw new Error(`${modelPath} has no tokenizer.ggml.tokens: llama.cpp needs a vocabulary`);
const idAt = (i) => (i * 7919 + 13) % vocab;
const result = {
  llama_cpp_release: llama.llamaCppRelease.release, build: llama.buildType, threads: options.threads,
  system_info: llama.systemInfo,
};

{  // Prefill.
  const n = options.prefillTokens;
  const context = await createContext(n + 64, n, 1);
  result.kv_cache_type = GgmlType[context.kvCacheKeyType];
  result.context_threads = context.idealThreads;
  const seq = context.getSequence();
  const prompt = Array.from({ length: n }, (_, i) => idAt(i));
  const items = prompt.map((t, i) => (i + 1 < n ? t : [t, { generateNext: { token: true } }]));
  let best = Infinity, bestWall = Infinity;
  for (let rep = 0; rep <= options.prefillReps; ++rep) {
    await seq.clearHistory();
    await decodeCounters(context);
    const t0 = now();
    await seq.controlledEvaluate(items);
    const wall = now() - t0;
    const inside = await decodeCounters(context);
    if (inside.tokens !== n) throw new Error(`prefill decoded ${inside.tokens} tokens, not ${n}`);
    if (rep > 0) best = Math.min(best, inside.seconds), bestWall = Math.min(bestWall, wall);  // rep 0 warms up
    // "auto" resolves when the first graph is reserved; llama.cpp says what it chose.
    if (rep === 0) result.flash_attention = /Flash Attention enabled/.test(allLogLines.join('\n'));
  }
  result.prefill_tokens = n;
  result.prefill_tps = n / best;
  result.prefill_wall_tps = n / bestWall;
  await context.dispose();
}

// Decode of `count` sequences in one context, each after its own prompt of promptTokens ids.
async function decode(count) {
  const ctxSize = options.promptTokens + options.warmupTokens + options.decodeTokens + 8;
  const context = await createContext(ctxSize, Math.max(count * options.promptTokens, count), count);
  const seqs = Array.from({ length: count }, () => context.getSequence());
  let next = await Promise.all(seqs.map(async (seq, s) => {
    const prompt = Array.from({ length: options.promptTokens }, (_, i) => idAt(s + i));
    const out = await seq.controlledEvaluate(prompt.map((t, i) =>
      i + 1 < prompt.length ? t : [t, { generateNext: { token: true, options: { temperature: 0 } } }]));
    return out[prompt.length - 1].next.token;
  }));
  for (let i = 0; i < options.warmupTokens; ++i) next = await step(seqs, next);
  await decodeCounters(context);
  const t0 = now();
  for (let i = 0; i < options.decodeTokens; ++i) next = await step(seqs, next);
  const wall = now() - t0;
  const inside = await decodeCounters(context);
  await context.dispose();
  const tokens = count * options.decodeTokens;
  // One llama_decode per step with all `count` sequences' tokens, or the batching did not happen.
  if (inside.tokens !== tokens) throw new Error(`decode of ${count} sequences: ${inside.tokens} tokens, not ${tokens}`);
  return { tps: tokens / inside.seconds, wall_tps: tokens / wall };
}
result.decode_tokens = options.decodeTokens;
const single = await decode(1);
result.decode_tps = single.tps;
result.decode_wall_tps = single.wall_tps;
result.sequences = options.sequences;
const batched = await decode(options.sequences);
result.batched_tps = batched.tps;
result.batched_wall_tps = batched.wall_tps;
result.cpu_variant = loadedCpuVariant();
console.log(JSON.stringify(result));
process.exit(0);
