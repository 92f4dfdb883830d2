"""Message templates: loading ``templates/`` and validating its shape.

Layout of a templates folder::

    templates/<name>.email.yaml      subject, preheader, html, text, kind (marketing|transactional)
    templates/<name>.sms.txt         the body; optional front matter ``---\\nkind: transactional\\n---``
    templates/partials/**/*.html     layouts and partials, usable with {% include %} / {% extends %}
    templates/partials/**/*.txt      (named by their path under ``partials/``, e.g. "layout.html")

:func:`load_templates` checks files, YAML and fields and reports every problem with its
file and line; Jinja syntax is checked by :meth:`cairn.domain.rendering.Renderer.check`.
This module is pure: no AWS, no I/O beyond reading the folder it is given.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

__all__ = [
    "DATA_VERSION",
    "TEMPLATE_NAME_PATTERN",
    "EmailTemplate",
    "SmsTemplate",
    "SourceRef",
    "TemplateProblem",
    "TemplateSet",
    "builtin_confirmation",
    "email_source_key",
    "load_templates",
    "partial_source_key",
    "sms_source_key",
]

DATA_VERSION = 1
TEMPLATE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
_NAME_RE = re.compile(TEMPLATE_NAME_PATTERN)
_EMAIL_SUFFIXES = (".email.yaml", ".email.yml")
_SMS_SUFFIX = ".sms.txt"
_PARTIAL_SUFFIXES = (".html", ".txt")
_IGNORED_SUFFIXES = (".md", ".rst")
EMAIL_PARTS = ("subject", "preheader", "html", "text")

Kind = Literal["marketing", "transactional"]


@dataclass(frozen=True)
class TemplateProblem:
    """One problem in a template file; ``line`` is 1-based, None when it applies to the whole file."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class SourceRef:
    """Where a template's source text starts: its file and the 1-based line of its first line."""

    file: str
    line: int


def email_source_key(name: str, part: str) -> str:
    return f"email/{name}/{part}"


def sms_source_key(name: str) -> str:
    return f"sms/{name}"


def partial_source_key(name: str) -> str:
    return f"partials/{name}"


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError("a template name uses letters, digits, '-' and '_' only, and starts with one")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


_Name = Annotated[str, AfterValidator(_check_name)]
_Text = Annotated[str, AfterValidator(_not_blank)]


class EmailTemplate(BaseModel):
    """``templates/<name>.email.yaml``; ``name`` comes from the file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    subject: _Text
    preheader: str = ""
    html: _Text
    text: _Text
    kind: Kind = "marketing"


class SmsTemplate(BaseModel):
    """``templates/<name>.sms.txt``; ``name`` comes from the file name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: _Name
    body: _Text
    kind: Kind = "marketing"


@dataclass
class TemplateSet:
    """Every template of a project. ``sources`` (optional) maps a source key
    (:func:`email_source_key`, :func:`sms_source_key`, :func:`partial_source_key`) to where that
    text starts in its file, so problems found later (Jinja syntax, render errors) name file and line."""

    email: dict[str, EmailTemplate]
    sms: dict[str, SmsTemplate]
    partials: dict[str, str]
    sources: dict[str, SourceRef] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        """A JSON-able form, to ship in a bundle; :meth:`from_data` reads it back."""
        return {
            "version": DATA_VERSION,
            "email": {name: t.model_dump() for name, t in sorted(self.email.items())},
            "sms": {name: t.model_dump() for name, t in sorted(self.sms.items())},
            "partials": dict(sorted(self.partials.items())),
            "sources": {key: [ref.file, ref.line] for key, ref in sorted(self.sources.items())},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TemplateSet:
        """Inverse of :meth:`to_data`; raises ValueError on data it did not write."""
        if not isinstance(data, dict) or data.get("version") != DATA_VERSION:
            raise ValueError(f"template data must be a mapping with version {DATA_VERSION}")
        email_data = data.get("email", {})
        sms_data = data.get("sms", {})
        partials = data.get("partials", {})
        sources = data.get("sources", {})
        if not all(isinstance(x, dict) for x in (email_data, sms_data, partials, sources)):
            raise ValueError("template data: email, sms, partials and sources must be mappings")
        email = {name: EmailTemplate.model_validate(t) for name, t in email_data.items()}
        sms = {name: SmsTemplate.model_validate(t) for name, t in sms_data.items()}
        for kind, templates in (("email", email), ("sms", sms)):
            for name, template in templates.items():
                if template.name != name:
                    raise ValueError(
                        f"template data: {kind} template under {name!r} is named {template.name!r}"
                    )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in partials.items()):
            raise ValueError("template data: partials map names to text")
        refs: dict[str, SourceRef] = {}
        for key, ref in sources.items():
            if not (
                isinstance(ref, list | tuple)
                and len(ref) == 2
                and isinstance(ref[0], str)
                and isinstance(ref[1], int)
            ):
                raise ValueError("template data: a source is [file, line]")
            refs[key] = SourceRef(ref[0], ref[1])
        return cls(email=email, sms=sms, partials=dict(partials), sources=refs)


def builtin_confirmation(name: str) -> EmailTemplate:
    """The double opt-in email of a project without its own (``templates/<name>.email.yaml``)."""
    return EmailTemplate(
        name=name,
        kind="transactional",
        subject="Please confirm your subscription",
        preheader="One click and you are subscribed.",
        html=(
            '<p>Hi {{ firstName | default("there") }},</p>\n'
            "<p>Please confirm that you want to receive our emails:</p>\n"
            '<p><a href="{{ confirm_url }}">Yes, subscribe me</a></p>\n'
            "<p>If you did not ask for this, ignore this email: we will not write again.</p>\n"
            '<p style="color:#6b7280;font-size:12px">{{ postal_address }}</p>\n'
        ),
        text=(
            'Hi {{ firstName | default("there") }},\n\n'
            "Please confirm that you want to receive our emails:\n{{ confirm_url }}\n\n"
            "If you did not ask for this, ignore this email: we will not write again.\n\n"
            "{{ postal_address }}\n"
        ),
    )


# ---------------------------------------------------------------------------------------------
# loading


def load_templates(directory: Path) -> tuple[TemplateSet, list[TemplateProblem]]:
    """Read every template under ``directory``; return what loaded and every problem found.

    Files are named in problems as ``<directory name>/<relative path>`` (e.g.
    ``templates/welcome.email.yaml``). A missing directory is an empty set, not a problem.
    A template with a problem is left out of the set.
    """
    directory = Path(directory)
    templates = TemplateSet(email={}, sms={}, partials={})
    problems: list[TemplateProblem] = []
    if not directory.exists():
        return templates, problems
    if not directory.is_dir():
        return templates, [TemplateProblem(directory.name, None, "is not a directory")]

    def display(path: Path) -> str:
        return f"{directory.name}/{path.relative_to(directory).as_posix()}"

    for path in sorted(directory.iterdir()):
        if path.name.startswith(".") or path.name.lower().startswith("readme"):
            continue
        if path.is_dir():
            if path.name == "partials":
                _load_partials(path, display, templates, problems)
            continue
        shown = display(path)
        load: Callable[[str, str, str, TemplateSet, list[TemplateProblem]], None]
        if path.name.endswith(_EMAIL_SUFFIXES):
            name = path.name[: -len(next(s for s in _EMAIL_SUFFIXES if path.name.endswith(s)))]
            load = _load_email
        elif path.name.endswith(_SMS_SUFFIX):
            name, load = path.name[: -len(_SMS_SUFFIX)], _load_sms
        elif path.name.endswith(_IGNORED_SUFFIXES):
            continue
        else:
            problems.append(
                TemplateProblem(
                    shown,
                    None,
                    "not a template: name templates <name>.email.yaml or <name>.sms.txt, "
                    "and put layouts and partials under partials/",
                )
            )
            continue
        if not _check_file_name(name, shown, problems):
            continue
        text = _read(path, shown, problems)
        if text is not None:
            load(text, shown, name, templates, problems)
    problems.sort(key=lambda p: (p.file, p.line or 0))
    return templates, problems


def _read(path: Path, shown: str, problems: list[TemplateProblem]) -> str | None:
    try:
        # utf-8-sig drops a byte-order mark; universal newlines turn CRLF into LF.
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        problems.append(TemplateProblem(shown, None, "is not valid UTF-8"))
    except OSError as exc:
        problems.append(TemplateProblem(shown, None, f"cannot be read ({exc.strerror or 'error'})"))
    return None


def _check_file_name(name: str, shown: str, problems: list[TemplateProblem]) -> bool:
    if _NAME_RE.match(name):
        return True
    problems.append(
        TemplateProblem(
            shown,
            None,
            f"template name {name!r} must use letters, digits, '-' and '_' only, and start with one",
        )
    )
    return False


_QUOTE_HINT = " (quote values that start with '{{', e.g. subject: \"{{ firstName }}, welcome\")"


def _yaml_problem(shown: str, exc: yaml.YAMLError, text: str, line_offset: int = 0) -> TemplateProblem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or "not valid YAML"
    if mark is None:
        return TemplateProblem(shown, None, f"invalid YAML: {problem}")
    lines = text.split("\n")
    source_line = lines[mark.line] if mark.line < len(lines) else ""
    hint = _QUOTE_HINT if re.search(r":\s*\{\{", source_line) else ""
    return TemplateProblem(shown, mark.line + 1 + line_offset, f"invalid YAML: {problem}{hint}")


def _value_start_line(node: yaml.Node) -> int:
    """The 1-based file line where a scalar's text begins (block scalars start after the indicator)."""
    style = getattr(node, "style", None)
    return node.start_mark.line + (2 if style in ("|", ">") else 1)


def _load_email(
    text: str, shown: str, name: str, templates: TemplateSet, problems: list[TemplateProblem]
) -> None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        problems.append(_yaml_problem(shown, exc, text))
        return
    if not isinstance(root, yaml.MappingNode):
        problems.append(
            TemplateProblem(shown, 1, "an email template is a mapping: subject, preheader, html, text, kind")
        )
        return

    key_lines: dict[str, int] = {}
    value_lines: dict[str, int] = {}
    found_problem = False
    for key_node, value_node in root.value:
        key_line = key_node.start_mark.line + 1
        if not isinstance(key_node, yaml.ScalarNode):
            problems.append(TemplateProblem(shown, key_line, "keys must be plain names"))
            found_problem = True
            continue
        key = str(key_node.value)
        if key in key_lines:
            problems.append(
                TemplateProblem(shown, key_line, f"duplicate key {key!r} (first on line {key_lines[key]})")
            )
            found_problem = True
            continue
        key_lines[key] = key_line
        value_lines[key] = _value_start_line(value_node)

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:  # compose accepted it, construction did not (e.g. a bad tag)
        problems.append(_yaml_problem(shown, exc, text))
        return
    if not isinstance(data, dict):  # pragma: no cover - compose said mapping
        problems.append(TemplateProblem(shown, 1, "an email template is a mapping"))
        return
    if "name" in data and data["name"] != name:
        problems.append(
            TemplateProblem(
                shown,
                key_lines.get("name"),
                f"name {data['name']!r} differs from the file name {name!r} (leave 'name' out)",
            )
        )
        return
    data = {str(k): v for k, v in data.items()}
    data["name"] = name
    try:
        template = EmailTemplate.model_validate(data)
    except ValidationError as exc:
        problems.extend(_validation_problems(shown, exc, key_lines, data))
        return
    if found_problem:
        return
    templates.email[name] = template
    for part in EMAIL_PARTS:
        templates.sources[email_source_key(name, part)] = SourceRef(shown, value_lines.get(part, 1))


def _validation_problems(
    shown: str, exc: ValidationError, key_lines: dict[str, int], data: dict[str, Any]
) -> list[TemplateProblem]:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error.get("loc") or ()
        key = str(loc[0]) if loc else ""
        kind = error.get("type", "")
        line = key_lines.get(key, 1 if kind == "missing" else None)
        if kind == "extra_forbidden":
            allowed = ", ".join((*EMAIL_PARTS, "kind"))
            message = f"unknown key {key!r} (allowed: {allowed})"
        elif kind == "missing":
            message = f"missing required key {key!r}"
        else:
            message = f"{key}: {_clean_msg(error.get('msg', 'invalid'))}"
            if isinstance(data.get(key), dict):
                message += _QUOTE_HINT
        problems.append(TemplateProblem(shown, line, message))
    return problems


def _clean_msg(message: str) -> str:
    return message.removeprefix("Value error, ")


_FRONT_MATTER_FENCE = "---"


def _load_sms(
    text: str, shown: str, name: str, templates: TemplateSet, problems: list[TemplateProblem]
) -> None:
    lines = text.split("\n")
    kind: Any = "marketing"
    body_start = 0  # 0-based index of the first body line
    if lines and lines[0].rstrip() == _FRONT_MATTER_FENCE:
        closing = next((i for i in range(1, len(lines)) if lines[i].rstrip() == _FRONT_MATTER_FENCE), None)
        if closing is None:
            problems.append(TemplateProblem(shown, 1, "front matter opened with '---' is never closed"))
            return
        try:
            front_text = "\n".join(lines[1:closing])
            front = yaml.safe_load(front_text) or {}
        except yaml.YAMLError as exc:
            problems.append(_yaml_problem(shown, exc, front_text, line_offset=1))
            return
        if not isinstance(front, dict):
            problems.append(
                TemplateProblem(shown, 2, "front matter is a mapping, e.g. 'kind: transactional'")
            )
            return
        unknown = sorted(str(k) for k in front if k != "kind")
        if unknown:
            problems.append(
                TemplateProblem(shown, 2, f"unknown front matter key(s) {', '.join(unknown)} (allowed: kind)")
            )
            return
        kind = front.get("kind", "marketing")
        body_start = closing + 1
    while body_start < len(lines) and not lines[body_start].strip():
        body_start += 1
    body = "\n".join(lines[body_start:]).rstrip()
    try:
        template = SmsTemplate(name=name, body=body, kind=kind)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            key = str(error["loc"][0]) if error.get("loc") else ""
            line = 2 if key == "kind" else None
            problems.append(TemplateProblem(shown, line, f"{key}: {_clean_msg(error.get('msg', 'invalid'))}"))
        return
    templates.sms[name] = template
    templates.sources[sms_source_key(name)] = SourceRef(shown, body_start + 1)


def _load_partials(
    root: Path,
    display: Callable[[Path], str],
    templates: TemplateSet,
    problems: list[TemplateProblem],
) -> None:
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts) or path.is_dir():
            continue
        shown = display(path)
        if not path.name.endswith(_PARTIAL_SUFFIXES):
            if not path.name.endswith(_IGNORED_SUFFIXES):
                problems.append(TemplateProblem(shown, None, "a partial ends in .html or .txt"))
            continue
        text = _read(path, shown, problems)
        if text is None:
            continue
        name = relative.as_posix()
        templates.partials[name] = text
        templates.sources[partial_source_key(name)] = SourceRef(shown, 1)
