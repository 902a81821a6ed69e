"""An IAM policy evaluator for the permission tests: IAM's semantics for what our own policies
use (cfn/*.yaml, cfn/user-policy.json, condor_annex_role_template), and loud about the rest.

moto's own IAM enforcement checks most requests against ``"*"`` and ignores conditions, so it
cannot tell a least-privilege policy from a broken one.  This evaluator can: it matches ARNs
segment by segment with IAM's ``*``/``?`` wildcards, and knows the condition operators (with
``IfExists`` and the ``ForAllValues:``/``ForAnyValue:`` set qualifiers).  An operator, an
intrinsic function or a policy element it does not know raises :class:`Unsupported` rather
than guessing.

Policy variables (IAM User Guide, "IAM policy elements: Variables and tags") are replaced
from the request's context: ``${aws:userid}``, ``${aws:username}``,
``${aws:PrincipalTag/k}``..., with ``${key, 'default'}`` defaults and the fixed ``${*}``,
``${?}``, ``${$}`` for literal characters.  Only in the resource part of a Resource ARN (after
the fifth colon) and in the values of string and ARN conditions; a variable whose key the
request does not have (``aws:username`` for a role) makes the statement not match ("any
attempt to match it fails and causes the statement to be invalid"), unless it has a default.
The principal's keys travel in each :class:`Request`'s context like any other key
(:func:`as_principal`).
"""
from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

Value = str | list[str]


class Unsupported(Exception):
    """The evaluator does not model this part of IAM; a test must not pass by ignoring it."""


@dataclass(frozen=True)
class Request:
    """One authorisation IAM makes: an action on one resource, with its condition context.

    ``context`` maps condition keys (``aws:ResourceTag/htcondor:AnnexName``, ``s3:prefix``,
    ``aws:TagKeys``...) to a value or a list of values; a key that is absent is absent."""

    action: str
    resource: str
    context: Mapping[str, Value] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        for name, value in self.context.items():
            if _same_key(name, key):
                return value if isinstance(value, list) else [value]
        return None

    def __str__(self) -> str:
        extra = f" {dict(self.context)}" if self.context else ""
        return f"{self.action} on {self.resource}{extra}"


def _same_key(a: str, b: str) -> bool:
    """Condition key names are case-insensitive; a tag key after the ``/`` is not."""
    head_a, _, tail_a = a.partition("/")
    head_b, _, tail_b = b.partition("/")
    return head_a.lower() == head_b.lower() and tail_a == tail_b


class _Unresolved(Exception):
    """A policy variable names a key the request does not have: the statement does not match."""


#: ``${name}`` or ``${name, 'default'}`` (a quote inside a default is written twice).
_VARIABLE = re.compile(r"\$\{\s*([^},']+?)\s*(?:,\s*'((?:[^']|'')*)'\s*)?\}")
_FIXED = {"*": "*", "?": "?", "$": "$"}

#: A pattern after substitution: (text, literal) pieces; wildcards count only in non-literal
#: pieces (the policy's own text), never in a variable's value or a ``${*}``.
Pieces = list[tuple[str, bool]]


def substitute(text: str, request: "Request | None") -> Pieces:
    """``text`` with its policy variables replaced from ``request``'s context."""
    pieces: Pieces = []
    at = 0
    for match in _VARIABLE.finditer(text):
        pieces.append((text[at:match.start()], False))
        name, default = match.group(1), match.group(2)
        if name in _FIXED:
            pieces.append((_FIXED[name], True))
        else:
            values = request.value(name) if request is not None else None
            if values is not None and len(values) != 1:
                raise Unsupported(f"the multivalued key {name} as a policy variable")
            if values is None and default is None:
                raise _Unresolved(name)
            pieces.append((values[0] if values is not None else default.replace("''", "'"),
                           True))
        at = match.end()
    pieces.append((text[at:], False))
    return pieces


def _literal(pieces: Pieces) -> str:
    return "".join(text for text, _ in pieces)


def _glob(pattern: str | Pieces, text: str, ignore_case: bool = False) -> bool:
    """IAM's wildcards: ``*`` any run of characters, ``?`` one; nothing else is special."""
    pieces = ((pattern, False),) if isinstance(pattern, str) else tuple(pattern)
    return _glob_regex(pieces, ignore_case).fullmatch(text) is not None


@functools.lru_cache(maxsize=1 << 16)
def _glob_regex(pieces: tuple[tuple[str, bool], ...], ignore_case: bool) -> re.Pattern[str]:
    """The compiled regular expression of a pattern: the suite's policy checks match a few
    thousand patterns millions of times, more than the ``re`` module's own cache holds."""
    regex = "".join(re.escape(part) if literal else
                    "".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                            for c in part)
                    for part, literal in pieces)
    return re.compile(regex, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def action_matches(pattern: str, action: str) -> bool:
    """An Action pattern against an action, as IAM matches them: wildcards, any case."""
    return _glob(pattern, action, ignore_case=True)


def arn_matches(pattern: str, arn: str, request: "Request | None" = None) -> bool:
    """An ARN against a Resource pattern: ``*`` alone matches everything; otherwise the six
    segments are matched one by one (a wildcard never spans the service or region segment).
    Policy variables count only in the resource part, after the fifth colon."""
    if pattern == "*":
        return True
    if arn == "*":
        return False
    variables = [m.group(0) for m in _VARIABLE.finditer(pattern)]
    masked = _VARIABLE.sub("\0", pattern)  # a variable's own colon splits nothing
    want, have = masked.split(":", 5), arn.split(":", 5)
    if len(want) != 6 or len(have) != 6:
        raise Unsupported(f"not an ARN: {pattern!r} / {arn!r}")
    if any("\0" in part for part in want[:5]):
        raise Unsupported(f"a policy variable before the resource part: {pattern!r}")
    resource = re.sub("\0", lambda _: variables.pop(0), want[5])
    return all(_glob(w, h) for w, h in zip(want[:5], have[:5])) and \
        _glob(substitute(resource, request), have[5])


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _as_bool(value: str) -> str:
    return str(value).lower()


#: Base condition operators: (how one context value matches one policy value, negated).
#: Each gets the context value, the policy value and the request (for policy variables).
_OPERATORS: dict[str, tuple[Any, bool]] = {
    "StringEquals": (lambda v, p, r: v == _literal(substitute(p, r)), False),
    "StringNotEquals": (lambda v, p, r: v == _literal(substitute(p, r)), True),
    "StringEqualsIgnoreCase":
        (lambda v, p, r: v.lower() == _literal(substitute(p, r)).lower(), False),
    "StringNotEqualsIgnoreCase":
        (lambda v, p, r: v.lower() == _literal(substitute(p, r)).lower(), True),
    "StringLike": (lambda v, p, r: _glob(substitute(p, r), v), False),
    "StringNotLike": (lambda v, p, r: _glob(substitute(p, r), v), True),
    "ArnEquals": (lambda v, p, r: v == _literal(substitute(p, r)), False),
    "ArnNotEquals": (lambda v, p, r: v == _literal(substitute(p, r)), True),
    "ArnLike": (lambda v, p, r: arn_matches(p, v, r), False),
    "ArnNotLike": (lambda v, p, r: arn_matches(p, v, r), True),
    "Bool": (lambda v, p, r: _as_bool(v) == _as_bool(_no_variable(p)), False),
}


def _no_variable(value: str) -> str:
    """"You can't use a policy variable with other operators" (Bool, Null, ...)."""
    if _VARIABLE.search(value):
        raise Unsupported(f"a policy variable outside a string or ARN condition: {value!r}")
    return value


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    values = request.value(key)
    if operator == "Null":
        [flag] = _listed(wanted)
        return (values is None) == (_as_bool(_no_variable(str(flag))) == "true")
    qualifier, _, base = operator.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base[:-len("IfExists")] if if_exists else base
    if base not in _OPERATORS or qualifier not in ("", "ForAllValues", "ForAnyValue"):
        raise Unsupported(f"condition operator {operator}")
    match, negated = _OPERATORS[base]
    patterns = [str(p) for p in _listed(wanted)]
    if values is None:
        if qualifier == "ForAllValues" or if_exists:
            return True
        return negated and qualifier == ""
    hits = [any(match(v, p, request) for p in patterns) for v in values]
    if qualifier == "ForAllValues":
        return all((not hit) if negated else hit for hit in hits)
    if qualifier == "ForAnyValue":
        return any((not hit) if negated else hit for hit in hits)
    if len(values) != 1:
        raise Unsupported(f"{operator} on the multivalued key {key} needs a set qualifier")
    return (not hits[0]) if negated else hits[0]


KNOWN_ELEMENTS = {"Sid", "Effect", "Action", "NotAction", "Resource", "NotResource",
                  "Condition"}


@dataclass(frozen=True)
class Statement:
    raw: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = set(self.raw) - KNOWN_ELEMENTS
        if unknown or self.raw.get("Effect") not in ("Allow", "Deny"):
            raise Unsupported(f"statement elements {sorted(unknown)} / {self.raw.get('Effect')}")

    @property
    def effect(self) -> str:
        return self.raw["Effect"]

    @property
    def actions(self) -> list[str]:
        return [str(a) for a in _listed(self.raw.get("Action", self.raw.get("NotAction")))]

    def _action_hit(self, action: str) -> bool:
        hit = any(action_matches(a, action) for a in self.actions)
        return not hit if "NotAction" in self.raw else hit

    def _resource_hit(self, request: Request) -> bool:
        patterns = _listed(self.raw.get("Resource", self.raw.get("NotResource")))
        hit = any(arn_matches(str(p), request.resource, request) for p in patterns)
        return not hit if "NotResource" in self.raw else hit

    def applies(self, request: Request) -> bool:
        try:
            if not (self._action_hit(request.action) and self._resource_hit(request)):
                return False
            return all(_condition_holds(operator, key, wanted, request)
                       for operator, checks in self.raw.get("Condition", {}).items()
                       for key, wanted in checks.items())
        except _Unresolved:  # a variable without a value: the statement is invalid here
            return False


def as_principal(requests: Iterable[Request], principal: Mapping[str, Value]) -> list[Request]:
    """The requests as ``principal`` makes them: its keys (``aws:userid``, ``aws:username``,
    ``aws:PrincipalTag/...``) added to each request's context."""
    return [Request(r.action, r.resource, {**principal, **r.context}) for r in requests]


class Policy:
    """One principal's identity policies: allowed if some Allow applies and no Deny does."""

    def __init__(self, statements: Iterable[Mapping[str, Any]], name: str = "policy"):
        self.name = name
        self.statements = [Statement(s) for s in statements]

    def allows(self, request: Request) -> bool:
        applying = [s for s in self.statements if s.applies(request)]
        return bool(applying) and all(s.effect == "Allow" for s in applying)

    def granted_actions(self) -> set[str]:
        """Every action an Allow names (as written: ``ec2:Describe*`` stays a pattern)."""
        return {a for s in self.statements if s.effect == "Allow" and "Action" in s.raw
                for a in s.actions}

    def without_action(self, action: str) -> "Policy":
        """This policy with ``action`` taken out of every statement (for mutation checks)."""
        kept = []
        for statement in self.statements:
            raw = dict(statement.raw)
            if "Action" in raw:
                left = [a for a in _listed(raw["Action"]) if a != action]
                if not left:
                    continue
                raw["Action"] = left
            kept.append(raw)
        return Policy(kept, f"{self.name} without {action}")

    def grants_unused(self, used: set[str]) -> list[str]:
        """Granted action patterns that match none of the ``used`` actions."""
        return sorted(a for a in self.granted_actions()
                      if not any(_glob(a, u, ignore_case=True) for u in used))


# -- policies as written in templates ----------------------------------------------------

def resolve(value: Any, context: Mapping[str, str]) -> Any:
    """Resolve the intrinsic functions our templates use in policies: Fn::Sub, Ref and
    Fn::GetAtt (``context`` holds parameters, pseudo parameters and ``Logical.Attr``)."""
    if isinstance(value, list):
        return [resolve(v, context) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (name, argument), = value.items()
        if name == "Fn::Sub":
            text, extra = (argument, {}) if isinstance(argument, str) else argument
            names = {**context, **{k: resolve(v, context) for k, v in extra.items()}}
            filled = re.sub(r"\$\{([^}!]+)\}", lambda m: _lookup(names, m.group(1)), text)
            return filled.replace("${!", "${")  # ${!aws:userid}: IAM's variable, kept
        if name == "Ref":
            return _lookup(context, argument)
        if name == "Fn::GetAtt":
            parts = argument.split(".", 1) if isinstance(argument, str) else argument
            return _lookup(context, ".".join(parts))
        if name.startswith("Fn::"):
            raise Unsupported(f"intrinsic function {name}")
    return {k: resolve(v, context) for k, v in value.items()}


def _lookup(context: Mapping[str, str], name: str) -> str:
    if name not in context:
        raise Unsupported(f"the evaluator's context has no value for {name}")
    return context[name]


def role_statements(template: Mapping[str, Any], role: str,
                    context: Mapping[str, str],
                    conditions: Mapping[str, bool] | None = None) -> list[dict[str, Any]]:
    """Every statement of the template's role ``role``: its inline ``Policies`` and every
    ``AWS::IAM::Policy``/``ManagedPolicy`` resource of the template attached to it.  A
    resource made only under a template ``Condition`` counts when ``conditions`` says that
    condition holds; one it does not name is :class:`Unsupported` (never guessed)."""
    resources = template["Resources"]
    found: list[dict[str, Any]] = []
    for policy in resources[role]["Properties"].get("Policies", []):
        found += _listed(policy["PolicyDocument"]["Statement"])
    for resource in resources.values():
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy") and \
                {"Ref": role} in resource["Properties"].get("Roles", []):
            condition = resource.get("Condition")
            if condition is not None and condition not in (conditions or {}):
                raise Unsupported(f"whether the template's condition {condition} holds")
            if condition is None or (conditions or {})[condition]:
                found += _listed(resource["Properties"]["PolicyDocument"]["Statement"])
    return resolve(found, context)


def assumed_role_keys(role_id: str, session_name: str) -> dict[str, str]:
    """The principal keys of a role session: ``aws:userid`` is ``<role-id>:<session-name>``
    (IAM User Guide, "AWS global condition context keys", and "IAM policy elements:
    Variables").  For an instance role's credentials EC2 names the session after the
    instance: ``<role-id>:<instance-id>``, which nothing on the instance can change."""
    return {"aws:userid": f"{role_id}:{session_name}"}


def document_statements(text: str, context: Mapping[str, str]) -> list[dict[str, Any]]:
    """The statements of a JSON policy document; ``${Name}`` placeholders from ``context``
    (the shipped user policy names the partition, account, region and bucket that way).
    IAM's own policy variables (``${aws:userid}``: a ``prefix:`` name) stay for evaluation."""
    filled = re.sub(r"\$\{([A-Za-z0-9]+)\}", lambda m: _lookup(context, m.group(1)), text)
    return _listed(json.loads(filled)["Statement"])
