// Reference tokenizers for seqit's tests and benchmark, run once per test over a batch of strings.
//   node oracle.mjs compare <models-root> <strings.json> <out.json>
//       Encodes every string of strings.json (a JSON array) with every tokenizer folder under
//       <models-root> (each holding tokenizer.json + tokenizer_config.json), add_special_tokens=true,
//       through @huggingface/tokenizers (tokenizers.js: the tokenizer engine of transformers.js 4,
//       which its AutoTokenizer wraps; the oracle) and through `tokenizers` (Hugging Face's Rust
//       library, the engine Python transformers runs, via its official Node binding), and decodes
//       the Rust ids back. Writes {name: {transformers: [[ids]], rust: [[ids]],
//       rust_decoded: [text]}}.
//   node oracle.mjs bench <models-root> <text-file> <name[:max-bytes],...> <out.json>
//       Encodes the text (or its first max-bytes bytes) with tokenizers.js, once on a prefix to warm
//       up and then timed.
// Both are loaded from build/oracles/node_modules (scripts/oracles installs them). tokenizers.js is
// loaded on its own rather than through @huggingface/transformers: the latter also loads an image
// library (sharp) that needs Node.js >= 20.9, and Debian 12 ships Node.js 18.
import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

const [mode, root, input, ...rest] = process.argv.slice(2);
const oracleDir = process.env.SEQIT_ORACLE_DIR;
if (!oracleDir) throw new Error('SEQIT_ORACLE_DIR (build/oracles) is not set');
const require = createRequire(path.join(oracleDir, 'package.json'));
const { Tokenizer: JsTokenizer } = require('@huggingface/tokenizers');

function loadOracle(name) {
  const read = (file) => JSON.parse(fs.readFileSync(path.join(root, name, file), 'utf8'));
  return new JsTokenizer(read('tokenizer.json'), read('tokenizer_config.json'));
}

if (mode === 'compare') {
  const strings = JSON.parse(fs.readFileSync(input, 'utf8'));
  const out = {};
  const { Tokenizer } = require('tokenizers');
  for (const name of fs.readdirSync(root).sort()) {
    const oracle = loadOracle(name);
    const rust = Tokenizer.fromFile(path.join(root, name, 'tokenizer.json'));
    const result = { transformers: [], rust: [], rust_decoded: [] };
    for (const s of strings) result.transformers.push(oracle.encode(s, { add_special_tokens: true }).ids);
    const encodings = await rust.encodeBatch(strings, { addSpecialTokens: true });
    for (const e of encodings) result.rust.push(Array.from(e.getIds()));
    result.rust_decoded = await rust.decodeBatch(result.rust, false);
    out[name] = result;
  }
  fs.writeFileSync(rest[0], JSON.stringify(out));
} else if (mode === 'bench') {
  const whole = fs.readFileSync(input);
  const out = {};
  for (const spec of rest[0].split(',')) {
    const [name, limit] = spec.split(':');
    let bytes = limit ? Math.min(Number(limit), whole.length) : whole.length;
    while (bytes < whole.length && (whole[bytes] & 0xc0) === 0x80) ++bytes;  // whole characters only
    const text = whole.subarray(0, bytes).toString('utf8');
    const oracle = loadOracle(name);
    oracle.encode(text.slice(0, 100000), { add_special_tokens: false });
    const t0 = process.hrtime.bigint();
    const ids = oracle.encode(text, { add_special_tokens: false }).ids;
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    out[name] = { seconds, tokens: ids.length, bytes: Buffer.byteLength(text, 'utf8'), ids: Array.from(ids) };
  }
  fs.writeFileSync(rest[1], JSON.stringify(out));
} else {
  throw new Error('usage: oracle.mjs compare|bench ...');
}
