// Renders chat-template cases with @huggingface/jinja (the reference the chat tests compare
// against). Usage: node jinja_oracle.cjs <node_modules dir> <cases.json> <results.json>
// cases.json: {"now_ms": <fixed clock for strftime_now>, "cases": [{"id", "template", "context"}]}
// results.json: [{"id", "ok": true, "text"} | {"id", "ok": false, "error"}], one per case.
"use strict";
const fs = require("fs");
const path = require("path");
const [, , modules, casesPath, outPath] = process.argv;
const { Template } = require(path.join(modules, "@huggingface", "jinja"));
const input = JSON.parse(fs.readFileSync(casesPath, "utf8"));

// strftime_now() reads `new Date()`: pin the clock so every reference renders the same date.
const RealDate = Date;
const fixed = input.now_ms;
global.Date = class extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(fixed);
    else super(...args);
  }
  static now() {
    return fixed;
  }
};

const compiled = new Map();
const results = [];
for (const c of input.cases) {
  try {
    let t = compiled.get(c.template);
    if (t === undefined) {
      try {
        t = new Template(c.template);
      } catch (e) {
        t = e;
      }
      compiled.set(c.template, t);
    }
    if (t instanceof Error) throw t;
    results.push({ id: c.id, ok: true, text: t.render(c.context) });
  } catch (e) {
    results.push({ id: c.id, ok: false, error: String(e && e.message ? e.message : e) });
  }
}
fs.writeFileSync(outPath, JSON.stringify(results));
