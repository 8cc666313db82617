"""Deterministic answer checks that cost nothing: a failed check makes the answer score low.

A check looks at one request and one answer and returns ``None`` (passed, or does not apply) or a
short reason. :class:`VerifiedScorer` wraps any answer scorer: when a check that applies fails, the
score becomes ``fail_score`` (0 by default), so a cascade escalates exactly as it does for a bad
answer — the generalisation of tool-call validation to plain answers.

Checks (names usable in ``[profiles.NAME] checks = [...]``):

``json``        when the request asks for JSON (``response_format`` ``json_object`` / ``json_schema``) the
                answer (or its one fenced block) must parse, and match the schema when one is given;
                otherwise every fenced ```` ```json ```` block in the answer must parse.
``arithmetic``  every worked step ``<expr> = <number>`` in the answer (numbers, + − × ÷ * / ^, brackets)
                must recompute (relative tolerance 1e-6, or the claimed number's rounding); and when
                the question itself is a bare expression ("What is 17*23?") an answer that states
                numbers must state its value.
``python``      every fenced ```` ```python ```` / ```` ```py ```` block (or any unlabelled fenced block
                when the prompt mentions Python) must parse (``ast.parse``; never executed).
``{regex = "..."}`` the answer must contain a match of the regular expression.

:data:`EMBEDDED_CHECKS` are the ones the embedded local default applies (each only where it applies).
"""

from __future__ import annotations

import ast
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from thrifty.types import ChatRequest, Completion

__all__ = [
    "CHECKS",
    "EMBEDDED_CHECKS",
    "Check",
    "VerifiedScorer",
    "build_checks",
    "check_problems",
    "arithmetic_problem",
    "json_problem",
    "python_problem",
    "regex_check",
]

_FENCE = re.compile(r"```[ \t]*([\w+-]*)[^\n]*\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class Check:
    """A named check: ``run(request, completion_text)`` → None (fine / not applicable) or a reason."""

    name: str
    run: Callable[[ChatRequest, str], str | None]


# ---- json ----------------------------------------------------------------------------------------
def _response_format(request: ChatRequest) -> Mapping[str, Any] | None:
    rf = request.params.get("response_format") if request.params else None
    return rf if isinstance(rf, Mapping) and rf.get("type") in ("json_object", "json_schema") else None


def json_problem(request: ChatRequest, text: str) -> str | None:
    rf = _response_format(request)
    fences = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    if rf is None:
        for lang, body in fences:
            if lang == "json":
                try:
                    json.loads(body)
                except json.JSONDecodeError as exc:
                    return f"a ```json block does not parse ({exc.msg}, line {exc.lineno})"
        return None
    candidate = text.strip()
    if fences and not candidate.startswith(("{", "[")):
        candidate = fences[0][1].strip()
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return f"the answer is not the JSON the request asked for ({exc.msg}, line {exc.lineno})"
    schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
    if rf.get("type") == "json_object" and not isinstance(value, dict):
        return "the answer is JSON but not an object (response_format json_object)"
    if schema:
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - jsonschema ships with the serve extra
            return None  # cannot validate the schema here: parsing is all that was checked
        try:
            jsonschema.validate(value, schema)
        except jsonschema.ValidationError as exc:
            return f"the JSON does not match the requested schema: {exc.message}"
        except jsonschema.SchemaError:
            return None  # the request's schema is broken: not the answer's fault
    return None


# ---- arithmetic ------------------------------------------------------------------------------------
_NUM = r"-?\d[\d,]*(?:\.\d+)?"
_OPS = "+-*/^×x÷−·"
# an expression: number (op number)+ possibly with brackets, then '=' and a claimed number
_EXPR = re.compile(
    r"((?:[(\[]\s*)*"
    + _NUM
    + r"(?:\s*[)\]])*(?:\s*["
    + re.escape(_OPS)
    + r"]\s*(?:[(\[]\s*)*"
    + _NUM
    + r"(?:\s*[)\]])*)+)\s*=\s*\$?\s*("
    + _NUM
    + r")(?![\d.]*\s*["
    + re.escape(_OPS)
    + r"]\s*\d)"
)
_QUESTION = re.compile(
    r"^\s*(?:what\s+is|what's|calculate|compute|evaluate|solve|how\s+much\s+is)?\s*:?\s*([\d\s()\[\]"
    + re.escape(_OPS)
    + r".,]+?)\s*(?:=\s*)?\??\s*$",
    re.IGNORECASE,
)
_NUMBER = re.compile(_NUM)
_DATE = re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b")  # dates look like sums, are not


def _evaluate(expr: str) -> float | None:
    """The value of a plain arithmetic expression, or None when it is not one (never ``eval``)."""
    e = expr.replace("×", "*").replace("÷", "/").replace("−", "-").replace("·", "*").replace("^", "**").replace("[", "(").replace("]", ")")
    e = re.sub(r"(?<=\d)\s*x\s*(?=[\d(])", "*", e)  # 3 x 4
    e = re.sub(r"(?<=\d),(?=\d{3}\b)", "", e)  # 1,000
    try:
        tree = ast.parse(e.strip(), mode="eval")
    except SyntaxError:
        return None

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return float(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.BinOp):
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return a + b
            if isinstance(node.op, ast.Sub):
                return a - b
            if isinstance(node.op, ast.Mult):
                return a * b
            if isinstance(node.op, ast.Div):
                return a / b
            if isinstance(node.op, ast.Pow) and abs(b) <= 64 and abs(a) < 1e6:
                return a**b
        raise ValueError("not plain arithmetic")

    try:
        v = ev(tree)
    except (ValueError, ZeroDivisionError, OverflowError):
        return None
    return v if math.isfinite(v) else None


def _num(s: str) -> float:
    return float(s.replace(",", ""))


def _agrees(value: float, claimed: str) -> bool:
    """``claimed`` states ``value``: equal within 1e-6 relative, or ``value`` rounded to its decimals."""
    c = _num(claimed)
    decimals = len(claimed.split(".", 1)[1]) if "." in claimed else 0
    return math.isclose(value, c, rel_tol=1e-6, abs_tol=1e-9) or abs(value - c) <= 0.5 * 10 ** (-decimals) + 1e-9


def arithmetic_problem(request: ChatRequest, text: str) -> str | None:
    for m in _EXPR.finditer(text):
        expr, claimed = m.group(1), m.group(2)
        if not any(op in expr.strip().lstrip("-") for op in _OPS) or _DATE.search(expr):
            continue
        value = _evaluate(expr)
        if value is not None and not _agrees(value, claimed):
            return f"{expr.strip()} = {claimed} does not recompute (it is {value:g})"
    q = _QUESTION.match(request.prompt_text.strip())
    if q and any(op in q.group(1) for op in _OPS):
        value = _evaluate(q.group(1).rstrip(".,"))
        stated = _NUMBER.findall(text)
        if value is not None and stated and not any(_agrees(value, s) for s in stated):
            return f"the question's value {value:g} is not among the numbers the answer states"
    return None


# ---- python ------------------------------------------------------------------------------------
def python_problem(request: ChatRequest, text: str) -> str | None:
    wants_python = "python" in request.prompt_text.lower()
    for lang, body in _FENCE.findall(text):
        lang = lang.lower()
        if lang in ("python", "py", "python3") or (lang == "" and wants_python):
            try:
                ast.parse(body)
            except SyntaxError as exc:
                return f"a Python block does not parse ({exc.msg}, line {exc.lineno})"
    return None


def regex_check(pattern: str) -> Check:
    """A check that the answer contains a match of ``pattern`` (compiled once; bad pattern: ValueError)."""
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None
    return Check(f"regex:{pattern}", lambda request, text: None if rx.search(text) else f"the answer does not match /{pattern}/")


CHECKS: dict[str, Check] = {
    "json": Check("json", json_problem),
    "arithmetic": Check("arithmetic", arithmetic_problem),
    "python": Check("python", python_problem),
}
EMBEDDED_CHECKS: tuple[str, ...] = ("json", "arithmetic", "python")


def build_checks(specs: Sequence[str | Mapping[str, Any]]) -> tuple[Check, ...]:
    """Checks from config entries: a name of :data:`CHECKS` or ``{"regex": pattern}`` (ValueError if unknown)."""
    out = []
    for spec in specs:
        if isinstance(spec, str) and spec in CHECKS:
            out.append(CHECKS[spec])
        elif isinstance(spec, Mapping) and set(spec) == {"regex"} and isinstance(spec["regex"], str):
            out.append(regex_check(spec["regex"]))
        else:
            raise ValueError(f'unknown check {spec!r}: use one of {", ".join(CHECKS)} or {{regex = "..."}}')
    return tuple(out)


def check_problems(checks: Sequence[Check], request: ChatRequest, completion: Completion | None) -> dict[str, str]:
    """Every failed check's reason, by check name (an empty dict: all passed or none applied)."""
    if completion is None:
        return {}
    text = completion.text or ""
    return {c.name: why for c in checks if (why := c.run(request, text))}


class VerifiedScorer:
    """``inner``'s score, or ``fail_score`` when one of ``checks`` fails (see the module docstring)."""

    def __init__(self, inner: Any, checks: Sequence[Check], fail_score: float = 0.0) -> None:
        self.inner, self.checks, self.fail_score = inner, tuple(checks), float(fail_score)
        self.last_problems: dict[str, str] = {}  # of the latest call: for traces and tests

    def __repr__(self) -> str:
        return f"VerifiedScorer({self.inner!r}, checks={[c.name for c in self.checks]})"

    def explain(self, request: ChatRequest, completion: Completion | None) -> Mapping[str, float]:
        base = dict(self.inner.explain(request, completion)) if hasattr(self.inner, "explain") else {}
        for name in check_problems(self.checks, request, completion):
            base[f"check:{name}"] = self.fail_score
        return base

    def score(self, request: ChatRequest, completion: Completion | None, model: str = "") -> float:
        problems = check_problems(self.checks, request, completion)
        self.last_problems = problems
        value = float(self.inner.score(request, completion, model))
        return min(value, self.fail_score) if problems else value
