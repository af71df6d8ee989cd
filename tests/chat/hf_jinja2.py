"""Renders chat-template cases with Python jinja2 configured as Hugging Face transformers does in
apply_chat_template (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loop controls, the
{% generation %} tag, raise_exception, strftime_now, and a tojson filter that calls json.dumps
without ASCII escaping). This is the referee for the cases where @huggingface/jinja differs from
Python. Usage: python3 hf_jinja2.py <cases.json> <results.json> (formats as jinja_oracle.cjs)."""
import json
import sys
from datetime import datetime, timezone

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class GenerationTag(jinja2.ext.Extension):
    """{% generation %}...{% endgeneration %}: renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def main():
    cases_path, out_path = sys.argv[1], sys.argv[2]
    with open(cases_path, encoding="utf-8") as f:
        data = json.load(f)
    now = datetime.fromtimestamp(data["now_ms"] / 1000, tz=timezone.utc)

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: now.strftime(fmt)

    compiled = {}
    results = []
    for case in data["cases"]:
        try:
            t = compiled.get(case["template"])
            if t is None:
                try:
                    t = env.from_string(case["template"])
                except Exception as e:  # noqa: BLE001 - reported per case
                    t = e
                compiled[case["template"]] = t
            if isinstance(t, Exception):
                raise t
            results.append({"id": case["id"], "ok": True, "text": t.render(**case["context"])})
        except Exception as e:  # noqa: BLE001 - reported per case
            results.append({"id": case["id"], "ok": False, "error": "%s: %s" % (type(e).__name__, e)})
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(results, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
