// The tree-walking evaluator (internal to src/chat/): scopes, statements, expressions, and the
// builtin filters, tests, methods and globals of jinja2 as Hugging Face configures it (an
// ImmutableSandboxedEnvironment with loop controls, raise_exception, strftime_now, and a tojson
// filter that calls json.dumps without escaping non-ASCII).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace seqit::chat::jinja {

// Provenance tag of the output of {% generation %} blocks (assistant tags are >= 0).
constexpr int32_t kGenerationTag = -1;

// raise_exception(message) inside the template.
struct RaisedByTemplate {
  std::string message;
};

struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> kwargs;

  const Value* kwarg(std::string_view name) const;
  // Argument `index` given positionally or as keyword `name`; nullptr when absent.
  const Value* get(size_t index, std::string_view name) const;
  Value get_or(size_t index, std::string_view name, Value fallback) const;
  // Throws when more than `max_positional` positional arguments or an unknown keyword is given.
  void check(std::string_view function, size_t max_positional,
             std::initializer_list<std::string_view> keywords) const;
};

struct Scope {
  std::shared_ptr<Scope> parent;
  std::vector<std::pair<std::string, Value>> vars;

  explicit Scope(std::shared_ptr<Scope> p = nullptr) : parent(std::move(p)) {}
  const Value* find(std::string_view name) const;
  void set(std::string_view name, Value value);
};

struct InterpreterSettings {
  // strftime_now() reads this instead of the clock when set (seconds since the epoch, UTC), so
  // renders are reproducible.
  std::optional<int64_t> now_unix;
};

// Budgets of one render: a template is data from a model folder, and must not be able to crash or
// hang the process. Real chat templates stay far below them (a few levels, one loop over messages).
inline constexpr int kMaxTemplateDepth = 200;           // nested blocks, macro and loop() calls
inline constexpr int64_t kMaxLoopIterations = 1000000;  // for-loop iterations, all loops

class Interpreter {
 public:
  Interpreter(const Program& program, InterpreterSettings settings);

  // Renders the program with `variables` (name -> value) visible above the builtins.
  StringData render(const std::vector<std::pair<std::string, Value>>& variables);

  // ---- used by the builtins
  Value call(const Value& callee, CallArgs& args);
  Value apply_filter(std::string_view name, const Value& operand, CallArgs& args);
  bool apply_test(std::string_view name, const Value& operand, CallArgs& args);
  bool has_filter(std::string_view name) const;
  bool has_test(std::string_view name) const;
  // jinja2's getattr (`a.b`: attribute first, then item) and getitem (`a[b]`: item first).
  Value get_attribute(const Value& object, std::string_view name);
  Value get_item(const Value& object, const Value& key);
  const InterpreterSettings& settings() const { return settings_; }

 private:
  enum class Flow { Normal, Break, Continue };

  Flow exec_body(const Body& body, const std::shared_ptr<Scope>& scope);
  Flow exec(const Stmt& s, const std::shared_ptr<Scope>& scope);
  void exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope, const Value& iterable,
                int depth);
  void assign(const Expr& target, const Value& value, const std::shared_ptr<Scope>& scope);
  Value capture(const Body& body, const std::shared_ptr<Scope>& scope);
  Value make_macro(const Stmt& s, const std::shared_ptr<Scope>& defining, std::string name);

  Value eval(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope);
  void eval_args(const Expr& e, const std::shared_ptr<Scope>& scope, CallArgs& out);
  Value eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope);
  Value eval_filter(const Expr& e, const Value& operand, const std::shared_ptr<Scope>& scope);
  void write(const Value& v);

  [[noreturn]] void fail_at(const Expr& e, const std::string& message) const;
  [[noreturn]] void fail_at(int line, int column, const std::string& message) const;

  const Program& program_;
  InterpreterSettings settings_;
  std::shared_ptr<Scope> globals_;
  std::vector<StringData> outputs_;  // output stack: captures push, the top is written to
  int depth_ = 0;                    // exec_body nesting now
  int64_t iterations_ = 0;           // loop iterations in this render
};

// ---- builtins (jinja_builtins.cpp; FilterFn and TestFn are declared in jinja_ast.h)
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);
// A bound method of a str, list or dict (Python's); nullopt when there is none. Methods that
// would modify a list or dict give the sandbox's failing Undefined.
std::optional<Value> find_method(const Value& object, std::string_view name);
// range, dict, namespace, cycler, joiner, raise_exception, strftime_now.
std::vector<std::pair<std::string, Value>> builtin_globals();

// ---- Python-semantics helpers shared by the evaluator and the builtins
// Elements of an iterable (list/tuple items, dict keys, string characters; Undefined is empty).
std::vector<Value> iterate(const Value& v);
// Python len().
int64_t length_of(const Value& v);
// Python `item in container`.
bool contains(const Value& container, const Value& item);
// Number of code points of a UTF-8 string, and the byte offset of each code point (plus the end).
std::vector<size_t> code_point_offsets(std::string_view s);
size_t code_point_count(std::string_view s);
// `value[start:stop:step]` on a list, tuple or string.
Value slice_value(const Value& v, const Value& start, const Value& stop, const Value& step);
// str(value) with provenance when value is a string.
Value to_string_value(const Value& v);
// The error for using an Undefined in an operation.
[[noreturn]] void throw_undefined(const Value& v);
// `format % args` (printf-style) and `format.format(*args, **kwargs)`.
std::string percent_format(const std::string& format, const Value& args);
std::string brace_format(Interpreter& in, const std::string& format, CallArgs& args);

}  // namespace seqit::chat::jinja
