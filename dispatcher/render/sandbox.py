"""The Jinja2 environment teams' templates render in: the immutable sandbox, metered.

The template is compiled with a meter put in (`_CodeGenerator`): each loop iteration is a step,
each piece of output is counted, and each list, tuple, dict and `~` the template builds is
sized. Every filter, test, call, attribute lookup and the operators `*`, `**`, `+` and `%` are
one step each, checked first by `render/guards.py` where they could build much from little and
sized after. What runs between two steps is then at most a filter's work on one value of at
most `max_output_chars`, so every render is cooperative and bounded: it cannot hang the event
loop, whatever the template does. (A render in a thread would not do: a thread cannot be
stopped, and one long C call, such as building a gigabyte string, holds the interpreter anyway.)

The meter of the render under way is found through a context variable: the template cannot reach
it, and the filters Jinja calls from deep inside find it all the same.

Three things Jinja offers are left out: the `pprint` filter (its output can be the square of its
input; `tojson` shows a value), the `lipsum` global (a lorem-ipsum generator) and a namespace
inside a list, a dict or a namespace (its attributes change, so its size cannot be kept).
"""

from __future__ import annotations

import functools
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any, NoReturn, TypeVar

from jinja2 import ChainableUndefined, Environment, Template, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import (
    ImmutableSandboxedEnvironment,
    SandboxedEscapeFormatter,
    SandboxedFormatter,
)
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from dispatcher.errors import TemplateBudgetExceeded
from dispatcher.render.guards import FILTER_GUARDS, METHOD_GUARDS, guard_binop
from dispatcher.render.meter import Meter
from dispatcher.template_budget import TemplateBudget

T = TypeVar("T")

#: the meter of the render under way; unset outside one, where Jinja folding constants while it
#: compiles meets a LookupError and leaves the expression to the render
_METER: ContextVar[Meter] = ContextVar("template_meter")


def metered_render(
    template: Template,
    values: Mapping[str, Any],
    budget: TemplateBudget,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """`template.render(values)` within `budget`, or TemplateBudgetExceeded."""
    token = _METER.set(Meter(budget, clock))
    try:
        return template.render(values)
    except RecursionError:
        raise TemplateBudgetExceeded("nested too deeply (macros, loops or values)") from None
    finally:
        _METER.reset(token)


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, where touching anything unsafe raises rather than renders empty,
    and where every render is metered (see the module's docstring)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, autoescape: bool, filters: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__(autoescape=autoescape, undefined=ChainableUndefined)
        self.code_generator_class = _CodeGenerator
        everything = {**self.filters, **filters}
        del everything["pprint"]
        self.filters = {name: _metered(name, func) for name, func in everything.items()}
        tests: dict[str, Any] = self.tests  # Jinja types them as `function`, which mypy cannot call
        self.tests = {name: _stepped(test) for name, test in tests.items()}
        del self.globals["lipsum"]
        self.globals["namespace"] = _Namespace

    def getattr(self, obj: Any, attribute: str) -> Any:
        _METER.get().step()  # filters such as `sort(attribute=...)` look up an attribute per item
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _METER.get().step()
        return super().getitem(obj, argument)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        kind = type(obj).__name__
        raise SecurityError(f"access to attribute {attribute!r} of {kind!r} object is unsafe")

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        meter = _METER.get()
        meter.step()
        guard_binop(meter, operator, left, right)
        return meter.built(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # named as Jinja names them, so that a keyword argument may be called `self`
        meter = _METER.get()
        meter.step()
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's `loop(children)`
            args = (__self.metered_iter(args[0]), *args[1:])
        else:
            args = _guard_method(meter, __obj, args, kwargs)
        return meter.built(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map`, as Jinja's sandbox has them, with each field sized."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType):
            return None
        text = value.__self__
        if value.__name__ not in ("format", "format_map") or not isinstance(text, str):
            return None
        mapping = value.__name__ == "format_map"

        def metered_format(*args: Any, **kwargs: Any) -> str:
            if mapping:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            formatter: SandboxedFormatter = (
                _EscapeFormatter(self, escape=text.escape)
                if isinstance(text, Markup)
                else _Formatter(self)
            )
            return type(text)(formatter.vformat(text, args, kwargs))

        return functools.update_wrapper(metered_format, value)

    # called from the compiled template (see _CodeGenerator)

    def metered_iter(self, iterable: Iterable[T]) -> Iterator[T]:
        meter = _METER.get()
        for item in iterable:
            meter.step()
            yield item

    def output(self, text: T) -> T:
        return _METER.get().output(text)

    def built(self, value: T) -> T:
        meter = _METER.get()
        meter.step()
        return meter.built(value)

    def joined(self, join: Callable[[Iterable[Any]], str], parts: tuple[Any, ...]) -> str:
        meter = _METER.get()
        meter.step()
        bound = meter.text_bound
        meter.fits(sum(len(p) if type(p) is str else bound(p) for p in parts), "the joined text")
        return meter.built(join(parts))


def _metered(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, as one step, guarded and sized. Jinja passes some filters its context first:
    `functools.wraps` keeps the mark that says so."""
    guard = FILTER_GUARDS.get(name)
    skip = 1 if hasattr(func, "jinja_pass_arg") else 0

    @functools.wraps(func)
    def metered(*args: Any, **kwargs: Any) -> Any:
        meter = _METER.get()
        meter.step()
        if name == "join" and len(args) > skip:  # counted before it is joined
            args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
        if guard is not None:
            guard(meter, *args[skip:], **kwargs)
        return meter.built(func(*args, **kwargs))

    return metered


def _stepped(test: Callable[..., Any]) -> Callable[..., Any]:
    """The test, as one step: `select` and friends run one per item."""

    @functools.wraps(test)
    def stepped(*args: Any, **kwargs: Any) -> Any:
        _METER.get().step()
        return test(*args, **kwargs)

    return stepped


def _guard_method(
    meter: Meter, method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """The arguments, once checked, when `method` is one of a string's, bytes' or int's that
    could build much from little."""
    receiver = getattr(method, "__self__", None)
    if not isinstance(receiver, str | bytes | int):
        return args
    guard = METHOD_GUARDS.get(getattr(method, "__name__", ""))
    if guard is None:
        return args
    if method.__name__ == "join" and args:  # counted before it is joined
        args = (list(args[0]), *args[1:])
    guard(meter, receiver, *args, **kwargs)
    return args


class _FieldSizes(SandboxedFormatter):
    """Sizes each field of a `str.format` as it is formatted, refusing a huge width first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._written = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        meter = _METER.get()
        meter.check_spec(format_spec)
        text = super().format_field(value, format_spec)
        self._written += len(text)
        meter.fits(self._written, "the formatted text")
        return text


class _Formatter(_FieldSizes):
    pass


class _EscapeFormatter(_FieldSizes, SandboxedEscapeFormatter):
    pass


class _Namespace(Namespace):
    """`namespace()`, whose attributes may not hold a namespace (see `Meter.weigh`)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _METER.get().weigh(value)
        super().__setitem__(name, value)


#: the methods of Sandbox that _Metering calls (no template can write an EnvironmentAttribute)
_METERING = frozenset({"metered_iter", "built"})


class _Metering(NodeTransformer):
    """Puts the meter into a parsed template: loops iterate through `metered_iter`, and the
    lists, tuples and dicts it writes are sized as they are built."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = self._call("metered_iter", node.iter)
        return node

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return self._call("built", node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return self._call("built", node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        return self._call("built", node) if node.ctx == "load" else node  # not `for a, b in`

    def _call(self, method: str, argument: nodes.Node) -> nodes.Node:
        call = nodes.Call(nodes.EnvironmentAttribute(method), [argument], [], None, None)
        return call.set_lineno(argument.lineno).set_environment(self.environment)


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, metered: output goes through `Sandbox.output`, `~` through
    `Sandbox.joined`, and the parsed template through `_Metering` first. The `_output_*` hooks
    are Jinja's own, not its public API: the output tests fail if a release renames them."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        _Metering(self.environment).visit(node)
        super().visit_Template(node, frame)
        # Jinja writes a constant float as Python prints it, `inf` or `nan` for `2e308`, names
        # the compiled module lacked (NameError from `{{ f(2e308) }}`; found by fuzzing)
        self.writeline("inf, nan = float('inf'), float('nan')")

    def _output_const_repr(self, group: Iterable[Any]) -> str:
        return f"environment.output({super()._output_const_repr(group)})"

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write("environment.output(")
        super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_post(node, frame, finalize)
        self.write(")")

    def visit_Call(self, node: nodes.Call, frame: Frame, forward_caller: bool = False) -> None:
        callee = node.node
        if isinstance(callee, nodes.EnvironmentAttribute) and callee.name in _METERING:
            # _Metering's own calls: direct, not through Sandbox.call (which would count them)
            self.write(f"environment.{callee.name}(")
            self.visit(node.args[0], frame)
            self.write(")")
        else:
            super().visit_Call(node, frame, forward_caller=forward_caller)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.joined({join}, (")
        for part in node.nodes:
            self.visit(part, frame)
            self.write(", ")
        self.write("))")
