"""Rendering message templates with Jinja2 in its sandbox.

One :class:`Renderer` per :class:`~cairn.domain.templates.TemplateSet`: it builds one
``ImmutableSandboxedEnvironment`` (a ``SandboxedEnvironment`` that also refuses to mutate
lists and dicts) (``StrictUndefined``, autoescape for HTML only) and caches compiled
templates, so build it once per cold start and reuse it.

The context a send passes::

    {"contact": {...attributes...},
     "event": {"event", "messageId", "timestamp", "properties": {...}},   # the run's trigger, as tracked
     "workflow": {"id", "stepId", "version", "run"},
     "unsubscribe_url": str, "postal_address": str, "public_url": str, "now": datetime, "timezone"?: str}

Contact attributes are also exposed at the top level (``{{ firstName | default("there") }}``);
the context's own keys win over attributes of the same name.

Errors never carry variable values (they are personal data): a :class:`TemplateRenderError`
names the template, the part, the file and line, and the missing variable or the error's type.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import (
    BaseLoader,
    ChainableUndefined,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    meta,
    nodes,
    pass_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import escape

from cairn.domain.templates import (
    EMAIL_PARTS,
    SourceRef,
    TemplateProblem,
    TemplateSet,
    email_source_key,
    partial_source_key,
    sms_source_key,
)

__all__ = [
    "CONTEXT_FIELDS",
    "CONTEXT_KEYS",
    "RESERVED_TRAITS",
    "SMS_MAX_LENGTH",
    "SMS_STOP_SUFFIX",
    "RenderedEmail",
    "RenderedSms",
    "Renderer",
    "TemplateRenderError",
    "UnknownTemplate",
    "format_money",
    "known_attributes",
    "sms_segments",
]

#: Keys the send function puts in every context (besides the contact's attributes).
CONTEXT_KEYS = frozenset(
    {
        "contact",
        "event",
        "workflow",
        "unsubscribe_url",
        "postal_address",
        "public_url",
        "now",
        "timezone",
        "confirm_url",  # the double opt-in confirmation email only
    }
)
#: Traits every contact may have (DESIGN.md §2), usable in templates without being declared.
RESERVED_TRAITS = frozenset({"email", "phone", "timezone", "firstName", "lastName", "locale", "userId"})
#: The keys of the structured parts of the context: a key outside these is a typo, found at compile time.
CONTEXT_FIELDS = {
    "workflow": frozenset({"id", "stepId", "version", "run"}),
    "event": frozenset({"event", "messageId", "timestamp", "properties"}),
}
SMS_MAX_LENGTH = 1600
SMS_STOP_SUFFIX = " Reply STOP to opt out."
_STOP_RE = re.compile(r"\bSTOP\b")
_PARTIAL_PREFIX = "partials/"

Channel = Literal["email", "sms"]


class TemplateRenderError(Exception):
    """A template could not be rendered. The message names the template and the problem, never a value."""

    def __init__(
        self,
        message: str,
        *,
        template: str,
        part: str | None = None,
        file: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.template = template
        self.part = part
        self.file = file
        self.line = line


class UnknownTemplate(TemplateRenderError):
    """No template of that name on that channel."""


@dataclass
class RenderedEmail:
    subject: str
    preheader: str
    html: str
    text: str
    kind: str


@dataclass
class RenderedSms:
    body: str
    kind: str

    @property
    def segments(self) -> int:
        """How many SMS parts the body is billed as (GSM-7: 160/153 characters, else UCS-2: 70/67)."""
        return sms_segments(self.body)


# The GSM 03.38 default alphabet and its extension table (extension characters count twice).
_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€")


def sms_segments(body: str) -> int:
    if all(c in _GSM7 or c in _GSM7_EXTENDED for c in body):
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in body)
        return 1 if units <= 160 else -(-units // 153)
    units = sum(2 if ord(c) > 0xFFFF else 1 for c in body)  # UTF-16 code units
    return 1 if units <= 70 else -(-units // 67)


class _Undefined(ChainableUndefined, StrictUndefined):
    """Strict: printing, testing or iterating a missing value fails. Chainable: a missing
    step in a path stays undefined, so ``{{ event.cart.total | default(0) }}`` works when
    ``cart`` is missing, and the error names the first missing step."""

    __slots__ = ()


class _FilterError(Exception):
    """Raised by Cairn's filters with a message that carries no value."""


# ---------------------------------------------------------------------------------------------
# filters


def _fail_if_undefined(value: Any) -> None:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError naming the variable
        raise _FilterError("value is undefined")


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise _FilterError("date: unknown time zone") from None


def _make_date_filter(fallback: tzinfo) -> Callable[..., str]:
    @pass_context
    def date_filter(context: Context, value: Any, fmt: str = "%d %b %Y", tz: str | None = None) -> str:
        """``{{ when | date }}``, ``{{ when | date("%H:%M", tz="Europe/Paris") }}``.

        A datetime or an ISO 8601 string, shown in ``tz``, else the context's ``timezone``
        (the contact's), else the renderer's fallback. Naive datetimes are taken as UTC.
        A plain date (or a date-only string such as a birthday) is formatted as is.
        """
        _fail_if_undefined(value)
        if not isinstance(fmt, str):
            raise _FilterError("date: the format must be a string")
        moment: datetime | date
        if isinstance(value, datetime | date):
            moment = value
        elif isinstance(value, str):
            moment = _parse_iso(value.strip())
        else:
            raise _FilterError("date: expected a datetime or an ISO 8601 string")
        if not isinstance(moment, datetime):
            return moment.strftime(fmt)
        if tz is not None:
            zone = _zone(tz)
        else:
            contact_tz = context.get("timezone")
            zone = fallback
            if isinstance(contact_tz, str) and contact_tz:
                try:
                    zone = ZoneInfo(contact_tz)
                except (ZoneInfoNotFoundError, ValueError):
                    zone = fallback  # bad data on the contact must not stop the message
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(zone).strftime(fmt)

    return date_filter


def _parse_iso(text: str) -> datetime | date:
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise _FilterError("date: the value is not an ISO 8601 date or time") from None


# symbol, decimal places
_CURRENCIES: dict[str, tuple[str, int]] = {
    "EUR": ("€", 2),
    "USD": ("$", 2),
    "GBP": ("£", 2),
    "JPY": ("¥", 0),
    "INR": ("₹", 2),
    "KRW": ("₩", 0),
    "ILS": ("₪", 2),
    "NGN": ("₦", 2),
    "PHP": ("₱", 2),
    "UAH": ("₴", 2),
    "VND": ("₫", 0),
}
_CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


def format_money(amount: Any, currency: str = "EUR") -> str:
    """``12.5, "EUR"`` -> ``"€12.50"``; ``1234, "USD"`` -> ``"$1,234.00"``; unknown symbol -> ``"12.50 CHF"``.

    ``amount`` is in major units (euros, not cents), rounded half up.
    """
    _fail_if_undefined(amount)
    if not isinstance(currency, str) or not _CURRENCY_RE.match(currency.upper()):
        raise _FilterError("money: the currency is a three-letter ISO 4217 code")
    code = currency.upper()
    if isinstance(amount, bool) or not isinstance(amount, int | float | Decimal | str):
        raise _FilterError("money: the amount is not a number")
    try:
        value = Decimal(str(amount).strip())
    except InvalidOperation:
        raise _FilterError("money: the amount is not a number") from None
    if not value.is_finite():
        raise _FilterError("money: the amount is not a finite number")
    symbol, places = _CURRENCIES.get(code, ("", 2))
    try:
        rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise _FilterError("money: the amount is out of range") from None
    sign = "-" if rounded < 0 else ""
    digits = f"{abs(rounded):,.{places}f}"
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {code}"


def _money_filter(amount: Any, currency: str = "EUR") -> str:
    return format_money(amount, currency)


# ---------------------------------------------------------------------------------------------
# loader


class _Loader(BaseLoader):
    """A dict loader whose file name is the template name (so tracebacks locate errors).

    ``partials/x.html`` is accepted as an alias of ``x.html``.
    """

    def __init__(self, sources: Mapping[str, str]) -> None:
        self._sources = dict(sources)

    def get_source(self, environment: Environment, template: str) -> tuple[str, str, Callable[[], bool]]:
        name = template
        if name not in self._sources and name.startswith(_PARTIAL_PREFIX):
            name = name[len(_PARTIAL_PREFIX) :]
        if name not in self._sources:
            raise TemplateNotFound(template)
        return self._sources[name], name, lambda: True

    def list_templates(self) -> list[str]:
        return sorted(self._sources)

    def resolve(self, template: str) -> str | None:
        if template in self._sources:
            return template
        if template.startswith(_PARTIAL_PREFIX) and template[len(_PARTIAL_PREFIX) :] in self._sources:
            return template[len(_PARTIAL_PREFIX) :]
        return None


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith(".html")


def _email_loader_name(name: str, part: str) -> str:
    return f"@email/{name}.html" if part == "html" else f"@email/{name}.{part}.txt"


def _sms_loader_name(name: str) -> str:
    return f"@sms/{name}.txt"


@dataclass(frozen=True)
class _Origin:
    channel: str  # "email" | "sms" | "partial"
    template: str
    part: str | None
    source_key: str


# ---------------------------------------------------------------------------------------------
# renderer


class Renderer:
    def __init__(self, templates: TemplateSet, timezone_fallback: str = "UTC") -> None:
        try:
            fallback = ZoneInfo(timezone_fallback)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown fallback time zone {timezone_fallback!r}") from exc
        self._templates = templates
        self._origins: dict[str, _Origin] = {}
        sources: dict[str, str] = {}
        for pname, text in templates.partials.items():
            sources[pname] = text
            self._origins[pname] = _Origin("partial", pname, None, partial_source_key(pname))
        for name, email in templates.email.items():
            for part in EMAIL_PARTS:
                loader_name = _email_loader_name(name, part)
                sources[loader_name] = getattr(email, part)
                self._origins[loader_name] = _Origin("email", name, part, email_source_key(name, part))
        for name, sms in templates.sms.items():
            loader_name = _sms_loader_name(name)
            sources[loader_name] = sms.body
            self._origins[loader_name] = _Origin("sms", name, "body", sms_source_key(name))
        self._loader = _Loader(sources)
        self._all_sources = "\n".join(sources.values())
        self._env = ImmutableSandboxedEnvironment(
            loader=self._loader,
            undefined=_Undefined,
            autoescape=_autoescape,
            auto_reload=False,
            cache_size=-1,
        )
        self._env.filters["date"] = _make_date_filter(fallback)
        self._env.filters["money"] = _money_filter
        self._compiled: dict[str, Template] = {}
        self._variables: dict[tuple[str, str | None, bool], set[str]] = {}

    # -- rendering ------------------------------------------------------------------------------

    def render_email(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        template = self._templates.email.get(name)
        if template is None:
            raise UnknownTemplate(f"no email template {name!r}", template=name)
        ctx = _full_context(context)
        subject = _one_line(self._render(_email_loader_name(name, "subject"), ctx))
        preheader = _one_line(self._render(_email_loader_name(name, "preheader"), ctx))
        html = self._render(_email_loader_name(name, "html"), ctx)
        text = self._render(_email_loader_name(name, "text"), ctx)
        if not subject:
            raise self._error(_email_loader_name(name, "subject"), "the subject renders empty")
        if template.kind == "marketing":
            url = _required_setting(ctx, "unsubscribe_url", name)
            address = _required_setting(ctx, "postal_address", name)
            html = _html_footer(html, url, address)
            text = _text_footer(text, url, address)
        return RenderedEmail(subject=subject, preheader=preheader, html=html, text=text, kind=template.kind)

    def render_sms(self, name: str, context: Mapping[str, Any]) -> RenderedSms:
        template = self._templates.sms.get(name)
        if template is None:
            raise UnknownTemplate(f"no SMS template {name!r}", template=name)
        loader_name = _sms_loader_name(name)
        body = self._render(loader_name, _full_context(context)).strip()
        if not body:
            raise self._error(loader_name, "the body renders empty")
        if template.kind == "marketing" and not _STOP_RE.search(body):
            body += SMS_STOP_SUFFIX
        if len(body) > SMS_MAX_LENGTH:
            raise self._error(
                loader_name, f"the body renders {len(body)} characters, over the limit of {SMS_MAX_LENGTH}"
            )
        return RenderedSms(body=body, kind=template.kind)

    def _template(self, loader_name: str) -> Template:
        compiled = self._compiled.get(loader_name)
        if compiled is None:
            compiled = self._env.get_template(loader_name)
            self._compiled[loader_name] = compiled
        return compiled

    def _render(self, loader_name: str, context: dict[str, Any]) -> str:
        try:
            return self._template(loader_name).render(context)
        except TemplateRenderError:
            raise
        except TemplateSyntaxError as exc:
            where = exc.name if exc.name in self._origins else loader_name
            raise self._error(loader_name, f"syntax error: {exc.message}", at=(where, exc.lineno)) from None
        except Exception as exc:
            reason = _reason(exc, self._all_sources)
            raise self._error(loader_name, reason, at=_template_frame(exc, self._origins)) from None

    def _error(
        self, loader_name: str, reason: str, *, at: tuple[str, int | None] | None = None
    ) -> TemplateRenderError:
        origin = self._origins[loader_name]
        where_name, lineno = at if at is not None else (loader_name, None)
        file, line = self._locate(where_name, lineno)
        label = {"email": "email template", "sms": "SMS template"}.get(origin.channel, "partial")
        location = file if line is None else f"{file} line {line}"
        if where_name != loader_name and where_name in self._origins:
            location = f"in {location}"
        part = f"{origin.part}, " if origin.part else ""
        message = f"{label} {origin.template!r} ({part}{location}): {reason}"
        return TemplateRenderError(message, template=origin.template, part=origin.part, file=file, line=line)

    def _locate(self, loader_name: str, lineno: int | None) -> tuple[str, int | None]:
        """Map a template-relative line to its file and file line."""
        origin = self._origins.get(loader_name)
        if origin is None:
            return loader_name, lineno
        ref: SourceRef | None = self._templates.sources.get(origin.source_key)
        if ref is None:
            if origin.channel == "email":
                file = f"templates/{origin.template}.email.yaml"
            elif origin.channel == "sms":
                file = f"templates/{origin.template}.sms.txt"
            else:
                file = f"templates/partials/{origin.template}"
            return file, lineno
        return ref.file, None if lineno is None else ref.line + lineno - 1

    # -- static checks --------------------------------------------------------------------------

    def check(self) -> list[TemplateProblem]:
        """Compile every template and partial; report syntax errors, unknown filters and tests,
        and included or extended templates that do not exist, each with file and line."""
        problems: list[TemplateProblem] = []
        for loader_name, origin in sorted(self._origins.items()):
            source = self._loader.get_source(self._env, loader_name)[0]
            label = f"{origin.part}: " if origin.channel == "email" else ""
            if origin.channel == "partial" and loader_name.startswith("@"):
                file, _ = self._locate(loader_name, None)
                problems.append(TemplateProblem(file, None, "a partial's name must not start with '@'"))
                continue
            try:
                self._env.compile(source, loader_name, loader_name)
                ast = self._env.parse(source, loader_name, loader_name)
            except TemplateSyntaxError as exc:
                file, line = self._locate(loader_name, exc.lineno)
                problems.append(TemplateProblem(file, line, f"{label}syntax error: {exc.message}"))
                continue
            for lineno, message in self._ast_problems(ast):
                file, line = self._locate(loader_name, lineno)
                problems.append(TemplateProblem(file, line, f"{label}{message}"))
        problems.sort(key=lambda p: (p.file, p.line or 0, p.message))
        return problems

    def _ast_problems(self, ast: nodes.Template) -> Iterator[tuple[int, str]]:
        for ref in _references(ast):
            if isinstance(ref.template, nodes.Const) and isinstance(ref.template.value, str):
                target = ref.template.value
                if self._loader.resolve(target) is None:
                    yield ref.lineno, f"{type(ref).__name__.lower()} of {target!r}, which does not exist"
        for flt in ast.find_all(nodes.Filter):
            if flt.name not in self._env.filters:
                yield flt.lineno, f"no filter named {flt.name!r}"
        for test in ast.find_all(nodes.Test):
            if test.name not in self._env.tests:
                yield test.lineno, f"no test named {test.name!r}"

    def check_variables(self, known_attributes: Iterable[str]) -> list[TemplateProblem]:
        """Variables that can be known at compile time, each with file and line:

        - a top-level variable used without ``| default(...)`` (or an ``is defined`` test) that is
          neither part of the context, nor a reserved trait, nor a known attribute (named in
          ``settings.yaml`` ``attributes`` or by a rule or update of a workflow or segment): no
          contact could have it, and every message would fail;
        - a key of ``workflow`` or ``event`` that the context never has (``workflow.nmae``).
        """
        allowed = CONTEXT_KEYS | RESERVED_TRAITS | set(known_attributes) | set(self._env.globals)
        problems: list[TemplateProblem] = []
        seen: set[tuple[str, str, str]] = set()
        for channel, names in (("email", self._templates.email), ("sms", self._templates.sms)):
            for name in sorted(names):
                closure = self._closure(self._roots(name, "email" if channel == "email" else "sms"))
                assigned = {
                    n.name for ast in closure.values() for n in ast.find_all(nodes.Name) if n.ctx != "load"
                }
                for loader_name, ast in closure.items():
                    label = "" if channel == "sms" else f"{self._origins[loader_name].part or 'partial'}: "
                    required = _required(ast, meta.find_undeclared_variables(ast))
                    for node in ast.find_all(nodes.Name):
                        if node.ctx != "load" or node.name not in required or node.name in allowed:
                            continue
                        if node.name in assigned or (channel, name, node.name) in seen:
                            continue
                        seen.add((channel, name, node.name))
                        file, line = self._locate(loader_name, node.lineno)
                        problems.append(
                            TemplateProblem(
                                file,
                                line,
                                f"{label}{{{{ {node.name} }}}} has no default and no contact attribute "
                                f"{node.name!r} is known: add | default(...), or list it under "
                                "`attributes` in settings.yaml",
                            )
                        )
                    for lineno, message in _field_problems(ast):
                        file, line = self._locate(loader_name, lineno)
                        problems.append(TemplateProblem(file, line, f"{label}{message}"))
        unique = {(p.file, p.line, p.message): p for p in problems}
        return sorted(unique.values(), key=lambda p: (p.file, p.line or 0, p.message))

    def _closure(self, roots: list[str]) -> dict[str, nodes.Template]:
        """The parsed templates `roots` name, with the partials and layouts they include or extend."""
        parsed: dict[str, nodes.Template] = {}
        pending = list(roots)
        while pending:
            loader_name = pending.pop()
            if loader_name in parsed:
                continue
            source = self._loader.get_source(self._env, loader_name)[0]
            try:
                ast = self._env.parse(source, loader_name, loader_name)
            except TemplateSyntaxError:
                continue  # reported by check()
            parsed[loader_name] = ast
            for ref in _references(ast):
                if isinstance(ref.template, nodes.Const) and isinstance(ref.template.value, str):
                    target = self._loader.resolve(ref.template.value)
                    if target is not None:
                        pending.append(target)
        return parsed

    def variables(self, name: str, channel: Channel | None = None) -> set[str]:
        """Top-level variables the template (every part, and the partials and layouts it names)
        uses without defining them (``jinja2.meta``). ``channel`` picks email or SMS when one
        name has both; by default both are included."""
        return self._collect(name, channel, required_only=False)

    def required_variables(self, name: str, channel: Channel | None = None) -> set[str]:
        """Like :meth:`variables`, less names only ever used under ``| default(...)`` or tested
        with ``is defined``: the variables whose absence would make rendering fail."""
        return self._collect(name, channel, required_only=True)

    def _collect(self, name: str, channel: Channel | None, *, required_only: bool) -> set[str]:
        key = (name, channel, required_only)
        cached = self._variables.get(key)
        if cached is None:
            cached = self._variables[key] = self._collect_uncached(name, channel, required_only=required_only)
        return set(cached)

    def _roots(self, name: str, channel: Channel | None) -> list[str]:
        roots: list[str] = []
        if channel in (None, "email") and name in self._templates.email:
            roots += [_email_loader_name(name, part) for part in EMAIL_PARTS]
        if channel in (None, "sms") and name in self._templates.sms:
            roots.append(_sms_loader_name(name))
        if not roots:
            raise UnknownTemplate(f"no {channel or 'email or SMS'} template {name!r}", template=name)
        return roots

    def _collect_uncached(self, name: str, channel: Channel | None, *, required_only: bool) -> set[str]:
        roots = self._roots(name, channel)
        found: set[str] = set()
        seen: set[str] = set()
        pending = list(roots)
        while pending:
            loader_name = pending.pop()
            if loader_name in seen:
                continue
            seen.add(loader_name)
            source = self._loader.get_source(self._env, loader_name)[0]
            try:
                ast = self._env.parse(source, loader_name, loader_name)
            except TemplateSyntaxError as exc:
                raise self._error(
                    loader_name, f"syntax error: {exc.message}", at=(loader_name, exc.lineno)
                ) from None
            names = meta.find_undeclared_variables(ast)
            if required_only:
                names = _required(ast, names)
            found |= names
            for ref in _references(ast):
                if isinstance(ref.template, nodes.Const) and isinstance(ref.template.value, str):
                    target = self._loader.resolve(ref.template.value)
                    if target is not None:
                        pending.append(target)
        return found - set(self._env.globals)


# ---------------------------------------------------------------------------------------------
# helpers


def _full_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context with the contact's attributes also at the top level, and nulls left out.

    A null is treated as missing, so that ``| default(...)`` applies and a bare use fails
    instead of printing "None". Mappings are copied: a template cannot change the caller's data.
    """
    ctx: dict[str, Any] = {}
    contact = context.get("contact")
    if isinstance(contact, Mapping):
        ctx.update(_without_nulls(contact))
    ctx.update(_without_nulls(context))
    return ctx


def _without_nulls(mapping: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        key: _without_nulls(value) if isinstance(value, Mapping) else value
        for key, value in mapping.items()
        if isinstance(key, str) and value is not None
    }


def _one_line(text: str) -> str:
    return " ".join(text.split())


_DOTTED_RE = re.compile(r"^[A-Za-z_][\w.]*$")
_TYPE_NAME_RE = re.compile(r"^[A-Za-z_][\w.]* object$")  # Jinja's "'dict object' has no attribute"
_QUOTED_NAME_RE = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")


def _reason(exc: Exception, sources: str) -> str:
    if isinstance(exc, TemplateNotFound):
        name = exc.name if isinstance(exc.name, str) and exc.name in sources else "(computed name)"
        return f"template {name!r} does not exist"
    if isinstance(exc, UndefinedError | SecurityError):
        # Jinja's messages name the variable or attribute and the *type* of the object. A name
        # computed at render time (``mapping[contact.email]``) could be data: keep only names
        # that are written in the templates themselves.
        message = str(exc)

        def keep(match: re.Match[str]) -> str:
            quoted = match.group(0)[1:-1]
            if quoted in sources or _TYPE_NAME_RE.match(quoted):
                return match.group(0)
            if _DOTTED_RE.match(quoted) and message[match.end() :].startswith(" object"):
                return match.group(0)  # the sandbox's "of 'str' object"
            return "(computed name)"

        return _QUOTED_NAME_RE.sub(keep, message)
    if isinstance(exc, _FilterError):
        return str(exc)  # Cairn's filter messages are written without values
    # Other exceptions may quote data (e.g. ValueError from int("...")): give only the type.
    return f"{type(exc).__name__} while rendering"


def _template_frame(exc: BaseException, origins: Mapping[str, _Origin]) -> tuple[str, int | None] | None:
    """The innermost template frame of a rendering traceback (Jinja rewrites those frames)."""
    found: tuple[str, int | None] | None = None
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in origins:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _required_setting(ctx: Mapping[str, Any], key: str, template: str) -> str:
    value = ctx.get(key)
    if not isinstance(value, str) or not value.strip():
        raise TemplateRenderError(
            f"email template {template!r}: a marketing email needs {key!r} in the context",
            template=template,
        )
    return value


_BODY_CLOSE_RE = re.compile(r"</body\s*>", re.IGNORECASE)


def _html_footer(html: str, url: str, address: str) -> str:
    escaped_url = str(escape(url))
    html = _no_track(html, url, escaped_url)
    has_url = escaped_url in html or url in html
    address_lines = [line.strip() for line in address.splitlines() if line.strip()]
    has_address = all(str(escape(line)) in html for line in address_lines)
    if has_url and has_address:
        return html
    paragraphs = []
    if not has_address:
        shown = "<br>".join(str(escape(line)) for line in address_lines)
        paragraphs.append(f'<p style="margin:0 0 8px 0;">{shown}</p>')
    if not has_url:
        paragraphs.append(
            f'<p style="margin:0;"><a ses:no-track href="{escaped_url}" style="color:#6b7280;">'
            "Unsubscribe</a></p>"
        )
    footer = (
        '<div class="cairn-footer" style="margin-top:24px;font-size:12px;line-height:18px;'
        'color:#6b7280;text-align:center;">' + "".join(paragraphs) + "</div>"
    )
    closes = list(_BODY_CLOSE_RE.finditer(html))
    if closes:
        at = closes[-1].start()
        return html[:at] + footer + html[at:]
    return html + footer


_ANCHOR_RE = re.compile(r"<a\b[^>]*>", re.IGNORECASE)


def _no_track(html: str, url: str, escaped_url: str) -> str:
    """Keep SES click tracking off the unsubscribe link: add ``ses:no-track`` to anchors to it."""

    def mark(match: re.Match[str]) -> str:
        tag = match.group(0)
        hrefs = (f'"{escaped_url}"', f"'{escaped_url}'", f'"{url}"', f"'{url}'")
        if "ses:no-track" in tag.lower() or not any(f"href={h}" in tag for h in hrefs):
            return tag
        return tag[:2] + " ses:no-track" + tag[2:]

    return _ANCHOR_RE.sub(mark, html)


def _text_footer(text: str, url: str, address: str) -> str:
    address_lines = [line.strip() for line in address.splitlines() if line.strip()]
    lines = []
    if not all(line in text for line in address_lines):
        lines += address_lines
    if url not in text:
        lines.append(f"Unsubscribe: {url}")
    if not lines:
        return text
    return text.rstrip("\n") + "\n\n--\n" + "\n".join(lines) + "\n"


def _field_problems(ast: nodes.Template) -> Iterator[tuple[int, str]]:
    """`workflow.x` / `event.x` (or ``["x"]``) with a key the context never has."""
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        key: object
        if isinstance(node, nodes.Getattr):
            base, key = node.node, node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            base, key = node.node, node.arg.value
        else:
            continue
        if not isinstance(base, nodes.Name) or base.name not in CONTEXT_FIELDS:
            continue
        fields = CONTEXT_FIELDS[base.name]
        if isinstance(key, str) and key not in fields:
            yield node.lineno, f"{base.name} has no {key!r} (it has {', '.join(sorted(fields))})"


def known_attributes(*sources: Any) -> set[str]:
    """Contact attribute names a project mentions: every ``attribute:`` of a rule and every key an
    ``update`` step sets, found anywhere in the given raw structures (workflows, segments)."""
    found: set[str] = set()
    pending: list[Any] = list(sources)
    while pending:
        value = pending.pop()
        if isinstance(value, Mapping):
            attribute = value.get("attribute")
            if isinstance(attribute, str):
                found.add(attribute)
            update = value.get("update")
            if isinstance(update, Mapping) and isinstance(update.get("set"), Mapping):
                found.update(str(k) for k in update["set"])
            pending.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            pending.extend(value)
    return found


_Reference = nodes.Include | nodes.Extends | nodes.Import | nodes.FromImport


def _references(ast: nodes.Template) -> Iterator[_Reference]:
    for node in ast.find_all((nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)):
        yield cast(_Reference, node)


def _required(ast: nodes.Template, names: set[str]) -> set[str]:
    guarded: set[int] = set()
    tested: set[str] = set()
    for flt in ast.find_all(nodes.Filter):
        if flt.name in ("default", "d") and isinstance(flt.node, nodes.Name):
            guarded.add(id(flt.node))
    for test in ast.find_all(nodes.Test):
        if test.name in ("defined", "undefined") and isinstance(test.node, nodes.Name):
            tested.add(test.node.name)
    return {
        node.name
        for node in ast.find_all(nodes.Name)
        if node.ctx == "load" and node.name in names and node.name not in tested and id(node) not in guarded
    }
