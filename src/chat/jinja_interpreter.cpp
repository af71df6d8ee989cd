#include "chat/jinja_interpreter.h"

#include <algorithm>
#include <cmath>

#include "chat/jinja.h"
#include "util/error.h"

namespace seqit::chat::jinja {

// ---------------------------------------------------------------------------------------------
// CallArgs and Scope

const Value* CallArgs::kwarg(std::string_view name) const {
  for (const auto& [k, v] : kwargs) {
    if (k == name) return &v;
  }
  return nullptr;
}

const Value* CallArgs::get(size_t index, std::string_view name) const {
  if (index < positional.size()) return &positional[index];
  return name.empty() ? nullptr : kwarg(name);
}

Value CallArgs::get_or(size_t index, std::string_view name, Value fallback) const {
  const Value* v = get(index, name);
  return v ? *v : std::move(fallback);
}

void CallArgs::check(std::string_view function, size_t max_positional,
                     std::initializer_list<std::string_view> keywords) const {
  if (positional.size() > max_positional) {
    throw EvalError(std::string(function) + "() takes at most " + std::to_string(max_positional) +
                    " positional argument(s) (" + std::to_string(positional.size()) + " given)");
  }
  for (const auto& [k, v] : kwargs) {
    if (std::find(keywords.begin(), keywords.end(), k) == keywords.end()) {
      throw EvalError(std::string(function) + "() got an unexpected keyword argument '" + k + "'");
    }
  }
}

const Value* Scope::find(std::string_view name) const {
  for (const Scope* s = this; s; s = s->parent.get()) {
    for (const auto& [k, v] : s->vars) {
      if (k == name) return &v;
    }
  }
  return nullptr;
}

void Scope::set(std::string_view name, Value value) {
  for (auto& [k, v] : vars) {
    if (k == name) {
      v = std::move(value);
      return;
    }
  }
  vars.emplace_back(std::string(name), std::move(value));
}

// ---------------------------------------------------------------------------------------------
// Python helpers

std::vector<size_t> code_point_offsets(std::string_view s) {
  std::vector<size_t> offsets;
  offsets.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    offsets.push_back(i);
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    i = std::min(i + n, s.size());
  }
  offsets.push_back(s.size());
  return offsets;
}

size_t code_point_count(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

[[noreturn]] void throw_undefined(const Value& v) {
  throw EvalError(v.undefined_hint());
}

std::vector<Value> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return {};
    case Value::Kind::List:
      return v.items();
    case Value::Kind::Dict: {
      std::vector<Value> keys;
      for (const auto& [k, val] : v.dict_data().items) keys.push_back(k);
      return keys;
    }
    case Value::Kind::String: {
      std::vector<Value> chars;
      auto offsets = code_point_offsets(v.str());
      for (size_t i = 0; i + 1 < offsets.size(); ++i)
        chars.push_back(substring(v, offsets[i], offsets[i + 1]));
      return chars;
    }
    default:
      throw EvalError("'" + v.type_name() + "' object is not iterable");
  }
}

int64_t length_of(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::Undefined:
      return 0;
    case Value::Kind::String:
      return int64_t(code_point_count(v.str()));
    case Value::Kind::List:
      return int64_t(v.items().size());
    case Value::Kind::Dict:
      return int64_t(v.dict_data().items.size());
    default:
      throw EvalError("object of type '" + v.type_name() + "' has no len()");
  }
}

bool contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::String:
      if (item.is_undefined()) throw_undefined(item);
      if (!item.is_string()) {
        throw EvalError("'in <string>' requires string as left operand, not " + item.type_name());
      }
      return container.str().find(item.str()) != std::string::npos;
    case Value::Kind::List:
      for (const auto& x : container.items()) {
        if (equals(x, item)) return true;
      }
      return false;
    case Value::Kind::Dict:
      return container.dict_data().find(item) != nullptr;
    case Value::Kind::Undefined:
      return false;
    default:
      throw EvalError("argument of type '" + container.type_name() + "' is not iterable");
  }
}

Value to_string_value(const Value& v) {
  if (v.is_string()) return v;
  return Value(to_str(v));
}

namespace {

int64_t slice_index(const Value& v, const char* what) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  throw EvalError(std::string("slice ") + what + " must be an integer or None, not " +
                  v.type_name());
}

}  // namespace

Value slice_value(const Value& v, const Value& start_v, const Value& stop_v, const Value& step_v) {
  bool has_start = !start_v.is_none() && !start_v.is_undefined();
  bool has_stop = !stop_v.is_none() && !stop_v.is_undefined();
  bool has_step = !step_v.is_none() && !step_v.is_undefined();
  int64_t step = has_step ? slice_index(step_v, "step") : 1;
  if (step == 0) throw EvalError("slice step cannot be zero");
  std::vector<size_t> offsets;
  int64_t n;
  if (v.is_string()) {
    offsets = code_point_offsets(v.str());
    n = int64_t(offsets.size()) - 1;
  } else if (v.is_list()) {
    n = int64_t(v.items().size());
  } else if (v.is_undefined()) {
    throw_undefined(v);
  } else {
    throw EvalError("'" + v.type_name() + "' object is not subscriptable");
  }
  // Python's PySlice_AdjustIndices.
  auto adjust = [&](bool has, const Value& x, int64_t fallback_pos, int64_t fallback_neg) {
    if (!has) return step > 0 ? fallback_pos : fallback_neg;
    int64_t i = slice_index(x, "indices");
    if (i < 0) {
      i += n;
      if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= n) {
      i = step < 0 ? n - 1 : n;
    }
    return i;
  };
  int64_t start = adjust(has_start, start_v, 0, n - 1);
  int64_t stop = adjust(has_stop, stop_v, n, -1);
  std::vector<int64_t> picks;
  if (step > 0) {
    for (int64_t i = start; i < stop; i += step) picks.push_back(i);
  } else {
    for (int64_t i = start; i > stop; i += step) picks.push_back(i);
  }
  if (v.is_string()) {
    if (step == 1) {
      if (picks.empty()) return Value(std::string());
      return substring(v, offsets[size_t(picks.front())], offsets[size_t(picks.back()) + 1]);
    }
    StringData out;
    for (int64_t i : picks) {
      Value ch = substring(v, offsets[size_t(i)], offsets[size_t(i) + 1]);
      append_string(out, ch.string_data());
    }
    return Value(std::move(out));
  }
  std::vector<Value> items;
  for (int64_t i : picks) items.push_back(v.items()[size_t(i)]);
  return Value::list(std::move(items), v.is_tuple());
}

// ---------------------------------------------------------------------------------------------
// Interpreter

Interpreter::Interpreter(const Program& program, InterpreterSettings settings)
    : program_(program), settings_(std::move(settings)) {
  // The builtin functions are stateless: one shared, never-modified scope serves every render.
  static const std::shared_ptr<Scope> builtins = [] {
    auto scope = std::make_shared<Scope>();
    scope->vars = builtin_globals();
    return scope;
  }();
  globals_ = builtins;
}

StringData Interpreter::render(const std::vector<std::pair<std::string, Value>>& variables) {
  depth_ = 0;
  iterations_ = 0;
  auto context = std::make_shared<Scope>(globals_);
  context->vars = variables;
  auto top = std::make_shared<Scope>(context);
  outputs_.clear();
  outputs_.emplace_back();
  exec_body(program_.body, top);
  StringData out = std::move(outputs_.back());
  outputs_.clear();
  return out;
}

void Interpreter::fail_at(int line, int column, const std::string& message) const {
  throw Error(message).in_file(program_.name).at_line(line, column);
}

void Interpreter::fail_at(const Expr& e, const std::string& message) const {
  fail_at(e.line, e.column, message);
}

void Interpreter::write(const Value& v) {
  StringData& out = outputs_.back();
  if (v.is_string()) {
    append_string(out, v.string_data());
  } else if (!v.is_undefined()) {
    out.text += to_str(v);
  }
}

Value Interpreter::capture(const Body& body, const std::shared_ptr<Scope>& scope) {
  outputs_.emplace_back();
  try {
    exec_body(body, scope);
  } catch (...) {
    outputs_.pop_back();
    throw;
  }
  StringData captured = std::move(outputs_.back());
  outputs_.pop_back();
  return Value(std::move(captured));
}

Interpreter::Flow Interpreter::exec_body(const Body& body, const std::shared_ptr<Scope>& scope) {
  // Nested bodies (blocks, loops, macro calls, loop() recursion) are C++ recursion: a template
  // that calls itself without end must stop with an error, not overflow the stack.
  struct Depth {
    int& d;
    explicit Depth(int& depth) : d(depth) { ++d; }
    ~Depth() { --d; }
  } depth(depth_);
  if (depth_ > kMaxTemplateDepth) {
    const int line = body.empty() ? 0 : body.front()->line;
    const int column = body.empty() ? 0 : body.front()->column;
    fail_at(line, column,
            "the template nests deeper than " + std::to_string(kMaxTemplateDepth) +
                " levels (a macro or loop() that calls itself without end?)");
  }
  for (const auto& s : body) {
    Flow f = Flow::Normal;
    try {
      f = exec(*s, scope);
    } catch (const EvalError& err) {
      // What no expression caught (unpacking in set/for, iterating a non-sequence, ...): located
      // at the statement.
      fail_at(s->line, s->column, err.what());
    }
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

void Interpreter::assign(const Expr& target, const Value& value,
                         const std::shared_ptr<Scope>& scope) {
  switch (target.kind) {
    case Expr::Kind::Name:
      scope->set(target.name, value);
      return;
    case Expr::Kind::Tuple: {
      std::vector<Value> items = iterate(value);
      if (items.size() != target.children.size()) {
        fail_at(target, items.size() < target.children.size()
                            ? "not enough values to unpack (expected " +
                                  std::to_string(target.children.size()) + ", got " +
                                  std::to_string(items.size()) + ")"
                            : "too many values to unpack (expected " +
                                  std::to_string(target.children.size()) + ")");
      }
      for (size_t i = 0; i < items.size(); ++i) assign(*target.children[i], items[i], scope);
      return;
    }
    case Expr::Kind::Attribute: {
      const Expr& obj_expr = *target.children[0];
      const Value* obj = scope->find(obj_expr.name);
      if (!obj || !obj->is_object() || !obj->object_data().assignable) {
        fail_at(target, "cannot assign attribute on non-namespace object");
      }
      const_cast<Value*>(obj)->object_data().set(target.name, value);
      return;
    }
    default:
      fail_at(target, "cannot assign to this expression");
  }
}

Value Interpreter::make_macro(const Stmt& s, const std::shared_ptr<Scope>& defining,
                              std::string name) {
  const Stmt* macro = &s;
  std::weak_ptr<Scope> weak_defining = defining;
  // The macro holds its defining scope strongly unless it is stored in that same scope (the usual
  // case), where a strong reference would be a cycle; that scope outlives every call through it.
  bool stored_in_defining = s.kind == Stmt::Kind::Macro;
  std::shared_ptr<Scope> strong = stored_in_defining ? nullptr : defining;
  return Value::function(
      name, [this, macro, weak_defining, strong, name](Interpreter&, CallArgs& args) {
        std::shared_ptr<Scope> parent = strong ? strong : weak_defining.lock();
        auto scope = std::make_shared<Scope>(parent);
        const auto& params = macro->params;
        std::vector<bool> bound(params.size(), false);
        std::vector<Value> varargs;
        for (size_t i = 0; i < args.positional.size(); ++i) {
          if (i < params.size()) {
            scope->set(params[i].name, args.positional[i]);
            bound[i] = true;
          } else if (macro->uses_varargs) {
            varargs.push_back(args.positional[i]);
          } else {
            throw EvalError("macro '" + name + "' takes not more than " +
                            std::to_string(params.size()) + " argument(s)");
          }
        }
        std::vector<std::pair<Value, Value>> kwargs;
        for (const auto& [k, v] : args.kwargs) {
          // `key` rather than `k` in the lambda: clang before 16 cannot capture a structured
          // binding (the fuzz build uses clang 14).
          auto it = std::find_if(params.begin(), params.end(),
                                 [&key = k](const Parameter& p) { return p.name == key; });
          if (it != params.end()) {
            size_t i = size_t(it - params.begin());
            if (bound[i])
              throw EvalError("macro '" + name + "' got multiple values for argument '" + k + "'");
            scope->set(k, v);
            bound[i] = true;
          } else if (k == "caller") {
            scope->set("caller", v);
          } else if (macro->uses_kwargs) {
            kwargs.emplace_back(Value(k), v);
          } else {
            throw EvalError("macro '" + name + "' takes no keyword argument '" + k + "'");
          }
        }
        if (macro->uses_varargs) scope->set("varargs", Value::list(std::move(varargs), true));
        if (macro->uses_kwargs) scope->set("kwargs", Value::dict(std::move(kwargs)));
        for (size_t i = 0; i < params.size(); ++i) {
          if (bound[i]) continue;
          if (params[i].default_value) {
            scope->set(params[i].name, eval(*params[i].default_value, scope));
          } else {
            scope->set(params[i].name,
                       Value::undefined("parameter '" + params[i].name + "' was not provided"));
          }
        }
        if (macro->uses_caller && !args.kwarg("caller")) {
          scope->set("caller", Value::undefined("no caller defined"));
        }
        return capture(macro->body, scope);
      });
}

Interpreter::Flow Interpreter::exec(const Stmt& s, const std::shared_ptr<Scope>& scope) {
  switch (s.kind) {
    case Stmt::Kind::Text:
      outputs_.back().text += s.text;
      return Flow::Normal;
    case Stmt::Kind::Output:
      write(eval(*s.expr, scope));
      return Flow::Normal;
    case Stmt::Kind::If:
      return exec_body(eval(*s.expr, scope).truthy() ? s.body : s.else_body, scope);
    case Stmt::Kind::For:
      exec_for(s, scope, eval(*s.expr, scope), 1);
      return Flow::Normal;
    case Stmt::Kind::Set:
      assign(*s.target, eval(*s.expr, scope), scope);
      return Flow::Normal;
    case Stmt::Kind::SetBlock: {
      Value v = capture(s.body, scope);
      if (s.filter) v = eval_filter(*s.filter, v, scope);
      scope->set(s.text, v);
      return Flow::Normal;
    }
    case Stmt::Kind::Macro:
      scope->set(s.text, make_macro(s, scope, s.text));
      return Flow::Normal;
    case Stmt::Kind::CallBlock: {
      Value caller = make_macro(s, scope, "caller");
      const Expr& call = *s.expr;
      Value callee = eval(*call.children[0], scope);
      CallArgs args;
      eval_args(call, scope, args);
      args.kwargs.emplace_back("caller", caller);
      try {
        write(this->call(callee, args));
      } catch (const EvalError& err) {
        fail_at(call, err.what());
      } catch (const RaisedByTemplate& r) {
        throw TemplateRaisedError(r.message, call.line, call.column, program_.name);
      }
      return Flow::Normal;
    }
    case Stmt::Kind::FilterBlock:
      write(eval_filter(*s.filter, capture(s.body, scope), scope));
      return Flow::Normal;
    case Stmt::Kind::With: {
      auto inner = std::make_shared<Scope>(scope);
      for (const auto& [target, value] : s.assignments) assign(*target, eval(*value, scope), inner);
      return exec_body(s.body, inner);
    }
    case Stmt::Kind::Generation: {
      size_t begin = outputs_.back().text.size();
      Flow f = exec_body(s.body, scope);
      StringData& out = outputs_.back();
      if (out.text.size() > begin) {
        Provenance p{uint32_t(begin), uint32_t(out.text.size()), kGenerationTag};
        auto pos = std::upper_bound(
            out.provenance.begin(), out.provenance.end(), p,
            [](const Provenance& a, const Provenance& b) { return a.begin < b.begin; });
        out.provenance.insert(pos, p);
      }
      return f;
    }
    case Stmt::Kind::Break:
      return Flow::Break;
    case Stmt::Kind::Continue:
      return Flow::Continue;
  }
  return Flow::Normal;
}

void Interpreter::exec_for(const Stmt& s, const std::shared_ptr<Scope>& scope,
                           const Value& iterable, int depth) {
  std::vector<Value> items;
  try {
    if (iterable.is_undefined()) {
      // jinja2's Undefined iterates as empty
    } else {
      items = iterate(iterable);
    }
  } catch (const EvalError& err) {
    fail_at(*s.expr, err.what());
  }
  auto loop_scope = std::make_shared<Scope>(scope);
  if (s.filter) {
    std::vector<Value> kept;
    for (auto& item : items) {
      assign(*s.target, item, loop_scope);
      if (eval(*s.filter, loop_scope).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  const int64_t n = int64_t(items.size());
  // One loop object per loop, updated in place (jinja2's LoopContext is likewise one object). The
  // per-iteration attributes come first, in this order, so they are updated by position.
  enum { kIndex, kIndex0, kRevindex, kRevindex0, kFirst, kLast, kPrevitem, kNextitem };
  Value loop = Value::object("LoopContext",
                             {{"index", Value()},
                              {"index0", Value()},
                              {"revindex", Value()},
                              {"revindex0", Value()},
                              {"first", Value()},
                              {"last", Value()},
                              {"previtem", Value()},
                              {"nextitem", Value()},
                              {"length", Value(n)},
                              {"depth", Value(int64_t(depth))},
                              {"depth0", Value(int64_t(depth - 1))}},
                             false);
  auto last_changed = std::make_shared<std::optional<std::vector<Value>>>();
  auto current_index = std::make_shared<int64_t>(0);
  {
    ObjectData& o = loop.object_data();
    o.set("cycle", Value::function("cycle", [current_index](Interpreter&, CallArgs& args) {
            if (args.positional.empty()) throw EvalError("no items for cycling given");
            return args.positional[size_t(*current_index % int64_t(args.positional.size()))];
          }));
    o.set("changed", Value::function("changed", [last_changed](Interpreter&, CallArgs& args) {
            bool changed = true;
            if (*last_changed) {
              const auto& prev = **last_changed;
              changed = prev.size() != args.positional.size();
              for (size_t i = 0; !changed && i < prev.size(); ++i)
                changed = !equals(prev[i], args.positional[i]);
            }
            *last_changed = args.positional;
            return Value(changed);
          }));
    if (s.recursive) {
      const Stmt* stmt = &s;
      std::weak_ptr<Scope> weak_scope = scope;
      o.set("__call__",
            Value::function("loop", [this, stmt, weak_scope, depth](Interpreter&, CallArgs& args) {
              if (args.positional.size() != 1) throw EvalError("loop() takes exactly one argument");
              outputs_.emplace_back();
              exec_for(*stmt, weak_scope.lock(), args.positional[0], depth + 1);
              StringData out = std::move(outputs_.back());
              outputs_.pop_back();
              return Value(std::move(out));
            }));
    }
  }
  loop_scope->set("loop", loop);
  for (int64_t i = 0; i < n; ++i) {
    *current_index = i;
    auto& a = loop.object_data().attributes;
    a[kIndex].second = Value(i + 1);
    a[kIndex0].second = Value(i);
    a[kRevindex].second = Value(n - i);
    a[kRevindex0].second = Value(n - i - 1);
    a[kFirst].second = Value(i == 0);
    a[kLast].second = Value(i == n - 1);
    static const Value no_previous = Value::undefined("there is no previous item");
    static const Value no_next = Value::undefined("there is no next item");
    a[kPrevitem].second = i > 0 ? items[size_t(i - 1)] : no_previous;
    a[kNextitem].second = i + 1 < n ? items[size_t(i + 1)] : no_next;
    if (++iterations_ > kMaxLoopIterations)
      fail_at(s.line, s.column,
              "the template ran more than " + std::to_string(kMaxLoopIterations) +
                  " loop iterations in one render (nested loops over large ranges?)");
    assign(*s.target, items[size_t(i)], loop_scope);
    Flow f = exec_body(s.body, loop_scope);
    if (f == Flow::Break) break;
  }
  if (n == 0) exec_body(s.else_body, loop_scope);
}

// ---------------------------------------------------------------------------------------------
// Expressions

void Interpreter::eval_args(const Expr& e, const std::shared_ptr<Scope>& scope, CallArgs& out) {
  for (const auto& a : e.args) out.positional.push_back(eval(*a, scope));
  if (e.star_args) {
    for (auto& v : iterate(eval(*e.star_args, scope))) out.positional.push_back(std::move(v));
  }
  for (const auto& [k, v] : e.kwargs) out.kwargs.emplace_back(k, eval(*v, scope));
  if (e.star_kwargs) {
    Value d = eval(*e.star_kwargs, scope);
    if (!d.is_dict()) throw EvalError("argument after ** must be a mapping, not " + d.type_name());
    for (const auto& [k, v] : d.dict_data().items) {
      if (!k.is_string()) throw EvalError("keywords must be strings");
      out.kwargs.emplace_back(k.str(), v);
    }
  }
}

Value Interpreter::eval(const Expr& e, const std::shared_ptr<Scope>& scope) {
  try {
    return eval_inner(e, scope);
  } catch (const EvalError& err) {
    fail_at(e, err.what());
  } catch (const RaisedByTemplate& r) {
    throw TemplateRaisedError(r.message, e.line, e.column, program_.name);
  }
}

Value Interpreter::call(const Value& callee, CallArgs& args) {
  if (callee.is_function()) return callee.function_data().call(*this, args);
  if (callee.is_object()) {
    if (const Value* f = callee.object_data().find("__call__"))
      return f->function_data().call(*this, args);
  }
  if (callee.is_undefined()) throw_undefined(callee);
  throw EvalError("'" + callee.type_name() + "' object is not callable");
}

bool Interpreter::has_filter(std::string_view name) const {
  return find_filter(name) != nullptr;
}
bool Interpreter::has_test(std::string_view name) const {
  return find_test(name) != nullptr;
}

Value Interpreter::apply_filter(std::string_view name, const Value& operand, CallArgs& args) {
  FilterFn f = find_filter(name);
  if (!f) throw EvalError("no filter named '" + std::string(name) + "'");
  return f(*this, operand, args);
}

bool Interpreter::apply_test(std::string_view name, const Value& operand, CallArgs& args) {
  TestFn t = find_test(name);
  if (!t) throw EvalError("no test named '" + std::string(name) + "'");
  return t(*this, operand, args);
}

Value Interpreter::eval_filter(const Expr& e, const Value& operand,
                               const std::shared_ptr<Scope>& scope) {
  // e is a chain: Filter(Filter(null, f), g) for filter blocks; evaluate inner-first.
  Value value = e.children[0] ? eval_filter(*e.children[0], operand, scope) : operand;
  CallArgs args;
  eval_args(e, scope, args);
  try {
    return apply_filter(e.name, value, args);
  } catch (const EvalError& err) {
    fail_at(e, err.what());
  }
}

Value Interpreter::get_attribute(const Value& object, std::string_view name) {
  switch (object.kind()) {
    case Value::Kind::Undefined:
      throw_undefined(object);
    case Value::Kind::Dict: {
      // Python looks up the attribute (a dict method) before the key; only a few names are methods.
      static constexpr std::string_view kDictMethods[] = {"get",        "items", "keys", "values",
                                                          "copy",       "clear", "pop",  "popitem",
                                                          "setdefault", "update"};
      if (std::find(std::begin(kDictMethods), std::end(kDictMethods), name) !=
          std::end(kDictMethods)) {
        if (auto m = find_method(object, name)) return *m;
      }
      if (const Value* v = object.dict_data().find(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + std::string(name) + "'");
    }
    case Value::Kind::Object: {
      if (const Value* v = object.object_data().find(name)) return *v;
      return Value::undefined("'" + object.object_data().kind + " object' has no attribute '" +
                              std::string(name) + "'");
    }
    case Value::Kind::String:
    case Value::Kind::List: {
      if (auto m = find_method(object, name)) return *m;
      return Value::undefined("'" + object.type_name() + " object' has no attribute '" +
                              std::string(name) + "'");
    }
    default:
      return Value::undefined("'" + to_str(object) + "' has no attribute '" + std::string(name) +
                              "'");
  }
}

Value Interpreter::get_item(const Value& object, const Value& key) {
  switch (object.kind()) {
    case Value::Kind::Undefined:
      throw_undefined(object);
    case Value::Kind::Dict:
      if (const Value* v = object.dict_data().find(key)) return *v;
      if (key.is_string()) {
        if (auto m = find_method(object, key.str())) return *m;
      }
      return Value::undefined("'dict object' has no attribute " + to_repr(key));
    case Value::Kind::List:
    case Value::Kind::String: {
      if (key.is_int() || key.is_bool()) {
        int64_t n = length_of(object);
        int64_t i = key.as_int();
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
          return Value::undefined("'" + object.type_name() + " object' has no element " +
                                  to_str(key));
        }
        if (object.is_list()) return object.items()[size_t(i)];
        auto offsets = code_point_offsets(object.str());
        return substring(object, offsets[size_t(i)], offsets[size_t(i) + 1]);
      }
      if (key.is_string()) return get_attribute(object, key.str());
      return Value::undefined("'" + object.type_name() + " object' has no element " + to_repr(key));
    }
    case Value::Kind::Object:
      if (key.is_string()) return get_attribute(object, key.str());
      return Value::undefined("'" + object.object_data().kind + " object' has no attribute " +
                              to_repr(key));
    default:
      return Value::undefined("'" + object.type_name() + " object' has no attribute " +
                              to_repr(key));
  }
}

namespace {

std::string operand_types(const char* op, const Value& a, const Value& b) {
  return std::string("unsupported operand type(s) for ") + op + ": '" + a.type_name() + "' and '" +
         b.type_name() + "'";
}

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

int64_t python_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  if (r != 0 && ((r < 0) != (b < 0))) r += b;
  return r;
}

// The largest string or list a template may build by repetition ("a" * 10**10 would exhaust
// memory).
constexpr int64_t kMaxRepeatBytes = int64_t(64) << 20;
constexpr int64_t kMaxRepeatItems = int64_t(1) << 22;

Value repeat(const Value& seq, int64_t count) {
  if (count < 0) count = 0;
  const int64_t unit = seq.is_string() ? static_cast<int64_t>(seq.str().size())
                                       : static_cast<int64_t>(seq.items().size());
  const int64_t limit = seq.is_string() ? kMaxRepeatBytes : kMaxRepeatItems;
  if (unit > 0 && count > limit / unit)
    throw EvalError("repeating a " + seq.type_name() + " of " + std::to_string(unit) + " " +
                    (seq.is_string() ? "bytes" : "items") + " " + std::to_string(count) +
                    " times is over the limit of " + std::to_string(limit) +
                    (seq.is_string() ? " bytes" : " items"));
  if (seq.is_string()) {
    StringData out;
    out.markup = seq.is_markup();
    for (int64_t i = 0; i < count; ++i) append_string(out, seq.string_data());
    return Value(std::move(out));
  }
  std::vector<Value> items;
  for (int64_t i = 0; i < count; ++i)
    items.insert(items.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(items), seq.is_tuple());
}

// Integer arithmetic as Python's, within 64 bits: a result that does not fit is an error, never a
// silently wrapped number (Python would give the exact, bigger integer).
[[noreturn]] void overflow(const Value& a, const char* op, const Value& b) {
  throw EvalError("integer overflow: " + to_repr(a) + " " + op + " " + to_repr(b) +
                  " does not fit in 64 bits");
}

Value int_power(const Value& a, const Value& b) {
  int64_t base = a.as_int(), e = b.as_int(), result = 1;
  while (e > 0) {
    if (e & 1) {
      if (__builtin_mul_overflow(result, base, &result)) overflow(a, "**", b);
    }
    e >>= 1;
    if (e > 0 && __builtin_mul_overflow(base, base, &base)) overflow(a, "**", b);
  }
  return Value(result);
}

Value arithmetic(Op op, const Value& a, const Value& b) {
  if (a.is_undefined()) throw_undefined(a);
  if (b.is_undefined()) throw_undefined(b);
  if (op == Op::Add) {
    if (a.is_number() && b.is_number()) {
      if (a.is_float() || b.is_float()) return Value(a.as_double() + b.as_double());
      int64_t sum;
      if (__builtin_add_overflow(a.as_int(), b.as_int(), &sum)) overflow(a, "+", b);
      return Value(sum);
    }
    if (a.is_string() && b.is_string()) {
      // markupsafe: Markup + str escapes the str (either side), and the result is Markup.
      bool markup = a.is_markup() || b.is_markup();
      StringData out = markup ? html_escape(a).string_data() : a.string_data();
      append_string(out, markup ? html_escape(b).string_data() : b.string_data());
      out.markup = markup;
      return Value(std::move(out));
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(items), a.is_tuple());
    }
    if (a.is_string())
      throw EvalError("can only concatenate str (not \"" + b.type_name() + "\") to str");
    if (a.is_list()) {
      throw EvalError("can only concatenate " + a.type_name() + " (not \"" + b.type_name() +
                      "\") to " + a.type_name());
    }
    throw EvalError(operand_types("+", a, b));
  }
  if (op == Op::Mul) {
    if (a.is_number() && b.is_number()) {
      if (a.is_float() || b.is_float()) return Value(a.as_double() * b.as_double());
      int64_t product;
      if (__builtin_mul_overflow(a.as_int(), b.as_int(), &product)) overflow(a, "*", b);
      return Value(product);
    }
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) return repeat(a, b.as_int());
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) return repeat(b, a.as_int());
    throw EvalError("can't multiply sequence by non-int of type '" + b.type_name() + "'");
  }
  if (op == Op::Mod && a.is_string()) return Value(percent_format(a.str(), b));
  if (!a.is_number() || !b.is_number()) throw EvalError(operand_types(op_text(op), a, b));
  bool floating = a.is_float() || b.is_float();
  if (op == Op::Sub) {
    if (floating) return Value(a.as_double() - b.as_double());
    int64_t difference;
    if (__builtin_sub_overflow(a.as_int(), b.as_int(), &difference)) overflow(a, "-", b);
    return Value(difference);
  }
  if (op == Op::Div) {
    if (b.as_double() == 0) throw EvalError("division by zero");
    return Value(a.as_double() / b.as_double());
  }
  if (op == Op::FloorDiv) {
    if (b.as_double() == 0) throw EvalError("integer division or modulo by zero");
    if (floating) return Value(std::floor(a.as_double() / b.as_double()));
    return Value(floor_div(a.as_int(), b.as_int()));
  }
  if (op == Op::Mod) {
    if (b.as_double() == 0) throw EvalError("integer division or modulo by zero");
    if (floating) {
      double r = std::fmod(a.as_double(), b.as_double());
      if (r != 0 && ((r < 0) != (b.as_double() < 0))) r += b.as_double();
      return Value(r);
    }
    return Value(python_mod(a.as_int(), b.as_int()));
  }
  if (op == Op::Pow) {
    if (!floating && b.as_int() >= 0) return int_power(a, b);
    if (a.as_double() == 0 && b.as_double() < 0)
      throw EvalError("0.0 cannot be raised to a negative power");
    return Value(std::pow(a.as_double(), b.as_double()));
  }
  throw EvalError(std::string("unknown operator ") + op_text(op));
}

bool compare(Op op, const Value& a, const Value& b) {
  switch (op) {
    case Op::Eq:
      return equals(a, b);
    case Op::Ne:
      return !equals(a, b);
    case Op::In:
      return contains(b, a);
    case Op::NotIn:
      return !contains(b, a);
    default:
      break;
  }
  if (a.is_undefined()) throw_undefined(a);
  if (b.is_undefined()) throw_undefined(b);
  try {
    switch (op) {
      case Op::Lt:
        return less_than(a, b);
      case Op::Gt:
        return less_than(b, a);
      case Op::Le:
        return !less_than(b, a);
      case Op::Ge:
        return !less_than(a, b);
      default:
        break;
    }
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    auto p = msg.find("'<'");
    if (p != std::string::npos) msg.replace(p, 3, std::string("'") + op_text(op) + "'");
    throw EvalError(msg);
  }
  throw EvalError(std::string("unknown comparison ") + op_text(op));
}

}  // namespace

Value Interpreter::eval_binary(const Expr& e, const std::shared_ptr<Scope>& scope) {
  switch (e.op) {
    case Op::And: {
      Value left = eval(*e.children[0], scope);
      return left.truthy() ? eval(*e.children[1], scope) : left;
    }
    case Op::Or: {
      Value left = eval(*e.children[0], scope);
      return left.truthy() ? left : eval(*e.children[1], scope);
    }
    case Op::Add: {
      // A chain a + b + c + ... of plain strings (the usual `'<|im_start|>' + role + '\n' + ...`)
      // is built in one buffer; anything else folds pairwise, left to right, as Python does.
      std::vector<const Expr*> operands;
      const Expr* node = &e;
      while (node->kind == Expr::Kind::Binary && node->op == Op::Add) {
        operands.push_back(node->children[1].get());
        node = node->children[0].get();
      }
      operands.push_back(node);
      std::reverse(operands.begin(), operands.end());
      std::vector<Value> values;
      values.reserve(operands.size());
      bool plain_strings = true;
      for (const Expr* x : operands) {
        values.push_back(eval(*x, scope));
        plain_strings = plain_strings && values.back().is_string() && !values.back().is_markup();
      }
      if (plain_strings) {
        StringData out;
        size_t total = 0;
        for (const auto& v : values) total += v.str().size();
        out.text.reserve(total);
        for (const auto& v : values) append_string(out, v.string_data());
        return Value(std::move(out));
      }
      Value acc = values[0];
      for (size_t i = 1; i < values.size(); ++i) {
        try {
          acc = arithmetic(Op::Add, acc, values[i]);
        } catch (const EvalError& err) {
          // Report at the operator that failed (the i-th '+' of the chain).
          const Expr* at = &e;
          for (size_t up = values.size() - 1; up > i; --up) at = at->children[0].get();
          fail_at(*at, err.what());
        }
      }
      return acc;
    }
    default: {
      Value left = eval(*e.children[0], scope);
      Value right = eval(*e.children[1], scope);
      return arithmetic(e.op, left, right);
    }
  }
}

Value Interpreter::eval_inner(const Expr& e, const std::shared_ptr<Scope>& scope) {
  switch (e.kind) {
    case Expr::Kind::Literal:
      return e.value;
    case Expr::Kind::Name: {
      if (const Value* v = scope->find(e.name)) return *v;
      return Value::undefined("'" + e.name + "' is undefined");
    }
    case Expr::Kind::List:
    case Expr::Kind::Tuple: {
      std::vector<Value> items;
      items.reserve(e.children.size());
      for (const auto& c : e.children) items.push_back(eval(*c, scope));
      return Value::list(std::move(items), e.kind == Expr::Kind::Tuple);
    }
    case Expr::Kind::Dict: {
      Value d = Value::dict();
      for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
        Value k = eval(*e.children[i], scope);
        if (k.is_list() && !k.is_tuple()) throw EvalError("unhashable type: 'list'");
        if (k.is_dict()) throw EvalError("unhashable type: 'dict'");
        d.dict_data().set(std::move(k), eval(*e.children[i + 1], scope));
      }
      return d;
    }
    case Expr::Kind::Attribute:
      return get_attribute(eval(*e.children[0], scope), e.name);
    case Expr::Kind::Item:
      return get_item(eval(*e.children[0], scope), eval(*e.children[1], scope));
    case Expr::Kind::Slice: {
      Value obj = eval(*e.children[0], scope);
      Value parts[3];
      for (int i = 0; i < 3; ++i) {
        parts[i] =
            e.children[size_t(i) + 1] ? eval(*e.children[size_t(i) + 1], scope) : Value::none();
      }
      return slice_value(obj, parts[0], parts[1], parts[2]);
    }
    case Expr::Kind::Call: {
      Value callee = eval(*e.children[0], scope);
      CallArgs args;
      eval_args(e, scope, args);
      return call(callee, args);
    }
    case Expr::Kind::Filter: {
      Value operand = eval(*e.children[0], scope);
      CallArgs args;
      eval_args(e, scope, args);
      if (!e.filter_fn) throw EvalError("no filter named '" + e.name + "'");
      return e.filter_fn(*this, operand, args);
    }
    case Expr::Kind::Test: {
      Value operand = eval(*e.children[0], scope);
      CallArgs args;
      eval_args(e, scope, args);
      if (!e.test_fn) throw EvalError("no test named '" + e.name + "'");
      return Value(e.test_fn(*this, operand, args));
    }
    case Expr::Kind::Unary: {
      Value v = eval(*e.children[0], scope);
      if (e.op == Op::Not) return Value(!v.truthy());
      if (v.is_undefined()) throw_undefined(v);
      if (!v.is_number())
        throw EvalError("bad operand type for unary " + e.name + ": '" + v.type_name() + "'");
      if (e.op == Op::Neg) return v.is_float() ? Value(-v.as_double()) : Value(-v.as_int());
      return v.is_float() ? v : Value(v.as_int());
    }
    case Expr::Kind::Binary:
      return eval_binary(e, scope);
    case Expr::Kind::Concat: {
      StringData out;  // `~` joins str() of each operand: plain, never escaped (autoescape off)
      for (const auto& c : e.children) {
        Value v = eval(*c, scope);
        if (v.is_string())
          append_string(out, v.string_data());
        else
          out.text += to_str(v);
      }
      return Value(std::move(out));
    }
    case Expr::Kind::Compare: {
      Value left = eval(*e.children[0], scope);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.children[i + 1], scope);
        if (!compare(e.ops[i], left, right)) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case Expr::Kind::Conditional: {
      if (eval(*e.children[0], scope).truthy()) return eval(*e.children[1], scope);
      if (e.children[2]) return eval(*e.children[2], scope);
      return Value::undefined(
          "the inline if-expression evaluated to false and no else section was defined");
    }
  }
  return Value();
}

}  // namespace seqit::chat::jinja
